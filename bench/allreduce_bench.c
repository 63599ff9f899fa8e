/*
 * allreduce_bench.c: the latency and bandwidth of the collectives a
 * tensor-parallel token needs, on whatever transport mpirun picks.
 *
 * A sharded decode step calls MPI_Allreduce of dim floats 2 x layers + 1
 * times (after Wo, after W2, and the embedding) and MPI_Allgatherv of the
 * vocabulary's logits once (docs/parallel.md).  This program times exactly
 * those calls, back to back, so that tools/tp_model.py can fit the latency
 * (alpha) and bandwidth (beta) of this machine's loopback:
 *
 *   mpirun -np 2 build/bench/allreduce_bench            (shared memory)
 *   mpirun -np 2 --mca btl tcp,self build/bench/allreduce_bench  (TCP loopback)
 *
 * Each size runs ROUNDS rounds of CALLS calls; a round's time per call is
 * the slowest rank's (a collective is as slow as its last rank), and the
 * line gives the median and the range over the rounds.  Lines beginning
 * "tp " are for tools/tp_model.py --calib; the rest is for people.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROUNDS = 15, WARMUP = 50, DIMS = 5 };

typedef struct Stats {
    double median, min, max; /* seconds per call over the rounds */
} Stats;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static Stats stats_of(double *t, int n) {
    Stats s;
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    s.min = t[0];
    s.max = t[n - 1];
    s.median = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
    return s;
}

/* One collective call on buffers the caller owns; 0 or an MPI error. */
typedef int (*Op)(float *buf, float *all, const int *counts, const int *displs, int n);

static int op_allreduce(float *buf, float *all, const int *counts, const int *displs, int n) {
    (void)all, (void)counts, (void)displs;
    return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static int op_allgather(float *buf, float *all, const int *counts, const int *displs, int n) {
    int rank;
    (void)n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return MPI_Allgatherv(buf, counts[rank], MPI_FLOAT, all, counts, displs, MPI_FLOAT,
                          MPI_COMM_WORLD);
}

/* Seconds per call of `calls` back-to-back calls, the slowest rank's,
 * ROUNDS times (a barrier before each round so that every rank starts
 * it together, as ranks leave a decode step's matrix product together). */
static Stats time_op(Op op, float *buf, float *all, const int *counts, const int *displs, int n,
                     int calls) {
    double t[ROUNDS];
    for (int i = 0; i < WARMUP; i++)
        op(buf, all, counts, displs, n);
    for (int r = 0; r < ROUNDS; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int i = 0; i < calls; i++)
            if (op(buf, all, counts, displs, n) != MPI_SUCCESS)
                MPI_Abort(MPI_COMM_WORLD, 1);
        double mine = (MPI_Wtime() - t0) / calls, slowest;
        MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        t[r] = slowest;
    }
    return stats_of(t, ROUNDS);
}

static void report(int rank, const char *what, int ranks, long floats, Stats s) {
    if (rank != 0)
        return;
    printf("%-9s %d ranks %6ld floats (%7ld bytes): median %8.2f us, range %8.2f .. %8.2f us\n",
           what, ranks, floats, floats * 4, s.median * 1e6, s.min * 1e6, s.max * 1e6);
    printf("tp %s ranks=%d floats=%ld median_us=%.3f min_us=%.3f max_us=%.3f\n", what, ranks,
           floats, s.median * 1e6, s.min * 1e6, s.max * 1e6);
}

int main(int argc, char **argv) {
    static const int dims[DIMS] = {1, 768, 2048, 4096, 8192};
    int vocab = argc > 1 ? atoi(argv[1]) : 32000;
    int calls = argc > 2 ? atoi(argv[2]) : 200;
    int rank, ranks;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (vocab < ranks || calls < 1) {
        if (rank == 0)
            fprintf(stderr, "usage: allreduce_bench [VOCAB >= ranks [CALLS >= 1]]\n");
        MPI_Finalize();
        return 2;
    }
    int *counts = malloc((size_t)ranks * sizeof *counts), *displs = malloc((size_t)ranks * sizeof *displs);
    /* buf serves every allreduce (up to the largest dim) and a rank's vocabulary part. */
    size_t floats = (size_t)(vocab > dims[DIMS - 1] ? vocab : dims[DIMS - 1]);
    float *buf = calloc(floats, sizeof *buf), *all = calloc((size_t)vocab, sizeof *all);
    if (!counts || !displs || !buf || !all) {
        fprintf(stderr, "rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* The vocabulary's rows as a sharded model cuts them: even, the first
     * vocab % ranks ranks one more. */
    for (int r = 0, at = 0; r < ranks; r++) {
        counts[r] = vocab / ranks + (r < vocab % ranks);
        displs[r] = at;
        at += counts[r];
    }
    if (rank == 0) {
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int len;
        MPI_Get_library_version(lib, &len);
        printf("# %d ranks, %d rounds of %d calls per size; %.*s\n", ranks, ROUNDS, calls,
               (int)strcspn(lib, ",\n"), lib);
    }
    for (int i = 0; i < DIMS; i++)
        report(rank, "allreduce", ranks, dims[i],
               time_op(op_allreduce, buf, all, counts, displs, dims[i], calls));
    report(rank, "allgather", ranks, vocab, time_op(op_allgather, buf, all, counts, displs, vocab, calls));
    free(counts), free(displs), free(buf), free(all);
    MPI_Finalize();
    return 0;
}
