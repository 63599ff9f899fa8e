/*
 * shape.h: the holes of the templates, with the values of a small default
 * model so that every template compiles, and is tested, on its own.
 *
 * In generated code gqac drops this file and defines each GQ_ macro with
 * the value for the model being compiled (see compiler/plan.c, which sets
 * every one).  The holes:
 *
 *   GQ_DIM GQ_HIDDEN GQ_LAYERS GQ_HEADS GQ_KV_HEADS GQ_HEAD_DIM GQ_VOCAB
 *   GQ_CONTEXT      the shape
 *   GQ_GROUP        query heads per KV head: GQ_HEADS / GQ_KV_HEADS
 *   GQ_Q_DIM        GQ_HEADS * GQ_HEAD_DIM
 *   GQ_KV_DIM       GQ_KV_HEADS * GQ_HEAD_DIM
 *   GQ_TIED         1 if the classifier is the token embedding
 *   GQ_QKV_BIAS     1 if q, k, v have biases
 *   GQ_ROPE_THETA   RoPE base (double), for the shape table
 *   GQ_ROPE_FREQS   each RoPE pair's angle per position in radians,
 *                   scaling applied (double initializer)
 *   GQ_ROPE_HALVES  1: RoPE pairs (i, i + head_dim/2), 0: (2i, 2i+1)
 *   GQ_NORM_EPS     RMSNorm epsilon (float)
 *   GQ_ATT_SCALE    1 / sqrt(GQ_HEAD_DIM) (float)
 *   GQ_ATT_HEADS    query heads attention's register tiles take together;
 *                   divides GQ_GROUP
 *   GQ_ATT_SPLIT    independent sums per head over head_dim in attention's
 *                   scores; divides GQ_HEAD_DIM
 *   GQ_ATT_LANES    lanes of attention's update tile (a vector's worth of
 *                   V columns); divides GQ_HEAD_DIM
 *   GQ_ATT_VECS     vectors of lanes in the update tile; GQ_ATT_VECS *
 *                   GQ_ATT_LANES divides GQ_HEAD_DIM
 *   GQ_SPLIT        most spans one KV head's positions are cut into for threads
 *   GQ_KV_TYPE      the KV cache's type, gqa_api.h's number: 0 f32, 1 f16,
 *                   2 bf16, 4 q8_0 (head_dim a multiple of 32)
 *   GQ_WINDOW       sliding window of the windowed layers (0: none)
 *   GQ_SINKS        positions from 0 a windowed layer always sees
 *   GQ_GLOBAL_EVERY > 0: every GQ_GLOBAL_EVERY-th layer has no window
 *   GQ_UNBOUNDED    1: every layer has a window, so positions are not
 *                   limited by the context (their cache is a ring)
 *   GQ_RING_CHUNK   most tokens whose K and V are stored before the first
 *                   of them attends (a prompt block: GQ_BATCH)
 *   GQ_PROMPT_TOKENS tokens of a prompt's attention tiles
 *   GQ_PROMPT_ROWS  query rows of their register tiles
 *   GQ_PROMPT_VECS  vectors of GQ_ATT_LANES V columns in the prompt's update
 *                   tile; GQ_PROMPT_VECS * GQ_ATT_LANES divides GQ_HEAD_DIM
 *   GQ_ACC_ROW      independent accumulators in matrix-vector rows; divides
 *                   GQ_DIM, GQ_HIDDEN and GQ_Q_DIM
 *   GQ_BATCH        tokens per block of forward_batch (the prompt's
 *                   matrix-matrix products); the arena holds one block
 *   GQ_TILE_ROWS    matrix rows of matmul's register tile
 *   GQ_TILE_VECS    vectors of tokens in matmul's register tile
 *   GQ_LANES        a vector's floats (16 for AVX-512); GQ_TILE_VECS *
 *                   GQ_LANES divides GQ_BATCH
 *   GQ_N_TENSORS    entries of the tensor table gq_tensors (gqa_api.h's
 *                   gqa_tensor: each layer's tensor of each kind, its type,
 *                   size and offset), which gqac emits before the templates
 *   GQ_T_<name>     where kind <name>'s first tensor is in the table
 *   GQ_WEIGHT_BYTES bytes of the packed weights (for an f32 model, the
 *                   llama2.c checkpoint after its header)
 *   GQ_X8_BYTES GQ_X8K_BYTES  the arena's bytes for them (0 if none)
 *   GQ_STATE_BYTES  the state's share of the arena (a pointer a tensor)
 *   GQ_ARENA_BYTES  bytes of one instance (state, scratch, KV cache)
 *   GQ_KV_BYTES     bytes of its KV cache at full context (the arena rounds
 *                   each KV head's positions up to attention's blocks)
 *   GQ_NAME         the model's name, a C string literal
 *   GQ_PREFIX       the C prefix, a C string literal
 *   GQ_FREESTANDING 1: no libc, libm or OpenMP (gqac --target freestanding)
 *   GQ_EMBEDDED     1: the weights are compiled in (gqac --embed-weights)
 *   GQ_ROPE_TABLE   1: RoPE's cos and sin for every position come from the
 *                   table gq_rope that gqac computed (--rope-table)
 *   GQ_HAS_Q8_0 GQ_HAS_Q4_0 GQ_HAS_Q4_K GQ_HAS_Q6_K GQ_HAS_F16 GQ_HAS_BF16
 *                   1: the model has weights of that type, and qdot.c
 *                   compiles its kernels (dot_*, tile_*)
 *   GQ_HAS_X8       1: qdot.c's quantize_x8 (Q8_0 and Q4_0 activations)
 *   GQ_HAS_X8K      1: qdot.c's quantize_x8k (Q4_K and Q6_K activations)
 *   GQ_HAS_ROWS     1: qdot.c's row_to_floats (an embedding not in f32)
 *   GQ_ROPE_STEPS   freestanding only: each RoPE pair's angle per position,
 *                   in turns scaled by 2^64 (uint64_t initializer)
 *   GQ_RANKS        > 1: the code is one rank's share of a model split over
 *                   GQ_RANKS ranks (gqac --ranks; compiler/shard.c): its
 *                   regions marked gqac:sharded; in whole code they are gone
 *   GQ_RANK GQ_HEAD0 GQ_KV_HEAD0 GQ_HIDDEN0 GQ_VOCAB0  the rank, and where its
 *                   query heads, KV heads, hidden units and vocabulary rows
 *                   start in the whole model (GQ_HEADS etc. are its share)
 *   GQ_VOCAB_ALL GQ_WHOLE_HEADS GQ_WHOLE_KV_HEADS GQ_WHOLE_HIDDEN
 *   GQ_WHOLE_N_TENSORS GQ_WHOLE_WEIGHT_BYTES  the whole model's
 *
 * Loops marked gqac:unroll have bounds that are holes or literals; gqac
 * unrolls them when the bound is small (compiler/plan.c sets the limit).
 */
