// LoRA: y = x W^T + scale * dropout(x) A^T B^T with A (r, in), B (out, r), on the chosen linear
// modules of the chosen layers; r and the scale may differ per module (PEFT's rank_pattern and
// alpha_pattern). Keys and initialisation follow Hugging Face PEFT.
//
// Also on the token embedding (target "embed_tokens": PEFT's lora_embedding_A (r, V) and lora_embedding_B
// (D, r), peft/lora_embed.c) and on the LM head (target "lm_head": lora_A (r, D), lora_B (V, r), a hook
// on the output projection). With tied embeddings (one matrix for both) each changes only its own use
// of it, the lookup or the output projection, as PEFT's wrapped modules do at run time; a merge then
// unties the model (peft/method.h, DT_FOLD_LM_HEAD).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "autograd/rng.h"
#include "peft/adapter.h"
#include "peft/dora.h"
#include "peft/lora_embed.h"
#include "peft/merge.h"

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
            double r = 0, alpha = 0; // stored below even after a failed lookup (the caller discards them)
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
    a->method = &dt_method_lora;
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
    const int n_ab = n; // DoRA's magnitude vectors follow the A's and B's of every layer
    if (cfg->use_dora) n += n / 2;
    const int n_layers = n; // the embedding's and the head's A and B follow
    n += 2 * cfg->embed_tokens + 2 * cfg->lm_head;
    if (n == 0) { dt_adapter_free(a); return dt_fail(ctx, DT_EINPUT, "LoRA targets no module of this model"); }
    if (cfg->use_dora && (cfg->embed_tokens || cfg->lm_head)) {
        dt_adapter_free(a);
        return dt_fail(ctx, DT_EINPUT, "DoRA on embed_tokens or lm_head is not supported; target only the linear modules of the blocks");
    }
    if (cfg->layers && (cfg->embed_tokens || cfg->lm_head)) { // PEFT's check_target_module_exists wants a layer index then
        dt_adapter_free(a);
        return dt_fail(ctx, DT_EINPUT, "layers_to_transform with embed_tokens or lm_head in target_modules: PEFT adapts only "
                       "modules inside the chosen layers then, so it would not load these; drop one of the two");
    }
    int64_t (*shapes)[2] = calloc((size_t)n, sizeof *shapes);
    int *ndims = calloc((size_t)n, sizeof *ndims);
    char **names = calloc((size_t)n, sizeof *names);
    int *ranks = calloc((size_t)L * DT_MOD_COUNT, sizeof *ranks);     // (L * DT_MOD_COUNT)
    int *where = calloc((size_t)L * DT_MOD_COUNT * 2, sizeof *where);  // (L * DT_MOD_COUNT, 2): A's, B's index
    a->alphas = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->alphas);
    a->refs = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->refs);
    a->ref_ptrs = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->ref_ptrs);
    a->hooks = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->hooks);
    a->hook_ptrs = calloc((size_t)L * DT_MOD_COUNT, sizeof *a->hook_ptrs);
    if (!shapes || !ndims || !names || !ranks || !where || !a->alphas || !a->refs || !a->ref_ptrs || !a->hooks || !a->hook_ptrs) {
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
    for (int l = 0; l < L && cfg->use_dora; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            if (!adapted(cfg, l, mod)) continue;
            int64_t o, in;
            module_dims(c, (dt_module)mod, &o, &in);
            dt_tn_module(buf, sizeof buf, "base_model.model.", l, (dt_module)mod, ".lora_magnitude_vector");
            names[i] = strdup(buf); ndims[i] = 1; shapes[i][0] = o; shapes[i][1] = 1;        // magnitude (out)
            i++;
        }
    // The embedding's and the head's ranks and alphas: the patterns match "model.embed_tokens" / "lm_head".
    int r_extra[2] = {cfg->r, cfg->r};
    float al_extra[2] = {cfg->alpha, cfg->alpha};
    const bool extra_on[2] = {cfg->embed_tokens, cfg->lm_head};
    const char *const extra_mod[2] = {"model.embed_tokens", "lm_head"};
    for (int e = 0; e < 2 && !rc; e++) {
        if (!extra_on[e]) continue;
        dt_lora_matcher *rm = NULL, *am = NULL;
        double rv = cfg->r, av = cfg->alpha;
        rc = dt_lora_matcher_new(ctx, &cfg->rank_pattern, "LoRA rank_pattern", &rm);
        if (!rc) rc = dt_lora_matcher_new(ctx, &cfg->alpha_pattern, "LoRA alpha_pattern", &am);
        if (!rc) rc = dt_lora_matcher_value(ctx, rm, extra_mod[e], cfg->r, &rv);
        if (!rc) rc = dt_lora_matcher_value(ctx, am, extra_mod[e], cfg->alpha, &av);
        if (!rc && !(rv >= 1 && rv <= 65536 && rv == (double)(int)rv))
            rc = dt_fail(ctx, DT_EINPUT, "LoRA rank_pattern: module %s gets rank %g; expected a positive integer", extra_mod[e], rv);
        dt_lora_matcher_free(rm);
        dt_lora_matcher_free(am);
        r_extra[e] = (int)rv;
        al_extra[e] = (float)av;
    }
    const int64_t V = c->vocab_size, D = c->hidden_size;
    if (!rc && cfg->embed_tokens) {
        names[i] = strdup("base_model.model.model.embed_tokens.lora_embedding_A"); // (r, V)
        ndims[i] = 2; shapes[i][0] = r_extra[0]; shapes[i][1] = V; i++;
        names[i] = strdup("base_model.model.model.embed_tokens.lora_embedding_B"); // (D, r)
        ndims[i] = 2; shapes[i][0] = D; shapes[i][1] = r_extra[0]; i++;
    }
    if (!rc && cfg->lm_head) {
        names[i] = strdup("base_model.model.lm_head.lora_A.weight"); // (r, D)
        ndims[i] = 2; shapes[i][0] = r_extra[1]; shapes[i][1] = D; i++;
        names[i] = strdup("base_model.model.lm_head.lora_B.weight"); // (V, r)
        ndims[i] = 2; shapes[i][0] = V; shapes[i][1] = r_extra[1]; i++;
    }
    for (int k = 0; k < i && !rc; k++)
        if (!names[k]) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (rc) {
        for (int k = 0; k < n; k++) free(names[k]);
        free(shapes); free(ndims); free(names); free(ranks); free(where); dt_adapter_free(a);
        return rc;
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
            a->refs[ref] = (dt_lora_ref){A, B, scale, cfg->dropout};
            a->ref_ptrs[ref] = &a->refs[ref];
            a->hooks[ref] = dt_lora_hook(&a->refs[ref]);
            a->hook_ptrs[ref] = &a->hooks[ref];
        }
    free(ranks);
    free(where);
    a->view.linear = a->hook_ptrs;
    // The embedding's LoRA: A zero, B ~ N(0, 1) (PEFT's reset_lora_parameters for lora_embedding_A/B); no
    // dropout (PEFT's Embedding applies none). The head's: a linear LoRA like the others.
    int e = n_layers;
    if (cfg->embed_tokens) {
        dt_tensor *A = &a->tensors[e], *B = &a->tensors[e + 1];
        for (int64_t k = 0; k < dt_numel(B); k++) dt_f32(B)[k] = (float)dt_rng_normal(&rng);
        a->embed_ref = (dt_lora_ref){A, B, dt_lora_scale_of(al_extra[0], r_extra[0], cfg->use_rslora), 0.0f};
        a->view.embed = (dt_llama_embed_site){dt_lora_embed_site, &a->embed_ref};
        e += 2;
    }
    if (cfg->lm_head) {
        dt_tensor *A = &a->tensors[e], *B = &a->tensors[e + 1];
        const double bound = 1.0 / sqrt((double)A->shape[1]);
        for (int64_t k = 0; k < dt_numel(A); k++) dt_f32(A)[k] = (float)((2.0 * dt_rng_uniform(&rng) - 1.0) * bound);
        a->head_ref = (dt_lora_ref){A, B, dt_lora_scale_of(al_extra[1], r_extra[1], cfg->use_rslora), cfg->dropout};
        a->head_hook = dt_lora_hook(&a->head_ref);
        a->view.lm_head = &a->head_hook;
    }
    if (cfg->use_dora && (rc = dt_dora_attach(ctx, a, m, n_ab))) { dt_adapter_free(a); return rc; }
    *out = a;
    return DT_OK;
}

