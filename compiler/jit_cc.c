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

/* cc FLAGS [-fopenmp] -o so src -lm: its exit status (cache_spawn's). */
static int run_cc(const char *so, const char *src, bool openmp, bool quiet) {
    char *with[] = {(char *)compiler(), CC_FLAGS, "-fopenmp", "-o", (char *)so, (char *)src, "-lm", NULL};
    char *without[] = {(char *)compiler(), CC_FLAGS, "-o", (char *)so, (char *)src, "-lm", NULL};
    return cache_spawn(openmp ? with : without, quiet);
}

/* Why the compiler did not build the object (rc from run_cc); the source
 * is kept for the report when the compiler ran. */
static void cc_failed(int rc, const Buf *c, Arena *a, char *err, size_t errlen) {
    if (rc == CACHE_NOT_RUN)
        snprintf(err, errlen, "cc JIT: cannot run the C compiler '%s': %s (install gcc or clang, "
                 "or name another with CC)", compiler(), strerror(errno));
    else
        snprintf(err, errlen, "cc JIT: the C compiler '%s' %s (its messages are above); the "
                 "generated source is kept in %s: if the messages are about it, that is a gqac bug",
                 compiler(), rc < 0 ? "was killed by a signal" : arena_printf(a, "failed with exit "
                 "status %d", rc), cache_keep_source(c, NULL, a));
}

/* Builds dir/model.so from c: staged, sealed and published (cache.c);
 * nothing of it stays on failure. */
static bool build(const char *dir, const Buf *c, Arena *a, char *err, size_t errlen) {
    char *tmp = cache_stage(dir, a);
    char *src = tmp ? arena_printf(a, "%s/model.c", tmp) : NULL;
    if (!tmp || !cache_write_file(src, c)) {
        snprintf(err, errlen, "cc JIT: cannot write beside %s: %s", dir, strerror(errno));
        if (tmp)
            cache_discard(tmp);
        return false;
    }
    char *so = arena_printf(a, "%s/model.so", tmp);
    /* Without OpenMP when the compiler has none: a quiet first try. */
    int rc = run_cc(so, src, true, true);
    if (rc != 0 && rc != CACHE_NOT_RUN)
        rc = run_cc(so, src, false, false);
    if (rc != 0) {
        int e = errno;
        cache_discard(tmp);
        errno = e;
        cc_failed(rc, c, a, err, errlen);
        return false;
    }
    if (!cache_seal(tmp, "model.so", a) || !cache_publish(tmp, dir, "model.so", a)) {
        snprintf(err, errlen, "cc JIT: cannot put the object in %s: %s", dir, strerror(errno));
        cache_discard(tmp);
        return false;
    }
    return true;
}

static void *cc_jit_compile(const Plan *p, Arena *a, char *err, size_t errlen) {
    const char *root = cache_root(a, err, errlen);
    if (!root)
        return NULL;
    Buf c = {0}, h = {0};
    emit_c_model(p, "model", NULL, false, &c, &h);
    uint64_t k = cache_hash_str(CACHE_SEED, GQAC_VERSION);
    k = cache_hash(k, c.data, c.len);
    k = cache_hash_strs(cache_hash_str(k, compiler()), key_flags, sizeof key_flags / sizeof *key_flags);
    k = cache_hash_cpu(k);
    char *dir = arena_printf(a, "%s/jit-%016llx", root, (unsigned long long)k);
    char *so = arena_printf(a, "%s/model.so", dir);
    void *handle = NULL;
    /* An entry whose object is missing or damaged is rebuilt, never
     * loaded. */
    if (cache_check(dir, "model.so", a) || build(dir, &c, a, err, errlen)) {
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
                           cc_jit_compile, cc_jit_symbol, cc_jit_release, NULL};
