/*
 * test_trainloop.c: the training loop (runtime/train.c) and its data
 * (runtime/dataset.c), without generated code.
 *
 * The loop drives a gqa_train_api; here that is a test double written
 * below: a real, tiny differentiable model, a bigram softmax (logits =
 * W[token] + b, W vocab x vocab, b a vocab bias) with its exact gradient
 * and torch's AdamW, so what the loop does with it (the schedule,
 * clipping, the update's arguments, the checkpoint, resuming, stopping
 * on a non-finite value) is checked exactly.  The data tests use
 * examples/fortune/tokenizer.bin (512 pieces), hence vocab 512.
 *
 * Suites:
 *   - data: documents split at "%" lines, BOS + ids + EOS each; one
 *     document without them; empty and short texts; a tokenizer of
 *     another vocab size; batches and eval windows.
 *   - loop: lr_at's values, the loss falling, clipping's scale, AdamW's
 *     step and lr, evaluation against the windows' losses one by one.
 *   - checkpoint: a round trip, N steps == K steps + resume to N bit for
 *     bit, and the damaged or mismatched files it refuses.
 *   - stop: a NaN gradient or loss at step k: the message, the params
 *     of step k - 1, the last good checkpoint kept.
 *   - logs: the CSV's rows and the SVG.
 */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_run.h"
#include "testing.h"
#include "train.h"

#define V 512   /* the fortune tokenizer's vocab */
#define CTX 16  /* the double's context */

/* ---- the test double: a bigram model ---- */

/* W: V x V at float 0, b: V after it, then 3 floats in no tensor (as a
 * model's RoPE tables), whose gradient is 0 and which AdamW leaves alone. */
#define N_PARAMS (V * V + V + 3)

static const gqa_tensor bigram_tensors[2] = {
    {"token_embedding", GQA_T_EMBED, -1, GQA_DT_F32, V, V, (size_t)V * V * 4, 0},
    {"bq", GQA_T_BQ, 0, GQA_DT_F32, 1, V, (size_t)V * 4, (size_t)V * V * 4},
};

static const gqa_model_api bigram_model = {
    .version = GQA_API_VERSION, .name = "bigram", .prefix = "bigram",
    .shape = {.dim = V, .hidden_dim = 1, .n_layers = 1, .n_heads = 1, .n_kv_heads = 1, .head_dim = V,
              .vocab_size = V, .seq_len = CTX, .tied_embeddings = 1},
    .tensors = bigram_tensors, .n_tensors = 2, .weight_bytes = (size_t)N_PARAMS * 4, .arena_align = 64,
};

struct gqa_trainer {
    int batch, seq;
};

/* What the double saw and is told to do wrong, per test. */
static struct {
    long steps;         /* step calls */
    long nan_grad_at;   /* the step call that returns a NaN gradient in b (0: none) */
    long nan_loss_at;   /* ... a NaN loss */
    float last_scale;
    gqa_adamw last_h;
} dbl;

static size_t bigram_arena_bytes(int batch, int seq) {
    return batch < 1 || seq < 1 || seq > CTX ? 0 : sizeof(gqa_trainer);
}

static int bigram_init(gqa_trainer **out, void *arena, size_t bytes, int batch, int seq) {
    if (!arena || bytes < bigram_arena_bytes(batch, seq) || !bigram_arena_bytes(batch, seq))
        return GQA_EARENA;
    *out = arena;
    **out = (gqa_trainer){batch, seq};
    return GQA_OK;
}

static void bigram_threads(gqa_trainer *t, int n) { (void)t, (void)n; }

