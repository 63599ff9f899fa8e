/*
 * test_shard.c: a rank's slices of a weight file (runtime/shard.c's
 * gqr_checkpoint_open_shard) against a plain slicer here: every element
 * of every tensor of the rank, as floats, is the whole model's element
 * at the rank's row and column offsets, for each rank of several splits
 * (query heads, whole KV groups and replicated KV heads, FFN hidden
 * units, an uneven vocabulary), for llama2.c, GGUF and safetensors files
 * (gqac weights --random), f32 and q8_0 blocks.  The rank's table and
 * shard are built by hand here from the whole model's, by gqa_api.h's
 * rules.  And what must be refused: a cut through a block, a file of
 * another model.
 */
#include <CUnit/Basic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_run.h"
#include "gqr.h"
#include "quant.h"
#include "testing.h"

extern const gqa_model_api tiny_api, g3bias_api, g6mqa_api, kv_q8_api, qmix_api;

static const char *gqac;
static char err[1024];

/* One rank's model table: the whole model's at the rank's shape. */
typedef struct rank_model {
    gqa_model_api api;
    gqa_shard sh;
    gqa_tensor t[512];
    int counts[16];
} rank_model;

/* The rank's rows (or a bias's columns) of a kind, and its row and
 * column offsets into the whole tensor. */
static void local_dims(const gqa_tensor *w, const rank_model *rm, int *rows, int *cols, int *row0,
                       int *col0) {
    const gqa_shard *s = &rm->sh;
    const gqa_shape *l = &rm->api.shape;
    int d = s->whole.head_dim;
    *rows = w->rows, *cols = w->cols, *row0 = 0, *col0 = 0;
    switch (w->kind) {
    case GQA_T_EMBED: case GQA_T_CLS: *rows = l->vocab_size, *row0 = s->vocab0; break;
    case GQA_T_WQ: *rows = l->n_heads * d, *row0 = s->head0 * d; break;
    case GQA_T_WK: case GQA_T_WV: *rows = l->n_kv_heads * d, *row0 = s->kv_head0 * d; break;
    case GQA_T_W1: case GQA_T_W3: *rows = l->hidden_dim, *row0 = s->hidden0; break;
    case GQA_T_WO: case GQA_T_BQ: *cols = l->n_heads * d, *col0 = s->head0 * d; break;
    case GQA_T_BK: case GQA_T_BV: *cols = l->n_kv_heads * d, *col0 = s->kv_head0 * d; break;
    case GQA_T_W2: *cols = l->hidden_dim, *col0 = s->hidden0; break;
    default: break;
    }
}

/* Rank r of n of the whole model w, as gqa_api.h splits it. */
static void make_rank(rank_model *rm, const gqa_model_api *w, int n, int r) {
    memset(rm, 0, sizeof *rm);
    const gqa_shape *ws = &w->shape;
    int kv = n <= ws->n_kv_heads ? ws->n_kv_heads / n : 1;
    rm->api = *w;
    rm->sh.ranks = n, rm->sh.rank = r;
    rm->sh.whole = *ws;
    rm->sh.whole_tensors = w->tensors;
    rm->sh.whole_weight_bytes = w->weight_bytes;
    rm->sh.head0 = r * (ws->n_heads / n);
    rm->sh.kv_head0 = n <= ws->n_kv_heads ? r * kv : r / (n / ws->n_kv_heads);
    rm->sh.hidden0 = r * (ws->hidden_dim / n);
    for (int i = 0; i < n; i++) {
        rm->counts[i] = ws->vocab_size / n + (i < ws->vocab_size % n);
        rm->sh.vocab0 += i < r ? rm->counts[i] : 0;
    }
    rm->sh.vocab_counts = rm->counts;
    rm->api.shape.n_heads = ws->n_heads / n;
    rm->api.shape.n_kv_heads = kv;
    rm->api.shape.hidden_dim = ws->hidden_dim / n;
    rm->api.shape.vocab_size = rm->counts[r];
    CU_ASSERT_FATAL(w->n_tensors <= 512);
    size_t at = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        gqa_tensor *t = &rm->t[i];
        int row0, col0;
        *t = w->tensors[i];
        local_dims(&w->tensors[i], rm, &t->rows, &t->cols, &row0, &col0);
        uint64_t row_bytes = 0;
        gqr_q_row_bytes(t->dtype, (uint64_t)t->cols, &row_bytes, NULL, 0);
        t->bytes = (size_t)row_bytes * (size_t)t->rows;
        t->offset = at;
        at = (at + t->bytes + 3) / 4 * 4;
    }
    rm->api.tensors = rm->t;
    rm->api.weight_bytes = at;
    rm->api.shard = &rm->sh;
}

