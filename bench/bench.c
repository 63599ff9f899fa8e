/*
 * bench.c: `make bench`.  Measures, in one run, the machine (read
 * bandwidth, peak FMA throughput) and gqac's generated code against it:
 * decode attention against a generic implementation, a whole decode step
 * of two models against the memory roofline, prompt processing, threads,
 * and the same code built by tcc.  Every figure is the median of repeated
 * runs; every ratio is taken within this run, against the bandwidth or
 * peak measured in the same seconds.  Then the weight types: decode and
 * prefill of models whose weights are Q8_0, Q4_0, Q4_K, Q6_K, BF16, or
 * llama.cpp's Q4_K_M mix, read in place; the KV cache types; and a
 * training step of the fortune model against PyTorch's, timed in the same
 * run where python3-torch is installed; and decoding many sequences at
 * once through forward_seqs against one sequence's forward and against
 * the batch's roofline.  Prints a table and writes
 * build/bench.json (or the path in argv[1]).
 *
 * Run it on a quiet machine: on two cores a second busy process halves
 * the threaded figures.  argv[3], if given, names the sections to run
 * ("attention,decode,prefill,types,kv,train,batch"; the machine is always
 * measured).
 */
#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "attention_cases.h"
#include "bench_util.h"
#include "gqa_api.h"

extern const gqa_model_api bench_100m_api, tinyllama_api;
/* The fortune model with its training step (gqac --train --prefix fortune). */
extern const gqa_model_api fortune_api;
extern const gqa_train_api fortune_train_api;

/* The weight-type models (the Makefile writes typed.h): llama.cpp's
 * 123 M shape and TinyLlama, each with every matrix of one type, and
 * TinyLlama as llama.cpp's Q4_K_M mixes them. */
typedef struct {
    const gqa_model_api *api;
    const char *shape, *type;
} Typed;
#define TYPED(stem, shape, type) extern const gqa_model_api stem##_api;
#include "typed.h"
#undef TYPED
static const Typed typed[] = {
#define TYPED(stem, shape, type) {&stem##_api, shape, type},
#include "typed.h"
#undef TYPED
};

/* The KV cache models (the Makefile writes kv.h): the 100 M model at a
 * 32 k context with each cache type, and with a sliding window. */
typedef struct {
    const gqa_model_api *api;
    const char *label;
} KvModel;
#define KV(stem, label) extern const gqa_model_api stem##_api;
#include "kv.h"
#undef KV
static const KvModel kv_models[] = {
#define KV(stem, label) {&stem##_api, label},
#include "kv.h"
#undef KV
};

#define REPEATS 5

static FILE *json;
static int json_items; /* items written in the current JSON list */

/* Memory advised for transparent huge pages, filled with small values. */
static float *big_buffer(size_t n, unsigned seed) {
    size_t bytes = (n * sizeof(float) + (2u << 20) - 1) / (2u << 20) * (2u << 20);
    void *p = NULL;
    if (posix_memalign(&p, 2u << 20, bytes) != 0) {
        fprintf(stderr, "bench: cannot allocate %zu MiB\n", bytes >> 20);
        exit(1);
    }
    madvise(p, bytes, MADV_HUGEPAGE);
    float *f = p;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)(i * 2654435761u) ^ seed;
        x ^= x >> 13, x *= 0x5bd1e995u, x ^= x >> 15;
        f[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.05f;
    }
    return f;
}

/* ---- 1. the machine ---- */

static volatile double sink;

/* A dot product over two buffers far larger than the caches, on threads
 * threads.  STREAM_LANES separate sums, so the compiler vectorizes it
 * without reassociating (one serial sum would measure the adder, not
 * memory). */
#define STREAM_LANES 64
static double read_both(const float *a, const float *b, size_t n, int threads) {
    double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        float acc[STREAM_LANES] = {0};
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; i += STREAM_LANES)
            for (int k = 0; k < STREAM_LANES; k++)
                acc[k] += a[i + k] * b[i + k];
        for (int k = 0; k < STREAM_LANES; k++)
            total += acc[k];
    }
    return total;
}

/* GB/s of one read_both: a sample of the bandwidth, and the caches
 * emptied of whatever came before. */
static double timed_read(const float *a, const float *b, size_t n, int threads) {
    double t0 = now();
    sink = read_both(a, b, n, threads);
    return 2.0 * (double)n * sizeof(float) / (now() - t0) / 1e9;
}

/* The median of REPEATS samples. */
static double stream_read(const float *a, const float *b, size_t n, int threads) {
    double gbps[REPEATS];
    for (int r = 0; r < REPEATS; r++)
        gbps[r] = timed_read(a, b, n, threads);
    return median(gbps, REPEATS);
}

/* Seconds for iters steps of `lanes` independent fused multiply-adds on
 * registers, on each of threads threads. */
#define PEAK_KERNEL(lanes)                                                     \
    static double peak_seconds_##lanes(long iters, int threads) {              \
        double t0 = now();                                                     \
        _Pragma("omp parallel num_threads(threads)") {                         \
            float acc[lanes], x = 0.999999f, y = 1e-7f, s = 0;                 \
            for (int k = 0; k < lanes; k++)                                    \
                acc[k] = (float)k;                                             \
            for (long i = 0; i < iters; i++)                                   \
                for (int k = 0; k < lanes; k++)                                \
                    acc[k] = acc[k] * x + y;                                   \
            for (int k = 0; k < lanes; k++)                                    \
                s += acc[k];                                                   \
            sink = s;                                                          \
        }                                                                      \
        return now() - t0;                                                     \
    }
PEAK_KERNEL(96)
PEAK_KERNEL(128)
PEAK_KERNEL(160)
PEAK_KERNEL(192)

/* GFLOP/s of independent FMAs: the best of 96 to 192 lanes of
 * accumulators.  Hiding the FMA latency takes latency x issue width
 * vectors in flight (AVX-512 here: 10-12 registers; 96 lanes, 6, reached
 * only 70%), and too many spill, so the count that fits is measured. */
static double peak_gflops(int threads) {
    static double (*const kernels[])(long, int) = {peak_seconds_96, peak_seconds_128, peak_seconds_160,
                                                    peak_seconds_192};
    static const int lanes[] = {96, 128, 160, 192};
    const long iters = 20000000;
    double best = 0;
    for (int k = 0; k < 4; k++) {
        double t[REPEATS];
        for (int r = 0; r < REPEATS; r++)
            t[r] = kernels[k](iters, threads);
        best = fmax(best, 2.0 * lanes[k] * (double)iters * threads / median(t, REPEATS) / 1e9);
    }
    return best;
}

