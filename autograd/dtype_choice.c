#include "autograd/dtype_choice.h"
#include <stdio.h>
#include <string.h>
#include "autograd/cpu_bf16.h"

static const struct { const char *name; dt_dtype t; } NAMES[] = {
    {"auto", DT_DTYPE_AUTO}, {"stored", DT_DTYPE_STORED}, {"f32", DT_F32}, {"bf16", DT_BF16}, {"f16", DT_F16}};
#define N_NAMES (sizeof NAMES / sizeof NAMES[0])

bool dt_dtype_choice_parse(const char *s, dt_dtype *out) {
    for (size_t i = 0; i < N_NAMES; i++)
        if (!strcmp(s, NAMES[i].name)) { *out = NAMES[i].t; return true; }
    return false;
}

const char *dt_dtype_choice_names(void) { return "auto, stored, f32, bf16 or f16"; }

const char *dt_dtype_choice_name(dt_dtype t) {
    for (size_t i = 0; i < N_NAMES; i++)
        if (NAMES[i].t == t) return NAMES[i].name;
    return dt_dtype_name(t);
}

int dt_dtype_resolve(dt_ctx *ctx, dt_dtype requested, dt_device dev, const char *what, dt_dtype *out) {
    bool known = false;
    for (size_t i = 0; i < N_NAMES; i++) known |= NAMES[i].t == requested;
    if (!known)
        return dt_fail(ctx, DT_EINPUT, "%s: dtype %s is not one of %s", what, dt_dtype_name(requested), dt_dtype_choice_names());
    if (dev == DT_DEV_CUDA) {
        // The device keeps its matrices in the matmuls' own type, chosen before any file is read. Only a
        // recipe resolves for cuda (eval and generate compute in f32 there), hence the recipe's words.
        if (requested == DT_DTYPE_STORED)
            return dt_fail(ctx, DT_EINPUT, "%s: stored is for hardware.device: cpu; on cuda the frozen matrices take "
                           "the matmuls' type: expected auto, bf16, f16 or f32", what);
        *out = requested == DT_DTYPE_AUTO ? DT_BF16 : requested;
        return DT_OK;
    }
    bool units = dt_cpu_has_bf16();
    if (requested == DT_BF16 && !units && !ctx->bf16_emulated)
        return dt_fail(ctx, DT_EUNSUPPORTED,
                       "%s: bf16 needs a CPU with bf16 matrix instructions (AMX or AVX512-BF16); oneDNN finds %s "
                       "here: use stored or f32 (auto picks stored on this CPU)", what, dt_onednn_isa());
    // Without bf16 units, f32 arithmetic is the fast one: the 16-bit files stay 16-bit in memory only.
    *out = requested == DT_DTYPE_AUTO ? (units ? DT_BF16 : DT_DTYPE_STORED) : requested;
    return DT_OK;
}

void dt_dtype_describe(dt_dtype t, bool bf16_matmuls, char *buf, size_t n) {
    char ver[32];
    dt_onednn_version(ver, sizeof ver);
    if (t == DT_DTYPE_STORED)
        snprintf(buf, n, "stored (bf16 and f16 matrices kept as the file stores them and widened to f32 a panel at a "
                 "time, f32 ones as they are; OpenBLAS sgemm)");
    else if (t == DT_BF16 && bf16_matmuls && !dt_cpu_has_bf16())
        snprintf(buf, n, "bf16 (emulated: oneDNN %s has no bf16 matmul for %s kernels; bf16 operands widened to f32, "
                 "OpenBLAS sgemm, slower than f32)", ver, dt_onednn_isa());
    else if (t == DT_BF16 && bf16_matmuls)
        snprintf(buf, n, "bf16 (oneDNN %s bf16 matmul, %s kernels, f32 accumulation)", ver, dt_onednn_isa());
    else if (t == DT_F32)
        snprintf(buf, n, "f32 (OpenBLAS sgemm)");
    else
        snprintf(buf, n, "%s (widened to f32 a panel at a time, OpenBLAS sgemm)", dt_dtype_choice_name(t));
}
