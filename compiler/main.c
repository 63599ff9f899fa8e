/*
 * main.c: the gqac command.  The pipeline, in order:
 *
 *   read .gqa -> parse_source -> sema_check -> ir_stats -> plan_model
 *             -> emit_c_model -> write .c and .h
 *
 * Exit status: 0 success, 1 bad input (the .gqa, or a file that cannot be
 * read or written), 2 bad usage.
 */
#include "gqac.h"
#include "gqr.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A .gqa larger than this is not a model description. */
#define MAX_SOURCE (16u << 20)

typedef struct {
    const char *command; /* "compile", "check", "info", "weights" */
    const char *input, *output, *header, *prefix, *embed;
    const char *format, *dtype; /* weights: bin, gguf or safetensors; f32, f16 or bf16 */
    bool with_main, random;
    CodeOptions code;
    uint64_t seed;
    int size_bits;
    const char *jit; /* run: a JIT backend instead of a cached program, or NULL */
    int n_rest;   /* run: the program's flags after the model */
    char **rest;
} Options;

static const char usage_text[] =
    "usage: gqac MODEL.gqa -o MODEL.c [--prefix NAME] [--header FILE.h] [--main]\n"
    "       gqac check MODEL.gqa\n"
    "       gqac info MODEL.gqa\n"
    "       gqac weights --random MODEL.gqa -o WEIGHTS [--seed N] [--format F] [--dtype T]\n"
    "       gqac run MODEL.gqa [--jit tcc|cc] --weights W [-p PROMPT] [program flags]\n"
    "       gqac import CONFIG.json|DIR|FILE.gguf|FILE.bin -o MODEL.gqa\n"
    "       gqac tune MODEL.gqa --weights W [--kv-heads 1,2,4] [--context 512,2048]\n"
    "                 [--eval TEXT --tokenizer T] [--max-ppl-increase 5%] [--jit cc|tcc]\n"
    "                 [--runs N] [--threads N] [--eval-tokens N] [--out PREFIX] [--emit DIR]\n"
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
    "  --embed-weights W  compile the checkpoint W in: FILE_weights.c (and _1.c, ...) beside\n"
    "                   FILE.c, and PREFIX_init_embedded needs no file\n"
    "  --size-bits N    the target's size_t width, 32 or 64 (default 64): sizes must fit\n"
    "  --seed N         seed of random weights (default 1)\n"
    "  --format F       weights file format: bin (llama2.c, default), gguf or safetensors\n"
    "  --dtype T        gguf and safetensors tensors as f32 (default), f16 or bf16\n"
    "  --help           this text\n"
    "  --version        gqac's version\n"
    "\n"
    "gqac run compiles MODEL.gqa with the system C compiler ($CC, else cc) into\n"
    "a program cached by content hash ($GQAC_CACHE, else ~/.cache/gqac) and runs\n"
    "it with the flags that follow; `gqac run MODEL.gqa --help` lists them.\n"
    "--jit (right after the model) compiles it in this process instead: tcc\n"
    "(libtcc, milliseconds, unoptimized) or cc (a cached shared object).\n"
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

