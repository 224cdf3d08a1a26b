// `--device cpu|cuda` of the commands that run a model outside training (eval): the backend to load the
// model on. cuda uses f32 matmuls here, so a device's result matches the CPU's to f32 rounding.
#ifndef DT_CLI_DEVICE_H
#define DT_CLI_DEVICE_H
#include "autograd/backend.h"
#include "autograd/context.h"
#include "autograd/tensor.h"

// name: "cpu" or "cuda" (NULL: cpu); dtype: the --dtype choice (autograd/dtype_choice.h). DT_EINPUT
// for another name, or for cuda with a --dtype other than auto or f32 (cuda computes in f32 here: a
// request it would not honour is refused, not ignored); DT_EUNSUPPORTED when there is no usable CUDA
// device (or the build has none).
int dt_cli_backend(dt_ctx *ctx, const char *name, dt_dtype dtype, const dt_backend **out);
// Waits for the device and turns a recorded CUDA failure (or running out of device memory) into rc
// and ctx->msg; rc unchanged on the CPU.
int dt_cli_backend_check(dt_ctx *ctx, const dt_backend *be, int rc);

#endif
