/*
 * test_front.c: the front end's diagnostics, the C names and strings that
 * model names become, and the gqac command's exit codes.
 *
 *   ./build/test_front [DIAG_DIR [EXAMPLES_DIR]]      (defaults: tests/diag examples)
 *
 * DIAG_DIR holds golden cases: each NAME.gqa lists the diagnostics it must
 * produce, in order, as comment lines
 *
 *   # expect: LINE:COL: error: MESSAGE
 *   # expect: LINE:COL: note: MESSAGE
 *
 * (the diagnostic without its leading "FILE:").  A case with no expect
 * line must be accepted silently.  Files named *.size32.gqa are checked
 * for a target with a 32-bit size_t.  The gqac binary for the CLI tests is
 * $GQAC (default build/gqac); scratch files go to a mkdtemp directory.
 */
#include "cunit_run.h"
#include "gqac.h"
#include "testing.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *diag_dir = "tests/diag";
static const char *examples_dir = "examples";
static const char *gqac;

/* ---- helpers ---- */

typedef struct {
    char **v;
    size_t n, cap;
} Lines;

static void lines_push(Lines *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    l->v[l->n] = malloc(n + 1);
    if (!l->v[l->n])
        abort();
    memcpy(l->v[l->n], s, n);
    l->v[l->n][n] = '\0';
    l->n++;
}

static void lines_free(Lines *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    *l = (Lines){0};
}

/* Runs front_end on text; the diagnostics (a malloc'd string) in *out. */
typedef struct {
    bool ok;
    int errors;
    char *out;
    Model m;
    Stats s;
} FrontResult;

static FrontResult run_front(const char *name, const char *text, size_t len, int size_bits) {
    FrontResult r = {0};
    size_t out_len = 0;
    FILE *mem = open_memstream(&r.out, &out_len);
    if (!mem)
        abort();
    Source src = {name, text, len};
    Diag d;
    diag_init(&d, &src, mem);
    Arena *a = arena_new();
    r.ok = front_end(a, &d, &r.m, &r.s, size_bits);
    r.m.name = NULL; /* it lived in the arena */
    r.errors = d.errors;
    arena_free(a);
    fclose(mem);
    return r;
}

/* ---- golden diagnostics ---- */

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.gqa files of dir, sorted, NULL-terminated; NULL if dir is unreadable. */
static char **list_gqa(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    Lines l = {0};
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n > 4 && !strcmp(e->d_name + n - 4, ".gqa"))
            lines_push(&l, e->d_name, n);
    }
    closedir(d);
    lines_push(&l, "", 0); /* room for the terminator */
    free(l.v[--l.n]);
    l.v[l.n] = NULL;
    qsort(l.v, l.n, sizeof *l.v, cmp_names);
    *count = l.n;
    return l.v;
}

static void free_list(char **v) {
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* "# expect: X" lines, X collected in order. */
static void expected_lines(const char *text, size_t len, Lines *exp) {
    static const char tag[] = "# expect: ";
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        if ((size_t)(eol - p) >= sizeof tag - 1 && !memcmp(p, tag, sizeof tag - 1))
            lines_push(exp, p + sizeof tag - 1, (size_t)(eol - p) - (sizeof tag - 1));
        p = eol + 1;
    }
}

/* The diagnostic lines of out ("NAME:..."), with "NAME:" and one space
 * (a diagnostic with no position) stripped. */
static void actual_lines(const char *out, const char *name, Lines *act) {
    size_t nlen = strlen(name);
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        const char *eol = nl ? nl : p + strlen(p);
        if ((size_t)(eol - p) > nlen && !strncmp(p, name, nlen) && p[nlen] == ':') {
            const char *s = p + nlen + 1;
            if (*s == ' ')
                s++;
            lines_push(act, s, (size_t)(eol - s));
        }
        p = *eol ? eol + 1 : eol;
    }
}

static void print_lines(const char *title, const Lines *l) {
    printf("    %s (%zu):\n", title, l->n);
    for (size_t i = 0; i < l->n; i++)
        printf("      %s\n", l->v[i]);
}

static bool check_case(const char *dir, const char *file) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) {
        printf("\n  %s: cannot read\n", path);
        return false;
    }
    int size_bits = strstr(file, ".size32.") ? 32 : 64;
    FrontResult r = run_front(path, text, len, size_bits);
    Lines exp = {0}, act = {0};
    expected_lines(text, len, &exp);
    actual_lines(r.out, path, &act);
    int exp_errors = 0;
    for (size_t i = 0; i < exp.n; i++) {
        const char *colon = strstr(exp.v[i], "error: ");
        const char *note = strstr(exp.v[i], "note: ");
        if (colon && (!note || colon < note))
            exp_errors++;
    }
    bool same = exp.n == act.n;
    for (size_t i = 0; same && i < exp.n; i++)
        same = !strcmp(exp.v[i], act.v[i]);
    bool ok = same && r.errors == exp_errors && r.ok == (exp_errors == 0);
    /* A clean case prints nothing at all, not even a stray line. */
    if (exp.n == 0 && r.out[0] != '\0')
        ok = false;
    if (!ok) {
        printf("\n  FAILED %s (size_bits %d): %d errors counted, %d expected, front_end %s\n", path,
               size_bits, r.errors, exp_errors, r.ok ? "succeeded" : "failed");
        print_lines("expected", &exp);
        print_lines("got", &act);
        printf("    full output:\n%s", r.out);
    }
    lines_free(&exp);
    lines_free(&act);
    free(r.out);
    free(text);
    return ok;
}

