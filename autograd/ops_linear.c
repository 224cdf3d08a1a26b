// Linear layer with an optional LoRA adapter: y = x W^T + b + scale * (dropout(x) A^T) B^T.
// W + BA is never formed; the adapter path costs two thin matmuls.
#include "autograd/ops.h"

typedef struct {
    dt_tensor *x;          // (N, in)
    const dt_tensor *W;    // (out, in), frozen
    const dt_lora_ref *lora;
    const float *xd;       // (N, in): dropout(x), or x itself when no dropout
    float *h;              // (N, r): xd A^T, kept for dB
    uint64_t seed;         // dropout mask seed, 0 when no dropout
} linear_saved;

static void linear_bwd(dt_graph *g, dt_node *n) {
    linear_saved *s = n->saved;
    const dt_backend *be = g->be;
    int64_t in = s->W->shape[1], out = s->W->shape[0], N = dt_numel(s->x) / in;
    const float *dy = n->out->grad; // (N, out)
    float *dh = NULL;               // (N, r)
    const dt_lora_ref *l = s->lora;
    int64_t r = l ? l->A->shape[0] : 0;
    if (l) {
        // dB (out, r) += scale dy^T h ; dh (N, r) = scale dy B ; dA (r, in) += dh^T xd
        be->gemm(true, false, out, r, N, l->scale, dy, out, s->h, r, 1.0f, l->B->grad, r);
        dh = dt_graph_scratch(g, (size_t)N * r * sizeof(float));
        if (!dh) return;
        be->gemm(false, false, N, r, out, l->scale, dy, out, dt_f32(l->B), r, 0.0f, dh, r);
        be->gemm(true, false, r, in, N, 1.0f, dh, r, s->xd, in, 1.0f, l->A->grad, in);
    }
    if (!s->x->requires_grad) return;
    bool fresh;
    float *dx = dt_graph_grad(g, s->x, &fresh); // (N, in)
    if (!dx) return;
    be->gemm(false, false, N, in, out, 1.0f, dy, out, dt_f32(s->W), in, fresh ? 0.0f : 1.0f, dx, in);
    if (!l) return;
    if (s->seed) {
        // d(xd) = dh A, then through the same dropout mask into dx
        float *dxd = dt_graph_scratch(g, (size_t)N * in * sizeof(float)); // (N, in)
        if (!dxd) return;
        be->gemm(false, false, N, in, r, 1.0f, dh, r, dt_f32(l->A), in, 0.0f, dxd, in);
        be->dropout(dx, true, dxd, N * in, l->dropout, s->seed);
    } else {
        be->gemm(false, false, N, in, r, 1.0f, dh, r, dt_f32(l->A), in, 1.0f, dx, in);
    }
}

dt_tensor *dt_linear(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias, const dt_lora_ref *lora) {
    if (!x || g->failed) return NULL;
    const dt_backend *be = g->be;
    int64_t in = W->shape[1], out = W->shape[0], N = dt_numel(x) / in;
    int64_t shape[DT_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = out;
    dt_tensor *y = dt_graph_tensor(g, x->ndim, shape); // (..., out)
    if (!y) return NULL;
    be->gemm(false, true, N, out, in, 1.0f, dt_f32(x), in, dt_f32(W), in, 0.0f, dt_f32(y), out);
    if (bias) be->add_bias(dt_f32(y), dt_f32(bias), N, out);
    bool record = g->grad_enabled && (x->requires_grad || lora);
    const float *xd = dt_f32(x);
    float *h = NULL;
    uint64_t seed = 0;
    if (lora) {
        int64_t r = lora->A->shape[0];
        if (g->training && lora->dropout > 0.0f) {
            float *t = dt_graph_scratch(g, (size_t)N * in * sizeof(float)); // (N, in)
            if (!t) return NULL;
            seed = dt_graph_next_dropout_seed(g);
            be->dropout(t, false, xd, N * in, lora->dropout, seed);
            xd = t;
        }
        h = dt_graph_scratch(g, (size_t)N * r * sizeof(float)); // (N, r)
        if (!h) return NULL;
        be->gemm(false, true, N, r, in, 1.0f, xd, in, dt_f32(lora->A), in, 0.0f, h, r);
        be->gemm(false, true, N, out, r, lora->scale, h, r, dt_f32(lora->B), r, 1.0f, dt_f32(y), out);
    }
    if (record) {
        dt_node *n = dt_graph_record(g, linear_bwd, y, sizeof(linear_saved));
        if (!n) return NULL;
        *(linear_saved *)n->saved = (linear_saved){x, W, lora, xd, h, seed};
    }
    return y;
}
