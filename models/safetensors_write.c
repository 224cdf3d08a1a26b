// safetensors writer, laid out as the reference (Rust) implementation does so the bytes match
// `safetensors.torch.save_file`: see safetensors_write.h.
#include "models/safetensors_write.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "models/atomic_file.h"

typedef struct {
    char *name;
    dt_dtype dtype;
    int ndim;
    int64_t shape[DT_MAX_DIMS];
    size_t nbytes;
    const void *data;    // borrowed, or NULL when fill is set
    dt_st_fill_fn fill;
    void *user;
} w_entry;

// Whether msg holds 'name' (in single quotes).
static bool names_quoted(const char *msg, const char *name) {
    size_t k = strlen(name);
    for (const char *p = strstr(msg, name); p; p = strstr(p + 1, name))
        if (p > msg && p[-1] == '\'' && p[k] == '\'') return true;
    return false;
}

struct dt_st_writer {
    w_entry *e;          // in the order added
    size_t n, cap;
    char **meta;         // key, value pairs
    size_t nmeta;
};

int dt_st_writer_init(dt_ctx *ctx, dt_st_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? DT_OK : dt_fail(ctx, DT_ENOMEM, "safetensors writer: out of memory");
}

void dt_st_writer_free(dt_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
    for (size_t i = 0; i < 2 * w->nmeta; i++) free(w->meta[i]);
    free(w->meta);
    free(w->e);
    free(w);
}

static int add(dt_ctx *ctx, dt_st_writer *w, const char *name, dt_dtype dtype, int ndim, const int64_t *shape,
               const void *data, dt_st_fill_fn fill, void *user) {
    if (!name || !name[0] || !strcmp(name, "__metadata__"))
        return dt_fail(ctx, DT_EINPUT, "safetensors writer: invalid tensor name '%s'", name ? name : "(null)");
    if (dtype != DT_F32 && dtype != DT_F16 && dtype != DT_BF16 && dtype != DT_I32)
        return dt_fail(ctx, DT_EINPUT, "safetensors writer: tensor '%s': unsupported dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > DT_MAX_DIMS)
        return dt_fail(ctx, DT_EINPUT, "safetensors writer: tensor '%s': %d dimensions (0..%d allowed)", name,
                       ndim, DT_MAX_DIMS);
    uint64_t nbytes = dt_dtype_size(dtype);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(nbytes, (uint64_t)shape[i], &nbytes))
            return dt_fail(ctx, DT_EINPUT, "safetensors writer: tensor '%s': invalid shape", name);
    if (nbytes && !data && !fill)
        return dt_fail(ctx, DT_EINPUT, "safetensors writer: tensor '%s': no data", name);
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name))
            return dt_fail(ctx, DT_EINPUT, "safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 32;
        w_entry *p = realloc(w->e, cap * sizeof *p);
        if (!p) return dt_fail(ctx, DT_ENOMEM, "safetensors writer: out of memory");
        w->e = p;
        w->cap = cap;
    }
    w_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) return dt_fail(ctx, DT_ENOMEM, "safetensors writer: out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = (size_t)nbytes;
    e->data = data;
    e->fill = fill;
    e->user = user;
    w->n++;
    return DT_OK;
}

int dt_st_writer_add(dt_ctx *ctx, dt_st_writer *w, const char *name, dt_dtype dtype, int ndim,
                     const int64_t *shape, const void *data) {
    return add(ctx, w, name, dtype, ndim, shape, data, NULL, NULL);
}

int dt_st_writer_add_fn(dt_ctx *ctx, dt_st_writer *w, const char *name, dt_dtype dtype, int ndim,
                        const int64_t *shape, dt_st_fill_fn fill, void *user) {
    if (!fill) return dt_fail(ctx, DT_EINTERNAL, "safetensors writer: tensor '%s': no fill function", name);
    return add(ctx, w, name, dtype, ndim, shape, NULL, fill, user);
}

