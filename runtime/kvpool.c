/*
 * kvpool.c: the paged KV cache's pages: one aligned block cut into
 * page_bytes pages, and a stack of the free ones, so that take and give
 * cost O(1) and a page just given back is the next one taken (warm in
 * the caches).  The engine's thread owns a pool; nothing here locks.
 */
#include <limits.h>
#include <stdlib.h>

#include "engine.h"
#include "fail.h"
#include "gqr.h"

int gqr_kvpool_init(gqr_kvpool *p, size_t memory, size_t page_bytes, char *err, size_t errlen) {
    if (!p)
        return gqr_fail(err, errlen, "no pool");
    p->base = NULL;
    p->free_pages = NULL;
    p->page_bytes = page_bytes;
    p->n_pages = p->n_free = 0;
    if (page_bytes == 0)
        return gqr_fail(err, errlen, "KV pages of 0 bytes");
    size_t n = memory / page_bytes;
    if (n == 0)
        return gqr_fail(err, errlen, "KV memory of %zu bytes holds no page of %zu bytes", memory, page_bytes);
    if (n > INT_MAX - 1)
        n = INT_MAX - 1;
    p->free_pages = malloc(n * sizeof *p->free_pages);
    p->base = p->free_pages ? gqr_pages_alloc(n * page_bytes) : NULL;
    if (!p->base) {
        gqr_kvpool_free(p);
        return gqr_fail(err, errlen, "cannot allocate %zu KV pages of %zu bytes", n, page_bytes);
    }
    p->n_pages = p->n_free = (int)n;
    /* Reversed, so that a fresh pool hands out pages 0, 1, 2, ... */
    for (int i = 0; i < p->n_free; i++)
        p->free_pages[i] = p->n_free - 1 - i;
    return 0;
}

int gqr_kvpool_take(gqr_kvpool *p) {
    if (!p || p->n_free == 0)
        return -1;
    return p->free_pages[--p->n_free];
}

void gqr_kvpool_give(gqr_kvpool *p, int page) {
    /* An index outside the pool, or a pool already full, is a caller's bug
     * that must not write past the stack. */
    if (!p || page < 0 || page >= p->n_pages || p->n_free >= p->n_pages)
        return;
    p->free_pages[p->n_free++] = page;
}

void gqr_kvpool_free(gqr_kvpool *p) {
    if (!p)
        return;
    free(p->base);
    free(p->free_pages);
    p->base = NULL;
    p->free_pages = NULL;
    p->n_pages = p->n_free = 0;
}
