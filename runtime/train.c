/*
 * train.c: the training loop (train.h).  Needs: a generated model's
 * gqa_model_api (its tensor table, for names) and gqa_train_api (step,
 * loss, grad_sq, adamw).  Provides: tools/train_fortune.py's recipe over
 * them (warmup then cosine, global-norm clipping, AdamW), evaluation, a
 * resumable checkpoint, and the loss log as CSV and SVG.
 *
 * Determinism: the batches come from one splitmix64 state and everything
 * else from the generated code, which is deterministic for a thread
 * count; so a run resumed from its checkpoint is bit-identical to one
 * that never stopped.
 */
#include "train.h"
#include "fail.h"
#include "gqr.h"
#include "outfile.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct gqr_train {
    const gqa_model_api *model;
    const gqa_train_api *api;
    gqr_train_opts o;
    size_t n;                  /* params */
    float *params, *grads, *m, *v;
    void *arena, *arena1;      /* trainers of batch rows and of one row (eval's remainder) */
    gqa_trainer *t, *t1;
    int *tokens;               /* batch * (seq + 1) */
    double *sq;                /* per tensor */
    uint64_t rng;
    long step;                 /* steps done */
    long saved;                /* the step of the checkpoint last written or resumed from; -1: none */
    uint64_t data_hash;        /* of the training stream, once run or resumed; 0: unknown */
    gqr_train_row *log;        /* step rows, o.steps of room */
    size_t n_log;
};

void gqr_train_defaults(gqr_train_opts *o) {
    *o = (gqr_train_opts){.steps = 1000, .batch = 16, .seq = 256, .lr = 2e-3, .min_lr_ratio = 0.05,
                          .warmup = 100, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                          .weight_decay = 0.1, .clip = 1.0, .seed = 1337};
}

double gqr_train_lr(const gqr_train_opts *o, long step) {
    double peak = o->lr, floor = o->lr * o->min_lr_ratio;
    if (step < o->warmup)
        return peak * (double)(step + 1) / (double)o->warmup;
    double p = (double)(step - o->warmup) / (double)(o->steps - o->warmup > 1 ? o->steps - o->warmup : 1);
    p = p < 1.0 ? p : 1.0;
    return floor + 0.5 * (peak - floor) * (1 + cos(M_PI * p));
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- setting up ---- */

static int check_opts(const gqr_train_opts *o, const gqa_model_api *model, char *err, size_t errlen) {
    if (o->steps < 1 || o->batch < 1 || o->seq < 1 || o->warmup < 0)
        return gqr_fail(err, errlen, "steps, batch and seq must be at least 1 and warmup 0 or more");
    if (o->seq > model->shape.seq_len)
        return gqr_fail(err, errlen, "seq %d is past the model's context %d", o->seq, model->shape.seq_len);
    if (!(o->lr > 0) || !isfinite(o->lr) || !(o->min_lr_ratio >= 0 && o->min_lr_ratio <= 1) ||
        !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0) ||
        !(o->weight_decay >= 0) || isnan(o->clip))
        return gqr_fail(err, errlen, "an optimizer setting is out of range (lr > 0, min_lr_ratio 0..1, "
                        "betas 0..1, eps > 0, weight decay >= 0)");
    return 0;
}

static void *aligned(size_t align, size_t bytes) {
    void *p = NULL;
    align = align < 64 ? 64 : align;
    return posix_memalign(&p, align, bytes ? bytes : 1) == 0 ? p : NULL;
}

/* A trainer of rows x seq in a fresh arena. */
static int new_trainer(gqr_train *tr, int rows, void **arena, gqa_trainer **t, char *err, size_t errlen) {
    size_t bytes = tr->api->arena_bytes(rows, tr->o.seq);
    if (!bytes)
        return gqr_fail(err, errlen, "no trainer for batch %d of seq %d (too large, or seq past the "
                        "context)", rows, tr->o.seq);
    if (!(*arena = aligned(tr->model->arena_align, bytes)))
        return gqr_fail(err, errlen, "out of memory for a trainer of batch %d (%zu bytes)", rows, bytes);
    int rc = tr->api->init(t, *arena, bytes, rows, tr->o.seq);
    if (rc)
        return gqr_fail(err, errlen, "the trainer's init failed: %s", gqr_strerror(rc));
    tr->api->set_threads(*t, tr->o.threads);
    return 0;
}

