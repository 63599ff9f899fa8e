/*
 * test_jit.c: the JIT backends and gqac tune's weight conversion.
 *
 *   - tcc, cc and llvm JIT code give the logits of the ahead-of-time code
 *     on the same weights (max |diff| / max |logit| <= 1e-5; cc and llvm
 *     -O3 for this CPU may vectorize differently, tcc does not optimize);
 *     llvm compiles from two threads at once; without LLVM built in,
 *     --jit llvm says how to get it;
 *   - a compile error in generated code names the backend and keeps the
 *     source (a bad GQAC_TCC_LIB, a missing compiler: clear errors);
 *   - the cache: a run that loses the race to publish an entry keeps the
 *     winner's and removes its own staging folder; a root that others can
 *     write is refused; a planted, cut-off or missing program (or object)
 *     is rebuilt, never run; a missing or failing compiler is named; a
 *     full disk (a file size limit) leaves nothing half-written;
 *   - the mean-pooling conversion: identity at the original kv_heads; at
 *     other groupings the GQA variant equals the MHA model whose K and V
 *     heads were each replaced by their group's mean (an independent
 *     construction here, run through the MHA code path);
 *   - gqac tune end to end on the tiny models: table, JSON, CSV and SVG
 *     written and well-formed, --emit's files compile and load; bad
 *     arguments give exit status 2 and a message, missing weights 1.
 */
#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cunit_run.h"
#include "gqac.h"
#include "gqa_api.h"
#include "gqr.h"
#include "tiny.h"
#include "tiny_mha.h"
#include "testing.h"
#include "load_model.h"

extern const gqa_model_api qmix_api; /* tests/models/qmix.gqa, built ahead of time */
extern const gqa_model_api swa_mix_api; /* tests/models/swa_mix.gqa: q8_0 cache, windows */
extern const gqa_model_api swa_f16_api; /* tests/models/swa_f16.gqa: f16 cache, all windowed */

enum { N_POS = 16 };

static const char *gqac;

/* Logits of N_POS positions of a fixed token sequence. */
static float *logits_of(const gqa_model_api *api, const float *w) {
    int V = api->shape.vocab_size;
    float *out = malloc(sizeof *out * (size_t)(N_POS * V));
    void *arena = gqr_arena_alloc(api);
    gqa_state *s;
    CU_ASSERT_FATAL(out && arena && api->init(&s, arena, api->arena_bytes, w, api->weight_bytes) == GQA_OK);
    for (int pos = 0; pos < N_POS; pos++)
        CU_ASSERT(api->forward(s, (pos * 37 + 3) % V, pos, out + (size_t)pos * V) == GQA_OK);
    gqr_arena_free(arena);
    return out;
}

/* ---- the backends ---- */

static void check_backend(const char *name) {
    Arena *a = arena_new();
    Model m;
    CU_ASSERT_FATAL(load_model("examples/tiny.gqa", &m, a));
    const gqa_model_api *api;
    char err[1024] = "";
    JitModel *j = jit_compile(&m, jit_backend(name), &api, err, sizeof err);
    if (!j)
        printf("\n  %s\n", err);
    CU_ASSERT_FATAL(j != NULL);
    CU_ASSERT_EQUAL(api->weight_bytes, tiny_api.weight_bytes);
    CU_ASSERT_EQUAL(api->arena_bytes, tiny_api.arena_bytes);
    gqr_checkpoint ck;
    CU_ASSERT_FATAL(gqr_checkpoint_open(&ck, "build/gen/tiny.bin", api, err, sizeof err) == 0);
    float *want = logits_of(&tiny_api, ck.weights), *got = logits_of(api, ck.weights);
    double d = test_rel_diff(got, want, (size_t)N_POS * (size_t)api->shape.vocab_size);
    printf(" [%s: %.2g] ", name, d);
    CU_ASSERT(d <= 1e-5);
    free(want), free(got);
    gqr_checkpoint_close(&ck);
    jit_free(j);
    arena_free(a);
}

/* The model of every weight type through a backend (cc: -march=native,
 * the AVX2 / AVX-512 VNNI kernels where the host has them; tcc: portable
 * C) against its ahead-of-time build (portable C): decode logits at each
 * position, and a prompt's (the prefill tiles).  The two paths add the
 * same integer block sums in another float order, and the int8 rounding
 * of a later product can flip on a last bit (test_model.c's
 * QUANT_TOLERANCE), so the tolerance is that one; a kernel that read a
 * block wrong is off by ~100%. */
