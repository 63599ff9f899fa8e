/*
 * qdot.c: dot products of weights kept in their file's type (ggml's Q8_0,
 * Q4_0, Q4_K, Q6_K; F16, BF16) with float activations, for decode (one
 * row . one token) and prefill (a tile of rows . a block of tokens), and
 * one row as floats for the embedding lookup.
 *
 * Holes: GQ_HAS_Q8_0, GQ_HAS_Q4_0, GQ_HAS_Q4_K, GQ_HAS_Q6_K, GQ_HAS_F16,
 * GQ_HAS_BF16 (the kernels of each type), GQ_HAS_X8 and GQ_HAS_X8K (the
 * activation quantizers), GQ_HAS_ROWS (row_to_floats), GQ_FREESTANDING
 * (shape.h).  GQ_QDOT_PORTABLE 1 forces the portable path (the tests).
 *
 * Weights are little-endian bytes at any offset (a mapped GGUF file), read
 * a byte at a time or by unaligned vector loads, never through a struct or
 * a cast pointer.  Layouts are runtime/quant.c's.  Activations are int8
 * blocks in [-127, 127] (quantize_x8, quantize_x8k), so block products are
 * exact integer sums: every path (portable C, AVX2, AVX-512 VNNI, NEON dot
 * product) gives the same integers.  Their float combining differs by path
 * (vector lanes or one sum); within a path, dot_* and tile_* sum each
 * (row, token) in the same order and agree to the bit, except for the
 * AVX-512 tiles (rows in vector lanes, scaled per unit, summed by passes
 * of k) and the 512-bit decode path (GQ_QD_Z, which groups blocks its
 * own way): those within test_qdot's bound of each other.
 *
 * Each type's kernels are compiled only under its GQ_HAS_ hole, since an
 * unused static function is an error: a model that has a type uses both
 * its dot_ and its tile_ (prefill and decode).
 */
#include "shape.h" /* gqac:drop */

#include <stddef.h>
#include <stdint.h>

#ifndef GQ_QDOT_PORTABLE
#define GQ_QDOT_PORTABLE 0
#endif

#ifndef GQ_DT_F32 /* runtime/tensorfile.h's GQR_DT_* */
#define GQ_DT_F32 0
#define GQ_DT_F16 1
#define GQ_DT_BF16 2
#define GQ_DT_Q4_0 3
#define GQ_DT_Q8_0 4
#define GQ_DT_Q4_K 5
#define GQ_DT_Q6_K 6
#endif

/* Which integer kernels: intrinsics never under tcc or freestanding. */
#if !GQ_QDOT_PORTABLE && !GQ_FREESTANDING && !defined(__TINYC__)
#define GQ_QD_SIMD_OK 1
#else
#define GQ_QD_SIMD_OK 0
#endif
#if GQ_QD_SIMD_OK && defined(__AVX2__)
#define GQ_QD_AVX2 1
#include <immintrin.h>
#else
#define GQ_QD_AVX2 0
#endif
#if GQ_QD_AVX2 && defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define GQ_QD_VNNI 1
#else
#define GQ_QD_VNNI 0
#endif
#if GQ_QD_SIMD_OK && defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#define GQ_QD_DOTPROD 1
#include <arm_neon.h>
#else
#define GQ_QD_DOTPROD 0
#endif
#if GQ_QD_AVX2 && defined(__F16C__) && defined(__FMA__)
#define GQ_QD_F16C 1
#else
#define GQ_QD_F16C 0
#endif
/* 512-bit decode (dot_*): two Q8_0/Q4_0 blocks or half a K block per
 * instruction, nibbles and bit fields picked by GFNI's affine byte map
 * (Ice Lake, Zen 4 and later). */
#if GQ_QD_VNNI && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && \
    defined(__GFNI__)
#define GQ_QD_Z 1
#else
#define GQ_QD_Z 0
#endif

/* Decode asks for the weights GQ_QD_AHEAD bytes ahead of the block in
 * use: the hardware's prefetcher alone falls behind on K-quant blocks,
 * whose bytes are not read in address order. */
#if defined(__GNUC__) && !defined(__TINYC__)
#define GQ_QD_PREFETCH(p) __builtin_prefetch(p, 0, 3)
#else
#define GQ_QD_PREFETCH(p) ((void)(p))
#endif
#ifndef GQ_QD_AHEAD
#define GQ_QD_AHEAD 512
#endif

#define GQ_QD_BLOCK_TYPES (GQ_HAS_Q8_0 || GQ_HAS_Q4_0 || GQ_HAS_Q4_K || GQ_HAS_Q6_K)
#define GQ_QD_F16 (GQ_QD_BLOCK_TYPES || GQ_HAS_F16)

/* Activations quantized once per product (decode) or per block of tokens
 * (prefill).  gq_x8k is ggml's block_q8_K: bsum[j] = sum of q[16j..16j+16). */
typedef struct {
    float d;
    int8_t q[32];
} gq_x8;
typedef struct {
    float d;
    int16_t bsum[16];
    int8_t q[256];
} gq_x8k;

/* Tokens whose sums a tile keeps while it walks a row's blocks: the row is
 * read from memory once, then from cache for each further group. */
#define GQ_QD_TOKENS 32

/* ---- scalars from bytes ---- */

#if (GQ_QD_F16 && !GQ_QD_F16C) || GQ_HAS_BF16 || GQ_HAS_ROWS
static float qd_from_bits(uint32_t u) {
    union {
        uint32_t u;
        float f;
    } v;
    v.u = u;
    return v.f;
}
#endif

#if GQ_QD_F16
/* IEEE binary16 at p, by integer operations (no FP16 hardware assumed):
 * subnormals are m * 2^-24, exact as a float. */
static float qd_f16(const unsigned char *p) {
    uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
#if GQ_QD_F16C
    return _cvtsh_ss((unsigned short)h);
#else
    uint32_t sign = (h & 0x8000u) << 16, e = h >> 10 & 31, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31)
        return qd_from_bits(sign | 0x7f800000u | m << 13);
    return qd_from_bits(sign | (e + 112) << 23 | m << 13);
#endif
}
#endif

#if GQ_HAS_BF16 || GQ_HAS_ROWS
static float qd_bf16(const unsigned char *p) {
    return qd_from_bits(((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16);
}
#endif

/* ---- activations ---- */

#if GQ_HAS_X8 || GQ_HAS_X8K
/* n floats at x as int8 q and d = amax / 127, q = x / d rounded half away
 * from zero (as ggml's quantize_row_q8_0).  NaN or infinity in x gives a
 * non-finite d, so the products that use it are not finite either. */
static float qd_quantize(int8_t *q, const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        float a = x[j] < 0 ? -x[j] : x[j];
        amax = a > amax ? a : amax;
        if (a != a)
            amax = a;
    }
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < n; j++) {
        float v = x[j] * id;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        int i = v == v ? (int)v : 0; /* toward zero; NaN to 0 */
        float r = v - (float)i;       /* exact; v + 0.5 would round 0.49999997 up */
        q[j] = (int8_t)(i + (r >= 0.5f) - (r <= -0.5f));
    }
    return d;
}
#endif

#if GQ_HAS_X8
/* x (n,) -> y (n / 32,).  n % 32 == 0. */
static void quantize_x8(gq_x8 *y, const float *x, int n) {
    for (int b = 0; b < n / 32; b++)
        y[b].d = qd_quantize(y[b].q, x + 32 * b, 32);
}
#endif

#if GQ_HAS_X8K
/* x (n,) -> y (n / 256,).  n % 256 == 0. */
static void quantize_x8k(gq_x8k *y, const float *x, int n) {
    for (int b = 0; b < n / 256; b++) {
        y[b].d = qd_quantize(y[b].q, x + 256 * b, 256);
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += y[b].q[16 * j + l];
            y[b].bsum[j] = (int16_t)s;
        }
    }
}
#endif

/* ---- integer block products: one per path, all exact ----
 * Q8_0 and Q4_0 leave a block's product in lanes (gq_qd_i: 8 on AVX2, 4
 * on NEON, 1 in C), which qd_fma scales into float lanes (gq_qd_f) with
 * no horizontal sum per block; qd_fsum adds two of them at the end. */

#if GQ_QD_AVX2 && (GQ_HAS_Q4_K || GQ_HAS_Q6_K) && !(GQ_QD_Z && GQ_QD_VNNI)
static int32_t qd_hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}
#endif

#if GQ_QD_AVX2 && (GQ_HAS_Q8_0 || GQ_HAS_Q4_0)
/* acc + sums of 4 adjacent u8 * s8 products.  Without VNNI: maddubs'
 * int16 pair sums cannot saturate here (|u| <= 128, |s| <= 127). */
static __m256i qd_dpbusd(__m256i acc, __m256i u, __m256i s) {
#if GQ_QD_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}
#endif

#if GQ_QD_AVX2 && (GQ_HAS_Q4_K || GQ_HAS_Q6_K) && !(GQ_QD_Z && GQ_QD_VNNI)
/* acc + sc16 * (pair sums of u8 * s8 products), sc16 int16 lanes: a
 * K-quant sub-block's scale applied before the int32 sums (u <= 63, so
 * the pair sums fit int16). */
static __m256i qd_dot_scaled(__m256i acc, __m256i u, __m256i s, __m256i sc16) {
#if GQ_QD_VNNI
    return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, s), sc16);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc16));
