// GGUF v3 writer: keeps each key's value serialized in memory, writes the header once all tensors are
// declared, then streams tensor data through a temp file that is renamed into place when complete.
#include "models/gguf_write.h"
#include "models/atomic_file.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *key;
    uint8_t *blob; // value type (i32), then for arrays elem type (i32) and count (u64), then the values
    size_t len;
} wkv;

typedef struct {
    char name[DT_GGUF_MAX_NAME + 1];
    int n_dims;
    int64_t ne[DT_GGUF_MAX_DIMS]; // ggml order
    uint32_t type;
    size_t nbytes;
    uint64_t offset; // in the data section
} wtensor;

struct dt_gguf_writer {
    char *path;
    dt_atomic_file af; // the temporary file (af.fp: its stream), open once begun until finished or failed
    bool open;
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    size_t alignment;
    bool begun, failed, finished;
    size_t cur;         // tensor whose data comes next
    size_t cur_written; // bytes of it written so far
    uint64_t pos;       // bytes written to the file
};

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF writing assumes a little-endian host");

int dt_gguf_writer_new(dt_ctx *ctx, const char *path, dt_gguf_writer **out) {
    dt_gguf_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    w->alignment = DT_GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return DT_OK;
}

void dt_gguf_writer_free(dt_gguf_writer *w) {
    if (!w) return;
    if (w->open) dt_atomic_abort(&w->af);
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].blob);
    }
    free(w->kvs);
    free(w->tensors);
    free(w->path);
    free(w);
}

// ---- metadata ----

static int check_open_for_keys(dt_ctx *ctx, dt_gguf_writer *w, const char *key) {
    if (!key || !key[0]) return dt_fail(ctx, DT_EINTERNAL, "%s: empty GGUF key", w->path);
    if (w->begun) return dt_fail(ctx, DT_EINTERNAL, "%s: key '%s' set after the header was written", w->path, key);
    return DT_OK;
}

