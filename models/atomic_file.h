// Atomic file writes: data goes to "path.tmp.XXXXXX" beside the target (mkstemp), is fsynced, then
// renamed over path, and the folder is fsynced. On any failure the temporary file is removed, so a
// reader sees either the old file or the complete new one, never half of it.
#ifndef DT_ATOMIC_FILE_H
#define DT_ATOMIC_FILE_H
#include <stddef.h>
#include "autograd/context.h"

// Writes n bytes to path atomically.
int dt_atomic_write(dt_ctx *ctx, const char *path, const void *data, size_t n);

// Streaming variant for outputs larger than memory: open, append chunks, then commit or abort.
// After dt_atomic_open succeeds exactly one of commit/abort must be called (commit aborts by itself on
// failure, so after a failed commit nothing more is needed).
typedef struct {
    int fd;
    char *path;      // the target
    char *tmp_path;  // the temporary file beside it
    size_t written;  // bytes appended so far
} dt_atomic_file;

int dt_atomic_open(dt_ctx *ctx, const char *path, dt_atomic_file *f);
int dt_atomic_append(dt_ctx *ctx, dt_atomic_file *f, const void *data, size_t n);
int dt_atomic_commit(dt_ctx *ctx, dt_atomic_file *f);
void dt_atomic_abort(dt_atomic_file *f);

#endif