#endif
}
#endif

#if GQ_HAS_Q8_0 || GQ_HAS_Q4_0
#if GQ_QD_AVX2
typedef __m256i gq_qd_i;
typedef __m256 gq_qd_f;
/* a and b int8 (32,): s8 * s8 as |a| * (b with a's sign). */
static gq_qd_i qd_dot_s8(__m256i a, __m256i b) {
    return qd_dpbusd(_mm256_setzero_si256(), _mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}
static gq_qd_f qd_fzero(void) {
    return _mm256_setzero_ps();
}
static gq_qd_f qd_fma(gq_qd_f acc, gq_qd_i p, float scale) {
#if defined(__FMA__)
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scale), acc);
#else
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scale)));
#endif
}
static float qd_fsum(gq_qd_f a, gq_qd_f b) {
    __m256 v = _mm256_add_ps(a, b);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
#elif GQ_QD_DOTPROD
typedef int32x4_t gq_qd_i;
typedef float32x4_t gq_qd_f;
static gq_qd_f qd_fzero(void) {
    return vdupq_n_f32(0.0f);
}
static gq_qd_f qd_fma(gq_qd_f acc, gq_qd_i p, float scale) {
    return vfmaq_n_f32(acc, vcvtq_f32_s32(p), scale);
}
static float qd_fsum(gq_qd_f a, gq_qd_f b) {
    return vaddvq_f32(vaddq_f32(a, b));
}
#else
typedef int32_t gq_qd_i;
typedef float gq_qd_f;
static gq_qd_f qd_fzero(void) {
    return 0.0f;
}
static gq_qd_f qd_fma(gq_qd_f acc, gq_qd_i p, float scale) {
    return acc + scale * (float)p;
}
static float qd_fsum(gq_qd_f a, gq_qd_f b) {
    return a + b;
}
#endif
#endif

#if GQ_HAS_Q8_0
/* Q8_0's q (32,) . x (32,). */
static gq_qd_i qd_dot_q8(const int8_t *q, const int8_t *x) {
#if GQ_QD_AVX2
    return qd_dot_s8(_mm256_loadu_si256((const __m256i *)(const void *)q),
                     _mm256_loadu_si256((const __m256i *)(const void *)x));
#elif GQ_QD_DOTPROD
    int32x4_t acc = vdotq_s32(vdupq_n_s32(0), vld1q_s8(q), vld1q_s8(x));
    return vdotq_s32(acc, vld1q_s8(q + 16), vld1q_s8(x + 16));
#else
    int32_t s = 0;
    for (int j = 0; j < 32; j++)
        s += (int32_t)q[j] * x[j];
    return s;
#endif
}
#endif

#if GQ_HAS_Q4_0
/* Q4_0's 16 bytes of nibbles qs (element j low in qs[j], j + 16 high),
 * minus 8, . x (32,). */
static gq_qd_i qd_dot_q4(const unsigned char *qs, const int8_t *x) {
#if GQ_QD_AVX2
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)qs), m4 = _mm_set1_epi8(0x0f);
    __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(v, m4)),
                                        _mm_and_si128(_mm_srli_epi16(v, 4), m4), 1);
    return qd_dot_s8(_mm256_sub_epi8(q, _mm256_set1_epi8(8)),
                     _mm256_loadu_si256((const __m256i *)(const void *)x));
#elif GQ_QD_DOTPROD
    uint8x16_t v = vld1q_u8(qs);
    int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), vdupq_n_s8(8));
    int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo, vld1q_s8(x)), hi, vld1q_s8(x + 16));
#else
    int32_t s = 0;
    for (int j = 0; j < 16; j++)
        s += ((qs[j] & 0xf) - 8) * x[j] + ((qs[j] >> 4) - 8) * x[j + 16];
    return s;
#endif
}
#endif

#if GQ_HAS_Q4_K
/* Q4_K's 12 bytes of 6-bit scales and mins at k as 16 bytes: sc[0..8) in
 * s[0], s[1] and m[0..8) in s[2], s[3], byte j of each word the j-th
 * (ggml's get_scale_min_k4, four words at a time as ggml's utmp). */
static void qd_q4k_scales(uint32_t *s, const unsigned char *k) {
    uint32_t w[3];
    for (int i = 0; i < 3; i++)
        w[i] = (uint32_t)k[4 * i] | (uint32_t)k[4 * i + 1] << 8 | (uint32_t)k[4 * i + 2] << 16 |
               (uint32_t)k[4 * i + 3] << 24;
    s[0] = w[0] & 0x3f3f3f3fu;
    s[1] = (w[2] & 0x0f0f0f0fu) | (w[0] >> 6 & 0x03030303u) << 4;
    s[2] = w[1] & 0x3f3f3f3fu;
    s[3] = (w[2] >> 4 & 0x0f0f0f0fu) | (w[1] >> 6 & 0x03030303u) << 4;
}

#if GQ_HAS_ROWS || !GQ_QD_AVX2
/* Byte j of the 16 qd_q4k_scales made. */
static int qd_byte(const uint32_t *s, int j) {
    return (int)(s[j / 4] >> 8 * (j % 4) & 0xff);
}
#endif

/* Q4_K: sum over 8 sub-blocks j of 32: sc[j] * (q . x) - ..., the 4-bit q
 * in qs[32 (j / 2) + l] (low nibble for even j, high for odd), 0..15; and
 * *mins = sum m[j] * (bsum[2j] + bsum[2j + 1]). */
#if !(GQ_QD_Z && GQ_QD_VNNI) /* qd_block_*: see there */
static int32_t qd_isum_q4k(const unsigned char *qs, const uint32_t *s, const gq_x8k *x, int32_t *mins) {
#if GQ_QD_AVX2
    __m128i sc8 = _mm_set_epi32((int)s[3], (int)s[2], (int)s[1], (int)s[0]);
    __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));
    __m256i acc = _mm256_setzero_si256(), m4 = _mm256_set1_epi8(0x0f);
    for (int k = 0; k < 4; k++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * k));
        /* int16 lanes of scale 2k, then 2k + 1, from the scales' bytes */
        __m256i lo = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)((4 * k + 1) << 8 | 4 * k)));
        __m256i hi = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)((4 * k + 3) << 8 | (4 * k + 2))));
        acc = qd_dot_scaled(acc, _mm256_and_si256(v, m4),
                            _mm256_loadu_si256((const __m256i *)(const void *)(x->q + 64 * k)), lo);
        acc = qd_dot_scaled(acc, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                            _mm256_loadu_si256((const __m256i *)(const void *)(x->q + 64 * k + 32)), hi);
    }
    __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)x->bsum);
    __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    __m128i m = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(sc8, 8)), pairs);
    m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 0x4e));
    *mins = _mm_cvtsi128_si32(_mm_add_epi32(m, _mm_shuffle_epi32(m, 0xb1)));
    return qd_hsum(acc);
#elif GQ_QD_DOTPROD
    int32x4_t acc = vdupq_n_s32(0);
    for (int k = 0; k < 4; k++) {
        int32x4_t lo = vdupq_n_s32(0), hi = vdupq_n_s32(0);
        for (int j = 0; j < 2; j++) {
            uint8x16_t v = vld1q_u8(qs + 32 * k + 16 * j);
            lo = vdotq_s32(lo, vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), vld1q_s8(x->q + 64 * k + 16 * j));
            hi = vdotq_s32(hi, vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vld1q_s8(x->q + 64 * k + 32 + 16 * j));
        }
        acc = vmlaq_n_s32(vmlaq_n_s32(acc, lo, qd_byte(s, 2 * k)), hi, qd_byte(s, 2 * k + 1));
    }
    int32_t m = 0;
    for (int j = 0; j < 8; j++)
        m += qd_byte(s, 8 + j) * (x->bsum[2 * j] + x->bsum[2 * j + 1]);
    *mins = m;
    return vaddvq_s32(acc);
#else
    int32_t total = 0, m = 0;
    for (int k = 0; k < 4; k++) {
        int32_t lo = 0, hi = 0;
        for (int l = 0; l < 32; l++) {
            lo += (qs[32 * k + l] & 0xf) * x->q[64 * k + l];
            hi += (qs[32 * k + l] >> 4) * x->q[64 * k + 32 + l];
        }
        total += qd_byte(s, 2 * k) * lo + qd_byte(s, 2 * k + 1) * hi;
    }
    for (int j = 0; j < 8; j++)
        m += qd_byte(s, 8 + j) * (x->bsum[2 * j] + x->bsum[2 * j + 1]);
    *mins = m;
    return total;
#endif
}
#endif
#endif

#if GQ_HAS_Q6_K
/* Q6_K block b . x: sum over 16 sub-blocks j of 16: sc[j] * ((q - 32) . x)
 * = sc[j] * (q . x - 32 bsum[j]), q 0..63 (so u8 * s8 products serve).
 * Elements 128h + 32c + l (c < 4, l < 32): low 4 bits from ql[64h + 32(c %
 * 2) + l] (nibble c / 2), high 2 from qh[32h + l] (bits 2c); qh at b +
 * 128, int8 scales at b + 192. */
