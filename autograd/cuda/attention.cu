// Causal grouped-query attention on the GPU, flash-style: the (T, T) score matrix never exists. Queries
// and keys are cut into square tiles of TL rows held in shared memory.
//  - forward: a block owns TL query rows of one head and sweeps the key tiles those rows can see, with an
//    online softmax (running max m, running sum l, output rescaled when m grows); it keeps only
//    lse = m + log(l) per row.
//  - backward: D = rowsum(dO * O) first; then one kernel owns query tiles and sums dQ over key tiles, and
//    another owns key tiles and sums dK, dV over the query tiles and over the query heads of its
//    key/value group. Both recompute P = exp(S - lse) block by block. No atomics: results do not depend
//    on scheduling.
// Visibility: key j is seen by query i when seg_start[i] <= j <= i (seg_start NULL: 0 <= j <= i).
// Each kernel is a sequence of small matmuls between shared-memory tiles (tile_mm, register-blocked)
// and element-wise steps. The arithmetic is plain f32 on the CUDA cores (no tensor cores). The naive
// kernel at the end is the reference the tests compare with.
#include <math.h>
#include <stdio.h>
#include "autograd/attention_cached_row.h"
#include "autograd/cuda/cuda_internal.h"

#define ATT_THREADS 256 // tile_mm arranges exactly 256 threads as 16 x 16
#define MAX_HEAD_DIM 512

// Tile edge for a head size: smaller tiles for larger heads keep the shared memory of every kernel
// under 110 KB (sm_80 allows 163 KB per block, sm_90 227 KB). TL <= 64 (tile_mm's limit), which is also
// at most ATT_THREADS, so one thread per tile row can vote on whether a tile is needed.
static int attn_tile(int64_t hd) { return hd <= 32 ? 64 : hd <= 128 ? 32 : hd <= 256 ? 16 : 8; }

// Shared-memory layouts (floats). Rows of hd values are padded to P = hd + 1 and score rows to
// SP = TL + 1, so a warp reading one column (one value per row) touches 32 different banks.
static size_t smem_bytes(int TL, int hd, int hd_rows, int score_rows, int vectors) {
    return (size_t)(hd_rows * TL * (hd + 1) + score_rows * TL * (TL + 1) + vectors * TL) * sizeof(float);
}
static size_t fwd_smem(int TL, int hd) { return smem_bytes(TL, hd, 4, 1, 3); } // Q K V O; S; m l alpha
static size_t dq_smem(int TL, int hd) { return smem_bytes(TL, hd, 5, 2, 2); }  // Q dO dQ K V; S dS; lse D
static size_t dkv_smem(int TL, int hd) { return smem_bytes(TL, hd, 6, 2, 2); } // K V dK dV Q dO; P dS; lse D

__device__ __forceinline__ int64_t seg_of(const int32_t *seg, int64_t i) { return seg ? (int64_t)seg[i] : 0; }

// Query i (any value) sees key j.
__device__ __forceinline__ bool visible(const int32_t *seg, int64_t i, int64_t j, int64_t T) {
    return i < T && j <= i && j >= seg_of(seg, i);
}

// Query i sees at least one key of the tile [j0, j0 + TL): its keys [seg(i), i] overlap the tile.
__device__ __forceinline__ bool sees_tile(const int32_t *seg, int64_t i, int64_t T, int64_t j0, int TL) {
    return i < T && j0 <= i && seg_of(seg, i) <= j0 + TL - 1;
}

// dst (TL, P) <- rows r0 .. r0 + TL - 1 of src (row r at src + r * ld, hd floats); rows >= T are zero.
__device__ void load_tile(float *dst, int P, const float *src, int64_t ld, int64_t r0, int64_t T, int TL, int hd) {
    for (int e = threadIdx.x; e < TL * hd; e += blockDim.x) {
        int r = e / hd, d = e - r * hd;
        dst[r * P + d] = r0 + r < T ? src[(r0 + r) * ld + d] : 0.0f;
    }
}

