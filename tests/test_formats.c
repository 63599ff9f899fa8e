/*
 * test_formats.c: the runtime's tensor files (tensorfile.h).  Round trips
 * through the writers for GGUF, safetensors and a sharded set; the half
 * conversions against a plain computation in double over every pattern;
 * and malformed files, each made by patching a good one, that must fail
 * with their own message.  Files go to a mkdtemp directory under $TMPDIR
 * (or /tmp), removed at the end.
 *
 * Suites: half, gguf, safetensors, malformed gguf, malformed safetensors.
 */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cunit_run.h"
#include "tensorfile.h"
#include "testing.h"

static char err[1024];

/* Opens size bytes (copied, so ASan sees any read past them): 0 or -1,
 * the message in err. */
static int open_bytes(const unsigned char *buf, size_t size, const char *name) {
    unsigned char *copy = malloc(size ? size : 1);
    memcpy(copy, buf, size);
    gqr_tensorfile *tf;
    err[0] = 0;
    int rc = gqr_tf_open_memory(&tf, copy, size, name, err, sizeof err);
    CU_ASSERT(rc ? tf == NULL && err[0] : tf != NULL);
    gqr_tf_close(tf);
    free(copy);
    return rc;
}

/* Deterministic values of many magnitudes, signs and a few specials. */
static void fill(float *v, uint64_t n, unsigned seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (uint64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = ldexpf((float)(s >> 8) / 16777216.0f - 0.5f, (int)(s % 40) - 20);
    }
    if (n > 3) {
        v[0] = 0.0f;
        v[1] = -0.0f;
        v[2] = 1.0f;
    }
}

/* ---- half ---- */

/* binary16 with a plain formula: (-1)^s 2^(e-15) 1.m, subnormals 2^-14 0.m. */
static double f16_reference(unsigned h) {
    unsigned e = h >> 10 & 31, m = h & 1023;
    double v = e == 31 ? (m ? NAN : INFINITY) : e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
    return h & 0x8000 ? -v : v;
}

/* bfloat16 likewise: 8 exponent bits, 7 mantissa bits. */
static double bf16_reference(unsigned h) {
    unsigned e = h >> 7 & 255, m = h & 127;
    double v = e == 255 ? (m ? NAN : INFINITY) : e ? ldexp(128 + m, (int)e - 134) : ldexp(m, -133);
    return h & 0x8000 ? -v : v;
}

static int same(double ref, float got) {
    return isnan(ref) ? isnan(got) : ref == (double)got && !signbit(ref) == !signbit(got);
}

