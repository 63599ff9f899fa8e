/*
 * test_convert.c: the same weights through every file format, and the
 * model descriptions gqac imports.  Runs build/gqac (or $GQAC) to write
 * the files, loads them with the runtime into generated models, and
 * compares logits with those of the llama2.c checkpoint:
 *
 *   - GGUF and safetensors in f32 hold the very floats of the .bin, so the
 *     logits must be identical, bit for bit;
 *   - f16 and bf16 round each weight: GGUF and safetensors of one dtype
 *     must agree with each other exactly, and with the f32 logits closely;
 *   - Hugging Face's q/k row order: the adjacent-pair model loading a
 *     safetensors file (written in HF's order, reordered back at load) is
 *     identical to the .bin, and a halves model fed the same file as it
 *     stands computes the same function (equal within float rounding).
 */
#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_run.h"
#include "gqr.h"
#include "tokenizer.h"
#include "gqa_api.h"
#include "testing.h"

/* Every model of tests/models.def is linked in; the tests take a few. */
#define MODEL(stem, ...) extern const gqa_model_api stem##_api;
#include "models.def"
#undef MODEL

static const char *gqac;
enum { N_POS = 12 };

/* Logits of positions 0..N_POS-1 of a fixed token sequence, or NULL (with
 * the loader's message printed) if the file does not load. */
static float *run_file(const gqa_model_api *m, const char *path) {
    gqr_checkpoint ck;
    char err[512];
    if (gqr_checkpoint_load(&ck, path, m, GQR_LOAD_MMAP, err, sizeof err)) {
        printf("\n  %s\n", err);
        return NULL;
    }
    void *arena = gqr_arena_alloc(m);
    gqa_state *s;
    int V = m->shape.vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)(N_POS * V));
    CU_ASSERT_FATAL(m->init_tensors(&s, arena, m->arena_bytes, ck.tensors, ck.n_tensors) == GQA_OK);
    for (int pos = 0; pos < N_POS; pos++)
        CU_ASSERT(m->forward(s, (pos * 131 + 7) % V, pos, logits + (size_t)pos * V) == GQA_OK);
    gqr_arena_free(arena);
    gqr_checkpoint_close(&ck);
    return logits;
}

/* gqac weights --random in FORMAT and DTYPE for the model in gqa. */
static const char *write_weights(const char *gqa, const char *stem, const char *format,
                                 const char *dtype) {
    const char *path = test_tmp(stem);
    int rc = test_sh("%s weights --random %s --seed 7 --format %s --dtype %s -o %s", gqac, gqa, format,
                dtype, path);
    CU_ASSERT_EQUAL(rc, 0);
    return path;
}

static void check_formats(const gqa_model_api *m, const char *gqa) {
    size_t n = (size_t)N_POS * (size_t)m->shape.vocab_size;
    const char *bin = write_weights(gqa, "w.bin", "bin", "f32");
    float *want = run_file(m, bin);
    float *gguf = run_file(m, write_weights(gqa, "w.gguf", "gguf", "f32"));
    float *st = run_file(m, write_weights(gqa, "w.safetensors", "safetensors", "f32"));
    float *gguf16 = run_file(m, write_weights(gqa, "w16.gguf", "gguf", "f16"));
    float *st16 = run_file(m, write_weights(gqa, "w16.safetensors", "safetensors", "f16"));
    float *bf = run_file(m, write_weights(gqa, "wb.safetensors", "safetensors", "bf16"));
    CU_ASSERT_FATAL(want && gguf && st && gguf16 && st16 && bf);
    CU_ASSERT(memcmp(want, gguf, n * sizeof *want) == 0);
    CU_ASSERT(memcmp(want, st, n * sizeof *want) == 0);
    CU_ASSERT(memcmp(gguf16, st16, n * sizeof *want) == 0);
    /* f16 keeps 11 significant bits, bf16 8: the logits move accordingly */
    CU_ASSERT(test_rel_diff(gguf16, want, n) < 1e-2);
    CU_ASSERT(test_rel_diff(bf, want, n) < 5e-2);
    CU_ASSERT(test_rel_diff(bf, want, n) > 0); /* the rounding did happen */
    free(want), free(gguf), free(st), free(gguf16), free(st16), free(bf);
}

