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
 * 3. Every f16, bf16 and q8_0 case and a few f32 ones under sliding
 *    windows and sinks: decode and prompt blocks through a context whose
 *    rings wrap, against the reference on the values the cache holds.
 * 4. The cache's conversions (f16 and bf16 both ways, q8_0's scales)
 *    against decoders and rounders written from the formats' fields.
 * 5. q8_0's stored bytes against ggml's quantizer (runtime/quant.c).
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
#include "quant.h"
#include "tensorfile.h"
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

/* Whether the query at pos sees position t: the mask written out, apart
 * from the kernels' blocks and ring (window <= 0: every position). */
static int reference_sees(int window, int sinks, int pos, int t) {
    return t <= pos && (window <= 0 || pos - t < window || t < sinks);
}

/* q (heads, hd), caches (kv_heads, context, hd) -> out (heads, hd), with
 * a sliding window and sinks (window 0: none).  tiled: pair query head h
 * with KV head h % kv_heads, the wrong order, to show that the tests tell
 * the two apart. */
static void reference_window(double *out, const float *q, const float *kc, const float *vc, int heads,
                             int kv_heads, int hd, int context, int window, int sinks, int pos, int tiled) {
    double *score = malloc((size_t)(pos + 1) * sizeof *score);
    for (int h = 0; h < heads; h++) {
        int kvh = tiled ? h % kv_heads : h / (heads / kv_heads);
        const float *qh = q + (size_t)h * hd;
        double max = -INFINITY, sum = 0;
        for (int t = 0; t <= pos; t++) {
            const float *k = kc + ((size_t)kvh * context + t) * hd;
            double s = 0;
            if (!reference_sees(window, sinks, pos, t))
                continue;
            for (int d = 0; d < hd; d++)
                s += (double)qh[d] * k[d];
            score[t] = s / sqrt((double)hd);
            max = fmax(max, score[t]);
        }
        for (int t = 0; t <= pos; t++)
            sum += score[t] = reference_sees(window, sinks, pos, t) ? exp(score[t] - max) : 0;
        for (int d = 0; d < hd; d++)
            out[(size_t)h * hd + d] = 0;
        for (int t = 0; t <= pos; t++)
            for (int d = 0; d < hd && score[t] != 0; d++)
                out[(size_t)h * hd + d] += score[t] / sum * vc[((size_t)kvh * context + t) * hd + d];
    }
    free(score);
}

