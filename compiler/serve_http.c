/*
 * serve_http.c: gqac serve's HTTP side over libmicrohttpd: routes, bodies
 * (capped), completions as JSON or server-sent events, /health and
 * /metrics.  One thread per connection (MHD_USE_THREAD_PER_CONNECTION):
 * a handler may block until its request's tokens come, which keeps each
 * completion a straight line of code; connections are bounded by
 * --max-seqs + --max-queue + a margin, so the threads are too.
 */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gqr.h"
#include "serve.h"

/* One request on a connection (MHD's con_cls). */
typedef struct {
    ServeCtx *ctx;
    char *body;
    size_t len;
    bool too_big;
    bool answered;     /* a response is queued: MHD calls again only to drain the body */
    ServeReq *req;     /* once submitted */
    const char *allow; /* a 405's Allow header */
} Conn;

/* A streamed completion's reader state (the response's). */
typedef struct {
    ServeCtx *ctx;
    ServeReq *req;
    size_t sent;    /* bytes of req->text already in events */
    char *out;      /* formatted events not yet handed to MHD */
    size_t out_len, out_pos;
    bool ended;     /* [DONE] formatted */
    bool cancelled;
} Stream;

/* ---- responses ---- */

static enum MHD_Result send_text(Conn *k, struct MHD_Connection *conn, unsigned status, const char *type,
                                 const char *text, bool retry) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED && k->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, k->allow);
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    k->answered = true;
    pthread_mutex_lock(&k->ctx->lock);
    k->ctx->http[status / 100 < 6 ? status / 100 : 5]++;
    pthread_mutex_unlock(&k->ctx->lock);
    return ok;
}

static enum MHD_Result send_json(Conn *k, struct MHD_Connection *conn, unsigned status, cJSON *o,
                                 bool retry) {
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    enum MHD_Result ok = text ? send_text(k, conn, status, "application/json", text, retry) : MHD_NO;
    free(text);
    return ok;
}

/* OpenAI's error object; code may be NULL. */
static enum MHD_Result send_error(Conn *k, struct MHD_Connection *conn, unsigned status, const char *msg,
                                  const char *param, const char *code) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", status >= 500 ? "server_error" : "invalid_request_error");
    param ? (void)cJSON_AddStringToObject(e, "param", param) : (void)cJSON_AddNullToObject(e, "param");
    code ? (void)cJSON_AddStringToObject(e, "code", code) : (void)cJSON_AddNullToObject(e, "code");
    return send_json(k, conn, status, o, status == MHD_HTTP_SERVICE_UNAVAILABLE);
}

/* ---- /metrics ---- */

static void metric(FILE *f, const char *name, const char *type, const char *help, double v) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void histogram(FILE *f, const char *name, const char *help, const gqr_hist *h) {
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t sum = 0;
    for (int i = 0; i < GQR_HIST_BUCKETS; i++) {
        sum += h->count[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, gqr_hist_bounds[i], (unsigned long long)sum);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name,
            (unsigned long long)(sum + h->count[GQR_HIST_BUCKETS]), name, h->sum, name,
            (unsigned long long)h->n);
}

