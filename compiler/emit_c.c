/*
 * emit_c.c: plan + templates -> C.  Needs: a Plan (every hole's value).
 * Provides: the generated .c and .h.  Emission cannot fail and decides
 * nothing: what to generate was fixed by plan.c.
 *
 * Templates are C files (templates/) that compile on their own with
 * shape.h's defaults.  Expanding one:
 *   - a line marked gqac:drop goes (the includes that make it standalone);
 *   - a loop `for (int v = A; v < B; v++) {` marked with a gqac:unroll comment whose trip
 *     count is within the plan's limit becomes B - A copies of its body,
 *     each in its own braces with v replaced by its value;
 *   - a region from an `#if GQ_RANKS > 1` marked gqac:sharded to its
 *     #endif (maybe with an #else) is a rank's code (gqac --ranks): kept
 *     as it is in a rank's code, gone from a whole model's, which keeps
 *     the #else part alone;
 *   - identifiers gqm_... and GQM_... take the model's prefix;
 *   - in the header, holes (GQ_...) become their values, so that two
 *     models' headers can be included together.
 */
#include "gqac.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- identifier rewriting ---- */

typedef struct {
    const Plan *plan;
    const char *prefix, *upper_prefix;
    bool fill_holes;      /* header: holes by value */
    const char *var;      /* an unrolled loop's variable, or NULL */
    const char *var_value;
} Rewrite;

static bool ident_start(char c) {
    return isalpha((unsigned char)c) || c == '_';
}

static bool ident_char(char c) {
    return isalnum((unsigned char)c) || c == '_';
}

/* One identifier, rewritten by the rules above. */
static void rewrite_ident(Buf *out, const char *id, size_t n, const Rewrite *rw) {
    const char *hole;
    char name[128];
    if (n >= sizeof name) {
        buf_putn(out, id, n);
        return;
    }
    memcpy(name, id, n);
    name[n] = '\0';
    if (rw->var && !strcmp(name, rw->var))
        buf_puts(out, rw->var_value);
    else if (!strncmp(name, "gqm_", 4))
        buf_printf(out, "%s_%s", rw->prefix, name + 4);
    else if (!strncmp(name, "GQM_", 4))
        buf_printf(out, "%s_%s", rw->upper_prefix, name + 4);
    else if (rw->fill_holes && (hole = plan_hole(rw->plan, name)))
        buf_puts(out, hole);
    else
        buf_putn(out, id, n);
}

/* Copies C text, rewriting identifiers outside comments, strings and
 * character constants. */
static void rewrite(Buf *out, const char *s, size_t n, const Rewrite *rw) {
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
            for (i += 2; i + 1 < n && !(s[i] == '*' && s[i + 1] == '/'); i++)
                ;
            i = i + 1 < n ? i + 2 : n;
        } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '/') {
            while (i < n && s[i] != '\n')
                i++;
        } else if (s[i] == '"' || s[i] == '\'') {
            char q = s[i++];
            while (i < n && s[i] != q)
                i += s[i] == '\\' ? 2 : 1;
            i = i < n ? i + 1 : n;
        } else if (ident_start(s[i]) && (i == 0 || !ident_char(s[i - 1]))) {
            while (i < n && ident_char(s[i]))
                i++;
            rewrite_ident(out, s + start, i - start, rw);
            continue;
        } else {
            i++;
        }
        buf_putn(out, s + start, i - start);
    }
}

/* ---- unrolling ---- */

typedef struct {
    char var[32];
    long first, last; /* v runs first .. last - 1 */
    size_t indent;
} Loop;

/* Whether the line s (n bytes, not NUL-terminated) holds word. */
static bool line_has(const char *s, size_t n, const char *word) {
    size_t w = strlen(word);
    for (size_t i = 0; i + w <= n; i++)
        if (!memcmp(s + i, word, w))
            return true;
    return false;
}

static size_t line_len(const char *s, size_t n) {
    const char *nl = memchr(s, '\n', n);
    return nl ? (size_t)(nl - s) + 1 : n;
}

static long bound(const char *word, const Plan *p) {
    const char *v = plan_hole(p, word);
    char *end;
    long n = strtol(v ? v : word, &end, 10);
    return *end == '\0' ? n : -1;
}