static void test_f16_exhaustive(void) {
    int bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        float f = gqr_f16_to_f32((uint16_t)h);
        bad += !same(f16_reference(h), f);
        uint16_t back = gqr_f32_to_f16(f);
        bad += isnan(f) ? (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) || (back ^ h) & 0x8000
                        : back != h;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* Halfway between neighbours rounds to the even one; a float step either
 * side rounds to the nearer. */
static void test_f16_rounding(void) {
    int bad = 0;
    for (unsigned h = 0; h < 0x7c00; h++) {
        for (unsigned sign = 0; sign <= 0x8000; sign += 0x8000) {
            double a = f16_reference(h), b = h == 0x7bff ? 65536.0 : f16_reference(h + 1);
            float mid = (float)((a + b) / 2); /* 12 significant bits: exact */
            unsigned even = h & 1 ? h + 1 : h;
            float lo = nextafterf(mid, 0), hi = nextafterf(mid, INFINITY);
            float s = sign ? -1.0f : 1.0f;
            bad += gqr_f32_to_f16(s * mid) != (sign | even);
            bad += gqr_f32_to_f16(s * lo) != (sign | h);
            bad += gqr_f32_to_f16(s * hi) != (sign | (h + 1));
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(gqr_f32_to_f16(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(gqr_f32_to_f16(65520.0f), 0x7c00);
    CU_ASSERT_EQUAL(gqr_f32_to_f16(1e30f), 0x7c00);
    CU_ASSERT_EQUAL(gqr_f32_to_f16(-INFINITY), 0xfc00);
    CU_ASSERT_EQUAL(gqr_f32_to_f16(ldexpf(1, -25)), 0);        /* a tie: to even, zero */
    CU_ASSERT_EQUAL(gqr_f32_to_f16(ldexpf(1.5f, -25)), 1);     /* past it: the smallest */
    CU_ASSERT_EQUAL(gqr_f32_to_f16(-1e-30f), 0x8000);
    CU_ASSERT_EQUAL(gqr_f32_to_f16(NAN) & 0x7e00, 0x7e00);
}

static void test_bf16(void) {
    int bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        float f = gqr_bf16_to_f32((uint16_t)h);
        bad += !same(bf16_reference(h), f);
        uint16_t back = gqr_f32_to_bf16(f);
        bad += isnan(f) ? !isnan(gqr_bf16_to_f32(back)) || (back ^ h) & 0x8000 : back != h;
    }
    for (unsigned h = 0; h < 0x7f7f; h++) {
        double a = bf16_reference(h), b = bf16_reference(h + 1);
        float mid = (float)((a + b) / 2);
        unsigned even = h & 1 ? h + 1 : h;
        bad += gqr_f32_to_bf16(mid) != even;
        bad += gqr_f32_to_bf16(-mid) != (0x8000 | even);
        bad += gqr_f32_to_bf16(nextafterf(mid, 0)) != h;
        bad += gqr_f32_to_bf16(nextafterf(mid, INFINITY)) != h + 1;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(gqr_f32_to_bf16(3.4028235e38f), 0x7f80); /* the largest float rounds up */
    CU_ASSERT_EQUAL(gqr_f32_to_bf16(INFINITY), 0x7f80);
    CU_ASSERT(isnan(gqr_bf16_to_f32(gqr_f32_to_bf16(NAN))));
}

/* ---- round trips ---- */

typedef struct {
    const char *name;
    int dtype, n_dims;
    uint64_t dims[4];
} Spec;

static const Spec specs[] = {
    {"token_embd.weight", GQR_DT_F32, 2, {7, 5}},
    {"blk.0.attn_q.weight", GQR_DT_F16, 2, {3, 4}},
    {"blk.0.attn_k.weight", GQR_DT_BF16, 3, {2, 3, 4}},
    {"blk.0.ffn_up.weight", GQR_DT_F32, 4, {2, 1, 3, 2}},
    {"output_norm.weight", GQR_DT_F16, 1, {33}},
    {"blk.0.attn_norm.weight", GQR_DT_BF16, 1, {1}},
};
enum { N_SPECS = sizeof specs / sizeof specs[0] };

static uint64_t elems(const Spec *s) {
    uint64_t n = 1;
    for (int i = 0; i < s->n_dims; i++)
        n *= s->dims[i];
    return n;
}

static float stored(int dtype, float v) {
    return dtype == GQR_DT_F32 ? v : dtype == GQR_DT_F16 ? gqr_f16_to_f32(gqr_f32_to_f16(v))
                                                         : gqr_bf16_to_f32(gqr_f32_to_bf16(v));
}

static void add_specs(gqr_tf_writer *w) {
    for (int i = 0; i < N_SPECS; i++) {
        float v[256];
        fill(v, elems(&specs[i]), (unsigned)i);
        CU_ASSERT_EQUAL(gqr_tf_writer_add(w, specs[i].name, specs[i].dtype, specs[i].n_dims,
                                          specs[i].dims, v), 0);
    }
}

/* Every spec's tensor is in tf with its shape and values. */
static void check_specs(const gqr_tensorfile *tf) {
    CU_ASSERT_EQUAL_FATAL(gqr_tf_count(tf), N_SPECS);
    for (int i = 0; i < N_SPECS; i++) {
        const gqr_tensor *t = gqr_tf_find(tf, specs[i].name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_PTR_EQUAL(t, gqr_tf_tensor(tf, i));
        CU_ASSERT_STRING_EQUAL(t->name, specs[i].name);
        CU_ASSERT_EQUAL(t->dtype, specs[i].dtype);
        CU_ASSERT_EQUAL(t->n_dims, specs[i].n_dims);
        for (int d = 0; d < t->n_dims; d++)
            CU_ASSERT_EQUAL(t->dims[d], specs[i].dims[d]);
        uint64_t n = elems(&specs[i]);
        CU_ASSERT_EQUAL(t->n_elems, n);
        CU_ASSERT_EQUAL(t->n_bytes, n * (uint64_t)gqr_tf_dtype_size(t->dtype));
        float want[256], got[256];
        fill(want, n, (unsigned)i);
        gqr_tf_read_f32(t, 0, n, got);
        int bad = 0;
        for (uint64_t k = 0; k < n; k++)
            bad += memcmp(&got[k], &(float){stored(t->dtype, want[k])}, sizeof(float)) != 0;
        CU_ASSERT_EQUAL(bad, 0);
        if (n > 2) { /* from an element other than the first */
            gqr_tf_read_f32(t, n - 2, 2, got);
            CU_ASSERT_EQUAL(got[1], stored(t->dtype, want[n - 1]));
        }
    }
    CU_ASSERT_PTR_NULL(gqr_tf_find(tf, "blk.0.attn_v.weight"));
    CU_ASSERT_PTR_NULL(gqr_tf_find(tf, ""));
    CU_ASSERT_PTR_NULL(gqr_tf_tensor(tf, -1));
    CU_ASSERT_PTR_NULL(gqr_tf_tensor(tf, N_SPECS));
}

static void test_gguf_round_trip(void) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_GGUF);
    add_specs(w);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string(w, "general.architecture", "llama"), 0);
    const char *path = test_tmp("rt.gguf");
    CU_ASSERT_EQUAL_FATAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, path, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tf_format(tf), GQR_TF_GGUF);
    check_specs(tf);
    gqr_tf_close(tf);
    /* The same bytes from memory, each tensor's data at a multiple of 32. */
    size_t size;
    unsigned char *buf = (unsigned char *)test_slurp(path, &size);
    CU_ASSERT_EQUAL(gqr_tf_open_memory(&tf, buf, size, "rt.gguf", err, sizeof err), 0);
    check_specs(tf);
    for (int i = 0; i < gqr_tf_count(tf); i++)
        CU_ASSERT_EQUAL((gqr_tf_tensor(tf, i)->data - buf) % 32, 0);
    CU_ASSERT_EQUAL(size % 32, 0);
    gqr_tf_close(tf);
    free(buf);
}

static void test_gguf_alignment(void) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_GGUF);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, "general.alignment", 48), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, "general.alignment", 256), 0);
    add_specs(w);
    const char *path = test_tmp("align.gguf");
    CU_ASSERT_EQUAL_FATAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);
    size_t size;
    unsigned char *buf = (unsigned char *)test_slurp(path, &size);
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open_memory(&tf, buf, size, "align.gguf", err, sizeof err), 0);
    check_specs(tf);
    for (int i = 0; i < gqr_tf_count(tf); i++)
        CU_ASSERT_EQUAL((gqr_tf_tensor(tf, i)->data - buf) % 256, 0);
    gqr_tf_close(tf);
    free(buf);
}