/* Returns 0, or an exit status for main. */
static int parse_args(int argc, char **argv, Options *o) {
    int i = 1;
    *o = (Options){.command = "compile", .seed = 1, .size_bits = 64, .format = "bin", .dtype = "f32"};
    if (argc > 1 && !strcmp(argv[1], "tune")) {
        if (argc < 3 || argv[2][0] == '-')
            return usage_error("%s", "gqac tune needs the model first: gqac tune MODEL.gqa --weights W");
        o->command = "tune", o->input = argv[2], o->n_rest = argc - 3, o->rest = argv + 3;
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "run")) {
        if (argc < 3 || argv[2][0] == '-')
            return usage_error("%s", "gqac run needs the model first: gqac run MODEL.gqa [flags]");
        o->command = "run", o->input = argv[2], o->n_rest = argc - 3, o->rest = argv + 3;
        if (o->n_rest > 0 && !strcmp(o->rest[0], "--jit")) {
            if (o->n_rest < 2 || !jit_backend(o->rest[1]))
                return usage_error("--jit wants tcc or cc, not '%s'", o->n_rest < 2 ? "" : o->rest[1]);
            o->jit = o->rest[1], o->n_rest -= 2, o->rest += 2;
        }
        return 0;
    }
    if (i < argc && (!strcmp(argv[i], "check") || !strcmp(argv[i], "info") ||
                     !strcmp(argv[i], "weights") || !strcmp(argv[i], "import")))
        o->command = argv[i++];
    for (; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        bool takes_value = !strcmp(a, "-o") || !strcmp(a, "--prefix") || !strcmp(a, "--header") ||
                           !strcmp(a, "--seed") || !strcmp(a, "--size-bits") || !strcmp(a, "--target") ||
                           !strcmp(a, "--embed-weights") || !strcmp(a, "--format") ||
                           !strcmp(a, "--dtype");
        if (takes_value && !next)
            return usage_error("%s needs a value", a);
        if (!strcmp(a, "-o"))
            o->output = argv[++i];
        else if (!strcmp(a, "--prefix"))
            o->prefix = argv[++i];
        else if (!strcmp(a, "--header"))
            o->header = argv[++i];
        else if (!strcmp(a, "--main"))
            o->with_main = true;
        else if (!strcmp(a, "--target")) {
            const char *t = argv[++i];
            if (strcmp(t, "hosted") && strcmp(t, "freestanding"))
                return usage_error("--target is hosted or freestanding, not '%s'", t);
            o->code.target = !strcmp(t, "freestanding") ? TARGET_FREESTANDING : TARGET_HOSTED;
        } else if (!strcmp(a, "--embed-weights")) {
            o->embed = argv[++i];
            o->code.embed_weights = true;
        }
        else if (!strcmp(a, "--format")) {
            o->format = argv[++i];
            if (strcmp(o->format, "bin") && strcmp(o->format, "gguf") && strcmp(o->format, "safetensors"))
                return usage_error("--format is bin, gguf or safetensors, not '%s'", o->format);
        } else if (!strcmp(a, "--dtype")) {
            o->dtype = argv[++i];
            if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "f16") && strcmp(o->dtype, "bf16"))
                return usage_error("--dtype is f32, f16 or bf16, not '%s'", o->dtype);
        }
        else if (!strcmp(a, "--rope-table"))
            o->code.rope_table = true;
        else if (!strcmp(a, "--random"))
            o->random = true;
        else if (!strcmp(a, "--seed")) {
            if (!parse_number(argv[++i], &o->seed))
                return usage_error("--seed needs a non-negative integer, not '%s'", argv[i]);
        } else if (!strcmp(a, "--size-bits")) {
            if (!parse_number(argv[++i], &n) || (n != 32 && n != 64))
                return usage_error("--size-bits is 32 or 64, not '%s'", argv[i]);
            o->size_bits = (int)n;
        } else if (a[0] == '-' && a[1] != '\0')
            return usage_error("unknown option '%s'", a);
        else if (o->input)
            return usage_error("more than one input file ('%s')", a);
        else
            o->input = a;
    }
    if (!o->input)
        return usage_error("%s", "no input file");
    bool writes = !strcmp(o->command, "compile") || !strcmp(o->command, "weights") ||
                  !strcmp(o->command, "import");
    if (writes && !o->output)
        return usage_error("%s", "no output file: give -o FILE");
    if (o->embed && writes && !strcmp(o->output, "-"))
        return usage_error("%s", "--embed-weights writes files beside -o FILE.c: give a file, not -");
    if (o->with_main && o->code.target == TARGET_FREESTANDING)
        return usage_error("%s", "--main needs a hosted target (the runtime uses libc)");
    if (!strcmp(o->command, "weights") && !o->random)
        return usage_error("%s", "gqac weights needs --random (the only kind it writes)");
    return 0;
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