static void test_golden_cases(void) {
    size_t n = 0;
    char **files = list_gqa(diag_dir, &n);
    CU_ASSERT_PTR_NOT_NULL(files);
    CU_ASSERT(n >= 50); /* the directory really is the case directory */
    size_t passed = 0;
    for (size_t i = 0; files && i < n; i++) {
        bool ok = check_case(diag_dir, files[i]);
        CU_ASSERT(ok);
        passed += ok;
    }
    printf("\n  golden cases: %zu of %zu pass ", passed, n);
    free_list(files);
}

/* One whole diagnostic, verbatim: the echoed line and the caret line. */
static void test_full_diagnostic(void) {
    static const char text[] =
        "model \"t\" {\n"
        "    vocab = 32\n"
        "    dim = 16\n"
        "    layers = 1\n"
        "    context = 8\n"
        "    attention {\n"
        "        heads = 8\n"
        "\tkv_heads = 3 # a tab before\n"
        "        head_dim = 2\n"
        "    }\n"
        "    ffn swiglu {\n"
        "        hidden = 8 * vocab - 3\n"
        "        hidden = 1\n"
        "    }\n"
        "}\n";
    FrontResult r = run_front("m.gqa", text, sizeof text - 1, 64);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_EQUAL(r.errors, 1); /* sema stops before the shape checks */
    static const char want_dup[] =
        "m.gqa:13:9: error: duplicate key 'hidden'\n"
        "            hidden = 1\n"
        "            ^~~~~~\n"
        "m.gqa:12:9: note: first set here\n"
        "            hidden = 8 * vocab - 3\n"
        "            ^~~~~~\n";
    if (strcmp(r.out, want_dup) != 0)
        printf("\n  got:\n%s  want:\n%s", r.out, want_dup);
    CU_ASSERT_STRING_EQUAL(r.out, want_dup);
    free(r.out);

    /* A tab before the span is echoed as a tab in the caret line too. */
    char *no_dup = strdup(text);
    char *second = strstr(no_dup, "        hidden = 1\n");
    memcpy(second, "      # idden = 1\n", 18);
    r = run_front("m.gqa", no_dup, strlen(no_dup), 64);
    static const char want_tab[] =
        "m.gqa:8:13: error: kv_heads (3) must divide heads (8)\n"
        "    \tkv_heads = 3 # a tab before\n"
        "    \t           ^\n"
        "m.gqa:8:13: note: kv_heads may be one of: 1, 2, 4, 8\n"
        "    \tkv_heads = 3 # a tab before\n"
        "    \t           ^\n";
    if (strcmp(r.out, want_tab) != 0)
        printf("\n  got:\n%s  want:\n%s", r.out, want_tab);
    CU_ASSERT_STRING_EQUAL(r.out, want_tab);
    CU_ASSERT_EQUAL(r.errors, 1);
    free(r.out);
    free(no_dup);

    /* A truly empty file: the error is at 1:1 on the (empty) first line. */
    r = run_front("e.gqa", "", 0, 64);
    CU_ASSERT_STRING_EQUAL(r.out, "e.gqa:1:1: error: expected 'model' before end of file\n    \n    ^\n");
    CU_ASSERT_EQUAL(r.errors, 1);
    free(r.out);
}

/* "\n" line ends of text replaced by eol, after prefix (a BOM or ""). */
static char *with_line_ends(const char *text, const char *eol, const char *prefix) {
    size_t n = strlen(prefix);
    char *out = malloc(strlen(text) * 2 + n + 1);
    if (!out)
        abort();
    memcpy(out, prefix, n);
    for (const char *p = text; *p; p++) {
        if (*p == '\n')
            for (const char *e = eol; *e; e++)
                out[n++] = *e;
        else
            out[n++] = *p;
    }
    out[n] = '\0';
    return out;
}

/* CRLF, CR-only and a UTF-8 byte order mark are accepted, as C compilers
 * accept them, with the same lines, columns and carets as plain "\n". */
