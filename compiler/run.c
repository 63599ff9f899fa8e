/*
 * run.c: `gqac run MODEL.gqa [program flags]`.  Needs: the front end, the
 * planner and the C emitter, a system C compiler and the runtime library
 * libgqa.a.  Provides: the model compiled ahead of time into a program
 * (gqac --main), cached under a hash of everything that went into it, and
 * run with the flags that follow the model (the program's own: --weights,
 * --tokenizer, -p, -n, ...), so `gqac run` and a program built by hand
 * behave the same.
 *
 * The compiler is $CC (else cc) with -O3 -march=native -fopenmp
 * -ffp-contract=fast (ISO C mode otherwise forbids fusing a * b + c into
 * one FMA, which halves the kernels' arithmetic rate) and then
 * $GQAC_CFLAGS, split at spaces (a sanitizer build of gqac passes its
 * flags on, so that the program links with its runtime library).
 *
 * The cache (cache.c): one folder per key, checked before its program runs.
 *
 * Under mpirun (Open MPI's OMPI_COMM_WORLD_SIZE and _RANK, else PMI_SIZE
 * and PMI_RANK) each process compiles its own rank's code (gqac --ranks
 * N --rank R --main) with the MPI flags gqac was built with and libgqa_mpi.a,
 * and execs it: gqac itself never initializes MPI, so the program gets the
 * launcher's environment as it was.
 */
#include "gqac.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CFLAGS_AOT "-std=c99", "-O3", "-march=native", "-ffp-contract=fast", "-fopenmp"
static const char *const aot_flags[] = {CFLAGS_AOT}; /* for the cache key and the message */

enum { MAX_EXTRA_FLAGS = 32, MAX_MPI_FLAGS = 32 };

#ifndef GQAC_MPI
#define GQAC_MPI 0
#endif
#ifndef GQAC_MPI_CFLAGS
#define GQAC_MPI_CFLAGS ""
#define GQAC_MPI_LIBS ""
#endif

typedef struct {
    const char *cc;      /* the C compiler: $CC or cc */
    const char *extra;   /* $GQAC_CFLAGS, or "" */
    const char *runtime; /* libgqa.a */
    const char *dir;     /* the cache folder of this build */
    Arena *a;
    int ranks, rank;     /* > 1 ranks: one rank's program, with MPI */
    const char *mpi_runtime; /* libgqa_mpi.a beside libgqa.a */
} Build;

/* libgqa.a beside the gqac being run (the build tree), or in ../lib (an
 * installed gqac), unless $GQAC_RUNTIME names it. */
static const char *find_runtime(Arena *a) {
    const char *env = getenv("GQAC_RUNTIME");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    *slash = '\0';
    const char *candidates[] = {arena_printf(a, "%s/libgqa.a", exe),
                                arena_printf(a, "%s/../lib/libgqa.a", exe)};
    for (int i = 0; i < 2; i++)
        if (access(candidates[i], R_OK) == 0)
            return candidates[i];
    return NULL;
}

/* The words of s (copied) after argv[*n]; false past max words. */
static bool add_words(char **argv, int *n, int max, const char *s, Arena *a) {
    char *copy = arena_printf(a, "%s", s);
    for (char *f = strtok(copy, " \t"); f; f = strtok(NULL, " \t")) {
        if (*n == max)
            return false;
        argv[(*n)++] = f;
    }
    return true;
}

/* cc FLAGS $GQAC_CFLAGS -o tmp/model tmp/model.c libgqa.a ...: its exit
 * status (cache_spawn's), or 1 after a message of its own.  A rank's
 * program: MPI's include flags first, libgqa_mpi.a and MPI's libraries last. */
static int compile(const Build *b, const char *tmp) {
    char *src = arena_printf(b->a, "%s/model.c", tmp), *out = arena_printf(b->a, "%s/model", tmp);
    char *head[] = {(char *)b->cc, CFLAGS_AOT};
    char *tail[] = {"-o", out, src, (char *)b->runtime, "-lcjson", "-lm", NULL};
    char *argv[sizeof head / sizeof *head + MAX_EXTRA_FLAGS + 2 * MAX_MPI_FLAGS + 1 +
               sizeof tail / sizeof *tail];
    int n = 0;
    for (size_t i = 0; i < sizeof head / sizeof *head; i++)
        argv[n++] = head[i];
    char *extra = arena_printf(b->a, "%s", b->extra);
    for (char *f = strtok(extra, " \t"); f; f = strtok(NULL, " \t")) {
        if (n == (int)(sizeof head / sizeof *head) + MAX_EXTRA_FLAGS) {
            fprintf(stderr, "gqac: error: GQAC_CFLAGS has more than %d flags\n", MAX_EXTRA_FLAGS);
            return 1;
        }
        argv[n++] = f;
    }
    if (b->ranks > 1) {
        int max = n + MAX_MPI_FLAGS;
        if (!add_words(argv, &n, max, GQAC_MPI_CFLAGS, b->a))
            return 1;
        argv[n++] = "-o", argv[n++] = out, argv[n++] = src, argv[n++] = (char *)b->mpi_runtime;
        argv[n++] = (char *)b->runtime;
        max = n + MAX_MPI_FLAGS;
        if (!add_words(argv, &n, max, GQAC_MPI_LIBS, b->a))
            return 1;
        argv[n++] = "-lcjson", argv[n++] = "-lm", argv[n] = NULL;
        return cache_spawn(argv, false);
    }
    memcpy(argv + n, tail, sizeof tail);
    return cache_spawn(argv, false);
}

