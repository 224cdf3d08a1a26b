// PEFT LoRA adapter -> llama.cpp GGUF LoRA adapter, and the llama.cpp conventions shared with merge.
#include "peft/export_gguf.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "models/gguf.h"
#include "models/tensor_names.h"
#include "models/weights.h"
#include "peft/merge.h"

int dt_gguf_arch(dt_ctx *ctx, const dt_model_config *cfg, const char *path, const char **arch) {
    *arch = NULL;
    switch (cfg->arch) {
    case DT_ARCH_LLAMA:
    case DT_ARCH_MISTRAL: *arch = "llama"; break; // the converter maps MistralForCausalLM to LlamaModel
    case DT_ARCH_QWEN2: *arch = "qwen2"; break;
    case DT_ARCH_QWEN3:
        // llama.cpp's qwen3 graph has no q/k/v biases; the file would not load.
        if (cfg->attention_bias)
            return dt_fail(ctx, DT_EUNSUPPORTED, "%s: Qwen3 with attention_bias cannot be exported: llama.cpp's qwen3 has no q/k/v biases", path);
        *arch = "qwen3";
        break;
    default:
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: architecture '%s' has no llama.cpp GGUF form here", path, cfg->arch_name);
    }
    if (cfg->rope_interleaved)
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: interleaved RoPE weights cannot be exported", path);
    return DT_OK;
}

void dt_gguf_rope_factors(const dt_model_config *c, float *out) {
    const int hd = c->head_dim;
    const double old_ctx = c->rope_original_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    const double low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
    for (int i = 0; i < hd / 2; i++) {
        // torch computes the frequencies in float32: base ** (arange(0, dim, 2) / dim).
        float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)hd);
        double wavelen = 2.0 * M_PI / (double)freq;
        double f;
        if (wavelen < high_wavelen) f = 1.0;
        else if (wavelen > low_wavelen) f = c->rope_factor;
        else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f = 1.0 / ((1.0 - smooth) / c->rope_factor + smooth);
        }
        out[i] = (float)f;
    }
}

int dt_gguf_set_model_keys(dt_ctx *ctx, dt_gguf_writer *w, const dt_model_config *c, const char *arch,
                           const char *name, uint32_t file_type) {
    char k[128];
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", arch, suffix), k)
    int rc = dt_gguf_set_str(ctx, w, "general.architecture", arch);
    if (!rc) rc = dt_gguf_set_str(ctx, w, "general.type", "model");
    if (!rc) rc = dt_gguf_set_str(ctx, w, "general.name", name);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("block_count"), (uint32_t)c->num_layers);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("context_length"), (uint32_t)c->max_position_embeddings);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("embedding_length"), (uint32_t)c->hidden_size);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("attention.head_count"), (uint32_t)c->num_heads);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("attention.head_count_kv"), (uint32_t)c->num_kv_heads);
    if (!rc) rc = dt_gguf_set_f32(ctx, w, KEY("rope.freq_base"), c->rope_theta);
    if (!rc) rc = dt_gguf_set_f32(ctx, w, KEY("attention.layer_norm_rms_epsilon"), c->rms_norm_eps);
    // The converter writes key/value lengths whenever the config has head_dim (transformers' Llama and
    // Qwen3 configs always do); llama.cpp otherwise assumes hidden / heads, so they are always right.
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("attention.key_length"), (uint32_t)c->head_dim);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, KEY("vocab_size"), (uint32_t)c->vocab_size);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, "general.file_type", file_type);
    if (!rc) rc = dt_gguf_set_u32(ctx, w, "general.quantization_version", 2);
#undef KEY
    return rc;
}

// The last component of a path, without trailing slashes, into buf.
static void base_name(const char *path, char *buf, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, n, "%.*s", (int)(len - start), path + start);
}

// Rows of module m's output that form heads for the q/k permutation: n_head for q, n_kv_head for k, else 0.
static int permute_heads(const dt_model_config *c, int m) {
    if (!dt_gguf_permutes_qk(c)) return 0;
    return m == DT_MOD_Q ? c->num_heads : m == DT_MOD_K ? c->num_kv_heads : 0;
}

