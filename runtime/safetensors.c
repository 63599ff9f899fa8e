/*
 * safetensors.c: safetensors files (huggingface/safetensors' README): a
 * little-endian u64 header length, a JSON header mapping each tensor name
 * to its dtype, shape and data_offsets (relative to the end of the
 * header), then the data.  Sharded sets have a model.safetensors.index.json
 * whose weight_map names each tensor's shard.  cJSON parses and prints
 * the JSON; numbers there are doubles, exact for integers below 2^53,
 * which bounds any real file.
 */
#include <stdlib.h>
#include <string.h>

#include "outfile.h"
#include "tensorfile.h"

#ifdef GQR_NO_CJSON
/* A runtime built for a target without cJSON: GGUF and llama2.c files
 * still load; every safetensors entry point says why it cannot. */
#define NO_JSON "safetensors needs JSON, and this runtime was built without cJSON (GQR_NO_CJSON)"

static int parse(gqr_tensorfile *tf, const char *file, const unsigned char *p, size_t size,
                 char *err, size_t errlen) {
    (void)tf, (void)p, (void)size;
    return gqr_fail(err, errlen, "%s: not a GGUF file, and %s", file, NO_JSON);
}
static void free_meta(gqr_tensorfile *tf) { (void)tf; }
const char *gqr_st_meta(const gqr_tensorfile *tf, const char *key) {
    (void)tf, (void)key;
    return NULL;
}
static int is_index(const unsigned char *p, size_t size, const char *path) {
    (void)p, (void)size, (void)path;
    return 0;
}
static int open_index(gqr_tensorfile *tf, const char *path, const unsigned char *p,
                      size_t size, char *err, size_t errlen) {
    (void)tf, (void)p, (void)size;
    return gqr_fail(err, errlen, "%s: %s", path, NO_JSON);
}
int gqr_tf_writer_set_meta(gqr_tf_writer *w, const char *key, const char *value) {
    (void)w, (void)key, (void)value;
    return -1;
}
static void writer_release(gqr_tf_writer *w) { (void)w; }
static int write_st(const gqr_tf_writer *w, const char *path, char *err, size_t errlen) {
    (void)w;
    return gqr_fail(err, errlen, "%s: %s", path, NO_JSON);
}
int gqr_tf_writer_write_sharded(gqr_tf_writer *w, const char *index_path,
                                uint64_t max_shard_bytes, char *err, size_t errlen) {
    (void)w, (void)max_shard_bytes;
    return gqr_fail(err, errlen, "%s: %s", index_path, NO_JSON);
}
#else
#include <cjson/cJSON.h>

enum { MAX_HEADER = 100000000 }; /* the reference implementation's limit */
#define MAX_EXACT 9007199254740992.0 /* 2^53 */

static const char *const dtype_names[] = {"F32", "F16", "BF16"}; /* by GQR_DT_* */

/* ---- reading ---- */

typedef struct {
    const char *file;
    char *err;
    size_t errlen;
    uint64_t data_len;         /* bytes after the header */
    const unsigned char *data; /* where they start */
} Ctx;

/* A JSON number that is an integer in [0, 2^53]. */
static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j))
        return -1;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= MAX_EXACT) || (double)(uint64_t)d != d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static void format_shape(char *buf, size_t size, const uint64_t *dims, int n) {
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%llu", i ? ", " : "",
                               (unsigned long long)dims[i]);
    if (at < size)
        snprintf(buf + at, size - at, "]");
}

static int dtype_of(Ctx *c, const char *name, const cJSON *j, int *dtype) {
    if (!cJSON_IsString(j))
        return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s' has no \"dtype\" string",
                           c->file, name);
    for (int i = 0; i < 3; i++)
        if (!strcmp(j->valuestring, dtype_names[i])) {
            *dtype = i;
            return 0;
        }
    return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s': dtype %.16s is not supported "
                       "(F32, F16, BF16 are)", c->file, name, j->valuestring);
}

static int shape_of(Ctx *c, const char *name, const cJSON *j, gqr_tensor *t) {
    if (!cJSON_IsArray(j))
        return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s' has no \"shape\" array",
                           c->file, name);
    int n = cJSON_GetArraySize(j);
    if (n > 4)
        return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s' has %d dims; at most 4 are "
                           "supported", c->file, name, n);
    t->n_dims = n;
    t->n_elems = 1;
    int i = 0;
    for (const cJSON *d = j->child; d; d = d->next, i++) {
        if (json_u64(d, &t->dims[i]))
            return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s' shape entry %d is not "
                               "a non-negative integer", c->file, name, i);
        if (t->dims[i] && t->n_elems > UINT64_MAX / 4 / t->dims[i])
            return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s' has too many elements "
                               "(more than 2^62)", c->file, name);
        t->n_elems *= t->dims[i];
    }
    return 0;
}

