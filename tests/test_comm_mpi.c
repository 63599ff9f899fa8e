/*
 * test_comm_mpi.c: runtime/comm_mpi.c's gqa_comm under mpirun (tests/mpi.sh
 * runs it on 2 and 4 ranks): the in-place sum of every rank's floats and
 * the gather of parts of uneven sizes, each rank after the other, checked
 * on every rank against sums written out here.  Small integers in floats,
 * so every sum is exact whatever order MPI adds in.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "cunit_run.h"
#include "gqr.h"
#include "testing.h"
#include "mpi_testing.h"

static int rank, ranks;
static gqa_comm comm;

static void test_allreduce(void) {
    enum { N = 4099 };
    float *x = malloc(sizeof *x * N);
    for (int i = 0; i < N; i++)
        x[i] = (float)(rank * 1000 + i % 997);
    CU_ASSERT_EQUAL_FATAL(comm.allreduce_sum(comm.ctx, x, N), 0);
    long bad = 0;
    for (int i = 0; i < N; i++)
        bad += x[i] != (float)(1000 * ranks * (ranks - 1) / 2 + ranks * (i % 997));
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(comm.allreduce_sum(comm.ctx, x, 0), 0);
    free(x);
}

/* Rank r holds 3 + 2r floats (one rank none when there are 4). */
static void test_allgather(void) {
    int counts[64], total = 0;
    CU_ASSERT_FATAL(ranks <= 64);
    for (int r = 0; r < ranks; r++)
        total += counts[r] = r == 3 ? 0 : 3 + 2 * r;
    float part[256], *all = malloc(sizeof *all * (size_t)total);
    for (int j = 0; j < counts[rank]; j++)
        part[j] = (float)(rank * 100 + j);
    CU_ASSERT_EQUAL_FATAL(comm.allgather(comm.ctx, part, all, counts), 0);
    int at = 0;
    long bad = 0;
    for (int r = 0; r < ranks; r++)
        for (int j = 0; j < counts[r]; j++)
            bad += all[at++] != (float)(r * 100 + j);
    CU_ASSERT_EQUAL(bad, 0);
    free(all);
}

int main(int argc, char **argv) {
    mpi_test_start(&argc, &argv, &rank, &ranks, &comm);
    if (rank != 0 && !freopen("/dev/null", "w", stdout))
        return 1;
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("comm_mpi", NULL, NULL);
    CU_add_test(s, "allreduce_sum", test_allreduce);
    CU_add_test(s, "allgather, uneven parts", test_allgather);
    int rc = cunit_run();
    gqr_comm_mpi_free(&comm);
    MPI_Finalize();
    return rc;
}
