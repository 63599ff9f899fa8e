/*
 * test_kernels.c: the kernels against plain references in double
 * precision.
 *
 * 1. The templates on their own (templates/kernels.c and attention.c with
 *    shape.h's defaults):
 *    RMSNorm, matrix-vector, RoPE, SwiGLU, attention.
 * 2. The attention gqac generates for every shape of the test matrix
 *    (tests/gen_attention.c) at positions {1, 7, 64, 513}, on 1, 2, 3 and
 *    8 threads (long contexts then split across threads and merge), and
 *    for a prompt's block of tokens at once:
 *    max |error| / max |reference| <= 1e-5.
 *
 * The reference knows nothing of groups beyond the one rule under test:
 * query head h reads KV head h / (heads / kv_heads).  It reads K and V as
 * (kv_heads, context, head_dim) arrays; the kernels get them through their
 * own kv_store, into caches whose other positions hold large values (as
 * stale ones would after a seek back) so that a kernel which used a
 * position it was not given would fail.
 */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_run.h"
#include "attention_cases.h"
#include "testing.h"

/* The templates, compiled here exactly as written (no embedding rows:
 * forward.c's). */
#define GQ_HAS_ROWS 0
#include "../templates/kernels.c"
#include "../templates/attention.c"
#include "../templates/mathlib.c"

#define TOLERANCE 1e-5

static unsigned long long rng_state = 42;

static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / (double)(1ull << 23) - 1.0);
}

static float *random_floats(size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = scale * frand();
    return p;
}

/* ---- the reference ---- */

/* q (heads, hd), caches (kv_heads, context, hd) -> out (heads, hd).
 * tiled: pair query head h with KV head h % kv_heads, the wrong order,
 * to show that the tests tell the two apart. */
static void reference_attention_order(double *out, const float *q, const float *kc,
                                      const float *vc, int heads, int kv_heads, int hd,
                                      int context, int pos, int tiled) {
    double *score = malloc((size_t)(pos + 1) * sizeof *score);
    for (int h = 0; h < heads; h++) {
        int kvh = tiled ? h % kv_heads : h / (heads / kv_heads);
        const float *qh = q + (size_t)h * hd;
        double max = -INFINITY, sum = 0;
        for (int t = 0; t <= pos; t++) {
            const float *k = kc + ((size_t)kvh * context + t) * hd;
            double s = 0;
            for (int d = 0; d < hd; d++)
                s += (double)qh[d] * k[d];
            score[t] = s / sqrt((double)hd);
            max = fmax(max, score[t]);
        }
        for (int t = 0; t <= pos; t++)
            sum += score[t] = exp(score[t] - max);
        for (int d = 0; d < hd; d++) {
            double o = 0;
            for (int t = 0; t <= pos; t++)
                o += score[t] / sum * vc[((size_t)kvh * context + t) * hd + d];
            out[(size_t)h * hd + d] = o;
        }
    }
    free(score);
}

static void reference_attention(double *out, const float *q, const float *kc, const float *vc,
                                int heads, int kv_heads, int hd, int context, int pos) {
    reference_attention_order(out, q, kc, vc, heads, kv_heads, hd, context, pos, 0);
}

/* The reference's kc, vc (kv_heads, context, hd), positions 0..pos ->
 * key_cache, value_cache (floats each, first all 1000) through store. */
static void fill_caches(KvStoreFn store, float *key_cache, float *value_cache, size_t floats,
                        const float *kc, const float *vc, int kv_heads, int hd, int context, int pos) {
    for (size_t i = 0; i < floats; i++)
        key_cache[i] = value_cache[i] = 1000.0f;
    attention_cases_fill(store, key_cache, value_cache, kc, vc, kv_heads, hd, context, pos);
}

/* Floats of one of a kernel's caches: positions rounded up to its blocks. */
static size_t cache_floats(int kv_heads, int hd, int context) {
    return (size_t)kv_heads * (size_t)((context + GQ_BLOCK - 1) / GQ_BLOCK * GQ_BLOCK) * (size_t)hd;
}