// Takes ownership of blob (freed on failure).
static int put_kv(dt_ctx *ctx, dt_gguf_writer *w, const char *key, uint8_t *blob, size_t len) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kvs[i].key, key)) {
            free(w->kvs[i].blob);
            w->kvs[i].blob = blob;
            w->kvs[i].len = len;
            return DT_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *kvs = realloc(w->kvs, cap * sizeof *kvs);
        if (!kvs) { free(blob); return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", w->path); }
        w->kvs = kvs;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { free(blob); return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", w->path); }
    w->kvs[w->n_kv++] = (wkv){k, blob, len};
    return DT_OK;
}

int dt_gguf_set_scalar(dt_ctx *ctx, dt_gguf_writer *w, const char *key, dt_gguf_type type, const void *value) {
    int st = check_open_for_keys(ctx, w, key);
    if (st) return st;
    if (type == DT_GGUF_STRING) return dt_gguf_set_str(ctx, w, key, value);
    size_t size = dt_gguf_type_size(type);
    if (size == 0) return dt_fail(ctx, DT_EINTERNAL, "%s: key '%s': %d is not a scalar type", w->path, key, (int)type);
    if (!strcmp(key, "general.alignment")) {
        uint32_t a;
        if (type != DT_GGUF_U32) return dt_fail(ctx, DT_EINPUT, "%s: key 'general.alignment' must be of type u32", w->path);
        memcpy(&a, value, 4);
        if (a == 0 || (a & (a - 1)))
            return dt_fail(ctx, DT_EINPUT, "%s: key 'general.alignment': %u is not a power of two", w->path, a);
        w->alignment = a;
    }
    uint8_t *blob = malloc(4 + size);
    if (!blob) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", w->path);
    int32_t t = type;
    memcpy(blob, &t, 4);
    memcpy(blob + 4, value, size);
    if (type == DT_GGUF_BOOL) blob[4] = blob[4] != 0;
    return put_kv(ctx, w, key, blob, 4 + size);
}

#define SETTER(fn, ctype, gtype) \
    int fn(dt_ctx *ctx, dt_gguf_writer *w, const char *key, ctype v) { return dt_gguf_set_scalar(ctx, w, key, gtype, &v); }
SETTER(dt_gguf_set_u8, uint8_t, DT_GGUF_U8)
SETTER(dt_gguf_set_i8, int8_t, DT_GGUF_I8)
SETTER(dt_gguf_set_u16, uint16_t, DT_GGUF_U16)
SETTER(dt_gguf_set_i16, int16_t, DT_GGUF_I16)
SETTER(dt_gguf_set_u32, uint32_t, DT_GGUF_U32)
SETTER(dt_gguf_set_i32, int32_t, DT_GGUF_I32)
SETTER(dt_gguf_set_u64, uint64_t, DT_GGUF_U64)
SETTER(dt_gguf_set_i64, int64_t, DT_GGUF_I64)
SETTER(dt_gguf_set_f32, float, DT_GGUF_F32)
SETTER(dt_gguf_set_f64, double, DT_GGUF_F64)
#undef SETTER

int dt_gguf_set_bool(dt_ctx *ctx, dt_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return dt_gguf_set_scalar(ctx, w, key, DT_GGUF_BOOL, &b);
}

// Serializes n strings after a prefix of `head` bytes.
static int string_blob(dt_ctx *ctx, dt_gguf_writer *w, const uint8_t *head, size_t head_len,
                       const char *const *strs, const size_t *lens, size_t n, uint8_t **blob_out, size_t *len_out) {
    size_t total = head_len;
    for (size_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(strs[i]);
        if (l > SIZE_MAX - total - 8) return dt_fail(ctx, DT_ENOMEM, "%s: strings too large", w->path);
        total += 8 + l;
    }
    uint8_t *blob = malloc(total ? total : 1), *p = blob;
    if (!blob) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", w->path);
    memcpy(p, head, head_len);
    p += head_len;
    for (size_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : strlen(strs[i]);
        memcpy(p, &l, 8);
        if (l) memcpy(p + 8, strs[i], (size_t)l);
        p += 8 + l;
    }
    *blob_out = blob;
    *len_out = total;
    return DT_OK;
}

int dt_gguf_set_str(dt_ctx *ctx, dt_gguf_writer *w, const char *key, const char *v) {
    int st = check_open_for_keys(ctx, w, key);
    if (st) return st;
    if (!strcmp(key, "general.alignment")) return dt_fail(ctx, DT_EINPUT, "%s: key 'general.alignment' must be of type u32", w->path);
    int32_t t = DT_GGUF_STRING;
    uint8_t head[4], *blob;
    size_t len;
    memcpy(head, &t, 4);
    st = string_blob(ctx, w, head, 4, &v, NULL, 1, &blob, &len);
    return st ? st : put_kv(ctx, w, key, blob, len);
}

static void array_head(uint8_t head[16], dt_gguf_type elem, uint64_t n) {
    int32_t a = DT_GGUF_ARRAY, e = elem;
    memcpy(head, &a, 4);
    memcpy(head + 4, &e, 4);
    memcpy(head + 8, &n, 8);
}

int dt_gguf_set_arr(dt_ctx *ctx, dt_gguf_writer *w, const char *key, dt_gguf_type elem, const void *data, size_t n) {
    int st = check_open_for_keys(ctx, w, key);
    if (st) return st;
    size_t es = dt_gguf_type_size(elem);
    if (es == 0) return dt_fail(ctx, DT_EINTERNAL, "%s: key '%s': arrays of type %d are written with dt_gguf_set_arr_str or not at all",
                                w->path, key, (int)elem);
    if (!strcmp(key, "general.alignment")) return dt_fail(ctx, DT_EINPUT, "%s: key 'general.alignment' must be of type u32", w->path);
    if (n > (SIZE_MAX - 16) / es) return dt_fail(ctx, DT_ENOMEM, "%s: key '%s': array too large", w->path, key);
    uint8_t *blob = malloc(16 + n * es);
    if (!blob) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", w->path);
    array_head(blob, elem, n);
    if (n) memcpy(blob + 16, data, n * es);
    if (elem == DT_GGUF_BOOL)
        for (size_t i = 0; i < n; i++) blob[16 + i] = blob[16 + i] != 0;
    return put_kv(ctx, w, key, blob, 16 + n * es);
}

int dt_gguf_set_arr_str(dt_ctx *ctx, dt_gguf_writer *w, const char *key, const char *const *strs,
                        const size_t *lens, size_t n) {
    int st = check_open_for_keys(ctx, w, key);
    if (st) return st;
    if (!strcmp(key, "general.alignment")) return dt_fail(ctx, DT_EINPUT, "%s: key 'general.alignment' must be of type u32", w->path);
    uint8_t head[16], *blob;
    size_t len;
    array_head(head, DT_GGUF_STRING, n);
    st = string_blob(ctx, w, head, 16, strs, lens, n, &blob, &len);
    return st ? st : put_kv(ctx, w, key, blob, len);
}

int dt_gguf_set_kv(dt_ctx *ctx, dt_gguf_writer *w, const dt_gguf_kv *kv) {
    if (kv->type == DT_GGUF_ARRAY) {
        if (kv->arr_type != DT_GGUF_STRING) return dt_gguf_set_arr(ctx, w, kv->key, kv->arr_type, kv->data, (size_t)kv->n);
        size_t *lens = malloc((size_t)kv->n * sizeof *lens + 1);
        if (!lens) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", w->path);
        for (uint64_t i = 0; i < kv->n; i++) lens[i] = (size_t)kv->str_lens[i];
        int st = dt_gguf_set_arr_str(ctx, w, kv->key, kv->strs, lens, (size_t)kv->n);
        free(lens);
        return st;
    }
    if (kv->type == DT_GGUF_STRING) {
        int st = check_open_for_keys(ctx, w, kv->key);
        if (st) return st;
        int32_t t = DT_GGUF_STRING;
        uint8_t head[4], *blob;
        size_t len, l = (size_t)kv->str_lens[0];
        memcpy(head, &t, 4);
        st = string_blob(ctx, w, head, 4, kv->strs, &l, 1, &blob, &len);
        return st ? st : put_kv(ctx, w, kv->key, blob, len);
    }
    return dt_gguf_set_scalar(ctx, w, kv->key, kv->type, kv->data);
}

bool dt_gguf_has_key(const dt_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kvs[i].key, key)) return true;
    return false;
}

