/*
 * test_report.c: gqac tune's report (compiler/report.c) on hand-made
 * results, so nothing is compiled or timed.  A report is built from specs
 * of {kv_heads, latency at 512, latency at 2048, perplexity}; the other
 * costs follow from kv_heads, as in a real model.
 *
 * Suites: mark (the Pareto front and the recommendation), table (the
 * terminal's text through open_memstream), files (JSON, CSV and SVG in a
 * mkdtemp directory, read back).
 */
#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cunit_run.h"
#include "gqac.h"
#include "testing.h"

#define LACKS(s, sub) CU_ASSERT_PTR_NULL(strstr((s), (sub)))

static int count(const char *text, const char *sub) {
    int n = 0;
    for (const char *p = strstr(text, sub); p; p = strstr(p + 1, sub))
        n++;
    return n;
}

/* ---- reports from specs ---- */

enum { MAX_ROWS = 8 };

typedef struct {
    int kv;
    double ms512, ms2048, ppl;
} Spec;

typedef struct {
    TuneRow rows[MAX_ROWS];
    double ms[MAX_ROWS][2];
    TuneReport r;
} Fixture;

static const int contexts[2] = {512, 2048};

/* 8 query heads, 8 KV heads originally; budget < 0: none.  KV bytes are
 * 1 KiB per KV head per token, as a 64-wide head in f32 with K and V in
 * two layers; KL grows with the ppl change. */
static TuneReport *fixture(Fixture *fx, const Spec *s, int n, double budget) {
    CU_ASSERT_FATAL(n <= MAX_ROWS);
    for (int i = 0; i < n; i++) {
        TuneRow *w = &fx->rows[i];
        fx->ms[i][0] = s[i].ms512;
        fx->ms[i][1] = s[i].ms2048;
        w->kv_heads = s[i].kv;
        w->ms_per_token = fx->ms[i];
        w->kv_bytes_per_token = 1024.0 * s[i].kv;
        w->kv_bytes_full = w->kv_bytes_per_token * 2048;
        w->memory_bytes = 3.5 * 1024 * 1024 + w->kv_bytes_full;
        w->weights = "f32";
        w->kv_cache = "f32";
        w->original = s[i].kv == 8;
        w->weight_bytes = 3.5 * 1024 * 1024;
        w->bytes_per_token = w->weight_bytes + w->kv_bytes_per_token * 2048;
        w->ppl = s[i].ppl;
        w->kl = (s[i].ppl - s[0].ppl) / 10;
        w->pareto = false;
    }
    TuneReport r = {"tiny", "cc", isnan(s[0].ppl) ? NULL : "data/eval.txt", 8, 8, 2, contexts,
                    n, fx->rows, budget, -2, false};
    fx->r = r;
    return &fx->r;
}

/* kv 2 is slower and worse than kv 4: off the front. */
static const Spec mixed[] = {
    {8, 5.0, 10.0, 5.0},
    {4, 4.0, 7.0, 5.1},
    {2, 4.5, 8.0, 5.3},
    {1, 3.0, 5.0, 6.0},
};

static void expect_front(const TuneReport *r, const bool *want) {
    for (int i = 0; i < r->n_rows; i++) {
        if (r->rows[i].pareto != want[i])
            fprintf(stderr, "\n    row %d (kv %d): pareto %d\n", i, r->rows[i].kv_heads,
                    r->rows[i].pareto);
        CU_ASSERT_EQUAL(r->rows[i].pareto, want[i]);
    }
}

/* ---- mark ---- */

static void test_front_dominated(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, -1);
    report_mark(r);
    expect_front(r, (const bool[]){true, true, false, true});
}

/* Equal in both costs: neither dominates.  Equal latency, worse ppl: off. */
static void test_front_ties(void) {
    static const Spec s[] = {
        {8, 5.0, 10.0, 5.0}, {4, 4.0, 7.0, 5.2}, {2, 4.0, 7.0, 5.2}, {1, 4.0, 7.0, 5.5}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 4, -1);
    report_mark(r);
    expect_front(r, (const bool[]){true, true, true, false});
}