#if !(GQ_QD_Z && GQ_QD_VNNI) /* qd_block_*: see there */
static int32_t qd_isum_q6k(const unsigned char *b, const gq_x8k *x) {
#if GQ_QD_AVX2
    __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(b + 192)));
    __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)x->bsum);
    __m256i acc = _mm256_slli_epi32(_mm256_madd_epi16(sc, bs), 5); /* 32 sc . bsum, taken off below */
    __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    acc = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
    for (int h = 0; h < 2; h++) {
        __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 128 + 32 * h));
        /* scales 8h..8h+8, in both halves */
        __m256i half = h ? _mm256_permute4x64_epi64(sc, 0xee) : _mm256_permute4x64_epi64(sc, 0x44);
        for (int c = 0; c < 4; c++) {
            __m256i ql = _mm256_loadu_si256((const __m256i *)(const void *)(b + 64 * h + 32 * (c % 2)));
            ql = _mm256_and_si256(_mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (c / 2))), m4);
            __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), m2);
            __m256i q = _mm256_or_si256(ql, _mm256_slli_epi16(hi, 4));
            /* int16 lanes of scale 8h + 2c in the low half, 8h + 2c + 1 in the high */
            __m256i sel = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_set1_epi16((short)((4 * c + 1) << 8 | 4 * c))),
                _mm_set1_epi16((short)((4 * c + 3) << 8 | (4 * c + 2))), 1);
            acc = qd_dot_scaled(acc, q, _mm256_loadu_si256((const __m256i *)(const void *)(x->q + 128 * h + 32 * c)),
                                _mm256_shuffle_epi8(half, sel));
        }
    }
    return qd_hsum(acc);
#else
    int32_t total = 0;
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < 2; k++) {
                int j = 8 * h + 2 * c + k;
#if GQ_QD_DOTPROD
                uint8x16_t ql = vld1q_u8(b + 64 * h + 32 * (c % 2) + 16 * k);
                uint8x16_t qh = vld1q_u8(b + 128 + 32 * h + 16 * k);
                ql = c / 2 ? vshrq_n_u8(ql, 4) : vandq_u8(ql, vdupq_n_u8(0x0f));
                qh = vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * c))), vdupq_n_u8(3));
                int8x16_t q = vreinterpretq_s8_u8(vorrq_u8(ql, vshlq_n_u8(qh, 4)));
                int32_t p = vaddvq_s32(vdotq_s32(vdupq_n_s32(0), q, vld1q_s8(x->q + 128 * h + 32 * c + 16 * k)));
#else
                int32_t p = 0;
                for (int l = 16 * k; l < 16 * k + 16; l++) {
                    int lo = b[64 * h + 32 * (c % 2) + l] >> 4 * (c / 2) & 0xf;
                    int hi = b[128 + 32 * h + l] >> 2 * c & 3;
                    p += (lo | hi << 4) * x->q[128 * h + 32 * c + l];
                }
#endif
                total += (int8_t)b[192 + j] * (p - 32 * x->bsum[j]);
            }
    return total;
#endif
}
#endif
#endif

/* ---- one block . one token's activations ---- */

#if GQ_HAS_Q4_K
/* A Q4_K block's scales as numbers, kept while it meets several tokens. */
typedef struct {
    float d, dmin;
    uint32_t s[4]; /* qd_q4k_scales */
    const unsigned char *qs;
} gq_qd_q4k;

static void qd_unpack_q4_k(gq_qd_q4k *u, const unsigned char *b) {
    u->d = qd_f16(b);
    u->dmin = qd_f16(b + 2);
    qd_q4k_scales(u->s, b + 4);
    u->qs = b + 16;
}

/* A block's product, for the paths that take blocks one at a time (not
 * the 512-bit decode with the AVX-512 tiles, where neither does). */
#if !(GQ_QD_Z && GQ_QD_VNNI)
static float qd_block_q4_k(const gq_qd_q4k *u, const gq_x8k *x) {
    int32_t mins, sum = qd_isum_q4k(u->qs, u->s, x, &mins);
    return x->d * (u->d * (float)sum - u->dmin * (float)mins);
}
#endif
#endif

#if GQ_HAS_Q6_K && !(GQ_QD_Z && GQ_QD_VNNI)
static float qd_block_q6_k(const unsigned char *b, float d, const gq_x8k *x) {
    return x->d * d * (float)qd_isum_q6k(b, x);
}
#endif

/* ---- decode with 512-bit vectors (GQ_QD_Z) ----
 * Weights stay unsigned (nibbles 0..15, Q6_K's 0..63, Q8_0's q + 128) for
 * VNNI's u8 * s8 products; the offset comes off as offset * sum(x), so the
 * integers are the other paths'.  Only the float combining differs. */

#if GQ_QD_Z && GQ_QD_BLOCK_TYPES
static __m512i qd_z_load(const void *p) {
    return _mm512_loadu_si512(p);
}

static __m256i qd_z_load256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}
#endif

#if GQ_QD_Z && (GQ_HAS_Q4_0 || GQ_HAS_Q4_K || GQ_HAS_Q6_K)
#define GQ_QD_LO 0x0102040800000000LL /* affine map: the low nibble */
#define GQ_QD_HI 0x1020408000000000LL /* the high nibble, shifted down */

/* Each byte of v through the 8x8 bit matrix of its qword in map. */
static __m512i qd_z_pick(__m512i v, __m512i map) {
    return _mm512_gf2p8affine_epi64_epi8(v, map, 0);
}
#endif

#if GQ_QD_Z && (GQ_HAS_Q8_0 || GQ_HAS_Q4_0)
/* Blocks b and b + 1's activations as one vector. */
static __m512i qd_z_x2(const gq_x8 *x) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(qd_z_load256(x[0].q)), qd_z_load256(x[1].q), 1);
}

/* 16 values, 4 at a time from windows every step bytes at p: dwords
 * (size 4) or words (2) at offsets 0, gap, 2 gap, 3 gap (in values) of
 * each window; a window is read as 64 bytes where they fit, else 128. */
static __m512i qd_z_pick16(const unsigned char *p, size_t step, int size, int gap) {
    __m512i t[4];
    int two = (3 * gap + 1) * size > 64;
    for (int j = 0; j < 4; j++) {
        const unsigned char *q = p + step * (size_t)j;
        __mmask16 m = (__mmask16)(0xfu << 4 * j);
        __m512i lo = qd_z_load(q), v;
        if (size == 4) {
            __m512i idx = _mm512_set_epi32(3 * gap, 2 * gap, gap, 0, 3 * gap, 2 * gap, gap, 0, 3 * gap, 2 * gap, gap, 0,
                                           3 * gap, 2 * gap, gap, 0);
            v = two ? _mm512_maskz_permutex2var_epi32(m, lo, idx, qd_z_load(q + 64))
                    : _mm512_maskz_permutexvar_epi32(m, idx, lo);
        } else {
            __m512i idx = _mm512_set1_epi64((long long)(3 * gap) << 48 | (long long)(2 * gap) << 32 | (long long)gap << 16);
            v = two ? _mm512_maskz_permutex2var_epi16(m, lo, idx, qd_z_load(q + 64))
                    : _mm512_maskz_permutexvar_epi16(m, idx, lo);
        }
        t[j] = v;
    }
    return _mm512_or_si512(_mm512_ternarylogic_epi64(t[0], t[1], t[2], 0xfe), t[3]); /* 0xfe: a | b | c */
}

/* Scales of 16 blocks: the f16 d every stride bytes at w (4 blocks fit a
 * 128-byte window for Q8_0's 34 bytes), times x's d. */
static __m512 qd_z_scales(const unsigned char *w, int stride, const gq_x8 *x) {
    __m512i dw = qd_z_pick16(w, 4 * (size_t)stride, 2, stride / 2);
    __m512i dx = qd_z_pick16((const unsigned char *)x, 4 * sizeof *x, 4, (int)sizeof *x / 4);
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(dw)), _mm512_castsi512_ps(dx));
}

#endif

#if GQ_QD_Z && GQ_HAS_Q8_0
/* acc + (u . x - off . x) for blocks 2k, 2k + 1 (u and off unsigned), times
 * their scales in s, as 8 lanes each. */
