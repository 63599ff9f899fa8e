/*
 * main.c: the gqac command.  Each command is a row of `commands` (its
 * name, what it reads and writes, the function that does it) and each
 * flag a row of `flags` (which commands take it, how it is set); the
 * pipeline behind them, in order:
 *
 *   read .gqa -> parse_source -> sema_check -> ir_stats -> plan_model
 *             -> emit_c_model -> output_write (.c and .h)
 *
 * Exit status (gqac.h): 0 success, 1 bad input (the .gqa, or a file that
 * cannot be read or written), 2 bad usage.
 */
#include "gqac.h"
#include "gqr.h"
#include "outfile.h"
#include "quant.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A .gqa larger than this is not a model description. */
#define MAX_SOURCE (16u << 20)

typedef struct Command Command;

typedef struct {
    const Command *command;
    const char *input, *output, *header, *prefix, *embed;
    const char *format, *dtype; /* weights: bin, gguf or safetensors; export_dtype's names */
    const char *type, *model, *keep, *keep_type; /* quantize */
    bool with_main, random, rank_set;
    CodeOptions code;
    uint64_t seed;
    int size_bits;
    const char *jit; /* run: a JIT backend instead of a cached program, or NULL */
    int n_rest;      /* run, tune: the flags after the model, for the program or tune */
    char **rest;
} Options;

/* What a command does once its model (if it reads one) passed the front end. */
typedef int CommandFn(const Options *o, const Model *m, Arena *a, Diag *d);

struct Command {
    const char *name; /* "compile" is the command without a name: gqac MODEL.gqa -o FILE */
    unsigned bit;     /* which flags it takes: Flag.commands */
    bool model_first; /* the model, then flags that belong to someone else (run, tune) */
    bool reads_model; /* through the front end first (import reads other files) */
    bool needs_output;
    CommandFn *fn;
};

static const char usage_text[] =
    "usage: gqac MODEL.gqa -o MODEL.c [--prefix NAME] [--header FILE.h] [--main]\n"
    "                 [--ranks N --rank R]\n"
    "       gqac check MODEL.gqa\n"
    "       gqac info MODEL.gqa [--ranks N]\n"
    "       gqac weights --random MODEL.gqa -o WEIGHTS [--seed N] [--format F] [--dtype T]\n"
    "       gqac run MODEL.gqa [--jit tcc|cc|llvm] --weights W [-p PROMPT] [program flags]\n"
    "       gqac import CONFIG.json|DIR|FILE.gguf|FILE.bin -o MODEL.gqa\n"
    "       gqac quantize WEIGHTS -o OUT.gguf --type T [--model MODEL.gqa]\n"
    "                 [--keep NAME,...] [--keep-type T]\n"
    "       gqac tune MODEL.gqa --weights W [--kv-heads 1,2,4] [--types file,q8_0,q4_k]\n"
    "                 [--kv-types file,f16,q8_0] [--context 512,2048]\n"
    "                 [--eval TEXT --tokenizer T] [--max-ppl-increase 5%] [--jit cc|tcc|llvm]\n"
    "                 [--runs N] [--threads N] [--eval-tokens N] [--out PREFIX] [--emit DIR]\n"
    "       gqac train MODEL.gqa --data TEXT --tokenizer T (--init W | --random) -o OUT.bin\n"
    "                 [--steps N] [--batch B] [--seq S] [--lr LR] [--warmup N] [--seed N]\n"
    "                 [--eval TEXT] [--eval-every K] [--threads N] [--log CSV] [--svg FILE]\n"
    "                 [--checkpoint FILE] [--save-every K] [--resume FILE] [--jit cc|tcc|llvm]\n"
    "       gqac serve MODEL.gqa --weights W [--tokenizer T] [--host 127.0.0.1] [--port 8080]\n"
    "                 [--max-seqs 16] [--kv-memory BYTES] [--max-queue 64] [--threads N]\n"
    "                 [--timeout 30] [--jit cc|tcc|llvm]\n";
