/*
 * test_batch.c: forward_seqs, many sequences stepped together over a paged
 * KV cache (issue 19), on generated models of tests/models.def.
 *
 * A schedule like a serving engine's: five sequences of different prompt
 * lengths (one running to the full context), joining at different steps,
 * prefilling in chunks of 1 to 36 tokens beside others' decoding, ending
 * at different steps; their pages taken from a shuffled free list as they
 * grow and given back when they end (so pages move between sequences and
 * interleave), the pool's never-written bytes 0xff (NaN in every KV type).
 *
 * - Each sequence's logits at every step against the same sequence run
 *   alone on its own instance through forward / forward_batch (the
 *   instance's own cache): equal within TOLERANCE (QUANT_TOLERANCE for
 *   block-type weights or a q8_0 cache; see there).
 * - Bit for bit: the same schedule on 1, 2 and 3 threads, with other page
 *   shuffles and other orders of the sequences in each step, and each
 *   sequence alone in its forward_seqs calls (so its chunks fall otherwise
 *   in the step's blocks of rows): the engine relies on it for seeded
 *   sampling that does not depend on the other users.
 * - Every error code, and that an error writes nothing (pool and logits
 *   unchanged); an instance of seqs_arena_bytes runs forward_seqs only.
 */
#include <CUnit/Basic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_run.h"
#include "gqa_api.h"
#include "quant.h"
#include "testing.h"

#define MODEL(stem, ...) extern const gqa_model_api stem##_api;
#include "models.def"
#undef MODEL

/* forward_seqs against forward_batch: the same operations in another
 * order (decode's attention in one span where forward splits it across
 * threads, every product through the tiles where forward's one token
 * takes a dot per row), so float rounding: measured at most 1.7e-6
 * relative to the largest logit.  An f16 or bf16 cache rounds K and V
 * after that, so a last bit moves a value by a step of the type now and
 * then (measured 9.7e-5 for f16).  Block-type weights or a q8_0 cache
 * quantize a step of max|x| / 127 (measured 1.2e-2 for kv_q8): as
 * test_model's QUANT_TOLERANCE.  A wrong page, position or row is off
 * by ~100%. */
#define TOLERANCE 1e-5
#define HALF_TOLERANCE 1e-3
#define QUANT_TOLERANCE 6e-2

typedef struct {
    const gqa_model_api *api;
    const char *stem; /* build/gen/STEM.bin holds its weights */
} Case;

