/*
 * test_runtime.c: the runtime (the runtime/ sources) against a fake model, so no
 * generated code is needed.  The fake's forward writes the one-hot logits of
 * (token + pos) % vocab and checks that positions come in order, so greedy
 * generation has a sequence known in advance.
 *
 * Suites: sampler, generate, checkpoint (files in a mkdtemp directory), cli
 * (gqr_main with stdout and stderr sent to files).
 */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cunit_run.h"
#include "gqr.h"
#include "quant.h"
#include "tensorfile.h"
#include "testing.h"

/* ---- the fake model ---- */

#define VOCAB 10
#define SEQ 16
#define NW 100

struct gqa_state {
    int next_pos;  /* the position forward must see next */
    int fail_at;   /* forward fails at this position with fail_code; -1 never */
    int fail_code;
    int n_forward;
    int fed[SEQ];
    int threads;
};

static int fake_init(gqa_state **out, void *arena, size_t bytes, const void *w, size_t n) {
    if (!out || !arena || bytes < sizeof(gqa_state))
        return GQA_EARENA;
    if (!w || n != 4 * NW)
        return GQA_EWEIGHTS;
    gqa_state *s = arena;
    memset(s, 0, sizeof *s);
    s->fail_at = -1;
    *out = s;
    return GQA_OK;
}

static int fake_forward(gqa_state *s, int token, int pos, float *logits) {
    if (token < 0 || token >= VOCAB)
        return GQA_ETOKEN;
    if (pos != s->next_pos || pos >= SEQ)
        return GQA_EPOS;
    if (pos == s->fail_at)
        return s->fail_code;
    for (int i = 0; logits && i < VOCAB; i++)
        logits[i] = i == (token + pos) % VOCAB ? 1.0f : 0.0f;
    s->fed[pos] = token;
    s->next_pos++;
    s->n_forward++;
    return GQA_OK;
}

static const float dummy_weights[NW];

/* The pointers the last init_tensors got, for the tests to compare. */
static const void *const *got_tensors;
static size_t got_n_tensors;

static int fake_init_tensors(gqa_state **out, void *arena, size_t bytes, const void *const *t,
                             size_t n) {
    got_tensors = t, got_n_tensors = n;
    for (size_t i = 0; t && i < n; i++)
        if (!t[i])
            return GQA_EWEIGHTS;
    return !t ? GQA_EWEIGHTS : fake_init(out, arena, bytes, dummy_weights, 4 * NW);
}

static void fake_reset(gqa_state *s) { s->next_pos = 0; }
static void fake_set_threads(gqa_state *s, int n) { s->threads = n; }

static const double fake_freqs[64] = {1.0};
static const gqa_tensor fake_tensors[1] = {{"w", GQA_T_EMBED, -1, GQA_DT_F32, 1, NW, 4 * NW, 0}};

static const gqa_model_api fake_api = {
    GQA_API_VERSION, "fake", "fake",
    {8, 16, 2, 4, 2, 2, VOCAB, SEQ, 1, 0, 0, 10000.0, 1e-5, 0, 0, 0, 0, SEQ},
    fake_freqs,
    fake_tensors, 1, 4 * NW, sizeof(gqa_state), 64, 0,
    fake_init, fake_init_tensors, fake_forward, NULL, fake_reset, NULL, fake_set_threads, NULL, 0, 0, 0, NULL,
    NULL, NULL,
};

/* A model's tensor table as ir.c lays one out: every kind the shape has,
 * in checkpoint order, matrices at dtype[kind] (vectors f32), each at an
 * offset on 4 bytes.  Returns the count; the packed size in *bytes. */
static size_t make_table(const gqa_shape *s, const int *dtype, gqa_tensor *t, size_t *bytes) {
    int64_t D = s->dim, F = s->hidden_dim, V = s->vocab_size, Q = (int64_t)s->n_heads * s->head_dim,
            KV = (int64_t)s->n_kv_heads * s->head_dim;
    const int64_t rc[15][3] = {{V, D, 0}, {1, D, 1}, {Q, D, 1}, {KV, D, 1}, {KV, D, 1}, {D, Q, 1},
                               {1, D, 1}, {F, D, 1}, {D, F, 1}, {F, D, 1}, {1, D, 0}, {V, D, 0},
                               {1, Q, 1}, {1, KV, 1}, {1, KV, 1}};
    size_t n = 0, off = 0;
    for (int k = 0; k < 15; k++) {
        if ((k == GQA_T_CLS && s->tied_embeddings) || (k >= GQA_T_BQ && !s->qkv_bias))
            continue;
        for (int l = 0; l < (rc[k][2] ? s->n_layers : 1); l++, n++) {
            int dt = rc[k][0] == 1 ? GQA_DT_F32 : dtype[k];
            uint64_t b = 0;
            CU_ASSERT_FATAL(!gqr_q_row_bytes(dt, (uint64_t)(rc[k][0] * rc[k][1]), &b, NULL, 0));
            t[n] = (gqa_tensor){"t", k, rc[k][2] ? l : -1, dt, (int)rc[k][0], (int)rc[k][1],
                                (size_t)b, off};
            off += ((size_t)b + 3) / 4 * 4;
        }
    }
    *bytes = off;
    return n;
}

/* The fake over a shape: its table (of at most 64 tensors) in t. */
static gqa_model_api typed_api(const gqa_shape *s, const int *dtype, gqa_tensor *t) {
    gqa_model_api m = fake_api;
    m.shape = *s;
    m.tensors = t;
    m.n_tensors = make_table(s, dtype, t, &m.weight_bytes);
    return m;
}

/* Every matrix kind at one type. */
static const int *all_at(int dt) {
    static int d[15];
    for (int k = 0; k < 15; k++)
        d[k] = dt;
    return d;
}

/* ---- sampler ---- */

static void test_sampler_bad_args(void) {
    gqr_sampler s;
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, 0, 1, 0.9f, 1), -1);
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, -5, 1, 0.9f, 1), -1);
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, 10, -0.1f, 0.9f, 1), -1);
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, 10, NAN, 0.9f, 1), -1);
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, 10, INFINITY, 0.9f, 1), -1);
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, 10, 1, 0, 1), -1);
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, 10, 1, -0.5f, 1), -1);
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, 10, 1, 1.01f, 1), -1);
    CU_ASSERT_EQUAL(gqr_sampler_init(&s, 10, 1, NAN, 1), -1);
    CU_ASSERT_PTR_NULL(s.cand);
    CU_ASSERT_EQUAL(gqr_sampler_init(NULL, 10, 1, 1, 1), -1);
    CU_ASSERT_EQUAL_FATAL(gqr_sampler_init(&s, 10, 0, 1, 1), 0);
    gqr_sampler_free(&s);
    gqr_sampler_free(&s); /* twice is harmless */
}