/* ---- 1. templates ---- */

static void test_template_rmsnorm(void) {
    float *x = random_floats(GQ_DIM, 2), *w = random_floats(GQ_DIM, 1), out[GQ_DIM];
    double want[GQ_DIM], ss = 0;
    for (int i = 0; i < GQ_DIM; i++)
        ss += (double)x[i] * x[i];
    for (int i = 0; i < GQ_DIM; i++)
        want[i] = w[i] * x[i] / sqrt(ss / GQ_DIM + (double)GQ_NORM_EPS);
    rmsnorm(out, x, w, GQ_DIM);
    CU_ASSERT(test_rel_error(out, want, GQ_DIM) <= TOLERANCE);
    free(x);
    free(w);
}

static void test_template_matvec(void) {
    enum { N = GQ_HIDDEN, D = 40 };
    float *w = random_floats((size_t)N * D, 1), *x = random_floats(N, 1), out[D];
    double want[D];
    for (int i = 0; i < D; i++) {
        want[i] = 0;
        for (int j = 0; j < N; j++)
            want[i] += (double)w[i * N + j] * x[j];
    }
    Scratch sc = {NULL, NULL, NULL};
    matvec(out, w, GQA_DT_F32, x, N, D, &sc, 2);
    CU_ASSERT(test_rel_error(out, want, D) <= TOLERANCE);
    free(w);
    free(x);
}

/* RoPE at a long position: angles in double, pairs (2i, 2i+1). */
static void test_template_rope(void) {
    enum { HEADS = 3, POS = 4097 };
    float *v = random_floats(HEADS * GQ_HEAD_DIM, 1), table[GQ_HEAD_DIM];
    double want[HEADS * GQ_HEAD_DIM];
    for (int h = 0; h < HEADS; h++)
        for (int i = 0; i < GQ_HEAD_DIM / 2; i++) {
            double th = POS * pow(GQ_ROPE_THETA, -2.0 * i / GQ_HEAD_DIM);
            double a = v[h * GQ_HEAD_DIM + 2 * i], b = v[h * GQ_HEAD_DIM + 2 * i + 1];
            want[h * GQ_HEAD_DIM + 2 * i] = a * cos(th) - b * sin(th);
            want[h * GQ_HEAD_DIM + 2 * i + 1] = a * sin(th) + b * cos(th);
        }
    rope_table(table, POS);
    rope(v, HEADS, table);
    CU_ASSERT(test_rel_error(v, want, HEADS * GQ_HEAD_DIM) <= TOLERANCE);
    free(v);
}

static void test_template_swiglu(void) {
    float *g = random_floats(GQ_HIDDEN, 4), *u = random_floats(GQ_HIDDEN, 1);
    double want[GQ_HIDDEN];
    for (int i = 0; i < GQ_HIDDEN; i++)
        want[i] = g[i] / (1 + exp(-(double)g[i])) * u[i];
    swiglu(g, u, GQ_HIDDEN);
    CU_ASSERT(test_rel_error(g, want, GQ_HIDDEN) <= TOLERANCE);
    free(g);
    free(u);
}

/* Gates of either sign and any size, element by element: swiglu picks its
 * numerator by the sign bit.  Relative error, or absolute below 1e-20:
 * below a gate of -87 the result (under 2e-36) is flushed to 0. */
static void test_template_swiglu_range(void) {
    float g[GQ_HIDDEN], u[GQ_HIDDEN];
    double worst = 0;
    for (float x = -120.0f; x <= 120.0f; x += 0.0173f) {
        double want = x / (1 + exp(-(double)x));
        g[0] = x;
        u[0] = 1.0f;
        swiglu(g, u, 1);
        worst = fmax(worst, fabs(g[0] - want) / fmax(fabs(want), 1e-20));
    }
    printf(" [max rel. error %.2g]", worst);
    CU_ASSERT(worst < 1e-6);
    g[0] = 0.0f, g[1] = -0.0f, g[2] = 1e-30f, u[0] = u[1] = u[2] = 1.0f;
    swiglu(g, u, 3);
    CU_ASSERT(g[0] == 0.0f && g[1] == 0.0f && fabs(g[2] - 5e-31) < 1e-37);
}

