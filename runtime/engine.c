/*
 * engine.c: continuous batching.  Requests wait in a bounded FIFO queue;
 * the head is admitted when a slot is free and the pages not yet promised
 * to running sequences cover its whole need, so a page taken as a sequence
 * grows is always there (no allocation fails mid-run) and no request
 * overtakes another.  Each step runs one forward_seqs call over every
 * running sequence (prompt chunks and decoding tokens together), then
 * samples each one's token with its own seeded sampler.
 *
 * One lock guards the queue, the slots' bookkeeping, the pool and the
 * stats; the model runs and the callbacks are called without it.  Only
 * the engine's thread runs the model, changes a running slot or ends a
 * request; other threads admit (submit), flag (cancel) and read (stats).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "fail.h"
#include "gqr.h"

const double gqr_hist_bounds[GQR_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,   0.25,   0.5,   1,    2.5,   5};

#define PREFILL_CHUNK 128 /* prefill_chunk < 1: prompt tokens per step */
#define RATE_SECONDS 5    /* tokens_per_s's window */
#define RATE_SLOTS 8      /* one-second buckets, more than the window */

/* A request from submit to on_done: queued, then in a slot. */
typedef struct Job {
    uint64_t id;
    gqr_request r;    /* the caller's fields; r.prompt points at prompt */
    int *prompt;      /* r.n_prompt ids, owned */
    gqr_sampler smp;  /* seeded by r.seed */
    int need;         /* pages promised while it runs */
    int cancelled;    /* set by cancel, read under the lock */
    double t_submit;  /* for the time to first token */
    double t_last;    /* the last token, for the inter-token latency */
} Job;

/* A running sequence.  Only the engine's thread changes an active one. */
typedef struct Slot {
    int active;
    Job job;
    int *pages;       /* pages[0 .. n_taken) taken from the pool, by logical block */
    int n_taken;
    int fed;          /* prompt tokens run */
    int pos;          /* positions in its pages */
    int n_generated;  /* tokens handed to on_token */
    int last;         /* the last token handed on: the next step's input */
    int finish;       /* GQR_FINISH_* when this step ended it, else 0 */
    int emitted;      /* a token handed on this step, latency seconds */
    double latency;
    int first;        /* that token was the first */
} Slot;

/* An ended request whose on_done is still to be called. */
typedef struct Done {
    void (*on_done)(void *user, int reason, int n_prompt, int n_generated);
    void *user;
    int reason, n_prompt, n_generated;
} Done;

