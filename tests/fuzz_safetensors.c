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
#include <string.h>

#include "fuzz_tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
        touch_tensors(tf, data, size, 8);
        gqr_st_meta(tf, "format");
    }
    gqr_tf_close(tf);
    return 0;
}
