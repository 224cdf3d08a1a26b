// A CPU stand-in for the parts of the CUDA runtime, cuBLAS and the device language that autograd/cuda/
// uses, so the backend's real sources (rewritten only at their <<<...>>> launches by emu_build.sh),
// tests/test_cuda_ops.c and a whole deltatune binary can run on a machine without a GPU.
// It checks index math, bounds (device memory and shared memory are exact-size heap blocks), barrier
// placement (see the two execution modes below) and the launch configuration, and it runs whole
// training steps through the backend. It says nothing about speed or about the real compiler.
// Blocks of a grid run one after another.
#ifndef DT_EMU_CUDA_H
#define DT_EMU_CUDA_H
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <atomic>
#include <barrier>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static // blocks run one at a time, so one static copy per kernel is one per block

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
} cudaError_t;
typedef enum { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 } cudaMemcpyKind;
typedef enum {
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
    cudaDevAttrMemoryPoolsSupported = 115,
} cudaDeviceAttr;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef enum { cudaMemPoolAttrReleaseThreshold = 4 } cudaMemPoolAttr;
typedef struct emu_stream *cudaStream_t;
typedef struct emu_pool *cudaMemPool_t;
struct cudaDeviceProp { char name[256]; int major, minor; };

namespace emu {
// Two ways to run the threads of a block:
//  - default: cooperative fibers (ucontext) on the calling OS thread. A fiber runs until it waits at a
//    barrier (block-wide or one warp's), then the next one runs; a barrier opens when all its
//    threads have arrived. Deterministic, and fast enough on a loaded machine to run whole training
//    steps in CI. A missing barrier shows up as a wrong result, not as a race report.
//  - EMU_THREADS (the ThreadSanitizer build): one OS thread per CUDA thread and real barriers, so a
//    missing __syncthreads is a data race ThreadSanitizer reports.
#ifdef EMU_THREADS
typedef std::barrier<> barrier_t;
inline void barrier_wait(barrier_t &b) { b.arrive_and_wait(); }
#else
struct barrier_t {
    explicit barrier_t(int n_) : n(n_) {}
    int n, arrived = 0;
    unsigned gen = 0;
};
// Switching: a fiber is entered the first time through its ucontext (makecontext gives it its own
// stack); after that, fibers and the scheduler switch with _setjmp/_longjmp, which unlike swapcontext
// make no system call (swapcontext saves the signal mask each time, and the attention kernels switch
// hundreds of thousands of times per launch).
struct fiber { ucontext_t ctx; jmp_buf jb; bool inited, started, done; };
struct scheduler {
    ucontext_t main;
    jmp_buf main_jb;
    std::vector<fiber> f;
    std::vector<char> stacks; // one kStack-byte stack per fiber, kept across launches
    unsigned cur = 0;
    std::function<void()> body; // the kernel with its arguments
};
constexpr size_t kStack = 128 << 10;
inline scheduler sched;
inline void yield() {
    if (!_setjmp(sched.f[sched.cur].jb)) _longjmp(sched.main_jb, 1);
}
inline void barrier_wait(barrier_t &b) {
    const unsigned g = b.gen;
    if (++b.arrived == b.n) { b.arrived = 0; b.gen++; return; } // the last one opens it
    while (b.gen == g) yield();
}
inline void fiber_entry() {
    sched.body();
    sched.f[sched.cur].done = true;
    _longjmp(sched.main_jb, 1); // never returns: the fiber's stack is simply reused
}
// Runs fiber t until it yields or finishes.
inline void resume(unsigned t) {
    fiber &f = sched.f[t];
    sched.cur = t;
    if (_setjmp(sched.main_jb)) return;
    if (!f.started) {
        f.started = true;
        swapcontext(&sched.main, &f.ctx);
    } else {
        _longjmp(f.jb, 1);
    }
}
#endif

struct block_state {
    explicit block_state(int n) : bar(n) {
        for (int w = 0; w < n / 32; w++) warps.emplace_back(new warp);
    }
    barrier_t bar;
    std::atomic<int> vote{0};
    struct warp { barrier_t bar{32}; double slot[32]; };
    std::vector<std::unique_ptr<warp>> warps;
    std::vector<float> smem;
};
inline thread_local dim3 threadIdx_, blockIdx_;
inline dim3 blockDim_, gridDim_;
inline block_state *blk;
inline cudaError_t last_error = cudaSuccess;
inline std::map<const void *, int> smem_attr;
inline size_t smem_optin = 166912; // an A100's opt-in limit, the smaller of the two targets
inline float *dyn_smem() { return blk->smem.data(); }
inline cudaError_t set_error(cudaError_t e) { if (last_error == cudaSuccess) last_error = e; return e; }

template <class... P> struct launcher {
    void (*k)(P...);
    dim3 grid, block;
    size_t smem;
    template <class... A> void operator()(A &&...a) {
        if (block.x * block.y * block.z > 1024 || block.y != 1 || block.z != 1 || block.x % 32 || grid.x == 0 ||
            grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
            set_error(cudaErrorInvalidConfiguration);
            return;
        }
        auto it = smem_attr.find((const void *)k);
        if (smem > smem_optin || (smem > 48 * 1024 && (it == smem_attr.end() || (size_t)it->second < smem))) {
            set_error(cudaErrorInvalidValue); // shared memory above 48 KB needs the opt-in attribute
            return;
        }
        std::tuple<P...> args((P)a...);
        blockDim_ = block;
        gridDim_ = grid;
#ifdef EMU_THREADS
        block_state st((int)block.x);
        blk = &st;
        std::barrier<> between((std::ptrdiff_t)block.x);
        // One OS thread per CUDA thread of a block, reused for every block of the grid in turn.
        std::vector<std::thread> th;
        for (unsigned t = 0; t < block.x; t++)
            th.emplace_back([&, t] {
                threadIdx_ = dim3(t);
                for (unsigned bz = 0; bz < grid.z; bz++)
                    for (unsigned by = 0; by < grid.y; by++)
                        for (unsigned bx = 0; bx < grid.x; bx++) {
                            if (t == 0) st.smem.assign(smem / sizeof(float), NAN); // uninitialised reads give NaN
                            between.arrive_and_wait();
                            blockIdx_ = dim3(bx, by, bz);
                            std::apply(k, args);
                            between.arrive_and_wait(); // the block is done before the next one starts
                        }
            });
        for (auto &x : th) x.join();
#else
        const unsigned n = block.x;
        scheduler &S = sched;
        if (S.f.size() < n) { S.f.resize(n); S.stacks.resize(n * kStack); for (auto &f : S.f) f.inited = false; }
        S.body = [&] { std::apply(k, args); };
        for (unsigned bz = 0; bz < grid.z; bz++)
            for (unsigned by = 0; by < grid.y; by++)
                for (unsigned bx = 0; bx < grid.x; bx++) {
                    block_state st((int)n);
                    blk = &st;
                    st.smem.assign(smem / sizeof(float), NAN); // uninitialised reads give NaN
                    blockIdx_ = dim3(bx, by, bz);
                    for (unsigned t = 0; t < n; t++) {
                        fiber &f = S.f[t];
                        // The context is never saved into after makecontext (switches use jmp_bufs), so
                        // one getcontext (a system call) per fiber slot is enough.
                        if (!f.inited) { getcontext(&f.ctx); f.inited = true; }
                        f.ctx.uc_stack.ss_sp = S.stacks.data() + (size_t)t * kStack;
                        f.ctx.uc_stack.ss_size = kStack;
                        f.ctx.uc_link = &S.main;
                        makecontext(&f.ctx, fiber_entry, 0);
                        f.started = f.done = false;
                    }
                    // Round robin until every thread has finished; one that waits at a closed barrier
                    // yields straight back.
                    for (unsigned left = n; left;) {
                        left = 0;
                        for (unsigned t = 0; t < n; t++) {
                            if (S.f[t].done) continue;
                            threadIdx_ = dim3(t);
                            resume(t);
                            left += !S.f[t].done;
                        }
                    }
                }
#endif
        blk = nullptr;
    }
};
template <class... P> launcher<P...> launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = 0) {
    return launcher<P...>{k, grid, block, smem};
}
} // namespace emu

