// GGUF reader: maps the file and validates every length, count, type and offset before use, so a
// corrupt or hostile file gives an error naming the file and the key or tensor, never a crash.
#include "models/gguf.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- type tables ----

static const char *const GGUF_TYPE_NAMES[DT_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};
static const uint8_t GGUF_TYPE_SIZES[DT_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

size_t dt_gguf_type_size(dt_gguf_type t) {
    return (unsigned)t < DT_GGUF_TYPE_COUNT ? GGUF_TYPE_SIZES[t] : 0;
}

const char *dt_gguf_type_name(dt_gguf_type t) {
    return (unsigned)t < DT_GGUF_TYPE_COUNT ? GGUF_TYPE_NAMES[t] : "?";
}

// ggml types as listed in gguf-py's GGML_QUANT_SIZES: (elements per block, bytes per block).
// Gaps are types removed from ggml (Q4_2, Q4_3, the Q4_0_x_y and IQ4_NL_x_y repacks).
static const struct { const char *name; uint16_t blck; uint16_t bytes; } GGML_TYPES[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},       [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},    [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},    [9] = {"Q8_1", 32, 40},    [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110}, [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292}, [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 256, 110}, [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},     [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},      [27] = {"I64", 1, 8},      [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56}, [30] = {"BF16", 1, 2},     [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66}, [39] = {"MXFP4", 32, 17},  [40] = {"NVFP4", 64, 36},
    [41] = {"Q1_0", 128, 18},
};

bool dt_ggml_type_info(uint32_t type, const char **name, int64_t *block_elems, size_t *block_bytes) {
    if (type >= sizeof GGML_TYPES / sizeof GGML_TYPES[0] || !GGML_TYPES[type].name) return false;
    if (name) *name = GGML_TYPES[type].name;
    if (block_elems) *block_elems = GGML_TYPES[type].blck;
    if (block_bytes) *block_bytes = GGML_TYPES[type].bytes;
    return true;
}

bool dt_ggml_nbytes(uint32_t type, int n_dims, const int64_t *ne, size_t *out) {
    int64_t blck;
    size_t bytes;
    if (!dt_ggml_type_info(type, NULL, &blck, &bytes) || n_dims < 0 || n_dims > DT_GGUF_MAX_DIMS) return false;
    // The element count must fit in int64 even when a zero dimension makes the tensor empty: dt_numel
    // multiplies the dimensions in its own order, and [2^56, 130, 0] must not overflow there.
    int64_t elems = 1;
    for (int i = 0; i < n_dims; i++)
        if (ne[i] < 0 || (ne[i] != 0 && __builtin_mul_overflow(elems, ne[i], &elems))) return false;
    uint64_t rows = 1;
    for (int i = 1; i < n_dims; i++) rows *= (uint64_t)ne[i]; // <= elems: no overflow
    int64_t ne0 = n_dims > 0 ? ne[0] : 1;
    if (ne0 % blck != 0) return false; // ne0 >= 0: checked with the element count
    uint64_t blocks = (uint64_t)(ne0 / blck);
    if (blocks > (uint64_t)INT64_MAX / bytes) return false;
    uint64_t row_bytes = blocks * bytes;
    if (rows != 0 && row_bytes > (uint64_t)SIZE_MAX / rows) return false;
    if (rows != 0 && row_bytes > (uint64_t)INT64_MAX / rows) return false;
    *out = (size_t)(row_bytes * rows);
    return true;
}

int dt_ggml_from_dtype(dt_dtype t) {
    switch (t) {
    case DT_F32: return DT_GGML_F32;
    case DT_F16: return DT_GGML_F16;
    case DT_BF16: return DT_GGML_BF16;
    default: return -1;
    }
}

