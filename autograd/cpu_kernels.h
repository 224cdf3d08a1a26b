// CPU kernels behind the backend table (see backend.h for each one's contract).
#ifndef DT_CPU_KERNELS_H
#define DT_CPU_KERNELS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void dt_cpu_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void dt_cpu_embedding_fwd(float *out, const int32_t *ids, int64_t n, const float *table, int64_t D);
// The frozen-linear entry (autograd/cpu_frozen.c): dispatch on W->dtype, and the generic
// panel-widening reference path every faster kernel for a storage type is tested against.
struct dt_tensor;
size_t dt_cpu_frozen_scratch_bytes(const struct dt_tensor *W, int64_t N);
void dt_cpu_frozen_fwd(float *y, bool acc, const float *x, int64_t N, const struct dt_tensor *W, void *scratch);
void dt_cpu_frozen_bwd(float *dx, bool acc, const float *dy, int64_t N, const struct dt_tensor *W, void *scratch);
void dt_cpu_frozen_fwd_generic(float *y, bool acc, const float *x, int64_t N, const struct dt_tensor *W,
                               float *scratch);
void dt_cpu_frozen_bwd_generic(float *dx, bool acc, const float *dy, int64_t N, const struct dt_tensor *W,
                               float *scratch);
// out (n, D) = rows ids[i] of table (V, D) of any storage type
void dt_cpu_embedding_rows(float *out, const int32_t *ids, int64_t n, const struct dt_tensor *table);
// Rows of W per panel of the frozen-linear paths (scratch holds one panel of f32).
int64_t dt_cpu_frozen_panel_rows(const struct dt_tensor *W);
// Row `row` of W widened to f32 into dst: the traits row (dt_tensor_row_f32) or a faster one.
typedef void (*dt_row_f32_fn)(const struct dt_tensor *W, int64_t row, float *dst);
// The generic paths with W's rows widened by `row` (the _generic entries pass the traits row, the fast
// kernels their own, so the two stay equal bit for bit): a panel of rows at a time, then one sgemm per
// panel; in the forward for at most DT_FROZEN_FEW_ROWS rows of x (generation's decode: one), one row of
// W at a time widened into the thread's part of scratch, still in cache, and dotted there, so W is read
// once and no panel goes through memory. Measured on Q8_0 1536x576 and 576x1536 weights (2 threads):
// 180-220 us for one row and 300-380 us for four, against 450-640 us for the panel path at 1 to 8 rows.
#define DT_FROZEN_FEW_ROWS 4
void dt_cpu_frozen_fwd_widened(dt_row_f32_fn row, float *y, bool acc, const float *x, int64_t N,
                               const struct dt_tensor *W, float *scratch);
void dt_cpu_frozen_bwd_widened(dt_row_f32_fn row, float *dx, bool acc, const float *dy, int64_t N,
                               const struct dt_tensor *W, float *scratch);
// The fast frozen-linear kernels (autograd/cpu_quant.c): the generic path's loops with AVX2 row widening
// for Q8_0, Q4_0, Q4_K, NF4/FP4, bf16 and f16. Return false (and do nothing) for other types.
bool dt_cpu_quant_fwd(float *y, bool acc, const float *x, int64_t N, const struct dt_tensor *W, float *scratch);
bool dt_cpu_quant_bwd(float *dx, bool acc, const float *dy, int64_t N, const struct dt_tensor *W, float *scratch);
void dt_cpu_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps);
void dt_cpu_rmsnorm_apply(float *y, const float *x, const float *rstd, const float *w, int64_t N, int64_t D);
void dt_cpu_rmsnorm_bwd(float *dx, bool acc, const float *dy, const float *x, const float *w, const float *rstd,
                        int64_t N, int64_t D);
void dt_cpu_rope_table(float *cs, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd);
void dt_cpu_rope(float *x, const float *cs, int64_t N, int64_t H, int64_t hd, bool inverse);
size_t dt_cpu_attention_scratch_bytes(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
// Generation's attention over a KV cache (backend.h attention_cached).
void dt_cpu_attention_cached(float *out, const float *q, const float *kc, const float *vc, int64_t n, int64_t p0, int64_t H,
                             int64_t KV, int64_t hd);
void dt_cpu_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                          void *scratch);
void dt_cpu_attention_bwd(float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v, const float *dout,
                          const float *out, const float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                          void *scratch);
// The naive reference the tests compare the blocked kernel with: full T x T scores, no blocking.
void dt_cpu_attention_fwd_naive(float *out, const float *q, const float *k, const float *v,
                                const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
// Its backward (dq, dk, dv written, not accumulated), also row by row in double.
void dt_cpu_attention_bwd_naive(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                                int64_t hd);
void dt_cpu_swiglu_fwd(float *h, const float *g, const float *u, int64_t n);
void dt_cpu_swiglu_bwd(float *dg, float *du, bool acc_g, bool acc_u, const float *dh, const float *g, const float *u,
                       int64_t n);
void dt_cpu_add(float *y, const float *a, const float *b, int64_t n);
void dt_cpu_mul(float *y, bool acc, const float *a, const float *b, int64_t n);
void dt_cpu_add_bias(float *y, const float *bias, int64_t N, int64_t D);
void dt_cpu_axpy(float *y, bool acc, float alpha, const float *x, int64_t n);
void dt_cpu_dropout(float *y, bool acc, const float *x, int64_t n, float p, uint64_t seed);
double dt_cpu_xent_rows(float *logits, const int32_t *targets, int64_t n, int64_t V, float scale);
double dt_cpu_sumsq(const float *x, int64_t n);
void dt_cpu_scale(float *x, float s, int64_t n);
// Counter-based uniform in [0,1): the same (seed, i) always gives the same number, on any thread.
static inline float dt_uniform(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

#endif