static void test_line_endings(void) {
    static const char text[] =
        "model \"t\" { # a comment\n"
        "    vocab = 32\n"
        "    dim = 16 layers = 1 context = 8\n"
        "    attention {\n"
        "        heads = 4\n"
        "        kv_heads = 3\n"
        "    }\n"
        "    ffn swiglu { hidden = 32 }\n"
        "}\n";
    static const char want[] =
        "m.gqa:6:20: error: kv_heads (3) must divide heads (4)\n"
        "            kv_heads = 3\n"
        "                       ^\n"
        "m.gqa:6:20: note: kv_heads may be one of: 1, 2, 4\n"
        "            kv_heads = 3\n"
        "                       ^\n";
    static const struct {
        const char *eol, *prefix;
    } forms[] = {{"\n", ""}, {"\r\n", ""}, {"\r", ""}, {"\n", "\xef\xbb\xbf"}, {"\r\n", "\xef\xbb\xbf"},
                 {"\r", "\xef\xbb\xbf"}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char *src = with_line_ends(text, forms[i].eol, forms[i].prefix);
        FrontResult r = run_front("m.gqa", src, strlen(src), 64);
        if (strcmp(r.out, want) != 0)
            printf("\n  line ends %zu: got:\n%s", i, r.out);
        CU_ASSERT_STRING_EQUAL(r.out, want);
        CU_ASSERT_EQUAL(r.errors, 1);
        free(r.out);
        /* Fixed, the same file is accepted silently. */
        char *kv = strstr(src, "kv_heads = 3");
        kv[11] = '2';
        r = run_front("m.gqa", src, strlen(src), 64);
        CU_ASSERT(r.ok && r.out[0] == '\0');
        if (!r.ok)
            printf("\n  line ends %zu: rejected:\n%s", i, r.out);
        free(r.out);
        free(src);
    }
    /* An error on the last line of a CR-only file, and an unterminated
     * string that a CR ends. */
    static const char cr_end[] = "model \"t\" {\r  vocab = 32\r  dim =\r", cr_string[] = "model \"t\r\" {}\r";
    FrontResult r = run_front("m.gqa", cr_end, sizeof cr_end - 1, 64);
    CU_ASSERT_STRING_EQUAL(r.out, "m.gqa:3:8: error: expected an expression before end of file\n"
                                  "      dim =\n"
                                  "           ^\n"
                                  "m.gqa:1:11: note: to match this '{'\n"
                                  "    model \"t\" {\n"
                                  "              ^\n");
    free(r.out);
    r = run_front("m.gqa", cr_string, sizeof cr_string - 1, 64);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "m.gqa:1:7: error: missing terminating '\"' character\n"));
    free(r.out);
}

/* Messages and echoed lines stay short, whatever the input's tokens: a
 * 10 MB literal or name is cut, its line shown as a window at the caret. */
static void test_long_tokens(void) {
    enum { BIG = 10 * 1000 * 1000 };
    static const char *const forms[] = {"model \"t\" {\n    vocab = %s\n}\n", "model \"t\" {\n    vocab = 1.%se999\n}\n",
                                        "model \"t\" {\n    %s = 1\n}\n", "model \"t\" {\n    vocab = 1 + %s\n}\n"};
    static const char *const want[] = {"m.gqa:2:13: error: integer literal '9999999999999999999999999999999999999999...' is too large",
                                       "m.gqa:2:13: error: floating literal '1.99999999999999999999999999999999999999...' is out of range",
                                       "m.gqa:2:5: error: unknown key 'z", "m.gqa:2:17: error: unknown name 'z"};
    char *lit = malloc(BIG + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lit);
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        memset(lit, f < 2 ? '9' : 'z', BIG);
        lit[BIG] = '\0';
        size_t n = strlen(forms[f]) + BIG;
        char *text = malloc(n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        snprintf(text, n, forms[f], lit);
        FrontResult r = run_front("m.gqa", text, strlen(text), 64);
        CU_ASSERT_FALSE(r.ok);
        CU_ASSERT(strlen(r.out) < 4000);
        if (strncmp(r.out, want[f], strlen(want[f])) != 0)
            printf("\n  long token %zu: got:\n%.2000s", f, r.out);
        CU_ASSERT_NSTRING_EQUAL(r.out, want[f], strlen(want[f]));
        for (const char *line = r.out; *line;) {
            const char *nl = strchr(line, '\n');
            CU_ASSERT_FATAL(nl != NULL);
            CU_ASSERT(nl - line <= 1100);
            line = nl + 1;
        }
        free(r.out);
        free(text);
    }
    free(lit);
}

