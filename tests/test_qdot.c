/*
 * test_qdot.c: the quantized-weight kernels (templates/qdot.c) against a
 * reference in double precision.
 *
 *   - dot_*: weights dequantized by runtime/quant.c's gqr_q_dequantize_row,
 *     activations as d * q from their gq_x8 / gq_x8k blocks, summed in
 *     double: |kernel - ref| <= 1e-5 * mag + 1e-30, mag = sum |x| (|w| +
 *     2 |min|) (min: Q4_K's dmin * m of the element's sub-block, 0 for the
 *     other types; the kernel's float sums round against d*sc*q and dmin*m
 *     apart, which can cancel).  Weights from quant.c's reference quantizer
 *     on random rows, random bytes (any pattern but a non-finite scale),
 *     and the edges: scales 0, -0 and subnormal; nibbles 0 and 15; 6-bit
 *     scales and mins 0 and 63; Q8_0's q = -128 and Q6_K's scale -128;
 *     all-zero activations; full-range activations; rows of 1 block, odd
 *     block counts, 4096+ elements, Q8_0 and Q4_0 rows of whole groups of
 *     16 blocks (the 512-bit step); weights at odd byte offsets.
 *   - tile_*: equal to dot_* per (row, token), within the same bound (to
 *     the bit but for the AVX-512 tiles and the 512-bit decode path), for
 *     nr, nt in {1, 3, 5, 17,
 *     40} (40 > the tile's group of 32 tokens), rows at odd addresses and
 *     strides wider than the data; and 70 rows by 70 tokens of 4128+
 *     elements, past the AVX-512 tile's pass of 32 rows, 512 elements
 *     and 64 tokens.
 *   - quantize_x8 / x8k against a plain implementation (roundf), exactly,
 *     and values just under a half step.
 *   - row_to_floats bit for bit against gqr_q_dequantize_row.
 *
 * Built twice by the Makefile: test_qdot with -march=native (AVX2 or
 * AVX-512 VNNI here) and test_qdot_portable with GQ_QDOT_PORTABLE=1; and
 * by tests/cross.sh with QDOT_NO_CUNIT for other CPUs under qemu.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "tensorfile.h"

#include "../templates/qdot.c"

#ifdef QDOT_NO_CUNIT
static long n_checks, n_failed;
#define CHECK(c)                                                         \
    do {                                                                 \
        n_checks++;                                                      \
        if (!(c) && n_failed++ < 20)                                     \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
    } while (0)
#else
#include "cunit_run.h"
#define CHECK(c) CU_ASSERT(c)
#endif

#define TOL 1e-5

/* The path under test, for the log. */
#if GQ_QD_VNNI
#define PATH "qdot: AVX-512 VNNI"
#elif GQ_QD_AVX2
#define PATH "qdot: AVX2"
#elif GQ_QD_DOTPROD
#define PATH "qdot: NEON dot product"
#else
#define PATH "qdot: portable C"
#endif

/* ---- random numbers (xorshift64*) ---- */

static uint64_t rng = 0x243f6a8885a308d3u;

static uint32_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1du) >> 32);
}

static float urand(void) { /* [-1, 1) */
    return (float)rnd() / 2147483648.0f - 1.0f;
}

/* ---- weights ---- */

static const int BLOCK[] = {1, 1, 1, 32, 32, 256, 256};
static const int BYTES[] = {4, 2, 2, 18, 34, 144, 210};

static size_t row_bytes(int type, int n) {
    return (size_t)(n / BLOCK[type]) * (size_t)BYTES[type];
}

/* The kinds of row the tests make. */
enum { ROW_QUANTIZED, ROW_BYTES, ROW_EDGE };

static void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
}

/* A finite f16: random sign, exponent and mantissa, sometimes subnormal or
 * zero (either sign). */
static unsigned random_f16(void) {
    unsigned r = rnd();
    switch (r % 8) {
    case 0: return r & 0x8000;                 /* 0, -0 */
    case 1: return (r & 0x8000) | (r >> 8 & 0x3ff); /* subnormal */
    default: return (r & 0x8000) | ((r >> 4) % 30 + 1) << 10 | (r >> 16 & 0x3ff);
    }
}

/* The scales' byte offsets in a block of type (f16), for ROW_BYTES. */
static void fix_scales(int type, unsigned char *b) {
    if (type == GQ_DT_Q6_K)
        put16(b + 208, random_f16());
    else
        put16(b, random_f16());
    if (type == GQ_DT_Q4_K)
        put16(b + 2, random_f16());
}