/* Measures the machine's bandwidth and peak on 1 and 2 threads (a and b:
 * n floats each) and raises stream and peak to them (the best of the run,
 * for the record; attention's FLOP bound).  The bounds of the rows are
 * measured with the rows, since a shared VM's speed drifts by 10-30%
 * within a run. */
static void measure_machine(const float *a, const float *b, size_t n, double stream[3],
                            double peak[3], const char *heading) {
    printf("%s\n", heading);
    for (int threads = 1; threads <= 2; threads++) {
        stream[threads] = fmax(stream[threads], stream_read(a, b, n, threads));
        peak[threads] = fmax(peak[threads], peak_gflops(threads));
        printf("   %d thread%s: read bandwidth %6.1f GB/s, peak FMA %7.1f GFLOP/s (best so far)\n",
               threads, threads > 1 ? "s" : " ", stream[threads], peak[threads]);
    }
    /* Register-only FMAs scale with cores unless something else holds one. */
    if (omp_get_max_threads() > 1 && peak[2] < 1.5 * peak[1])
        printf("   warning: 2 threads reached only %.2fx the FMA rate of one: another process (or the "
               "host) holds a core, and the 2-thread figures below are not meaningful\n",
               peak[2] / peak[1]);
}

/* A 2-thread row whose own bound (bandwidth or peak) came out under 1.3x
 * the best single thread's ran while something else held a core: its
 * ratio holds for those seconds, but its speed is not the machine's.
 * Such rows are marked, in the table and in bench.json ("core_held"). */
static int core_held(int threads, double row_bound, double one_thread) {
    return threads > 1 && row_bound < 1.3 * one_thread;
}

/* The mark after such a row in the table, and its JSON value. */
static const char *held_mark(int held) {
    return held ? "  (a core held)" : "";
}

static const char *json_bool(int b) {
    return b ? "true" : "false";
}

/* ---- 2. decode attention ---- */

/* Bytes of K and V of one position of one KV head, in the cache's type. */
static double kv_row_bytes(int kv_type, int head_dim) {
    return kv_type == GQA_DT_F32 ? 4.0 * head_dim : kv_type == GQA_DT_Q8_0 ? head_dim / 32 * 34.0 : 2.0 * head_dim;
}

static const char *kv_name(int kv_type) {
    return kv_type == GQA_DT_F16 ? "f16" : kv_type == GQA_DT_BF16 ? "bf16" : kv_type == GQA_DT_Q8_0 ? "q8_0" : "f32";
}

/* The usual decode attention, llama2.c's: every query head reads its own
 * K and V rows (KV head h / G), two passes, shapes known only at run time. */
static void generic_attention(float *out, const float *q, const float *kc, const float *vc,
                              int heads, int kv_heads, int hd, int ctx, int pos, float *att,
                              int threads) {
    int group = heads / kv_heads;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int h = 0; h < heads; h++) {
        const float *qh = q + (size_t)h * hd;
        const float *k = kc + (size_t)(h / group) * ctx * hd, *v = vc + (size_t)(h / group) * ctx * hd;
        float *a = att + (size_t)h * ctx, max = -INFINITY, sum = 0;
        for (int t = 0; t <= pos; t++) {
            float s = 0;
            for (int d = 0; d < hd; d++)
                s += qh[d] * k[(size_t)t * hd + d];
            a[t] = s / sqrtf((float)hd);
            max = a[t] > max ? a[t] : max;
        }
        for (int t = 0; t <= pos; t++)
            sum += a[t] = expf(a[t] - max);
        for (int d = 0; d < hd; d++)
            out[(size_t)h * hd + d] = 0;
        for (int t = 0; t <= pos; t++)
            for (int d = 0; d < hd; d++)
                out[(size_t)h * hd + d] += a[t] / sum * v[(size_t)t * hd + d];
    }
}

static void json_open_list(const char *name) {
    fprintf(json, ",\n  \"%s\": [", name);
    json_items = 0;
}

static void json_close_list(void) {
    fprintf(json, "\n  ]");
}

/* A reference for decode attention at G 4 and 8: its bytes and its
 * multiply-adds with nothing else.  read_fma_G reads n floats in blocks of
 * 2,048 (a K or V block at head_dim 128), asking for each line of the next
 * block as it reads one (attention.c's prefetch), and multiplies each
 * float into G sums, as a group's G query heads do with each K and V
 * element: no softmax, no dependences between blocks, registers only.
 * The arithmetic hides the reads only as far as one core keeps enough
 * lines in flight while it computes; this measures how far that is, so a
 * kernel's percentage of the bound can be read against it.  (At G 1-2 the
 * same loop ran slower than the kernel itself: no reference there.) */
#define READ_FMA_BLOCK 2048
#if defined(__GNUC__)
#define READ_AHEAD(p) __builtin_prefetch(p, 0, 2)
#else
#define READ_AHEAD(p) ((void)(p))
#endif
#define READ_FMA_KERNEL(G)                                                     \
    static float read_fma_##G(const float *x, size_t n) {                      \
        float acc[G][16] = {{0}}, s = 0;                                       \
        for (size_t b = 0; b < n; b += READ_FMA_BLOCK) {                       \
            const float *next = x + (b + READ_FMA_BLOCK < n ? b + READ_FMA_BLOCK : b); \
            for (size_t i = 0; i < READ_FMA_BLOCK; i += 16) {                  \
                READ_AHEAD(next + i);                                          \
                for (int g = 0; g < G; g++)                                    \
                    for (int k = 0; k < 16; k++)                               \
                        acc[g][k] += x[b + i + k] * (1.0f + 0.001f * (float)g); \
            }                                                                  \
        }                                                                      \
        for (int g = 0; g < G; g++)                                            \
            for (int k = 0; k < 16; k++)                                       \
                s += acc[g][k];                                                \
        return s;                                                              \
    }
READ_FMA_KERNEL(4)
READ_FMA_KERNEL(8)

/* GB/s of read_fma_G over the first n floats of a (cut into one part per
 * thread), each run after reading a and b whole (see bench_attention),
 * and in *stream those reads' bandwidth. */
static double read_fma(int group, const float *a, const float *b, size_t n_all, size_t n, int threads,
                       double *stream) {
    float (*kernel)(const float *, size_t) = group == 4 ? read_fma_4 : read_fma_8;
    size_t part = n / (size_t)threads / READ_FMA_BLOCK * READ_FMA_BLOCK;
    double t[REPEATS], bw[REPEATS];
    for (int r = 0; r < REPEATS; r++) {
        bw[r] = timed_read(a, b, n_all, threads);
        double t0 = now(), s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
        s += kernel(a + (size_t)omp_get_thread_num() * part, part);
        t[r] = now() - t0;
        sink = s;
    }
    *stream = median(bw, REPEATS);
    return (double)part * threads * sizeof(float) / median(t, REPEATS) / 1e9;
}

