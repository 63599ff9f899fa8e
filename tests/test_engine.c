/*
 * test_engine.c: the page pool (runtime/kvpool.c) and the continuous-
 * batching engine (runtime/engine.c).
 *
 * The engine drives a gqa_model_api; here that is a fake model written
 * below whose forward_seqs also checks the engine's paging: each position
 * it runs stores (token, chain) in the sequence's page slot, chain being a
 * hash of the previous position's chain and this token, and before
 * writing it re-checks every earlier position's chain.  A page shared by
 * two sequences, or given back and reused while its sequence runs,
 * breaks a chain (counted in fake.errors).  Its logits are a hash of the
 * last chain, so a sequence's tokens depend on its whole history as read
 * from its pages: the same request alone or among many must give exactly
 * the same tokens.
 *
 * Suites:
 *   - pool: take order, empty, give, a memory that holds no page.
 *   - engine: refusals at new and submit; many requests over few slots
 *     and pages (FIFO, pages back to 0, stats); no overtaking; EBUSY;
 *     cancel queued and running; on_token stop; EOS; a full context;
 *     chunked prefill; shutdown with and without grace; never started;
 *     a model error; seeded requests alone and among many.
 */
#include <CUnit/Basic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cunit_run.h"
#include "engine.h"
#include "gqr.h"
#include "testing.h"
#include "tiny.h"

#ifndef GEN_DIR
#define GEN_DIR "build/gen" /* where tiny.bin is: the Makefile's $(BUILD)/gen */
#endif

#define V 64         /* the fake's vocab */
#define CTX 96       /* its context: 6 pages */
#define PP 16        /* positions per page */
#define SLOT_BYTES 8 /* a position's (token, chain) */
#define PAGE (PP * SLOT_BYTES)
#define MAX_REQ 64

/* ---- the fake model ---- */

