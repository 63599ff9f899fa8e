/*
 * test_quantize.c: quantized GGUF from `gqac weights --random --dtype q*`
 * and `gqac quantize` (compiler/quantize.c, runtime/convert.c's writer):
 * each tensor against the f32 weights it came from, the same bytes from
 * every input format, --keep, a GGUF's tokenizer carried over, and the
 * errors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_run.h"
#include "gqa_api.h"
#include "gqr.h"
#include "quant.h"
#include "tensorfile.h"
#include "testing.h"
#include "tokenizer.h"

static char err[1024];

/* Random weights of model (seed 1) as GGUF of dtype at test_tmp(name). */
static const char *random_gguf(const char *model, const char *dtype, const char *name) {
    const char *path = test_tmp(name);
    CU_ASSERT_FATAL(test_sh_ok("%s weights --random %s --format gguf --dtype %s -o %s", test_gqac(),
                               model, dtype, path));
    return path;
}

/* sqrt(sum (q - f)^2 / sum f^2): the error relative to the tensor's size,
 * steadier than the largest element's error for a test bound. */
static double rel_rms(const float *q, const float *f, uint64_t n) {
    double e = 0, s = 0;
    for (uint64_t i = 0; i < n; i++)
        e += (double)(q[i] - f[i]) * (q[i] - f[i]), s += (double)f[i] * f[i];
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

/* Every tensor of the f32 file fpath in qpath: matrices as dtype within
 * bound, vectors (norms, biases, rope_freqs) F32 and exactly equal. */
static void check_quantized(const char *qpath, const char *fpath, int dtype, double bound) {
    gqr_tensorfile *q = NULL, *f = NULL;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&q, qpath, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&f, fpath, err, sizeof err), 0);
    CU_ASSERT_EQUAL(gqr_tf_count(q), gqr_tf_count(f));
    for (int i = 0; i < gqr_tf_count(f); i++) {
        const gqr_tensor *ft = gqr_tf_tensor(f, i), *qt = gqr_tf_find(q, ft->name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(qt);
        CU_ASSERT_EQUAL_FATAL(qt->n_elems, ft->n_elems);
        float *a = malloc(ft->n_elems * sizeof *a), *b = malloc(ft->n_elems * sizeof *b);
        CU_ASSERT_FATAL(a && b);
        gqr_tf_read_f32(qt, 0, qt->n_elems, a);
        gqr_tf_read_f32(ft, 0, ft->n_elems, b);
        if (ft->n_dims == 1) {
            CU_ASSERT_EQUAL(qt->dtype, GQR_DT_F32);
            CU_ASSERT(!memcmp(a, b, ft->n_elems * sizeof *a));
        } else {
            double e = rel_rms(a, b, ft->n_elems);
            CU_ASSERT_EQUAL(qt->dtype, dtype);
            if (!(e <= bound))
                fprintf(stderr, "\n    %s: %s relative RMS error %g > %g\n", qpath, ft->name, e, bound);
            CU_ASSERT(e <= bound && e > 0);
        }
        free(a);
        free(b);
    }
    gqr_tf_close(q);
    gqr_tf_close(f);
}

/* Bounds on the relative RMS error of one tensor: a uniform value's
 * rounding error is step/sqrt(12), the step being amax/127 (Q8_0), amax/8
 * (Q4_0) of a 32-block, relative to amax/sqrt(3): 0.004 and 0.07; the K
 * types' as test_quant bounds them (Q4_K 0.12, Q6_K 0.035).  Each two
 * to three times what it should be, so a wrong scale or a swapped row
 * fails. */
#define BOUND_Q8_0 0.01
#define BOUND_Q4_0 0.12
#define BOUND_Q4_K 0.12
#define BOUND_Q6_K 0.035

/* (a) models of 32-wide rows: q/k biases and RoPE halves (qwen2), and
 * Llama 3's rope_freqs, both kept F32. */
static void test_q8_q4(void) {
    static const char *const models[] = {"tests/models/halves.gqa", "tests/models/llama3.gqa"};
    for (int i = 0; i < 2; i++) {
        const char *f = random_gguf(models[i], "f32", "a_f32.gguf");
        check_quantized(random_gguf(models[i], "q8_0", "a_q8.gguf"), f, GQR_DT_Q8_0, BOUND_Q8_0);
        check_quantized(random_gguf(models[i], "q4_0", "a_q4.gguf"), f, GQR_DT_Q4_0, BOUND_Q4_0);
    }
}

