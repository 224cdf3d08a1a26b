// Cross-entropy fused with the vocabulary projection, in chunks of rows.
#include <string.h>
#include "autograd/ops.h"

// At most this many logits per chunk (52 MB). Every chunk reads and packs all of W twice (logits,
// then dx), so fewer, taller chunks are faster: on SmolLM2's vocabulary 512 rows go in 2 chunks of 256
// instead of 7 (6 of 85 and one of 2) with the earlier 16 MB, about 140 ms less per step on 2 cores,
// for 34 MB more at the step's memory peak (bench_lora_step stays under 1 GiB).
// A backend that runs compact graphs (graph.h; the CPU's bf16 table) keeps half the activations and
// its frozen backward converts the chunk's logit gradients to bf16 in a scratch of half the chunk's
// size, so its chunks get half as many logits: SmolLM2's 512 rows go in 4 chunks of 128, 36 MB less at
// the step's peak (the bench's 600 MiB goal) for about 1% of its time (4 passes over the bf16 W).
#define CHUNK_FLOATS ((int64_t)13 << 20)

typedef struct { dt_tensor *x; float *dx; bool hook; } xent_saved;

static void xent_bwd(dt_graph *g, dt_node *n) {
    xent_saved *s = n->saved;
    float seed;
    g->be->download(g->be, &seed, n->out->grad, sizeof seed); // d(total loss)/d(this loss)
    // A hook's parameter gradients were accumulated in the forward pass for d(total)/d(loss) = 1: they
    // cannot be rescaled now (the logits' gradient is gone).
    if (s->hook && seed != 1.0f) {
        g->failed = true;
        dt_fail(g->ctx, DT_EINTERNAL, "an LM-head adapter needs its loss to be the backward's root (seed 1, got %g)", seed);
        return;
    }
    if (!s->x->requires_grad) return;
    bool fresh;
    float *dx = dt_graph_grad(g, s->x, &fresh);
    if (dx) g->be->axpy(g->be, dx, !fresh, seed, s->dx, dt_numel(s->x));
}

dt_tensor *dt_lm_head_xent(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_linear_hook *hook,
                           const int32_t *targets, float denom, double *loss_sum) {
    if (!x || g->failed) return NULL;
    const dt_backend *be = g->be;
    int64_t V = W->shape[0], D = W->shape[1], N = dt_numel(x) / D;
    // Equal chunks: a short last chunk would cost a full pass over W for a few rows.
    const int64_t chunk = be->to_bf16 ? CHUNK_FLOATS / 2 : CHUNK_FLOATS;
    int64_t max_rows = chunk / V > 0 ? chunk / V : 1, nchunk = (N + max_rows - 1) / max_rows;
    int64_t rows = nchunk > 0 ? (N + nchunk - 1) / nchunk : 1;
    const bool grad_x = g->grad_enabled && x->requires_grad, grad_hook = g->grad_enabled && hook;
    const bool grad = grad_x || grad_hook;
    dt_tensor *loss = dt_graph_tensor(g, 1, (int64_t[]){1});
    float *logits = dt_graph_scratch(g, (size_t)rows * V * sizeof(float));    // (rows, V)
    float *dx = grad_x ? dt_graph_scratch(g, (size_t)N * D * sizeof(float)) : NULL; // (N, D)
    // The hook's state of one chunk (its backward runs right after its forward, on the same chunk).
    void *hstate = hook ? dt_arena_alloc(&g->host, hook->ops->state_bytes ? hook->ops->state_bytes : 1) : NULL;
    if (!loss || !logits || (grad_x && !dx) || (hook && !hstate)) return NULL;
    double total = 0;
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
        int64_t nr = r0 + rows <= N ? rows : N - r0;
        const float *xr = dt_f32(x) + r0 * D; // (nr, D)
        if (dt_frozen_fwd(g, logits, false, xr, nr, W)) return NULL;
        if (hook) {
            memset(hstate, 0, hook->ops->state_bytes);
            if (hook->ops->fwd(g, hook, xr, nr, logits, hstate)) return NULL;
        }
        // The gradient of the mean loss wrt the logits is (softmax - onehot) / denom; the chunk's
        // logits are overwritten by it and turned into dx (and the hook's parameter gradients) right away.
        total += be->xent_rows(be, logits, targets + r0, nr, V, 1.0f / denom);
        if (grad_x && dt_frozen_bwd(g, dx + r0 * D, false, logits, nr, W)) return NULL;
        if (grad_hook) hook->ops->bwd(g, hook, hstate, xr, nr, logits, grad_x ? dx + r0 * D : NULL);
        if (g->failed) return NULL;
    }
    float l = (float)(total / denom);
    be->upload(be, dt_f32(loss), &l, sizeof l);
    if (loss_sum) *loss_sum = total;
    if (grad) {
        dt_node *n = dt_graph_record(g, xent_bwd, loss, sizeof(xent_saved));
        if (!n) return NULL;
        *(xent_saved *)n->saved = (xent_saved){x, dx, grad_hook};
    }
    return loss;
}
