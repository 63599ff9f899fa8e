/*
 * report.c: gqac tune's results.  Needs: cJSON.  Provides: the Pareto front
 * and the recommendation over the measured variants, and the report four
 * ways: a table for the terminal, JSON and CSV for scripts, an SVG plot for
 * a browser.
 *
 * The model's name is whatever bytes the .gqa held, so every output passes
 * it through utf8_clean: one invalid byte would make a JSON or XML reader
 * reject the whole file.  text_put also drops control bytes (commands to a
 * terminal, mostly forbidden in XML) and escapes XML's special characters.
 */
#include "gqac.h"
#include "outfile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- costs, the front and the recommendation ---- */

/* The speed cost: latency at the longest context, where the KV cache
 * weighs most. */
static double cost_x(const TuneReport *r, int i) {
    return r->rows[i].ms_per_token[r->n_contexts - 1];
}

/* With no eval text no row has a perplexity; a report never mixes. */
static bool has_ppl(const TuneReport *r) {
    for (int i = 0; i < r->n_rows; i++)
        if (isnan(r->rows[i].ppl))
            return false;
    return r->n_rows > 0;
}

/* The quality cost: perplexity, or when it is unknown the bytes a token
 * reads (weights in their types, and KV), which is what quality is traded
 * for. */
static double cost_y(const TuneReport *r, int i) {
    return has_ppl(r) ? r->rows[i].ppl : r->rows[i].bytes_per_token;
}

static double cost(const TuneReport *r, int i, bool y) {
    return y ? cost_y(r, i) : cost_x(r, i);
}

static bool dominates(const TuneReport *r, int j, int i) {
    double xj = cost_x(r, j), yj = cost_y(r, j), xi = cost_x(r, i), yi = cost_y(r, i);
    return xj <= xi && yj <= yi && (xj < xi || yj < yi);
}

static bool on_front(const TuneReport *r, int i) {
    if (isnan(cost_x(r, i)) || isnan(cost_y(r, i)))
        return false; /* NaN compares false both ways: it would never be dominated */
    for (int j = 0; j < r->n_rows; j++)
        if (dominates(r, j, i))
            return false;
    return true;
}

/* The original's row, the reference of every change; -1 when missing. */
static int original_row(const TuneReport *r) {
    for (int i = 0; i < r->n_rows; i++)
        if (r->rows[i].original)
            return i;
    return -1;
}

/* A row's weight types for every output. */
static const char *weights_of(const TuneReport *r, int i) {
    return r->rows[i].weights ? r->rows[i].weights : "-";
}

/* A row's cache type for every output. */
static const char *cache_of(const TuneReport *r, int i) {
    return r->rows[i].kv_cache ? r->rows[i].kv_cache : "-";
}

/* Whether row i is a better recommendation than row best (-1: none yet). */
static bool better(const TuneReport *r, int i, int best) {
    if (best < 0)
        return true;
    double xi = cost_x(r, i), xb = cost_x(r, best);
    return xi < xb ||
           (xi == xb && r->rows[i].bytes_per_token < r->rows[best].bytes_per_token);
}

static int recommend(const TuneReport *r) {
    int orig = original_row(r);
    if (r->max_ppl_increase < 0 || !has_ppl(r) || orig < 0)
        return -1;
    double limit = r->rows[orig].ppl * (1 + r->max_ppl_increase);
    int best = -1;
    for (int i = 0; i < r->n_rows; i++)
        if (r->rows[i].ppl <= limit && !isnan(cost_x(r, i)) && better(r, i, best))
            best = i;
    return best;
}

void report_mark(TuneReport *r) {
    for (int i = 0; i < r->n_rows; i++)
        r->rows[i].pareto = on_front(r, i);
    r->recommended = recommend(r);
}

/* ---- text ---- */

/* The length of the valid UTF-8 sequence at s, or 0: overlong forms,
 * surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_seq(const unsigned char *s) {
    size_t n = s[0] < 0x80   ? 1
               : s[0] < 0xC2 ? 0 /* a continuation byte, or an overlong lead */
               : s[0] < 0xE0 ? 2
               : s[0] < 0xF0 ? 3
               : s[0] < 0xF5 ? 4
                             : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
            return 0;
    if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0)))
        return 0;
    if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90)))
        return 0;
    return n;
}

