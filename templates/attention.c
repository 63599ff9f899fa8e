/*
 * attention.c: the attention of one layer, grouped: for one new token
 * (decode), and for a block of a prompt's tokens (at the end).
 *
 * Query head h reads KV head h / GQ_GROUP: consecutive query heads share a
 * KV head, as in Llama's repeat_kv and llama2.c.  For each KV head the
 * cached K and V rows are streamed once, in one pass with an online
 * softmax, and each block of rows serves all GQ_GROUP query heads of the
 * group while it is in L1.  That single read per group is what makes
 * GQA's smaller KV cache pay off as time, not only as memory.
 *
 * The cache is this file's to lay out (kv_store writes it).  Each KV
 * head's positions are in blocks of GQ_BLOCK positions.  K's blocks are
 * transposed to (GQ_HEAD_DIM, GQ_BLOCK).  Then a block's scores for one
 * query head are GQ_HEAD_DIM multiply-adds of a q element (broadcast) by
 * GQ_BLOCK positions (one vector): no horizontal sums, which in row order
 * cost as much as the dot products themselves once G query heads share a
 * row.  V's blocks are stored in the order the update reads them, tile by
 * tile (GQ_VTILE): each block of K or V is read front to back.
 *
 * The values are of type GQ_KV_TYPE (gqa_api.h's numbers): f32, f16 or
 * bf16, or q8_0, blocks of 32 int8 along head_dim with an f16 scale each
 * (GGUF's Q8_0), the scales after the block's values.  The kernels turn a
 * vector at a time into floats in registers, by integer operations
 * (vectorized, and no FP16 hardware needed).
 *
 * A layer with a sliding window sees, from position p, the positions
 * above p - window and the first `sinks` ones (StreamingLLM's attention
 * sinks).  Its cache keeps the sink blocks, then a ring of blocks that
 * positions past them take in turn (Ring), so that its memory is
 * O(window), not O(positions).  A layer without one is the ring of every
 * position of the context, never wrapped.
 *
 * Or the blocks live in the pages of a pool that many sequences share
 * (forward_seqs, serving): the same kernels, with the block table in Ring
 * saying where each block is.
 *
 * Holes: GQ_GROUP, GQ_HEAD_DIM, GQ_KV_HEADS, GQ_CONTEXT, GQ_ATT_HEADS,
 * GQ_ATT_SPLIT, GQ_ATT_LANES, GQ_ATT_VECS, GQ_ATT_SCALE, GQ_SPLIT,
 * GQ_PROMPT_TOKENS, GQ_PROMPT_ROWS, GQ_PROMPT_VECS, GQ_KV_TYPE,
 * GQ_RING_CHUNK, GQ_UNBOUNDED, GQ_LAYERS (a page's layers) (shape.h).
 */
#include "shape.h" /* gqac:drop */
#include "parallel.h" /* gqac:drop */
#include "gqmath.h" /* gqac:drop */

#include <float.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#if GQ_KV_TYPE == 1 && (defined(__AVX512F__) || defined(__F16C__))
#include <immintrin.h> /* vcvtph2ps: a vector of f16 to floats in one instruction */
#define GQ_KV_F16C 1
#else
#define GQ_KV_F16C 0
#endif

/* Positions per K block, scored together: one vector of scores per query
 * head, one maximum, at most one rescale and a vectorized exponential per
 * block instead of per position. */
#define GQ_BLOCK 16

/* V columns of update_block's tile.  A block's V is stored tile by tile,
 * each tile (GQ_BLOCK, GQ_VTILE): the order update_block reads it, so
 * that a block of V is one stream, as a block of K is. */
#define GQ_VTILE (GQ_ATT_VECS * GQ_ATT_LANES)

/* Where column col of position j sits in a block of V: the layout's one
 * definition (kv_store writes it, update_block and prompt_update read). */
static size_t v_at(int j, int col) {
    return (size_t)(col / GQ_VTILE) * GQ_BLOCK * GQ_VTILE + (size_t)j * GQ_VTILE +
           (size_t)(col % GQ_VTILE);
}

/* ---- the cache's values ---- */

#if GQ_KV_TYPE == 0 /* f32 */
typedef float gq_kv;
#elif GQ_KV_TYPE == 1 || GQ_KV_TYPE == 2 /* f16, bf16: the bits */
typedef uint16_t gq_kv;
#elif GQ_KV_TYPE == 4 /* q8_0 */
typedef int8_t gq_kv;
#else
#error "GQ_KV_TYPE: 0 (f32), 1 (f16), 2 (bf16) or 4 (q8_0)"
#endif

/* q8_0's values share a scale 32 at a time along head_dim; the other
 * types are one chunk of the whole head with no scale. */
#define GQ_KV_Q8 (GQ_KV_TYPE == 4)
#define GQ_KV_CHUNK (GQ_KV_Q8 ? 32 : GQ_HEAD_DIM)
#define GQ_KV_CHUNKS (GQ_HEAD_DIM / GQ_KV_CHUNK)
#define GQ_KV_VALUES (GQ_BLOCK * GQ_HEAD_DIM)
/* Values a cache line holds (each block_floats step, one prefetch), and
 * the columns of a V tile that share a q8_0 scale. */
#define GQ_KV_LINE ((int)(64 / sizeof(gq_kv)))
#define GQ_KV_RUN (GQ_KV_CHUNK < GQ_VTILE ? GQ_KV_CHUNK : GQ_VTILE)
/* One KV head's block of K or V: its values, then (q8_0) its f16 scales,
 * K's by (chunk, position), V's by (position, chunk). */
#define GQ_KV_BLOCK_BYTES (GQ_KV_VALUES * sizeof(gq_kv) + (GQ_KV_Q8 ? 2 * GQ_BLOCK * GQ_KV_CHUNKS : 0))

#if GQ_KV_TYPE == 2 || (GQ_KV_TYPE == 1 && !GQ_KV_F16C) || GQ_KV_Q8
static inline float kv_bits_float(uint32_t u) {
    union {
        uint32_t u;
        float f;
    } v;
    v.u = u;
    return v.f;
}

#endif

#if GQ_KV_TYPE != 0
static inline uint32_t kv_float_bits(float f) {
    union {
        uint32_t u;
        float f;
    } v;
    v.f = f;
    return v.u;
}

/* IEEE binary16 -> float without branches: the exponent and mantissa
 * shifted into a float's, times 2^112 (which also makes subnormals
 * right), infinity and NaN given back their exponent, then the sign.  gcc
 * vectorizes this; its _Float16 conversions it does one at a time. */
