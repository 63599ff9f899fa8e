/*
 * forward.c: one model instance and its forward pass, llama2.c style: the
 * weights as pointers into the caller's checkpoint, the state as buffers
 * in the caller's arena, and forward() top to bottom; forward_batch() is
 * the same pass over a block of prompt tokens at a time, its projections
 * matrix-matrix products that read each weight once per block.
 *
 * Holes: every GQ_ macro of shape.h.  The gqm_ / GQM_ prefix becomes the
 * model's prefix.
 */
#include "model.h" /* gqac:drop: the generated .c includes its own header first */
#include "shape.h" /* gqac:drop */
#include "kernels.c" /* gqac:drop */
#include "attention.c" /* gqac:drop */

#include <stdint.h>

typedef struct {
    const float *token_embedding; /* (vocab, dim) */
    const float *rms_att;         /* (layer, dim) */
    const float *wq;              /* (layer, heads * head_dim, dim) */
    const float *wk;              /* (layer, kv_heads * head_dim, dim) */
    const float *wv;              /* (layer, kv_heads * head_dim, dim) */
    const float *wo;              /* (layer, dim, heads * head_dim) */
    const float *rms_ffn;         /* (layer, dim) */
    const float *w1;              /* (layer, hidden, dim) */
    const float *w2;              /* (layer, dim, hidden) */
    const float *w3;              /* (layer, hidden, dim) */
    const float *rms_final;       /* (dim) */
    const float *wcls;            /* (vocab, dim) */
    const float *bq;              /* (layer, heads * head_dim), or NULL */
    const float *bk;              /* (layer, kv_heads * head_dim), or NULL */
    const float *bv;              /* (layer, kv_heads * head_dim), or NULL */
} Weights;

struct gqa_state {
    Weights w;
    int threads;     /* < 1: OpenMP's default */
    int n_pos;       /* positions in the KV cache */
    /* Activations, one row per token of a prompt block (GQ_BATCH rows);
     * forward() uses the first row. */
    float *x;        /* (batch, dim) the residual stream */
    float *xb;       /* (batch, dim) normalized x */
    float *xb2;      /* (batch, dim) a block's output */
    float *hb;       /* (batch, hidden) FFN gate */
    float *hb2;      /* (batch, hidden) FFN up */
    float *q;        /* (batch, heads * head_dim) */
    float *k;        /* (batch, kv_heads * head_dim) the position's key */
    float *v;        /* (batch, kv_heads * head_dim) the position's value */
    float *att;      /* (batch, heads * head_dim) attention output */
    float *att_acc;  /* (kv_heads * split, part) attention's partial results */
    float *rope;     /* (batch, head_dim) the position's cos and sin */
    float *key_cache;   /* (layer, ...) each layer's in kv_store's layout */
    float *value_cache; /* (layer, ...) */
};

/* The arena: the state, then each buffer rounded up to 16 floats so every
 * one starts on a 64-byte line, then the KV cache.  compiler/ir.c computes
 * GQ_ARENA_BYTES with the same formula; the check below holds them equal. */
#define GQ_ROUND16(n) (((size_t)(n) + 15) / 16 * 16)
#define GQ_STATE_RESERVE 4096
#define GQ_ROWS(n) ((size_t)GQ_BATCH * (size_t)(n)) /* a prompt block's rows of n */
#define GQ_SCRATCH_FLOATS                                                                       \
    (3 * GQ_ROUND16(GQ_ROWS(GQ_DIM)) + 2 * GQ_ROUND16(GQ_ROWS(GQ_HIDDEN)) +                     \
     2 * GQ_ROUND16(GQ_ROWS(GQ_Q_DIM)) + GQ_ROUND16(GQ_SPLIT * (GQ_Q_DIM + 2 * GQ_HEADS)) +     \
     2 * GQ_ROUND16(GQ_ROWS(GQ_KV_DIM)) + GQ_ROUND16(GQ_ROWS(GQ_HEAD_DIM)))

/* Each of K and V: attention.c's layout, every layer's positions rounded
 * up to whole blocks. */
#define GQ_LAYER_CACHE ((size_t)GQ_KV_HEADS * GQ_CACHE_POSITIONS * GQ_HEAD_DIM)
#define GQ_CACHE_FLOATS (GQ_LAYERS * GQ_LAYER_CACHE)

