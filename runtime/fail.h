/*
 * fail.h: how the runtime's functions fail.  They write a message into
 * the caller's err (errlen bytes; nothing when err is NULL) and return -1.
 */
#ifndef GQR_FAIL_H
#define GQR_FAIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline int gqr_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#endif
