// Where a training step's time goes, by backend entry: a table that wraps another backend's, times
// every call of the entries a training step uses, and hands the call on unchanged. For the benches
// only (DT_BENCH_PROFILE=1 in bench_lora_step): the CPU tables run synchronously, so a call's wall
// time is its cost; a call made from inside an OpenMP region counts once per calling thread.
// The wrapper's impl is its own state; the wrapped table receives itself as `be`, as always.
#ifndef DT_BENCH_PROFILE_H
#define DT_BENCH_PROFILE_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "autograd/backend.h"

enum {
    PF_GEMM, PF_GEMM2, PF_FROZEN_FWD, PF_FROZEN_BWD, PF_HEAD_FWD, PF_HEAD_BWD, PF_EMBEDDING, PF_RMSNORM_FWD,
    PF_RMSNORM_APPLY, PF_RMSNORM_BWD, PF_ROPE_TABLE, PF_ROPE, PF_ATTN_FWD, PF_ATTN_BWD, PF_SWIGLU_FWD,
    PF_SWIGLU_BWD, PF_ADD, PF_MUL, PF_ADD_BIAS, PF_AXPY, PF_DROPOUT, PF_XENT, PF_SUMSQ, PF_SCALE, PF_TO_BF16,
    PF_FROM_BF16, PF_ZERO, PF_COUNT
};
static const char *const PF_NAMES[PF_COUNT] = {
    "gemm (LoRA, f32)", "gemm2 (LoRA pairs)", "frozen_fwd", "frozen_bwd", "frozen_fwd LM head", "frozen_bwd LM head",
    "embedding_fwd", "rmsnorm_fwd", "rmsnorm_apply", "rmsnorm_bwd", "rope_table", "rope", "attention_fwd",
    "attention_bwd", "swiglu_fwd", "swiglu_bwd", "add", "mul", "add_bias", "axpy", "dropout", "xent_rows", "sumsq",
    "scale", "to_bf16", "from_bf16", "zero"};

typedef struct {
    dt_backend table; // first: the wrapper is a table
    const dt_backend *in;
    int64_t vocab;    // a frozen weight with this many rows is the LM head
    long long ns[PF_COUNT], calls[PF_COUNT], elems[PF_COUNT]; // elems: of the elementwise entries
} bench_prof;

static long long pf_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
static void pf_add_n(const dt_backend *be, int k, long long t0, int64_t n) {
    bench_prof *p = be->impl;
    __atomic_fetch_add(&p->ns[k], pf_now() - t0, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p->calls[k], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p->elems[k], (long long)n, __ATOMIC_RELAXED);
}
static void pf_add(const dt_backend *be, int k, long long t0) { pf_add_n(be, k, t0, 0); }
#define PF_IN(be) (((const bench_prof *)(be)->impl)->in)
#define PF_HEAD(be, W) ((W)->shape[0] == ((const bench_prof *)(be)->impl)->vocab)