static struct {
    pthread_mutex_t mu; /* the test reads these while the engine's thread writes */
    int errors;         /* paging checks failed */
    int max_batch;      /* sequences in one step at most */
    int max_n;          /* tokens of one sequence in one step at most */
    int order[4 * MAX_REQ]; /* prompt[0] of each sequence at its first step */
    int n_order;
    int delay_us;       /* per step */
    int fail;           /* the next step returns GQA_EARG */
    unsigned char used[4096]; /* pages seen in the step */
} fake = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint32_t mix(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t h = a * 0x9e3779b1u ^ (b + 0x7f4a7c15u) * 0x85ebca6bu ^ (c + 1) * 0xc2b2ae35u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

static uint32_t *slot_at(void *pool, const int *pages, int pos) {
    return (uint32_t *)((char *)pool + (size_t)pages[pos / PP] * PAGE + (size_t)(pos % PP) * SLOT_BYTES);
}

static int fake_init(gqa_state **out, void *arena, size_t bytes, const void *const *t, size_t n) {
    (void)bytes, (void)t, (void)n;
    *out = arena;
    return GQA_OK;
}

/* Every position before pos still holds its own chain. */
static int chain_intact(void *pool, const int *pages, int pos) {
    for (int q = 0; q < pos; q++) {
        uint32_t *x = slot_at(pool, pages, q), prev = q ? slot_at(pool, pages, q - 1)[1] : 0;
        if (x[1] != mix(prev, x[0], (uint32_t)q))
            return 0;
    }
    return 1;
}

/* Pages of the step's sequences in range and none shared. */
static int pages_ok(size_t n_pages, const gqa_seq *seqs, int n_seqs) {
    memset(fake.used, 0, sizeof fake.used);
    for (int i = 0; i < n_seqs; i++)
        for (int a = 0; a * PP < seqs[i].pos + seqs[i].n; a++) {
            int p = seqs[i].pages[a];
            if (p < 0 || (size_t)p >= n_pages || p >= (int)sizeof fake.used || fake.used[p]++)
                return 0;
        }
    return 1;
}

static void run_seq(void *pool, const gqa_seq *q) {
    if (q->pos == 0)
        fake.order[fake.n_order++ % (4 * MAX_REQ)] = q->tokens[0];
    if (q->n > fake.max_n)
        fake.max_n = q->n;
    if (!chain_intact(pool, q->pages, q->pos))
        fake.errors++;
    uint32_t chain = q->pos ? slot_at(pool, q->pages, q->pos - 1)[1] : 0;
    for (int i = 0; i < q->n; i++) {
        uint32_t *x = slot_at(pool, q->pages, q->pos + i);
        x[0] = (uint32_t)q->tokens[i];
        x[1] = chain = mix(chain, x[0], (uint32_t)(q->pos + i));
    }
    if (q->logits)
        for (int v = 0; v < V; v++)
            q->logits[v] = (float)(mix(chain, (uint32_t)v, 7) >> 16) / 4096.0f;
}

static int fake_forward_seqs(gqa_state *s, void *pool, size_t n_pages, const gqa_seq *seqs, int n_seqs) {
    (void)s;
    pthread_mutex_lock(&fake.mu);
    int rc = GQA_OK;
    if (fake.fail || !pages_ok(n_pages, seqs, n_seqs)) {
        fake.errors += !fake.fail;
        fake.fail = 0;
        rc = GQA_EARG;
    }
    for (int i = 0; i < n_seqs && rc == GQA_OK; i++) {
        if (seqs[i].pos < 0 || seqs[i].pos + seqs[i].n > CTX)
            fake.errors++;
        else
            run_seq(pool, &seqs[i]);
    }
    if (n_seqs > fake.max_batch)
        fake.max_batch = n_seqs;
    int delay = fake.delay_us;
    pthread_mutex_unlock(&fake.mu);
    if (delay)
        usleep((useconds_t)delay);
    return rc;
}

static gqa_model_api fake_api(void) {
    gqa_model_api m;
    memset(&m, 0, sizeof m);
    m.version = GQA_API_VERSION;
    m.name = "fake";
    m.prefix = "fake";
    m.shape.vocab_size = V;
    m.shape.seq_len = m.shape.max_positions = CTX;
    m.arena_align = 64;
    m.seqs_arena_bytes = 64;
    m.init_tensors = fake_init;
    m.page_positions = PP;
    m.page_bytes = PAGE;
    m.forward_seqs = fake_forward_seqs;
    return m;
}

static gqa_model_api FAKE;

static void fake_reset(int delay_us) {
    pthread_mutex_lock(&fake.mu);
    fake.errors = fake.max_batch = fake.max_n = fake.n_order = fake.fail = 0;
    fake.delay_us = delay_us;
    pthread_mutex_unlock(&fake.mu);
}

static int fake_get(const int *field) {
    pthread_mutex_lock(&fake.mu);
    int v = *field;
    pthread_mutex_unlock(&fake.mu);
    return v;
}

/* ---- requests and their callbacks ---- */

typedef struct Rec {
    gqr_engine *e;
    uint64_t id;
    int tokens[CTX];
    int n;            /* tokens handed on */
    int stop_after;   /* on_token asks to stop at this many (0: never) */
    int done_calls, reason, done_prompt, done_generated;
} Rec;

static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rec_cond = PTHREAD_COND_INITIALIZER;
static int n_done;

static int on_token(void *user, int token) {
    Rec *r = user;
    pthread_mutex_lock(&rec_mu);
    if (r->n < CTX)
        r->tokens[r->n] = token;
    r->n++;
    int stop = r->stop_after && r->n >= r->stop_after;
    pthread_cond_broadcast(&rec_cond);
    pthread_mutex_unlock(&rec_mu);
    return stop;
}

static void on_done(void *user, int reason, int n_prompt, int n_generated) {
    Rec *r = user;
    pthread_mutex_lock(&rec_mu);
    r->done_calls++;
    r->reason = reason;
    r->done_prompt = n_prompt;
    r->done_generated = n_generated;
    n_done++;
    pthread_cond_broadcast(&rec_cond);
    pthread_mutex_unlock(&rec_mu);
}

/* Waits (10 s at most) until *field >= want; 0 on time out. */
static int wait_for(const int *field, int want) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&rec_mu);
    while (*field < want)
        if (pthread_cond_timedwait(&rec_cond, &rec_mu, &until) != 0)
            break;
    int ok = *field >= want;
    pthread_mutex_unlock(&rec_mu);
    return ok;
}

