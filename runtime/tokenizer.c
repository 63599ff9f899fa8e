/*
 * tokenizer.c: SentencePiece-style and byte-level BPE tokenizers.
 *
 * Both encoders are one merge engine: a doubly linked list of symbols over
 * the text and a max-heap of the adjacent pairs that may merge, so a merge
 * costs O(log n) instead of llama2.c's rescan of the whole prompt.  Heap
 * entries go stale as their symbols merge; they are checked when popped
 * rather than removed.  SPM ranks a pair by the score of the piece it
 * spells, BPE by the rank of the merge of its two tokens; ties go to the
 * leftmost pair, as in llama2.c, SentencePiece and Hugging Face.
 *
 * Every token's decoded bytes are worked out once, when the tokenizer is
 * built, so decoding is a lookup.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "tokenizer.h"
#include "unicode_tables.h"

/* Longer texts are refused rather than risking int overflow in ids. */
#define MAX_TEXT ((size_t)1 << 28)
/* tokenizer.json ids beyond this are taken as corruption, not allocated. */
#define MAX_JSON_ID (1 << 24)

typedef struct token {
    size_t piece, text;         /* offsets into chars: the piece, its decoded bytes */
    size_t piece_len, text_len;
    float score;
    int type;
} token;

typedef struct merge {
    int left, right; /* left < 0: empty slot */
    int rank, id;
} merge;

struct gqr_tokenizer {
    int kind, n, bos, eos, unk, pre, ignore_merges;
    int bar;             /* SPM: the pieces spell a space "▁" */
    token *tok;
    char *chars;         /* every piece and decoded piece, NUL-terminated */
    int *pieces;         /* hash of NORMAL and USER pieces to ids; -1 empty */
    size_t piece_mask;
    merge *merges;       /* BPE: hash of (left, right) to rank and result */
    size_t merge_mask;
    int byte_id[256];    /* SPM: <0xXX>; BPE: the byte's symbol; -1 none */
    uint32_t byte_cp[256];   /* BPE: GPT-2's code point for each byte */
    int16_t cp_byte[324];    /* and back; -1 for the code points it leaves alone */
    int *special;        /* BPE: CONTROL and USER ids by first byte, longest first */
    int special_at[257]; /* special[special_at[b] .. special_at[b + 1]) start with b */
};

static int oom(char *err, size_t errlen) {
    return gqr_fail(err, errlen, "out of memory");
}

/* ---- UTF-8 and character classes ---- */

#define BAR "\xE2\x96\x81" /* U+2581, SentencePiece's space */
#define NOT_UTF8 UINT32_MAX

/* The length of the valid UTF-8 sequence at s (n > 0 bytes left), its code
 * point in *cp; 0 if s starts no valid sequence (overlong forms and
 * surrogates included), so the caller can take the byte alone. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t k = s[0] < 0x80 ? 1 : s[0] < 0xC2 ? 0 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 :
               s[0] < 0xF5 ? 4 : 0;
    if (!k || k > n)
        return 0;
    uint32_t c = k == 1 ? s[0] : s[0] & (0x7F >> k);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    if (c < min[k] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return k;
}

/* Code points below 0x800, all the byte-to-unicode mapping needs. */
static size_t utf8_encode_small(uint32_t c, char *out) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = (char)(0xC0 | c >> 6);
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
}