int dt_lora_plus_lr_mult(dt_ctx *ctx, const dt_adapter *a, float ratio, float *mult) {
    if (a->method != &dt_method_lora)
        return dt_fail(ctx, DT_EINPUT, "LoRA+ needs a LoRA adapter (lora_B matrices), not %s", a->method->peft_type);
    if (a->lora.embed_tokens) // PEFT's create_loraplus_optimizer gives them their own absolute rate
        return dt_fail(ctx, DT_EINPUT, "LoRA+ with a LoRA on embed_tokens is not supported (PEFT trains lora_embedding_A/B "
                       "at loraplus_lr_embedding, which deltatune does not have)");
    for (int i = 0; i < a->n_tensors; i++) {
        const dt_tensor *t = &a->tensors[i];
        // PEFT's rule: "lora_B" in the name or a 1-D parameter. The 1-D ones are DoRA's
        // lora_magnitude_vector, which PEFT therefore trains at lr * ratio as well.
        const float k = strstr(a->names[i], ".lora_B.") || t->ndim == 1 ? ratio : 1.0f;
        for (int64_t e = 0; e < dt_numel(t); e++) mult[dt_f32(t) - a->params + e] = k;
    }
    return DT_OK;
}

// ---- adapter_config.json ----------------------------------------------------------------------------