struct gqr_engine {
    const gqa_model_api *m;
    void *arena;
    gqa_state *state;
    gqr_kvpool pool;
    int max_seqs, max_queue, prefill_chunk, seq_pages;
    Slot *slots;          /* max_seqs */
    float *logits;        /* max_seqs x vocab_size, slot i's at i * vocab_size */
    gqa_seq *batch;       /* one step's sequences */
    int *batch_slot;      /* their slots */
    Job *queue;           /* queue[0 .. n_queued): the head first */
    int n_queued;
    Done *done, *done_out; /* max_seqs + max_queue each */
    int n_done;
    int n_running;
    int reserved;         /* pages promised to running sequences */
    uint64_t next_id;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t thread;
    int started, join_claimed;
    int stopping;
    double deadline;      /* when stopping: running sequences end SHUTDOWN after it */
    gqr_engine_stats st;  /* the counters and histograms */
    double t_start;
    int64_t rate_sec[RATE_SLOTS];
    uint64_t rate_n[RATE_SLOTS];
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- stats ---- */

static void hist_add(gqr_hist *h, double v) {
    int b = 0;
    while (b < GQR_HIST_BUCKETS && v > gqr_hist_bounds[b])
        b++;
    h->count[b]++;
    h->n++;
    h->sum += v;
}

static void rate_add(gqr_engine *e, double t, uint64_t n) {
    int64_t sec = (int64_t)floor(t);
    int b = (int)(sec % RATE_SLOTS);
    if (e->rate_sec[b] != sec) {
        e->rate_sec[b] = sec;
        e->rate_n[b] = 0;
    }
    e->rate_n[b] += n;
}

/* Tokens over the last RATE_SECONDS - 1 whole seconds and this partial
 * one, or since the start when that is more recent. */
static double rate_get(const gqr_engine *e, double t) {
    int64_t sec = (int64_t)floor(t);
    uint64_t sum = 0;
    for (int b = 0; b < RATE_SLOTS; b++)
        if (e->rate_sec[b] > sec - RATE_SECONDS && e->rate_sec[b] <= sec)
            sum += e->rate_n[b];
    double from = (double)(sec - RATE_SECONDS + 1);
    if (from < e->t_start)
        from = e->t_start;
    return t > from ? (double)sum / (t - from) : 0;
}

/* ---- requests' ends (under the lock) ---- */

static void job_free(Job *j) {
    gqr_sampler_free(&j->smp);
    free(j->prompt);
    j->prompt = NULL;
}

static void job_end(gqr_engine *e, Job *j, int reason, int n_generated) {
    Done *d = &e->done[e->n_done++];
    d->on_done = j->r.on_done;
    d->user = j->r.user;
    d->reason = reason;
    d->n_prompt = j->r.n_prompt;
    d->n_generated = n_generated;
    e->st.finished[reason]++;
    job_free(j);
}

static void slot_end(gqr_engine *e, Slot *s, int reason) {
    for (int i = s->n_taken; i-- > 0;)
        gqr_kvpool_give(&e->pool, s->pages[i]);
    s->n_taken = 0;
    e->reserved -= s->job.need;
    e->n_running--;
    s->active = 0;
    job_end(e, &s->job, reason, s->n_generated);
}

/* Cancelled requests, and when shutting down every queued one and, past
 * the grace, every running one. */
static void collect_ended(gqr_engine *e) {
    int kept = 0;
    for (int i = 0; i < e->n_queued; i++) {
        Job *j = &e->queue[i];
        if (j->cancelled || e->stopping)
            job_end(e, j, j->cancelled ? GQR_FINISH_CANCEL : GQR_FINISH_SHUTDOWN, 0);
        else
            e->queue[kept++] = *j;
    }
    e->n_queued = kept;
    int cut = e->stopping && now_seconds() >= e->deadline;
    for (int i = 0; i < e->max_seqs; i++) {
        Slot *s = &e->slots[i];
        if (s->active && (s->job.cancelled || cut))
            slot_end(e, s, s->job.cancelled ? GQR_FINISH_CANCEL : GQR_FINISH_SHUTDOWN);
    }
}

/* Calls the pending on_done callbacks without the lock. */
static void flush_done(gqr_engine *e) {
    int n = e->n_done;
    memcpy(e->done_out, e->done, (size_t)n * sizeof *e->done);
    e->n_done = 0;
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < n; i++) {
        Done *d = &e->done_out[i];
        if (d->on_done)
            d->on_done(d->user, d->reason, d->n_prompt, d->n_generated);
    }
    pthread_mutex_lock(&e->mu);
}

/* ---- admission (under the lock) ---- */

static Slot *free_slot(gqr_engine *e) {
    for (int i = 0; i < e->max_seqs; i++)
        if (!e->slots[i].active)
            return &e->slots[i];
    return NULL;
}

static void slot_start(gqr_engine *e, Slot *s, const Job *j) {
    s->job = *j;
    s->active = 1;
    s->n_taken = s->fed = s->pos = s->n_generated = s->finish = s->emitted = 0;
    e->reserved += j->need;
    e->n_running++;
}

/* The queue's head, while a slot is free and the unpromised pages cover
 * its need: FIFO, so a small request never overtakes a big one. */