/* Edge block e of type: every byte of its quants the same pattern, the
 * scales picked from 0, -0, subnormal, 1 and -1. */
static void edge_block(int type, unsigned char *b, int e) {
    static const unsigned char fill[] = {0x00, 0xff, 0x0f, 0xf0, 0x80, 0x7f, 0xc3, 0x3c};
    static const unsigned scale[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x3c00, 0xbc00, 0x0200};
    memset(b, fill[e % 8], (size_t)BYTES[type]);
    unsigned d = scale[e / 8 % 7];
    if (type == GQ_DT_Q6_K) {
        put16(b + 208, d);
        return;
    }
    put16(b, d);
    if (type == GQ_DT_Q4_K)
        put16(b + 2, scale[(e / 8 + 3) % 7]);
}

/* A row of n elements of type at w, of kind. */
static void make_row(int type, int kind, int n, unsigned char *w) {
    int nb = n / BLOCK[type];
    if (kind == ROW_QUANTIZED || BLOCK[type] == 1) {
        float *f = malloc(sizeof *f * (size_t)n);
        float scale = (float)(rnd() % 4 == 0 ? 1e-3 : rnd() % 3 == 0 ? 100.0 : 1.0);
        for (int j = 0; j < n; j++)
            f[j] = scale * urand() * (rnd() % 16 == 0 ? 8.0f : 1.0f) + (type == GQ_DT_Q4_K ? 0.3f * scale : 0);
        char err[256];
        int rc = gqr_q_quantize_row(type == GQ_DT_F32 ? GQR_DT_F32 : type, f, (uint64_t)n, w, err,
                                    sizeof err);
        CHECK(rc == 0);
        free(f);
        return;
    }
    for (int b = 0; b < nb; b++) {
        unsigned char *blk = w + (size_t)b * (size_t)BYTES[type];
        if (kind == ROW_BYTES) {
            for (int k = 0; k < BYTES[type]; k++)
                blk[k] = (unsigned char)rnd();
            fix_scales(type, blk);
        } else {
            edge_block(type, blk, (int)(rnd() % 56));
        }
    }
}

/* Q4_K: |dmin * m| per element, so mag can count the sums the kernel
 * rounds apart; 0 for the other types. */
static void mins_of(int type, const unsigned char *w, int n, float *mins) {
    if (type != GQ_DT_Q4_K) {
        memset(mins, 0, sizeof *mins * (size_t)n);
        return;
    }
    size_t bytes = row_bytes(type, n);
    unsigned char *z = malloc(bytes);
    memcpy(z, w, bytes);
    for (int b = 0; b < n / 256; b++)
        memset(z + 144 * (size_t)b + 16, 0, 128); /* q = 0: the element is -dmin * m */
    gqr_q_dequantize_row(type, z, (uint64_t)n, mins);
    for (int j = 0; j < n; j++)
        mins[j] = fabsf(mins[j]);
    free(z);
}

/* ---- activations ---- */

/* n floats of kind k: 0 random, 1 all zero, 2 full range (+-1), 3 tiny. */
static void make_x(float *x, int n, int k) {
    for (int j = 0; j < n; j++)
        x[j] = k == 1 ? 0.0f : k == 2 ? (rnd() & 1 ? 1.0f : -1.0f) : k == 3 ? 1e-20f * urand() : urand();
}

/* The activations a kernel sees, as floats: d * q. */
static void x8_floats(const void *xq, int type, int n, double *out) {
    for (int j = 0; j < n; j++) {
        if (BLOCK[type] == 32) {
            const gq_x8 *x = (const gq_x8 *)xq + j / 32;
            out[j] = (double)x->d * x->q[j % 32];
        } else {
            const gq_x8k *x = (const gq_x8k *)xq + j / 256;
            out[j] = (double)x->d * x->q[j % 256];
        }
    }
}

/* ---- the kernels by type ---- */

static float kernel_dot(int type, const unsigned char *w, const void *x, int n) {
    switch (type) {
    case GQ_DT_Q8_0: return dot_q8_0(w, x, n / 32);
    case GQ_DT_Q4_0: return dot_q4_0(w, x, n / 32);
    case GQ_DT_Q4_K: return dot_q4_k(w, x, n / 256);
    case GQ_DT_Q6_K: return dot_q6_k(w, x, n / 256);
    case GQ_DT_F16: return dot_f16(w, x, n);
    default: return dot_bf16(w, x, n);
    }
}