static __m512 qd_z_pair(__m512 acc, __m512i u, __m512i x, __m512i off, __m512 s, int k) {
    __m512i z = _mm512_setzero_si512();
    __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, u, x), _mm512_dpbusd_epi32(z, off, x));
    __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(2 * k),
                                   _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(idx, s), acc);
}
/* Q8_0 rows of nb blocks, nb % 16 == 0. */
static float qd_z_q8_0(const unsigned char *w, const gq_x8 *x, int nb) {
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512i off = _mm512_set1_epi8((char)0x80);
    for (int b = 0; b < nb; b += 16) {
        const unsigned char *g = w + 34 * (size_t)b;
        __m512 s = qd_z_scales(g, 34, x + b);
        for (int k = 0; k < 8; k++) {
            const unsigned char *p = g + 68 * k + 2;
            __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(qd_z_load256(p)), qd_z_load256(p + 34), 1);
            acc[k & 1] = qd_z_pair(acc[k & 1], _mm512_xor_si512(v, off), qd_z_x2(x + b + 2 * k), off, s, k);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}
#endif

#if GQ_QD_Z && GQ_HAS_Q4_0
/* Byte lanes 16j + i = s_j + i: vpermb's indices taking 16 bytes at s_j
 * to the j-th quarter. */
static __m512i qd_z_idx(int s0, int s1, int s2, int s3) {
    const int k = 0x01010101;
    return _mm512_add_epi32(_mm512_set_epi32(s3 * k, s3 * k, s3 * k, s3 * k, s2 * k, s2 * k, s2 * k, s2 * k, s1 * k,
                                             s1 * k, s1 * k, s1 * k, s0 * k, s0 * k, s0 * k, s0 * k),
                            _mm512_set4_epi32(0x0f0e0d0c, 0x0b0a0908, 0x07060504, 0x03020100));
}
/* Adjacent int32 lane pairs of a and b summed, per 128-bit lane: a's two
 * sums, then b's.  Exact while |lanes| < 2^15 (Q4_0: 4 * 8 * 127 a lane
 * of a block's product, doubled at each of two merges). */
static __m512i qd_z_merge(__m512i a, __m512i b) {
    return _mm512_madd_epi16(_mm512_packs_epi32(a, b), _mm512_set1_epi16(1));
}

/* Q4_0 rows of nb blocks, nb % 16 == 0: each block's 16 bytes twice in a
 * 256-bit half, low nibbles taken from the first copy, high from the second. */
static float qd_z_q4_0(const unsigned char *w, const gq_x8 *x, int nb) {
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512i map = _mm512_set_epi64(GQ_QD_HI, GQ_QD_HI, GQ_QD_LO, GQ_QD_LO, GQ_QD_HI, GQ_QD_HI, GQ_QD_LO, GQ_QD_LO);
    const __m512i off = _mm512_set1_epi8(8);
    for (int b = 0; b < nb; b += 16) {
        const unsigned char *g = w + 18 * (size_t)b;
        __m512 s = qd_z_scales(g, 18, x + b);
        __m512i m[4];
        for (int k = 0; k < 8; k++) {
            /* the pair's 36 bytes (a masked load: none past the row) */
            __m512i v = _mm512_maskz_loadu_epi8(0xfffffffffULL, g + 36 * k);
            v = _mm512_permutexvar_epi8(qd_z_idx(2, 2, 20, 20), v);
            __m512i xv = qd_z_x2(x + b + 2 * k), z = _mm512_setzero_si512();
            __m512i d = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, qd_z_pick(v, map), xv), _mm512_dpbusd_epi32(z, off, xv));
            m[k / 2] = k & 1 ? qd_z_merge(m[k / 2], d) : d;
        }
        for (int i = 0; i < 2; i++) {
            /* lane 4L + t: block 8i + 2t + (L >= 2) */
            __m512i idx = _mm512_set_epi32(8 * i + 7, 8 * i + 5, 8 * i + 3, 8 * i + 1, 8 * i + 7, 8 * i + 5, 8 * i + 3,
                                           8 * i + 1, 8 * i + 6, 8 * i + 4, 8 * i + 2, 8 * i, 8 * i + 6, 8 * i + 4,
                                           8 * i + 2, 8 * i);
            __m512i n = qd_z_merge(m[2 * i], m[2 * i + 1]);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(n), _mm512_permutexvar_ps(idx, s), acc[i]);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}
#endif

#if GQ_QD_Z && GQ_HAS_Q4_K
/* qd_q4k_scales in a vector, from a block's first 16 bytes (d, dmin and
 * the 12 bytes of scales as words 1 to 3). */
static __m128i qd_z_q4k_scales(__m128i head) {
    __m128i a = _mm_shuffle_epi32(head, 0xed); /* words 1, 3, 2, 3 */
    __m128i b = _mm_shuffle_epi32(head, 0xa5); /* 1, 1, 2, 2 */
    __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_set_epi32(4, 0, 0, 0)),
                               _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    __m128i hi = _mm_and_si128(_mm_srlv_epi32(b, _mm_set_epi32(2, 0, 2, 0)), _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    return _mm_or_si128(lo, hi);
}

/* Q4_K rows: per block, sub-blocks 2k and 2k + 1 in one vector (their 32
 * bytes twice: low nibbles, then high), scales as int16 lanes. */
static float qd_z_q4_k(const unsigned char *w, const gq_x8k *x, int nb) {
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    const __m512i map = _mm512_set_epi64(GQ_QD_HI, GQ_QD_HI, GQ_QD_HI, GQ_QD_HI, GQ_QD_LO, GQ_QD_LO, GQ_QD_LO, GQ_QD_LO);
    /* int16 lanes 8L + i of packs(p0, p1): sub-block (L >= 2) of p0 (i < 4), 2 + (L >= 2) of p1 */
    const __m512i half = _mm512_set_epi16(3, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0, 2,
                                          2, 2, 2, 0, 0, 0, 0);
    /* int16 lanes 8 + j, twice each: the mins beside bsum's pairs */
    const __m256i mins = _mm256_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    for (int b = 0; b < nb; b++) {
        const unsigned char *blk = w + 144 * (size_t)b;
        for (int k = 0; k < 144; k += 64)
            GQ_QD_PREFETCH(blk + GQ_QD_AHEAD + k);
        __m128i head = _mm_loadu_si128((const __m128i *)(const void *)blk);
        __m256i sc = _mm256_cvtepu8_epi16(qd_z_q4k_scales(head));
        __m512i sc512 = _mm512_castsi256_si512(sc), isum = _mm512_setzero_si512();
        __m512i p[2];
        for (int k = 0; k < 4; k++) {
            __m512i v = _mm512_broadcast_i64x4(qd_z_load256(blk + 16 + 32 * k));
            p[k & 1] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qd_z_pick(v, map), qd_z_load(x[b].q + 64 * k));
            if (k & 1) {
                /* lanes under 2^15 (4 * 15 * 127): as int16, each beside its sub-block's scale */
                __m512i sck = _mm512_permutexvar_epi16(_mm512_add_epi16(half, _mm512_set1_epi16((short)(2 * k - 2))), sc512);
                isum = _mm512_dpwssd_epi32(isum, _mm512_packs_epi32(p[0], p[1]), sck);
            }
        }
        __m256i m = _mm256_madd_epi16(_mm256_permutexvar_epi16(mins, sc), qd_z_load256(x[b].bsum));
        __m128 d = _mm_mul_ps(_mm_cvtph_ps(head), _mm_set1_ps(x[b].d)); /* d dx, dmin dx */
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(d), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_broadcastss_ps(_mm_movehdup_ps(d)), accm);
    }
    return _mm512_reduce_add_ps(acc) - _mm512_reduce_add_ps(_mm512_zextps256_ps512(accm));
}
#endif

#if GQ_QD_Z && GQ_HAS_Q6_K
/* Q6_K rows: per block and half h, elements 128h + 64p.. in one vector
 * (c = 2p, 2p + 1): 4 low bits from ql's 64 bytes (nibble p), 2 high from
 * qh's 32 twice (bits 4p, 4p + 2 in the halves); 4 sub-blocks' scales. */
static float qd_z_q6_k(const unsigned char *w, const gq_x8k *x, int nb) {
    __m512 acc = _mm512_setzero_ps();
#define GQ_QD_Q6H(s) ((1LL << (s)) << 24 | (1LL << ((s) + 1)) << 16) /* bits s, s + 1 to 4, 5 */
    const __m512i hi0 = _mm512_set_epi64(GQ_QD_Q6H(2), GQ_QD_Q6H(2), GQ_QD_Q6H(2), GQ_QD_Q6H(2), GQ_QD_Q6H(0),
                                         GQ_QD_Q6H(0), GQ_QD_Q6H(0), GQ_QD_Q6H(0));
    const __m512i hi1 = _mm512_set_epi64(GQ_QD_Q6H(6), GQ_QD_Q6H(6), GQ_QD_Q6H(6), GQ_QD_Q6H(6), GQ_QD_Q6H(4),
                                         GQ_QD_Q6H(4), GQ_QD_Q6H(4), GQ_QD_Q6H(4));
#undef GQ_QD_Q6H
    const __m512i quarter = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1,
                                             0, 0, 0, 0, 0, 0, 0, 0);
    for (int b = 0; b < nb; b++) {
        const unsigned char *blk = w + 210 * (size_t)b;
        for (int k = 0; k < 210; k += 64)
            GQ_QD_PREFETCH(blk + GQ_QD_AHEAD + k);
        __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(blk + 192)));
        __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc, qd_z_load256(x[b].bsum)), 5); /* 32 sc . bsum */
        __m512i sc512 = _mm512_castsi256_si512(sc);
        __m512i isum = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), corr));
        for (int h = 0; h < 2; h++) {
            __m512i ql = qd_z_load(blk + 64 * h), qh = _mm512_broadcast_i64x4(qd_z_load256(blk + 128 + 32 * h));
            for (int p = 0; p < 2; p++) {
                __m512i q = _mm512_or_si512(qd_z_pick(ql, _mm512_set1_epi64(p ? GQ_QD_HI : GQ_QD_LO)),
                                            qd_z_pick(qh, p ? hi1 : hi0));
                __m512i scj = _mm512_permutexvar_epi16(_mm512_add_epi16(quarter, _mm512_set1_epi16((short)(8 * h + 4 * p))), sc512);
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q, qd_z_load(x[b].q + 128 * h + 64 * p)), scj);
            }
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(qd_f16(blk + 208) * x[b].d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}
#endif

/* ---- decode: one row . one token ---- */

