// Causal grouped-query attention and the SiLU-gated MLP product.
#include "autograd/ops.h"

typedef struct {
    dt_tensor *q, *k, *v; // (B,T,H*hd), (B,T,KV*hd), (B,T,KV*hd)
    float *lse;           // (B,H,T)
    const int32_t *seg;   // (B*T) or NULL
    int64_t H, KV, hd;
} attn_saved;

// The backend's scratch is one device block kept by the graph and grown only when a larger shape comes.
static void *attn_scratch(dt_graph *g, size_t bytes) {
    if (bytes > g->attn_scratch_bytes) {
        if (g->attn_scratch) g->be->free(g->be, g->attn_scratch);
        g->attn_scratch = g->be->alloc(g->be, bytes);
        g->attn_scratch_bytes = g->attn_scratch ? bytes : 0;
        if (!g->attn_scratch) {
            g->failed = true;
            dt_fail(g->ctx, DT_ENOMEM, "out of memory allocating %zu bytes of attention scratch", bytes);
        }
    }
    return g->attn_scratch;
}

static void attention_bwd(dt_graph *g, dt_node *n) {
    attn_saved *s = n->saved;
    int64_t B = s->q->shape[0], T = s->q->shape[1];
    void *scratch = attn_scratch(g, g->be->attention_scratch_bytes(g->be, B, T, s->H, s->KV, s->hd));
    if (!scratch) return;
    bool fq = false, fk = false, fv = false;
    float *dq = s->q->requires_grad ? dt_graph_grad(g, s->q, &fq) : NULL;
    float *dk = s->k->requires_grad ? dt_graph_grad(g, s->k, &fk) : NULL;
    float *dv = s->v->requires_grad ? dt_graph_grad(g, s->v, &fv) : NULL;
    if (g->failed) return;
    g->be->attention_bwd(g->be, dq, dk, dv, !fq, !fk, !fv, n->out->grad, dt_f32(n->out), s->lse, dt_f32(s->q),
                         dt_f32(s->k), dt_f32(s->v), s->seg, B, T, s->H, s->KV, s->hd, scratch);
}

dt_tensor *dt_attention(dt_graph *g, dt_tensor *q, dt_tensor *k, dt_tensor *v, int64_t H, int64_t KV, int64_t hd,
                        const int32_t *seg_start) {
    if (!q || !k || !v || g->failed) return NULL;
    int64_t B = q->shape[0], T = q->shape[1];
    dt_tensor *y = dt_graph_tensor(g, 3, (int64_t[]){B, T, H * hd});    // (B, T, H*hd)
    float *lse = dt_graph_scratch(g, (size_t)B * H * T * sizeof(float)); // (B, H, T)
    void *scratch = attn_scratch(g, g->be->attention_scratch_bytes(g->be, B, T, H, KV, hd));
    if (!y || !lse || !scratch) return NULL;
    g->be->attention_fwd(g->be, dt_f32(y), lse, dt_f32(q), dt_f32(k), dt_f32(v), seg_start, B, T, H, KV, hd, scratch);
    if (g->grad_enabled && (q->requires_grad || k->requires_grad || v->requires_grad)) {
        dt_node *n = dt_graph_record(g, attention_bwd, y, sizeof(attn_saved));
        if (!n) return NULL;
        *(attn_saved *)n->saved = (attn_saved){q, k, v, lse, seg_start, H, KV, hd};
    }
    return y;
}

typedef struct { dt_tensor *gate, *up; } swiglu_saved;

static void swiglu_bwd(dt_graph *g, dt_node *n) {
    swiglu_saved *s = n->saved;
    bool fg = false, fu = false;
    float *dg = s->gate->requires_grad ? dt_graph_grad(g, s->gate, &fg) : NULL;
    float *du = s->up->requires_grad ? dt_graph_grad(g, s->up, &fu) : NULL;
    if (g->failed) return;
    g->be->swiglu_bwd(g->be, dg, du, !fg, !fu, n->out->grad, dt_f32(s->gate), dt_f32(s->up), dt_numel(n->out));
}

dt_tensor *dt_swiglu(dt_graph *g, dt_tensor *gate, dt_tensor *up) {
    if (!gate || !up) return NULL;
    dt_tensor *h = dt_graph_tensor(g, gate->ndim, gate->shape);
    if (!h) return NULL;
    g->be->swiglu_fwd(g->be, dt_f32(h), dt_f32(gate), dt_f32(up), dt_numel(h));
    if (g->grad_enabled && (gate->requires_grad || up->requires_grad)) {
        dt_node *n = dt_graph_record(g, swiglu_bwd, h, sizeof(swiglu_saved));
        if (!n) return NULL;
        *(swiglu_saved *)n->saved = (swiglu_saved){gate, up};
    }
    return h;
}
