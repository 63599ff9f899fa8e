/*
 * kernels.c: the kernels of the forward pass other than attention:
 * RMSNorm, matrix products (one token, or a block of tokens), RoPE, SwiGLU.
 *
 * Holes: GQ_ACC_ROW, GQ_TILE_ROWS, GQ_TILE_VECS, GQ_LANES, GQ_BATCH, GQ_HEAD_DIM,
 * GQ_ROPE_FREQS, GQ_ROPE_HALVES, GQ_NORM_EPS, GQ_FREESTANDING, GQ_ROPE_STEPS and
 * GQ_ROPE_TABLE (shape.h).
 * Each kernel's first comment states its shapes.  Sizes arrive as
 * arguments but every call passes constants, so an optimizing compiler
 * specializes the static functions per call site.
 */
#include "shape.h" /* gqac:drop */
#include "parallel.h" /* gqac:drop */

#include "gqmath.h" /* gqac:drop */
#include "gqa_api.h" /* gqac:drop */
#include "qdot.c" /* gqac:drop */

#include <stddef.h>
#include <stdint.h>

/* One row: w (n,) . x (n,), in GQ_ACC_ROW independent accumulators so the
 * adds do not wait on each other (and vectorize). n % GQ_ACC_ROW == 0.
 * next: the row read after this one, asked for a line per line of w: a
 * matrix's rows are one stream, and one stream alone does not keep
 * memory busy (the hardware fetches too little ahead of it); with the
 * next row asked for meanwhile, a decode step is ~12% faster. */
static float dot_row(const float *w, const float *x, int n, const float *next) {
    float acc[GQ_ACC_ROW];
    int j;
    for (int u = 0; u < GQ_ACC_ROW; u++) { /* gqac:unroll */
        acc[u] = 0.0f;
    }
    for (j = 0; j < n; j += GQ_ACC_ROW) {
        for (int u = 0; u < GQ_ACC_ROW; u += GQ_LINE) { /* gqac:unroll */
            GQ_PREFETCH(next + j + u);
        }
        for (int u = 0; u < GQ_ACC_ROW; u++) { /* gqac:unroll */
            acc[u] += w[j + u] * x[j + u];
        }
    }
    /* a tree of halves: a vector add a level, where a running sum would be
     * GQ_ACC_ROW - 1 dependent scalar adds at the end of every row */
    for (int half = GQ_ACC_ROW / 2; half > 0; half /= 2) {
        for (int u = 0; u < half; u++) {
            acc[u] += acc[u + half];
        }
    }
    return acc[0];
}

/* x (n,), weight (n,) -> out (n,); out may be x.  n % GQ_ACC_ROW == 0. */
static void rmsnorm(float *out, const float *x, const float *weight, int n) {
    float scale = GQ_RSQRTF(dot_row(x, x, n, x) / (float)n + GQ_NORM_EPS);
    int i;
    for (i = 0; i < n; i++)
        out[i] = weight[i] * (scale * x[i]);
}

/* Column k of X (b, n), one token per row -> row k of xt (n, GQ_BATCH):
 * the tokens side by side, zeros from b on.  Column by column, xt is
 * written in order and the b rows of x being read stay in L1 a line each. */
static void pack_column(float *xt, const float *x, int n, int b, int k) {
    int t;
    for (t = 0; t < GQ_BATCH; t++)
        xt[(size_t)k * GQ_BATCH + (size_t)t] = t < b ? x[(size_t)t * (size_t)n + (size_t)k] : 0.0f;
}

/* Inlined at each call whatever gcc's size heuristics say, so that its
 * vector count is a constant there; tcc ignores the attribute. */
#define GQ_TILE_INLINE static inline __attribute__((always_inline))

/* GQ_LANES floats, the tile's unit: a vector register where the compiler
 * has GNU C's vector extensions (gcc, clang on x86-64 and AArch64), plain
 * floats elsewhere (tcc, which ignores vector_size; other targets).  As vectors, the accumulators stay in
 * registers under clang too, which keeps an array indexed by a lane loop
 * in memory (half gcc's speed on a prompt).  Each lane's sum is the same
 * either way, bit for bit. */
