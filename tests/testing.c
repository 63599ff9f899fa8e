/*
 * testing.c: the helpers of testing.h.
 */
#include "testing.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char dir[] = "/tmp/gqac-test-XXXXXX";
static int made;

static void remove_dir(void) {
    test_sh("rm -rf %s", dir);
}

const char *test_dir(void) {
    if (!made) {
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(1);
        }
        made = 1;
        atexit(remove_dir);
    }
    return dir;
}

const char *test_tmp(const char *name) {
    static char path[16][512];
    static int next;
    char *p = path[next++ % 16];
    snprintf(p, sizeof path[0], "%s/%s", test_dir(), name);
    return p;
}

int test_sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

double test_rel_diff(const float *a, const float *b, size_t n) {
    double err = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        err = fmax(err, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    return err / mag;
}

cJSON *test_read_json(const char *path) {
    static char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return n ? cJSON_Parse(buf) : NULL;
}
