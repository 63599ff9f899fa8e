/*
 * convert.c: checkpoints of named tensors (GGUF, safetensors) to the
 * model's layout and back.  Needs: tensorfile.h's directories and writers.
 * Provides: the float array a generated model's init takes (llama2.c's
 * order, layers stacked), converted from F16/BF16 and with q and k rows
 * reordered when the file pairs RoPE's dimensions otherwise than the model.
 *
 * Every tensor the model needs must be in the file with its exact shape,
 * and every tensor in the file must be one the model uses: a Qwen2 file's
 * biases quietly dropped by a bias-free model would be a wrong answer, not
 * an error, otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gqr.h"
#include "quant.h"
#include "tensorfile.h"

/* One tensor of the model's layout: its names in the two families of files
 * (%d is the layer), its rows and columns, whether it is per layer, and
 * the heads its rows form when RoPE rotates them (0: not rotated). */
typedef struct {
    const char *gguf, *hf;
    int64_t rows, cols;
    int per_layer;
    int rope_heads;
    int present;
} Slot;

enum { N_SLOTS = 17, NAME_MAX_LEN = 96 };

/* llama2.c's order (ir.c's tensor table): the offsets follow from it.  The
 * two RoPE tables of llama2.c have no file name: they are zeros here. */
static int slots(const gqa_shape *s, Slot *t) {
    int64_t D = s->dim, F = s->hidden_dim, V = s->vocab_size, hd = s->head_dim;
    int64_t Q = (int64_t)s->n_heads * hd, KV = (int64_t)s->n_kv_heads * hd;
    int64_t rope = (int64_t)s->seq_len * (hd / 2);
    Slot all[N_SLOTS] = {
        {"token_embd.weight", "model.embed_tokens.weight", V, D, 0, 0, 1},
        {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", 1, D, 1, 0, 1},
        {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", Q, D, 1, s->n_heads, 1},
        {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", KV, D, 1, s->n_kv_heads, 1},
        {"blk.%d.attn_v.weight", "model.layers.%d.self_attn.v_proj.weight", KV, D, 1, 0, 1},
        {"blk.%d.attn_output.weight", "model.layers.%d.self_attn.o_proj.weight", D, Q, 1, 0, 1},
        {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", 1, D, 1, 0, 1},
        {"blk.%d.ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight", F, D, 1, 0, 1},
        {"blk.%d.ffn_down.weight", "model.layers.%d.mlp.down_proj.weight", D, F, 1, 0, 1},
        {"blk.%d.ffn_up.weight", "model.layers.%d.mlp.up_proj.weight", F, D, 1, 0, 1},
        {"output_norm.weight", "model.norm.weight", 1, D, 0, 0, 1},
        {NULL, NULL, 1, rope, 0, 0, 1},
        {NULL, NULL, 1, rope, 0, 0, 1},
        {"output.weight", "lm_head.weight", V, D, 0, 0, !s->tied_embeddings},
        {"blk.%d.attn_q.bias", "model.layers.%d.self_attn.q_proj.bias", 1, Q, 1, s->n_heads, s->qkv_bias},
        {"blk.%d.attn_k.bias", "model.layers.%d.self_attn.k_proj.bias", 1, KV, 1, s->n_kv_heads, s->qkv_bias},
        {"blk.%d.attn_v.bias", "model.layers.%d.self_attn.v_proj.bias", 1, KV, 1, 0, s->qkv_bias},
    };
    memcpy(t, all, sizeof all);
    return N_SLOTS;
}

static const char *slot_name(const Slot *t, int format, int layer, char *buf) {
    snprintf(buf, NAME_MAX_LEN, format == GQR_TF_GGUF ? t->gguf : t->hf, layer);
    return buf;
}

/* Element count of one layer's tensor, and its file shape: a vector is
 * one-dimensional in both families. */
static uint64_t slot_elems(const Slot *t) {
    return (uint64_t)t->rows * (uint64_t)t->cols;
}

/* Where row r of a head (of head_dim rows) sits when RoPE's pairs change
 * from one pairing to the other: pair i's two members are (2i, 2i+1) when
 * adjacent, (i, i + head_dim/2) when split into halves.  This is Hugging
 * Face's permute() of q and k, and its inverse. */
static int64_t pair_row(int64_t r, int64_t head_dim, int from_halves, int to_halves) {
    int64_t h = r / head_dim, in = r % head_dim, half = head_dim / 2;
    if (from_halves == to_halves)
        return r;
    int64_t i = from_halves ? in % half : in / 2, j = from_halves ? in / half : in % 2;
    return h * head_dim + (to_halves ? j * half + i : 2 * i + j);
}

/* Which RoPE pairing a file's q and k rows follow: Hugging Face's
 * checkpoints split halves; GGUF's llama converter reorders them to
 * adjacent pairs, its qwen2 one leaves them as they are. */
static int file_halves(const gqr_tensorfile *tf) {
    if (gqr_tf_format(tf) == GQR_TF_SAFETENSORS)
        return 1;
    const gqr_gguf_value *arch = gqr_gguf_get(tf, "general.architecture");
    size_t len = 0;
    const char *a = arch ? gqr_gguf_string(arch, &len) : NULL;
    return a && len == 5 && !memcmp(a, "qwen2", 5);
}

static int check_shape(const gqr_tensor *t, const Slot *s, const char *path, char *err,
                       size_t errlen) {
    int vector = s->rows == 1;
    uint64_t want0 = vector ? (uint64_t)s->cols : (uint64_t)s->rows;
    int ok = vector ? t->n_dims == 1 && t->dims[0] == want0
                    : t->n_dims == 2 && t->dims[0] == want0 && t->dims[1] == (uint64_t)s->cols;
    if (ok)
        return 0;
    char found[96] = "[";
    for (int d = 0; d < t->n_dims && d < 4; d++)
        snprintf(found + strlen(found), sizeof found - strlen(found), "%s%llu", d ? ", " : "",
                 (unsigned long long)t->dims[d]);
    strcat(found, "]");
    if (vector)
        return gqr_fail(err, errlen, "%s: tensor '%s' has shape %s, the model expects [%lld]", path,
                    t->name, found, (long long)s->cols);
    return gqr_fail(err, errlen, "%s: tensor '%s' has shape %s, the model expects [%lld, %lld]", path,
                t->name, found, (long long)s->rows, (long long)s->cols);
}

/* A tied model with a file that carries its own classifier: fine only when
 * that classifier is the embedding, byte for byte. */
static int check_tied(const gqr_tensorfile *tf, const gqa_shape *m, const char *path, char *err,
                      size_t errlen) {
    const char *cls = gqr_tf_format(tf) == GQR_TF_GGUF ? "output.weight" : "lm_head.weight";
    const char *emb = gqr_tf_format(tf) == GQR_TF_GGUF ? "token_embd.weight" : "model.embed_tokens.weight";
    const gqr_tensor *c = gqr_tf_find(tf, cls), *e = gqr_tf_find(tf, emb);
    if (!m->tied_embeddings || !c)
        return 0;
    if (e && c->dtype == e->dtype && c->n_bytes == e->n_bytes && !memcmp(c->data, e->data, c->n_bytes))
        return 1;
    return gqr_fail(err, errlen, "%s: the file has a classifier '%s' apart from the embedding, but the "
                "model ties them (tie_embeddings = true); set tie_embeddings = false", path, cls);
}

/* Tensors a model never reads that converters are known to leave in. */
static int ignorable(const char *name) {
    size_t n = strlen(name);
    const char *inv = "rotary_emb.inv_freq";
    return n >= strlen(inv) && !strcmp(name + n - strlen(inv), inv);
}

static int is_expected(const char *name, const Slot *t, int n, int format, int layers) {
    char buf[NAME_MAX_LEN];
    for (int i = 0; i < n; i++) {
        if (!t[i].gguf || !t[i].present)
            continue;
        for (int l = 0; l < (t[i].per_layer ? layers : 1); l++)
            if (!strcmp(name, slot_name(&t[i], format, l, buf)))
                return 1;
    }
    return 0;
}

/* theta^(-2i/head_dim): pair i's angle per position before any scaling. */
static double base_freq(const gqa_shape *s, int i) {
    return pow(s->rope_theta, -2.0 * i / s->head_dim);
}

/* llama.cpp stores Llama 3's frequency scaling as a tensor of one factor
 * per RoPE pair that divides the base angle.  The model's angles are
 * compiled in, so the file's must agree with them, to float precision. */
static int check_rope_freqs(const gqr_tensorfile *tf, const gqa_model_api *m, const char *path,
                            char *err, size_t errlen) {
    const gqr_tensor *t = gqr_tf_find(tf, "rope_freqs.weight");
    int pairs = m->shape.head_dim / 2;
    if (!t)
        return 0;
    if (t->n_dims != 1 || t->dims[0] != (uint64_t)pairs)
        return gqr_fail(err, errlen, "%s: tensor 'rope_freqs.weight' has %llu elements in %d dims, "
                    "the model has %d RoPE pairs", path, (unsigned long long)t->n_elems,
                    t->n_dims, pairs);
    for (int i = 0; i < pairs; i++) {
        float f;
        gqr_tf_read_f32(t, (uint64_t)i, 1, &f);
        double file = base_freq(&m->shape, i) / f, model = m->rope_freqs[i];
        if (!(fabs(file - model) <= 1e-5 * model))
            return gqr_fail(err, errlen, "%s: 'rope_freqs.weight' scales RoPE pair %d to %.9g rad per "
                        "position, the model to %.9g: the .gqa's rope_scaling differs from the "
                        "file's", path, i, file, model);
    }
    return 0;
}

static int check_unused(const gqr_tensorfile *tf, const Slot *t, int n, const gqa_shape *m,
                        int tied_copy, const char *path, char *err, size_t errlen) {
    int format = gqr_tf_format(tf);
    for (int i = 0; i < gqr_tf_count(tf); i++) {
        const char *name = gqr_tf_tensor(tf, i)->name;
        if (is_expected(name, t, n, format, m->n_layers) || ignorable(name) ||
            (format == GQR_TF_GGUF && !strcmp(name, "rope_freqs.weight")))
            continue;
        if (tied_copy && (!strcmp(name, "output.weight") || !strcmp(name, "lm_head.weight")))
            continue;
        return gqr_fail(err, errlen, "%s: tensor '%s' is not part of the model (%s); is the file of "
                    "another architecture?", path, name,
                    strstr(name, ".bias") ? "the model has no q/k/v biases: qkv_bias = true?"
                                          : "no such tensor in this model");
    }
    return 0;
}

/* The slot of a tensor kind: the two RoPE tables sit between the final
 * norm and the classifier in slots()' order. */
static int kind_slot(int kind) {
    return kind <= GQA_T_RMS_FINAL ? kind : kind + 2;
}

/* .gqa's dtype key of a matrix kind (ir_kind_key's names). */
static const char *kind_key(int kind) {
    static const char *const keys[] = {"token_embd", "rms_att", "attn_q", "attn_k", "attn_v",
                                       "attn_output", "rms_ffn", "ffn_gate", "ffn_down", "ffn_up",
                                       "rms_final", "output", "bq", "bk", "bv"};
    return kind >= 0 && kind <= GQA_T_BV ? keys[kind] : "?";
}

static int host_big_endian(void) {
    const uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first == 0;
}

/* What one load holds: the file, the model, and where tensors go. */
typedef struct {
    const gqr_tensorfile *tf;
    const gqa_model_api *m;
    gqr_checkpoint *ck;
    const char *path;
    int halves; /* the file's RoPE pairing (file_halves) */
    int dequantize; /* GQR_LOAD_DEQUANTIZE: block types widen into F32 too */
    Slot t[N_SLOTS];
} Load;

/* The model's entry i against its shape: the table sizes what init reads,
 * so a table that disagrees with the file's shape must not reach it. */
static int check_entry(const Load *L, size_t i, const Slot **slot, char *err, size_t errlen) {
    const gqa_tensor *e = &L->m->tensors[i];
    uint64_t bytes = 0;
    int k = e->kind >= 0 && e->kind <= GQA_T_BV ? kind_slot(e->kind) : -1;
    int layer_ok = k >= 0 && (L->t[k].per_layer ? e->layer >= 0 && e->layer < L->m->shape.n_layers
                                                : e->layer == -1);
    if (!layer_ok || !L->t[k].present ||
        gqr_q_row_bytes(e->dtype, slot_elems(&L->t[k]), &bytes, NULL, 0) || bytes != e->bytes)
        return gqr_fail(err, errlen, "%s: the model's tensor %zu ('%s', kind %d, layer %d, %zu bytes) "
                        "does not fit its shape", L->path, i, e->name ? e->name : "?", e->kind,
                        e->layer, e->bytes);
    *slot = &L->t[k];
    return 0;
}

/* A block type's scales, all of them, before any kernel reads them. */
static int check_scales(const gqr_tensor *x, const char *path, char *err, size_t errlen) {
    char why[256];
    if (!gqr_q_is_block(x->dtype) || !gqr_q_check_row(x->dtype, x->data, x->n_elems, why, sizeof why))
        return 0;
    return gqr_fail(err, errlen, "%s: tensor '%s': %s", path, x->name, why);
}

static int type_error(const Load *L, const gqr_tensor *x, const gqa_tensor *e, char *err,
                      size_t errlen) {
    char want[16], at[32] = "";
    snprintf(want, sizeof want, "%s", gqr_tf_dtype_name(e->dtype));
    for (char *c = want; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    if (e->layer >= 0)
        snprintf(at, sizeof at, " at layer %d", e->layer);
    return gqr_fail(err, errlen, "%s: tensor '%s' is %s in the file, but the model has %s for %s%s; "
                    "`gqac import %s` writes the .gqa that matches the file", L->path, x->name,
                    gqr_tf_dtype_name(x->dtype), want, kind_key(e->kind), at, L->path);
}

static void *own(Load *L, size_t i, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    L->ck->owned[i] = p;
    L->ck->tensors[i] = p;
    L->ck->owned_bytes += bytes;
    return p;
}

static void swap_bytes(unsigned char *p, size_t bytes, int size) {
    for (size_t k = 0; k + (size_t)size <= bytes; k += (size_t)size)
        for (int a = 0, b = size - 1; a < b; a++, b--) {
            unsigned char c = p[k + (size_t)a];
            p[k + (size_t)a] = p[k + (size_t)b], p[k + (size_t)b] = c;
        }
}

/* The file's bytes in the model's (same) type, rows reordered for RoPE
 * (rows are whole blocks, so a row's bytes move together); f32 swapped
 * into host order, every other type left little-endian, as the kernels
 * read it (gqa_api.h). */
static int copy_same(Load *L, size_t i, const gqr_tensor *x, const Slot *s, int permute) {
    unsigned char *dst = own(L, i, (size_t)x->n_bytes);
    if (!dst)
        return -1;
    const gqa_shape *m = &L->m->shape;
    size_t rows = s->rows == 1 ? (size_t)s->cols : (size_t)s->rows, row = (size_t)x->n_bytes / rows;
    for (size_t r = 0; r < rows; r++) {
        size_t from = permute && r < (size_t)s->rope_heads * (size_t)m->head_dim
                          ? (size_t)pair_row((int64_t)r, m->head_dim, m->rope_halves, L->halves)
                          : r;
        memcpy(dst + r * row, x->data + from * row, row);
    }
    if (x->dtype == GQR_DT_F32 && host_big_endian())
        swap_bytes(dst, (size_t)x->n_bytes, 4);
    return 0;
}

/* Floats of any type into an owned f32 tensor, rows reordered. */
static int widen(Load *L, size_t i, const gqr_tensor *x, const Slot *s, int permute) {
    float *dst = own(L, i, (size_t)slot_elems(s) * sizeof(float));
    if (!dst)
        return -1;
    const gqa_shape *m = &L->m->shape;
    if (!permute) {
        gqr_tf_read_f32(x, 0, slot_elems(s), dst);
        return 0;
    }
    int64_t n = s->rope_heads * (int64_t)m->head_dim, width = s->rows == 1 ? 1 : s->cols;
    for (int64_t r = 0; r < n; r++) {
        int64_t src = pair_row(r, m->head_dim, m->rope_halves, L->halves);
        gqr_tf_read_f32(x, (uint64_t)(src * width), (uint64_t)width, dst + r * width);
    }
    return 0;
}

/* In place when nothing needs changing: the same type, no reordering, the
 * element's alignment, and for f32 a little-endian host (the other types
 * are read as little-endian bytes on every host). */
static int usable_in_place(const gqr_tensor *x, int permute) {
    int size = gqr_tf_dtype_size(x->dtype);
    if (permute || (x->dtype == GQR_DT_F32 && host_big_endian()))
        return 0;
    return size <= 1 || (uintptr_t)x->data % (uintptr_t)size == 0;
}

static int load_tensor(Load *L, size_t i, char *err, size_t errlen) {
    const gqa_tensor *e = &L->m->tensors[i];
    const Slot *s = NULL;
    char name[NAME_MAX_LEN];
    if (check_entry(L, i, &s, err, errlen))
        return -1;
    const gqr_tensor *x = gqr_tf_find(L->tf, slot_name(s, gqr_tf_format(L->tf), e->layer < 0 ? 0 : e->layer, name));
    if (!x)
        return gqr_fail(err, errlen, "%s: tensor '%s' is missing (the model needs it)", L->path, name);
    if (check_shape(x, s, L->path, err, errlen) || check_scales(x, L->path, err, errlen))
        return -1;
    int permute = s->rope_heads && L->halves != L->m->shape.rope_halves, rc = 0;
    if (x->dtype == e->dtype && usable_in_place(x, permute)) {
        L->ck->tensors[i] = x->data;
        L->ck->inplace_bytes += (size_t)x->n_bytes;
    } else if (x->dtype == e->dtype) {
        rc = copy_same(L, i, x, s, permute);
    } else if (e->dtype == GQR_DT_F32 &&
               (s->rows == 1 || !gqr_q_is_block(x->dtype) || L->dequantize)) {
        rc = widen(L, i, x, s, permute);
    } else {
        return type_error(L, x, e, err, errlen);
    }
    return rc ? gqr_fail(err, errlen, "%s: out of memory for tensor '%s'", L->path, name) : 0;
}

static int load_all(Load *L, char *err, size_t errlen) {
    for (size_t i = 0; i < L->m->n_tensors; i++)
        if (load_tensor(L, i, err, errlen))
            return -1;
    int tied_copy = check_tied(L->tf, &L->m->shape, L->path, err, errlen);
    if (tied_copy < 0 || check_rope_freqs(L->tf, L->m, L->path, err, errlen))
        return -1;
    return check_unused(L->tf, L->t, N_SLOTS, &L->m->shape, tied_copy, L->path, err, errlen);
}

int gqr_convert_load(gqr_checkpoint *ck, const char *path, const gqa_model_api *m, char *err,
                     size_t errlen) {
    return gqr_convert_load_dequantized(ck, path, m, 0, err, errlen);
}

int gqr_convert_load_dequantized(gqr_checkpoint *ck, const char *path, const gqa_model_api *m,
                                 int dequantize, char *err, size_t errlen) {
    gqr_tensorfile *tf = NULL;
    memset(ck, 0, sizeof *ck); /* counted into and closed on failure */
    if (gqr_tf_open(&tf, path, err, errlen))
        return -1;
    Load L = {tf, m, ck, path, file_halves(tf), dequantize != 0, {{0}}};
    slots(&m->shape, L.t);
    ck->tf = tf;
    ck->format = gqr_tf_format(tf) == GQR_TF_GGUF ? GQR_FORMAT_GGUF : GQR_FORMAT_SAFETENSORS;
    for (int i = 0; i < gqr_tf_count(tf); i++)
        ck->file_bytes += gqr_tf_tensor(tf, i)->n_bytes;
    ck->n_tensors = m->n_tensors;
    ck->tensors = calloc(m->n_tensors + 1, sizeof *ck->tensors);
    ck->owned = calloc(m->n_tensors + 1, sizeof *ck->owned);
    if (!ck->tensors || !ck->owned)
        return gqr_fail(err, errlen, "%s: out of memory for %zu tensors", path, m->n_tensors);
    return load_all(&L, err, errlen);
}

/* ---- writing ---- */

/* The architecture a GGUF file declares decides its RoPE pairing (see
 * file_halves): Qwen2 for a model with q/k/v biases, else Llama. */
static const char *gguf_arch(const gqa_shape *s) {
    return s->qkv_bias ? "qwen2" : "llama";
}

static int set_gguf_metadata(gqr_tf_writer *w, const gqa_shape *s, const char *name) {
    const char *arch = gguf_arch(s);
    char key[64];
    int rc = gqr_tf_writer_set_string(w, "general.architecture", arch);
    rc |= gqr_tf_writer_set_string(w, "general.name", name);
#define KEY(k) (snprintf(key, sizeof key, "%s." k, arch), key)
    rc |= gqr_tf_writer_set_u32(w, KEY("context_length"), (uint32_t)s->seq_len);
    rc |= gqr_tf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)s->dim);
    rc |= gqr_tf_writer_set_u32(w, KEY("block_count"), (uint32_t)s->n_layers);
    rc |= gqr_tf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->hidden_dim);
    rc |= gqr_tf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)s->n_heads);
    rc |= gqr_tf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->n_kv_heads);
    rc |= gqr_tf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)s->head_dim);
    rc |= gqr_tf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)s->head_dim);
    rc |= gqr_tf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)s->head_dim);
    rc |= gqr_tf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)s->vocab_size);
    rc |= gqr_tf_writer_set_f32(w, KEY("rope.freq_base"), (float)s->rope_theta);
    rc |= gqr_tf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)s->norm_eps);
    if (s->window > 0) /* llama.cpp's keys; its pattern is global_every */
        rc |= gqr_tf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)s->window);
    if (s->window > 0 && s->global_every > 0)
        rc |= gqr_tf_writer_set_u32(w, KEY("attention.sliding_window_pattern"), (uint32_t)s->global_every);
