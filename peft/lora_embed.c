// LoRA on the token embedding, as PEFT 0.13.2's lora.Embedding: for token id t,
//   y = E[t] + scale * (A^T)[t] B^T,   A (r, V) lora_embedding_A, B (D, r) lora_embedding_B,
// i.e. the embedding lookup of A's column t (r values), then a product with B^T. PEFT applies no dropout
// here (its Embedding.forward never calls lora_dropout), and neither do we. PEFT starts A at zero and B
// normal (the reverse of a linear LoRA), so the adapted model starts equal to the base.
//
// The op gathers and scatters columns of A on the host: CPU backend only.
#include "peft/lora_embed.h"
#include <string.h>

typedef struct {
    dt_tensor *x;
    const dt_lora_ref *l;
    const int32_t *ids; // (N)
    float *h;           // (N, r): the gathered columns of A, kept for dB
} embed_saved;

static void embed_bwd(dt_graph *g, dt_node *n) {
    const embed_saved *s = n->saved;
    const dt_backend *be = g->be;
    const dt_lora_ref *l = s->l;
    const int64_t r = l->A->shape[0], V = l->A->shape[1], D = l->B->shape[0], N = dt_numel(s->x) / D;
    const float *dy = n->out->grad; // (N, D)
    bool fresh;
    if (s->x->requires_grad) { // dx += dy
        float *dx = dt_graph_grad(g, s->x, &fresh);
        if (!dx) return;
        be->axpy(be, dx, !fresh, 1.0f, dy, N * D);
    }
    // dB (D, r) += scale dy^T h
    be->gemm(be, true, false, D, r, N, l->scale, dy, D, s->h, r, 1.0f, l->B->grad, r);
    // dh (N, r) = scale dy B; then dA[k, id] += dh[n, k]
    float *dh = dt_graph_temp(g, (size_t)(N * r) * sizeof(float));
    if (!dh) return;
    be->gemm(be, false, false, N, r, D, l->scale, dy, D, dt_f32(l->B), r, 0.0f, dh, r);
    float *dA = l->A->grad;
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < r; k++) dA[k * V + s->ids[i]] += dh[i * r + k];
    dt_graph_temp_release(g, dh);
}

dt_tensor *dt_lora_embed(dt_graph *g, const dt_lora_ref *l, const int32_t *ids, dt_tensor *x) {
    if (!x || g->failed) return NULL;
    if (g->be->device != DT_DEV_CPU) {
        g->failed = true;
        dt_fail(g->ctx, DT_EUNSUPPORTED, "LoRA on embed_tokens runs on the CPU backend only");
        return NULL;
    }
    const int64_t r = l->A->shape[0], V = l->A->shape[1], D = l->B->shape[0], N = dt_numel(x) / D;
    dt_tensor *y = dt_graph_tensor(g, x->ndim, x->shape);        // (B, T, D)
    float *h = dt_graph_scratch(g, (size_t)(N * r) * sizeof(float)); // (N, r)
    if (!y || !h) return NULL;
    const float *A = dt_f32(l->A);
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < r; k++) h[i * r + k] = A[k * V + ids[i]];
    memcpy(dt_f32(y), dt_f32(x), (size_t)(N * D) * sizeof(float));
    g->be->gemm(g->be, false, true, N, D, r, l->scale, h, r, dt_f32(l->B), r, 1.0f, dt_f32(y), D); // y += s h B^T
    if (g->grad_enabled && (x->requires_grad || l->A->requires_grad || l->B->requires_grad)) {
        dt_node *n = dt_graph_record(g, embed_bwd, y, sizeof(embed_saved));
        if (!n) return NULL;
        *(embed_saved *)n->saved = (embed_saved){x, l, ids, h};
    }
    return y;
}

dt_tensor *dt_lora_embed_site(dt_graph *g, const void *self, const dt_llama *m, const int32_t *ids, dt_tensor *x) {
    (void)m;
    return dt_lora_embed(g, self, ids, x);
}