enum { C_OTHER, C_LETTER, C_NUMBER, C_SPACE };

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid][0])
            hi = mid;
        else if (c > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* Unicode White_Space, which is what \s means to the regex engines. */
static int is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Invalid bytes (NOT_UTF8) fall in none of the tables: they are C_OTHER. */
static int classify(uint32_t c) {
    if (is_space(c))
        return C_SPACE;
    if (in_ranges(uni_letter, sizeof uni_letter / sizeof *uni_letter, c))
        return C_LETTER;
    if (in_ranges(uni_number, sizeof uni_number / sizeof *uni_number, c))
        return C_NUMBER;
    return C_OTHER;
}

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

/* ---- the pre-tokenizers ---- */

static int is_nl(uint32_t c) {
    return c == '\r' || c == '\n';
}

static size_t run(const unsigned char *cls, size_t i, size_t n, int c) {
    while (i < n && cls[i] == c)
        i++;
    return i;
}

/* 'ſ' (U+017F) case-folds to 's' in Unicode, as (?i:) has it. */
static uint32_t fold(uint32_t c, int icase) {
    if (!icase)
        return c;
    if (c == 0x17F)
        return 's';
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d at i: where it ends, or i. */
static size_t contraction(const uint32_t *cp, size_t i, size_t n, int icase) {
    if (cp[i] != '\'' || i + 1 >= n)
        return i;
    uint32_t a = fold(cp[i + 1], icase), b = i + 2 < n ? fold(cp[i + 2], icase) : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return i + 3;
    return i;
}

/* Where the regex's match at code point i ends.  The alternatives in order:
 *   LLAMA3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   QWEN2   the same with \p{N}
 *   GPT2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Every code point is a letter, number, space or other, so one of them
 * always matches and words tile the text. */
static size_t scan_word(int pre, const uint32_t *cp, const unsigned char *cls, size_t i,
                        size_t n) {
    int gpt2 = pre == GQR_PRE_GPT2;
    size_t j = contraction(cp, i, n, !gpt2);
    if (j > i)
        return j;
    int lead = gpt2 ? cp[i] == ' ' : cls[i] != C_LETTER && cls[i] != C_NUMBER && !is_nl(cp[i]);
    j = i + (lead && i + 1 < n && cls[i + 1] == C_LETTER);
    if (cls[j] == C_LETTER)
        return run(cls, j, n, C_LETTER);
    if (gpt2) {
        j = i + (cp[i] == ' ' && i + 1 < n && cls[i + 1] == C_NUMBER);
        if (cls[j] == C_NUMBER)
            return run(cls, j, n, C_NUMBER);
    } else if (cls[i] == C_NUMBER) {
        size_t most = pre == GQR_PRE_QWEN2 ? 1 : 3;
        for (j = i; j < n && j - i < most && cls[j] == C_NUMBER; j++)
            ;
        return j;
    }
    j = i + (cp[i] == ' ' && i + 1 < n && cls[i + 1] == C_OTHER);
    if (cls[j] == C_OTHER) {
        j = run(cls, j, n, C_OTHER);
        while (!gpt2 && j < n && is_nl(cp[j]))
            j++;
        return j;
    }
    /* Whitespace.  \s*[\r\n]+ backtracks to the run's last newline; \s+(?!\S)
     * leaves the last space of a run to the word that follows it. */
    j = run(cls, i, n, C_SPACE);
    for (size_t k = j; !gpt2 && k > i; k--)
        if (is_nl(cp[k - 1]))
            return k;
    return j == n || j - i == 1 ? j : j - 1;
}

/* Scratch for splitting up to n bytes. */
typedef struct splitter {
    uint32_t *cp;
    unsigned char *cls;
    size_t *off; /* byte offset of each code point, and the end */
} splitter;

static int splitter_init(splitter *sp, size_t n) {
    sp->cp = malloc((n + 1) * sizeof *sp->cp);
    sp->cls = malloc(n + 1);
    sp->off = malloc((n + 1) * sizeof *sp->off);
    return sp->cp && sp->cls && sp->off ? 0 : -1;
}

static void splitter_free(splitter *sp) {
    free(sp->cp);
    free(sp->cls);
    free(sp->off);
}

/* Splits s[0..n) into words; ends[i] gets the byte offset where word i
 * ends.  Returns the number of words. */
static size_t split(int pre, const splitter *sp, const char *s, size_t n, size_t *ends) {
    const unsigned char *u = (const unsigned char *)s;
    size_t m = 0, words = 0;
    for (size_t i = 0; i < n; m++) {
        size_t k = utf8_decode(u + i, n - i, &sp->cp[m]);
        if (!k) {
            sp->cp[m] = NOT_UTF8;
            k = 1;
        }
        sp->cls[m] = (unsigned char)classify(sp->cp[m]);
        sp->off[m] = i;
        i += k;
    }
    sp->off[m] = n;
    for (size_t i = 0; i < m;) {
        i = scan_word(pre, sp->cp, sp->cls, i, m);
        ends[words++] = sp->off[i];
    }
    return words;
}

static int valid_pre(int pre) {
    return pre == GQR_PRE_LLAMA3 || pre == GQR_PRE_GPT2 || pre == GQR_PRE_QWEN2;
}

int gqr_tok_split(int pre, const char *text, size_t len, size_t *ends, int cap, int *n,
                  char *err, size_t errlen) {
    *n = 0;
    if (!valid_pre(pre))
        return gqr_fail(err, errlen, "unknown pre-tokenizer %d", pre);
    if (len > MAX_TEXT)
        return gqr_fail(err, errlen, "text of %zu bytes is too long", len);
    if (cap < 0)
        cap = 0;
    splitter sp;
    size_t *all = malloc((len + 1) * sizeof *all);
    if (splitter_init(&sp, len) || !all) {
        splitter_free(&sp);
        free(all);
        return oom(err, errlen);
    }
    size_t words = split(pre, &sp, text, len, all);
    *n = (int)words;
    if (ends)
        memcpy(ends, all, (words < (size_t)cap ? words : (size_t)cap) * sizeof *ends);
    splitter_free(&sp);
    free(all);
    if (words > (size_t)cap)
        return gqr_fail(err, errlen, "%zu words do not fit in %d", words, cap);
    return 0;
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

static int piece_find(const gqr_tokenizer *t, const char *s, size_t n) {
    return t->pieces[piece_slot(t, s, n)];
}

static merge *merge_slot(const gqr_tokenizer *t, int left, int right) {
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
    if (s->kind == GQR_TOK_BPE && !valid_pre(s->pretokenizer))
        return gqr_fail(err, errlen, "unknown pre-tokenizer %d", s->pretokenizer);
    if (s->n_merges < 0 || (s->n_merges && (!s->merges || !s->merge_lens)))
        return gqr_fail(err, errlen, "bad merge list");
    if (s->bos_id < -1 || s->bos_id >= s->n_tokens || s->eos_id < -1 || s->eos_id >= s->n_tokens)
        return gqr_fail(err, errlen, "BOS %d or EOS %d is not a token of %d", s->bos_id, s->eos_id,
                    s->n_tokens);
    return 0;
}

/* <0xXX>: the byte, or -1. */
static int byte_piece(const char *p, size_t n) {
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
        size_t k = utf8_decode((const unsigned char *)p + i, n - i, &c);
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
    int b = byte_piece(p, k->piece_len);
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
            int b = byte_piece(t->chars + t->tok[i].piece, t->tok[i].piece_len);
            if (b >= 0)
                t->byte_id[b] = i;
        }
        return 0;
    }
    for (int b = 0; b < 256; b++) {
        char sym[2];
        t->byte_id[b] = piece_find(t, sym, utf8_encode_small(t->byte_cp[b], sym));
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
    int left = piece_find(t, m, ln), right = piece_find(t, space + 1, rn);
    int id = piece_find(t, buf, ln + rn);
    if (left < 0 || right < 0 || id < 0)
        return gqr_fail(err, errlen, "merge %d '%.*s': '%.*s' is not in the vocabulary", rank, (int)n,
                    m, left < 0 ? (int)ln : right < 0 ? (int)rn : (int)(ln + rn),
                    left < 0 ? m : right < 0 ? space + 1 : buf);
    merge *slot = merge_slot(t, left, right);
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
        return oom(err, errlen);
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
    return piece_find(t, "<unk>", 5);
}

int gqr_tokenizer_new(gqr_tokenizer **out, const gqr_vocab_spec *spec, char *err, size_t errlen) {
    *out = NULL;
    if (check_spec(spec, err, errlen))
        return -1;
    gqr_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return oom(err, errlen);
    t->kind = spec->kind;
    t->n = spec->n_tokens;
    t->bos = spec->bos_id;
    t->eos = spec->eos_id;
    t->pre = spec->pretokenizer;
    t->ignore_merges = spec->ignore_merges;
    map_bytes(t);
    int rc = copy_tokens(t, spec) || index_pieces(t) ? oom(err, errlen)
                                                     : find_byte_ids(t, err, errlen);
    if (!rc && t->kind == GQR_TOK_BPE)
        rc = index_merges(t, spec, err, errlen);
    if (!rc && t->kind == GQR_TOK_BPE && index_specials(t))
        rc = oom(err, errlen);
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
        g.id = piece_find(t, text + a->start, (size_t)g.size);
        if (g.id < 0)
            return;
        g.score = t->tok[g.id].score;
    } else {
        const merge *m = merge_slot(t, a->id, b->id);
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
        return oom(err, errlen);
    }
    int rc = 0;
    for (size_t i = 0; i < m && !rc;) {
        uint32_t cp;
        size_t k = utf8_decode((const unsigned char *)s + i, m - i, &cp);
        int id = k ? piece_find(t, s + i, k) : -1;
        if (id >= 0)
            add_symbol(w, (int)i, (int)k, id, 0);
        else
            rc = fall_back(t, w, s, (int)i, k ? (int)k : 1, err, errlen);
        i += k ? k : 1;
    }
    if (!rc && merge_all(t, w, s))
        rc = oom(err, errlen);
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
            m += utf8_encode_small(t->byte_cp[(unsigned char)s[i]], buf + m);
        int id = piece_find(t, buf, m);
        if (id >= 0)
            return push_id(&w->out, id);
    }
    w->n_sym = 0;
    for (size_t i = 0; i < n; i++)
        add_symbol(w, (int)i, 1, t->byte_id[(unsigned char)s[i]], 0);
    return merge_all(t, w, s);
}

