// IA3 (Liu et al. 2022, PEFT's IA3): learned vectors that scale activations. A target module that is
// not a feedforward module has its output scaled, bias included: y = (x W^T + b) * l, l (out, 1). A
// feedforward module (PEFT's feedforward_modules) has its input scaled: y = (x * l) W^T, l (1, in).
// Keys "base_model.model.model.layers.N.<path>.ia3_l", initialised to ones (PEFT's init_ia3_weights).
//
// Where it attaches (models/llama.h sites, through dt_scale_cols): an output scale rewrites that
// projection's output (q/k/v after their bias, any of the seven). down_proj's input scale rewrites
// up_proj's output instead: down's input is silu(gate) * up, so (silu(gate) * up) * l =
// silu(gate) * (up * l), the same values and the same gradient for l, with no extra (N, I) tensor kept.
// Feedforward modules other than down_proj (an input scale on q/k/v/gate/up's shared normalised input or
// on the attention output) have no site and are refused.
//
// Merge: W' = diag(l) W and b' = l * b for an output scale, W' = W diag(l) for an input scale, as PEFT's
// IA3 Linear.merge. A merge weight w folds 1 + w (l - 1): w = 1 is the trained adapter, w = 0 the base.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peft/ia3.h"

typedef struct ia3_state {
    bool target[DT_MOD_COUNT], feedforward[DT_MOD_COUNT];
    dt_tensor **vec; // (L * DT_MOD_COUNT): the module's ia3_l, NULL where none
    bool *at;        // (L * DT_MOD_COUNT): which projection outputs the site rewrites
} ia3_state;

static void ia3_free_state(void *p) {
    ia3_state *s = p;
    if (!s) return;
    free(s->vec);
    free(s->at);
    free(s);
}

// The site: up's output also carries down's input scale (see the top of the file).
static dt_tensor *ia3_site(dt_graph *g, const void *self, const dt_llama *m, int layer, int mod, dt_tensor *x) {
    (void)m;
    const ia3_state *s = self;
    dt_tensor *const *v = s->vec + (size_t)layer * DT_MOD_COUNT;
    if (v[mod] && !s->feedforward[mod]) x = dt_scale_cols(g, x, v[mod], NULL);
    if (mod == DT_MOD_UP && v[DT_MOD_DOWN] && s->feedforward[DT_MOD_DOWN]) x = dt_scale_cols(g, x, v[DT_MOD_DOWN], NULL);
    return x;
}

// A message for a target/feedforward choice the site cannot apply, or NULL.
static const char *unsupported(const bool *target, const bool *ff) {
    for (int m = 0; m < DT_MOD_COUNT; m++) {
        if (ff[m] && !target[m]) return "feedforward_modules must be a subset of target_modules";
        if (ff[m] && m != DT_MOD_DOWN) return "only down_proj can be a feedforward (input-scaled) module";
    }
    return NULL;
}

int dt_ia3_create(dt_ctx *ctx, const dt_llama *m, const bool *target, const bool *ff, const char *where, dt_adapter **out) {
    *out = NULL;
    const dt_model_config *c = &m->cfg;
    const int L = c->num_layers;
    const char *why = unsupported(target, ff);
    if (why) return dt_fail(ctx, DT_EINPUT, "%s: %s", where, why);
    int per_layer = 0;
    for (int mod = 0; mod < DT_MOD_COUNT; mod++) per_layer += target[mod];
    if (!per_layer) return dt_fail(ctx, DT_EINPUT, "%s: IA3 targets no module of this model", where);
    dt_adapter *a = calloc(1, sizeof *a);
    ia3_state *s = calloc(1, sizeof *s);
    const int n = per_layer * L;
    dt_adapter_layout lo;
    int rc = dt_adapter_layout_init(ctx, &lo, n);
    if (s) {
        s->vec = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->vec);
        s->at = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->at);
    }
    if (!rc && !(a && s && s->vec && s->at)) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (a) { a->method = &dt_method_ia3; a->state = s; } else ia3_free_state(s);
    const int64_t D = c->hidden_size, q = (int64_t)c->num_heads * c->head_dim, kv = (int64_t)c->num_kv_heads * c->head_dim;
    const int64_t I = c->intermediate_size;
    const int64_t outs[DT_MOD_COUNT] = {q, kv, kv, D, I, I, D}, ins[DT_MOD_COUNT] = {D, D, D, q, D, D, I};
    char buf[256];
    for (int l = 0, i = 0; l < L && !rc; l++)
        for (int mod = 0; mod < DT_MOD_COUNT && !rc; mod++) {
            if (!target[mod]) continue;
            dt_tn_module(buf, sizeof buf, "base_model.model.", l, (dt_module)mod, ".ia3_l");
            // (out, 1) or (1, in), as PEFT's update_layer
            rc = dt_adapter_layout_set(ctx, &lo, i++, buf, 2, ff[mod] ? 1 : outs[mod], ff[mod] ? ins[mod] : 1);
        }
    if (!rc) {
        memcpy(s->target, target, sizeof s->target);
        memcpy(s->feedforward, ff, sizeof s->feedforward);
    }
    rc = dt_adapter_layout_commit(ctx, &lo, a, rc);
    if (rc) { dt_adapter_free(a); return rc; }
    for (size_t e = 0; e < a->n_params; e++) a->params[e] = 1.0f;
    for (int l = 0, i = 0; l < L; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            if (!target[mod]) continue;
            s->vec[(size_t)l * DT_MOD_COUNT + (size_t)mod] = &a->tensors[i++];
            s->at[(size_t)l * DT_MOD_COUNT + (size_t)(ff[mod] ? DT_MOD_UP : mod)] = true;
        }
    a->view.site = (dt_llama_site){ia3_site, s, s->at};
    *out = a;
    return DT_OK;
}