#if GQ_HAS_Q8_0
/* w: nb blocks of 34 bytes (d, int8 q[32]); x (nb,). */
static float dot_q8_0(const unsigned char *w, const gq_x8 *x, int nb) {
    gq_qd_f acc0 = qd_fzero(), acc1 = qd_fzero(); /* even and odd blocks: two chains of adds */
    int b = 0;
    float z = 0.0f;
#if GQ_QD_Z
    b = nb / 16 * 16;
    z = qd_z_q8_0(w, x, b);
#endif
    for (; b + 2 <= nb; b += 2) {
        const unsigned char *blk = w + 34 * (size_t)b;
        acc0 = qd_fma(acc0, qd_dot_q8((const int8_t *)(const void *)(blk + 2), x[b].q), qd_f16(blk) * x[b].d);
        acc1 = qd_fma(acc1, qd_dot_q8((const int8_t *)(const void *)(blk + 36), x[b + 1].q),
                      qd_f16(blk + 34) * x[b + 1].d);
    }
    if (b < nb)
        acc0 = qd_fma(acc0, qd_dot_q8((const int8_t *)(const void *)(w + 34 * (size_t)b + 2), x[b].q),
                      qd_f16(w + 34 * (size_t)b) * x[b].d);
    return z + qd_fsum(acc0, acc1);
}
#endif

#if GQ_HAS_Q4_0
static float dot_q4_0(const unsigned char *w, const gq_x8 *x, int nb) {
    gq_qd_f acc0 = qd_fzero(), acc1 = qd_fzero();
    int b = 0;
    float z = 0.0f;
#if GQ_QD_Z
    b = nb / 16 * 16;
    z = qd_z_q4_0(w, x, b);
#endif
    for (; b + 2 <= nb; b += 2) {
        const unsigned char *blk = w + 18 * (size_t)b;
        acc0 = qd_fma(acc0, qd_dot_q4(blk + 2, x[b].q), qd_f16(blk) * x[b].d);
        acc1 = qd_fma(acc1, qd_dot_q4(blk + 20, x[b + 1].q), qd_f16(blk + 18) * x[b + 1].d);
    }
    if (b < nb)
        acc0 = qd_fma(acc0, qd_dot_q4(w + 18 * (size_t)b + 2, x[b].q), qd_f16(w + 18 * (size_t)b) * x[b].d);
    return z + qd_fsum(acc0, acc1);
}
#endif

#if GQ_HAS_Q4_K
static float dot_q4_k(const unsigned char *w, const gq_x8k *x, int nb) {
#if GQ_QD_Z
    return qd_z_q4_k(w, x, nb);
#else
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        gq_qd_q4k u;
        for (int k = 0; k < 144; k += 64)
            GQ_QD_PREFETCH(w + 144 * (size_t)b + GQ_QD_AHEAD + k);
        qd_unpack_q4_k(&u, w + 144 * (size_t)b);
        sum += qd_block_q4_k(&u, &x[b]);
    }
    return sum;
#endif
}
#endif

#if GQ_HAS_Q6_K
static float dot_q6_k(const unsigned char *w, const gq_x8k *x, int nb) {
#if GQ_QD_Z
    return qd_z_q6_k(w, x, nb);
#else
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        const unsigned char *blk = w + 210 * (size_t)b;
        for (int k = 0; k < 210; k += 64)
            GQ_QD_PREFETCH(blk + GQ_QD_AHEAD + k);
        sum += qd_block_q6_k(blk, qd_f16(blk + 208), &x[b]);
    }
    return sum;
#endif
}
#endif

#if GQ_HAS_F16
/* w: n little-endian halves; x (n,). */
static float dot_f16(const unsigned char *w, const float *x, int n) {
    /* 8 sums: fewer roundings per sum, and a loop that vectorizes */
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, sum = 0.0f;
    int j = 0;
#if GQ_QD_F16C
    __m256 v[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; j + 16 <= n; j += 16)
        for (int k = 0; k < 2; k++) {
            __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(w + 2 * (size_t)(j + 8 * k)));
            v[k] = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(x + j + 8 * k), v[k]);
        }
    _mm256_storeu_ps(acc, _mm256_add_ps(v[0], v[1]));
#endif
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += qd_f16(w + 2 * (size_t)(j + k)) * x[j + k];
    for (int k = 0; k < n - j; k++) /* j % 8 == 0: k is j + k's sum */
        acc[k] += qd_f16(w + 2 * (size_t)(j + k)) * x[j + k];
    for (int k = 0; k < 8; k++)
        sum += acc[k];
    return sum;
}
#endif

#if GQ_HAS_BF16
static float dot_bf16(const unsigned char *w, const float *x, int n) {
    /* 8 sums: fewer roundings per sum, and a loop that vectorizes */
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, sum = 0.0f;
    int j = 0;
#if GQ_QD_AVX2 && defined(__FMA__)
    __m256 v[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; j + 16 <= n; j += 16)
        for (int k = 0; k < 2; k++) {
            __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(w + 2 * (size_t)(j + 8 * k)));
            __m256 f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            v[k] = _mm256_fmadd_ps(f, _mm256_loadu_ps(x + j + 8 * k), v[k]);
        }
    _mm256_storeu_ps(acc, _mm256_add_ps(v[0], v[1]));
#endif
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += qd_bf16(w + 2 * (size_t)(j + k)) * x[j + k];
    for (int k = 0; k < n - j; k++) /* j % 8 == 0: k is j + k's sum */
        acc[k] += qd_bf16(w + 2 * (size_t)(j + k)) * x[j + k];
    for (int k = 0; k < 8; k++)
        sum += acc[k];
    return sum;
}
#endif

/* ---- prefill: rows [0, nr) of W . nt tokens -> out[t * ostride + i] ----
 * On AVX-512 (VNNI for the block types) qt_tile and qf_tile below; else
 * each row's block is unpacked once and multiplied with GQ_QD_TOKENS
 * tokens at a time; a row's blocks stay in cache for the next group of
 * tokens.  Per (row, token) the sum runs over blocks in dot_*'s order. */

#define GQ_QD_TILE_BEGIN                                                          \
    for (int i = 0; i < nr; i++) {                                                \
        const unsigned char *row = w + (size_t)i * row_bytes;                     \
        for (int t0 = 0; t0 < nt; t0 += GQ_QD_TOKENS) {                           \
            int tn = nt - t0 < GQ_QD_TOKENS ? nt - t0 : GQ_QD_TOKENS;             \
            float acc[GQ_QD_TOKENS];                                              \
            for (int t = 0; t < tn; t++)                                          \
                acc[t] = 0.0f;                                                    \
            for (int b = 0; b < nb; b++) {
#define GQ_QD_TILE_END                                                            \
            }                                                                     \
            for (int t = 0; t < tn; t++)                                          \
                out[(size_t)(t0 + t) * ostride + (size_t)i] = acc[t];             \
        }                                                                         \
    }
#define GQ_QD_X(t) (&x[(size_t)(t0 + (t)) * xstride + (size_t)b])

#if GQ_HAS_Q8_0 || GQ_HAS_Q4_0
/* As GQ_QD_TILE_BEGIN, with dot_q8_0's lanes per token (even and odd
 * blocks apart), so that each (row, token) sums as dot_* does. */
#define GQ_QD_TILE_LANES_BEGIN                                                    \
    for (int i = 0; i < nr; i++) {                                                \
        const unsigned char *row = w + (size_t)i * row_bytes;                     \
        for (int t0 = 0; t0 < nt; t0 += GQ_QD_TOKENS) {                           \
            int tn = nt - t0 < GQ_QD_TOKENS ? nt - t0 : GQ_QD_TOKENS;             \
            gq_qd_f acc[GQ_QD_TOKENS][2];                                         \
            for (int t = 0; t < tn; t++)                                          \
                acc[t][0] = acc[t][1] = qd_fzero();                               \
            for (int b = 0; b < nb; b++) {
#define GQ_QD_TILE_LANES_END                                                      \
            }                                                                     \
            for (int t = 0; t < tn; t++)                                          \
                out[(size_t)(t0 + t) * ostride + (size_t)i] = qd_fsum(acc[t][0], acc[t][1]); \
        }                                                                         \
    }
#endif

/* ---- prefill on AVX-512 VNNI: rows in vector lanes ----
 * A pass takes GQ_QT_ROWS rows and GQ_QT_K elements of k: the rows are
 * unpacked once to int8 q, one scale per unit (a block, or a K-quant
 * sub-block), and transposed so that a zmm holds dword j of 16 rows; each
 * dword of a token is then broadcast against them (vpdpbusd), and every
 * (row, token) gets 64 bytes of products per instruction with one float
 * step per unit, where a token-major tile scales each 32-byte block.
 * dpbusd multiplies unsigned by signed bytes: the token's q + 128 (xor
 * 0x80) by the weights' q, less 128 * (sum of the unit's q), kept per
 * (unit, row).  Sums are exact integers; the floats round in another
 * order than dot_*, within test_qdot's bound. */
#if GQ_QD_F16C && defined(__AVX512F__) && (GQ_HAS_F16 || GQ_HAS_BF16)
#define GQ_QF_OK 1
#else
#define GQ_QF_OK 0
#endif
#define GQ_QT_OK (GQ_QD_VNNI && GQ_QD_BLOCK_TYPES)
#if GQ_QT_OK || GQ_QF_OK
#define GQ_QT_ROWS 32 /* two zmm of rows */
#define GQ_QT_K 512   /* elements of k per pass: the unpacked rows stay in L1 */
#define GQ_QT_T 4     /* tokens per inner loop */
#define GQ_QT_MAXT 64 /* tokens whose sums a pass keeps */
#define GQ_QT_INLINE static inline __attribute__((always_inline))