/* Split from usage_text: C99 promises string literals of 4095 bytes only. */
static const char usage_details[] =
    "\n"
    "Compiles a grouped-query-attention model description to C99.\n"
    "\n"
    "  -o FILE          write the C source to FILE and its header beside it\n"
    "                   (FILE.c -> FILE.h); '-' writes the C to stdout\n"
    "  --prefix NAME    prefix of the generated symbols (default: from the model's name)\n"
    "  --header FILE    where the header goes (default: beside -o, or PREFIX.h with -o -)\n"
    "  --main           add main() calling the runtime's gqr_main (a standalone program)\n"
    "  --target T       hosted (default: libc, libm, OpenMP) or freestanding (none of them)\n"
    "  --rope-table     RoPE's cos and sin for every position as a table in the C\n"
    "                   (context x head_dim floats), computed by gqac in double\n"
    "  --ranks N --rank R  the code of rank R (0 to N-1) of N ranks of a tensor-\n"
    "                   parallel model: its query heads with their KV heads, a share of\n"
    "                   the FFN and of the vocabulary; --main programs run under mpirun\n"
    "  --train          also the training step (PREFIX_train_api: forward, backward,\n"
    "                   AdamW) over f32 weights; rmsnorm + swiglu models, hosted only\n"
    "  --embed-weights W  compile the checkpoint W in: FILE_weights.c (and _1.c, ...) beside\n"
    "                   FILE.c, and PREFIX_init_embedded needs no file\n"
    "  --size-bits N    the target's size_t width, 32 or 64 (default 64): sizes must fit\n"
    "  --seed N         seed of random weights (default 1)\n"
    "  --format F       weights file format: bin (llama2.c, default), gguf or safetensors\n"
    "  --dtype T        gguf and safetensors tensors as f32 (default), f16 or bf16;\n"
    "                   gguf also q8_0, q4_0, q4_k or q6_k (matrices; vectors stay f32);\n"
    "                   a model with a dtype block: each tensor in its own type (bin too)\n"
    "  --type T         quantize: f32, f16, bf16, q8_0, q4_0, q4_k or q6_k\n"
    "  --model M.gqa    quantize: the model (default: imported from WEIGHTS)\n"
    "  --keep NAMES     quantize: GGUF tensor names kept at --keep-type (default f16)\n"
    "  --keep-type T    quantize: the type of --keep's tensors\n"
    "  --help           this text\n"
    "  --version        gqac's version\n"
    "\n"
    "gqac run compiles MODEL.gqa with the system C compiler ($CC, else cc) into\n"
    "a program cached by content hash ($GQAC_CACHE, else ~/.cache/gqac) and runs\n"
    "it with the flags that follow; `gqac run MODEL.gqa --help` lists them.\n"
    "--jit (right after the model) compiles it in this process instead: tcc\n"
    "(libtcc, milliseconds, unoptimized), cc (a cached shared object) or llvm\n"
    "(clang and LLVM in process, optimized; where gqac was built with LLVM).\n"
    "\n"
    "gqac train compiles MODEL.gqa's f32 training step and trains it on TEXT\n"
    "(documents separated by lines holding only %, each tokenized as BOS + text +\n"
    "EOS): AdamW, warmup then cosine decay, gradient clipping, as\n"
    "tools/train_fortune.py.  Defaults: --steps 1000, --batch 16, --seq the\n"
    "context, --lr 2e-3, --warmup 100 (or steps/14 if fewer), --seed 1337,\n"
    "--eval-every 200, --eval-windows 200, --log OUT.csv, --save-every 200,\n"
    "--weight-decay 0.1, --clip 1.0, --min-lr-ratio 0.05, --jit cc, --threads\n"
    "OpenMP's; progress on stderr (a bar on a terminal, else a line every\n"
    "--log-every 50 steps); --stop-at K pauses at step K (resume with --resume\n"
    "FILE and the same flags).\n"
    "\n"
    "MODEL.gqa may be '-' for standard input.  Exit status: 0 success, 1 bad\n"
    "input, 2 bad usage.\n";

static int usage_error(const char *fmt, const char *arg) {
    fputs("gqac: error: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(see gqac --help)\n", stderr);
    return EXIT_USAGE;
}

static bool parse_number(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 0);
    *out = v;
    return errno == 0 && *end == '\0';
}

/* ---- flags ---- */

enum {
    C_COMPILE = 1, C_CHECK = 2, C_INFO = 4, C_WEIGHTS = 8, C_IMPORT = 16, C_RUN = 32, C_TUNE = 64,
    C_QUANTIZE = 128, C_TRAIN = 256, C_SERVE = 512
};

/* Sets one flag from its value (NULL for a switch); 0 or EXIT_USAGE. */
typedef int FlagFn(Options *o, const char *v);

typedef struct {
    const char *name;
    bool takes_value;
    unsigned commands; /* C_ bits */
    FlagFn *set;
} Flag;

static int set_output(Options *o, const char *v) { o->output = v; return 0; }
static int set_prefix(Options *o, const char *v) { o->prefix = v; return 0; }
static int set_header(Options *o, const char *v) { o->header = v; return 0; }
static int set_main(Options *o, const char *v) { (void)v; o->with_main = true; return 0; }
static int set_rope_table(Options *o, const char *v) { (void)v; o->code.rope_table = true; return 0; }
static int set_train(Options *o, const char *v) { (void)v; o->code.train = true; return 0; }
static int set_random(Options *o, const char *v) { (void)v; o->random = true; return 0; }

static int set_embed(Options *o, const char *v) {
    o->embed = v;
    o->code.embed_weights = true;
    return 0;
}

