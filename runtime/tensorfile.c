/*
 * tensorfile.c: what GGUF and safetensors share: the directory of tensors
 * and its lookup by name, file mapping, the table of formats and the
 * dispatch through it, element conversion, and the writer's bookkeeping
 * and atomic output.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "tensorfile.h"

const char *gqr_tf_dtype_name(int dtype) {
    const gqr_q_type *t = gqr_q_type_of(dtype);
    return t ? t->name : "?";
}

int gqr_tf_dtype_size(int dtype) {
    return dtype == GQR_DT_F32 ? 4 : dtype == GQR_DT_F16 || dtype == GQR_DT_BF16 ? 2 : 0;
}

/* ---- the directory ---- */

int gqr_tf_push(gqr_tensorfile *tf, const gqr_tensor *t, const char *name, size_t len,
                char *err, size_t errlen) {
    if (tf->n_tensors == tf->cap_tensors) {
        int cap = tf->cap_tensors ? 2 * tf->cap_tensors : 16;
        gqr_tensor *p = realloc(tf->tensors, (size_t)cap * sizeof *p);
        if (!p)
            return gqr_fail(err, errlen, "out of memory for %d tensors", cap);
        tf->tensors = p;
        tf->cap_tensors = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return gqr_fail(err, errlen, "out of memory for a tensor name of %zu bytes", len);
    memcpy(copy, name, len);
    copy[len] = 0;
    tf->tensors[tf->n_tensors] = *t;
    tf->tensors[tf->n_tensors++].name = copy;
    return 0;
}

/* By start, then size: an empty tensor where another starts comes first
 * and overlaps nothing, whatever order qsort leaves equal starts in. */
static int by_data(const void *a, const void *b) {
    const gqr_tensor *x = *(const gqr_tensor *const *)a, *y = *(const gqr_tensor *const *)b;
    if (x->data != y->data)
        return x->data < y->data ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

int gqr_tf_check_overlap(gqr_tensorfile *tf, int from, const unsigned char *base,
                         const char *file, char *err, size_t errlen) {
    int n = tf->n_tensors - from;
    if (n < 2)
        return 0;
    const gqr_tensor **s = malloc((size_t)n * sizeof *s);
    if (!s)
        return gqr_fail(err, errlen, "%s: out of memory for %d tensors", file, n);
    for (int i = 0; i < n; i++)
        s[i] = &tf->tensors[from + i];
    qsort(s, (size_t)n, sizeof *s, by_data);
    int rc = 0;
    for (int i = 0; i + 1 < n && !rc; i++) {
        const gqr_tensor *a = s[i], *b = s[i + 1];
        uint64_t a0 = (uint64_t)(a->data - base), b0 = (uint64_t)(b->data - base);
        if (a0 + a->n_bytes > b0)
            rc = gqr_fail(err, errlen,
                             "%s: tensors '%.64s' [%llu, %llu) and '%.64s' [%llu, %llu) overlap",
                             file, a->name, (unsigned long long)a0,
                             (unsigned long long)(a0 + a->n_bytes), b->name,
                             (unsigned long long)b0, (unsigned long long)(b0 + b->n_bytes));
    }
    free(s);
    return rc;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const gqr_tensor *const *)a)->name, (*(const gqr_tensor *const *)b)->name);
}

int gqr_tf_index(gqr_tensorfile *tf, const char *file, char *err, size_t errlen) {
    int n = tf->n_tensors;
    tf->by_name = malloc((size_t)(n ? n : 1) * sizeof *tf->by_name);
    if (!tf->by_name)
        return gqr_fail(err, errlen, "%s: out of memory for %d tensors", file, n);
    for (int i = 0; i < n; i++)
        tf->by_name[i] = &tf->tensors[i];
    qsort(tf->by_name, (size_t)n, sizeof *tf->by_name, by_name);
    for (int i = 0; i + 1 < n; i++)
        if (!strcmp(tf->by_name[i]->name, tf->by_name[i + 1]->name))
            return gqr_fail(err, errlen, "%s: duplicate tensor name '%.64s'", file,
                               tf->by_name[i]->name);
    return 0;
}

static int find_name(const void *key, const void *elem) {
    return strcmp(key, (*(const gqr_tensor *const *)elem)->name);
}

