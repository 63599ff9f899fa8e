/*
 * kernels.c: the kernels of the forward pass other than attention:
 * RMSNorm, matrix products (one token, or a block of tokens), RoPE, SwiGLU.
 *
 * Holes: GQ_ACC_ROW, GQ_TILE_ROWS, GQ_TILE_TOKENS, GQ_ACC_TILE, GQ_HEAD_DIM,
 * GQ_ROPE_FREQS, GQ_ROPE_HALVES, GQ_NORM_EPS, GQ_FREESTANDING, GQ_ROPE_STEPS and
 * GQ_ROPE_TABLE (shape.h).
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

/* Columns of W packed at a time, GQ_TILE_ROWS rows of them on the stack
 * (2 KB for 4 rows).  A multiple of GQ_ACC_TILE; small enough that the
 * tiny test models' FFN (hidden 176) takes two chunks, the last partial. */
#define GQ_PACK_COLS 128

/* matmul's operands are packed so that each GQ_ACC_TILE columns of a tile's
 * rows (or tokens) lie together: gcc vectorizes the tile's independent
 * accumulators only when the loads of a step come from one array each. */

/* Rows of W (GQ_TILE_ROWS, row stride n), columns j0 .. j0 + kc -> wp
 * (kc / GQ_ACC_TILE, GQ_TILE_ROWS, GQ_ACC_TILE). */
static void pack_rows(float *wp, const float *w, int n, int j0, int kc) {
    int j, r, u;
    for (j = 0; j < kc; j += GQ_ACC_TILE)
        for (r = 0; r < GQ_TILE_ROWS; r++)
            for (u = 0; u < GQ_ACC_TILE; u++)
                wp[(size_t)j * GQ_TILE_ROWS + (size_t)(r * GQ_ACC_TILE + u)] =
                    w[(size_t)r * (size_t)n + (size_t)(j0 + j + u)];
}

/* X (tiles * GQ_TILE_TOKENS, n) -> xp (tiles, n / GQ_ACC_TILE,
 * GQ_TILE_TOKENS, GQ_ACC_TILE). */
static void pack_tokens(float *xp, const float *x, int n, int tiles) {
    int i, j, t, u;
    for (i = 0; i < tiles; i++)
        for (j = 0; j < n; j += GQ_ACC_TILE)
            for (t = 0; t < GQ_TILE_TOKENS; t++)
                for (u = 0; u < GQ_ACC_TILE; u++)
                    xp[((size_t)i * (size_t)n + (size_t)j) * GQ_TILE_TOKENS +
                       (size_t)(t * GQ_ACC_TILE + u)] =
                        x[((size_t)i * GQ_TILE_TOKENS + (size_t)t) * (size_t)n + (size_t)(j + u)];
}

/* The register tile: kc packed columns of GQ_TILE_ROWS rows (wp) against
 * GQ_TILE_TOKENS tokens (xp) -> added to out (GQ_TILE_TOKENS, row stride
 * d): out[t * d + r] += W row r . X row t.  Every (row, token) pair has
 * GQ_ACC_TILE independent accumulators, a vector once gcc vectorizes the
 * unrolled lanes; each load of W serves GQ_TILE_TOKENS tokens, each load
 * of X GQ_TILE_ROWS rows.  kc % GQ_ACC_TILE == 0. */
static void matmul_tile(float *out, const float *wp, const float *xp, int kc, int d) {
    float acc[GQ_TILE_ROWS][GQ_TILE_TOKENS][GQ_ACC_TILE];
    int j;
    for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
        for (int t = 0; t < GQ_TILE_TOKENS; t++) { /* gqac:unroll */
            for (int u = 0; u < GQ_ACC_TILE; u++) { /* gqac:unroll */
                acc[r][t][u] = 0.0f;
            }
        }
    }
    for (j = 0; j < kc; j += GQ_ACC_TILE) {
        const float *a = wp + (size_t)j * GQ_TILE_ROWS, *c = xp + (size_t)j * GQ_TILE_TOKENS;
        for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
            for (int t = 0; t < GQ_TILE_TOKENS; t++) { /* gqac:unroll */
                for (int u = 0; u < GQ_ACC_TILE; u++) { /* gqac:unroll */
                    acc[r][t][u] += a[r * GQ_ACC_TILE + u] * c[t * GQ_ACC_TILE + u];
                }
            }
        }
    }
    for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
        for (int t = 0; t < GQ_TILE_TOKENS; t++) { /* gqac:unroll */
            /* a tree of halves: vector adds, not GQ_ACC_TILE - 1 scalar ones */
            for (int w = GQ_ACC_TILE / 2; w > 0; w /= 2) {
                for (int u = 0; u < w; u++) {
                    acc[r][t][u] += acc[r][t][u + w];
                }
            }
            out[(size_t)t * (size_t)d + (size_t)r] += acc[r][t][0];
        }
    }
}