static void test_sampler_greedy(void) {
    gqr_sampler s;
    CU_ASSERT_EQUAL_FATAL(gqr_sampler_init(&s, 50, 0, 0.9f, 7), 0);
    float x[50];
    for (int trial = 0; trial < 100; trial++) {
        int want = 0;
        for (int i = 0; i < 50; i++) {
            x[i] = (float)((trial * 37 + i * 101) % 113) - 50.0f;
            if (x[i] > x[want])
                want = i;
        }
        CU_ASSERT_EQUAL(gqr_sample(&s, x), want);
    }
    for (int i = 0; i < 50; i++)
        x[i] = 3;
    x[17] = x[40] = 4; /* ties go to the lowest id */
    CU_ASSERT_EQUAL(gqr_sample(&s, x), 17);
    gqr_sampler_free(&s);
}

static void test_sampler_seed(void) {
    gqr_sampler a, b, c;
    gqr_sampler_init(&a, 8, 1, 0.95f, 42);
    gqr_sampler_init(&b, 8, 1, 0.95f, 42);
    gqr_sampler_init(&c, 8, 1, 0.95f, 43);
    int differ = 0;
    for (int t = 0; t < 500; t++) {
        float xa[8], xb[8], xc[8];
        for (int i = 0; i < 8; i++)
            xa[i] = xb[i] = xc[i] = (float)(i % 3);
        int ta = gqr_sample(&a, xa), tb = gqr_sample(&b, xb), tc = gqr_sample(&c, xc);
        CU_ASSERT_EQUAL(ta, tb);
        differ += ta != tc;
    }
    CU_ASSERT(differ > 0);
    /* splitmix64 from state 0 gives 0xe220a8397b1dcdaf: the stream is the
     * same on every host. */
    gqr_sampler z;
    gqr_sampler_init(&z, 1, 1, 1, 0);
    CU_ASSERT_EQUAL(gqr_random_float(&z), (float)0xe220a8 / 16777216.0f);
    gqr_sampler_free(&a), gqr_sampler_free(&b), gqr_sampler_free(&c), gqr_sampler_free(&z);
}

static void set_log_probs(float *x, const double *p, int n) {
    for (int i = 0; i < n; i++)
        x[i] = (float)log(p[i]);
}

static void test_sampler_top_p(void) {
    static const double p[6] = {0.4, 0.3, 0.15, 0.1, 0.04, 0.01};
    gqr_sampler s;
    int count[6] = {0};
    /* Tiny top_p: only the most likely token. */
    gqr_sampler_init(&s, 6, 1, 1e-3f, 5);
    for (int t = 0; t < 2000; t++) {
        float x[6];
        set_log_probs(x, p, 6);
        count[gqr_sample(&s, x)]++;
    }
    CU_ASSERT_EQUAL(count[0], 2000);
    gqr_sampler_free(&s);
    /* top_p 0.6: the nucleus is {0, 1} (0.7 >= 0.6), drawn 4 : 3. */
    memset(count, 0, sizeof count);
    gqr_sampler_init(&s, 6, 1, 0.6f, 5);
    for (int t = 0; t < 20000; t++) {
        float x[6];
        set_log_probs(x, p, 6);
        count[gqr_sample(&s, x)]++;
    }
    CU_ASSERT_EQUAL(count[0] + count[1], 20000);
    CU_ASSERT_DOUBLE_EQUAL(count[0] / 20000.0, 4.0 / 7.0, 0.02);
    gqr_sampler_free(&s);
}

/* All equal and top_p < 1/n: no token passes llama2.c's prefilter, which
 * there reads index -1; here the nucleus is the top token. */
static void test_sampler_top_p_flat(void) {
    gqr_sampler s;
    gqr_sampler_init(&s, 4, 1, 0.05f, 9);
    for (int t = 0; t < 100; t++) {
        float x[4] = {2, 2, 2, 2};
        CU_ASSERT_EQUAL(gqr_sample(&s, x), 0);
    }
    gqr_sampler_free(&s);
    gqr_sampler_init(&s, 1, 1, 0.5f, 9); /* one token, no division by n - 1 = 0 */
    float one = 3;
    CU_ASSERT_EQUAL(gqr_sample(&s, &one), 0);
    gqr_sampler_free(&s);
}

/* Frequencies against softmax(logits / T) over N draws: the standard error
 * is at most 0.5 / sqrt(N) ~ 0.0011, so 0.006 is over 5 of them. */
static void check_distribution(float temperature) {
    enum { N = 200000, V = 5 };
    static const double p[V] = {0.1, 0.2, 0.3, 0.25, 0.15};
    double want[V], sum = 0;
    for (int i = 0; i < V; i++)
        sum += want[i] = pow(p[i], 1.0 / temperature);
    gqr_sampler s;
    CU_ASSERT_EQUAL_FATAL(gqr_sampler_init(&s, V, temperature, 1, 1234), 0);
    int count[V] = {0};
    for (int t = 0; t < N; t++) {
        float x[V];
        set_log_probs(x, p, V);
        count[gqr_sample(&s, x)]++;
    }
    for (int i = 0; i < V; i++)
        CU_ASSERT_DOUBLE_EQUAL((double)count[i] / N, want[i] / sum, 0.006);
    gqr_sampler_free(&s);
}

static void test_sampler_distribution(void) {
    check_distribution(1.0f);
    check_distribution(2.0f);
    check_distribution(0.5f);
}

static void test_sampler_extreme_logits(void) {
    gqr_sampler s;
    gqr_sampler_init(&s, 3, 1, 1, 3);
    int count[3] = {0};
    for (int t = 0; t < 1000; t++) {
        float x[3] = {1000, 1000, -1000};
        count[gqr_sample(&s, x)]++;
        CU_ASSERT(x[0] == 0.5f && x[2] == 0.0f); /* probabilities, no NaN */
    }
    CU_ASSERT_EQUAL(count[2], 0);
    CU_ASSERT(count[0] > 400 && count[1] > 400);
    gqr_sampler_free(&s);
    gqr_sampler_init(&s, 3, 1e-30f, 0.9f, 3); /* x / T would overflow */
    for (int t = 0; t < 100; t++) {
        float x[3] = {1, 3, 2};
        CU_ASSERT_EQUAL(gqr_sample(&s, x), 1);
    }
    gqr_sampler_free(&s);
}

/* ---- generate ---- */

typedef struct seen { int n, token[64], pos[64], stop_after; } seen;

static int record(void *user, int token, int pos) {
    seen *r = user;
    r->token[r->n] = token;
    r->pos[r->n++] = pos;
    return r->n == r->stop_after;
}

