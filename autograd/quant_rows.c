// Row-level helpers over the storage-type traits (autograd/dtype.h) for the quantized types, and NF4/FP4's
// row_to_f32: their absmax lives in the tensor's aux (a dt_nf4_state), outside the blocks.
#include <strings.h>
#include "autograd/dtype.h"
#include "autograd/quant.h"

// bitsandbytes' blocks run over the flattened tensor, so a row may start or end inside one (e.g. rows of
// 96 values with 64-value blocks); rows have an even length, so each starts on a byte.
void dt_nf4_row_to_f32(const dt_tensor *W, int64_t row, float *dst) {
    const dt_nf4_state *st = W->aux;
    const int64_t cols = W->shape[W->ndim - 1], f0 = row * cols;
    const uint8_t *d = W->data;
    for (int64_t j = 0; j < cols;) {
        const int64_t b = (f0 + j) / st->block, end = (b + 1) * st->block - f0 < cols ? (b + 1) * st->block - f0 : cols;
        const float a = dt_nf4_absmax(st, b);
        for (; j < end; j++) {
            const int64_t f = f0 + j;
            dst[j] = st->code[f & 1 ? d[f / 2] & 15 : d[f / 2] >> 4] * a;
        }
    }
}

bool dt_quant_layout(dt_dtype t, int64_t *block, size_t *block_bytes) {
    const dt_type_traits *tr = dt_type_traits_of(t);
    if (!tr || !tr->quantized) return false;
    if (block) *block = tr->block;
    if (block_bytes) *block_bytes = tr->block_bytes;
    return true;
}

void dt_quant_row_f32(dt_dtype t, const void *data, const void *aux, int64_t row, int64_t cols, float *dst) {
    dt_tensor W;
    dt_tensor_set(&W, t, (void *)data, 2, (const int64_t[]){row + 1, cols});
    W.aux = aux;
    dt_tensor_row_f32(&W, row, dst);
}

bool dt_quant_row_from_f32(dt_dtype t, const float *src, void *dst, int64_t n) {
    const dt_type_traits *tr = dt_type_traits_of(t);
    if (!tr || !tr->quantized || !tr->from_f32) return false;
    tr->from_f32(src, dst, n);
    return true;
}

const char *dt_quant_name(dt_dtype t) {
    const dt_type_traits *tr = dt_type_traits_of(t);
    return tr && tr->quantized ? tr->name : NULL;
}

int dt_quant_from_name(const char *name) {
    for (int t = 0; t < DT_DTYPE_COUNT; t++) {
        const dt_type_traits *tr = dt_type_traits_of((dt_dtype)t);
        if (tr && tr->quantized && !strcasecmp(tr->name, name)) return t;
    }
    return -1;
}
