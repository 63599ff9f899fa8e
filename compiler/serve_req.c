/*
 * serve_req.c: one completion of gqac serve.  Its JSON parameters checked
 * field by field, then the text its tokens decode to, grown on the
 * engine's thread and read by the connection's: the stop strings cut it,
 * and what might still become one (or half a UTF-8 character) is held back
 * from a stream until it is decided.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "serve.h"

/* ---- parameters ---- */

static int bad(char *err, size_t errlen, const char **param, const char *name, const char *msg) {
    *param = name;
    snprintf(err, errlen, "%s", msg);
    return -1;
}

/* A fresh seed per request that gives none: the clock and a counter mixed (splitmix64). */
static uint64_t random_seed(void) {
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_sec * 1000000007u + (uint64_t)ts.tv_nsec +
                 __atomic_add_fetch(&counter, 0x9e3779b97f4a7c15ull, __ATOMIC_RELAXED);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The field, or NULL when absent or null (OpenAI's clients send nulls for defaults). */
static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNull(f) ? NULL : f;
}

static bool integer(const cJSON *f, double lo, double hi) {
    return cJSON_IsNumber(f) && f->valuedouble == floor(f->valuedouble) && f->valuedouble >= lo &&
           f->valuedouble <= hi;
}

static int parse_stop(const cJSON *f, ServeParams *p, const char **param, char *err, size_t errlen) {
    const char *msg = "stop must be a non-empty string or an array of up to 4 non-empty strings";
    if (cJSON_IsString(f)) {
        if (!f->valuestring[0])
            return bad(err, errlen, param, "stop", msg);
        p->stop[p->n_stop++] = strdup(f->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) > SERVE_MAX_STOPS)
        return bad(err, errlen, param, "stop", msg);
    const cJSON *s;
    cJSON_ArrayForEach(s, f) {
        if (!cJSON_IsString(s) || !s->valuestring[0])
            return bad(err, errlen, param, "stop", msg);
        p->stop[p->n_stop++] = strdup(s->valuestring);
    }
    return 0;
}

static int parse_numbers(const cJSON *o, ServeParams *p, const char **param, char *err, size_t errlen) {
    const cJSON *f;
    if ((f = field(o, "max_tokens")) && !integer(f, 1, INT_MAX))
        return bad(err, errlen, param, "max_tokens", "max_tokens must be an integer >= 1");
    p->max_tokens = f ? (int)f->valuedouble : 16;
    if ((f = field(o, "temperature")) && !(cJSON_IsNumber(f) && f->valuedouble >= 0))
        return bad(err, errlen, param, "temperature", "temperature must be a number >= 0");
    p->temperature = f ? f->valuedouble : 1;
    if ((f = field(o, "top_p")) && !(cJSON_IsNumber(f) && f->valuedouble > 0 && f->valuedouble <= 1))
        return bad(err, errlen, param, "top_p", "top_p must be a number in (0, 1]");
    p->top_p = f ? f->valuedouble : 1;
    if ((f = field(o, "seed")) && !integer(f, 0, 9007199254740992.0))
        return bad(err, errlen, param, "seed", "seed must be an integer >= 0 (at most 2^53)");
    p->seed = f ? (uint64_t)f->valuedouble : random_seed();
    return 0;
}

static int parse_object(const cJSON *o, ServeParams *p, const char **param, char *err, size_t errlen) {
    if (!cJSON_IsObject(o))
        return bad(err, errlen, param, NULL, "the body must be a JSON object");
    const cJSON *f = field(o, "prompt");
    if (!cJSON_IsString(f))
        return bad(err, errlen, param, "prompt", "prompt must be a string");
    p->prompt_len = strlen(f->valuestring);
    p->prompt = strdup(f->valuestring);
    if (parse_numbers(o, p, param, err, errlen))
        return -1;
    if ((f = field(o, "stop")) && parse_stop(f, p, param, err, errlen))
        return -1;
    if ((f = field(o, "stream")) && !cJSON_IsBool(f))
        return bad(err, errlen, param, "stream", "stream must be true or false");
    p->stream = f && cJSON_IsTrue(f);
    if ((f = field(o, "ignore_eos")) && !cJSON_IsBool(f))
        return bad(err, errlen, param, "ignore_eos", "ignore_eos must be true or false");
    p->ignore_eos = f && cJSON_IsTrue(f);
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i])
            return bad(err, errlen, param, NULL, "out of memory");
    return p->prompt ? 0 : bad(err, errlen, param, NULL, "out of memory");
}

int serve_params_parse(const char *body, size_t len, ServeParams *p, const char **param, char *err,
                       size_t errlen) {
    memset(p, 0, sizeof *p);
    *param = NULL;
    const char *end = body;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    while (o && end < body + len && strchr(" \t\r\n", *end) && *end)
        end++;
    if (o && end < body + len) { /* cJSON stops after the first value: what follows is no JSON */
        cJSON_Delete(o);
        o = NULL;
    }
    int rc = o ? parse_object(o, p, param, err, errlen)
               : bad(err, errlen, param, NULL, "the body is not valid JSON");
    cJSON_Delete(o);
    if (rc)
        serve_params_free(p);
    return rc;
}