static gqa_state *new_state(void **arena) {
    gqa_state *s = NULL;
    *arena = gqr_arena_alloc(&fake_api);
    CU_ASSERT_PTR_NOT_NULL_FATAL(*arena);
    CU_ASSERT_EQUAL((uintptr_t)*arena % 64, 0);
    CU_ASSERT_EQUAL_FATAL(fake_init(&s, *arena, fake_api.arena_bytes, dummy_weights, 4 * NW), 0);
    return s;
}

static void test_generate_greedy(void) {
    void *arena;
    gqa_state *s = new_state(&arena);
    gqr_sampler smp;
    gqr_sampler_init(&smp, VOCAB, 0, 0.9f, 1);
    const int prompt[2] = {3, 5};
    seen r = {0};
    gqr_result res;
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 2, 5, record, &r, &res), GQA_OK);
    CU_ASSERT_EQUAL(res.n_prompt, 2);
    CU_ASSERT_EQUAL(res.n_generated, 5);
    CU_ASSERT(res.prompt_seconds >= 0 && res.gen_seconds >= 0);
    CU_ASSERT_EQUAL_FATAL(r.n, 5);
    int prev = 5;
    for (int i = 0; i < 5; i++) { /* token at pos p is (token at p-1 + p-1) % V */
        int pos = 2 + i, want = (prev + pos - 1) % VOCAB;
        CU_ASSERT_EQUAL(r.pos[i], pos);
        CU_ASSERT_EQUAL(r.token[i], want);
        prev = want;
    }
    CU_ASSERT_EQUAL(s->n_forward, 2 + 5 - 1); /* the last token is not fed back */
    CU_ASSERT_EQUAL(s->fed[0], 3);
    CU_ASSERT_EQUAL(s->fed[1], 5);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(s->fed[2 + i], r.token[i]);
    /* After reset the same run gives the same tokens, and no callback is fine. */
    fake_reset(s);
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 2, 5, NULL, NULL, &res), 0);
    CU_ASSERT_EQUAL(res.n_generated, 5);
    /* A callback that asks to stop (an end token) ends it there, unfed. */
    fake_reset(s);
    s->n_forward = 0;
    seen stop = {.stop_after = 3};
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 2, 5, record, &stop, &res), 0);
    CU_ASSERT_EQUAL(res.n_generated, 3);
    CU_ASSERT_EQUAL(stop.n, 3);
    CU_ASSERT_EQUAL(s->n_forward, 2 + 3 - 1);
    gqr_sampler_free(&smp);
    gqr_arena_free(arena);
}

static void test_generate_seq_len(void) {
    void *arena;
    gqa_state *s = new_state(&arena);
    gqr_sampler smp;
    gqr_sampler_init(&smp, VOCAB, 0, 1, 1);
    int prompt[SEQ + 1] = {1, 2};
    seen r = {0};
    gqr_result res;
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 2, 1000, record, &r, &res), 0);
    CU_ASSERT_EQUAL(res.n_generated, SEQ - 2);
    CU_ASSERT_EQUAL(r.n, SEQ - 2);
    CU_ASSERT_EQUAL(r.pos[r.n - 1], SEQ - 1);
    /* A prompt that fills the context generates nothing. */
    fake_reset(s);
    r.n = 0;
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, SEQ, 5, record, &r, &res), 0);
    CU_ASSERT_EQUAL(res.n_prompt, SEQ);
    CU_ASSERT_EQUAL(r.n, 0);
    fake_reset(s);
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, SEQ + 1, 5, record, &r, &res),
                    GQA_EPOS);
    CU_ASSERT_EQUAL(s->n_forward, SEQ + SEQ - 1); /* the refused call ran nothing */
    /* Zero tokens asked: the prompt only. */
    fake_reset(s);
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 2, 0, record, &r, &res), 0);
    CU_ASSERT_EQUAL(res.n_prompt, 2);
    CU_ASSERT_EQUAL(res.n_generated, 0);
    gqr_sampler_free(&smp);
    gqr_arena_free(arena);
}

static void test_generate_errors(void) {
    void *arena;
    gqa_state *s = new_state(&arena);
    gqr_sampler smp, wrong;
    gqr_sampler_init(&smp, VOCAB, 0, 1, 1);
    gqr_sampler_init(&wrong, VOCAB + 1, 0, 1, 1);
    const int prompt[2] = {3, 5};
    seen r = {0};
    gqr_result res;
    s->fail_at = 4, s->fail_code = GQA_EWEIGHTS; /* feeding back the token at pos 4 */
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 2, 9, record, &r, &res),
                    GQA_EWEIGHTS);
    CU_ASSERT_EQUAL(res.n_prompt, 2);
    CU_ASSERT_EQUAL(res.n_generated, 3);
    CU_ASSERT_EQUAL(r.n, 3);
    fake_reset(s);
    s->fail_at = 1, s->fail_code = GQA_EARENA; /* in the prompt: nothing generated */
    r.n = 0;
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 2, 9, record, &r, &res),
                    GQA_EARENA);
    CU_ASSERT_EQUAL(res.n_prompt, 1);
    CU_ASSERT_EQUAL(res.n_generated, 0);
    CU_ASSERT_EQUAL(r.n, 0);
    fake_reset(s);
    const int bad[1] = {VOCAB};
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, bad, 1, 3, NULL, NULL, NULL), GQA_ETOKEN);
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 0, 3, NULL, NULL, &res), GQA_EARG);
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, prompt, 2, -1, NULL, NULL, &res), GQA_EARG);
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &smp, NULL, 2, 3, NULL, NULL, &res), GQA_EARG);
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, NULL, &smp, prompt, 2, 3, NULL, NULL, &res),
                    GQA_EARG);
    CU_ASSERT_EQUAL(gqr_generate(&fake_api, s, &wrong, prompt, 2, 3, NULL, NULL, &res),
                    GQA_EARG);
    gqr_sampler_free(&smp);
    gqr_sampler_free(&wrong);
    gqr_arena_free(arena);
}

static void test_strerror(void) {
    TEST_HAS(gqr_strerror(GQA_OK), "success");
    TEST_HAS(gqr_strerror(GQA_EARENA), "arena");
    TEST_HAS(gqr_strerror(GQA_EWEIGHTS), "weights");
    TEST_HAS(gqr_strerror(GQA_ETOKEN), "token");
    TEST_HAS(gqr_strerror(GQA_EPOS), "position");
    TEST_HAS(gqr_strerror(GQA_EARG), "argument");
    TEST_HAS(gqr_strerror(GQR_ENOMEM), "memory");
    TEST_HAS(gqr_strerror(-7), "unknown");
}

