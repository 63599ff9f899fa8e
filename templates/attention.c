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
 * GQ_ATT_SCALE (shape.h).
 */
#include "shape.h" /* gqac:drop */
#include "parallel.h" /* gqac:drop */
#include "gqmath.h" /* gqac:drop */

#include <float.h>
#include <stddef.h>

/* One group: q (GQ_GROUP, GQ_HEAD_DIM) against k, v (pos + 1, GQ_HEAD_DIM)
 * -> out (GQ_GROUP, GQ_HEAD_DIM).  o holds the unnormalized outputs, m
 * and l each head's running maximum score and softmax denominator. */
static void attend_group(float *out, const float *q, const float *k, const float *v, int pos,
                         float *o) {
    float m[GQ_GROUP], l[GQ_GROUP], score[GQ_GROUP], acc[GQ_ACC_HEAD];
    int d, t;
    for (int g = 0; g < GQ_GROUP; g++) { /* gqac:unroll */
        m[g] = -FLT_MAX;
        l[g] = 0.0f;
        for (d = 0; d < GQ_HEAD_DIM; d++)
            o[g * GQ_HEAD_DIM + d] = 0.0f;
    }
    for (t = 0; t <= pos; t++) {
        const float *kt = k + (size_t)t * GQ_HEAD_DIM, *vt = v + (size_t)t * GQ_HEAD_DIM;
        for (int g = 0; g < GQ_GROUP; g++) { /* gqac:unroll */
            for (int u = 0; u < GQ_ACC_HEAD; u++) { /* gqac:unroll */
                acc[u] = 0.0f;
            }
            for (d = 0; d < GQ_HEAD_DIM; d += GQ_ACC_HEAD) {
                for (int u = 0; u < GQ_ACC_HEAD; u++) { /* gqac:unroll */
                    acc[u] += q[g * GQ_HEAD_DIM + d + u] * kt[d + u];
                }
            }
            for (int u = 1; u < GQ_ACC_HEAD; u++) { /* gqac:unroll */
                acc[0] += acc[u];
            }
            score[g] = acc[0] * GQ_ATT_SCALE;
        }
        for (int g = 0; g < GQ_GROUP; g++) { /* gqac:unroll */
            float p;
            if (score[g] > m[g]) { /* a new maximum: rescale what came before */
                float c = GQ_EXPF(m[g] - score[g]);
                l[g] *= c;
                for (d = 0; d < GQ_HEAD_DIM; d++)
                    o[g * GQ_HEAD_DIM + d] *= c;
                m[g] = score[g];
            }
            p = GQ_EXPF(score[g] - m[g]);
            l[g] += p;
            for (d = 0; d < GQ_HEAD_DIM; d++)
                o[g * GQ_HEAD_DIM + d] += p * vt[d];
        }
    }
    for (int g = 0; g < GQ_GROUP; g++) { /* gqac:unroll */
        float inv = 1.0f / l[g];
        for (d = 0; d < GQ_HEAD_DIM; d++)
            out[g * GQ_HEAD_DIM + d] = o[g * GQ_HEAD_DIM + d] * inv;
    }
}

/* q (GQ_HEADS, GQ_HEAD_DIM), key_cache and value_cache (GQ_KV_HEADS,
 * GQ_CONTEXT, GQ_HEAD_DIM) of one layer with positions 0..pos filled
 * -> out (GQ_HEADS, GQ_HEAD_DIM).  scratch: GQ_HEADS * GQ_HEAD_DIM floats.
 * KV heads run across threads. */
static void attention(float *out, const float *q, const float *key_cache,
                      const float *value_cache, int pos, float *scratch, int threads) {
    int h;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if((double)pos * GQ_KV_HEADS * GQ_HEAD_DIM >= GQ_PARALLEL_MIN)")
    for (h = 0; h < GQ_KV_HEADS; h++) {
        size_t group = (size_t)h * GQ_GROUP * GQ_HEAD_DIM, cache = (size_t)h * GQ_CONTEXT * GQ_HEAD_DIM;
        attend_group(out + group, q + group, key_cache + cache, value_cache + cache, pos,
                     scratch + group);
    }
}
