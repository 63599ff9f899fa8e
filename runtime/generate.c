/*
 * generate.c: the loop every front end shares: the prompt in one batched
 * call (one position at a time where a model has no batch path), then
 * sample, stream, feed back.  Prompt and generation are timed apart because
 * they scale differently.
 */
#include <stdlib.h>
#include <time.h>

#include "gqr.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int check_args(const gqa_model_api *m, gqa_state *s, const gqr_sampler *smp,
                      const int *prompt, int n_prompt, int n_generate) {
    if (!m || !m->forward || !s || !smp || !prompt || n_prompt < 1 || n_generate < 0)
        return GQA_EARG;
    if (smp->vocab_size != gqr_vocab_size(m))
        return GQA_EARG;
    if (n_prompt > m->shape.max_positions)
        return GQA_EPOS;
    return GQA_OK;
}

/* The whole prompt through forward_batch, which runs all of it or none and
 * writes the last token's logits; without it, every prompt token through
 * forward, the classifier skipped but for the last one. */
static int run_prompt(const gqa_model_api *m, gqa_state *s, const int *prompt, int n_prompt,
                      float *logits, gqr_result *res) {
    double t0 = now_seconds();
    int rc = GQA_OK;
    if (m->forward_batch) {
        rc = m->forward_batch(s, prompt, n_prompt, 0, logits);
        if (rc == GQA_OK)
            res->n_prompt = n_prompt;
        res->prompt_seconds = now_seconds() - t0;
        return rc;
    }
    for (int pos = 0; pos < n_prompt && rc == GQA_OK; pos++) {
        rc = m->forward(s, prompt[pos], pos, pos + 1 == n_prompt ? logits : NULL);
        if (rc == GQA_OK)
            res->n_prompt = pos + 1;
    }
    res->prompt_seconds = now_seconds() - t0;
    return rc;
}

/* Sample, hand over, feed back; the token at pos is fed back only if one
 * more is wanted and fits, so no forward is wasted on the last one.  A
 * model whose every layer has a window runs past its context (its
 * max_positions): the rings keep the memory constant. */
static int run_generation(const gqa_model_api *m, gqa_state *s, gqr_sampler *smp,
                          int n_generate, gqr_token_fn on_token, void *user, float *logits,
                          gqr_result *res) {
    double t0 = now_seconds();
    int rc = GQA_OK, pos = res->n_prompt, end = m->shape.max_positions;
    if (n_generate < end - pos)
        end = pos + n_generate;
    for (; pos < end; pos++) {
        int token = gqr_sample(smp, logits);
        res->n_generated++;
        if (on_token && on_token(user, token, pos))
            break;
        if (pos + 1 < end && (rc = m->forward(s, token, pos, logits)) != GQA_OK)
            break;
    }
    res->gen_seconds = now_seconds() - t0;
    return rc;
}

int gqr_generate(const gqa_model_api *m, gqa_state *s, gqr_sampler *smp, const int *prompt,
                 int n_prompt, int n_generate, gqr_token_fn on_token, void *user,
                 gqr_result *res) {
    gqr_result scratch;
    if (!res)
        res = &scratch;
    res->n_prompt = res->n_generated = 0;
    res->prompt_seconds = res->gen_seconds = 0;
    int rc = check_args(m, s, smp, prompt, n_prompt, n_generate);
    if (rc != GQA_OK)
        return rc;
    float *logits = malloc((size_t)gqr_vocab_size(m) * sizeof *logits);
    if (!logits)
        return GQR_ENOMEM;
    rc = run_prompt(m, s, prompt, n_prompt, logits, res);
    if (rc == GQA_OK)
        rc = run_generation(m, s, smp, n_generate, on_token, user, logits, res);
    free(logits);
    return rc;
}

const char *gqr_strerror(int code) {
    switch (code) {
    case GQA_OK: return "success";
    case GQA_EARENA: return "arena NULL, too small or misaligned";
    case GQA_EWEIGHTS: return "weights NULL, or not the float count the model needs";
    case GQA_ETOKEN: return "token outside [0, vocab_size)";
    case GQA_EPOS:
        return "position outside [0, max_positions), or back where a sliding window's ring was "
               "overwritten";
    case GQA_EARG: return "invalid argument";
    case GQA_ECOMM: return "a collective operation between ranks failed, or none was set";
    case GQR_ENOMEM: return "out of memory";
    default: return "unknown error";
    }
}