#undef KEY
    return rc;
}

/* The type a tensor (kind, layer) is stored as: the types table's entry
 * for it, else a kept name's (marked in kept[]), else the file's; a block
 * type quantizes matrices only, vectors (norms, biases) stay F32 as in
 * llama.cpp's files. */
static int tensor_dtype(gqr_write_opts *o, int kind, int layer, const char *name, int vector,
                        int *kept) {
    int dtype = o->dtype;
    for (int i = 0; i < o->n_keep; i++)
        if (!strcmp(o->keep[i], name))
            dtype = o->keep_dtype, kept[i] = 1;
    for (size_t i = 0; i < o->n_types; i++)
        if (o->types[i].kind == kind && o->types[i].layer == layer)
            dtype = o->types[i].dtype;
    return vector && gqr_q_is_block(dtype) ? GQR_DT_F32 : dtype;
}

/* rows x cols floats into dtype's blocks, row by row. */
static int add_quantized(gqr_tf_writer *w, const char *name, int dtype, const uint64_t *dims,
                         const float *src, const char *path, char *err, size_t errlen) {
    const gqr_q_type *q = gqr_q_type_of(dtype);
    uint64_t row_bytes;
    if (dims[1] % (uint64_t)q->block)
        return gqr_fail(err, errlen, "%s: tensor '%s' has rows of %llu values, not whole %s blocks "
                    "of %d; keep it at another type (--keep %s) or choose a type of smaller blocks",
                    path, name, (unsigned long long)dims[1], q->name, q->block, name);
    if (gqr_q_row_bytes(dtype, dims[1], &row_bytes, err, errlen))
        return -1;
    unsigned char *buf = malloc((size_t)(dims[0] * row_bytes));
    int rc = buf ? 0 : gqr_fail(err, errlen, "%s: out of memory for tensor '%s'", path, name);
    for (uint64_t r = 0; r < dims[0] && !rc; r++)
        if (gqr_q_quantize_row(dtype, src + r * dims[1], dims[1], buf + r * row_bytes, err, errlen))
            rc = -1;
    if (rc && buf && err) { /* the quantizer's message names the block; say which tensor */
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        rc = gqr_fail(err, errlen, "%s: tensor '%s': %s", path, name, why);
    }
    if (!rc && gqr_tf_writer_add_bytes(w, name, dtype, 2, dims, buf, dims[0] * row_bytes))
        rc = gqr_fail(err, errlen, "%s: cannot add tensor '%s'", path, name);
    free(buf);
    return rc;
}

