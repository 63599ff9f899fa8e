/*
 * test_quant.c: ggml's block formats (runtime/quant.c) and their GGUF
 * tensors.
 *
 *   - Dequantizing: against a plain dequantizer written here from the
 *     formats' description (not quant.c's code), bit for bit on random
 *     blocks and on the edges: scales 0, -0, subnormal, infinite, NaN;
 *     nibbles 0 and 15; 6-bit scales and mins 0 and 63; Q6_K's -32 and 31.
 *     NaN results compare as NaN (IEEE leaves their payloads to the host).
 *   - Non-finite scales: gqr_q_check_row names the block.
 *   - Quantizing: blocks derived by hand from ggml's reference rules (Q8_0,
 *     Q4_0); every type against a transcription of ggml-quants.c's
 *     reference quantizers kept below, byte for byte, on many kinds of
 *     rows; error bounds (Q8_0: |err| <= d/2 + 127 |d - f16(d)|; Q4_0:
 *     |err| <= |d| + 8 |d - f16(d)|, a value of the largest magnitude's
 *     opposite sign being clamped from 8 to 7 steps); exact round trips of
 *     values on the grid; zero rows (scale 0, no NaN); one huge value; the
 *     refusal of non-finite and too large values.
 *   - GGUF: quantized tensors written, read back and dequantized; other
 *     ggml types refused by name; rows that are not whole blocks refused;
 *     `gqac import` of a quantized file; the loader's refusal to convert.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cunit_run.h"
#include "gqr.h"
#include "quant.h"
#include "tensorfile.h"
#include "testing.h"


static char err[1024];

/* ---- random numbers (xorshift64*) ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1du) >> 32);
}

/* Uniform in [-1, 1). */
static float urand(void) {
    return (float)rnd() / 2147483648.0f - 1.0f;
}

/* ---- a plain dequantizer, from the formats' description ---- */

/* IEEE binary16 by its fields: subnormals m * 2^-24, normals (1024 + m) *
 * 2^(e - 25), infinities and NaN widened by bits. */
static float ref_f16(const unsigned char *p) {
    unsigned h = p[0] | p[1] << 8, e = h >> 10 & 31, m = h & 1023;
    float v;
    if (e == 31) {
        uint32_t u = (uint32_t)(h & 0x8000) << 16 | 0x7f800000u | (uint32_t)m << 13;
        memcpy(&v, &u, sizeof v);
        return v;
    }
    v = e ? ldexpf((float)(1024 + m), (int)e - 25) : ldexpf((float)m, -24);
    return h & 0x8000 ? -v : v;
}

/* Q8_0: d, then 32 signed bytes; x = q * d. */
static void ref_q8_0(const unsigned char *b, float *y) {
    for (int j = 0; j < 32; j++)
        y[j] = (float)(signed char)b[2 + j] * ref_f16(b);
}

/* Q4_0: d, then 16 bytes; low nibbles are elements 0-15, high 16-31;
 * x = (q - 8) * d. */
static void ref_q4_0(const unsigned char *b, float *y) {
    for (int j = 0; j < 32; j++) {
        int q = j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4;
        y[j] = (float)(q - 8) * ref_f16(b);
    }
}

/* Q4_K: d, dmin, 12 bytes of scales and mins, 128 bytes of nibbles.  Four
 * chunks of 64 elements share 32 bytes: the low nibbles are the chunk's
 * first sub-block, the high its second.  Sub-blocks 0-3 keep their 6-bit
 * scale and min in the low 6 bits of bytes s and s+4; sub-blocks 4-7 in
 * byte s+4's nibbles (scale low, min high), their top 2 bits in the top
 * bits of bytes s-4 (scale) and s (min).  x = d*scale*q - dmin*min. */
static void ref_q4_k(const unsigned char *b, float *y) {
    const unsigned char *s = b + 4, *qs = b + 16;
    for (int chunk = 0; chunk < 4; chunk++)
        for (int half = 0; half < 2; half++) {
            int sb = 2 * chunk + half, sc, mn;
            if (sb < 4) {
                sc = s[sb] & 63;
                mn = s[sb + 4] & 63;
            } else {
                sc = (s[sb + 4] & 15) + 16 * (s[sb - 4] >> 6);
                mn = (s[sb + 4] >> 4) + 16 * (s[sb] >> 6);
            }
            float dl = ref_f16(b) * (float)sc, ml = ref_f16(b + 2) * (float)mn;
            for (int l = 0; l < 32; l++) {
                int q = half ? qs[32 * chunk + l] >> 4 : qs[32 * chunk + l] & 15;
                y[64 * chunk + 32 * half + l] = dl * (float)q - ml;
            }
        }
}

/* Q6_K: ql[128], qh[64], int8 scales[16], d.  Two halves of 128: in each,
 * element l (0-31) of quarter k takes its low 4 bits from ql[l] (k 0, 2)
 * or ql[l + 32] (k 1, 3), low nibble for k < 2, high for k >= 2, and its
 * high 2 bits from bits 2k of qh[l]; q - 32 times d times the scale of
 * its 16. */
static void ref_q6_k(const unsigned char *b, float *y) {
    float d = ref_f16(b + 208);
    for (int h = 0; h < 2; h++) {
        const unsigned char *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int lo = ql[l + (k & 1) * 32], low = k < 2 ? lo & 15 : lo >> 4;
                int q = (low | (qh[l] >> (2 * k) & 3) << 4) - 32;
                int i = 128 * h + 32 * k + l;
                y[i] = d * (float)(signed char)b[192 + i / 16] * (float)q;
            }
    }
}

typedef struct {
    int dtype, block, bytes;
    void (*ref)(const unsigned char *, float *);
} Fmt;

static const Fmt fmts[] = {
    {GQR_DT_Q8_0, 32, 34, ref_q8_0},
    {GQR_DT_Q4_0, 32, 18, ref_q4_0},
    {GQR_DT_Q4_K, 256, 144, ref_q4_k},
    {GQR_DT_Q6_K, 256, 210, ref_q6_k},
};
enum { N_FMTS = 4 };

