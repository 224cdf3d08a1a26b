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

static bool is_known(const char *k) {
    for (size_t i = 0; i < sizeof KNOWN_KEYS / sizeof KNOWN_KEYS[0]; i++)
        if (!strcmp(k, KNOWN_KEYS[i])) return true;
    return false;
}

static int parse_lora_config(dt_ctx *ctx, json_t *cfg, const char *path, const dt_llama *m, dt_lora_config *lc) {
    memset(lc, 0, sizeof *lc);
    json_t *r = json_object_get(cfg, "r"), *alpha = json_object_get(cfg, "lora_alpha");
    if (!json_is_integer(r) || json_integer_value(r) <= 0)
        return dt_fail(ctx, DT_EINPUT, "%s: key 'r': expected a positive integer", path);
    lc->r = (int)json_integer_value(r);
    lc->alpha = alpha && json_is_number(alpha) ? (float)json_number_value(alpha) : 8.0f;
    json_t *drop = json_object_get(cfg, "lora_dropout");
    lc->dropout = drop && json_is_number(drop) ? (float)json_number_value(drop) : 0.0f;
    lc->use_rslora = json_is_true(json_object_get(cfg, "use_rslora"));
    if (json_is_true(json_object_get(cfg, "use_dora")))
        return dt_fail(ctx, DT_EINPUT, "%s: key 'use_dora': DoRA adapters are not supported", path);
    // Per-module ranks and alphas; the rank each module gets is checked against the tensors when they are read.
    int rc = dt_lora_pattern_from_json(ctx, cfg, path, "rank_pattern", true, &lc->rank_pattern);
    if (!rc) rc = dt_lora_pattern_from_json(ctx, cfg, path, "alpha_pattern", false, &lc->alpha_pattern);
    if (rc) return rc;
    json_t *tm = json_object_get(cfg, "target_modules");
    if (json_is_string(tm)) {
        if (strcmp(json_string_value(tm), "all-linear"))
            return dt_fail(ctx, DT_EINPUT, "%s: key 'target_modules': regular expressions are not supported; expected a list of module names or \"all-linear\"", path);
        for (int i = 0; i < DT_MOD_COUNT; i++) lc->target[i] = true;
    } else if (json_is_array(tm)) {
        size_t i;
        json_t *v;
        json_array_foreach(tm, i, v) {
            int mod = json_is_string(v) ? dt_module_from_name(json_string_value(v)) : -1;
            if (mod < 0)
                return dt_fail(ctx, DT_EINPUT, "%s: key 'target_modules': '%s' is not a linear module of this model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                               path, json_is_string(v) ? json_string_value(v) : "?");
            lc->target[mod] = true;
        }
    } else {
        return dt_fail(ctx, DT_EINPUT, "%s: key 'target_modules': expected a list of module names", path);
    }
    json_t *lt = json_object_get(cfg, "layers_to_transform");
    if (lt && !json_is_null(lt)) {
        int L = m->cfg.num_layers;
        lc->layers = calloc((size_t)L, sizeof(bool));
        if (!lc->layers) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        json_t *one = json_is_integer(lt) ? json_pack("[O]", lt) : json_incref(lt);
        size_t i;
        json_t *v;
        int bad = !json_is_array(one);
        if (!bad) json_array_foreach(one, i, v) {
            json_int_t l = json_is_integer(v) ? json_integer_value(v) : -1;
            if (l < 0 || l >= L) { bad = 1; break; }
            lc->layers[l] = true;
        }
        json_decref(one);
        if (bad) return dt_fail(ctx, DT_EINPUT, "%s: key 'layers_to_transform': expected layer indices in [0, %d)", path, L);
    }
    return DT_OK;
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
    const char *key;
    json_t *val;
    json_object_foreach(cfg, key, val)
        if (!is_known(key)) dt_warn(ctx, "%s: ignoring unknown key '%s'", cpath, key);
    const char *type = json_string_value(json_object_get(cfg, "peft_type"));
    if (!type) { rc = dt_fail(ctx, DT_EINPUT, "%s: key 'peft_type': missing", cpath); goto done; }
    if (!strcmp(type, "LORA")) {
        dt_lora_config lc;
        rc = parse_lora_config(ctx, cfg, cpath, m, &lc);
        if (!rc) rc = dt_lora_create(ctx, m, &lc, 0, &a);
        dt_lora_config_free(&lc);
    } else if (!strcmp(type, "PROMPT_TUNING")) {
        json_t *n = json_object_get(cfg, "num_virtual_tokens"), *td = json_object_get(cfg, "token_dim");
        if (!json_is_integer(n) || json_integer_value(n) <= 0 || json_integer_value(n) > DT_MAX_VIRTUAL_TOKENS) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: key 'num_virtual_tokens': expected an integer in [1, %d]", cpath, DT_MAX_VIRTUAL_TOKENS);
            goto done;
        }
        // The tensor file must hold exactly these rows before the adapter is allocated: a config naming a
        // huge count must not cost gigabytes before the mismatch is noticed.
        if ((rc = dt_st_open(ctx, wpath, &st))) goto done;
        const dt_st_tensor *pe = dt_st_find(st, "prompt_embeddings");
        if (!pe || pe->ndim != 2 || pe->shape[0] != json_integer_value(n) || pe->shape[1] != m->cfg.hidden_size) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor 'prompt_embeddings' %s; adapter_config.json says (%lld, %d)", wpath,
                         pe ? "has another shape" : "is missing", (long long)json_integer_value(n), m->cfg.hidden_size);
            goto done;
        }
        if (td && json_is_integer(td) && json_integer_value(td) != m->cfg.hidden_size) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: key 'token_dim': %lld does not match the model's hidden size %d", cpath,
                         (long long)json_integer_value(td), m->cfg.hidden_size);
            goto done;
        }
        dt_prompt_config pc = {(int)json_integer_value(n), DT_PROMPT_INIT_RANDOM, NULL};
        const char *init = json_string_value(json_object_get(cfg, "prompt_tuning_init"));
        if (init && !strcmp(init, "TEXT")) pc.init = DT_PROMPT_INIT_TEXT;
        if (init && !strcmp(init, "SAMPLE_VOCAB")) pc.init = DT_PROMPT_INIT_VOCAB;
        pc.init_text = (char *)json_string_value(json_object_get(cfg, "prompt_tuning_init_text"));
        dt_prompt_config tmp = pc;
        tmp.init = DT_PROMPT_INIT_RANDOM; // the values come from the file below
        rc = dt_prompt_create(ctx, m, &tmp, 0, NULL, 0, &a);
        if (!rc) a->prompt.init = pc.init;
    } else {
        rc = dt_fail(ctx, DT_EINPUT, "%s: key 'peft_type': '%s' is not supported (LORA, PROMPT_TUNING)", cpath, type);
    }
    if (rc) goto done;
    const char *base = json_string_value(json_object_get(cfg, "base_model_name_or_path"));
    snprintf(a->base_model, sizeof a->base_model, "%s", base ? base : "");
    const char *tok = json_string_value(json_object_get(cfg, "tokenizer_name_or_path"));
    snprintf(a->tokenizer, sizeof a->tokenizer, "%s", tok ? tok : "");
    if (!st && (rc = dt_st_open(ctx, wpath, &st))) goto done;
    for (int i = 0; i < a->n_tensors && !rc; i++)
        rc = dt_st_read_f32(ctx, st, a->names[i], dt_f32(&a->tensors[i]), a->tensors[i].ndim, a->tensors[i].shape);
    // Every tensor of the file must belong to this adapter: an extra one means the config and the
    // weights disagree (another model, other layers or modules).
    for (size_t i = 0; i < dt_st_count(st) && !rc; i++)
        if (!dt_adapter_find(a, dt_st_at(st, i)->name))
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' does not fit the adapter described by adapter_config.json and this base model",
                         wpath, dt_st_at(st, i)->name);
