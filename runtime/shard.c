/*
 * shard.c: a rank's slices of the whole model's weights (tensor
 * parallelism, gqa_api.h's gqa_shard).  The file is opened as the whole
 * model, so every check of shape, size and types is the whole model's;
 * its pages are not brought in (GQR_LOAD_LAZY).  Each of the rank's
 * tensors is then copied out of it, by rows or by each row's run of
 * columns (whole blocks), into one buffer of the rank's packed weights,
 * and the whole file is closed: only the rank's bytes stay resident.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "gqr.h"
#include "quant.h"
#include "tensorfile.h"

enum { CUT_WHOLE, CUT_ROWS, CUT_COLS };

/* Where a kind is cut (gqa_api.h): the rows or the columns from *first. */
static int cut_of(int kind, const gqa_shard *sh, uint64_t *first) {
    uint64_t d = (uint64_t)sh->whole.head_dim;
    *first = 0;
    switch (kind) {
    case GQA_T_EMBED: case GQA_T_CLS:
        *first = (uint64_t)sh->vocab0;
        return CUT_ROWS;
    case GQA_T_WQ:
        *first = (uint64_t)sh->head0 * d;
        return CUT_ROWS;
    case GQA_T_WK: case GQA_T_WV:
        *first = (uint64_t)sh->kv_head0 * d;
        return CUT_ROWS;
    case GQA_T_W1: case GQA_T_W3:
        *first = (uint64_t)sh->hidden0;
        return CUT_ROWS;
    case GQA_T_WO: case GQA_T_BQ: /* a bias is one row: its elements are columns */
        *first = (uint64_t)sh->head0 * d;
        return CUT_COLS;
    case GQA_T_BK: case GQA_T_BV:
        *first = (uint64_t)sh->kv_head0 * d;
        return CUT_COLS;
    case GQA_T_W2:
        *first = (uint64_t)sh->hidden0;
        return CUT_COLS;
    default:
        return CUT_WHOLE;
    }
}

/* The bytes of n elements of t's type, or -1 when n is not whole blocks. */
static int span(const gqa_tensor *t, uint64_t n, uint64_t *bytes, const char *path, char *err,
                size_t errlen) {
    char why[160];
    if (gqr_q_row_bytes(t->dtype, n, bytes, why, sizeof why))
        return gqr_fail(err, errlen, "%s: %s (layer %d) cannot be cut for this rank at %llu "
                        "columns: %s", path, t->name, t->layer, (unsigned long long)n, why);
    return 0;
}

static int mismatch(const gqa_tensor *w, const gqa_tensor *l, const char *path, char *err,
                    size_t errlen) {
    return gqr_fail(err, errlen, "%s: the rank's %s (layer %d, %d x %d %s) is not a slice of the "
                    "whole model's %s (layer %d, %d x %d %s)", path, l->name, l->layer, l->rows,
                    l->cols, gqr_tf_dtype_name(l->dtype), w->name, w->layer, w->rows, w->cols,
                    gqr_tf_dtype_name(w->dtype));
}

/* Copies local tensor l's slice of whole tensor w (at src) to dst. */
static int cut_tensor(const gqa_tensor *w, const gqa_tensor *l, const unsigned char *src,
                      unsigned char *dst, const gqa_shard *sh, const char *path, char *err,
                      size_t errlen) {
    uint64_t first, row_bytes, skip, take;
    int how = cut_of(l->kind, sh, &first);
    if (w->kind != l->kind || w->layer != l->layer || w->dtype != l->dtype || w->rows < 1 ||
        l->rows < 1)
        return mismatch(w, l, path, err, errlen);
    if (span(w, (uint64_t)w->cols, &row_bytes, path, err, errlen))
        return -1;
    if (how != CUT_COLS) {
        if (l->cols != w->cols || first + (uint64_t)l->rows > (uint64_t)w->rows ||
            (how == CUT_WHOLE && l->rows != w->rows) || l->bytes != row_bytes * (uint64_t)l->rows)
            return mismatch(w, l, path, err, errlen);
        memcpy(dst, src + first * row_bytes, l->bytes);
        return 0;
    }
    if (l->rows != w->rows || first + (uint64_t)l->cols > (uint64_t)w->cols)
        return mismatch(w, l, path, err, errlen);
    if (span(w, first, &skip, path, err, errlen) || span(w, (uint64_t)l->cols, &take, path, err, errlen))
        return -1;
    if (l->bytes != take * (uint64_t)l->rows)
        return mismatch(w, l, path, err, errlen);
    for (int r = 0; r < l->rows; r++)
        memcpy(dst + (uint64_t)r * take, src + (uint64_t)r * row_bytes + skip, take);
    return 0;
}

