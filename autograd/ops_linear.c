// Linear layers with frozen weights and an optional trainable hook: y = [residual +] x W^T + b + f(x),
// f a PEFT method's term (dt_linear_hook; LoRA's is peft/lora_ops.c). Memory and time savers, all exact:
//  - the residual add is fused (y starts as the residual), so the bare projection is never stored;
//  - dt_swiglu_linear takes the gate and up projections and recomputes silu(gate) * up in its
//    backward instead of keeping that (N, intermediate) product for the whole step;
//  - dt_norm_linears recomputes the normalised input in its backward, and hands the hooks of the
//    projections that read it (q/k/v, gate/up) to their method as one group when the method fuses
//    (LoRA stacks its A's: one sgemm for x A^T, one for dA and one for dx).
#include <string.h>
#include "autograd/ops.h"

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

// A hook's state for its backward: state_bytes of host memory from the step's arena.
static void *hook_state(dt_graph *g, size_t bytes) {
    void *p = dt_arena_alloc(&g->host, bytes ? bytes : 1);
    if (!p) {
        g->failed = true;
        dt_fail(g->ctx, DT_ENOMEM, "out of memory for a linear hook's state");
        return NULL;
    }
    memset(p, 0, bytes ? bytes : 1);
    return p;
}

// Further hooks on the same linear (several adapters in generate) add up, forward only.
static int more_hooks_fwd(dt_graph *g, const dt_linear_hook *h, const float *x, int64_t N, float *y) {
    if (!h->next) return 0;
    if (g->grad_enabled) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "several adapters on one module are applied without gradients only");
        return -1;
    }
    for (const dt_linear_hook *m = h->next; m; m = m->next) {
        void *st = hook_state(g, m->ops->state_bytes);
        if (!st || m->ops->fwd(g, m, x, N, y, st)) return -1;
    }
    return 0;
}

// y (N, out) = [y +] x W^T + bias + the hook's term; *state: what the hook keeps for its backward.
// Returns 0, or -1 when the graph failed.
static int linear_fwd_core(dt_graph *g, const float *x, int64_t N, const dt_tensor *W, const dt_tensor *bias,
                           const dt_linear_hook *hook, float *y, bool acc, void **state) {
    *state = NULL;
    if (frozen_fwd(g, x, N, W, bias, y, acc)) return -1;
    if (!hook) return 0;
    if (!(*state = hook_state(g, hook->ops->state_bytes)) || hook->ops->fwd(g, hook, x, N, y, *state)) return -1;
    return more_hooks_fwd(g, hook, x, N, y);
}

// From dy (N, out): the hook's parameter gradients, and dx (N, in) written (fresh) or added when not NULL.
static void linear_bwd_core(dt_graph *g, const float *x, int64_t N, const dt_tensor *W, const dt_linear_hook *hook,
                            const void *state, const float *dy, float *dx, bool dx_fresh) {
    if (dx && dt_frozen_bwd(g, dx, !dx_fresh, dy, N, W)) return;
    if (hook) hook->ops->bwd(g, hook, state, x, N, dy, dx);
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
    const dt_linear_hook *hook;
    dt_tensor *residual;   // (N, out) or NULL
    void *state;           // the hook's
} linear_saved;

static void linear_bwd(dt_graph *g, dt_node *n) {
    linear_saved *s = n->saved;
    int64_t N = dt_numel(s->x) / s->W->shape[1];
    bool fresh = false;
    float *dx = s->x->requires_grad ? dt_graph_grad(g, s->x, &fresh) : NULL;
    const float *x = s->hook ? dt_graph_saved(g, s->x) : NULL; // only the hook reads x
    if (g->failed) return;
    linear_bwd_core(g, x, N, s->W, s->hook, s->state, n->out->grad, dx, fresh);
    dt_graph_saved_done(g, s->x, x);
    residual_bwd(g, n->out, s->residual);
}

dt_tensor *dt_linear_add(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias,
                         const dt_linear_hook *hook, dt_tensor *residual) {
    if (!x || g->failed) return NULL;
    int64_t in = W->shape[1], N = dt_numel(x) / in;
    dt_tensor *y = out_like(g, x, W->shape[0]); // (..., out)
    if (!y) return NULL;
    if (residual) g->be->axpy(g->be, dt_f32(y), false, 1.0f, dt_f32(residual), dt_numel(y));
    void *st;
    if (linear_fwd_core(g, dt_f32(x), N, W, bias, hook, dt_f32(y), residual != NULL, &st)) return NULL;
    if (g->grad_enabled && (x->requires_grad || hook || (residual && residual->requires_grad))) {
        dt_node *n = dt_graph_record(g, linear_bwd, y, sizeof(linear_saved));
        if (!n) return NULL;
        if (hook) dt_graph_keep16(g, x);
        *(linear_saved *)n->saved = (linear_saved){x, W, hook, residual, st};
    }
    return y;
}

