/*
 * The interface of one gqac-generated model.  All memory is the caller's:
 *
 *     static float logits[GQM_VOCAB];
 *     void *arena = aligned_alloc(GQM_ARENA_ALIGN, GQM_ARENA_BYTES); (C11; or posix_memalign)
 *     gqa_state *s;
 *     int err = gqm_init(&s, arena, GQM_ARENA_BYTES, weights, GQM_WEIGHT_BYTES);
 *     for (pos = 0; !err && pos < n; pos++)
 *         err = gqm_forward(s, tokens[pos], pos, logits);
 *
 * or, for a prompt, err = gqm_forward_batch(s, tokens, n, 0, logits).
 *
 * weights are the packed weights, GQM_WEIGHT_BYTES (for an f32 model,
 * floats in llama2.c checkpoint order: the file after its 28-byte
 * header), or, with gqm_init_tensors, one pointer per tensor of
 * gqm_api.tensors (each layer's, in its own type: a quantized GGUF file's
 * tensors where the file is mapped).  They are read, never written or
 * copied, and may be shared by any number of instances.  Functions return GQA_OK or a
 * GQA_E* code from gqa_api.h; nothing is printed.  Instances are
 * independent: no globals, so several models and instances can live in one
 * process and run in separate threads.
 */
#ifndef GQM_MODEL_H
#define GQM_MODEL_H

#include "gqa_api.h" /* gqac:api */

#define GQM_DIM GQ_DIM
#define GQM_HIDDEN GQ_HIDDEN
#define GQM_LAYERS GQ_LAYERS
#define GQM_HEADS GQ_HEADS
#define GQM_KV_HEADS GQ_KV_HEADS
#define GQM_HEAD_DIM GQ_HEAD_DIM
#define GQM_VOCAB GQ_VOCAB
#define GQM_CONTEXT GQ_CONTEXT
#define GQM_WEIGHT_BYTES GQ_WEIGHT_BYTES     /* bytes of the packed weights */
#define GQM_N_TENSORS GQ_N_TENSORS           /* tensors, each layer's counted */
#define GQM_ARENA_BYTES GQ_ARENA_BYTES       /* bytes of one instance, KV cache included; a multiple of 64 */
#define GQM_ARENA_ALIGN 64                   /* alignment the arena needs */
#define GQM_KV_CACHE_BYTES GQ_KV_BYTES       /* the KV cache's share of the arena */
#define GQM_BATCH GQ_BATCH                   /* tokens per block of gqm_forward_batch */

/* The function table below, for code that handles any model. */
extern const gqa_model_api gqm_api;

/* Lays out an instance in arena (GQM_ARENA_BYTES, aligned to
 * GQM_ARENA_ALIGN) over the packed weights (GQM_WEIGHT_BYTES, aligned to
 * 4) and stores it in *out. */
int gqm_init(gqa_state **out, void *arena, size_t arena_bytes, const void *weights,
             size_t weight_bytes);
/* The same over tensors[i], the tensor gqm_api.tensors[i] describes, for
 * i < GQM_N_TENSORS (f32 ones aligned to 4 bytes, f16 and bf16 to 2). */
int gqm_init_tensors(gqa_state **out, void *arena, size_t arena_bytes, const void *const *tensors,
                     size_t n_tensors);

/* Runs token at position pos and writes GQM_VOCAB logits (logits NULL:
 * skip the classifier, for prompt tokens whose prediction nobody reads).
 * Positions run 0, 1, 2, ... from init or reset; pos may also repeat or go
 * back, which drops the later positions. */
int gqm_forward(gqa_state *s, int token, int pos, float *logits);

/* A prompt: tokens[0..n) at positions pos .. pos + n - 1, leaving the KV
 * cache and the positions run as n calls of gqm_forward would, and
 * GQM_VOCAB logits of the last token only (logits NULL: none).  The same
 * position rules: n >= 1, pos at most the positions run so far, pos + n
 * <= GQM_CONTEXT.  The tokens go through the layers in blocks of
 * GQM_BATCH, each projection a matrix-matrix product that reads every
 * weight once per block instead of once per token.  The logits agree
 * with a loop over gqm_forward to rounding (sums taken in another order).
 * Errors change nothing: GQA_EARG (s or tokens NULL, n < 1), GQA_EPOS,
 * GQA_ETOKEN (any token outside [0, GQM_VOCAB)). */
int gqm_forward_batch(gqa_state *s, const int *tokens, int n, int pos, float *logits);

#if GQ_EMBEDDED
/* gqm_init over the weights compiled in with the model (gqac
 * --embed-weights): no file, no I/O. */
int gqm_init_embedded(gqa_state **out, void *arena, size_t arena_bytes);
#endif

/* Forgets all positions. */
void gqm_reset(gqa_state *s);

/* Declares positions 0..n_pos-1 present in the KV cache as the arena
 * holds it (a restored cache, or measuring a step at a given context). */
int gqm_seek(gqa_state *s, int n_pos);

/* Threads for forward when compiled with OpenMP; n < 1: OpenMP's default. */
void gqm_set_threads(gqa_state *s, int n);

#endif