static int bpe_chunk(const gqr_tokenizer *t, work *w, const splitter *sp, size_t *ends,
                     char *buf, const char *s, size_t n) {
    size_t words = split(t->pre, sp, s, n, ends);
    for (size_t i = 0, start = 0; i < words; start = ends[i++])
        if (bpe_word(t, w, s + start, ends[i] - start, buf))
            return -1;
    return 0;
}

static int bpe_encode(const gqr_tokenizer *t, const char *text, size_t len, work *w, char *err,
                      size_t errlen) {
    splitter sp;
    size_t *ends = malloc((len + 1) * sizeof *ends);
    char *buf = malloc(2 * len + 1);
    int rc = splitter_init(&sp, len) || work_init(w, len) || !ends || !buf ? -1 : 0;
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
    splitter_free(&sp);
    free(ends);
    free(buf);
    return rc ? oom(err, errlen) : 0;
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
    int rc = add_bos && t->bos >= 0 && push_id(&w.out, t->bos) ? oom(err, errlen) : 0;
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

/* ---- files ---- */

static int read_file(const char *path, char **data, size_t *size, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return gqr_fail(err, errlen, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    /* Read to EOF rather than trust a size: pipes and /proc files work too. */
    while (buf && (n += fread(buf + n, 1, cap - n, f)) == cap) {
        char *grown = realloc(buf, cap * 2);
        if (!grown)
            free(buf);
        buf = grown;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf)
        return gqr_fail(err, errlen, "%s: out of memory", path);
    if (bad) {
        free(buf);
        return gqr_fail(err, errlen, "%s: read error", path);
    }
    *data = buf;
    *size = n;
    return 0;
}

static int32_t rd_i32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static float rd_f32(const unsigned char *p) {
    int32_t i = rd_i32(p);
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

/* Walks tokenizer.bin's records; with the arrays, fills them.  The count
 * of tokens, or -1 with a message. */
static int bin_records(const char *path, const unsigned char *b, size_t size, const char **pieces,
                       size_t *lens, float *scores, char *err, size_t errlen) {
    if (size < 4)
        return gqr_fail(err, errlen, "%s: truncated: no header", path);
    int32_t max_len = rd_i32(b);
    if (max_len <= 0 || max_len > 1 << 16)
        return gqr_fail(err, errlen, "%s: max_token_length %d: not a llama2.c tokenizer.bin", path,
                    (int)max_len);
    int n = 0;
    for (size_t at = 4; at < size; n++) {
        if (n == INT32_MAX)
            return gqr_fail(err, errlen, "%s: too many tokens", path);
        if (size - at < 8)
            return gqr_fail(err, errlen, "%s: truncated in token %d", path, n);
        int32_t len = rd_i32(b + at + 4);
        if (len < 0 || len > max_len)
            return gqr_fail(err, errlen, "%s: token %d has length %d (max_token_length %d)", path, n,
                        (int)len, (int)max_len);
        if (size - at - 8 < (size_t)len)
            return gqr_fail(err, errlen, "%s: truncated in token %d", path, n);
        if (pieces) {
            scores[n] = rd_f32(b + at);
            pieces[n] = (const char *)b + at + 8;
            lens[n] = (size_t)len;
        }
        at += 8 + (size_t)len;
    }
    return n;
}

static int is(const char *p, size_t n, const char *s) {
    return n == strlen(s) && !memcmp(p, s, n);
}

/* llama2.c's export keeps no types: they follow from the names.  It writes
 * BOS and EOS as "\n<s>\n" and "\n</s>\n"; other exports keep "<s>". */
static int bin_type(const char *p, size_t n) {
    if (is(p, n, "<unk>"))
        return GQR_TT_UNKNOWN;
    if (is(p, n, "<s>") || is(p, n, "</s>") || is(p, n, "\n<s>\n") || is(p, n, "\n</s>\n"))
        return GQR_TT_CONTROL;
    return byte_piece(p, n) >= 0 ? GQR_TT_BYTE : GQR_TT_NORMAL;
}

/* The first of the pieces a or b, or -1. */
static int find_piece(const char *const *pieces, const size_t *lens, int n, const char *a,
                      const char *b) {
    for (int i = 0; i < n; i++)
        if (is(pieces[i], lens[i], a) || is(pieces[i], lens[i], b))
            return i;
    return -1;
}

/* gqr_tokenizer_new, its message prefixed with the file's name. */
static int new_from(gqr_tokenizer **out, const gqr_vocab_spec *spec, const char *path, char *err,
                    size_t errlen) {
    char why[256];
    if (gqr_tokenizer_new(out, spec, why, sizeof why))
        return gqr_fail(err, errlen, "%s: %s", path, why);
    return 0;
}

static int load_bin(gqr_tokenizer **out, const char *path, const unsigned char *b, size_t size,
                    int vocab_size, char *err, size_t errlen) {
    int n = bin_records(path, b, size, NULL, NULL, NULL, err, errlen);
    if (n < 0)
        return -1;
    if (n == 0)
        return gqr_fail(err, errlen, "%s: no tokens", path);
    if (vocab_size && n != vocab_size)
        return gqr_fail(err, errlen, "%s has %d tokens, the model's vocab_size is %d", path, n,
                    vocab_size);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    float *scores = malloc((size_t)n * sizeof *scores);
    int *types = malloc((size_t)n * sizeof *types);
    int rc = -1;
    if (!pieces || !lens || !scores || !types) {
        oom(err, errlen);
    } else {
        bin_records(path, b, size, pieces, lens, scores, err, errlen);
        for (int i = 0; i < n; i++)
            types[i] = bin_type(pieces[i], lens[i]);
        gqr_vocab_spec spec = {.kind = GQR_TOK_SPM, .n_tokens = n, .pieces = pieces,
                               .piece_lens = lens, .scores = scores, .types = types,
                               .bos_id = find_piece(pieces, lens, n, "\n<s>\n", "<s>"),
                               .eos_id = find_piece(pieces, lens, n, "\n</s>\n", "</s>")};
        rc = new_from(out, &spec, path, err, errlen);
    }
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return rc;
}

/* ---- tokenizer.json ---- */

#ifdef GQR_NO_CJSON
static int load_json(gqr_tokenizer **out, const char *path, const char *text, size_t size,
                     int vocab_size, char *err, size_t errlen) {
    (void)out, (void)text, (void)size, (void)vocab_size;
    return gqr_fail(err, errlen, "%s: tokenizer.json needs JSON, and this runtime was built without "
                "cJSON (GQR_NO_CJSON)", path);
}
#else
#include <cjson/cJSON.h>

/* The regexes of the Split pre-tokenizers we scan by hand, as JSON holds them. */
static const char *const pre_regex[] = {
    [GQR_PRE_LLAMA3] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                       "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    [GQR_PRE_GPT2] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
                     "\\s+(?!\\S)|\\s+",
    [GQR_PRE_QWEN2] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                      "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

/* The item's "type" string, or "". */
static const char *type_of(const cJSON *item) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "type"));
    return s ? s : "";
}

static int flag(const cJSON *item, const char *key, int otherwise) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : otherwise;
}