/* The largest relative error of an exponential f over [lo, hi], printed. */
static double exp_error(float (*f)(float), float lo, float hi) {
    double worst = 0;
    for (float x = lo; x <= hi; x += 0.00731f) {
        double want = exp((double)x);
        worst = fmax(worst, fabs(f(x) - want) / want);
    }
    printf(" [max rel. error %.2g]", worst);
    return worst;
}

/* gq_exp_neg, softmax's and SwiGLU's exponential, on every x <= 0 it is
 * given: a score minus its maximum, minus a gate's magnitude. */
static void test_template_exp_neg(void) {
    CU_ASSERT(exp_error(gq_exp_neg, -87.0f, 0.0f) < 2e-7);
    CU_ASSERT(gq_exp_neg(0.0f) == 1.0f && gq_exp_neg(-0.0f) == 1.0f);
    CU_ASSERT(gq_exp_neg(-88.0f) == 0.0f && gq_exp_neg(-FLT_MAX) == 0.0f);
}

static void test_template_attention(void) {
    size_t cache = (size_t)GQ_KV_HEADS * GQ_CONTEXT * GQ_HEAD_DIM;
    size_t floats = cache_floats(GQ_KV_HEADS, GQ_HEAD_DIM, GQ_CONTEXT);
    float *q = random_floats(GQ_Q_DIM, 3), *kc = random_floats(cache, 1),
          *vc = random_floats(cache, 1), out[GQ_Q_DIM], scratch[GQ_SPLIT * (GQ_Q_DIM + 2 * GQ_HEADS)];
    float *key_cache = malloc(floats * sizeof(float)), *value_cache = malloc(floats * sizeof(float));
    double want[GQ_Q_DIM];
    for (int pos = 0; pos < GQ_CONTEXT; pos += 7) {
        fill_caches(kv_store, key_cache, value_cache, floats, kc, vc, GQ_KV_HEADS, GQ_HEAD_DIM,
                    GQ_CONTEXT, pos);
        attention(out, q, key_cache, value_cache, 0, 0, pos, scratch, 1);
        reference_attention(want, q, kc, vc, GQ_HEADS, GQ_KV_HEADS, GQ_HEAD_DIM, GQ_CONTEXT, pos);
        CU_ASSERT(test_rel_error(out, want, GQ_Q_DIM) <= TOLERANCE);
        attention_prompt(out, q, key_cache, value_cache, 0, 0, pos, 1, 1); /* the prompt path, one token */
        CU_ASSERT(test_rel_error(out, want, GQ_Q_DIM) <= TOLERANCE);
    }
    free(q), free(kc), free(vc), free(key_cache), free(value_cache);
}

/* ---- 2. the generated matrix ---- */

static const int positions[] = {1, 7, 64, 513};
/* 1: one span per KV head; more: positions split across threads (up to 8
 * spans) and merged. */
static const int thread_counts[] = {1, 2, 3, 8};

/* A prompt's block of PROMPT tokens at positions at .. (across blocks of
 * 16 and the kernel's tiles of tokens), each with its own q, on 1, 2 and 3
 * threads: each token against the reference at its own position.
 * Returns the worst error. */
