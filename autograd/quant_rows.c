// One entry point per row for every block-quantized dtype: the ggml types dequantize the row's own
// bytes; NF4/FP4 also need their quantization state (absmax), which lives outside the data.
#include <strings.h>
#include "autograd/quant.h"

static const struct {
    dt_dtype t;
    const char *name; // ggml's spelling (bitsandbytes' for NF4/FP4)
    int64_t block;
    size_t bytes;
    void (*to_f32)(const void *, float *, int64_t);
    void (*from_f32)(const float *, void *, int64_t);
} LAYOUTS[] = {
    {DT_Q8_0, "q8_0", DT_QK, sizeof(dt_block_q8_0), dt_q8_0_to_f32, dt_q8_0_from_f32},
    {DT_Q4_0, "q4_0", DT_QK, sizeof(dt_block_q4_0), dt_q4_0_to_f32, dt_q4_0_from_f32},
    {DT_Q4_1, "q4_1", DT_QK, sizeof(dt_block_q4_1), dt_q4_1_to_f32, dt_q4_1_from_f32},
    {DT_Q5_0, "q5_0", DT_QK, sizeof(dt_block_q5_0), dt_q5_0_to_f32, dt_q5_0_from_f32},
    {DT_Q5_1, "q5_1", DT_QK, sizeof(dt_block_q5_1), dt_q5_1_to_f32, dt_q5_1_from_f32},
    {DT_Q4_K, "q4_K", DT_QK_K, sizeof(dt_block_q4_K), dt_q4_K_to_f32, dt_q4_K_from_f32},
    {DT_Q5_K, "q5_K", DT_QK_K, sizeof(dt_block_q5_K), dt_q5_K_to_f32, dt_q5_K_from_f32},
    {DT_Q6_K, "q6_K", DT_QK_K, sizeof(dt_block_q6_K), dt_q6_K_to_f32, dt_q6_K_from_f32},
    {DT_NF4, "nf4", DT_QK_NF4, sizeof(dt_block_nf4), NULL, NULL},
    {DT_FP4, "fp4", DT_QK_NF4, sizeof(dt_block_nf4), NULL, NULL},
};
#define N_LAYOUTS (sizeof LAYOUTS / sizeof LAYOUTS[0])

bool dt_quant_layout(dt_dtype t, int64_t *block, size_t *block_bytes) {
    for (size_t i = 0; i < N_LAYOUTS; i++)
        if (LAYOUTS[i].t == t) {
            if (block) *block = LAYOUTS[i].block;
            if (block_bytes) *block_bytes = LAYOUTS[i].bytes;
            return true;
        }
    return false;
}

void dt_quant_row_f32(dt_dtype t, const void *data, const void *aux, int64_t row, int64_t cols, float *dst) {
    for (size_t i = 0; i < N_LAYOUTS; i++) {
        if (LAYOUTS[i].t != t) continue;
        const int64_t nb = cols / LAYOUTS[i].block; // blocks per row
        const uint8_t *p = (const uint8_t *)data + (size_t)(row * nb) * LAYOUTS[i].bytes;
        if (LAYOUTS[i].to_f32) LAYOUTS[i].to_f32(p, dst, cols);
        else dt_nf4_to_f32(aux, p, row * nb, nb, dst);
        return;
    }
}

bool dt_quant_row_from_f32(dt_dtype t, const float *src, void *dst, int64_t n) {
    for (size_t i = 0; i < N_LAYOUTS; i++)
        if (LAYOUTS[i].t == t && LAYOUTS[i].from_f32) {
            LAYOUTS[i].from_f32(src, dst, n);
            return true;
        }
    return false;
}

size_t dt_row_bytes(dt_dtype t, int64_t n) {
    int64_t block;
    size_t bytes;
    if (dt_quant_layout(t, &block, &bytes)) return (size_t)(n / block) * bytes;
    return (size_t)n * dt_dtype_size(t);
}

const char *dt_quant_name(dt_dtype t) {
    for (size_t i = 0; i < N_LAYOUTS; i++)
        if (LAYOUTS[i].t == t) return LAYOUTS[i].name;
    return NULL;
}

int dt_quant_from_name(const char *name) {
    for (size_t i = 0; i < N_LAYOUTS; i++)
        if (!strcasecmp(LAYOUTS[i].name, name)) return (int)LAYOUTS[i].t;
    return -1;
}