/* Each timed call starts with the caches holding none of its K and V, as
 * in a decode step, where the rest of the layer's weights (and every other
 * layer's) pass through the caches between one layer's attention and the
 * next token's: the buffers a and b (far larger than the last-level
 * cache) are read first, or a cache of tens of MB stays partly in a large
 * L3 between repetitions and beats the DRAM bound it is set against.
 * That read, on the kernel's threads, is timed too: its median is the
 * bandwidth of the row's bound, measured in the same seconds as the
 * kernel, since this VM's bandwidth drifts by 10-30% within a run. */
static void bench_attention(const double machine_gbps[3], const double peak[3], const float *a,
                            const float *b, size_t n) {
    static const int contexts[] = {512, 2048, 8192, 32768};
    int ctx = attention_context;
    size_t cache = (size_t)32 * ctx * 128; /* the largest: 32 KV heads of 128 */
    /* kc, vc: (kv_heads, ctx, head_dim), as the generic kernel reads them;
     * key_cache, value_cache: the same through each kernel's kv_store. */
    float *kc = big_buffer(cache, 1), *vc = big_buffer(cache, 2), *q = big_buffer(32 * 128, 3);
    float *key_cache = big_buffer(cache + 32 * 16 * 128, 4), *value_cache = big_buffer(cache + 32 * 16 * 128, 5);
    float *out = malloc(32 * 128 * sizeof(float)), *att = malloc((size_t)32 * ctx * sizeof(float));
    float *scratch = malloc(8 * (32 * 128 + 64) * sizeof(float));
    printf("\n2. Decode attention, 32 query heads, one new token\n");
    printf("   Reference: 32 MiB read with G multiply-adds per float and nothing else:\n");
    json_open_list("read_fma");
    for (int group = 4; group <= 8; group *= 2)
        for (int threads = 1; threads <= 2; threads++) {
            double stream, gbps = read_fma(group, a, b, n, (size_t)8 << 20, threads, &stream);
            int held = core_held(threads, stream, machine_gbps[1]);
            printf("   G %d, %d thread%s: %6.1f GB/s, %3.0f%% of the read bandwidth (%.1f GB/s)%s\n", group,
                   threads, threads > 1 ? "s" : " ", gbps, 100 * gbps / stream, stream,
                   held_mark(held));
            fprintf(json,
                    "%s\n    {\"G\": %d, \"threads\": %d, \"gbps\": %.2f, \"stream_gbps\": %.2f, "
                    "\"pct_of_stream\": %.1f, \"core_held\": %s}",
                    json_items++ ? "," : "", group, threads, gbps, stream, 100 * gbps / stream,
                    json_bool(held));
        }
    json_close_list();
    printf("   Cache types: bytes of K and V in the type; 'vs' is the generic f32 kernel's time (f32\n"
           "   rows) or the f32 cache's (other types) over the row's\n");
    printf("   %-4s %2s %4s %6s %3s | %9s %7s %6s %6s %7s | %9s %8s\n", "kv", "G", "hd", "T", "thr", "ms", "GB/s",
           "read", "%read", "%bound", "vs (ms)", "speedup");
    json_open_list("attention");
    double f32_ms[8][2][4][2] = {{{{0}}}}; /* [shape][hd 64/128][context][threads] */
    for (const AttentionCase *c = attention_cases; c->fn; c++) {
        int group = c->heads / c->kv_heads, gi = group < 8 ? group : 7, hi = c->head_dim == 128;
        attention_cases_fill(c->store, key_cache, value_cache, kc, vc, c->kv_heads, c->head_dim, ctx,
                             ctx - 1);
        for (size_t i = 0; i < sizeof contexts / sizeof contexts[0]; i++) {
            int T = contexts[i];
            if (c->kv_type != GQA_DT_F32 && T < 8192)
                continue; /* cache types: the long contexts, where the cache is what is read */
            for (int threads = 1; threads <= 2; threads++) {
                double ts[REPEATS], tg[REPEATS], bw[REPEATS];
                for (int r = 0; r < REPEATS; r++) {
                    bw[r] = timed_read(a, b, n, threads);
                    double t0 = now();
                    c->fn(out, q, key_cache, value_cache, 0, 0, T - 1, scratch, threads);
                    ts[r] = now() - t0;
                    tg[r] = 0;
                    if (c->kv_type != GQA_DT_F32)
                        continue;
                    sink = read_both(a, b, n, 2);
                    t0 = now();
                    generic_attention(out, q, kc, vc, c->heads, c->kv_heads, c->head_dim, ctx,
                                      T - 1, att, threads);
                    tg[r] = now() - t0;
                }
                double t = median(ts, REPEATS), g = median(tg, REPEATS), stream = median(bw, REPEATS);
                if (c->kv_type == GQA_DT_F32)
                    f32_ms[gi][hi][i][threads - 1] = t;
                else
                    g = f32_ms[gi][hi][i][threads - 1];
                double bytes = 2.0 * c->kv_heads * kv_row_bytes(c->kv_type, c->head_dim) * (double)T;
                double flops = 4.0 * c->heads * c->head_dim * (double)T;
                double bound = fmax(bytes / (stream * 1e9), flops / (peak[threads] * 1e9));
                double gbps = bytes / t / 1e9;
                int held = core_held(threads, stream, machine_gbps[1]);
                printf("   %-4s %2d %4d %6d %3d | %9.3f %7.1f %6.1f %5.0f%% %6.0f%% | %9.3f %7.2fx%s\n",
                       kv_name(c->kv_type), group, c->head_dim, T, threads, t * 1e3, gbps, stream,
                       100 * gbps / stream, 100 * bound / t, g * 1e3, g / t, held_mark(held));
                fprintf(json,
                        "%s\n    {\"kv_cache\": \"%s\", \"G\": %d, \"head_dim\": %d, \"T\": %d, "
                        "\"threads\": %d, \"ms\": %.4f, \"gbps\": %.2f, \"stream_gbps\": %.2f, "
                        "\"pct_of_stream\": %.1f, \"pct_of_bound\": %.1f, \"%s_ms\": %.4f, "
                        "\"speedup_vs_%s\": %.2f, \"core_held\": %s}",
                        json_items++ ? "," : "", kv_name(c->kv_type), group, c->head_dim, T, threads, t * 1e3,
                        gbps, stream, 100 * gbps / stream, 100 * bound / t,
                        c->kv_type == GQA_DT_F32 ? "generic" : "f32", g * 1e3,
                        c->kv_type == GQA_DT_F32 ? "generic" : "f32", g / t, json_bool(held));
            }
        }
    }
    json_close_list();
    free(kc), free(vc), free(key_cache), free(value_cache), free(q), free(out), free(att), free(scratch);
}