static void check_quantized(const char *name) {
    Arena *a = arena_new();
    Model m;
    CU_ASSERT_FATAL(load_model("tests/models/qmix.gqa", &m, a));
    const gqa_model_api *api;
    char err[1024] = "";
    JitModel *j = jit_compile(&m, jit_backend(name), &api, err, sizeof err);
    if (!j)
        printf("\n  %s\n", err);
    CU_ASSERT_FATAL(j != NULL);
    CU_ASSERT_EQUAL_FATAL(api->weight_bytes, qmix_api.weight_bytes);
    gqr_checkpoint ck;
    CU_ASSERT_FATAL(gqr_checkpoint_open(&ck, "build/gen/qmix.bin", api, err, sizeof err) == 0);
    float *want = logits_of(&qmix_api, ck.weights), *got = logits_of(api, ck.weights);
    size_t V = (size_t)api->shape.vocab_size;
    double d = test_rel_diff(got, want, (size_t)N_POS * V);
    int tokens[40];
    for (int i = 0; i < 40; i++)
        tokens[i] = (i * 37 + 3) % (int)V;
    const gqa_model_api *both[2] = {&qmix_api, api};
    float *last[2];
    for (int k = 0; k < 2; k++) {
        void *arena = gqr_arena_alloc(both[k]);
        gqa_state *s;
        last[k] = malloc(sizeof(float) * V);
        CU_ASSERT_FATAL(both[k]->init(&s, arena, both[k]->arena_bytes, ck.weights, both[k]->weight_bytes) == 0);
        CU_ASSERT(both[k]->forward_batch(s, tokens, 40, 0, last[k]) == GQA_OK);
        gqr_arena_free(arena);
    }
    double db = test_rel_diff(last[1], last[0], V);
    printf(" [%s: %.2g, prompt %.2g] ", name, d, db);
    CU_ASSERT(d <= 6e-2 && db <= 6e-2);
    free(want), free(got), free(last[0]), free(last[1]);
    gqr_checkpoint_close(&ck);
    jit_free(j);
    arena_free(a);
}

/* The logits of decode at positions 0 .. n-1 (n rows), then of a prompt
 * of the same n tokens from position 0 (one more row). */
static float *window_logits(const gqa_model_api *api, const float *w, int n) {
    size_t V = (size_t)api->shape.vocab_size;
    float *out = malloc(sizeof *out * (size_t)(n + 1) * V);
    int *tokens = malloc(sizeof *tokens * (size_t)n);
    void *arena = gqr_arena_alloc(api);
    gqa_state *s;
    CU_ASSERT_FATAL(out && tokens && arena && api->init(&s, arena, api->arena_bytes, w, api->weight_bytes) == 0);
    for (int pos = 0; pos < n; pos++) {
        tokens[pos] = (pos * 37 + 3) % (int)V;
        CU_ASSERT(api->forward(s, tokens[pos], pos, out + (size_t)pos * V) == GQA_OK);
    }
    CU_ASSERT(api->forward_batch(s, tokens, n, 0, out + (size_t)n * V) == GQA_OK);
    gqr_arena_free(arena);
    free(tokens);
    return out;
}

/* A model with windows of 40 through a backend against its ahead-of-time
 * build, over 300 positions (each ring wraps twice; swa_f16 past its
 * context of 256) and a prompt as long: swa_mix, a q8_0 cache, 4 sinks
 * and a global layer; swa_f16, an f16 cache, which cc's -march=native
 * converts with F16C or AVX-512 where the AOT build (portable) takes
 * integer operations.  cc may also contract a product into an FMA, which
 * moves the last bit of a K or V and so, rarely, the step a typed cache
 * rounds it to: the tolerance is test_model's for a q8_0 cache against
 * its own rounding (own_tolerance); a wrong ring slot or mask is off by
 * ~100%. */
static void check_windowed(const char *name, const char *stem, const gqa_model_api *aot) {
    enum { N = 300 };
    Arena *a = arena_new();
    Model m;
    char path[256];
    snprintf(path, sizeof path, "tests/models/%s.gqa", stem);
    CU_ASSERT_FATAL(load_model(path, &m, a));
    const gqa_model_api *api;
    char err[1024] = "";
    JitModel *j = jit_compile(&m, jit_backend(name), &api, err, sizeof err);
    if (!j)
        printf("\n  %s\n", err);
    CU_ASSERT_FATAL(j != NULL);
    CU_ASSERT_EQUAL_FATAL(api->weight_bytes, aot->weight_bytes);
    CU_ASSERT_EQUAL(api->kv_cache_bytes, aot->kv_cache_bytes);
    CU_ASSERT(api->shape.kv_type == aot->shape.kv_type && api->shape.window == 40);
    CU_ASSERT(api->shape.max_positions == aot->shape.max_positions && api->shape.max_positions >= N);
    gqr_checkpoint ck;
    snprintf(path, sizeof path, "build/gen/%s.bin", stem);
    CU_ASSERT_FATAL(gqr_checkpoint_open(&ck, path, api, err, sizeof err) == 0);
    float *want = window_logits(aot, ck.weights, N), *got = window_logits(api, ck.weights, N);
    size_t V = (size_t)api->shape.vocab_size;
    double d = test_rel_diff(got, want, N * V), db = test_rel_diff(got + N * V, want + N * V, V);
    printf(" [%s %s: %.2g, prompt %.2g] ", name, stem, d, db);
    CU_ASSERT(d <= 5e-3 && db <= 5e-3);
    free(want), free(got);
    gqr_checkpoint_close(&ck);
    jit_free(j);
    arena_free(a);
}

static void test_tcc(void) { check_backend("tcc"); }
static void test_windowed_cc(void) {
    check_windowed("cc", "swa_mix", &swa_mix_api);
    check_windowed("cc", "swa_f16", &swa_f16_api);
}
static void test_windowed_tcc(void) {
    check_windowed("tcc", "swa_mix", &swa_mix_api);
    check_windowed("tcc", "swa_f16", &swa_f16_api);
}
static void test_quantized_cc(void) { check_quantized("cc"); }

static const char *tiny_weights = "--weights build/gen/tiny.bin -n 4 --temp 0";

/* ---- the llvm backend, where gqac was built with it ---- */
#if GQAC_LLVM

