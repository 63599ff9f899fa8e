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
 * a byte at a time, never through a struct or a cast pointer.  Layouts are
 * runtime/quant.c's.  Block products are exact integer sums; every path
 * (portable C, AVX2, AVX-512 VNNI, NEON dot product) gives the same
 * integers, and they are combined in float in the same order per block.
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

/* A K-quant block unpacked: q unsigned (Q4_K 0..15, Q6_K 0..63), scales
 * (Q4_K 8, Q6_K 16) and Q4_K's mins as ints. */
typedef struct {
    float d, dmin;
    int32_t sc[16], m[8];
    uint8_t q[256];
} gq_qd_k;

/* Tokens whose sums a tile keeps while it walks a row's blocks: the row is
 * read from memory once, then from cache for each further group. */
#define GQ_QD_TOKENS 32

/* ---- scalars from bytes ---- */

#if GQ_QD_F16 || GQ_HAS_BF16 || GQ_HAS_ROWS
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
    uint32_t sign = (h & 0x8000u) << 16, e = h >> 10 & 31, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31)
        return qd_from_bits(sign | 0x7f800000u | m << 13);
    return qd_from_bits(sign | (e + 112) << 23 | m << 13);
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
        v = v >= 0.0f ? v + 0.5f : v - 0.5f;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        q[j] = (int8_t)(v == v ? (int)v : 0);
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

/* ---- integer block products: one per path, all exact ---- */

#if GQ_QD_AVX2 && GQ_QD_BLOCK_TYPES
static int32_t qd_hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

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

#if GQ_HAS_Q8_0 || GQ_HAS_Q4_0
/* a (32,) . b (32,), int8.  SIMD: s8 * s8 as |a| * (b with a's sign). */
static int32_t qd_dot32(const int8_t *a, const int8_t *b) {
#if GQ_QD_AVX2
    __m256i va = _mm256_loadu_si256((const __m256i *)(const void *)a);
    __m256i vb = _mm256_loadu_si256((const __m256i *)(const void *)b);
    return qd_hsum(qd_dpbusd(_mm256_setzero_si256(), _mm256_sign_epi8(va, va), _mm256_sign_epi8(vb, va)));
#elif GQ_QD_DOTPROD
    int32x4_t acc = vdotq_s32(vdupq_n_s32(0), vld1q_s8(a), vld1q_s8(b));
    return vaddvq_s32(vdotq_s32(acc, vld1q_s8(a + 16), vld1q_s8(b + 16)));
#else
    int32_t s = 0;
    for (int j = 0; j < 32; j++)
        s += (int32_t)a[j] * b[j];
    return s;
#endif
}
#endif

#if GQ_HAS_Q4_K
/* sum over 8 sub-blocks s of 32: sc[s] * (q . x), q unsigned 0..15. */
static int32_t qd_isum_q4k(const uint8_t *q, const int32_t *sc, const int8_t *x) {
#if GQ_QD_AVX2
    __m256i acc = _mm256_setzero_si256();
    for (int s = 0; s < 8; s++) {
        __m256i p = qd_dpbusd(_mm256_setzero_si256(),
                              _mm256_loadu_si256((const __m256i *)(const void *)(q + 32 * s)),
                              _mm256_loadu_si256((const __m256i *)(const void *)(x + 32 * s)));
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, _mm256_set1_epi32(sc[s])));
    }
    return qd_hsum(acc);
#elif GQ_QD_DOTPROD
    int32x4_t acc = vdupq_n_s32(0);
    for (int s = 0; s < 8; s++) {
        const int8_t *qs = (const int8_t *)(const void *)(q + 32 * s);
        int32x4_t p = vdotq_s32(vdupq_n_s32(0), vld1q_s8(qs), vld1q_s8(x + 32 * s));
        p = vdotq_s32(p, vld1q_s8(qs + 16), vld1q_s8(x + 32 * s + 16));
        acc = vmlaq_n_s32(acc, p, sc[s]);
    }
    return vaddvq_s32(acc);
