/* util.c: the per-compilation arena, growable text buffers and checked
 * size arithmetic. */
#include "gqac.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Blocks are chained; an allocation never moves, so pointers stay valid. */
typedef struct Block {
    struct Block *next;
    size_t used, cap;
    double data[]; /* double: aligned for every object the compiler stores */
} Block;

struct Arena {
    Block *head;
};

Arena *arena_new(void) {
    Arena *a = calloc(1, sizeof *a);
    if (!a) {
        fputs("gqac: out of memory\n", stderr);
        abort();
    }
    return a;
}

void arena_free(Arena *a) {
    if (!a)
        return;
    for (Block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

void *arena_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    Block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) {
            fputs("gqac: out of memory\n", stderr);
            abort();
        }
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (unsigned char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* A format the C library cannot expand (a result past INT_MAX bytes) is a
 * gqac bug: stop rather than emit a truncated or garbled file. */
static size_t printed_size(int n) {
    if (n < 0) {
        fputs("gqac: internal error: a formatted string too large to build\n", stderr);
        abort();
    }
    return (size_t)n;
}

char *arena_printf(Arena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t n = printed_size(vsnprintf(NULL, 0, fmt, ap));
    va_end(ap);
    char *p = arena_alloc(a, n + 1);
    va_start(ap, fmt);
    vsnprintf(p, n + 1, fmt, ap);
    va_end(ap);
    return p;
}

bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

bool add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a)
        return false;
    *out = a + b;
    return true;
}

/* ---- Buf ---- */

void buf_putn(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            fputs("gqac: out of memory\n", stderr);
            abort();
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_puts(Buf *b, const char *s) {
    buf_putn(b, s, strlen(s));
}

void buf_printf(Buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t n = printed_size(vsnprintf(NULL, 0, fmt, ap));
    va_end(ap);
    char *tmp = malloc(n + 1);
    if (!tmp) {
        fputs("gqac: out of memory\n", stderr);
        abort();
    }
    va_start(ap, fmt);
    vsnprintf(tmp, n + 1, fmt, ap);
    va_end(ap);
    buf_putn(b, tmp, n);
    free(tmp);
}

void buf_free(Buf *b) {
    free(b->data);
    *b = (Buf){0};
}

/* ---- words ---- */

int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 31 || lb > 31)
        return 99;
    int row[32];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

bool whole(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    *out = v;
    return end != s && !*end && !errno && v >= lo && v <= hi;
}

double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