/* No eval text: the quality cost is KV bytes, so slower but smaller stays. */
static void test_front_without_ppl(void) {
    static const Spec s[] = {
        {8, 5.0, 10.0, NAN}, {4, 4.0, 7.0, NAN}, {2, 4.5, 8.0, NAN}, {1, 4.7, 9.0, NAN}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 4, 0.05);
    report_mark(r);
    expect_front(r, (const bool[]){false, true, true, true});
    CU_ASSERT_EQUAL(r->recommended, -1);
}

/* The front takes latency at the last context, not the first. */
static void test_front_last_context(void) {
    static const Spec s[] = {{8, 1.0, 10.0, 5.0}, {4, 9.0, 7.0, 5.0}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 2, -1);
    report_mark(r);
    expect_front(r, (const bool[]){false, true});
}

static void test_recommend_budget(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.05); /* up to 5.25: kv 4 */
    report_mark(r);
    CU_ASSERT_EQUAL(r->recommended, 1);
    r = fixture(&fx, mixed, 4, 0.25); /* up to 6.25: kv 1, the fastest */
    report_mark(r);
    CU_ASSERT_EQUAL(r->recommended, 3);
}

/* The original is always within its own budget; with no original row to
 * measure the budget from, nothing is. */
static void test_recommend_none_within(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.0);
    report_mark(r);
    CU_ASSERT_EQUAL(r->recommended, 0);
    r = fixture(&fx, mixed + 1, 3, 0.5);
    report_mark(r);
    CU_ASSERT_EQUAL(r->recommended, -1);
}

/* Equally fast: the smaller KV cache wins, whichever row comes first. */
static void test_recommend_ties(void) {
    static const Spec s[] = {{8, 5.0, 10.0, 5.0}, {4, 4.0, 7.0, 5.1}, {2, 4.0, 7.0, 5.2}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 3, 0.1);
    report_mark(r);
    CU_ASSERT_EQUAL(r->recommended, 2);
}

static void test_recommend_no_budget(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, -1);
    report_mark(r);
    CU_ASSERT_EQUAL(r->recommended, -1);
}

/* ---- table ---- */

/* The table of r, malloc'd. */
static char *table(const TuneReport *r) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    report_table(r, f);
    fclose(f);
    return text;
}

/* The line of text holding sub, copied into line. */
static bool line_with(const char *text, const char *sub, char *line, size_t size) {
    const char *at = strstr(text, sub);
    if (!at)
        return false;
    while (at > text && at[-1] != '\n')
        at--;
    size_t n = strcspn(at, "\n");
    snprintf(line, size, "%.*s", (int)n, at);
    return true;
}

/* Whether the last n cells of line are "-". */
static bool ends_with_dashes(const char *line, int n) {
    char *words[64], *copy = strdup(line), *save = NULL;
    int k = 0;
    for (char *w = strtok_r(copy, " ", &save); w && k < 64; w = strtok_r(NULL, " ", &save))
        words[k++] = w;
    bool ok = k >= n;
    for (int i = k - n; ok && i < k; i++)
        ok = !strcmp(words[i], "-");
    free(copy);
    return ok;
}

static void test_table_recommended(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.05);
    report_mark(r);
    char *t = table(r), line[512];
    TEST_HAS(t, "gqac tune: model tiny, backend cc, eval data/eval.txt");
    TEST_HAS(t, "ms/tok @512");
    TEST_HAS(t, "ms/tok @2048");
    TEST_HAS(t, "recommended: kv_heads 4 (G = 2), weights f32, cache f32: 30.0% faster than the original at "
           "context 2048, perplexity +2.00%");
    TEST_HAS(t, " weights ");
    CU_ASSERT_FATAL(line_with(t, "<- recommended", line, sizeof line));
    CU_ASSERT_EQUAL(line[0], '*');
    TEST_HAS(line, "  4  ");
    TEST_HAS(line, "7.000");
    TEST_HAS(line, "4.00 KiB");
    TEST_HAS(line, "8.00 MiB");
    TEST_HAS(line, "+2.00%");
    LACKS(t, "tcc");
    CU_ASSERT_EQUAL(count(t, "\n*  "), 3); /* starred rows, not the footnote */
    free(t);
}

