// Linear layers with an optional LoRA adapter: y = [residual +] x W^T + b + scale * (dropout(x) A^T) B^T.
// W + BA is never formed; the adapter path costs two thin matmuls. Memory and time savers, all exact:
//  - the residual add is fused (y starts as the residual), so the bare projection is never stored;
//  - dt_swiglu_linear takes the gate and up projections and recomputes silu(gate) * up in its
//    backward instead of keeping that (N, intermediate) product for the whole step;
//  - dt_norm_linears treats the A's of adapters that read the same input (q/k/v, gate/up) as one
//    stacked matrix when they are adjacent in memory (peft/lora.c lays them out so): one sgemm for
//    x A^T, one for dA and one for dx instead of one per module.
#include "autograd/ops.h"

// The adapter path's state for one call.
typedef struct {
    float *h;      // (N, r), rows ldh apart: dropout(x) A^T, kept for dB
    int64_t ldh;
    uint64_t seed; // dropout mask seed, 0 when no dropout
} lora_state;

// The frozen-linear entry with scratch from the step arena (see ops.h).
int dt_frozen_fwd(dt_graph *g, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W) {
    const dt_backend *be = g->be;
    size_t sb = be->frozen_scratch_bytes(be, W, N);
    float *scratch = sb ? dt_graph_temp(g, sb) : NULL;
    if (sb && !scratch) return -1;
    be->frozen_fwd(be, y, acc, x, N, W, scratch);
    dt_graph_temp_release(g, scratch);
    return 0;
}

int dt_frozen_bwd(dt_graph *g, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W) {
    const dt_backend *be = g->be;
    size_t sb = be->frozen_scratch_bytes(be, W, N);
    float *scratch = sb ? dt_graph_temp(g, sb) : NULL;
    if (sb && !scratch) return -1;
    be->frozen_bwd(be, dx, acc, dy, N, W, scratch);
    dt_graph_temp_release(g, scratch);
    return 0;
}

// y (N, out) = [y +] x W^T + bias: the frozen part. Returns 0, or -1 when the graph failed.
static int frozen_fwd(dt_graph *g, const float *x, int64_t N, const dt_tensor *W, const dt_tensor *bias, float *y,
                      bool acc) {
    if (dt_frozen_fwd(g, y, acc, x, N, W)) return -1;
    if (bias) g->be->add_bias(g->be, y, dt_f32(bias), N, W->shape[0]);
    return 0;
}

// y (N, out) += scale h B^T: the adapter's second half.
static dt_gemm_args lora_fwd_B_args(const dt_lora_ref *l, const lora_state *ls, int64_t N, float *y) {
    int64_t r = l->A->shape[0], out = l->B->shape[0];
    return (dt_gemm_args){false, true, N, out, r, l->scale, ls->h, ls->ldh, dt_f32(l->B), r, 1.0f, y, out};
}
static void lora_fwd_B(const dt_backend *be, const dt_lora_ref *l, const lora_state *ls, int64_t N, float *y) {
    dt_gemm_args a = lora_fwd_B_args(l, ls, N, y);
    dt_gemm_one(be, &a);
}

// ls->h (N, r) = dropout(x) A^T in the arena (kept for the backward). Returns 0, or -1 when the graph failed.
static int lora_fwd_A(dt_graph *g, const float *x, int64_t N, const dt_lora_ref *l, lora_state *ls) {
    const dt_backend *be = g->be;
    int64_t r = l->A->shape[0], in = l->A->shape[1];
    const float *xd = x;
    float *tmp = NULL;
    ls->seed = 0;
    if (g->training && l->dropout > 0.0f) {
        // The dropped-out input is needed only here and in the backward, which regenerates it from the seed.
        tmp = dt_graph_temp(g, (size_t)N * in * sizeof(float)); // (N, in)
        if (!tmp) return -1;
        ls->seed = dt_graph_next_dropout_seed(g);
        be->dropout(be, tmp, false, x, N * in, l->dropout, ls->seed);
        xd = tmp;
    }
    ls->h = dt_graph_scratch(g, (size_t)N * r * sizeof(float)); // (N, r)
    ls->ldh = r;
    if (!ls->h) return -1;
    be->gemm(be, false, true, N, r, in, 1.0f, xd, in, dt_f32(l->A), in, 0.0f, ls->h, r);
    dt_graph_temp_release(g, tmp);
    return 0;
}