/* ByteLevel is the byte mapping; with use_regex it also splits GPT-2's way. */
static int byte_level(const cJSON *p, int *pre, const char *path, char *err, size_t errlen) {
    if (flag(p, "add_prefix_space", 0))
        return gqr_fail(err, errlen, "%s: ByteLevel add_prefix_space is not supported", path);
    if (flag(p, "use_regex", 1)) {
        if (*pre)
            return gqr_fail(err, errlen, "%s: two pre-tokenizer regexes", path);
        *pre = GQR_PRE_GPT2;
    }
    return 0;
}

static int split_regex(const cJSON *p, int *pre, const char *path, char *err, size_t errlen) {
    const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const char *re = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pattern, "Regex"));
    if (!re || flag(p, "invert", 0))
        return gqr_fail(err, errlen, "%s: unsupported Split pre-tokenizer", path);
    if (*pre)
        return gqr_fail(err, errlen, "%s: two pre-tokenizer regexes", path);
    for (int i = GQR_PRE_LLAMA3; i <= GQR_PRE_QWEN2; i++)
        if (!strcmp(re, pre_regex[i]))
            *pre = i;
    if (!*pre)
        return gqr_fail(err, errlen, "%s: unknown pre-tokenizer regex '%.80s'", path, re);
    return 0;
}

