/*
 * test_tp.c: tensor-parallel code (gqac --ranks N --rank R).
 *
 *   - N ranks as N threads of this process, each the tcc JIT's code of its
 *     rank, over a gqa_comm written here (a barrier and a shared buffer),
 *     each rank's weights cut from the whole model's packed f32 weights by
 *     this file's own slicer (the split's rules written out again, an
 *     independent reference): the logits of forward at several positions,
 *     of forward_batch over more than a block, and of a forward after it,
 *     equal the whole model's code within 1e-5 (max |diff| / max |logit|)
 *     on every rank, for G = 1, 4, 8 and MQA, KV heads replicated (ranks >
 *     kv_heads), tied and untied classifiers, q/k/v biases, 2, 3, 4 and 8
 *     ranks, vocabularies the ranks split unevenly, and q8_0 weights (a
 *     GGUF file, cut on its blocks) with a q8_0 cache, sliding windows;
 *     the cc backend's optimized OpenMP code as well as tcc's;
 *   - the rank's table: its shape, api->shard's offsets, the whole table;
 *   - forward and forward_batch before set_comm: GQA_ECOMM; a comm that
 *     fails: GQA_ECOMM; forward_seqs: GQA_EARG; a token of the whole
 *     vocabulary that another rank holds is accepted, one outside it is
 *     GQA_ETOKEN;
 *   - gqac --ranks: a count the model does not split gives exit status 1
 *     and the counts that work; bad flags 2; a whole model's code has no
 *     trace of ranks; gqac info --ranks lists each rank's share.
 */
#include <CUnit/Basic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_run.h"
#include "gqac.h"
#include "gqa_api.h"
#include "gqr.h"
#include "testing.h"
#include "load_model.h"

enum { N_POS = 8, MAX_RANKS = 8 };


/* ---- the ranks' comm: shared memory between threads ---- */

typedef struct {
    pthread_barrier_t barrier;
    int ranks;
    size_t slot; /* floats per rank */
    float *slots;
} Shared;

typedef struct {
    Shared *sh;
    int rank;
} RankComm;

/* Each rank's x into its slot; then every rank sums the slots in rank
 * order (so every rank gets the same bits). */
static int tp_allreduce(void *ctx, float *x, size_t n) {
    RankComm *c = ctx;
    Shared *sh = c->sh;
    if (n > sh->slot)
        return 1;
    memcpy(sh->slots + (size_t)c->rank * sh->slot, x, n * sizeof *x);
    pthread_barrier_wait(&sh->barrier);
    for (size_t i = 0; i < n; i++) {
        float sum = 0;
        for (int r = 0; r < sh->ranks; r++)
            sum += sh->slots[(size_t)r * sh->slot + i];
        x[i] = sum;
    }
    pthread_barrier_wait(&sh->barrier);
    return 0;
}

static int tp_allgather(void *ctx, const float *part, float *all, const int *counts) {
    RankComm *c = ctx;
    Shared *sh = c->sh;
    size_t at = 0;
    memcpy(sh->slots + (size_t)c->rank * sh->slot, part, (size_t)counts[c->rank] * sizeof *part);
    pthread_barrier_wait(&sh->barrier);
    for (int r = 0; r < sh->ranks; r++) {
        memcpy(all + at, sh->slots + (size_t)r * sh->slot, (size_t)counts[r] * sizeof *all);
        at += (size_t)counts[r];
    }
    pthread_barrier_wait(&sh->barrier);
    return 0;
}

static int fail_allreduce(void *ctx, float *x, size_t n) {
    (void)ctx, (void)x, (void)n;
    return 1;
}

static int fail_allgather(void *ctx, const float *part, float *all, const int *counts) {
    (void)ctx, (void)part, (void)all, (void)counts;
    return 1;
}

/* ---- the split, written out again ---- */

typedef struct {
    int head0, heads, kv0, kvs, hidden0, hidden, vocab0, vocab;
} Share;

