/*
 * export.c: `gqac weights --random --format gguf|safetensors`, and any
 * format for a model with typed tensors.  Needs: the runtime's convert.c
 * (the same writer a conversion uses) and quant.c.  Provides:
 * weights_fill_random's values in GGUF or safetensors, f32, f16 or bf16,
 * or in GGUF quantized (q8_0, q4_0, q4_k, q6_k); for a model with a dtype
 * block, each tensor in its own type, in GGUF or the packed .bin.
 */
#include "gqac.h"
#include "gqr.h"
#include "outfile.h"
#include "quant.h"
#include "tensorfile.h"

#include <stdlib.h>
#include <string.h>

/* The shape and the tensors of m with every tensor f32 (what the
 * runtime's converters read and write), as generated code would describe
 * them; the table lives in a. */
gqa_model_api export_api(const Model *m, Arena *a, const double *freqs) {
    Model f = ir_with_f32(m);
    Slice *s;
    uint64_t bytes;
    int64_t n = ir_slices(&f, a, &s, &bytes);
    gqa_tensor *t = arena_alloc(a, sizeof *t * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++)
        t[i] = (gqa_tensor){s[i].name, (int)s[i].kind, (int)s[i].layer, (int)s[i].type, (int)s[i].rows,
                            (int)s[i].cols, (size_t)s[i].bytes, (size_t)s[i].offset};
    gqa_model_api api = {GQA_API_VERSION, m->name, "gqac", {0}, freqs, t, (size_t)n, (size_t)bytes, 0, 64, 0,
                         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL};
    api.shape = (gqa_shape){(int)m->dim, (int)m->hidden, (int)m->layers, (int)m->heads,
                            (int)m->kv_heads, (int)m->head_dim, (int)m->vocab, (int)m->context,
                            m->tied, m->qkv_bias, m->rope_halves, m->rope_theta, m->norm_eps,
                            (int)m->kv_type, (int)m->window, (int)m->sinks, (int)m->global_every,
                            (int)m->context};
    return api;
}

int export_dtype(const char *name) {
    static const char *const names[] = {"f32", "f16", "bf16", "q4_0", "q8_0", "q4_k", "q6_k"};
    static const int dtypes[] = {GQR_DT_F32, GQR_DT_F16, GQR_DT_BF16, GQR_DT_Q4_0, GQR_DT_Q8_0,
                                 GQR_DT_Q4_K, GQR_DT_Q6_K};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i]))
            return dtypes[i];
    return -1;
}

/* m's own table (each tensor in its type), or NULL for an all-f32 model. */
static const gqa_tensor *typed_table(const Model *m, Arena *a, size_t *n, uint64_t *bytes) {
    Slice *s;
    *n = (size_t)ir_slices(m, a, &s, bytes);
    gqa_tensor *t = arena_alloc(a, sizeof *t * (*n + 1));
    int typed = 0;
    for (size_t i = 0; i < *n; i++) {
        t[i] = (gqa_tensor){s[i].name, (int)s[i].kind, (int)s[i].layer, (int)s[i].type, (int)s[i].rows,
                            (int)s[i].cols, (size_t)s[i].bytes, (size_t)s[i].offset};
        typed |= t[i].dtype != GQA_DT_F32;
    }
    return typed ? t : NULL;
}

bool export_typed(const Model *m) {
    Arena *a = arena_new();
    size_t n;
    uint64_t bytes;
    bool typed = typed_table(m, a, &n, &bytes) != NULL;
    arena_free(a);
    return typed;
}

/* One tensor's floats as dtype's little-endian bytes, row by row. */
static int encode(const gqa_tensor *t, const float *src, unsigned char *dst, char *err, size_t errlen) {
    uint64_t row;
    if (gqr_q_row_bytes(t->dtype, (uint64_t)t->cols, &row, err, errlen))
        return -1;
    for (int r = 0; r < t->rows; r++, src += t->cols, dst += row) {
        if (gqr_q_is_block(t->dtype)) {
            if (gqr_q_quantize_row(t->dtype, src, (uint64_t)t->cols, dst, err, errlen))
                return -1;
            continue;
        }
        for (int c = 0; c < t->cols; c++) {
            uint32_t v;
            memcpy(&v, &src[c], 4);
            if (t->dtype == GQA_DT_F32)
                gqr_tf_put32(dst + 4 * c, v);
            else
                gqr_tf_put16(dst + 2 * c, t->dtype == GQA_DT_F16 ? gqr_f32_to_f16(src[c])
                                                                 : gqr_f32_to_bf16(src[c]));
        }
    }
    return 0;
}