/* s with each byte that is not part of valid UTF-8 replaced by U+FFFD.
 * Malloc'd; NULL when out of memory. */
static char *utf8_clean(const char *s) {
    char *out = malloc(3 * strlen(s) + 1), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    while (out && *p) {
        size_t n = utf8_seq(p);
        memcpy(o, n ? (const char *)p : "\xEF\xBF\xBD", n ? n : 3);
        o += n ? n : 3;
        p += n ? n : 1;
    }
    if (out)
        *o = '\0';
    return out;
}

static const char *xml_entity(int c) {
    switch (c) {
    case '&': return "&amp;";
    case '<': return "&lt;";
    case '>': return "&gt;";
    case '"': return "&quot;";
    case '\'': return "&apos;";
    default: return NULL;
    }
}

/* s as text for a terminal, or with xml for an SVG's text and attributes. */
static void text_put(FILE *f, const char *s, bool xml) {
    char *clean = utf8_clean(s);
    for (const char *p = clean ? clean : "?"; *p; p++) {
        unsigned char c = (unsigned char)*p;
        const char *entity = xml ? xml_entity(c) : NULL;
        if (entity)
            fputs(entity, f);
        else if (c >= 0x20 && c != 0x7F)
            putc(c, f);
    }
    free(clean);
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- the table ---- */

/* A table's cell: any number, or a size in human units, fits. */
enum { CELL = 40 };
typedef char Cell[CELL];

static void bytes_cell(Cell c, double bytes) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    for (; u < 3 && fabs(bytes) >= 1024; u++)
        bytes /= 1024;
    if (u == 0)
        snprintf(c, CELL, "%.0f B", bytes);
    else
        snprintf(c, CELL, "%.2f %s", bytes, unit[u]);
}

/* v by fmt, or "-" when there is none (no eval text, no original). */
static void value_cell(Cell c, const char *fmt, double v) {
    if (isnan(v))
        snprintf(c, CELL, "-");
    else
        snprintf(c, CELL, fmt, v);
}

static int group_size(const TuneReport *r, int i) {
    return r->rows[i].kv_heads > 0 ? r->heads / r->rows[i].kv_heads : 0;
}

/* Row i's ppl against the original's, in percent; NaN without either. */
static double ppl_change(const TuneReport *r, int i) {
    int orig = original_row(r);
    return orig < 0 ? NAN : (r->rows[i].ppl / r->rows[orig].ppl - 1) * 100;
}

static int n_columns(const TuneReport *r) {
    return 11 + r->n_contexts + (r->init_columns ? 2 : 0);
}

/* A row's init for every output: "-" for a row not converted. */
static const char *init_of(const TuneReport *r, int i) {
    return r->rows[i].init ? r->rows[i].init : "-";
}

static void header_cells(const TuneReport *r, Cell *c) {
    static const char *const tail[] = {"KV/token", "KV full ctx", "bytes/token", "memory",
                                       "ppl",      "ppl change",  "KL (nats)"};
    int k = 0;
    snprintf(c[k++], CELL, "kv_heads");
    snprintf(c[k++], CELL, "group");
    snprintf(c[k++], CELL, "weights");
    snprintf(c[k++], CELL, "cache");
    if (r->init_columns) {
        snprintf(c[k++], CELL, "init");
        snprintf(c[k++], CELL, "uptrain");
    }
    for (int j = 0; j < r->n_contexts; j++)
        snprintf(c[k++], CELL, "ms/tok @%d", r->contexts[j]);
    for (int j = 0; j < 7; j++)
        snprintf(c[k++], CELL, "%s", tail[j]);
}

static void row_cells(const TuneReport *r, int i, Cell *c) {
    const TuneRow *w = &r->rows[i];
    int k = 0;
    snprintf(c[k++], CELL, "%d", w->kv_heads);
    snprintf(c[k++], CELL, "%d", group_size(r, i));
    snprintf(c[k++], CELL, "%.16s", weights_of(r, i));
    snprintf(c[k++], CELL, "%.16s", cache_of(r, i));
    if (r->init_columns) {
        snprintf(c[k++], CELL, "%.16s", init_of(r, i));
        if (w->uptrain_steps < 0)
            snprintf(c[k++], CELL, "-");
        else
            snprintf(c[k++], CELL, "%ld", w->uptrain_steps);
    }
    for (int j = 0; j < r->n_contexts; j++)
        value_cell(c[k++], "%.3f", w->ms_per_token[j]);
    bytes_cell(c[k++], w->kv_bytes_per_token);
    bytes_cell(c[k++], w->kv_bytes_full);
    bytes_cell(c[k++], w->bytes_per_token);
    bytes_cell(c[k++], w->memory_bytes);
    value_cell(c[k++], "%.3f", w->ppl);
    value_cell(c[k++], "%+.2f%%", ppl_change(r, i));
    value_cell(c[k++], "%.4g", w->kl);
}

