/*
 * ir.c: what follows from a Model's numbers: its weight tensors in
 * checkpoint order, and every derived size, each computed with overflow
 * checks.  Needs: a Model from sema.c.  Provides: the tensor table the
 * emitter and the weight writer share, and the sizes `gqac info` prints.
 */
#include "gqac.h"

#include <math.h>

#include <string.h>

static const struct {
    const char *name;
    int block, block_bytes;
} dtypes[DT_COUNT] = {
    {"f32", 1, 4}, {"f16", 1, 2}, {"bf16", 1, 2}, {"q4_0", 32, 18},
    {"q8_0", 32, 34}, {"q4_k", 256, 144}, {"q6_k", 256, 210},
};

int dtype_block(DType t) { return dtypes[t].block; }
int dtype_block_bytes(DType t) { return dtypes[t].block_bytes; }
const char *dtype_name(DType t) { return dtypes[t].name; }

int dtype_from_name(const char *s) {
    for (int t = 0; t < DT_COUNT; t++)
        if (!strcmp(dtypes[t].name, s))
            return t;
    return -1;
}

/* GGUF's names, which are what a user sees in a file's tensor list. */
const char *ir_kind_key(TensorKind k) {
    static const char *const keys[TK_COUNT] = {
        [TK_EMBED] = "token_embd", [TK_WQ] = "attn_q", [TK_WK] = "attn_k", [TK_WV] = "attn_v",
        [TK_WO] = "attn_output", [TK_W1] = "ffn_gate", [TK_W2] = "ffn_down", [TK_W3] = "ffn_up",
        [TK_CLS] = "output"};
    return keys[k];
}

DType ir_tensor_type(const Model *m, TensorKind k, int64_t layer) {
    if (!ir_kind_key(k))
        return DT_F32; /* norms and biases */
    if (m->layer_types[k])
        return m->layer_types[k][layer < 0 ? 0 : layer];
    return m->kind_set[k] ? m->kind_type[k] : m->weight_type;
}

Model ir_with_f32(const Model *m) {
    Model f = *m;
    f.weight_type = DT_F32;
    for (int k = 0; k < TK_COUNT; k++) {
        f.kind_set[k] = false;
        f.layer_types[k] = NULL;
    }
    return f;
}

const char *train_unsupported(const Model *m) {
    if (m->norm != NORM_RMSNORM && m->ffn != FFN_SWIGLU)
        return "only rmsnorm + swiglu models can be trained (this model has layernorm and gelu)";
    if (m->norm != NORM_RMSNORM)
        return "only rmsnorm + swiglu models can be trained (this model has layernorm)";
    if (m->ffn != FFN_SWIGLU)
        return "only rmsnorm + swiglu models can be trained (this model has a gelu ffn)";
    return NULL;
}

Model ir_with_kv_heads(const Model *m, int64_t kv_heads) {
    Model v = *m;
    v.kv_heads = kv_heads;
    return v;
}

/* Llama 3 (Hugging Face's _compute_llama3_parameters): long wavelengths
 * slowed by factor, short ones kept, a linear blend between. */
double ir_rope_freq(const Model *m, int64_t i) {
    const double pi = 3.14159265358979323846;
    double freq = pow(m->rope_theta, -(double)(2 * i) / (double)m->head_dim);
    if (!m->rope_llama3)
        return freq;
    double old = (double)m->rope_original_context, wavelen = 2 * pi / freq;
    if (wavelen > old / m->rope_low_freq)
        return freq / m->rope_factor;
    if (wavelen < old / m->rope_high_freq)
        return freq;
    double smooth = (old / wavelen - m->rope_low_freq) / (m->rope_high_freq - m->rope_low_freq);
    return (1 - smooth) * freq / m->rope_factor + smooth * freq;
}

static void add_tensor(Tensor *t, int *n, uint64_t *at, const char *name, const char *shape,
                       uint64_t count, uint64_t cols, bool used) {
    t[*n] = (Tensor){name, shape, count, cols, *at, used};
    *at += count;
    (*n)++;
}