static void test_llvm(void) { check_backend("llvm"); }
static void test_quantized_llvm(void) { check_quantized("llvm"); }
static void test_windowed_llvm(void) {
    check_windowed("llvm", "swa_mix", &swa_mix_api);
    check_windowed("llvm", "swa_f16", &swa_f16_api);
}

/* One thread's compile of the tiny model, its logits in *out (or NULL). */
static void *compile_in_thread(void *out) {
    Arena *a = arena_new();
    Model m;
    const gqa_model_api *api;
    char err[1024];
    float **logits = out;
    JitModel *j = load_model("examples/tiny.gqa", &m, a) ? jit_compile(&m, &jit_llvm, &api, err, sizeof err) : NULL;
    gqr_checkpoint ck;
    *logits = j && gqr_checkpoint_open(&ck, "build/gen/tiny.bin", api, err, sizeof err) == 0
                  ? logits_of(api, ck.weights) : NULL;
    if (*logits)
        gqr_checkpoint_close(&ck);
    jit_free(j);
    arena_free(a);
    return NULL;
}

/* Compilations need no lock: two at once give the AOT code's logits. */
static void test_llvm_threads(void) {
    pthread_t t[2];
    float *got[2];
    for (int i = 0; i < 2; i++)
        CU_ASSERT_FATAL(pthread_create(&t[i], NULL, compile_in_thread, &got[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    gqr_checkpoint ck;
    char err[256];
    CU_ASSERT_FATAL(gqr_checkpoint_open(&ck, "build/gen/tiny.bin", &tiny_api, err, sizeof err) == 0);
    float *want = logits_of(&tiny_api, ck.weights);
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_FATAL(got[i] != NULL);
        CU_ASSERT(test_rel_diff(got[i], want, (size_t)N_POS * (size_t)tiny_api.shape.vocab_size) <= 1e-5);
        free(got[i]);
    }
    free(want);
    gqr_checkpoint_close(&ck);
}

/* clang's errors on the generated code (here a math.h that CPATH puts
 * first, as a broken emitter would) name the backend and clang's message
 * and keep the source; gqac run --jit llvm says the same, exit status 1;
 * so does a link that misses a symbol, with ORC's report of it. */
static void test_llvm_errors(void) {
    Arena *a = arena_new();
    Model m;
    CU_ASSERT_FATAL(load_model("examples/tiny.gqa", &m, a));
    const gqa_model_api *api;
    char err[1024] = "";
    CU_ASSERT_FATAL(test_sh("mkdir -p %s && echo '#error planted' > %s/math.h", test_tmp("inc"), test_tmp("inc")) == 0);
    setenv("CPATH", test_tmp("inc"), 1);
    setenv("TMPDIR", test_dir(), 1); /* where the source is kept */
    CU_ASSERT(jit_compile(&m, &jit_llvm, &api, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "llvm JIT: clang failed on the generated code") != NULL);
    CU_ASSERT(strstr(err, "math.h:1:2: error: planted") != NULL);
    CU_ASSERT(strstr(err, "the source is kept in /") != NULL);
    CU_ASSERT_EQUAL(test_sh("%s run examples/tiny.gqa --jit llvm %s > /dev/null 2> %s", gqac, tiny_weights,
                            test_tmp("err")), 1);
    CU_ASSERT_EQUAL(test_sh("grep -q 'gqac: error: llvm JIT: clang failed.*planted.*kept in /' %s",
                            test_tmp("err")), 0);
    /* a function that links to nothing (math.h's expf renamed) fails in
     * code generation and linking, and says so the same way */
    CU_ASSERT_FATAL(test_sh("printf '#include_next <math.h>\\nfloat gq_planted(float);\\n#define expf gq_planted\\n' "
                            "> %s/math.h", test_tmp("inc")) == 0);
    CU_ASSERT(jit_compile(&m, &jit_llvm, &api, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "llvm JIT: code generation or linking failed") != NULL);
    CU_ASSERT(strstr(err, "gq_planted") != NULL);
    CU_ASSERT(strstr(err, "the generated source is kept in /") != NULL);
    unsetenv("CPATH");
    unsetenv("TMPDIR");
    /* and the same command without the planted header runs */
    CU_ASSERT_EQUAL(test_sh("%s run examples/tiny.gqa --jit llvm %s > /dev/null 2> %s", gqac, tiny_weights,
                            test_tmp("err")), 0);
    arena_free(a);
}
#endif
static void test_quantized_tcc(void) { check_quantized("tcc"); }
static void test_cc(void) { check_backend("cc"); }

static void test_backend_errors(void) {
    Arena *a = arena_new();
    Model m;
    CU_ASSERT_FATAL(load_model("examples/tiny.gqa", &m, a));
    const gqa_model_api *api;
    char err[1024] = "";
    if (!jit_backend("llvm")) {
        CU_ASSERT(strstr(jit_unavailable("llvm"), "make LLVM=1") != NULL);
        CU_ASSERT_EQUAL(test_sh("%s run examples/tiny.gqa --jit llvm --weights x 2> %s", gqac, test_tmp("err")), 2);
        CU_ASSERT_EQUAL(test_sh("grep -q 'not built into this gqac' %s", test_tmp("err")), 0);
    }
    CU_ASSERT(jit_backend("gcc") == NULL && strstr(jit_unavailable("gcc"), "backends are tcc") != NULL);
    setenv("GQAC_TCC_LIB", test_dir(), 1);
    CU_ASSERT(jit_compile(&m, &jit_tcc, &api, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "libtcc1.a is not in") != NULL);
    unsetenv("GQAC_TCC_LIB");
    setenv("CC", "/nonexistent/cc", 1);
    setenv("GQAC_CACHE", test_tmp("cache"), 1);
    CU_ASSERT(jit_compile(&m, &jit_cc, &api, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "cannot run the C compiler '/nonexistent/cc'") != NULL);
    CU_ASSERT(strstr(err, "or name another with CC") != NULL);
    /* a compiler that rejects everything stands for a broken emitter: its
     * status told, the source kept outside the cache, no staging left */
    setenv("CC", "false", 1);
    setenv("TMPDIR", test_dir(), 1); /* where the source is kept */
    CU_ASSERT(jit_compile(&m, &jit_cc, &api, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "'false' failed with exit status 1") != NULL);
    CU_ASSERT(strstr(err, "the generated source is kept in /") != NULL);
    CU_ASSERT_EQUAL(test_sh("test -z \"$(ls -A %s)\"", test_tmp("cache")), 0);
    unsetenv("CC");
    unsetenv("GQAC_CACHE");
    unsetenv("TMPDIR");
    arena_free(a);
}

/* The cache's publish: the first run's entry is renamed into place; a
 * run that loses the race to a concurrent one keeps that one's entry and
 * leaves no staging folder behind. */
static void test_cache_publish(void) {
    Arena *a = arena_new();
    Buf first = {0}, second = {0};
    buf_puts(&first, "first");
    buf_puts(&second, "second");
    char *dir = arena_printf(a, "%s/entry", test_tmp("publish"));
    CU_ASSERT_FATAL(cache_make_dirs(arena_printf(a, "%s", test_tmp("publish"))));
    char *tmp = cache_stage(dir, a), *tmp2;
    CU_ASSERT_FATAL(tmp != NULL);
    CU_ASSERT(cache_write_file(arena_printf(a, "%s/model.c", tmp), &first));
    CU_ASSERT(cache_seal(tmp, "model.c", a));
    CU_ASSERT(cache_publish(tmp, dir, "model.c", a));
    CU_ASSERT(access(tmp, F_OK) != 0);
    /* the loser: the same name staged again (as another process would) */
    tmp2 = cache_stage(dir, a);
    CU_ASSERT_FATAL(tmp2 != NULL);
    CU_ASSERT(cache_write_file(arena_printf(a, "%s/model.c", tmp2), &second));
    CU_ASSERT(cache_write_file(arena_printf(a, "%s/model.so", tmp2), &second));
    CU_ASSERT(cache_seal(tmp2, "model.c", a));
    CU_ASSERT(cache_publish(tmp2, dir, "model.c", a));
    CU_ASSERT(access(tmp2, F_OK) != 0);
    FILE *f = fopen(arena_printf(a, "%s/model.c", dir), "r");
    char got[16] = "";
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fgets(got, sizeof got, f) != NULL);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(got, "first");
    /* a failure that is not a lost race is reported */
    CU_ASSERT(!cache_publish(arena_printf(a, "%s/none", test_tmp("publish")), dir, "model.c", a));
    buf_free(&first);
    buf_free(&second);
    arena_free(a);
}

/* The root must be the user's own and writable by no one else: gqac runs
 * what it finds there.  A missing one is made 0700, parents included. */
static void test_cache_root(void) {
    Arena *a = arena_new();
    char err[1024] = "";
    const char *root = test_tmp("root/a/b");
    setenv("GQAC_CACHE", root, 1);
    CU_ASSERT(cache_root(a, err, sizeof err) != NULL);
    CU_ASSERT_EQUAL(test_sh("test \"$(stat -c %%a %s %s)\" = \"700\n700\"", test_tmp("root/a"), root), 0);
    test_sh("chmod 770 %s", root);
    CU_ASSERT(cache_root(a, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "is writable by its group (mode 0770)") != NULL);
    test_sh("chmod 703 %s", root);
    CU_ASSERT(cache_root(a, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "writable by other users") != NULL);
    test_sh("chmod 700 %s", root);
    if (geteuid() == 0) {
        test_sh("chown 65534 %s", root);
        CU_ASSERT(cache_root(a, err, sizeof err) == NULL);
        CU_ASSERT(strstr(err, "owned by another user (uid 65534)") != NULL);
        test_sh("chown 0 %s && ln -s %s %s && chown -h 65534 %s", root, root, test_tmp("link"), test_tmp("link"));
        setenv("GQAC_CACHE", test_tmp("link"), 1);
        CU_ASSERT(cache_root(a, err, sizeof err) == NULL);
        CU_ASSERT(strstr(err, "a symbolic link owned by another user") != NULL);
    } else {
        printf(" [not root: other owners not tried] ");
    }
    /* cron, env -i: no shared folder under /tmp, the user's home instead */
    char *home = getenv("HOME") ? arena_printf(a, "%s", getenv("HOME")) : NULL;
    unsetenv("GQAC_CACHE"), unsetenv("XDG_CACHE_HOME"), unsetenv("HOME");
    root = cache_root(a, err, sizeof err);
    CU_ASSERT(root && strncmp(root, "/tmp/", 5) && strstr(root, "/.cache/gqac"));
    if (home)
        setenv("HOME", home, 1);
    arena_free(a);
}

/* gqac run of the tiny model in cache c with environment env and flags
 * jit: its exit status, its stderr in test_tmp("err"). */
static int run_in(const char *c, const char *env, const char *jit) {
    return test_sh("GQAC_CACHE=%s %s %s run examples/tiny.gqa %s %s > /dev/null 2> %s", c, env, gqac,
                   jit, tiny_weights, test_tmp("err"));
}

/* An entry is checked against its manifest before it is run: a planted,
 * cut-off or missing program is rebuilt, never run. */
static void test_run_entries(void) {
    const char *c = test_tmp("runcache");
    CU_ASSERT_EQUAL_FATAL(run_in(c, "", ""), 0);
    const char *prog = "$(ls -d %s/[0-9a-f]*)/model";
    char plant[512];
    snprintf(plant, sizeof plant, prog, c);
    CU_ASSERT_EQUAL(test_sh("printf '#!/bin/sh\\ntouch %s\\n' > %s && chmod +x %s", test_tmp("marker"),
                            plant, plant), 0);
    CU_ASSERT_EQUAL(run_in(c, "", ""), 0);
    CU_ASSERT(access(test_tmp("marker"), F_OK) != 0);
    CU_ASSERT_EQUAL(test_sh("head -c 4 %s | grep -q ELF", plant), 0);
    CU_ASSERT_EQUAL(test_sh("truncate -s 1000 %s", plant), 0);
    CU_ASSERT_EQUAL(run_in(c, "", ""), 0);
    CU_ASSERT_EQUAL(test_sh("rm %s", plant), 0);
    CU_ASSERT_EQUAL(run_in(c, "", ""), 0);
    CU_ASSERT_EQUAL(test_sh("test $(ls %s | wc -l) = 1", c), 0); /* no staging folder left */
    /* the cc JIT's object likewise, in a fresh process each time */
    CU_ASSERT_EQUAL(run_in(c, "", "--jit cc"), 0);
    CU_ASSERT_EQUAL(test_sh("f=$(ls -d %s/jit-*)/model.so && head -c 1000 $f > %s && mv %s $f",
                            c, test_tmp("so"), test_tmp("so")), 0);
    CU_ASSERT_EQUAL(run_in(c, "", "--jit cc"), 0);
}

/* A missing or failing compiler is named, with what to do; nothing of the
 * build stays in the cache. */
static void test_run_compiler(void) {
    const char *c = test_tmp("cccache");
    CU_ASSERT_EQUAL(run_in(c, "CC=/nonexistent/cc", ""), 1);
    CU_ASSERT_EQUAL(test_sh("grep -q \"cannot run the C compiler '/nonexistent/cc': No such file.*CC=\" %s",
                            test_tmp("err")), 0);
    char env[600];
    snprintf(env, sizeof env, "CC=false TMPDIR=%s", test_dir());
    CU_ASSERT_EQUAL(run_in(c, env, ""), 1);
    CU_ASSERT_EQUAL(test_sh("grep -q \"'false' failed with exit status 1.*kept in /\" %s", test_tmp("err")), 0);
    CU_ASSERT_EQUAL(test_sh("grep -q 'gqac bug' %s", test_tmp("err")), 0);
    CU_ASSERT_EQUAL(test_sh("test -z \"$(ls -A %s)\"", c), 0);
}

/* A full disk, faked with a file size limit (writes fail with EFBIG once
 * SIGXFSZ is ignored): gqac's own writes fail at 0 blocks, the
 * compiler's at 400; no staging folder, no empty file stays. */
static void test_run_full_disk(void) {
    const char *c = test_tmp("fullcache");
    char env[600];
    snprintf(env, sizeof env, "TMPDIR=%s", test_dir());
    for (int blocks = 0; blocks <= 400; blocks += 400) {
        /* stderr and the status through a pipe, which the limit spares */
        test_sh("(trap '' XFSZ; ulimit -f %d; GQAC_CACHE=%s %s %s run examples/tiny.gqa %s > /dev/null; "
                "echo \"status $?\") 2>&1 | cat > %s", blocks, c, env, gqac, tiny_weights, test_tmp("err"));
        CU_ASSERT_EQUAL(test_sh("grep -q 'File too large' %s && grep -q 'status 1' %s", test_tmp("err"),
                                test_tmp("err")), 0);
        CU_ASSERT_EQUAL(test_sh("test -z \"$(ls -A %s)\"", c), 0);
        CU_ASSERT_EQUAL(test_sh("test -z \"$(find %s -path '*gqac-source-*' -empty)\"", test_dir()), 0);
    }
}

/* ---- the conversion ---- */

/* The independent construction: MHA weights whose K and V heads are
 * their group's mean, repeated G times. */
static void pool_in_place(const Model *m, float *w, int kv) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t total;
    int n = ir_tensors(m, t, &total);
    int64_t G = m->kv_heads / kv, hd = m->head_dim;
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].name, "wk") && strcmp(t[i].name, "wv"))
            continue;
        for (int64_t l = 0; l < m->layers; l++)
            for (int64_t g = 0; g < kv; g++)
                for (int64_t e = 0; e < hd * m->dim; e++) {
                    float *base = w + t[i].offset + (uint64_t)((l * m->kv_heads + g * G) * hd * m->dim + e);
                    double sum = 0;
                    for (int64_t k = 0; k < G; k++)
                        sum += base[k * hd * m->dim];
                    for (int64_t k = 0; k < G; k++)
                        base[k * hd * m->dim] = (float)(sum / (double)G);
                }
    }
}

