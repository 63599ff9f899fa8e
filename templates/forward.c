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

/* The tensors: gq_tensors (emitted before the templates) describes each,
 * GQ_T_<name> is where a kind's first layer sits in it, and the state
 * holds a pointer to each, in the file the caller mapped, in the packed
 * weights, or compiled in. */
#define GQ_TENSOR(s, name, l) ((s)->t[GQ_T_##name + (l)])
#define GQ_TYPE(name, l) (gq_tensors[GQ_T_##name + (l)].dtype)
#define GQ_VECTOR(s, name, l) ((const float *)GQ_TENSOR(s, name, l)) /* norms and biases: f32 */
#if GQ_TIED
#define GQ_T_wcls GQ_T_token_embedding
#endif

struct gqa_state {
    const void *t[GQ_N_TENSORS]; /* each tensor of gq_tensors */
    int threads;     /* < 1: OpenMP's default */
    int n_pos;       /* positions in the KV cache */
    int n_high;      /* the most positions ever in it since init or reset
                      * (a rewind must not need what a ring overwrote) */
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
    void *x8;        /* (batch, widest / 32) gq_x8: x quantized for Q8_0 and Q4_0 weights */
    void *x8k;       /* (batch, widest / 256) gq_x8k: for Q4_K and Q6_K */
    /* NULL in an instance of seqs_arena_bytes, which runs forward_seqs only */
    unsigned char *key_cache;   /* each layer's in kv_store's layout and type */
    unsigned char *value_cache; /* (layer_cache gives where a layer's starts) */
#if GQ_RANKS > 1 /* gqac:sharded */
    const gqa_comm *comm; /* the other ranks, or NULL until set_comm */
    int comm_failed;      /* a collective failed since the forward began */
    float *part;          /* (vocab) this rank's logits, before the allgather */
#endif
};

/* The arena: the state (GQ_STATE_BYTES), then each buffer rounded up to
 * 16 floats so every one starts on a 64-byte line, the quantized
 * activations, then the KV cache.  compiler/ir.c computes GQ_ARENA_BYTES
 * with the same formula; the check below holds them equal. */
#define GQ_ROUND16(n) (((size_t)(n) + 15) / 16 * 16)
#define GQ_ROWS(n) ((size_t)GQ_BATCH * (size_t)(n)) /* a prompt block's rows of n */
#define GQ_SCRATCH_FLOATS                                                                       \
    (3 * GQ_ROUND16(GQ_ROWS(GQ_DIM)) + 2 * GQ_ROUND16(GQ_ROWS(GQ_HIDDEN)) +                     \
     2 * GQ_ROUND16(GQ_ROWS(GQ_Q_DIM)) + GQ_ROUND16(GQ_SPLIT * (GQ_Q_DIM + 2 * GQ_HEADS)) +     \
     2 * GQ_ROUND16(GQ_ROWS(GQ_KV_DIM)) + GQ_ROUND16(GQ_ROWS(GQ_HEAD_DIM)))

/* The layers with a window: all of them, but every GQ_GLOBAL_EVERY-th
 * (counting from 1) when that is set (local and global layers
 * interleaved, as Gemma's 5 to 1). */
#define GQ_GLOBAL_LAYER(l) (GQ_WINDOW <= 0 || (GQ_GLOBAL_EVERY > 0 && ((l) + 1) % GQ_GLOBAL_EVERY == 0))
#define GQ_GLOBAL_LAYERS (GQ_WINDOW <= 0 ? GQ_LAYERS : GQ_GLOBAL_EVERY > 0 ? GQ_LAYERS / GQ_GLOBAL_EVERY : 0)

/* Each of K and V: a layer's KV heads, each its blocks (attention.c's
 * layout: the context's blocks, or a windowed layer's sinks and ring). */
#define GQ_GLOBAL_CACHE ((size_t)GQ_KV_HEADS * GQ_LAYER_BLOCKS(0, 0) * GQ_KV_BLOCK_BYTES)
#define GQ_LOCAL_CACHE ((size_t)GQ_KV_HEADS * GQ_LAYER_BLOCKS(GQ_WINDOW, GQ_SINKS) * GQ_KV_BLOCK_BYTES)
#define GQ_CACHE_BYTES                                                                              \
    (((size_t)GQ_GLOBAL_LAYERS * GQ_GLOBAL_CACHE + (size_t)(GQ_LAYERS - GQ_GLOBAL_LAYERS) * GQ_LOCAL_CACHE + \
      63) / 64 * 64)

typedef char gqm_check_arena[GQ_ARENA_BYTES == GQ_STATE_BYTES + 4 * GQ_SCRATCH_FLOATS + GQ_X8_BYTES +
                                                   GQ_X8K_BYTES + 2 * GQ_CACHE_BYTES
                                 ? 1
                                 : -1];
typedef char gqm_check_kv[GQ_KV_BYTES == 2 * GQ_CACHE_BYTES ? 1 : -1];
/* An instance for forward_seqs only: the arena without its cache (the end). */
#define GQ_SEQS_ARENA_BYTES ((size_t)GQ_ARENA_BYTES - (size_t)GQ_KV_BYTES)

/* Layer l's window (0: none) and where its cache starts in each of K and V. */
static int layer_window(int l) {
    return GQ_GLOBAL_LAYER(l) ? 0 : GQ_WINDOW;
}

