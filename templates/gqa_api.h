/*
 * gqa_api.h: the function table every gqac-generated model exports.
 *
 * A generated model `foo` (prefix foo) defines `const gqa_model_api foo_api`.
 * The runtime (weights loading, sampling, generation) works through this
 * table only, so it never depends on one model's shape, and a JIT can hand
 * the same table to the same runtime.  This file is the single source: gqac
 * copies it into every generated header (hence the guard, so several model
 * headers can be included together) and `make install` installs it.
 *
 * All memory belongs to the caller.  A model instance lives in one arena of
 * `arena_bytes` bytes aligned to `arena_align`: its state, scratch buffers and
 * KV cache.  Weights are read-only and may be shared by any number of
 * instances; instances share nothing else, so separate instances may run in
 * separate threads at once.
 */
#ifndef GQA_API_H
#define GQA_API_H

#include <stddef.h>

/* Return codes of init and forward; the runtime's gqr_strerror() names them. */
enum {
    GQA_OK = 0,
    GQA_EARENA = 1,   /* arena NULL, too small or misaligned */
    GQA_EWEIGHTS = 2, /* weights NULL, or not the byte count or tensor count the model needs */
    GQA_ETOKEN = 3,   /* token outside [0, vocab_size) */
    GQA_EPOS = 4,     /* position outside [0, max_positions), past the next unrun one,
                       * or back to where a sliding window's ring was overwritten */
    GQA_EARG = 5,     /* some other NULL or out-of-range argument */
    GQA_ECOMM = 6     /* a rank's collective operation failed, or a sharded
                       * model has none set (set_comm) */
};

/* Weight types: ggml's layouts (block_q8_0 and the rest, little-endian,
 * bit for bit), numbered as the runtime's GQR_DT_*. */
enum {
    GQA_DT_F32 = 0,
    GQA_DT_F16 = 1,
    GQA_DT_BF16 = 2,
    GQA_DT_Q4_0 = 3, /* 32 weights in 18 bytes: f16 scale, 16 bytes of nibbles */
    GQA_DT_Q8_0 = 4, /* 32 weights in 34 bytes: f16 scale, 32 int8 */
    GQA_DT_Q4_K = 5, /* 256 weights in 144 bytes */
    GQA_DT_Q6_K = 6  /* 256 weights in 210 bytes */
};

/* Tensor kinds, in checkpoint order (llama2.c's, then the q/k/v biases). */
enum {
    GQA_T_EMBED = 0,     /* (vocab, dim) token embedding */
    GQA_T_RMS_ATT = 1,   /* (dim) per layer */
    GQA_T_WQ = 2,        /* (heads * head_dim, dim) per layer */
    GQA_T_WK = 3,        /* (kv_heads * head_dim, dim) per layer */
    GQA_T_WV = 4,        /* (kv_heads * head_dim, dim) per layer */
    GQA_T_WO = 5,        /* (dim, heads * head_dim) per layer */
    GQA_T_RMS_FFN = 6,   /* (dim) per layer */
    GQA_T_W1 = 7,        /* (hidden, dim) per layer: the gate */
    GQA_T_W2 = 8,        /* (dim, hidden) per layer: down */
    GQA_T_W3 = 9,        /* (hidden, dim) per layer: up */
    GQA_T_RMS_FINAL = 10, /* (dim) */
    GQA_T_CLS = 11,      /* (vocab, dim) classifier; absent when tied to the embedding */
    GQA_T_BQ = 12,       /* (heads * head_dim) per layer, qkv_bias models only */
    GQA_T_BK = 13,
    GQA_T_BV = 14
};

/* One weight tensor: one layer's (or the model's, layer -1) tensor of a
 * kind, rows of cols elements of dtype, row after row: f32 in host byte
 * order, every other type as ggml's little-endian bytes (as a GGUF file
 * holds them, so that a mapped file is used in place on any host). */
typedef struct gqa_tensor {
    const char *name; /* gqac's name of the kind: "wq", "token_embedding", ... */
    int kind;         /* GQA_T_* */
    int layer;        /* 0 .. n_layers - 1, or -1 */
    int dtype;        /* GQA_DT_* */
    int rows, cols;   /* cols: a matrix's input width; a vector is one row */
    size_t bytes;     /* rows * cols elements of dtype */
    size_t offset;    /* where init finds it in the packed weights */
} gqa_tensor;