// ---- tensors ----

int dt_gguf_add_tensor(dt_ctx *ctx, dt_gguf_writer *w, const char *name, uint32_t ggml_type, int ndim,
                       const int64_t *shape) {
    if (w->begun) return dt_fail(ctx, DT_EINTERNAL, "%s: tensor '%s' added after the header was written", w->path, name);
    size_t len = strlen(name);
    if (len == 0 || len > DT_GGUF_MAX_NAME)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor name '%s' must be 1 to %d bytes long (llama.cpp's limit)",
                       w->path, name, DT_GGUF_MAX_NAME);
    if (ndim < 1 || ndim > DT_GGUF_MAX_DIMS)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': %d dimensions, expected 1 to %d", w->path, name, ndim, DT_GGUF_MAX_DIMS);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' added twice", w->path, name);
    wtensor t = {.n_dims = ndim, .type = ggml_type};
    memcpy(t.name, name, len + 1);
    for (int d = 0; d < DT_GGUF_MAX_DIMS; d++) t.ne[d] = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': negative dimension %lld", w->path, name, (long long)shape[d]);
        t.ne[d] = shape[ndim - 1 - d];
    }
    const char *tname;
    int64_t blck;
    if (!dt_ggml_type_info(ggml_type, &tname, &blck, NULL))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': unknown ggml type %u", w->path, name, ggml_type);
    if (t.ne[0] % blck)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                       w->path, name, (long long)t.ne[0], tname, (long long)blck);
    if (!dt_ggml_nbytes(ggml_type, ndim, t.ne, &t.nbytes))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': too large", w->path, name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *ts = realloc(w->tensors, cap * sizeof *ts);
        if (!ts) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", w->path);
        w->tensors = ts;
        w->cap_tensors = cap;
    }
    w->tensors[w->n_tensors++] = t;
    return DT_OK;
}

