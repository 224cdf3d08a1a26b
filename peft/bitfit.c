// BitFit (Ben Zaken et al. 2022): only biases are trained. Each target module gets a trained vector
// delta (out) added to its output, y = x W^T + b + delta: for a module that has a bias (Qwen2's q/k/v)
// that is training its bias, b + delta; for one that has none it is a new bias, zero at the start (so the
// adapted model starts equal to the base). delta starts at zero in both cases.
//
// File format (ours: PEFT has no BitFit). adapter_config.json: peft_type "BITFIT", target_modules (a
// list of module names, or "all-linear"), task_type, base_model_name_or_path. adapter_model.safetensors:
// one F32 tensor (out) per target module and layer, "base_model.model.model.layers.N.<path>.bias", e.g.
// base_model.model.model.layers.0.self_attn.q_proj.bias, holding delta: the change to the base's bias
// (the bias itself where the base has none). recipes/README.md documents it for users.
//
// Where it attaches: a site on each target module's output (models/llama.h), after any bias the model
// adds itself, through the add_cols op below (an ordinary autograd op built from backend calls).
//
// Merge: delta is added to the bias (folds DT_LT_{Q,K,V}_BIAS and DT_FOLD_O_BIAS); a bias the base lacks
// is created by the merge (peft/merge_hf.c), which sets the config flag transformers reads. MLP biases
// have no such flag in transformers 4.40 (mlp_bias came in 4.41) and deltatune's loader refuses
// mlp_bias, so an adapter on gate/up/down_proj is trained and evaluated but not merged; o_proj on Qwen2
// neither (Qwen2's o_proj never has a bias). llama.cpp's LoRA adapters carry no biases: no GGUF export
// (llama.cpp's adapter loader, release v0.5.0 as node-llama-cpp 3.22.1 ships it, refuses a GGUF adapter
// holding "blk.0.attn_q.bias": "unexpected suffix"; only .lora_a/.lora_b pairs are read).
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peft/bitfit.h"

typedef struct bitfit_state {
    bool target[DT_MOD_COUNT];
    dt_tensor **delta; // (L * DT_MOD_COUNT): the module's delta (out), NULL where none
    bool *at;          // (L * DT_MOD_COUNT): which projection outputs the site rewrites
} bitfit_state;

static void bitfit_free_state(void *p) {
    bitfit_state *s = p;
    if (!s) return;
    free(s->delta);
    free(s->at);
    free(s);
}

// ---- the op: y (..., D) = x + b (D) on every row -------------------------------------------------------

typedef struct { dt_tensor *x, *b; } add_cols_saved;

static void add_cols_bwd(dt_graph *g, dt_node *n) {
    const add_cols_saved *s = n->saved;
    const dt_backend *be = g->be;
    const int64_t D = dt_numel(s->b), N = dt_numel(s->x) / D;
    const float *dy = n->out->grad; // (N, D)
    bool fresh;
    if (s->b->requires_grad) { // db (D) += sum over rows of dy
        float *db = dt_graph_grad(g, s->b, &fresh);
        if (!db) return;
        for (int64_t r = 0; r < N; r++) be->axpy(be, db, !(fresh && r == 0), 1.0f, dy + r * D, D);
    }
    if (s->x->requires_grad) { // dx += dy
        float *dx = dt_graph_grad(g, s->x, &fresh);
        if (!dx) return;
        be->axpy(be, dx, !fresh, 1.0f, dy, N * D);
    }
}

static dt_tensor *add_cols(dt_graph *g, dt_tensor *x, dt_tensor *b) {
    if (!x || g->failed) return NULL;
    const int64_t D = dt_numel(b), N = dt_numel(x) / D;
    dt_tensor *y = dt_graph_tensor(g, x->ndim, x->shape); // (..., D)
    if (!y) return NULL;
    g->be->axpy(g->be, dt_f32(y), false, 1.0f, dt_f32(x), N * D);
    g->be->add_bias(g->be, dt_f32(y), dt_f32(b), N, D);
    if (g->grad_enabled && (x->requires_grad || b->requires_grad)) {
        dt_node *n = dt_graph_record(g, add_cols_bwd, y, sizeof(add_cols_saved));
        if (!n) return NULL;
        *(add_cols_saved *)n->saved = (add_cols_saved){x, b};
    }
    return y;
}

