// Recipe -> adapter for the methods beyond LoRA and prompt tuning (see train_method.h).
#include "tools/train_method.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peft/bitfit.h"
#include "peft/bottleneck.h"
#include "peft/ia3.h"
#include "peft/prefix_tuning.h"

// A recipe list of module names (method.<key>) into DT_MOD_COUNT flags.
static int module_flags(dt_ctx *ctx, const dt_recipe *r, const char *key, const dt_strlist *l, bool *on) {
    memset(on, 0, DT_MOD_COUNT * sizeof *on);
    for (int i = 0; i < l->n; i++) {
        int mod = dt_module_from_name(l->items[i]);
        if (mod < 0)
            return dt_fail(ctx, DT_EINPUT, "%s: method.%s: '%s' is not a linear module of this model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                           r->recipe_path, key, l->items[i]);
        on[mod] = true;
    }
    return DT_OK;
}

int dt_train_method_adapter(dt_ctx *ctx, const dt_recipe *r, const dt_llama *m, dt_adapter **out) {
    *out = NULL;
    if (r->method.name == DT_METHOD_BOTTLENECK) {
        char where[4200];
        snprintf(where, sizeof where, "%s: method.bottleneck_size", r->recipe_path);
        return dt_bottleneck_create(ctx, m, r->method.bottleneck_type == DT_BN_TYPE_HOULSBY ? DT_BN_HOULSBY : DT_BN_PFEIFFER,
                                    r->method.bottleneck_size, (uint64_t)r->train.seed, where, out);
    }
    if (r->method.name == DT_METHOD_PREFIX_TUNING) {
        // The prefix takes positions 0..n-1 and an example's tokens follow it (positions n..n+len-1), so
        // n + data.max_seq_len positions must fit the model's context.
        const int n = r->method.num_virtual_tokens, ctx_len = m->cfg.max_position_embeddings;
        if (ctx_len > 0 && (int64_t)n + r->data.max_seq_len > ctx_len)
            return dt_fail(ctx, DT_EINPUT, "%s: method.num_virtual_tokens: %d virtual tokens + data.max_seq_len %d = %lld "
                           "positions exceed the model's context (max_position_embeddings %d)", r->recipe_path, n,
                           r->data.max_seq_len, (long long)n + r->data.max_seq_len, ctx_len);
        char where[4200];
        snprintf(where, sizeof where, "%s: method.num_virtual_tokens", r->recipe_path);
        return dt_prefix_create(ctx, m, n, (uint64_t)r->train.seed, where, out);
    }
    bool target[DT_MOD_COUNT], ff[DT_MOD_COUNT];
    int rc = module_flags(ctx, r, "target_modules", &r->method.target_modules, target);
    if (!rc && r->method.target_all_linear)
        for (int i = 0; i < DT_MOD_COUNT; i++) target[i] = true;
    if (rc) return rc;
    char where[4200];
    if (r->method.name == DT_METHOD_BITFIT) {
        snprintf(where, sizeof where, "%s: method.target_modules", r->recipe_path);
        return dt_bitfit_create(ctx, m, target, where, out);
    }
    if ((rc = module_flags(ctx, r, "feedforward_modules", &r->method.feedforward_modules, ff))) return rc;
    snprintf(where, sizeof where, "%s: method.target_modules / method.feedforward_modules", r->recipe_path);
    return dt_ia3_create(ctx, m, target, ff, where, out);
}

int dt_train_lr_mult(dt_ctx *ctx, const dt_recipe *r, const dt_adapter *a, dt_optimizer *o) {
    const double ratio = r->train.optimizer.loraplus_lr_ratio;
    if (ratio <= 0) return DT_OK;
    float *mult = malloc((a->n_params ? a->n_params : 1) * sizeof(float));
    if (!mult) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    int rc = dt_lora_plus_lr_mult(ctx, a, (float)ratio, mult);
    if (rc) {
        char why[sizeof ctx->msg];
        snprintf(why, sizeof why, "%s", ctx->msg);
        rc = dt_fail(ctx, DT_EINPUT, "%s: train.optimizer.loraplus_lr_ratio: %s (method.init_from: %s)", r->recipe_path, why,
                     r->method.init_from ? r->method.init_from : "none");
    }
    if (!rc) rc = dt_optim_set_lr_mult(ctx, o, mult);
    free(mult);
    return rc;
}