// The ggml types that are also library dtypes (the block layouts are the same bytes).
static const struct { uint32_t ggml; dt_dtype dt; } GGML_DTYPES[] = {
    {DT_GGML_F32, DT_F32}, {DT_GGML_F16, DT_F16}, {DT_GGML_BF16, DT_BF16}, {8, DT_Q8_0}, {2, DT_Q4_0},
    {3, DT_Q4_1}, {6, DT_Q5_0}, {7, DT_Q5_1}, {12, DT_Q4_K}, {13, DT_Q5_K}, {14, DT_Q6_K},
};

int dt_ggml_from_dtype_any(dt_dtype t) {
    for (size_t i = 0; i < sizeof GGML_DTYPES / sizeof GGML_DTYPES[0]; i++)
        if (GGML_DTYPES[i].dt == t) return (int)GGML_DTYPES[i].ggml;
    return -1;
}

bool dt_ggml_to_dtype(uint32_t ggml_type, dt_dtype *out) {
    for (size_t i = 0; i < sizeof GGML_DTYPES / sizeof GGML_DTYPES[0]; i++)
        if (GGML_DTYPES[i].ggml == ggml_type) { *out = GGML_DTYPES[i].dt; return true; }
    return false;
}

// ---- an arena for the names and string copies: freed all at once on close ----

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(8) char data[];
} arena_block;

