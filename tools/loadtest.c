/*
 * loadtest.c: a bounded loopback load client for `gqac serve` (make loadtest).
 *
 *   loadtest --url http://127.0.0.1:PORT --users N --requests R --prompts FILE
 *            [--max-tokens A..B] [--seed S] [--timeout SECONDS] [--label NAME] [--json OUT.json]
 *   loadtest --report ROWS.json [--svg OUT.svg]
 *
 * The first form: N closed-loop users, each sending a streaming POST
 * /v1/completions (a prompt drawn from FILE's lines, max_tokens drawn from
 * A..B), reading its server-sent events as they arrive, then sending the
 * next, until R requests have ended.  One thread drives every transfer
 * through libcurl's multi interface: at most N at once (and one poll of
 * /metrics), each with a timeout.  A 503 is counted and the same request
 * sent again after Retry-After.  It prints and writes (--json) generated
 * tokens/s over the whole run (tokens: each stream's usage, else its
 * events), requests/s, time to first token (sent to the first event with
 * text) and inter-token latency (between events; p50 and p99: nearest
 * rank over every sample, sorted), errors, 503s, and the server's peaks
 * from /metrics.
 *
 * The second form reads the rows of several runs (a JSON array, or an
 * object whose "rows" is one), prints them as a table and plots tokens/s
 * and TTFT p99 against users, one line per label, as an SVG.
 */
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RETRIES 100 /* 503s one request may get before it counts as an error */
#define METRICS_EVERY 0.05 /* seconds between polls of /metrics */
#define MAX_REPORTED 5     /* errors described on stderr; the rest only counted */

typedef struct {
    double *v;
    size_t n, cap;
} Samples;

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

enum { USER_IDLE, USER_SENDING, USER_WAITING }; /* WAITING: for Retry-After */

typedef struct {
    CURL *h;
    int state;
    int request;     /* index of the request it is sending, 0 .. R-1 */
    int retries;     /* 503s of this request so far */
    double sent;     /* when this attempt was handed to curl */
    double last;     /* when its last token event came */
    double retry_at; /* USER_WAITING: when to send again */
    int events;      /* text events of this attempt (a token each, or several when the
                      * server coalesces what came while the client read) */
    int generated;   /* the last event's usage.completion_tokens, or -1 */
    int done_seen;   /* "data: [DONE]" came */
    const char *bad; /* a broken stream: what was wrong */
    char finish[16]; /* the finish_reason of the last event */
    Buf line;        /* the SSE line being read */
    Buf body;        /* a non-200 answer's body, for the message */
    char *json;      /* the request's body */
} User;

typedef struct {
    const char *url, *prompts, *json_out, *label;
    int users, requests, min_tokens, max_tokens;
    unsigned long long seed;
    double timeout;
} Options;

typedef struct {
    double running, pages_used, queued, pages_total;
} Metrics;

typedef struct {
    Samples ttft, itl;
    long long tokens, events;
    int ok, errors, http_503, reported;
    Metrics peak;
} Tally;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "loadtest: out of memory\n");
        exit(1);
    }
    return p;
}

static void samples_add(Samples *s, double x) {
    if (s->n == s->cap)
        s->cap = s->cap ? 2 * s->cap : 256, s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    s->v[s->n++] = x;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile by nearest rank: the smallest sample with at least
 * p% of the samples at or below it (exact, no interpolation); NAN for none. */
static double percentile(Samples *s, double p) {
    if (!s->n)
        return NAN;
    qsort(s->v, s->n, sizeof *s->v, by_value);
    size_t rank = (size_t)ceil(p / 100 * (double)s->n);
    return s->v[rank ? rank - 1 : 0];
}

static void buf_add(Buf *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap)
        b->cap = (b->len + n + 1) * 2, b->data = xrealloc(b->data, b->cap);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

/* ---- options ---- */

static void usage(void) {
    fprintf(stderr, "usage: loadtest --url URL --users N --requests R --prompts FILE [--max-tokens A..B] "
                    "[--seed S] [--timeout SECONDS] [--label NAME] [--json OUT.json]\n"
                    "       loadtest --report ROWS.json [--svg OUT.svg]\n");
    exit(2);
}

static int positive(const char *flag, const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 1 || n > 1000000) {
        fprintf(stderr, "loadtest: %s wants a whole number from 1 to 1000000, not '%s'\n", flag, v);
        exit(2);
    }
    return (int)n;
}

