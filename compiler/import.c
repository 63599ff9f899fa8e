/*
 * import.c: `gqac import FILE -o MODEL.gqa`.  Needs: cJSON for Hugging
 * Face's config.json, the runtime's tensorfile.h for GGUF metadata.
 * Provides: a model description from a config.json (or the folder holding
 * one), a GGUF file, or a llama2.c checkpoint's header, checked by the
 * front end before it is written.
 *
 * Architectures: llama (Llama 2 and 3, TinyLlama), mistral, qwen2.  A key
 * the importer does not know may change the model, so it is an error that
 * names it; the keys that cannot (token ids, dtypes, training settings)
 * are listed as known and ignored.
 */
#include "gqac.h"
#include "gqr.h"
#include "tensorfile.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What a .gqa says, gathered from any source. */
typedef struct {
    char name[128];
    const char *source;  /* the format, for the header comment */
    char note[256];      /* a comment line for the reader, or "" */
    long long vocab, dim, layers, context, heads, kv_heads, head_dim, hidden;
    double theta, eps;
    bool tied, bias, halves;
    bool llama3;
    double factor, low_freq, high_freq;
    long long original_context;
    long long window, global_every; /* sliding window (0: none), its global layers' period */
    /* Each matrix's GQR_DT_* (DType's numbers) by layer (one entry for
     * token_embd and output), -1 where the file has none; NULL for a kind
     * the file lacks, or no weights were read. */
    int *types[TK_COUNT];
} Imported;

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    Arena *arena;
    const char *tensors; /* a config.json's weights file, or NULL: model.safetensors beside it */
} Ctx;

static int fail(Ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(c->err, c->errlen, "%s: ", c->path);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- weight types ---- */

/* Hugging Face's names of a layer's matrices; GGUF's are ir_kind_key's. */
static const char *const hf_names[TK_COUNT] = {
    [TK_WQ] = "self_attn.q_proj", [TK_WK] = "self_attn.k_proj", [TK_WV] = "self_attn.v_proj",
    [TK_WO] = "self_attn.o_proj", [TK_W1] = "mlp.gate_proj", [TK_W2] = "mlp.down_proj",
    [TK_W3] = "mlp.up_proj"};

/* The kind of the matrix called name (GGUF's or Hugging Face's name) and
 * its layer, or -1 for anything else (norms, biases). */
static int matrix_kind(const char *name, long long *layer) {
    *layer = 0;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "model.embed_tokens.weight"))
        return TK_EMBED;
    if (!strcmp(name, "output.weight") || !strcmp(name, "lm_head.weight"))
        return TK_CLS;
    bool gguf = !strncmp(name, "blk.", 4);
    const char *p = gguf ? name + 4 : !strncmp(name, "model.layers.", 13) ? name + 13 : NULL;
    char *end;
    if (!p || !isdigit((unsigned char)*p))
        return -1;
    errno = 0;
    *layer = strtoll(p, &end, 10);
    if (errno || *end != '.')
        return -1;
    for (int k = TK_WQ; k <= TK_W3; k++) {
        const char *key = gguf ? ir_kind_key((TensorKind)k) : hf_names[k];
        size_t n = key ? strlen(key) : 0;
        if (key && !strncmp(end + 1, key, n) && !strcmp(end + 1 + n, ".weight"))
            return k;
    }
    return -1;
}

/* Every matrix's exact type, from the tensor directory alone (no data is
 * read).  Tensors past the layer count are the loader's to refuse. */
