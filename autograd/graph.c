#include "autograd/graph.h"
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

int dt_graph_init(dt_ctx *ctx, dt_graph *g, const dt_backend *be, size_t arena_bytes) {
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->be = be;
    g->grad_enabled = true;
    if (dt_arena_init(&g->arena, arena_bytes, be))
        return dt_fail(ctx, DT_ENOMEM, "cannot allocate a %zu-byte activation arena", arena_bytes);
    if (dt_arena_init(&g->host, (size_t)1 << 20, NULL)) {
        dt_arena_free(&g->arena);
        return dt_fail(ctx, DT_ENOMEM, "cannot allocate the tape's host arena");
    }
    return DT_OK;
}

void dt_graph_free(dt_graph *g) {
    if (!g->be) return;
    dt_arena_free(&g->arena);
    dt_arena_free(&g->host);
    for (int i = 0; i < g->n_blocks; i++) g->be->free(g->be, g->blocks[i].p);
    if (g->attn_scratch) g->be->free(g->be, g->attn_scratch);
    free(g->blocks);
    free(g->nodes);
    memset(g, 0, sizeof *g);
}

static void pool_trim(dt_graph *g);

void dt_graph_reset(dt_graph *g) {
    dt_arena_reset(&g->arena);
    dt_arena_reset(&g->host);
    g->n_nodes = 0;
    pool_trim(g);
    g->failed = false;
    g->dropout_calls = 0;
    g->compact = false;
    g->n_live = 0;
}

static float *pool_take(dt_graph *g, size_t bytes);
static void pool_give(dt_graph *g, float *p);

static void *fail_oom(dt_graph *g, size_t bytes) {
    g->failed = true;
    dt_fail(g->ctx, DT_ENOMEM, "out of memory allocating %zu bytes for the training step", bytes);
    return NULL;
}

void *dt_graph_scratch(dt_graph *g, size_t bytes) {
    if (g->failed) return NULL;
    void *p = dt_arena_alloc(&g->arena, bytes ? bytes : 1);
    return p ? p : fail_oom(g, bytes);
}

dt_tensor *dt_graph_tensor(dt_graph *g, int ndim, const int64_t *shape) {
    if (g->failed) return NULL;
    dt_tensor *t = dt_arena_alloc(&g->host, sizeof *t);
    if (!t) return fail_oom(g, sizeof *t);
    dt_tensor_set(t, DT_F32, NULL, ndim, shape);
    t->device = g->be->device;
    if (g->compact && g->n_live < DT_LIVE_MAX) { // a pool block, given back at the scope's end
        if (!(t->data = pool_take(g, dt_nbytes(t)))) return NULL;
        g->live[g->n_live++] = t;
        return t;
    }
    t->data = dt_graph_scratch(g, dt_nbytes(t));
    return t->data ? t : NULL;
}

bool dt_graph_compact_begin(dt_graph *g) {
    if (!g->be->to_bf16 || !g->be->from_bf16) return false;
    g->compact = true;
    return true;
}

void dt_graph_compact_end(dt_graph *g, dt_tensor *keep) {
    int kept = 0;
    for (int i = 0; i < g->n_live; i++) {
        dt_tensor *t = g->live[i];
        if (t == keep) { g->live[kept++] = t; continue; }
        pool_give(g, t->data);
        t->data = NULL; // only its bf16 copy, if an op kept one, is read from here on
    }
    g->n_live = kept;
    g->compact = false;
}

void dt_graph_keep16(dt_graph *g, dt_tensor *t) {
    if (!g->compact || t->saved16 || g->failed) return;
    int64_t n = dt_numel(t);
    t->saved16 = dt_graph_scratch(g, (size_t)n * sizeof(uint16_t)); // (numel) bf16, kept for the step
    if (t->saved16) g->be->to_bf16(g->be, t->saved16, dt_f32(t), n);
}

const float *dt_graph_saved(dt_graph *g, const dt_tensor *t) {
    if (!t->saved16) return dt_f32(t);
    int64_t n = dt_numel(t);
    float *p = dt_graph_temp(g, (size_t)n * sizeof(float)); // (numel), given back by dt_graph_saved_done
    if (p) g->be->from_bf16(g->be, p, t->saved16, n);
    return p;
}

void dt_graph_saved_done(dt_graph *g, const dt_tensor *t, const float *p) {
    if (t->saved16 && p) pool_give(g, (float *)p);
}

