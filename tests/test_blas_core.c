// OpenBLAS kernel choice (autograd/blas_core.h): `deltatune version` names the kernels OpenBLAS runs;
// on a CPU with AVX2+FMA they must never be the generic Prescott ones (the fallback Debian 12's OpenBLAS
// takes on CPUs newer than it), and a user's OPENBLAS_CORETYPE is kept as given.
#include "tests/file_util.h"
#include "tests/test_util.h"

static char *version_output(const char *env, int *rc) {
    char path[64], cmd[512];
    snprintf(path, sizeof path, "/tmp/dt_blas_core_%d.txt", (int)getpid());
    snprintf(cmd, sizeof cmd, "env %s ./deltatune version >%s 2>&1", env, path);
    int st = system(cmd);
    *rc = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char *out = tf_slurp(path, NULL);
    unlink(path);
    return out;
}

int main(void) {
    if (access("./deltatune", X_OK)) { TEST_SKIP("blas_core", "./deltatune not built"); TEST_EXIT(); }
    int rc;
    char *out = version_output("-u OPENBLAS_CORETYPE", &rc);
    TEST_CHECK("version_names_blas", rc == 0 && out && strstr(out, "\nblas: OpenBLAS"), "rc %d, output: %s", rc,
               out ? out : "(none)");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        TEST_CHECK("no_generic_kernels_on_avx2", out && !strstr(out, "Prescott"), "OpenBLAS runs its Prescott kernels: %s",
                   out ? out : "(none)");
    else
        TEST_SKIP("no_generic_kernels_on_avx2", "this CPU has no AVX2+FMA");
    free(out);
    out = version_output("OPENBLAS_CORETYPE=Haswell", &rc);
    TEST_CHECK("user_coretype_kept", rc == 0 && out && strstr(out, "Haswell"), "rc %d, output: %s", rc,
               out ? out : "(none)");
    free(out);
    TEST_EXIT();
}
