/*
 * test_loadtest.c: the load client's parts that need no server
 * (tools/loadtest.c, included whole with its main renamed): percentiles,
 * the server-sent events of a completion stream fed in awkward pieces,
 * the /metrics gauges, the requests a seed makes, and the report's SVG.
 */
int loadtest_main(int argc, char **argv);
#define main loadtest_main
#include "../tools/loadtest.c"
#undef main

#include <CUnit/Basic.h>

#include "cunit_run.h"
#include "testing.h"

/* ---- percentiles ---- */

static void test_percentile_nearest_rank(void) {
    Samples s = {0};
    for (int i = 100; i >= 1; i--) /* unsorted on purpose */
        samples_add(&s, i);
    CU_ASSERT_EQUAL(percentile(&s, 50), 50);
    CU_ASSERT_EQUAL(percentile(&s, 99), 99);
    CU_ASSERT_EQUAL(percentile(&s, 100), 100);
    samples_add(&s, 1000); /* 101 samples: rank ceil(0.99 * 101) = 100 */
    CU_ASSERT_EQUAL(percentile(&s, 99), 100);
    CU_ASSERT_EQUAL(percentile(&s, 50), 51);
    free(s.v);
}

static void test_percentile_small(void) {
    Samples s = {0};
    CU_ASSERT(isnan(percentile(&s, 50)));
    samples_add(&s, 7);
    CU_ASSERT_EQUAL(percentile(&s, 50), 7);
    CU_ASSERT_EQUAL(percentile(&s, 99), 7);
    samples_add(&s, 3);
    CU_ASSERT_EQUAL(percentile(&s, 50), 3); /* nearest rank: no averaging */
    CU_ASSERT_EQUAL(percentile(&s, 99), 7);
    free(s.v);
}

/* ---- server-sent events ---- */

static const char *stream_text =
    ": a comment\r\n"
    "data: {\"choices\":[{\"text\":\"Hel\",\"index\":0,\"finish_reason\":null}]}\r\n\r\n"
    "data: {\"choices\":[{\"text\":\"lo\",\"index\":0,\"finish_reason\":null}]}\n\n"
    "data:{\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":\"length\"}],"
    "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5,\"total_tokens\":9}}\n\n"
    "data: [DONE]\n\n";

/* Feeds the text in pieces of `piece` bytes (1: every line split). */
static void feed(User *u, Tally *t, const char *text, size_t piece) {
    for (size_t i = 0, n = strlen(text); i < n; i += piece)
        sse_feed(u, t, text + i, i + piece <= n ? piece : n - i);
}

static void test_sse_pieces(void) {
    for (size_t piece = 1; piece <= 64; piece *= 4) {
        User u = {0};
        Tally t = {0};
        u.sent = now();
        feed(&u, &t, stream_text, piece);
        CU_ASSERT_EQUAL(u.events, 3); /* an empty piece of text is still an event */
        CU_ASSERT_EQUAL(u.generated, 5); /* the tokens: from usage */
        CU_ASSERT_STRING_EQUAL(u.finish, "length");
        CU_ASSERT(u.done_seen);
        CU_ASSERT_PTR_NULL(u.bad);
        CU_ASSERT_EQUAL_FATAL(t.ttft.n, 1);
        CU_ASSERT_EQUAL(t.itl.n, 2);
        CU_ASSERT(t.ttft.v[0] >= 0);
        free(u.line.data), free(t.ttft.v), free(t.itl.v);
    }
}

static void test_sse_broken(void) {
    User u = {0};
    Tally t = {0};
    feed(&u, &t, "data: {\"choices\":[{\"text\":\"a\",\"finish_reason\":null}]}\n\ndata: {\"choi", 7);
    CU_ASSERT_EQUAL(u.events, 1);
    CU_ASSERT(!u.done_seen); /* the stream broke: no [DONE], no finish_reason */
    CU_ASSERT_EQUAL(u.finish[0], 0);
    feed(&u, &t, "\n\n", 1); /* a cut JSON event is not a completion */
    CU_ASSERT_PTR_NOT_NULL(u.bad);
    User e = {0};
    feed(&e, &t, "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n", 5);
    CU_ASSERT_PTR_NOT_NULL(e.bad);
    CU_ASSERT_EQUAL(e.events, 0);
    free(u.line.data), free(e.line.data), free(t.ttft.v), free(t.itl.v);
}

/* ---- /metrics ---- */

