// The parts every method shares: the parameter/gradient blocks and their bookkeeping.
#include "peft/adapter.h"
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

void dt_adapter_free(dt_adapter *a) {
    if (!a) return;
    for (int i = 0; i < a->n_tensors; i++) free(a->names[i]);
    free(a->names);
    free(a->tensors);
    free(a->params);
    free(a->grads);
    free(a->refs);
    free(a->alphas);
    free(a->ref_ptrs);
    free(a->hooks);
    free(a->hook_ptrs);
    dt_lora_config_free(&a->lora);
    free(a->prompt.init_text);
    if (a->state && a->method && a->method->free_state) a->method->free_state(a->state);
    free(a);
}

void dt_adapter_zero_grad(dt_adapter *a) { memset(a->grads, 0, a->n_params * sizeof(float)); }

float dt_lora_scale_of(float alpha, int r, bool use_rslora) {
    return use_rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
}

float dt_lora_scale(const dt_lora_config *c) { return dt_lora_scale_of(c->alpha, c->r, c->use_rslora); }

void dt_lora_config_free(dt_lora_config *c) {
    free(c->layers);
    c->layers = NULL;
    dt_lora_pattern_free(&c->rank_pattern);
    dt_lora_pattern_free(&c->alpha_pattern);
}

dt_tensor *dt_adapter_find(const dt_adapter *a, const char *name) {
    for (int i = 0; i < a->n_tensors; i++)
        if (!strcmp(a->names[i], name)) return &a->tensors[i];
    return NULL;
}

void dt_adapter_param_summary(const dt_adapter *a, const dt_llama *m, char *buf, size_t n) {
    // PEFT counts the frozen base plus the adapter in "all params".
    size_t all = m->param_count + a->n_params;
    snprintf(buf, n, "trainable params: %zu || all params: %zu || trainable%%: %.4f", a->n_params, all,
             100.0 * (double)a->n_params / (double)all);
}

// Allocates the blocks for n tensors of the given shapes and carves them; names are taken over.
int dt_adapter_alloc(dt_ctx *ctx, dt_adapter *a, int n, const int64_t (*shapes)[2], const int *ndims, char **names) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)(shapes[i][0] * (ndims[i] == 2 ? shapes[i][1] : 1));
    a->tensors = calloc((size_t)n, sizeof *a->tensors);
    a->params = calloc(total ? total : 1, sizeof(float));
    a->grads = calloc(total ? total : 1, sizeof(float));
    if (!a->tensors || !a->params || !a->grads) return dt_fail(ctx, DT_ENOMEM, "out of memory for adapter parameters");
    a->names = names;
    a->n_tensors = n;
    a->n_params = total;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        dt_tensor *t = &a->tensors[i];
        dt_tensor_set(t, DT_F32, a->params + off, ndims[i], shapes[i]);
        t->grad = a->grads + off;
        t->requires_grad = true;
        t->name = names[i];
        off += (size_t)dt_numel(t);
    }
    return DT_OK;
}

int dt_adapter_layout_init(dt_ctx *ctx, dt_adapter_layout *lo, int n) {
    lo->n = n;
    lo->shapes = calloc((size_t)n, sizeof *lo->shapes);
    lo->ndims = calloc((size_t)n, sizeof *lo->ndims);
    lo->names = calloc((size_t)n, sizeof *lo->names);
    return lo->shapes && lo->ndims && lo->names ? DT_OK : dt_fail(ctx, DT_ENOMEM, "out of memory");
}

int dt_adapter_layout_set(dt_ctx *ctx, dt_adapter_layout *lo, int i, const char *name, int ndim, int64_t d0, int64_t d1) {
    if (!(lo->names[i] = strdup(name))) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    lo->ndims[i] = ndim;
    lo->shapes[i][0] = d0;
    lo->shapes[i][1] = ndim == 2 ? d1 : 1;
    return DT_OK;
}

int dt_adapter_layout_commit(dt_ctx *ctx, dt_adapter_layout *lo, dt_adapter *a, int rc) {
    if (!rc) {
        rc = dt_adapter_alloc(ctx, a, lo->n, (const int64_t(*)[2])lo->shapes, lo->ndims, lo->names);
        if (rc) { a->names = lo->names; a->n_tensors = lo->n; }
        lo->names = NULL;
    }
    if (lo->names)
        for (int i = 0; i < lo->n; i++) free(lo->names[i]);
    free(lo->names);
    free(lo->shapes);
    free(lo->ndims);
    *lo = (dt_adapter_layout){0};
    return rc;
}