int gqr_train_new(gqr_train **out, const gqa_model_api *model, const gqa_train_api *api,
                  const gqr_train_opts *o, const float *init, char *err, size_t errlen) {
    *out = NULL;
    if (api->version != GQA_TRAIN_API_VERSION)
        return gqr_fail(err, errlen, "training code of API version %d, this runtime reads %d",
                        api->version, GQA_TRAIN_API_VERSION);
    if (api->n_params != model->weight_bytes / 4)
        return gqr_fail(err, errlen, "the training code has %zu parameters, the model %zu floats",
                        api->n_params, model->weight_bytes / 4);
    if (check_opts(o, model, err, errlen))
        return -1;
    gqr_train *tr = calloc(1, sizeof *tr);
    if (!tr)
        return gqr_fail(err, errlen, "out of memory");
    *tr = (gqr_train){.model = model, .api = api, .o = *o, .n = api->n_params, .rng = o->seed, .saved = -1};
    size_t bytes = tr->n * sizeof(float);
    tr->params = aligned(64, bytes), tr->grads = aligned(64, bytes);
    tr->m = aligned(64, bytes), tr->v = aligned(64, bytes);
    tr->tokens = malloc(sizeof *tr->tokens * (size_t)o->batch * (size_t)(o->seq + 1));
    tr->sq = malloc(sizeof *tr->sq * (model->n_tensors + 1));
    tr->log = malloc(sizeof *tr->log * (size_t)o->steps);
    if (!tr->params || !tr->grads || !tr->m || !tr->v || !tr->tokens || !tr->sq || !tr->log) {
        gqr_train_free(tr);
        return gqr_fail(err, errlen, "out of memory for the parameters and optimizer state (4 x %zu floats)",
                        tr->n);
    }
    memcpy(tr->params, init, bytes);
    memset(tr->m, 0, bytes), memset(tr->v, 0, bytes), memset(tr->grads, 0, bytes);
    if (new_trainer(tr, o->batch, &tr->arena, &tr->t, err, errlen) ||
        new_trainer(tr, 1, &tr->arena1, &tr->t1, err, errlen)) {
        gqr_train_free(tr);
        return -1;
    }
    *out = tr;
    return 0;
}

void gqr_train_free(gqr_train *tr) {
    if (!tr)
        return;
    free(tr->params), free(tr->grads), free(tr->m), free(tr->v);
    free(tr->arena), free(tr->arena1), free(tr->tokens), free(tr->sq), free(tr->log);
    free(tr);
}

long gqr_train_step(const gqr_train *tr) { return tr->step; }
long gqr_train_saved(const gqr_train *tr) { return tr->saved; }
const float *gqr_train_params(const gqr_train *tr) { return tr->params; }

const gqr_train_row *gqr_train_log(const gqr_train *tr, size_t *n) {
    *n = tr->n_log;
    return tr->log;
}

/* ---- evaluation ---- */

static int token_error(int rc, char *err, size_t errlen) {
    return gqr_fail(err, errlen, "%s (a token id outside the model's vocab)", gqr_strerror(rc));
}

int gqr_train_eval(gqr_train *tr, const gqr_data *d, double *loss, char *err, size_t errlen) {
    int seq = tr->o.seq, rows = tr->o.batch;
    size_t n = gqr_data_windows(d, seq, tr->o.eval_windows), done = 0;
    double sum = 0;
    if (n == 0)
        return gqr_fail(err, errlen, "the eval text has %zu tokens: a window of %d needs %d", d->n_tokens,
                        seq, seq + 1);
    while (done < n) {
        int k = n - done >= (size_t)rows ? rows : 1; /* the remainder one by one */
        for (int b = 0; b < k; b++)
            memcpy(tr->tokens + (size_t)b * (size_t)(seq + 1), d->tokens + (done + (size_t)b) * (size_t)seq,
                   sizeof *tr->tokens * (size_t)(seq + 1));
        double l;
        int rc = tr->api->loss(k == rows ? tr->t : tr->t1, tr->params, tr->tokens, &l);
        if (rc)
            return token_error(rc, err, errlen);
        sum += l * k;
        done += (size_t)k;
    }
    *loss = sum / (double)n;
    return 0;
}

/* ---- one step ---- */

