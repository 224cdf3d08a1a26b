// Rules between keys, checked after every key has its own valid value, and the defaults that depend
// on other keys (recipes/README.md, "Rules between keys").
#include <stdio.h>
#include <string.h>
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

// Keys that belong to the other method (or optimizer): one message naming all of them.
static int wrong_variant(dt_rload *L, unsigned flag, const char *selector, const char *selected) {
    char names[1024];
    size_t w = 0;
    const dt_ynode *first = NULL;
    names[0] = 0;
    for (int i = 0; i < DT_RECIPE_NKEYS; i++) {
        if (!(dt_recipe_keys[i].flags & flag) || !L->val_at[i]) continue;
        if (!first) first = L->val_at[i];
        if (w < sizeof names)
            w += (size_t)snprintf(names + w, sizeof names - w, "%s%s", w ? ", " : "", dt_recipe_keys[i].path);
    }
    if (!first) return DT_OK;
    return dt_yfail(L->ctx, first, "%s: not used with %s: %s; remove %s", names, selector, selected,
                    strchr(names, ',') ? "them" : "it");
}

int dt_rapply_rules(dt_rload *L) {
    dt_recipe *r = L->r;
    int rc;
    bool lora = r->method.name == DT_METHOD_LORA;
    if ((rc = wrong_variant(L, lora ? DT_RF_PT : DT_RF_LORA, "method.name", dt_method_kind_name(r->method.name))))
        return rc;
    bool adamw = r->train.optimizer.name == DT_OPTIM_ADAMW;
    if ((rc = wrong_variant(L, adamw ? DT_RF_SGD : DT_RF_ADAMW, "train.optimizer.name",
                            dt_optim_kind_name(r->train.optimizer.name))))
        return rc;
    if ((rc = exclusive(L, "data.val", "data.val_split"))) return rc;
    if ((rc = exclusive(L, "train.epochs", "train.max_steps"))) return rc;
    if ((rc = exclusive(L, "train.lr_scheduler.warmup_steps", "train.lr_scheduler.warmup_ratio"))) return rc;

    if (!lora) {
        const dt_ynode *text = given(L, "method.init_text"), *init = L->val_at[idx("method.init")];
        if (r->method.init == DT_PT_INIT_TEXT && !text)
            return dt_yfail(L->ctx, init, "method.init: text needs method.init_text, the text whose tokens "
                            "initialise the virtual tokens");
        if (r->method.init != DT_PT_INIT_TEXT && text)
            return dt_yfail(L->ctx, text, "method.init_text: only used with method.init: text, but method.init "
                            "is %s", dt_pt_init_name(r->method.init));
    }

    // Neither given: train for one epoch, with no warmup.
    if (!r->train.epochs && !r->train.max_steps) r->train.epochs = 1;
    if (r->train.lr_scheduler.warmup_steps < 0 && r->train.lr_scheduler.warmup_ratio < 0)
        r->train.lr_scheduler.warmup_steps = 0;

    // The tokenizer lives with the model: the model folder itself, or the folder holding a model file.
    if (!r->model.tokenizer) {
        r->model.tokenizer = dt_model_tokenizer_path(r->model.path);
        if (!r->model.tokenizer) return dt_fail(L->ctx, DT_ENOMEM, "out of memory while reading a recipe");
    }
    // Frozen weights: full precision on a CPU, bf16 on a GPU (half the memory, tensor-core speed).
    if (!L->val_at[idx("hardware.dtype")]) r->hardware.dtype = r->hardware.device == DT_DEV_CUDA ? DT_BF16 : DT_F32;
    return DT_OK;
}
