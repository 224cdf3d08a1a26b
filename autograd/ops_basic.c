// Embedding lookup, prompt concatenation, add, mul, dropout.
#include <string.h>
#include "autograd/ops.h"

static bool needs_grad(const dt_graph *g, const dt_tensor *a, const dt_tensor *b) {
    return g->grad_enabled && ((a && a->requires_grad) || (b && b->requires_grad));
}

int32_t *dt_graph_ints(dt_graph *g, const int32_t *host, int64_t n) {
    int32_t *d = dt_graph_scratch(g, (size_t)n * sizeof(int32_t));
    if (d) g->be->upload(g->be, d, host, (size_t)n * sizeof(int32_t));
    return d;
}

dt_tensor *dt_embedding(dt_graph *g, const int32_t *ids, int64_t B, int64_t T, const dt_tensor *table) {
    int64_t D = table->shape[1];
    dt_tensor *y = dt_graph_tensor(g, 3, (int64_t[]){B, T, D}); // (B, T, D)
    if (y) g->be->embedding_fwd(g->be, dt_f32(y), ids, B * T, table);
    return y; // the table is frozen: no node
}

typedef struct { dt_tensor *prompt, *x; } concat_saved;

static void prompt_concat_bwd(dt_graph *g, dt_node *n) {
    concat_saved *s = n->saved;
    int64_t B = n->out->shape[0], Tn = n->out->shape[1], D = n->out->shape[2], P = s->prompt->shape[0];
    const float *dy = n->out->grad; // (B, P + T, D)
    bool fresh;
    if (s->prompt->requires_grad) {
        float *dp = dt_graph_grad(g, s->prompt, &fresh); // (P, D): the sum over the batch
        for (int64_t b = 0; b < B; b++) g->be->axpy(g->be, dp, !(fresh && b == 0), 1.0f, dy + b * Tn * D, P * D);
    }
    if (s->x->requires_grad) {
        float *dx = dt_graph_grad(g, s->x, &fresh); // (B, T, D)
        for (int64_t b = 0; b < B; b++)
            g->be->axpy(g->be, dx + b * (Tn - P) * D, !fresh, 1.0f, dy + (b * Tn + P) * D, (Tn - P) * D);
    }
}

dt_tensor *dt_prompt_concat(dt_graph *g, dt_tensor *prompt, dt_tensor *x) {
    if (!prompt || !x) return NULL;
    int64_t P = prompt->shape[0], B = x->shape[0], T = x->shape[1], D = x->shape[2];
    dt_tensor *y = dt_graph_tensor(g, 3, (int64_t[]){B, P + T, D}); // (B, P + T, D)
    if (!y) return NULL;
    for (int64_t b = 0; b < B; b++) {
        g->be->axpy(g->be, dt_f32(y) + b * (P + T) * D, false, 1.0f, dt_f32(prompt), P * D);
        g->be->axpy(g->be, dt_f32(y) + (b * (P + T) + P) * D, false, 1.0f, dt_f32(x) + b * T * D, T * D);
    }
    if (needs_grad(g, prompt, x)) {
        dt_node *n = dt_graph_record(g, prompt_concat_bwd, y, sizeof(concat_saved));
        if (!n) return NULL;
        *(concat_saved *)n->saved = (concat_saved){prompt, x};
    }
    return y;
}

typedef struct { dt_tensor *a, *b; } pair_saved;

static void add_bwd(dt_graph *g, dt_node *n) {
    pair_saved *s = n->saved;
    int64_t N = dt_numel(n->out);
    bool fresh;
    if (s->a->requires_grad) { float *d = dt_graph_grad(g, s->a, &fresh); g->be->axpy(g->be, d, !fresh, 1.0f, n->out->grad, N); }
    if (s->b->requires_grad) { float *d = dt_graph_grad(g, s->b, &fresh); g->be->axpy(g->be, d, !fresh, 1.0f, n->out->grad, N); }
}

dt_tensor *dt_add(dt_graph *g, dt_tensor *a, dt_tensor *b) {
    if (!a || !b) return NULL;
    dt_tensor *y = dt_graph_tensor(g, a->ndim, a->shape);
    if (!y) return NULL;
    g->be->add(g->be, dt_f32(y), dt_f32(a), dt_f32(b), dt_numel(a));
    if (needs_grad(g, a, b)) {
        dt_node *n = dt_graph_record(g, add_bwd, y, sizeof(pair_saved));
        if (!n) return NULL;
        *(pair_saved *)n->saved = (pair_saved){a, b};
    }
    return y;
}

