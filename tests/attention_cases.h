/* attention_cases.h: the generated attention kernels of the test matrix
 * (tests/gen_attention.c writes them; tests/test_kernels.c checks them). */
#ifndef ATTENTION_CASES_H
#define ATTENTION_CASES_H

/* q (heads, head_dim), caches in the kernel's layout -> out. */
typedef void (*AttentionFn)(float *out, const float *q, const float *key_cache,
                            const float *value_cache, int pos, float *scratch, int threads);
/* q (b, heads, head_dim) of the tokens at positions p0 .. p0 + b - 1 ->
 * out (the same). */
typedef void (*AttentionPromptFn)(float *out, const float *q, const float *key_cache,
                                  const float *value_cache, int p0, int b, int threads);
/* k, v (kv_heads, head_dim) of position pos -> the caches. */
typedef void (*KvStoreFn)(float *key_cache, float *value_cache, int pos, const float *k,
                          const float *v);

typedef struct {
    int heads, kv_heads, head_dim;
    AttentionFn fn;
    KvStoreFn store;
    AttentionPromptFn prompt;
} AttentionCase;

extern const AttentionCase attention_cases[]; /* ends with fn == 0 */
extern const int attention_context;

#endif
