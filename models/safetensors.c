// safetensors reader. A file is: 8-byte little-endian header length N, N bytes of JSON header, then the
// data buffer. The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} with
// offsets relative to the data buffer; an optional "__metadata__" maps strings to strings. The tensors
// must tile the data buffer exactly: no gap, no overlap, nothing after the last one.
#include "models/safetensors.h"
#include "models/quant_tensor.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull // the format's limit (100 MB), as the reference implementation
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

typedef struct {
    char *path;
    void *map;   // the whole file, read-only
    size_t size;
} st_shard;

struct dt_safetensors {
    char *path;           // what was opened (file, index or folder): named in lookup errors
    dt_st_tensor *t;      // shard order, then offset order
    size_t n, cap;
    size_t *by_name;      // indices into t sorted by name, for dt_st_find
    st_shard *shards;
    int nshards;
    char **meta;          // key, value, key, value... of the first shard's __metadata__
    size_t nmeta;
};

static const struct {
    const char *name;
    dt_st_dtype st;
    dt_dtype dt;
    size_t size;
} ST_DTYPES[] = {
    {"F32", DT_ST_F32, DT_F32, 4}, {"F16", DT_ST_F16, DT_F16, 2}, {"BF16", DT_ST_BF16, DT_BF16, 2},
    {"I32", DT_ST_I32, DT_I32, 4}, {"I64", DT_ST_I64, DT_I32, 8}, {"U8", DT_ST_U8, DT_I32, 1},
};
#define N_DTYPES (sizeof ST_DTYPES / sizeof ST_DTYPES[0])

// Valid safetensors dtypes this project cannot hold: refused as unsupported rather than as corrupt.
static const char *const ST_OTHER_DTYPES[] = {"BOOL", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16",
                                              "U16", "U32", "F64", "U64", "F4", "F6_E2M3", "F6_E3M2",
                                              "C64"};

const char *dt_st_dtype_name(dt_st_dtype t) {
    if (t == DT_ST_BLOCK) return "BLOCK"; // never read from a file: not in the table
    for (size_t i = 0; i < N_DTYPES; i++)
        if (ST_DTYPES[i].st == t) return ST_DTYPES[i].name;
    return "?";
}

size_t dt_st_dtype_size(dt_st_dtype t) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (ST_DTYPES[i].st == t) return ST_DTYPES[i].size;
    return 0;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// ---- one file ---------------------------------------------------------------------------------------

typedef struct {
    dt_st_tensor t;
    uint64_t begin, end;
} st_entry;

