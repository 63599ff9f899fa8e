/*
 * train.c: the training step (gqac --train): a batch of rows of tokens
 * forward with the activations each layer's backward needs saved, the
 * next-token cross-entropy, then backward to the gradient of every
 * parameter; and AdamW.  The parameters are one flat f32 array, the packed
 * weights, each tensor where gq_tensors says (gqa_api.h's gqa_train_api).
 *
 * Every product is gemm below, a register tile as kernels.c's matmul_tile
 * but over all batch * seq rows: Y = X W^T (W transposed first), dX = dY W
 * and dW = dY^T X, rows of the output across threads, each element summed
 * in one fixed order, so results do not depend on the thread count (1 and
 * 2 threads give the same bits).  RoPE, SwiGLU and the small vector steps
 * are kernels.c's and forward.c's; RMSNorm is its own, which keeps each
 * row's 1 / rms for backward.  Attention saves
 * each row's log-sum-exp, not its probabilities (batch * heads * seq^2
 * floats a layer), and backward recomputes the scores from q and k, one
 * work item per (row, KV head) so that a K/V head's gradient, which sums
 * over its group's query heads, has one writer.
 *
 * Holes: those of forward.c, which this file follows in the generated
 * code; like forward.c it needs gqac's tensor table (gq_tensors) to compile.
 */
#include "forward.c" /* gqac:drop */

#include <math.h>
#include <stdint.h>
#include <string.h>

/* A tensor of the flat parameters (or of its gradient): floats. */
#define GQ_PARAM(p, name, l) ((p) + gq_tensors[GQ_T_##name + (l)].offset / sizeof(float))

/* What layer l's backward reads, saved by forward: N = batch * seq rows each. */
typedef struct {
    float *x;    /* (N, dim) the layer's input (the residual stream) */
    float *r1;   /* (N) attention RMSNorm's 1 / rms */
    float *q;    /* (N, q_dim) after bias and RoPE */
    float *k;    /* (N, kv_dim) after bias and RoPE */
    float *v;    /* (N, kv_dim) */
    float *att;  /* (N, q_dim) attention's output */
    float *lse;  /* (N, heads) each score row's log-sum-exp */
    float *xmid; /* (N, dim) the residual stream after attention */
    float *r2;   /* (N) FFN RMSNorm's 1 / rms */
    float *h1;   /* (N, hidden) the gate before SiLU */
    float *h3;   /* (N, hidden) up */
} TrainLayer;

struct gqa_trainer {
    int batch, seq, threads;
    TrainLayer layer[GQ_LAYERS];
    float *xfin;   /* (N, dim) the last layer's output */
    float *rfin;   /* (N) the final RMSNorm's 1 / rms */
    float *logits; /* (N, vocab); backward: d loss / d logits */
    double *nll;   /* (N) each prediction's cross-entropy */
    /* scratch */
    float *xn;   /* (N, dim) a normalized input */
    float *hb;   /* (N, hidden) silu(h1) * h3 */
    float *dh1;  /* (N, hidden) */
    float *dh3;  /* (N, hidden) */
    float *dx;   /* (N, dim) d loss / d the residual stream */
    float *dxn;  /* (N, dim) d loss / d a normalized input; forward: a block's output */
    float *datt; /* (N, q_dim) */
    float *dq;   /* (N, q_dim) */
    float *dk;   /* (N, kv_dim) */
    float *dv;   /* (N, kv_dim) */
    float *rope; /* (seq, head_dim) each position's cos and sin */
    float *wt;   /* (the largest matrix) a weight matrix transposed */
    float *kt;   /* (batch * kv_heads, 2 * head_dim * seq + 2 * seq) attention's transposed K, V and rows */
};

/* The arena: the trainer, then each buffer on a 64-byte line.  at counts
 * bytes (and total the same in double, to catch an overflow); with base
 * NULL nothing is laid out, only counted. */
typedef struct {
    unsigned char *base;
    size_t at;
    double total;
} TrainArena;

static float *train_take(TrainArena *a, double floats) {
    /* past SIZE_MAX / 8 floats total says no; the cut keeps the cast defined */
    size_t n = floats <= 0 ? 0 : floats < (double)(SIZE_MAX / 8) ? (size_t)floats : SIZE_MAX / 8;
    float *p = a->base ? (float *)(void *)(a->base + a->at) : NULL;
    size_t bytes = GQ_ROUND16(n) * sizeof(float);
    a->at += bytes;
    a->total += (floats + 16) * sizeof(float);
    return p;
}

#define GQ_WIDEST (GQ_HIDDEN > GQ_Q_DIM ? (GQ_HIDDEN > GQ_DIM ? GQ_HIDDEN : GQ_DIM) : \
                   (GQ_Q_DIM > GQ_DIM ? GQ_Q_DIM : GQ_DIM))
/* Positions of att_dots' register tile; the scratch rows are whole tiles. */
#define GQ_ATT_TILE 16
#define GQ_ATT_LD(seq) (((seq) + GQ_ATT_TILE - 1) / GQ_ATT_TILE * GQ_ATT_TILE)
#define GQ_TRAINER_BYTES ((sizeof(struct gqa_trainer) + 63) / 64 * 64)