/* Same bits, or both NaN. */
static int same(float a, float b) {
    return !memcmp(&a, &b, sizeof a) || (isnan(a) && isnan(b));
}

/* quant.c's dequantizer against the reference on n_blocks blocks at b. */
static int agrees(const Fmt *f, const unsigned char *b, int n_blocks) {
    float got[4 * 256], want[256];
    gqr_q_dequantize_row(f->dtype, b, (uint64_t)(n_blocks * f->block), got);
    for (int k = 0; k < n_blocks; k++) {
        f->ref(b + k * f->bytes, want);
        for (int i = 0; i < f->block; i++)
            if (!same(got[k * f->block + i], want[i])) {
                fprintf(stderr, "\n    %s block %d element %d: %a, expected %a\n",
                        gqr_tf_dtype_name(f->dtype), k, i, got[k * f->block + i], want[i]);
                return 0;
            }
    }
    return 1;
}

/* Where a format keeps its f16 scales. */
static int scale_at(int dtype) {
    return dtype == GQR_DT_Q6_K ? 208 : 0;
}

static void set_f16(unsigned char *p, unsigned h) {
    p[0] = (unsigned char)h;
    p[1] = (unsigned char)(h >> 8);
}

/* ---- sizes and names ---- */

static void test_sizes(void) {
    uint64_t n;
    CU_ASSERT_EQUAL(gqr_q_row_bytes(GQR_DT_Q8_0, 64, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 68);
    CU_ASSERT_EQUAL(gqr_q_row_bytes(GQR_DT_Q4_0, 32, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 18);
    CU_ASSERT_EQUAL(gqr_q_row_bytes(GQR_DT_Q4_K, 512, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 288);
    CU_ASSERT_EQUAL(gqr_q_row_bytes(GQR_DT_Q6_K, 256, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 210);
    CU_ASSERT_EQUAL(gqr_q_row_bytes(GQR_DT_BF16, 3, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 6);
    CU_ASSERT_EQUAL(gqr_q_row_bytes(GQR_DT_Q8_0, 33, &n, err, sizeof err), -1);
    TEST_HAS(err, "33 elements are not whole Q8_0 blocks of 32");
    CU_ASSERT_EQUAL(gqr_q_row_bytes(GQR_DT_Q6_K, 128, &n, err, sizeof err), -1);
    TEST_HAS(err, "Q6_K blocks of 256");
    CU_ASSERT_EQUAL(gqr_q_row_bytes(GQR_DT_Q8_0, UINT64_C(1) << 62, &n, err, sizeof err), -1);
    TEST_HAS(err, "more than 2^62 bytes");
    CU_ASSERT_EQUAL(gqr_q_row_bytes(99, 1, &n, err, sizeof err), -1);
    CU_ASSERT_EQUAL(gqr_q_from_ggml(GQR_GGML_Q4_K), GQR_DT_Q4_K);
    CU_ASSERT_EQUAL(gqr_q_from_ggml(30), GQR_DT_BF16);
    CU_ASSERT_EQUAL(gqr_q_from_ggml(3), -1);
    CU_ASSERT_STRING_EQUAL(gqr_q_ggml_name(3), "Q4_1");
    CU_ASSERT_STRING_EQUAL(gqr_q_ggml_name(13), "Q5_K");
    CU_ASSERT_STRING_EQUAL(gqr_q_ggml_name(39), "MXFP4");
    CU_ASSERT_STRING_EQUAL(gqr_q_ggml_name(1000), "unknown");
    CU_ASSERT_STRING_EQUAL(gqr_tf_dtype_name(GQR_DT_Q6_K), "Q6_K");
    CU_ASSERT_EQUAL(gqr_tf_dtype_size(GQR_DT_Q8_0), 0);
    CU_ASSERT(gqr_q_is_block(GQR_DT_Q4_0) && !gqr_q_is_block(GQR_DT_F16));
}

/* ---- dequantizing ---- */

/* Random bytes with a random finite normal f16 scale (or two). */
static void random_block(const Fmt *f, unsigned char *b) {
    for (int i = 0; i < f->bytes; i++)
        b[i] = (unsigned char)rnd();
    for (int k = 0; k < (f->dtype == GQR_DT_Q4_K ? 2 : 1); k++)
        set_f16(b + scale_at(f->dtype) + 2 * k, (rnd() & 0x8000) | (0x400 + rnd() % 0x7800));
}

static void test_dequant_random(void) {
    unsigned char b[4 * 210];
    for (int t = 0; t < N_FMTS; t++)
        for (int iter = 0; iter < 300; iter++) {
            for (int k = 0; k < 4; k++)
                random_block(&fmts[t], b + k * fmts[t].bytes);
            CU_ASSERT_FATAL(agrees(&fmts[t], b, 4));
            for (int i = 0; i < 4 * fmts[t].bytes; i++) /* scales of any bits too */
                b[i] = (unsigned char)rnd();
            CU_ASSERT_FATAL(agrees(&fmts[t], b, 4));
        }
}

/* Every scale pattern of interest against every quant byte pattern. */
static void test_dequant_edges(void) {
    static const unsigned scales[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00,
                                      0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x7c01};
    static const unsigned char fills[] = {0x00, 0xff, 0x0f, 0xf0, 0x80, 0x7f, 0x3f, 0xc0, 0x55};
    unsigned char b[210];
    for (int t = 0; t < N_FMTS; t++)
        for (size_t s = 0; s < sizeof scales / sizeof *scales; s++)
            for (size_t f = 0; f < sizeof fills / sizeof *fills; f++) {
                memset(b, fills[f], sizeof b);
                set_f16(b + scale_at(fmts[t].dtype), scales[s]);
                if (fmts[t].dtype == GQR_DT_Q4_K) /* dmin: another pattern */
                    set_f16(b + 2, scales[(s + 3) % (sizeof scales / sizeof *scales)]);
                CU_ASSERT(agrees(&fmts[t], b, 1));
            }
}

/* The edges' values themselves, not only agreement. */
static void test_dequant_values(void) {
    unsigned char b[210];
    float y[256];
    /* Q8_0, d = 1: q -128 and 127; d = -0: zeros of the opposite sign. */
    memset(b, 0, sizeof b);
    set_f16(b, 0x3c00);
    b[2] = 0x80;
    b[3] = 0x7f;
    gqr_q_dequantize_row(GQR_DT_Q8_0, b, 32, y);
    CU_ASSERT(y[0] == -128 && y[1] == 127 && y[2] == 0);
    set_f16(b, 0x8000);
    gqr_q_dequantize_row(GQR_DT_Q8_0, b, 32, y);
    CU_ASSERT(y[0] == 0 && !signbit(y[0]) && y[1] == 0 && signbit(y[1]) && signbit(y[2]));
    /* The smallest subnormal scale: q * 2^-24, exactly. */
    set_f16(b, 0x0001);
    gqr_q_dequantize_row(GQR_DT_Q8_0, b, 32, y);
    CU_ASSERT(y[1] == ldexpf(127, -24));
    /* An infinite scale: infinities, and NaN where q is 0 (inf * 0). */
    set_f16(b, 0x7c00);
    gqr_q_dequantize_row(GQR_DT_Q8_0, b, 32, y);
    CU_ASSERT(isinf(y[0]) && y[0] < 0 && isinf(y[1]) && y[1] > 0 && isnan(y[2]));
    /* Q4_0: nibble 0 is -8 steps, 15 is +7. */
    memset(b, 0, sizeof b);
    set_f16(b, 0x4000); /* 2 */
    b[2] = 0xf0;
    gqr_q_dequantize_row(GQR_DT_Q4_0, b, 32, y);
    CU_ASSERT(y[0] == -16 && y[16] == 14 && y[1] == -16);
    /* Q4_K: scales and mins all 63 (every byte 0xff), d = 1, dmin = 0.5:
     * nibble 15 gives 63 * 15 - 31.5, nibble 0 gives -31.5. */
    memset(b, 0xff, 144);
    set_f16(b, 0x3c00);
    set_f16(b + 2, 0x3800);
    memset(b + 16, 0xf0, 128);
    gqr_q_dequantize_row(GQR_DT_Q4_K, b, 256, y);
    for (int i = 0; i < 256; i++)
        CU_ASSERT(y[i] == (i / 32 % 2 ? 63 * 15 - 31.5f : -31.5f));
    /* Scales and mins 0: all zero, whatever the nibbles. */
    memset(b + 4, 0, 12);
    gqr_q_dequantize_row(GQR_DT_Q4_K, b, 256, y);
    for (int i = 0; i < 256; i++)
        CU_ASSERT(y[i] == 0);
    /* Q6_K: all bits clear is q = -32, all set 31; scale -128 and 127. */
    memset(b, 0, sizeof b);
    set_f16(b + 208, 0x3c00);
    b[192] = 0x80;
    b[193] = 0x7f;
    gqr_q_dequantize_row(GQR_DT_Q6_K, b, 256, y);
    CU_ASSERT(y[0] == -128 * -32.0f && y[16] == 127 * -32.0f && y[32] == 0);
    memset(b, 0xff, 192);
    gqr_q_dequantize_row(GQR_DT_Q6_K, b, 256, y);
    CU_ASSERT(y[0] == -128 * 31.0f && y[16] == 127 * 31.0f);
}

static void test_check_row(void) {
    unsigned char b[4 * 210];
    for (int t = 0; t < N_FMTS; t++) {
        const Fmt *f = &fmts[t];
        for (int k = 0; k < 4; k++)
            random_block(f, b + k * f->bytes);
        uint64_t n = (uint64_t)(4 * f->block);
        CU_ASSERT_EQUAL(gqr_q_check_row(f->dtype, b, n, err, sizeof err), 0);
        set_f16(b + 2 * f->bytes + scale_at(f->dtype), 0x0001); /* subnormal: fine */
        CU_ASSERT_EQUAL(gqr_q_check_row(f->dtype, b, n, err, sizeof err), 0);
        set_f16(b + 2 * f->bytes + scale_at(f->dtype), 0x7e00);
        CU_ASSERT_EQUAL(gqr_q_check_row(f->dtype, b, n, err, sizeof err), -1);
        TEST_HAS(err, "block 2");
        TEST_HAS(err, "a NaN scale d");
        char range[64];
        snprintf(range, sizeof range, "[%d, %d)", 2 * f->block, 3 * f->block);
        TEST_HAS(err, range);
        set_f16(b + 2 * f->bytes + scale_at(f->dtype), 0x3c00);
        set_f16(b + 3 * f->bytes + scale_at(f->dtype), 0xfc00);
        CU_ASSERT_EQUAL(gqr_q_check_row(f->dtype, b, n, err, sizeof err), -1);
        TEST_HAS(err, "block 3");
        TEST_HAS(err, "an infinite scale d -inf");
    }
    set_f16(b + 3 * 144, 0x3c00);
    set_f16(b + 3 * 144 + 2, 0x7c00); /* Q4_K's dmin */
    CU_ASSERT_EQUAL(gqr_q_check_row(GQR_DT_Q4_K, b, 4 * 256, err, sizeof err), -1);
    TEST_HAS(err, "scale dmin inf");
}

/* ---- ggml's reference quantizers, transcribed ----
 *
 * TRANSCRIPTION: quantize_row_q8_0_ref, quantize_row_q4_0_ref,
 * quantize_row_q4_K_ref, quantize_row_q6_K_ref, make_qkx2_quants,
 * make_qx_quants (rmse_type 1, no quant weights) and nearest_int from
 * ggml-org/llama.cpp ggml/src/ggml-quants.c (MIT), kept as there, on
 * ggml's block structs, only the f16 conversion and the struct-to-bytes
 * step ours.  quant.c was written apart from it; this is what it must
 * agree with byte for byte. */

#define GG_MAX(a, b) ((a) > (b) ? (a) : (b))
#define GG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define GROUP_MAX_EPS 1e-15f
#define QK_K 256
#define GGML_FP32_TO_FP16(x) gqr_f32_to_f16(x)
#define GGML_FP16_TO_FP32(x) gqr_f16_to_f32(x)

typedef struct { uint16_t d; int8_t qs[32]; } block_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } block_q4_0;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } block_q6_K;

static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i; memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

static void quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t k) {
    const int nb = (int)(k / 32);
    for (int i = 0; i < nb; i++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float v = x[i*32 + j];
            amax = GG_MAX(amax, fabsf(v));
        }
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f/d : 0.0f;
        y[i].d = GGML_FP32_TO_FP16(d);
        for (int j = 0; j < 32; ++j) {
            const float x0 = x[i*32 + j]*id;
            y[i].qs[j] = (int8_t)roundf(x0);
        }
    }
}

static void quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t k) {
    static const int qk = 32;
    const int nb = (int)(k / qk);
    for (int i = 0; i < nb; i++) {
        float amax = 0.0f;
        float max  = 0.0f;
        for (int j = 0; j < qk; j++) {
            const float v = x[i*qk + j];
            if (amax < fabsf(v)) {
                amax = fabsf(v);
                max  = v;
            }
        }
        const float d  = max / -8;
        const float id = d ? 1.0f/d : 0.0f;
        y[i].d = GGML_FP32_TO_FP16(d);
        for (int j = 0; j < qk/2; ++j) {
            const float x0 = x[i*qk + 0    + j]*id;
            const float x1 = x[i*qk + qk/2 + j]*id;
            const uint8_t xi0 = (uint8_t)GG_MIN(15, (int8_t)(x0 + 8.5f));
            const uint8_t xi1 = (uint8_t)GG_MIN(15, (int8_t)(x1 + 8.5f));
            y[i].qs[j]  = xi0;
            y[i].qs[j] |= (uint8_t)(xi1 << 4);
        }
    }
}