#else
    int32_t total = 0;
    for (int s = 0; s < 8; s++) {
        int32_t p = 0;
        for (int l = 0; l < 32; l++)
            p += (int32_t)q[32 * s + l] * x[32 * s + l];
        total += sc[s] * p;
    }
    return total;
#endif
}
#endif

#if GQ_HAS_Q6_K
/* sum over 16 sub-blocks s of 16: sc[s] * (q . x), q unsigned 0..63. */
static int32_t qd_isum_q6k(const uint8_t *q, const int32_t *sc, const int8_t *x) {
#if GQ_QD_AVX2
    __m256i acc = _mm256_setzero_si256();
    for (int s = 0; s < 16; s += 2) {
        __m256i p = qd_dpbusd(_mm256_setzero_si256(),
                              _mm256_loadu_si256((const __m256i *)(const void *)(q + 16 * s)),
                              _mm256_loadu_si256((const __m256i *)(const void *)(x + 16 * s)));
        __m256i scv = _mm256_setr_epi32(sc[s], sc[s], sc[s], sc[s], sc[s + 1], sc[s + 1], sc[s + 1],
                                        sc[s + 1]);
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, scv));
    }
    return qd_hsum(acc);
#elif GQ_QD_DOTPROD
    int32x4_t acc = vdupq_n_s32(0);
    for (int s = 0; s < 16; s++) {
        const int8_t *qs = (const int8_t *)(const void *)(q + 16 * s);
        acc = vmlaq_n_s32(acc, vdotq_s32(vdupq_n_s32(0), vld1q_s8(qs), vld1q_s8(x + 16 * s)), sc[s]);
    }
    return vaddvq_s32(acc);
#else
    int32_t total = 0;
    for (int s = 0; s < 16; s++) {
        int32_t p = 0;
        for (int l = 0; l < 16; l++)
            p += (int32_t)q[16 * s + l] * x[16 * s + l];
        total += sc[s] * p;
    }
    return total;
#endif
}
#endif

/* ---- unpacking one block ---- */

#if GQ_HAS_Q4_0
/* 18 bytes: d, then element j in qs[j]'s low nibble, j + 16 in its high. */
static void qd_unpack_q4_0(gq_x8 *u, const unsigned char *b) {
    u->d = qd_f16(b);
    for (int j = 0; j < 16; j++) {
        u->q[j] = (int8_t)((b[2 + j] & 0xf) - 8);
        u->q[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
    }
}
#endif

#if GQ_HAS_Q4_K
/* 144 bytes: d, dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles. */
static void qd_unpack_q4_k(gq_qd_k *u, const unsigned char *b) {
    const unsigned char *k = b + 4, *qs = b + 16;
    u->d = qd_f16(b);
    u->dmin = qd_f16(b + 2);
    for (int j = 0; j < 4; j++) { /* ggml's get_scale_min_k4 */
        u->sc[j] = k[j] & 63;
        u->m[j] = k[j + 4] & 63;
        u->sc[j + 4] = (k[j + 8] & 0xf) | (k[j] >> 6) << 4;
        u->m[j + 4] = (k[j + 8] >> 4) | (k[j + 4] >> 6) << 4;
    }
    for (int s = 0; s < 8; s += 2)
        for (int l = 0; l < 32; l++) {
            u->q[32 * s + l] = qs[16 * s + l] & 0xf;
            u->q[32 * s + 32 + l] = qs[16 * s + l] >> 4;
        }
}
#endif

#if GQ_HAS_Q6_K
/* 210 bytes: ql[128], qh[64], int8 scales[16], d.  Elements 128h + 32c + l
 * (c < 4, l < 32): low 4 bits from ql[64h + 32(c % 2) + l] (nibble c / 2),
 * high 2 from qh[32h + l] (bits 2c). */
static void qd_unpack_q6_k(gq_qd_k *u, const unsigned char *b) {
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = b[64 * h + 32 * (c % 2) + l] >> 4 * (c / 2) & 0xf;
                int hi = b[128 + 32 * h + l] >> 2 * c & 3;
                u->q[128 * h + 32 * c + l] = (uint8_t)(lo | hi << 4);
            }
    for (int s = 0; s < 16; s++)
        u->sc[s] = (int8_t)b[192 + s];
    u->d = qd_f16(b + 208);
    u->dmin = 0.0f;
}
#endif