int dt_st_writer_set_metadata(dt_ctx *ctx, dt_st_writer *w, const char *key, const char *value) {
    for (size_t i = 0; i < w->nmeta; i++)
        if (!strcmp(w->meta[2 * i], key)) {
            char *v = strdup(value);
            if (!v) return dt_fail(ctx, DT_ENOMEM, "safetensors writer: out of memory");
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return DT_OK;
        }
    char **m = realloc(w->meta, 2 * (w->nmeta + 1) * sizeof *m);
    if (!m) return dt_fail(ctx, DT_ENOMEM, "safetensors writer: out of memory");
    w->meta = m;
    m[2 * w->nmeta] = strdup(key);
    m[2 * w->nmeta + 1] = strdup(value);
    w->nmeta++;
    if (!m[2 * w->nmeta - 2] || !m[2 * w->nmeta - 1])
        return dt_fail(ctx, DT_ENOMEM, "safetensors writer: out of memory");
    return DT_OK;
}

// ---- header -----------------------------------------------------------------------------------------

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, unsigned long long v) {
    char t[32];
    int k = snprintf(t, sizeof t, fmt, v);
    sb_put(b, t, (size_t)k);
}

// A JSON string as serde_json writes it: only '"', '\\' and control characters are escaped, the
// named short escapes where JSON has them, \u00xx (lower-case hex) otherwise; UTF-8 passes through.
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        const char *esc = NULL;
        char u[8];
        switch (*c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (*c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", *c);
                esc = u;
            }
        }
        if (esc) sb_str(b, esc);
        else sb_put(b, (const char *)c, 1);
    }
    sb_put(b, "\"", 1);
}

// The reference orders dtypes BOOL < U8 < ... < F16 < BF16 < I32 < U32 < F32 < F64 < I64 and lays out
// the largest first, so every tensor starts aligned for its element size.
static int dtype_rank(dt_dtype t) {
    switch (t) {
    case DT_F16: return 0;
    case DT_BF16: return 1;
    case DT_I32: return 2;
    case DT_F32: return 3;
    default: return -1; // block types are not safetensors dtypes
    }
}

static int cmp_layout(const void *a, const void *b) {
    const w_entry *x = *(const w_entry *const *)a, *y = *(const w_entry *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static int cmp_meta(const void *a, const void *b) { return strcmp(**(char *const *const *)a, **(char *const *const *)b); }

// Builds the padded header for entries (already in layout order).
static int build_header(dt_ctx *ctx, const dt_st_writer *w, w_entry **ents, size_t n, sbuf *b) {
    sb_str(b, "{");
    bool first = true;
    if (w->nmeta) {
        // A Rust HashMap has no stable order; sorted keys keep our output deterministic, and with one
        // key (PEFT's {"format":"pt"}) the bytes are the reference's.
        char **keys[w->nmeta];
        for (size_t i = 0; i < w->nmeta; i++) keys[i] = &w->meta[2 * i];
        qsort(keys, w->nmeta, sizeof *keys, cmp_meta);
        sb_str(b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) sb_str(b, ",");
            sb_json_string(b, keys[i][0]);
            sb_str(b, ":");
            sb_json_string(b, keys[i][1]);
        }
        sb_str(b, "}");
        first = false;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const w_entry *e = ents[i];
        if (!first) sb_str(b, ",");
        first = false;
        sb_json_string(b, e->name);
        sb_str(b, ":{\"dtype\":");
        sb_json_string(b, dt_dtype_name(e->dtype));
        sb_str(b, ",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) sb_fmt(b, d ? ",%llu" : "%llu", (unsigned long long)e->shape[d]);
        sb_fmt(b, "],\"data_offsets\":[%llu,", off);
        off += e->nbytes;
        sb_fmt(b, "%llu]}", off);
    }
    sb_str(b, "}");
    while (b->n % 8) sb_str(b, " "); // pads so the data buffer starts 8-aligned
    if (b->oom) return dt_fail(ctx, DT_ENOMEM, "safetensors writer: out of memory for the header");
    return DT_OK;
}

// Writes the given entries (any order; sorted here) to one file atomically.
static int write_file(dt_ctx *ctx, const dt_st_writer *w, w_entry **ents, size_t n, const char *path) {
    qsort(ents, n, sizeof *ents, cmp_layout);
    sbuf hdr = {0};
    int rc = build_header(ctx, w, ents, n, &hdr);
    if (rc) {
        free(hdr.p);
        return rc;
    }
    size_t fill_max = 0;
    for (size_t i = 0; i < n; i++)
        if (ents[i]->fill && ents[i]->nbytes > fill_max) fill_max = ents[i]->nbytes;
    void *buf = NULL;
    if (fill_max && !(buf = aligned_alloc(64, (fill_max + 63) / 64 * 64))) {
        free(hdr.p);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory for a %zu-byte tensor", path, fill_max);
    }
    dt_atomic_file f;
    rc = dt_atomic_open(ctx, path, &f);
    if (!rc) {
        unsigned char len[8];
        for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)hdr.n >> (8 * i));
        rc = dt_atomic_append(ctx, &f, len, 8);
        if (!rc) rc = dt_atomic_append(ctx, &f, hdr.p, hdr.n);
        for (size_t i = 0; i < n && !rc; i++) {
            const w_entry *e = ents[i];
            if (!e->nbytes) continue;
            if (e->fill) {
                rc = e->fill(ctx, e->user, buf, e->nbytes);
                // A fill that names the tensor itself (the merge's: its source file and tensor) keeps its
                // message; a prefix would repeat the name and add path, a temporary when written into a folder
                // that is renamed into place.
                if (rc && !names_quoted(ctx->msg, e->name)) rc = dt_prefix(ctx, rc, "%s: tensor '%s': ", path, e->name);
            }
            if (!rc) rc = dt_atomic_append(ctx, &f, e->fill ? buf : e->data, e->nbytes);
        }
        if (rc) dt_atomic_abort(&f);
        else rc = dt_atomic_commit(ctx, &f);
    }
    free(buf);
    free(hdr.p);
    return rc;
}