static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights,
        uint8_t *L, float *the_min, uint8_t *Laux,
        float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax/(max - min);
    float scale = 1/iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale*(x[i] - min));
        L[i] = (uint8_t)GG_MAX(0, GG_MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta*is + nmax)/(max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale*(x[i] - min));
            l = GG_MAX(0, GG_MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w*l;
            sum_l2 += w*l*l;
            sum_xl += w*l*x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l)/D;
            float this_min   = (sum_l2 * sum_x - sum_l * sum_xl)/D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) {
                    L[i] = Laux[i];
                }
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63; *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j+4] & 0xF) | ((q[j-4] >> 6) << 4));
        *m = (uint8_t)((q[j+4] >>  4) | ((q[j-0] >> 6) << 4));
    }
}

static void quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t k) {
    const int nb = (int)(k / QK_K);
    uint8_t L[QK_K];
    uint8_t Laux[32];
    float   weights[32];
    float mins[QK_K/32];
    float scales[QK_K/32];
    for (int i = 0; i < nb; i++) {
        float max_scale = 0;
        float max_min = 0;
        for (int j = 0; j < QK_K/32; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32*j + l] * x[32*j + l];
            float av_x = sqrtf(sum_x2/32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32*j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32*j, weights, L + 32*j, &mins[j], Laux, -1.f, 0.1f, 20, 0);
            float scale = scales[j];
            if (scale > max_scale) {
                max_scale = scale;
            }
            float min = mins[j];
            if (min > max_min) {
                max_min = min;
            }
        }
        float inv_scale = max_scale > 0 ? 63.f/max_scale : 0.f;
        float inv_min   = max_min   > 0 ? 63.f/max_min   : 0.f;
        for (int j = 0; j < QK_K/32; ++j) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale*scales[j]);
            uint8_t lm = (uint8_t)nearest_int(inv_min*mins[j]);
            ls = GG_MIN(63, ls);
            lm = GG_MIN(63, lm);
            if (j < 4) {
                y[i].scales[j] = ls;
                y[i].scales[j+4] = lm;
            } else {
                y[i].scales[j+4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                y[i].scales[j-4] |= (uint8_t)((ls >> 4) << 6);
                y[i].scales[j-0] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        y[i].d = GGML_FP32_TO_FP16(max_scale/63.f);
        y[i].dmin = GGML_FP32_TO_FP16(max_min/63.f);
        uint8_t sc, m;
        for (int j = 0; j < QK_K/32; ++j) {
            get_scale_min_k4(j, y[i].scales, &sc, &m);
            const float d = GGML_FP16_TO_FP32(y[i].d) * sc;
            if (!d) continue;
            const float dm = GGML_FP16_TO_FP32(y[i].dmin) * m;
            for (int ii = 0; ii < 32; ++ii) {
                int l = nearest_int((x[32*j + ii] + dm)/d);
                l = GG_MAX(0, GG_MIN(15, l));
                L[32*j + ii] = (uint8_t)l;
            }
        }
        uint8_t *q = y[i].qs;
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
        x += QK_K;
    }
}

