/*
 * cli.c: the standalone program, so a generated model's main() is one line.
 * Text (or, without a tokenizer, token ids) goes to stdout as it comes,
 * everything else to stderr.  Exit 2 is a misuse of the command line (fix
 * the command), 1 bad input (fix the files, prompt or ids).
 */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gqr.h"
#include "tokenizer.h"

#define PROG "gqac-run"
#define MIB (1024.0 * 1024.0)

/* A rank other than 0 of a tensor-parallel run: its usage messages, text
 * and statistics would repeat rank 0's, so it prints only its errors. */
static int quiet;

typedef struct options {
    const char *weights;
    const char *tokenizer;  /* tokenizer.bin or tokenizer.json; GGUF weights carry one */
    const char *prompt;     /* -p: text, encoded with BOS */
    const char *tokens;     /* --tokens: the prompt as ids */
    int n_generate;
    float temperature, top_p;
    unsigned long long seed;
    int seed_given;
    int threads;            /* -1: leave the model's default */
    int load_flags;
} options;

/* What a run holds, released in one place whatever the exit path. */
typedef struct run {
    gqr_checkpoint ck;
    gqr_tokenizer *tok;     /* NULL: ids in and out */
    int prev;               /* the token before the one being printed */
    void *arena;
    gqa_state *state;
    gqr_sampler sampler;
    int *prompt;
    int n_prompt;
    int ranks;              /* a tensor-parallel run: its ranks, */
    double *held;           /* and every rank's weight and resident bytes, or NULL */
} run;

static void usage(FILE *f, const char *argv0) {
    fprintf(f,
            "usage: %s --weights FILE [options]\n"
            "  --weights FILE     weights for this model: llama2.c .bin, GGUF, .safetensors or\n"
            "                     model.safetensors.index.json (required unless the weights\n"
            "                     were compiled in with gqac --embed-weights)\n"
            "  --tokenizer FILE   llama2.c tokenizer.bin or Hugging Face tokenizer.json\n"
            "                     (default: the one in a GGUF file; none: ids in and out)\n"
            "  -p TEXT            prompt text (needs a tokenizer); BOS is put first\n"
            "  -n N               tokens to generate (default 32; stops at EOS or the context,\n"
            "                     past it where every layer has a sliding window)\n"
            "  --temp T           temperature, 0 = greedy (default 1.0)\n"
            "  --top-p P          nucleus sampling mass in (0, 1] (default 0.9)\n"
            "  --seed S           random seed (default: from the clock, printed)\n"
            "  --threads N        forward threads, 0 = OpenMP default\n"
            "  --tokens I,J,...   prompt as token ids (default: BOS, or 1 without a tokenizer)\n"
            "  --hugepages        read weights into huge-page memory instead of mmap\n"
            "  --no-hugepages     mmap the weights (default)\n"
            "  -h, --help         this help\n",
            argv0);
}

static int usage_error(const char *fmt, const char *arg) {
    if (quiet)
        return 2;
    fprintf(stderr, PROG ": error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" PROG " --help'.\n");
    return 2;
}

static int input_error(const char *msg) {
    fprintf(stderr, PROG ": error: %s\n", msg);
    return 1;
}

