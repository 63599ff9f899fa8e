/*
 * sampler.c: the next token from logits, after llama2.c: greedy, softmax
 * with temperature, and top-p (nucleus).  The random stream is splitmix64,
 * which any seed (0 included) starts well and which gives the same tokens
 * for the same seed on every host.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gqr.h"

int gqr_sampler_init(gqr_sampler *s, int vocab_size, float temperature, float top_p,
                     unsigned long long seed) {
    if (!s)
        return -1;
    memset(s, 0, sizeof *s);
    /* Written so that NaN fails each test. */
    if (vocab_size <= 0 || !(temperature >= 0) || !isfinite(temperature) ||
        !(top_p > 0 && top_p <= 1))
        return -1;
    s->cand = malloc((size_t)vocab_size * sizeof *s->cand);
    if (!s->cand)
        return -1;
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng = seed;
    return 0;
}

void gqr_sampler_free(gqr_sampler *s) {
    if (!s)
        return;
    free(s->cand);
    s->cand = NULL;
}

static unsigned long long splitmix64(unsigned long long *state) {
    unsigned long long z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float gqr_random_float(gqr_sampler *s) {
    /* The top 24 bits: every such float is exact and below 1. */
    return (float)(splitmix64(&s->rng) >> 40) * (1.0f / 16777216.0f);
}

/* The first maximum, so ties and an all-NaN row still give a valid id. */
static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* x becomes softmax(x / t).  Subtracting the maximum before dividing by t
 * keeps every exponent <= 0, so no overflow even for tiny t. */
static void softmax(float *x, int n, float t) {
    float max = x[argmax(x, n)], sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf((x[i] - max) / t);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

/* An index drawn with probability p[i]; coin in [0, 1).  Rounding may leave
 * the total a hair under 1, hence the last index as the fallback. */
static int sample_mult(const float *p, int n, float coin) {
    float cdf = 0;
    for (int i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf)
            return i;
    }
    return n - 1;
}

/* Descending probability, then ascending id: qsort is not stable, and the
 * order must not depend on the C library. */
static int by_prob_desc(const void *a, const void *b) {
    const gqr_candidate *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Only tokens with p >= (1 - top_p) / (n - 1) can be in the nucleus (the
 * others together hold less than 1 - top_p), so only those are sorted.  When
 * none pass, top_p < 1/n <= max p, and the nucleus is the top token. */
static int sample_top_p(gqr_sampler *s, const float *p, float coin) {
    int n = s->vocab_size, n0 = 0;
    if (n == 1)
        return 0;
    const float cutoff = (1.0f - s->top_p) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (p[i] >= cutoff)
            s->cand[n0].p = p[i], s->cand[n0++].id = i;
    if (n0 == 0)
        return argmax(p, n);
    qsort(s->cand, (size_t)n0, sizeof *s->cand, by_prob_desc);
    float mass = 0;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        mass += s->cand[i].p;
        if (mass >= s->top_p) {
            last = i;
            break;
        }
    }
    float r = coin * mass, cdf = 0;
    for (int i = 0; i < last; i++) {
        cdf += s->cand[i].p;
        if (r < cdf)
            return s->cand[i].id;
    }
    return s->cand[last].id;
}

int gqr_sample(gqr_sampler *s, float *logits) {
    if (s->temperature == 0)
        return argmax(logits, s->vocab_size);
    softmax(logits, s->vocab_size, s->temperature);
    float coin = gqr_random_float(s);
    if (s->top_p >= 1)
        return sample_mult(logits, s->vocab_size, coin);
    return sample_top_p(s, logits, coin);
}
