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
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "tensorfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : abort())

static void touch_tensors(const gqr_tensorfile *tf, const uint8_t *data, size_t size) {
    for (int i = 0; i < gqr_tf_count(tf); i++) {
        const gqr_tensor *t = gqr_tf_tensor(tf, i);
        CHECK(t->data >= data && t->n_bytes <= size && t->data - data <= (long)(size - t->n_bytes));
        uint64_t bytes;
        CHECK(!gqr_q_row_bytes(t->dtype, t->n_elems, &bytes, NULL, 0) && bytes == t->n_bytes);
        CHECK(gqr_tf_find(tf, t->name) == t);
        float v[4];
        uint64_t n = t->n_elems < 4 ? t->n_elems : 4;
        gqr_tf_read_f32(t, 0, n, v);
        gqr_tf_read_f32(t, t->n_elems - n, n, v);
    }
}

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
    touch_tensors(tf, data, size);
    for (int i = 0; i < gqr_gguf_count(tf); i++) {
        const char *key;
        const gqr_gguf_value *v = gqr_gguf_at(tf, i, &key);
        CHECK(gqr_gguf_get(tf, key) == v);
        touch_value(v);
    }
    gqr_tf_close(tf);
    return 0;
}