int64_t dt_gguf_writer_n_tensors(const dt_gguf_writer *w) { return (int64_t)w->n_tensors; }

// ---- file output ----

// An I/O error ends the writer: the temp file is closed and removed at once.
static int io_fail(dt_ctx *ctx, dt_gguf_writer *w, const char *what) {
    int code = dt_fail(ctx, DT_EIO, "%s: %s: %s", w->path, what, strerror(errno ? errno : EIO));
    w->failed = true;
    if (w->open) dt_atomic_abort(&w->af);
    w->open = false;
    return code;
}

static int out(dt_ctx *ctx, dt_gguf_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->af.fp) != n) return io_fail(ctx, w, "write failed");
    w->pos += n;
    return DT_OK;
}

static int out_pad(dt_ctx *ctx, dt_gguf_writer *w) {
    static const uint8_t zeros[256];
    size_t pad = (w->alignment - w->pos % w->alignment) % w->alignment;
    while (pad) {
        size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        int st = out(ctx, w, zeros, n);
        if (st) return st;
        pad -= n;
    }
    return DT_OK;
}

static int out_u64(dt_ctx *ctx, dt_gguf_writer *w, uint64_t v) { return out(ctx, w, &v, 8); }

static int out_str(dt_ctx *ctx, dt_gguf_writer *w, const char *s) {
    int st = out_u64(ctx, w, strlen(s));
    return st ? st : out(ctx, w, s, strlen(s));
}

static int open_temp(dt_ctx *ctx, dt_gguf_writer *w) {
    int st = dt_atomic_open(ctx, w->path, &w->af);
    if (!st && (st = dt_atomic_stream(ctx, &w->af))) dt_atomic_abort(&w->af);
    if (st) {
        w->failed = true;
        return st;
    }
    w->open = true;
    return DT_OK;
}

// Moves past tensors with no data, so the "current tensor" always has bytes to come.
static int skip_empty(dt_ctx *ctx, dt_gguf_writer *w) {
    while (w->cur < w->n_tensors && w->tensors[w->cur].nbytes == 0) {
        int st = out_pad(ctx, w);
        if (st) return st;
        w->cur++;
    }
    return DT_OK;
}

int dt_gguf_writer_begin(dt_ctx *ctx, dt_gguf_writer *w) {
    if (w->failed) return dt_fail(ctx, DT_EINTERNAL, "%s: writer used after an error", w->path);
    if (w->begun) return DT_OK;
    w->begun = true;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = off;
        off += (w->tensors[i].nbytes + w->alignment - 1) / w->alignment * w->alignment;
    }
    int st = open_temp(ctx, w);
    if (st) return st;
    uint32_t version = DT_GGUF_VERSION;
    if ((st = out(ctx, w, DT_GGUF_MAGIC, 4)) || (st = out(ctx, w, &version, 4)) ||
        (st = out_u64(ctx, w, w->n_tensors)) || (st = out_u64(ctx, w, w->n_kv)))
        return st;
    for (size_t i = 0; i < w->n_kv; i++)
        if ((st = out_str(ctx, w, w->kvs[i].key)) || (st = out(ctx, w, w->kvs[i].blob, w->kvs[i].len))) return st;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        uint32_t n_dims = (uint32_t)t->n_dims;
        int32_t type = (int32_t)t->type;
        if ((st = out_str(ctx, w, t->name)) || (st = out(ctx, w, &n_dims, 4)) ||
            (st = out(ctx, w, t->ne, 8 * (size_t)t->n_dims)) || (st = out(ctx, w, &type, 4)) ||
            (st = out_u64(ctx, w, t->offset)))
            return st;
    }
    if ((st = out_pad(ctx, w))) return st;
    return skip_empty(ctx, w);
}

