/*
 * sema.c: Ast -> Model.  Needs: an Ast from parser.y.  Provides: a Model
 * whose every field is set, typed and range-checked, or diagnostics.
 *
 * The schema is a table: each row a key, the block it lives in, its type,
 * whether it is required, and where its value goes.  Items are evaluated in
 * file order, so an expression may name any field set above it
 * (`head_dim = dim / heads`).  Every problem is reported; sema goes on
 * after an error so one run shows them all.
 */
#include "gqac.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* V_TYPES: a type word, or a list of them (one per layer). */
typedef enum { V_INT, V_FLOAT, V_BOOL, V_SYMBOL, V_TYPES } VType;

typedef struct {
    VType type; /* V_SYMBOL for a word, V_TYPES for a list */
    int64_t i;
    double f;
    const char *sym;
    const Expr *list; /* V_TYPES: the EX_LIST, its elements checked words */
} Value;

typedef struct {
    const char *block; /* "" for the top level */
    const char *key;
    VType type;
    bool required;
    const char *const *symbols; /* V_SYMBOL: the allowed words */
} Field;

static const char *const dtypes[] = {"f32", "f16", "bf16", "q4_0", "q8_0", "q4_k", "q6_k", NULL};
/* Which dimensions RoPE rotates together: (2i, 2i+1) as Meta's Llama,
 * llama2.c and GGUF-llama store q and k, or (i, i + head_dim/2) as Hugging
 * Face and GGUF-qwen2 do. */
static const char *const rope_pairs[] = {"adjacent", "halves", NULL};

/* Order matters only for messages; sema looks fields up by name. */
static const Field fields[] = {
    {"", "vocab", V_INT, true, NULL},
    {"", "dim", V_INT, true, NULL},
    {"", "layers", V_INT, true, NULL},
    {"", "context", V_INT, true, NULL},
    {"", "tie_embeddings", V_BOOL, false, NULL},
    {"attention", "heads", V_INT, true, NULL},
    {"attention", "kv_heads", V_INT, true, NULL},
    {"attention", "head_dim", V_INT, false, NULL},
    {"attention", "rope_theta", V_FLOAT, false, NULL},
    {"attention", "qkv_bias", V_BOOL, false, NULL},
    {"attention", "rope_pairs", V_SYMBOL, false, rope_pairs},
    {"attention", "window", V_INT, false, NULL},
    {"attention", "sinks", V_INT, false, NULL},
    {"attention", "global_every", V_INT, false, NULL},
    {"ffn", "hidden", V_INT, true, NULL},
    {"norm", "eps", V_FLOAT, false, NULL},
    {"dtype", "weights", V_SYMBOL, false, dtypes},
    {"dtype", "kv_cache", V_SYMBOL, false, dtypes},
    /* ir_kind_key's names: one matrix kind's type, or its types by layer */
    {"dtype", "token_embd", V_TYPES, false, dtypes},
    {"dtype", "attn_q", V_TYPES, false, dtypes},
    {"dtype", "attn_k", V_TYPES, false, dtypes},
    {"dtype", "attn_v", V_TYPES, false, dtypes},
    {"dtype", "attn_output", V_TYPES, false, dtypes},
    {"dtype", "ffn_gate", V_TYPES, false, dtypes},
    {"dtype", "ffn_down", V_TYPES, false, dtypes},
    {"dtype", "ffn_up", V_TYPES, false, dtypes},
    {"dtype", "output", V_TYPES, false, dtypes},
    {"rope_scaling", "factor", V_FLOAT, true, NULL},
    {"rope_scaling", "low_freq_factor", V_FLOAT, true, NULL},
    {"rope_scaling", "high_freq_factor", V_FLOAT, true, NULL},
    {"rope_scaling", "original_context", V_INT, true, NULL},
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

/* Blocks and the kind word each takes (NULL: none). */
typedef struct {
    const char *name;
    bool required;
    const char *const *kinds;
    const char *const *supported; /* kinds this version can generate */
} BlockDef;

static const char *const ffn_kinds[] = {"swiglu", "gelu", NULL};
static const char *const ffn_supported[] = {"swiglu", NULL};
static const char *const norm_kinds[] = {"rmsnorm", "layernorm", NULL};
static const char *const norm_supported[] = {"rmsnorm", NULL};
static const char *const scaling_kinds[] = {"llama3", NULL};

static const BlockDef blocks[] = {
    {"attention", true, NULL, NULL},
    {"ffn", true, ffn_kinds, ffn_supported},
    {"norm", false, norm_kinds, norm_supported},
    {"dtype", false, NULL, NULL},
    {"rope_scaling", false, scaling_kinds, scaling_kinds},
};
#define N_BLOCKS (sizeof blocks / sizeof blocks[0])

/* What has been set so far, by field index. */
typedef struct {
    Diag *d;
    bool set[N_FIELDS];
    bool bad[N_FIELDS]; /* set, but to a value already reported as wrong */
    Value val[N_FIELDS];
    Loc loc[N_FIELDS];     /* the value */
    Loc key_loc[N_FIELDS]; /* the key */
    const Item *block_item[N_BLOCKS];
    const char *block; /* the block being checked, "" at top level */
    bool head_dim_derived;
} Sema;

static const char *type_name(VType t) {
    static const char *const names[] = {"an integer", "a number", "a boolean", "a word", "a list"};
    return names[t];
}

static int find_field(const char *block, const char *key) {
    for (size_t i = 0; i < N_FIELDS; i++)
        if (!strcmp(fields[i].block, block) && !strcmp(fields[i].key, key))
            return (int)i;
    return -1;
}

static int find_block(const char *name) {
    for (size_t i = 0; i < N_BLOCKS; i++)
        if (!strcmp(blocks[i].name, name))
            return (int)i;
    return -1;
}

static bool in_list(const char *const *list, const char *s) {
    for (; list && *list; list++)
        if (!strcmp(*list, s))
            return true;
    return false;
}

/* The closest key of this block (or block name at top level), if close. */
static const char *suggest(const char *block, const char *word) {
    const char *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < N_FIELDS; i++) {
        int dist = edit_distance(fields[i].key, word);
        if (!strcmp(fields[i].block, block) && dist < best_d)
            best = fields[i].key, best_d = dist;
    }
    for (size_t i = 0; i < N_BLOCKS && !*block; i++) {
        int dist = edit_distance(blocks[i].name, word);
        if (dist < best_d)
            best = blocks[i].name, best_d = dist;
    }
    return best;
}