static void pf_gemm(const dt_backend *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    long long t0 = pf_now();
    PF_IN(be)->gemm(PF_IN(be), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    pf_add(be, PF_GEMM, t0);
}
static void pf_gemm2(const dt_backend *be, const dt_gemm_args *a, const dt_gemm_args *b) {
    long long t0 = pf_now();
    PF_IN(be)->gemm2(PF_IN(be), a, b);
    pf_add(be, PF_GEMM2, t0);
}
static size_t pf_frozen_scratch_bytes(const dt_backend *be, const dt_tensor *W, int64_t N) {
    return PF_IN(be)->frozen_scratch_bytes(PF_IN(be), W, N);
}
static void pf_frozen_fwd(const dt_backend *be, float *y, bool acc, const float *x, int64_t N, const dt_tensor *W,
                          void *scratch) {
    long long t0 = pf_now();
    PF_IN(be)->frozen_fwd(PF_IN(be), y, acc, x, N, W, scratch);
    pf_add(be, PF_HEAD(be, W) ? PF_HEAD_FWD : PF_FROZEN_FWD, t0);
}
static void pf_frozen_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W,
                          void *scratch) {
    long long t0 = pf_now();
    PF_IN(be)->frozen_bwd(PF_IN(be), dx, acc, dy, N, W, scratch);
    pf_add(be, PF_HEAD(be, W) ? PF_HEAD_BWD : PF_FROZEN_BWD, t0);
}
static void pf_embedding_fwd(const dt_backend *be, float *out, const int32_t *ids, int64_t n, const dt_tensor *table) {
    long long t0 = pf_now();
    PF_IN(be)->embedding_fwd(PF_IN(be), out, ids, n, table);
    pf_add(be, PF_EMBEDDING, t0);
}
static void pf_rmsnorm_fwd(const dt_backend *be, float *y, float *rstd, const float *x, const float *w, int64_t N,
                           int64_t D, float eps) {
    long long t0 = pf_now();
    PF_IN(be)->rmsnorm_fwd(PF_IN(be), y, rstd, x, w, N, D, eps);
    pf_add_n(be, PF_RMSNORM_FWD, t0, N * D);
}
static void pf_rmsnorm_apply(const dt_backend *be, float *y, const float *x, const float *rstd, const float *w,
                             int64_t N, int64_t D) {
    long long t0 = pf_now();
    PF_IN(be)->rmsnorm_apply(PF_IN(be), y, x, rstd, w, N, D);
    pf_add_n(be, PF_RMSNORM_APPLY, t0, N * D);
}
static void pf_rmsnorm_bwd(const dt_backend *be, float *dx, bool acc, const float *dy, const float *x, const float *w,
                           const float *rstd, int64_t N, int64_t D) {
    long long t0 = pf_now();
    PF_IN(be)->rmsnorm_bwd(PF_IN(be), dx, acc, dy, x, w, rstd, N, D);
    pf_add_n(be, PF_RMSNORM_BWD, t0, N * D);
}
static void pf_rope_table(const dt_backend *be, float *cs, const int32_t *pos, const float *inv_freq, int64_t N,
                          int64_t hd) {
    long long t0 = pf_now();
    PF_IN(be)->rope_table(PF_IN(be), cs, pos, inv_freq, N, hd);
    pf_add(be, PF_ROPE_TABLE, t0);
}
static void pf_rope(const dt_backend *be, float *x, const float *cs, int64_t N, int64_t H, int64_t hd, bool inverse) {
    long long t0 = pf_now();
    PF_IN(be)->rope(PF_IN(be), x, cs, N, H, hd, inverse);
    pf_add_n(be, PF_ROPE, t0, N * H * hd);
}
static size_t pf_attention_scratch_bytes(const dt_backend *be, int64_t B, int64_t T, int64_t H, int64_t KV,
                                         int64_t hd) {
    return PF_IN(be)->attention_scratch_bytes(PF_IN(be), B, T, H, KV, hd);
}
static void pf_attention_fwd(const dt_backend *be, float *out, float *lse, const float *q, const float *k,
                             const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                             int64_t hd, void *scratch) {
    long long t0 = pf_now();
    PF_IN(be)->attention_fwd(PF_IN(be), out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch);
    pf_add(be, PF_ATTN_FWD, t0);
}
static void pf_attention_bwd(const dt_backend *be, float *dq, float *dk, float *dv, bool acc_q, bool acc_k,
                             bool acc_v, const float *dout, const float *out, const float *lse, const float *q,
                             const float *k, const float *v, const int32_t *seg_start, int64_t B, int64_t T,
                             int64_t H, int64_t KV, int64_t hd, void *scratch) {
    long long t0 = pf_now();
    PF_IN(be)->attention_bwd(PF_IN(be), dq, dk, dv, acc_q, acc_k, acc_v, dout, out, lse, q, k, v, seg_start, B, T, H,
                             KV, hd, scratch);
    pf_add(be, PF_ATTN_BWD, t0);
}
static void pf_swiglu_fwd(const dt_backend *be, float *h, const float *g, const float *u, int64_t n) {
    long long t0 = pf_now();
    PF_IN(be)->swiglu_fwd(PF_IN(be), h, g, u, n);
    pf_add_n(be, PF_SWIGLU_FWD, t0, n);
}
static void pf_swiglu_bwd(const dt_backend *be, float *dg, float *du, bool acc_g, bool acc_u, const float *dh,
                          const float *g, const float *u, int64_t n) {
    long long t0 = pf_now();
    PF_IN(be)->swiglu_bwd(PF_IN(be), dg, du, acc_g, acc_u, dh, g, u, n);
    pf_add_n(be, PF_SWIGLU_BWD, t0, n);
}
static void pf_add_(const dt_backend *be, float *y, const float *a, const float *b, int64_t n) {
    long long t0 = pf_now();
    PF_IN(be)->add(PF_IN(be), y, a, b, n);
    pf_add_n(be, PF_ADD, t0, n);
}
static void pf_mul(const dt_backend *be, float *y, bool acc, const float *a, const float *b, int64_t n) {
    long long t0 = pf_now();
    PF_IN(be)->mul(PF_IN(be), y, acc, a, b, n);
    pf_add_n(be, PF_MUL, t0, n);
}
static void pf_add_bias(const dt_backend *be, float *y, const float *bias, int64_t N, int64_t D) {
    long long t0 = pf_now();
    PF_IN(be)->add_bias(PF_IN(be), y, bias, N, D);
    pf_add(be, PF_ADD_BIAS, t0);
}
static void pf_axpy(const dt_backend *be, float *y, bool acc, float alpha, const float *x, int64_t n) {
    long long t0 = pf_now();
    PF_IN(be)->axpy(PF_IN(be), y, acc, alpha, x, n);
    pf_add_n(be, PF_AXPY, t0, n);
}
static void pf_dropout(const dt_backend *be, float *y, bool acc, const float *x, int64_t n, float p, uint64_t seed) {
    long long t0 = pf_now();
    PF_IN(be)->dropout(PF_IN(be), y, acc, x, n, p, seed);
    pf_add(be, PF_DROPOUT, t0);
}
static double pf_xent_rows(const dt_backend *be, float *logits, const int32_t *targets, int64_t n, int64_t V,
                           float scale) {
    long long t0 = pf_now();
    double r = PF_IN(be)->xent_rows(PF_IN(be), logits, targets, n, V, scale);
    pf_add_n(be, PF_XENT, t0, n * V);
    return r;
}
static double pf_sumsq(const dt_backend *be, const float *x, int64_t n) {
    long long t0 = pf_now();
    double r = PF_IN(be)->sumsq(PF_IN(be), x, n);
    pf_add_n(be, PF_SUMSQ, t0, n);
    return r;
}
static void pf_scale(const dt_backend *be, float *x, float s, int64_t n) {
    long long t0 = pf_now();
    PF_IN(be)->scale(PF_IN(be), x, s, n);
    pf_add_n(be, PF_SCALE, t0, n);
}
static void pf_to_bf16(const dt_backend *be, uint16_t *dst, const float *src, int64_t n) {
    long long t0 = pf_now();
    PF_IN(be)->to_bf16(PF_IN(be), dst, src, n);
    pf_add_n(be, PF_TO_BF16, t0, n);
}
static void pf_from_bf16(const dt_backend *be, float *dst, const uint16_t *src, int64_t n) {
    long long t0 = pf_now();
    PF_IN(be)->from_bf16(PF_IN(be), dst, src, n);
    pf_add_n(be, PF_FROM_BF16, t0, n);
}
static void pf_zero(const dt_backend *be, void *p, size_t bytes) {
    long long t0 = pf_now();
    PF_IN(be)->zero(PF_IN(be), p, bytes);
    pf_add(be, PF_ZERO, t0);
}

