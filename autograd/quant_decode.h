// One block of each of ggml's quantized types decoded to f32, defined once for the CPU (the traits'
// to_f32 in quant_legacy.c and quant_k.c loop over blocks with these) and for the device
// (autograd/cuda/dequant.cu), where DT_HD makes them device functions. Products and sums go through
// DT_FMUL / DT_FADD / DT_FSUB: on the device the round-to-nearest intrinsics, which nvcc never contracts
// into fused multiply-adds; on the CPU the plain operators (C11 builds do not contract either). So a
// block decodes to the same bits on both. Layouts and meanings follow ggml (quant_blocks.h).
#ifndef DT_QUANT_DECODE_H
#define DT_QUANT_DECODE_H
#include <stddef.h>
#include <stdint.h>
#include "autograd/half.h"
#include "autograd/quant_blocks.h"

#ifdef __CUDA_ARCH__
#define DT_FMUL(a, b) __fmul_rn((a), (b))
#define DT_FADD(a, b) __fadd_rn((a), (b))
#define DT_FSUB(a, b) __fsub_rn((a), (b))
#else
#define DT_FMUL(a, b) ((a) * (b))
#define DT_FADD(a, b) ((a) + (b))
#define DT_FSUB(a, b) ((a) - (b))
// The traits' to_f32 of a type: n values (whole blocks of per) decoded block by block.
#define DT_DECODE_ROWS(name, block, per)                                                 \
    void dt_##name##_to_f32(const void *src, float *dst, int64_t n) {                    \
        const block *b = (const block *)src;                                             \
        for (int64_t i = 0; i < n / (per); i++) dt_dec_##name(b + i, dst + i * (per));   \
    }

#endif

// Bit 4 of element j of a Q5 block: bit j of qh read as a little-endian u32.
static inline DT_HD uint32_t dt_q5_high(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

// Scale and min of k-quant sub-block j (0..7) from the 12 packed bytes: sub-blocks 0-3 keep 6 bits in
// s[j] / s[j+4]; 4-7 keep their low 4 bits in s[j+4] and their top 2 bits in the top bits of s[j-4]
// (scale) and s[j] (min).
static inline DT_HD void dt_k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 15) | (s[j - 4] >> 6) << 4);
        *m = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
    }
}

// dst (32) <- one block of the 32-value types.
static inline DT_HD void dt_dec_q8_0(const dt_block_q8_0 *b, float *dst) {
    const float d = dt_hf_f16_to_f32(b->d);
    for (int j = 0; j < DT_QK; j++) dst[j] = DT_FMUL((float)b->qs[j], d);
}

static inline DT_HD void dt_dec_q4_0(const dt_block_q4_0 *b, float *dst) {
    const float d = dt_hf_f16_to_f32(b->d);
    for (int j = 0; j < DT_QK / 2; j++) {
        dst[j] = DT_FMUL((float)((b->qs[j] & 15) - 8), d);
        dst[j + DT_QK / 2] = DT_FMUL((float)((b->qs[j] >> 4) - 8), d);
    }
}

static inline DT_HD void dt_dec_q4_1(const dt_block_q4_1 *b, float *dst) {
    const float d = dt_hf_f16_to_f32(b->d), m = dt_hf_f16_to_f32(b->m);
    for (int j = 0; j < DT_QK / 2; j++) {
        dst[j] = DT_FADD(DT_FMUL((float)(b->qs[j] & 15), d), m);
        dst[j + DT_QK / 2] = DT_FADD(DT_FMUL((float)(b->qs[j] >> 4), d), m);
    }
}