#if defined(__GNUC__) && !defined(__TINYC__) && !GQ_FREESTANDING && (defined(__x86_64__) || defined(__aarch64__))
/* Macros, not functions: a vector wider than the target's registers
 * (AVX-512's 16 floats built without -mavx512f) has no stable ABI.  x86-64
 * and AArch64 only: s390x evaluates floats as doubles (FLT_EVAL_METHOD 1),
 * which a float-by-vector product refuses. */
typedef float gq_lanes __attribute__((vector_size(GQ_LANES * sizeof(float))));
typedef float gq_lanes_at __attribute__((vector_size(GQ_LANES * sizeof(float)), aligned(sizeof(float)), may_alias));
#define lanes_zero() ((gq_lanes){0})
#define lanes_load(p) ((gq_lanes)*(const gq_lanes_at *)(const void *)(p))
#define lanes_store(p, v) (*(gq_lanes_at *)(void *)(p) = (v))
#define lanes_fma(acc, w, x) ((acc) + (w) * (x))
#else
typedef struct {
    float v[GQ_LANES];
} gq_lanes;
static gq_lanes lanes_zero(void) {
    gq_lanes z;
    for (int u = 0; u < GQ_LANES; u++) /* no initializer: a freestanding target has no memset */
        z.v[u] = 0.0f;
    return z;
}
static gq_lanes lanes_load(const float *p) {
    gq_lanes v;
    for (int u = 0; u < GQ_LANES; u++)
        v.v[u] = p[u];
    return v;
}
static void lanes_store(float *p, gq_lanes v) {
    for (int u = 0; u < GQ_LANES; u++)
        p[u] = v.v[u];
}
static gq_lanes lanes_fma(gq_lanes acc, float w, gq_lanes x) {
    for (int u = 0; u < GQ_LANES; u++)
        acc.v[u] += w * x.v[u];
    return acc;
}
#endif

/* The register tile: GQ_TILE_ROWS rows of W (row stride n) against
 * vecs (1 .. GQ_TILE_VECS) x GQ_LANES tokens of xt (row stride GQ_BATCH)
 * -> out, its first b tokens (row stride d).  Each step along n
 * multiplies one W element per row, broadcast, by a vector of tokens:
 * the outer-product form, with no horizontal sums; each load of xt
 * serves GQ_TILE_ROWS rows.
 * next: the tile of rows read after this one, asked for into L2 a line
 * per row per GQ_LINE steps: the first pass over a tile of rows reads
 * them from memory, GQ_TILE_ROWS streams that the hardware prefetcher
 * alone fetches too late (a prompt is ~10% faster on 1 and 2 threads).
 * vecs is a constant at each call: inlined, the compiler drops the
 * vectors past it, so a tile of one vector of tokens does no work for a
 * second.  Each output element is the same sum either way, bit for bit. */
GQ_TILE_INLINE void matmul_tile(float *out, const float *w, const float *xt, int n, int d, int b,
                                const float *next, int vecs) {
    gq_lanes acc[GQ_TILE_ROWS][GQ_TILE_VECS], x[GQ_TILE_VECS];
    float tile[GQ_TILE_ROWS][GQ_TILE_VECS * GQ_LANES];
    int k, t;
    for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
        for (int c = 0; c < GQ_TILE_VECS; c++) { /* gqac:unroll */
            acc[r][c] = lanes_zero();
        }
    }
    for (k = 0; k < n; k++) {
        const float *xk = xt + (size_t)k * GQ_BATCH;
        if (k % GQ_LINE == 0) {
            for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
                GQ_PREFETCH(next + (size_t)r * (size_t)n + (size_t)k);
            }
        }
        for (int c = 0; c < GQ_TILE_VECS; c++) { /* gqac:unroll */
            if (c < vecs)
                x[c] = lanes_load(xk + c * GQ_LANES);
        }
        for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
            float wk = w[(size_t)r * (size_t)n + (size_t)k];
            for (int c = 0; c < GQ_TILE_VECS; c++) { /* gqac:unroll */
                if (c < vecs)
                    acc[r][c] = lanes_fma(acc[r][c], wk, x[c]);
            }
        }
    }
    /* out is (token, row): through a buffer of whole vectors */
    for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
        for (int c = 0; c < GQ_TILE_VECS; c++) { /* gqac:unroll */
            if (c < vecs)
                lanes_store(&tile[r][c * GQ_LANES], acc[r][c]);
        }
    }
    for (t = 0; t < b; t++) {
        for (int r = 0; r < GQ_TILE_ROWS; r++) { /* gqac:unroll */
            out[(size_t)t * (size_t)d + (size_t)r] = tile[r][t];
        }
    }
}

