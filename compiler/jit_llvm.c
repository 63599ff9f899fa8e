/*
 * jit_llvm.c: the llvm backend: the generated C compiled in this process
 * by clang's libraries (clang_front.cpp) to an LLVM module, optimized by
 * LLVM's -O3 pipeline for the host CPU, and linked into memory by ORC's
 * LLJIT.  Code as fast as the cc backend's, with no compiler installed,
 * no child process and no file.  Needs: LLVM, clang's libraries and
 * LLVM's OpenMP runtime (libomp) of one version, found when gqac was
 * built (GQAC_LLVM_OMP: libomp's path).
 *
 * OpenMP: clang's code calls libomp (__kmpc_*), not gcc's libgomp, and
 * both name their API omp_*: the module's OpenMP calls are bound to
 * libomp explicitly, everything else (libm, libc) to the process.
 * Compilations are independent (each has its own LLVM context and JIT)
 * and need no lock.
 */
#include "gqac.h"
#include "clang_front.h"

#include <dlfcn.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifndef GQAC_LLVM_OMP
#error "GQAC_LLVM_OMP: the path of LLVM's libomp.so.5 (the Makefile sets it)"
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool target_ok;
static void *omp_lib; /* never closed: its worker threads outlive any model */

static void init_once(void) {
    target_ok = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter();
    omp_lib = dlopen(GQAC_LLVM_OMP, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
}

/* A compiled model: its JIT, how long each phase took, and what ORC
 * reported while it compiled (the symbols a link missed). */
typedef struct {
    LLVMOrcLLJITRef jit;
    JitPhases phases;
    char report[512];
} Code;

/* ORC's reporter: its message kept for err, not printed. */
static void keep_report(void *ctx, LLVMErrorRef e) {
    Code *code = ctx;
    char *msg = LLVMGetErrorMessage(e);
    snprintf(code->report, sizeof code->report, "%s", msg);
    LLVMDisposeErrorMessage(msg);
}

/* LLVM's message in err, and the error freed. */
static bool failed(LLVMErrorRef e, const char *what, char *err, size_t errlen) {
    char *msg = LLVMGetErrorMessage(e);
    snprintf(err, errlen, "llvm JIT: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return false;
}

/* A target machine for the host CPU with all its features, at -O3: the
 * pipeline's cost models and the code generator's.  NULL with err. */
static LLVMTargetMachineRef host_machine(char *err, size_t errlen) {
    char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName();
    char *features = LLVMGetHostCPUFeatures(), *msg = NULL;
    LLVMTargetRef t;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &t, &msg))
        snprintf(err, errlen, "llvm JIT: no target for this machine (%s): %s", triple, msg);
    else
        tm = LLVMCreateTargetMachine(t, triple, cpu, features, LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                     LLVMCodeModelJITDefault);
    if (!tm && !msg)
        snprintf(err, errlen, "llvm JIT: cannot make a target machine for %s (%s)", triple, cpu);
    LLVMDisposeMessage(msg), LLVMDisposeMessage(triple), LLVMDisposeMessage(cpu), LLVMDisposeMessage(features);
    return tm;
}

/* clang -O3's module pipeline, vectorizers included. */
static bool optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, char *err, size_t errlen) {
    LLVMPassBuilderOptionsRef o = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
    LLVMPassBuilderOptionsSetLoopInterleaving(o, 1);
    LLVMPassBuilderOptionsSetLoopUnrolling(o, 1);
    LLVMErrorRef e = LLVMRunPasses(m, "default<O3>", tm, o);
    LLVMDisposePassBuilderOptions(o);
    return !e || failed(e, "the optimization passes failed", err, errlen);
}

/* The module's OpenMP calls bound to libomp's functions in j's main
 * library, before the process's symbols are searched. */