/* The llama2.c header, then the packed weights: each tensor of typed at
 * its offset in its type, from the f32 table's floats of the same tensor. */
static int write_packed(const Model *m, const gqa_model_api *f32, const gqa_tensor *typed,
                        uint64_t bytes, const float *w, const char *output) {
    char err[512];
    int64_t h[7] = {m->dim, m->hidden, m->layers, m->heads, m->kv_heads,
                    m->tied ? m->vocab : -m->vocab, m->context};
    unsigned char *buf = calloc(1, (size_t)bytes + 28);
    if (!buf) {
        fprintf(stderr, "gqac: error: cannot allocate %llu bytes of weights\n", (unsigned long long)bytes);
        return EXIT_INPUT;
    }
    for (int i = 0; i < 7; i++)
        gqr_tf_put32(buf + 4 * i, (uint32_t)h[i]);
    int rc = 0;
    for (size_t i = 0; i < f32->n_tensors && !rc; i++)
        rc = encode(&typed[i], w + f32->tensors[i].offset / 4, buf + 28 + typed[i].offset, err,
                    sizeof err);
    gqr_out out;
    if (!rc && !gqr_out_open(&out, output, err, sizeof err)) {
        gqr_out_put(&out, buf, (size_t)bytes + 28);
        rc = gqr_out_commit(&out, err, sizeof err);
    } else {
        rc = -1;
    }
    free(buf);
    if (rc)
        fprintf(stderr, "gqac: error: %s\n", err);
    return rc ? EXIT_INPUT : EXIT_OK;
}

/* The floats written as format, for m's own types when typed is given. */
static int write_random(const Model *m, const gqa_model_api *api, const gqa_tensor *typed,
                        uint64_t typed_bytes, const float *w, const char *format, const char *dtype,
                        const char *output) {
    char err[512];
    if (typed && !strcmp(format, "bin"))
        return write_packed(m, api, typed, typed_bytes, w, output);
    gqr_write_opts o = {.dtype = export_dtype(dtype), .types = typed, .n_types = typed ? api->n_tensors : 0};
    int fmt = !strcmp(format, "gguf") ? GQR_FORMAT_GGUF : GQR_FORMAT_SAFETENSORS;
    int rc = gqr_convert_write_opts(output, fmt, &o, api, w, err, sizeof err);
    if (rc)
        fprintf(stderr, "gqac: error: %s\n", err);
    return rc ? EXIT_INPUT : EXIT_OK;
}

int export_random(const Model *m, uint64_t seed, const char *format, const char *dtype,
                  const char *output) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t total, typed_bytes;
    ir_tensors(m, t, &total);
    if (total > SIZE_MAX / sizeof(float)) {
        fprintf(stderr, "gqac: error: the model's weights do not fit in memory here\n");
        return EXIT_INPUT;
    }
    Arena *a = arena_new();
    size_t n;
    const gqa_tensor *typed = typed_table(m, a, &n, &typed_bytes);
    if (typed && strcmp(dtype, "f32")) {
        arena_free(a);
        fprintf(stderr, "gqac: error: the model's dtype block gives each tensor its type; --dtype %s "
                "applies to a model without one\n(see gqac --help)\n", dtype);
        return EXIT_USAGE;
    }
    float *w = malloc((size_t)total * sizeof *w);
    double *freqs = malloc((size_t)m->head_dim / 2 * sizeof *freqs + 1);
    int rc = EXIT_INPUT;
    if (!w || !freqs) {
        fprintf(stderr, "gqac: error: cannot allocate %llu floats of weights\n",
                (unsigned long long)total);
    } else {
        weights_fill_random(m, seed, w);
        for (int64_t i = 0; i < m->head_dim / 2; i++)
            freqs[i] = ir_rope_freq(m, (int)i);
        gqa_model_api api = export_api(m, a, freqs);
        rc = write_random(m, &api, typed, typed_bytes, w, format, dtype, output);
    }
    free(w);
    free(freqs);
    arena_free(a);
    return rc;
}
