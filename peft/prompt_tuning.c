// Prompt tuning: n virtual token embeddings (n, D) prepended to every row's input embeddings.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "autograd/dtype.h"
#include "autograd/rng.h"
#include "models/safetensors.h"
#include "peft/adapter.h"

int dt_prompt_create(dt_ctx *ctx, const dt_llama *m, const dt_prompt_config *cfg, uint64_t seed,
                     const int32_t *text_ids, int n_text_ids, dt_adapter **out) {
    *out = NULL;
    const int64_t n = cfg->num_virtual_tokens, D = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (n <= 0) return dt_fail(ctx, DT_EINPUT, "num_virtual_tokens must be positive, got %lld", (long long)n);
    if (cfg->init == DT_PROMPT_INIT_TEXT && n_text_ids <= 0)
        return dt_fail(ctx, DT_EINPUT, "prompt tuning init 'text' needs a non-empty init_text");
    dt_adapter *a = calloc(1, sizeof *a);
    char **names = calloc(1, sizeof *names);
    if (!a || !names || !(names[0] = strdup("prompt_embeddings"))) {
        free(a); free(names); return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    a->method = &dt_method_prompt;
    a->prompt = *cfg;
    a->prompt.init_text = cfg->init_text ? strdup(cfg->init_text) : NULL;
    int64_t shape[1][2] = {{n, D}};
    int rc = dt_adapter_alloc(ctx, a, 1, (const int64_t(*)[2])shape, (int[]){2}, names);
    if (rc) { dt_adapter_free(a); return rc; }
    float *P = a->params; // (n, D)
    dt_rng rng = {seed};
    float *row = malloc((size_t)D * sizeof(float));
    if (!row) { dt_adapter_free(a); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    for (int64_t i = 0; i < n; i++) {
        if (cfg->init == DT_PROMPT_INIT_RANDOM) {
            for (int64_t j = 0; j < D; j++) P[i * D + j] = (float)dt_rng_normal(&rng);
            continue;
        }
        // PEFT repeats the text's ids until n and cuts the rest.
        int64_t id = cfg->init == DT_PROMPT_INIT_VOCAB ? (int64_t)dt_rng_below(&rng, (uint64_t)V) : text_ids[i % n_text_ids];
        if (id < 0 || id >= V) { free(row); dt_adapter_free(a); return dt_fail(ctx, DT_EINPUT, "init token id %lld outside the vocabulary", (long long)id); }
        if (m->embed.device == DT_DEV_CPU) dt_tensor_row_f32(&m->embed, id, row); // any storage type
        else m->be->download(m->be, row, dt_f32(&m->embed) + id * D, (size_t)D * sizeof(float)); // f32 on devices
        memcpy(P + i * D, row, (size_t)D * sizeof(float));
    }
    free(row);
    a->view.prompt = &a->tensors[0];
    *out = a;
    return DT_OK;
}

// ---- adapter_config.json ----------------------------------------------------------------------------

static int prompt_from_json(dt_ctx *ctx, json_t *cfg, const char *path, const dt_llama *m, dt_adapter **out) {
    json_t *n = json_object_get(cfg, "num_virtual_tokens"), *td = json_object_get(cfg, "token_dim");
    if (!json_is_integer(n) || json_integer_value(n) <= 0 || json_integer_value(n) > DT_MAX_VIRTUAL_TOKENS)
        return dt_fail(ctx, DT_EINPUT, "%s: key 'num_virtual_tokens': expected an integer in [1, %d]", path, DT_MAX_VIRTUAL_TOKENS);
    // The tensor file beside the config must hold exactly these rows before the adapter is allocated: a
    // config naming a huge count must not cost gigabytes before the mismatch is noticed.
    char wpath[4200];
    size_t dl = strlen(path) >= strlen("adapter_config.json") ? strlen(path) - strlen("adapter_config.json") : 0;
    snprintf(wpath, sizeof wpath, "%.*sadapter_model.safetensors", (int)dl, path);
    dt_safetensors *st = NULL;
    int rc = dt_st_open(ctx, wpath, &st);
    if (rc) return rc;
    const dt_st_tensor *pe = dt_st_find(st, "prompt_embeddings");
    if (!pe || pe->ndim != 2 || pe->shape[0] != json_integer_value(n) || pe->shape[1] != m->cfg.hidden_size)
        rc = dt_fail(ctx, DT_EINPUT, "%s: tensor 'prompt_embeddings' %s; adapter_config.json says (%lld, %d)", wpath,
                     pe ? "has another shape" : "is missing", (long long)json_integer_value(n), m->cfg.hidden_size);
    dt_st_close(st);
    if (rc) return rc;
    if (td && json_is_integer(td) && json_integer_value(td) != m->cfg.hidden_size)
        return dt_fail(ctx, DT_EINPUT, "%s: key 'token_dim': %lld does not match the model's hidden size %d", path,
                       (long long)json_integer_value(td), m->cfg.hidden_size);
    dt_prompt_config pc = {(int)json_integer_value(n), DT_PROMPT_INIT_RANDOM, NULL};
    const char *init = json_string_value(json_object_get(cfg, "prompt_tuning_init"));
    if (init && !strcmp(init, "TEXT")) pc.init = DT_PROMPT_INIT_TEXT;
    if (init && !strcmp(init, "SAMPLE_VOCAB")) pc.init = DT_PROMPT_INIT_VOCAB;
    pc.init_text = (char *)json_string_value(json_object_get(cfg, "prompt_tuning_init_text"));
    dt_prompt_config tmp = pc;
    tmp.init = DT_PROMPT_INIT_RANDOM; // the values come from the file
    rc = dt_prompt_create(ctx, m, &tmp, 0, NULL, 0, out);
    if (!rc) (*out)->prompt.init = pc.init;
    return rc;
}

static void prompt_to_json(const dt_adapter *a, const dt_model_config *mc, json_t *c) {
    static const char *INIT[] = {"RANDOM", "SAMPLE_VOCAB", "TEXT"};
    json_object_set_new(c, "num_virtual_tokens", json_integer(a->prompt.num_virtual_tokens));
    json_object_set_new(c, "token_dim", json_integer(mc->hidden_size));
    json_object_set_new(c, "num_transformer_submodules", json_integer(1));
    json_object_set_new(c, "num_attention_heads", json_integer(mc->num_heads));
    json_object_set_new(c, "num_layers", json_integer(mc->num_layers));
    json_object_set_new(c, "prompt_tuning_init", json_string(INIT[a->prompt.init]));
    json_object_set_new(c, "prompt_tuning_init_text",
                        a->prompt.init == DT_PROMPT_INIT_TEXT && a->prompt.init_text ? json_string(a->prompt.init_text) : json_null());
    // PEFT refuses a TEXT init without a tokenizer to load (PromptTuningConfig.__post_init__).
    const char *tok = a->tokenizer[0] ? a->tokenizer : a->base_model;
    json_object_set_new(c, "tokenizer_name_or_path", a->prompt.init == DT_PROMPT_INIT_TEXT ? json_string(tok) : json_null());
}


const dt_method dt_method_prompt = {
    .name = "prompt_tuning",
    .peft_type = "PROMPT_TUNING",
    .from_json = prompt_from_json,
    .to_json = prompt_to_json,
    .no_merge = "prompt tuning adds virtual tokens in front of the input; no weight of the model holds them",
};