typedef char gqm_check_arena[GQ_ARENA_BYTES == GQ_STATE_RESERVE + 4 * GQ_SCRATCH_FLOATS +
                                                   2 * 4 * GQ_ROUND16(GQ_CACHE_FLOATS)
                                 ? 1
                                 : -1];
typedef char gqm_check_state[sizeof(struct gqa_state) <= GQ_STATE_RESERVE ? 1 : -1];

static float *take(unsigned char **at, size_t floats) {
    float *p = (float *)(void *)*at;
    *at += GQ_ROUND16(floats) * sizeof(float);
    return p;
}

#if GQ_EMBEDDED
/* Each tensor compiled in as its own object (the weights .c files gqac
 * writes); bits, not float literals, so that every compiler reads the
 * exact values at a fraction of the cost.  Reading the float member of
 * the union reinterprets the bits, as C99 allows. */
#define GQ_EMBED(name) \
    extern const union gqm_w_##name { uint32_t bits[GQ_SIZE_##name]; float f[GQ_SIZE_##name]; } gqm_w_##name
GQ_EMBED(token_embedding);
GQ_EMBED(rms_att);
GQ_EMBED(wq);
GQ_EMBED(wk);
GQ_EMBED(wv);
GQ_EMBED(wo);
GQ_EMBED(rms_ffn);
GQ_EMBED(w1);
GQ_EMBED(w2);
GQ_EMBED(w3);
GQ_EMBED(rms_final);
#if !GQ_TIED
GQ_EMBED(wcls);
#endif
#if GQ_QKV_BIAS
GQ_EMBED(bq);
GQ_EMBED(bk);
GQ_EMBED(bv);
#endif
/* A tensor in the checkpoint p, or, with p NULL, the one compiled in. */
#define GQ_TENSOR(name) (p ? p + GQ_OFF_##name : gqm_w_##name.f)
#else
#define GQ_TENSOR(name) (p + GQ_OFF_##name)
#endif

static void map_weights(Weights *w, const float *p) {
    w->token_embedding = GQ_TENSOR(token_embedding);
    w->rms_att = GQ_TENSOR(rms_att);
    w->wq = GQ_TENSOR(wq);
    w->wk = GQ_TENSOR(wk);
    w->wv = GQ_TENSOR(wv);
    w->wo = GQ_TENSOR(wo);
    w->rms_ffn = GQ_TENSOR(rms_ffn);
    w->w1 = GQ_TENSOR(w1);
    w->w2 = GQ_TENSOR(w2);
    w->w3 = GQ_TENSOR(w3);
    w->rms_final = GQ_TENSOR(rms_final);
#if GQ_TIED
    w->wcls = w->token_embedding;
#else
    w->wcls = GQ_TENSOR(wcls);
#endif
#if GQ_QKV_BIAS
    w->bq = GQ_TENSOR(bq);
    w->bk = GQ_TENSOR(bk);
    w->bv = GQ_TENSOR(bv);
#else
    w->bq = w->bk = w->bv = NULL;
#endif
}

/* The state at the start of the arena, then its buffers. */
static gqa_state *lay_out(void *arena) {
    unsigned char *at = arena;
    gqa_state *s = (gqa_state *)arena;
    s->threads = 0;
    s->n_pos = 0;
    at += GQ_STATE_RESERVE;
    s->x = take(&at, GQ_ROWS(GQ_DIM));
    s->xb = take(&at, GQ_ROWS(GQ_DIM));
    s->xb2 = take(&at, GQ_ROWS(GQ_DIM));
    s->hb = take(&at, GQ_ROWS(GQ_HIDDEN));
    s->hb2 = take(&at, GQ_ROWS(GQ_HIDDEN));
    s->q = take(&at, GQ_ROWS(GQ_Q_DIM));
    s->att = take(&at, GQ_ROWS(GQ_Q_DIM));
    s->att_acc = take(&at, GQ_SPLIT * (GQ_Q_DIM + 2 * GQ_HEADS));
    s->k = take(&at, GQ_ROWS(GQ_KV_DIM));
    s->v = take(&at, GQ_ROWS(GQ_KV_DIM));
    s->rope = take(&at, GQ_ROWS(GQ_HEAD_DIM));
    s->key_cache = take(&at, GQ_CACHE_FLOATS);
    s->value_cache = take(&at, GQ_CACHE_FLOATS);
    return s;
}

