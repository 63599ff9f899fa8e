/*
 * tokenize.c: text to ids and back.  Both encoders are one merge engine: a
 * doubly linked list of symbols over the text and a max-heap of the
 * adjacent pairs that may merge, so a merge costs O(log n) instead of
 * llama2.c's rescan of the whole prompt.  Heap entries go stale as their
 * symbols merge; they are checked when popped rather than removed.  SPM
 * ranks a pair by the score of the piece it spells, BPE by the rank of the
 * merge of its two tokens; ties go to the leftmost pair, as in llama2.c,
 * SentencePiece and Hugging Face.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "tokenizer_int.h"

/* ---- the merge engine ---- */

typedef struct symbol {
    int start, len;   /* bytes of the text; len 0 once merged into its left */
    int prev, next;   /* -1 at the ends */
    int id;
    int fixed;        /* SPM byte fallback: merges with nothing */
} symbol;

typedef struct bigram {
    double score;     /* higher merges first */
    int left, right;  /* symbols */
    int size;         /* their bytes when pushed: a changed symbol makes it stale */
    int id;           /* the token they merge into */
} bigram;

typedef struct ivec {
    int *v;
    int n, cap;
} ivec;

typedef struct work {
    symbol *sym;
    int n_sym;
    bigram *heap;
    int n_heap;
    ivec out;
} work;