static int read_types(Ctx *c, const gqr_tensorfile *tf, Imported *m) {
    for (int i = 0; i < gqr_tf_count(tf); i++) {
        const gqr_tensor *t = gqr_tf_tensor(tf, i);
        long long layer;
        int k = matrix_kind(t->name, &layer);
        long long n = k == TK_EMBED || k == TK_CLS ? 1 : m->layers;
        if (k < 0 || layer >= n)
            continue;
        if (t->dtype < 0 || t->dtype >= DT_COUNT) /* the readers know no other types */
            return fail(c, "tensor '%s' has type %s, which gqac does not know", t->name,
                        gqr_tf_dtype_name(t->dtype));
        /* Checked here, as sema would check the type against the wrong width. */
        long long width = k == TK_WO ? m->heads * m->head_dim : k == TK_W2 ? m->hidden : m->dim;
        if (t->n_dims >= 1 && t->dims[t->n_dims - 1] != (uint64_t)width)
            return fail(c, "tensor '%s' has rows of %llu weights, but the model's %s rows are %s = "
                        "%lld wide", t->name, (unsigned long long)t->dims[t->n_dims - 1],
                        ir_kind_key((TensorKind)k), k == TK_WO ? "heads * head_dim"
                        : k == TK_W2 ? "hidden" : "dim", width);
        if (!m->types[k]) {
            m->types[k] = arena_alloc(c->arena, (size_t)n * sizeof(int));
            for (long long j = 0; j < n; j++)
                m->types[k][j] = -1;
        }
        m->types[k][layer] = t->dtype;
    }
    return 0;
}

/* A config.json's weights: the file given, or the model.safetensors (or
 * its sharded set's index) beside it; none at all leaves every type f32. */
static int config_types(Ctx *c, Imported *m) {
    const char *slash = strrchr(c->path, '/');
    int dir = slash ? (int)(slash - c->path) : 1;
    const char *base = slash ? c->path : ".";
    const char *try[] = {c->tensors, arena_printf(c->arena, "%.*s/model.safetensors.index.json", dir, base),
                         arena_printf(c->arena, "%.*s/model.safetensors", dir, base)};
    struct stat st;
    for (int i = c->tensors ? 0 : 1; i < (c->tensors ? 1 : 3); i++) {
        if (stat(try[i], &st) != 0)
            continue;
        gqr_tensorfile *tf = NULL;
        if (gqr_tf_open(&tf, try[i], c->err, c->errlen))
            return -1;
        int rc = read_types(c, tf, m);
        gqr_tf_close(tf);
        return rc;
    }
    return 0;
}

/* ---- config.json ---- */

/* Keys that change nothing gqac generates. */
static const char *const ignored_keys[] = {
    "_name_or_path", "architectures", "model_type", "bos_token_id", "eos_token_id",
    "pad_token_id", "torch_dtype", "transformers_version", "use_cache", "initializer_range",
    "attention_dropout", "pretraining_tp", "max_window_layers", "use_sliding_window",
    "hidden_act", "sliding_window", "attention_bias", "mlp_bias", "rope_scaling", "head_dim",
    "num_key_value_heads", "rope_theta", "rms_norm_eps", "tie_word_embeddings",
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "max_position_embeddings", NULL};

static bool known_key(const char *k) {
    for (int i = 0; ignored_keys[i]; i++)
        if (!strcmp(k, ignored_keys[i]))
            return true;
    return false;
}

static int json_int(Ctx *c, const cJSON *o, const char *key, bool required, long long dflt,
                    long long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return required ? fail(c, "missing key '%s'", key) : 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > 2147483647.0)
        return fail(c, "'%s' must be a positive integer", key);
    *out = (long long)v->valuedouble;
    return 0;
}

static int json_num(Ctx *c, const cJSON *o, const char *key, double dflt, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = dflt;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
        return fail(c, "'%s' must be a positive number", key);
    *out = v->valuedouble;
    return 0;
}

static bool json_true(const cJSON *o, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int config_rope_scaling(Ctx *c, const cJSON *o, Imported *m) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    if (!rs || cJSON_IsNull(rs))
        return 0;
    const char *type = json_str(rs, "rope_type") ? json_str(rs, "rope_type") : json_str(rs, "type");
    if (!type || strcmp(type, "llama3"))
        return fail(c, "rope_scaling of type '%s' is not supported (supported: llama3)",
                    type ? type : "(none)");
    m->llama3 = true;
    return json_num(c, rs, "factor", 0, &m->factor) ||
           json_num(c, rs, "low_freq_factor", 0, &m->low_freq) ||
           json_num(c, rs, "high_freq_factor", 0, &m->high_freq) ||
           json_int(c, rs, "original_max_position_embeddings", true, 0, &m->original_context);
}

