/*
 * gguf.c: GGUF files (ggml's docs/gguf.md), versions 2 and 3,
 * little-endian: the header, the metadata pairs, the tensor infos, then
 * the data section at the next multiple of general.alignment.  The reader
 * keeps numbers and numeric arrays in the mapped file and copies only
 * strings, so that they end in a NUL.  The writer makes version 3.
 * Tensors are F32, F16, BF16 or one of quant.h's block types, whose rows
 * must be whole blocks.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "outfile.h"
#include "quant.h"
#include "tensorfile.h"

struct gqr_gguf_value {
    int type, elem_type;
    uint64_t count;           /* an array's elements */
    const unsigned char *raw; /* a number, or a numeric array's elements, in the file */
    char *chars;              /* a string, or a string array's strings, each NUL-terminated */
    size_t len;               /* a string's length */
    size_t *offs;             /* a string array: count + 1 offsets into chars */
};

struct gqr_gguf_kv {
    char *key;
    gqr_gguf_value v;
};

/* Bytes of each value type; strings and arrays vary. */
static const int value_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static const char *const value_names[13] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64"};

enum { DEFAULT_ALIGNMENT = 32 };

/* Smallest encodings, to bound counts by the bytes left before trusting
 * them: a pair with an empty key and a uint8; a tensor info with an empty
 * name and one dim. */
enum { MIN_KV_BYTES = 8 + 4 + 1, MIN_INFO_BYTES = 8 + 4 + 8 + 4 + 8 };

/* ---- reading ---- */

typedef struct {
    const unsigned char *p;
    size_t size, pos;
    const char *file;
    char *err;
    size_t errlen;
    char what[160]; /* the part being read, for messages */
} Reader;

static int need(Reader *r, uint64_t n) {
    if (n <= r->size - r->pos)
        return 0;
    return gqr_fail(r->err, r->errlen,
                       "%s: truncated in %s: %llu bytes needed at byte %zu, %zu remain",
                       r->file, r->what, (unsigned long long)n, r->pos, r->size - r->pos);
}