static void metrics_text(ServeCtx *c, FILE *f) {
    gqr_engine_stats s;
    gqr_engine_stats_get(c->engine, &s);
    metric(f, "gqac_requests_total", "counter", "Completions accepted.", (double)s.requests);
    metric(f, "gqac_requests_rejected_total", "counter", "Completions refused: queue full or too long.",
           (double)s.rejected);
    fputs("# HELP gqac_requests_finished_total Completions ended, by why.\n"
          "# TYPE gqac_requests_finished_total counter\n", f);
    for (int r = GQR_FINISH_LENGTH; r <= GQR_FINISH_ERROR; r++)
        fprintf(f, "gqac_requests_finished_total{reason=\"%s\"} %llu\n", serve_finish_name(r),
                (unsigned long long)s.finished[r]);
    metric(f, "gqac_prompt_tokens_total", "counter", "Prompt tokens run.", (double)s.prompt_tokens);
    metric(f, "gqac_generated_tokens_total", "counter", "Tokens generated.", (double)s.tokens);
    metric(f, "gqac_tokens_per_second", "gauge", "Tokens generated per second, lately.", s.tokens_per_s);
    metric(f, "gqac_queue_depth", "gauge", "Completions waiting for a slot.", s.queued);
    metric(f, "gqac_running_sequences", "gauge", "Sequences stepping.", s.running);
    metric(f, "gqac_kv_pages_used", "gauge", "KV cache pages held by sequences.", s.pages_used);
    metric(f, "gqac_kv_pages_total", "gauge", "KV cache pages in all.", s.pages_total);
    histogram(f, "gqac_time_to_first_token_seconds", "From submission to the first token.", &s.ttft);
    histogram(f, "gqac_inter_token_latency_seconds", "Between a completion's tokens.", &s.itl);
    fputs("# HELP gqac_http_responses_total HTTP responses, by status class.\n"
          "# TYPE gqac_http_responses_total counter\n", f);
    pthread_mutex_lock(&c->lock);
    for (int i = 2; i <= 5; i++)
        fprintf(f, "gqac_http_responses_total{code=\"%dxx\"} %llu\n", i, (unsigned long long)c->http[i]);
    pthread_mutex_unlock(&c->lock);
}

static enum MHD_Result send_metrics(Conn *k, struct MHD_Connection *conn) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return MHD_NO;
    metrics_text(k->ctx, f);
    enum MHD_Result ok = fclose(f) ? MHD_NO
                                   : send_text(k, conn, MHD_HTTP_OK, "text/plain; version=0.0.4", text, false);
    free(text);
    return ok;
}

/* ---- completions ---- */

/* The text_completion object (or a stream's chunk of it: piece, finish NULL). */
static cJSON *completion_json(const ServeReq *r, const char *model, const char *text, size_t len,
                              const char *finish, bool usage) {
    char id[32], *utf8 = serve_utf8(text, len);
    snprintf(id, sizeof id, "cmpl-%llu", (unsigned long long)r->id);
    cJSON *o = cJSON_CreateObject(), *choices = cJSON_AddArrayToObject(o, "choices"),
          *c = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "text_completion");
    cJSON_AddNumberToObject(o, "created", r->created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddItemToArray(choices, c);
    cJSON_AddStringToObject(c, "text", utf8 ? utf8 : "");
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON_AddNullToObject(c, "logprobs");
    finish ? (void)cJSON_AddStringToObject(c, "finish_reason", finish)
           : (void)cJSON_AddNullToObject(c, "finish_reason");
    if (usage) {
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", r->n_prompt);
        cJSON_AddNumberToObject(u, "completion_tokens", r->n_generated);
        cJSON_AddNumberToObject(u, "total_tokens", r->n_prompt + r->n_generated);
    }
    free(utf8);
    return o;
}

/* Waits until r is done, cancelling it if the client hangs up meanwhile. */
static void wait_done(ServeCtx *c, ServeReq *r) {
    bool cancelled = false;
    pthread_mutex_lock(&r->lock);
    while (!r->done)
        if (serve_req_wait(r) && !cancelled) {
            gqr_engine_cancel(c->engine, r->id);
            cancelled = true;
        }
    pthread_mutex_unlock(&r->lock);
}

static enum MHD_Result answer_whole(Conn *k, struct MHD_Connection *conn, ServeReq *r) {
    wait_done(k->ctx, r);
    if (r->reason == GQR_FINISH_ERROR)
        return send_error(k, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "the model failed on this request", NULL,
                          NULL);
    cJSON *o = completion_json(r, k->ctx->model_name, r->text ? r->text : "", r->len,
                               serve_finish_name(r->reason), true);
    return send_json(k, conn, MHD_HTTP_OK, o, false);
}

