// The backend table: one struct of function pointers per device. The op layer (ops_*.c) does shapes,
// the tape and gradient bookkeeping, and calls only these kernels, so a CUDA table can be added beside
// the CPU one without touching models/ or peft/. All pointers are device pointers of that backend.
// Row-major everywhere. "acc" arguments: false = overwrite the destination, true = add into it.
#ifndef DT_BACKEND_H
#define DT_BACKEND_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/dtype.h"
#include "autograd/tensor.h"

// The arguments of one gemm call (see dt_backend.gemm), for gemm2.
typedef struct dt_gemm_args {
    bool ta, tb;
    int64_t M, N, K;
    float alpha;
    const float *A;
    int64_t lda;
    const float *B;
    int64_t ldb;
    float beta;
    float *C;
    int64_t ldc;
} dt_gemm_args;

typedef struct dt_backend dt_backend;
struct dt_backend {
    const char *name;
    dt_device device;
    void *impl; // the instance's state (streams, handles, caches); NULL for the CPU table
    void *(*alloc)(const dt_backend *be, size_t bytes);
    void (*free)(const dt_backend *be, void *p);
    void (*upload)(const dt_backend *be, void *dst, const void *host_src, size_t bytes);   // host -> device
    void (*download)(const dt_backend *be, void *host_dst, const void *src, size_t bytes); // device -> host
    void (*zero)(const dt_backend *be, void *p, size_t bytes);

