#include "autograd/tensor.h"
#include <string.h>
#include "autograd/dtype.h"
#include "autograd/half.h"

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

float dt_bf16_to_f32(uint16_t h) { return dt_hf_bf16_to_f32(h); }
uint16_t dt_f32_to_bf16(float f) { return dt_hf_f32_to_bf16(f); }
float dt_f16_to_f32(uint16_t h) { return dt_hf_f16_to_f32(h); }
uint16_t dt_f32_to_f16(float f) { return dt_hf_f32_to_f16(f); }

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

int64_t dt_f16_count_inf(const uint16_t *x, int64_t n) {
    int64_t k = 0;
    #pragma omp simd reduction(+ : k)
    for (int64_t i = 0; i < n; i++) k += (x[i] & 0x7fffu) == 0x7c00u;
    return k;
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
