/*
 * serve.c: gqac serve MODEL.gqa --weights W: the model compiled in this
 * process (jit.c), its weights and tokenizer loaded, one continuous-
 * batching engine (runtime/engine.h) stepping every request, and HTTP
 * (serve_http.c) in front.  SIGTERM or SIGINT: stop accepting, let the
 * running requests finish (10 s at most, then cut), exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gqac.h"
#include "gqr.h"
#include "serve.h"

#define SHUTDOWN_GRACE_S 10.0

typedef struct {
    const char *weights, *tokenizer, *host, *jit;
    long port, max_seqs, max_queue, threads, timeout;
    size_t kv_memory; /* 0: max_seqs full contexts */
} ServeOptions;

/* What the command holds, freed in one place. */
typedef struct {
    JitModel *jit;
    const gqa_model_api *api;
    gqr_checkpoint ck;
    gqr_tokenizer *tok;
    gqr_engine *engine;
    int listen_fd;
} Server;

static int usage(const char *fmt, const char *arg) {
    fputs("gqac serve: error: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(gqac serve MODEL.gqa --weights W [--tokenizer T] [--host 127.0.0.1] [--port 8080] "
          "[--max-seqs 16] [--kv-memory BYTES] [--max-queue 64] [--threads N] [--timeout SECONDS] "
          "[--jit cc|tcc|llvm])\n",
          stderr);
    return EXIT_USAGE;
}

/* BYTES with an optional k, M or G (powers of 1024). */
static bool bytes(const char *s, size_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    const char *units = "kMG";
    const char *u = *end ? strchr(units, *end) : NULL;
    if (u && !end[1])
        v *= (double)(1ull << (10 * (u - units + 1)));
    else if (*end)
        return false;
    *out = (size_t)v;
    return end != s && !errno && v >= 1 && v < 1e15;
}

static int set_flag(ServeOptions *o, const char *flag, const char *v) {
    const char **str[] = {&o->weights, &o->tokenizer, &o->host, &o->jit};
    static const char *const str_names[] = {"--weights", "--tokenizer", "--host", "--jit"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(flag, str_names[i])) {
            *str[i] = v;
            return 0;
        }
    long *num[] = {&o->port, &o->max_seqs, &o->max_queue, &o->threads, &o->timeout};
    static const char *const num_names[] = {"--port", "--max-seqs", "--max-queue", "--threads", "--timeout"};
    static const long lo[] = {0, 1, 0, 1, 1}, hi[] = {65535, 4096, 100000, 1024, 86400};
    for (int i = 0; i < 5; i++)
        if (!strcmp(flag, num_names[i]))
            return whole(v, lo[i], hi[i], num[i]) ? 0
                   : usage(i ? "%s needs a whole number in its range" : "%s needs a port number 0-65535", flag);
    if (!strcmp(flag, "--kv-memory"))
        return bytes(v, &o->kv_memory) ? 0 : usage("--kv-memory needs a byte count (suffix k, M or G), not '%s'", v);
    return usage("unknown flag '%s'", flag);
}

static int parse(int argc, char **argv, ServeOptions *o) {
    *o = (ServeOptions){.host = "127.0.0.1", .jit = "cc", .port = 8080, .max_seqs = 16, .max_queue = 64,
                        .threads = 0, .timeout = 30};
    for (int i = 0; i < argc; i++) {
        if (i + 1 >= argc)
            return usage(argv[i][0] == '-' ? "%s needs a value" : "unexpected '%s'", argv[i]);
        int rc = set_flag(o, argv[i], argv[i + 1]);
        if (rc)
            return rc;
        i++;
    }
    if (!o->weights)
        return usage("%s", "--weights W is required");
    if (!jit_backend(o->jit))
        return usage("--jit: %s", jit_unavailable(o->jit));
    return 0;
}

/* A socket bound to host:port and listening; -1 with why printed. */
static int listen_on(const char *host, long port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char service[16];
    snprintf(service, sizeof service, "%ld", port);
    int rc = getaddrinfo(host, service, &hints, &ai);
    if (rc) {
        fprintf(stderr, "gqac serve: error: cannot listen on %s:%ld: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128)) {
        fprintf(stderr, "gqac serve: error: cannot listen on %s:%ld: %s\n", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage a;
    socklen_t n = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &n))
        return -1;
    return a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&a)->sin_port);
}

/* --tokenizer T, else the one GGUF weights carry (as gqac run). */
static int load_tokenizer(const ServeOptions *o, Server *s) {
    char err[1024];
    int vocab = s->api->shape.vocab_size;
    int rc = o->tokenizer ? gqr_tokenizer_load(&s->tok, o->tokenizer, vocab, err, sizeof err)
             : s->ck.format == GQR_FORMAT_GGUF ? gqr_gguf_tokenizer(&s->tok, o->weights, vocab, err, sizeof err)
                                               : 0;
    if (rc) {
        fprintf(stderr, "gqac serve: error: %s\n", err);
        return EXIT_INPUT;
    }
    if (!s->tok) {
        fprintf(stderr, "gqac serve: error: prompts need a tokenizer: give --tokenizer FILE%s\n",
                o->tokenizer || s->ck.format != GQR_FORMAT_GGUF ? "" : " (the GGUF file carries none)");
        return o->tokenizer || s->ck.format == GQR_FORMAT_GGUF ? EXIT_INPUT : EXIT_USAGE;
    }
    return 0;
}

