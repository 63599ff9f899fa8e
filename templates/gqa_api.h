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
    GQA_EWEIGHTS = 2, /* weights NULL, or not the float count the model needs */
    GQA_ETOKEN = 3,   /* token outside [0, vocab_size) */
    GQA_EPOS = 4,     /* position outside [0, seq_len), or past the next unrun one */
    GQA_EARG = 5      /* some other NULL or out-of-range argument */
};

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
} gqa_shape;

/* An opaque model instance; each generated model defines it privately. */
typedef struct gqa_state gqa_state;

/* Bumped whenever gqa_model_api changes, so a loader (dlopen, a JIT) can
 * refuse a table built against another layout. */
#define GQA_API_VERSION 4

typedef struct gqa_model_api {
    int version;           /* GQA_API_VERSION of the code that built the table */
    const char *name;      /* the model's name from its .gqa file */
    const char *prefix;    /* the C prefix of its symbols */
    gqa_shape shape;
    /* RoPE angle per position of each of the head_dim / 2 pairs, in radians,
     * scaling applied: what a loader checks a file's frequencies against. */
    const double *rope_freqs;
    size_t n_weights;      /* floats of weights (host byte order), in llama2.c checkpoint order */
    size_t arena_bytes;    /* bytes one instance needs: state, scratch and KV cache */
    size_t arena_align;    /* required alignment of the arena, a power of two */
    size_t kv_cache_bytes; /* the KV cache's share of arena_bytes */
    /* Lays an instance out in arena over weights (which must outlive it). */
    int (*init)(gqa_state **out, void *arena, size_t arena_bytes,
                const float *weights, size_t n_weights);
    /* Runs token at position pos (positions 0..pos-1 must have been run
     * since init or reset) and writes vocab_size logits; logits NULL skips
     * the classifier (a prompt token whose prediction nobody reads). */
    int (*forward)(gqa_state *s, int token, int pos, float *logits);
    /* Runs tokens[0..n) at positions pos .. pos + n - 1, as n calls of
     * forward would (the same rules: pos <= the positions run, pos + n <=
     * seq_len, n >= 1), and writes the logits of the last token only (NULL
     * skips them).  Prompt processing: blocks of tokens go through every
     * layer together, as matrix-matrix products that read the weights once
     * per block.  GQA_EARG, GQA_EPOS or GQA_ETOKEN (any token) change
     * nothing.  NULL in a table that has no batch path: call forward. */
    int (*forward_batch)(gqa_state *s, const int *tokens, int n, int pos, float *logits);
    /* Forgets every position: the next forward starts at pos 0. */
    void (*reset)(gqa_state *s);
    /* Declares positions 0..n_pos-1 present in the KV cache, as they are
     * in the arena (a cache restored from elsewhere, or a benchmark of a
     * step at a given context); GQA_EPOS outside [0, seq_len]. */
    int (*seek)(gqa_state *s, int n_pos);
    /* Threads used by forward when built with OpenMP (ignored otherwise);
     * n < 1 means the OpenMP default. */
    void (*set_threads)(gqa_state *s, int n);
    /* init over the weights compiled into the program (gqac
     * --embed-weights), or NULL when there are none. */
    int (*init_embedded)(gqa_state **out, void *arena, size_t arena_bytes);
} gqa_model_api;

#endif
