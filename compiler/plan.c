/*
 * plan.c: Model -> kernel plan.  Needs: a Model that ir_stats accepted.
 * Provides: the value of every template hole (templates/shape.h lists
 * them) and the unroll limit, so the emitter only prints.
 *
 * The choices are register tiles, sized for AVX-512 (16-float vectors, 32
 * registers): attention's span the group's query heads (each K/V vector
 * is loaded once and used by every head of the tile); matrix-vector rows
 * use GQ_ACC_ROW accumulators; the prompt runs in blocks of GQ_BATCH
 * tokens whose matrix products (matmul) work on tiles of GQ_TILE_ROWS
 * weight rows by GQ_TILE_VECS vectors of GQ_LANES tokens.  AVX2 has half
 * the registers and spills some of these, SSE2 more; the results are the
 * same.  Loops longer than the unroll limit stay loops: fully unrolled
 * code that tcc compiles in 0.1 s can cost gcc tens of seconds.
 */
#include "gqac.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define UNROLL_LIMIT 16
/* matmul's register tile: 8 rows x 2 vectors of 16 tokens, 16 AVX-512
 * accumulators; each step loads 2 vectors of tokens and broadcasts 8
 * weights for 16 FMAs. */
#define PLAN_TILE_ROWS 8
#define PLAN_TILE_VECS 2
#define PLAN_LANES 16
/* A prompt's attention: tiles of 16 tokens, of at most 128 query rows
 * (each row keeps 16 lanes of its softmax denominator on the stack), so
 * fewer tokens at G > 8; register tiles of 8 query rows by 2 vectors of
 * positions in the scores, by 2 vectors of V columns in the update (where
 * head_dim has them), 16 AVX-512 accumulators each. */
#define PLAN_PROMPT_TOKENS 16
#define PLAN_PROMPT_MAX_ROWS 128
#define PLAN_PROMPT_ROWS 8
static void hole(Plan *p, const char *name, const char *value) {
    for (int i = 0; i < p->n_holes; i++)
        if (!strcmp(p->holes[i].name, name)) {
            p->holes[i].value = value;
            return;
        }
    if (p->n_holes == PLAN_MAX_HOLES) { /* a gqac bug: raise PLAN_MAX_HOLES */
        fputs("gqac: internal error: too many template holes\n", stderr);
        abort();
    }
    p->holes[p->n_holes++] = (Hole){name, value};
}

/* Checked formatters: every constant printed into C is in its C type's
 * range and finite, or the plan keeps the first hole that is not
 * (plan_check), so that sema's bounds are verified, not trusted. */
static void hole_bad(Plan *p, const char *name) {
    if (!p->bad)
        p->bad = name;
}

/* A value the templates hold in an int (at least 32 bits on every target). */
static void hole_int(Plan *p, Arena *a, const char *name, uint64_t v) {
    if (v > INT32_MAX)
        hole_bad(p, name);
    hole(p, name, arena_printf(a, "%llu", (unsigned long long)v));
}

/* A size or offset: a decimal constant, which C types as signed, so at
 * most long long's maximum. */
static void hole_size(Plan *p, Arena *a, const char *name, uint64_t v) {
    if (v > INT64_MAX)
        hole_bad(p, name);
    hole(p, name, arena_printf(a, "%llu", (unsigned long long)v));
}

/* A C floating constant that round-trips: "10000.0", "1e-05f".  A float
 * must be 0 or normal: gcc warns when a constant underflows to zero. */
static const char *c_float(Plan *p, Arena *a, const char *name, double v, bool single) {
    double mag = fabs(v);
    if (!isfinite(v) || (single && mag != 0 && (mag < FLT_MIN || mag > FLT_MAX)))
        hole_bad(p, name);
    char *s = arena_printf(a, single ? "%.9g" : "%.17g", isfinite(v) ? v : 0.0);
    bool has_point = strpbrk(s, ".eEn") != NULL;
    return arena_printf(a, "%s%s%s", s, has_point ? "" : ".0", single ? "f" : "");
}

/* The most independent accumulators (of most, most / 2, ..., 1; most a
 * power of two) that divide every n. */
static int accumulators(const int64_t *n, int count, int most) {
    for (int acc = most; acc > 1; acc /= 2) {
        bool divides = true;
        for (int i = 0; i < count; i++)
            divides = divides && n[i] % acc == 0;
        if (divides)
            return acc;
    }
    return 1;
}

/* Each RoPE pair's angle per position in turns, scaled by 2^64, so that
 * freestanding code gets pos * angle mod one turn exactly from integer
 * arithmetic.  A rate of a turn or more a position has no such step. */