/* "wq (layer 2)" or "token_embedding". */
static void tensor_name(const gqa_tensor *t, char *buf, size_t n) {
    if (t->layer >= 0)
        snprintf(buf, n, "%s (layer %d)", t->name, t->layer);
    else
        snprintf(buf, n, "%s", t->name);
}

/* The global gradient norm, or -1 with the message of the first tensor
 * whose gradient is not finite. */
static double grad_norm(gqr_train *tr, long step, char *err, size_t errlen) {
    tr->api->grad_sq(tr->t, tr->grads, tr->sq);
    double sum = 0;
    for (size_t i = 0; i < tr->model->n_tensors; i++) {
        if (!isfinite(tr->sq[i])) {
            char name[96];
            tensor_name(&tr->model->tensors[i], name, sizeof name);
            gqr_fail(err, errlen, "step %ld: the gradient of %s is not finite", step, name);
            return -1;
        }
        sum += tr->sq[i];
    }
    return sqrt(sum);
}

/* Step tr->step + 1: batch, gradient, checks, update; row filled. */
static int one_step(gqr_train *tr, const gqr_data *data, gqr_train_row *row, char *err, size_t errlen) {
    long s = tr->step;
    double t0 = now(), loss;
    gqr_data_batch(data, &tr->rng, tr->o.batch, tr->o.seq, tr->tokens);
    int rc = tr->api->step(tr->t, tr->params, tr->tokens, tr->grads, &loss);
    if (rc)
        return token_error(rc, err, errlen);
    if (!isfinite(loss))
        return gqr_fail(err, errlen, "step %ld: the loss is not finite (%g)", s + 1, loss);
    double norm = grad_norm(tr, s + 1, err, errlen);
    if (norm < 0)
        return -1;
    /* torch.nn.utils.clip_grad_norm_: scaled by clip / (norm + 1e-6) when that is below 1 */
    double scale = tr->o.clip > 0 && tr->o.clip / (norm + 1e-6) < 1 ? tr->o.clip / (norm + 1e-6) : 1.0;
    gqa_adamw h = {gqr_train_lr(&tr->o, s), tr->o.beta1, tr->o.beta2, tr->o.eps, tr->o.weight_decay,
                   s + 1};
    tr->api->adamw(tr->t, tr->params, tr->grads, tr->m, tr->v, &h, (float)scale);
    tr->step = s + 1;
    double dt = now() - t0;
    *row = (gqr_train_row){s + 1, h.lr, loss, norm,
                           dt > 0 ? (double)tr->o.batch * tr->o.seq / dt : 0, NAN};
    return 0;
}

static int due(long step, long every) {
    return every > 0 && step % every == 0;
}

int gqr_train_run(gqr_train *tr, const gqr_data *data, const gqr_data *eval, long until,
                  gqr_train_fn fn, void *user, char *err, size_t errlen) {
    if (until > tr->o.steps)
        until = tr->o.steps;
    if (gqr_data_check(data, "the training text", tr->o.seq, err, errlen))
        return -1;
    if (tr->data_hash && tr->data_hash != data->hash)
        return gqr_fail(err, errlen, "the training text is not the one the checkpoint's run used "
                        "(its tokens' hash differs)");
    tr->data_hash = data->hash;
    while (tr->step < until) {
        gqr_train_row row;
        if (one_step(tr, data, &row, err, errlen))
            return -1;
        if (eval && (due(row.step, tr->o.eval_every) || (tr->o.eval_every && row.step == tr->o.steps)) &&
            gqr_train_eval(tr, eval, &row.eval_loss, err, errlen))
            return -1;
        tr->log[tr->n_log++] = row;
        int stop = fn && fn(user, &row);
        if (tr->o.checkpoint && (due(row.step, tr->o.save_every) || row.step == until || stop)) {
            if (gqr_train_save(tr, tr->o.checkpoint, err, errlen))
                return -1;
            tr->saved = row.step;
        }
        if (stop)
            break;
    }
    return 0;
}

/* ---- the checkpoint ----
 *
 * Little-endian throughout: "GQATRAIN", u32 version, i32 x 7 the model's
 * shape (llama2.c's header: dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size negated when untied, seq_len), u64 n_params,
 * u64 steps done, the options (u64 steps, u32 batch, u32 seq, f64 lr,
 * f64 min_lr_ratio, u64 warmup, f64 beta1, beta2, eps, weight_decay,
 * clip, u64 seed), u64 generator state, u64 training data hash, u64 log
 * rows; f32 x n_params params, m, v; the log (u64 step, f64 lr, loss,
 * grad_norm, tokens_per_s, eval_loss); u64 FNV-1a 64 of every byte
 * before it. */

