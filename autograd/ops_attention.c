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
    const float *q = dt_graph_saved(g, s->q), *k = dt_graph_saved(g, s->k), *v = dt_graph_saved(g, s->v);
    const float *o = dt_graph_saved(g, n->out);
    if (!g->failed)
        g->be->attention_bwd(g->be, dq, dk, dv, !fq, !fk, !fv, n->out->grad, o, s->lse, q, k, v, s->seg, B, T, s->H,
                             s->KV, s->hd, scratch);
    dt_graph_saved_done(g, n->out, o);
    dt_graph_saved_done(g, s->v, v);
    dt_graph_saved_done(g, s->k, k);
    dt_graph_saved_done(g, s->q, q);
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
        dt_graph_keep16(g, q);
        dt_graph_keep16(g, k);
        dt_graph_keep16(g, v);
        dt_graph_keep16(g, y);
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

// ---- attention with extra key/value rows in front of every example ----------------------------------
//
// Built on the backend's causal attention unchanged: each example is laid out as [n extra rows, its own
// tokens] in an expanded sequence of T' positions per row, so the causal mask (within examples, via
// seg_start) gives a token exactly the extra rows plus the tokens of its example up to itself. The
// extra rows' queries are zero and their outputs dropped; rows past a row's end (a packed row with
// fewer examples than the longest) are zero and see only themselves. Those dropped outputs get a zero
// gradient, so they add nothing to any gradient.

typedef struct { int64_t dst, src, len; } ext_run; // an example: its tokens' rows dst.. of the expanded (B*T')
                                                   // rows, src.. of the input (B*T); its extra rows are dst-n..

typedef struct {
    dt_tensor *q, *k, *v, *pk, *pv; // (B,T,H*hd), (B,T,KV*hd) x2, (n,KV*hd) x2
    float *out, *lse;               // (B,T',H*hd), (B,H,T') of the expanded attention
    const int32_t *seg;             // (B*T') device, or NULL (one example per row: plain causal)
    const ext_run *runs;            // (n_runs) host
    int64_t n_runs, Tp, H, KV, hd;
} attn_ext_saved;

// dst (B*T', C) = the expanded layout of src (B*T, C) with pre (n, C) as every example's extra rows (pre
// NULL: zero rows).
static void expand_rows(dt_graph *g, float *dst, const float *src, const float *pre, int64_t n, int64_t C,
                        const ext_run *runs, int64_t n_runs, int64_t rows) {
    const dt_backend *be = g->be;
    be->zero(be, dst, (size_t)(rows * C) * sizeof(float));
    for (int64_t r = 0; r < n_runs; r++) {
        if (pre) be->axpy(be, dst + (runs[r].dst - n) * C, false, 1.0f, pre, n * C);
        be->axpy(be, dst + runs[r].dst * C, false, 1.0f, src + runs[r].src * C, runs[r].len * C);
    }
}

// The inverse of expand_rows for gradients: dsrc (B*T, C) gets the token rows of d (B*T', C) (every input
// row is in exactly one run: written when fresh, else added), dpre (n, C) the sum of the extra rows.
static void gather_grads(dt_graph *g, float *dsrc, bool src_fresh, float *dpre, bool pre_fresh, const float *d,
                         int64_t n, int64_t C, const ext_run *runs, int64_t n_runs) {
    const dt_backend *be = g->be;
    for (int64_t r = 0; r < n_runs; r++) {
        if (dsrc) be->axpy(be, dsrc + runs[r].src * C, !src_fresh, 1.0f, d + runs[r].dst * C, runs[r].len * C);
        if (dpre) be->axpy(be, dpre, !(pre_fresh && r == 0), 1.0f, d + (runs[r].dst - n) * C, n * C);
    }
}