/* (b) 256-wide rows: the K types. */
static void test_k_types(void) {
    const char *m = "tests/models/q256.gqa", *f = random_gguf(m, "f32", "b_f32.gguf");
    check_quantized(random_gguf(m, "q4_k", "b_q4k.gguf"), f, GQR_DT_Q4_K, BOUND_Q4_K);
    check_quantized(random_gguf(m, "q6_k", "b_q6k.gguf"), f, GQR_DT_Q6_K, BOUND_Q6_K);
}

/* Whether two files' tensors have the same names, types and bytes. */
static bool same_tensors(const char *p, const char *q) {
    gqr_tensorfile *a = NULL, *b = NULL;
    bool same = !gqr_tf_open(&a, p, err, sizeof err) && !gqr_tf_open(&b, q, err, sizeof err) &&
                gqr_tf_count(a) == gqr_tf_count(b);
    for (int i = 0; same && i < gqr_tf_count(a); i++) {
        const gqr_tensor *x = gqr_tf_tensor(a, i), *y = gqr_tf_find(b, x->name);
        same = y && x->dtype == y->dtype && x->n_bytes == y->n_bytes &&
               !memcmp(x->data, y->data, x->n_bytes);
    }
    gqr_tf_close(a);
    gqr_tf_close(b);
    return same;
}

static const char q256_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 256,"
    " \"intermediate_size\": 512, \"num_hidden_layers\": 1, \"num_attention_heads\": 4,"
    " \"num_key_value_heads\": 2, \"vocab_size\": 256, \"max_position_embeddings\": 16,"
    " \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false}";

/* (c) quantize of the same values from .bin, GGUF and safetensors gives
 * what weights --random --dtype gives: the same quantizer on the same
 * floats. */
static void test_same_bytes(void) {
    static const char *const types[] = {"q8_0", "q4_0", "q4_k", "q6_k"};
    const char *g = test_gqac(), *m = "tests/models/q256.gqa";
    const char *bin = test_tmp("c.bin"), *f32 = random_gguf(m, "f32", "c_f32.gguf");
    const char *st = test_tmp("c_st/model.safetensors"), *out = test_tmp("c_out.gguf");
    CU_ASSERT_FATAL(test_sh_ok("%s weights --random %s -o %s", g, m, bin));
    CU_ASSERT_FATAL(test_sh_ok("mkdir -p %s/c_st && %s weights --random %s --format safetensors -o %s",
                               test_dir(), g, m, st));
    CU_ASSERT_FATAL(test_write_text(test_tmp("c_st/config.json"), q256_config));
    for (int i = 0; i < 4; i++) {
        const char *want = random_gguf(m, types[i], "c_want.gguf");
        CU_ASSERT(test_sh_ok("%s quantize %s --model %s -o %s --type %s >/dev/null", g, bin, m, out,
                             types[i]));
        CU_ASSERT(test_sh_ok("cmp %s %s", want, out));
        CU_ASSERT(test_sh_ok("%s quantize %s -o %s --type %s >/dev/null", g, f32, out, types[i]));
        CU_ASSERT(test_sh_ok("cmp %s %s", want, out));
        CU_ASSERT(test_sh_ok("%s quantize %s --model %s -o %s --type %s >/dev/null", g, st, m, out,
                             types[i]));
        CU_ASSERT(test_sh_ok("cmp %s %s", want, out));
        /* config.json's model: named otherwise, the same tensors */
        CU_ASSERT(test_sh_ok("%s quantize %s -o %s --type %s >/dev/null", g, st, out, types[i]));
        CU_ASSERT(same_tensors(want, out));
    }
}

/* The one line quantize prints. */
static void test_summary(void) {
    const char *f32 = random_gguf("tests/models/q256.gqa", "f32", "s_f32.gguf");
    const char *log = test_tmp("s.txt");
    CU_ASSERT(test_sh_ok("%s quantize %s -o %s --type q8_0 >%s", test_gqac(), f32,
                         test_tmp("s.gguf"), log));
    CU_ASSERT(test_file_has(log, "s.gguf: 3 tensors F32, 9 tensors Q8_0; "));
    CU_ASSERT(test_file_has(log, "; 2886656 bytes in, 770304 bytes out\n")); /* the tensors in */
}