static void test_arena(void) {
    gqa_model_api m = fake_api;
    m.arena_align = 4096;
    m.arena_bytes = 10000;
    unsigned char *a = gqr_arena_alloc(&m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL((uintptr_t)a % 4096, 0);
    size_t nonzero = 0;
    for (size_t i = 0; i < m.arena_bytes; i++)
        nonzero += a[i] != 0;
    CU_ASSERT_EQUAL(nonzero, 0);
    gqr_arena_free(a);
    m.arena_align = 96; /* not a power of two */
    CU_ASSERT_PTR_NULL(gqr_arena_alloc(&m));
    CU_ASSERT_PTR_NULL(gqr_arena_alloc(NULL));
}

/* ---- checkpoint ---- */

/* The fake model's header with field i (0..6) set to v, or none for i < 0. */
static void make_header(unsigned char *h, int i, int32_t v) {
    const int32_t f[7] = {8, 16, 2, 4, 2, VOCAB, SEQ}; /* tied: vocab > 0 */
    for (int k = 0; k < 7; k++)
        test_put_le32(h + 4 * k, k == i ? v : f[k]);
}

/* Header (field i = v), then n_floats floats 0.25 * k. */
static const char *write_ckpt(const char *name, int i, int32_t v, size_t n_floats) {
    size_t size = GQR_HEADER_BYTES + n_floats * sizeof(float);
    unsigned char *buf = malloc(size);
    make_header(buf, i, v);
    for (size_t k = 0; k < n_floats; k++) {
        float x = 0.25f * (float)k;
        memcpy(buf + GQR_HEADER_BYTES + k * sizeof x, &x, sizeof x);
    }
    const char *path = test_write_tmp(name, buf, size);
    free(buf);
    return path;
}

/* n bytes 'x'. */
static const char *write_bytes(const char *name, size_t n) {
    char buf[16];
    CU_ASSERT_FATAL(n <= sizeof buf);
    memset(buf, 'x', n);
    return test_write_tmp(name, buf, n);
}

static void check_loaded(const gqa_model_api *m, const char *path, int flags) {
    gqr_checkpoint ck;
    char err[256] = "";
    CU_ASSERT_EQUAL_FATAL(gqr_checkpoint_load(&ck, path, m, flags, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(err, "");
    CU_ASSERT_EQUAL(ck.weight_bytes, 4 * NW);
    CU_ASSERT_EQUAL(ck.file_bytes, GQR_HEADER_BYTES + 4 * NW);
    CU_ASSERT_EQUAL_FATAL(ck.n_tensors, 1);
    CU_ASSERT(ck.tensors[0] == ck.weights); /* weights + the tensor's offset */
    int wrong = 0;
    for (size_t k = 0; k < NW; k++)
        wrong += ((const float *)ck.weights)[k] != 0.25f * (float)k;
    CU_ASSERT_EQUAL(wrong, 0);
    if (flags == GQR_LOAD_READ_HUGEPAGES)
        CU_ASSERT_EQUAL((uintptr_t)ck.weights % (2u << 20), 0);
    gqa_state *s = NULL;
    void *arena = gqr_arena_alloc(m);
    CU_ASSERT_EQUAL(m->init(&s, arena, m->arena_bytes, ck.weights, ck.weight_bytes), GQA_OK);
    gqr_arena_free(arena);
    gqr_checkpoint_close(&ck);
    CU_ASSERT_PTR_NULL(ck.weights);
    gqr_checkpoint_close(&ck); /* twice is harmless */
}

static void test_checkpoint_good(void) {
    const char *path = write_ckpt("good.bin", -1, 0, NW);
    check_loaded(&fake_api, path, GQR_LOAD_MMAP);
    check_loaded(&fake_api, path, GQR_LOAD_READ_HUGEPAGES);
    gqr_checkpoint ck;
    char err[256];
    CU_ASSERT_EQUAL(gqr_checkpoint_open(&ck, path, &fake_api, err, sizeof err), 0);
    CU_ASSERT_EQUAL(((const float *)ck.weights)[3], 0.75f);
    gqr_checkpoint_close(&ck);
    /* An untied model wants vocab_size < 0. */
    gqa_model_api untied = fake_api;
    untied.shape.tied_embeddings = 0;
    path = write_ckpt("untied.bin", 5, -VOCAB, NW);
    check_loaded(&untied, path, GQR_LOAD_MMAP);
    check_loaded(&untied, path, GQR_LOAD_READ_HUGEPAGES);
}

/* Loads path in both modes; each must fail, leave ck zeroed, and say every
 * string in want (NULL-terminated). */
static void expect_error(const gqa_model_api *m, const char *path, ...) {
    for (int flags = GQR_LOAD_MMAP; flags <= GQR_LOAD_READ_HUGEPAGES; flags++) {
        gqr_checkpoint ck;
        char err[256] = "";
        CU_ASSERT_EQUAL(gqr_checkpoint_load(&ck, path, m, flags, err, sizeof err), -1);
        CU_ASSERT_PTR_NULL(ck.weights);
        CU_ASSERT_PTR_NULL(ck.map);
        CU_ASSERT_PTR_NULL(ck.buf);
        TEST_HAS(err, path);
        va_list ap;
        va_start(ap, path);
        for (const char *w; (w = va_arg(ap, const char *));)
            TEST_HAS(err, w);
        va_end(ap);
        gqr_checkpoint_close(&ck);
    }
}

static void test_checkpoint_fields(void) {
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t found[7] = {9, 32, 3, 8, 1, 11, 2048};
    static const char *const want[7] = {"compiled for 8", "compiled for 16", "compiled for 2",
                                        "compiled for 4", "compiled for 2", "compiled for 10",
                                        "compiled for 16"};
    for (int i = 0; i < 7; i++) {
        char name[32], said[64];
        snprintf(name, sizeof name, "field%d.bin", i);
        const char *path = write_ckpt(name, i, found[i], NW);
        snprintf(said, sizeof said, ": %s is %d in the file", names[i], (int)found[i]);
        expect_error(&fake_api, path, said, want[i], (char *)NULL);
    }
    /* The sign of vocab_size against tied_embeddings, both ways. */
    const char *path = write_ckpt("sign.bin", 5, -VOCAB, NW);
    expect_error(&fake_api, path, "vocab_size is -10", "separate", "tied_embeddings = 1",
                 (char *)NULL);
    gqa_model_api untied = fake_api;
    untied.shape.tied_embeddings = 0;
    path = write_ckpt("sign2.bin", -1, 0, NW);
    expect_error(&untied, path, "vocab_size is 10", "shared", "tied_embeddings = 0",
                 (char *)NULL);
    path = write_ckpt("minvocab.bin", 5, INT32_MIN, NW);
    expect_error(&fake_api, path, "vocab_size is -2147483648", "compiled for 10", (char *)NULL);
}

static void test_checkpoint_sizes(void) {
    expect_error(&fake_api, write_ckpt("short.bin", -1, 0, NW - 1), "file is 424 bytes",
                 "expected 28 + 400 = 428 bytes", "truncated", (char *)NULL);
    expect_error(&fake_api, write_ckpt("long.bin", -1, 0, NW + 1), "file is 432 bytes",
                 "expected 28 + 400 = 428 bytes", "trailing", (char *)NULL);
    expect_error(&fake_api, write_ckpt("header.bin", -1, 0, 0), "file is 28 bytes",
                 "= 428 bytes", (char *)NULL);
    expect_error(&fake_api, write_bytes("empty.bin", 0), "empty", (char *)NULL);
    expect_error(&fake_api, write_bytes("ten.bin", 10), "file is 10 bytes", "28-byte header",
                 (char *)NULL);
    expect_error(&fake_api, test_tmp("missing.bin"), "cannot open", "No such file",
                 (char *)NULL);
    const char *dir = test_tmp("adir");
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    expect_error(&fake_api, dir, "directory", (char *)NULL);
}

/* size bytes: head (n bytes), then zeros. */
static const char *write_head(const char *name, const void *head, size_t n, size_t size) {
    unsigned char *buf = calloc(size, 1);
    memcpy(buf, head, n);
    const char *path = test_write_tmp(name, buf, size);
    free(buf);
    return path;
}

/* Files of other formats, damaged, are not read as llama2.c headers (which
 * said "dim is 1481983815" of a GGUF whose magic was wrong): each format
 * is told by its magic, and a file that has none is described. */
static void test_checkpoint_other_formats(void) {
    size_t size = GQR_HEADER_BYTES + 4 * NW;
    static const unsigned char gguf_bad[] = "GGUX\3\0\0\0\1\0\0\0\0\0\0\0";
    const char *path = write_head("badmagic.bin", gguf_bad, 16, size);
    expect_error(&fake_api, path, "not a llama2.c checkpoint, GGUF or safetensors file",
                 "its first bytes are 47 47 55 58 03 00 00 00 (\"GGUX....\")", (char *)NULL);
    static const unsigned char gguf_v1[] = "GGUF\1\0\0\0";
    expect_error(&fake_api, write_head("v1.bin", gguf_v1, 8, size), "version 1", (char *)NULL);
    /* A safetensors header length past the end, and one with no JSON. */
    static const unsigned char st_long[] = "\xff\xff\0\0\0\0\0\0{\"a\":";
    expect_error(&fake_api, write_head("stlong.bin", st_long, 13, size),
                 "the header length 65535 runs past the end of the file", (char *)NULL);
    static const unsigned char st_junk[] = "\x10\0\0\0\0\0\0\0junk";
    expect_error(&fake_api, write_head("stjunk.bin", st_junk, 12, size),
                 "not a llama2.c checkpoint", "10 00 00 00 00 00 00 00", (char *)NULL);
    expect_error(&fake_api, write_head("stjunk.safetensors", st_junk, 12, size),
                 "the header (16 bytes) is not JSON", (char *)NULL);
    char err[256] = "";
    gqr_checkpoint ck;
    CU_ASSERT_EQUAL(gqr_checkpoint_load(&ck, path, &fake_api, GQR_LOAD_MMAP, err, sizeof err),
                    -1);
    CU_ASSERT_PTR_NULL(strstr(err, "dim is"));
}

static void test_checkpoint_bytes(void) {
    unsigned char buf[GQR_HEADER_BYTES + 4 * NW] = {0};
    char err[256];
    make_header(buf, -1, 0);
    CU_ASSERT_EQUAL(gqr_checkpoint_check_header(buf, sizeof buf, &fake_api, "mem", err,
                                                sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_checkpoint_check_header(buf, 100, &fake_api, "mem", err, sizeof err),
                    -1);
    TEST_HAS(err, "mem: file is 100 bytes, expected 28 + 400 = 428 bytes");
    CU_ASSERT_EQUAL(gqr_checkpoint_check_header(buf, 27, &fake_api, "mem", err, sizeof err),
                    -1);
    TEST_HAS(err, "27 bytes");
    CU_ASSERT_EQUAL(gqr_checkpoint_check_header(NULL, 0, &fake_api, "mem", err, sizeof err),
                    -1);
    TEST_HAS(err, "empty");
    make_header(buf, 4, 3);
    CU_ASSERT_EQUAL(gqr_checkpoint_check_header(buf, sizeof buf, &fake_api, "w.bin", err,
                                                sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "w.bin: n_kv_heads is 3 in the file, but the model was "
                                "compiled for 2");
    /* A short err buffer truncates, it does not overflow. */
    char tiny[8];
    gqr_checkpoint_check_header(buf, sizeof buf, &fake_api, "w.bin", tiny, sizeof tiny);
    CU_ASSERT_STRING_EQUAL(tiny, "w.bin: ");
}

/* ---- cli ---- */

/* The model cli() runs. */
static const gqa_model_api *cli_api = &fake_api;

/* gqr_main(cli_api) on the NULL-terminated arguments, its stdout and stderr
 * caught in out and err. */
static int cli(char *out, char *err, size_t len, ...) {
    char *argv[32] = {"gqac-run"};
    int argc = 1;
    va_list ap;
    va_start(ap, len);
    while (argc < 31 && (argv[argc] = va_arg(ap, char *)))
        argc++;
    va_end(ap);
    const char *o_path = test_tmp("stdout"), *e_path = test_tmp("stderr");
    fflush(stdout), fflush(stderr);
    int o_save = dup(1), e_save = dup(2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(freopen(o_path, "w", stdout));
    CU_ASSERT_PTR_NOT_NULL_FATAL(freopen(e_path, "w", stderr));
    int rc = gqr_main(cli_api, argc, argv);
    fflush(stdout), fflush(stderr);
    dup2(o_save, 1), dup2(e_save, 2);
    close(o_save), close(e_save);
    char *dst[2] = {out, err};
    const char *src[2] = {o_path, e_path};
    for (int i = 0; i < 2; i++) {
        char *text = test_read_file(src[i], NULL);
        snprintf(dst[i], len, "%s", text ? text : "");
        free(text);
        remove(src[i]);
    }
    return rc;
}

static void test_cli_usage(void) {
    char out[4096], err[4096];
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--help", (char *)NULL), 0);
    TEST_HAS(out, "--weights");
    TEST_HAS(out, "--top-p");
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, (char *)NULL), 2);
    TEST_HAS(err, "gqac-run: error: --weights FILE is required");
    TEST_HAS(err, "--help");
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", "w", "--frob", (char *)NULL), 2);
    TEST_HAS(err, "unknown option '--frob'");
    static const char *const bad[][2] = {
        {"-n", "abc"}, {"-n", "-1"}, {"-n", "5x"}, {"-n", ""}, {"--temp", "-0.5"},
        {"--temp", "nan"}, {"--top-p", "0"}, {"--top-p", "1.5"},
        {"--temp", "1e39"}, {"--top-p", "1e-50"}, {"--seed", "-1"},
        {"--seed", "99999999999999999999999"}, {"--threads", "-2"}, {"--threads", "1e3"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", "w", bad[i][0], bad[i][1],
                            (char *)NULL), 2);
        TEST_HAS(err, bad[i][0]);
    }
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", "w", "--temp", "1e39", (char *)NULL), 2);
    TEST_HAS(err, "--temp wants a number in [0, 3.4e38]");
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", "w", "--top-p", "1e-50", (char *)NULL),
                    2);
    TEST_HAS(err, "--top-p wants a number in (0, 1]");
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", "w", "-n", (char *)NULL), 2);
    TEST_HAS(err, "-n needs a value");
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", "w", "extra", (char *)NULL), 2);
    TEST_HAS(err, "unexpected argument 'extra'");
}

static void test_cli_input_errors(void) {
    char out[4096], err[4096];
    const char *good = write_ckpt("cli.bin", -1, 0, NW);
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", test_tmp("nope.bin"), (char *)NULL),
                    1);
    TEST_HAS(err, "gqac-run: error: ");
    TEST_HAS(err, "nope.bin: cannot open");
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", write_ckpt("cli2.bin", 1, 17, NW),
                        (char *)NULL), 1);
    TEST_HAS(err, "hidden_dim is 17 in the file, but the model was compiled for 16");
    static const char *const bad[] = {"10", "1,,2", "1,", "", "a", "1 2", " 1", "+1", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", good, "--tokens", bad[i],
                            (char *)NULL), 1);
        TEST_HAS(err, "gqac-run: error: --tokens");
        CU_ASSERT_STRING_EQUAL(out, "");
    }
    TEST_HAS(err, "token -1 is outside [0, 10)");
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", good, "--tokens",
                        "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", (char *)NULL), 1);
    TEST_HAS(err, "17 tokens do not fit in seq_len 16");
}