/* llama2.c's order, then gqac's extension for q/k/v biases (llama2.c has
 * none): a checkpoint of a bias-free model is exactly a llama2.c file. */
int ir_tensors(const Model *m, Tensor *t, uint64_t *total) {
    uint64_t L = (uint64_t)m->layers, D = (uint64_t)m->dim, F = (uint64_t)m->hidden;
    uint64_t Q = (uint64_t)(m->heads * m->head_dim), KV = (uint64_t)(m->kv_heads * m->head_dim);
    uint64_t V = (uint64_t)m->vocab, rope = (uint64_t)m->context * (uint64_t)(m->head_dim / 2);
    uint64_t at = 0;
    int n = 0;
    add_tensor(t, &n, &at, "token_embedding", "(vocab, dim)", V * D, D, true);
    add_tensor(t, &n, &at, "rms_att", "(layer, dim)", L * D, D, true);
    add_tensor(t, &n, &at, "wq", "(layer, heads * head_dim, dim)", L * Q * D, D, true);
    add_tensor(t, &n, &at, "wk", "(layer, kv_heads * head_dim, dim)", L * KV * D, D, true);
    add_tensor(t, &n, &at, "wv", "(layer, kv_heads * head_dim, dim)", L * KV * D, D, true);
    add_tensor(t, &n, &at, "wo", "(layer, dim, heads * head_dim)", L * D * Q, Q, true);
    add_tensor(t, &n, &at, "rms_ffn", "(layer, dim)", L * D, D, true);
    add_tensor(t, &n, &at, "w1", "(layer, hidden, dim)", L * F * D, D, true);
    add_tensor(t, &n, &at, "w2", "(layer, dim, hidden)", L * D * F, F, true);
    add_tensor(t, &n, &at, "w3", "(layer, hidden, dim)", L * F * D, D, true);
    add_tensor(t, &n, &at, "rms_final", "(dim)", D, D, true);
    add_tensor(t, &n, &at, "freq_cis_real", "(context, head_dim / 2)", rope, (uint64_t)(m->head_dim / 2), false);
    add_tensor(t, &n, &at, "freq_cis_imag", "(context, head_dim / 2)", rope, (uint64_t)(m->head_dim / 2), false);
    if (!m->tied)
        add_tensor(t, &n, &at, "wcls", "(vocab, dim)", V * D, D, true);
    if (m->qkv_bias) {
        add_tensor(t, &n, &at, "bq", "(layer, heads * head_dim)", L * Q, Q, true);
        add_tensor(t, &n, &at, "bk", "(layer, kv_heads * head_dim)", L * KV, KV, true);
        add_tensor(t, &n, &at, "bv", "(layer, kv_heads * head_dim)", L * KV, KV, true);
    }
    *total = at;
    return n;
}

uint64_t ir_type_bytes(DType t, uint64_t rows, uint64_t cols) {
    return rows * (cols / (uint64_t)dtype_block(t)) * (uint64_t)dtype_block_bytes(t);
}

/* The kind of each of ir_tensors' names, -1 for the RoPE tables. */
static int tensor_kind(const char *name) {
    static const char *const names[TK_COUNT] = {"token_embedding", "rms_att", "wq", "wk", "wv", "wo",
                                                "rms_ffn", "w1", "w2", "w3", "rms_final", "wcls",
                                                "bq", "bk", "bv"};
    for (int k = 0; k < TK_COUNT; k++)
        if (!strcmp(names[k], name))
            return k;
    return -1;
}

/* Whether kind k has a tensor per layer (the rest: one for the model). */
static bool per_layer(int k) {
    return k != TK_EMBED && k != TK_RMS_FINAL && k != TK_CLS;
}

#define ROUND4(n) (((n) + 3) / 4 * 4)

