// exp for the CPU kernels' `omp simd` loops (softmax, cross-entropy, SiLU). glibc's expf is a scalar
// call the compiler cannot vectorise without -ffast-math, and it was the largest non-GEMM cost of a
// training step; this one inlines into 8-wide AVX2 code.
#ifndef DT_CPU_MATH_H
#define DT_CPU_MATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

// Cody-Waite range reduction x = n ln2 + r (|r| <= ln2 / 2, ln2 split in two so n ln2 is exact),
// then Cephes' expf polynomial for e^r, then 2^n built in the exponent bits. Relative error under
// 1 ulp (tests/test_cpu_math.c measures it against double exp). Outside the range where 2^n is a
// normal float: x > 88.376 (e^x > 2.4e38, against FLT_MAX = 3.4e38) gives +inf, and x < -87.337
// (e^x < FLT_MIN) gives 0. -inf gives exactly 0 (masked softmax entries rely on this) and NaN stays
// NaN (the trainer's NaN check relies on that). Only two selects and no float-to-int conversion:
// out-of-range inputs compute garbage (or NaN) that the two selects at the end replace.
static inline float dt_expf(float x) {
    const float hi = 88.3762626647949f, lo = -87.3365447504f;
    // Adding 1.5 * 2^23 rounds x log2(e) to the nearest integer n and leaves n, in two's complement,
    // in the low mantissa bits of t.
    const float magic = 12582912.0f;
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    // (n + 127) << 23 is 2^n as a float; the shift drops t's exponent bits. Exact for n in [-126, 127].
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t bits = (tb + 127u) << 23;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    float y = p * two_n;
    y = x > hi ? INFINITY : y;
    return x < lo ? 0.0f : y;
}

#endif