static void test_tiny_formats(void) { check_formats(&tiny_api, "examples/tiny.gqa"); }
static void test_g3bias_formats(void) { check_formats(&g3bias_api, "tests/models/g3bias.gqa"); }
static void test_halves_formats(void) { check_formats(&halves_api, "tests/models/halves.gqa"); }

/* The same function in both RoPE layouts. */
static void test_hf_permutation(void) {
    size_t n = (size_t)N_POS * (size_t)tiny_api.shape.vocab_size;
    const char *st = write_weights("examples/tiny.gqa", "p.safetensors", "safetensors", "f32");
    float *adjacent = run_file(&tiny_api, write_weights("examples/tiny.gqa", "p.bin", "bin", "f32"));
    float *halves = run_file(&tiny_halves_api, st);
    CU_ASSERT_FATAL(adjacent && halves);
    double diff = test_rel_diff(halves, adjacent, n);
    CU_ASSERT(diff < 1e-5);
    CU_ASSERT(memcmp(halves, adjacent, n * sizeof *halves) != 0 || diff == 0);
    /* and without the reordering the halves model would compute another function */
    float *wrong = run_file(&tiny_halves_api, write_weights("examples/tiny.gqa", "p2.bin", "bin", "f32"));
    CU_ASSERT_FATAL(wrong != NULL);
    CU_ASSERT(test_rel_diff(wrong, adjacent, n) > 1e-3);
    free(adjacent), free(halves), free(wrong);
}

/* A file of another model is refused, naming the tensor and both shapes. */
static void expect_error(const gqa_model_api *m, const char *path, const char *want) {
    gqr_checkpoint ck;
    char err[512] = "";
    CU_ASSERT(gqr_checkpoint_load(&ck, path, m, GQR_LOAD_MMAP, err, sizeof err) != 0);
    if (!strstr(err, want))
        printf("\n  expected '%s' in: %s\n", want, err);
    CU_ASSERT(strstr(err, want) != NULL);
    CU_ASSERT(ck.weights == NULL);
}

static void test_mismatches(void) {
    const char *g3 = write_weights("tests/models/g3bias.gqa", "g3.gguf", "gguf", "f32");
    const char *tiny = write_weights("examples/tiny.gqa", "t.safetensors", "safetensors", "f16");
    expect_error(&tiny_api, g3, "has shape [300, 48], the model expects [512, 64]");
    expect_error(&g3bias_api, tiny, "has shape [512, 64], the model expects [300, 48]");
    /* biases where the model has none, and the other way round */
    const char *nb = write_weights("tests/models/g3nobias.gqa", "nb.gguf", "gguf", "f32");
    expect_error(&g3nobias_api, g3, "tensor 'blk.0.attn_q.bias' is not part of the model");
    expect_error(&g3bias_api, nb, "tensor 'blk.0.attn_q.bias' is missing");
    expect_error(&tiny_api, test_write_tmp("junk.gguf", "GGUF\x01\x00\x00\x00", 8), "version 1");
}

/* Llama 3's scaling travels in GGUF as llama.cpp's rope_freqs.weight: the
 * model that wrote it loads it, one with other scaling is refused. */