int64_t ir_slices(const Model *m, Arena *a, Slice **out, uint64_t *total) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t floats, at = 0;
    int n = ir_tensors(m, t, &floats);
    int64_t count = 0;
    for (int i = 0; i < n; i++)
        count += t[i].used ? (per_layer(tensor_kind(t[i].name)) ? m->layers : 1) : 0;
    Slice *s = arena_alloc(a, (size_t)count * sizeof *s);
    int64_t j = 0;
    for (int i = 0; i < n; i++) {
        int k = tensor_kind(t[i].name);
        if (k < 0) { /* a RoPE table: f32, in the file only */
            at += 4 * t[i].count;
            continue;
        }
        int64_t layers = per_layer(k) ? m->layers : 1;
        uint64_t rows = t[i].count / (uint64_t)layers / t[i].cols;
        for (int64_t l = 0; l < layers; l++, j++) {
            DType type = ir_tensor_type(m, (TensorKind)k, l);
            s[j] = (Slice){(TensorKind)k, t[i].name, per_layer(k) ? l : -1, type, rows, t[i].cols,
                           ir_type_bytes(type, rows, t[i].cols), at};
            at += ROUND4(s[j].bytes);
        }
    }
    *out = s;
    *total = at;
    return count;
}

/* A product of model fields, checked; on overflow the error points at the
 * largest factor, the one a user most likely mistyped. */
typedef struct {
    Diag *d;
    const Model *m;
    uint64_t limit; /* the largest size the target holds */
    bool ok;
} Checker;

typedef struct {
    uint64_t value;
    Loc loc;
} Factor;

static uint64_t product(Checker *c, const char *what, const Factor *f, int n) {
    uint64_t r = 1;
    int blame = 0;
    bool ok = true;
    for (int i = 0; i < n; i++) {
        ok = ok && mul_u64(r, f[i].value, &r);
        if (f[i].value > f[blame].value)
            blame = i;
    }
    if (!ok && c->ok)
        diag_error(c->d, f[blame].loc, "%s overflows 64 bits", what);
    c->ok = c->ok && ok;
    return ok ? r : 0;
}

static uint64_t sum(Checker *c, const char *what, const uint64_t *v, int n, Loc blame) {
    uint64_t r = 0;
    bool ok = true;
    for (int i = 0; i < n; i++)
        ok = ok && add_u64(r, v[i], &r);
    if (!ok && c->ok)
        diag_error(c->d, blame, "%s overflows 64 bits", what);
    c->ok = c->ok && ok;
    return ok ? r : 0;
}

static void fit_size_t(Checker *c, const char *what, uint64_t v, Loc blame, int size_bits) {
    if (c->ok && v > c->limit) {
        diag_error(c->d, blame, "%s (%llu bytes) is more than a %d-bit target holds (%llu bytes)", what,
                   (unsigned long long)v, size_bits, (unsigned long long)c->limit);
        c->ok = false;
    }
}

/* Weights in their types: each kind's tensors (one type for every layer
 * but where the dtype block lists them) in weight_bytes, and with every
 * layer's start rounded to 4 bytes and the RoPE tables in packed_bytes.
 * The sizes are below 2^62 here (params and file_floats fit 64 bits at 4
 * bytes a weight, and no type takes more), so the sums are exact. */
static void stats_typed(const Model *m, Stats *s) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t floats;
    int n = ir_tensors(m, t, &floats);
    s->weight_bytes = s->packed_bytes = 0;
    s->n_slices = 0;
    for (int i = 0; i < n; i++) {
        int k = tensor_kind(t[i].name);
        if (k < 0) {
            s->packed_bytes += 4 * t[i].count;
            continue;
        }
        uint64_t layers = per_layer(k) ? (uint64_t)m->layers : 1, rows = t[i].count / layers / t[i].cols;
        s->n_slices += (int64_t)layers;
        if (m->layer_types[k]) {
            for (uint64_t l = 0; l < layers; l++) {
                uint64_t b = ir_type_bytes(m->layer_types[k][l], rows, t[i].cols);
                s->weight_bytes += b;
                s->packed_bytes += ROUND4(b);
            }
        } else {
            uint64_t b = ir_type_bytes(ir_tensor_type(m, (TensorKind)k, 0), rows, t[i].cols);
            s->weight_bytes += layers * b;
            s->packed_bytes += layers * ROUND4(b);
        }
    }
}

