/*
 * parallel.h: OpenMP when the C compiler has it and the target is hosted,
 * plain loops otherwise; a build without -fopenmp gives the same results
 * on one thread.  And GQ_PREFETCH, a cache hint where the compiler has
 * one.  Holes: GQ_FREESTANDING.
 */
#ifndef GQ_PARALLEL_H
#define GQ_PARALLEL_H

#if defined(_OPENMP) && !GQ_FREESTANDING
#include <omp.h>
#define GQ_OPENMP 1
#define GQ_OMP(directive) _Pragma(directive)
#else
#define GQ_OPENMP 0
#define GQ_OMP(directive)
#endif

/* Asks for the cache line at p ahead of its use, into L2 (prefetcht1 on
 * x86, measured a few percent faster for attention than into L1): gcc's
 * and clang's hint, nothing under other compilers (the results are the
 * same). */
#if defined(__GNUC__) && !defined(__TINYC__)
#define GQ_PREFETCH(p) __builtin_prefetch(p, 0, 2)
#else
#define GQ_PREFETCH(p) ((void)(p))
#endif

/* Floats in a cache line (64 bytes): one GQ_PREFETCH's worth. */
#define GQ_LINE 16

/* Below this many multiply-adds a parallel region costs more than it saves. */
#define GQ_PARALLEL_MIN 32768

#endif
