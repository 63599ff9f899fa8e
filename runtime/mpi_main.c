/*
 * mpi_main.c: the program of a sharded model under mpirun: gqr_main_ranks
 * (cli.c) with MPI's rank and size, its collective operations (comm_mpi.c)
 * and its way of ending every rank.  Each rank is the code gqac generated
 * for it (--ranks N --rank R), so the job's size and the rank are checked
 * against what the code holds before anything is loaded.
 */
#include <stdio.h>

#include <mpi.h>

#include "gqr.h"

#define PROG "gqac-run"

static unsigned long long share_seed(void *ctx, unsigned long long seed) {
    (void)ctx;
    MPI_Bcast(&seed, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    return seed;
}

/* A failed collective counts as a failure. */
static int agree(void *ctx, int failed) {
    int any = 1;
    (void)ctx;
    if (MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return 1;
    return any != 0;
}

static int gather2(void *ctx, const double *mine, double *all) {
    (void)ctx;
    return MPI_Allgather(mine, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, MPI_COMM_WORLD) != MPI_SUCCESS;
}

static void abort_all(void *ctx, int status) {
    (void)ctx;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status);
}

/* The code's rank and ranks against the job's; 0 or -1, said. */
static int check_rank(const gqa_model_api *m, int rank, int ranks) {
    int want_ranks = m->shard ? m->shard->ranks : 1, want_rank = m->shard ? m->shard->rank : 0;
    if (rank == want_rank && ranks == want_ranks)
        return 0;
    fprintf(stderr, PROG ": error: rank %d: this is the code of rank %d of %d, but the job runs "
            "%d rank%s (compile each rank's code with gqac --ranks %d --rank R)\n", rank, want_rank,
            want_ranks, ranks, ranks == 1 ? "" : "s", ranks);
    return -1;
}

int gqr_mpi_main(const gqa_model_api *m, int argc, char **argv) {
    int rank = 0, ranks = 1;
    char err[256];
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, PROG ": error: MPI_Init failed\n");
        return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    gqa_comm comm = {0};
    if (check_rank(m, rank, ranks))
        abort_all(NULL, 1);
    if (gqr_comm_mpi(&comm, err, sizeof err)) {
        fprintf(stderr, PROG ": error: rank %d: %s\n", rank, err);
        abort_all(NULL, 1);
    }
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) /* rank 0 prints the text */
        fprintf(stderr, PROG ": warning: rank %d: cannot silence its output\n", rank);
    gqr_ranks rk = {.rank = rank, .ranks = ranks, .comm = &comm, .share_seed = share_seed,
                    .agree = agree, .gather2 = gather2, .abort = abort_all};
    int rc = gqr_main_ranks(m, argc, argv, &rk);
    gqr_comm_mpi_free(&comm);
    MPI_Finalize();
    return rc;
}