// A profiling table over in (which must outlive it); NULL when out of memory. Entries in leaves NULL
// stay NULL, so callers that test for an optional entry see what they would see without the wrapper.
static bench_prof *bench_prof_wrap(const dt_backend *in, int64_t vocab) {
    bench_prof *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    dt_backend *t = &p->table;
    *t = *in;
    t->impl = p;
    p->in = in;
    p->vocab = vocab;
#define PF_SET(f, w) t->f = in->f ? w : NULL
    PF_SET(gemm, pf_gemm); PF_SET(gemm2, pf_gemm2); PF_SET(frozen_scratch_bytes, pf_frozen_scratch_bytes);
    PF_SET(frozen_fwd, pf_frozen_fwd); PF_SET(frozen_bwd, pf_frozen_bwd); PF_SET(embedding_fwd, pf_embedding_fwd);
    PF_SET(rmsnorm_fwd, pf_rmsnorm_fwd); PF_SET(rmsnorm_apply, pf_rmsnorm_apply); PF_SET(rmsnorm_bwd, pf_rmsnorm_bwd);
    PF_SET(rope_table, pf_rope_table); PF_SET(rope, pf_rope);
    PF_SET(attention_scratch_bytes, pf_attention_scratch_bytes); PF_SET(attention_fwd, pf_attention_fwd);
    PF_SET(attention_bwd, pf_attention_bwd); PF_SET(swiglu_fwd, pf_swiglu_fwd); PF_SET(swiglu_bwd, pf_swiglu_bwd);
    PF_SET(add, pf_add_); PF_SET(mul, pf_mul); PF_SET(add_bias, pf_add_bias); PF_SET(axpy, pf_axpy);
    PF_SET(dropout, pf_dropout); PF_SET(xent_rows, pf_xent_rows); PF_SET(sumsq, pf_sumsq); PF_SET(scale, pf_scale);
    PF_SET(to_bf16, pf_to_bf16); PF_SET(from_bf16, pf_from_bf16); PF_SET(zero, pf_zero);
#undef PF_SET
    return p;
}

