/*
 * test_tokenizer.c: the tokenizer (runtime/pretokenize.c, vocab.c,
 * tokenize.c, tokenizer_load.c), and gguf_tokenizer.c's GGUF
 * vocabularies.
 *
 * Suites: spm (the Llama 2 vocabulary in ../shared/data, against ids that
 * SentencePiece itself produced; skipped with a notice when the folder is
 * absent), bpe (a byte-level BPE written here as tokenizer.json, with
 * encodings worked out by hand), split (the pre-tokenizer regexes), files
 * (malformed inputs, each with its message).
 */
#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cunit_run.h"
#include "gqr.h"
#include "tensorfile.h"
#include "testing.h"
#include "tokenizer.h"

#define LLAMA2_BIN "../shared/data/tokenizer.bin"

static char err[512];

/* Encodes s (n bytes), checking the call succeeds; the count, ids in out. */
static int enc(const gqr_tokenizer *t, const char *s, size_t n, int bos, int *out, int cap) {
    int count = -1;
    int rc = gqr_tokenizer_encode(t, s, n, bos, out, cap, &count, err, sizeof err);
    if (rc)
        fprintf(stderr, "\n    encode failed: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    return count;
}

static int same_ids(const int *got, int n_got, const int *want, int n_want, const char *what) {
    int same = n_got == n_want && !memcmp(got, want, (size_t)n_want * sizeof *want);
    if (!same) {
        fprintf(stderr, "\n    %s: got", what);
        for (int i = 0; i < n_got; i++)
            fprintf(stderr, " %d", got[i]);
        fprintf(stderr, ", want");
        for (int i = 0; i < n_want; i++)
            fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    return same;
}

/* An id list and its length, as expect takes them. */
#define IDS(...)                                                                 \
    ((const int[]){__VA_ARGS__}), (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

static void expect(const gqr_tokenizer *t, const char *text, int bos, const int *want, int n_want) {
    int ids[64];
    int n = enc(t, text, strlen(text), bos, ids, 64);
    CU_ASSERT(same_ids(ids, n, want, n_want, text));
}

/* The text ids[from..n) decode to, each after its predecessor (or prev). */
static size_t decode_all(const gqr_tokenizer *t, const int *ids, int from, int n, int prev,
                         char *out, size_t cap) {
    size_t m = 0;
    for (int i = from; i < n; i++) {
        size_t len;
        const char *s = gqr_tokenizer_decode(t, i > from ? ids[i - 1] : prev, ids[i], &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_FATAL(m + len <= cap);
        memcpy(out + m, s, len);
        m += len;
    }
    return m;
}

static unsigned long long rng = 0x2545F4914F6CDD1Dull;

static unsigned next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 32);
}

/* Random bytes, biased towards UTF-8 lead and continuation bytes and
 * spaces so that valid, invalid and mixed sequences all occur. */
static void random_bytes(char *s, size_t n) {
    static const unsigned char common[] = {' ', 'a', 'e', 0xC3, 0xA9, 0xE6, 0x97, 0xF0, 0x9F,
                                           0x98, 0x80, '\n', '1', 0xFF, 0x00, '\''};
    for (size_t i = 0; i < n; i++) {
        unsigned r = next_rand();
        s[i] = (char)(r % 3 ? common[(r >> 8) % sizeof common] : (r >> 8) & 0xFF);
    }
}

/* ---- spm: the Llama 2 vocabulary ---- */

static gqr_tokenizer *llama2;

static int have_llama2(void) {
    if (!llama2)
        printf("\n    SKIPPED: no %s\n", LLAMA2_BIN);
    return llama2 != NULL;
}

/* Ids from SentencePiece 0.1.97 on ../shared/data/tokenizer.model (no BOS),
 * generated once with python3-sentencepiece.  Our encoder follows
 * llama2.c's algorithm; on all of these (and on thousands of random
 * strings checked while writing it) it agrees with SentencePiece.  The one
 * known difference is invalid UTF-8, which SentencePiece cannot take as
 * bytes at all: we byte-fall-back each invalid byte. */
static const struct {
    const char *text;
    int n;
    int ids[24];
} spm_cases[] = {
    {"Hello world", 2, {15043, 3186}},
    {"", 0, {0}},
    {" ", 1, {259}},
    {"   ", 1, {268}},
    {" leading space", 3, {29871, 8236, 2913}},
    {"trailing space ", 3, {25053, 2913, 29871}},
    {"multiple   spaces  inside", 5, {2999, 259, 8162, 29871, 2768}},
    {"line one\nline two\n\n", 7, {1196, 697, 13, 1220, 1023, 13, 13}},
    {"tabs\tand\ttabs", 5, {18859, 12, 392, 12, 21175}},
    {"12345 67890 3.14159", 20, {29871, 29896, 29906, 29941, 29946, 29945, 29871, 29953, 29955,
                                 29947, 29929, 29900, 29871, 29941, 29889, 29896, 29946, 29896,
                                 29945, 29929}},
    {"h\xc3\xa9llo w\xc3\xb6rld \xc3\xb1" "and\xc3\xba", 10,
     {298, 3610, 417, 281, 1340, 430, 29871, 30046, 392, 30030}},
    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3"
     "\x83\x88", 9, {29871, 30325, 30346, 30968, 30199, 30572, 30454, 30255, 30279}},
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80!", 6,
     {7203, 7616, 29892, 4157, 29927, 29991}},
    {"emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 and \xf0\x9f\xa6\x99", 18,
     {953, 29877, 2397, 29871, 243, 162, 155, 131, 243, 162, 145, 140, 322, 29871, 243, 162, 169,
      156}},
    {"I'm can't won't they're", 12,
     {306, 29915, 29885, 508, 29915, 29873, 2113, 29915, 29873, 896, 29915, 276}},
    {"def f(x):\n    return x**2\n", 12,
     {822, 285, 29898, 29916, 1125, 13, 1678, 736, 921, 1068, 29906, 13}},
    {"<s> not special </s>", 8, {529, 29879, 29958, 451, 4266, 1533, 29879, 29958}},
    {"\xf0\x9d\x94\x98\xf0\x9d\x94\xab\xf0\x9d\x94\xa6", 13,
     {29871, 243, 160, 151, 155, 243, 160, 151, 174, 243, 160, 151, 169}},
    {"a\xcc\x81 combining", 3, {263, 30103, 29299}},
    {"\x01\x02" "ctrl\x7f", 5, {29871, 4, 5, 24220, 130}},
    {"\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd8\xa7\xd9\x84\xd8\xb9\xd8\xa7\xd9\x84"
     "\xd9\x85", 12, {29871, 30159, 30156, 30240, 30177, 30112, 29871, 30177, 19233, 30218, 19233,
                      30159}},
    {"<0x41> is text", 8, {529, 29900, 29916, 29946, 29896, 29958, 338, 1426}},
    /* Equal scores: the leftmost pair merges first. */
    {"aaaaaaa", 3, {263, 27137, 7340}},
    {"eeee", 3, {321, 3905, 29872}},
};
#define N_SPM_CASES (int)(sizeof spm_cases / sizeof *spm_cases)

