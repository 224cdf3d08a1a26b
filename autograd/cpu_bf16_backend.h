// The CPU backend with bf16 matrix units: the CPU table, with the frozen linears of bf16 weights
// (and so the LM head and the tied embedding's projection) and attention's block matmuls (QK^T, PV
// and their backward) run as oneDNN bf16 matmuls with f32 accumulation (autograd/cpu_bf16.h).
// Everything else (the LoRA products, norms, softmax statistics, RoPE, the loss, the optimizer), and
// frozen weights of any other dtype, go to the plain CPU table's kernels in f32. One instance per model user; its state (oneDNN's engine and primitive
// cache) lives behind be->impl.
#ifndef DT_CPU_BF16_BACKEND_H
#define DT_CPU_BF16_BACKEND_H
#include "autograd/backend.h"
#include "autograd/context.h"

int dt_cpu_bf16_backend_create(dt_ctx *ctx, dt_backend **out);
void dt_cpu_bf16_backend_free(dt_backend *be); // NULL is fine

// The backend for frozen weights of dtype wtype on the CPU: a new bf16 instance for DT_BF16 (free it
// with dt_cpu_backend_release), the shared CPU table otherwise.
int dt_cpu_backend_for(dt_ctx *ctx, dt_dtype wtype, const dt_backend **out);
void dt_cpu_backend_release(const dt_backend *be); // the CPU table and NULL are fine
#endif