    // C (M,N) = alpha * op(A) * op(B) + beta * C; op(A) is (M,K), op(B) is (K,N).
    void (*gemm)(const dt_backend *be, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

    // Optional (NULL: callers use dt_gemm_pair, which then calls gemm twice): two independent gemms,
    // neither reading nor writing the other's C. The CPU runs them at once on two threads, each
    // single-threaded: the thin LoRA products (rank r) are bound by packing their large operand, which
    // one thread does as fast as two, so a pair costs about as much as one of them.
    void (*gemm2)(const dt_backend *be, const dt_gemm_args *a, const dt_gemm_args *b);

    // The frozen-linear entry: the one way any frozen weight W (out, in), of any storage type the
    // backend supports (autograd/dtype.h), meets an activation. Never dW. Each backend dispatches on
    // W->dtype; a type without a fast kernel takes a generic path (dequantize a panel of rows, gemm).
    // Scratch the two calls below need for this weight and N rows (0 when none).
    size_t (*frozen_scratch_bytes)(const dt_backend *be, const dt_tensor *W, int64_t N);
    // y (N, out) = x (N, in) W^T (+ y when acc)
    void (*frozen_fwd)(const dt_backend *be, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W,
                       void *scratch);
    // dx (N, in) = dy (N, out) W (+ dx when acc)
    void (*frozen_bwd)(const dt_backend *be, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W,
                       void *scratch);
    // out (n, D) = rows ids[i] of table (V, D), any storage type, as f32
    void (*embedding_fwd)(const dt_backend *be, float *out, const int32_t *ids, int64_t n, const dt_tensor *table);
    // y (N, D) = x * rstd * w ; rstd (N) saved for the backward
    void (*rmsnorm_fwd)(const dt_backend *be, float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps);
    // y (N, D) = x * rstd * w from a saved rstd (recomputing a normalised input in a backward)
    void (*rmsnorm_apply)(const dt_backend *be, float *y, const float *x, const float *rstd, const float *w, int64_t N, int64_t D);
    void (*rmsnorm_bwd)(const dt_backend *be, float *dx, bool acc, const float *dy, const float *x, const float *w, const float *rstd,
                        int64_t N, int64_t D);
    // cs (N, hd): for each position, cos then sin of pos * inv_freq (hd/2 each, angle in double); pos (N),
    // inv_freq (hd/2). Made once per forward and shared by every layer's q and k, forward and backward.
    void (*rope_table)(const dt_backend *be, float *cs, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd);
    // In place on x (N, H, hd), rotate-half layout, by the angles of cs (N, hd) from rope_table.
    // inverse=true rotates by -angle.
    void (*rope)(const dt_backend *be, float *x, const float *cs, int64_t N, int64_t H, int64_t hd, bool inverse);
    // Causal grouped-query attention. q (B,T,H,hd), k/v (B,T,KV,hd), out (B,T,H,hd), lse (B,H,T).
    // seg_start (B,T) or NULL: first position of the example each position belongs to (packing).
    // Only lse is kept for the backward, which recomputes the scores block by block (flash-style).
    // scratch: attention_scratch_bytes(...) bytes of device memory, reused across calls.
    size_t (*attention_scratch_bytes)(const dt_backend *be, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
    void (*attention_fwd)(const dt_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                          void *scratch);
    // dq/dk/dv (same shapes as q/k/v), accumulated into when acc.
    void (*attention_bwd)(const dt_backend *be, float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v,
                          const float *dout, const float *out, const float *lse, const float *q, const float *k,
                          const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                          int64_t hd, void *scratch);
    // Generation: out (n, H*hd) = causal attention of n new queries q (n, H*hd) at positions p0.. over the
    // cached keys/values kc, vc (>= p0+n rows of KV*hd; the new rows already written), forward only.
    void (*attention_cached)(const dt_backend *be, float *out, const float *q, const float *kc, const float *vc,
                             int64_t n, int64_t p0, int64_t H, int64_t KV, int64_t hd);
    // h (n) = silu(g) * u
    void (*swiglu_fwd)(const dt_backend *be, float *h, const float *g, const float *u, int64_t n);
    void (*swiglu_bwd)(const dt_backend *be, float *dg, float *du, bool acc_g, bool acc_u, const float *dh, const float *g, const float *u,
                       int64_t n);
    // y = a + b; y = a * b (+ y when acc); axpy: y = alpha * x + (acc ? y : 0) (n elements)
    void (*add)(const dt_backend *be, float *y, const float *a, const float *b, int64_t n);
    void (*mul)(const dt_backend *be, float *y, bool acc, const float *a, const float *b, int64_t n);
    // y (N, D) += bias (D) on every row
    void (*add_bias)(const dt_backend *be, float *y, const float *bias, int64_t N, int64_t D);
    void (*axpy)(const dt_backend *be, float *y, bool acc, float alpha, const float *x, int64_t n);
    // y = x * keep / (1-p), keep drawn from a counter-based RNG of (seed, index), so the backward
    // regenerates the mask instead of storing it. Used for both directions.
    void (*dropout)(const dt_backend *be, float *y, bool acc, const float *x, int64_t n, float p, uint64_t seed);
    // Cross-entropy over rows of logits (n, V) in place: returns sum of losses of rows with target >= 0 and
    // replaces each row by scale * (softmax - onehot) (zero for ignored rows).
    double (*xent_rows)(const dt_backend *be, float *logits, const int32_t *targets, int64_t n, int64_t V, float scale);
    // sum of squares of n floats (for gradient clipping), in double
    double (*sumsq)(const dt_backend *be, const float *x, int64_t n);
    void (*scale)(const dt_backend *be, float *x, float s, int64_t n);
    // Optional (NULL: activations stay f32): dst (n) = bf16 of src, and back. A backend with them runs
    // compact graphs (graph.h), which keep the values a backward reads in bf16.
    void (*to_bf16)(const dt_backend *be, uint16_t *dst, const float *src, int64_t n);
    void (*from_bf16)(const dt_backend *be, float *dst, const uint16_t *src, int64_t n);
};

const dt_backend *dt_backend_cpu(void);

static inline void dt_gemm_one(const dt_backend *be, const dt_gemm_args *a) {
    be->gemm(be, a->ta, a->tb, a->M, a->N, a->K, a->alpha, a->A, a->lda, a->B, a->ldb, a->beta, a->C, a->ldc);
}

// Runs a and b (independent, see gemm2) with the backend's gemm2 when it has one, else one after the other.
static inline void dt_gemm_pair(const dt_backend *be, const dt_gemm_args *a, const dt_gemm_args *b) {
    if (be->gemm2) {
        be->gemm2(be, a, b);
        return;
    }
    dt_gemm_one(be, a);
    dt_gemm_one(be, b);
}

#endif