static void check_spm_cases(const gqr_tokenizer *t, const char *what) {
    int ids[64];
    for (int i = 0; i < N_SPM_CASES; i++) {
        int n = enc(t, spm_cases[i].text, strlen(spm_cases[i].text), 0, ids, 64);
        CU_ASSERT(same_ids(ids, n, spm_cases[i].ids, spm_cases[i].n, what));
    }
}

static void test_spm_hello(void) {
    if (!have_llama2())
        return;
    CU_ASSERT_EQUAL(gqr_tokenizer_vocab_size(llama2), 32000);
    CU_ASSERT_EQUAL(gqr_tokenizer_bos(llama2), 1);
    CU_ASSERT_EQUAL(gqr_tokenizer_eos(llama2), 2);
    int ids[8], want[] = {1, 15043, 3186};
    int n = enc(llama2, "Hello world", 11, 1, ids, 8);
    CU_ASSERT(same_ids(ids, n, want, 3, "Hello world"));
    n = enc(llama2, "", 0, 1, ids, 8); /* no dummy prefix for empty text */
    CU_ASSERT(same_ids(ids, n, want, 1, "empty"));
}

static void test_spm_sentencepiece(void) {
    if (have_llama2())
        check_spm_cases(llama2, "llama2");
}

static void test_spm_decode(void) {
    if (!have_llama2())
        return;
    size_t len;
    const char *s = gqr_tokenizer_decode(llama2, 1, 15043, &len);
    CU_ASSERT(len == 5 && !memcmp(s, "Hello", 5)); /* the dummy prefix, dropped */
    s = gqr_tokenizer_decode(llama2, 15043, 15043, &len);
    CU_ASSERT(len == 6 && !memcmp(s, " Hello", 6));
    s = gqr_tokenizer_decode(llama2, -1, 13, &len); /* <0x0A> */
    CU_ASSERT(len == 1 && s[0] == '\n');
    s = gqr_tokenizer_decode(llama2, -1, 3, &len); /* <0x00> */
    CU_ASSERT(len == 1 && s[0] == 0);
    s = gqr_tokenizer_decode(llama2, -1, 1, &len); /* <s> */
    CU_ASSERT(s && len == 0);
    CU_ASSERT_PTR_NULL(gqr_tokenizer_decode(llama2, -1, 32000, &len));
    CU_ASSERT_PTR_NULL(gqr_tokenizer_decode(llama2, -1, -1, &len));
    CU_ASSERT_EQUAL(len, 0);
}

/* With BOS, decoding gives back exactly the text: the dummy prefix goes. */
static void spm_round_trip(const gqr_tokenizer *t, const char *text, size_t n) {
    int ids[512];
    char out[512];
    int k = enc(t, text, n, 1, ids, 512);
    CU_ASSERT_FATAL(k >= 1 && k <= 512);
    size_t m = decode_all(t, ids, 1, k, ids[0], out, sizeof out);
    CU_ASSERT(m == n && !memcmp(out, text, n));
}

static void test_spm_round_trip(void) {
    if (!have_llama2())
        return;
    for (int i = 0; i < N_SPM_CASES; i++)
        spm_round_trip(llama2, spm_cases[i].text, strlen(spm_cases[i].text));
    char text[100];
    for (int i = 0; i < 500; i++) {
        size_t n = next_rand() % sizeof text;
        random_bytes(text, n);
        spm_round_trip(llama2, text, n);
    }
}

/* Each invalid byte is its own <0xXX>; a valid sequence around it stays whole. */
static void test_spm_invalid_utf8(void) {
    if (!have_llama2())
        return;
    int ids[16];
    /* The prefix space cannot merge into a byte token; é (29948) is whole. */
    int n = enc(llama2, "\xff\xc3\xa9\xa9", 4, 0, ids, 16);
    int want[] = {29871, 0xFF + 3, 29948, 0xA9 + 3};
    CU_ASSERT(same_ids(ids, n, want, 4, "invalid bytes"));
    n = enc(llama2, "\xe6\x97", 2, 0, ids, 16); /* a truncated sequence */
    int want2[] = {29871, 0xE6 + 3, 0x97 + 3};
    CU_ASSERT(same_ids(ids, n, want2, 3, "truncated sequence"));
}