static void pair_names(int layer, int m, char a[96], char b[96]) {
    char base[64];
    dt_tn_layer_gguf(base, sizeof base, layer, (dt_layer_tensor)m);
    snprintf(a, 96, "%s.lora_a", base);
    snprintf(b, 96, "%s.lora_b", base);
}

// The factor folded into module (layer, m)'s lora_b so that llama.cpp applies exactly the trained scale.
// llama.cpp has one adapter.lora.alpha per file and scales each tensor by alpha / rank_of_that_tensor
// (lora_b's ne[0]), or by 1 when alpha is 0 (llama-graph.cpp, build_lora_mm). The file's alpha is the one
// the config's own r and lora_alpha need (see dt_export_lora_gguf), so modules that use those need
// nothing: plain LoRA with the default alpha at any rank (alpha / r_i either way), rsLoRA at the default
// alpha and rank. A module with another alpha (alpha_pattern), or rsLoRA at another rank (rank_pattern:
// llama.cpp divides by r_i, not sqrt(r_i)), gets lora_b multiplied by wanted / llama.cpp's scale. The
// test is on the parameters, not on the two floats, so that rounding never rescales a uniform adapter.
static double fold_factor(const dt_adapter *a, int layer, int m, float file_alpha) {
    const dt_lora_ref *r = dt_adapter_lora_at(a, layer, m);
    const int64_t rank = r->A->shape[0];
    const double alpha = a->alphas[(size_t)layer * DT_MOD_COUNT + (size_t)m];
    if (file_alpha != 0.0f && alpha == (double)a->lora.alpha && (!a->lora.use_rslora || rank == a->lora.r)) return 1.0;
    const double wanted = a->lora.use_rslora ? alpha / sqrt((double)rank) : alpha / (double)rank;
    const double llama = file_alpha != 0.0f ? (double)(file_alpha / (float)rank) : 1.0; // computed in float there
    return wanted / llama;
}