static void list_words(char *buf, size_t n, const char *const *list) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; list[i] && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i == 0 ? "" : list[i + 1] ? ", " : " or ",
                                list[i]);
}

/* ---- expressions ---- */

static bool eval(Sema *s, const Expr *e, Value *out);

/* A name refers to a field set earlier: in the current block, else at the
 * top level; `block.key` names any block's field. */
static bool eval_name(Sema *s, const Expr *e, Value *out) {
    const char *dot = strchr(e->str, '.');
    int f = -1;
    if (dot) {
        char block[64];
        size_t n = (size_t)(dot - e->str);
        if (n < sizeof block) {
            memcpy(block, e->str, n);
            block[n] = '\0';
            f = find_field(block, dot + 1);
        }
    } else {
        f = find_field(s->block, e->str);
        if (f < 0 || !s->set[f])
            f = find_field("", e->str) >= 0 ? find_field("", e->str) : f;
    }
    if (f < 0) {
        diag_error(s->d, e->loc, "unknown name '%s'", e->str);
        return false;
    }
    if (!s->set[f]) {
        diag_error(s->d, e->loc, "'%s' is used before it is set", e->str);
        return false;
    }
    if (s->bad[f])
        return false; /* its error is out already; one is enough */
    *out = s->val[f];
    return true;
}

static bool numeric(Sema *s, const Expr *e, const Value *v) {
    if (v->type == V_INT || v->type == V_FLOAT)
        return true;
    diag_error(s->d, e->loc, "arithmetic needs numbers, but this is %s", type_name(v->type));
    return false;
}

static bool int_op(Sema *s, const Expr *e, int64_t a, int64_t b, Value *out) {
    int64_t r = 0;
    bool ok = true;
    switch (e->op) {
    case '+': ok = !__builtin_add_overflow(a, b, &r); break;
    case '-': ok = !__builtin_sub_overflow(a, b, &r); break;
    case '*': ok = !__builtin_mul_overflow(a, b, &r); break;
    default:
        if ((a == INT64_MIN && b == -1) || a % b != 0) { /* inexact or too big: a number */
            out->type = V_FLOAT;
            out->f = (double)a / (double)b;
            return true;
        }
        r = a / b;
    }
    if (!ok) {
        diag_error(s->d, e->loc, "integer overflow: %lld %c %lld does not fit in 64 bits",
                   (long long)a, e->op, (long long)b);
        return false;
    }
    out->type = V_INT;
    out->i = r;
    return true;
}