static size_t layer_cache(int l) {
    size_t global = GQ_WINDOW <= 0 ? (size_t)l : GQ_GLOBAL_EVERY > 0 ? (size_t)(l / GQ_GLOBAL_EVERY) : 0;
    return global * GQ_GLOBAL_CACHE + ((size_t)l - global) * GQ_LOCAL_CACHE;
}

/* The positions a forward may run: the context, or when every layer has
 * a window (a ring of constant size) and RoPE's angles are not a table of
 * the context's, as far as an int goes with room for a prompt block and
 * a block of positions. */
#define GQ_MAX_POS (GQ_UNBOUNDED && !GQ_ROPE_TABLE ? INT_MAX - GQ_BATCH - 64 : GQ_CONTEXT)
typedef char gqm_check_state[sizeof(struct gqa_state) <= GQ_STATE_BYTES ? 1 : -1];
#if GQ_RANKS > 1 /* gqac:sharded */
typedef char gqm_check_part[sizeof(struct gqa_state) + 4 * GQ_ROUND16(GQ_VOCAB) <= GQ_STATE_BYTES ? 1 : -1];
#endif

static float *take(unsigned char **at, size_t floats) {
    float *p = (float *)(void *)*at;
    *at += GQ_ROUND16(floats) * sizeof(float);
    return p;
}

/* The state at the start of the arena, then its buffers, then (own) the
 * KV cache. */
static gqa_state *lay_out(void *arena, int own) {
    unsigned char *at = arena;
    gqa_state *s = (gqa_state *)arena;
    s->threads = 0;
    s->n_pos = 0;
    at += GQ_STATE_BYTES;
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
    s->x8 = at;
    at += GQ_X8_BYTES;
    s->x8k = at;
    at += GQ_X8K_BYTES;
    s->key_cache = own ? at : NULL;
    s->value_cache = own ? at + GQ_CACHE_BYTES : NULL;
    s->n_high = 0;
#if GQ_RANKS > 1 /* gqac:sharded */
    /* the logits' buffer: the end of the state's share of the arena */
    s->comm = NULL;
    s->part = (float *)(void *)((unsigned char *)arena + GQ_STATE_BYTES - 4 * GQ_ROUND16(GQ_VOCAB));
#endif
    return s;
}

static int check_arena(gqa_state **out, void *arena, size_t arena_bytes) {
    if (!out)
        return GQA_EARG;
    *out = NULL;
    if (!arena || arena_bytes < GQ_SEQS_ARENA_BYTES || (uintptr_t)arena % 64 != 0)
        return GQA_EARENA;
    return GQA_OK;
}

/* Whether an arena of arena_bytes (check_arena accepted) holds a cache. */
static int own_cache(size_t arena_bytes) {
    return arena_bytes >= (size_t)GQ_ARENA_BYTES;
}

/* Each tensor's pointer aligned to its type's element: floats on 4
 * bytes, f16 and bf16 on 2 (kernels read them whole); blocks are bytes. */
static int check_tensors(const void *const *t) {
    size_t i;
    for (i = 0; i < GQ_N_TENSORS; i++) {
        size_t align = gq_tensors[i].dtype == GQA_DT_F32 ? 4 : gq_tensors[i].dtype <= GQA_DT_BF16 ? 2 : 1;
        if (!t[i] || (uintptr_t)t[i] % align != 0)
            return GQA_EWEIGHTS;
    }
    return GQA_OK;
}

int gqm_init_tensors(gqa_state **out, void *arena, size_t arena_bytes, const void *const *tensors,
                     size_t n_tensors) {
    size_t i;
    int err = check_arena(out, arena, arena_bytes);
    if (err)
        return err;
    if (!tensors || n_tensors != (size_t)GQ_N_TENSORS || check_tensors(tensors))
        return GQA_EWEIGHTS;
    *out = lay_out(arena, own_cache(arena_bytes));
    for (i = 0; i < GQ_N_TENSORS; i++)
        (*out)->t[i] = tensors[i];
    return GQA_OK;
}

int gqm_init(gqa_state **out, void *arena, size_t arena_bytes, const void *weights,
             size_t weight_bytes) {
    const unsigned char *p = weights;
    size_t i;
    int err = check_arena(out, arena, arena_bytes);
    if (err)
        return err;
    if (!weights || weight_bytes != (size_t)GQ_WEIGHT_BYTES || (uintptr_t)p % 4 != 0)
        return GQA_EWEIGHTS;
    *out = lay_out(arena, own_cache(arena_bytes));
    for (i = 0; i < GQ_N_TENSORS; i++)
        (*out)->t[i] = p + gq_tensors[i].offset;
    return GQA_OK;
}

#if GQ_EMBEDDED
int gqm_init_embedded(gqa_state **out, void *arena, size_t arena_bytes) {
    return gqm_init_tensors(out, arena, arena_bytes, gq_embedded, GQ_N_TENSORS);
}
#endif

void gqm_reset(gqa_state *s) {
    if (s)
        s->n_pos = s->n_high = 0;
}

/* Whether the cache can go back to n positions: a windowed layer's ring
 * must still hold what a query at n sees, positions above n - window that
 * are not sinks, which later positions (up to n_high - 1) may have
 * overwritten.  (A wrapping ring only: one that never wraps keeps all.)
 * The next position n_pos always can: every step to it was checked. */