// ---- adapter_config.json ----------------------------------------------------------------------------

// A list of module names (or "all-linear" for target_modules) into flags.
static int modules(dt_ctx *ctx, json_t *v, const char *path, const char *key, bool *out) {
    memset(out, 0, DT_MOD_COUNT * sizeof *out);
    if (json_is_string(v) && !strcmp(json_string_value(v), "all-linear") && !strcmp(key, "target_modules")) {
        for (int i = 0; i < DT_MOD_COUNT; i++) out[i] = true;
        return DT_OK;
    }
    if (!json_is_array(v))
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s': expected a list of module names (regular expressions are not supported)", path, key);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        int mod = json_is_string(e) ? dt_module_from_name(json_string_value(e)) : -1;
        if (mod < 0)
            return dt_fail(ctx, DT_EINPUT, "%s: key '%s': '%s' is not a linear module of this model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                           path, key, json_is_string(e) ? json_string_value(e) : "?");
        out[mod] = true;
    }
    return DT_OK;
}

static int ia3_from_json(dt_ctx *ctx, json_t *cfg, const char *path, const dt_llama *m, dt_adapter **out) {
    bool target[DT_MOD_COUNT], ff[DT_MOD_COUNT];
    json_t *f = json_object_get(cfg, "feedforward_modules");
    int rc = modules(ctx, json_object_get(cfg, "target_modules"), path, "target_modules", target);
    if (!rc && f && !json_is_null(f)) rc = modules(ctx, f, path, "feedforward_modules", ff);
    else if (!rc) memset(ff, 0, sizeof ff);
    if (!rc && json_is_true(json_object_get(cfg, "fan_in_fan_out")))
        rc = dt_fail(ctx, DT_EINPUT, "%s: key 'fan_in_fan_out': true is for GPT-2 style Conv1D weights, which this model does not have", path);
    if (rc) return rc;
    char where[4200];
    snprintf(where, sizeof where, "%s: keys 'target_modules' / 'feedforward_modules'", path);
    return dt_ia3_create(ctx, m, target, ff, where, out);
}

static json_t *module_list(const bool *on) {
    json_t *l = json_array();
    // Sorted by name, as our LoRA writer does (PEFT writes its sets in set order).
    const char *names[DT_MOD_COUNT];
    int n = 0;
    for (int i = 0; i < DT_MOD_COUNT; i++)
        if (on[i]) names[n++] = dt_module_short((dt_module)i);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
        }
    for (int i = 0; i < n; i++) json_array_append_new(l, json_string(names[i]));
    return l;
}

static void ia3_to_json(const dt_adapter *a, const dt_model_config *mc, json_t *c) {
    (void)mc;
    const ia3_state *s = a->state;
    json_object_set_new(c, "auto_mapping", json_null());
    json_object_set_new(c, "target_modules", module_list(s->target));
    json_object_set_new(c, "feedforward_modules", module_list(s->feedforward));
    json_object_set_new(c, "fan_in_fan_out", json_false());
    json_object_set_new(c, "modules_to_save", json_null());
    json_object_set_new(c, "init_ia3_weights", json_true());
}

// ---- merge ------------------------------------------------------------------------------------------

// The module whose vector changes layer tensor lt, or -1.
static int module_of(const ia3_state *s, int layer, int lt) {
    int mod = lt == DT_LT_Q_BIAS ? DT_MOD_Q : lt == DT_LT_K_BIAS ? DT_MOD_K : lt == DT_LT_V_BIAS ? DT_MOD_V
            : lt == DT_FOLD_O_BIAS ? DT_MOD_O : lt;
    if (layer < 0 || mod < 0 || mod >= DT_MOD_COUNT || !s->vec[(size_t)layer * DT_MOD_COUNT + (size_t)mod]) return -1;
    if (lt != mod && s->feedforward[mod]) return -1; // an input scale leaves the bias alone
    return mod;
}

static bool ia3_folds(const dt_adapter *a, int layer, int lt) { return module_of(a->state, layer, lt) >= 0; }

static void ia3_fold_rows(const dt_adapter *a, int layer, int lt, float weight, const int64_t *src, int nb, int64_t cols,
                          float *const *rows) {
    const ia3_state *s = a->state;
    const int mod = module_of(s, layer, lt);
    const float *l = dt_f32(s->vec[(size_t)layer * DT_MOD_COUNT + (size_t)mod]);
    for (int b = 0; b < nb; b++) {
        float *w = rows[b];
        if (s->feedforward[mod]) { // W diag(l): column x scaled by l[x]
            for (int64_t x = 0; x < cols; x++) w[x] *= 1.0f + weight * (l[x] - 1.0f);
        } else {                   // diag(l) W (or the bias): row src[b] scaled by l[src[b]]
            const float f = 1.0f + weight * (l[src[b]] - 1.0f);
            for (int64_t x = 0; x < cols; x++) w[x] *= f;
        }
    }
}

static const char *const IA3_KEYS[] = {"feedforward_modules", "init_ia3_weights", NULL};

const dt_method dt_method_ia3 = {
    .name = "ia3",
    .peft_type = "IA3",
    .keys = IA3_KEYS,
    .from_json = ia3_from_json,
    .to_json = ia3_to_json,
    .folds = ia3_folds,
    .fold_rows = ia3_fold_rows,
    .scales_bias = true,
    .free_state = ia3_free_state,
};