/* Settings gqac cannot generate, each named. */
static int config_unsupported(Ctx *c, const cJSON *o, const char *arch) {
    const char *act = json_str(o, "hidden_act");
    if (act && strcmp(act, "silu"))
        return fail(c, "hidden_act '%s' is not supported (gqac generates SwiGLU with silu)", act);
    if (json_true(o, "mlp_bias"))
        return fail(c, "mlp_bias = true is not supported (FFN biases)");
    if (strcmp(arch, "qwen2") && json_true(o, "attention_bias"))
        return fail(c, "attention_bias = true is not supported for %s (it biases o_proj too)", arch);
    for (const cJSON *k = o->child; k; k = k->next)
        if (!known_key(k->string))
            return fail(c, "key '%s' is not understood by gqac import (it may change the model)",
                        k->string);
    return 0;
}

static const char *config_arch(const cJSON *o) {
    const char *type = json_str(o, "model_type");
    static const char *const archs[] = {"llama", "mistral", "qwen2", NULL};
    for (int i = 0; type && archs[i]; i++)
        if (!strcmp(type, archs[i]))
            return archs[i];
    return type ? type : "(no model_type)";
}

/* Which layers a config's sliding window covers: Mistral's, every one;
 * Qwen2's, with use_sliding_window, those from max_window_layers (28 by
 * default) up, which global_every cannot say when it is between 0 and the
 * layer count: there the context is capped at the window (within it, a
 * sliding window is full attention), as for every model before windows. */
static int config_window(Ctx *c, const cJSON *o, const char *arch, Imported *m) {
    long long w = 0, full = 0;
    bool used = strcmp(arch, "qwen2") ? true : json_true(o, "use_sliding_window");
    if (used && json_int(c, o, "sliding_window", false, 0, &w))
        return -1;
    if (w == 0 || w >= m->context) /* none, or all of the context */
        return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "max_window_layers");
    bool zero = cJSON_IsNumber(v) && v->valuedouble == 0; /* json_int's are positive */
    if (!strcmp(arch, "qwen2") && !zero && json_int(c, o, "max_window_layers", false, 28, &full))
        return -1;
    if (full >= m->layers) /* no layer has the window */
        return 0;
    if (full == 0) {
        m->window = w;
        return 0;
    }
    snprintf(m->note, sizeof m->note,
             "context capped at the sliding window (%lld of %lld): the first %lld layers have "
             "none and the rest have it, which global_every cannot express; within it, "
             "sliding-window attention is full attention", w, m->context, full);
    m->context = w;
    return 0;
}

static int config_fields(Ctx *c, const cJSON *o, const char *arch, Imported *m) {
    if (json_int(c, o, "vocab_size", true, 0, &m->vocab) ||
        json_int(c, o, "hidden_size", true, 0, &m->dim) ||
        json_int(c, o, "num_hidden_layers", true, 0, &m->layers) ||
        json_int(c, o, "max_position_embeddings", true, 0, &m->context) ||
        json_int(c, o, "num_attention_heads", true, 0, &m->heads) ||
        json_int(c, o, "num_key_value_heads", false, m->heads, &m->kv_heads) ||
        json_int(c, o, "intermediate_size", true, 0, &m->hidden) ||
        json_int(c, o, "head_dim", false, m->dim / m->heads, &m->head_dim) ||
        json_num(c, o, "rope_theta", 10000.0, &m->theta) ||
        json_num(c, o, "rms_norm_eps", 1e-6, &m->eps))
        return -1;
    m->tied = json_true(o, "tie_word_embeddings");
    m->bias = !strcmp(arch, "qwen2");
    m->halves = true; /* Hugging Face's q and k rows */
    return config_rope_scaling(c, o, m) || config_window(c, o, arch, m);
}

