#include "models/llama_infer.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int dt_kv_cache_init(dt_ctx *ctx, const dt_llama *m, int64_t cap, dt_kv_cache *c) {
    const dt_model_config *cf = &m->cfg;
    size_t kvn = (size_t)cf->num_layers * (size_t)cap * (size_t)cf->num_kv_heads * (size_t)cf->head_dim;
    memset(c, 0, sizeof *c);
    c->cap = cap;
    c->k = malloc(kvn * sizeof(float));
    c->v = malloc(kvn * sizeof(float));
    if (!c->k || !c->v) { dt_kv_cache_free(c); return dt_fail(ctx, DT_ENOMEM, "out of memory for a %lld-position KV cache", (long long)cap); }
    return DT_OK;
}

void dt_kv_cache_free(dt_kv_cache *c) {
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

// y (n, out) = [y +] x W^T + bias + LoRA ; h is (n, r) scratch, fs the frozen-linear entry's scratch
static void linear(const dt_backend *be, const float *x, int64_t n, const dt_tensor *W, const dt_tensor *bias,
                   const dt_lora_ref *l, float *y, bool acc, float *h, void *fs) {
    int64_t in = W->shape[1], out = W->shape[0];
    be->frozen_fwd(be, y, acc, x, n, W, fs);
    if (bias) be->add_bias(be, y, dt_f32(bias), n, out);
    for (; l; l = l->next) { // several adapters on one module add up
        int64_t r = l->A->shape[0];
        be->gemm(be, false, true, n, r, in, 1.0f, x, in, dt_f32(l->A), in, 0.0f, h, r);
        be->gemm(be, false, true, n, out, r, l->scale, h, r, dt_f32(l->B), r, 1.0f, y, out);
    }
}

// out (n, H*hd): causal attention of n new queries at positions p0.. over cached keys 0..p0+n-1.
static void attend(const float *q, const float *kc, const float *vc, float *out, int64_t n, int64_t p0, int64_t H,
                   int64_t KV, int64_t hd) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t group = H / KV;
    #pragma omp parallel for collapse(2)
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < H; h++) {
            const float *qi = q + (i * H + h) * hd;
            int64_t len = p0 + i + 1, g = h / group;
            float *o = out + (i * H + h) * hd;
            float m = -INFINITY, sum = 0;
            for (int64_t e = 0; e < hd; e++) o[e] = 0;
            // one pass with a running max (online softmax), so no (len) buffer is needed
            for (int64_t j = 0; j < len; j++) {
                const float *kj = kc + (j * KV + g) * hd, *vj = vc + (j * KV + g) * hd;
                float s = 0;
                for (int64_t e = 0; e < hd; e++) s += qi[e] * kj[e];
                s *= scale;
                float mn = s > m ? s : m, corr = expf(m - mn), w = expf(s - mn);
                sum = sum * corr + w;
                for (int64_t e = 0; e < hd; e++) o[e] = o[e] * corr + w * vj[e];
                m = mn;
            }
            for (int64_t e = 0; e < hd; e++) o[e] /= sum;
        }
}