static void *arena_alloc(void **arena, size_t n) {
    arena_block *b = *arena;
    n = (n + 7) & ~(size_t)7;
    if (!b || b->cap - b->used < n) {
        // Blocks start small and double up to 1 MiB: a tokenizer's strings take megabytes, a small
        // adapter's a few hundred bytes, and a fixed 1 MiB block per open made each small open cost a
        // fresh mapping.
        size_t cap = b ? (b->cap < (1u << 20) ? 2 * b->cap : b->cap) : 4096;
        if (cap < n) cap = n;
        arena_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->next = b;
        nb->used = 0;
        nb->cap = cap;
        *arena = b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(void *arena) {
    for (arena_block *b = arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
}

// ---- bounds-checked little-endian cursor over the mapping ----

typedef struct {
    dt_ctx *ctx;
    dt_gguf_file *f;
    size_t pos;
} reader;

static bool rd_bytes(reader *r, void *dst, size_t n) {
    if (n > r->f->size - r->pos) return false;
    memcpy(dst, r->f->map + r->pos, n);
    r->pos += n;
    return true;
}

// The host is little-endian (x86-64, enforced below), so the bytes are the values.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF reading assumes a little-endian host");
static bool rd_u32(reader *r, uint32_t *v) { return rd_bytes(r, v, 4); }
static bool rd_u64(reader *r, uint64_t *v) { return rd_bytes(r, v, 8); }

static int rfail(reader *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rfail(reader *r, int code, const char *fmt, ...) {
    char msg[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dt_fail(r->ctx, code, "%s: %s", r->f->path, msg);
}

static int truncated(reader *r, const char *what_fmt, const char *what_arg) {
    char what[512];
    snprintf(what, sizeof what, what_fmt, what_arg);
    return rfail(r, DT_EINPUT, "%s: file truncated at offset %zu (file size %zu)", what, r->pos, r->f->size);
}

// Reads a string into the arena as a NUL-terminated copy. `what` describes it for messages.
static int rd_str(reader *r, const char **out, uint64_t *len_out, const char *what) {
    uint64_t len;
    if (!rd_u64(r, &len)) return truncated(r, "%s: string length", what);
    if (len > r->f->size - r->pos)
        return rfail(r, DT_EINPUT, "%s: string length %llu runs past the end of the file (offset %zu, file size %zu)",
                     what, (unsigned long long)len, r->pos, r->f->size);
    char *s = arena_alloc(&r->f->arena_, (size_t)len + 1);
    if (!s) return rfail(r, DT_ENOMEM, "%s: out of memory", what);
    memcpy(s, r->f->map + r->pos, (size_t)len);
    s[len] = 0;
    r->pos += (size_t)len;
    *out = s;
    if (len_out) *len_out = len;
    return DT_OK;
}

// ---- key/value pairs ----

static int read_value(reader *r, dt_gguf_kv *kv) {
    const char *key = kv->key;
    int32_t t;
    if (!rd_bytes(r, &t, 4)) return truncated(r, "key '%s': value type", key);
    if (t < 0 || t >= DT_GGUF_TYPE_COUNT)
        return rfail(r, DT_EINPUT, "key '%s': unknown value type %d", key, t);
    kv->type = kv->arr_type = (dt_gguf_type)t;
    kv->n = 1;
    if (t == DT_GGUF_ARRAY) {
        int32_t et;
        if (!rd_bytes(r, &et, 4)) return truncated(r, "key '%s': array element type", key);
        if (et < 0 || et >= DT_GGUF_TYPE_COUNT || et == DT_GGUF_ARRAY)
            return rfail(r, DT_EINPUT, "key '%s': unsupported array element type %d", key, et);
        kv->arr_type = (dt_gguf_type)et;
        if (!rd_u64(r, &kv->n)) return truncated(r, "key '%s': array length", key);
    }
    size_t remaining = r->f->size - r->pos;
    if (kv->arr_type != DT_GGUF_STRING) {
        size_t es = dt_gguf_type_size(kv->arr_type);
        if (kv->n > remaining / es)
            return rfail(r, DT_EINPUT, "key '%s': %llu values of type %s run past the end of the file (offset %zu, file size %zu)",
                         key, (unsigned long long)kv->n, dt_gguf_type_name(kv->arr_type), r->pos, r->f->size);
        kv->data = r->f->map + r->pos; // bools other than 0/1 are read as true, as llama.cpp does
        r->pos += (size_t)kv->n * es;
        return DT_OK;
    }
    // Strings: each needs at least its 8-byte length, which bounds the count before allocating.
    if (kv->n > remaining / 8)
        return rfail(r, DT_EINPUT, "key '%s': %llu strings run past the end of the file (offset %zu, file size %zu)",
                     key, (unsigned long long)kv->n, r->pos, r->f->size);
    const char **strs = arena_alloc(&r->f->arena_, (size_t)kv->n * sizeof *strs + 1);
    uint64_t *lens = arena_alloc(&r->f->arena_, (size_t)kv->n * sizeof *lens + 1);
    if (!strs || !lens) return rfail(r, DT_ENOMEM, "key '%s': out of memory", key);
    for (uint64_t i = 0; i < kv->n; i++) {
        char what[400];
        if (kv->type == DT_GGUF_ARRAY)
            snprintf(what, sizeof what, "key '%s' string %llu", key, (unsigned long long)i);
        else
            snprintf(what, sizeof what, "key '%s'", key);
        int st = rd_str(r, &strs[i], &lens[i], what);
        if (st) return st;
    }
    kv->strs = strs;
    kv->str_lens = lens;
    return DT_OK;
}

// Sorting by name to find duplicates in O(n log n), since a hostile file may hold millions of keys.
static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *find_duplicate(const char **names, int64_t n) {
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return names[i];
    return NULL;
}

static int read_kvs(reader *r) {
    dt_gguf_file *f = r->f;
    for (int64_t i = 0; i < f->n_kv; i++) {
        char what[64];
        snprintf(what, sizeof what, "key #%lld", (long long)i);
        dt_gguf_kv *kv = &f->kvs[i];
        uint64_t len;
        int st = rd_str(r, &kv->key, &len, what);
        if (st) return st;
        if (len == 0) return rfail(r, DT_EINPUT, "key #%lld is empty", (long long)i);
        if (strlen(kv->key) != len) return rfail(r, DT_EINPUT, "key #%lld ('%s...') contains a NUL byte", (long long)i, kv->key);
        st = read_value(r, kv);
        if (st) return st;
    }
    const char **names = malloc((size_t)f->n_kv * sizeof *names + 1);
    if (!names) return rfail(r, DT_ENOMEM, "out of memory");
    for (int64_t i = 0; i < f->n_kv; i++) names[i] = f->kvs[i].key;
    const char *dup = find_duplicate(names, f->n_kv);
    int st = dup ? rfail(r, DT_EINPUT, "key '%s' appears more than once", dup) : DT_OK;
    free(names);
    if (st) return st;

    f->alignment = DT_GGUF_DEFAULT_ALIGNMENT;
    int64_t a = dt_gguf_find_key(f, "general.alignment");
    if (a >= 0) {
        const dt_gguf_kv *kv = &f->kvs[a];
        if (kv->type != DT_GGUF_U32)
            return rfail(r, DT_EINPUT, "key 'general.alignment' must be of type u32, not %s", dt_gguf_type_name(kv->type));
        uint32_t v = (uint32_t)dt_gguf_kv_uint(kv, 0);
        if (v == 0 || (v & (v - 1)) != 0)
            return rfail(r, DT_EINPUT, "key 'general.alignment': %u is not a power of two", v);
        f->alignment = v;
    }
    return DT_OK;
}

// ---- tensor infos ----

static int read_tensor_info(reader *r, int64_t i, dt_gguf_tensor *t) {
    dt_gguf_file *f = r->f;
    char what[64];
    snprintf(what, sizeof what, "tensor #%lld name", (long long)i);
    uint64_t len;
    int st = rd_str(r, &t->name, &len, what);
    if (st) return st;
    if (len == 0) return rfail(r, DT_EINPUT, "tensor #%lld has an empty name", (long long)i);
    if (strlen(t->name) != len) return rfail(r, DT_EINPUT, "tensor #%lld name contains a NUL byte", (long long)i);
    if (len > DT_GGUF_MAX_NAME)
        return rfail(r, DT_EINPUT, "tensor '%s': name of %llu bytes is longer than llama.cpp's limit of %d",
                     t->name, (unsigned long long)len, DT_GGUF_MAX_NAME);
    uint32_t n_dims;
    if (!rd_u32(r, &n_dims)) return truncated(r, "tensor '%s': n_dims", t->name);
    if (n_dims > DT_GGUF_MAX_DIMS)
        return rfail(r, DT_EINPUT, "tensor '%s': %u dimensions, at most %d allowed", t->name, n_dims, DT_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < DT_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims) {
            if (!rd_bytes(r, &t->ne[d], 8)) return truncated(r, "tensor '%s': dimensions", t->name);
            if (t->ne[d] < 0)
                return rfail(r, DT_EINPUT, "tensor '%s': dimension %d is negative (%lld)", t->name, d, (long long)t->ne[d]);
        }
    }
    if (!rd_u32(r, &t->type)) return truncated(r, "tensor '%s': type", t->name);
    const char *tname;
    int64_t blck;
    if (!dt_ggml_type_info(t->type, &tname, &blck, NULL))
        return rfail(r, DT_EINPUT, "unsupported type %u for tensor '%s'", t->type, t->name);
    if (t->ne[0] % blck != 0)
        return rfail(r, DT_EINPUT, "tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                     t->name, (long long)t->ne[0], tname, (long long)blck);
    if (!dt_ggml_nbytes(t->type, t->n_dims, t->ne, &t->nbytes))
        return rfail(r, DT_EINPUT, "tensor '%s': shape [%lld, %lld, %lld, %lld] is too large", t->name,
                     (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
    if (!rd_u64(r, &t->offset)) return truncated(r, "tensor '%s': data offset", t->name);
    if (t->offset % f->alignment != 0)
        return rfail(r, DT_EINPUT, "tensor '%s': data offset %llu is not a multiple of the alignment %zu",
                     t->name, (unsigned long long)t->offset, f->alignment);
    return DT_OK;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const dt_gguf_tensor *x = *(const dt_gguf_tensor *const *)a, *y = *(const dt_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int place_tensors(reader *r) {
    dt_gguf_file *f = r->f;
    f->header_end = r->pos;
    uint64_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
    f->data_offset = r->pos + pad;
    if (f->n_tensors == 0) return DT_OK;
    if (f->data_offset > f->size)
        return rfail(r, DT_EINPUT, "data section starts at %llu, past the end of the file (size %zu)",
                     (unsigned long long)f->data_offset, f->size);
    uint64_t data_size = f->size - f->data_offset;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        dt_gguf_tensor *t = &f->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return rfail(r, DT_EINPUT, "tensor '%s': data [%llu, +%zu) runs past the end of the data section (%llu bytes)",
                         t->name, (unsigned long long)t->offset, t->nbytes, (unsigned long long)data_size);
        t->data = f->map + f->data_offset + t->offset;
    }
    const dt_gguf_tensor **by_off = malloc((size_t)f->n_tensors * sizeof *by_off);
    if (!by_off) return rfail(r, DT_ENOMEM, "out of memory");
    for (int64_t i = 0; i < f->n_tensors; i++) by_off[i] = &f->tensors[i];
    qsort(by_off, (size_t)f->n_tensors, sizeof *by_off, cmp_tensor_offset);
    int st = DT_OK;
    const dt_gguf_tensor *prev = NULL;
    for (int64_t i = 0; i < f->n_tensors && !st; i++) {
        const dt_gguf_tensor *t = by_off[i];
        if (t->nbytes == 0) continue; // an empty tensor occupies no bytes
        if (prev && prev->offset + prev->nbytes > t->offset)
            st = rfail(r, DT_EINPUT, "tensor '%s' (offset %llu) overlaps tensor '%s' ([%llu, +%zu))", t->name,
                       (unsigned long long)t->offset, prev->name, (unsigned long long)prev->offset, prev->nbytes);
        prev = t;
    }
    if (!st) {
        const char **names = (const char **)by_off; // reuse the buffer for the duplicate check
        for (int64_t i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
        const char *dup = find_duplicate(names, f->n_tensors);
        if (dup) st = rfail(r, DT_EINPUT, "tensor '%s' appears more than once", dup);
    }
    free(by_off);
    return st;
}

// ---- open / close ----

static int parse(reader *r) {
    dt_gguf_file *f = r->f;
    char magic[4];
    if (!rd_bytes(r, magic, 4)) return truncated(r, "%s", "magic");
    if (memcmp(magic, DT_GGUF_MAGIC, 4) != 0) {
        char shown[5];
        for (int i = 0; i < 4; i++) shown[i] = magic[i] >= 32 && magic[i] < 127 ? magic[i] : '?';
        shown[4] = 0;
        return rfail(r, DT_EINPUT, "not a GGUF file: magic is '%s', expected 'GGUF'", shown);
    }
    if (!rd_u32(r, &f->version)) return truncated(r, "%s", "version");
    if (f->version == 1) return rfail(r, DT_EINPUT, "GGUF version 1 is not supported (only 2 and 3)");
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0)
            return rfail(r, DT_EINPUT, "GGUF version %u: the file looks big-endian; only little-endian is supported", f->version);
        return rfail(r, DT_EINPUT, "GGUF version %u is not supported (only 2 and 3)", f->version);
    }
    uint64_t nt, nk;
    if (!rd_u64(r, &nt)) return truncated(r, "%s", "tensor count");
    if (!rd_u64(r, &nk)) return truncated(r, "%s", "key/value count");
    // Bound the counts by the smallest possible entry (a key: 8+1 name, 4 type, 1 value; a tensor
    // info: 8+1 name, 4 n_dims, 4 type, 8 offset) before allocating anything.
    size_t remaining = f->size - r->pos;
    if (nk > remaining / 14)
        return rfail(r, DT_EINPUT, "key/value count %llu cannot fit in the file (size %zu)", (unsigned long long)nk, f->size);
    if (nt > remaining / 25)
        return rfail(r, DT_EINPUT, "tensor count %llu cannot fit in the file (size %zu)", (unsigned long long)nt, f->size);
    f->n_kv = (int64_t)nk;
    f->n_tensors = (int64_t)nt;
    f->kvs = calloc((size_t)nk + 1, sizeof *f->kvs);
    f->tensors = calloc((size_t)nt + 1, sizeof *f->tensors);
    if (!f->kvs || !f->tensors) return rfail(r, DT_ENOMEM, "out of memory");
    int st = read_kvs(r);
    if (st) return st;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        st = read_tensor_info(r, i, &f->tensors[i]);
        if (st) return st;
    }
    return place_tensors(r);
}

int dt_gguf_open(dt_ctx *ctx, const char *path, dt_gguf_file **out) {
    *out = NULL;
    dt_gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int code = errno == ENOENT || errno == EACCES || errno == EISDIR ? DT_EINPUT : DT_EIO;
        dt_fail(ctx, code, "%s: cannot open: %s", path, strerror(errno));
        dt_gguf_close(f);
        return code;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int code = dt_fail(ctx, DT_EINPUT, "%s: not a regular file", path);
        close(fd);
        dt_gguf_close(f);
        return code;
    }
    f->size = (size_t)sb.st_size;
    if (f->size == 0) {
        close(fd);
        dt_gguf_close(f);
        return dt_fail(ctx, DT_EINPUT, "%s: empty file, not a GGUF file", path);
    }
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); // the mapping keeps the file alive
    if (map == MAP_FAILED) {
        int code = dt_fail(ctx, DT_EIO, "%s: cannot map %zu bytes: %s", path, f->size, strerror(errno));
        dt_gguf_close(f);
        return code;
    }
    f->map = map;
    reader r = {ctx, f, 0};
    int st = parse(&r);
    if (st) {
        dt_gguf_close(f);
        return st;
    }
    *out = f;
    return DT_OK;
}

void dt_gguf_close(dt_gguf_file *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->size);
    arena_free(f->arena_);
    free(f->kvs);
    free(f->tensors);
    free(f->path);
    free(f);
}

// ---- lookups ----

int64_t dt_gguf_find_key(const dt_gguf_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kvs[i].key, key)) return i;
    return -1;
}

const dt_gguf_tensor *dt_gguf_find_tensor(const dt_gguf_file *f, const char *name) {
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

// A value the getters can read: a number (not a string) at an index below the count. Anything else
// reads as 0, so a key of an unexpected type or an empty array never reads past its data.
static bool readable(const dt_gguf_kv *kv, uint64_t i) {
    return kv->data && i < kv->n && dt_gguf_type_size(kv->arr_type) > 0;
}

// A float value read as an integer: truncated, and 0 for NaN or a value outside int64 (converting those
// is undefined behaviour in C).
static int64_t float_to_i64(double x) { return x > -9.2e18 && x < 9.2e18 ? (int64_t)x : 0; }

int64_t dt_gguf_kv_int(const dt_gguf_kv *kv, uint64_t i) {
    if (!readable(kv, i)) return 0;
    const uint8_t *p = (const uint8_t *)kv->data + i * dt_gguf_type_size(kv->arr_type);
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f32; double f64; } v;
    memcpy(&v, p, dt_gguf_type_size(kv->arr_type));
    switch (kv->arr_type) {
    case DT_GGUF_U8: case DT_GGUF_BOOL: return v.u8;
    case DT_GGUF_I8: return v.i8;
    case DT_GGUF_U16: return v.u16;
    case DT_GGUF_I16: return v.i16;
    case DT_GGUF_U32: return v.u32;
    case DT_GGUF_I32: return v.i32;
    case DT_GGUF_U64: return (int64_t)v.u64;
    case DT_GGUF_I64: return v.i64;
    case DT_GGUF_F32: return float_to_i64(v.f32);
    case DT_GGUF_F64: return float_to_i64(v.f64);
    default: return 0;
    }
}

uint64_t dt_gguf_kv_uint(const dt_gguf_kv *kv, uint64_t i) {
    if (!readable(kv, i)) return 0;
    if (kv->arr_type == DT_GGUF_U64) {
        uint64_t v;
        memcpy(&v, (const uint8_t *)kv->data + i * 8, 8);
        return v;
    }
    return (uint64_t)dt_gguf_kv_int(kv, i);
}

double dt_gguf_kv_float(const dt_gguf_kv *kv, uint64_t i) {
    if (!readable(kv, i)) return 0;
    if (kv->arr_type == DT_GGUF_F32) {
        float v;
        memcpy(&v, (const uint8_t *)kv->data + i * 4, 4);
        return v;
    }
    if (kv->arr_type == DT_GGUF_F64) {
        double v;
        memcpy(&v, (const uint8_t *)kv->data + i * 8, 8);
        return v;
    }
    if (kv->arr_type == DT_GGUF_U64) return (double)dt_gguf_kv_uint(kv, i);
    return (double)dt_gguf_kv_int(kv, i);
}

static const dt_gguf_kv *scalar(dt_ctx *ctx, const dt_gguf_file *f, const char *key, int *st) {
    int64_t i = dt_gguf_find_key(f, key);
    if (i < 0) {
        *st = dt_fail(ctx, DT_EINPUT, "%s: key '%s' is missing", f->path, key);
        return NULL;
    }
    if (f->kvs[i].type == DT_GGUF_ARRAY) {
        *st = dt_fail(ctx, DT_EINPUT, "%s: key '%s' is an array, expected a single value", f->path, key);
        return NULL;
    }
    *st = DT_OK;
    return &f->kvs[i];
}

static bool is_int_type(dt_gguf_type t) {
    return t <= DT_GGUF_I32 || t == DT_GGUF_U64 || t == DT_GGUF_I64;
}

int dt_gguf_get_int(dt_ctx *ctx, const dt_gguf_file *f, const char *key, int64_t *out) {
    int st;
    const dt_gguf_kv *kv = scalar(ctx, f, key, &st);
    if (!kv) return st;
    if (!is_int_type(kv->type))
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' is of type %s, expected an integer", f->path, key, dt_gguf_type_name(kv->type));
    if (kv->type == DT_GGUF_U64 && dt_gguf_kv_uint(kv, 0) > INT64_MAX)
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' is too large", f->path, key);
    *out = dt_gguf_kv_int(kv, 0);
    return DT_OK;
}

int dt_gguf_get_float(dt_ctx *ctx, const dt_gguf_file *f, const char *key, double *out) {
    int st;
    const dt_gguf_kv *kv = scalar(ctx, f, key, &st);
    if (!kv) return st;
    if (kv->type != DT_GGUF_F32 && kv->type != DT_GGUF_F64)
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' is of type %s, expected f32 or f64", f->path, key, dt_gguf_type_name(kv->type));
    *out = dt_gguf_kv_float(kv, 0);
    return DT_OK;
}

int dt_gguf_get_bool(dt_ctx *ctx, const dt_gguf_file *f, const char *key, bool *out) {
    int st;
    const dt_gguf_kv *kv = scalar(ctx, f, key, &st);
    if (!kv) return st;
    if (kv->type != DT_GGUF_BOOL)
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' is of type %s, expected bool", f->path, key, dt_gguf_type_name(kv->type));
    *out = dt_gguf_kv_int(kv, 0) != 0;
    return DT_OK;
}

int dt_gguf_get_str(dt_ctx *ctx, const dt_gguf_file *f, const char *key, const char **out) {
    int st;
    const dt_gguf_kv *kv = scalar(ctx, f, key, &st);
    if (!kv) return st;
    if (kv->type != DT_GGUF_STRING)
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' is of type %s, expected str", f->path, key, dt_gguf_type_name(kv->type));
    *out = kv->strs[0];
    return DT_OK;
}

int dt_gguf_tensor_view(dt_ctx *ctx, const dt_gguf_file *f, const dt_gguf_tensor *t, dt_tensor *out) {
    dt_dtype dt;
    if (!dt_ggml_to_dtype(t->type, &dt)) {
        const char *name = "?";
        dt_ggml_type_info(t->type, &name, NULL, NULL);
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: tensor '%s' is of type %s; only F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
                       "Q5_0, Q5_1, Q4_K, Q5_K and Q6_K can be used",
                       f->path, t->name, name);
    }
    int n = t->n_dims > 0 ? t->n_dims : 1;
    int64_t shape[DT_GGUF_MAX_DIMS];
    for (int d = 0; d < n; d++) shape[d] = t->ne[n - 1 - d];
    dt_tensor_set(out, dt, (void *)t->data, n, shape);
    out->name = t->name;
    return DT_OK;
}

