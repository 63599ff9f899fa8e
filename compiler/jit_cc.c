/*
 * jit_cc.c: the cc backend: the system C compiler ($CC, else cc) builds the
 * generated C with -O3 -march=native -ffp-contract=fast (FMA, as in
 * run.c), and OpenMP where the compiler has it,
 * into a shared object that dlopen loads.  Objects are cached (cache.c)
 * under a key of the source, the compiler and the flags, so a model is
 * compiled once per machine and loads in milliseconds afterwards.
 */
#include "gqac.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CC_FLAGS "-std=c99", "-O3", "-march=native", "-ffp-contract=fast", "-fPIC", "-shared"
/* The cache key's: the object is built with OpenMP where the compiler has it. */
static const char *const key_flags[] = {CC_FLAGS, "-fopenmp"};

static const char *compiler(void) {
    const char *cc = getenv("CC");
    return cc && *cc ? cc : "cc";
}

/* cc FLAGS [-fopenmp] -o so src -lm: its exit status (127: no compiler). */
static int run_cc(const char *so, const char *src, bool openmp, bool quiet) {
    char *with[] = {(char *)compiler(), CC_FLAGS, "-fopenmp", "-o", (char *)so, (char *)src, "-lm", NULL};
    char *without[] = {(char *)compiler(), CC_FLAGS, "-o", (char *)so, (char *)src, "-lm", NULL};
    return cache_spawn(openmp ? with : without, quiet);
}

/* Builds dir/model.so from c (cache_stage, cache_publish). */
static bool build(const char *dir, const Buf *c, Arena *a, char *err, size_t errlen) {
    char *tmp = cache_stage(dir, a);
    char *src = tmp ? arena_printf(a, "%s/model.c", tmp) : NULL;
    if (!tmp || !cache_write_file(src, c)) {
        snprintf(err, errlen, "cc JIT: cannot write beside %s: %s", dir, strerror(errno));
        return false;
    }
    char *so = arena_printf(a, "%s/model.so", tmp);
    /* Without OpenMP when the compiler has none: a quiet first try. */
    int rc = run_cc(so, src, true, true);
    if (rc != 0 && rc != 127)
        rc = run_cc(so, src, false, false);
    if (rc == 127)
        snprintf(err, errlen, "cc JIT: no C compiler: '%s' cannot be run (install gcc, or set CC)",
                 compiler());
    else if (rc != 0)
        snprintf(err, errlen, "cc JIT: %s failed on the generated code, a gqac bug; the source is "
                 "kept in %s", compiler(), src);
    if (rc != 0)
        return false;
    if (!cache_publish(tmp, dir)) {
        snprintf(err, errlen, "cc JIT: cannot rename %s: %s", tmp, strerror(errno));
        return false;
    }
    return true;
}

static void *cc_jit_compile(const Plan *p, Arena *a, char *err, size_t errlen) {
    Buf c = {0}, h = {0};
    emit_c_model(p, "model", NULL, false, &c, &h);
    uint64_t k = cache_hash_str(CACHE_SEED, GQAC_VERSION);
    k = cache_hash(k, c.data, c.len);
    k = cache_hash_strs(cache_hash_str(k, compiler()), key_flags, sizeof key_flags / sizeof *key_flags);
    k = cache_hash_cpu(k);
    char *dir = arena_printf(a, "%s/jit-%016llx", cache_root(a), (unsigned long long)k);
    char *so = arena_printf(a, "%s/model.so", dir);
    void *handle = NULL;
    if (access(so, R_OK) == 0 || build(dir, &c, a, err, errlen)) {
        /* Never unmapped: libgomp, which the object brings in, keeps its
         * worker threads after the model is released, and they would wake
         * in unmapped code. */
        handle = dlopen(so, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!handle)
            snprintf(err, errlen, "cc JIT: cannot load %s: %s", so, dlerror());
    }
    buf_free(&c), buf_free(&h);
    return handle;
}

static void *cc_jit_symbol(void *handle, const char *name) {
    return dlsym(handle, name);
}

static void cc_jit_release(void *handle) {
    dlclose(handle);
}

const JitBackend jit_cc = {"cc", "the system C compiler (-O3 -march=native) to a cached shared object",
                           cc_jit_compile, cc_jit_symbol, cc_jit_release};
