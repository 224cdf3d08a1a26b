// Prefix tuning (Li & Liang 2021; PEFT's PREFIX_TUNING without prefix_projection): per layer, n trained
// key and value vectors that every token attends to before the sequence. PEFT keeps them in one tensor,
// prompt_embeddings (n, L*2*td) with td = KV*hd (the key/value width: with grouped-query attention
// PEFT's _prepare_prompt_learning_config sets token_dim = hidden / heads * KV and num_attention_heads =
// KV). get_prompt views it as (n, L*2, KV, hd): index 2l holds layer l's keys and 2l+1 its values, so
// layer l's keys are columns [2l*td, (2l+1)*td) and its values the next td, each row one virtual token,
// heads in order: exactly our (n, KV*hd) key/value layout.
//
// Where it attaches: the model's key/value prefix (dt_llama_kv_prefix, models/llama.h), each layer's
// keys and values a column slice of the tensor (dt_slice_cols). transformers receives them as
// past_key_values: used as given (no RoPE; Qwen3's k-norm is not applied either), every token attends
// to all of them, and the tokens' positions start at n. The model does the same, in training (packed
// rows: each example sees its own copy) and in generation (written into the empty KV cache).
//
// prefix_projection (PEFT's MLP reparameterisation) is not trained here. An adapter PEFT trained with it
// still holds the MLP's output in prompt_embeddings (get_prompt_embedding_to_save), which is all PEFT
// itself uses at inference, so such a file is read, evaluated and written back as it is.
//
// Merge refuses: the prefix is attention entries, not a change of any weight.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"
#include "models/safetensors.h"
#include "peft/prefix_tuning.h"

typedef struct prefix_state {
    dt_tensor *pe;          // (n, L*2*td): the adapter's one tensor
    int64_t td;             // KV*hd, the width of one layer's keys (and of its values)
    bool projection;        // prefix_projection as read
    json_t *encoder_hidden; // encoder_hidden_size as read (a reference), or NULL for ours (td)
} prefix_state;

static void prefix_free(void *p) {
    prefix_state *s = p;
    if (!s) return;
    json_decref(s->encoder_hidden);
    free(s);
}

// Layer `layer`'s keys (which 0) or values (which 1): (n, td).
static dt_tensor *prefix_kv(dt_graph *g, const void *self, const dt_llama *m, int layer, int which) {
    (void)m;
    const prefix_state *s = self;
    return dt_slice_cols(g, s->pe, (2 * (int64_t)layer + which) * s->td, s->td);
}

int dt_prefix_create(dt_ctx *ctx, const dt_llama *m, int n, uint64_t seed, const char *where, dt_adapter **out) {
    *out = NULL;
    const dt_model_config *c = &m->cfg;
    if (n <= 0 || n > DT_MAX_VIRTUAL_TOKENS)
        return dt_fail(ctx, DT_EINPUT, "%s: %d virtual tokens: expected 1 to %d", where, n, DT_MAX_VIRTUAL_TOKENS);
    const int64_t td = (int64_t)c->num_kv_heads * c->head_dim, width = (int64_t)c->num_layers * 2 * td;
    dt_adapter *a = calloc(1, sizeof *a);
    prefix_state *s = calloc(1, sizeof *s);
    char **names = calloc(1, sizeof *names);
    if (!a || !s || !names || !(names[0] = strdup("prompt_embeddings"))) {
        free(a); free(s); if (names) free(names[0]); free(names);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    a->method = &dt_method_prefix;
    a->state = s;
    int64_t shape[1][2] = {{n, width}};
    int rc = dt_adapter_alloc(ctx, a, 1, (const int64_t(*)[2])shape, (int[]){2}, names);
    if (rc) { a->names = names; a->n_tensors = 1; dt_adapter_free(a); return rc; }
    dt_rng rng = {seed};
    for (size_t e = 0; e < a->n_params; e++) a->params[e] = (float)dt_rng_normal(&rng); // nn.Embedding's N(0, 1)
    s->pe = &a->tensors[0];
    s->td = td;
    a->view.kv_prefix = (dt_llama_kv_prefix){prefix_kv, s, n};
    *out = a;
    return DT_OK;
}

// ---- adapter_config.json ----------------------------------------------------------------------------

// An integer key that, when present and not null, must equal want.
static int expect_int(dt_ctx *ctx, json_t *cfg, const char *path, const char *key, long long want, const char *what) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return DT_OK;
    if (!json_is_integer(v) || json_integer_value(v) != want)
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s': expected %lld (%s)", path, key, want, what);
    return DT_OK;
}