#if (GQ_KV_TYPE == 1 && !GQ_KV_F16C) || GQ_KV_Q8
static inline float kv_f16(uint32_t h) {
    uint32_t e = h & 0x7fffu;
    float v = kv_bits_float(e << 13) * ((float)(1ull << 56) * (float)(1ull << 56));
    return kv_bits_float(kv_float_bits(v) | (e >= 0x7c00u ? 0x7f800000u : 0u) | (h & 0x8000u) << 16);
}
#endif

#endif

/* A stored value as a float (q8_0: before its scale). */
#if GQ_KV_TYPE != 0 && !GQ_KV_F16C
static inline float kv_value(gq_kv x) {
#if GQ_KV_TYPE == 1
    return kv_f16(x);
#elif GQ_KV_TYPE == 2
    return kv_bits_float((uint32_t)x << 16);
#else
    return (float)x;
#endif
}
#endif

#if GQ_KV_TYPE == 1 || GQ_KV_Q8
/* float -> binary16, rounded to nearest even.  Finite values past f16's
 * largest, 65504, are clamped to it (an infinity in the cache would make
 * its softmax NaN); infinities and NaN stay what they are. */
static uint16_t kv_to_f16(float f) {
    uint32_t x = kv_float_bits(f), sign = x >> 16 & 0x8000u, a = x & 0x7fffffffu, h, rest, shift;
    if (a >= 0x7f800000u)
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477fe000u)
        return (uint16_t)(sign | 0x7bffu);
    if (a >= 0x38800000u) { /* normal: 2^-14 and up */
        h = ((a >> 23) - 112) << 10 | (a & 0x7fffffu) >> 13;
        rest = a & 0x1fffu;
        h += rest > 0x1000u || (rest == 0x1000u && (h & 1u));
        return (uint16_t)(sign | h);
    }
    shift = 126 - (a >> 23); /* subnormal: the value in units of 2^-24 */
    if (shift > 24)
        return (uint16_t)sign;
    a = (a & 0x7fffffu) | 0x800000u;
    h = a >> shift;
    rest = a & ((1u << shift) - 1);
    h += rest > 1u << (shift - 1) || (rest == 1u << (shift - 1) && (h & 1u));
    return (uint16_t)(sign | h);
}

#endif

#if GQ_KV_TYPE == 2
/* float -> bfloat16, rounded to nearest even; NaN stays NaN. */
static uint16_t kv_to_bf16(float f) {
    uint32_t x = kv_float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)(x >> 16 | 0x40u);
    return (uint16_t)((x + 0x7fffu + (x >> 16 & 1u)) >> 16);
}
#endif

#if GQ_KV_Q8
/* n floats at x (stride apart) -> n int8 q at out (ostride apart) with
 * d = amax / 127, q = x / d rounded half away from zero (ggml's
 * quantize_row_q8_0); returns d as f16.  A NaN anywhere makes d NaN, so
 * the values it scales are NaN too, as an f32 cache's would be. */
static uint16_t kv_quantize(const float *x, int n, int8_t *out, size_t ostride) {
    float amax = 0.0f, d, id;
    int i, bad = 0;
    for (i = 0; i < n; i++) {
        float a = x[i] < 0 ? -x[i] : x[i];
        bad |= x[i] != x[i];
        amax = a > amax ? a : amax;
    }
    d = amax / 127.0f;
    id = d > 0.0f ? 1.0f / d : 0.0f;
    for (i = 0; i < n; i++) {
        float v = bad ? 0.0f : x[i] * id;
        float t;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        t = (float)(int)v; /* v - t is exact, where v + 0.5f rounds 0.49999997f up to 1 */
        out[(size_t)i * ostride] = (int8_t)(int)(t + (float)(v - t >= 0.5f) - (float)(t - v >= 0.5f));
    }
    return bad ? (uint16_t)0x7e00u : kv_to_f16(d);
}
#endif

#if GQ_KV_TYPE != 0
/* A block of K (v 0) or V (v 1) in the cache's type -> out, its
 * GQ_KV_VALUES floats in the same order (q8_0's scales applied), which
 * the f32 kernels then read from L1.  Converting a block once serves
 * every query head of the group, where converting in the kernels' loops
 * did not vectorize well (measured 2-4x slower).  next: the next block,
 * asked for a line per line read. */
static void block_floats(float *restrict out, const unsigned char *restrict block, const unsigned char *next,
                         int v) {
    const gq_kv *x = (const gq_kv *)(const void *)block;
    int i, j;
    for (i = 0; i < GQ_KV_VALUES; i += GQ_KV_LINE) {
        GQ_PREFETCH(next + (size_t)i * sizeof(gq_kv));
#if GQ_KV_TYPE == 1 && defined(__AVX512F__)
        for (j = 0; j < GQ_KV_LINE; j += 16)
            _mm512_storeu_ps(out + i + j, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(x + i + j))));
#elif GQ_KV_TYPE == 1 && defined(__F16C__)
        for (j = 0; j < GQ_KV_LINE; j += 8)
            _mm256_storeu_ps(out + i + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + i + j))));
#else
        for (j = 0; j < GQ_KV_LINE; j++)
            out[i + j] = kv_value(x[i + j]);
#endif
    }
#if GQ_KV_Q8
    {
        const uint16_t *scales = (const uint16_t *)(const void *)(block + GQ_KV_VALUES);
        float d[GQ_KV_CHUNKS * GQ_BLOCK];
        int c, c0, u0, u;
        GQ_PREFETCH(next + GQ_KV_VALUES);
        for (i = 0; i < GQ_KV_CHUNKS * GQ_BLOCK; i++)
            d[i] = kv_f16(scales[i]);
        /* (Loops shaped so that gcc vectorizes each: a chunk's 16 scales,
         * then a broadcast scale over a run of a V tile's columns.) */
        if (!v) { /* (GQ_HEAD_DIM, GQ_BLOCK), scales (chunk, position) */
            for (c = 0; c < GQ_KV_CHUNKS; c++) {
                float sc[GQ_BLOCK];
                for (j = 0; j < GQ_BLOCK; j++)
                    sc[j] = d[c * GQ_BLOCK + j];
                for (i = c * GQ_KV_CHUNK; i < (c + 1) * GQ_KV_CHUNK; i++)
                    for (j = 0; j < GQ_BLOCK; j++)
                        out[i * GQ_BLOCK + j] *= sc[j];
            }
        } else { /* tiles, scales (position, chunk) */
            for (c0 = 0; c0 < GQ_HEAD_DIM; c0 += GQ_VTILE)
                for (j = 0; j < GQ_BLOCK; j++) {
                    float *row = out + v_at(j, c0);
                    for (u0 = 0; u0 < GQ_VTILE; u0 += GQ_KV_RUN) {
                        float sc = d[j * GQ_KV_CHUNKS + (c0 + u0) / GQ_KV_CHUNK];
                        for (u = 0; u < GQ_KV_RUN; u++)
                            row[u0 + u] *= sc;
                    }
                }
        }
    }
