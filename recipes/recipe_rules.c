// Rules between keys, checked after every key has its own valid value, and the defaults that depend
// on other keys (recipes/README.md, "Rules between keys").
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "autograd/dtype_choice.h"
#include "models/model_files.h"
#include "recipes/recipe_internal.h"

static int idx(const char *path) { return dt_rkey_find(path); }

// The value node of a key given with a real value (not null, not an empty list), or NULL.
static const dt_ynode *given(const dt_rload *L, const char *path) {
    const dt_ynode *v = L->val_at[idx(path)];
    if (!v || dt_ynode_is_null(v) || (v->kind == DT_YSEQ && !v->n)) return NULL;
    return v;
}

static void where(const dt_ynode *n, char *buf, size_t size) {
    if (n->from_override) snprintf(buf, size, "command line override '%s'", n->origin);
    else snprintf(buf, size, "%s:%d:%d", n->origin, n->line, n->col);
}

// Overrides come after the file, and within the file the later line is the one to blame.
static bool later(const dt_ynode *a, const dt_ynode *b) {
    if (a->from_override != b->from_override) return a->from_override;
    return a->line > b->line || (a->line == b->line && a->col > b->col);
}

static int exclusive(dt_rload *L, const char *a, const char *b) {
    const dt_ynode *va = given(L, a), *vb = given(L, b);
    if (!va || !vb) return DT_OK;
    bool b_last = later(vb, va);
    char first[1024];
    where(b_last ? va : vb, first, sizeof first);
    return dt_yfail(L->ctx, b_last ? vb : va, "%s: cannot be combined with %s (given at %s); give only one",
                    b_last ? b : a, b_last ? a : b, first);
}

// Keys that belong to another method (method >= 0: keys not for that dt_method_kind) or the other
// optimizer (method < 0: keys with flag): one message naming all of them.
static int wrong_variant(dt_rload *L, int method, unsigned flag, const char *selector, const char *selected) {
    char names[1024];
    size_t w = 0;
    const dt_ynode *first = NULL;
    names[0] = 0;
    for (int i = 0; i < DT_RECIPE_NKEYS; i++) {
        bool wrong = method >= 0 ? !dt_rkey_for_method(&dt_recipe_keys[i], method) : (dt_recipe_keys[i].flags & flag);
        if (!wrong || !L->val_at[i]) continue;
        if (!first) first = L->val_at[i];
        if (w < sizeof names)
            w += (size_t)snprintf(names + w, sizeof names - w, "%s%s", w ? ", " : "", dt_recipe_keys[i].path);
    }
    if (!first) return DT_OK;
    return dt_yfail(L->ctx, first, "%s: not used with %s: %s; remove %s", names, selector, selected,
                    strchr(names, ',') ? "them" : "it");
}

// A list of module names, each strdup'd, into an empty list.
static int set_modules(dt_rload *L, dt_strlist *l, int n, const char *const *names) {
    if (n && !(l->items = calloc((size_t)n, sizeof *l->items))) return dt_fail(L->ctx, DT_ENOMEM, "out of memory while reading a recipe");
    for (l->n = 0; l->n < n; l->n++)
        if (!(l->items[l->n] = strdup(names[l->n]))) return dt_fail(L->ctx, DT_ENOMEM, "out of memory while reading a recipe");
    return DT_OK;
}

// The defaults of the module lists, which depend on the method: LoRA [q_proj, v_proj]; IA3 PEFT's
// defaults for Llama, [k_proj, v_proj, down_proj], with down_proj (when targeted) as its feedforward
// module.
static int method_modules(dt_rload *L) {
    dt_recipe *r = L->r;
    int rc = DT_OK;
    if (!L->val_at[idx("method.target_modules")] && r->method.name == DT_METHOD_LORA)
        rc = set_modules(L, &r->method.target_modules, 2, (const char *const[]){"q_proj", "v_proj"});
    // BitFit: q/k/v_proj, the biases a merge can write for every architecture transformers 4.40 loads.
    if (!rc && !L->val_at[idx("method.target_modules")] && r->method.name == DT_METHOD_BITFIT)
        rc = set_modules(L, &r->method.target_modules, 3, (const char *const[]){"q_proj", "k_proj", "v_proj"});
    if (r->method.name != DT_METHOD_IA3) return rc;
    if (!rc && !L->val_at[idx("method.target_modules")])
        rc = set_modules(L, &r->method.target_modules, 3, (const char *const[]){"k_proj", "v_proj", "down_proj"});
    bool down = r->method.target_all_linear;
    for (int i = 0; i < r->method.target_modules.n; i++) down |= !strcmp(r->method.target_modules.items[i], "down_proj");
    if (!rc && !L->val_at[idx("method.feedforward_modules")] && down)
        rc = set_modules(L, &r->method.feedforward_modules, 1, (const char *const[]){"down_proj"});
    // PEFT's IA3Config: feedforward_modules must be a subset of target_modules.
    for (int i = 0; !rc && !r->method.target_all_linear && i < r->method.feedforward_modules.n; i++) {
        const char *f = r->method.feedforward_modules.items[i];
        bool in = false;
        for (int j = 0; j < r->method.target_modules.n; j++) in |= !strcmp(r->method.target_modules.items[j], f);
        if (!in)
            rc = dt_yfail(L->ctx, L->val_at[idx("method.feedforward_modules")],
                          "method.feedforward_modules: '%s' is not in method.target_modules; feedforward modules are "
                          "target modules scaled on their input", f);
    }
    return rc;
}