/* Recognizes `for (int v = A; v < B; v++) {` marked gqac:unroll. */
static bool parse_unroll(const char *line, size_t n, const Plan *p, Loop *loop) {
    char text[256], a[64], b[64], v2[32], v3[32];
    if (n >= sizeof text || !line_has(line, n, "gqac:unroll"))
        return false;
    memcpy(text, line, n);
    text[n] = '\0';
    loop->indent = strspn(text, " ");
    if (sscanf(text + loop->indent, "for (int %31[a-z_] = %63[A-Za-z0-9_]; %31[a-z_] < %63[A-Za-z0-9_]; %31[a-z_]++) {",
               loop->var, a, v2, b, v3) != 5 ||
        strcmp(loop->var, v2) || strcmp(loop->var, v3))
        return false;
    loop->first = bound(a, p);
    loop->last = bound(b, p);
    return loop->first >= 0 && loop->last >= loop->first &&
           loop->last - loop->first <= p->unroll_limit;
}

/* The end of a loop body: the first line that starts with '}' at the
 * loop's indent (templates put an unrolled loop's closing brace alone). */
static size_t body_end(const char *s, size_t n, size_t indent) {
    size_t i = 0;
    while (i < n) {
        size_t len = line_len(s + i, n - i);
        if (strspn(s + i, " ") == indent && s[i + indent] == '}')
            return i;
        i += len;
    }
    return n;
}

static void expand(Buf *out, const char *s, size_t n, const Rewrite *rw);

/* A one-line body is copied as it is, the loop variable's value in a
 * comment; a longer one sits in braces of its own so its declarations stay
 * local.  The copies' text is expanded again, for nested loops. */
static void unroll(Buf *out, const Loop *loop, const char *body, size_t n, const Rewrite *rw) {
    bool one_line = line_len(body, n) == n;
    for (long v = loop->first; v < loop->last; v++) {
        Buf copy = {0};
        char value[24];
        Rewrite sub = {rw->plan, "gqm", "GQM", false, loop->var, value};
        snprintf(value, sizeof value, "%ld", v);
        rewrite(&copy, body, n, &sub);
        if (one_line) {
            size_t text = copy.len - (copy.len && copy.data[copy.len - 1] == '\n');
            size_t indent = strspn(copy.data, " ");
            buf_printf(out, "%*s", (int)loop->indent, "");
            rewrite(out, copy.data + indent, text - indent, rw);
            buf_printf(out, " /* %s = %ld */\n", loop->var, v);
        } else {
            buf_printf(out, "%*s{ /* %s = %ld */\n", (int)loop->indent, "", loop->var, v);
            expand(out, copy.data ? copy.data : "", copy.len, rw);
            buf_printf(out, "%*s}\n", (int)loop->indent, "");
        }
        buf_free(&copy);
    }
}

/* ---- a rank's code ---- */

/* Whether a line is a preprocessor line starting with word ("#if", ...). */
static bool directive(const char *s, size_t n, const char *word) {
    size_t at = strspn(s, " "), w = strlen(word);
    return at + w <= n && !memcmp(s + at, word, w);
}

/* From a `#if GQ_RANKS > 1` marked gqac:sharded (s, its first line), the
 * matching #else (*mid, or n when none) and #endif (*end), by nesting. */
static void sharded_region(const char *s, size_t n, size_t *mid, size_t *end) {
    int depth = 0;
    *mid = *end = n;
    for (size_t i = 0; i < n; i += line_len(s + i, n - i)) {
        size_t len = line_len(s + i, n - i);
        if (directive(s + i, len, "#if"))
            depth++;
        else if (directive(s + i, len, "#else") && depth == 1 && *mid == n)
            *mid = i;
        else if (directive(s + i, len, "#endif") && --depth == 0) {
            *end = i;
            return;
        }
    }
}

/* A whole model's code has none of a rank's: a region marked gqac:sharded
 * goes, its #else part stays without the directives, so that the code of
 * a model compiled whole is what it was before ranks existed. */
static size_t drop_sharded(Buf *out, const char *s, size_t n, const Rewrite *rw) {
    size_t mid, end;
    sharded_region(s, n, &mid, &end);
    if (mid < end) {
        size_t body = mid + line_len(s + mid, n - mid);
        expand(out, s + body, end - body, rw);
    }
    return end < n ? end + line_len(s + end, n - end) : n;
}

