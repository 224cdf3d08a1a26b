// Block decoders of the quantized types on the device: ggml's (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
// Q6_K) are the CPU's own per-block decoders (autograd/quant_decode.h, compiled here as device functions,
// without fused multiply-adds), so the panels the frozen linear multiplies are bit-identical to the CPU's.
// bitsandbytes' NF4/FP4 (the twin of autograd/quant_nf4.c's dt_nf4_to_f32) decode from the nibbles and
// their state's arrays, which the model loader copies to the device beside them (models/llama_quant.c,
// dt_lq_upload_nf4).
// One thread decodes one block; the frozen linear (frozen.cu) calls these per panel of rows and the
// embedding per looked-up row, so the whole matrix is never widened.
#include "autograd/cuda/cuda_internal.h"
extern "C" {
#include "autograd/quant.h"
}
#include "autograd/quant_decode.h"

// dst (the type's block of values) <- the block at src: the CPU's own decoders (quant_decode.h).
__device__ void decode_block(int type, const uint8_t *src, float *dst) {
    switch (type) {
    case DT_Q8_0: dt_dec_q8_0((const dt_block_q8_0 *)src, dst); break;
    case DT_Q4_0: dt_dec_q4_0((const dt_block_q4_0 *)src, dst); break;
    case DT_Q4_1: dt_dec_q4_1((const dt_block_q4_1 *)src, dst); break;
    case DT_Q5_0: dt_dec_q5_0((const dt_block_q5_0 *)src, dst); break;
    case DT_Q5_1: dt_dec_q5_1((const dt_block_q5_1 *)src, dst); break;
    case DT_Q4_K: dt_dec_q4_K((const dt_block_q4_K *)src, dst); break;
    case DT_Q5_K: dt_dec_q5_K((const dt_block_q5_K *)src, dst); break;
    case DT_Q6_K: dt_dec_q6_K((const dt_block_q6_K *)src, dst); break;
    default: break; // not reached: dt_cuda_quant_supported refuses every other type first
    }
}

__global__ void dequant_k(float *dst, const uint8_t *src, int64_t nblocks, int type, int64_t qk, int64_t bb) {
    // dst (nblocks * qk) <- nblocks consecutive blocks of bb bytes
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nblocks; i += (int64_t)gridDim.x * blockDim.x)
        decode_block(type, src + i * bb, dst + i * qk);
}

__global__ void dequant_rows_k(float *dst, const int32_t *ids, int64_t n, const uint8_t *table, int64_t row_bytes,
                               int64_t per_row, int type, int64_t qk, int64_t bb) {
    // dst (n, per_row * qk) <- rows ids (n) of table, per_row blocks of bb bytes each
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n * per_row; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = e / per_row, j = e - i * per_row;
        decode_block(type, table + (int64_t)ids[i] * row_bytes + j * bb, dst + e * qk);
    }
}

bool dt_cuda_quant_supported(dt_dtype t) { return t >= DT_Q8_0 && t <= DT_Q6_K; }

bool dt_cuda_dequant(float *dst, const void *src, int64_t n, dt_dtype t) {
    int64_t qk;
    size_t bb;
    if (!dt_cuda_quant_supported(t) || !dt_quant_layout(t, &qk, &bb) || n % qk) return false;
    const int64_t nblocks = n / qk;
    if (nblocks == 0) return true;
    dequant_k<<<dt_cuda_blocks(nblocks, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(
        dst, (const uint8_t *)src, nblocks, (int)t, qk, (int64_t)bb);
    return LAUNCH_OK("dequant_k");
}

bool dt_cuda_dequant_rows(float *dst, const int32_t *ids, int64_t n, const dt_tensor *table) {
    int64_t qk;
    size_t bb;
    const int64_t D = table->shape[1];
    if (!dt_cuda_quant_supported(table->dtype) || !dt_quant_layout(table->dtype, &qk, &bb) || D % qk) return false;
    const int64_t per_row = D / qk;
    if (n * per_row == 0) return true;
    dequant_rows_k<<<dt_cuda_blocks(n * per_row, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(
        dst, ids, n, (const uint8_t *)table->data, per_row * (int64_t)bb, per_row, (int)table->dtype, qk, (int64_t)bb);
    return LAUNCH_OK("dequant_rows_k");
}

// ---- bitsandbytes 4-bit ----

// Block b's absmax, as dt_nf4_absmax: stored, or double-quantized (a code times its group's absmax, plus
// the offset).
__device__ __forceinline__ float nf4_absmax(const dt_nf4_state &st, int64_t b) {
    if (st.absmax) return st.absmax[b];
    return __fadd_rn(__fmul_rn(st.nested_code[st.qabsmax[b]], st.nested_absmax[b / st.nested_block]), st.offset);
}

__global__ void dequant_nf4_k(float *dst, const uint8_t *qs, dt_nf4_state st, int64_t e0, int64_t npairs) {
    // dst (2 npairs) <- values e0 .. e0 + 2 npairs - 1 of the flattened tensor (e0 even): byte e / 2 holds
    // value e in its high nibble and e + 1 in its low one; both are in one block (the block is even)
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < npairs; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t e = e0 + 2 * i;
        const float a = nf4_absmax(st, e / st.block);
        const uint8_t q = qs[e / 2];
        dst[2 * i] = __fmul_rn(st.code[q >> 4], a);
        dst[2 * i + 1] = __fmul_rn(st.code[q & 15], a);
    }
}

bool dt_cuda_dequant_nf4(float *dst, const dt_tensor *W, int64_t e0, int64_t n) {
    if ((W->dtype != DT_NF4 && W->dtype != DT_FP4) || !W->aux || (e0 | n) & 1) return false;
    const dt_nf4_state *st = (const dt_nf4_state *)W->aux;
    if (st->block <= 0 || st->block % 2) return false;
    if (n == 0) return true;
    dequant_nf4_k<<<dt_cuda_blocks(n / 2, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(
        dst, (const uint8_t *)W->data, *st, e0, n / 2);
    return LAUNCH_OK("dequant_nf4_k");
}