static void test_conversion(void) {
    Arena *a = arena_new();
    Model mha;
    CU_ASSERT_FATAL(load_model("examples/tiny-mha.gqa", &mha, a));
    gqr_checkpoint ck;
    char err[512];
    CU_ASSERT_FATAL(gqr_checkpoint_open(&ck, "build/gen/tiny_mha.bin", &tiny_mha_api, err, sizeof err) == 0);
    size_t nw = tiny_mha_api.weight_bytes / 4, V = (size_t)mha.vocab;
    float *same = malloc(nw * sizeof *same), *pooled = malloc(nw * sizeof *pooled);
    tune_convert(&mha, ck.weights, &mha, same);
    CU_ASSERT(memcmp(same, ck.weights, nw * sizeof *same) == 0);
    float *want_mha = logits_of(&tiny_mha_api, ck.weights);
    for (int kv = 4; kv >= 1; kv /= 2) {
        Model var = mha;
        var.kv_heads = kv;
        const gqa_model_api *api;
        JitModel *j = jit_compile(&var, &jit_tcc, &api, err, sizeof err);
        CU_ASSERT_FATAL(j != NULL);
        float *w = malloc(api->weight_bytes);
        tune_convert(&mha, ck.weights, &var, w);
        memcpy(pooled, ck.weights, nw * sizeof *pooled);
        pool_in_place(&mha, pooled, kv);
        float *got = logits_of(api, w), *want = logits_of(&tiny_mha_api, pooled);
        double d = test_rel_diff(got, want, N_POS * V);
        printf(" [kv %d: %.2g]", kv, d);
        CU_ASSERT(d <= 1e-5);
        CU_ASSERT(test_rel_diff(got, want_mha, N_POS * V) > 1e-3); /* pooling did change the model */
        free(got), free(want), free(w);
        jit_free(j);
    }
    free(want_mha), free(same), free(pooled);
    gqr_checkpoint_close(&ck);
    arena_free(a);
}