// dst (TL) <- src[r0 .. r0 + TL - 1]; entries >= T are zero.
__device__ void load_rows(float *dst, const float *src, int64_t r0, int64_t T, int TL) {
    for (int r = threadIdx.x; r < TL; r += blockDim.x) dst[r] = r0 + r < T ? src[r0 + r] : 0.0f;
}

// C (M, N) = [C * row_scale +] A (M, K) B (K, N), all in shared memory. Element (r, k) of A is at
// A[r * a_r + k * a_k], (k, c) of B at B[k * b_k + c * b_c], (r, c) of C at C[r * ldc + c]; the strides
// let one routine take Q K^T, P V, P^T dO, ... without transposing anything. acc = false overwrites C;
// acc = true adds to C, first multiplied by row_scale[r] when row_scale is not NULL.
// The block's 256 threads form a 16 x 16 grid: thread (ty, tx) computes rows ty + 16 i (i < 4) and
// columns n0 + tx + 16 j (j < 4) of each 64-column strip n0, so each value it loads feeds four
// multiply-adds. Needs M <= 64. Reads and writes only; the caller puts the barriers around it.
__device__ void tile_mm(float *C, int ldc, bool acc, const float *row_scale, const float *A, int a_r, int a_k,
                        const float *B, int b_k, int b_c, int M, int N, int K) {
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    for (int n0 = 0; n0 < N; n0 += 64) {
        float c[4][4] = {};
        for (int k = 0; k < K; k++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = ty + 16 * i < M ? A[(ty + 16 * i) * a_r + k * a_k] : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = n0 + tx + 16 * j < N ? B[k * b_k + (n0 + tx + 16 * j) * b_c] : 0.0f;
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) c[i][j] += a[i] * b[j];
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int r = ty + 16 * i, col = n0 + tx + 16 * j;
                if (r >= M || col >= N) continue;
                float *dst = C + r * ldc + col;
                *dst = acc ? *dst * (row_scale ? row_scale[r] : 1.0f) + c[i][j] : c[i][j];
            }
    }
}

// Turns the raw products of a (query tile, key tile) pair into P = exp(scale S - lse) and
// dS = P * (dP - D), in place: S (TL, SP) becomes P, dP (TL, SP) becomes dS; 0 where not visible.
__device__ void probs_and_dscores(float *S, float *dP, int SP, const float *lse_s, const float *D_s,
                                  const int32_t *seg, int64_t i0, int64_t j0, int64_t T, int TL, float scale) {
    for (int e = threadIdx.x; e < TL * TL; e += blockDim.x) {
        const int r = e / TL, c = e - r * TL; // query row r, key row c
        float p = 0.0f, ds = 0.0f;
        if (visible(seg, i0 + r, j0 + c, T)) {
            p = expf(S[r * SP + c] * scale - lse_s[r]);
            ds = p * (dP[r * SP + c] - D_s[r]);
        }
        S[r * SP + c] = p;
        dP[r * SP + c] = ds;
    }
}

