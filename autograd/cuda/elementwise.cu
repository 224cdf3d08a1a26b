// Element-wise CUDA kernels: embedding rows, SwiGLU, add/mul/axpy/bias/scale, dropout. Each is a
// grid-stride loop over int64 indices, computing exactly the expression of its CPU twin in
// autograd/cpu_elementwise.c (the GPU may fuse a*b+c into one rounding; the tests allow for it).
#include "autograd/cuda/cuda_internal.h"

#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// Launches kernel over n elements on the backend's stream; nothing for n == 0.
#define LAUNCH_EW(kernel, n, ...)                                                                  \
    do {                                                                                           \
        if ((n) <= 0) return;                                                                      \
        kernel<<<dt_cuda_blocks((n), EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(__VA_ARGS__); \
        LAUNCH_OK(#kernel);                                                                        \
    } while (0)

__global__ void embedding_k(float *out, const int32_t *ids, int64_t n, const float *table, int64_t D) {
    // out (n, D), ids (n), table (V, D)
    GRID_STRIDE(e, n * D) {
        int64_t i = e / D, j = e - i * D;
        out[e] = table[(int64_t)ids[i] * D + j];
    }
}
void dt_cuda_embedding_fwd(const dt_backend *be, float *out, const int32_t *ids, int64_t n, const dt_tensor *table) {
    (void)be;
    if (table->dtype != DT_F32) { // rows of other storage types are widened by frozen.cu's kernels
        dt_cuda_embedding_widen(out, ids, n, table);
        return;
    }
    int64_t D = table->shape[1];
    LAUNCH_EW(embedding_k, n * D, out, ids, n, (const float *)table->data, D);
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

__global__ void swiglu_fwd_k(float *h, const float *g, const float *u, int64_t n) {
    // h, g, u (n)
    GRID_STRIDE(i, n) h[i] = silu(g[i]) * u[i];
}
void dt_cuda_swiglu_fwd(const dt_backend *be, float *h, const float *g, const float *u, int64_t n) { LAUNCH_EW(swiglu_fwd_k, n, h, g, u, n); }

__global__ void swiglu_bwd_k(float *dg, float *du, bool acc_g, bool acc_u, const float *dh, const float *g,
                             const float *u, int64_t n) {
    // dg, du (n) or NULL; dh, g, u (n)
    GRID_STRIDE(i, n) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        float s = g[i] * sig;
        // d silu(g)/dg = sig * (1 + g * (1 - sig))
        if (dg) { float v = dh[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig)); dg[i] = acc_g ? dg[i] + v : v; }
        if (du) { float v = dh[i] * s; du[i] = acc_u ? du[i] + v : v; }
    }
}
void dt_cuda_swiglu_bwd(const dt_backend *be, float *dg, float *du, bool acc_g, bool acc_u, const float *dh, const float *g, const float *u,
                        int64_t n) {
    if (!dg && !du) return;
    LAUNCH_EW(swiglu_bwd_k, n, dg, du, acc_g, acc_u, dh, g, u, n);
}

__global__ void add_k(float *y, const float *a, const float *b, int64_t n) {
    // y, a, b (n)
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
void dt_cuda_add(const dt_backend *be, float *y, const float *a, const float *b, int64_t n) { LAUNCH_EW(add_k, n, y, a, b, n); }

__global__ void mul_k(float *y, bool acc, const float *a, const float *b, int64_t n) {
    // y, a, b (n)
    GRID_STRIDE(i, n) y[i] = (acc ? y[i] : 0.0f) + a[i] * b[i];
}
void dt_cuda_mul(const dt_backend *be, float *y, bool acc, const float *a, const float *b, int64_t n) {
    LAUNCH_EW(mul_k, n, y, acc, a, b, n);
}

__global__ void add_bias_k(float *y, const float *bias, int64_t N, int64_t D) {
    // y (N, D), bias (D)
    GRID_STRIDE(e, N * D) y[e] += bias[e % D];
}
void dt_cuda_add_bias(const dt_backend *be, float *y, const float *bias, int64_t N, int64_t D) {
    LAUNCH_EW(add_bias_k, N * D, y, bias, N, D);
}

__global__ void axpy_k(float *y, bool acc, float alpha, const float *x, int64_t n) {
    // y, x (n)
    GRID_STRIDE(i, n) y[i] = acc ? y[i] + alpha * x[i] : alpha * x[i];
}
void dt_cuda_axpy(const dt_backend *be, float *y, bool acc, float alpha, const float *x, int64_t n) {
    LAUNCH_EW(axpy_k, n, y, acc, alpha, x, n);
}

__global__ void scale_k(float *x, float s, int64_t n) {
    // x (n)
    GRID_STRIDE(i, n) x[i] *= s;
}
void dt_cuda_scale(const dt_backend *be, float *x, float s, int64_t n) { LAUNCH_EW(scale_k, n, x, s, n); }

// dt_uniform of autograd/cpu_kernels.h, bit for bit, so a mask drawn on the GPU equals the CPU's.
__device__ __forceinline__ float uniform01(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

__global__ void dropout_k(float *y, bool acc, const float *x, int64_t n, float p, float keep_scale, uint64_t seed) {
    // y, x (n)
    GRID_STRIDE(i, n) {
        float v = uniform01(seed, (uint64_t)i) >= p ? x[i] * keep_scale : 0.0f;
        y[i] = acc ? y[i] + v : v;
    }
}
void dt_cuda_dropout(const dt_backend *be, float *y, bool acc, const float *x, int64_t n, float p, uint64_t seed) {
    const float keep_scale = 1.0f / (1.0f - p); // the CPU's expression, evaluated once on the host like there
    LAUNCH_EW(dropout_k, n, y, acc, x, n, p, keep_scale, seed);
}