/* Columns line up: every row of the grid as long as its header. */
static void test_table_aligned(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, -1);
    report_mark(r);
    char *t = table(r), header[512], row[512];
    CU_ASSERT_FATAL(line_with(t, "kv_heads", header, sizeof header));
    CU_ASSERT_FATAL(line_with(t, "5.000", row, sizeof row));
    CU_ASSERT_EQUAL(strlen(row), strlen(header));
    free(t);
}

static void test_table_without_ppl(void) {
    static const Spec s[] = {{8, 5.0, 10.0, NAN}, {4, 4.0, 7.0, NAN}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 2, 0.05);
    r->backend = "tcc";
    report_mark(r);
    char *t = table(r), line[512];
    TEST_HAS(t, "eval none");
    TEST_HAS(t, "tcc timings are of unoptimized code");
    TEST_HAS(t, "recommended: none (no eval text)");
    TEST_HAS(t, "bytes per token (weights and KV at that context)");
    CU_ASSERT_FATAL(line_with(t, "10.000", line, sizeof line));
    CU_ASSERT(ends_with_dashes(line, 3)); /* ppl, its change, KL */
    LACKS(t, "nan");
    free(t);
}

static void test_table_reasons(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, -1);
    report_mark(r);
    char *t = table(r);
    TEST_HAS(t, "recommended: none (no --max-ppl-increase given)");
    LACKS(t, "<- recommended");
    free(t);
    r = fixture(&fx, mixed + 1, 3, 0.05);
    report_mark(r);
    t = table(r);
    TEST_HAS(t, "recommended: none (no variant within +5% perplexity");
    free(t);
    r = fixture(&fx, mixed, 4, 0.0);
    report_mark(r);
    t = table(r);
    TEST_HAS(t, "recommended: kv_heads 8, weights f32, cache f32, the original");
    free(t);
}

/* A terminal must not get the name's escape sequence. */
static void test_table_control_bytes(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, -1);
    r->model_name = "evil\x1b[2Jname";
    report_mark(r);
    char *t = table(r);
    LACKS(t, "\x1b");
    TEST_HAS(t, "evil[2Jname");
    free(t);
}

/* ---- files ---- */

static cJSON *json_of(const TuneReport *r, const char *name) {
    char err[256] = "";
    const char *path = test_tmp(name);
    CU_ASSERT_EQUAL_FATAL(report_json(r, path, err, sizeof err), 0);
    char *text = test_slurp(path, NULL);
    cJSON *root = cJSON_Parse(text);
    if (!root)
        fprintf(stderr, "\n    not JSON: %s\n", text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    free(text);
    return root;
}

static double json_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    CU_ASSERT(cJSON_IsNumber(v));
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void test_json_fields(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.05);
    report_mark(r);
    cJSON *root = json_of(r, "a.json");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(root, "model")), "tiny");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(root, "backend")), "cc");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(root, "eval")),
                           "data/eval.txt");
    CU_ASSERT_EQUAL(json_num(root, "heads"), 8);
    CU_ASSERT_EQUAL(json_num(root, "original_kv_heads"), 8);
    CU_ASSERT_EQUAL(json_num(root, "max_ppl_increase"), 0.05);
    CU_ASSERT_EQUAL(json_num(root, "recommended_kv_heads"), 4);
    const cJSON *ctx = cJSON_GetObjectItem(root, "contexts");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(ctx), 2);
    CU_ASSERT_EQUAL(cJSON_GetArrayItem(ctx, 1)->valuedouble, 2048);
    const cJSON *vars = cJSON_GetObjectItem(root, "variants");
    CU_ASSERT_EQUAL_FATAL(cJSON_GetArraySize(vars), 4);
    const cJSON *v = cJSON_GetArrayItem(vars, 2);
    CU_ASSERT_EQUAL(json_num(v, "kv_heads"), 2);
    CU_ASSERT_EQUAL(json_num(v, "group_size"), 4);
    CU_ASSERT_EQUAL(json_num(cJSON_GetObjectItem(v, "ms_per_token"), "512"), 4.5);
    CU_ASSERT_EQUAL(json_num(cJSON_GetObjectItem(v, "ms_per_token"), "2048"), 8.0);
    CU_ASSERT_EQUAL(json_num(v, "kv_bytes_per_token"), 2048);
    CU_ASSERT_EQUAL(json_num(v, "kv_bytes_full_context"), 2048.0 * 2048);
    CU_ASSERT_EQUAL(json_num(v, "memory_bytes"), r->rows[2].memory_bytes);
    CU_ASSERT_EQUAL(json_num(v, "perplexity"), 5.3);
    CU_ASSERT_EQUAL(json_num(v, "kl_divergence"), r->rows[2].kl);
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(v, "pareto")));
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(vars, 1), "pareto")));
    cJSON_Delete(root);
}