const gqr_tensor *gqr_tf_find(const gqr_tensorfile *tf, const char *name) {
    if (!tf || !name || !tf->n_tensors)
        return NULL;
    const gqr_tensor **t =
        bsearch(name, tf->by_name, (size_t)tf->n_tensors, sizeof *tf->by_name, find_name);
    return t ? *t : NULL;
}

int gqr_tf_format(const gqr_tensorfile *tf) {
    return tf->format;
}

int gqr_tf_count(const gqr_tensorfile *tf) {
    return tf->n_tensors;
}

const gqr_tensor *gqr_tf_tensor(const gqr_tensorfile *tf, int i) {
    return i >= 0 && i < tf->n_tensors ? &tf->tensors[i] : NULL;
}

/* The block types: each block that holds part of the range dequantized
 * whole, the part copied out. */
static void read_blocks(const gqr_tensor *t, uint64_t first, uint64_t n, float *dst) {
    const gqr_q_type *q = gqr_q_type_of(t->dtype);
    uint64_t block = (uint64_t)q->block, end = first + n;
    float v[256]; /* the largest block */
    for (uint64_t b = first / block; b * block < end; b++) {
        gqr_q_dequantize_row(t->dtype, t->data + b * (uint64_t)q->block_bytes, block, v);
        uint64_t lo = b * block > first ? b * block : first, hi = (b + 1) * block;
        hi = hi < end ? hi : end;
        memcpy(dst + (lo - first), v + (lo - b * block), (size_t)(hi - lo) * sizeof *v);
    }
}

void gqr_tf_read_f32(const gqr_tensor *t, uint64_t first, uint64_t n, float *dst) {
    if (gqr_q_is_block(t->dtype)) {
        read_blocks(t, first, n, dst);
        return;
    }
    const unsigned char *p = t->data + first * (uint64_t)gqr_tf_dtype_size(t->dtype);
    if (t->dtype == GQR_DT_F32) {
        for (uint64_t i = 0; i < n; i++) {
            uint32_t u = gqr_tf_le32(p + 4 * i);
            memcpy(&dst[i], &u, sizeof u);
        }
    } else if (t->dtype == GQR_DT_F16) {
        for (uint64_t i = 0; i < n; i++)
            dst[i] = gqr_f16_to_f32(gqr_tf_le16(p + 2 * i));
    } else {
        for (uint64_t i = 0; i < n; i++)
            dst[i] = gqr_bf16_to_f32(gqr_tf_le16(p + 2 * i));
    }
}

/* ---- opening and closing ---- */