#else
    (void)v;
#endif
}
#endif

/* ---- where positions live: sinks and the ring ---- */

/* Positions each KV head of a layer without a window has room for:
 * whole blocks of the context. */
#define GQ_CACHE_POSITIONS ((GQ_CONTEXT + GQ_BLOCK - 1) / GQ_BLOCK * GQ_BLOCK)
#define GQ_CACHE_BLOCKS (GQ_CACHE_POSITIONS / GQ_BLOCK)
#define GQ_BLOCKS_OF(n) (((n) + GQ_BLOCK - 1) / GQ_BLOCK)

/* A windowed layer's blocks a KV head: the sinks', then a ring that holds
 * a window and a block besides (a query's window starts inside a block)
 * and GQ_RING_CHUNK positions more (a prompt chunk's tokens are all
 * stored before the first of them attends).  When that is the context or
 * more and positions stop at the context, the ring never wraps: the
 * context's blocks.  A constant expression, for the arena's size. */
#define GQ_WRAP_BLOCKS(w, s) (GQ_BLOCKS_OF(s) + GQ_BLOCKS_OF(w) + 1 + GQ_BLOCKS_OF(GQ_RING_CHUNK))
#define GQ_LAYER_BLOCKS(w, s)                                                                       \
    ((w) <= 0 || (!GQ_UNBOUNDED && GQ_WRAP_BLOCKS(w, s) >= GQ_CACHE_BLOCKS) ? GQ_CACHE_BLOCKS      \
                                                                             : GQ_WRAP_BLOCKS(w, s))

/* A paged cache (forward_seqs): a pool of pages of GQ_BLOCK positions,
 * each holding them for every layer, K and V, every KV head:
 * [layer][K then V][kv head][GQ_KV_BLOCK_BYTES].  A sequence's block
 * table maps its block a (positions 16a .. 16a + 15) to a page.  Its
 * positions stop at the context, so there is no ring: a window is only
 * a mask. */
#define GQ_PAGE_BYTES ((size_t)2 * GQ_LAYERS * GQ_KV_HEADS * GQ_KV_BLOCK_BYTES)

/* One layer's view of its cache.  Paged: block a is in page pages[a]
 * (the cache pointer is the pool plus page_offset).  Else block a is in
 * slot a below sink_blocks, else in slot sink_blocks + (a - sink_blocks)
 * % ring_blocks of the instance's own cache. */
typedef struct {
    int window;       /* a query at p sees the positions above p - window */
    int sinks;        /* and those below sinks */
    int sink_blocks;  /* blocks that hold the sinks, never overwritten */
    int ring_blocks;
    const int *pages; /* the block table, or NULL: the instance's own cache */
} Ring;

/* window <= 0: none; pages NULL: the instance's own cache. */
static Ring ring_of(int window, int sinks, const int *pages) {
    Ring r;
    r.window = window > 0 ? window : INT_MAX;
    r.sinks = window > 0 ? sinks : 0;
    r.sink_blocks = GQ_BLOCKS_OF(r.sinks);
    r.ring_blocks = (pages ? GQ_CACHE_BLOCKS : GQ_LAYER_BLOCKS(window, sinks)) - r.sink_blocks;
    r.pages = pages;
    return r;
}

/* KV head kv's block of positions a, in one layer's cache. */
static inline const unsigned char *cache_block(const void *cache, const Ring *r, int kv, int a) {
    int slot;
    if (r->pages)
        return (const unsigned char *)cache + (size_t)r->pages[a] * GQ_PAGE_BYTES + (size_t)kv * GQ_KV_BLOCK_BYTES;
    slot = a < r->sink_blocks ? a : r->sink_blocks + (a - r->sink_blocks) % r->ring_blocks;
    return (const unsigned char *)cache +
           ((size_t)kv * (size_t)(r->sink_blocks + r->ring_blocks) + (size_t)slot) * GQ_KV_BLOCK_BYTES;
}

/* The blocks queries at positions first .. last read, in position order:
 * the sink blocks, then from the block where the first one's window
 * starts to the last one's. */
typedef struct {
    int sinks; /* visits 0 .. sinks - 1 are blocks 0 .. sinks - 1 */
    int from;  /* visit i >= sinks is block from + i - sinks */
    int n;
} Visit;

static Visit visit_of(const Ring *r, int first, int last) {
    Visit v;
    v.sinks = r->sink_blocks < last / GQ_BLOCK + 1 ? r->sink_blocks : last / GQ_BLOCK + 1;
    v.from = first >= r->window ? (first - r->window + 1) / GQ_BLOCK : 0;
    if (v.from < v.sinks)
        v.from = v.sinks;
    v.n = v.sinks + (last / GQ_BLOCK >= v.from ? last / GQ_BLOCK - v.from + 1 : 0);
    return v;
}

/* visit_of for a prompt tile, whose visits go in pairs.  In a paged
 * cache a block's partner must not depend on where the tile starts (a
 * pair's sums round otherwise than two blocks', and forward_seqs
 * promises a sequence the same logits however its chunk falls in the
 * step's blocks): the blocks past the sinks pair as (sinks + 2i, sinks +
 * 2i + 1), so the first may be one before the window's (unseen: weight
 * 0), and prompt_tile does not pair the last sink with the next block. */
static Visit visit_pairs(const Ring *r, int first, int last) {
    Visit v = visit_of(r, first, last);
    if (r->pages && v.n > v.sinks && (v.from - v.sinks) % 2) {
        v.from--;
        v.n++;
    }
    return v;
}

static int visit_block(const Visit *v, int i) {
    return i < v->sinks ? i : v->from + i - v->sinks;
}

/* Lanes of the block at position t that a query at p reads: those below
 * *nb, the lanes at t .. p, but for [*cut, *cut_end): positions at or
 * past the sinks and at least a window back. */
static void block_lanes(const Ring *r, int t, int p, int *nb, int *cut, int *cut_end) {
    int d = p - t; /* lane j is d - j positions back */
    *nb = d < 0 ? 0 : d >= GQ_BLOCK ? GQ_BLOCK : d + 1;
    *cut_end = d < r->window ? 0 : d - r->window + 1 < *nb ? d - r->window + 1 : *nb;
    *cut = r->sinks - t > 0 ? (r->sinks - t < *cut_end ? r->sinks - t : *cut_end) : 0;
}

/* k, v (GQ_KV_HEADS, GQ_HEAD_DIM) of position pos -> one layer's caches
 * as r lays them out, in the cache's type, at pos's slot. */