static void test_rope_freqs(void) {
    const char *gqa = "tests/models/llama3.gqa";
    check_formats(&llama3_api, gqa);
    const char *gguf = write_weights(gqa, "l3.gguf", "gguf", "f32");
    CU_ASSERT_EQUAL(test_sh("%s import %s -o %s 2> %s", gqac, gguf, test_tmp("l3.gqa"), test_tmp("err.txt")),
                    1);
    CU_ASSERT_EQUAL(test_sh("grep -q 'rope_freqs.weight' %s", test_tmp("err.txt")), 0);
    expect_error(&llama3_x4_api, gguf, "'rope_freqs.weight' scales RoPE pair 1 to");
    /* a file without the table is taken at the model's word (older llama.cpp files) */
    float *a = run_file(&llama3_x4_api, write_weights(gqa, "l3.safetensors", "safetensors", "f32"));
    CU_ASSERT(a != NULL);
    free(a);
}

/* ---- the trained example against PyTorch ---- */

static int json_ints(const cJSON *a, int *out, int cap) {
    int n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) if (n < cap) out[n++] = x->valueint;
    return n;
}

/* examples/fortune/reference.json is what tools/train_fortune.py's PyTorch
 * model computed for its prompt: the ids sentencepiece gave it, the five
 * best logits after it, and twenty greedy tokens.  The generated code, the
 * tokenizer and `gqac run` must give the same. */
static void test_fortune_reference(void) {
    cJSON *ref = test_read_json("examples/fortune/reference.json");
    CU_ASSERT_FATAL(ref != NULL);
    int want[64], got[64], n_want, n_got = 0;
    n_want = json_ints(cJSON_GetObjectItem(ref, "prompt_ids"), want, 64);
    gqr_tokenizer *tok;
    char err[256];
    const char *prompt = cJSON_GetObjectItem(ref, "prompt")->valuestring;
    CU_ASSERT_FATAL(gqr_tokenizer_load(&tok, "examples/fortune/tokenizer.bin", 512, err, sizeof err) == 0);
    CU_ASSERT(gqr_tokenizer_encode(tok, prompt, strlen(prompt), 1, got, 64, &n_got, err, sizeof err) == 0);
    CU_ASSERT(n_got == n_want && memcmp(got, want, sizeof *got * (size_t)n_want) == 0);
    gqr_tokenizer_free(tok);

    gqr_checkpoint ck;
    CU_ASSERT_FATAL(gqr_checkpoint_load(&ck, "examples/fortune/fortune.bin", &fortune_api,
                                        GQR_LOAD_MMAP, err, sizeof err) == 0);
    void *arena = gqr_arena_alloc(&fortune_api);
    gqa_state *s;
    float logits[512];
    CU_ASSERT_FATAL(fortune_api.init(&s, arena, fortune_api.arena_bytes, ck.weights, ck.weight_bytes) == GQA_OK);
    for (int pos = 0; pos < n_want; pos++)
        CU_ASSERT(fortune_api.forward(s, want[pos], pos, logits) == GQA_OK);
    const cJSON *top = cJSON_GetObjectItem(ref, "last_position_top5");
    int ids[5];
    json_ints(cJSON_GetObjectItem(top, "ids"), ids, 5);
    const cJSON *l;
    int i = 0;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(top, "logits")) {
        /* float32 both sides, summed in other orders: 1e-4 of the scale */
        CU_ASSERT(fabs(logits[ids[i]] - l->valuedouble) < 1e-4 * fabs(l->valuedouble) + 1e-4);
        i++;
    }
    gqr_arena_free(arena);
    gqr_checkpoint_close(&ck);

    char tokens[512] = "";
    for (i = 0; i < n_want; i++)
        snprintf(tokens + strlen(tokens), sizeof tokens - strlen(tokens), "%s%d", i ? "," : "", want[i]);
    CU_ASSERT_EQUAL(test_sh("%s run examples/fortune.gqa --weights examples/fortune/fortune.bin "
                       "--tokens %s -n 20 --temp 0 > %s 2> /dev/null", gqac, tokens, test_tmp("greedy.txt")), 0);
    FILE *f = fopen(test_tmp("greedy.txt"), "r");
    int greedy[20], n_greedy = json_ints(cJSON_GetObjectItem(ref, "greedy_20_ids"), greedy, 20);
    CU_ASSERT_FATAL(f != NULL && n_greedy == 20);
    for (i = 0; i < 20; i++) {
        int id = -1;
        CU_ASSERT(fscanf(f, "%d", &id) == 1 && id == greedy[i]);
    }
    fclose(f);
    cJSON_Delete(ref);
}