/* ---- one block . one token's activations ---- */

#if GQ_HAS_Q4_K
static float qd_block_q4_k(const gq_qd_k *u, const gq_x8k *x) {
    int32_t mins = 0;
    for (int s = 0; s < 8; s++)
        mins += u->m[s] * (x->bsum[2 * s] + x->bsum[2 * s + 1]);
    return x->d * (u->d * (float)qd_isum_q4k(u->q, u->sc, x->q) - u->dmin * (float)mins);
}
#endif

#if GQ_HAS_Q6_K
/* q - 32 . x = q . x - 32 * bsum: the unsigned q suits u8 * s8 products. */
static float qd_block_q6_k(const gq_qd_k *u, const gq_x8k *x) {
    int32_t off = 0;
    for (int s = 0; s < 16; s++)
        off += u->sc[s] * x->bsum[s];
    return x->d * u->d * (float)(qd_isum_q6k(u->q, u->sc, x->q) - 32 * off);
}
#endif

/* ---- decode: one row . one token ---- */

#if GQ_HAS_Q8_0
/* w: nb blocks of 34 bytes (d, int8 q[32]); x (nb,). */
static float dot_q8_0(const unsigned char *w, const gq_x8 *x, int nb) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        const unsigned char *blk = w + 34 * (size_t)b;
        sum += qd_f16(blk) * x[b].d * (float)qd_dot32((const int8_t *)(const void *)(blk + 2), x[b].q);
    }
    return sum;
}
#endif

#if GQ_HAS_Q4_0
static float dot_q4_0(const unsigned char *w, const gq_x8 *x, int nb) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        gq_x8 u;
        qd_unpack_q4_0(&u, w + 18 * (size_t)b);
        sum += u.d * x[b].d * (float)qd_dot32(u.q, x[b].q);
    }
    return sum;
}
#endif

#if GQ_HAS_Q4_K
static float dot_q4_k(const unsigned char *w, const gq_x8k *x, int nb) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        gq_qd_k u;
        qd_unpack_q4_k(&u, w + 144 * (size_t)b);
        sum += qd_block_q4_k(&u, &x[b]);
    }
    return sum;
}
#endif

#if GQ_HAS_Q6_K
static float dot_q6_k(const unsigned char *w, const gq_x8k *x, int nb) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        gq_qd_k u;
        qd_unpack_q6_k(&u, w + 210 * (size_t)b);
        sum += qd_block_q6_k(&u, &x[b]);
    }
    return sum;
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
    for (; j < n; j++)
        acc[j % 8] += qd_f16(w + 2 * (size_t)j) * x[j];
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
    for (; j < n; j++)
        acc[j % 8] += qd_bf16(w + 2 * (size_t)j) * x[j];
    for (int k = 0; k < 8; k++)
        sum += acc[k];
    return sum;
}
#endif

/* ---- prefill: rows [0, nr) of W . nt tokens -> out[t * ostride + i] ----
 * Each row's block is unpacked once and multiplied with GQ_QD_TOKENS tokens
 * at a time; a row's blocks stay in cache for the next group of tokens.
 * Per (row, token) the sum runs over blocks in dot_*'s order. */

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

#if GQ_HAS_Q8_0
static void tile_q8_0(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const gq_x8 *x, size_t xstride, int nb, int nt) {
    GQ_QD_TILE_BEGIN
    const unsigned char *blk = row + 34 * (size_t)b;
    const int8_t *q = (const int8_t *)(const void *)(blk + 2);
    float d = qd_f16(blk);
    for (int t = 0; t < tn; t++)
        acc[t] += d * GQ_QD_X(t)->d * (float)qd_dot32(q, GQ_QD_X(t)->q);
    GQ_QD_TILE_END
}
#endif