static void test_examples(void) {
    size_t n = 0;
    char **files = list_gqa(examples_dir, &n);
    CU_ASSERT_PTR_NOT_NULL(files);
    CU_ASSERT(n > 0);
    for (size_t i = 0; files && i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", examples_dir, files[i]);
        size_t len;
        char *text = test_read_file(path, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        FrontResult r = run_front(path, text, len, 64);
        bool ok = r.ok && r.errors == 0 && r.out[0] == '\0';
        if (!ok)
            printf("\n  FAILED %s:\n%s", path, r.out);
        CU_ASSERT(ok);
        CU_ASSERT(r.s.params > 0);
        free(r.out);
        free(text);
    }
    free_list(files);
}

/* ---- gqa_source.c: weight types round trip ---- */

/* Parses text into m (living in a) and says whether it was accepted. */
static bool parse_model(Arena *a, const char *text, Model *m) {
    Source src = {"rt.gqa", text, strlen(text)};
    Diag d;
    Stats s;
    diag_init(&d, &src, stdout);
    return front_end(a, &d, m, &s, 64);
}

/* parse(gqa_source(parse(text))) has text's types, tensor by tensor and
 * layer by layer, and its window; the written text has want in it.
 * attention: lines added to the attention block. */
static void check_round_trip(const char *attention, const char *types, bool tied, const char *want) {
    char text[2048];
    snprintf(text, sizeof text,
             "model \"rt\" {\n vocab = 32\n dim = 256\n layers = 10\n context = 8\n"
             " tie_embeddings = %s\n attention {\n heads = 4\n kv_heads = 2\n%s }\n"
             " ffn swiglu {\n hidden = 512\n }\n dtype {\n%s\n }\n}\n", tied ? "true" : "false",
             attention, types);
    Arena *a = arena_new();
    Model m1, m2;
    CU_ASSERT_FATAL(parse_model(a, text, &m1));
    Buf b = {0};
    const char *no_comments[] = {NULL};
    gqa_source(&b, &m1, no_comments);
    char *written = arena_strndup(a, b.data, b.len);
    buf_free(&b);
    bool ok = parse_model(a, written, &m2);
    CU_ASSERT(ok);
    if (!ok || !strstr(written, want))
        printf("\n  wanted '%s' in:\n%s", want, written);
    CU_ASSERT(strstr(written, want) != NULL);
    CU_ASSERT_EQUAL(m1.weight_type, m2.weight_type);
    CU_ASSERT_EQUAL(m1.kv_type, m2.kv_type);
    CU_ASSERT_EQUAL(m1.window, m2.window);
    CU_ASSERT_EQUAL(m1.sinks, m2.sinks);
    CU_ASSERT_EQUAL(m1.global_every, m2.global_every);
    for (int k = 0; ok && k < TK_COUNT; k++)
        for (int64_t l = 0; l < m1.layers; l++)
            CU_ASSERT_EQUAL(ir_tensor_type(&m1, (TensorKind)k, l), ir_tensor_type(&m2, (TensorKind)k, l));
    arena_free(a);
}

static void check_types_round_trip(const char *types, bool tied, const char *want) {
    check_round_trip("", types, tied, want);
}

static void test_types_round_trip(void) {
    check_types_round_trip("", false, "    norm rmsnorm {\n        eps = 1e-05\n    }\n}\n");
    check_types_round_trip("weights = q8_0", false, "    dtype {\n        weights     = q8_0\n    }\n");
    check_types_round_trip("weights = q4_k\n attn_v = q6_k\n output = q6_k\n token_embd = q4_0\n"
                           "ffn_down = [q6_k, q6_k, q4_k, q4_k, q6_k, q4_k, q4_k, q6_k, q4_k, q6_k,]\n"
                           "attn_q = [f16, f16, f16, f16, f16, f16, f16, f16, f16, f16]\n"
                           "ffn_up = [q4_k, q4_k, q4_k, q4_k, q4_k, q4_k, q4_k, q4_k, q4_k, q4_k]",
                           false,
                           "        attn_q      = f16\n        attn_v      = q6_k\n"
                           "        ffn_down    = [q6_k, q6_k, q4_k, q4_k, q6_k, q4_k, q4_k, q6_k,\n"
                           "                       q4_k, q6_k]\n        output      = q6_k\n    }\n");
    /* a tied model's classifier is token_embd: no output key */
    check_types_round_trip("weights = bf16\n token_embd = q8_0\n attn_k = [bf16, bf16, bf16, bf16, "
                           "bf16, bf16, bf16, bf16, bf16, q8_0]", true,
                           "        weights     = bf16\n        token_embd  = q8_0\n"
                           "        attn_k      = [bf16, bf16, bf16, bf16, bf16, bf16, bf16, bf16,\n"
                           "                       bf16, q8_0]\n    }\n");
    /* the KV cache's type and the sliding window */
    check_round_trip(" window = 6\n sinks = 2\n global_every = 5\n", "kv_cache = q8_0", false,
                     "        rope_pairs = adjacent\n        window     = 6\n        sinks      = 2\n"
                     "        global_every = 5\n    }\n");
    check_round_trip(" window = 8\n", "kv_cache = bf16", false,
                     "        window     = 8\n    }\n");
    check_round_trip("", "kv_cache = f16", false,
                     "    dtype {\n        weights     = f32\n        kv_cache    = f16\n    }\n");
}

/* ---- cname.c ---- */

static void test_cname_check(void) {
    CU_ASSERT_PTR_NULL(cname_check("tiny"));
    CU_ASSERT_PTR_NULL(cname_check("llama_3_2_1b"));
    CU_ASSERT_PTR_NULL(cname_check("_x"));
    CU_ASSERT_PTR_NULL(cname_check("gqam"));       /* only gqa_ and gqa itself are taken */
    CU_ASSERT_PTR_NULL(cname_check("m_int"));
    CU_ASSERT_PTR_NULL(cname_check("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv")); /* 48 */
    CU_ASSERT_PTR_NOT_NULL(cname_check("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvw"));
    CU_ASSERT_PTR_NOT_NULL(cname_check(""));
    CU_ASSERT_PTR_NOT_NULL(cname_check("int"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("while"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("restrict"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("__x"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("_X"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("9lives"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("gqa"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("gqr"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("gqa_model"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("gqr_main"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("a-b"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("a b"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("caf\xc3\xa9"));
    CU_ASSERT_PTR_NOT_NULL(cname_check("x\"y"));
}

static void test_cname_mangle(void) {
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"tiny", "tiny"},
        {"Llama-3.2-1B", "llama_3_2_1b"},
        {"Mistral 7B v0.1", "mistral_7b_v0_1"},
        {"x\"; int evil; /*", "x_int_evil"},
        {"int", "m_int"},
        {"INT", "m_int"},
        {"__x", "m_x"},
        {"_X", "m_x"},
        {"7b", "m_7b"},
        {"gqa", "m_gqa"},
        {"gqa_x", "m_gqa_x"},
        {"GQR-runtime", "m_gqr_runtime"},
        {"caf\xc3\xa9", "caf"},
        {"\xc3\xa9t\xc3\xa9", "m_t"},
        {"a\\b?\?=c*/d\ne", "a_b_c_d_e"},
        {"--", "m"},
        {"?\??", "m"},
    };
    Arena *a = arena_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = cname_mangle(a, cases[i].in);
        if (strcmp(got, cases[i].out) != 0)
            printf("\n  cname_mangle(\"%s\") = \"%s\", want \"%s\"", cname_escape(a, cases[i].in), got,
                   cases[i].out);
        CU_ASSERT_STRING_EQUAL(got, cases[i].out);
        CU_ASSERT_PTR_NULL(cname_check(got));
    }
    /* Whatever the name, the result is a usable prefix. */
    static const char *const hostile[] = {
        "", "_", "__", "1", "\x01\x02", "\xff\xfe", "do", "for", "bool", "true",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "9999999999999999999999999999999999999999999999999999999999999999",
        "_Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "gqa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        const char *got = cname_mangle(a, hostile[i]);
        const char *why = cname_check(got);
        if (why)
            printf("\n  cname_mangle(\"%s\") = \"%s\": %s", cname_escape(a, hostile[i]), got, why);
        CU_ASSERT_PTR_NULL(why);
    }
    arena_free(a);
}

static void test_cname_escape_text(void) {
    Arena *a = arena_new();
    CU_ASSERT_STRING_EQUAL(cname_escape(a, "tiny"), "tiny");
    CU_ASSERT_STRING_EQUAL(cname_escape(a, "a\"b"), "a\\\"b");
    CU_ASSERT_STRING_EQUAL(cname_escape(a, "a\\b"), "a\\\\b");
    CU_ASSERT_STRING_EQUAL(cname_escape(a, "?\?="), "\\?\\?=");
    CU_ASSERT_STRING_EQUAL(cname_escape(a, "*/"), "*/");
    CU_ASSERT_STRING_EQUAL(cname_escape(a, "a\nb"), "a\\012b");
    CU_ASSERT_STRING_EQUAL(cname_escape(a, "\xc3\xa9"), "\\303\\251");
    CU_ASSERT_STRING_EQUAL(cname_escape(a, "\x7f" "1"), "\\1771"); /* octal is at most 3 digits */
    CU_ASSERT_STRING_EQUAL(cname_escape(a, ""), "");
    arena_free(a);
}

/* The escaped literal, compiled by a C compiler, gives back the bytes. */
static void test_cname_escape_compiles(void) {
    static const char *const names[] = {
        "x\"; int evil; /*",
        "back\\slash\\",
        "?\?=?\?/?\?'?\?(?\?)?\?!?\?<?\?>?\?-",
        "*/ /* // \"",
        "tab\there\nnewline\r\x01\x1b[31m",
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xff\xfe",
        "\1770123 \\x41 \\101 %s %n", /* DEL, then digits an escape must not swallow */
        "'single' and `back`",
    };
    Arena *a = arena_new();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char src[256], bin[256], out[256], cmd[2048];
        snprintf(src, sizeof src, "%s/esc%zu.c", test_dir(), i);
        snprintf(bin, sizeof bin, "%s/esc%zu", test_dir(), i);
        snprintf(out, sizeof out, "%s/esc%zu.out", test_dir(), i);
        char *prog = arena_printf(a,
                                  "#include <stdio.h>\n"
                                  "#include <string.h>\n"
                                  "static const char s[] = \"%s\";\n"
                                  "int main(void) {\n"
                                  "    return fwrite(s, 1, strlen(s), stdout) == strlen(s) ? 0 : 1;\n"
                                  "}\n",
                                  cname_escape(a, names[i]));
        CU_ASSERT_FATAL(test_write_text(src, prog));
        snprintf(cmd, sizeof cmd, "cc -std=c99 -Wall -Wextra -Wpedantic -Werror -Wtrigraphs -o %s %s && %s > %s",
                 bin, src, bin, out);
        int rc = test_sh("%s", cmd);
        CU_ASSERT_EQUAL(rc, 0);
        size_t len = 0;
        char *got = test_read_file(out, &len);
        bool same = got && len == strlen(names[i]) && !memcmp(got, names[i], len);
        if (!same)
            printf("\n  escape of name %zu does not round-trip (see %s)", i, src);
        CU_ASSERT(same);
        free(got);
    }
    arena_free(a);
}

/* ---- the gqac command ---- */

static const char good_model[] =
    "model \"%s\" {\n"
    "    vocab = 32\n"
    "    dim = 16\n"
    "    layers = 1\n"
    "    context = 8\n"
    "    attention {\n"
    "        heads = 4\n"
    "        kv_heads = 2\n"
    "    }\n"
    "    ffn swiglu {\n"
    "        hidden = 32\n"
    "    }\n"
    "}\n";

/* "file" in the test folder (in the arena: callers hold many). */
static char *tmp_path(Arena *a, const char *file) {
    return arena_printf(a, "%s/%s", test_dir(), file);
}

static int gqac_run(Arena *a, const char *args) {
    return test_sh("%s", arena_printf(a, "%s %s >%s/cli.out 2>%s/cli.err", gqac, args, test_dir(), test_dir()));
}

/* Hostile names (as .gqa string bodies, escaped for the .gqa lexer) and
 * the bytes they stand for. */
static void test_hostile_names_compile(void) {
    static const struct {
        const char *gqa, *bytes;
    } names[] = {
        {"x\\\"; int evil; /*", "x\"; int evil; /*"},
        {"*/ #include <stdlib.h> /*", "*/ #include <stdlib.h> /*"},
        {"?\?=define x ?\?/", "?\?=define x ?\?/"},
        {"end\\\\", "end\\"},
        {"line\\nbreak\\tand tab", "line\nbreak\tand tab"},
        {"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac"},
        {"int", "int"},
        {"gqa", "gqa"},
        {"__reserved", "__reserved"},
        {"1984", "1984"},
    };
    Arena *a = arena_new();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *gqa = tmp_path(a, arena_printf(a, "hostile%zu.gqa", i));
        char *c = tmp_path(a, arena_printf(a, "hostile%zu.c", i));
        CU_ASSERT_FATAL(test_write_text(gqa, arena_printf(a, good_model, names[i].gqa)));
        int rc = gqac_run(a, arena_printf(a, "%s -o %s", gqa, c));
        CU_ASSERT_EQUAL(rc, 0);
        if (rc != 0) {
            printf("\n  gqac failed on hostile name %zu", i);
            continue;
        }
        int cc = test_sh("cd %s && gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -Wtrigraphs -c "
                         "-o hostile%zu.o hostile%zu.c",
                         test_dir(), i, i);
        CU_ASSERT_EQUAL(cc, 0);
        if (cc != 0)
            printf("\n  the C for hostile name %zu does not compile: %s", i, c);
        size_t len;
        char *text = test_read_file(c, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        char *def = arena_printf(a, "#define GQ_NAME \"%s\"\n", cname_escape(a, names[i].bytes));
        CU_ASSERT_PTR_NOT_NULL(strstr(text, def));
        /* The name's raw text never reaches the C. */
        if (strchr(names[i].bytes, '"'))
            CU_ASSERT_PTR_NULL(strstr(text, names[i].bytes));
        free(text);
    }
    /* Link one and read the api's .name back: the string equals the name. */
    static const char reader[] =
        "#include <stdio.h>\n"
        "#include <string.h>\n"
        "#include \"hostile0.h\"\n"
        "int main(void) {\n"
        "    const char *want = \"x\\\"; int evil; /*\";\n"
        "    return strcmp(x_int_evil_api.name, want) == 0 ? 0 : 1;\n"
        "}\n";
    CU_ASSERT_FATAL(test_write_text(tmp_path(a, "reader.c"), reader));
    int rc = test_sh("cd %s && gcc -std=c99 -w -c reader.c -o reader.o 2>reader.err && "
                     "gcc reader.o hostile0.o -o reader -lm -lpthread 2>>reader.err && ./reader",
                     test_dir());
    if (rc != 0)
        printf("\n  reading the api name back failed (%d): see %s/reader.err", rc, test_dir());
    CU_ASSERT_EQUAL(rc, 0);
    arena_free(a);
}

/* plan_check: a model sema accepts prints only sane constants; models
 * that bypass sema's bounds are caught, hole by hole. */
static void test_plan_check(void) {
    static const char edge[] =
        "model \"edge\" { vocab = 32 dim = 16 layers = 1 context = 2147483616\n"
        "  attention { heads = 2 kv_heads = 1 head_dim = 8 rope_theta = 1 }\n"
        "  ffn swiglu { hidden = 32 } norm rmsnorm { eps = 1.1754943508222875e-38 } }\n";
    Arena *a = arena_new();
    Source src = {"edge.gqa", edge, sizeof edge - 1};
    Diag d;
    diag_init(&d, &src, stdout);
    Model m;
    Stats st;
    CU_ASSERT_FATAL(front_end(a, &d, &m, &st, 64));
    static const struct {
        const char *hole;
        Target target;
        int64_t context, head_dim;
        double theta, eps;
    } cases[] = {
        {NULL, TARGET_HOSTED, 0, 0, 0, 0},
        {NULL, TARGET_FREESTANDING, 0, 0, 0, 0},
        {NULL, TARGET_HOSTED, 0, 256, 1e-300, 0}, /* 1e298 radians a position, but finite */
        {"GQ_CONTEXT", TARGET_HOSTED, INT32_MAX, 0, 0, 0},
        {"GQ_ROPE_FREQS", TARGET_HOSTED, 0, 256, 1e-320, 0}, /* inf */
        {"GQ_ROPE_STEPS", TARGET_FREESTANDING, 0, 0, 0.01, 0},
        {"GQ_NORM_EPS", TARGET_HOSTED, 0, 0, 0, 1e-50},
        {"GQ_NORM_EPS", TARGET_HOSTED, 0, 0, 0, 1e39},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Model v = m;
        v.context = cases[i].context ? cases[i].context : v.context;
        v.head_dim = cases[i].head_dim ? cases[i].head_dim : v.head_dim;
        v.rope_theta = cases[i].theta ? cases[i].theta : v.rope_theta;
        v.norm_eps = cases[i].eps ? cases[i].eps : v.norm_eps;
        Plan p;
        plan_model(&v, "edge", (CodeOptions){.target = cases[i].target}, &p, a);
        const char *bad = plan_check(&p);
        if (cases[i].hole ? !bad || strcmp(bad, cases[i].hole) : bad != NULL)
            printf("\n  plan_check case %zu: %s, want %s", i, bad ? bad : "NULL",
                   cases[i].hole ? cases[i].hole : "NULL");
        CU_ASSERT(cases[i].hole ? bad && !strcmp(bad, cases[i].hole) : bad == NULL);
    }
    arena_free(a);
}

/* Models at sema's edges compile without a warning, hosted and
 * freestanding: context 2^31 - 32 (the int arithmetic of the cache's
 * blocks), rope_theta 1 (the fastest fixed-point steps) with Llama 3
 * scaling, and the smallest normal float eps. */
static void test_edge_models_compile(void) {
    static const char edge[] =
        "model \"edge\" { vocab = 32 dim = 16 layers = 1 context = 2147483616\n"
        "  attention { heads = 2 kv_heads = 1 head_dim = 8 rope_theta = 1 }\n"
        "  ffn swiglu { hidden = 32 } norm rmsnorm { eps = 1.1754943508222875e-38 }\n"
        "  rope_scaling llama3 { factor = 8 low_freq_factor = 1 high_freq_factor = 4\n"
        "    original_context = 8192 } }\n";
    Arena *a = arena_new();
    char *gqa = tmp_path(a, "edge.gqa");
    CU_ASSERT_FATAL(test_write_text(gqa, edge));
    static const char *const targets[] = {"hosted", "freestanding"};
    for (int i = 0; i < 2; i++) {
        char *c = tmp_path(a, arena_printf(a, "edge_%s.c", targets[i]));
        CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --target %s", gqa, c, targets[i])), 0);
        int rc = test_sh("gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -fsyntax-only %s %s",
                         i ? "-ffreestanding" : "", c);
        if (rc != 0)
            printf("\n  the %s C of the edge model does not compile: %s", targets[i], c);
        CU_ASSERT_EQUAL(rc, 0);
    }
    arena_free(a);
}

static void test_cli_exit_codes(void) {
    Arena *a = arena_new();
    char *good = tmp_path(a, "good.gqa"), *bad = tmp_path(a, "bad.gqa");
    char *out = tmp_path(a, "out.c"), *hdr = tmp_path(a, "out.h");
    CU_ASSERT_FATAL(test_write_text(good, arena_printf(a, good_model, "cli")));
    CU_ASSERT_FATAL(test_write_text(bad, "model \"bad\" {\n    vocab = 32\n}\n"));

    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s", good, out)), 0);
    CU_ASSERT(test_exists(out) && test_exists(hdr));
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check %s", good)), 0);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "info %s", good)), 0);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check --size-bits 32 %s", good)), 0);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check - < %s", good)), 0);
    CU_ASSERT_EQUAL(gqac_run(a, "--help"), 0);
    CU_ASSERT_EQUAL(gqac_run(a, "-h"), 0);
    CU_ASSERT_EQUAL(gqac_run(a, "--version"), 0);

    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check %s", bad)), 1);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "info %s", bad)), 1);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check %s/no-such-file.gqa", test_dir())), 1);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s/no-such-file.gqa -o %s/x.c", test_dir(), test_dir())), 1);

    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check --frobnicate %s", good)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s", good)), 2); /* no -o */
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o", good)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --prefix 9bad", good, out)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --prefix int", good, out)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --prefix gqa_x", good, out)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check --size-bits 7 %s", good)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check --size-bits -64 %s", good)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "check %s %s", good, good)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, "check"), 2);
    CU_ASSERT_EQUAL(gqac_run(a, ""), 2);

    /* Failed compiles leave no files, and none half written. */
    const char *fails[] = {
        "%s -o %s/f0.c",                 /* bad .gqa */
        "%s -o %s/f0.c --prefix 9bad",   /* bad prefix */
    };
    for (int i = 0; i < 2; i++) {
        const char *in = i == 0 ? bad : good;
        int rc = gqac_run(a, arena_printf(a, fails[i], in, test_dir()));
        CU_ASSERT_NOT_EQUAL(rc, 0);
        CU_ASSERT_FALSE(test_exists(tmp_path(a, "f0.c")));
        CU_ASSERT_FALSE(test_exists(tmp_path(a, "f0.h")));
        CU_ASSERT_NOT_EQUAL(test_sh("ls %s | grep -q tmp", test_dir()), 0);
    }
    /* A failed compile leaves an earlier good output alone. */
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s", good, out)), 0);
    size_t before_len, after_len;
    char *before = test_read_file(out, &before_len);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s", bad, out)), 1);
    char *after = test_read_file(out, &after_len);
    CU_ASSERT(before && after && before_len == after_len && !memcmp(before, after, before_len));
    free(before);
    free(after);
    /* An unwritable output directory: exit 1, nothing left behind. */
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s/no-such-dir/x.c", good, test_dir())), 1);
    arena_free(a);
}

