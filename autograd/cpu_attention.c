// Causal grouped-query attention on the CPU, flash-style. The query heads that share one key/value
// head (a GQA group of G = H/KV heads) are processed together: a block of BQ query rows of each of
// the G heads is stacked into one (G*BQ, hd) matrix, so every sgemm against the group's keys and
// values is G times taller and K/V are packed once for the group instead of once per head. For each
// block the scores against the keys it can see are formed into a per-thread (G*BQ, T) scratch,
// soft-maxed and multiplied into V. Only the log-sum-exp of each row is kept; the backward recomputes
// the block's scores instead of storing a (T, T) matrix per head per layer.
// The sgemm calls run inside OpenMP regions, where the OpenMP build of OpenBLAS runs them
// single-threaded. The _bf16 entries run the same block matmuls (QK^T, PV and the backward's five) as
// oneDNN bf16 matmuls with f32 accumulation on bf16 copies of the operands, made per block in each
// thread's scratch; the softmax, its statistics and everything else stay f32.
#include <math.h>
#include <omp.h>
#include <string.h>
#include "autograd/attention_cached_row.h"
#include "autograd/cpu_bf16.h"
#include "autograd/cpu_kernels.h"
#include "autograd/cpu_math.h"

#define BQ 64

// Keys visible to row i are [seg_start[i], i]; a block sees the union, from its smallest start.
static inline int64_t row_start(const int32_t *seg, int64_t i) { return seg ? seg[i] : 0; }

static int64_t block_key_start(const int32_t *seg, int64_t i0, int64_t i1) {
    int64_t j0 = i1;
    for (int64_t i = i0; i < i1; i++) { int64_t s = row_start(seg, i); if (s < j0) j0 = s; }
    return j0;
}

// The backward splits each group's query blocks into NSLOT fixed sets of equal work; each set is one
// task that adds its dK/dV contributions into its own sums, in a fixed order, and the sums are added
// up in a fixed order too: the result does not depend on the thread count or the schedule.
#define NSLOT 2

// Per-thread scratch: S and dP (G*BQ, T), the stacked block of Q and of dO or O (G*BQ, hd) each, D (G*BQ);
// with bf16, then the bf16 copies of a matmul's operands: A up to (G*BQ, T), B up to (max(T, G*BQ), hd).
static size_t bf16_a_elems(int64_t T, int64_t G) { return (size_t)G * BQ * (size_t)T; }
static size_t per_thread_floats(int64_t T, int64_t G, int64_t hd, bool bf16) {
    size_t rows = (size_t)G * BQ, n = 2 * rows * (size_t)T + 2 * rows * (size_t)hd + rows;
    size_t bmax = (size_t)(T > G * BQ ? T : G * BQ) * (size_t)hd;
    n = (n + 15) & ~(size_t)15; // the bf16 copies start 64-byte aligned
    return bf16 ? n + ((bf16_a_elems(T, G) + bmax + 31) & ~(size_t)31) / 2 : n;
}

static size_t scratch_bytes(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, bool bf16) {
    size_t sums = (size_t)B * KV * NSLOT * 2 * T * hd; // (B, KV, NSLOT, 2, T, hd): dK and dV sums per task
    return ((size_t)omp_get_max_threads() * per_thread_floats(T, H / KV, hd, bf16) + sums) * sizeof(float);
}
size_t dt_cpu_attention_scratch_bytes(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    return scratch_bytes(B, T, H, KV, hd, false);
}
size_t dt_cpu_attention_bf16_scratch_bytes(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    return scratch_bytes(B, T, H, KV, hd, true);
}

// How one thread runs the block matmuls: sgemm (mm NULL), or oneDNN bf16 on copies made in wa / wb.
typedef struct {
    dt_bf16_mm *mm;
    uint16_t *wa, *wb;
} block_mm;

static block_mm thread_mm(dt_bf16_mm *mm, float *ws, int64_t T, int64_t G, int64_t hd) {
    if (!mm) return (block_mm){NULL, NULL, NULL};
    size_t off = per_thread_floats(T, G, hd, false);
    uint16_t *wa = (uint16_t *)(ws + off);
    return (block_mm){mm, wa, wa + ((bf16_a_elems(T, G) + 31) & ~(size_t)31)};
}

