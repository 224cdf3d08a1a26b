// Shared by the CUDA backend's .cu files: the instance, the error-recording macros, launch helpers,
// warp/block reductions, and the host launchers behind each table entry (same contracts as backend.h).
#ifndef DT_CUDA_INTERNAL_H
#define DT_CUDA_INTERNAL_H
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <string.h>
#include "autograd/cuda/cuda_backend.h"
#include "autograd/half.h"

// The one instance (see cuda_backend.h for why there is only one).
typedef struct dt_cuda_state {
    int device;
    cudaStream_t stream;   // every kernel, copy and cuBLAS call goes on this stream
    cublasHandle_t blas;   // bound to stream
    cublasLtHandle_t lt;   // cuBLASLt, for the matmuls with 16-bit operands (dt_cuda_gemm16)
    void *lt_ws;           // its workspace (device memory), or NULL
    size_t lt_ws_bytes;    // DT_CUDA_LT_WS, or 0 when the device had no room for it
    cudaMemPool_t pool;    // the device's default pool, for the stream-ordered temporaries
    size_t smem_optin;     // largest dynamic shared memory a block may opt in to (bytes)
    char name[256];        // device name
    pthread_mutex_t lock;  // guards has_err / err
    bool has_err;
    int err_code;          // dt_status of the first error
    char err[1024];        // the first error since the last dt_backend_cuda_check
    bool oom;              // an allocation failed since the last dt_backend_cuda_oom (guarded by lock)
    size_t oom_asked, oom_free, oom_total; // its size, and the device's free / total memory then
    struct dt_cuda_sdpa *sdpa; // cuDNN attention: handle, plans, note (sdpa_cudnn.cu); NULL without memory
} dt_cuda_state;

// The instance; only valid after a successful dt_backend_cuda_init (the table is unreachable before).
dt_cuda_state *dt_cuda(void);
static inline cudaStream_t dt_cuda_stream(void) { return dt_cuda()->stream; }

// Records the first failure ("CUDA: what: reason (file:line)", code a dt_status); later ones are dropped
// until the next dt_backend_cuda_check, because they are usually consequences of the first.
void dt_cuda_record(int code, const char *what, const char *file, int line, const char *reason);

static inline bool dt_cuda_ok_(cudaError_t e, const char *what, const char *file, int line) {
    if (e == cudaSuccess) return true;
    dt_cuda_record(e == cudaErrorMemoryAllocation ? DT_ENOMEM : DT_EINTERNAL, what, file, line, cudaGetErrorString(e));
    return false;
}
static inline bool dt_cublas_ok_(cublasStatus_t s, const char *what, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return true;
    dt_cuda_record(s == CUBLAS_STATUS_ALLOC_FAILED ? DT_ENOMEM : DT_EINTERNAL, what, file, line,
                   cublasGetStatusString(s));
    return false;
}
// cuBLASLt's workspace: what NVIDIA recommends for Hopper (32 MiB; 4 MiB suffices before it).
#define DT_CUDA_LT_WS ((size_t)32 << 20)

// Each evaluates to true on success; on failure the error is recorded (see dt_backend_cuda_check).
#define CU_OK(call) dt_cuda_ok_((call), #call, __FILE__, __LINE__)
#define CUBLAS_OK(call) dt_cublas_ok_((call), #call, __FILE__, __LINE__)
// After a <<<...>>> launch: catches bad launch configurations (faults inside kernels surface later,
// at the next synchronising call, and are recorded there).
#define LAUNCH_OK(kernel_name) dt_cuda_ok_(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)

// Element-wise kernels use grid-stride loops over int64 indices with this many threads per block and
// at most MAX_BLOCKS blocks (enough to fill any current GPU several times over).
#define EW_THREADS 256
#define MAX_BLOCKS 8192
static inline unsigned dt_cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > MAX_BLOCKS ? MAX_BLOCKS : b);
}

// ---- reductions (blockDim.x must be a multiple of 32, at most 1024) ----

__device__ __forceinline__ float dt_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double dt_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float dt_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum/max; every thread gets the result. red: 32 shared slots owned by the caller. The
// leading barrier keeps a previous call's readers of red from seeing this call's writes.
__device__ __forceinline__ float dt_block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = dt_warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return dt_warp_sum(lane < nwarps ? red[lane] : 0.0f);
}
__device__ __forceinline__ double dt_block_sum_d(double v, double *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = dt_warp_sum_d(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return dt_warp_sum_d(lane < nwarps ? red[lane] : 0.0);
}
__device__ __forceinline__ float dt_block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = dt_warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return dt_warp_max(lane < nwarps ? red[lane] : -INFINITY);
}

// ---- host launchers behind the table (contracts in autograd/backend.h) ----

// elementwise.cu
void dt_cuda_embedding_fwd(const dt_backend *be, float *out, const int32_t *ids, int64_t n, const dt_tensor *table);
void dt_cuda_swiglu_fwd(const dt_backend *be, float *h, const float *g, const float *u, int64_t n);
void dt_cuda_swiglu_bwd(const dt_backend *be, float *dg, float *du, bool acc_g, bool acc_u, const float *dh, const float *g, const float *u,
                        int64_t n);