/* A q8_0 variant's weights from tune_pack against the same pooled floats
 * written as a Q8_0 GGUF by the runtime's writer and loaded by its loader
 * for the q8_0 code (names, not tune's offsets, place each tensor): equal
 * logits, at the original kv_heads and a pooled one.  tiny-mha with
 * hidden 192, so that every row is whole blocks of 32. */
static void test_pack_q8_0(void) {
    const char *gqa = test_tmp("q8.gqa"), *w = test_tmp("q8w.bin"), *gguf = test_tmp("q8.gguf");
    CU_ASSERT_FATAL(test_sh("sed 's/hidden = 176/hidden = 192/' examples/tiny-mha.gqa > %s && "
                            "%s weights --random %s -o %s --seed 7", gqa, gqac, gqa, w) == 0);
    Arena *a = arena_new();
    Model mha;
    CU_ASSERT_FATAL(load_model(gqa, &mha, a));
    char err[512];
    const gqa_model_api *f32;
    JitModel *jf = jit_compile(&mha, &jit_tcc, &f32, err, sizeof err);
    gqr_checkpoint ck;
    CU_ASSERT_FATAL(jf && gqr_checkpoint_open(&ck, w, f32, err, sizeof err) == 0);
    float *pooled = malloc(f32->weight_bytes), *scratch = malloc(f32->weight_bytes);
    for (int kv = 8; kv >= 2; kv /= 4) {
        Model fv = mha, qv;
        fv.kv_heads = kv;
        qv = fv;
        qv.weight_type = DT_Q8_0;
        const gqa_model_api *fapi, *qapi;
        JitModel *jv = jit_compile(&fv, &jit_tcc, &fapi, err, sizeof err);
        JitModel *jq = jit_compile(&qv, &jit_tcc, &qapi, err, sizeof err);
        CU_ASSERT_FATAL(jv && jq);
        unsigned char *packed = malloc(qapi->weight_bytes);
        CU_ASSERT_FATAL(tune_pack(&mha, ck.weights, &qv, qapi, scratch, packed, a, err, sizeof err) == 0);
        tune_convert(&mha, ck.weights, &fv, pooled);
        gqr_write_opts o = {.dtype = GQA_DT_Q8_0}; /* GQR_DT_* numbers as GQA_DT_* */
        gqr_checkpoint qk;
        CU_ASSERT_FATAL(gqr_convert_write_opts(gguf, GQR_FORMAT_GGUF, &o, fapi, pooled, err, sizeof err) == 0);
        CU_ASSERT_FATAL(gqr_checkpoint_open(&qk, gguf, qapi, err, sizeof err) == 0 &&
                        gqr_checkpoint_pack(&qk, qapi, err, sizeof err) == 0);
        float *got = logits_of(qapi, (const float *)(const void *)packed);
        float *want = logits_of(qapi, qk.weights);
        double d = test_rel_diff(got, want, N_POS * (size_t)mha.vocab);
        printf(" [kv %d: %.2g]", kv, d);
        CU_ASSERT(d == 0);
        free(got), free(want), free(packed);
        gqr_checkpoint_close(&qk);
        jit_free(jv), jit_free(jq);
    }
    free(pooled), free(scratch);
    gqr_checkpoint_close(&ck);
    jit_free(jf);
    arena_free(a);
}

