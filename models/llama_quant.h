// Quantizing a model's frozen linear weights as they are loaded (recipe model.quantize, QLoRA's NF4 with
// optional double quantization, or ggml's Q8_0/Q4_0), and what the loaded base takes in memory.
#ifndef DT_LLAMA_QUANT_H
#define DT_LLAMA_QUANT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "autograd/backend.h"
#include "autograd/quant.h"
#include "autograd/tensor.h"

struct dt_llama;

// Bytes a (rows, cols) weight takes in the weight block as type q, its quantization state included
// (64-byte aligned pieces).
size_t dt_lq_bytes(dt_dtype q, bool double_quant, int64_t rows, int64_t cols);
// Quantizes src (rows, cols) f32 into dst (dt_lq_bytes bytes, 64-byte aligned) and makes *out a view of it
// (dtype q, aux the NF4/FP4 state kept in dst). name: for messages (rows must hold whole blocks).
int dt_lq_fill(dt_ctx *ctx, const char *name, dt_dtype q, bool double_quant, const float *src, int64_t rows, int64_t cols,
               void *dst, dt_tensor *out);
// NF4/FP4 on a device. The nibbles and the state's arrays (absmax, or the double-quantized codes and the
// nested absmax) go to device memory; the state itself stays in host memory with its pointers into the
// device copy: the device decoder (autograd/cuda/dequant.cu) takes it by value.
// Bytes a tensor of numel values with state st takes on the device (64-byte aligned pieces).
size_t dt_lq_device_bytes(const dt_nf4_state *st, int64_t numel);
// Copies qs (numel / 2 bytes) and st's arrays into device memory dst (dt_lq_device_bytes bytes); *dev
// becomes st with its array pointers into dst, and *dev_qs the nibbles' device address.
void dt_lq_upload_nf4(const dt_backend *be, void *dst, const dt_nf4_state *st, const void *qs, int64_t numel,
                      dt_nf4_state *dev, void **dev_qs);
// Bytes held by the model's frozen weights (every tensor, tied embeddings once, quantization state
// included); *quantized gets the part in block-quantized types.
size_t dt_llama_base_bytes(const struct dt_llama *m, size_t *quantized);

#endif