static int u32(Reader *r, uint32_t *v) {
    if (need(r, 4))
        return -1;
    *v = gqr_tf_le32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int u64(Reader *r, uint64_t *v) {
    if (need(r, 8))
        return -1;
    *v = gqr_tf_le64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

/* A gguf_string's bytes, left in the file: *s and *len. */
static int str(Reader *r, const unsigned char **s, size_t *len) {
    uint64_t n;
    if (u64(r, &n) || need(r, n))
        return -1;
    *s = r->p + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

static char *copy_str(const unsigned char *s, size_t len) {
    char *c = malloc(len + 1);
    if (c) {
        memcpy(c, s, len);
        c[len] = 0;
    }
    return c;
}

static int oom(Reader *r) {
    return gqr_fail(r->err, r->errlen, "%s: out of memory in %s", r->file, r->what);
}

static int string_value(Reader *r, gqr_gguf_value *v) {
    const unsigned char *s;
    if (str(r, &s, &v->len))
        return -1;
    v->chars = copy_str(s, v->len);
    return v->chars ? 0 : oom(r);
}

/* A string array, in two passes: check and measure, then copy into one
 * block. */
static int string_array(Reader *r, gqr_gguf_value *v) {
    if (v->count > (r->size - r->pos) / 8)
        return gqr_fail(r->err, r->errlen,
                           "%s: %s: an array of %llu strings needs at least 8 bytes each, "
                           "%zu remain", r->file, r->what, (unsigned long long)v->count,
                           r->size - r->pos);
    size_t start = r->pos, total = 0, len;
    const unsigned char *s;
    for (uint64_t i = 0; i < v->count; i++) {
        if (str(r, &s, &len))
            return -1;
        total += len + 1; /* at most the file's size plus the count: no overflow */
    }
    v->offs = malloc(((size_t)v->count + 1) * sizeof *v->offs);
    v->chars = malloc(total ? total : 1);
    if (!v->offs || !v->chars)
        return oom(r);
    r->pos = start;
    size_t at = 0;
    for (uint64_t i = 0; i < v->count; i++) {
        str(r, &s, &len); /* cannot fail: the first pass read the same bytes */
        memcpy(v->chars + at, s, len);
        v->chars[at + len] = 0;
        v->offs[i] = at;
        at += len + 1;
    }
    v->offs[v->count] = at;
    return 0;
}

static int bad_type(Reader *r, uint32_t type) {
    return gqr_fail(r->err, r->errlen, "%s: %s has unknown value type %u (0 to 12 exist)",
                       r->file, r->what, type);
}

static int array_value(Reader *r, gqr_gguf_value *v) {
    uint32_t et;
    if (u32(r, &et) || u64(r, &v->count))
        return -1;
    if (et == GQR_GGUF_ARRAY)
        return gqr_fail(r->err, r->errlen, "%s: %s is an array of arrays, "
                           "which is not supported", r->file, r->what);
    if (et > GQR_GGUF_FLOAT64)
        return bad_type(r, et);
    v->elem_type = (int)et;
    if (et == GQR_GGUF_STRING)
        return string_array(r, v);
    uint64_t size = (uint64_t)value_size[et];
    if (v->count > (r->size - r->pos) / size)
        return gqr_fail(r->err, r->errlen,
                           "%s: truncated in %s: %llu %s values need %llu bytes each, "
                           "%zu remain", r->file, r->what, (unsigned long long)v->count,
                           value_names[et], (unsigned long long)size, r->size - r->pos);
    v->raw = r->p + r->pos;
    r->pos += (size_t)(v->count * size);
    return 0;
}

static int value(Reader *r, gqr_gguf_value *v) {
    uint32_t type;
    if (u32(r, &type))
        return -1;
    if (type > GQR_GGUF_FLOAT64)
        return bad_type(r, type);
    v->type = (int)type;
    v->elem_type = -1;
    if (type == GQR_GGUF_STRING)
        return string_value(r, v);
    if (type == GQR_GGUF_ARRAY)
        return array_value(r, v);
    if (need(r, (uint64_t)value_size[type]))
        return -1;
    v->raw = r->p + r->pos;
    r->pos += (size_t)value_size[type];
    return 0;
}

static int by_key(const void *a, const void *b) {
    return strcmp((*(const gqr_gguf_kv *const *)a)->key, (*(const gqr_gguf_kv *const *)b)->key);
}

static int read_kvs(Reader *r, gqr_tensorfile *tf, uint64_t n) {
    if (n > (r->size - r->pos) / MIN_KV_BYTES || n > INT_MAX)
        return gqr_fail(r->err, r->errlen,
                           "%s: metadata count %llu is more than the %zu bytes left could hold "
                           "(at least %d bytes each)", r->file, (unsigned long long)n,
                           r->size - r->pos, MIN_KV_BYTES);
    tf->kv = calloc(n ? (size_t)n : 1, sizeof *tf->kv);
    tf->kv_by_key = malloc((n ? (size_t)n : 1) * sizeof *tf->kv_by_key);
    if (!tf->kv || !tf->kv_by_key)
        return oom(r);
    for (uint64_t i = 0; i < n; i++) {
        gqr_gguf_kv *kv = &tf->kv[tf->n_kv++];
        const unsigned char *key;
        size_t len;
        snprintf(r->what, sizeof r->what, "the key of metadata pair %llu", (unsigned long long)i);
        if (str(r, &key, &len))
            return -1;
        if (!(kv->key = copy_str(key, len)))
            return oom(r);
        snprintf(r->what, sizeof r->what, "metadata '%.64s'", kv->key);
        if (value(r, &kv->v))
            return -1;
        tf->kv_by_key[i] = kv;
    }
    qsort(tf->kv_by_key, (size_t)n, sizeof *tf->kv_by_key, by_key);
    for (uint64_t i = 0; i + 1 < n; i++)
        if (!strcmp(tf->kv_by_key[i]->key, tf->kv_by_key[i + 1]->key))
            return gqr_fail(r->err, r->errlen, "%s: duplicate metadata key '%.64s'",
                               r->file, tf->kv_by_key[i]->key);
    return 0;
}

static int alignment(Reader *r, const gqr_tensorfile *tf, uint64_t *align) {
    const gqr_gguf_value *v = gqr_gguf_get(tf, "general.alignment");
    *align = DEFAULT_ALIGNMENT;
    if (!v)
        return 0;
    if (v->type != GQR_GGUF_UINT32)
        return gqr_fail(r->err, r->errlen, "%s: general.alignment is a %s; expected a uint32",
                           r->file, value_names[v->type]);
    *align = gqr_tf_le32(v->raw);
    if (!*align || (*align & (*align - 1)))
        return gqr_fail(r->err, r->errlen,
                           "%s: general.alignment is %llu; expected a nonzero power of two",
                           r->file, (unsigned long long)*align);
    return 0;
}

/* t's size in bytes: its rows (the innermost dim, dims[n_dims - 1]) must
 * be whole blocks of its type. */
static int tensor_bytes(Reader *r, gqr_tensor *t, const char *shown) {
    char why[128];
    uint64_t row;
    if (gqr_q_row_bytes(t->dtype, t->dims[t->n_dims - 1], &row, why, sizeof why) ||
        gqr_q_row_bytes(t->dtype, t->n_elems, &t->n_bytes, why, sizeof why))
        return gqr_fail(r->err, r->errlen, "%s: tensor '%s' has rows of %llu elements: %s",
                        r->file, shown, (unsigned long long)t->dims[t->n_dims - 1], why);
    return 0;
}

/* One tensor info: everything but the data pointer, its offset in *offset. */
static int tensor_info(Reader *r, gqr_tensorfile *tf, uint64_t i, uint64_t *offset) {
    const unsigned char *name;
    size_t len;
    snprintf(r->what, sizeof r->what, "the name of tensor info %llu", (unsigned long long)i);
    if (str(r, &name, &len))
        return -1;
    gqr_tensor t = {0};
    char shown[65];
    snprintf(shown, sizeof shown, "%.*s", (int)(len < 64 ? len : 64), (const char *)name);
    snprintf(r->what, sizeof r->what, "tensor '%s'", shown);
    uint32_t n_dims, type;
    if (u32(r, &n_dims))
        return -1;
    if (n_dims < 1 || n_dims > 4)
        return gqr_fail(r->err, r->errlen, "%s: tensor '%s' has %u dims; expected 1 to 4",
                           r->file, shown, n_dims);
    t.n_dims = (int)n_dims;
    t.n_elems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        if (u64(r, &ne))
            return -1;
        if (!ne)
            return gqr_fail(r->err, r->errlen, "%s: tensor '%s' has a dim of size 0",
                               r->file, shown);
        if (t.n_elems > UINT64_MAX / 4 / ne)
            return gqr_fail(r->err, r->errlen, "%s: tensor '%s' has too many elements "
                               "(more than 2^62)", r->file, shown);
        t.n_elems *= ne;
        t.dims[n_dims - 1 - d] = ne; /* GGUF lists the innermost first */
    }
    if (u32(r, &type) || u64(r, offset))
        return -1;
    if ((t.dtype = gqr_q_from_ggml(type)) < 0)
        return gqr_fail(r->err, r->errlen, "%s: tensor '%s' has type %s (%u); supported: "
                        "F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K", r->file, shown,
                        gqr_q_ggml_name(type), type);
    if (tensor_bytes(r, &t, shown))
        return -1;
    return gqr_tf_push(tf, &t, (const char *)name, len, r->err, r->errlen);
}

/* Points each tensor into the data section, checking where it lies. */
static int place(Reader *r, gqr_tensorfile *tf, const uint64_t *offsets, uint64_t align) {
    uint64_t start = (r->pos + align - 1) / align * align;
    uint64_t avail = start <= r->size ? r->size - start : 0;
    for (int i = 0; i < tf->n_tensors; i++) {
        gqr_tensor *t = &tf->tensors[i];
        uint64_t off = offsets[i];
        if (off % align)
            return gqr_fail(r->err, r->errlen, "%s: tensor '%.64s' offset %llu is not a "
                               "multiple of the alignment %llu", r->file, t->name,
                               (unsigned long long)off, (unsigned long long)align);
        if (off > avail || t->n_bytes > avail - off) {
            unsigned long long a = off > UINT64_MAX - start ? UINT64_MAX : start + off;
            unsigned long long b = t->n_bytes > UINT64_MAX - a ? UINT64_MAX : a + t->n_bytes;
            return gqr_fail(r->err, r->errlen, "%s: tensor '%.64s' data [%llu, %llu) runs "
                               "past the end of the file (%zu bytes)", r->file, t->name, a, b,
                               r->size);
        }
        t->data = r->p + start + off;
    }
    return 0;
}

static int tensor_infos(Reader *r, gqr_tensorfile *tf, uint64_t n, uint64_t align) {
    uint64_t *offsets = malloc((n ? (size_t)n : 1) * sizeof *offsets);
    if (!offsets)
        return oom(r);
    int rc = 0;
    for (uint64_t i = 0; i < n && !rc; i++)
        rc = tensor_info(r, tf, i, &offsets[i]);
    if (!rc)
        rc = place(r, tf, offsets, align);
    free(offsets);
    return rc;
}

static int header(Reader *r, uint64_t *n_tensors, uint64_t *n_kv) {
    if (r->size < 4 || memcmp(r->p, "GGUF", 4)) {
        char seen[16] = "";
        for (size_t i = 0; i < 4 && i < r->size; i++)
            snprintf(seen + 3 * i, sizeof seen - 3 * i, "%02x ", r->p[i]);
        return gqr_fail(r->err, r->errlen, "%s: not a GGUF file: it starts with %s"
                           "(%zu bytes), expected the magic 47 47 55 46 (\"GGUF\")", r->file,
                           seen, r->size);
    }
    r->pos = 4;
    uint32_t version;
    snprintf(r->what, sizeof r->what, "the header");
    if (u32(r, &version))
        return -1;
    if (version == 0x02000000 || version == 0x03000000)
        return gqr_fail(r->err, r->errlen, "%s: a big-endian GGUF file, which is not "
                           "supported", r->file);
    if (version != 2 && version != 3)
        return gqr_fail(r->err, r->errlen, "%s: GGUF version %u is not supported "
                           "(2 and 3 are)", r->file, version);
    if (u64(r, n_tensors) || u64(r, n_kv))
        return -1;
    if (*n_tensors > (r->size - r->pos) / MIN_INFO_BYTES || *n_tensors > INT_MAX)
        return gqr_fail(r->err, r->errlen,
                           "%s: tensor count %llu is more than the %zu bytes left could hold "
                           "(at least %d bytes each)", r->file, (unsigned long long)*n_tensors,
                           r->size - r->pos, MIN_INFO_BYTES);
    return 0;
}

static int parse(gqr_tensorfile *tf, const char *file, const unsigned char *p, size_t size,
                 char *err, size_t errlen) {
    Reader r = {p, size, 0, file, err, errlen, ""};
    uint64_t n_tensors, n_kv, align;
    if (header(&r, &n_tensors, &n_kv) || read_kvs(&r, tf, n_kv) || alignment(&r, tf, &align) ||
        tensor_infos(&r, tf, n_tensors, align))
        return -1;
    uint64_t start = (r.pos + align - 1) / align * align;
    return gqr_tf_check_overlap(tf, 0, p + (start <= size ? start : size), file, err, errlen);
}

static void free_kv(gqr_tensorfile *tf) {
    for (int i = 0; i < tf->n_kv; i++) {
        free(tf->kv[i].key);
        free(tf->kv[i].v.chars);
        free(tf->kv[i].v.offs);
    }
    free(tf->kv);
    free(tf->kv_by_key);
}

/* ---- metadata ---- */

static int find_key(const void *key, const void *elem) {
    return strcmp(key, (*(const gqr_gguf_kv *const *)elem)->key);
}

const gqr_gguf_value *gqr_gguf_get(const gqr_tensorfile *tf, const char *key) {
    if (!tf || !key || !tf->n_kv)
        return NULL;
    const gqr_gguf_kv **kv =
        bsearch(key, tf->kv_by_key, (size_t)tf->n_kv, sizeof *tf->kv_by_key, find_key);
    return kv ? &(*kv)->v : NULL;
}

int gqr_gguf_count(const gqr_tensorfile *tf) {
    return tf->n_kv;
}

const gqr_gguf_value *gqr_gguf_at(const gqr_tensorfile *tf, int i, const char **key) {
    if (i < 0 || i >= tf->n_kv)
        return NULL;
    if (key)
        *key = tf->kv[i].key;
    return &tf->kv[i].v;
}

int gqr_gguf_type(const gqr_gguf_value *v) {
    return v->type;
}

/* A number of the given type at raw, as an integer. */
static int int_at(int type, const unsigned char *raw, int64_t *out) {
    switch (type) {
    case GQR_GGUF_UINT8: *out = raw[0]; return 0;
    case GQR_GGUF_INT8: *out = (int8_t)raw[0]; return 0;
    case GQR_GGUF_BOOL: *out = raw[0] != 0; return 0;
    case GQR_GGUF_UINT16: *out = gqr_tf_le16(raw); return 0;
    case GQR_GGUF_INT16: *out = (int16_t)gqr_tf_le16(raw); return 0;
    case GQR_GGUF_UINT32: *out = gqr_tf_le32(raw); return 0;
    case GQR_GGUF_INT32: *out = (int32_t)gqr_tf_le32(raw); return 0;
    case GQR_GGUF_INT64: *out = (int64_t)gqr_tf_le64(raw); return 0;
    case GQR_GGUF_UINT64:
        if (gqr_tf_le64(raw) > INT64_MAX)
            return -1;
        *out = (int64_t)gqr_tf_le64(raw);
        return 0;
    default: return -1;
    }
}

static int float_at(int type, const unsigned char *raw, double *out) {
    if (type == GQR_GGUF_FLOAT32) {
        uint32_t u = gqr_tf_le32(raw);
        float f;
        memcpy(&f, &u, sizeof f);
        *out = f;
        return 0;
    }
    if (type == GQR_GGUF_FLOAT64) {
        uint64_t u = gqr_tf_le64(raw);
        memcpy(out, &u, sizeof *out);
        return 0;
    }
    if (type == GQR_GGUF_UINT64) { /* may exceed int64 */
        *out = (double)gqr_tf_le64(raw);
        return 0;
    }
    int64_t i;
    if (int_at(type, raw, &i))
        return -1;
    *out = (double)i;
    return 0;
}

int gqr_gguf_int(const gqr_gguf_value *v, int64_t *out) {
    return v->raw && v->type != GQR_GGUF_ARRAY ? int_at(v->type, v->raw, out) : -1;
}

int gqr_gguf_float(const gqr_gguf_value *v, double *out) {
    return v->raw && v->type != GQR_GGUF_ARRAY ? float_at(v->type, v->raw, out) : -1;
}

const char *gqr_gguf_string(const gqr_gguf_value *v, size_t *len) {
    if (v->type != GQR_GGUF_STRING)
        return NULL;
    if (len)
        *len = v->len;
    return v->chars;
}

uint64_t gqr_gguf_array_len(const gqr_gguf_value *v) {
    return v->type == GQR_GGUF_ARRAY ? v->count : 0;
}

int gqr_gguf_array_type(const gqr_gguf_value *v) {
    return v->type == GQR_GGUF_ARRAY ? v->elem_type : -1;
}

const char *gqr_gguf_array_string(const gqr_gguf_value *v, uint64_t i, size_t *len) {
    if (v->type != GQR_GGUF_ARRAY || v->elem_type != GQR_GGUF_STRING || i >= v->count)
        return NULL;
    if (len)
        *len = v->offs[i + 1] - v->offs[i] - 1;
    return v->chars + v->offs[i];
}

/* Element i of a numeric array, or NULL. */
static const unsigned char *element(const gqr_gguf_value *v, uint64_t i) {
    if (v->type != GQR_GGUF_ARRAY || v->elem_type == GQR_GGUF_STRING || i >= v->count)
        return NULL;
    return v->raw + i * (uint64_t)value_size[v->elem_type];
}

int gqr_gguf_array_float(const gqr_gguf_value *v, uint64_t i, double *out) {
    const unsigned char *e = element(v, i);
    return e ? float_at(v->elem_type, e, out) : -1;
}

int gqr_gguf_array_int(const gqr_gguf_value *v, uint64_t i, int64_t *out) {
    const unsigned char *e = element(v, i);
    return e ? int_at(v->elem_type, e, out) : -1;
}

/* ---- writing ---- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int oom;
} Buf;

static void put(Buf *b, const void *p, size_t n) {
    if (b->oom || !n)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n && cap <= SIZE_MAX / 2)
            cap *= 2;
        unsigned char *q = cap - b->len >= n ? realloc(b->p, cap) : NULL;
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_u32(Buf *b, uint32_t v) {
    unsigned char x[4];
    gqr_tf_put32(x, v);
    put(b, x, 4);
}

static void put_u64(Buf *b, uint64_t v) {
    unsigned char x[8];
    gqr_tf_put64(x, v);
    put(b, x, 8);
}

static void put_str(Buf *b, const char *s, size_t len) {
    put_u64(b, len);
    put(b, s, len);
}

static void pad(Buf *b, uint64_t align) {
    static const unsigned char zeros[64];
    while (b->len % align && !b->oom) {
        uint64_t n = align - b->len % align;
        put(b, zeros, n < sizeof zeros ? (size_t)n : sizeof zeros);
    }
}

/* Whether key may be set: a GGUF writer, a key, not set before. */
static int can_set(const gqr_tf_writer *w, const char *key) {
    if (!w || w->format != GQR_TF_GGUF || !key)
        return 0;
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return 0;
    return 1;
}

/* A pair's start: the key, then the value type. */
static Buf pair(const char *key, int type) {
    Buf b = {0};
    put_str(&b, key, strlen(key));
    put_u32(&b, (uint32_t)type);
    return b;
}

/* Adds the pair in b to w (consuming b), or leaves w as it was. */
static int commit(gqr_tf_writer *w, const char *key, Buf *b) {
    char **keys = b->oom ? NULL : realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *keys);
    if (keys)
        w->keys = keys;
    char *k = keys ? strdup(key) : NULL;
    Buf all = {w->kv, w->kv_len, w->kv_cap, 0};
    if (k)
        put(&all, b->p, b->len);
    free(b->p);
    if (!k || all.oom) {
        free(k);
        return -1;
    }
    w->kv = all.p;
    w->kv_len = all.len;
    w->kv_cap = all.cap;
    w->keys[w->n_kv++] = k;
    return 0;
}

int gqr_tf_writer_set_string(gqr_tf_writer *w, const char *key, const char *s) {
    if (!can_set(w, key) || !s)
        return -1;
    Buf b = pair(key, GQR_GGUF_STRING);
    put_str(&b, s, strlen(s));
    return commit(w, key, &b);
}

int gqr_tf_writer_set_int(gqr_tf_writer *w, const char *key, int type, int64_t v) {
    static const int64_t lo[] = {0, INT8_MIN, 0, INT16_MIN, 0, INT32_MIN, 0, 0, 0, 0, 0, INT64_MIN};
    static const int64_t hi[] = {UINT8_MAX, INT8_MAX, UINT16_MAX, INT16_MAX, UINT32_MAX,
                                 INT32_MAX, 0, 1, 0, 0, INT64_MAX, INT64_MAX};
    if (!can_set(w, key) || type < 0 || type > GQR_GGUF_INT64 || type == GQR_GGUF_FLOAT32 ||
        type == GQR_GGUF_STRING || type == GQR_GGUF_ARRAY || v < lo[type] || v > hi[type])
        return -1;
    int is_alignment = !strcmp(key, "general.alignment");
    if (is_alignment && (type != GQR_GGUF_UINT32 || !v || (v & (v - 1))))
        return -1;
    unsigned char x[8];
    gqr_tf_put64(x, (uint64_t)v); /* little-endian: the low bytes come first */
    Buf b = pair(key, type);
    put(&b, x, (size_t)value_size[type]);
    if (commit(w, key, &b))
        return -1;
    if (is_alignment)
        w->alignment = (uint32_t)v;
    return 0;
}

int gqr_tf_writer_set_u32(gqr_tf_writer *w, const char *key, uint32_t v) {
    return gqr_tf_writer_set_int(w, key, GQR_GGUF_UINT32, v);
}

int gqr_tf_writer_set_bool(gqr_tf_writer *w, const char *key, int v) {
    return gqr_tf_writer_set_int(w, key, GQR_GGUF_BOOL, v != 0);
}

int gqr_tf_writer_set_f32(gqr_tf_writer *w, const char *key, float v) {
    if (!can_set(w, key))
        return -1;
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    Buf b = pair(key, GQR_GGUF_FLOAT32);
    put_u32(&b, u);
    return commit(w, key, &b);
}

int gqr_tf_writer_set_f64(gqr_tf_writer *w, const char *key, double v) {
    if (!can_set(w, key))
        return -1;
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    Buf b = pair(key, GQR_GGUF_FLOAT64);
    put_u64(&b, u);
    return commit(w, key, &b);
}

/* An array pair's start: the key, "array", the element type and count. */
static Buf array_pair(const char *key, int type, int n) {
    Buf b = pair(key, GQR_GGUF_ARRAY);
    put_u32(&b, (uint32_t)type);
    put_u64(&b, (uint64_t)n);
    return b;
}

int gqr_tf_writer_set_string_array(gqr_tf_writer *w, const char *key, int n,
                                   const char *const *s, const size_t *lens) {
    if (!can_set(w, key) || n < 0 || (n && !s))
        return -1;
    for (int i = 0; i < n; i++)
        if (!s[i])
            return -1;
    Buf b = array_pair(key, GQR_GGUF_STRING, n);
    for (int i = 0; i < n; i++)
        put_str(&b, s[i], lens ? lens[i] : strlen(s[i]));
    return commit(w, key, &b);
}

int gqr_tf_writer_set_f32_array(gqr_tf_writer *w, const char *key, int n, const float *v) {
    if (!can_set(w, key) || n < 0 || (n && !v))
        return -1;
    Buf b = array_pair(key, GQR_GGUF_FLOAT32, n);
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        put_u32(&b, u);
    }
    return commit(w, key, &b);
}