static void attention_ext_bwd(dt_graph *g, dt_node *n) {
    attn_ext_saved *s = n->saved;
    const int64_t B = s->q->shape[0], Tp = s->Tp, np = s->pk->shape[0], rows = B * Tp;
    const int64_t qd = s->H * s->hd, kvd = s->KV * s->hd;
    const bool gq = s->q->requires_grad, gk = s->k->requires_grad || s->pk->requires_grad;
    const bool gv = s->v->requires_grad || s->pv->requires_grad;
    void *scratch = attn_scratch(g, g->be->attention_scratch_bytes(g->be, B, Tp, s->H, s->KV, s->hd));
    // The expanded inputs are rebuilt rather than kept; dO goes to the token rows, zero elsewhere.
    float *q = dt_graph_temp(g, (size_t)(rows * qd) * sizeof(float));   // (B, T', H*hd)
    float *k = dt_graph_temp(g, (size_t)(rows * kvd) * sizeof(float));  // (B, T', KV*hd)
    float *v = dt_graph_temp(g, (size_t)(rows * kvd) * sizeof(float));  // (B, T', KV*hd)
    float *dout = dt_graph_temp(g, (size_t)(rows * qd) * sizeof(float)); // (B, T', H*hd)
    float *dq = gq ? dt_graph_temp(g, (size_t)(rows * qd) * sizeof(float)) : NULL;
    float *dk = gk ? dt_graph_temp(g, (size_t)(rows * kvd) * sizeof(float)) : NULL;
    float *dv = gv ? dt_graph_temp(g, (size_t)(rows * kvd) * sizeof(float)) : NULL;
    if (scratch && q && k && v && dout && !g->failed) {
        expand_rows(g, q, dt_f32(s->q), NULL, np, qd, s->runs, s->n_runs, rows);
        expand_rows(g, k, dt_f32(s->k), dt_f32(s->pk), np, kvd, s->runs, s->n_runs, rows);
        expand_rows(g, v, dt_f32(s->v), dt_f32(s->pv), np, kvd, s->runs, s->n_runs, rows);
        expand_rows(g, dout, n->out->grad, NULL, np, qd, s->runs, s->n_runs, rows);
        g->be->attention_bwd(g->be, dq, dk, dv, false, false, false, dout, s->out, s->lse, q, k, v, s->seg, B, Tp, s->H,
                             s->KV, s->hd, scratch);
        bool f1 = false, f2 = false;
        float *d1, *d2;
        if (gq && (d1 = dt_graph_grad(g, s->q, &f1)))
            gather_grads(g, d1, f1, NULL, false, dq, np, qd, s->runs, s->n_runs);
        for (int which = 0; which < 2; which++) { // keys, then values
            dt_tensor *x = which ? s->v : s->k, *p = which ? s->pv : s->pk;
            const float *d = which ? dv : dk;
            if (!d) continue;
            d1 = x->requires_grad ? dt_graph_grad(g, x, &f1) : NULL;
            d2 = p->requires_grad ? dt_graph_grad(g, p, &f2) : NULL;
            if (!g->failed) gather_grads(g, d1, f1, d2, f2, d, np, kvd, s->runs, s->n_runs);
        }
    }
    float *tmp[] = {q, k, v, dout, dq, dk, dv};
    for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++) dt_graph_temp_release(g, tmp[i]);
}