static int set_target(Options *o, const char *v) {
    if (strcmp(v, "hosted") && strcmp(v, "freestanding"))
        return usage_error("--target is hosted or freestanding, not '%s'", v);
    o->code.target = !strcmp(v, "freestanding") ? TARGET_FREESTANDING : TARGET_HOSTED;
    return 0;
}

static int set_format(Options *o, const char *v) {
    if (strcmp(v, "bin") && strcmp(v, "gguf") && strcmp(v, "safetensors"))
        return usage_error("--format is bin, gguf or safetensors, not '%s'", v);
    o->format = v;
    return 0;
}

/* A weight type by its name (export_dtype's), into *out. */
static int weight_type(const char *flag, const char *v, const char **out) {
    if (export_dtype(v) < 0) {
        fprintf(stderr, "gqac: error: %s is f32, f16, bf16, q8_0, q4_0, q4_k or q6_k, not '%s'\n"
                        "(see gqac --help)\n", flag, v);
        return EXIT_USAGE;
    }
    *out = v;
    return 0;
}

static int set_dtype(Options *o, const char *v) { return weight_type("--dtype", v, &o->dtype); }
static int set_type(Options *o, const char *v) { return weight_type("--type", v, &o->type); }
static int set_keep_type(Options *o, const char *v) { return weight_type("--keep-type", v, &o->keep_type); }

static int set_model(Options *o, const char *v) { o->model = v; return 0; }
static int set_keep(Options *o, const char *v) { o->keep = v; return 0; }

static int set_seed(Options *o, const char *v) {
    return parse_number(v, &o->seed) ? 0 : usage_error("--seed needs a non-negative integer, not '%s'", v);
}

static int set_ranks(Options *o, const char *v) {
    long n;
    if (!whole(v, 1, 1 << 20, &n))
        return usage_error("--ranks needs a rank count of at least 1, not '%s'", v);
    o->code.ranks = (int)n;
    return 0;
}

static int set_rank(Options *o, const char *v) {
    long n;
    if (!whole(v, 0, 1 << 20, &n))
        return usage_error("--rank needs a rank from 0, not '%s'", v);
    o->code.rank = (int)n;
    o->rank_set = true;
    return 0;
}

static int set_size_bits(Options *o, const char *v) {
    uint64_t n;
    if (!parse_number(v, &n) || (n != 32 && n != 64))
        return usage_error("--size-bits is 32 or 64, not '%s'", v);
    o->size_bits = (int)n;
    return 0;
}

static const Flag flags[] = {
    {"-o", true, C_COMPILE | C_WEIGHTS | C_IMPORT | C_QUANTIZE, set_output},
    {"--prefix", true, C_COMPILE, set_prefix},
    {"--header", true, C_COMPILE, set_header},
    {"--main", false, C_COMPILE, set_main},
    {"--target", true, C_COMPILE, set_target},
    {"--embed-weights", true, C_COMPILE, set_embed},
    {"--rope-table", false, C_COMPILE, set_rope_table},
    {"--train", false, C_COMPILE, set_train},
    {"--ranks", true, C_COMPILE | C_INFO, set_ranks},
    {"--rank", true, C_COMPILE, set_rank},
    {"--size-bits", true, C_COMPILE | C_CHECK | C_INFO, set_size_bits},
    {"--random", false, C_WEIGHTS, set_random},
    {"--seed", true, C_WEIGHTS, set_seed},
    {"--format", true, C_WEIGHTS, set_format},
    {"--dtype", true, C_WEIGHTS, set_dtype},
    {"--type", true, C_QUANTIZE, set_type},
    {"--model", true, C_QUANTIZE, set_model},
    {"--keep", true, C_QUANTIZE, set_keep},
    {"--keep-type", true, C_QUANTIZE, set_keep_type},
};

static const Flag *find_flag(const char *name) {
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strcmp(flags[i].name, name))
            return &flags[i];
    return NULL;
}

/* gqac run --jit: the model compiled in this process and run by the
 * runtime's own main, as the cached program would run it. */
static int cmd_jit_run(const Options *o, const Model *m, Arena *a) {
    const gqa_model_api *api;
    char err[1024];
    JitModel *j = jit_compile(m, jit_backend(o->jit), &api, err, sizeof err);
    if (!j) {
        fprintf(stderr, "gqac: error: %s\n", err);
        return EXIT_INPUT;
    }
    char **args = arena_alloc(a, sizeof *args * (size_t)(o->n_rest + 2));
    args[0] = arena_printf(a, "gqac run --jit %s", o->jit);
    memcpy(args + 1, o->rest, sizeof *args * (size_t)o->n_rest);
    args[o->n_rest + 1] = NULL;
    int rc = gqr_main(api, o->n_rest + 1, args);
    jit_free(j);
    return rc;
}