static bool eval_binary(Sema *s, const Expr *e, Value *out) {
    Value a, b;
    if (!eval(s, e->lhs, &a) || !eval(s, e->rhs, &b))
        return false;
    if (!numeric(s, e->lhs, &a) || !numeric(s, e->rhs, &b))
        return false;
    if (e->op == '/' && ((b.type == V_INT && b.i == 0) || (b.type == V_FLOAT && b.f == 0))) {
        diag_error(s->d, e->rhs->loc, "division by zero");
        return false;
    }
    if (a.type == V_INT && b.type == V_INT)
        return int_op(s, e, a.i, b.i, out);
    double x = a.type == V_INT ? (double)a.i : a.f, y = b.type == V_INT ? (double)b.i : b.f;
    out->type = V_FLOAT;
    out->f = e->op == '+' ? x + y : e->op == '-' ? x - y : e->op == '*' ? x * y : x / y;
    if (!isfinite(out->f)) {
        diag_error(s->d, e->loc, "the result is out of range");
        return false;
    }
    return true;
}

static bool eval(Sema *s, const Expr *e, Value *out) {
    memset(out, 0, sizeof *out);
    switch (e->kind) {
    case EX_INT: out->type = V_INT, out->i = e->ival; return true;
    case EX_FLOAT: out->type = V_FLOAT, out->f = e->fval; return true;
    case EX_BOOL: out->type = V_BOOL, out->i = e->ival; return true;
    case EX_STRING:
        diag_error(s->d, e->loc, "a string is allowed only as the model's name");
        return false;
    case EX_NAME: return eval_name(s, e, out);
    case EX_NEG:
        if (!eval(s, e->lhs, out) || !numeric(s, e->lhs, out))
            return false;
        if (out->type == V_FLOAT)
            out->f = -out->f;
        else if (out->i == INT64_MIN) {
            diag_error(s->d, e->loc, "integer overflow in negation");
            return false;
        } else
            out->i = -out->i;
        return true;
    case EX_BINARY: return eval_binary(s, e, out);
    case EX_LIST:
        diag_error(s->d, e->loc, "a list is allowed only as a tensor's per-layer types");
        return false;
    }
    return false;
}

/* ---- items ---- */

static bool coerce_symbol(Sema *s, const Field *f, const Expr *e, Value *v);

/* Each element a type word; the count is checked against layers once
 * every size is known (sema_check's end). */
static bool coerce_list(Sema *s, const Field *f, const Expr *e, Value *v) {
    bool ok = true;
    Value w;
    char words[128];
    list_words(words, sizeof words, f->symbols);
    for (const Expr *x = e->lhs; x; x = x->next) {
        if (x->kind == EX_NAME && !strchr(x->str, '.'))
            ok = coerce_symbol(s, f, x, &w) && ok;
        else {
            diag_error(s->d, x->loc, "a list of %s's per-layer types holds type words (%s)", f->key, words);
            ok = false;
        }
    }
    v->type = V_TYPES;
    v->list = e;
    return ok;
}

/* Converts v to the field's type: integral numbers are integers, integers
 * are numbers; nothing else converts. */
static bool coerce(Sema *s, const Field *f, const Expr *e, Value *v) {
    if (f->type == V_TYPES && e->kind == EX_LIST)
        return coerce_list(s, f, e, v);
    if (f->type == V_SYMBOL || f->type == V_TYPES)
        return coerce_symbol(s, f, e, v);
    if (!eval(s, e, v))
        return false;
    if (f->type == V_INT && v->type == V_FLOAT && v->f == floor(v->f)) {
        if (fabs(v->f) >= 9.0e15) { /* past this, doubles skip integers */
            diag_error(s->d, e->loc, "'%s' expects an integer, but %.17g is too large for one", f->key, v->f);
            return false;
        }
        v->type = V_INT, v->i = (int64_t)v->f;
    }
    else if (f->type == V_FLOAT && v->type == V_INT)
        v->type = V_FLOAT, v->f = (double)v->i;
    if (v->type == f->type)
        return true;
    if (f->type == V_INT && v->type == V_FLOAT)
        diag_error(s->d, e->loc, "'%s' expects an integer, but this is %.17g", f->key, v->f);
    else
        diag_error(s->d, e->loc, "'%s' expects %s, but this is %s", f->key, type_name(f->type),
                   type_name(v->type));
    return false;
}

