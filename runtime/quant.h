/*
 * quant.h: ggml's block-quantized tensor formats, the ones gqac knows
 * (Q4_0, Q8_0, Q4_K, Q6_K), bit-exact with ggml: sizes, dequantizing, and
 * quantizing the way ggml's reference quantizers (quantize_row_*_ref) do,
 * so files gqac writes hold the bytes llama.cpp would write.
 *
 * Types are tensorfile.h's GQR_DT_* (F32, F16 and BF16 are types of one
 * element per block here); a GGUF file names them by ggml's type ids.
 * Blocks are read and written as little-endian bytes, so every host gets
 * the same floats.  Functions that can fail return 0, or -1 with a message
 * in err (errlen bytes).
 *
 * Non-finite scales: dequantizing gives what IEEE arithmetic gives (an
 * infinite scale times 0 is NaN).  Opening a file does not read its data,
 * so a loader of quantized weights calls gqr_q_check_row once per tensor
 * to refuse a NaN or infinite scale by its block.
 */
#ifndef GQR_QUANT_H
#define GQR_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* ggml's type ids of the types gqac knows (GGUF's tensor info "type"). */
enum {
    GQR_GGML_F32 = 0, GQR_GGML_F16 = 1, GQR_GGML_Q4_0 = 2, GQR_GGML_Q8_0 = 8,
    GQR_GGML_Q4_K = 12, GQR_GGML_Q6_K = 14, GQR_GGML_BF16 = 30
};

typedef struct gqr_q_type {
    int dtype;       /* GQR_DT_* */
    int ggml;        /* GQR_GGML_* */
    const char *name;
    int block;       /* elements per block */
    int block_bytes; /* bytes per block */
} gqr_q_type;

/* The type dtype (GQR_DT_*), or NULL for one gqac does not know. */
const gqr_q_type *gqr_q_type_of(int dtype);
/* The GQR_DT_* of ggml type id, or -1 for one gqac does not know. */
int gqr_q_from_ggml(uint32_t ggml_id);
/* The name of any ggml type id, "Q4_1", "IQ2_XS", ..., "unknown" past the
 * ones there are, for messages. */
const char *gqr_q_ggml_name(uint32_t ggml_id);
/* Whether dtype is a block type (more than one element per block). */
int gqr_q_is_block(int dtype);
/* The bytes of n elements of dtype in *bytes; -1 (with a message) when
 * dtype is unknown, n is not a multiple of its block size, or the size
 * passes 2^62. */
int gqr_q_row_bytes(int dtype, uint64_t n, uint64_t *bytes, char *err, size_t errlen);

/* n elements (a multiple of the block size) of dtype at src, as floats
 * in dst. */
void gqr_q_dequantize_row(int dtype, const unsigned char *src, uint64_t n, float *dst);
/* n floats (a multiple of the block size) into dtype's blocks at dst, as
 * ggml's reference quantizer does.  -1 for a value that is not finite or
 * is 2^30 or more in magnitude, or one too large for the type's f16
 * scales (its block named). */
int gqr_q_quantize_row(int dtype, const float *src, uint64_t n, unsigned char *dst, char *err,
                       size_t errlen);
/* -1 when a block of the n elements at src has a NaN or infinite f16
 * scale (d, or Q4_K's dmin), naming the block and its elements; 0 for the
 * one-element types. */
int gqr_q_check_row(int dtype, const unsigned char *src, uint64_t n, char *err, size_t errlen);

#endif
