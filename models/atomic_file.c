#include "models/atomic_file.h"
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dt_atomic_fsync_dir(dt_ctx *ctx, const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return dt_fail(ctx, DT_EIO, "%s: cannot open the folder: %s", dir, strerror(errno));
    // EINVAL / EROFS: the file system cannot sync folders (some network and read-only mounts).
    int rc = fsync(fd) != 0 && errno != EINVAL && errno != EROFS
                 ? dt_fail(ctx, DT_EIO, "%s: fsync of the folder failed: %s", dir, strerror(errno))
                 : DT_OK;
    close(fd);
    return rc;
}

// fsync of the folder holding path makes a rename into it durable.
static int fsync_parent(dt_ctx *ctx, const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; // "out/" names the folder out
    const char *slash = memrchr(path, '/', n);
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    int rc = dt_atomic_fsync_dir(ctx, dir);
    free(dir);
    return rc;
}

int dt_atomic_commit_dir(dt_ctx *ctx, const char *tmp_dir, const char *dir) {
    int rc = dt_atomic_fsync_dir(ctx, tmp_dir);
    if (rc) return rc;
    if (rename(tmp_dir, dir) != 0) {
        int e = errno;
        return dt_fail(ctx, e == EEXIST || e == ENOTEMPTY ? DT_EINPUT : DT_EIO,
                       "%s: cannot rename the finished folder into place: %s", dir, strerror(e));
    }
    return fsync_parent(ctx, dir);
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

int dt_atomic_stream(dt_ctx *ctx, dt_atomic_file *f) {
    // A duplicate descriptor: the stream and f->fd are closed separately.
    int fd = dup(f->fd);
    if (fd < 0 || !(f->fp = fdopen(fd, "wb"))) {
        if (fd >= 0) close(fd);
        return dt_fail(ctx, DT_EIO, "%s: cannot open a stream on the temporary file: %s", f->path, strerror(errno));
    }
    setvbuf(f->fp, NULL, _IOFBF, 1 << 22);
    return DT_OK;
}

// fsync, close, rename into place, fsync the folder; the first failure is the message.
static int commit_fd(dt_ctx *ctx, dt_atomic_file *f) {
    if (fsync(f->fd) != 0) return dt_fail(ctx, DT_EIO, "%s: fsync failed: %s", f->path, strerror(errno));
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) return dt_fail(ctx, DT_EIO, "%s: close failed: %s", f->path, strerror(errno));
    if (rename(f->tmp_path, f->path) != 0) {
        int e = errno;
        return dt_fail(ctx, e == EISDIR || e == ENOTDIR || e == EACCES ? DT_EINPUT : DT_EIO,
                       "%s: cannot rename the temporary file into place: %s", f->path, strerror(e));
    }
    free(f->tmp_path);
    f->tmp_path = NULL; // renamed: nothing left to remove
    return fsync_parent(ctx, f->path);
}

int dt_atomic_commit(dt_ctx *ctx, dt_atomic_file *f) {
    // Each failure formats its message before dt_atomic_abort frees f->path.
    int rc = DT_OK;
    if (f->fp) { // the stream's buffered bytes first; a full disk shows up here
        FILE *fp = f->fp;
        f->fp = NULL;
        errno = 0;
        bool bad = ferror(fp) != 0;
        if (fclose(fp) != 0 || bad) rc = dt_fail(ctx, DT_EIO, "%s: write failed: %s", f->path, strerror(errno ? errno : EIO));
    }
    if (!rc) rc = commit_fd(ctx, f);
    dt_atomic_abort(f);
    return rc;
}

void dt_atomic_abort(dt_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    f->fp = NULL;
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