static int import_config(Ctx *c, const char *text, Imported *m) {
    cJSON *o = cJSON_Parse(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return fail(c, "not a JSON object (a Hugging Face config.json was expected)");
    }
    const char *arch = config_arch(o), *name = json_str(o, "_name_or_path");
    int rc = 0;
    if (strcmp(arch, "llama") && strcmp(arch, "mistral") && strcmp(arch, "qwen2"))
        rc = fail(c, "unsupported architecture '%s' (supported: llama, mistral, qwen2)", arch);
    rc = rc ? rc : config_unsupported(c, o, arch);
    rc = rc ? rc : config_fields(c, o, arch, m);
    rc = rc ? rc : config_types(c, m);
    snprintf(m->name, sizeof m->name, "%s", name && *name ? name : arch);
    m->source = "a Hugging Face config.json";
    cJSON_Delete(o);
    return rc;
}

/* ---- GGUF ---- */

static int gguf_int(Ctx *c, const gqr_tensorfile *tf, const char *arch, const char *key,
                    bool required, long long dflt, long long *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    const gqr_gguf_value *v = gqr_gguf_get(tf, full);
    int64_t i;
    *out = dflt;
    if (!v)
        return required ? fail(c, "missing metadata key '%s'", full) : 0;
    if (gqr_gguf_int(v, &i) || i < 1 || i > 2147483647)
        return fail(c, "metadata '%s' must be a positive integer", full);
    *out = (long long)i;
    return 0;
}

static int gguf_num(Ctx *c, const gqr_tensorfile *tf, const char *arch, const char *key,
                    double dflt, double *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    const gqr_gguf_value *v = gqr_gguf_get(tf, full);
    *out = dflt;
    if (v && (gqr_gguf_float(v, out) || !(*out > 0)))
        return fail(c, "metadata '%s' must be a positive number", full);
    return 0;
}

/* vocab_size is optional in GGUF; the token list or the embedding says it. */
static long long gguf_vocab(const gqr_tensorfile *tf, long long dflt) {
    const gqr_gguf_value *tokens = gqr_gguf_get(tf, "tokenizer.ggml.tokens");
    const gqr_tensor *emb = gqr_tf_find(tf, "token_embd.weight");
    if (tokens)
        return (long long)gqr_gguf_array_len(tokens);
    return emb && emb->n_dims == 2 ? (long long)emb->dims[0] : dflt;
}

/* llama.cpp's sliding window, with its period of global layers when that
 * is one number (llama_hparams::set_swa_pattern: layer l has no window
 * when (l + 1) % pattern == 0, global_every's meaning; 0 or more than the
 * layers: all windowed; 1: none).  A window as long as the context
 * changes nothing. */
static int gguf_window(Ctx *c, const gqr_tensorfile *tf, const char *arch, Imported *m) {
    char full[128];
    snprintf(full, sizeof full, "%s.attention.sliding_window_pattern", arch);
    const gqr_gguf_value *v = gqr_gguf_get(tf, full);
    int64_t pattern = 0;
    if (v && (gqr_gguf_int(v, &pattern) || pattern < 0))
        return fail(c, "metadata '%s' must be a whole number (a list of layers is not "
                    "supported)", full);
    if (gguf_int(c, tf, arch, "attention.sliding_window", false, 0, &m->window))
        return -1;
    if (m->window >= m->context || pattern == 1)
        m->window = 0;
    m->global_every = m->window && pattern <= m->layers ? pattern : 0;
    return 0;
}