static dt_tensor *bitfit_site(dt_graph *g, const void *self, const dt_llama *m, int layer, int mod, dt_tensor *x) {
    (void)m;
    const bitfit_state *s = self;
    return add_cols(g, x, s->delta[(size_t)layer * DT_MOD_COUNT + (size_t)mod]);
}

int dt_bitfit_create(dt_ctx *ctx, const dt_llama *m, const bool *target, const char *where, dt_adapter **out) {
    *out = NULL;
    const dt_model_config *c = &m->cfg;
    const int L = c->num_layers;
    int per_layer = 0;
    for (int mod = 0; mod < DT_MOD_COUNT; mod++) per_layer += target[mod];
    if (!per_layer || L <= 0) return dt_fail(ctx, DT_EINPUT, "%s: BitFit targets no module of this model", where);
    dt_adapter *a = calloc(1, sizeof *a);
    bitfit_state *s = calloc(1, sizeof *s);
    const int n = per_layer * L;
    dt_adapter_layout lo;
    int rc = dt_adapter_layout_init(ctx, &lo, n);
    if (s) {
        s->delta = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->delta);
        s->at = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->at);
    }
    if (!rc && !(a && s && s->delta && s->at)) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (a) { a->method = &dt_method_bitfit; a->state = s; } else bitfit_free_state(s);
    const int64_t D = c->hidden_size, q = (int64_t)c->num_heads * c->head_dim, kv = (int64_t)c->num_kv_heads * c->head_dim;
    const int64_t I = c->intermediate_size;
    const int64_t outs[DT_MOD_COUNT] = {q, kv, kv, D, I, I, D};
    char buf[256];
    for (int l = 0, i = 0; l < L && !rc; l++)
        for (int mod = 0; mod < DT_MOD_COUNT && !rc; mod++) {
            if (!target[mod]) continue;
            dt_tn_module(buf, sizeof buf, "base_model.model.", l, (dt_module)mod, ".bias");
            rc = dt_adapter_layout_set(ctx, &lo, i++, buf, 1, outs[mod], 1); // delta (out)
        }
    if (!rc) memcpy(s->target, target, sizeof s->target);
    rc = dt_adapter_layout_commit(ctx, &lo, a, rc);
    if (rc) { dt_adapter_free(a); return rc; }
    // The parameter block is calloc'd: every delta starts at zero.
    for (int l = 0, i = 0; l < L; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            if (!target[mod]) continue;
            s->delta[(size_t)l * DT_MOD_COUNT + (size_t)mod] = &a->tensors[i++];
            s->at[(size_t)l * DT_MOD_COUNT + (size_t)mod] = true;
        }
    a->view.site = (dt_llama_site){bitfit_site, s, s->at};
    *out = a;
    return DT_OK;
}

// ---- adapter_config.json ----------------------------------------------------------------------------

static int bitfit_from_json(dt_ctx *ctx, json_t *cfg, const char *path, const dt_llama *m, dt_adapter **out) {
    bool target[DT_MOD_COUNT] = {false};
    json_t *v = json_object_get(cfg, "target_modules");
    if (json_is_string(v) && !strcmp(json_string_value(v), "all-linear")) {
        for (int i = 0; i < DT_MOD_COUNT; i++) target[i] = true;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            int mod = json_is_string(e) ? dt_module_from_name(json_string_value(e)) : -1;
            if (mod < 0)
                return dt_fail(ctx, DT_EINPUT, "%s: key 'target_modules': '%s' is not a linear module of this model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                               path, json_is_string(e) ? json_string_value(e) : "?");
            target[mod] = true;
        }
    } else {
        return dt_fail(ctx, DT_EINPUT, "%s: key 'target_modules': expected a list of module names or \"all-linear\"", path);
    }
    char where[4200];
    snprintf(where, sizeof where, "%s: key 'target_modules'", path);
    return dt_bitfit_create(ctx, m, target, where, out);
}

