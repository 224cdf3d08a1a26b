// The CPU frozen-linear entry (backend.h): f32 weights go straight to OpenBLAS; any other storage type
// takes the generic reference path here — widen a panel of W's rows to f32 through the type's traits
// row, then one sgemm per panel (for at most four rows of x, as in generation, one row of W at a time
// widened and dotted in cache) — until a faster kernel for that type is registered in
// dt_cpu_frozen_fwd/bwd's dispatch. The generic path stays as the reference those kernels are tested
// against, and never widens the whole matrix: scratch holds one panel.
#include <omp.h>
#include "autograd/cpu_kernels.h"
#include "autograd/dtype.h"

// Rows per panel: about 16 MiB of f32 (at least 16 rows, at most the whole matrix). Each panel's sgemm
// packs the whole activation operand again, so thin panels cost more in packing than in arithmetic:
// measured on a 2048 x 8192 Q4_K weight with 256 rows of x (2 threads), 1 MiB panels ran 9x slower than
// the f32 sgemm, 16 MiB panels 1.1-1.3x.
int64_t dt_cpu_frozen_panel_rows(const dt_tensor *W) {
    int64_t out = W->shape[0], in = W->shape[1];
    int64_t p = ((int64_t)1 << 22) / (in > 0 ? in : 1);
    if (p < 16) p = 16;
    return p < out ? p : out;
}

size_t dt_cpu_frozen_scratch_bytes(const dt_tensor *W, int64_t N) {
    (void)N;
    if (W->dtype == DT_F32) return 0;
    return (size_t)dt_cpu_frozen_panel_rows(W) * (size_t)W->shape[1] * sizeof(float);
}

// panel (p, in) = rows r0 .. r0+p-1 of W widened to f32 by `row`
static void widen_panel(dt_row_f32_fn row, const dt_tensor *W, int64_t r0, int64_t p, float *panel) {
    int64_t in = W->shape[1];
    #pragma omp parallel for if (p * in > 65536)
    for (int64_t r = 0; r < p; r++) row(W, r0 + r, panel + r * in);
}

// At most DT_FROZEN_FEW_ROWS rows of x: each row of W widened into the thread's own `in` floats of
// scratch (which holds a panel of rows), still in cache, and dotted there. False (nothing done) for
// more rows, or more threads than a panel has rows.
static bool fwd_few_rows(dt_row_f32_fn row, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W,
                         float *scratch) {
    const int64_t out = W->shape[0], in = W->shape[1];
    if (N > DT_FROZEN_FEW_ROWS || omp_get_max_threads() > dt_cpu_frozen_panel_rows(W)) return false;
    #pragma omp parallel
    {
        float *w = scratch + (size_t)omp_get_thread_num() * (size_t)in; // (in): row r of W as f32
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < out; r++) {
            row(W, r, w);
            for (int64_t n = 0; n < N; n++) {
                const float *xn = x + n * in;
                float s = 0;
                #pragma omp simd reduction(+ : s)
                for (int64_t k = 0; k < in; k++) s += xn[k] * w[k];
                y[n * out + r] = acc ? y[n * out + r] + s : s;
            }
        }
    }
    return true;
}

void dt_cpu_frozen_fwd_widened(dt_row_f32_fn row, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W,
                               float *scratch) {
    if (fwd_few_rows(row, y, acc, x, N, W, scratch)) return;
    int64_t out = W->shape[0], in = W->shape[1], P = dt_cpu_frozen_panel_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += P) {
        int64_t p = out - r0 < P ? out - r0 : P;
        widen_panel(row, W, r0, p, scratch);
        // y[:, r0:r0+p] (N, p) = x (N, in) panel^T
        dt_cpu_gemm(false, true, N, p, in, 1.0f, x, in, scratch, in, acc ? 1.0f : 0.0f, y + r0, out);
    }
}

void dt_cpu_frozen_bwd_widened(dt_row_f32_fn row, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W,
                               float *scratch) {
    int64_t out = W->shape[0], in = W->shape[1], P = dt_cpu_frozen_panel_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += P) {
        int64_t p = out - r0 < P ? out - r0 : P;
        widen_panel(row, W, r0, p, scratch);
        // dx (N, in) (+)= dy[:, r0:r0+p] (N, p) panel (p, in)
        dt_cpu_gemm(false, false, N, in, p, 1.0f, dy + r0, out, scratch, in, acc || r0 > 0 ? 1.0f : 0.0f, dx, in);
    }
}

void dt_cpu_frozen_fwd_generic(float *y, bool acc, const float *x, int64_t N, const dt_tensor *W, float *scratch) {
    dt_cpu_frozen_fwd_widened(dt_tensor_row_f32, y, acc, x, N, W, scratch);
}

void dt_cpu_frozen_bwd_generic(float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W, float *scratch) {
    dt_cpu_frozen_bwd_widened(dt_tensor_row_f32, dx, acc, dy, N, W, scratch);
}

void dt_cpu_frozen_fwd(float *y, bool acc, const float *x, int64_t N, const dt_tensor *W, void *scratch) {
    int64_t out = W->shape[0], in = W->shape[1];
    if (W->dtype == DT_F32) {
        dt_cpu_gemm(false, true, N, out, in, 1.0f, x, in, dt_f32(W), in, acc ? 1.0f : 0.0f, y, out);
        return;
    }
    if (dt_cpu_quant_fwd(y, acc, x, N, W, scratch)) return;
    dt_cpu_frozen_fwd_generic(y, acc, x, N, W, scratch);
}

void dt_cpu_frozen_bwd(float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W, void *scratch) {
    int64_t out = W->shape[0], in = W->shape[1];
    if (W->dtype == DT_F32) {
        dt_cpu_gemm(false, false, N, in, out, 1.0f, dy, out, dt_f32(W), in, acc ? 1.0f : 0.0f, dx, in);
        return;
    }
    if (dt_cpu_quant_bwd(dx, acc, dy, N, W, scratch)) return;
    dt_cpu_frozen_bwd_generic(dx, acc, dy, N, W, scratch);
}

void dt_cpu_embedding_rows(float *out, const int32_t *ids, int64_t n, const dt_tensor *table) {
    int64_t D = table->shape[1];
    if (table->dtype == DT_F32) {
        dt_cpu_embedding_fwd(out, ids, n, dt_f32(table), D);
        return;
    }
    #pragma omp parallel for if (n * D > 65536)
    for (int64_t i = 0; i < n; i++) dt_tensor_row_f32(table, ids[i], out + i * D);
}