static void kernel_tile(int type, float *out, size_t ostride, const unsigned char *w, size_t rb, int nr,
                        const void *x, size_t xstride, int n, int nt) {
    switch (type) {
    case GQ_DT_Q8_0: tile_q8_0(out, ostride, w, rb, nr, x, xstride, n / 32, nt); break;
    case GQ_DT_Q4_0: tile_q4_0(out, ostride, w, rb, nr, x, xstride, n / 32, nt); break;
    case GQ_DT_Q4_K: tile_q4_k(out, ostride, w, rb, nr, x, xstride, n / 256, nt); break;
    case GQ_DT_Q6_K: tile_q6_k(out, ostride, w, rb, nr, x, xstride, n / 256, nt); break;
    case GQ_DT_F16: tile_f16(out, ostride, w, rb, nr, x, xstride, n, nt); break;
    default: tile_bf16(out, ostride, w, rb, nr, x, xstride, n, nt); break;
    }
}

/* Activations for type from floats: quantized blocks, or the floats. */
static void *activations(int type, const float *f, int n) {
    if (BLOCK[type] == 32) {
        gq_x8 *x = malloc(sizeof *x * (size_t)(n / 32));
        quantize_x8(x, f, n);
        return x;
    }
    if (BLOCK[type] == 256) {
        gq_x8k *x = malloc(sizeof *x * (size_t)(n / 256));
        quantize_x8k(x, f, n);
        return x;
    }
    float *x = malloc(sizeof *x * (size_t)n);
    memcpy(x, f, sizeof *x * (size_t)n);
    return x;
}

static size_t act_size(int type) {
    return BLOCK[type] == 32 ? sizeof(gq_x8) : BLOCK[type] == 256 ? sizeof(gq_x8k) : sizeof(float);
}

/* The reference: w . x in double, and mag for the bound. */
static double ref_dot(int type, const unsigned char *w, const void *x, int n, double *mag) {
    float *wf = malloc(sizeof *wf * (size_t)n), *mins = malloc(sizeof *mins * (size_t)n);
    double *xd = malloc(sizeof *xd * (size_t)n), ref = 0;
    if (BLOCK[type] > 1)
        x8_floats(x, type, n, xd);
    else
        for (int j = 0; j < n; j++)
            xd[j] = ((const float *)x)[j];
    gqr_q_dequantize_row(type, w, (uint64_t)n, wf);
    mins_of(type, w, n, mins);
    *mag = 0;
    for (int j = 0; j < n; j++) {
        ref += (double)wf[j] * xd[j];
        *mag += fabs(xd[j]) * (fabs((double)wf[j]) + 2.0 * mins[j]);
    }
    free(wf), free(mins), free(xd);
    return ref;
}

static int within(double got, double want, double mag) {
    return fabs(got - want) <= TOL * mag + 1e-30;
}

/* One row of kind against activations of kind xk: dot_* within the bound. */
static void check_dot(int type, int kind, int n, int xk) {
    size_t rb = row_bytes(type, n);
    unsigned char *buf = malloc(rb + 1), *w = buf + 1; /* odd address */
    float *f = malloc(sizeof *f * (size_t)n);
    make_row(type, kind, n, w);
    make_x(f, n, xk);
    void *x = activations(type, f, n);
    double mag, ref = ref_dot(type, w, x, n, &mag), got = kernel_dot(type, w, x, n);
    CHECK(within(got, ref, mag));
    if (!within(got, ref, mag))
        fprintf(stderr, "  type %d kind %d n %d x %d: got %.9g want %.9g (mag %.3g)\n", type, kind, n, xk,
                got, ref, mag);
    free(buf), free(f), free(x);
}

static const int TYPES[] = {GQ_DT_Q8_0, GQ_DT_Q4_0, GQ_DT_Q4_K, GQ_DT_Q6_K, GQ_DT_F16, GQ_DT_BF16};
enum { N_TYPES = sizeof TYPES / sizeof TYPES[0] };

/* Row lengths: one block, odd block counts, 4096+ elements. */
static int length(int type, int i) {
    static const int blocks32[] = {1, 3, 7, 129, 257}, blocks256[] = {1, 3, 5, 17, 33};
    static const int halves[] = {1, 7, 32, 256, 4101};
    return BLOCK[type] == 32 ? 32 * blocks32[i] : BLOCK[type] == 256 ? 256 * blocks256[i] : halves[i];
}

