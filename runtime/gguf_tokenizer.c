/*
 * gguf_tokenizer.c: the tokenizer a GGUF file carries in its metadata
 * (tokenizer.ggml.*), so that one file runs a model.  Needs: tensorfile.h
 * for the metadata, tokenizer.h to build the tokenizer.
 *
 *   tokenizer.ggml.model       "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE)
 *   tokenizer.ggml.tokens      the pieces;  .scores (llama), .merges (gpt2)
 *   tokenizer.ggml.token_type  GQR_TT_* per piece (optional)
 *   tokenizer.ggml.pre         gpt2's pre-tokenizer: llama-bpe, qwen2, gpt-2, ...
 *   tokenizer.ggml.bos_token_id, .eos_token_id
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gqr.h"
#include "tensorfile.h"
#include "tokenizer.h"

typedef struct {
    const char **pieces, **merges;
    size_t *lens, *merge_lens;
    float *scores;
    int *types;
} Arrays;

static void free_arrays(Arrays *a) {
    free(a->pieces), free(a->merges), free(a->lens), free(a->merge_lens);
    free(a->scores), free(a->types);
}

/* A string key compared with want; absent or not a string is no match. */
static int key_is(const gqr_tensorfile *tf, const char *key, const char *want) {
    const gqr_gguf_value *v = gqr_gguf_get(tf, key);
    size_t len = 0;
    const char *s = v ? gqr_gguf_string(v, &len) : NULL;
    return s && len == strlen(want) && !memcmp(s, want, len);
}

static int token_id(const gqr_tensorfile *tf, const char *key) {
    const gqr_gguf_value *v = gqr_gguf_get(tf, key);
    int64_t id;
    return v && !gqr_gguf_int(v, &id) && id >= 0 && id <= INT32_MAX ? (int)id : -1;
}

/* The pre-tokenizer llama.cpp names in tokenizer.ggml.pre. */
static int pretokenizer(const gqr_tensorfile *tf) {
    if (key_is(tf, "tokenizer.ggml.pre", "llama-bpe") || key_is(tf, "tokenizer.ggml.pre", "llama3"))
        return GQR_PRE_LLAMA3;
    if (key_is(tf, "tokenizer.ggml.pre", "qwen2"))
        return GQR_PRE_QWEN2;
    if (key_is(tf, "tokenizer.ggml.pre", "gpt-2") || key_is(tf, "tokenizer.ggml.pre", "default") ||
        !gqr_gguf_get(tf, "tokenizer.ggml.pre"))
        return GQR_PRE_GPT2;
    return -1;
}

/* n strings of an array key into ptrs and lens (pointers into the file). */
static int strings(const gqr_tensorfile *tf, const char *key, uint64_t n, const char ***ptrs,
                   size_t **lens) {
    const gqr_gguf_value *v = gqr_gguf_get(tf, key);
    *ptrs = calloc(n ? n : 1, sizeof **ptrs);
    *lens = calloc(n ? n : 1, sizeof **lens);
    if (!*ptrs || !*lens)
        return -1;
    for (uint64_t i = 0; i < n; i++)
        if (!((*ptrs)[i] = gqr_gguf_array_string(v, i, &(*lens)[i])))
            return -1;
    return 0;
}

static int numbers(const gqr_tensorfile *tf, uint64_t n, Arrays *a) {
    const gqr_gguf_value *scores = gqr_gguf_get(tf, "tokenizer.ggml.scores");
    const gqr_gguf_value *types = gqr_gguf_get(tf, "tokenizer.ggml.token_type");
    if (scores && gqr_gguf_array_len(scores) != n)
        return -1;
    if (types && gqr_gguf_array_len(types) != n)
        return -1;
    a->scores = scores ? malloc(n * sizeof *a->scores) : NULL;
    a->types = types ? malloc(n * sizeof *a->types) : NULL;
    for (uint64_t i = 0; i < n; i++) {
        double d;
        int64_t t;
        if (scores && (!a->scores || gqr_gguf_array_float(scores, i, &d)))
            return -1;
        if (types && (!a->types || gqr_gguf_array_int(types, i, &t)))
            return -1;
        if (scores)
            a->scores[i] = (float)d;
        if (types)
            a->types[i] = (int)t;
    }
    return 0;
}