static void admit(gqr_engine *e) {
    while (e->n_queued > 0 && !e->stopping) {
        Job *head = &e->queue[0];
        Slot *s = free_slot(e);
        if (!s || e->pool.n_pages - e->reserved < head->need)
            return;
        slot_start(e, s, head);
        e->n_queued--;
        memmove(e->queue, e->queue + 1, (size_t)e->n_queued * sizeof *e->queue);
    }
}

/* ---- one step ---- */

/* Pages for s's positions up to upto - 1; promised, so always there. */
static int take_pages(gqr_engine *e, Slot *s, int upto) {
    while ((long)s->n_taken * e->m->page_positions < upto) {
        int page = s->n_taken < e->seq_pages ? gqr_kvpool_take(&e->pool) : -1;
        if (page < 0)
            return -1;
        s->pages[s->n_taken++] = page;
    }
    return 0;
}

/* s's share of the step: a prompt chunk (logits at the prompt's end) or
 * its last token. */
static void seq_of(gqr_engine *e, Slot *s, gqa_seq *q) {
    float *logits = e->logits + (size_t)(s - e->slots) * (size_t)e->m->shape.vocab_size;
    int n_prompt = s->job.r.n_prompt;
    if (s->fed < n_prompt) {
        q->n = n_prompt - s->fed < e->prefill_chunk ? n_prompt - s->fed : e->prefill_chunk;
        q->tokens = s->job.prompt + s->fed;
        q->logits = s->fed + q->n == n_prompt ? logits : NULL;
    } else {
        q->n = 1;
        q->tokens = &s->last;
        q->logits = logits;
    }
    q->pos = s->pos;
    q->pages = s->pages;
}

/* The batch of every running sequence, with their pages taken. */
static int build_batch(gqr_engine *e) {
    int n = 0;
    for (int i = 0; i < e->max_seqs; i++) {
        Slot *s = &e->slots[i];
        if (!s->active)
            continue;
        s->finish = s->emitted = 0;
        seq_of(e, s, &e->batch[n]);
        if (take_pages(e, s, s->pos + e->batch[n].n)) {
            s->finish = GQR_FINISH_ERROR; /* a broken promise: a bug */
            continue;
        }
        e->batch_slot[n++] = i;
    }
    return n;
}

/* Samples s's next token (no lock): EOS ends it unseen; on_token may
 * stop it; max_tokens or a full context end it. */
static void sample_one(gqr_engine *e, Slot *s, float *logits) {
    Job *j = &s->job;
    int token = gqr_sample(&j->smp, logits);
    if (token == j->r.eos) {
        s->finish = GQR_FINISH_STOP;
        return;
    }
    double t = now_seconds();
    s->emitted = 1;
    s->first = s->n_generated == 0;
    s->latency = t - (s->first ? j->t_submit : j->t_last);
    j->t_last = t;
    s->n_generated++;
    if (j->r.on_token && j->r.on_token(j->r.user, token))
        s->finish = GQR_FINISH_STOP;
    else if (s->n_generated >= j->r.max_tokens || j->r.n_prompt + s->n_generated >= e->m->shape.seq_len)
        s->finish = GQR_FINISH_LENGTH;
    else
        s->last = token;
}

/* The step's results into the stats; ended sequences leave (lock held). */
static void account(gqr_engine *e, uint64_t prompt_tokens) {
    double t = now_seconds();
    uint64_t tokens = 0;
    e->st.steps++;
    e->st.prompt_tokens += prompt_tokens;
    for (int i = 0; i < e->max_seqs; i++) {
        Slot *s = &e->slots[i];
        if (!s->active)
            continue;
        if (s->emitted) {
            tokens++;
            hist_add(s->first ? &e->st.ttft : &e->st.itl, s->latency);
            s->emitted = 0;
        }
        if (s->finish)
            slot_end(e, s, s->finish);
    }
    e->st.tokens += tokens;
    rate_add(e, t, tokens);
}

