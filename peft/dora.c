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
//
// Dropout. PEFT 0.13.2's Linear.forward with use_dora passes the dropped-out input xd = dropout(x) to
// DoraLinearLayer, whose term is (g - 1) (xd W^T) + g s xd A^T B^T on top of the base x W^T + b, with
// g = m / norm. Without dropout (or in evaluation) that is g (x W^T + s x A^T B^T) + b: LoRA's own hook
// and the site above. Training with dropout instead goes through DoRA's hook on the linear (dora_hook_ops
// below), which sees the input: y += s h B^T + (g - 1) q with h = xd A^T and q = xd (W + s B A)^T, and the
// site leaves that output alone. Its backward, with G = dy g: dm += sum_n dy q / norm, dB += s G^T h,
// dh = s G B, dA += dh^T xd, dx += mask((dy (g - 1)) W + dh A) (the frozen dy W is the linear's own). That
// path runs on the CPU backend.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/dtype.h"
#include "peft/dora.h"

// One adapted module, the self of its DoRA hook.
typedef struct dora_mod {
    const dt_lora_ref *l; // A (r, in), B (out, r), scale, dropout
    const dt_tensor *W;   // the frozen weight (out, in); NULL in a model without weights (merge)
    dt_tensor *mag;       // (out)
} dora_mod;

typedef struct dora_state {
    const dt_lora_ref *const *refs; // (L * DT_MOD_COUNT) the adapter's LoRA refs
    dt_tensor **mag;                // (L * DT_MOD_COUNT) magnitude vectors (out), NULL where none
    bool *at;                       // (L * DT_MOD_COUNT) the modules whose output the site rescales
    dora_mod *mods;                 // (L * DT_MOD_COUNT) the hooks' selves
} dora_state;

void dt_dora_free(void *p) {
    dora_state *s = p;
    if (!s) return;
    free(s->mag);
    free(s->at);
    free(s->mods);
    free(s);
}

// Whether this forward takes DoRA's dropout path (see the top of the file).
static bool dropout_path(const dt_graph *g, const dt_lora_ref *l) { return g->training && l->dropout > 0.0f; }

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
    if (dropout_path(g, l)) return y; // the hook has added DoRA's whole term
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

// ---- the hook: LoRA's own, or DoRA's dropout path -------------------------------------------------------

// Room for LoRA's hook states inside ours (checked against dt_lora_hook_ops in dt_dora_attach).
enum { LORA_STATE_MAX = 64, LORA_GROUP_STATE_MAX = 256 };

typedef struct {
    bool full;                   // the dropout path was taken
    uint64_t seed;               // its dropout mask
    float *h, *q, *gv, *inv;     // (N, r) xd A^T; (N, out) xd (W + s B A)^T; (out) g; (out) 1 / norm
    unsigned char lora[LORA_STATE_MAX]; // LoRA's state on the other path
} dora_hstate;

static dt_linear_hook lora_of(const dora_mod *d) { return dt_lora_hook(d->l); }

// g and 1 / norm (out each) into the arena, for module d. Returns 0, or -1 when the graph failed.
static int scales(dt_graph *g, const dora_mod *d, float **gv, float **inv) {
    const int64_t out = d->W->shape[0];
    *gv = dt_graph_scratch(g, (size_t)out * sizeof(float));
    *inv = dt_graph_scratch(g, (size_t)out * sizeof(float));
    if (!*gv || !*inv || inv_norms(g, d->W, d->l, *inv)) return -1;
    for (int64_t i = 0; i < out; i++) (*gv)[i] = dt_f32(d->mag)[i] * (*inv)[i];
    return 0;
}

static int dora_fwd(dt_graph *g, const dt_linear_hook *hk, const float *x, int64_t N, float *y, void *state) {
    const dora_mod *d = hk->self;
    const dt_lora_ref *l = d->l;
    dora_hstate *st = state;
    if (!dropout_path(g, l)) {
        const dt_linear_hook lh = lora_of(d);
        return dt_lora_hook_ops.fwd(g, &lh, x, N, y, st->lora);
    }
    const dt_backend *be = g->be;
    if (be->device != DT_DEV_CPU || !d->W) {
        g->failed = true;
        dt_fail(g->ctx, DT_EUNSUPPORTED, "DoRA with lora_dropout > 0 trains on the CPU backend only");
        return -1;
    }
    const int64_t r = l->A->shape[0], in = l->A->shape[1], out = l->B->shape[0];
    st->full = true;
    st->seed = dt_graph_next_dropout_seed(g);
    float *xd = dt_graph_temp(g, (size_t)(N * in) * sizeof(float)); // (N, in) regenerated in the backward
    st->h = dt_graph_scratch(g, (size_t)(N * r) * sizeof(float));   // (N, r)
    st->q = dt_graph_scratch(g, (size_t)(N * out) * sizeof(float)); // (N, out)
    if (!xd || !st->h || !st->q || scales(g, d, &st->gv, &st->inv)) return -1;
    be->dropout(be, xd, false, x, N * in, l->dropout, st->seed);
    be->gemm(be, false, true, N, r, in, 1.0f, xd, in, dt_f32(l->A), in, 0.0f, st->h, r); // h = xd A^T
    if (dt_frozen_fwd(g, st->q, false, xd, N, d->W)) return -1;                          // q = xd W^T
    dt_graph_temp_release(g, xd);
    be->gemm(be, false, true, N, out, r, l->scale, st->h, r, dt_f32(l->B), r, 1.0f, st->q, out); // q += s h B^T
    be->gemm(be, false, true, N, out, r, l->scale, st->h, r, dt_f32(l->B), r, 1.0f, y, out);     // y += s h B^T
    for (int64_t n = 0; n < N; n++)                                                               // y += (g - 1) q
        for (int64_t i = 0; i < out; i++) y[n * out + i] += (st->gv[i] - 1.0f) * st->q[n * out + i];
    return 0;
}