static int can_rewind(const gqa_state *s, int n) {
    Ring r = ring_of(GQ_WINDOW, GQ_SINKS, NULL);
    int oldest = n - r.window + 1 > r.sink_blocks * GQ_BLOCK ? n - r.window + 1 : r.sink_blocks * GQ_BLOCK;
    if (GQ_GLOBAL_LAYERS == GQ_LAYERS || n >= s->n_high || n == s->n_pos || oldest >= n)
        return 1;
    return oldest >= s->n_high - r.ring_blocks * GQ_BLOCK;
}

int gqm_seek(gqa_state *s, int n_pos) {
    if (!s)
        return GQA_EARG;
    if (!s->key_cache)
        return GQA_EARENA;
    if (n_pos < 0 || n_pos > GQ_MAX_POS || !can_rewind(s, n_pos))
        return GQA_EPOS;
    s->n_pos = n_pos;
    if (n_pos > s->n_high)
        s->n_high = n_pos;
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

/* The buffers a product's input goes through: pack for f32 tiles (one
 * free at that point, or NULL for one token), the quantized ones. */
static Scratch scratch(gqa_state *s, float *pack) {
    Scratch sc;
    sc.pack = pack;
    sc.x8 = s->x8;
    sc.x8k = s->x8k;
    return sc;
}

/* A row of n weights of type as floats (an embedding's row). */
static void row_floats(int type, const unsigned char *w, int n, float *out) {
#if GQ_HAS_ROWS
    row_to_floats(type, w, n, out);
#else
    (void)type, (void)w, (void)n, (void)out; /* every tensor is f32 */
#endif
}

/* Row token of the embedding, as floats, into x (dim). */
static void embed(gqa_state *s, float *x, int token) {
    const unsigned char *table = GQ_TENSOR(s, token_embedding, 0);
    int type = GQ_TYPE(token_embedding, 0);
#if GQ_RANKS > 1 /* gqac:sharded */
    /* this rank holds rows GQ_VOCAB0 .. GQ_VOCAB0 + GQ_VOCAB - 1: another's
     * token is zeros here, and the allreduce after the embedding sums the
     * one rank's row into every rank's x */
    int i;
    if (token < GQ_VOCAB0 || token >= GQ_VOCAB0 + GQ_VOCAB) {
        for (i = 0; i < GQ_DIM; i++)
            x[i] = 0.0f;
        return;
    }
    token -= GQ_VOCAB0;
#endif
    if (type == GQA_DT_F32)
        copy_floats(x, (const float *)(const void *)table + (size_t)token * GQ_DIM, GQ_DIM);
    else
        row_floats(type, table + (size_t)token * row_bytes(type, GQ_DIM), GQ_DIM, x);
}

#if GQ_QKV_BIAS
#define GQ_BIAS(s, name, l) GQ_VECTOR(s, name, l)
#else
#define GQ_BIAS(s, name, l) ((const float *)NULL)
#endif

/* Adds bias (n,) to x (n,) when the model has biases. */
static void add_bias(float *x, const float *bias, int n) {
    if (bias)
        add_inplace(x, bias, n);
}

#if GQ_RANKS > 1 /* gqac:sharded */
/* A rank's code (gqac --ranks N --rank R: the regions marked gqac:sharded,
 * which a whole model's code does not have) is this pass at the rank's
 * shape, plus the collectives of set_comm's gqa_comm: the embedding's row
 * from the rank that holds it, summed into every rank's x; the sum of the
 * ranks' shares after Wo and after W2; the classifier's rows gathered into
 * the whole vocabulary's logits on every rank.
 *
 * The collective operations between ranks.  A failure is kept (the
 * forward returns GQA_ECOMM) and the calls go on, so that every rank
 * still makes the same calls in the same order. */
static void comm_sum(gqa_state *s, float *x, size_t n) {
    if (s->comm->allreduce_sum(s->comm->ctx, x, n))
        s->comm_failed = 1;
}

/* Every rank's classifier rows (s->part) into the whole vocabulary's logits. */
static void comm_logits(gqa_state *s, float *logits) {
    if (s->comm->allgather(s->comm->ctx, s->part, logits, gq_vocab_counts))
        s->comm_failed = 1;
}

/* Whether a forward may start: a comm set, no failure kept from before. */
static int comm_ready(gqa_state *s) {
    s->comm_failed = 0;
    return s->comm != NULL;
}

#endif
/* q, k, v (b tokens) from xb, in one parallel region.  (xb2 packs xb
 * when the tokens fill a vector.) */
static void qkv(gqa_state *s, int l, int b, int threads) {
    Product p[3] = {{s->q, GQ_TENSOR(s, wq, l), GQ_TYPE(wq, l), GQ_Q_DIM},
                    {s->k, GQ_TENSOR(s, wk, l), GQ_TYPE(wk, l), GQ_KV_DIM},
                    {s->v, GQ_TENSOR(s, wv, l), GQ_TYPE(wv, l), GQ_KV_DIM}};
    Scratch sc = scratch(s, s->xb2);
    matmuls(p, 3, s->xb, GQ_DIM, b, &sc, threads);
}

/* hb = w1 xb and hb2 = w3 xb (b tokens), in one parallel region. */
static void ffn_up(gqa_state *s, int l, int b, int threads) {
    Product p[2] = {{s->hb, GQ_TENSOR(s, w1, l), GQ_TYPE(w1, l), GQ_HIDDEN},
                    {s->hb2, GQ_TENSOR(s, w3, l), GQ_TYPE(w3, l), GQ_HIDDEN}};
    Scratch sc = scratch(s, s->xb2);
    matmuls(p, 2, s->xb, GQ_DIM, b, &sc, threads);
}

/* q, k, v of this position; k and v go into the cache at pos. */
static void attention_block(gqa_state *s, int l, int pos, int threads) {
    unsigned char *kc = s->key_cache + layer_cache(l), *vc = s->value_cache + layer_cache(l);
    Scratch sc = scratch(s, NULL);
    rmsnorm(s->xb, s->x, GQ_VECTOR(s, rms_att, l), GQ_DIM);
    qkv(s, l, 1, threads);
    add_bias(s->q, GQ_BIAS(s, bq, l), GQ_Q_DIM);
    add_bias(s->k, GQ_BIAS(s, bk, l), GQ_KV_DIM);
    add_bias(s->v, GQ_BIAS(s, bv, l), GQ_KV_DIM);
    rope(s->q, GQ_HEADS, s->rope);
    rope(s->k, GQ_KV_HEADS, s->rope);
    kv_store(kc, vc, layer_window(l), GQ_SINKS, pos, s->k, s->v);
    attention(s->att, s->q, kc, vc, layer_window(l), GQ_SINKS, pos, s->att_acc, threads);
    matvec(s->xb2, GQ_TENSOR(s, wo, l), GQ_TYPE(wo, l), s->att, GQ_Q_DIM, GQ_DIM, &sc, threads);
#if GQ_RANKS > 1 /* gqac:sharded */
    comm_sum(s, s->xb2, GQ_DIM); /* every rank's heads' share of the output */
#endif
    add_inplace(s->x, s->xb2, GQ_DIM);
}

/* SwiGLU: x += w2 (silu(w1 xb) * (w3 xb)). */
static void ffn_block(gqa_state *s, int l, int threads) {
    Scratch sc = scratch(s, NULL);
    rmsnorm(s->xb, s->x, GQ_VECTOR(s, rms_ffn, l), GQ_DIM);
    ffn_up(s, l, 1, threads);
    swiglu(s->hb, s->hb2, GQ_HIDDEN);
    matvec(s->xb2, GQ_TENSOR(s, w2, l), GQ_TYPE(w2, l), s->hb, GQ_HIDDEN, GQ_DIM, &sc, threads);
#if GQ_RANKS > 1 /* gqac:sharded */
    comm_sum(s, s->xb2, GQ_DIM); /* every rank's hidden units' share */
#endif
    add_inplace(s->x, s->xb2, GQ_DIM);
}

int gqm_forward(gqa_state *s, int token, int pos, float *logits) {
    int l, threads;
    if (!s)
        return GQA_EARG;
    if (!s->key_cache)
        return GQA_EARENA;
#if GQ_RANKS > 1 /* gqac:sharded */
    if (token < 0 || token >= GQ_VOCAB_ALL)
        return GQA_ETOKEN;
#else
    if (token < 0 || token >= GQ_VOCAB)
        return GQA_ETOKEN;
#endif
    if (pos < 0 || pos >= GQ_MAX_POS || pos > s->n_pos || !can_rewind(s, pos))
        return GQA_EPOS;
#if GQ_RANKS > 1 /* gqac:sharded */
    if (!comm_ready(s))
        return GQA_ECOMM;
#endif
    threads = thread_count(s);
    embed(s, s->x, token);
#if GQ_RANKS > 1 /* gqac:sharded */
    comm_sum(s, s->x, GQ_DIM);
#endif
    rope_table(s->rope, pos);
    for (l = 0; l < GQ_LAYERS; l++) {
        attention_block(s, l, pos, threads);
        ffn_block(s, l, threads);
    }
    s->n_pos = pos + 1;
    if (s->n_pos > s->n_high)
        s->n_high = s->n_pos;
    if (logits) {
        Scratch sc = scratch(s, NULL);
        rmsnorm(s->x, s->x, GQ_VECTOR(s, rms_final, 0), GQ_DIM);
#if GQ_RANKS > 1 /* gqac:sharded */
        matvec(s->part, GQ_TENSOR(s, wcls, 0), GQ_TYPE(wcls, 0), s->x, GQ_DIM, GQ_VOCAB, &sc, threads);
        comm_logits(s, logits);
#else
        matvec(logits, GQ_TENSOR(s, wcls, 0), GQ_TYPE(wcls, 0), s->x, GQ_DIM, GQ_VOCAB, &sc, threads);
#endif
    }
#if GQ_RANKS > 1 /* gqac:sharded */
    if (s->comm_failed)
        return GQA_ECOMM;
#endif
    return GQA_OK;
}

/* ---- a block of prompt tokens ---- */

/* Whether a block's per-token steps (norms, RoPE and the cache, SwiGLU,
 * residual adds) over rows of width floats go across threads: each costs
 * a few multiply-adds an element, counted as 4 against GQ_PARALLEL_MIN.
 * Left on one thread, they kept the other one waiting for ~7% of a
 * prompt. */
#define GQ_TOKENS_PARALLEL(b, width) ((double)(b) * (width) * 4 >= GQ_PARALLEL_MIN)

/* Rows [from, to) of buf (rows of width floats) set to 0. */
static void zero_rows(float *buf, int from, int to, int width) {
    size_t i;
    for (i = (size_t)from * (size_t)width; i < (size_t)to * (size_t)width; i++)
        buf[i] = 0.0f;
}

/* The end of a block's attention: x += wo att for the b tokens, the
 * product over bp >= b rows (the rows past b zeros). */
static void attention_out(gqa_state *s, int l, int b, int bp, int threads) {
    Scratch sc = scratch(s, s->q);
    int t;
    zero_rows(s->att, b, bp, GQ_Q_DIM);
    matmul(s->xb2, GQ_TENSOR(s, wo, l), GQ_TYPE(wo, l), s->att, GQ_Q_DIM, GQ_DIM, bp, &sc, threads);
#if GQ_RANKS > 1 /* gqac:sharded */
    comm_sum(s, s->xb2, (size_t)b * GQ_DIM);
#endif
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        add_inplace(s->x + (size_t)t * GQ_DIM, s->xb2 + (size_t)t * GQ_DIM, GQ_DIM);
}

/* The attention half of layer l for the b tokens in x, at positions p0 ..
 * p0 + b - 1: the projections as matrix products over the block (each
 * packs its input into a buffer that is free at that point), every
 * token's k and v into the cache, then the block's attention in tiles
 * of tokens, each token over the positions up to its own (this block's
 * later tokens are weighed 0). */
static void attention_batch(gqa_state *s, int l, int b, int p0, int threads) {
    unsigned char *kc = s->key_cache + layer_cache(l), *vc = s->value_cache + layer_cache(l);
    const float *bq = GQ_BIAS(s, bq, l), *bk = GQ_BIAS(s, bk, l), *bv = GQ_BIAS(s, bv, l);
    const float *norm = GQ_VECTOR(s, rms_att, l);
    int t;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        rmsnorm(s->xb + (size_t)t * GQ_DIM, s->x + (size_t)t * GQ_DIM, norm, GQ_DIM);
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
        kv_store(kc, vc, layer_window(l), GQ_SINKS, p0 + t, k, v);
    }
    if (prompt_tiles(b) >= threads) {
        attention_prompt(s->att, s->q, kc, vc, layer_window(l), GQ_SINKS, p0, b, threads);
    } else { /* too few tiles to share out: split each token's positions
              * across threads instead */
        for (t = 0; t < b; t++)
            attention(s->att + (size_t)t * GQ_Q_DIM, s->q + (size_t)t * GQ_Q_DIM, kc, vc, layer_window(l),
                      GQ_SINKS, p0 + t, s->att_acc, threads);
    }
    attention_out(s, l, b, b, threads);
}