/* Tokens of one register tile. */
#define GQ_TILE_TOKENS (GQ_TILE_VECS * GQ_LANES)


/* Bytes of a row of n elements of type (GQA_DT_*): ggml's block sizes. */
static size_t row_bytes(int type, int n) {
    static const unsigned char block[7] = {1, 1, 1, 32, 32, 255, 255}; /* 255: 256, in a byte */
    static const unsigned char bytes[7] = {4, 2, 2, 18, 34, 144, 210};
    size_t per = block[type] == 255 ? 256 : block[type];
    return (size_t)n / per * bytes[type];
}

/* One matrix product of matmuls: W (d, n) @ X (b, n)^T -> out (b, d), W
 * of type (GQA_DT_*). */
typedef struct {
    float *out;
    const void *w;
    int type;
    int d;
} Product;

/* The buffers the input of a call of matmuls goes through: pack (n *
 * GQ_BATCH floats) for f32 tiles, unused and may be NULL when b <
 * GQ_LANES; x8 and x8k for block types (GQ_X8_BYTES, GQ_X8K_BYTES). */
typedef struct {
    float *pack;
    void *x8, *x8k;
} Scratch;

/* Products of one X in a call: q, k and v; w1 and w3. */
#define GQ_MAX_PRODUCTS 3
/* Rows of a block-type matrix a thread takes at a time. */
#define GQ_QROWS 32

/* Tile i of f32 product p: GQ_TILE_ROWS rows against every tile of
 * tokens, or (from tiled on) one row left over, a dot_row per token. */
static void product_tile(const Product *p, int i, int tiled, const float *x, const float *pack, int n,
                         int b) {
    const float *w = p->w;
    int t;
    if (i < tiled) {
        int row = i * GQ_TILE_ROWS;
        const float *next = w + (size_t)(i + 1 < tiled ? row + GQ_TILE_ROWS : row) * (size_t)n;
        for (t = 0; t < b; t += GQ_TILE_TOKENS) {
            float *out = p->out + (size_t)t * (size_t)p->d + (size_t)row;
            const float *wr = w + (size_t)row * (size_t)n;
            if (b - t <= GQ_LANES) /* the last tokens fit one vector */
                matmul_tile(out, wr, pack + t, n, p->d, b - t, next, 1);
            else
                matmul_tile(out, wr, pack + t, n, p->d, b - t < GQ_TILE_TOKENS ? b - t : GQ_TILE_TOKENS,
                            next, GQ_TILE_VECS);
        }
    } else {
        int row = tiled * GQ_TILE_ROWS + (i - tiled);
        const float *next = w + (size_t)(row + 1 < p->d ? row + 1 : row) * (size_t)n;
        for (t = 0; t < b; t++)
            p->out[(size_t)t * (size_t)p->d + (size_t)row] =
                dot_row(w + (size_t)row * (size_t)n, x + (size_t)t * (size_t)n, n, next);
    }
}

/* Rows [row, row + nr) of product p of another type than f32, against
 * the b tokens of x (floats) as sc holds them quantized: one token a
 * dot a row, more a tile (templates/qdot.c), which reads each weight
 * block once for all of them. */