static void train_lay_out(TrainArena *a, gqa_trainer *t, int batch, int seq) {
    double n = (double)batch * seq;
    int l;
    a->at = GQ_TRAINER_BYTES;
    a->total = (double)GQ_TRAINER_BYTES;
    for (l = 0; l < GQ_LAYERS; l++) {
        TrainLayer *s = &t->layer[l];
        s->x = train_take(a, n * GQ_DIM);
        s->r1 = train_take(a, n);
        s->q = train_take(a, n * GQ_Q_DIM);
        s->k = train_take(a, n * GQ_KV_DIM);
        s->v = train_take(a, n * GQ_KV_DIM);
        s->att = train_take(a, n * GQ_Q_DIM);
        s->lse = train_take(a, n * GQ_HEADS);
        s->xmid = train_take(a, n * GQ_DIM);
        s->r2 = train_take(a, n);
        s->h1 = train_take(a, n * GQ_HIDDEN);
        s->h3 = train_take(a, n * GQ_HIDDEN);
    }
    t->xfin = train_take(a, n * GQ_DIM);
    t->rfin = train_take(a, n);
    t->logits = train_take(a, n * GQ_VOCAB);
    t->nll = (double *)(void *)train_take(a, 2 * n);
    t->xn = train_take(a, n * GQ_DIM);
    t->hb = train_take(a, n * GQ_HIDDEN);
    t->dh1 = train_take(a, n * GQ_HIDDEN);
    t->dh3 = train_take(a, n * GQ_HIDDEN);
    t->dx = train_take(a, n * GQ_DIM);
    t->dxn = train_take(a, n * GQ_DIM);
    t->datt = train_take(a, n * GQ_Q_DIM);
    t->dq = train_take(a, n * GQ_Q_DIM);
    t->dk = train_take(a, n * GQ_KV_DIM);
    t->dv = train_take(a, n * GQ_KV_DIM);
    t->rope = train_take(a, (double)seq * GQ_HEAD_DIM);
    t->wt = train_take(a, (double)GQ_WIDEST * (GQ_VOCAB > GQ_WIDEST ? GQ_VOCAB : GQ_WIDEST));
    t->kt = train_take(a, (double)batch * GQ_KV_HEADS * (2.0 * GQ_HEAD_DIM + 2.0) * GQ_ATT_LD(seq));
}

static size_t train_arena_bytes(int batch, int seq) {
    struct gqa_trainer scratch_t;
    TrainArena a = {NULL, 0, 0};
    if (batch < 1 || seq < 1 || seq > GQ_CONTEXT)
        return 0;
    train_lay_out(&a, &scratch_t, batch, seq);
    return a.total < (double)(SIZE_MAX / 2) ? a.at : 0;
}

static int train_init(gqa_trainer **out, void *arena, size_t arena_bytes, int batch, int seq) {
    size_t need = train_arena_bytes(batch, seq);
    TrainArena a;
    gqa_trainer *t;
    int p;
    if (!out)
        return GQA_EARG;
    *out = NULL;
    if (!need)
        return GQA_EARG;
    if (!arena || arena_bytes < need || (uintptr_t)arena % 64 != 0)
        return GQA_EARENA;
    t = (gqa_trainer *)arena;
    a.base = arena;
    train_lay_out(&a, t, batch, seq);
    t->batch = batch;
    t->seq = seq;
    t->threads = 0;
    for (p = 0; p < seq; p++)
        rope_table(t->rope + (size_t)p * GQ_HEAD_DIM, p);
    *out = t;
    return GQA_OK;
}

static void train_set_threads(gqa_trainer *t, int n) {
    if (t)
        t->threads = n;
}

static int train_threads(const gqa_trainer *t) {
#if GQ_OPENMP
    return t->threads > 0 ? t->threads : omp_get_max_threads();
#else
    return t->threads > 0 ? t->threads : 1;
#endif
}

/* ---- products ---- */

/* The register tile of gemm: GQ_TILE_ROWS rows of C by GQ_TILE_VECS vectors
 * of GQ_LANES columns, as kernels.c's matmul_tile: each step along k
 * broadcasts one element of A per row against a vector of B's row k, so
 * no horizontal sums, and the accumulators stay in registers (kernels.c's
 * gq_lanes). */
#define GQ_GEMM_COLS (GQ_TILE_VECS * GQ_LANES)
/* Steps along k per pass over the output: a panel of B (GQ_GEMM_K rows)
 * stays in L2 while every row tile meets it. */
#define GQ_GEMM_K 256

/* C (GQ_TILE_ROWS, GQ_GEMM_COLS; row stride ldc) += A (rows, kn) B (kn,
 * cols; row stride ldb), element (r, k) of A at a[r * ar + k * ak]. */
static void gemm_tile(float *c, size_t ldc, const float *a, size_t ar, size_t ak, const float *b, size_t ldb,
                      int kn, int overwrite) {
    gq_lanes acc[GQ_TILE_ROWS][GQ_TILE_VECS], bv[GQ_TILE_VECS];
    int k;
    for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
        for (int v = 0; v < GQ_TILE_VECS; v++) { /* gqac:unroll */
            acc[r][v] = overwrite ? lanes_zero() : lanes_load(c + (size_t)r * ldc + (size_t)(v * GQ_LANES));
        }
    }
    for (k = 0; k < kn; k++) {
        const float *bk = b + (size_t)k * ldb;
        for (int v = 0; v < GQ_TILE_VECS; v++) { /* gqac:unroll */
            bv[v] = lanes_load(bk + v * GQ_LANES);
        }
        for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
            float ark = a[(size_t)r * ar + (size_t)k * ak];
            for (int v = 0; v < GQ_TILE_VECS; v++) { /* gqac:unroll */
                acc[r][v] = lanes_fma(acc[r][v], ark, bv[v]);
            }
        }
    }
    for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
        for (int v = 0; v < GQ_TILE_VECS; v++) { /* gqac:unroll */
            lanes_store(c + (size_t)r * ldc + (size_t)(v * GQ_LANES), acc[r][v]);
        }
    }
}

/* The same for a tile cut short by the edge of C: mr rows, nc columns.
 * Each element's sum runs over k in the same order as gemm_tile's. */
static void gemm_edge(float *c, size_t ldc, const float *a, size_t ar, size_t ak, const float *b, size_t ldb,
                      int kn, int mr, int nc, int overwrite) {
    int r, k, j;
    for (r = 0; r < mr; r++) {
        float *cr = c + (size_t)r * ldc;
        for (j = 0; overwrite && j < nc; j++)
            cr[j] = 0.0f;
        for (k = 0; k < kn; k++) {
            float ark = a[(size_t)r * ar + (size_t)k * ak];
            const float *bk = b + (size_t)k * ldb;
            for (j = 0; j < nc; j++)
                cr[j] += ark * bk[j];
        }
    }
}