static void test_json_nulls(void) {
    static const Spec s[] = {{8, 5.0, 10.0, NAN}, {4, 4.0, 7.0, NAN}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 2, -1);
    report_mark(r);
    cJSON *root = json_of(r, "b.json");
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(root, "eval")));
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(root, "max_ppl_increase")));
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(root, "recommended_kv_heads")));
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "variants"), 0);
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(v, "perplexity")));
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(v, "kl_divergence")));
    CU_ASSERT_EQUAL(json_num(v, "kv_heads"), 8);
    cJSON_Delete(root);
}

/* Quotes survive the round trip; a byte that is not UTF-8 becomes U+FFFD. */
static void test_json_name(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, -1);
    r->model_name = "a<b&\"c'>\\";
    cJSON *root = json_of(r, "c.json");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(root, "model")), "a<b&\"c'>\\");
    cJSON_Delete(root);
    r->model_name = "x\xff\xc3\xa9";
    root = json_of(r, "c.json");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(root, "model")),
                           "x\xef\xbf\xbd\xc3\xa9");
    cJSON_Delete(root);
}

static void test_csv(void) {
    static const Spec s[] = {{8, 5.0, 10.0, NAN}, {4, 0.1, 1.0 / 3, NAN}};
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.05);
    report_mark(r);
    char err[256];
    const char *path = test_tmp("a.csv");
    CU_ASSERT_EQUAL_FATAL(report_csv(r, path, err, sizeof err), 0);
    char *text = test_slurp(path, NULL);
    CU_ASSERT_EQUAL(count(text, "\n"), 5);
    const char *header = "kv_heads,weights,kv_cache,group_size,ms_per_token_at_512,ms_per_token_at_2048,"
                         "kv_bytes_per_token,kv_bytes_full_context,weight_bytes,bytes_per_token,"
                         "memory_bytes,perplexity,kl_divergence,pareto,recommended\n";
    CU_ASSERT_NSTRING_EQUAL(text, header, strlen(header));
    TEST_HAS(text, "\n4,f32,f32,2,4,7,4096,8388608,3670016,12058624,12058624,5.1,");
    TEST_HAS(text, ",true,true\n");
    CU_ASSERT_EQUAL(count(text, ",true\n"), 1);
    free(text);
    r = fixture(&fx, s, 2, -1);
    report_mark(r);
    CU_ASSERT_EQUAL_FATAL(report_csv(r, path, err, sizeof err), 0);
    text = test_slurp(path, NULL);
    TEST_HAS(text, "\n4,f32,f32,2,0.1,0.33333333333333331,4096,8388608,3670016,12058624,12058624,,,true,"
                   "false\n");
    free(text);
}

/* --init/--uptrain rows: the init and steps in the table, CSV and JSON
 * ("-", empty or null for the original), and a line per init in the
 * uptraining plot. */