static void kv_put(void *key_cache, void *value_cache, const Ring *r, int pos, const float *k,
                   const float *v) {
    int h, d, j = pos % GQ_BLOCK;
    for (h = 0; h < GQ_KV_HEADS; h++) {
        unsigned char *kb = (unsigned char *)(uintptr_t)cache_block(key_cache, r, h, pos / GQ_BLOCK);
        unsigned char *vb = (unsigned char *)(uintptr_t)cache_block(value_cache, r, h, pos / GQ_BLOCK);
        gq_kv *kv = (gq_kv *)(void *)kb, *vv = (gq_kv *)(void *)vb;
        const float *kh = k + (size_t)h * GQ_HEAD_DIM, *vh = v + (size_t)h * GQ_HEAD_DIM;
#if GQ_KV_Q8
        uint16_t *ks = (uint16_t *)(void *)(kb + GQ_KV_VALUES), *vs = (uint16_t *)(void *)(vb + GQ_KV_VALUES);
        int8_t vq[GQ_HEAD_DIM];
        for (d = 0; d < GQ_HEAD_DIM; d += GQ_KV_CHUNK) {
            ks[d / GQ_KV_CHUNK * GQ_BLOCK + j] = kv_quantize(kh + d, GQ_KV_CHUNK, kv + (size_t)d * GQ_BLOCK + j, GQ_BLOCK);
            vs[j * GQ_KV_CHUNKS + d / GQ_KV_CHUNK] = kv_quantize(vh + d, GQ_KV_CHUNK, vq + d, 1);
        }
        for (d = 0; d < GQ_HEAD_DIM; d++)
            vv[v_at(j, d)] = vq[d];
#else
        for (d = 0; d < GQ_HEAD_DIM; d++) {
#if GQ_KV_TYPE == 1
            kv[(size_t)d * GQ_BLOCK + (size_t)j] = kv_to_f16(kh[d]);
            vv[v_at(j, d)] = kv_to_f16(vh[d]);
#elif GQ_KV_TYPE == 2
            kv[(size_t)d * GQ_BLOCK + (size_t)j] = kv_to_bf16(kh[d]);
            vv[v_at(j, d)] = kv_to_bf16(vh[d]);
#else
            kv[(size_t)d * GQ_BLOCK + (size_t)j] = kh[d];
            vv[v_at(j, d)] = vh[d];
#endif
        }
#endif
    }
}

/* kv_put into the instance's own caches for a window and sinks. */
static void kv_store(void *key_cache, void *value_cache, int window, int sinks, int pos, const float *k,
                     const float *v) {
    Ring r = ring_of(window, sinks, NULL);
    kv_put(key_cache, value_cache, &r, pos, k, v);
}

/* ---- one token's attention ---- */

/* A part: the unnormalized result of one group over a span of positions,
 * o (GQ_GROUP, GQ_HEAD_DIM), then m (GQ_GROUP), each head's largest score,
 * then l (GQ_GROUP), its softmax denominator relative to m. */
#define GQ_PART (GQ_GROUP * GQ_HEAD_DIM + 2 * GQ_GROUP)

/* q (GQ_GROUP, GQ_HEAD_DIM) . the K block kb (GQ_HEAD_DIM, GQ_BLOCK) ->
 * score (GQ_GROUP, GQ_BLOCK), GQ_ATT_HEADS query heads at a time, each
 * with GQ_ATT_SPLIT sums over alternate elements of head_dim: enough
 * independent vector sums that the multiply-adds do not wait on each
 * other, few enough to stay in registers.  The heads' statements sit
 * inside the loop over the block's positions, so that gcc vectorizes that
 * loop whole and keeps each sum in one register.  next: the next K block,
 * asked for a line per line read here (see attend_span). */
static void score_block(float score[GQ_GROUP][GQ_BLOCK], const float *restrict q,
                        const float *restrict kb, const float *next) {
    float acc[GQ_ATT_SPLIT][GQ_ATT_HEADS][GQ_BLOCK], qd[GQ_ATT_SPLIT][GQ_ATT_HEADS];
    int g0, d, j;
    for (g0 = 0; g0 < GQ_GROUP; g0 += GQ_ATT_HEADS) {
        const float *qg = q + (size_t)g0 * GQ_HEAD_DIM;
        for (j = 0; j < GQ_BLOCK; j++) {
            for (int s = 0; s < GQ_ATT_SPLIT; s++) { /* gqac:unroll */
                for (int g = 0; g < GQ_ATT_HEADS; g++) { /* gqac:unroll */
                    acc[s][g][j] = 0.0f;
                }
            }
        }
        for (d = 0; d < GQ_HEAD_DIM; d += GQ_ATT_SPLIT) {
            for (int s = 0; s < GQ_ATT_SPLIT; s++) { /* gqac:unroll */
                for (int g = 0; g < GQ_ATT_HEADS; g++) { /* gqac:unroll */
                    qd[s][g] = qg[g * GQ_HEAD_DIM + d + s];
                }
                for (j = 0; j < GQ_BLOCK; j += GQ_LINE)
                    GQ_PREFETCH(next + (size_t)(d + s) * GQ_BLOCK + j);
            }
            for (j = 0; j < GQ_BLOCK; j++) {
                for (int s = 0; s < GQ_ATT_SPLIT; s++) { /* gqac:unroll */
                    for (int g = 0; g < GQ_ATT_HEADS; g++) { /* gqac:unroll */
                        acc[s][g][j] += qd[s][g] * kb[(d + s) * GQ_BLOCK + j];
                    }
                }
            }
        }
        for (j = 0; j < GQ_BLOCK; j++) {
            for (int g = 0; g < GQ_ATT_HEADS; g++) { /* gqac:unroll */
                float sum = 0.0f;
                for (int s = 0; s < GQ_ATT_SPLIT; s++) { /* gqac:unroll */
                    sum += acc[s][g][j];
                }
                score[g0 + g][j] = sum * GQ_ATT_SCALE;
            }
        }
    }
}

/* The group's scores of a block -> softmax weights relative to each
 * head's running maximum m, added lane by lane to the head's sums l
 * (GQ_GROUP, GQ_BLOCK).  Lanes from nb on and in [cut, cut_end) are not
 * seen: weight 0.  Only when a score passes its head's maximum is the
 * block's maximum taken and what came before (o, l) rescaled: after the
 * first blocks that is rare, and the common path has no horizontal
 * operation at all.  (A head whose blocks so far were all unseen weighs
 * them 1 against its maximum -FLT_MAX; the first seen score rescales
 * that by e^(-FLT_MAX - top) = 0.) */
