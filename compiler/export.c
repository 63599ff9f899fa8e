/*
 * export.c: `gqac weights --random --format gguf|safetensors`.  Needs: the
 * runtime's convert.c (the same writer a conversion uses).  Provides:
 * weights_fill_random's values in GGUF or safetensors, f32, f16 or bf16,
 * or in GGUF quantized (q8_0, q4_0, q4_k, q6_k).
 */
#include "gqac.h"
#include "gqr.h"
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
                         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    api.shape = (gqa_shape){(int)m->dim, (int)m->hidden, (int)m->layers, (int)m->heads,
                            (int)m->kv_heads, (int)m->head_dim, (int)m->vocab, (int)m->context,
                            m->tied, m->qkv_bias, m->rope_halves, m->rope_theta, m->norm_eps};
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

int export_random(const Model *m, uint64_t seed, const char *format, const char *dtype,
                  const char *output) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t total;
    ir_tensors(m, t, &total);
    if (total > SIZE_MAX / sizeof(float)) {
        fprintf(stderr, "gqac: error: the model's weights do not fit in memory here\n");
        return EXIT_INPUT;
    }
    float *w = malloc((size_t)total * sizeof *w);
    double *freqs = malloc((size_t)m->head_dim / 2 * sizeof *freqs);
    if (!w || !freqs) {
        free(w);
        fprintf(stderr, "gqac: error: cannot allocate %llu floats of weights\n",
                (unsigned long long)total);
        return EXIT_INPUT;
    }
    weights_fill_random(m, seed, w);
    for (int64_t i = 0; i < m->head_dim / 2; i++)
        freqs[i] = ir_rope_freq(m, (int)i);
    Arena *a = arena_new();
    gqa_model_api api = export_api(m, a, freqs);
    char err[512];
    int fmt = !strcmp(format, "gguf") ? GQR_FORMAT_GGUF : GQR_FORMAT_SAFETENSORS;
    int rc = gqr_convert_write(output, fmt, export_dtype(dtype), &api, w, err, sizeof err);
    free(w);
    free(freqs);
    arena_free(a);
    if (rc)
        fprintf(stderr, "gqac: error: %s\n", err);
    return rc ? EXIT_INPUT : 0;
}
