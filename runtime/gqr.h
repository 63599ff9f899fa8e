/*
 * gqr.h: the gqac runtime.  Loads weights, samples, generates and runs the
 * standalone program for any model through its gqa_model_api table, so one
 * build of the runtime serves every generated model.
 *
 * Conventions: every function that can fail returns 0 (or a GQA_* code of
 * gqa_api.h, GQA_OK being 0) on success; the library never prints, it
 * hands back codes and messages.  Needs POSIX (mmap, clock_gettime).
 */
#ifndef GQR_H
#define GQR_H

#include <stddef.h>

#include "gqa_api.h"

/* Runtime failures beside gqa_api.h's GQA_* codes (kept clear of them). */
enum {
    GQR_ENOMEM = 64 /* an allocation failed */
};

/* ---- checkpoint.c: weights of any format, mapped, read or converted ---- */

/* Formats, told apart by content: a GGUF file (v2 or v3), a safetensors
 * file or the model.safetensors.index.json of a sharded set, or else a
 * llama2.c checkpoint.  The first two are converted (convert.c). */
enum {
    GQR_FORMAT_LLAMA2C = 0,
    GQR_FORMAT_GGUF = 1,
    GQR_FORMAT_SAFETENSORS = 2
};

/* A llama2.c file: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len; vocab_size < 0 means a separate
 * classifier follows), then exactly m->weight_bytes of packed weights
 * (gqa_api.h; for an f32 model, little-endian float32 in checkpoint
 * order).  A big-endian host reads them and byte-swaps the f32 tensors
 * instead of mapping. */
#define GQR_HEADER_BYTES 28

enum {
    GQR_LOAD_MMAP = 0,           /* map the file read-only; pages come on demand */
    GQR_LOAD_READ_HUGEPAGES = 1, /* read into 2 MiB aligned memory advised for huge pages */
    /* Or'ed with either: a GGUF's block-typed matrix (Q4_K, ...) loads
     * dequantized into an F32 tensor of the model (gqac tune pools floats);
     * without it that difference of types is an error. */
    GQR_LOAD_DEQUANTIZE = 4,
    /* Or'ed with GQR_LOAD_MMAP: the file's pages are not brought in at
     * load (a caller that reads part of it: a rank's slices). */
    GQR_LOAD_LAZY = 8
};

/* What holds, by format:
 *   every format: tensors[i] is m->tensors[i]'s data, as init_tensors
 *     takes it (the model's type, aligned to its element);
 *   llama2.c: weights/weight_bytes are the packed weights (tensors[i] =
 *     weights + m->tensors[i].offset);
 *   GGUF, safetensors: the file stays mapped; a tensor whose type is the
 *     model's, with no RoPE reordering, aligned (and, for F32/F16/BF16, on
 *     a little-endian host) points into the mapping, any other is
 *     converted into a buffer of its own.  weights is NULL until
 *     gqr_checkpoint_pack. */
typedef struct gqr_checkpoint {
    const void *weights;  /* m->weight_bytes of packed weights, read-only, until close */
    size_t weight_bytes;
    const void **tensors; /* one per m->tensors[i], until close */
    size_t n_tensors;
    size_t file_bytes;    /* the whole file, header included (GGUF, safetensors: the tensors' bytes) */
    size_t inplace_bytes; /* bytes of tensors used where the file holds them */
    size_t owned_bytes;   /* bytes of tensors converted into buffers of their own */
    int format;           /* GQR_FORMAT_* */
    void *map;            /* GQR_LOAD_MMAP of a llama2.c file: the mapping, else NULL */
    void *buf;            /* read, or packed: the buffer, else NULL */
    struct gqr_tensorfile *tf; /* GGUF, safetensors: the mapped files, else NULL */
    void **owned;         /* GGUF, safetensors: tensors[i]'s own buffer, or NULL (in place) */
} gqr_checkpoint;

/* Checks a whole file's bytes (size of them; only the header is read) against
 * the shape m was compiled for.  name prefixes the message.  0 or -1. */