/* One pass's weights: w[j][r] is elements 4j..4j+3 of row r. */
typedef struct {
    int32_t w[GQ_QT_K / 4][GQ_QT_ROWS];
    int32_t corr[GQ_QT_K / 16][GQ_QT_ROWS]; /* -128 * sum of the unit's q */
    float scale[GQ_QT_K / 16][GQ_QT_ROWS];
    float mins[GQ_QT_K / 32][GQ_QT_ROWS]; /* Q4_K: dmin * m of each sub-block */
    int8_t q[GQ_QT_ROWS][GQ_QT_K];        /* rows unpacked, before transposing */
} gq_qt;

/* The tokens of an inner loop: q + 128, their block scales, Q4_K's sums
 * of 32 elements as floats. */
typedef struct {
    int32_t x[GQ_QT_T][GQ_QT_K / 4];
    float d[GQ_QT_T][GQ_QT_K / 32];
    float bs[GQ_QT_T][GQ_QT_K / 32];
} gq_qt_x;

/* 16 rows of 16 dwords (at src, src + stride, ...) to 16 columns of 16. */
static void qt_transpose(int32_t (*dst)[GQ_QT_ROWS], const int8_t *src, size_t stride) {
    __m512i r[16], a[16], b[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_si512((const void *)(src + (size_t)i * stride));
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* b[i + m]: element m of each 128-bit lane, rows i..i+3 */
        b[i] = _mm512_unpacklo_epi64(a[i], a[i + 2]);
        b[i + 1] = _mm512_unpackhi_epi64(a[i], a[i + 2]);
        b[i + 2] = _mm512_unpacklo_epi64(a[i + 1], a[i + 3]);
        b[i + 3] = _mm512_unpackhi_epi64(a[i + 1], a[i + 3]);
    }
    for (int m = 0; m < 4; m++) {
        __m512i p = _mm512_shuffle_i32x4(b[m], b[4 + m], 0x88), q = _mm512_shuffle_i32x4(b[m], b[4 + m], 0xdd);
        __m512i p2 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], 0x88);
        __m512i q2 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], 0xdd);
        _mm512_storeu_si512((void *)dst[m], _mm512_shuffle_i32x4(p, p2, 0x88));
        _mm512_storeu_si512((void *)dst[8 + m], _mm512_shuffle_i32x4(p, p2, 0xdd));
        _mm512_storeu_si512((void *)dst[4 + m], _mm512_shuffle_i32x4(q, q2, 0x88));
        _mm512_storeu_si512((void *)dst[12 + m], _mm512_shuffle_i32x4(q, q2, 0xdd));
    }
}
#endif

#if GQ_QT_OK

/* Row r of the pass unpacked (q[r], scale[.][r], mins[.][r]) from the
 * blocks at row covering the pass's k elements: n elements from k0. */
static void qt_unpack(gq_qt *p, int type, int r, const unsigned char *row, int k0, int n) {
    int8_t *q = p->q[r];
    const __m128i m4 = _mm_set1_epi8(0x0f);
    if (type == GQ_DT_Q8_0 || type == GQ_DT_Q4_0) {
        size_t bb = type == GQ_DT_Q8_0 ? 34 : 18;
        for (int u = 0; u < n / 32; u++) {
            const unsigned char *blk = row + bb * (size_t)(k0 / 32 + u);
            p->scale[u][r] = qd_f16(blk);
            if (type == GQ_DT_Q8_0) {
                _mm256_storeu_si256((__m256i *)(void *)(q + 32 * u),
                                    _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2)));
            } else {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2)), e = _mm_set1_epi8(8);
                _mm_storeu_si128((__m128i *)(void *)(q + 32 * u), _mm_sub_epi8(_mm_and_si128(v, m4), e));
                _mm_storeu_si128((__m128i *)(void *)(q + 32 * u + 16),
                                 _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), e));
            }
        }
    }
#if GQ_HAS_Q4_K
    if (type == GQ_DT_Q4_K) {
        for (int bi = 0; bi < n / 256; bi++) {
            const unsigned char *blk = row + 144 * (size_t)(k0 / 256 + bi);
            uint32_t s[4];
            float d = qd_f16(blk), dmin = qd_f16(blk + 2);
            qd_q4k_scales(s, blk + 4);
            for (int j = 0; j < 8; j++) {
                p->scale[8 * bi + j][r] = d * (float)(s[j / 4] >> 8 * (j % 4) & 0xff);
                p->mins[8 * bi + j][r] = dmin * (float)(s[2 + j / 4] >> 8 * (j % 4) & 0xff);
            }
            for (int c = 0; c < 8; c++) { /* 16 bytes: sub-blocks 2 (c / 2) and 2 (c / 2) + 1 */
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 + 16 * c));
                int8_t *o = q + 256 * bi + 64 * (c / 2) + 16 * (c % 2);
                _mm_storeu_si128((__m128i *)(void *)o, _mm_and_si128(v, m4));
                _mm_storeu_si128((__m128i *)(void *)(o + 32), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
            }
        }
    }
#endif
#if GQ_HAS_Q6_K
    if (type == GQ_DT_Q6_K) { /* qd_isum_q6k's layout */
        for (int bi = 0; bi < n / 256; bi++) {
            const unsigned char *blk = row + 210 * (size_t)(k0 / 256 + bi);
            float d = qd_f16(blk + 208);
            for (int j = 0; j < 16; j++)
                p->scale[16 * bi + j][r] = d * (float)(int8_t)blk[192 + j];
            for (int h = 0; h < 2; h++)
                for (int c = 0; c < 4; c++)
                    for (int k = 0; k < 2; k++) {
                        __m128i lo = _mm_loadu_si128(
                            (const __m128i *)(const void *)(blk + 64 * h + 32 * (c % 2) + 16 * k));
                        __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(blk + 128 + 32 * h + 16 * k));
                        lo = _mm_and_si128(c / 2 ? _mm_srli_epi16(lo, 4) : lo, m4);
                        hi = _mm_and_si128(_mm_srli_epi16(hi, 2 * c), _mm_set1_epi8(3));
                        __m128i v = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
                        _mm_storeu_si128((__m128i *)(void *)(q + 256 * bi + 128 * h + 32 * c + 16 * k), v);
                    }
        }
    }
#endif
}

/* The pass's weights: rows [0, nr) of w (the rest zero), elements [k0,
 * k0 + n), unit of s elements. */
static void qt_pack(gq_qt *p, int type, const unsigned char *w, size_t row_bytes, int nr, int groups, int k0,
                    int n, int s) {
    for (int r = 0; r < 16 * groups; r++) {
        if (r < nr) {
            qt_unpack(p, type, r, w + (size_t)r * row_bytes, k0, n);
        } else {
            for (int j = 0; j < n; j++)
                p->q[r][j] = 0;
            for (int u = 0; u < n / s; u++)
                p->scale[u][r] = 0.0f;
            for (int u = 0; u < n / 32; u++)
                p->mins[u][r] = 0.0f;
        }
    }
    for (int g = 0; g < groups; g++)
        for (int j = 0; j < n / 4; j += 16)
            qt_transpose((int32_t(*)[GQ_QT_ROWS])(void *)&p->w[j][16 * g], p->q[16 * g] + 4 * j, GQ_QT_K);
    /* 128 * (sum of 4 q) per dword lane, by dpbusd against bytes 128 */
    const __m512i h = _mm512_set1_epi8((char)0x80);
    for (int g = 0; g < groups; g++)
        for (int u = 0; u < n / s; u++) {
            __m512i acc = _mm512_setzero_si512();
            for (int j = u * s / 4; j < (u + 1) * s / 4; j++)
                acc = _mm512_dpbusd_epi32(acc, h, _mm512_loadu_si512((const void *)&p->w[j][16 * g]));
            _mm512_storeu_si512((void *)&p->corr[u][16 * g], _mm512_sub_epi32(_mm512_setzero_si512(), acc));
        }
}

/* Tokens t0.. (GQ_QT_T of them, the last repeated past nt) over the pass's
 * elements: q + 128, d per 32 elements, Q4_K's sums of 32. */
static void qt_tokens(gq_qt_x *xt, const void *x, int kq, size_t xstride, int t0, int nt, int k0, int n) {
    const __m256i h = _mm256_set1_epi8((char)0x80);
    for (int t = 0; t < GQ_QT_T; t++) {
        int tt = t0 + t < nt ? t0 + t : nt - 1;
        for (int j = 0; j < n / 32; j++) {
            const int8_t *q;
            if (!kq) {
                const gq_x8 *b = (const gq_x8 *)x + (size_t)tt * xstride + (size_t)(k0 / 32 + j);
                q = b->q;
                xt->d[t][j] = b->d;
            } else {
                const gq_x8k *b = (const gq_x8k *)x + (size_t)tt * xstride + (size_t)((k0 + 32 * j) / 256);
                q = b->q + (k0 + 32 * j) % 256;
                xt->d[t][j] = b->d;
                xt->bs[t][j] = (float)(b->bsum[2 * (j % 8)] + b->bsum[2 * (j % 8) + 1]);
            }
            _mm256_storeu_si256((__m256i *)(void *)(xt->x[t] + 8 * j),
                                _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)q), h));
        }
    }
}