/* Why the program was not built (rc from compile, the staging folder
 * already gone): a missing compiler is named, a failing one's exit status
 * given, and the code kept for the report. */
static void compile_failed(const Build *b, int rc, const Buf *c, const Buf *h) {
    if (rc == CACHE_NOT_RUN) {
        fprintf(stderr, "gqac: error: cannot run the C compiler '%s': %s; install gcc or clang, "
                        "or name another with CC=/path/to/cc\n", b->cc, strerror(errno));
        return;
    }
    if (rc < 0)
        fprintf(stderr, "gqac: error: the C compiler '%s' was killed by a signal", b->cc);
    else
        fprintf(stderr, "gqac: error: the C compiler '%s' failed with exit status %d", b->cc, rc);
    fprintf(stderr, " (its messages are above); the generated code is kept in %s: if the "
                    "messages are about it, that is a gqac bug\n", cache_keep_source(c, h, b->a));
}

/* Generates, writes and compiles into a fresh folder beside the cache
 * entry, seals it and renames it into place; nothing of it stays on
 * failure (a full disk included). */
static int build(Build *b, const Buf *c, const Buf *h) {
    char *tmp = cache_stage(b->dir, b->a);
    if (!tmp) {
        fprintf(stderr, "gqac: error: cannot create a folder beside %s: %s\n", b->dir, strerror(errno));
        return EXIT_INPUT;
    }
    bool ok = cache_write_file(arena_printf(b->a, "%s/model.c", tmp), c) &&
              cache_write_file(arena_printf(b->a, "%s/model.h", tmp), h);
    if (!ok) {
        cache_discard(tmp);
        fprintf(stderr, "gqac: error: cannot write the generated code beside %s: %s\n", b->dir,
                strerror(errno));
        return EXIT_INPUT;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = compile(b, tmp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc != 0) {
        cache_discard(tmp);
        compile_failed(b, rc, c, h);
        return EXIT_INPUT;
    }
    if (!cache_seal(tmp, "model", b->a) || !cache_publish(tmp, b->dir, "model", b->a)) {
        cache_discard(tmp);
        fprintf(stderr, "gqac: error: cannot put the program in %s: %s\n", b->dir, strerror(errno));
        return EXIT_INPUT;
    }
    fprintf(stderr, "gqac: compiled with %s", b->cc);
    for (size_t i = 0; i < sizeof aot_flags / sizeof *aot_flags; i++)
        fprintf(stderr, " %s", aot_flags[i]);
    fprintf(stderr, "%s%s in %.1f s (cached in %s)\n", *b->extra ? " " : "", b->extra,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9, b->dir);
    return 0;
}

/* A file's size and time into the key. */
static uint64_t hash_stamp(uint64_t k, const char *path) {
    struct stat st;
    if (stat(path, &st) == 0) {
        int64_t stamp[2] = {(int64_t)st.st_size, (int64_t)st.st_mtime};
        k = cache_hash(k, stamp, sizeof stamp);
    }
    return k;
}

/* The key covers the generated code, the compiler and its flags, and the
 * runtime libraries (their size and time), so a rebuilt runtime rebuilds. */
static uint64_t build_key(const Build *b, const Buf *c, const Buf *h) {
    uint64_t k = cache_hash_str(CACHE_SEED, GQAC_VERSION);
    k = cache_hash(cache_hash(k, c->data, c->len), h->data, h->len);
    k = cache_hash_str(cache_hash_str(k, b->cc), b->runtime);
    k = cache_hash_strs(k, aot_flags, sizeof aot_flags / sizeof *aot_flags);
    k = cache_hash_str(k, b->extra);
    if (b->ranks > 1) { /* the rank's code differs anyway; its link flags too */
        k = cache_hash_str(cache_hash_str(k, GQAC_MPI_CFLAGS), GQAC_MPI_LIBS);
        k = hash_stamp(cache_hash_str(k, b->mpi_runtime), b->mpi_runtime);
    }
    k = cache_hash_cpu(k);
    return hash_stamp(k, b->runtime);
}

/* A launcher's count in the environment: 1 when set and valid, 0 when
 * not set, -1 (said) when not a count. */
static int env_count(const char *name, long lo, long *out) {
    const char *v = getenv(name);
    char *end;
    if (!v || !*v)
        return 0;
    errno = 0;
    *out = strtol(v, &end, 10);
    if (*end || errno || *out < lo || *out > 65536) {
        fprintf(stderr, "gqac: error: %s is '%s', not a whole number in [%ld, 65536]\n", name, v, lo);
        return -1;
    }
    return 1;
}

/* This process's rank and the job's size under mpirun (Open MPI's
 * variables, else PMI's), 0 of 1 elsewhere; false after a message. */
static bool job_rank(Build *b) {
    static const char *const vars[2][2] = {{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
                                           {"PMI_SIZE", "PMI_RANK"}};
    long size = 1, rank = 0;
    for (int i = 0; i < 2; i++) {
        int got = env_count(vars[i][0], 1, &size);
        if (got < 0 || (got > 0 && env_count(vars[i][1], 0, &rank) < 0))
            return false;
        if (got > 0 && rank >= size) {
            fprintf(stderr, "gqac: error: %s is %ld, outside the job's %ld ranks (%s)\n", vars[i][1],
                    rank, size, vars[i][0]);
            return false;
        }
        if (got > 0)
            break;
    }
    b->ranks = (int)size, b->rank = (int)rank;
    return true;
}

/* A rank's program needs MPI: built into gqac, libgqa_mpi.a beside
 * libgqa.a, and the model split over the job's ranks. */
static bool rank_ready(Build *b, const Model *m, const char *model_path) {
    char why[1024];
    if (!GQAC_MPI) {
        fprintf(stderr, "gqac: error: rank %d of %d: this gqac was built without MPI; install Open "
                        "MPI (Debian: libopenmpi-dev openmpi-bin) and rebuild it\n", b->rank, b->ranks);
        return false;
    }
    size_t len = strlen(b->runtime);
    b->mpi_runtime = arena_printf(b->a, "%.*s_mpi.a", (int)(len > 2 ? len - 2 : 0), b->runtime);
    if (access(b->mpi_runtime, R_OK) != 0) {
        fprintf(stderr, "gqac: error: rank %d of %d: cannot find %s, the runtime's MPI part\n",
                b->rank, b->ranks, b->mpi_runtime);
        return false;
    }
    if (!ir_shard(m, b->ranks, b->rank, &(Model){0}, &(ShardPlan){0}, why, sizeof why)) {
        fprintf(stderr, "gqac: error: %s: %s\n", model_path, why);
        return false;
    }
    return true;
}

int run_command(const Model *m, const char *model_path, int argc, char **argv, Arena *a) {
    const char *cc = getenv("CC"), *extra = getenv("GQAC_CFLAGS");
    Build b = {cc && *cc ? cc : "cc", extra ? extra : "", find_runtime(a), NULL, a, 1, 0, NULL};
    if (!b.runtime) {
        fprintf(stderr, "gqac: error: cannot find the runtime library libgqa.a beside gqac or in "
                        "../lib; set GQAC_RUNTIME to its path\n");
        return EXIT_INPUT;
    }
    if (!job_rank(&b) || (b.ranks > 1 && !rank_ready(&b, m, model_path)))
        return EXIT_INPUT;
    char err[1024];
    const char *root = cache_root(a, err, sizeof err);
    if (!root) {
        fprintf(stderr, "gqac: error: %s\n", err);
        return EXIT_INPUT;
    }
    Plan p;
    Buf c = {0}, h = {0};
    plan_model(m, "model", (CodeOptions){.ranks = b.ranks, .rank = b.rank}, &p, a);
    if (plan_check(&p)) {
        fprintf(stderr, "gqac: internal error: the plan's %s is out of its C type's range: a gqac bug\n",
                plan_check(&p));
        return EXIT_INPUT;
    }
    emit_c_model(&p, "model", "model.h", true, &c, &h);
    b.dir = arena_printf(a, "%s/%016llx", root, (unsigned long long)build_key(&b, &c, &h));
    char *bin = arena_printf(a, "%s/model", b.dir);
    /* A program that is missing, cut short or not the one built here is
     * rebuilt, never run. */
    int rc = cache_check(b.dir, "model", a) ? 0 : build(&b, &c, &h);
    buf_free(&c), buf_free(&h);
    if (rc)
        return rc;
    char **args = arena_alloc(a, sizeof *args * (size_t)(argc + 2));
    args[0] = bin;
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    args[argc + 1] = NULL;
    fflush(NULL);
    execv(bin, args);
    fprintf(stderr, "gqac: error: cannot run %s (from %s): %s\n", bin, model_path, strerror(errno));
    return EXIT_INPUT;
}