/* ffn_block for the b tokens in x, its products over bp >= b rows (the
 * rows past b zeros: forward_seqs' padding). */
static void ffn_batch(gqa_state *s, int l, int b, int bp, int threads) {
    const float *norm = GQ_VECTOR(s, rms_ffn, l);
    Scratch sc = scratch(s, s->hb2);
    int t;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        rmsnorm(s->xb + (size_t)t * GQ_DIM, s->x + (size_t)t * GQ_DIM, norm, GQ_DIM);
    zero_rows(s->xb, b, bp, GQ_DIM);
    ffn_up(s, l, bp, threads);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(bp, GQ_HIDDEN))")
    for (t = 0; t < bp; t++)
        swiglu(s->hb + (size_t)t * GQ_HIDDEN, s->hb2 + (size_t)t * GQ_HIDDEN, GQ_HIDDEN);
    matmul(s->xb2, GQ_TENSOR(s, w2, l), GQ_TYPE(w2, l), s->hb, GQ_HIDDEN, GQ_DIM, bp, &sc, threads);
#if GQ_RANKS > 1 /* gqac:sharded */
    comm_sum(s, s->xb2, (size_t)b * GQ_DIM);
#endif
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        add_inplace(s->x + (size_t)t * GQ_DIM, s->xb2 + (size_t)t * GQ_DIM, GQ_DIM);
}

