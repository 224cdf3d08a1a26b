// RMSNorm and rotary position embedding on the CPU.
#include <math.h>
#include "autograd/cpu_kernels.h"

void dt_cpu_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps) {
    #pragma omp parallel for if (N * D > 32768)
    for (int64_t i = 0; i < N; i++) {
        const float *xi = x + i * D; // (D)
        float *yi = y + i * D;       // (D)
        // The sum of squares in double: its rounding then no longer depends on how the compiler splits
        // the reduction into vector lanes (a sanitizer build does not vectorize it), which the model's
        // logits amplify to ~1e-4.
        double ss = 0;
        #pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < D; j++) ss += (double)xi[j] * (double)xi[j];
        float r = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
        rstd[i] = r;
        #pragma omp simd
        for (int64_t j = 0; j < D; j++) yi[j] = w[j] * (xi[j] * r);
    }
}

void dt_cpu_rmsnorm_apply(float *y, const float *x, const float *rstd, const float *w, int64_t N, int64_t D) {
    #pragma omp parallel for if (N * D > 32768)
    for (int64_t i = 0; i < N; i++) {
        const float *xi = x + i * D; // (D)
        float *yi = y + i * D, r = rstd[i];
        #pragma omp simd
        for (int64_t j = 0; j < D; j++) yi[j] = w[j] * (xi[j] * r); // same expression as the forward
    }
}

// y_j = w_j x_j r with r = (mean(x^2) + eps)^(-1/2):
// dx_j = r w_j dy_j - (r^3 / D) x_j sum_i(dy_i w_i x_i)
void dt_cpu_rmsnorm_bwd(float *dx, bool acc, const float *dy, const float *x, const float *w, const float *rstd,
                        int64_t N, int64_t D) {
    #pragma omp parallel for if (N * D > 32768)
    for (int64_t i = 0; i < N; i++) {
        const float *xi = x + i * D, *dyi = dy + i * D; // (D)
        float *dxi = dx + i * D;                         // (D)
        float r = rstd[i], dot = 0;
        #pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < D; j++) dot += dyi[j] * w[j] * xi[j];
        float c = r * r * r * dot / (float)D;
        if (acc) {
            #pragma omp simd
            for (int64_t j = 0; j < D; j++) dxi[j] += r * w[j] * dyi[j] - c * xi[j];
        } else {
            #pragma omp simd
            for (int64_t j = 0; j < D; j++) dxi[j] = r * w[j] * dyi[j] - c * xi[j];
        }
    }
}

// The angle is computed in double: pos * inv_freq loses digits in float at long positions.
void dt_cpu_rope_table(float *cs, const int32_t *pos, const float *inv_freq, int64_t N, int64_t hd) {
    const int64_t half = hd / 2;
    #pragma omp parallel for if (N * half > 4096)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < half; i++) {
            double s, c;
            sincos((double)pos[n] * (double)inv_freq[i], &s, &c); // one call for both (GNU libm)
            cs[n * hd + i] = (float)c;
            cs[n * hd + half + i] = (float)s;
        }
}

// Hugging Face rotate-half layout: element i pairs with element i + hd/2 of the same head.
void dt_cpu_rope(float *x, const float *cs, int64_t N, int64_t H, int64_t hd, bool inverse) {
    const int64_t half = hd / 2;
    const float sign = inverse ? -1.0f : 1.0f;
    #pragma omp parallel for if (N * H * hd > 32768)
    for (int64_t n = 0; n < N; n++) {
        const float *c = cs + n * hd, *s = c + half; // (half) each
        for (int64_t h = 0; h < H; h++) {
            float *v = x + (n * H + h) * hd; // (hd)
            #pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], sn = sign * s[i];
                v[i] = a * c[i] - b * sn;
                v[i + half] = b * c[i] + a * sn;
            }
        }
    }
}