/* --target and --embed-weights: their usage errors, a checkpoint that does
 * not match the model (named, and nothing written), and the files a good
 * embedding writes. */
static void test_cli_targets_and_embedding(void) {
    Arena *a = arena_new();
    char *good = tmp_path(a, "emb.gqa"), *other = tmp_path(a, "other.gqa");
    char *w = tmp_path(a, "emb.bin"), *w_other = tmp_path(a, "other.bin"), *out = tmp_path(a, "emb.c");
    CU_ASSERT_FATAL(test_write_text(good, arena_printf(a, good_model, "emb")));
    CU_ASSERT_FATAL(test_write_text(other, "model \"other\" { vocab = 32 dim = 8 layers = 1 context = 8\n"
                                      "  attention { heads = 2 kv_heads = 1 } ffn swiglu { hidden = 8 } }\n"));
    CU_ASSERT_EQUAL_FATAL(gqac_run(a, arena_printf(a, "weights --random %s -o %s", good, w)), 0);
    CU_ASSERT_EQUAL_FATAL(gqac_run(a, arena_printf(a, "weights --random %s -o %s", other, w_other)), 0);

    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --target bogus", good, out)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --target freestanding --main", good, out)), 2);
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o - --embed-weights %s", good, w)), 2);

    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --embed-weights %s", good, out, w_other)), 1);
    size_t err_len;
    char *err = test_read_file(tmp_path(a, "cli.err"), &err_len);
    CU_ASSERT(err && strstr(err, "in the file, but the model has"));
    free(err);
    CU_ASSERT_FALSE(test_exists(out) || test_exists(tmp_path(a, "emb_weights.c")));
    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --embed-weights %s/none.bin", good, out, test_dir())), 1);

    CU_ASSERT_EQUAL(gqac_run(a, arena_printf(a, "%s -o %s --target freestanding --embed-weights %s",
                                             good, out, w)), 0);
    CU_ASSERT(test_exists(out) && test_exists(tmp_path(a, "emb.h")) && test_exists(tmp_path(a, "emb_weights.c")));
    CU_ASSERT_EQUAL(test_sh("cd %s && gcc -std=c99 -Wall -Wextra -Wpedantic -Werror "
                            "-ffreestanding -c emb.c emb_weights.c", test_dir()), 0);
    CU_ASSERT_NOT_EQUAL(test_sh("ls %s | grep -q tmp", test_dir()), 0);
    arena_free(a);
}