static void test_gguf_metadata(void) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_GGUF);
    static const int64_t ints[][2] = {
        {GQR_GGUF_UINT8, 255}, {GQR_GGUF_INT8, -128}, {GQR_GGUF_UINT16, 65535},
        {GQR_GGUF_INT16, -32768}, {GQR_GGUF_UINT32, 4294967295}, {GQR_GGUF_INT32, -2147483647 - 1},
        {GQR_GGUF_UINT64, INT64_MAX}, {GQR_GGUF_INT64, INT64_MIN}, {GQR_GGUF_BOOL, 1}};
    char key[32];
    for (int i = 0; i < 9; i++) {
        snprintf(key, sizeof key, "int.%d", i);
        CU_ASSERT_EQUAL(gqr_tf_writer_set_int(w, key, (int)ints[i][0], ints[i][1]), 0);
    }
    CU_ASSERT_EQUAL(gqr_tf_writer_set_f32(w, "f32", 1e-5f), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_f64(w, "f64", 500000.25), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_bool(w, "no", 0), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, "llama.block_count", 22), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string(w, "general.name", "tiny"), 0);
    const char *tokens[] = {"<s>", "a\0b", "", "\xe2\x96\x81the"};
    const size_t lens[] = {3, 3, 0, 6};
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string_array(w, "tokenizer.ggml.tokens", 4, tokens, lens), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string_array(w, "plain", 2, tokens, NULL), 0);
    const float scores[] = {0.0f, -1.5f, 3.25f};
    const int32_t types[] = {3, 1, -7};
    CU_ASSERT_EQUAL(gqr_tf_writer_set_f32_array(w, "tokenizer.ggml.scores", 3, scores), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_i32_array(w, "tokenizer.ggml.token_type", 3, types), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_i32_array(w, "empty", 0, NULL), 0);
    /* Refusals leave the writer as it was. */
    CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, "general.name", 1), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_int(w, "x", GQR_GGUF_UINT8, 256), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_int(w, "x", GQR_GGUF_INT8, -129), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_int(w, "x", GQR_GGUF_FLOAT32, 1), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_int(w, "general.alignment", GQR_GGUF_UINT64, 64), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_meta(w, "format", "pt"), -1);
    const char *path = test_tmp("meta.gguf");
    CU_ASSERT_EQUAL_FATAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);

    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, path, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tf_count(tf), 0);
    CU_ASSERT_EQUAL(gqr_gguf_count(tf), 19);
    const char *k;
    CU_ASSERT_PTR_NOT_NULL(gqr_gguf_at(tf, 9, &k));
    CU_ASSERT_STRING_EQUAL(k, "f32");
    CU_ASSERT_PTR_NULL(gqr_gguf_at(tf, 19, &k));
    int64_t iv;
    double dv;
    for (int i = 0; i < 9; i++) {
        snprintf(key, sizeof key, "int.%d", i);
        const gqr_gguf_value *v = gqr_gguf_get(tf, key);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        CU_ASSERT_EQUAL(gqr_gguf_type(v), ints[i][0]);
        CU_ASSERT(gqr_gguf_int(v, &iv) == 0 && iv == ints[i][1]);
        CU_ASSERT(gqr_gguf_float(v, &dv) == 0 && dv == (double)ints[i][1]);
        CU_ASSERT_PTR_NULL(gqr_gguf_string(v, NULL));
    }
    const gqr_gguf_value *v = gqr_gguf_get(tf, "f32");
    CU_ASSERT(gqr_gguf_float(v, &dv) == 0 && dv == (double)1e-5f);
    CU_ASSERT_EQUAL(gqr_gguf_int(v, &iv), -1);
    CU_ASSERT(gqr_gguf_float(gqr_gguf_get(tf, "f64"), &dv) == 0 && dv == 500000.25);
    CU_ASSERT(gqr_gguf_int(gqr_gguf_get(tf, "no"), &iv) == 0 && iv == 0);
    CU_ASSERT(gqr_gguf_int(gqr_gguf_get(tf, "llama.block_count"), &iv) == 0 && iv == 22);
    size_t len;
    v = gqr_gguf_get(tf, "general.name");
    CU_ASSERT_STRING_EQUAL(gqr_gguf_string(v, &len), "tiny");
    CU_ASSERT_EQUAL(len, 4);
    CU_ASSERT_EQUAL(gqr_gguf_int(v, &iv), -1);
    CU_ASSERT_EQUAL(gqr_gguf_array_len(v), 0);

    v = gqr_gguf_get(tf, "tokenizer.ggml.tokens");
    CU_ASSERT_EQUAL(gqr_gguf_type(v), GQR_GGUF_ARRAY);
    CU_ASSERT_EQUAL(gqr_gguf_array_type(v), GQR_GGUF_STRING);
    CU_ASSERT_EQUAL_FATAL(gqr_gguf_array_len(v), 4);
    for (int i = 0; i < 4; i++) {
        const char *s = gqr_gguf_array_string(v, (uint64_t)i, &len);
        CU_ASSERT(len == lens[i] && !memcmp(s, tokens[i], len) && s[len] == 0);
    }
    CU_ASSERT_PTR_NULL(gqr_gguf_array_string(v, 4, &len));
    CU_ASSERT_EQUAL(gqr_gguf_array_float(v, 0, &dv), -1);
    CU_ASSERT_PTR_NULL(gqr_gguf_string(v, &len));
    CU_ASSERT_STRING_EQUAL(gqr_gguf_array_string(gqr_gguf_get(tf, "plain"), 1, NULL), "a");

    v = gqr_gguf_get(tf, "tokenizer.ggml.scores");
    CU_ASSERT_EQUAL(gqr_gguf_array_type(v), GQR_GGUF_FLOAT32);
    for (int i = 0; i < 3; i++)
        CU_ASSERT(gqr_gguf_array_float(v, (uint64_t)i, &dv) == 0 && dv == scores[i]);
    CU_ASSERT_EQUAL(gqr_gguf_array_float(v, 3, &dv), -1);
    CU_ASSERT_EQUAL(gqr_gguf_array_int(v, 0, &iv), -1);
    CU_ASSERT_PTR_NULL(gqr_gguf_array_string(v, 0, &len));
    v = gqr_gguf_get(tf, "tokenizer.ggml.token_type");
    CU_ASSERT_EQUAL(gqr_gguf_array_type(v), GQR_GGUF_INT32);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT(gqr_gguf_array_int(v, (uint64_t)i, &iv) == 0 && iv == types[i]);
        CU_ASSERT(gqr_gguf_array_float(v, (uint64_t)i, &dv) == 0 && dv == types[i]);
    }
    CU_ASSERT_EQUAL(gqr_gguf_array_len(gqr_gguf_get(tf, "empty")), 0);
    CU_ASSERT_PTR_NULL(gqr_gguf_get(tf, "x"));
    CU_ASSERT_PTR_NULL(gqr_gguf_get(tf, "general.alignment"));
    gqr_tf_close(tf);
}