/* C (m, n; row stride ldc) += A (m, kn) B (kn, n; row stride ldb), or
 * = when overwrite is set, A's element (r, k) at a[r * ar + k * ak]: dX =
 * dY W (A = dY, ar = its width, ak = 1) and dW = dY^T X (A = dY
 * transposed: ar = 1, ak = its width).  Tiles of rows across threads, k
 * in panels of GQ_GEMM_K. */
static void gemm(float *c, size_t ldc, const float *a, size_t ar, size_t ak, const float *b, size_t ldb,
                 int m, int n, int kn, int overwrite, int threads) {
    int tiles = (m + GQ_TILE_ROWS - 1) / GQ_TILE_ROWS;
    (void)threads;
    GQ_OMP("omp parallel num_threads(threads) if((double)m * n * kn >= GQ_PARALLEL_MIN)")
    {
        int k0, i;
        for (k0 = 0; k0 < kn; k0 += GQ_GEMM_K) {
            int kb = kn - k0 < GQ_GEMM_K ? kn - k0 : GQ_GEMM_K;
            GQ_OMP("omp for schedule(static)")
            for (i = 0; i < tiles; i++) {
                int r0 = i * GQ_TILE_ROWS, mr = m - r0 < GQ_TILE_ROWS ? m - r0 : GQ_TILE_ROWS, j;
                const float *ai = a + (size_t)r0 * ar + (size_t)k0 * ak, *bk = b + (size_t)k0 * ldb;
                float *ci = c + (size_t)r0 * ldc;
                for (j = 0; j < n; j += GQ_GEMM_COLS) {
                    int nc = n - j < GQ_GEMM_COLS ? n - j : GQ_GEMM_COLS;
                    if (mr == GQ_TILE_ROWS && nc == GQ_GEMM_COLS)
                        gemm_tile(ci + j, ldc, ai, ar, ak, bk + j, ldb, kb, overwrite && k0 == 0);
                    else
                        gemm_edge(ci + j, ldc, ai, ar, ak, bk + j, ldb, kb, mr, nc, overwrite && k0 == 0);
                }
            }
        }
    }
}

/* dX (N, n) = dY (N, d) W (d, n), or += when add is set. */
static void gemm_dx(float *dx, const float *dy, const float *w, int rows, int d, int n, int add, int threads) {
    gemm(dx, (size_t)n, dy, (size_t)d, 1, w, (size_t)n, rows, n, d, !add, threads);
}

/* dW (d, n) += dY (N, d)^T X (N, n) (a tied embedding's gradient has two parts). */
static void gemm_dw(float *dw, const float *dy, const float *x, int rows, int d, int n, int threads) {
    gemm(dw, (size_t)n, dy, 1, (size_t)d, x, (size_t)n, d, n, rows, 0, threads);
}

/* Y (N, d) = X (N, n) W (d, n)^T: W transposed into t->wt, then gemm
 * (which ran the forward products ~2x faster than kernels.c's matmul
 * over blocks of GQ_BATCH tokens: its tiles suit a block, not N rows). */
static void train_matmul(gqa_trainer *t, float *y, const float *w, const float *x, int rows, int n, int d,
                         int threads) {
    int r, c;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) private(c) if((double)d * n >= GQ_PARALLEL_MIN)")
    for (r = 0; r < d; r++)
        for (c = 0; c < n; c++)
            t->wt[(size_t)c * (size_t)d + (size_t)r] = w[(size_t)r * (size_t)n + (size_t)c];
    gemm(y, (size_t)d, x, (size_t)n, 1, t->wt, (size_t)d, rows, d, n, 1, threads);
}

/* ---- per-token steps ---- */

/* Whether rows of width floats go across threads (as forward.c's blocks). */
#define GQ_ROWS_PARALLEL(rows, width) ((double)(rows) * (width) * 4 >= GQ_PARALLEL_MIN)

/* xn = RMSNorm(x) * weight, row by row, and each row's 1 / rms in r. */
static void norm_rows(float *xn, float *r, const float *x, const float *weight, int rows, int threads) {
    int i;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_DIM))")
    for (i = 0; i < rows; i++) {
        const float *xi = x + (size_t)i * GQ_DIM;
        float ss = 0.0f, scale;
        int j;
        for (j = 0; j < GQ_DIM; j++)
            ss += xi[j] * xi[j];
        scale = 1.0f / sqrtf(ss / GQ_DIM + GQ_NORM_EPS);
        r[i] = scale;
        for (j = 0; j < GQ_DIM; j++)
            xn[(size_t)i * GQ_DIM + j] = weight[j] * (scale * xi[j]);
    }
}

/* The same from saved 1 / rms (backward recomputes rather than saves xn). */
static void renorm_rows(float *xn, const float *r, const float *x, const float *weight, int rows,
                        int threads) {
    int i;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_DIM))")
    for (i = 0; i < rows; i++) {
        int j;
        for (j = 0; j < GQ_DIM; j++)
            xn[(size_t)i * GQ_DIM + j] = weight[j] * (r[i] * x[(size_t)i * GQ_DIM + j]);
    }
}

/* Backward of y = w * r * x with r = 1 / sqrt(mean(x^2) + eps), given
 * dy: dx += r (w dy) - r^3 / dim * x * sum(w dy x); dw += sum over rows
 * of dy r x (columns across threads, rows in order: one writer each). */
static void norm_back(float *dx, float *dw, const float *dy, const float *x, const float *r,
                      const float *weight, int rows, int threads) {
    int i;
    (void)threads;
    GQ_OMP("omp parallel num_threads(threads) if(GQ_ROWS_PARALLEL(rows, GQ_DIM))")
    {
        int j;
        GQ_OMP("omp for schedule(static)")
        for (i = 0; i < rows; i++) {
            const float *xi = x + (size_t)i * GQ_DIM, *dyi = dy + (size_t)i * GQ_DIM;
            float *dxi = dx + (size_t)i * GQ_DIM;
            float dot = 0.0f, c;
            for (j = 0; j < GQ_DIM; j++)
                dot += weight[j] * dyi[j] * xi[j];
            c = r[i] * r[i] * r[i] * dot / GQ_DIM;
            for (j = 0; j < GQ_DIM; j++)
                dxi[j] += r[i] * weight[j] * dyi[j] - c * xi[j];
        }
        GQ_OMP("omp for schedule(static)")
        for (j = 0; j < GQ_DIM; j++) {
            float sum = 0.0f;
            int k;
            for (k = 0; k < rows; k++)
                sum += dy[(size_t)k * GQ_DIM + j] * r[k] * x[(size_t)k * GQ_DIM + j];
            dw[j] += sum;
        }
    }
}