static bool bind_openmp(LLVMOrcLLJITRef j, LLVMModuleRef m, char *err, size_t errlen) {
    size_t n = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
        n++;
    LLVMJITCSymbolMapPair *syms = calloc(n ? n : 1, sizeof *syms);
    if (!syms) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    size_t k = 0;
    bool ok = true;
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f && ok; f = LLVMGetNextFunction(f)) {
        size_t len;
        const char *name = LLVMGetValueName2(f, &len);
        if (!LLVMIsDeclaration(f) || (strncmp(name, "__kmpc_", 7) && strncmp(name, "omp_", 4)))
            continue;
        void *addr = dlsym(omp_lib, name);
        if (!addr) {
            snprintf(err, errlen, "llvm JIT: LLVM's OpenMP runtime %s has no %s", GQAC_LLVM_OMP, name);
            ok = false;
            break;
        }
        syms[k++] = (LLVMJITCSymbolMapPair){
            LLVMOrcLLJITMangleAndIntern(j, name),
            {(LLVMOrcJITTargetAddress)(uintptr_t)addr,
             {LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable, 0}}};
    }
    LLVMErrorRef e = NULL;
    if (ok && k)
        e = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(j), LLVMOrcAbsoluteSymbols(syms, k));
    else
        for (size_t i = 0; i < k; i++)
            LLVMOrcReleaseSymbolStringPoolEntry(syms[i].Name);
    free(syms);
    return ok && (!e || failed(e, "cannot bind the OpenMP runtime", err, errlen));
}

/* An LLJIT that emits code for tm's CPU and resolves the rest from the
 * process (libm, libc).  Takes tm; NULL with err. */
static LLVMOrcLLJITRef new_jit(LLVMTargetMachineRef tm, Code *code, char *err, size_t errlen) {
    LLVMOrcLLJITBuilderRef b = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(b, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    LLVMOrcLLJITRef j;
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&j, b);
    if (e)
        return failed(e, "cannot create the JIT", err, errlen), NULL;
    LLVMOrcDefinitionGeneratorRef g;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&g, LLVMOrcLLJITGetGlobalPrefix(j), NULL, NULL);
    if (e) {
        LLVMConsumeError(LLVMOrcDisposeLLJIT(j));
        return failed(e, "cannot search the process's symbols", err, errlen), NULL;
    }
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j), g);
    LLVMOrcExecutionSessionSetErrorReporter(LLVMOrcLLJITGetExecutionSession(j), keep_report, code);
    return j;
}

/* The module handed to a new JIT, which owns it and ctx from then on
 * (freed here on failure); NULL with err. */
static LLVMOrcLLJITRef link_module(LLVMOrcThreadSafeContextRef ctx, LLVMModuleRef m, Code *code, char *err,
                                   size_t errlen) {
    LLVMTargetMachineRef tm = host_machine(err, errlen);
    LLVMOrcLLJITRef j = tm ? new_jit(tm, code, err, errlen) : NULL;
    if (j && !bind_openmp(j, m, err, errlen)) {
        LLVMConsumeError(LLVMOrcDisposeLLJIT(j));
        j = NULL;
    }
    if (!j) {
        LLVMDisposeModule(m);
        LLVMOrcDisposeThreadSafeContext(ctx);
        return NULL;
    }
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, ctx);
    LLVMOrcDisposeThreadSafeContext(ctx); /* the module holds it now */
    LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j, LLVMOrcLLJITGetMainJITDylib(j), tsm);
    if (e) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        LLVMConsumeError(LLVMOrcDisposeLLJIT(j));
        return failed(e, "cannot add the module", err, errlen), NULL;
    }
    return j;
}

/* Compiles the module now (ORC compiles on the first look-up): the model
 * table pulls in every function.  False with err (and ORC's report). */
static bool materialize(LLVMOrcLLJITRef j, const Code *code, char *err, size_t errlen) {
    LLVMOrcExecutorAddress addr;
    LLVMErrorRef e = LLVMOrcLLJITLookup(j, &addr, "model_api");
    if (!e)
        return true;
    failed(e, "code generation or linking failed", err, errlen);
    size_t used = strlen(err);
    if (code->report[0])
        snprintf(err + used, errlen - used, " (%s)", code->report);
    return false;
}