static int cmp_entry(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

// Reads a non-negative JSON integer, or returns false.
static bool json_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int parse_entry(dt_ctx *ctx, const char *path, const char *name, json_t *v, st_entry *e) {
    memset(e, 0, sizeof *e);
    if (!json_is_object(v))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': entry is a JSON %s, expected an object with "
                       "dtype, shape and data_offsets", path, name, json_kind(v));
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': %s 'dtype', expected a string", path, name,
                       dt ? "non-string" : "missing");
    const char *dts = json_string_value(dt);
    size_t k = 0;
    while (k < N_DTYPES && strcmp(ST_DTYPES[k].name, dts)) k++;
    if (k == N_DTYPES) {
        for (size_t j = 0; j < sizeof ST_OTHER_DTYPES / sizeof *ST_OTHER_DTYPES; j++)
            if (!strcmp(ST_OTHER_DTYPES[j], dts))
                return dt_fail(ctx, DT_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported here "
                               "(supported: F32, F16, BF16, I32, I64)", path, name, dts);
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': unknown dtype '%s' (supported: F32, F16, BF16, "
                       "I32, I64)", path, name, dts);
    }
    e->t.st_dtype = ST_DTYPES[k].st;
    e->t.dtype = ST_DTYPES[k].dt;

    if (!json_is_array(shape))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': %s 'shape', expected an array of non-negative "
                       "integers", path, name, shape ? "non-array" : "missing");
    size_t nd = json_array_size(shape);
    if (nd > DT_MAX_DIMS)
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: tensor '%s': %zu dimensions, at most %d are supported",
                       path, name, nd, DT_MAX_DIMS);
    e->t.ndim = (int)nd;
    // Element count and byte size in 64 bits with overflow checks: a corrupt shape must not wrap around
    // into a size that happens to match the offsets.
    uint64_t numel = 1, nonzero = 1;
    for (int i = 0; i < DT_MAX_DIMS; i++) e->t.shape[i] = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        json_t *x = json_array_get(shape, i);
        if (!json_uint(x, &d))
            return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': shape[%zu] is %s%s, expected a non-negative "
                           "integer", path, name, i, json_is_integer(x) ? "negative " : "a ",
                           json_is_integer(x) ? "" : json_kind(x));
        e->t.shape[i] = (int64_t)d;
        // Dimensions also multiply without overflow when a zero makes the tensor empty (dt_numel may take
        // them in another order), and the count fits dt_numel's int64.
        if (d != 0 && (__builtin_mul_overflow(nonzero, d, &nonzero) || nonzero > INT64_MAX))
            return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': shape overflows 63 bits", path, name);
        numel *= d;
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)ST_DTYPES[k].size, &nbytes))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': byte size overflows 64 bits", path, name);

    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_uint(json_array_get(offs, 0), &e->begin) ||
        !json_uint(json_array_get(offs, 1), &e->end))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': %s 'data_offsets', expected [begin, end] as two "
                       "non-negative integers", path, name, offs ? "invalid" : "missing");
    if (e->end < e->begin)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                       path, name, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != nbytes) {
        char s[128];
        format_shape(s, sizeof s, e->t.ndim, e->t.shape);
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': shape %s of %s needs %llu bytes but data_offsets "
                       "[%llu, %llu] hold %llu", path, name, s, dts, (unsigned long long)nbytes,
                       (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin));
    }
    e->t.nbytes = (size_t)nbytes;
    return DT_OK;
}

static int push_tensor(dt_ctx *ctx, dt_safetensors *st, const dt_st_tensor *t) {
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        dt_st_tensor *p = realloc(st->t, cap * sizeof *p);
        if (!p) return dt_fail(ctx, DT_ENOMEM, "out of memory reading tensor list");
        st->t = p;
        st->cap = cap;
    }
    st->t[st->n++] = *t;
    return DT_OK;
}

