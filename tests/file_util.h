// File helpers shared by the export/merge/inspect tests: read a file, compare files, copy a folder,
// remove a test folder, run the deltatune binary and capture its output.
#ifndef DT_TEST_FILE_UTIL_H
#define DT_TEST_FILE_UTIL_H
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// The whole file, NUL-terminated (n = its size), or NULL.
static inline char *tf_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    size_t got = fread(b, 1, (size_t)sz, f);
    b[got] = 0;
    if (n) *n = got;
    fclose(f);
    return b;
}

static inline bool tf_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static inline bool tf_same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = tf_slurp(a, &na), *y = tf_slurp(b, &nb);
    bool same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

// Copies the regular files of folder src into dst (created).
static inline bool tf_copy_dir(const char *src, const char *dst) {
    mkdir(dst, 0755);
    DIR *d = opendir(src);
    if (!d) return false;
    struct dirent *e;
    bool ok = true;
    char a[1024], b[1024];
    while ((e = readdir(d)) && ok) {
        if (e->d_name[0] == '.') continue;
        snprintf(a, sizeof a, "%s/%s", src, e->d_name);
        snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
        struct stat st;
        if (stat(a, &st) || !S_ISREG(st.st_mode)) continue;
        size_t n;
        char *x = tf_slurp(a, &n);
        ok = x && tf_write(b, x, n);
        free(x);
    }
    closedir(d);
    return ok;
}

// Removes a test folder and everything under it.
static inline void tf_rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) { unlink(path); return; }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *p = malloc(n);
            snprintf(p, n, "%s/%s", path, e->d_name);
            tf_rm_tree(p);
            free(p);
        }
    closedir(d);
    rmdir(path);
}

// Number of entries of folder dir whose name starts with prefix.
static inline int tf_count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

// Runs "./deltatune ARGS" with stdout and stderr into out_path; returns the exit status (-1 when it
// did not exit normally).
static inline int tf_run(const char *args, const char *out_path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "./deltatune %s >%s 2>&1", args, out_path);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
