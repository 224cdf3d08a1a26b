// The CUDA frozen-linear entry (autograd/backend.h): W (out, in) in device memory in its storage type.
// f32 weights go straight to the table's gemm; 16-bit weights under the table of their precision to
// cuBLASLt as they are (below). Any other case takes the panel path, the device twin of
// autograd/cpu_frozen.c's generic path: a kernel widens a panel of W's rows to f32 in scratch, then one
// gemm per panel, so the whole matrix is never widened. The widening kernel is the per-type hook:
// bf16 and f16 here, ggml's block types and bitsandbytes' NF4/FP4 in dequant.cu. A type without a
// kernel is recorded as unsupported (reported by dt_backend_cuda_check), never read wrongly.
#include <stdio.h>
#include "autograd/cuda/cuda_internal.h"
extern "C" {
#include "autograd/dtype.h"
}

// Rows per panel: about 16 MiB of f32 (at least 16 rows, at most the whole matrix). Bigger than the
// CPU's 1 MiB: a GPU gemm needs wide panels to fill the device, and device memory is not a cache.
static int64_t panel_rows(const dt_tensor *W) {
    const int64_t out = W->shape[0], in = W->shape[1];
    int64_t p = ((int64_t)1 << 22) / (in > 0 ? in : 1);
    if (p < 16) p = 16;
    return p < out ? p : out;
}

// A 16-bit W under the table of its own precision (hardware.dtype bf16 / f16) is a matmul operand as it
// is (cuBLASLt, dt_cuda_gemm16): the activation rows are rounded to that type in scratch (which the f32
// gemm with 16-bit inputs would do inside its kernel anyway), a chunk of about 8M values at a time.
static bool lt16(const dt_backend *be, const dt_tensor *W, cudaDataType_t *t) {
    *t = dt_cuda_gemm_type(be);
    return (W->dtype == DT_BF16 && *t == CUDA_R_16BF) || (W->dtype == DT_F16 && *t == CUDA_R_16F);
}
static int64_t chunk_rows(const dt_tensor *W, int64_t N) {
    const int64_t wide = W->shape[0] > W->shape[1] ? W->shape[0] : W->shape[1];
    int64_t c = ((int64_t)1 << 23) / (wide > 0 ? wide : 1);
    if (c < 1) c = 1;
    return c < N ? c : N;
}

__global__ void narrow_16_k(uint16_t *dst, const float *src, int64_t n, bool is_bf16) {
    // dst (n) bf16 or f16 <- src (n) f32, rounded to nearest even as the CPU's dt_f32_to_bf16 / _f16
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = is_bf16 ? dt_hf_f32_to_bf16(src[i]) : dt_hf_f32_to_f16(src[i]);
}

bool dt_cuda_narrow16(uint16_t *dst, const float *src, int64_t n, bool is_bf16) {
    narrow_16_k<<<dt_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(dst, src, n, is_bf16);
    return LAUNCH_OK("narrow_16_k");
}

// c (N, nc) (+)= a (N, ka) op(W), op(W) = W^T (tb, the forward: ka = in, nc = out) or W (the backward:
// ka = out, nc = in): a chunk of a's rows rounded to W's type in scratch (C, ka), then one cuBLASLt
// matmul per chunk into those rows of c.
static void lt16_rows(cudaDataType_t t, const dt_tensor *W, bool tb, const float *a, int64_t ka, float *c, int64_t nc,
                      int64_t N, bool acc, uint16_t *scratch) {
    const int64_t C = chunk_rows(W, N);
    for (int64_t r0 = 0; r0 < N; r0 += C) {
        const int64_t rows = N - r0 < C ? N - r0 : C;
        if (!dt_cuda_narrow16(scratch, a + r0 * ka, rows * ka, t == CUDA_R_16BF)) return;
        dt_cuda_gemm16(t, false, tb, rows, nc, ka, 1.0f, scratch, ka, W->data, W->shape[1], acc ? 1.0f : 0.0f,
                       c + r0 * nc, nc);
    }
}

__global__ void widen_16_k(float *panel, const uint16_t *w, int64_t n, bool is_bf16) {
    // panel (n) f32 <- w (n) bf16 or f16
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        panel[i] = is_bf16 ? dt_hf_bf16_to_f32(w[i]) : dt_hf_f16_to_f32(w[i]);
}

__global__ void embedding_16_k(float *out, const int32_t *ids, int64_t n, const uint16_t *table, int64_t D,
                               bool is_bf16) {
    // out (n, D) f32; ids (n); table (V, D) bf16 or f16
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n * D; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = e / D, j = e - i * D;
        const uint16_t h = table[(int64_t)ids[i] * D + j];
        out[e] = is_bf16 ? dt_hf_bf16_to_f32(h) : dt_hf_f16_to_f32(h);
    }
}

