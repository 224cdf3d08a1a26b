// See cpu_bf16_backend.h. The frozen linear converts its f32 input (x forward, dy backward) to bf16
// in the scratch the op layer hands it, then runs one oneDNN matmul straight on the weight's bf16
// memory (transposed through strides, never copied): forward y = x W^T, backward dx = dy W. Should
// oneDNN refuse a shape, the call falls back to the CPU table's reference path for bf16 (panel
// dequantisation + sgemm), which is also what the tests compare these kernels with.
#include "autograd/cpu_bf16_backend.h"
#include <stdlib.h>
#include "autograd/cpu_bf16.h"

typedef struct {
    dt_backend table;   // first: the instance is the table
    dt_bf16_mm *mm;
} bf16_backend;

static const dt_backend *plain(void) { return dt_backend_cpu(); }

static size_t bf16_frozen_scratch_bytes(const dt_backend *be, const dt_tensor *W, int64_t N) {
    (void)be;
    size_t own = W->dtype == DT_BF16 ? (size_t)N * (size_t)(W->shape[0] > W->shape[1] ? W->shape[0] : W->shape[1]) * 2 : 0;
    size_t ref = plain()->frozen_scratch_bytes(plain(), W, N); // the fallback's
    return own > ref ? own : ref;
}

static void bf16_frozen_fwd(const dt_backend *be, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W,
                            void *scratch) {
    const bf16_backend *b = be->impl;
    if (W->dtype == DT_BF16) {
        int64_t out = W->shape[0], in = W->shape[1];
        uint16_t *xb = scratch; // (N, in)
        dt_cpu_f32_to_bf16(xb, x, N * in);
        if (dt_bf16_matmul(b->mm, false, true, N, out, in, 1.0f, xb, in, W->data, in, acc, y, out) == DT_OK) return;
    }
    plain()->frozen_fwd(plain(), y, acc, x, N, W, scratch);
}

static void bf16_frozen_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W,
                            void *scratch) {
    const bf16_backend *b = be->impl;
    if (W->dtype == DT_BF16) {
        int64_t out = W->shape[0], in = W->shape[1];
        uint16_t *dyb = scratch; // (N, out)
        dt_cpu_f32_to_bf16(dyb, dy, N * out);
        if (dt_bf16_matmul(b->mm, false, false, N, in, out, 1.0f, dyb, out, W->data, in, acc, dx, in) == DT_OK) return;
    }
    plain()->frozen_bwd(plain(), dx, acc, dy, N, W, scratch);
}

static size_t bf16_attention_scratch_bytes(const dt_backend *be, int64_t B, int64_t T, int64_t H, int64_t KV,
                                           int64_t hd) {
    (void)be;
    return dt_cpu_attention_bf16_scratch_bytes(B, T, H, KV, hd);
}

static void bf16_attention_fwd(const dt_backend *be, float *out, float *lse, const float *q, const float *k,
                               const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                               int64_t hd, void *scratch) {
    const bf16_backend *b = be->impl;
    dt_cpu_attention_fwd_bf16(b->mm, out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch);
}

static void bf16_attention_bwd(const dt_backend *be, float *dq, float *dk, float *dv, bool acc_q, bool acc_k,
                               bool acc_v, const float *dout, const float *out, const float *lse, const float *q,
                               const float *k, const float *v, const int32_t *seg_start, int64_t B, int64_t T,
                               int64_t H, int64_t KV, int64_t hd, void *scratch) {
    const bf16_backend *b = be->impl;
    dt_cpu_attention_bwd_bf16(b->mm, dq, dk, dv, acc_q, acc_k, acc_v, dout, out, lse, q, k, v, seg_start, B, T, H, KV,
                              hd, scratch);
}

static void bf16_to_bf16(const dt_backend *be, uint16_t *dst, const float *src, int64_t n) {
    (void)be;
    dt_cpu_f32_to_bf16_stream(dst, src, n); // compact graphs' saved values: read again only in the backward
}

static void bf16_from_bf16(const dt_backend *be, float *dst, const uint16_t *src, int64_t n) {
    (void)be;
    dt_cpu_bf16_to_f32(dst, src, n);
}

int dt_cpu_bf16_backend_create(dt_ctx *ctx, dt_backend **out) {
    *out = NULL;
    bf16_backend *b = calloc(1, sizeof *b);
    if (!b) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    int rc = dt_bf16_mm_create(ctx, &b->mm);
    if (rc) { free(b); return rc; }
    b->table = *plain();
    b->table.name = "cpu-bf16";
    b->table.impl = b;
    b->table.frozen_scratch_bytes = bf16_frozen_scratch_bytes;
    b->table.frozen_fwd = bf16_frozen_fwd;
    b->table.frozen_bwd = bf16_frozen_bwd;
    b->table.attention_scratch_bytes = bf16_attention_scratch_bytes;
    b->table.attention_fwd = bf16_attention_fwd;
    b->table.attention_bwd = bf16_attention_bwd;
    // Activations the backward reads are kept in bf16 (compact graphs, graph.h): the same 8 bits the
    // bf16 matmuls round them to.
    b->table.to_bf16 = bf16_to_bf16;
    b->table.from_bf16 = bf16_from_bf16;
    *out = &b->table;
    return DT_OK;
}

void dt_cpu_bf16_backend_free(dt_backend *be) {
    if (!be) return;
    bf16_backend *b = be->impl;
    dt_bf16_mm_free(b->mm);
    free(b);
}

int dt_cpu_backend_for(dt_ctx *ctx, dt_dtype wtype, const dt_backend **out) {
    if (wtype != DT_BF16) { *out = plain(); return DT_OK; }
    dt_backend *be;
    int rc = dt_cpu_bf16_backend_create(ctx, &be);
    *out = rc ? NULL : be;
    return rc;
}

void dt_cpu_backend_release(const dt_backend *be) {
    if (be && be != plain()) dt_cpu_bf16_backend_free((dt_backend *)be);
}