int gqr_tf_map(gqr_tensorfile *tf, const char *path, const unsigned char **buf, size_t *size,
               char *err, size_t errlen) {
    void **maps = realloc(tf->maps, (size_t)(tf->n_maps + 1) * sizeof *maps);
    if (maps)
        tf->maps = maps;
    size_t *sizes = realloc(tf->map_sizes, (size_t)(tf->n_maps + 1) * sizeof *sizes);
    if (sizes)
        tf->map_sizes = sizes;
    if (!maps || !sizes)
        return gqr_fail(err, errlen, "%s: out of memory", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return gqr_fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return gqr_fail(err, errlen, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return gqr_fail(err, errlen, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return gqr_fail(err, errlen, "%s: %llu bytes do not fit in the address space",
                           path, (unsigned long long)st.st_size);
    }
    *size = (size_t)st.st_size;
    *buf = NULL;
    if (*size) { /* mmap refuses zero bytes; the parsers reject an empty file anyway */
        void *m = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return gqr_fail(err, errlen, "%s: cannot map %zu bytes: %s", path, *size,
                               strerror(e));
        }
        tf->maps[tf->n_maps] = m;
        tf->map_sizes[tf->n_maps++] = *size;
        *buf = m;
    }
    close(fd);
    return 0;
}

void gqr_tf_close(gqr_tensorfile *tf) {
    if (!tf)
        return;
    for (int i = 0; i < tf->n_tensors; i++)
        free((char *)tf->tensors[i].name);
    free(tf->tensors);
    free(tf->by_name);
    for (int i = 0; i < tf->n_maps; i++)
        munmap(tf->maps[i], tf->map_sizes[i]);
    free(tf->maps);
    free(tf->map_sizes);
    if (tf->codec && tf->codec->release)
        tf->codec->release(tf);
    free(tf);
}

int gqr_tf_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* ---- the formats ---- */

/* In the order they are tried: an index before the files it names, and
 * each format's magic before another's claim by name. */
static const gqr_tf_codec *const codecs[] = {&gqr_st_index_codec, &gqr_gguf_codec,
                                             &gqr_st_codec};
enum { N_CODECS = sizeof codecs / sizeof codecs[0] };

/* The first format that takes the bytes; memory cannot hold an index's
 * shards, so only a file may be one. */
static const gqr_tf_codec *find_codec(const unsigned char *p, size_t size, const char *name,
                                      int from_file) {
    for (int i = 0; i < N_CODECS; i++)
        if ((from_file || !codecs[i]->maps_others) && codecs[i]->probe(p, size, name))
            return codecs[i];
    return NULL;
}

int gqr_tf_probe(const unsigned char *p, size_t size, const char *name) {
    const gqr_tf_codec *c = find_codec(p, size, name ? name : "", 1);
    return c ? c->format : 0;
}

void gqr_tf_describe(const unsigned char *p, size_t size, char *out, size_t outlen) {
    char hex[3 * 8 + 1] = "", text[8 + 1] = "";
    size_t n = size < 8 ? size : 8;
    for (size_t i = 0; i < n; i++) {
        snprintf(hex + 3 * i, sizeof hex - 3 * i, "%02x ", p[i]);
        text[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    }
    if (n)
        hex[3 * n - 1] = 0; /* the last space */
    if (!n)
        snprintf(out, outlen, "it is empty");
    else
        snprintf(out, outlen, "its first bytes are %s (\"%s\")", hex, text);
}

/* The bytes of one file (or memory) through the format that takes them. */
static int open_with(gqr_tensorfile *tf, const unsigned char *p, size_t size, const char *name,
                     int from_file, char *err, size_t errlen) {
    tf->codec = find_codec(p, size, name, from_file);
    if (!tf->codec) {
        char looks[96];
        gqr_tf_describe(p, size, looks, sizeof looks);
        return gqr_fail(err, errlen, "%s: not a GGUF or safetensors file: %s", name, looks);
    }
    tf->format = tf->codec->format;
    if (tf->codec->open(tf, name, p, size, err, errlen))
        return -1;
    return tf->codec->maps_others ? 0 : gqr_tf_index(tf, name, err, errlen);
}

int gqr_tf_open_memory(gqr_tensorfile **out, const void *buf, size_t size, const char *name,
                       char *err, size_t errlen) {
    *out = NULL;
    gqr_tensorfile *tf = calloc(1, sizeof *tf);
    if (!tf)
        return gqr_fail(err, errlen, "%s: out of memory", name);
    if (open_with(tf, buf, size, name, 0, err, errlen)) {
        gqr_tf_close(tf);
        return -1;
    }
    *out = tf;
    return 0;
}

int gqr_tf_open(gqr_tensorfile **out, const char *path, char *err, size_t errlen) {
    *out = NULL;
    gqr_tensorfile *tf = calloc(1, sizeof *tf);
    if (!tf)
        return gqr_fail(err, errlen, "%s: out of memory", path);
    const unsigned char *p;
    size_t size;
    if (gqr_tf_map(tf, path, &p, &size, err, errlen) ||
        open_with(tf, p, size, path, 1, err, errlen)) {
        gqr_tf_close(tf);
        return -1;
    }
    *out = tf;
    return 0;
}

/* ---- writers ---- */

gqr_tf_writer *gqr_tf_writer_new(int format) {
    const gqr_tf_codec *codec = NULL;
    for (int i = 0; i < N_CODECS && !codec; i++)
        if (codecs[i]->format == format && !codecs[i]->maps_others)
            codec = codecs[i];
    gqr_tf_writer *w = codec ? calloc(1, sizeof *w) : NULL;
    if (w) {
        w->format = format;
        w->codec = codec;
        w->alignment = 32;
    }
    return w;
}

/* The values as dtype's little-endian bytes at out. */
static void encode(int dtype, const float *v, uint64_t n, unsigned char *out) {
    for (uint64_t i = 0; i < n; i++) {
        if (dtype == GQR_DT_F32) {
            uint32_t u;
            memcpy(&u, &v[i], sizeof u);
            gqr_tf_put32(out + 4 * i, u);
        } else {
            uint16_t h = dtype == GQR_DT_F16 ? gqr_f32_to_f16(v[i]) : gqr_f32_to_bf16(v[i]);
            gqr_tf_put16(out + 2 * i, h);
        }
    }
}

/* prod(dims) * the dtype's size in *bytes, or -1 when the shape does not
 * suit the format or the size overflows memory. */
static int shape_bytes(int format, int dtype, int n_dims, const uint64_t *dims,
                       uint64_t *bytes) {
    int min_dims = format == GQR_TF_GGUF;
    if (!gqr_tf_dtype_size(dtype) || n_dims < min_dims || n_dims > 4 || (n_dims && !dims))
        return -1;
    uint64_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (format == GQR_TF_GGUF && !dims[i])
            return -1;
        if (dims[i] && n > UINT64_MAX / dims[i])
            return -1;
        n *= dims[i];
    }
    if (n > SIZE_MAX / 4)
        return -1;
    *bytes = n * (uint64_t)gqr_tf_dtype_size(dtype);
    return 0;
}

/* A new tensor of bytes bytes in w, its bytes to fill; NULL when name is
 * taken, for __metadata__, or out of memory. */
static unsigned char *push_tensor(gqr_tf_writer *w, const char *name, int dtype, int n_dims,
                                  const uint64_t *dims, uint64_t bytes) {
    if (w->format == GQR_TF_SAFETENSORS && !strcmp(name, "__metadata__"))
        return NULL;
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return NULL;
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        gqr_tf_wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t)
            return NULL;
        w->t = t;
        w->cap = cap;
    }
    gqr_tf_wtensor t = {strdup(name), dtype, n_dims, {0}, malloc(bytes ? (size_t)bytes : 1),
                        bytes};
    if (!t.name || !t.bytes) {
        free(t.name);
        free(t.bytes);
        return NULL;
    }
    for (int i = 0; i < n_dims; i++)
        t.dims[i] = dims[i];
    w->t[w->n++] = t;
    return t.bytes;
}