static void bitfit_to_json(const dt_adapter *a, const dt_model_config *mc, json_t *c) {
    (void)mc;
    const bitfit_state *s = a->state;
    json_t *l = json_array();
    for (int i = 0; i < DT_MOD_COUNT; i++) // module order, as our LoRA writer does
        if (s->target[i]) json_array_append_new(l, json_string(dt_module_short((dt_module)i)));
    json_object_set_new(c, "target_modules", l);
}

// ---- merge ------------------------------------------------------------------------------------------

// The module whose delta changes tensor lt of this layer (a bias), or -1.
static int module_of(const bitfit_state *s, int layer, int lt) {
    const int mod = lt == DT_LT_Q_BIAS ? DT_MOD_Q : lt == DT_LT_K_BIAS ? DT_MOD_K : lt == DT_LT_V_BIAS ? DT_MOD_V
                  : lt == DT_FOLD_O_BIAS ? DT_MOD_O : -1;
    return mod >= 0 && layer >= 0 && s->delta[(size_t)layer * DT_MOD_COUNT + (size_t)mod] ? mod : -1;
}

static bool bitfit_folds(const dt_adapter *a, int layer, int lt) { return module_of(a->state, layer, lt) >= 0; }

static void bitfit_fold_rows(const dt_adapter *a, int layer, int lt, float weight, const int64_t *src, int nb, int64_t cols,
                             float *const *rows) {
    (void)cols; // a bias: one value per row
    const bitfit_state *s = a->state;
    const float *d = dt_f32(s->delta[(size_t)layer * DT_MOD_COUNT + (size_t)module_of(s, layer, lt)]);
    for (int b = 0; b < nb; b++) rows[b][0] += weight * d[src[b]];
}

// What transformers 4.40 and deltatune's loader can hold (see the top of the file).
static int bitfit_merge_check(dt_ctx *ctx, const dt_adapter *a, const dt_model_config *c, const char *dir) {
    const bitfit_state *s = a->state;
    for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
        if (!s->target[mod]) continue;
        const char *name = dt_module_short((dt_module)mod);
        if (mod >= DT_MOD_GATE)
            return dt_fail(ctx, DT_EINPUT, "%s: a BitFit bias on %s cannot be merged: transformers 4.40's Llama has no "
                           "mlp_bias (4.41 added it) and deltatune does not load MLP biases; use the adapter unmerged, or "
                           "train BitFit on q/k/v/o_proj only", dir, name);
        if (mod == DT_MOD_O && c->arch == DT_ARCH_QWEN2)
            return dt_fail(ctx, DT_EINPUT, "%s: a BitFit bias on o_proj cannot be merged into a Qwen2 model: Qwen2's "
                           "o_proj has no bias in transformers", dir);
        if (!c->attention_bias && c->arch != DT_ARCH_LLAMA && c->arch != DT_ARCH_QWEN3)
            return dt_fail(ctx, DT_EINPUT, "%s: a BitFit bias on %s cannot be merged into a %s model: transformers has no "
                           "attention_bias setting for it", dir, name, c->arch_name);
    }
    return DT_OK;
}

const dt_method dt_method_bitfit = {
    .name = "bitfit",
    .peft_type = "BITFIT",
    .from_json = bitfit_from_json,
    .to_json = bitfit_to_json,
    .folds = bitfit_folds,
    .fold_rows = bitfit_fold_rows,
    .merge_check = bitfit_merge_check,
    .free_state = bitfit_free_state,
};