static void mul_bwd(dt_graph *g, dt_node *n) {
    pair_saved *s = n->saved;
    int64_t N = dt_numel(n->out);
    bool fresh;
    if (s->a->requires_grad) { float *d = dt_graph_grad(g, s->a, &fresh); g->be->mul(g->be, d, !fresh, n->out->grad, dt_f32(s->b), N); }
    if (s->b->requires_grad) { float *d = dt_graph_grad(g, s->b, &fresh); g->be->mul(g->be, d, !fresh, n->out->grad, dt_f32(s->a), N); }
}

dt_tensor *dt_mul(dt_graph *g, dt_tensor *a, dt_tensor *b) {
    if (!a || !b) return NULL;
    dt_tensor *y = dt_graph_tensor(g, a->ndim, a->shape);
    if (!y) return NULL;
    g->be->mul(g->be, dt_f32(y), false, dt_f32(a), dt_f32(b), dt_numel(a));
    if (needs_grad(g, a, b)) {
        dt_node *n = dt_graph_record(g, mul_bwd, y, sizeof(pair_saved));
        if (!n) return NULL;
        *(pair_saved *)n->saved = (pair_saved){a, b};
    }
    return y;
}

typedef struct { dt_tensor *x; float p; uint64_t seed; } dropout_saved;

// Seeds differ per call within a step and per step (the trainer sets g->dropout_seed), and are
// reproducible from the seed alone, which the backward uses to regenerate the mask.
uint64_t dt_graph_next_dropout_seed(dt_graph *g) {
    return g->dropout_seed * 0x100000001b3ull + (++g->dropout_calls) * 0x9e3779b97f4a7c15ull;
}

static void dropout_bwd(dt_graph *g, dt_node *n) {
    dropout_saved *s = n->saved;
    bool fresh;
    float *dx = dt_graph_grad(g, s->x, &fresh);
    g->be->dropout(g->be, dx, !fresh, n->out->grad, dt_numel(s->x), s->p, s->seed);
}

dt_tensor *dt_dropout(dt_graph *g, dt_tensor *x, float p) {
    if (!x) return NULL;
    if (!g->training || p <= 0.0f) return x;
    dt_tensor *y = dt_graph_tensor(g, x->ndim, x->shape);
    if (!y) return NULL;
    uint64_t seed = dt_graph_next_dropout_seed(g);
    g->be->dropout(g->be, dt_f32(y), false, dt_f32(x), dt_numel(x), p, seed);
    if (needs_grad(g, x, NULL)) {
        dt_node *n = dt_graph_record(g, dropout_bwd, y, sizeof(dropout_saved));
        if (!n) return NULL;
        *(dropout_saved *)n->saved = (dropout_saved){x, p, seed};
    }
    return y;
}

typedef struct { dt_tensor *x; int64_t c0; } slice_saved;

static void slice_cols_bwd(dt_graph *g, dt_node *n) {
    slice_saved *s = n->saved;
    const int64_t N = s->x->shape[0], C = s->x->shape[1], w = n->out->shape[1];
    bool fresh;
    float *dx = dt_graph_grad(g, s->x, &fresh); // (N, C): only columns c0..c0+w-1 get anything
    if (!dx) return;
    if (fresh) g->be->zero(g->be, dx, (size_t)(N * C) * sizeof(float));
    for (int64_t r = 0; r < N; r++) g->be->axpy(g->be, dx + r * C + s->c0, true, 1.0f, n->out->grad + r * w, w);
}

dt_tensor *dt_slice_cols(dt_graph *g, dt_tensor *x, int64_t c0, int64_t w) {
    if (!x || g->failed) return NULL;
    if (x->ndim != 2 || c0 < 0 || w <= 0 || c0 + w > x->shape[1]) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "dt_slice_cols: columns %lld..%lld of a tensor that is not 2-D or too narrow",
                (long long)c0, (long long)(c0 + w - 1));
        return NULL;
    }
    const int64_t N = x->shape[0], C = x->shape[1];
    dt_tensor *y = dt_graph_tensor(g, 2, (int64_t[]){N, w}); // (N, w)
    if (!y) return NULL;
    for (int64_t r = 0; r < N; r++) g->be->axpy(g->be, dt_f32(y) + r * w, false, 1.0f, dt_f32(x) + r * C + c0, w);
    if (needs_grad(g, x, NULL)) {
        dt_node *n = dt_graph_record(g, slice_cols_bwd, y, sizeof(slice_saved));
        if (!n) return NULL;
        *(slice_saved *)n->saved = (slice_saved){x, c0};
    }
    return y;
}