#define CK_MAGIC "GQATRAIN"
#define CK_VERSION 1u

typedef struct {
    gqr_out out;
    uint64_t hash;
} Writer;

static void put(Writer *w, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        w->hash = (w->hash ^ b[i]) * 0x100000001b3ull;
    gqr_out_put(&w->out, p, n);
}

static void put_u64(Writer *w, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 8);
}

static void put_u32(Writer *w, uint32_t v) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 4);
}

static void put_f64(Writer *w, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(w, v);
}

static void put_floats(Writer *w, const float *f, size_t n) {
    unsigned char buf[4096];
    for (size_t i = 0; i < n; i += sizeof buf / 4) {
        size_t k = n - i < sizeof buf / 4 ? n - i : sizeof buf / 4;
        for (size_t j = 0; j < k; j++) {
            uint32_t v;
            memcpy(&v, &f[i + j], 4);
            for (int b = 0; b < 4; b++)
                buf[4 * j + (size_t)b] = (unsigned char)(v >> (8 * b));
        }
        put(w, buf, 4 * k);
    }
}

static void shape_ints(const gqa_shape *s, int32_t out[7]) {
    int32_t v[7] = {s->dim, s->hidden_dim, s->n_layers, s->n_heads, s->n_kv_heads,
                    s->tied_embeddings ? s->vocab_size : -s->vocab_size, s->seq_len};
    memcpy(out, v, sizeof v);
}

static void put_opts(Writer *w, const gqr_train_opts *o) {
    put_u64(w, (uint64_t)o->steps), put_u32(w, (uint32_t)o->batch), put_u32(w, (uint32_t)o->seq);
    put_f64(w, o->lr), put_f64(w, o->min_lr_ratio), put_u64(w, (uint64_t)o->warmup);
    put_f64(w, o->beta1), put_f64(w, o->beta2), put_f64(w, o->eps), put_f64(w, o->weight_decay);
    put_f64(w, o->clip), put_u64(w, o->seed);
}

int gqr_train_save(const gqr_train *tr, const char *path, char *err, size_t errlen) {
    Writer w = {.hash = 0xcbf29ce484222325ull};
    if (gqr_out_open(&w.out, path, err, errlen))
        return -1;
    int32_t shape[7];
    shape_ints(&tr->model->shape, shape);
    put(&w, CK_MAGIC, 8), put_u32(&w, CK_VERSION);
    for (int i = 0; i < 7; i++)
        put_u32(&w, (uint32_t)shape[i]);
    put_u64(&w, tr->n), put_u64(&w, (uint64_t)tr->step);
    put_opts(&w, &tr->o);
    put_u64(&w, tr->rng), put_u64(&w, tr->data_hash), put_u64(&w, tr->n_log);
    put_floats(&w, tr->params, tr->n), put_floats(&w, tr->m, tr->n), put_floats(&w, tr->v, tr->n);
    for (size_t i = 0; i < tr->n_log; i++) {
        const gqr_train_row *r = &tr->log[i];
        put_u64(&w, (uint64_t)r->step), put_f64(&w, r->lr), put_f64(&w, r->loss);
        put_f64(&w, r->grad_norm), put_f64(&w, r->tokens_per_s), put_f64(&w, r->eval_loss);
    }
    put_u64(&w, w.hash);
    return gqr_out_commit(&w.out, err, errlen);
}

/* ---- resuming ---- */

typedef struct {
    const unsigned char *p, *end;
} Reader;

static uint64_t get_u64(Reader *r) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    return v;
}

static uint32_t get_u32(Reader *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)r->p[i] << (8 * i);
    r->p += 4;
    return v;
}

static double get_f64(Reader *r) {
    uint64_t v = get_u64(r);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static void get_floats(Reader *r, float *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t v = get_u32(r);
        memcpy(&f[i], &v, 4);
    }
}