static int offsets_of(Ctx *c, const char *name, const cJSON *j, gqr_tensor *t) {
    uint64_t b, e;
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2 || json_u64(j->child, &b) ||
        json_u64(j->child->next, &e) || b > e)
        return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s' has no \"data_offsets\" "
                           "[begin, end] of integers with begin <= end", c->file, name);
    if (e > c->data_len)
        return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s' data_offsets [%llu, %llu) "
                           "run past the end of the data (%llu bytes)", c->file, name,
                           (unsigned long long)b, (unsigned long long)e,
                           (unsigned long long)c->data_len);
    if (e - b != t->n_bytes) {
        char shape[128];
        format_shape(shape, sizeof shape, t->dims, t->n_dims);
        return gqr_fail(c->err, c->errlen, "%s: tensor '%.64s' data_offsets [%llu, %llu) "
                           "hold %llu bytes; its shape %s of %s needs %llu", c->file, name,
                           (unsigned long long)b, (unsigned long long)e,
                           (unsigned long long)(e - b), shape, dtype_names[t->dtype],
                           (unsigned long long)t->n_bytes);
    }
    t->data = c->data + b;
    return 0;
}

static int tensor_entry(Ctx *c, gqr_tensorfile *tf, const cJSON *e) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return gqr_fail(c->err, c->errlen, "%s: '%.64s' is not an object with dtype, "
                           "shape and data_offsets", c->file, name);
    gqr_tensor t = {0};
    if (dtype_of(c, name, cJSON_GetObjectItemCaseSensitive(e, "dtype"), &t.dtype) ||
        shape_of(c, name, cJSON_GetObjectItemCaseSensitive(e, "shape"), &t))
        return -1;
    t.n_bytes = t.n_elems * (uint64_t)gqr_tf_dtype_size(t.dtype);
    if (offsets_of(c, name, cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), &t))
        return -1;
    return gqr_tf_push(tf, &t, name, strlen(name), c->err, c->errlen);
}

static int check_meta(Ctx *c, const cJSON *m) {
    if (!cJSON_IsObject(m))
        return gqr_fail(c->err, c->errlen, "%s: __metadata__ is not an object", c->file);
    for (const cJSON *e = m->child; e; e = e->next)
        if (!cJSON_IsString(e))
            return gqr_fail(c->err, c->errlen, "%s: __metadata__ entry '%.64s' is not "
                               "a string", c->file, e->string);
    return 0;
}

/* The header's entries: tensors, and one optional __metadata__, kept in
 * tf when it is the first. */
static int entries(Ctx *c, gqr_tensorfile *tf, cJSON *root) {
    cJSON *meta = NULL;
    for (cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__")) {
            if (tensor_entry(c, tf, e))
                return -1;
        } else if (meta) {
            return gqr_fail(c->err, c->errlen, "%s: __metadata__ appears twice", c->file);
        } else if (check_meta(c, e)) {
            return -1;
        } else {
            meta = e;
        }
    }
    if (meta && !tf->st_meta)
        tf->st_meta = cJSON_DetachItemViaPointer(root, meta);
    return 0;
}

/* The JSON at h (n bytes, then only whitespace, as writers pad it). */
static cJSON *parse_json(const char *h, size_t n, size_t *error_at) {
    const char *end = h;
    cJSON *j = n ? cJSON_ParseWithLengthOpts(h, n, &end, 0) : NULL;
    *error_at = (size_t)(end - h);
    if (!j)
        return NULL;
    for (const char *q = end; q < h + n; q++)
        if (!strchr(" \t\r\n", *q) || !*q) {
            cJSON_Delete(j);
            *error_at = (size_t)(q - h);
            return NULL;
        }
    return j;
}