static int column_width(Cell *grid, int n_lines, int n_cols, int k) {
    int width = 0;
    for (int i = 0; i < n_lines; i++)
        if ((int)strlen(grid[i * n_cols + k]) > width)
            width = (int)strlen(grid[i * n_cols + k]);
    return width;
}

/* Prints the grid (a header and n_rows lines of n_cols cells), each column
 * as wide as its widest cell, right-aligned so numbers line up. */
static void print_grid(const TuneReport *r, Cell *grid, int n_cols, FILE *out) {
    for (int i = 0; i <= r->n_rows; i++) {
        fputc(i > 0 && r->rows[i - 1].pareto ? '*' : ' ', out);
        for (int k = 0; k < n_cols; k++)
            fprintf(out, "  %*s", column_width(grid, r->n_rows + 1, n_cols, k),
                    grid[i * n_cols + k]);
        fputs(i > 0 && i - 1 == r->recommended ? "  <- recommended\n" : "\n", out);
    }
}

static void print_recommendation(const TuneReport *r, FILE *out) {
    int best = r->recommended, orig = original_row(r);
    int ctx = r->contexts[r->n_contexts - 1];
    char cache[32] = ""; /* ", cache f16" where the rows say */
    if (best >= 0 && r->rows[best].kv_cache)
        snprintf(cache, sizeof cache, ", cache %.16s", r->rows[best].kv_cache);
    if (r->max_ppl_increase < 0)
        fputs("recommended: none (no --max-ppl-increase given)\n", out);
    else if (!has_ppl(r))
        fputs("recommended: none (no eval text)\n", out);
    else if (best < 0)
        fprintf(out, "recommended: none (no variant within +%g%% perplexity of the original)\n",
                r->max_ppl_increase * 100);
    else if (best == orig)
        fprintf(out, "recommended: kv_heads %d, weights %s%s, the original: no variant is faster at "
                     "context %d within +%g%% perplexity\n",
                r->rows[best].kv_heads, weights_of(r, best), cache, ctx, r->max_ppl_increase * 100);
    else
        fprintf(out, "recommended: kv_heads %d (G = %d), weights %s%s: %.1f%% faster than the "
                     "original at context %d, perplexity %+.2f%%\n",
                r->rows[best].kv_heads, group_size(r, best), weights_of(r, best), cache,
                (1 - cost_x(r, best) / cost_x(r, orig)) * 100, ctx, ppl_change(r, best));
}

static void print_heading(const TuneReport *r, FILE *out) {
    fputs("gqac tune: model ", out);
    text_put(out, r->model_name, false);
    fputs(", backend ", out);
    text_put(out, r->backend, false);
    fputs(", eval ", out);
    text_put(out, r->eval_path ? r->eval_path : "none", false);
    fputc('\n', out);
    if (!strcmp(r->backend, "tcc"))
        fputs("note: tcc timings are of unoptimized code, not the model's speed\n", out);
}

void report_table(const TuneReport *r, FILE *out) {
    int n_cols = n_columns(r);
    Cell *grid = malloc(sizeof *grid * (size_t)n_cols * (size_t)(r->n_rows + 1));
    print_heading(r, out);
    if (!grid) {
        fputs("(no table: out of memory)\n", out);
        return;
    }
    header_cells(r, grid);
    for (int i = 0; i < r->n_rows; i++)
        row_cells(r, i, grid + (size_t)(i + 1) * (size_t)n_cols);
    fputc('\n', out);
    print_grid(r, grid, n_cols, out);
    free(grid);
    fprintf(out, "\n* on the Pareto front: no other variant is at least as fast at context %d\n"
                 "  and at least as low in %s, and better in one\n",
            r->contexts[r->n_contexts - 1],
            has_ppl(r) ? "perplexity" : "bytes per token (weights and KV at that context)");
    print_recommendation(r, out);
}

