// deltatune inspect PATH
// Describes a safetensors file (or sharded index), a Hugging Face model folder, a PEFT adapter folder or
// a GGUF file (model or LoRA adapter): metadata, every tensor's name, dtype and shape, parameter counts,
// and for adapters the method, rank, alpha and target modules (and per-module ranks, alphas and scales
// when they differ). Shapes are row-major (PyTorch order; a GGUF tensor's ggml ne reversed).
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "models/config.h"
#include "models/gguf.h"
#include "models/safetensors.h"
#include "models/tensor_names.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"
#include "tools/inspect_lora.h"

static void print_shape(int ndim, const int64_t *shape, bool reversed) {
    putchar('[');
    for (int d = 0; d < ndim; d++) printf("%s%lld", d ? ", " : "", (long long)shape[reversed ? ndim - 1 - d : d]);
    putchar(']');
}

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

// Every tensor of a safetensors set, then the counts per dtype and in all.
static void print_st_tensors(const dt_safetensors *st) {
    const size_t n = dt_st_count(st);
    int64_t per[DT_ST_BLOCK + 1] = {0}, total = 0;
    size_t bytes = 0;
    printf("tensors: %zu\n", n);
    for (size_t i = 0; i < n; i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        printf("  %-60s %-4s ", t->name, dt_st_dtype_name(t->st_dtype));
        print_shape(t->ndim, t->shape, false);
        if (dt_st_shard_count(st) > 1) printf("  (shard %d)", t->shard + 1);
        putchar('\n');
        const int64_t e = numel(t->ndim, t->shape);
        per[t->st_dtype] += e;
        total += e;
        bytes += t->nbytes;
    }
    printf("parameters: %lld (", (long long)total);
    bool first = true;
    for (int d = 0; d <= DT_ST_BLOCK; d++)
        if (per[d]) { printf("%s%s %lld", first ? "" : ", ", dt_st_dtype_name((dt_st_dtype)d), (long long)per[d]); first = false; }
    printf("), %zu bytes of tensor data\n", bytes);
}

static void print_st_header(const dt_safetensors *st) {
    const int shards = dt_st_shard_count(st);
    printf("shards: %d\n", shards);
    for (int s = 0; s < shards && shards > 1; s++) printf("  %s\n", dt_st_shard_path(st, s));
    const char *fmt = dt_st_metadata(st, "format");
    if (fmt) printf("metadata: format = %s\n", fmt);
}

static int inspect_safetensors(dt_ctx *ctx, const char *path) {
    dt_safetensors *st;
    int rc = dt_st_open(ctx, path, &st);
    if (rc) return rc;
    printf("safetensors: %s\n", path);
    print_st_header(st);
    print_st_tensors(st);
    dt_st_close(st);
    return DT_OK;
}

static const char *dtype_torch(dt_dtype t) { return t == DT_BF16 ? "bfloat16" : t == DT_F16 ? "float16" : "float32"; }

static int inspect_model(dt_ctx *ctx, const char *dir) {
    dt_model_config c;
    dt_safetensors *st;
    int rc = dt_config_load(ctx, dir, &c);
    if (!rc) rc = dt_st_open(ctx, dir, &st);
    if (rc) return rc;
    printf("model: %s\n", dir);
    printf("architecture: %s (model_type %s)\n", c.arch_name, c.model_type);
    printf("layers: %d, hidden: %d, intermediate: %d, vocabulary: %d\n", c.num_layers, c.hidden_size, c.intermediate_size, c.vocab_size);
    printf("attention: %d heads, %d kv heads, head_dim %d%s%s\n", c.num_heads, c.num_kv_heads, c.head_dim,
           c.attention_bias ? ", q/k/v bias" : "", c.qk_norm ? ", q/k norm" : "");
    printf("rope_theta: %g, rms_norm_eps: %g, max_position_embeddings: %d", (double)c.rope_theta, (double)c.rms_norm_eps,
           c.max_position_embeddings);
    if (c.rope_scaling_type == DT_ROPE_LLAMA3)
        printf(", rope scaling llama3 (factor %g, low %g, high %g, original %d)", (double)c.rope_factor,
               (double)c.rope_low_freq_factor, (double)c.rope_high_freq_factor, c.rope_original_max_pos);
    if (c.sliding_window) printf(", sliding window %d", c.sliding_window);
    printf("\ntied embeddings: %s, torch_dtype: %s\n", c.tie_word_embeddings ? "yes" : "no", dtype_torch(c.torch_dtype));
    print_st_header(st);
    print_st_tensors(st);
    dt_st_close(st);
    return DT_OK;
}