static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type,
        const float *qw) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) {
            L[i] = 0;
        }
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            L[i] = (int8_t)(nmax + GG_MAX(-nmax, GG_MIN(nmax-1, l)));
        }
        return 1/iscale;
    }
    int return_early = 0;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        return_early = 1;
    }
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = GG_MAX(-nmax, GG_MIN(nmax-1, l));
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i]));
        sumlx += w*x[i]*l;
        suml2 += w*l*l;
    }
    float scale = suml2 ? sumlx/suml2 : 0.0f;
    if (return_early) return suml2 > 0 ? 0.5f*(scale + 1/iscale) : 1/iscale;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) {
            continue;
        }
        iscale = -(nmax + 0.1f*is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = GG_MAX(-nmax, GG_MIN(nmax-1, l));
            float w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i]));
            sumlx += w*x[i]*l;
            suml2 += w*l*l;
        }
        if (suml2 > 0 && sumlx*sumlx > best*suml2) {
            for (int i = 0; i < n; ++i) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + GG_MAX(-nmax, GG_MIN(nmax-1, l)));
            }
            scale = sumlx/suml2; best = scale*sumlx;
        }
    }
    return scale;
}

static void quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t k) {
    const int64_t nb = k / QK_K;
    int8_t L[QK_K];
    float   scales[QK_K/16];
    for (int i = 0; i < nb; i++) {
        float max_scale = 0;
        float max_abs_scale = 0;
        for (int ib = 0; ib < QK_K/16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16*ib, L + 16*ib, 1, NULL);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(block_q6_K));
            y[i].d = GGML_FP32_TO_FP16(0.f);
            x += QK_K;
            continue;
        }
        float iscale = -128.f/max_scale;
        y[i].d = GGML_FP32_TO_FP16(1/iscale);
        for (int ib = 0; ib < QK_K/16; ++ib) {
            y[i].scales[ib] = (int8_t)GG_MIN(127, nearest_int(iscale*scales[ib]));
        }
        for (int j = 0; j < QK_K/16; ++j) {
            float d = GGML_FP16_TO_FP32(y[i].d) * y[i].scales[j];
            if (!d) {
                continue;
            }
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16*j + ii]/d);
                l = GG_MAX(-32, GG_MIN(31, l));
                L[16*j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y[i].ql;
        uint8_t *qh = y[i].qh;
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l +  0] & 0xF;
                const uint8_t q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF;
                const uint8_t q4 = L[j + l + 96] & 0xF;
                ql[l+ 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l+32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
        x += QK_K;
    }
}