/* The C in c compiled into code's JIT, each phase timed; NULL with err
 * (the source kept).  clang's module is made in a context the JIT takes. */
static LLVMOrcLLJITRef build(const Buf *c, Arena *a, Code *code, char *err, size_t errlen) {
    JitPhases *t = &code->phases;
    LLVMOrcThreadSafeContextRef ctx = LLVMOrcCreateNewThreadSafeContext();
    double t0 = now_seconds();
    char msg[768];
    LLVMModuleRef m = gqac_clang_compile(LLVMOrcThreadSafeContextGetContext(ctx), "/gqac-jit/model.c", c->data,
                                         c->len, msg, sizeof msg);
    t->parse = now_seconds() - t0;
    if (!m) {
        LLVMOrcDisposeThreadSafeContext(ctx);
        snprintf(err, errlen, "llvm JIT: clang failed on the generated code (%s); the source is kept in %s: "
                 "if clang's messages are about it, that is a gqac bug", msg, cache_keep_source(c, NULL, a));
        return NULL;
    }
    LLVMTargetMachineRef tm = host_machine(err, errlen);
    bool ok = tm && optimize(m, tm, err, errlen);
    if (tm)
        LLVMDisposeTargetMachine(tm);
    t->optimize = now_seconds() - t0 - t->parse;
    LLVMOrcLLJITRef j = ok ? link_module(ctx, m, code, err, errlen) : NULL;
    if (!ok) {
        LLVMDisposeModule(m);
        LLVMOrcDisposeThreadSafeContext(ctx);
    }
    if (j && !materialize(j, code, err, errlen)) {
        LLVMConsumeError(LLVMOrcDisposeLLJIT(j));
        j = NULL;
    }
    t->codegen = now_seconds() - t0 - t->parse - t->optimize;
    if (!j) { /* kept for the report, as a failed parse keeps it */
        size_t used = strlen(err);
        snprintf(err + used, errlen - used, "; the generated source is kept in %s", cache_keep_source(c, NULL, a));
    }
    return j;
}

static void *llvm_jit_compile(const Plan *p, Arena *a, char *err, size_t errlen) {
    pthread_once(&once, init_once);
    if (!target_ok) {
        snprintf(err, errlen, "llvm JIT: LLVM cannot generate code for this machine (its native target "
                 "did not initialize)");
        return NULL;
    }
    if (!omp_lib) {
        snprintf(err, errlen, "llvm JIT: cannot load LLVM's OpenMP runtime: %s (install libomp5-14)", dlerror());
        return NULL;
    }
    Code *code = malloc(sizeof *code);
    if (!code) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *code = (Code){0};
    double t0 = now_seconds();
    Buf c = {0}, h = {0};
    emit_c_model(p, "model", NULL, false, &c, &h);
    code->phases.emit = now_seconds() - t0;
    code->jit = build(&c, a, code, err, errlen);
    buf_free(&c), buf_free(&h);
    if (!code->jit) {
        free(code);
        return NULL;
    }
    return code;
}

static void *llvm_jit_symbol(void *handle, const char *name) {
    LLVMOrcExecutorAddress addr;
    LLVMErrorRef e = LLVMOrcLLJITLookup(((Code *)handle)->jit, &addr, name);
    if (e) {
        LLVMConsumeError(e);
        return NULL;
    }
    return (void *)(uintptr_t)addr;
}

static void llvm_jit_release(void *handle) {
    LLVMConsumeError(LLVMOrcDisposeLLJIT(((Code *)handle)->jit));
    free(handle);
}

static JitPhases llvm_jit_phases(void *handle) {
    return ((Code *)handle)->phases;
}

const JitBackend jit_llvm = {"llvm", "clang and LLVM's ORC JIT in process: -O3 for this CPU, no files",
                             llvm_jit_compile, llvm_jit_symbol, llvm_jit_release, llvm_jit_phases};