// Joins a JSON array of strings (or a string) into buf.
static void join_json(json_t *v, char *buf, size_t n) {
    buf[0] = '\0';
    if (json_is_string(v)) { snprintf(buf, n, "%s", json_string_value(v)); return; }
    size_t i, len = 0;
    json_t *e;
    json_array_foreach(v, i, e) {
        char item[64];
        if (json_is_string(e)) snprintf(item, sizeof item, "%s", json_string_value(e));
        else snprintf(item, sizeof item, "%lld", (long long)json_integer_value(e));
        int w = snprintf(buf + len, n - len, "%s%s", i ? ", " : "", item);
        if (w < 0 || (size_t)w >= n - len) break;
        len += (size_t)w;
    }
}

static int inspect_adapter(dt_ctx *ctx, const char *dir) {
    char cpath[4096], wpath[4096], buf[1024];
    snprintf(cpath, sizeof cpath, "%s/adapter_config.json", dir);
    snprintf(wpath, sizeof wpath, "%s/adapter_model.safetensors", dir);
    json_error_t err;
    json_t *cfg = json_load_file(cpath, 0, &err);
    if (!cfg) return dt_fail(ctx, DT_EINPUT, "%s:%d:%d: %s", cpath, err.line, err.column, err.text);
    dt_safetensors *st = NULL;
    int rc = dt_st_open(ctx, wpath, &st);
    if (rc) { json_decref(cfg); return rc; }
    const char *type = json_string_value(json_object_get(cfg, "peft_type"));
    printf("adapter: %s (PEFT)\n", dir);
    printf("method: %s\n", type ? type : "?");
    const char *base = json_string_value(json_object_get(cfg, "base_model_name_or_path"));
    printf("base model: %s\n", base && base[0] ? base : "(not named)");
    if (type && !strcmp(type, "LORA")) {
        const json_int_t r = json_integer_value(json_object_get(cfg, "r"));
        const double alpha = json_number_value(json_object_get(cfg, "lora_alpha"));
        const bool rs = json_is_true(json_object_get(cfg, "use_rslora"));
        printf("rank: %lld, alpha: %g, scale: %g (%s), rsLoRA: %s, DoRA: %s, dropout: %g\n", (long long)r, alpha,
               r > 0 ? (rs ? alpha / sqrt((double)r) : alpha / (double)r) : 0.0, rs ? "alpha/sqrt(r)" : "alpha/r",
               rs ? "yes" : "no", json_is_true(json_object_get(cfg, "use_dora")) ? "yes" : "no",
               json_number_value(json_object_get(cfg, "lora_dropout")));
        join_json(json_object_get(cfg, "target_modules"), buf, sizeof buf);
        printf("target modules: %s\n", buf);
        json_t *layers = json_object_get(cfg, "layers_to_transform");
        if (!layers || json_is_null(layers)) printf("layers: all\n");
        else if (json_is_integer(layers)) printf("layers: %lld\n", (long long)json_integer_value(layers));
        else { join_json(layers, buf, sizeof buf); printf("layers: %s\n", buf); }
        // Per-module ranks and alphas (rank_pattern, alpha_pattern): the line above gives the defaults.
        if ((rc = dt_inspect_lora_modules(ctx, cfg, cpath, st))) { dt_st_close(st); json_decref(cfg); return rc; }
    } else if (type && !strcmp(type, "IA3")) {
        join_json(json_object_get(cfg, "target_modules"), buf, sizeof buf);
        printf("target modules: %s (output scaled unless feedforward)\n", buf);
        join_json(json_object_get(cfg, "feedforward_modules"), buf, sizeof buf);
        printf("feedforward modules: %s (input scaled)\n", buf);
    } else if (type && !strcmp(type, "BITFIT")) {
        join_json(json_object_get(cfg, "target_modules"), buf, sizeof buf);
        printf("target modules: %s (a trained bias delta on each output)\n", buf);
    } else if (type && !strcmp(type, "PREFIX_TUNING")) {
        printf("virtual tokens: %lld, layers: %lld, key/value width (token_dim): %lld, key/value heads: %lld, prefix_projection: %s\n",
               (long long)json_integer_value(json_object_get(cfg, "num_virtual_tokens")),
               (long long)json_integer_value(json_object_get(cfg, "num_layers")),
               (long long)json_integer_value(json_object_get(cfg, "token_dim")),
               (long long)json_integer_value(json_object_get(cfg, "num_attention_heads")),
               json_is_true(json_object_get(cfg, "prefix_projection")) ? "true (the file holds the projection's output)" : "false");
    } else if (type && !strcmp(type, "PROMPT_TUNING")) {
        printf("virtual tokens: %lld, token dim: %lld, init: %s\n",
               (long long)json_integer_value(json_object_get(cfg, "num_virtual_tokens")),
               (long long)json_integer_value(json_object_get(cfg, "token_dim")),
               json_string_value(json_object_get(cfg, "prompt_tuning_init")) ? json_string_value(json_object_get(cfg, "prompt_tuning_init")) : "?");
    }
    print_st_tensors(st);
    dt_st_close(st);
    json_decref(cfg);
    return DT_OK;
}