/* ---- gqac tune ---- */

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

static void test_tune(void) {
    CU_ASSERT_EQUAL(test_sh("%s weights --random examples/tiny-mha.gqa -o %s --seed 5", gqac, test_tmp("w.bin")), 0);
    /* random weights, real text: the fortune tokenizer has the tiny model's 512 ids */
    int rc = test_sh("GQAC_CACHE=%s %s tune examples/tiny-mha.gqa --weights %s --kv-heads 1,2,4 "
                "--context 16,64 --runs 3 --eval examples/fortune/eval.txt "
                "--tokenizer examples/fortune/tokenizer.bin --eval-tokens 300 --jit tcc "
                "--max-ppl-increase 50%% --out %s --emit %s > %s",
                test_tmp("cache"), gqac, test_tmp("w.bin"), test_tmp("t"), test_tmp("emit"), test_tmp("table.txt"));
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    cJSON *j = test_read_json(test_tmp("t.json"));
    CU_ASSERT_FATAL(j != NULL);
    cJSON *vars = cJSON_GetObjectItem(j, "variants");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(vars), 4); /* 8 (the original), 4, 2, 1 */
    const cJSON *v;
    int pareto = 0;
    cJSON_ArrayForEach(v, vars) {
        double ppl = cJSON_GetObjectItem(v, "perplexity")->valuedouble;
        CU_ASSERT(ppl > 1 && ppl < 1e6);
        pareto += cJSON_IsTrue(cJSON_GetObjectItem(v, "pareto"));
    }
    CU_ASSERT(pareto >= 1);
    cJSON_Delete(j);
    CU_ASSERT_EQUAL(count_lines(test_tmp("t.csv")), 5);
    CU_ASSERT_EQUAL(test_sh("grep -q '</svg>' %s && grep -c '<circle' %s > /dev/null", test_tmp("t.svg"), test_tmp("t.svg")), 0);
    CU_ASSERT_EQUAL(test_sh("grep -q 'kv_heads' %s", test_tmp("table.txt")), 0);
    /* cc, two threads: libgomp's workers outlive each released variant */
    CU_ASSERT_EQUAL(test_sh("GQAC_CACHE=%s %s tune examples/tiny-mha.gqa --weights %s --kv-heads 4 "
                       "--context 8,200 --runs 2 --threads 2 --jit cc --out %s > /dev/null",
                       test_tmp("cache"), gqac, test_tmp("w.bin"), test_tmp("cc")), 0);
    CU_ASSERT_EQUAL(count_lines(test_tmp("cc.csv")), 3);
    /* what --emit wrote compiles and its weights load */
    CU_ASSERT_EQUAL(test_sh("for g in %s/*.gqa; do %s run \"$g\" --jit tcc --weights \"${g%%.gqa}.bin\" "
                       "-n 4 --temp 0 > /dev/null 2>&1 || exit 1; done", test_tmp("emit"), gqac), 0);
}