static void weigh_block(float score[GQ_GROUP][GQ_BLOCK], float *restrict o, float *restrict m,
                        float l[GQ_GROUP][GQ_BLOCK], int nb, int cut, int cut_end) {
    int above = 0, g, j, d;
    for (g = 0; g < GQ_GROUP; g++) {
        for (j = nb; j < GQ_BLOCK; j++)
            score[g][j] = -FLT_MAX;
        for (j = cut; j < cut_end; j++)
            score[g][j] = -FLT_MAX;
    }
    for (g = 0; g < GQ_GROUP; g++)
        for (j = 0; j < GQ_BLOCK; j++)
            above |= score[g][j] > m[g];
    if (above) {
        for (g = 0; g < GQ_GROUP; g++) {
            float top = m[g], c;
            for (j = 0; j < GQ_BLOCK; j++)
                top = score[g][j] > top ? score[g][j] : top;
            if (top == m[g])
                continue;
            /* (a second inlined gq_exp_neg here stops gcc vectorizing
             * the block's) */
            c = GQ_EXPF(m[g] - top);
            for (j = 0; j < GQ_BLOCK; j++)
                l[g][j] *= c;
            for (d = 0; d < GQ_HEAD_DIM; d++)
                o[g * GQ_HEAD_DIM + d] *= c;
            m[g] = top;
        }
    }
    for (g = 0; g < GQ_GROUP; g++) {
        float top = m[g];
        for (j = 0; j < GQ_BLOCK; j++) {
            score[g][j] = gq_exp_neg(score[g][j] - top);
            l[g][j] += score[g][j];
        }
    }
}

/* o (GQ_GROUP, GQ_HEAD_DIM) += weights (GQ_GROUP, GQ_BLOCK) . the first
 * nb V rows of the block vb (kv_store's tiles).  Tiles of GQ_ATT_HEADS
 * heads by GQ_VTILE columns sit in registers while the block's rows of
 * the tile stream past, each V
 * element loaded once per tile and used by every head of it.  As in
 * score_block, the tile's statements sit inside the loop over lanes,
 * which gcc vectorizes whole.  next: the next V block, asked for a line
 * per line read here. */
static void update_block(float *restrict o, float weights[GQ_GROUP][GQ_BLOCK],
                         const float *restrict vb, const float *next, int nb) {
    float acc[GQ_ATT_VECS][GQ_ATT_HEADS][GQ_ATT_LANES], p[GQ_ATT_HEADS];
    int g0, c0, j, u;
    for (g0 = 0; g0 < GQ_GROUP; g0 += GQ_ATT_HEADS) {
        float *og = o + (size_t)g0 * GQ_HEAD_DIM;
        for (c0 = 0; c0 < GQ_HEAD_DIM; c0 += GQ_VTILE) {
            for (u = 0; u < GQ_ATT_LANES; u++) {
                for (int c = 0; c < GQ_ATT_VECS; c++) { /* gqac:unroll */
                    for (int g = 0; g < GQ_ATT_HEADS; g++) { /* gqac:unroll */
                        acc[c][g][u] = og[g * GQ_HEAD_DIM + c0 + c * GQ_ATT_LANES + u];
                    }
                }
            }
            for (j = 0; j < nb; j++) {
                const float *vr = vb + v_at(j, c0);
                for (int g = 0; g < GQ_ATT_HEADS; g++) { /* gqac:unroll */
                    p[g] = weights[g0 + g][j];
                }
                for (int c = 0; c < GQ_ATT_VECS; c++) { /* gqac:unroll */
                    GQ_PREFETCH(next + v_at(j, c0) + c * GQ_ATT_LANES);
                }
                for (u = 0; u < GQ_ATT_LANES; u++) {
                    for (int c = 0; c < GQ_ATT_VECS; c++) { /* gqac:unroll */
                        for (int g = 0; g < GQ_ATT_HEADS; g++) { /* gqac:unroll */
                            acc[c][g][u] += p[g] * vr[c * GQ_ATT_LANES + u];
                        }
                    }
                }
            }
            for (u = 0; u < GQ_ATT_LANES; u++) {
                for (int c = 0; c < GQ_ATT_VECS; c++) { /* gqac:unroll */
                    for (int g = 0; g < GQ_ATT_HEADS; g++) { /* gqac:unroll */
                        og[g * GQ_HEAD_DIM + c0 + c * GQ_ATT_LANES + u] = acc[c][g][u];
                    }
                }
            }
        }
    }
}

/* Visits i0 .. i1 - 1 of one group (KV head kv) for the query at pos: q
 * (GQ_GROUP, GQ_HEAD_DIM) -> o (GQ_GROUP, GQ_HEAD_DIM), unnormalized, and
 * ml: each head's largest score m, then its softmax denominator l
 * relative to m.  One pass over K and V with an online softmax kept per
 * block.
 *
 * One core alone does not keep enough reads in flight to stream memory
 * while it computes, so each block's kernels ask for the next block's
 * lines, one for each line they read: spread through the arithmetic, the
 * requests keep memory busy all along (asked for in one burst, they fill
 * the core's queue of misses, and memory's time adds to the arithmetic's). */
static void attend_span(float *restrict o, float *restrict ml, const float *restrict q,
                        const void *k, const void *v, const Ring *r, const Visit *vis, int kv,
                        int i0, int i1, int pos) {
    float m[GQ_GROUP], l[GQ_GROUP][GQ_BLOCK], score[GQ_GROUP][GQ_BLOCK];
#if GQ_KV_TYPE != 0
    float kf[GQ_KV_VALUES], vf[GQ_KV_VALUES]; /* the block as floats */
#endif
    int g, d, j, i, nb, cut, cut_end;
    for (g = 0; g < GQ_GROUP; g++) {
        m[g] = -FLT_MAX;
        for (j = 0; j < GQ_BLOCK; j++)
            l[g][j] = 0.0f;
        for (d = 0; d < GQ_HEAD_DIM; d++)
            o[g * GQ_HEAD_DIM + d] = 0.0f;
    }
    for (i = i0; i < i1; i++) {
        int a = visit_block(vis, i), next = visit_block(vis, i + 1 < i1 ? i + 1 : i);
        const unsigned char *kb = cache_block(k, r, kv, a), *kn = cache_block(k, r, kv, next);
        const unsigned char *vb = cache_block(v, r, kv, a), *vn = cache_block(v, r, kv, next);
        /* Positions past pos may never have been written: their scores
         * are computed (one vector either way) but not used. */
        block_lanes(r, a * GQ_BLOCK, pos, &nb, &cut, &cut_end);
#if GQ_KV_TYPE == 0
        score_block(score, q, (const float *)(const void *)kb, (const float *)(const void *)kn);
        weigh_block(score, o, m, l, nb, cut, cut_end);
        update_block(o, score, (const float *)(const void *)vb, (const float *)(const void *)vn, nb);
#else
        block_floats(kf, kb, kn, 0);
        score_block(score, q, kf, kf);
        weigh_block(score, o, m, l, nb, cut, cut_end);
        block_floats(vf, vb, vn, 1);
        update_block(o, score, vf, vf, nb);
#endif
    }
    for (g = 0; g < GQ_GROUP; g++) {
        float sum = 0.0f;
        for (j = 0; j < GQ_BLOCK; j++)
            sum += l[g][j];
        ml[g] = m[g];
        ml[GQ_GROUP + g] = sum;
    }
}