static gqr_engine *engine(int max_seqs, int pages, int max_queue, int chunk) {
    gqr_engine_opts o = {.max_seqs = max_seqs, .kv_memory = (size_t)pages * PAGE, .max_queue = max_queue,
                         .threads = 1, .prefill_chunk = chunk};
    gqr_engine *e = NULL;
    char err[256] = "";
    int rc = gqr_engine_new(&e, &FAKE, NULL, 0, &o, err, sizeof err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    n_done = 0;
    return e;
}

/* Prompt ids: first (which names the request in fake.order), then a walk. */
static int submit(gqr_engine *e, Rec *r, int first, int n_prompt, int max_tokens, float temp, uint64_t seed,
                  int eos) {
    int prompt[CTX + 8];
    for (int i = 0; i < n_prompt && i < CTX + 8; i++)
        prompt[i] = (first + i * 7) % V;
    int stop_after = r->stop_after;
    memset(r, 0, sizeof *r);
    r->e = e;
    r->stop_after = stop_after;
    gqr_request q = {.prompt = prompt, .n_prompt = n_prompt, .max_tokens = max_tokens, .temperature = temp,
                     .top_p = 0.9f, .seed = seed, .eos = eos, .on_token = on_token, .on_done = on_done,
                     .user = r};
    return gqr_engine_submit(e, &q, &r->id);
}

/* ---- pool ---- */

static void test_pool(void) {
    gqr_kvpool p;
    char err[200] = "";
    CU_ASSERT_EQUAL(gqr_kvpool_init(&p, 100, 128, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "100 bytes holds no page of 128 bytes"));
    CU_ASSERT_EQUAL_FATAL(gqr_kvpool_init(&p, 3 * 128 + 5, 128, err, sizeof err), 0);
    CU_ASSERT_EQUAL(p.n_pages, 3);
    CU_ASSERT_EQUAL((uintptr_t)p.base % 64, 0);
    CU_ASSERT_EQUAL(gqr_kvpool_take(&p), 0);
    CU_ASSERT_EQUAL(gqr_kvpool_take(&p), 1);
    CU_ASSERT_EQUAL(gqr_kvpool_take(&p), 2);
    CU_ASSERT_EQUAL(gqr_kvpool_take(&p), -1);
    gqr_kvpool_give(&p, 1);
    CU_ASSERT_EQUAL(p.n_free, 1);
    gqr_kvpool_give(&p, 7); /* outside: ignored */
    CU_ASSERT_EQUAL(p.n_free, 1);
    CU_ASSERT_EQUAL(gqr_kvpool_take(&p), 1);
    gqr_kvpool_free(&p);
}

/* ---- engine ---- */

static void test_new_refusals(void) {
    gqr_engine *e = (gqr_engine *)&e;
    char err[256] = "";
    gqr_engine_opts o = {.max_seqs = 2, .kv_memory = 10 * PAGE, .max_queue = 4};
    gqa_model_api m = FAKE;
    m.forward_seqs = NULL;
    CU_ASSERT_EQUAL(gqr_engine_new(&e, &m, NULL, 0, &o, err, sizeof err), GQA_EARG);
    CU_ASSERT_PTR_NULL(e);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "forward_seqs"));
    o.kv_memory = PAGE - 1;
    CU_ASSERT_EQUAL(gqr_engine_new(&e, &FAKE, NULL, 0, &o, err, sizeof err), GQA_EARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "holds no page of 128 bytes"));
    o.kv_memory = 10 * PAGE;
    o.max_seqs = 0;
    CU_ASSERT_EQUAL(gqr_engine_new(&e, &FAKE, NULL, 0, &o, err, sizeof err), GQA_EARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "max-seqs 0"));
}

static void test_submit_refusals(void) {
    gqr_engine *e = engine(2, 4, 4, 0);
    Rec r = {0};
    int ok[2] = {1, 2}, bad[2] = {1, V};
    gqr_request q = {.prompt = ok, .n_prompt = 2, .max_tokens = 4, .temperature = 1, .top_p = 1, .eos = -1,
                     .on_done = on_done, .user = &r};
    gqr_request b = q;
    CU_ASSERT_EQUAL(gqr_engine_submit(e, NULL, NULL), GQA_EARG);
    b.n_prompt = 0;
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQA_EARG);
    b = q, b.max_tokens = 0;
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQA_EARG);
    b = q, b.prompt = bad;
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQA_EARG);
    b = q, b.temperature = -1;
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQA_EARG);
    b = q, b.top_p = 0;
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQA_EARG);
    b = q, b.eos = V;
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQA_EARG);
    b = q, b.max_tokens = CTX - 1; /* 2 + 95 > 96 */
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQR_ETOOLONG);
    b = q, b.max_tokens = 4 * PP; /* 5 pages > the pool's 4 */
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQR_ETOOLONG);
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT_EQUAL(st.rejected, 2);
    CU_ASSERT_EQUAL(st.requests, 0);
    gqr_engine_free(e);
    /* Past the context though the pool would hold it. */
    e = engine(2, 40, 4, 0);
    b = q, b.max_tokens = CTX - 1;
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), GQR_ETOOLONG);
    b = q, b.max_tokens = CTX - 2; /* exactly the context */
    CU_ASSERT_EQUAL(gqr_engine_submit(e, &b, NULL), 0);
    gqr_engine_free(e);
    CU_ASSERT(r.done_calls == 1 && r.reason == GQR_FINISH_SHUTDOWN);
}