// y (N, out) = [y +] x W^T + bias + LoRA. Returns 0, or -1 when the graph failed.
static int linear_fwd_core(dt_graph *g, const float *x, int64_t N, const dt_tensor *W, const dt_tensor *bias,
                           const dt_lora_ref *lora, float *y, bool acc, lora_state *ls) {
    *ls = (lora_state){0};
    if (frozen_fwd(g, x, N, W, bias, y, acc)) return -1;
    if (!lora) return 0;
    if (lora_fwd_A(g, x, N, lora, ls)) return -1;
    lora_fwd_B(g->be, lora, ls, N, y);
    return 0;
}

// dB (out, r) += scale dy^T h ; dh (N, r), rows ldd apart, = scale dy B. Independent: one gemm pair.
static void lora_bwd_B(const dt_backend *be, const dt_lora_ref *l, const lora_state *ls, int64_t N, const float *dy,
                       float *dh, int64_t ldd) {
    int64_t r = l->A->shape[0], out = l->B->shape[0];
    dt_gemm_pair(be, &(dt_gemm_args){true, false, out, r, N, l->scale, dy, out, ls->h, ls->ldh, 1.0f, l->B->grad, r},
                 &(dt_gemm_args){false, false, N, r, out, l->scale, dy, out, dt_f32(l->B), r, 0.0f, dh, ldd});
}

// From dy (N, out): accumulates dA, dB, and writes (fresh) or adds dx (N, in) when dx is not NULL.
static void linear_bwd_core(dt_graph *g, const float *x, int64_t N, const dt_tensor *W, const dt_lora_ref *l,
                            const lora_state *ls, const float *dy, float *dx, bool dx_fresh) {
    const dt_backend *be = g->be;
    int64_t in = W->shape[1];
    if (dx && dt_frozen_bwd(g, dx, !dx_fresh, dy, N, W)) return;
    if (!l) return;
    int64_t r = l->A->shape[0];
    float *dh = dt_graph_temp(g, (size_t)N * r * sizeof(float)); // (N, r)
    float *xd = ls->seed ? dt_graph_temp(g, (size_t)N * in * sizeof(float)) : NULL; // (N, in)
    if (!dh || (ls->seed && !xd)) return;
    if (ls->seed) be->dropout(be, xd, false, x, N * in, l->dropout, ls->seed);
    lora_bwd_B(be, l, ls, N, dy, dh, r);
    // dA (r, in) += dh^T dropout(x)
    dt_gemm_args dA = {true, false, r, in, N, 1.0f, dh, r, ls->seed ? xd : x, in, 1.0f, l->A->grad, in};
    if (dx && !ls->seed) { // dx += dh A, independent of dA: one gemm pair
        dt_gemm_pair(be, &dA, &(dt_gemm_args){false, false, N, in, r, 1.0f, dh, r, dt_f32(l->A), in, 1.0f, dx, in});
    } else {
        dt_gemm_one(be, &dA);
        if (dx) { // d(dropout(x)) = dh A into xd (after dA has read it), then back through the same mask
            be->gemm(be, false, false, N, in, r, 1.0f, dh, r, dt_f32(l->A), in, 0.0f, xd, in);
            be->dropout(be, dx, true, xd, N * in, l->dropout, ls->seed);
        }
    }
    dt_graph_temp_release(g, xd);
    dt_graph_temp_release(g, dh);
}

