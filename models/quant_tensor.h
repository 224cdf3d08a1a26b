// Block-quantized tensors handed out as dt_st_tensor (st_dtype DT_ST_BLOCK) by the GGUF and bitsandbytes
// sources: widening them to F32/F16/BF16 for the code paths that want plain floats (merge, f32 loads).
#ifndef DT_QUANT_TENSOR_H
#define DT_QUANT_TENSOR_H
#include "autograd/context.h"
#include "models/safetensors.h"

// Dequantizes t (rows of t->shape[ndim-1] values) into dst as dst_dtype (F32, F16 or BF16), a row at a
// time. DT_EINPUT naming file and tensor when t is not a block type this build knows.
int dt_quant_tensor_copy(dt_ctx *ctx, const char *file, const dt_st_tensor *t, dt_dtype dst_dtype, void *dst);

#endif
