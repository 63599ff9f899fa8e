/*
 * outfile.h: every file gqac and the runtime write, written whole or not
 * at all, and never over something that is not a regular file.
 *
 * A regular file (or a name not yet taken) is written to a temporary file
 * beside it and renamed over it only when whole, so a failure, a full disk
 * included, leaves what was there before and no partial file.  A
 * character device or a FIFO (/dev/null, /dev/stdout, a pipe) is written
 * in place, as C compilers do: renaming over it would replace the device.
 * A directory, a socket or anything else is refused before anything is
 * written.  "-" is standard output.  A symbolic link is followed: the file
 * it names is replaced, the link stays.
 */
#ifndef GQR_OUTFILE_H
#define GQR_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    char *path;  /* where it ends up (a symbolic link resolved) */
    char *tmp;   /* the temporary file beside it; NULL when written in place */
    FILE *f;     /* write here */
    int is_stdout;
    int error;   /* errno of the first failed gqr_out_put, or 0 */
} gqr_out;

/* 0 when path can be written by gqr_out_open; else -1 with why in err
 * (a directory, a socket, a missing folder).  Lets a command refuse a bad
 * target before it writes any of its outputs. */
int gqr_out_check(const char *path, char *err, size_t errlen);
/* 1 when path is written in place (a device or a FIFO), else 0. */
int gqr_out_in_place(const char *path);
/* 1 when a and b name the same file (existing or not), else 0. */
int gqr_out_same(const char *a, const char *b);
/* Opens o for path; 0, or -1 with a message naming path. */
int gqr_out_open(gqr_out *o, const char *path, char *err, size_t errlen);
/* n bytes to o; an error shows at gqr_out_commit (the stream's error flag). */
void gqr_out_put(gqr_out *o, const void *p, size_t n);
/* Flushes and closes o and renames its temporary file into place; 0, or
 * -1 (the temporary file removed, the target untouched) with a message. */
int gqr_out_commit(gqr_out *o, char *err, size_t errlen);
/* Closes o and removes its temporary file: nothing is left behind. */
void gqr_out_abort(gqr_out *o);
/* The n bytes at data as the whole of path: check, open, write, commit. */
int gqr_out_write_file(const char *path, const void *data, size_t n, char *err, size_t errlen);

#endif