static int build(gqr_tokenizer **out, const gqr_tensorfile *tf, int kind, const char *path,
                 int vocab_size, char *err, size_t errlen) {
    const gqr_gguf_value *tokens = gqr_gguf_get(tf, "tokenizer.ggml.tokens");
    const gqr_gguf_value *merges = gqr_gguf_get(tf, "tokenizer.ggml.merges");
    uint64_t n = tokens ? gqr_gguf_array_len(tokens) : 0, n_merges = merges ? gqr_gguf_array_len(merges) : 0;
    if (!tokens || n == 0 || n > INT32_MAX)
        return gqr_fail(err, errlen, "%s: no tokenizer.ggml.tokens array", path);
    if (vocab_size && n != (uint64_t)vocab_size)
        return gqr_fail(err, errlen, "%s: the tokenizer has %llu tokens, the model's vocab is %d", path,
                    (unsigned long long)n, vocab_size);
    if (kind == GQR_TOK_BPE && (!merges || n_merges > INT32_MAX))
        return gqr_fail(err, errlen, "%s: a gpt2 tokenizer needs tokenizer.ggml.merges", path);
    Arrays a = {0};
    int rc = strings(tf, "tokenizer.ggml.tokens", n, &a.pieces, &a.lens) ||
             (kind == GQR_TOK_BPE && strings(tf, "tokenizer.ggml.merges", n_merges, &a.merges, &a.merge_lens)) ||
             numbers(tf, n, &a)
                 ? gqr_fail(err, errlen, "%s: malformed tokenizer.ggml arrays (wrong types or lengths)", path)
                 : 0;
    if (!rc && kind == GQR_TOK_SPM && !a.scores)
        rc = gqr_fail(err, errlen, "%s: a llama tokenizer needs tokenizer.ggml.scores", path);
    gqr_vocab_spec spec = {kind, (int)n, a.pieces, a.lens, a.scores, a.types,
                           kind == GQR_TOK_BPE ? (int)n_merges : 0, a.merges, a.merge_lens,
                           token_id(tf, "tokenizer.ggml.bos_token_id"),
                           token_id(tf, "tokenizer.ggml.eos_token_id"), pretokenizer(tf),
                           pretokenizer(tf) == GQR_PRE_LLAMA3};
    if (!rc && kind == GQR_TOK_BPE && spec.pretokenizer < 0)
        rc = gqr_fail(err, errlen, "%s: pre-tokenizer tokenizer.ggml.pre is not supported (supported: "
                  "llama-bpe, qwen2, gpt-2, default)", path);
    char why[384];
    if (!rc && gqr_tokenizer_new(out, &spec, why, sizeof why))
        rc = gqr_fail(err, errlen, "%s: %s", path, why);
    free_arrays(&a);
    return rc;
}

int gqr_gguf_tokenizer_tf(struct gqr_tokenizer **out, const struct gqr_tensorfile *tf,
                          const char *name, int vocab_size, char *err, size_t errlen) {
    *out = NULL;
    if (gqr_tf_format(tf) != GQR_TF_GGUF)
        return gqr_fail(err, errlen, "%s: not a GGUF file", name);
    if (key_is(tf, "tokenizer.ggml.model", "llama"))
        return build(out, tf, GQR_TOK_SPM, name, vocab_size, err, errlen);
    if (key_is(tf, "tokenizer.ggml.model", "gpt2"))
        return build(out, tf, GQR_TOK_BPE, name, vocab_size, err, errlen);
    if (gqr_gguf_get(tf, "tokenizer.ggml.model"))
        return gqr_fail(err, errlen, "%s: tokenizer.ggml.model is neither llama nor gpt2 (not "
                        "supported)", name);
    return 0; /* no tokenizer: *out stays NULL */
}

int gqr_gguf_tokenizer(struct gqr_tokenizer **out, const char *path, int vocab_size, char *err,
                       size_t errlen) {
    gqr_tensorfile *tf = NULL;
    *out = NULL;
    if (gqr_tf_open(&tf, path, err, errlen))
        return -1;
    int rc = gqr_gguf_tokenizer_tf(out, tf, path, vocab_size, err, errlen);
    gqr_tf_close(tf);
    return rc;
}