/* kv_heads x types over a Q8_0 GGUF that the f32 model (tiny-mha with
 * hidden 192: rows of whole 32-blocks) loads dequantized: the original is
 * f32 with the file's values (KL 0), and q8_0 of them is nearly those. */
static void test_tune_types(void) {
    const char *gqa = test_tmp("ty.gqa"), *w = test_tmp("ty.bin"), *gguf = test_tmp("ty.gguf");
    CU_ASSERT_FATAL(test_sh("sed 's/hidden = 176/hidden = 192/' examples/tiny-mha.gqa > %s && "
                            "%s weights --random %s -o %s --seed 5 && %s quantize %s -o %s --type q8_0 "
                            "--model %s > /dev/null", gqa, gqac, gqa, w, gqac, w, gguf, gqa) == 0);
    /* a plain run refuses Q8_0 matrices under the f32 model: the flag is tune's alone */
    CU_ASSERT_EQUAL(test_sh("GQAC_CACHE=%s %s run %s --jit tcc --weights %s -n 1 > /dev/null 2> %s",
                            test_tmp("cache"), gqac, gqa, gguf, test_tmp("e")), 1);
    int rc = test_sh("GQAC_CACHE=%s %s tune %s --weights %s --kv-heads 8,2 --types file,q8_0,f16 "
                     "--context 16,32 --runs 2 --eval examples/fortune/eval.txt "
                     "--tokenizer examples/fortune/tokenizer.bin --eval-tokens 100 --jit tcc "
                     "--out %s > %s", test_tmp("cache"), gqac, gqa, gguf, test_tmp("ty"), test_tmp("ty.txt"));
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    cJSON *j = test_read_json(test_tmp("ty.json"));
    CU_ASSERT_FATAL(j != NULL);
    cJSON *vars = cJSON_GetObjectItem(j, "variants");
    /* the original (8, f32) first, then kv_heads x types, each once */
    static const int kv[] = {8, 8, 8, 2, 2, 2};
    static const char *const type[] = {"f32", "q8_0", "f16", "f32", "q8_0", "f16"};
    CU_ASSERT_EQUAL_FATAL(cJSON_GetArraySize(vars), 6);
    for (int i = 0; i < 6; i++) {
        cJSON *v = cJSON_GetArrayItem(vars, i), *f32 = cJSON_GetArrayItem(vars, i / 3 * 3);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(v, "kv_heads")->valueint, kv[i]);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(v, "weights")->valuestring, type[i]);
        CU_ASSERT_EQUAL(cJSON_IsTrue(cJSON_GetObjectItem(v, "original")), i == 0);
        double kl = cJSON_GetObjectItem(v, "kl_divergence")->valuedouble;
        double bytes = cJSON_GetObjectItem(v, "weight_bytes")->valuedouble;
        CU_ASSERT(i != 0 || kl == 0);
        CU_ASSERT(i != 1 || kl < 1e-3); /* q8_0 of q8_0 values: int8 activations alone */
        CU_ASSERT(i % 3 == 0 || bytes < 0.6 * cJSON_GetObjectItem(f32, "weight_bytes")->valuedouble);
    }
    cJSON_Delete(j);
    CU_ASSERT_EQUAL(count_lines(test_tmp("ty.csv")), 7);
    CU_ASSERT_EQUAL(test_sh("head -1 %s | grep -q '^kv_heads,weights,' && grep -q '^2,q8_0,f32,4,' %s",
                            test_tmp("ty.csv"), test_tmp("ty.csv")), 0);
    CU_ASSERT_EQUAL(test_sh("grep -q '>kv2 q8_0<' %s", test_tmp("ty.svg")), 0);
    CU_ASSERT_EQUAL(test_sh("grep -q ' weights ' %s && grep -Eq ' 2 +4 +q8_0 ' %s", test_tmp("ty.txt"),
                            test_tmp("ty.txt")), 0);
}

