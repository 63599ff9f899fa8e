/*
 * train_cmd.c: `gqac train MODEL.gqa --data TEXT --tokenizer T (--init W |
 * --random) -o OUT.bin [...]`.  Needs: the JIT's training code
 * (jit_compile_train), the runtime's loop (runtime/train.h), its weights
 * loaders and tokenizers.  Provides: the command: flags checked and every
 * output path refused before any work, the f32 model compiled with its
 * training step, the text tokenized, the weights initialized (a file of
 * the same shape in any format gqac reads, or PyTorch's recipe from a
 * seed), the loop run with a progress display, then the trained weights
 * (a llama2.c .bin, written whole at the end, never at a failed run), the
 * loss CSV and optionally the SVG curve.
 */
#include "gqac.h"
#include "gqr.h"
#include "outfile.h"
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *data, *tokenizer, *init, *output, *eval, *log, *svg, *checkpoint, *resume, *jit;
    bool random, seq_set, warmup_set;
    long stop_at, log_every;
    gqr_train_opts t;
} TrainArgs;

static const char usage_line[] =
    "(gqac train MODEL.gqa --data TEXT --tokenizer T (--init W | --random) -o OUT.bin [--steps N] "
    "[--batch B] [--seq S] [--lr LR] [--warmup N] [--seed N] [--eval TEXT] [--eval-every K] "
    "[--threads N] [--log CSV] [--svg FILE] [--checkpoint FILE] [--save-every K] [--resume FILE] "
    "[--jit cc|tcc|llvm]; gqac --help)";

static int usage(const char *fmt, const char *arg) {
    fputs("gqac train: error: ", stderr);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s\n", usage_line);
    return EXIT_USAGE;
}

static bool real(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    *out = v;
    return end != s && !*end && isfinite(v) && v >= lo && v <= hi;
}

/* One flag and its value into a; 0, or EXIT_USAGE naming the flag. */
static int set_flag(TrainArgs *a, const char *f, const char *v) {
    long n = 0;
    bool ok = true;
    const char **path = !strcmp(f, "--data") ? &a->data : !strcmp(f, "--tokenizer") ? &a->tokenizer
                      : !strcmp(f, "--init") ? &a->init : !strcmp(f, "-o") ? &a->output
                      : !strcmp(f, "--eval") ? &a->eval : !strcmp(f, "--log") ? &a->log
                      : !strcmp(f, "--svg") ? &a->svg : !strcmp(f, "--checkpoint") ? &a->checkpoint
                      : !strcmp(f, "--resume") ? &a->resume : NULL;
    if (path)
        *path = v;
    else if (!strcmp(f, "--jit"))
        ok = jit_backend(a->jit = v) != NULL;
    else if (!strcmp(f, "--steps"))
        ok = whole(v, 1, 1L << 40, &n), a->t.steps = n;
    else if (!strcmp(f, "--batch"))
        ok = whole(v, 1, 1 << 20, &n), a->t.batch = (int)n;
    else if (!strcmp(f, "--seq"))
        ok = whole(v, 1, 1L << 30, &n), a->t.seq = (int)n, a->seq_set = true;
    else if (!strcmp(f, "--warmup"))
        ok = whole(v, 0, 1L << 40, &n), a->t.warmup = n, a->warmup_set = true;
    else if (!strcmp(f, "--seed"))
        ok = whole(v, 0, 1L << 62, &n), a->t.seed = (uint64_t)n;
    else if (!strcmp(f, "--eval-every"))
        ok = whole(v, 0, 1L << 40, &n), a->t.eval_every = n;
    else if (!strcmp(f, "--eval-windows"))
        ok = whole(v, 0, 1L << 40, &n), a->t.eval_windows = (size_t)n;
    else if (!strcmp(f, "--save-every"))
        ok = whole(v, 0, 1L << 40, &n), a->t.save_every = n;
    else if (!strcmp(f, "--stop-at"))
        ok = whole(v, 1, 1L << 40, &a->stop_at);
    else if (!strcmp(f, "--log-every"))
        ok = whole(v, 1, 1L << 40, &a->log_every);
    else if (!strcmp(f, "--threads"))
        ok = whole(v, 0, 4096, &n), a->t.threads = (int)n;
    else if (!strcmp(f, "--lr"))
        ok = real(v, 1e-12, 1e3, &a->t.lr);
    else if (!strcmp(f, "--weight-decay"))
        ok = real(v, 0, 1e3, &a->t.weight_decay);
    else if (!strcmp(f, "--clip"))
        ok = real(v, 0, 1e12, &a->t.clip);
    else if (!strcmp(f, "--min-lr-ratio"))
        ok = real(v, 0, 1, &a->t.min_lr_ratio);
    else
        return usage("unknown flag '%s'", f);
    if (!ok) {
        fprintf(stderr, "gqac train: error: %s: bad value '%s' (%s)\n%s\n", f, v,
                !strcmp(f, "--jit") ? jit_unavailable(v)
                : !strcmp(f, "--lr") ? "a number above 0"
                : !strcmp(f, "--min-lr-ratio") ? "a number from 0 to 1"
                : !strcmp(f, "--weight-decay") || !strcmp(f, "--clip") ? "a number, 0 or more"
                : !strcmp(f, "--steps") || !strcmp(f, "--batch") || !strcmp(f, "--seq") ||
                        !strcmp(f, "--stop-at") || !strcmp(f, "--log-every") ? "a whole number, 1 or more"
                : "a whole number, 0 or more",
                usage_line);
        return EXIT_USAGE;
    }
    return 0;
}