/* Bytes of a checkpoint by its fields: header, options, state, arrays, log, checksum. */
#define CK_HEAD (8 + 4 + 7 * 4 + 8 + 8)
#define CK_OPTS (8 + 4 + 4 + 8 + 8 + 8 + 5 * 8 + 8)
#define CK_STATE (8 + 8 + 8)
#define CK_ROW (6 * 8)

static int read_file(const char *path, unsigned char **data, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    long n;
    if (!f)
        return gqr_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return gqr_fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
    }
    *len = (size_t)n;
    *data = malloc(*len ? *len : 1);
    int bad = !*data || fread(*data, 1, *len, f) != *len;
    fclose(f);
    if (bad) {
        free(*data);
        return gqr_fail(err, errlen, "cannot read %s: %s", path, *data ? "short read" : "out of memory");
    }
    return 0;
}

static const char *const shape_names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                           "n_kv_heads", "vocab_size (negative: untied)", "seq_len"};

static int check_head(const gqr_train *tr, Reader *r, const char *path, size_t len, char *err,
                      size_t errlen) {
    if (len < CK_HEAD + CK_OPTS + CK_STATE + 8 || memcmp(r->p, CK_MAGIC, 8))
        return gqr_fail(err, errlen, "%s: not a gqac training checkpoint (no %s magic)", path, CK_MAGIC);
    r->p += 8;
    uint32_t version = get_u32(r);
    if (version != CK_VERSION)
        return gqr_fail(err, errlen, "%s: checkpoint format version %u, this gqac reads %u", path,
                        version, CK_VERSION);
    int32_t want[7];
    shape_ints(&tr->model->shape, want);
    for (int i = 0; i < 7; i++) {
        int32_t got = (int32_t)get_u32(r);
        if (got != want[i])
            return gqr_fail(err, errlen, "%s: the checkpoint's model has %s %d, this model %d", path,
                            shape_names[i], got, want[i]);
    }
    uint64_t n = get_u64(r);
    if (n != tr->n)
        return gqr_fail(err, errlen, "%s: %llu parameters, this model has %zu", path,
                        (unsigned long long)n, tr->n);
    return 0;
}

static void get_opts(Reader *r, gqr_train_opts *o) {
    o->steps = (long)get_u64(r), o->batch = (int)get_u32(r), o->seq = (int)get_u32(r);
    o->lr = get_f64(r), o->min_lr_ratio = get_f64(r), o->warmup = (long)get_u64(r);
    o->beta1 = get_f64(r), o->beta2 = get_f64(r), o->eps = get_f64(r), o->weight_decay = get_f64(r);
    o->clip = get_f64(r), o->seed = get_u64(r);
}

/* The options the checkpoint's run used against this run's: equal to the bit. */
static int check_opts_match(const gqr_train *tr, Reader *r, const char *path, char *err, size_t errlen) {
    const gqr_train_opts *o = &tr->o;
    gqr_train_opts c;
    get_opts(r, &c);
    const struct {
        const char *name;
        double got, want;
    } f[] = {
        {"steps", (double)c.steps, (double)o->steps}, {"batch", c.batch, o->batch}, {"seq", c.seq, o->seq},
        {"lr", c.lr, o->lr}, {"min_lr_ratio", c.min_lr_ratio, o->min_lr_ratio},
        {"warmup", (double)c.warmup, (double)o->warmup}, {"beta1", c.beta1, o->beta1},
        {"beta2", c.beta2, o->beta2}, {"eps", c.eps, o->eps}, {"weight_decay", c.weight_decay, o->weight_decay},
        {"clip", c.clip, o->clip},
    };
    if (c.seed != o->seed)
        return gqr_fail(err, errlen, "%s: the checkpoint's run has seed %llu, this run %llu (a resumed run "
                        "takes the options it started with)", path, (unsigned long long)c.seed,
                        (unsigned long long)o->seed);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (memcmp(&f[i].got, &f[i].want, sizeof f[i].got))
            return gqr_fail(err, errlen, "%s: the checkpoint's run has %s %.17g, this run %.17g (a resumed "
                            "run takes the options it started with)", path, f[i].name, f[i].got, f[i].want);
    return 0;
}

