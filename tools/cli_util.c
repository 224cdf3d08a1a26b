#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/cpu_bf16.h"
#include "autograd/dtype_choice.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"

#define DT_VERSION "0.1.0"

char *openblas_get_config(void); // from OpenBLAS; declared here to avoid pulling cblas.h in

int dt_cli_fail(const char *cmd, const dt_ctx *ctx, int status) {
    fprintf(stderr, "deltatune %s: %s\n", cmd, ctx->msg[0] ? ctx->msg : "failed");
    return status == DT_EINPUT || status == DT_EUNSUPPORTED ? 2 : 1;
}

void dt_cli_warn(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "warning: %s\n", msg);
}

void dt_cli_ctx_init(dt_ctx *ctx) {
    dt_ctx_init(ctx);
    ctx->warn = dt_cli_warn;
    const char *emu = getenv("DELTATUNE_BF16_EMULATED");
    ctx->bf16_emulated = emu && !strcmp(emu, "1");
}

int cmd_version(int argc, char **argv) {
    const dt_cli cli = {"version", "", "Prints the version and the BLAS kernels in use.", NULL, 0, NULL};
    int st = dt_cli_parse(&cli, argc, argv, NULL, NULL, 0);
    if (st >= 0) return st;
    printf("deltatune %s\n", DT_VERSION);
    // The BLAS build and the kernels it chose for this CPU (see autograd/blas_core.h).
    printf("blas: %s\n", openblas_get_config());
    // oneDNN's kernels and the dtype that hardware.dtype: auto (and --dtype auto) picks here.
    char ver[32], line[256];
    dt_onednn_version(ver, sizeof ver);
    dt_dtype t;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_dtype_resolve(&ctx, DT_DTYPE_AUTO, DT_DEV_CPU, "auto", &t);
    dt_dtype_describe(t, true, line, sizeof line);
    printf("onednn: %s, kernels %s (bf16 matrix instructions: %s)\n", ver, dt_onednn_isa(), dt_cpu_has_bf16() ? "yes" : "no");
    printf("dtype auto: %s\n", line);
    return 0;
}
