// The storage-type table (see dtype.h). Element types (f32, f16, bf16) are rows like any other.
#include "autograd/dtype.h"
#include <string.h>
#include "autograd/quant.h"

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
    // ggml's block types (autograd/quant_legacy.c, quant_k.c)
    [DT_Q8_0] = {"q8_0", DT_QK, sizeof(dt_block_q8_0), true, dt_q8_0_to_f32, dt_q8_0_from_f32, NULL},
    [DT_Q4_0] = {"q4_0", DT_QK, sizeof(dt_block_q4_0), true, dt_q4_0_to_f32, dt_q4_0_from_f32, NULL},
    [DT_Q4_1] = {"q4_1", DT_QK, sizeof(dt_block_q4_1), true, dt_q4_1_to_f32, dt_q4_1_from_f32, NULL},
    [DT_Q5_0] = {"q5_0", DT_QK, sizeof(dt_block_q5_0), true, dt_q5_0_to_f32, dt_q5_0_from_f32, NULL},
    [DT_Q5_1] = {"q5_1", DT_QK, sizeof(dt_block_q5_1), true, dt_q5_1_to_f32, dt_q5_1_from_f32, NULL},
    [DT_Q4_K] = {"q4_K", DT_QK_K, sizeof(dt_block_q4_K), true, dt_q4_K_to_f32, dt_q4_K_from_f32, NULL},
    [DT_Q5_K] = {"q5_K", DT_QK_K, sizeof(dt_block_q5_K), true, dt_q5_K_to_f32, dt_q5_K_from_f32, NULL},
    [DT_Q6_K] = {"q6_K", DT_QK_K, sizeof(dt_block_q6_K), true, dt_q6_K_to_f32, dt_q6_K_from_f32, NULL},
    // bitsandbytes' 4-bit types (autograd/quant_nf4.c): the data is two values a byte (the storage
    // "block" here); the absmax of each 64-value block of the flattened tensor is in W->aux, so only
    // rows widen
    [DT_NF4] = {"nf4", 2, 1, true, NULL, NULL, dt_nf4_row_to_f32},
    [DT_FP4] = {"fp4", 2, 1, true, NULL, NULL, dt_nf4_row_to_f32},
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
