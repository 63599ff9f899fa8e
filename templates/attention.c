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
 * head's positions are contiguous, in blocks of GQ_BLOCK positions.  K's
 * blocks are transposed to (GQ_HEAD_DIM, GQ_BLOCK).  Then a block's scores
 * for one query head are GQ_HEAD_DIM multiply-adds of a q element
 * (broadcast) by GQ_BLOCK positions (one vector): no horizontal sums,
 * which in row order cost as much as the dot products themselves once G
 * query heads share a row.  V's blocks are stored in the order the update
 * reads them, tile by tile (GQ_VTILE): each block of K or V is read front
 * to back.
 *
 * Holes: GQ_GROUP, GQ_HEAD_DIM, GQ_KV_HEADS, GQ_CONTEXT, GQ_ATT_HEADS,
 * GQ_ATT_SPLIT, GQ_ATT_LANES, GQ_ATT_VECS, GQ_ATT_SCALE, GQ_SPLIT,
 * GQ_PROMPT_TOKENS, GQ_PROMPT_ROWS, GQ_PROMPT_VECS (shape.h).
 */
#include "shape.h" /* gqac:drop */
#include "parallel.h" /* gqac:drop */
#include "gqmath.h" /* gqac:drop */

#include <float.h>
#include <stddef.h>
#include <stdint.h>

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

/* Positions each KV head has room for: whole blocks. */
#define GQ_CACHE_POSITIONS ((GQ_CONTEXT + GQ_BLOCK - 1) / GQ_BLOCK * GQ_BLOCK)

/* k, v (GQ_KV_HEADS, GQ_HEAD_DIM) of position pos -> one layer's caches,
 * (GQ_KV_HEADS, GQ_CACHE_POSITIONS, GQ_HEAD_DIM) floats each. */
static void kv_store(float *key_cache, float *value_cache, int pos, const float *k, const float *v) {
    size_t block = (size_t)(pos / GQ_BLOCK) * GQ_BLOCK * GQ_HEAD_DIM;
    int h, d, j = pos % GQ_BLOCK;
    for (h = 0; h < GQ_KV_HEADS; h++) {
        size_t head = (size_t)h * GQ_CACHE_POSITIONS * GQ_HEAD_DIM + block;
        for (d = 0; d < GQ_HEAD_DIM; d++) {
            key_cache[head + (size_t)d * GQ_BLOCK + (size_t)j] = k[h * GQ_HEAD_DIM + d];
            value_cache[head + v_at(j, d)] = v[h * GQ_HEAD_DIM + d];
        }
    }
}

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

/* The group's scores of a block, nb positions of them -> softmax weights
 * relative to each head's running maximum m (0 from position nb on),
 * added lane by lane to the head's sums l (GQ_GROUP, GQ_BLOCK).  Only
 * when a score passes its head's maximum is the block's maximum taken and
 * what came before (o, l) rescaled: after the first blocks that is rare,
 * and the common path has no horizontal operation at all. */