/* dbias (n,) += the sum of dy's rows (rows, n), in row order. */
static void bias_back(float *dbias, const float *dy, int rows, int n) {
    int i, j;
    for (i = 0; i < rows; i++)
        for (j = 0; j < n; j++)
            dbias[j] += dy[(size_t)i * (size_t)n + (size_t)j];
}

/* v (n_heads, GQ_HEAD_DIM) rotated back by the angles in table (rope's
 * inverse and its transpose: the gradient through it). */
static void rope_back(float *v, int n_heads, const float *table) {
    int h, i;
    for (h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * GQ_HEAD_DIM;
        for (i = 0; i < GQ_HEAD_DIM / 2; i++) {
            float c = table[i], s = table[GQ_HEAD_DIM / 2 + i];
            float a = p[GQ_PAIR_A(i)], b = p[GQ_PAIR_B(i)];
            p[GQ_PAIR_A(i)] = a * c + b * s;
            p[GQ_PAIR_B(i)] = b * c - a * s;
        }
    }
}

/* sigmoid(g) without overflow: with e = e^-|g| (never above 1), 1 / (1 +
 * e) for g >= 0 and e / (1 + e) below; the choice made on the sign bit,
 * as kernels.c's swiglu, so that loops of it vectorize. */
static float train_sigmoid(float g) {
    union {
        float f;
        uint32_t u;
    } x, num;
    uint32_t negative;
    float e;
    x.f = g;
    negative = 0u - (x.u >> 31);
    x.u |= 0x80000000u;
    num.f = e = gq_exp_neg(x.f);
    num.u = (num.u & negative) | (0x3f800000u & ~negative); /* e, or 1.0f */
    return num.f / (1.0f + e);
}

/* ---- attention ---- */


/* Work item (row b, KV head g)'s scratch: K and V transposed (head_dim,
 * ld), a row of scores and one of their gradients (ld), ld being seq
 * rounded up to a whole tile of att_dots. */
typedef struct {
    float *kt, *vt, *score, *dp;
    int ld;
} AttScratch;

static AttScratch att_scratch(const gqa_trainer *t, int item) {
    AttScratch s;
    size_t ld = (size_t)GQ_ATT_LD(t->seq);
    s.ld = (int)ld;
    s.kt = t->kt + (size_t)item * (2 * GQ_HEAD_DIM + 2) * ld;
    s.vt = s.kt + GQ_HEAD_DIM * ld;
    s.score = s.vt + GQ_HEAD_DIM * ld;
    s.dp = s.score + ld;
    return s;
}

/* rows (seq, head_dim; row stride GQ_KV_DIM) -> out (head_dim, ld), zeros past seq. */
static void transpose_head(float *out, const float *rows, int seq, int ld) {
    int p, d;
    for (p = 0; p < ld; p++)
        for (d = 0; d < GQ_HEAD_DIM; d++)
            out[(size_t)d * (size_t)ld + (size_t)p] = p < seq ? rows[(size_t)p * GQ_KV_DIM + (size_t)d] : 0.0f;
}

/* out[s] = scale * x . column s of t (head_dim, ld) for s < n, a tile of
 * GQ_ATT_TILE columns at a time held in registers across head_dim (the
 * tile past n, up to ld, gets the padding's dots). */
static void att_dots(float *restrict out, const float *restrict x, const float *restrict t, int ld, int n,
                     float scale) {
    int s0, d, u;
    for (s0 = 0; s0 < n; s0 += GQ_ATT_TILE) {
        float acc[GQ_ATT_TILE];
        for (u = 0; u < GQ_ATT_TILE; u++)
            acc[u] = 0.0f;
        for (d = 0; d < GQ_HEAD_DIM; d++) {
            const float *td = t + (size_t)d * (size_t)ld + (size_t)s0;
            float xd = x[d] * scale;
            for (u = 0; u < GQ_ATT_TILE; u++)
                acc[u] += xd * td[u];
        }
        for (u = 0; u < GQ_ATT_TILE; u++)
            out[s0 + u] = acc[u];
    }
}

/* score[0..pos] = q . K's columns * scale, masked positions -FLT_MAX
 * (those from the sinks up to the window's start). */
static void att_scores(float *score, const float *q, const float *kt, int ld, int pos, int window) {
    int s;
    att_dots(score, q, kt, ld, pos + 1, GQ_ATT_SCALE);
    if (window > 0)
        for (s = GQ_SINKS; s <= pos - window; s++)
            score[s] = -FLT_MAX;
}

/* Lanes of attention's sums over positions: independent partial sums, so
 * that the adds do not wait on each other (and vectorize). */
#define GQ_ATT_PART 16

/* The largest of x[0..n). */
static float att_max(const float *x, int n) {
    float part[GQ_ATT_PART], m;
    int s, u;
    for (u = 0; u < GQ_ATT_PART; u++)
        part[u] = -FLT_MAX;
    for (s = 0; s + GQ_ATT_PART <= n; s += GQ_ATT_PART)
        for (u = 0; u < GQ_ATT_PART; u++)
            part[u] = x[s + u] > part[u] ? x[s + u] : part[u];
    for (; s < n; s++)
        part[0] = x[s] > part[0] ? x[s] : part[0];
    m = part[0];
    for (u = 1; u < GQ_ATT_PART; u++)
        m = part[u] > m ? part[u] : m;
    return m;
}