// One value of a GGUF key: scalars as they are, strings quoted (cut at 60 bytes), arrays as type, length and
// their first elements.
static void print_gguf_value(const dt_gguf_kv *kv) {
    const uint64_t shown = kv->type == DT_GGUF_ARRAY ? (kv->n < 4 ? kv->n : 4) : 1;
    if (kv->type == DT_GGUF_ARRAY) printf("[%s x %llu] ", dt_gguf_type_name(kv->arr_type), (unsigned long long)kv->n);
    for (uint64_t i = 0; i < shown; i++) {
        if (i) printf(", ");
        switch (kv->arr_type) {
        case DT_GGUF_STRING: {
            const char *s = kv->strs[i];
            const size_t len = kv->str_lens[i];
            putchar('"');
            for (size_t k = 0; k < len && k < 60; k++) {
                unsigned char ch = (unsigned char)s[k];
                if (ch == '\n') printf("\\n");
                else if (ch == '"' || ch == '\\') printf("\\%c", ch);
                else if (ch < 0x20) printf("\\x%02x", ch);
                else putchar(ch);
            }
            printf(len > 60 ? "...\"" : "\"");
            break;
        }
        case DT_GGUF_F32:
        case DT_GGUF_F64: printf("%g", dt_gguf_kv_float(kv, i)); break;
        case DT_GGUF_BOOL: printf("%s", dt_gguf_kv_int(kv, i) ? "true" : "false"); break;
        case DT_GGUF_U64:
        case DT_GGUF_U32:
        case DT_GGUF_U16:
        case DT_GGUF_U8: printf("%llu", (unsigned long long)dt_gguf_kv_uint(kv, i)); break;
        default: printf("%lld", (long long)dt_gguf_kv_int(kv, i)); break;
        }
    }
    if (kv->type == DT_GGUF_ARRAY && kv->n > shown) printf(", ...");
    putchar('\n');
}

// For a GGUF LoRA adapter: rank, alpha and the adapted modules and layers, from the tensor names.
static void print_gguf_adapter(const dt_gguf_file *f) {
    enum { MAX_LAYERS = 1024 };
    bool mods[DT_MOD_COUNT] = {0}, layers[MAX_LAYERS] = {0};
    int64_t rank = -1, rank_min = -1, pairs = 0; // ranks differ per tensor for a PEFT adapter with rank_pattern
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const dt_gguf_tensor *t = &f->tensors[i];
        int layer, used = 0;
        char mod[64];
        if (sscanf(t->name, "blk.%d.%63[a-z_].weight.lora_%*c%n", &layer, mod, &used) < 2 || !used) continue;
        for (int m = 0; m < DT_MOD_COUNT; m++)
            if (!strcmp(mod, dt_module_gguf((dt_module)m))) mods[m] = true;
        if (strstr(t->name, ".lora_b")) {
            rank = pairs ? (t->ne[0] > rank ? t->ne[0] : rank) : t->ne[0];
            rank_min = pairs ? (t->ne[0] < rank_min ? t->ne[0] : rank_min) : t->ne[0];
            pairs++;
        }
        if (layer >= 0 && layer < MAX_LAYERS) layers[layer] = true;
    }
    int64_t ai = dt_gguf_find_key(f, "adapter.lora.alpha");
    // A single number, or treated as absent (as llama.cpp does): not an array, a string or an empty value.
    const double alpha = ai >= 0 && f->kvs[ai].type != DT_GGUF_ARRAY ? dt_gguf_kv_float(&f->kvs[ai], 0) : 0.0;
    int64_t ti = dt_gguf_find_key(f, "adapter.type");
    const char *method = ti >= 0 && f->kvs[ti].type == DT_GGUF_STRING ? f->kvs[ti].strs[0] : "?";
    if (rank_min == rank)
        printf("adapter: method %s, rank %lld, alpha %g (llama.cpp scale alpha/r = %g), %lld adapted weights\n", method,
               (long long)rank, alpha, rank > 0 && alpha != 0 ? alpha / (double)rank : 1.0, (long long)pairs);
    else // llama.cpp divides by each tensor's own rank
        printf("adapter: method %s, ranks %lld to %lld, alpha %g (llama.cpp scale alpha / each tensor's rank), %lld adapted weights\n",
               method, (long long)rank_min, (long long)rank, alpha, (long long)pairs);
    printf("target modules:");
    bool first = true;
    for (int m = 0; m < DT_MOD_COUNT; m++)
        if (mods[m]) { printf("%s %s (%s)", first ? "" : ",", dt_module_gguf((dt_module)m), dt_module_short((dt_module)m)); first = false; }
    printf("\nlayers:");
    first = true;
    for (int l = 0; l < MAX_LAYERS; l++) { // as ranges: "0-29" or "1, 3-5"
        if (!layers[l]) continue;
        int e = l;
        while (e + 1 < MAX_LAYERS && layers[e + 1]) e++;
        printf(e > l ? "%s %d-%d" : "%s %d", first ? "" : ",", l, e);
        first = false;
        l = e;
    }
    putchar('\n');
}

