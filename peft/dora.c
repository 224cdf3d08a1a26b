// DoRA (Liu et al. 2024; PEFT's use_dora): LoRA whose adapted weight W + s B A has each output row
// rescaled to a learned magnitude, y = b + (m / ||W + s B A||_row) * (x W^T + s x A^T B^T). The norm
// is treated as a constant (detached), as PEFT's DoraLinearLayer does, so gradients reach A and B only
// through the scaled LoRA path and m through the scale.
//
// Where it attaches: LoRA's own hook on the linear (peft/lora.c) gives x W^T + b + s x A^T B^T; a site on
// that module's output (models/llama.h) then scales it about the bias by g = m / norm with dt_scale_cols,
// an ordinary autograd op. The norm is formed without the (out, in) matrix W + s B A:
//   ||W_i + s (BA)_i||^2 = ||W_i||^2 + 2 s sum_k B_ik (A W^T)_ki + s^2 sum_k (B A A^T)_ik B_ik,
// two thin products (r rows) and one pass over W's rows.
//
// Keys: "...<module>.lora_magnitude_vector" (out), PEFT's name after its save drops ".weight".
// Dropout: PEFT applies W to the dropped-out input inside DoRA's term as well; that path is not built
// here, so training with lora_dropout > 0 is refused (evaluation has no dropout and is exact).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/dtype.h"
#include "peft/dora.h"

typedef struct dora_state {
    const dt_lora_ref *const *refs; // (L * DT_MOD_COUNT) the adapter's LoRA refs
    dt_tensor **mag;                // (L * DT_MOD_COUNT) magnitude vectors (out), NULL where none
    bool *at;                       // (L * DT_MOD_COUNT) the modules whose output the site rescales
} dora_state;

void dt_dora_free(void *p) {
    dora_state *s = p;
    if (!s) return;
    free(s->mag);
    free(s->at);
    free(s);
}

// ||W_i||^2 of a frozen weight's row i, any storage type (dequantized on the CPU; f32 on a device).
static double row_sumsq(const dt_backend *be, const dt_tensor *W, int64_t i, float *row) {
    const int64_t in = W->shape[1];
    if (W->device != DT_DEV_CPU) return be->sumsq(be, dt_f32(W) + i * in, in);
    dt_tensor_row_f32(W, i, row);
    double s = 0;
    for (int64_t x = 0; x < in; x++) s += (double)row[x] * row[x];
    return s;
}

// 1 / ||W_i + s (BA)_i|| for the out rows of frozen W into inv (host, out floats). Returns 0, or -1 when the
// graph failed.
static int inv_norms(dt_graph *g, const dt_tensor *W, const dt_lora_ref *l, float *inv) {
    const dt_backend *be = g->be;
    const int64_t out = W->shape[0], in = W->shape[1], r = l->A->shape[0];
    const float s = l->scale;
    float *P = dt_graph_scratch(g, (size_t)(r * out + r * r + out * r) * sizeof(float)); // (r, out), (r, r), (out, r)
    float *h = malloc((size_t)(2 * r * out + out * r + in) * sizeof(float)); // host: P, Q, B and one row of W
    if (!P || !h) { free(h); return -1; }
    float *G = P + r * out, *Q = G + r * r;
    if (dt_frozen_fwd(g, P, false, dt_f32(l->A), r, W)) { free(h); return -1; }                      // P = A W^T
    be->gemm(be, false, true, r, r, in, 1.0f, dt_f32(l->A), in, dt_f32(l->A), in, 0.0f, G, r);       // G = A A^T
    be->gemm(be, false, false, out, r, r, 1.0f, dt_f32(l->B), r, G, r, 0.0f, Q, r);                  // Q = B G
    float *hP = h, *hQ = h + r * out, *hB = hQ + out * r, *row = hB + out * r;
    be->download(be, hP, P, (size_t)(r * out) * sizeof(float));
    be->download(be, hQ, Q, (size_t)(out * r) * sizeof(float));
    be->download(be, hB, dt_f32(l->B), (size_t)(out * r) * sizeof(float));
    for (int64_t i = 0; i < out; i++) {
        double cross = 0, sq = 0;
        for (int64_t k = 0; k < r; k++) {
            cross += (double)hB[i * r + k] * hP[k * out + i];
            sq += (double)hQ[i * r + k] * hB[i * r + k];
        }
        const double n2 = row_sumsq(be, W, i, row) + 2.0 * s * cross + (double)s * s * sq;
        inv[i] = (float)(1.0 / sqrt(n2 > 0 ? n2 : 1e-30));
    }
    free(h);
    return 0;
}