// dst (rows, cols) contiguous = bf16 of src (rows, cols), rows ld apart.
static void to_bf16_2d(uint16_t *dst, const float *src, int64_t rows, int64_t cols, int64_t ld) {
    for (int64_t r = 0; r < rows; r++) dt_f32_to_bf16_row(dst + r * cols, src + r * ld, cols);
}

// C = alpha op(A) op(B) + beta C, beta 0 or 1, as dt_cpu_gemm.
static void bgemm(const block_mm *c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (c->mm) {
        int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N; // stored shapes
        to_bf16_2d(c->wa, A, ar, ac, lda);
        to_bf16_2d(c->wb, B, br, bc, ldb);
        if (dt_bf16_matmul(c->mm, ta, tb, M, N, K, alpha, c->wa, ac, c->wb, bc, beta != 0.0f, C, ldc) == DT_OK) return;
    }
    dt_cpu_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Query block number k of set `slot` (or -1 past its end). Blocks are paired first with last, second
// with second-to-last, ..., so every pair costs about the same under the causal mask; pair p goes to
// set p % NSLOT, the wider block of a pair first.
static int64_t slot_block(int64_t nblk, int slot, int64_t k) {
    int64_t pair = (k / 2) * NSLOT + slot, lo = pair, hi = nblk - 1 - pair;
    if (lo > hi) return -1;
    if (k % 2 == 0) return hi;
    return lo < hi ? lo : -1;
}

// Copies rows i0..i1 of the G heads of group g out of x (rows stride ld) into X (G*nr, hd), head-major.
static void stack_rows(float *X, const float *x, int64_t ld, int64_t i0, int64_t nr, int64_t g, int64_t G,
                       int64_t hd) {
    for (int64_t h = 0; h < G; h++)
        for (int64_t r = 0; r < nr; r++)
            memcpy(X + (h * nr + r) * hd, x + (i0 + r) * ld + (g * G + h) * hd, (size_t)hd * sizeof(float));
}

// S (G*nr, nc) = scale Q K[j0:i1]^T. Row r of each head sees columns [visible_lo, visible_hi) of S;
// the kernels below read only those and write zeros elsewhere.
static void block_scores(const block_mm *c, float *S, const float *Q, const float *kg, int64_t ldk, int64_t nr,
                         int64_t j0, int64_t nc, int64_t G, int64_t hd, float scale) {
    bgemm(c, false, true, G * nr, nc, hd, scale, Q, hd, kg + j0 * ldk, ldk, 0.0f, S, nc);
}
static inline int64_t visible_lo(const int32_t *seg, int64_t i, int64_t j0) { return row_start(seg, i) - j0; }
static inline int64_t visible_hi(int64_t i, int64_t j0) { return i - j0 + 1; }

// s[c] = exp(s[c] - m) on [lo, hi), 0 elsewhere (nc columns); returns the sum.
static inline float exp_row(float *s, int64_t lo, int64_t hi, int64_t nc, float m) {
    float sum = 0;
    for (int64_t c = 0; c < lo; c++) s[c] = 0.0f;
    #pragma omp simd reduction(+ : sum)
    for (int64_t c = lo; c < hi; c++) { s[c] = dt_expf(s[c] - m); sum += s[c]; }
    for (int64_t c = hi; c < nc; c++) s[c] = 0.0f;
    return sum;
}

static void attention_fwd(dt_bf16_mm *mm, float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                          void *scratch) {
    const int64_t nblk = (T + BQ - 1) / BQ, G = H / KV;
    const int64_t ldq = H * hd, ldk = KV * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t per_thread = per_thread_floats(T, G, hd, mm != NULL);
    // Blocks in reverse: the late (widest) blocks start first, which balances the dynamic schedule.
    #pragma omp parallel for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < KV; g++)
            for (int64_t rb = 0; rb < nblk; rb++) {
                float *S = (float *)scratch + (size_t)omp_get_thread_num() * per_thread; // (G*BQ, T)
                float *Q = S + 2 * (size_t)G * BQ * T;                                   // (G*BQ, hd)
                float *O = Q + (size_t)G * BQ * hd;                                      // (G*BQ, hd)
                const block_mm bm = thread_mm(mm, S, T, G, hd);
                const int32_t *seg = seg_start ? seg_start + b * T : NULL;
                const float *kg = k + b * T * ldk + g * hd, *vg = v + b * T * ldk + g * hd; // rows stride ldk
                int64_t blk = nblk - 1 - rb, i0 = blk * BQ, i1 = i0 + BQ < T ? i0 + BQ : T, nr = i1 - i0;
                int64_t j0 = block_key_start(seg, i0, i1), nc = i1 - j0;
                stack_rows(Q, q + b * T * ldq, ldq, i0, nr, g, G, hd);
                block_scores(&bm, S, Q, kg, ldk, nr, j0, nc, G, hd, scale);
                float *inv = O + (size_t)G * BQ * hd; // (G*nr): 1 / row sum, applied to the output rows
                for (int64_t h = 0; h < G; h++)
                    for (int64_t r = 0; r < nr; r++) {
                        int64_t lo = visible_lo(seg, i0 + r, j0), hi = visible_hi(i0 + r, j0);
                        float *s = S + (h * nr + r) * nc, m = -INFINITY;
                        #pragma omp simd reduction(max : m)
                        for (int64_t c = lo; c < hi; c++) m = s[c] > m ? s[c] : m;
                        float sum = exp_row(s, lo, hi, nc, m);
                        inv[h * nr + r] = 1.0f / sum;
                        lse[(b * H + g * G + h) * T + i0 + r] = m + logf(sum);
                    }
                // O = (exp(S - m) V) / sum: the division is applied to the (G*nr, hd) result, not to S.
                bgemm(&bm, false, false, G * nr, hd, nc, 1.0f, S, nc, vg + j0 * ldk, ldk, 0.0f, O, hd);
                for (int64_t h = 0; h < G; h++)
                    for (int64_t r = 0; r < nr; r++) {
                        float *dst = out + (b * T + i0 + r) * ldq + (g * G + h) * hd, f = inv[h * nr + r];
                        const float *src = O + (h * nr + r) * hd;
                        #pragma omp simd
                        for (int64_t e = 0; e < hd; e++) dst[e] = src[e] * f;
                    }
            }
}

void dt_cpu_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                          void *scratch) {
    attention_fwd(NULL, out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch);
}
void dt_cpu_attention_fwd_bf16(dt_bf16_mm *mm, float *out, float *lse, const float *q, const float *k, const float *v,
                               const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                               void *scratch) {
    attention_fwd(mm, out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch);
}