int gqr_tf_writer_add(gqr_tf_writer *w, const char *name, int dtype, int n_dims,
                      const uint64_t *dims, const float *values) {
    uint64_t bytes;
    if (!w || !name || shape_bytes(w->format, dtype, n_dims, dims, &bytes) || (bytes && !values))
        return -1;
    unsigned char *out = push_tensor(w, name, dtype, n_dims, dims, bytes);
    if (!out)
        return -1;
    encode(dtype, values, bytes / (uint64_t)gqr_tf_dtype_size(dtype), out);
    return 0;
}

int gqr_tf_writer_add_bytes(gqr_tf_writer *w, const char *name, int dtype, int n_dims,
                            const uint64_t *dims, const void *bytes, uint64_t n_bytes) {
    uint64_t n = 1, want, row;
    if (!w || w->format != GQR_TF_GGUF || !name || n_dims < 1 || n_dims > 4 || !dims || !bytes)
        return -1;
    for (int i = 0; i < n_dims; i++) {
        if (!dims[i] || n > UINT64_MAX / dims[i])
            return -1;
        n *= dims[i];
    }
    if (gqr_q_row_bytes(dtype, dims[n_dims - 1], &row, NULL, 0) ||
        gqr_q_row_bytes(dtype, n, &want, NULL, 0) || want != n_bytes || n_bytes > SIZE_MAX / 2)
        return -1;
    unsigned char *out = push_tensor(w, name, dtype, n_dims, dims, n_bytes);
    if (!out)
        return -1;
    memcpy(out, bytes, (size_t)n_bytes);
    return 0;
}

int gqr_tf_writer_write(gqr_tf_writer *w, const char *path, char *err, size_t errlen) {
    return w->codec->write(w, path, err, errlen);
}

void gqr_tf_writer_free(gqr_tf_writer *w) {
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].bytes);
    }
    free(w->t);
    free(w->kv);
    for (int i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    if (w->codec->writer_release)
        w->codec->writer_release(w);
    free(w);
}