static void test_init_columns(void) {
    static const Spec s[] = {{8, 5.0, 10.0, 10.0}, {4, 3.0, 6.0, 14.0}, {4, 3.0, 6.0, 12.0},
                             {4, 3.0, 6.0, 16.0}, {4, 3.0, 6.0, 13.0}};
    static const char *const inits[] = {NULL, "mean", "mean", "first", "first"};
    static const long steps[] = {-1, 0, 5, 0, 5};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 5, 0.05);
    for (int i = 0; i < 5; i++)
        fx.rows[i].init = inits[i], fx.rows[i].uptrain_steps = steps[i];
    r->init_columns = true;
    report_mark(r);
    char err[256];
    CU_ASSERT_EQUAL_FATAL(report_csv(r, test_tmp("i.csv"), err, sizeof err), 0);
    char *text = test_slurp(test_tmp("i.csv"), NULL);
    TEST_HAS(text, "kv_heads,weights,kv_cache,init,uptrain_steps,group_size,");
    TEST_HAS(text, "\n8,f32,f32,,,1,");
    TEST_HAS(text, "\n4,f32,f32,mean,5,2,");
    TEST_HAS(text, "\n4,f32,f32,first,0,2,");
    free(text);
    cJSON *root = json_of(r, "i.json");
    cJSON *v = cJSON_GetObjectItem(root, "variants");
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 0), "init")));
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 2), "init")),
                           "mean");
    CU_ASSERT_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 2),
                                                             "uptrain_steps")), 5);
    cJSON_Delete(root);
    CU_ASSERT_EQUAL_FATAL(report_uptrain_svg(r, test_tmp("i.svg"), err, sizeof err), 0);
    text = test_slurp(test_tmp("i.svg"), NULL);
    CU_ASSERT_EQUAL(count(text, "<polyline"), 2);
    TEST_HAS(text, "kv4 first f32</text>");
    free(text);
    r->init_columns = false; /* without --init/--uptrain: the old header */
    CU_ASSERT_EQUAL_FATAL(report_csv(r, test_tmp("i.csv"), err, sizeof err), 0);
    text = test_slurp(test_tmp("i.csv"), NULL);
    TEST_HAS(text, "kv_heads,weights,kv_cache,group_size,");
    free(text);
}

/* ---- SVG ---- */

static char *svg_of(const TuneReport *r, const char *name) {
    char err[256] = "";
    const char *path = test_tmp(name);
    CU_ASSERT_EQUAL_FATAL(report_svg(r, path, err, sizeof err), 0);
    return test_slurp(path, NULL);
}

/* Every value of attr (cx="...") is a number within [0, max]. */
static bool attr_within(const char *svg, const char *attr, double max) {
    char key[16];
    snprintf(key, sizeof key, " %s=\"", attr);
    for (const char *p = strstr(svg, key); p; p = strstr(p + 1, key)) {
        char *end;
        double v = strtod(p + strlen(key), &end);
        if (*end != '"' || !isfinite(v) || v < 0 || v > max) {
            fprintf(stderr, "\n    %s=%.20s\n", attr, p + strlen(key));
            return false;
        }
    }
    return true;
}

/* Every polyline point is a pair of numbers on the page. */
static bool points_within(const char *svg) {
    for (const char *p = strstr(svg, "points=\""); p; p = strstr(p + 1, "points=\"")) {
        char *end = (char *)p + 8;
        while (*end != '"') {
            double x = strtod(end, &end);
            if (*end++ != ',')
                return false;
            double y = strtod(end, &end);
            if (!isfinite(x) || !isfinite(y) || x < 0 || x > 720 || y < 0 || y > 480)
                return false;
        }
    }
    return true;
}

/* Well-formed enough for a browser, points on the page, n circles. */
static void check_svg(const char *svg, int circles) {
    const char *start = svg;
    if (!strncmp(start, "<?xml", 5))
        start = strstr(start, "?>") + 2;
    start += strspn(start, " \n");
    CU_ASSERT_NSTRING_EQUAL(start, "<svg", 4);
    TEST_HAS(start, "xmlns=\"http://www.w3.org/2000/svg\"");
    TEST_HAS(start, "viewBox=\"0 0 720 480\"");
    size_t n = strlen(svg);
    while (n > 0 && isspace((unsigned char)svg[n - 1]))
        n--;
    CU_ASSERT(n >= 6 && !strncmp(svg + n - 6, "</svg>", 6));
    CU_ASSERT_EQUAL(count(svg, "<circle"), circles);
    char *lower = strdup(svg);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    LACKS(lower, "nan");
    LACKS(lower, "inf");
    free(lower);
    CU_ASSERT(attr_within(svg, "cx", 720));
    CU_ASSERT(attr_within(svg, "cy", 480));
    CU_ASSERT(attr_within(svg, "x", 720));
    CU_ASSERT(attr_within(svg, "y", 480));
    CU_ASSERT(points_within(svg));
    CU_ASSERT_EQUAL(count(svg, "<text"), count(svg, "</text>"));
}