static void test_writer_refusals(void) {
    gqr_tf_writer *g = gqr_tf_writer_new(GQR_TF_GGUF), *s = gqr_tf_writer_new(GQR_TF_SAFETENSORS);
    CU_ASSERT_PTR_NULL(gqr_tf_writer_new(7));
    float v[4] = {1, 2, 3, 4};
    uint64_t dims[2] = {2, 2}, zero[2] = {0, 2};
    CU_ASSERT_EQUAL(gqr_tf_writer_add(g, "a", GQR_DT_F32, 2, dims, v), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_add(g, "a", GQR_DT_F32, 2, dims, v), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_add(g, "b", 3, 2, dims, v), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_add(g, "b", GQR_DT_F32, 5, dims, v), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_add(g, "b", GQR_DT_F32, 0, dims, v), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_add(g, "b", GQR_DT_F32, 2, zero, v), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_add(s, "b", GQR_DT_F32, 2, zero, NULL), 0); /* empty: fine */
    CU_ASSERT_EQUAL(gqr_tf_writer_add(s, "c", GQR_DT_F32, 0, NULL, v), 0);    /* a scalar */
    CU_ASSERT_EQUAL(gqr_tf_writer_add(s, "__metadata__", GQR_DT_F32, 1, dims, v), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string(s, "general.name", "x"), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_meta(s, "format", "pt"), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_meta(s, "format", "np"), -1);
    CU_ASSERT_EQUAL(gqr_tf_writer_write_sharded(g, test_tmp("g.json"), 100, err, sizeof err), -1);
    TEST_HAS(err, "only safetensors");
    CU_ASSERT_EQUAL(gqr_tf_writer_write(s, test_tmp("no/such/dir/x.safetensors"), err, sizeof err),
                    -1);
    TEST_HAS(err, "no/such/dir/x.safetensors");
    /* GGUF readers refuse names of 64 bytes or more. */
    char long_name[80];
    memset(long_name, 'n', 64);
    long_name[64] = 0;
    CU_ASSERT_EQUAL(gqr_tf_writer_add(g, long_name, GQR_DT_F32, 2, dims, v), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_write(g, test_tmp("long.gguf"), err, sizeof err), -1);
    TEST_HAS(err, "at most 63");
    gqr_tf_writer_free(g);
    gqr_tf_writer_free(s);
    gqr_tf_writer_free(NULL);
}

static void test_st_round_trip(void) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_SAFETENSORS);
    add_specs(w);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_meta(w, "format", "pt"), 0);
    const char *path = test_tmp("rt.safetensors");
    CU_ASSERT_EQUAL_FATAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, path, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tf_format(tf), GQR_TF_SAFETENSORS);
    check_specs(tf);
    CU_ASSERT_STRING_EQUAL(gqr_st_meta(tf, "format"), "pt");
    CU_ASSERT_PTR_NULL(gqr_st_meta(tf, "other"));
    CU_ASSERT_PTR_NULL(gqr_gguf_get(tf, "format"));
    CU_ASSERT_EQUAL(gqr_gguf_count(tf), 0);
    gqr_tf_close(tf);
    /* The header is padded with spaces to a multiple of 8. */
    size_t size;
    unsigned char *buf = (unsigned char *)test_slurp(path, &size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | buf[i];
    CU_ASSERT_EQUAL(n % 8, 0);
    CU_ASSERT_EQUAL(buf[8], '{');
    CU_ASSERT(buf[8 + n - 1] == '}' || buf[8 + n - 1] == ' ');
    free(buf);
}

static void test_st_scalar_and_empty(void) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_SAFETENSORS);
    float v = 2.5f;
    uint64_t zero[2] = {3, 0};
    CU_ASSERT_EQUAL(gqr_tf_writer_add(w, "scale", GQR_DT_BF16, 0, NULL, &v), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_add(w, "empty", GQR_DT_F32, 2, zero, NULL), 0);
    const char *path = test_tmp("scalar.safetensors");
    CU_ASSERT_EQUAL_FATAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, path, err, sizeof err), 0);
    const gqr_tensor *t = gqr_tf_find(tf, "scale");
    CU_ASSERT(t && t->n_dims == 0 && t->n_elems == 1 && t->n_bytes == 2);
    float got = 0;
    gqr_tf_read_f32(t, 0, 1, &got);
    CU_ASSERT_EQUAL(got, 2.5f);
    t = gqr_tf_find(tf, "empty");
    CU_ASSERT(t && t->n_dims == 2 && t->n_elems == 0 && t->n_bytes == 0);
    gqr_tf_close(tf);
}