static int parse(gqr_tensorfile *tf, const char *file, const unsigned char *p, size_t size,
                 char *err, size_t errlen) {
    if (size < 8)
        return gqr_fail(err, errlen, "%s: %zu bytes are too few for a safetensors file "
                           "(an 8-byte header length comes first)", file, size);
    uint64_t n = gqr_tf_le64(p);
    if (n > size - 8)
        return gqr_fail(err, errlen, "%s: the header length %llu runs past the end of the "
                           "file (%zu bytes)", file, (unsigned long long)n, size);
    if (n > MAX_HEADER)
        return gqr_fail(err, errlen, "%s: the header length %llu is over the limit of %d "
                           "bytes", file, (unsigned long long)n, MAX_HEADER);
    size_t error_at;
    cJSON *root = parse_json((const char *)p + 8, (size_t)n, &error_at);
    if (!root)
        return gqr_fail(err, errlen, "%s: the header (%llu bytes) is not JSON: error at "
                           "its byte %zu", file, (unsigned long long)n, error_at);
    Ctx c = {file, err, errlen, size - 8 - n, p + 8 + n};
    int from = tf->n_tensors;
    int rc = cJSON_IsObject(root) ? entries(&c, tf, root)
                                  : gqr_fail(err, errlen, "%s: the header is JSON but not "
                                                "an object", file);
    cJSON_Delete(root);
    if (rc)
        return -1;
    return gqr_tf_check_overlap(tf, from, c.data, file, err, errlen);
}

static void free_meta(gqr_tensorfile *tf) {
    cJSON_Delete(tf->st_meta);
}

const char *gqr_st_meta(const gqr_tensorfile *tf, const char *key) {
    const cJSON *v = tf && key ? cJSON_GetObjectItemCaseSensitive(tf->st_meta, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- the index of a sharded set ---- */

static int is_index(const unsigned char *p, size_t size, const char *path) {
    size_t i = 0;
    while (i < size && strchr(" \t\r\n", p[i]) && p[i])
        i++;
    if (i == size || p[i] != '{')
        return 0;
    if (gqr_tf_ends_with(path, ".json"))
        return 1;
    cJSON *root = cJSON_ParseWithLength((const char *)p, size);
    int yes = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "weight_map"));
    cJSON_Delete(root);
    return yes;
}

/* dir's folder, then name: malloc'd, or NULL. */
static char *beside(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0, n = strlen(name);
    char *s = malloc(dir + n + 1);
    if (s) {
        memcpy(s, path, dir);
        memcpy(s + dir, name, n + 1);
    }
    return s;
}

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    const cJSON *map;   /* the weight_map */
    int n_entries, n_shards;
    const char **shard; /* distinct shard names, in order of first mention */
    int *entry_shard;   /* each entry's index in shard[] */
    int *first;         /* n_shards + 1: each shard's first tensor in tf */
} Index;

/* Reads the weight_map's entries, gathering the distinct shards. */
static int shards_of(Index *x) {
    int i = 0;
    for (const cJSON *e = x->map->child; e; e = e->next, i++) {
        const char *f = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!f)
            return gqr_fail(x->err, x->errlen, "%s: weight_map entry '%.64s' is not a "
                               "string naming a shard", x->path, e->string);
        if (!*f || strchr(f, '/') || strstr(f, ".."))
            return gqr_fail(x->err, x->errlen, "%s: weight_map entry '%.64s' names shard "
                               "'%.64s'; expected a file name beside the index (no '/' or '..')",
                               x->path, e->string, f);
        int s = 0;
        while (s < x->n_shards && strcmp(x->shard[s], f))
            s++;
        if (s == x->n_shards)
            x->shard[x->n_shards++] = f;
        x->entry_shard[i] = s;
    }
    return 0;
}

static int load_shards(Index *x, gqr_tensorfile *tf) {
    for (int s = 0; s < x->n_shards; s++) {
        char *path = beside(x->path, x->shard[s]);
        const unsigned char *p;
        size_t size;
        char why[512];
        int rc = path ? gqr_tf_map(tf, path, &p, &size, why, sizeof why)
                      : gqr_fail(why, sizeof why, "out of memory");
        if (rc)
            gqr_fail(x->err, x->errlen, "%s: cannot open shard '%.64s': %s", x->path,
                        x->shard[s], why);
        x->first[s] = tf->n_tensors;
        if (!rc)
            rc = parse(tf, path, p, size, x->err, x->errlen);
        free(path);
        if (rc)
            return -1;
    }
    x->first[x->n_shards] = tf->n_tensors;
    return 0;
}

/* Each entry's tensor is in its shard, and each tensor has one entry. */
static int match(Index *x, gqr_tensorfile *tf) {
    unsigned char *listed = calloc((size_t)tf->n_tensors + 1, 1);
    if (!listed)
        return gqr_fail(x->err, x->errlen, "%s: out of memory", x->path);
    int i = 0, rc = 0;
    for (const cJSON *e = x->map->child; e && !rc; e = e->next, i++) {
        const gqr_tensor *t = gqr_tf_find(tf, e->string);
        int k = t ? (int)(t - tf->tensors) : -1, s = x->entry_shard[i];
        if (k < x->first[s] || k >= x->first[s + 1])
            rc = gqr_fail(x->err, x->errlen, "%s: weight_map puts '%.64s' in '%.64s', "
                             "which has no such tensor", x->path, e->string, x->shard[s]);
        else if (listed[k]++)
            rc = gqr_fail(x->err, x->errlen, "%s: weight_map lists '%.64s' twice",
                             x->path, e->string);
    }
    for (int s = 0; s < x->n_shards && !rc; s++)
        for (int k = x->first[s]; k < x->first[s + 1] && !rc; k++)
            if (!listed[k])
                rc = gqr_fail(x->err, x->errlen, "%s: shard '%.64s' holds tensor '%.64s', "
                                 "which the weight_map does not list", x->path, x->shard[s],
                                 tf->tensors[k].name);
    free(listed);
    return rc;
}