static void weigh_block(float score[GQ_GROUP][GQ_BLOCK], float *restrict o, float *restrict m,
                        float l[GQ_GROUP][GQ_BLOCK], int nb) {
    int above = 0, g, j, d;
    for (g = 0; g < GQ_GROUP; g++)
        for (j = nb; j < GQ_BLOCK; j++)
            score[g][j] = -FLT_MAX;
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

/* Blocks b0 .. b1 - 1 of one group, positions below n only: q (GQ_GROUP,
 * GQ_HEAD_DIM) against k and v (one KV head's caches) -> o (GQ_GROUP,
 * GQ_HEAD_DIM), unnormalized, and ml: each head's largest score m, then
 * its softmax denominator l relative to m.  One pass over K and V with an
 * online softmax kept per block.
 *
 * One core alone does not keep enough reads in flight to stream memory
 * while it computes, so each block's kernels ask for the next block's
 * lines, one for each line they read: spread through the arithmetic, the
 * requests keep memory busy all along (asked for in one burst, they fill
 * the core's queue of misses, and memory's time adds to the arithmetic's). */
static void attend_span(float *restrict o, float *restrict ml, const float *restrict q,
                        const float *restrict k, const float *restrict v, int b0, int b1, int n) {
    float m[GQ_GROUP], l[GQ_GROUP][GQ_BLOCK], score[GQ_GROUP][GQ_BLOCK];
    int g, d, j, b;
    for (g = 0; g < GQ_GROUP; g++) {
        m[g] = -FLT_MAX;
        for (j = 0; j < GQ_BLOCK; j++)
            l[g][j] = 0.0f;
        for (d = 0; d < GQ_HEAD_DIM; d++)
            o[g * GQ_HEAD_DIM + d] = 0.0f;
    }
    for (b = b0; b < b1; b++) {
        int t = b * GQ_BLOCK, nb = n - t < GQ_BLOCK ? n - t : GQ_BLOCK;
        /* The last block's positions from n on were never written: their
         * scores are computed (one vector either way) but not used. */
        size_t next = (size_t)(b + 1 < b1 ? b + 1 : b) * GQ_BLOCK * GQ_HEAD_DIM;
        score_block(score, q, k + (size_t)t * GQ_HEAD_DIM, k + next);
        weigh_block(score, o, m, l, nb);
        update_block(o, score, v + (size_t)t * GQ_HEAD_DIM, v + next, nb);
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

/* q (GQ_HEADS, GQ_HEAD_DIM) and one layer's caches (kv_store's layout)
 * with positions 0..pos filled -> out (GQ_HEADS, GQ_HEAD_DIM).  scratch:
 * GQ_KV_HEADS * GQ_SPLIT parts.  (KV head, span of blocks) pairs run
 * across threads, flash-decoding style, and their parts merge at the end. */
static void attention(float *out, const float *q, const float *key_cache,
                      const float *value_cache, int pos, float *scratch, int threads) {
    int n = pos + 1, blocks = (n + GQ_BLOCK - 1) / GQ_BLOCK, spans = span_count(n, threads);
    int items = GQ_KV_HEADS * spans, i, h;
    /* The work is every query head's, G per KV row read: a group-blind
     * threshold left GQA's attention on one thread. */
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if((double)n * GQ_HEADS * GQ_HEAD_DIM >= GQ_PARALLEL_MIN)")
    for (i = 0; i < items; i++) {
        int kv = i / spans, span = i % spans;
        size_t group = (size_t)kv * GQ_GROUP * GQ_HEAD_DIM, cache = (size_t)kv * GQ_CACHE_POSITIONS * GQ_HEAD_DIM;
        float *part = scratch + (size_t)i * GQ_PART;
        attend_span(part, part + GQ_GROUP * GQ_HEAD_DIM, q + group, key_cache + cache, value_cache + cache,
                    span_start(blocks, span, spans), span_start(blocks, span + 1, spans), n);
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

/* The online softmax of rows r0 .. r0 + GQ_PROMPT_ROWS - 1 of a tile whose
 * first token is at position first, over the pair of blocks at positions
 * at ..: scores s -> weights relative to each row's running maximum m,
 * added lane by lane to the lanes l of its denominator.  As in
 * weigh_block, the maximum is taken and what came before (o, l) rescaled
 * only when a score passes it.  Causal: a row's positions past its
 * token's are weighed 0 (and may be unwritten cache). */
static void prompt_weigh(float s[GQ_PROMPT_ROWS][GQ_PAIR], float *restrict m,
                         float l[GQ_PROMPT_ROWS][GQ_BLOCK], float *const o[GQ_PROMPT_ROWS], int r0,
                         int first, int at) {
    int r, j, d;
    for (r = 0; r < GQ_PROMPT_ROWS; r++) {
        int seen = first + (r0 + r) / GQ_GROUP - at + 1, above = 0;
        for (j = seen < 0 ? 0 : seen; j < GQ_PAIR; j++)
            s[r][j] = -FLT_MAX;
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
 * the pair's first n positions of V (blocks v0, v1).  The register tile:
 * GQ_PROMPT_ROWS rows by GQ_PROMPT_VECS vectors of columns; each V vector
 * loaded serves every row, each broadcast weight every vector. */
static void prompt_update(float *const o[GQ_PROMPT_ROWS], float p[GQ_PROMPT_ROWS][GQ_PAIR],
                          const float *v0, const float *v1, int n) {
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
        for (h = 0; h < 2 && h * GQ_BLOCK < n; h++) {
            const float *vb = h ? v1 : v0;
            int nb = n - h * GQ_BLOCK < GQ_BLOCK ? n - h * GQ_BLOCK : GQ_BLOCK;
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

/* One tile: nt tokens (at most GQ_PROMPT_TOKENS) at positions first ..
 * first + nt - 1, one KV head's group: q and out start at the tile's
 * first row, tokens GQ_Q_DIM floats apart; k and v are the KV head's
 * caches, filled up to the last token.  Rows past the tile's last read
 * zeros and write to a sink, so the register tiles stay whole. */
static void prompt_tile(float *out, const float *q, const float *k, const float *v, int first, int nt) {
    float m[GQ_PROMPT_ALL], l[GQ_PROMPT_ALL][GQ_BLOCK], s[GQ_PROMPT_ROWS][GQ_PAIR];
    float zeros[GQ_HEAD_DIM], sink[GQ_HEAD_DIM];
    const float *qr[GQ_PROMPT_ROWS];
    float *orow[GQ_PROMPT_ROWS];
    int rows = nt * GQ_GROUP, last = first + nt - 1, at, r0, r, d;
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
    for (at = 0; at <= last; at += GQ_PAIR) {
        /* When no row sees the pair's second block it is the first again:
         * past the last position the cache may end. */
        size_t second = at + GQ_BLOCK <= last ? (size_t)GQ_BLOCK * GQ_HEAD_DIM : 0;
        const float *k0 = k + (size_t)at * GQ_HEAD_DIM, *v0 = v + (size_t)at * GQ_HEAD_DIM;
        for (r0 = 0; r0 < rows; r0 += GQ_PROMPT_ROWS) {
            int end = r0 + GQ_PROMPT_ROWS < rows ? r0 + GQ_PROMPT_ROWS : rows;
            int seen = first + (end - 1) / GQ_GROUP - at + 1; /* by the row tile's last row */
            if (seen <= 0)
                continue;
            for (r = 0; r < GQ_PROMPT_ROWS; r++) {
                qr[r] = r0 + r < rows ? q + prompt_row(r0 + r) : zeros;
                orow[r] = r0 + r < rows ? out + prompt_row(r0 + r) : sink;
            }
            prompt_scores(s, qr, k0, k0 + second);
            prompt_weigh(s, m + r0, l + r0, orow, r0, first, at);
            prompt_update(orow, s, v0, v0 + second, seen < GQ_PAIR ? seen : GQ_PAIR);
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
 * p0 + b - 1, with the caches filled up to the last: q (b, GQ_HEADS *
 * GQ_HEAD_DIM) -> out (the same).  (KV head, tile of tokens) pairs go
 * across threads in one parallel region, the last tiles, which have the
 * most positions to read, first. */
static void attention_prompt(float *out, const float *q, const float *key_cache,
                             const float *value_cache, int p0, int b, int threads) {
    int tiles = prompt_tiles(b), per_head = tiles / GQ_KV_HEADS, i;
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(dynamic, 1) if((double)b * (p0 + b) * GQ_HEADS * GQ_HEAD_DIM >= GQ_PARALLEL_MIN)")
    for (i = 0; i < tiles; i++) {
        int kv = i % GQ_KV_HEADS, t0 = (per_head - 1 - i / GQ_KV_HEADS) * GQ_PROMPT_TOKENS;
        size_t at = (size_t)t0 * GQ_Q_DIM + (size_t)kv * GQ_GROUP * GQ_HEAD_DIM;
        size_t cache = (size_t)kv * GQ_CACHE_POSITIONS * GQ_HEAD_DIM;
        prompt_tile(out + at, q + at, key_cache + cache, value_cache + cache, p0 + t0,
                    b - t0 < GQ_PROMPT_TOKENS ? b - t0 : GQ_PROMPT_TOKENS);
    }
}
