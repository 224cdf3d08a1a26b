// Which dtype the frozen weights get: hardware.dtype in recipes, --dtype on eval and generate.
#ifndef DT_DTYPE_CHOICE_H
#define DT_DTYPE_CHOICE_H
#include <stdbool.h>
#include <stddef.h>
#include "autograd/context.h"
#include "autograd/tensor.h"

// "auto": bf16 where the device runs it at matrix-unit speed, f32 elsewhere (see dt_dtype_resolve).
#define DT_DTYPE_AUTO ((dt_dtype)-1)

// "auto", "f32", "bf16" or "f16" -> *out; false (out untouched) for anything else.
bool dt_dtype_choice_parse(const char *s, dt_dtype *out);
// The names dt_dtype_choice_parse accepts, for messages: "auto, f32, bf16 or f16".
const char *dt_dtype_choice_names(void);
// "auto" or dt_dtype_name(t).
const char *dt_dtype_choice_name(dt_dtype t);

// The dtype to keep the frozen weights in on dev for a request (DT_DTYPE_AUTO or a float dtype).
// auto: bf16 on CUDA; on the CPU bf16 when it has bf16 matrix instructions (AMX or AVX512-BF16, as
// oneDNN sees them), else f32. bf16 asked for on a CPU without them is DT_EUNSUPPORTED (the command
// exits 2) with a message that starts with `what` (the recipe file and key, or the option).
int dt_dtype_resolve(dt_ctx *ctx, dt_dtype requested, dt_device dev, const char *what, dt_dtype *out);

// One line for users on how frozen weights of dtype t (resolved, not auto) are computed on the CPU,
// e.g. "bf16 (oneDNN 2.6.3 bf16 matmul, avx512_core_bf16 kernels, f32 accumulation)".
void dt_dtype_describe(dt_dtype t, char *buf, size_t n);

#endif