dt_tensor *dt_linear(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias, const dt_linear_hook *hook) {
    return dt_linear_add(g, x, W, bias, hook, NULL);
}

typedef struct {
    dt_tensor *gate, *up;  // (N, I) each
    const dt_tensor *W;    // (out, I), frozen
    const dt_linear_hook *hook;
    dt_tensor *residual;   // (N, out) or NULL
    void *state;           // the hook's
} swiglu_linear_saved;

static void swiglu_linear_bwd(dt_graph *g, dt_node *n) {
    swiglu_linear_saved *s = n->saved;
    const dt_backend *be = g->be;
    int64_t I = s->W->shape[1], N = dt_numel(s->gate) / I;
    size_t bytes = (size_t)N * I * sizeof(float);
    const float *gate = dt_graph_saved(g, s->gate), *up = dt_graph_saved(g, s->up); // (N, I) each
    float *h = dt_graph_temp(g, bytes);  // (N, I): silu(gate) * up, recomputed
    float *dh = dt_graph_temp(g, bytes); // (N, I)
    if (!gate || !up || !h || !dh) return;
    be->swiglu_fwd(be, h, gate, up, N * I);
    linear_bwd_core(g, h, N, s->W, s->hook, s->state, n->out->grad, dh, true);
    bool fg = false, fu = false;
    float *dg = s->gate->requires_grad ? dt_graph_grad(g, s->gate, &fg) : NULL;
    float *du = s->up->requires_grad ? dt_graph_grad(g, s->up, &fu) : NULL;
    if (!g->failed) be->swiglu_bwd(be, dg, du, !fg, !fu, dh, gate, up, N * I);
    dt_graph_temp_release(g, dh);
    dt_graph_temp_release(g, h);
    dt_graph_saved_done(g, s->up, up);
    dt_graph_saved_done(g, s->gate, gate);
    residual_bwd(g, n->out, s->residual);
}

dt_tensor *dt_swiglu_linear(dt_graph *g, dt_tensor *gate, dt_tensor *up, const dt_tensor *W, const dt_linear_hook *hook,
                            dt_tensor *residual) {
    if (!gate || !up || g->failed) return NULL;
    int64_t I = W->shape[1], N = dt_numel(gate) / I;
    dt_tensor *y = out_like(g, gate, W->shape[0]); // (..., out)
    float *h = dt_graph_temp(g, (size_t)N * I * sizeof(float)); // (N, I), released before returning
    if (!y || !h) return NULL;
    g->be->swiglu_fwd(g->be, h, dt_f32(gate), dt_f32(up), N * I);
    if (residual) g->be->axpy(g->be, dt_f32(y), false, 1.0f, dt_f32(residual), dt_numel(y));
    void *st;
    int rc = linear_fwd_core(g, h, N, W, NULL, hook, dt_f32(y), residual != NULL, &st);
    dt_graph_temp_release(g, h);
    if (rc) return NULL;
    if (g->grad_enabled && (gate->requires_grad || up->requires_grad || hook || (residual && residual->requires_grad))) {
        dt_node *n = dt_graph_record(g, swiglu_linear_bwd, y, sizeof(swiglu_linear_saved));
        if (!n) return NULL;
        dt_graph_keep16(g, gate);
        dt_graph_keep16(g, up);
        *(swiglu_linear_saved *)n->saved = (swiglu_linear_saved){gate, up, W, hook, residual, st};
    }
    return y;
}

typedef struct {
    dt_tensor *x;              // (N, D) the un-normalised input
    const dt_tensor *norm_w;   // (D)
    float *rstd;               // (N)
    int n;
    const dt_tensor *W[4];
    const dt_linear_hook *hook[4];
    void *state[4];            // each hook's, or (grouped) the group's in state[0]
    bool grouped;              // the hooks' method took them as one group (dt_linear_hook_ops.group_fwd)
    dt_tensor *out[4];
} norm_linears_saved;