static void test_metrics(void) {
    const char *text = "# HELP gqac_running_sequences Sequences stepping.\n"
                       "# TYPE gqac_running_sequences gauge\n"
                       "gqac_running_sequences 12\n"
                       "gqac_running_sequences_x 99\n"
                       "gqac_kv_pages_used 96\n"
                       "gqac_kv_pages_total 128\n"
                       "gqac_time_to_first_token_seconds_bucket{le=\"0.1\"} 5\n"
                       "gqac_queue_depth 3";
    Metrics m = parse_metrics(text);
    CU_ASSERT_EQUAL(m.running, 12);
    CU_ASSERT_EQUAL(m.pages_used, 96);
    CU_ASSERT_EQUAL(m.pages_total, 128);
    CU_ASSERT_EQUAL(m.queued, 3); /* the last line, without its newline */
    Metrics none = parse_metrics("# nothing\n");
    CU_ASSERT_EQUAL(none.running, -1);
    Metrics peak = {-1, -1, -1, -1};
    peak_of(&peak, m);
    peak_of(&peak, parse_metrics("gqac_running_sequences 4\ngqac_queue_depth 9\n"));
    CU_ASSERT_EQUAL(peak.running, 12);
    CU_ASSERT_EQUAL(peak.queued, 9);
}

/* ---- requests ---- */

static void test_requests_seeded(void) {
    Options o = {0};
    char *prompts[] = {"one", "two \"quoted\"", "three"};
    o.min_tokens = 32, o.max_tokens = 128, o.seed = 5;
    int lo = 1000, hi = 0, seen[3] = {0};
    for (int i = 0; i < 300; i++) {
        char *a = request_json(&o, prompts, 3, i), *b = request_json(&o, prompts, 3, i);
        CU_ASSERT_STRING_EQUAL(a, b);
        cJSON *j = cJSON_Parse(a);
        int k = cJSON_GetObjectItem(j, "max_tokens")->valueint;
        lo = k < lo ? k : lo, hi = k > hi ? k : hi;
        CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
        const char *p = cJSON_GetObjectItem(j, "prompt")->valuestring;
        for (int q = 0; q < 3; q++)
            seen[q] += !strcmp(p, prompts[q]);
        cJSON_Delete(j), free(a), free(b);
    }
    CU_ASSERT(lo >= 32 && lo < 40);
    CU_ASSERT(hi <= 128 && hi > 120);
    CU_ASSERT(seen[0] && seen[1] && seen[2]);
    o.seed = 6;
    char *a = request_json(&o, prompts, 3, 0);
    o.seed = 5;
    char *b = request_json(&o, prompts, 3, 0);
    CU_ASSERT(strcmp(a, b) != 0); /* the seed goes into the request */
    free(a), free(b);
}

/* ---- the report ---- */

static void test_svg(void) {
    cJSON *rows = cJSON_Parse("[{\"label\":\"MHA-kv8\",\"users\":1,\"tokens_per_s\":100,\"ttft_p99_ms\":5},"
                              "{\"label\":\"MHA-kv8\",\"users\":64,\"tokens_per_s\":300,\"ttft_p99_ms\":900},"
                              "{\"label\":\"GQA<&>\",\"users\":1,\"tokens_per_s\":110,\"ttft_p99_ms\":null},"
                              "{\"label\":\"GQA<&>\",\"users\":64,\"tokens_per_s\":800,\"ttft_p99_ms\":40}]");
    const char *path = test_tmp("loadtest.svg");
    CU_ASSERT_EQUAL_FATAL(write_svg(path, rows), 0);
    char *svg = test_slurp(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    int lines = 0;
    for (const char *p = strstr(svg, "<polyline"); p; p = strstr(p + 1, "<polyline"))
        lines++;
    CU_ASSERT_EQUAL(lines, 4); /* two panels, two labels */
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, "GQA&lt;&amp;&gt;"));
    CU_ASSERT_PTR_NULL(strstr(svg, "nan"));
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, "</svg>"));
    CU_ASSERT_EQUAL(tick_step(1234), 500);
    CU_ASSERT_EQUAL(tick_step(10), 2);
    free(svg);
    cJSON_Delete(rows);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("stats", NULL, NULL);
    CU_add_test(s, "nearest rank", test_percentile_nearest_rank);
    CU_add_test(s, "none, one, two", test_percentile_small);
    s = CU_add_suite("stream", NULL, NULL);
    CU_add_test(s, "events in pieces", test_sse_pieces);
    CU_add_test(s, "broken streams and error events", test_sse_broken);
    s = CU_add_suite("server", NULL, NULL);
    CU_add_test(s, "metrics gauges and peaks", test_metrics);
    CU_add_test(s, "seeded requests", test_requests_seeded);
    s = CU_add_suite("report", NULL, NULL);
    CU_add_test(s, "svg", test_svg);
    return cunit_run();
}