__global__ void attn_fwd_k(float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *seg_start, int64_t T, int H, int KV, int hd, int TL, float scale) {
    // out, q (B, T, H, hd); k, v (B, T, KV, hd); lse (B, H, T); seg_start (B, T) or NULL.
    // This block: query rows [i0, i0 + TL) of head h = blockIdx.y of batch row b = blockIdx.z.
    extern __shared__ float sm[];
    const int P = hd + 1, SP = TL + 1;
    float *Qs = sm;            // (TL, P) this tile's queries
    float *Ks = Qs + TL * P;   // (TL, P) the current key tile
    float *Vs = Ks + TL * P;   // (TL, P) the current value tile
    float *Os = Vs + TL * P;   // (TL, P) output accumulators, not yet divided by l
    float *Ss = Os + TL * P;   // (TL, SP) Q K^T of the current key tile, then exp(scale S - m)
    float *m_s = Ss + TL * SP; // (TL) running max of each row's scaled scores
    float *l_s = m_s + TL;     // (TL) running sum of exp(scaled score - m)
    float *a_s = l_s + TL;     // (TL) factor rescaling Os when m grows in this key tile
    const int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, warp = tid >> 5, nwarps = nt >> 5;
    const int64_t b = blockIdx.z;
    const int h = blockIdx.y, g = h / (H / KV);
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * TL; // the last rows see the most keys: start them first
    const int64_t ldq = (int64_t)H * hd, ldk = (int64_t)KV * hd;
    const float *qb = q + b * T * ldq + (int64_t)h * hd; // query row i at qb + i * ldq
    const float *kb = k + b * T * ldk + (int64_t)g * hd; // key row j at kb + j * ldk
    const float *vb = v + b * T * ldk + (int64_t)g * hd;
    const int32_t *seg = seg_start ? seg_start + b * T : NULL; // (T)

    load_tile(Qs, P, qb, ldq, i0, T, TL, hd);
    for (int e = tid; e < TL * hd; e += nt) Os[(e / hd) * P + e % hd] = 0.0f;
    for (int r = tid; r < TL; r += nt) { m_s[r] = -INFINITY; l_s[r] = 0.0f; }
    const int64_t i_end = i0 + TL < T ? i0 + TL : T; // rows [i0, i_end) exist
    for (int64_t j0 = 0; j0 < i_end; j0 += TL) {
        // Skip key tiles no row here can see. The vote is also the barrier after which the previous
        // tile's Ks, Vs and Ss (and, the first time, the setup above) are no longer in use.
        const bool sees = tid < TL && sees_tile(seg, i0 + tid, T, j0, TL);
        if (!__syncthreads_or(sees)) continue;
        load_tile(Ks, P, kb, ldk, j0, T, TL, hd);
        load_tile(Vs, P, vb, ldk, j0, T, TL, hd);
        __syncthreads();
        tile_mm(Ss, SP, false, NULL, Qs, P, 1, Ks, 1, P, TL, TL, hd); // S = Q K^T
        __syncthreads();
        for (int r = warp; r < TL; r += nwarps) { // online softmax, one warp per row
            float mx = -INFINITY;
            for (int c = lane; c < TL; c += 32) {
                const float s = visible(seg, i0 + r, j0 + c, T) ? Ss[r * SP + c] * scale : -INFINITY;
                Ss[r * SP + c] = s;
                mx = fmaxf(mx, s);
            }
            mx = dt_warp_max(mx);
            const float m_old = m_s[r], m_new = fmaxf(m_old, mx);
            // A row that has seen no key yet keeps m = -inf: its exponentials are 0 and nothing is rescaled
            // (exp(-inf - -inf) would be NaN).
            const bool none = m_new == -INFINITY;
            float sum = 0.0f;
            for (int c = lane; c < TL; c += 32) {
                const float p = none ? 0.0f : expf(Ss[r * SP + c] - m_new); // 0 for masked keys
                Ss[r * SP + c] = p;
                sum += p;
            }
            sum = dt_warp_sum(sum);
            if (lane == 0) {
                const float alpha = none ? 1.0f : expf(m_old - m_new); // 0 when m_old = -inf
                m_s[r] = m_new;
                l_s[r] = l_s[r] * alpha + sum;
                a_s[r] = alpha;
            }
        }
        __syncthreads();
        tile_mm(Os, P, true, a_s, Ss, SP, 1, Vs, P, 1, TL, hd, TL); // O = alpha O + P V
    }
    __syncthreads();
    // Every existing row saw at least its own key, so l > 0 there.
    for (int e = tid; e < TL * hd; e += nt) {
        const int r = e / hd, d = e - r * hd;
        if (i0 + r < T) out[(b * T + i0 + r) * ldq + (int64_t)h * hd + d] = Os[r * P + d] / l_s[r];
    }
    for (int r = tid; r < TL; r += nt)
        if (i0 + r < T) lse[(b * H + h) * T + i0 + r] = m_s[r] + logf(l_s[r]);
}