/* x[s] = e^(x[s] - shift) for s < n; their sum. */
static float att_exp(float *x, int n, float shift) {
    float part[GQ_ATT_PART], sum = 0.0f;
    int s, u;
    for (u = 0; u < GQ_ATT_PART; u++)
        part[u] = 0.0f;
    for (s = 0; s + GQ_ATT_PART <= n; s += GQ_ATT_PART)
        for (u = 0; u < GQ_ATT_PART; u++) {
            x[s + u] = gq_exp_neg(x[s + u] - shift);
            part[u] += x[s + u];
        }
    for (; s < n; s++) {
        x[s] = gq_exp_neg(x[s] - shift);
        part[0] += x[s];
    }
    for (u = 0; u < GQ_ATT_PART; u++)
        sum += part[u];
    return sum;
}

/* out (head_dim) = sum over s < n of w[s] rows[s] (row stride
 * GQ_KV_DIM), in four independent chains (positions s mod 4) so that
 * the multiply-adds do not wait on each other; the loop over head_dim
 * holds the four statements, which gcc vectorizes whole. */
static void att_weigh(float *restrict out, const float *restrict w, const float *restrict rows, int n) {
    float a0[GQ_HEAD_DIM], a1[GQ_HEAD_DIM], a2[GQ_HEAD_DIM], a3[GQ_HEAD_DIM];
    int s, d;
    for (d = 0; d < GQ_HEAD_DIM; d++)
        a0[d] = a1[d] = a2[d] = a3[d] = 0.0f;
    for (s = 0; s + 4 <= n; s += 4) {
        const float *r = rows + (size_t)s * GQ_KV_DIM;
        float w0 = w[s], w1 = w[s + 1], w2 = w[s + 2], w3 = w[s + 3];
        for (d = 0; d < GQ_HEAD_DIM; d++) {
            a0[d] += w0 * r[d];
            a1[d] += w1 * r[GQ_KV_DIM + d];
            a2[d] += w2 * r[2 * GQ_KV_DIM + d];
            a3[d] += w3 * r[3 * GQ_KV_DIM + d];
        }
    }
    for (; s < n; s++)
        for (d = 0; d < GQ_HEAD_DIM; d++)
            a0[d] += w[s] * rows[(size_t)s * GQ_KV_DIM + (size_t)d];
    for (d = 0; d < GQ_HEAD_DIM; d++)
        out[d] = (a0[d] + a1[d]) + (a2[d] + a3[d]);
}

/* Forward attention of row b's KV head g's group at layer l: att and lse. */
static void att_forward_item(const gqa_trainer *t, const TrainLayer *L, int window, int b, int g, AttScratch sc) {
    int seq = t->seq, h, pos, d;
    size_t row0 = (size_t)b * (size_t)seq;
    const float *vrows = L->v + row0 * GQ_KV_DIM + (size_t)g * GQ_HEAD_DIM;
    transpose_head(sc.kt, L->k + row0 * GQ_KV_DIM + (size_t)g * GQ_HEAD_DIM, seq, sc.ld);
    for (h = g * GQ_GROUP; h < (g + 1) * GQ_GROUP; h++) {
        for (pos = 0; pos < seq; pos++) {
            size_t row = row0 + (size_t)pos;
            const float *q = L->q + row * GQ_Q_DIM + (size_t)h * GQ_HEAD_DIM;
            float *o = L->att + row * GQ_Q_DIM + (size_t)h * GQ_HEAD_DIM;
            float m, sum;
            att_scores(sc.score, q, sc.kt, sc.ld, pos, window);
            m = att_max(sc.score, pos + 1);
            sum = att_exp(sc.score, pos + 1, m);
            att_weigh(o, sc.score, vrows, pos + 1);
            for (d = 0; d < GQ_HEAD_DIM; d++)
                o[d] /= sum;
            L->lse[row * GQ_HEADS + (size_t)h] = m + logf(sum);
        }
    }
}

/* dk_s += ds_s q and dv_s += p_s da for s < n (rows of stride
 * GQ_KV_DIM): restrict, so that the rows' updates vectorize. */
static void att_kv_back(float *restrict dk, float *restrict dv, const float *restrict ds,
                        const float *restrict p, const float *restrict q, const float *restrict da, int n) {
    int s, d;
    for (s = 0; s < n; s++)
        for (d = 0; d < GQ_HEAD_DIM; d++) {
            dk[(size_t)s * GQ_KV_DIM + (size_t)d] += ds[s] * q[d];
            dv[(size_t)s * GQ_KV_DIM + (size_t)d] += p[s] * da[d];
        }
}

/* Backward of one work item: dq of the group's query heads, dk and dv of
 * KV head g (sums over the group's heads and the positions that see
 * them).  With p = e^(score - lse): dv_s += p datt, dp_s = datt . v_s,
 * ds = p (dp - datt . att), dq += scale ds k_s, dk_s += scale ds q. */
static void att_backward_item(const gqa_trainer *t, const TrainLayer *L, int window, int b, int g,
                              AttScratch sc) {
    int seq = t->seq, h, pos, s, d;
    size_t row0 = (size_t)b * (size_t)seq, head = (size_t)g * GQ_HEAD_DIM;
    const float *krows = L->k + row0 * GQ_KV_DIM + head, *vrows = L->v + row0 * GQ_KV_DIM + head;
    float *dk = t->dk + row0 * GQ_KV_DIM + head, *dv = t->dv + row0 * GQ_KV_DIM + head;
    transpose_head(sc.kt, krows, seq, sc.ld);
    transpose_head(sc.vt, vrows, seq, sc.ld);
    for (s = 0; s < seq; s++)
        for (d = 0; d < GQ_HEAD_DIM; d++)
            dk[(size_t)s * GQ_KV_DIM + (size_t)d] = dv[(size_t)s * GQ_KV_DIM + (size_t)d] = 0.0f;
    for (h = g * GQ_GROUP; h < (g + 1) * GQ_GROUP; h++) {
        for (pos = 0; pos < seq; pos++) {
            size_t row = row0 + (size_t)pos, at = row * GQ_Q_DIM + (size_t)h * GQ_HEAD_DIM;
            const float *q = L->q + at, *o = L->att + at, *da = t->datt + at;
            float *dq = t->dq + at, lse = L->lse[row * GQ_HEADS + (size_t)h], D = 0.0f;
            att_scores(sc.score, q, sc.kt, sc.ld, pos, window);
            for (d = 0; d < GQ_HEAD_DIM; d++)
                D += da[d] * o[d];
            att_exp(sc.score, pos + 1, lse);
            att_dots(sc.dp, da, sc.vt, sc.ld, pos + 1, 1.0f);
            for (s = 0; s <= pos; s++)
                sc.dp[s] = sc.score[s] * (sc.dp[s] - D) * GQ_ATT_SCALE; /* ds, scaled */
            att_weigh(dq, sc.dp, krows, pos + 1);
            att_kv_back(dk, dv, sc.dp, sc.score, q, da, pos + 1);
        }
    }
}

