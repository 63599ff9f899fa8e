/*
 * output.c: how gqac writes what it makes.  Needs: runtime/outfile.c (each
 * file whole or not at all; devices written in place, directories
 * refused).  Provides: a set of files that lands together, every target
 * checked before the first byte is written.
 */
#include "gqac.h"
#include "outfile.h"

#include <errno.h>
#include <string.h>

bool output_check(const char *const *paths, int n, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        if (gqr_out_check(paths[i], err, errlen))
            return false;
        for (int j = 0; j < i; j++)
            if (strcmp(paths[i], "-") && gqr_out_same(paths[i], paths[j])) {
                snprintf(err, errlen, "%s and %s are the same file: each output needs its own",
                         paths[j], paths[i]);
                return false;
            }
    }
    return true;
}

bool output_write(const char *const *paths, const Buf *bufs, int n, char *err, size_t errlen) {
    gqr_out out[OUTPUT_MAX];
    int opened = 0;
    if (n > OUTPUT_MAX) {
        snprintf(err, errlen, "%d files to write, more than the %d gqac writes at once", n, OUTPUT_MAX);
        return false;
    }
    bool ok = output_check(paths, n, err, errlen);
    for (; ok && opened < n; opened++) {
        if (gqr_out_open(&out[opened], paths[opened], err, errlen)) {
            ok = false;
            break;
        }
        const Buf *b = &bufs[opened];
        if (b->len && fwrite(b->data, 1, b->len, out[opened].f) != b->len) {
            snprintf(err, errlen, "%s: cannot write: %s", paths[opened], strerror(errno));
            ok = false;
        }
    }
    /* Renamed into place only when every one is whole. */
    for (int i = 0; i < opened; i++)
        if (!ok)
            gqr_out_abort(&out[i]);
        else if (gqr_out_commit(&out[i], err, errlen))
            ok = false;
    return ok;
}