/* The GQR_PRE_* of the file's pre_tokenizer: ByteLevel alone (GPT-2), or a
 * Sequence of a known Split regex and a ByteLevel. */
static int json_pre(const cJSON *root, int *pre, const char *path, char *err, size_t errlen) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    int is_seq = !strcmp(type_of(p), "Sequence"), bytes = 0;
    int n = is_seq ? cJSON_GetArraySize(seq) : 1;
    *pre = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *q = is_seq ? cJSON_GetArrayItem(seq, i) : p;
        const char *type = type_of(q);
        int rc = !strcmp(type, "ByteLevel") ? (bytes = 1, byte_level(q, pre, path, err, errlen))
                 : !strcmp(type, "Split")   ? split_regex(q, pre, path, err, errlen)
                 : gqr_fail(err, errlen, "%s: unsupported pre-tokenizer '%s'", path,
                        *type ? type : "(none)");
        if (rc)
            return -1;
    }
    if (!bytes || !*pre)
        return gqr_fail(err, errlen, "%s: not a byte-level BPE pre-tokenizer", path);
    return 0;
}

typedef struct json_vocab {
    int n;               /* ids: the file's, or the model's if more */
    const char **pieces; /* into the cJSON tree */
    size_t *lens;
    int *types;
    const char **merges;
    size_t *merge_lens;
    char *merge_text;    /* "left right" built from [left, right] pairs */
    int n_merges;
} json_vocab;

