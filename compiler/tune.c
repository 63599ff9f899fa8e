/*
 * tune.c: `gqac tune MODEL.gqa --weights W [...]`, the KV-head trade-off
 * measured.  Needs: the JIT (one compiled variant per candidate kv_heads),
 * the runtime (weights, tokenizer) and report.c.  Provides: for each
 * candidate kv_heads, weight type and KV-cache type, the weights converted
 * by mean-pooling K and V heads (Ainslie et al. 2023, "GQA", section 2.1)
 * in floats, then stored in the type; decode latency at each context,
 * memory, and, on an eval text, perplexity and the KL divergence from the
 * original.
 *
 *   gqac tune M.gqa --weights W [--kv-heads 1,2,4] [--types file,q8_0,q4_k]
 *             [--kv-types file,f16,q8_0] [--context 512,2048]
 *             [--eval TEXT --tokenizer T] [--eval-tokens N] [--jit llvm|cc|tcc]
 *             [--runs N] [--threads N] [--max-ppl-increase 5%] [--out PREFIX]
 *             [--emit DIR] [--init mean,first,random]
 *             [--uptrain 0,1%,5% [--pretrain-steps N] --train TEXT [--batch B]
 *              [--seq S] [--lr LR] [--seed N]]
 *
 * --init picks how a converted variant's K and V heads are made (mean,
 * the group's first head, or random); --uptrain trains each converted
 * variant that many steps after conversion with gqac train's recipe
 * (runtime/train.h) on f32 before it is stored in its types.
 */
#include "gqac.h"
#include "gqr.h"
#include "outfile.h"
#include "quant.h"
#include "tensorfile.h"
#include "tokenizer.h"
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { MAX_LIST = 64, TYPE_FILE = -1 /* the model's own types */ };

typedef struct {
    const char *weights, *eval, *tokenizer, *jit, *out, *emit;
    int kv[MAX_LIST], n_kv;
    int types[DT_COUNT + 1], n_types; /* DType or TYPE_FILE */
    int kv_types[DT_COUNT + 1], n_kv_types; /* the cache's: DType or TYPE_FILE */
    int contexts[MAX_LIST], n_contexts;
    int eval_tokens, runs, threads;
    double max_ppl_increase;
    /* --init, --uptrain and the training it does (gqac train's recipe) */
    int inits[TUNE_INIT_COUNT], n_inits;
    bool init_given;
    double up[MAX_LIST]; /* steps, or percents of pretrain_steps where up_pct */
    bool up_pct[MAX_LIST];
    long uptrain[MAX_LIST + 1]; /* in steps, ascending, 0 first */
    int n_up, n_uptrain, batch, seq;
    long pretrain_steps, seed;
    double lr;
    const char *train;
} TuneOptions;

static const char *const init_names[TUNE_INIT_COUNT] = {"mean", "first", "random"};

/* One candidate: its model, code, weights (packed, in its types) and
 * instance.  The original's packed weights are the checkpoint's. */
typedef struct {
    Model m;
    int type;          /* DType, or TYPE_FILE */
    const char *label; /* the report's "weights": a type's name, or "mixed" */
    const char *cache; /* the report's "kv_cache": the cache's type */
    int init;          /* TUNE_INIT_*, or -1: not converted (the original's kv_heads) */
    long uptrain;      /* steps trained after conversion; -1: not uptraining */
    JitModel *jit;
    const gqa_model_api *api;
    unsigned char *weights; /* owned, or NULL (the original) */
    const void *packed;
    void *arena;
    gqa_state *s;
} Variant;

static int usage(const char *fmt, const char *arg) {
    fprintf(stderr, "gqac tune: error: ");
    fprintf(stderr, fmt, arg);
    fputs("\n(gqac tune MODEL.gqa --weights W [--kv-heads 1,2,4] [--types file,q8_0,q4_k] "
          "[--kv-types file,f16,q8_0] [--context 512,2048] [--eval TEXT --tokenizer T] "
          "[--jit llvm|cc|tcc] [--max-ppl-increase 5%] [--out PREFIX] [--emit DIR] "
          "[--init mean,first,random] [--uptrain 0,1%,5% [--pretrain-steps N] --train TEXT "
          "[--batch B] [--seq S] [--lr LR] [--seed N]])\n",
          stderr);
    return EXIT_USAGE;
}

/* What each flag's value must be, for its error. */
static int bad_value(const char *flag, const char *v) {
    static const char *const wants[][2] = {
        {"--kv-heads", "a list of whole numbers >= 1, like 1,2,4"},
        {"--types", "a list of file (the model's own types), f32, f16, bf16, q8_0, q4_0, q4_k "
                    "or q6_k, like file,q8_0,q4_k"},
        {"--kv-types", "a list of file (the model's own cache type), f32, f16, bf16 or q8_0, "
                       "like f32,f16,q8_0"},
        {"--context", "a list of whole numbers >= 1, like 512,2048"},
        {"--eval-tokens", "a whole number >= 2"},
        {"--runs", "a whole number in [1, 10000]"},
        {"--threads", "a whole number in [0, 4096] (0: the OpenMP default)"},
        {"--max-ppl-increase", "a fraction >= 0, like 5% or 0.05"},
        {"--init", "a list of mean, first or random, like mean,first"},
        {"--uptrain", "a list of steps or percents of --pretrain-steps, like 0,10 or 0,1%,5%"},
        {"--pretrain-steps", "a whole number >= 1"},
        {"--batch", "a whole number in [1, 65536]"},
        {"--seq", "a whole number >= 1"},
        {"--lr", "a number > 0, like 2e-3"},
        {"--seed", "a whole number >= 0"},
    };
    char msg[512];
    for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++)
        if (!strcmp(flag, wants[i][0]))
            snprintf(msg, sizeof msg, "%s wants %s, not '%.64s'", flag, wants[i][1], v);
    return usage("%s", msg);
}

/* "1,2,4" into out[], each in [lo, hi]; false on anything else. */
static bool int_list(const char *s, int *out, int *n, int lo, int hi) {
    *n = 0;
    while (*s && *n < MAX_LIST) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < lo || v > hi || (*end && *end != ','))
            return false;
        out[(*n)++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return *n > 0 && !*s;
}

/* "file,q8_0,f16" into out[] (TYPE_FILE for file), without repeats. */
static bool type_list(const char *s, int *out, int *n) {
    *n = 0;
    while (*s) {
        char word[16];
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= sizeof word || *n > DT_COUNT)
            return false;
        memcpy(word, s, len);
        word[len] = 0;
        bool file = !strcmp(word, "file");
        int t = file ? TYPE_FILE : dtype_from_name(word);
        bool seen = false;
        for (int i = 0; i < *n; i++)
            seen |= out[i] == t;
        if ((t < 0 && !file) || (s[len] && !s[len + 1]))
            return false;
        if (!seen)
            out[(*n)++] = t;
        s += s[len] ? len + 1 : len;
    }
    return *n > 0;
}