static int parse_lora_config(dt_ctx *ctx, json_t *cfg, const char *path, const dt_llama *m, dt_lora_config *lc) {
    memset(lc, 0, sizeof *lc);
    json_t *r = json_object_get(cfg, "r"), *alpha = json_object_get(cfg, "lora_alpha");
    if (!json_is_integer(r) || json_integer_value(r) <= 0)
        return dt_fail(ctx, DT_EINPUT, "%s: key 'r': expected a positive integer", path);
    lc->r = (int)json_integer_value(r);
    lc->alpha = alpha && json_is_number(alpha) ? (float)json_number_value(alpha) : 8.0f;
    json_t *drop = json_object_get(cfg, "lora_dropout");
    lc->dropout = drop && json_is_number(drop) ? (float)json_number_value(drop) : 0.0f;
    lc->use_rslora = json_is_true(json_object_get(cfg, "use_rslora"));
    lc->use_dora = json_is_true(json_object_get(cfg, "use_dora"));
    // Options of later PEFT versions that change what the adapter computes or which modules hold it. They are
    // in peft_io.c's list of known keys, so without this they would be dropped without a word; an activated
    // LoRA (alora_invocation_tokens) would even load, applied at every position instead of only after its
    // invocation tokens. Each is refused when set to something other than its "off" value.
    static const char *const LATER[][2] = {
        {"alora_invocation_tokens", "the adapter applies only after these tokens (activated LoRA)"},
        {"use_qalora", "QALoRA pools the adapter's input in groups"},
        {"lora_bias", "lora_B has a bias"},
        {"exclude_modules", "modules are left out of target_modules"},
        {"layer_replication", "layers of the base are repeated"},
        {"trainable_token_indices", "single embedding rows are trained"},
        {"target_parameters", "parameters other than linear layers are adapted"},
    };
    for (size_t i = 0; i < sizeof LATER / sizeof LATER[0]; i++) {
        json_t *v = json_object_get(cfg, LATER[i][0]);
        bool off = !v || json_is_null(v) || json_is_false(v) || (json_is_array(v) && json_array_size(v) == 0) ||
                   (json_is_object(v) && json_object_size(v) == 0);
        if (!off) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            int rc = dt_fail(ctx, DT_EUNSUPPORTED, "%s: key '%s': %s: not supported (%s)", path, LATER[i][0],
                             text ? text : "?", LATER[i][1]);
            free(text);
            return rc;
        }
    }
    // PiSSA, OLoRA, LoftQ and CorDA initialise the adapter from the base weights and subtract what they
    // took (W - s·B0·A0) from the base. PEFT redoes that when it loads such an adapter onto the original
    // base, so the adapter is only right on that residual: applied to W it would be off by s·B0·A0.
    // true / false / "gaussian" (and EVA, which sets A only) leave the base alone.
    json_t *init = json_object_get(cfg, "init_lora_weights");
    if (json_is_string(init)) {
        const char *v = json_string_value(init);
        if (!strncmp(v, "pissa", 5) || !strcmp(v, "olora") || !strcmp(v, "loftq") || !strcmp(v, "corda"))
            return dt_fail(ctx, DT_EUNSUPPORTED, "%s: key 'init_lora_weights': '%s' changes the base weights when PEFT "
                           "loads the adapter, which deltatune does not do; save it from PEFT as a plain LoRA "
                           "(save_pretrained(..., path_initial_model_for_weight_conversion=...)) to use it here", path, v);
    }
    // Per-module ranks and alphas; the rank each module gets is checked against the tensors when they are read.
    int rc = dt_lora_pattern_from_json(ctx, cfg, path, "rank_pattern", true, &lc->rank_pattern);
    if (!rc) rc = dt_lora_pattern_from_json(ctx, cfg, path, "alpha_pattern", false, &lc->alpha_pattern);
    if (rc) return rc;
    json_t *tm = json_object_get(cfg, "target_modules");
    if (json_is_string(tm)) {
        if (strcmp(json_string_value(tm), "all-linear"))
            return dt_fail(ctx, DT_EINPUT, "%s: key 'target_modules': regular expressions are not supported; expected a list of module names or \"all-linear\"", path);
        for (int i = 0; i < DT_MOD_COUNT; i++) lc->target[i] = true;
    } else if (json_is_array(tm)) {
        size_t i;
        json_t *v;
        json_array_foreach(tm, i, v) {
            const char *name = json_is_string(v) ? json_string_value(v) : "?";
            if (!strcmp(name, "embed_tokens") || !strcmp(name, "model.embed_tokens")) { lc->embed_tokens = true; continue; }
            if (!strcmp(name, "lm_head")) { lc->lm_head = true; continue; }
            int mod = json_is_string(v) ? dt_module_from_name(name) : -1;
            if (mod < 0)
                return dt_fail(ctx, DT_EINPUT, "%s: key 'target_modules': '%s' is not a module LoRA can adapt in this model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, embed_tokens, lm_head)",
                               path, name);
            lc->target[mod] = true;
        }
    } else {
        return dt_fail(ctx, DT_EINPUT, "%s: key 'target_modules': expected a list of module names", path);
    }
    json_t *lt = json_object_get(cfg, "layers_to_transform");
    if (lt && !json_is_null(lt)) {
        int L = m->cfg.num_layers;
        lc->layers = calloc((size_t)L, sizeof(bool));
        if (!lc->layers) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        json_t *one = json_is_integer(lt) ? json_pack("[O]", lt) : json_incref(lt);
        size_t i;
        json_t *v;
        int bad = !json_is_array(one);
        if (!bad) json_array_foreach(one, i, v) {
            json_int_t l = json_is_integer(v) ? json_integer_value(v) : -1;
            if (l < 0 || l >= L) { bad = 1; break; }
            lc->layers[l] = true;
        }
        json_decref(one);
        if (bad) return dt_fail(ctx, DT_EINPUT, "%s: key 'layers_to_transform': expected layer indices in [0, %d)", path, L);
    }
    return DT_OK;
}

