// Block decoders of ggml's quantized types on the device (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
// Q6_K; layouts in autograd/quant_blocks.h): the device twins of autograd/quant_legacy.c and
// autograd/quant_k.c, value for value. The CPU code is built without fused multiply-adds, so every
// a * b + c here is written with __fmul_rn / __fadd_rn, which nvcc never contracts: the panels the
// frozen linear multiplies are then bit-identical to the CPU's. bitsandbytes' NF4/FP4 (the twin of
// autograd/quant_nf4.c's dt_nf4_to_f32) decode from the nibbles and their state's arrays, which the model
// loader copies to the device beside them (models/llama_quant.c, dt_lq_upload_nf4).
// One thread decodes one block; the frozen linear (frozen.cu) calls these per panel of rows and the
// embedding per looked-up row, so the whole matrix is never widened.
#include "autograd/cuda/cuda_internal.h"
extern "C" {
#include "autograd/quant.h"
}

__device__ __forceinline__ float q_f16(uint16_t h) { return dt_hf_f16_to_f32(h); }

// Bit 4 of element j of a Q5 block: bit j of qh read as a little-endian u32.
__device__ __forceinline__ uint32_t q5_high(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

// Scale and min of k-quant sub-block j (0..7) from the 12 packed bytes (see quant_k.c).
__device__ __forceinline__ void k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 15) | (s[j - 4] >> 6) << 4);
        *m = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
    }
}

// dst (the type's block of values) <- the block at src.
__device__ void decode_block(int type, const uint8_t *src, float *dst) {
    switch (type) {
    case DT_Q8_0: {
        const dt_block_q8_0 *b = (const dt_block_q8_0 *)src;
        const float d = q_f16(b->d);
        for (int j = 0; j < DT_QK; j++) dst[j] = (float)b->qs[j] * d;
        break;
    }
    case DT_Q4_0: {
        const dt_block_q4_0 *b = (const dt_block_q4_0 *)src;
        const float d = q_f16(b->d);
        for (int j = 0; j < DT_QK / 2; j++) {
            dst[j] = (float)((b->qs[j] & 15) - 8) * d;
            dst[j + DT_QK / 2] = (float)((b->qs[j] >> 4) - 8) * d;
        }
        break;
    }
    case DT_Q4_1: {
        const dt_block_q4_1 *b = (const dt_block_q4_1 *)src;
        const float d = q_f16(b->d), m = q_f16(b->m);
        for (int j = 0; j < DT_QK / 2; j++) {
            dst[j] = __fadd_rn(__fmul_rn((float)(b->qs[j] & 15), d), m);
            dst[j + DT_QK / 2] = __fadd_rn(__fmul_rn((float)(b->qs[j] >> 4), d), m);
        }
        break;
    }
    case DT_Q5_0: {
        const dt_block_q5_0 *b = (const dt_block_q5_0 *)src;
        const float d = q_f16(b->d);
        const uint32_t qh = q5_high(b->qh);
        for (int j = 0; j < DT_QK / 2; j++) {
            const int lo = (int)((b->qs[j] & 15) | ((qh >> j) & 1) << 4);
            const int hi = (int)((b->qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
            dst[j] = (float)(lo - 16) * d;
            dst[j + DT_QK / 2] = (float)(hi - 16) * d;
        }
        break;
    }
    case DT_Q5_1: {
        const dt_block_q5_1 *b = (const dt_block_q5_1 *)src;
        const float d = q_f16(b->d), m = q_f16(b->m);
        const uint32_t qh = q5_high(b->qh);
        for (int j = 0; j < DT_QK / 2; j++) {
            const int lo = (int)((b->qs[j] & 15) | ((qh >> j) & 1) << 4);
            const int hi = (int)((b->qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
            dst[j] = __fadd_rn(__fmul_rn((float)lo, d), m);
            dst[j + DT_QK / 2] = __fadd_rn(__fmul_rn((float)hi, d), m);
        }
        break;
    }
    case DT_Q4_K:
    case DT_Q5_K: {
        // The two share the scales; Q5_K adds a fifth bit per value from qh.
        const bool five = type == DT_Q5_K;
        const dt_block_q4_K *b4 = (const dt_block_q4_K *)src;
        const dt_block_q5_K *b5 = (const dt_block_q5_K *)src;
        const float d = q_f16(five ? b5->d : b4->d), dmin = q_f16(five ? b5->dmin : b4->dmin);
        const uint8_t *scales = five ? b5->scales : b4->scales, *q = five ? b5->qs : b4->qs;
        for (int s = 0; s < 8; s += 2, q += 32) {
            uint8_t sc, m;
            k_scale_min(s, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            k_scale_min(s + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                const int h1 = five ? (b5->qh[l] >> s & 1) << 4 : 0, h2 = five ? (b5->qh[l] >> (s + 1) & 1) << 4 : 0;
                dst[l] = __fsub_rn(__fmul_rn(d1, (float)((q[l] & 15) | h1)), m1);
                dst[l + 32] = __fsub_rn(__fmul_rn(d2, (float)((q[l] >> 4) | h2)), m2);
            }
            dst += 64;
        }
        break;
    }
    case DT_Q6_K: {
        const dt_block_q6_K *b = (const dt_block_q6_K *)src;
        const float d = q_f16(b->d);
        for (int h = 0; h < 2; h++, dst += 128) {
            const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            const int8_t *sc = b->scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 15) | (qh[l] >> 0 & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32;
                // (d * scale) * q, in this order, as ggml evaluates it.
                dst[l] = d * (float)sc[is] * (float)q1;
                dst[l + 32] = d * (float)sc[is + 2] * (float)q2;
                dst[l + 64] = d * (float)sc[is + 4] * (float)q3;
                dst[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
        break;
    }
    default:
        break; // not reached: dt_cuda_quant_supported refuses every other type first
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
