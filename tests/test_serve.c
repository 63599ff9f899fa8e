/*
 * test_serve.c: gqac serve's request side (compiler/serve_req.c), without
 * HTTP: the JSON parameters, field by field; the text the engine's tokens
 * make, cut at stop strings; what a stream may send at each token (never
 * a byte the final text lacks, never half a UTF-8 character); the text as
 * valid UTF-8.  tests/serve.sh drives the whole server through curl.
 *
 * Tokens come from the fortune example's tokenizer (SentencePiece-style
 * with byte fallback, so non-ASCII text arrives a byte at a time).
 */
#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_run.h"
#include "serve.h"
#include "testing.h"

static gqr_tokenizer *tok;

/* ---- parameters ---- */

static void test_defaults(void) {
    ServeParams p;
    const char *param;
    char err[256];
    const char *body = "{\"prompt\":\"hi\",\"model\":\"x\",\"echo\":true,\"top_p\":null}";
    CU_ASSERT_EQUAL_FATAL(serve_params_parse(body, strlen(body), &p, &param, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(p.prompt, "hi");
    CU_ASSERT_EQUAL(p.prompt_len, 2);
    CU_ASSERT_EQUAL(p.max_tokens, 16);
    CU_ASSERT_EQUAL(p.temperature, 1);
    CU_ASSERT_EQUAL(p.top_p, 1);
    CU_ASSERT_EQUAL(p.n_stop, 0);
    CU_ASSERT_FALSE(p.stream);
    serve_params_free(&p);
    body = "{\"prompt\":\"\",\"max_tokens\":7,\"temperature\":0,\"top_p\":0.5,\"seed\":9007199254740992,"
           "\"stop\":[\"a\",\"bc\",\"d\",\"e\"],\"stream\":true}";
    CU_ASSERT_EQUAL_FATAL(serve_params_parse(body, strlen(body), &p, &param, err, sizeof err), 0);
    CU_ASSERT_EQUAL(p.max_tokens, 7);
    CU_ASSERT_EQUAL(p.temperature, 0);
    CU_ASSERT_EQUAL(p.top_p, 0.5);
    CU_ASSERT_EQUAL(p.seed, 9007199254740992ull);
    CU_ASSERT_EQUAL(p.n_stop, 4);
    CU_ASSERT_STRING_EQUAL(p.stop[1], "bc");
    CU_ASSERT_TRUE(p.stream);
    serve_params_free(&p);
}

/* Each bad body is refused naming its field (NULL: the body itself). */
static void test_refusals(void) {
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"", NULL}, {"{", NULL}, {"[1]", NULL}, {"\"prompt\"", NULL}, {"{\"prompt\":\"a\"} x", NULL},
        {"{}", "prompt"}, {"{\"prompt\":5}", "prompt"}, {"{\"prompt\":[\"a\"]}", "prompt"},
        {"{\"prompt\":\"a\",\"max_tokens\":\"x\"}", "max_tokens"},
        {"{\"prompt\":\"a\",\"max_tokens\":0}", "max_tokens"},
        {"{\"prompt\":\"a\",\"max_tokens\":1.5}", "max_tokens"},
        {"{\"prompt\":\"a\",\"max_tokens\":3000000000}", "max_tokens"},
        {"{\"prompt\":\"a\",\"temperature\":-1}", "temperature"},
        {"{\"prompt\":\"a\",\"temperature\":\"hot\"}", "temperature"},
        {"{\"prompt\":\"a\",\"top_p\":0}", "top_p"}, {"{\"prompt\":\"a\",\"top_p\":1.01}", "top_p"},
        {"{\"prompt\":\"a\",\"seed\":-1}", "seed"}, {"{\"prompt\":\"a\",\"seed\":0.5}", "seed"},
        {"{\"prompt\":\"a\",\"seed\":1e300}", "seed"},
        {"{\"prompt\":\"a\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop"},
        {"{\"prompt\":\"a\",\"stop\":\"\"}", "stop"}, {"{\"prompt\":\"a\",\"stop\":[\"a\",\"\"]}", "stop"},
        {"{\"prompt\":\"a\",\"stop\":[1]}", "stop"}, {"{\"prompt\":\"a\",\"stop\":7}", "stop"},
        {"{\"prompt\":\"a\",\"stream\":1}", "stream"}, {"{\"prompt\":\"a\",\"stream\":\"true\"}", "stream"},
        {"{\"prompt\":\"a\",\"ignore_eos\":1}", "ignore_eos"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ServeParams p;
        const char *param = "unset";
        char err[256] = "";
        int rc = serve_params_parse(cases[i].body, strlen(cases[i].body), &p, &param, err, sizeof err);
        if (rc != -1 || (param ? !cases[i].param || strcmp(param, cases[i].param) : cases[i].param != NULL))
            fprintf(stderr, "\n    %s: rc %d, param %s (%s)\n", cases[i].body, rc, param ? param : "NULL", err);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT_TRUE(param ? cases[i].param && !strcmp(param, cases[i].param) : !cases[i].param);
        CU_ASSERT_TRUE(err[0] != 0);
        if (cases[i].param)
            TEST_HAS(err, cases[i].param);
        CU_ASSERT_PTR_NULL(p.prompt); /* freed and zeroed */
    }
}

/* ---- the text ---- */

/* A request over the text's tokens (BOS first, as serve tokenizes a
 * prompt), stop strings stops[0..n); ids in *ids, their count in *n_ids. */
static ServeReq *request(const char *text, const char *const *stops, int n_stops, int **ids, int *n_ids) {
    char err[256];
    int n = 0;
    gqr_tokenizer_encode(tok, text, strlen(text), 1, NULL, 0, &n, NULL, 0);
    *ids = malloc(sizeof **ids * (size_t)n);
    CU_ASSERT_EQUAL_FATAL(gqr_tokenizer_encode(tok, text, strlen(text), 1, *ids, n, n_ids, err, sizeof err), 0);
    ServeParams p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < n_stops; i++)
        p.stop[p.n_stop++] = strdup(stops[i]);
    ServeReq *r = serve_req_new(tok, &p);
    r->prev = (*ids)[0];
    return r;
}