/* A vocabulary built from arrays, types left out: byte-fallback tokens
 * never merge (llama2.c looks up "<0xC3>" + neighbours, which no vocabulary
 * holds), even where the bytes they stand for would make a piece (" \xc3"). */
static void test_spm_spec(void) {
    static const char *const pieces[] = {"<unk>", "<s>", "</s>", "<0xC3>", "<0xA9>", " ",
                                         "a", " a", " \xc3", "aa"};
    static const float scores[] = {0, 0, 0, 0, 0, -1, -1, -2, -1, -3};
    size_t lens[10];
    for (int i = 0; i < 10; i++)
        lens[i] = strlen(pieces[i]);
    gqr_vocab_spec spec = {.kind = GQR_TOK_SPM, .n_tokens = 10, .pieces = pieces,
                           .piece_lens = lens, .scores = scores, .bos_id = 1, .eos_id = 2};
    gqr_tokenizer *t;
    CU_ASSERT_EQUAL_FATAL(gqr_tokenizer_new(&t, &spec, err, sizeof err), 0);
    expect(t, "\xc3\xa9", 1, IDS(1, 5, 3, 4));
    expect(t, "aaa", 0, IDS(7, 9)); /* " a" (-2) before "aa" (-3) */
    gqr_tokenizer_free(t);
    spec.scores = NULL;
    CU_ASSERT_EQUAL(gqr_tokenizer_new(&t, &spec, err, sizeof err), -1);
    TEST_HAS(err, "needs scores");
    CU_ASSERT_PTR_NULL(t);
}

/* Reads tokenizer.bin by hand and rebuilds it as a GGUF would give it:
 * spaces spelt "▁", types from the names. */
static void test_spm_bar_vocab(void) {
    if (!have_llama2())
        return;
    FILE *f = fopen(LLAMA2_BIN, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    enum { V = 32000 };
    static char *pieces[V];
    static size_t lens[V];
    static float scores[V];
    static int types[V];
    int32_t max_len, len;
    CU_ASSERT_FATAL(fread(&max_len, 4, 1, f) == 1);
    for (int i = 0; i < V; i++) {
        CU_ASSERT_FATAL(fread(&scores[i], 4, 1, f) == 1 && fread(&len, 4, 1, f) == 1);
        char raw[64];
        CU_ASSERT_FATAL(len >= 0 && len < 64 && fread(raw, 1, (size_t)len, f) == (size_t)len);
        pieces[i] = malloc(3 * (size_t)len + 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pieces[i]);
        size_t m = 0;
        for (int j = 0; j < len; j++) {
            if (raw[j] == ' ') {
                memcpy(pieces[i] + m, "\xe2\x96\x81", 3);
                m += 3;
            } else {
                pieces[i][m++] = raw[j];
            }
        }
        lens[i] = m;
        types[i] = i == 0 ? GQR_TT_UNKNOWN : i < 3 ? GQR_TT_CONTROL : i < 259 ? GQR_TT_BYTE
                                                                        : GQR_TT_NORMAL;
    }
    fclose(f);
    gqr_vocab_spec spec = {.kind = GQR_TOK_SPM, .n_tokens = V,
                           .pieces = (const char *const *)pieces, .piece_lens = lens,
                           .scores = scores, .types = types, .bos_id = 1, .eos_id = 2};
    gqr_tokenizer *t;
    CU_ASSERT_EQUAL_FATAL(gqr_tokenizer_new(&t, &spec, err, sizeof err), 0);
    for (int i = 0; i < V; i++)
        free(pieces[i]);
    check_spm_cases(t, "bar vocab");
    size_t n;
    const char *s = gqr_tokenizer_decode(t, 15043, 15043, &n);
    CU_ASSERT(n == 6 && !memcmp(s, " Hello", 6));
    char text[100];
    for (int i = 0; i < 100; i++) {
        size_t k = next_rand() % sizeof text;
        random_bytes(text, k);
        spm_round_trip(t, text, k);
    }
    gqr_tokenizer_free(t);
}

/* A merge is O(log n): 100 KB must not take llama2.c's quadratic time. */
static void test_spm_long(void) {
    if (!have_llama2())
        return;
    size_t n = 100000;
    char *text = malloc(n);
    int *ids = malloc(n * 2 * sizeof *ids);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
    static const char words[] = "the quick brown fox jumps over the lazy dog 0123 "
                                "\xc3\xa9t\xc3\xa9 ";
    for (size_t i = 0; i < n; i++)
        text[i] = words[i % (sizeof words - 1)];
    clock_t start = clock();
    int k = enc(llama2, text, n, 1, ids, (int)n * 2);
    double secs = (double)(clock() - start) / CLOCKS_PER_SEC;
    CU_ASSERT(k > 1000);
    CU_ASSERT(secs < 5); /* about 0.05 s; quadratic would be minutes */
    char *back = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT(decode_all(llama2, ids, 1, k, ids[0], back, n) == n && !memcmp(back, text, n));
    memset(text, 'a', n); /* one long run of a single letter */
    k = enc(llama2, text, n, 0, ids, (int)n * 2);
    CU_ASSERT(k > 1000 && k < 50000);
    free(text);
    free(back);
    free(ids);
}

static void test_spm_cap(void) {
    if (!have_llama2())
        return;
    int ids[2], n = 0;
    CU_ASSERT_EQUAL(gqr_tokenizer_encode(llama2, "Hello world", 11, 1, ids, 2, &n, err,
                                         sizeof err), -1);
    CU_ASSERT_EQUAL(n, 3);
    TEST_HAS(err, "takes 3 tokens, room for 2");
    CU_ASSERT_EQUAL(ids[0], 1); /* what fits is written */
    CU_ASSERT_EQUAL(gqr_tokenizer_encode(llama2, "Hello world", 11, 1, NULL, 0, &n, err,
                                         sizeof err), -1);
    CU_ASSERT_EQUAL(n, 3);
}

/* ---- bpe: a tokenizer.json written here ---- */

/* GPT-2's byte-to-unicode mapping, written out independently. */
static unsigned byte_cp(int b) {
    unsigned next = 256;
    for (int i = 0; i < 256; i++) {
        int shown = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174;
        unsigned cp = shown ? (unsigned)i : next++;
        if (i == b)
            return cp;
    }
    return 0;
}

static void byte_piece(int b, char *out) {
    unsigned c = byte_cp(b);
    if (c < 0x80) {
        out[0] = (char)c;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        out[2] = 0;
    }
}

#define G "\xc4\xa0"  /* Ġ: the space */
#define NL "\xc4\x8a" /* Ċ: the newline */
#define EA "\xc3\x83" /* Ã: 0xC3, é's first byte */
#define EB "\xc2\xa9" /* ©: 0xA9, its second */

/* Ids 0..255 are the bytes' symbols in byte order; merge i makes id 256 + i. */
static const char *const test_merges[][2] = {
    {"h", "e"},        /* 256 he */
    {"l", "l"},        /* 257 ll */
    {G, "w"},          /* 258 Ġw */
    {"o", "r"},        /* 259 or */
    {"he", "ll"},      /* 260 hell */
    {"hell", "o"},     /* 261 hello */
    {G "w", "or"},     /* 262 Ġwor */
    {G "wor", "l"},    /* 263 Ġworl */
    {G "worl", "d"},   /* 264 Ġworld */
    {G, "h"},          /* 265 Ġh: ranks below he, so " hello" is not Ġh+e... */
    {G, "hello"},      /* 266 Ġhello */
    {"1", "2"},        /* 267 12 */
    {"12", "3"},       /* 268 123 */
    {"4", "5"},        /* 269 45 */
    {"'", "m"},        /* 270 'm */
    {NL, NL},          /* 271 ĊĊ */
    {G, G},            /* 272 ĠĠ */
    {EA, EB},          /* 273 é */
    {"h", EA EB},      /* 274 hé */
};
#define N_MERGES (int)(sizeof test_merges / sizeof *test_merges)
enum { GHI = 275, BOT = 300, EOT = 301, EOT_ID = 302, TOOL = 303, END = 304 };

static const char *const regex_llama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const regex_qwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static void add_token(cJSON *added, int id, const char *content, int special) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddStringToObject(a, "content", content);
    cJSON_AddBoolToObject(a, "special", special);
    cJSON_AddItemToArray(added, a);
}