/* A word of f's list; a list where only a word may stand says where lists go. */
static bool coerce_symbol(Sema *s, const Field *f, const Expr *e, Value *v) {
    char words[128];
    list_words(words, sizeof words, f->symbols);
    if (e->kind == EX_LIST) {
        diag_error(s->d, e->loc, "a list is allowed only as a tensor's per-layer types");
        return false;
    }
    if (e->kind != EX_NAME || strchr(e->str, '.')) {
        diag_error(s->d, e->loc, "'%s' expects one of %s", f->key, words);
        return false;
    }
    if (!in_list(f->symbols, e->str)) {
        diag_error(s->d, e->loc, "unknown %s '%s' for %s (expected %s)", f->block, e->str, f->key,
                   words);
        return false;
    }
    v->type = V_SYMBOL;
    v->sym = e->str;
    return true;
}

static void check_items(Sema *s, const Item *items);

static void check_block(Sema *s, const Item *it) {
    if (*s->block) {
        diag_error(s->d, it->loc, "blocks do not nest: '%s' inside '%s'", it->key, s->block);
        return;
    }
    int b = find_block(it->key);
    if (b < 0) {
        const char *hint = suggest("", it->key);
        if (find_field("", it->key) >= 0)
            diag_error(s->d, it->loc, "'%s' is a key, not a block: write %s = ...", it->key, it->key);
        else if (hint)
            diag_error(s->d, it->loc, "unknown block '%s'; did you mean '%s'?", it->key, hint);
        else
            diag_error(s->d, it->loc, "unknown block '%s'", it->key);
        return;
    }
    const BlockDef *def = &blocks[b];
    if (s->block_item[b]) {
        diag_error(s->d, it->loc, "duplicate block '%s'", it->key);
        diag_note(s->d, s->block_item[b]->loc, "first defined here");
        return;
    }
    s->block_item[b] = it;
    char words[128];
    if (def->kinds && !it->kind) {
        list_words(words, sizeof words, def->kinds);
        diag_error(s->d, it->loc, "block '%s' needs a kind (%s): %s %s { ... }", it->key, words,
                   it->key, def->kinds[0]);
    } else if (!def->kinds && it->kind) {
        diag_error(s->d, it->kind_loc, "block '%s' takes no kind", it->key);
    } else if (def->kinds && !in_list(def->kinds, it->kind)) {
        list_words(words, sizeof words, def->kinds);
        diag_error(s->d, it->kind_loc, "unknown %s kind '%s' (expected %s)", it->key, it->kind, words);
    } else if (def->kinds && !in_list(def->supported, it->kind)) {
        diag_error(s->d, it->kind_loc, "%s kind '%s' is not supported yet by the code generator",
                   it->key, it->kind);
    }
    s->block = def->name;
    check_items(s, it->children);
    s->block = "";
}

static void check_item(Sema *s, const Item *it) {
    if (it->is_block) {
        check_block(s, it);
        return;
    }
    int f = find_field(s->block, it->key);
    if (f < 0) {
        const char *hint = suggest(s->block, it->key);
        const char *where = *s->block ? s->block : "the model";
        if (!*s->block && find_block(it->key) >= 0)
            diag_error(s->d, it->loc, "'%s' is a block, not a key: write %s { ... }", it->key, it->key);
        else if (hint)
            diag_error(s->d, it->loc, "unknown key '%s' in %s; did you mean '%s'?", it->key, where, hint);
        else
            diag_error(s->d, it->loc, "unknown key '%s' in %s", it->key, where);
        return;
    }
    if (s->set[f]) {
        diag_error(s->d, it->loc, "duplicate key '%s'", it->key);
        diag_note(s->d, s->key_loc[f], "first set here");
        return;
    }
    /* Set only after its value: `vocab = vocab + 512` names no earlier
     * vocab, so it is "used before it is set", not 0 + 512. */
    Value v = {0};
    s->bad[f] = !coerce(s, &fields[f], it->value, &v);
    s->set[f] = true;
    s->val[f] = v;
    s->loc[f] = it->value->loc;
    s->key_loc[f] = it->loc;
}

static void check_items(Sema *s, const Item *items) {
    for (const Item *it = items; it; it = it->next)
        check_item(s, it);
}

/* ---- the model ---- */