static int parse_metadata(dt_ctx *ctx, dt_safetensors *st, const char *path, json_t *m, bool keep) {
    if (!json_is_object(m))
        return dt_fail(ctx, DT_EINPUT, "%s: __metadata__ is a JSON %s, expected an object of strings", path,
                       json_kind(m));
    const char *key;
    json_t *v;
    json_object_foreach(m, key, v) {
        if (!json_is_string(v))
            return dt_fail(ctx, DT_EINPUT, "%s: __metadata__ key '%s' is a JSON %s, expected a string", path,
                           key, json_kind(v));
    }
    if (!keep) return DT_OK;
    size_t n = json_object_size(m), i = 0;
    st->meta = calloc(2 * n + 1, sizeof *st->meta);
    if (!st->meta) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    json_object_foreach(m, key, v) {
        st->meta[2 * i] = strdup(key);
        st->meta[2 * i + 1] = strdup(json_string_value(v));
        st->nmeta = ++i;
        if (!st->meta[2 * i - 2] || !st->meta[2 * i - 1]) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    return DT_OK;
}

// Maps one file, validates its header and appends its tensors (in offset order) to st.
static int open_shard(dt_ctx *ctx, dt_safetensors *st, const char *path) {
    st_shard *sh = realloc(st->shards, (size_t)(st->nshards + 1) * sizeof *sh);
    if (!sh) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    st->shards = sh;
    int si = st->nshards++;
    sh = &st->shards[si];
    memset(sh, 0, sizeof *sh);
    sh->path = strdup(path);
    if (!sh->path) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dt_fail(ctx, errno == ENOENT || errno == EACCES || errno == ENOTDIR ? DT_EINPUT : DT_EIO,
                       "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return dt_fail(ctx, DT_EINPUT, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return dt_fail(ctx, DT_EINPUT, "%s: file is %zu bytes, too short for a safetensors header", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); // the mapping keeps the file
    if (map == MAP_FAILED) return dt_fail(ctx, DT_EIO, "%s: mmap failed: %s", path, strerror(map_errno));
    sh->map = map;
    sh->size = size;

    const unsigned char *b = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    if (hlen > ST_MAX_HEADER)
        return dt_fail(ctx, DT_EINPUT, "%s: header length %llu exceeds the format's limit of %llu bytes "
                       "(not a safetensors file?)", path, (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > size - 8)
        return dt_fail(ctx, DT_EINPUT, "%s: header length %llu runs past the end of the file (%zu bytes; "
                       "truncated?)", path, (unsigned long long)hlen, size);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)b + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dt_fail(ctx, DT_EINPUT, "%s: header is not valid JSON: %s (header byte %d)", path, jerr.text,
                       jerr.position);
    if (!json_is_object(root)) {
        int rc = dt_fail(ctx, DT_EINPUT, "%s: header is a JSON %s, expected an object", path, json_kind(root));
        json_decref(root);
        return rc;
    }

    size_t data_start = 8 + (size_t)hlen, data_len = size - data_start;
    size_t cap = json_object_size(root), n = 0;
    st_entry *ents = calloc(cap ? cap : 1, sizeof *ents);
    int rc = ents ? DT_OK : dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (rc) break;
        if (!strcmp(key, "__metadata__")) {
            rc = parse_metadata(ctx, st, path, v, si == 0);
            continue;
        }
        rc = parse_entry(ctx, path, key, v, &ents[n]);
        if (rc) break;
        if (ents[n].end > data_len) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the "
                         "data buffer (%zu bytes; truncated?)", path, key, (unsigned long long)ents[n].begin,
                         (unsigned long long)ents[n].end, data_len);
            break;
        }
        ents[n].t.name = strdup(key);
        if (!ents[n].t.name) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
        n++;
    }
    json_decref(root);

    // Tiling: sorted by offset, each tensor starts where the previous one ended.
    if (!rc) {
        qsort(ents, n, sizeof *ents, cmp_entry);
        uint64_t pos = 0;
        for (size_t i = 0; i < n && !rc; i++) {
            if (ents[i].begin > pos)
                rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': data_offsets begin at %llu but %s ends at %llu "
                             "(a gap of %llu bytes)", path, ents[i].t.name, (unsigned long long)ents[i].begin,
                             i ? "the previous tensor" : "nothing: the data buffer starts at 0; it",
                             (unsigned long long)pos, (unsigned long long)(ents[i].begin - pos));
            else if (ents[i].begin < pos)
                rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                             "[%llu, %llu]", path, ents[i].t.name, (unsigned long long)ents[i].begin,
                             (unsigned long long)ents[i].end, ents[i - 1].t.name,
                             (unsigned long long)ents[i - 1].begin, (unsigned long long)ents[i - 1].end);
            pos = ents[i].end;
        }
        if (!rc && pos != data_len)
            rc = dt_fail(ctx, DT_EINPUT, "%s: %zu trailing bytes after the last tensor%s%s%s (data buffer is "
                         "%zu bytes, tensors cover %llu)", path, data_len - (size_t)pos, n ? " '" : "",
                         n ? ents[n - 1].t.name : "", n ? "'" : "", data_len, (unsigned long long)pos);
    }
    for (size_t i = 0; i < n; i++) {
        if (!rc) {
            ents[i].t.data = ents[i].t.nbytes ? (const char *)map + data_start + ents[i].begin : NULL;
            ents[i].t.shard = si;
            rc = push_tensor(ctx, st, &ents[i].t);
            if (!rc) continue;
        }
        free(ents[i].t.name);
    }
    free(ents);
    return rc;
}

