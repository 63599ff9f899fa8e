/*
 * vocab.c: a tokenizer built from its vocabulary (gqr_tokenizer_new): the
 * pieces and merges hashed, each token's decoded bytes worked out once so
 * that decoding is a lookup, byte fallback and GPT-2's byte mapping, the
 * special pieces matched whole.  Provides the lookups the encoder uses.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "tokenizer_int.h"

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
 * others for 256, 257, ... in byte order, so every byte is a visible
 * character in the vocabulary files. */
static void map_bytes(gqr_tokenizer *t) {
    uint32_t next = 256;
    for (int c = 0; c < 324; c++)
        t->cp_byte[c] = -1;
    for (int b = 0; b < 256; b++) {
        int shown = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        t->byte_cp[b] = shown ? (uint32_t)b : next++;
        t->cp_byte[t->byte_cp[b]] = (int16_t)b;
    }
}

/* ---- hash tables ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
    return h;
}

static uint64_t hash_pair(int a, int b) {
    uint64_t z = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9e3779b97f4a7c15u;
    return z ^ z >> 29;
}

/* A power of two at least twice count, so probe chains stay short. */
static size_t table_size(size_t count) {
    size_t n = 16;
    while (n < 2 * count)
        n *= 2;
    return n;
}

/* The slot holding piece s, or else the empty slot where it would go. */
static size_t piece_slot(const gqr_tokenizer *t, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & t->piece_mask;
    for (;; i = (i + 1) & t->piece_mask) {
        int id = t->pieces[i];
        if (id < 0 || (t->tok[id].piece_len == n && !memcmp(t->chars + t->tok[id].piece, s, n)))
            return i;
    }
}

int gqr_tok_piece_find(const gqr_tokenizer *t, const char *s, size_t n) {
    return t->pieces[piece_slot(t, s, n)];
}

merge *gqr_tok_merge_slot(const gqr_tokenizer *t, int left, int right) {
    size_t i = hash_pair(left, right) & t->merge_mask;
    for (;; i = (i + 1) & t->merge_mask) {
        merge *m = &t->merges[i];
        if (m->left < 0 || (m->left == left && m->right == right))
            return m;
    }
}

/* ---- building ---- */

static int check_spec(const gqr_vocab_spec *s, char *err, size_t errlen) {
    if (!s)
        return gqr_fail(err, errlen, "no vocabulary");
    if (s->kind != GQR_TOK_SPM && s->kind != GQR_TOK_BPE)
        return gqr_fail(err, errlen, "unknown tokenizer kind %d", s->kind);
    if (s->n_tokens <= 0 || !s->pieces || !s->piece_lens)
        return gqr_fail(err, errlen, "empty vocabulary");
    for (int i = 0; i < s->n_tokens; i++) {
        if (!s->pieces[i] && s->piece_lens[i])
            return gqr_fail(err, errlen, "token %d has no piece", i);
        if (s->types && (s->types[i] < GQR_TT_NORMAL || s->types[i] > GQR_TT_BYTE))
            return gqr_fail(err, errlen, "token %d has unknown type %d", i, s->types[i]);
        if (s->scores && isnan(s->scores[i]))
            return gqr_fail(err, errlen, "token %d has a NaN score", i);
    }
    if (s->kind == GQR_TOK_SPM && !s->scores)
        return gqr_fail(err, errlen, "a SentencePiece vocabulary needs scores");
    if (s->kind == GQR_TOK_BPE && !gqr_tok_valid_pre(s->pretokenizer))
        return gqr_fail(err, errlen, "unknown pre-tokenizer %d", s->pretokenizer);
    if (s->n_merges < 0 || (s->n_merges && (!s->merges || !s->merge_lens)))
        return gqr_fail(err, errlen, "bad merge list");
    if (s->bos_id < -1 || s->bos_id >= s->n_tokens || s->eos_id < -1 || s->eos_id >= s->n_tokens)
        return gqr_fail(err, errlen, "BOS %d or EOS %d is not a token of %d", s->bos_id, s->eos_id,
                    s->n_tokens);
    return 0;
}

/* <0xXX>: the byte, or -1. */
int gqr_tok_byte_piece(const char *p, size_t n) {
    unsigned v = 0;
    if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>')
        return -1;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 :
                c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + (unsigned)d;
    }
    return (int)v;
}

/* The bytes a byte-level BPE piece stands for, into out; a character
 * outside the mapping stands for itself. */
static size_t unmap_bytes(const gqr_tokenizer *t, const char *p, size_t n, char *out) {
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = 0;
        size_t k = gqr_tok_utf8_decode((const unsigned char *)p + i, n - i, &c);
        if (k && c < 324 && t->cp_byte[c] >= 0) {
            out[m++] = (char)t->cp_byte[c];
        } else {
            k = k ? k : 1;
            memcpy(out + m, p + i, k);
            m += k;
        }
        i += k;
    }
    return m;
}

