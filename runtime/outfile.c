/* outfile.c: files written whole or not at all (outfile.h). */
#include "outfile.h"
#include "fail.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Written in place: replacing these would replace the device or pipe. */
static int in_place(mode_t m) {
    return S_ISCHR(m) || S_ISFIFO(m);
}

static const char *kind_of(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISSOCK(m) ? "a socket" : S_ISBLK(m) ? "a block device"
                                                                              : "not a regular file";
}

/* The folder part of path ("." when it has none); malloc'd. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int gqr_out_check(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (!strcmp(path, "-"))
        return 0;
    size_t n = strlen(path);
    if (n == 0)
        return gqr_fail(err, errlen, "cannot write a file with an empty name");
    if (path[n - 1] == '/')
        return gqr_fail(err, errlen, "%s: cannot write: it names a directory; give a file name", path);
    if (stat(path, &st) == 0) {
        if (S_ISREG(st.st_mode) || in_place(st.st_mode))
            return 0;
        return gqr_fail(err, errlen, "%s: cannot write: it is %s; give a file name", path, kind_of(st.st_mode));
    }
    if (errno != ENOENT)
        return gqr_fail(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    char *dir = dir_of(path);
    int ok = dir && stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    int e = !dir ? ENOMEM : errno;
    if (!ok)
        gqr_fail(err, errlen, "%s: cannot write: %s: %s", path, dir ? dir : "its folder",
                 dir && e != ENOMEM && stat(dir, &st) == 0 ? "not a directory" : strerror(e));
    free(dir);
    return ok ? 0 : -1;
}

int gqr_out_in_place(const char *path) {
    struct stat st;
    return strcmp(path, "-") && stat(path, &st) == 0 && in_place(st.st_mode);
}

/* path with its folder resolved (realpath), the file itself resolved too
 * where it exists; malloc'd, NULL when the folder does not exist. */
static char *canonical(const char *path) {
    char *full = realpath(path, NULL);
    if (full)
        return full;
    char *dir = dir_of(path), *rdir = dir ? realpath(dir, NULL) : NULL;
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    char *out = rdir ? malloc(strlen(rdir) + strlen(base) + 2) : NULL;
    if (out)
        sprintf(out, "%s/%s", rdir, base);
    free(dir);
    free(rdir);
    return out;
}

int gqr_out_same(const char *a, const char *b) {
    struct stat sa, sb;
    if (!strcmp(a, b))
        return 1;
    if (!strcmp(a, "-") || !strcmp(b, "-"))
        return 0;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char *ca = canonical(a), *cb = canonical(b);
    int same = ca && cb && !strcmp(ca, cb);
    free(ca);
    free(cb);
    return same;
}

/* A fresh file beside path: path.tmpPID.N, made by open(2) with O_EXCL, so
 * it gets 0666 less the umask as any new file does (mkstemp's 0600 would
 * need the umask read back, which changes it for every thread). */
static int open_temp(char *tmp, size_t size, const char *path) {
    static unsigned counter;
    for (int tries = 0; tries < 100; tries++) {
        snprintf(tmp, size, "%s.tmp%ld.%u", path, (long)getpid(), counter++);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

static int open_direct(gqr_out *o, char *err, size_t errlen) {
    o->f = fopen(o->path, "wb");
    if (!o->f) {
        gqr_fail(err, errlen, "%s: cannot write: %s", o->path, strerror(errno));
        free(o->path);
        return -1;
    }
    return 0;
}

int gqr_out_open(gqr_out *o, const char *path, char *err, size_t errlen) {
    struct stat st;
    *o = (gqr_out){0};
    if (!strcmp(path, "-")) {
        o->f = stdout, o->is_stdout = 1;
        return 0;
    }
    if (gqr_out_check(path, err, errlen))
        return -1;
    int exists = stat(path, &st) == 0, direct = exists && in_place(st.st_mode);
    /* /dev/stdout resolves to a name like "pipe:[42]": devices keep theirs */
    o->path = exists && !direct ? realpath(path, NULL) : strdup(path);
    if (!o->path)
        return gqr_fail(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    if (direct)
        return open_direct(o, err, errlen);
    size_t n = strlen(o->path) + 48;
    o->tmp = malloc(n);
    int fd = o->tmp ? open_temp(o->tmp, n, o->path) : -1;
    if (fd < 0) {
        gqr_fail(err, errlen, "%s: cannot write: %s", path, o->tmp ? strerror(errno) : "out of memory");
        free(o->tmp), free(o->path);
        return -1;
    }
    if (exists) /* a replaced file keeps its mode */
        fchmod(fd, st.st_mode & 07777);
    if (!(o->f = fdopen(fd, "wb"))) {
        close(fd);
        gqr_out_abort(o);
        return gqr_fail(err, errlen, "%s: cannot write: out of memory", path);
    }
    return 0;
}

void gqr_out_put(gqr_out *o, const void *p, size_t n) {
    errno = 0;
    if (n && fwrite(p, 1, n, o->f) != n && !o->error)
        o->error = errno ? errno : EIO;
}

static void release(gqr_out *o) {
    free(o->path);
    free(o->tmp);
    *o = (gqr_out){0};
}

int gqr_out_commit(gqr_out *o, char *err, size_t errlen) {
    if (o->is_stdout) {
        errno = 0;
        int failed = o->error || fflush(stdout) != 0 || ferror(stdout);
        *o = (gqr_out){0};
        return failed ? gqr_fail(err, errlen, "<stdout>: cannot write: %s", strerror(errno)) : 0;
    }
    errno = 0;
    int failed = o->error || ferror(o->f) || fflush(o->f) != 0 || (o->tmp && fsync(fileno(o->f)) != 0);
    int e = o->error ? o->error : errno ? errno : EIO;
    if (fclose(o->f) != 0 && !failed)
        failed = 1, e = errno;
    o->f = NULL;
    if (!failed && o->tmp && rename(o->tmp, o->path) != 0)
        failed = 1, e = errno;
    if (failed) {
        gqr_fail(err, errlen, "%s: cannot write: %s", o->path, strerror(e));
        gqr_out_abort(o);
        errno = e; /* for callers that report errno */
        return -1;
    }
    release(o);
    return 0;
}

void gqr_out_abort(gqr_out *o) {
    int e = errno; /* the caller's message reads it */
    if (o->f && !o->is_stdout)
        fclose(o->f);
    if (o->tmp)
        unlink(o->tmp);
    release(o);
    errno = e;
}

int gqr_out_write_file(const char *path, const void *data, size_t n, char *err, size_t errlen) {
    gqr_out o;
    if (gqr_out_open(&o, path, err, errlen))
        return -1;
    errno = 0;
    if (n && fwrite(data, 1, n, o.f) != n) {
        gqr_fail(err, errlen, "%s: cannot write: %s", path, strerror(errno ? errno : EIO));
        gqr_out_abort(&o);
        return -1;
    }
    return gqr_out_commit(&o, err, errlen);
}