static int prefix_from_json(dt_ctx *ctx, json_t *cfg, const char *path, const dt_llama *m, dt_adapter **out) {
    const dt_model_config *c = &m->cfg;
    const int64_t td = (int64_t)c->num_kv_heads * c->head_dim, width = (int64_t)c->num_layers * 2 * td;
    json_t *n = json_object_get(cfg, "num_virtual_tokens"), *proj = json_object_get(cfg, "prefix_projection");
    json_t *enc = json_object_get(cfg, "encoder_hidden_size");
    if (!json_is_integer(n) || json_integer_value(n) <= 0 || json_integer_value(n) > DT_MAX_VIRTUAL_TOKENS)
        return dt_fail(ctx, DT_EINPUT, "%s: key 'num_virtual_tokens': expected an integer in [1, %d]", path, DT_MAX_VIRTUAL_TOKENS);
    int rc = expect_int(ctx, cfg, path, "num_layers", c->num_layers, "the model's layers");
    if (!rc) rc = expect_int(ctx, cfg, path, "token_dim", td, "the model's key/value width, num_key_value_heads x head_dim");
    if (!rc) rc = expect_int(ctx, cfg, path, "num_attention_heads", c->num_kv_heads, "the model's num_key_value_heads, as PEFT writes for prefix tuning");
    if (!rc) rc = expect_int(ctx, cfg, path, "num_transformer_submodules", 1, "a decoder-only model; 2 is for encoder-decoder models");
    if (!rc && proj && !json_is_boolean(proj) && !json_is_null(proj))
        rc = dt_fail(ctx, DT_EINPUT, "%s: key 'prefix_projection': expected true or false", path);
    if (!rc && enc && !json_is_integer(enc) && !json_is_null(enc))
        rc = dt_fail(ctx, DT_EINPUT, "%s: key 'encoder_hidden_size': expected an integer or null", path);
    if (rc) return rc;
    // The tensor file beside the config must hold exactly this shape before anything is allocated (a
    // config naming a huge count must not cost gigabytes before the mismatch shows).
    char wpath[4200];
    size_t dl = strlen(path) >= strlen("adapter_config.json") ? strlen(path) - strlen("adapter_config.json") : 0;
    snprintf(wpath, sizeof wpath, "%.*sadapter_model.safetensors", (int)dl, path);
    dt_safetensors *st = NULL;
    if ((rc = dt_st_open(ctx, wpath, &st))) return rc;
    const dt_st_tensor *pe = dt_st_find(st, "prompt_embeddings");
    if (!pe || pe->ndim != 2 || pe->shape[0] != json_integer_value(n) || pe->shape[1] != width)
        rc = dt_fail(ctx, DT_EINPUT, "%s: tensor 'prompt_embeddings' %s; adapter_config.json and the model say (%lld, %lld) "
                     "(num_virtual_tokens, num_layers x 2 x num_key_value_heads x head_dim)", wpath,
                     pe ? "has another shape" : "is missing", (long long)json_integer_value(n), (long long)width);
    dt_st_close(st);
    if (rc) return rc;
    char where[4200];
    snprintf(where, sizeof where, "%s: key 'num_virtual_tokens'", path);
    if ((rc = dt_prefix_create(ctx, m, (int)json_integer_value(n), 0, where, out))) return rc;
    prefix_state *s = (*out)->state;
    s->projection = json_is_true(proj);
    s->encoder_hidden = enc ? json_incref(enc) : NULL;
    return DT_OK;
}

static void prefix_to_json(const dt_adapter *a, const dt_model_config *mc, json_t *c) {
    const prefix_state *s = a->state;
    // The fields PEFT 0.13.2 writes for a PrefixTuningConfig on a decoder-only model, token_dim and
    // num_attention_heads as _prepare_prompt_learning_config sets them for grouped-query attention, and
    // encoder_hidden_size defaulting to token_dim.
    json_object_set_new(c, "auto_mapping", json_null());
    json_object_set_new(c, "num_virtual_tokens", json_integer(a->view.kv_prefix.n));
    json_object_set_new(c, "token_dim", json_integer(s->td));
    json_object_set_new(c, "num_transformer_submodules", json_integer(1));
    json_object_set_new(c, "num_attention_heads", json_integer(mc->num_kv_heads));
    json_object_set_new(c, "num_layers", json_integer(mc->num_layers));
    json_object_set_new(c, "encoder_hidden_size", s->encoder_hidden ? json_incref(s->encoder_hidden) : json_integer(s->td));
    json_object_set_new(c, "prefix_projection", json_boolean(s->projection));
}

static const char *const PREFIX_KEYS[] = {"encoder_hidden_size", "prefix_projection", NULL};

const dt_method dt_method_prefix = {
    .name = "prefix_tuning",
    .peft_type = "PREFIX_TUNING",
    .keys = PREFIX_KEYS,
    .from_json = prefix_from_json,
    .to_json = prefix_to_json,
    .no_merge = "prefix tuning adds key/value entries that every token attends to; no weight of the model holds them",
    .free_state = prefix_free,
};