static dt_tensor *out_like(dt_graph *g, const dt_tensor *x, int64_t out) {
    int64_t shape[DT_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = out;
    return dt_graph_tensor(g, x->ndim, shape);
}

// y = residual + f(x), so d(residual) += dy. When the residual has no gradient yet, dy's buffer becomes
// its gradient instead of being copied: y gives it up, so the tape does not return it to the pool.
// Call last in a backward: y's gradient is gone afterwards.
static void residual_bwd(dt_graph *g, dt_tensor *y, dt_tensor *residual) {
    if (!residual || !residual->requires_grad) return;
    if (!residual->grad) {
        residual->grad = y->grad;
        y->grad = NULL;
        return;
    }
    g->be->axpy(g->be, residual->grad, true, 1.0f, y->grad, dt_numel(residual));
}

typedef struct {
    dt_tensor *x;          // (N, in)
    const dt_tensor *W;    // (out, in), frozen
    const dt_lora_ref *lora;
    dt_tensor *residual;   // (N, out) or NULL
    lora_state ls;
} linear_saved;

static void linear_bwd(dt_graph *g, dt_node *n) {
    linear_saved *s = n->saved;
    int64_t N = dt_numel(s->x) / s->W->shape[1];
    bool fresh = false;
    float *dx = s->x->requires_grad ? dt_graph_grad(g, s->x, &fresh) : NULL;
    if (g->failed) return;
    linear_bwd_core(g, dt_f32(s->x), N, s->W, s->lora, &s->ls, n->out->grad, dx, fresh);
    residual_bwd(g, n->out, s->residual);
}

dt_tensor *dt_linear_add(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias,
                         const dt_lora_ref *lora, dt_tensor *residual) {
    if (!x || g->failed) return NULL;
    int64_t in = W->shape[1], N = dt_numel(x) / in;
    dt_tensor *y = out_like(g, x, W->shape[0]); // (..., out)
    if (!y) return NULL;
    if (residual) g->be->axpy(g->be, dt_f32(y), false, 1.0f, dt_f32(residual), dt_numel(y));
    lora_state ls;
    if (linear_fwd_core(g, dt_f32(x), N, W, bias, lora, dt_f32(y), residual != NULL, &ls)) return NULL;
    if (g->grad_enabled && (x->requires_grad || lora || (residual && residual->requires_grad))) {
        dt_node *n = dt_graph_record(g, linear_bwd, y, sizeof(linear_saved));
        if (!n) return NULL;
        *(linear_saved *)n->saved = (linear_saved){x, W, lora, residual, ls};
    }
    return y;
}

dt_tensor *dt_linear(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias, const dt_lora_ref *lora) {
    return dt_linear_add(g, x, W, bias, lora, NULL);
}

typedef struct {
    dt_tensor *gate, *up;  // (N, I) each
    const dt_tensor *W;    // (out, I), frozen
    const dt_lora_ref *lora;
    dt_tensor *residual;   // (N, out) or NULL
    lora_state ls;
} swiglu_linear_saved;

static void swiglu_linear_bwd(dt_graph *g, dt_node *n) {
    swiglu_linear_saved *s = n->saved;
    const dt_backend *be = g->be;
    int64_t I = s->W->shape[1], N = dt_numel(s->gate) / I;
    size_t bytes = (size_t)N * I * sizeof(float);
    float *h = dt_graph_temp(g, bytes);  // (N, I): silu(gate) * up, recomputed
    float *dh = dt_graph_temp(g, bytes); // (N, I)
    if (!h || !dh) return;
    be->swiglu_fwd(be, h, dt_f32(s->gate), dt_f32(s->up), N * I);
    linear_bwd_core(g, h, N, s->W, s->lora, &s->ls, n->out->grad, dh, true);
    bool fg = false, fu = false;
    float *dg = s->gate->requires_grad ? dt_graph_grad(g, s->gate, &fg) : NULL;
    float *du = s->up->requires_grad ? dt_graph_grad(g, s->up, &fu) : NULL;
    if (!g->failed) be->swiglu_bwd(be, dg, du, !fg, !fu, dh, dt_f32(s->gate), dt_f32(s->up), N * I);
    dt_graph_temp_release(g, dh);
    dt_graph_temp_release(g, h);
    residual_bwd(g, n->out, s->residual);
}

dt_tensor *dt_swiglu_linear(dt_graph *g, dt_tensor *gate, dt_tensor *up, const dt_tensor *W, const dt_lora_ref *lora,
                            dt_tensor *residual) {
    if (!gate || !up || g->failed) return NULL;
    int64_t I = W->shape[1], N = dt_numel(gate) / I;
    dt_tensor *y = out_like(g, gate, W->shape[0]); // (..., out)
    float *h = dt_graph_temp(g, (size_t)N * I * sizeof(float)); // (N, I), released before returning
    if (!y || !h) return NULL;
    g->be->swiglu_fwd(g->be, h, dt_f32(gate), dt_f32(up), N * I);
    if (residual) g->be->axpy(g->be, dt_f32(y), false, 1.0f, dt_f32(residual), dt_numel(y));
    lora_state ls;
    int rc = linear_fwd_core(g, h, N, W, NULL, lora, dt_f32(y), residual != NULL, &ls);
    dt_graph_temp_release(g, h);
    if (rc) return NULL;
    if (g->grad_enabled && (gate->requires_grad || up->requires_grad || lora || (residual && residual->requires_grad))) {
        dt_node *n = dt_graph_record(g, swiglu_linear_bwd, y, sizeof(swiglu_linear_saved));
        if (!n) return NULL;
        *(swiglu_linear_saved *)n->saved = (swiglu_linear_saved){gate, up, W, lora, residual, ls};
    }
    return y;
}

typedef struct {
    dt_tensor *x;              // (N, D) the un-normalised input
    const dt_tensor *norm_w;   // (D)
    float *rstd;               // (N)
    int n;
    bool stacked;              // the adapters' A's form one matrix (see stack_rows)
    int64_t stack_rows;        // sum of their ranks when stacked
    const dt_tensor *W[4];
    const dt_lora_ref *lora[4];
    lora_state ls[4];
    dt_tensor *out[4];
} norm_linears_saved;

// Sum of the ranks when every projection has an adapter, none drops out, and their A's (and the
// A's gradients) follow each other in memory, so [A_0; ...; A_{n-1}] is one (R, in) matrix; else 0.
static int64_t stacked_rank(const dt_graph *g, int n, const dt_lora_ref *const *lora) {
    if (n < 2 || !lora) return 0;
    int64_t R = 0;
    for (int i = 0; i < n; i++) {
        const dt_lora_ref *l = lora[i];
        if (!l || (g->training && l->dropout > 0.0f)) return 0;
        if (i > 0) {
            const dt_tensor *p = lora[i - 1]->A;
            if (dt_f32(l->A) != dt_f32(p) + dt_numel(p) || l->A->grad != p->grad + dt_numel(p)) return 0;
        }
        R += l->A->shape[0];
    }
    return R;
}

static void norm_linears_bwd(dt_graph *g, dt_node *nd) {
    norm_linears_saved *s = nd->saved;
    const dt_backend *be = g->be;
    int64_t D = dt_numel(s->norm_w), N = dt_numel(s->x) / D;
    size_t bytes = (size_t)N * D * sizeof(float);
    float *xn = dt_graph_temp(g, bytes), *dxn = dt_graph_temp(g, bytes); // (N, D) each
    if (!xn || !dxn) return;
    be->rmsnorm_apply(be, xn, dt_f32(s->x), s->rstd, dt_f32(s->norm_w), N, D); // the forward's values, bit for bit
    bool fresh = true, want_dx = s->x->requires_grad;
    if (s->stacked) {
        // dH (N, R): the per-adapter dh side by side; then dA and dx once for the stacked A.
        int64_t R = s->stack_rows;
        float *dH = dt_graph_temp(g, (size_t)N * R * sizeof(float));
        if (!dH) return;
        bool all_reached = true; // a projection that did not reach the loss has dh = 0
        for (int i = 0; i < s->n; i++) all_reached &= s->out[i]->grad != NULL;
        if (!all_reached) be->zero(be, dH, (size_t)N * R * sizeof(float));
        for (int i = 0, off = 0; i < s->n; off += (int)s->lora[i]->A->shape[0], i++) {
            const float *dy = s->out[i]->grad;
            if (!dy) continue;
            if (want_dx) {
                if (dt_frozen_bwd(g, dxn, !fresh, dy, N, s->W[i])) return;
                fresh = false;
            }
            lora_bwd_B(be, s->lora[i], &s->ls[i], N, dy, dH + off, R);
        }
        const dt_tensor *A0 = s->lora[0]->A; // the stacked (R, D) A and its gradient start here
        dt_gemm_args dA = {true, false, R, D, N, 1.0f, dH, R, xn, D, 1.0f, A0->grad, D};
        if (want_dx) { // dx += dH A, independent of dA: one gemm pair
            dt_gemm_pair(be, &dA, &(dt_gemm_args){false, false, N, D, R, 1.0f, dH, R, dt_f32(A0), D, fresh ? 0.0f : 1.0f, dxn, D});
            fresh = false;
        } else {
            dt_gemm_one(be, &dA);
        }
        dt_graph_temp_release(g, dH);
    } else {
        for (int i = 0; i < s->n; i++) {
            const float *dy = s->out[i]->grad;
            if (!dy) continue; // this projection did not reach the loss
            linear_bwd_core(g, xn, N, s->W[i], s->lora[i], &s->ls[i], dy, want_dx ? dxn : NULL, fresh);
            fresh = fresh && !want_dx;
        }
    }
    if (want_dx && !fresh) {
        bool fx;
        float *dx = dt_graph_grad(g, s->x, &fx);
        if (dx) be->rmsnorm_bwd(be, dx, !fx, dxn, dt_f32(s->x), dt_f32(s->norm_w), s->rstd, N, D);
    }
    dt_graph_temp_release(g, dxn);
    dt_graph_temp_release(g, xn);
}

int dt_norm_linears(dt_graph *g, dt_tensor *x, const dt_tensor *norm_w, float eps, int n, const dt_tensor *const *W,
                    const dt_tensor *const *bias, const dt_lora_ref *const *lora, dt_tensor **out) {
    if (!x || g->failed || n > 4) return -1;
    int64_t D = dt_numel(norm_w), N = dt_numel(x) / D;
    float *rstd = dt_graph_scratch(g, (size_t)N * sizeof(float));       // (N), kept
    float *xn = dt_graph_temp(g, (size_t)N * D * sizeof(float));        // (N, D), released below
    if (!rstd || !xn) return -1;
    g->be->rmsnorm_fwd(g->be, xn, rstd, dt_f32(x), dt_f32(norm_w), N, D, eps);
    norm_linears_saved sv = {x, norm_w, rstd, n, false, 0, {0}, {0}, {{0}}, {0}};
    sv.stack_rows = stacked_rank(g, n, lora);
    sv.stacked = sv.stack_rows > 0;
    float *H = NULL; // (N, R): x [A_0; ...]^T when stacked, kept for dB
    if (sv.stacked) {
        H = dt_graph_scratch(g, (size_t)N * sv.stack_rows * sizeof(float));
        if (!H) { dt_graph_temp_release(g, xn); return -1; }
        g->be->gemm(g->be, false, true, N, sv.stack_rows, D, 1.0f, xn, D, dt_f32(lora[0]->A), D, 0.0f, H, sv.stack_rows);
    }
    bool record = g->grad_enabled && x->requires_grad;
    for (int i = 0, off = 0; i < n; i++) {
        const dt_lora_ref *l = lora ? lora[i] : NULL;
        out[i] = out_like(g, x, W[i]->shape[0]);
        int rc = !out[i];
        if (!rc && sv.stacked) { // the adapters' h B^T come after the loop, in pairs
            rc = frozen_fwd(g, xn, N, W[i], bias ? bias[i] : NULL, dt_f32(out[i]), false);
            sv.ls[i] = (lora_state){H + off, sv.stack_rows, 0};
            off += (int)l->A->shape[0];
        } else if (!rc) {
            rc = linear_fwd_core(g, xn, N, W[i], bias ? bias[i] : NULL, l, dt_f32(out[i]), false, &sv.ls[i]);
        }
        if (rc) {
            dt_graph_temp_release(g, xn);
            return -1;
        }
        sv.W[i] = W[i];
        sv.lora[i] = l;
        sv.out[i] = out[i];
        record |= g->grad_enabled && l;
    }
    for (int i = 0; sv.stacked && i < n; i += 2) { // independent outputs: two at a time
        dt_gemm_args a = lora_fwd_B_args(lora[i], &sv.ls[i], N, dt_f32(out[i]));
        if (i + 1 < n) {
            dt_gemm_args b = lora_fwd_B_args(lora[i + 1], &sv.ls[i + 1], N, dt_f32(out[i + 1]));
            dt_gemm_pair(g->be, &a, &b);
        } else {
            dt_gemm_one(g->be, &a);
        }
    }
    dt_graph_temp_release(g, xn);
    if (record) {
        dt_node *nd = dt_graph_record(g, norm_linears_bwd, out[0], sizeof(norm_linears_saved));
        if (!nd) return -1;
        for (int i = 1; i < n; i++) { nd->more[i - 1] = out[i]; out[i]->requires_grad = true; }
        *(norm_linears_saved *)nd->saved = sv;
    }
    return 0;
}