static bool add_event(Stream *s, cJSON *o) {
    char *json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    size_t n = json ? strlen(json) + 8 : 0;
    char *out = json ? realloc(s->out, s->out_len + n + 1) : NULL;
    if (out) {
        s->out = out;
        s->out_len += (size_t)sprintf(out + s->out_len, "data: %s\n\n", json);
    }
    free(json);
    return out != NULL;
}

/* Under the request's lock: the events for what is ready, and the end once done. */
static bool format_events(Stream *s) {
    ServeReq *r = s->req;
    size_t ready = serve_req_ready(r);
    s->out_len = s->out_pos = 0;
    if (ready > s->sent &&
        !add_event(s, completion_json(r, s->ctx->model_name, r->text + s->sent, ready - s->sent, NULL, false)))
        return false;
    s->sent = ready > s->sent ? ready : s->sent;
    if (!r->done)
        return true;
    if (!add_event(s, completion_json(r, s->ctx->model_name, "", 0, serve_finish_name(r->reason), true)))
        return false;
    char *out = realloc(s->out, s->out_len + 16);
    if (!out)
        return false;
    s->out = out;
    s->out_len += (size_t)sprintf(out + s->out_len, "data: [DONE]\n\n");
    s->ended = true;
    return true;
}

/* A comment line, which SSE clients ignore: a stream waiting in the queue
 * sends something every half --timeout, else MHD cuts it as idle. */
static bool keep_alive(Stream *s) {
    static const char line[] = ": waiting\n\n";
    char *out = realloc(s->out, sizeof line);
    if (!out)
        return false;
    s->out = out;
    memcpy(out, line, sizeof line - 1);
    s->out_len = sizeof line - 1, s->out_pos = 0;
    return true;
}

/* MHD's content reader: blocks (in this connection's own thread) until text or the end comes. */
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max) {
    Stream *s = cls;
    (void)pos;
    if (s->out_pos == s->out_len && s->ended)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->out_pos == s->out_len) {
        ServeReq *r = s->req;
        bool ok = true, gone = false;
        int waits = 0, quiet = (int)s->ctx->timeout_s * 5; /* serve_req_wait's 0.1 s each */
        pthread_mutex_lock(&r->lock);
        while (!r->done && serve_req_ready(r) <= s->sent && !gone && waits++ < quiet)
            gone = serve_req_wait(r);
        if (!gone)
            ok = r->done || serve_req_ready(r) > s->sent ? format_events(s) : keep_alive(s);
        pthread_mutex_unlock(&r->lock);
        if (gone || !ok) {
            gqr_engine_cancel(s->ctx->engine, r->id);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = s->out_len - s->out_pos < max ? s->out_len - s->out_pos : max;
    memcpy(buf, s->out + s->out_pos, n);
    s->out_pos += n;
    return (ssize_t)n;
}

static void free_stream(void *cls) {
    Stream *s = cls;
    serve_req_unref(s->req);
    free(s->out);
    free(s);
}

static enum MHD_Result answer_stream(Conn *k, struct MHD_Connection *conn, ServeReq *r) {
    Stream *s = calloc(1, sizeof *s);
    struct MHD_Response *resp =
        s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, s, free_stream) : NULL;
    if (!resp) {
        free(s);
        gqr_engine_cancel(k->ctx->engine, r->id);
        return MHD_NO;
    }
    s->ctx = k->ctx, s->req = r;
    serve_req_ref(r); /* the response's */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    k->answered = true;
    pthread_mutex_lock(&k->ctx->lock);
    k->ctx->http[2]++;
    pthread_mutex_unlock(&k->ctx->lock);
    return ok;
}