/* ---- end of the transcription ---- */

/* One block of x through the transcription, as the file's bytes. */
static void ggml_block(int dtype, const float *x, unsigned char *out) {
    if (dtype == GQR_DT_Q8_0) {
        block_q8_0 y;
        quantize_row_q8_0_ref(x, &y, 32);
        set_f16(out, y.d);
        memcpy(out + 2, y.qs, 32);
    } else if (dtype == GQR_DT_Q4_0) {
        block_q4_0 y;
        quantize_row_q4_0_ref(x, &y, 32);
        set_f16(out, y.d);
        memcpy(out + 2, y.qs, 16);
    } else if (dtype == GQR_DT_Q4_K) {
        block_q4_K y;
        quantize_row_q4_K_ref(x, &y, 256);
        set_f16(out, y.d);
        set_f16(out + 2, y.dmin);
        memcpy(out + 4, y.scales, 12);
        memcpy(out + 16, y.qs, 128);
    } else {
        block_q6_K y;
        quantize_row_q6_K_ref(x, &y, 256);
        memcpy(out, y.ql, 128);
        memcpy(out + 128, y.qh, 64);
        memcpy(out + 192, y.scales, 16);
        set_f16(out + 208, y.d);
    }
}

/* Rows of kinds that exercise the scale searches' branches. */
static void make_row(int kind, float *x, int n) {
    float scale = ldexpf(1, (int)(rnd() % 24) - 12);
    for (int i = 0; i < n; i++) {
        float u = urand();
        switch (kind) {
        case 0: x[i] = u * scale; break;                               /* uniform */
        case 1: x[i] = (u + urand() + urand()) * scale; break;         /* bell-shaped */
        case 2: x[i] = fabsf(u) * scale + scale; break;                /* all positive */
        case 3: x[i] = -fabsf(u) * scale; break;                       /* all negative */
        case 4: x[i] = rnd() % 8 == 0 ? u * scale : 0; break;          /* mostly zero */
        case 5: x[i] = i % 37 == 5 ? 100 * u * scale : u * scale; break; /* outliers */
        case 6: x[i] = (float)((int)(rnd() % 9) - 4) * scale; break;   /* few levels */
        default: x[i] = i % 16 == 3 ? scale : 0.01f * u * scale; break;
        }
    }
}

static void test_quant_vs_ggml(void) {
    float x[1024];
    unsigned char got[4 * 210], want[4 * 210];
    for (int t = 0; t < N_FMTS; t++) {
        const Fmt *f = &fmts[t];
        int n = 4 * f->block, mismatches = 0;
        for (int iter = 0; iter < 400; iter++) {
            make_row(iter % 8, x, n);
            CU_ASSERT_EQUAL_FATAL(gqr_q_quantize_row(f->dtype, x, (uint64_t)n, got, err,
                                                     sizeof err), 0);
            for (int k = 0; k < 4; k++)
                ggml_block(f->dtype, x + k * f->block, want + k * f->bytes);
            if (memcmp(got, want, (size_t)(4 * f->bytes)) && mismatches++ < 3)
                fprintf(stderr, "\n    %s differs from ggml's on a row of kind %d\n",
                        gqr_tf_dtype_name(f->dtype), iter % 8);
        }
        CU_ASSERT_EQUAL(mismatches, 0);
    }
}

/* Blocks derived by hand from ggml's rules. */
static void test_quant_by_hand(void) {
    float x[32] = {127, -3.5f, 2.5f, 0.49f, -0.5f, -127};
    unsigned char b[34];
    /* Q8_0: amax 127 makes d = 1 (f16 0x3c00) and q = roundf(x), halves
     * away from zero: 127, -4, 3, 0, -1, -127, then zeros. */
    CU_ASSERT_EQUAL(gqr_q_quantize_row(GQR_DT_Q8_0, x, 32, b, err, sizeof err), 0);
    static const unsigned char q8[8] = {0x00, 0x3c, 0x7f, 0xfc, 0x03, 0x00, 0xff, 0x81};
    CU_ASSERT(!memcmp(b, q8, 8));
    for (int j = 8; j < 34; j++)
        CU_ASSERT_EQUAL(b[j], 0);
    /* Q4_0: the largest magnitude, 8, is positive, so d = 8 / -8 = -1
     * (f16 0xbc00) and q = trunc(x / d + 8.5) capped at 15: 8 -> 0,
     * -7 -> 15, -8 -> 16.5 capped to 15 (it comes back as -7), 0.5 -> 8,
     * 0.6 -> 7, -0.5 -> 9; 1.5 -> 7 and 0 -> 8 in the high nibbles. */
    float y[32] = {8, -7, -8, 0.5f, 0.6f, -0.5f};
    y[16] = 1.5f;
    CU_ASSERT_EQUAL(gqr_q_quantize_row(GQR_DT_Q4_0, y, 32, b, err, sizeof err), 0);
    static const unsigned char q4[8] = {0x00, 0xbc, 0x70, 0x8f, 0x8f, 0x88, 0x87, 0x89};
    CU_ASSERT(!memcmp(b, q4, 8));
    for (int j = 8; j < 18; j++)
        CU_ASSERT_EQUAL(b[j], 0x88);
}

