// RMSNorm and in-place rotary embedding.
#include "autograd/ops.h"

typedef struct { dt_tensor *x; const dt_tensor *w; float *rstd; } rmsnorm_saved;

static void rmsnorm_bwd(dt_graph *g, dt_node *n) {
    rmsnorm_saved *s = n->saved;
    int64_t D = dt_numel(s->w), N = dt_numel(s->x) / D;
    bool fresh;
    float *dx = dt_graph_grad(g, s->x, &fresh);
    if (dx) g->be->rmsnorm_bwd(g->be, dx, !fresh, n->out->grad, dt_f32(s->x), dt_f32(s->w), s->rstd, N, D);
}

dt_tensor *dt_rmsnorm(dt_graph *g, dt_tensor *x, const dt_tensor *w, float eps) {
    if (!x) return NULL;
    int64_t D = dt_numel(w), N = dt_numel(x) / D;
    dt_tensor *y = dt_graph_tensor(g, x->ndim, x->shape);
    float *rstd = dt_graph_scratch(g, (size_t)N * sizeof(float)); // (N)
    if (!y || !rstd) return NULL;
    g->be->rmsnorm_fwd(g->be, dt_f32(y), rstd, dt_f32(x), dt_f32(w), N, D, eps);
    if (g->grad_enabled && x->requires_grad) {
        dt_node *n = dt_graph_record(g, rmsnorm_bwd, y, sizeof(rmsnorm_saved));
        if (!n) return NULL;
        *(rmsnorm_saved *)n->saved = (rmsnorm_saved){x, w, rstd};
    }
    return y;
}

float *dt_rope_table(dt_graph *g, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd) {
    float *cs = dt_graph_scratch(g, (size_t)N * hd * sizeof(float)); // (N, hd)
    if (cs) g->be->rope_table(g->be, cs, pos, inv_freq, N, hd);
    return cs;
}

typedef struct { int64_t H, hd; const float *cs; } rope_saved;

// The rotation is orthogonal, so the gradient is the gradient rotated back, done in place.
static void rope_bwd(dt_graph *g, dt_node *n) {
    rope_saved *s = n->saved;
    int64_t N = dt_numel(n->out) / (s->H * s->hd);
    g->be->rope(g->be, n->out->grad, s->cs, N, s->H, s->hd, true);
}

dt_tensor *dt_rope_(dt_graph *g, dt_tensor *x, int64_t H, int64_t hd, const float *cs) {
    if (!x || !cs || g->failed) return NULL;
    int64_t N = dt_numel(x) / (H * hd);
    g->be->rope(g->be, dt_f32(x), cs, N, H, hd, false);
    if (g->grad_enabled && x->requires_grad) {
        dt_node *n = dt_graph_record(g, rope_bwd, x, sizeof(rope_saved));
        if (!n) return NULL;
        n->out_in_place = true;
        *(rope_saved *)n->saved = (rope_saved){H, hd, cs};
    }
    return x;
}
