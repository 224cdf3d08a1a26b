// Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, built and run by `make fuzz`). The parsers
// read files, so each input is written to a file in a private temporary folder first. Inputs that hold
// several files separate them with FUZZ_SEP (it is in every dictionary, so the fuzzer finds it).
#ifndef DT_FUZZ_UTIL_H
#define DT_FUZZ_UTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "autograd/context.h"

#define FUZZ_SEP "\n#--#\n"

// The harness's folder, made on first use and removed at exit.
static char fuzz_dir[64];
static void fuzz_cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fuzz_dir);
    (void)!system(cmd);
}
static const char *fuzz_tmpdir(void) {
    if (!fuzz_dir[0]) {
        // In memory when /dev/shm is there: every input is written to a file, at thousands per second.
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/dt_fuzz_XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(fuzz_dir)) abort();
        atexit(fuzz_cleanup);
    }
    return fuzz_dir;
}

// Writes n bytes as fuzz_dir/name; returns the path (a static buffer per call site is not needed: the
// caller copies it when it writes several files).
static inline const char *fuzz_write(const char *name, const void *data, size_t n, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", fuzz_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return path;
}

// Splits data at FUZZ_SEP into at most k parts; returns how many (>= 1). Parts point into data.
typedef struct { const uint8_t *p; size_t n; } fuzz_part;
static inline int fuzz_split(const uint8_t *data, size_t n, fuzz_part *parts, int k) {
    const size_t sl = sizeof FUZZ_SEP - 1;
    int m = 0;
    size_t start = 0;
    for (size_t i = 0; m < k - 1 && i + sl <= n; i++)
        if (!memcmp(data + i, FUZZ_SEP, sl)) {
            parts[m++] = (fuzz_part){data + start, i - start};
            start = i + sl;
            i += sl - 1;
        }
    parts[m++] = (fuzz_part){data + start, n - start};
    return m;
}

// A folder of two files from one input: the part before FUZZ_SEP as fuzz_dir/sub/first, the rest (empty
// without a separator) as fuzz_dir/sub/second. Returns the folder's path, written into dir.
static inline const char *fuzz_write_pair(const char *sub, const char *first, const char *second, const uint8_t *data,
                                          size_t n, char *dir, size_t cap) {
    char name[128], path[256];
    fuzz_part parts[2];
    int k = fuzz_split(data, n, parts, 2);
    snprintf(dir, cap, "%s/%s", fuzz_tmpdir(), sub);
    mkdir(dir, 0777);
    snprintf(name, sizeof name, "%s/%s", sub, first);
    fuzz_write(name, parts[0].p, parts[0].n, path, sizeof path);
    snprintf(name, sizeof name, "%s/%s", sub, second);
    fuzz_write(name, k > 1 ? parts[1].p : (const uint8_t *)"", k > 1 ? parts[1].n : 0, path, sizeof path);
    return dir;
}

// A context whose warnings go nowhere (the harnesses only look for crashes and sanitizer reports).
static void fuzz_quiet(void *user, const char *msg) { (void)user; (void)msg; }
static inline void fuzz_ctx(dt_ctx *ctx) {
    dt_ctx_init(ctx);
    ctx->warn = fuzz_quiet;
}

#endif
