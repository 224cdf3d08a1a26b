#include "autograd/tensor.h"
#include <string.h>
#include "autograd/dtype.h"

size_t dt_dtype_size(dt_dtype t) {
    switch (t) {
    case DT_F32: case DT_I32: return 4;
    case DT_F16: case DT_BF16: return 2;
    default: return 0;
    }
}

const char *dt_dtype_name(dt_dtype t) {
    switch (t) {
    case DT_F32: return "F32";
    case DT_F16: return "F16";
    case DT_BF16: return "BF16";
    case DT_I32: return "I32";
    default: {
        const dt_type_traits *tr = dt_type_traits_of(t);
        return tr ? tr->name : "?";
    }
    }
}

int64_t dt_numel(const dt_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t dt_nbytes(const dt_tensor *t) {
    if (t->ndim == 0) return dt_type_row_bytes(t->dtype, 1);
    int64_t last = t->shape[t->ndim - 1];
    return (size_t)(dt_numel(t) / (last ? last : 1)) * dt_type_row_bytes(t->dtype, last);
}

void dt_tensor_set(dt_tensor *t, dt_dtype dtype, void *data, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->device = DT_DEV_CPU;
    t->ndim = ndim;
    t->data = data;
    for (int i = 0; i < DT_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
}

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float dt_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t dt_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1); // round to nearest even
    return (uint16_t)(u >> 16);
}

float dt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return u2f(sign);
        // subnormal: value = man * 2^-24
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (man << 13));
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t dt_f32_to_f16(float f) {
    uint32_t u = f2u(f), sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00);  // NaN
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); // overflow to inf (>= 65520 rounds up)
    if (a < 0x38800000u) {                                  // below the smallest normal 2^-14
        if (a < 0x33000000u) return (uint16_t)sign;         // below half of the smallest subnormal
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                           // 14 + (127 - e) - 1 ... maps into 10 bits
        uint32_t half = 1u << (shift - 1), rest = m & ((1u << shift) - 1);
        uint32_t r = m >> shift;
        if (rest > half || (rest == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u; // rebias exponent 127 -> 15
    uint32_t low = r & 0x1fff;
    r >>= 13;
    if (low > 0x1000 || (low == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

void dt_convert_to_f32(float *dst, const void *src, dt_dtype src_type, size_t n) {
    if (src_type == DT_F32) { memmove(dst, src, n * 4); return; }
    if (src_type != DT_BF16 && src_type != DT_F16) { // block types: through their traits row
        const dt_type_traits *tr = dt_type_traits_of(src_type);
        if (tr && tr->to_f32) tr->to_f32(src, dst, (int64_t)n);
        return;
    }
    const uint16_t *s = src;
    if (src_type == DT_BF16) {
        #pragma omp parallel for if (n > 65536)
        for (size_t i = 0; i < n; i++) dst[i] = dt_bf16_to_f32(s[i]);
    } else if (src_type == DT_F16) {
        #pragma omp parallel for if (n > 65536)
        for (size_t i = 0; i < n; i++) dst[i] = dt_f16_to_f32(s[i]);
    }
}

void dt_convert_from_f32(void *dst, dt_dtype dst_type, const float *src, size_t n) {
    if (dst_type == DT_F32) { memmove(dst, src, n * 4); return; }
    if (dst_type != DT_BF16 && dst_type != DT_F16) {
        const dt_type_traits *tr = dt_type_traits_of(dst_type);
        if (tr && tr->from_f32) tr->from_f32(src, dst, (int64_t)n);
        return;
    }
    uint16_t *d = dst;
    if (dst_type == DT_BF16) {
        #pragma omp parallel for if (n > 65536)
        for (size_t i = 0; i < n; i++) d[i] = dt_f32_to_bf16(src[i]);
    } else if (dst_type == DT_F16) {
        #pragma omp parallel for if (n > 65536)
        for (size_t i = 0; i < n; i++) d[i] = dt_f32_to_f16(src[i]);
    }
}
