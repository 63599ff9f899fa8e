/*
 * clang_front.h: clang's C front end behind a C interface, for the llvm JIT
 * backend (jit_llvm.c).  clang's parser and code generator are reachable
 * only through its C++ API, so this one function is C++ (clang_front.cpp);
 * everything else in the backend is LLVM-C.
 */
#ifndef GQAC_CLANG_FRONT_H
#define GQAC_CLANG_FRONT_H

#include <llvm-c/Core.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Compiles the C99 source src[0..len) (named name in messages) into an
 * LLVM module in ctx, as `clang -O3 -march=native -ffp-contract=fast
 * -fopenmp` would before its optimization passes: the module carries the
 * host CPU's features and the -O3 attributes, and the caller runs the
 * passes.  In memory: no file is written and no process started.  NULL
 * with clang's messages in err on failure. */
LLVMModuleRef gqac_clang_compile(LLVMContextRef ctx, const char *name, const char *src, size_t len,
                                 char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