static void test_cli_run(void) {
    char out[4096], err[4096];
    const char *good = write_ckpt("run.bin", -1, 0, NW);
    for (int huge = 0; huge < 2; huge++) {
        CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", good, "--tokens", "3,5", "-n",
                            "4", "--temp", "0", "--threads", "2",
                            huge ? "--hugepages" : "--no-hugepages", (char *)NULL), 0);
        CU_ASSERT_STRING_EQUAL(out, "6 8 1 5\n");
        TEST_HAS(err, "model fake");
        TEST_HAS(err, "run.bin");
        TEST_HAS(err, huge ? "huge pages" : "mapped");
        TEST_HAS(err, "prompt: 2 tok in ");
        TEST_HAS(err, "generated: 4 tok in ");
    }
    /* Defaults: prompt "1", 32 tokens capped by seq_len 16; seeds repeat. */
    char out2[4096];
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", good, "--seed", "7", (char *)NULL),
                    0);
    TEST_HAS(err, "seed 7");
    TEST_HAS(err, "generated: 15 tok");
    CU_ASSERT_EQUAL(cli(out2, err, sizeof out2, "--weights", good, "--seed", "7", (char *)NULL),
                    0);
    CU_ASSERT_STRING_EQUAL(out, out2);
}

/* GGUF weights as gqac writes them carry no tokenizer: token ids in and
 * out still run (they were refused for the missing tokenizer.ggml.model);
 * text needs --tokenizer. */
