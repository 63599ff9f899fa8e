/*
 * jit_bench.c: `make bench`'s JIT section.  For each backend built in
 * (tcc, cc, llvm) on the examples: the whole compile's seconds (llvm's
 * phases too: emit, clang's front end, the -O3 passes, code generation)
 * and the memory it leaves resident and peaks at; then the speed of the
 * 100M model's code from llvm against cc's (-O3 -march=native, gcc), in
 * the same run: decode at context 256 and a 128-token prompt, on 1 and 2
 * threads.  Each compile and each speed run is a child process of its
 * own (fresh memory figures; cc's libgomp and llvm's libomp never share
 * one), and speed runs alternate cc, llvm, cc, ... so noise falls on
 * both.  Figures are medians with their range.  Writes build/bench_jit.json
 * (or argv[1]).  Run it on a quiet machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "gqa_api.h"
#include "gqac.h"
#include "gqr.h"

enum { COMPILE_RUNS = 3, SPEED_ROUNDS = 5, STEPS = 15, CTX = 256, PROMPT = 128, MAX_RUNS = 8 };

static const struct {
    const char *name, *path;
} models[] = {{"tiny", "examples/tiny.gqa"},
              {"fortune", "examples/fortune.gqa"},
              {"100m", "bench/gqa-100m.gqa"},
              {"tinyllama", "examples/tinyllama-1.1b.gqa"}};
static const char *const backends[] = {"tcc", "cc", "llvm"};

/* One child's figures, sent back through a pipe. */
typedef struct {
    int ok;
    JitPhases t;
    double rss_mib, peak_mib;    /* compile: resident growth after, and at the peak */
    double decode_ms[3];         /* speed: by threads (1, 2) */
    double prefill_tok_s[3];
} Figures;

static bool load(const char *path, Model *m, Arena *a) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    Source src = {path, text, n};
    Diag d;
    Stats s;
    diag_init(&d, &src, stderr);
    return front_end(a, &d, m, &s, 64);
}

/* In a child: compiles path with backend b, and runs it when speed. */
typedef void (*Job)(const char *path, const JitBackend *b, Figures *f);

/* Runs job in a child process; its figures, or ok = 0. */
static Figures in_child(Job job, const char *path, const JitBackend *b) {
    Figures f = {0};
    int fd[2];
    if (pipe(fd) != 0)
        return f;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        job(path, b, &f);
        ssize_t w = write(fd[1], &f, sizeof f);
        _exit(w == (ssize_t)sizeof f ? 0 : 1);
    }
    close(fd[1]);
    if (pid < 0 || read(fd[0], &f, sizeof f) != (ssize_t)sizeof f)
        f.ok = 0;
    close(fd[0]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return f;
}

static JitModel *compile(const char *path, const JitBackend *b, const gqa_model_api **api, Arena *a) {
    Model m;
    char err[2048];
    if (!load(path, &m, a))
        return NULL;
    JitModel *j = jit_compile(&m, b, api, err, sizeof err);
    if (!j)
        fprintf(stderr, "jit_bench: %s: %s\n", path, err);
    return j;
}

static void compile_job(const char *path, const JitBackend *b, Figures *f) {
    Arena *a = arena_new();
    size_t rss0, peak0, rss1, peak1;
    gqr_resident_bytes(&rss0, &peak0);
    const gqa_model_api *api;
    JitModel *j = compile(path, b, &api, a);
    if (!j)
        return;
    gqr_resident_bytes(&rss1, &peak1);
    f->t = jit_phases(j);
    f->rss_mib = (double)(rss1 - rss0) / (1 << 20);
    f->peak_mib = (double)(peak1 > rss0 ? peak1 - rss0 : 0) / (1 << 20);
    f->ok = 1;
}