/* type_list's, each a type the KV cache can hold (sema's check_kv_type). */
static bool kv_type_list(const char *s, int *out, int *n) {
    bool ok = type_list(s, out, n);
    for (int i = 0; ok && i < *n; i++)
        ok = out[i] == TYPE_FILE || out[i] == DT_F32 || out[i] == DT_F16 || out[i] == DT_BF16 ||
             out[i] == DT_Q8_0;
    return ok;
}

/* "mean,first" into o->inits, without repeats. */
static bool init_list(const char *s, TuneOptions *o) {
    o->n_inits = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        int k = -1;
        for (int i = 0; i < TUNE_INIT_COUNT; i++)
            if (len == strlen(init_names[i]) && !strncmp(s, init_names[i], len))
                k = i;
        bool seen = false;
        for (int i = 0; i < o->n_inits; i++)
            seen |= o->inits[i] == k;
        if (k < 0 || (s[len] && !s[len + 1]))
            return false;
        if (!seen)
            o->inits[o->n_inits++] = k;
        s += s[len] ? len + 1 : len;
    }
    return o->n_inits > 0;
}

/* "0,10,1%,2.5%": whole steps, or percents of --pretrain-steps. */
static bool uptrain_list(const char *s, TuneOptions *o) {
    o->n_up = 0;
    while (*s && o->n_up < MAX_LIST) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        bool pct = end != s && *end == '%';
        end += pct;
        if (end == s || errno || !(v >= 0 && v <= 1e9) || (!pct && v != floor(v)) ||
            (*end && *end != ','))
            return false;
        o->up[o->n_up] = v, o->up_pct[o->n_up++] = pct;
        s = *end ? end + 1 : end;
    }
    return o->n_up > 0 && !*s;
}

/* The --uptrain amounts in steps, 0 first, ascending, without repeats. */
static int uptrain_steps(TuneOptions *o) {
    o->n_uptrain = 0;
    o->uptrain[o->n_uptrain++] = 0;
    for (int i = 0; i < o->n_up; i++) {
        if (o->up_pct[i] && o->pretrain_steps <= 0) {
            fprintf(stderr, "gqac tune: error: --uptrain %g%% needs --pretrain-steps N (the "
                    "original's training steps, of which it is a percent)\n", o->up[i]);
            return EXIT_USAGE;
        }
        long n = o->up_pct[i] ? lround(o->up[i] / 100 * (double)o->pretrain_steps) : (long)o->up[i];
        int j = o->n_uptrain;
        for (int k = 0; k < o->n_uptrain; k++)
            if (o->uptrain[k] == n)
                j = -1;
        if (j < 0)
            continue;
        while (j > 0 && o->uptrain[j - 1] > n)
            o->uptrain[j] = o->uptrain[j - 1], j--;
        o->uptrain[j] = n, o->n_uptrain++;
    }
    return 0;
}

/* A finite number > 0. */
static bool positive(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    *out = v;
    return end != s && !*end && v > 0 && v < 1e6;
}

/* "5%" or "0.05". */
static bool fraction(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end != s && *end == '%' && !end[1])
        v /= 100, end++;
    *out = v;
    return end != s && !*end && v >= 0 && v < 1e6;
}

static int parse(int argc, char **argv, TuneOptions *o) {
    *o = (TuneOptions){.jit = jit_default(), .out = "tune", .eval_tokens = 4096, .runs = 15,
                       .max_ppl_increase = -1, .inits = {TUNE_INIT_MEAN}, .n_inits = 1,
                       .batch = 16, .lr = 2e-3, .seed = 1337};
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!v)
            return usage("%s needs a value", f);
        if (!strcmp(f, "--weights")) o->weights = v;
        else if (!strcmp(f, "--eval")) o->eval = v;
        else if (!strcmp(f, "--tokenizer")) o->tokenizer = v;
        else if (!strcmp(f, "--out")) o->out = v;
        else if (!strcmp(f, "--emit")) o->emit = v;
        else if (!strcmp(f, "--jit")) ok = jit_backend(o->jit = v) != NULL;
        else if (!strcmp(f, "--kv-heads")) ok = int_list(v, o->kv, &o->n_kv, 1, 1 << 20);
        else if (!strcmp(f, "--types")) ok = type_list(v, o->types, &o->n_types);
        else if (!strcmp(f, "--kv-types")) ok = kv_type_list(v, o->kv_types, &o->n_kv_types);
        else if (!strcmp(f, "--context")) ok = int_list(v, o->contexts, &o->n_contexts, 1, 1 << 30);
        else if (!strcmp(f, "--eval-tokens")) ok = int_list(v, &o->eval_tokens, &(int){0}, 2, 1 << 30);
        else if (!strcmp(f, "--runs")) ok = int_list(v, &o->runs, &(int){0}, 1, 10000);
        else if (!strcmp(f, "--threads")) ok = int_list(v, &o->threads, &(int){0}, 0, 4096);
        else if (!strcmp(f, "--max-ppl-increase")) ok = fraction(v, &o->max_ppl_increase);
        else if (!strcmp(f, "--init")) ok = o->init_given = init_list(v, o);
        else if (!strcmp(f, "--uptrain")) ok = uptrain_list(v, o);
        else if (!strcmp(f, "--train")) o->train = v;
        else if (!strcmp(f, "--pretrain-steps")) ok = whole(v, 1, 1L << 40, &o->pretrain_steps);
        else if (!strcmp(f, "--batch")) ok = int_list(v, &o->batch, &(int){0}, 1, 65536);
        else if (!strcmp(f, "--seq")) ok = int_list(v, &o->seq, &(int){0}, 1, 1 << 30);
        else if (!strcmp(f, "--lr")) ok = positive(v, &o->lr);
        else if (!strcmp(f, "--seed")) ok = whole(v, 0, 1L << 62, &o->seed);
        else return usage("unknown flag '%s'", f);
        if (!ok && !strcmp(f, "--jit"))
            return usage("--jit: %s", jit_unavailable(v));
        if (!ok)
            return bad_value(f, v);
        i++;
    }
    if (!o->weights)
        return usage("%s", "--weights FILE is required");
    if (o->n_types == 0)
        o->types[o->n_types++] = TYPE_FILE;
    if (o->n_kv_types == 0)
        o->kv_types[o->n_kv_types++] = TYPE_FILE;
    if (o->eval && !o->tokenizer)
        return usage("%s", "--eval needs --tokenizer (the text is tokenized as the model reads it)");
    if (o->n_up && !o->train)
        return usage("%s", "--uptrain needs --train TEXT (the text the variants are trained on)");
    if (o->train && !o->n_up)
        return usage("%s", "--train needs --uptrain LIST (how many steps to train each variant)");
    if (o->train && !o->tokenizer)
        return usage("%s", "--train needs --tokenizer (the text is tokenized as the model reads it)");
    return o->n_up ? uptrain_steps(o) : 0;
}