/* ---- 3 to 6. whole models ---- */

typedef struct {
    const char *name;
    const gqa_model_api *api;
    const char *compiler;
} Model;

/* Bytes of the KV cache a token at context ctx reads: every position of a
 * layer without a window, the window and sinks of one with. */
static double kv_read(const gqa_model_api *m, int ctx) {
    const gqa_shape *s = &m->shape;
    double row = 2.0 * s->n_kv_heads * kv_row_bytes(s->kv_type, s->head_dim), sum = 0;
    for (int l = 0; l < s->n_layers; l++) {
        int global = s->window <= 0 || (s->global_every > 0 && (l + 1) % s->global_every == 0);
        int seen = global || ctx < s->window + s->sinks ? ctx : s->window + s->sinks;
        sum += row * seen;
    }
    return sum;
}

/* Bytes one decoded token touches at context ctx: every weight but the
 * unused RoPE tables and all but one row of an untied embedding, and the
 * whole KV cache up to ctx. */
static double bytes_per_token(const gqa_model_api *m, int ctx) {
    const gqa_shape *s = &m->shape;
    double weights = 4.0 * s->dim; /* an embedding row, counted as f32 */
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind != GQA_T_EMBED || s->tied_embeddings)
            weights += (double)m->tensors[i].bytes;
    return weights + kv_read(m, ctx);
}

/* Weights of the layers and the classifier, in elements. */
static double matrix_weights(const gqa_model_api *m) {
    double n = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind != GQA_T_EMBED || m->shape.tied_embeddings)
            n += (double)m->tensors[i].rows * m->tensors[i].cols;
    return n;
}

/* Random weights in each tensor's type: random bytes, made into finite
 * values of about the size trained weights have: halves with an exponent
 * of [0.5, 1), block scales 1/16 (f16 0x2c00), quants left random (every
 * bit pattern is a quant). */
static void *typed_weights(const gqa_model_api *m, unsigned seed) {
    unsigned char *w = (unsigned char *)big_buffer((m->weight_bytes + 3) / 4, seed);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const gqa_tensor *t = &m->tensors[i];
        unsigned char *p = w + t->offset;
        static const int block[7] = {0, 0, 0, 18, 34, 144, 210}, scale[7][2] = {{-1, -1}, {-1, -1},
            {-1, -1}, {0, -1}, {0, -1}, {0, 2}, {208, -1}};
        if (t->dtype == GQA_DT_F16 || t->dtype == GQA_DT_BF16) {
            for (size_t k = 0; k < t->bytes; k += 2) {
                unsigned v = p[k] | (unsigned)p[k + 1] << 8;
                v = t->dtype == GQA_DT_F16 ? (v & 0x83ffu) | 0x3800u : (v & 0x807fu) | 0x3f00u;
                p[k] = (unsigned char)v, p[k + 1] = (unsigned char)(v >> 8);
            }
        } else if (t->dtype != GQA_DT_F32) {
            for (size_t k = 0; k < t->bytes; k += (size_t)block[t->dtype])
                for (int j = 0; j < 2 && scale[t->dtype][j] >= 0; j++)
                    p[k + (size_t)scale[t->dtype][j]] = 0x00, p[k + (size_t)scale[t->dtype][j] + 1] = 0x2c;
        }
    }
    return w;
}

typedef struct {
    void *arena;
    gqa_state *s;
    float *logits;
} Instance;

static void instance(Instance *in, const gqa_model_api *m, const void *w) {
    if (posix_memalign(&in->arena, 64, m->arena_bytes) != 0) {
        fprintf(stderr, "bench: cannot allocate %s's arena\n", m->name);
        exit(1);
    }
    memset(in->arena, 0, m->arena_bytes); /* a KV cache of zeros, not stale floats */
    if (m->init(&in->s, in->arena, m->arena_bytes, w, m->weight_bytes) != GQA_OK) {
        fprintf(stderr, "bench: cannot start %s\n", m->name);
        exit(1);
    }
    in->logits = malloc(sizeof(float) * (size_t)m->shape.vocab_size);
}

static void instance_free(Instance *in) {
    free(in->arena);
    free(in->logits);
}

/* Seconds of one decode step at context ctx (the cache's contents do
 * not change the work, so seek stands in for filling it).  Each step
 * follows a timed read of a and b on the same threads, which leaves none
 * of the model in the caches and gives in *stream the bandwidth of the
 * same seconds. */
static double decode_step(const gqa_model_api *m, Instance *in, int ctx, int threads, int repeats,
                          const float *a, const float *b, size_t n, double *stream) {
    double t[REPEATS], bw[REPEATS];
    m->set_threads(in->s, threads);
    for (int r = 0; r < repeats; r++) {
        /* (reset first: a windowed model refuses to seek back to where its
         * ring no longer holds the window) */
        m->reset(in->s);
        if (m->seek(in->s, ctx - 1) != GQA_OK) {
            fprintf(stderr, "bench: %s cannot seek to %d\n", m->name, ctx - 1);
            exit(1);
        }
        bw[r] = timed_read(a, b, n, threads);
        double t0 = now();
        int rc = m->forward(in->s, 1, ctx - 1, in->logits);
        t[r] = now() - t0;
        if (rc != GQA_OK) {
            fprintf(stderr, "bench: %s's forward at %d failed (%d)\n", m->name, ctx - 1, rc);
            exit(1);
        }
    }
    *stream = median(bw, repeats);
    return median(t, repeats);
}

