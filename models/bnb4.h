// bitsandbytes 4-bit checkpoints as published on the Hub (transformers' save_pretrained of a model loaded
// with BitsAndBytesConfig(load_in_4bit=True)): config.json has "quantization_config" with quant_method
// "bitsandbytes" and load_in_4bit, and each quantized linear "X.weight" is a U8 tensor of packed nibbles
// beside its QuantState (bitsandbytes/functional.py QuantState.as_dict(packed=True)):
//   X.weight.absmax              F32 (n_blocks), or U8 when double-quantized
//   X.weight.quant_map           F32 (16): the NF4/FP4 code
//   X.weight.nested_absmax       F32 (ceil(n_blocks / nested_blocksize))   double quantization only
//   X.weight.nested_quant_map    F32 (256)                                 double quantization only
//   X.weight.quant_state.bitsandbytes__nf4 (or __fp4)  U8: JSON {"quant_type", "blocksize", "dtype",
//       "shape", and when double-quantized "nested_blocksize", "nested_dtype", "nested_offset"}
// Each becomes one NF4/FP4 tensor (dt_st_tensor with st_dtype DT_ST_BLOCK, aux its dt_nf4_state).
#ifndef DT_BNB4_H
#define DT_BNB4_H
#include <stdbool.h>
#include "autograd/context.h"
#include "models/safetensors.h"

typedef struct dt_bnb4 dt_bnb4;

// dir: the model folder (its config.json is read). *out stays NULL for a model that is not a bitsandbytes
// 4-bit checkpoint. Errors (DT_EINPUT) name the file, the tensor and the missing or malformed companion.
int dt_bnb4_open(dt_ctx *ctx, const char *dir, const dt_safetensors *st, dt_bnb4 **out);
void dt_bnb4_close(dt_bnb4 *b); // NULL is fine
// The 4-bit tensor "X.weight", or NULL when that name is not a quantized weight.
const dt_st_tensor *dt_bnb4_find(const dt_bnb4 *b, const char *name);
// Whether name is one of the companions (absmax, quant_map, ...) rather than a model tensor.
bool dt_bnb4_is_companion(const char *name);

#endif