static int dtype_in(const char *path, const char *name) {
    gqr_tensorfile *tf = NULL;
    int dt = -1;
    if (!gqr_tf_open(&tf, path, err, sizeof err) && gqr_tf_find(tf, name))
        dt = gqr_tf_find(tf, name)->dtype;
    gqr_tf_close(tf);
    return dt;
}

/* (d) --keep: the named tensors at --keep-type (f16 unless given). */
static void test_keep(void) {
    const char *g = test_gqac(), *f32 = random_gguf("tests/models/halves.gqa", "f32", "d_f32.gguf");
    const char *out = test_tmp("d.gguf");
    CU_ASSERT(test_sh_ok("%s quantize %s -o %s --type q4_0 --keep token_embd.weight,blk.1.attn_v.weight"
                         " >/dev/null", g, f32, out));
    CU_ASSERT_EQUAL(dtype_in(out, "token_embd.weight"), GQR_DT_F16);
    CU_ASSERT_EQUAL(dtype_in(out, "blk.1.attn_v.weight"), GQR_DT_F16);
    CU_ASSERT_EQUAL(dtype_in(out, "blk.0.attn_v.weight"), GQR_DT_Q4_0);
    CU_ASSERT_EQUAL(dtype_in(out, "output.weight"), GQR_DT_Q4_0);
    CU_ASSERT(test_sh_ok("%s quantize %s -o %s --type q4_0 --keep output.weight --keep-type q8_0"
                         " >/dev/null", g, f32, out));
    CU_ASSERT_EQUAL(dtype_in(out, "output.weight"), GQR_DT_Q8_0);
    CU_ASSERT_EQUAL(dtype_in(out, "token_embd.weight"), GQR_DT_Q4_0);
    /* a name that is no tensor: an error, not a silent quantization */
    CU_ASSERT_EQUAL(test_sh("%s quantize %s -o %s --type q4_0 --keep output.weights 2>%s", g, f32,
                            out, test_tmp("d.err")), 1);
    CU_ASSERT(test_file_has(test_tmp("d.err"), "no tensor 'output.weights' to keep"));
}

/* An f32 GGUF of q256 with a SentencePiece tokenizer in its metadata. */
static const char *gguf_with_tokenizer(void) {
    static const char *const pieces[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
                                         "\xe2\x96\x81" "a", "ab"};
    static const float scores[] = {0, 0, 0, -1, -2, -3, -4, -5};
    const char *src = random_gguf("tests/models/q256.gqa", "f32", "e_src.gguf");
    gqr_tensorfile *tf = NULL;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, src, err, sizeof err), 0);
    gqr_tf_writer *w = gqr_tf_writer_new(GQR_TF_GGUF);
    for (int i = 0; i < gqr_gguf_count(tf); i++) {
        const char *key;
        const gqr_gguf_value *v = gqr_gguf_at(tf, i, &key);
        CU_ASSERT_EQUAL(gqr_tf_writer_set_value(w, key, v), 0);
    }
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string(w, "tokenizer.ggml.model", "llama"), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_string_array(w, "tokenizer.ggml.tokens", 8, pieces, NULL), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_f32_array(w, "tokenizer.ggml.scores", 8, scores), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2), 0);
    CU_ASSERT_EQUAL(gqr_tf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1), 0);
    for (int i = 0; i < gqr_tf_count(tf); i++) {
        const gqr_tensor *t = gqr_tf_tensor(tf, i);
        CU_ASSERT_EQUAL(gqr_tf_writer_add_bytes(w, t->name, t->dtype, t->n_dims, t->dims, t->data,
                                                t->n_bytes), 0);
    }
    const char *path = test_tmp("e_tok.gguf");
    CU_ASSERT_EQUAL(gqr_tf_writer_write(w, path, err, sizeof err), 0);
    gqr_tf_writer_free(w);
    gqr_tf_close(tf);
    return path;
}