/* The test vocabulary as tokenizer.json: pre a GQR_PRE_*, merges as
 * strings or as pairs.  The caller frees the text. */
static char *bpe_json(int pre, int pairs, int ignore_merges) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    char piece[64];
    for (int b = 0; b < 256; b++) {
        byte_piece(b, piece);
        cJSON_AddNumberToObject(vocab, piece, b);
    }
    cJSON *ms = cJSON_AddArrayToObject(model, "merges");
    for (int i = 0; i < N_MERGES; i++) {
        snprintf(piece, sizeof piece, "%s%s", test_merges[i][0], test_merges[i][1]);
        cJSON_AddNumberToObject(vocab, piece, 256 + i);
        if (pairs) {
            cJSON_AddItemToArray(ms, cJSON_CreateStringArray(test_merges[i], 2));
        } else {
            snprintf(piece, sizeof piece, "%s %s", test_merges[i][0], test_merges[i][1]);
            cJSON_AddItemToArray(ms, cJSON_CreateString(piece));
        }
    }
    cJSON_AddNumberToObject(vocab, G "hi", GHI); /* no merges make it */
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    add_token(added, BOT, "<|begin_of_text|>", 1);
    add_token(added, EOT, "<|end_of_text|>", 1);
    add_token(added, EOT_ID, "<|eot_id|>", 1);
    add_token(added, TOOL, "<tool>", 0);
    add_token(added, END, "<|end", 1); /* a prefix of <|end_of_text|> */
    cJSON *pt = cJSON_AddObjectToObject(root, "pre_tokenizer");
    if (pre == GQR_PRE_GPT2) {
        cJSON_AddStringToObject(pt, "type", "ByteLevel");
        cJSON_AddBoolToObject(pt, "add_prefix_space", 0);
        cJSON_AddBoolToObject(pt, "use_regex", 1);
    } else {
        cJSON_AddStringToObject(pt, "type", "Sequence");
        cJSON *seq = cJSON_AddArrayToObject(pt, "pretokenizers");
        cJSON *split = cJSON_CreateObject(), *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON *pattern = cJSON_AddObjectToObject(split, "pattern");
        cJSON_AddStringToObject(pattern, "Regex", pre == GQR_PRE_QWEN2 ? regex_qwen2
                                                                         : regex_llama3);
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddBoolToObject(split, "invert", 0);
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
        cJSON_AddBoolToObject(bl, "use_regex", 0);
        cJSON_AddItemToArray(seq, split);
        cJSON_AddItemToArray(seq, bl);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

static gqr_tokenizer *load_bpe(int pre, int pairs, int ignore_merges, int vocab_size) {
    char *json = bpe_json(pre, pairs, ignore_merges);
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    const char *path = test_write_tmp("tokenizer.json", json, strlen(json));
    free(json);
    gqr_tokenizer *t = NULL;
    if (gqr_tokenizer_load(&t, path, vocab_size, err, sizeof err))
        fprintf(stderr, "\n    load failed: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    return t;
}

static const char mixed[] = "I'm 12345 hello  world\n\n";

static void test_bpe_llama3(void) {
    gqr_tokenizer *t = load_bpe(GQR_PRE_LLAMA3, 0, 0, 0);
    CU_ASSERT_EQUAL(gqr_tokenizer_vocab_size(t), 305);
    CU_ASSERT_EQUAL(gqr_tokenizer_bos(t), BOT);
    CU_ASSERT_EQUAL(gqr_tokenizer_eos(t), EOT);
    expect(t, "hello world", 0, IDS(261, 264));
    expect(t, "hello world", 1, IDS(BOT, 261, 264));
    /* Lowest rank first: he (0) before Ġh (9), so Ġhello, not Ġh e ll o. */
    expect(t, " hello", 0, IDS(266));
    expect(t, mixed, 0, IDS('I', 270, ' ', 268, 269, 266, ' ', 264, 271));
    expect(t, "h\xc3\xa9llo", 0, IDS(274, 257, 'o'));
    expect(t, "lll", 0, IDS(257, 'l')); /* equal ranks: leftmost first */
    expect(t, "", 1, IDS(BOT));
    int ids[4];
    CU_ASSERT_EQUAL(enc(t, "", 0, 0, ids, 4), 0);
    gqr_tokenizer_free(t);
}

static void test_bpe_qwen2_gpt2(void) {
    gqr_tokenizer *t = load_bpe(GQR_PRE_QWEN2, 0, 0, 0);
    expect(t, mixed, 0, IDS('I', 270, ' ', '1', '2', '3', '4', '5', 266, ' ', 264, 271));
    gqr_tokenizer_free(t);
    t = load_bpe(GQR_PRE_GPT2, 0, 0, 0);
    expect(t, mixed, 0, IDS('I', 270, ' ', 268, 269, 266, ' ', 264, 271));
    expect(t, "x'M", 0, IDS('x', '\'', 'M')); /* case-sensitive contractions */
    gqr_tokenizer_free(t);
}

static void test_bpe_merge_pairs(void) {
    gqr_tokenizer *t = load_bpe(GQR_PRE_LLAMA3, 1, 0, 0);
    expect(t, mixed, 0, IDS('I', 270, ' ', 268, 269, 266, ' ', 264, 271));
    gqr_tokenizer_free(t);
}

static void test_bpe_ignore_merges(void) {
    gqr_tokenizer *t = load_bpe(GQR_PRE_LLAMA3, 0, 0, 0);
    expect(t, " hi", 0, IDS(265, 'i'));
    gqr_tokenizer_free(t);
    t = load_bpe(GQR_PRE_LLAMA3, 0, 1, 0);
    expect(t, " hi", 0, IDS(GHI));
    expect(t, " hello", 0, IDS(266));
    gqr_tokenizer_free(t);
}

static void test_bpe_special(void) {
    gqr_tokenizer *t = load_bpe(GQR_PRE_LLAMA3, 0, 0, 0);
    expect(t, "<|begin_of_text|>hello<|eot_id|>", 0, IDS(BOT, 261, EOT_ID));
    expect(t, "<|end_of_text|><|end", 0, IDS(EOT, END)); /* longest first */
    expect(t, " <tool>hello", 0, IDS(' ', TOOL, 261));
    expect(t, "<|begin_of", 0, IDS('<', '|', 'b', 'e', 'g', 'i', 'n', '_', 'o', 'f'));
    size_t len;
    const char *s = gqr_tokenizer_decode(t, -1, BOT, &len);
    CU_ASSERT(s && len == 0);
    s = gqr_tokenizer_decode(t, -1, TOOL, &len);
    CU_ASSERT(len == 6 && !memcmp(s, "<tool>", 6));
    s = gqr_tokenizer_decode(t, -1, 290, &len); /* an id no piece has */
    CU_ASSERT(s && len == 0);
    gqr_tokenizer_free(t);
}

static void test_bpe_decode(void) {
    gqr_tokenizer *t = load_bpe(GQR_PRE_LLAMA3, 0, 0, 0);
    size_t len;
    const char *s = gqr_tokenizer_decode(t, BOT, 264, &len);
    CU_ASSERT(len == 6 && !memcmp(s, " world", 6)); /* no space dropped after BOS */
    s = gqr_tokenizer_decode(t, -1, 271, &len);
    CU_ASSERT(len == 2 && !memcmp(s, "\n\n", 2));
    for (int b = 0; b < 256; b++) {
        s = gqr_tokenizer_decode(t, -1, b, &len);
        CU_ASSERT(len == 1 && (unsigned char)s[0] == b);
    }
    CU_ASSERT_PTR_NULL(gqr_tokenizer_decode(t, -1, 305, &len));
    gqr_tokenizer_free(t);
}

static void bpe_round_trip(const gqr_tokenizer *t, const char *text, size_t n) {
    int ids[600];
    char out[600];
    int k = enc(t, text, n, 0, ids, 600);
    CU_ASSERT_FATAL(k >= 0 && k <= 600);
    size_t m = decode_all(t, ids, 0, k, -1, out, sizeof out);
    CU_ASSERT(m == n && !memcmp(out, text, n));
}

static void test_bpe_round_trip(void) {
    static const int pres[] = {GQR_PRE_LLAMA3, GQR_PRE_QWEN2, GQR_PRE_GPT2};
    char all[256], text[200];
    for (int b = 0; b < 256; b++)
        all[b] = (char)b;
    for (int p = 0; p < 3; p++) {
        gqr_tokenizer *t = load_bpe(pres[p], 0, p == 0, 0);
        bpe_round_trip(t, all, sizeof all);
        bpe_round_trip(t, mixed, strlen(mixed));
        for (int i = 0; i < 300; i++) {
            size_t n = next_rand() % sizeof text;
            random_bytes(text, n);
            bpe_round_trip(t, text, n);
        }
        gqr_tokenizer_free(t);
    }
}

/* A model with more ids than the tokenizer: the rest decode to "". */
static void test_bpe_padded(void) {
    gqr_tokenizer *t = load_bpe(GQR_PRE_LLAMA3, 0, 0, 320);
    CU_ASSERT_EQUAL(gqr_tokenizer_vocab_size(t), 320);
    size_t len = 9;
    CU_ASSERT_PTR_NOT_NULL(gqr_tokenizer_decode(t, -1, 319, &len));
    CU_ASSERT_EQUAL(len, 0);
    gqr_tokenizer_free(t);
}

/* ---- split: the pre-tokenizers alone ---- */

/* Splits text with pre and compares with the words, "|"-separated in want. */
static void expect_split(int pre, const char *text, const char *want) {
    size_t ends[64], n_text = strlen(text);
    int n;
    CU_ASSERT_EQUAL_FATAL(gqr_tok_split(pre, text, n_text, ends, 64, &n, err, sizeof err), 0);
    char got[512];
    size_t m = 0, start = 0;
    for (int i = 0; i < n; start = ends[i++]) {
        memcpy(got + m, text + start, ends[i] - start);
        m += ends[i] - start;
        got[m++] = '|';
    }
    got[m ? m - 1 : 0] = 0;
    if (strcmp(got, want))
        fprintf(stderr, "\n    split %d of '%s': got '%s', want '%s'\n", pre, text, got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
}

static void test_split_llama3(void) {
    int p = GQR_PRE_LLAMA3;
    expect_split(p, mixed, "I|'m| |123|45| hello| | world|\n\n");
    expect_split(p, "they're WE'LLx it'Sup", "they|'re| WE|'LL|x| it|'S|up");
    expect_split(p, "h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac x",
                 "h\xc3\xa9llo| \xe6\x97\xa5\xe6\x9c\xac| x");
    expect_split(p, "a\r\n\r\n  b", "a|\r\n\r\n| | b");
    expect_split(p, "x...\n\ny", "x|...\n\n|y");
    expect_split(p, "1234567", "123|456|7");
    expect_split(p, "$hello \thi", "$hello| |\thi"); /* one lead of any non-letter */
    expect_split(p, "x\xc2\xb2\xc2\xb3\xe2\x81\xb4\xe2\x81\xb5", /* superscripts are \p{N} */
                 "x|\xc2\xb2\xc2\xb3\xe2\x81\xb4|\xe2\x81\xb5");
    expect_split(p, "hi   ", "hi|   ");
    expect_split(p, "hi   !", "hi|  | !");
    expect_split(p, "a\xff" "b\xc3", "a|\xff" "b|\xc3"); /* invalid bytes are symbols */
    expect_split(p, "x\xe0\x81\x81", "x|\xe0\x81\x81");  /* an overlong 'A' is no letter */
    expect_split(p, "'\xc5\xbf" "a", "'\xc5\xbf|a");    /* 'ſ: case-folds to 's */
    expect_split(p, "a\xe2\x80\x83\xe2\x80\x83" "b", /* em spaces are \s */
                 "a|\xe2\x80\x83|\xe2\x80\x83" "b");
    expect_split(p, "", "");
}

static void test_split_qwen2_gpt2(void) {
    expect_split(GQR_PRE_QWEN2, "1234 x12", "1|2|3|4| x|1|2");
    expect_split(GQR_PRE_QWEN2, "they're", "they|'re");
    int g = GQR_PRE_GPT2;
    expect_split(g, mixed, "I|'m| 12345| hello| | world|\n\n");
    expect_split(g, "they're WE'LL", "they|'re| WE|'|LL");
    expect_split(g, "a\r\n\r\n  b", "a|\r\n\r\n | b");
    expect_split(g, "x...\n\ny", "x|...|\n|\n|y");
    expect_split(g, "$hello 42", "$|hello| 42");
}

static void test_split_errors(void) {
    size_t ends[2];
    int n;
    CU_ASSERT_EQUAL(gqr_tok_split(9, "a", 1, ends, 2, &n, err, sizeof err), -1);
    TEST_HAS(err, "unknown pre-tokenizer 9");
    CU_ASSERT_EQUAL(gqr_tok_split(GQR_PRE_LLAMA3, "a b c", 5, ends, 2, &n, err, sizeof err), -1);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(ends[1], 3);
}

/* ---- files: malformed inputs ---- */

/* A 4-token tokenizer.bin: <unk> <s> </s> "a", lengths and all. */
static size_t small_bin(unsigned char *b) {
    static const char *const pieces[] = {"<unk>", "<s>", "</s>", "a"};
    size_t n = 4;
    test_put_le32(b, 5);
    for (int i = 0; i < 4; i++) {
        test_put_le32(b + n, 0);
        test_put_le32(b + n + 4, (int32_t)strlen(pieces[i]));
        memcpy(b + n + 8, pieces[i], strlen(pieces[i]));
        n += 8 + strlen(pieces[i]);
    }
    return n;
}

static void expect_load_error(const char *name, const void *data, size_t n, int vocab,
                              const char *msg) {
    static int dummy;
    const char *path = test_write_tmp(name, data, n);
    gqr_tokenizer *t = (gqr_tokenizer *)&dummy; /* must come back NULL */
    CU_ASSERT_EQUAL(gqr_tokenizer_load(&t, path, vocab, err, sizeof err), -1);
    CU_ASSERT_PTR_NULL(t);
    TEST_HAS(err, msg);
}

static void test_files_bin(void) {
    unsigned char b[128];
    size_t n = small_bin(b);
    gqr_tokenizer *t;
    const char *path = test_write_tmp("small.bin", b, n);
    CU_ASSERT_EQUAL_FATAL(gqr_tokenizer_load(&t, path, 4, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tokenizer_bos(t), 1);
    CU_ASSERT_EQUAL(gqr_tokenizer_eos(t), 2);
    int ids[8];
    /* No space piece and no byte tokens: each unknown code point is <unk>. */
    expect(t, "aa", 0, IDS(0, 3, 3));
    gqr_tokenizer_free(t);
    CU_ASSERT_EQUAL_FATAL(gqr_tokenizer_load(&t, path, 0, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tokenizer_vocab_size(t), 4);
    CU_ASSERT_EQUAL(enc(t, "a", 1, 1, ids, 8), 3);
    gqr_tokenizer_free(t);

    expect_load_error("trunc.bin", b, n - 1, 4, "truncated in token 3");
    expect_load_error("trunc2.bin", b, n - 3, 0, "truncated in token 3");
    expect_load_error("empty.bin", b, 0, 0, "truncated: no header");
    expect_load_error("mismatch.bin", b, n, 5, "has 4 tokens, the model's vocab_size is 5");
    expect_load_error("mismatch2.bin", b, n, 3, "has 4 tokens, the model's vocab_size is 3");
    unsigned char bad[128];
    memcpy(bad, b, n);
    test_put_le32(bad + 4 + 4, -5); /* the first token's length */
    expect_load_error("neg.bin", bad, n, 4, "token 0 has length -5");
    test_put_le32(bad + 4 + 4, 1000000);
    expect_load_error("huge.bin", bad, n, 4, "token 0 has length 1000000");
    test_put_le32(bad, -1);
    expect_load_error("maxlen.bin", bad, n, 4, "not a llama2.c tokenizer.bin");
    expect_load_error("header.bin", b, 4, 0, "no tokens");
    CU_ASSERT_EQUAL(gqr_tokenizer_load(&t, test_tmp("nonexistent"), 0, err, sizeof err), -1);
    TEST_HAS(err, "cannot open");
}

static void test_files_json(void) {
    static const char not_json[] = "{ \"model\": [1, 2,";
    expect_load_error("a.json", not_json, strlen(not_json), 0, "not valid JSON");
    static const char unigram[] = "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}";
    expect_load_error("b.json", unigram, strlen(unigram), 0, "only byte-level BPE");

    /* The good file, broken one way at a time. */
    char *good = bpe_json(GQR_PRE_LLAMA3, 0, 0);
    cJSON *root = cJSON_Parse(good);
    free(good);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    cJSON *split = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers"), 0);
    cJSON *pattern = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    char *text;

    cJSON *merges = cJSON_DetachItemFromObjectCaseSensitive(model, "merges");
    text = cJSON_Print(root);
    expect_load_error("c.json", text, strlen(text), 0, "model.merges is missing");
    free(text);

    cJSON_AddItemToArray(merges, cJSON_CreateString("x yz"));
    cJSON_AddItemToObject(model, "merges", merges);
    text = cJSON_Print(root);
    expect_load_error("d.json", text, strlen(text), 0, "'x yz': 'yz' is not in the vocabulary");
    free(text);
    cJSON_DeleteItemFromArray(merges, cJSON_GetArraySize(merges) - 1);

    cJSON_ReplaceItemInObjectCaseSensitive(pattern, "Regex", cJSON_CreateString("\\p{L}+|\\s+"));
    text = cJSON_Print(root);
    expect_load_error("e.json", text, strlen(text), 0, "unknown pre-tokenizer regex");
    free(text);
    cJSON_ReplaceItemInObjectCaseSensitive(pattern, "Regex", cJSON_CreateString(regex_llama3));

    text = cJSON_Print(root);
    expect_load_error("f.json", text, strlen(text), 100,
                      "has 305 tokens, the model's vocab_size is 100");
    free(text);

    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(model, "vocab"), "a");
    text = cJSON_Print(root);
    expect_load_error("g.json", text, strlen(text), 0, "lacks the symbol of byte 0x61");
    free(text);
    cJSON_Delete(root);
}

/* ---- GGUF (gguf_tokenizer.c) ---- */

/* A GGUF file at test_tmp(name) holding a tokenizer of model kind ("llama",
 * "gpt2"; NULL: no tokenizer keys) over n pieces, with SPM scores or, for
 * gpt2, the merges given. */
static const char *write_gguf_vocab(const char *name, const char *kind, int n,
                                    const char *const *pieces, int n_merges,
                                    const char *const *merges) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_GGUF);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string(w, "general.architecture", "llama"), 0);
    if (kind) {
        float scores[16] = {0};
        for (int i = 0; i < n && i < 16; i++)
            scores[i] = -(float)i;
        CU_ASSERT_EQUAL(gqr_tf_writer_set_string(w, "tokenizer.ggml.model", kind), 0);
        CU_ASSERT_EQUAL(gqr_tf_writer_set_string_array(w, "tokenizer.ggml.tokens", n, pieces,
                                                       NULL), 0);
        if (!strcmp(kind, "llama"))
            CU_ASSERT_EQUAL(gqr_tf_writer_set_f32_array(w, "tokenizer.ggml.scores", n, scores), 0);
        if (merges)
            CU_ASSERT_EQUAL(gqr_tf_writer_set_string_array(w, "tokenizer.ggml.merges", n_merges,
                                                           merges, NULL), 0);
        CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
        CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2), 0);
    }
    const char *path = test_tmp(name);
    CU_ASSERT_EQUAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);
    return path;
}