static void lora_to_json(const dt_adapter *a, const dt_model_config *mc, json_t *c) {
    json_t *targets = json_array();
    if (a->lora.embed_tokens) json_array_append_new(targets, json_string("embed_tokens"));
    for (int i = 0; i < DT_MOD_COUNT; i++)
        if (a->lora.target[i]) json_array_append_new(targets, json_string(dt_module_short((dt_module)i)));
    if (a->lora.lm_head) json_array_append_new(targets, json_string("lm_head"));
    json_t *layers = json_null();
    if (a->lora.layers) {
        layers = json_array();
        for (int l = 0; l < mc->num_layers; l++)
            if (a->lora.layers[l]) json_array_append_new(layers, json_integer(l));
    }
    json_object_set_new(c, "r", json_integer(a->lora.r));
    // PEFT configs carry alpha as an int when it is one (lora_alpha: 16).
    float al = a->lora.alpha;
    json_object_set_new(c, "lora_alpha", al == (float)(int)al ? json_integer((int)al) : json_real(al));
    json_object_set_new(c, "lora_dropout", json_real(a->lora.dropout));
    json_object_set_new(c, "target_modules", targets);
    json_object_set_new(c, "layers_to_transform", layers);
    json_object_set_new(c, "use_rslora", json_boolean(a->lora.use_rslora));
    json_object_set_new(c, "use_dora", json_boolean(a->lora.use_dora));
    json_object_set_new(c, "bias", json_string("none"));
    json_object_set_new(c, "fan_in_fan_out", json_false());
    json_object_set_new(c, "modules_to_save", json_null());
    json_object_set_new(c, "init_lora_weights", json_true());
    // As read (empty for our own adapters): same keys, values and order, so PEFT picks the same key per module.
    json_object_set_new(c, "rank_pattern", dt_lora_pattern_to_json(&a->lora.rank_pattern));
    json_object_set_new(c, "alpha_pattern", dt_lora_pattern_to_json(&a->lora.alpha_pattern));
}


