// The CUDA backend's instance, memory functions, cuBLAS matmuls and the three tables (one per matmul
// precision). The kernels are in elementwise.cu, norm.cu, reduce.cu and attention.cu.
#include <stdio.h>
#include <string.h>
#include "autograd/cuda/cuda_internal.h"

// The instance and the tables, written once by init_once (under pthread_once) and only read after.
static dt_cuda_state g_cuda;
static dt_backend g_tables[3]; // f32, bf16, f16 matmuls
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_status = DT_EINTERNAL; // DT_OK once the instance exists
static char g_init_msg[512];

dt_cuda_state *dt_cuda(void) { return &g_cuda; }

void dt_cuda_record(int code, const char *what, const char *file, int line, const char *reason) {
    pthread_mutex_lock(&g_cuda.lock);
    if (!g_cuda.has_err) {
        g_cuda.has_err = true;
        g_cuda.err_code = code;
        snprintf(g_cuda.err, sizeof g_cuda.err, "CUDA: %s: %s (%s:%d)", what, reason, file, line);
    }
    pthread_mutex_unlock(&g_cuda.lock);
}

// ---- memory ----

static void record_oom(dt_cuda_state *st, size_t bytes) {
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) { (void)cudaGetLastError(); free_b = total = 0; }
    pthread_mutex_lock(&st->lock);
    st->oom = true;
    st->oom_asked = bytes;
    st->oom_free = free_b;
    st->oom_total = total;
    pthread_mutex_unlock(&st->lock);
}

static void *cuda_alloc(const dt_backend *be, size_t bytes) {
    (void)be;
    dt_cuda_state *st = dt_cuda();
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        // The stream-ordered pool may still hold freed temporaries (reduction buffers): return them
        // to the device and try once more.
        (void)cudaGetLastError(); // an allocation failure is not sticky; clear it for LAUNCH_OK
        if (CU_OK(cudaStreamSynchronize(st->stream)) && CU_OK(cudaMemPoolTrimTo(st->pool, 0)))
            e = cudaMalloc(&p, bytes);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        // Out of memory is reported by the caller (the graph says which step allocation failed); the
        // sizes are kept for dt_backend_cuda_oom, so the message can say what was asked and what was free.
        if (e != cudaErrorMemoryAllocation) dt_cuda_ok_(e, "cudaMalloc", __FILE__, __LINE__);
        else record_oom(st, bytes);
        return NULL;
    }
    return p;
}

bool dt_backend_cuda_oom(size_t *asked, size_t *free_b, size_t *total) {
    dt_cuda_state *st = dt_cuda();
    pthread_mutex_lock(&st->lock);
    bool had = st->oom;
    *asked = st->oom_asked;
    *free_b = st->oom_free;
    *total = st->oom_total;
    st->oom = false;
    pthread_mutex_unlock(&st->lock);
    return had;
}

static void cuda_free(const dt_backend *be, void *p) {
    (void)be;
    if (p) CU_OK(cudaFree(p)); // waits for queued kernels that may still use p
}

// Both copies wait for the stream: download because the host reads the result next, upload so the
// host buffer (often on the caller's stack) may be reused as soon as the call returns.
static void cuda_upload(const dt_backend *be, void *dst, const void *host_src, size_t bytes) {
    (void)be;
    if (!bytes) return;
    cudaStream_t s = dt_cuda_stream();
    if (CU_OK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s))) CU_OK(cudaStreamSynchronize(s));
}

static void cuda_download(const dt_backend *be, void *host_dst, const void *src, size_t bytes) {
    (void)be;
    if (!bytes) return;
    cudaStream_t s = dt_cuda_stream();
    if (CU_OK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s))) CU_OK(cudaStreamSynchronize(s));
}

static void cuda_zero(const dt_backend *be, void *p, size_t bytes) {
    (void)be;
    if (bytes) CU_OK(cudaMemsetAsync(p, 0, bytes, dt_cuda_stream()));
}

// ---- matmuls ----

