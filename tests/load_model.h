/*
 * load_model.h: a .gqa file through gqac's front end, for the tests that
 * link the compiler (test_jit, test_train, test_tp).  Needs gqac.h and
 * testing.h first.
 */
#ifndef GQAC_TEST_LOAD_MODEL_H
#define GQAC_TEST_LOAD_MODEL_H

#include <stdio.h>
#include <stdlib.h>

/* path's model into *m (in a; it holds no pointer into the text), its
 * errors on stderr; false when it does not load. */
static bool load_model(const char *path, Model *m, Arena *a) {
    size_t n = 0;
    char *text = test_read_file(path, &n);
    Source src = {path, text, n};
    Diag d;
    Stats s;
    diag_init(&d, &src, stderr);
    bool ok = n > 0 && front_end(a, &d, m, &s, 64);
    free(text);
    return ok;
}

#endif
