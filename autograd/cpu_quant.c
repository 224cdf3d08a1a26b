// Fast CPU frozen-linear kernels for the storage types most used as bases (Q8_0, Q4_0, Q4_K, NF4, and
// f16/bf16 where no bf16 matmul runs them): the generic reference path's loops (cpu_frozen.c: widen a
// panel of W's rows to f32, one sgemm per panel, or for a few rows of x widen-and-dot a row at a time;
// the whole matrix is never widened), with each type's rows widened by AVX2 (F16C for f16) code instead
// of the scalar traits row. The AVX2 widening does the same float operations as the scalar reference
// (one multiply, or a multiply then a subtraction, never fused; f16 and bf16 widen exactly), so it is
// bit-identical to it (f16: for every value but signalling NaNs, which F16C quietens); test_quant_cpu
// and test_frozen compare the two paths. Without AVX2 the generic path serves every type.
#include <string.h>
#include "autograd/cpu_kernels.h"
#include "autograd/dtype.h"
#include "autograd/quant.h"
#ifdef __AVX2__
#include <immintrin.h>
#endif

typedef dt_row_f32_fn row_fn;

#ifdef __AVX2__
// One f16 scale to f32: F16C's single conversion where the CPU has it (exact, as the scalar one, which
// is a function call per block and showed in decode profiles).
static inline float f16_scale(uint16_t h) {
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    return dt_f16_to_f32(h);
#endif
}
static inline __m256 bcast_f16(uint16_t h) { return _mm256_set1_ps(f16_scale(h)); }

// 8 bytes -> 8 int32 lanes
static inline __m256i load8_u8(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v));
}

static void row_q8_0(const dt_tensor *W, int64_t row, float *dst) {
    const int64_t cols = W->shape[1], nb = cols / DT_QK;
    const dt_block_q8_0 *b = (const dt_block_q8_0 *)W->data + row * nb;
    for (int64_t i = 0; i < nb; i++, dst += DT_QK) {
        const __m256 d = bcast_f16(b[i].d);
        for (int k = 0; k < 4; k++) {
            int64_t v;
            memcpy(&v, b[i].qs + 8 * k, 8);
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)));
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(q, d));
        }
    }
}

static void row_q4_0(const dt_tensor *W, int64_t row, float *dst) {
    const int64_t cols = W->shape[1], nb = cols / DT_QK;
    const dt_block_q4_0 *b = (const dt_block_q4_0 *)W->data + row * nb;
    const __m256i m15 = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < nb; i++, dst += DT_QK) {
        const __m256 d = bcast_f16(b[i].d);
        for (int k = 0; k < 2; k++) {
            __m256i q = load8_u8(b[i].qs + 8 * k);
            __m256 lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(q, m15), eight));
            __m256 hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(q, 4), eight));
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(lo, d));
            _mm256_storeu_ps(dst + 16 + 8 * k, _mm256_mul_ps(hi, d));
        }
    }
}

static void row_q4_K(const dt_tensor *W, int64_t row, float *dst) {
    const int64_t cols = W->shape[1], nb = cols / DT_QK_K;
    const dt_block_q4_K *b = (const dt_block_q4_K *)W->data + row * nb;
    const __m256i m15 = _mm256_set1_epi32(15);
    for (int64_t i = 0; i < nb; i++) {
        const float d = f16_scale(b[i].d), dmin = f16_scale(b[i].dmin);
        const uint8_t *q = b[i].qs, *s = b[i].scales;
        for (int j = 0; j < 8; j += 2, q += 32) {
            float dd[2], mm[2];
            for (int h = 0; h < 2; h++) { // 6-bit scale and min of sub-block j + h (quant_blocks.h)
                const int t = j + h;
                const uint8_t sc = t < 4 ? s[t] & 63 : (uint8_t)((s[t + 4] & 15) | (s[t - 4] >> 6) << 4);
                const uint8_t m = t < 4 ? s[t + 4] & 63 : (uint8_t)((s[t + 4] >> 4) | (s[t] >> 6) << 4);
                dd[h] = d * (float)sc;
                mm[h] = dmin * (float)m;
            }
            const __m256 d1 = _mm256_set1_ps(dd[0]), m1 = _mm256_set1_ps(mm[0]), d2 = _mm256_set1_ps(dd[1]),
                         m2 = _mm256_set1_ps(mm[1]);
            for (int k = 0; k < 4; k++) {
                __m256i v = load8_u8(q + 8 * k);
                __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, m15)), hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
                _mm256_storeu_ps(dst + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d1, lo), m1));
                _mm256_storeu_ps(dst + 32 + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d2, hi), m2));
            }
            dst += 64;
        }
    }
}