__global__ void attn_rowdot_k(float *Dg, const float *out, const float *dout, int64_t B, int64_t T, int H, int hd) {
    // Dg (B, H, T) = sum over hd of out * dout, out and dout (B, T, H, hd): one warp per (b, t, h) row.
    const int64_t rows = B * T * H;
    const int lane = threadIdx.x & 31;
    const int64_t first = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; // the same for a whole warp
    const int64_t stride = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t n = first; n < rows; n += stride) {
        const float *o = out + n * hd, *d = dout + n * hd; // (hd)
        float acc = 0.0f;
        for (int e = lane; e < hd; e += 32) acc += o[e] * d[e];
        acc = dt_warp_sum(acc);
        if (lane == 0) {
            const int64_t h = n % H, bt = n / H, t = bt % T, bb = bt / T;
            Dg[(bb * H + h) * T + t] = acc;
        }
    }
}

__global__ void attn_bwd_dq_k(float *dq, bool acc_q, const float *dout, const float *Dg, const float *lse,
                              const float *q, const float *k, const float *v, const int32_t *seg_start, int64_t T,
                              int H, int KV, int hd, int TL, float scale) {
    // dq, dout, q (B, T, H, hd); k, v (B, T, KV, hd); Dg, lse (B, H, T); seg_start (B, T) or NULL.
    // This block: dq rows [i0, i0 + TL) of head h = blockIdx.y of batch row b = blockIdx.z,
    // dq = scale * sum over the visible key tiles of dS K.
    extern __shared__ float sm[];
    const int P = hd + 1, SP = TL + 1;
    float *Qs = sm;               // (TL, P)
    float *dOs = Qs + TL * P;     // (TL, P)
    float *dQs = dOs + TL * P;    // (TL, P) sum of dS K, scaled when written out
    float *Ks = dQs + TL * P;     // (TL, P)
    float *Vs = Ks + TL * P;      // (TL, P)
    float *Ss = Vs + TL * P;      // (TL, SP) Q K^T, then P
    float *dSs = Ss + TL * SP;    // (TL, SP) dO V^T, then dS
    float *lse_s = dSs + TL * SP; // (TL)
    float *D_s = lse_s + TL;      // (TL)
    const int tid = threadIdx.x, nt = blockDim.x;
    const int64_t b = blockIdx.z;
    const int h = blockIdx.y, g = h / (H / KV);
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * TL;
    const int64_t ldq = (int64_t)H * hd, ldk = (int64_t)KV * hd;
    const float *qb = q + b * T * ldq + (int64_t)h * hd, *dob = dout + b * T * ldq + (int64_t)h * hd;
    const float *kb = k + b * T * ldk + (int64_t)g * hd, *vb = v + b * T * ldk + (int64_t)g * hd;
    const int32_t *seg = seg_start ? seg_start + b * T : NULL; // (T)

    load_tile(Qs, P, qb, ldq, i0, T, TL, hd);
    load_tile(dOs, P, dob, ldq, i0, T, TL, hd);
    for (int e = tid; e < TL * hd; e += nt) dQs[(e / hd) * P + e % hd] = 0.0f;
    load_rows(lse_s, lse + (b * H + h) * T, i0, T, TL);
    load_rows(D_s, Dg + (b * H + h) * T, i0, T, TL);
    const int64_t i_end = i0 + TL < T ? i0 + TL : T;
    for (int64_t j0 = 0; j0 < i_end; j0 += TL) {
        const bool sees = tid < TL && sees_tile(seg, i0 + tid, T, j0, TL);
        if (!__syncthreads_or(sees)) continue; // also the barrier before Ks, Vs, Ss, dSs are reused
        load_tile(Ks, P, kb, ldk, j0, T, TL, hd);
        load_tile(Vs, P, vb, ldk, j0, T, TL, hd);
        __syncthreads();
        tile_mm(Ss, SP, false, NULL, Qs, P, 1, Ks, 1, P, TL, TL, hd);   // S = Q K^T
        tile_mm(dSs, SP, false, NULL, dOs, P, 1, Vs, 1, P, TL, TL, hd); // dP = dO V^T
        __syncthreads();
        probs_and_dscores(Ss, dSs, SP, lse_s, D_s, seg, i0, j0, T, TL, scale);
        __syncthreads();
        tile_mm(dQs, P, true, NULL, dSs, SP, 1, Ks, P, 1, TL, hd, TL); // dQ += dS K
    }
    __syncthreads();
    for (int e = tid; e < TL * hd; e += nt) {
        const int r = e / hd, d = e - r * hd;
        if (i0 + r >= T) continue;
        float *dst = dq + (b * T + i0 + r) * ldq + (int64_t)h * hd + d;
        const float val = scale * dQs[r * P + d];
        *dst = acc_q ? *dst + val : val;
    }
}