static void expand(Buf *out, const char *s, size_t n, const Rewrite *rw) {
    size_t i = 0;
    while (i < n) {
        size_t len = line_len(s + i, n - i);
        Loop loop;
        if (line_has(s + i, len, "gqac:drop")) {
            i += len;
        } else if (line_has(s + i, len, "gqac:sharded") && rw->plan->ranks <= 1) {
            i += drop_sharded(out, s + i, n - i, rw);
        } else if (parse_unroll(s + i, len, rw->plan, &loop)) {
            size_t body = i + len, end = body + body_end(s + body, n - body, loop.indent);
            unroll(out, &loop, s + body, end - body, rw);
            i = end + line_len(s + end, n - end);
        } else {
            rewrite(out, s + i, len, rw);
            i += len;
        }
    }
}

/* The prefix in capitals, for macros; cname_check bounds its length. */
static void upper_case(char *out, size_t size, const char *prefix) {
    size_t i = 0;
    for (; prefix[i] && i + 1 < size; i++)
        out[i] = (char)toupper((unsigned char)prefix[i]);
    out[i] = '\0';
}

void emit_template(Buf *out, const char *tmpl, const Plan *p, const char *prefix) {
    char upper[64];
    upper_case(upper, sizeof upper, prefix);
    Rewrite rw = {p, prefix, upper, false, NULL, NULL};
    expand(out, tmpl, strlen(tmpl), &rw);
}

/* ---- whole files ---- */

static void emit_holes(Buf *c, const Plan *p) {
    buf_puts(c, "/* The shape of this model: the holes of templates/shape.h. */\n");
    for (int i = 0; i < p->n_holes; i++)
        buf_printf(c, "#define %s %s\n", p->holes[i].name, p->holes[i].value);
}

/* The header: gqa_api.h inlined where model.h includes it, holes filled. */
static void emit_header(Buf *h, const Plan *p, const char *prefix) {
    char upper[64];
    upper_case(upper, sizeof upper, prefix);
    Rewrite rw = {p, prefix, upper, true, NULL, NULL};
    const char *t = template_get("model.h");
    const char *api = strstr(t, "#include \"gqa_api.h\" /* gqac:api */");
    const char *after = strchr(api, '\n') + 1;
    buf_printf(h, "/* Generated by gqac %s.  Do not edit. */\n", GQAC_VERSION);
    rewrite(h, t, (size_t)(api - t), &rw);
    buf_puts(h, template_get("gqa_api.h"));
    rewrite(h, after, strlen(after), &rw);
}

/* The training table's declaration, before the header's closing #endif. */
static void declare_train(Buf *h, const char *prefix) {
    size_t at = h->len >= 6 ? h->len - 6 : 0;
    while (at > 0 && memcmp(h->data + at, "#endif", 6))
        at--;
    Buf tail = {0};
    buf_putn(&tail, h->data + at, h->len - at);
    h->len = at;
    buf_printf(h, "/* The training step (gqac --train): gqa_api.h's gqa_train_api. */\n"
                  "extern const gqa_train_api %s_train_api;\n\n", prefix);
    buf_putn(h, tail.data, tail.len);
    buf_free(&tail);
}

/* Whether every layer of kind k's tensors is f32 (compiled in as floats;
 * others as the bytes of their blocks). */
static bool kind_all_f32(const Plan *p, int64_t first) {
    for (int64_t i = first; i < p->n_slices && p->slices[i].kind == p->slices[first].kind; i++)
        if (p->slices[i].type != DT_F32)
            return false;
    return true;
}

/* Bytes of kind k's tensors in the packed weights, from slice first on. */
static uint64_t kind_bytes(const Plan *p, int64_t first) {
    int64_t i = first;
    while (i + 1 < p->n_slices && p->slices[i + 1].kind == p->slices[first].kind)
        i++;
    return p->slices[i].offset + (p->slices[i].bytes + 3) / 4 * 4 - p->slices[first].offset;
}

/* Compiled-in weights: each kind's tensors one object (emit_weights.c
 * writes them), and a pointer to each layer's tensor in it.  A kind that
 * mixes f32 with other types is bytes as the file has them, so its f32
 * layers are little-endian: refused on big-endian targets. */