int gqr_checkpoint_check_header(const unsigned char *bytes, size_t size,
                                const gqa_model_api *m, const char *name,
                                char *err, size_t errlen);
/* Opens path for m by flags (a GQR_LOAD_* value; converted formats are
 * always read into huge-page memory).  0, or -1 with a message naming the
 * file (and tensor), the expected and the found value in err; ck is then
 * zeroed, so closing it is harmless. */
int gqr_checkpoint_load(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                        int flags, char *err, size_t errlen);
/* ---- shard.c: a rank's slices (tensor parallelism) ---- */

/* gqr_checkpoint_load when m->shard is NULL.  Else path is checked as
 * the whole model's file (m->shard's shape and table: any format, and
 * the same messages), and each of m's tensors is cut from it (rows, or
 * each row's columns in whole blocks, as gqa_api.h's gqa_shard says)
 * into one buffer of m->weight_bytes: weights and tensors[i] the rank's
 * packed weights, owned_bytes their bytes; the file is then closed, so
 * only the rank's bytes stay resident (a tensor the whole load converts,
 * such as a GGUF's q/k rows reordered for RoPE, is converted whole
 * first).  flags: GQR_LOAD_DEQUANTIZE or not.  0, or -1 with a message,
 * ck zeroed. */
int gqr_checkpoint_open_shard(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                              int flags, char *err, size_t errlen);

/* The tokens of the whole model: a sharded model's logits (forward's)
 * are the whole vocabulary's, though its shape holds its own rows. */
int gqr_vocab_size(const gqa_model_api *m);

/* gqr_checkpoint_load with GQR_LOAD_MMAP. */
int gqr_checkpoint_open(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                        char *err, size_t errlen);
/* Packs the tensors of a GGUF or safetensors checkpoint into one buffer
 * of m->weight_bytes at their offsets (weights, weight_bytes), for a
 * caller that takes packed weights (an f32 model's floats: gqac quantize,
 * tune); a llama2.c checkpoint already is.  0, or -1 out of memory. */
int gqr_checkpoint_pack(gqr_checkpoint *ck, const gqa_model_api *m, char *err, size_t errlen);
/* The process's resident memory now (VmRSS) and at its peak (VmHWM), in
 * bytes, from /proc/self/status; -1 where there is none. */
int gqr_resident_bytes(size_t *rss, size_t *peak);
/* Releases the weights; safe on a zeroed or already closed checkpoint. */
void gqr_checkpoint_close(gqr_checkpoint *ck);
/* m->weight_bytes / 4 when every tensor of m is f32 (the packed weights
 * are then floats), else 0. */
size_t gqr_f32_floats(const gqa_model_api *m);

/* ---- convert.c: GGUF and safetensors to the model's layout and back ---- */

/* Tensor names: GGUF's (token_embd.weight, blk.N.attn_q.weight, ...) or
 * Hugging Face's (model.embed_tokens.weight, model.layers.N.self_attn.
 * q_proj.weight, ...).  Each of m's tensors is used in place or converted
 * (see gqr_checkpoint): to the model's own type with q and k rows
 * reordered when the file pairs RoPE's dimensions otherwise than the
 * model (Hugging Face: halves; GGUF llama: adjacent; GGUF qwen2: halves),
 * bytes swapped on a big-endian host; F16/BF16 widened to an F32 model's;
 * norms and biases to F32 from any type.  Any other difference of types
 * is an error naming the tensor, both types and `gqac import`.  Every
 * block-typed tensor's scales are checked (gqr_q_check_row).  Called by
 * gqr_checkpoint_load. */
int gqr_convert_load(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                     char *err, size_t errlen);
/* The same, block types dequantized into the model's F32 tensors when
 * dequantize is nonzero (GQR_LOAD_DEQUANTIZE). */
int gqr_convert_load_dequantized(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                                 int dequantize, char *err, size_t errlen);
/* Writes gqr_f32_floats(m) floats of weights (the model's layout) to path as a
 * GQR_FORMAT_GGUF (with llama.* or qwen2.* metadata) or
 * GQR_FORMAT_SAFETENSORS file, tensors stored as dtype (tensorfile.h's
 * GQR_DT_*). */