/* n parts of one group (GQ_PART floats apart) -> out (GQ_GROUP,
 * GQ_HEAD_DIM): each part's sums rescaled to the largest maximum. */
static void merge_parts(float *out, const float *parts, int n) {
    int g, d, c;
    for (g = 0; g < GQ_GROUP; g++) {
        float top = -FLT_MAX, denom = 0.0f;
        for (c = 0; c < n; c++)
            if (parts[c * GQ_PART + GQ_GROUP * GQ_HEAD_DIM + g] > top)
                top = parts[c * GQ_PART + GQ_GROUP * GQ_HEAD_DIM + g];
        for (d = 0; d < GQ_HEAD_DIM; d++)
            out[g * GQ_HEAD_DIM + d] = 0.0f;
        for (c = 0; c < n; c++) {
            const float *part = parts + c * GQ_PART;
            float w = GQ_EXPF(part[GQ_GROUP * GQ_HEAD_DIM + g] - top);
            denom += w * part[GQ_GROUP * GQ_HEAD_DIM + GQ_GROUP + g];
            for (d = 0; d < GQ_HEAD_DIM; d++)
                out[g * GQ_HEAD_DIM + d] += w * part[g * GQ_HEAD_DIM + d];
        }
        for (d = 0; d < GQ_HEAD_DIM; d++)
            out[g * GQ_HEAD_DIM + d] /= denom;
    }
}

/* Spans of positions shorter than this are not worth a thread. */
#define GQ_SPAN_MIN 64

/* How many spans each KV head's n positions are cut into: enough that
 * every thread has work when there are fewer KV heads than threads (MQA
 * above all), at most GQ_SPLIT, and no span shorter than GQ_SPAN_MIN. */
static int span_count(int n, int threads) {
    int spans = (threads + GQ_KV_HEADS - 1) / GQ_KV_HEADS;
    if (spans > GQ_SPLIT)
        spans = GQ_SPLIT;
    if (spans > n / GQ_SPAN_MIN)
        spans = n / GQ_SPAN_MIN;
    return spans < 1 ? 1 : spans;
}

/* floor(n * span / spans) in int arithmetic: 64-bit division would call a
 * library routine that a freestanding 32-bit target does not have. */
static int span_start(int n, int span, int spans) {
    return n / spans * span + n % spans * span / spans;
}

/* q (GQ_HEADS, GQ_HEAD_DIM) and one layer's caches (kv_store's layout for
 * the same window and sinks) with the positions the query at pos sees
 * filled -> out (GQ_HEADS, GQ_HEAD_DIM).  scratch: GQ_KV_HEADS * GQ_SPLIT
 * parts.  (KV head, span of blocks) pairs run across threads,
 * flash-decoding style, and their parts merge at the end. */
static void attention(float *out, const float *q, const void *key_cache, const void *value_cache,
                      int window, int sinks, int pos, float *scratch, int threads) {
    Ring r = ring_of(window, sinks, NULL);
    Visit vis = visit_of(&r, pos, pos);
    int n = vis.n * GQ_BLOCK, spans = span_count(n, threads), items = GQ_KV_HEADS * spans, i, h;
    /* The work is every query head's, G per KV row read: a group-blind
     * threshold left GQA's attention on one thread. */
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if((double)n * GQ_HEADS * GQ_HEAD_DIM >= GQ_PARALLEL_MIN)")
    for (i = 0; i < items; i++) {
        int kv = i / spans, span = i % spans;
        float *part = scratch + (size_t)i * GQ_PART;
        attend_span(part, part + GQ_GROUP * GQ_HEAD_DIM, q + (size_t)kv * GQ_GROUP * GQ_HEAD_DIM, key_cache,
                    value_cache, &r, &vis, kv, span_start(vis.n, span, spans),
                    span_start(vis.n, span + 1, spans), pos);
    }
    for (h = 0; h < GQ_KV_HEADS; h++)
        merge_parts(out + (size_t)h * GQ_GROUP * GQ_HEAD_DIM, scratch + (size_t)h * spans * GQ_PART, spans);
}

/* ---- a prompt's attention: tiles of tokens ---- */

/* A prompt tile is GQ_PROMPT_TOKENS tokens.  Its query rows, GQ_GROUP per
 * token (row r: head r % GQ_GROUP of token r / GQ_GROUP), all read the
 * same KV head, so each K and V block, read once from cache, serves all
 * of them: where a token alone gives G rows per K vector (1 for MHA), a
 * tile gives GQ_PROMPT_ROWS, and the register tiles below are
 * matmul_tile's.  The rows, rounded up to whole register tiles: */
#define GQ_PROMPT_ALL                                                                              \
    ((GQ_PROMPT_TOKENS * GQ_GROUP + GQ_PROMPT_ROWS - 1) / GQ_PROMPT_ROWS * GQ_PROMPT_ROWS)

/* Positions scored at once: two K blocks, two vectors of scores a row, so
 * that each broadcast element of q serves two multiply-adds. */
#define GQ_PAIR (2 * GQ_BLOCK)

/* Rows q[0 .. GQ_PROMPT_ROWS) against K blocks k0 and k1 (kv_store's
 * (GQ_HEAD_DIM, GQ_BLOCK) layout) -> s (GQ_PROMPT_ROWS, GQ_PAIR), scaled.
 * Each step along head_dim broadcasts an element of every row against a
 * vector of each block's positions: each K vector loaded serves every
 * row of the tile. */
static void prompt_scores(float s[GQ_PROMPT_ROWS][GQ_PAIR], const float *const q[GQ_PROMPT_ROWS],
                          const float *k0, const float *k1) {
    float acc[GQ_PROMPT_ROWS][2][GQ_BLOCK], qd[GQ_PROMPT_ROWS];
    int d, j;
    for (j = 0; j < GQ_BLOCK; j++) {
        for (int r = 0; r < GQ_PROMPT_ROWS; r++) { /* gqac:unroll */
            acc[r][0][j] = 0.0f;
            acc[r][1][j] = 0.0f;
        }
    }
    for (d = 0; d < GQ_HEAD_DIM; d++) {
        for (int r = 0; r < GQ_PROMPT_ROWS; r++) { /* gqac:unroll */
            qd[r] = q[r][d];
        }
        for (j = 0; j < GQ_BLOCK; j++) {
            for (int r = 0; r < GQ_PROMPT_ROWS; r++) { /* gqac:unroll */
                acc[r][0][j] += qd[r] * k0[d * GQ_BLOCK + j];
                acc[r][1][j] += qd[r] * k1[d * GQ_BLOCK + j];
            }
        }
    }
    for (j = 0; j < GQ_BLOCK; j++) {
        for (int r = 0; r < GQ_PROMPT_ROWS; r++) { /* gqac:unroll */
            s[r][j] = acc[r][0][j] * GQ_ATT_SCALE;
            s[r][GQ_BLOCK + j] = acc[r][1][j] * GQ_ATT_SCALE;
        }
    }
}

