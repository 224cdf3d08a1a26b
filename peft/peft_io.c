#include "peft/peft_io.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "models/atomic_file.h"
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "autograd/dtype.h"

// Keys PEFT writes that we read or knowingly ignore; anything else gets a warning.
static const char *KNOWN_KEYS[] = {
    "peft_type", "task_type", "base_model_name_or_path", "r", "lora_alpha", "lora_dropout", "target_modules",
    "layers_to_transform", "layers_pattern", "use_rslora", "use_dora", "bias", "fan_in_fan_out",
    "modules_to_save", "init_lora_weights", "rank_pattern", "alpha_pattern", "revision", "inference_mode",
    "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
    "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs",
    "auto_mapping", "megatron_config", "megatron_core", "loftq_config", "use_qalora", "qalora_group_size",
    "layer_replication", "runtime_config", "lora_bias", "target_parameters", "exclude_modules", "eva_config",
    "corda_config", "trainable_token_indices", "alora_invocation_tokens", "peft_version",
};

// One of the shared keys above or of the method's own (dt_method.keys).
static bool is_known(const char *k, const dt_method *method) {
    for (size_t i = 0; i < sizeof KNOWN_KEYS / sizeof KNOWN_KEYS[0]; i++)
        if (!strcmp(k, KNOWN_KEYS[i])) return true;
    for (const char *const *p = method->keys; p && *p; p++)
        if (!strcmp(k, *p)) return true;
    return false;
}

const char *dt_peft_base_copy_of(const char *key, const dt_model_config *c) {
    if (!strcmp(key, "base_model.model.model.embed_tokens.base_layer.weight")) return dt_tn_global(DT_GT_EMBED);
    if (!strcmp(key, "base_model.model.lm_head.base_layer.weight"))
        return dt_tn_global(c->tie_word_embeddings ? DT_GT_EMBED : DT_GT_LM_HEAD);
    return NULL;
}

int dt_peft_check_base_copy(dt_ctx *ctx, const char *file, const dt_st_tensor *t, const dt_tensor *base) {
    const int64_t rows = base->shape[0], cols = base->shape[1];
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' (PEFT's copy of the base layer, save_embedding_layers) is not the base "
                       "model's shape [%lld, %lld]: a resized embedding is not supported", file, t->name, (long long)rows,
                       (long long)cols);
    // A base kept in bf16/f16 is compared with the copy rounded the same way; a block-quantized one cannot be
    // compared value for value, and is taken as it is.
    const dt_dtype bt = base->dtype;
    if (bt != DT_F32 && bt != DT_BF16 && bt != DT_F16) return DT_OK;
    float *copy = malloc((size_t)(rows * cols) * sizeof(float)), *row = malloc((size_t)cols * sizeof(float));
    uint16_t *half = malloc((size_t)cols * sizeof(uint16_t));
    int rc = copy && row && half ? dt_st_tensor_copy(ctx, file, t, DT_F32, copy) : dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (int64_t r = 0; r < rows && !rc; r++) {
        float *want = copy + r * cols;
        if (bt != DT_F32) {
            dt_convert_from_f32(half, bt, want, (size_t)cols);
            dt_convert_to_f32(want, half, bt, (size_t)cols);
        }
        dt_tensor_row_f32(base, r, row);
        if (memcmp(row, want, (size_t)cols * sizeof(float)))
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' (PEFT's copy of the base layer, save_embedding_layers) differs from "
                         "the base model's weights (row %lld): an adapter that replaces the embedding is not supported; use "
                         "the base model it was trained on", file, t->name, (long long)r);
    }
    free(copy);
    free(row);
    free(half);
    return rc;
}