/* The whole file, NUL-terminated; NULL with a message on failure. */
static char *read_all(FILE *f, const char *name, size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (ferror(f) || n > MAX_SOURCE) {
            fprintf(stderr, "gqac: error: %s: %s\n", name,
                    ferror(f) ? strerror(errno) : "larger than 16 MiB; not a model description");
            free(buf);
            return NULL;
        }
        if (feof(f))
            break;
        if (n + 1 == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p)
                free(buf);
            buf = p;
        }
    }
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static char *read_source(const char *path, size_t *len) {
    if (!strcmp(path, "-"))
        return read_all(stdin, "<stdin>", len);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "gqac: error: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = read_all(f, path, len);
    fclose(f);
    return text;
}

/* The model at path ("-": standard input) through the front end into *m,
 * its errors reported: its text (free it after the last use of d), or
 * NULL.  src must outlive d. */
static char *load_model(const char *path, int size_bits, Arena *a, Source *src, Diag *d, Model *m) {
    Stats s;
    *src = (Source){!strcmp(path, "-") ? "<stdin>" : path, NULL, 0};
    char *text = read_source(path, &src->len);
    src->text = text;
    diag_init(d, src, stderr);
    if (text && front_end(a, d, m, &s, size_bits))
        return text;
    if (d->errors > 1)
        fprintf(stderr, "%d errors\n", d->errors);
    free(text);
    return NULL;
}

/* ---- compile ---- */

/* FILE.c -> FILE.h; anything else gets .h appended. */
static char *header_path(Arena *a, const Options *o, const char *prefix) {
    if (o->header)
        return arena_printf(a, "%s", o->header);
    if (!strcmp(o->output, "-"))
        return arena_printf(a, "%s.h", prefix);
    size_t n = strlen(o->output);
    if (n > 2 && !strcmp(o->output + n - 2, ".c"))
        return arena_printf(a, "%.*s.h", (int)(n - 2), o->output);
    return arena_printf(a, "%s.h", o->output);
}

/* The name the .c uses in #include "...", where no escape works and a
 * '?' could start a trigraph: letters, digits and ._+- only. */
static const char *include_name(const char *header) {
    const char *base = strrchr(header, '/');
    base = base ? base + 1 : header;
    if (!*base)
        return NULL;
    for (const char *p = base; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._+-", *p))
            return NULL;
    return base;
}

/* FILE.c -> FILE_weights.c, FILE_weights_1.c, ... */
static const char *weights_path(Arena *a, const char *output, int i) {
    size_t n = strlen(output);
    if (n > 2 && !strcmp(output + n - 2, ".c"))
        n -= 2;
    return i == 0 ? arena_printf(a, "%.*s_weights.c", (int)n, output)
                  : arena_printf(a, "%.*s_weights_%d.c", (int)n, output, i);
}

#define MAX_WEIGHT_FILES (OUTPUT_MAX - 2)
#define MAX_ROPE_TABLE (16u << 20) /* floats: 64 MiB of table is past any small target */

/* The .c and .h (and the embedded weights' files) land together; into a
 * device or a pipe (-o /dev/stdout) without --header, the header goes in
 * the .c, which then stands alone. */
static int cmd_compile(const Options *o, const Model *m, Arena *a, Diag *d) {
    const char *prefix = o->prefix ? o->prefix : cname_mangle(a, m->name), *why;
    if ((why = cname_check(prefix))) {
        fprintf(stderr, "gqac: error: prefix '%s' is not usable: %s\n(see gqac --help)\n", prefix, why);
        return EXIT_USAGE;
    }
    bool alone = !o->header && gqr_out_in_place(o->output);
    if (alone && o->embed)
        return usage_error("--embed-weights writes files beside -o FILE.c, not beside a device: "
                           "give a file, not '%s'", o->output);
    const char *header = header_path(a, o, prefix), *inc = alone ? NULL : include_name(header);
    if (!alone && !inc)
        return usage_error("the header name '%s' cannot appear in #include", header);
    if (o->header && gqr_out_same(o->header, o->output))
        return usage_error("--header names the same file as -o ('%s'): give each its own", o->header);
    uint64_t table = (uint64_t)m->context * (uint64_t)m->head_dim;
    if (o->code.rope_table && table > MAX_ROPE_TABLE) {
        fprintf(stderr, "gqac: error: --rope-table would be %llu floats (context x head_dim), more than "
                        "the %u it allows; leave it out\n", (unsigned long long)table, MAX_ROPE_TABLE);
        return EXIT_USAGE;
    }
    Buf bufs[OUTPUT_MAX] = {{0}};
    const char *paths[OUTPUT_MAX];
    char err[1024];
    int n = 0, first = alone; /* alone: bufs[0], the header, is not written */
    paths[0] = header, paths[1] = o->output;
    if (!output_check(paths + first, 2 - first, err, sizeof err)) { /* before the work */
        fprintf(stderr, "gqac: error: %s\n", err);
        return EXIT_INPUT;
    }
    if (o->code.ranks > 1 && !ir_shard(m, o->code.ranks, o->code.rank, &(Model){0}, &(ShardPlan){0}, err,
                                        sizeof err)) {
        fprintf(stderr, "gqac: error: %s: %s\n", o->input, err);
        return EXIT_INPUT;
    }
    Plan p;
    Model f32;
    if (o->code.train) { /* training is done on f32 weights, whatever the dtype block says */
        if ((why = train_unsupported(m))) {
            fprintf(stderr, "gqac: error: --train: %s: %s\n", m->name, why);
            return EXIT_INPUT;
        }
        f32 = ir_with_f32(m);
        m = &f32;
    }
    plan_model(m, prefix, o->code, &p, a);
    if (plan_check(&p)) {
        fprintf(stderr, "gqac: internal error: the plan's %s is out of its C type's range (sema should have "
                        "refused the model): a gqac bug; please report it with the .gqa\n", plan_check(&p));
        return EXIT_INPUT;
    }
    emit_c_model(&p, prefix, inc, o->with_main, &bufs[1], &bufs[0]);
    bool ok = !o->embed || emit_weights(m, prefix, inc, o->embed, bufs + 2, MAX_WEIGHT_FILES, &n, d);
    for (int i = 0; i < n; i++)
        paths[2 + i] = weights_path(a, o->output, i);
    if (ok && !(ok = output_write(paths + first, bufs + first, 2 + n - first, err, sizeof err)))
        fprintf(stderr, "gqac: error: %s\n", err);
    for (int i = 0; i < 2 + n; i++)
        buf_free(&bufs[i]);
    return ok ? EXIT_OK : EXIT_INPUT;
}

/* ---- check, info ---- */

static int cmd_check(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)o, (void)m, (void)a, (void)d;
    return EXIT_OK; /* the front end has checked it */
}