static Share share_of(const gqa_shape *w, int n, int r) {
    Share s;
    s.heads = w->n_heads / n;
    s.head0 = r * s.heads;
    s.kvs = n <= w->n_kv_heads ? w->n_kv_heads / n : 1;
    s.kv0 = n <= w->n_kv_heads ? r * s.kvs : r / (n / w->n_kv_heads);
    s.hidden = w->hidden_dim / n;
    s.hidden0 = r * s.hidden;
    s.vocab0 = 0;
    for (int i = 0; i < r; i++)
        s.vocab0 += w->vocab_size / n + (i < w->vocab_size % n);
    s.vocab = w->vocab_size / n + (r < w->vocab_size % n);
    return s;
}

/* ggml's layouts: elements and bytes of a block of each GQA_DT_*. */
static const struct {
    int elems, bytes;
} blocks[] = {{1, 4}, {1, 2}, {1, 2}, {32, 18}, {32, 34}, {256, 144}, {256, 210}};

/* Rows [r0, r0 + rows) and columns [c0, c0 + cols) (whole blocks) of a
 * matrix of dtype, `width` columns, into out. */
static void cut(unsigned char *out, const unsigned char *in, int dtype, int width, int r0, int rows, int c0,
                int cols) {
    size_t e = (size_t)blocks[dtype].elems, b = (size_t)blocks[dtype].bytes;
    size_t row = (size_t)width / e * b, at = (size_t)c0 / e * b, n = (size_t)cols / e * b;
    CU_ASSERT_FATAL(c0 % (int)e == 0 && cols % (int)e == 0);
    for (int i = 0; i < rows; i++)
        memcpy(out + (size_t)i * n, in + (size_t)(r0 + i) * row + at, n);
}

static const gqa_tensor *find_tensor(const gqa_model_api *api, int kind, int layer) {
    for (size_t i = 0; i < api->n_tensors; i++)
        if (api->tensors[i].kind == kind && api->tensors[i].layer == layer)
            return &api->tensors[i];
    return NULL;
}

/* The rank's packed weights (its table's offsets) from the whole model's
 * tensors (w[i]: whole->tensors[i]'s bytes). */
static unsigned char *slice_weights(const gqa_model_api *whole, const void *const *w, const gqa_model_api *rank,
                                    Share s) {
    unsigned char *out = calloc(1, rank->weight_bytes);
    int D = whole->shape.head_dim;
    CU_ASSERT_FATAL(out != NULL);
    for (size_t i = 0; i < rank->n_tensors; i++) {
        const gqa_tensor *t = &rank->tensors[i], *f = find_tensor(whole, t->kind, t->layer);
        CU_ASSERT_FATAL(f != NULL && t->dtype == f->dtype);
        const unsigned char *in = w[f - whole->tensors];
        unsigned char *o = out + t->offset;
        int r0 = 0, rows = f->rows, c0 = 0, cols = f->cols;
        switch (t->kind) {
        case GQA_T_EMBED: case GQA_T_CLS: r0 = s.vocab0, rows = s.vocab; break;
        case GQA_T_WQ: r0 = s.head0 * D, rows = s.heads * D; break;
        case GQA_T_WK: case GQA_T_WV: r0 = s.kv0 * D, rows = s.kvs * D; break;
        case GQA_T_W1: case GQA_T_W3: r0 = s.hidden0, rows = s.hidden; break;
        case GQA_T_WO: c0 = s.head0 * D, cols = s.heads * D; break;
        case GQA_T_W2: c0 = s.hidden0, cols = s.hidden; break;
        case GQA_T_BQ: c0 = s.head0 * D, cols = s.heads * D; break; /* a vector: one row */
        case GQA_T_BK: case GQA_T_BV: c0 = s.kv0 * D, cols = s.kvs * D; break;
        default: break; /* the norms: whole */
        }
        CU_ASSERT_FATAL(t->rows == rows && t->cols == cols);
        cut(o, in, f->dtype, f->cols, r0, rows, c0, cols);
    }
    return out;
}

/* ---- one run: forward at N_POS positions, a batch, a forward after it ---- */

typedef struct {
    const gqa_model_api *api;
    const void *weights;
    const gqa_comm *comm; /* NULL: the whole model */
    int batch;            /* tokens of the forward_batch */
    float *logits;        /* (N_POS + 2) whole vocabularies */
    int fails;
} Run;

