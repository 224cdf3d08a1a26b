// dt_expf (autograd/cpu_math.h) against double-precision exp: the largest relative error over a dense
// sweep of [-87.3, 88.3] in ulps of the float result, and the special values the kernels rely on.
#include <float.h>
#include <math.h>
#include "autograd/cpu_math.h"
#include "tests/test_util.h"

int main(void) {
    double worst = 0, worst_x = 0;
    const int n = 4000000;
    for (int i = 0; i <= n; i++) {
        float x = -87.3f + (float)(175.6 * i / n);
        double want = exp((double)x), got = dt_expf(x);
        // one ulp of a float near want: 2^(exponent - 23)
        double ulp = ldexp(1.0, ilogb(want) - 23), err = fabs(got - want) / ulp;
        if (err > worst) { worst = err; worst_x = x; }
    }
    // the same over small arguments, where softmax entries near the row maximum land
    for (int i = -100000; i <= 100000; i++) {
        float x = (float)i * 1e-6f;
        double want = exp((double)x), err = fabs(dt_expf(x) - want) / ldexp(1.0, ilogb(want) - 23);
        if (err > worst) { worst = err; worst_x = x; }
    }
    TEST_CHECK("expf_within_1_ulp", worst < 1.0, "worst error %.3f ulp at x = %.9g", worst, worst_x);
    printf("     worst error %.3f ulp at x = %.9g\n", worst, worst_x);
    TEST_CHECK("expf_zero_is_one", dt_expf(0.0f) == 1.0f, "exp(0) = %.9g", dt_expf(0.0f));
    TEST_CHECK("expf_minus_inf_is_zero", dt_expf(-INFINITY) == 0.0f, "exp(-inf) = %.9g", dt_expf(-INFINITY));
    TEST_CHECK("expf_underflow_is_zero", dt_expf(-100.0f) == 0.0f && dt_expf(-1e30f) == 0.0f, "exp(-100) = %g",
               dt_expf(-100.0f));
    TEST_CHECK("expf_inf_is_inf", isinf(dt_expf(INFINITY)) && isinf(dt_expf(100.0f)), "exp(inf) = %g, exp(100) = %g",
               dt_expf(INFINITY), dt_expf(100.0f));
    TEST_CHECK("expf_nan_is_nan", isnan(dt_expf(NAN)), "exp(nan) = %g", dt_expf(NAN));
    float top = dt_expf(88.37f), bottom = dt_expf(-87.33f);
    TEST_CHECK("expf_range_ends_finite", isfinite(top) && top > 2.3e38f && bottom >= FLT_MIN && bottom < 1.3e-38f,
               "exp(88.37) = %g, exp(-87.33) = %g", top, bottom);
    TEST_EXIT();
}