/* The prompt's ids, BOS first (as gqac run does); NULL with a message in err. */
static int *tokenize(const gqr_tokenizer *tok, const ServeParams *p, int *n, char *err, size_t errlen) {
    gqr_tokenizer_encode(tok, p->prompt, p->prompt_len, 1, NULL, 0, n, NULL, 0);
    int *ids = malloc(sizeof *ids * (size_t)(*n > 0 ? *n : 1));
    if (!ids || gqr_tokenizer_encode(tok, p->prompt, p->prompt_len, 1, ids, *n, n, err, errlen)) {
        free(ids);
        return NULL;
    }
    return ids;
}

static enum MHD_Result too_long(Conn *k, struct MHD_Connection *conn, int n, int max_tokens) {
    char msg[256];
    gqr_engine_stats s;
    gqr_engine_stats_get(k->ctx->engine, &s);
    if ((long)n + max_tokens > k->ctx->context)
        snprintf(msg, sizeof msg,
                 "This model's maximum context length is %d tokens; the prompt has %d and max_tokens asks for %d",
                 k->ctx->context, n, max_tokens);
    else
        snprintf(msg, sizeof msg,
                 "This request needs %d positions of KV cache (the prompt has %d and max_tokens asks for %d); "
                 "the server's KV cache (--kv-memory) holds %d",
                 n + max_tokens, n, max_tokens, s.pages_total * k->ctx->page_positions);
    return send_error(k, conn, MHD_HTTP_BAD_REQUEST, msg, max_tokens >= k->ctx->context ? "max_tokens" : "prompt",
                      "context_length_exceeded");
}

/* Submits r (its prompt ids); 0 or the engine's refusal. */
static int submit(ServeCtx *c, ServeReq *r, const int *ids, int n) {
    gqr_request q = {ids, n, r->params.max_tokens, (float)r->params.temperature, (float)r->params.top_p,
                     r->params.seed, r->params.ignore_eos ? -1 : gqr_tokenizer_eos(c->tok), serve_req_on_token, serve_req_on_done, r};
    r->prev = ids[n - 1];
    serve_req_ref(r); /* the engine's, given back by on_done */
    int rc = gqr_engine_submit(c->engine, &q, &r->id);
    if (rc)
        serve_req_unref(r);
    return rc;
}

static enum MHD_Result refused(Conn *k, struct MHD_Connection *conn, int rc, int n, int max_tokens) {
    if (rc == GQR_ETOOLONG)
        return too_long(k, conn, n, max_tokens);
    if (rc == GQR_EBUSY || rc == GQR_ENOMEM)
        return send_error(k, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "The server is busy (its queue is full) or shutting down: retry later", NULL, NULL);
    return send_error(k, conn, MHD_HTTP_BAD_REQUEST, "the request's values were refused", NULL, NULL);
}

static enum MHD_Result complete(Conn *k, struct MHD_Connection *conn) {
    ServeCtx *c = k->ctx;
    ServeParams p;
    char err[256];
    const char *param;
    pthread_mutex_lock(&c->lock);
    bool stopping = c->stopping;
    pthread_mutex_unlock(&c->lock);
    if (stopping)
        return send_error(k, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "The server is shutting down", NULL, NULL);
    if (serve_params_parse(k->body ? k->body : "", k->len, &p, &param, err, sizeof err))
        return send_error(k, conn, MHD_HTTP_BAD_REQUEST, err, param, NULL);
    int n = 0, *ids = tokenize(c->tok, &p, &n, err, sizeof err);
    if (!ids || n < 1) {
        free(ids), serve_params_free(&p);
        return send_error(k, conn, MHD_HTTP_BAD_REQUEST, ids ? "the prompt is empty (and this tokenizer has no BOS)" : err,
                          "prompt", NULL);
    }
    if ((long)n + p.max_tokens > c->context) {
        int max_tokens = p.max_tokens;
        free(ids), serve_params_free(&p);
        return too_long(k, conn, n, max_tokens);
    }
    ServeReq *r = serve_req_new(c->tok, &p);
    if (!r) {
        free(ids), serve_params_free(&p);
        return MHD_NO;
    }
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = info ? info->connect_fd : -1;
    int rc = submit(c, r, ids, n), max_tokens = r->params.max_tokens;
    free(ids);
    if (rc) {
        serve_req_unref(r);
        return refused(k, conn, rc, n, max_tokens);
    }
    k->req = r; /* the connection's reference from here on */
    return r->params.stream ? answer_stream(k, conn, r) : answer_whole(k, conn, r);
}