/* The shape a model was compiled for. */
typedef struct gqa_shape {
    int dim;             /* model width */
    int hidden_dim;      /* FFN hidden width */
    int n_layers;
    int n_heads;         /* query heads */
    int n_kv_heads;      /* key/value heads; query head h reads KV head h / (n_heads / n_kv_heads) */
    int head_dim;
    int vocab_size;
    int seq_len;         /* maximum context */
    int tied_embeddings; /* 1: the output classifier is the token embedding */
    int qkv_bias;        /* 1: q, k and v projections have biases */
    int rope_halves;     /* 1: RoPE rotates dimensions (i, i + head_dim/2) of
                          * each head, as Hugging Face stores q and k; 0: (2i,
                          * 2i+1), as Meta, llama2.c and GGUF-llama do */
    double rope_theta;
    double norm_eps;
    int kv_type;         /* GQA_DT_* of the KV cache: F32, F16, BF16 or Q8_0 */
    int window;          /* sliding window: a position sees the `window` up to
                          * itself (and the first `sinks`); 0: every one */
    int sinks;
    int global_every;    /* > 0: every global_every-th layer (counting from 1)
                          * has no window */
    int max_positions;   /* positions forward runs: seq_len, or, when every
                          * layer has a window, as far as an int goes */
} gqa_shape;

/* An opaque model instance; each generated model defines it privately. */
typedef struct gqa_state gqa_state;

/* One sequence's share of a forward_seqs step (serving many sequences at
 * once over a paged KV cache).  Its positions live in pages of the
 * caller's pool: positions a * page_positions .. (a + 1) * page_positions
 * - 1 in page pages[a]. */
typedef struct gqa_seq {
    const int *tokens; /* n tokens, at positions pos .. pos + n - 1 */
    int n;             /* >= 1: 1 decoding, more a chunk of its prompt */
    int pos;           /* positions 0 .. pos - 1 are already in its pages */
    const int *pages;  /* a page for every position up to pos + n - 1 */
    float *logits;     /* vocab_size floats: its last token's logits; NULL skips them */
} gqa_seq;

/* ---- tensor parallelism: one rank's share of a model ----
 * A sharded model (gqac --ranks N --rank R) is the whole model's code at
 * this rank's shape: its query heads with the KV heads they read (whole
 * groups; a KV head is replicated on every rank whose heads share it
 * when ranks > kv_heads), a slice of the FFN's hidden units, and a slice
 * of the vocabulary (the classifier's rows and the embedding's).  Wq, Wk,
 * Wv, W1, W3, the q/k/v biases, the embedding and the classifier are cut
 * by rows, Wo and W2 by columns (whole blocks), the norms are whole.  The
 * generated code calls these between ranks; the runtime fills them
 * (runtime/comm_mpi.c), a single-process build never does. */
typedef struct gqa_comm {
    void *ctx;
    /* x[0..n) summed element by element over every rank, the sum left in
     * every rank's x.  0, or nonzero when the operation failed. */
    int (*allreduce_sum)(void *ctx, float *x, size_t n);
    /* Every rank's part[0 .. counts[r]) placed in all, rank after rank,
     * on every rank.  0, or nonzero when the operation failed. */
    int (*allgather)(void *ctx, const float *part, float *all, const int *counts);
} gqa_comm;

/* What a rank holds of the whole model (api->shape and api->tensors are
 * the rank's own: heads, kv_heads, hidden_dim and vocab_size its share). */
typedef struct gqa_shard {
    int ranks, rank;
    gqa_shape whole;                 /* the whole model's shape */
    const gqa_tensor *whole_tensors; /* the whole model's table, in the same order */
    size_t whole_weight_bytes;
    int head0;       /* the rank's first query head */
    int kv_head0;    /* its first KV head */
    int hidden0;     /* its first FFN hidden unit */
    int vocab0;      /* its first vocabulary row */
    const int *vocab_counts; /* ranks entries: every rank's vocabulary rows */
} gqa_shard;

/* Bumped whenever gqa_model_api changes, so a loader (dlopen, a JIT) can
 * refuse a table built against another layout. */
#define GQA_API_VERSION 8

