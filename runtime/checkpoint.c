/*
 * checkpoint.c: weight files.  GGUF and safetensors (tensorfile.c's
 * probe) go to convert.c; the rest of this file is llama2.c's format, the
 * table of one pointer per tensor every format fills, and the pages of
 * the weights made resident at load.  The header is checked field by field
 * against the shape the model was compiled for, and the size to the byte,
 * because a mismatched file would otherwise run and produce plausible
 * garbage.  The weights are mapped read-only (free to share between
 * processes, paged in on demand) or, on request, read into memory that the
 * kernel may back with 2 MiB pages, which spares TLB misses on big models.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fail.h"
#include "gqr.h"
#include "tensorfile.h"

/* Byte by byte, so a big-endian host reads the same numbers. */
static long long read_le32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    return u <= INT32_MAX ? (long long)u : -(long long)(UINT32_MAX - u) - 1;
}

static int check_field(const char *name, const char *field, long long found, int want,
                       char *err, size_t errlen) {
    if (found == want)
        return 0;
    return gqr_fail(err, errlen, "%s: %s is %lld in the file, but the model was compiled for %d",
                name, field, found, want);
}

static int check_fields(const unsigned char *h, const gqa_model_api *m, const char *name,
                        char *err, size_t errlen) {
    static const char *const fields[5] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                          "n_kv_heads"};
    const gqa_shape *sh = &m->shape;
    const int want[5] = {sh->dim, sh->hidden_dim, sh->n_layers, sh->n_heads, sh->n_kv_heads};
    for (int i = 0; i < 5; i++)
        if (check_field(name, fields[i], read_le32(h + 4 * i), want[i], err, errlen))
            return -1;
    long long vocab = read_le32(h + 20), tokens = vocab < 0 ? -vocab : vocab;
    if (tokens != sh->vocab_size)
        return gqr_fail(err, errlen,
                    "%s: vocab_size is %lld in the file (%lld tokens), but the model was "
                    "compiled for %d", name, vocab, tokens, sh->vocab_size);
    if ((vocab > 0) != (sh->tied_embeddings != 0))
        return gqr_fail(err, errlen,
                    "%s: vocab_size is %lld in the file (%s classifier), but the model was "
                    "compiled with tied_embeddings = %d (%s classifier)",
                    name, vocab, vocab > 0 ? "shared" : "separate", sh->tied_embeddings,
                    sh->tied_embeddings ? "shared" : "separate");
    return check_field(name, "seq_len", read_le32(h + 24), sh->seq_len, err, errlen);
}

static int check_size(uintmax_t size, const gqa_model_api *m, const char *name, char *err,
                      size_t errlen) {
    uintmax_t n = m->weight_bytes;
    if (n > UINTMAX_MAX - GQR_HEADER_BYTES)
        return gqr_fail(err, errlen, "%s: the model's weight size %ju is too large", name, n);
    uintmax_t want = GQR_HEADER_BYTES + n;
    if (size == want)
        return 0;
    return gqr_fail(err, errlen, "%s: file is %ju bytes, expected %d + %ju = %ju bytes (%s)",
                name, size, GQR_HEADER_BYTES, n, want,
                size < want ? "truncated?" : "trailing data, or a different model?");
}

/* Everything but the reading: header fields, then the total size, given the
 * first min(size, GQR_HEADER_BYTES) bytes and the whole file's size. */
static int check_all(const unsigned char *h, uintmax_t size, const gqa_model_api *m,
                     const char *name, char *err, size_t errlen) {
    if (size == 0)
        return gqr_fail(err, errlen, "%s: file is empty, expected a %d-byte header and weights",
                    name, GQR_HEADER_BYTES);
    if (size < GQR_HEADER_BYTES)
        return gqr_fail(err, errlen, "%s: file is %ju bytes, shorter than the %d-byte header",
                    name, size, GQR_HEADER_BYTES);
    if (check_fields(h, m, name, err, errlen))
        return -1;
    return check_size(size, m, name, err, errlen);
}

int gqr_checkpoint_check_header(const unsigned char *bytes, size_t size,
                                const gqa_model_api *m, const char *name, char *err,
                                size_t errlen) {
    if (!m || (!bytes && size))
        return gqr_fail(err, errlen, "%s: no model or no bytes", name ? name : "?");
    return check_all(bytes, size, m, name ? name : "?", err, errlen);
}