// Row-major C (M,N) = alpha op(A) op(B) + beta C is, read column-major, C^T (N,M) = alpha op(B)^T op(A)^T
// + beta C^T; a row-major matrix with leading dimension ld is its own transpose in column-major with the
// same ld. So cuBLAS gets B first and A second, N and M swapped, each keeping its own transpose flag.
// The _64 entry point takes int64 sizes, so no dimension is narrowed to int.
static void gemm_as(cublasComputeType_t compute, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    CUBLAS_OK(cublasGemmEx_64(dt_cuda()->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc, compute,
                              CUBLAS_GEMM_DEFAULT));
}

// Plain f32: no TF32 (CUBLAS_COMPUTE_32F under the default math mode), so results match the CPU's sgemm
// up to summation order.
static void gemm_f32(const dt_backend *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)be;
    gemm_as(CUBLAS_COMPUTE_32F, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
// The inputs are rounded to bf16 (or TF32, cuBLAS's choice per shape) inside the matmul kernel, products
// are accumulated in f32: tensor-core speed without a converted copy of the operands in memory.
static void gemm_bf16(const dt_backend *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)be;
    gemm_as(CUBLAS_COMPUTE_32F_FAST_16BF, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void gemm_f16(const dt_backend *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)be;
    gemm_as(CUBLAS_COMPUTE_32F_FAST_16F, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

cudaDataType_t dt_cuda_gemm_type(const dt_backend *be) {
    return be->gemm == gemm_bf16 ? CUDA_R_16BF : be->gemm == gemm_f16 ? CUDA_R_16F : CUDA_R_32F;
}

// The same row-major to column-major reading as gemm_as (B first, N and M swapped). A column-major
// layout of a row-major (r, c) matrix with leading dimension ld is (c, r) with the same ld, so the first
// operand (B) is (K, N) stored as tb ? (N, K) : (K, N) row-major, and so on. The algorithm is cuBLASLt's
// first heuristic choice within the workspace.
void dt_cuda_gemm16(cudaDataType_t t, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                    int64_t lda, const void *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    dt_cuda_state *st = dt_cuda();
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    const int32_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const size_t ws = st->lt_ws_bytes;
    cublasLtMatmulHeuristicResult_t best;
    int found = 0;
    if (CUBLAS_OK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F)) &&
        CUBLAS_OK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa)) &&
        CUBLAS_OK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb)) &&
        CUBLAS_OK(cublasLtMatrixLayoutCreate(&la, t, tb ? K : N, tb ? N : K, ldb)) &&
        CUBLAS_OK(cublasLtMatrixLayoutCreate(&lb, t, ta ? M : K, ta ? K : M, lda)) &&
        CUBLAS_OK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, ldc)) &&
        CUBLAS_OK(cublasLtMatmulPreferenceCreate(&pref)) &&
        CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws)) &&
        CUBLAS_OK(cublasLtMatmulAlgoGetHeuristic(st->lt, desc, la, lb, lc, lc, pref, 1, &best, &found))) {
        if (found < 1)
            dt_cuda_record(DT_EUNSUPPORTED, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__,
                           "cuBLASLt has no algorithm for this 16-bit matmul");
        else
            CUBLAS_OK(cublasLtMatmul(st->lt, desc, &alpha, B, la, A, lb, &beta, C, lc, C, lc, &best.algo, st->lt_ws, ws,
                                     st->stream));
    }
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
}

// ---- the instance ----

typedef void (*gemm_fn)(const dt_backend *, bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                        float, float *, int64_t);

static void fill_table(dt_backend *t, const char *name, gemm_fn gemm) {
    memset(t, 0, sizeof *t);
    t->name = name;
    t->device = DT_DEV_CUDA;
    t->alloc = cuda_alloc;
    t->free = cuda_free;
    t->upload = cuda_upload;
    t->download = cuda_download;
    t->zero = cuda_zero;
    t->gemm = gemm;
    t->frozen_scratch_bytes = dt_cuda_frozen_scratch_bytes;
    t->frozen_fwd = dt_cuda_frozen_fwd;
    t->frozen_bwd = dt_cuda_frozen_bwd;
    t->embedding_fwd = dt_cuda_embedding_fwd;
    t->rmsnorm_fwd = dt_cuda_rmsnorm_fwd;
    t->rmsnorm_apply = dt_cuda_rmsnorm_apply;
    t->rmsnorm_bwd = dt_cuda_rmsnorm_bwd;
    t->rope_table = dt_cuda_rope_table;
    t->rope = dt_cuda_rope;
    t->attention_scratch_bytes = dt_cuda_attention_scratch_bytes;
    t->attention_fwd = dt_cuda_attention_fwd;
    t->attention_bwd = dt_cuda_attention_bwd;
    t->attention_cached = dt_cuda_attention_cached;
    t->swiglu_fwd = dt_cuda_swiglu_fwd;
    t->swiglu_bwd = dt_cuda_swiglu_bwd;
    t->add = dt_cuda_add;
    t->mul = dt_cuda_mul;
    t->add_bias = dt_cuda_add_bias;
    t->axpy = dt_cuda_axpy;
    t->dropout = dt_cuda_dropout;
    t->xent_rows = dt_cuda_xent_rows;
    t->sumsq = dt_cuda_sumsq;
    t->scale = dt_cuda_scale;
}