/* n requests of mixed lengths over slots and pages; rec[i]'s prompt
 * starts with id i. */
static void run_many(gqr_engine *e, Rec *rec, int n, float temp) {
    for (int i = 0; i < n; i++) {
        int n_prompt = 1 + (i * 13) % 40, max_tokens = 1 + (i * 7) % 30;
        CU_ASSERT_EQUAL(submit(e, &rec[i], i, n_prompt, max_tokens, temp, 1000 + (uint64_t)i, -1), 0);
    }
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&n_done, n));
}

static void test_many(void) {
    fake_reset(0);
    gqr_engine *e = engine(3, 10, 64, 0);
    static Rec rec[20];
    run_many(e, rec, 20, 0);
    uint64_t tokens = 0, prompt = 0;
    for (int i = 0; i < 20; i++) {
        int n_prompt = 1 + (i * 13) % 40, max_tokens = 1 + (i * 7) % 30;
        CU_ASSERT_EQUAL(rec[i].done_calls, 1);
        CU_ASSERT_EQUAL(rec[i].reason, GQR_FINISH_LENGTH);
        CU_ASSERT_EQUAL(rec[i].n, max_tokens);
        CU_ASSERT_EQUAL(rec[i].done_generated, max_tokens);
        CU_ASSERT_EQUAL(rec[i].done_prompt, n_prompt);
        tokens += (uint64_t)max_tokens;
        prompt += (uint64_t)n_prompt;
    }
    CU_ASSERT_EQUAL(fake_get(&fake.errors), 0);
    CU_ASSERT(fake_get(&fake.max_batch) <= 3 && fake_get(&fake.max_batch) >= 2);
    CU_ASSERT_EQUAL(fake_get(&fake.n_order), 20);
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(fake.order[i], i); /* admitted in submission order */
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT_EQUAL(st.requests, 20);
    CU_ASSERT_EQUAL(st.finished[GQR_FINISH_LENGTH], 20);
    CU_ASSERT_EQUAL(st.tokens, tokens);
    CU_ASSERT_EQUAL(st.prompt_tokens, prompt);
    CU_ASSERT_EQUAL(st.pages_used, 0);
    CU_ASSERT_EQUAL(st.pages_total, 10);
    CU_ASSERT_EQUAL(st.running, 0);
    CU_ASSERT_EQUAL(st.queued, 0);
    CU_ASSERT(st.tokens_per_s > 0);
    CU_ASSERT_EQUAL(st.ttft.n, 20);
    CU_ASSERT_EQUAL(st.itl.n, tokens - 20);
    uint64_t sum = 0;
    for (int b = 0; b <= GQR_HIST_BUCKETS; b++)
        sum += st.itl.count[b];
    CU_ASSERT_EQUAL(sum, st.itl.n);
    gqr_engine_free(e);
}

/* A 1-page request queued behind a 4-page one waits though it would fit. */
static void test_no_overtaking(void) {
    fake_reset(300);
    gqr_engine *e = engine(4, 8, 8, 0);
    static Rec a, b, c;
    CU_ASSERT_EQUAL(submit(e, &a, 1, 16, 80, 0, 1, -1), 0); /* 6 pages */
    CU_ASSERT_EQUAL(submit(e, &b, 2, 30, 34, 0, 2, -1), 0); /* 4: waits for a */
    CU_ASSERT_EQUAL(submit(e, &c, 3, 2, 3, 0, 3, -1), 0);   /* 1: fits, but after b */
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT_EQUAL(st.running, 1);
    CU_ASSERT_EQUAL(st.queued, 2);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&n_done, 3));
    CU_ASSERT_EQUAL(fake_get(&fake.n_order), 3);
    CU_ASSERT(fake.order[0] == 1 && fake.order[1] == 2 && fake.order[2] == 3);
    CU_ASSERT_EQUAL(a.n, 80);
    CU_ASSERT(c.reason == GQR_FINISH_LENGTH && b.reason == GQR_FINISH_LENGTH);
    CU_ASSERT_EQUAL(fake_get(&fake.errors), 0);
    /* b and c waited for a's 80 steps of 0.3 ms at least: TTFTs past 5 ms. */
    gqr_engine_stats_get(e, &st);
    CU_ASSERT_EQUAL(st.ttft.n, 3);
    CU_ASSERT(st.ttft.count[0] + st.ttft.count[1] + st.ttft.count[2] <= 1);
    CU_ASSERT(st.ttft.sum >= 2 * 0.024 && st.itl.sum >= 79 * 0.0003);
    gqr_engine_free(e);
}