// ---- the strict check for the files we write ----

static bool all_zero(const uint8_t *p, size_t n, size_t *bad) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) { *bad = i; return false; }
    return true;
}

int dt_gguf_check_spec(dt_ctx *ctx, const char *path) {
    dt_gguf_file *f;
    int st = dt_gguf_open(ctx, path, &f);
    if (st) return st;
    size_t bad = 0;
    uint64_t pos = 0;
    if (f->version != DT_GGUF_VERSION) {
        st = dt_fail(ctx, DT_EINPUT, "%s: version %u, expected %d", path, f->version, DT_GGUF_VERSION);
        goto done;
    }
    if (f->data_offset > f->size) {
        st = dt_fail(ctx, DT_EINPUT, "%s: file ends at %zu, inside the padding after the header (data section at %llu)",
                     path, f->size, (unsigned long long)f->data_offset);
        goto done;
    }
    if (!all_zero(f->map + f->header_end, f->data_offset - f->header_end, &bad)) {
        st = dt_fail(ctx, DT_EINPUT, "%s: padding byte at offset %llu before the data section is not zero",
                     path, (unsigned long long)(f->header_end + bad));
        goto done;
    }
    for (int64_t i = 0; i < f->n_kv; i++) {
        const dt_gguf_kv *kv = &f->kvs[i];
        for (uint64_t j = 0; kv->arr_type == DT_GGUF_BOOL && j < kv->n; j++)
            if (dt_gguf_kv_int(kv, j) > 1) {
                st = dt_fail(ctx, DT_EINPUT, "%s: key '%s': bool value %lld at index %llu is not 0 or 1",
                             path, kv->key, (long long)dt_gguf_kv_int(kv, j), (unsigned long long)j);
                goto done;
            }
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const dt_gguf_tensor *t = &f->tensors[i];
        if (t->offset != pos) {
            st = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' at data offset %llu, expected %llu (right after the previous tensor, aligned)",
                         path, t->name, (unsigned long long)t->offset, (unsigned long long)pos);
            goto done;
        }
        uint64_t end = t->offset + t->nbytes;
        uint64_t padded = (end + f->alignment - 1) / f->alignment * f->alignment;
        if (f->data_offset + padded > f->size) {
            st = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': the file ends inside its padding (at %zu, expected at least %llu)",
                         path, t->name, f->size, (unsigned long long)(f->data_offset + padded));
            goto done;
        }
        if (!all_zero(f->map + f->data_offset + end, padded - end, &bad)) {
            st = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': padding byte at file offset %llu is not zero",
                         path, t->name, (unsigned long long)(f->data_offset + end + bad));
            goto done;
        }
        pos = padded;
    }
    if (f->data_offset + pos != f->size) {
        st = dt_fail(ctx, DT_EINPUT, "%s: file has %zu bytes, expected %llu (header, tensors and padding)",
                     path, f->size, (unsigned long long)(f->data_offset + pos));
        goto done;
    }
done:
    dt_gguf_close(f);
    return st;
}