int gqr_tf_writer_set_i32_array(gqr_tf_writer *w, const char *key, int n, const int32_t *v) {
    if (!can_set(w, key) || n < 0 || (n && !v))
        return -1;
    Buf b = array_pair(key, GQR_GGUF_INT32, n);
    for (int i = 0; i < n; i++)
        put_u32(&b, (uint32_t)v[i]);
    return commit(w, key, &b);
}

/* A value read from a file, byte for byte (quantize carries a GGUF's
 * tokenizer over so): numbers in their own type, strings with their
 * lengths, arrays element by element. */
int gqr_tf_writer_set_value(gqr_tf_writer *w, const char *key, const gqr_gguf_value *v) {
    int64_t i64;
    if (!v || !strcmp(key ? key : "", "general.alignment"))
        return v && !gqr_gguf_int(v, &i64) ? gqr_tf_writer_set_int(w, key, v->type, i64) : -1;
    if (!can_set(w, key) || v->count > INT32_MAX)
        return -1;
    int is_array = v->type == GQR_GGUF_ARRAY, et = is_array ? v->elem_type : v->type;
    Buf b = is_array ? array_pair(key, et, (int)v->count) : pair(key, v->type);
    uint64_t n = is_array ? v->count : 1;
    if (et == GQR_GGUF_STRING && !is_array)
        put_str(&b, v->chars, v->len);
    else if (et == GQR_GGUF_STRING)
        for (uint64_t i = 0; i < n; i++)
            put_str(&b, v->chars + v->offs[i], v->offs[i + 1] - v->offs[i] - 1);
    else if (n)
        put(&b, v->raw, (size_t)n * (size_t)value_size[et]);
    return commit(w, key, &b);
}