typedef struct gqa_model_api {
    int version;           /* GQA_API_VERSION of the code that built the table */
    const char *name;      /* the model's name from its .gqa file */
    const char *prefix;    /* the C prefix of its symbols */
    gqa_shape shape;
    /* RoPE angle per position of each of the head_dim / 2 pairs, in radians,
     * scaling applied: what a loader checks a file's frequencies against. */
    const double *rope_freqs;
    /* The weight tensors, in checkpoint order, each with its type: what a
     * loader fills init_tensors' table by.  The model reads them in place. */
    const gqa_tensor *tensors;
    size_t n_tensors;
    /* Bytes of the packed weights: every tensor at its offset, each layer's
     * starting on 4 bytes (for an f32 model, the llama2.c checkpoint after
     * its header: floats in host byte order, in checkpoint order). */
    size_t weight_bytes;
    size_t arena_bytes;    /* bytes one instance needs: state, scratch and KV cache */
    size_t arena_align;    /* required alignment of the arena, a power of two */
    size_t kv_cache_bytes; /* the KV cache's share of arena_bytes */
    /* Lays an instance out in arena over the packed weights (which must
     * outlive it, as must each of init_tensors' tensors). */
    int (*init)(gqa_state **out, void *arena, size_t arena_bytes,
                const void *weights, size_t weight_bytes);
    /* The same over one pointer per tensor (tensors[i] holds the tensor
     * tensors[i] of this table describes): weights where a file keeps
     * them, not packed.  Each pointer is aligned to its type's element
     * (4 bytes for f32, 2 for f16 and bf16, any byte for block types);
     * GQA_EWEIGHTS for a NULL or misaligned one. */
    int (*init_tensors)(gqa_state **out, void *arena, size_t arena_bytes,
                        const void *const *tensors, size_t n_tensors);
    /* Runs token at position pos (positions 0..pos-1 must have been run
     * since init or reset) and writes vocab_size logits; logits NULL skips
     * the classifier (a prompt token whose prediction nobody reads). */
    int (*forward)(gqa_state *s, int token, int pos, float *logits);
    /* Runs tokens[0..n) at positions pos .. pos + n - 1, as n calls of
     * forward would (the same rules: pos <= the positions run, pos + n <=
     * max_positions, n >= 1), and writes the logits of the last token only (NULL
     * skips them).  Prompt processing: blocks of tokens go through every
     * layer together, as matrix-matrix products that read the weights once
     * per block.  GQA_EARG, GQA_EPOS or GQA_ETOKEN (any token) change
     * nothing.  NULL in a table that has no batch path: call forward. */
    int (*forward_batch)(gqa_state *s, const int *tokens, int n, int pos, float *logits);
    /* Forgets every position: the next forward starts at pos 0. */
    void (*reset)(gqa_state *s);
    /* Declares positions 0..n_pos-1 present in the KV cache, as they are
     * in the arena (a cache restored from elsewhere, or a benchmark of a
     * step at a given context); GQA_EPOS outside [0, max_positions], or
     * going back past what a sliding window's ring still holds (forward
     * and forward_batch at an earlier position check the same). */
    int (*seek)(gqa_state *s, int n_pos);
    /* Threads used by forward when built with OpenMP (ignored otherwise);
     * n < 1 means the OpenMP default. */
    void (*set_threads)(gqa_state *s, int n);
    /* init over the weights compiled into the program (gqac
     * --embed-weights), or NULL when there are none. */
    int (*init_embedded)(gqa_state **out, void *arena, size_t arena_bytes);
    /* ---- many sequences over a paged KV cache (serving) ---- */
    int page_positions; /* positions per page */
    size_t page_bytes;  /* one page: every layer's K and V for page_positions positions */
    /* Bytes of an instance used only through forward_seqs: arena_bytes
     * without the instance's own KV cache.  init and init_tensors take an
     * arena this small; such an instance's forward, forward_batch and
     * seek return GQA_EARENA. */
    size_t seqs_arena_bytes;
    /* Runs seqs[0 .. n_seqs) one step each, as if each ran alone through
     * forward_batch on its own cache: token rows of every sequence share
     * the projections and the FFN (each weight read once per block of
     * rows), attention reads each sequence's pages.  pool: n_pages pages
     * of page_bytes, 64-byte aligned.  A sequence's positions stop at
     * seq_len (no ring: a sliding window is a mask here).  Checks every
     * sequence first (sequences must not share a page: the caller's
     * allocator sees to it): GQA_EARG (NULL, n < 1, a page index outside
     * [0, n_pages) for a position up to pos + n - 1, a misaligned pool),
     * GQA_EPOS (pos < 0, pos + n > seq_len), GQA_ETOKEN, and then nothing
     * is written.  A
     * sequence's logits do not depend on the others in the step, bit for
     * bit, nor on the threads or where its pages are: only on its own
     * calls (the same chunks give the same bits).  They agree with
     * forward_batch on its own cache to rounding (sums in another order). */
    int (*forward_seqs)(gqa_state *s, void *pool, size_t n_pages, const gqa_seq *seqs, int n_seqs);
    /* ---- tensor parallelism ---- */
    /* This rank's share of the whole model, or NULL when not sharded. */
    const gqa_shard *shard;
    /* The collective operations a sharded instance calls (c must outlive
     * it); until set, its forward and forward_batch return GQA_ECOMM.
     * Every rank runs the same calls in the same order: tokens and
     * positions are the whole model's, and the logits written are the
     * whole vocabulary's, gathered on every rank.  A sharded model's
     * forward_seqs returns GQA_EARG.  GQA_EARG for an unsharded model. */
    int (*set_comm)(gqa_state *s, const gqa_comm *c);
} gqa_model_api;

