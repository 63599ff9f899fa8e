/*
 * kernels.c: the per-token kernels of the forward pass, other than
 * attention: RMSNorm, matrix-vector products, RoPE, SwiGLU.
 *
 * Holes: GQ_ACC_ROW, GQ_HEAD_DIM, GQ_ROPE_THETA, GQ_NORM_EPS,
 * GQ_FREESTANDING, GQ_ROPE_STEPS and GQ_ROPE_TABLE (shape.h).
 * Each kernel's first comment states its shapes.  Sizes arrive as
 * arguments but every call passes constants, so an optimizing compiler
 * specializes the static functions per call site.
 */
#include "shape.h" /* gqac:drop */
#include "parallel.h" /* gqac:drop */

#include "gqmath.h" /* gqac:drop */

#include <stddef.h>
#include <stdint.h>

/* x (n,), weight (n,) -> out (n,); out may be x. */
static void rmsnorm(float *out, const float *x, const float *weight, int n) {
    float ss = 0.0f;
    int i;
    for (i = 0; i < n; i++)
        ss += x[i] * x[i];
    ss = GQ_RSQRTF(ss / (float)n + GQ_NORM_EPS);
    for (i = 0; i < n; i++)
        out[i] = weight[i] * (ss * x[i]);
}

/* One row: w (n,) . x (n,), in GQ_ACC_ROW independent accumulators so the
 * adds do not wait on each other (and vectorize). n % GQ_ACC_ROW == 0. */
static float dot_row(const float *w, const float *x, int n) {
    float acc[GQ_ACC_ROW];
    int j;
    for (int u = 0; u < GQ_ACC_ROW; u++) { /* gqac:unroll */
        acc[u] = 0.0f;
    }
    for (j = 0; j < n; j += GQ_ACC_ROW) {
        for (int u = 0; u < GQ_ACC_ROW; u++) { /* gqac:unroll */
            acc[u] += w[j + u] * x[j + u];
        }
    }
    for (int u = 1; u < GQ_ACC_ROW; u++) { /* gqac:unroll */
        acc[0] += acc[u];
    }
    return acc[0];
}

/* W (d, n) @ x (n,) -> out (d,), rows across threads; W streamed once. */
static void matvec(float *out, const float *w, const float *x, int n, int d, int threads) {
    int i;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if((double)n * d >= GQ_PARALLEL_MIN)")
    for (i = 0; i < d; i++)
        out[i] = dot_row(w + (size_t)i * (size_t)n, x, n);
}

/* The rotation angles of position pos: cos in table[0, GQ_HEAD_DIM / 2),
 * sin after.  At long contexts the angle pos * freq is large, and a float
 * angle would lose the low bits that matter: hosted code computes it in
 * double; freestanding code, which may have no double FPU, counts in
 * fixed-point turns (pos * step mod 2^64 is exact) and takes the sine of
 * the fraction. */
#if GQ_ROPE_TABLE
/* gq_rope: every position's table, computed by gqac (--rope-table). */
static void rope_table(float *table, int pos) {
    int i;
    for (i = 0; i < GQ_HEAD_DIM; i++)
        table[i] = gq_rope.f[(size_t)pos * GQ_HEAD_DIM + (size_t)i];
}
#elif GQ_FREESTANDING
static void rope_table(float *table, int pos) {
    static const uint64_t steps[GQ_HEAD_DIM / 2] = GQ_ROPE_STEPS;
    int i;
    for (i = 0; i < GQ_HEAD_DIM / 2; i++) {
        uint64_t phase = (uint64_t)pos * steps[i];
        uint32_t turn24 = (uint32_t)(((phase >> 39) + 1) >> 1) & 0xffffffu;
        gq_sincos_turn((float)turn24 * (1.0f / 16777216.0f), &table[GQ_HEAD_DIM / 2 + i], &table[i]);
    }
}
#else
static void rope_table(float *table, int pos) {
    int i;
    for (i = 0; i < GQ_HEAD_DIM / 2; i++) {
        double freq = pow(GQ_ROPE_THETA, -(double)(2 * i) / (double)GQ_HEAD_DIM);
        double angle = (double)pos * freq;
        table[i] = (float)cos(angle);
        table[GQ_HEAD_DIM / 2 + i] = (float)sin(angle);
    }
}
#endif

/* v (n_heads, GQ_HEAD_DIM) rotated in place: adjacent pairs (2i, 2i+1) of
 * each head by the angles in table, as Meta's Llama and llama2.c do. */
static void rope(float *v, int n_heads, const float *table) {
    int h, i;
    for (h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * GQ_HEAD_DIM;
        for (i = 0; i < GQ_HEAD_DIM / 2; i++) {
            float c = table[i], s = table[GQ_HEAD_DIM / 2 + i];
            float a = p[2 * i], b = p[2 * i + 1];
            p[2 * i] = a * c - b * s;
            p[2 * i + 1] = a * s + b * c;
        }
    }
}

/* gate (n,), up (n,) -> gate (n,) = silu(gate) * up. */
static void swiglu(float *gate, const float *up, int n) {
    int i;
    for (i = 0; i < n; i++)
        gate[i] = gate[i] / (1.0f + GQ_EXPF(-gate[i])) * up[i];
}

/* dst (n,) = src (n,): a loop, not memcpy, which freestanding code lacks. */
static void copy_floats(float *dst, const float *src, int n) {
    int i;
    for (i = 0; i < n; i++)
        dst[i] = src[i];
}

/* x (n,) += y (n,). */
static void add_inplace(float *x, const float *y, int n) {
    int i;
    for (i = 0; i < n; i++)
        x[i] += y[i];
}