enum { PROMPT = 37 };
static double check_prompt(const AttentionCase *c, int at) {
    size_t qn = (size_t)c->heads * c->head_dim;
    size_t cache = (size_t)c->kv_heads * attention_context * c->head_dim;
    size_t floats = cache_floats(c->kv_heads, c->head_dim, attention_context);
    float *q = random_floats(qn * PROMPT, 3), *kc = random_floats(cache, 1), *vc = random_floats(cache, 1);
    float *key_cache = malloc(floats * sizeof(float)), *value_cache = malloc(floats * sizeof(float));
    float *out = malloc(qn * PROMPT * sizeof *out);
    double *want = malloc(qn * PROMPT * sizeof *want), worst = 0;
    fill_caches(c->store, key_cache, value_cache, floats, kc, vc, c->kv_heads, c->head_dim,
                attention_context, at + PROMPT - 1);
    for (int t = 0; t < PROMPT; t++)
        reference_attention(want + t * qn, q + t * qn, kc, vc, c->heads, c->kv_heads, c->head_dim,
                            attention_context, at + t);
    for (int threads = 1; threads <= 3; threads++) {
        c->prompt(out, q, key_cache, value_cache, 0, 0, at, PROMPT, threads);
        for (int t = 0; t < PROMPT; t++)
            worst = fmax(worst, test_rel_error(out + t * qn, want + t * qn, qn));
    }
    free(q), free(kc), free(vc), free(key_cache), free(value_cache), free(out), free(want);
    return worst;
}

/* One shape at every position and thread count, and a prompt from near the
 * start and from deep in the context; returns the worst error. */
static double check_case(const AttentionCase *c) {
    size_t qn = (size_t)c->heads * c->head_dim;
    size_t cache = (size_t)c->kv_heads * attention_context * c->head_dim;
    size_t floats = cache_floats(c->kv_heads, c->head_dim, attention_context);
    float *q = random_floats(qn, 3), *kc = random_floats(cache, 1), *vc = random_floats(cache, 1);
    float *key_cache = malloc(floats * sizeof(float)), *value_cache = malloc(floats * sizeof(float));
    /* Attention's scratch: up to 8 parts per KV head (GQ_SPLIT in the kernels). */
    float *out = malloc(qn * sizeof *out), *scratch = malloc(8 * (qn + 2 * (size_t)c->heads) * sizeof *scratch);
    double *want = malloc(qn * sizeof *want), worst = 0;
    for (size_t p = 0; p < sizeof positions / sizeof positions[0]; p++) {
        reference_attention(want, q, kc, vc, c->heads, c->kv_heads, c->head_dim,
                            attention_context, positions[p]);
        fill_caches(c->store, key_cache, value_cache, floats, kc, vc, c->kv_heads, c->head_dim,
                    attention_context, positions[p]);
        for (size_t i = 0; i < sizeof thread_counts / sizeof thread_counts[0]; i++) {
            int threads = thread_counts[i];
            memset(out, 0, qn * sizeof *out);
            c->fn(out, q, key_cache, value_cache, 0, 0, positions[p], scratch, threads);
            worst = fmax(worst, test_rel_error(out, want, qn));
        }
    }
    free(q), free(kc), free(vc), free(key_cache), free(value_cache), free(out), free(scratch), free(want);
    worst = fmax(worst, check_prompt(c, 6));
    return fmax(worst, check_prompt(c, 470));
}

static void test_generated_matrix(void) {
    int n = 0, groups_seen[33] = {0};
    for (const AttentionCase *c = attention_cases; c->fn; c++) {
        if (c->kv_type != 0)
            continue;
        n++;
        double err = check_case(c);
        groups_seen[c->heads / c->kv_heads] = 1;
        if (err > TOLERANCE)
            printf("\n  heads %d kv_heads %d head_dim %d: error %.3g > %g", c->heads, c->kv_heads,
                   c->head_dim, err, TOLERANCE);
        CU_ASSERT(err <= TOLERANCE);
    }
    CU_ASSERT_EQUAL(n, 144);
    for (int g = 1; g <= 8; g++)
        CU_ASSERT(groups_seen[g]);
    CU_ASSERT(groups_seen[16] && groups_seen[32]);
}

/* The test can fail: the same kernel checked against a reference that
 * tiles (query head h on KV head h % kv_heads) is far off. */