// Sets g_init_status and g_init_msg ("msg" or "msg (call: CUDA's reason)") and releases what init made.
static void init_fail(int code, const char *msg, const char *call, cudaError_t e) {
    g_init_status = code;
    if (e != cudaSuccess) snprintf(g_init_msg, sizeof g_init_msg, "%s (%s: %s)", msg, call, cudaGetErrorString(e));
    else snprintf(g_init_msg, sizeof g_init_msg, "%s", msg);
    if (g_cuda.lt_ws) cudaFree(g_cuda.lt_ws);
    if (g_cuda.lt) cublasLtDestroy(g_cuda.lt);
    if (g_cuda.blas) cublasDestroy(g_cuda.blas);
    if (g_cuda.stream) cudaStreamDestroy(g_cuda.stream);
    g_cuda.lt_ws = NULL;
    g_cuda.lt = NULL;
    g_cuda.blas = NULL;
    g_cuda.stream = NULL;
}

static void init_once(void) {
    dt_cuda_state *st = &g_cuda;
    memset(st, 0, sizeof *st);
    pthread_mutex_init(&st->lock, NULL);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return init_fail(DT_EUNSUPPORTED, "no CUDA device found", "cudaGetDeviceCount", e);
    if (count == 0) return init_fail(DT_EUNSUPPORTED, "no CUDA device found", NULL, cudaSuccess);
    if ((e = cudaGetDevice(&st->device)) != cudaSuccess || (e = cudaSetDevice(st->device)) != cudaSuccess)
        return init_fail(DT_EUNSUPPORTED, "no CUDA device found", "cudaGetDevice/cudaSetDevice", e);
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, st->device)) != cudaSuccess)
        return init_fail(DT_EUNSUPPORTED, "cannot read the CUDA device's properties", "cudaGetDeviceProperties", e);
    snprintf(st->name, sizeof st->name, "%s", prop.name);
    if (prop.major < 8) {
        char msg[400];
        snprintf(msg, sizeof msg, "CUDA device %d (%s) has compute capability %d.%d; this build needs 8.0 or newer",
                 st->device, prop.name, prop.major, prop.minor);
        return init_fail(DT_EUNSUPPORTED, msg, NULL, cudaSuccess);
    }
    int optin = 0, pools = 0;
    if ((e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, st->device)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, st->device)) != cudaSuccess)
        return init_fail(DT_EUNSUPPORTED, "cannot read the CUDA device's attributes", "cudaDeviceGetAttribute", e);
    st->smem_optin = (size_t)optin;
    if (!pools)
        return init_fail(DT_EUNSUPPORTED, "the CUDA device does not support stream-ordered allocation", NULL,
                         cudaSuccess);
    if ((e = cudaStreamCreate(&st->stream)) != cudaSuccess)
        return init_fail(DT_EINTERNAL, "cannot create a CUDA stream", "cudaStreamCreate", e);
    cublasStatus_t s = cublasCreate(&st->blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        st->blas = NULL;
        char msg[256];
        snprintf(msg, sizeof msg, "cannot initialise cuBLAS (%s)", cublasGetStatusString(s));
        return init_fail(s == CUBLAS_STATUS_ALLOC_FAILED ? DT_ENOMEM : DT_EINTERNAL, msg, NULL, cudaSuccess);
    }
    if (cublasSetStream(st->blas, st->stream) != CUBLAS_STATUS_SUCCESS)
        return init_fail(DT_EINTERNAL, "cannot bind cuBLAS to the stream", NULL, cudaSuccess);
    if ((s = cublasLtCreate(&st->lt)) != CUBLAS_STATUS_SUCCESS) {
        st->lt = NULL;
        char msg[256];
        snprintf(msg, sizeof msg, "cannot initialise cuBLASLt (%s)", cublasGetStatusString(s));
        return init_fail(s == CUBLAS_STATUS_ALLOC_FAILED ? DT_ENOMEM : DT_EINTERNAL, msg, NULL, cudaSuccess);
    }
    // Without room for the workspace cuBLASLt still runs, with the algorithms that need none.
    st->lt_ws_bytes = DT_CUDA_LT_WS;
    if (cudaMalloc(&st->lt_ws, st->lt_ws_bytes) != cudaSuccess) {
        (void)cudaGetLastError(); // not an error of a later call
        st->lt_ws = NULL;
        st->lt_ws_bytes = 0;
    }
    // Reduction temporaries come from the default pool each call; keeping freed blocks in the pool
    // (instead of returning them at every synchronisation) makes those allocations nearly free.
    uint64_t keep = (uint64_t)64 << 20;
    if ((e = cudaDeviceGetDefaultMemPool(&st->pool, st->device)) != cudaSuccess ||
        (e = cudaMemPoolSetAttribute(st->pool, cudaMemPoolAttrReleaseThreshold, &keep)) != cudaSuccess)
        return init_fail(DT_EINTERNAL, "cannot configure the CUDA memory pool",
                         "cudaDeviceGetDefaultMemPool/cudaMemPoolSetAttribute", e);
    // cuDNN attention is optional: without it (or without a plan for a shape) the hand kernel runs.
    dt_cuda_sdpa_init(st);
    fill_table(&g_tables[0], "cuda", gemm_f32);
    fill_table(&g_tables[1], "cuda-bf16", gemm_bf16);
    fill_table(&g_tables[2], "cuda-f16", gemm_f16);
    g_init_status = DT_OK;
}