// ---- lookup -----------------------------------------------------------------------------------------

static int cmp_by_name(const void *a, const void *b, void *arg) {
    const dt_safetensors *st = arg;
    return strcmp(st->t[*(const size_t *)a].name, st->t[*(const size_t *)b].name);
}

static int build_name_index(dt_ctx *ctx, dt_safetensors *st) {
    st->by_name = malloc((st->n ? st->n : 1) * sizeof *st->by_name);
    if (!st->by_name) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", st->path);
    for (size_t i = 0; i < st->n; i++) st->by_name[i] = i;
    qsort_r(st->by_name, st->n, sizeof *st->by_name, cmp_by_name, st);
    for (size_t i = 1; i < st->n; i++) {
        const dt_st_tensor *a = &st->t[st->by_name[i - 1]], *b = &st->t[st->by_name[i]];
        if (!strcmp(a->name, b->name))
            return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' appears in both %s and %s", st->path, a->name,
                           st->shards[a->shard].path, st->shards[b->shard].path);
    }
    return DT_OK;
}

const dt_st_tensor *dt_st_find(const dt_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[st->by_name[mid]].name, name);
        if (!c) return &st->t[st->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

// ---- sharded models ---------------------------------------------------------------------------------

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int open_index(dt_ctx *ctx, dt_safetensors *st, const char *index_path) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (access(index_path, R_OK) != 0)
            return dt_fail(ctx, DT_EINPUT, "%s: cannot open: %s", index_path, strerror(errno));
        return dt_fail(ctx, DT_EINPUT, "%s: not valid JSON: %s (line %d, column %d)", index_path, jerr.text,
                       jerr.line, jerr.column);
    }
    int rc = DT_OK;
    char **names = NULL, *dir = NULL;
    size_t nn = 0;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm)) {
        rc = dt_fail(ctx, DT_EINPUT, "%s: %s, expected an object with a 'weight_map' object", index_path,
                     !json_is_object(root) ? "not a JSON object" : wm ? "'weight_map' is not an object"
                                                                     : "no 'weight_map'");
        goto done;
    }
    dir = dir_of(index_path);
    names = calloc(json_object_size(wm) + 1, sizeof *names);
    if (!dir || !names) {
        rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v)) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: weight_map entry for tensor '%s' is a JSON %s, expected a shard "
                         "file name", index_path, key, json_kind(v));
            goto done;
        }
        const char *f = json_string_value(v);
        // Shards live beside the index; a path would let an index reach any file on the machine.
        if (!f[0] || strchr(f, '/') || !strcmp(f, ".") || !strcmp(f, "..")) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: weight_map entry for tensor '%s' is '%s', expected a file name in "
                         "the same folder", index_path, key, f);
            goto done;
        }
        names[nn++] = (char *)f;
    }
    // Distinct shard names in sorted order, so shard 0 is model-00001-of-....
    qsort(names, nn, sizeof *names, cmp_str);
    size_t nu = 0;
    for (size_t i = 0; i < nn; i++)
        if (!nu || strcmp(names[nu - 1], names[i])) names[nu++] = names[i];
    for (size_t i = 0; i < nu && !rc; i++) {
        char *p = join_path(dir, names[i]);
        if (!p) {
            rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", index_path);
            break;
        }
        if (access(p, F_OK) != 0) {
            const char *who = "";
            json_object_foreach(wm, key, v) if (!strcmp(json_string_value(v), names[i])) { who = key; break; }
            rc = dt_fail(ctx, DT_EINPUT, "%s: shard '%s' (listed for tensor '%s') does not exist: %s", index_path,
                         names[i], who, p);
        } else {
            rc = open_shard(ctx, st, p);
        }
        free(p);
    }
    if (rc) goto done;
    rc = build_name_index(ctx, st);
    if (rc) goto done;
    // Every listed tensor must be in the shard the index names; unlisted extras are used but reported.
    json_object_foreach(wm, key, v) {
        const dt_st_tensor *t = dt_st_find(st, key);
        const char *want = json_string_value(v);
        if (!t) {
            rc = dt_fail(ctx, DT_EINPUT, "missing tensor '%s' in shard '%s' listed in %s", key, want, index_path);
            goto done;
        }
        const char *got = strrchr(st->shards[t->shard].path, '/') + 1;
        if (strcmp(got, want)) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' is listed in shard '%s' but found in shard '%s'",
                         index_path, key, want, got);
            goto done;
        }
    }
    for (size_t i = 0; i < st->n; i++)
        if (!json_object_get(wm, st->t[i].name))
            dt_warn(ctx, "%s: tensor '%s' is in shard %s but not listed in the weight_map", index_path,
                    st->t[i].name, st->shards[st->t[i].shard].path);