/* The candidates: given, or every divisor of the original kv_heads
 * (pooling merges heads; it cannot split them); and always the original,
 * the reference of KL. */
static int candidates(const Model *m, TuneOptions *o) {
    if (o->n_kv == 0)
        for (int k = (int)m->kv_heads - 1; k >= 1; k--)
            if (m->kv_heads % k == 0 && o->n_kv < MAX_LIST - 1)
                o->kv[o->n_kv++] = k;
    if (o->n_kv == MAX_LIST)
        o->n_kv--;
    o->kv[o->n_kv++] = (int)m->kv_heads;
    for (int i = 0; i < o->n_kv; i++) {
        int k = o->kv[i];
        if (m->heads % k || m->kv_heads % k) {
            fprintf(stderr, "gqac tune: error: --kv-heads %d: a variant's kv_heads must divide "
                    "heads (%lld) and the original kv_heads (%lld), whose heads it pools\n", k,
                    (long long)m->heads, (long long)m->kv_heads);
            return EXIT_USAGE;
        }
    }
    /* descending, without repeats: the original first */
    for (int i = 0; i < o->n_kv; i++)
        for (int j = i + 1; j < o->n_kv; j++)
            if (o->kv[j] > o->kv[i]) {
                int t = o->kv[i];
                o->kv[i] = o->kv[j], o->kv[j] = t;
            }
    int n = 0;
    for (int i = 0; i < o->n_kv; i++)
        if (!n || o->kv[n - 1] != o->kv[i])
            o->kv[n++] = o->kv[i];
    o->n_kv = n;
    return 0;
}

static int check_contexts(const Model *m, TuneOptions *o) {
    if (o->n_contexts == 0) {
        o->contexts[0] = (int)(m->context / 4 > 0 ? m->context / 4 : 1);
        o->contexts[1] = (int)m->context;
        o->n_contexts = o->contexts[0] == o->contexts[1] ? 1 : 2;
    }
    for (int i = 0; i < o->n_contexts; i++)
        if (o->contexts[i] > m->context || (i && o->contexts[i] <= o->contexts[i - 1])) {
            fprintf(stderr, "gqac tune: error: --context wants ascending lengths up to the "
                    "model's context (%lld); %d is not\n", (long long)m->context, o->contexts[i]);
            return EXIT_USAGE;
        }
    return 0;
}

/* ---- progress, on a terminal only ---- */

static void progress(int done, int total, const char *what) {
    if (!isatty(2))
        return;
    int width = 30, filled = total ? done * width / total : width;
    fprintf(stderr, "\r\033[Kgqac tune [%.*s%*s] %3d%% %s", filled,
            "##############################", width - filled, "", total ? done * 100 / total : 100,
            what);
    if (done == total)
        fputc('\n', stderr);
}

/* ---- the conversion ---- */

/* Each K and V projection head of the variant is the mean of the r
 * original heads it replaces (query heads j*G .. j*G + G - 1 read both,
 * so the groups stay aligned); biases alike; every other tensor is the
 * original's. */
void tune_convert(const Model *from, const float *src, const Model *to, float *dst) {
    tune_convert_init(from, src, to, dst, TUNE_INIT_MEAN, 0);
}

/* splitmix64 and Box-Muller, as gqac train --random: the same normals on
 * every host for a seed. */