static void unsupported(const char *what, dt_dtype t) {
    char why[96];
    snprintf(why, sizeof why, "weights stored as %s cannot be read on the GPU yet", dt_dtype_name(t));
    dt_cuda_record(DT_EUNSUPPORTED, what, __FILE__, __LINE__, why);
}

void dt_cuda_embedding_widen(float *out, const int32_t *ids, int64_t n, const dt_tensor *table) {
    const int64_t D = table->shape[1];
    if (n * D <= 0) return;
    if (dt_cuda_quant_supported(table->dtype)) {
        if (!dt_cuda_dequant_rows(out, ids, n, table)) unsupported("embedding", table->dtype);
        return;
    }
    if (table->dtype != DT_BF16 && table->dtype != DT_F16) return unsupported("embedding", table->dtype);
    embedding_16_k<<<dt_cuda_blocks(n * D, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(
        out, ids, n, (const uint16_t *)table->data, D, table->dtype == DT_BF16);
    LAUNCH_OK("embedding_16_k");
}

// panel (p, in) = rows r0 .. r0+p-1 of W as f32; false (recorded) when W's type has no kernel here.
static bool widen(const dt_tensor *W, int64_t r0, int64_t p, float *panel) {
    const int64_t in = W->shape[1], n = p * in;
    switch (W->dtype) {
    case DT_BF16:
    case DT_F16:
        widen_16_k<<<dt_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(
            panel, (const uint16_t *)W->data + r0 * in, n, W->dtype == DT_BF16);
        return LAUNCH_OK("widen_16_k");
    case DT_NF4:
    case DT_FP4: // blocks over the flattened tensor: the panel is values r0 * in .. of it
        if (W->aux) return dt_cuda_dequant_nf4(panel, W, r0 * in, n);
        unsupported("frozen linear", W->dtype);
        return false;
    default:
        // a ggml block type: rows are whole blocks, so the panel's rows are consecutive blocks
        if (dt_cuda_quant_supported(W->dtype))
            return dt_cuda_dequant(panel, (const uint8_t *)W->data + (size_t)r0 * dt_type_row_bytes(W->dtype, in), n, W->dtype);
        unsupported("frozen linear", W->dtype);
        return false;
    }
}

size_t dt_cuda_frozen_scratch_bytes(const dt_backend *be, const dt_tensor *W, int64_t N) {
    cudaDataType_t t;
    if (W->dtype == DT_F32) return 0;
    if (lt16(be, W, &t)) { // a chunk of x (rows, in) or dy (rows, out) in 16 bits
        const int64_t wide = W->shape[0] > W->shape[1] ? W->shape[0] : W->shape[1];
        return (size_t)chunk_rows(W, N) * (size_t)wide * sizeof(uint16_t);
    }
    return (size_t)panel_rows(W) * (size_t)W->shape[1] * sizeof(float);
}

void dt_cuda_frozen_fwd(const dt_backend *be, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W,
                        void *scratch) {
    // y (N, out) (+)= x (N, in) W^T
    const int64_t out = W->shape[0], in = W->shape[1];
    if (W->dtype == DT_F32) {
        be->gemm(be, false, true, N, out, in, 1.0f, x, in, (const float *)W->data, in, acc ? 1.0f : 0.0f, y, out);
        return;
    }
    cudaDataType_t t;
    if (lt16(be, W, &t)) return lt16_rows(t, W, true, x, in, y, out, N, acc, (uint16_t *)scratch);
    float *panel = (float *)scratch; // (P, in)
    const int64_t P = panel_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += P) {
        const int64_t p = out - r0 < P ? out - r0 : P;
        if (!widen(W, r0, p, panel)) return;
        // y[:, r0:r0+p] (N, p) = x (N, in) panel^T
        be->gemm(be, false, true, N, p, in, 1.0f, x, in, panel, in, acc ? 1.0f : 0.0f, y + r0, out);
    }
}

void dt_cuda_frozen_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W,
                        void *scratch) {
    // dx (N, in) (+)= dy (N, out) W
    const int64_t out = W->shape[0], in = W->shape[1];
    if (W->dtype == DT_F32) {
        be->gemm(be, false, false, N, in, out, 1.0f, dy, out, (const float *)W->data, in, acc ? 1.0f : 0.0f, dx, in);
        return;
    }
    cudaDataType_t t;
    if (lt16(be, W, &t)) return lt16_rows(t, W, false, dy, out, dx, in, N, acc, (uint16_t *)scratch);
    float *panel = (float *)scratch; // (P, in)
    const int64_t P = panel_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += P) {
        const int64_t p = out - r0 < P ? out - r0 : P;
        if (!widen(W, r0, p, panel)) return;
        // dx (N, in) (+)= dy[:, r0:r0+p] (N, p) panel (p, in)
        be->gemm(be, false, false, N, in, p, 1.0f, dy + r0, out, panel, in, acc || r0 > 0 ? 1.0f : 0.0f, dx, in);
    }
}