static void token_range(Options *o, const char *v) {
    const char *dots = strstr(v, "..");
    char a[32];
    size_t n = dots ? (size_t)(dots - v) : strlen(v);
    if (n >= sizeof a)
        n = sizeof a - 1;
    memcpy(a, v, n), a[n] = 0;
    o->min_tokens = positive("--max-tokens", a);
    o->max_tokens = dots ? positive("--max-tokens", dots + 2) : o->min_tokens;
    if (o->max_tokens < o->min_tokens) {
        fprintf(stderr, "loadtest: --max-tokens %s: the range runs backwards\n", v);
        exit(2);
    }
}

static Options parse_options(int argc, char **argv) {
    Options o = {0};
    o.min_tokens = 32, o.max_tokens = 128, o.seed = 1, o.timeout = 120, o.label = "";
    for (int i = 1; i < argc; i += 2) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(f, "--url")) o.url = v;
        else if (!strcmp(f, "--users")) o.users = positive(f, v);
        else if (!strcmp(f, "--requests")) o.requests = positive(f, v);
        else if (!strcmp(f, "--prompts")) o.prompts = v;
        else if (!strcmp(f, "--max-tokens")) token_range(&o, v);
        else if (!strcmp(f, "--seed")) o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(f, "--timeout")) o.timeout = positive(f, v);
        else if (!strcmp(f, "--label")) o.label = v;
        else if (!strcmp(f, "--json")) o.json_out = v;
        else {
            fprintf(stderr, "loadtest: unknown option %s\n", f);
            usage();
        }
    }
    if (!o.url || !o.users || !o.requests || !o.prompts)
        usage();
    return o;
}

/* The non-empty lines of path. */
static char **read_prompts(const char *path, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    char **lines = NULL, buf[65536];
    *n = 0;
    while (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\r\n")] = 0;
        if (!buf[0])
            continue;
        lines = xrealloc(lines, (size_t)(*n + 1) * sizeof *lines);
        lines[(*n)++] = strcpy(xrealloc(NULL, strlen(buf) + 1), buf);
    }
    fclose(f);
    if (!*n) {
        fprintf(stderr, "loadtest: %s: no prompts (one a line)\n", path);
        exit(1);
    }
    return lines;
}

/* splitmix64: request i's prompt and length depend only on the seed and i,
 * so every run and every variant sends the same requests. */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static char *request_json(const Options *o, char **prompts, int n_prompts, int i) {
    uint64_t r = mix(o->seed * 1000003u + (uint64_t)i);
    int span = o->max_tokens - o->min_tokens + 1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "prompt", prompts[r % (uint64_t)n_prompts]);
    cJSON_AddNumberToObject(j, "max_tokens", o->min_tokens + (int)(mix(r) % (uint64_t)span));
    cJSON_AddNumberToObject(j, "seed", (double)((o->seed + (uint64_t)i) & 0xffffffffu));
    cJSON_AddTrueToObject(j, "stream");
    /* every variant generates the lengths asked: the end-of-text token would cut some short */
    cJSON_AddTrueToObject(j, "ignore_eos");
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---- server-sent events ---- */

