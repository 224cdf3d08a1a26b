#include "models/atomic_file.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// fsync of the folder makes the rename itself durable; a failure there is reported but the file is
// already complete and in place.
static int fsync_parent(dt_ctx *ctx, const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int rc = DT_OK;
    if (fd >= 0) {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
            rc = dt_fail(ctx, DT_EIO, "%s: fsync of folder '%s' failed: %s", path, dir, strerror(errno));
        close(fd);
    }
    free(dir);
    return rc;
}

int dt_atomic_open(dt_ctx *ctx, const char *path, dt_atomic_file *f) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    size_t n = strlen(path);
    f->path = strdup(path);
    f->tmp_path = malloc(n + sizeof ".tmp.XXXXXX");
    if (!f->path || !f->tmp_path) {
        dt_atomic_abort(f);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    memcpy(f->tmp_path, path, n);
    memcpy(f->tmp_path + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    f->fd = mkstemp(f->tmp_path);
    if (f->fd < 0) {
        int e = errno;
        free(f->tmp_path);
        f->tmp_path = NULL; // nothing was created, so abort must not unlink the template name
        dt_atomic_abort(f);
        return dt_fail(ctx, e == ENOENT || e == ENOTDIR || e == EACCES ? DT_EINPUT : DT_EIO,
                       "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    // mkstemp creates the file 0600; a model or adapter file is meant to be shared like any other output.
    if (fchmod(f->fd, 0644) != 0) {
        int e = errno;
        dt_atomic_abort(f);
        return dt_fail(ctx, DT_EIO, "%s: chmod of the temporary file failed: %s", path, strerror(e));
    }
    return DT_OK;
}

int dt_atomic_append(dt_ctx *ctx, dt_atomic_file *f, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        // Linux writes at most about 2 GiB per call, so large tensors go in pieces.
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return dt_fail(ctx, DT_EIO, "%s: write failed after %zu bytes: %s", f->path, f->written,
                           strerror(errno));
        }
        p += w;
        n -= (size_t)w;
        f->written += (size_t)w;
    }
    return DT_OK;
}

int dt_atomic_commit(dt_ctx *ctx, dt_atomic_file *f) {
    // Each failure formats its message before dt_atomic_abort frees f->path.
    int rc = DT_OK;
    if (fsync(f->fd) != 0) {
        rc = dt_fail(ctx, DT_EIO, "%s: fsync failed: %s", f->path, strerror(errno));
    } else {
        int fd = f->fd;
        f->fd = -1;
        if (close(fd) != 0) {
            rc = dt_fail(ctx, DT_EIO, "%s: close failed: %s", f->path, strerror(errno));
        } else if (rename(f->tmp_path, f->path) != 0) {
            int e = errno;
            rc = dt_fail(ctx, e == EISDIR || e == ENOTDIR || e == EACCES ? DT_EINPUT : DT_EIO,
                         "%s: cannot rename the temporary file into place: %s", f->path, strerror(e));
        } else {
            free(f->tmp_path);
            f->tmp_path = NULL; // renamed: nothing left to remove
            rc = fsync_parent(ctx, f->path);
        }
    }
    dt_atomic_abort(f);
    return rc;
}

void dt_atomic_abort(dt_atomic_file *f) {
    if (f->fd >= 0) close(f->fd);
    if (f->tmp_path) unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    f->fd = -1;
    f->tmp_path = NULL;
    f->path = NULL;
}

int dt_atomic_write(dt_ctx *ctx, const char *path, const void *data, size_t n) {
    dt_atomic_file f;
    int rc = dt_atomic_open(ctx, path, &f);
    if (rc) return rc;
    rc = dt_atomic_append(ctx, &f, data, n);
    if (rc) {
        dt_atomic_abort(&f);
        return rc;
    }
    return dt_atomic_commit(ctx, &f);
}
