/*
 * half.c: IEEE binary16 and bfloat16 to and from float, by bits, so the
 * result is exact and the same on every host (no reliance on _Float16 or
 * the FPU's rounding mode).
 */
#include <string.h>

#include "tensorfile.h"

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float gqr_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = h >> 10 & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) /* infinity or NaN: the payload moves up with the exponent */
        return from_bits(sign | 0x7f800000 | mant << 13);
    if (exp == 0) {
        if (mant == 0)
            return from_bits(sign);
        /* A subnormal half is a normal float: shift the leading one into place. */
        exp = 1;
        while (!(mant & 0x400)) {
            mant <<= 1;
            exp--;
        }
        mant &= 0x3ff;
    }
    return from_bits(sign | (exp + 112) << 23 | mant << 13);
}

/* m >> shift, rounded to nearest with ties to even. */
static uint32_t shift_round(uint32_t m, int shift) {
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t gqr_f32_to_f16(float f) {
    uint32_t x = to_bits(f);
    uint16_t sign = (uint16_t)(x >> 16 & 0x8000);
    x &= 0x7fffffff;
    if (x > 0x7f800000)
        return (uint16_t)(sign | 0x7e00 | (x >> 13 & 0x3ff));
    if (x >= 0x477ff000) /* 65520 and up round past the largest half, 65504 */
        return sign | 0x7c00;
    if (x >= 0x38800000) /* normal: rebias the exponent; a carry out of the mantissa is right */
        return (uint16_t)(sign | shift_round(x - 0x38000000, 13));
    int e = (int)(x >> 23);
    if (e < 102) /* below half the smallest subnormal, 2^-25 */
        return sign;
    /* Subnormal: the value in units of 2^-24, the smallest subnormal. */
    return (uint16_t)(sign | shift_round((x & 0x7fffff) | 0x800000, 126 - e));
}

float gqr_bf16_to_f32(uint16_t h) {
    return from_bits((uint32_t)h << 16);
}

uint16_t gqr_f32_to_bf16(float f) {
    uint32_t x = to_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)(x >> 16 | 0x40);
    return (uint16_t)((x + 0x7fff + (x >> 16 & 1)) >> 16);
}