static void product_rows(const Product *p, int row, int nr, const float *x, const Scratch *sc, int n,
                         int b) {
    size_t stride = row_bytes(p->type, n), ostride = (size_t)p->d;
    const unsigned char *w = (const unsigned char *)p->w + (size_t)row * stride;
    float *out = p->out + row;
    int r;
    (void)x, (void)sc, (void)w, (void)out, (void)r, (void)ostride, (void)nr, (void)b;
/* One token: a dot a row; more: the tile (xn: x's blocks, or floats, a token). */
#define GQ_TYPED_ROWS(dot, tile, xq, xn)                                                         \
    if (b == 1)                                                                                   \
        for (r = 0; r < nr; r++)                                                                  \
            out[r] = dot(w + (size_t)r * stride, xq, xn);                                         \
    else                                                                                          \
        tile(out, ostride, w, stride, nr, xq, (size_t)(xn), xn, b);                               \
    break;
    switch (p->type) {
#if GQ_HAS_Q8_0
    case GQA_DT_Q8_0: GQ_TYPED_ROWS(dot_q8_0, tile_q8_0, (const gq_x8 *)sc->x8, n / 32)
#endif
#if GQ_HAS_Q4_0
    case GQA_DT_Q4_0: GQ_TYPED_ROWS(dot_q4_0, tile_q4_0, (const gq_x8 *)sc->x8, n / 32)
#endif
#if GQ_HAS_Q4_K
    case GQA_DT_Q4_K: GQ_TYPED_ROWS(dot_q4_k, tile_q4_k, (const gq_x8k *)sc->x8k, n / 256)
#endif
#if GQ_HAS_Q6_K
    case GQA_DT_Q6_K: GQ_TYPED_ROWS(dot_q6_k, tile_q6_k, (const gq_x8k *)sc->x8k, n / 256)
#endif
#if GQ_HAS_F16
    case GQA_DT_F16: GQ_TYPED_ROWS(dot_f16, tile_f16, x, n)
#endif
#if GQ_HAS_BF16
    case GQA_DT_BF16: GQ_TYPED_ROWS(dot_bf16, tile_bf16, x, n)
#endif
    default:
        break; /* f32 goes to product_tile */
    }
#undef GQ_TYPED_ROWS
}

/* Work item i of product p: an f32 product's tiles, or GQ_QROWS rows of
 * another type's. */
static void product_item(const Product *p, int i, int tiled, const float *x, const Scratch *sc, int n,
                         int b) {
    if (p->type == GQA_DT_F32) {
        product_tile(p, i, tiled, x, sc->pack, n, b);
    } else {
        int row = i * GQ_QROWS;
        product_rows(p, row, p->d - row < GQ_QROWS ? p->d - row : GQ_QROWS, x, sc, n, b);
    }
}

/* compiler/ir.c sizes the arena's quantized activations by these. */
#if GQ_HAS_X8
typedef char gqm_check_x8[sizeof(gq_x8) == 36 ? 1 : -1];
#endif
#if GQ_HAS_X8K
typedef char gqm_check_x8k[sizeof(gq_x8k) == 292 ? 1 : -1];
#endif

/* Token t of x (b, n) quantized into sc's buffers: those that some
 * product's type reads (need: 1 x8, 2 x8k). */
static void quantize_token(const Scratch *sc, const float *x, int n, int t, int need) {
    (void)sc, (void)x, (void)n, (void)t, (void)need;
#if GQ_HAS_X8
    if (need & 1)
        quantize_x8((gq_x8 *)sc->x8 + (size_t)t * (size_t)(n / 32), x + (size_t)t * (size_t)n, n);
#endif
#if GQ_HAS_X8K
    if (need & 2)
        quantize_x8k((gq_x8k *)sc->x8k + (size_t)t * (size_t)(n / 256), x + (size_t)t * (size_t)n, n);
#endif
}

/* count products of the same X (b, n), X and out one token per row.  For
 * f32 weights X is packed once, transposed, into sc->pack; tiles of
 * GQ_TILE_ROWS rows of every product go across threads in one parallel
 * region, and each meets every tile of tokens while its rows are in
 * cache, so each row of W comes from memory once per call, not once per
 * token.  Rows left over take one dot_row per token, as do all rows when
 * b < GQ_LANES (b = 1 is exactly matvec).  For block types, X is
 * quantized once per call, each token once, and groups of GQ_QROWS rows
 * go across threads the same way.  n % GQ_ACC_ROW == 0. */