/* ---- files ---- */

typedef bool Writer(const TuneReport *r, FILE *f);

static int fail(const char *path, int e, char *err, size_t errlen) {
    snprintf(err, errlen, "%s: cannot write: %s", path, strerror(e));
    return -1;
}

/* path written by w whole or not at all (runtime/outfile.h), so a failure
 * never leaves half a report over the last good one. */
static int write_file(const TuneReport *r, const char *path, Writer *w, char *err,
                      size_t errlen) {
    gqr_out out;
    if (gqr_out_open(&out, path, err, errlen))
        return -1;
    errno = 0; /* a writer's failure sets it, ENOMEM included */
    if (!w(r, out.f) || ferror(out.f)) {
        int e = errno ? errno : EIO;
        gqr_out_abort(&out);
        return fail(path, e, err, errlen);
    }
    return gqr_out_commit(&out, err, errlen);
}

/* ---- JSON ---- */

/* Adds v as a number, or null when it is not finite (no eval text). */
static bool json_number(cJSON *o, const char *key, double v) {
    return isfinite(v) ? cJSON_AddNumberToObject(o, key, v) != NULL
                       : cJSON_AddNullToObject(o, key) != NULL;
}

/* Adds s, cleaned to valid UTF-8, or null when s is NULL. */
static bool json_string(cJSON *o, const char *key, const char *s) {
    if (!s)
        return cJSON_AddNullToObject(o, key) != NULL;
    char *clean = utf8_clean(s);
    bool ok = clean && cJSON_AddStringToObject(o, key, clean);
    free(clean);
    return ok;
}

/* ms_per_token as {"512": ms, ...}: keyed by context, as the CSV's columns. */
static bool json_latency(const TuneReport *r, int i, cJSON *v) {
    cJSON *ms = cJSON_AddObjectToObject(v, "ms_per_token");
    bool ok = ms != NULL;
    for (int j = 0; ok && j < r->n_contexts; j++) {
        char key[16];
        snprintf(key, sizeof key, "%d", r->contexts[j]);
        ok = json_number(ms, key, r->rows[i].ms_per_token[j]);
    }
    return ok;
}

static bool json_variant(const TuneReport *r, int i, cJSON *v) {
    const TuneRow *w = &r->rows[i];
    return v && json_number(v, "kv_heads", w->kv_heads) &&
           json_string(v, "weights", weights_of(r, i)) &&
           json_string(v, "kv_cache", w->kv_cache) &&
           cJSON_AddBoolToObject(v, "original", w->original) &&
           json_number(v, "group_size", group_size(r, i)) && json_latency(r, i, v) &&
           json_number(v, "kv_bytes_per_token", w->kv_bytes_per_token) &&
           json_number(v, "kv_bytes_full_context", w->kv_bytes_full) &&
           json_number(v, "weight_bytes", w->weight_bytes) &&
           json_number(v, "bytes_per_token", w->bytes_per_token) &&
           json_number(v, "memory_bytes", w->memory_bytes) &&
           json_number(v, "perplexity", w->ppl) && json_number(v, "kl_divergence", w->kl) &&
           cJSON_AddBoolToObject(v, "pareto", w->pareto) &&
           (!r->init_columns ||
            ((w->init ? json_string(v, "init", w->init) : cJSON_AddNullToObject(v, "init") != NULL) &&
             (w->uptrain_steps >= 0 ? json_number(v, "uptrain_steps", (double)w->uptrain_steps)
                                    : cJSON_AddNullToObject(v, "uptrain_steps") != NULL)));
}

/* The contexts, the budget, the recommendation and the variants. */
static bool json_results(const TuneReport *r, cJSON *root) {
    cJSON *contexts = cJSON_AddArrayToObject(root, "contexts");
    bool ok = contexts != NULL;
    for (int j = 0; ok && j < r->n_contexts; j++)
        ok = cJSON_AddItemToArray(contexts, cJSON_CreateNumber(r->contexts[j]));
    double budget = r->max_ppl_increase < 0 ? NAN : r->max_ppl_increase;
    double best = r->recommended < 0 ? NAN : r->rows[r->recommended].kv_heads;
    ok = ok && json_number(root, "max_ppl_increase", budget) &&
         json_number(root, "recommended_kv_heads", best) &&
         json_string(root, "recommended_weights",
                     r->recommended < 0 ? NULL : weights_of(r, r->recommended)) &&
         json_string(root, "recommended_kv_cache",
                     r->recommended < 0 ? NULL : r->rows[r->recommended].kv_cache);
    cJSON *variants = ok ? cJSON_AddArrayToObject(root, "variants") : NULL;
    ok = variants != NULL;
    for (int i = 0; ok && i < r->n_rows; i++) {
        cJSON *v = cJSON_CreateObject();
        ok = cJSON_AddItemToArray(variants, v) && json_variant(r, i, v);
    }
    return ok;
}

