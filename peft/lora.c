// LoRA: y = x W^T + scale * dropout(x) A^T B^T with A (r, in), B (out, r), on the chosen linear
// modules of the chosen layers. Keys and initialisation follow Hugging Face PEFT.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"
#include "peft/adapter.h"

static void module_dims(const dt_model_config *c, dt_module mod, int64_t *out, int64_t *in) {
    int64_t D = c->hidden_size, q = (int64_t)c->num_heads * c->head_dim, kv = (int64_t)c->num_kv_heads * c->head_dim;
    int64_t I = c->intermediate_size;
    const int64_t outs[DT_MOD_COUNT] = {q, kv, kv, D, I, I, D}, ins[DT_MOD_COUNT] = {D, D, D, q, D, D, I};
    *out = outs[mod];
    *in = ins[mod];
}

int dt_lora_create(dt_ctx *ctx, const dt_llama *m, const dt_lora_config *cfg, uint64_t seed, dt_adapter **out) {
    *out = NULL;
    const dt_model_config *c = &m->cfg;
    const int L = c->num_layers;
    if (cfg->r <= 0) return dt_fail(ctx, DT_EINPUT, "LoRA rank r must be positive, got %d", cfg->r);
    dt_adapter *a = calloc(1, sizeof *a);
    if (!a) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    a->method = DT_PEFT_LORA;
    a->lora = *cfg;
    a->lora.layers = NULL;
    if (cfg->layers) {
        a->lora.layers = malloc((size_t)L * sizeof(bool));
        if (!a->lora.layers) { dt_adapter_free(a); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
        memcpy(a->lora.layers, cfg->layers, (size_t)L * sizeof(bool));
    }
    int n = 0;
    for (int l = 0; l < L; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++)
            if (cfg->target[mod] && (!cfg->layers || cfg->layers[l])) n += 2;
    if (n == 0) { dt_adapter_free(a); return dt_fail(ctx, DT_EINPUT, "LoRA targets no module of this model"); }
    int64_t (*shapes)[2] = calloc((size_t)n, sizeof *shapes);
    int *ndims = calloc((size_t)n, sizeof *ndims);
    char **names = calloc((size_t)n, sizeof *names);
    a->refs = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->refs);
    a->ref_ptrs = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->ref_ptrs);
    if (!shapes || !ndims || !names || !a->refs || !a->ref_ptrs) {
        free(shapes); free(ndims); free(names); dt_adapter_free(a);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    // Per layer, the A's of all its modules come first, then the B's, in module order. So the A's of
    // modules that read the same input (q/k/v, gate/up) sit next to each other in the parameter and
    // gradient blocks, and the ops treat them as one stacked (sum of r, in) matrix: one sgemm for the
    // three of them instead of three thin ones. The order of the tensors in the files does not depend
    // on this (the writers sort by name).
    char buf[256];
    int i = 0;
    for (int l = 0; l < L; l++) {
        int first = i, k = 0;
        for (int mod = 0; mod < DT_MOD_COUNT; mod++)
            if (cfg->target[mod] && (!cfg->layers || cfg->layers[l])) k++;
        for (int mod = 0, j = 0; mod < DT_MOD_COUNT; mod++) {
            if (!cfg->target[mod] || (cfg->layers && !cfg->layers[l])) continue;
            int64_t o, in;
            module_dims(c, (dt_module)mod, &o, &in);
            int ia = first + j, ib = first + k + j;
            dt_tn_module(buf, sizeof buf, "base_model.model.", l, (dt_module)mod, ".lora_A.weight");
            names[ia] = strdup(buf); ndims[ia] = 2; shapes[ia][0] = cfg->r; shapes[ia][1] = in;
            dt_tn_module(buf, sizeof buf, "base_model.model.", l, (dt_module)mod, ".lora_B.weight");
            names[ib] = strdup(buf); ndims[ib] = 2; shapes[ib][0] = o; shapes[ib][1] = cfg->r;
            j++;
        }
        i += 2 * k;
    }
    int rc = dt_adapter_alloc(ctx, a, n, (const int64_t(*)[2])shapes, ndims, names);
    free(shapes);
    free(ndims);
    if (rc) { a->names = names; a->n_tensors = n; dt_adapter_free(a); return rc; }
    // Wire the refs and initialise A (in layer, module order, as PEFT does); B stays zero so the adapted
    // model starts equal to the base.
    dt_rng rng = {seed};
    const float scale = dt_lora_scale(cfg);
    i = 0;
    for (int l = 0; l < L; l++) {
        int first = i, k = 0;
        for (int mod = 0; mod < DT_MOD_COUNT; mod++)
            if (cfg->target[mod] && (!cfg->layers || cfg->layers[l])) k++;
        for (int mod = 0, j = 0; mod < DT_MOD_COUNT; mod++) {
            if (!cfg->target[mod] || (cfg->layers && !cfg->layers[l])) continue;
            dt_tensor *A = &a->tensors[first + j], *B = &a->tensors[first + k + j];
            j++;
            double bound = 1.0 / sqrt((double)A->shape[1]);
            for (int64_t e = 0; e < dt_numel(A); e++) dt_f32(A)[e] = (float)((2.0 * dt_rng_uniform(&rng) - 1.0) * bound);
            size_t ref = (size_t)l * DT_MOD_COUNT + (size_t)mod;
            a->refs[ref] = (dt_lora_ref){A, B, scale, cfg->dropout, NULL};
            a->ref_ptrs[ref] = &a->refs[ref];
        }
        i += 2 * k;
    }
    a->view.lora = a->ref_ptrs;
    *out = a;
    return DT_OK;
}