__global__ void attn_bwd_dkv_k(float *dk, float *dv, bool acc_k, bool acc_v, const float *dout, const float *Dg,
                               const float *lse, const float *q, const float *k, const float *v,
                               const int32_t *seg_start, int64_t T, int H, int KV, int hd, int TL, float scale) {
    // dk, dv, k, v (B, T, KV, hd), dk/dv may be NULL; dout, q (B, T, H, hd); Dg, lse (B, H, T);
    // seg_start (B, T) or NULL. This block: key rows [j0, j0 + TL) of key/value head g = blockIdx.y of batch
    // row b = blockIdx.z; dv = sum of P^T dO and dk = scale * sum of dS^T Q over the query heads of g's
    // group and the query tiles that see these keys.
    extern __shared__ float sm[];
    const int P = hd + 1, SP = TL + 1;
    float *Ks = sm;               // (TL, P)
    float *Vs = Ks + TL * P;      // (TL, P)
    float *dKs = Vs + TL * P;     // (TL, P) sum of dS^T Q, scaled when written out
    float *dVs = dKs + TL * P;    // (TL, P) sum of P^T dO
    float *Qs = dVs + TL * P;     // (TL, P) the current query tile
    float *dOs = Qs + TL * P;     // (TL, P)
    float *Ps = dOs + TL * P;     // (TL, SP) [query row][key row]: Q K^T, then P
    float *dSs = Ps + TL * SP;    // (TL, SP) [query row][key row]: dO V^T, then dS
    float *lse_s = dSs + TL * SP; // (TL)
    float *D_s = lse_s + TL;      // (TL)
    const int tid = threadIdx.x, nt = blockDim.x;
    const int64_t b = blockIdx.z;
    const int g = blockIdx.y, group = H / KV;
    const int64_t j0 = (int64_t)blockIdx.x * TL; // the first keys are seen by the most queries: they start first
    const int64_t ldq = (int64_t)H * hd, ldk = (int64_t)KV * hd;
    const float *kb = k + b * T * ldk + (int64_t)g * hd, *vb = v + b * T * ldk + (int64_t)g * hd;
    const int32_t *seg = seg_start ? seg_start + b * T : NULL; // (T)

    load_tile(Ks, P, kb, ldk, j0, T, TL, hd);
    load_tile(Vs, P, vb, ldk, j0, T, TL, hd);
    for (int e = tid; e < TL * hd; e += nt) dKs[(e / hd) * P + e % hd] = dVs[(e / hd) * P + e % hd] = 0.0f;
    for (int hh = 0; hh < group; hh++) {
        const int h = g * group + hh;
        const float *qb = q + b * T * ldq + (int64_t)h * hd, *dob = dout + b * T * ldq + (int64_t)h * hd;
        // Query tiles start at j0 (tiles are aligned to TL): earlier queries see none of these keys.
        for (int64_t i0 = j0; i0 < T; i0 += TL) {
            const bool sees = tid < TL && sees_tile(seg, i0 + tid, T, j0, TL);
            if (!__syncthreads_or(sees)) continue; // also the barrier before Qs, dOs, Ps, dSs are reused
            load_tile(Qs, P, qb, ldq, i0, T, TL, hd);
            load_tile(dOs, P, dob, ldq, i0, T, TL, hd);
            load_rows(lse_s, lse + (b * H + h) * T, i0, T, TL);
            load_rows(D_s, Dg + (b * H + h) * T, i0, T, TL);
            __syncthreads();
            tile_mm(Ps, SP, false, NULL, Qs, P, 1, Ks, 1, P, TL, TL, hd);   // S = Q K^T
            tile_mm(dSs, SP, false, NULL, dOs, P, 1, Vs, 1, P, TL, TL, hd); // dP = dO V^T
            __syncthreads();
            probs_and_dscores(Ps, dSs, SP, lse_s, D_s, seg, i0, j0, T, TL, scale);
            __syncthreads();
            tile_mm(dVs, P, true, NULL, Ps, 1, SP, dOs, P, 1, TL, hd, TL); // dV += P^T dO
            tile_mm(dKs, P, true, NULL, dSs, 1, SP, Qs, P, 1, TL, hd, TL); // dK += dS^T Q
        }
    }
    __syncthreads();
    for (int e = tid; e < TL * hd; e += nt) {
        const int c = e / hd, d = e - c * hd;
        if (j0 + c >= T) continue;
        const int64_t at = (b * T + j0 + c) * ldk + (int64_t)g * hd + d;
        if (dk) { const float val = scale * dKs[c * P + d]; dk[at] = acc_k ? dk[at] + val : val; }
        if (dv) { const float val = dVs[c * P + d]; dv[at] = acc_v ? dv[at] + val : val; }
    }
}