/* Output goes to a temporary file beside its destination and is renamed
 * into place only when every file of the run has been written, so a
 * failure never leaves half a file, or a new header beside an old .c. */
typedef struct {
    const char *path;
    char tmp[4096];
    const char *data;
    size_t len;
} Output;

/* path.tmpPID~: unique per process, so concurrent runs do not collide. */
static bool tmp_name(char *tmp, size_t size, const char *path) {
    if ((size_t)snprintf(tmp, size, "%s.tmp%ld~", path, (long)getpid()) < size)
        return true;
    errno = ENAMETOOLONG;
    return false;
}

static bool write_tmp(Output *o) {
    if (!strcmp(o->path, "-"))
        return fwrite(o->data, 1, o->len, stdout) == o->len && fflush(stdout) == 0;
    if (!tmp_name(o->tmp, sizeof o->tmp, o->path))
        return false;
    FILE *f = fopen(o->tmp, "wb");
    bool ok = f && fwrite(o->data, 1, o->len, f) == o->len;
    ok = f && fclose(f) == 0 && ok;
    return ok;
}

static bool write_files(Output *out, int n) {
    bool ok = true;
    int i;
    for (i = 0; i < n && ok; i++)
        if (!(ok = write_tmp(&out[i])))
            fprintf(stderr, "gqac: error: cannot write %s: %s\n", out[i].path, strerror(errno));
    for (int j = 0; j < n && ok; j++)
        if (strcmp(out[j].path, "-") && !(ok = rename(out[j].tmp, out[j].path) == 0))
            fprintf(stderr, "gqac: error: cannot write %s: %s\n", out[j].path, strerror(errno));
    for (int j = 0; j < n; j++)
        if (strcmp(out[j].path, "-") && out[j].tmp[0])
            remove(out[j].tmp); /* after a rename: nothing there */
    return ok;
}

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

#define MAX_WEIGHT_FILES 256
#define MAX_ROPE_TABLE (16u << 20) /* floats: 64 MiB of table is past any small target */

