/*
 * cunit_run.h: how every test program's main ends.  Runs the CUnit tests
 * registered, verbosely, and gives the exit status: 1 when an assertion,
 * a test or a suite's set-up or clean-up failed (counting assertions
 * alone would pass a run whose suite could not be set up).
 */
#ifndef CUNIT_RUN_H
#define CUNIT_RUN_H

#include <CUnit/Basic.h>

static int cunit_run(void) {
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    int failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed() +
                 CU_get_number_of_suites_failed() > 0;
    CU_cleanup_registry();
    return failed;
}

#endif