static void check_missing(Sema *s, Loc model_loc) {
    for (size_t b = 0; b < N_BLOCKS; b++)
        if (blocks[b].required && !s->block_item[b])
            diag_error(s->d, model_loc, "missing block '%s'", blocks[b].name);
    for (size_t i = 0; i < N_FIELDS; i++) {
        if (!fields[i].required || s->set[i])
            continue;
        int b = *fields[i].block ? find_block(fields[i].block) : -1;
        if (b >= 0 && !s->block_item[b])
            continue; /* the missing block was reported */
        Loc at = b >= 0 ? s->block_item[b]->loc : model_loc;
        diag_error(s->d, at, "missing key '%s'%s%s", fields[i].key, b >= 0 ? " in " : "",
                   b >= 0 ? fields[i].block : "");
    }
}

static int64_t get_int(const Sema *s, const char *block, const char *key, int64_t dflt, Loc *loc) {
    int f = find_field(block, key);
    if (loc)
        *loc = s->loc[f];
    return s->set[f] ? s->val[f].i : dflt;
}

static double get_float(const Sema *s, const char *block, const char *key, double dflt) {
    int f = find_field(block, key);
    return s->set[f] ? s->val[f].f : dflt;
}

static const char *get_symbol(const Sema *s, const char *block, const char *key, const char *dflt) {
    int f = find_field(block, key);
    return s->set[f] ? s->val[f].sym : dflt;
}

static DType get_dtype(const Sema *s, const char *key) {
    int f = find_field("dtype", key);
    return s->set[f] && !s->bad[f] ? (DType)dtype_from_name(s->val[f].sym) : DT_F32;
}

/* Sizes: positive, and small enough for the int positions and token ids
 * of the generated API. */
static void check_size(Sema *s, int64_t v, const char *what, Loc loc) {
    if (v <= 0)
        diag_error(s->d, loc, "%s must be positive, but it is %lld", what, (long long)v);
    else if (v > INT32_MAX)
        diag_error(s->d, loc, "%s is %lld, more than the largest supported %d", what, (long long)v,
                   INT32_MAX);
}

/* The error, and a note listing the group counts that would work: the
 * divisors of heads, found in pairs up to its square root (heads is at
 * most 2^31 here, so that is at most 46341 steps). */
static void kv_heads_error(Sema *s, const Model *m) {
    enum { MAX_PAIRS = 24 };
    int64_t low[MAX_PAIRS], high[MAX_PAIRS];
    int n = 0;
    char list[MAX_PAIRS * 2 * 13 + 8];
    size_t len = 0;
    diag_error(s->d, m->loc_kv_heads, "kv_heads (%lld) must divide heads (%lld)",
               (long long)m->kv_heads, (long long)m->heads);
    for (int64_t k = 1; k <= m->heads / k && n < MAX_PAIRS; k++)
        if (m->heads % k == 0)
            low[n] = k, high[n++] = m->heads / k;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%lld", i ? ", " : "", (long long)low[i]);
    if (n == MAX_PAIRS)
        len += (size_t)snprintf(list + len, sizeof list - len, ", ...");
    for (int i = n - 1; i >= 0; i--)
        if (high[i] != low[i])
            len += (size_t)snprintf(list + len, sizeof list - len, ", %lld", (long long)high[i]);
    diag_note(s->d, m->loc_kv_heads, "kv_heads may be one of: %s", list);
}

/* Llama 3's frequency bands: wavelengths past original_context /
 * low_freq_factor are slowed by factor, those under original_context /
 * high_freq_factor kept, and the band between blended; so the bands must
 * be in order and the factor must slow, not speed up. */
static void check_rope_scaling(Sema *s, const Model *m) {
    Loc factor = s->loc[find_field("rope_scaling", "factor")];
    Loc low = s->loc[find_field("rope_scaling", "low_freq_factor")];
    Loc high = s->loc[find_field("rope_scaling", "high_freq_factor")];
    if (!(m->rope_factor >= 1))
        diag_error(s->d, factor, "factor (%g) must be at least 1: it divides the low frequencies",
                   m->rope_factor);
    if (!(m->rope_low_freq > 0))
        diag_error(s->d, low, "low_freq_factor must be positive");
    else if (!(m->rope_high_freq > m->rope_low_freq))
        diag_error(s->d, high, "high_freq_factor (%g) must be larger than low_freq_factor (%g)",
                   m->rope_high_freq, m->rope_low_freq);
    check_size(s, m->rope_original_context, "original_context",
               s->loc[find_field("rope_scaling", "original_context")]);
}

/* RoPE's pair i turns rope_theta^(-2i / head_dim) radians a position:
 * at most 1 when rope_theta >= 1.  Below 1 the rate nears 1 / rope_theta,
 * past the one turn (2 pi) that freestanding code's fixed-point steps
 * hold, and for a tiny theta past a double's range. */
