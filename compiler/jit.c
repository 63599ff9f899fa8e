/*
 * jit.c: a model compiled and loaded in this process.  Needs: the planner
 * and a backend (jit_tcc.c, jit_cc.c).  Provides: the same function table
 * (gqa_model_api) that ahead-of-time code exports, so the runtime, gqac run
 * and gqac tune use JIT code exactly as they use a linked model.
 */
#include "gqac.h"
#include "gqa_api.h"

#include <stdlib.h>
#include <string.h>

struct JitModel {
    const JitBackend *backend;
    void *handle;
    double seconds;
};

#if GQAC_LLVM
static const JitBackend *const all[] = {&jit_tcc, &jit_cc, &jit_llvm};
#else
static const JitBackend *const all[] = {&jit_tcc, &jit_cc};
#endif

const JitBackend *jit_backend(const char *name) {
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (!strcmp(name, all[i]->name))
            return all[i];
    return NULL;
}

const char *jit_names(void) {
    return GQAC_LLVM ? "tcc, cc or llvm" : "tcc or cc";
}

const char *jit_default(void) {
    return GQAC_LLVM ? "llvm" : "cc";
}

const char *jit_unavailable(const char *name) {
    if (jit_backend(name))
        return NULL;
    if (!strcmp(name, "llvm"))
        return "the llvm JIT is not built into this gqac: install LLVM 14's libraries (Debian: llvm-14-dev "
               "libclang-14-dev libclang-cpp14-dev libomp-14-dev, or as root sh tools/deps.sh llvm) and "
               "rebuild gqac with make LLVM=1";
    return GQAC_LLVM ? "the JIT backends are tcc, cc and llvm" : "the JIT backends are tcc and cc";
}

/* Plans m with opt, compiles it with b and checks the model table. */
static JitModel *compile(const Model *m, const JitBackend *b, CodeOptions opt, const gqa_model_api **api,
                         char *err, size_t errlen) {
    double t0 = now_seconds();
    Arena *a = arena_new();
    Plan p;
    plan_model(m, "model", opt, &p, a);
    if (plan_check(&p)) {
        snprintf(err, errlen, "internal error: the plan's %s is out of its C type's range: a gqac bug",
                 plan_check(&p));
        arena_free(a);
        return NULL;
    }
    void *handle = b->compile(&p, a, err, errlen);
    arena_free(a);
    if (!handle)
        return NULL;
    const gqa_model_api *t = b->symbol(handle, "model_api");
    if (!t || t->version != GQA_API_VERSION) {
        snprintf(err, errlen, "%s JIT: the compiled code has %s (gqac expects API version %d)",
                 b->name, t ? "another API version" : "no model_api table", GQA_API_VERSION);
        b->release(handle);
        return NULL;
    }
    JitModel *j = malloc(sizeof *j);
    if (!j) {
        snprintf(err, errlen, "out of memory");
        b->release(handle);
        return NULL;
    }
    *j = (JitModel){b, handle, now_seconds() - t0};
    *api = t;
    return j;
}

JitModel *jit_compile(const Model *m, const JitBackend *b, const gqa_model_api **api, char *err,
                      size_t errlen) {
    return compile(m, b, (CodeOptions){0}, api, err, errlen);
}

JitModel *jit_compile_rank(const Model *m, const JitBackend *b, int ranks, int rank, const gqa_model_api **api,
                           char *err, size_t errlen) {
    Model local;
    ShardPlan sp;
    if (ranks > 1 && !ir_shard(m, ranks, rank, &local, &sp, err, errlen))
        return NULL;
    return compile(m, b, (CodeOptions){.ranks = ranks, .rank = rank}, api, err, errlen);
}

JitModel *jit_compile_train(const Model *m, const JitBackend *b, const gqa_model_api **api,
                            const gqa_train_api **train, char *err, size_t errlen) {
    const char *why = train_unsupported(m);
    if (why) {
        snprintf(err, errlen, "gqac train: %s: %s", m->name, why);
        return NULL;
    }
    Model f32 = ir_with_f32(m); /* training is done on f32 weights */
    JitModel *j = compile(&f32, b, (CodeOptions){.train = true}, api, err, errlen);
    if (!j)
        return NULL;
    const gqa_train_api *t = b->symbol(j->handle, "model_train_api");
    if (!t || t->version != GQA_TRAIN_API_VERSION) {
        snprintf(err, errlen, "%s JIT: the compiled code has %s (gqac expects training API version %d)",
                 b->name, t ? "another training API version" : "no model_train_api table",
                 GQA_TRAIN_API_VERSION);
        jit_free(j);
        return NULL;
    }
    *train = t;
    return j;
}

JitPhases jit_phases(const JitModel *j) {
    JitPhases t = j->backend->phases ? j->backend->phases(j->handle) : (JitPhases){0};
    t.total = j->seconds;
    return t;
}

void jit_free(JitModel *j) {
    if (j)
        j->backend->release(j->handle);
    free(j);
}