/* Each kind of weight as a product of fields; the last factor counts
 * the matrices of that shape (wq and wo, wk and wv, w1 w2 w3). */
static void stats_params(Checker *c, const Model *m, Stats *s) {
    Factor L = {(uint64_t)m->layers, m->loc_layers}, D = {(uint64_t)m->dim, m->loc_dim};
    Factor H = {(uint64_t)m->heads, m->loc_heads}, K = {(uint64_t)m->kv_heads, m->loc_kv_heads};
    Factor HD = {(uint64_t)m->head_dim, m->loc_head_dim}, F = {(uint64_t)m->hidden, m->loc_hidden};
    Factor V = {(uint64_t)m->vocab, m->loc_vocab}, T = {(uint64_t)m->context, m->loc_context};
    Factor one = {1, m->loc_dim}, two = {2, m->loc_dim}, three = {3, m->loc_dim};
    Factor half = {(uint64_t)m->head_dim / 2, m->loc_head_dim};
    Factor emb[] = {V, D, m->tied ? one : two}, q[] = {L, H, HD, D, two}, kv[] = {L, K, HD, D, two};
    Factor ffn[] = {L, F, D, three}, norms[] = {L, D, two}, rope[] = {two, T, half};
    Factor bq[] = {L, H, HD, m->qkv_bias ? one : (Factor){0, m->loc_dim}};
    Factor bkv[] = {L, K, HD, m->qkv_bias ? two : (Factor){0, m->loc_dim}};
    const char *what = "the parameter count";
    uint64_t parts[] = {
        product(c, what, emb, 3), product(c, what, q, 5),   product(c, what, kv, 5),
        product(c, what, ffn, 4), product(c, what, norms, 3), (uint64_t)m->dim,
        product(c, what, bq, 4),  product(c, what, bkv, 4),
    };
    s->params = sum(c, what, parts, 8, m->loc_dim);
    uint64_t file[] = {s->params, product(c, "the checkpoint size", rope, 3)};
    s->file_floats = sum(c, "the checkpoint size", file, 2, m->loc_context);
}

uint64_t ir_state_bytes(int64_t n_slices) {
    return (4096 + 8 * (uint64_t)n_slices + 63) / 64 * 64;
}

/* Whether any matrix has a type among types[0..n). */
static bool has_type(const Model *m, const DType *types, int n) {
    for (int k = 0; k < TK_COUNT; k++) {
        if (!ir_kind_key((TensorKind)k) || (k == TK_CLS && m->tied))
            continue;
        int64_t layers = m->layer_types[k] ? m->layers : 1;
        for (int64_t l = 0; l < layers; l++)
            for (int i = 0; i < n; i++)
                if (ir_tensor_type(m, (TensorKind)k, l) == types[i])
                    return true;
    }
    return false;
}

bool ir_has_type(const Model *m, DType t) {
    return has_type(m, &t, 1);
}

void ir_act_bytes(const Model *m, uint64_t batch, uint64_t *x8, uint64_t *x8k) {
    static const DType small[] = {DT_Q8_0, DT_Q4_0}, large[] = {DT_Q4_K, DT_Q6_K};
    uint64_t w = (uint64_t)m->dim;
    if ((uint64_t)m->hidden > w)
        w = (uint64_t)m->hidden;
    if ((uint64_t)(m->heads * m->head_dim) > w)
        w = (uint64_t)(m->heads * m->head_dim);
    *x8 = has_type(m, small, 2) ? (batch * ((w + 31) / 32) * IR_X8_BLOCK + 63) / 64 * 64 : 0;
    *x8k = has_type(m, large, 2) ? (batch * ((w + 255) / 256) * IR_X8K_BLOCK + 63) / 64 * 64 : 0;
}

int64_t ir_global_layers(const Model *m) {
    return m->window <= 0 ? m->layers : m->global_every > 0 ? m->layers / m->global_every : 0;
}