static const Case cases[] = {
    {&tiny_api, "tiny"},         {&tiny_mha_api, "tiny_mha"}, {&tiny_mqa_api, "tiny_mqa"},
    {&g3bias_api, "g3bias"},     {&g7_api, "g7"},             {&g32_api, "g32"},
    {&halves_api, "halves"},     {&llama3_api, "llama3"},     {&qmix_api, "qmix"},
    {&q40_api, "q40"},           {&q4k_tied_api, "q4k_tied"}, {&kv_f16_api, "kv_f16"},
    {&kv_bf16_api, "kv_bf16"},   {&kv_q8_api, "kv_q8"},       {&swa_api, "swa"},
    {&swa_f16_api, "swa_f16"},   {&swa_mix_api, "swa_mix"},
    {&tiny_fs_api, "tiny_fs"},   {&swa_mix_fs_api, "swa_mix_fs"}, {&fortune_api, "fortune"},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* ---- weights and memory ---- */

static void *alloc64(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}

/* The packed weights of build/gen/STEM.bin (after its 28-byte header). */
static void *load_weights(const char *stem, size_t *bytes) {
    char path[512];
    size_t n = 0;
    char *all;
    void *w;
    snprintf(path, sizeof path, "build/gen/%s.bin", stem);
    all = test_read_file(path, &n);
    if (!all || n < 28) {
        free(all);
        return NULL;
    }
    w = alloc64(n - 28);
    memcpy(w, all + 28, n - 28);
    free(all);
    *bytes = n - 28;
    return w;
}

static double tolerance(const gqa_model_api *api) {
    for (size_t i = 0; i < api->n_tensors; i++)
        if (gqr_q_is_block(api->tensors[i].dtype))
            return QUANT_TOLERANCE;
    return api->shape.kv_type == GQA_DT_Q8_0 ? QUANT_TOLERANCE
           : api->shape.kv_type != GQA_DT_F32 ? HALF_TOLERANCE
                                              : TOLERANCE;
}

/* ---- a deterministic schedule ---- */

static uint64_t rng_state;
static int rnd(int n) { /* [0, n) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (int)(rng_state % (uint64_t)n);
}

#define K 5           /* sequences */
#define MAX_CALLS 400 /* a sequence's forward_seqs calls, at most */

/* One sequence: its tokens, the calls that run them (a chunk of its
 * prompt or one generated token each) and the step it joins at. */
typedef struct {
    int len, start, n_calls;
    int *tokens;
    int pos[MAX_CALLS], n[MAX_CALLS], want[MAX_CALLS];
} Plan;

static void plan_make(Plan *p, int k, const gqa_shape *sh) {
    int ctx = sh->seq_len, gen = 1 + rnd(8), prompt, at = 0;
    prompt = k == 3 ? ctx - gen : 1 + rnd(ctx / 2 < 40 ? ctx / 2 : 40);
    if (k == 0)
        prompt = 1; /* decoding from its first token */
    p->len = prompt + gen;
    p->start = k == 3 ? 0 : rnd(6);
    p->tokens = malloc(sizeof(int) * (size_t)p->len);
    for (int i = 0; i < p->len; i++)
        p->tokens[i] = rnd(sh->vocab_size);
    p->n_calls = 0;
    while (at < p->len) {
        int c = p->n_calls++, n = at < prompt ? 1 + rnd(36) : 1;
        if (at < prompt && n > prompt - at)
            n = prompt - at;
        p->pos[c] = at;
        p->n[c] = n;
        p->want[c] = at + n >= prompt || rnd(2); /* some chunks skip the classifier */
        at += n;
    }
}

/* Logits of every call of every sequence: [k][call][vocab]. */
typedef struct {
    float *v[K];
} Logs;

static void logs_new(Logs *l, const Plan *plans, int vocab) {
    for (int k = 0; k < K; k++) {
        size_t n = (size_t)plans[k].n_calls * (size_t)vocab;
        l->v[k] = malloc(sizeof(float) * n);
        for (size_t i = 0; i < n; i++)
            l->v[k][i] = -12345.0f;
    }
}

static void logs_free(Logs *l) {
    for (int k = 0; k < K; k++)
        free(l->v[k]);
}

/* ---- running a schedule through forward_seqs ---- */

typedef struct {
    const gqa_model_api *api;
    gqa_state *s;
    void *arena;
    unsigned char *pool;
    size_t n_pages;
    int *free_pages, n_free;
} Runner;

static int runner_new(Runner *r, const gqa_model_api *api, const void *w, size_t wbytes, size_t arena_bytes,
                      size_t n_pages, int threads) {
    r->api = api;
    r->arena = alloc64(arena_bytes);
    r->n_pages = n_pages;
    r->pool = alloc64(n_pages * api->page_bytes);
    memset(r->pool, 0xff, n_pages * api->page_bytes); /* NaN in every KV type */
    r->free_pages = malloc(sizeof(int) * n_pages);
    r->n_free = (int)n_pages;
    for (size_t i = 0; i < n_pages; i++)
        r->free_pages[i] = (int)i;
    if (api->init(&r->s, r->arena, arena_bytes, w, wbytes) != GQA_OK)
        return -1;
    api->set_threads(r->s, threads);
    return 0;
}

static void runner_free(Runner *r) {
    free(r->arena);
    free(r->pool);
    free(r->free_pages);
}

/* A page from anywhere in the free list (so sequences' pages interleave). */
static int take_page(Runner *r) {
    int i = rnd(r->n_free), p = r->free_pages[i];
    r->free_pages[i] = r->free_pages[--r->n_free];
    return p;
}

/* The schedule: at each step every sequence that has joined and not
 * ended runs its next call, the step's sequences in a shuffled order;
 * only (1 << k) & mask run.  Pages are taken as sequences grow and given
 * back when they end.  Returns the first error of forward_seqs. */
static int run_schedule(Runner *r, const Plan *plans, Logs *logs, unsigned mask, uint64_t seed) {
    int next[K] = {0}, pages[K][64], n_pages[K] = {0}, vocab = r->api->shape.vocab_size;
    int step, err = GQA_OK, busy = 1;
    rng_state = seed;
    for (step = 0; busy && !err; step++) {
        gqa_seq seqs[K];
        int order[K], n = 0;
        busy = 0;
        for (int k = 0; k < K; k++)
            if ((mask >> k & 1) && next[k] < plans[k].n_calls) {
                busy = 1;
                if (plans[k].start <= step)
                    order[n++] = k;
            }
        for (int i = n - 1; i > 0; i--) {
            int j = rnd(i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int i = 0; i < n; i++) {
            int k = order[i], c = next[k], end = plans[k].pos[c] + plans[k].n[c];
            while (n_pages[k] * 16 < end)
                pages[k][n_pages[k]++] = take_page(r);
            seqs[i].tokens = plans[k].tokens + plans[k].pos[c];
            seqs[i].n = plans[k].n[c];
            seqs[i].pos = plans[k].pos[c];
            seqs[i].pages = pages[k];
            seqs[i].logits = plans[k].want[c] ? logs->v[k] + (size_t)c * (size_t)vocab : NULL;
        }
        if (n)
            err = r->api->forward_seqs(r->s, r->pool, r->n_pages, seqs, n);
        for (int i = 0; i < n; i++) {
            int k = order[i];
            if (++next[k] == plans[k].n_calls) /* ended: its pages go back */
                while (n_pages[k])
                    r->free_pages[r->n_free++] = pages[k][--n_pages[k]];
        }
    }
    return err;
}

/* Pages the schedule may hold at once, at most: every sequence whole. */
static size_t pages_needed(const Plan *plans) {
    size_t n = 0;
    for (int k = 0; k < K; k++)
        n += (size_t)(plans[k].len + 15) / 16;
    return n;
}

/* ---- the reference: each sequence alone on its own cache ---- */

static double reference_diff(const gqa_model_api *api, const void *w, size_t wbytes, const Plan *plans,
                             const Logs *logs) {
    int vocab = api->shape.vocab_size;
    double worst = 0;
    float *got = malloc(sizeof(float) * (size_t)vocab);
    void *arena = alloc64(api->arena_bytes);
    for (int k = 0; k < K; k++) {
        gqa_state *s;
        CU_ASSERT_FATAL(api->init(&s, arena, api->arena_bytes, w, wbytes) == GQA_OK);
        api->set_threads(s, 2);
        for (int c = 0; c < plans[k].n_calls; c++) {
            const Plan *p = &plans[k];
            int rc = p->n[c] == 1 ? api->forward(s, p->tokens[p->pos[c]], p->pos[c], got)
                                  : api->forward_batch(s, p->tokens + p->pos[c], p->n[c], p->pos[c], got);
            CU_ASSERT_EQUAL_FATAL(rc, GQA_OK);
            if (p->want[c]) {
                double d = test_rel_diff(logs->v[k] + (size_t)c * (size_t)vocab, got, (size_t)vocab);
                worst = d > worst ? d : worst;
            }
        }
    }
    free(got);
    free(arena);
    return worst;
}

/* Whether two runs' logits are the same bits wherever logits were asked. */
static int logs_equal(const Logs *a, const Logs *b, const Plan *plans, int vocab) {
    for (int k = 0; k < K; k++)
        for (int c = 0; c < plans[k].n_calls; c++)
            if (plans[k].want[c] &&
                memcmp(a->v[k] + (size_t)c * (size_t)vocab, b->v[k] + (size_t)c * (size_t)vocab,
                       sizeof(float) * (size_t)vocab) != 0)
                return 0;
    return 1;
}

/* One model: the schedule batched on 1 thread (an instance of
 * seqs_arena_bytes), against the reference, then bit for bit the same on
 * 2 and 3 threads (full arenas, other shuffles) and each sequence alone. */
static void check_case(const Case *c) {
    const gqa_model_api *api = c->api;
    int vocab = api->shape.vocab_size;
    size_t wbytes = 0, n_pages;
    void *w = load_weights(c->stem, &wbytes);
    Plan plans[K];
    Logs base, other;
    Runner r;
    double diff, tol = tolerance(api);
    CU_ASSERT_FATAL(w != NULL);
    rng_state = 0x9e3779b97f4a7c15ull ^ (uint64_t)vocab;
    for (int k = 0; k < K; k++)
        plan_make(&plans[k], k, &api->shape);
    n_pages = pages_needed(plans) + 3;
    logs_new(&base, plans, vocab);
    CU_ASSERT_FATAL(runner_new(&r, api, w, wbytes, api->seqs_arena_bytes, n_pages, 1) == 0);
    CU_ASSERT_EQUAL(run_schedule(&r, plans, &base, (1u << K) - 1, 1), GQA_OK);
    runner_free(&r);
    diff = reference_diff(api, w, wbytes, plans, &base);
    fprintf(stderr, "\n  %s: %d sequences, %zu pages: against each alone %.3g (tolerance %.3g)", c->stem, K,
            n_pages, diff, tol);
    CU_ASSERT(diff <= tol);
    for (int threads = 2; threads <= 3; threads++) {
        logs_new(&other, plans, vocab);
        CU_ASSERT_FATAL(runner_new(&r, api, w, wbytes, api->arena_bytes, n_pages, threads) == 0);
        CU_ASSERT_EQUAL(run_schedule(&r, plans, &other, (1u << K) - 1, (uint64_t)threads * 77), GQA_OK);
        runner_free(&r);
        if (!logs_equal(&base, &other, plans, vocab))
            fprintf(stderr, "\n%s: %d threads differ from 1\n", c->stem, threads);
        CU_ASSERT(logs_equal(&base, &other, plans, vocab));
        logs_free(&other);
    }
    logs_new(&other, plans, vocab);
    CU_ASSERT_FATAL(runner_new(&r, api, w, wbytes, api->arena_bytes, n_pages, 2) == 0);
    for (int k = 0; k < K; k++)
        CU_ASSERT_EQUAL(run_schedule(&r, plans, &other, 1u << k, 1000 + (uint64_t)k), GQA_OK);
    runner_free(&r);
    if (!logs_equal(&base, &other, plans, vocab))
        fprintf(stderr, "\n%s: a sequence alone differs from it among others\n", c->stem);
    CU_ASSERT(logs_equal(&base, &other, plans, vocab));
    logs_free(&other);
    logs_free(&base);
    for (int k = 0; k < K; k++)
        free(plans[k].tokens);
    free(w);
}

static void test_models(void) {
    for (size_t i = 0; i < N_CASES; i++)
        check_case(&cases[i]);
}

/* ---- a chunk cut anywhere by the step's blocks of rows ---- */

/* A chunk of 30 tokens at position P (a window or more past the start)
 * after a filler sequence of 1 .. 80 rows in the same call, so that the
 * blocks of rows (GQ_BATCH: 16 or 64) cut it at every offset: its logits
 * the same bits as the chunk alone. */
static void check_cuts(const Case *c) {
    const gqa_model_api *api = c->api;
    int vocab = api->shape.vocab_size, ctx = api->shape.seq_len, P = ctx - 40 < 100 ? ctx - 40 : 100;
    int tokens[130], filler[80], pages[2][16], cut, same = 1;
    size_t wbytes = 0, n_pages = 20;
    void *w = load_weights(c->stem, &wbytes), *arena = alloc64(api->arena_bytes);
    unsigned char *pool = alloc64(n_pages * api->page_bytes);
    float *alone = malloc(sizeof(float) * (size_t)vocab), *got = malloc(sizeof(float) * (size_t)vocab);
    gqa_seq seqs[2];
    gqa_state *s;
    CU_ASSERT_FATAL(w && P + 30 <= ctx && P + 30 <= 130);
    CU_ASSERT_FATAL(api->init(&s, arena, api->arena_bytes, w, wbytes) == GQA_OK);
    memset(pool, 0xff, n_pages * api->page_bytes);
    rng_state = 99;
    for (int i = 0; i < 130; i++)
        tokens[i] = rnd(vocab);
    for (int i = 0; i < 80; i++)
        filler[i] = rnd(vocab);
    for (int i = 0; i < 16; i++) { /* interleaved pages: the chunk's even, the filler's odd */
        pages[0][i] = 2 * (9 - i % 10);
        pages[1][i] = 2 * (i % 10) + 1;
    }
    seqs[0] = (gqa_seq){tokens, P, 0, pages[0], NULL};
    CU_ASSERT_FATAL(P == 0 || api->forward_seqs(s, pool, n_pages, seqs, 1) == GQA_OK);
    seqs[0] = (gqa_seq){tokens + P, 30, P, pages[0], alone};
    CU_ASSERT_FATAL(api->forward_seqs(s, pool, n_pages, seqs, 1) == GQA_OK);
    for (cut = 1; cut <= 80 && cut <= ctx; cut++) {
        seqs[1] = seqs[0];
        seqs[1].logits = got;
        seqs[0] = (gqa_seq){filler, cut, 0, pages[1], NULL};
        CU_ASSERT_FATAL(api->forward_seqs(s, pool, n_pages, seqs, 2) == GQA_OK);
        same &= memcmp(alone, got, sizeof(float) * (size_t)vocab) == 0;
        seqs[0] = seqs[1];
    }
    if (!same)
        fprintf(stderr, "\n%s: a chunk cut by the blocks differs from it whole\n", c->stem);
    CU_ASSERT(same);
    free(alone);
    free(got);
    free(pool);
    free(arena);
    free(w);
}

static void test_cuts(void) {
    for (size_t i = 0; i < N_CASES; i++)
        check_cuts(&cases[i]);
}

/* ---- the table's sizes ---- */

static void test_sizes(void) {
    for (size_t i = 0; i < N_CASES; i++) {
        const gqa_model_api *api = cases[i].api;
        const gqa_shape *sh = &api->shape;
        CU_ASSERT_EQUAL(api->page_positions, 16);
        CU_ASSERT_PTR_NOT_NULL(api->forward_seqs);
        CU_ASSERT(api->seqs_arena_bytes == api->arena_bytes - api->kv_cache_bytes);
        CU_ASSERT(api->page_bytes % 64 == 0);
        /* without a window, the instance's cache is a page's share of
         * every block of the context */
        if (sh->window == 0)
            CU_ASSERT_EQUAL(api->kv_cache_bytes, api->page_bytes * (size_t)((sh->seq_len + 15) / 16));
    }
}

/* ---- errors ---- */

/* The call with seqs[0..n) must return want and write nothing. */
static void expect_error(const gqa_model_api *api, gqa_state *s, unsigned char *pool, size_t n_pages,
                         const gqa_seq *seqs, int n, int want, const char *what) {
    size_t bytes = n_pages * api->page_bytes;
    unsigned char *copy = malloc(bytes);
    int vocab = api->shape.vocab_size, rc;
    memcpy(copy, pool, bytes);
    for (int i = 0; i < n && seqs; i++)
        if (seqs[i].logits)
            for (int j = 0; j < vocab; j++)
                seqs[i].logits[j] = 7.0f;
    rc = api->forward_seqs(s, pool, n_pages, seqs, n);
    if (rc != want)
        fprintf(stderr, "\n%s: %d, expected %d\n", what, rc, want);
    CU_ASSERT_EQUAL(rc, want);
    CU_ASSERT(memcmp(copy, pool, bytes) == 0);
    for (int i = 0; i < n && seqs; i++)
        if (seqs[i].logits)
            for (int j = 0; j < vocab; j++)
                CU_ASSERT_EQUAL_FATAL(seqs[i].logits[j], 7.0f);
    free(copy);
}

static void test_errors(void) {
    const gqa_model_api *api = &tiny_api;
    int ctx = api->shape.seq_len, vocab = api->shape.vocab_size;
    size_t wbytes = 0, n_pages = (size_t)(ctx / 16) + 2;
    void *w = load_weights("tiny", &wbytes), *arena = alloc64(api->arena_bytes);
    unsigned char *pool = alloc64(n_pages * api->page_bytes);
    int tokens[300], pages_a[32], pages_b[32];
    float la[512], lb[512];
    gqa_state *s;
    gqa_seq seqs[2], bad[2];
    CU_ASSERT_FATAL(w && ctx <= 256 && vocab <= 512);
    CU_ASSERT_FATAL(api->init(&s, arena, api->arena_bytes, w, wbytes) == GQA_OK);
    memset(pool, 0xff, n_pages * api->page_bytes);
    for (int i = 0; i < 300; i++)
        tokens[i] = (i * 31 + 5) % vocab;
    for (int i = 0; i < 32; i++) {
        pages_a[i] = i % (int)n_pages;
        pages_b[i] = (int)n_pages - 1 - i % (int)n_pages;
    }
    /* a valid step first: a's first 20 positions (pages 0, 1), b's 3 */
    pages_b[0] = 5;
    seqs[0] = (gqa_seq){tokens, 20, 0, pages_a, la};
    seqs[1] = (gqa_seq){tokens + 40, 3, 0, pages_b, lb};
    CU_ASSERT_EQUAL_FATAL(api->forward_seqs(s, pool, n_pages, seqs, 2), GQA_OK);
    /* then b, valid, beside a broken a: nothing may be written */
    seqs[1].pos = 3;
#define BAD(field, value, code)                                   \
    do {                                                          \
        memcpy(bad, seqs, sizeof bad);                            \
        bad[0].field = value;                                     \
        expect_error(api, s, pool, n_pages, bad, 2, code, #field " = " #value); \
    } while (0)
    BAD(tokens, NULL, GQA_EARG);
    BAD(pages, NULL, GQA_EARG);
    BAD(n, 0, GQA_EARG);
    BAD(n, -1, GQA_EARG);
    BAD(pos, -1, GQA_EPOS);
    BAD(pos, ctx - 19, GQA_EPOS); /* pos + n = ctx + 1 */
    BAD(pos, 2147483647 - 5, GQA_EPOS);
    memcpy(bad, seqs, sizeof bad);
    bad[1].n = ctx + 1;
    expect_error(api, s, pool, n_pages, bad, 2, GQA_EPOS, "n past the context");
    {
        int t = tokens[7], p = pages_a[1];
        tokens[7] = vocab;
        expect_error(api, s, pool, n_pages, seqs, 2, GQA_ETOKEN, "token = vocab");
        tokens[7] = -1;
        expect_error(api, s, pool, n_pages, seqs, 2, GQA_ETOKEN, "token = -1");
        tokens[7] = t;
        pages_a[1] = (int)n_pages; /* position 16's page */
        expect_error(api, s, pool, n_pages, seqs, 2, GQA_EARG, "page = n_pages");
        pages_a[1] = -1;
        expect_error(api, s, pool, n_pages, seqs, 2, GQA_EARG, "page = -1");
        pages_a[1] = p;
    }
    expect_error(api, s, pool, 1, seqs, 2, GQA_EARG, "a pool of one page");
    expect_error(api, s, pool, n_pages, seqs, 0, GQA_EARG, "no sequences");
    expect_error(api, s, pool, n_pages, NULL, 2, GQA_EARG, "seqs NULL");
    expect_error(api, NULL, pool, n_pages, seqs, 2, GQA_EARG, "s NULL");
    CU_ASSERT_EQUAL(api->forward_seqs(s, NULL, n_pages, seqs, 2), GQA_EARG);
    CU_ASSERT_EQUAL(api->forward_seqs(s, pool + 4, n_pages - 1, seqs, 2), GQA_EARG); /* misaligned */
    /* and the page past the last position needs not be valid */
    pages_a[2] = -1;
    seqs[0].pos = 20;
    seqs[0].n = 12; /* positions 20 .. 31: pages 1 */
    CU_ASSERT_EQUAL(api->forward_seqs(s, pool, n_pages, seqs, 1), GQA_OK);
    free(pool);
    free(arena);
    free(w);
}

/* An instance of seqs_arena_bytes: forward_seqs only. */
static void test_seqs_arena(void) {
    const gqa_model_api *api = &tiny_api;
    size_t wbytes = 0;
    void *w = load_weights("tiny", &wbytes), *arena = alloc64(api->arena_bytes);
    unsigned char *pool = alloc64(2 * api->page_bytes);
    int tokens[4] = {1, 2, 3, 4}, pages[1] = {1};
    float logits[512], full[512];
    gqa_seq seq = {tokens, 4, 0, pages, logits};
    gqa_state *s;
    CU_ASSERT_FATAL(w != NULL);
    CU_ASSERT(api->seqs_arena_bytes < api->arena_bytes);
    CU_ASSERT_EQUAL(api->init(&s, arena, api->seqs_arena_bytes - 1, w, wbytes), GQA_EARENA);
    CU_ASSERT_FATAL(api->init(&s, arena, api->seqs_arena_bytes, w, wbytes) == GQA_OK);
    CU_ASSERT_EQUAL(api->forward(s, 1, 0, logits), GQA_EARENA);
    CU_ASSERT_EQUAL(api->forward_batch(s, tokens, 4, 0, logits), GQA_EARENA);
    CU_ASSERT_EQUAL(api->seek(s, 0), GQA_EARENA);
    CU_ASSERT_EQUAL(api->forward_seqs(s, pool, 2, &seq, 1), GQA_OK);
    /* the same step on a full instance: the same bits */
    CU_ASSERT_FATAL(api->init(&s, arena, api->arena_bytes, w, wbytes) == GQA_OK);
    seq.logits = full;
    CU_ASSERT_EQUAL(api->forward_seqs(s, pool, 2, &seq, 1), GQA_OK);
    CU_ASSERT(memcmp(logits, full, sizeof logits) == 0);
    CU_ASSERT_EQUAL(api->forward(s, 1, 0, full), GQA_OK); /* and it keeps its own cache */
    free(pool);
    free(arena);
    free(w);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("forward_seqs", NULL, NULL);
    CU_add_test(s, "sizes in the table", test_sizes);
    CU_add_test(s, "against each sequence alone; bit for bit on 1-3 threads and alone", test_models);
    CU_add_test(s, "a chunk cut anywhere by the blocks: the same bits", test_cuts);
    CU_add_test(s, "errors write nothing", test_errors);
    CU_add_test(s, "an arena without a cache", test_seqs_arena);
    return cunit_run();
}
