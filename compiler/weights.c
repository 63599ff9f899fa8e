/*
 * weights.c: checkpoints that gqac writes itself.  Needs: a Model that
 * ir_stats accepted.  Provides: deterministic random weights in llama2.c's
 * format, the same bytes on every host, for tests and the demo (no real
 * weights can be downloaded where gqac is tested).
 */
#include "gqac.h"

#include <math.h>
#include <string.h>

/* splitmix64: tiny, and the same sequence everywhere. */
static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1), exactly representable, so no host rounds it apart. */
static float uniform(uint64_t *state) {
    return (float)((int32_t)(next_u64(state) >> 40) - (1 << 23)) / (float)(1 << 23);
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_f32(unsigned char *p, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}

/* Norm gains near 1; biases small; matrices scaled by 1 / sqrt(fan-in) so
 * activations stay near unit size through every layer.  llama2.c's unused
 * RoPE tables are zeros. */
static float sample(const Tensor *t, uint64_t *state) {
    if (!t->used)
        return 0.0f;
    float u = uniform(state);
    if (!strncmp(t->name, "rms", 3))
        return 1.0f + 0.25f * u;
    if (t->name[0] == 'b')
        return 0.1f * u;
    return u * (float)sqrt(3.0 / (double)t->cols);
}

static bool write_tensor(const Tensor *t, uint64_t *state, FILE *f) {
    unsigned char buf[4096];
    size_t fill = 0;
    for (uint64_t i = 0; i < t->count; i++) {
        put_f32(buf + fill, sample(t, state));
        fill += 4;
        if (fill == sizeof buf || i + 1 == t->count) {
            if (fwrite(buf, 1, fill, f) != fill)
                return false;
            fill = 0;
        }
    }
    return true;
}

void weights_fill_random(const Model *m, uint64_t seed, float *out) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t total, state = seed;
    int n = ir_tensors(m, t, &total);
    for (int i = 0; i < n; i++)
        for (uint64_t j = 0; j < t[i].count; j++)
            *out++ = sample(&t[i], &state);
}

static bool write_header(const Model *m, FILE *f) {
    int64_t header[7] = {m->dim, m->hidden, m->layers, m->heads, m->kv_heads,
                         m->tied ? m->vocab : -m->vocab, m->context};
    unsigned char bytes[28];
    for (int i = 0; i < 7; i++)
        put_u32(bytes + 4 * i, (uint32_t)header[i]);
    return fwrite(bytes, 1, sizeof bytes, f) == sizeof bytes;
}

bool weights_write(const Model *m, const float *w, FILE *f) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t total;
    ir_tensors(m, t, &total);
    if (!write_header(m, f))
        return false;
    unsigned char buf[4096];
    for (uint64_t i = 0; i < total; i += sizeof buf / 4) {
        size_t n = total - i < sizeof buf / 4 ? (size_t)(total - i) : sizeof buf / 4;
        for (size_t j = 0; j < n; j++)
            put_f32(buf + 4 * j, w[i + j]);
        if (fwrite(buf, 4, n, f) != n)
            return false;
    }
    return true;
}

bool weights_write_random(const Model *m, uint64_t seed, FILE *f) {
    Tensor t[IR_MAX_TENSORS];
    uint64_t total, state = seed;
    int n = ir_tensors(m, t, &total);
    if (!write_header(m, f))
        return false;
    for (int i = 0; i < n; i++)
        if (!write_tensor(&t[i], &state, f))
            return false;
    return true;
}