/* The KV cache: templates/attention.c's blocks of 16 positions (each KV
 * head's K or V, values then q8_0's scales: 16 rows of the type), the
 * context's for a layer without a window, the sinks' and the ring's for
 * one with (GQ_LAYER_BLOCKS), both caches of every layer rounded to a
 * line: forward.c's GQ_CACHE_BYTES. */
static void stats_kv(Checker *c, const Model *m, Stats *s, uint64_t batch) {
    Factor two = {2, m->loc_layers}, L = {(uint64_t)m->layers, m->loc_layers};
    Factor K = {(uint64_t)m->kv_heads, m->loc_kv_heads};
    Factor row = {ir_type_bytes(m->kv_type, 1, (uint64_t)m->head_dim), m->loc_head_dim};
    Factor per_token[] = {two, L, K, row};
    s->kv_bytes_per_token = product(c, "the KV cache size", per_token, 4);
#define BLOCKS(n) (((uint64_t)(n) + 15) / 16)
    uint64_t all = BLOCKS(m->context), wrap = BLOCKS(m->sinks) + BLOCKS(m->window) + 1 + BLOCKS(batch);
    bool unbounded = m->window > 0 && m->global_every == 0;
    uint64_t ring = m->window <= 0 || (!unbounded && wrap >= all) ? all : wrap;
#undef BLOCKS
    uint64_t global = (uint64_t)ir_global_layers(m);
    Factor block = {ir_type_bytes(m->kv_type, 16, (uint64_t)m->head_dim), m->loc_head_dim};
    Factor g[] = {{global, m->loc_layers}, K, {all, m->loc_context}, block};
    Factor w[] = {{(uint64_t)m->layers - global, m->loc_layers}, K, {ring, m->loc_window}, block};
    uint64_t parts[] = {product(c, "the KV cache size", g, 4), product(c, "the KV cache size", w, 4), 63};
    uint64_t one = sum(c, "the KV cache size", parts, 3, m->loc_context) / 64 * 64;
    Factor both[] = {two, {one, m->loc_context}};
    s->kv_bytes = product(c, "the KV cache size", both, 2);
}

/* State, scratch and KV cache, each rounded up to 16 elements: the same
 * formula as the arena layout in templates/forward.c, which checks, as it
 * compiles, that the two agree. */
static void stats_memory(Checker *c, const Model *m, Stats *s, uint64_t batch) {
    stats_kv(c, m, s, batch);
    uint64_t q = (uint64_t)(m->heads * m->head_dim), d = (uint64_t)m->dim;
    uint64_t kvd = (uint64_t)(m->kv_heads * m->head_dim), f = (uint64_t)m->hidden;
#define R16(n) (((n) + 15) / 16 * 16)
    uint64_t parts = PLAN_SPLIT * (q + 2 * (uint64_t)m->heads); /* attention's partial results */
    /* One prompt block's activations (a decoded token uses their first
     * row), then attention's partial results; every width is below 2^31,
     * so each term is below 2^40 and the sum needs no overflow check. */
    uint64_t floats = 3 * R16(batch * d) + 2 * R16(batch * f) + 2 * R16(batch * q) + R16(parts) +
                      2 * R16(batch * kvd) + R16(batch * (uint64_t)m->head_dim);
#undef R16
    uint64_t x8, x8k;
    ir_act_bytes(m, batch, &x8, &x8k);
    uint64_t scratch[] = {ir_state_bytes(s->n_slices), 4 * floats, x8, x8k, s->kv_bytes};
    s->arena_bytes = sum(c, "the arena size", scratch, 5, m->loc_context);
}

