/*
 * gqmath.h: the math the kernels call: libm's on hosted targets, and
 * mathlib.c's where there is no libm (freestanding).  Holes:
 * GQ_FREESTANDING.
 */
#ifndef GQ_MATH_H
#define GQ_MATH_H

#include <float.h>

#if GQ_FREESTANDING
#include "mathlib.c" /* gqac:drop */
#define GQ_EXPF gq_expf
#define GQ_RSQRTF gq_rsqrtf
#else
#include <math.h>
#define GQ_EXPF expf
#define GQ_RSQRTF(x) (1.0f / sqrtf(x))
#endif

#endif