/* One of the above over every (row, KV head) across threads. */
static void att_items(const gqa_trainer *t, const TrainLayer *L, int window, int backward, int threads) {
    int i, items = t->batch * GQ_KV_HEADS;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if((double)t->seq * t->seq * items * GQ_GROUP * GQ_HEAD_DIM >= GQ_PARALLEL_MIN)")
    for (i = 0; i < items; i++) {
        if (backward)
            att_backward_item(t, L, window, i / GQ_KV_HEADS, i % GQ_KV_HEADS, att_scratch(t, i));
        else
            att_forward_item(t, L, window, i / GQ_KV_HEADS, i % GQ_KV_HEADS, att_scratch(t, i));
    }
}

/* ---- forward ---- */

#if GQ_QKV_BIAS
#define GQ_TRAIN_BIAS(p, name, l) GQ_PARAM(p, name, l)
#else
#define GQ_TRAIN_BIAS(p, name, l) ((float *)NULL)
#endif

/* q, k, v (rows of them) get their biases, then q and k their rotation. */
static void qkv_rows(gqa_trainer *t, const float *params, TrainLayer *L, int l, int threads) {
    int rows = t->batch * t->seq, i;
    const float *bq = GQ_TRAIN_BIAS(params, bq, l), *bk = GQ_TRAIN_BIAS(params, bk, l);
    const float *bv = GQ_TRAIN_BIAS(params, bv, l);
    (void)threads, (void)l, (void)params;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_Q_DIM))")
    for (i = 0; i < rows; i++) {
        const float *table = t->rope + (size_t)(i % t->seq) * GQ_HEAD_DIM;
        float *q = L->q + (size_t)i * GQ_Q_DIM, *k = L->k + (size_t)i * GQ_KV_DIM;
        if (bq) {
            add_inplace(q, bq, GQ_Q_DIM);
            add_inplace(k, bk, GQ_KV_DIM);
            add_inplace(L->v + (size_t)i * GQ_KV_DIM, bv, GQ_KV_DIM);
        }
        rope(q, GQ_HEADS, table);
        rope(k, GQ_KV_HEADS, table);
    }
}

/* out = a + b, rows of dim (the residual stream). */
static void add_rows(float *out, const float *a, const float *b, int rows, int threads) {
    int i;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_DIM))")
    for (i = 0; i < rows; i++) {
        size_t at = (size_t)i * GQ_DIM;
        int j;
        for (j = 0; j < GQ_DIM; j++)
            out[at + j] = a[at + j] + b[at + j];
    }
}

/* hb = silu(h1) * h3, rows of hidden (h1 kept for backward). */
static void swiglu_rows(float *hb, const float *h1, const float *h3, int rows, int threads) {
    int i;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_HIDDEN))")
    for (i = 0; i < rows; i++) {
        size_t at = (size_t)i * GQ_HIDDEN;
        copy_floats(hb + at, h1 + at, GQ_HIDDEN);
        swiglu(hb + at, h3 + at, GQ_HIDDEN);
    }
}

static void forward_layer(gqa_trainer *t, const float *params, int l, float *out, int threads) {
    TrainLayer *L = &t->layer[l];
    int rows = t->batch * t->seq;
    norm_rows(t->xn, L->r1, L->x, GQ_PARAM(params, rms_att, l), rows, threads);
    train_matmul(t, L->q, GQ_PARAM(params, wq, l), t->xn, rows, GQ_DIM, GQ_Q_DIM, threads);
    train_matmul(t, L->k, GQ_PARAM(params, wk, l), t->xn, rows, GQ_DIM, GQ_KV_DIM, threads);
    train_matmul(t, L->v, GQ_PARAM(params, wv, l), t->xn, rows, GQ_DIM, GQ_KV_DIM, threads);
    qkv_rows(t, params, L, l, threads);
    att_items(t, L, layer_window(l), 0, threads);
    train_matmul(t, t->dxn, GQ_PARAM(params, wo, l), L->att, rows, GQ_Q_DIM, GQ_DIM, threads);
    add_rows(L->xmid, L->x, t->dxn, rows, threads);
    norm_rows(t->xn, L->r2, L->xmid, GQ_PARAM(params, rms_ffn, l), rows, threads);
    train_matmul(t, L->h1, GQ_PARAM(params, w1, l), t->xn, rows, GQ_DIM, GQ_HIDDEN, threads);
    train_matmul(t, L->h3, GQ_PARAM(params, w3, l), t->xn, rows, GQ_DIM, GQ_HIDDEN, threads);
    swiglu_rows(t->hb, L->h1, L->h3, rows, threads);
    train_matmul(t, t->dxn, GQ_PARAM(params, w2, l), t->hb, rows, GQ_HIDDEN, GQ_DIM, threads);
    add_rows(out, L->xmid, t->dxn, rows, threads);
}

/* The cross-entropy of each prediction (nll) from the logits, which
 * become d loss / d logits when grad is set: (softmax - onehot) / N. */
