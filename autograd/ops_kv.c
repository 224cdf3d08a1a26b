// Attention of new positions over a key/value cache, for generation: the one op the forward adds to run
// step by step (models/llama.c with a dt_kv_cache). Forward only (generation records no tape).
#include <math.h>
#include "autograd/ops.h"

// out (n, H*hd): causal attention of n new queries at positions p0.. over cached keys 0..p0+n-1, one pass
// with a running max (online softmax), so no (len) buffer is needed. kc/vc (>= p0+n, KV*hd).
static void attend(const float *q, const float *kc, const float *vc, float *out, int64_t n, int64_t p0, int64_t H,
                   int64_t KV, int64_t hd) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t group = H / KV;
    #pragma omp parallel for collapse(2)
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < H; h++) {
            const float *qi = q + (i * H + h) * hd;
            int64_t len = p0 + i + 1, gq = h / group;
            float *o = out + (i * H + h) * hd;
            float m = -INFINITY, sum = 0;
            for (int64_t e = 0; e < hd; e++) o[e] = 0;
            for (int64_t j = 0; j < len; j++) {
                const float *kj = kc + (j * KV + gq) * hd, *vj = vc + (j * KV + gq) * hd;
                float s = 0;
                for (int64_t e = 0; e < hd; e++) s += qi[e] * kj[e];
                s *= scale;
                float mn = s > m ? s : m, corr = expf(m - mn), w = expf(s - mn);
                sum = sum * corr + w;
                for (int64_t e = 0; e < hd; e++) o[e] = o[e] * corr + w * vj[e];
                m = mn;
            }
            for (int64_t e = 0; e < hd; e++) o[e] /= sum;
        }
}

dt_tensor *dt_attention_cached(dt_graph *g, dt_tensor *q, dt_tensor *k, dt_tensor *v, int64_t H, int64_t KV, int64_t hd,
                               float *kc, float *vc, int64_t p0) {
    if (!q || !k || !v || g->failed) return NULL;
    if (g->grad_enabled || g->be->device != DT_DEV_CPU || q->shape[0] != 1) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "KV-cache attention is for generation: one row, no gradients, CPU backend");
        return NULL;
    }
    const int64_t n = q->shape[1], kvd = KV * hd;
    dt_tensor *y = dt_graph_tensor(g, 3, (int64_t[]){1, n, H * hd}); // (1, n, H*hd)
    if (!y) return NULL;
    // The new keys and values join the cache first: each new query also sees itself and those before it.
    g->be->axpy(g->be, kc + p0 * kvd, false, 1.0f, dt_f32(k), n * kvd);
    g->be->axpy(g->be, vc + p0 * kvd, false, 1.0f, dt_f32(v), n * kvd);
    attend(dt_f32(q), kc, vc, dt_f32(y), n, p0, H, KV, hd);
    return y;
}

int dt_kv_write(dt_graph *g, float *c, int64_t p0, const dt_tensor *x) {
    if (!x || g->failed) return -1;
    if (g->be->device != DT_DEV_CPU) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "the KV cache is for generation on the CPU backend");
        return -1;
    }
    g->be->axpy(g->be, c + p0 * x->shape[1], false, 1.0f, dt_f32(x), dt_numel(x));
    return 0;
}