// One query block of group g in the backward: dQ of its rows (written or added into dq), and its
// contributions to the group's dK and dV, added into the calling thread's sums dKt, dVt (T, hd).
static void block_bwd(const block_mm *bm, float *dq, bool acc_q, float *dKt, float *dVt, const float *dout, const float *out,
                      const float *lse, const float *q, const float *kg, const float *vg, const int32_t *seg,
                      int64_t T, int64_t H, int64_t G, int64_t g, int64_t ldk, int64_t hd, int64_t blk, float *ws) {
    const int64_t ldq = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    int64_t i0 = blk * BQ, i1 = i0 + BQ < T ? i0 + BQ : T, nr = i1 - i0, rows = G * nr;
    int64_t j0 = block_key_start(seg, i0, i1), nc = i1 - j0;
    float *S = ws, *dP = S + (size_t)G * BQ * T;            // (G*nr, nc) each
    float *Q = dP + (size_t)G * BQ * T, *dO = Q + (size_t)G * BQ * hd; // (G*nr, hd) each
    float *D = dO + (size_t)G * BQ * hd;                     // (G*nr)
    stack_rows(Q, q, ldq, i0, nr, g, G, hd);
    stack_rows(dO, dout, ldq, i0, nr, g, G, hd);
    block_scores(bm, S, Q, kg, ldk, nr, j0, nc, G, hd, scale);
    for (int64_t h = 0; h < G; h++)
        for (int64_t r = 0; r < nr; r++) {
            float *s = S + (h * nr + r) * nc, l = lse[(g * G + h) * T + i0 + r];
            exp_row(s, visible_lo(seg, i0 + r, j0), visible_hi(i0 + r, j0), nc, l); // P, 0 where masked
            const float *o = out + (i0 + r) * ldq + (g * G + h) * hd, *d = dO + (h * nr + r) * hd;
            float acc = 0;
            #pragma omp simd reduction(+ : acc)
            for (int64_t e = 0; e < hd; e++) acc += o[e] * d[e];
            D[h * nr + r] = acc;
        }
    // dP = dO V^T ; dV += P^T dO ; dS = P * (dP - D) ; dQ = scale dS K ; dK += scale dS^T Q.
    // The transposed products sum over the G stacked heads, which is the group's sum for dK and dV.
    bgemm(bm, false, true, rows, nc, hd, 1.0f, dO, hd, vg + j0 * ldk, ldk, 0.0f, dP, nc);
    bgemm(bm, true, false, nc, hd, rows, 1.0f, S, nc, dO, hd, 1.0f, dVt + j0 * hd, hd);
    for (int64_t r = 0; r < rows; r++) {
        float *s = S + r * nc, *dp = dP + r * nc, d = D[r];
        #pragma omp simd
        for (int64_t c = 0; c < nc; c++) s[c] *= dp[c] - d;
    }
    bgemm(bm, true, false, nc, hd, rows, scale, S, nc, Q, hd, 1.0f, dKt + j0 * hd, hd);
    if (!dq) return;
    bgemm(bm, false, false, rows, hd, nc, scale, S, nc, kg + j0 * ldk, ldk, 0.0f, Q, hd); // Q now holds dQ
    for (int64_t h = 0; h < G; h++)
        for (int64_t r = 0; r < nr; r++) {
            float *dst = dq + (i0 + r) * ldq + (g * G + h) * hd;
            const float *src = Q + (h * nr + r) * hd;
            if (acc_q) {
                #pragma omp simd
                for (int64_t e = 0; e < hd; e++) dst[e] += src[e];
            } else {
                memcpy(dst, src, (size_t)hd * sizeof(float));
            }
        }
}