void serve_params_free(ServeParams *p) {
    free(p->prompt);
    for (int i = 0; i < p->n_stop; i++)
        free(p->stop[i]);
    memset(p, 0, sizeof *p);
}

/* ---- the request ---- */

ServeReq *serve_req_new(const gqr_tokenizer *tok, ServeParams *p) {
    ServeReq *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->changed, NULL);
    r->refs = 1;
    r->tok = tok;
    r->params = *p;
    memset(p, 0, sizeof *p);
    r->prev = -1;
    r->fd = -1;
    r->created = (double)time(NULL);
    for (int i = 0; i < r->params.n_stop; i++)
        if (strlen(r->params.stop[i]) > r->max_stop)
            r->max_stop = strlen(r->params.stop[i]);
    return r;
}

void serve_req_ref(ServeReq *r) {
    pthread_mutex_lock(&r->lock);
    r->refs++;
    pthread_mutex_unlock(&r->lock);
}

void serve_req_unref(ServeReq *r) {
    pthread_mutex_lock(&r->lock);
    int left = --r->refs;
    pthread_mutex_unlock(&r->lock);
    if (left)
        return;
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->changed);
    serve_params_free(&r->params);
    free(r->text);
    free(r);
}

static bool append(ServeReq *r, const char *s, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t cap = (r->len + n + 1) * 2;
        char *t = realloc(r->text, cap);
        if (!t)
            return false;
        r->text = t, r->cap = cap;
    }
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = 0;
    return true;
}

static size_t find(const char *hay, size_t n, size_t from, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = from; i + k <= n; i++)
        if (!memcmp(hay + i, needle, k))
            return i;
    return (size_t)-1;
}

/* Cuts the text at the earliest stop string that ends in the bytes after old; true if one did. */
static bool cut_at_stop(ServeReq *r, size_t old) {
    size_t from = old >= r->max_stop ? old - r->max_stop + 1 : 0, best = (size_t)-1;
    for (int i = 0; i < r->params.n_stop; i++) {
        size_t at = find(r->text, r->len, from, r->params.stop[i]);
        if (at < best)
            best = at;
    }
    if (best == (size_t)-1)
        return false;
    r->len = best;
    r->text[best] = 0;
    return true;
}

int serve_req_on_token(void *user, int token) {
    ServeReq *r = user;
    size_t n;
    pthread_mutex_lock(&r->lock);
    const char *piece = gqr_tokenizer_decode(r->tok, r->prev, token, &n);
    r->prev = token;
    size_t old = r->len;
    /* out of memory ends the request as a stop would: the text so far stays whole */
    bool stop = piece && n && (!append(r, piece, n) || cut_at_stop(r, old));
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    return stop;
}

void serve_req_on_done(void *user, int reason, int n_prompt, int n_generated) {
    ServeReq *r = user;
    pthread_mutex_lock(&r->lock);
    r->done = true;
    r->reason = reason;
    r->n_prompt = n_prompt;
    r->n_generated = n_generated;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    serve_req_unref(r); /* the engine's reference */
}

/* Bytes at the end of s[0..n) that start a UTF-8 character not yet whole. */
static size_t utf8_unfinished(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xc0) != 0x80) {
            size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            return need > k ? k : 0;
        }
    }
    return 0;
}

/* Bytes at the end of the text that begin some stop string. */
static size_t stop_prefix(const ServeReq *r) {
    size_t held = 0;
    for (int i = 0; i < r->params.n_stop; i++) {
        size_t k = strlen(r->params.stop[i]) - 1;
        for (k = k < r->len ? k : r->len; k > held; k--)
            if (!memcmp(r->text + r->len - k, r->params.stop[i], k)) {
                held = k;
                break;
            }
    }
    return held;
}

size_t serve_req_ready(const ServeReq *r) {
    if (r->done)
        return r->len;
    size_t held = stop_prefix(r), u = utf8_unfinished(r->text, r->len);
    return r->len - (held > u ? held : u);
}

bool serve_req_wait(ServeReq *r) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += 100000000;
    if (t.tv_nsec >= 1000000000)
        t.tv_sec++, t.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&r->changed, &r->lock, &t);
    if (r->fd < 0)
        return false;
    char c;
    ssize_t got = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

const char *serve_finish_name(int reason) {
    static const char *const names[] = {"error", "length", "stop", "cancel", "shutdown", "error"};
    return reason >= 0 && reason <= GQR_FINISH_ERROR ? names[reason] : "error";
}

/* The length of the valid UTF-8 character at s (n bytes left), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    size_t need = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
                : s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : 0;
    if (!need || need > n)
        return 0;
    for (size_t i = 1; i < need; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong three- and four-byte forms, surrogates, past U+10FFFF */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return need;
}

char *serve_utf8(const char *bytes, size_t len) {
    char *out = malloc(len * 3 + 1), *o = out;
    if (!out)
        return NULL;
    const unsigned char *s = (const unsigned char *)bytes;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_char(s + i, len - i);
        if (k && s[i]) /* a NUL too becomes U+FFFD: cJSON's strings end at one */
            memcpy(o, s + i, k), o += k, i += k;
        else
            memcpy(o, "\xef\xbf\xbd", 3), o += 3, i++;
    }
    *o = 0;
    return out;
}
