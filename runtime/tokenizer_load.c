/*
 * tokenizer_load.c: tokenizers from files (gqr_tokenizer_load): llama2.c's
 * tokenizer.bin and Hugging Face's tokenizer.json, each read into a
 * gqr_vocab_spec for gqr_tokenizer_new.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "tokenizer_int.h"

/* tokenizer.json ids beyond this are taken as corruption, not allocated. */
#define MAX_JSON_ID (1 << 24)

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
    return gqr_tok_byte_piece(p, n) >= 0 ? GQR_TT_BYTE : GQR_TT_NORMAL;
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
        gqr_tok_oom(err, errlen);
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
        return gqr_tok_oom(err, errlen);
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
        return gqr_tok_oom(err, errlen);
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