/* tokens[0 .. b) (b <= GQ_BATCH) at positions p0 .. p0 + b - 1 through
 * every layer; the residual stream of token t is left in row t of x. */
static void forward_block(gqa_state *s, const int *tokens, int b, int p0, int threads) {
    int t, l;
    for (t = 0; t < b; t++) {
        embed(s, s->x + (size_t)t * GQ_DIM, tokens[t]);
        rope_table(s->rope + (size_t)t * GQ_HEAD_DIM, p0 + t);
    }
#if GQ_RANKS > 1 /* gqac:sharded */
    comm_sum(s, s->x, (size_t)b * GQ_DIM);
#endif
    for (l = 0; l < GQ_LAYERS; l++) {
        attention_batch(s, l, b, p0, threads);
        ffn_batch(s, l, b, b, threads);
    }
}

int gqm_forward_batch(gqa_state *s, const int *tokens, int n, int pos, float *logits) {
    int i, b = 1, threads;
    float *last;
    if (!s || !tokens || n < 1)
        return GQA_EARG;
    if (!s->key_cache)
        return GQA_EARENA;
    if (pos < 0 || pos > s->n_pos || n > GQ_MAX_POS - pos || !can_rewind(s, pos))
        return GQA_EPOS;
#if GQ_RANKS > 1 /* gqac:sharded */
    for (i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= GQ_VOCAB_ALL)
            return GQA_ETOKEN;
    if (!comm_ready(s))
        return GQA_ECOMM;
#else
    for (i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= GQ_VOCAB)
            return GQA_ETOKEN;
#endif
    threads = thread_count(s);
    for (i = 0; i < n; i += b) {
        b = n - i < GQ_BATCH ? n - i : GQ_BATCH;
        forward_block(s, tokens + i, b, pos + i, threads);
    }
    s->n_pos = pos + n;
    if (s->n_pos > s->n_high)
        s->n_high = s->n_pos;
    if (logits) {
        last = s->x + (size_t)(b - 1) * GQ_DIM; /* the last block's last token */
        Scratch sc = scratch(s, NULL);
        rmsnorm(last, last, GQ_VECTOR(s, rms_final, 0), GQ_DIM);
#if GQ_RANKS > 1 /* gqac:sharded */
        matvec(s->part, GQ_TENSOR(s, wcls, 0), GQ_TYPE(wcls, 0), last, GQ_DIM, GQ_VOCAB, &sc, threads);
        comm_logits(s, logits);
#else
        matvec(logits, GQ_TENSOR(s, wcls, 0), GQ_TYPE(wcls, 0), last, GQ_DIM, GQ_VOCAB, &sc, threads);
#endif
    }
#if GQ_RANKS > 1 /* gqac:sharded */
    if (s->comm_failed)
        return GQA_ECOMM;
#endif
    return GQA_OK;
}

