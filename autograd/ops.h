// Differentiable ops over the tape. Each returns its output tensor (in the step arena) or NULL when
// the graph has failed (g->failed, message in g->ctx). An op records a backward node only when grad is
// enabled and one of its inputs requires a gradient (or, for linear, it carries a trainable adapter).
// Frozen weights never get gradients: linear computes dX when X needs it, never dW.
// Integer arrays (ids, positions, seg_start) are device arrays from dt_graph_ints; dt_lm_head_xent takes host targets.
#ifndef DT_OPS_H
#define DT_OPS_H
#include "autograd/graph.h"

// A trainable term a PEFT method adds to a frozen linear, y = x W^T + b + f(x) (peft/method.h). autograd
// calls the method's functions and knows no method by name; the method's file says what f is and how
// it fuses (LoRA: peft/lora_ops.c).
typedef struct dt_linear_hook dt_linear_hook;
typedef struct dt_linear_hook_ops {
    size_t state_bytes;       // what fwd keeps for bwd (host memory from the step's arena, zeroed)
    // y (N, out) += f(x (N, in)); state for bwd. Returns 0, or -1 when the graph failed.
    int (*fwd)(dt_graph *g, const dt_linear_hook *h, const float *x, int64_t N, float *y, void *state);
    // From dy (N, out): accumulates the method's parameter gradients, and adds its part of dx (N, in) when
    // dx is not NULL (dx already holds the frozen part).
    void (*bwd)(dt_graph *g, const dt_linear_hook *h, const void *state, const float *x, int64_t N, const float *dy,
                float *dx);
    // Optional (NULL: one by one): the n hooks (all of these ops) of projections reading the same x
    // (dt_norm_linears), y[i] (N, out_i) += f_i(x). Returns 1 when it took them as one group, 0 to leave them
    // one by one (fwd, bwd), -1 when the graph failed.
    size_t group_state_bytes;
    int (*group_fwd)(dt_graph *g, int n, const dt_linear_hook *const *h, const float *x, int64_t N, float *const *y,
                     void *state);
    // Its backward: dy[i] NULL where a projection did not reach the loss; dx (N, in) or NULL gets the group's
    // part, written when *dx_fresh (which it then clears), else added.
    void (*group_bwd)(dt_graph *g, int n, const dt_linear_hook *const *h, const void *state, const float *x, int64_t N,
                      const float *const *dy, float *dx, bool *dx_fresh);
} dt_linear_hook_ops;

struct dt_linear_hook {
    const dt_linear_hook_ops *ops;
    const void *self;            // the method's data for this linear
    const dt_linear_hook *next;  // further hooks on the same linear: applied forward only (generation)
};

// The backend's frozen-linear entry (backend.h) with its scratch taken from the step arena: every op
// that meets a frozen weight of any storage type goes through these. Return 0, or -1 when the graph
// failed. y (N, out) = x (N, in) W^T (+ y when acc); dx (N, in) = dy (N, out) W (+ dx when acc).
int dt_frozen_fwd(dt_graph *g, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W);
int dt_frozen_bwd(dt_graph *g, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W);

// Copies n host int32 values into the step arena.
int32_t *dt_graph_ints(dt_graph *g, const int32_t *host, int64_t n);

dt_tensor *dt_embedding(dt_graph *g, const int32_t *ids, int64_t B, int64_t T, const dt_tensor *table /*(V,D)*/);
// (n, D) prompt rows in front of every batch row of x (B, T, D) -> (B, n + T, D)
dt_tensor *dt_prompt_concat(dt_graph *g, dt_tensor *prompt, dt_tensor *x);
dt_tensor *dt_add(dt_graph *g, dt_tensor *a, dt_tensor *b);
dt_tensor *dt_mul(dt_graph *g, dt_tensor *a, dt_tensor *b);
// y (..., D) = (x (..., D) - c) * v (D) + c on every row; c (D) a constant centre or NULL (0). v may
// require a gradient (a learned per-feature scale).
dt_tensor *dt_scale_cols(dt_graph *g, dt_tensor *x, dt_tensor *v, const dt_tensor *c);
dt_tensor *dt_dropout(dt_graph *g, dt_tensor *x, float p);
// RMSNorm over the last dim of size w's numel (so (B,T,H*hd) with w (hd) normalises each head).
dt_tensor *dt_rmsnorm(dt_graph *g, dt_tensor *x, const dt_tensor *w, float eps);
// The cos/sin table (N, hd) of positions pos (N) for dt_rope_, in the arena; inv_freq (hd/2) device floats.
// NULL when the graph failed.
float *dt_rope_table(dt_graph *g, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd);
// x (B, T, H*hd) rotated in place by the angles of cs (B*T, hd) from dt_rope_table.
dt_tensor *dt_rope_(dt_graph *g, dt_tensor *x, int64_t H, int64_t hd, const float *cs);
// y (..., out) = x (..., in) W^T + bias + the hook's term (hook may be NULL)
dt_tensor *dt_linear(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias, const dt_linear_hook *hook);
// residual (..., out) + dt_linear(x, ...), without storing the bare projection
dt_tensor *dt_linear_add(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias,
                         const dt_linear_hook *hook, dt_tensor *residual);