static int cmd_compile(const Options *o, const Model *m, Arena *a, Diag *d) {
    const char *prefix = o->prefix ? o->prefix : cname_mangle(a, m->name), *why;
    if ((why = cname_check(prefix))) {
        fprintf(stderr, "gqac: error: prefix '%s' is not usable: %s\n(see gqac --help)\n", prefix, why);
        return EXIT_USAGE;
    }
    const char *header = header_path(a, o, prefix), *inc = include_name(header);
    if (!inc)
        return usage_error("the header name '%s' cannot appear in #include", header);
    uint64_t table = (uint64_t)m->context * (uint64_t)m->head_dim;
    if (o->code.rope_table && table > MAX_ROPE_TABLE) {
        fprintf(stderr, "gqac: error: --rope-table would be %llu floats (context x head_dim), more than "
                        "the %u it allows; leave it out\n", (unsigned long long)table, MAX_ROPE_TABLE);
        return EXIT_USAGE;
    }
    Plan p;
    static Buf bufs[MAX_WEIGHT_FILES + 2];
    static Output files[MAX_WEIGHT_FILES + 2];
    int n_weights = 0;
    plan_model(m, prefix, o->code, &p, a);
    emit_c_model(&p, prefix, inc, o->with_main, &bufs[1], &bufs[0]);
    bool ok = !o->embed ||
              emit_weights(m, prefix, inc, o->embed, bufs + 2, MAX_WEIGHT_FILES, &n_weights, d);
    for (int i = 0; i < 2 + n_weights; i++) {
        const char *path = i == 0 ? header : i == 1 ? o->output : weights_path(a, o->output, i - 2);
        files[i] = (Output){path, "", bufs[i].data, bufs[i].len};
    }
    ok = ok && write_files(files, 2 + n_weights);
    for (int i = 0; i < 2 + n_weights; i++)
        buf_free(&bufs[i]);
    return ok ? 0 : EXIT_INPUT;
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

static int cmd_info(const Options *o, const Model *m, Arena *a) {
    Model v[3] = {*m, ir_with_kv_heads(m, m->heads), ir_with_kv_heads(m, 1)};
    Stats s[3];
    bool fits[3];
    for (int i = 0; i < 3; i++) { /* MHA's sizes may not fit where the model's do */
        Diag quiet = {0};
        fits[i] = ir_stats(&v[i], &s[i], &quiet, o->size_bits, PLAN_BATCH);
    }
    printf("%s: model \"%s\": %lld layers, dim %lld, %lld heads, %lld KV heads "
           "(group size %lld), head_dim %lld, context %lld\n\n",
           o->input, cname_escape(a, m->name), (long long)m->layers, (long long)m->dim,
           (long long)m->heads, (long long)m->kv_heads, (long long)(m->heads / m->kv_heads),
           (long long)m->head_dim, (long long)m->context);
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
    ROW(arena_printf(a, "KV cache at context %lld", (long long)m->context), kv_bytes, "B", 1024);
    ROW("instance memory (arena)", arena_bytes, "B", 1024);
    ROW("FLOPs per token at full context", flops_per_token, "FLOP", 1000);
    ROW("bytes per token at full context", bytes_per_token, "B", 1024);
#undef ROW
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : EXIT_INPUT;
}

/* Streamed (a checkpoint may be gigabytes) to a temporary file, renamed
 * into place when whole. */
static int cmd_weights(const Options *o, const Model *m) {
    if (strcmp(o->format, "bin"))
        return !strcmp(o->output, "-") ? usage_error("--format %s writes a file, not '-'", o->format)
                                       : export_random(m, o->seed, o->format, o->dtype, o->output);
    if (strcmp(o->dtype, "f32"))
        return usage_error("%s", "a llama2.c checkpoint (--format bin) holds f32 only");
    bool to_stdout = !strcmp(o->output, "-");
    char tmp[4096] = "";
    FILE *f = to_stdout ? stdout : tmp_name(tmp, sizeof tmp, o->output) ? fopen(tmp, "wb") : NULL;
    bool ok = f && weights_write_random(m, o->seed, f);
    if (f)
        ok = (to_stdout ? fflush(f) == 0 : fclose(f) == 0) && ok;
    ok = ok && (to_stdout || rename(tmp, o->output) == 0);
    if (!ok) {
        fprintf(stderr, "gqac: error: cannot write %s: %s\n", o->output, strerror(errno));
        if (tmp[0])
            remove(tmp);
        return EXIT_INPUT;
    }
    return 0;
}

static int run(const Options *o) {
    if (!strcmp(o->command, "import")) {
        Arena *a = arena_new();
        int rc = import_command(o->input, o->output, a);
        arena_free(a);
        return rc;
    }
    Source src = {!strcmp(o->input, "-") ? "<stdin>" : o->input, NULL, 0};
    char *text = read_source(o->input, &src.len);
    if (!text)
        return EXIT_INPUT;
    src.text = text;
    Arena *a = arena_new();
    Diag d;
    Model m;
    Stats s;
    diag_init(&d, &src, stderr);
    int rc = EXIT_INPUT;
    if (front_end(a, &d, &m, &s, o->size_bits)) {
        if (!strcmp(o->command, "compile"))
            rc = cmd_compile(o, &m, a, &d);
        else if (!strcmp(o->command, "info"))
            rc = cmd_info(o, &m, a);
        else if (!strcmp(o->command, "weights"))
            rc = cmd_weights(o, &m);
        else if (!strcmp(o->command, "run"))
            rc = o->jit ? cmd_jit_run(o, &m, a) : run_command(&m, o->input, o->n_rest, o->rest, a);
        else if (!strcmp(o->command, "tune"))
            rc = tune_command(&m, o->n_rest, o->rest, a);
        else
            rc = 0;
    } else if (d.errors > 1) {
        fprintf(stderr, "%d errors\n", d.errors);
    }
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
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("gqac %s\n", GQAC_VERSION);
            return 0;
        }
    }
    Options o;
    int rc = parse_args(argc, argv, &o);
    return rc ? rc : run(&o);
}
