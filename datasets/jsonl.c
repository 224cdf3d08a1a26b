#include "datasets/jsonl.h"
#include "datasets/tokenizer_jscan.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define CHUNK (1 << 16)

struct dt_jsonl {
    gzFile gz;
    char *path;
    char *in;            // read-ahead from gzread: in[in_pos..in_len) not yet consumed
    size_t in_pos, in_len, chunk;
    char *line;          // the current line, grown by doubling
    size_t line_cap;
    int64_t lineno;
    bool eof;
};

int dt_jsonl_open(dt_ctx *ctx, const char *path, dt_jsonl **out) {
    *out = NULL;
    // gzopen opens a folder and only its first read fails, which would look like an I/O error (exit 1).
    struct stat sb;
    bool known = stat(path, &sb) == 0;
    if (known && S_ISDIR(sb.st_mode))
        return dt_fail(ctx, DT_EINPUT, "%s: is a folder; expected a JSONL file (plain or .gz)", path);
    dt_jsonl *r = calloc(1, sizeof *r);
    if (!r) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    // Buffers of CHUNK, or less for a small regular file (zlib adds two more of this size): a
    // validation file of a few records should not cost 200 KB of buffers.
    r->chunk = CHUNK;
    if (known && S_ISREG(sb.st_mode) && sb.st_size < CHUNK) r->chunk = sb.st_size < 4096 ? 4096 : (size_t)sb.st_size;
    r->path = strdup(path);
    r->in = malloc(r->chunk);
    r->line_cap = 256;
    r->line = malloc(r->line_cap);
    if (!r->path || !r->in || !r->line) {
        dt_jsonl_close(r);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        int e = errno;
        dt_jsonl_close(r);
        return dt_fail(ctx, DT_EINPUT, "cannot open %s: %s", path, e ? strerror(e) : "out of memory");
    }
    gzbuffer(r->gz, (unsigned)r->chunk);
    *out = r;
    return DT_OK;
}

static int refill(dt_ctx *ctx, dt_jsonl *r) {
    int n = gzread(r->gz, r->in, (unsigned)r->chunk);
    if (n < 0) {
        int zerr;
        const char *msg = gzerror(r->gz, &zerr);
        return dt_fail(ctx, zerr == Z_ERRNO ? DT_EIO : DT_EINPUT, "%s:%lld: cannot read: %s", r->path,
                       (long long)r->lineno + 1, zerr == Z_ERRNO ? strerror(errno) : msg);
    }
    r->in_pos = 0;
    r->in_len = (size_t)n;
    if (n == 0) {
        // gzread returns 0 both at a clean end and for a gzip stream cut short; gzerror tells them apart.
        int zerr;
        const char *msg = gzerror(r->gz, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END)
            return dt_fail(ctx, DT_EINPUT, "%s:%lld: corrupt or truncated gzip data: %s", r->path,
                           (long long)r->lineno + 1, msg);
        r->eof = true;
    }
    return DT_OK;
}

// Reads one physical line into r->line (without the newline); *got is false at the end of the file.
static int read_line(dt_ctx *ctx, dt_jsonl *r, size_t *len, bool *got) {
    size_t n = 0;
    *got = false;
    for (;;) {
        if (r->in_pos == r->in_len) {
            if (r->eof) break;
            int st = refill(ctx, r);
            if (st) return st;
            if (r->eof) break;
        }
        const char *start = r->in + r->in_pos;
        size_t avail = r->in_len - r->in_pos;
        const char *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) : avail;
        if (n + take + 1 > r->line_cap) {
            size_t cap = r->line_cap;
            while (n + take + 1 > cap) cap *= 2;
            char *p = realloc(r->line, cap);
            if (!p) return dt_fail(ctx, DT_ENOMEM, "%s:%lld: out of memory for a line of %zu bytes", r->path,
                                   (long long)r->lineno + 1, n + take);
            r->line = p;
            r->line_cap = cap;
        }
        memcpy(r->line + n, start, take);
        n += take;
        *got = true;
        r->in_pos += take + (nl ? 1 : 0);
        if (nl) break;
    }
    if (n > 0 && r->line[n - 1] == '\r') n--;
    r->line[n] = 0;
    *len = n;
    return DT_OK;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

int dt_jsonl_next(dt_ctx *ctx, dt_jsonl *r, const char **line, size_t *len, int64_t *lineno) {
    *line = NULL;
    *len = 0;
    for (;;) {
        bool got;
        size_t n = 0;
        int st = read_line(ctx, r, &n, &got);
        if (st) return st;
        if (!got) return DT_OK;
        r->lineno++;
        char *s = r->line;
        // A UTF-8 byte-order mark some editors write at the start of the file is not part of the JSON.
        if (r->lineno == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) {
            memmove(s, s + 3, n - 2);
            n -= 3;
        }
        if (blank(s, n)) continue;
        *line = s;
        *len = n;
        *lineno = r->lineno;
        return DT_OK;
    }
}

void dt_jsonl_close(dt_jsonl *r) {
    if (!r) return;
    if (r->gz) gzclose(r->gz);
    free(r->path);
    free(r->in);
    free(r->line);
    free(r);
}

int dt_json_line_string(dt_ctx *ctx, const char *line, size_t n, char **buf, size_t *cap, size_t *len) {
    tk_js js = {line, line + n, line, "line"};
    tk_buf b = {*buf, 0, *cap};
    bool began = tk_js_peek(&js) == '"'; // a string that starts and then goes wrong: say where and why
    int rc = tk_js_string(ctx, &js, &b);
    bool trailing = !rc && tk_js_peek(&js) != 0;
    size_t at = (size_t)(js.p - line);
    if (!rc && !trailing) rc = tk_buf_put(ctx, &b, "", 1); // the NUL, not counted in *len
    *buf = b.p;
    *cap = b.cap;
    *len = rc || trailing ? 0 : b.n - 1;
    if (rc == DT_ENOMEM) return rc;
    if (trailing) return dt_fail(ctx, DT_EINPUT, "expected a JSON string alone on the line (more follows at byte %zu)", at);
    if (rc && began) {
        // tk_js_string's message is "line: byte N: why" ("unpaired surrogate in a \u escape", ...).
        char why[200];
        const char *m = strncmp(ctx->msg, "line: ", 6) ? ctx->msg : ctx->msg + 6;
        snprintf(why, sizeof why, "%.199s", m);
        return dt_fail(ctx, DT_EINPUT, "expected a JSON string (%s)", why);
    }
    return rc ? dt_fail(ctx, DT_EINPUT, "expected a JSON string") : DT_OK;
}