static void test_dot(void) {
    for (int ti = 0; ti < N_TYPES; ti++)
        for (int kind = 0; kind < 3; kind++)
            for (int li = 0; li < 5; li++)
                for (int xk = 0; xk < 4; xk++)
                    for (int rep = 0; rep < (li < 3 ? 8 : 2); rep++)
                        check_dot(TYPES[ti], kind, length(TYPES[ti], li), xk);
}

/* Q8_0 and Q4_0 rows of whole groups of 16 blocks and one short of a
 * group (the 512-bit path's step, and its tail of 15 on the 256-bit one). */
static void test_dot_groups(void) {
    static const int blocks[] = {16, 32, 48, 31, 63};
    for (int ti = 0; ti < 2; ti++)
        for (int kind = 0; kind < 3; kind++)
            for (int li = 0; li < 5; li++)
                for (int xk = 0; xk < 4; xk++)
                    for (int rep = 0; rep < 4; rep++)
                        check_dot(TYPES[ti], kind, 32 * blocks[li], xk);
}

/* Edge blocks one at a time, each pattern and scale pairing: 56 per type. */
static void test_dot_edges(void) {
    for (int ti = 0; ti < 4; ti++) {
        int type = TYPES[ti], n = BLOCK[type];
        for (int e = 0; e < 56; e++)
            for (int xk = 0; xk < 4; xk++) {
                unsigned char w[210];
                float f[256];
                edge_block(type, w, e);
                make_x(f, n, xk);
                void *x = activations(type, f, n);
                double mag, ref = ref_dot(type, w, x, n, &mag);
                CHECK(within(kernel_dot(type, w, x, n), ref, mag));
                free(x);
            }
    }
}

/* tile_* against dot_* per (row, token); rows at odd offsets, strides
 * larger than the data (a row of bytes, a token's blocks, out's column). */
static void check_tile(int type, int n, int nr, int nt) {
    size_t rb = row_bytes(type, n) + 3, as = act_size(type);
    size_t xstride = (size_t)(BLOCK[type] > 1 ? n / BLOCK[type] : n) + 1, ostride = (size_t)nr + 2;
    unsigned char *w = calloc(rb * (size_t)nr + 1, 1); /* padding read by none, but defined */
    char *x = calloc(as * xstride * (size_t)nt, 1);
    float *f = malloc(sizeof *f * (size_t)n), *out = malloc(sizeof *out * ostride * (size_t)nt);
    for (int i = 0; i < nr; i++)
        make_row(type, i % 3, n, w + 1 + (size_t)i * rb);
    for (int t = 0; t < nt; t++) {
        make_x(f, n, t % 5 == 4 ? 1 : 0);
        void *a = activations(type, f, n);
        memcpy(x + (size_t)t * xstride * as, a, as * (xstride - 1));
        free(a);
    }
    kernel_tile(type, out, ostride, w + 1, rb, nr, x, xstride, n, nt);
    for (int i = 0; i < nr; i++)
        for (int t = 0; t < nt; t++) {
            const void *xt = x + (size_t)t * xstride * as;
            double mag, want = kernel_dot(type, w + 1 + (size_t)i * rb, xt, n);
            ref_dot(type, w + 1 + (size_t)i * rb, xt, n, &mag);
            CHECK(within(out[(size_t)t * ostride + (size_t)i], want, mag));
        }
    free(w), free(x), free(f), free(out);
}

static void test_tile(void) {
    static const int sizes[] = {1, 3, 5, 17, 40};
    for (int ti = 0; ti < N_TYPES; ti++)
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++)
                check_tile(TYPES[ti], length(TYPES[ti], 2), sizes[a], sizes[b]);
}

/* Tiles past the AVX-512 path's pass (32 rows, 512 elements, 64 tokens):
 * 70 rows (a third pass of 6) by 70 tokens (a second group of 6) of 4128
 * or 4352 elements (a last pass of 32 or 256), and 33 rows by 2 tokens of
 * 8224 or 8448; halves: 256 elements, and 4101 (passes of 128, then 5). */
static void test_tile_large(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        check_tile(TYPES[ti], length(TYPES[ti], 3), 70, 70);
        check_tile(TYPES[ti], length(TYPES[ti], 4), 33, 2);
    }
}

/* ---- activations: a plain quantizer ---- */

static void plain_quantize(const float *x, int n, float *d, int8_t *q) {
    float amax = 0;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    *d = amax / 127;
    float id = *d != 0 ? 1 / *d : 0;
    for (int j = 0; j < n; j++)
        q[j] = (int8_t)roundf(x[j] * id);
}