/* ---- many sequences over a paged KV cache (serving) ---- */

/* Rows a product of forward_seqs runs: at least a vector of tokens, so
 * that every row goes through the same tiles (f32: matmul_tile; block
 * types: tile_*) whatever the step's other rows; alone, a row would take
 * matvec's path, whose sums round otherwise.  The padding rows are zeros. */
static int seqs_rows(int b) {
    int least = GQ_LANES > 2 ? GQ_LANES : 2;
    return b > least ? b : least;
}

/* A step's block of rows: for each row its sequence and position; its
 * segments are the runs of one sequence's rows. */
typedef struct {
    int b;                   /* rows */
    int seq[GQ_BATCH];       /* the row's sequence in seqs */
    int pos[GQ_BATCH];       /* the row's position */
    int segs;                /* runs of rows of one sequence */
    int seg_row[GQ_BATCH];   /* each run's first row */
    int seg_n[GQ_BATCH];     /* and its rows */
} SeqBlock;

/* Layer l's view of a sequence's pages. */
static Ring seq_ring(const gqa_seq *seq, int l) {
    return ring_of(layer_window(l), GQ_SINKS, seq->pages);
}

/* Where layer l's K (v 0) or V (v 1) sits in every page. */
static unsigned char *page_part(void *pool, int l, int v) {
    return (unsigned char *)pool + (size_t)(2 * l + v) * GQ_KV_HEADS * GQ_KV_BLOCK_BYTES;
}

/* One group's attention (KV head kv) for the query at pos, in one span
 * over every position it sees (no split across threads, so the sums do
 * not depend on how many there are): q (GQ_GROUP, GQ_HEAD_DIM) -> out. */
static void attend_group(float *out, const float *q, const void *k, const void *v, const Ring *r, int kv,
                         int pos) {
    float ml[2 * GQ_GROUP];
    Visit vis = visit_of(r, pos, pos);
    int g, d;
    attend_span(out, ml, q, k, v, r, &vis, kv, 0, vis.n, pos);
    for (g = 0; g < GQ_GROUP; g++)
        for (d = 0; d < GQ_HEAD_DIM; d++)
            out[g * GQ_HEAD_DIM + d] /= ml[GQ_GROUP + g];
}

/* Work items of segment g: a decoding sequence's KV heads, or a chunk's
 * (KV head, tile of tokens) pairs. */
static int seg_items(const SeqBlock *bk, const gqa_seq *seqs, int g) {
    return seqs[bk->seq[bk->seg_row[g]]].n == 1 ? GQ_KV_HEADS : prompt_tiles(bk->seg_n[g]);
}

/* Work item i of segment g of layer l: one decoding group, or one prompt
 * tile (a sequence's chunk takes the tile path whatever its rows in this
 * block, so that how the step cuts it does not change its sums). */
static void seqs_item(gqa_state *s, const SeqBlock *bk, const gqa_seq *seqs, void *pool, int l, int g, int i) {
    int row = bk->seg_row[g], kv = i % GQ_KV_HEADS, t0;
    const gqa_seq *seq = &seqs[bk->seq[row]];
    Ring r = seq_ring(seq, l);
    const unsigned char *kc = page_part(pool, l, 0), *vc = page_part(pool, l, 1);
    size_t at;
    if (seq->n == 1) {
        at = (size_t)row * GQ_Q_DIM + (size_t)kv * GQ_GROUP * GQ_HEAD_DIM;
        attend_group(s->att + at, s->q + at, kc, vc, &r, kv, bk->pos[row]);
        return;
    }
    t0 = i / GQ_KV_HEADS * GQ_PROMPT_TOKENS;
    at = (size_t)(row + t0) * GQ_Q_DIM + (size_t)kv * GQ_GROUP * GQ_HEAD_DIM;
    prompt_tile(s->att + at, s->q + at, kc, vc, &r, kv, bk->pos[row] + t0,
                bk->seg_n[g] - t0 < GQ_PROMPT_TOKENS ? bk->seg_n[g] - t0 : GQ_PROMPT_TOKENS);
}

