/*
 * testing.h: what the tests that run gqac, write files and compare logits
 * share (tests/testing.c).
 */
#ifndef TESTING_H
#define TESTING_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* The folder this test run writes in, made at the first call and removed
 * with everything in it when the program exits. */
const char *test_dir(void);
/* dir/name: one of 16 buffers in turn, so a few may be used in one call. */
const char *test_tmp(const char *name);
/* The exit status of the shell command, or -1 when it died by a signal. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* max |a[i] - b[i]| / max |b[i]|: errors relative to the largest value. */
double test_rel_diff(const float *a, const float *b, size_t n);
/* A JSON file of at most 64 KiB parsed (cJSON_Delete it), or NULL. */
cJSON *test_read_json(const char *path);

#endif
