// Reductions that return a number to the host: cross-entropy over rows of logits, sum of squares.
// Each block writes a partial sum (in double) and one more block adds the partials in a fixed order,
// so results do not depend on scheduling; only the final double is copied back.
#include <math.h>
#include "autograd/cuda/cuda_internal.h"

__global__ void sum_doubles_k(double *out, const double *part, int64_t n) {
    // out (1) = sum of part (n); launched as one block
    __shared__ double red[32];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
    s = dt_block_sum_d(s, red);
    if (threadIdx.x == 0) *out = s;
}

// Sums part (n) into buf[0] and copies it to the host; NAN when anything failed (the error is recorded).
static double finish_sum(double *buf, const double *part, int64_t n, cudaStream_t s) {
    sum_doubles_k<<<1, 1024, 0, s>>>(buf, part, n);
    double total = NAN;
    if (!LAUNCH_OK("sum_doubles_k") || !CU_OK(cudaMemcpyAsync(&total, buf, sizeof total, cudaMemcpyDeviceToHost, s)) ||
        !CU_OK(cudaStreamSynchronize(s)))
        return NAN;
    return total;
}

// One block per row: max, sum of exponentials, then the row is overwritten by scale * (softmax - onehot).
__global__ void xent_rows_k(float *logits, const int32_t *targets, int64_t V, float scale, double *row_loss) {
    // logits (n, V) with row = blockIdx.x, in place; targets (n); row_loss (n)
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    float *x = logits + row * V; // (V)
    const int32_t t = targets[row];
    if (t < 0) { // an ignored row (the same for the whole block): zero gradient, no loss
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) x[j] = 0.0f;
        if (threadIdx.x == 0) row_loss[row] = 0.0;
        return;
    }
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, x[j]);
    m = dt_block_max(m, red);
    const float et = expf(x[t] - m); // read before the last loop overwrites x[t] (block_sum's barriers separate them)
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) sum += expf(x[j] - m);
    sum = dt_block_sum(sum, red);
    const float inv = scale / sum;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
        float p = expf(x[j] - m) * inv;
        x[j] = j == t ? p - scale : p;
    }
    // loss = logsumexp - x[t] = -log(p_t) with p_t = e_t / sum, as the CPU computes it
    if (threadIdx.x == 0) row_loss[row] = -log((double)et / sum);
}

double dt_cuda_xent_rows(const dt_backend *be, float *logits, const int32_t *targets, int64_t n, int64_t V, float scale) {
    if (n <= 0) return 0.0;
    cudaStream_t s = dt_cuda_stream();
    double *buf = NULL; // (1 + n): the total, then one loss per row
    if (!CU_OK(cudaMallocAsync((void **)&buf, (size_t)(n + 1) * sizeof(double), s))) return NAN;
    int64_t warps = (V + 255) / 256; // about 8 logits per thread, 1 to 32 warps
    int threads = 32 * (int)(warps < 1 ? 1 : warps > 32 ? 32 : warps);
    xent_rows_k<<<(unsigned)n, threads, 0, s>>>(logits, targets, V, scale, buf + 1);
    double total = LAUNCH_OK("xent_rows_k") ? finish_sum(buf, buf + 1, n, s) : NAN;
    CU_OK(cudaFreeAsync(buf, s));
    return total;
}

__global__ void sumsq_k(double *part, const float *x, int64_t n) {
    // part (gridDim.x): this block's sum of x[i]^2 over its grid-stride share of x (n)
    __shared__ double red[32];
    double s = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    s = dt_block_sum_d(s, red);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

double dt_cuda_sumsq(const dt_backend *be, const float *x, int64_t n) {
    if (n <= 0) return 0.0;
    cudaStream_t s = dt_cuda_stream();
    int64_t nb = (n + 8 * EW_THREADS - 1) / (8 * EW_THREADS); // about 8 elements per thread, at most 1024 blocks
    if (nb > 1024) nb = 1024;
    double *buf = NULL; // (1 + nb): the total, then one partial per block
    if (!CU_OK(cudaMallocAsync((void **)&buf, (size_t)(nb + 1) * sizeof(double), s))) return NAN;
    sumsq_k<<<(unsigned)nb, EW_THREADS, 0, s>>>(buf + 1, x, n);
    double total = LAUNCH_OK("sumsq_k") ? finish_sum(buf, buf + 1, nb, s) : NAN;
    CU_OK(cudaFreeAsync(buf, s));
    return total;
}