/* 1536 -> "1.50 KiB"; exact below 1 KiB. */
static const char *human(Arena *a, uint64_t v, const char *unit, int base) {
    static const char *const scale[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    static const char *const scale10[] = {"", "k", "M", "G", "T", "P", "E"};
    double x = (double)v;
    int i = 0;
    while (x >= base && i < 6)
        x /= base, i++;
    if (i == 0)
        return arena_printf(a, "%llu %s", (unsigned long long)v, unit);
    return arena_printf(a, "%.2f %s%s", x, base == 1024 ? scale[i] : scale10[i], unit);
}

static void info_row(const char *label, const char *const col[3]) {
    printf("  %-33s %-19s %-19s %s\n", label, col[0], col[1], col[2]);
}

/* "q4_k (attn_v per layer: 12 q4_k, 10 q6_k; output q6_k)": the
 * matrices' types, in the words of the dtype block. */
static const char *weight_types(const Model *m, Arena *a) {
    char *s = arena_printf(a, "%s", dtype_name(m->weight_type));
    const char *sep = " (";
    for (int k = 0; k < TK_COUNT; k++) {
        if (!ir_kind_key((TensorKind)k) || (k == TK_CLS && m->tied))
            continue;
        if (m->layer_types[k]) {
            int64_t counts[DT_COUNT] = {0};
            for (int64_t l = 0; l < m->layers; l++)
                counts[m->layer_types[k][l]]++;
            s = arena_printf(a, "%s%s%s per layer:", s, sep, ir_kind_key((TensorKind)k));
            for (int t = 0, first = 1; t < DT_COUNT; t++)
                if (counts[t]) {
                    s = arena_printf(a, "%s%s %lld %s", s, first ? "" : ",", (long long)counts[t],
                                     dtype_name((DType)t));
                    first = 0;
                }
        } else if (m->kind_set[k] && m->kind_type[k] != m->weight_type) {
            s = arena_printf(a, "%s%s%s %s", s, sep, ir_kind_key((TensorKind)k), dtype_name(m->kind_type[k]));
        } else {
            continue;
        }
        sep = "; ";
    }
    return arena_printf(a, "%s%s; norms and biases f32", s, *sep == ';' ? ")" : "");
}

/* "f16; attention: window 1024, 4 sinks; global_every 6: 5 of 30 layers
 * see every position": the cache's type and what each layer sees. */
static const char *kv_layout(const Model *m, Arena *a) {
    char *s = arena_printf(a, "%s; attention: ", dtype_name(m->kv_type));
    if (m->window <= 0)
        return arena_printf(a, "%sfull (every layer sees every position)", s);
    s = arena_printf(a, "%swindow %lld", s, (long long)m->window);
    if (m->sinks > 0)
        s = arena_printf(a, "%s, %lld sinks", s, (long long)m->sinks);
    if (m->global_every > 0)
        return arena_printf(a, "%s; global_every %lld: %lld of %lld layers see every position", s,
                            (long long)m->global_every, (long long)ir_global_layers(m),
                            (long long)m->layers);
    return arena_printf(a, "%s in every layer: runs past the context in constant memory "
                        "(unless compiled with --rope-table)", s);
}

/* "0-7" or "3": indices first .. first + n - 1. */
static const char *span(Arena *a, int64_t first, int64_t n) {
    return n == 1 ? arena_printf(a, "%lld", (long long)first)
                  : arena_printf(a, "%lld-%lld", (long long)first, (long long)(first + n - 1));
}

/* gqac info --ranks N: what each rank holds, and its memory. */
static int info_ranks(const Options *o, const Model *m, Arena *a) {
    char why[1024];
    int n = o->code.ranks;
    Model local;
    ShardPlan sp;
    if (!ir_shard(m, n, 0, &local, &sp, why, sizeof why)) {
        fprintf(stderr, "gqac: error: %s: %s\n", o->input, why);
        return EXIT_INPUT;
    }
    printf("\nover %d ranks (gqac --ranks %d --rank R): each rank %lld query head%s with %s, "
           "%lld of %lld FFN hidden units, its share of the vocabulary's rows (embedding and classifier)\n",
           n, n, (long long)local.heads, local.heads == 1 ? "" : "s",
           n <= m->kv_heads ? arena_printf(a, "%lld KV head%s", (long long)local.kv_heads, local.kv_heads == 1 ? "" : "s")
                            : arena_printf(a, "1 KV head (each on %lld ranks)", (long long)(n / m->kv_heads)),
           (long long)local.hidden, (long long)m->hidden);
    for (int r = 0; r < n; r++) {
        Stats s;
        Diag quiet = {0};
        ir_shard(m, n, r, &local, &sp, why, sizeof why);
        bool fits = ir_stats(&local, &s, &quiet, o->size_bits, PLAN_BATCH);
        printf("  rank %d: heads %s, KV heads %s, hidden %s, vocab %s; weights %s, arena %s\n", r,
               span(a, sp.head0, local.heads), span(a, sp.kv_head0, local.kv_heads),
               span(a, sp.hidden0, local.hidden), span(a, sp.vocab0, local.vocab),
               fits ? human(a, s.weight_bytes, "B", 1024) : "too large",
               fits ? human(a, s.arena_bytes + 4 * (((uint64_t)local.vocab + 15) / 16 * 16), "B", 1024)
                    : "too large"); /* (and its logits before the gather: plan.c) */
    }
    return EXIT_OK;
}

static int cmd_info(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)d;
    Model v[3] = {*m, ir_with_kv_heads(m, m->heads), ir_with_kv_heads(m, 1)};
    Stats s[3];
    bool fits[3];
    for (int i = 0; i < 3; i++) { /* MHA's sizes may not fit where the model's do */
        Diag quiet = {0};
        fits[i] = ir_stats(&v[i], &s[i], &quiet, o->size_bits, PLAN_BATCH);
    }
    printf("%s: model \"%s\": %lld layers, dim %lld, %lld heads, %lld KV heads "
           "(group size %lld), head_dim %lld, context %lld\n",
           o->input, cname_escape(a, m->name), (long long)m->layers, (long long)m->dim,
           (long long)m->heads, (long long)m->kv_heads, (long long)(m->heads / m->kv_heads),
           (long long)m->head_dim, (long long)m->context);
    printf("weights: %s\n", weight_types(m, a));
    printf("KV cache: %s\n\n", kv_layout(m, a));
    const char *col[3];
    for (int i = 0; i < 3; i++)
        col[i] = arena_printf(a, i == 0 ? "this (kv_heads %lld)" : i == 1 ? "MHA (kv_heads %lld)" : "MQA (kv_heads %lld)",
                              (long long)v[i].kv_heads);
    info_row("", col);
#define ROW(label, field, unit, base)                                                              \
    for (int i = 0; i < 3; i++)                                                                    \
        col[i] = fits[i] ? human(a, s[i].field, unit, base) : "too large";                         \
    info_row(label, col);
    ROW("parameters", params, "", 1000);
    ROW("weight bytes", weight_bytes, "B", 1024);
    ROW("KV cache per token", kv_bytes_per_token, "B", 1024);
    ROW(m->window > 0 ? "KV cache held (windows as rings)"
                      : arena_printf(a, "KV cache at context %lld", (long long)m->context),
        kv_bytes, "B", 1024);
    ROW("instance memory (arena)", arena_bytes, "B", 1024);
    ROW("FLOPs per token at full context", flops_per_token, "FLOP", 1000);
    ROW("bytes per token at full context", bytes_per_token, "B", 1024);
#undef ROW
    if (o->code.ranks > 1 && info_ranks(o, m, a))
        return EXIT_INPUT;
    return fflush(stdout) == 0 && !ferror(stdout) ? EXIT_OK : EXIT_INPUT;
}

