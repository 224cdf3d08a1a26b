// A small trainable dense layer and ReLU, generic ops a PEFT method can build on (bottleneck adapters'
// down- and up-projections). Unlike dt_linear (frozen W, never dW), W and b here get gradients.
#include "autograd/ops.h"

typedef struct { dt_tensor *x, *W, *b; } dense_saved;

static void dense_bwd(dt_graph *g, dt_node *n) {
    dense_saved *s = n->saved;
    const dt_backend *be = g->be;
    const int64_t in = s->W->shape[1], out = s->W->shape[0], N = dt_numel(s->x) / in;
    const float *dy = n->out->grad; // (N, out)
    bool fresh;
    if (s->W->requires_grad) { // dW (out, in) += dy^T x
        float *dW = dt_graph_grad(g, s->W, &fresh);
        if (!dW) return;
        be->gemm(be, true, false, out, in, N, 1.0f, dy, out, dt_f32(s->x), in, fresh ? 0.0f : 1.0f, dW, in);
    }
    if (s->b && s->b->requires_grad) { // db (out) += sum over rows of dy
        float *db = dt_graph_grad(g, s->b, &fresh);
        if (!db) return;
        for (int64_t r = 0; r < N; r++) be->axpy(be, db, !(fresh && r == 0), 1.0f, dy + r * out, out);
    }
    if (s->x->requires_grad) { // dx (N, in) += dy W
        float *dx = dt_graph_grad(g, s->x, &fresh);
        if (!dx) return;
        be->gemm(be, false, false, N, in, out, 1.0f, dy, out, dt_f32(s->W), in, fresh ? 0.0f : 1.0f, dx, in);
    }
}

dt_tensor *dt_dense(dt_graph *g, dt_tensor *x, dt_tensor *W, dt_tensor *b) {
    if (!x || !W || g->failed) return NULL;
    const int64_t in = W->shape[1], out = W->shape[0], N = dt_numel(x) / in;
    int64_t shape[DT_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = out;
    dt_tensor *y = dt_graph_tensor(g, x->ndim, shape); // (..., out)
    if (!y) return NULL;
    g->be->gemm(g->be, false, true, N, out, in, 1.0f, dt_f32(x), in, dt_f32(W), in, 0.0f, dt_f32(y), out);
    if (b) g->be->add_bias(g->be, dt_f32(y), dt_f32(b), N, out);
    if (g->grad_enabled && (x->requires_grad || W->requires_grad || (b && b->requires_grad))) {
        dt_node *n = dt_graph_record(g, dense_bwd, y, sizeof(dense_saved));
        if (!n) return NULL;
        *(dense_saved *)n->saved = (dense_saved){x, W, b};
    }
    return y;
}

typedef struct { dt_tensor *x; } relu_saved;

static void relu_bwd(dt_graph *g, dt_node *n) {
    relu_saved *s = n->saved;
    bool fresh;
    float *dx = dt_graph_grad(g, s->x, &fresh);
    if (!dx) return;
    // The mask is the output's sign: dx = dy where y > 0. On the host: this op runs on the CPU backend.
    const float *y = dt_f32(n->out), *dy = n->out->grad;
    for (int64_t i = 0; i < dt_numel(s->x); i++) dx[i] = (fresh ? 0.0f : dx[i]) + (y[i] > 0.0f ? dy[i] : 0.0f);
}

dt_tensor *dt_relu(dt_graph *g, dt_tensor *x) {
    if (!x || g->failed) return NULL;
    if (g->be->device != DT_DEV_CPU) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "dt_relu runs on the CPU backend only");
        return NULL;
    }
    dt_tensor *y = dt_graph_tensor(g, x->ndim, x->shape);
    if (!y) return NULL;
    for (int64_t i = 0; i < dt_numel(x); i++) dt_f32(y)[i] = dt_f32(x)[i] > 0.0f ? dt_f32(x)[i] : 0.0f;
    if (g->grad_enabled && x->requires_grad) {
        dt_node *n = dt_graph_record(g, relu_bwd, y, sizeof(relu_saved));
        if (!n) return NULL;
        *(relu_saved *)n->saved = (relu_saved){x};
    }
    return y;
}