/* ---- routing ---- */

/* Collects a POST body up to SERVE_BODY_LIMIT. */
static void take_body(Conn *k, const char *data, size_t n) {
    if (k->too_big || k->len + n > SERVE_BODY_LIMIT) {
        k->too_big = true;
        return;
    }
    char *b = realloc(k->body, k->len + n + 1);
    if (!b) {
        k->too_big = true;
        return;
    }
    memcpy(b + k->len, data, n);
    k->len += n;
    b[k->len] = 0;
    k->body = b;
}

static enum MHD_Result route(Conn *k, struct MHD_Connection *conn, const char *url, const char *method) {
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    k->allow = strcmp(url, "/v1/completions") ? "GET" : "POST";
    if (!strcmp(url, "/health"))
        return get ? send_text(k, conn, MHD_HTTP_OK, "application/json", "{\"status\":\"ok\"}", false)
                   : send_error(k, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "/health takes GET", NULL, NULL);
    if (!strcmp(url, "/metrics"))
        return get ? send_metrics(k, conn)
                   : send_error(k, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "/metrics takes GET", NULL, NULL);
    if (!strcmp(url, "/v1/completions"))
        return post ? MHD_YES
                    : send_error(k, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "/v1/completions takes POST", NULL, NULL);
    char msg[200];
    snprintf(msg, sizeof msg, "no such path: %.80s (try POST /v1/completions, GET /health, GET /metrics)", url);
    return send_error(k, conn, MHD_HTTP_NOT_FOUND, msg, NULL, NULL);
}

static bool is_completion(const char *url, const char *method) {
    return !strcmp(url, "/v1/completions") && !strcmp(method, "POST");
}

static enum MHD_Result first_call(ServeCtx *c, struct MHD_Connection *conn, const char *url,
                                  const char *method, void **con_cls) {
    Conn *k = calloc(1, sizeof *k);
    if (!k)
        return MHD_NO;
    k->ctx = c;
    *con_cls = k;
    pthread_mutex_lock(&c->lock);
    c->active++;
    pthread_mutex_unlock(&c->lock);
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (is_completion(url, method) && length && strtoull(length, NULL, 10) > SERVE_BODY_LIMIT)
        return send_error(k, conn, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than 1 MiB", NULL, NULL);
    return route(k, conn, url, method);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    if (!*con_cls)
        return first_call(cls, conn, url, method, con_cls);
    Conn *k = *con_cls;
    if (*upload_size) {
        if (!k->answered)
            take_body(k, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (k->answered || !is_completion(url, method))
        return MHD_YES;
    if (k->too_big)
        return send_error(k, conn, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than 1 MiB", NULL, NULL);
    return complete(k, conn);
}

/* The request is over (answered, cut by a timeout, or its client gone): a
 * completion still running is cancelled, so its KV pages free at once. */
static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    ServeCtx *c = cls;
    Conn *k = *con_cls;
    (void)conn;
    if (!k)
        return;
    if (k->req) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            gqr_engine_cancel(c->engine, k->req->id);
        serve_req_unref(k->req);
    }
    free(k->body);
    free(k);
    *con_cls = NULL;
    pthread_mutex_lock(&c->lock);
    c->active--;
    pthread_mutex_unlock(&c->lock);
}

struct MHD_Daemon *serve_http_start(ServeCtx *c, int listen_fd, int max_connections, unsigned timeout_s) {
    return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC,
                            0, NULL, NULL, handle, c, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, MHD_OPTION_NOTIFY_COMPLETED, completed, c,
                            MHD_OPTION_END);
}