static inline DT_HD void dt_dec_q5_0(const dt_block_q5_0 *b, float *dst) {
    const float d = dt_hf_f16_to_f32(b->d);
    const uint32_t qh = dt_q5_high(b->qh);
    for (int j = 0; j < DT_QK / 2; j++) {
        const int lo = (int)((b->qs[j] & 15) | ((qh >> j) & 1) << 4);
        const int hi = (int)((b->qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
        dst[j] = DT_FMUL((float)(lo - 16), d);
        dst[j + DT_QK / 2] = DT_FMUL((float)(hi - 16), d);
    }
}

static inline DT_HD void dt_dec_q5_1(const dt_block_q5_1 *b, float *dst) {
    const float d = dt_hf_f16_to_f32(b->d), m = dt_hf_f16_to_f32(b->m);
    const uint32_t qh = dt_q5_high(b->qh);
    for (int j = 0; j < DT_QK / 2; j++) {
        const int lo = (int)((b->qs[j] & 15) | ((qh >> j) & 1) << 4);
        const int hi = (int)((b->qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
        dst[j] = DT_FADD(DT_FMUL((float)lo, d), m);
        dst[j + DT_QK / 2] = DT_FADD(DT_FMUL((float)hi, d), m);
    }
}

// dst (256) <- one Q4_K (qh NULL) or Q5_K super-block: the two share their scales; Q5_K adds a fifth
// bit per value from qh.
static inline DT_HD void dt_dec_k45(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const uint8_t *q,
                                    const uint8_t *qh, float *dst) {
    const float d = dt_hf_f16_to_f32(d16), dmin = dt_hf_f16_to_f32(dmin16);
    for (int s = 0; s < 8; s += 2, q += 32, dst += 64) {
        uint8_t sc, m;
        dt_k_scale_min(s, scales, &sc, &m);
        const float d1 = DT_FMUL(d, (float)sc), m1 = DT_FMUL(dmin, (float)m);
        dt_k_scale_min(s + 1, scales, &sc, &m);
        const float d2 = DT_FMUL(d, (float)sc), m2 = DT_FMUL(dmin, (float)m);
        for (int l = 0; l < 32; l++) {
            const int h1 = qh ? (qh[l] >> s & 1) << 4 : 0, h2 = qh ? (qh[l] >> (s + 1) & 1) << 4 : 0;
            dst[l] = DT_FSUB(DT_FMUL(d1, (float)((q[l] & 15) | h1)), m1);
            dst[l + 32] = DT_FSUB(DT_FMUL(d2, (float)((q[l] >> 4) | h2)), m2);
        }
    }
}
static inline DT_HD void dt_dec_q4_K(const dt_block_q4_K *b, float *dst) {
    dt_dec_k45(b->d, b->dmin, b->scales, b->qs, NULL, dst);
}
static inline DT_HD void dt_dec_q5_K(const dt_block_q5_K *b, float *dst) {
    dt_dec_k45(b->d, b->dmin, b->scales, b->qs, b->qh, dst);
}

static inline DT_HD void dt_dec_q6_K(const dt_block_q6_K *b, float *dst) {
    const float d = dt_hf_f16_to_f32(b->d);
    for (int h = 0; h < 2; h++, dst += 128) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const int8_t *sc = b->scales + 8 * h;
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 15) | (qh[l] >> 0 & 3) << 4) - 32;
            const int q2 = ((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) - 32;
            const int q3 = ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32;
            // (d * scale) * q, in this order, as ggml evaluates it.
            dst[l] = DT_FMUL(DT_FMUL(d, (float)sc[is]), (float)q1);
            dst[l + 32] = DT_FMUL(DT_FMUL(d, (float)sc[is + 2]), (float)q2);
            dst[l + 64] = DT_FMUL(DT_FMUL(d, (float)sc[is + 4]), (float)q3);
            dst[l + 96] = DT_FMUL(DT_FMUL(d, (float)sc[is + 6]), (float)q4);
        }
    }
}

// The traits' to_f32 of a type: n values (whole blocks of per) decoded block by block.
#define DT_DECODE_ROWS(name, block, per)                                                 \
    void dt_##name##_to_f32(const void *src, float *dst, int64_t n) {                    \
        const block *b = (const block *)src;                                             \
        for (int64_t i = 0; i < n / (per); i++) dt_dec_##name(b + i, dst + i * (per));   \
    }

#endif
