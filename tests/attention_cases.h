/* attention_cases.h: the generated attention kernels of the test matrix
 * (tests/gen_attention.c writes them; tests/test_kernels.c checks them). */
#ifndef ATTENTION_CASES_H
#define ATTENTION_CASES_H

#include <stdlib.h>

/* q (heads, head_dim), caches in the kernel's layout and type -> out; a
 * sliding window (0: none) with sinks. */
typedef void (*AttentionFn)(float *out, const float *q, const void *key_cache, const void *value_cache,
                            int window, int sinks, int pos, float *scratch, int threads);
/* q (b, heads, head_dim) of the tokens at positions p0 .. p0 + b - 1 ->
 * out (the same). */
typedef void (*AttentionPromptFn)(float *out, const float *q, const void *key_cache,
                                  const void *value_cache, int window, int sinks, int p0, int b,
                                  int threads);
/* k, v (kv_heads, head_dim) of position pos -> the caches. */
typedef void (*KvStoreFn)(void *key_cache, void *value_cache, int window, int sinks, int pos,
                          const float *k, const float *v);
/* Bytes of each of the caches for that window and sinks. */
typedef size_t (*CacheBytesFn)(int window, int sinks);

typedef struct {
    int heads, kv_heads, head_dim;
    int kv_type; /* GQA_DT_*: 0 f32, 1 f16, 2 bf16, 4 q8_0 */
    AttentionFn fn;
    KvStoreFn store;
    AttentionPromptFn prompt;
    CacheBytesFn cache_bytes;
} AttentionCase;

extern const AttentionCase attention_cases[]; /* ends with fn == 0 */
extern const int attention_context;

/* Position t of kc, vc (kv_heads, context, head_dim), the plain layout
 * that references read -> key_cache, value_cache in the kernel's own
 * layout for that window and sinks, through its store. */
static inline void attention_cases_store(KvStoreFn store, void *key_cache, void *value_cache, int window,
                                         int sinks, const float *kc, const float *vc, int kv_heads, int hd,
                                         int context, int t) {
    float *k = malloc((size_t)kv_heads * hd * sizeof *k), *v = malloc((size_t)kv_heads * hd * sizeof *v);
    for (int h = 0; h < kv_heads; h++)
        for (int d = 0; d < hd; d++) {
            k[h * hd + d] = kc[((size_t)h * context + t) * hd + d];
            v[h * hd + d] = vc[((size_t)h * context + t) * hd + d];
        }
    store(key_cache, value_cache, window, sinks, t, k, v);
    free(k), free(v);
}

/* Positions 0..last, no window. */
static inline void attention_cases_fill(KvStoreFn store, void *key_cache, void *value_cache,
                                        const float *kc, const float *vc, int kv_heads, int hd,
                                        int context, int last) {
    for (int t = 0; t <= last; t++)
        attention_cases_store(store, key_cache, value_cache, 0, 0, kc, vc, kv_heads, hd, context, t);
}

#endif