/* ---- weights, import, run, tune ---- */

/* Streamed (a checkpoint may be gigabytes) into a file written whole or
 * not at all. */
static int cmd_weights(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)a, (void)d;
    if (strcmp(o->format, "gguf") && gqr_q_is_block(export_dtype(o->dtype)))
        return usage_error("--dtype %s is a quantized type: GGUF only (--format gguf)", o->dtype);
    if (strcmp(o->format, "bin") || export_typed(m))
        return !strcmp(o->output, "-") && strcmp(o->format, "bin") ? usage_error("--format %s writes a file, not '-'", o->format)
                                       : export_random(m, o->seed, o->format, o->dtype, o->output);
    if (strcmp(o->dtype, "f32"))
        return usage_error("%s", "a llama2.c checkpoint (--format bin) holds f32 only");
    gqr_out out;
    char err[1024];
    if (gqr_out_open(&out, o->output, err, sizeof err)) {
        fprintf(stderr, "gqac: error: %s\n", err);
        return EXIT_INPUT;
    }
    if (!weights_write_random(m, o->seed, out.f)) {
        fprintf(stderr, "gqac: error: %s: cannot write: %s\n", o->output, strerror(errno));
        gqr_out_abort(&out);
        return EXIT_INPUT;
    }
    if (gqr_out_commit(&out, err, sizeof err)) {
        fprintf(stderr, "gqac: error: %s\n", err);
        return EXIT_INPUT;
    }
    return EXIT_OK;
}

