// Atomic file writes: data goes to "path.tmp.XXXXXX" beside the target (mkstemp), is fsynced, then
// renamed over path, and the folder is fsynced. On any failure the temporary file is removed, so a
// reader sees either the old file or the complete new one, never half of it. The one implementation of
// this in the project: every writer of files (and of folders built under a temporary name) uses it.
#ifndef DT_ATOMIC_FILE_H
#define DT_ATOMIC_FILE_H
#include <stddef.h>
#include <stdio.h>
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
    FILE *fp;        // after dt_atomic_stream: a buffered stream on fd (write through it, not append)
} dt_atomic_file;

int dt_atomic_open(dt_ctx *ctx, const char *path, dt_atomic_file *f);
int dt_atomic_append(dt_ctx *ctx, dt_atomic_file *f, const void *data, size_t n);
int dt_atomic_commit(dt_ctx *ctx, dt_atomic_file *f);
void dt_atomic_abort(dt_atomic_file *f);
// A buffered stdio stream on the temporary file (for many small writes: headers, YAML), in f->fp;
// commit flushes it. Mixing it with dt_atomic_append is not allowed.
int dt_atomic_stream(dt_ctx *ctx, dt_atomic_file *f);

// Folders: fsyncs a folder (its entries become durable); DT_EIO when that fails.
int dt_atomic_fsync_dir(dt_ctx *ctx, const char *dir);
// Makes a folder built under the temporary name tmp_dir (its files written with the functions above)
// appear as dir: fsync tmp_dir, rename it onto dir (which must not exist or be an empty folder), fsync
// the parent. On failure tmp_dir is left for the caller to remove.
int dt_atomic_commit_dir(dt_ctx *ctx, const char *tmp_dir, const char *dir);

#endif