static void cross_entropy(gqa_trainer *t, const int *tokens, int grad, int threads) {
    int rows = t->batch * t->seq, i;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_VOCAB))")
    for (i = 0; i < rows; i++) {
        float *z = t->logits + (size_t)i * GQ_VOCAB, m = -FLT_MAX, sum = 0.0f;
        int target = tokens[(i / t->seq) * (t->seq + 1) + i % t->seq + 1], j;
        for (j = 0; j < GQ_VOCAB; j++)
            m = z[j] > m ? z[j] : m;
        for (j = 0; j < GQ_VOCAB; j++)
            sum += gq_exp_neg(z[j] - m);
        t->nll[i] = (double)m + log((double)sum) - (double)z[target];
        if (grad) {
            float inv = 1.0f / sum, scale = 1.0f / (float)rows;
            for (j = 0; j < GQ_VOCAB; j++)
                z[j] = gq_exp_neg(z[j] - m) * inv * scale;
            z[target] -= scale;
        }
    }
}

/* Everything up to the loss; 0, or GQA_ETOKEN for an id outside the vocab. */
static int train_forward(gqa_trainer *t, const float *params, const int *tokens, int grad, double *loss,
                         int threads) {
    int rows = t->batch * t->seq, i, l;
    const float *embed = GQ_PARAM(params, token_embedding, 0);
    double sum = 0.0;
    for (i = 0; i < t->batch * (t->seq + 1); i++)
        if (tokens[i] < 0 || tokens[i] >= GQ_VOCAB)
            return GQA_ETOKEN;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_DIM))")
    for (i = 0; i < rows; i++)
        copy_floats(t->layer[0].x + (size_t)i * GQ_DIM,
                    embed + (size_t)tokens[(i / t->seq) * (t->seq + 1) + i % t->seq] * GQ_DIM, GQ_DIM);
    for (l = 0; l < GQ_LAYERS; l++)
        forward_layer(t, params, l, l + 1 < GQ_LAYERS ? t->layer[l + 1].x : t->xfin, threads);
    norm_rows(t->xn, t->rfin, t->xfin, GQ_PARAM(params, rms_final, 0), rows, threads);
    train_matmul(t, t->logits, GQ_PARAM(params, wcls, 0), t->xn, rows, GQ_DIM, GQ_VOCAB, threads);
    cross_entropy(t, tokens, grad, threads);
    for (i = 0; i < rows; i++)
        sum += t->nll[i];
    *loss = sum / rows;
    return GQA_OK;
}

/* ---- backward ---- */

/* The FFN half of layer l: t->dx (d loss / d the layer's output) gains
 * the path through the FFN, becoming d loss / d xmid. */
static void backward_ffn(gqa_trainer *t, const float *params, float *grads, int l, int threads) {
    TrainLayer *L = &t->layer[l];
    int rows = t->batch * t->seq, i;
    renorm_rows(t->xn, L->r2, L->xmid, GQ_PARAM(params, rms_ffn, l), rows, threads);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_HIDDEN))")
    for (i = 0; i < rows; i++) {
        int j;
        for (j = 0; j < GQ_HIDDEN; j++) {
            size_t at = (size_t)i * GQ_HIDDEN + (size_t)j;
            float g = L->h1[at], sig = train_sigmoid(g);
            t->hb[at] = g * sig * L->h3[at];
        }
    }
    gemm_dw(GQ_PARAM(grads, w2, l), t->dx, t->hb, rows, GQ_DIM, GQ_HIDDEN, threads);
    gemm_dx(t->dh1, t->dx, GQ_PARAM(params, w2, l), rows, GQ_DIM, GQ_HIDDEN, 0, threads); /* d hb */
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_HIDDEN))")
    for (i = 0; i < rows; i++) {
        int j;
        for (j = 0; j < GQ_HIDDEN; j++) {
            size_t at = (size_t)i * GQ_HIDDEN + (size_t)j;
            float g = L->h1[at], sig = train_sigmoid(g), dhb = t->dh1[at];
            t->dh3[at] = dhb * g * sig;
            t->dh1[at] = dhb * L->h3[at] * sig * (1.0f + g * (1.0f - sig));
        }
    }
    gemm_dw(GQ_PARAM(grads, w1, l), t->dh1, t->xn, rows, GQ_HIDDEN, GQ_DIM, threads);
    gemm_dw(GQ_PARAM(grads, w3, l), t->dh3, t->xn, rows, GQ_HIDDEN, GQ_DIM, threads);
    gemm_dx(t->dxn, t->dh1, GQ_PARAM(params, w1, l), rows, GQ_HIDDEN, GQ_DIM, 0, threads);
    gemm_dx(t->dxn, t->dh3, GQ_PARAM(params, w3, l), rows, GQ_HIDDEN, GQ_DIM, 1, threads);
    norm_back(t->dx, GQ_PARAM(grads, rms_ffn, l), t->dxn, L->xmid, L->r2, GQ_PARAM(params, rms_ffn, l), rows,
              threads);
}

/* The attention half: t->dx (d loss / d xmid) becomes d loss / d the layer's input. */
static void backward_attention(gqa_trainer *t, const float *params, float *grads, int l, int threads) {
    TrainLayer *L = &t->layer[l];
    int rows = t->batch * t->seq, i;
    gemm_dw(GQ_PARAM(grads, wo, l), t->dx, L->att, rows, GQ_DIM, GQ_Q_DIM, threads);
    gemm_dx(t->datt, t->dx, GQ_PARAM(params, wo, l), rows, GQ_DIM, GQ_Q_DIM, 0, threads);
    att_items(t, L, layer_window(l), 1, threads);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_ROWS_PARALLEL(rows, GQ_Q_DIM))")
    for (i = 0; i < rows; i++) {
        const float *table = t->rope + (size_t)(i % t->seq) * GQ_HEAD_DIM;
        rope_back(t->dq + (size_t)i * GQ_Q_DIM, GQ_HEADS, table);
        rope_back(t->dk + (size_t)i * GQ_KV_DIM, GQ_KV_HEADS, table);
    }
#if GQ_QKV_BIAS
    bias_back(GQ_PARAM(grads, bq, l), t->dq, rows, GQ_Q_DIM);
    bias_back(GQ_PARAM(grads, bk, l), t->dk, rows, GQ_KV_DIM);
    bias_back(GQ_PARAM(grads, bv, l), t->dv, rows, GQ_KV_DIM);
#else
    (void)bias_back;