static void test_st_sharded(void) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_SAFETENSORS);
    add_specs(w); /* 140, 24, 48, 48, 66, 2 bytes: shards of at most 160 make 3 */
    CU_ASSERT_EQUAL(gqr_tf_writer_set_meta(w, "format", "pt"), 0);
    const char *index = test_tmp("model.safetensors.index.json");
    CU_ASSERT_EQUAL_FATAL(gqr_tf_writer_write_sharded(w, index, 160, err, sizeof err), 0);
    gqr_tf_writer_free(w);
    static const int per_shard[3] = {1, 3, 2};
    for (int s = 0; s < 3; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-00003.safetensors", s + 1);
        gqr_tensorfile *tf;
        CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, test_tmp(name), err, sizeof err), 0);
        CU_ASSERT_EQUAL(gqr_tf_count(tf), per_shard[s]);
        CU_ASSERT_STRING_EQUAL(gqr_st_meta(tf, "format"), "pt");
        gqr_tf_close(tf);
    }
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, index, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tf_format(tf), GQR_TF_SAFETENSORS);
    check_specs(tf);
    CU_ASSERT_STRING_EQUAL(gqr_st_meta(tf, "format"), "pt");
    gqr_tf_close(tf);
    /* One big tensor per shard when the limit is smaller than any. */
    w = gqr_tf_writer_new(GQR_TF_SAFETENSORS);
    add_specs(w);
    CU_ASSERT_EQUAL_FATAL(gqr_tf_writer_write_sharded(w, test_tmp("each.index.json"), 1, err,
                                                      sizeof err), 0);
    gqr_tf_writer_free(w);
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, test_tmp("each.index.json"), err, sizeof err), 0);
    check_specs(tf);
    gqr_tf_close(tf);
    CU_ASSERT_EQUAL(access(test_tmp("model-00006-of-00006.safetensors"), F_OK), 0);
}

static void test_open_errors(void) {
    gqr_tensorfile *tf = (gqr_tensorfile *)1;
    CU_ASSERT_EQUAL(gqr_tf_open(&tf, test_tmp("absent.gguf"), err, sizeof err), -1);
    CU_ASSERT_PTR_NULL(tf);
    TEST_HAS(err, "absent.gguf: No such file");
    CU_ASSERT_EQUAL(gqr_tf_open(&tf, test_dir(), err, sizeof err), -1);
    TEST_HAS(err, "not a regular file");
    test_write_tmp("empty.safetensors", "", 0);
    CU_ASSERT_EQUAL(gqr_tf_open(&tf, test_tmp("empty.safetensors"), err, sizeof err), -1);
    TEST_HAS(err, "empty.safetensors: 0 bytes are too few");
    test_write_tmp("empty.gguf", "", 0);
    CU_ASSERT_EQUAL(gqr_tf_open(&tf, test_tmp("empty.gguf"), err, sizeof err), -1);
    TEST_HAS(err, "not a GGUF file");
    gqr_tf_close(NULL);
}

/* Each format by its magic or its name; a file that is none of them is
 * refused with its first bytes (it used to be read as safetensors). */
static void test_probe(void) {
    const unsigned char gguf[] = "GGUF\3\0\0\0", st[] = "\2\0\0\0\0\0\0\0{}";
    const unsigned char junk[] = "GGUX\3\0\0\0\0\0\0\0";
    CU_ASSERT_EQUAL(gqr_tf_probe(gguf, 8, "w.bin"), GQR_TF_GGUF);
    CU_ASSERT_EQUAL(gqr_tf_probe(junk, 12, "w.gguf"), GQR_TF_GGUF);
    CU_ASSERT_EQUAL(gqr_tf_probe(st, 10, "w.bin"), GQR_TF_SAFETENSORS);
    CU_ASSERT_EQUAL(gqr_tf_probe(junk, 12, "w.safetensors"), GQR_TF_SAFETENSORS);
    CU_ASSERT_EQUAL(gqr_tf_probe((const unsigned char *)"{\"weight_map\":{}}", 17, "i"),
                    GQR_TF_SAFETENSORS);
    CU_ASSERT_EQUAL(gqr_tf_probe(junk, 12, "w.bin"), 0);
    CU_ASSERT_EQUAL(gqr_tf_probe(junk, 0, "w.bin"), 0);
    CU_ASSERT_EQUAL(open_bytes(junk, 12, "w.bin"), -1);
    CU_ASSERT_STRING_EQUAL(err, "w.bin: not a GGUF or safetensors file: its first bytes are "
                                "47 47 55 58 03 00 00 00 (\"GGUX....\")");
    CU_ASSERT_EQUAL(open_bytes(junk, 0, "w.bin"), -1);
    CU_ASSERT_STRING_EQUAL(err, "w.bin: not a GGUF or safetensors file: it is empty");
    test_write_tmp("junk.bin", junk, 12);
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL(gqr_tf_open(&tf, test_tmp("junk.bin"), err, sizeof err), -1);
    TEST_HAS(err, "junk.bin: not a GGUF or safetensors file: its first bytes are 47 47 55 58");
}

/* ---- malformed GGUF, each a patch of one good file ---- */

/* Tensors of 32-byte multiples, so the data ends the file with no padding:
 * every shorter prefix cuts something. */
static unsigned char *good_gguf(size_t *size) {
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_GGUF);
    float v[64];
    fill(v, 64, 3);
    uint64_t d1[2] = {4, 8}, d2[1] = {16}, d3[2] = {2, 16};
    const char *toks[] = {"a", "bc"};
    CU_ASSERT(!gqr_tf_writer_set_string(w, "general.architecture", "llama") &&
              !gqr_tf_writer_set_u32(w, "general.alignment", 32) &&
              !gqr_tf_writer_set_string_array(w, "k.arr", 2, toks, NULL) &&
              !gqr_tf_writer_set_f32(w, "k.f32", 0.5f) &&
              !gqr_tf_writer_add(w, "t.f32", GQR_DT_F32, 2, d1, v) &&
              !gqr_tf_writer_add(w, "t.f16", GQR_DT_F16, 1, d2, v) &&
              !gqr_tf_writer_add(w, "t.b16", GQR_DT_BF16, 2, d3, v));
    const char *path = test_tmp("good.gguf");
    CU_ASSERT_EQUAL_FATAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);
    unsigned char *buf = (unsigned char *)test_slurp(path, size);
    CU_ASSERT_EQUAL_FATAL(open_bytes(buf, *size, "good.gguf"), 0);
    return buf;
}

