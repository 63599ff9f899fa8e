/*
 * m4_start.c: the whole program of a freestanding model on a Cortex-M4,
 * for tests/cross.sh: no libc, no startup code but this, weights in
 * flash.  The test is that it links with nothing undefined; its size is
 * what the README reports.
 */
#include <stdint.h>

#include "tiny_m4.h"

/* The arena, aligned by hand: C99 has no alignment specifier. */
static unsigned char arena[TINY_M4_ARENA_BYTES + TINY_M4_ARENA_ALIGN];
static float logits[TINY_M4_VOCAB];

void Reset_Handler(void);

void Reset_Handler(void) {
    void *aligned = arena + (TINY_M4_ARENA_ALIGN - (uintptr_t)arena % TINY_M4_ARENA_ALIGN);
    gqa_state *s;
    int pos, token = 1;
    if (tiny_m4_init_embedded(&s, aligned, TINY_M4_ARENA_BYTES) == GQA_OK)
        for (pos = 0; pos < 8; pos++) {
            int i, best = 0;
            if (tiny_m4_forward(s, token, pos, logits) != GQA_OK)
                break;
            for (i = 1; i < TINY_M4_VOCAB; i++)
                best = logits[i] > logits[best] ? i : best;
            token = best;
        }
    for (;;)
        ;
}