/* The mean cross-entropy, and its gradient into grads when not NULL. */
static int bigram_run(gqa_trainer *t, const float *p, const int *tokens, float *grads, double *loss) {
    size_t rows = (size_t)t->batch * (size_t)(t->seq + 1);
    for (size_t i = 0; i < rows; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return GQA_ETOKEN;
    if (grads)
        memset(grads, 0, sizeof *grads * N_PARAMS);
    double sum = 0, n = (double)t->batch * t->seq, prob[V];
    for (int b = 0; b < t->batch; b++)
        for (int s = 0; s < t->seq; s++) {
            int x = tokens[b * (t->seq + 1) + s], y = tokens[b * (t->seq + 1) + s + 1];
            const float *w = p + (size_t)x * V, *bias = p + (size_t)V * V;
            double max = -INFINITY, z = 0;
            for (int j = 0; j < V; j++)
                max = fmax(max, (double)w[j] + bias[j]);
            for (int j = 0; j < V; j++)
                z += prob[j] = exp((double)w[j] + bias[j] - max);
            sum += -(log(prob[y] / z));
            for (int j = 0; grads && j < V; j++) {
                float g = (float)((prob[j] / z - (j == y)) / n);
                grads[(size_t)x * V + (size_t)j] += g;
                grads[(size_t)V * V + (size_t)j] += g;
            }
        }
    *loss = sum / n;
    return GQA_OK;
}

static int bigram_step(gqa_trainer *t, const float *p, const int *tokens, float *grads, double *loss) {
    int rc = bigram_run(t, p, tokens, grads, loss);
    dbl.steps++;
    if (dbl.steps == dbl.nan_grad_at)
        grads[(size_t)V * V + 7] = NAN;
    if (dbl.steps == dbl.nan_loss_at)
        *loss = NAN;
    return rc;
}

static int bigram_loss(gqa_trainer *t, const float *p, const int *tokens, double *loss) {
    return bigram_run(t, p, tokens, NULL, loss);
}

static void bigram_grad_sq(gqa_trainer *t, const float *g, double *sq) {
    (void)t;
    for (int i = 0; i < 2; i++) {
        sq[i] = 0;
        const float *x = g + bigram_tensors[i].offset / 4;
        for (size_t j = 0; j < bigram_tensors[i].bytes / 4; j++)
            sq[i] += (double)x[j] * x[j];
    }
}

/* torch.optim.AdamW, decay on the matrix only. */
static void bigram_adamw(gqa_trainer *t, float *p, const float *g, float *m, float *v, const gqa_adamw *h,
                         float scale) {
    (void)t;
    dbl.last_scale = scale, dbl.last_h = *h;
    double c1 = 1 - pow(h->beta1, (double)h->step), c2 = 1 - pow(h->beta2, (double)h->step);
    for (size_t i = 0; i < (size_t)V * V + V; i++) {
        float gi = g[i] * scale;
        m[i] = (float)(h->beta1 * m[i] + (1 - h->beta1) * gi);
        v[i] = (float)(h->beta2 * v[i] + (1 - h->beta2) * gi * gi);
        if (i < (size_t)V * V)
            p[i] -= (float)(h->lr * h->weight_decay * p[i]);
        p[i] -= (float)(h->lr * (m[i] / c1) / (sqrt(v[i] / c2) + h->eps));
    }
}

static const gqa_train_api bigram_train = {
    GQA_TRAIN_API_VERSION, N_PARAMS, bigram_arena_bytes, bigram_init, bigram_threads,
    bigram_step, bigram_loss, bigram_grad_sq, bigram_adamw,
};

/* ---- fixtures ---- */

static gqr_tokenizer *tok;
static gqr_data corpus; /* the fortune eval text: 200 fortunes */
static float *init_params;

static int set_up(void) {
    char err[512];
    if (gqr_tokenizer_load(&tok, "examples/fortune/tokenizer.bin", V, err, sizeof err) ||
        gqr_data_load(&corpus, "examples/fortune/eval.txt", tok, V, err, sizeof err)) {
        fprintf(stderr, "set-up: %s\n", err);
        return 1;
    }
    init_params = malloc(sizeof *init_params * N_PARAMS);
    uint64_t rng = 5;
    for (size_t i = 0; init_params && i < N_PARAMS; i++)
        init_params[i] = (float)((double)(gqr_data_next(&rng) >> 11) / 9007199254740992.0 - 0.5) * 0.04f;
    return !init_params;
}

static int tear_down(void) {
    gqr_tokenizer_free(tok);
    gqr_data_free(&corpus);
    free(init_params);
    return 0;
}

static gqr_train_opts small_opts(void) {
    gqr_train_opts o;
    gqr_train_defaults(&o);
    o.steps = 30, o.batch = 4, o.seq = 8, o.warmup = 5, o.lr = 1e-2;
    return o;
}

static gqr_train *new_run(const gqr_train_opts *o) {
    gqr_train *tr = NULL;
    char err[512];
    memset(&dbl, 0, sizeof dbl);
    if (gqr_train_new(&tr, &bigram_model, &bigram_train, o, init_params, err, sizeof err))
        fprintf(stderr, "\n    gqr_train_new: %s\n", err);
    return tr;
}

/* ---- data ---- */

/* ids of text (no BOS) as the tokenizer gives them. */
static int encode(const char *text, int *ids, int cap) {
    int n = 0;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(gqr_tokenizer_encode(tok, text, strlen(text), 0, ids, cap, &n, err, sizeof err), 0);
    return n;
}

static void test_documents(void) {
    const char *text = "Hello there.\n%\n  Second one,\ntwo lines.\n%\n%\n";
    gqr_data d;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(gqr_data_from_text(&d, "t", text, strlen(text), tok, V, err, sizeof err), 0);
    int a[64], b[64], na = encode("Hello there.", a, 64), nb = encode("  Second one,\ntwo lines.", b, 64);
    CU_ASSERT_EQUAL(d.n_docs, 2);
    CU_ASSERT_EQUAL_FATAL(d.n_tokens, (size_t)(na + nb + 4));
    CU_ASSERT_EQUAL(d.tokens[0], gqr_tokenizer_bos(tok));
    CU_ASSERT(!memcmp(d.tokens + 1, a, sizeof *a * (size_t)na));
    CU_ASSERT_EQUAL(d.tokens[na + 1], gqr_tokenizer_eos(tok));
    CU_ASSERT_EQUAL(d.tokens[na + 2], gqr_tokenizer_bos(tok));
    CU_ASSERT(!memcmp(d.tokens + na + 3, b, sizeof *b * (size_t)nb));
    CU_ASSERT_EQUAL(d.tokens[na + nb + 3], gqr_tokenizer_eos(tok));
    gqr_data_free(&d);
    /* no separator: one document, its last newline not part of it */
    const char *one = "no separators here\nat all\n";
    CU_ASSERT_EQUAL_FATAL(gqr_data_from_text(&d, "t", one, strlen(one), tok, V, err, sizeof err), 0);
    int c[64], nc = encode("no separators here\nat all", c, 64);
    CU_ASSERT_EQUAL(d.n_docs, 1);
    CU_ASSERT_EQUAL(d.n_tokens, (size_t)nc + 2);
    gqr_data_free(&d);
    /* "% " with a blank after it still separates; "%x" does not */
    const char *odd = "a\n% \nb\n%x\nc";
    CU_ASSERT_EQUAL_FATAL(gqr_data_from_text(&d, "t", odd, strlen(odd), tok, V, err, sizeof err), 0);
    CU_ASSERT_EQUAL(d.n_docs, 2);
    gqr_data_free(&d);
    /* the eval text: 200 fortunes */
    CU_ASSERT_EQUAL(corpus.n_docs, 200);
}

static void test_bad_texts(void) {
    gqr_data d;
    char err[256];
    CU_ASSERT_EQUAL(gqr_data_from_text(&d, "e.txt", "", 0, tok, V, err, sizeof err), -1);
    TEST_HAS(err, "e.txt: no text");
    CU_ASSERT_EQUAL(gqr_data_from_text(&d, "e.txt", "%\n%\n", 4, tok, V, err, sizeof err), -1);
    TEST_HAS(err, "no text");
    CU_ASSERT_EQUAL(gqr_data_from_text(&d, "v.txt", "hi", 2, tok, 1000, err, sizeof err), -1);
    TEST_HAS(err, "v.txt: the tokenizer has 512 tokens, the model's vocab is 1000");
    CU_ASSERT_EQUAL(gqr_data_load(&d, test_tmp("missing.txt"), tok, V, err, sizeof err), -1);
    TEST_HAS(err, "cannot open");
    /* "hi" is BOS, a piece or two, EOS: too short for windows of 8 */
    CU_ASSERT_EQUAL_FATAL(gqr_data_from_text(&d, "s.txt", "hi", 2, tok, V, err, sizeof err), 0);
    char want[128];
    snprintf(want, sizeof want, "needs at least 10 tokens, has %zu", d.n_tokens);
    CU_ASSERT_EQUAL(gqr_data_check(&d, "s.txt", 8, err, sizeof err), -1);
    TEST_HAS(err, want);
    CU_ASSERT_EQUAL(gqr_data_check(&d, "s.txt", (int)d.n_tokens - 2, err, sizeof err), 0);
    gqr_data_free(&d);
    /* the loop refuses it too, before any step */
    gqr_train_opts o = small_opts();
    gqr_train *tr = new_run(&o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tr);
    CU_ASSERT_EQUAL_FATAL(gqr_data_from_text(&d, "s.txt", "hi", 2, tok, V, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_train_run(tr, &d, NULL, 5, NULL, NULL, err, sizeof err), -1);
    TEST_HAS(err, "needs at least 10 tokens");
    CU_ASSERT_EQUAL(dbl.steps, 0);
    gqr_data_free(&d);
    gqr_train_free(tr);
}

static void test_batches(void) {
    uint64_t r1 = 1337, r2 = 1337;
    int a[3 * 9], b[3 * 9];
    gqr_data_batch(&corpus, &r1, 3, 8, a);
    gqr_data_batch(&corpus, &r2, 3, 8, b);
    CU_ASSERT(!memcmp(a, b, sizeof a)); /* the seed fixes them */
    CU_ASSERT_EQUAL(r1, r2);
    /* each row is a window of the stream at an offset in [0, len - seq - 1),
     * as get_batch's torch.randint(len - T - 1): here 0 and 1, never 2 */
    int ids[] = {1, 10, 11, 12, 2}, seen[2] = {0};
    gqr_data tiny = {ids, 5, 1, 0};
    uint64_t r = 3;
    for (int i = 0; i < 200; i++) {
        int w[3];
        gqr_data_batch(&tiny, &r, 1, 2, w);
        CU_ASSERT(w[0] == 1 || w[0] == 10);
        CU_ASSERT(!memcmp(w, ids + (w[0] == 10), sizeof w));
        seen[w[0] == 10]++;
    }
    CU_ASSERT(seen[0] > 60 && seen[1] > 60);
    CU_ASSERT_EQUAL(gqr_data_windows(&tiny, 2, 0), 2);
    CU_ASSERT_EQUAL(gqr_data_windows(&tiny, 4, 0), 1);
    CU_ASSERT_EQUAL(gqr_data_windows(&tiny, 5, 0), 0);
    CU_ASSERT_EQUAL(gqr_data_windows(&corpus, 8, 3), 3);
}

/* ---- the loop ---- */

static void test_lr_schedule(void) {
    gqr_train_opts o;
    gqr_train_defaults(&o);
    o.steps = 100, o.warmup = 10, o.lr = 1e-3;
    /* train_fortune.py's lr_at(step, 100, 1e-3, 10, 5e-5) */
    CU_ASSERT_DOUBLE_EQUAL(gqr_train_lr(&o, 0), 1e-4, 1e-18);
    CU_ASSERT_DOUBLE_EQUAL(gqr_train_lr(&o, 9), 1e-3, 1e-18);
    CU_ASSERT_DOUBLE_EQUAL(gqr_train_lr(&o, 10), 1e-3, 1e-18);
    CU_ASSERT_DOUBLE_EQUAL(gqr_train_lr(&o, 55), 5.25e-4, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(gqr_train_lr(&o, 100), 5e-5, 1e-18);
    CU_ASSERT_DOUBLE_EQUAL(gqr_train_lr(&o, 200), 5e-5, 1e-18);
    CU_ASSERT_DOUBLE_EQUAL(gqr_train_lr(&o, 32), 5e-5 + 0.5 * 9.5e-4 * (1 + cos(M_PI * 22 / 90)), 1e-15);
    o.warmup = 0; /* no warmup: the peak at step 0 */
    CU_ASSERT_DOUBLE_EQUAL(gqr_train_lr(&o, 0), 1e-3, 1e-18);
}

static void test_loss_falls(void) {
    gqr_train_opts o = small_opts();
    o.steps = 60, o.lr = 0.05;
    gqr_train *tr = new_run(&o);
    char err[256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(tr);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(tr, &corpus, NULL, o.steps, NULL, NULL, err, sizeof err), 0);
    size_t n;
    const gqr_train_row *log = gqr_train_log(tr, &n);
    CU_ASSERT_EQUAL_FATAL(n, 60);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++)
        first += log[i].loss / 10, last += log[50 + i].loss / 10;
    if (!(first > 6.0 && last < first - 0.5))
        fprintf(stderr, "\n    mean loss of steps 1-10 %g, of 51-60 %g\n", first, last);
    CU_ASSERT(first > 6.0 && last < first - 0.5); /* ln 512 = 6.24 at the start */
    CU_ASSERT_EQUAL(gqr_train_step(tr), 60);
    /* floats outside the tensors are never touched */
    CU_ASSERT(!memcmp(gqr_train_params(tr) + V * V + V, init_params + V * V + V, 3 * sizeof(float)));
    gqr_train_free(tr);
}

/* The row's callback sees each step in turn; the schedule's lr reaches
 * AdamW with its 1-based step; the clip's scale is torch's. */
typedef struct {
    long calls, stop_at;
    double lr_ok, scale_ok;
    const gqr_train_opts *o;
} Watch;

static int watch(void *user, const gqr_train_row *row) {
    Watch *w = user;
    w->calls++;
    w->lr_ok += row->step == w->calls && dbl.last_h.step == row->step &&
                dbl.last_h.lr == gqr_train_lr(w->o, row->step - 1) && row->lr == dbl.last_h.lr &&
                dbl.last_h.beta1 == 0.9 && dbl.last_h.beta2 == 0.95 && dbl.last_h.eps == 1e-8 &&
                dbl.last_h.weight_decay == 0.1;
    double want = w->o->clip > 0 && w->o->clip / (row->grad_norm + 1e-6) < 1 ? w->o->clip / (row->grad_norm + 1e-6) : 1;
    w->scale_ok += dbl.last_scale == (float)want;
    return w->stop_at && row->step == w->stop_at;
}

static void test_adamw_and_clip(void) {
    gqr_train_opts o = small_opts();
    char err[256];
    for (int k = 0; k < 3; k++) {
        o.clip = k == 0 ? 1.0 : k == 1 ? 0.05 : 0; /* 0: none */
        gqr_train *tr = new_run(&o);
        CU_ASSERT_PTR_NOT_NULL_FATAL(tr);
        Watch w = {0, 0, 0, 0, &o};
        CU_ASSERT_EQUAL(gqr_train_run(tr, &corpus, NULL, 12, watch, &w, err, sizeof err), 0);
        CU_ASSERT_EQUAL(w.calls, 12);
        CU_ASSERT_EQUAL(w.lr_ok, 12);
        CU_ASSERT_EQUAL(w.scale_ok, 12);
        if (k == 1) /* a clip this small scales every step's gradient */
            CU_ASSERT(dbl.last_scale < 0.5f);
        if (k == 2)
            CU_ASSERT_EQUAL(dbl.last_scale, 1.0f);
        gqr_train_free(tr);
    }
    /* a callback's nonzero stops the run after that step */
    gqr_train *tr = new_run(&o);
    Watch w = {0, 4, 0, 0, &o};
    CU_ASSERT_EQUAL(gqr_train_run(tr, &corpus, NULL, 12, watch, &w, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_train_step(tr), 4);
    gqr_train_free(tr);
}

/* The windows' mean loss, one window at a time through the double. */
static double windows_loss(const float *p, const gqr_data *d, int seq, size_t n) {
    gqa_trainer t = {1, seq};
    double sum = 0, l;
    for (size_t i = 0; i < n; i++) {
        bigram_loss(&t, p, d->tokens + i * (size_t)seq, &l);
        sum += l;
    }
    return sum / (double)n;
}

static void test_eval(void) {
    gqr_train_opts o = small_opts();
    o.eval_every = 7, o.eval_windows = 11; /* 2 batches of 4, then 3 windows one by one */
    gqr_train *tr = new_run(&o);
    char err[256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(tr);
    double l;
    CU_ASSERT_EQUAL_FATAL(gqr_train_eval(tr, &corpus, &l, err, sizeof err), 0);
    CU_ASSERT_DOUBLE_EQUAL(l, windows_loss(init_params, &corpus, 8, 11), 1e-12);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(tr, &corpus, &corpus, 30, NULL, NULL, err, sizeof err), 0);
    size_t n;
    const gqr_train_row *log = gqr_train_log(tr, &n);
    CU_ASSERT_EQUAL_FATAL(n, 30);
    for (size_t i = 0; i < n; i++) /* every 7th step and the schedule's last */
        CU_ASSERT_EQUAL(isnan(log[i].eval_loss), log[i].step % 7 != 0 && log[i].step != 30);
    CU_ASSERT_DOUBLE_EQUAL(log[29].eval_loss, windows_loss(gqr_train_params(tr), &corpus, 8, 11), 1e-12);
    gqr_data tiny = {corpus.tokens, 8, 1, 0};
    CU_ASSERT_EQUAL(gqr_train_eval(tr, &tiny, &l, err, sizeof err), -1);
    TEST_HAS(err, "the eval text has 8 tokens: a window of 8 needs 9");
    gqr_train_free(tr);
}

/* ---- checkpoint ---- */

static void test_round_trip(void) {
    gqr_train_opts o = small_opts();
    const char *ck = test_tmp("round.ck");
    char err[256];
    gqr_train *a = new_run(&o), *b = new_run(&o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(a, &corpus, NULL, 7, NULL, NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(gqr_train_save(a, ck, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(gqr_train_resume(b, ck, &corpus, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_train_step(b), 7);
    CU_ASSERT(!memcmp(gqr_train_params(a), gqr_train_params(b), sizeof(float) * N_PARAMS));
    size_t na, nb;
    const gqr_train_row *la = gqr_train_log(a, &na), *lb = gqr_train_log(b, &nb);
    CU_ASSERT_EQUAL(na, nb);
    CU_ASSERT(!memcmp(la, lb, sizeof *la * na));
    gqr_train_free(a), gqr_train_free(b);
}

/* N steps in one go, and K steps then a resume to N (the resumed run
 * saving at the end): the same params and losses, bit for bit. */
static void test_resume_identical(void) {
    gqr_train_opts o = small_opts();
    o.eval_every = 8;
    char err[256];
    gqr_train *whole = new_run(&o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(whole);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(whole, &corpus, &corpus, 30, NULL, NULL, err, sizeof err), 0);
    o.checkpoint = test_tmp("resume.ck");
    gqr_train *part = new_run(&o);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(part, &corpus, &corpus, 13, NULL, NULL, err, sizeof err), 0);
    gqr_train_free(part); /* saved at step 13, where it stopped */
    gqr_train *rest = new_run(&o);
    CU_ASSERT_EQUAL_FATAL(gqr_train_resume(rest, o.checkpoint, &corpus, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_train_step(rest), 13);
    CU_ASSERT_EQUAL(gqr_train_saved(rest), 13);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(rest, &corpus, &corpus, 30, NULL, NULL, err, sizeof err), 0);
    CU_ASSERT(!memcmp(gqr_train_params(whole), gqr_train_params(rest), sizeof(float) * N_PARAMS));
    size_t n1, n2;
    const gqr_train_row *l1 = gqr_train_log(whole, &n1), *l2 = gqr_train_log(rest, &n2);
    CU_ASSERT_EQUAL_FATAL(n1, n2);
    for (size_t i = 0; i < n1; i++) {
        CU_ASSERT(l1[i].loss == l2[i].loss && l1[i].grad_norm == l2[i].grad_norm && l1[i].lr == l2[i].lr);
        CU_ASSERT(isnan(l1[i].eval_loss) ? isnan(l2[i].eval_loss) : l1[i].eval_loss == l2[i].eval_loss);
    }
    /* and the checkpoint of the end resumes to nothing more to do */
    gqr_train *done = new_run(&o);
    CU_ASSERT_EQUAL(gqr_train_resume(done, o.checkpoint, &corpus, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_train_step(done), 30);
    gqr_train_free(whole), gqr_train_free(rest), gqr_train_free(done);
}

/* ck's bytes with one change, then resumed: the message. */
static void refused(const unsigned char *ck, size_t len, size_t at, unsigned char xor, size_t cut,
                    const gqr_train_opts *o, const gqr_data *d, const char *want) {
    unsigned char *copy = malloc(len);
    memcpy(copy, ck, len);
    if (at < len)
        copy[at] ^= xor;
    const char *path = test_write_tmp("bad.ck", copy, len - cut);
    gqr_train *tr = new_run(o);
    char err[512] = "";
    CU_ASSERT_EQUAL(gqr_train_resume(tr, path, d, err, sizeof err), -1);
    TEST_HAS(err, want);
    CU_ASSERT_EQUAL(gqr_train_step(tr), 0); /* nothing taken from a refused file */
    CU_ASSERT(!memcmp(gqr_train_params(tr), init_params, sizeof(float) * N_PARAMS));
    gqr_train_free(tr);
    free(copy);
}

static void test_checkpoint_refused(void) {
    gqr_train_opts o = small_opts();
    const char *path = test_tmp("good.ck");
    char err[256];
    gqr_train *a = new_run(&o);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(a, &corpus, NULL, 3, NULL, NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(gqr_train_save(a, path, err, sizeof err), 0);
    gqr_train_free(a);
    size_t len;
    unsigned char *ck = (unsigned char *)test_slurp(path, &len);
    CU_ASSERT_EQUAL(len, 8 + 4 + 28 + 16 + 88 + 24 + 12 * (size_t)N_PARAMS + 3 * 48 + 8);
    refused(ck, len, 0, 1, 0, &o, NULL, "not a gqac training checkpoint");
    refused(ck, len, 8, 2, 0, &o, NULL, "checkpoint format version 3, this gqac reads 1");
    refused(ck, len, 12, 64 ^ 0, 0, &o, NULL, "the checkpoint's model has dim 576, this model 512");
    refused(ck, len, 0, 0, 5, &o, NULL, "bytes, a checkpoint of");                 /* cut short */
    refused(ck, len, 200, 0x10, 0, &o, NULL, "(damaged)");                          /* a params bit */
    refused(ck, len, len - 1, 0x10, 0, &o, NULL, "(damaged)");                      /* the checksum */
    gqr_train_opts other = o;
    other.lr = 2e-2;
    refused(ck, len, 0, 0, 0, &other, NULL, "the checkpoint's run has lr 0.01, this run 0.02");
    other = o, other.seed = 7;
    refused(ck, len, 0, 0, 0, &other, NULL, "the checkpoint's run has seed 1337, this run 7");
    other = o, other.steps = 40;
    refused(ck, len, 0, 0, 0, &other, NULL, "has steps 30, this run 40");
    gqr_data d = corpus;
    d.hash ^= 1;
    refused(ck, len, 0, 0, 0, &o, &d, "trained on other text");
    CU_ASSERT_EQUAL(gqr_train_resume(a = new_run(&o), test_tmp("none.ck"), NULL, err, sizeof err), -1);
    TEST_HAS(err, "cannot open");
    gqr_train_free(a);
    free(ck);
}

/* ---- non-finite ---- */

static void test_nan_stop(void) {
    gqr_train_opts o = small_opts();
    o.checkpoint = test_tmp("nan.ck"), o.save_every = 2;
    char err[256];
    gqr_train *good = new_run(&o);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(good, &corpus, NULL, 4, NULL, NULL, err, sizeof err), 0);
    for (int loss = 0; loss < 2; loss++) {
        CU_ASSERT_EQUAL(test_sh("rm -f %s", o.checkpoint), 0);
        gqr_train *tr = new_run(&o);
        if (loss)
            dbl.nan_loss_at = 5;
        else
            dbl.nan_grad_at = 5;
        CU_ASSERT_EQUAL(gqr_train_run(tr, &corpus, NULL, 30, NULL, NULL, err, sizeof err), -1);
        TEST_HAS(err, loss ? "step 5: the loss is not finite" : "step 5: the gradient of bq (layer 0) is not finite");
        CU_ASSERT_EQUAL(gqr_train_step(tr), 4);
        CU_ASSERT_EQUAL(gqr_train_saved(tr), 4);
        CU_ASSERT(!memcmp(gqr_train_params(tr), gqr_train_params(good), sizeof(float) * N_PARAMS));
        gqr_train_free(tr);
        /* the checkpoint on disk is the last good one, of step 4 */
        gqr_train *back = new_run(&o);
        CU_ASSERT_EQUAL(gqr_train_resume(back, o.checkpoint, &corpus, err, sizeof err), 0);
        CU_ASSERT_EQUAL(gqr_train_step(back), 4);
        CU_ASSERT(!memcmp(gqr_train_params(back), gqr_train_params(good), sizeof(float) * N_PARAMS));
        gqr_train_free(back);
    }
    gqr_train_free(good);
}

/* ---- logs ---- */

static void test_logs(void) {
    gqr_train_opts o = small_opts();
    o.eval_every = 4;
    char err[256];
    gqr_train *tr = new_run(&o);
    CU_ASSERT_EQUAL_FATAL(gqr_train_run(tr, &corpus, &corpus, 30, NULL, NULL, err, sizeof err), 0);
    const char *csv = test_tmp("log.csv"), *svg = test_tmp("log.svg");
    CU_ASSERT_EQUAL_FATAL(gqr_train_csv(tr, csv, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(gqr_train_svg(tr, svg, "bigram <&> test", err, sizeof err), 0);
    char *text = test_slurp(csv, NULL);
    CU_ASSERT(!strncmp(text, "step,lr,loss,grad_norm,tokens_per_s,eval_loss\n1,", 48));
    int lines = 0, evals = 0;
    for (char *line = strchr(text, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        long step;
        double lr, loss, gn, tps;
        char tail[64] = "";
        CU_ASSERT_EQUAL(sscanf(line + 1, "%ld,%lf,%lf,%lf,%lf,%63[^\n]", &step, &lr, &loss, &gn, &tps, tail) >= 5, 1);
        CU_ASSERT_EQUAL(step, ++lines);
        evals += *tail != '\0';
    }
    CU_ASSERT_EQUAL(lines, 30);
    CU_ASSERT_EQUAL(evals, 8); /* 4, 8, ..., 28 and the last, 30 */
    free(text);
    text = test_slurp(svg, NULL);
    TEST_HAS(text, "<svg ");
    TEST_HAS(text, "bigram &lt;&amp;&gt; test");
    TEST_HAS(text, "stroke=\"#d62728\" stroke-width=\"1.5\" points=\"");
    TEST_HAS(text, "</svg>");
    int circles = 0;
    for (const char *c = text; (c = strstr(c, "<circle")); c++)
        circles++;
    CU_ASSERT_EQUAL(circles, 8); /* one per evaluation */
    free(text);
    CU_ASSERT_EQUAL(gqr_train_csv(tr, test_dir(), err, sizeof err), -1); /* a folder: refused */
    gqr_train_free(tr);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite data = CU_add_suite("data", set_up, tear_down), loop = CU_add_suite("loop", set_up, tear_down);
    CU_pSuite ck = CU_add_suite("checkpoint", set_up, tear_down), stop = CU_add_suite("stop", set_up, tear_down);
    CU_pSuite logs = CU_add_suite("logs", set_up, tear_down);
    if (!data || !loop || !ck || !stop || !logs ||
        !CU_add_test(data, "documents split at % lines", test_documents) ||
        !CU_add_test(data, "empty, short and mismatched", test_bad_texts) ||
        !CU_add_test(data, "batches and windows", test_batches) ||
        !CU_add_test(loop, "lr_at", test_lr_schedule) ||
        !CU_add_test(loop, "the loss falls", test_loss_falls) ||
        !CU_add_test(loop, "AdamW's arguments and clipping", test_adamw_and_clip) ||
        !CU_add_test(loop, "evaluation", test_eval) ||
        !CU_add_test(ck, "round trip", test_round_trip) ||
        !CU_add_test(ck, "N steps == K steps + resume", test_resume_identical) ||
        !CU_add_test(ck, "bad checkpoints refused", test_checkpoint_refused) ||
        !CU_add_test(stop, "non-finite gradient or loss", test_nan_stop) ||
        !CU_add_test(logs, "CSV and SVG", test_logs)) {
        CU_cleanup_registry();
        return 1;
    }
    return cunit_run();
}