#define threadIdx emu::threadIdx_
#define blockIdx emu::blockIdx_
#define blockDim emu::blockDim_
#define gridDim emu::gridDim_

inline void __syncthreads() { emu::barrier_wait(emu::blk->bar); }
inline int __syncthreads_or(int pred) {
    emu::block_state &b = *emu::blk;
    emu::barrier_wait(b.bar); // the previous vote has been read and reset
    if (pred) b.vote.store(1);
    emu::barrier_wait(b.bar);
    int r = b.vote.load();
    emu::barrier_wait(b.bar);
    if (threadIdx.x == 0) b.vote.store(0);
    return r;
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int o) {
    if (mask != 0xffffffffu) abort(); // only full-warp shuffles are used
    emu::block_state::warp &w = *emu::blk->warps[threadIdx.x / 32];
    const unsigned lane = threadIdx.x & 31;
    emu::barrier_wait(w.bar); // the previous exchange has been read
    w.slot[lane] = (double)v;
    emu::barrier_wait(w.bar);
    return (T)w.slot[lane ^ (unsigned)o];
}

// Explicitly rounded f32 arithmetic: the emulator is compiled with -ffp-contract=off, so plain operators
// already round each operation.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }

// ---- runtime ----
inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    }
    return "unknown error";
}
inline cudaError_t cudaGetLastError() { cudaError_t e = emu::last_error; emu::last_error = cudaSuccess; return e; }
inline cudaError_t cudaGetDeviceCount(int *n) { *n = getenv("EMU_NO_DEVICE") ? 0 : 1; return cudaSuccess; }
inline cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    strcpy(p->name, "CPU emulation");
    p->major = 8;
    p->minor = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMaxSharedMemoryPerBlockOptin ? (int)emu::smem_optin : 1;
    return cudaSuccess;
}
template <class K> inline cudaError_t cudaFuncSetAttribute(K k, cudaFuncAttribute, int v) {
    if ((size_t)v > emu::smem_optin) return emu::set_error(cudaErrorInvalidValue);
    emu::smem_attr[(const void *)k] = v;
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t *s) { *s = (cudaStream_t)malloc(1); return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) { free(s); return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
// Device memory is counted, so out-of-memory paths can be exercised: EMU_DEVICE_MEM=bytes sets the
// device's total (default 2 GiB) and cudaMalloc fails beyond it; EMU_MALLOC_FAIL_FROM=k makes the k-th
// and every later cudaMalloc fail (memory taken by another process in the middle of a run);
// EMU_ASYNC_FAIL_BYTES (below) fails one size of stream-ordered allocation.
namespace emu {
inline std::mutex mem_lock;
inline std::map<void *, size_t> live; // device block -> size
inline size_t live_bytes = 0, mallocs = 0;
inline size_t env_size(const char *name, size_t dflt) {
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) : dflt;
}
inline size_t device_total() { return env_size("EMU_DEVICE_MEM", (size_t)2 << 30); }
inline cudaError_t dev_alloc(void **p, size_t n, bool counted) {
    std::lock_guard<std::mutex> g(mem_lock);
    *p = nullptr;
    if (counted) {
        mallocs++;
        size_t k = env_size("EMU_MALLOC_FAIL_FROM", 0);
        if (k && mallocs >= k) return set_error(cudaErrorMemoryAllocation);
    }
    if (live_bytes + n > device_total()) return set_error(cudaErrorMemoryAllocation);
    *p = malloc(n ? n : 1);
    if (!*p) return set_error(cudaErrorMemoryAllocation);
    live[*p] = n;
    live_bytes += n;
    return cudaSuccess;
}
inline void dev_free(void *p) {
    if (!p) return;
    std::lock_guard<std::mutex> g(mem_lock);
    auto it = live.find(p);
    if (it == live.end()) abort(); // not a device pointer: a bug the real runtime would also reject
    live_bytes -= it->second;
    live.erase(it);
    free(p);
}
} // namespace emu
inline cudaError_t cudaMalloc(void **p, size_t n) { return emu::dev_alloc(p, n, true); }
inline cudaError_t cudaFree(void *p) { emu::dev_free(p); return cudaSuccess; }
// EMU_ASYNC_FAIL_BYTES=n: a stream-ordered allocation of exactly n bytes fails (one kind of temporary,
// e.g. cuDNN's workspace, without the reductions' temporaries).
inline cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t) {
    const size_t fail = emu::env_size("EMU_ASYNC_FAIL_BYTES", 0);
    if (fail && n == fail) { *p = nullptr; return emu::set_error(cudaErrorMemoryAllocation); }
    return emu::dev_alloc(p, n, false);
}
inline cudaError_t cudaFreeAsync(void *p, cudaStream_t) { emu::dev_free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) {
    memcpy(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
    std::lock_guard<std::mutex> g(emu::mem_lock);
    *t = emu::device_total();
    *f = *t - emu::live_bytes;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *p, int) { *p = nullptr; return cudaSuccess; }
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void *) { return cudaSuccess; }
inline cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return cudaSuccess; }