// out[i] = rmsnorm(x, norm_w) W[i]^T + bias[i] + hook[i]'s term for i < n (n <= 4): the projections that
// share one normalised input (q/k/v, gate/up). The normalised input is recomputed in the backward
// instead of being kept. bias/hook arrays may hold NULLs. Returns 0, or -1 when the graph failed.
int dt_norm_linears(dt_graph *g, dt_tensor *x, const dt_tensor *norm_w, float eps, int n, const dt_tensor *const *W,
                    const dt_tensor *const *bias, const dt_linear_hook *const *hook, dt_tensor **out);
// [residual +] (silu(gate) * up) W^T + the hook's term; the product is recomputed in the backward, not stored.
// gate/up (..., I), W (out, I); residual may be NULL.
dt_tensor *dt_swiglu_linear(dt_graph *g, dt_tensor *gate, dt_tensor *up, const dt_tensor *W, const dt_linear_hook *hook,
                            dt_tensor *residual);
// q (B,T,H*hd), k/v (B,T,KV*hd) -> (B,T,H*hd); causal, within examples when seg_start (B*T) is given
dt_tensor *dt_attention(dt_graph *g, dt_tensor *q, dt_tensor *k, dt_tensor *v, int64_t H, int64_t KV, int64_t hd,
                        const int32_t *seg_start);
// The same attention with n extra key/value rows pk, pv (n, KV*hd) in front of every example, used as given
// (no RoPE): each query sees all n of them, then its own example's keys causally. seg_host: seg_start
// (B*T) on the host, or NULL for one example per row. pk/pv may require gradients (a method's trainable
// prefix, as prefix tuning's); theirs is summed over every example.
dt_tensor *dt_attention_ext(dt_graph *g, dt_tensor *q, dt_tensor *k, dt_tensor *v, dt_tensor *pk, dt_tensor *pv,
                            int64_t H, int64_t KV, int64_t hd, const int32_t *seg_host);
dt_tensor *dt_swiglu(dt_graph *g, dt_tensor *gate, dt_tensor *up);
// y (N, w) = columns c0..c0+w-1 of x (N, C); the gradient goes back into those columns.
dt_tensor *dt_slice_cols(dt_graph *g, dt_tensor *x, int64_t c0, int64_t w);
// y (..., out) = x (..., in) W^T + b with W (out, in) and b (out) (b may be NULL) that may be trainable:
// a small dense layer a method owns (not a frozen model weight: those go through dt_linear).
dt_tensor *dt_dense(dt_graph *g, dt_tensor *x, dt_tensor *W, dt_tensor *b);
// max(x, 0), CPU backend.
dt_tensor *dt_relu(dt_graph *g, dt_tensor *x);
// Generation (grad off, one row; any backend): k/v (1, n, KV*hd) are written into the cache kc/vc (cap, KV*hd) at
// positions p0.., then q (1, n, H*hd) attends causally over cache positions 0..p0+n-1 -> (1, n, H*hd).
dt_tensor *dt_attention_cached(dt_graph *g, dt_tensor *q, dt_tensor *k, dt_tensor *v, int64_t H, int64_t KV, int64_t hd,
                               float *kc, float *vc, int64_t p0);
// Generation: rows x (n, KV*hd) written into the cache c (cap, KV*hd) at positions p0..p0+n-1 (entries a
// method places before the sequence). Returns 0, or -1 when the graph failed.
int dt_kv_write(dt_graph *g, float *c, int64_t p0, const dt_tensor *x);
// Mean cross-entropy of the vocabulary projection x (N, D) W^T (W (V, D)) against host_targets (N, -100 =
// ignored; a host array: the op projects only the trained rows and needs to know which), divided by denom (the number of trained tokens of the whole accumulated batch). Logits are
// formed chunk by chunk of rows and the gradient wrt x is formed in the same pass, so the (N, V) matrix
// never exists. Returns a scalar tensor; *loss_sum gets the un-normalised sum of the chunk losses.
// hook (or NULL): a method's term on the logits (x W^T + f(x)); its parameter gradients are accumulated
// chunk by chunk during this call, for a loss that is the root of the backward (seed 1).
dt_tensor *dt_lm_head_xent(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_linear_hook *hook,
                           const int32_t *host_targets, float denom, double *loss_sum);

#endif