/* Q8_0 and Q4_0 errors within the bounds their scale rules give. */
static void test_quant_bounds(void) {
    float x[32], back[32];
    unsigned char b[34];
    for (int iter = 0; iter < 2000; iter++) {
        make_row(iter % 8, x, 32);
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        CU_ASSERT_EQUAL_FATAL(gqr_q_quantize_row(GQR_DT_Q8_0, x, 32, b, err, sizeof err), 0);
        gqr_q_dequantize_row(GQR_DT_Q8_0, b, 32, back);
        float d = amax / 127, d16 = gqr_f16_to_f32(gqr_tf_le16(b));
        float bound = d / 2 + 127 * fabsf(d - d16) + 1e-6f * amax;
        for (int j = 0; j < 32; j++)
            CU_ASSERT(fabsf(back[j] - x[j]) <= bound);
        CU_ASSERT_EQUAL_FATAL(gqr_q_quantize_row(GQR_DT_Q4_0, x, 32, b, err, sizeof err), 0);
        gqr_q_dequantize_row(GQR_DT_Q4_0, b, 32, back);
        d = amax / 8;
        d16 = fabsf(gqr_f16_to_f32(gqr_tf_le16(b)));
        bound = d + 8 * fabsf(d - d16) + 1e-6f * amax;
        for (int j = 0; j < 32; j++)
            CU_ASSERT(fabsf(back[j] - x[j]) <= bound);
    }
}

/* The K types: the relative RMS error of random rows, under a sanity
 * bound about 1.5 times what these rows give (no bound follows from the
 * scale searches). */
static void test_quant_k_error(void) {
    float x[256], back[256];
    unsigned char b[210];
    static const int types[2] = {GQR_DT_Q4_K, GQR_DT_Q6_K};
    static const double limit[2] = {0.12, 0.035};
    for (int t = 0; t < 2; t++)
        for (int iter = 0; iter < 200; iter++) {
            make_row(iter % 2, x, 256);
            CU_ASSERT_EQUAL_FATAL(gqr_q_quantize_row(types[t], x, 256, b, err, sizeof err), 0);
            gqr_q_dequantize_row(types[t], b, 256, back);
            double e2 = 0, x2 = 0;
            for (int i = 0; i < 256; i++) {
                e2 += ((double)back[i] - x[i]) * ((double)back[i] - x[i]);
                x2 += (double)x[i] * x[i];
            }
            CU_ASSERT(sqrt(e2 / x2) <= limit[t]);
        }
}

/* Values on the grid come back exactly, bytes and all. */
static void test_quant_grid(void) {
    float x[32], back[32];
    unsigned char b[34];
    for (int iter = 0; iter < 100; iter++) {
        /* Q8_0 with d = 0.5: one value at 127 steps fixes amax. */
        for (int j = 0; j < 32; j++)
            x[j] = 0.5f * (float)((int)(rnd() % 255) - 127);
        x[rnd() % 32] = iter % 2 ? 63.5f : -63.5f;
        CU_ASSERT_EQUAL(gqr_q_quantize_row(GQR_DT_Q8_0, x, 32, b, err, sizeof err), 0);
        gqr_q_dequantize_row(GQR_DT_Q8_0, b, 32, back);
        CU_ASSERT(!memcmp(x, back, sizeof x));
        /* Q4_0 with d = -0.25: a value of 2 (q = 0) is the largest. */
        for (int j = 0; j < 32; j++)
            x[j] = -0.25f * (float)((int)(rnd() % 16) - 8);
        x[rnd() % 32] = 2;
        CU_ASSERT_EQUAL(gqr_q_quantize_row(GQR_DT_Q4_0, x, 32, b, err, sizeof err), 0);
        gqr_q_dequantize_row(GQR_DT_Q4_0, b, 32, back);
        CU_ASSERT(!memcmp(x, back, sizeof x));
    }
}

static void test_quant_zero_and_huge(void) {
    float x[512] = {0}, back[512];
    unsigned char b[2 * 210];
    for (int t = 0; t < N_FMTS; t++) {
        const Fmt *f = &fmts[t];
        uint64_t n = (uint64_t)(2 * f->block);
        memset(x, 0, sizeof x);
        CU_ASSERT_EQUAL(gqr_q_quantize_row(f->dtype, x, n, b, err, sizeof err), 0);
        CU_ASSERT(gqr_f16_to_f32(gqr_tf_le16(b + scale_at(f->dtype))) == 0);
        gqr_q_dequantize_row(f->dtype, b, n, back);
        for (uint64_t i = 0; i < n; i++)
            CU_ASSERT(back[i] == 0);
        /* One huge value among small ones: it survives, within the
         * format's step at its scale, and nothing turns NaN. */
        for (uint64_t i = 0; i < n; i++)
            x[i] = 1e-3f * urand();
        x[5] = 1e5f;
        CU_ASSERT_EQUAL(gqr_q_quantize_row(f->dtype, x, n, b, err, sizeof err), 0);
        gqr_q_dequantize_row(f->dtype, b, n, back);
        CU_ASSERT(fabsf(back[5] - 1e5f) <= 1e5f / 7);
        for (uint64_t i = 0; i < n; i++)
            CU_ASSERT(isfinite(back[i]) && (i == 5 || fabsf(back[i]) <= 1e5f / 7));
        /* Too large for the f16 scale, and not finite. */
        x[5] = 1e8f;
        CU_ASSERT_EQUAL(gqr_q_quantize_row(f->dtype, x, n, b, err, sizeof err),
                        f->dtype == GQR_DT_Q6_K ? 0 : -1);
        if (f->dtype != GQR_DT_Q6_K)
            TEST_HAS(err, "block 0");
        x[5] = 3e9f;
        CU_ASSERT_EQUAL(gqr_q_quantize_row(f->dtype, x, n, b, err, sizeof err), -1);
        TEST_HAS(err, "element 5 is 3e+09");
        x[5] = INFINITY;
        CU_ASSERT_EQUAL(gqr_q_quantize_row(f->dtype, x, n, b, err, sizeof err), -1);
        TEST_HAS(err, "element 5 is inf");
        x[5] = NAN;
        CU_ASSERT_EQUAL(gqr_q_quantize_row(f->dtype, x, n, b, err, sizeof err), -1);
        TEST_HAS(err, "finite values");
    }
    CU_ASSERT_EQUAL(gqr_q_quantize_row(GQR_DT_Q8_0, x, 31, b, err, sizeof err), -1);
    TEST_HAS(err, "31 elements are not whole Q8_0 blocks");
}