static double normal(uint64_t *s) {
    double u1 = ((double)(gqr_data_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (double)(gqr_data_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* Head h's element e of a converted K or V tensor (or bias): the mean of
 * the r heads it replaces, the first of them, or random. */
static float kv_value(const float *src, uint64_t h, uint64_t e, uint64_t block, int64_t r, int init,
                      bool bias, uint64_t *rng) {
    if (init == TUNE_INIT_RANDOM)
        return bias ? 0.0f : (float)(0.02 * normal(rng));
    if (init == TUNE_INIT_FIRST)
        return src[h * (uint64_t)r * block + e];
    double sum = 0;
    for (int64_t k = 0; k < r; k++)
        sum += src[(h * (uint64_t)r + (uint64_t)k) * block + e];
    return (float)(sum / (double)r);
}

void tune_convert_init(const Model *from, const float *src, const Model *to, float *dst, int init,
                       uint64_t seed) {
    uint64_t rng = seed;
    Tensor a[IR_MAX_TENSORS], b[IR_MAX_TENSORS];
    uint64_t total;
    int n = ir_tensors(from, a, &total);
    ir_tensors(to, b, &total);
    int64_t r = from->kv_heads / to->kv_heads;
    for (int i = 0; i < n; i++) {
        const char *name = a[i].name;
        bool kv = !strcmp(name, "wk") || !strcmp(name, "wv") || !strcmp(name, "bk") ||
                  !strcmp(name, "bv");
        if (!kv || r == 1) {
            memcpy(dst + b[i].offset, src + a[i].offset, a[i].count * sizeof *dst);
            continue;
        }
        /* per layer, kv_heads blocks of `block` floats (head_dim rows) */
        uint64_t block = b[i].count / (uint64_t)to->layers / (uint64_t)to->kv_heads;
        bool bias = name[0] == 'b';
        for (uint64_t h = 0; h < (uint64_t)(to->layers * to->kv_heads); h++)
            for (uint64_t e = 0; e < block; e++)
                dst[b[i].offset + h * block + e] =
                    kv_value(src + a[i].offset, h, e, block, r, init, bias, &rng);
    }
}

/* ---- variants ---- */

static bool is_matrix(TensorKind k) {
    return k != TK_RMS_ATT && k != TK_RMS_FFN && k != TK_RMS_FINAL && k != TK_BQ && k != TK_BK &&
           k != TK_BV;
}

/* m at kv_heads kv with a cache of kv_type (or its own) and every matrix
 * of type (the dtype block's kinds and layers cleared; norms and biases
 * stay f32), or its own types. */
static Model typed_model(const Model *m, int kv, int type, int kv_type) {
    Model v = ir_with_kv_heads(m, kv);
    if (kv_type != TYPE_FILE)
        v.kv_type = (DType)kv_type;
    if (type == TYPE_FILE)
        return v;
    v.weight_type = (DType)type;
    for (int k = 0; k < TK_COUNT; k++)
        v.kind_set[k] = false, v.layer_types[k] = NULL;
    return v;
}

/* The first matrix whose rows are not whole blocks of t, or NULL. */
static const Slice *misfit(const Slice *sl, int64_t n, int t) {
    for (int64_t i = 0; i < n; i++)
        if (is_matrix(sl[i].kind) && sl[i].cols % (uint64_t)dtype_block((DType)t))
            return &sl[i];
    return NULL;
}

/* Each --types type must fit every matrix (sema's rule for the dtype
 * block); the message names the tensor and the types that do fit. */
static int check_types(const Model *m, const TuneOptions *o, Arena *a) {
    Slice *sl;
    uint64_t total;
    int64_t n = ir_slices(m, a, &sl, &total);
    for (int i = 0; i < o->n_types; i++) {
        const Slice *bad = o->types[i] == TYPE_FILE ? NULL : misfit(sl, n, o->types[i]);
        if (!bad)
            continue;
        char fit[128] = "";
        for (int t = 0; t < DT_COUNT; t++)
            if (!misfit(sl, n, t))
                snprintf(fit + strlen(fit), sizeof fit - strlen(fit), "%s%s", *fit ? ", " : "",
                         dtype_name((DType)t));
        fprintf(stderr, "gqac tune: error: --types %s: tensor '%s' (%s) has rows of %llu values, "
                "not whole blocks of %d; the types every matrix of the model can hold: %s\n",
                dtype_name((DType)o->types[i]), bad->name, ir_kind_key(bad->kind),
                (unsigned long long)bad->cols, dtype_block((DType)o->types[i]), fit);
        return EXIT_USAGE;
    }
    return 0;
}

/* q8_0 caches blocks of 32 along head_dim (sema's check_kv_type): on
 * another head_dim it is dropped from --kv-types with a note, not an
 * error, so one command line serves every model.  Pooling keeps head_dim,
 * so no variant could hold it.  Nothing left: the model's own cache. */
static void drop_kv_misfits(const Model *m, TuneOptions *o) {
    int n = 0;
    for (int i = 0; i < o->n_kv_types; i++) {
        if (o->kv_types[i] == DT_Q8_0 && m->head_dim % 32) {
            fprintf(stderr, "gqac tune: note: --kv-types q8_0 skipped: a q8_0 cache quantizes blocks "
                    "of 32 along head_dim, and head_dim is %lld\n", (long long)m->head_dim);
            continue;
        }
        o->kv_types[n++] = o->kv_types[i];
    }
    if (n == 0)
        o->kv_types[n++] = TYPE_FILE;
    o->n_kv_types = n;
}

/* The report's name of a model's weight types: the one type of every
 * matrix, or "mixed". */
static const char *type_label(const Model *m, Arena *a) {
    Slice *sl;
    uint64_t total;
    int64_t n = ir_slices(m, a, &sl, &total);
    int type = -1;
    for (int64_t i = 0; i < n; i++)
        if (is_matrix(sl[i].kind) && type != (int)sl[i].type)
            type = type < 0 ? (int)sl[i].type : DT_COUNT;
    return type < 0 || type == DT_COUNT ? "mixed" : dtype_name((DType)type);
}

/* t as v[*nv], unless a variant of the same kv_heads, types, cache,
 * init and uptraining is there already. */
static void add_variant(Variant *v, int *nv, Model t, int type, int init, long up, Arena *a) {
    const char *label = type_label(&t, a);
    for (int k = 0; k < *nv; k++)
        if (v[k].m.kv_heads == t.kv_heads && v[k].m.kv_type == t.kv_type &&
            !strcmp(v[k].label, label) && v[k].init == init && v[k].uptrain == up)
            return;
    v[(*nv)++] = (Variant){.m = t, .type = type, .label = label, .cache = dtype_name(t.kv_type),
                           .init = init, .uptrain = up};
}

/* kv_heads x types x cache types, the original (its kv_heads, its own
 * types and cache) first and every other variant once: a combination that
 * is the original's is its row.  A converted kv_heads comes once per
 * --init and --uptrain amount. */
static Variant *variants(const Model *m, const TuneOptions *o, int *nv, Arena *a) {
    int per_kv = o->n_types * o->n_kv_types, amounts = o->n_up ? o->n_uptrain : 1;
    int ways = o->n_inits * amounts;
    Variant *v = calloc((size_t)(o->n_kv * per_kv * ways + 1), sizeof *v);
    *nv = 0;
    for (int i = -1; v && i < o->n_kv; i++)
        for (int j = 0; j < (i < 0 ? 1 : per_kv); j++) {
            int kv = i < 0 ? (int)m->kv_heads : o->kv[i];
            int type = i < 0 ? TYPE_FILE : o->types[j / o->n_kv_types];
            int cache = i < 0 ? TYPE_FILE : o->kv_types[j % o->n_kv_types];
            bool converted = kv != m->kv_heads; /* each init and amount of uptraining */
            for (int w = 0; w < (converted ? ways : 1); w++)
                add_variant(v, nv, typed_model(m, kv, type, cache), type,
                            converted ? o->inits[w / amounts] : -1,
                            converted && o->n_up ? o->uptrain[w % amounts] : -1, a);
        }
    return v;
}

static bool compile_variant(Variant *v, const JitBackend *b) {
    char err[1024];
    v->jit = jit_compile(&v->m, b, &v->api, err, sizeof err);
    if (!v->jit)
        fprintf(stderr, "\ngqac tune: error: kv_heads %lld, weights %s, cache %s: %s\n",
                (long long)v->m.kv_heads, v->label, v->cache, err);
    return v->jit != NULL;
}

/* The original's weights as floats in its f32 layout (ir_tensors'), each
 * tensor loaded in its own type dequantized: what pooling works on. */
static float *original_floats(const Variant *o, const gqr_checkpoint *ck, Arena *a) {
    Model f = ir_with_f32(&o->m);
    Slice *sl;
    uint64_t total;
    int64_t n = ir_slices(&f, a, &sl, &total);
    float *w = n == (int64_t)o->api->n_tensors ? calloc(total / 4 + 1, sizeof *w) : NULL;
    for (int64_t i = 0; w && i < n; i++) {
        const gqa_tensor *t = &o->api->tensors[i];
        uint64_t count = (uint64_t)t->rows * (uint64_t)t->cols;
        float *dst = w + sl[i].offset / 4;
        if (t->kind != (int)sl[i].kind || t->layer != (int)sl[i].layer) {
            free(w); /* the generated table is ir_slices': never */
            return NULL;
        }
        if (t->dtype == GQA_DT_F32)
            memcpy(dst, ck->tensors[i], count * sizeof *dst);
        else
            gqr_q_dequantize_row(t->dtype, ck->tensors[i], count, dst);
    }
    if (!w)
        fprintf(stderr, "gqac tune: error: out of memory for the weights as floats\n");
    return w;
}

/* to's floats (its f32 layout) stored in to's types into out. */
static int store(const Model *to, const struct gqa_model_api *api, const float *pooled,
                 unsigned char *out, Arena *a, char *err, size_t errlen) {
    Model t = ir_with_f32(to);
    Slice *sl;
    uint64_t total;
    int64_t n = ir_slices(&t, a, &sl, &total);
    if (n != (int64_t)api->n_tensors) {
        snprintf(err, errlen, "the code's table of tensors is not the model's"); /* never */
        return -1;
    }
    memset(out, 0, api->weight_bytes);
    for (int64_t i = 0; i < n; i++) {
        const gqa_tensor *e = &api->tensors[i];
        const float *x = pooled + sl[i].offset / 4;
        uint64_t count = (uint64_t)e->rows * (uint64_t)e->cols;
        char why[256];
        if (e->dtype == GQA_DT_F32) {
            memcpy(out + e->offset, x, count * sizeof *x);
        } else if (gqr_q_quantize_row(e->dtype, x, count, out + e->offset, why, sizeof why)) {
            snprintf(err, errlen, "tensor '%s' of layer %d: %s", e->name, e->layer, why);
            return -1;
        }
    }
    return 0;
}

int tune_pack(const Model *from, const float *src, const Model *to, const struct gqa_model_api *api,
              float *pooled, unsigned char *out, Arena *a, char *err, size_t errlen) {
    Model f = ir_with_f32(from), t = ir_with_f32(to);
    tune_convert(&f, src, &t, pooled);
    return store(to, api, pooled, out, a, err, errlen);
}

/* ---- uptraining: gqac train's loop on the converted f32 weights ---- */

/* The training text, and one f32 training step compiled per kv_heads. */
typedef struct {
    gqr_tokenizer *tok;
    gqr_data data;
    struct {
        int kv;
        JitModel *jit;
        const gqa_model_api *api;
        const gqa_train_api *train;
    } code[MAX_LIST];
    int n_code;
} Uptrain;

static void uptrain_free(Uptrain *u) {
    for (int i = 0; i < u->n_code; i++)
        jit_free(u->code[i].jit);
    gqr_data_free(&u->data);
    gqr_tokenizer_free(u->tok);
}

/* The text tokenized, long enough for a window of --seq (the model's
 * context by default). */
static int uptrain_load(const Model *m, TuneOptions *o, Uptrain *u) {
    char err[1024];
    if (o->seq == 0)
        o->seq = (int)m->context;
    if (o->seq > m->context) {
        fprintf(stderr, "gqac tune: error: --seq %d is past the model's context %lld\n", o->seq,
                (long long)m->context);
        return EXIT_USAGE;
    }
    if (gqr_tokenizer_load(&u->tok, o->tokenizer, 0, err, sizeof err) ||
        gqr_data_load(&u->data, o->train, u->tok, (int)m->vocab, err, sizeof err) ||
        gqr_data_check(&u->data, o->train, o->seq, err, sizeof err)) {
        fprintf(stderr, "gqac tune: error: --train: %s\n", err);
        return EXIT_INPUT;
    }
    return 0;
}

/* The training step of v's kv_heads in f32, compiled on first use. */
static int uptrain_code(Uptrain *u, const Variant *v, const TuneOptions *o) {
    for (int i = 0; i < u->n_code; i++)
        if (u->code[i].kv == v->m.kv_heads)
            return i;
    char err[1024];
    Model f = ir_with_f32(&v->m);
    int i = u->n_code;
    u->code[i].kv = (int)v->m.kv_heads;
    u->code[i].jit = jit_compile_train(&f, jit_backend(o->jit), &u->code[i].api, &u->code[i].train,
                                       err, sizeof err);
    if (!u->code[i].jit) {
        fprintf(stderr, "\ngqac tune: error: kv_heads %lld: --uptrain: %s\n",
                (long long)v->m.kv_heads, err);
        return -1;
    }
    return u->n_code++;
}

/* The bar while a variant trains, on a terminal. */
typedef struct {
    const Variant *v;
    char what[128];
} Training;

static int on_step(void *user, const gqr_train_row *row) {
    Training *t = user;
    progress((int)row->step, (int)t->v->uptrain, t->what);
    return 0;
}

/* The converted floats p (n floats, the f32 layout) trained v->uptrain
 * steps with gqac train's recipe, the warmup its 100 of 1,408 steps'
 * share; the training text's loss before and after said on stderr. */
static bool uptrain(Variant *v, const TuneOptions *o, Uptrain *u, float *p, uint64_t n) {
    int c = uptrain_code(u, v, o);
    if (c < 0)
        return false;
    char err[1024];
    gqr_train_opts t;
    gqr_train_defaults(&t);
    t.steps = v->uptrain, t.batch = o->batch, t.seq = o->seq, t.lr = o->lr;
    t.seed = (uint64_t)o->seed, t.threads = o->threads, t.eval_windows = 64;
    t.warmup = lround(0.071 * (double)v->uptrain) > 1 ? lround(0.071 * (double)v->uptrain) : 1;
    gqr_train *tr = NULL;
    double before = NAN, after = NAN;
    Training bar = {v, ""};
    snprintf(bar.what, sizeof bar.what, "kv_heads %lld, init %s: uptraining %ld steps",
             (long long)v->m.kv_heads, init_names[v->init], v->uptrain);
    bool ok = u->code[c].train->n_params <= n &&
              !gqr_train_new(&tr, u->code[c].api, u->code[c].train, &t, p, err, sizeof err) &&
              !gqr_train_eval(tr, &u->data, &before, err, sizeof err) &&
              !gqr_train_run(tr, &u->data, NULL, v->uptrain, on_step, &bar, err, sizeof err) &&
              !gqr_train_eval(tr, &u->data, &after, err, sizeof err);
    if (ok) {
        memcpy(p, gqr_train_params(tr), u->code[c].train->n_params * sizeof *p);
        fprintf(stderr, "%sgqac tune: kv_heads %lld, init %s: uptrained %ld steps, training text "
                "loss %.4f -> %.4f\n", isatty(2) ? "\r\033[K" : "", (long long)v->m.kv_heads, init_names[v->init], v->uptrain,
                before, after);
    } else {
        fprintf(stderr, "\ngqac tune: error: kv_heads %lld, init %s, --uptrain %ld: %s\n",
                (long long)v->m.kv_heads, init_names[v->init], v->uptrain,
                u->code[c].train->n_params > n ? "the training code's parameters are not the "
                                                "model's f32 weights" : err);
    }
    gqr_train_free(tr);
    return ok;
}

/* v's packed weights from the original's floats: converted as its init
 * says, uptrained when asked, stored in its types. */
static bool pack_variant(Variant *v, const Model *orig, const TuneOptions *o, Uptrain *u,
                         const float *floats, float *pooled, uint64_t n_pooled, Arena *a) {
    char err[512];
    v->packed = v->weights = gqr_pages_alloc(v->api->weight_bytes);
    if (!v->weights) {
        fprintf(stderr, "gqac tune: error: out of memory for the weights\n");
        return false;
    }
    Model f = ir_with_f32(orig), t = ir_with_f32(&v->m);
    memset(pooled, 0, n_pooled * sizeof *pooled);
    tune_convert_init(&f, floats, &t, pooled, v->init < 0 ? TUNE_INIT_MEAN : v->init,
                      (uint64_t)o->seed);
    if (v->uptrain > 0 && !uptrain(v, o, u, pooled, n_pooled))
        return false;
    if (store(&v->m, v->api, pooled, v->weights, a, err, sizeof err)) {
        fprintf(stderr, "gqac tune: error: kv_heads %lld, weights %s, cache %s: %s\n",
                (long long)v->m.kv_heads, v->label, v->cache, err);
        return false;
    }
    return true;
}

/* An instance over the variant's packed weights. */
static bool set_up_variant(Variant *v, int threads) {
    v->arena = gqr_arena_alloc(v->api);
    if (!v->arena) {
        fprintf(stderr, "gqac tune: error: kv_heads %lld: out of memory\n", (long long)v->m.kv_heads);
        return false;
    }
    if (v->api->init(&v->s, v->arena, v->api->arena_bytes, v->packed, v->api->weight_bytes)) {
        fprintf(stderr, "gqac tune: error: kv_heads %lld, weights %s, cache %s: init failed\n",
                (long long)v->m.kv_heads, v->label, v->cache);
        return false;
    }
    v->api->set_threads(v->s, threads);
    return true;
}

static void free_variant(Variant *v) {
    jit_free(v->jit);
    free(v->weights);
    gqr_arena_free(v->arena);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One decode step with context - 1 positions cached, in ms: seek says
 * they are there (their values do not change the time). */
static double step_ms(Variant *v, int context, float *logits) {
    v->api->seek(v->s, context - 1);
    double t0 = now_seconds();
    v->api->forward(v->s, 1, context - 1, logits);
    return (now_seconds() - t0) * 1e3;
}

/* The median step of each variant at each context into ms[variant *
 * n_contexts + c].  Rounds visit every variant in turn, so a machine that
 * drifts (other tenants, clocks) drifts under all of them alike; the
 * first two rounds warm the caches and are dropped. */
static bool time_all(Variant *v, int nv, const TuneOptions *o, double *ms, float *logits) {
    int rounds = o->runs + 2;
    double *t = malloc(sizeof *t * (size_t)(nv * rounds));
    for (int c = 0; t && c < o->n_contexts; c++) {
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < nv; i++)
                t[i * rounds + r] = step_ms(&v[i], o->contexts[c], logits);
        for (int i = 0; i < nv; i++) {
            qsort(t + i * rounds + 2, (size_t)o->runs, sizeof *t, by_value);
            ms[i * o->n_contexts + c] = t[i * rounds + 2 + o->runs / 2];
        }
        progress(c + 1, o->n_contexts, "timing");
    }
    free(t);
    return t != NULL;
}

/* ---- quality ---- */

static void log_softmax(const float *x, int n, double *out) {
    double max = x[0], sum = 0;
    for (int i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    for (int i = 0; i < n; i++)
        sum += exp((double)x[i] - max);
    double log_sum = max + log(sum);
    for (int i = 0; i < n; i++)
        out[i] = (double)x[i] - log_sum;
}

/* The eval text's ids, at most max of them, or NULL (said why). */
static int *eval_ids(const TuneOptions *o, int vocab, int *n, int *bos) {
    char err[512];
    gqr_tokenizer *tok = NULL;
    FILE *f = fopen(o->eval, "rb");
    char *text = NULL;
    size_t len = 0;
    int *ids = NULL;
    if (!f || fseek(f, 0, SEEK_END) || (long)(len = (size_t)ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
        !(text = malloc(len + 1)) || fread(text, 1, len, f) != len) {
        fprintf(stderr, "gqac tune: error: cannot read %s: %s\n", o->eval, strerror(errno));
    } else if (gqr_tokenizer_load(&tok, o->tokenizer, vocab, err, sizeof err) ||
               (gqr_tokenizer_encode(tok, text, len, 0, NULL, 0, n, err, sizeof err) && *n == 0) ||
               !(ids = malloc(sizeof *ids * (size_t)(*n ? *n : 1))) ||
               gqr_tokenizer_encode(tok, text, len, 0, ids, *n, n, err, sizeof err)) {
        fprintf(stderr, "gqac tune: error: %s\n", ids || tok ? err : "out of memory");
        free(ids);
        ids = NULL;
    } else {
        *n = *n < o->eval_tokens ? *n : o->eval_tokens;
        *bos = gqr_tokenizer_bos(tok);
    }
    if (f)
        fclose(f);
    free(text);
    gqr_tokenizer_free(tok);
    return ids;
}

/* Teacher-forced: windows of the context, each after BOS, run through
 * every variant in step; variant 0 (the original) is the reference of KL. */
static bool evaluate(Variant *v, int nv, const int *ids, int n, int bos, TuneRow *rows) {
    int V = v[0].api->shape.vocab_size, ctx = v[0].api->shape.seq_len;
    float *logits = malloc(sizeof *logits * (size_t)V);
    double *p = malloc(sizeof *p * (size_t)V), *q = malloc(sizeof *q * (size_t)V);
    int *window = malloc(sizeof *window * (size_t)ctx);
    bool ok = logits && p && q && window;
    long scored = 0;
    for (int w = 0, len; ok && w < n; w += len) {
        int L = 0;
        if (bos >= 0)
            window[L++] = bos;
        for (len = 0; L < ctx && w + len < n; len++)
            window[L++] = ids[w + len];
        if (len == 0)
            break; /* a context of 1: nothing to predict */
        for (int i = 0; i < nv; i++)
            v[i].api->reset(v[i].s);
        for (int t = 0; t + 1 < L && ok; t++, scored++)
            for (int i = 0; i < nv && ok; i++) {
                ok = v[i].api->forward(v[i].s, window[t], t, logits) == GQA_OK;
                log_softmax(logits, V, i ? q : p);
                rows[i].ppl -= (i ? q : p)[window[t + 1]];
                for (int k = 0; i && k < V; k++)
                    rows[i].kl += exp(p[k]) * (p[k] - q[k]);
            }
        progress(w + len, n, "evaluating");
    }
    for (int i = 0; i < nv; i++) {
        rows[i].ppl = scored ? exp(rows[i].ppl / (double)scored) : NAN;
        rows[i].kl = scored ? rows[i].kl / (double)scored : NAN;
    }
    free(logits), free(p), free(q), free(window);
    return ok;
}

/* ---- the command ---- */

/* DIR/NAME-kvN-TYPE.bin: the llama2.c header, then the packed weights in
 * their types, as `gqac weights` writes a typed model. */
static bool write_bin(const Variant *v, FILE *f) {
    const Model *m = &v->m;
    int64_t h[7] = {m->dim, m->hidden, m->layers, m->heads, m->kv_heads,
                    m->tied ? m->vocab : -m->vocab, m->context};
    unsigned char head[GQR_HEADER_BYTES];
    for (int i = 0; i < 7; i++)
        gqr_tf_put32(head + 4 * i, (uint32_t)h[i]);
    return fwrite(head, 1, sizeof head, f) == sizeof head &&
           fwrite(v->packed, 1, v->api->weight_bytes, f) == v->api->weight_bytes;
}

/* The recommended variant as DIR/NAME-kvN-TYPE.gqa and .bin, for gqac -o. */
static int emit(const TuneOptions *o, const TuneReport *r, const Variant *v, Arena *a) {
    if (r->recommended < 0) {
        fprintf(stderr, "gqac tune: error: --emit: nothing to emit without a recommendation "
                        "(give --eval, --tokenizer and --max-ppl-increase)\n");
        return EXIT_INPUT;
    }
    const Variant *best = &v[r->recommended];
    /* an f32 cache, the default, keeps the name it had before caches had types */
    char *stem = arena_printf(a, "%s/%s-kv%lld-%s%s%s", o->emit, cname_mangle(a, best->m.name),
                              (long long)best->m.kv_heads, best->label,
                              best->m.kv_type == DT_F32 ? "" : "-cache-",
                              best->m.kv_type == DT_F32 ? "" : best->cache);
    char *gqa = arena_printf(a, "%s.gqa", stem), *bin = arena_printf(a, "%s.bin", stem);
    const char *how = best->init < 0 ? "the original's"
                      : arena_printf(a, "K and V heads %s%s",
                                     best->init == TUNE_INIT_MEAN    ? "mean-pooled"
                                     : best->init == TUNE_INIT_FIRST ? "of each group's first head"
                                                                     : "random",
                                     best->uptrain > 0 ? arena_printf(a, ", then uptrained %ld steps",
                                                                      best->uptrain)
                                                       : "");
    const char *comments[] = {arena_printf(a, "kv_heads %lld, weights %s, cache %s, of the model in "
                                              "%s, chosen by gqac tune; weights: %s, then stored "
                                              "in their types",
                                           (long long)best->m.kv_heads, best->label, best->cache,
                                           o->weights, how),
                              NULL};
    Buf b = {0};
    gqa_source(&b, &best->m, comments);
    char err[1024];
    struct stat st;
    bool made = stat(o->emit, &st) != 0, ok = cache_make_dirs(arena_printf(a, "%s", o->emit));
    gqr_out out[2] = {{0}, {0}};
    if (!ok)
        snprintf(err, sizeof err, "cannot make %s: %s", o->emit, strerror(errno));
    ok = ok && !gqr_out_open(&out[0], gqa, err, sizeof err);
    if (ok && !(ok = fwrite(b.data, 1, b.len, out[0].f) == b.len))
        snprintf(err, sizeof err, "%s: cannot write: %s", gqa, strerror(errno));
    ok = ok && !gqr_out_open(&out[1], bin, err, sizeof err);
    if (ok && !(ok = write_bin(best, out[1].f)))
        snprintf(err, sizeof err, "%s: cannot write: %s", bin, strerror(errno));
    /* both written whole before either is renamed into place; a failure
     * leaves neither (nor a folder made for them) */
    ok = ok && !gqr_out_commit(&out[1], err, sizeof err) && !gqr_out_commit(&out[0], err, sizeof err);
    buf_free(&b);
    if (!ok) {
        gqr_out_abort(&out[0]), gqr_out_abort(&out[1]);
        if (made)
            rmdir(o->emit);
        fprintf(stderr, "gqac tune: error: --emit: %s\n", err);
        return EXIT_INPUT;
    }
    printf("wrote %s and %s\n", gqa, bin);
    return 0;
}

static int write_reports(const TuneOptions *o, const TuneReport *r, Arena *a) {
    char err[512];
    const char *json = arena_printf(a, "%s.json", o->out), *csv = arena_printf(a, "%s.csv", o->out),
               *svg = arena_printf(a, "%s.svg", o->out);
    if (report_json(r, json, err, sizeof err) || report_csv(r, csv, err, sizeof err) ||
        report_svg(r, svg, err, sizeof err)) {
        fprintf(stderr, "gqac tune: error: %s\n", err);
        return EXIT_INPUT;
    }
    printf("wrote %s, %s and %s\n", json, csv, svg);
    if (o->n_up && o->eval) {
        const char *up = arena_printf(a, "%s-uptrain.svg", o->out);
        if (report_uptrain_svg(r, up, err, sizeof err)) {
            fprintf(stderr, "gqac tune: error: %s\n", err);
            return EXIT_INPUT;
        }
        printf("wrote %s\n", up);
    }
    return 0;
}

/* K and V of one position over every layer, in the cache's type (a
 * q8_0 row: head_dim / 32 blocks of 34 bytes). */
static double kv_per_token(const Model *m) {
    return 2.0 * (double)m->layers * (double)m->kv_heads *
           (double)ir_type_bytes(m->kv_type, 1, (uint64_t)m->head_dim);
}

/* The cached positions one decoded token reads at context ctx, summed
 * over layers: a windowed layer sees at most its window and sinks, so a
 * ring's bytes are not charged for positions it no longer holds. */
static double positions_read(const Model *m, int ctx) {
    int64_t global = ir_global_layers(m), seen = ctx;
    if (m->window > 0 && ctx > m->window)
        seen = m->window + (m->sinks < ctx - m->window ? m->sinks : ctx - m->window);
    return (double)global * ctx + (double)(m->layers - global) * (double)seen;
}

/* Sizes from the code's table and allocations: weights in their types
 * (tensors' bytes), the KV cache in its type (the code's own size at full
 * context, rings included), the packed buffer and the arena as allocated. */
static void describe(const Variant *v, TuneRow *row, const TuneOptions *o, double *ms) {
    const gqa_model_api *api = v->api;
    double weights = 0;
    for (size_t i = 0; i < api->n_tensors; i++)
        weights += (double)api->tensors[i].bytes;
    row->kv_heads = (int)v->m.kv_heads;
    row->weights = v->label;
    row->kv_cache = v->cache;
    row->ms_per_token = ms;
    row->kv_bytes_per_token = kv_per_token(&v->m);
    row->kv_bytes_full = (double)api->kv_cache_bytes;
    row->weight_bytes = weights;
    row->bytes_per_token = weights + row->kv_bytes_per_token / (double)v->m.layers *
                                         positions_read(&v->m, o->contexts[o->n_contexts - 1]);
    row->memory_bytes = (double)api->weight_bytes + (double)api->arena_bytes;
    row->ppl = row->kl = o->eval ? 0 : NAN;
    row->init = v->init >= 0 ? init_names[v->init] : NULL;
    row->uptrain_steps = v->uptrain;
}

/* The file loaded for the original (v[0]: its own code checks it; a
 * quantized GGUF under an f32 model is dequantized), its floats, and each
 * variant pooled and stored in its types from them. */
static int load_all(const Model *m, const TuneOptions *o, Variant *v, int nv, gqr_checkpoint *ck,
                    Uptrain *u, Arena *a) {
    char err[1024];
    if (gqr_checkpoint_load(ck, o->weights, v[0].api, GQR_LOAD_MMAP | GQR_LOAD_DEQUANTIZE, err,
                            sizeof err) ||
        gqr_checkpoint_pack(ck, v[0].api, err, sizeof err)) {
        fprintf(stderr, "gqac tune: error: %s\n", err);
        return EXIT_INPUT;
    }
    v[0].packed = ck->weights;
    if (nv == 1)
        return 0;
    float *floats = original_floats(&v[0], ck, a), *pooled = NULL;
    uint64_t total;
    Tensor t[IR_MAX_TENSORS];
    ir_tensors(m, t, &total);
    if (floats && !(pooled = malloc(sizeof *pooled * (size_t)(total + 1))))
        fprintf(stderr, "gqac tune: error: out of memory for the pooled weights\n");
    int rc = floats && pooled ? 0 : EXIT_INPUT;
    for (int i = 1; i < nv && !rc; i++) {
        progress(i, nv, arena_printf(a, "kv_heads %lld, weights %s, cache %s: converting",
                                     (long long)v[i].m.kv_heads, v[i].label, v[i].cache));
        rc = pack_variant(&v[i], m, o, u, floats, pooled, total + 1, a) ? 0 : EXIT_INPUT;
    }
    free(floats), free(pooled);
    return rc;
}

/* v[0] is the original, the reference of KL. */
/* ck: the file, left open for the caller to close after --emit, since
 * the original's weights are its bytes. */
static int tune(const Model *m, TuneOptions *o, Variant *v, int nv, TuneRow *rows, gqr_checkpoint *ck,
                Arena *a) {
    const JitBackend *b = jit_backend(o->jit);
    for (int i = 0; i < nv; i++) {
        progress(i, nv, arena_printf(a, "kv_heads %lld, weights %s, cache %s: compiling (%s)",
                                     (long long)v[i].m.kv_heads, v[i].label, v[i].cache, b->name));
        if (!compile_variant(&v[i], b))
            return EXIT_INPUT;
    }
    progress(nv, nv, "compiled");
    Uptrain u;
    memset(&u, 0, sizeof u);
    int rc = o->n_up ? uptrain_load(m, o, &u) : 0;
    rc = rc ? rc : load_all(m, o, v, nv, ck, &u, a);
    uptrain_free(&u);
    float *logits = malloc(sizeof *logits * (size_t)m->vocab);
    double *ms = arena_alloc(a, sizeof *ms * (size_t)(nv * o->n_contexts));
    rc = rc ? rc : logits ? 0 : EXIT_INPUT;
    for (int i = 0; i < nv && !rc; i++) {
        if (!set_up_variant(&v[i], o->threads))
            rc = EXIT_INPUT;
        else
            describe(&v[i], &rows[i], o, ms + i * o->n_contexts);
    }
    rows[0].original = true;
    if (!rc && !time_all(v, nv, o, ms, logits))
        rc = EXIT_INPUT;
    free(logits);
    if (!rc && o->eval) {
        int n = 0, bos = -1, *ids = eval_ids(o, (int)m->vocab, &n, &bos);
        rc = ids && evaluate(v, nv, ids, n, bos, rows) ? 0 : EXIT_INPUT;
        free(ids);
    }
    return rc;
}

static int report(const Model *m, const TuneOptions *o, const Variant *v, int nv, TuneRow *rows,
                  Arena *a) {
    TuneReport r = {m->name, o->jit, o->eval, (int)m->heads, (int)m->kv_heads, o->n_contexts,
                    o->contexts, nv, rows, o->max_ppl_increase, -1, o->init_given || o->n_up};
    report_mark(&r);
    report_table(&r, stdout);
    size_t rss, peak;
    if (!gqr_resident_bytes(&rss, &peak)) /* measured, where /proc says it */
        printf("measured: this run's peak resident memory %.1f MiB (every variant's weights and "
               "instance at once, the original's floats too)\n", (double)peak / (1 << 20));
    int rc = write_reports(o, &r, a);
    return !rc && o->emit ? emit(o, &r, v, a) : rc;
}

int tune_command(const Model *m, int argc, char **argv, Arena *a) {
    TuneOptions o;
    int nv = 0, rc = parse(argc, argv, &o);
    rc = rc ? rc : candidates(m, &o);
    rc = rc ? rc : check_contexts(m, &o);
    rc = rc ? rc : check_types(m, &o, a);
    if (rc)
        return rc;
    drop_kv_misfits(m, &o);
    Variant *v = variants(m, &o, &nv, a);
    TuneRow *rows = calloc((size_t)nv + 1, sizeof *rows);
    gqr_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    rc = v && rows ? tune(m, &o, v, nv, rows, &ck, a) : EXIT_INPUT;
    if (!rc)
        rc = report(m, &o, v, nv, rows, a); /* --emit of the original writes ck's bytes */
    gqr_checkpoint_close(&ck);
    for (int i = 0; v && i < nv; i++)
        free_variant(&v[i]);
    free(v), free(rows);
    return rc;
}