/* The model's code, weights and tokenizer. */
static int load(const Model *m, const ServeOptions *o, Server *s) {
    char err[1024];
    s->jit = jit_compile(m, jit_backend(o->jit), &s->api, err, sizeof err);
    if (!s->jit) {
        fprintf(stderr, "gqac serve: error: %s\n", err);
        return EXIT_INPUT;
    }
    if (!s->api->forward_seqs || !s->api->page_bytes) {
        fprintf(stderr, "gqac serve: error: this model's generated code has no forward_seqs (paged KV cache)\n");
        return EXIT_INPUT;
    }
    if (gqr_checkpoint_load(&s->ck, o->weights, s->api, GQR_LOAD_MMAP, err, sizeof err)) {
        fprintf(stderr, "gqac serve: error: %s\n", err);
        return EXIT_INPUT;
    }
    return load_tokenizer(o, s);
}

static int start_engine(const ServeOptions *o, Server *s, size_t kv_memory) {
    char err[1024];
    gqr_engine_opts eo = {(int)o->max_seqs, kv_memory, (int)o->max_queue, (int)o->threads, 0};
    if (gqr_engine_new(&s->engine, s->api, s->ck.tensors, s->ck.n_tensors, &eo, err, sizeof err) ||
        gqr_engine_start(s->engine)) {
        fprintf(stderr, "gqac serve: error: %s\n", s->engine ? "the engine's thread did not start" : err);
        return EXIT_INPUT;
    }
    return 0;
}

/* --kv-memory, or max-seqs full contexts. */
static size_t kv_budget(const ServeOptions *o, const gqa_model_api *api) {
    if (o->kv_memory)
        return o->kv_memory;
    size_t pages = (size_t)(api->shape.seq_len + api->page_positions - 1) / (size_t)api->page_positions;
    return (size_t)o->max_seqs * pages * api->page_bytes;
}

/* Waits up to seconds for the open requests to end (their last events sent). */
static void drain(ServeCtx *c, double seconds) {
    for (int i = 0; i < (int)(seconds * 100); i++) {
        pthread_mutex_lock(&c->lock);
        int active = c->active;
        pthread_mutex_unlock(&c->lock);
        if (!active)
            return;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
}

/* Serves until SIGTERM or SIGINT (blocked in every thread, taken here by sigwait). */
static int serve(const Model *m, const ServeOptions *o, Server *s, const sigset_t *sigs) {
    ServeCtx c = {.engine = s->engine, .tok = s->tok, .model_name = m->name, .context = s->api->shape.seq_len,
                  .page_positions = s->api->page_positions, .timeout_s = (unsigned)o->timeout};
    pthread_mutex_init(&c.lock, NULL);
    /* the margin: /health, /metrics and a burst past the queue get their answer (503), not a refusal */
    int limit = (int)(o->max_seqs + o->max_queue + 64);
    struct MHD_Daemon *d = serve_http_start(&c, s->listen_fd, limit, (unsigned)o->timeout);
    if (!d) {
        fprintf(stderr, "gqac serve: error: the HTTP server did not start: %s\n", strerror(errno));
        pthread_mutex_destroy(&c.lock);
        return EXIT_INPUT;
    }
    gqr_engine_stats st;
    gqr_engine_stats_get(s->engine, &st);
    bool v6 = strchr(o->host, ':') != NULL; /* a URL brackets an IPv6 address */
    fprintf(stderr, "gqac serve: listening on http://%s%s%s:%d (%s: %d KV pages of %zu bytes, max-seqs %ld)\n",
            v6 ? "[" : "", o->host, v6 ? "]" : "", bound_port(s->listen_fd), m->name, st.pages_total, s->api->page_bytes, o->max_seqs);
    int sig = 0;
    sigwait(sigs, &sig);
    fprintf(stderr, "gqac serve: %s: finishing the running requests (%.0f s at most)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", SHUTDOWN_GRACE_S);
    pthread_mutex_lock(&c.lock);
    c.stopping = true;
    pthread_mutex_unlock(&c.lock);
    MHD_quiesce_daemon(d); /* no new connections */
    gqr_engine_shutdown(s->engine, SHUTDOWN_GRACE_S);
    drain(&c, 2); /* the cut streams' last events go out */
    MHD_stop_daemon(d);
    pthread_mutex_destroy(&c.lock);
    fprintf(stderr, "gqac serve: stopped\n");
    return EXIT_OK;
}

static void server_free(Server *s) {
    gqr_engine_free(s->engine);
    gqr_tokenizer_free(s->tok);
    gqr_checkpoint_close(&s->ck);
    jit_free(s->jit);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
}

int serve_command(const Model *m, int argc, char **argv, Arena *a) {
    (void)a;
    ServeOptions o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    Server s = {.listen_fd = -1};
    rc = load(m, &o, &s);
    size_t kv = rc ? 0 : kv_budget(&o, s.api);
    if (!rc && kv < s.api->page_bytes) {
        fprintf(stderr, "gqac serve: error: --kv-memory %zu holds no KV page (one is %zu bytes)\n", kv,
                s.api->page_bytes);
        rc = EXIT_USAGE;
    }
    if (!rc && (s.listen_fd = listen_on(o.host, o.port)) < 0)
        rc = EXIT_INPUT;
    /* blocked before any thread starts, so that all inherit it and sigwait alone takes them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = rc ? rc : start_engine(&o, &s, kv);
    rc = rc ? rc : serve(m, &o, &s, &sigs);
    server_free(&s);
    return rc;
}
