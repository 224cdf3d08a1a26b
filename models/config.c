// config.json reader for the Llama family. Each architecture's defaults are those of its
// transformers config class (LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config) for keys that are
// absent; sizes that define the model are required.
#include "models/config.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "models/atomic_file.h"

static const struct {
    dt_arch arch;
    const char *name, *model_type;
    int default_max_pos, default_head_dim; // 0: hidden_size / num_attention_heads
    bool bias, qk_norm;                    // q/k/v bias always on (Qwen2); per-head q/k norms (Qwen3)
} ARCHS[] = {
    {DT_ARCH_LLAMA, "LlamaForCausalLM", "llama", 2048, 0, false, false},
    {DT_ARCH_MISTRAL, "MistralForCausalLM", "mistral", 4096 * 32, 0, false, false},
    {DT_ARCH_QWEN2, "Qwen2ForCausalLM", "qwen2", 32768, 0, true, false},
    {DT_ARCH_QWEN3, "Qwen3ForCausalLM", "qwen3", 32768, 128, false, true},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])
#define SUPPORTED "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"

const char *dt_arch_name(dt_arch a) {
    for (size_t i = 0; i < N_ARCHS; i++)
        if (ARCHS[i].arch == a) return ARCHS[i].name;
    return "?";
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

// Key readers: absent or null keeps the default (*out unchanged) and returns DT_OK unless required.
static int get_int(dt_ctx *ctx, const char *path, json_t *o, const char *key, bool required, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return dt_fail(ctx, DT_EINPUT, "%s: missing required key '%s' (an integer)", path, key);
        return DT_OK;
    }
    // Some exporters write integral values as 4096.0; accept them, refuse anything fractional.
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : NAN;
    if (isnan(d) || d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' must be an integer, got %s", path, key, json_kind(v));
    *out = (int)d;
    return DT_OK;
}

static int get_float(dt_ctx *ctx, const char *path, json_t *o, const char *key, bool required, float *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return dt_fail(ctx, DT_EINPUT, "%s: missing required key '%s' (a number)", path, key);
        return DT_OK;
    }
    if (!json_is_number(v))
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' must be a number, got %s", path, key, json_kind(v));
    *out = (float)json_number_value(v);
    return DT_OK;
}

static int get_bool(dt_ctx *ctx, const char *path, json_t *o, const char *key, bool *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return DT_OK;
    if (!json_is_boolean(v))
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' must be true or false, got %s", path, key, json_kind(v));
    *out = json_is_true(v);
    return DT_OK;
}

// A token id, or a list of them (the first is kept), or null.
static int get_token(dt_ctx *ctx, const char *path, json_t *o, const char *key, int *out) {
    *out = -1;
    json_t *v = json_object_get(o, key);
    if (json_is_array(v)) {
        if (json_array_size(v) == 0) return DT_OK;
        v = json_array_get(v, 0);
    }
    if (!v || json_is_null(v)) return DT_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 2147483647)
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' must be a token id (a non-negative integer) or a list of "
                       "them, got %s", path, key, json_kind(v));
    *out = (int)json_integer_value(v);
    return DT_OK;
}

