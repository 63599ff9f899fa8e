/*
 * parallel.h: OpenMP when the C compiler has it, and plain loops
 * otherwise; a build without -fopenmp gives the same results on one
 * thread.  (No holes.)
 */
#ifndef GQ_PARALLEL_H
#define GQ_PARALLEL_H

#ifdef _OPENMP
#include <omp.h>
#define GQ_OMP(directive) _Pragma(directive)
#else
#define GQ_OMP(directive)
#endif

/* Below this many multiply-adds a parallel region costs more than it saves. */
#define GQ_PARALLEL_MIN 32768

#endif
