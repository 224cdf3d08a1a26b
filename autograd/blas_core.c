#include "autograd/blas_core.h"
#include <stdlib.h>
#include <string.h>

char *openblas_get_corename(void); // from OpenBLAS; declared here to avoid pulling cblas.h in

const char *dt_blas_better_coretype(void) {
    if (getenv("OPENBLAS_CORETYPE")) return NULL; // the user's choice stands, and this ends a restart
    const char *core = openblas_get_corename();
    // "Prescott" is the name OpenBLAS gives its fallback; no x86-64 CPU that needs it has AVX2.
    if (!core || strcmp(core, "Prescott") != 0) return NULL;
    // __builtin_cpu_supports also checks (XGETBV) that the OS saves the AVX/AVX-512 registers.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}