static void dora_bwd(dt_graph *g, const dt_linear_hook *hk, const void *state, const float *x, int64_t N, const float *dy,
                     float *dx) {
    const dora_mod *d = hk->self;
    const dt_lora_ref *l = d->l;
    const dora_hstate *st = state;
    if (!st->full) {
        const dt_linear_hook lh = lora_of(d);
        dt_lora_hook_ops.bwd(g, &lh, st->lora, x, N, dy, dx);
        return;
    }
    const dt_backend *be = g->be;
    const int64_t r = l->A->shape[0], in = l->A->shape[1], out = l->B->shape[0];
    float *G = dt_graph_temp(g, (size_t)(N * out) * sizeof(float));  // (N, out) dy g, then dy (g - 1)
    float *dh = dt_graph_temp(g, (size_t)(N * r) * sizeof(float));   // (N, r)
    float *xd = dt_graph_temp(g, (size_t)(N * in) * sizeof(float));  // (N, in) the dropped-out input, then its gradient
    if (!G || !dh || !xd) return;
    float *dm = d->mag->grad;
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < out; i++) {
            const float e = dy[n * out + i];
            dm[i] += e * st->q[n * out + i] * st->inv[i];
            G[n * out + i] = e * st->gv[i];
        }
    be->gemm(be, true, false, out, r, N, l->scale, G, out, st->h, r, 1.0f, l->B->grad, r);      // dB += s G^T h
    be->gemm(be, false, false, N, r, out, l->scale, G, out, dt_f32(l->B), r, 0.0f, dh, r);      // dh = s G B
    be->dropout(be, xd, false, x, N * in, l->dropout, st->seed);
    be->gemm(be, true, false, r, in, N, 1.0f, dh, r, xd, in, 1.0f, l->A->grad, in);            // dA += dh^T xd
    if (dx) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < out; i++) G[n * out + i] = dy[n * out + i] * (st->gv[i] - 1.0f);
        if (dt_frozen_bwd(g, xd, false, G, N, d->W)) return;                                   // d(xd) = (dy (g-1)) W
        be->gemm(be, false, false, N, in, r, 1.0f, dh, r, dt_f32(l->A), in, 1.0f, xd, in);     //        + dh A
        be->dropout(be, dx, true, xd, N * in, l->dropout, st->seed);                            // dx += mask(d(xd))
    }
    dt_graph_temp_release(g, xd);
    dt_graph_temp_release(g, dh);
    dt_graph_temp_release(g, G);
}

// The group of q/k/v (gate/up): LoRA's stacked path unless this forward drops out, then one by one.
static int dora_group_fwd(dt_graph *g, int n, const dt_linear_hook *const *h, const float *x, int64_t N, float *const *y,
                          void *state) {
    dt_linear_hook lh[4];
    const dt_linear_hook *lp[4];
    for (int i = 0; i < n; i++) {
        const dora_mod *d = h[i]->self;
        if (n > 4 || dropout_path(g, d->l)) return 0;
        lh[i] = lora_of(d);
        lp[i] = &lh[i];
    }
    return dt_lora_hook_ops.group_fwd ? dt_lora_hook_ops.group_fwd(g, n, lp, x, N, y, state) : 0;
}

static void dora_group_bwd(dt_graph *g, int n, const dt_linear_hook *const *h, const void *state, const float *x, int64_t N,
                           const float *const *dy, float *dx, bool *dx_fresh) {
    dt_linear_hook lh[4];
    const dt_linear_hook *lp[4];
    for (int i = 0; i < n && i < 4; i++) {
        lh[i] = lora_of(h[i]->self);
        lp[i] = &lh[i];
    }
    dt_lora_hook_ops.group_bwd(g, n, lp, state, x, N, dy, dx, dx_fresh);
}

static const dt_linear_hook_ops dora_hook_ops = {
    .state_bytes = sizeof(dora_hstate),
    .fwd = dora_fwd,
    .bwd = dora_bwd,
    .group_state_bytes = LORA_GROUP_STATE_MAX,
    .group_fwd = dora_group_fwd,
    .group_bwd = dora_group_bwd,
};

int dt_dora_attach(dt_ctx *ctx, dt_adapter *a, const dt_llama *m, int first) {
    const int L = m->cfg.num_layers;
    dora_state *s = calloc(1, sizeof *s);
    if (s) {
        s->mag = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->mag);
        s->at = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->at);
        s->mods = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->mods);
    }
    if (!s || !s->mag || !s->at || !s->mods) { dt_dora_free(s); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    if (dt_lora_hook_ops.state_bytes > LORA_STATE_MAX || dt_lora_hook_ops.group_state_bytes > LORA_GROUP_STATE_MAX) {
        dt_dora_free(s);
        return dt_fail(ctx, DT_EINTERNAL, "DoRA's hook state has no room for LoRA's (peft/dora.c LORA_STATE_MAX)");
    }
    s->refs = a->ref_ptrs;
    a->state = s;
    for (int l = 0, i = first; l < L; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            const size_t k = (size_t)l * DT_MOD_COUNT + (size_t)mod;
            if (!a->ref_ptrs[k]) continue;
            dt_tensor *mag = &a->tensors[i++];
            s->mag[k] = mag;
            s->at[k] = true;
            // DoRA's hook in place of LoRA's on this linear (LoRA's own unless a forward drops out).
            s->mods[k] = (dora_mod){a->ref_ptrs[k], m->layers ? &m->layers[l].w[mod] : NULL, mag};
            a->hooks[k] = (dt_linear_hook){&dora_hook_ops, &s->mods[k], NULL};
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