static uint64_t fnv(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int parse_checkpoint(gqr_train *tr, const unsigned char *data, size_t len, const char *path,
                            const gqr_data *d, char *err, size_t errlen) {
    Reader r = {data, data + len};
    if (check_head(tr, &r, path, len, err, errlen))
        return -1;
    uint64_t step = get_u64(&r);
    Reader opts = r; /* compared once the checksum has vouched for them */
    r.p += CK_OPTS;
    uint64_t rng = get_u64(&r), hash = get_u64(&r), n_log = get_u64(&r);
    gqr_train_opts c;
    Reader peek = opts;
    get_opts(&peek, &c);
    uint64_t want = CK_HEAD + CK_OPTS + CK_STATE + 12 * (uint64_t)tr->n + 8;
    if (n_log > (uint64_t)c.steps || step > (uint64_t)c.steps || n_log > (1ull << 40) || (want += CK_ROW * n_log) != len)
        return gqr_fail(err, errlen, "%s: %zu bytes, a checkpoint of %zu parameters and %llu steps has %llu",
                        path, len, tr->n, (unsigned long long)n_log, (unsigned long long)want);
    uint64_t sum = fnv(data, len - 8);
    Reader tail = {data + len - 8, data + len};
    uint64_t stored = get_u64(&tail);
    if (stored != sum)
        return gqr_fail(err, errlen, "%s: checksum %016llx, its bytes hash to %016llx (damaged)", path,
                        (unsigned long long)stored, (unsigned long long)sum);
    if (check_opts_match(tr, &opts, path, err, errlen))
        return -1;
    if (d && hash && hash != d->hash)
        return gqr_fail(err, errlen, "%s: the checkpoint's run trained on other text (its tokens' hash "
                        "%016llx, this text's %016llx)", path, (unsigned long long)hash,
                        (unsigned long long)d->hash);
    tr->step = tr->saved = (long)step, tr->rng = rng, tr->data_hash = hash, tr->n_log = (size_t)n_log;
    get_floats(&r, tr->params, tr->n), get_floats(&r, tr->m, tr->n), get_floats(&r, tr->v, tr->n);
    for (size_t i = 0; i < tr->n_log; i++) {
        gqr_train_row *row = &tr->log[i];
        row->step = (long)get_u64(&r), row->lr = get_f64(&r), row->loss = get_f64(&r);
        row->grad_norm = get_f64(&r), row->tokens_per_s = get_f64(&r), row->eval_loss = get_f64(&r);
    }
    return 0;
}

int gqr_train_resume(gqr_train *tr, const char *path, const gqr_data *data, char *err, size_t errlen) {
    unsigned char *bytes = NULL;
    size_t len = 0;
    if (read_file(path, &bytes, &len, err, errlen))
        return -1;
    int rc = parse_checkpoint(tr, bytes, len, path, data, err, errlen);
    free(bytes);
    return rc;
}

/* ---- the log: CSV and SVG ---- */

static int write_with(const gqr_train *tr, const char *path, const char *title,
                      void (*w)(const gqr_train *, const char *, FILE *), char *err, size_t errlen) {
    gqr_out out;
    if (gqr_out_open(&out, path, err, errlen))
        return -1;
    w(tr, title, out.f);
    return gqr_out_commit(&out, err, errlen);
}

static void csv(const gqr_train *tr, const char *title, FILE *f) {
    (void)title;
    fputs("step,lr,loss,grad_norm,tokens_per_s,eval_loss\n", f);
    for (size_t i = 0; i < tr->n_log; i++) {
        const gqr_train_row *r = &tr->log[i];
        fprintf(f, "%ld,%.9g,%.9g,%.9g,%.1f,", r->step, r->lr, r->loss, r->grad_norm, r->tokens_per_s);
        if (!isnan(r->eval_loss))
            fprintf(f, "%.9g", r->eval_loss);
        fputc('\n', f);
    }
}

int gqr_train_csv(const gqr_train *tr, const char *path, char *err, size_t errlen) {
    return write_with(tr, path, NULL, csv, err, errlen);
}

/* The page and the plot inside it, in pixels. */
enum { SVG_W = 720, SVG_H = 480, LEFT = 70, RIGHT = 24, TOP = 48, BOTTOM = 56 };

typedef struct {
    double lo, hi, step, from, to; /* values lo..hi (multiples of step) on pixels from..to */
} Axis;

/* lo..hi widened to multiples of a 1, 2 or 5 step giving at most 6 intervals. */
static Axis axis(double lo, double hi, double from, double to) {
    if (!(hi > lo))
        lo -= 0.5, hi += 0.5;
    double step = pow(10, floor(log10((hi - lo) / 6)));
    for (int k = 0; ceil(hi / step) - floor(lo / step) > 6; k++)
        step *= k % 3 == 1 ? 2.5 : 2; /* 1, 2, 5, 10, 20, 50 ... */
    return (Axis){floor(lo / step) * step, ceil(hi / step) * step, step, from, to};
}

static double px(const Axis *a, double v) {
    return a->from + (v - a->lo) / (a->hi - a->lo) * (a->to - a->from);
}

static void svg_ticks(FILE *f, const Axis *a, int vertical) {
    long n = lround((a->hi - a->lo) / a->step);
    for (long k = 0; k <= n; k++) {
        double v = (floor(a->lo / a->step + 0.5) + (double)k) * a->step, p = px(a, v);
        if (vertical)
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    LEFT, p, SVG_W - RIGHT, p, LEFT - 6, p + 4, v);
        else
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                    p, TOP, p, SVG_H - BOTTOM, p, SVG_H - BOTTOM + 18, v);
    }
}