static void attention_bwd(dt_bf16_mm *mm, float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v,
                          const float *dout, const float *out, const float *lse, const float *q, const float *k,
                          const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                          int64_t hd, void *scratch) {
    const int64_t nblk = (T + BQ - 1) / BQ, G = H / KV;
    const int64_t ldq = H * hd, ldk = KV * hd;
    const size_t per_thread = per_thread_floats(T, G, hd, mm != NULL), pair = 2 * (size_t)T * hd;
    float *sums = (float *)scratch + (size_t)omp_get_max_threads() * per_thread; // (B, KV, NSLOT, 2, T, hd)
    #pragma omp parallel for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < KV; g++)
            for (int slot = 0; slot < NSLOT; slot++) {
                float *ws = (float *)scratch + (size_t)omp_get_thread_num() * per_thread;
                const block_mm bm = thread_mm(mm, ws, T, G, hd);
                float *dKt = sums + ((size_t)(b * KV + g) * NSLOT + slot) * pair, *dVt = dKt + (size_t)T * hd;
                memset(dKt, 0, pair * sizeof(float));
                for (int64_t n = 0, blk; (blk = slot_block(nblk, slot, n)) >= 0; n++)
                    block_bwd(&bm, dq ? dq + b * T * ldq : NULL, acc_q, dKt, dVt, dout + b * T * ldq, out + b * T * ldq,
                              lse + b * H * T, q + b * T * ldq, k + b * T * ldk + g * hd, v + b * T * ldk + g * hd,
                              seg_start ? seg_start + b * T : NULL, T, H, G, g, ldk, hd, blk, ws);
            }
    #pragma omp parallel for collapse(3)
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < KV; g++)
            for (int64_t t = 0; t < T; t++) {
                const float *s0 = sums + (size_t)(b * KV + g) * NSLOT * pair + (size_t)t * hd;
                float *dkr = dk ? dk + (b * T + t) * ldk + g * hd : NULL, *dvr = dv ? dv + (b * T + t) * ldk + g * hd : NULL;
                for (int64_t e = 0; e < hd; e++) {
                    float sk = 0, sv = 0;
                    for (int slot = 0; slot < NSLOT; slot++) {
                        sk += s0[slot * pair + e];
                        sv += s0[slot * pair + (size_t)T * hd + e];
                    }
                    if (dkr) dkr[e] = acc_k ? dkr[e] + sk : sk;
                    if (dvr) dvr[e] = acc_v ? dvr[e] + sv : sv;
                }
            }
}

void dt_cpu_attention_bwd(float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v, const float *dout,
                          const float *out, const float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                          void *scratch) {
    attention_bwd(NULL, dq, dk, dv, acc_q, acc_k, acc_v, dout, out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch);
}
void dt_cpu_attention_bwd_bf16(dt_bf16_mm *mm, float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v,
                               const float *dout, const float *out, const float *lse, const float *q, const float *k,
                               const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                               int64_t hd, void *scratch) {
    attention_bwd(mm, dq, dk, dv, acc_q, acc_k, acc_v, dout, out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch);
}