static void test_busy(void) {
    fake_reset(200);
    gqr_engine *e = engine(1, 6, 2, 0);
    static Rec r[4];
    CU_ASSERT_EQUAL(submit(e, &r[0], 0, 4, 40, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &r[1], 1, 4, 4, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &r[2], 2, 4, 4, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &r[3], 3, 4, 4, 0, 1, -1), GQR_EBUSY);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&n_done, 3));
    CU_ASSERT_EQUAL(r[3].done_calls, 0);
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT(st.rejected == 1 && st.requests == 3 && st.finished[GQR_FINISH_LENGTH] == 3);
    gqr_engine_free(e);
    /* No queue: what cannot start at once is refused. */
    e = engine(1, 6, 0, 0);
    CU_ASSERT_EQUAL(submit(e, &r[0], 0, 4, 4, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &r[1], 1, 4, 4, 0, 1, -1), GQR_EBUSY);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&r[0].done_calls, 1));
    gqr_engine_free(e);
}

static void test_cancel(void) {
    fake_reset(1000);
    gqr_engine *e = engine(1, 6, 4, 0);
    static Rec a, b;
    CU_ASSERT_EQUAL(submit(e, &a, 1, 4, 80, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &b, 2, 4, 8, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    gqr_engine_cancel(e, b.id); /* queued */
    CU_ASSERT(wait_for(&b.done_calls, 1));
    CU_ASSERT(b.reason == GQR_FINISH_CANCEL && b.n == 0 && b.done_generated == 0);
    CU_ASSERT(wait_for(&a.n, 5));
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT(st.pages_used > 0);
    gqr_engine_cancel(e, a.id); /* running */
    CU_ASSERT(wait_for(&a.done_calls, 1));
    CU_ASSERT_EQUAL(a.reason, GQR_FINISH_CANCEL);
    CU_ASSERT(a.n >= 5 && a.n < 80 && a.done_generated == a.n);
    gqr_engine_cancel(e, a.id); /* done: ignored */
    gqr_engine_cancel(e, 12345);
    gqr_engine_stats_get(e, &st);
    CU_ASSERT(st.pages_used == 0 && st.running == 0 && st.finished[GQR_FINISH_CANCEL] == 2);
    gqr_engine_free(e);
    CU_ASSERT(a.done_calls == 1 && b.done_calls == 1);
    CU_ASSERT_EQUAL(fake_get(&fake.errors), 0);
}

static void test_stop_and_eos(void) {
    fake_reset(0);
    gqr_engine *e = engine(2, 12, 4, 0);
    static Rec full, stop, eos;
    CU_ASSERT_EQUAL(submit(e, &full, 5, 6, 30, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&full.done_calls, 1));
    /* The first token that has not occurred before, past the first. */
    int k = 1;
    for (; k < 30; k++) {
        int seen = 0;
        for (int i = 0; i < k; i++)
            seen |= full.tokens[i] == full.tokens[k];
        if (!seen)
            break;
    }
    CU_ASSERT_FATAL(k < 30);
    CU_ASSERT_EQUAL(submit(e, &eos, 5, 6, 30, 0, 1, full.tokens[k]), 0);
    CU_ASSERT(wait_for(&eos.done_calls, 1));
    CU_ASSERT(eos.reason == GQR_FINISH_STOP && eos.n == k && eos.done_generated == k);
    CU_ASSERT_EQUAL(memcmp(eos.tokens, full.tokens, (size_t)k * sizeof *full.tokens), 0);
    stop.stop_after = 3;
    CU_ASSERT_EQUAL(submit(e, &stop, 5, 6, 30, 0, 1, -1), 0);
    CU_ASSERT(wait_for(&stop.done_calls, 1));
    CU_ASSERT(stop.reason == GQR_FINISH_STOP && stop.n == 3 && stop.done_generated == 3);
    gqr_engine_free(e);
}

/* prompt + max_tokens == the context: every token, no position past it. */
static void test_context_full(void) {
    fake_reset(0);
    gqr_engine *e = engine(2, 12, 4, 7);
    static Rec a, b;
    CU_ASSERT_EQUAL(submit(e, &a, 1, 50, CTX - 50, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &b, 2, CTX - 1, 1, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&n_done, 2));
    CU_ASSERT(a.reason == GQR_FINISH_LENGTH && a.n == CTX - 50);
    CU_ASSERT(b.reason == GQR_FINISH_LENGTH && b.n == 1);
    CU_ASSERT_EQUAL(fake_get(&fake.errors), 0);
    CU_ASSERT_EQUAL(fake_get(&fake.max_n), 7); /* prompts ran in chunks of 7 */
    gqr_engine_free(e);
}

static void test_shutdown_grace(void) {
    fake_reset(500);
    gqr_engine *e = engine(2, 12, 4, 0);
    static Rec a, b, c, d;
    CU_ASSERT_EQUAL(submit(e, &a, 1, 4, 40, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &b, 2, 4, 40, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &c, 3, 4, 40, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&a.n, 1));
    gqr_engine_shutdown(e, 30);
    CU_ASSERT(a.reason == GQR_FINISH_LENGTH && a.n == 40);
    CU_ASSERT(b.reason == GQR_FINISH_LENGTH && b.n == 40);
    CU_ASSERT(c.reason == GQR_FINISH_SHUTDOWN && c.n == 0 && c.done_calls == 1);
    CU_ASSERT_EQUAL(submit(e, &d, 4, 4, 4, 0, 1, -1), GQR_EBUSY);
    gqr_engine_free(e);
    CU_ASSERT(a.done_calls == 1 && b.done_calls == 1 && c.done_calls == 1 && d.done_calls == 0);
}

static void test_shutdown_cut(void) {
    fake_reset(3000);
    gqr_engine *e = engine(2, 12, 4, 0);
    static Rec a;
    CU_ASSERT_EQUAL(submit(e, &a, 1, 4, 80, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&a.n, 2));
    gqr_engine_shutdown(e, 0);
    CU_ASSERT(a.reason == GQR_FINISH_SHUTDOWN && a.n < 80 && a.done_calls == 1);
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT(st.pages_used == 0 && st.finished[GQR_FINISH_SHUTDOWN] == 1);
    gqr_engine_free(e);
    CU_ASSERT_EQUAL(a.done_calls, 1);
}

/* Freed without a start: each request ends SHUTDOWN, once. */
static void test_never_started(void) {
    fake_reset(0);
    gqr_engine *e = engine(1, 12, 4, 0);
    static Rec a, b;
    CU_ASSERT_EQUAL(submit(e, &a, 1, 4, 8, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &b, 2, 4, 8, 0, 1, -1), 0);
    gqr_engine_free(e);
    CU_ASSERT(a.done_calls == 1 && a.reason == GQR_FINISH_SHUTDOWN);
    CU_ASSERT(b.done_calls == 1 && b.reason == GQR_FINISH_SHUTDOWN);
}

static void test_model_error(void) {
    fake_reset(0);
    gqr_engine *e = engine(2, 12, 4, 0);
    static Rec a, b;
    CU_ASSERT_EQUAL(submit(e, &a, 1, 4, 8, 0, 1, -1), 0);
    CU_ASSERT_EQUAL(submit(e, &b, 2, 4, 8, 0, 1, -1), 0);
    pthread_mutex_lock(&fake.mu);
    fake.fail = 1;
    pthread_mutex_unlock(&fake.mu);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&n_done, 2));
    CU_ASSERT(a.reason == GQR_FINISH_ERROR && b.reason == GQR_FINISH_ERROR);
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT(st.finished[GQR_FINISH_ERROR] == 2 && st.pages_used == 0);
    gqr_engine_free(e);
}

