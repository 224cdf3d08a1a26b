// The storage-type table (see dtype.h). Element types (f32, f16, bf16) are rows like any other.
#include "autograd/dtype.h"
#include <string.h>

static void f32_to_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f32_from_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void bf16_to_f32(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) dst[i] = dt_bf16_to_f32(s[i]);
}
static void bf16_from_f32(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = dt_f32_to_bf16(src[i]);
}
static void f16_to_f32(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = dt_f16_to_f32(s[i]);
}
static void f16_from_f32(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = dt_f32_to_f16(src[i]);
}

static const dt_type_traits TRAITS[DT_DTYPE_COUNT] = {
    [DT_F32] = {"f32", 1, 4, false, f32_to_f32, f32_from_f32, NULL},
    [DT_F16] = {"f16", 1, 2, false, f16_to_f32, f16_from_f32, NULL},
    [DT_BF16] = {"bf16", 1, 2, false, bf16_to_f32, bf16_from_f32, NULL},
    [DT_I32] = {"i32", 1, 4, false, NULL, NULL, NULL},
};

const dt_type_traits *dt_type_traits_of(dt_dtype t) {
    if ((unsigned)t >= DT_DTYPE_COUNT || !TRAITS[t].name) return NULL;
    return &TRAITS[t];
}

size_t dt_type_row_bytes(dt_dtype t, int64_t n) {
    const dt_type_traits *tr = dt_type_traits_of(t);
    if (!tr || n < 0) return 0;
    return (size_t)(n / tr->block) * tr->block_bytes;
}

void dt_tensor_row_f32(const dt_tensor *W, int64_t row, float *dst) {
    const dt_type_traits *tr = dt_type_traits_of(W->dtype);
    int64_t n = W->shape[W->ndim - 1];
    if (tr->row_to_f32) {
        tr->row_to_f32(W, row, dst);
        return;
    }
    tr->to_f32((const uint8_t *)W->data + (size_t)row * dt_type_row_bytes(W->dtype, n), dst, n);
}

dt_dtype dt_type_by_name(const char *name) {
    for (int t = 0; t < DT_DTYPE_COUNT; t++)
        if (TRAITS[t].name && strcmp(TRAITS[t].name, name) == 0) return (dt_dtype)t;
    return DT_DTYPE_COUNT;
}