/* ---- training (gqac --train): the step a training loop calls ---- */

/* Bumped whenever gqa_train_api changes. */
#define GQA_TRAIN_API_VERSION 1

/* A training instance (its buffers), opaque, in the caller's arena. */
typedef struct gqa_trainer gqa_trainer;

/* torch.optim.AdamW's update, exactly. */
typedef struct gqa_adamw {
    double lr, beta1, beta2, eps, weight_decay;
    long step; /* 1-based: the bias corrections' t */
} gqa_adamw;

/* The parameters are one flat f32 array, the model's packed f32 weights
 * (weight_bytes / 4 floats, the llama2.c checkpoint after its header, the
 * unused RoPE tables included), each tensor where the model's table says.
 * Gradients and AdamW's m and v are flat arrays of the same layout; floats
 * outside every tensor get gradient 0 and AdamW never changes them. */
typedef struct gqa_train_api {
    int version;     /* GQA_TRAIN_API_VERSION */
    size_t n_params; /* floats of params/grads/m/v: weight_bytes / 4 */
    /* Bytes of a trainer's arena (alignment: the model api's arena_align) for batch rows of seq
     * positions; 0 when batch < 1, seq < 1, seq > the model's context, or the size overflows. */
    size_t (*arena_bytes)(int batch, int seq);
    int (*init)(gqa_trainer **out, void *arena, size_t arena_bytes, int batch, int seq);
    void (*set_threads)(gqa_trainer *t, int n); /* OpenMP threads; < 1: the default */
    /* tokens: batch rows of seq + 1 ids; row b's inputs are tokens[b*(seq+1) + 0 .. seq-1] at positions
     * 0 .. seq-1, and its targets the ids one further.  *loss = the mean next-token cross-entropy over the
     * batch * seq predictions (accumulated in double); grads (n_params floats) overwritten with d loss /
     * d params (0 outside the tensors).  GQA_ETOKEN (nothing written) for an id outside the vocab. */
    int (*step)(gqa_trainer *t, const float *params, const int *tokens, float *grads, double *loss);
    /* The same loss, no gradient (evaluation). */
    int (*loss)(gqa_trainer *t, const float *params, const int *tokens, double *loss);
    /* Sum of squares of each tensor's gradient, sq[i] for the model table's tensor i (n_tensors of them):
     * gradient clipping's norm and the non-finite check. */
    void (*grad_sq)(gqa_trainer *t, const float *grads, double *sq);
    /* One AdamW update of every tensor: g = grads * scale (clipping), m = b1 m + (1-b1) g,
     * v = b2 v + (1-b2) g^2, p -= lr * wd * p (matrices only: embedding, wq wk wv wo w1 w2 w3, classifier;
     * not norms or biases), p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).  m, v: zero at first. */
    void (*adamw)(gqa_trainer *t, float *params, const float *grads, float *m, float *v,
                  const gqa_adamw *h, float scale);
} gqa_train_api;

#endif