/* The largest of a pair's 32 scores (GQ_PAIR, which a negative array size
 * below checks): a tree of halves, each level written out so that gcc
 * makes it one vector operation, where a running maximum would be a chain
 * of 31 dependent ones. */
typedef char gq_pair_is_32[GQ_PAIR == 32 ? 1 : -1];

static float pair_max(const float x[GQ_PAIR]) {
    float h16[16], h8[8], h4[4];
    int j;
    for (j = 0; j < 16; j++)
        h16[j] = x[j] > x[j + 16] ? x[j] : x[j + 16];
    for (j = 0; j < 8; j++)
        h8[j] = h16[j] > h16[j + 8] ? h16[j] : h16[j + 8];
    for (j = 0; j < 4; j++)
        h4[j] = h8[j] > h8[j + 4] ? h8[j] : h8[j + 4];
    h4[0] = h4[0] > h4[2] ? h4[0] : h4[2];
    h4[1] = h4[1] > h4[3] ? h4[1] : h4[3];
    return h4[0] > h4[1] ? h4[0] : h4[1];
}

/* Sets the scores s (GQ_BLOCK) of the lanes of the block at position t
 * that a query at p does not see to -FLT_MAX. */
static void mask_lanes(float *s, const Ring *r, int t, int p) {
    int nb, cut, cut_end, j;
    block_lanes(r, t, p, &nb, &cut, &cut_end);
    for (j = nb; j < GQ_BLOCK; j++)
        s[j] = -FLT_MAX;
    for (j = cut; j < cut_end; j++)
        s[j] = -FLT_MAX;
}

/* The online softmax of rows r0 .. r0 + GQ_PROMPT_ROWS - 1 of a tile whose
 * first token is at position first, over the blocks at positions t0 and
 * t1: scores s -> weights relative to each row's running maximum m, added
 * lane by lane to the lanes l of its denominator.  As in weigh_block, the
 * maximum is taken and what came before (o, l) rescaled only when a score
 * passes it.  A row's lanes that its token does not see (later positions,
 * which may be unwritten cache, or out of its window) weigh 0. */
static void prompt_weigh(float s[GQ_PROMPT_ROWS][GQ_PAIR], float *restrict m,
                         float l[GQ_PROMPT_ROWS][GQ_BLOCK], float *const o[GQ_PROMPT_ROWS], int r0,
                         int first, const Ring *ring, int t0, int t1) {
    int r, j, d;
    for (r = 0; r < GQ_PROMPT_ROWS; r++) {
        int p = first + (r0 + r) / GQ_GROUP, above = 0;
        mask_lanes(s[r], ring, t0, p);
        mask_lanes(s[r] + GQ_BLOCK, ring, t1, p);
        for (j = 0; j < GQ_PAIR; j++)
            above |= s[r][j] > m[r];
        if (above) {
            float top = pair_max(s[r]), c = gq_exp_neg(m[r] - top);
            for (j = 0; j < GQ_BLOCK; j++)
                l[r][j] *= c;
            for (d = 0; d < GQ_HEAD_DIM; d++)
                o[r][d] *= c;
            m[r] = top;
        }
        for (j = 0; j < GQ_PAIR; j++)
            s[r][j] = gq_exp_neg(s[r][j] - m[r]);
        for (j = 0; j < GQ_BLOCK; j++)
            l[r][j] += s[r][j] + s[r][GQ_BLOCK + j];
    }
}

/* o (GQ_PROMPT_ROWS rows of GQ_HEAD_DIM) += p (GQ_PROMPT_ROWS, GQ_PAIR) .
 * the first n0 positions of V block v0 and n1 of v1.  The register tile:
 * GQ_PROMPT_ROWS rows by GQ_PROMPT_VECS vectors of columns; each V vector
 * loaded serves every row, each broadcast weight every vector. */
static void prompt_update(float *const o[GQ_PROMPT_ROWS], float p[GQ_PROMPT_ROWS][GQ_PAIR],
                          const float *v0, const float *v1, int n0, int n1) {
    float acc[GQ_PROMPT_ROWS][GQ_PROMPT_VECS][GQ_ATT_LANES], pj[GQ_PROMPT_ROWS];
    const float *vr[GQ_PROMPT_VECS];
    int c0, h, j, u;
    for (c0 = 0; c0 < GQ_HEAD_DIM; c0 += GQ_PROMPT_VECS * GQ_ATT_LANES) {
        for (u = 0; u < GQ_ATT_LANES; u++) {
            for (int r = 0; r < GQ_PROMPT_ROWS; r++) { /* gqac:unroll */
                for (int c = 0; c < GQ_PROMPT_VECS; c++) { /* gqac:unroll */
                    acc[r][c][u] = o[r][c0 + c * GQ_ATT_LANES + u];
                }
            }
        }
        for (h = 0; h < 2; h++) {
            const float *vb = h ? v1 : v0;
            int nb = h ? n1 : n0;
            for (j = 0; j < nb; j++) {
                for (int r = 0; r < GQ_PROMPT_ROWS; r++) { /* gqac:unroll */
                    pj[r] = p[r][h * GQ_BLOCK + j];
                }
                for (int c = 0; c < GQ_PROMPT_VECS; c++) { /* gqac:unroll */
                    vr[c] = vb + v_at(j, c0 + c * GQ_ATT_LANES);
                }
                for (u = 0; u < GQ_ATT_LANES; u++) {
                    for (int r = 0; r < GQ_PROMPT_ROWS; r++) { /* gqac:unroll */
                        for (int c = 0; c < GQ_PROMPT_VECS; c++) { /* gqac:unroll */
                            acc[r][c][u] += pj[r] * vr[c][u];
                        }
                    }
                }
            }
        }
        for (u = 0; u < GQ_ATT_LANES; u++) {
            for (int r = 0; r < GQ_PROMPT_ROWS; r++) { /* gqac:unroll */
                for (int c = 0; c < GQ_PROMPT_VECS; c++) { /* gqac:unroll */
                    o[r][c0 + c * GQ_ATT_LANES + u] = acc[r][c][u];
                }
            }
        }
    }
}

/* Where row r of a tile starts in its q and out: head r % GQ_GROUP of
 * token r / GQ_GROUP. */
static size_t prompt_row(int r) {
    return (size_t)(r / GQ_GROUP) * GQ_Q_DIM + (size_t)(r % GQ_GROUP) * GQ_HEAD_DIM;
}

/* Whether any query at positions lo .. hi sees a position of the block
 * at t. */