dt_node *dt_graph_record(dt_graph *g, dt_backward_fn fn, dt_tensor *out, size_t saved_bytes) {
    if (g->failed) return NULL;
    if (g->n_nodes == g->cap_nodes) {
        // Grows only while the first step sizes the tape; later steps record the same number of nodes.
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 256;
        dt_node *n = realloc(g->nodes, (size_t)cap * sizeof *n);
        if (!n) return fail_oom(g, (size_t)cap * sizeof *n);
        g->nodes = n;
        g->cap_nodes = cap;
    }
    dt_node *n = &g->nodes[g->n_nodes++];
    n->backward = fn;
    n->out = out;
    n->out_in_place = false;
    n->more[0] = n->more[1] = n->more[2] = NULL;
    n->saved = NULL;
    if (saved_bytes) {
        n->saved = dt_arena_alloc(&g->host, saved_bytes);
        if (!n->saved) return fail_oom(g, saved_bytes);
        memset(n->saved, 0, saved_bytes);
    }
    out->requires_grad = true;
    return n;
}

// The gradient pool. Requests are rounded up to a size class (four per power of two, so at most 25%
// is wasted) and served by the smallest free block that is large enough, so a step with shorter
// sequences reuses the blocks of a longer one instead of adding blocks of new exact sizes. A block
// that no step used for DT_POOL_IDLE_STEPS resets is freed (pool_trim), so when lengths vary the pool
// holds only what recent steps needed and its lookup scans a bounded number of blocks.
enum { DT_POOL_IDLE_STEPS = 2 };

static size_t pool_class(size_t bytes) {
    if (bytes <= 256) return 256;
    int top = 63 - __builtin_clzll((unsigned long long)(bytes - 1)); // bytes - 1 < 2^(top+1)
    size_t step = (size_t)1 << (top - 2);                            // a quarter of 2^top
    return (bytes + step - 1) / step * step; // no overflow: bytes < 2^63 fits a class below 2^64
}

static float *pool_take(dt_graph *g, size_t bytes) {
    if (bytes > SIZE_MAX / 2) return fail_oom(g, bytes);
    size_t want = pool_class(bytes);
    int best = -1;
    for (int i = 0; i < g->n_blocks; i++)
        if (!g->blocks[i].used && g->blocks[i].bytes >= want && (best < 0 || g->blocks[i].bytes < g->blocks[best].bytes))
            best = i;
    if (best >= 0) {
        g->blocks[best].used = true;
        g->blocks[best].idle = 0;
        return g->blocks[best].p;
    }
    if (g->n_blocks == g->cap_blocks) {
        int cap = g->cap_blocks ? 2 * g->cap_blocks : 32;
        dt_grad_block *b = realloc(g->blocks, (size_t)cap * sizeof *b);
        if (!b) return fail_oom(g, (size_t)cap * sizeof *b);
        g->blocks = b;
        g->cap_blocks = cap;
    }
    float *p = g->be->alloc(g->be, want);
    if (!p) return fail_oom(g, want);
    g->blocks[g->n_blocks++] = (dt_grad_block){p, want, true, 0};
    g->pool_bytes += want;
    return p;
}

static void pool_give(dt_graph *g, float *p) {
    for (int i = 0; i < g->n_blocks; i++)
        if (g->blocks[i].p == p) { g->blocks[i].used = false; return; }
}

// At a step boundary: every block becomes free, and blocks idle for DT_POOL_IDLE_STEPS steps go back.
static void pool_trim(dt_graph *g) {
    int kept = 0;
    for (int i = 0; i < g->n_blocks; i++) {
        dt_grad_block b = g->blocks[i];
        if (!b.used && b.idle + 1 >= DT_POOL_IDLE_STEPS) {
            g->be->free(g->be, b.p);
            g->pool_bytes -= b.bytes;
            continue;
        }
        b.idle = b.used ? 0 : b.idle + 1;
        b.used = false;
        g->blocks[kept++] = b;
    }
    g->n_blocks = kept;
}

float *dt_graph_temp(dt_graph *g, size_t bytes) { return g->failed ? NULL : pool_take(g, bytes); }
void dt_graph_temp_release(dt_graph *g, float *p) { if (p) pool_give(g, p); }

float *dt_graph_grad(dt_graph *g, dt_tensor *t, bool *fresh) {
    if (t->grad) { *fresh = false; return t->grad; }
    *fresh = true;
    t->grad = pool_take(g, (size_t)dt_numel(t) * sizeof(float));
    return t->grad;
}

int dt_graph_backward(dt_graph *g, dt_tensor *loss, float seed) {
    if (g->failed) return DT_ENOMEM;
    float *one = dt_graph_scratch(g, sizeof(float));
    if (!one) return DT_ENOMEM;
    g->be->upload(g->be, one, &seed, sizeof seed);
    return dt_graph_backward_from(g, loss, one);
}

int dt_graph_run_backward(dt_graph *g, int from, int to);

int dt_graph_backward_from(dt_graph *g, dt_tensor *t, const float *dy) {
    if (g->failed) return DT_ENOMEM;
    if (!t->requires_grad) return dt_fail(g->ctx, DT_EINTERNAL, "the loss does not depend on any trainable tensor");
    bool fresh;
    float *gt = dt_graph_grad(g, t, &fresh);
    if (!gt) return DT_ENOMEM;
    g->be->axpy(g->be, gt, !fresh, 1.0f, dy, dt_numel(t));
    return dt_graph_run_backward(g, 0, g->n_nodes);
}