/* A tensor's rows x cols elements as floats. */
static float *floats_of(const gqa_tensor *t, const unsigned char *data) {
    uint64_t row_bytes;
    CU_ASSERT_FATAL(gqr_q_row_bytes(t->dtype, (uint64_t)t->cols, &row_bytes, NULL, 0) == 0);
    float *v = malloc(sizeof(float) * (size_t)t->rows * (size_t)t->cols);
    for (int r = 0; r < t->rows; r++) {
        float *dst = v + (size_t)r * (size_t)t->cols;
        if (t->dtype == GQA_DT_F32)
            memcpy(dst, data + r * row_bytes, sizeof(float) * (size_t)t->cols);
        else
            gqr_q_dequantize_row(t->dtype, data + r * row_bytes, (uint64_t)t->cols, dst);
    }
    return v;
}

/* Every element of the rank's tensors against the whole file's: the
 * number of elements that differ. */
static long compare_rank(const rank_model *rm, const gqr_checkpoint *rank,
                         const gqr_checkpoint *whole) {
    long bad = 0;
    for (size_t i = 0; i < rm->api.n_tensors; i++) {
        const gqa_tensor *l = &rm->t[i], *w = &rm->sh.whole_tensors[i];
        int rows, cols, row0, col0;
        local_dims(w, rm, &rows, &cols, &row0, &col0);
        float *lv = floats_of(l, rank->tensors[i]), *wv = floats_of(w, whole->tensors[i]);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                float a = lv[(size_t)r * (size_t)cols + (size_t)c];
                float b = wv[(size_t)(r + row0) * (size_t)w->cols + (size_t)(c + col0)];
                bad += memcmp(&a, &b, sizeof a) != 0;
            }
        free(lv);
        free(wv);
    }
    return bad;
}

/* Every rank of an n-way split of w's file at path against the whole load. */
static void check_split(const gqa_model_api *w, const char *path, int n) {
    gqr_checkpoint whole;
    CU_ASSERT_FATAL(gqr_checkpoint_load(&whole, path, w, GQR_LOAD_MMAP, err, sizeof err) == 0);
    size_t total = 0;
    for (int r = 0; r < n; r++) {
        rank_model *rm = malloc(sizeof *rm);
        make_rank(rm, w, n, r);
        gqr_checkpoint ck;
        int rc = gqr_checkpoint_open_shard(&ck, path, &rm->api, GQR_LOAD_MMAP, err, sizeof err);
        if (rc)
            fprintf(stderr, "\n    %s rank %d of %d: %s\n", path, r, n, err);
        CU_ASSERT_FATAL(rc == 0);
        CU_ASSERT_EQUAL(ck.n_tensors, rm->api.n_tensors);
        CU_ASSERT_EQUAL(ck.weight_bytes, rm->api.weight_bytes);
        CU_ASSERT_PTR_NOT_NULL(ck.weights);
        CU_ASSERT_EQUAL(ck.format, whole.format);
        long bad = compare_rank(rm, &ck, &whole);
        if (bad)
            fprintf(stderr, "\n    %s rank %d of %d: %ld elements differ\n", path, r, n, bad);
        CU_ASSERT_EQUAL(bad, 0);
        total += ck.owned_bytes;
        gqr_checkpoint_close(&ck);
        free(rm);
    }
    /* The ranks hold less than n copies: only the norms (and replicated
     * KV heads) are on every rank. */
    CU_ASSERT(total < (size_t)n * w->weight_bytes);
    gqr_checkpoint_close(&whole);
}

static const char *weights(const char *gqa, const char *name, const char *format) {
    const char *path = test_tmp(name);
    CU_ASSERT_FATAL(test_sh_ok("%s weights --random %s --seed 7 --format %s -o %s", gqac, gqa, format,
                               path));
    return path;
}

/* G = 4, tied: whole groups on 2 ranks, replicated KV heads on 4. */
static void test_tiny_formats(void) {
    static const char *const formats[] = {"bin", "gguf", "safetensors"};
    for (int f = 0; f < 3; f++) {
        char name[32];
        snprintf(name, sizeof name, "tiny.%s", formats[f]);
        const char *path = weights("examples/tiny.gqa", name, formats[f]);
        check_split(&tiny_api, path, 2);
        check_split(&tiny_api, path, 4);
    }
}

