// Generation's step-by-step forward: the training forward of models/llama.c with gradients off and a
// KV-cache attention op (dt_llama_forward_cached), so every adapter applies here exactly as in training.
#include "models/llama_infer.h"
#include <stdlib.h>
#include <string.h>

int dt_kv_cache_init(dt_ctx *ctx, const dt_llama *m, int64_t cap, dt_kv_cache *c) {
    const dt_model_config *cf = &m->cfg;
    size_t kvn = (size_t)cf->num_layers * (size_t)cap * (size_t)cf->num_kv_heads * (size_t)cf->head_dim;
    memset(c, 0, sizeof *c);
    c->cap = cap;
    c->be = m->be;
    c->k = m->be->alloc(m->be, kvn * sizeof(float));
    c->v = m->be->alloc(m->be, kvn * sizeof(float));
    if (!c->k || !c->v) { dt_kv_cache_free(c); return dt_fail(ctx, DT_ENOMEM, "out of memory for a %lld-position KV cache", (long long)cap); }
    int rc = dt_graph_init(ctx, &c->g, m->be, 0);
    if (rc) dt_kv_cache_free(c);
    return rc;
}

void dt_kv_cache_free(dt_kv_cache *c) {
    if (c->be) {
        c->be->free(c->be, c->k);
        c->be->free(c->be, c->v);
    }
    dt_graph_free(&c->g);
    memset(c, 0, sizeof *c);
}

int dt_llama_infer(dt_ctx *ctx, const dt_llama *m, const dt_llama_adapters *ad, dt_kv_cache *c, const int32_t *ids,
                   int64_t n_ids, float *logits) {
    const int64_t P = c->len == 0 ? dt_llama_cache_front(ad) : 0;
    if (P + n_ids <= 0) return dt_fail(ctx, DT_EINPUT, "nothing to evaluate");
    c->g.ctx = ctx;
    dt_batch b = {1, n_ids, ids, NULL, NULL, NULL};
    dt_llama_out out;
    int rc = dt_llama_forward_cached(ctx, m, ad, &b, c, &out);
    if (!rc) m->be->download(m->be, logits, dt_f32(out.logits), (size_t)m->cfg.vocab_size * sizeof(float));
    return rc;
}