/* One "data:" payload of a completion stream. */
static void sse_event(User *u, const char *data) {
    if (!strcmp(data, "[DONE]")) {
        u->done_seen = 1;
        return;
    }
    cJSON *j = cJSON_Parse(data);
    cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *text = cJSON_GetObjectItem(choice, "text"), *reason = cJSON_GetObjectItem(choice, "finish_reason");
    if (!j || cJSON_GetObjectItem(j, "error") || !cJSON_IsString(text)) {
        u->bad = j && cJSON_GetObjectItem(j, "error") ? "an error event" : "an event that is not a completion";
    } else if (cJSON_IsString(reason)) {
        snprintf(u->finish, sizeof u->finish, "%s", reason->valuestring);
        cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "completion_tokens");
        u->generated = cJSON_IsNumber(n) ? n->valueint : -1;
    } else {
        u->events++;
        u->last = now();
    }
    cJSON_Delete(j);
}

static void sse_line(User *u, Tally *t, char *line) {
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r')
        line[--n] = 0;
    if (strncmp(line, "data:", 5))
        return; /* blank lines, comments, event: and id: fields */
    line += 5 + (line[5] == ' ');
    double before = u->last;
    int events = u->events;
    sse_event(u, line);
    if (u->events > events)
        samples_add(events ? &t->itl : &t->ttft, u->last - (events ? before : u->sent));
}

/* n bytes of a 200 answer's body, as they come: whole lines are handled,
 * the rest kept for the next bytes. */
static void sse_feed(User *u, Tally *t, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            buf_add(&u->line, p + i, 1);
            continue;
        }
        buf_add(&u->line, "", 0);
        sse_line(u, t, u->line.data);
        u->line.len = 0;
    }
}

typedef struct {
    User *u;
    Tally *t;
} Sink;

static size_t on_data(char *p, size_t size, size_t n, void *arg) {
    Sink *s = arg;
    User *u = s->u;
    long status = 0;
    curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
    n *= size;
    if (status != 200) {
        if (u->body.len < 4096)
            buf_add(&u->body, p, n);
        return n;
    }
    sse_feed(u, s->t, p, n);
    return n;
}

/* ---- the users ---- */

typedef struct {
    Options o;
    char **prompts;
    int n_prompts;
    CURLM *multi;
    User *users;
    Sink *sinks;
    struct curl_slist *headers;
    char completions[512];
    int issued, sending;
    Tally tally;
} Run;