/* One layer's tensor from src in the file's row order. */
static int add_tensor(gqr_tf_writer *w, const Slot *t, const char *name, const gqa_shape *m,
                      int to_halves, int dtype, const float *src, float *tmp, const char *path,
                      char *err, size_t errlen) {
    uint64_t dims[2] = {(uint64_t)t->rows, (uint64_t)t->cols};
    int vector = t->rows == 1;
    if (t->rope_heads && to_halves != m->rope_halves) {
        int64_t n = t->rope_heads * (int64_t)m->head_dim, width = vector ? 1 : t->cols;
        for (int64_t r = 0; r < n; r++)
            memcpy(tmp + r * width, src + pair_row(r, m->head_dim, to_halves, m->rope_halves) * width,
                   (size_t)width * sizeof *tmp);
        src = tmp;
    }
    if (gqr_q_is_block(dtype))
        return add_quantized(w, name, dtype, dims, src, path, err, errlen);
    if (gqr_tf_writer_add(w, name, dtype, vector ? 1 : 2, vector ? dims + 1 : dims, src))
        return gqr_fail(err, errlen, "%s: cannot add tensor '%s'", path, name);
    return 0;
}

/* As llama.cpp writes a scaled model (see check_rope_freqs); nothing for
 * one whose angles are the base ones. */