/* acc[t][lane] += the pass's rows . GQ_QT_T tokens, for G groups of 16
 * rows, units of S elements, U units a block of activations (1: x8, 8 or
 * 16: x8k), MINS for Q4_K. */
GQ_QT_INLINE void qt_kernel(__m512 (*acc)[GQ_QT_T], const gq_qt *p, const gq_qt_x *xt, int n, int G, int S, int U,
                            int MINS) {
    __m512 ab[2][GQ_QT_T];
    for (int g = 0; g < 2; g++)
        for (int t = 0; t < GQ_QT_T; t++)
            ab[g][t] = _mm512_setzero_ps();
    for (int u = 0; u < n / S; u++) {
        __m512i ai[2][GQ_QT_T];
        for (int g = 0; g < G; g++) {
            __m512i c = _mm512_loadu_si512((const void *)&p->corr[u][16 * g]);
            for (int t = 0; t < GQ_QT_T; t++)
                ai[g][t] = c;
        }
        for (int j = u * S / 4; j < (u + 1) * S / 4; j++) {
            __m512i w0 = _mm512_loadu_si512((const void *)&p->w[j][0]), w1 = w0;
            if (G == 2)
                w1 = _mm512_loadu_si512((const void *)&p->w[j][16]);
            for (int t = 0; t < GQ_QT_T; t++) {
                __m512i xb = _mm512_set1_epi32(xt->x[t][j]);
                ai[0][t] = _mm512_dpbusd_epi32(ai[0][t], xb, w0);
                if (G == 2)
                    ai[1][t] = _mm512_dpbusd_epi32(ai[1][t], xb, w1);
            }
        }
        if (U == 1) {
            for (int t = 0; t < GQ_QT_T; t++) {
                __m512 dx = _mm512_set1_ps(xt->d[t][u]);
                for (int g = 0; g < G; g++)
                    acc[g][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[g][t]),
                                                _mm512_mul_ps(_mm512_loadu_ps(&p->scale[u][16 * g]), dx), acc[g][t]);
            }
            continue;
        }
        for (int g = 0; g < G; g++) {
            __m512 sc = _mm512_loadu_ps(&p->scale[u][16 * g]);
            for (int t = 0; t < GQ_QT_T; t++)
                ab[g][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[g][t]), sc,
                                           u % U ? ab[g][t] : _mm512_setzero_ps());
        }
        if (u % U != U - 1)
            continue;
        int blk = u / U; /* a block of 256 ends */
        for (int g = 0; g < G; g++)
            for (int t = 0; t < GQ_QT_T; t++) {
                __m512 b = ab[g][t];
                if (MINS)
                    for (int j = 0; j < 8; j++)
                        b = _mm512_fnmadd_ps(_mm512_loadu_ps(&p->mins[8 * blk + j][16 * g]),
                                             _mm512_set1_ps(xt->bs[t][8 * blk + j]), b);
                acc[g][t] = _mm512_fmadd_ps(b, _mm512_set1_ps(xt->d[t][8 * blk]), acc[g][t]);
            }
    }
}

/* qt_kernel with constants, one copy for each shape. */
static void qt_run(__m512 (*acc)[GQ_QT_T], const gq_qt *p, const gq_qt_x *xt, int n, int type, int groups) {
    if (type == GQ_DT_Q6_K && groups == 2)
        qt_kernel(acc, p, xt, n, 2, 16, 16, 0);
    else if (type == GQ_DT_Q6_K)
        qt_kernel(acc, p, xt, n, 1, 16, 16, 0);
    else if (type == GQ_DT_Q4_K && groups == 2)
        qt_kernel(acc, p, xt, n, 2, 32, 8, 1);
    else if (type == GQ_DT_Q4_K)
        qt_kernel(acc, p, xt, n, 1, 32, 8, 1);
    else if (groups == 2)
        qt_kernel(acc, p, xt, n, 2, 32, 1, 0);
    else
        qt_kernel(acc, p, xt, n, 1, 32, 1, 0);
}

/* Rows [0, nr) of w . nt tokens of x (gq_x8, or gq_x8k when type is a
 * K-quant), of k elements: out[t * ostride + i]. */
static void qt_tile(int type, float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                    const void *x, size_t xstride, int k, int nt) {
    int kq = type == GQ_DT_Q4_K || type == GQ_DT_Q6_K, s = type == GQ_DT_Q6_K ? 16 : 32;
    gq_qt p;
    gq_qt_x xt;
    for (int r0 = 0; r0 < nr; r0 += GQ_QT_ROWS) {
        int rn = nr - r0 < GQ_QT_ROWS ? nr - r0 : GQ_QT_ROWS, groups = rn > 16 ? 2 : 1;
        for (int t0 = 0; t0 < nt; t0 += GQ_QT_MAXT) {
            int tn = nt - t0 < GQ_QT_MAXT ? nt - t0 : GQ_QT_MAXT;
            __m512 acc[GQ_QT_MAXT / GQ_QT_T][2][GQ_QT_T];
            for (int i = 0; i < GQ_QT_MAXT / GQ_QT_T; i++)
                for (int g = 0; g < 2; g++)
                    for (int t = 0; t < GQ_QT_T; t++)
                        acc[i][g][t] = _mm512_setzero_ps();
            for (int k0 = 0; k0 < k; k0 += GQ_QT_K) {
                int n = k - k0 < GQ_QT_K ? k - k0 : GQ_QT_K;
                qt_pack(&p, type, w + (size_t)r0 * row_bytes, row_bytes, rn, groups, k0, n, s);
                for (int t = 0; t < tn; t += GQ_QT_T) {
                    __m512(*a)[GQ_QT_T] = acc[t / GQ_QT_T];
                    qt_tokens(&xt, x, kq, xstride, t0 + t, t0 + tn, k0, n);
                    qt_run(a, &p, &xt, n, type, groups);
                }
            }
            for (int t = 0; t < tn; t++) {
                float v[GQ_QT_ROWS];
                _mm512_storeu_ps(v, acc[t / GQ_QT_T][0][t % GQ_QT_T]);
                _mm512_storeu_ps(v + 16, acc[t / GQ_QT_T][1][t % GQ_QT_T]);
                for (int i = 0; i < rn; i++)
                    out[(size_t)(t0 + t) * ostride + (size_t)(r0 + i)] = v[i];
            }
        }
    }
}
#endif

/* F16 and BF16 on AVX-512: rows in lanes as above, in floats.  A pass
 * converts GQ_QF_K elements of 32 rows once and transposes them; each
 * token's element is broadcast against 16 rows (FMA).  Each pass's sum
 * starts from zero and is added to the total, so a long row is not one
 * chain of n roundings. */
#if GQ_QF_OK
#define GQ_QF_K 128

typedef struct {
    float w[GQ_QF_K][GQ_QT_ROWS]; /* w[j][r]: element j of row r */
    float f[GQ_QT_ROWS][GQ_QF_K]; /* rows converted, before transposing */
} gq_qf;

/* Halves (bf: bfloat16) [k0, k0 + n) of a row as floats, zero to a
 * multiple of 16. */
static void qf_convert(float *f, const unsigned char *row, int bf, int k0, int n) {
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(row + 2 * (size_t)(k0 + j)));
        __m512 v = bf ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
        _mm512_storeu_ps(f + j, v);
    }
    for (; j < n; j++) {
        const unsigned char *p = row + 2 * (size_t)(k0 + j);
        uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
        __m128i v = _mm_cvtsi32_si128((int)(bf ? h << 16 : h));
        f[j] = _mm_cvtss_f32(bf ? _mm_castsi128_ps(v) : _mm_cvtph_ps(v));
    }
    for (; j % 16; j++)
        f[j] = 0.0f;
}