static int parse_rope_scaling(dt_ctx *ctx, const char *path, json_t *rs, dt_model_config *c) {
    if (!rs || json_is_null(rs)) return DT_OK;
    if (!json_is_object(rs))
        return dt_fail(ctx, DT_EINPUT, "%s: key 'rope_scaling' must be an object or null, got %s", path,
                       json_kind(rs));
    // transformers reads "rope_type" and falls back on the older "type".
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    if (!t || json_is_null(t)) return DT_OK; // v5 "rope_parameters" may hold only rope_theta
    if (!json_is_string(t))
        return dt_fail(ctx, DT_EINPUT, "%s: rope_scaling 'rope_type' must be a string, got %s", path, json_kind(t));
    const char *type = json_string_value(t);
    if (!strcmp(type, "default")) return DT_OK;
    if (strcmp(type, "llama3"))
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: rope_scaling type '%s' is not supported (supported: default, "
                       "llama3)", path, type);
    c->rope_scaling_type = DT_ROPE_LLAMA3;
    int rc;
    if ((rc = get_float(ctx, path, rs, "factor", true, &c->rope_factor)) ||
        (rc = get_float(ctx, path, rs, "low_freq_factor", true, &c->rope_low_freq_factor)) ||
        (rc = get_float(ctx, path, rs, "high_freq_factor", true, &c->rope_high_freq_factor)) ||
        (rc = get_int(ctx, path, rs, "original_max_position_embeddings", true, &c->rope_original_max_pos)))
        return dt_prefix(ctx, rc, "rope_scaling: ");
    return DT_OK;
}

static int parse_dtype(dt_ctx *ctx, const char *path, json_t *root, dt_dtype *out) {
    const char *key = "torch_dtype";
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) v = json_object_get(root, key = "dtype"); // transformers v5 spelling
    *out = DT_F32;
    if (!v || json_is_null(v)) return DT_OK;
    if (!json_is_string(v))
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s' must be a string, got %s", path, key, json_kind(v));
    const char *s = json_string_value(v);
    if (!strcmp(s, "float32")) *out = DT_F32;
    else if (!strcmp(s, "float16")) *out = DT_F16;
    else if (!strcmp(s, "bfloat16")) *out = DT_BF16;
    else return dt_fail(ctx, DT_EUNSUPPORTED, "%s: %s '%s' is not supported (supported: float32, float16, "
                        "bfloat16)", path, key, s);
    return DT_OK;
}

// Finds the architecture from "architectures" (the first entry), else from "model_type".
static int parse_arch(dt_ctx *ctx, const char *path, json_t *root, size_t *which) {
    json_t *a = json_object_get(root, "architectures"), *mt = json_object_get(root, "model_type");
    if (a && !json_is_null(a)) {
        if (!json_is_array(a) || json_array_size(a) == 0 || !json_is_string(json_array_get(a, 0)))
            return dt_fail(ctx, DT_EINPUT, "%s: key 'architectures' must be a non-empty list of strings", path);
        const char *name = json_string_value(json_array_get(a, 0));
        for (size_t i = 0; i < N_ARCHS; i++)
            if (!strcmp(ARCHS[i].name, name)) {
                *which = i;
                return DT_OK;
            }
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: architecture '%s' is not supported; supported: " SUPPORTED,
                       path, name);
    }
    if (json_is_string(mt)) {
        const char *name = json_string_value(mt);
        for (size_t i = 0; i < N_ARCHS; i++)
            if (!strcmp(ARCHS[i].model_type, name)) {
                *which = i;
                return DT_OK;
            }
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: model_type '%s' is not supported; supported architectures: "
                       SUPPORTED, path, name);
    }
    return dt_fail(ctx, DT_EINPUT, "%s: neither 'architectures' nor 'model_type' is given", path);
}