static bool json_write(const TuneReport *r, FILE *f) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root && json_string(root, "model", r->model_name) &&
              json_string(root, "backend", r->backend) &&
              json_string(root, "eval", r->eval_path) && json_number(root, "heads", r->heads) &&
              json_number(root, "original_kv_heads", r->original_kv) && json_results(r, root);
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        errno = ENOMEM;
        return false;
    }
    ok = fputs(text, f) >= 0 && putc('\n', f) != EOF;
    cJSON_free(text);
    return ok;
}

int report_json(const TuneReport *r, const char *path, char *err, size_t errlen) {
    return write_file(r, path, json_write, err, errlen);
}

/* ---- CSV ---- */

/* The shortest of %.15g and %.17g that reads back as v, as cJSON prints
 * numbers: the CSV holds exactly the JSON's values, and 0.1 stays 0.1.
 * Empty when there is no value. */
static void csv_number(FILE *f, double v) {
    char s[32];
    snprintf(s, sizeof s, "%.15g", v);
    if (strtod(s, NULL) != v)
        snprintf(s, sizeof s, "%.17g", v);
    fprintf(f, ",%s", isfinite(v) ? s : "");
}

static bool csv_write(const TuneReport *r, FILE *f) {
    fputs(r->init_columns ? "kv_heads,weights,kv_cache,init,uptrain_steps,group_size"
                          : "kv_heads,weights,kv_cache,group_size", f);
    for (int j = 0; j < r->n_contexts; j++)
        fprintf(f, ",ms_per_token_at_%d", r->contexts[j]);
    fputs(",kv_bytes_per_token,kv_bytes_full_context,weight_bytes,bytes_per_token,memory_bytes,"
          "perplexity,kl_divergence,pareto,recommended\n", f);
    for (int i = 0; i < r->n_rows; i++) {
        const TuneRow *w = &r->rows[i];
        /* a type's name: letters, digits, '_' and '-', nothing to quote */
        fprintf(f, "%d,%.16s,%.16s", w->kv_heads, weights_of(r, i), cache_of(r, i));
        if (r->init_columns && w->uptrain_steps >= 0)
            fprintf(f, ",%.16s,%ld", w->init ? w->init : "", w->uptrain_steps);
        else if (r->init_columns)
            fprintf(f, ",%.16s,", w->init ? w->init : "");
        fprintf(f, ",%d", group_size(r, i));
        for (int j = 0; j < r->n_contexts; j++)
            csv_number(f, w->ms_per_token[j]);
        csv_number(f, w->kv_bytes_per_token);
        csv_number(f, w->kv_bytes_full);
        csv_number(f, w->weight_bytes);
        csv_number(f, w->bytes_per_token);
        csv_number(f, w->memory_bytes);
        csv_number(f, w->ppl);
        csv_number(f, w->kl);
        fprintf(f, ",%s,%s\n", w->pareto ? "true" : "false",
                i == r->recommended ? "true" : "false");
    }
    return true;
}

int report_csv(const TuneReport *r, const char *path, char *err, size_t errlen) {
    return write_file(r, path, csv_write, err, errlen);
}

/* ---- SVG ---- */

/* The page and the plot area inside it, in pixels. */
enum { SVG_W = 720, SVG_H = 480, LEFT = 80, RIGHT = 24, TOP = 48, BOTTOM = 64 };

/* An axis: the values shown, lo to hi, both multiples of the tick step,
 * drawn from pixel from to pixel to. */
typedef struct {
    double lo, hi, step, from, to;
} Axis;

/* A step of 1, 2 or 5 times a power of ten that covers [lo, hi] in at most
 * 5 intervals, lo and hi widened to its multiples: 4 to 6 ticks, or 7 where
 * the next step up would leave only 3. */
