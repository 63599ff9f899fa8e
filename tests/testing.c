/*
 * testing.c: the helpers of testing.h.
 */
#include "testing.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- the gqac under test ---- */

const char *test_gqac(void) {
    const char *g = getenv("GQAC");
    return g && *g ? g : "build/gqac";
}

/* ---- the scratch folder ---- */

static char dir[512];
static char **paths; /* test_tmp's, one a name */
static size_t n_paths;

static void remove_dir(void) {
    if (getenv("KEEP_TMP"))
        fprintf(stderr, "kept %s\n", dir);
    else if (test_sh("rm -rf '%s'", dir) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    for (size_t i = 0; i < n_paths; i++)
        free(paths[i]);
    free(paths);
}

const char *test_dir(void) {
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/gqac-test-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror(dir);
            exit(1);
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *test_tmp(const char *name) {
    size_t skip = strlen(test_dir()) + 1;
    for (size_t i = 0; i < n_paths; i++)
        if (!strcmp(paths[i] + skip, name))
            return paths[i];
    char **more = realloc(paths, (n_paths + 1) * sizeof *paths);
    char *p = malloc(skip + strlen(name) + 1);
    if (!more || !p)
        abort();
    sprintf(p, "%s/%s", dir, name);
    paths = more;
    return paths[n_paths++] = p;
}

/* ---- shell commands ---- */

/* The formatted command, malloc'd: commands may be long (paths, flags). */
static char *format(const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (!s)
        abort();
    vsnprintf(s, (size_t)n + 1, fmt, again);
    va_end(again);
    return s;
}

/* The command's exit status, or -1; printed with it when loud and not 0. */
static int run(bool loud, const char *fmt, va_list ap) {
    char *cmd = format(fmt, ap);
    int rc = system(cmd);
    rc = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (loud && rc != 0)
        printf("\n  failed (%d): %s\n", rc, cmd);
    free(cmd);
    return rc;
}

int test_sh(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = run(false, fmt, ap);
    va_end(ap);
    return rc;
}

bool test_sh_ok(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = run(true, fmt, ap);
    va_end(ap);
    return rc == 0;
}

/* ---- files ---- */

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p)
                free(buf);
            buf = p;
        }
    }
    fclose(f);
    if (!buf)
        abort();
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

char *test_slurp(const char *path, size_t *len) {
    char *text = test_read_file(path, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    return text;
}

bool test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

bool test_write_text(const char *path, const char *text) {
    return test_write_file(path, text, strlen(text));
}

const char *test_write_tmp(const char *name, const void *data, size_t n) {
    const char *path = test_tmp(name);
    CU_ASSERT_FATAL(test_write_file(path, data, n));
    return path;
}

bool test_file_has(const char *path, const char *text) {
    char *s = test_read_file(path, NULL);
    bool has = s && strstr(s, text);
    free(s);
    return has;
}

bool test_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool test_is_kind(const char *path, mode_t kind) {
    struct stat st;
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == kind;
}

cJSON *test_read_json(const char *path) {
    char *text = test_read_file(path, NULL);
    cJSON *root = text && *text ? cJSON_Parse(text) : NULL;
    free(text);
    return root;
}

/* ---- bytes and numbers ---- */

void test_put_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> 8 * i);
}

void test_put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> 8 * i);
}

/* One of wantf and wantd is the reference.  A value that is not finite,
 * on either side, is an infinite error (fmax would skip a NaN). */
static double rel(const float *got, const float *wantf, const double *wantd, size_t n) {
    double err = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double want = wantf ? wantf[i] : wantd[i];
        if (!isfinite(want) || !isfinite(got[i]))
            return INFINITY;
        err = fmax(err, fabs((double)got[i] - want));
        mag = fmax(mag, fabs(want));
    }
    return mag > 0 ? err / mag : err;
}

double test_rel_diff(const float *got, const float *want, size_t n) {
    return rel(got, want, NULL, n);
}

double test_rel_error(const float *got, const double *want, size_t n) {
    return rel(got, NULL, want, n);
}