/* FILE.bin -> FILE.csv; anything else gets .csv appended. */
static const char *csv_path(const char *output, Arena *a) {
    size_t n = strlen(output);
    if (n > 4 && !strcmp(output + n - 4, ".bin"))
        n -= 4;
    return arena_printf(a, "%.*s.csv", (int)n, output);
}

/* The outputs: each writable, no two the same file. */
static int check_outputs(const TrainArgs *a) {
    const char *paths[4] = {a->output, a->log, a->svg, a->checkpoint};
    const char *names[4] = {"-o", "--log", "--svg", "--checkpoint"};
    char err[1024];
    for (int i = 0; i < 4; i++) {
        if (paths[i] && gqr_out_check(paths[i], err, sizeof err)) {
            fprintf(stderr, "gqac train: error: %s %s\n", names[i], err);
            return EXIT_INPUT;
        }
        for (int j = 0; j < i; j++)
            if (paths[i] && paths[j] && gqr_out_same(paths[i], paths[j])) {
                fprintf(stderr, "gqac train: error: %s and %s name the same file ('%s')\n%s\n", names[j],
                        names[i], paths[i], usage_line);
                return EXIT_USAGE;
            }
    }
    return 0;
}

static int parse(const Model *m, int argc, char **argv, TrainArgs *a, Arena *ar) {
    *a = (TrainArgs){.jit = "cc", .log_every = 50};
    gqr_train_defaults(&a->t);
    a->t.eval_every = 200, a->t.eval_windows = 200, a->t.save_every = 200;
    for (int i = 0; i < argc; i++) {
        int rc;
        if (!strcmp(argv[i], "--random"))
            a->random = true;
        else if (i + 1 >= argc)
            return usage(argv[i][0] == '-' ? "%s needs a value" : "stray argument '%s'", argv[i]);
        else if ((rc = set_flag(a, argv[i], argv[i + 1])))
            return rc;
        else
            i++;
    }
    if (!a->data || !a->tokenizer || !a->output)
        return usage("%s", "needs --data TEXT, --tokenizer T and -o OUT.bin");
    if ((a->init != NULL) + a->random != 1 && !(a->resume && !a->init && !a->random))
        return usage("%s", "give one of --init W (start from weights) and --random (start from scratch)");
    if (!a->seq_set)
        a->t.seq = (int)m->context;
    if (a->t.seq > m->context) {
        fprintf(stderr, "gqac train: error: --seq %d is past the model's context %lld\n%s\n", a->t.seq,
                (long long)m->context, usage_line);
        return EXIT_USAGE;
    }
    if (!a->warmup_set) /* the recipe's 100 of 1,408, or a fourteenth of a shorter run */
        a->t.warmup = a->t.steps / 14 < 100 ? a->t.steps / 14 : 100;
    if (a->stop_at > a->t.steps)
        return usage("%s", "--stop-at is past --steps");
    if (!a->log)
        a->log = csv_path(a->output, ar);
    if (a->resume && !a->checkpoint)
        a->checkpoint = a->resume; /* a resumed run goes on saving where it came from */
    a->t.checkpoint = a->checkpoint;
    return check_outputs(a);
}