int dt_gguf_write_data(dt_ctx *ctx, dt_gguf_writer *w, const void *data, size_t n) {
    int st = dt_gguf_writer_begin(ctx, w);
    if (st) return st;
    if (n == 0) return DT_OK;
    if (w->cur >= w->n_tensors) {
        w->failed = true;
        return dt_fail(ctx, DT_EINTERNAL, "%s: %zu bytes of tensor data written after the last tensor", w->path, n);
    }
    const wtensor *t = &w->tensors[w->cur];
    if (n > t->nbytes - w->cur_written) {
        w->failed = true;
        return dt_fail(ctx, DT_EINTERNAL, "%s: tensor '%s': %zu bytes written, but only %zu of its %zu remain",
                       w->path, t->name, n, t->nbytes - w->cur_written, t->nbytes);
    }
    if ((st = out(ctx, w, data, n))) return st;
    w->cur_written += n;
    if (w->cur_written == t->nbytes) {
        w->cur++;
        w->cur_written = 0;
        if ((st = out_pad(ctx, w))) return st;
        return skip_empty(ctx, w);
    }
    return DT_OK;
}

const char *dt_gguf_writer_next_tensor(const dt_gguf_writer *w, size_t *nbytes) {
    size_t i = w->cur;
    if (!w->begun) // before the header, the current tensor is the first non-empty one
        while (i < w->n_tensors && w->tensors[i].nbytes == 0) i++;
    if (i >= w->n_tensors) return NULL;
    if (nbytes) *nbytes = w->tensors[i].nbytes;
    return w->tensors[i].name;
}

int dt_gguf_write_tensor(dt_ctx *ctx, dt_gguf_writer *w, const char *name, const void *data) {
    int st = dt_gguf_writer_begin(ctx, w);
    if (st) return st;
    // An empty tensor has nothing to write; it only has to exist.
    for (size_t i = 0; i < w->cur; i++)
        if (!strcmp(w->tensors[i].name, name) && w->tensors[i].nbytes == 0) return DT_OK;
    const char *next = dt_gguf_writer_next_tensor(w, NULL);
    if (!next || strcmp(next, name) || w->cur_written) {
        w->failed = true;
        return dt_fail(ctx, DT_EINTERNAL, "%s: tensor '%s' written out of order (expected %s%s%s)", w->path, name,
                       next ? "'" : "", next ? next : "no more tensors", next ? "'" : "");
    }
    return dt_gguf_write_data(ctx, w, data, w->tensors[w->cur].nbytes);
}

int dt_gguf_write_tensors(dt_ctx *ctx, dt_gguf_writer *w, dt_gguf_fill_fn fill, void *user) {
    int st = dt_gguf_writer_begin(ctx, w);
    size_t nbytes;
    const char *name;
    while (!st && (name = dt_gguf_writer_next_tensor(w, &nbytes))) {
        size_t index = w->cur;
        st = fill(user, ctx, w, name, nbytes);
        if (!st && w->cur == index) {
            w->failed = true;
            st = dt_fail(ctx, DT_EINTERNAL, "%s: tensor '%s': the fill callback wrote %zu of its %zu bytes",
                         w->path, name, w->cur_written, nbytes);
        }
    }
    return st;
}

int dt_gguf_writer_finish(dt_ctx *ctx, dt_gguf_writer *w) {
    if (w->finished) return dt_fail(ctx, DT_EINTERNAL, "%s: writer finished twice", w->path);
    int st = dt_gguf_writer_begin(ctx, w);
    if (st) return st;
    if (w->failed) return dt_fail(ctx, DT_EINTERNAL, "%s: writer used after an error", w->path);
    if (w->cur < w->n_tensors) {
        w->failed = true;
        return dt_fail(ctx, DT_EINTERNAL, "%s: tensor '%s' has %zu of its %zu bytes written; the file is incomplete",
                       w->path, w->tensors[w->cur].name, w->cur_written, w->tensors[w->cur].nbytes);
    }
    w->open = false;
    if ((st = dt_atomic_commit(ctx, &w->af))) { // the commit removes the temporary file when it fails
        w->failed = true;
        return st;
    }
    w->finished = true;
    return DT_OK;
}
