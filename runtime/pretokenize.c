/*
 * pretokenize.c: the byte-level BPE pre-tokenizers, the regexes that split
 * text into words before BPE, scanned by hand over code points and their
 * Unicode classes.  Provides gqr_tok_split (tokenizer.h) and, to the
 * encoder, UTF-8 decoding and the word splitter.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "tokenizer_int.h"
#include "unicode_tables.h"

/* ---- UTF-8 and character classes ---- */

#define NOT_UTF8 UINT32_MAX

/* The length of the valid UTF-8 sequence at s (n > 0 bytes left), its code
 * point in *cp; 0 if s starts no valid sequence (overlong forms and
 * surrogates included), so the caller can take the byte alone. */
size_t gqr_tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
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
size_t gqr_tok_utf8_encode_small(uint32_t c, char *out) {
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

int gqr_tok_splitter_init(gqr_tok_splitter *sp, size_t n) {
    sp->cp = malloc((n + 1) * sizeof *sp->cp);
    sp->cls = malloc(n + 1);
    sp->off = malloc((n + 1) * sizeof *sp->off);
    return sp->cp && sp->cls && sp->off ? 0 : -1;
}

void gqr_tok_splitter_free(gqr_tok_splitter *sp) {
    free(sp->cp);
    free(sp->cls);
    free(sp->off);
}

/* Splits s[0..n) into words; ends[i] gets the byte offset where word i
 * ends.  Returns the number of words. */
size_t gqr_tok_words(int pre, const gqr_tok_splitter *sp, const char *s, size_t n, size_t *ends) {
    const unsigned char *u = (const unsigned char *)s;
    size_t m = 0, words = 0;
    for (size_t i = 0; i < n; m++) {
        size_t k = gqr_tok_utf8_decode(u + i, n - i, &sp->cp[m]);
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

int gqr_tok_valid_pre(int pre) {
    return pre == GQR_PRE_LLAMA3 || pre == GQR_PRE_GPT2 || pre == GQR_PRE_QWEN2;
}

int gqr_tok_split(int pre, const char *text, size_t len, size_t *ends, int cap, int *n,
                  char *err, size_t errlen) {
    *n = 0;
    if (!gqr_tok_valid_pre(pre))
        return gqr_fail(err, errlen, "unknown pre-tokenizer %d", pre);
    if (len > MAX_TEXT)
        return gqr_fail(err, errlen, "text of %zu bytes is too long", len);
    if (cap < 0)
        cap = 0;
    gqr_tok_splitter sp;
    size_t *all = malloc((len + 1) * sizeof *all);
    if (gqr_tok_splitter_init(&sp, len) || !all) {
        gqr_tok_splitter_free(&sp);
        free(all);
        return gqr_tok_oom(err, errlen);
    }
    size_t words = gqr_tok_words(pre, &sp, text, len, all);
    *n = (int)words;
    if (ends)
        memcpy(ends, all, (words < (size_t)cap ? words : (size_t)cap) * sizeof *ends);
    gqr_tok_splitter_free(&sp);
    free(all);
    if (words > (size_t)cap)
        return gqr_fail(err, errlen, "%zu words do not fit in %d", words, cap);
    return 0;
}