static void send_request(Run *r, User *u) {
    curl_easy_reset(u->h);
    curl_easy_setopt(u->h, CURLOPT_URL, r->completions);
    curl_easy_setopt(u->h, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(u->h, CURLOPT_POSTFIELDS, u->json);
    curl_easy_setopt(u->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(u->h, CURLOPT_WRITEDATA, &r->sinks[u - r->users]);
    curl_easy_setopt(u->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(u->h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(u->h, CURLOPT_TIMEOUT_MS, (long)(r->o.timeout * 1000));
    u->state = USER_SENDING, u->events = 0, u->generated = -1, u->done_seen = 0, u->bad = NULL, u->finish[0] = 0;
    u->line.len = u->body.len = 0;
    u->sent = u->last = now();
    curl_multi_add_handle(r->multi, u->h);
    r->sending++;
}

static void start_next(Run *r, User *u) {
    free(u->json);
    u->json = NULL;
    u->state = USER_IDLE;
    if (r->issued >= r->o.requests)
        return;
    u->request = r->issued++;
    u->retries = 0;
    u->json = request_json(&r->o, r->prompts, r->n_prompts, u->request);
    send_request(r, u);
}

static void report_error(Run *r, User *u, const char *what) {
    r->tally.errors++;
    if (r->tally.reported++ < MAX_REPORTED)
        fprintf(stderr, "loadtest: request %d: %s%s%.200s\n", u->request, what, u->body.len ? ": " : "",
                u->body.len ? u->body.data : "");
}

/* A transfer ended: count it, then send the user's next request (or the
 * same one again after a 503's Retry-After). */
static void transfer_done(Run *r, User *u, CURLcode rc) {
    long status = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(u->h, CURLINFO_RETRY_AFTER, &retry_after);
    curl_multi_remove_handle(r->multi, u->h);
    r->sending--;
    r->tally.events += u->events;
    r->tally.tokens += u->generated >= 0 ? u->generated : u->events;
    if (rc == CURLE_OK && status == 503 && ++u->retries <= MAX_RETRIES) {
        r->tally.http_503++;
        u->state = USER_WAITING;
        u->retry_at = now() + (retry_after > 0 ? (double)retry_after : 0.1);
        return;
    }
    char what[160];
    if (rc != CURLE_OK)
        snprintf(what, sizeof what, "%s", curl_easy_strerror(rc));
    else if (status != 200)
        snprintf(what, sizeof what, "HTTP %ld%s", status, status == 503 ? " too many times" : "");
    else if (u->bad || !u->done_seen || (strcmp(u->finish, "stop") && strcmp(u->finish, "length")))
        snprintf(what, sizeof what, "a broken stream (%s)",
                 u->bad ? u->bad : !u->done_seen ? "no [DONE]" : u->finish[0] ? u->finish : "no finish_reason");
    else
        what[0] = 0;
    if (what[0])
        report_error(r, u, what);
    else
        r->tally.ok++;
    start_next(r, u);
}

/* ---- /metrics ---- */

typedef struct {
    CURL *h;
    Buf body;
    int busy;
    double next;
} Poller;

static size_t on_metrics(char *p, size_t size, size_t n, void *arg) {
    Buf *b = arg;
    if (b->len < (1u << 20))
        buf_add(b, p, size * n);
    return size * n;
}

/* The gauges of a Prometheus text exposition that the peaks follow. */
static Metrics parse_metrics(const char *text) {
    Metrics m = {-1, -1, -1, -1};
    char name[128];
    double v;
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (*l == '#' || sscanf(l, "%127s %lf", name, &v) != 2)
            continue;
        if (!strcmp(name, "gqac_running_sequences")) m.running = v;
        else if (!strcmp(name, "gqac_kv_pages_used")) m.pages_used = v;
        else if (!strcmp(name, "gqac_queue_depth")) m.queued = v;
        else if (!strcmp(name, "gqac_kv_pages_total")) m.pages_total = v;
    }
    return m;
}

static void metrics_setup(Poller *p, const char *url) {
    curl_easy_reset(p->h);
    curl_easy_setopt(p->h, CURLOPT_URL, url);
    curl_easy_setopt(p->h, CURLOPT_WRITEFUNCTION, on_metrics);
    curl_easy_setopt(p->h, CURLOPT_WRITEDATA, &p->body);
    curl_easy_setopt(p->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->h, CURLOPT_TIMEOUT_MS, 5000L);
    p->body.len = 0;
}

static void peak_of(Metrics *peak, Metrics m) {
    peak->running = fmax(peak->running, m.running);
    peak->pages_used = fmax(peak->pages_used, m.pages_used);
    peak->queued = fmax(peak->queued, m.queued);
    peak->pages_total = fmax(peak->pages_total, m.pages_total);
}

/* KV pages in use once the load has ended (0 unless pages leak), polled
 * for up to a second while the engine frees the last sequences' pages. */
static Metrics metrics_after(Poller *p, const char *url) {
    Metrics m = {-1, -1, -1, -1};
    for (int i = 0; i < 20; i++) {
        metrics_setup(p, url);
        if (curl_easy_perform(p->h) == CURLE_OK && p->body.data)
            m = parse_metrics(p->body.data);
        if (m.pages_used == 0 && m.running == 0)
            break;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    return m;
}

/* ---- the run ---- */

static int active(const Run *r) {
    for (int i = 0; i < r->o.users; i++)
        if (r->users[i].state != USER_IDLE)
            return 1;
    return 0;
}

static void drive(Run *r, Poller *p, const char *metrics_url) {
    for (int i = 0; i < r->o.users; i++)
        start_next(r, &r->users[i]);
    while (active(r)) {
        double t = now();
        for (int i = 0; i < r->o.users; i++)
            if (r->users[i].state == USER_WAITING && t >= r->users[i].retry_at)
                send_request(r, &r->users[i]);
        if (!p->busy && t >= p->next) {
            metrics_setup(p, metrics_url);
            curl_multi_add_handle(r->multi, p->h);
            p->busy = 1, p->next = t + METRICS_EVERY;
        }
        int running;
        curl_multi_perform(r->multi, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(r->multi, &running)))
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == p->h) {
                curl_multi_remove_handle(r->multi, p->h);
                p->busy = 0;
                if (msg->data.result == CURLE_OK && p->body.data)
                    peak_of(&r->tally.peak, parse_metrics(p->body.data));
            } else if (msg->msg == CURLMSG_DONE) {
                for (int i = 0; i < r->o.users; i++)
                    if (r->users[i].h == msg->easy_handle)
                        transfer_done(r, &r->users[i], msg->data.result);
            }
        curl_multi_poll(r->multi, NULL, 0, 10, NULL);
    }
    if (p->busy)
        curl_multi_remove_handle(r->multi, p->h);
}

static void json_number(cJSON *o, const char *k, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static cJSON *results(Run *r, double seconds, Metrics after) {
    Tally *t = &r->tally;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "label", r->o.label);
    cJSON_AddStringToObject(j, "url", r->o.url);
    json_number(j, "users", r->o.users);
    json_number(j, "requests", r->o.requests);
    json_number(j, "min_tokens", r->o.min_tokens);
    json_number(j, "max_tokens", r->o.max_tokens);
    json_number(j, "seed", (double)r->o.seed);
    json_number(j, "ok", t->ok);
    json_number(j, "errors", t->errors);
    json_number(j, "http_503", t->http_503);
    json_number(j, "seconds", seconds);
    json_number(j, "tokens", (double)t->tokens);
    json_number(j, "events", (double)t->events);
    json_number(j, "tokens_per_s", (double)t->tokens / seconds);
    json_number(j, "requests_per_s", t->ok / seconds);
    json_number(j, "ttft_p50_ms", 1e3 * percentile(&t->ttft, 50));
    json_number(j, "ttft_p99_ms", 1e3 * percentile(&t->ttft, 99));
    json_number(j, "itl_p50_ms", 1e3 * percentile(&t->itl, 50));
    json_number(j, "itl_p99_ms", 1e3 * percentile(&t->itl, 99));
    json_number(j, "peak_running", t->peak.running);
    json_number(j, "peak_kv_pages_used", t->peak.pages_used);
    json_number(j, "peak_queue_depth", t->peak.queued);
    json_number(j, "kv_pages_total", t->peak.pages_total);
    json_number(j, "kv_pages_used_after", after.pages_used);
    return j;
}

static double get(const cJSON *row, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(row, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int load(const Options *o) {
    Run r = {0};
    Poller p = {0};
    char metrics_url[512];
    r.o = *o;
    r.prompts = read_prompts(o->prompts, &r.n_prompts);
    snprintf(r.completions, sizeof r.completions, "%s/v1/completions", o->url);
    snprintf(metrics_url, sizeof metrics_url, "%s/metrics", o->url);
    r.headers = curl_slist_append(NULL, "Content-Type: application/json");
    r.multi = curl_multi_init();
    r.users = xrealloc(NULL, (size_t)o->users * sizeof *r.users);
    r.sinks = xrealloc(NULL, (size_t)o->users * sizeof *r.sinks);
    memset(r.users, 0, (size_t)o->users * sizeof *r.users);
    p.h = curl_easy_init();
    for (int i = 0; i < o->users; i++) {
        r.users[i].h = curl_easy_init();
        r.sinks[i] = (Sink){&r.users[i], &r.tally};
        if (!r.users[i].h)
            return fprintf(stderr, "loadtest: curl_easy_init failed\n"), 1;
    }
    r.tally.peak = (Metrics){-1, -1, -1, -1};
    double t0 = now();
    drive(&r, &p, metrics_url);
    double seconds = now() - t0;
    Metrics after = metrics_after(&p, metrics_url);
    cJSON *j = results(&r, seconds, after);
    printf("%s%s%d users, %d requests in %.2f s: %.1f tok/s, %.2f req/s, TTFT p50 %.1f p99 %.1f ms, "
           "ITL p50 %.2f p99 %.2f ms, %d errors, %d 503s; server peak %.0f running, %.0f/%.0f KV pages, "
           "queue %.0f; %.0f pages in use after\n",
           o->label, o->label[0] ? ": " : "", o->users, o->requests, seconds, get(j, "tokens_per_s"),
           get(j, "requests_per_s"), get(j, "ttft_p50_ms"), get(j, "ttft_p99_ms"), get(j, "itl_p50_ms"),
           get(j, "itl_p99_ms"), r.tally.errors, r.tally.http_503, r.tally.peak.running,
           r.tally.peak.pages_used, r.tally.peak.pages_total, r.tally.peak.queued, after.pages_used);
    int rc = 0;
    if (o->json_out) {
        char *s = cJSON_Print(j);
        FILE *f = fopen(o->json_out, "w");
        if (!f || fprintf(f, "%s\n", s) < 0 || fclose(f) != 0) {
            perror(o->json_out);
            rc = 1;
        }
        free(s);
    }
    cJSON_Delete(j);
    for (int i = 0; i < o->users; i++)
        curl_easy_cleanup(r.users[i].h), free(r.users[i].json), free(r.users[i].line.data),
            free(r.users[i].body.data);
    curl_easy_cleanup(p.h);
    free(p.body.data), free(r.users), free(r.sinks), free(r.tally.ttft.v), free(r.tally.itl.v);
    for (int i = 0; i < r.n_prompts; i++)
        free(r.prompts[i]);
    free(r.prompts);
    curl_slist_free_all(r.headers);
    curl_multi_cleanup(r.multi);
    return rc;
}

/* ---- --report: the table and the plot ---- */

static const char *const colours[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

/* A round step for about five ticks up to hi. */
static double tick_step(double hi) {
    double raw = hi / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return p * (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10);
}

static void svg_text(FILE *f, const char *s) {
    for (; *s; s++)
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
}

/* The labels in the order they first appear. */
static int labels_of(const cJSON *rows, const char **labels, int max) {
    int n = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const char *l = cJSON_GetStringValue(cJSON_GetObjectItem(row, "label"));
        int seen = 0;
        for (int i = 0; i < n; i++)
            seen |= l && !strcmp(labels[i], l);
        if (l && !seen && n < max)
            labels[n++] = l;
    }
    return n;
}

/* One panel at x0: key against users (log2 axis), a line per label. */
static void svg_panel(FILE *f, const cJSON *rows, const char **labels, int n_labels, double x0,
                      const char *key, const char *title, double max_users) {
    const double w = 360, h = 260, top = 50, lo = log2(1), hi = log2(max_users > 1 ? max_users : 2);
    double ymax = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) if (isfinite(get(row, key))) ymax = fmax(ymax, get(row, key));
    double step = tick_step(ymax > 0 ? ymax : 1), ytop = ceil((ymax > 0 ? ymax : 1) / step) * step;
#define PX(u) (x0 + (log2(u) - lo) / (hi - lo) * w)
#define PY(v) (top + h - (v) / ytop * h)
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-weight=\"bold\">%s</text>\n",
            x0 + w / 2, top - 15, title);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#000\"/>\n",
            x0, top, w, h);
    for (double v = 0; v <= ytop * 1.0001; v += step)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                x0, PY(v), x0 + w, PY(v), x0 - 5, PY(v) + 4, v);
    for (double u = 1; u <= max_users; u *= 2)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(u), top + h + 16, u);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">concurrent users</text>\n", x0 + w / 2,
            top + h + 34);
    for (int l = 0; l < n_labels; l++) {
        const char *c = colours[l % 6];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
        cJSON_ArrayForEach(row, rows) {
            const char *rl = cJSON_GetStringValue(cJSON_GetObjectItem(row, "label"));
            if (rl && !strcmp(rl, labels[l]) && isfinite(get(row, key)) && get(row, "users") >= 1)
                fprintf(f, "%.1f,%.1f ", PX(get(row, "users")), PY(get(row, key)));
        }
        fputs("\"/>\n", f);
        cJSON_ArrayForEach(row, rows) {
            const char *rl = cJSON_GetStringValue(cJSON_GetObjectItem(row, "label"));
            if (rl && !strcmp(rl, labels[l]) && isfinite(get(row, key)) && get(row, "users") >= 1)
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(get(row, "users")),
                        PY(get(row, key)), c);
        }
    }