static int token_at(int i, int vocab) {
    return (i * 37 + 11) % vocab;
}

static void *run_model(void *arg) {
    Run *r = arg;
    const gqa_model_api *api = r->api;
    int V = api->shard ? api->shard->whole.vocab_size : api->shape.vocab_size, err = 0;
    void *arena = gqr_arena_alloc(api);
    gqa_state *s;
    int *tokens = malloc(sizeof *tokens * (size_t)r->batch);
    if (!arena || !tokens || api->init(&s, arena, api->arena_bytes, r->weights, api->weight_bytes) != GQA_OK) {
        r->fails++;
        return NULL; /* (a rank that fails here hangs the others: the test's own bug) */
    }
    if (r->comm && api->set_comm(s, r->comm) != GQA_OK)
        r->fails++;
    for (int pos = 0; pos < N_POS; pos++)
        err |= api->forward(s, token_at(pos, V), pos, r->logits + (size_t)pos * (size_t)V);
    api->reset(s);
    for (int i = 0; i < r->batch; i++)
        tokens[i] = token_at(i + 5, V);
    err |= api->forward_batch(s, tokens, r->batch, 0, r->logits + (size_t)N_POS * (size_t)V);
    err |= api->forward(s, token_at(3, V), r->batch, r->logits + (size_t)(N_POS + 1) * (size_t)V);
    r->fails += err != GQA_OK;
    free(tokens);
    gqr_arena_free(arena);
    return NULL;
}

/* The model at path whole and over each of counts[] ranks, every rank's
 * logits against the whole model's (within tolerance): on random f32
 * weights, or on the weights file `file` (any types). */