#endif
    renorm_rows(t->xn, L->r1, L->x, GQ_PARAM(params, rms_att, l), rows, threads);
    gemm_dw(GQ_PARAM(grads, wq, l), t->dq, t->xn, rows, GQ_Q_DIM, GQ_DIM, threads);
    gemm_dw(GQ_PARAM(grads, wk, l), t->dk, t->xn, rows, GQ_KV_DIM, GQ_DIM, threads);
    gemm_dw(GQ_PARAM(grads, wv, l), t->dv, t->xn, rows, GQ_KV_DIM, GQ_DIM, threads);
    gemm_dx(t->dxn, t->dq, GQ_PARAM(params, wq, l), rows, GQ_Q_DIM, GQ_DIM, 0, threads);
    gemm_dx(t->dxn, t->dk, GQ_PARAM(params, wk, l), rows, GQ_KV_DIM, GQ_DIM, 1, threads);
    gemm_dx(t->dxn, t->dv, GQ_PARAM(params, wv, l), rows, GQ_KV_DIM, GQ_DIM, 1, threads);
    norm_back(t->dx, GQ_PARAM(grads, rms_att, l), t->dxn, L->x, L->r1, GQ_PARAM(params, rms_att, l), rows,
              threads);
}

static void train_backward(gqa_trainer *t, const float *params, const int *tokens, float *grads, int threads) {
    int rows = t->batch * t->seq, i, l;
    float *dembed = GQ_PARAM(grads, token_embedding, 0);
    /* classifier (tied: into the embedding's gradient) and final norm */
    renorm_rows(t->xn, t->rfin, t->xfin, GQ_PARAM(params, rms_final, 0), rows, threads);
    gemm_dw(GQ_PARAM(grads, wcls, 0), t->logits, t->xn, rows, GQ_VOCAB, GQ_DIM, threads);
    gemm_dx(t->dxn, t->logits, GQ_PARAM(params, wcls, 0), rows, GQ_VOCAB, GQ_DIM, 0, threads);
    memset(t->dx, 0, (size_t)rows * GQ_DIM * sizeof(float));
    norm_back(t->dx, GQ_PARAM(grads, rms_final, 0), t->dxn, t->xfin, t->rfin, GQ_PARAM(params, rms_final, 0),
              rows, threads);
    for (l = GQ_LAYERS - 1; l >= 0; l--) {
        backward_ffn(t, params, grads, l, threads);
        backward_attention(t, params, grads, l, threads);
    }
    /* the embedding: each row's gradient to its token's row, in order */
    for (i = 0; i < rows; i++)
        add_inplace(dembed + (size_t)tokens[(i / t->seq) * (t->seq + 1) + i % t->seq] * GQ_DIM,
                    t->dx + (size_t)i * GQ_DIM, GQ_DIM);
}

static int train_step(gqa_trainer *t, const float *params, const int *tokens, float *grads, double *loss) {
    int threads, err;
    if (!t || !params || !tokens || !grads || !loss)
        return GQA_EARG;
    threads = train_threads(t);
    if ((err = train_forward(t, params, tokens, 1, loss, threads)))
        return err;
    memset(grads, 0, (size_t)GQ_WEIGHT_BYTES);
    train_backward(t, params, tokens, grads, threads);
    return GQA_OK;
}

static int train_loss(gqa_trainer *t, const float *params, const int *tokens, double *loss) {
    if (!t || !params || !tokens || !loss)
        return GQA_EARG;
    return train_forward(t, params, tokens, 0, loss, train_threads(t));
}

/* ---- the optimizer ---- */

static void train_grad_sq(gqa_trainer *t, const float *grads, double *sq) {
    int i;
    (void)t;
    if (!grads || !sq)
        return;
    for (i = 0; i < GQ_N_TENSORS; i++) {
        const float *g = grads + gq_tensors[i].offset / sizeof(float);
        size_t n = gq_tensors[i].bytes / sizeof(float), j;
        double sum = 0.0;
        for (j = 0; j < n; j++)
            sum += (double)g[j] * g[j];
        sq[i] = sum;
    }
}

/* Whether AdamW decays tensors of kind: the matrices, not norms or biases. */
static int decays(int kind) {
    return kind == GQA_T_EMBED || kind == GQA_T_CLS || (kind >= GQA_T_WQ && kind <= GQA_T_WO) ||
           (kind >= GQA_T_W1 && kind <= GQA_T_W3);
}

static void train_adamw(gqa_trainer *t, float *params, const float *grads, float *m, float *v, const gqa_adamw *h,
                     float scale) {
    float b1, b2, eps, step, bc2;
    int i, threads;
    if (!t || !params || !grads || !m || !v || !h)
        return;
    b1 = (float)h->beta1, b2 = (float)h->beta2, eps = (float)h->eps;
    step = (float)(h->lr / (1.0 - pow(h->beta1, (double)h->step)));
    bc2 = (float)sqrt(1.0 - pow(h->beta2, (double)h->step));
    threads = train_threads(t);
    (void)threads;
    for (i = 0; i < GQ_N_TENSORS; i++) {
        size_t at = gq_tensors[i].offset / sizeof(float);
        long n = (long)(gq_tensors[i].bytes / sizeof(float)), j;
        float keep = decays(gq_tensors[i].kind) ? (float)(1.0 - h->lr * h->weight_decay) : 1.0f;
        float *p = params + at, *mi = m + at, *vi = v + at;
        const float *g = grads + at;
        GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(n * 8 >= GQ_PARALLEL_MIN)")
        for (j = 0; j < n; j++) {
            float gj = g[j] * scale;
            mi[j] = b1 * mi[j] + (1.0f - b1) * gj;
            vi[j] = b2 * vi[j] + (1.0f - b2) * gj * gj;
            p[j] = p[j] * keep - step * mi[j] / (sqrtf(vi[j]) / bc2 + eps);
        }
    }
}

const gqa_train_api gqm_train_api = {
    GQA_TRAIN_API_VERSION,
    GQ_WEIGHT_BYTES / sizeof(float),
    train_arena_bytes,
    train_init,
    train_set_threads,
    train_step,
    train_loss,
    train_grad_sq,
    train_adamw,
};
