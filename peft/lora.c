// LoRA: y = x W^T + scale * dropout(x) A^T B^T with A (r, in), B (out, r), on the chosen linear
// modules of the chosen layers; r and the scale may differ per module (PEFT's rank_pattern and
// alpha_pattern). Keys and initialisation follow Hugging Face PEFT.
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

static bool adapted(const dt_lora_config *cfg, int layer, int mod) {
    return cfg->target[mod] && (!cfg->layers || cfg->layers[layer]);
}

// The rank and alpha of every adapted module ([layer * DT_MOD_COUNT + module]; untouched elsewhere), as
// PEFT's _create_and_replace picks them: the patterns' values where a key matches, else r and alpha.
static int module_ranks(dt_ctx *ctx, const dt_lora_config *cfg, int L, int *ranks, float *alphas) {
    dt_lora_matcher *rm = NULL, *am = NULL;
    int rc = dt_lora_matcher_new(ctx, &cfg->rank_pattern, "LoRA rank_pattern", &rm);
    if (!rc) rc = dt_lora_matcher_new(ctx, &cfg->alpha_pattern, "LoRA alpha_pattern", &am);
    char name[256];
    for (int l = 0; l < L && !rc; l++)
        for (int mod = 0; mod < DT_MOD_COUNT && !rc; mod++) {
            if (!adapted(cfg, l, mod)) continue;
            // PEFT matches the module's path in the base model: "model.layers.3.self_attn.q_proj".
            dt_tn_module(name, sizeof name, "", l, (dt_module)mod, "");
            double r, alpha;
            rc = dt_lora_matcher_value(ctx, rm, name, cfg->r, &r);
            if (!rc) rc = dt_lora_matcher_value(ctx, am, name, cfg->alpha, &alpha);
            if (!rc && !(r >= 1 && r <= 65536 && r == (double)(int)r))
                rc = dt_fail(ctx, DT_EINPUT, "LoRA rank_pattern: module %s gets rank %g; expected a positive integer", name, r);
            ranks[(size_t)l * DT_MOD_COUNT + (size_t)mod] = (int)r;
            alphas[(size_t)l * DT_MOD_COUNT + (size_t)mod] = (float)alpha;
        }
    dt_lora_matcher_free(rm);
    dt_lora_matcher_free(am);
    return rc;
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
    a->lora.layers = NULL; // the caller's arrays: copied below, never shared
    memset(&a->lora.rank_pattern, 0, sizeof a->lora.rank_pattern);
    memset(&a->lora.alpha_pattern, 0, sizeof a->lora.alpha_pattern);
    int rc = dt_lora_pattern_copy(ctx, &a->lora.rank_pattern, &cfg->rank_pattern);
    if (!rc) rc = dt_lora_pattern_copy(ctx, &a->lora.alpha_pattern, &cfg->alpha_pattern);
    if (rc) { dt_adapter_free(a); return rc; }
    if (cfg->layers) {
        a->lora.layers = malloc((size_t)L * sizeof(bool));
        if (!a->lora.layers) { dt_adapter_free(a); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
        memcpy(a->lora.layers, cfg->layers, (size_t)L * sizeof(bool));
    }
    int n = 0;
    for (int l = 0; l < L; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++)
            if (adapted(cfg, l, mod)) n += 2;
    if (n == 0) { dt_adapter_free(a); return dt_fail(ctx, DT_EINPUT, "LoRA targets no module of this model"); }
    int64_t (*shapes)[2] = calloc((size_t)n, sizeof *shapes);
    int *ndims = calloc((size_t)n, sizeof *ndims);
    char **names = calloc((size_t)n, sizeof *names);
    int *ranks = calloc((size_t)L * DT_MOD_COUNT, sizeof *ranks);     // (L * DT_MOD_COUNT)
    int *where = calloc((size_t)L * DT_MOD_COUNT * 2, sizeof *where);  // (L * DT_MOD_COUNT, 2): A's, B's index
    a->alphas = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->alphas);
    a->refs = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->refs);
    a->ref_ptrs = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->ref_ptrs);
    if (!shapes || !ndims || !names || !ranks || !where || !a->alphas || !a->refs || !a->ref_ptrs) {
        free(shapes); free(ndims); free(names); free(ranks); free(where); dt_adapter_free(a);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    if ((rc = module_ranks(ctx, &a->lora, L, ranks, a->alphas))) {
        free(shapes); free(ndims); free(names); free(ranks); free(where); dt_adapter_free(a);
        return rc;
    }
    // Per layer, the A's of all its modules come first, then the B's, in module order. So the A's of
    // modules that read the same input (q/k/v, gate/up) sit next to each other in the parameter and
    // gradient blocks, and the ops treat them as one stacked (sum of r_i, in) matrix: one sgemm for the
    // three of them instead of three thin ones (the ranks may differ). The order of the tensors in the
    // files does not depend on this (the writers sort by name).
    char buf[256];
    int i = 0;
    for (int l = 0; l < L; l++) {
        int first = i, k = 0;
        for (int mod = 0; mod < DT_MOD_COUNT; mod++)
            if (adapted(cfg, l, mod)) k++;
        for (int mod = 0, j = 0; mod < DT_MOD_COUNT; mod++) {
            if (!adapted(cfg, l, mod)) continue;
            int64_t o, in, r = ranks[(size_t)l * DT_MOD_COUNT + (size_t)mod];
            module_dims(c, (dt_module)mod, &o, &in);
            int ia = first + j, ib = first + k + j;
            size_t ref = (size_t)l * DT_MOD_COUNT + (size_t)mod;
            where[2 * ref] = ia;
            where[2 * ref + 1] = ib;
            dt_tn_module(buf, sizeof buf, "base_model.model.", l, (dt_module)mod, ".lora_A.weight");
            names[ia] = strdup(buf); ndims[ia] = 2; shapes[ia][0] = r; shapes[ia][1] = in;   // A (r_i, in)
            dt_tn_module(buf, sizeof buf, "base_model.model.", l, (dt_module)mod, ".lora_B.weight");
            names[ib] = strdup(buf); ndims[ib] = 2; shapes[ib][0] = o; shapes[ib][1] = r;    // B (out, r_i)
            j++;
        }
        i += 2 * k;
    }
    rc = dt_adapter_alloc(ctx, a, n, (const int64_t(*)[2])shapes, ndims, names);
    free(shapes);
    free(ndims);
    if (rc) { a->names = names; a->n_tensors = n; free(ranks); free(where); dt_adapter_free(a); return rc; }
    // Wire the refs and initialise A (in layer, module order, as PEFT does); B stays zero so the adapted
    // model starts equal to the base.
    dt_rng rng = {seed};
    for (int l = 0; l < L; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            if (!adapted(cfg, l, mod)) continue;
            size_t ref = (size_t)l * DT_MOD_COUNT + (size_t)mod;
            dt_tensor *A = &a->tensors[where[2 * ref]], *B = &a->tensors[where[2 * ref + 1]];
            double bound = 1.0 / sqrt((double)A->shape[1]);
            for (int64_t e = 0; e < dt_numel(A); e++) dt_f32(A)[e] = (float)((2.0 * dt_rng_uniform(&rng) - 1.0) * bound);
            const float scale = dt_lora_scale_of(a->alphas[ref], ranks[ref], cfg->use_rslora);
            a->refs[ref] = (dt_lora_ref){A, B, scale, cfg->dropout, NULL};
            a->ref_ptrs[ref] = &a->refs[ref];
        }
    free(ranks);
    free(where);
    a->view.lora = a->ref_ptrs;
    *out = a;
    return DT_OK;
}
