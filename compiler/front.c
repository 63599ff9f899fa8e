/*
 * front.c: the front end as one call, for the CLI, the tests and the
 * fuzzer alike: source -> Ast -> Model -> checked sizes.
 */
#include "gqac.h"

bool front_end(Arena *a, Diag *d, Model *m, Stats *s, int size_bits) {
    Ast *ast = parse_source(a, d);
    if (!ast || d->errors > 0)
        return false;
    return sema_check(ast, m, d) && ir_stats(m, s, d, size_bits, PLAN_BATCH);
}