/* A message into err; -1 for the caller to return. */
static int say(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int parse_seed(const char *s, unsigned long long *out) {
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9') /* strtoull would take "-1" as a huge seed */
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

int gqr_flag_takes_value(const char *flag) {
    static const char *const flags[] = {"--weights", "--tokens", "-n", "--temp", "--top-p",
                                        "--seed", "--threads", "--tokenizer", "-p"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strcmp(flag, flags[i]))
            return 1;
    return 0;
}

/* One flag that takes_value() and its value; 0 or an exit status. */
static int parse_flag(options *o, const char *flag, const char *val) {
    long l;
    double d;
    if (!strcmp(flag, "--weights"))
        o->weights = val;
    else if (!strcmp(flag, "--tokenizer"))
        o->tokenizer = val;
    else if (!strcmp(flag, "-p"))
        o->prompt = val;
    else if (!strcmp(flag, "--tokens"))
        o->tokens = val;
    else if (!strcmp(flag, "-n")) {
        if (parse_long(val, 0, INT_MAX, &l))
            return usage_error("-n wants a whole number >= 0, not '%s'", val);
        o->n_generate = (int)l;
    } else if (!strcmp(flag, "--temp")) {
        /* Checked as the float the sampler gets: 1e39 would be infinite. */
        if (parse_double(val, &d) || d < 0 || d > FLT_MAX)
            return usage_error("--temp wants a number in [0, 3.4e38] (0: greedy), not '%s'", val);
        o->temperature = (float)d;
    } else if (!strcmp(flag, "--top-p")) {
        /* ... and 1e-50 would round to 0. */
        if (parse_double(val, &d) || !(d > 0 && d <= 1) || !((float)d > 0))
            return usage_error("--top-p wants a number in (0, 1] (at least 1.4e-45), not '%s'",
                               val);
        o->top_p = (float)d;
    } else if (!strcmp(flag, "--seed")) {
        if (parse_seed(val, &o->seed))
            return usage_error("--seed wants a whole number >= 0, not '%s'", val);
        o->seed_given = 1;
    } else if (!strcmp(flag, "--threads")) {
        if (parse_long(val, 0, 4096, &l))
            return usage_error("--threads wants a whole number in [0, 4096], not '%s'", val);
        o->threads = (int)l;
    } else
        return usage_error("unknown option '%s'", flag);
    return 0;
}

/* 0 to run, -1 after --help, else the exit status of a usage error. */
static int parse_args(options *o, int argc, char **argv) {
    *o = (options){.n_generate = 32, .temperature = 1.0f, .top_p = 0.9f,
                   .threads = -1, .load_flags = GQR_LOAD_MMAP};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (!quiet)
                usage(stdout, argv[0]);
            return -1;
        } else if (!strcmp(a, "--hugepages")) {
            o->load_flags = GQR_LOAD_READ_HUGEPAGES;
        } else if (!strcmp(a, "--no-hugepages")) {
            o->load_flags = GQR_LOAD_MMAP;
        } else if (a[0] != '-') {
            return usage_error("unexpected argument '%s'", a);
        } else if (!gqr_flag_takes_value(a)) {
            return usage_error("unknown option '%s'", a);
        } else if (i + 1 >= argc) {
            return usage_error("%s needs a value", a);
        } else {
            int rc = parse_flag(o, a, argv[++i]);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* "1,15043,3186" into ids in [0, vocab); 0, or -1 with a message. */
static int parse_tokens(const char *list, int vocab, run *r, char *err, size_t errlen) {
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    r->prompt = malloc(n * sizeof *r->prompt);
    if (!r->prompt)
        return say(err, errlen, "out of memory");
    const char *p = list;
    for (r->n_prompt = 0; r->n_prompt < (int)n; r->n_prompt++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        int starts_ok = isdigit((unsigned char)p[0]) ||
                        (p[0] == '-' && isdigit((unsigned char)p[1]));
        if (!starts_ok || errno || (*end && *end != ','))
            return say(err, errlen,
                       "--tokens: '%s' is not a comma-separated list of token ids", list);
        if (v < 0 || v >= vocab)
            return say(err, errlen, "--tokens: token %ld is outside [0, %d)", v, vocab);
        r->prompt[r->n_prompt] = (int)v;
        p = end + (*end == ',');
    }
    return 0;
}

/* max_positions is seq_len unless every layer has a window, and then
 * beyond any prompt an int can count. */
static int fits(const gqa_model_api *m, const run *r, char *err, size_t errlen) {
    if (r->n_prompt > m->shape.max_positions)
        return say(err, errlen, "the prompt's %d tokens do not fit in seq_len %d", r->n_prompt,
                   m->shape.max_positions);
    return 0;
}

/* --tokenizer FILE, else the vocabulary of GGUF weights if they carry
 * one, else none (ids in and out). */
static int load_tokenizer(const gqa_model_api *m, const options *o, run *r, char *err,
                          size_t errlen) {
    if (o->tokenizer)
        return gqr_tokenizer_load(&r->tok, o->tokenizer, gqr_vocab_size(m), err, errlen);
    if (o->weights && r->ck.format == GQR_FORMAT_GGUF)
        return gqr_gguf_tokenizer(&r->tok, o->weights, gqr_vocab_size(m), err, errlen);
    return 0;
}

/* -p's text through the tokenizer, BOS first. */
static int encode_prompt(const char *text, run *r, char *err, size_t errlen) {
    int n = 0;
    size_t len = strlen(text);
    gqr_tokenizer_encode(r->tok, text, len, 1, NULL, 0, &n, NULL, 0);
    r->prompt = malloc(sizeof *r->prompt * (size_t)(n > 0 ? n : 1));
    if (!r->prompt)
        return say(err, errlen, "out of memory");
    if (gqr_tokenizer_encode(r->tok, text, len, 1, r->prompt, n, &r->n_prompt, err, errlen))
        return -1;
    return r->n_prompt > 0 ? 0 : say(err, errlen, "-p: the prompt encodes to no tokens");
}

/* The prompt as ids: -p's text, --tokens' ids, or BOS alone. */
static int get_prompt(const gqa_model_api *m, const options *o, run *r, char *err,
                      size_t errlen) {
    char bos[16] = "1";
    if (o->prompt && o->tokens)
        return say(err, errlen, "-p and --tokens both give the prompt: choose one");
    if (o->prompt && !r->tok && !o->tokenizer && r->ck.format == GQR_FORMAT_GGUF)
        return say(err, errlen, "-p needs a tokenizer: %s has none; give --tokenizer FILE",
                   o->weights);
    if (o->prompt && !r->tok)
        return say(err, errlen, "-p needs a tokenizer: give --tokenizer FILE (or GGUF weights)");
    if (o->prompt)
        return encode_prompt(o->prompt, r, err, errlen) ? -1 : fits(m, r, err, errlen);
    if (r->tok && gqr_tokenizer_bos(r->tok) >= 0)
        snprintf(bos, sizeof bos, "%d", gqr_tokenizer_bos(r->tok));
    if (parse_tokens(o->tokens ? o->tokens : bos, gqr_vocab_size(m), r, err, errlen))
        return -1;
    return fits(m, r, err, errlen);
}


/* Weights from --weights, or else the ones compiled into the program. */
static int start_instance(const gqa_model_api *m, const options *o, run *r,
                          const gqr_ranks *rk, char *err, size_t errlen) {
    if (o->weights && gqr_checkpoint_open_shard(&r->ck, o->weights, m, o->load_flags, err, errlen))
        return -1;
    r->arena = gqr_arena_alloc(m);
    if (!r->arena)
        return say(err, errlen, "cannot allocate %zu bytes for the model", m->arena_bytes);
    int rc = o->weights ? m->init_tensors(&r->state, r->arena, m->arena_bytes, r->ck.tensors,
                                     r->ck.n_tensors)
                        : m->init_embedded(&r->state, r->arena, m->arena_bytes);
    if (rc != GQA_OK)
        return say(err, errlen, "model init failed: %s", gqr_strerror(rc));
    if (rk && m->shard && (rc = m->set_comm(r->state, rk->comm)) != GQA_OK)
        return say(err, errlen, "model set_comm failed: %s", gqr_strerror(rc));
    if (o->threads >= 0 && m->set_threads)
        m->set_threads(r->state, o->threads);
    if (gqr_sampler_init(&r->sampler, gqr_vocab_size(m), o->temperature, o->top_p,
                         o->seed))
        return say(err, errlen, "cannot set up the sampler");
    return 0;
}

static void end_run(run *r) {
    gqr_tokenizer_free(r->tok);
    gqr_sampler_free(&r->sampler);
    gqr_arena_free(r->arena);
    gqr_checkpoint_close(&r->ck);
    free(r->prompt);
    free(r->held);
}

/* A piece's bytes, but not the control bytes a model might produce (they
 * could drive the terminal): a single-byte piece below space other than a
 * newline or tab is dropped, as llama2.c's safe_printf does. */
static void print_piece(const char *p, size_t len) {
    if (len == 1 && (unsigned char)p[0] < 0x20 && p[0] != '\n' && p[0] != '\t')
        return;
    if (len == 1 && p[0] == 0x7f)
        return;
    fwrite(p, 1, len, stdout);
}

static int print_token(void *user, int token, int pos) {
    run *r = user;
    (void)pos;
    if (r->tok && token == gqr_tokenizer_eos(r->tok))
        return 1;
    if (r->tok) {
        size_t len = 0;
        const char *piece = gqr_tokenizer_decode(r->tok, r->prev, token, &len);
        print_piece(piece, len);
    } else {
        printf(r->prev >= 0 ? " %d" : "%d", token);
    }
    r->prev = token;
    fflush(stdout);
    return 0;
}

/* The prompt as the tokenizer reads it back, so that the output reads on. */
static void print_prompt(run *r) {
    r->prev = -1;
    for (int i = 0; r->tok && i < r->n_prompt; i++) {
        size_t len = 0;
        const char *piece = gqr_tokenizer_decode(r->tok, r->prev, r->prompt[i], &len);
        print_piece(piece, len);
        r->prev = r->prompt[i];
    }
    fflush(stdout);
}

static unsigned long long clock_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* A model's name is arbitrary text: control bytes print as '?' so that it
 * cannot drive the terminal. */
static void print_name(const char *name) {
    for (const char *p = name ? name : "?"; *p; p++)
        fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, stderr);
}

/* How the weights came: "12.3 MiB mapped: 12.0 MiB in place, 0.3 MiB
 * converted", and the memory resident once they are in. */
static void print_weights(const options *o, const run *r) {
    static const char *const formats[] = {"llama2.c", "GGUF", "safetensors"};
    const gqr_checkpoint *ck = &r->ck;
    size_t rss;
    if (!o->weights) {
        fputs("compiled in", stderr);
        return;
    }
    fprintf(stderr, "%s (%s, %.1f MiB ", o->weights, formats[ck->format], (double)ck->file_bytes / MIB);
    if (r->held) {
        fputs("file; held per rank:", stderr);
        for (int i = 0; i < r->ranks; i++)
            fprintf(stderr, " %s%.1f", i ? "+ " : "", r->held[2 * i] / MIB);
        fputs(" MiB; resident per rank:", stderr);
        for (int i = 0; i < r->ranks; i++)
            fprintf(stderr, " %s%.1f", i ? "+ " : "", r->held[2 * i + 1] / MIB);
        fputs(" MiB)", stderr);
        return;
    }
    if (ck->tf)
        fprintf(stderr, "mapped: %.1f MiB in place, %.1f MiB converted)",
                (double)ck->inplace_bytes / MIB, (double)ck->owned_bytes / MIB);
    else
        fputs(ck->map ? "mapped)" : "read, huge pages)", stderr);
    if (gqr_resident_bytes(&rss, NULL) == 0)
        fprintf(stderr, ", resident %.1f MiB", (double)rss / MIB);
}

/* The cache type in the .gqa's words (dtype { kv_cache = ... }). */
static const char *kv_type_name(int t) {
    switch (t) {
    case GQA_DT_F32: return "f32";
    case GQA_DT_F16: return "f16";
    case GQA_DT_BF16: return "bf16";
    case GQA_DT_Q8_0: return "q8_0";
    default: return "?";
    }
}

static void print_loaded(const gqa_model_api *m, const options *o, const run *r) {
    fputs(PROG ": model ", stderr);
    print_name(m->name);
    fputs(", weights ", stderr);
    print_weights(o, r);
    fprintf(stderr, ", KV cache %.1f MiB %s", (double)m->kv_cache_bytes / MIB,
            kv_type_name(m->shape.kv_type));
    if (m->shape.window > 0)
        fprintf(stderr, " (window %d)", m->shape.window);
    fprintf(stderr, ", seed %llu\n", o->seed);
    if (r->tok)
        fprintf(stderr, PROG ": tokenizer %s (%d tokens), prompt %d tokens\n",
                o->tokenizer ? o->tokenizer : "from the GGUF file", gqr_tokenizer_vocab_size(r->tok),
                r->n_prompt);
}

static void print_timing(const gqr_result *res) {
    double pr = res->prompt_seconds, gs = res->gen_seconds;
    fprintf(stderr, "prompt: %d tok in %.3f s (%.1f tok/s); generated: %d tok in %.3f s "
            "(%.1f tok/s)", res->n_prompt, pr, pr > 0 ? res->n_prompt / pr : 0.0,
            res->n_generated, gs, gs > 0 ? res->n_generated / gs : 0.0);
    size_t peak;
    if (gqr_resident_bytes(NULL, &peak) == 0)
        fprintf(stderr, "; peak resident %.1f MiB", (double)peak / MIB);
    fputc('\n', stderr);
}

static int generate(const gqa_model_api *m, const options *o, run *r, const gqr_ranks *rk) {
    gqr_result res;
    print_prompt(r);
    int rc = gqr_generate(m, r->state, &r->sampler, r->prompt, r->n_prompt, o->n_generate,
                          print_token, r, &res);
    if (res.n_generated || r->tok)
        printf("\n");
    fflush(stdout);
    if (rc != GQA_OK && rk) {
        fprintf(stderr, PROG ": error: rank %d: generation stopped after %d prompt and %d "
                "generated tokens: %s\n", rk->rank, res.n_prompt, res.n_generated, gqr_strerror(rc));
        rk->abort(rk->ctx, 1); /* the other ranks wait in a collective operation */
    }
    if (rc != GQA_OK) {
        fprintf(stderr, PROG ": error: generation stopped after %d prompt and %d generated "
                "tokens: %s\n", res.n_prompt, res.n_generated, gqr_strerror(rc));
        return 1;
    }
    if (!quiet)
        print_timing(&res);
    return 0;
}

/* Every rank's weight bytes and resident memory, for rank 0's load line. */
static int gather_held(const gqr_ranks *rk, run *r, char *err, size_t errlen) {
    size_t rss = 0;
    double mine[2];
    gqr_resident_bytes(&rss, NULL);
    mine[0] = (double)(r->ck.owned_bytes + r->ck.inplace_bytes);
    mine[1] = (double)rss;
    r->ranks = rk->ranks;
    r->held = malloc(sizeof *r->held * 2 * (size_t)rk->ranks);
    if (!r->held)
        return say(err, errlen, "out of memory");
    return rk->gather2(rk->ctx, mine, r->held) ? say(err, errlen, "rank %d: the ranks' sizes could "
                                                     "not be gathered", rk->rank) : 0;
}

/* Sets up every rank; they agree whether all did (a rank that did not
 * says why), so a bad file on one rank ends every rank. */
static int start_ranks(const gqa_model_api *m, options *o, run *r, const gqr_ranks *rk) {
    char err[512];
    int failed = 0;
    if (rk && !o->seed_given)
        o->seed = rk->share_seed(rk->ctx, o->seed);
    if (start_instance(m, o, r, rk, err, sizeof err) || load_tokenizer(m, o, r, err, sizeof err) ||
        get_prompt(m, o, r, err, sizeof err))
        failed = 1;
    if (failed && rk)
        fprintf(stderr, PROG ": error: rank %d: %s\n", rk->rank, err);
    else if (failed)
        input_error(err);
    if (rk && rk->agree(rk->ctx, failed))
        return 1;
    if (!failed && rk && o->weights && gather_held(rk, r, err, sizeof err)) {
        fprintf(stderr, PROG ": error: %s\n", err);
        rk->abort(rk->ctx, 1);
    }
    return failed;
}

int gqr_main(const gqa_model_api *m, int argc, char **argv) {
    return gqr_main_ranks(m, argc, argv, NULL);
}

int gqr_main_ranks(const gqa_model_api *m, int argc, char **argv, const gqr_ranks *rk) {
    options o;
    quiet = rk && rk->rank != 0;
    int rc = parse_args(&o, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!o.weights && !m->init_embedded)
        return usage_error("%s", "--weights FILE is required");
    if (m->version != GQA_API_VERSION) {
        fprintf(stderr, "gqac-run: error: the model was generated for API version %d, this runtime has %d\n",
                m->version, GQA_API_VERSION);
        return 1;
    }
    if (!o.seed_given)
        o.seed = clock_seed();
    run r;
    memset(&r, 0, sizeof r);
    if (start_ranks(m, &o, &r, rk))
        rc = 1;
    else {
        if (!quiet)
            print_loaded(m, &o, &r);
        rc = generate(m, &o, &r, rk);
    }
    end_run(&r);
    return rc;
}