static int add_rope_freqs(gqr_tf_writer *w, const gqa_model_api *m, int *counts) {
    int pairs = m->shape.head_dim / 2, scaled = 0, rc = 0;
    float *f = malloc((size_t)pairs * sizeof *f);
    if (!f)
        return -1;
    for (int i = 0; i < pairs; i++) {
        f[i] = (float)(base_freq(&m->shape, i) / m->rope_freqs[i]);
        scaled |= f[i] != 1.0f;
    }
    uint64_t dims[1] = {(uint64_t)pairs};
    if (scaled && !(rc = gqr_tf_writer_add(w, "rope_freqs.weight", GQR_DT_F32, 1, dims, f)))
        counts[GQR_DT_F32]++;
    free(f);
    return rc;
}

/* A GGUF's tokenizer (tokenizer.ggml.*, tokenizer.chat_template, ...)
 * carried into the file written from it. */
static int copy_tokenizer(gqr_tf_writer *w, const gqr_tensorfile *from, const char *path,
                          char *err, size_t errlen) {
    for (int i = 0; from && i < gqr_gguf_count(from); i++) {
        const char *key;
        const gqr_gguf_value *v = gqr_gguf_at(from, i, &key);
        if (!strncmp(key, "tokenizer.", 10) && gqr_tf_writer_set_value(w, key, v))
            return gqr_fail(err, errlen, "%s: cannot copy metadata '%s'", path, key);
    }
    return 0;
}