static int inspect_gguf(dt_ctx *ctx, const char *path) {
    dt_gguf_file *f;
    int rc = dt_gguf_open(ctx, path, &f);
    if (rc) return rc;
    printf("gguf: %s (version %u, alignment %zu, %lld keys, %lld tensors)\n", path, f->version, f->alignment,
           (long long)f->n_kv, (long long)f->n_tensors);
    printf("metadata:\n");
    for (int64_t i = 0; i < f->n_kv; i++) {
        printf("  %s = ", f->kvs[i].key);
        print_gguf_value(&f->kvs[i]);
    }
    int64_t gi = dt_gguf_find_key(f, "general.type");
    if (gi >= 0 && f->kvs[gi].type == DT_GGUF_STRING && !strcmp(f->kvs[gi].strs[0], "adapter")) print_gguf_adapter(f);
    printf("tensors: %lld (shapes row-major: ggml ne reversed)\n", (long long)f->n_tensors);
    int64_t total = 0, per_type[64] = {0};
    size_t per_type_bytes[64] = {0};
    size_t bytes = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const dt_gguf_tensor *t = &f->tensors[i];
        const char *tname = "?";
        dt_ggml_type_info(t->type, &tname, NULL, NULL);
        printf("  %-60s %-5s ", t->name, tname);
        print_shape(t->n_dims, t->ne, true);
        putchar('\n');
        const int64_t e = numel(t->n_dims, t->ne);
        total += e;
        bytes += t->nbytes;
        if (t->type < 64) { per_type[t->type] += e; per_type_bytes[t->type] += t->nbytes; }
    }
    printf("parameters: %lld, %zu bytes of tensor data\n", (long long)total, bytes);
    // The storage types and what each costs per weight (a quantized model mixes several).
    printf("types:");
    for (int k = 0; k < 64; k++)
        if (per_type[k]) {
            const char *tname = "?";
            dt_ggml_type_info((uint32_t)k, &tname, NULL, NULL);
            printf(" %s %lld (%.2f bits/weight)", tname, (long long)per_type[k], 8.0 * (double)per_type_bytes[k] / (double)per_type[k]);
        }
    printf("; %.3f bits per weight overall\n", total ? 8.0 * (double)bytes / (double)total : 0.0);
    dt_gguf_close(f);
    return DT_OK;
}

static bool exists(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static bool has_gguf_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    bool yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, DT_GGUF_MAGIC, 4);
    if (f) fclose(f);
    return yes;
}

int cmd_inspect(int argc, char **argv) {
    char *pos[1];
    int n_pos = 0;
    const dt_cli cli = {"inspect", "PATH", "Describes a file or folder: metadata, tensors (name, type, shape) and parameter counts.",
                        NULL, 0, "PATH: a .safetensors file or index, a model folder (config.json), an adapter folder\n"
                        "(adapter_config.json) or a GGUF file (model or LoRA adapter)."};
    int st = dt_cli_parse(&cli, argc, argv, pos, &n_pos, 1);
    if (st >= 0) return st;
    if (n_pos != 1) return dt_cli_bad(&cli, "a path is required");
    const char *path = pos[0];
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
    struct stat sb;
    int rc;
    if (stat(path, &sb)) rc = dt_fail(&ctx, DT_EINPUT, "%s: no such file or folder", path);
    else if (S_ISDIR(sb.st_mode)) {
        if (exists(path, "adapter_config.json")) rc = inspect_adapter(&ctx, path);
        else if (exists(path, "config.json")) rc = inspect_model(&ctx, path);
        else if (exists(path, "model.safetensors") || exists(path, "model.safetensors.index.json")) rc = inspect_safetensors(&ctx, path);
        else rc = dt_fail(&ctx, DT_EINPUT, "%s: neither a model folder (config.json) nor an adapter folder (adapter_config.json)", path);
    } else if (has_gguf_magic(path)) rc = inspect_gguf(&ctx, path);
    else rc = inspect_safetensors(&ctx, path); // a .safetensors file or an index; its reader says what is wrong
    return rc ? dt_cli_fail("inspect", &ctx, rc) : 0;
}