static void stats_traffic(Checker *c, const Model *m, Stats *s) {
    Factor H = {(uint64_t)m->heads, m->loc_heads}, HD = {(uint64_t)m->head_dim, m->loc_head_dim};
    Factor four = {4, m->loc_heads}, two = {2, m->loc_dim};
    uint64_t table = (uint64_t)m->vocab * (uint64_t)m->dim;
    uint64_t table_bytes = ir_type_bytes(ir_tensor_type(m, TK_EMBED, -1), (uint64_t)m->vocab, (uint64_t)m->dim);
    /* Every weight but the embedding table is a matrix-vector product
     * (2 FLOPs a weight); the table is read one row a token unless it is
     * also the classifier (a row counted as dim floats, a bound).  Attention: q.k and p.v, 2 FLOPs each, over
     * every cached position of every head. */
    Factor matmul[] = {{s->params - table + (m->tied ? table : 0), m->loc_dim}, two};
    /* Positions read at full context, summed over layers: a windowed
     * layer reads its window and sinks. */
    int64_t global = ir_global_layers(m), seen = m->window + m->sinks < m->context ? m->window + m->sinks : m->context;
    uint64_t layer_positions = (uint64_t)global * (uint64_t)m->context + (uint64_t)(m->layers - global) * (uint64_t)seen;
    Factor LT = {layer_positions, m->loc_context};
    Factor attn[] = {four, LT, H, HD};
    Factor read[] = {{s->weight_bytes - (m->tied ? 0 : table_bytes) + 4 * (uint64_t)m->dim, m->loc_dim},
                     {1, m->loc_dim}};
    Factor kv[] = {{s->kv_bytes_per_token / (uint64_t)m->layers, m->loc_context}, LT};
    uint64_t flops[] = {product(c, "the FLOP count per token", matmul, 2),
                        product(c, "the FLOP count per token", attn, 4)};
    s->flops_per_token = sum(c, "the FLOP count per token", flops, 2, m->loc_context);
    uint64_t bytes[] = {product(c, "the byte count per token", read, 2),
                        product(c, "the byte count per token", kv, 2)};
    s->bytes_per_token = sum(c, "the byte count per token", bytes, 2, m->loc_context);
}

/* The widest activation, heads * head_dim, is an array extent of its own,
 * and every later size multiplies it. */
static void check_width(Checker *c, const Model *m) {
    uint64_t q = (uint64_t)m->heads * (uint64_t)m->head_dim;
    if (q > INT32_MAX) {
        diag_error(c->d, m->loc_head_dim, "heads * head_dim (%llu) is more than the largest supported %d",
                   (unsigned long long)q, INT32_MAX);
        c->ok = false;
    }
}

/* The float checkpoint (f32 at every tensor: what converters and the
 * writers of random weights build) fits 64 bits; no type takes more bytes
 * a weight, so the typed sizes below fit too. */
static void check_file(Checker *c, const Model *m, const Stats *s) {
    uint64_t bytes = 0;
    if (c->ok && !(mul_u64(s->file_floats, 4, &bytes) && add_u64(bytes, 28, &bytes))) {
        diag_error(c->d, m->loc_dim, "the checkpoint size overflows 64 bits");
        c->ok = false;
    }
    if (c->ok && m->layers > IR_MAX_LAYERS) {
        diag_error(c->d, m->loc_layers, "layers is %lld, more than the largest supported %d (the "
                   "generated code keeps a table entry for each layer's tensors)", (long long)m->layers,
                   IR_MAX_LAYERS);
        c->ok = false;
    }
}

bool ir_stats(const Model *m, Stats *s, Diag *d, int size_bits, int batch) {
    /* 64 bits: no object passes PTRDIFF_MAX, and the generated C prints
     * sizes as decimal constants, which are signed (past it, gcc warns
     * "so large that it is unsigned"). */
    Checker c = {d, m, size_bits >= 64 ? INT64_MAX : ((uint64_t)1 << size_bits) - 1, true};
    memset(s, 0, sizeof *s);
    check_width(&c, m);
    if (c.ok)
        stats_params(&c, m, s);
    check_file(&c, m, s);
    if (c.ok)
        stats_typed(m, s);
    if (c.ok)
        stats_memory(&c, m, s, (uint64_t)batch);
    if (c.ok)
        stats_traffic(&c, m, s);
    fit_size_t(&c, "the checkpoint", s->file_floats * 4 + 28, m->loc_dim, size_bits);
    fit_size_t(&c, "the KV cache", s->kv_bytes, m->loc_context, size_bits);
    fit_size_t(&c, "the arena", s->arena_bytes, m->loc_context, size_bits);
    return c.ok;
}