static void check_rope_theta(Sema *s, const Model *m) {
    Loc at = s->loc[find_field("attention", "rope_theta")];
    if (!(m->rope_theta > 0))
        diag_error(s->d, at, "rope_theta must be positive");
    else if (m->rope_theta < 1)
        diag_error(s->d, at, "rope_theta (%g) must be at least 1: below, RoPE's frequencies pass one "
                   "radian a position", m->rope_theta);
}

static void check_shape(Sema *s, Model *m) {
    check_size(s, m->vocab, "vocab", m->loc_vocab);
    check_size(s, m->dim, "dim", m->loc_dim);
    check_size(s, m->layers, "layers", m->loc_layers);
    check_size(s, m->context, "context", m->loc_context);
    if (m->context > PLAN_MAX_CONTEXT && m->context <= INT32_MAX)
        diag_error(s->d, m->loc_context,
                   "context is %lld, more than the largest supported %d (attention rounds the "
                   "cache up to whole blocks in int arithmetic)", (long long)m->context, PLAN_MAX_CONTEXT);
    check_size(s, m->heads, "heads", m->loc_heads);
    check_size(s, m->kv_heads, "kv_heads", m->loc_kv_heads);
    check_size(s, m->head_dim, "head_dim", m->loc_head_dim);
    check_size(s, m->hidden, "hidden", m->loc_hidden);
    if (m->heads > 0 && m->kv_heads > 0 && m->heads <= INT32_MAX && m->heads % m->kv_heads != 0)
        kv_heads_error(s, m);
    if (m->head_dim > 0 && m->head_dim % 2 != 0 && s->head_dim_derived)
        diag_error(s->d, m->loc_head_dim,
                   "head_dim defaults to dim / heads = %lld, which must be even (RoPE rotates "
                   "pairs); set head_dim", (long long)m->head_dim);
    else if (m->head_dim > 0 && m->head_dim % 2 != 0)
        diag_error(s->d, m->loc_head_dim, "head_dim (%lld) must be even: RoPE rotates pairs",
                   (long long)m->head_dim);
    else if (m->head_dim > PLAN_MAX_HEAD_DIM && m->head_dim <= INT32_MAX)
        diag_error(s->d, m->loc_head_dim, "head_dim is %lld, more than the largest supported %d (the "
                   "generated code holds head_dim / 2 RoPE constants)", (long long)m->head_dim,
                   PLAN_MAX_HEAD_DIM);
    check_rope_theta(s, m);
    if (m->rope_llama3)
        check_rope_scaling(s, m);
    if (!(m->norm_eps > 0))
        diag_error(s->d, s->loc[find_field("norm", "eps")], "eps must be positive");
    else if (m->norm_eps < FLT_MIN || m->norm_eps > FLT_MAX) /* the kernels add it in float */
        diag_error(s->d, s->loc[find_field("norm", "eps")], "eps (%g) is outside float's range", m->norm_eps);
}

/* head_dim defaults to dim / heads, which must then divide exactly.  With
 * dim or heads out of range (reported by check_shape) it is a placeholder. */
static void derive_head_dim(Sema *s, Model *m) {
    int f = find_field("attention", "head_dim");
    if (s->set[f])
        return;
    m->loc_head_dim = m->loc_heads;
    if (m->heads <= 0 || m->dim <= 0 || m->heads > INT32_MAX || m->dim > INT32_MAX) {
        m->head_dim = 2;
        return;
    }
    s->head_dim_derived = true;
    if (m->dim % m->heads != 0) {
        diag_error(s->d, m->loc_heads,
                   "head_dim defaults to dim / heads, but dim (%lld) is not a multiple of heads "
                   "(%lld); set head_dim",
                   (long long)m->dim, (long long)m->heads);
        m->head_dim = 2;
    } else {
        m->head_dim = m->dim / m->heads;
    }
}

/* ---- weight types ---- */

/* A matrix's row width (its input), and how the dtype block's reader
 * knows that size. */
static int64_t row_width(const Model *m, TensorKind k, const char **what) {
    *what = k == TK_WO ? "heads * head_dim" : k == TK_W2 ? "hidden" : "dim";
    return k == TK_WO ? m->heads * m->head_dim : k == TK_W2 ? m->hidden : m->dim;
}

/* Rows hold whole blocks: the types with smaller blocks that fit are
 * named as the way out. */