/* ---- gqac import ---- */

/* The imported description, compared with the golden file beside it. */
static void check_import(const char *stem) {
    char golden[256], json[256];
    snprintf(json, sizeof json, "tests/import/%s.json", stem);
    snprintf(golden, sizeof golden, "tests/import/%s.gqa", stem);
    CU_ASSERT_EQUAL(test_sh("%s import %s -o %s", gqac, json, test_tmp("imported.gqa")), 0);
    int same = test_sh("cmp -s %s %s", golden, test_tmp("imported.gqa")) == 0;
    if (!same)
        test_sh("diff -u %s %s", golden, test_tmp("imported.gqa"));
    CU_ASSERT(same);
}

static void test_import_configs(void) {
    check_import("tinyllama-1.1b");
    check_import("llama-3.2-1b");
    check_import("mistral-7b");
    check_import("qwen2.5-0.5b");
}

/* gqac info of the original and of what came back through a weights file:
 * the same shape, line for line after the first (which names the file). */
static void check_round_trip(const char *gqa, const char *format) {
    const char *w = write_weights(gqa, format[0] == 'g' ? "rt.gguf" : "rt.bin", format, "f32");
    CU_ASSERT_EQUAL(test_sh("%s import %s -o %s", gqac, w, test_tmp("rt.gqa")), 0);
    CU_ASSERT_EQUAL(test_sh("%s info %s | tail -n +2 > %s", gqac, gqa, test_tmp("a.txt")), 0);
    CU_ASSERT_EQUAL(test_sh("%s info %s | tail -n +2 > %s", gqac, test_tmp("rt.gqa"), test_tmp("b.txt")), 0);
    int same = test_sh("cmp -s %s %s", test_tmp("a.txt"), test_tmp("b.txt")) == 0;
    if (!same)
        test_sh("diff -u %s %s", test_tmp("a.txt"), test_tmp("b.txt"));
    CU_ASSERT(same);
}

static void test_import_round_trip(void) {
    check_round_trip("examples/tiny.gqa", "gguf");
    check_round_trip("tests/models/g3bias.gqa", "gguf");
    check_round_trip("examples/tiny.gqa", "bin");
}

/* A bad config.json: exit status 1 and the message naming the problem. */
static void expect_import_error(const char *json, const char *want) {
    test_write_tmp("bad.json", json, strlen(json));
    int rc = test_sh("%s import %s -o %s 2> %s", gqac, test_tmp("bad.json"), test_tmp("bad.gqa"), test_tmp("err.txt"));
    CU_ASSERT(rc == 1);
    int found = test_sh("grep -qF \"%s\" %s", want, test_tmp("err.txt")) == 0;
    if (!found)
        test_sh("echo '  expected: %s'; cat %s", want, test_tmp("err.txt"));
    CU_ASSERT(found);
}

#define BASE "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, " \
             "\"intermediate_size\": 128, \"vocab_size\": 100, \"max_position_embeddings\": 64"

/* gqac import of a config.json made of json: the .gqa has each of want
 * (NULL-ended) and none of unwanted. */