// ---- launchers ----

// Shapes the kernels cannot take are recorded as unsupported (the model already refuses head_dim > 512).
static bool attn_args_ok(const char *what, int64_t B, int64_t H, int64_t KV, int64_t hd) {
    char why[200];
    if (hd < 1 || hd > MAX_HEAD_DIM)
        snprintf(why, sizeof why, "head_dim %lld is not supported (1 to %d)", (long long)hd, MAX_HEAD_DIM);
    else if (KV < 1 || H % KV)
        snprintf(why, sizeof why, "%lld query heads are not a multiple of %lld key/value heads", (long long)H,
                 (long long)KV);
    else if (H > 65535 || B > 65535)
        snprintf(why, sizeof why, "%lld heads x %lld batch rows exceed the launch grid (65535 each)", (long long)H,
                 (long long)B);
    else
        return true;
    dt_cuda_record(DT_EUNSUPPORTED, what, __FILE__, __LINE__, why);
    return false;
}

// Lets kernel use bytes of dynamic shared memory (above the 48 KB default), if the device has them.
template <typename Kernel> static bool smem_ok(Kernel kernel, size_t bytes, const char *what) {
    if (bytes > dt_cuda()->smem_optin) {
        char why[160];
        snprintf(why, sizeof why, "needs %zu bytes of shared memory per block, the device allows %zu", bytes,
                 dt_cuda()->smem_optin);
        dt_cuda_record(DT_EUNSUPPORTED, what, __FILE__, __LINE__, why);
        return false;
    }
    return CU_OK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// The hand kernel's backward needs D = rowsum(dO * O), (B, H, T) floats, and its forward nothing; the
// 16-bit tables' cuDNN path needs its 16-bit copies too (sdpa_cudnn.cu), with D at the same place.
size_t dt_cuda_attention_scratch_bytes(const dt_backend *be, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const size_t hand = (size_t)B * (size_t)H * (size_t)T * sizeof(float);
    return dt_cuda_gemm_type(be) == CUDA_R_32F ? hand : dt_cuda_sdpa_scratch_bytes(B, T, H, KV, hd);
}

void dt_cuda_attention_fwd(const dt_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                           void *scratch) {
    if (B <= 0 || T <= 0 || H <= 0) return;
    if (dt_cuda_sdpa_fwd(be, out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch)) return;
    dt_cuda_attention_fwd_hand(out, lse, q, k, v, seg_start, B, T, H, KV, hd);
}

void dt_cuda_attention_fwd_hand(float *out, float *lse, const float *q, const float *k, const float *v,
                                const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    if (B <= 0 || T <= 0 || H <= 0 || !attn_args_ok("attention_fwd", B, H, KV, hd)) return;
    const int TL = attn_tile(hd);
    const size_t smem = fwd_smem(TL, (int)hd);
    if (!smem_ok(attn_fwd_k, smem, "attention_fwd")) return;
    const dim3 grid((unsigned)((T + TL - 1) / TL), (unsigned)H, (unsigned)B);
    attn_fwd_k<<<grid, ATT_THREADS, smem, dt_cuda_stream()>>>(out, lse, q, k, v, seg_start, T, (int)H, (int)KV,
                                                               (int)hd, TL, 1.0f / sqrtf((float)hd));
    LAUNCH_OK("attn_fwd_k");
}

void dt_cuda_attention_bwd(const dt_backend *be, float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v, const float *dout,
                           const float *out, const float *lse, const float *q, const float *k, const float *v,
                           const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                           void *scratch) {
    if (B <= 0 || T <= 0 || H <= 0 || (!dq && !dk && !dv)) return;
    if (dt_cuda_sdpa_bwd(be, dq, dk, dv, acc_q, acc_k, acc_v, dout, out, lse, q, k, v, seg_start, B, T, H, KV, hd, scratch))
        return;
    dt_cuda_attention_bwd_hand(dq, dk, dv, acc_q, acc_k, acc_v, dout, out, lse, q, k, v, seg_start, B, T, H, KV, hd,
                               (float *)scratch);
}

void dt_cuda_attention_bwd_hand(float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v, const float *dout,
                                const float *out, const float *lse, const float *q, const float *k, const float *v,
                                const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                                float *Dg) {
    // Dg (B, H, T)
    if (B <= 0 || T <= 0 || H <= 0 || (!dq && !dk && !dv) || !attn_args_ok("attention_bwd", B, H, KV, hd)) return;
    const cudaStream_t s = dt_cuda_stream();
    const int TL = attn_tile(hd);
    const float scale = 1.0f / sqrtf((float)hd);
    attn_rowdot_k<<<dt_cuda_blocks(B * T * H * 32, ATT_THREADS), ATT_THREADS, 0, s>>>(Dg, out, dout, B, T, (int)H,
                                                                                      (int)hd);
    if (!LAUNCH_OK("attn_rowdot_k")) return;
    const unsigned tiles = (unsigned)((T + TL - 1) / TL);
    if (dq) {
        const size_t smem = dq_smem(TL, (int)hd);
        if (!smem_ok(attn_bwd_dq_k, smem, "attention_bwd")) return;
        attn_bwd_dq_k<<<dim3(tiles, (unsigned)H, (unsigned)B), ATT_THREADS, smem, s>>>(
            dq, acc_q, dout, Dg, lse, q, k, v, seg_start, T, (int)H, (int)KV, (int)hd, TL, scale);
        if (!LAUNCH_OK("attn_bwd_dq_k")) return;
    }
    if (dk || dv) {
        const size_t smem = dkv_smem(TL, (int)hd);
        if (!smem_ok(attn_bwd_dkv_k, smem, "attention_bwd")) return;
        attn_bwd_dkv_k<<<dim3(tiles, (unsigned)KV, (unsigned)B), ATT_THREADS, smem, s>>>(
            dk, dv, acc_k, acc_v, dout, Dg, lse, q, k, v, seg_start, T, (int)H, (int)KV, (int)hd, TL, scale);
        LAUNCH_OK("attn_bwd_dkv_k");
    }
}

// ---- the naive reference ----

// scale * q_i . k_j in double, q_i (hd) and key row j of head g.
__device__ double naive_score(const float *qi, const float *k, int64_t b, int64_t j, int64_t T, int64_t KV, int64_t g,
                              int64_t hd, float scale) {
    const float *kj = k + ((b * T + j) * KV + g) * hd; // (hd)
    double s = 0.0;
    for (int64_t e = 0; e < hd; e++) s += (double)qi[e] * kj[e];
    return s * scale;
}

// One thread per query row, three passes over its keys (max, normaliser, each output element), every
// score recomputed: O(T hd^2) per row, for tests only.
__global__ void attn_naive_k(float *out, float *lse, const float *q, const float *k, const float *v,
                             const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    // out, q (B, T, H, hd); k, v (B, T, KV, hd); lse (B, H, T); seg_start (B, T) or NULL
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t rows = B * T * H, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; n < rows; n += stride) {
        const int64_t h = n % H, i = (n / H) % T, b = n / (H * T), g = h / (H / KV);
        const float *qi = q + n * hd; // (hd)
        const int64_t lo = seg_start ? seg_start[b * T + i] : 0;
        double m = -INFINITY, sum = 0.0;
        for (int64_t j = lo; j <= i; j++) m = fmax(m, naive_score(qi, k, b, j, T, KV, g, hd, scale));
        for (int64_t j = lo; j <= i; j++) sum += exp(naive_score(qi, k, b, j, T, KV, g, hd, scale) - m);
        for (int64_t e = 0; e < hd; e++) {
            double acc = 0.0;
            for (int64_t j = lo; j <= i; j++) {
                const double p = exp(naive_score(qi, k, b, j, T, KV, g, hd, scale) - m) / sum;
                acc += p * v[((b * T + j) * KV + g) * hd + e];
            }
            out[n * hd + e] = (float)acc;
        }
        lse[(b * H + h) * T + i] = (float)(m + log(sum));
    }
}

