// LoRA's term on a linear (peft/lora_ops.h): y += scale * (dropout(x) A^T) B^T. W + BA is never formed;
// the adapter path costs two thin matmuls.
//
// How it fuses: the adapters of projections that read one input (q/k/v, gate/up; dt_norm_linears hands
// them over as a group) have their A's side by side in the parameter and gradient blocks when
// peft/lora.c lays them out so; [A_0; ...; A_{n-1}] is then one (sum of r_i, in) matrix, and the group
// costs one sgemm for x A^T, one for dA and one for dx instead of one per module. With dropout (each
// adapter its own mask), chained adapters or A's elsewhere, the group goes one by one.
#include "peft/lora_ops.h"

// The adapter path's state for one call.
typedef struct {
    float *h;      // (N, r), rows ldh apart: dropout(x) A^T, kept for dB
    int64_t ldh;
    uint64_t seed; // dropout mask seed, 0 when no dropout
} lora_state;

// y (N, out) += scale h B^T: the adapter's second half.
static dt_gemm_args lora_fwd_B_args(const dt_lora_ref *l, const lora_state *ls, int64_t N, float *y) {
    int64_t r = l->A->shape[0], out = l->B->shape[0];
    return (dt_gemm_args){false, true, N, out, r, l->scale, ls->h, ls->ldh, dt_f32(l->B), r, 1.0f, y, out};
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

static int lora_fwd(dt_graph *g, const dt_linear_hook *h, const float *x, int64_t N, float *y, void *state) {
    const dt_lora_ref *l = h->self;
    lora_state *ls = state;
    if (lora_fwd_A(g, x, N, l, ls)) return -1;
    dt_gemm_args a = lora_fwd_B_args(l, ls, N, y);
    dt_gemm_one(g->be, &a);
    return 0;
}

// dB (out, r) += scale dy^T h ; dh (N, r), rows ldd apart, = scale dy B. Independent: one gemm pair.
static void lora_bwd_B(const dt_backend *be, const dt_lora_ref *l, const lora_state *ls, int64_t N, const float *dy,
                       float *dh, int64_t ldd) {
    int64_t r = l->A->shape[0], out = l->B->shape[0];
    dt_gemm_pair(be, &(dt_gemm_args){true, false, out, r, N, l->scale, dy, out, ls->h, ls->ldh, 1.0f, l->B->grad, r},
                 &(dt_gemm_args){false, false, N, r, out, l->scale, dy, out, dt_f32(l->B), r, 0.0f, dh, ldd});
}

// From dy (N, out): accumulates dA, dB, and adds to dx (N, in) when dx is not NULL.
static void lora_bwd(dt_graph *g, const dt_linear_hook *hk, const void *state, const float *x, int64_t N,
                     const float *dy, float *dx) {
    const dt_backend *be = g->be;
    const dt_lora_ref *l = hk->self;
    const lora_state *ls = state;
    int64_t r = l->A->shape[0], in = l->A->shape[1];
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

// The group's state: the stacked H and each adapter's view of it.
typedef struct {
    int64_t R;          // sum of the ranks
    lora_state ls[4];   // ls[i].h: adapter i's columns of H (N, R)
} group_state;

// Sum of the ranks when no adapter drops out and their A's (and the A's gradients) follow each other in
// memory, so [A_0; ...; A_{n-1}] is one (R, in) matrix; else 0.
static int64_t stacked_rank(const dt_graph *g, int n, const dt_linear_hook *const *h) {
    int64_t R = 0;
    for (int i = 0; i < n; i++) {
        const dt_lora_ref *l = h[i]->self;
        if (g->training && l->dropout > 0.0f) return 0;
        if (i > 0) {
            const dt_tensor *p = ((const dt_lora_ref *)h[i - 1]->self)->A;
            if (dt_f32(l->A) != dt_f32(p) + dt_numel(p) || l->A->grad != p->grad + dt_numel(p)) return 0;
        }
        R += l->A->shape[0];
    }
    return R;
}

static int lora_group_fwd(dt_graph *g, int n, const dt_linear_hook *const *h, const float *x, int64_t N,
                          float *const *y, void *state) {
    group_state *gs = state;
    const int64_t R = stacked_rank(g, n, h);
    if (!R) return 0;
    const dt_lora_ref *l0 = h[0]->self;
    const int64_t in = l0->A->shape[1];
    float *H = dt_graph_scratch(g, (size_t)N * R * sizeof(float)); // (N, R): x [A_0; ...]^T, kept for dB
    if (!H) return -1;
    g->be->gemm(g->be, false, true, N, R, in, 1.0f, x, in, dt_f32(l0->A), in, 0.0f, H, R);
    gs->R = R;
    for (int i = 0, off = 0; i < n; off += (int)((const dt_lora_ref *)h[i]->self)->A->shape[0], i++)
        gs->ls[i] = (lora_state){H + off, R, 0};
    for (int i = 0; i < n; i += 2) { // independent outputs: two at a time
        dt_gemm_args a = lora_fwd_B_args(h[i]->self, &gs->ls[i], N, y[i]);
        if (i + 1 < n) {
            dt_gemm_args b = lora_fwd_B_args(h[i + 1]->self, &gs->ls[i + 1], N, y[i + 1]);
            dt_gemm_pair(g->be, &a, &b);
        } else {
            dt_gemm_one(g->be, &a);
        }
    }
    return 1;
}

static void lora_group_bwd(dt_graph *g, int n, const dt_linear_hook *const *h, const void *state, const float *x,
                           int64_t N, const float *const *dy, float *dx, bool *dx_fresh) {
    const dt_backend *be = g->be;
    const group_state *gs = state;
    const int64_t R = gs->R;
    const dt_tensor *A0 = ((const dt_lora_ref *)h[0]->self)->A; // the stacked (R, in) A and its gradient start here
    const int64_t in = A0->shape[1];
    // dH (N, R): the per-adapter dh side by side; then dA and dx once for the stacked A.
    float *dH = dt_graph_temp(g, (size_t)N * R * sizeof(float));
    if (!dH) return;
    bool all_reached = true; // a projection that did not reach the loss has dh = 0
    for (int i = 0; i < n; i++) all_reached &= dy[i] != NULL;
    if (!all_reached) be->zero(be, dH, (size_t)N * R * sizeof(float));
    for (int i = 0, off = 0; i < n; off += (int)((const dt_lora_ref *)h[i]->self)->A->shape[0], i++)
        if (dy[i]) lora_bwd_B(be, h[i]->self, &gs->ls[i], N, dy[i], dH + off, R);
    dt_gemm_args dA = {true, false, R, in, N, 1.0f, dH, R, x, in, 1.0f, A0->grad, in};
    if (dx) { // dx += dH A, independent of dA: one gemm pair
        dt_gemm_pair(be, &dA, &(dt_gemm_args){false, false, N, in, R, 1.0f, dH, R, dt_f32(A0), in, *dx_fresh ? 0.0f : 1.0f, dx, in});
        *dx_fresh = false;
    } else {
        dt_gemm_one(be, &dA);
    }
    dt_graph_temp_release(g, dH);
}

const dt_linear_hook_ops dt_lora_hook_ops = {
    .state_bytes = sizeof(lora_state),
    .fwd = lora_fwd,
    .bwd = lora_bwd,
    .group_state_bytes = sizeof(group_state),
    .group_fwd = lora_group_fwd,
    .group_bwd = lora_group_bwd,
};