/* ---- main ---- */

int main(int argc, char **argv) {
    if (argc > 1)
        diag_dir = argv[1];
    if (argc > 2)
        examples_dir = argv[2];
    gqac = test_gqac();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite diag = CU_add_suite("diagnostics", NULL, NULL);
    CU_pSuite cname = CU_add_suite("cname", NULL, NULL);
    CU_pSuite cli = CU_add_suite("cli", NULL, NULL);
    if (!diag || !cname || !cli ||
        !CU_add_test(diag, "golden cases", test_golden_cases) ||
        !CU_add_test(diag, "one diagnostic verbatim", test_full_diagnostic) ||
        !CU_add_test(diag, "examples are clean", test_examples) ||
        !CU_add_test(diag, "CRLF, CR and a byte order mark", test_line_endings) ||
        !CU_add_test(diag, "long tokens give short messages", test_long_tokens) ||
        !CU_add_test(diag, "types and windows round trip through gqa_source", test_types_round_trip) ||
        !CU_add_test(cname, "cname_check", test_cname_check) ||
        !CU_add_test(cname, "cname_mangle", test_cname_mangle) ||
        !CU_add_test(cname, "cname_escape", test_cname_escape_text) ||
        !CU_add_test(cname, "cname_escape round-trips through cc", test_cname_escape_compiles) ||
        !CU_add_test(cli, "hostile model names compile", test_hostile_names_compile) ||
        !CU_add_test(cli, "exit codes and partial files", test_cli_exit_codes) ||
        !CU_add_test(cli, "plan_check", test_plan_check) ||
        !CU_add_test(cli, "models at sema's edges compile", test_edge_models_compile) ||
        !CU_add_test(cli, "targets and embedded weights", test_cli_targets_and_embedding)) {
        CU_cleanup_registry();
        return 1;
    }
    return cunit_run();
}