/* The offset just past the first gguf_string holding s. */
static size_t after_string(const unsigned char *buf, size_t size, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i + 8 + n <= size; i++)
        if (buf[i] == n && !memcmp(buf + i + 1, "\0\0\0\0\0\0\0", 7) && !memcmp(buf + i + 8, s, n))
            return i + 8 + n;
    CU_FAIL_FATAL("string not in the file");
    return 0;
}

/* Patches a copy of the good file with f, opens it, and checks the message. */
typedef void (*patch_fn)(unsigned char *buf, size_t size);

static void expect_gguf(patch_fn f, const char *message) {
    size_t size;
    unsigned char *buf = good_gguf(&size);
    f(buf, size);
    CU_ASSERT_EQUAL(open_bytes(buf, size, "bad.gguf"), -1);
    TEST_HAS(err, "bad.gguf: ");
    TEST_HAS(err, message);
    free(buf);
}

/* Where tensor name's info starts after its name: n_dims, ne[], type, offset. */
static size_t info(const unsigned char *buf, size_t size, const char *name) {
    return after_string(buf, size, name);
}

static size_t info_type(const unsigned char *buf, size_t size, const char *name) {
    size_t at = info(buf, size, name);
    return at + 4 + 8 * buf[at];
}

static void p_magic(unsigned char *b, size_t n) { (void)n; b[3] = 'X'; }
static void p_v1(unsigned char *b, size_t n) { (void)n; test_put_le32(b + 4, 1); }
static void p_v4(unsigned char *b, size_t n) { (void)n; test_put_le32(b + 4, 4); }
static void p_big(unsigned char *b, size_t n) { (void)n; test_put_le32(b + 4, 0x03000000); }
static void p_tensor_count(unsigned char *b, size_t n) { (void)n; test_put_le64(b + 8, 1ull << 60); }
static void p_kv_count(unsigned char *b, size_t n) { (void)n; test_put_le64(b + 16, 1ull << 60); }
static void p_key_len(unsigned char *b, size_t n) { (void)n; test_put_le64(b + 24, 1000000); }
static void p_str_len(unsigned char *b, size_t n) {
    test_put_le64(b + after_string(b, n, "general.architecture") + 4, 1ull << 62);
}
static void p_array_count(unsigned char *b, size_t n) {
    test_put_le64(b + after_string(b, n, "k.arr") + 8, 1ull << 61);
}
static void p_value_type(unsigned char *b, size_t n) {
    test_put_le32(b + after_string(b, n, "k.f32"), 13);
}
static void p_nested(unsigned char *b, size_t n) {
    test_put_le32(b + after_string(b, n, "k.arr") + 4, 9);
}
static void p_alignment(unsigned char *b, size_t n) {
    test_put_le32(b + after_string(b, n, "general.alignment") + 4, 48);
}
static void p_alignment_zero(unsigned char *b, size_t n) {
    test_put_le32(b + after_string(b, n, "general.alignment") + 4, 0);
}
static void p_alignment_type(unsigned char *b, size_t n) {
    test_put_le32(b + after_string(b, n, "general.alignment"), 5);
}
static void p_misaligned(unsigned char *b, size_t n) {
    size_t at = info_type(b, n, "t.f16") + 4;
    test_put_le64(b + at, b[at] + 4u);
}
static void p_out_of_file(unsigned char *b, size_t n) {
    test_put_le64(b + info_type(b, n, "t.b16") + 4, 1 << 20);
}
static void p_huge_offset(unsigned char *b, size_t n) {
    test_put_le64(b + info_type(b, n, "t.b16") + 4, UINT64_MAX - 31);
}
static void p_overlap(unsigned char *b, size_t n) {
    test_put_le64(b + info_type(b, n, "t.f16") + 4, 96); /* inside t.f32's [0, 128) */
}
static void p_dup_name(unsigned char *b, size_t n) {
    memcpy(b + info(b, n, "t.b16") - 5, "t.f32", 5);
}
static void p_dup_key(unsigned char *b, size_t n) {
    memcpy(b + after_string(b, n, "k.f32") - 5, "k.arr", 5);
}
static void p_q4_0(unsigned char *b, size_t n) {
    test_put_le32(b + info_type(b, n, "t.f16"), 2);
}
static void p_q4_1(unsigned char *b, size_t n) {
    test_put_le32(b + info_type(b, n, "t.f16"), 3);
}
static void p_type_99(unsigned char *b, size_t n) {
    test_put_le32(b + info_type(b, n, "t.f16"), 99);
}
static void p_n_dims(unsigned char *b, size_t n) {
    test_put_le32(b + info(b, n, "t.f16"), 5);
}
static void p_zero_dim(unsigned char *b, size_t n) {
    test_put_le64(b + info(b, n, "t.f16") + 4, 0);
}
static void p_elem_overflow(unsigned char *b, size_t n) {
    size_t at = info(b, n, "t.f32");
    test_put_le64(b + at + 4, 1ull << 40);
    test_put_le64(b + at + 12, 1ull << 40);
}

