/*
 * attention.c: decode attention of one layer for one new token, grouped.
 *
 * Query head h reads KV head h / GQ_GROUP: consecutive query heads share a
 * KV head, as in Llama's repeat_kv and llama2.c.  For each KV head the
 * cached K and V rows are streamed once, in one pass with an online
 * softmax, and each row serves all GQ_GROUP query heads of the group while
 * it is in registers or L1.  That single read per group is what makes
 * GQA's smaller KV cache pay off as time, not only as memory.
 *
 * Holes: GQ_GROUP, GQ_HEAD_DIM, GQ_KV_HEADS, GQ_CONTEXT, GQ_ACC_HEAD,
 * GQ_ATT_SCALE, GQ_SPLIT (shape.h).
 */
#include "shape.h" /* gqac:drop */
#include "parallel.h" /* gqac:drop */
#include "gqmath.h" /* gqac:drop */

#include <float.h>
#include <stddef.h>
#include <stdint.h>

/* A part: the unnormalized result of one group over a span of positions,
 * o (GQ_GROUP, GQ_HEAD_DIM), then m (GQ_GROUP), each head's largest score,
 * then l (GQ_GROUP), its softmax denominator relative to m. */
#define GQ_PART (GQ_GROUP * GQ_HEAD_DIM + 2 * GQ_GROUP)

/* Positions scored together: one maximum, at most one rescale, and a
 * vectorizable exponential per block instead of per position. */
#define GQ_BLOCK 16

/* e^x for x <= 0 (a score minus its running maximum; below -87 it gives
 * e^-87, which next to e^0 from the maximum is nothing), without branches or library calls so that a block of them
 * vectorizes: 2^k e^r, r's exponential a degree-7 polynomial (relative
 * error below 2e-7).  The clamp to -87 is done on the bits, as integers:
 * a float comparison may trap, which stops gcc from turning it into a
 * select, and the loop would stay scalar. */
static float softmax_exp(float x) {
    union {
        float f;
        uint32_t u;
    } b, scale;
    uint32_t below;
    float k, r;
    b.f = x;
    below = 0u - (uint32_t)((b.u & 0x7fffffffu) > 0x42ae0000u); /* |x| > 87 */
    b.u = (b.u & ~below) | (0xc2ae0000u & below);                 /* -87 */
    x = b.f;
    k = (float)(int)(x * 1.44269504f - 0.5f);
    r = (x - k * 0.693145752f) - k * 1.42860677e-6f;
    scale.u = (uint32_t)((int)k + 127) << 23;
    return scale.f * (1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040))))))));
}

/* q (GQ_GROUP, GQ_HEAD_DIM) . the K rows tb .. tb + nb - 1 -> score
 * (GQ_GROUP, GQ_BLOCK), each K row loaded once for the whole group. */
static void score_block(float score[GQ_GROUP][GQ_BLOCK], const float *restrict q,
                        const float *restrict k, int tb, int nb) {
    float acc[GQ_ACC_HEAD];
    int d, j;
    for (j = 0; j < nb; j++) {
        const float *kt = k + (size_t)(tb + j) * GQ_HEAD_DIM;
        for (int g = 0; g < GQ_GROUP; g++) { /* gqac:unroll */
            for (int u = 0; u < GQ_ACC_HEAD; u++) { /* gqac:unroll */
                acc[u] = 0.0f;
            }
            for (d = 0; d < GQ_HEAD_DIM; d += GQ_ACC_HEAD) {
                for (int u = 0; u < GQ_ACC_HEAD; u++) { /* gqac:unroll */
                    acc[u] += q[g * GQ_HEAD_DIM + d + u] * kt[d + u];
                }
            }
            /* A tree of halves: each level is one vector add, where a
             * running sum would be GQ_ACC_HEAD - 1 scalar ones. */
            for (int w = GQ_ACC_HEAD / 2; w > 0; w /= 2) {
                for (int u = 0; u < w; u++) {
                    acc[u] += acc[u + w];
                }
            }
            score[g][j] = acc[0] * GQ_ATT_SCALE;
        }
    }
}

/* One head of the group over a block: scores to weights relative to the
 * running maximum m (rescaling o and l when it grows), then o += weights
 * . V rows. */