static void bench_decode(const Model *models, int n_models, float *const *weights,
                         const double machine_gbps[3], const float *a, const float *b, size_t n) {
    static const int contexts[] = {256, 2048};
    printf("\n3. Whole decode step, random weights, f32 (5, 6: threads, compilers)\n");
    printf("   %-14s %-5s %5s %3s | %9s %8s %6s %9s\n", "model", "cc", "ctx", "thr", "ms/tok", "tok/s",
           "read", "%roofline");
    json_open_list("decode");
    for (int i = 0; i < n_models; i++) {
        const gqa_model_api *m = models[i].api;
        Instance in;
        instance(&in, m, weights[i]);
        for (size_t c = 0; c < 2; c++)
            for (int threads = 1; threads <= 2; threads++) {
                int repeats = m->weight_bytes > 2000000000u ? 3 : REPEATS;
                if (!strcmp(models[i].compiler, "tcc") && threads == 2)
                    continue; /* tcc has no OpenMP */
                double stream, t = decode_step(m, &in, contexts[c], threads, repeats, a, b, n, &stream);
                double roof = bytes_per_token(m, contexts[c]) / (stream * 1e9);
                int held = core_held(threads, stream, machine_gbps[1]);
                printf("   %-14s %-5s %5d %3d | %9.2f %8.2f %6.1f %8.0f%%%s\n", models[i].name,
                       models[i].compiler, contexts[c], threads, t * 1e3, 1 / t, stream, 100 * roof / t,
                       held_mark(held));
                fprintf(json,
                        "%s\n    {\"model\": \"%s\", \"compiler\": \"%s\", \"context\": %d, "
                        "\"threads\": %d, \"tok_s\": %.3f, \"stream_gbps\": %.2f, \"pct_of_roofline\": %.1f, "
                        "\"core_held\": %s}",
                        json_items++ ? "," : "", models[i].name, models[i].compiler, contexts[c],
                        threads, 1 / t, stream, 100 * roof / t, json_bool(held));
            }
        instance_free(&in);
    }
    json_close_list();
}

/* FLOPs of a prompt of n tokens with the batched path: every layer
 * weight twice a token, attention 4 x heads x head_dim a position pair
 * (causal: n (n + 1) / 2 pairs), the classifier once. */
static double prefill_flops(const gqa_model_api *m, int n) {
    const gqa_shape *s = &m->shape;
    double table = (double)s->vocab_size * s->dim;
    double layers = matrix_weights(m) - table; /* norms counted in: a rounding error */
    double attention = 4.0 * s->n_layers * s->n_heads * s->head_dim * n * (n + 1) / 2.0;
    return 2 * layers * n + attention + 2 * table;
}

static int prompt_token(int i, int vocab) {
    return (i * 7919 + 13) % vocab;
}

/* Seconds to run n prompt tokens from position 0: batched, or one at a
 * time (only the last computing logits, as generate does). */
static double prefill(const gqa_model_api *m, Instance *in, const int *tokens, int n, int batched,
                      int repeats) {
    double t[REPEATS];
    for (int r = 0; r < repeats; r++) {
        m->reset(in->s);
        double t0 = now();
        if (batched)
            m->forward_batch(in->s, tokens, n, 0, in->logits);
        else
            for (int i = 0; i < n; i++)
                m->forward(in->s, tokens[i], i, i + 1 == n ? in->logits : NULL);
        t[r] = now() - t0;
    }
    return median(t, repeats);
}

/* Each row's peak is measured just before it, as attention's and
 * decode's bandwidth is measured with them. */
static void bench_prefill(const Model *models, int n_models, float *const *weights,
                          const double machine_peak[3]) {
    enum { N = 256 };
    int tokens[N];
    printf("\n4. Prefill of a %d-token prompt\n", N);
    printf("   %-14s %-5s %3s | %9s %9s %6s %7s | %12s %8s\n", "model", "cc", "thr", "tok/s", "GFLOP/s",
           "peak", "%peak", "1-by-1 tok/s", "speedup");
    json_open_list("prefill");
    for (int i = 0; i < n_models; i++) {
        const gqa_model_api *m = models[i].api;
        Instance in;
        instance(&in, m, weights[i]);
        for (int k = 0; k < N; k++)
            tokens[k] = prompt_token(k, m->shape.vocab_size);
        for (int threads = 1; threads <= 2; threads++) {
            int big = m->weight_bytes > 2000000000u;
            if (!strcmp(models[i].compiler, "tcc") && threads == 2)
                continue;
            m->set_threads(in.s, threads);
            double peak = peak_gflops(threads);
            double tb = prefill(m, &in, tokens, N, 1, big ? 1 : REPEATS);
            double t1 = prefill(m, &in, tokens, N, 0, 1);
            double gflops = prefill_flops(m, N) / tb / 1e9;
            int held = core_held(threads, peak, machine_peak[1]);
            printf("   %-14s %-5s %3d | %9.1f %9.1f %6.0f %6.0f%% | %12.1f %7.1fx%s\n", models[i].name,
                   models[i].compiler, threads, N / tb, gflops, peak, 100 * gflops / peak, N / t1,
                   t1 / tb, held_mark(held));
            fprintf(json,
                    "%s\n    {\"model\": \"%s\", \"compiler\": \"%s\", \"tokens\": %d, \"threads\": %d, "
                    "\"tok_s\": %.2f, \"gflops\": %.2f, \"peak_gflops\": %.1f, \"pct_of_peak\": %.1f, "
                    "\"speedup_vs_token_by_token\": %.2f, \"core_held\": %s}",
                    json_items++ ? "," : "", models[i].name, models[i].compiler, N, threads, N / tb,
                    gflops, peak, 100 * gflops / peak, t1 / tb, json_bool(held));
        }
        instance_free(&in);
    }
    json_close_list();
}

/* ---- 8. batched decode: many sequences through forward_seqs ---- */

/* A batch of B sequences, each at context ctx (positions 0 .. ctx-2 in
 * its pages, the step runs ctx-1), in a pool of exactly their pages,
 * filled with small random K and V: the work of a step does not depend
 * on the values, only on how many there are. */
typedef struct {
    int n;
    void *pool;
    size_t n_pages;
    int *pages, *tokens;
    gqa_seq *seqs;
    float *logits;
} Batch;

static void batch_make(Batch *bt, const gqa_model_api *m, int n, int ctx) {
    int per = (ctx + m->page_positions - 1) / m->page_positions;
    bt->n = n;
    bt->n_pages = (size_t)n * per;
    bt->pool = big_buffer((bt->n_pages * m->page_bytes + 3) / 4, 21);
    bt->pages = malloc(sizeof *bt->pages * bt->n_pages);
    bt->tokens = malloc(sizeof *bt->tokens * n);
    bt->seqs = malloc(sizeof *bt->seqs * n);
    bt->logits = malloc(sizeof(float) * (size_t)m->shape.vocab_size * n);
    if (!bt->pages || !bt->tokens || !bt->seqs || !bt->logits) {
        fprintf(stderr, "bench: cannot allocate a batch of %d\n", n);
        exit(1);
    }
    for (size_t i = 0; i < bt->n_pages; i++)
        bt->pages[i] = (int)i;
    for (int i = 0; i < n; i++) {
        bt->tokens[i] = prompt_token(i, m->shape.vocab_size);
        bt->seqs[i] = (gqa_seq){&bt->tokens[i], 1, ctx - 1, bt->pages + (size_t)i * per,
                                bt->logits + (size_t)i * m->shape.vocab_size};
    }
}

