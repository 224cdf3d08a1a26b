// Quantized storage types: dequantization (to_f32) and quantization (from_f32) of ggml's Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K and bitsandbytes' NF4/FP4 (with its double quantization of the
// block scales). Layouts in quant_blocks.h.
//
// to_f32 (n values, a multiple of the type's block, from block-contiguous data) computes exactly
// ggml's dequantize_row_* in float arithmetic without fused multiply-adds (we build with ISO C, where
// GCC does not contract), so the result is bit-identical to tests/golden/gen_quant.py's PyTorch
// reference and to ggml's scalar code.
// from_f32 follows ggml's reference quantizers (quantize_row_*_ref: no importance matrix), the ones
// llama-quantize uses when given no imatrix; they agree with ggml's output bit for bit except where
// ggml's own build contracts a*b+c into an FMA (a last-bit difference in a scale, rarely a changed q).
#ifndef DT_QUANT_H
#define DT_QUANT_H
#include <stdbool.h>
#include <stdint.h>
#include "autograd/quant_blocks.h"
#include "autograd/tensor.h"

void dt_q8_0_to_f32(const void *src, float *dst, int64_t n);
void dt_q4_0_to_f32(const void *src, float *dst, int64_t n);
void dt_q4_1_to_f32(const void *src, float *dst, int64_t n);
void dt_q5_0_to_f32(const void *src, float *dst, int64_t n);
void dt_q5_1_to_f32(const void *src, float *dst, int64_t n);
void dt_q4_K_to_f32(const void *src, float *dst, int64_t n);
void dt_q5_K_to_f32(const void *src, float *dst, int64_t n);
void dt_q6_K_to_f32(const void *src, float *dst, int64_t n);

void dt_q8_0_from_f32(const float *src, void *dst, int64_t n);
void dt_q4_0_from_f32(const float *src, void *dst, int64_t n);
void dt_q4_1_from_f32(const float *src, void *dst, int64_t n);
void dt_q5_0_from_f32(const float *src, void *dst, int64_t n);
void dt_q5_1_from_f32(const float *src, void *dst, int64_t n);
void dt_q4_K_from_f32(const float *src, void *dst, int64_t n);
void dt_q5_K_from_f32(const float *src, void *dst, int64_t n);
void dt_q6_K_from_f32(const float *src, void *dst, int64_t n);

// ggml's nearest_int: round half to even through the float mantissa trick (|x| <= 4194303).
int dt_nearest_int(float x);

// Shorthands over the traits table (autograd/dtype.h), whose rows for these types are in dtype.c.
// Layout of a block-quantized dtype (values and bytes per block); false for any other dtype.
bool dt_quant_layout(dt_dtype t, int64_t *block, size_t *block_bytes);
// Row `row` (cols values, a multiple of the block) of a quantized tensor whose data starts at data ->
// dst. aux: the tensor's dt_nf4_state for NF4/FP4 (NULL for the ggml types).
void dt_quant_row_f32(dt_dtype t, const void *data, const void *aux, int64_t row, int64_t cols, float *dst);
// NF4/FP4's traits row_to_f32: W->aux is its dt_nf4_state.
void dt_nf4_row_to_f32(const dt_tensor *W, int64_t row, float *dst);

// n values (a multiple of the block) -> a ggml type's blocks (its from_f32 above); false for NF4/FP4
// (whose absmax goes elsewhere) and non-quantized dtypes.
bool dt_quant_row_from_f32(dt_dtype t, const float *src, void *dst, int64_t n);
static inline bool dt_is_quant(dt_dtype t) { return dt_quant_layout(t, NULL, NULL); }
// "q8_0", "q4_K", "nf4", ... (NULL for other dtypes); and back, case-insensitively (-1 when unknown).
const char *dt_quant_name(dt_dtype t);
int dt_quant_from_name(const char *name);

// ---- bitsandbytes 4-bit ----
typedef enum { DT_4BIT_NF4 = 0, DT_4BIT_FP4 = 1 } dt_4bit_kind;
#define DT_BNB_NESTED_BLOCK 256 // values per block of the double-quantized absmax (bitsandbytes' choice)

// The quantization state of one NF4/FP4 tensor (bitsandbytes' QuantState): the data holds only the
// packed nibbles; absmax is either plain f32 or itself 8-bit quantized ("double quantization":
// absmax[b] = nested_code[qabsmax[b]] * nested_absmax[b / nested_block] + offset).
typedef struct dt_nf4_state {
    dt_4bit_kind kind;
    int64_t block;               // values per absmax (64 by default; any even number here)
    float code[16];              // nibble -> value in [-1, 1] (bitsandbytes' quant_map)
    const float *absmax;         // (n_blocks) f32, or NULL when double-quantized
    const uint8_t *qabsmax;      // (n_blocks) when double-quantized
    const float *nested_absmax;  // (ceil(n_blocks / nested_block))
    float nested_code[256];      // bitsandbytes' nested_quant_map
    int64_t nested_block;        // 256
    float offset;                // the mean subtracted before the absmax were quantized
} dt_nf4_state;

// bitsandbytes' code tables: NF4 (QLoRA's normal-float levels) and FP4 (e2m1 over 12, sign bit 8).
void dt_4bit_code(dt_4bit_kind kind, float code[16]);
// bitsandbytes' create_dynamic_map(signed=True): the 8-bit code of the double-quantized absmax.
void dt_bnb_dynamic_map(float code[256]);
// absmax of block b (dequantized when double-quantized).
float dt_nf4_absmax(const dt_nf4_state *st, int64_t b);
// Values of blocks [b0, b0 + nb) -> dst (nb * block floats); q points at the packed bytes of block b0.
void dt_nf4_to_f32(const dt_nf4_state *st, const uint8_t *q, int64_t b0, int64_t nb, float *dst);
// n values (a multiple of block) -> q (n/2 bytes) and absmax (n/block): each value scaled by 1/absmax
// and given the nearest code (ties to the lower code, as bitsandbytes' threshold tree).
void dt_nf4_from_f32(const float code[16], int64_t block, const float *x, int64_t n, uint8_t *q, float *absmax);
// Double quantization of n absmax values as bitsandbytes' quantize_4bit(compress_statistics=True):
// offset = mean, then blockwise 8-bit dynamic quantization of (absmax - offset) in blocks of nested_block.
// q (n), nested_absmax (ceil(n / nested_block)).
void dt_nf4_double_quant(const float *absmax, int64_t n, int64_t nested_block, const float dyn[256], uint8_t *q,
                         float *nested_absmax, float *offset);

#endif
