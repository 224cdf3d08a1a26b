// Element-wise CPU kernels: embedding rows, SwiGLU, add/mul/axpy, dropout, sums.
#include <math.h>
#include <string.h>
#include "autograd/cpu_kernels.h"
#include "autograd/cpu_math.h"

// Below this many elements the OpenMP fork/join costs more than the loop.
#define PAR_MIN 32768

void dt_cpu_embedding_fwd(float *out, const int32_t *ids, int64_t n, const float *table, int64_t D) {
    #pragma omp parallel for if (n * D > PAR_MIN)
    for (int64_t i = 0; i < n; i++) memcpy(out + i * D, table + (int64_t)ids[i] * D, (size_t)D * sizeof(float));
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + dt_expf(-x)); }

void dt_cpu_swiglu_fwd(float *h, const float *g, const float *u, int64_t n) {
    #pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) h[i] = g[i] * sigmoid(g[i]) * u[i];
}

// silu'(g) = sig * (1 + g * (1 - sig)); the three loops (dg and du, dg only, du only) keep the
// stores unconditional so each loop vectorises.
void dt_cpu_swiglu_bwd(float *dg, float *du, bool acc_g, bool acc_u, const float *dh, const float *g, const float *u,
                       int64_t n) {
    // As floats, the accumulate flags become vector selects (a bool condition does not vectorise).
    const float ag = acc_g, au = acc_u;
    if (dg && du) {
        #pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float sig = sigmoid(g[i]);
            float vg = dh[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig)), vu = dh[i] * g[i] * sig;
            dg[i] = ag != 0.0f ? dg[i] + vg : vg;
            du[i] = au != 0.0f ? du[i] + vu : vu;
        }
    } else if (dg) {
        #pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float sig = sigmoid(g[i]), vg = dh[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
            dg[i] = ag != 0.0f ? dg[i] + vg : vg;
        }
    } else if (du) {
        #pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float vu = dh[i] * g[i] * sigmoid(g[i]);
            du[i] = au != 0.0f ? du[i] + vu : vu;
        }
    }
}

void dt_cpu_add(float *y, const float *a, const float *b, int64_t n) {
    #pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void dt_cpu_mul(float *y, bool acc, const float *a, const float *b, int64_t n) {
    #pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = (acc ? y[i] : 0.0f) + a[i] * b[i];
}

void dt_cpu_add_bias(float *y, const float *bias, int64_t N, int64_t D) {
    #pragma omp parallel for if (N * D > PAR_MIN)
    for (int64_t i = 0; i < N; i++)
        #pragma omp simd
        for (int64_t j = 0; j < D; j++) y[i * D + j] += bias[j];
}

void dt_cpu_axpy(float *y, bool acc, float alpha, const float *x, int64_t n) {
    if (acc) {
        #pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
    } else {
        #pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i];
    }
}

void dt_cpu_dropout(float *y, bool acc, const float *x, int64_t n, float p, uint64_t seed) {
    const float keep_scale = 1.0f / (1.0f - p);
    #pragma omp parallel for if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float v = dt_uniform(seed, (uint64_t)i) >= p ? x[i] * keep_scale : 0.0f;
        y[i] = acc ? y[i] + v : v;
    }
}

double dt_cpu_sumsq(const float *x, int64_t n) {
    double s = 0;
    #pragma omp parallel for reduction(+ : s) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void dt_cpu_scale(float *x, float s, int64_t n) {
    #pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

double dt_cpu_xent_rows(float *logits, const int32_t *targets, int64_t n, int64_t V, float scale) {
    double total = 0;
    #pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t r = 0; r < n; r++) {
        float *x = logits + r * V; // (V)
        int32_t t = targets[r];
        if (t < 0) { memset(x, 0, (size_t)V * sizeof(float)); continue; }
        float m = -INFINITY;
        #pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < V; j++) m = x[j] > m ? x[j] : m;
        float sum = 0;
        #pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < V; j++) { x[j] = dt_expf(x[j] - m); sum += x[j]; }
        // loss = logsumexp - x[t] = log(sum) - log(p_t * sum) = -log(p_t), with p_t = e[t] / sum
        total += -log((double)x[t] / sum);
        float inv = scale / sum;
        #pragma omp simd
        for (int64_t j = 0; j < V; j++) x[j] *= inv;
        x[t] -= scale;
    }
    return total;
}