static int open_index(gqr_tensorfile *tf, const char *path, const unsigned char *p,
                      size_t size, char *err, size_t errlen) {
    size_t error_at;
    cJSON *root = parse_json((const char *)p, size, &error_at);
    if (!root)
        return gqr_fail(err, errlen, "%s: not JSON: error at byte %zu", path, error_at);
    Index x = {path, err, errlen, cJSON_GetObjectItemCaseSensitive(root, "weight_map"),
               0, 0, NULL, NULL, NULL};
    int rc = -1;
    if (!cJSON_IsObject(x.map)) {
        gqr_fail(err, errlen, "%s: no \"weight_map\" object", path);
        goto done;
    }
    x.n_entries = cJSON_GetArraySize(x.map);
    size_t n = (size_t)x.n_entries + 1;
    x.shard = malloc(n * sizeof *x.shard);
    x.entry_shard = malloc(n * sizeof *x.entry_shard);
    x.first = malloc((n + 1) * sizeof *x.first);
    if (!x.shard || !x.entry_shard || !x.first) {
        gqr_fail(err, errlen, "%s: out of memory", path);
        goto done;
    }
    rc = shards_of(&x) || load_shards(&x, tf) || gqr_tf_index(tf, path, err, errlen) ||
         match(&x, tf) ? -1 : 0;
done:
    free(x.shard);
    free(x.entry_shard);
    free(x.first);
    cJSON_Delete(root);
    return rc;
}

/* ---- writing ---- */

int gqr_tf_writer_set_meta(gqr_tf_writer *w, const char *key, const char *value) {
    if (!w || w->format != GQR_TF_SAFETENSORS || !key || !value)
        return -1;
    if (!w->meta && !(w->meta = cJSON_CreateObject()))
        return -1;
    if (cJSON_GetObjectItemCaseSensitive(w->meta, key))
        return -1;
    cJSON *s = cJSON_CreateString(value);
    if (!s || !cJSON_AddItemToObject(w->meta, key, s)) {
        cJSON_Delete(s);
        return -1;
    }
    return 0;
}

static void writer_release(gqr_tf_writer *w) {
    cJSON_Delete(w->meta);
}

/* Adds item to parent (under key, or to an array when key is NULL);
 * clears *ok when item is NULL or adding fails. */
static cJSON *add(cJSON *parent, const char *key, cJSON *item, int *ok) {
    int added = item && parent &&
                (key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item));
    if (!added) {
        cJSON_Delete(item);
        *ok = 0;
        return NULL;
    }
    return item;
}

static void add_tensor(cJSON *root, const gqr_tf_wtensor *t, uint64_t begin, int *ok) {
    cJSON *e = add(root, t->name, cJSON_CreateObject(), ok);
    add(e, "dtype", cJSON_CreateString(dtype_names[t->dtype]), ok);
    cJSON *shape = add(e, "shape", cJSON_CreateArray(), ok);
    for (int d = 0; d < t->n_dims; d++)
        add(shape, NULL, cJSON_CreateNumber((double)t->dims[d]), ok);
    cJSON *offs = add(e, "data_offsets", cJSON_CreateArray(), ok);
    add(offs, NULL, cJSON_CreateNumber((double)begin), ok);
    add(offs, NULL, cJSON_CreateNumber((double)(begin + t->n_bytes)), ok);
}

