/*
 * jit_tcc.c: the tcc backend: libtcc compiles the generated C in memory in
 * milliseconds, without optimizing it (its timings are not the model's
 * speed).  Needs: libtcc.a (static, so it links into gqac, not into a
 * shared library), tcc's libtcc1.a and include folder in GQAC_TCC_LIB (set
 * at build time; $GQAC_TCC_LIB overrides it).
 *
 * libtcc keeps global state while it compiles, so compilations here take
 * a lock.  It ignores GCC vector extensions and OpenMP, which the emitter's
 * plain unrolled C does not need.
 */
#include "gqac.h"

#include <libtcc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef GQAC_TCC_LIB
#define GQAC_TCC_LIB "/usr/lib/x86_64-linux-gnu/tcc"
#endif

static pthread_mutex_t tcc_lock = PTHREAD_MUTEX_INITIALIZER;

static void collect(void *messages, const char *msg) {
    Buf *b = messages;
    if (b->len < 4000)
        buf_printf(b, "%s%s", b->len ? "; " : "", msg);
}

static const char *lib_dir(Arena *a, char *err, size_t errlen) {
    const char *dir = getenv("GQAC_TCC_LIB");
    dir = dir && *dir ? dir : GQAC_TCC_LIB;
    if (access(arena_printf(a, "%s/libtcc1.a", dir), R_OK) == 0)
        return dir;
    snprintf(err, errlen, "tcc JIT: tcc's runtime library libtcc1.a is not in %s (install tcc, "
             "or set GQAC_TCC_LIB to the folder that has it)", dir);
    return NULL;
}

/* Compiles and relocates under the lock; the state, or NULL with the
 * messages in msgs. */
static TCCState *build(const char *lib, const Buf *c, Buf *msgs) {
    pthread_mutex_lock(&tcc_lock);
    TCCState *s = tcc_new();
    bool ok = s != NULL;
    if (ok) {
        tcc_set_error_func(s, msgs, collect);
        tcc_set_lib_path(s, lib);
        tcc_set_options(s, "-Wall -Werror");
        ok = tcc_set_output_type(s, TCC_OUTPUT_MEMORY) == 0 && tcc_compile_string(s, c->data) == 0 &&
             tcc_add_library(s, "m") == 0 && tcc_relocate(s, TCC_RELOCATE_AUTO) >= 0;
    }
    if (!ok && s) {
        tcc_delete(s);
        s = NULL;
    }
    pthread_mutex_unlock(&tcc_lock);
    return s;
}

static void *tcc_jit_compile(const Plan *p, Arena *a, char *err, size_t errlen) {
    const char *lib = lib_dir(a, err, errlen);
    if (!lib)
        return NULL;
    Buf c = {0}, h = {0}, msgs = {0};
    emit_c_model(p, "model", NULL, false, &c, &h);
    TCCState *s = build(lib, &c, &msgs);
    if (!s)
        snprintf(err, errlen, "tcc JIT: tcc failed on the generated code, a gqac bug: %s; the "
                 "source is kept in %s", msgs.len ? msgs.data : "(no message)",
                 cache_keep_source(&c, NULL, a));
    buf_free(&c), buf_free(&h), buf_free(&msgs);
    return s;
}

static void *tcc_jit_symbol(void *handle, const char *name) {
    pthread_mutex_lock(&tcc_lock);
    void *sym = tcc_get_symbol(handle, name);
    pthread_mutex_unlock(&tcc_lock);
    return sym;
}

static void tcc_jit_release(void *handle) {
    pthread_mutex_lock(&tcc_lock);
    tcc_delete(handle);
    pthread_mutex_unlock(&tcc_lock);
}

const JitBackend jit_tcc = {"tcc", "libtcc in process: compiles in milliseconds, unoptimized code",
                            tcc_jit_compile, tcc_jit_symbol, tcc_jit_release, NULL};