static int lora_from_json(dt_ctx *ctx, json_t *cfg, const char *path, const dt_llama *m, dt_adapter **out) {
    dt_lora_config lc;
    int rc = parse_lora_config(ctx, cfg, path, m, &lc);
    if (!rc && lc.layers && (lc.embed_tokens || lc.lm_head))
        rc = dt_fail(ctx, DT_EINPUT, "%s: keys 'layers_to_transform' and 'target_modules': with layers_to_transform PEFT adapts "
                     "only modules inside the chosen layers, not embed_tokens or lm_head", path);
    if (!rc && lc.use_dora && (lc.embed_tokens || lc.lm_head))
        rc = dt_fail(ctx, DT_EINPUT, "%s: keys 'use_dora' and 'target_modules': DoRA on embed_tokens or lm_head is not supported", path);
    if (!rc) rc = dt_lora_create(ctx, m, &lc, 0, out);
    dt_lora_config_free(&lc);
    return rc;
}

// ---- merge ------------------------------------------------------------------------------------------

static bool lora_folds(const dt_adapter *a, int layer, int lt) {
    if (lt == DT_FOLD_EMBED) return a->lora.embed_tokens;
    if (lt == DT_FOLD_LM_HEAD) return a->lora.lm_head;
    return layer >= 0 && dt_adapter_lora_at(a, layer, lt) != NULL;
}