static void emit_embedded(Buf *c, const Plan *p, const char *prefix) {
    bool mixed = false;
    buf_puts(c, "\n/* The weights compiled in (gqac --embed-weights). */\n");
    for (int64_t i = 0; i < p->n_slices; i++) {
        if (p->slices[i].layer > 0)
            continue;
        const char *name = p->slices[i].name;
        uint64_t bytes = kind_bytes(p, i);
        bool f32 = kind_all_f32(p, i);
        if (f32)
            buf_printf(c, "extern const union %s_w_%s { uint32_t bits[%llu]; float f[%llu]; } %s_w_%s;\n",
                       prefix, name, (unsigned long long)bytes / 4, (unsigned long long)bytes / 4, prefix, name);
        else
            buf_printf(c, "extern const union %s_w_%s { float f[%llu]; unsigned char b[%llu]; } %s_w_%s;\n",
                       prefix, name, (unsigned long long)bytes / 4, (unsigned long long)bytes, prefix, name);
        for (int64_t j = i; !f32 && j < p->n_slices && p->slices[j].kind == p->slices[i].kind; j++)
            mixed = mixed || p->slices[j].type == DT_F32;
    }
    if (mixed)
        buf_puts(c, "#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__\n"
                    "#error \"compiled-in weights that mix f32 with other types in one kind need a "
                    "little-endian target\"\n#endif\n");
    buf_puts(c, "static const void *const gq_embedded[GQ_N_TENSORS] = {\n");
    for (int64_t i = 0, first = 0; i < p->n_slices; i++) {
        if (p->slices[i].layer <= 0)
            first = i;
        uint64_t at = p->slices[i].offset - p->slices[first].offset;
        if (kind_all_f32(p, first) || p->slices[i].type == DT_F32) /* at: a multiple of 4 */
            buf_printf(c, "    %s_w_%s.f + %llu,\n", prefix, p->slices[i].name, (unsigned long long)at / 4);
        else
            buf_printf(c, "    %s_w_%s.b + %llu,\n", prefix, p->slices[i].name, (unsigned long long)at);
    }
    buf_puts(c, "};\n");
}

static void emit_table(Buf *c, const char *name, const char *count, const Slice *slices, int64_t n) {
    buf_printf(c, "static const gqa_tensor %s[%s] = {\n", name, count);
    for (int64_t i = 0; i < n; i++) {
        const Slice *t = &slices[i];
        buf_printf(c, "    {\"%s\", %d, %lld, %d, %llu, %llu, %llu, %llu},\n", t->name, (int)t->kind,
                   (long long)t->layer, (int)t->type, (unsigned long long)t->rows,
                   (unsigned long long)t->cols, (unsigned long long)t->bytes, (unsigned long long)t->offset);
    }
    buf_puts(c, "};\n");
}

/* A rank's view of the whole model (forward.c's gq_shard points at
 * these): the whole tensor table and every rank's vocabulary rows. */
static void emit_whole(Buf *c, const Plan *p) {
    buf_puts(c, "\n/* Tensor parallelism: the whole model's tensors, of which this rank holds a share. */\n");
    emit_table(c, "gq_whole_tensors", "GQ_WHOLE_N_TENSORS", p->whole_slices, p->n_whole_slices);
    buf_puts(c, "static const int gq_vocab_counts[GQ_RANKS] = {");
    for (int r = 0; r < p->ranks; r++)
        buf_printf(c, "%s%lld", r ? ", " : "", (long long)shard_vocab_rows(p->whole->vocab, p->ranks, r));
    buf_puts(c, "};\n");
}

/* The tensor table (gqa_api.h's gqa_tensor), in checkpoint order. */
static void emit_tensors(Buf *c, const Plan *p, const char *prefix) {
    buf_puts(c, "\n/* The weight tensors: name, kind, layer, type, rows, cols, bytes, offset in the packed "
                "weights. */\n#include <stdint.h>\n\n");
    emit_table(c, "gq_tensors", "GQ_N_TENSORS", p->slices, p->n_slices);
    if (p->ranks > 1)
        emit_whole(c, p);
    if (p->embedded)
        emit_embedded(c, p, prefix);
}

/* The templates in order; mathlib.c only where there is no libm. */
static void emit_parts(Buf *c, const Plan *p, const char *prefix, const char *const *parts) {
    for (; *parts; parts++) {
        if (!strcmp(*parts, "mathlib.c") && p->target != TARGET_FREESTANDING)
            continue;
        buf_printf(c, "\n/* ---- templates/%s ---- */\n", *parts);
        emit_template(c, template_get(*parts), p, prefix);
    }
}