static int push_id(ivec *o, int id) {
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 64;
        int *v = realloc(o->v, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return 0;
}

static int better(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(work *w, bigram b) {
    int i = w->n_heap++;
    for (; i > 0 && better(&b, &w->heap[(i - 1) / 2]); i = (i - 1) / 2)
        w->heap[i] = w->heap[(i - 1) / 2];
    w->heap[i] = b;
}

static bigram heap_pop(work *w) {
    bigram top = w->heap[0], last = w->heap[--w->n_heap];
    int i = 0, n = w->n_heap;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && better(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!better(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

/* Queues symbols l and r (adjacent) if they may merge. */
static void push_pair(const gqr_tokenizer *t, work *w, const char *text, int l, int r) {
    if (l < 0 || r < 0)
        return;
    const symbol *a = &w->sym[l], *b = &w->sym[r];
    bigram g = {0, l, r, a->len + b->len, -1};
    if (t->kind == GQR_TOK_SPM) {
        if (a->fixed || b->fixed)
            return;
        g.id = gqr_tok_piece_find(t, text + a->start, (size_t)g.size);
        if (g.id < 0)
            return;
        g.score = t->tok[g.id].score;
    } else {
        const merge *m = gqr_tok_merge_slot(t, a->id, b->id);
        if (m->left < 0)
            return;
        g.id = m->id;
        g.score = -(double)m->rank;
    }
    heap_push(w, g);
}

static void add_symbol(work *w, int start, int len, int id, int fixed) {
    int i = w->n_sym++;
    w->sym[i] = (symbol){start, len, i - 1, -1, id, fixed};
    if (i > 0)
        w->sym[i - 1].next = i;
}

/* Merges w's symbols over text as far as they go and appends their ids. */
static int merge_all(const gqr_tokenizer *t, work *w, const char *text) {
    w->n_heap = 0;
    for (int i = 0; i + 1 < w->n_sym; i++)
        push_pair(t, w, text, i, i + 1);
    while (w->n_heap) {
        bigram g = heap_pop(w);
        symbol *l = &w->sym[g.left], *r = &w->sym[g.right];
        if (!l->len || !r->len || l->next != g.right || l->len + r->len != g.size)
            continue;
        l->len = g.size;
        l->id = g.id;
        l->next = r->next;
        r->len = 0;
        if (l->next >= 0)
            w->sym[l->next].prev = g.left;
        push_pair(t, w, text, l->prev, g.left);
        push_pair(t, w, text, g.left, l->next);
    }
    for (int i = w->n_sym ? 0 : -1; i >= 0; i = w->sym[i].next)
        if (push_id(&w->out, w->sym[i].id))
            return -1;
    return 0;
}

/* Symbols are at most n, and the heap holds at most the n - 1 first pairs
 * plus two per merge. */
static int work_init(work *w, size_t n) {
    w->sym = malloc((n + 1) * sizeof *w->sym);
    w->heap = malloc((3 * n + 1) * sizeof *w->heap);
    return w->sym && w->heap ? 0 : -1;
}

static void work_free(work *w) {
    free(w->sym);
    free(w->heap);
}

/* ---- SentencePiece-style encoding ---- */

/* A code point the vocabulary lacks, or an invalid byte (n == 1): its bytes'
 * <0xXX> tokens, or failing those one <unk>. */
static int fall_back(const gqr_tokenizer *t, work *w, const char *s, int start, int n,
                     char *err, size_t errlen) {
    int have = 1;
    for (int i = 0; i < n; i++)
        have &= t->byte_id[(unsigned char)s[start + i]] >= 0;
    if (have) {
        for (int i = 0; i < n; i++)
            add_symbol(w, start + i, 1, t->byte_id[(unsigned char)s[start + i]], 1);
    } else if (t->unk >= 0) {
        add_symbol(w, start, n, t->unk, 1);
    } else {
        return gqr_fail(err, errlen, "no token for byte 0x%02X, and no <unk>",
                    (unsigned char)s[start]);
    }
    return 0;
}

/* The text as the vocabulary spells it: the dummy prefix, spaces as "▁"
 * where the pieces have them. */
static char *spm_text(const gqr_tokenizer *t, const char *text, size_t len, size_t *m) {
    const char *sp = t->bar ? BAR : " ";
    size_t spn = strlen(sp);
    char *s = malloc(spn * (len + 1));
    if (!s)
        return NULL;
    memcpy(s, sp, spn);
    *m = spn;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + *m, sp, spn);
            *m += spn;
        } else {
            s[(*m)++] = text[i];
        }
    }
    return s;
}

static int spm_encode(const gqr_tokenizer *t, const char *text, size_t len, work *w, char *err,
                      size_t errlen) {
    if (!len)
        return 0;
    size_t m = 0;
    char *s = spm_text(t, text, len, &m);
    if (!s || work_init(w, m)) {
        free(s);
        return gqr_tok_oom(err, errlen);
    }
    int rc = 0;
    for (size_t i = 0; i < m && !rc;) {
        uint32_t cp;
        size_t k = gqr_tok_utf8_decode((const unsigned char *)s + i, m - i, &cp);
        int id = k ? gqr_tok_piece_find(t, s + i, k) : -1;
        if (id >= 0)
            add_symbol(w, (int)i, (int)k, id, 0);
        else
            rc = fall_back(t, w, s, (int)i, k ? (int)k : 1, err, errlen);
        i += k ? k : 1;
    }
    if (!rc && merge_all(t, w, s))
        rc = gqr_tok_oom(err, errlen);
    free(s);
    return rc;
}

/* ---- byte-level BPE encoding ---- */

/* The longest CONTROL or USER piece that s[0..n) starts with, or -1. */
static int special_at(const gqr_tokenizer *t, const char *s, size_t n) {
    unsigned char b = (unsigned char)s[0];
    for (int i = t->special_at[b]; i < t->special_at[b + 1]; i++) {
        const token *k = &t->tok[t->special[i]];
        if (k->piece_len <= n && !memcmp(t->chars + k->piece, s, k->piece_len))
            return t->special[i];
    }
    return -1;
}

/* One word: whole if ignore_merges and the vocabulary has it, else BPE from
 * its bytes' symbols.  buf has room for the mapped word (2 bytes a byte). */
static int bpe_word(const gqr_tokenizer *t, work *w, const char *s, size_t n, char *buf) {
    if (t->ignore_merges) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            m += gqr_tok_utf8_encode_small(t->byte_cp[(unsigned char)s[i]], buf + m);
        int id = gqr_tok_piece_find(t, buf, m);
        if (id >= 0)
            return push_id(&w->out, id);
    }
    w->n_sym = 0;
    for (size_t i = 0; i < n; i++)
        add_symbol(w, (int)i, 1, t->byte_id[(unsigned char)s[i]], 0);
    return merge_all(t, w, s);
}

static int bpe_chunk(const gqr_tokenizer *t, work *w, const gqr_tok_splitter *sp, size_t *ends,
                     char *buf, const char *s, size_t n) {
    size_t words = gqr_tok_words(t->pre, sp, s, n, ends);
    for (size_t i = 0, start = 0; i < words; start = ends[i++])
        if (bpe_word(t, w, s + start, ends[i] - start, buf))
            return -1;
    return 0;
}

static int bpe_encode(const gqr_tokenizer *t, const char *text, size_t len, work *w, char *err,
                      size_t errlen) {
    gqr_tok_splitter sp;
    size_t *ends = malloc((len + 1) * sizeof *ends);
    char *buf = malloc(2 * len + 1);
    int rc = gqr_tok_splitter_init(&sp, len) || work_init(w, len) || !ends || !buf ? -1 : 0;
    for (size_t i = 0; i < len && !rc;) {
        size_t j = i;
        int id = -1;
        while (j < len && (id = special_at(t, text + j, len - j)) < 0)
            j++;
        rc = bpe_chunk(t, w, &sp, ends, buf, text + i, j - i);
        if (id >= 0 && !rc) {
            rc = push_id(&w->out, id);
            j += t->tok[id].piece_len;
        }
        i = j;
    }
    gqr_tok_splitter_free(&sp);
    free(ends);
    free(buf);
    return rc ? gqr_tok_oom(err, errlen) : 0;
}

int gqr_tokenizer_encode(const gqr_tokenizer *t, const char *text, size_t len, int add_bos,
                         int *ids, int cap, int *n, char *err, size_t errlen) {
    *n = 0;
    if (len > MAX_TEXT)
        return gqr_fail(err, errlen, "text of %zu bytes is too long", len);
    if (cap < 0)
        cap = 0;
    work w;
    memset(&w, 0, sizeof w);
    int rc = add_bos && t->bos >= 0 && push_id(&w.out, t->bos) ? gqr_tok_oom(err, errlen) : 0;
    if (!rc && len)
        rc = t->kind == GQR_TOK_SPM ? spm_encode(t, text, len, &w, err, errlen)
                                    : bpe_encode(t, text, len, &w, err, errlen);
    if (!rc) {
        *n = w.out.n;
        int fits = w.out.n < cap ? w.out.n : cap;
        if (fits)
            memcpy(ids, w.out.v, (size_t)fits * sizeof *ids);
        if (w.out.n > cap)
            rc = gqr_fail(err, errlen, "the text takes %d tokens, room for %d", w.out.n, cap);
    }
    work_free(&w);
    free(w.out.v);
    return rc;
}

const char *gqr_tokenizer_decode(const gqr_tokenizer *t, int prev, int id, size_t *len) {
    *len = 0;
    if (id < 0 || id >= t->n)
        return NULL;
    const token *k = &t->tok[id];
    const char *s = t->chars + k->text;
    *len = k->text_len;
    if (t->kind == GQR_TOK_SPM && prev >= 0 && prev == t->bos && *len && s[0] == ' ') {
        s++;
        (*len)--;
    }
    return s;
}

