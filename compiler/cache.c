/*
 * cache.c: gqac's folder of compiled code, and running the C compiler.
 * Needs: POSIX (fork, exec, mkdir, mkdtemp).  Provides: content keys, the
 * cache's root, entries built aside and published whole, whole-file
 * writes and child processes, for gqac run's programs and the cc JIT's
 * shared objects.
 *
 * The root: $GQAC_CACHE, else $XDG_CACHE_HOME/gqac, else ~/.cache/gqac
 * (the home from the user database when HOME is unset).  gqac executes
 * and loads what it finds there, so the root must be the user's own and
 * writable by no one else; folders gqac makes for it are 0700.  Entries
 * are filled beside their final name, sealed with a manifest (the hash
 * and size of their product) and renamed into place, so concurrent gqac
 * runs never see half a build, and a damaged entry is rebuilt.
 */
#include "gqac.h"
#include "outfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* FNV-1a, 64 bits: a cache key and an entry's check against damage, not
 * a defence against forgery (the root is the user's own folder). */
uint64_t cache_hash(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

uint64_t cache_hash_str(uint64_t h, const char *s) {
    return cache_hash(h, s, strlen(s) + 1);
}

uint64_t cache_hash_strs(uint64_t h, const char *const *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        h = cache_hash_str(h, s[i]);
    return h;
}

/* -march=native code is for this CPU: a cache shared between machines (a
 * network home) must not hand one machine's build to another.  On Linux
 * the first processor's model name and feature flags say which it is;
 * elsewhere the key has no CPU part. */
uint64_t cache_hash_cpu(uint64_t h) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    int found = 0;
    while (f && found < 2 && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) || !strncmp(line, "flags", 5)) {
            h = cache_hash_str(h, line);
            found++;
        }
    if (f)
        fclose(f);
    return h;
}

/* ---- the root ---- */

/* cron and `env -i` run without HOME: the user database still knows the
 * home, and a shared /tmp folder would let other users plant code. */
static const char *default_root(Arena *a) {
    const char *dir = getenv("GQAC_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && *dir)
        return dir;
    if (xdg && *xdg)
        return arena_printf(a, "%s/gqac", xdg);
    if (!home || !*home) {
        struct passwd *pw = getpwuid(geteuid());
        home = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
    }
    return home ? arena_printf(a, "%s/.cache/gqac", home) : NULL;
}

/* mkdir -p with mode for the folders it makes; path is modified and
 * restored. */
static bool make_dirs(char *path, mode_t mode) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        bool ok = mkdir(path, mode) == 0 || errno == EEXIST;
        *p = '/';
        if (!ok)
            return false;
    }
    return mkdir(path, mode) == 0 || errno == EEXIST;
}

bool cache_make_dirs(char *path) {
    return make_dirs(path, 0777);
}

/* Why root is no place to run code from, or NULL: it must be a folder of
 * this user's that no one else can write, reached through no symbolic
 * link of another user's. */
