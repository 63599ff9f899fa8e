/*
 * cache.c: gqac's folder of compiled code, and running the C compiler.
 * Needs: POSIX (fork, exec, mkdir).  Provides: content keys, the cache's
 * root, whole-file writes and child processes, for gqac run's programs
 * and the cc JIT's shared objects.
 *
 * The root: $GQAC_CACHE, else $XDG_CACHE_HOME/gqac, else ~/.cache/gqac.
 * Entries are filled beside their final name and renamed into place, so
 * concurrent gqac runs never see half a build.
 */
#include "gqac.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* FNV-1a, 64 bits: a cache key, not a defence against forgery (the cache
 * is the user's own folder). */
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

const char *cache_root(Arena *a) {
    const char *dir = getenv("GQAC_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && *dir)
        return dir;
    if (xdg && *xdg)
        return arena_printf(a, "%s/gqac", xdg);
    return arena_printf(a, "%s/.cache/gqac", home && *home ? home : "/tmp");
}

bool cache_make_dirs(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        bool ok = mkdir(path, 0777) == 0 || errno == EEXIST;
        *p = '/';
        if (!ok)
            return false;
    }
    return mkdir(path, 0777) == 0 || errno == EEXIST;
}

char *cache_stage(const char *dir, Arena *a) {
    char *tmp = arena_printf(a, "%s.tmp%ld", dir, (long)getpid());
    return cache_make_dirs(tmp) ? tmp : NULL;
}

/* Removes the staged folder tmp and its files (a build makes no
 * subfolders). */
static void discard(const char *tmp) {
    DIR *d = opendir(tmp);
    struct dirent *e;
    char path[4096];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (size_t)snprintf(path, sizeof path, "%s/%s", tmp, e->d_name) < sizeof path)
            unlink(path);
    if (d)
        closedir(d);
    rmdir(tmp);
}

bool cache_publish(const char *tmp, const char *dir) {
    if (rename(tmp, dir) == 0)
        return true;
    if (errno != EEXIST && errno != ENOTEMPTY)
        return false;
    /* A concurrent run got there first and built the same thing: its
     * entry stays, this one's copy goes. */
    discard(tmp);
    return true;
}

bool cache_write_file(const char *path, const Buf *b) {
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(b->data, 1, b->len, f) == b->len;
    return f && fclose(f) == 0 && ok;
}

int cache_spawn(char *const argv[], bool quiet) {
    pid_t pid = fork();
    if (pid == 0) {
        if (quiet && !freopen("/dev/null", "w", stderr))
            _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