/* Sampled requests give the same tokens alone as 12 at once over 3 slots. */
static void test_same_alone(void) {
    fake_reset(0);
    static Rec many[12], alone[12];
    gqr_engine *e = engine(3, 9, 64, 5);
    run_many(e, many, 12, 0.8f);
    gqr_engine_free(e);
    CU_ASSERT(fake_get(&fake.max_batch) >= 2);
    for (int i = 0; i < 12; i++) {
        e = engine(1, 9, 1, 0);
        int n_prompt = 1 + (i * 13) % 40, max_tokens = 1 + (i * 7) % 30;
        CU_ASSERT_EQUAL(submit(e, &alone[i], i, n_prompt, max_tokens, 0.8f, 1000 + (uint64_t)i, -1), 0);
        CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
        CU_ASSERT(wait_for(&alone[i].done_calls, 1));
        gqr_engine_free(e);
        CU_ASSERT_EQUAL(alone[i].n, many[i].n);
        CU_ASSERT_EQUAL(memcmp(alone[i].tokens, many[i].tokens, (size_t)many[i].n * sizeof(int)), 0);
    }
    CU_ASSERT_EQUAL(fake_get(&fake.errors), 0);
}

/* Submitters in 4 threads, every third request cancelled at once, EBUSY
 * retried: each accepted request ends once, every page comes back. */