#undef PX
#undef PY
}

static int write_svg(const char *path, const cJSON *rows) {
    const char *labels[16];
    int n = labels_of(rows, labels, 16);
    double max_users = 1;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) if (get(row, "users") > max_users) max_users = get(row, "users");
    FILE *f = fopen(path, "w");
    if (!f)
        return perror(path), 1;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n", 390);
    svg_panel(f, rows, labels, n, 70, "tokens_per_s", "generated tokens/s", max_users);
    svg_panel(f, rows, labels, n, 520, "ttft_p99_ms", "time to first token, p99 (ms)", max_users);
    for (int l = 0; l < n; l++) {
        fprintf(f, "<rect x=\"%d\" y=\"366\" width=\"14\" height=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"372\">",
                70 + 150 * l, colours[l % 6], 90 + 150 * l);
        svg_text(f, labels[l]);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    return fclose(f) != 0 ? (perror(path), 1) : 0;
}

static void print_table(const cJSON *rows) {
    printf("%-12s %5s %5s | %8s %6s | %8s %8s | %7s %7s | %4s %4s | %4s %5s %5s %5s\n", "variant", "users",
           "reqs", "tok/s", "req/s", "TTFT p50", "p99 ms", "ITL p50", "p99 ms", "err", "503", "run", "pages",
           "queue", "after");
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const char *l = cJSON_GetStringValue(cJSON_GetObjectItem(row, "label"));
        printf("%-12s %5.0f %5.0f | %8.1f %6.2f | %8.1f %8.1f | %7.2f %7.2f | %4.0f %4.0f | %4.0f %5.0f %5.0f %5.0f\n",
               l ? l : "", get(row, "users"), get(row, "requests"), get(row, "tokens_per_s"),
               get(row, "requests_per_s"), get(row, "ttft_p50_ms"), get(row, "ttft_p99_ms"),
               get(row, "itl_p50_ms"), get(row, "itl_p99_ms"), get(row, "errors"), get(row, "http_503"),
               get(row, "peak_running"), get(row, "peak_kv_pages_used"), get(row, "peak_queue_depth"),
               get(row, "kv_pages_used_after"));
    }
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return perror(path), NULL;
    Buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&b, chunk, n);
    fclose(f);
    if (!b.data)
        buf_add(&b, "", 0);
    return b.data;
}

static int report(int argc, char **argv) {
    const char *in = NULL, *svg = NULL;
    for (int i = 1; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--report")) in = argv[i + 1];
        else if (!strcmp(argv[i], "--svg")) svg = argv[i + 1];
        else usage();
    if (!in || argc % 2 == 0)
        usage();
    char *text = slurp(in);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    const cJSON *rows = cJSON_IsArray(root) ? root : cJSON_GetObjectItem(root, "rows");
    free(text);
    if (!cJSON_IsArray(rows)) {
        fprintf(stderr, "loadtest: %s: not a JSON array of rows, nor an object with \"rows\"\n", in);
        cJSON_Delete(root);
        return 1;
    }
    print_table(rows);
    int rc = svg ? write_svg(svg, rows) : 0;
    cJSON_Delete(root);
    return rc;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--report"))
        return report(argc, argv);
    Options o = parse_options(argc, argv);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return fprintf(stderr, "loadtest: curl_global_init failed\n"), 1;
    int rc = load(&o);
    curl_global_cleanup();
    return rc;
}