dt_tensor *dt_attention_ext(dt_graph *g, dt_tensor *q, dt_tensor *k, dt_tensor *v, dt_tensor *pk, dt_tensor *pv,
                            int64_t H, int64_t KV, int64_t hd, const int32_t *seg_host) {
    if (!q || !k || !v || !pk || !pv || g->failed) return NULL;
    const int64_t B = q->shape[0], T = q->shape[1], np = pk->shape[0], qd = H * hd, kvd = KV * hd;
    if (pk->ndim != 2 || pv->ndim != 2 || pv->shape[0] != np || pk->shape[1] != kvd || pv->shape[1] != kvd) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "extra keys/values must both be (n, %lld)", (long long)kvd);
        return NULL;
    }
    // The examples of each row (runs of equal seg_start; the whole row without packing) and T'.
    int64_t n_runs = 0, Tp = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t len = T;
        for (int64_t t = 0; t < T; t++)
            if (t == 0 || (seg_host && seg_host[b * T + t] != seg_host[b * T + t - 1])) { n_runs++; len += np; }
        if (len > Tp) Tp = len;
    }
    ext_run *runs = dt_arena_alloc(&g->host, (size_t)n_runs * sizeof *runs);
    int32_t *segp = seg_host ? dt_arena_alloc(&g->host, (size_t)(B * Tp) * sizeof *segp) : NULL; // (B, T') host
    if (!runs || (seg_host && !segp)) {
        g->failed = true;
        dt_fail(g->ctx, DT_ENOMEM, "out of memory");
        return NULL;
    }
    for (int64_t b = 0, r = -1; b < B; b++) {
        int64_t at = 0; // next expanded position of this row
        for (int64_t t = 0; t < T; t++) {
            if (t == 0 || (seg_host && seg_host[b * T + t] != seg_host[b * T + t - 1])) {
                runs[++r] = (ext_run){b * Tp + at + np, b * T + t, 0};
                for (int64_t i = 0; segp && i < np; i++) segp[b * Tp + at + i] = (int32_t)at;
                at += np;
            }
            if (segp) segp[b * Tp + at] = (int32_t)(runs[r].dst - b * Tp - np);
            runs[r].len++;
            at++;
        }
        for (; segp && at < Tp; at++) segp[b * Tp + at] = (int32_t)at; // padding: sees only itself
    }
    const int32_t *seg_d = segp ? dt_graph_ints(g, segp, B * Tp) : NULL;
    const int64_t rows = B * Tp;
    dt_tensor *y = dt_graph_tensor(g, 3, (int64_t[]){B, T, qd});           // (B, T, H*hd)
    float *out = dt_graph_scratch(g, (size_t)(rows * qd) * sizeof(float)); // (B, T', H*hd)
    float *lse = dt_graph_scratch(g, (size_t)(B * H * Tp) * sizeof(float)); // (B, H, T')
    void *scratch = attn_scratch(g, g->be->attention_scratch_bytes(g->be, B, Tp, H, KV, hd));
    float *qe = dt_graph_temp(g, (size_t)(rows * qd) * sizeof(float));    // (B, T', H*hd)
    float *ke = dt_graph_temp(g, (size_t)(rows * kvd) * sizeof(float));   // (B, T', KV*hd)
    float *ve = dt_graph_temp(g, (size_t)(rows * kvd) * sizeof(float));   // (B, T', KV*hd)
    bool ok = y && out && lse && scratch && qe && ke && ve && (!segp || seg_d) && !g->failed;
    if (ok) {
        expand_rows(g, qe, dt_f32(q), NULL, np, qd, runs, n_runs, rows);
        expand_rows(g, ke, dt_f32(k), dt_f32(pk), np, kvd, runs, n_runs, rows);
        expand_rows(g, ve, dt_f32(v), dt_f32(pv), np, kvd, runs, n_runs, rows);
        g->be->attention_fwd(g->be, out, lse, qe, ke, ve, seg_d, B, Tp, H, KV, hd, scratch);
        for (int64_t r = 0; r < n_runs; r++) // the token rows back into (B, T, H*hd)
            g->be->axpy(g->be, dt_f32(y) + runs[r].src * qd, false, 1.0f, out + runs[r].dst * qd, runs[r].len * qd);
    }
    dt_graph_temp_release(g, qe);
    dt_graph_temp_release(g, ke);
    dt_graph_temp_release(g, ve);
    if (!ok) return NULL;
    if (g->grad_enabled && (q->requires_grad || k->requires_grad || v->requires_grad || pk->requires_grad || pv->requires_grad)) {
        dt_node *n = dt_graph_record(g, attention_ext_bwd, y, sizeof(attn_ext_saved));
        if (!n) return NULL;
        *(attn_ext_saved *)n->saved = (attn_ext_saved){q, k, v, pk, pv, out, lse, seg_d, runs, n_runs, Tp, H, KV, hd};
    }
    return y;
}
