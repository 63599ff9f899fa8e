/*
 * mathlib.c: the few math functions the kernels need, for targets with no
 * libm (gqac --target freestanding).  Float only, because small cores
 * without a double-precision FPU would otherwise call soft-float library
 * routines that a -nostdlib build does not have.
 *
 * Accuracy, checked by tests/test_mathlib.c against libm in double:
 *   gq_expf         relative error < 4e-7 for -87.3 <= x <= 88.3
 *   gq_rsqrtf       relative error < 2e-7 (three Newton steps)
 *   gq_sincos_turn  absolute error < 2e-7 for sin and cos of 2 pi t
 *
 * Holes: GQ_ROPE_TABLE (with a precomputed RoPE table there is no sine to
 * take).  Type punning goes through a union, which C99 allows.
 */
#include <stdint.h>

typedef union {
    float f;
    uint32_t u;
} gq_bits;

/* e^x as 2^k e^r with |r| <= ln(2) / 2, r's exponential a degree-7 Taylor
 * polynomial (its remainder is below 1e-8 there).  Saturates above 88.3,
 * where 2^k would leave the float range, and flushes to 0 below -87.3. */
static float gq_expf(float x) {
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-6f;
    gq_bits scale;
    float k, r, p;
    if (x > 88.3f)
        return 3.40282347e38f;
    if (x < -87.3f)
        return 0.0f;
    k = (float)(int)(x * log2e + (x < 0 ? -0.5f : 0.5f));
    r = (x - k * ln2_hi) - k * ln2_lo; /* two steps keep r exact enough */
    p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    scale.u = (uint32_t)((int)k + 127) << 23;
    return p * scale.f;
}

/* 1 / sqrt(x) for x > 0: the bit-level first guess, then Newton's method. */
static float gq_rsqrtf(float x) {
    gq_bits b;
    float y;
    int i;
    b.f = x;
    b.u = 0x5f3759dfu - (b.u >> 1);
    y = b.f;
    for (i = 0; i < 3; i++)
        y = y * (1.5f - 0.5f * x * y * y);
    return y;
}

#if !GQ_ROPE_TABLE
/* sin and cos of 2 pi t for t in [0, 1): the quadrant from t, then Taylor
 * polynomials on [0, pi / 2) of degree 11 and 12 (remainders below 1e-8). */
static void gq_sincos_turn(float t, float *s, float *c) {
    const float half_pi = 1.57079633f;
    int quadrant = (int)(t * 4.0f);
    float x = (t * 4.0f - (float)quadrant) * half_pi, x2 = x * x, sn, cs;
    sn = x * (1 - x2 / 6 * (1 - x2 / 20 * (1 - x2 / 42 * (1 - x2 / 72 * (1 - x2 / 110)))));
    cs = 1 - x2 / 2 * (1 - x2 / 12 * (1 - x2 / 30 * (1 - x2 / 56 * (1 - x2 / 90 * (1 - x2 / 132)))));
    switch (quadrant & 3) {
    case 0: *s = sn, *c = cs; break;
    case 1: *s = cs, *c = -sn; break;
    case 2: *s = -sn, *c = -cs; break;
    default: *s = -cs, *c = sn; break;
    }
}
#endif