int dt_adapter_load(dt_ctx *ctx, const char *dir, const dt_llama *m, dt_adapter **out) {
    *out = NULL;
    char cpath[4096], wpath[4096];
    snprintf(cpath, sizeof cpath, "%s/adapter_config.json", dir);
    snprintf(wpath, sizeof wpath, "%s/adapter_model.safetensors", dir);
    json_error_t jerr;
    json_t *cfg = json_load_file(cpath, 0, &jerr);
    if (!cfg) {
        if (access(cpath, R_OK)) return dt_fail(ctx, DT_EINPUT, "%s: no adapter here (adapter_config.json is missing)", dir);
        return dt_fail(ctx, DT_EINPUT, "%s:%d:%d: %s", cpath, jerr.line, jerr.column, jerr.text);
    }
    int rc = DT_OK;
    dt_adapter *a = NULL;
    dt_safetensors *st = NULL;
    if (!json_is_object(cfg)) { rc = dt_fail(ctx, DT_EINPUT, "%s: expected a JSON object", cpath); goto done; }
    const char *type = json_string_value(json_object_get(cfg, "peft_type"));
    if (!type) { rc = dt_fail(ctx, DT_EINPUT, "%s: key 'peft_type': missing", cpath); goto done; }
    const dt_method *method = dt_method_by_peft_type(type);
    if (!method) {
        char known[256];
        dt_method_peft_types(known, sizeof known);
        rc = dt_fail(ctx, DT_EINPUT, "%s: key 'peft_type': %s adapters are not supported (supported: %s)", cpath, type, known);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(cfg, key, val)
        if (!is_known(key, method)) dt_warn(ctx, "%s: ignoring unknown key '%s'", cpath, key);
    // PEFT saves a whole trained copy of each module listed here (the copy replaces the module). We have
    // no such copies: refused by the key, rather than by the first copy's tensor name further down.
    json_t *mts = json_object_get(cfg, "modules_to_save");
    if (json_is_array(mts) && json_array_size(mts) > 0) {
        char *list = json_dumps(mts, JSON_COMPACT);
        rc = dt_fail(ctx, DT_EUNSUPPORTED, "%s: key 'modules_to_save': %s: fully trained copies of whole modules are not "
                     "supported (only the adapter's own tensors are read)", cpath, list ? list : "?");
        free(list);
        goto done;
    }
    rc = method->from_json(ctx, cfg, cpath, m, &a);
    if (rc) goto done;
    const char *base = json_string_value(json_object_get(cfg, "base_model_name_or_path"));
    snprintf(a->base_model, sizeof a->base_model, "%s", base ? base : "");
    const char *tok = json_string_value(json_object_get(cfg, "tokenizer_name_or_path"));
    snprintf(a->tokenizer, sizeof a->tokenizer, "%s", tok ? tok : "");
    if (access(wpath, F_OK)) { // PEFT's save_pretrained(safe_serialization=False) writes a pickle instead
        char bin[4096];
        snprintf(bin, sizeof bin, "%s/adapter_model.bin", dir);
        if (!access(bin, F_OK)) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: a PyTorch pickle, which is not read: save the adapter with "
                         "safe_serialization=True (adapter_model.safetensors)", bin);
            goto done;
        }
    }
    if ((rc = dt_st_open(ctx, wpath, &st))) goto done;
    for (int i = 0; i < a->n_tensors && !rc; i++)
        rc = dt_st_read_f32(ctx, st, a->names[i], dt_f32(&a->tensors[i]), a->tensors[i].ndim, a->tensors[i].shape);
    // Every tensor of the file must belong to this adapter: an extra one means the config and the
    // weights disagree (another model, other layers or modules).
    for (size_t i = 0; i < dt_st_count(st) && !rc; i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        const char *copied = a->method == &dt_method_lora ? dt_peft_base_copy_of(t->name, &m->cfg) : NULL;
        if (copied) { // checked against the weights here, or by the merge against its source (m has none there)
            const dt_tensor *base = !strcmp(copied, dt_tn_global(DT_GT_EMBED)) ? &m->embed : &m->lm_head;
            if (base->data) rc = dt_peft_check_base_copy(ctx, wpath, t, base);
            continue;
        }
        // bias "all" / "lora_only": PEFT also saves the base layers' biases it trained (Qwen2's q/k/v).
        const char *bias = json_string_value(json_object_get(cfg, "bias"));
        size_t nl = strlen(t->name);
        if (!dt_adapter_find(a, t->name) && bias && strcmp(bias, "none") && nl > 5 && !strcmp(t->name + nl - 5, ".bias"))
            rc = dt_fail(ctx, DT_EUNSUPPORTED, "%s: key 'bias': \"%s\": the trained biases of the base layers (tensor '%s') "
                         "are not supported; only \"none\" is", cpath, bias, t->name);
        else if (!dt_adapter_find(a, t->name))
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' does not fit the adapter described by adapter_config.json and this base model",
                         wpath, dt_st_at(st, i)->name);
    }
done:
    dt_st_close(st);
    json_decref(cfg);
    if (rc) { dt_adapter_free(a); return rc; }
    *out = a;
    return DT_OK;
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

// c's members in sorted key order (strcmp: Python's sort_keys order for these ASCII keys). Not jansson's
// JSON_SORT_KEYS: that sorts nested objects too, and the order of a rank_pattern / alpha_pattern is
// meaningful (the first matching key wins), so those stay in the order they were read. (PEFT's own
// save sorts them; an adapter it wrote is therefore already sorted and stays byte-identical.)
static json_t *sorted_copy(json_t *c) {
    size_t n = json_object_size(c), i = 0;
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    json_t *out = keys ? json_object() : NULL;
    if (!out) { free(keys); return NULL; }
    const char *k;
    json_t *v;
    json_object_foreach(c, k, v) keys[i++] = k;
    qsort(keys, n, sizeof *keys, cmp_str);
    for (i = 0; i < n; i++) json_object_set(out, keys[i], json_object_get(c, keys[i]));
    free(keys);
    return out;
}

int dt_adapter_save(dt_ctx *ctx, const dt_adapter *a, const dt_llama *m, const char *dir) {
    if (mkdir(dir, 0777) && errno != EEXIST) return dt_fail(ctx, DT_EIO, "%s: cannot create folder: %s", dir, strerror(errno));
    json_t *c = json_object();
    if (!c) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    json_object_set_new(c, "peft_type", json_string(a->method->peft_type));
    a->method->to_json(a, &m->cfg, c);
    json_object_set_new(c, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(c, "base_model_name_or_path", json_string(a->base_model));
    json_object_set_new(c, "inference_mode", json_true());
    json_object_set_new(c, "revision", json_null());
    // PEFT writes sorted keys with an indent of 2 (json.dumps(indent=2, sort_keys=True)). Reals come
    // from floats, so 7 significant digits print 0.05 as 0.05.
    json_t *sorted = sorted_copy(c);
    json_decref(c);
    char *text = sorted ? json_dumps(sorted, JSON_INDENT(2) | JSON_REAL_PRECISION(7)) : NULL;
    json_decref(sorted);
    if (!text) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    int rc = dt_atomic_write(ctx, path, text, strlen(text));
    free(text);
    if (rc) return rc;
    dt_st_writer *w;
    if ((rc = dt_st_writer_init(ctx, &w))) return rc;
    rc = dt_st_writer_set_metadata(ctx, w, "format", "pt");
    for (int i = 0; i < a->n_tensors && !rc; i++)
        rc = dt_st_writer_add(ctx, w, a->names[i], DT_F32, a->tensors[i].ndim, a->tensors[i].shape, a->tensors[i].data);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!rc) rc = dt_st_writer_write(ctx, w, path);
    dt_st_writer_free(w);
    return rc;
}