/* One forward_seqs over every running sequence, then sampling.  Called
 * and returns with the lock held. */
static void step(gqr_engine *e) {
    int n = build_batch(e);
    pthread_mutex_unlock(&e->mu);
    int rc = n ? e->m->forward_seqs(e->state, e->pool.base, (size_t)e->pool.n_pages, e->batch, n) : GQA_OK;
    uint64_t prompt_tokens = 0;
    for (int i = 0; i < n; i++) {
        Slot *s = &e->slots[e->batch_slot[i]];
        gqa_seq *q = &e->batch[i];
        if (rc != GQA_OK) {
            s->finish = GQR_FINISH_ERROR;
            continue;
        }
        s->pos += q->n;
        if (s->fed < s->job.r.n_prompt) {
            s->fed += q->n;
            prompt_tokens += (uint64_t)q->n;
        }
        if (q->logits)
            sample_one(e, s, q->logits);
    }
    pthread_mutex_lock(&e->mu);
    account(e, prompt_tokens);
}

static void *engine_main(void *arg) {
    gqr_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        collect_ended(e);
        admit(e);
        if (e->n_done) {
            flush_done(e);
            continue;
        }
        if (e->n_running == 0) {
            if (e->stopping)
                break;
            pthread_cond_wait(&e->wake, &e->mu);
            continue;
        }
        step(e);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- the public functions ---- */

static int check_opts(const gqa_model_api *m, const gqr_engine_opts *o, char *err, size_t errlen) {
    if (!m || !o)
        return gqr_fail(err, errlen, "no model or no options");
    if (m->version != GQA_API_VERSION)
        return gqr_fail(err, errlen, "model %s: API version %d, this runtime's is %d", m->name ? m->name : "?",
                        m->version, GQA_API_VERSION);
    if (!m->forward_seqs || !m->init_tensors || m->page_positions < 1 || m->page_bytes == 0)
        return gqr_fail(err, errlen, "model %s has no paged batch path (forward_seqs): it cannot serve many "
                        "sequences; regenerate it with this gqac", m->name ? m->name : "?");
    if (m->shape.vocab_size < 1 || m->shape.seq_len < 1)
        return gqr_fail(err, errlen, "model %s: vocab %d, context %d", m->name ? m->name : "?",
                        m->shape.vocab_size, m->shape.seq_len);
    if (o->max_seqs < 1 || o->max_queue < 0)
        return gqr_fail(err, errlen, "max-seqs %d (at least 1), max-queue %d (at least 0)", o->max_seqs,
                        o->max_queue);
    return 0;
}

static int alloc_arena(gqr_engine *e, const void *const *tensors, size_t n_tensors, char *err, size_t errlen) {
    size_t align = e->m->arena_align > 64 ? e->m->arena_align : 64;
    size_t bytes = e->m->seqs_arena_bytes ? e->m->seqs_arena_bytes : align;
    if (align & (align - 1))
        return gqr_fail(err, errlen, "model arena alignment %zu is not a power of two", align);
    if (posix_memalign(&e->arena, align, bytes) != 0) {
        e->arena = NULL;
        return gqr_fail(err, errlen, "cannot allocate the model's %zu-byte arena", bytes);
    }
    memset(e->arena, 0, bytes);
    int rc = e->m->init_tensors(&e->state, e->arena, e->m->seqs_arena_bytes, tensors, n_tensors);
    if (rc != GQA_OK)
        return gqr_fail(err, errlen, "model %s: init: %s", e->m->name ? e->m->name : "?", gqr_strerror(rc));
    return 0;
}

static int alloc_tables(gqr_engine *e) {
    size_t n = (size_t)e->max_seqs, vocab = (size_t)e->m->shape.vocab_size;
    size_t n_done = n + (size_t)e->max_queue;
    e->slots = calloc(n, sizeof *e->slots);
    e->logits = malloc(n * vocab * sizeof *e->logits);
    e->batch = calloc(n, sizeof *e->batch);
    e->batch_slot = calloc(n, sizeof *e->batch_slot);
    e->queue = calloc(e->max_queue ? (size_t)e->max_queue : 1, sizeof *e->queue);
    e->done = calloc(n_done, sizeof *e->done);
    e->done_out = calloc(n_done, sizeof *e->done_out);
    if (!e->slots || !e->logits || !e->batch || !e->batch_slot || !e->queue || !e->done || !e->done_out)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!(e->slots[i].pages = malloc((size_t)e->seq_pages * sizeof *e->slots[i].pages)))
            return -1;
    return 0;
}