static int cmd_import(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)m, (void)d;
    return import_command(o->input, o->output, a);
}

/* The model of --model through the front end, then the runtime's loader
 * and writer; without --model, quantize imports one from the weights. */
static int cmd_quantize(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)m, (void)d;
    QuantizeArgs q = {o->input, o->output, o->type, NULL, o->keep, o->keep_type};
    Model model;
    Source src;
    Diag md;
    char *text = NULL;
    if (o->model && !(text = load_model(o->model, 64, a, &src, &md, &model)))
        return EXIT_INPUT;
    q.model = o->model ? &model : NULL;
    int rc = quantize_command(&q, a);
    free(text);
    return rc;
}

static int cmd_run(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)d;
    return o->jit ? cmd_jit_run(o, m, a) : run_command(m, o->input, o->n_rest, o->rest, a);
}

static int cmd_tune(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)d;
    return tune_command(m, o->n_rest, o->rest, a);
}

static int cmd_train(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)d;
    return train_command(m, o->n_rest, o->rest, a);
}

static int cmd_serve(const Options *o, const Model *m, Arena *a, Diag *d) {
    (void)d;
    return serve_command(m, o->n_rest, o->rest, a);
}

/* ---- the command line ---- */

static const Command commands[] = {
    {"compile", C_COMPILE, false, true, true, cmd_compile},
    {"check", C_CHECK, false, true, false, cmd_check},
    {"info", C_INFO, false, true, false, cmd_info},
    {"weights", C_WEIGHTS, false, true, true, cmd_weights},
    {"import", C_IMPORT, false, false, true, cmd_import},
    {"quantize", C_QUANTIZE, false, false, true, cmd_quantize},
    {"run", C_RUN, true, true, false, cmd_run},
    {"tune", C_TUNE, true, true, false, cmd_tune},
    {"train", C_TRAIN, true, true, false, cmd_train},
    {"serve", C_SERVE, true, true, false, cmd_serve},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const Command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

/* A word that names no file is a mistyped command, not a model to compile. */
static int unknown_command(const char *word) {
    struct stat st;
    if (!islower((unsigned char)word[0]) || strspn(word, "abcdefghijklmnopqrstuvwxyz-_") != strlen(word) ||
        stat(word, &st) == 0)
        return 0;
    const char *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < N_COMMANDS; i++) {
        int d = edit_distance(word, commands[i].name);
        if (d < best_d)
            best = commands[i].name, best_d = d;
    }
    fprintf(stderr, "gqac: error: unknown command '%s'", word);
    if (best)
        fprintf(stderr, "; did you mean '%s'?", best);
    fputs("\n(commands: check, info, weights, import, quantize, run, tune, train, serve; or gqac MODEL.gqa -o FILE.c to compile;"
          " see gqac --help)\n", stderr);
    return EXIT_USAGE;
}

/* run and tune: the model, then flags for the program (run) or for tune.
 * run's --jit may stand anywhere among them, except as another flag's value. */
static int parse_model_first(int argc, char **argv, Options *o) {
    const char *name = o->command->name;
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "gqac: error: gqac %s needs the model first: gqac %s MODEL.gqa %s\n(see gqac --help)\n",
                name, name, o->command->bit == C_RUN ? "[flags]" : o->command->bit == C_TRAIN ? "--data TEXT ..." : "--weights W");
        return EXIT_USAGE;
    }
    o->input = argv[0];
    o->rest = argv + 1;
    for (int i = 1; i < argc; i++) {
        if (o->command->bit == C_RUN && !strcmp(argv[i], "--jit")) {
            if (i + 1 >= argc)
                return usage_error("--jit wants %s", jit_names());
            if (jit_unavailable(argv[i + 1])) {
                fprintf(stderr, "gqac: error: --jit %s: %s\n", argv[i + 1], jit_unavailable(argv[i + 1]));
                return EXIT_USAGE;
            }
            o->jit = argv[++i];
        } else {
            o->rest[o->n_rest++] = argv[i];
            if (gqr_flag_takes_value(argv[i]) && i + 1 < argc)
                o->rest[o->n_rest++] = argv[++i];
        }
    }
    return 0;
}