static void test_gguf_malformed(void) {
    expect_gguf(p_magic, "not a GGUF file: it starts with 47 47 55 58");
    expect_gguf(p_v1, "GGUF version 1 is not supported");
    expect_gguf(p_v4, "GGUF version 4 is not supported");
    expect_gguf(p_big, "big-endian");
    expect_gguf(p_tensor_count, "tensor count 1152921504606846976 is more than");
    expect_gguf(p_kv_count, "metadata count 1152921504606846976 is more than");
    expect_gguf(p_key_len, "truncated in the key of metadata pair 0: 1000000 bytes needed");
    expect_gguf(p_str_len, "truncated in metadata 'general.architecture'");
    expect_gguf(p_array_count, "an array of 2305843009213693952 strings needs");
    expect_gguf(p_value_type, "metadata 'k.f32' has unknown value type 13");
    expect_gguf(p_nested, "metadata 'k.arr' is an array of arrays");
    expect_gguf(p_alignment, "general.alignment is 48; expected a nonzero power of two");
    expect_gguf(p_alignment_zero, "general.alignment is 0");
    expect_gguf(p_alignment_type, "general.alignment is a int32; expected a uint32");
    expect_gguf(p_misaligned, "tensor 't.f16' offset 132 is not a multiple of the alignment 32");
    expect_gguf(p_out_of_file, "tensor 't.b16' data [");
    expect_gguf(p_out_of_file, "runs past the end of the file");
    expect_gguf(p_huge_offset, "runs past the end of the file");
    expect_gguf(p_overlap, "tensors 't.f32' [");
    expect_gguf(p_overlap, "and 't.f16' [");
    expect_gguf(p_dup_name, "duplicate tensor name 't.f32'");
    expect_gguf(p_dup_key, "duplicate metadata key 'k.arr'");
    expect_gguf(p_q4_1, "tensor 't.f16' has type Q4_1 (3); supported: F32, F16, BF16, Q4_0");
    expect_gguf(p_q4_0, "tensor 't.f16' has rows of 16 elements: 16 elements are not whole "
                        "Q4_0 blocks of 32");
    expect_gguf(p_type_99, "has type unknown (99)");
    expect_gguf(p_n_dims, "tensor 't.f16' has 5 dims; expected 1 to 4");
    expect_gguf(p_zero_dim, "tensor 't.f16' has a dim of size 0");
    expect_gguf(p_elem_overflow, "tensor 't.f32' has too many elements");
}

static void test_gguf_prefixes(void) {
    size_t size;
    unsigned char *buf = good_gguf(&size);
    int ok = 0;
    for (size_t n = 0; n < size; n++)
        ok += open_bytes(buf, n, "cut.gguf") == 0 || !strstr(err, "cut.gguf: ");
    CU_ASSERT_EQUAL(ok, 0);
    free(buf);
}

/* ---- malformed safetensors ---- */

/* A file of the header json (padded to 8) and data_len zero bytes. */
static unsigned char *st_file(const char *json, size_t data_len, size_t *size) {
    size_t n = strlen(json), h = (n + 7) / 8 * 8;
    *size = 8 + h + data_len;
    unsigned char *buf = calloc(1, *size);
    test_put_le64(buf, h);
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, ' ', h - n);
    return buf;
}

static void expect_st(const char *json, size_t data_len, const char *message) {
    size_t size;
    unsigned char *buf = st_file(json, data_len, &size);
    CU_ASSERT_EQUAL(open_bytes(buf, size, "bad.safetensors"), -1);
    TEST_HAS(err, "bad.safetensors: ");
    TEST_HAS(err, message);
    free(buf);
}

static void test_st_malformed(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    size_t size;
    unsigned char *buf = st_file(ok, 24, &size);
    CU_ASSERT_EQUAL(open_bytes(buf, size, "good.safetensors"), 0);
    int bad = 0;
    for (size_t n = 0; n < size; n++)
        bad += open_bytes(buf, n, "cut.safetensors") == 0 || !strstr(err, "cut.safetensors: ");
    CU_ASSERT_EQUAL(bad, 0);
    test_put_le64(buf, size);
    CU_ASSERT_EQUAL(open_bytes(buf, size, "bad.safetensors"), -1);
    char want[128];
    snprintf(want, sizeof want, "the header length %zu runs past the end of the file (%zu bytes)",
             size, size);
    TEST_HAS(err, want);
    free(buf);
    /* Over the 100 MB limit, though within the file. */
    size = 100000016;
    buf = calloc(1, size);
    test_put_le64(buf, 100000008);
    CU_ASSERT_EQUAL(open_bytes(buf, size, "big.safetensors"), -1);
    TEST_HAS(err, "is over the limit of 100000000 bytes");
    free(buf);

    /* An empty tensor where another starts overlaps nothing, in either order. */
    const char *empties[] = {
        "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}"};
    for (int i = 0; i < 2; i++) {
        buf = st_file(empties[i], 8, &size);
        CU_ASSERT_EQUAL(open_bytes(buf, size, "empty.safetensors"), 0);
        free(buf);
    }

    expect_st("{not json", 0, "the header (16 bytes) is not JSON: error at its byte");
    expect_st("{} x", 0, "is not JSON: error at its byte 3");
    expect_st("[1, 2]", 0, "the header is JSON but not an object");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
              "tensor 'a' data_offsets [0, 20) hold 20 bytes; its shape [2, 3] of F32 needs 24");
    expect_st("{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16,
              "tensor 'a': dtype I64 is not supported");
    expect_st("{\"a\":{\"shape\":[2],\"data_offsets\":[0,16]}}", 16, "has no \"dtype\" string");
    expect_st("{\"a\":{\"dtype\":\"F16\",\"data_offsets\":[0,16]}}", 16, "has no \"shape\" array");
    expect_st("{\"a\":{\"dtype\":\"F16\",\"shape\":[2,-1],\"data_offsets\":[0,16]}}", 16,
              "tensor 'a' shape entry 1 is not a non-negative integer");
    expect_st("{\"a\":{\"dtype\":\"F16\",\"shape\":[2.5],\"data_offsets\":[0,16]}}", 16,
              "shape entry 0 is not a non-negative integer");
    expect_st("{\"a\":{\"dtype\":\"F16\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,2]}}", 2,
              "tensor 'a' has 5 dims; at most 4");
    expect_st("{\"a\":{\"dtype\":\"F16\",\"shape\":[1e15,1e15],\"data_offsets\":[0,2]}}", 2,
              "has too many elements");
    expect_st("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,0]}}", 16,
              "has no \"data_offsets\" [begin, end]");
    expect_st("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0]}}", 16,
              "has no \"data_offsets\"");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]}}", 24,
              "tensor 'a' data_offsets [8, 32) run past the end of the data (24 bytes)");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
              "duplicate tensor name 'a'");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
              "tensors 'a' [0, 16) and 'b' [8, 16) overlap");
    expect_st("{\"a\":3}", 0, "'a' is not an object with dtype, shape and data_offsets");
    expect_st("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ entry 'format' is not a string");
    expect_st("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    expect_st("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
}

