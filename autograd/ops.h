// Differentiable ops over the tape. Each returns its output tensor (in the step arena) or NULL when
// the graph has failed (g->failed, message in g->ctx). An op records a backward node only when grad is
// enabled and one of its inputs requires a gradient (or, for linear, it carries a trainable adapter).
// Frozen weights never get gradients: linear computes dX when X needs it, never dW.
// Integer arrays (ids, positions, targets, seg_start) are device arrays from dt_graph_ints.
#ifndef DT_OPS_H
#define DT_OPS_H
#include "autograd/graph.h"

// A LoRA adapter on one linear: y += scale * dropout(x) A^T B^T.
typedef struct dt_lora_ref {
    dt_tensor *A;   // (r, in), trainable
    dt_tensor *B;   // (out, r), trainable
    float scale;    // alpha / r, or alpha / sqrt(r) for rsLoRA
    float dropout;  // probability, applied to x on the adapter path only, while training
    const struct dt_lora_ref *next; // further adapters on the same module: used by generation only
} dt_lora_ref;

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
dt_tensor *dt_dropout(dt_graph *g, dt_tensor *x, float p);
// RMSNorm over the last dim of size w's numel (so (B,T,H*hd) with w (hd) normalises each head).
dt_tensor *dt_rmsnorm(dt_graph *g, dt_tensor *x, const dt_tensor *w, float eps);
// The cos/sin table (N, hd) of positions pos (N) for dt_rope_, in the arena; inv_freq (hd/2) device floats.
// NULL when the graph failed.
float *dt_rope_table(dt_graph *g, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd);
// x (B, T, H*hd) rotated in place by the angles of cs (B*T, hd) from dt_rope_table.
dt_tensor *dt_rope_(dt_graph *g, dt_tensor *x, int64_t H, int64_t hd, const float *cs);
// y (..., out) = x (..., in) W^T + bias + LoRA
dt_tensor *dt_linear(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias, const dt_lora_ref *lora);
// residual (..., out) + dt_linear(x, ...), without storing the bare projection
dt_tensor *dt_linear_add(dt_graph *g, dt_tensor *x, const dt_tensor *W, const dt_tensor *bias,
                         const dt_lora_ref *lora, dt_tensor *residual);
// out[i] = rmsnorm(x, norm_w) W[i]^T + bias[i] + LoRA[i] for i < n (n <= 4): the projections that
// share one normalised input (q/k/v, gate/up). The normalised input is recomputed in the backward
// instead of being kept. bias/lora arrays may hold NULLs. Returns 0, or -1 when the graph failed.
int dt_norm_linears(dt_graph *g, dt_tensor *x, const dt_tensor *norm_w, float eps, int n, const dt_tensor *const *W,
                    const dt_tensor *const *bias, const dt_lora_ref *const *lora, dt_tensor **out);
// [residual +] (silu(gate) * up) W^T + LoRA; the product is recomputed in the backward, not stored.
// gate/up (..., I), W (out, I); residual may be NULL.
dt_tensor *dt_swiglu_linear(dt_graph *g, dt_tensor *gate, dt_tensor *up, const dt_tensor *W, const dt_lora_ref *lora,
                            dt_tensor *residual);
// q (B,T,H*hd), k/v (B,T,KV*hd) -> (B,T,H*hd); causal, within examples when seg_start (B*T) is given
dt_tensor *dt_attention(dt_graph *g, dt_tensor *q, dt_tensor *k, dt_tensor *v, int64_t H, int64_t KV, int64_t hd,
                        const int32_t *seg_start);
dt_tensor *dt_swiglu(dt_graph *g, dt_tensor *gate, dt_tensor *up);
// Mean cross-entropy of the vocabulary projection x (N, D) W^T (W (V, D)) against targets (N, -100 =
// ignored), divided by denom (the number of trained tokens of the whole accumulated batch). Logits are
// formed chunk by chunk of rows and the gradient wrt x is formed in the same pass, so the (N, V) matrix
// never exists. Returns a scalar tensor; *loss_sum gets the un-normalised sum of the chunk losses.
dt_tensor *dt_lm_head_xent(dt_graph *g, dt_tensor *x, const dt_tensor *W, const int32_t *targets, float denom,
                           double *loss_sum);

#endif
