/*
 * gqmath.h: the math the kernels call: libm's on hosted targets, and
 * mathlib.c's where there is no libm (freestanding); and gq_exp_neg, an
 * exponential that vectorizes, for loops over whole vectors of arguments
 * (softmax, SwiGLU).  Holes: GQ_FREESTANDING.
 */
#ifndef GQ_MATH_H
#define GQ_MATH_H

#include <float.h>
#include <stdint.h>

#if GQ_FREESTANDING
#include "mathlib.c" /* gqac:drop */
#define GQ_EXPF gq_expf
#define GQ_RSQRTF gq_rsqrtf
#else
#include <math.h>
#define GQ_EXPF expf
#define GQ_RSQRTF(x) (1.0f / sqrtf(x))
#endif

/* e^x for x <= 0, 0 below -87 (where e^x is nothing next to the e^0 of a
 * softmax's maximum or the 1 of a sigmoid), without branches or library
 * calls so that a loop of them vectorizes: 2^k e^r, r's exponential a
 * degree-7 polynomial (relative error below 2e-7).  The cut at -87 is done
 * on the bits, as integers: a float comparison may trap, which stops gcc
 * from turning it into a select, and the loop would stay scalar. */
static inline float gq_exp_neg(float x) {
    union {
        float f;
        uint32_t u;
    } b, e;
    uint32_t below;
    float k, r;
    b.f = x;
    below = 0u - (uint32_t)((b.u & 0x7fffffffu) > 0x42ae0000u); /* |x| > 87 */
    b.u = (b.u & ~below) | (0xc2ae0000u & below);                 /* -87 */
    x = b.f;
    k = (float)(int)(x * 1.44269504f - 0.5f);
    r = (x - k * 0.693145752f) - k * 1.42860677e-6f;
    e.u = (uint32_t)((int)k + 127) << 23;
    e.f *= 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    e.u &= ~below;
    return e.f;
}

#endif