#if GQ_HAS_Q4_0
static void tile_q4_0(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const gq_x8 *x, size_t xstride, int nb, int nt) {
    GQ_QD_TILE_BEGIN
    gq_x8 u;
    qd_unpack_q4_0(&u, row + 18 * (size_t)b);
    for (int t = 0; t < tn; t++)
        acc[t] += u.d * GQ_QD_X(t)->d * (float)qd_dot32(u.q, GQ_QD_X(t)->q);
    GQ_QD_TILE_END
}
#endif

#if GQ_HAS_Q4_K
static void tile_q4_k(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const gq_x8k *x, size_t xstride, int nb, int nt) {
    GQ_QD_TILE_BEGIN
    gq_qd_k u;
    qd_unpack_q4_k(&u, row + 144 * (size_t)b);
    for (int t = 0; t < tn; t++)
        acc[t] += qd_block_q4_k(&u, GQ_QD_X(t));
    GQ_QD_TILE_END
}
#endif

#if GQ_HAS_Q6_K
static void tile_q6_k(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const gq_x8k *x, size_t xstride, int nb, int nt) {
    GQ_QD_TILE_BEGIN
    gq_qd_k u;
    qd_unpack_q6_k(&u, row + 210 * (size_t)b);
    for (int t = 0; t < tn; t++)
        acc[t] += qd_block_q6_k(&u, GQ_QD_X(t));
    GQ_QD_TILE_END
}
#endif

#undef GQ_QD_X

/* F16 and BF16: each (row, token) by dot_f16 / dot_bf16; the row, 2n
 * bytes, stays in cache across the tokens. */
#if GQ_HAS_F16
static void tile_f16(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                     const float *x, size_t xstride, int n, int nt) {
    for (int i = 0; i < nr; i++)
        for (int t = 0; t < nt; t++)
            out[(size_t)t * ostride + (size_t)i] = dot_f16(w + (size_t)i * row_bytes, x + (size_t)t * xstride, n);
}
#endif

#if GQ_HAS_BF16
static void tile_bf16(float *out, size_t ostride, const unsigned char *w, size_t row_bytes, int nr,
                      const float *x, size_t xstride, int n, int nt) {
    for (int i = 0; i < nr; i++)
        for (int t = 0; t < nt; t++)
            out[(size_t)t * ostride + (size_t)i] = dot_bf16(w + (size_t)i * row_bytes, x + (size_t)t * xstride, n);
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
            gq_x8 u;
            qd_unpack_q4_0(&u, w + 18 * (size_t)b);
            for (int j = 0; j < 32; j++)
                out[32 * b + j] = (float)u.q[j] * u.d;
        }
        break;
#endif
#if GQ_HAS_Q4_K
    case GQ_DT_Q4_K:
        for (int b = 0; b < n / 256; b++) {
            gq_qd_k u;
            qd_unpack_q4_k(&u, w + 144 * (size_t)b);
            for (int s = 0; s < 8; s++) {
                float ds = u.d * (float)u.sc[s], ms = u.dmin * (float)u.m[s];
                for (int l = 0; l < 32; l++)
                    out[256 * b + 32 * s + l] = ds * (float)u.q[32 * s + l] - ms;
            }
        }
        break;
#endif
#if GQ_HAS_Q6_K
    case GQ_DT_Q6_K:
        for (int b = 0; b < n / 256; b++) {
            gq_qd_k u;
            qd_unpack_q6_k(&u, w + 210 * (size_t)b);
            for (int j = 0; j < 256; j++)
                out[256 * b + j] = u.d * (float)u.sc[j / 16] * (float)((int)u.q[j] - 32);
        }
        break;
#endif
    default:
        break;
    }
}
#endif