static void test_cli_gguf_no_tokenizer(void) {
    gqa_tensor t[64];
    gqa_model_api sized = typed_api(&fake_api.shape, all_at(GQA_DT_F32), t);
    float *w = calloc(4096, sizeof *w);
    char out[4096], err[4096];
    const char *path = test_tmp("notok.gguf");
    CU_ASSERT_EQUAL_FATAL(gqr_convert_write(path, GQR_FORMAT_GGUF, 0, &sized, w, err,
                                            sizeof err), 0);
    free(w);
    cli_api = &sized;
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", path, "--tokens", "3,5", "-n", "4",
                        "--temp", "0", (char *)NULL), 0);
    CU_ASSERT_STRING_EQUAL(out, "6 8 1 5\n");
    TEST_HAS(err, "(GGUF, ");
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", path, "-p", "hi", (char *)NULL), 1);
    TEST_HAS(err, "-p needs a tokenizer");
    TEST_HAS(err, "notok.gguf has none");
    cli_api = &fake_api;
}

/* ---- in place ---- */

/* Rows of whole 256-weight blocks; untied, so output.weight is there. */
static const gqa_shape qshape = {256, 256, 1, 2, 1, 128, VOCAB, SEQ, 0, 0, 0, 10000.0, 1e-5, 0, 0, 0, 0, SEQ};
static double qfreqs[64];

static gqa_model_api qapi(const int *dtype, gqa_tensor *t, int halves) {
    gqa_shape s = qshape;
    s.rope_halves = halves;
    for (int i = 0; i < 64; i++)
        qfreqs[i] = pow(10000.0, -2.0 * i / 128);
    gqa_model_api m = typed_api(&s, dtype, t);
    m.rope_freqs = qfreqs;
    return m;
}

/* Random floats for qshape's f32 layout (the writer's input). */
static float *qweights(void) {
    enum { N = 600000 };
    float *w = malloc(N * sizeof *w);
    uint64_t x = 1;
    for (size_t i = 0; i < N; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        w[i] = (float)((int)(x >> 41) - (1 << 22)) / (float)(1 << 22) * 0.05f;
    }
    return w;
}

/* m's tensors written to name in format, each at the type m has for it
 * (o's keep list too, when given). */