static void batch_free(Batch *bt) {
    free(bt->pool), free(bt->pages), free(bt->tokens), free(bt->seqs), free(bt->logits);
}

/* Seconds of one forward_seqs step of the batch: the median and range of
 * REPEATS, each after a timed read (empty caches, *stream its bandwidth). */
static double batch_step(const gqa_model_api *m, gqa_state *s, Batch *bt, int threads, const float *a,
                         const float *b, size_t n, double *stream, double range[2]) {
    double t[REPEATS], bw[REPEATS];
    m->set_threads(s, threads);
    for (int r = 0; r < REPEATS; r++) {
        bw[r] = timed_read(a, b, n, threads);
        double t0 = now();
        int rc = m->forward_seqs(s, bt->pool, bt->n_pages, bt->seqs, bt->n);
        t[r] = now() - t0;
        if (rc != GQA_OK) {
            fprintf(stderr, "bench: %s's forward_seqs of %d sequences failed (%d)\n", m->name, bt->n, rc);
            exit(1);
        }
    }
    *stream = median(bw, REPEATS);
    double mid = median(t, REPEATS); /* sorts t */
    range[0] = t[0], range[1] = t[REPEATS - 1];
    return mid;
}

/* FLOPs of one decode step of B sequences at context ctx: every matrix
 * weight twice a token, attention 4 x heads x head_dim a position. */
static double batch_flops(const gqa_model_api *m, int batch, int ctx) {
    const gqa_shape *s = &m->shape;
    return batch * (2 * matrix_weights(m) + 4.0 * s->n_layers * s->n_heads * s->head_dim * ctx);
}

/* Aggregate decode throughput of B sequences at context 256 against one
 * sequence's plain forward in the same seconds, and against the roofline
 * of the batch: the weights once plus every sequence's KV per step, over
 * the bandwidth; and its FLOPs against the FMA peak, the bound that takes
 * over as B grows. */
static void bench_batch(const gqa_model_api *m, const double machine_gbps[3], const double peak[3],
                        const float *a, const float *b, size_t n) {
    enum { CTX = 256 };
    static const int sizes[] = {1, 2, 4, 8, 16, 32};
    printf("\n8. Batched decode: %s, B sequences at context %d, one forward_seqs step each\n", m->name, CTX);
    if (!m->forward_seqs) {
        printf("   (this build's model has no forward_seqs)\n");
        return;
    }
    printf("   %3s %3s | %9s %17s %9s | %7s %6s %9s %6s\n", "thr", "B", "ms/step", "range", "tok/s", "x one",
           "read", "%roofline", "%peak");
    float *w = big_buffer(m->weight_bytes / 4, 11); /* section 3's weights */
    Instance one;
    instance(&one, m, w);
    void *arena = NULL;
    gqa_state *s;
    if (posix_memalign(&arena, m->arena_align > 64 ? m->arena_align : 64, m->seqs_arena_bytes) ||
        m->init(&s, arena, m->seqs_arena_bytes, w, m->weight_bytes) != GQA_OK) {
        fprintf(stderr, "bench: cannot start a forward_seqs instance of %s\n", m->name);
        exit(1);
    }
    double weights = bytes_per_token(m, CTX) - kv_read(m, CTX);
    json_open_list("batch");
    for (int threads = 1; threads <= 2; threads++) {
        double one_bw, one_s = decode_step(m, &one, CTX, threads, REPEATS, a, b, n, &one_bw);
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            Batch bt;
            batch_make(&bt, m, sizes[k], CTX);
            double stream, range[2], t = batch_step(m, s, &bt, threads, a, b, n, &stream, range);
            double tok_s = sizes[k] / t, ratio = tok_s * one_s;
            double roof = (weights + sizes[k] * kv_read(m, CTX)) / (stream * 1e9) / t;
            double pct_peak = 100 * batch_flops(m, sizes[k], CTX) / t / (peak[threads] * 1e9);
            int held = core_held(threads, stream, machine_gbps[1]);
            printf("   %3d %3d | %9.2f %7.2f .. %7.2f %9.1f | %6.2fx %6.1f %8.0f%% %5.0f%%%s\n", threads,
                   sizes[k], t * 1e3, range[0] * 1e3, range[1] * 1e3, tok_s, ratio, stream, 100 * roof, pct_peak,
                   held_mark(held));
            fprintf(json,
                    "%s\n    {\"model\": \"%s\", \"context\": %d, \"threads\": %d, \"batch\": %d, "
                    "\"ms_per_step\": %.3f, \"ms_min\": %.3f, \"ms_max\": %.3f, \"tok_s\": %.2f, "
                    "\"one_sequence_tok_s\": %.2f, \"speedup_vs_one\": %.2f, \"stream_gbps\": %.2f, "
                    "\"pct_of_roofline\": %.1f, \"pct_of_peak\": %.1f, \"core_held\": %s}",
                    json_items++ ? "," : "", m->name, CTX, threads, sizes[k], t * 1e3, range[0] * 1e3,
                    range[1] * 1e3, tok_s, 1 / one_s, ratio, stream, 100 * roof, pct_peak, json_bool(held));
            batch_free(&bt);
        }
        printf("   (one sequence's forward on %d thread%s: %.1f tok/s)\n", threads, threads > 1 ? "s" : "",
               1 / one_s);
    }
    json_close_list();
    free(arena), free(w);
    instance_free(&one);
}

/* The 100M model's C, built by tcc as a shared object: what the libtcc
 * JIT will run. */
static const gqa_model_api *load_tcc(const char *so) {
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    const gqa_model_api *m = lib ? dlsym(lib, "bench_100m_api") : NULL;
    if (!m)
        fprintf(stderr, "bench: no tcc build (%s): %s\n", so, dlerror());
    return m;
}

/* 5. Each weight type: a decode step at contexts 256 and 2048 against
 * the bandwidth of the same seconds (bytes: every tensor in its type),
 * and a 256-token prefill, on 1 and 2 threads. */