/* (e) tokenizer.* keys go from a GGUF input to the output, and load. */
static void test_tokenizer_carried(void) {
    const char *in = gguf_with_tokenizer(), *out = test_tmp("e_out.gguf");
    CU_ASSERT_FATAL(test_sh_ok("%s quantize %s -o %s --type q6_k >/dev/null", test_gqac(), in, out));
    gqr_tensorfile *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&a, in, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&b, out, err, sizeof err), 0);
    int n = 0;
    for (int i = 0; i < gqr_gguf_count(a); i++) {
        const char *key;
        const gqr_gguf_value *v = gqr_gguf_at(a, i, &key), *w = gqr_gguf_get(b, key);
        if (strncmp(key, "tokenizer.", 10))
            continue;
        n++;
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_EQUAL(gqr_gguf_type(w), gqr_gguf_type(v));
        CU_ASSERT_EQUAL(gqr_gguf_array_len(w), gqr_gguf_array_len(v));
    }
    CU_ASSERT_EQUAL(n, 6);
    size_t len;
    const char *piece = gqr_gguf_array_string(gqr_gguf_get(b, "tokenizer.ggml.tokens"), 6, &len);
    CU_ASSERT(piece && len == 4 && !memcmp(piece, "\xe2\x96\x81" "a", 4));
    double s;
    CU_ASSERT(!gqr_gguf_array_float(gqr_gguf_get(b, "tokenizer.ggml.scores"), 7, &s) && s == -5);
    gqr_tf_close(a);
    gqr_tf_close(b);
    gqr_tokenizer *t = NULL;
    CU_ASSERT_EQUAL_FATAL(gqr_gguf_tokenizer(&t, out, 0, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(gqr_tokenizer_vocab_size(t), 8);
    CU_ASSERT_EQUAL(gqr_tokenizer_bos(t), 1);
    gqr_tokenizer_free(t);
}

/* (f) the errors, and the output importing as a model. */
static void test_errors(void) {
    const char *g = test_gqac(), *e = test_tmp("f.err"), *out = test_tmp("f.gguf");
    CU_ASSERT_EQUAL(test_sh("%s weights --random examples/tiny.gqa --format gguf --dtype q4_k -o %s "
                            "2>%s", g, out, e), 1);
    CU_ASSERT(test_file_has(e, "tensor 'token_embd.weight' has rows of 64 values, not whole Q4_K "
                               "blocks of 256; keep it at another type (--keep token_embd.weight)"));
    CU_ASSERT(!test_exists(out));
    CU_ASSERT_EQUAL(test_sh("%s weights --random examples/tiny.gqa --format safetensors --dtype q8_0 "
                            "-o %s 2>%s", g, out, e), 2);
    CU_ASSERT(test_file_has(e, "--dtype q8_0 is a quantized type: GGUF only"));
    const char *f32 = random_gguf("tests/models/q256.gqa", "f32", "f_f32.gguf");
    CU_ASSERT_EQUAL(test_sh("%s quantize %s -o %s --type q5_0 2>%s", g, f32, out, e), 2);
    CU_ASSERT(test_file_has(e, "--type is f32, f16, bf16, q8_0, q4_0, q4_k or q6_k, not 'q5_0'"));
    CU_ASSERT_EQUAL(test_sh("%s quantize %s -o %s 2>%s", g, f32, out, e), 2);
    CU_ASSERT(test_file_has(e, "gqac quantize needs --type"));
    CU_ASSERT_EQUAL(test_sh("%s quantize %s -o - --type q8_0 2>%s", g, f32, e), 2);
    /* a safetensors file without config.json beside it */
    const char *st = test_tmp("f_st/model.safetensors");
    CU_ASSERT_FATAL(test_sh_ok("mkdir -p %s/f_st && %s weights --random tests/models/q256.gqa "
                               "--format safetensors -o %s", test_dir(), g, st));
    CU_ASSERT_EQUAL(test_sh("%s quantize %s -o %s --type q8_0 2>%s", g, st, out, e), 1);
    CU_ASSERT(test_file_has(e, "f_st/config.json: cannot open"));
    CU_ASSERT(test_file_has(e, "comes from the config.json beside it, or give --model M.gqa"));
    /* the output is a model import reads */
    CU_ASSERT(test_sh_ok("%s quantize %s -o %s --type q4_k >/dev/null", g, f32, out));
    CU_ASSERT(test_sh_ok("%s import %s -o - >%s", g, out, test_tmp("f.gqa")));
    CU_ASSERT(test_file_has(test_tmp("f.gqa"), "dim     = 256"));
}

/* The runtime's writer refuses a quantized safetensors file itself. */
static void test_safetensors_refused(void) {
    double freqs[4] = {1, 0.1, 0.01, 0.001};
    gqa_model_api api = {GQA_API_VERSION, "t", "gqac", {0}, freqs, NULL, 0, 0, 0, 64, 0,
                         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL};
    api.shape = (gqa_shape){32, 32, 1, 4, 2, 8, 32, 4, 1, 0, 0, 10000.0, 1e-5, 0, 0, 0, 0, 4};
    float w[32 * 32 * 8] = {0};
    gqr_write_opts o = {.dtype = GQR_DT_Q8_0};
    CU_ASSERT_EQUAL(gqr_convert_write_opts(test_tmp("g.safetensors"), GQR_FORMAT_SAFETENSORS, &o,
                                           &api, w, err, sizeof err), -1);
    TEST_HAS(err, "safetensors has no quantized types (Q8_0); write GGUF");
}

/* A model with a dtype block: gqac weights --random writes each tensor in
 * its own type, GGUF (import reads the same block back) and the packed
 * .bin (the generated code's 159424 bytes after the header, the same
 * quantized bytes at each tensor's offset); --dtype is then refused. */
static void test_typed_model(void) {
    const char *gqa = test_tmp("typed.gqa"), *gguf = test_tmp("typed.gguf"), *bin = test_tmp("typed.bin");
    CU_ASSERT_FATAL(test_sh_ok("sed 's/weights  = f32/weights = q8_0\\n        ffn_down = f16\\n"
                               "        attn_v = [q4_0, bf16]/' examples/tiny.gqa > %s", gqa));
    CU_ASSERT_FATAL(test_sh_ok("%s weights --random %s --format gguf -o %s", test_gqac(), gqa, gguf));
    CU_ASSERT_FATAL(test_sh_ok("%s weights --random %s --format bin -o %s", test_gqac(), gqa, bin));
    CU_ASSERT(test_sh_ok("%s import %s -o - | grep -q 'attn_v      = \\[q4_0, bf16\\]'", test_gqac(), gguf));
    CU_ASSERT(test_sh_ok("%s import %s -o - | grep -q 'ffn_down    = f16'", test_gqac(), gguf));
    CU_ASSERT_EQUAL(test_sh("%s weights --random %s --format gguf --dtype q4_0 -o %s 2>/dev/null",
                            test_gqac(), gqa, gguf), 2);
    gqr_tensorfile *tf;
    CU_ASSERT_EQUAL_FATAL(gqr_tf_open(&tf, gguf, err, sizeof err), 0);
    const gqr_tensor *e = gqr_tf_find(tf, "token_embd.weight"), *v1 = gqr_tf_find(tf, "blk.1.attn_v.weight");
    CU_ASSERT_FATAL(e && v1 && e->dtype == GQR_DT_Q8_0 && v1->dtype == GQR_DT_BF16);
    size_t len = 0;
    unsigned char *b = (unsigned char *)test_read_file(bin, &len);
    CU_ASSERT_EQUAL(len, 28 + 159424);
    CU_ASSERT(b && len > 28 + e->n_bytes && !memcmp(b + 28, e->data, e->n_bytes));
    free(b);
    gqr_tf_close(tf);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("quantize", NULL, NULL);
    if (!s || !CU_add_test(s, "q8_0 and q4_0 against f32", test_q8_q4) ||
        !CU_add_test(s, "q4_k and q6_k against f32", test_k_types) ||
        !CU_add_test(s, "the same bytes from bin, gguf, safetensors", test_same_bytes) ||
        !CU_add_test(s, "the summary line", test_summary) ||
        !CU_add_test(s, "--keep", test_keep) ||
        !CU_add_test(s, "a GGUF's tokenizer carried", test_tokenizer_carried) ||
        !CU_add_test(s, "errors", test_errors) ||
        !CU_add_test(s, "safetensors refuses quantized types", test_safetensors_refused) ||
        !CU_add_test(s, "a typed model's own types, gguf and bin", test_typed_model))
        return 1;
    return cunit_run();
}
