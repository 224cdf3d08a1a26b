// RMSNorm (one block per row, warp + shared-memory reductions) and rotary embedding on the GPU; the
// expressions are those of autograd/cpu_norm.c.
#include "autograd/cuda/cuda_internal.h"

// Threads for a row of D floats: one warp per 128 elements, 1 to 8 warps (a per-head norm has rows of
// 64 or 128, a hidden-state norm rows of thousands).
static int row_threads(int64_t D) {
    int64_t warps = (D + 127) / 128;
    return 32 * (int)(warps < 1 ? 1 : warps > 8 ? 8 : warps);
}

__global__ void rmsnorm_fwd_k(float *y, float *rstd, const float *x, const float *w, int64_t D, float eps) {
    // y, x (N, D) with row = blockIdx.x; rstd (N); w (D)
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const float *xr = x + row * D; // (D)
    float *yr = y + row * D;       // (D)
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) ss += xr[j] * xr[j];
    ss = dt_block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)D + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) yr[j] = w[j] * (xr[j] * r);
}

void dt_cuda_rmsnorm_fwd(const dt_backend *be, float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps) {
    if (N <= 0) return;
    rmsnorm_fwd_k<<<(unsigned)N, row_threads(D), 0, dt_cuda_stream()>>>(y, rstd, x, w, D, eps);
    LAUNCH_OK("rmsnorm_fwd_k");
}

__global__ void rmsnorm_apply_k(float *y, const float *x, const float *rstd, const float *w, int64_t N, int64_t D) {
    // y, x (N, D); rstd (N); w (D)
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < N * D; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / D, j = e - i * D;
        y[e] = w[j] * (x[e] * rstd[i]); // the forward's expression: two products, so the same bits
    }
}

void dt_cuda_rmsnorm_apply(const dt_backend *be, float *y, const float *x, const float *rstd, const float *w, int64_t N, int64_t D) {
    if (N * D <= 0) return;
    rmsnorm_apply_k<<<dt_cuda_blocks(N * D, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(y, x, rstd, w, N, D);
    LAUNCH_OK("rmsnorm_apply_k");
}

// y_j = w_j x_j r with r = (mean(x^2) + eps)^(-1/2):
// dx_j = r w_j dy_j - (r^3 / D) x_j sum_i(dy_i w_i x_i)
__global__ void rmsnorm_bwd_k(float *dx, bool acc, const float *dy, const float *x, const float *w, const float *rstd,
                              int64_t D) {
    // dx, dy, x (N, D) with row = blockIdx.x; w (D); rstd (N)
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const float *xr = x + row * D, *dyr = dy + row * D; // (D)
    float *dxr = dx + row * D;                          // (D)
    const float r = rstd[row];
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) dot += dyr[j] * w[j] * xr[j];
    dot = dt_block_sum(dot, red);
    const float c = r * r * r * dot / (float)D;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        float v = r * w[j] * dyr[j] - c * xr[j];
        dxr[j] = acc ? dxr[j] + v : v;
    }
}

void dt_cuda_rmsnorm_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, const float *x, const float *w, const float *rstd,
                         int64_t N, int64_t D) {
    if (N <= 0) return;
    rmsnorm_bwd_k<<<(unsigned)N, row_threads(D), 0, dt_cuda_stream()>>>(dx, acc, dy, x, w, rstd, D);
    LAUNCH_OK("rmsnorm_bwd_k");
}

// cs (N, hd): cos then sin of pos * inv_freq per position, the angle in double as the CPU does
// (pos * inv_freq loses digits in float at long positions). One thread per (position, frequency).
__global__ void rope_table_k(float *cs, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd) {
    const int64_t half = hd / 2;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < N * half; e += stride) {
        int64_t n = e / half, i = e - n * half;
        double s, c;
        sincos((double)pos[n] * (double)inv_freq[i], &s, &c);
        cs[n * hd + i] = (float)c;
        cs[n * hd + half + i] = (float)s;
    }
}

void dt_cuda_rope_table(const dt_backend *be, float *cs, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd) {
    if (N * (hd / 2) <= 0) return;
    rope_table_k<<<dt_cuda_blocks(N * (hd / 2), EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(cs, pos, inv_freq, N, hd);
    LAUNCH_OK("rope_table_k");
}

// Hugging Face rotate-half layout: element i pairs with element i + hd/2 of the same head. One thread
// per (position, frequency) reads its angle's cos/sin once and rotates that pair in every head.
__global__ void rope_k(float *x, const float *cs, int64_t N, int64_t H, int64_t hd, bool inverse) {
    // x (N, H, hd) in place; cs (N, hd)
    const int64_t half = hd / 2;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < N * half; e += stride) {
        int64_t n = e / half, i = e - n * half;
        const float c = cs[n * hd + i], sn = inverse ? -cs[n * hd + half + i] : cs[n * hd + half + i];
        for (int64_t h = 0; h < H; h++) {
            float *v = x + (n * H + h) * hd; // (hd)
            float a = v[i], b = v[i + half];
            v[i] = a * c - b * sn;
            v[i + half] = b * c + a * sn;
        }
    }
}

void dt_cuda_rope(const dt_backend *be, float *x, const float *cs, int64_t N, int64_t H, int64_t hd, bool inverse) {
    if (N * (hd / 2) <= 0) return;
    rope_k<<<dt_cuda_blocks(N * (hd / 2), EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(x, cs, N, H, hd, inverse);
    LAUNCH_OK("rope_k");
}