static void json_vocab_free(json_vocab *v) {
    free(v->pieces);
    free(v->lens);
    free(v->types);
    free(v->merges);
    free(v->merge_lens);
    free(v->merge_text);
}

/* An id in [0, MAX_JSON_ID), or -1. */
static int json_id(const cJSON *item) {
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0 && item->valuedouble < MAX_JSON_ID) ||
        item->valuedouble != (int)item->valuedouble)
        return -1;
    return (int)item->valuedouble;
}

/* The largest id in *top (-1: none). */
static int max_id(const cJSON *vocab, const cJSON *added, int *top, const char *path, char *err,
                  size_t errlen) {
    *top = -1;
    const cJSON *item;
    cJSON_ArrayForEach(item, vocab) {
        int id = json_id(item);
        if (id < 0)
            return gqr_fail(err, errlen, "%s: bad id for '%.40s'", path, item->string);
        *top = id > *top ? id : *top;
    }
    cJSON_ArrayForEach(item, added) {
        int id = json_id(cJSON_GetObjectItemCaseSensitive(item, "id"));
        if (id < 0 || !cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "content")))
            return gqr_fail(err, errlen, "%s: bad entry in added_tokens", path);
        *top = id > *top ? id : *top;
    }
    return 0;
}

static int put_piece(json_vocab *v, int id, const char *s, int type, const char *path, char *err,
                     size_t errlen) {
    size_t n = strlen(s);
    if (v->pieces[id] && (v->lens[id] != n || memcmp(v->pieces[id], s, n)))
        return gqr_fail(err, errlen, "%s: id %d is both '%.40s' and '%.40s'", path, id,
                    v->pieces[id], s);
    v->pieces[id] = s;
    v->lens[id] = n;
    v->types[id] = type;
    return 0;
}

