/*
 * testing.h: what the test programs share (tests/testing.c): a scratch
 * folder, shell commands, whole files, substring and relative-error
 * checks.  Every test program links it.
 */
#ifndef TESTING_H
#define TESTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>

/* Reports the string that lacks the substring, not just the line. */
#define TEST_HAS(s, sub)                                                         \
    do {                                                                         \
        if (!strstr((s), (sub)))                                                 \
            fprintf(stderr, "\n    '%s' lacks '%s'\n", (s), (sub));             \
        CU_ASSERT_PTR_NOT_NULL(strstr((s), (sub)));                              \
    } while (0)

/* The gqac under test: $GQAC when set and not empty, else build/gqac. */
const char *test_gqac(void);

/* The folder this test run writes in ($TMPDIR or /tmp), made at the first
 * call and removed with everything in it when the program exits (kept
 * when $KEEP_TMP is set, to look at after a failure). */
const char *test_dir(void);
/* dir/name, the same string for the same name until the program exits. */
const char *test_tmp(const char *name);

/* The exit status of the shell command, or -1 when it died by a signal. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether the command exited 0; when not, the command and its status are
 * printed, for commands that must succeed. */
bool test_sh_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The whole file, malloc'd, with a '\0' after its *len bytes (len may be
 * NULL), or NULL when it cannot be read. */
char *test_read_file(const char *path, size_t *len);
/* The same, a fatal CUnit failure when the file cannot be read. */
char *test_slurp(const char *path, size_t *len);
/* Writes n bytes to path, replacing it: false when that failed. */
bool test_write_file(const char *path, const void *data, size_t n);
/* The same for a string, without its '\0'. */
bool test_write_text(const char *path, const char *text);
/* data (n bytes) written to test_tmp(name), a fatal CUnit failure when that
 * fails: its path. */
const char *test_write_tmp(const char *name, const void *data, size_t n);
/* Whether the file's text (up to its first NUL byte) contains text. */
bool test_file_has(const char *path, const char *text);
/* Whether path exists (a link: what it points to). */
bool test_exists(const char *path);
/* Whether path itself (not what a link points to) is of kind (S_IFREG, ...). */
bool test_is_kind(const char *path, mode_t kind);
/* A JSON file parsed (cJSON_Delete it), or NULL. */
cJSON *test_read_json(const char *path);

/* v little-endian at p, as the file formats store it. */
void test_put_le32(unsigned char *p, uint32_t v);
void test_put_le64(unsigned char *p, uint64_t v);

/* max |got[i] - want[i]| / max |want[i]|: errors relative to the largest
 * value (the absolute error when every want[i] is 0). */
double test_rel_diff(const float *got, const float *want, size_t n);
/* The same against a double-precision reference. */
double test_rel_error(const float *got, const double *want, size_t n);

#endif