static void reference_attention_order(double *out, const float *q, const float *kc,
                                      const float *vc, int heads, int kv_heads, int hd,
                                      int context, int pos, int tiled) {
    reference_window(out, q, kc, vc, heads, kv_heads, hd, context, 0, 0, pos, tiled);
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

/* ---- 3. typed caches, sliding windows and sinks ---- */

/* What a cache of each type holds, worked out apart from attention.c's
 * integer code: in double, where nearbyint rounds ties to even. */

/* a (finite, >= 0) rounded to a binary format of mbits mantissa bits
 * whose normal numbers start at 2^emin. */
static double ref_round(double a, int mbits, int emin) {
    if (a == 0)
        return 0;
    int e = ilogb(a);
    double unit = ldexp(1.0, (e < emin ? emin : e) - mbits);
    return nearbyint(a / unit) * unit;
}

/* The bits (no sign) of r, a value of that format with exponent bias. */
static unsigned ref_encode(double r, int mbits, int emin, int bias) {
    if (r < ldexp(1.0, emin))
        return (unsigned)(r / ldexp(1.0, emin - mbits));
    int e = ilogb(r);
    return (unsigned)(e + bias) << mbits | (unsigned)((r / ldexp(1.0, e) - 1) * ldexp(1.0, mbits));
}

/* float -> f16 as the cache stores it: nearest, ties to even; finite
 * values past 65504 clamped to 65504 (attention.c's rule); a NaN as
 * 0x7e00 with its sign (NaNs are compared as a class). */
static unsigned ref_f16_bits(float f) {
    unsigned sign = signbit(f) ? 0x8000u : 0;
    if (isnan(f))
        return sign | 0x7e00u;
    if (isinf(f))
        return sign | 0x7c00u;
    return sign | ref_encode(fmin(ref_round(fabs((double)f), 10, -14), 65504), 10, -14, 15);
}

/* float -> bfloat16: nearest, ties to even, past the largest to infinity. */
static unsigned ref_bf16_bits(float f) {
    unsigned sign = signbit(f) ? 0x8000u : 0;
    double r;
    if (isnan(f))
        return sign | 0x7fc0u;
    r = isinf(f) ? INFINITY : ref_round(fabs((double)f), 7, -126);
    return sign | (r > ldexp(255, 120) ? 0x7f80u : ref_encode(r, 7, -126, 127));
}

/* The value of a binary16 / bfloat16 from its fields. */
static double ref_half_value(unsigned h, int mbits, int bias) {
    int e = (int)(h >> mbits & ((1u << (15 - mbits)) - 1)), m = (int)(h & ((1u << mbits) - 1));
    int emax = (1 << (15 - mbits)) - 1;
    double v = e == 0 ? ldexp(m, 1 - bias - mbits) : e == emax ? (m ? NAN : INFINITY)
                                                                : ldexp((1 << mbits) + m, e - bias - mbits);
    return h & 0x8000u ? -v : v;
}

static double ref_f16_value(unsigned h) { return ref_half_value(h, 10, 15); }
static double ref_bf16_value(unsigned h) { return ref_half_value(h, 7, 127); }

/* Whether two NaN-or-half bit patterns agree (any NaN of the same sign
 * matches). */
static int half_bits_match(unsigned got, unsigned want, unsigned exp_mask) {
    int got_nan = (got & exp_mask) == exp_mask && (got & ~exp_mask & 0x7fffu);
    int want_nan = (want & exp_mask) == exp_mask && (want & ~exp_mask & 0x7fffu);
    return got_nan || want_nan ? got_nan && want_nan && (got & 0x8000u) == (want & 0x8000u) : got == want;
}

/* A row of n floats (blocks of 32) -> what a q8_0 cache gives back:
 * ggml's quantize_row_q8_0_ref (d = amax / 127 stored as f16, q =
 * roundf(x / d)), then d * q. */
static void ref_q8_0(float *y, const float *x, int n) {
    for (int b = 0; b < n; b += 32) {
        float amax = 0, d, id;
        double dh;
        for (int i = b; i < b + 32; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        d = amax / 127;
        id = d != 0 ? 1.0f / d : 0.0f;
        dh = ref_f16_value(ref_f16_bits(d));
        for (int i = b; i < b + 32; i++)
            y[i] = (float)(dh * roundf(x[i] * id));
    }
}

/* kc (rows of hd) -> the values a cache of kv_type holds for them. */
static void ref_cache_values(float *out, const float *kc, size_t rows, int hd, int kv_type) {
    for (size_t r = 0; r < rows; r++) {
        const float *x = kc + r * hd;
        float *y = out + r * hd;
        if (kv_type == 4)
            ref_q8_0(y, x, hd);
        for (int d = 0; d < hd && kv_type != 4; d++)
            y[d] = kv_type == 1 ? (float)ref_f16_value(ref_f16_bits(x[d]))
                 : kv_type == 2 ? (float)ref_bf16_value(ref_bf16_bits(x[d])) : x[d];
    }
}

static const AttentionCase *find_case(int heads, int kv_heads, int hd, int kv_type) {
    for (const AttentionCase *c = attention_cases; c->fn; c++)
        if (c->heads == heads && c->kv_heads == kv_heads && c->head_dim == hd && c->kv_type == kv_type)
            return c;
    return NULL;
}

static const char *const kv_type_names[] = {"f32", "f16", "bf16", "?", "q8_0"};

/* A case's K and V at every position (the plain layout), as given to
 * kv_store and as the cache holds them: made once, used under every
 * window. */
typedef struct {
    float *kc, *vc; /* (kv_heads, context, hd), in [-1, 1] */
    float *kr, *vr; /* the same rounded through the cache's type */
} CaseValues;

static CaseValues case_values(const AttentionCase *c) {
    CaseValues cv;
    size_t rows = (size_t)c->kv_heads * attention_context, n = rows * c->head_dim;
    cv.kc = random_floats(n, 1), cv.vc = random_floats(n, 1);
    cv.kr = malloc(n * sizeof *cv.kr), cv.vr = malloc(n * sizeof *cv.vr);
    ref_cache_values(cv.kr, cv.kc, rows, c->head_dim, c->kv_type);
    ref_cache_values(cv.vr, cv.vc, rows, c->head_dim, c->kv_type);
    return cv;
}

static void case_values_free(CaseValues *cv) { free(cv->kc), free(cv->vc), free(cv->kr), free(cv->vr); }

/* One case under one window: its values, and the kernel's caches, every
 * byte 0xff at first: NaN in every type (f32, f16, bf16, and q8_0's
 * scales), so that a kernel that reads a slot never written, even to
 * weigh it 0, gives NaN, which test_rel_error counts as an infinite
 * error. */
typedef struct {
    const AttentionCase *c;
    const CaseValues *cv;
    int window, sinks;
    unsigned char *k, *v;
} WindowRun;

static WindowRun window_run(const AttentionCase *c, const CaseValues *cv, int window, int sinks) {
    WindowRun w = {c, cv, window, sinks, NULL, NULL};
    size_t bytes = c->cache_bytes(window, sinks);
    w.k = malloc(bytes), w.v = malloc(bytes);
    memset(w.k, 0xff, bytes);
    memset(w.v, 0xff, bytes);
    return w;
}

static void window_run_free(WindowRun *w) { free(w->k), free(w->v); }

static void window_store(const WindowRun *w, int t) {
    const AttentionCase *c = w->c;
    attention_cases_store(c->store, w->k, w->v, w->window, w->sinks, w->cv->kc, w->cv->vc, c->kv_heads,
                          c->head_dim, attention_context, t);
}

/* The reference for the query q at pos: on the cache's values (rounded
 * 1), or on the values given to kv_store (0). */
static void window_reference(double *want, const WindowRun *w, const float *q, int pos, int rounded) {
    const AttentionCase *c = w->c;
    reference_window(want, q, rounded ? w->cv->kr : w->cv->kc, rounded ? w->cv->vr : w->cv->vc, c->heads,
                     c->kv_heads,
                     c->head_dim, attention_context, w->window, w->sinks, pos, 0);
}

/* Worst errors of a case's kernels: against the cache's values and
 * against the f32 values. */
typedef struct {
    double rounded, raw;
} Errors;

/* Decode, as a run does: each position stored in turn, its ring slot
 * wrapping, and every 23rd position's query (and the last's) on 1
 * thread, every 92nd and the last on 2 and 3 as well (an OpenMP team's
 * threads spin a while after each parallel region: fewer regions, less
 * of the shared cores' time). */
static void check_window_decode(const AttentionCase *c, const CaseValues *cv, int window, int sinks,
                                Errors *e) {
    size_t qn = (size_t)c->heads * c->head_dim;
    WindowRun w = window_run(c, cv, window, sinks);
    float *q = random_floats(qn, 3), *out = malloc(qn * sizeof *out);
    float *scratch = malloc(8 * (qn + 2 * (size_t)c->heads) * sizeof *scratch);
    double *want = malloc(qn * sizeof *want);
    for (int pos = 0; pos < attention_context; pos++) {
        window_store(&w, pos);
        if (pos % 23 && pos != attention_context - 1)
            continue;
        window_reference(want, &w, q, pos, 1);
        for (int threads = 1; threads <= (pos % 92 && pos != attention_context - 1 ? 1 : 3); threads++) {
            c->fn(out, q, w.k, w.v, window, sinks, pos, scratch, threads);
            e->rounded = fmax(e->rounded, test_rel_error(out, want, qn));
        }
        window_reference(want, &w, q, pos, 0);
        e->raw = fmax(e->raw, test_rel_error(out, want, qn));
    }
    free(q), free(out), free(scratch), free(want);
    window_run_free(&w);
}

/* A prompt, as forward_batch runs it: blocks of up to 64 tokens (the
 * ring's chunk) stored, then attended at once.  Checked: the first two
 * blocks, a one-token block, and the last, 64 tokens from 456, far past
 * every window (the context is 520); the first and the last on 2 and 3
 * threads as well. */
static const int prompt_blocks[] = {64, 23, 64, 1, 64, 47, 64, 17, 48, 64, 64};

static void check_window_prompt(const AttentionCase *c, const CaseValues *cv, int window, int sinks,
                                Errors *e) {
    size_t qn = (size_t)c->heads * c->head_dim;
    WindowRun w = window_run(c, cv, window, sinks);
    float *q = random_floats(qn * 64, 3), *out = malloc(qn * 64 * sizeof *out);
    double *want = malloc(qn * 64 * sizeof *want);
    for (int i = 0, p0 = 0; p0 < attention_context; p0 += prompt_blocks[i++]) {
        int b = prompt_blocks[i] < attention_context - p0 ? prompt_blocks[i] : attention_context - p0;
        for (int t = p0; t < p0 + b; t++)
            window_store(&w, t);
        if (i > 1 && b > 1 && p0 + b < attention_context)
            continue;
        for (int t = 0; t < b; t++)
            window_reference(want + t * qn, &w, q + t * qn, p0 + t, 1);
        for (int threads = 1; threads <= (i == 0 || p0 + b == attention_context ? 3 : 1); threads++) {
            c->prompt(out, q, w.k, w.v, window, sinks, p0, b, threads);
            for (int t = 0; t < b; t++)
                e->rounded = fmax(e->rounded, test_rel_error(out + t * qn, want + t * qn, qn));
        }
    }
    free(q), free(out), free(want);
    window_run_free(&w);
}

/* (window, sinks): none; a window not a multiple of the blocks, with no
 * sinks, a few, and sinks past a block; a window of one block; only the
 * token itself. */
static const int windows[][2] = {{0, 0}, {37, 0}, {37, 5}, {100, 20}, {16, 1}, {1, 0}};

/* Against the cache's values the kernels are the f32 kernels on them:
 * TOLERANCE (measured worst 2.3e-6 over every type).  Against the f32
 * values given to kv_store the type's own rounding shows (measured
 * worst, random K, V in [-1, 1], q in [-3, 3], relative to the output's
 * largest: f16 6.8e-4, bf16 5.4e-3, q8_0 1.1e-2): about three times that. */
static const double raw_tolerance[] = {TOLERANCE, 2e-3, 1.5e-2, 0, 3e-2};

/* The f32 cases among the windowed ones: G 8, 4, 4, 7 and 1 (MHA),
 * head_dim 8 to 128. */
static const int f32_windowed[][3] = {{8, 1, 128}, {8, 2, 16}, {12, 3, 64}, {28, 4, 16}, {6, 6, 8}};

static int windowed_case(const AttentionCase *c) {
    if (c->kv_type != 0)
        return 1;
    for (size_t i = 0; i < sizeof f32_windowed / sizeof f32_windowed[0]; i++)
        if (c->heads == f32_windowed[i][0] && c->kv_heads == f32_windowed[i][1] &&
            c->head_dim == f32_windowed[i][2])
            return 1;
    return 0;
}

static void test_generated_windows(void) {
    int n = 0;
    double worst[5] = {0}, worst_raw[5] = {0};
    for (const AttentionCase *c = attention_cases; c->fn; c++) {
        if (!windowed_case(c))
            continue;
        CaseValues cv = case_values(c);
        n++;
        for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
            Errors e = {0, 0};
            check_window_decode(c, &cv, windows[i][0], windows[i][1], &e);
            check_window_prompt(c, &cv, windows[i][0], windows[i][1], &e);
            if (e.rounded > TOLERANCE || e.raw > raw_tolerance[c->kv_type])
                printf("\n  %d:%d:%d %s window %d sinks %d: error %.3g (f32 values: %.3g)", c->heads,
                       c->kv_heads, c->head_dim, kv_type_names[c->kv_type], windows[i][0], windows[i][1],
                       e.rounded, e.raw);
            CU_ASSERT(e.rounded <= TOLERANCE);
            CU_ASSERT(e.raw <= raw_tolerance[c->kv_type]);
            worst[c->kv_type] = fmax(worst[c->kv_type], e.rounded);
            worst_raw[c->kv_type] = fmax(worst_raw[c->kv_type], e.raw);
        }
        case_values_free(&cv);
    }
    for (int t = 0; t < 5; t++)
        if (t != 3)
            printf(" [%s %.2g, f32 values %.2g]", kv_type_names[t], worst[t], worst_raw[t]);
    CU_ASSERT_EQUAL(n, 24 + 5);
}

/* The test can fail: the kernel with window 37 and 5 sinks, against a
 * reference whose window or sinks are one more, is far off. */
static void test_reference_detects_window(void) {
    const AttentionCase *c = find_case(8, 2, 64, 1);
    CU_ASSERT_FATAL(c != NULL);
    size_t qn = 8 * 64;
    CaseValues cv = case_values(c);
    WindowRun w = window_run(c, &cv, 37, 5);
    float *q = random_floats(qn, 3), out[8 * 64], scratch[8 * (8 * 64 + 2 * 8)];
    double want[8 * 64];
    for (int pos = 0; pos <= 200; pos++)
        window_store(&w, pos);
    c->fn(out, q, w.k, w.v, 37, 5, 200, scratch, 1);
    window_reference(want, &w, q, 200, 1);
    CU_ASSERT(test_rel_error(out, want, qn) <= TOLERANCE);
    w.window = 38;
    window_reference(want, &w, q, 200, 1);
    CU_ASSERT(test_rel_error(out, want, qn) > 1e-3);
    w.window = 37, w.sinks = 6;
    window_reference(want, &w, q, 200, 1);
    CU_ASSERT(test_rel_error(out, want, qn) > 1e-3);
    free(q);
    window_run_free(&w);
    case_values_free(&cv);
}

/* ---- 4. the cache's conversions, through a generated case's kernels ---- */

static size_t kv_elem_bytes(int kv_type) { return kv_type == 0 ? 4 : kv_type == 4 ? 1 : 2; }

/* Bytes of one KV head's blocks (its first block holds positions 0..15). */
static size_t head_bytes(const AttentionCase *c) { return c->cache_bytes(0, 0) / (size_t)c->kv_heads; }

/* Where V's values of position 0 sit in a KV head's first block, in
 * elements: map[d] for column d (the tiles depend on the plan), found by
 * storing one-hot rows into zeroed caches. */
static void v_lane0(const AttentionCase *c, size_t *map) {
    size_t bytes = c->cache_bytes(0, 0), es = kv_elem_bytes(c->kv_type);
    size_t n = (size_t)c->kv_heads * c->head_dim;
    unsigned char *k = calloc(bytes, 1), *v = calloc(bytes, 1), zero[4] = {0};
    float *kz = calloc(n, sizeof *kz), *vd = calloc(n, sizeof *vd);
    for (int d = 0; d < c->head_dim; d++) {
        map[d] = SIZE_MAX;
        vd[d] = 1;
        c->store(k, v, 0, 0, 0, kz, vd);
        vd[d] = 0;
        for (size_t i = 0; i < (size_t)16 * c->head_dim; i++)
            if (memcmp(v + i * es, zero, es))
                map[d] = i;
    }
    c->store(k, v, 0, 0, 0, kz, vd);
    free(k), free(v), free(kz), free(vd);
}

/* Every 16-bit pattern of an f16 or bf16 cache's V, decoded by the kernel
 * (block_floats and all): position 0 alone, K 0, so its weight is 1 and
 * attention's output is V itself.  The only change: -0 comes out +0. */
static void check_half_decode(int kv_type, double (*value)(unsigned)) {
    const AttentionCase *c = find_case(8, 8, 128, kv_type);
    CU_ASSERT_FATAL(c != NULL);
    size_t bytes = c->cache_bytes(0, 0), hb = head_bytes(c), map[128], qn = 8 * 128;
    unsigned char *k = calloc(bytes, 1), *v = calloc(bytes, 1);
    float *q = random_floats(qn, 3), out[8 * 128], scratch[8 * (8 * 128 + 2 * 8)];
    int bad = 0;
    v_lane0(c, map);
    for (unsigned base = 0; base < 65536; base += 8 * 128) {
        for (int h = 0; h < 8; h++)
            for (int d = 0; d < 128; d++) {
                uint16_t bits = (uint16_t)(base + (unsigned)(h * 128 + d));
                memcpy(v + (size_t)h * hb + map[d] * 2, &bits, 2);
            }
        c->fn(out, q, k, v, 0, 0, 0, scratch, 1);
        for (unsigned i = 0; i < 8 * 128; i++) {
            double want = value(base + i);
            if (isnan(want) ? !isnan(out[i]) : out[i] != want) {
                if (!bad++)
                    printf("\n  %s 0x%04x: %.9g, want %.9g", kv_type_names[kv_type], base + i, out[i], want);
            }
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(k), free(v), free(q);
}

static void test_f16_decode(void) { check_half_decode(1, ref_f16_value); }
static void test_bf16_decode(void) { check_half_decode(2, ref_bf16_value); }

/* Every f16 pattern as a q8_0 block's scale, V's values all 1: the output
 * is the scale (kv_f16 itself, where an f16 cache may use F16C). */
static void test_q8_scale_decode(void) {
    const AttentionCase *c = find_case(8, 8, 128, 4);
    CU_ASSERT_FATAL(c != NULL);
    size_t bytes = c->cache_bytes(0, 0), hb = head_bytes(c);
    unsigned char *k = calloc(bytes, 1), *v = calloc(bytes, 1);
    float *q = random_floats(8 * 128, 3), out[8 * 128], scratch[8 * (8 * 128 + 2 * 8)];
    int bad = 0;
    for (int h = 0; h < 8; h++)
        memset(v + (size_t)h * hb, 1, 16 * 128); /* the first block's int8 values */
    for (unsigned base = 0; base < 65536; base += 8 * 4) {
        for (unsigned h = 0; h < 8; h++)
            for (unsigned s = 0; s < 4; s++) { /* position 0's scales, (position, chunk) */
                uint16_t bits = (uint16_t)(base + h * 4 + s);
                memcpy(v + h * hb + 16 * 128 + s * 2, &bits, 2);
            }
        c->fn(out, q, k, v, 0, 0, 0, scratch, 1);
        for (unsigned i = 0; i < 8 * 128; i++) {
            unsigned bits = base + i / 128 * 4 + i % 128 / 32;
            double want = ref_f16_value(bits);
            if ((isnan(want) ? !isnan(out[i]) : out[i] != want) && !bad++)
                printf("\n  scale 0x%04x: %.9g, want %.9g", bits, out[i], want);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(k), free(v), free(q);
}

/* About 1e6 floats for a 16-bit type's rounding: edge cases; every
 * midpoint between neighbours of the type (finite, both signs) and the
 * floats either side of it; random bit patterns (every exponent, NaN);
 * random values in the type's range and in its subnormals.  *n set. */
static float *rounding_inputs(double (*value)(unsigned), unsigned last_finite, double top, double sub,
                              size_t *n) {
    static const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, FLT_MIN, 0x1p-149f, -0x1p-149f, 0x1p-140f, FLT_MAX,
                                  -FLT_MAX, 65504.0f, 65519.0f, 65519.99f, 65520.0f, -65520.0f, 65535.0f,
                                  1e10f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 8.940697e-08f,
                                  6.1035156e-05f, 6.1035152e-05f, 3.3895314e38f, 3.3961776e38f,
                                  1.00048828125f, 1.00146484375f, 1.00390625f, 1.01171875f};
    size_t cap = 1100000, i = 0;
    float *x = malloc(cap * sizeof *x);
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        x[i++] = edges[e];
    x[i++] = INFINITY, x[i++] = -INFINITY, x[i++] = NAN, x[i++] = -NAN;
    for (unsigned h = 0; h <= last_finite; h++) {
        double a = value(h), b = h < last_finite ? value(h + 1) : 2 * value(h) - value(h - 1);
        float mid = (float)((a + b) / 2);
        for (int s = -1; s <= 1; s += 2) {
            x[i++] = (float)s * mid;
            x[i++] = (float)s * nextafterf(mid, 0);
            x[i++] = (float)s * nextafterf(mid, INFINITY);
        }
    }
    while (i < 800000) {
        uint32_t u;
        rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
        u = (uint32_t)(rng_state >> 32);
        memcpy(&x[i++], &u, 4);
    }
    while (i < 900000)
        x[i++] = (float)(top * frand());
    while (i < 1000000)
        x[i++] = (float)(sub * frand());
    *n = i;
    return x;
}

/* The bits an f16 or bf16 case's kv_store writes for each of x, read from
 * K's first block ((head_dim, 16): position 0 at d * 16), against want. */
static void check_half_encode(int kv_type, unsigned (*want)(float), double (*value)(unsigned),
                              unsigned last_finite, double top, double sub, unsigned exp_mask) {
    const AttentionCase *c = find_case(8, 8, 128, kv_type);
    CU_ASSERT_FATAL(c != NULL);
    size_t bytes = c->cache_bytes(0, 0), hb = head_bytes(c), n;
    unsigned char *k = malloc(bytes), *v = malloc(bytes);
    float *x = rounding_inputs(value, last_finite, top, sub, &n), row[8 * 128];
    int bad = 0;
    for (size_t at = 0; at < n; at += 8 * 128) {
        size_t m = n - at < 8 * 128 ? n - at : 8 * 128;
        for (size_t i = 0; i < 8 * 128; i++)
            row[i] = i < m ? x[at + i] : 0.0f;
        c->store(k, v, 0, 0, 0, row, row);
        for (size_t i = 0; i < m; i++) {
            uint16_t got;
            memcpy(&got, k + i / 128 * hb + i % 128 * 16 * 2, 2);
            if (!half_bits_match(got, want(row[i]), exp_mask) && !bad++)
                printf("\n  %s of %a: 0x%04x, want 0x%04x", kv_type_names[kv_type], (double)row[i], got,
                       want(row[i]));
        }
    }
    printf(" [%zu values]", n);
    CU_ASSERT_EQUAL(bad, 0);
    free(k), free(v), free(x);
}

static void test_f16_encode(void) {
    check_half_encode(1, ref_f16_bits, ref_f16_value, 0x7bff, 70000, 1e-4, 0x7c00);
}

static void test_bf16_encode(void) {
    check_half_encode(2, ref_bf16_bits, ref_bf16_value, 0x7f7f, 1e6, 2e-38, 0x7f80);
}

/* ---- 5. q8_0's bytes: ggml's quantizer's ---- */

/* One KV head's row x (head_dim) at position 0 of a q8_0 case's K (int8
 * at d * 16, f16 scales at 16 * head_dim + (chunk * 16) * 2) or V (int8
 * where map says, scales at 16 * head_dim + chunk * 2) against
 * gqr_q_quantize_row's blocks (f16 d, then 32 int8).  Counts mismatches. */
static int q8_row_mismatches(const unsigned char *block, const size_t *map, const float *x, int hd) {
    unsigned char want[4 * 34];
    char err[200];
    int bad = 0;
    if (gqr_q_quantize_row(GQR_DT_Q8_0, x, (uint64_t)hd, want, err, sizeof err)) {
        printf("\n  %s", err);
        return 1;
    }
    for (int c = 0; c < hd / 32; c++) {
        uint16_t d;
        memcpy(&d, block + 16 * hd + (map ? (size_t)c : (size_t)c * 16) * 2, 2);
        bad += d != (want[c * 34] | want[c * 34 + 1] << 8);
        for (int j = 0; j < 32; j++) {
            size_t at = map ? map[c * 32 + j] : (size_t)(c * 32 + j) * 16;
            bad += (signed char)block[at] != (signed char)want[c * 34 + 2 + j];
        }
    }
    return bad;
}

/* Rows of every scale (2^-12 .. 2^12), one-hot and zero chunks, and
 * values on roundf's edges: x / d = 0.49999997 (which x + 0.5 truncated
 * would round up), 0.5, 1.5, 2.5, 126.5, -0.5 ... */
static void q8_test_row(float *x, int hd, int row) {
    static const float edges[] = {127, 0.49999997f, -0.49999997f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f,
                                  126.5f, -126.5f, 1.4999999f, 0, -0.0f, 64, 3.5f, -2.5f};
    for (int d = 0; d < hd; d++) {
        float scale = ldexpf(1, row % 25 - 12);
        x[d] = scale * frand();
        if (row % 7 == 3)
            x[d] = d % 32 == row % 32 ? scale : 0;
        if (row % 7 == 5)
            x[d] = edges[d % 16];
    }
}

static void test_q8_store(void) {
    const AttentionCase *c = find_case(8, 8, 128, 4);
    CU_ASSERT_FATAL(c != NULL);
    size_t bytes = c->cache_bytes(0, 0), hb = head_bytes(c), map[128];
    unsigned char *k = malloc(bytes), *v = malloc(bytes);
    float kx[8 * 128], vx[8 * 128];
    int bad = 0;
    v_lane0(c, map);
    for (int row = 0; row < 200; row++) {
        for (int h = 0; h < 8; h++) {
            q8_test_row(kx + h * 128, 128, row * 16 + h);
            q8_test_row(vx + h * 128, 128, row * 16 + 8 + h);
        }
        c->store(k, v, 0, 0, 0, kx, vx);
        for (int h = 0; h < 8; h++) {
            int b = q8_row_mismatches(k + h * hb, NULL, kx + h * 128, 128) +
                    q8_row_mismatches(v + h * hb, map, vx + h * 128, 128);
            if (b && !bad)
                printf("\n  row %d head %d: %d bytes differ", row, h, b);
            bad += b;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(k), free(v);
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
    s = CU_add_suite("typed caches, windows and sinks", NULL, NULL);
    CU_add_test(s, "every cache type x 6 windows: decode, prompt, 1-3 threads", test_generated_windows);
    CU_add_test(s, "a window or sinks one off would fail", test_reference_detects_window);
    s = CU_add_suite("cache conversions", NULL, NULL);
    CU_add_test(s, "f16 -> float, every pattern", test_f16_decode);
    CU_add_test(s, "bf16 -> float, every pattern", test_bf16_decode);
    CU_add_test(s, "q8_0 scales (f16) -> float, every pattern", test_q8_scale_decode);
    CU_add_test(s, "float -> f16: ties to even, subnormals, 65504, inf, NaN", test_f16_encode);
    CU_add_test(s, "float -> bf16: ties to even, subnormals, inf, NaN", test_bf16_encode);
    CU_add_test(s, "q8_0 store: ggml's quantize_row_q8_0 bytes", test_q8_store);
    return cunit_run();
}