static int check_opts(const gqr_write_opts *o, int tf_format, const char *path, char *err,
                      size_t errlen) {
    if (!gqr_q_type_of(o->dtype) || (o->n_keep && !gqr_q_type_of(o->keep_dtype)))
        return gqr_fail(err, errlen, "%s: unknown tensor type", path);
    if (tf_format == GQR_TF_SAFETENSORS && (gqr_q_is_block(o->dtype) ||
                                            (o->n_keep && gqr_q_is_block(o->keep_dtype))))
        return gqr_fail(err, errlen, "%s: safetensors has no quantized types (%s); write GGUF",
                    path, gqr_q_type_of(gqr_q_is_block(o->dtype) ? o->dtype : o->keep_dtype)->name);
    return 0;
}

/* Every name --keep gave must be one of the file's tensors: a typo would
 * otherwise quantize what was meant to be kept. */
static int check_kept(const gqr_write_opts *o, const int *kept, const char *path, char *err,
                      size_t errlen) {
    for (int i = 0; i < o->n_keep; i++)
        if (!kept[i])
            return gqr_fail(err, errlen, "%s: no tensor '%s' to keep in this model (GGUF names: "
                        "token_embd.weight, blk.0.attn_q.weight, output.weight, ...)", path,
                        o->keep[i]);
    return 0;
}