#define SUBMITTERS 4
#define PER_THREAD 25
static Rec threaded[SUBMITTERS * PER_THREAD];
static int accepted[SUBMITTERS * PER_THREAD];

static void *submitter(void *arg) {
    gqr_engine *e = ((void **)arg)[0];
    int t = (int)(intptr_t)((void **)arg)[1];
    for (int k = 0; k < PER_THREAD; k++) {
        int i = t * PER_THREAD + k, rc;
        while ((rc = submit(e, &threaded[i], i % V, 1 + i % 30, 1 + i % 20, 1, (uint64_t)i, -1)) == GQR_EBUSY)
            usleep(100);
        accepted[i] = rc == 0;
        if (rc == 0 && k % 3 == 0)
            gqr_engine_cancel(e, threaded[i].id);
    }
    return NULL;
}

static void test_threads(void) {
    fake_reset(50);
    gqr_engine *e = engine(4, 16, 8, 6);
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    pthread_t th[SUBMITTERS];
    void *args[SUBMITTERS][2];
    for (int t = 0; t < SUBMITTERS; t++) {
        args[t][0] = e;
        args[t][1] = (void *)(intptr_t)t;
        CU_ASSERT_FATAL(pthread_create(&th[t], NULL, submitter, args[t]) == 0);
    }
    for (int t = 0; t < SUBMITTERS; t++)
        pthread_join(th[t], NULL);
    int n = 0;
    for (int i = 0; i < SUBMITTERS * PER_THREAD; i++)
        n += accepted[i];
    CU_ASSERT_EQUAL(n, SUBMITTERS * PER_THREAD);
    CU_ASSERT(wait_for(&n_done, n));
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT(st.pages_used == 0 && st.running == 0 && st.queued == 0);
    CU_ASSERT_EQUAL(st.finished[GQR_FINISH_LENGTH] + st.finished[GQR_FINISH_CANCEL], (uint64_t)n);
    gqr_engine_free(e);
    for (int i = 0; i < SUBMITTERS * PER_THREAD; i++) {
        CU_ASSERT_EQUAL(threaded[i].done_calls, 1);
        CU_ASSERT(threaded[i].reason == GQR_FINISH_CANCEL || threaded[i].n == 1 + i % 20);
    }
    CU_ASSERT_EQUAL(fake_get(&fake.errors), 0);
}

/* ---- a real generated model: build/gen/tiny (tests/models.def) ---- */

typedef struct Collect { int *tokens, n; } Collect;

static int collect(void *user, int token, int pos) {
    Collect *c = user;
    (void)pos;
    c->tokens[c->n++] = token;
    return 0;
}

/* Request i's prompt on the real model: 3 + 9i ids. */
static int real_prompt(int i, int *prompt, int vocab) {
    int n = 3 + 9 * i;
    for (int k = 0; k < n; k++)
        prompt[k] = (i * 31 + k * 17 + 1) % vocab;
    return n;
}

/* Greedy tokens of request i through gqr_generate on an instance of its own. */
static int generate_alone(const gqr_checkpoint *ck, int i, int max_tokens, int *out) {
    const gqa_model_api *m = &tiny_api;
    int prompt[256], n_prompt = real_prompt(i, prompt, m->shape.vocab_size);
    void *arena = gqr_arena_alloc(m);
    gqa_state *s = NULL;
    gqr_sampler smp;
    Collect c = {out, 0};
    CU_ASSERT_FATAL(arena && m->init_tensors(&s, arena, m->arena_bytes, ck->tensors, ck->n_tensors) == GQA_OK);
    CU_ASSERT_FATAL(gqr_sampler_init(&smp, m->shape.vocab_size, 0, 1, 0) == 0);
    CU_ASSERT(gqr_generate(m, s, &smp, prompt, n_prompt, max_tokens, collect, &c, NULL) == GQA_OK);
    gqr_sampler_free(&smp);
    gqr_arena_free(arena);
    return c.n;
}