// The embedding table's rows v (cols = D) += weight * scale * (A^T B^T)[v] = weight * scale * sum_k A[k, v] B[:, k].
static void embed_fold_rows(const dt_adapter *a, float weight, const int64_t *src, int nb, int64_t cols, float *const *rows) {
    const dt_lora_ref *l = &a->embed_ref;
    const int64_t r = l->A->shape[0], V = l->A->shape[1];
    const float *A = dt_f32(l->A), *B = dt_f32(l->B); // A (r, V), B (D, r)
    const float s = weight * l->scale;
    for (int b = 0; b < nb; b++)
        for (int64_t k = 0; k < r; k++) {
            const float c = s * A[k * V + src[b]];
            for (int64_t x = 0; x < cols; x++) rows[b][x] += c * B[x * r + k];
        }
}

// rows[b] (cols) += weight * scale * B[src[b], :] @ A for b < DT_FOLD_ROWS: that many rows of W + s B A at
// once, so that A (r x cols, in L2) is read once per block of rows. Four of A's rows per pass, as fused
// multiply-adds in a fixed order per element (the same for every b and every block size); the rows of a
// short block beyond nb are zeroed scratch rows with zero coefficients.
static void lora_fold_rows(const dt_adapter *a, int layer, int lt, float weight, const int64_t *src, int nb, int64_t cols,
                           float *const *rows) {
    enum { RB = DT_FOLD_ROWS };
    _Static_assert(RB == 4, "the loop below writes four rows");
    float *restrict w0 = rows[0], *restrict w1 = rows[1], *restrict w2 = rows[2], *restrict w3 = rows[3];
    if (lt == DT_FOLD_EMBED) { embed_fold_rows(a, weight, src, nb, cols, rows); return; }
    const dt_lora_ref *r = lt == DT_FOLD_LM_HEAD ? &a->head_ref : dt_adapter_lora_at(a, layer, lt);
    const int64_t rk = r->A->shape[0];
    const float s = r->scale * weight;
    const float *A = dt_f32(r->A), *B = dt_f32(r->B); // A (rk, cols), B (out, rk)
    float c[RB][4];
    for (int64_t k = 0; k < rk; k += 4) {
        const int kn = rk - k < 4 ? (int)(rk - k) : 4; // A's rows in this pass; missing ones get c = 0
        for (int b = 0; b < RB; b++)
            for (int q = 0; q < 4; q++) c[b][q] = b < nb && q < kn ? s * B[src[b] * rk + k + q] : 0.0f;
        const float *restrict a0 = A + k * cols, *restrict a1 = kn > 1 ? a0 + cols : a0, *restrict a2 = kn > 2 ? a0 + 2 * cols : a0,
                    *restrict a3 = kn > 3 ? a0 + 3 * cols : a0;
        #pragma omp simd
        for (int64_t x = 0; x < cols; x++) {
            const float v0 = a0[x], v1 = a1[x], v2 = a2[x], v3 = a3[x];
            w0[x] = fmaf(c[0][3], v3, fmaf(c[0][2], v2, fmaf(c[0][1], v1, fmaf(c[0][0], v0, w0[x]))));
            w1[x] = fmaf(c[1][3], v3, fmaf(c[1][2], v2, fmaf(c[1][1], v1, fmaf(c[1][0], v0, w1[x]))));
            w2[x] = fmaf(c[2][3], v3, fmaf(c[2][2], v2, fmaf(c[2][1], v1, fmaf(c[2][0], v0, w2[x]))));
            w3[x] = fmaf(c[3][3], v3, fmaf(c[3][2], v2, fmaf(c[3][1], v1, fmaf(c[3][0], v0, w3[x]))));
        }
    }
    if (layer >= 0 && dt_dora_active(a, layer, lt)) dt_dora_fold_rows(a, layer, lt, src, nb, cols, rows);
}

const dt_method dt_method_lora = {
    .name = "lora",
    .peft_type = "LORA",
    .from_json = lora_from_json,
    .to_json = lora_to_json,
    .folds = lora_folds,
    .fold_rows = lora_fold_rows,
    .free_state = dt_dora_free,
};