static void matmuls(const Product *p, int count, const float *x, int n, int b, const Scratch *sc,
                    int threads) {
    int tiled[GQ_MAX_PRODUCTS], tiles[GQ_MAX_PRODUCTS], total = 0, rows = 0, packed = 0, need = 0, c;
    (void)threads;
    for (c = 0; c < count; c++) {
        if (p[c].type == GQA_DT_F32) {
            tiled[c] = b < GQ_LANES ? 0 : p[c].d / GQ_TILE_ROWS;
            tiles[c] = tiled[c] + (p[c].d - tiled[c] * GQ_TILE_ROWS);
        } else {
            tiled[c] = 0;
            tiles[c] = (p[c].d + GQ_QROWS - 1) / GQ_QROWS;
            need |= p[c].type == GQA_DT_Q8_0 || p[c].type == GQA_DT_Q4_0 ? 1 :
                    p[c].type == GQA_DT_Q4_K || p[c].type == GQA_DT_Q6_K ? 2 : 0;
        }
        total += tiles[c];
        rows += p[c].d;
        packed |= tiled[c] > 0;
    }
    (void)rows; /* the parallel region's condition, when there is one */
    GQ_OMP("omp parallel num_threads(threads) if((double)n * rows * b >= GQ_PARALLEL_MIN)")
    {
        int i, k;
        if (packed) {
            GQ_OMP("omp for schedule(static)")
            for (k = 0; k < n; k++)
                pack_column(sc->pack, x, n, b, k);
        }
        if (need) {
            GQ_OMP("omp for schedule(static)")
            for (k = 0; k < b; k++)
                quantize_token(sc, x, n, k, need);
        }
        GQ_OMP("omp for schedule(static) nowait") /* the region's end waits */
        for (i = 0; i < total; i++) {
            int j = i, q = 0;
            while (j >= tiles[q])
                j -= tiles[q++];
            product_item(&p[q], j, tiled[q], x, sc, n, b);
        }
    }
}

/* W (d, n) of type @ X (b, n)^T -> out (b, d): one product. */
static void matmul(float *out, const void *w, int type, const float *x, int n, int d, int b,
                   const Scratch *sc, int threads) {
    Product p;
    p.out = out;
    p.w = w;
    p.type = type;
    p.d = d;
    matmuls(&p, 1, x, n, b, sc, threads);
}

/* W (d, n) @ x (n,) -> out (d,), rows across threads; W streamed once.
 * One token of matmul: every row a dot_row, or a block type's dot. */
static void matvec(float *out, const void *w, int type, const float *x, int n, int d, const Scratch *sc,
                   int threads) {
    matmul(out, w, type, x, n, d, 1, sc, threads);
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

/* gate (n,), up (n,) -> gate (n,) = silu(gate) * up, silu(g) being g
 * sigmoid(g) = g / (1 + e^-g) = g e^g / (1 + e^g): with e = e^-|g| that is
 * g / (1 + e) for g >= 0 and g e / (1 + e) below, so the exponential's
 * argument is never positive, and the choice of numerator, made on the
 * sign bit, leaves the loop free of branches and calls (it vectorizes). */
static void swiglu(float *gate, const float *up, int n) {
    int i;
    for (i = 0; i < n; i++) {
        union {
            float f;
            uint32_t u;
        } g, neg_abs, num;
        uint32_t negative;
        float e;
        g.f = gate[i];
        negative = 0u - (g.u >> 31);
        neg_abs.u = g.u | 0x80000000u;
        num.f = e = gq_exp_neg(neg_abs.f);
        num.u = (num.u & negative) | (0x3f800000u & ~negative); /* e, or 1.0f */
        gate[i] = g.f * (num.f / (1.0f + e)) * up[i];
    }
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