static int check_arena(gqa_state **out, void *arena, size_t arena_bytes) {
    if (!out)
        return GQA_EARG;
    *out = NULL;
    if (!arena || arena_bytes < (size_t)GQ_ARENA_BYTES || (uintptr_t)arena % 64 != 0)
        return GQA_EARENA;
    return GQA_OK;
}

int gqm_init(gqa_state **out, void *arena, size_t arena_bytes, const float *weights,
             size_t n_weights) {
    int err = check_arena(out, arena, arena_bytes);
    if (err)
        return err;
    if (!weights || n_weights != (size_t)GQ_N_WEIGHTS)
        return GQA_EWEIGHTS;
    *out = lay_out(arena);
    map_weights(&(*out)->w, weights);
    return GQA_OK;
}

#if GQ_EMBEDDED
int gqm_init_embedded(gqa_state **out, void *arena, size_t arena_bytes) {
    int err = check_arena(out, arena, arena_bytes);
    if (err)
        return err;
    *out = lay_out(arena);
    map_weights(&(*out)->w, NULL);
    return GQA_OK;
}
#endif

void gqm_reset(gqa_state *s) {
    if (s)
        s->n_pos = 0;
}

int gqm_seek(gqa_state *s, int n_pos) {
    if (!s)
        return GQA_EARG;
    if (n_pos < 0 || n_pos > GQ_CONTEXT)
        return GQA_EPOS;
    s->n_pos = n_pos;
    return GQA_OK;
}

void gqm_set_threads(gqa_state *s, int n) {
    if (s)
        s->threads = n;
}

static int thread_count(const gqa_state *s) {
#if GQ_OPENMP
    return s->threads > 0 ? s->threads : omp_get_max_threads();
#else
    return s->threads > 0 ? s->threads : 1;
#endif
}

/* Adds bias (n,) to x (n,) when the model has biases. */
static void add_bias(float *x, const float *bias, int n) {
    if (bias)
        add_inplace(x, bias, n);
}

/* q, k, v (b tokens) from xb, in one parallel region.  (xb2 packs xb
 * when the tokens fill a vector.) */
static void qkv(gqa_state *s, int l, int b, int threads) {
    const Weights *w = &s->w;
    Product p[3] = {{s->q, w->wq + (size_t)l * GQ_Q_DIM * GQ_DIM, GQ_Q_DIM},
                    {s->k, w->wk + (size_t)l * GQ_KV_DIM * GQ_DIM, GQ_KV_DIM},
                    {s->v, w->wv + (size_t)l * GQ_KV_DIM * GQ_DIM, GQ_KV_DIM}};
    matmuls(p, 3, s->xb, GQ_DIM, b, s->xb2, threads);
}

/* hb = w1 xb and hb2 = w3 xb (b tokens), in one parallel region. */
static void ffn_up(gqa_state *s, int l, int b, int threads) {
    const Weights *w = &s->w;
    size_t up = (size_t)l * GQ_HIDDEN * GQ_DIM;
    Product p[2] = {{s->hb, w->w1 + up, GQ_HIDDEN}, {s->hb2, w->w3 + up, GQ_HIDDEN}};
    matmuls(p, 2, s->xb, GQ_DIM, b, s->xb2, threads);
}

/* q, k, v of this position; k and v go into the cache at pos. */
static void attention_block(gqa_state *s, int l, int pos, int threads) {
    const Weights *w = &s->w;
    size_t layer_cache = (size_t)l * GQ_LAYER_CACHE;
    rmsnorm(s->xb, s->x, w->rms_att + (size_t)l * GQ_DIM, GQ_DIM);
    qkv(s, l, 1, threads);
    add_bias(s->q, w->bq ? w->bq + (size_t)l * GQ_Q_DIM : NULL, GQ_Q_DIM);
    add_bias(s->k, w->bk ? w->bk + (size_t)l * GQ_KV_DIM : NULL, GQ_KV_DIM);
    add_bias(s->v, w->bv ? w->bv + (size_t)l * GQ_KV_DIM : NULL, GQ_KV_DIM);
    rope(s->q, GQ_HEADS, s->rope);
    rope(s->k, GQ_KV_HEADS, s->rope);
    kv_store(s->key_cache + layer_cache, s->value_cache + layer_cache, pos, s->k, s->v);
    attention(s->att, s->q, s->key_cache + layer_cache, s->value_cache + layer_cache, pos,
              s->att_acc, threads);
    matvec(s->xb2, w->wo + (size_t)l * GQ_DIM * GQ_Q_DIM, s->att, GQ_Q_DIM, GQ_DIM, threads);
    add_inplace(s->x, s->xb2, GQ_DIM);
}