static int write_adapter(dt_ctx *ctx, const dt_adapter *a, const dt_model_config *c, const char *arch,
                         const char *name, const char *out_path, float alpha, int *n_folded) {
    dt_gguf_writer *w;
    int rc = dt_gguf_writer_new(ctx, out_path, &w);
    if (rc) return rc;
    rc = dt_gguf_set_str(ctx, w, "general.architecture", arch);
    if (!rc) rc = dt_gguf_set_str(ctx, w, "general.type", "adapter");
    if (!rc) rc = dt_gguf_set_str(ctx, w, "general.name", name);
    if (!rc) rc = dt_gguf_set_str(ctx, w, "adapter.type", "lora");
    if (!rc) rc = dt_gguf_set_f32(ctx, w, "adapter.lora.alpha", alpha);
    const int L = c->num_layers;
    char an[96], bn[96];
    for (int l = 0; l < L && !rc; l++)
        for (int m = 0; m < DT_MOD_COUNT && !rc; m++) {
            const dt_lora_ref *r = dt_adapter_lora_at(a, l, m);
            if (!r) continue;
            pair_names(l, m, an, bn);
            rc = dt_gguf_add_tensor(ctx, w, an, DT_GGML_F32, 2, r->A->shape); // (r, in): ggml ne {in, r}
            if (!rc) rc = dt_gguf_add_tensor(ctx, w, bn, DT_GGML_F32, 2, r->B->shape); // (out, r): ne {r, out}
        }
    // The embedding's and the head's (untied models only: see dt_export_lora_gguf). llama.cpp applies
    // token_embd's as get_rows(lora_a, ids) then lora_b: lora_a (V, r) = lora_embedding_A^T, lora_b (D, r) =
    // lora_embedding_B as it is (its is_token_embd shape check); output's as any linear: A (r, D), B (V, r).
    float *emb_a = NULL; // (V, r)
    const dt_lora_ref *er = a->lora.embed_tokens ? &a->embed_ref : NULL, *hr = a->lora.lm_head ? &a->head_ref : NULL;
    char ean[96], ebn[96], han[96], hbn[96];
    snprintf(ean, sizeof ean, "%s.lora_a", dt_tn_global_gguf(DT_GT_EMBED));
    snprintf(ebn, sizeof ebn, "%s.lora_b", dt_tn_global_gguf(DT_GT_EMBED));
    snprintf(han, sizeof han, "%s.lora_a", dt_tn_global_gguf(DT_GT_LM_HEAD));
    snprintf(hbn, sizeof hbn, "%s.lora_b", dt_tn_global_gguf(DT_GT_LM_HEAD));
    if (!rc && er) {
        const int64_t r = er->A->shape[0], V = er->A->shape[1];
        if (!(emb_a = malloc((size_t)(V * r) * sizeof(float)))) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
        for (int64_t v = 0; emb_a && v < V; v++)
            for (int64_t k = 0; k < r; k++) emb_a[v * r + k] = dt_f32(er->A)[k * V + v];
        if (!rc) rc = dt_gguf_add_tensor(ctx, w, ean, DT_GGML_F32, 2, (int64_t[]){V, r});
        if (!rc) rc = dt_gguf_add_tensor(ctx, w, ebn, DT_GGML_F32, 2, er->B->shape); // (D, r)
    }
    if (!rc && hr) {
        rc = dt_gguf_add_tensor(ctx, w, han, DT_GGML_F32, 2, hr->A->shape);
        if (!rc) rc = dt_gguf_add_tensor(ctx, w, hbn, DT_GGML_F32, 2, hr->B->shape);
    }
    float *buf = NULL; // (out, r) lora_b as written when it is permuted (q/k) or rescaled
    *n_folded = 0;
    for (int l = 0; l < L && !rc; l++)
        for (int m = 0; m < DT_MOD_COUNT && !rc; m++) {
            const dt_lora_ref *r = dt_adapter_lora_at(a, l, m);
            if (!r) continue;
            pair_names(l, m, an, bn);
            rc = dt_gguf_write_tensor(ctx, w, an, r->A->data);
            if (rc) break;
            const int heads = permute_heads(c, m);
            const double f = fold_factor(a, l, m, alpha);
            const void *b = r->B->data;
            const int64_t rows = r->B->shape[0], cols = r->B->shape[1], n = rows * cols;
            if (heads || f != 1.0) {
                float *p = realloc(buf, (size_t)n * sizeof(float));
                if (!p) { rc = dt_fail(ctx, DT_ENOMEM, "out of memory"); break; }
                buf = p;
                if (heads) dt_gguf_permute_rows(buf, b, rows, (size_t)cols * sizeof(float), heads, false);
                else memcpy(buf, b, (size_t)n * sizeof(float));
                if (f != 1.0) {
                    for (int64_t e = 0; e < n; e++) buf[e] = (float)(buf[e] * f);
                    (*n_folded)++;
                }
                b = buf;
            }
            rc = dt_gguf_write_tensor(ctx, w, bn, b);
        }
    free(buf);
    // llama.cpp scales every pair by the file's alpha / rank; these use the config's r and alpha unless a
    // pattern gave them others, which export refuses (dt_export_lora_gguf).
    if (!rc && er) rc = dt_gguf_write_tensor(ctx, w, ean, emb_a);
    if (!rc && er) rc = dt_gguf_write_tensor(ctx, w, ebn, er->B->data);
    if (!rc && hr) rc = dt_gguf_write_tensor(ctx, w, han, hr->A->data);
    if (!rc && hr) rc = dt_gguf_write_tensor(ctx, w, hbn, hr->B->data);
    free(emb_a);
    if (!rc) rc = dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    return rc ? rc : dt_gguf_check_spec(ctx, out_path);
}

