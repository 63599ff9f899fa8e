/*
 * fuzz_tokenizer.c: libFuzzer over the tokenizer (runtime/pretokenize.c,
 * vocab.c, tokenize.c, tokenizer_load.c).  Any bytes must
 * encode without a sanitizer report and decode back to themselves: with
 * the Llama 2 tokenizer.bin (../shared/data, when present; SPM with byte
 * fallback) and with small byte-level BPE vocabularies under each
 * pre-tokenizer, whose added tokens are USER pieces so that they decode
 * to their text too.  The pre-tokenizers' words must tile the input.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iruntime \
 *       -o build/fuzz_tokenizer tests/fuzz_tokenizer.c \
 *       runtime/{pretokenize,vocab,tokenize,tokenizer_load}.c -lcjson -lm
 *   build/fuzz_tokenizer -max_total_time=60 -max_len=4096 -timeout=10 CORPUS_DIR
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_BPE = 3 };
static gqr_tokenizer *spm, *bpe[N_BPE];

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", what);
        abort();
    }
}

/* GPT-2's byte-to-unicode mapping, as UTF-8. */
static void byte_symbol(int b, char *out, size_t *n) {
    unsigned next = 256, c = 0;
    for (int i = 0; i <= b; i++) {
        int shown = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174;
        c = shown ? (unsigned)i : next++;
    }
    if (c < 0x80) {
        out[0] = (char)c;
        *n = 1;
    } else {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        *n = 2;
    }
}

/* 256 byte symbols, a few merges (their results follow), added text. */
static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 h",
                                     "\xc4\xa0 hello", "1 2", "12 3", "\xc4\xa0 \xc4\xa0",
                                     "\xc4\x8a \xc4\x8a", "\xc3\x83 \xc2\xa9", "' s"};
#define N_MERGES (int)(sizeof merges / sizeof *merges)
static const char *const added[] = {"<|tool|>", "<|to", "\xc3\xa9t\xc3\xa9"};
#define N_ADDED (int)(sizeof added / sizeof *added)
#define N_VOCAB (256 + N_MERGES + N_ADDED)

static void make_bpe(void) {
    static char storage[N_VOCAB][32];
    static const char *pieces[N_VOCAB];
    static size_t lens[N_VOCAB], merge_lens[N_MERGES];
    static int types[N_VOCAB];
    static const int pres[N_BPE] = {GQR_PRE_LLAMA3, GQR_PRE_QWEN2, GQR_PRE_GPT2};
    for (int b = 0; b < 256; b++)
        byte_symbol(b, storage[b], &lens[b]);
    for (int i = 0; i < N_MERGES; i++) {
        const char *space = strchr(merges[i], ' ');
        char *p = storage[256 + i];
        size_t ln = (size_t)(space - merges[i]);
        memcpy(p, merges[i], ln);
        strcpy(p + ln, space + 1);
        lens[256 + i] = strlen(p);
        merge_lens[i] = strlen(merges[i]);
    }
    for (int i = 0; i < N_ADDED; i++) {
        strcpy(storage[256 + N_MERGES + i], added[i]);
        lens[256 + N_MERGES + i] = strlen(added[i]);
    }
    for (int i = 0; i < N_VOCAB; i++) {
        pieces[i] = storage[i];
        types[i] = i < 256 + N_MERGES ? GQR_TT_NORMAL : GQR_TT_USER;
    }
    for (int k = 0; k < N_BPE; k++) {
        gqr_vocab_spec spec = {.kind = GQR_TOK_BPE, .n_tokens = N_VOCAB, .pieces = pieces,
                               .piece_lens = lens, .types = types, .n_merges = N_MERGES,
                               .merges = merges, .merge_lens = merge_lens, .bos_id = -1,
                               .eos_id = -1, .pretokenizer = pres[k], .ignore_merges = k == 0};
        char err[256];
        if (gqr_tokenizer_new(&bpe[k], &spec, err, sizeof err)) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err);
            abort();
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char err[256];
    if (gqr_tokenizer_load(&spm, "../shared/data/tokenizer.bin", 32000, err, sizeof err))
        fprintf(stderr, "fuzz_tokenizer: no SPM target: %s\n", err);
    make_bpe();
    return 0;
}

/* Encodes, checks that the count query agrees, decodes, compares.  The
 * decoding starts with an extra space where prefix says so (SPM's dummy
 * prefix, which only BOS before it drops). */
static void round_trip(const gqr_tokenizer *t, const char *text, size_t n, int add_bos,
                       int prefix) {
    int need = -1, got = -1;
    char err[256];
    gqr_tokenizer_encode(t, text, n, add_bos, NULL, 0, &need, err, sizeof err);
    check(need >= 0, "no count from the size query");
    int *ids = malloc(((size_t)need + 1) * sizeof *ids);
    check(ids != NULL, "out of memory");
    check(!gqr_tokenizer_encode(t, text, n, add_bos, ids, need, &got, err, sizeof err) &&
              got == need, "encode failed with room enough");
    int bos = add_bos ? gqr_tokenizer_bos(t) : -1;
    int from = bos >= 0 ? 1 : 0;
    check(!from || ids[0] == bos, "BOS not first");
    size_t m = 0, skip = prefix && n ? 1 : 0;
    for (int i = from; i < got; i++) {
        size_t len;
        const char *s = gqr_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], &len);
        check(s != NULL, "an id out of range");
        check(m + len <= n + skip, "decodes longer than the text");
        for (size_t j = 0; j < len; j++, m++)
            check(m < skip ? s[j] == ' ' : s[j] == text[m - skip], "decodes to other bytes");
    }
    check(m == n + skip, "decodes shorter than the text");
    free(ids);
}

static void split_tiles(int pre, const char *text, size_t n) {
    size_t *ends = malloc((n + 1) * sizeof *ends);
    int words = 0;
    char err[128];
    check(ends && !gqr_tok_split(pre, text, n, ends, (int)n + 1, &words, err, sizeof err),
          "split failed");
    for (int i = 0; i < words; i++)
        check(ends[i] > (i ? ends[i - 1] : 0), "an empty word");
    check(words ? ends[words - 1] == n : n == 0, "words do not reach the end");
    free(ends);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    if (spm) {
        round_trip(spm, text, size, 1, 0);
        round_trip(spm, text, size, 0, 1);
    }
    for (int k = 0; k < N_BPE; k++)
        round_trip(bpe[k], text, size, 0, 0);
    split_tiles(GQR_PRE_LLAMA3, text, size);
    split_tiles(GQR_PRE_QWEN2, text, size);
    split_tiles(GQR_PRE_GPT2, text, size);
    return 0;
}