/* The whole model as a model table: what the file is checked against. */
static gqa_model_api whole_view(const gqa_model_api *m) {
    gqa_model_api v = *m;
    v.shape = m->shard->whole;
    v.tensors = m->shard->whole_tensors;
    v.weight_bytes = m->shard->whole_weight_bytes;
    v.shard = NULL;
    return v;
}

static int check_shard(const gqa_model_api *m, const char *path, char *err, size_t errlen) {
    const gqa_shard *sh = m->shard;
    if (sh->ranks < 1 || sh->rank < 0 || sh->rank >= sh->ranks || !sh->whole_tensors)
        return gqr_fail(err, errlen, "%s: the model's shard table is not valid (rank %d of %d)",
                        path, sh->rank, sh->ranks);
    if (m->n_tensors && !m->tensors)
        return gqr_fail(err, errlen, "%s: the model has no tensor table", path);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const gqa_tensor *t = &m->tensors[i];
        if (t->offset > m->weight_bytes || t->bytes > m->weight_bytes - t->offset)
            return gqr_fail(err, errlen, "%s: the rank's tensor %zu ('%s') lies outside its %zu "
                            "bytes of weights", path, i, t->name ? t->name : "?", m->weight_bytes);
    }
    return 0;
}

/* The rank's tensors cut from the whole checkpoint into one packed buffer. */
static int cut_all(gqr_checkpoint *ck, const gqr_checkpoint *whole, const gqa_model_api *m,
                   const char *path, char *err, size_t errlen) {
    unsigned char *buf = gqr_pages_alloc(m->weight_bytes ? m->weight_bytes : 1);
    ck->tensors = calloc(m->n_tensors + 1, sizeof *ck->tensors);
    ck->buf = buf;
    if (!buf || !ck->tensors)
        return gqr_fail(err, errlen, "%s: cannot allocate %zu bytes for the rank's weights", path,
                        m->weight_bytes);
    memset(buf, 0, m->weight_bytes);
    ck->n_tensors = m->n_tensors;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const gqa_tensor *l = &m->tensors[i];
        if (cut_tensor(&m->shard->whole_tensors[i], l, whole->tensors[i], buf + l->offset,
                       m->shard, path, err, errlen))
            return -1;
        ck->tensors[i] = buf + l->offset;
        ck->owned_bytes += l->bytes;
    }
    ck->weights = buf;
    ck->weight_bytes = m->weight_bytes;
    ck->format = whole->format;
    ck->file_bytes = whole->file_bytes;
    return 0;
}

int gqr_checkpoint_open_shard(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                              int flags, char *err, size_t errlen) {
    if (!m || !m->shard)
        return gqr_checkpoint_load(ck, path, m, flags, err, errlen);
    if (!ck)
        return gqr_fail(err, errlen, "%s: no checkpoint to load into", path ? path : "?");
    memset(ck, 0, sizeof *ck);
    if (!path)
        return gqr_fail(err, errlen, "?: no path");
    if (check_shard(m, path, err, errlen))
        return -1;
    gqa_model_api view = whole_view(m);
    gqr_checkpoint whole;
    if (gqr_checkpoint_load(&whole, path, &view, GQR_LOAD_MMAP | GQR_LOAD_LAZY |
                            (flags & GQR_LOAD_DEQUANTIZE), err, errlen))
        return -1;
    int rc = cut_all(ck, &whole, m, path, err, errlen);
    gqr_checkpoint_close(&whole);
    if (rc)
        gqr_checkpoint_close(ck);
    return rc;
}

int gqr_vocab_size(const gqa_model_api *m) {
    return m->shard ? m->shard->whole.vocab_size : m->shape.vocab_size;
}