static int gguf_fields(Ctx *c, const gqr_tensorfile *tf, const char *arch, Imported *m) {
    long long rope_dims = 0;
    if (gguf_int(c, tf, arch, "embedding_length", true, 0, &m->dim) ||
        gguf_int(c, tf, arch, "block_count", true, 0, &m->layers) ||
        gguf_int(c, tf, arch, "context_length", true, 0, &m->context) ||
        gguf_int(c, tf, arch, "feed_forward_length", true, 0, &m->hidden) ||
        gguf_int(c, tf, arch, "attention.head_count", true, 0, &m->heads) ||
        gguf_int(c, tf, arch, "attention.head_count_kv", false, m->heads, &m->kv_heads) ||
        gguf_int(c, tf, arch, "attention.key_length", false, m->dim / m->heads, &m->head_dim) ||
        gguf_int(c, tf, arch, "rope.dimension_count", false, m->head_dim, &rope_dims) ||
        gguf_int(c, tf, arch, "vocab_size", false, gguf_vocab(tf, 0), &m->vocab) ||
        gguf_num(c, tf, arch, "rope.freq_base", 10000.0, &m->theta) ||
        gguf_num(c, tf, arch, "attention.layer_norm_rms_epsilon", 1e-5, &m->eps) ||
        gguf_window(c, tf, arch, m))
        return -1;
    if (m->vocab < 1)
        return fail(c, "no vocabulary size: neither %s.vocab_size, tokenizer.ggml.tokens nor "
                    "token_embd.weight", arch);
    if (rope_dims != m->head_dim)
        return fail(c, "RoPE rotates %lld of head_dim %lld dimensions; partial rotation is not "
                    "supported", rope_dims, m->head_dim);
    if (gqr_tf_find(tf, "rope_freqs.weight"))
        return fail(c, "the file holds Llama 3's RoPE scaling as a table (rope_freqs.weight), "
                    "whose parameters cannot be recovered from it; import the model's "
                    "config.json, or add its rope_scaling llama3 block by hand (loading the "
                    "file checks the block against the table)");
    m->tied = !gqr_tf_find(tf, "output.weight");
    m->bias = gqr_tf_find(tf, "blk.0.attn_q.bias") != NULL;
    m->halves = !strcmp(arch, "qwen2"); /* GGUF's llama converter reorders q and k */
    return 0;
}

static int import_gguf(Ctx *c, Imported *m) {
    gqr_tensorfile *tf = NULL;
    if (gqr_tf_open(&tf, c->path, c->err, c->errlen))
        return -1;
    const gqr_gguf_value *a = gqr_gguf_get(tf, "general.architecture");
    const gqr_gguf_value *n = gqr_gguf_get(tf, "general.name");
    size_t len = 0;
    const char *arch = a ? gqr_gguf_string(a, &len) : NULL;
    char archz[32] = "";
    snprintf(archz, sizeof archz, "%.*s", arch ? (int)(len < 31 ? len : 31) : 0, arch ? arch : "");
    int rc;
    if (strcmp(archz, "llama") && strcmp(archz, "qwen2"))
        rc = fail(c, "unsupported architecture '%s' (supported: llama, qwen2)",
                  *archz ? archz : "(no general.architecture)");
    else
        rc = gguf_fields(c, tf, archz, m);
    rc = rc ? rc : read_types(c, tf, m);
    const char *name = n ? gqr_gguf_string(n, &len) : NULL;
    snprintf(m->name, sizeof m->name, "%.*s", name ? (int)(len < 127 ? len : 127) : 0, name ? name : "");
    if (!*m->name)
        snprintf(m->name, sizeof m->name, "%s", archz);
    m->source = "a GGUF file";
    gqr_tf_close(tf);
    return rc;
}

/* ---- llama2.c ---- */

static int import_llama2c(Ctx *c, const unsigned char *h, size_t size, Imported *m) {
    int32_t f[7];
    for (int i = 0; i < 7; i++)
        f[i] = (int32_t)((uint32_t)h[4 * i] | (uint32_t)h[4 * i + 1] << 8 |
                         (uint32_t)h[4 * i + 2] << 16 | (uint32_t)h[4 * i + 3] << 24);
    if (size < 28 || f[0] < 1 || f[1] < 1 || f[2] < 1 || f[3] < 1 || f[4] < 1 || f[5] == 0 ||
        f[6] < 1 || f[0] % f[3] || f[3] % f[4])
        return fail(c, "not a GGUF file, a safetensors config.json or a llama2.c checkpoint "
                    "(its header would be 7 positive integers: dim, hidden_dim, n_layers, "
                    "n_heads, n_kv_heads, vocab_size, seq_len)");
    *m = (Imported){.dim = f[0], .hidden = f[1], .layers = f[2], .heads = f[3], .kv_heads = f[4],
                    .vocab = f[5] < 0 ? -(long long)f[5] : f[5], .context = f[6],
                    .head_dim = f[0] / f[3], .theta = 10000.0, .eps = 1e-5, .tied = f[5] > 0};
    const char *base = strrchr(c->path, '/');
    snprintf(m->name, sizeof m->name, "%s", base ? base + 1 : c->path);
    m->source = "a llama2.c checkpoint";
    return 0;
}