static int parse(dt_ctx *ctx, const char *path, json_t *root, dt_model_config *c) {
    memset(c, 0, sizeof *c);
    if (!json_is_object(root))
        return dt_fail(ctx, DT_EINPUT, "%s: expected a JSON object, got %s", path, json_kind(root));
    size_t ai = 0;
    int rc = parse_arch(ctx, path, root, &ai);
    if (rc) return rc;
    c->arch = ARCHS[ai].arch;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", ARCHS[ai].name);
    json_t *mt = json_object_get(root, "model_type");
    snprintf(c->model_type, sizeof c->model_type, "%s",
             json_is_string(mt) ? json_string_value(mt) : ARCHS[ai].model_type);

    c->max_position_embeddings = ARCHS[ai].default_max_pos;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->num_kv_heads = -1;
    c->head_dim = -1;
    c->attention_bias = ARCHS[ai].bias;
    c->qk_norm = ARCHS[ai].qk_norm;
    if ((rc = get_int(ctx, path, root, "hidden_size", true, &c->hidden_size)) ||
        (rc = get_int(ctx, path, root, "num_hidden_layers", true, &c->num_layers)) ||
        (rc = get_int(ctx, path, root, "num_attention_heads", true, &c->num_heads)) ||
        (rc = get_int(ctx, path, root, "intermediate_size", true, &c->intermediate_size)) ||
        (rc = get_int(ctx, path, root, "vocab_size", true, &c->vocab_size)) ||
        (rc = get_int(ctx, path, root, "num_key_value_heads", false, &c->num_kv_heads)) ||
        (rc = get_int(ctx, path, root, "head_dim", false, &c->head_dim)) ||
        (rc = get_int(ctx, path, root, "max_position_embeddings", false, &c->max_position_embeddings)) ||
        (rc = get_float(ctx, path, root, "rms_norm_eps", false, &c->rms_norm_eps)) ||
        (rc = get_float(ctx, path, root, "rope_theta", false, &c->rope_theta)) ||
        (rc = get_bool(ctx, path, root, "tie_word_embeddings", &c->tie_word_embeddings)) ||
        (rc = get_token(ctx, path, root, "bos_token_id", &c->bos_token_id)) ||
        (rc = get_token(ctx, path, root, "eos_token_id", &c->eos_token_id)) ||
        (rc = parse_dtype(ctx, path, root, &c->torch_dtype)))
        return rc;
    if (c->num_kv_heads == -1) c->num_kv_heads = c->num_heads;
    if (c->head_dim == -1 && ARCHS[ai].default_head_dim) {
        c->head_dim = ARCHS[ai].default_head_dim;
    } else if (c->head_dim == -1) {
        // Without an explicit head_dim the heads must split hidden_size evenly.
        if (c->num_heads <= 0 || c->hidden_size % c->num_heads)
            return dt_fail(ctx, DT_EINPUT, "%s: hidden_size %d is not divisible by num_attention_heads %d and "
                           "no head_dim is given", path, c->hidden_size, c->num_heads);
        c->head_dim = c->hidden_size / c->num_heads;
    }
    // Qwen2 always has q/k/v biases and no such key; Mistral never has them. Llama and Qwen3 read it.
    if (c->arch == DT_ARCH_LLAMA || c->arch == DT_ARCH_QWEN3)
        if ((rc = get_bool(ctx, path, root, "attention_bias", &c->attention_bias))) return rc;

    // rope_scaling (transformers <= 4.x) or rope_parameters (v5, which also holds rope_theta).
    json_t *rp = json_object_get(root, "rope_parameters");
    if (json_is_object(rp) && (rc = get_float(ctx, path, rp, "rope_theta", false, &c->rope_theta))) return rc;
    json_t *rs = json_object_get(root, "rope_scaling");
    if ((rc = parse_rope_scaling(ctx, path, rs && !json_is_null(rs) ? rs : rp, c))) return rc;

    // Features of these configs that the model does not implement are refused, not silently ignored.
    bool mlp_bias = false;
    if ((rc = get_bool(ctx, path, root, "mlp_bias", &mlp_bias))) return rc;
    if (mlp_bias) return dt_fail(ctx, DT_EUNSUPPORTED, "%s: mlp_bias true is not supported", path);
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: hidden_act '%s' is not supported (only silu)", path,
                       json_is_string(act) ? json_string_value(act) : json_kind(act));
    if (c->arch == DT_ARCH_MISTRAL) {
        if ((rc = get_int(ctx, path, root, "sliding_window", false, &c->sliding_window))) return rc;
    } else if (c->arch == DT_ARCH_QWEN2 || c->arch == DT_ARCH_QWEN3) {
        bool use = false;
        if ((rc = get_bool(ctx, path, root, "use_sliding_window", &use))) return rc;
        if (use && (rc = get_int(ctx, path, root, "sliding_window", false, &c->sliding_window))) return rc;
    }
    return dt_config_validate(ctx, c, path);
}

