// bf16 matmuls with f32 accumulation on the CPU through oneDNN, which picks the matrix unit itself
// (AMX on Sapphire Rapids and later, AVX512-BF16 on Zen 4 / Cooper Lake). oneDNN 2.x has no bf16
// matmul below AVX-512: there the same products run emulated, the bf16 operands widened exactly to f32
// and multiplied by OpenBLAS sgemm (f32 accumulation, as oneDNN's kernels). That is no faster than f32,
// so the commands refuse bf16 on such CPUs (dt_dtype_resolve); it is how the tests run every bf16
// kernel, with its rounding, on any CPU.
// One dt_bf16_mm holds oneDNN's engine and stream and a cache of matmul primitives, one per shape,
// created on first use: after the first training step nothing is created or allocated.
#ifndef DT_CPU_BF16_H
#define DT_CPU_BF16_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"

typedef struct dt_bf16_mm dt_bf16_mm;

int dt_bf16_mm_create(dt_ctx *ctx, dt_bf16_mm **out);
void dt_bf16_mm_free(dt_bf16_mm *e);

// C (M, N) f32 = alpha op(A) op(B) (+ C when acc). A, B bf16, row-major with leading dimensions
// lda/ldb/ldc; op(A) is (M, K), op(B) is (K, N). Safe to call from several OpenMP threads at once
// (each thread has its own primitives); inside a parallel region oneDNN runs it on the calling
// thread only. Returns DT_OK, or DT_EUNSUPPORTED (message in e) when oneDNN refused the shape.
int dt_bf16_matmul(dt_bf16_mm *e, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t *A,
                   int64_t lda, const uint16_t *B, int64_t ldb, bool acc, float *C, int64_t ldc);
// The message of the last failure of e.
const char *dt_bf16_mm_error(const dt_bf16_mm *e);
// Whether e runs its products emulated (see above); the default is "when the CPU has no bf16 units".
// Tests set it on to check the emulation against oneDNN. Not while a matmul of e runs.
void dt_bf16_mm_set_emulated(dt_bf16_mm *e, bool on);
bool dt_bf16_mm_emulated(const dt_bf16_mm *e);

// The reference the tests hold dt_bf16_matmul to: the same products, in double, one dot at a time.
void dt_bf16_matmul_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t *A,
                          int64_t lda, const uint16_t *B, int64_t ldb, bool acc, float *C, int64_t ldc);

// dst (n) = src rounded to bf16 (nearest, ties to even; NaN stays NaN). OpenMP-parallel when n is large.
void dt_cpu_f32_to_bf16(uint16_t *dst, const float *src, int64_t n);
// The same rounding, for a destination not read again soon (the values a backward reads): written with
// non-temporal stores where the CPU has AVX2, bypassing the cache.
void dt_cpu_f32_to_bf16_stream(uint16_t *dst, const float *src, int64_t n);
// The same on the calling thread only, for short rows inside parallel regions. Written so that GCC
// vectorises it (integer rounding, one select for NaN).
static inline void dt_f32_to_bf16_row(uint16_t *dst, const float *src, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        __builtin_memcpy(&u, &src[i], sizeof u);
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; // nearest, ties to even
        uint32_t nan = (u >> 16) | 0x40u;                    // quiet NaN, sign kept
        dst[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : r);
    }
}
// dst (n) = src widened to f32.
void dt_cpu_bf16_to_f32(float *dst, const uint16_t *src, int64_t n);

// Causal attention (autograd/cpu_attention.c, same contract as dt_cpu_attention_fwd/_bwd) with its
// block matmuls QK^T and PV (and the backward's five) in bf16 through mm; scratch:
// dt_cpu_attention_bf16_scratch_bytes.
size_t dt_cpu_attention_bf16_scratch_bytes(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
void dt_cpu_attention_fwd_bf16(dt_bf16_mm *mm, float *out, float *lse, const float *q, const float *k, const float *v,
                               const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                               void *scratch);
void dt_cpu_attention_bwd_bf16(dt_bf16_mm *mm, float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v,
                               const float *dout, const float *out, const float *lse, const float *q, const float *k,
                               const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV,
                               int64_t hd, void *scratch);

// The instruction set oneDNN's kernels use on this CPU ("avx512_core_amx", "avx512_core_bf16", ...).
const char *dt_onednn_isa(void);
// True when that instruction set has bf16 matrix instructions (AMX or AVX512-BF16); without them
// oneDNN emulates bf16 and is slower than f32 SGEMM.
bool dt_cpu_has_bf16(void);
// Writes the linked oneDNN's version ("2.6.3") into buf (n bytes).
void dt_onednn_version(char *buf, size_t n);

#endif