static void check_rows(Sema *s, const Model *m, TensorKind k, DType t, Loc at) {
    const char *what, *key = ir_kind_key(k);
    int64_t width = row_width(m, k, &what);
    if (width <= 0 || width % dtype_block(t) == 0)
        return;
    char fits[64] = "";
    static const DType smaller[] = {DT_Q8_0, DT_Q4_0};
    for (int i = 0; i < 2; i++)
        if (dtype_block(smaller[i]) < dtype_block(t) && width % dtype_block(smaller[i]) == 0)
            snprintf(fits + strlen(fits), sizeof fits - strlen(fits), "%s%s", *fits ? ", " : "",
                     dtype_name(smaller[i]));
    char hint[128];
    if (*fits)
        snprintf(hint, sizeof hint, "give %s a type with smaller blocks (%s) or f32", key, fits);
    else
        snprintf(hint, sizeof hint, "give %s f32, f16 or bf16", key);
    diag_error(s->d, at, "%s's rows are %s = %lld wide, not a multiple of %s's %d-weight blocks; %s",
               key, what, (long long)width, dtype_name(t), dtype_block(t), hint);
}

/* A list for kind k: one type per layer, each of which must fit. */
static void resolve_list(Sema *s, Model *m, Arena *a, TensorKind k, const Expr *list) {
    const char *key = ir_kind_key(k);
    if (k == TK_EMBED || k == TK_CLS) {
        diag_error(s->d, list->loc, "%s is one tensor, not one per layer: give it one type", key);
        return;
    }
    if (list->ival != m->layers) {
        diag_error(s->d, list->loc, "%s lists %lld type%s, but the model has %lld layers (one type "
                   "per layer)", key, (long long)list->ival, list->ival == 1 ? "" : "s",
                   (long long)m->layers);
        return;
    }
    DType *types = arena_alloc(a, (size_t)m->layers * sizeof *types);
    int64_t i = 0;
    for (const Expr *x = list->lhs; x; x = x->next, i++) {
        types[i] = (DType)dtype_from_name(x->str);
        check_rows(s, m, k, types[i], x->loc);
    }
    m->layer_types[k] = types;
    m->kind_type[k] = types[0];
}

/* The dtype block's tensor keys into m, checked once every size is
 * known (sizes may be set below the block). */
static void resolve_types(Sema *s, Model *m, Arena *a) {
    int w = find_field("dtype", "weights");
    for (int k = 0; k < TK_COUNT; k++) {
        const char *key = ir_kind_key((TensorKind)k);
        if (!key || (k == TK_CLS && m->tied && !s->set[find_field("dtype", key)]))
            continue;
        int f = find_field("dtype", key);
        if (!s->set[f]) {
            check_rows(s, m, (TensorKind)k, m->weight_type, s->loc[w]);
            continue;
        }
        if (s->bad[f])
            continue;
        if (k == TK_CLS && m->tied) {
            diag_error(s->d, s->loc[f], "output is not a tensor of a tied model (tie_embeddings = "
                       "true): token_embd is its classifier; give token_embd the type");
            continue;
        }
        m->kind_set[k] = true;
        m->loc_type[k] = s->loc[f];
        if (s->val[f].type == V_TYPES) {
            resolve_list(s, m, a, (TensorKind)k, s->val[f].list);
            continue;
        }
        m->kind_type[k] = (DType)dtype_from_name(s->val[f].sym);
        check_rows(s, m, (TensorKind)k, m->kind_type[k], s->loc[f]);
    }
}

/* The cache holds f32, f16, bf16 or q8_0, whose blocks of 32 run along
 * head_dim (templates/attention.c). */
static void check_kv_type(Sema *s, const Model *m) {
    int f = find_field("dtype", "kv_cache");
    if (m->kv_type == DT_Q8_0 && m->head_dim % 32 != 0)
        diag_error(s->d, s->loc[f], "kv_cache q8_0 quantizes blocks of 32 along head_dim, but head_dim "
                   "is %lld; use f16 or bf16", (long long)m->head_dim);
    else if (m->kv_type != DT_F32 && m->kv_type != DT_F16 && m->kv_type != DT_BF16 && m->kv_type != DT_Q8_0)
        diag_error(s->d, s->loc[f], "kv_cache cannot be %s: the KV cache holds f32, f16, bf16 or q8_0",
                   dtype_name(m->kv_type));
}

/* window: 1 .. context; sinks: below it; global_every: 2 or more (1
 * would leave no layer windowed).  Sinks and the pattern need a window. */