static void absorb_block(float *restrict o, float *restrict m, float *restrict l,
                         float *restrict score, const float *restrict v, int tb, int nb) {
    float top = *m, sum = 0.0f;
    int d, j;
    for (j = 0; j < nb; j++)
        top = score[j] > top ? score[j] : top;
    if (top > *m) { /* a new maximum: rescale what came before (a second
                       * inlined softmax_exp here stops gcc vectorizing the
                       * block's) */
        float c = GQ_EXPF(*m - top);
        *l *= c;
        for (d = 0; d < GQ_HEAD_DIM; d++)
            o[d] *= c;
        *m = top;
    }
    for (j = 0; j < nb; j++) {
        score[j] = softmax_exp(score[j] - top);
        sum += score[j];
    }
    *l += sum;
    if (nb == GQ_BLOCK) {
        /* A whole block: each o[d] takes the block's rows in registers, one
         * load and one store instead of one per row, in four independent
         * sums so that the FMAs do not wait on each other. */
        const float *vb = v + (size_t)tb * GQ_HEAD_DIM;
        for (d = 0; d < GQ_HEAD_DIM; d++) {
            float a0 = o[d], a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            for (j = 0; j < GQ_BLOCK; j += 4) {
                a0 += score[j] * vb[j * GQ_HEAD_DIM + d];
                a1 += score[j + 1] * vb[(j + 1) * GQ_HEAD_DIM + d];
                a2 += score[j + 2] * vb[(j + 2) * GQ_HEAD_DIM + d];
                a3 += score[j + 3] * vb[(j + 3) * GQ_HEAD_DIM + d];
            }
            o[d] = (a0 + a1) + (a2 + a3);
        }
        return;
    }
    for (j = 0; j < nb; j++) {
        const float *vt = v + (size_t)(tb + j) * GQ_HEAD_DIM;
        for (d = 0; d < GQ_HEAD_DIM; d++)
            o[d] += score[j] * vt[d];
    }
}

/* Positions t0 .. t1 - 1 of one group: q (GQ_GROUP, GQ_HEAD_DIM) against
 * k, v (positions, GQ_HEAD_DIM) -> part, in one pass over K and V with an
 * online softmax kept per block. */
static void attend_span(float *restrict part, const float *restrict q, const float *restrict k,
                        const float *restrict v, int t0, int t1) {
    float m[GQ_GROUP], l[GQ_GROUP], score[GQ_GROUP][GQ_BLOCK];
    float *o = part;
    int d, tb;
    for (int g = 0; g < GQ_GROUP; g++) { /* gqac:unroll */
        m[g] = -FLT_MAX;
        l[g] = 0.0f;
        for (d = 0; d < GQ_HEAD_DIM; d++)
            o[g * GQ_HEAD_DIM + d] = 0.0f;
    }
    for (tb = t0; tb < t1; tb += GQ_BLOCK) {
        int nb = t1 - tb < GQ_BLOCK ? t1 - tb : GQ_BLOCK;
        score_block(score, q, k, tb, nb);
        for (int g = 0; g < GQ_GROUP; g++) { /* gqac:unroll */
            absorb_block(o + g * GQ_HEAD_DIM, &m[g], &l[g], score[g], v, tb, nb);
        }
    }
    for (int g = 0; g < GQ_GROUP; g++) { /* gqac:unroll */
        part[GQ_GROUP * GQ_HEAD_DIM + g] = m[g];
        part[GQ_GROUP * GQ_HEAD_DIM + GQ_GROUP + g] = l[g];
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

/* How many spans each KV head's positions are cut into: enough that every
 * thread has work when there are fewer KV heads than threads (MQA above
 * all), at most GQ_SPLIT, and no span shorter than GQ_SPAN_MIN. */
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

/* q (GQ_HEADS, GQ_HEAD_DIM), key_cache and value_cache (GQ_KV_HEADS,
 * GQ_CONTEXT, GQ_HEAD_DIM) of one layer with positions 0..pos filled
 * -> out (GQ_HEADS, GQ_HEAD_DIM).  scratch: GQ_KV_HEADS * GQ_SPLIT parts.
 * (KV head, span) pairs run across threads, flash-decoding style, and
 * their parts merge at the end. */
static void attention(float *out, const float *q, const float *key_cache,
                      const float *value_cache, int pos, float *scratch, int threads) {
    int n = pos + 1, spans = span_count(n, threads), items = GQ_KV_HEADS * spans, i, h;
    /* The work is every query head's, G per KV row read: a group-blind
     * threshold left GQA's attention on one thread. */
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if((double)n * GQ_HEADS * GQ_HEAD_DIM >= GQ_PARALLEL_MIN)")
    for (i = 0; i < items; i++) {
        int kv = i / spans, span = i % spans;
        size_t group = (size_t)kv * GQ_GROUP * GQ_HEAD_DIM, cache = (size_t)kv * GQ_CONTEXT * GQ_HEAD_DIM;
        attend_span(scratch + (size_t)i * GQ_PART, q + group, key_cache + cache, value_cache + cache,
                    span_start(n, span, spans), span_start(n, span + 1, spans));
    }
    for (h = 0; h < GQ_KV_HEADS; h++)
        merge_parts(out + (size_t)h * GQ_GROUP * GQ_HEAD_DIM, scratch + (size_t)h * spans * GQ_PART, spans);
}