/* SwiGLU: x += w2 (silu(w1 xb) * (w3 xb)). */
static void ffn_block(gqa_state *s, int l, int threads) {
    const Weights *w = &s->w;
    rmsnorm(s->xb, s->x, w->rms_ffn + (size_t)l * GQ_DIM, GQ_DIM);
    ffn_up(s, l, 1, threads);
    swiglu(s->hb, s->hb2, GQ_HIDDEN);
    matvec(s->xb2, w->w2 + (size_t)l * GQ_DIM * GQ_HIDDEN, s->hb, GQ_HIDDEN, GQ_DIM, threads);
    add_inplace(s->x, s->xb2, GQ_DIM);
}

int gqm_forward(gqa_state *s, int token, int pos, float *logits) {
    int l, threads;
    if (!s)
        return GQA_EARG;
    if (token < 0 || token >= GQ_VOCAB)
        return GQA_ETOKEN;
    if (pos < 0 || pos >= GQ_CONTEXT || pos > s->n_pos)
        return GQA_EPOS;
    threads = thread_count(s);
    copy_floats(s->x, s->w.token_embedding + (size_t)token * GQ_DIM, GQ_DIM);
    rope_table(s->rope, pos);
    for (l = 0; l < GQ_LAYERS; l++) {
        attention_block(s, l, pos, threads);
        ffn_block(s, l, threads);
    }
    s->n_pos = pos + 1;
    if (logits) {
        rmsnorm(s->x, s->x, s->w.rms_final, GQ_DIM);
        matvec(logits, s->w.wcls, s->x, GQ_DIM, GQ_VOCAB, threads);
    }
    return GQA_OK;
}

/* ---- a block of prompt tokens ---- */

/* Whether a block's per-token steps (norms, RoPE and the cache, SwiGLU,
 * residual adds) over rows of width floats go across threads: each costs
 * a few multiply-adds an element, counted as 4 against GQ_PARALLEL_MIN.
 * Left on one thread, they kept the other one waiting for ~7% of a
 * prompt. */
#define GQ_TOKENS_PARALLEL(b, width) ((double)(b) * (width) * 4 >= GQ_PARALLEL_MIN)

/* The attention half of layer l for the b tokens in x, at positions p0 ..
 * p0 + b - 1: the projections as matrix products over the block (each
 * packs its input into a buffer that is free at that point), every
 * token's k and v into the cache, then the block's attention in tiles
 * of tokens, each token over the positions up to its own (this block's
 * later tokens are weighed 0). */
static void attention_batch(gqa_state *s, int l, int b, int p0, int threads) {
    const Weights *w = &s->w;
    size_t layer_cache = (size_t)l * GQ_LAYER_CACHE;
    const float *bq = w->bq ? w->bq + (size_t)l * GQ_Q_DIM : NULL;
    const float *bk = w->bk ? w->bk + (size_t)l * GQ_KV_DIM : NULL;
    const float *bv = w->bv ? w->bv + (size_t)l * GQ_KV_DIM : NULL;
    int t;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        rmsnorm(s->xb + (size_t)t * GQ_DIM, s->x + (size_t)t * GQ_DIM, w->rms_att + (size_t)l * GQ_DIM,
                GQ_DIM);
    qkv(s, l, b, threads);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_Q_DIM))")
    for (t = 0; t < b; t++) {
        float *q = s->q + (size_t)t * GQ_Q_DIM, *k = s->k + (size_t)t * GQ_KV_DIM;
        float *v = s->v + (size_t)t * GQ_KV_DIM;
        const float *table = s->rope + (size_t)t * GQ_HEAD_DIM;
        add_bias(q, bq, GQ_Q_DIM);
        add_bias(k, bk, GQ_KV_DIM);
        add_bias(v, bv, GQ_KV_DIM);
        rope(q, GQ_HEADS, table);
        rope(k, GQ_KV_HEADS, table);
        kv_store(s->key_cache + layer_cache, s->value_cache + layer_cache, p0 + t, k, v);
    }
    if (prompt_tiles(b) >= threads) {
        attention_prompt(s->att, s->q, s->key_cache + layer_cache, s->value_cache + layer_cache, p0,
                         b, threads);
    } else { /* too few tiles to share out: split each token's positions
              * across threads instead */
        for (t = 0; t < b; t++)
            attention(s->att + (size_t)t * GQ_Q_DIM, s->q + (size_t)t * GQ_Q_DIM,
                      s->key_cache + layer_cache, s->value_cache + layer_cache, p0 + t, s->att_acc,
                      threads);
    }
    matmul(s->xb2, w->wo + (size_t)l * GQ_DIM * GQ_Q_DIM, s->att, GQ_Q_DIM, GQ_DIM, b, s->q, threads);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        add_inplace(s->x + (size_t)t * GQ_DIM, s->xb2 + (size_t)t * GQ_DIM, GQ_DIM);
}