static int json_pieces(json_vocab *v, const cJSON *vocab, const cJSON *added, int vocab_size,
                       const char *path, char *err, size_t errlen) {
    int top;
    if (!cJSON_IsObject(vocab))
        return gqr_fail(err, errlen, "%s: model.vocab is missing", path);
    if (max_id(vocab, added, &top, path, err, errlen))
        return -1;
    if (top < 0)
        return gqr_fail(err, errlen, "%s: empty vocabulary", path);
    if (vocab_size && vocab_size <= top)
        return gqr_fail(err, errlen, "%s has %d tokens, the model's vocab_size is %d", path, top + 1,
                    vocab_size);
    v->n = vocab_size > top ? vocab_size : top + 1;
    v->pieces = calloc((size_t)v->n, sizeof *v->pieces);
    v->lens = calloc((size_t)v->n, sizeof *v->lens);
    v->types = malloc((size_t)v->n * sizeof *v->types);
    if (!v->pieces || !v->lens || !v->types)
        return oom(err, errlen);
    for (int i = 0; i < v->n; i++)
        v->types[i] = GQR_TT_UNUSED;
    const cJSON *item;
    cJSON_ArrayForEach(item, vocab) {
        if (v->pieces[json_id(item)])
            return gqr_fail(err, errlen, "%s: id %d appears twice", path, json_id(item));
        put_piece(v, json_id(item), item->string, GQR_TT_NORMAL, path, err, errlen);
    }
    cJSON_ArrayForEach(item, added) {
        int id = json_id(cJSON_GetObjectItemCaseSensitive(item, "id"));
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "content"));
        if (put_piece(v, id, s, flag(item, "special", 0) ? GQR_TT_CONTROL : GQR_TT_USER, path,
                      err, errlen))
            return -1;
    }
    return 0;
}

/* The halves of merge i: "left right", or ["left", "right"]. */
static int merge_parts(const cJSON *m, const char **l, const char **r) {
    if (cJSON_IsString(m)) {
        *l = m->valuestring;
        *r = NULL;
        return 0;
    }
    *l = cJSON_GetStringValue(cJSON_GetArrayItem(m, 0));
    *r = cJSON_GetStringValue(cJSON_GetArrayItem(m, 1));
    return *l && *r && cJSON_GetArraySize(m) == 2 ? 0 : -1;
}

static int json_merges(json_vocab *v, const cJSON *merges, const char *path, char *err,
                       size_t errlen) {
    if (!cJSON_IsArray(merges))
        return gqr_fail(err, errlen, "%s: model.merges is missing", path);
    v->n_merges = cJSON_GetArraySize(merges);
    size_t total = 1, at = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *l, *r;
        if (merge_parts(m, &l, &r))
            return gqr_fail(err, errlen, "%s: a merge is neither \"a b\" nor [\"a\", \"b\"]", path);
        total += r ? strlen(l) + strlen(r) + 2 : 0;
    }
    v->merges = malloc(((size_t)v->n_merges + 1) * sizeof *v->merges);
    v->merge_lens = malloc(((size_t)v->n_merges + 1) * sizeof *v->merge_lens);
    v->merge_text = malloc(total);
    if (!v->merges || !v->merge_lens || !v->merge_text)
        return oom(err, errlen);
    int i = 0;
    cJSON_ArrayForEach(m, merges) {
        const char *l, *r;
        merge_parts(m, &l, &r);
        if (r) {
            v->merge_lens[i] = (size_t)sprintf(v->merge_text + at, "%s %s", l, r);
            v->merges[i] = v->merge_text + at;
            at += v->merge_lens[i] + 1;
        } else {
            v->merges[i] = l;
            v->merge_lens[i] = strlen(l);
        }
        i++;
    }
    return 0;
}

