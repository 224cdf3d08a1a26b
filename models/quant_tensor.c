// Widening copies of block-quantized tensors.
#include "models/quant_tensor.h"
#include <stdlib.h>
#include <string.h>
#include "autograd/quant.h"

int dt_quant_tensor_copy(dt_ctx *ctx, const char *file, const dt_st_tensor *t, dt_dtype dst_dtype, void *dst) {
    int64_t block;
    if (!dt_quant_layout(t->dtype, &block, NULL))
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' has dtype %s, which cannot be read as floats", file, t->name,
                       dt_dtype_name(t->dtype));
    if (dst_dtype != DT_F32 && dst_dtype != DT_F16 && dst_dtype != DT_BF16)
        return dt_fail(ctx, DT_EINTERNAL, "%s: tensor '%s': cannot convert to %s", file, t->name, dt_dtype_name(dst_dtype));
    const int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
    int64_t rows = 1;
    for (int d = 0; d + 1 < t->ndim; d++) rows *= t->shape[d];
    if (cols % block)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': rows of %lld values are not whole blocks of %lld", file,
                       t->name, (long long)cols, (long long)block);
    float *row = dst_dtype == DT_F32 ? NULL : malloc((size_t)cols * sizeof *row);
    if (dst_dtype != DT_F32 && !row) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    const size_t out_size = dt_dtype_size(dst_dtype);
    for (int64_t r = 0; r < rows; r++) {
        float *o = row ? row : (float *)dst + r * cols;
        dt_quant_row_f32(t->dtype, t->data, t->aux, r, cols, o);
        if (row) dt_convert_from_f32((char *)dst + (size_t)(r * cols) * out_size, dst_dtype, row, (size_t)cols);
    }
    free(row);
    return DT_OK;
}