static void test_svg_plot(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.05);
    report_mark(r);
    char *svg = svg_of(r, "a.svg");
    check_svg(svg, 4 + 1);
    TEST_HAS(svg, ">kv2 f32<");
    TEST_HAS(svg, "decode latency at context 2048 (ms/token)");
    TEST_HAS(svg, "perplexity on eval.txt");
    TEST_HAS(svg, "<polyline");
    free(svg);
}

static void expect_ticks(const TuneReport *r, int min, int max) {
    char *svg = svg_of(r, "t.svg");
    int x_ticks = count(svg, "class=\"x-tick\""), y_ticks = count(svg, "class=\"y-tick\"");
    if (x_ticks < min || x_ticks > max || y_ticks < min || y_ticks > max)
        fprintf(stderr, "\n    %d x ticks, %d y ticks\n", x_ticks, y_ticks);
    CU_ASSERT(x_ticks >= min && x_ticks <= max);
    CU_ASSERT(y_ticks >= min && y_ticks <= max);
    free(svg);
}

/* 4 to 6 ticks on each axis; 7 only where the next step would give 3:
 * latencies 5.6 to 14.4, padded, take steps of 2 (7 ticks) or 5 (3). */
static void test_svg_ticks(void) {
    static const Spec wide[] = {{8, 5.0, 14.4, 5.0}, {4, 4.0, 5.6, 5.5}};
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, -1);
    report_mark(r);
    expect_ticks(r, 4, 6);
    r = fixture(&fx, wide, 2, -1);
    report_mark(r);
    expect_ticks(r, 4, 7);
}

static void test_svg_without_ppl(void) {
    static const Spec s[] = {{8, 5.0, 10.0, NAN}, {4, 4.0, 7.0, NAN}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 2, 0.05);
    report_mark(r);
    char *svg = svg_of(r, "b.svg");
    check_svg(svg, 2);
    TEST_HAS(svg, "bytes per token (weights and KV)");
    free(svg);
}

static void test_svg_hostile_name(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, -1);
    r->model_name = "a<b&\"c'>\x01\xff";
    report_mark(r);
    char *svg = svg_of(r, "c.svg");
    check_svg(svg, 4);
    TEST_HAS(svg, "a&lt;b&amp;&quot;c&apos;&gt;\xef\xbf\xbd");
    LACKS(svg, "a<b");
    LACKS(svg, "\"c'");
    LACKS(svg, "\x01");
    LACKS(svg, "\xff");
    free(svg);
}

/* One row, or all rows equally fast and good: the range is padded, not 0/0. */
static void test_svg_degenerate(void) {
    static const Spec one[] = {{8, 5.0, 10.0, 5.0}};
    static const Spec same[] = {{8, 5.0, 10.0, 5.0}, {4, 5.0, 10.0, 5.0}, {2, 5.0, 10.0, 5.0}};
    static const Spec zero[] = {{8, 0.0, 0.0, 0.0}, {4, 0.0, 0.0, 0.0}};
    Fixture fx;
    TuneReport *r = fixture(&fx, one, 1, 0.05);
    report_mark(r);
    char *svg = svg_of(r, "d.svg");
    check_svg(svg, 1 + 1);
    free(svg);
    r = fixture(&fx, same, 3, -1);
    report_mark(r);
    svg = svg_of(r, "e.svg");
    check_svg(svg, 3);
    free(svg);
    r = fixture(&fx, zero, 2, -1);
    report_mark(r);
    svg = svg_of(r, "f.svg");
    check_svg(svg, 2);
    free(svg);
}

/* All equally fast, KV sizes apart (no eval text): the smallest alone is
 * on the front, and the x axis is padded around the one latency. */
static void test_svg_equal_x(void) {
    static const Spec s[] = {{8, 5.0, 10.0, NAN}, {4, 5.0, 10.0, NAN}, {1, 5.0, 10.0, NAN}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 3, -1);
    report_mark(r);
    expect_front(r, (const bool[]){false, false, true});
    char *svg = svg_of(r, "g.svg");
    check_svg(svg, 3);
    free(svg);
}