int dt_rapply_rules(dt_rload *L) {
    dt_recipe *r = L->r;
    int rc;
    if ((rc = wrong_variant(L, (int)r->method.name, 0, "method.name", dt_method_kind_name(r->method.name))))
        return rc;
    bool adamw = r->train.optimizer.name == DT_OPTIM_ADAMW;
    if ((rc = wrong_variant(L, -1, adamw ? DT_RF_SGD : DT_RF_ADAMW, "train.optimizer.name",
                            dt_optim_kind_name(r->train.optimizer.name))))
        return rc;
    if ((rc = exclusive(L, "data.val", "data.val_split"))) return rc;
    if ((rc = exclusive(L, "train.epochs", "train.max_steps"))) return rc;
    if ((rc = exclusive(L, "train.lr_scheduler.warmup_steps", "train.lr_scheduler.warmup_ratio"))) return rc;

    if ((rc = method_modules(L))) return rc;
    // LoRA on the embedding or the head: PEFT adapts them only without layers_to_transform, and not with DoRA.
    bool outer = false;
    for (int i = 0; r->method.name == DT_METHOD_LORA && i < r->method.target_modules.n; i++)
        outer |= !strcmp(r->method.target_modules.items[i], "embed_tokens") || !strcmp(r->method.target_modules.items[i], "lm_head");
    if (outer && given(L, "method.layers_to_transform"))
        return dt_yfail(L->ctx, given(L, "method.layers_to_transform"), "method.layers_to_transform: cannot be combined with "
                        "embed_tokens or lm_head in method.target_modules (PEFT then adapts only modules inside the chosen layers)");
    if (outer && r->method.use_dora)
        return dt_yfail(L->ctx, given(L, "method.use_dora") ? given(L, "method.use_dora") : L->val_at[idx("method.name")],
                        "method.use_dora: DoRA on embed_tokens or lm_head (method.target_modules) is not supported");
    if (r->method.name == DT_METHOD_PROMPT_TUNING) {
        const dt_ynode *text = given(L, "method.init_text"), *init = L->val_at[idx("method.init")];
        if (r->method.init == DT_PT_INIT_TEXT && !text)
            return dt_yfail(L->ctx, init, "method.init: text needs method.init_text, the text whose tokens "
                            "initialise the virtual tokens");
        if (r->method.init != DT_PT_INIT_TEXT && text)
            return dt_yfail(L->ctx, text, "method.init_text: only used with method.init: text, but method.init "
                            "is %s", dt_pt_init_name(r->method.init));
    }
    if (r->method.name == DT_METHOD_PREFIX_TUNING) {
        if (r->method.prefix_projection)
            return dt_yfail(L->ctx, given(L, "method.prefix_projection"),
                            "method.prefix_projection: true (PEFT's MLP reparameterisation of the prefix) is not "
                            "implemented; the prefix is trained directly (false)");
        // The prefix holds positions 0..n-1 ahead of every example: n at or past the examples' own length
        // leaves them less room than the virtual tokens take.
        if (r->method.num_virtual_tokens >= r->data.max_seq_len) {
            const dt_ynode *at = given(L, "method.num_virtual_tokens");
            return dt_yfail(L->ctx, at ? at : L->val_at[idx("method.name")],
                            "method.num_virtual_tokens: %d virtual tokens is not below data.max_seq_len (%d); the "
                            "prefix must be shorter than the sequences it precedes", r->method.num_virtual_tokens,
                            r->data.max_seq_len);
        }
    }

    // Neither given: train for one epoch, with no warmup.
    if (!r->train.epochs && !r->train.max_steps) r->train.epochs = 1;
    if (r->train.lr_scheduler.warmup_steps < 0 && r->train.lr_scheduler.warmup_ratio < 0)
        r->train.lr_scheduler.warmup_steps = 0;

    // The tokenizer lives with the model: the model folder itself, the folder holding a model file, or a
    // .gguf file itself (its tokenizer.ggml.* metadata).
    if (!r->model.tokenizer) {
        r->model.tokenizer = dt_model_tokenizer_path(r->model.path);
        if (!r->model.tokenizer) return dt_fail(L->ctx, DT_ENOMEM, "out of memory while reading a recipe");
    }
    // Frozen weights: bf16 on a GPU (half the memory, tensor-core speed; auto there is bf16 too); on a
    // CPU auto, which is bf16 where the CPU has bf16 matrix instructions and stored elsewhere (decided
    // when training starts). stored is the CPU's: a device's matrices take its matmuls' type.
    const dt_ynode *dtype_at = L->val_at[idx("hardware.dtype")];
    if (!dtype_at) r->hardware.dtype = DT_DTYPE_AUTO;
    if (r->hardware.device == DT_DEV_CUDA) { // resolved here, by the rule dt_dtype_resolve keeps for devices
        dt_ctx why;
        dt_ctx_init(&why);
        if (dt_dtype_resolve(&why, r->hardware.dtype, DT_DEV_CUDA, "hardware.dtype", &r->hardware.dtype))
            return dt_yfail(L->ctx, dtype_at, "%s", why.msg); // only a given value can fail
    }
    return DT_OK;
}
