// Broadcast scaling by a vector: y (..., D) = (x (..., D) - c) * v (D) + c, c (D) an optional constant
// centre (NULL = 0). A generic op a PEFT method can build on (a learned per-feature scale; with a centre,
// a scale that leaves a bias already added to x unscaled); v may be trainable.
#include "autograd/ops.h"

typedef struct { dt_tensor *x, *v; const dt_tensor *c; } scale_saved;

static void scale_cols_bwd(dt_graph *g, dt_node *n) {
    scale_saved *s = n->saved;
    const dt_backend *be = g->be;
    const int64_t D = dt_numel(s->v), N = dt_numel(s->x) / D;
    const float *dy = n->out->grad; // (N, D)
    bool fresh;
    if (s->v->requires_grad) { // dv (D) += sum over rows of dy * (x - c)
        float *dv = dt_graph_grad(g, s->v, &fresh);
        if (!dv) return;
        for (int64_t r = 0; r < N; r++) be->mul(be, dv, !(fresh && r == 0), dy + r * D, dt_f32(s->x) + r * D, D);
        if (s->c) { // dv -= c * (sum over rows of dy)
            float *col = dt_graph_temp(g, (size_t)D * sizeof(float)); // (D)
            if (!col) return;
            for (int64_t r = 0; r < N; r++) be->axpy(be, col, r > 0, 1.0f, dy + r * D, D);
            be->mul(be, col, false, col, dt_f32(s->c), D);
            be->axpy(be, dv, true, -1.0f, col, D);
            dt_graph_temp_release(g, col);
        }
    }
    if (s->x->requires_grad) { // dx (N, D) = dy * v
        float *dx = dt_graph_grad(g, s->x, &fresh);
        if (!dx) return;
        for (int64_t r = 0; r < N; r++) be->mul(be, dx + r * D, !fresh, dy + r * D, dt_f32(s->v), D);
    }
}

dt_tensor *dt_scale_cols(dt_graph *g, dt_tensor *x, dt_tensor *v, const dt_tensor *c) {
    if (!x || !v || g->failed) return NULL;
    const int64_t D = dt_numel(v), N = dt_numel(x) / D;
    if (x->shape[x->ndim - 1] != D || (c && dt_numel(c) != D)) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "dt_scale_cols: last dim %lld, vector %lld", (long long)x->shape[x->ndim - 1], (long long)D);
        return NULL;
    }
    dt_tensor *y = dt_graph_tensor(g, x->ndim, x->shape); // (..., D)
    float *shift = c ? dt_graph_temp(g, (size_t)D * sizeof(float)) : NULL; // (D): c - c * v
    if (!y || (c && !shift)) return NULL;
    if (c) {
        g->be->mul(g->be, shift, false, dt_f32(c), dt_f32(v), D);
        g->be->axpy(g->be, shift, false, -1.0f, shift, D);
        g->be->axpy(g->be, shift, true, 1.0f, dt_f32(c), D);
    }
    for (int64_t r = 0; r < N; r++) {
        g->be->mul(g->be, dt_f32(y) + r * D, false, dt_f32(x) + r * D, dt_f32(v), D);
        if (c) g->be->axpy(g->be, dt_f32(y) + r * D, true, 1.0f, shift, D);
    }
    dt_graph_temp_release(g, shift);
    if (g->grad_enabled && (x->requires_grad || v->requires_grad)) {
        dt_node *n = dt_graph_record(g, scale_cols_bwd, y, sizeof(scale_saved));
        if (!n) return NULL;
        *(scale_saved *)n->saved = (scale_saved){x, v, c};
    }
    return y;
}