/* Feeds the ids after BOS until on_token asks to stop; the tokens taken. */
static int feed(ServeReq *r, const int *ids, int n) {
    for (int i = 1; i < n; i++)
        if (serve_req_on_token(r, ids[i]))
            return i;
    return n - 1;
}

static void test_stop_cut(void) {
    static const char *const stops[] = {"zzz", "ing t"};
    int *ids, n;
    ServeReq *r = request("a dog doing the dishes", stops, 2, &ids, &n);
    int taken = feed(r, ids, n);
    CU_ASSERT_TRUE(taken < n - 1); /* stopped before "he dishes" */
    CU_ASSERT_EQUAL(r->len, strlen("a dog do"));
    CU_ASSERT_STRING_EQUAL(r->text, "a dog do");
    serve_req_unref(r);
    free(ids);
    /* no stop string in the text: all of it, and no stop */
    r = request("a dog doing the dishes", stops, 1, &ids, &n);
    CU_ASSERT_EQUAL(feed(r, ids, n), n - 1);
    CU_ASSERT_STRING_EQUAL(r->text, "a dog doing the dishes");
    serve_req_unref(r);
    free(ids);
}

/* Valid UTF-8 throughout: serve_utf8 changes nothing. */
static bool valid_utf8(const char *s, size_t n) {
    char *v = serve_utf8(s, n);
    bool same = v && strlen(v) == n && (!n || !memcmp(v, s, n));
    free(v);
    return same;
}

/* At every token, what a stream may send is a prefix of the final text
 * that ends on a whole character, and it only grows. */
