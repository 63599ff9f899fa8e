/*
 * diag.c: diagnostics in the form C compilers use, so editors and scripts
 * that parse gcc output parse ours:
 *
 *   tiny.gqa:7:16: error: kv_heads (3) must divide heads (8)
 *       kv_heads = 3
 *                  ^
 */
#include "gqac.h"

#include <string.h>

void diag_init(Diag *d, const Source *src, FILE *out) {
    d->src = src;
    d->out = out;
    d->errors = 0;
}

/* A UTF-8 byte order mark is skipped, as C compilers skip it: 3 or 0. */
size_t diag_bom(const Source *s) {
    return s->len >= 3 && !memcmp(s->text, "\xef\xbb\xbf", 3) ? 3 : 0;
}

/* Lines end in \n, \r\n or a lone \r (old Mac files), as in C compilers. */
static const char *line_end(const char *p, const char *end) {
    while (p < end && *p != '\n' && *p != '\r')
        p++;
    return p;
}

const char *diag_line(const Source *s, int line, size_t *len) {
    const char *p = s->text + diag_bom(s), *end = s->text + s->len;
    for (int l = 1; l < line; l++) {
        const char *eol = line_end(p, end);
        if (eol == end)
            return NULL;
        p = eol + (eol[0] == '\r' && eol + 1 < end && eol[1] == '\n' ? 2 : 1);
    }
    *len = (size_t)(line_end(p, end) - p);
    return p;
}

/* Lines longer than this are echoed as a window around the caret. */
#define WINDOW 120

/* Echoes the line (tabs kept so the caret lines up) and marks the span;
 * control bytes print as '?' so a hostile file cannot drive the terminal. */
static void show_line(Diag *d, Loc loc) {
    size_t len;
    const char *text = diag_line(d->src, loc.line, &len);
    if (!text || loc.col < 1)
        return;
    size_t col = (size_t)loc.col - 1, first = col > WINDOW / 2 ? col - WINDOW / 2 : 0;
    size_t last = len - first > WINDOW ? first + WINDOW : len;
    size_t end = loc.end_col > loc.col ? (size_t)loc.end_col - 1 : col + 1;
    fputs(first > 0 ? "    ..." : "    ", d->out);
    for (size_t i = first; i < last; i++) {
        unsigned char c = (unsigned char)text[i];
        fputc(c == '\t' || c >= 0x20 ? c : '?', d->out);
    }
    fputs(last < len ? "...\n    " : "\n    ", d->out);
    if (first > 0)
        fputs("   ", d->out);
    for (size_t i = first; i < col; i++)
        fputc(i < len && text[i] == '\t' ? '\t' : ' ', d->out);
    fputc('^', d->out);
    for (size_t i = col + 1; i < end && i < last; i++)
        fputc('~', d->out);
    fputc('\n', d->out);
}

/* Messages quote the input (names, words); a 10 MB name is cut, not
 * echoed whole. */
#define MAX_MESSAGE 1000

static void put_message(FILE *out, const char *fmt, va_list ap) {
    char text[MAX_MESSAGE + 1];
    int n = vsnprintf(text, sizeof text, fmt, ap);
    fputs(text, out);
    fputs(n > MAX_MESSAGE ? "...\n" : "\n", out);
}

/* A Diag with no stream counts errors and prints nothing (for sizes that
 * a caller computes only to show, like gqac info's variants). */
static void report(Diag *d, Loc loc, const char *kind, const char *fmt, va_list ap) {
    if (!d->out)
        return;
    fprintf(d->out, "%s:%d:%d: %s: ", d->src->name, loc.line, loc.col, kind);
    put_message(d->out, fmt, ap);
    show_line(d, loc);
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(d, loc, "error", fmt, ap);
    va_end(ap);
    d->errors++;
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(d, loc, "note", fmt, ap);
    va_end(ap);
}

void diag_error_file(Diag *d, const char *fmt, ...) {
    va_list ap;
    d->errors++;
    if (!d->out)
        return;
    va_start(ap, fmt);
    fprintf(d->out, "%s: error: ", d->src->name);
    put_message(d->out, fmt, ap);
    va_end(ap);
}