/* ---- the weights ---- */

/* splitmix64 and Box-Muller: the same normals on every host for a seed. */
static double normal(uint64_t *s) {
    double u1 = ((double)(gqr_data_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (double)(gqr_data_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* PyTorch's recipe (tools/train_fortune.py): matrices normal(0, 0.02),
 * wo and w2 0.02 / sqrt(2 layers), norm gains 1, biases 0; floats outside
 * the tensors (llama2.c's RoPE tables) 0. */
static void init_random(const gqa_model_api *api, uint64_t seed, float *p) {
    memset(p, 0, api->weight_bytes);
    uint64_t s = seed;
    double deep = 0.02 / sqrt(2.0 * api->shape.n_layers);
    for (size_t i = 0; i < api->n_tensors; i++) {
        const gqa_tensor *t = &api->tensors[i];
        float *x = p + t->offset / 4;
        size_t n = (size_t)t->rows * (size_t)t->cols;
        bool norm = t->kind == GQA_T_RMS_ATT || t->kind == GQA_T_RMS_FFN || t->kind == GQA_T_RMS_FINAL;
        bool bias = t->kind == GQA_T_BQ || t->kind == GQA_T_BK || t->kind == GQA_T_BV;
        double sd = t->kind == GQA_T_WO || t->kind == GQA_T_W2 ? deep : 0.02;
        for (size_t j = 0; j < n; j++)
            x[j] = norm ? 1.0f : bias ? 0.0f : (float)(sd * normal(&s));
    }
}

static int init_from(const char *path, const gqa_model_api *api, float *p) {
    gqr_checkpoint ck;
    char err[1024];
    if (gqr_checkpoint_load(&ck, path, api, GQR_LOAD_MMAP | GQR_LOAD_DEQUANTIZE, err, sizeof err) ||
        gqr_checkpoint_pack(&ck, api, err, sizeof err)) {
        fprintf(stderr, "gqac train: error: --init %s\n", err);
        gqr_checkpoint_close(&ck);
        return EXIT_INPUT;
    }
    memcpy(p, ck.weights, api->weight_bytes);
    gqr_checkpoint_close(&ck);
    return 0;
}

static int write_weights(const Model *f, const float *p, const char *path) {
    gqr_out out;
    char err[1024];
    if (gqr_out_open(&out, path, err, sizeof err))
        goto fail;
    if (!weights_write(f, p, out.f)) {
        gqr_out_abort(&out);
        snprintf(err, sizeof err, "%s: cannot write: %s", path, strerror(errno));
        goto fail;
    }
    if (!gqr_out_commit(&out, err, sizeof err))
        return 0;
fail:
    fprintf(stderr, "gqac train: error: %s\n", err);
    return EXIT_INPUT;
}

/* ---- progress ---- */

typedef struct {
    const TrainArgs *a;
    bool tty;
    double t0;
    long step0;   /* steps done when this process started */
    double tokens;
} Progress;

static const char *duration(double s, char *buf, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    return buf;
}

static int on_step(void *user, const gqr_train_row *r) {
    Progress *p = user;
    long steps = p->a->t.steps, done = r->step - p->step0;
    double el = now_seconds() - p->t0, left = el / (double)done * (double)(steps - r->step);
    char eta[32], ev[96] = "";
    p->tokens += (double)p->a->t.batch * p->a->t.seq;
    if (!isnan(r->eval_loss))
        snprintf(ev, sizeof ev, " eval %.4f (ppl %.4g)", r->eval_loss, exp(r->eval_loss));
    if (p->tty) {
        int width = 24, fill = (int)((double)width * (double)r->step / (double)steps);
        fprintf(stderr, "\r\033[Kstep %ld/%ld [%.*s%*s] loss %.4f%s %.0f tok/s, %s left", r->step, steps,
                fill, "########################", width - fill, "", r->loss, ev, p->tokens / el,
                duration(left, eta, sizeof eta));
        if (*ev || r->step == steps)
            fputc('\n', stderr); /* keep the evaluations on screen */
    } else if (r->step % p->a->log_every == 0 || done == 1 || r->step == steps || r->step == p->a->stop_at ||
               *ev) {
        fprintf(stderr, "step %ld/%ld lr %.3e loss %.4f grad norm %.3f%s %.0f tok/s, %s left\n", r->step,
                steps, r->lr, r->loss, r->grad_norm, ev, p->tokens / el, duration(left, eta, sizeof eta));
    }
    return p->a->stop_at && r->step >= p->a->stop_at;
}

/* ---- the run ---- */

typedef struct {
    gqr_tokenizer *tok;
    gqr_data data, eval;
    JitModel *jit;
    float *init;
    size_t init_bytes;
    gqr_train *tr;
} Run;

static void run_free(Run *r) {
    gqr_train_free(r->tr);
    free(r->init);
    jit_free(r->jit);
    gqr_data_free(&r->data), gqr_data_free(&r->eval);
    gqr_tokenizer_free(r->tok);
}

static int fail(const char *err) {
    fprintf(stderr, "gqac train: error: %s\n", err);
    return EXIT_INPUT;
}

static int load_text(const TrainArgs *a, const Model *m, Run *r) {
    char err[1024];
    if (gqr_tokenizer_load(&r->tok, a->tokenizer, 0, err, sizeof err) ||
        gqr_data_load(&r->data, a->data, r->tok, (int)m->vocab, err, sizeof err) ||
        gqr_data_check(&r->data, a->data, a->t.seq, err, sizeof err) ||
        (a->eval && gqr_data_load(&r->eval, a->eval, r->tok, (int)m->vocab, err, sizeof err)))
        return fail(err);
    if (a->eval && gqr_data_windows(&r->eval, a->t.seq, 0) == 0) {
        snprintf(err, sizeof err, "%s: %zu tokens: an evaluation window of %d positions needs %d", a->eval,
                 r->eval.n_tokens, a->t.seq, a->t.seq + 1);
        return fail(err);
    }
    return 0;
}

static int compile(const TrainArgs *a, const Model *f, Run *r, const gqa_model_api **api,
                   const gqa_train_api **train) {
    char err[1024];
    if (!(r->jit = jit_compile_train(f, jit_backend(a->jit), api, train, err, sizeof err)))
        return fail(err);
    return 0;
}

/* The starting weights, before the (slow) compile: checked against the
 * f32 model's table as the converters describe it (export_api). */
static int init_weights(const TrainArgs *a, const Model *m, Run *r, Arena *ar) {
    double *freqs = arena_alloc(ar, sizeof *freqs * (size_t)(m->head_dim / 2 + 1));
    for (int64_t i = 0; i < m->head_dim / 2; i++)
        freqs[i] = ir_rope_freq(m, i);
    gqa_model_api api = export_api(m, ar, freqs);
    if (!(r->init = malloc(api.weight_bytes ? api.weight_bytes : 1)))
        return fail("out of memory for the initial weights");
    r->init_bytes = api.weight_bytes;
    if (a->random)
        init_random(&api, a->t.seed, r->init);
    else if (a->init)
        return init_from(a->init, &api, r->init);
    else
        memset(r->init, 0, api.weight_bytes); /* --resume alone: the checkpoint's params replace these */
    return 0;
}

static int set_up(const TrainArgs *a, Run *r, const gqa_model_api *api, const gqa_train_api *train) {
    char err[1024];
    if (api->weight_bytes != r->init_bytes || train->n_params != r->init_bytes / 4)
        return fail("internal error: the training code's parameters are not the model's f32 weights");
    if (gqr_train_new(&r->tr, api, train, &a->t, r->init, err, sizeof err) ||
        (a->resume && gqr_train_resume(r->tr, a->resume, &r->data, err, sizeof err)))
        return fail(err);
    return 0;
}

static int write_logs(const TrainArgs *a, const Model *m, Run *r) {
    char err[1024];
    if (gqr_train_csv(r->tr, a->log, err, sizeof err) ||
        (a->svg && gqr_train_svg(r->tr, a->svg, m->name, err, sizeof err)))
        return fail(err);
    return 0;
}

static int train(const TrainArgs *a, const Model *m, Run *r, Arena *ar) {
    Model f = ir_with_f32(m);
    const gqa_model_api *api = NULL;
    const gqa_train_api *train = NULL;
    int rc = load_text(a, m, r);
    rc = rc ? rc : init_weights(a, m, r, ar);
    rc = rc ? rc : compile(a, &f, r, &api, &train);
    rc = rc ? rc : set_up(a, r, api, train);
    if (rc)
        return rc;
    Progress p = {a, isatty(2) == 1, now_seconds(), gqr_train_step(r->tr), 0};
    char err[1024];
    long until = a->stop_at ? a->stop_at : a->t.steps;
    if (gqr_train_run(r->tr, &r->data, a->eval ? &r->eval : NULL, until, on_step, &p, err, sizeof err)) {
        if (p.tty)
            fputc('\n', stderr);
        fprintf(stderr, "gqac train: error: %s; %s not written", err, a->output);
        long saved = gqr_train_saved(r->tr);
        if (a->checkpoint && saved >= 0)
            fprintf(stderr, "; the last good checkpoint is %s, of step %ld (resume with --resume %s)\n",
                    a->checkpoint, saved, a->checkpoint);
        else if (a->checkpoint)
            fprintf(stderr, "; no checkpoint was written before it (--save-every %ld)\n", a->t.save_every);
        else
            fputs(" (--checkpoint FILE keeps one to resume from)\n", stderr);
        write_logs(a, m, r);
        return EXIT_INPUT;
    }
    rc = write_logs(a, m, r);
    rc = rc ? rc : write_weights(&f, gqr_train_params(r->tr), a->output);
    size_t n;
    const gqr_train_row *log = gqr_train_log(r->tr, &n);
    char ev[96] = "";
    for (size_t i = n; i-- > 0 && !*ev;)
        if (!isnan(log[i].eval_loss))
            snprintf(ev, sizeof ev, ", eval loss %.4f (ppl %.4g) at step %ld", log[i].eval_loss,
                     exp(log[i].eval_loss), log[i].step);
    if (!rc && n)
        printf("trained to step %ld of %ld: loss %.4f%s; %s written\n", log[n - 1].step, a->t.steps,
               log[n - 1].loss, ev, a->output);
    return rc;
}

int train_command(const Model *m, int argc, char **argv, Arena *ar) {
    TrainArgs a;
    int rc = parse(m, argc, argv, &a, ar);
    if (rc)
        return rc;
    const char *why = train_unsupported(m);
    if (why) {
        fprintf(stderr, "gqac train: error: %s\n", why);
        return EXIT_INPUT;
    }
    Run r;
    memset(&r, 0, sizeof r);
    rc = train(&a, m, &r, ar);
    run_free(&r);
    return rc;
}