/* Every segment's attention in one parallel region. */
static void seqs_attention(gqa_state *s, const SeqBlock *bk, const gqa_seq *seqs, void *pool, int l,
                           int threads) {
    int total = 0, g, i;
#if GQ_OPENMP /* (no doubles where there may be no double FPU) */
    double work = 0;
    for (g = 0; g < bk->segs; g++)
        work += (double)bk->seg_n[g] * (bk->pos[bk->seg_row[g]] + bk->seg_n[g]);
#endif
    for (g = 0; g < bk->segs; g++)
        total += seg_items(bk, seqs, g);
    (void)threads;
    GQ_OMP("omp parallel for num_threads(threads) schedule(dynamic, 1) if(work * GQ_HEADS * GQ_HEAD_DIM >= GQ_PARALLEL_MIN)")
    for (i = 0; i < total; i++) {
        int j = i, k = 0;
        while (j >= seg_items(bk, seqs, k))
            j -= seg_items(bk, seqs, k++);
        seqs_item(s, bk, seqs, pool, l, k, j);
    }
}

/* attention_batch over a block of rows of several sequences, their K and
 * V into their pages. */
static void seqs_attention_layer(gqa_state *s, const SeqBlock *bk, const gqa_seq *seqs, void *pool, int l,
                                 int threads) {
    const float *qb = GQ_BIAS(s, bq, l), *kb = GQ_BIAS(s, bk, l), *vb = GQ_BIAS(s, bv, l);
    const float *norm = GQ_VECTOR(s, rms_att, l);
    int b = bk->b, bp = seqs_rows(b), t;
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_DIM))")
    for (t = 0; t < b; t++)
        rmsnorm(s->xb + (size_t)t * GQ_DIM, s->x + (size_t)t * GQ_DIM, norm, GQ_DIM);
    zero_rows(s->xb, b, bp, GQ_DIM);
    qkv(s, l, bp, threads);
    GQ_OMP("omp parallel for num_threads(threads) schedule(static) if(GQ_TOKENS_PARALLEL(b, GQ_Q_DIM))")
    for (t = 0; t < b; t++) {
        float *q = s->q + (size_t)t * GQ_Q_DIM, *k = s->k + (size_t)t * GQ_KV_DIM;
        float *v = s->v + (size_t)t * GQ_KV_DIM;
        const float *table = s->rope + (size_t)t * GQ_HEAD_DIM;
        Ring r = seq_ring(&seqs[bk->seq[t]], l);
        add_bias(q, qb, GQ_Q_DIM);
        add_bias(k, kb, GQ_KV_DIM);
        add_bias(v, vb, GQ_KV_DIM);
        rope(q, GQ_HEADS, table);
        rope(k, GQ_KV_HEADS, table);
        kv_put(page_part(pool, l, 0), page_part(pool, l, 1), &r, bk->pos[t], k, v);
    }
    seqs_attention(s, bk, seqs, pool, l, threads);
    attention_out(s, l, b, bp, threads);
}

/* Classifier rows per product of seqs_logits: what hb holds for a block
 * of rows, whole tiles of rows (and of a block type's thread share). */
#define GQ_LOGIT_ROWS (GQ_HIDDEN >= 32 ? GQ_HIDDEN / 32 * 32 : GQ_HIDDEN)

/* The logits of the block's rows that end a sequence that asked for
 * them: their final norms gathered into xb, then the classifier in
 * products of GQ_LOGIT_ROWS of its rows (each read once for all the
 * block's sequences), each row's share copied to its sequence's logits. */
static void seqs_logits(gqa_state *s, const SeqBlock *bk, const gqa_seq *seqs, int threads) {
    Scratch sc = scratch(s, s->xb2);
    int who[GQ_BATCH], n = 0, t, r0, j;
    const unsigned char *w = GQ_TENSOR(s, wcls, 0);
    int type = GQ_TYPE(wcls, 0);
    for (t = 0; t < bk->b; t++) {
        const gqa_seq *seq = &seqs[bk->seq[t]];
        if (seq->logits && bk->pos[t] == seq->pos + seq->n - 1) {
            rmsnorm(s->xb + (size_t)n * GQ_DIM, s->x + (size_t)t * GQ_DIM, GQ_VECTOR(s, rms_final, 0), GQ_DIM);
            who[n++] = bk->seq[t];
        }
    }
    if (!n)
        return;
    zero_rows(s->xb, n, seqs_rows(n), GQ_DIM);
    for (r0 = 0; r0 < GQ_VOCAB; r0 += GQ_LOGIT_ROWS) {
        int d = GQ_VOCAB - r0 < GQ_LOGIT_ROWS ? GQ_VOCAB - r0 : GQ_LOGIT_ROWS;
        matmul(s->hb, w + (size_t)r0 * row_bytes(type, GQ_DIM), type, s->xb, GQ_DIM, d, seqs_rows(n), &sc,
               threads);
        for (t = 0; t < n; t++)
            for (j = 0; j < d; j++)
                seqs[who[t]].logits[r0 + j] = s->hb[(size_t)t * (size_t)d + (size_t)j];
    }
}

/* The checks of forward_seqs, before anything is written. */
static int seqs_check(const gqa_state *s, const void *pool, size_t n_pages, const gqa_seq *seqs, int n_seqs) {
    int i, j;
    if (!s || !pool || (uintptr_t)pool % 64 != 0 || !seqs || n_seqs < 1)
        return GQA_EARG;
    for (i = 0; i < n_seqs; i++) {
        const gqa_seq *q = &seqs[i];
        if (!q->tokens || !q->pages || q->n < 1)
            return GQA_EARG;
        if (q->pos < 0 || q->n > GQ_CONTEXT - q->pos)
            return GQA_EPOS;
        for (j = 0; j < q->n; j++)
            if (q->tokens[j] < 0 || q->tokens[j] >= GQ_VOCAB)
                return GQA_ETOKEN;
        for (j = 0; j <= (q->pos + q->n - 1) / GQ_BLOCK; j++)
            if (q->pages[j] < 0 || (size_t)q->pages[j] >= n_pages)
                return GQA_EARG;
    }
    return GQA_OK;
}

