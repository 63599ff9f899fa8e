/*
 * dataset.c: training text as a token stream (train.h).  Needs: a
 * tokenizer.  Provides: the stream, its random training windows and its
 * consecutive evaluation windows, as tools/train_fortune.py makes them, so
 * that `gqac train` and the PyTorch recipe see the same data.
 */
#include "train.h"
#include "fail.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FNV_SEED 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* A line holding only "%" (and blanks, as the fortune files' regex
 * allows): the end of a document. */
static int is_separator(const char *line, size_t n) {
    if (n == 0 || line[0] != '%')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return 0;
    return 1;
}

typedef struct {
    int *ids;
    size_t n, cap;
} Ids;

static int ids_reserve(Ids *s, size_t more) {
    if (s->n + more <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->n + more)
        cap *= 2;
    int *p = realloc(s->ids, cap * sizeof *p);
    if (!p)
        return -1;
    s->ids = p, s->cap = cap;
    return 0;
}

/* One document's BOS + ids + EOS appended to s. */
static int add_document(Ids *s, const char *doc, size_t len, const gqr_tokenizer *tok, char *err,
                        size_t errlen) {
    int n = 0;
    if (gqr_tokenizer_encode(tok, doc, len, 1, NULL, 0, &n, err, errlen) && n == 0)
        return -1;
    if (ids_reserve(s, (size_t)n + 1))
        return gqr_fail(err, errlen, "out of memory for the token stream");
    if (gqr_tokenizer_encode(tok, doc, len, 1, s->ids + s->n, n, &n, err, errlen))
        return -1;
    s->n += (size_t)n;
    s->ids[s->n++] = gqr_tokenizer_eos(tok);
    return 0;
}

/* The document from start to end (a line end, or the text's end): its
 * text without the newline that ends its last line.  Empty ones skipped. */
static int flush_document(Ids *s, const char *start, const char *end, const gqr_tokenizer *tok,
                          size_t *n_docs, char *err, size_t errlen) {
    if (end > start && end[-1] == '\n')
        end--;
    if (end > start && end[-1] == '\r')
        end--;
    if (end == start)
        return 0;
    ++*n_docs;
    return add_document(s, start, (size_t)(end - start), tok, err, errlen);
}

static uint64_t hash_ids(const int *ids, size_t n) {
    uint64_t h = FNV_SEED;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++)
            h = (h ^ (((uint32_t)ids[i] >> (8 * b)) & 0xff)) * FNV_PRIME;
    return h;
}

static int check_tokenizer(const char *name, const gqr_tokenizer *tok, int vocab_size, char *err,
                           size_t errlen) {
    int v = gqr_tokenizer_vocab_size(tok);
    if (v != vocab_size)
        return gqr_fail(err, errlen, "%s: the tokenizer has %d tokens, the model's vocab is %d", name,
                        v, vocab_size);
    if (gqr_tokenizer_bos(tok) < 0 || gqr_tokenizer_eos(tok) < 0)
        return gqr_fail(err, errlen, "%s: the tokenizer has no %s token (each document is BOS + "
                        "text + EOS)", name, gqr_tokenizer_bos(tok) < 0 ? "BOS" : "EOS");
    return 0;
}

int gqr_data_from_text(gqr_data *d, const char *name, const char *text, size_t len,
                       const gqr_tokenizer *tok, int vocab_size, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    if (check_tokenizer(name, tok, vocab_size, err, errlen))
        return -1;
    Ids s = {0};
    const char *doc = text, *end = text + len;
    size_t n_docs = 0;
    int rc = 0;
    for (const char *line = text; line < end && !rc;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *next = nl ? nl + 1 : end;
        if (is_separator(line, (size_t)((nl ? nl : end) - line))) {
            rc = flush_document(&s, doc, line, tok, &n_docs, err, errlen);
            doc = next;
        }
        line = next;
    }
    if (!rc)
        rc = flush_document(&s, doc, end, tok, &n_docs, err, errlen);
    if (!rc && n_docs == 0)
        rc = gqr_fail(err, errlen, "%s: no text (empty, or only %% lines)", name);
    if (rc) {
        free(s.ids);
        return -1;
    }
    *d = (gqr_data){s.ids, s.n, n_docs, hash_ids(s.ids, s.n)};
    return 0;
}

int gqr_data_load(gqr_data *d, const char *path, const gqr_tokenizer *tok, int vocab_size,
                  char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "rb");
    if (!f)
        return gqr_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    while (text && !ferror(f) && !feof(f)) {
        if (n == cap) {
            char *p = realloc(text, cap *= 2);
            if (!p)
                free(text);
            text = p;
            if (!text)
                break;
        }
        n += fread(text + n, 1, cap - n, f);
    }
    int bad = !text || ferror(f), e = errno;
    fclose(f);
    if (bad) {
        free(text);
        return gqr_fail(err, errlen, "cannot read %s: %s", path, text ? strerror(e) : "out of memory");
    }
    int rc = gqr_data_from_text(d, path, text, n, tok, vocab_size, err, errlen);
    free(text);
    return rc;
}

int gqr_data_check(const gqr_data *d, const char *name, int seq, char *err, size_t errlen) {
    size_t need = (size_t)seq + 2;
    if (d->n_tokens < need)
        return gqr_fail(err, errlen, "%s: a window of %d positions needs at least %zu tokens, has %zu",
                        name, seq, need, d->n_tokens);
    return 0;
}

void gqr_data_free(gqr_data *d) {
    free(d->tokens);
    memset(d, 0, sizeof *d);
}

uint64_t gqr_data_next(uint64_t *rng) {
    uint64_t z = (*rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n >= 1: draws past the last whole multiple of n are
 * drawn again, so no offset is favoured. */
static uint64_t below(uint64_t *rng, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do
        x = gqr_data_next(rng);
    while (x >= limit);
    return x % n;
}

void gqr_data_batch(const gqr_data *d, uint64_t *rng, int batch, int seq, int *tokens) {
    uint64_t range = (uint64_t)(d->n_tokens - (size_t)seq - 1);
    for (int b = 0; b < batch; b++) {
        size_t at = (size_t)below(rng, range);
        memcpy(tokens + (size_t)b * (size_t)(seq + 1), d->tokens + at, sizeof *tokens * (size_t)(seq + 1));
    }
}

size_t gqr_data_windows(const gqr_data *d, int seq, size_t max) {
    size_t n = d->n_tokens ? (d->n_tokens - 1) / (size_t)seq : 0;
    return max && n > max ? max : n;
}