static void check_ready(const char *text, const char *const *stops, int n_stops) {
    int *ids, n;
    ServeReq *whole = request(text, stops, n_stops, &ids, &n);
    feed(whole, ids, n);
    free(ids);
    ServeReq *r = request(text, stops, n_stops, &ids, &n);
    size_t last = 0;
    for (int i = 1; i < n; i++) {
        int stop = serve_req_on_token(r, ids[i]);
        size_t ready = serve_req_ready(r);
        CU_ASSERT_TRUE(ready >= last && ready <= whole->len);
        CU_ASSERT_TRUE(!ready || (ready <= whole->len && !memcmp(r->text, whole->text, ready)));
        CU_ASSERT_TRUE(valid_utf8(r->text, ready));
        last = ready;
        if (stop)
            break;
    }
    serve_req_ref(r); /* the engine's, which on_done gives back */
    serve_req_on_done(r, GQR_FINISH_STOP, n, n - 1);
    CU_ASSERT_TRUE(r->done);
    CU_ASSERT_EQUAL(serve_req_ready(r), whole->len); /* done: all of it */
    serve_req_unref(r);
    serve_req_unref(whole);
    free(ids);
}

static void test_stream_ready(void) {
    static const char *const stops[] = {"ing t", "\xc3\xa9t\xc3\xa9 X", "dish"};
    check_ready("a dog doing the dishes", stops, 1);
    check_ready("a dog doing the dishes", stops + 2, 1);
    check_ready("l'\xc3\xa9t\xc3\xa9 na\xc3\xafve \xe2\x98\x83 caf\xc3\xa9 \xf0\x9f\x98\x80 end", stops + 1, 1);
    check_ready("l'\xc3\xa9t\xc3\xa9 na\xc3\xafve \xe2\x98\x83 caf\xc3\xa9 \xf0\x9f\x98\x80 end", NULL, 0);
    /* a stop that never completes is held back only while it might */
    check_ready("\xc3\xa9t\xc3\xa9 Y \xc3\xa9t\xc3\xa9 X", stops + 1, 1);
}

static void test_utf8(void) {
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"abc", 3, "abc"},
        {"a\xff" "b", 3, "a\xef\xbf\xbd" "b"},
        {"\xe2\x98\x83", 3, "\xe2\x98\x83"},
        {"\xe2\x98", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong */
        {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},
        {"a\0b", 3, "a\xef\xbf\xbd" "b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *v = serve_utf8(cases[i].in, cases[i].n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        CU_ASSERT_STRING_EQUAL(v, cases[i].out);
        free(v);
    }
}

static void test_finish_names(void) {
    CU_ASSERT_STRING_EQUAL(serve_finish_name(GQR_FINISH_LENGTH), "length");
    CU_ASSERT_STRING_EQUAL(serve_finish_name(GQR_FINISH_STOP), "stop");
    CU_ASSERT_STRING_EQUAL(serve_finish_name(GQR_FINISH_CANCEL), "cancel");
    CU_ASSERT_STRING_EQUAL(serve_finish_name(GQR_FINISH_SHUTDOWN), "shutdown");
    CU_ASSERT_STRING_EQUAL(serve_finish_name(GQR_FINISH_ERROR), "error");
    CU_ASSERT_STRING_EQUAL(serve_finish_name(99), "error");
}

static int load_tokenizer(void) {
    char err[256];
    return gqr_tokenizer_load(&tok, "examples/fortune/tokenizer.bin", 512, err, sizeof err) ? -1 : 0;
}

static int free_tokenizer(void) {
    gqr_tokenizer_free(tok);
    return 0;
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite params = CU_add_suite("params", NULL, NULL),
              text = CU_add_suite("text", load_tokenizer, free_tokenizer);
    if (!params || !text || !CU_add_test(params, "defaults and every field", test_defaults) ||
        !CU_add_test(params, "refusals name the field", test_refusals) ||
        !CU_add_test(text, "stop strings cut the text", test_stop_cut) ||
        !CU_add_test(text, "a stream sends only what is decided", test_stream_ready) ||
        !CU_add_test(text, "valid UTF-8", test_utf8) || !CU_add_test(text, "finish reasons", test_finish_names)) {
        CU_cleanup_registry();
        return 1;
    }
    return cunit_run();
}