int dt_st_writer_write(dt_ctx *ctx, dt_st_writer *w, const char *path) {
    w_entry **ents = malloc((w->n ? w->n : 1) * sizeof *ents);
    if (!ents) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < w->n; i++) ents[i] = &w->e[i];
    int rc = write_file(ctx, w, ents, w->n, path);
    free(ents);
    return rc;
}

// ---- shards -----------------------------------------------------------------------------------------

static char *shard_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) snprintf(p, a + b + 2, "%s/%s", dir, name);
    return p;
}

int dt_st_writer_write_sharded(dt_ctx *ctx, dt_st_writer *w, const char *dir, size_t max_shard_bytes) {
    // shard_of[i]: the shard of entry i, filled greedily in insertion order.
    int *shard_of = malloc((w->n ? w->n : 1) * sizeof *shard_of);
    w_entry **ents = malloc((w->n ? w->n : 1) * sizeof *ents);
    json_t *index = NULL;
    int rc = DT_OK, nshards = 1;
    if (!shard_of || !ents) {
        rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    size_t cur = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (cur > 0 && cur + w->e[i].nbytes > max_shard_bytes) {
            nshards++;
            cur = 0;
        }
        cur += w->e[i].nbytes;
        total += w->e[i].nbytes;
        shard_of[i] = nshards - 1;
    }
    if (nshards == 1) {
        char *p = shard_path(dir, "model.safetensors");
        rc = p ? dt_st_writer_write(ctx, w, p) : dt_fail(ctx, DT_ENOMEM, "%s: out of memory", dir);
        free(p);
        goto done;
    }
    index = json_object();
    json_t *meta = json_object(), *wm = json_object();
    if (!index || !meta || !wm || json_object_set_new(index, "metadata", meta) ||
        json_object_set_new(index, "weight_map", wm) ||
        json_object_set_new(meta, "total_size", json_integer((json_int_t)total))) {
        rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    for (int s = 0; s < nshards && !rc; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, nshards);
        size_t n = 0;
        for (size_t i = 0; i < w->n; i++)
            if (shard_of[i] == s) {
                ents[n++] = &w->e[i];
                if (json_object_set_new(wm, w->e[i].name, json_string(name)))
                    rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", dir);
            }
        char *p = shard_path(dir, name);
        if (!p) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", dir);
        if (!rc) rc = write_file(ctx, w, ents, n, p);
        free(p);
    }
    if (!rc) {
        // As transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
        char *text = json_dumps(index, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
        char *p = shard_path(dir, "model.safetensors.index.json");
        if (!text || !p) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", dir);
        else {
            size_t len = strlen(text);
            text[len] = '\n'; // json_dumps' buffer ends in a NUL we may overwrite: it is not used again
            rc = dt_atomic_write(ctx, p, text, len + 1);
        }
        free(text);
        free(p);
    }
done:
    json_decref(index);
    free(shard_of);
    free(ents);
    return rc;
}