static void test_tune_errors(void) {
    const char *w = test_tmp("w.bin");
    CU_ASSERT_EQUAL(test_sh("%s weights --random examples/tiny-mha.gqa -o %s --seed 5", gqac, w), 0);
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --weights %s --kv-heads 3 2> %s", gqac, w, test_tmp("e")), 2);
    CU_ASSERT_EQUAL(test_sh("grep -q 'must divide heads' %s", test_tmp("e")), 0);
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --kv-heads 2 2> %s", gqac, test_tmp("e")), 2);
    CU_ASSERT_EQUAL(test_sh("grep -q -- '--weights FILE is required' %s", test_tmp("e")), 0);
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --weights %s/none.bin --jit tcc 2> %s", gqac,
                       test_dir(), test_tmp("e")), 1);
    CU_ASSERT_EQUAL(test_sh("grep -q 'none.bin' %s", test_tmp("e")), 0);
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --weights %s --context 9999 2> %s", gqac, w, test_tmp("e")), 2);
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --weights %s --jit gcc 2> %s", gqac, w, test_tmp("e")), 2);
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --weights %s --eval x.txt 2> %s", gqac, w, test_tmp("e")), 2);
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --weights %s --types f32,q5_1 2> %s", gqac, w, test_tmp("e")), 2);
    CU_ASSERT_EQUAL(test_sh("grep -q -- \"--types wants .*not 'f32,q5_1'\" %s", test_tmp("e")), 0);
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --weights %s --types f32, 2> %s", gqac, w, test_tmp("e")), 2);
    /* 176-wide rows of ffn_down hold no 32-blocks */
    CU_ASSERT_EQUAL(test_sh("%s tune examples/tiny-mha.gqa --weights %s --types f16,q8_0 2> %s", gqac, w, test_tmp("e")), 2);
    CU_ASSERT_EQUAL(test_sh("grep -q \"q8_0: tensor 'w2' (ffn_down) has rows of 176 values, not whole "
                            "blocks of 32; the types every matrix of the model can hold: f32, f16, bf16$\" %s",
                            test_tmp("e")), 0);
}

int main(void) {
    gqac = test_gqac();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("jit", NULL, NULL);
    CU_add_test(s, "tcc: the AOT code's logits", test_tcc);
    CU_add_test(s, "cc: the AOT code's logits", test_cc);
    CU_add_test(s, "every weight type, cc (native) against AOT", test_quantized_cc);
    CU_add_test(s, "every weight type, tcc against AOT", test_quantized_tcc);
    CU_add_test(s, "typed caches, windows and sinks, cc (native) against AOT", test_windowed_cc);
    CU_add_test(s, "typed caches, windows and sinks, tcc against AOT", test_windowed_tcc);
    CU_add_test(s, "backend errors", test_backend_errors);
#if GQAC_LLVM
    CU_add_test(s, "llvm: the AOT code's logits", test_llvm);
    CU_add_test(s, "every weight type, llvm (native) against AOT", test_quantized_llvm);
    CU_add_test(s, "typed caches, windows and sinks, llvm (native) against AOT", test_windowed_llvm);
    CU_add_test(s, "llvm: two compilations at once", test_llvm_threads);
    CU_add_test(s, "llvm: clang's errors name the backend, keep the source", test_llvm_errors);
#else
    printf("test_jit: gqac is built without the llvm JIT (make LLVM=1): its tests do not run\n");
#endif
    CU_add_test(s, "cache: a lost publish leaves no staging folder", test_cache_publish);
    CU_add_test(s, "cache: the root is private", test_cache_root);
    CU_add_test(s, "cache: a damaged entry is rebuilt, never run", test_run_entries);
    CU_add_test(s, "run: a missing or failing compiler", test_run_compiler);
    CU_add_test(s, "run: a full disk leaves nothing half-written", test_run_full_disk);
    s = CU_add_suite("tune", NULL, NULL);
    CU_add_test(s, "mean-pooling against the MHA path", test_conversion);
    CU_add_test(s, "a q8_0 variant's weights as a Q8_0 GGUF loads them", test_pack_q8_0);
    CU_add_test(s, "gqac tune end to end", test_tune);
    CU_add_test(s, "gqac tune --types: kv_heads x types, a quantized GGUF", test_tune_types);
    CU_add_test(s, "bad arguments", test_tune_errors);
    return cunit_run();
}
