// The 16-bit float conversions (bf16 and IEEE f16 <-> f32), defined once for the CPU (autograd/tensor.c's
// dt_bf16_to_f32 and friends wrap them) and for the CUDA kernels (autograd/cuda/), where DT_HD makes them
// device functions too: so the device widens and rounds bit for bit as the CPU does. Rounding is to
// nearest even; NaNs stay NaNs (quietened); f16 overflow gives infinity; subnormals are kept.
#ifndef DT_HALF_H
#define DT_HALF_H
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define DT_HD __host__ __device__
#else
#define DT_HD
#endif

static inline DT_HD uint32_t dt_hf_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline DT_HD float dt_hf_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline DT_HD float dt_hf_bf16_to_f32(uint16_t h) { return dt_hf_float((uint32_t)h << 16); }

static inline DT_HD uint16_t dt_hf_f32_to_bf16(float f) {
    uint32_t u = dt_hf_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);                                          // round to nearest even
    return (uint16_t)(u >> 16);
}

static inline DT_HD float dt_hf_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return dt_hf_float(sign);
        const float v = (float)man * (1.0f / 16777216.0f); // subnormal: man * 2^-24
        return sign ? -v : v;
    }
    if (exp == 31) return dt_hf_float(sign | 0x7f800000u | (man << 13));
    return dt_hf_float(sign | ((exp + 112) << 23) | (man << 13));
}

static inline DT_HD uint16_t dt_hf_f32_to_f16(float f) {
    const uint32_t u = dt_hf_bits(f), sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00);  // NaN
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); // overflow to inf (>= 65520 rounds up)
    if (a < 0x38800000u) {                                  // below the smallest normal 2^-14
        if (a < 0x33000000u) return (uint16_t)sign;         // below half of the smallest subnormal
        const uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - e; // the 24-bit significand shifted into the 10 subnormal bits
        const uint32_t half = 1u << (shift - 1), rest = m & ((1u << shift) - 1);
        uint32_t r = m >> shift;
        if (rest > half || (rest == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u; // rebias exponent 127 -> 15
    const uint32_t low = r & 0x1fff;
    r >>= 13;
    if (low > 0x1000 || (low == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

#endif