int gqr_convert_write(const char *path, int format, int dtype, const gqa_model_api *m,
                      const float *weights, char *err, size_t errlen);

/* What gqr_convert_write_opts writes: dtype for every tensor, except the
 * GGUF names in keep[0..n_keep) at keep_dtype (each must be a tensor of
 * the model).  A block type (Q8_0, Q4_0, Q4_K, Q6_K: GGUF only) quantizes
 * matrices, whose rows must be whole blocks, and leaves vectors F32. */
struct gqr_tensorfile; /* tensorfile.h */

typedef struct gqr_write_opts {
    int dtype;                              /* tensorfile.h's GQR_DT_* */
    const char *const *keep;
    int n_keep, keep_dtype;
    /* Or NULL: each tensor at the type of types' entry of its kind and
     * layer (a typed model's table, dtype and keep then ignored where one
     * is found); a block type for a matrix whose rows are not whole
     * blocks is an error naming the tensor. */
    const gqa_tensor *types;
    size_t n_types;
    const struct gqr_tensorfile *meta_from; /* a GGUF whose tokenizer.* keys are copied, or NULL */
    int counts[8];                          /* out: the tensors written per GQR_DT_* */
} gqr_write_opts;
int gqr_convert_write_opts(const char *path, int format, gqr_write_opts *o, const gqa_model_api *m,
                           const float *weights, char *err, size_t errlen);

/* ---- gguf_tokenizer.c: the tokenizer inside a GGUF file ---- */

struct gqr_tokenizer; /* tokenizer.h */

/* Builds *out (tokenizer.h) from path's tokenizer.ggml.* metadata: a
 * SentencePiece ("llama") or byte-level BPE ("gpt2") vocabulary, checked
 * against vocab_size (0: not checked).  A file with no
 * tokenizer.ggml.model (gqac writes none) gives 0 and *out NULL.  Every
 * message names path. */
int gqr_gguf_tokenizer(struct gqr_tokenizer **out, const char *path, int vocab_size, char *err,
                       size_t errlen);
struct gqr_tensorfile; /* tensorfile.h */
/* The same from an open GGUF directory, called name in messages. */
int gqr_gguf_tokenizer_tf(struct gqr_tokenizer **out, const struct gqr_tensorfile *tf,
                          const char *name, int vocab_size, char *err, size_t errlen);

/* ---- sampler.c: next token from logits ---- */

typedef struct gqr_candidate { float p; int id; } gqr_candidate;

typedef struct gqr_sampler {
    int vocab_size;
    float temperature;        /* 0: greedy */
    float top_p;              /* 1: plain sampling from the softmax */
    unsigned long long rng;   /* splitmix64 state: same seed, same tokens, any host */
    gqr_candidate *cand;      /* vocab_size scratch entries for top-p */
} gqr_sampler;

/* 0, or -1 (and nothing allocated) when vocab_size <= 0, temperature < 0 or
 * not finite, or top_p outside (0, 1] or NaN. */
int gqr_sampler_init(gqr_sampler *s, int vocab_size, float temperature, float top_p,
                     unsigned long long seed);
/* A token in [0, vocab_size) from vocab_size logits, which it overwrites
 * with probabilities unless greedy.  Ties in greedy go to the lowest id. */
int gqr_sample(gqr_sampler *s, float *logits);
/* Uniform in [0, 1), 24 bits; advances the sampler's stream. */
float gqr_random_float(gqr_sampler *s);
void gqr_sampler_free(gqr_sampler *s);

/* ---- arena.c: one model instance's memory ---- */

/* m->arena_bytes zeroed bytes aligned to max(m->arena_align, 64), or NULL
 * (out of memory, or arena_align not a power of two). */
void *gqr_arena_alloc(const gqa_model_api *m);
void gqr_arena_free(void *arena);
/* bytes of memory aligned to 2 MiB and advised for transparent huge pages
 * (decode reads the weights faster from them); free() releases it. */