/* ---- GGUF files ---- */

/* A tensor of each block type: rows of 2 blocks of random values. */
typedef struct {
    const char *name;
    int dtype;
    uint64_t dims[2];
} Spec;

static const Spec specs[] = {
    {"token_embd.weight", GQR_DT_Q8_0, {8, 64}},
    {"blk.0.attn_q.weight", GQR_DT_Q4_K, {3, 512}},
    {"blk.0.attn_k.weight", GQR_DT_Q4_0, {2, 64}},
    {"output.weight", GQR_DT_Q6_K, {8, 512}},
    {"output_norm.weight", GQR_DT_F32, {1, 64}},
};
enum { N_SPECS = 5, MAX_ELEMS = 8 * 512 };

/* A llama file whose tensors are specs' types; their bytes in *blocks. */
static void write_quant_gguf(const char *path, unsigned char **blocks) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_GGUF);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    static const char *const keys[] = {"llama.embedding_length", "llama.block_count",
                                       "llama.context_length", "llama.feed_forward_length",
                                       "llama.attention.head_count"};
    static const uint32_t vals[] = {64, 1, 128, 128, 4};
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string(w, "general.architecture", "llama"), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string(w, "general.name", "quantized"), 0);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, keys[i], vals[i]), 0);
    float *x = malloc(MAX_ELEMS * sizeof *x);
    for (int i = 0; i < N_SPECS; i++) {
        uint64_t n = specs[i].dims[0] * specs[i].dims[1], bytes;
        make_row(i, x, (int)n);
        CU_ASSERT_EQUAL_FATAL(gqr_q_row_bytes(specs[i].dtype, n, &bytes, err, sizeof err), 0);
        blocks[i] = malloc((size_t)bytes);
        CU_ASSERT_EQUAL_FATAL(gqr_q_quantize_row(specs[i].dtype, x, n, blocks[i], err,
                                                 sizeof err), 0);
        CU_ASSERT_EQUAL(gqr_tf_writer_add_bytes(w, specs[i].name, specs[i].dtype, 2,
                                                specs[i].dims, blocks[i], bytes), 0);
    }
    free(x);
    CU_ASSERT_EQUAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);
}

/* test_tmp(name) holding write_quant_gguf's file, for tests that need
 * only the file: its path. */
static const char *quant_gguf_file(const char *name) {
    unsigned char *blocks[N_SPECS];
    const char *path = test_tmp(name);
    write_quant_gguf(path, blocks);
    for (int i = 0; i < N_SPECS; i++)
        free(blocks[i]);
    return path;
}

static void test_gguf_round_trip(void) {
    unsigned char *blocks[N_SPECS];
    const char *path = test_tmp("q.gguf");
    write_quant_gguf(path, blocks);
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, path, err, sizeof err), 0);
    float *want = malloc(MAX_ELEMS * sizeof *want), *got = malloc(MAX_ELEMS * sizeof *got);
    for (int i = 0; i < N_SPECS; i++) {
        const gqr_tensor *t = gqr_tf_find(tf, specs[i].name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        uint64_t n = specs[i].dims[0] * specs[i].dims[1], bytes;
        gqr_q_row_bytes(specs[i].dtype, n, &bytes, NULL, 0);
        CU_ASSERT_EQUAL(t->dtype, specs[i].dtype);
        CU_ASSERT(t->n_dims == 2 && t->dims[0] == specs[i].dims[0] &&
                  t->dims[1] == specs[i].dims[1] && t->n_elems == n);
        CU_ASSERT_EQUAL(t->n_bytes, bytes);
        CU_ASSERT(!memcmp(t->data, blocks[i], (size_t)bytes));
        gqr_q_dequantize_row(specs[i].dtype, blocks[i], n, want);
        gqr_tf_read_f32(t, 0, n, got);
        CU_ASSERT(!memcmp(got, want, (size_t)n * sizeof *got));
        /* A range that starts and ends inside blocks. */
        gqr_tf_read_f32(t, 30, n - 33, got);
        CU_ASSERT(!memcmp(got, want + 30, (size_t)(n - 33) * sizeof *got));
        free(blocks[i]);
    }
    free(want);
    free(got);
    gqr_tf_close(tf);
}

static void test_writer_refusals(void) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_GGUF);
    unsigned char b[2 * 34] = {0};
    uint64_t dims[2] = {2, 32}, bad_row[2] = {1, 64 - 16}, one[1] = {64};
    CU_ASSERT_EQUAL(gqr_tf_writer_add_bytes(w, "a", GQR_DT_Q8_0, 2, dims, b, 67), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_add_bytes(w, "a", GQR_DT_Q8_0, 2, bad_row, b, 51), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_add_bytes(w, "a", 99, 2, dims, b, 68), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_add_bytes(w, "a", GQR_DT_Q8_0, 2, dims, b, 68), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_add_bytes(w, "a", GQR_DT_Q8_0, 1, one, b, 68), -1);
    /* A block type through the float setter has no size per element. */
    float v[64] = {0};
    CU_ASSERT_EQUAL(gqr_tf_writer_add(w, "b", GQR_DT_Q8_0, 1, one, v), -1);
    gqr_tf_writer_free(w);
    w = gqr_tf_writer_new(GQR_TF_SAFETENSORS);
    CU_ASSERT_EQUAL(gqr_tf_writer_add_bytes(w, "a", GQR_DT_Q8_0, 2, dims, b, 68), -1);
    gqr_tf_writer_free(w);
}

/* Offset of the type field of the tensor info called name in a GGUF file
 * of 2-dim tensors: name, n_dims, two dims, then the type. */