static void check_window(Sema *s, Model *m) {
    int w = find_field("attention", "window"), k = find_field("attention", "sinks");
    int g = find_field("attention", "global_every");
    bool bad_window = s->set[w] && (m->window < 1 || m->window > m->context);
    if (bad_window)
        diag_error(s->d, s->loc[w], "window is %lld, but it must be 1 .. context (%lld): the positions "
                   "a token sees, itself included", (long long)m->window, (long long)m->context);
    if (s->set[k] && !s->set[w])
        diag_error(s->d, s->loc[k], "sinks needs a window: they are the first positions a windowed "
                   "layer keeps seeing");
    else if (s->set[k] && !bad_window && (m->sinks < 0 || m->sinks >= m->window))
        diag_error(s->d, s->loc[k], "sinks is %lld, but it must be 0 .. window - 1 (%lld): the first "
                   "positions, seen besides the window", (long long)m->sinks, (long long)m->window - 1);
    if (s->set[g] && !s->set[w])
        diag_error(s->d, s->loc[g], "global_every needs a window: it names the layers without one");
    else if (s->set[g] && m->global_every < 2)
        diag_error(s->d, s->loc[g], "global_every is %lld, but it must be 2 or more: every "
                   "global_every-th layer has no window, and 1 would leave none with one",
                   (long long)m->global_every);
    else if (s->set[g] && m->global_every > m->layers)
        diag_error(s->d, s->loc[g], "global_every is %lld, but the model has %lld layers, so no layer "
                   "would be without the window; leave global_every out", (long long)m->global_every,
                   (long long)m->layers);
}

bool sema_check(const Ast *ast, Model *m, Diag *d) {
    Sema s = {.d = d, .block = ""};
    int errors = d->errors;
    memset(m, 0, sizeof *m);
    check_items(&s, ast->items);
    check_missing(&s, ast->name_loc);
    if (ast->name && !*ast->name)
        diag_error(d, ast->name_loc, "the model's name is empty");
    if (d->errors > errors)
        return false;
    m->name = ast->name;
    m->name_loc = ast->name_loc;
    m->vocab = get_int(&s, "", "vocab", 0, &m->loc_vocab);
    m->dim = get_int(&s, "", "dim", 0, &m->loc_dim);
    m->layers = get_int(&s, "", "layers", 0, &m->loc_layers);
    m->context = get_int(&s, "", "context", 0, &m->loc_context);
    m->heads = get_int(&s, "attention", "heads", 0, &m->loc_heads);
    m->kv_heads = get_int(&s, "attention", "kv_heads", 0, &m->loc_kv_heads);
    m->head_dim = get_int(&s, "attention", "head_dim", 0, &m->loc_head_dim);
    m->hidden = get_int(&s, "ffn", "hidden", 0, &m->loc_hidden);
    m->tied = get_int(&s, "", "tie_embeddings", 0, NULL) != 0;
    m->qkv_bias = get_int(&s, "attention", "qkv_bias", 0, NULL) != 0;
    m->rope_theta = get_float(&s, "attention", "rope_theta", 10000.0);
    m->rope_halves = get_symbol(&s, "attention", "rope_pairs", "adjacent")[0] == 'h';
    m->rope_llama3 = s.block_item[find_block("rope_scaling")] != NULL;
    m->rope_factor = get_float(&s, "rope_scaling", "factor", 1.0);
    m->rope_low_freq = get_float(&s, "rope_scaling", "low_freq_factor", 1.0);
    m->rope_high_freq = get_float(&s, "rope_scaling", "high_freq_factor", 4.0);
    m->rope_original_context = get_int(&s, "rope_scaling", "original_context", 1, NULL);
    m->norm_eps = get_float(&s, "norm", "eps", 1e-5);
    m->norm = NORM_RMSNORM;
    m->ffn = FFN_SWIGLU;
    m->weight_type = get_dtype(&s, "weights");
    m->kv_type = get_dtype(&s, "kv_cache");
    m->window = get_int(&s, "attention", "window", 0, &m->loc_window);
    m->sinks = get_int(&s, "attention", "sinks", 0, NULL);
    m->global_every = get_int(&s, "attention", "global_every", 0, NULL);
    derive_head_dim(&s, m);
    check_shape(&s, m);
    check_kv_type(&s, m);
    check_window(&s, m);
    if (d->errors == errors) /* the sizes rows are checked against are valid */
        resolve_types(&s, m, ast->arena);
    return d->errors == errors;
}
