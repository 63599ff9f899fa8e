/*
 * gqa_source.c: a Model as .gqa text.  Needs: a Model that sema would
 * accept.  Provides: what gqac import writes, and gqac tune --emit: every
 * field spelled out, numbers in the shortest decimal that reads back the
 * same, the name escaped, comment lines made safe.
 */
#include "gqac.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The name as a .gqa string: quotes and backslashes escaped, control
 * bytes dropped (the lexer takes only four escapes). */
static void put_name(Buf *b, const char *name) {
    buf_puts(b, "\"");
    for (const char *p = name; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if ((unsigned char)*p >= 0x20 && *p != 0x7f)
            buf_putn(b, p, 1);
    }
    buf_puts(b, "\"");
}

/* The shortest decimal that reads back as v: 1e-05, not
 * 1.0000000000000001e-05, and 500000, not 5e+05. */
static const char *num(char out[32], double v) {
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, 32, "%.0f", v);
        return out;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(out, 32, "%.*g", digits, v);
        if (strtod(out, NULL) == v)
            break;
    }
    return out;
}

/* Kind k's types, when they differ from weights: one word when every
 * layer has the same, else a list, eight to a line. */
static void write_kind(Buf *b, const Model *m, TensorKind k) {
    int64_t n = ir_kind_key(k) && (k != TK_CLS || !m->tied) ? (m->layer_types[k] ? m->layers : 1) : 0;
    bool same = true, plain = true;
    for (int64_t i = 0; i < n; i++) {
        same = same && ir_tensor_type(m, k, i) == ir_tensor_type(m, k, 0);
        plain = plain && ir_tensor_type(m, k, i) == m->weight_type;
    }
    if (n == 0 || plain)
        return;
    buf_printf(b, "        %-11s = ", ir_kind_key(k));
    if (same) {
        buf_printf(b, "%s\n", dtype_name(ir_tensor_type(m, k, 0)));
        return;
    }
    buf_puts(b, "[");
    for (int64_t i = 0; i < n; i++)
        buf_printf(b, "%s%s", i == 0 ? "" : i % 8 ? ", " : ",\n                       ",
                   dtype_name(ir_tensor_type(m, k, i)));
    buf_puts(b, "]\n");
}

/* Written only when some type is not f32, the default. */
static void write_dtypes(Buf *b, const Model *m) {
    Buf kinds = {0};
    for (int k = 0; k < TK_COUNT; k++)
        write_kind(&kinds, m, (TensorKind)k);
    if (m->weight_type != DT_F32 || m->kv_type != DT_F32 || kinds.len) {
        buf_printf(b, "\n    dtype {\n        %-11s = %s\n", "weights", dtype_name(m->weight_type));
        if (kinds.len)
            buf_putn(b, kinds.data, kinds.len);
        if (m->kv_type != DT_F32)
            buf_printf(b, "        %-11s = %s\n", "kv_cache", dtype_name(m->kv_type));
        buf_puts(b, "    }\n");
    }
    buf_free(&kinds);
}

/* The sliding window, its sinks and the global layers' period, each
 * only where set (sema accepts sinks and global_every only with a window). */
static void write_window(Buf *b, const Model *m) {
    if (m->window <= 0)
        return;
    buf_printf(b, "        window     = %lld\n", (long long)m->window);
    if (m->sinks > 0)
        buf_printf(b, "        sinks      = %lld\n", (long long)m->sinks);
    if (m->global_every > 0)
        buf_printf(b, "        global_every = %lld\n", (long long)m->global_every);
}

static void write_body(Buf *b, const Model *m) {
    char n1[32], n2[32], n3[32];
    buf_puts(b, "model ");
    put_name(b, m->name);
    buf_printf(b, " {\n    vocab   = %lld\n    dim     = %lld\n    layers  = %lld\n"
                  "    context = %lld\n    tie_embeddings = %s\n\n",
               (long long)m->vocab, (long long)m->dim, (long long)m->layers, (long long)m->context,
               m->tied ? "true" : "false");
    buf_printf(b, "    attention {\n        heads      = %lld\n        kv_heads   = %lld\n"
                  "        head_dim   = %lld\n        rope_theta = %s\n        rope_pairs = %s\n",
               (long long)m->heads, (long long)m->kv_heads, (long long)m->head_dim,
               num(n1, m->rope_theta), m->rope_halves ? "halves" : "adjacent");
    if (m->qkv_bias)
        buf_puts(b, "        qkv_bias   = true\n");
    write_window(b, m);
    buf_puts(b, "    }\n\n");
    if (m->rope_llama3)
        buf_printf(b, "    rope_scaling llama3 {\n        factor           = %s\n"
                      "        low_freq_factor  = %s\n        high_freq_factor = %s\n"
                      "        original_context = %lld\n    }\n\n",
                   num(n1, m->rope_factor), num(n2, m->rope_low_freq), num(n3, m->rope_high_freq),
                   (long long)m->rope_original_context);
    buf_printf(b, "    ffn swiglu {\n        hidden = %lld\n    }\n\n", (long long)m->hidden);
    buf_printf(b, "    norm rmsnorm {\n        eps = %s\n    }\n", num(n1, m->norm_eps));
    write_dtypes(b, m);
    buf_puts(b, "}\n");
}

/* A comment line: bytes that would end it or confuse a terminal become '?'. */
static void put_comment(Buf *b, const char *text) {
    buf_puts(b, "# ");
    for (const char *p = text; *p; p++)
        buf_putn(b, (unsigned char)*p < 0x20 ? "?" : p, 1);
    buf_puts(b, "\n");
}

void gqa_source(Buf *b, const Model *m, const char *const *comments) {
    for (; *comments; comments++)
        put_comment(b, *comments);
    write_body(b, m);
}