/* What token i decodes to, into out (never longer than its piece). */
static size_t decoded(const gqr_tokenizer *t, int i, char *out) {
    const token *k = &t->tok[i];
    const char *p = t->chars + k->piece;
    if (k->type == GQR_TT_CONTROL || k->type == GQR_TT_UNUSED)
        return 0;
    if (t->kind == GQR_TOK_BPE) {
        if (k->type == GQR_TT_USER) {
            memcpy(out, p, k->piece_len);
            return k->piece_len;
        }
        return unmap_bytes(t, p, k->piece_len, out);
    }
    int b = gqr_tok_byte_piece(p, k->piece_len);
    if (b >= 0) {
        out[0] = (char)b;
        return 1;
    }
    size_t m = 0;
    for (size_t j = 0; j < k->piece_len; j++) {
        if (t->bar && k->piece_len - j >= 3 && !memcmp(p + j, BAR, 3)) {
            out[m++] = ' ';
            j += 2;
        } else {
            out[m++] = p[j];
        }
    }
    return m;
}

static int has_bar(const char *p, size_t n) {
    for (size_t i = 0; i + 3 <= n; i++)
        if (!memcmp(p + i, BAR, 3))
            return 1;
    return 0;
}

/* Copies pieces, scores and types, and works out the decoded bytes. */
static int copy_tokens(gqr_tokenizer *t, const gqr_vocab_spec *s) {
    size_t total = 0;
    if (s->n_tokens < 0)
        return -1;
    for (int i = 0; i < s->n_tokens; i++) {
        if (s->piece_lens[i] >= (SIZE_MAX - total) / 2)
            return -1;
        total += 2 * (s->piece_lens[i] + 1);
    }
    t->tok = calloc((size_t)s->n_tokens, sizeof *t->tok);
    t->chars = malloc(total);
    if (!t->tok || !t->chars)
        return -1;
    size_t at = 0;
    for (int i = 0; i < s->n_tokens; i++) {
        token *k = &t->tok[i];
        k->piece = at;
        k->piece_len = s->piece_lens[i];
        if (k->piece_len)
            memcpy(t->chars + at, s->pieces[i], k->piece_len);
        t->chars[at + k->piece_len] = 0;
        at += k->piece_len + 1;
        k->score = s->scores ? s->scores[i] : 0;
        k->type = s->types ? s->types[i] : GQR_TT_NORMAL;
        if (t->kind == GQR_TOK_SPM && has_bar(t->chars + k->piece, k->piece_len))
            t->bar = 1;
    }
    for (int i = 0; i < s->n_tokens; i++) {
        token *k = &t->tok[i];
        k->text = at;
        k->text_len = decoded(t, i, t->chars + at);
        t->chars[at + k->text_len] = 0;
        at += k->text_len + 1;
    }
    return 0;
}

/* Only text-like pieces: control and byte pieces are never merge results. */
static int index_pieces(gqr_tokenizer *t) {
    t->piece_mask = table_size((size_t)t->n) - 1;
    t->pieces = malloc((t->piece_mask + 1) * sizeof *t->pieces);
    if (!t->pieces)
        return -1;
    memset(t->pieces, -1, (t->piece_mask + 1) * sizeof *t->pieces);
    for (int i = 0; i < t->n; i++) {
        const token *k = &t->tok[i];
        if (k->piece_len && (k->type == GQR_TT_NORMAL || k->type == GQR_TT_USER)) {
            size_t slot = piece_slot(t, t->chars + k->piece, k->piece_len);
            if (t->pieces[slot] < 0) /* a repeated piece keeps its first id */
                t->pieces[slot] = i;
        }
    }
    return 0;
}

static int find_byte_ids(gqr_tokenizer *t, char *err, size_t errlen) {
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    if (t->kind == GQR_TOK_SPM) {
        for (int i = t->n - 1; i >= 0; i--) {
            int b = gqr_tok_byte_piece(t->chars + t->tok[i].piece, t->tok[i].piece_len);
            if (b >= 0)
                t->byte_id[b] = i;
        }
        return 0;
    }
    for (int b = 0; b < 256; b++) {
        char sym[2];
        t->byte_id[b] = gqr_tok_piece_find(t, sym, gqr_tok_utf8_encode_small(t->byte_cp[b], sym));
        if (t->byte_id[b] < 0)
            return gqr_fail(err, errlen, "the byte-level vocabulary lacks the symbol of byte 0x%02X",
                        b);
    }
    return 0;
}