static void bench_types(const double machine_gbps[3], const double machine_peak[3], const float *a,
                        const float *b, size_t n) {
    enum { N = 256 };
    static const int contexts[] = {256, 2048};
    int tokens[N];
    printf("\n5. Weight types: decode (tok/s, %% of the bandwidth read in the same seconds) and a "
           "%d-token prefill\n", N);
    printf("   %-15s %-7s %3s | %9s %9s %6s %6s | %9s %9s %6s %6s | %9s\n", "shape", "weights", "thr",
           "MB/tok", "tok/s 256", "read", "%bw", "MB/tok", "tok/s 2k", "read", "%bw", "prefill");
    json_open_list("types");
    for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++) {
        const gqa_model_api *m = typed[i].api;
        void *w = typed_weights(m, 21 + (unsigned)i);
        Instance in;
        instance(&in, m, w);
        for (int k = 0; k < N; k++)
            tokens[k] = prompt_token(k, m->shape.vocab_size);
        for (int threads = 1; threads <= 2; threads++) {
            double tok_s[2], pct[2], bw[2], mb[2];
            int held = 0;
            for (int c = 0; c < 2; c++) {
                double stream, t = decode_step(m, &in, contexts[c], threads, REPEATS, a, b, n, &stream);
                mb[c] = bytes_per_token(m, contexts[c]) / 1e6;
                tok_s[c] = 1 / t, bw[c] = stream, pct[c] = 100 * mb[c] * 1e6 / (stream * 1e9) / t;
                held |= core_held(threads, stream, machine_gbps[1]);
            }
            m->set_threads(in.s, threads);
            double tp = prefill(m, &in, tokens, N, 1, m->weight_bytes > 2000000000u ? 1 : 3);
            printf("   %-15s %-7s %3d | %9.1f %9.1f %6.1f %5.0f%% | %9.1f %9.1f %6.1f %5.0f%% | %9.1f%s\n",
                   typed[i].shape, typed[i].type, threads, mb[0], tok_s[0], bw[0], pct[0], mb[1], tok_s[1],
                   bw[1], pct[1], N / tp, held_mark(held));
            fprintf(json,
                    "%s\n    {\"shape\": \"%s\", \"weights\": \"%s\", \"threads\": %d, "
                    "\"mb_per_token_256\": %.2f, \"tok_s_256\": %.2f, \"stream_gbps_256\": %.2f, "
                    "\"pct_of_bandwidth_256\": %.1f, \"mb_per_token_2048\": %.2f, \"tok_s_2048\": %.2f, "
                    "\"stream_gbps_2048\": %.2f, \"pct_of_bandwidth_2048\": %.1f, \"prefill_tok_s\": %.2f, "
                    "\"core_held\": %s}",
                    json_items++ ? "," : "", typed[i].shape, typed[i].type, threads, mb[0], tok_s[0], bw[0],
                    pct[0], mb[1], tok_s[1], bw[1], pct[1], N / tp, json_bool(held));
        }
        (void)machine_peak;
        instance_free(&in);
        free(w);
    }
    json_close_list();
}

/* 6. The KV cache in a whole model: the 100 M model at a 32 k context
 * with each cache type, and with a window of 1024 (and 4 sinks) on every
 * layer: a decode step at growing contexts against the bandwidth of the
 * same seconds (bytes: the weights and the cache the token reads).  A
 * windowed model's steps stay flat past the window. */
static void bench_kv(const double machine_gbps[3], const float *a, const float *b, size_t n) {
    static const int contexts[] = {1024, 4096, 16384, 32768};
    enum { N_CTX = sizeof contexts / sizeof contexts[0] };
    printf("\n6. KV cache types and a sliding window: decode (tok/s, %% of the bandwidth read in the same "
           "seconds)\n   %-16s %3s |", "model", "thr");
    for (int c = 0; c < N_CTX; c++)
        printf(" %6d ctx %%bw |", contexts[c]);
    printf("\n");
    json_open_list("kv_cache");
    for (size_t i = 0; i < sizeof kv_models / sizeof kv_models[0]; i++) {
        const gqa_model_api *m = kv_models[i].api;
        void *w = typed_weights(m, 31 + (unsigned)i);
        Instance in;
        instance(&in, m, w);
        for (int threads = 1; threads <= 2; threads++) {
            double tok_s[N_CTX], pct[N_CTX];
            int held = 0;
            printf("   %-16s %3d |", kv_models[i].label, threads);
            for (int c = 0; c < N_CTX; c++) {
                double stream, t = decode_step(m, &in, contexts[c], threads, REPEATS, a, b, n, &stream);
                tok_s[c] = 1 / t;
                pct[c] = 100 * bytes_per_token(m, contexts[c]) / (stream * 1e9) / t;
                held |= core_held(threads, stream, machine_gbps[1]);
                printf(" %10.1f %3.0f%% |", tok_s[c], pct[c]);
            }
            printf("%s\n", held_mark(held));
            fprintf(json, "%s\n    {\"model\": \"%s\", \"threads\": %d, \"kv_cache_bytes\": %zu", json_items++ ? "," : "",
                    kv_models[i].label, threads, m->kv_cache_bytes);
            for (int c = 0; c < N_CTX; c++)
                fprintf(json, ", \"tok_s_%d\": %.2f, \"pct_of_bandwidth_%d\": %.1f", contexts[c], tok_s[c],
                        contexts[c], pct[c]);
            fprintf(json, ", \"core_held\": %s}", json_bool(held));
        }
        instance_free(&in);
        free(w);
    }
    json_close_list();
}

/* ---- 7. training ---- */

/* FLOPs of one training step: forward and backward (2 + 4 per weight and
 * token) through every product, the tied classifier counted once, and
 * causal attention's scores and weighting, backward 2.5 times forward. */
static double train_flops(const gqa_model_api *m, int batch, int seq) {
    const gqa_shape *s = &m->shape;
    double matrix = s->tied_embeddings ? (double)s->vocab_size * s->dim : 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const gqa_tensor *t = &m->tensors[i];
        if (t->kind != GQA_T_EMBED && t->rows > 1 && t->cols > 1)
            matrix += (double)t->rows * t->cols;
    }
    double tokens = (double)batch * seq;
    double att = 4.0 * s->n_layers * batch * s->n_heads * s->head_dim * (seq * (seq + 1.0) / 2);
    return 6 * matrix * tokens + 3.5 * att;
}

/* Seconds per step of the whole update gqac train makes: step, the
 * gradient's norm, AdamW. */
static double train_step_s(const gqa_train_api *t, gqa_trainer *tr, float *p, float *g, float *mo,
                           float *v, const int *tokens, int threads) {
    double sq[64], loss, times[2 * REPEATS];
    t->set_threads(tr, threads);
    for (int r = -2; r < 2 * REPEATS; r++) {
        double t0 = now();
        gqa_adamw h = {1e-4, 0.9, 0.95, 1e-8, 0.1, r + 3};
        if (t->step(tr, p, tokens, g, &loss) != GQA_OK)
            return NAN;
        t->grad_sq(tr, g, sq);
        t->adamw(tr, p, g, mo, v, &h, 1.0f);
        if (r >= 0)
            times[r] = now() - t0;
    }
    return median(times, 2 * REPEATS);
}