int dt_backend_cuda_init(dt_ctx *ctx, dt_dtype compute, const dt_backend **out) {
    *out = NULL;
    pthread_once(&g_once, init_once);
    if (g_init_status != DT_OK) return dt_fail(ctx, g_init_status, "%s", g_init_msg);
    switch (compute) {
    case DT_F32: *out = &g_tables[0]; return DT_OK;
    case DT_BF16: *out = &g_tables[1]; return DT_OK;
    case DT_F16: *out = &g_tables[2]; return DT_OK;
    default:
        return dt_fail(ctx, DT_EINPUT, "CUDA matmul precision %s is not supported (expected f32, bf16 or f16)",
                       dt_dtype_name(compute));
    }
}

static bool ready(void) {
    pthread_once(&g_once, init_once);
    return g_init_status == DT_OK;
}

int dt_backend_cuda_check(dt_ctx *ctx) {
    if (!ready()) return DT_OK; // no instance: nothing was ever queued
    CU_OK(cudaStreamSynchronize(g_cuda.stream));
    char msg[sizeof g_cuda.err];
    int code = DT_OK;
    pthread_mutex_lock(&g_cuda.lock);
    if (g_cuda.has_err) {
        code = g_cuda.err_code;
        memcpy(msg, g_cuda.err, sizeof msg);
        g_cuda.has_err = false;
    }
    pthread_mutex_unlock(&g_cuda.lock);
    return code == DT_OK ? DT_OK : dt_fail(ctx, code, "%s", msg);
}

int dt_backend_cuda_mem_info(dt_ctx *ctx, size_t *used, size_t *total) {
    *used = *total = 0;
    if (!ready()) return dt_fail(ctx, g_init_status, "%s", g_init_msg);
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) return dt_fail(ctx, DT_EINTERNAL, "CUDA: cudaMemGetInfo: %s", cudaGetErrorString(e));
    *used = total_b - free_b;
    *total = total_b;
    return DT_OK;
}

const char *dt_backend_cuda_device_name(void) { return ready() ? g_cuda.name : ""; }