static void free_all(gqr_engine *e) {
    for (int i = 0; e->slots && i < e->max_seqs; i++)
        free(e->slots[i].pages);
    free(e->slots);
    free(e->logits);
    free(e->batch);
    free(e->batch_slot);
    free(e->queue);
    free(e->done);
    free(e->done_out);
    gqr_kvpool_free(&e->pool);
    free(e->arena);
    free(e);
}

int gqr_engine_new(gqr_engine **out, const gqa_model_api *m, const void *const *tensors, size_t n_tensors,
                   const gqr_engine_opts *o, char *err, size_t errlen) {
    if (!out)
        return GQA_EARG;
    *out = NULL;
    if (check_opts(m, o, err, errlen))
        return GQA_EARG;
    gqr_engine *e = calloc(1, sizeof *e);
    if (!e) {
        gqr_fail(err, errlen, "out of memory");
        return GQR_ENOMEM;
    }
    e->m = m;
    e->max_seqs = o->max_seqs;
    e->max_queue = o->max_queue;
    e->prefill_chunk = o->prefill_chunk > 0 ? o->prefill_chunk : PREFILL_CHUNK;
    e->seq_pages = (m->shape.seq_len + m->page_positions - 1) / m->page_positions;
    e->t_start = now_seconds();
    int rc = GQA_EARG;
    if (gqr_kvpool_init(&e->pool, o->kv_memory, m->page_bytes, err, errlen) ||
        alloc_arena(e, tensors, n_tensors, err, errlen))
        goto fail;
    rc = GQR_ENOMEM;
    if (alloc_tables(e)) {
        gqr_fail(err, errlen, "out of memory for %d sequences", e->max_seqs);
        goto fail;
    }
    if (pthread_mutex_init(&e->mu, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&e->wake, NULL) != 0) {
        pthread_mutex_destroy(&e->mu);
        goto fail;
    }
    if (m->set_threads)
        m->set_threads(e->state, o->threads);
    *out = e;
    return 0;
fail:
    free_all(e);
    return rc;
}

int gqr_engine_start(gqr_engine *e) {
    if (!e)
        return GQA_EARG;
    pthread_mutex_lock(&e->mu);
    int bad = e->started || e->stopping;
    e->started = 1;
    pthread_mutex_unlock(&e->mu);
    if (bad)
        return GQA_EARG;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        pthread_mutex_lock(&e->mu);
        e->started = 0;
        pthread_mutex_unlock(&e->mu);
        return GQR_ENOMEM;
    }
    return 0;
}

/* The fields submit refuses with GQA_EARG. */
static int bad_request(const gqr_engine *e, const gqr_request *r) {
    int vocab = e->m->shape.vocab_size;
    if (!r->prompt || r->n_prompt < 1 || r->max_tokens < 1 || r->eos < -1 || r->eos >= vocab)
        return 1;
    /* Written so that NaN fails, as gqr_sampler_init checks. */
    if (!(r->temperature >= 0) || !isfinite(r->temperature) || !(r->top_p > 0 && r->top_p <= 1))
        return 1;
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= vocab)
            return 1;
    return 0;
}

static void reject(gqr_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->st.rejected++;
    pthread_mutex_unlock(&e->mu);
}

