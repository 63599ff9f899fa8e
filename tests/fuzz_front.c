/*
 * fuzz_front.c: a libFuzzer target for the whole compiler short of file
 * output: source -> front_end -> plan_model -> emit_c_model.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Icompiler -Ibuild tests/fuzz_front.c \
 *       compiler/{util,diag,front,sema,ir,plan,emit_c,cname,weights}.c \
 *       build/parser.c build/lexer.c build/templates.c -lm -o build/fuzz_front
 *   ./build/fuzz_front -dict=tests/fuzz_front.dict -max_len=4096 CORPUS examples tests/diag
 *
 * Properties beyond "no crash, leak or UB": a rejected input has at least
 * one error and an accepted one none; every diagnostic line is well formed
 * and bounded; the mangled prefix is one cname_check accepts; every
 * constant the plan prints is finite and in its C type's range
 * (plan_check).
 */
#include "gqac.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *null_out(void) {
    static FILE *f;
    if (!f)
        f = fopen("/dev/null", "w");
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    /* Diagnostics go to a memory stream so their text is exercised and
     * checked; /dev/null if the stream cannot be opened. */
    char *out = NULL;
    size_t out_len = 0;
    FILE *mem = open_memstream(&out, &out_len);
    FILE *sink = mem ? mem : null_out();
    if (!sink) {
        free(text);
        return 0;
    }

    Source src = {"fuzz.gqa", text, size};
    Diag d;
    diag_init(&d, &src, sink);
    Arena *a = arena_new();
    Model m;
    Stats s;
    int size_bits = size > 0 && (data[0] & 1) ? 32 : 64;
    bool ok = front_end(a, &d, &m, &s, size_bits);
    if (ok != (d.errors == 0))
        abort(); /* failure without an error, or success with one */

    if (ok) {
        const char *prefix = cname_mangle(a, m.name);
        if (cname_check(prefix))
            abort(); /* the mangled prefix must be usable as is */
        Plan p;
        Buf c = {0}, h = {0};
        CodeOptions opt = {size > 0 && (data[0] & 2) ? TARGET_FREESTANDING : TARGET_HOSTED,
                           size > 0 && (data[0] & 4), false};
        plan_model(&m, prefix, opt, &p, a);
        if (plan_check(&p))
            abort(); /* a constant the C compiler would reject, or misread */
        emit_c_model(&p, prefix, "fuzz.h", size > 1 && (data[1] & 1), &c, &h);
        if (!c.data || !h.data || strlen(c.data) != c.len || strlen(h.data) != h.len)
            abort(); /* generated C is text: no NUL inside */
        buf_free(&c);
        buf_free(&h);
        /* The variants gqac info computes must not fail where the model passed. */
        Diag quiet;
        Stats vs;
        FILE *dn = null_out();
        if (dn) {
            diag_init(&quiet, &src, dn);
            Model mha = ir_with_kv_heads(&m, m.heads), mqa = ir_with_kv_heads(&m, 1);
            (void)ir_stats(&mha, &vs, &quiet, size_bits, PLAN_BATCH);
            (void)ir_stats(&mqa, &vs, &quiet, size_bits, PLAN_BATCH);
        }
    }

    if (mem) {
        fclose(mem);
        /* Every line is "fuzz.gqa:L:C: error|note: ..." or an echo (4 spaces). */
        for (char *line = out; line && *line;) {
            char *nl = strchr(line, '\n');
            if (!nl || nl - line > 1100)
                abort(); /* diagnostics end in a newline, and are cut (diag.c) */
            if (strncmp(line, "fuzz.gqa:", 9) != 0 && strncmp(line, "    ", 4) != 0)
                abort();
            line = nl + 1;
        }
        free(out);
    }
    arena_free(a);
    free(text);
    return 0;
}