static int block_seen(const Ring *r, int t, int lo, int hi) {
    return t <= hi && (t < r->sinks || t + GQ_BLOCK - 1 > lo - r->window);
}

/* Lanes of the block at t that the query at hi (a row tile's last) may
 * read: the written ones up to it. */
static int lanes_upto(int t, int hi) {
    return hi - t + 1 < 0 ? 0 : hi - t + 1 > GQ_BLOCK ? GQ_BLOCK : hi - t + 1;
}

/* One tile: nt tokens (at most GQ_PROMPT_TOKENS) at positions first ..
 * first + nt - 1, KV head kv's group: q and out start at the tile's first
 * row, tokens GQ_Q_DIM floats apart; k and v are the layer's caches,
 * filled up to the last token.  Rows past the tile's last read zeros and
 * write to a sink, so the register tiles stay whole. */
static void prompt_tile(float *out, const float *q, const void *k, const void *v, const Ring *ring,
                        int kv, int first, int nt) {
    float m[GQ_PROMPT_ALL], l[GQ_PROMPT_ALL][GQ_BLOCK], s[GQ_PROMPT_ROWS][GQ_PAIR];
    float zeros[GQ_HEAD_DIM], sink[GQ_HEAD_DIM];
#if GQ_KV_TYPE != 0
    float kf[2][GQ_KV_VALUES], vf[2][GQ_KV_VALUES]; /* the pair's blocks as floats */
#endif
    const float *qr[GQ_PROMPT_ROWS];
    float *orow[GQ_PROMPT_ROWS];
    int rows = nt * GQ_GROUP, last = first + nt - 1, i, r0, r, d, pair;
    Visit vis = visit_pairs(ring, first, last);
    for (d = 0; d < GQ_HEAD_DIM; d++)
        zeros[d] = sink[d] = 0.0f;
    for (r = 0; r < GQ_PROMPT_ALL; r++) {
        m[r] = -FLT_MAX;
        for (d = 0; d < GQ_BLOCK; d++)
            l[r][d] = 0.0f;
    }
    for (r = 0; r < rows; r++)
        for (d = 0; d < GQ_HEAD_DIM; d++)
            out[prompt_row(r) + (size_t)d] = 0.0f;
    for (i = 0; i < vis.n; i += 1 + pair) {
        /* A visit alone (the last, or a paged cache's last sink of an odd
         * count) pairs with itself, its second half unseen (past the last
         * position the cache may end). */
        int a0, a1, t0, t1;
        pair = i + 1 < vis.n && (!ring->pages || i + 1 != vis.sinks);
        a0 = visit_block(&vis, i);
        a1 = pair ? visit_block(&vis, i + 1) : a0;
        t0 = a0 * GQ_BLOCK;
        t1 = pair ? a1 * GQ_BLOCK : last + 1;
#if GQ_KV_TYPE == 0
        const float *k0 = (const float *)(const void *)cache_block(k, ring, kv, a0);
        const float *k1 = (const float *)(const void *)cache_block(k, ring, kv, a1);
        const float *v0 = (const float *)(const void *)cache_block(v, ring, kv, a0);
        const float *v1 = (const float *)(const void *)cache_block(v, ring, kv, a1);
#else
        const float *k0 = kf[0], *k1 = kf[1], *v0 = vf[0], *v1 = vf[1];
        block_floats(kf[0], cache_block(k, ring, kv, a0), cache_block(k, ring, kv, a1), 0);
        block_floats(kf[1], cache_block(k, ring, kv, a1), cache_block(v, ring, kv, a0), 0);
        block_floats(vf[0], cache_block(v, ring, kv, a0), cache_block(v, ring, kv, a1), 1);
        block_floats(vf[1], cache_block(v, ring, kv, a1), cache_block(v, ring, kv, a1), 1);
#endif
        for (r0 = 0; r0 < rows; r0 += GQ_PROMPT_ROWS) {
            int end = r0 + GQ_PROMPT_ROWS < rows ? r0 + GQ_PROMPT_ROWS : rows;
            int lo = first + r0 / GQ_GROUP, hi = first + (end - 1) / GQ_GROUP;
            if (!block_seen(ring, t0, lo, hi) && !block_seen(ring, t1, lo, hi))
                continue;
            for (r = 0; r < GQ_PROMPT_ROWS; r++) {
                qr[r] = r0 + r < rows ? q + prompt_row(r0 + r) : zeros;
                orow[r] = r0 + r < rows ? out + prompt_row(r0 + r) : sink;
            }
            prompt_scores(s, qr, k0, k1);
            prompt_weigh(s, m + r0, l + r0, orow, r0, first, ring, t0, t1);
            prompt_update(orow, s, v0, v1, lanes_upto(t0, hi), lanes_upto(t1, hi));
        }
    }
    for (r = 0; r < rows; r++) {
        float sum = 0.0f;
        for (d = 0; d < GQ_BLOCK; d++)
            sum += l[r][d];
        for (d = 0; d < GQ_HEAD_DIM; d++)
            out[prompt_row(r) + (size_t)d] /= sum;
    }
}

/* (KV head, tile of tokens) pairs of a prompt of b tokens. */
static int prompt_tiles(int b) {
    return (b + GQ_PROMPT_TOKENS - 1) / GQ_PROMPT_TOKENS * GQ_KV_HEADS;
}

/* The attention of b consecutive tokens of a prompt, at positions p0 ..
 * p0 + b - 1 (b at most GQ_RING_CHUNK when the layer has a window), with
 * the caches filled up to the last: q (b, GQ_HEADS * GQ_HEAD_DIM) -> out
 * (the same).  (KV head, tile of tokens) pairs go across threads in one
 * parallel region, the last tiles, which have the most positions to read,
 * first. */
static void attention_prompt(float *out, const float *q, const void *key_cache, const void *value_cache,
                             int window, int sinks, int p0, int b, int threads) {
    Ring r = ring_of(window, sinks, NULL);
    int tiles = prompt_tiles(b), per_head = tiles / GQ_KV_HEADS, i;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(dynamic, 1) if((double)b * (p0 + b) * GQ_HEADS * GQ_HEAD_DIM >= GQ_PARALLEL_MIN)")
    for (i = 0; i < tiles; i++) {
        int kv = i % GQ_KV_HEADS, t0 = (per_head - 1 - i / GQ_KV_HEADS) * GQ_PROMPT_TOKENS;
        size_t at = (size_t)t0 * GQ_Q_DIM + (size_t)kv * GQ_GROUP * GQ_HEAD_DIM;
        prompt_tile(out + at, q + at, key_cache, value_cache, &r, kv, p0 + t0,
                    b - t0 < GQ_PROMPT_TOKENS ? b - t0 : GQ_PROMPT_TOKENS);
    }
}