int dt_config_load(dt_ctx *ctx, const char *path, dt_model_config *cfg) {
    char buf[4096];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(buf, sizeof buf, "%s/config.json", path);
        path = buf;
    }
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (access(path, R_OK) != 0)
            return dt_fail(ctx, DT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
        return dt_fail(ctx, DT_EINPUT, "%s: not valid JSON: %s (line %d, column %d)", path, err.text, err.line,
                       err.column);
    }
    int rc = parse(ctx, path, root, cfg);
    json_decref(root);
    return rc;
}

int dt_config_validate(dt_ctx *ctx, const dt_model_config *c, const char *path) {
    const struct { const char *key; int v; } pos[] = {
        {"hidden_size", c->hidden_size}, {"num_hidden_layers", c->num_layers},
        {"num_attention_heads", c->num_heads}, {"num_key_value_heads", c->num_kv_heads},
        {"head_dim", c->head_dim}, {"intermediate_size", c->intermediate_size},
        {"vocab_size", c->vocab_size}, {"max_position_embeddings", c->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0)
            return dt_fail(ctx, DT_EINPUT, "%s: %s is %d, expected a positive integer", path, pos[i].key, pos[i].v);
    // Bounds far above any real model (vocabularies ~2^18, widths ~2^14, ~2^7 layers) that keep every
    // product of two dimensions, and the total byte count summed below, inside 64 bits.
    const struct { const char *key; int v, max; } big[] = {
        {"hidden_size", c->hidden_size, 1 << 20}, {"num_hidden_layers", c->num_layers, 1 << 16},
        {"num_attention_heads", c->num_heads, 1 << 16}, {"num_key_value_heads", c->num_kv_heads, 1 << 16},
        {"head_dim", c->head_dim, 1 << 16}, {"intermediate_size", c->intermediate_size, 1 << 22},
        {"vocab_size", c->vocab_size, 1 << 24}, {"max_position_embeddings", c->max_position_embeddings, 1 << 30},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        if (big[i].v > big[i].max)
            return dt_fail(ctx, DT_EINPUT, "%s: %s is %d, expected at most %d", path, big[i].key, big[i].v, big[i].max);
    // The f32 weight bytes, overflow-checked: a config naming an absurd model fails here instead of
    // making a later size computation wrap.
    uint64_t D = (uint64_t)c->hidden_size, Q = (uint64_t)c->num_heads * (uint64_t)c->head_dim,
             KV = (uint64_t)c->num_kv_heads * (uint64_t)c->head_dim, I = (uint64_t)c->intermediate_size;
    uint64_t per_layer = 0, total = 0;
    bool wrap = __builtin_mul_overflow(2 * D, Q + KV, &per_layer) || __builtin_add_overflow(per_layer, 3 * D * I, &per_layer) ||
                __builtin_mul_overflow(per_layer + 4 * D + Q + 2 * KV + 2 * (uint64_t)c->head_dim, (uint64_t)c->num_layers, &total) ||
                __builtin_add_overflow(total, 2 * (uint64_t)c->vocab_size * D + D, &total) || total > ((uint64_t)1 << 46);
    if (wrap)
        return dt_fail(ctx, DT_EINPUT, "%s: the sizes describe a model of more than 2^46 parameters (hidden_size %d, "
                       "num_hidden_layers %d, intermediate_size %d, vocab_size %d); not a real model", path,
                       c->hidden_size, c->num_layers, c->intermediate_size, c->vocab_size);
    if (c->num_heads % c->num_kv_heads)
        return dt_fail(ctx, DT_EINPUT, "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                       path, c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2)
        return dt_fail(ctx, DT_EINPUT, "%s: head_dim %d is odd; rotary embeddings need an even head_dim", path,
                       c->head_dim);
    if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps))
        return dt_fail(ctx, DT_EINPUT, "%s: rms_norm_eps %g, expected a positive number", path, c->rms_norm_eps);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return dt_fail(ctx, DT_EINPUT, "%s: rope_theta %g, expected a positive number", path, c->rope_theta);
    if (c->rope_scaling_type == DT_ROPE_LLAMA3 &&
        (!(c->rope_factor > 0) || !(c->rope_low_freq_factor > 0) ||
         !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_pos <= 0))
        return dt_fail(ctx, DT_EINPUT, "%s: rope_scaling llama3 needs factor > 0, 0 < low_freq_factor < "
                       "high_freq_factor and original_max_position_embeddings > 0", path);
    if (c->sliding_window < 0)
        return dt_fail(ctx, DT_EINPUT, "%s: sliding_window %d is negative", path, c->sliding_window);
    if (c->bos_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
        return dt_fail(ctx, DT_EINPUT, "%s: bos_token_id %d / eos_token_id %d outside the vocabulary (%d)", path,
                       c->bos_token_id, c->eos_token_id, c->vocab_size);
    return DT_OK;
}

// The double nearest the shortest decimal that reads back as f, so 1e-5f is written "1e-05" rather
// than the float's exact binary value 9.99999975e-06.
static json_t *json_float(float f) {
    char s[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(s, sizeof s, "%.*g", p, (double)f);
        if (strtof(s, NULL) == f) break;
    }
    return json_real(strtod(s, NULL));
}

int dt_config_save(dt_ctx *ctx, const dt_model_config *c, const char *path) {
    json_t *o = json_object(), *arch = json_array();
    if (!o || !arch) {
        json_decref(o);
        json_decref(arch);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    json_array_append_new(arch, json_string(c->arch_name[0] ? c->arch_name : dt_arch_name(c->arch)));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string(c->model_type));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->num_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->num_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->num_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "rms_norm_eps", json_float(c->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_float(c->rope_theta));
    if (c->rope_scaling_type == DT_ROPE_LLAMA3) {
        json_t *rs = json_object();
        json_object_set_new(rs, "rope_type", json_string("llama3"));
        json_object_set_new(rs, "factor", json_float(c->rope_factor));
        json_object_set_new(rs, "low_freq_factor", json_float(c->rope_low_freq_factor));
        json_object_set_new(rs, "high_freq_factor", json_float(c->rope_high_freq_factor));
        json_object_set_new(rs, "original_max_position_embeddings", json_integer(c->rope_original_max_pos));
        json_object_set_new(o, "rope_scaling", rs);
    }
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    if (c->arch == DT_ARCH_LLAMA || c->arch == DT_ARCH_QWEN3)
        json_object_set_new(o, "attention_bias", json_boolean(c->attention_bias));
    if (c->sliding_window > 0) {
        if (c->arch != DT_ARCH_MISTRAL) json_object_set_new(o, "use_sliding_window", json_true());
        json_object_set_new(o, "sliding_window", json_integer(c->sliding_window));
    }
    json_object_set_new(o, "hidden_act", json_string("silu"));
    if (c->bos_token_id >= 0) json_object_set_new(o, "bos_token_id", json_integer(c->bos_token_id));
    if (c->eos_token_id >= 0) json_object_set_new(o, "eos_token_id", json_integer(c->eos_token_id));
    json_object_set_new(o, "torch_dtype", json_string(c->torch_dtype == DT_BF16  ? "bfloat16"
                                                      : c->torch_dtype == DT_F16 ? "float16"
                                                                                 : "float32"));
    // 9 significant digits round-trip any float; %g drops the trailing zeros json_float leaves.
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(text);
    char *buf = malloc(n + 2);
    int rc;
    if (!buf) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    else {
        memcpy(buf, text, n);
        buf[n] = '\n';
        rc = dt_atomic_write(ctx, path, buf, n + 1);
    }
    free(buf);
    free(text);
    return rc;
}
