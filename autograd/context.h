// The one context struct passed down through the library: error message, warnings, threads.
// Library functions return a dt_status and fill ctx->msg; they never print or exit.
#ifndef DT_CONTEXT_H
#define DT_CONTEXT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DT_OK = 0,
    DT_EINPUT = 2,       // bad input from the user (file, recipe, data): the command exits 2
    DT_EIO = 3,          // an operating-system I/O failure
    DT_ENOMEM = 4,       // an allocation failed
    DT_EUNSUPPORTED = 5, // valid but not supported here (e.g. CUDA in a CPU-only build)
    DT_EINTERNAL = 6,    // a bug: an invariant did not hold
    DT_EDIVERGED = 7,    // training produced a NaN or infinite loss: the command exits 1
} dt_status;

typedef void (*dt_warn_fn)(void *user, const char *msg);

typedef struct dt_ctx {
    char msg[4096];      // the last error, filled by dt_fail
    dt_warn_fn warn;     // called for non-fatal warnings; NULL drops them
    void *warn_user;
    int nthreads;        // OpenMP/BLAS threads; 0 = library default
    bool bf16_emulated;  // bf16 asked for on a CPU without bf16 matrix instructions runs emulated (bf16
                         // operands widened to f32, sgemm; slower than f32) instead of being refused: for
                         // the tests of the bf16 path on such CPUs (the tools: DELTATUNE_BF16_EMULATED=1)
} dt_ctx;

void dt_ctx_init(dt_ctx *ctx);
// Formats the message into ctx->msg and returns code, so callers write `return dt_fail(ctx, DT_EINPUT, ...)`.
int dt_fail(dt_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Prefixes the existing message ("file.json: " + old message) and returns code unchanged.
int dt_prefix(dt_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void dt_warn(dt_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Applies ctx->nthreads to OpenMP and OpenBLAS.
void dt_ctx_apply_threads(const dt_ctx *ctx);

#endif