/* W (d, n) @ X (b, n)^T -> out (b, d), X and out one token per row.  Tiles
 * of GQ_TILE_ROWS rows go across threads.  A tile's rows are packed
 * GQ_PACK_COLS columns at a time and meet every whole group of
 * GQ_TILE_TOKENS tokens (packed once, into pack: b * n floats, or NULL
 * when b < GQ_TILE_TOKENS) while they are in L1, so each row of W comes
 * from memory once per call, not once per token.  Tokens and rows left
 * over take one dot_row each (all of them when b < GQ_TILE_TOKENS, which
 * makes b = 1 exactly matvec).  n % GQ_ACC_ROW == 0, n % GQ_ACC_TILE == 0. */
static void matmul(float *out, const float *w, const float *x, int n, int d, int b, float *pack,
                   int threads) {
    int i, tiles = (d + GQ_TILE_ROWS - 1) / GQ_TILE_ROWS, whole = b / GQ_TILE_TOKENS * GQ_TILE_TOKENS;
    (void)threads;
    if (whole > 0)
        pack_tokens(pack, x, n, whole / GQ_TILE_TOKENS);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if((double)n * d * b >= GQ_PARALLEL_MIN)")
    for (i = 0; i < tiles; i++) {
        float wp[GQ_TILE_ROWS * GQ_PACK_COLS];
        int row = i * GQ_TILE_ROWS, end = d - row < GQ_TILE_ROWS ? d : row + GQ_TILE_ROWS;
        int t = 0, r, j0, kc;
        if (end - row == GQ_TILE_ROWS && whole > 0) {
            for (t = 0; t < whole; t++)
                for (r = row; r < end; r++)
                    out[(size_t)t * (size_t)d + (size_t)r] = 0.0f;
            for (j0 = 0; j0 < n; j0 += kc) {
                kc = n - j0 < GQ_PACK_COLS ? n - j0 : GQ_PACK_COLS;
                pack_rows(wp, w + (size_t)row * (size_t)n, n, j0, kc);
                for (t = 0; t < whole; t += GQ_TILE_TOKENS) /* pack_tokens' tile t / GQ_TILE_TOKENS */
                    matmul_tile(out + (size_t)t * (size_t)d + (size_t)row, wp,
                                pack + (size_t)t * (size_t)n + (size_t)j0 * GQ_TILE_TOKENS, kc, d);
            }
            t = whole;
        }
        for (; t < b; t++)
            for (r = row; r < end; r++)
                out[(size_t)t * (size_t)d + (size_t)r] =
                    dot_row(w + (size_t)r * (size_t)n, x + (size_t)t * (size_t)n, n);
    }
}

/* W (d, n) @ x (n,) -> out (d,), rows across threads; W streamed once.
 * One token of matmul: every row a dot_row. */
static void matvec(float *out, const float *w, const float *x, int n, int d, int threads) {
    matmul(out, w, x, n, d, 1, NULL, threads);
}

/* The rotation angles of position pos: cos in table[0, GQ_HEAD_DIM / 2),
 * sin after.  At long contexts the angle pos * freq is large, and a float
 * angle would lose the low bits that matter: hosted code computes it in
 * double; freestanding code, which may have no double FPU, counts in
 * fixed-point turns (pos * step mod 2^64 is exact) and takes the sine of
 * the fraction. */
/* Computed by gqac in double precision (compiler/ir.c, ir_rope_freq). */
static const double gq_rope_freqs[GQ_HEAD_DIM / 2] = GQ_ROPE_FREQS;

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
        double angle = (double)pos * gq_rope_freqs[i];
        table[i] = (float)cos(angle);
        table[GQ_HEAD_DIM / 2 + i] = (float)sin(angle);
    }
}
#endif

/* v (n_heads, GQ_HEAD_DIM) rotated in place by the angles in table, pair i
 * of each head being (2i, 2i+1) as Meta's Llama and llama2.c store q and
 * k, or (i, i + GQ_HEAD_DIM/2) as Hugging Face does (GQ_ROPE_HALVES). */
#if GQ_ROPE_HALVES
#define GQ_PAIR_A(i) (i)
#define GQ_PAIR_B(i) ((i) + GQ_HEAD_DIM / 2)
#else
#define GQ_PAIR_A(i) (2 * (i))
#define GQ_PAIR_B(i) (2 * (i) + 1)
#endif
static void rope(float *v, int n_heads, const float *table) {
    int h, i;
    for (h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * GQ_HEAD_DIM;
        for (i = 0; i < GQ_HEAD_DIM / 2; i++) {
            float c = table[i], s = table[GQ_HEAD_DIM / 2 + i];
            float a = p[GQ_PAIR_A(i)], b = p[GQ_PAIR_B(i)];
            p[GQ_PAIR_A(i)] = a * c - b * s;
            p[GQ_PAIR_B(i)] = a * s + b * c;
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