static void axis_ticks(Axis *a, double lo, double hi) {
    static const double nice[] = {1, 2, 5};
    double decade = pow(10, floor(log10((hi - lo) / 5))), step = 0, smaller = 0;
    for (int k = 0;; k++) {
        smaller = step;
        step = decade * nice[k % 3] * pow(10, k / 3);
        double intervals = ceil(hi / step) - floor(lo / step);
        if (intervals <= 5) {
            step = intervals < 3 && smaller > 0 ? smaller : step;
            break;
        }
    }
    a->lo = floor(lo / step) * step;
    a->hi = ceil(hi / step) * step;
    a->step = step;
}

static bool plottable(const TuneReport *r, int i) {
    return isfinite(cost_x(r, i)) && isfinite(cost_y(r, i));
}

/* An axis over [lo, hi] padded so no point sits on the frame and a single
 * value (one row, or all equal) still spans a range. */
static Axis axis_span(double lo, double hi, double from, double to) {
    if (lo > hi)
        lo = hi = 0;
    double size = fmax(fabs(lo), fabs(hi)), pad = (hi - lo) * 0.05;
    if (hi - lo <= size * 1e-3) /* too narrow for ticks that print apart */
        pad = size > 0 ? size * 0.1 : 1;
    Axis a = {0, 0, 0, from, to};
    axis_ticks(&a, lo - pad, hi + pad);
    return a;
}

/* An axis over the finite costs. */
static Axis axis_fit(const TuneReport *r, bool y, double from, double to) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < r->n_rows; i++)
        if (plottable(r, i))
            lo = fmin(lo, cost(r, i, y)), hi = fmax(hi, cost(r, i, y));
    return axis_span(lo, hi, from, to);
}

static double axis_px(const Axis *a, double v) {
    return a->from + (v - a->lo) / (a->hi - a->lo) * (a->to - a->from);
}

static void svg_axis(FILE *f, const Axis *a, bool y) {
    int n = (int)lround((a->hi - a->lo) / a->step);
    for (int k = 0; k <= n; k++) {
        /* index times step: lo + k * step would print 5.55112e-17 for 0 */
        double v = (floor(a->lo / a->step + 0.5) + k) * a->step, p = axis_px(a, v);
        if (y)
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                       "<text class=\"y-tick\" x=\"%d\" y=\"%.1f\" "
                       "text-anchor=\"end\">%g</text>\n",
                    LEFT, p, SVG_W - RIGHT, p, LEFT - 6, p + 4, v);
        else
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n"
                       "<text class=\"x-tick\" x=\"%.1f\" y=\"%d\" "
                       "text-anchor=\"middle\">%g</text>\n",
                    p, TOP, p, SVG_H - BOTTOM, p, SVG_H - BOTTOM + 18, v);
    }
}

/* The page, the grid of both axes and the plot's frame: what every plot
 * starts with. */
static void svg_frame(FILE *f, const Axis *ax, const Axis *ay) {
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            SVG_W, SVG_H, SVG_W, SVG_H);
    svg_axis(f, ax, false);
    svg_axis(f, ay, true);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
               "stroke=\"#333\"/>\n",
            LEFT, TOP, SVG_W - LEFT - RIGHT, SVG_H - TOP - BOTTOM);
}

static void svg_titles(const TuneReport *r, FILE *f) {
    fprintf(f, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">", SVG_W / 2);
    text_put(f, r->model_name, true);
    fputs(": kv_heads, weight and cache type variants, backend ", f);
    text_put(f, r->backend, true);
    fputs(strcmp(r->backend, "tcc") ? "" : " (unoptimized code)", f);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">decode latency at context "
               "%d (ms/token)</text>\n",
            (LEFT + SVG_W - RIGHT) / 2, SVG_H - 20, r->contexts[r->n_contexts - 1]);
    fprintf(f, "<text transform=\"translate(20,%d) rotate(-90)\" text-anchor=\"middle\">",
            (TOP + SVG_H - BOTTOM) / 2);
    if (has_ppl(r)) {
        fputs("perplexity on ", f);
        text_put(f, r->eval_path ? base_name(r->eval_path) : "the eval text", true);
    } else {
        fputs("bytes per token (weights and KV)", f);
    }
    fputs("</text>\n", f);
}

