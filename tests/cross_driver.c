/*
 * cross_driver.c: runs a generated model for tests/cross.sh and prints
 * its logits, one per line, so that the same model built for another
 * architecture can be compared with the host's.
 *
 *   driver WEIGHTS.bin   weights from the file (the runtime's loader)
 *   driver               weights compiled in (gqac --embed-weights)
 *
 * MODEL_API names the model's function table (-DMODEL_API=tiny_api).
 * Tokens are a fixed pseudo-random walk, the same on every CPU.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gqr.h"

extern const gqa_model_api MODEL_API;

/* Positions run (-DPOSITIONS=N): past a sliding window's ring, and past
 * the context for a model whose every layer has a window. */
#ifndef POSITIONS
#define POSITIONS 16
#endif

static int run(const gqa_model_api *m, gqa_state *s) {
    float *logits = malloc(sizeof(float) * (size_t)m->shape.vocab_size);
    int err = logits ? GQA_OK : GQR_ENOMEM;
    for (int pos = 0; pos < POSITIONS && !err; pos++) {
        err = m->forward(s, (pos * 7919 + 13) % m->shape.vocab_size, pos, logits);
        for (int i = 0; i < m->shape.vocab_size && !err; i++)
            printf("%.9g\n", logits[i]);
    }
    free(logits);
    return err;
}

int main(int argc, char **argv) {
    const gqa_model_api *m = &MODEL_API;
    gqr_checkpoint ck = {0};
    gqa_state *s;
    char err[512];
    void *arena = gqr_arena_alloc(m);
    int rc = arena ? GQA_OK : GQR_ENOMEM;
    if (!rc && argc > 1 && gqr_checkpoint_open(&ck, argv[1], m, err, sizeof err) != 0) {
        fprintf(stderr, "cross_driver: %s\n", err);
        return 1;
    }
    if (!rc)
        rc = argc > 1 ? m->init_tensors(&s, arena, m->arena_bytes, ck.tensors, ck.n_tensors)
                      : m->init_embedded(&s, arena, m->arena_bytes);
    if (!rc)
        rc = run(m, s);
    if (rc)
        fprintf(stderr, "cross_driver: %s\n", gqr_strerror(rc));
    gqr_checkpoint_close(&ck);
    gqr_arena_free(arena);
    return rc ? 1 : 0;
}
