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
    char pre[1024], old[sizeof ctx->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, ctx->msg, sizeof old);
    snprintf(ctx->msg, sizeof ctx->msg, "%s%s", pre, old);
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
