// ggml's 32-value block types: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (layouts in quant_blocks.h).
#include <float.h>
#include <math.h>
#include <string.h>
#include "autograd/quant.h"
#include "autograd/quant_decode.h"
#include "autograd/tensor.h"

int dt_nearest_int(float x) {
    // Adding 1.5 * 2^23 puts the integer part in the low mantissa bits, rounded by the FPU (half to even).
    float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

// ---- decoding: one block at a time (quant_decode.h, shared with the device) ----

DT_DECODE_ROWS(q8_0, dt_block_q8_0, DT_QK)
DT_DECODE_ROWS(q4_0, dt_block_q4_0, DT_QK)
DT_DECODE_ROWS(q4_1, dt_block_q4_1, DT_QK)
DT_DECODE_ROWS(q5_0, dt_block_q5_0, DT_QK)
DT_DECODE_ROWS(q5_1, dt_block_q5_1, DT_QK)

// ---- quantization (ggml's quantize_row_*_ref) ----

void dt_q8_0_from_f32(const float *x, void *dst, int64_t n) {
    dt_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / DT_QK; i++, x += DT_QK) {
        float amax = 0.0f;
        for (int j = 0; j < DT_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = dt_f32_to_f16(d);
        for (int j = 0; j < DT_QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

// The value of largest magnitude, with its sign (the first one on ties), as ggml's symmetric types use.
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    *mn = FLT_MAX;
    *mx = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *mn) *mn = x[j];
        if (x[j] > *mx) *mx = x[j];
    }
}

// ggml's clamp `MIN(top, (int8_t)v)`: the conversion truncates toward zero.
static inline uint8_t trunc_clamp(float v, int top) {
    int q = (int8_t)v;
    return (uint8_t)(q < top ? q : top);
}

void dt_q4_0_from_f32(const float *x, void *dst, int64_t n) {
    dt_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / DT_QK; i++, x += DT_QK) {
        const float d = signed_absmax(x, DT_QK) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = dt_f32_to_f16(d);
        for (int j = 0; j < DT_QK / 2; j++)
            y[i].qs[j] = (uint8_t)(trunc_clamp(x[j] * id + 8.5f, 15) | trunc_clamp(x[j + 16] * id + 8.5f, 15) << 4);
    }
}

void dt_q4_1_from_f32(const float *x, void *dst, int64_t n) {
    dt_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / DT_QK; i++, x += DT_QK) {
        float mn, mx;
        min_max(x, DT_QK, &mn, &mx);
        const float d = (mx - mn) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = dt_f32_to_f16(d);
        y[i].m = dt_f32_to_f16(mn);
        for (int j = 0; j < DT_QK / 2; j++)
            y[i].qs[j] = (uint8_t)(trunc_clamp((x[j] - mn) * id + 0.5f, 15) |
                                   trunc_clamp((x[j + 16] - mn) * id + 0.5f, 15) << 4);
    }
}

// Packs 32 five-bit values into a Q5 block's qs and qh.
static void q5_pack(const uint8_t q[DT_QK], uint8_t qs[DT_QK / 2], uint8_t qh[4]) {
    uint32_t h = 0;
    for (int j = 0; j < DT_QK / 2; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
        h |= (uint32_t)(q[j] >> 4 & 1) << j;
        h |= (uint32_t)(q[j + 16] >> 4 & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}

void dt_q5_0_from_f32(const float *x, void *dst, int64_t n) {
    dt_block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / DT_QK; i++, x += DT_QK) {
        const float d = signed_absmax(x, DT_QK) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = dt_f32_to_f16(d);
        uint8_t q[DT_QK];
        for (int j = 0; j < DT_QK; j++) q[j] = trunc_clamp(x[j] * id + 16.5f, 31);
        q5_pack(q, y[i].qs, y[i].qh);
    }
}

void dt_q5_1_from_f32(const float *x, void *dst, int64_t n) {
    dt_block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / DT_QK; i++, x += DT_QK) {
        float mn, mx;
        min_max(x, DT_QK, &mn, &mx);
        const float d = (mx - mn) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = dt_f32_to_f16(d);
        y[i].m = dt_f32_to_f16(mn);
        uint8_t q[DT_QK];
        // ggml converts straight to uint8_t here (no clamp): (x - min) * id + 0.5 stays in [0.5, 31.5].
        for (int j = 0; j < DT_QK; j++) q[j] = (uint8_t)((x[j] - mn) * id + 0.5f);
        q5_pack(q, y[i].qs, y[i].qh);
    }
}
