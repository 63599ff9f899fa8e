/*
 * fuzz_safetensors.c: a libFuzzer target for the safetensors reader.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iruntime tests/fuzz_safetensors.c \
 *       runtime/{tensorfile,gguf,safetensors,half}.c -lcjson -lm -o build/fuzz_safetensors
 *   ./build/fuzz_safetensors CORPUS tests/fuzz/safetensors
 *
 * Properties beyond "no crash, leak or UB": a rejection says why and names
 * the file; every tensor of an accepted file lies inside the input, past
 * the header, is found by its name, and reads.
 */
#include <stdlib.h>
#include <string.h>

#include "tensorfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gqr_tensorfile *tf;
    char err[512] = "";
    if (gqr_tf_open_memory(&tf, data, size, "fuzz.safetensors", err, sizeof err)) {
        CHECK(tf == NULL && !strncmp(err, "fuzz.safetensors: ", 18));
        return 0;
    }
    /* Inputs starting "GGUF" go to the GGUF reader, which fuzz_gguf covers. */
    if (gqr_tf_format(tf) == GQR_TF_SAFETENSORS) {
        CHECK(size >= 8 && gqr_gguf_count(tf) == 0);
        for (int i = 0; i < gqr_tf_count(tf); i++) {
            const gqr_tensor *t = gqr_tf_tensor(tf, i);
            CHECK(t->data >= data + 8 && t->n_bytes <= size &&
                  t->data - data <= (long)(size - t->n_bytes));
            CHECK(t->n_bytes == t->n_elems * (uint64_t)gqr_tf_dtype_size(t->dtype));
            CHECK(gqr_tf_find(tf, t->name) == t);
            float v[4];
            uint64_t n = t->n_elems < 4 ? t->n_elems : 4;
            gqr_tf_read_f32(t, 0, n, v);
            gqr_tf_read_f32(t, t->n_elems - n, n, v);
        }
        gqr_st_meta(tf, "format");
    }
    gqr_tf_close(tf);
    return 0;
}
