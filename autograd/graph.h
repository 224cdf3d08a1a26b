// The tape. Each op appends a node holding its backward function and what that backward needs;
// dt_graph_backward walks the nodes in reverse. Nodes are only recorded when some input requires a
// gradient, so nothing is computed or kept for paths that never reach a trainable tensor.
//
// Memory: op outputs and saved values come from the step arena (reset each step). Gradients of
// activations come from a pool of blocks recycled by size class: a node's output gradient is returned to
// the pool as soon as that node's backward has run, so the backward holds only the live gradients; blocks
// no recent step used are freed, so the pool stays bounded when sequence lengths vary.
#ifndef DT_GRAPH_H
#define DT_GRAPH_H
#include <stdbool.h>
#include "autograd/arena.h"
#include "autograd/backend.h"
#include "autograd/context.h"
#include "autograd/tensor.h"

typedef struct dt_graph dt_graph;
enum { DT_LIVE_MAX = 32 };
typedef struct dt_node dt_node;
typedef void (*dt_backward_fn)(dt_graph *g, dt_node *n);

struct dt_node {
    dt_backward_fn backward;
    dt_tensor *out;      // the output whose gradient drives this backward
    dt_tensor *more[3];  // further outputs of a multi-output op (NULL when unused)
    bool out_in_place;   // out aliases an input: its gradient buffer is handed on, not freed
    void *saved;         // op-specific record, in the arena
};

// A pool block: `used` during this step; `idle` counts the step resets since it was last used.
typedef struct dt_grad_block { float *p; size_t bytes; bool used; int idle; } dt_grad_block;

struct dt_graph {
    dt_ctx *ctx;
    const dt_backend *be;
    dt_arena arena;           // device memory: activations and saved values; reset each step
    dt_arena host;            // host memory: tensor headers and node records; reset each step
    dt_node *nodes;           // the tape; grows only while sizing (first step)
    int n_nodes, cap_nodes;
    dt_grad_block *blocks;    // gradient pool (device memory, kept across steps)
    int n_blocks, cap_blocks;
    size_t pool_bytes;        // sum of the pool's block sizes (bounded; see pool_take in graph.c)
    bool grad_enabled;        // false: ops record nothing (evaluation, generation)
    bool training;            // dropout active
    bool checkpoint_layers;   // models wrap each layer in dt_checkpoint (activation checkpointing)
    uint64_t dropout_seed;    // advanced per dropout call; set by the trainer per step
    uint64_t dropout_calls;
    bool failed;              // an op failed; ctx->msg says why; later ops return NULL
    void *attn_scratch;       // backend scratch for attention, sized by the first use
    size_t attn_scratch_bytes;
    bool compact;             // inside a compact scope (dt_graph_compact_begin)
    dt_tensor *live[DT_LIVE_MAX]; // the tensors whose f32 data are pool blocks, released at the scope's end
    int n_live;
};

int dt_graph_init(dt_ctx *ctx, dt_graph *g, const dt_backend *be, size_t arena_bytes);
void dt_graph_free(dt_graph *g);
// Starts a step: rewinds the arena and the tape, returns all gradient blocks to the pool and frees the
// blocks that the last DT_POOL_IDLE_STEPS steps did not use.
void dt_graph_reset(dt_graph *g);

// A new activation tensor (f32, in the arena) or NULL with g->failed set.
dt_tensor *dt_graph_tensor(dt_graph *g, int ndim, const int64_t *shape);
// Scratch device memory from the arena for this step.
void *dt_graph_scratch(dt_graph *g, size_t bytes);
// Appends a node; saved_bytes of host memory (for the op's record) are returned in node->saved.
dt_node *dt_graph_record(dt_graph *g, dt_backward_fn fn, dt_tensor *out, size_t saved_bytes);

// The gradient buffer of t for accumulation. *fresh tells the caller the buffer is new and
// uninitialised, so it must be written (beta = 0), not added into.
float *dt_graph_grad(dt_graph *g, dt_tensor *t, bool *fresh);

// A fresh dropout seed for this call (reproducible from g->dropout_seed and the call order).
uint64_t dt_graph_next_dropout_seed(dt_graph *g);

// A temporary device buffer from the gradient pool, for values an op needs only while it runs
// (recomputed instead of kept); give it back with dt_graph_temp_release.
float *dt_graph_temp(dt_graph *g, size_t bytes);
void dt_graph_temp_release(dt_graph *g, float *p);

// Activation checkpointing of one block: y = fn(g, arg, x) is computed without keeping its
// intermediate activations and recomputed during the backward. arg must stay valid until then.
typedef dt_tensor *(*dt_checkpoint_fn)(dt_graph *g, const void *arg, dt_tensor *x);
// compact: the recompute is a compact scope (see dt_graph_compact_begin), as the block would have been
// without checkpointing, so both give the same gradients.
dt_tensor *dt_checkpoint(dt_graph *g, dt_checkpoint_fn fn, const void *arg, dt_tensor *x, bool compact);
// y = fn(g, arg, x) with gradients off, and all the memory fn took released except y's (copied out and
// back): a forward without gradients then holds one block's intermediates at a time, not every block's.
dt_tensor *dt_no_grad_block(dt_graph *g, dt_checkpoint_fn fn, const void *arg, dt_tensor *x);

// Compact activations, on a backend with to_bf16/from_bf16 (the CPU's bf16 table). Inside a scope
// (one decoder layer), new activation tensors take their f32 data from the pool, and each op that
// reads a value in its backward keeps a bf16 copy of it (dt_graph_keep16) and reads it back through
// dt_graph_saved. dt_graph_compact_end gives the f32 data of the scope's tensors back to the pool,
// except keep's (the scope's output, which the next scope reads and gives back at its end), and sets
// their data to NULL: only the bf16 copies outlive the scope. The forward's values are unchanged; the
// backward reads values rounded to bf16 (8 significant bits) wherever it reads a saved value.
// begin returns false (and changes nothing) when the backend has no bf16 conversions.
bool dt_graph_compact_begin(dt_graph *g);
void dt_graph_compact_end(dt_graph *g, dt_tensor *keep);
// In a compact scope: keeps t's values as bf16 for the backward (once per tensor). Elsewhere nothing.
void dt_graph_keep16(dt_graph *g, dt_tensor *t);
// In a backward: t's values as f32, from its kept bf16 copy (widened into a pool block) when it has
// one, else its own data. Give the pointer back with dt_graph_saved_done.
const float *dt_graph_saved(dt_graph *g, const dt_tensor *t);
void dt_graph_saved_done(dt_graph *g, const dt_tensor *t, const float *p);

// Runs the backward from a scalar loss (its gradient is set to `seed`, normally 1).
int dt_graph_backward(dt_graph *g, dt_tensor *loss, float seed);
// Runs the backward from any tensor t whose gradient is dy (device memory, t's numel floats).
int dt_graph_backward_from(dt_graph *g, dt_tensor *t, const float *dy);

#endif
