// bitsandbytes 4-bit checkpoints (see bnb4.h).
#include "models/bnb4.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "autograd/quant.h"

typedef struct {
    dt_st_tensor t;     // the NF4/FP4 view; t.aux = &state
    dt_nf4_state state;
    float *absmax, *nested_absmax; // owned copies (the mapping may be unaligned)
} bnb_tensor;

struct dt_bnb4 {
    bnb_tensor *t;
    size_t n;
};

static const char *const COMPANIONS[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                                         ".quant_state.bitsandbytes__nf4", ".quant_state.bitsandbytes__fp4"};
#define N_COMPANIONS (sizeof COMPANIONS / sizeof COMPANIONS[0])

bool dt_bnb4_is_companion(const char *name) {
    const size_t n = strlen(name);
    for (size_t i = 0; i < N_COMPANIONS; i++) {
        const size_t k = strlen(COMPANIONS[i]);
        if (n > k && !strcmp(name + n - k, COMPANIONS[i])) return true;
    }
    return false;
}

void dt_bnb4_close(dt_bnb4 *b) {
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) {
        free((char *)b->t[i].t.name);
        free(b->t[i].absmax);
        free(b->t[i].nested_absmax);
    }
    free(b->t);
    free(b);
}

// Whether config.json asks for bitsandbytes 4-bit; *out the parsed config (caller frees).
static int is_bnb4(dt_ctx *ctx, const char *dir, bool *yes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    *yes = false;
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) return DT_OK; // not a folder with a config (dt_config_load reports that)
    json_t *q = json_object_get(root, "quantization_config");
    const char *method = json_string_value(json_object_get(q, "quant_method"));
    int rc = DT_OK;
    if (method && !strcmp(method, "bitsandbytes")) {
        if (json_is_true(json_object_get(q, "load_in_4bit"))) *yes = true;
        else rc = dt_fail(ctx, DT_EUNSUPPORTED, "%s: quantization_config: only bitsandbytes 4-bit (load_in_4bit) checkpoints "
                          "are supported, not 8-bit", path);
    }
    json_decref(root);
    return rc;
}

// Companion `suffix` of weight `w` (absent: NULL); checks dtype and element count (count 0: any).
static int companion(dt_ctx *ctx, const dt_safetensors *st, const char *file, const char *w, const char *suffix,
                     dt_st_dtype dt, size_t count, bool required, const dt_st_tensor **out) {
    char name[512];
    snprintf(name, sizeof name, "%s%s", w, suffix);
    const dt_st_tensor *t = dt_st_find(st, name);
    *out = t;
    if (!t) return required ? dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': its bitsandbytes companion '%s' is missing", file, w, name) : DT_OK;
    const size_t es = dt_st_dtype_size(dt);
    if (t->st_dtype != dt || (count && t->nbytes != count * es))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': %s %zu bytes, expected %s x %zu", file, name,
                       dt_st_dtype_name(t->st_dtype), t->nbytes, dt_st_dtype_name(dt), count);
    return DT_OK;
}

static float *copy_f32(const dt_st_tensor *t) {
    float *p = malloc(t->nbytes ? t->nbytes : 1);
    if (p) memcpy(p, t->data, t->nbytes);
    return p;
}