done:
    dt_st_close(st);
    json_decref(cfg);
    if (rc) { dt_adapter_free(a); return rc; }
    *out = a;
    return DT_OK;
}

static json_t *lora_config_json(const dt_adapter *a, const dt_llama *m) {
    json_t *c = json_object();
    json_t *targets = json_array();
    for (int i = 0; i < DT_MOD_COUNT; i++)
        if (a->lora.target[i]) json_array_append_new(targets, json_string(dt_module_short((dt_module)i)));
    json_t *layers = json_null();
    if (a->lora.layers) {
        layers = json_array();
        for (int l = 0; l < m->cfg.num_layers; l++)
            if (a->lora.layers[l]) json_array_append_new(layers, json_integer(l));
    }
    json_object_set_new(c, "peft_type", json_string("LORA"));
    json_object_set_new(c, "r", json_integer(a->lora.r));
    // PEFT configs carry alpha as an int when it is one (lora_alpha: 16).
    float al = a->lora.alpha;
    json_object_set_new(c, "lora_alpha", al == (float)(int)al ? json_integer((int)al) : json_real(al));
    json_object_set_new(c, "lora_dropout", json_real(a->lora.dropout));
    json_object_set_new(c, "target_modules", targets);
    json_object_set_new(c, "layers_to_transform", layers);
    json_object_set_new(c, "use_rslora", json_boolean(a->lora.use_rslora));
    json_object_set_new(c, "use_dora", json_false());
    json_object_set_new(c, "bias", json_string("none"));
    json_object_set_new(c, "fan_in_fan_out", json_false());
    json_object_set_new(c, "modules_to_save", json_null());
    json_object_set_new(c, "init_lora_weights", json_true());
    // As read (empty for our own adapters): same keys, values and order, so PEFT picks the same key per module.
    json_object_set_new(c, "rank_pattern", dt_lora_pattern_to_json(&a->lora.rank_pattern));
    json_object_set_new(c, "alpha_pattern", dt_lora_pattern_to_json(&a->lora.alpha_pattern));
    return c;
}

static json_t *prompt_config_json(const dt_adapter *a, const dt_llama *m) {
    static const char *INIT[] = {"RANDOM", "SAMPLE_VOCAB", "TEXT"};
    json_t *c = json_object();
    json_object_set_new(c, "peft_type", json_string("PROMPT_TUNING"));
    json_object_set_new(c, "num_virtual_tokens", json_integer(a->prompt.num_virtual_tokens));
    json_object_set_new(c, "token_dim", json_integer(m->cfg.hidden_size));
    json_object_set_new(c, "num_transformer_submodules", json_integer(1));
    json_object_set_new(c, "num_attention_heads", json_integer(m->cfg.num_heads));
    json_object_set_new(c, "num_layers", json_integer(m->cfg.num_layers));
    json_object_set_new(c, "prompt_tuning_init", json_string(INIT[a->prompt.init]));
    json_object_set_new(c, "prompt_tuning_init_text",
                        a->prompt.init == DT_PROMPT_INIT_TEXT && a->prompt.init_text ? json_string(a->prompt.init_text) : json_null());
    // PEFT refuses a TEXT init without a tokenizer to load (PromptTuningConfig.__post_init__).
    const char *tok = a->tokenizer[0] ? a->tokenizer : a->base_model;
    json_object_set_new(c, "tokenizer_name_or_path", a->prompt.init == DT_PROMPT_INIT_TEXT ? json_string(tok) : json_null());
    return c;
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
    json_t *c = a->method == DT_PEFT_LORA ? lora_config_json(a, m) : prompt_config_json(a, m);
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