static void test_gguf_vocab(void) {
    static const char *const spm[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
                                      "\xe2\x96\x81" "a", "ab"};
    gqr_tokenizer *t = NULL;
    const char *path = write_gguf_vocab("spm.gguf", "llama", 8, spm, 0, NULL);
    CU_ASSERT_EQUAL_FATAL(gqr_gguf_tokenizer(&t, path, 8, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tokenizer_vocab_size(t), 8);
    CU_ASSERT_EQUAL(gqr_tokenizer_bos(t), 1);
    int ids[8], n = 0;
    CU_ASSERT_EQUAL(gqr_tokenizer_encode(t, "ab", 2, 1, ids, 8, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT(n == 3 && ids[0] == 1 && ids[1] == 6 && ids[2] == 5);
    gqr_tokenizer_free(t);
    /* No tokenizer keys (as gqac writes GGUF): none, and no error. */
    t = (gqr_tokenizer *)1;
    path = write_gguf_vocab("none.gguf", NULL, 0, NULL, 0, NULL);
    CU_ASSERT_EQUAL(gqr_gguf_tokenizer(&t, path, 8, err, sizeof err), 0);
    CU_ASSERT_PTR_NULL(t);
}

/* Every message names the file, those of the vocabulary's checks too. */
static void test_gguf_vocab_errors(void) {
    static const char *const bpe[] = {"a", "b", "ab"};
    static const char *const merges[] = {"a c"};
    gqr_tokenizer *t = NULL;
    const char *path = write_gguf_vocab("bpe.gguf", "gpt2", 3, bpe, 1, merges);
    CU_ASSERT_EQUAL(gqr_gguf_tokenizer(&t, path, 0, err, sizeof err), -1);
    CU_ASSERT_PTR_NULL(t);
    char want[1100];
    snprintf(want, sizeof want, "%s: ", path);
    CU_ASSERT_EQUAL(strncmp(err, want, strlen(want)), 0);
    TEST_HAS(err, "lacks the symbol of byte");
    path = write_gguf_vocab("size.gguf", "gpt2", 3, bpe, 1, merges);
    CU_ASSERT_EQUAL(gqr_gguf_tokenizer(&t, path, 5, err, sizeof err), -1);
    TEST_HAS(err, "size.gguf: the tokenizer has 3 tokens, the model's vocab is 5");
    path = write_gguf_vocab("kind.gguf", "bert", 3, bpe, 0, NULL);
    CU_ASSERT_EQUAL(gqr_gguf_tokenizer(&t, path, 0, err, sizeof err), -1);
    TEST_HAS(err, "kind.gguf: tokenizer.ggml.model is neither llama nor gpt2");
}

int main(void) {
    char why[512];
    if (gqr_tokenizer_load(&llama2, LLAMA2_BIN, 32000, why, sizeof why)) {
        printf("test_tokenizer: tests of the Llama 2 vocabulary are SKIPPED: %s (run from the "
               "repository root, with the shared data folder beside it)\n", why);
        llama2 = NULL;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("spm", NULL, NULL);
    CU_add_test(s, "Hello world", test_spm_hello);
    CU_add_test(s, "SentencePiece's ids", test_spm_sentencepiece);
    CU_add_test(s, "decode", test_spm_decode);
    CU_add_test(s, "round trips", test_spm_round_trip);
    CU_add_test(s, "invalid UTF-8", test_spm_invalid_utf8);
    CU_add_test(s, "GGUF-style vocabulary", test_spm_bar_vocab);
    CU_add_test(s, "from arrays", test_spm_spec);
    CU_add_test(s, "100 KB prompt", test_spm_long);
    CU_add_test(s, "ids cap", test_spm_cap);
    s = CU_add_suite("bpe", NULL, NULL);
    CU_add_test(s, "llama3", test_bpe_llama3);
    CU_add_test(s, "qwen2 and gpt2", test_bpe_qwen2_gpt2);
    CU_add_test(s, "merges as pairs", test_bpe_merge_pairs);
    CU_add_test(s, "ignore_merges", test_bpe_ignore_merges);
    CU_add_test(s, "special tokens", test_bpe_special);
    CU_add_test(s, "decode", test_bpe_decode);
    CU_add_test(s, "round trips", test_bpe_round_trip);
    CU_add_test(s, "padded vocabulary", test_bpe_padded);
    s = CU_add_suite("split", NULL, NULL);
    CU_add_test(s, "llama3", test_split_llama3);
    CU_add_test(s, "qwen2 and gpt2", test_split_qwen2_gpt2);
    CU_add_test(s, "errors", test_split_errors);
    s = CU_add_suite("files", NULL, NULL);
    CU_add_test(s, "tokenizer.bin", test_files_bin);
    CU_add_test(s, "tokenizer.json", test_files_json);
    CU_add_test(s, "GGUF vocabulary", test_gguf_vocab);
    CU_add_test(s, "GGUF vocabulary errors name the file", test_gguf_vocab_errors);
    int failed = cunit_run();
    gqr_tokenizer_free(llama2);
    return failed;
}