/* The Pareto points joined in order of latency. */
static bool svg_front(const TuneReport *r, FILE *f, const Axis *ax, const Axis *ay) {
    int *order = malloc(sizeof *order * (size_t)(r->n_rows + 1)), n = 0;
    if (!order) {
        errno = ENOMEM;
        return false;
    }
    for (int i = 0; i < r->n_rows; i++) {
        if (!r->rows[i].pareto || !plottable(r, i))
            continue;
        int k = n++;
        for (; k > 0 && cost_x(r, order[k - 1]) > cost_x(r, i); k--)
            order[k] = order[k - 1];
        order[k] = i;
    }
    fputs("<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"", f);
    for (int k = 0; k < n; k++)
        fprintf(f, "%s%.1f,%.1f", k ? " " : "", axis_px(ax, cost_x(r, order[k])),
                axis_px(ay, cost_y(r, order[k])));
    fputs("\"/>\n", f);
    free(order);
    return true;
}

static void svg_points(const TuneReport *r, FILE *f, const Axis *ax, const Axis *ay) {
    for (int i = 0; i < r->n_rows; i++) {
        if (!plottable(r, i))
            continue; /* a NaN or infinity has no place on an axis */
        double x = axis_px(ax, cost_x(r, i)), y = axis_px(ay, cost_y(r, i));
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f77b4\"/>\n"
                   "<text x=\"%.1f\" y=\"%.1f\">kv%d ",
                x, y, x + 11, y - 6, r->rows[i].kv_heads);
        text_put(f, weights_of(r, i), true);
        if (r->rows[i].kv_cache && strcmp(r->rows[i].kv_cache, "f32")) {
            fputs(" cache ", f); /* an f32 cache, the default, goes unsaid */
            text_put(f, r->rows[i].kv_cache, true);
        }
        fputs("</text>\n", f);
        if (i == r->recommended)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"9\" fill=\"none\" stroke=\"#2ca02c\" "
                       "stroke-width=\"2\"/>\n",
                    x, y);
    }
}

/* The legend's symbols are paths, so each <circle> in the file is a point. */
static void svg_legend(const TuneReport *r, FILE *f) {
    int x = SVG_W - RIGHT - 220, y = TOP + 10, rows = r->recommended >= 0 ? 3 : 2;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"210\" height=\"%d\" fill=\"white\" "
               "stroke=\"#999\"/>\n",
            x, y, 8 + 18 * rows);
    fprintf(f, "<path d=\"M%d %dm-4 0a4 4 0 1 0 8 0a4 4 0 1 0 -8 0\" fill=\"#1f77b4\"/>\n"
               "<text x=\"%d\" y=\"%d\">variant (kvN TYPE [cache T])</text>\n",
            x + 14, y + 14, x + 28, y + 18);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#d62728\" "
               "stroke-width=\"1.5\"/>\n<text x=\"%d\" y=\"%d\">Pareto front</text>\n",
            x + 6, y + 32, x + 22, y + 32, x + 28, y + 36);
    if (r->recommended >= 0)
        fprintf(f, "<path d=\"M%d %dm-9 0a9 9 0 1 0 18 0a9 9 0 1 0 -18 0\" fill=\"none\" "
                   "stroke=\"#2ca02c\" stroke-width=\"2\"/>\n"
                   "<text x=\"%d\" y=\"%d\">recommended</text>\n",
                x + 14, y + 50, x + 28, y + 54);
}

static bool svg_write(const TuneReport *r, FILE *f) {
    Axis ax = axis_fit(r, false, LEFT, SVG_W - RIGHT);
    Axis ay = axis_fit(r, true, SVG_H - BOTTOM, TOP);
    svg_frame(f, &ax, &ay);
    svg_titles(r, f);
    bool ok = svg_front(r, f, &ax, &ay);
    svg_points(r, f, &ax, &ay);
    svg_legend(r, f);
    fputs("</svg>\n", f);
    return ok;
}

int report_svg(const TuneReport *r, const char *path, char *err, size_t errlen) {
    return write_file(r, path, svg_write, err, errlen);
}

/* ---- SVG of uptraining: perplexity against steps ---- */

static bool uptrained(const TuneReport *r, int i) {
    return r->rows[i].init && r->rows[i].uptrain_steps >= 0 && isfinite(r->rows[i].ppl);
}

