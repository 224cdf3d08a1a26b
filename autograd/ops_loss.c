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

// Rows whose target is ignored (-100: prompt tokens of chat or instruction data, padding, the last
// position of each example) add nothing to the loss or to any gradient, so they skip the vocabulary
// projection, which is 2 V D flops per row forward and as many backward (about 15% of a SmolLM2 step,
// more with Llama 3's or Qwen's vocabulary): the trained rows are copied into one block, a copy per run
// of consecutive trained rows, and their gradient is added back run by run in the backward. Each copy
// is a backend call (a kernel launch on a GPU), so scattered masks with many short runs are left
// uncompacted: compaction needs MIN_SKIPPED_PER_RUN skipped rows per run (a conservative choice, not
// a measured crossover; prompt masks give one or two runs per example). Measured on the SmolLM2 step
// with half of each row masked (f32, 2 threads): the LM head took 197-255 ms instead of 435-466 ms.
#define MIN_SKIPPED_PER_RUN 4

typedef struct { int64_t start, len; } row_run;

typedef struct {
    dt_tensor *x;
    float *dx;           // (rows, D): the gradient of the projected rows, already divided by denom
    const row_run *runs; // NULL: every row was projected; else the runs of x's rows they are
    int64_t nruns;
    bool hook;
} xent_saved;

// The runs of consecutive trained rows of targets (N), written into runs when not NULL (room for as many
// as a first call without them returned); returns how many, and the number of trained rows in *trained.
static int64_t trained_runs(const int32_t *targets, int64_t N, row_run *runs, int64_t *trained) {
    int64_t n = 0, t = 0;
    for (int64_t i = 0; i < N; i++) {
        if (targets[i] < 0) continue;
        if (i == 0 || targets[i - 1] < 0) {
            if (runs) runs[n] = (row_run){i, 0};
            n++;
        }
        if (runs) runs[n - 1].len++;
        t++;
    }
    *trained = t;
    return n;
}

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
    float *dx = dt_graph_grad(g, s->x, &fresh); // (N, D)
    if (!dx) return;
    if (!s->runs) {
        g->be->axpy(g->be, dx, !fresh, seed, s->dx, dt_numel(s->x));
        return;
    }
    const int64_t D = s->x->shape[s->x->ndim - 1];
    if (fresh) g->be->zero(g->be, dx, (size_t)dt_numel(s->x) * sizeof(float)); // skipped rows: no gradient
    const float *src = s->dx;
    for (int64_t i = 0; i < s->nruns; i++) {
        g->be->axpy(g->be, dx + s->runs[i].start * D, true, seed, src, s->runs[i].len * D);
        src += s->runs[i].len * D;
    }
}

dt_tensor *dt_lm_head_xent(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_linear_hook *hook,
                           const int32_t *host_targets, float denom, double *loss_sum) {
    if (!x || g->failed) return NULL;
    const dt_backend *be = g->be;
    const int64_t V = W->shape[0], D = W->shape[1], N_all = dt_numel(x) / D;
    int64_t N = N_all, nruns = trained_runs(host_targets, N_all, NULL, &N);
    const row_run *runs = NULL;
    const float *xs = dt_f32(x); // (N, D): the rows projected
    const int32_t *targets;      // (N), device
    if (N < N_all && N_all - N >= MIN_SKIPPED_PER_RUN * nruns) {
        row_run *r = dt_arena_alloc(&g->host, (size_t)(nruns ? nruns : 1) * sizeof *r);
        int32_t *tc = dt_arena_alloc(&g->host, (size_t)(N ? N : 1) * sizeof *tc); // (N) trained targets
        float *xc = dt_graph_scratch(g, (size_t)N * D * sizeof(float));             // (N, D) trained rows
        if (!r || !tc || !xc) return NULL;
        trained_runs(host_targets, N_all, r, &N);
        for (int64_t i = 0, o = 0; i < nruns; o += r[i].len, i++) {
            be->axpy(be, xc + o * D, false, 1.0f, dt_f32(x) + r[i].start * D, r[i].len * D);
            memcpy(tc + o, host_targets + r[i].start, (size_t)r[i].len * sizeof *tc);
        }
        runs = r;
        xs = xc;
        targets = dt_graph_ints(g, tc, N);
    } else {
        N = N_all;
        targets = dt_graph_ints(g, host_targets, N);
    }
    if (!targets) return NULL;
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
        const float *xr = xs + r0 * D; // (nr, D)
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
        *(xent_saved *)n->saved = (xent_saved){x, dx, runs, nruns, grad_hook};
    }
    return loss;
}
