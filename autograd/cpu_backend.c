// The CPU backend table: OpenBLAS for every matmul, OpenMP for element-wise loops.
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <omp.h>
#include "autograd/backend.h"
#include "autograd/cpu_kernels.h"

static void *cpu_alloc(size_t bytes) {
    // 64-byte alignment for AVX-512 loads; round the size up as aligned_alloc requires.
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}
static void cpu_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
static void cpu_zero(void *p, size_t n) { memset(p, 0, n); }

void dt_cpu_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M,
                (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

static const dt_backend CPU; // the table below; gemm2 runs each half through its gemm

// Inside the parallel region the OpenMP build of OpenBLAS runs each call on its own thread only.
static void cpu_gemm2(const dt_gemm_args *a, const dt_gemm_args *b) {
    if (omp_in_parallel() || omp_get_max_threads() < 2) {
        dt_gemm_one(&CPU, a);
        dt_gemm_one(&CPU, b);
        return;
    }
    #pragma omp parallel sections num_threads(2)
    {
        #pragma omp section
        dt_gemm_one(&CPU, a);
        #pragma omp section
        dt_gemm_one(&CPU, b);
    }
}

static const dt_backend CPU = {
    .name = "cpu",
    .device = DT_DEV_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .gemm = dt_cpu_gemm,
    .gemm2 = cpu_gemm2,
    .embedding_fwd = dt_cpu_embedding_fwd,
    .rmsnorm_fwd = dt_cpu_rmsnorm_fwd,
    .rmsnorm_apply = dt_cpu_rmsnorm_apply,
    .rmsnorm_bwd = dt_cpu_rmsnorm_bwd,
    .rope_table = dt_cpu_rope_table,
    .rope = dt_cpu_rope,
    .attention_scratch_bytes = dt_cpu_attention_scratch_bytes,
    .attention_fwd = dt_cpu_attention_fwd,
    .attention_bwd = dt_cpu_attention_bwd,
    .swiglu_fwd = dt_cpu_swiglu_fwd,
    .swiglu_bwd = dt_cpu_swiglu_bwd,
    .add = dt_cpu_add,
    .mul = dt_cpu_mul,
    .add_bias = dt_cpu_add_bias,
    .axpy = dt_cpu_axpy,
    .dropout = dt_cpu_dropout,
    .xent_rows = dt_cpu_xent_rows,
    .sumsq = dt_cpu_sumsq,
    .scale = dt_cpu_scale,
};

const dt_backend *dt_backend_cpu(void) { return &CPU; }