static void check_split_file(const JitBackend *b, const char *path, const char *file, double tolerance,
                             const int *counts, int n_counts) {
    Arena *a = arena_new();
    Model m;
    char err[1024] = "";
    const gqa_model_api *whole;
    CU_ASSERT_FATAL(load_model(path, &m, a));
    JitModel *jw = jit_compile(&m, b, &whole, err, sizeof err);
    if (!jw)
        printf("\n  %s\n", err);
    CU_ASSERT_FATAL(jw != NULL);
    size_t V = (size_t)whole->shape.vocab_size;
    float *w = malloc(whole->weight_bytes), *want = malloc(sizeof *want * (N_POS + 2) * V);
    const void **wt = malloc(sizeof *wt * whole->n_tensors);
    gqr_checkpoint ck = {0};
    CU_ASSERT_FATAL(w && want && wt);
    if (file) {
        CU_ASSERT_FATAL(gqr_checkpoint_load(&ck, file, whole, GQR_LOAD_READ_HUGEPAGES, err, sizeof err) == 0);
        for (size_t i = 0; i < whole->n_tensors; i++) /* packed, as init wants them */
            memcpy((unsigned char *)w + whole->tensors[i].offset, ck.tensors[i], whole->tensors[i].bytes);
    } else {
        weights_fill_random(&m, 7, w);
    }
    for (size_t i = 0; i < whole->n_tensors; i++)
        wt[i] = (unsigned char *)w + whole->tensors[i].offset;
    int batch = whole->shape.seq_len - 2 < 70 ? whole->shape.seq_len - 2 : 70; /* > a block of 64 */
    Run ref = {whole, w, NULL, batch, want, 0};
    run_model(&ref);
    CU_ASSERT_FATAL(ref.fails == 0);
    for (int c = 0; c < n_counts; c++) {
        int n = counts[c];
        JitModel *j[MAX_RANKS] = {0};
        const gqa_model_api *api[MAX_RANKS];
        unsigned char *wr[MAX_RANKS];
        Run runs[MAX_RANKS];
        RankComm rc[MAX_RANKS];
        gqa_comm comm[MAX_RANKS];
        pthread_t th[MAX_RANKS];
        Shared sh = {.ranks = n, .slot = 64 * (size_t)whole->shape.dim + V};
        sh.slots = malloc(sizeof *sh.slots * sh.slot * (size_t)n);
        CU_ASSERT_FATAL(sh.slots && pthread_barrier_init(&sh.barrier, NULL, (unsigned)n) == 0);
        for (int r = 0; r < n; r++) {
            Share s = share_of(&whole->shape, n, r);
            j[r] = jit_compile_rank(&m, b, n, r, &api[r], err, sizeof err);
            if (!j[r])
                printf("\n  %s\n", err);
            CU_ASSERT_FATAL(j[r] != NULL);
            const gqa_shard *sd = api[r]->shard;
            CU_ASSERT_FATAL(sd != NULL);
            CU_ASSERT(sd->ranks == n && sd->rank == r && sd->head0 == s.head0 && sd->kv_head0 == s.kv0 &&
                      sd->hidden0 == s.hidden0 && sd->vocab0 == s.vocab0 && sd->vocab_counts[r] == s.vocab);
            CU_ASSERT(api[r]->shape.n_heads == s.heads && api[r]->shape.n_kv_heads == s.kvs &&
                      api[r]->shape.hidden_dim == s.hidden && api[r]->shape.vocab_size == s.vocab);
            CU_ASSERT(!memcmp(&sd->whole, &whole->shape, sizeof sd->whole));
            CU_ASSERT(sd->whole_weight_bytes == whole->weight_bytes);
            for (size_t i = 0; i < whole->n_tensors; i++)
                CU_ASSERT(sd->whole_tensors[i].offset == whole->tensors[i].offset &&
                          sd->whole_tensors[i].rows == whole->tensors[i].rows &&
                          sd->whole_tensors[i].kind == whole->tensors[i].kind);
            wr[r] = slice_weights(whole, wt, api[r], s);
            rc[r] = (RankComm){&sh, r};
            comm[r] = (gqa_comm){&rc[r], tp_allreduce, tp_allgather};
            runs[r] = (Run){api[r], wr[r], &comm[r], batch, malloc(sizeof(float) * (N_POS + 2) * V), 0};
            CU_ASSERT_FATAL(runs[r].logits != NULL);
        }
        for (int r = 0; r < n; r++)
            CU_ASSERT_FATAL(pthread_create(&th[r], NULL, run_model, &runs[r]) == 0);
        for (int r = 0; r < n; r++)
            pthread_join(th[r], NULL);
        for (int r = 0; r < n; r++) {
            double d = test_rel_diff(runs[r].logits, want, (N_POS + 2) * V);
            if (r == 0)
                printf(" [%s, %s, %d ranks: %.2g] ", b->name, m.name, n, d);
            CU_ASSERT(runs[r].fails == 0);
            CU_ASSERT(d <= tolerance);
            free(runs[r].logits), free(wr[r]);
            jit_free(j[r]);
        }
        pthread_barrier_destroy(&sh.barrier);
        free(sh.slots);
    }
    gqr_checkpoint_close(&ck);
    free(w), free(want), free(wt);
    jit_free(jw);
    arena_free(a);
}

static void check_split(const char *path, const int *counts, int n_counts) {
    check_split_file(&jit_tcc, path, NULL, 1e-5, counts, n_counts);
}

static void test_g1_untied(void) {
    check_split("tests/models/tp/g1.gqa", (const int[]){2, 4}, 2);
}

static void test_g4_tied_bias(void) {
    check_split("tests/models/tp/g4.gqa", (const int[]){2, 4}, 2);
}

static void test_g8_replicated(void) {
    check_split("tests/models/tp/g8.gqa", (const int[]){2, 4, 8}, 3);
}

static void test_mqa(void) {
    check_split("tests/models/g6mqa.gqa", (const int[]){2, 3}, 2);
}

/* A q8_0 cache (or q8_0 weights, whose products quantize x) rounds
 * values computed from an x summed in another order than the whole
 * model's: a last-bit difference can flip an int8 rounding, and later
 * positions carry it (measured 7.1e-5 on swa_mix over 4 ranks, 8.5e-3 on
 * another seed; an f32 cache: 7.3e-7).  The whole model's own prompt and
 * token paths differ by as much (test_tp_mpi.c's bound, the same).  A
 * wrong cut or a missing sum is off by ~100%. */