int dt_graph_run_backward(dt_graph *g, int from, int to) {
    for (int i = to - 1; i >= from; i--) {
        // A copy: a node's backward may record nodes (activation checkpointing), which can move the tape.
        dt_node n = g->nodes[i];
        bool reached = n.out->grad != NULL;
        for (int j = 0; j < 3; j++) reached |= n.more[j] && n.more[j]->grad;
        if (!reached) continue; // nothing downstream reached the loss
        n.backward(g, &n);
        if (g->failed) return DT_ENOMEM;
        if (!n.out_in_place) { pool_give(g, n.out->grad); n.out->grad = NULL; }
        for (int j = 0; j < 3; j++)
            if (n.more[j] && n.more[j]->grad) { pool_give(g, n.more[j]->grad); n.more[j]->grad = NULL; }
    }
    return DT_OK;
}

// Activation checkpointing: the forward of fn runs without recording, everything it allocated is
// released, and only its input and output stay. The backward runs fn again with recording on (same
// dropout masks: the dropout call counter is rewound), back-propagates through those nodes, and
// releases them again.
typedef struct { dt_checkpoint_fn fn; const void *arg; dt_tensor *x; uint64_t dropout_calls; bool compact; } ckpt_saved;

static void checkpoint_bwd(dt_graph *g, dt_node *n) {
    ckpt_saved *s = n->saved;
    dt_arena_mark dm = dt_arena_get_mark(&g->arena), hm = dt_arena_get_mark(&g->host);
    int n0 = g->n_nodes;
    uint64_t calls = g->dropout_calls;
    g->dropout_calls = s->dropout_calls;
    // The recompute's compact scope is nested: the outer scope's live tensors are set aside meanwhile.
    dt_tensor *outer[DT_LIVE_MAX];
    int n_outer = g->n_live;
    memcpy(outer, g->live, sizeof outer);
    g->n_live = 0;
    if (s->compact) dt_graph_compact_begin(g);
    dt_tensor *y = s->fn(g, s->arg, s->x);
    if (s->compact) dt_graph_compact_end(g, y);
    g->dropout_calls = calls;
    if (y) {
        bool fresh;
        float *gy = dt_graph_grad(g, y, &fresh);
        if (gy) g->be->axpy(g->be, gy, !fresh, 1.0f, n->out->grad, dt_numel(y));
        if (gy && !dt_graph_run_backward(g, n0, g->n_nodes) && y->grad) { pool_give(g, y->grad); y->grad = NULL; }
    }
    dt_graph_compact_end(g, NULL); // y's data, when it was a pool block
    memcpy(g->live, outer, sizeof outer);
    g->n_live = n_outer;
    if (!y || g->failed) return;
    g->n_nodes = n0;
    dt_arena_release(&g->arena, dm);
    dt_arena_release(&g->host, hm);
}

dt_tensor *dt_no_grad_block(dt_graph *g, dt_checkpoint_fn fn, const void *arg, dt_tensor *x) {
    if (!x || g->failed) return NULL;
    dt_arena_mark dm = dt_arena_get_mark(&g->arena), hm = dt_arena_get_mark(&g->host);
    bool grad = g->grad_enabled;
    g->grad_enabled = false;
    dt_tensor *y = fn(g, arg, x);
    g->grad_enabled = grad;
    if (!y) return NULL;
    size_t bytes = dt_nbytes(y);
    int ndim = y->ndim;
    int64_t shape[DT_MAX_DIMS];
    memcpy(shape, y->shape, sizeof shape);
    float *keep = dt_graph_temp(g, bytes); // the output survives the release through a pool block
    if (!keep) return NULL;
    g->be->axpy(g->be, keep, false, 1.0f, dt_f32(y), (int64_t)(bytes / sizeof(float)));
    dt_arena_release(&g->arena, dm);
    dt_arena_release(&g->host, hm);
    dt_tensor *out = dt_graph_tensor(g, ndim, shape);
    if (out) g->be->axpy(g->be, dt_f32(out), false, 1.0f, keep, (int64_t)(bytes / sizeof(float)));
    dt_graph_temp_release(g, keep);
    return out;
}

dt_tensor *dt_checkpoint(dt_graph *g, dt_checkpoint_fn fn, const void *arg, dt_tensor *x, bool compact) {
    if (!x || g->failed) return NULL;
    if (!g->grad_enabled) return dt_no_grad_block(g, fn, arg, x);
    uint64_t calls = g->dropout_calls;
    dt_tensor *out = dt_no_grad_block(g, fn, arg, x);
    if (!out) return NULL;
    dt_node *n = dt_graph_record(g, checkpoint_bwd, out, sizeof(ckpt_saved));
    if (!n) return NULL;
    *(ckpt_saved *)n->saved = (ckpt_saved){fn, arg, x, calls, compact};
    return out;
}
