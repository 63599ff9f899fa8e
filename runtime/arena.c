/*
 * arena.c: the one block of memory a model instance lives in.  Zeroed, so a
 * fresh instance's KV cache holds no stale numbers, and aligned to at least
 * a cache line, so no two instances share one.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gqr.h"

void *gqr_arena_alloc(const gqa_model_api *m) {
    if (!m)
        return NULL;
    size_t align = m->arena_align < 64 ? 64 : m->arena_align;
    if (align & (align - 1))
        return NULL; /* posix_memalign takes powers of two only */
    void *p = NULL;
    size_t bytes = m->arena_bytes ? m->arena_bytes : 1;
    if (posix_memalign(&p, align, bytes) != 0)
        return NULL;
    memset(p, 0, bytes);
    return p;
}

void gqr_arena_free(void *arena) {
    free(arena);
}

#define HUGE_PAGE ((size_t)2 << 20)

void *gqr_pages_alloc(size_t bytes) {
    size_t rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *buf = NULL;
    if (posix_memalign(&buf, HUGE_PAGE, rounded ? rounded : HUGE_PAGE) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    /* Advice only: without transparent huge pages this fails harmlessly. */
    (void)madvise(buf, rounded, MADV_HUGEPAGE);
#endif
    return buf;
}