// Row i of head h, in double: p[j] = softmax_j(q_i . k_j * scale) over the visible keys j in [lo, i];
// returns lo.
static int64_t naive_probs(double *p, const float *q, const float *k, const int32_t *seg_start, int64_t b, int64_t h,
                           int64_t i, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const int64_t group = H / KV;
    const double scale = 1.0 / sqrt((double)hd);
    const float *qi = q + ((b * T + i) * H + h) * hd;
    double m = -INFINITY, sum = 0;
    int64_t lo = seg_start ? seg_start[b * T + i] : 0;
    for (int64_t j = lo; j <= i; j++) {
        const float *kj = k + ((b * T + j) * KV + h / group) * hd;
        double s = 0;
        for (int64_t e = 0; e < hd; e++) s += (double)qi[e] * kj[e];
        p[j] = s * scale;
        if (p[j] > m) m = p[j];
    }
    for (int64_t j = lo; j <= i; j++) { p[j] = exp(p[j] - m); sum += p[j]; }
    for (int64_t j = lo; j <= i; j++) p[j] /= sum;
    return lo;
}

void dt_cpu_attention_fwd_naive(float *out, const float *q, const float *k, const float *v,
                                const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const int64_t group = H / KV;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                double p[T];
                int64_t lo = naive_probs(p, q, k, seg_start, b, h, i, T, H, KV, hd);
                float *o = out + ((b * T + i) * H + h) * hd;
                for (int64_t e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int64_t j = lo; j <= i; j++) acc += p[j] * v[((b * T + j) * KV + h / group) * hd + e];
                    o[e] = (float)acc;
                }
            }
}

void dt_cpu_attention_bwd_naive(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                                int64_t hd) {
    const int64_t group = H / KV;
    const double scale = 1.0 / sqrt((double)hd);
    memset(dq, 0, (size_t)B * T * H * hd * sizeof(float));
    memset(dk, 0, (size_t)B * T * KV * hd * sizeof(float));
    memset(dv, 0, (size_t)B * T * KV * hd * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                const float *qi = q + ((b * T + i) * H + h) * hd, *doi = dout + ((b * T + i) * H + h) * hd;
                double p[T], dp[T], dot = 0;
                int64_t lo = naive_probs(p, q, k, seg_start, b, h, i, T, H, KV, hd);
                // dP_j = dO . v_j ; dS_j = P_j (dP_j - sum_j' P_j' dP_j')
                for (int64_t j = lo; j <= i; j++) {
                    const float *vj = v + ((b * T + j) * KV + h / group) * hd;
                    double s = 0;
                    for (int64_t e = 0; e < hd; e++) s += (double)doi[e] * vj[e];
                    dp[j] = s;
                    dot += p[j] * s;
                }
                for (int64_t j = lo; j <= i; j++) {
                    float *dkj = dk + ((b * T + j) * KV + h / group) * hd, *dvj = dv + ((b * T + j) * KV + h / group) * hd;
                    const float *kj = k + ((b * T + j) * KV + h / group) * hd;
                    double ds = p[j] * (dp[j] - dot) * scale;
                    for (int64_t e = 0; e < hd; e++) {
                        dq[((b * T + i) * H + h) * hd + e] += (float)(ds * kj[e]);
                        dkj[e] += (float)(ds * qi[e]);
                        dvj[e] += (float)(p[j] * doi[e]);
                    }
                }
            }
}

// out (n, H*hd): causal attention of n new queries at positions p0.. over cached keys 0..p0+n-1, one pass
// with a running max (online softmax), so no (len) buffer is needed. kc/vc (>= p0+n, KV*hd).
void dt_cpu_attention_cached(float *out, const float *q, const float *kc, const float *vc, int64_t n, int64_t p0, int64_t H,
                             int64_t KV, int64_t hd) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t group = H / KV;
    #pragma omp parallel for collapse(2)
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t gq = h / group;
            dt_attention_cached_row(out + (i * H + h) * hd, q + (i * H + h) * hd, kc + gq * hd, vc + gq * hd, p0 + i + 1,
                                    KV * hd, hd, scale);
        }
}