/* j from r: the prompt copied, the sampler seeded; -1 out of memory. */
static int job_init(gqr_engine *e, Job *j, const gqr_request *r) {
    memset(j, 0, sizeof *j);
    j->r = *r;
    int len = r->n_prompt + r->max_tokens;
    if (len > e->m->shape.seq_len)
        len = e->m->shape.seq_len;
    j->need = (len + e->m->page_positions - 1) / e->m->page_positions;
    j->prompt = malloc((size_t)r->n_prompt * sizeof *j->prompt);
    if (!j->prompt || gqr_sampler_init(&j->smp, e->m->shape.vocab_size, r->temperature, r->top_p, r->seed)) {
        free(j->prompt);
        return -1;
    }
    memcpy(j->prompt, r->prompt, (size_t)r->n_prompt * sizeof *j->prompt);
    j->r.prompt = j->prompt;
    j->t_submit = now_seconds();
    return 0;
}

int gqr_engine_submit(gqr_engine *e, const gqr_request *r, uint64_t *id) {
    if (!e || !r || bad_request(e, r))
        return GQA_EARG;
    int pp = e->m->page_positions;
    if ((long)r->n_prompt + r->max_tokens > e->m->shape.seq_len ||
        ((long)r->n_prompt + r->max_tokens + pp - 1) / pp > e->pool.n_pages) {
        reject(e);
        return GQR_ETOOLONG;
    }
    Job j;
    if (job_init(e, &j, r))
        return GQR_ENOMEM;
    pthread_mutex_lock(&e->mu);
    admit(e); /* what the thread has not admitted yet frees queue places */
    Slot *s = e->n_queued == 0 && !e->stopping ? free_slot(e) : NULL;
    if (s && e->pool.n_pages - e->reserved < j.need)
        s = NULL;
    if (!s && (e->stopping || e->n_queued >= e->max_queue)) {
        e->st.rejected++;
        pthread_mutex_unlock(&e->mu);
        job_free(&j);
        return GQR_EBUSY;
    }
    j.id = ++e->next_id;
    e->st.requests++;
    if (s)
        slot_start(e, s, &j);
    else
        e->queue[e->n_queued++] = j;
    /* Before the engine thread can see the job: a callback may read it. */
    if (id)
        *id = j.id;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void gqr_engine_cancel(gqr_engine *e, uint64_t id) {
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->n_queued; i++)
        if (e->queue[i].id == id)
            e->queue[i].cancelled = 1;
    for (int i = 0; i < e->max_seqs; i++)
        if (e->slots[i].active && e->slots[i].job.id == id)
            e->slots[i].job.cancelled = 1;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
}

void gqr_engine_stats_get(gqr_engine *e, gqr_engine_stats *s) {
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    *s = e->st;
    s->queued = e->n_queued;
    s->running = e->n_running;
    s->pages_total = e->pool.n_pages;
    s->pages_used = e->pool.n_pages - e->pool.n_free;
    s->tokens_per_s = rate_get(e, now_seconds());
    pthread_mutex_unlock(&e->mu);
}

void gqr_engine_shutdown(gqr_engine *e, double grace) {
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    double deadline = now_seconds() + (grace > 0 ? grace : 0);
    if (!e->stopping || deadline < e->deadline)
        e->deadline = deadline;
    e->stopping = 1;
    int join = e->started && !e->join_claimed;
    e->join_claimed |= e->started;
    if (!e->started) {
        /* No thread to run them: what was admitted or queued ends now,
         * and its on_done is called here. */
        e->deadline = now_seconds();
        collect_ended(e);
        flush_done(e);
    }
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    if (join)
        pthread_join(e->thread, NULL);
}

void gqr_engine_free(gqr_engine *e) {
    if (!e)
        return;
    gqr_engine_shutdown(e, 0);
    pthread_cond_destroy(&e->wake);
    pthread_mutex_destroy(&e->mu);
    free_all(e);
}
