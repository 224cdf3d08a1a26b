// Attention of new positions over a key/value cache, for generation: the one op the forward adds to run
// step by step (models/llama.c with a dt_kv_cache). Forward only (generation records no tape).
#include "autograd/ops.h"

dt_tensor *dt_attention_cached(dt_graph *g, dt_tensor *q, dt_tensor *k, dt_tensor *v, int64_t H, int64_t KV, int64_t hd,
                               float *kc, float *vc, int64_t p0) {
    if (!q || !k || !v || g->failed) return NULL;
    if (g->grad_enabled || q->shape[0] != 1) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "KV-cache attention is for generation: one row, no gradients");
        return NULL;
    }
    const int64_t n = q->shape[1], kvd = KV * hd;
    dt_tensor *y = dt_graph_tensor(g, 3, (int64_t[]){1, n, H * hd}); // (1, n, H*hd)
    if (!y) return NULL;
    // The new keys and values join the cache first: each new query also sees itself and those before it.
    g->be->axpy(g->be, kc + p0 * kvd, false, 1.0f, dt_f32(k), n * kvd);
    g->be->axpy(g->be, vc + p0 * kvd, false, 1.0f, dt_f32(v), n * kvd);
    g->be->attention_cached(g->be, dt_f32(y), dt_f32(q), kc, vc, n, p0, H, KV, hd);
    return y;
}

int dt_kv_write(dt_graph *g, float *c, int64_t p0, const dt_tensor *x) {
    if (!x || g->failed) return -1;
    g->be->axpy(g->be, c + p0 * x->shape[1], false, 1.0f, dt_f32(x), dt_numel(x));
    return 0;
}