int dt_export_lora_gguf(dt_ctx *ctx, const char *adapter_dir, const char *model_path, const char *out_path,
                        dt_export_info *info) {
    dt_model_config cfg;
    dt_weights *wts = NULL;
    int rc = dt_weights_open(ctx, model_path, &cfg, &wts);
    dt_weights_close(wts); // only the config is needed
    if (rc) return rc;
    const char *arch;
    if ((rc = dt_gguf_arch(ctx, &cfg, model_path, &arch))) return rc;
    dt_adapter *a = NULL;
    if ((rc = dt_adapter_load_cfg(ctx, adapter_dir, &cfg, &a))) return rc;
    if (a->method == &dt_method_lora && a->lora.use_dora) {
        dt_adapter_free(a);
        return dt_fail(ctx, DT_EINPUT, "%s: a DoRA adapter (use_dora) has no llama.cpp GGUF adapter form: llama.cpp applies "
                       "x A^T B^T, not DoRA's per-row magnitude; merge it into the model instead (deltatune merge)", adapter_dir);
    }
    if (a->method != &dt_method_lora) {
        int rc2 = dt_fail(ctx, DT_EINPUT, "%s: a %s adapter has no llama.cpp GGUF adapter form (a llama.cpp adapter holds "
                          "only lora_a/lora_b pairs: no biases, scales or extra layers); merge it into the model instead "
                          "(deltatune merge) where the method allows", adapter_dir, a->method->peft_type);
        dt_adapter_free(a);
        return rc2;
    }
    if ((a->lora.embed_tokens || a->lora.lm_head) && cfg.tie_word_embeddings) {
        dt_adapter_free(a);
        return dt_fail(ctx, DT_EINPUT, "%s: LoRA on embed_tokens / lm_head of a model with tied embeddings has no llama.cpp "
                       "adapter form: the GGUF has no output.weight (llama.cpp uses token_embd for both), so the two cannot "
                       "carry separate adapters; merge it into the model instead (deltatune merge unties it)", adapter_dir);
    }
    if ((a->lora.embed_tokens && (a->embed_ref.A->shape[0] != a->lora.r || dt_lora_scale_of(a->lora.alpha, a->lora.r, a->lora.use_rslora) != a->embed_ref.scale)) ||
        (a->lora.lm_head && (a->head_ref.A->shape[0] != a->lora.r || dt_lora_scale_of(a->lora.alpha, a->lora.r, a->lora.use_rslora) != a->head_ref.scale))) {
        dt_adapter_free(a);
        return dt_fail(ctx, DT_EINPUT, "%s: a rank_pattern / alpha_pattern entry for embed_tokens or lm_head is not exported to "
                       "GGUF (llama.cpp has one alpha per file); merge instead", adapter_dir);
    }
    // llama.cpp multiplies by alpha / r; with rsLoRA the trained scale is alpha / sqrt(r) = (alpha sqrt(r)) / r.
    // These are the config's r and lora_alpha; modules with other ones (rank_pattern, alpha_pattern) get
    // the difference folded into their lora_b (fold_factor).
    const int r = a->lora.r;
    float alpha = a->lora.use_rslora ? (float)((double)a->lora.alpha * sqrt((double)r)) : a->lora.alpha;
    char name[256];
    base_name(adapter_dir, name, sizeof name);
    int n_folded = 0;
    rc = write_adapter(ctx, a, &cfg, arch, name, out_path, alpha, &n_folded);
    if (!rc && info) {
        info->n_pairs = 0;
        info->rank_min = info->rank_max = 0;
        for (int l = 0; l < cfg.num_layers; l++)
            for (int m = 0; m < DT_MOD_COUNT; m++) {
                const dt_lora_ref *ref = dt_adapter_lora_at(a, l, m);
                if (!ref) continue;
                const int rk = (int)ref->A->shape[0];
                if (!info->n_pairs++) info->rank_min = info->rank_max = rk;
                if (rk < info->rank_min) info->rank_min = rk;
                if (rk > info->rank_max) info->rank_max = rk;
            }
        info->n_folded = n_folded;
        info->alpha = alpha;
        info->arch = arch;
    }
    dt_adapter_free(a);
    return rc;
}