#define Q8_CACHE_TOLERANCE 5e-2

/* Sliding windows (rings that wrap within the batch), sinks, a global
 * layer; the same with a q8_0 cache. */
static void test_windows(void) {
    check_split("tests/models/tp/swa.gqa", (const int[]){2, 4}, 2);
    check_split_file(&jit_tcc, "tests/models/swa_mix.gqa", NULL, Q8_CACHE_TOLERANCE, (const int[]){2, 4}, 2);
}

static void test_bias_untied(void) {
    check_split("tests/models/g3bias.gqa", (const int[]){2}, 1);
}

/* q8_0 weights (a GGUF file) and a q8_0 cache, MQA: W2's and Wo's
 * columns cut on whole blocks, so a rank quantizes its share of the
 * activations in the whole model's blocks (measured 2.4e-7; the cache's
 * bound above). */
static void test_q8_0(void) {
    const char *gguf = test_tmp("tp_kv_q8.gguf");
    CU_ASSERT_FATAL(test_sh_ok("%s weights --random tests/models/kv_q8.gqa -o %s --format gguf --seed 3",
                               test_gqac(), gguf));
    check_split_file(&jit_tcc, "tests/models/kv_q8.gqa", gguf, Q8_CACHE_TOLERANCE, (const int[]){2, 4}, 2);
}

/* The cc backend's code (-O3 for this CPU, OpenMP: each rank's products
 * across threads, the collectives between its parallel regions). */
static void test_cc(void) {
    check_split_file(&jit_cc, "tests/models/tp/g4.gqa", NULL, 1e-5, (const int[]){2}, 1);
}

/* ---- the rank's calls that are not a step ---- */

static void test_comm_errors(void) {
    Arena *a = arena_new();
    Model m;
    char err[1024] = "";
    const gqa_model_api *api;
    CU_ASSERT_FATAL(load_model("tests/models/tp/g4.gqa", &m, a));
    JitModel *j = jit_compile_rank(&m, &jit_tcc, 2, 1, &api, err, sizeof err);
    CU_ASSERT_FATAL(j != NULL);
    float *w = calloc(1, api->weight_bytes), logits[70];
    void *arena = gqr_arena_alloc(api), *pool = NULL;
    gqa_state *s;
    int tokens[3] = {1, 2, 69};
    CU_ASSERT_FATAL(w && arena && api->init(&s, arena, api->arena_bytes, w, api->weight_bytes) == GQA_OK);
    CU_ASSERT(api->forward(s, 1, 0, logits) == GQA_ECOMM);
    CU_ASSERT(api->forward_batch(s, tokens, 3, 0, logits) == GQA_ECOMM);
    CU_ASSERT(api->set_comm(s, NULL) == GQA_EARG);
    gqa_comm bad = {NULL, fail_allreduce, fail_allgather};
    CU_ASSERT(api->set_comm(s, &bad) == GQA_OK);
    CU_ASSERT(api->forward(s, 69, 0, logits) == GQA_ECOMM); /* token 69: rank 1's rows (35 .. 69) */
    CU_ASSERT(api->forward(s, 70, 0, logits) == GQA_ETOKEN); /* outside the whole vocabulary */
    CU_ASSERT(api->forward_batch(s, tokens, 3, 0, logits) == GQA_ECOMM);
    int pages[1] = {0};
    gqa_seq seq = {tokens, 1, 0, pages, logits};
    CU_ASSERT_FATAL(posix_memalign(&pool, 64, api->page_bytes) == 0);
    CU_ASSERT(api->forward_seqs(s, pool, 1, &seq, 1) == GQA_EARG);
    free(pool), free(w);
    gqr_arena_free(arena);
    jit_free(j);
    /* and a count the model does not split */
    CU_ASSERT(jit_compile_rank(&m, &jit_tcc, 3, 0, &api, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "rank counts that work: 1, 2, 4, 8") != NULL);
    arena_free(a);
}

/* ---- gqac --ranks ---- */