done:
    free(names);
    free(dir);
    json_decref(root);
    return rc;
}

// ---- public -----------------------------------------------------------------------------------------

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int dt_st_open(dt_ctx *ctx, const char *path, dt_safetensors **out) {
    *out = NULL;
    dt_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    int rc;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        rc = dt_fail(ctx, DT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        char *idx = join_path(path, ST_INDEX_NAME), *one = join_path(path, ST_SINGLE_NAME);
        if (!idx || !one) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
        else if (access(idx, F_OK) == 0) rc = open_index(ctx, st, idx);
        else if (access(one, F_OK) == 0) {
            rc = open_shard(ctx, st, one);
            if (!rc) rc = build_name_index(ctx, st);
        }
        else rc = dt_fail(ctx, DT_EINPUT, "%s: folder holds neither %s nor %s", path, ST_SINGLE_NAME, ST_INDEX_NAME);
        free(idx);
        free(one);
    } else if (ends_with(path, ".json")) {
        rc = open_index(ctx, st, path);
    } else {
        rc = open_shard(ctx, st, path);
        if (!rc) rc = build_name_index(ctx, st);
    }
    if (rc) {
        dt_st_close(st);
        return rc;
    }
    *out = st;
    return DT_OK;
}

void dt_st_close(dt_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free(st->t[i].name);
    for (int i = 0; i < st->nshards; i++) {
        if (st->shards[i].map) munmap(st->shards[i].map, st->shards[i].size);
        free(st->shards[i].path);
    }
    for (size_t i = 0; i < 2 * st->nmeta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->shards);
    free(st->by_name);
    free(st->t);
    free(st->path);
    free(st);
}

size_t dt_st_count(const dt_safetensors *st) { return st->n; }
const dt_st_tensor *dt_st_at(const dt_safetensors *st, size_t i) { return i < st->n ? &st->t[i] : NULL; }
int dt_st_shard_count(const dt_safetensors *st) { return st->nshards; }
const char *dt_st_shard_path(const dt_safetensors *st, int i) {
    return i >= 0 && i < st->nshards ? st->shards[i].path : NULL;
}

const char *dt_st_metadata(const dt_safetensors *st, const char *key) {
    for (size_t i = 0; i < st->nmeta; i++)
        if (!strcmp(st->meta[2 * i], key)) return st->meta[2 * i + 1];
    return NULL;
}

bool dt_st_aligned(const dt_st_tensor *t) {
    size_t a = dt_st_dtype_size(t->st_dtype);
    return !t->data || a == 0 || (uintptr_t)t->data % a == 0; // a == 0: block types, read bytewise
}

int dt_st_check_shape(dt_ctx *ctx, const char *file, const dt_st_tensor *t, int ndim, const int64_t *expect_shape) {
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == expect_shape[i];
    if (same) return DT_OK;
    char got[160], want[160];
    format_shape(got, sizeof got, t->ndim, t->shape);
    format_shape(want, sizeof want, ndim, expect_shape);
    return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': shape %s, expected %s", file, t->name, got, want);
}