/* ffn_block for the b tokens in x. */
static void ffn_batch(gqa_state *s, int l, int b, int threads) {
    const Weights *w = &s->w;
    int t;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        rmsnorm(s->xb + (size_t)t * GQ_DIM, s->x + (size_t)t * GQ_DIM, w->rms_ffn + (size_t)l * GQ_DIM,
                GQ_DIM);
    ffn_up(s, l, b, threads);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_HIDDEN))")
    for (t = 0; t < b; t++)
        swiglu(s->hb + (size_t)t * GQ_HIDDEN, s->hb2 + (size_t)t * GQ_HIDDEN, GQ_HIDDEN);
    matmul(s->xb2, w->w2 + (size_t)l * GQ_DIM * GQ_HIDDEN, s->hb, GQ_HIDDEN, GQ_DIM, b, s->hb2, threads);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        add_inplace(s->x + (size_t)t * GQ_DIM, s->xb2 + (size_t)t * GQ_DIM, GQ_DIM);
}

/* tokens[0 .. b) (b <= GQ_BATCH) at positions p0 .. p0 + b - 1 through
 * every layer; the residual stream of token t is left in row t of x. */
static void forward_block(gqa_state *s, const int *tokens, int b, int p0, int threads) {
    int t, l;
    for (t = 0; t < b; t++) {
        copy_floats(s->x + (size_t)t * GQ_DIM, s->w.token_embedding + (size_t)tokens[t] * GQ_DIM,
                    GQ_DIM);
        rope_table(s->rope + (size_t)t * GQ_HEAD_DIM, p0 + t);
    }
    for (l = 0; l < GQ_LAYERS; l++) {
        attention_batch(s, l, b, p0, threads);
        ffn_batch(s, l, b, threads);
    }
}

int gqm_forward_batch(gqa_state *s, const int *tokens, int n, int pos, float *logits) {
    int i, b = 1, threads;
    float *last;
    if (!s || !tokens || n < 1)
        return GQA_EARG;
    if (pos < 0 || pos > s->n_pos || n > GQ_CONTEXT - pos)
        return GQA_EPOS;
    for (i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= GQ_VOCAB)
            return GQA_ETOKEN;
    threads = thread_count(s);
    for (i = 0; i < n; i += b) {
        b = n - i < GQ_BATCH ? n - i : GQ_BATCH;
        forward_block(s, tokens + i, b, pos + i, threads);
    }
    s->n_pos = pos + n;
    if (logits) {
        last = s->x + (size_t)(b - 1) * GQ_DIM; /* the last block's last token */
        rmsnorm(last, last, s->w.rms_final, GQ_DIM);
        matvec(logits, s->w.wcls, last, GQ_DIM, GQ_VOCAB, threads);
    }
    return GQA_OK;
}

const gqa_model_api gqm_api = {
    GQA_API_VERSION,
    GQ_NAME,
    GQ_PREFIX,
    {GQ_DIM, GQ_HIDDEN, GQ_LAYERS, GQ_HEADS, GQ_KV_HEADS, GQ_HEAD_DIM, GQ_VOCAB, GQ_CONTEXT,
     GQ_TIED, GQ_QKV_BIAS, GQ_ROPE_HALVES, GQ_ROPE_THETA, (double)GQ_NORM_EPS},
    gq_rope_freqs,
    GQ_N_WEIGHTS,
    GQ_ARENA_BYTES,
    64,
    GQ_KV_BYTES,
    gqm_init,
    gqm_forward,
    gqm_forward_batch,
    gqm_reset,
    gqm_seek,
    gqm_set_threads,
#if GQ_EMBEDDED
    gqm_init_embedded,
#else
    NULL,
#endif
};