static const char *rope_steps(Plan *p, Arena *a, const Model *m) {
    char *list = arena_alloc(a, (size_t)m->head_dim / 2 * 24 + 3), *o = list;
    *o++ = '{';
    for (int64_t i = 0; i < m->head_dim / 2; i++) {
        double step = ldexp(ir_rope_freq(m, i) / (2 * 3.14159265358979323846), 64);
        if (!(step >= 0 && step < 18446744073709551616.0)) { /* 2^64; NaN fails too */
            hole_bad(p, "GQ_ROPE_STEPS");
            step = 0;
        }
        o += sprintf(o, "%s0x%016llxull", i ? ", " : "", (unsigned long long)step);
    }
    *o++ = '}';
    *o = '\0';
    return list;
}

/* Each RoPE pair's angle per position in radians, for hosted code, which
 * multiplies by the position in double. */
static const char *rope_freqs(Plan *p, Arena *a, const Model *m) {
    char *list = arena_alloc(a, (size_t)m->head_dim / 2 * 27 + 3), *o = list;
    *o++ = '{';
    for (int64_t i = 0; i < m->head_dim / 2; i++) {
        double freq = ir_rope_freq(m, i);
        if (!isfinite(freq)) {
            hole_bad(p, "GQ_ROPE_FREQS");
            freq = 0;
        }
        o += sprintf(o, "%s%.17g", i ? ", " : "", freq);
    }
    *o++ = '}';
    *o = '\0';
    return list;
}

/* The largest power of two at most n. */
static int64_t floor_pow2(int64_t n) {
    int64_t p = 1;
    while (p * 2 <= n)
        p *= 2;
    return p;
}

/* Attention's register tiles (templates/attention.c): query heads of the
 * group taken together (the largest divisor of G up to 8); sums per head
 * over head_dim in the scores, so that heads x sums reach 8 independent
 * vector chains even at G 1; and the update's tile of V columns, vectors
 * of up to 16 lanes, heads x columns about 128 floats (8 AVX-512
 * registers, 16 AVX2 ones): tiles of 256 floats spill. */
static void plan_attention_tiles(Plan *p, Arena *a, int64_t group, int64_t head_dim) {
    int64_t heads = 8;
    while (group % heads)
        heads--;
    int64_t lanes = accumulators(&head_dim, 1, 16), vecs = head_dim / lanes;
    hole_int(p, a, "GQ_ATT_HEADS", (uint64_t)heads);
    hole_int(p, a, "GQ_ATT_SPLIT", (uint64_t)accumulators(&head_dim, 1, (int)floor_pow2(8 / heads)));
    hole_int(p, a, "GQ_ATT_LANES", (uint64_t)lanes);
    hole_int(p, a, "GQ_ATT_VECS", (uint64_t)accumulators(&vecs, 1, (int)floor_pow2(128 / (heads * lanes))));
    int64_t tokens = PLAN_PROMPT_MAX_ROWS / group;
    tokens = tokens > PLAN_PROMPT_TOKENS ? PLAN_PROMPT_TOKENS : tokens < 1 ? 1 : tokens;
    hole_int(p, a, "GQ_PROMPT_TOKENS", (uint64_t)tokens);
    hole_int(p, a, "GQ_PROMPT_ROWS", PLAN_PROMPT_ROWS);
    hole_int(p, a, "GQ_PROMPT_VECS", (uint64_t)accumulators(&vecs, 1, 2));
}

static void plan_shape(Plan *p, Arena *a, int64_t heads, int64_t kv_heads, int64_t head_dim,
                       int64_t context, DType kv_type, int batch, Target target) {
    p->target = target;
    hole_int(p, a, "GQ_KV_TYPE", (uint64_t)kv_type);
    hole_int(p, a, "GQ_RING_CHUNK", (uint64_t)batch);
    hole_int(p, a, "GQ_FREESTANDING", target == TARGET_FREESTANDING);
    hole_int(p, a, "GQ_HEADS", (uint64_t)heads);
    hole_int(p, a, "GQ_KV_HEADS", (uint64_t)kv_heads);
    hole_int(p, a, "GQ_HEAD_DIM", (uint64_t)head_dim);
    hole_int(p, a, "GQ_CONTEXT", (uint64_t)context);
    if (context > PLAN_MAX_CONTEXT)
        hole_bad(p, "GQ_CONTEXT");
    hole_int(p, a, "GQ_GROUP", (uint64_t)(heads / kv_heads));
    hole_int(p, a, "GQ_Q_DIM", (uint64_t)(heads * head_dim));
    hole_int(p, a, "GQ_KV_DIM", (uint64_t)(kv_heads * head_dim));
    hole(p, "GQ_ATT_SCALE", c_float(p, a, "GQ_ATT_SCALE", 1.0 / sqrt((double)head_dim), true));
    plan_attention_tiles(p, a, heads / kv_heads, head_dim);
    hole_int(p, a, "GQ_SPLIT", PLAN_SPLIT);
    p->unroll_limit = UNROLL_LIMIT;
}