/* q/k/v biases (cut as columns of one row), an untied classifier. */
static void test_bias_untied(void) {
    const char *bin = weights("tests/models/g3bias.gqa", "g3bias.bin", "bin");
    check_split(&g3bias_api, bin, 2);
    check_split(&g3bias_api, weights("tests/models/g3bias.gqa", "g3bias.gguf", "gguf"), 2);
}

/* MQA on 3 ranks: one KV head on every rank, 64 tokens as 22 + 21 + 21. */
static void test_mqa_uneven_vocab(void) {
    const char *path = weights("tests/models/g6mqa.gqa", "g6mqa.safetensors", "safetensors");
    check_split(&g6mqa_api, path, 3);
    check_split(&g6mqa_api, path, 2);
}

/* q8_0 matrices: rows and columns cut on whole blocks of 32. */
static void test_q8_0(void) {
    check_split(&kv_q8_api, weights("tests/models/kv_q8.gqa", "kv_q8.gguf", "gguf"), 2);
    check_split(&kv_q8_api, weights("tests/models/kv_q8.gqa", "kv_q8.bin", "bin"), 2);
}

static int open_rank(const gqa_model_api *w, int n, int r, const char *path) {
    rank_model *rm = malloc(sizeof *rm);
    make_rank(rm, w, n, r);
    gqr_checkpoint ck;
    err[0] = 0;
    int rc = gqr_checkpoint_open_shard(&ck, path, &rm->api, GQR_LOAD_MMAP, err, sizeof err);
    CU_ASSERT(rc ? ck.tensors == NULL && ck.buf == NULL && err[0] : 1);
    gqr_checkpoint_close(&ck);
    free(rm);
    return rc;
}

/* qmix's W2 of layer 0 is Q4_K: 768 columns over 2 ranks are 384, not
 * whole blocks of 256. */
static void test_block_refused(void) {
    const char *path = weights("tests/models/qmix.gqa", "qmix.gguf", "gguf");
    CU_ASSERT_EQUAL(open_rank(&qmix_api, 2, 0, path), -1);
    TEST_HAS(err, "w2 (layer 0)");
    TEST_HAS(err, "384 elements are not whole Q4_K blocks of 256");
}

/* Another model's file: the whole model's check, its expected and found
 * values; for each format. */
static void test_other_model(void) {
    CU_ASSERT_EQUAL(open_rank(&g3bias_api, 2, 1, weights("examples/tiny.gqa", "o.bin", "bin")), -1);
    TEST_HAS(err, "dim is 64 in the file, but the model was compiled for 48");
    CU_ASSERT_EQUAL(open_rank(&g6mqa_api, 2, 1, weights("examples/tiny.gqa", "o.gguf", "gguf")), -1);
    TEST_HAS(err, "o.gguf");
    CU_ASSERT_EQUAL(open_rank(&tiny_api, 2, 0, weights("tests/models/g6mqa.gqa", "o.st", "safetensors")),
                    -1);
    TEST_HAS(err, "o.st");
    CU_ASSERT_EQUAL(open_rank(&tiny_api, 2, 0, "no/such/file"), -1);
    TEST_HAS(err, "no/such/file");
}

/* No shard: the plain load. */
static void test_unsharded(void) {
    const char *path = weights("examples/tiny.gqa", "u.bin", "bin");
    gqr_checkpoint a, b;
    CU_ASSERT_FATAL(gqr_checkpoint_open_shard(&a, path, &tiny_api, GQR_LOAD_MMAP, err, sizeof err) == 0);
    CU_ASSERT_FATAL(gqr_checkpoint_load(&b, path, &tiny_api, GQR_LOAD_MMAP, err, sizeof err) == 0);
    CU_ASSERT_EQUAL(a.weight_bytes, b.weight_bytes);
    CU_ASSERT(memcmp(a.weights, b.weights, a.weight_bytes) == 0);
    CU_ASSERT_PTR_NOT_NULL(a.map);
    gqr_checkpoint_close(&a);
    gqr_checkpoint_close(&b);
}

int main(void) {
    gqac = test_gqac();
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("shard", NULL, NULL);
    CU_add_test(s, "tiny: bin, gguf, safetensors on 2 and 4 ranks", test_tiny_formats);
    CU_add_test(s, "biases and an untied classifier", test_bias_untied);
    CU_add_test(s, "MQA, an uneven vocabulary", test_mqa_uneven_vocab);
    CU_add_test(s, "q8_0 on its blocks", test_q8_0);
    CU_add_test(s, "a cut through a block refused", test_block_refused);
    CU_add_test(s, "another model's file refused", test_other_model);
    CU_add_test(s, "no shard: the plain load", test_unsharded);
    return cunit_run();
}
