/*
 * tokenizer.h: text to token ids and back, for the two families the
 * supported models use:
 *
 *   GQR_TOK_SPM  SentencePiece-style BPE over scored pieces with byte
 *                fallback (Llama 2; llama2.c's tokenizer.bin, GGUF "llama").
 *   GQR_TOK_BPE  GPT-2 style byte-level BPE over ranked merges (Llama 3,
 *                Qwen2, GPT-2; tokenizer.json, GGUF "gpt2").
 *
 * Conventions as in gqr.h: 0 on success, -1 with a message in the caller's
 * err buffer (errlen bytes, may be 0) on failure; nothing is printed.  A
 * tokenizer is read-only once built, so threads may share one.
 */
#ifndef GQR_TOKENIZER_H
#define GQR_TOKENIZER_H

#include <stddef.h>

typedef struct gqr_tokenizer gqr_tokenizer;

enum {
    GQR_TOK_SPM = 1, /* SentencePiece-style BPE with scores, byte fallback */
    GQR_TOK_BPE = 2  /* byte-level BPE with merges */
};

/* Token types, GGUF's numbering (tokenizer.ggml.token_type). */
enum {
    GQR_TT_NORMAL = 1,
    GQR_TT_UNKNOWN = 2,
    GQR_TT_CONTROL = 3, /* <s>, <|eot_id|>: decode to "" */
    GQR_TT_USER = 4,    /* added text, matched whole in the input (BPE) */
    GQR_TT_UNUSED = 5,  /* padding ids: decode to "", never produced */
    GQR_TT_BYTE = 6     /* SPM <0xXX> */
};

/* Byte-level BPE pre-tokenizers: the regex that splits text into words
 * before BPE, scanned by hand.  QWEN2 is LLAMA3 with single digits. */
enum {
    GQR_PRE_LLAMA3 = 1, /* \p{N}{1,3}, case-insensitive contractions, newline runs */
    GQR_PRE_GPT2 = 2,   /* GPT-2's original: ' ?\p{L}+| ?\p{N}+|...' */
    GQR_PRE_QWEN2 = 3   /* LLAMA3 with \p{N} */
};

typedef struct gqr_vocab_spec {
    int kind;                   /* GQR_TOK_* */
    int n_tokens;
    const char *const *pieces;  /* n_tokens strings, bytes as stored in the file; an entry
                                   may be NULL when its length is 0 (an unused id) */
    const size_t *piece_lens;   /* their lengths (pieces need not be NUL-terminated) */
    const float *scores;        /* SPM: n_tokens merge scores; NULL otherwise */
    const int *types;           /* n_tokens GQR_TT_* or NULL (all normal) */
    int n_merges;               /* BPE: "left right" strings (split at the first space),
                                   rank = index */
    const char *const *merges;
    const size_t *merge_lens;
    int bos_id, eos_id;         /* -1: none */
    int pretokenizer;           /* BPE: GQR_PRE_* */
    int ignore_merges;          /* BPE: a word that is itself in the vocab is one token
                                   (tokenizer.json's model.ignore_merges; GGUF has no key
                                   for it and llama.cpp sets it for the llama3 pre-tokenizer) */
} gqr_vocab_spec;

/* Builds a tokenizer from arrays (the GGUF loader uses this); copies what it
 * keeps, so spec's arrays may be freed afterwards.
 *
 * SPM: pieces may spell spaces as U+2581 "▁" (GGUF, SentencePiece) or as
 * plain spaces (llama2.c's export); either works.  Byte fallback uses the
 * pieces named <0xXX>.  Only NORMAL and USER pieces are merge results.
 * BPE: the vocabulary must hold the symbol of each of the 256 bytes, and
 * every merge's halves and result must be pieces.  CONTROL and USER pieces
 * found literally in the text are encoded whole (longest first), before
 * pre-tokenizing. */
int gqr_tokenizer_new(gqr_tokenizer **out, const gqr_vocab_spec *spec, char *err, size_t errlen);

/* Loads llama2.c's tokenizer.bin or a Hugging Face tokenizer.json, told
 * apart by content (a JSON file starts with '{' and has no NUL among its
 * first 4 bytes; a tokenizer.bin's max_token_length always has one).
 *
 * vocab_size is the model's, checked against the file's (0: don't check).
 * tokenizer.bin must hold exactly that many tokens (0: read until EOF);
 * <s> and </s> become BOS and EOS.  tokenizer.json may hold fewer ids than
 * the model (padded models): the rest are UNUSED.  It must be a byte-level
 * BPE with one of the known pre-tokenizer regexes; its normalizer must be
 * absent or NFC (which is not applied: text is taken as given).  BOS is
 * <|begin_of_text|> or <s>, EOS <|end_of_text|>, </s> or <|endoftext|>,
 * whichever the vocabulary has. */
int gqr_tokenizer_load(gqr_tokenizer **out, const char *path, int vocab_size, char *err,
                       size_t errlen);

/* Safe on NULL. */
void gqr_tokenizer_free(gqr_tokenizer *t);

int gqr_tokenizer_vocab_size(const gqr_tokenizer *t);
int gqr_tokenizer_bos(const gqr_tokenizer *t); /* -1 if none */
int gqr_tokenizer_eos(const gqr_tokenizer *t); /* -1 if none */

/* Encodes len bytes of text, any bytes (invalid UTF-8 included), with BOS
 * first when add_bos and the tokenizer has one.  Writes at most cap ids
 * (ids may be NULL when cap is 0); *n gets the number the whole encoding
 * takes, so a caller whose cap was too small (-1, message says so) can
 * retry with *n.
 *
 * SPM follows llama2.c's encode: a dummy prefix space when len > 0, one
 * symbol per UTF-8 code point (each byte of one the vocab lacks, and each
 * invalid byte, becomes its <0xXX> token), then the adjacent pair whose
 * concatenation is a piece with the highest score merges first, leftmost
 * on ties.  BPE: special pieces, then the pre-tokenizer's words, each a
 * byte-level BPE of lowest-rank-first merges. */
int gqr_tokenizer_encode(const gqr_tokenizer *t, const char *text, size_t len, int add_bos,
                         int *ids, int cap, int *n, char *err, size_t errlen);

/* The bytes token id stands for when it follows token prev (-1: none), for
 * printing tokens as they are generated.  The pointer is into t (valid
 * until it is freed); the bytes are followed by a NUL, but may hold one
 * (<0x00>), hence *len.  NULL with *len = 0 when id is out of range.
 *
 * SPM: "▁" is a space, and after BOS a leading space is dropped (the dummy
 * prefix, as llama2.c does); <0xXX> is its byte, which may be part of a
 * UTF-8 sequence that the next tokens complete.  BPE: GPT-2's byte-to-
 * unicode mapping undone; USER pieces are their text.  Both: CONTROL and
 * UNUSED tokens are "". */
const char *gqr_tokenizer_decode(const gqr_tokenizer *t, int prev, int id, size_t *len);

/* The pre-tokenizer pre (GQR_PRE_*) alone, exported for tests and tools:
 * splits text into words, ends[i] being the byte offset where word i ends.
 * cap and *n as for encode. */
int gqr_tok_split(int pre, const char *text, size_t len, size_t *ends, int cap, int *n,
                  char *err, size_t errlen);

#endif
