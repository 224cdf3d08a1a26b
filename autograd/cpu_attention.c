// Causal grouped-query attention on the CPU, flash-style: queries are processed in row blocks of BQ;
// for each block the scores against the keys it can see are formed with one sgemm into a per-thread
// (BQ, T) scratch, soft-maxed, and multiplied into V. Only the log-sum-exp of each row is kept; the
// backward recomputes the block's scores instead of storing a (T, T) matrix per head per layer.
// Work is spread over (batch, head, row block) with OpenMP; the sgemm calls inside run single-threaded
// (the OpenMP build of OpenBLAS does that inside a parallel region).
#include <math.h>
#include <omp.h>
#include <string.h>
#include "autograd/cpu_kernels.h"
#include "autograd/cpu_math.h"

#define BQ 64

// Keys visible to row i are [seg_start[i], i]; a block sees the union, from its smallest start.
static inline int64_t row_start(const int32_t *seg, int64_t i) { return seg ? seg[i] : 0; }

size_t dt_cpu_attention_scratch_bytes(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    (void)KV;
    size_t per_thread = (size_t)2 * BQ * (size_t)T + BQ; // S, dP, D
    size_t partial = (size_t)2 * B * H * T * hd;           // per-query-head dK, dV before the group sum
    return ((size_t)omp_get_max_threads() * per_thread + partial) * sizeof(float);
}

// Fills S (rows i0..i1, cols j0..i1) with masked scaled scores; returns the column count.
static int64_t block_scores(float *S, const float *qh, const float *kg, int64_t ldq, int64_t ldk, int64_t i0,
                            int64_t i1, int64_t j0, int64_t hd, float scale, const int32_t *seg) {
    int64_t nc = i1 - j0, nr = i1 - i0;
    dt_cpu_gemm(false, true, nr, nc, hd, scale, qh + i0 * ldq, ldq, kg + j0 * ldk, ldk, 0.0f, S, nc);
    for (int64_t r = 0; r < nr; r++) {
        int64_t i = i0 + r, lo = row_start(seg, i) - j0;
        float *s = S + r * nc;
        for (int64_t c = 0; c < lo; c++) s[c] = -INFINITY;
        for (int64_t c = i - j0 + 1; c < nc; c++) s[c] = -INFINITY;
    }
    return nc;
}

static int64_t block_key_start(const int32_t *seg, int64_t i0, int64_t i1) {
    int64_t j0 = i1;
    for (int64_t i = i0; i < i1; i++) { int64_t s = row_start(seg, i); if (s < j0) j0 = s; }
    return j0;
}

void dt_cpu_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                          void *scratch) {
    const int64_t nblk = (T + BQ - 1) / BQ, group = H / KV;
    const int64_t ldq = H * hd, ldk = KV * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t per_thread = (size_t)2 * BQ * (size_t)T + BQ;
    #pragma omp parallel for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t blk = 0; blk < nblk; blk++) {
                float *S = (float *)scratch + (size_t)omp_get_thread_num() * per_thread; // (BQ, T)
                const int32_t *seg = seg_start ? seg_start + b * T : NULL;
                const float *qh = q + b * T * ldq + h * hd;           // rows stride ldq
                const float *kg = k + b * T * ldk + (h / group) * hd; // rows stride ldk
                const float *vg = v + b * T * ldk + (h / group) * hd;
                int64_t i0 = blk * BQ, i1 = i0 + BQ < T ? i0 + BQ : T;
                int64_t j0 = block_key_start(seg, i0, i1);
                int64_t nc = block_scores(S, qh, kg, ldq, ldk, i0, i1, j0, hd, scale, seg);
                for (int64_t r = 0; r < i1 - i0; r++) {
                    float *s = S + r * nc, m = -INFINITY, sum = 0;
                    #pragma omp simd reduction(max : m)
                    for (int64_t c = 0; c < nc; c++) m = s[c] > m ? s[c] : m;
                    #pragma omp simd reduction(+ : sum)
                    for (int64_t c = 0; c < nc; c++) { s[c] = dt_expf(s[c] - m); sum += s[c]; }
                    float inv = 1.0f / sum;
                    #pragma omp simd
                    for (int64_t c = 0; c < nc; c++) s[c] *= inv;
                    lse[(b * H + h) * T + i0 + r] = m + logf(sum);
                }
                dt_cpu_gemm(false, false, i1 - i0, hd, nc, 1.0f, S, nc, vg + j0 * ldk, ldk, 0.0f,
                            out + b * T * ldq + i0 * ldq + h * hd, ldq);
            }
}

