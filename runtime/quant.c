/*
 * quant.c: ggml's block formats (ggml-common.h's block_q4_0, block_q8_0,
 * block_q4_K, block_q6_K) read and written from their bytes.  The
 * quantizers follow ggml-quants.c's reference ones step by step, in the
 * same float operations in the same order, so that the bytes agree; the
 * comments name the ggml function each part mirrors.
 *
 * Layouts (offsets in bytes; f16 little-endian):
 *   Q8_0, 32 elements in 34 bytes: d at 0, int8 q[32] at 2; x = d*q.
 *   Q4_0, 32 in 18: d at 0, qs[16] at 2; element j in the low nibble of
 *     qs[j], element j+16 in the high one; x = d*(q - 8).
 *   Q4_K, 256 in 144: d at 0, dmin at 2, scales[12] at 4 (eight 6-bit
 *     scales and mins, see scale_min), qs[128] at 16; sub-block s of 32
 *     has x = d*sc[s]*q - dmin*m[s].
 *   Q6_K, 256 in 210: ql[128] at 0, qh[64] at 128, int8 scales[16] at
 *     192, d at 208; 6-bit q (low 4 bits in ql, high 2 in qh) minus 32;
 *     sub-block s of 16 has x = d*scales[s]*q.
 */
#include <math.h>
#include <string.h>

#include "fail.h"
#include "quant.h"
#include "tensorfile.h"

enum { QK = 32, QK_K = 256 };

/* By GQR_DT_*. */
static const gqr_q_type types[] = {
    {GQR_DT_F32, GQR_GGML_F32, "F32", 1, 4},
    {GQR_DT_F16, GQR_GGML_F16, "F16", 1, 2},
    {GQR_DT_BF16, GQR_GGML_BF16, "BF16", 1, 2},
    {GQR_DT_Q4_0, GQR_GGML_Q4_0, "Q4_0", QK, 18},
    {GQR_DT_Q8_0, GQR_GGML_Q8_0, "Q8_0", QK, 34},
    {GQR_DT_Q4_K, GQR_GGML_Q4_K, "Q4_K", QK_K, 144},
    {GQR_DT_Q6_K, GQR_GGML_Q6_K, "Q6_K", QK_K, 210},
};
enum { N_TYPES = sizeof types / sizeof types[0] };