/* ---- writing ---- */

/* weights is the type most matrices have (ties: the first in DType's
 * order); a kind differs from it by one type or by layer. */
static void set_types(Model *m, const Imported *x, Arena *a) {
    long long count[DT_COUNT] = {0};
    for (int k = 0; k < TK_COUNT; k++)
        for (long long j = 0; x->types[k] && j < (k == TK_EMBED || k == TK_CLS ? 1 : x->layers); j++)
            if (x->types[k][j] >= 0)
                count[x->types[k][j]]++;
    for (int t = 1; t < DT_COUNT; t++)
        if (count[t] > count[m->weight_type])
            m->weight_type = (DType)t;
    for (int k = 0; k < TK_COUNT; k++) {
        if (!x->types[k] || (k == TK_CLS && x->tied))
            continue;
        m->kind_set[k] = true;
        if (k == TK_EMBED || k == TK_CLS) {
            m->kind_type[k] = x->types[k][0] >= 0 ? (DType)x->types[k][0] : m->weight_type;
            continue;
        }
        DType *per = arena_alloc(a, (size_t)x->layers * sizeof *per);
        for (long long j = 0; j < x->layers; j++)
            per[j] = x->types[k][j] >= 0 ? (DType)x->types[k][j] : m->weight_type;
        m->layer_types[k] = per;
        m->kind_type[k] = per[0];
    }
}

static void write_gqa(Buf *b, const Imported *x, const char *path, Arena *a) {
    Model m = {.name = x->name, .vocab = x->vocab, .dim = x->dim, .layers = x->layers,
               .context = x->context, .heads = x->heads, .kv_heads = x->kv_heads,
               .head_dim = x->head_dim, .hidden = x->hidden, .rope_theta = x->theta,
               .norm_eps = x->eps, .tied = x->tied, .qkv_bias = x->bias, .rope_halves = x->halves,
               .rope_llama3 = x->llama3, .rope_factor = x->factor, .rope_low_freq = x->low_freq,
               .rope_high_freq = x->high_freq, .rope_original_context = x->original_context,
               .window = x->window, .global_every = x->global_every};
    set_types(&m, x, a);
    const char *comments[3] = {arena_printf(a, "Imported by gqac import from %s (%s).", x->source, path),
                               *x->note ? arena_printf(a, "Note: %s.", x->note) : NULL, NULL};
    gqa_source(b, &m, comments);
}

/* ---- the command ---- */

