// Tensors: a view over memory owned elsewhere (a weight block, a memory-mapped file, an arena).
// Contiguous, row-major, up to 4 dims. Compute is f32; the other float types are storage types for
// frozen weights, described by one traits row each (autograd/dtype.h).
#ifndef DT_TENSOR_H
#define DT_TENSOR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// New storage types are appended before DT_DTYPE_COUNT, with their row in autograd/dtype.c.
typedef enum {
    DT_F32 = 0,
    DT_F16 = 1,
    DT_BF16 = 2,
    DT_I32 = 3,
    // block-quantized (layouts in autograd/quant_blocks.h, kernels in autograd/quant*.c)
    DT_Q8_0, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_NF4, DT_FP4,
    DT_DTYPE_COUNT
} dt_dtype;
typedef enum { DT_DEV_CPU = 0, DT_DEV_CUDA = 1 } dt_device;

#define DT_MAX_DIMS 4

typedef struct dt_tensor {
    dt_dtype dtype;
    dt_device device;
    int ndim;
    int64_t shape[DT_MAX_DIMS];
    void *data;
    float *grad;          // same shape, f32; NULL until the backward pass needs it
    bool requires_grad;   // a trainable leaf, or an activation that depends on one
    const char *name;     // optional, for messages
    const void *aux;      // per-tensor quantization state kept outside the blocks, or NULL
    uint16_t *saved16;    // a bf16 copy kept for the backward by a compact graph (graph.h), or NULL
} dt_tensor;

// Bytes per element of a type stored element by element (f32, f16, bf16, i32); 0 for block types.
size_t dt_dtype_size(dt_dtype t);
const char *dt_dtype_name(dt_dtype t);
int64_t dt_numel(const dt_tensor *t);
size_t dt_nbytes(const dt_tensor *t); // block types: whole rows of blocks (see dt_type_row_bytes)
// Fills a tensor header (no allocation). Unused dims are 1.
void dt_tensor_set(dt_tensor *t, dt_dtype dtype, void *data, int ndim, const int64_t *shape);
static inline float *dt_f32(const dt_tensor *t) { return (float *)t->data; }

// Scalar conversions (round-to-nearest-even for f32 -> bf16/f16).
float dt_bf16_to_f32(uint16_t h);
uint16_t dt_f32_to_bf16(float f);
float dt_f16_to_f32(uint16_t h);
uint16_t dt_f32_to_f16(float f);
// Converts n elements of src (any float dtype) to f32.
void dt_convert_to_f32(float *dst, const void *src, dt_dtype src_type, size_t n);
void dt_convert_from_f32(void *dst, dt_dtype dst_type, const float *src, size_t n);
// How many of the n f16 values at x are infinite: what a conversion to f16 makes of every value at or
// beyond 65520 (f16 holds at most 65504), so the converters refuse a tensor that has any.
int64_t dt_f16_count_inf(const uint16_t *x, int64_t n);

#endif