void dt_cuda_add(const dt_backend *be, float *y, const float *a, const float *b, int64_t n);
void dt_cuda_mul(const dt_backend *be, float *y, bool acc, const float *a, const float *b, int64_t n);
void dt_cuda_add_bias(const dt_backend *be, float *y, const float *bias, int64_t N, int64_t D);
void dt_cuda_axpy(const dt_backend *be, float *y, bool acc, float alpha, const float *x, int64_t n);
void dt_cuda_dropout(const dt_backend *be, float *y, bool acc, const float *x, int64_t n, float p, uint64_t seed);
void dt_cuda_scale(const dt_backend *be, float *x, float s, int64_t n);
// norm.cu
void dt_cuda_rmsnorm_fwd(const dt_backend *be, float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps);
void dt_cuda_rmsnorm_apply(const dt_backend *be, float *y, const float *x, const float *rstd, const float *w, int64_t N, int64_t D);
void dt_cuda_rmsnorm_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, const float *x, const float *w, const float *rstd,
                         int64_t N, int64_t D);
void dt_cuda_rope_table(const dt_backend *be, float *cs, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd);
void dt_cuda_rope(const dt_backend *be, float *x, const float *cs, int64_t N, int64_t H, int64_t hd, bool inverse);
// reduce.cu
double dt_cuda_xent_rows(const dt_backend *be, float *logits, const int32_t *targets, int64_t n, int64_t V, float scale);
double dt_cuda_sumsq(const dt_backend *be, const float *x, int64_t n);
// frozen.cu
size_t dt_cuda_frozen_scratch_bytes(const dt_backend *be, const dt_tensor *W, int64_t N);
void dt_cuda_frozen_fwd(const dt_backend *be, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W,
                        void *scratch);
void dt_cuda_frozen_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W,
                        void *scratch);
// out (n, D) = rows ids[i] of a table (V, D) stored in a type other than f32, widened to f32
void dt_cuda_embedding_widen(float *out, const int32_t *ids, int64_t n, const dt_tensor *table);
// attention.cu
void dt_cuda_attention_cached(const dt_backend *be, float *out, const float *q, const float *kc, const float *vc,
                              int64_t n, int64_t p0, int64_t H, int64_t KV, int64_t hd);
size_t dt_cuda_attention_scratch_bytes(const dt_backend *be, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
void dt_cuda_attention_fwd(const dt_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                           void *scratch);
void dt_cuda_attention_bwd(const dt_backend *be, float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v, const float *dout,
                           const float *out, const float *lse, const float *q, const float *k, const float *v,
                           const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                           void *scratch);

// The hand-written flash kernels behind attention_fwd / attention_bwd (the f32 path, and the fallback of
// the cuDNN one); D is the backward's (B, H, T) floats of scratch.
void dt_cuda_attention_fwd_hand(float *out, float *lse, const float *q, const float *k, const float *v,
                                const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
void dt_cuda_attention_bwd_hand(float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v, const float *dout,
                                const float *out, const float *lse, const float *q, const float *k, const float *v,
                                const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                                float *D);
// sdpa_cudnn.cu: cuDNN's fused attention for the 16-bit tables. Each returns false, having changed
// nothing the caller relies on, when it did not run (f32 table, packed rows, a shape cuDNN refuses,
// cuDNN off); the caller then runs the hand kernel. Scratch: dt_cuda_sdpa_scratch_bytes.
void dt_cuda_sdpa_init(dt_cuda_state *st);
size_t dt_cuda_sdpa_scratch_bytes(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
bool dt_cuda_sdpa_fwd(const dt_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                      const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, void *scratch);
bool dt_cuda_sdpa_bwd(const dt_backend *be, float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v,
                      const float *dout, const float *out, const float *lse, const float *q, const float *k,
                      const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                      void *scratch);

// ---- matmuls with 16-bit operands (backend.cu) ----

// The 16-bit type this table's matmuls round their inputs to (CUDA_R_16BF, CUDA_R_16F), or CUDA_R_32F
// for the f32 table.
cudaDataType_t dt_cuda_gemm_type(const dt_backend *be);
// Row-major C (M, N) f32 = alpha op(A) op(B) + beta C with A and B stored in 16-bit type t (CUDA_R_16BF
// or CUDA_R_16F), through cuBLASLt with f32 accumulation. Errors are recorded.
void dt_cuda_gemm16(cudaDataType_t t, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                    int64_t lda, const void *B, int64_t ldb, float beta, float *C, int64_t ldc);

// ---- 16-bit and block-quantized storage (frozen.cu, dequant.cu) ----

// dst (n) bf16 (is_bf16) or f16 <- src (n) f32, rounded to nearest even as the CPU rounds; false (and
// recorded) when the launch fails.
bool dt_cuda_narrow16(uint16_t *dst, const float *src, int64_t n, bool is_bf16);

// The 16-bit conversions are autograd/half.h's (the CPU's own, as device functions).

// dst (n values, a whole number of blocks) <- n values of ggml type t decoded from src (device memory);
// false when t has no device decoder (dt_cuda_quant_supported) or n is not whole blocks.
bool dt_cuda_quant_supported(dt_dtype t);
bool dt_cuda_dequant(float *dst, const void *src, int64_t n, dt_dtype t);
// dst (n, D) <- rows ids (n, device) of table (V, D) of a ggml type, decoded.
bool dt_cuda_dequant_rows(float *dst, const int32_t *ids, int64_t n, const dt_tensor *table);
// dst (n) f32 <- values e0 .. e0+n-1 (both even) of NF4/FP4 weight W (device nibbles, W->aux its state
// in host memory with device arrays); false when W is not such a weight.
bool dt_cuda_dequant_nf4(float *dst, const dt_tensor *W, int64_t e0, int64_t n);

#endif
