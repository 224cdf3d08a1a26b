#include "autograd/context.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <omp.h>

void openblas_set_num_threads(int n); // from OpenBLAS; declared here to avoid pulling cblas.h in

void dt_ctx_init(dt_ctx *ctx) {
    memset(ctx, 0, sizeof *ctx);
}

int dt_fail(dt_ctx *ctx, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    va_end(ap);
    return code;
}

int dt_prefix(dt_ctx *ctx, int code, const char *fmt, ...) {
    char pre[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    // Shift the old message right by the prefix length (truncating its end), then put the prefix in front.
    size_t np = strlen(pre), cap = sizeof ctx->msg;
    if (np >= cap) np = cap - 1;
    size_t nold = strnlen(ctx->msg, cap - 1);
    if (np + nold > cap - 1) nold = cap - 1 - np;
    memmove(ctx->msg + np, ctx->msg, nold);
    memcpy(ctx->msg, pre, np);
    ctx->msg[np + nold] = 0;
    return code;
}

void dt_warn(dt_ctx *ctx, const char *fmt, ...) {
    if (!ctx->warn) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctx->warn(ctx->warn_user, buf);
}

void dt_ctx_apply_threads(const dt_ctx *ctx) {
    if (ctx->nthreads > 0) {
        omp_set_num_threads(ctx->nthreads);
        openblas_set_num_threads(ctx->nthreads);
    }
}