/* ggml's type names by id, for messages about the ones gqac refuses. */
static const char *const ggml_names[] = {
    "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
    "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
    "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4",
    "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};

const gqr_q_type *gqr_q_type_of(int dtype) {
    return dtype >= 0 && dtype < N_TYPES ? &types[dtype] : NULL;
}

int gqr_q_from_ggml(uint32_t ggml_id) {
    for (int i = 0; i < N_TYPES; i++)
        if ((uint32_t)types[i].ggml == ggml_id)
            return types[i].dtype;
    return -1;
}

const char *gqr_q_ggml_name(uint32_t ggml_id) {
    return ggml_id < sizeof ggml_names / sizeof *ggml_names ? ggml_names[ggml_id] : "unknown";
}

int gqr_q_is_block(int dtype) {
    const gqr_q_type *t = gqr_q_type_of(dtype);
    return t && t->block > 1;
}

int gqr_q_row_bytes(int dtype, uint64_t n, uint64_t *bytes, char *err, size_t errlen) {
    const gqr_q_type *t = gqr_q_type_of(dtype);
    if (!t)
        return gqr_fail(err, errlen, "unknown element type %d", dtype);
    if (n % (uint64_t)t->block)
        return gqr_fail(err, errlen, "%llu elements are not whole %s blocks of %d",
                        (unsigned long long)n, t->name, t->block);
    uint64_t blocks = n / (uint64_t)t->block;
    if (blocks > (UINT64_C(1) << 62) / (uint64_t)t->block_bytes)
        return gqr_fail(err, errlen, "%llu %s elements take more than 2^62 bytes",
                        (unsigned long long)n, t->name);
    *bytes = blocks * (uint64_t)t->block_bytes;
    return 0;
}

static float f16_at(const unsigned char *p) {
    return gqr_f16_to_f32(gqr_tf_le16(p));
}

/* ---- dequantizing (ggml's dequantize_row_*) ---- */

static void dequant_q8_0(const unsigned char *b, float *y) {
    float d = f16_at(b);
    for (int j = 0; j < QK; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

static void dequant_q4_0(const unsigned char *b, float *y) {
    float d = f16_at(b);
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)((b[2 + j] & 0xf) - 8) * d;
        y[j + QK / 2] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

/* Sub-block j's 6-bit scale and min from Q4_K's 12 packed bytes: j < 4 in
 * the low 6 bits of bytes j and j+4; the others split, low 4 bits in byte
 * j+4 and high 2 in the top bits of bytes j-4 (scale) and j (min).  This
 * is ggml's get_scale_min_k4. */
static void scale_min(int j, const unsigned char *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

static void dequant_q4_k(const unsigned char *b, float *y) {
    float d = f16_at(b), dmin = f16_at(b + 2);
    const unsigned char *scales = b + 4, *q = b + 16;
    for (int s = 0; s < 8; s++) {
        int sc, m, shift = s % 2 * 4;
        scale_min(s, scales, &sc, &m);
        float ds = d * (float)sc, ms = dmin * (float)m;
        for (int l = 0; l < 32; l++)
            y[32 * s + l] = ds * (float)(q[32 * (s / 2) + l] >> shift & 0xf) - ms;
    }
}

/* Element i of a Q6_K block's 256: which bytes hold its 6 bits. */
static int q6_value(const unsigned char *ql, const unsigned char *qh, int i) {
    int half = i / 128, r = i % 128, l = r % 32, quarter = r / 32;
    int low = ql[64 * half + l + 32 * (quarter % 2)] >> 4 * (quarter / 2) & 0xf;
    int high = qh[32 * half + l] >> 2 * quarter & 3;
    return (low | high << 4) - 32;
}

static void dequant_q6_k(const unsigned char *b, float *y) {
    const unsigned char *ql = b, *qh = b + 128, *scales = b + 192;
    float d = f16_at(b + 208);
    for (int i = 0; i < QK_K; i++)
        y[i] = d * (float)(int8_t)scales[i / 16] * (float)q6_value(ql, qh, i);
}

static void dequant_block(int dtype, const unsigned char *b, float *y) {
    switch (dtype) {
    case GQR_DT_Q8_0: dequant_q8_0(b, y); break;
    case GQR_DT_Q4_0: dequant_q4_0(b, y); break;
    case GQR_DT_Q4_K: dequant_q4_k(b, y); break;
    case GQR_DT_Q6_K: dequant_q6_k(b, y); break;
    case GQR_DT_F32: {
        uint32_t u = gqr_tf_le32(b);
        memcpy(y, &u, sizeof u);
        break;
    }
    case GQR_DT_F16: *y = f16_at(b); break;
    default: *y = gqr_bf16_to_f32(gqr_tf_le16(b)); break;
    }
}

void gqr_q_dequantize_row(int dtype, const unsigned char *src, uint64_t n, float *dst) {
    const gqr_q_type *t = gqr_q_type_of(dtype);
    for (uint64_t i = 0; t && i < n / (uint64_t)t->block; i++)
        dequant_block(dtype, src + i * (uint64_t)t->block_bytes, dst + i * (uint64_t)t->block);
}

/* ---- checking ---- */

int gqr_q_check_row(int dtype, const unsigned char *src, uint64_t n, char *err, size_t errlen) {
    const gqr_q_type *t = gqr_q_type_of(dtype);
    if (!t || t->block == 1)
        return 0;
    for (uint64_t i = 0; i < n / (uint64_t)t->block; i++) {
        const unsigned char *b = src + i * (uint64_t)t->block_bytes;
        int at = dtype == GQR_DT_Q6_K ? 208 : 0, n_scales = dtype == GQR_DT_Q4_K ? 2 : 1;
        for (int k = 0; k < n_scales; k++) {
            float s = f16_at(b + at + 2 * k);
            if (!isfinite(s))
                return gqr_fail(err, errlen, "%s block %llu (elements [%llu, %llu)) has %s "
                                "scale %s %g", t->name, (unsigned long long)i,
                                (unsigned long long)(i * (uint64_t)t->block),
                                (unsigned long long)((i + 1) * (uint64_t)t->block),
                                isnan(s) ? "a NaN" : "an infinite", k ? "dmin" : "d", s);
        }
    }
    return 0;
}

/* ---- quantizing (ggml's quantize_row_*_ref) ---- */

/* ggml's nearest_int: round to nearest, ties to even, by adding 1.5 * 2^23
 * so that the float's own rounding does it; exact for |f| < 2^22, and
 * the same garbage as ggml's outside. */
static int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static void put_f16(unsigned char *p, float f) {
    gqr_tf_put16(p, gqr_f32_to_f16(f));
}

/* quantize_row_q8_0_ref: d = amax / 127, q = round(x / d) away from zero. */
static void quant_q8_0(const float *x, unsigned char *b) {
    float amax = 0;
    for (int j = 0; j < QK; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    float d = amax / ((1 << 7) - 1), id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(b, d);
    for (int j = 0; j < QK; j++)
        b[2 + j] = (unsigned char)(int8_t)(int)roundf(x[j] * id);
}

/* quantize_row_q4_0_ref: d = -max / 8 with max the value of largest
 * magnitude (so it maps to q = 0), q = trunc(x / d + 8.5) up to 15. */
static void quant_q4_0(const float *x, unsigned char *b) {
    float amax = 0, max = 0;
    for (int j = 0; j < QK; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(b, d);
    for (int j = 0; j < QK / 2; j++) {
        int q0 = (int)(x[j] * id + 8.5f), q1 = (int)(x[QK / 2 + j] * id + 8.5f);
        q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
        q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
        b[2 + j] = (unsigned char)(q0 | q1 << 4);
    }
}

static int clamp(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* make_qkx2_quants' first guess: L for the scale that spans [min, max],
 * and its weighted error. */
static float qkx2_first(int n, int nmax, const float *x, const float *w, float min,
                        float iscale, unsigned char *L) {
    float scale = 1 / iscale, error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (unsigned char)clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * L[i] + min - x[i];
        error += w[i] * (diff * diff);
    }
    return error;
}

/* make_qkx2_quants (use_mad false): n values as scale*L + min with L in
 * [0, nmax] and min <= 0, searching nstep+1 scales around nmax / (max -
 * min) and fitting scale and min to each by weighted least squares; the
 * fit of least weighted squared error wins.  Returns the scale, -min in
 * *the_min. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w,
                              unsigned char *L, float *the_min, unsigned char *Laux, float rmin,
                              float rdelta, int nstep) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        min = x[i] < min ? x[i] : min;
        max = x[i] > max ? x[i] : max;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale;
    float best_error = qkx2_first(n, nmax, x, w, min, iscale, L);
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (unsigned char)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                error += w[i] * (diff * diff);
            }
            if (error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Packs sub-block j's 6-bit scale ls and min lm as scale_min reads them. */
static void put_scale_min(unsigned char *s, int j, int ls, int lm) {
    if (j < 4) {
        s[j] = (unsigned char)ls;
        s[j + 4] = (unsigned char)lm;
    } else {
        s[j + 4] = (unsigned char)((ls & 0xf) | (lm & 0xf) << 4);
        s[j - 4] |= (unsigned char)(ls >> 4 << 6);
        s[j] |= (unsigned char)(lm >> 4 << 6);
    }
}

/* quantize_row_q4_K_ref: each sub-block of 32 fitted by make_qkx2_quants
 * (weights sqrt(mean x^2) + |x|), the eight scales and mins as 6-bit
 * multiples of d and dmin, then every value requantized against the
 * stored scales. */
static void quant_q4_k(const float *x, unsigned char *b) {
    unsigned char L[QK_K], Laux[32];
    float weights[32], mins[8], scales[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     -1.f, 0.1f, 20);
        max_scale = scales[j] > max_scale ? scales[j] : max_scale;
        max_min = mins[j] > max_min ? mins[j] : max_min;
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(b, 0, 144);
    for (int j = 0; j < 8; j++) {
        unsigned char ls = (unsigned char)nearest_int(inv_scale * scales[j]);
        unsigned char lm = (unsigned char)nearest_int(inv_min * mins[j]);
        put_scale_min(b + 4, j, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    put_f16(b, max_scale / 63.f);
    put_f16(b + 2, max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min(j, b + 4, &sc, &m);
        float d = f16_at(b) * sc;
        if (d == 0)
            continue;
        float dm = f16_at(b + 2) * m;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (unsigned char)clamp(nearest_int((x[32 * j + i] + dm) / d), 0, 15);
    }
    for (int j = 0; j < QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            b[16 + j / 2 + l] = (unsigned char)(L[j + l] | L[j + l + 32] << 4);
}

enum { Q6_NMAX = 32 };

/* make_qx_quants' sums for L = round(iscale * x) in [-nmax, nmax - 1],
 * weighted by x^2 (rmse_type 1); keeps L + nmax when L is not NULL. */
static void qx_sums(int n, const float *x, float iscale, signed char *L, float *sumlx,
                    float *suml2) {
    *sumlx = *suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp(nearest_int(iscale * x[i]), -Q6_NMAX, Q6_NMAX - 1);
        if (L)
            L[i] = (signed char)(l + Q6_NMAX);
        float w = x[i] * x[i];
        *sumlx += w * x[i] * l;
        *suml2 += w * l * l;
    }
}

/* make_qx_quants (nmax 32, rmse_type 1, no quant weights): the scale of
 * least x^2-weighted squared error among -(nmax + 0.1 is) / max for is in
 * [-9, 9], max the value of largest magnitude. */
static float make_qx_quants(int n, const float *x, signed char *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) { /* ggml's GROUP_MAX_EPS: all zero */
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float sumlx, suml2;
    qx_sums(n, x, -Q6_NMAX / max, L, &sumlx, &suml2);
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        float iscale = -(Q6_NMAX + 0.1f * is) / max;
        qx_sums(n, x, iscale, NULL, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            qx_sums(n, x, iscale, L, &sumlx, &suml2);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* quantize_row_q6_K_ref: each sub-block of 16 fitted by make_qx_quants,
 * the scales as int8 multiples of d = max_scale / -128, every value
 * requantized against the stored scales. */
static void quant_q6_k(const float *x, unsigned char *b) {
    signed char L[QK_K];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int s = 0; s < 16; s++) {
        scales[s] = make_qx_quants(16, x + 16 * s, L + 16 * s);
        if (fabsf(scales[s]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[s]);
            max_scale = scales[s];
        }
    }
    memset(b, 0, 210);
    if (max_abs_scale < 1e-15f)
        return; /* all zero: d = 0 */
    float iscale = -128.f / max_scale;
    put_f16(b + 208, 1 / iscale);
    for (int s = 0; s < 16; s++) {
        int v = nearest_int(iscale * scales[s]);
        b[192 + s] = (unsigned char)(signed char)(v < 127 ? v : 127);
    }
    for (int s = 0; s < 16; s++) {
        float d = f16_at(b + 208) * (signed char)b[192 + s];
        if (d == 0)
            continue;
        for (int i = 0; i < 16; i++)
            L[16 * s + i] = (signed char)(clamp(nearest_int(x[16 * s + i] / d), -32, 31) + 32);
    }
    for (int i = 0; i < QK_K; i++) { /* the inverse of q6_value */
        int half = i / 128, r = i % 128, l = r % 32, quarter = r / 32, q = L[i];
        b[64 * half + l + 32 * (quarter % 2)] |= (unsigned char)((q & 0xf) << 4 * (quarter / 2));
        b[128 + 32 * half + l] |= (unsigned char)((q >> 4 & 3) << 2 * quarter);
    }
}

static void quant_block(int dtype, const float *x, unsigned char *b) {
    switch (dtype) {
    case GQR_DT_Q8_0: quant_q8_0(x, b); break;
    case GQR_DT_Q4_0: quant_q4_0(x, b); break;
    case GQR_DT_Q4_K: quant_q4_k(x, b); break;
    case GQR_DT_Q6_K: quant_q6_k(x, b); break;
    case GQR_DT_F32: {
        uint32_t u;
        memcpy(&u, x, sizeof u);
        gqr_tf_put32(b, u);
        break;
    }
    case GQR_DT_F16: put_f16(b, *x); break;
    default: gqr_tf_put16(b, gqr_f32_to_bf16(*x)); break;
    }
}

/* 2^30: far past what any block type holds (Q6_K's largest is about
 * 2.7e8), and small enough that the quantizers' sums of squares stay
 * finite. */
#define MAX_ABS 1073741824.0f

int gqr_q_quantize_row(int dtype, const float *src, uint64_t n, unsigned char *dst, char *err,
                       size_t errlen) {
    uint64_t bytes;
    if (gqr_q_row_bytes(dtype, n, &bytes, err, errlen))
        return -1;
    const gqr_q_type *t = gqr_q_type_of(dtype);
    for (uint64_t i = 0; t->block > 1 && i < n; i++)
        if (!(fabsf(src[i]) < MAX_ABS))
            return gqr_fail(err, errlen, "element %llu is %g; %s quantizes finite values "
                            "below 2^30 in magnitude", (unsigned long long)i, src[i], t->name);
    for (uint64_t i = 0; i < n / (uint64_t)t->block; i++)
        quant_block(dtype, src + i * (uint64_t)t->block, dst + i * (uint64_t)t->block_bytes);
    char why[160];
    if (gqr_q_check_row(dtype, dst, n, why, sizeof why))
        return gqr_fail(err, errlen, "values too large for %s: %s", t->name, why);
    return 0;
}
