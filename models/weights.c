// One weight source for the model: a Hugging Face folder or .safetensors file, a llama2.c checkpoint or a
// GGUF file.
#include "models/weights.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "models/bnb4.h"
#include "models/gguf_model.h"
#include "models/llama2c.h"
#include "models/model_files.h"

struct dt_weights {
    char *path;
    dt_safetensors *st; // exactly one of st, l2c and gg is set
    dt_llama2c *l2c;
    dt_gguf_model *gg;
    dt_bnb4 *bnb;       // with st: a bitsandbytes 4-bit checkpoint's quantized weights
};

static bool has_suffix(const char *path, const char *suffix) {
    size_t n = strlen(path), k = strlen(suffix);
    return n >= k && !strcmp(path + n - k, suffix);
}

static bool is_llama2c(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && !strcmp(path + n - 4, ".bin");
}

int dt_weights_open(dt_ctx *ctx, const char *path, dt_model_config *cfg, dt_weights **out) {
    *out = NULL;
    dt_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    // A .safetensors file (not a folder so named) holds the weights only: config.json (and a bitsandbytes
    // quantization_config) come from the folder holding it, where train finds the tokenizer too.
    struct stat sb;
    char *dir = NULL;
    if (has_suffix(path, ".safetensors") && !(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) && !(dir = dt_model_dir(path))) {
        dt_weights_close(w);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    char cfg_path[4200] = "";
    if (dir) snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    int rc = is_llama2c(path)               ? dt_llama2c_load(ctx, path, cfg, &w->l2c)
             : has_suffix(path, ".gguf") ? dt_gguf_model_open(ctx, path, cfg, &w->gg)
             : dir && access(cfg_path, F_OK)
                 ? dt_fail(ctx, DT_EINPUT, "%s: a .safetensors model file needs the model's config.json beside it, and %s "
                           "does not exist (or give the model's folder)", path, cfg_path)
                 : dt_config_load(ctx, dir ? dir : path, cfg);
    if (!rc && !w->l2c && !w->gg) rc = dt_st_open(ctx, path, &w->st);
    if (!rc && w->st) rc = dt_bnb4_open(ctx, dir ? dir : path, w->st, &w->bnb);
    free(dir);
    if (rc) {
        dt_weights_close(w);
        return rc;
    }
    *out = w;
    return DT_OK;
}

void dt_weights_close(dt_weights *w) {
    if (!w) return;
    dt_st_close(w->st);
    dt_llama2c_free(w->l2c);
    dt_gguf_model_close(w->gg);
    dt_bnb4_close(w->bnb);
    free(w->path);
    free(w);
}

const char *dt_weights_path(const dt_weights *w) { return w->path; }
size_t dt_weights_count(const dt_weights *w) {
    return w->st ? dt_st_count(w->st) : w->gg ? dt_gguf_model_count(w->gg) : dt_llama2c_count(w->l2c);
}
const dt_st_tensor *dt_weights_at(const dt_weights *w, size_t i) {
    return w->st ? dt_st_at(w->st, i) : w->gg ? dt_gguf_model_at(w->gg, i) : dt_llama2c_at(w->l2c, i);
}
const dt_st_tensor *dt_weights_find(const dt_weights *w, const char *name) {
    const dt_st_tensor *q = dt_bnb4_find(w->bnb, name);
    if (q) return q;
    return w->st ? dt_st_find(w->st, name) : w->gg ? dt_gguf_model_find(w->gg, name) : dt_llama2c_find(w->l2c, name);
}
dt_dtype dt_weights_stored_type(const dt_st_tensor *t) {
    return t && t->st_dtype == DT_ST_BF16 ? DT_BF16 : t && t->st_dtype == DT_ST_F16 ? DT_F16 : DT_F32;
}
const dt_gguf_model *dt_weights_gguf(const dt_weights *w) { return w->gg; }
const float *dt_weights_rope_factors(const dt_weights *w) { return w->gg ? dt_gguf_model_rope_factors(w->gg) : NULL; }

static bool ignorable(const char *name, bool tied) {
    static const char inv_freq[] = ".rotary_emb.inv_freq";
    size_t n = strlen(name), k = sizeof inv_freq - 1;
    return (n >= k && !strcmp(name + n - k, inv_freq)) || (tied && !strcmp(name, "lm_head.weight"));
}

int dt_weights_check_unused(dt_ctx *ctx, const dt_weights *w, const dt_st_tensor *const *used, int n_used, bool tied) {
    size_t count = dt_weights_count(w), unused = 0;
    char names[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < count; i++) {
        const dt_st_tensor *t = dt_weights_at(w, i);
        // bitsandbytes: a U8 weight is used through its 4-bit view; its companions are part of it.
        // GGUF: rope_freqs.weight (llama3 factors) is read apart (dt_weights_rope_factors).
        if ((w->bnb && dt_bnb4_is_companion(t->name)) || (w->gg && !strcmp(t->name, "rope_freqs.weight"))) continue;
        const dt_st_tensor *q = dt_bnb4_find(w->bnb, t->name);
        bool found = false;
        for (int j = 0; j < n_used && !found; j++) found = used[j] == t || (q && used[j] == q);
        if (found || ignorable(t->name, tied)) continue;
        if (unused++ < 3 && len < sizeof names)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s'%s'", len ? ", " : "", t->name);
    }
    if (!unused) return DT_OK;
    return dt_fail(ctx, DT_EINPUT,
                   "%s: %zu tensor%s not used by the model its config describes (%s%s); does config.json declare "
                   "too few layers (num_hidden_layers) or omit a feature?",
                   w->path, unused, unused == 1 ? " is" : "s are", names, unused > 3 ? ", ..." : "");
}

int dt_weights_read_as(dt_ctx *ctx, const dt_weights *w, const char *name, dt_dtype dst_dtype, void *dst,
                       int ndim, const int64_t *expect_shape) {
    if (w->st && !w->bnb) return dt_st_read_as(ctx, w->st, name, dst_dtype, dst, ndim, expect_shape);
    const dt_st_tensor *t = dt_weights_find(w, name);
    if (!t) return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' not found", w->path, name);
    int rc = expect_shape ? dt_st_check_shape(ctx, w->path, t, ndim, expect_shape) : DT_OK;
    return rc ? rc : dt_st_tensor_copy(ctx, w->path, t, dst_dtype, dst);
}

int dt_weights_read_f32(dt_ctx *ctx, const dt_weights *w, const char *name, float *dst, int ndim,
                        const int64_t *expect_shape) {
    return dt_weights_read_as(ctx, w, name, DT_F32, dst, ndim, expect_shape);
}
