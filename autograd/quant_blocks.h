// Block layouts of the quantized storage types, written once (the ggml ones as ggml-common.h publishes
// them; a GGUF file stores exactly these bytes). Every scale marked "f16" is an IEEE half.
// Within a block, element order is the order of the values in the row; the comment on each struct
// says which bits hold element j.
#ifndef DT_QUANT_BLOCKS_H
#define DT_QUANT_BLOCKS_H
#include <assert.h>
#include <stdint.h>

#define DT_QK 32     // values per block of the "legacy" ggml types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)
#define DT_QK_K 256  // values per super-block of the k-quants (Q4_K, Q5_K, Q6_K)
#define DT_QK_NF4 64 // values per block of bitsandbytes' 4-bit types (its default blocksize)

// value j = d * qs[j]
typedef struct { uint16_t d; int8_t qs[DT_QK]; } dt_block_q8_0;
// value j (j < 16) = d * ((qs[j] & 15) - 8); value j + 16 = d * ((qs[j] >> 4) - 8)
typedef struct { uint16_t d; uint8_t qs[DT_QK / 2]; } dt_block_q4_0;
// as Q4_0 without the -8, plus m: value = d * q + m
typedef struct { uint16_t d, m; uint8_t qs[DT_QK / 2]; } dt_block_q4_1;
// 5-bit q: low 4 bits as Q4_0's nibbles, bit 4 of element j in bit j of qh (little-endian u32);
// value = d * (q - 16)
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[DT_QK / 2]; } dt_block_q5_0;
// as Q5_0 without the -16, plus m: value = d * q + m
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[DT_QK / 2]; } dt_block_q5_1;

// 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min packed into scales[12] (see
// dt_k_scale_min); value = d * sc * q - dmin * m, q 4 bits. Sub-blocks 2i and 2i+1 share qs[32i..32i+31]:
// 2i in the low nibbles, 2i+1 in the high ones.
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[DT_QK_K / 2]; } dt_block_q4_K;
// Q4_K plus a fifth bit: bit 4 of element l of sub-block s is bit s of qh[l].
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[DT_QK_K / 8]; uint8_t qs[DT_QK_K / 2]; } dt_block_q5_K;
// 16 sub-blocks of 16 with int8 scales; 6-bit q = 4 low bits from ql, 2 high bits from qh;
// value = d * scales[s] * (q - 32). Layout per half of 128 values (n = 0, 1), l < 32:
//   element 128n + l      : ql[64n + l] & 15,      qh[32n + l] bits 0-1
//   element 128n + l + 32 : ql[64n + l + 32] & 15, qh[32n + l] bits 2-3
//   element 128n + l + 64 : ql[64n + l] >> 4,      qh[32n + l] bits 4-5
//   element 128n + l + 96 : ql[64n + l + 32] >> 4, qh[32n + l] bits 6-7
typedef struct { uint8_t ql[DT_QK_K / 2]; uint8_t qh[DT_QK_K / 4]; int8_t scales[DT_QK_K / 16]; uint16_t d; } dt_block_q6_K;

static_assert(sizeof(dt_block_q8_0) == 34, "Q8_0 block is 34 bytes");
static_assert(sizeof(dt_block_q4_0) == 18, "Q4_0 block is 18 bytes");
static_assert(sizeof(dt_block_q4_1) == 20, "Q4_1 block is 20 bytes");
static_assert(sizeof(dt_block_q5_0) == 22, "Q5_0 block is 22 bytes");
static_assert(sizeof(dt_block_q5_1) == 24, "Q5_1 block is 24 bytes");
static_assert(sizeof(dt_block_q4_K) == 144, "Q4_K block is 144 bytes");
static_assert(sizeof(dt_block_q5_K) == 176, "Q5_K block is 176 bytes");
static_assert(sizeof(dt_block_q6_K) == 210, "Q6_K block is 210 bytes");

// bitsandbytes NF4/FP4: 64 values per block, two per byte, the EARLIER element in the HIGH nibble;
// value = code[nibble] * absmax[block]. The absmax lives outside the data (dt_nf4_state in quant.h).
typedef struct { uint8_t qs[DT_QK_NF4 / 2]; } dt_block_nf4;
static_assert(sizeof(dt_block_nf4) == 32, "NF4/FP4 block is 32 bytes");

#endif
