// The CUDA backend: the dt_backend table (autograd/backend.h) with every kernel on the GPU, built only by
// `make CUDA=1`. In a build without CUDA the same functions exist as inline stubs that fail with
// DT_EUNSUPPORTED, so callers (the trainer, tests, benchmarks) need no #ifdef.
//
// State: the table's functions take no context or user pointer, so the stream, the cuBLAS handle and
// the first error are kept in one process-wide instance, created once (pthread_once) on the current
// CUDA device by the first dt_backend_cuda_init. Kernels are queued on that instance's stream; use the
// backend from one host thread at a time.
//
// Errors: table functions return void, so a failing CUDA or cuBLAS call (or an unsupported argument)
// is recorded and the call does nothing further; dt_backend_cuda_check reports it. alloc returns NULL
// on failure, which the graph already reports as out of memory. A fault inside a kernel surfaces at the
// next call that waits for the GPU and is reported as that call: run with CUDA_LAUNCH_BLOCKING=1 to
// have it reported at the launch of the faulty kernel instead.
#ifndef DT_CUDA_BACKEND_H
#define DT_CUDA_BACKEND_H
#include <stddef.h>
#include <stdint.h>

// The project's headers are plain C: give their functions (dt_fail, ...) C linkage in the .cu files.
#ifdef __cplusplus
extern "C" {
#endif
#include "autograd/backend.h"
#include "autograd/context.h"
#include "optim/optim.h"

#if defined(DT_CUDA) || defined(__CUDACC__)

// The CUDA table. compute selects the matmul precision: DT_F32 (default; results match the CPU backend
// within f32 rounding), DT_BF16 or DT_F16 (cuBLAS may round the f32 inputs of every matmul to 16 bits,
// or to TF32, and accumulates in f32). Everything but matmuls is f32 in every mode.
// Fails with DT_EUNSUPPORTED "no CUDA device found ..." when there is no usable GPU.
int dt_backend_cuda_init(dt_ctx *ctx, dt_dtype compute, const dt_backend **out);
// Waits for all queued GPU work and returns the first error recorded since the last check (clearing it),
// as "CUDA: <what>: <reason> (<file>:<line>)" with DT_ENOMEM, DT_EUNSUPPORTED or DT_EINTERNAL.
// Call it once per training step.
int dt_backend_cuda_check(dt_ctx *ctx);
// Device memory in use (total - free, all processes) and the device's total, in bytes.
int dt_backend_cuda_mem_info(dt_ctx *ctx, size_t *used, size_t *total);
// The device's name, e.g. "NVIDIA H100 80GB HBM3" (empty when no device can be used).
const char *dt_backend_cuda_device_name(void);
// Out of device memory: when an allocation of the backend failed since the last call, *asked is its size
// and *free_b / *total the device's free and total memory right after the failure; returns true once
// per failure (and clears it). The graph only knows "an allocation failed"; the trainer adds these.
bool dt_backend_cuda_oom(size_t *asked, size_t *free_b, size_t *total);
// One optimizer update on the device: params, grads (o->n) and state (o's layout: AdamW m then v,
// SGD momentum, or NULL) in device memory; o->step already counts this update (see dt_optim_step,
// whose arithmetic it repeats so that both devices give the same bits).
void dt_cuda_optim_step(const dt_backend *be, const dt_optimizer *o, float *params, const float *grads, float *state,
                        float lr);
// Which attention the 16-bit tables run, in words: cuDNN's fused flash attention, or the hand-written
// kernel and why (no cuDNN, a shape without a plan, a failed first-use check against the hand kernel).
const char *dt_backend_cuda_attention_note(void);
// The obviously-correct attention the tests compare the flash kernel with (device pointers, shapes as
// attention_fwd): one thread per query row, scores recomputed in double, no blocking.
void dt_cuda_attention_fwd_naive(float *out, float *lse, const float *q, const float *k, const float *v,
                                 const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);

#else

static inline int dt_backend_cuda_init(dt_ctx *ctx, dt_dtype compute, const dt_backend **out) {
    (void)compute;
    *out = NULL;
    return dt_fail(ctx, DT_EUNSUPPORTED, "no CUDA device found: this deltatune was built without CUDA "
                                         "(rebuild with make CUDA=1)");
}
static inline int dt_backend_cuda_check(dt_ctx *ctx) { (void)ctx; return DT_OK; }
static inline int dt_backend_cuda_mem_info(dt_ctx *ctx, size_t *used, size_t *total) {
    *used = *total = 0;
    return dt_fail(ctx, DT_EUNSUPPORTED, "this deltatune was built without CUDA");
}
static inline const char *dt_backend_cuda_device_name(void) { return ""; }
static inline const char *dt_backend_cuda_attention_note(void) { return ""; }
// No CUDA backend can exist in this build, so these are never reached with device memory.
static inline bool dt_backend_cuda_oom(size_t *asked, size_t *free_b, size_t *total) {
    *asked = *free_b = *total = 0;
    return false;
}
static inline void dt_cuda_optim_step(const dt_backend *be, const dt_optimizer *o, float *params, const float *grads,
                                      float *state, float lr) {
    (void)be; (void)o; (void)params; (void)grads; (void)state; (void)lr;
}

#endif

#ifdef __cplusplus
}
#endif

#endif