static void test_gqac_ranks(void) {
    const char *gqac = test_gqac(), *out = test_tmp("tp_rank.c"), *log = test_tmp("tp_rank.log");
    CU_ASSERT(test_sh("%s examples/tinyllama-1.1b.gqa -o %s --ranks 3 --rank 0 2>%s", gqac, out, log) == 1);
    CU_ASSERT(test_file_has(log, "examples/tinyllama-1.1b.gqa: 3 ranks: 32 query heads and 4 KV heads do not "
                                 "split into whole groups over 3 ranks (rank counts that work: 1, 2, 4, 8, 16, 32)"));
    CU_ASSERT(test_sh("%s tests/models/tp/g4.gqa -o %s --ranks 2 2>/dev/null", gqac, out) == 2);
    CU_ASSERT(test_sh("%s tests/models/tp/g4.gqa -o %s --ranks 2 --rank 2 2>/dev/null", gqac, out) == 2);
    CU_ASSERT(test_sh("%s tests/models/tp/g4.gqa -o %s --rank 1 2>/dev/null", gqac, out) == 2);
    CU_ASSERT(test_sh("%s tests/models/tp/g4.gqa -o %s --ranks 0 --rank 0 2>/dev/null", gqac, out) == 2);
    CU_ASSERT(test_sh("%s tests/models/tp/g4.gqa -o %s --ranks 2 --rank 1 --train 2>/dev/null", gqac, out) == 2);
    /* a rank's code and program; the whole model's code has no trace of ranks */
    CU_ASSERT(test_sh("%s tests/models/tp/g4.gqa -o %s --ranks 4 --rank 3 --main", gqac, out) == 0);
    CU_ASSERT(test_file_has(out, "gqr_mpi_main(&tp_g4_api, argc, argv)"));
    CU_ASSERT(test_file_has(out, "static const int gq_vocab_counts[GQ_RANKS] = {18, 18, 17, 17};"));
    CU_ASSERT(test_sh("%s tests/models/tp/g4.gqa -o %s --ranks 1 --rank 0 --main", gqac, out) == 0);
    CU_ASSERT(test_file_has(out, "gqr_main(&tp_g4_api, argc, argv)"));
    CU_ASSERT(!test_file_has(out, "gqac:sharded") && !test_file_has(out, "GQ_RANKS"));
    /* gqac info --ranks: what each rank holds */
    CU_ASSERT(test_sh("%s info tests/models/tp/g8.gqa --ranks 4 >%s", gqac, log) == 0);
    CU_ASSERT(test_file_has(log, "each rank 4 query heads with 1 KV head (each on 2 ranks), 32 of 128 FFN"));
    CU_ASSERT(test_file_has(log, "rank 3: heads 12-15, KV heads 1, hidden 96-127, vocab 38-49;"));
    CU_ASSERT(test_sh("%s info tests/models/tp/g8.gqa --ranks 3 >/dev/null 2>%s", gqac, log) == 1);
    CU_ASSERT(test_file_has(log, "(rank counts that work: 1, 2, 4, 8, 16)"));
}

int main(void) {
    CU_pSuite s;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("tp", NULL, NULL);
    CU_add_test(s, "G=1, untied, uneven vocab: 2 and 4 ranks", test_g1_untied);
    CU_add_test(s, "G=4, tied, biases: 2 ranks, 4 (replicated KV)", test_g4_tied_bias);
    CU_add_test(s, "G=8: 2 ranks, 4 and 8 (replicated KV)", test_g8_replicated);
    CU_add_test(s, "MQA: 2 and 3 ranks", test_mqa);
    CU_add_test(s, "biases, untied, 3 layers: 2 ranks", test_bias_untied);
    CU_add_test(s, "sliding windows (f32 and q8_0 caches): 2 and 4 ranks", test_windows);
    CU_add_test(s, "q8_0 weights and cache, MQA: 2 and 4 ranks", test_q8_0);
    CU_add_test(s, "the cc JIT's code (optimized, OpenMP): 2 ranks", test_cc);
    CU_add_test(s, "before set_comm, a failing comm, forward_seqs", test_comm_errors);
    CU_add_test(s, "gqac --ranks", test_gqac_ranks);
    return cunit_run();
}