static const char *unsafe(const char *root, Arena *a) {
    struct stat st;
    uid_t me = geteuid();
    if (lstat(root, &st) != 0)
        return strerror(errno);
    if (S_ISLNK(st.st_mode) && st.st_uid != me)
        return arena_printf(a, "a symbolic link owned by another user (uid %ld)", (long)st.st_uid);
    if (S_ISLNK(st.st_mode) && stat(root, &st) != 0)
        return arena_printf(a, "a symbolic link to nowhere (%s)", strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return "not a folder";
    if (st.st_uid != me)
        return arena_printf(a, "owned by another user (uid %ld)", (long)st.st_uid);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return arena_printf(a, "writable by %s (mode %04o)",
                            st.st_mode & S_IWOTH ? "other users" : "its group",
                            (unsigned)(st.st_mode & 07777));
    return NULL;
}

const char *cache_root(Arena *a, char *err, size_t errlen) {
    const char *root = default_root(a);
    if (!root) {
        snprintf(err, errlen, "no folder for the compiled-code cache: HOME is not set and user %ld "
                 "has no home; set GQAC_CACHE to a folder of yours", (long)geteuid());
        return NULL;
    }
    char *path = arena_printf(a, "%s", root);
    const char *why = make_dirs(path, 0700) ? unsafe(root, a) : strerror(errno);
    if (!why)
        return root;
    snprintf(err, errlen, "the compiled-code cache %s is %s; gqac runs the programs it keeps there, "
             "so it must be a folder of yours that no one else can write (chmod 700 it), or set "
             "GQAC_CACHE to another", root, why);
    return NULL;
}

/* ---- entries ---- */

char *cache_stage(const char *dir, Arena *a) {
    char *tmp = arena_printf(a, "%s.tmpXXXXXX", dir);
    return mkdtemp(tmp);
}

/* Removes path and everything under it, following no links; errno is
 * kept, so that callers report the failure that led here. */
void cache_discard(const char *path) {
    int saved = errno;
    struct stat st;
    DIR *d = lstat(path, &st) == 0 && S_ISDIR(st.st_mode) ? opendir(path) : NULL;
    struct dirent *e;
    char sub[4096];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < sizeof sub)
            cache_discard(sub);
    if (d) {
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
    errno = saved;
}

#define MANIFEST "manifest"

/* FNV-1a of a regular file's bytes, and its size; false when it is not a
 * regular file or cannot be read. */
static bool hash_file(const char *path, uint64_t *hash, uint64_t *size) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    struct stat st;
    if (fd < 0)
        return false;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    unsigned char buf[1 << 16];
    ssize_t n = 0;
    *hash = CACHE_SEED, *size = 0;
    while (ok && (n = read(fd, buf, sizeof buf)) > 0) {
        *hash = cache_hash(*hash, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    close(fd);
    return ok && n == 0;
}

static const char *manifest_line(uint64_t hash, uint64_t size, const char *name, Arena *a) {
    return arena_printf(a, "gqac-cache 1 fnv1a64 %016llx %llu %s\n", (unsigned long long)hash,
                        (unsigned long long)size, name);
}

bool cache_seal(const char *tmp, const char *name, Arena *a) {
    uint64_t hash, size;
    if (!hash_file(arena_printf(a, "%s/%s", tmp, name), &hash, &size))
        return false;
    Buf b = {0};
    buf_puts(&b, manifest_line(hash, size, name, a));
    bool ok = cache_write_file(arena_printf(a, "%s/" MANIFEST, tmp), &b);
    buf_free(&b);
    return ok;
}

bool cache_check(const char *dir, const char *name, Arena *a) {
    FILE *f = fopen(arena_printf(a, "%s/" MANIFEST, dir), "r");
    char line[512] = "";
    bool read = f && fgets(line, sizeof line, f);
    if (f)
        fclose(f);
    uint64_t hash, size;
    return read && hash_file(arena_printf(a, "%s/%s", dir, name), &hash, &size) &&
           !strcmp(line, manifest_line(hash, size, name, a));
}

/* dir holds a bad entry (cache_check failed on it): moved aside and
 * replaced by tmp.  A concurrent run may do the same; whichever renames
 * last wins, and both entries are whole. */
static bool replace(const char *tmp, const char *dir, const char *name, Arena *a) {
    char *old = arena_printf(a, "%s.oldXXXXXX", dir);
    if (!mkdtemp(old))
        return false;
    bool moved = rename(dir, old) == 0; /* over the empty folder */
    if (!moved && errno != ENOENT) {
        cache_discard(old);
        return false;
    }
    bool ok = rename(tmp, dir) == 0 || ((errno == EEXIST || errno == ENOTEMPTY) &&
                                        cache_check(dir, name, a));
    cache_discard(old);
    return ok;
}

bool cache_publish(const char *tmp, const char *dir, const char *name, Arena *a) {
    bool ok = rename(tmp, dir) == 0;
    if (!ok && (errno == EEXIST || errno == ENOTEMPTY))
        /* A concurrent run got there first (its entry stays), or a
         * damaged entry is in the way (it goes). */
        ok = cache_check(dir, name, a) || replace(tmp, dir, name, a);
    if (access(tmp, F_OK) == 0)
        cache_discard(tmp);
    return ok;
}

bool cache_write_file(const char *path, const Buf *b) {
    return gqr_out_write_file(path, b->data, b->len, NULL, 0) == 0; /* no empty or cut-off file stays */
}

const char *cache_keep_source(const Buf *c, const Buf *h, Arena *a) {
    const char *tmpdir = getenv("TMPDIR");
    char *dir = arena_printf(a, "%s/gqac-source-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(dir))
        return arena_printf(a, "nowhere (cannot create a temporary folder: %s)", strerror(errno));
    char *path = arena_printf(a, "%s/model.c", dir);
    if (cache_write_file(path, c) && (!h || cache_write_file(arena_printf(a, "%s/model.h", dir), h)))
        return path;
    const char *why = strerror(errno);
    cache_discard(dir);
    return arena_printf(a, "nowhere (cannot write it: %s)", why);
}

/* ---- child processes ---- */

/* The child's exec failure travels back through a pipe that a successful
 * exec closes, so "no such compiler" is told from a compiler's own exit
 * status 127. */
int cache_spawn(char *const argv[], bool quiet) {
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    if (fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
        close(fds[0]), close(fds[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (!quiet || freopen("/dev/null", "w", stderr))
            execvp(argv[0], argv);
        int e = errno;
        if (write(fds[1], &e, sizeof e) != (ssize_t)sizeof e)
            _exit(126);
        _exit(127);
    }
    close(fds[1]);
    int status = 0, e = 0;
    ssize_t got = 0;
    while (pid > 0 && (got = read(fds[0], &e, sizeof e)) < 0 && errno == EINTR)
        continue;
    close(fds[0]);
    pid_t waited = pid;
    while (pid > 0 && (waited = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        continue;
    if (pid < 0 || waited < 0)
        return -1;
    if (got == (ssize_t)sizeof e) {
        errno = e;
        return CACHE_NOT_RUN;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