static void expect_import(const char *json, const char *const *want, const char *unwanted) {
    const char *out = test_tmp("win-import.gqa");
    test_write_tmp("win.json", json, strlen(json));
    CU_ASSERT_FATAL(test_sh_ok("%s import %s -o %s", gqac, test_tmp("win.json"), out));
    char *text = test_read_file(out, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    bool ok = !unwanted || !strstr(text, unwanted);
    for (; *want; want++)
        ok = ok && strstr(text, *want);
    if (!ok)
        printf("\n  unexpected import of %s:\n%s", json, text);
    CU_ASSERT(ok);
    free(text);
}

/* Mistral's window and Qwen2's where global_every can say which layers
 * have it (all or none); where it cannot, the context is capped. */
static void test_import_windows(void) {
    const char *windowed[] = {"context = 64\n", "window     = 16\n", NULL};
    const char *plain[] = {"context = 64\n", NULL};
    const char *capped[] = {"context = 16\n", "global_every cannot express", NULL};
    expect_import("{\"model_type\": \"mistral\", \"sliding_window\": 16, " BASE "}", windowed, NULL);
    expect_import("{\"model_type\": \"mistral\", \"sliding_window\": 64, " BASE "}", plain, "window     =");
    expect_import("{\"model_type\": \"mistral\", \"sliding_window\": null, " BASE "}", plain, "window     =");
    expect_import("{\"model_type\": \"qwen2\", \"use_sliding_window\": true, \"sliding_window\": 16, "
                  "\"max_window_layers\": 0, " BASE "}", windowed, NULL);
    expect_import("{\"model_type\": \"qwen2\", \"use_sliding_window\": true, \"sliding_window\": 16, "
                  "\"max_window_layers\": 1, " BASE "}", capped, "window     =");
    expect_import("{\"model_type\": \"qwen2\", \"use_sliding_window\": true, \"sliding_window\": 16, "
                  "\"max_window_layers\": 2, " BASE "}", plain, "window     =");
    expect_import("{\"model_type\": \"qwen2\", \"use_sliding_window\": true, \"sliding_window\": 16, "
                  BASE "}", plain, "window     ="); /* max_window_layers 28 by default */
    expect_import("{\"model_type\": \"qwen2\", \"use_sliding_window\": false, \"sliding_window\": 16, "
                  "\"max_window_layers\": 0, " BASE "}", plain, "window     =");
    expect_import_error("{\"model_type\": \"mistral\", \"sliding_window\": 1.5, " BASE "}",
                        "'sliding_window' must be a positive integer");
    /* GGUF: llama.cpp's sliding_window and sliding_window_pattern keys */
    const char *gqa = test_tmp("win.gqa");
    CU_ASSERT_FATAL(test_write_text(gqa, "model \"win\" {\n vocab = 32\n dim = 32\n layers = 4\n context = 64\n"
                                         " attention {\n heads = 4\n kv_heads = 2\n window = 16\n"
                                         " global_every = 2\n }\n ffn swiglu {\n hidden = 64\n }\n}\n"));
    check_round_trip(gqa, "gguf");
    CU_ASSERT(test_file_has(test_tmp("b.txt"), "window 16; global_every 2: 2 of 4 layers"));
}

static void test_import_errors(void) {
    expect_import_error("{\"model_type\": \"gpt2\", " BASE "}",
                        "unsupported architecture 'gpt2' (supported: llama, mistral, qwen2)");
    expect_import_error("{\"model_type\": \"llama\", \"num_experts\": 8, " BASE "}",
                        "key 'num_experts' is not understood");
    expect_import_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\", "
                        "\"factor\": 4}, " BASE "}",
                        "rope_scaling of type 'yarn' is not supported");
    expect_import_error("{\"model_type\": \"llama\", \"hidden_act\": \"gelu\", " BASE "}",
                        "hidden_act 'gelu' is not supported");
    expect_import_error("{\"model_type\": \"llama\", \"hidden_size\": 64}", "missing key");
    expect_import_error("{\"model_type\": \"llama\", \"num_key_value_heads\": 3, " BASE "}",
                        "kv_heads (3) must divide heads (4)");
    expect_import_error("[1, 2", "not a JSON object");
}

/* ---- gqac import: weight types ---- */