// ---- cuBLAS: column-major reference gemm, straight from the cuBLAS definition ----
typedef struct emu_blas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef cudaDataType cudaDataType_t;
typedef enum {
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
} cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
inline const char *cublasGetStatusString(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS ? "success" : "error"; }
inline cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = (cublasHandle_t)malloc(1); return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasDestroy(cublasHandle_t h) { free(h); return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline float emu_round16(float x, cublasComputeType_t c) {
    if (c == CUBLAS_COMPUTE_32F_FAST_16BF) { // round to nearest even bf16
        uint32_t u; memcpy(&u, &x, 4); u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u; memcpy(&x, &u, 4);
    } else if (c == CUBLAS_COMPUTE_32F_FAST_16F) {
        x = (float)(_Float16)x;
    }
    return x;
}
inline cublasStatus_t cublasGemmEx_64(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
                                      int64_t k, const void *alpha, const void *A, cudaDataType, int64_t lda,
                                      const void *B, cudaDataType, int64_t ldb, const void *beta, void *C,
                                      cudaDataType, int64_t ldc, cublasComputeType_t compute, cublasGemmAlgo_t) {
    // C (m, n) = alpha op(A) op(B) + beta C, column-major: element (i, j) of X at X[i + j * ldX]
    const float *a = (const float *)A, *b = (const float *)B;
    float *c = (float *)C, al = *(const float *)alpha, be = *(const float *)beta;
    if ((ta == CUBLAS_OP_N ? lda < m : lda < k) || (tb == CUBLAS_OP_N ? ldb < k : ldb < n) || ldc < m)
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) {
                float x = ta == CUBLAS_OP_N ? a[i + p * lda] : a[p + i * lda];
                float y = tb == CUBLAS_OP_N ? b[p + j * ldb] : b[j + p * ldb];
                s += (double)emu_round16(x, compute) * emu_round16(y, compute);
            }
            c[i + j * ldc] = al * (float)s + (be == 0.0f ? 0.0f : be * c[i + j * ldc]);
        }
    return CUBLAS_STATUS_SUCCESS;
}

