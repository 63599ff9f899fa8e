/*
 * fuzz_gguf_tokenizer.c: a libFuzzer target for the tokenizer a GGUF file
 * carries (runtime/gguf_tokenizer.c, over the GGUF reader and
 * tokenizer.c).  Seeds: tests/fuzz/gguf_tokenizer, small "llama" and
 * "gpt2" vocabularies.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iruntime -Itemplates \
 *       tests/fuzz_gguf_tokenizer.c runtime/{gguf_tokenizer,tokenizer,tensorfile,gguf,\
 *       safetensors,half}.c -lcjson -lm -o build/fuzz_gguf_tokenizer
 *   ./build/fuzz_gguf_tokenizer CORPUS tests/fuzz/gguf_tokenizer
 *
 * Properties beyond "no crash, leak or UB": a rejection says why and names
 * the file; a tokenizer that is built encodes text to ids inside its
 * vocabulary, within the count it announced, and decodes every id.
 */
#include <stdlib.h>
#include <string.h>

#include "gqr.h"
#include "tensorfile.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : abort())

static void use(const gqr_tokenizer *t) {
    static const char *const texts[] = {"", "hello world", " ab  c\n\n12345 it's",
                                        "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 \xff"};
    int vocab = gqr_tokenizer_vocab_size(t), ids[256], n = 0;
    char err[256];
    CHECK(vocab > 0);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        size_t len = strlen(texts[i]);
        if (gqr_tokenizer_encode(t, texts[i], len, 1, ids, 256, &n, err, sizeof err))
            continue; /* a vocabulary may lack what a text needs: then it says so */
        CHECK(n >= 0 && n <= 256);
        for (int k = 0; k < n; k++)
            CHECK(ids[k] >= 0 && ids[k] < vocab);
    }
    for (int id = -1; id <= vocab; id++) {
        size_t len = 1;
        const char *piece = gqr_tokenizer_decode(t, id - 1, id, &len);
        CHECK(piece ? id >= 0 && id < vocab && piece[len] == 0 : len == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gqr_tensorfile *tf;
    char err[512] = "";
    if (gqr_tf_open_memory(&tf, data, size, "fuzz.gguf", err, sizeof err))
        return 0; /* the reader's own properties: fuzz_gguf */
    gqr_tokenizer *t = (gqr_tokenizer *)1;
    int rc = gqr_gguf_tokenizer_tf(&t, tf, "fuzz.gguf", 0, err, sizeof err);
    if (rc)
        CHECK(t == NULL && !strncmp(err, "fuzz.gguf: ", 11));
    else if (t)
        use(t);
    gqr_tokenizer_free(t);
    gqr_tf_close(tf);
    return 0;
}