// One quantized weight w (its U8 data tensor d and quant_state tensor qs).
static int load_one(dt_ctx *ctx, const dt_safetensors *st, const dt_st_tensor *d, const dt_st_tensor *qs, dt_4bit_kind kind,
                    bnb_tensor *b) {
    const char *file = dt_st_shard_path(st, d->shard), *w = d->name;
    json_error_t err;
    json_t *j = json_loadb(qs->data, qs->nbytes, 0, &err);
    json_t *shape = json_object_get(j, "shape");
    int64_t block = json_integer_value(json_object_get(j, "blocksize"));
    const char *qt = json_string_value(json_object_get(j, "quant_type"));
    int rc = DT_OK;
    if (!j || !json_is_array(shape) || json_array_size(shape) != 2 || block <= 0 || block % 2 || !qt ||
        strcmp(qt, kind == DT_4BIT_NF4 ? "nf4" : "fp4"))
        rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': quant_state is not bitsandbytes' JSON with quant_type, blocksize and a "
                     "2-D shape", file, qs->name);
    const int64_t rows = rc ? 0 : json_integer_value(json_array_get(shape, 0)), cols = rc ? 0 : json_integer_value(json_array_get(shape, 1));
    if (!rc && (rows <= 0 || cols <= 0 || cols % 2 || (size_t)(rows * cols) != 2 * d->nbytes || d->st_dtype != DT_ST_U8))
        rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': %zu bytes of %s do not hold a [%lld, %lld] 4-bit weight (rows of an even "
                     "length)", file, w, d->nbytes, dt_st_dtype_name(d->st_dtype), (long long)rows, (long long)cols);
    // Blocks run over the flattened tensor; the last may be partial.
    const size_t nb = rc ? 0 : (size_t)((rows * cols + block - 1) / block);
    const dt_st_tensor *absmax = NULL, *qmap = NULL, *nabs = NULL, *nmap = NULL;
    if (!rc) rc = companion(ctx, st, file, w, ".quant_map", DT_ST_F32, 16, true, &qmap);
    if (!rc) rc = companion(ctx, st, file, w, ".nested_absmax", DT_ST_F32, 0, false, &nabs);
    const bool nested = nabs != NULL;
    if (!rc) rc = companion(ctx, st, file, w, ".absmax", nested ? DT_ST_U8 : DT_ST_F32, nb, true, &absmax);
    memset(b, 0, sizeof *b);
    dt_nf4_state *s = &b->state;
    s->kind = kind;
    s->block = block;
    if (!rc) memcpy(s->code, qmap->data, sizeof s->code);
    if (!rc && nested) {
        s->nested_block = json_integer_value(json_object_get(j, "nested_blocksize"));
        json_t *off = json_object_get(j, "nested_offset");
        if (s->nested_block <= 0 || !json_is_number(off))
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': a double-quantized state needs nested_blocksize and nested_offset", file, qs->name);
        else s->offset = (float)json_number_value(off);
        if (!rc) rc = companion(ctx, st, file, w, ".nested_quant_map", DT_ST_F32, 256, true, &nmap);
        const size_t n2 = rc ? 0 : (nb + (size_t)s->nested_block - 1) / (size_t)s->nested_block;
        if (!rc && nabs->nbytes != n2 * 4)
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s.nested_absmax': %zu bytes, expected F32 x %zu", file, w, nabs->nbytes, n2);
        if (!rc) {
            memcpy(s->nested_code, nmap->data, sizeof s->nested_code);
            s->qabsmax = absmax->data;
            if (!(b->nested_absmax = copy_f32(nabs))) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
            s->nested_absmax = b->nested_absmax;
        }
    } else if (!rc) {
        if (!(b->absmax = copy_f32(absmax))) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
        s->absmax = b->absmax;
    }
    if (!rc) {
        dt_st_tensor *t = &b->t;
        *t = *d;
        t->name = strdup(w);
        t->dtype = kind == DT_4BIT_NF4 ? DT_NF4 : DT_FP4;
        t->st_dtype = DT_ST_BLOCK;
        t->ndim = 2;
        t->shape[0] = rows;
        t->shape[1] = cols;
        t->shape[2] = t->shape[3] = 1;
        t->aux = s;
        if (!t->name) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    json_decref(j);
    return rc;
}

int dt_bnb4_open(dt_ctx *ctx, const char *dir, const dt_safetensors *st, dt_bnb4 **out) {
    *out = NULL;
    struct stat sb;
    bool yes = false;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) return DT_OK;
    int rc = is_bnb4(ctx, dir, &yes);
    if (rc || !yes) return rc;
    dt_bnb4 *b = calloc(1, sizeof *b);
    const size_t n = dt_st_count(st);
    if (!b || !(b->t = calloc(n ? n : 1, sizeof *b->t))) { free(b); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    // Each quant_state tensor names one quantized weight: "X.weight.quant_state.bitsandbytes__nf4".
    for (size_t i = 0; i < n && !rc; i++) {
        const dt_st_tensor *qs = dt_st_at(st, i);
        const char *at = strstr(qs->name, ".quant_state.bitsandbytes__");
        if (!at) continue;
        const char *kind = at + strlen(".quant_state.bitsandbytes__");
        char w[512];
        snprintf(w, sizeof w, "%.*s", (int)(at - qs->name), qs->name);
        const dt_st_tensor *d = dt_st_find(st, w);
        if (strcmp(kind, "nf4") && strcmp(kind, "fp4"))
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': unknown bitsandbytes type '%s' (nf4 or fp4)", dt_st_shard_path(st, qs->shard), qs->name, kind);
        else if (!d)
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' has a quant_state but no weight '%s'", dt_st_shard_path(st, qs->shard), qs->name, w);
        else if (!(rc = load_one(ctx, st, d, qs, strcmp(kind, "nf4") ? DT_4BIT_FP4 : DT_4BIT_NF4, &b->t[b->n])))
            b->n++;
    }
    // A U8 "*.weight" without a quant_state is a checkpoint with its companions missing.
    for (size_t i = 0; i < n && !rc; i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        if (t->st_dtype == DT_ST_U8 && !dt_bnb4_is_companion(t->name) && !dt_bnb4_find(b, t->name))
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' is U8 but has no '%s.quant_state.bitsandbytes__nf4' (or __fp4) companion",
                         dt_st_shard_path(st, t->shard), t->name, t->name);
    }
    if (rc) { dt_bnb4_close(b); return rc; }
    *out = b;
    return DT_OK;
}

const dt_st_tensor *dt_bnb4_find(const dt_bnb4 *b, const char *name) {
    for (size_t i = 0; b && i < b->n; i++)
        if (!strcmp(b->t[i].t.name, name)) return &b->t[i].t;
    return NULL;
}