/* A NaN latency is left off the plot, not printed. */
static void test_svg_nan_latency(void) {
    static const Spec s[] = {{8, 5.0, 10.0, 5.0}, {4, 4.0, NAN, 5.1}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 2, -1);
    report_mark(r);
    expect_front(r, (const bool[]){true, false});
    char *svg = svg_of(r, "h.svg");
    check_svg(svg, 1);
    free(svg);
}

/* Nothing measured: no points, and axes over a default range. */
static void test_svg_nothing_plottable(void) {
    static const Spec s[] = {{8, 5.0, NAN, 5.0}, {4, 4.0, INFINITY, 5.1}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 2, -1);
    report_mark(r);
    char *svg = svg_of(r, "i.svg");
    check_svg(svg, 0);
    free(svg);
}

/* ---- write errors ---- */

typedef int Write(const TuneReport *r, const char *path, char *err, size_t errlen);

static void expect_unwritable(const TuneReport *r, const char *path) {
    Write *const writers[] = {report_json, report_csv, report_svg};
    for (int i = 0; i < 3; i++) {
        char err[256] = "";
        CU_ASSERT_EQUAL(writers[i](r, path, err, sizeof err), -1);
        TEST_HAS(err, path);
        TEST_HAS(err, "cannot write: ");
    }
}

static void test_unwritable(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.05);
    report_mark(r);
    expect_unwritable(r, "/nonexistent/dir/x.json");
    char err[256] = "";
    CU_ASSERT_EQUAL(report_json(r, "/nonexistent/dir/x.json", err, sizeof err), -1);
    TEST_HAS(err, "No such file or directory");
}

/* A directory in the way: the rename fails and no temporary is left. */
static void test_rename_fails(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.05);
    report_mark(r);
    const char *dir = test_tmp("adir");
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    expect_unwritable(r, dir);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld~", dir, (long)getpid());
    CU_ASSERT_EQUAL(access(tmp, F_OK), -1);
}

/* A second write replaces the first whole. */
static void test_overwrite(void) {
    Fixture fx;
    TuneReport *r = fixture(&fx, mixed, 4, 0.05);
    report_mark(r);
    char err[256];
    const char *path = test_tmp("o.csv");
    CU_ASSERT_EQUAL(report_csv(r, path, err, sizeof err), 0);
    r = fixture(&fx, mixed, 1, -1);
    report_mark(r);
    CU_ASSERT_EQUAL(report_csv(r, path, err, sizeof err), 0);
    char *text = test_slurp(path, NULL);
    CU_ASSERT_EQUAL(count(text, "\n"), 2);
    free(text);
}

/* Weight types at one kv_heads, no eval text: the same latency and KV,
 * so the fewer bytes of q8_0 weights put it alone on the front; with
 * perplexities the original is the row marked original, not the first
 * of its kv_heads, and the recommendation names the type. */
static void test_types(void) {
    static const Spec s[] = {{8, 5.0, 10.0, NAN}, {8, 5.0, 10.0, NAN}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 2, -1);
    fx.rows[1].weights = "q8_0";
    fx.rows[1].weight_bytes = 1024 * 1024;
    fx.rows[1].bytes_per_token = fx.rows[1].weight_bytes + 8192.0 * 2048;
    fx.rows[1].original = false;
    report_mark(r);
    expect_front(r, (const bool[]){false, true});
    static const Spec q[] = {{8, 5.0, 10.0, 6.0}, {8, 4.0, 8.0, 5.0}, {4, 4.5, 9.0, 5.1}};
    r = fixture(&fx, q, 3, 0.05);
    fx.rows[0].original = false;
    fx.rows[0].weights = "q4_0";
    fx.rows[1].weights = "mixed"; /* the original: ppl 5, so 5.25 is the budget */
    report_mark(r);
    CU_ASSERT_EQUAL(r->recommended, 1);
    char *t = table(r);
    TEST_HAS(t, "recommended: kv_heads 8, weights mixed, cache f32, the original");
    free(t);
}

/* The cache-type axis: kv 8 with an f16 cache holds the KV bytes of kv
 * 4 with an f32 one; every output names each row's cache, the SVG only
 * where it is not the default f32, and the recommendation says it. */