/* The header of tensors [from, to): its JSON text, or NULL. */
static char *header_text(const gqr_tf_writer *w, int from, int to) {
    int ok = 1;
    cJSON *root = cJSON_CreateObject();
    if (w->meta)
        add(root, "__metadata__", cJSON_Duplicate(w->meta, 1), &ok);
    uint64_t at = 0;
    for (int i = from; i < to; i++) {
        add_tensor(root, &w->t[i], at, &ok);
        at += w->t[i].n_bytes;
    }
    char *s = ok && root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

static int write_file(const gqr_tf_writer *w, int from, int to, const char *path, char *err,
                      size_t errlen) {
    char *h = header_text(w, from, to);
    gqr_out o;
    if (!h || gqr_out_open(&o, path, err, errlen)) {
        free(h);
        return h ? -1 : gqr_fail(err, errlen, "%s: out of memory for the header", path);
    }
    /* Spaces pad the header to a multiple of 8, as the reference writer
     * does, so the data that follows is aligned. */
    size_t n = strlen(h), pad = (8 - n % 8) % 8;
    unsigned char len[8];
    gqr_tf_put64(len, n + pad);
    gqr_out_put(&o, len, 8);
    gqr_out_put(&o, h, n);
    gqr_out_put(&o, "        ", pad);
    free(h);
    for (int i = from; i < to; i++)
        gqr_out_put(&o, w->t[i].bytes, (size_t)w->t[i].n_bytes);
    return gqr_out_commit(&o, err, errlen);
}

static int write_st(const gqr_tf_writer *w, const char *path, char *err, size_t errlen) {
    return write_file(w, 0, w->n, path, err, errlen);
}

/* The index json for shards split at start[0..n_shards]. */
static char *index_text(const gqr_tf_writer *w, const int *start, int n_shards) {
    int ok = 1;
    uint64_t total = 0;
    for (int i = 0; i < w->n; i++)
        total += w->t[i].n_bytes;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = add(root, "metadata", cJSON_CreateObject(), &ok);
    add(meta, "total_size", cJSON_CreateNumber((double)total), &ok);
    cJSON *map = add(root, "weight_map", cJSON_CreateObject(), &ok);
    for (int s = 0; s < n_shards; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        for (int i = start[s]; i < start[s + 1]; i++)
            add(map, w->t[i].name, cJSON_CreateString(name), &ok);
    }
    char *text = ok && root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return text;
}

static int write_shards(const gqr_tf_writer *w, const char *index_path, const int *start,
                        int n_shards, char *err, size_t errlen) {
    for (int s = 0; s < n_shards; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        char *path = beside(index_path, name);
        int rc = path ? write_file(w, start[s], start[s + 1], path, err, errlen)
                      : gqr_fail(err, errlen, "%s: out of memory", index_path);
        free(path);
        if (rc)
            return -1;
    }
    char *text = index_text(w, start, n_shards);
    gqr_out o;
    if (!text || gqr_out_open(&o, index_path, err, errlen)) {
        free(text);
        return text ? -1 : gqr_fail(err, errlen, "%s: out of memory", index_path);
    }
    gqr_out_put(&o, text, strlen(text));
    gqr_out_put(&o, "\n", 1);
    free(text);
    return gqr_out_commit(&o, err, errlen);
}

int gqr_tf_writer_write_sharded(gqr_tf_writer *w, const char *index_path,
                                uint64_t max_shard_bytes, char *err, size_t errlen) {
    if (w->format != GQR_TF_SAFETENSORS)
        return gqr_fail(err, errlen, "%s: only safetensors are written in shards",
                           index_path);
    int *start = malloc(((size_t)w->n + 2) * sizeof *start);
    if (!start)
        return gqr_fail(err, errlen, "%s: out of memory", index_path);
    /* Greedy, in order: a tensor that would overfill a shard starts the next. */
    int n_shards = 0;
    uint64_t fill = 0;
    start[0] = 0;
    for (int i = 0; i < w->n; i++) {
        if (i > start[n_shards] && w->t[i].n_bytes > max_shard_bytes - fill) {
            start[++n_shards] = i;
            fill = 0;
        }
        fill += w->t[i].n_bytes;
        if (fill > max_shard_bytes)
            fill = max_shard_bytes;
    }
    start[++n_shards] = w->n;
    int rc = write_shards(w, index_path, start, n_shards, err, errlen);
    free(start);
    return rc;
}

#endif /* GQR_NO_CJSON */

/* ---- the formats ---- */

/* The '{' that opens the JSON header after its length; a .safetensors name
 * with a broken header still comes here, so that the reader says what is
 * wrong with it. */
static int probe(const unsigned char *p, size_t size, const char *name) {
    return (size >= 9 && p[8] == '{') || gqr_tf_ends_with(name, ".safetensors");
}

const gqr_tf_codec gqr_st_codec = {GQR_TF_SAFETENSORS, 0, probe, parse, free_meta, write_st,
                                   writer_release};
/* An index is read, never written as a format of its own (write_sharded). */
const gqr_tf_codec gqr_st_index_codec = {GQR_TF_SAFETENSORS, 1, is_index, open_index,
                                         free_meta, write_st, writer_release};