/* Values just under a half step, where x * id + 0.5 rounds up in float
 * and truncation then gives one too many: 127 makes d = 1. */
static void test_quantize_halves(void) {
    float f[256] = {127.0f, 0.49999997f, -0.49999997f, 1.4999999f, -2.4999998f, 126.49999f, 0.5f, -0.5f};
    gq_x8 x8[8];
    gq_x8k xk;
    quantize_x8(x8, f, 256);
    quantize_x8k(&xk, f, 256);
    static const int8_t want[8] = {127, 0, 0, 1, -2, 126, 1, -1};
    CHECK(x8[0].d == 1.0f && memcmp(x8[0].q, want, 8) == 0);
    CHECK(xk.d == 1.0f && memcmp(xk.q, want, 8) == 0);
}

static void test_quantize(void) {
    float f[1024];
    for (int rep = 0; rep < 200; rep++) {
        int n = 256 * (1 + rep % 4);
        make_x(f, n, rep % 4);
        if (rep % 7 == 0)
            f[rnd() % (unsigned)n] = 1e30f;
        gq_x8 x8[32];
        gq_x8k xk[4];
        quantize_x8(x8, f, n);
        quantize_x8k(xk, f, n);
        for (int b = 0; b < n / 32; b++) {
            float d;
            int8_t q[32];
            plain_quantize(f + 32 * b, 32, &d, q);
            CHECK(d == x8[b].d && memcmp(q, x8[b].q, 32) == 0);
        }
        for (int b = 0; b < n / 256; b++) {
            float d;
            int8_t q[256];
            plain_quantize(f + 256 * b, 256, &d, q);
            CHECK(d == xk[b].d && memcmp(q, xk[b].q, 256) == 0);
            for (int s = 0; s < 16; s++) {
                int sum = 0;
                for (int l = 0; l < 16; l++)
                    sum += q[16 * s + l];
                CHECK(xk[b].bsum[s] == sum);
            }
        }
    }
}

/* ---- the embedding lookup ---- */

static void test_row_to_floats(void) {
    static const int types[] = {GQ_DT_F32, GQ_DT_F16, GQ_DT_BF16, GQ_DT_Q4_0, GQ_DT_Q8_0, GQ_DT_Q4_K,
                                GQ_DT_Q6_K};
    for (int ti = 0; ti < 7; ti++)
        for (int kind = 0; kind < 3; kind++) {
            int type = types[ti], n = BLOCK[type] == 256 ? 512 : 96;
            unsigned char w[512 * 4 + 1];
            float got[512], want[512];
            make_row(type, kind, n, w + 1);
            if (BLOCK[type] == 1 && kind > 0) /* every bit pattern but NaN */
                for (int j = 0; j < n * BYTES[type]; j++)
                    w[1 + j] = (unsigned char)(j % BYTES[type] == BYTES[type] - 1 ? rnd() & 0xbf : rnd());
            row_to_floats(type, w + 1, n, got);
            gqr_q_dequantize_row(type, w + 1, (uint64_t)n, want);
            int same = 1;
            for (int j = 0; j < n; j++)
                same &= memcmp(&got[j], &want[j], sizeof got[j]) == 0;
            CHECK(same);
        }
}

#ifdef QDOT_NO_CUNIT
int main(void) {
    test_quantize();
    test_quantize_halves();
    test_dot();
    test_dot_groups();
    test_dot_edges();
    test_tile();
    test_tile_large();
    test_row_to_floats();
    printf("%s: %ld checks, %ld failed\n", PATH, n_checks, n_failed);
    return n_failed != 0;
}
#else
int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite(PATH, NULL, NULL);
    CU_add_test(s, "quantize_x8 and quantize_x8k against a plain quantizer", test_quantize);
    CU_add_test(s, "quantize_x8 and quantize_x8k round just under a half down", test_quantize_halves);
    CU_add_test(s, "dot_* against a double reference", test_dot);
    CU_add_test(s, "dot_* on rows of whole and short groups of 16 blocks", test_dot_groups);
    CU_add_test(s, "dot_* on edge blocks", test_dot_edges);
    CU_add_test(s, "tile_* against dot_*", test_tile);
    CU_add_test(s, "tile_* against dot_*: many rows, tokens, elements", test_tile_large);
    CU_add_test(s, "row_to_floats against gqr_q_dequantize_row", test_row_to_floats);
    return cunit_run();
}
#endif