static void bench_prof_reset(bench_prof *p) {
    for (int k = 0; k < PF_COUNT; k++) p->ns[k] = p->calls[k] = p->elems[k] = 0;
}

// The entries' share of `steps` steps that took step_s seconds in all (of which opt_s in the optimizer,
// outside the table), largest first; what no entry accounts for is the graph's own work.
static void bench_prof_print(const bench_prof *p, int steps, double step_s, double opt_s) {
    int order[PF_COUNT];
    for (int k = 0; k < PF_COUNT; k++) order[k] = k;
    for (int i = 1; i < PF_COUNT; i++) // insertion sort by time, descending
        for (int j = i; j > 0 && p->ns[order[j]] > p->ns[order[j - 1]]; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    double ms = 1e3 * step_s / steps, sum = 0;
    printf("  profile (ms per step, of %.1f; calls per step; elementwise entries: M elements per step, ns each):\n", ms);
    for (int i = 0; i < PF_COUNT; i++) {
        int k = order[i];
        if (!p->calls[k]) continue;
        double e = 1e-6 * (double)p->ns[k] / steps;
        sum += e;
        printf("    %-22s %8.2f ms %5.1f%% %7.0f", PF_NAMES[k], e, 100 * e / ms, (double)p->calls[k] / steps);
        if (p->elems[k]) printf(" %8.1f M %6.2f ns", 1e-6 * (double)p->elems[k] / steps, (double)p->ns[k] / (double)p->elems[k]);
        printf("\n");
    }
    double o = 1e3 * opt_s / steps;
    printf("    %-22s %8.2f ms %5.1f%%\n", "optimizer (AdamW)", o, 100 * o / ms);
    printf("    %-22s %8.2f ms %5.1f%%\n", "rest (graph, copies)", ms - sum - o, 100 * (ms - sum - o) / ms);
}
#endif