void dt_cuda_attention_fwd_naive(float *out, float *lse, const float *q, const float *k, const float *v,
                                 const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    if (B <= 0 || T <= 0 || H <= 0 || !attn_args_ok("attention_fwd_naive", B, H, KV, hd)) return;
    attn_naive_k<<<dt_cuda_blocks(B * T * H, 128), 128, 0, dt_cuda_stream()>>>(out, lse, q, k, v, seg_start, B, T, H,
                                                                                KV, hd);
    LAUNCH_OK("attn_naive_k");
}

// ---- generation: new queries over the KV cache ----

__global__ void attention_cached_k(float *out, const float *q, const float *kc, const float *vc, int64_t n, int64_t p0,
                                   int64_t H, int64_t KV, int64_t hd, float scale) {
    // One thread per (query i, head h), the CPU's row (attention_cached_row.h). out/q (n, H*hd); kc/vc
    // (>= p0+n, KV*hd). Generation feeds a handful of rows: no tiling.
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n * H; t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = t / H, h = t - i * H, gq = h / (H / KV);
        dt_attention_cached_row(out + (i * H + h) * hd, q + (i * H + h) * hd, kc + gq * hd, vc + gq * hd, p0 + i + 1,
                                KV * hd, hd, scale);
    }
}

void dt_cuda_attention_cached(const dt_backend *be, float *out, const float *q, const float *kc, const float *vc,
                              int64_t n, int64_t p0, int64_t H, int64_t KV, int64_t hd) {
    (void)be;
    if (n * H <= 0) return;
    attention_cached_k<<<dt_cuda_blocks(n * H, 64), 64, 0, dt_cuda_stream()>>>(out, q, kc, vc, n, p0, H, KV, hd,
                                                                               1.0f / sqrtf((float)hd));
    LAUNCH_OK("attention_cached_k");
}