static char *read_file(Ctx *c, size_t *size) {
    FILE *f = fopen(c->path, "rb");
    if (!f) {
        fail(c, "cannot open: %s", strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    /* A header is all that is read of a binary file; a config.json is small. */
    n = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    if (!buf) {
        fail(c, "out of memory");
        return NULL;
    }
    buf[n] = '\0';
    *size = n;
    return buf;
}

/* A config.json by its name or by its first character: a llama2.c header
 * starts with dim, a small integer, whose low byte is rarely '{' or '['
 * and never in the files that also end in .json. */
static bool looks_json(const char *path, const char *head, size_t size) {
    size_t n = strlen(path), skip = strspn(head, " \t\r\n");
    return (n >= 5 && !strcmp(path + n - 5, ".json")) ||
           (skip < size && (head[skip] == '{' || head[skip] == '['));
}

static int import_any(Ctx *c, Imported *m) {
    size_t size = 0;
    char *head = read_file(c, &size);
    if (!head)
        return -1;
    int rc;
    if (size >= 4 && !memcmp(head, "GGUF", 4))
        rc = import_gguf(c, m);
    else if (looks_json(c->path, head, size))
        rc = size == 1 << 16 ? fail(c, "larger than 64 KiB: not a config.json")
                             : import_config(c, head, m);
    else
        rc = import_llama2c(c, (unsigned char *)head, size, m);
    free(head);
    return rc;
}

/* What was imported must be a model gqac accepts: the description runs
 * through the front end, its errors pointing into the text about to be
 * written. */
static bool check_output(const Buf *b, const char *output, Arena *a) {
    Source src = {output, b->data, b->len};
    Diag d;
    Model m;
    Stats s;
    diag_init(&d, &src, stderr);
    if (front_end(a, &d, &m, &s, 64))
        return true;
    fprintf(stderr, "gqac: error: the imported model is not one gqac can compile (above)\n");
    return false;
}

int import_command(const char *input, const char *output, Arena *a) {
    struct stat st;
    const char *path = input;
    if (stat(input, &st) == 0 && S_ISDIR(st.st_mode))
        path = arena_printf(a, "%s/config.json", input);
    char err[512];
    Ctx c = {path, err, sizeof err, a, NULL};
    Imported m = {0};
    if (import_any(&c, &m)) {
        fprintf(stderr, "gqac: error: %s\n", err);
        return EXIT_INPUT;
    }
    Buf b = {0};
    write_gqa(&b, &m, path, a);
    if (!check_output(&b, output, a)) {
        buf_free(&b);
        return EXIT_INPUT;
    }
    bool ok = output_write(&output, &b, 1, err, sizeof err);
    buf_free(&b);
    if (!ok) {
        fprintf(stderr, "gqac: error: %s\n", err);
        return EXIT_INPUT;
    }
    return EXIT_OK;
}

/* ---- a Model from a weights file, for quantize ---- */

/* A safetensors file or a sharded set's index says nothing of the model:
 * the config.json beside it does. */
static const char *config_beside(const char *path, Arena *a) {
    size_t size = 0;
    char err[64];
    Ctx c = {path, err, sizeof err, a, NULL};
    char *head = read_file(&c, &size);
    bool index = head && looks_json(path, head, size) && strstr(head, "\"weight_map\"");
    bool st = head && !looks_json(path, head, size) &&
              gqr_tf_probe((const unsigned char *)head, size, path) == GQR_TF_SAFETENSORS;
    free(head);
    if (!index && !st)
        return path;
    const char *slash = strrchr(path, '/');
    return slash ? arena_printf(a, "%.*s/config.json", (int)(slash - path), path) : "config.json";
}

int import_model(const char *input, Model *out, Arena *a, char *err, size_t errlen) {
    struct stat st;
    const char *path = stat(input, &st) == 0 && S_ISDIR(st.st_mode)
                           ? arena_printf(a, "%s/config.json", input) : config_beside(input, a);
    Ctx c = {path, err, errlen, a, path != input && strcmp(path, input) ? input : NULL};
    Imported m = {0};
    if (import_any(&c, &m)) {
        if (path != input && strcmp(path, input)) { /* say why config.json was read */
            char why[512];
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, errlen, "%s (the model of %s, a safetensors file, comes from the "
                     "config.json beside it, or give --model M.gqa)", why, input);
        }
        return -1;
    }
    Buf b = {0};
    write_gqa(&b, &m, path, a);
    char *text = arena_alloc(a, b.len + 1);
    memcpy(text, b.data, b.len);
    text[b.len] = '\0';
    Source src = {arena_printf(a, "(the model imported from %s)", path), text, b.len};
    buf_free(&b);
    Diag d;
    Stats s;
    diag_init(&d, &src, stderr);
    if (front_end(a, &d, out, &s, 64))
        return 0;
    snprintf(err, errlen, "%s: the imported model is not one gqac can compile (above)", path);
    return -1;
}