void emit_c_model(const Plan *p, const char *prefix, const char *header_name, bool with_main,
                  Buf *c, Buf *h) {
    static const char *const parts[] = {"parallel.h", "mathlib.c", "gqmath.h", "qdot.c", "kernels.c",
                                        "attention.c", "forward.c", NULL};
    static const char *const train[] = {"train.c", NULL};
    emit_header(h, p, prefix);
    if (p->train)
        declare_train(h, prefix);
    buf_printf(c, "/* Generated by gqac %s.  Do not edit. */\n", GQAC_VERSION);
    if (header_name)
        buf_printf(c, "#include \"%s\"\n\n", header_name);
    else
        buf_putn(c, h->data, h->len);
    emit_holes(c, p);
    if (p->rope_table)
        emit_rope_table(p->rope_table, c);
    emit_tensors(c, p, prefix);
    emit_parts(c, p, prefix, parts);
    if (p->train)
        emit_parts(c, p, prefix, train);
    if (with_main && p->ranks > 1) { /* one rank of an MPI job: libgqa_mpi's gqr_mpi_main */
        buf_puts(c, "\n/* One rank of the program under mpirun: gqr_mpi_main in runtime/gqr.h (libgqa_mpi). */\n");
        buf_puts(c, "int gqr_mpi_main(const gqa_model_api *m, int argc, char **argv);\n");
        buf_puts(c, "int main(int argc, char **argv);\n");
        buf_printf(c, "int main(int argc, char **argv) {\n    return gqr_mpi_main(&%s_api, argc, argv);\n}\n",
                   prefix);
    } else if (with_main) {
        buf_puts(c, "\n/* The standalone program: gqr_main in runtime/gqr.h; --help lists its flags. */\n");
        buf_puts(c, "int gqr_main(const gqa_model_api *m, int argc, char **argv);\n");
        buf_puts(c, "int main(int argc, char **argv);\n");
        buf_printf(c, "int main(int argc, char **argv) {\n    return gqr_main(&%s_api, argc, argv);\n}\n",
                   prefix);
    }
}

/* Self-contained: it undefines its holes at the end, so a test can put
 * many shapes in one file (renaming the static functions first). */
void emit_c_attention(const Plan *p, const char *prefix, Buf *c) {
    buf_printf(c, "/* Generated by gqac %s: the attention kernel alone. */\n", GQAC_VERSION);
    static const char *const parts[] = {"parallel.h", "mathlib.c", "gqmath.h", "attention.c", NULL};
    emit_holes(c, p);
    emit_parts(c, p, prefix, parts);
    buf_printf(c, "\nvoid %s_attention(float *out, const float *q, const void *key_cache,\n"
                  "    const void *value_cache, int window, int sinks, int pos, float *scratch, int threads);\n", prefix);
    buf_printf(c, "void %s_attention(float *out, const float *q, const void *key_cache,\n"
                  "    const void *value_cache, int window, int sinks, int pos, float *scratch, int threads) {\n"
                  "    attention(out, q, key_cache, value_cache, window, sinks, pos, scratch, threads);\n}\n", prefix);
    buf_printf(c, "\nvoid %s_attention_prompt(float *out, const float *q, const void *key_cache,\n"
                  "    const void *value_cache, int window, int sinks, int p0, int b, int threads);\n", prefix);
    buf_printf(c, "void %s_attention_prompt(float *out, const float *q, const void *key_cache,\n"
                  "    const void *value_cache, int window, int sinks, int p0, int b, int threads) {\n"
                  "    attention_prompt(out, q, key_cache, value_cache, window, sinks, p0, b, threads);\n}\n", prefix);
    buf_printf(c, "\nvoid %s_kv_store(void *key_cache, void *value_cache, int window, int sinks, int pos,\n"
                  "    const float *k, const float *v);\n", prefix);
    buf_printf(c, "void %s_kv_store(void *key_cache, void *value_cache, int window, int sinks, int pos,\n"
                  "    const float *k, const float *v) {\n"
                  "    kv_store(key_cache, value_cache, window, sinks, pos, k, v);\n}\n", prefix);
    buf_printf(c, "\nsize_t %s_cache_bytes(int window, int sinks);\n", prefix);
    buf_printf(c, "size_t %s_cache_bytes(int window, int sinks) {\n"
                  "    return (size_t)GQ_KV_HEADS * (size_t)GQ_LAYER_BLOCKS(window, sinks) * GQ_KV_BLOCK_BYTES;\n}\n",
               prefix);
    for (int i = 0; i < p->n_holes; i++)
        buf_printf(c, "#undef %s\n", p->holes[i].name);
}