static void test_cache_types(void) {
    static const Spec s[] = {{8, 5.0, 10.0, 5.0}, {8, 4.5, 8.0, 5.01}, {4, 4.0, 8.5, 5.1}};
    Fixture fx;
    TuneReport *r = fixture(&fx, s, 3, 0.05);
    fx.rows[1].kv_cache = "f16";
    fx.rows[1].kv_bytes_per_token /= 2, fx.rows[1].kv_bytes_full /= 2;
    fx.rows[1].bytes_per_token = fx.rows[1].weight_bytes + fx.rows[1].kv_bytes_per_token * 2048;
    report_mark(r);
    CU_ASSERT_EQUAL(r->recommended, 1);
    char *t = table(r), line[512];
    TEST_HAS(t, " weights  cache ");
    TEST_HAS(t, "recommended: kv_heads 8 (G = 1), weights f32, cache f16: 20.0% faster");
    CU_ASSERT_FATAL(line_with(t, "<- recommended", line, sizeof line));
    TEST_HAS(line, " f32    f16 ");
    TEST_HAS(line, "4.00 KiB");
    free(t);
    cJSON *root = json_of(r, "c.json");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(root, "recommended_kv_cache")),
                           "f16");
    const cJSON *vars = cJSON_GetObjectItem(root, "variants");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(vars, 0),
                                                                    "kv_cache")), "f32");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(vars, 1),
                                                                    "kv_cache")), "f16");
    cJSON_Delete(root);
    char err[256];
    CU_ASSERT_EQUAL_FATAL(report_csv(r, test_tmp("c.csv"), err, sizeof err), 0);
    char *csv = test_slurp(test_tmp("c.csv"), NULL);
    TEST_HAS(csv, "\n8,f32,f16,1,4.5,8,4096,8388608,");
    TEST_HAS(csv, "\n4,f32,f32,2,4,8.5,4096,8388608,");
    free(csv);
    char *svg = svg_of(r, "c.svg");
    TEST_HAS(svg, ">kv8 f32<");
    TEST_HAS(svg, ">kv8 f32 cache f16<");
    free(svg);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("mark", NULL, NULL);
    CU_add_test(s, "dominated row off the front", test_front_dominated);
    CU_add_test(s, "ties", test_front_ties);
    CU_add_test(s, "weight types: bytes per token, the marked original", test_types);
    CU_add_test(s, "no ppl: KV bytes", test_front_without_ppl);
    CU_add_test(s, "latency at the last context", test_front_last_context);
    CU_add_test(s, "recommendation within budget", test_recommend_budget);
    CU_add_test(s, "none within", test_recommend_none_within);
    CU_add_test(s, "recommendation ties", test_recommend_ties);
    CU_add_test(s, "no budget", test_recommend_no_budget);
    s = CU_add_suite("table", NULL, NULL);
    CU_add_test(s, "recommended row", test_table_recommended);
    CU_add_test(s, "aligned", test_table_aligned);
    CU_add_test(s, "no eval text", test_table_without_ppl);
    CU_add_test(s, "why no recommendation", test_table_reasons);
    CU_add_test(s, "control bytes", test_table_control_bytes);
    s = CU_add_suite("files", NULL, NULL);
    CU_add_test(s, "json fields", test_json_fields);
    CU_add_test(s, "json nulls", test_json_nulls);
    CU_add_test(s, "json name", test_json_name);
    CU_add_test(s, "csv", test_csv);
    CU_add_test(s, "svg plot", test_svg_plot);
    CU_add_test(s, "svg ticks", test_svg_ticks);
    CU_add_test(s, "svg without ppl", test_svg_without_ppl);
    CU_add_test(s, "svg hostile name", test_svg_hostile_name);
    CU_add_test(s, "svg degenerate ranges", test_svg_degenerate);
    CU_add_test(s, "svg equal x", test_svg_equal_x);
    CU_add_test(s, "svg NaN latency", test_svg_nan_latency);
    CU_add_test(s, "svg nothing plottable", test_svg_nothing_plottable);
    CU_add_test(s, "unwritable path", test_unwritable);
    CU_add_test(s, "rename fails", test_rename_fails);
    CU_add_test(s, "overwrite", test_overwrite);
    CU_add_test(s, "cache types", test_cache_types);
    CU_add_test(s, "init and uptrain columns", test_init_columns);
    return cunit_run();
}