static int not_a_flag_of(const Flag *f, const Command *c) {
    fprintf(stderr, "gqac: error: %s is not a flag of %s\n(see gqac --help)\n", f->name,
            c->bit == C_COMPILE ? "compiling (gqac MODEL.gqa -o FILE)" : c->name);
    return EXIT_USAGE;
}

static int check_args(const Options *o) {
    const Command *c = o->command;
    if (!o->input)
        return usage_error("%s", "no input file");
    if (c->needs_output && !o->output)
        return usage_error("%s", "no output file: give -o FILE");
    if (o->embed && !strcmp(o->output, "-"))
        return usage_error("%s", "--embed-weights writes files beside -o FILE.c: give a file, not -");
    if (o->with_main && o->code.target == TARGET_FREESTANDING)
        return usage_error("%s", "--main needs a hosted target (the runtime uses libc)");
    if (o->code.train && o->code.target == TARGET_FREESTANDING)
        return usage_error("%s", "--train needs a hosted target (training uses libm and OpenMP)");
    if (o->rank_set && o->code.ranks < 1)
        return usage_error("%s", "--rank without --ranks: give the rank count too");
    if (o->code.ranks > 1 && !o->rank_set && c->bit == C_COMPILE)
        return usage_error("%s", "--ranks needs --rank R: the rank (0 to ranks - 1) this code is for");
    if (o->code.ranks > 0 && o->code.rank >= o->code.ranks)
        return usage_error("%s", "--rank is from 0 to --ranks - 1");
    if (o->code.ranks > 1 && (o->embed || o->code.train))
        return usage_error("%s", o->embed ? "--embed-weights cannot be used with --ranks (a rank's weights "
                                            "are a share of the file)" : "--train cannot be used with --ranks");
    if (c->bit == C_QUANTIZE && !o->type)
        return usage_error("%s", "gqac quantize needs --type (q8_0, q4_0, q4_k, q6_k, f16, bf16 or f32)");
    if (o->keep_type && !o->keep)
        return usage_error("%s", "--keep-type without --keep: give the tensors to keep");
    if (c->bit == C_WEIGHTS && !o->random)
        return usage_error("%s", "gqac weights needs --random (the only kind it writes)");
    return 0;
}

/* Returns 0, or an exit status for main. */
static int parse_args(int argc, char **argv, Options *o) {
    *o = (Options){.command = &commands[0], .seed = 1, .size_bits = 64, .format = "bin", .dtype = "f32"};
    int i = 1, rc;
    if (argc > 1 && find_command(argv[1]))
        o->command = find_command(argv[i++]);
    else if (argc > 1 && (rc = unknown_command(argv[1])))
        return rc;
    if (o->command->model_first)
        return parse_model_first(argc - i, argv + i, o);
    for (; i < argc; i++) {
        const char *a = argv[i];
        const Flag *f = a[0] == '-' && a[1] ? find_flag(a) : NULL;
        if (a[0] == '-' && a[1] && !f)
            return usage_error("unknown option '%s'", a);
        if (f && !(f->commands & o->command->bit))
            return not_a_flag_of(f, o->command);
        if (f && f->takes_value && i + 1 >= argc)
            return usage_error("%s needs a value", a);
        if (f && (rc = f->set(o, f->takes_value ? argv[++i] : NULL)))
            return rc;
        if (!f && o->input)
            return usage_error("more than one input file ('%s')", a);
        if (!f)
            o->input = a;
    }
    return check_args(o);
}

static int run(const Options *o) {
    Arena *a = arena_new();
    if (!o->command->reads_model) {
        int rc = o->command->fn(o, NULL, a, NULL);
        arena_free(a);
        return rc;
    }
    Source src;
    Diag d;
    Model m;
    char *text = load_model(o->input, o->size_bits, a, &src, &d, &m);
    int rc = text ? o->command->fn(o, &m, a, &d) : EXIT_INPUT;
    arena_free(a);
    free(text);
    return rc;
}

int main(int argc, char **argv) {
    /* run's flags after the model belong to the program */
    int own = argc > 2 && !strcmp(argv[1], "run") ? 2 : argc;
    for (int i = 1; i < own; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            fputs(usage_details, stdout);
            return EXIT_OK;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("gqac %s\n", GQAC_VERSION);
            return EXIT_OK;
        }
    }
    Options o;
    int rc = parse_args(argc, argv, &o);
    return rc ? rc : run(&o);
}