void *gqr_pages_alloc(size_t bytes);

/* ---- generate.c: prompt, then sampled tokens ---- */

/* Called with each generated token as soon as it is sampled; pos is the
 * position it takes in the sequence (n_prompt for the first one).
 * Nonzero stops the generation there (an end-of-sequence token). */
typedef int (*gqr_token_fn)(void *user, int token, int pos);

typedef struct gqr_result {
    int n_prompt;          /* prompt positions run */
    int n_generated;       /* tokens handed to on_token */
    double prompt_seconds; /* forward over the prompt */
    double gen_seconds;    /* sampling and forward over generated tokens */
} gqr_result;

/* Runs prompt[0..n_prompt) at positions 0.. through m->forward_batch (or
 * m->forward token by token where the model has none) on s (fresh
 * from init or reset), then samples up to n_generate tokens, feeding each
 * back, until n_generate are done, on_token asks to stop, or the next
 * one's position would reach shape.max_positions (seq_len, or past it
 * where every layer has a sliding window).  The last generated token is not fed back.  res (may be NULL)
 * holds what was done even on error.  Returns GQA_OK, forward's code,
 * GQA_EARG (n_prompt < 1, n_generate < 0, NULL argument, sampler vocab
 * mismatch), GQA_EPOS (n_prompt > max_positions) or GQR_ENOMEM. */
int gqr_generate(const gqa_model_api *m, gqa_state *s, gqr_sampler *smp,
                 const int *prompt, int n_prompt, int n_generate,
                 gqr_token_fn on_token, void *user, gqr_result *res);
/* A static description of a GQA_* or GQR_* code. */
const char *gqr_strerror(int code);

/* ---- cli.c: the standalone program ---- */

/* A whole main(): `return gqr_main(&foo_api, argc, argv);`.  Exit status
 * 0 success, 1 bad input (weights, tokens), 2 usage; --help lists flags. */
int gqr_main(const gqa_model_api *m, int argc, char **argv);
/* One rank of a tensor-parallel run (mpi_main.c fills it over MPI; the
 * runtime itself never calls MPI). */
typedef struct gqr_ranks {
    int rank, ranks;
    const gqa_comm *comm; /* set on a sharded model's instance */
    void *ctx;
    /* Rank 0's seed, on every rank. */
    unsigned long long (*share_seed)(void *ctx, unsigned long long seed);
    /* Nonzero on every rank when failed is nonzero on any. */
    int (*agree)(void *ctx, int failed);
    /* Every rank's two numbers, rank after rank, in all; 0 or nonzero. */
    int (*gather2)(void *ctx, const double *mine, double *all);
    /* Ends every rank with status (a rank that fails while the others
     * wait in a collective operation); does not return. */
    void (*abort)(void *ctx, int status);
} gqr_ranks;
/* gqr_main on every rank: each loads its slices (gqr_checkpoint_open_shard),
 * sets the comm, runs the same steps; rank 0 prints the text and the
 * statistics (its load line: what each rank holds), every rank its own
 * errors as "rank R: ...". */
int gqr_main_ranks(const gqa_model_api *m, int argc, char **argv, const gqr_ranks *rk);
/* The program of a sharded model under mpirun (libgqa_mpi.a, mpi_main.c):
 * MPI set up, then gqr_main_ranks over MPI_COMM_WORLD; checks that the
 * job's size and this process's rank are the ones the code was compiled
 * for. */
int gqr_mpi_main(const gqa_model_api *m, int argc, char **argv);
/* A gqa_comm over MPI_COMM_WORLD (comm_mpi.c; MPI already initialized):
 * 0, or -1 with a message. */
int gqr_comm_mpi(gqa_comm *c, char *err, size_t errlen);
void gqr_comm_mpi_free(gqa_comm *c);

/* 1 when gqr_main's flag is followed by a value (--weights W), else 0:
 * for a caller that passes gqr_main's flags along among its own. */
int gqr_flag_takes_value(const char *flag);

#endif
