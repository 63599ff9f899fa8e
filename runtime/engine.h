/*
 * engine.h: many sequences served by one model at once: a paged KV cache
 * (kvpool.c) and continuous batching (engine.c), independent of HTTP.
 *
 * A request's prompt waits in a bounded queue until a slot and its KV
 * pages are free, then steps with every other running sequence through
 * the model's forward_seqs: prompt chunks and decoding tokens in one
 * call, sequences joining and leaving between steps.  One thread (the
 * engine's) runs the model and calls the request's callbacks; submit,
 * cancel and stats may be called from any thread.
 *
 * Conventions as in gqr.h: 0 or a GQA_* / GQR_* code, messages in the
 * caller's err buffer.
 */
#ifndef GQR_ENGINE_H
#define GQR_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "gqa_api.h"

/* ---- kvpool.c: the paged KV cache's pages ---- */

/* n_pages pages of page_bytes in one 64-byte-aligned block, and a stack of
 * the free ones.  Not thread-safe: the engine's thread owns it. */
typedef struct gqr_kvpool {
    void *base;
    size_t page_bytes;
    int n_pages;
    int n_free;
    int *free_pages; /* n_free of them on top */
} gqr_kvpool;

/* floor(memory / page_bytes) pages; -1 (message) when that is 0, or out of memory. */
int gqr_kvpool_init(gqr_kvpool *p, size_t memory, size_t page_bytes, char *err, size_t errlen);
/* A free page's index, or -1 when none is. */
int gqr_kvpool_take(gqr_kvpool *p);
/* Gives page back (each page once). */
void gqr_kvpool_give(gqr_kvpool *p, int page);
void gqr_kvpool_free(gqr_kvpool *p);

/* ---- engine.c: continuous batching ---- */

typedef struct gqr_engine gqr_engine;

/* Why a request ended: on_done's reason. */
enum {
    GQR_FINISH_LENGTH = 1,   /* max_tokens generated, or the context is full */
    GQR_FINISH_STOP = 2,     /* the end-of-sequence token, or on_token asked to stop */
    GQR_FINISH_CANCEL = 3,   /* gqr_engine_cancel (a client that went away) */
    GQR_FINISH_SHUTDOWN = 4, /* gqr_engine_shutdown cut it */
    GQR_FINISH_ERROR = 5     /* the model returned an error (a bug: logged in stats) */
};

/* submit's refusals, beside GQA_EARG. */
enum {
    GQR_EBUSY = 65,   /* the queue is full: try again later (HTTP 503 + Retry-After) */
    GQR_ETOOLONG = 66 /* prompt + max_tokens past the context, or more pages than the whole pool */
};

typedef struct gqr_engine_opts {
    int max_seqs;      /* sequences stepping together at most */
    size_t kv_memory;  /* bytes of the paged KV cache */
    int max_queue;     /* requests waiting for a slot at most */
    int threads;       /* the model's threads (set_threads); < 1: OpenMP's default */
    int prefill_chunk; /* prompt tokens a sequence runs per step at most (chunked prefill); < 1: 128 */
} gqr_engine_opts;

typedef struct gqr_request {
    const int *prompt; /* n_prompt >= 1 ids, copied by submit */
    int n_prompt;
    int max_tokens;    /* >= 1 */
    float temperature; /* gqr_sampler_init's */
    float top_p;
    uint64_t seed;
    int eos;           /* the end-of-sequence id (ends the request, not handed on nor counted), or -1 */
    /* On the engine's thread.  on_token: each sampled token, in order;
     * nonzero finishes the request with GQR_FINISH_STOP (a stop string, a
     * client gone).  on_done: exactly once for every accepted request; the
     * engine never touches user after it. */
    int (*on_token)(void *user, int token);
    void (*on_done)(void *user, int reason, int n_prompt, int n_generated);
    void *user;
} gqr_request;

/* Seconds of the latency histograms' buckets (upper bounds), then +Inf. */
#define GQR_HIST_BUCKETS 12
extern const double gqr_hist_bounds[GQR_HIST_BUCKETS];

typedef struct gqr_hist {
    uint64_t count[GQR_HIST_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
    uint64_t n;
    double sum;
} gqr_hist;

typedef struct gqr_engine_stats {
    uint64_t requests;        /* accepted */
    uint64_t rejected;        /* GQR_EBUSY and GQR_ETOOLONG */
    uint64_t finished[6];     /* by GQR_FINISH_* */
    uint64_t prompt_tokens;   /* run */
    uint64_t tokens;          /* generated */
    uint64_t steps;           /* forward_seqs calls */
    int queued, running;
    int pages_used, pages_total;
    double tokens_per_s;      /* generated over the last few seconds */
    gqr_hist ttft;            /* submit to first token */
    gqr_hist itl;             /* between a request's tokens */
} gqr_engine_stats;

/* An engine over model m with its weights (init_tensors' tensors, which
 * must outlive it), not yet stepping.  0, or a code and a message. */
int gqr_engine_new(gqr_engine **out, const gqa_model_api *m, const void *const *tensors, size_t n_tensors,
                   const gqr_engine_opts *o, char *err, size_t errlen);
/* Starts the stepping thread. */
int gqr_engine_start(gqr_engine *e);
/* Queues r under a fresh id (*id).  0; GQA_EARG (bad fields); GQR_ETOOLONG,
 * GQR_EBUSY (nothing queued, no callback); after shutdown GQR_EBUSY. */
int gqr_engine_submit(gqr_engine *e, const gqr_request *r, uint64_t *id);
/* Ends request id (queued or running) with GQR_FINISH_CANCEL and frees its
 * pages before the next step; an id already done is ignored. */
void gqr_engine_cancel(gqr_engine *e, uint64_t id);
void gqr_engine_stats_get(gqr_engine *e, gqr_engine_stats *s);
/* Stops admitting; running sequences go on for up to grace seconds, then
 * every request left ends with GQR_FINISH_SHUTDOWN; joins the thread (so
 * never from a callback).  Without a start, every request ends at once. */
void gqr_engine_shutdown(gqr_engine *e, double grace);
/* Shuts down (grace 0) if needed and frees everything. */
void gqr_engine_free(gqr_engine *e);

#endif