int dt_st_get(dt_ctx *ctx, const dt_safetensors *st, const char *name, int ndim, const int64_t *expect_shape,
              const dt_st_tensor **out) {
    *out = NULL;
    const dt_st_tensor *t = dt_st_find(st, name);
    if (!t) return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' not found", st->path, name);
    int rc = expect_shape ? dt_st_check_shape(ctx, st->shards[t->shard].path, t, ndim, expect_shape) : DT_OK;
    if (!rc) *out = t;
    return rc;
}

// Converts n elements between float dtypes. The source may be unaligned (safetensors does not promise
// alignment), so unaligned data goes through small aligned buffers.
static void convert(void *dst, dt_dtype dt, const void *src, dt_dtype sdt, size_t n) {
    size_t ds = dt_dtype_size(dt), ss = dt_dtype_size(sdt);
    if (dt == sdt) {
        memcpy(dst, src, n * ds);
        return;
    }
    bool aligned = (uintptr_t)src % ss == 0 && (uintptr_t)dst % ds == 0;
    if (aligned && dt == DT_F32) {
        dt_convert_to_f32(dst, src, sdt, n);
        return;
    }
    if (aligned && sdt == DT_F32) {
        dt_convert_from_f32(dst, dt, src, n);
        return;
    }
    enum { CHUNK = 2048 };
    float f[CHUNK], s[CHUNK], d[CHUNK]; // float arrays: aligned for every dtype used here
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t c = n - i < CHUNK ? n - i : CHUNK;
        memcpy(s, (const char *)src + i * ss, c * ss);
        dt_convert_to_f32(f, s, sdt, c);
        dt_convert_from_f32(d, dt, f, c);
        memcpy((char *)dst + i * ds, d, c * ds);
    }
}

int dt_st_tensor_copy(dt_ctx *ctx, const char *file, const dt_st_tensor *t, dt_dtype dst_dtype, void *dst) {
    if (t->st_dtype == DT_ST_BLOCK) return dt_quant_tensor_copy(ctx, file, t, dst_dtype, dst);
    if (t->st_dtype != DT_ST_F32 && t->st_dtype != DT_ST_F16 && t->st_dtype != DT_ST_BF16)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16", file, t->name,
                       dt_st_dtype_name(t->st_dtype));
    if (dst_dtype != DT_F32 && dst_dtype != DT_F16 && dst_dtype != DT_BF16)
        return dt_fail(ctx, DT_EINTERNAL, "%s: tensor '%s': cannot convert to %s", file, t->name,
                       dt_dtype_name(dst_dtype));
    const int64_t n = (int64_t)(t->nbytes / dt_dtype_size(t->dtype));
    if (n) convert(dst, dst_dtype, t->data, t->dtype, (size_t)n);
    const int64_t inf = dst_dtype == DT_F16 && t->st_dtype != DT_ST_F16 ? dt_f16_count_inf(dst, n) : 0;
    if (inf)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': %lld of its values are beyond f16's range (at most 65504 in "
                       "magnitude): keep it in bf16 or f32", file, t->name, (long long)inf);
    return DT_OK;
}

int dt_st_read_as(dt_ctx *ctx, const dt_safetensors *st, const char *name, dt_dtype dst_dtype, void *dst,
                  int ndim, const int64_t *expect_shape) {
    const dt_st_tensor *t;
    int rc = dt_st_get(ctx, st, name, ndim, expect_shape, &t);
    return rc ? rc : dt_st_tensor_copy(ctx, st->shards[t->shard].path, t, dst_dtype, dst);
}

int dt_st_read_f32(dt_ctx *ctx, const dt_safetensors *st, const char *name, float *dst, int ndim,
                   const int64_t *expect_shape) {
    return dt_st_read_as(ctx, st, name, DT_F32, dst, ndim, expect_shape);
}