/* n requests (greedy, or sampled with seed i) through an engine of max_seqs. */
static void run_real(const gqr_checkpoint *ck, Rec *rec, int n, int max_seqs, float temp) {
    const gqa_model_api *m = &tiny_api;
    gqr_engine_opts o = {.max_seqs = max_seqs, .kv_memory = 12 * m->page_bytes, .max_queue = 16, .threads = 2,
                         .prefill_chunk = 7};
    gqr_engine *e = NULL;
    char err[256] = "";
    CU_ASSERT_FATAL(gqr_engine_new(&e, m, ck->tensors, ck->n_tensors, &o, err, sizeof err) == 0);
    n_done = 0;
    for (int i = 0; i < n; i++) {
        int prompt[256], n_prompt = real_prompt(i, prompt, m->shape.vocab_size);
        memset(&rec[i], 0, sizeof rec[i]);
        gqr_request q = {.prompt = prompt, .n_prompt = n_prompt, .max_tokens = 20 + 5 * i, .temperature = temp,
                         .top_p = 0.9f, .seed = (uint64_t)i, .eos = -1, .on_token = on_token,
                         .on_done = on_done, .user = &rec[i]};
        CU_ASSERT_EQUAL(gqr_engine_submit(e, &q, &rec[i].id), 0);
    }
    CU_ASSERT_EQUAL(gqr_engine_start(e), 0);
    CU_ASSERT(wait_for(&n_done, n));
    gqr_engine_stats st;
    gqr_engine_stats_get(e, &st);
    CU_ASSERT(st.pages_used == 0 && st.finished[GQR_FINISH_LENGTH] == (uint64_t)n);
    gqr_engine_free(e);
}

static void test_real_model(void) {
    gqr_checkpoint ck;
    char err[256] = "";
    int rc = gqr_checkpoint_open(&ck, GEN_DIR "/tiny.bin", &tiny_api, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    enum { N = 6 };
    static Rec greedy[N], one[N], many[N];
    run_real(&ck, greedy, N, 3, 0);
    for (int i = 0; i < N; i++) {
        int want[CTX];
        int n = generate_alone(&ck, i, 20 + 5 * i, want);
        CU_ASSERT_EQUAL(greedy[i].n, n);
        CU_ASSERT_EQUAL(memcmp(greedy[i].tokens, want, (size_t)n * sizeof *want), 0);
    }
    /* Sampled: a sequence's logits do not depend on the others in the step. */
    run_real(&ck, one, N, 1, 0.9f);
    run_real(&ck, many, N, 4, 0.9f);
    for (int i = 0; i < N; i++) {
        CU_ASSERT_EQUAL(one[i].n, many[i].n);
        CU_ASSERT_EQUAL(memcmp(one[i].tokens, many[i].tokens, (size_t)one[i].n * sizeof(int)), 0);
    }
    gqr_checkpoint_close(&ck);
}

int main(void) {
    FAKE = fake_api();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite pool = CU_add_suite("pool", NULL, NULL), eng = CU_add_suite("engine", NULL, NULL);
    if (!pool || !eng || !CU_add_test(pool, "take, give, no page", test_pool) ||
        !CU_add_test(eng, "new refusals", test_new_refusals) ||
        !CU_add_test(eng, "submit refusals", test_submit_refusals) ||
        !CU_add_test(eng, "many requests, few slots and pages", test_many) ||
        !CU_add_test(eng, "no overtaking", test_no_overtaking) || !CU_add_test(eng, "busy", test_busy) ||
        !CU_add_test(eng, "cancel queued and running", test_cancel) ||
        !CU_add_test(eng, "on_token stop, EOS", test_stop_and_eos) ||
        !CU_add_test(eng, "full context, chunked prefill", test_context_full) ||
        !CU_add_test(eng, "shutdown with grace", test_shutdown_grace) ||
        !CU_add_test(eng, "shutdown cut", test_shutdown_cut) ||
        !CU_add_test(eng, "never started", test_never_started) ||
        !CU_add_test(eng, "model error", test_model_error) ||
        !CU_add_test(eng, "same tokens alone and among many", test_same_alone) ||
        !CU_add_test(eng, "submit and cancel from 4 threads", test_threads) ||
        !CU_add_test(eng, "tiny: engine = gqr_generate alone", test_real_model)) {
        CU_cleanup_registry();
        return 1;
    }
    return cunit_run();
}