/* Opens path and checks that it is a regular file; its size in *size. */
static int open_regular(const char *path, uintmax_t *size, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return gqr_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        gqr_fail(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        gqr_fail(err, errlen, "%s: not a regular file%s", path,
             S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
        close(fd);
        return -1;
    }
    *size = (uintmax_t)st.st_size;
    return fd;
}

/* Reads exactly n bytes at offset, riding out short reads and EINTR. */
static int read_at(int fd, void *dst, size_t n, off_t offset, const char *path, char *err,
                   size_t errlen) {
    unsigned char *p = dst;
    while (n) {
        ssize_t got = pread(fd, p, n, offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return gqr_fail(err, errlen, "%s: read failed: %s", path, strerror(errno));
        if (got == 0)
            return gqr_fail(err, errlen, "%s: file shrank while being read", path);
        p += got, n -= (size_t)got, offset += got;
    }
    return 0;
}

static int load_mmap(gqr_checkpoint *ck, int fd, size_t size, const char *path, char *err,
                     size_t errlen) {
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return gqr_fail(err, errlen, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
    ck->map = map;
    ck->weights = (const unsigned char *)map + GQR_HEADER_BYTES;
    return 0;
}

/* The file's floats are little-endian; a big-endian host swaps each one
 * after reading (and so never maps the file). */
static int host_is_big_endian(void) {
    const uint32_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first == 0;
}

static void swap_words(void *p, size_t n) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++, b += 4) {
        unsigned char t0 = b[0], t1 = b[1];
        b[0] = b[3], b[1] = b[2], b[2] = t1, b[3] = t0;
    }
}

/* The f32 tensors of the packed weights at p into host order (the other
 * types stay little-endian bytes, as the kernels read them). */
static void swap_f32(unsigned char *p, const gqa_model_api *m) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].dtype == GQA_DT_F32)
            swap_words(p + m->tensors[i].offset, m->tensors[i].bytes / 4);
}

static int load_read(gqr_checkpoint *ck, int fd, const gqa_model_api *m, const char *path,
                     char *err, size_t errlen) {
    size_t bytes = m->weight_bytes;
    void *buf = gqr_pages_alloc(bytes);
    if (!buf)
        return gqr_fail(err, errlen, "%s: cannot allocate %zu bytes for the weights", path, bytes);
    if (read_at(fd, buf, bytes, GQR_HEADER_BYTES, path, err, errlen)) {
        free(buf);
        return -1;
    }
    if (host_is_big_endian())
        swap_f32(buf, m);
    ck->buf = buf;
    ck->weights = buf;
    return 0;
}

/* A llama2.c header is seven int32 sizes, which no magic marks: fields
 * that cannot be sizes (zero, negative, over 2^24; vocab_size may be
 * negative) mean some other file, which gets described, not measured. */
static int plausible_header(const unsigned char *h) {
    for (int i = 0; i < 7; i++) {
        long long v = read_le32(h + 4 * i);
        if (i == 5 ? v == 0 : v < 1 || v > (1 << 24))
            return 0;
    }
    return 1;
}

static int not_a_checkpoint(const unsigned char *h, size_t have, const char *name, char *err,
                            size_t errlen) {
    char looks[96];
    gqr_tf_describe(h, have, looks, sizeof looks);
    return gqr_fail(err, errlen, "%s: not a llama2.c checkpoint, GGUF or safetensors file: %s; "
                    "a llama2.c header is seven positive sizes (dim, hidden_dim, ...)", name,
                    looks);
}

/* The packed weights' tensors: each at its offset. */
static int point_packed(gqr_checkpoint *ck, const gqa_model_api *m, const char *path, char *err,
                        size_t errlen) {
    ck->n_tensors = m->n_tensors;
    ck->tensors = calloc(m->n_tensors + 1, sizeof *ck->tensors);
    if (!ck->tensors)
        return gqr_fail(err, errlen, "%s: out of memory for %zu tensors", path, m->n_tensors);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const gqa_tensor *t = &m->tensors[i];
        if (t->offset > m->weight_bytes || t->bytes > m->weight_bytes - t->offset)
            return gqr_fail(err, errlen, "%s: the model's tensor %zu ('%s') lies outside its %zu bytes "
                            "of weights", path, i, t->name ? t->name : "?", m->weight_bytes);
        ck->tensors[i] = (const unsigned char *)ck->weights + t->offset;
    }
    ck->inplace_bytes = m->weight_bytes;
    return 0;
}

static int load_llama2c(gqr_checkpoint *ck, int fd, uintmax_t size, const gqa_model_api *m,
                        int flags, const char *path, char *err, size_t errlen) {
    unsigned char h[GQR_HEADER_BYTES];
    size_t have = size < GQR_HEADER_BYTES ? (size_t)size : GQR_HEADER_BYTES;
    int rc = read_at(fd, h, have, 0, path, err, errlen);
    if (rc == 0 && have == GQR_HEADER_BYTES && !plausible_header(h))
        rc = not_a_checkpoint(h, have, path, err, errlen);
    if (rc == 0)
        rc = check_all(h, size, m, path, err, errlen);
    if (rc == 0 && flags == GQR_LOAD_MMAP && !host_is_big_endian())
        rc = load_mmap(ck, fd, (size_t)size, path, err, errlen);
    else if (rc == 0)
        rc = load_read(ck, fd, m, path, err, errlen);
    if (rc == 0) {
        ck->weight_bytes = m->weight_bytes;
        ck->file_bytes = (size_t)size;
        rc = point_packed(ck, m, path, err, errlen);
    }
    return rc;
}

/* Brings every page of [p, p + n) in now, so that resident memory counts
 * the weights and the first token does not wait for the disk. */