/* The tensor kind of slot i (kind_slot's inverse); -1 for RoPE's tables. */
static int slot_kind(int i) {
    return i <= GQA_T_RMS_FINAL ? i : i < GQA_T_CLS + 2 ? -1 : i - 2;
}

static int write_tensors(gqr_tf_writer *w, gqr_write_opts *o, int tf_format, const gqa_model_api *m,
                         const float *weights, float *tmp, int *kept, const char *path, char *err,
                         size_t errlen) {
    const gqa_shape *s = &m->shape;
    int halves = tf_format == GQR_TF_GGUF ? !strcmp(gguf_arch(s), "qwen2") : 1;
    Slot t[N_SLOTS];
    int n = slots(s, t);
    char buf[NAME_MAX_LEN], gguf[NAME_MAX_LEN]; /* --keep takes GGUF's names */
    for (int i = 0; i < n; i++) {
        uint64_t elems = slot_elems(&t[i]);
        for (int l = 0; l < (t[i].per_layer ? s->n_layers : 1) && t[i].present; l++) {
            const char *name = t[i].gguf ? slot_name(&t[i], tf_format, l, buf) : NULL;
            const char *gguf_name = t[i].gguf ? slot_name(&t[i], GQR_TF_GGUF, l, gguf) : NULL;
            int dtype = name ? tensor_dtype(o, slot_kind(i), t[i].per_layer ? l : -1, gguf_name,
                                            t[i].rows == 1, kept)
                             : 0;
            if (name && !gqr_q_type_of(dtype))
                return gqr_fail(err, errlen, "%s: tensor '%s': unknown type %d", path, name, dtype);
            if (name && tf_format == GQR_TF_SAFETENSORS && gqr_q_is_block(dtype))
                return gqr_fail(err, errlen, "%s: tensor '%s' is %s: safetensors has no quantized "
                                "types; write GGUF", path, name, gqr_q_type_of(dtype)->name);
            if (name && add_tensor(w, &t[i], name, s, halves, dtype, weights, tmp, path, err, errlen))
                return -1;
            if (name)
                o->counts[dtype]++;
            weights += elems;
        }
    }
    return 0;
}