/* Weights of small values (speed does not depend on them). */
static void *weights(const gqa_model_api *api) {
    float *w = malloc(api->weight_bytes);
    if (!w)
        return NULL;
    for (size_t i = 0; i < api->weight_bytes / sizeof *w; i++) {
        uint32_t x = (uint32_t)(i * 2654435761u);
        x ^= x >> 13, x *= 0x5bd1e995u, x ^= x >> 15;
        w[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.05f;
    }
    return w;
}

static void speed_job(const char *path, const JitBackend *b, Figures *f) {
    Arena *a = arena_new();
    const gqa_model_api *api;
    JitModel *j = compile(path, b, &api, a);
    void *w = j ? weights(api) : NULL, *arena = w ? gqr_arena_alloc(api) : NULL;
    gqa_state *s;
    float *logits = malloc(sizeof(float) * (size_t)api->shape.vocab_size);
    int tokens[PROMPT];
    for (int i = 0; i < PROMPT; i++)
        tokens[i] = (i * 37 + 3) % api->shape.vocab_size;
    if (!arena || !logits || api->init(&s, arena, api->arena_bytes, w, api->weight_bytes) != GQA_OK)
        return;
    for (int thr = 1; thr <= 2; thr++) {
        api->set_threads(s, thr);
        double t[STEPS];
        for (int r = 0; r < STEPS; r++) {
            api->reset(s);
            api->seek(s, CTX - 1);
            double t0 = now();
            api->forward(s, 1, CTX - 1, logits);
            t[r] = now() - t0;
        }
        f->decode_ms[thr] = 1e3 * median(t, STEPS);
        for (int r = 0; r < 3; r++) {
            api->reset(s);
            double t0 = now();
            api->forward_batch(s, tokens, PROMPT, 0, logits);
            t[r] = now() - t0;
        }
        f->prefill_tok_s[thr] = PROMPT / median(t, 3);
    }
    f->ok = 1;
}

/* "median (min-max)" of v[0..n). */
static const char *spread(double *v, int n, const char *fmt, char *buf, size_t len) {
    double lo = v[0], hi = v[0];
    for (int i = 1; i < n; i++)
        lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    char a[32], b[32], c[32];
    snprintf(b, sizeof b, fmt, lo), snprintf(c, sizeof c, fmt, hi);
    snprintf(a, sizeof a, fmt, median(v, n));
    snprintf(buf, len, "%s (%s-%s)", a, b, c);
    return buf;
}

static void bench_compile(FILE *json) {
    printf("\nJIT compile: seconds from the model to loaded code, median (range) of %d; memory in MiB\n"
           "(cc: a fresh cache each time, gcc's own memory not counted)\n", COMPILE_RUNS);
    printf("  %-9s %-4s | %-22s %7s %7s %7s %7s | %6s %6s\n", "model", "jit", "total s", "emit", "parse",
           "opt", "codegen", "rss", "peak");
    fprintf(json, "  \"compile\": [");
    int items = 0;
    for (size_t i = 0; i < sizeof models / sizeof *models; i++)
        for (size_t k = 0; k < sizeof backends / sizeof *backends; k++) {
            const JitBackend *b = jit_backend(backends[k]);
            if (!b)
                continue;
            double tot[COMPILE_RUNS], ph[4][COMPILE_RUNS], rss[COMPILE_RUNS], peak[COMPILE_RUNS];
            char dir[] = "/tmp/gqac-jit-bench-XXXXXX", buf[128];
            for (int r = 0; r < COMPILE_RUNS; r++) {
                if (!mkdtemp(strcpy(dir, "/tmp/gqac-jit-bench-XXXXXX")))
                    return;
                setenv("GQAC_CACHE", dir, 1);
                Figures f = in_child(compile_job, models[i].path, b);
                char rm[128];
                snprintf(rm, sizeof rm, "rm -rf %s", dir);
                if (system(rm) != 0 || !f.ok) {
                    fprintf(stderr, "jit_bench: %s with %s failed\n", models[i].name, b->name);
                    exit(1);
                }
                tot[r] = f.t.total, ph[0][r] = f.t.emit, ph[1][r] = f.t.parse, ph[2][r] = f.t.optimize;
                ph[3][r] = f.t.codegen, rss[r] = f.rss_mib, peak[r] = f.peak_mib;
            }
            double m[4];
            for (int p = 0; p < 4; p++)
                m[p] = median(ph[p], COMPILE_RUNS);
            double mr = median(rss, COMPILE_RUNS), mp = median(peak, COMPILE_RUNS);
            printf("  %-9s %-4s | %-22s", models[i].name, b->name, spread(tot, COMPILE_RUNS, "%.3f", buf, sizeof buf));
            if (b->phases)
                printf(" %7.3f %7.3f %7.3f %7.3f", m[0], m[1], m[2], m[3]);
            else
                printf(" %7s %7s %7s %7s", "", "", "", "");
            printf(" | %6.1f %6.1f\n", mr, mp);
            fprintf(json, "%s\n    {\"model\": \"%s\", \"jit\": \"%s\", \"seconds\": %.4f, \"emit\": %.4f, "
                    "\"parse\": %.4f, \"optimize\": %.4f, \"codegen\": %.4f, \"rss_mib\": %.1f, \"peak_mib\": %.1f}",
                    items++ ? "," : "", models[i].name, b->name, median(tot, COMPILE_RUNS), m[0], m[1], m[2], m[3],
                    mr, mp);
        }
    fprintf(json, "\n  ],\n");
}

static void bench_speed(FILE *json) {
    const JitBackend *b[2] = {jit_backend("cc"), jit_backend("llvm")};
    if (!b[1]) {
        printf("\nJIT code speed: gqac is built without the llvm JIT (make LLVM=1)\n");
        fprintf(json, "  \"speed\": null\n");
        return;
    }
    const char *path = "bench/gqa-100m.gqa";
    char dir[] = "/tmp/gqac-jit-bench-XXXXXX", rm[128];
    if (!mkdtemp(dir))
        return;
    setenv("GQAC_CACHE", dir, 1); /* cc compiles in the first round only */
    double dec[2][3][SPEED_ROUNDS], pre[2][3][SPEED_ROUNDS];
    for (int r = 0; r < SPEED_ROUNDS; r++)
        for (int k = 0; k < 2; k++) {
            Figures f = in_child(speed_job, path, b[k]);
            if (!f.ok) {
                fprintf(stderr, "jit_bench: the 100M model with %s failed\n", b[k]->name);
                exit(1);
            }
            for (int thr = 1; thr <= 2; thr++)
                dec[k][thr][r] = f.decode_ms[thr], pre[k][thr][r] = f.prefill_tok_s[thr];
        }
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "jit_bench: cannot remove %s\n", dir);
    printf("\nJIT code speed: the 100M model (f32), cc's code (gcc -O3 -march=native) against llvm's,\n"
           "alternating, %d rounds: median (range); llvm/cc > 1 is llvm faster\n", SPEED_ROUNDS);
    printf("  %-3s | %-24s %-24s %7s | %-24s %-24s %7s\n", "thr", "cc decode ms/tok", "llvm decode ms/tok", "llvm/cc",
           "cc prompt tok/s", "llvm prompt tok/s", "llvm/cc");
    fprintf(json, "  \"speed\": [");
    for (int thr = 1; thr <= 2; thr++) {
        char s[4][128];
        double d[2], p[2];
        for (int k = 0; k < 2; k++) {
            spread(dec[k][thr], SPEED_ROUNDS, "%.2f", s[k], sizeof s[k]);
            spread(pre[k][thr], SPEED_ROUNDS, "%.0f", s[2 + k], sizeof s[2 + k]);
            d[k] = median(dec[k][thr], SPEED_ROUNDS), p[k] = median(pre[k][thr], SPEED_ROUNDS);
        }
        printf("  %-3d | %-24s %-24s %7.3f | %-24s %-24s %7.3f\n", thr, s[0], s[1], d[0] / d[1], s[2], s[3],
               p[1] / p[0]);
        fprintf(json, "%s\n    {\"threads\": %d, \"cc_decode_ms\": %.3f, \"llvm_decode_ms\": %.3f, "
                "\"cc_prompt_tok_s\": %.1f, \"llvm_prompt_tok_s\": %.1f}", thr > 1 ? "," : "", thr, d[0], d[1],
                p[0], p[1]);
    }
    fprintf(json, "\n  ]\n");
}

int main(int argc, char **argv) {
    const char *out = argc > 1 ? argv[1] : "build/bench_jit.json";
    FILE *json = fopen(out, "w");
    if (!json) {
        perror(out);
        return 1;
    }
    fprintf(json, "{\n");
    bench_compile(json);
    bench_speed(json);
    fprintf(json, "}\n");
    fclose(json);
    printf("\nwrote %s\n", out);
    return 0;
}