/* acc[g][t] += the pass's n elements of G groups of 16 rows . tokens x[t]. */
GQ_QT_INLINE void qf_kernel(__m512 (*acc)[GQ_QT_T], const gq_qf *p, const float *const *x, int n, int G) {
    __m512 s[2][GQ_QT_T];
    for (int g = 0; g < 2; g++)
        for (int t = 0; t < GQ_QT_T; t++)
            s[g][t] = _mm512_setzero_ps();
    for (int j = 0; j < n; j++) {
        __m512 w0 = _mm512_loadu_ps(p->w[j]), w1 = G == 2 ? _mm512_loadu_ps(p->w[j] + 16) : w0;
        for (int t = 0; t < GQ_QT_T; t++) {
            __m512 xb = _mm512_set1_ps(x[t][j]);
            s[0][t] = _mm512_fmadd_ps(w0, xb, s[0][t]);
            if (G == 2)
                s[1][t] = _mm512_fmadd_ps(w1, xb, s[1][t]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int t = 0; t < GQ_QT_T; t++)
            acc[g][t] = _mm512_add_ps(acc[g][t], s[g][t]);
}

static void qf_tile(int bf, float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                    const float *x, size_t xstride, int k, int nt) {
    gq_qf p;
    for (int r0 = 0; r0 < nr; r0 += GQ_QT_ROWS) {
        int rn = nr - r0 < GQ_QT_ROWS ? nr - r0 : GQ_QT_ROWS, groups = rn > 16 ? 2 : 1;
        for (int t0 = 0; t0 < nt; t0 += GQ_QT_MAXT) {
            int tn = nt - t0 < GQ_QT_MAXT ? nt - t0 : GQ_QT_MAXT;
            __m512 acc[GQ_QT_MAXT / GQ_QT_T][2][GQ_QT_T];
            for (int i = 0; i < GQ_QT_MAXT / GQ_QT_T; i++)
                for (int g = 0; g < 2; g++)
                    for (int t = 0; t < GQ_QT_T; t++)
                        acc[i][g][t] = _mm512_setzero_ps();
            for (int k0 = 0; k0 < k; k0 += GQ_QF_K) {
                int n = k - k0 < GQ_QF_K ? k - k0 : GQ_QF_K;
                for (int r = 0; r < 16 * groups; r++)
                    if (r < rn)
                        qf_convert(p.f[r], w + (size_t)(r0 + r) * row_bytes, bf, k0, n);
                    else
                        for (int j = 0; j < GQ_QF_K; j++)
                            p.f[r][j] = 0.0f;
                for (int g = 0; g < groups; g++)
                    for (int j = 0; j < n; j += 16)
                        qt_transpose((int32_t(*)[GQ_QT_ROWS])(void *)&p.w[j][16 * g],
                                     (const int8_t *)(const void *)(p.f[16 * g] + j), sizeof p.f[0]);
                for (int t = 0; t < tn; t += GQ_QT_T) {
                    const float *xs[GQ_QT_T];
                    for (int i = 0; i < GQ_QT_T; i++)
                        xs[i] = x + (size_t)(t0 + (t + i < tn ? t + i : tn - 1)) * xstride + (size_t)k0;
                    if (groups == 2)
                        qf_kernel(acc[t / GQ_QT_T], &p, xs, n, 2);
                    else
                        qf_kernel(acc[t / GQ_QT_T], &p, xs, n, 1);
                }
            }
            for (int t = 0; t < tn; t++) {
                float v[GQ_QT_ROWS];
                _mm512_storeu_ps(v, acc[t / GQ_QT_T][0][t % GQ_QT_T]);
                _mm512_storeu_ps(v + 16, acc[t / GQ_QT_T][1][t % GQ_QT_T]);
                for (int i = 0; i < rn; i++)
                    out[(size_t)(t0 + t) * ostride + (size_t)(r0 + i)] = v[i];
            }
        }
    }
}
#endif

#if GQ_HAS_Q8_0
static void tile_q8_0(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const gq_x8 *x, size_t xstride, int nb, int nt) {
#if GQ_QD_VNNI
    qt_tile(GQ_DT_Q8_0, out, ostride, w, row_bytes, nr, x, xstride, 32 * nb, nt);
#else
    GQ_QD_TILE_LANES_BEGIN
    const unsigned char *blk = row + 34 * (size_t)b;
    const int8_t *q = (const int8_t *)(const void *)(blk + 2);
    float d = qd_f16(blk);
    for (int t = 0; t < tn; t++)
        acc[t][b & 1] = qd_fma(acc[t][b & 1], qd_dot_q8(q, GQ_QD_X(t)->q), d * GQ_QD_X(t)->d);
    GQ_QD_TILE_LANES_END
#endif
}
#endif

#if GQ_HAS_Q4_0
static void tile_q4_0(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const gq_x8 *x, size_t xstride, int nb, int nt) {
#if GQ_QD_VNNI
    qt_tile(GQ_DT_Q4_0, out, ostride, w, row_bytes, nr, x, xstride, 32 * nb, nt);
#else
    GQ_QD_TILE_LANES_BEGIN
    const unsigned char *blk = row + 18 * (size_t)b;
    float d = qd_f16(blk);
    for (int t = 0; t < tn; t++)
        acc[t][b & 1] = qd_fma(acc[t][b & 1], qd_dot_q4(blk + 2, GQ_QD_X(t)->q), d * GQ_QD_X(t)->d);
    GQ_QD_TILE_LANES_END
#endif
}
#endif

#if GQ_HAS_Q4_K
static void tile_q4_k(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const gq_x8k *x, size_t xstride, int nb, int nt) {
#if GQ_QD_VNNI
    qt_tile(GQ_DT_Q4_K, out, ostride, w, row_bytes, nr, x, xstride, 256 * nb, nt);
#else
    GQ_QD_TILE_BEGIN
    gq_qd_q4k u;
    qd_unpack_q4_k(&u, row + 144 * (size_t)b);
    for (int t = 0; t < tn; t++)
        acc[t] += qd_block_q4_k(&u, GQ_QD_X(t));
    GQ_QD_TILE_END
#endif
}
#endif

#if GQ_HAS_Q6_K
static void tile_q6_k(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const gq_x8k *x, size_t xstride, int nb, int nt) {
#if GQ_QD_VNNI
    qt_tile(GQ_DT_Q6_K, out, ostride, w, row_bytes, nr, x, xstride, 256 * nb, nt);
#else
    GQ_QD_TILE_BEGIN
    const unsigned char *blk = row + 210 * (size_t)b;
    float d = qd_f16(blk + 208);
    for (int t = 0; t < tn; t++)
        acc[t] += qd_block_q6_k(blk, d, GQ_QD_X(t));
    GQ_QD_TILE_END
#endif
}
#endif

#undef GQ_QD_X

/* F16 and BF16: each (row, token) by dot_f16 / dot_bf16; the row, 2n
 * bytes, stays in cache across the tokens. */
#if GQ_HAS_F16
static void tile_f16(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                     const float *x, size_t xstride, int n, int nt) {
#if GQ_QF_OK
    qf_tile(0, out, ostride, w, row_bytes, nr, x, xstride, n, nt);
#else
    for (int i = 0; i < nr; i++)
        for (int t = 0; t < nt; t++)
            out[(size_t)t * ostride + (size_t)i] = dot_f16(w + (size_t)i * row_bytes, x + (size_t)t * xstride, n);
#endif
}
#endif

#if GQ_HAS_BF16
static void tile_bf16(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const float *x, size_t xstride, int n, int nt) {
#if GQ_QF_OK
    qf_tile(1, out, ostride, w, row_bytes, nr, x, xstride, n, nt);
#else
    for (int i = 0; i < nr; i++)
        for (int t = 0; t < nt; t++)
            out[(size_t)t * ostride + (size_t)i] = dot_bf16(w + (size_t)i * row_bytes, x + (size_t)t * xstride, n);
#endif
}
#endif

/* ---- the embedding lookup ---- */

#if GQ_HAS_ROWS
/* One row of n elements of type (GQ_DT_*) as floats in out, with the
 * same float operations as runtime/quant.c's dequantizer. */
static void row_to_floats(int type, const unsigned char *w, int n, float *out) {
    switch (type) {
    case GQ_DT_F32:
        for (int j = 0; j < n; j++) {
            const unsigned char *p = w + 4 * (size_t)j;
            out[j] = qd_from_bits((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                  (uint32_t)p[3] << 24);
        }
        break;
#if GQ_HAS_F16
    case GQ_DT_F16:
        for (int j = 0; j < n; j++)
            out[j] = qd_f16(w + 2 * (size_t)j);
        break;
#endif
    case GQ_DT_BF16:
        for (int j = 0; j < n; j++)
            out[j] = qd_bf16(w + 2 * (size_t)j);
        break;
#if GQ_HAS_Q8_0
    case GQ_DT_Q8_0:
        for (int b = 0; b < n / 32; b++) {
            float d = qd_f16(w + 34 * (size_t)b);
            for (int j = 0; j < 32; j++)
                out[32 * b + j] = (float)(int8_t)w[34 * (size_t)b + 2 + (size_t)j] * d;
        }
        break;
#endif
#if GQ_HAS_Q4_0
    case GQ_DT_Q4_0:
        for (int b = 0; b < n / 32; b++) {
            const unsigned char *blk = w + 18 * (size_t)b;
            float d = qd_f16(blk);
            for (int j = 0; j < 16; j++) {
                out[32 * b + j] = (float)((blk[2 + j] & 0xf) - 8) * d;
                out[32 * b + j + 16] = (float)((blk[2 + j] >> 4) - 8) * d;
            }
        }
        break;
#endif
#if GQ_HAS_Q4_K
    case GQ_DT_Q4_K:
        for (int b = 0; b < n / 256; b++) {
            gq_qd_q4k u;
            qd_unpack_q4_k(&u, w + 144 * (size_t)b);
            for (int j = 0; j < 8; j++) {
                float ds = u.d * (float)qd_byte(u.s, j), ms = u.dmin * (float)qd_byte(u.s, 8 + j);
                for (int l = 0; l < 32; l++)
                    out[256 * b + 32 * j + l] = ds * (float)(u.qs[32 * (j / 2) + l] >> 4 * (j % 2) & 0xf) - ms;
            }
        }
        break;
#endif
#if GQ_HAS_Q6_K
    case GQ_DT_Q6_K:
        for (int b = 0; b < n / 256; b++) {
            const unsigned char *blk = w + 210 * (size_t)b;
            float d = qd_f16(blk + 208);
            for (int i = 0; i < 256; i++) {
                int h = i / 128, c = i % 128 / 32, l = i % 32;
                int lo = blk[64 * h + 32 * (c % 2) + l] >> 4 * (c / 2) & 0xf;
                int hi = blk[128 + 32 * h + l] >> 2 * c & 3;
                out[256 * b + i] = d * (float)(int8_t)blk[192 + i / 16] * (float)((lo | hi << 4) - 32);
            }
        }
        break;
#endif
    default:
        break;
    }
}
#endif
