/*
 * serve.h: gqac serve's parts, between serve.c (the command: flags, model,
 * engine, signals), serve_req.c (one completion: its parameters and the
 * text the engine's tokens make) and serve_http.c (libmicrohttpd's
 * handlers: JSON, server-sent events, /health, /metrics).
 */
#ifndef GQAC_SERVE_H
#define GQAC_SERVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "tokenizer.h"

#define SERVE_MAX_STOPS 4           /* stop strings of a request, as OpenAI's */
#define SERVE_BODY_LIMIT (1u << 20) /* request bodies past it get 413 */

/* What every handler shares; set up by serve.c before the daemon starts. */
typedef struct {
    gqr_engine *engine;
    const gqr_tokenizer *tok;
    const char *model_name;
    int context;        /* the model's positions */
    int page_positions; /* positions per KV page */
    unsigned timeout_s; /* --timeout: a connection idle this long is cut */
    pthread_mutex_t lock;
    bool stopping;     /* SIGTERM came: new completions get 503 */
    int active;        /* requests open now (serve.c waits for 0 before stopping the daemon) */
    uint64_t http[6];  /* responses by status class: [2] 2xx ... [5] 5xx */
} ServeCtx;

/* ---- serve_req.c: one completion ---- */

typedef struct {
    char *prompt;
    size_t prompt_len;
    int max_tokens;
    double temperature, top_p;
    uint64_t seed;
    char *stop[SERVE_MAX_STOPS];
    int n_stop;
    bool stream;
    bool ignore_eos; /* vLLM's extension: go on past the end-of-text token to max_tokens */
} ServeParams;

/* body's JSON as params: 0, or -1 with the message (naming the field) in
 * err and the field's name in *param (NULL: the body itself). */
int serve_params_parse(const char *body, size_t len, ServeParams *p, const char **param, char *err,
                       size_t errlen);
void serve_params_free(ServeParams *p);

/* A request as the engine fills it: owned by up to three holders (the
 * connection, the response, the engine), freed when the last lets go. */
typedef struct ServeReq {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int refs;
    const gqr_tokenizer *tok;
    ServeParams params;
    uint64_t id;       /* the engine's */
    int prev;          /* the last token, for decoding the next */
    char *text;        /* the completion so far (a stop string cut off) */
    size_t len, cap;
    size_t max_stop;   /* the longest stop string's bytes */
    bool done;
    int reason;        /* GQR_FINISH_*, once done */
    int n_prompt, n_generated;
    double created;    /* seconds since the epoch */
    int fd;            /* the client's socket: its hang-up is watched while waiting */
} ServeReq;

/* A request holding one reference (the caller's), taking p's contents. */
ServeReq *serve_req_new(const gqr_tokenizer *tok, ServeParams *p);
void serve_req_ref(ServeReq *r);
void serve_req_unref(ServeReq *r);
/* gqr_request's callbacks, user being the request. */
int serve_req_on_token(void *user, int token);
void serve_req_on_done(void *user, int reason, int n_prompt, int n_generated);
/* Under r->lock: bytes of r->text that can go out now: not an unfinished
 * UTF-8 character nor the start of a stop string, while not done. */
size_t serve_req_ready(const ServeReq *r);
/* Under r->lock: waits up to 0.1 s for a change; true when the client
 * hung up (its socket read end is closed). */
bool serve_req_wait(ServeReq *r);
/* "length", "stop", "cancel", "shutdown" or "error". */
const char *serve_finish_name(int reason);
/* bytes as valid UTF-8 (each bad byte U+FFFD), NUL-terminated; NULL out of memory. */
char *serve_utf8(const char *bytes, size_t len);

/* ---- serve_http.c: the handlers ---- */

struct MHD_Daemon;
/* The daemon on listen_fd (bound, listening); NULL with errno's message printed. */
struct MHD_Daemon *serve_http_start(ServeCtx *c, int listen_fd, int max_connections, unsigned timeout_s);

#endif