/* llama.cpp refuses tensor names of GGML_MAX_NAME (64) bytes or more. */
enum { MAX_NAME = 63 };

/* The header, pairs and tensor infos, padded to the alignment. */
static int header_bytes(const gqr_tf_writer *w, Buf *b, const char *path, char *err,
                        size_t errlen) {
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, (uint64_t)w->n);
    put_u64(b, (uint64_t)w->n_kv);
    put(b, w->kv, w->kv_len);
    uint64_t offset = 0;
    for (int i = 0; i < w->n; i++) {
        const gqr_tf_wtensor *t = &w->t[i];
        size_t len = strlen(t->name);
        if (len > MAX_NAME)
            return gqr_fail(err, errlen, "%s: tensor name '%.64s...' is %zu bytes; GGUF "
                               "readers take at most %d", path, t->name, len, MAX_NAME);
        put_str(b, t->name, len);
        put_u32(b, (uint32_t)t->n_dims);
        for (int d = t->n_dims - 1; d >= 0; d--)
            put_u64(b, t->dims[d]);
        put_u32(b, (uint32_t)gqr_q_type_of(t->dtype)->ggml);
        put_u64(b, offset);
        offset += (t->n_bytes + w->alignment - 1) / w->alignment * w->alignment;
    }
    pad(b, w->alignment);
    return b->oom ? gqr_fail(err, errlen, "%s: out of memory for the header", path) : 0;
}

