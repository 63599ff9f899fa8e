/*
 * mpi_testing.h: the start of a test program that runs under mpirun
 * (test_comm_mpi, test_tp_mpi).  Needs mpi.h and gqr.h first.
 */
#ifndef GQAC_TEST_MPI_TESTING_H
#define GQAC_TEST_MPI_TESTING_H

#include <stdio.h>

/* MPI started, this process's rank and the job's size, and the MPI comm
 * in *comm; the job ends, with the reason, when the comm cannot be made. */
static void mpi_test_start(int *argc, char ***argv, int *rank, int *ranks, gqa_comm *comm) {
    char err[256];
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, ranks);
    if (gqr_comm_mpi(comm, err, sizeof err)) {
        fprintf(stderr, "rank %d: %s\n", *rank, err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

#endif