static void norm_linears_bwd(dt_graph *g, dt_node *nd) {
    norm_linears_saved *s = nd->saved;
    const dt_backend *be = g->be;
    int64_t D = dt_numel(s->norm_w), N = dt_numel(s->x) / D;
    size_t bytes = (size_t)N * D * sizeof(float);
    const float *x = dt_graph_saved(g, s->x);                             // (N, D)
    float *xn = dt_graph_temp(g, bytes), *dxn = dt_graph_temp(g, bytes); // (N, D) each
    if (!x || !xn || !dxn) return;
    // The forward's values, bit for bit (unless x was kept in bf16: see dt_graph_keep16).
    be->rmsnorm_apply(be, xn, x, s->rstd, dt_f32(s->norm_w), N, D);
    bool fresh = true, want_dx = s->x->requires_grad;
    if (s->grouped) {
        // The frozen parts of dx first, then the group's parameter gradients and its part of dx.
        const float *dy[4] = {0};
        for (int i = 0; i < s->n; i++) {
            dy[i] = s->out[i]->grad; // NULL: this projection did not reach the loss
            if (!dy[i] || !want_dx) continue;
            if (dt_frozen_bwd(g, dxn, !fresh, dy[i], N, s->W[i])) return;
            fresh = false;
        }
        s->hook[0]->ops->group_bwd(g, s->n, s->hook, s->state[0], xn, N, dy, want_dx ? dxn : NULL, &fresh);
    } else {
        for (int i = 0; i < s->n; i++) {
            const float *dy = s->out[i]->grad;
            if (!dy) continue; // this projection did not reach the loss
            linear_bwd_core(g, xn, N, s->W[i], s->hook[i], s->state[i], dy, want_dx ? dxn : NULL, fresh);
            fresh = fresh && !want_dx;
        }
    }
    if (want_dx && !fresh) {
        bool fx;
        float *dx = dt_graph_grad(g, s->x, &fx);
        if (dx) be->rmsnorm_bwd(be, dx, !fx, dxn, x, dt_f32(s->norm_w), s->rstd, N, D);
    }
    dt_graph_temp_release(g, dxn);
    dt_graph_temp_release(g, xn);
    dt_graph_saved_done(g, s->x, x);
}

// Whether the n hooks can go to their method as one group: all present, one method that groups, no
// further hooks chained.
static bool groupable(int n, const dt_linear_hook *const *hook) {
    if (n < 2 || !hook) return false;
    for (int i = 0; i < n; i++)
        if (!hook[i] || hook[i]->next || hook[i]->ops != hook[0]->ops || !hook[0]->ops->group_fwd) return false;
    return true;
}

int dt_norm_linears(dt_graph *g, dt_tensor *x, const dt_tensor *norm_w, float eps, int n, const dt_tensor *const *W,
                    const dt_tensor *const *bias, const dt_linear_hook *const *hook, dt_tensor **out) {
    if (!x || g->failed || n > 4) return -1;
    int64_t D = dt_numel(norm_w), N = dt_numel(x) / D;
    float *rstd = dt_graph_scratch(g, (size_t)N * sizeof(float));       // (N), kept
    float *xn = dt_graph_temp(g, (size_t)N * D * sizeof(float));        // (N, D), released below
    if (!rstd || !xn) return -1;
    g->be->rmsnorm_fwd(g->be, xn, rstd, dt_f32(x), dt_f32(norm_w), N, D, eps);
    norm_linears_saved sv = {x, norm_w, rstd, n, {0}, {0}, {0}, false, {0}};
    const bool group = groupable(n, hook);
    bool record = g->grad_enabled && x->requires_grad;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const dt_linear_hook *h = hook ? hook[i] : NULL;
        out[i] = out_like(g, x, W[i]->shape[0]);
        rc = !out[i];
        if (!rc && group) rc = frozen_fwd(g, xn, N, W[i], bias ? bias[i] : NULL, dt_f32(out[i]), false); // hooks below
        else if (!rc) rc = linear_fwd_core(g, xn, N, W[i], bias ? bias[i] : NULL, h, dt_f32(out[i]), false, &sv.state[i]);
        sv.W[i] = W[i];
        sv.hook[i] = h;
        sv.out[i] = out[i];
        record |= g->grad_enabled && h;
    }
    if (!rc && group) { // the method's group: it may fuse (returns 1) or leave them one by one (0)
        float *ys[4];
        for (int i = 0; i < n; i++) ys[i] = dt_f32(out[i]);
        void *gs = hook_state(g, hook[0]->ops->group_state_bytes);
        int took = gs ? hook[0]->ops->group_fwd(g, n, hook, xn, N, ys, gs) : -1;
        sv.grouped = took == 1;
        if (took == 1) sv.state[0] = gs;
        for (int i = 0; took == 0 && i < n && !rc; i++)
            rc = !(sv.state[i] = hook_state(g, hook[i]->ops->state_bytes)) || hook[i]->ops->fwd(g, hook[i], xn, N, ys[i], sv.state[i]);
        rc |= took < 0;
    }
    dt_graph_temp_release(g, xn);
    if (rc) return -1;
    if (record) {
        dt_node *nd = dt_graph_record(g, norm_linears_bwd, out[0], sizeof(norm_linears_saved));
        if (!nd) return -1;
        dt_graph_keep16(g, x);
        for (int i = 1; i < n; i++) { nd->more[i - 1] = out[i]; out[i]->requires_grad = true; }
        *(norm_linears_saved *)nd->saved = sv;
    }
    return 0;
}