static const char *write_typed(const char *name, int format, int dtype, const gqa_model_api *m,
                               gqr_write_opts *o) {
    gqr_write_opts plain = {.dtype = dtype, .types = m->tensors, .n_types = m->n_tensors};
    float *w = qweights();
    char err[512] = "";
    const char *path = test_tmp(name);
    int rc = gqr_convert_write_opts(path, format, o ? o : &plain, m, w, err, sizeof err);
    if (rc)
        printf("\n  %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    free(w);
    return path;
}

static int in_map(const gqr_checkpoint *ck, const void *p) {
    const unsigned char *b = ck->tf->maps[0];
    return (const unsigned char *)p >= b && (const unsigned char *)p < b + ck->tf->map_sizes[0];
}

/* Loads path for m and hands its tensors to init_tensors; counts the
 * tensors used in place (inside the mapping, owning nothing). */
static size_t load_count(const gqa_model_api *m, const char *path, gqr_checkpoint *ck) {
    char err[512] = "";
    int rc = gqr_checkpoint_load(ck, path, m, GQR_LOAD_MMAP, err, sizeof err);
    if (rc)
        printf("\n  %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(ck->n_tensors, m->n_tensors);
    gqa_state *s = NULL;
    void *arena = gqr_arena_alloc(m);
    CU_ASSERT_EQUAL(m->init_tensors(&s, arena, m->arena_bytes, ck->tensors, ck->n_tensors), GQA_OK);
    CU_ASSERT(got_tensors == ck->tensors && got_n_tensors == m->n_tensors);
    gqr_arena_free(arena);
    size_t inplace = 0;
    for (size_t i = 0; i < ck->n_tensors; i++) {
        CU_ASSERT(in_map(ck, ck->tensors[i]) == !ck->owned[i]);
        inplace += !ck->owned[i];
    }
    return inplace;
}

static void test_inplace_same_types(void) {
    static const int types[] = {GQA_DT_Q8_0, GQA_DT_Q4_0, GQA_DT_Q4_K, GQA_DT_Q6_K, GQA_DT_F16,
                                GQA_DT_BF16, GQA_DT_F32};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        gqa_tensor t[64];
        gqa_model_api m = qapi(all_at(types[k]), t, 0);
        const char *path = write_typed("same.gguf", GQR_FORMAT_GGUF, GQA_DT_F32, &m, NULL);
        gqr_checkpoint ck;
        CU_ASSERT_EQUAL(load_count(&m, path, &ck), m.n_tensors);
        CU_ASSERT_EQUAL(ck.owned_bytes, 0);
        CU_ASSERT(ck.inplace_bytes > 0 && ck.inplace_bytes <= ck.file_bytes);
        gqr_checkpoint_close(&ck);
    }
}

/* A llama2.c file: each tensor at its offset in the packed weights. */
static void test_inplace_packed(void) {
    gqa_tensor t[64];
    gqa_model_api m = qapi(all_at(GQA_DT_Q4_K), t, 0);
    size_t size = GQR_HEADER_BYTES + m.weight_bytes;
    unsigned char *buf = calloc(1, size);
    const int32_t h[7] = {256, 256, 1, 2, 1, -VOCAB, SEQ}; /* untied: vocab < 0 */
    for (int k = 0; k < 7; k++)
        test_put_le32(buf + 4 * k, (uint32_t)h[k]);
    const char *path = test_write_tmp("packed.bin", buf, size);
    free(buf);
    gqr_checkpoint ck;
    char err[512] = "";
    CU_ASSERT_EQUAL_FATAL(gqr_checkpoint_load(&ck, path, &m, GQR_LOAD_MMAP, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(ck.n_tensors, m.n_tensors);
    int wrong = 0;
    for (size_t i = 0; i < m.n_tensors; i++)
        wrong += ck.tensors[i] != (const unsigned char *)ck.weights + t[i].offset;
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(t[m.n_tensors - 1].offset > 0);
    gqr_checkpoint_close(&ck);
}

/* An f16 file for an f32 model: every tensor converted, widened exactly. */
static void test_inplace_widened(void) {
    gqa_tensor t16[64], t32[64];
    gqa_model_api m16 = qapi(all_at(GQA_DT_F16), t16, 0), m32 = qapi(all_at(GQA_DT_F32), t32, 0);
    const char *path = write_typed("w16.gguf", GQR_FORMAT_GGUF, GQA_DT_F32, &m16, NULL);
    gqr_checkpoint ck;
    size_t vectors = 3; /* attn_norm, ffn_norm, output_norm: F32 in the file */
    CU_ASSERT_EQUAL(load_count(&m32, path, &ck), vectors);
    const gqr_tensor *x = gqr_tf_find(ck.tf, "blk.0.attn_k.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    const float *got = ck.tensors[3]; /* embed, attn_norm, wq, wk */
    CU_ASSERT_EQUAL(t32[3].kind, GQA_T_WK);
    CU_ASSERT_EQUAL(got[5], gqr_f16_to_f32(gqr_tf_le16(x->data + 10)));
    gqr_checkpoint_close(&ck);
}

/* A safetensors BF16 file for a bf16 model that pairs RoPE in halves as
 * Hugging Face does: every tensor in place. */
static void test_inplace_safetensors(void) {
    gqa_tensor t[64];
    gqa_model_api m = qapi(all_at(GQA_DT_BF16), t, 1);
    const char *path = write_typed("w.safetensors", GQR_FORMAT_SAFETENSORS, GQA_DT_BF16, &m, NULL);
    gqr_checkpoint ck;
    CU_ASSERT_EQUAL(load_count(&m, path, &ck), m.n_tensors);
    gqr_checkpoint_close(&ck);
    /* every tensor BF16, norms included: those three widened */
    gqr_write_opts o = {.dtype = GQR_DT_BF16};
    path = write_typed("all.safetensors", GQR_FORMAT_SAFETENSORS, 0, &m, &o);
    CU_ASSERT_EQUAL(load_count(&m, path, &ck), m.n_tensors - 3);
    CU_ASSERT_EQUAL(ck.owned_bytes, 3 * 256 * sizeof(float));
    gqr_checkpoint_close(&ck);
}

/* A Q4_K_M-like mix as gqac quantize --keep writes it: attn_v and
 * ffn_down at Q6_K, the rest Q4_K, each in place. */
static void test_inplace_mixed(void) {
    int d[15];
    memcpy(d, all_at(GQA_DT_Q4_K), sizeof d);
    d[GQA_T_WV] = d[GQA_T_W2] = GQA_DT_Q6_K;
    gqa_tensor t[64];
    gqa_model_api m = qapi(d, t, 0);
    const char *keep[] = {"blk.0.attn_v.weight", "blk.0.ffn_down.weight"};
    gqr_write_opts o = {.dtype = GQR_DT_Q4_K, .keep = keep, .n_keep = 2, .keep_dtype = GQR_DT_Q6_K};
    const char *path = write_typed("mix.gguf", GQR_FORMAT_GGUF, 0, &m, &o);
    CU_ASSERT_EQUAL(o.counts[GQR_DT_Q6_K], 2);
    gqr_checkpoint ck;
    CU_ASSERT_EQUAL(load_count(&m, path, &ck), m.n_tensors);
    gqr_checkpoint_close(&ck);
    /* the same file for an all-Q4_K model: attn_v is named, with the way out */
    gqa_model_api q4 = qapi(all_at(GQA_DT_Q4_K), t, 0);
    char err[512] = "";
    CU_ASSERT_EQUAL(gqr_checkpoint_load(&ck, path, &q4, GQR_LOAD_MMAP, err, sizeof err), -1);
    TEST_HAS(err, "mix.gguf: tensor 'blk.0.attn_v.weight' is Q6_K in the file, but the model has "
                  "q4_k for attn_v at layer 0; `gqac import ");
    TEST_HAS(err, "mix.gguf` writes the .gqa that matches the file");
    CU_ASSERT_PTR_NULL(ck.tensors);
}

/* Quantized q and k rows of a file paired otherwise than the model move
 * whole: row 1 of a halves model is the adjacent file's row 2. */
static void test_inplace_permuted(void) {
    gqa_tensor t[64];
    gqa_model_api m = qapi(all_at(GQA_DT_Q8_0), t, 1);
    const char *path = write_typed("perm.gguf", GQR_FORMAT_GGUF, 0, &m, NULL);
    gqr_checkpoint ck;
    CU_ASSERT_EQUAL(load_count(&m, path, &ck), m.n_tensors - 2); /* wq, wk */
    const gqr_tensor *x = gqr_tf_find(ck.tf, "blk.0.attn_q.weight");
    size_t row = 256 / 32 * 34;
    CU_ASSERT(memcmp((const unsigned char *)ck.tensors[2] + row, x->data + 2 * row, row) == 0);
    CU_ASSERT(memcmp((const unsigned char *)ck.tensors[2] + 64 * row, x->data + row, row) == 0);
    gqr_checkpoint_close(&ck);
}

/* A NaN scale is refused at load, by tensor and block; a quantized matrix
 * for an f32 model by its types. */
static void test_inplace_errors(void) {
    gqa_tensor t[64], t32[64];
    gqa_model_api m = qapi(all_at(GQA_DT_Q8_0), t, 0), m32 = qapi(all_at(GQA_DT_F32), t32, 0);
    const char *path = write_typed("nan.gguf", GQR_FORMAT_GGUF, 0, &m, NULL);
    char err[512] = "";
    gqr_checkpoint ck;
    CU_ASSERT_EQUAL(gqr_checkpoint_load(&ck, path, &m32, GQR_LOAD_MMAP, err, sizeof err), -1);
    TEST_HAS(err, "nan.gguf: tensor 'token_embd.weight' is Q8_0 in the file, but the model has f32 "
                  "for token_embd;");
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, path, err, sizeof err), 0);
    size_t at = (size_t)(gqr_tf_find(tf, "blk.0.ffn_up.weight")->data - (const unsigned char *)tf->maps[0]);
    gqr_tf_close(tf);
    size_t len;
    unsigned char *bytes = (unsigned char *)test_read_file(path, &len);
    bytes[at + 3 * 34] = 0x00, bytes[at + 3 * 34 + 1] = 0x7e; /* block 3's scale: NaN */
    path = test_write_tmp("nan.gguf", bytes, len);
    free(bytes);
    CU_ASSERT_EQUAL(gqr_checkpoint_load(&ck, path, &m, GQR_LOAD_MMAP, err, sizeof err), -1);
    TEST_HAS(err, "nan.gguf: tensor 'blk.0.ffn_up.weight': ");
    TEST_HAS(err, "block 3");
    CU_ASSERT_PTR_NULL(ck.tensors);
}

/* The load line: how the file came in, what is resident after (at least
 * the tensors, which load made resident), and the peak at the end. */
static void test_cli_resident(void) {
    gqa_tensor t[64];
    gqa_model_api m = qapi(all_at(GQA_DT_F32), t, 0);
    const char *path = write_typed("rss.gguf", GQR_FORMAT_GGUF, GQA_DT_F32, &m, NULL);
    char out[4096], err[4096];
    cli_api = &m;
    CU_ASSERT_EQUAL(cli(out, err, sizeof out, "--weights", path, "--tokens", "3", "-n", "2",
                        "--temp", "0", (char *)NULL), 0);
    cli_api = &fake_api;
    double file = 0, inplace = -1, conv = -1, rss = 0, peak = 0;
    const char *p = strstr(err, "rss.gguf (GGUF, ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(sscanf(p, "rss.gguf (GGUF, %lf MiB mapped: %lf MiB in place, %lf MiB "
                              "converted), resident %lf MiB", &file, &inplace, &conv, &rss), 4);
    CU_ASSERT(file > 1.0 && inplace == file && conv == 0.0);
    CU_ASSERT(rss >= file);
    p = strstr(err, "; peak resident ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(sscanf(p, "; peak resident %lf MiB", &peak), 1);
    CU_ASSERT(peak >= rss);
}

static void add_file_suites(void) {
    CU_pSuite s = CU_add_suite("checkpoint", NULL, NULL);
    CU_add_test(s, "good file, both modes", test_checkpoint_good);
    CU_add_test(s, "each header field", test_checkpoint_fields);
    CU_add_test(s, "sizes, missing, directory", test_checkpoint_sizes);
    CU_add_test(s, "check_header on bytes", test_checkpoint_bytes);
    CU_add_test(s, "other formats, damaged", test_checkpoint_other_formats);
    s = CU_add_suite("cli", NULL, NULL);
    CU_add_test(s, "usage errors exit 2", test_cli_usage);
    CU_add_test(s, "input errors exit 1", test_cli_input_errors);
    CU_add_test(s, "runs", test_cli_run);
    CU_add_test(s, "GGUF weights without a tokenizer", test_cli_gguf_no_tokenizer);
    CU_add_test(s, "resident memory on the load line", test_cli_resident);
    s = CU_add_suite("in place", NULL, NULL);
    CU_add_test(s, "same types: every tensor in the mapping", test_inplace_same_types);
    CU_add_test(s, "llama2.c: packed offsets", test_inplace_packed);
    CU_add_test(s, "f16 file, f32 model: widened", test_inplace_widened);
    CU_add_test(s, "safetensors bf16", test_inplace_safetensors);
    CU_add_test(s, "Q4_K_M-like mix", test_inplace_mixed);
    CU_add_test(s, "quantized rows reordered", test_inplace_permuted);
    CU_add_test(s, "NaN scale, quantized for f32", test_inplace_errors);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("sampler", NULL, NULL);
    CU_add_test(s, "bad arguments", test_sampler_bad_args);
    CU_add_test(s, "greedy is argmax", test_sampler_greedy);
    CU_add_test(s, "seeded streams", test_sampler_seed);
    CU_add_test(s, "top-p", test_sampler_top_p);
    CU_add_test(s, "top-p, flat logits", test_sampler_top_p_flat);
    CU_add_test(s, "distribution", test_sampler_distribution);
    CU_add_test(s, "extreme logits", test_sampler_extreme_logits);
    s = CU_add_suite("generate", NULL, NULL);
    CU_add_test(s, "greedy sequence, streaming", test_generate_greedy);
    CU_add_test(s, "stops at seq_len", test_generate_seq_len);
    CU_add_test(s, "errors", test_generate_errors);
    CU_add_test(s, "strerror", test_strerror);
    CU_add_test(s, "arena", test_arena);
    add_file_suites();
    return cunit_run();
}
