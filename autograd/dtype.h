// Storage-type traits: one row per type a frozen weight can be stored in (ggml's type_traits is the
// model). Everything that reads a frozen weight — the backends' frozen-linear entry, embedding rows,
// merge, conversion at load — asks this table how a type is laid out and how to widen it, so a new
// weight type is a row here plus its kernels, and no call site changes.
#ifndef DT_DTYPE_H
#define DT_DTYPE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/tensor.h"

typedef struct dt_type_traits {
    const char *name;     // "f32", "bf16", "q4_K", "nf4": ggml's names where ggml has the type
    int64_t block;        // values per block (1 for element types)
    size_t block_bytes;   // bytes per block
    bool quantized;
    // n values (a multiple of block) of block-contiguous data -> f32. NULL for non-float types (i32).
    void (*to_f32)(const void *src, float *dst, int64_t n);
    // f32 -> storage, n a multiple of block, round to nearest; NULL when the type cannot be written.
    void (*from_f32)(const float *src, void *dst, int64_t n);
    // Optional: row `row` of W (W->shape[ndim-1] values) -> f32, for types whose quantization state
    // lives outside the blocks (W->aux). NULL: to_f32 on the row's own bytes.
    void (*row_to_f32)(const dt_tensor *W, int64_t row, float *dst);
} dt_type_traits;

// The row of t, or NULL for a value that is no type.
const dt_type_traits *dt_type_traits_of(dt_dtype t);
// Bytes of n values of type t (n a multiple of the block; 0 for an unknown type).
size_t dt_type_row_bytes(dt_dtype t, int64_t n);
// Row `row` of the 2-D (or higher, rows over the last dim) tensor W as f32 into dst (last-dim values).
void dt_tensor_row_f32(const dt_tensor *W, int64_t row, float *dst);
// Looks a type up by its traits name ("bf16", "q4_K"); DT_DTYPE_COUNT when none has it.
dt_dtype dt_type_by_name(const char *name);

#endif