/* A sharded set of two shards (a, b in s1; c in s2) with index json. */
static void two_shards(void) {
    size_t size;
    unsigned char *buf = st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]}}",
                                 12, &size);
    test_write_tmp("s1.safetensors", buf, size);
    free(buf);
    buf = st_file("{\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, &size);
    test_write_tmp("s2.safetensors", buf, size);
    free(buf);
}

static void expect_index(const char *json, const char *message) {
    const char *path = test_write_tmp("bad.index.json", json, strlen(json));
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL(gqr_tf_open(&tf, path, err, sizeof err), -1);
    TEST_HAS(err, message);
}

static void test_st_index(void) {
    two_shards();
    const char *good = "{\"metadata\":{},\"weight_map\":{\"a\":\"s1.safetensors\","
                       "\"c\":\"s2.safetensors\",\"b\":\"s1.safetensors\"}}";
    test_write_tmp("good.index.json", good, strlen(good));
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, test_tmp("good.index.json"), err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tf_count(tf), 3);
    CU_ASSERT_STRING_EQUAL(gqr_tf_tensor(tf, 2)->name, "c");
    CU_ASSERT_EQUAL(gqr_tf_find(tf, "c")->dtype, GQR_DT_BF16);
    gqr_tf_close(tf);

    expect_index("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s3.safetensors\"}}", "cannot open shard 's3.safetensors'");
    expect_index("{\"weight_map\":{\"a\":\"../s1.safetensors\"}}",
                 "bad.index.json: weight_map entry 'a' names shard '../s1.safetensors'; expected a file name beside the index");
    expect_index("{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "no '/' or '..'");
    expect_index("{\"weight_map\":{\"a\":\"\"}}", "no '/' or '..'");
    expect_index("{\"weight_map\":{\"a\":7}}", "weight_map entry 'a' is not a string");
    expect_index("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s1.safetensors\"}}", "puts 'c' in 's1.safetensors', which has no such");
    expect_index("{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}",
                 "shard 's1.safetensors' holds tensor 'b', which the weight_map does not list");
    expect_index("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s2.safetensors\",\"a\":\"s1.safetensors\"}}",
                 "weight_map lists 'a' twice");
    expect_index("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s2.safetensors\",\"c\":\"s1.safetensors\"}}", "puts 'c' in 's1");
    expect_index("{\"metadata\":{}}", "bad.index.json: no \"weight_map\" object");
    expect_index("{\"weight_map\":", "not JSON: error at byte");
    /* A shard that names the same tensor as another. */
    expect_index("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s2.safetensors\",\"x\":\"s3.safetensors\"}}", "s3.safetensors");
    size_t size;
    unsigned char *buf = st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                                 4, &size);
    test_write_tmp("s3.safetensors", buf, size);
    free(buf);
    expect_index("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s2.safetensors\",\"x\":\"s3.safetensors\"}}",
                 "duplicate tensor name 'a'");
    /* A broken shard's message names the shard. */
    test_write_tmp("s4.safetensors", "12345678", 8);
    expect_index("{\"weight_map\":{\"a\":\"s4.safetensors\"}}", "s4.safetensors: the header length");
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("half", NULL, NULL);
    CU_add_test(s, "f16 exhaustive against ldexp", test_f16_exhaustive);
    CU_add_test(s, "f16 rounding: ties to even", test_f16_rounding);
    CU_add_test(s, "bf16 exhaustive and rounding", test_bf16);
    s = CU_add_suite("gguf", NULL, NULL);
    CU_add_test(s, "round trip", test_gguf_round_trip);
    CU_add_test(s, "alignment 256", test_gguf_alignment);
    CU_add_test(s, "metadata of every type", test_gguf_metadata);
    CU_add_test(s, "writer refusals", test_writer_refusals);
    CU_add_test(s, "open errors", test_open_errors);
    CU_add_test(s, "formats by magic and name", test_probe);
    s = CU_add_suite("safetensors", NULL, NULL);
    CU_add_test(s, "round trip", test_st_round_trip);
    CU_add_test(s, "scalar and empty tensors", test_st_scalar_and_empty);
    CU_add_test(s, "sharded round trip", test_st_sharded);
    CU_add_test(s, "index errors", test_st_index);
    s = CU_add_suite("malformed gguf", NULL, NULL);
    CU_add_test(s, "each class of error", test_gguf_malformed);
    CU_add_test(s, "every prefix fails", test_gguf_prefixes);
    s = CU_add_suite("malformed safetensors", NULL, NULL);
    CU_add_test(s, "each class of error, every prefix", test_st_malformed);
    return cunit_run();
}
