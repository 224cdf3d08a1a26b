// The CPU backend table: OpenBLAS for every matmul, OpenMP for element-wise loops.
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <omp.h>
#include "autograd/backend.h"
#include "autograd/cpu_kernels.h"

// The table's entries take the backend handle first (backend.h); the CPU has no per-instance state,
// so each wraps its plain kernel from cpu_kernels.h, which the tests also call directly.
static void *cpu_alloc(const dt_backend *be, size_t bytes) {
    (void)be;
    // 64-byte alignment for AVX-512 loads; round the size up as aligned_alloc requires.
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}
static void cpu_free(const dt_backend *be, void *p) { (void)be; free(p); }
static void cpu_copy(const dt_backend *be, void *dst, const void *src, size_t n) { (void)be; memcpy(dst, src, n); }
static void cpu_zero(const dt_backend *be, void *p, size_t n) { (void)be; memset(p, 0, n); }

void dt_cpu_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    // One output row (generation decodes one token at a time): sgemv reads B once, where sgemm first
    // packs all of B into its panel layout for that single row (60% of a decode step went to
    // sgemm_incopy). C (1, N) = alpha a (1, K) op(B): B stored (N, K) when tb, so C = B a, else C = B^T a.
    // At beta 0 sgemv ignores what C holds, NaN included (test_frozen checks it on the OpenBLAS we link).
    // K = 0 stays with sgemm: sgemv returns at once for an empty matrix, without applying beta to C.
    if (M == 1 && K > 0) {
        cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, (blasint)(tb ? N : K), (blasint)(tb ? K : N), alpha,
                    B, (blasint)ldb, A, (blasint)(ta ? lda : 1), beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M,
                (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}
static void cpu_gemm(const dt_backend *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)be;
    dt_cpu_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Inside the parallel region the OpenMP build of OpenBLAS runs each call on its own thread only.
static void cpu_gemm2(const dt_backend *be, const dt_gemm_args *a, const dt_gemm_args *b) {
    if (omp_in_parallel() || omp_get_max_threads() < 2) {
        dt_gemm_one(be, a);
        dt_gemm_one(be, b);
        return;
    }
    #pragma omp parallel sections num_threads(2)
    {
        #pragma omp section
        dt_gemm_one(be, a);
        #pragma omp section
        dt_gemm_one(be, b);
    }
}

static size_t cpu_frozen_scratch_bytes(const dt_backend *be, const dt_tensor *W, int64_t N) {
    (void)be;
    return dt_cpu_frozen_scratch_bytes(W, N);
}
static void cpu_frozen_fwd(const dt_backend *be, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W,
                           void *scratch) {
    (void)be;
    dt_cpu_frozen_fwd(y, acc, x, N, W, scratch);
}
static void cpu_frozen_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W,
                           void *scratch) {
    (void)be;
    dt_cpu_frozen_bwd(dx, acc, dy, N, W, scratch);
}
static void cpu_embedding_fwd(const dt_backend *be, float *out, const int32_t *ids, int64_t n, const dt_tensor *t) {
    (void)be;
    dt_cpu_embedding_rows(out, ids, n, t);
}
static void cpu_rmsnorm_fwd(const dt_backend *be, float *y, float *rstd, const float *x, const float *w, int64_t N,
                            int64_t D, float eps) {
    (void)be;
    dt_cpu_rmsnorm_fwd(y, rstd, x, w, N, D, eps);
}
static void cpu_rmsnorm_apply(const dt_backend *be, float *y, const float *x, const float *rstd, const float *w,
                              int64_t N, int64_t D) {
    (void)be;
    dt_cpu_rmsnorm_apply(y, x, rstd, w, N, D);
}
static void cpu_rmsnorm_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, const float *x,
                            const float *w, const float *rstd, int64_t N, int64_t D) {
    (void)be;
    dt_cpu_rmsnorm_bwd(dx, acc, dy, x, w, rstd, N, D);
}
static void cpu_rope_table(const dt_backend *be, float *cs, const int32_t *pos, const float *inv_freq, int64_t N,
                           int64_t hd) {
    (void)be;
    dt_cpu_rope_table(cs, pos, inv_freq, N, hd);
}
static void cpu_rope(const dt_backend *be, float *x, const float *cs, int64_t N, int64_t H, int64_t hd, bool inv) {
    (void)be;
    dt_cpu_rope(x, cs, N, H, hd, inv);
}
static size_t cpu_attention_scratch_bytes(const dt_backend *be, int64_t B, int64_t T, int64_t H, int64_t KV,
                                          int64_t hd) {
    (void)be;
    return dt_cpu_attention_scratch_bytes(B, T, H, KV, hd);
}
static void cpu_attention_cached(const dt_backend *be, float *out, const float *q, const float *kc, const float *vc,
                                 int64_t n, int64_t p0, int64_t H, int64_t KV, int64_t hd) {
    (void)be;
    dt_cpu_attention_cached(out, q, kc, vc, n, p0, H, KV, hd);
}
static void cpu_attention_fwd(const dt_backend *be, float *out, float *lse, const float *q, const float *k,
                              const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                              int64_t hd, void *scratch) {
    (void)be;
    dt_cpu_attention_fwd(out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch);
}
static void cpu_attention_bwd(const dt_backend *be, float *dq, float *dk, float *dv, bool acc_q, bool acc_k,
                              bool acc_v, const float *dout, const float *out, const float *lse, const float *q,
                              const float *k, const float *v, const int32_t *seg_start, int64_t B, int64_t T,
                              int64_t H, int64_t KV, int64_t hd, void *scratch) {
    (void)be;
    dt_cpu_attention_bwd(dq, dk, dv, acc_q, acc_k, acc_v, dout, out, lse, q, k, v, seg_start, B, T, H, KV, hd,
                         scratch);
}
static void cpu_swiglu_fwd(const dt_backend *be, float *h, const float *g, const float *u, int64_t n) {
    (void)be;
    dt_cpu_swiglu_fwd(h, g, u, n);
}
static void cpu_swiglu_bwd(const dt_backend *be, float *dg, float *du, bool acc_g, bool acc_u, const float *dh,
                           const float *g, const float *u, int64_t n) {
    (void)be;
    dt_cpu_swiglu_bwd(dg, du, acc_g, acc_u, dh, g, u, n);
}
static void cpu_add(const dt_backend *be, float *y, const float *a, const float *b, int64_t n) {
    (void)be;
    dt_cpu_add(y, a, b, n);
}
static void cpu_mul(const dt_backend *be, float *y, bool acc, const float *a, const float *b, int64_t n) {
    (void)be;
    dt_cpu_mul(y, acc, a, b, n);
}
static void cpu_add_bias(const dt_backend *be, float *y, const float *bias, int64_t N, int64_t D) {
    (void)be;
    dt_cpu_add_bias(y, bias, N, D);
}
static void cpu_axpy(const dt_backend *be, float *y, bool acc, float alpha, const float *x, int64_t n) {
    (void)be;
    dt_cpu_axpy(y, acc, alpha, x, n);
}
static void cpu_dropout(const dt_backend *be, float *y, bool acc, const float *x, int64_t n, float p, uint64_t seed) {
    (void)be;
    dt_cpu_dropout(y, acc, x, n, p, seed);
}
static double cpu_xent_rows(const dt_backend *be, float *logits, const int32_t *targets, int64_t n, int64_t V,
                            float scale) {
    (void)be;
    return dt_cpu_xent_rows(logits, targets, n, V, scale);
}
static double cpu_sumsq(const dt_backend *be, const float *x, int64_t n) {
    (void)be;
    return dt_cpu_sumsq(x, n);
}
static void cpu_scale(const dt_backend *be, float *x, float s, int64_t n) {
    (void)be;
    dt_cpu_scale(x, s, n);
}

static const dt_backend CPU = {
    .name = "cpu",
    .device = DT_DEV_CPU,
    .impl = NULL,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .gemm = cpu_gemm,
    .gemm2 = cpu_gemm2,
    .frozen_scratch_bytes = cpu_frozen_scratch_bytes,
    .frozen_fwd = cpu_frozen_fwd,
    .frozen_bwd = cpu_frozen_bwd,
    .embedding_fwd = cpu_embedding_fwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_apply = cpu_rmsnorm_apply,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope_table = cpu_rope_table,
    .rope = cpu_rope,
    .attention_scratch_bytes = cpu_attention_scratch_bytes,
    .attention_fwd = cpu_attention_fwd,
    .attention_bwd = cpu_attention_bwd,
    .attention_cached = cpu_attention_cached,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .add = cpu_add,
    .mul = cpu_mul,
    .add_bias = cpu_add_bias,
    .axpy = cpu_axpy,
    .dropout = cpu_dropout,
    .xent_rows = cpu_xent_rows,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
};

const dt_backend *dt_backend_cpu(void) { return &CPU; }