/* Rows of 256 and 512: whole blocks of every type. */
#define TYPED_GQA "model \"typed\" {\n vocab = 64\n dim = 256\n layers = 3\n context = 16\n" \
                  " attention {\n heads = 4\n kv_heads = 2\n }\n ffn swiglu {\n hidden = 512\n }\n}\n"

/* gqac import of path: the .gqa's dtype block (from "    dtype {" to the
 * end) is want exactly. */
static void expect_types(const char *path, const char *want) {
    const char *out = test_tmp("typed-import.gqa");
    CU_ASSERT_FATAL(test_sh_ok("%s import %s -o %s", gqac, path, out));
    char *text = test_read_file(out, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    const char *block = strstr(text, "    dtype {");
    bool same = block ? !strcmp(block, want) : !*want;
    if (!same)
        printf("\n  wanted:\n%s\n  in:\n%s", want, text);
    CU_ASSERT(same);
    free(text);
    /* what import wrote is a model gqac accepts */
    CU_ASSERT(test_sh_ok("%s check %s", gqac, out));
}

static void test_import_quantized(void) {
    const char *gqa = test_tmp("typed.gqa");
    CU_ASSERT_FATAL(test_write_text(gqa, TYPED_GQA));
    static const char *const types[] = {"q8_0", "q4_0", "q4_k", "q6_k", "f16", "bf16"};
    for (int i = 0; i < 6; i++) {
        char want[128];
        snprintf(want, sizeof want, "    dtype {\n        weights     = %s\n    }\n}\n", types[i]);
        expect_types(write_weights(gqa, "typed.gguf", "gguf", types[i]), want);
    }
    /* f32 writes no dtype block at all */
    expect_types(write_weights(gqa, "typed.gguf", "gguf", "f32"), "");
}

/* A Q4_K_M-like file: a few tensors, some of them in some layers only,
 * kept at Q6_K. */
static void test_import_mixed(void) {
    const char *gqa = test_tmp("typed.gqa"), *mixed = test_tmp("mixed.gguf");
    CU_ASSERT_FATAL(test_write_text(gqa, TYPED_GQA));
    const char *f32 = write_weights(gqa, "typed32.gguf", "gguf", "f32");
    CU_ASSERT_FATAL(test_sh_ok("%s quantize %s -o %s --type q4_k --keep blk.0.ffn_down.weight,"
                               "blk.2.ffn_down.weight,blk.1.attn_v.weight,output.weight,"
                               "blk.0.attn_q.weight,blk.1.attn_q.weight,blk.2.attn_q.weight "
                               "--keep-type q6_k > /dev/null", gqac, f32, mixed));
    expect_types(mixed, "    dtype {\n        weights     = q4_k\n        attn_q      = q6_k\n"
                        "        attn_v      = [q4_k, q6_k, q4_k]\n"
                        "        ffn_down    = [q6_k, q4_k, q6_k]\n        output      = q6_k\n    }\n}\n");
    /* the most common type is weights' even when it is not the first seen */
    CU_ASSERT_FATAL(test_sh_ok("%s quantize %s -o %s --type q8_0 --keep token_embd.weight "
                               "--keep-type f16 > /dev/null", gqac, f32, mixed));
    expect_types(mixed, "    dtype {\n        weights     = q8_0\n        token_embd  = f16\n    }\n}\n");
}

/* Safetensors: the config.json's folder holds model.safetensors, whose
 * tensors' types are imported. */
static void test_import_safetensors_types(void) {
    const char *gqa = test_tmp("typed.gqa");
    CU_ASSERT_FATAL(test_write_text(gqa, TYPED_GQA));
    CU_ASSERT_FATAL(test_sh_ok("mkdir -p %s", test_tmp("st")));
    CU_ASSERT_FATAL(test_write_text(test_tmp("st/config.json"),
        "{\"model_type\": \"llama\", \"hidden_size\": 256, \"num_hidden_layers\": 3, "
        "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 512, "
        "\"vocab_size\": 64, \"max_position_embeddings\": 16}"));
    write_weights(gqa, "st/model.safetensors", "safetensors", "bf16");
    expect_types(test_tmp("st"), "    dtype {\n        weights     = bf16\n    }\n}\n");
    write_weights(gqa, "st/model.safetensors", "safetensors", "f16");
    expect_types(test_tmp("st/config.json"), "    dtype {\n        weights     = f16\n    }\n}\n");
}

/* A ggml type gqac does not know: the tensor, the type by name and
 * number, and the types it knows.  The type field follows the tensor's
 * name, its dim count and its dims. */
static void test_import_unknown_type(void) {
    const char *gqa = test_tmp("typed.gqa");
    CU_ASSERT_FATAL(test_write_text(gqa, TYPED_GQA));
    const char *path = write_weights(gqa, "unknown.gguf", "gguf", "q8_0");
    size_t len = 0;
    unsigned char *buf = (unsigned char *)test_read_file(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    static const char name[] = "blk.1.attn_v.weight";
    unsigned char *at = NULL;
    for (size_t i = 0; i + sizeof name < len && !at; i++)
        if (!memcmp(buf + i, name, sizeof name - 1))
            at = buf + i + sizeof name - 1;
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    CU_ASSERT_EQUAL(at[0], 2); /* two dims */
    static const struct { uint32_t id; const char *want; } bad[] = {
        {17, "tensor 'blk.1.attn_v.weight' has type IQ2_XS (17); supported: F32, F16, BF16, Q4_0, "
             "Q8_0, Q4_K, Q6_K"},
        {3, "tensor 'blk.1.attn_v.weight' has type Q4_1 (3); supported:"},
    };
    for (int i = 0; i < 2; i++) {
        test_put_le32(at + 4 + 2 * 8, bad[i].id);
        test_write_tmp("unknown.gguf", buf, len);
        CU_ASSERT_EQUAL(test_sh("%s import %s -o %s 2> %s", gqac, path, test_tmp("unknown.gqa"),
                                test_tmp("err.txt")), 1);
        bool found = test_file_has(test_tmp("err.txt"), bad[i].want);
        if (!found)
            test_sh("echo '  expected: %s'; cat %s", bad[i].want, test_tmp("err.txt"));
        CU_ASSERT(found);
    }
    free(buf);
}

int main(void) {
    gqac = test_gqac();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("formats", NULL, NULL);
    CU_add_test(s, "tiny: bin, GGUF, safetensors; f32, f16, bf16", test_tiny_formats);
    CU_add_test(s, "g3bias (biases, separate classifier)", test_g3bias_formats);
    CU_add_test(s, "halves (Hugging Face's RoPE pairs)", test_halves_formats);
    CU_add_test(s, "Llama 3 RoPE scaling in GGUF (rope_freqs.weight)", test_rope_freqs);
    CU_add_test(s, "fortune: PyTorch's logits, tokens and greedy text", test_fortune_reference);
    CU_add_test(s, "q/k rows in both RoPE layouts", test_hf_permutation);
    CU_add_test(s, "files of another model", test_mismatches);
    s = CU_add_suite("import", NULL, NULL);
    CU_add_test(s, "config.json of four published models", test_import_configs);
    CU_add_test(s, "GGUF and llama2.c headers round trip", test_import_round_trip);
    CU_add_test(s, "bad config.json", test_import_errors);
    CU_add_test(s, "sliding windows", test_import_windows);
    CU_add_test(s, "GGUF of each weight type", test_import_quantized);
    CU_add_test(s, "GGUF of mixed types, per kind and per layer", test_import_mixed);
    CU_add_test(s, "safetensors' f16 and bf16", test_import_safetensors_types);
    CU_add_test(s, "a ggml type gqac does not know", test_import_unknown_type);
    return cunit_run();
}