static dt_tensor *dora_site(dt_graph *g, const void *self, const dt_llama *m, int layer, int mod, dt_tensor *y) {
    const dora_state *s = self;
    const size_t k = (size_t)layer * DT_MOD_COUNT + (size_t)mod;
    const dt_lora_ref *l = s->refs[k];
    const dt_llama_layer *ly = &m->layers[layer];
    if (g->training && l->dropout > 0.0f) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINPUT, "DoRA with lora_dropout > 0 cannot be trained here (PEFT's DoRA also applies the base "
                "weight to the dropped-out input); set the dropout to 0");
        return NULL;
    }
    const int64_t out = ly->w[mod].shape[0];
    dt_tensor *inv = dt_graph_tensor(g, 1, (int64_t[]){out}); // (out) 1 / ||W + s B A||_row, no gradient
    float *host = malloc((size_t)out * sizeof(float));
    if (!inv || !host || inv_norms(g, &ly->w[mod], l, host)) {
        free(host);
        if (!g->failed) { g->failed = true; dt_fail(g->ctx, DT_ENOMEM, "out of memory for DoRA's weight norms"); }
        return NULL;
    }
    g->be->upload(g->be, dt_f32(inv), host, (size_t)out * sizeof(float));
    free(host);
    dt_tensor *scale = dt_mul(g, s->mag[k], inv); // (out) m / norm
    const dt_tensor *bias[DT_MOD_COUNT] = {&ly->q_bias, &ly->k_bias, &ly->v_bias, &ly->o_bias};
    const dt_tensor *b = m->cfg.attention_bias && mod <= DT_MOD_O && bias[mod]->data ? bias[mod] : NULL;
    return dt_scale_cols(g, y, scale, b); // (y - b) * m / norm + b
}

int dt_dora_attach(dt_ctx *ctx, dt_adapter *a, const dt_llama *m, int first) {
    const int L = m->cfg.num_layers;
    dora_state *s = calloc(1, sizeof *s);
    if (s) {
        s->mag = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->mag);
        s->at = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->at);
    }
    if (!s || !s->mag || !s->at) { dt_dora_free(s); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    s->refs = a->ref_ptrs;
    a->state = s;
    for (int l = 0, i = first; l < L; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            const size_t k = (size_t)l * DT_MOD_COUNT + (size_t)mod;
            if (!a->ref_ptrs[k]) continue;
            dt_tensor *mag = &a->tensors[i++];
            s->mag[k] = mag;
            s->at[k] = true;
            // PEFT's start: ||W + s B A||_row with B = 0, the rows' norms (a model without weights, as merge
            // passes, gets its values from the file).
            const dt_tensor *W = m->layers ? &m->layers[l].w[mod] : NULL;
            float *row = W && W->data ? malloc((size_t)W->shape[1] * sizeof(float)) : NULL;
            if (W && W->data && !row) return dt_fail(ctx, DT_ENOMEM, "out of memory");
            for (int64_t e = 0; row && e < mag->shape[0]; e++) dt_f32(mag)[e] = (float)sqrt(row_sumsq(m->be, W, e, row));
            free(row);
        }
    a->view.site = (dt_llama_site){dora_site, s, s->at};
    return DT_OK;
}

bool dt_dora_active(const dt_adapter *a, int layer, int lt) {
    const dora_state *s = a->state;
    return s && lt >= 0 && lt < DT_MOD_COUNT && s->mag[(size_t)layer * DT_MOD_COUNT + (size_t)lt];
}

void dt_dora_fold_rows(const dt_adapter *a, int layer, int lt, const int64_t *src, int nb, int64_t cols, float *const *rows) {
    const dora_state *s = a->state;
    const float *mag = dt_f32(s->mag[(size_t)layer * DT_MOD_COUNT + (size_t)lt]);
    for (int b = 0; b < nb; b++) {
        double n2 = 0;
        for (int64_t x = 0; x < cols; x++) n2 += (double)rows[b][x] * rows[b][x];
        const float f = (float)(mag[src[b]] / sqrt(n2 > 0 ? n2 : 1e-30));
        for (int64_t x = 0; x < cols; x++) rows[b][x] *= f;
    }
}