static void write_zeros(gqr_out *o, uint64_t n) {
    static const unsigned char zeros[64];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        gqr_out_put(o, zeros, k);
        n -= k;
    }
}

static int write_gguf(const gqr_tf_writer *w, const char *path, char *err, size_t errlen) {
    Buf b = {0};
    gqr_out o;
    if (header_bytes(w, &b, path, err, errlen) || gqr_out_open(&o, path, err, errlen)) {
        free(b.p);
        return -1;
    }
    gqr_out_put(&o, b.p, b.len);
    free(b.p);
    for (int i = 0; i < w->n; i++) {
        gqr_out_put(&o, w->t[i].bytes, (size_t)w->t[i].n_bytes);
        write_zeros(&o, (w->alignment - w->t[i].n_bytes % w->alignment) % w->alignment);
    }
    return gqr_out_commit(&o, err, errlen);
}

/* ---- the format ---- */

/* The magic; a .gguf name with a wrong one still comes here, so that the
 * header's check says what the magic was. */
static int probe(const unsigned char *p, size_t size, const char *name) {
    return (size >= 4 && !memcmp(p, "GGUF", 4)) || gqr_tf_ends_with(name, ".gguf");
}

/* The writer's pairs are in tensorfile.c's fields, freed there. */
const gqr_tf_codec gqr_gguf_codec = {GQR_TF_GGUF, 0, probe, parse, free_kv, write_gguf, NULL};
