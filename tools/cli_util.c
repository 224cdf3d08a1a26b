#include <stdio.h>
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

int cmd_version(int argc, char **argv) {
    const dt_cli cli = {"version", "", "Prints the version and the BLAS kernels in use.", NULL, 0, NULL};
    int st = dt_cli_parse(&cli, argc, argv, NULL, NULL, 0);
    if (st >= 0) return st;
    printf("deltatune %s\n", DT_VERSION);
    // The BLAS build and the kernels it chose for this CPU (see autograd/blas_core.h).
    printf("blas: %s\n", openblas_get_config());
    return 0;
}