static void test_reference_detects_tiling(void) {
    const AttentionCase *c = attention_cases;
    while (c->fn && !(c->heads == 8 && c->kv_heads == 2 && c->head_dim == 16 && c->kv_type == 0))
        c++;
    CU_ASSERT_FATAL(c->fn != NULL);
    size_t qn = 8 * 16, cache = 2 * (size_t)attention_context * 16, floats = cache_floats(2, 16, attention_context);
    float *q = random_floats(qn, 3), *kc = random_floats(cache, 1), *vc = random_floats(cache, 1);
    float *key_cache = malloc(floats * sizeof(float)), *value_cache = malloc(floats * sizeof(float));
    float out[8 * 16], scratch[8 * (8 * 16 + 2 * 8)];
    double want[8 * 16];
    fill_caches(c->store, key_cache, value_cache, floats, kc, vc, 2, 16, attention_context, 64);
    c->fn(out, q, key_cache, value_cache, 0, 0, 64, scratch, 1);
    reference_attention_order(want, q, kc, vc, 8, 2, 16, attention_context, 64, 0);
    CU_ASSERT(test_rel_error(out, want, qn) <= TOLERANCE);
    reference_attention_order(want, q, kc, vc, 8, 2, 16, attention_context, 64, 1);
    CU_ASSERT(test_rel_error(out, want, qn) > 1e-2);
    free(q), free(kc), free(vc), free(key_cache), free(value_cache);
}

static void test_template_add_copy(void) {
    float x[3] = {1, 2, 3}, y[3] = {0.5f, -2, 4};
    add_inplace(x, y, 3);
    CU_ASSERT(x[0] == 1.5f && x[1] == 0 && x[2] == 7);
    copy_floats(y, x, 2);
    CU_ASSERT(y[0] == 1.5f && y[1] == 0 && y[2] == 4);
}

/* ---- mathlib.c, the freestanding target's math, against libm ---- */

static void test_mathlib_expf(void) {
    CU_ASSERT(exp_error(gq_expf, -87.3f, 88.3f) < 4e-7);
    CU_ASSERT(gq_expf(-200.0f) == 0.0f);
    CU_ASSERT(gq_expf(200.0f) > 3e38f);
}

static void test_mathlib_rsqrtf(void) {
    double worst = 0;
    for (float x = 1e-30f; x < 1e30f; x *= 1.0137f) {
        double want = 1 / sqrt((double)x);
        worst = fmax(worst, fabs(gq_rsqrtf(x) - want) / want);
    }
    printf(" [max rel. error %.2g]", worst);
    CU_ASSERT(worst < 2e-7);
}

static void test_mathlib_sincos(void) {
    double worst = 0;
    for (int i = 0; i < (1 << 20); i++) {
        float t = (float)i / (float)(1 << 20), sn, cs;
        double a = 2 * 3.14159265358979323846 * t;
        gq_sincos_turn(t, &sn, &cs);
        worst = fmax(worst, fmax(fabs(sn - sin(a)), fabs(cs - cos(a))));
    }
    printf(" [max abs. error %.2g]", worst);
    CU_ASSERT(worst < 2e-7);
}

int main(void) {
    CU_pSuite s;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("templates", NULL, NULL);
    CU_add_test(s, "rmsnorm", test_template_rmsnorm);
    CU_add_test(s, "matvec", test_template_matvec);
    CU_add_test(s, "rope", test_template_rope);
    CU_add_test(s, "swiglu", test_template_swiglu);
    CU_add_test(s, "swiglu, gates -120..120", test_template_swiglu_range);
    CU_add_test(s, "e^x, x <= 0", test_template_exp_neg);
    CU_add_test(s, "add, copy", test_template_add_copy);
    CU_add_test(s, "attention", test_template_attention);
    s = CU_add_suite("mathlib (freestanding)", NULL, NULL);
    CU_add_test(s, "expf", test_mathlib_expf);
    CU_add_test(s, "1 / sqrtf", test_mathlib_rsqrtf);
    CU_add_test(s, "sin, cos of turns", test_mathlib_sincos);
    s = CU_add_suite("generated attention", NULL, NULL);
    CU_add_test(s, "144 shapes x 4 positions x 1, 2, 3, 8 threads", test_generated_matrix);
    CU_add_test(s, "a tiled kernel would fail", test_reference_detects_tiling);
    return cunit_run();
}