static void row_bf16(const dt_tensor *W, int64_t row, float *dst) {
    const int64_t cols = W->shape[1];
    const uint16_t *s = (const uint16_t *)W->data + row * cols;
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) { // bf16 is the top half of an f32
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + c)));
        _mm256_storeu_ps(dst + c, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; c < cols; c++) dst[c] = dt_bf16_to_f32(s[c]);
}

#ifdef __F16C__
static void row_f16(const dt_tensor *W, int64_t row, float *dst) {
    const int64_t cols = W->shape[1];
    const uint16_t *s = (const uint16_t *)W->data + row * cols;
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) _mm256_storeu_ps(dst + c, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + c))));
    for (; c < cols; c++) dst[c] = dt_f16_to_f32(s[c]);
}
#endif

// NF4/FP4 with whole 64-value blocks per row: code lookups through two 8-entry permutes.
static void row_nf4(const dt_tensor *W, int64_t row, float *dst) {
    const dt_nf4_state *st = W->aux;
    const int64_t cols = W->shape[1], nb = cols / st->block, b0 = row * nb;
    const uint8_t *q = (const uint8_t *)W->data + (size_t)(row * cols / 2);
    const __m256 c_lo = _mm256_loadu_ps(st->code), c_hi = _mm256_loadu_ps(st->code + 8);
    const __m256i m15 = _mm256_set1_epi32(15), m8 = _mm256_set1_epi32(8);
    for (int64_t b = 0; b < nb; b++) {
        const __m256 a = _mm256_set1_ps(dt_nf4_absmax(st, b0 + b));
        for (int64_t k = 0; k < st->block / 2; k += 8, q += 8, dst += 16) {
            __m256i v = load8_u8(q);
            __m256i ih = _mm256_srli_epi32(v, 4), il = _mm256_and_si256(v, m15);
            // lanes with bit 3 set take the upper half of the code
            __m256 hsel = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(ih, m8), 28));
            __m256 lsel = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(il, m8), 28));
            __m256 vh = _mm256_blendv_ps(_mm256_permutevar8x32_ps(c_lo, ih), _mm256_permutevar8x32_ps(c_hi, ih), hsel);
            __m256 vl = _mm256_blendv_ps(_mm256_permutevar8x32_ps(c_lo, il), _mm256_permutevar8x32_ps(c_hi, il), lsel);
            vh = _mm256_mul_ps(vh, a);
            vl = _mm256_mul_ps(vl, a);
            // byte j gives values 2j (high nibble) and 2j + 1 (low nibble)
            __m256 u0 = _mm256_unpacklo_ps(vh, vl), u1 = _mm256_unpackhi_ps(vh, vl);
            _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u1, 0x20));
            _mm256_storeu_ps(dst + 8, _mm256_permute2f128_ps(u0, u1, 0x31));
        }
    }
}

#endif

// The fast row widener of W's type, or NULL (then the generic path runs).
static row_fn fast_row(const dt_tensor *W) {
#ifdef __AVX2__
    switch (W->dtype) {
    case DT_Q8_0: return row_q8_0;
    case DT_Q4_0: return row_q4_0;
    case DT_Q4_K: return row_q4_K;
    case DT_BF16: return row_bf16;
#ifdef __F16C__
    case DT_F16: return row_f16;
#endif
    case DT_NF4:
    case DT_FP4: {
        const dt_nf4_state *st = W->aux;
        return st && st->block % 16 == 0 && W->shape[1] % st->block == 0 ? row_nf4 : NULL;
    }
    default: return NULL;
    }
#else
    (void)W;
    return NULL;
#endif
}

bool dt_cpu_quant_fwd(float *y, bool acc, const float *x, int64_t N, const dt_tensor *W, float *scratch) {
    row_fn f = fast_row(W);
    if (f) dt_cpu_frozen_fwd_widened(f, y, acc, x, N, W, scratch);
    return f != NULL;
}

bool dt_cpu_quant_bwd(float *dx, bool acc, const float *dy, int64_t N, const dt_tensor *W, float *scratch) {
    row_fn f = fast_row(W);
    if (f) dt_cpu_frozen_bwd_widened(f, dx, acc, dy, N, W, scratch);
    return f != NULL;
}
