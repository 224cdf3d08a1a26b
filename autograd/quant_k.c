// ggml's k-quants with 256-value super-blocks: Q4_K, Q5_K, Q6_K (layouts in quant_blocks.h).
// Quantization follows ggml's quantize_row_q{4,5,6}_K_ref: a weighted least-squares search for each
// sub-block's scale (and min), then 6-bit (Q4_K/Q5_K) or 8-bit (Q6_K) quantization of those scales
// against one f16 super-block scale.
#include <math.h>
#include <string.h>
#include "autograd/quant.h"
#include "autograd/quant_decode.h"
#include "autograd/tensor.h"

static void k_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t s[12]) {
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 15) | (lm[j] & 15) << 4);
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

// ---- decoding: one super-block at a time (quant_decode.h, shared with the device) ----

DT_DECODE_ROWS(q4_K, dt_block_q4_K, DT_QK_K)
DT_DECODE_ROWS(q5_K, dt_block_q5_K, DT_QK_K)
DT_DECODE_ROWS(q6_K, dt_block_q6_K, DT_QK_K)

// ---- quantization ----

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

// ggml's make_qkx2_quants: the (scale, min) for q in [0, nmax] minimising the weighted squared error
// over nstep+1 trial scales; returns the scale, *the_min = -min (>= 0).
static float qkx2(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, uint8_t *Laux,
                  float rmin, float rdelta, int nstep) {
    float mn = x[0], mx = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        memset(L, 0, (size_t)n);
        *the_min = -mn;
        return 0.0f;
    }
    float iscale = (float)nmax / (mx - mn), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(dt_nearest_int(iscale * (x[i] - mn)), 0, nmax);
        float diff = scale * (float)L[i] + mn - x[i];
        best += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (mx - mn);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(dt_nearest_int(iscale * (x[i] - mn)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best) {
                memcpy(L, Laux, (size_t)n);
                best = err;
                scale = this_scale;
                mn = this_min;
            }
        }
    }
    *the_min = -mn;
    return scale;
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per sub-block of 32 the (scale, min) search, the 6-bit
// scales against the f16 d/dmin, then the final q of each value with those rounded scales.
static void k_quantize_block(const float *x, int nmax, float rmin, float rdelta, int nstep, uint16_t *d_out,
                             uint16_t *dmin_out, uint8_t scales[12], uint8_t L[DT_QK_K]) {
    float sc[8], mins[8], w[32], max_scale = 0, max_min = 0;
    uint8_t Laux[32];
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        sc[j] = qkx2(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        // ggml stores nearest_int into a uint8_t before clamping to 63 (values are in [0, 63] here).
        uint8_t a = (uint8_t)dt_nearest_int(inv_scale * sc[j]), b = (uint8_t)dt_nearest_int(inv_min * mins[j]);
        ls[j] = a < 63 ? a : 63;
        lm[j] = b < 63 ? b : 63;
    }
    k_pack_scales(ls, lm, scales);
    *d_out = dt_f32_to_f16(max_scale / 63.f);
    *dmin_out = dt_f32_to_f16(max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        dt_k_scale_min(j, scales, &s, &m);
        const float d = dt_f16_to_f32(*d_out) * (float)s;
        if (d == 0.0f) continue;
        const float dm = dt_f16_to_f32(*dmin_out) * (float)m;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clampi(dt_nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

void dt_q4_K_from_f32(const float *x, void *dst, int64_t n) {
    dt_block_q4_K *y = dst;
    uint8_t L[DT_QK_K];
    for (int64_t i = 0; i < n / DT_QK_K; i++, x += DT_QK_K) {
        k_quantize_block(x, 15, -1.f, 0.1f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < DT_QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

void dt_q5_K_from_f32(const float *x, void *dst, int64_t n) {
    dt_block_q5_K *y = dst;
    uint8_t L[DT_QK_K];
    for (int64_t i = 0; i < n / DT_QK_K; i++, x += DT_QK_K) {
        k_quantize_block(x, 31, -0.5f, 0.1f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        uint8_t *q = y[i].qs;
        for (int s = 0; s < 8; s += 2, q += 32)
            for (int l = 0; l < 32; l++) {
                int l1 = L[32 * s + l], l2 = L[32 * s + l + 32];
                y[i].qh[l] |= (uint8_t)((l1 >> 4) << s | (l2 >> 4) << (s + 1));
                q[l] = (uint8_t)((l1 & 15) | (l2 & 15) << 4);
            }
    }
}

// ggml's make_qx_quants with rmse_type 1 and no importance weights (w = x^2): the symmetric scale for
// q in [-nmax, nmax-1], refined over 18 trial scales; L gets q + nmax.
static float qx(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    if (amax < 1e-15f) { // ggml's GROUP_MAX_EPS: all zero
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -(float)nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(dt_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(dt_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clampi(dt_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void dt_q6_K_from_f32(const float *x, void *dst, int64_t n) {
    dt_block_q6_K *y = dst;
    int8_t L[DT_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / DT_QK_K; i++, x += DT_QK_K) {
        float max_scale = 0, max_abs = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = qx(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs) { max_abs = fabsf(scales[ib]); max_scale = scales[ib]; }
        }
        memset(&y[i], 0, sizeof y[i]);
        if (max_abs < 1e-15f) continue; // all zero: d = 0 (the memset wrote +0 as f16)
        float iscale = -128.f / max_scale;
        y[i].d = dt_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < 16; ib++) {
            int v = dt_nearest_int(iscale * scales[ib]);
            y[i].scales[ib] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; j++) {
            const float d = dt_f16_to_f32(y[i].d) * (float)y[i].scales[j];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(clampi(dt_nearest_int(x[16 * j + l] / d), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            const int8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 15) | (Lh[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 15) | (Lh[l + 96] & 15) << 4);
                qh[l] = (uint8_t)((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
            }
        }
    }
}
