/*
 * tokenizer_int.h: what the tokenizer's files share and nothing else
 * includes: the tokenizer's layout and one section per file of what it
 * exports to the others.  The component's header is tokenizer.h.
 *
 *   pretokenize.c     UTF-8, Unicode classes, the pre-tokenizer regexes
 *   vocab.c           gqr_tokenizer_new: pieces, merges, decoded bytes
 *   tokenize.c        the merge engine: encode, decode
 *   tokenizer_load.c  tokenizer.bin and tokenizer.json
 */
#ifndef GQR_TOKENIZER_INT_H
#define GQR_TOKENIZER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "fail.h"
#include "tokenizer.h"

#define BAR "\xE2\x96\x81" /* U+2581, SentencePiece's space */
/* Longer texts are refused rather than risking int overflow in ids. */
#define MAX_TEXT ((size_t)1 << 28)

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

static inline int gqr_tok_oom(char *err, size_t errlen) {
    return gqr_fail(err, errlen, "out of memory");
}

/* ---- pretokenize.c ---- */

/* Scratch for splitting up to n bytes. */
typedef struct gqr_tok_splitter {
    uint32_t *cp;
    unsigned char *cls;
    size_t *off; /* byte offset of each code point, and the end */
} gqr_tok_splitter;

/* The length of the valid UTF-8 sequence at s (n > 0 bytes left), its code
 * point in *cp; 0 if s starts no valid sequence (overlong forms and
 * surrogates included), so the caller can take the byte alone. */
size_t gqr_tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Code points below 0x800, all the byte-to-unicode mapping needs. */
size_t gqr_tok_utf8_encode_small(uint32_t c, char *out);
int gqr_tok_valid_pre(int pre);
int gqr_tok_splitter_init(gqr_tok_splitter *sp, size_t n);
void gqr_tok_splitter_free(gqr_tok_splitter *sp);
/* Splits s[0..n) by pre-tokenizer pre into words; ends[i] gets the byte
 * offset where word i ends.  Returns the number of words. */
size_t gqr_tok_words(int pre, const gqr_tok_splitter *sp, const char *s, size_t n, size_t *ends);

/* ---- vocab.c ---- */

/* The id of piece s (n bytes) among NORMAL and USER pieces, or -1. */
int gqr_tok_piece_find(const gqr_tokenizer *t, const char *s, size_t n);
/* The slot of merge (left, right), or else the empty slot where it would go. */
merge *gqr_tok_merge_slot(const gqr_tokenizer *t, int left, int right);
/* <0xXX>: the byte, or -1. */
int gqr_tok_byte_piece(const char *p, size_t n);

#endif