void dt_cpu_attention_bwd(float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v, const float *dout,
                          const float *out, const float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                          void *scratch) {
    const int64_t nblk = (T + BQ - 1) / BQ, group = H / KV;
    const int64_t ldq = H * hd, ldk = KV * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t per_thread = (size_t)2 * BQ * (size_t)T + BQ;
    float *partial = (float *)scratch + (size_t)omp_get_max_threads() * per_thread; // (2, B, H, T, hd)
    const size_t pstride = (size_t)T * hd;
    // Each (b, h) task owns its dK/dV partials, so row blocks of one head can accumulate without races.
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            float *S = (float *)scratch + (size_t)omp_get_thread_num() * per_thread; // (BQ, T)
            float *dP = S + (size_t)BQ * T;                                          // (BQ, T)
            float *D = dP + (size_t)BQ * T;                                          // (BQ)
            float *dKp = partial + (size_t)(b * H + h) * pstride;                    // (T, hd)
            float *dVp = partial + (size_t)(B * H + b * H + h) * pstride;            // (T, hd)
            const int32_t *seg = seg_start ? seg_start + b * T : NULL;
            const float *qh = q + b * T * ldq + h * hd, *oh = out + b * T * ldq + h * hd;
            const float *doh = dout + b * T * ldq + h * hd;
            const float *kg = k + b * T * ldk + (h / group) * hd, *vg = v + b * T * ldk + (h / group) * hd;
            const float *lh = lse + (b * H + h) * T;
            memset(dKp, 0, pstride * sizeof(float));
            memset(dVp, 0, pstride * sizeof(float));
            for (int64_t blk = 0; blk < nblk; blk++) {
                int64_t i0 = blk * BQ, i1 = i0 + BQ < T ? i0 + BQ : T, nr = i1 - i0;
                int64_t j0 = block_key_start(seg, i0, i1);
                int64_t nc = block_scores(S, qh, kg, ldq, ldk, i0, i1, j0, hd, scale, seg);
                for (int64_t r = 0; r < nr; r++) {
                    float *s = S + r * nc, l = lh[i0 + r];
                    #pragma omp simd
                    for (int64_t c = 0; c < nc; c++) s[c] = dt_expf(s[c] - l); // P, exactly 0 where masked
                    const float *o = oh + (i0 + r) * ldq, *d = doh + (i0 + r) * ldq;
                    float acc = 0;
                    for (int64_t e = 0; e < hd; e++) acc += o[e] * d[e];
                    D[r] = acc;
                }
                // dP = dO V^T ; dS = P * (dP - D) ; dQ = scale dS K ; dK += scale dS^T Q ; dV += P^T dO
                dt_cpu_gemm(false, true, nr, nc, hd, 1.0f, doh + i0 * ldq, ldq, vg + j0 * ldk, ldk, 0.0f, dP, nc);
                dt_cpu_gemm(true, false, nc, hd, nr, 1.0f, S, nc, doh + i0 * ldq, ldq, 1.0f, dVp + j0 * hd, hd);
                for (int64_t r = 0; r < nr; r++) {
                    float *s = S + r * nc, *dp = dP + r * nc, d = D[r];
                    #pragma omp simd
                    for (int64_t c = 0; c < nc; c++) s[c] *= dp[c] - d;
                }
                if (dq)
                    dt_cpu_gemm(false, false, nr, hd, nc, scale, S, nc, kg + j0 * ldk, ldk, acc_q ? 1.0f : 0.0f,
                                dq + b * T * ldq + i0 * ldq + h * hd, ldq);
                dt_cpu_gemm(true, false, nc, hd, nr, scale, S, nc, qh + i0 * ldq, ldq, 1.0f, dKp + j0 * hd, hd);
            }
        }
    // Sum the per-head partials into each key/value head of the group.
    #pragma omp parallel for collapse(3)
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < KV; g++)
            for (int64_t t = 0; t < T; t++) {
                float *dkr = dk ? dk + (b * T + t) * ldk + g * hd : NULL, *dvr = dv ? dv + (b * T + t) * ldk + g * hd : NULL;
                for (int64_t e = 0; e < hd; e++) {
                    float sk = 0, sv = 0;
                    for (int64_t j = 0; j < group; j++) {
                        size_t hh = (size_t)(b * H + g * group + j);
                        sk += partial[hh * pstride + t * hd + e];
                        sv += partial[(size_t)(B * H) * pstride + hh * pstride + t * hd + e];
                    }
                    if (dkr) dkr[e] = acc_k ? dkr[e] + sk : sk;
                    if (dvr) dvr[e] = acc_v ? dvr[e] + sv : sv;
                }
            }
}

void dt_cpu_attention_fwd_naive(float *out, const float *q, const float *k, const float *v,
                                const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const int64_t group = H / KV;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                const float *qi = q + ((b * T + i) * H + h) * hd;
                double m = -INFINITY, sum = 0, p[T];
                int64_t lo = seg_start ? seg_start[b * T + i] : 0;
                for (int64_t j = lo; j <= i; j++) {
                    const float *kj = k + ((b * T + j) * KV + h / group) * hd;
                    double s = 0;
                    for (int64_t e = 0; e < hd; e++) s += (double)qi[e] * kj[e];
                    p[j] = s * scale;
                    if (p[j] > m) m = p[j];
                }
                for (int64_t j = lo; j <= i; j++) { p[j] = exp(p[j] - m); sum += p[j]; }
                float *o = out + ((b * T + i) * H + h) * hd;
                for (int64_t e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int64_t j = lo; j <= i; j++) acc += p[j] / sum * v[((b * T + j) * KV + h / group) * hd + e];
                    o[e] = (float)acc;
                }
            }
}
