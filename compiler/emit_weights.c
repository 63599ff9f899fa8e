/*
 * emit_weights.c: a llama2.c checkpoint as C, for models that run with no
 * file I/O (gqac --embed-weights).  Needs: a Model and its checkpoint.
 * Provides: .c files holding one object per tensor.
 *
 * The representation is the cheap one to compile: each float as its
 * 32-bit pattern in hex, in a union with a float array (C99 lets the
 * float member reinterpret the bits), which compilers parse faster and in
 * less memory than decimal literals.  Integers are also byte-order free, so one
 * file serves little- and big-endian targets.  Tensors are never split;
 * files hold whole tensors up to EMBED_FLOATS_PER_FILE floats.
 *
 * The RoPE table (gqac --rope-table) is data of the same kind: computed
 * here in double, so a target without a double FPU gets exact angles.
 */
#include "gqac.h"
#include "tensorfile.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The header and the size, field by field, as the runtime checks them. */
static bool check_file(const Model *m, FILE *f, const char *path, uint64_t floats, Diag *d) {
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    int64_t want[7] = {m->dim, m->hidden, m->layers, m->heads, m->kv_heads,
                       m->tied ? m->vocab : -m->vocab, m->context};
    unsigned char h[28];
    size_t have = fread(h, 1, 28, f);
    char looks[96];
    gqr_tf_describe(h, have, looks, sizeof looks);
    int format = gqr_tf_probe(h, have, path);
    if (format) {
        diag_error_file(d, "%s: a %s file; --embed-weights takes a llama2.c checkpoint (.bin)", path,
                        format == GQR_TF_GGUF ? "GGUF" : "safetensors");
        return false;
    }
    if (have != 28) {
        diag_error_file(d, "%s: shorter than llama2.c's 28-byte header: %s", path, looks);
        return false;
    }
    for (int i = 0; i < 7; i++) {
        int64_t got = (int32_t)get_u32(h + 4 * i);
        if (i != 5 && (got < 1 || got > 1 << 24)) { /* no size: some other file */
            diag_error_file(d, "%s: not a llama2.c checkpoint (its %s would be %lld): %s", path, names[i],
                            (long long)got, looks);
            return false;
        }
        if (got != want[i]) {
            diag_error_file(d, "%s: %s is %lld in the file, but the model has %lld", path,
                            names[i], (long long)got, (long long)want[i]);
            return false;
        }
    }
    long long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size < 0 || (uint64_t)size != 28 + 4 * floats) {
        diag_error_file(d, "%s: file is %lld bytes, expected 28 + 4 x %llu = %llu", path, size,
                        (unsigned long long)floats, (unsigned long long)(28 + 4 * floats));
        return false;
    }
    return true;
}

/* One tensor: a union of its bits and its floats, eight words a line. */
static bool emit_tensor(Buf *b, const char *prefix, const Tensor *t, FILE *f) {
    unsigned char word[4 * 8];
    buf_printf(b, "\n/* %s %s */\nconst union %s_w_%s { uint32_t bits[%llu]; float f[%llu]; } %s_w_%s = {{\n",
               t->name, t->shape, prefix, t->name, (unsigned long long)t->count,
               (unsigned long long)t->count, prefix, t->name);
    if (fseek(f, (long)(28 + 4 * t->offset), SEEK_SET) != 0)
        return false;
    for (uint64_t i = 0; i < t->count; i += 8) {
        size_t n = t->count - i < 8 ? (size_t)(t->count - i) : 8;
        if (fread(word, 4, n, f) != n)
            return false;
        for (size_t j = 0; j < n; j++)
            buf_printf(b, "0x%08lxu,%s", (unsigned long)get_u32(word + 4 * j), j + 1 < n ? " " : "\n");
    }
    buf_puts(b, "}};\n");
    return true;
}

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

void emit_rope_table(const Model *m, Buf *c) {
    int64_t half = m->head_dim / 2;
    uint64_t n = (uint64_t)m->context * (uint64_t)m->head_dim;
    buf_printf(c, "\n#include <stdint.h>\n\n"
                  "/* RoPE for every position: (context, head_dim), cos of each pair, then sin. */\n"
                  "static const union { uint32_t bits[%llu]; float f[%llu]; } gq_rope = {{\n",
               (unsigned long long)n, (unsigned long long)n);
    for (int64_t pos = 0; pos < m->context; pos++) {
        for (int64_t i = 0; i < m->head_dim; i++) {
            double angle = (double)pos * ir_rope_freq(m, i % half);
            float v = (float)(i < half ? cos(angle) : sin(angle));
            buf_printf(c, "0x%08lxu,%s", (unsigned long)float_bits(v), i + 1 < m->head_dim ? " " : "\n");
        }
    }
    buf_puts(c, "}};\n");
}

bool emit_weights(const Model *m, const char *prefix, const char *header_name, const char *path,
                  Buf *bufs, int max_bufs, int *n_bufs, Diag *d) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t total, in_file = 0;
    int n = ir_tensors(m, t, &total);
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_error_file(d, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    bool ok = check_file(m, f, path, total, d);
    *n_bufs = 0;
    for (int i = 0; i < n && ok; i++) {
        if (!t[i].used)
            continue;
        if (*n_bufs == 0 || (in_file > 0 && in_file + t[i].count > EMBED_FLOATS_PER_FILE)) {
            if (*n_bufs == max_bufs) {
                diag_error_file(d, "%s: too large to embed (more than %d files)", path, max_bufs);
                ok = false;
                break;
            }
            Buf *b = &bufs[(*n_bufs)++];
            buf_printf(b, "/* Generated by gqac %s: weights compiled in.  Do not edit. */\n", GQAC_VERSION);
            buf_printf(b, "#include <stdint.h>\n\n#include \"%s\"\n", header_name);
            in_file = 0;
        }
        in_file += t[i].count;
        if (!(ok = emit_tensor(&bufs[*n_bufs - 1], prefix, &t[i], f)))
            diag_error_file(d, "%s: read failed", path);
    }
    fclose(f);
    return ok;
}