static int add_merge(gqr_tokenizer *t, const char *m, size_t n, int rank, char *buf, char *err,
                     size_t errlen) {
    const char *space = memchr(m, ' ', n);
    if (!space)
        return gqr_fail(err, errlen, "merge %d '%.*s' is not two pieces", rank, (int)n, m);
    size_t ln = (size_t)(space - m), rn = n - ln - 1;
    memcpy(buf, m, ln);
    memcpy(buf + ln, space + 1, rn);
    int left = gqr_tok_piece_find(t, m, ln), right = gqr_tok_piece_find(t, space + 1, rn);
    int id = gqr_tok_piece_find(t, buf, ln + rn);
    if (left < 0 || right < 0 || id < 0)
        return gqr_fail(err, errlen, "merge %d '%.*s': '%.*s' is not in the vocabulary", rank, (int)n,
                    m, left < 0 ? (int)ln : right < 0 ? (int)rn : (int)(ln + rn),
                    left < 0 ? m : right < 0 ? space + 1 : buf);
    merge *slot = gqr_tok_merge_slot(t, left, right);
    if (slot->left < 0) /* a repeated merge keeps its first rank */
        *slot = (merge){left, right, rank, id};
    return 0;
}

static int index_merges(gqr_tokenizer *t, const gqr_vocab_spec *s, char *err, size_t errlen) {
    size_t longest = 0;
    for (int i = 0; i < s->n_merges; i++)
        if (s->merge_lens[i] > longest)
            longest = s->merge_lens[i];
    t->merge_mask = table_size((size_t)s->n_merges) - 1;
    t->merges = malloc((t->merge_mask + 1) * sizeof *t->merges);
    char *buf = malloc(longest + 1);
    if (!t->merges || !buf) {
        free(buf);
        return gqr_tok_oom(err, errlen);
    }
    for (size_t i = 0; i <= t->merge_mask; i++)
        t->merges[i].left = -1;
    int rc = 0;
    for (int i = 0; i < s->n_merges && !rc; i++)
        rc = add_merge(t, s->merges[i], s->merge_lens[i], i, buf, err, errlen);
    free(buf);
    return rc;
}

typedef struct special_key {
    int first; /* the piece's first byte */
    size_t len;
    int id;
} special_key;

/* By first byte, then longest first, so the first match is the longest. */
static int special_order(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->first != y->first)
        return x->first - y->first;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id - y->id;
}

static int index_specials(gqr_tokenizer *t) {
    int count = 0;
    special_key *keys = malloc((size_t)t->n * sizeof *keys);
    t->special = malloc((size_t)t->n * sizeof *t->special);
    if (!keys || !t->special) {
        free(keys);
        return -1;
    }
    for (int i = 0; i < t->n; i++) {
        const token *k = &t->tok[i];
        if (k->piece_len && (k->type == GQR_TT_CONTROL || k->type == GQR_TT_USER))
            keys[count++] = (special_key){(unsigned char)t->chars[k->piece], k->piece_len, i};
    }
    qsort(keys, (size_t)count, sizeof *keys, special_order);
    for (int i = 0; i < count; i++)
        t->special[i] = keys[i].id;
    int at = 0;
    for (int b = 0; b <= 256; b++) {
        while (at < count && keys[at].first < b)
            at++;
        t->special_at[b] = at;
    }
    free(keys);
    return 0;
}

/* The first token of type UNKNOWN, else the piece <unk>. */
static int find_unk(const gqr_tokenizer *t) {
    for (int i = 0; i < t->n; i++)
        if (t->tok[i].type == GQR_TT_UNKNOWN)
            return i;
    return gqr_tok_piece_find(t, "<unk>", 5);
}

int gqr_tokenizer_new(gqr_tokenizer **out, const gqr_vocab_spec *spec, char *err, size_t errlen) {
    *out = NULL;
    if (check_spec(spec, err, errlen))
        return -1;
    gqr_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return gqr_tok_oom(err, errlen);
    t->kind = spec->kind;
    t->n = spec->n_tokens;
    t->bos = spec->bos_id;
    t->eos = spec->eos_id;
    t->pre = spec->pretokenizer;
    t->ignore_merges = spec->ignore_merges;
    map_bytes(t);
    int rc = copy_tokens(t, spec) || index_pieces(t) ? gqr_tok_oom(err, errlen)
                                                     : find_byte_ids(t, err, errlen);
    if (!rc && t->kind == GQR_TOK_BPE)
        rc = index_merges(t, spec, err, errlen);
    if (!rc && t->kind == GQR_TOK_BPE && index_specials(t))
        rc = gqr_tok_oom(err, errlen);
    if (rc) {
        gqr_tokenizer_free(t);
        return -1;
    }
    t->unk = find_unk(t);
    *out = t;
    return 0;
}

void gqr_tokenizer_free(gqr_tokenizer *t) {
    if (!t)
        return;
    free(t->tok);
    free(t->chars);
    free(t->pieces);
    free(t->merges);
    free(t->special);
    free(t);
}

int gqr_tokenizer_vocab_size(const gqr_tokenizer *t) {
    return t->n;
}

int gqr_tokenizer_bos(const gqr_tokenizer *t) {
    return t->bos;
}

int gqr_tokenizer_eos(const gqr_tokenizer *t) {
    return t->eos;
}

