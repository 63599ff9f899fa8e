/*
 * comm_mpi.c: gqa_comm (gqa_api.h) over MPI_COMM_WORLD, for the ranks of a
 * tensor-parallel model: an in-place sum of floats, and the gather of
 * every rank's part (the logits' vocabulary rows).  Built only where MPI
 * is (libgqa_mpi.a); the rest of the runtime never calls MPI.  Errors are
 * returned, not fatal, so the generated code says GQA_ECOMM.
 */
#include <limits.h>
#include <stdlib.h>

#include <mpi.h>

#include "fail.h"
#include "gqr.h"

typedef struct mpi_ctx {
    int rank, ranks;
    int *displs; /* where each rank's part goes in allgather's output */
} mpi_ctx;

/* In pieces of at most INT_MAX floats: MPI counts are ints. */
static int allreduce_sum(void *ctx, float *x, size_t n) {
    (void)ctx;
    while (n) {
        int k = n > INT_MAX ? INT_MAX : (int)n;
        if (MPI_Allreduce(MPI_IN_PLACE, x, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return -1;
        x += k, n -= (size_t)k;
    }
    return 0;
}

static int allgather(void *ctx, const float *part, float *all, const int *counts) {
    mpi_ctx *c = ctx;
    long long at = 0;
    for (int r = 0; r < c->ranks; r++) {
        if (counts[r] < 0 || at > INT_MAX)
            return -1;
        c->displs[r] = (int)at;
        at += counts[r];
    }
    return MPI_Allgatherv(part, counts[c->rank], MPI_FLOAT, all, counts, c->displs, MPI_FLOAT,
                          MPI_COMM_WORLD) != MPI_SUCCESS;
}

int gqr_comm_mpi(gqa_comm *comm, char *err, size_t errlen) {
    mpi_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return gqr_fail(err, errlen, "out of memory");
    if (MPI_Comm_rank(MPI_COMM_WORLD, &c->rank) != MPI_SUCCESS ||
        MPI_Comm_size(MPI_COMM_WORLD, &c->ranks) != MPI_SUCCESS) {
        free(c);
        return gqr_fail(err, errlen, "MPI_COMM_WORLD's rank and size are not known");
    }
    c->displs = malloc(sizeof *c->displs * (size_t)c->ranks);
    if (!c->displs) {
        free(c);
        return gqr_fail(err, errlen, "out of memory");
    }
    comm->ctx = c;
    comm->allreduce_sum = allreduce_sum;
    comm->allgather = allgather;
    return 0;
}

void gqr_comm_mpi_free(gqa_comm *comm) {
    mpi_ctx *c = comm ? comm->ctx : NULL;
    if (c)
        free(c->displs);
    free(c);
    if (comm)
        comm->ctx = NULL;
}