void plan_attention(int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t context,
                    DType kv_type, Target target, Plan *p, Arena *a) {
    memset(p, 0, sizeof *p);
    plan_shape(p, a, heads, kv_heads, head_dim, context, kv_type, PLAN_BATCH, target);
    hole_int(p, a, "GQ_UNBOUNDED", 0);
    hole_int(p, a, "GQ_LAYERS", 1); /* a paged cache's page: this one layer's */
}

/* The tensor table (emitted by emit_c.c from p->slices): its size, where
 * each kind's first layer sits in it (GQ_T_<name>; a tied classifier and
 * absent biases get none, their code is compiled out), and which types
 * the kernels must handle (GQ_HAS_<type>: only those are compiled). */
static void plan_tensors(const Model *m, const Stats *s, Plan *p, Arena *a) {
    uint64_t packed;
    Slice *slices;
    p->n_slices = ir_slices(m, a, &slices, &packed);
    p->slices = slices;
    hole_size(p, a, "GQ_N_TENSORS", (uint64_t)p->n_slices);
    hole_size(p, a, "GQ_WEIGHT_BYTES", packed);
    for (int64_t i = 0; i < p->n_slices; i++)
        if (p->slices[i].layer <= 0)
            hole_size(p, a, arena_printf(a, "GQ_T_%s", p->slices[i].name), (uint64_t)i);
    static const char *const has[DT_COUNT] = {NULL, "GQ_HAS_F16", "GQ_HAS_BF16", "GQ_HAS_Q4_0",
                                              "GQ_HAS_Q8_0", "GQ_HAS_Q4_K", "GQ_HAS_Q6_K"};
    for (int t = DT_F16; t < DT_COUNT; t++)
        hole_int(p, a, has[t], ir_has_type(m, (DType)t));
    hole_int(p, a, "GQ_HAS_X8", ir_has_type(m, DT_Q8_0) || ir_has_type(m, DT_Q4_0));
    hole_int(p, a, "GQ_HAS_X8K", ir_has_type(m, DT_Q4_K) || ir_has_type(m, DT_Q6_K));
    hole_int(p, a, "GQ_HAS_ROWS", ir_tensor_type(m, TK_EMBED, -1) != DT_F32);
    hole_size(p, a, "GQ_STATE_BYTES", ir_state_bytes(s->n_slices));
}

/* A rank's holes (templates/forward.c's `#if GQ_RANKS > 1` parts): where
 * its share starts in the whole model, the whole model's shape and table
 * (emitted as gq_whole_tensors), and the state grown by the buffer of the
 * rank's logits (before the allgather). */
static void plan_shard(Plan *p, Arena *a, const Model *whole, const Model *local, const ShardPlan *sp,
                       const Stats *s) {
    uint64_t packed, part = 4 * (((uint64_t)local->vocab + 15) / 16 * 16);
    Slice *slices;
    p->ranks = sp->ranks;
    p->whole = whole;
    p->n_whole_slices = ir_slices(whole, a, &slices, &packed);
    p->whole_slices = slices;
    hole_int(p, a, "GQ_RANKS", (uint64_t)sp->ranks);
    hole_int(p, a, "GQ_RANK", (uint64_t)sp->rank);
    hole_int(p, a, "GQ_HEAD0", (uint64_t)sp->head0);
    hole_int(p, a, "GQ_KV_HEAD0", (uint64_t)sp->kv_head0);
    hole_int(p, a, "GQ_HIDDEN0", (uint64_t)sp->hidden0);
    hole_int(p, a, "GQ_VOCAB0", (uint64_t)sp->vocab0);
    hole_int(p, a, "GQ_VOCAB_ALL", (uint64_t)whole->vocab);
    hole_int(p, a, "GQ_WHOLE_HEADS", (uint64_t)whole->heads);
    hole_int(p, a, "GQ_WHOLE_KV_HEADS", (uint64_t)whole->kv_heads);
    hole_int(p, a, "GQ_WHOLE_HIDDEN", (uint64_t)whole->hidden);
    hole_size(p, a, "GQ_WHOLE_N_TENSORS", (uint64_t)p->n_whole_slices);
    hole_size(p, a, "GQ_WHOLE_WEIGHT_BYTES", packed);
    hole_size(p, a, "GQ_STATE_BYTES", ir_state_bytes(s->n_slices) + part);
    hole_size(p, a, "GQ_ARENA_BYTES", s->arena_bytes + part);
}