/* Rows of the step from sequence *i's token *j on, at most GQ_BATCH, into
 * bk (embedded into x, RoPE tables into rope); advances (*i, *j). */
static void seqs_next_block(gqa_state *s, SeqBlock *bk, const gqa_seq *seqs, int n_seqs, int *i, int *j) {
    bk->b = bk->segs = 0;
    while (*i < n_seqs && bk->b < GQ_BATCH) {
        const gqa_seq *seq = &seqs[*i];
        int take = seq->n - *j < GQ_BATCH - bk->b ? seq->n - *j : GQ_BATCH - bk->b, t;
        bk->seg_row[bk->segs] = bk->b;
        bk->seg_n[bk->segs++] = take;
        for (t = 0; t < take; t++, bk->b++) {
            bk->seq[bk->b] = *i;
            bk->pos[bk->b] = seq->pos + *j + t;
            embed(s, s->x + (size_t)bk->b * GQ_DIM, seq->tokens[*j + t]);
            rope_table(s->rope + (size_t)bk->b * GQ_HEAD_DIM, bk->pos[bk->b]);
        }
        *j += take;
        if (*j == seq->n) {
            (*i)++;
            *j = 0;
        }
    }
}

static int gqm_forward_seqs(gqa_state *s, void *pool, size_t n_pages, const gqa_seq *seqs, int n_seqs) {
    SeqBlock bk;
    int err = seqs_check(s, pool, n_pages, seqs, n_seqs), i = 0, j = 0, l, threads;
#if GQ_RANKS > 1 /* gqac:sharded */
    return GQA_EARG; /* one rank's share of a step: not supported */
#endif
    if (err)
        return err;
    threads = thread_count(s);
    while (i < n_seqs) {
        seqs_next_block(s, &bk, seqs, n_seqs, &i, &j);
        for (l = 0; l < GQ_LAYERS; l++) {
            seqs_attention_layer(s, &bk, seqs, pool, l, threads);
            ffn_batch(s, l, bk.b, seqs_rows(bk.b), threads);
        }
        seqs_logits(s, &bk, seqs, threads);
    }
    return GQA_OK;
}

#if GQ_RANKS > 1 /* gqac:sharded */
/* This rank's share of the whole model (gqa_api.h). */
static const gqa_shard gq_shard = {
    GQ_RANKS, GQ_RANK,
    {GQ_DIM, GQ_WHOLE_HIDDEN, GQ_LAYERS, GQ_WHOLE_HEADS, GQ_WHOLE_KV_HEADS, GQ_HEAD_DIM, GQ_VOCAB_ALL, GQ_CONTEXT,
     GQ_TIED, GQ_QKV_BIAS, GQ_ROPE_HALVES, GQ_ROPE_THETA, (double)GQ_NORM_EPS, GQ_KV_TYPE, GQ_WINDOW,
     GQ_SINKS, GQ_GLOBAL_EVERY, GQ_MAX_POS},
    gq_whole_tensors,
    GQ_WHOLE_WEIGHT_BYTES,
    GQ_HEAD0,
    GQ_KV_HEAD0,
    GQ_HIDDEN0,
    GQ_VOCAB0,
    gq_vocab_counts,
};

/* The other ranks' collective operations, which every forward calls. */
static int gqm_set_comm(gqa_state *s, const gqa_comm *c) {
    if (!s || !c || !c->allreduce_sum || !c->allgather)
        return GQA_EARG;
    s->comm = c;
    return GQA_OK;
}
#else
/* A model built whole has no ranks to talk to. */
static int gqm_set_comm(gqa_state *s, const gqa_comm *c) {
    (void)s, (void)c;
    return GQA_EARG;
}
#endif

const gqa_model_api gqm_api = {
    GQA_API_VERSION,
    GQ_NAME,
    GQ_PREFIX,
    {GQ_DIM, GQ_HIDDEN, GQ_LAYERS, GQ_HEADS, GQ_KV_HEADS, GQ_HEAD_DIM, GQ_VOCAB, GQ_CONTEXT,
     GQ_TIED, GQ_QKV_BIAS, GQ_ROPE_HALVES, GQ_ROPE_THETA, (double)GQ_NORM_EPS, GQ_KV_TYPE, GQ_WINDOW,
     GQ_SINKS, GQ_GLOBAL_EVERY, GQ_MAX_POS},
    gq_rope_freqs,
    gq_tensors,
    GQ_N_TENSORS,
    GQ_WEIGHT_BYTES,
    GQ_ARENA_BYTES,
    64,
    GQ_KV_BYTES,
    gqm_init,
    gqm_init_tensors,
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
    GQ_BLOCK,
    GQ_PAGE_BYTES,
    GQ_SEQS_ARENA_BYTES,
    gqm_forward_seqs,
#if GQ_RANKS > 1 /* gqac:sharded */
    &gq_shard,
#else
    NULL,
#endif
    gqm_set_comm,
};