static size_t type_field(const unsigned char *buf, size_t size, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 8; i + len + 4 + 16 + 4 <= size; i++)
        if (gqr_tf_le64(buf + i - 8) == len && !memcmp(buf + i, name, len))
            return i + len + 4 + 16;
    CU_FAIL_FATAL("tensor info not found");
    return 0;
}

static void test_gguf_refusals(void) {
    const char *path = quant_gguf_file("r.gguf");
    size_t size;
    unsigned char *buf = (unsigned char *)test_slurp(path, &size);
    size_t at = type_field(buf, size, "blk.0.attn_k.weight");
    CU_ASSERT_EQUAL(gqr_tf_le32(buf + at), GQR_GGML_Q4_0);
    gqr_tensorfile *tf;
    /* Other ggml types: refused by name and number. */
    static const uint32_t others[] = {3, 6, 13, 16, 23, 28, 39, 40, 1000};
    static const char *const names[] = {"Q4_1 (3)", "Q5_0 (6)", "Q5_K (13)", "IQ2_XXS (16)",
                                        "IQ4_XS (23)", "F64 (28)", "MXFP4 (39)",
                                        "unknown (40)", "unknown (1000)"};
    for (int i = 0; i < 9; i++) {
        gqr_tf_put32(buf + at, others[i]);
        CU_ASSERT_EQUAL(gqr_tf_open_memory(&tf, buf, size, "r.gguf", err, sizeof err), -1);
        TEST_HAS(err, "r.gguf: tensor 'blk.0.attn_k.weight' has type ");
        TEST_HAS(err, names[i]);
        TEST_HAS(err, "supported: F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K");
    }
    gqr_tf_put32(buf + at, GQR_GGML_Q4_0);
    /* Rows that are not whole blocks: the innermost dim 64 becomes 48. */
    CU_ASSERT_EQUAL(gqr_tf_le64(buf + at - 16), 64);
    gqr_tf_put64(buf + at - 16, 48);
    CU_ASSERT_EQUAL(gqr_tf_open_memory(&tf, buf, size, "r.gguf", err, sizeof err), -1);
    TEST_HAS(err, "r.gguf: tensor 'blk.0.attn_k.weight' has rows of 48 elements: 48 elements are "
             "not whole Q4_0 blocks of 32");
    /* Whole blocks, but more rows than the data holds: the last tensor's
     * data runs past the end, at 18 bytes a block. */
    gqr_tf_put64(buf + at - 16, 64);
    at = type_field(buf, size, "output_norm.weight");
    gqr_tf_put64(buf + at - 8, 1000000);
    CU_ASSERT_EQUAL(gqr_tf_open_memory(&tf, buf, size, "r.gguf", err, sizeof err), -1);
    TEST_HAS(err, "runs past the end");
    gqr_tf_put64(buf + at - 8, 1);
    CU_ASSERT_EQUAL(gqr_tf_open_memory(&tf, buf, size, "r.gguf", err, sizeof err), 0);
    gqr_tf_close(tf);
    free(buf);
}

/* gqac import reads metadata and the tensors' types and shapes alone, so
 * quantized tensors do not stop it; but this file's attn_q is not the
 * shape its metadata says (its specs' shapes are for block tests), which
 * import names. */
static void test_import(void) {
    const char *gqac = test_gqac();
    const char *path = quant_gguf_file("import.gguf");
    char cmd[2400], out[8192] = "";
    snprintf(cmd, sizeof cmd, "%s import %s -o - 2>&1", gqac, path);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    CU_ASSERT_EQUAL(pclose(p) >> 8, 1);
    TEST_HAS(out, "tensor 'blk.0.attn_q.weight' has rows of 512 weights, but the model's attn_q rows "
                  "are dim = 64 wide");
}

/* A quantized tensor for a model that has f32 there is named, with both
 * types and the way out. */
static void test_convert_refuses(void) {
    const char *path = quant_gguf_file("convert.gguf");
    gqa_model_api api;
    memset(&api, 0, sizeof api);
    api.shape = (gqa_shape){.dim = 64, .hidden_dim = 128, .n_layers = 1, .n_heads = 4,
                            .n_kv_heads = 4, .head_dim = 16, .vocab_size = 8, .seq_len = 128,
                            .rope_theta = 10000, .norm_eps = 1e-5};
    gqa_tensor all = {"w", GQA_T_EMBED, -1, GQA_DT_F32, 1, 8 * 64, 4 * 8 * 64, 0};
    api.tensors = &all;
    api.n_tensors = 1;
    api.weight_bytes = 4 * 8 * 64;
    gqr_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    CU_ASSERT_EQUAL(gqr_convert_load(&ck, path, &api, err, sizeof err), -1);
    TEST_HAS(err, "convert.gguf: tensor 'token_embd.weight' is Q8_0 in the file, but the model has "
             "f32 for token_embd; `gqac import ");
    gqr_checkpoint_close(&ck);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("blocks", NULL, NULL);
    CU_add_test(s, "sizes and names", test_sizes);
    CU_add_test(s, "dequantize random blocks", test_dequant_random);
    CU_add_test(s, "dequantize edge scales and quants", test_dequant_edges);
    CU_add_test(s, "dequantized edge values", test_dequant_values);
    CU_add_test(s, "non-finite scales found", test_check_row);
    CU_add_test(s, "quantize as ggml's reference", test_quant_vs_ggml);
    CU_add_test(s, "quantize by hand", test_quant_by_hand);
    CU_add_test(s, "Q8_0 and Q4_0 error bounds", test_quant_bounds);
    CU_add_test(s, "K types' error", test_quant_k_error);
    CU_add_test(s, "grid values round trip", test_quant_grid);
    CU_add_test(s, "zero rows, huge values", test_quant_zero_and_huge);
    s = CU_add_suite("gguf", NULL, NULL);
    CU_add_test(s, "quantized round trip", test_gguf_round_trip);
    CU_add_test(s, "writer refusals", test_writer_refusals);
    CU_add_test(s, "types and rows refused", test_gguf_refusals);
    CU_add_test(s, "gqac import", test_import);
    CU_add_test(s, "quantized for an f32 model refused", test_convert_refuses);
    return cunit_run();
}