// ---- cuBLASLt: descriptors kept as plain structs, the matmul as the column-major reference above ----
typedef struct emu_lt *cublasLtHandle_t;
typedef struct { cublasComputeType_t compute; cudaDataType scale; int32_t op[2]; } emu_lt_desc, *cublasLtMatmulDesc_t;
typedef struct { cudaDataType type; uint64_t rows, cols; int64_t ld; } emu_lt_layout, *cublasLtMatrixLayout_t;
typedef struct { size_t max_ws; } emu_lt_pref, *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4 } cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1 } cublasLtMatmulPreferenceAttributes_t;
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = (cublasLtHandle_t)malloc(1); return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { free(h); return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c, cudaDataType s) {
    *d = new emu_lt_desc{c, s, {CUBLAS_OP_N, CUBLAS_OP_N}};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                     const void *v, size_t n) {
    if (n != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&d->op[a == CUBLASLT_MATMUL_DESC_TRANSA ? 0 : 1], v, n);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows, uint64_t cols,
                                                 int64_t ld) {
    if (ld < (int64_t)rows) return CUBLAS_STATUS_INVALID_VALUE; // column-major: ld at least the rows
    *l = new emu_lt_layout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new emu_lt_pref{0};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                           cublasLtMatmulPreferenceAttributes_t, const void *v, size_t n) {
    if (n != sizeof(size_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->max_ws, v, n);
    return CUBLAS_STATUS_SUCCESS;
}
// Value (i, j) of a column-major matrix of layout l, widened from its type.
inline float emu_lt_at(const void *p, const emu_lt_layout *l, uint64_t i, uint64_t j) {
    const int64_t at = (int64_t)i + (int64_t)j * l->ld;
    if (l->type == CUDA_R_32F) return ((const float *)p)[at];
    const uint16_t h = ((const uint16_t *)p)[at];
    if (l->type == CUDA_R_16BF) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
    _Float16 x;
    memcpy(&x, &h, 2);
    return (float)x;
}
// One algorithm whenever the shapes agree: (m, k) x (k, n) -> (m, n) after the transposes, A and B of one
// type, C and D f32 with one layout.
inline bool emu_lt_shapes_agree(const emu_lt_desc *d, const emu_lt_layout *a, const emu_lt_layout *b,
                                const emu_lt_layout *c, const emu_lt_layout *dl) {
    const uint64_t m = d->op[0] == CUBLAS_OP_N ? a->rows : a->cols, k = d->op[0] == CUBLAS_OP_N ? a->cols : a->rows;
    const uint64_t kb = d->op[1] == CUBLAS_OP_N ? b->rows : b->cols, n = d->op[1] == CUBLAS_OP_N ? b->cols : b->rows;
    return k == kb && c->rows == m && c->cols == n && a->type == b->type && c->type == CUDA_R_32F &&
           dl->type == CUDA_R_32F && dl->rows == c->rows && dl->cols == c->cols && dl->ld == c->ld &&
           d->compute == CUBLAS_COMPUTE_32F && d->scale == CUDA_R_32F;
}
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                                     cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                                     cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t,
                                                     int requested, cublasLtMatmulHeuristicResult_t *r, int *found) {
    *found = 0;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (!emu_lt_shapes_agree(d, a, b, c, dl)) return CUBLAS_STATUS_INVALID_VALUE;
    memset(r, 0, sizeof *r);
    r->workspaceSize = 1 << 20;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                                     cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb,
                                     const void *beta, const void *C, cublasLtMatrixLayout_t lc, void *D,
                                     cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes,
                                     cudaStream_t) {
    // D (m, n) = alpha op(A) op(B) + beta C, column-major, products summed in double
    if (!algo || !emu_lt_shapes_agree(d, la, lb, lc, ld) || (ws_bytes && !ws)) return CUBLAS_STATUS_INVALID_VALUE;
    const bool na = d->op[0] == CUBLAS_OP_N, nb = d->op[1] == CUBLAS_OP_N;
    const uint64_t m = lc->rows, n = lc->cols, k = na ? la->cols : la->rows;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double s = 0;
            for (uint64_t p = 0; p < k; p++)
                s += (double)(na ? emu_lt_at(A, la, i, p) : emu_lt_at(A, la, p, i)) *
                     (nb ? emu_lt_at(B, lb, p, j) : emu_lt_at(B, lb, j, p));
            const float c = be == 0.0f ? 0.0f : be * ((const float *)C)[i + j * lc->ld];
            ((float *)D)[i + j * ld->ld] = al * (float)s + c;
        }
    return CUBLAS_STATUS_SUCCESS;
}

#endif