static void make_resident(const void *p, size_t n) {
    long page = sysconf(_SC_PAGESIZE);
    size_t ps = page > 0 ? (size_t)page : 4096;
    uintptr_t start = (uintptr_t)p / ps * ps;
    if (!n)
        return;
    madvise((void *)start, (uintptr_t)p + n - start, MADV_WILLNEED);
    volatile unsigned char sum = 0;
    for (uintptr_t a = start < (uintptr_t)p ? (uintptr_t)p : start; a < (uintptr_t)p + n; a += ps)
        sum ^= *(const volatile unsigned char *)a;
    sum ^= ((const volatile unsigned char *)p)[n - 1];
    (void)sum;
}

static void make_all_resident(const gqr_checkpoint *ck, const gqa_model_api *m) {
    if (ck->map)
        make_resident(ck->map, ck->file_bytes);
    for (size_t i = 0; !ck->map && ck->tf && i < ck->n_tensors; i++)
        if (!ck->owned[i])
            make_resident(ck->tensors[i], m->tensors[i].bytes);
}

int gqr_checkpoint_load(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                        int flags, char *err, size_t errlen) {
    if (!ck)
        return gqr_fail(err, errlen, "%s: no checkpoint to load into", path ? path : "?");
    memset(ck, 0, sizeof *ck);
    if (!path || !m)
        return gqr_fail(err, errlen, "%s: no path or no model", path ? path : "?");
    int dequantize = flags & GQR_LOAD_DEQUANTIZE, lazy = flags & GQR_LOAD_LAZY;
    flags &= ~(GQR_LOAD_DEQUANTIZE | GQR_LOAD_LAZY);
    if (flags != GQR_LOAD_MMAP && flags != GQR_LOAD_READ_HUGEPAGES)
        return gqr_fail(err, errlen, "%s: unknown load flags %d", path, flags | dequantize | lazy);
    if (m->n_tensors && !m->tensors)
        return gqr_fail(err, errlen, "%s: the model has no tensor table", path);
    uintmax_t size = 0;
    int fd = open_regular(path, &size, err, errlen);
    if (fd < 0)
        return -1;
    if (size > SIZE_MAX) {
        close(fd);
        return gqr_fail(err, errlen, "%s: file is %ju bytes, too large to load here", path, size);
    }
    unsigned char h[GQR_HEADER_BYTES];
    size_t have = size < GQR_HEADER_BYTES ? (size_t)size : GQR_HEADER_BYTES;
    int rc = read_at(fd, h, have, 0, path, err, errlen);
    if (rc == 0 && gqr_tf_probe(h, have, path)) {
        close(fd);
        rc = gqr_convert_load_dequantized(ck, path, m, dequantize, err, errlen);
    } else {
        if (rc == 0)
            rc = load_llama2c(ck, fd, size, m, flags, path, err, errlen);
        close(fd); /* a mapping outlives its descriptor */
    }
    if (rc != 0) {
        gqr_checkpoint_close(ck);
        return -1;
    }
    if (!lazy)
        make_all_resident(ck, m);
    return 0;
}

int gqr_checkpoint_open(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                        char *err, size_t errlen) {
    return gqr_checkpoint_load(ck, path, m, GQR_LOAD_MMAP, err, errlen);
}

int gqr_checkpoint_pack(gqr_checkpoint *ck, const gqa_model_api *m, char *err, size_t errlen) {
    if (ck->weights)
        return 0;
    unsigned char *buf = gqr_pages_alloc(m->weight_bytes ? m->weight_bytes : 1);
    if (!buf)
        return gqr_fail(err, errlen, "cannot allocate %zu bytes for the weights", m->weight_bytes);
    memset(buf, 0, m->weight_bytes);
    for (size_t i = 0; i < m->n_tensors && i < ck->n_tensors; i++)
        memcpy(buf + m->tensors[i].offset, ck->tensors[i], m->tensors[i].bytes);
    ck->buf = buf;
    ck->weights = buf;
    ck->weight_bytes = m->weight_bytes;
    return 0;
}

/* "VmRSS:    1234 kB" */
static int status_kb(const char *text, const char *key, size_t *out) {
    const char *p = strstr(text, key);
    unsigned long long kb;
    if (!p || sscanf(p + strlen(key), " %llu", &kb) != 1)
        return -1;
    *out = (size_t)kb * 1024;
    return 0;
}

int gqr_resident_bytes(size_t *rss, size_t *peak) {
    char text[4096];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    size_t r = 0, p = 0;
    if (status_kb(text, "VmRSS:", &r) || status_kb(text, "VmHWM:", &p))
        return -1;
    if (rss)
        *rss = r;
    if (peak)
        *peak = p;
    return 0;
}

size_t gqr_f32_floats(const gqa_model_api *m) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].dtype != GQA_DT_F32)
            return 0;
    return m->weight_bytes / 4;
}

void gqr_checkpoint_close(gqr_checkpoint *ck) {
    if (!ck)
        return;
    if (ck->map)
        munmap(ck->map, ck->file_bytes);
    free(ck->buf);
    for (size_t i = 0; ck->owned && i < ck->n_tensors; i++)
        free(ck->owned[i]);
    free(ck->owned);
    free((void *)ck->tensors);
    gqr_tf_close(ck->tf);
    memset(ck, 0, sizeof *ck);
}
