/*
 * fuzz_gguf.c: a libFuzzer target for the GGUF reader.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iruntime tests/fuzz_gguf.c \
 *       runtime/{tensorfile,gguf,safetensors,half,outfile,quant}.c -lcjson -lm -o build/fuzz_gguf
 *   ./build/fuzz_gguf CORPUS tests/fuzz/gguf
 *
 * Properties beyond "no crash, leak or UB": a rejection says why and names
 * the file; every tensor of an accepted file lies inside the input, is
 * found by its name, and reads; every metadata value reads as its type.
 */
#include <string.h>

#include "fuzz_tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch_value(const gqr_gguf_value *v) {
    int64_t i;
    double d;
    size_t len;
    gqr_gguf_int(v, &i);
    gqr_gguf_float(v, &d);
    const char *s = gqr_gguf_string(v, &len);
    CHECK(!s || s[len] == 0);
    for (uint64_t k = 0; k < gqr_gguf_array_len(v); k++) {
        s = gqr_gguf_array_string(v, k, &len);
        CHECK(!s || s[len] == 0);
        CHECK((s != NULL) == (gqr_gguf_array_type(v) == GQR_GGUF_STRING));
        gqr_gguf_array_int(v, k, &i);
        CHECK((gqr_gguf_array_float(v, k, &d) == 0) == (s == NULL));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gqr_tensorfile *tf;
    char err[512] = "";
    if (gqr_tf_open_memory(&tf, data, size, "fuzz.gguf", err, sizeof err)) {
        CHECK(tf == NULL && !strncmp(err, "fuzz.gguf: ", 11));
        return 0;
    }
    CHECK(gqr_tf_format(tf) == GQR_TF_GGUF);
    touch_tensors(tf, data, size, 0);
    for (int i = 0; i < gqr_gguf_count(tf); i++) {
        const char *key;
        const gqr_gguf_value *v = gqr_gguf_at(tf, i, &key);
        CHECK(gqr_gguf_get(tf, key) == v);
        touch_value(v);
    }
    gqr_tf_close(tf);
    return 0;
}