int dt_llama_infer(dt_ctx *ctx, const dt_llama *m, const dt_llama_adapters *ad, dt_kv_cache *c, const int32_t *ids,
                   int64_t n_ids, float *logits) {
    const dt_model_config *cf = &m->cfg;
    const dt_backend *be = m->be;
    const int64_t D = cf->hidden_size, H = cf->num_heads, KV = cf->num_kv_heads, hd = cf->head_dim;
    const int64_t I = cf->intermediate_size, L = cf->num_layers, qd = H * hd, kvd = KV * hd;
    const int64_t P = c->len == 0 && ad && ad->prompt ? ad->prompt->shape[0] : 0, n = P + n_ids;
    if (n <= 0) return dt_fail(ctx, DT_EINPUT, "nothing to evaluate");
    if (c->len + n > c->cap) return dt_fail(ctx, DT_EINPUT, "the context is full (%lld positions)", (long long)c->cap);
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= cf->vocab_size) return dt_fail(ctx, DT_EINPUT, "token id %d is outside the vocabulary", ids[i]);
    int64_t rmax = 1;
    for (int64_t i = 0; ad && ad->lora && i < L * DT_MOD_COUNT; i++)
        for (const dt_lora_ref *l = ad->lora[i]; l; l = l->next)
            if (l->A->shape[0] > rmax) rmax = l->A->shape[0];
    // Scratch for this call (generation is not the training loop: one allocation per call is fine).
    size_t floats = (size_t)n * (size_t)(2 * D + 2 * qd + 3 * I + rmax + H + hd);
    // The frozen-linear entry's scratch: the most any of this model's weights asks for at n rows.
    size_t fsb = be->frozen_scratch_bytes(be, &m->lm_head, 1);
    for (int64_t l = 0; l < L; l++)
        for (int t = 0; t < DT_MOD_COUNT; t++) {
            size_t b = be->frozen_scratch_bytes(be, &m->layers[l].w[t], n);
            if (b > fsb) fsb = b;
        }
    float *x = malloc(floats * sizeof(float) + fsb);                 // (n, D)
    if (!x) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    void *fs = fsb ? (uint8_t *)x + floats * sizeof(float) : NULL;
    float *xn = x + n * D, *qb = xn + n * D, *att = qb + n * qd;      // (n, D), (n, H*hd), (n, H*hd)
    float *gate = att + n * qd, *up = gate + n * I, *tmp = up + n * I; // (n, I) each
    float *h = tmp + n * I, *rstd = h + n * rmax, *cs = rstd + n * H; // (n, r), (n * H), (n, hd)
    for (int64_t i = 0; i < P; i++) memcpy(x + i * D, dt_f32(ad->prompt) + i * D, (size_t)D * sizeof(float));
    be->embedding_fwd(be, x + P * D, ids, n_ids, &m->embed);
    int32_t *pos = malloc((size_t)n * sizeof(int32_t));
    if (!pos) { free(x); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)(c->len + i);
    be->rope_table(be, cs, pos, m->inv_freq, n, hd);
    for (int64_t l = 0; l < L; l++) {
        const dt_llama_layer *ly = &m->layers[l];
        const dt_lora_ref *const *lo = ad && ad->lora ? ad->lora + l * DT_MOD_COUNT : NULL;
#define LORA(mod) (lo ? lo[mod] : NULL)
        float *kc = c->k + (size_t)l * c->cap * kvd, *vc = c->v + (size_t)l * c->cap * kvd; // (cap, KV*hd)
        float *kn = kc + c->len * kvd, *vn = vc + c->len * kvd;
        be->rmsnorm_fwd(be, xn, rstd, x, dt_f32(&ly->attn_norm), n, D, cf->rms_norm_eps);
        linear(be, xn, n, &ly->w[DT_MOD_Q], cf->attention_bias ? &ly->q_bias : NULL, LORA(DT_MOD_Q), qb, false, h, fs);
        linear(be, xn, n, &ly->w[DT_MOD_K], cf->attention_bias ? &ly->k_bias : NULL, LORA(DT_MOD_K), kn, false, h, fs);
        linear(be, xn, n, &ly->w[DT_MOD_V], cf->attention_bias ? &ly->v_bias : NULL, LORA(DT_MOD_V), vn, false, h, fs);
        if (cf->qk_norm) {
            be->rmsnorm_fwd(be, qb, rstd, qb, dt_f32(&ly->q_norm), n * H, hd, cf->rms_norm_eps);
            be->rmsnorm_fwd(be, kn, rstd, kn, dt_f32(&ly->k_norm), n * KV, hd, cf->rms_norm_eps);
        }
        be->rope(be, qb, cs, n, H, hd, false);
        be->rope(be, kn, cs, n, KV, hd, false);
        attend(qb, kc, vc, att, n, c->len, H, KV, hd);
        linear(be, att, n, &ly->w[DT_MOD_O], NULL, LORA(DT_MOD_O), x, true, h, fs);
        be->rmsnorm_fwd(be, xn, rstd, x, dt_f32(&ly->ffn_norm), n, D, cf->rms_norm_eps);
        linear(be, xn, n, &ly->w[DT_MOD_GATE], NULL, LORA(DT_MOD_GATE), gate, false, h, fs);
        linear(be, xn, n, &ly->w[DT_MOD_UP], NULL, LORA(DT_MOD_UP), up, false, h, fs);
        be->swiglu_fwd(be, tmp, gate, up, n * I);
        linear(be, tmp, n, &ly->w[DT_MOD_DOWN], NULL, LORA(DT_MOD_DOWN), x, true, h, fs);
#undef LORA
    }
    free(pos);
    be->rmsnorm_fwd(be, xn, rstd, x + (n - 1) * D, dt_f32(&m->norm), 1, D, cf->rms_norm_eps);
    be->frozen_fwd(be, logits, false, xn, 1, &m->lm_head, fs);
    c->len += n;
    free(x);
    return DT_OK;
}