/* PyTorch's seconds per step on threads, from tools/torch_train_speed.py;
 * NAN when torch is not installed. */
static double torch_step_s(int threads) {
    char cmd[160], line[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/torch_train_speed.py %d 2>/dev/null", threads);
    FILE *f = popen(cmd, "r");
    double s = NAN;
    const char *key = "\"s_per_step_median\": ";
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, key))
            s = strtod(strstr(line, key) + strlen(key), NULL);
    if (f && pclose(f) != 0)
        s = NAN;
    return s;
}

static void bench_train(const double peak[3]) {
    enum { BATCH = 16 };
    const gqa_model_api *m = &fortune_api;
    const gqa_train_api *t = &fortune_train_api;
    int seq = m->shape.seq_len;
    size_t n = t->n_params, bytes = t->arena_bytes(BATCH, seq);
    float *p = big_buffer(n, 41), *g = malloc(n * sizeof *g), *mo = calloc(n, sizeof *mo),
          *v = calloc(n, sizeof *v);
    int *tokens = malloc(sizeof *tokens * BATCH * (seq + 1));
    void *arena = NULL;
    gqa_trainer *tr;
    if (posix_memalign(&arena, 64, bytes ? bytes : 64))
        arena = NULL;
    for (size_t i = 0; i < n; i++)
        p[i] *= 0.04f; /* about the recipe's init scale */
    for (int i = 0; i < BATCH * (seq + 1); i++)
        tokens[i] = (int)((unsigned)(i * 2654435761u) >> 7) % m->shape.vocab_size;
    if (!g || !mo || !v || !tokens || !arena || t->init(&tr, arena, bytes, BATCH, seq) != GQA_OK) {
        printf("\n7. Training: cannot set up the trainer\n");
        return;
    }
    double flops = train_flops(m, BATCH, seq);
    printf("\n7. Training: the fortune model's step (forward, backward, AdamW) at %d x %d tokens, "
           "%.1f GFLOP;\n   PyTorch's (tools/torch_train_speed.py) timed in this run\n"
           "   thr | gqac s/step  tok/s  %%peak | torch s/step  tok/s | gqac/torch\n", BATCH, seq, flops / 1e9);
    json_open_list("train");
    for (int threads = 1; threads <= 2; threads++) {
        double s = train_step_s(t, tr, p, g, mo, v, tokens, threads), ts = torch_step_s(threads);
        double tok = BATCH * seq, pct = 100 * flops / s / (peak[threads] * 1e9);
        printf("   %3d | %11.3f %6.0f %5.1f%% | %12.3f %6.0f | %9.2fx\n", threads, s, tok / s, pct, ts,
               tok / ts, ts / s);
        fprintf(json, "%s\n    {\"model\": \"fortune\", \"threads\": %d, \"s_per_step\": %.4f, \"tokens_per_s\": %.0f, "
                "\"pct_of_peak\": %.1f, \"torch_s_per_step\": %.4f, \"speedup_vs_torch\": %.2f}",
                json_items++ ? "," : "", threads, s, tok / s, pct, isnan(ts) ? -1 : ts, isnan(ts) ? -1 : ts / s);
    }
    json_close_list();
    free(p), free(g), free(mo), free(v), free(tokens), free(arena);
}

int main(int argc, char **argv) {
    const char *out = argc > 1 ? argv[1] : "build/bench.json";
    const char *tcc_so = argc > 2 ? argv[2] : "build/bench/bench_100m_tcc.so";
    const char *sections = argc > 3 ? argv[3] : "attention,decode,prefill,types,kv,train,batch";
    int cores = omp_get_max_threads() > 2 ? 2 : omp_get_max_threads();
    double stream[3], peak[3];
    json = fopen(out, "w");
    if (!json) {
        perror(out);
        return 1;
    }
    size_t n = (size_t)64 << 20; /* two 256 MiB buffers */
    float *a = big_buffer(n, 7), *b = big_buffer(n, 8);
    for (int threads = 1; threads <= 2; threads++)
        stream[threads] = peak[threads] = 0;
    measure_machine(a, b, n, stream, peak, cores > 1 ? "1. The machine (2 threads)" : "1. The machine (1 thread)");
    fprintf(json, "{\n  \"sections\": \"%s\"", sections);

    if (strstr(sections, "attention"))
        bench_attention(stream, peak, a, b, n);

    const gqa_model_api *tcc = load_tcc(tcc_so);
    Model models[] = {{"gqa-100m", &bench_100m_api, "gcc"},
                      {"tinyllama-1.1b", &tinyllama_api, "gcc"},
                      {"gqa-100m", tcc, "tcc"}};
    int n_models = tcc ? 3 : 2;
    float *weights[3];
    weights[0] = big_buffer(bench_100m_api.weight_bytes / 4, 11);
    weights[1] = big_buffer(tinyllama_api.weight_bytes / 4, 12);
    weights[2] = weights[0];
    if (strstr(sections, "decode")) {
        measure_machine(a, b, n, stream, peak, "\n   The machine again:");
        bench_decode(models, n_models, weights, stream, a, b, n);
    }
    if (strstr(sections, "prefill")) {
        measure_machine(a, b, n, stream, peak, "\n   The machine again:");
        bench_prefill(models, n_models, weights, peak);
    }
    free(weights[0]), free(weights[1]);
    if (strstr(sections, "types")) {
        measure_machine(a, b, n, stream, peak, "\n   The machine again:");
        bench_types(stream, peak, a, b, n);
    }
    if (strstr(sections, "kv")) {
        measure_machine(a, b, n, stream, peak, "\n   The machine again:");
        bench_kv(stream, a, b, n);
    }
    if (strstr(sections, "train")) {
        measure_machine(a, b, n, stream, peak, "\n   The machine again:");
        bench_train(peak);
    }
    if (strstr(sections, "batch")) {
        measure_machine(a, b, n, stream, peak, "\n   The machine again:");
        bench_batch(&bench_100m_api, stream, peak, a, b, n);
    }
    free(a), free(b);
    fprintf(json, ",\n  \"stream_read_gbps\": %.2f, \"stream_read_gbps_1thread\": %.2f,\n"
                  "  \"peak_gflops\": %.1f, \"peak_gflops_1thread\": %.1f\n}\n",
            stream[2], stream[1], peak[2], peak[1]);
    fclose(json);
    printf("\nwrote %s\n", out);
    return 0;
}