/* Text for XML: its special characters escaped, control bytes dropped. */
static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '<' || c == '>' || c == '&')
            fputs(c == '<' ? "&lt;" : c == '>' ? "&gt;" : "&amp;", f);
        else if (c >= 0x20 && c != 0x7f)
            fputc(c, f);
    }
}

static void svg_line(FILE *f, const gqr_train *tr, const Axis *ax, const Axis *ay, int eval,
                     const char *color) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
    const char *sep = "";
    for (size_t i = 0; i < tr->n_log; i++) {
        double y = eval ? tr->log[i].eval_loss : tr->log[i].loss;
        if (isfinite(y)) {
            fprintf(f, "%s%.1f,%.1f", sep, px(ax, (double)tr->log[i].step), px(ay, y));
            sep = " ";
        }
    }
    fputs("\"/>\n", f);
}

static void svg(const gqr_train *tr, const char *title, FILE *f) {
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < tr->n_log; i++)
        for (int e = 0; e < 2; e++) {
            double y = e ? tr->log[i].eval_loss : tr->log[i].loss;
            if (isfinite(y))
                lo = fmin(lo, y), hi = fmax(hi, y);
        }
    if (lo > hi)
        lo = 0, hi = 1;
    Axis ax = axis(0, (double)tr->o.steps, LEFT, SVG_W - RIGHT), ay = axis(lo, hi, SVG_H - BOTTOM, TOP);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            SVG_W, SVG_H, SVG_W, SVG_H);
    svg_ticks(f, &ax, 0), svg_ticks(f, &ay, 1);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n",
            LEFT, TOP, SVG_W - LEFT - RIGHT, SVG_H - TOP - BOTTOM);
    fprintf(f, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">", SVG_W / 2);
    xml_text(f, title);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step (batch %d x seq %d)</text>\n"
               "<text transform=\"translate(18,%d) rotate(-90)\" text-anchor=\"middle\">loss (nats per token)"
               "</text>\n",
            (LEFT + SVG_W - RIGHT) / 2, SVG_H - 16, tr->o.batch, tr->o.seq, (TOP + SVG_H - BOTTOM) / 2);
    svg_line(f, tr, &ax, &ay, 0, "#1f77b4");
    svg_line(f, tr, &ax, &ay, 1, "#d62728");
    for (size_t i = 0; i < tr->n_log; i++) /* evaluations are few: each one marked */
        if (isfinite(tr->log[i].eval_loss))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"/>\n",
                    px(&ax, (double)tr->log[i].step), px(&ay, tr->log[i].eval_loss));
    int x = SVG_W - RIGHT - 150, y = TOP + 10;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"140\" height=\"44\" fill=\"white\" stroke=\"#999\"/>\n"
               "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>"
               "<text x=\"%d\" y=\"%d\">training batch</text>\n"
               "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#d62728\" stroke-width=\"1.5\"/>"
               "<text x=\"%d\" y=\"%d\">eval text</text>\n</svg>\n",
            x, y, x + 6, y + 14, x + 22, y + 14, x + 28, y + 18, x + 6, y + 32, x + 22, y + 32, x + 28, y + 36);
}

int gqr_train_svg(const gqr_train *tr, const char *path, const char *title, char *err, size_t errlen) {
    return write_with(tr, path, title, svg, err, errlen);
}