int gqr_convert_write_opts(const char *path, int format, gqr_write_opts *o, const gqa_model_api *m,
                           const float *weights, char *err, size_t errlen) {
    const gqa_shape *s = &m->shape;
    int tf_format = format == GQR_FORMAT_GGUF ? GQR_TF_GGUF : GQR_TF_SAFETENSORS;
    if (check_opts(o, tf_format, path, err, errlen))
        return -1;
    memset(o->counts, 0, sizeof o->counts);
    gqr_tf_writer *w = gqr_tf_writer_new(tf_format);
    float *tmp = malloc((size_t)s->n_heads * (size_t)s->head_dim * (size_t)s->dim * sizeof *tmp);
    int *kept = calloc((size_t)o->n_keep + 1, sizeof *kept), rc = 0;
    if (!w || !tmp || !kept)
        rc = gqr_fail(err, errlen, "%s: out of memory", path);
    if (!rc && tf_format == GQR_TF_GGUF && set_gguf_metadata(w, s, m->name))
        rc = gqr_fail(err, errlen, "%s: cannot set the GGUF metadata", path);
    if (!rc && tf_format == GQR_TF_GGUF)
        rc = copy_tokenizer(w, o->meta_from, path, err, errlen);
    if (!rc && tf_format == GQR_TF_GGUF && add_rope_freqs(w, m, o->counts))
        rc = gqr_fail(err, errlen, "%s: cannot add tensor 'rope_freqs.weight'", path);
    if (!rc)
        rc = write_tensors(w, o, tf_format, m, weights, tmp, kept, path, err, errlen);
    if (!rc)
        rc = check_kept(o, kept, path, err, errlen);
    if (!rc)
        rc = gqr_tf_writer_write(w, path, err, errlen);
    gqr_tf_writer_free(w);
    free(tmp);
    free(kept);
    return rc;
}

int gqr_convert_write(const char *path, int format, int dtype, const gqa_model_api *m,
                      const float *weights, char *err, size_t errlen) {
    gqr_write_opts o = {.dtype = dtype};
    return gqr_convert_write_opts(path, format, &o, m, weights, err, errlen);
}
