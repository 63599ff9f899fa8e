/*
 * parallel.h: OpenMP when the C compiler has it and the target is hosted,
 * plain loops otherwise; a build without -fopenmp gives the same results
 * on one thread.  Holes: GQ_FREESTANDING.
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

/* Below this many multiply-adds a parallel region costs more than it saves. */
#define GQ_PARALLEL_MIN 32768

#endif