/* Rows i and j on one line: the same kv_heads, init, weights and cache. */
static bool same_line(const TuneReport *r, int i, int j) {
    const TuneRow *a = &r->rows[i], *b = &r->rows[j];
    return a->kv_heads == b->kv_heads && !strcmp(a->init, b->init) &&
           !strcmp(weights_of(r, i), weights_of(r, j)) && !strcmp(cache_of(r, i), cache_of(r, j));
}

/* One line per (kv_heads, init, types) through its rows by steps (the
 * rows come by steps already), labelled at its last point. */
static void svg_lines(const TuneReport *r, FILE *f, const Axis *ax, const Axis *ay) {
    static const char *const colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd",
                                         "#8c564b", "#e377c2", "#17becf", "#bcbd22"};
    int line = 0;
    for (int i = 0; i < r->n_rows; i++) {
        bool first = uptrained(r, i);
        for (int j = 0; first && j < i; j++)
            first = !(uptrained(r, j) && same_line(r, i, j));
        if (!first)
            continue;
        const char *c = colors[line++ % 8];
        int last = i;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", c);
        for (int j = i; j < r->n_rows; j++)
            if (uptrained(r, j) && same_line(r, i, j))
                fprintf(f, "%s%.1f,%.1f", j > i ? " " : "",
                        axis_px(ax, (double)r->rows[j].uptrain_steps), axis_px(ay, r->rows[j].ppl)),
                    last = j;
        fputs("\"/>\n", f);
        for (int j = i; j < r->n_rows; j++)
            if (uptrained(r, j) && same_line(r, i, j))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                        axis_px(ax, (double)r->rows[j].uptrain_steps), axis_px(ay, r->rows[j].ppl), c);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"%s\">kv%d ",
                axis_px(ax, (double)r->rows[last].uptrain_steps) - 6,
                axis_px(ay, r->rows[last].ppl) - 6, c, r->rows[i].kv_heads);
        text_put(f, r->rows[i].init, true);
        fputs(" ", f);
        text_put(f, weights_of(r, i), true);
        fputs("</text>\n", f);
    }
}

static bool uptrain_svg_write(const TuneReport *r, FILE *f) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    int orig = original_row(r);
    for (int i = 0; i < r->n_rows; i++)
        if (uptrained(r, i) || (i == orig && isfinite(r->rows[i].ppl))) {
            ylo = fmin(ylo, r->rows[i].ppl), yhi = fmax(yhi, r->rows[i].ppl);
            if (i != orig)
                xlo = fmin(xlo, (double)r->rows[i].uptrain_steps),
                xhi = fmax(xhi, (double)r->rows[i].uptrain_steps);
        }
    Axis ax = axis_span(xlo, xhi, LEFT, SVG_W - RIGHT), ay = axis_span(ylo, yhi, SVG_H - BOTTOM, TOP);
    svg_frame(f, &ax, &ay);
    fprintf(f, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">", SVG_W / 2);
    text_put(f, r->model_name, true);
    fprintf(f, ": perplexity after conversion and uptraining</text>\n<text x=\"%d\" y=\"%d\" "
               "text-anchor=\"middle\">uptraining steps</text>\n<text transform=\"translate(20,%d) "
               "rotate(-90)\" text-anchor=\"middle\">perplexity on ",
            (LEFT + SVG_W - RIGHT) / 2, SVG_H - 20, (TOP + SVG_H - BOTTOM) / 2);
    text_put(f, r->eval_path ? base_name(r->eval_path) : "the eval text", true);
    fputs("</text>\n", f);
    if (orig >= 0 && isfinite(r->rows[orig].ppl)) /* the original: the line to get back to */
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#333\" "
                   "stroke-dasharray=\"6 4\"/>\n<text x=\"%d\" y=\"%.1f\">original (kv%d)</text>\n",
                LEFT, axis_px(&ay, r->rows[orig].ppl), SVG_W - RIGHT, axis_px(&ay, r->rows[orig].ppl),
                LEFT + 6, axis_px(&ay, r->rows[orig].ppl) - 6, r->rows[orig].kv_heads);
    svg_lines(r, f, &ax, &ay);
    fputs("</svg>\n", f);
    return true;
}

int report_uptrain_svg(const TuneReport *r, const char *path, char *err, size_t errlen) {
    return write_file(r, path, uptrain_svg_write, err, errlen);
}
