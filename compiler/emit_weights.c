/*
 * emit_weights.c: a llama2.c checkpoint as C, for models that run with no
 * file I/O (gqac --embed-weights).  Needs: a Model and its checkpoint (the
 * packed weights after the header: for a model of other types than f32,
 * what `gqac weights` writes as .bin).  Provides: .c files holding one
 * object per kind of tensor, every layer's in it as the packed weights
 * have them (emit_c.c declares them and points at each layer's).
 *
 * The representation is the cheap one to compile: each float as its
 * 32-bit pattern in hex, in a union with a float array (C99 lets the
 * float member reinterpret the bits), which compilers parse faster and in
 * less memory than decimal literals.  Integers are also byte-order free, so one
 * file serves little- and big-endian targets.  Tensors are never split;
 * files hold whole tensors up to EMBED_FLOATS_PER_FILE floats.  Tensors
 * of other types are their bytes, which are little-endian by definition.
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
static bool check_file(const Model *m, FILE *f, const char *path, uint64_t bytes, Diag *d) {
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
    if (size < 0 || (uint64_t)size != 28 + bytes) {
        diag_error_file(d, "%s: file is %lld bytes, expected 28 + %llu = %llu", path, size,
                        (unsigned long long)bytes, (unsigned long long)(28 + bytes));
        return false;
    }
    return true;
}

/* One kind's tensors (slices t[0..n), every layer's): f32 as a union of
 * its bits and its floats, eight words a line; other types as a union of
 * their bytes with floats (the f32 layers of a kind that mixes types are
 * read through that member, and it aligns the object), sixteen a line. */
static bool emit_kind(Buf *b, const char *prefix, const Slice *t, int64_t n, FILE *f) {
    uint64_t bytes = t[n - 1].offset + (t[n - 1].bytes + 3) / 4 * 4 - t[0].offset;
    bool f32 = true;
    unsigned char chunk[64];
    for (int64_t i = 0; i < n; i++)
        f32 = f32 && t[i].type == DT_F32;
    if (f32)
        buf_printf(b, "\n/* %s */\nconst union %s_w_%s { uint32_t bits[%llu]; float f[%llu]; } %s_w_%s = {{\n",
                   t->name, prefix, t->name, (unsigned long long)bytes / 4, (unsigned long long)bytes / 4,
                   prefix, t->name);
    else
        buf_printf(b, "\n/* %s */\nconst union %s_w_%s { float f[%llu]; unsigned char b[%llu]; } %s_w_%s = "
                      "{.b = {\n", t->name, prefix, t->name, (unsigned long long)bytes / 4, (unsigned long long)bytes,
                   prefix, t->name);
    if (fseek(f, (long)(28 + t[0].offset), SEEK_SET) != 0)
        return false;
    for (uint64_t i = 0; i < bytes; i += sizeof chunk) {
        size_t len = bytes - i < sizeof chunk ? (size_t)(bytes - i) : sizeof chunk;
        if (fread(chunk, 1, len, f) != len)
            return false;
        for (size_t j = 0; f32 && j < len; j += 4)
            buf_printf(b, "0x%08lxu,%s", (unsigned long)get_u32(chunk + j), j % 32 == 28 || j + 4 == len ? "\n" : " ");
        for (size_t j = 0; !f32 && j < len; j++)
            buf_printf(b, "%u,%s", chunk[j], j % 16 == 15 || j + 1 == len ? "\n" : "");
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
    Arena *a = arena_new();
    Slice *t;
    uint64_t total, in_file = 0;
    int64_t n = ir_slices(m, a, &t, &total);
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_error_file(d, "cannot open %s: %s", path, strerror(errno));
        arena_free(a);
        return false;
    }
    bool ok = check_file(m, f, path, total, d);
    *n_bufs = 0;
    for (int64_t i = 0, k; i < n && ok; i = k) {
        uint64_t bytes = 0;
        for (k = i; k < n && t[k].kind == t[i].kind; k++)
            bytes += t[k].bytes;
        if (*n_bufs == 0 || (in_file > 0 && in_file + bytes / 4 > EMBED_FLOATS_PER_FILE)) {
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
        in_file += bytes / 4;
        if (!(ok = emit_kind(&bufs[*n_bufs - 1], prefix, t + i, k - i, f)))
            diag_error_file(d, "%s: read failed", path);
    }
    fclose(f);
    arena_free(a);
    return ok;
}