#ifndef GQ_SHAPE_H
#define GQ_SHAPE_H

#define GQ_DIM 64
#define GQ_HIDDEN 176
#define GQ_LAYERS 2
#define GQ_HEADS 8
#define GQ_KV_HEADS 2
#define GQ_HEAD_DIM 8
#define GQ_VOCAB 96
#define GQ_CONTEXT 32
#define GQ_GROUP (GQ_HEADS / GQ_KV_HEADS)
#define GQ_Q_DIM (GQ_HEADS * GQ_HEAD_DIM)
#define GQ_KV_DIM (GQ_KV_HEADS * GQ_HEAD_DIM)
#define GQ_TIED 1
#define GQ_QKV_BIAS 1
#define GQ_ROPE_THETA 10000.0
#define GQ_ROPE_FREQS {1.0, 0.10000000000000001, 0.01, 0.001}
#define GQ_ROPE_HALVES 0
#define GQ_NORM_EPS 1e-5f
#define GQ_ATT_SCALE 0.35355339059327373f
#define GQ_ATT_HEADS 4
#define GQ_ATT_SPLIT 2
#define GQ_ATT_LANES 8
#define GQ_ATT_VECS 1
#define GQ_SPLIT 8
#define GQ_PROMPT_TOKENS 16
#define GQ_PROMPT_ROWS 8
#define GQ_PROMPT_VECS 1
#define GQ_ACC_ROW 8
#define GQ_BATCH 16
#define GQ_TILE_ROWS 4
#define GQ_TILE_VECS 1
#define GQ_LANES 8
#ifndef GQ_KV_TYPE /* a test may build the templates for each type */
#define GQ_KV_TYPE 0
#endif
#define GQ_WINDOW 0
#define GQ_SINKS 0
#define GQ_GLOBAL_EVERY 0
#define GQ_UNBOUNDED 0
#define GQ_RING_CHUNK GQ_BATCH

#define GQ_X8_BYTES 0
#define GQ_X8K_BYTES 0

#define GQ_KV_BYTES (2 * GQ_CACHE_BYTES)
#define GQ_STATE_BYTES 4096
#define GQ_ARENA_BYTES (GQ_STATE_BYTES + 4 * GQ_SCRATCH_FLOATS + 2 * GQ_CACHE_BYTES)
#define GQ_NAME "default"
#define GQ_PREFIX "gqm"
#ifndef GQ_FREESTANDING /* a test may build the templates both ways */
#define GQ_FREESTANDING 0
#endif
#define GQ_EMBEDDED 0
#define GQ_ROPE_TABLE 0
#define GQ_HAS_Q8_0 1
#define GQ_HAS_Q4_0 1
#define GQ_HAS_Q4_K 1
#define GQ_HAS_Q6_K 1
#define GQ_HAS_F16 1
#define GQ_HAS_BF16 1
#define GQ_HAS_X8 1
#define GQ_HAS_X8K 1
#ifndef GQ_HAS_ROWS /* a test that has no embedding sets 0 */
#define GQ_HAS_ROWS 1
#endif
#define GQ_RANKS 1
#define GQ_ROPE_STEPS \
    {0x28be60db93910600ull, 0x041309af8ec1b3c0ull, 0x00684dc4c179c530ull, 0x000a6e2d468c2d52ull}

#endif
