// --device for eval (see cli_device.h).
#include "tools/cli_device.h"
#include <string.h>
#include "autograd/cuda/cuda_backend.h"
#include "autograd/dtype_choice.h"

int dt_cli_backend(dt_ctx *ctx, const char *name, dt_dtype dtype, const dt_backend **out) {
    *out = dt_backend_cpu();
    if (!name || !strcmp(name, "cpu")) return DT_OK;
    if (strcmp(name, "cuda")) return dt_fail(ctx, DT_EINPUT, "--device: '%s' is not a device (expected cpu or cuda)", name);
    if (dtype != DT_DTYPE_AUTO && dtype != DT_F32)
        return dt_fail(ctx, DT_EINPUT, "--dtype %s: --device cuda computes in f32 (expected auto or f32 with --device cuda)",
                       dt_dtype_choice_name(dtype));
    int rc = dt_backend_cuda_init(ctx, DT_F32, out);
    return rc ? dt_prefix(ctx, rc, "--device cuda: ") : DT_OK;
}

int dt_cli_backend_check(dt_ctx *ctx, const dt_backend *be, int rc) {
    if (be->device != DT_DEV_CUDA) return rc;
    dt_ctx dev;
    dt_ctx_init(&dev);
    int drc = dt_backend_cuda_check(&dev);
    size_t asked, free_b, total;
    if (dt_backend_cuda_oom(&asked, &free_b, &total))
        return dt_fail(ctx, DT_EINPUT, "out of device memory on %s: asked for %.1f MiB with %.1f MiB free of %.1f MiB",
                       dt_backend_cuda_device_name(), (double)asked / 1048576.0, (double)free_b / 1048576.0,
                       (double)total / 1048576.0);
    if (drc) {
        memcpy(ctx->msg, dev.msg, sizeof ctx->msg);
        return drc;
    }
    return rc;
}