/* The first of names that is a piece, or -1. */
static int first_piece(const json_vocab *v, const char *const *names) {
    for (; *names; names++) {
        for (int i = 0; i < v->n; i++)
            if (v->pieces[i] && !strcmp(v->pieces[i], *names) && v->lens[i] == strlen(*names))
                return i;
    }
    return -1;
}

static int json_model(const cJSON *root, const cJSON **model, const char *path, char *err,
                      size_t errlen) {
    *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (strcmp(type_of(*model), "BPE"))
        return gqr_fail(err, errlen, "%s: model.type is '%s', only byte-level BPE is supported", path,
                    type_of(*model));
    if (flag(*model, "byte_fallback", 0))
        return gqr_fail(err, errlen, "%s: a BPE with byte_fallback (SentencePiece style) is not "
                    "supported; use tokenizer.bin or GGUF", path);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm) && strcmp(type_of(norm), "NFC"))
        return gqr_fail(err, errlen, "%s: unsupported normalizer '%s'", path, type_of(norm));
    return 0;
}

static int load_json(gqr_tokenizer **out, const char *path, const char *text, size_t size,
                     int vocab_size, char *err, size_t errlen) {
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", NULL};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", NULL};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    if (!root)
        return gqr_fail(err, errlen, "%s: not valid JSON (at byte %ld)", path,
                    end ? (long)(end - text) : 0L);
    const cJSON *model;
    json_vocab v;
    memset(&v, 0, sizeof v);
    int pre = 0, rc = -1;
    if (!json_model(root, &model, path, err, errlen) && !json_pre(root, &pre, path, err, errlen) &&
        !json_pieces(&v, cJSON_GetObjectItemCaseSensitive(model, "vocab"),
                     cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), vocab_size, path,
                     err, errlen) &&
        !json_merges(&v, cJSON_GetObjectItemCaseSensitive(model, "merges"), path, err, errlen)) {
        gqr_vocab_spec spec = {.kind = GQR_TOK_BPE, .n_tokens = v.n, .pieces = v.pieces,
                               .piece_lens = v.lens, .types = v.types, .n_merges = v.n_merges,
                               .merges = v.merges, .merge_lens = v.merge_lens,
                               .bos_id = first_piece(&v, bos_names),
                               .eos_id = first_piece(&v, eos_names), .pretokenizer = pre,
                               .ignore_merges = flag(model, "ignore_merges", 0)};
        rc = new_from(out, &spec, path, err, errlen);
    }
    json_vocab_free(&v);
    cJSON_Delete(root);
    return rc;
}

#endif /* GQR_NO_CJSON */

/* JSON starts with '{' (after any whitespace) and holds no NUL; tokenizer.bin
 * starts with a small little-endian int32, so its fourth byte is 0. */
static int looks_json(const char *s, size_t n) {
    if (memchr(s, 0, n < 4 ? n : 4))
        return 0;
    while (n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
        s++;
        n--;
    }
    return n && *s == '{';
}

int gqr_tokenizer_load(gqr_tokenizer **out, const char *path, int vocab_size, char *err,
                       size_t errlen) {
    *out = NULL;
    if (vocab_size < 0)
        return gqr_fail(err, errlen, "%s: vocab_size %d is negative", path, vocab_size);
    char *data = NULL;
    size_t size = 0;
    if (read_file(path, &data, &size, err, errlen))
        return -1;
    int rc = looks_json(data, size)
                 ? load_json(out, path, data, size, vocab_size, err, errlen)
                 : load_bin(out, path, (const unsigned char *)data, size, vocab_size, err, errlen);
    free(data);
    return rc;
}