void plan_model(const Model *m, const char *prefix, CodeOptions opt, Plan *p, Arena *a) {
    Target target = opt.target;
    int batch = target == TARGET_FREESTANDING ? PLAN_BATCH_SMALL : PLAN_BATCH;
    Stats s;
    Diag quiet = {0};
    const Model *whole = m;
    Model *local = NULL;
    ShardPlan sp;
    char why[1024];
    bool split = opt.ranks > 1; /* the caller's ir_shard accepted ranks and rank */
    if (split && ir_shard(m, opt.ranks, opt.rank, local = arena_alloc(a, sizeof *local), &sp, why, sizeof why))
        m = local;
    ir_stats(m, &s, &quiet, 64, batch); /* the caller's front_end accepted these sizes */
    memset(p, 0, sizeof *p);
    if (split && m == whole)
        hole_bad(p, "GQ_RANKS");
    p->model = m;
    p->embedded = opt.embed_weights;
    p->train = opt.train;
    hole_int(p, a, "GQ_DIM", (uint64_t)m->dim);
    hole_int(p, a, "GQ_HIDDEN", (uint64_t)m->hidden);
    hole_int(p, a, "GQ_LAYERS", (uint64_t)m->layers);
    hole_int(p, a, "GQ_VOCAB", (uint64_t)m->vocab);
    plan_shape(p, a, m->heads, m->kv_heads, m->head_dim, m->context, m->kv_type, batch, target);
    hole_int(p, a, "GQ_WINDOW", (uint64_t)m->window);
    hole_int(p, a, "GQ_SINKS", (uint64_t)m->sinks);
    hole_int(p, a, "GQ_GLOBAL_EVERY", (uint64_t)m->global_every);
    hole_int(p, a, "GQ_UNBOUNDED", m->window > 0 && m->global_every == 0);
    if (target == TARGET_FREESTANDING)
        hole(p, "GQ_ROPE_STEPS", rope_steps(p, a, m));
    hole(p, "GQ_ROPE_FREQS", rope_freqs(p, a, m));
    hole_int(p, a, "GQ_ROPE_HALVES", m->rope_halves);
    hole_int(p, a, "GQ_TIED", m->tied);
    hole_int(p, a, "GQ_QKV_BIAS", m->qkv_bias);
    hole(p, "GQ_ROPE_THETA", c_float(p, a, "GQ_ROPE_THETA", m->rope_theta, false));
    hole(p, "GQ_NORM_EPS", c_float(p, a, "GQ_NORM_EPS", m->norm_eps, true));
    int64_t widths[] = {m->dim, m->hidden, m->heads * m->head_dim};
    hole_int(p, a, "GQ_ACC_ROW", (uint64_t)accumulators(widths, 3, 32));
    hole_int(p, a, "GQ_TILE_ROWS", PLAN_TILE_ROWS);
    /* a tile's tokens must divide the block's */
    hole_int(p, a, "GQ_TILE_VECS", (uint64_t)(batch / PLAN_LANES < PLAN_TILE_VECS ? batch / PLAN_LANES : PLAN_TILE_VECS));
    hole_int(p, a, "GQ_LANES", PLAN_LANES);
    hole_int(p, a, "GQ_BATCH", (uint64_t)batch);
    hole_int(p, a, "GQ_EMBEDDED", opt.embed_weights);
    hole_int(p, a, "GQ_ROPE_TABLE", opt.rope_table);
    p->rope_table = opt.rope_table ? m : NULL;
    plan_tensors(m, &s, p, a);
    uint64_t x8, x8k;
    ir_act_bytes(m, (uint64_t)batch, &x8, &x8k);
    hole_size(p, a, "GQ_X8_BYTES", x8);
    hole_size(p, a, "GQ_X8K_BYTES", x8k);
    hole_size(p, a, "GQ_KV_BYTES", s.kv_bytes);
    hole_size(p, a, "GQ_ARENA_BYTES", s.arena_bytes);
    hole(p, "GQ_NAME", arena_printf(a, "\"%s\"", cname_escape(a, m->name)));
    hole(p, "GQ_PREFIX", arena_printf(a, "\"%s\"", prefix));
    if (m != whole)
        plan_shard(p, a, whole, m, &sp, &s);
}

const char *plan_check(const Plan *p) {
    return p->bad;
}

const char *plan_hole(const Plan *p, const char *name) {
    for (int i = 0; i < p->n_holes; i++)
        if (!strcmp(p->holes[i].name, name))
            return p->holes[i].value;
    return NULL;
}
