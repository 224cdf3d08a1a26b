// The optimizer update as one kernel, so parameters, gradients and AdamW/SGD state never leave the
// device during training. Each element's arithmetic is optim/optim.c's, operation for operation, with
// explicitly rounded operations (__fmul_rn, __fadd_rn, ...): nvcc would otherwise contract a * b + c
// into fused multiply-adds, which the CPU build (ISO C, -ffp-contract=off) does not do. With the same
// inputs a GPU update therefore equals the CPU's bit for bit, which keeps a run that moves between
// devices through a checkpoint on the same trajectory as far as the optimizer is concerned.
#include "autograd/cuda/cuda_internal.h"

__global__ void adamw_k(float *p, float *m, float *v, const float *g, int64_t n, float lr, float b1, float b2,
                        float eps, float wd, float step_size, float bc2_sqrt) {
    // p, m, v, g (n)
    const float decay = __fsub_rn(1.0f, __fmul_rn(lr, wd)), nb1 = __fsub_rn(1.0f, b1), nb2 = __fsub_rn(1.0f, b2);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float gi = g[i];
        float pi = __fmul_rn(p[i], decay);                                      // p *= 1 - lr * wd
        const float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(nb1, gi));    // m = b1 m + (1 - b1) g
        const float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(nb2, gi), gi)); // v = b2 v + (1 - b2) g g
        const float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);  // sqrt(v) / sqrt(bc2) + eps
        pi = __fsub_rn(pi, __fdiv_rn(__fmul_rn(step_size, mi), den));           // p -= step_size m / den
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

__global__ void sgd_k(float *p, float *buf, const float *g, int64_t n, float lr, float mu, float wd, bool first) {
    // p, g (n); buf (n) momentum or NULL
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float d = __fadd_rn(g[i], __fmul_rn(wd, p[i])); // d = g + wd p
        if (buf) {                                      // torch: buf = d at the first step
            buf[i] = first ? d : __fadd_rn(__fmul_rn(mu, buf[i]), d);
            d = buf[i];
        }
        p[i] = __fsub_rn(p[i], __fmul_rn(lr, d));
    }
}

void dt_cuda_optim_step(const dt_backend *be, const dt_optimizer *o, float *params, const float *grads, float *state,
                        float lr) {
    (void)be; // the instance is still process-wide (see cuda_backend.h)
    const int64_t n = (int64_t)o->n;
    if (n <= 0) return;
    const unsigned blocks = dt_cuda_blocks(n, EW_THREADS);
    if (o->kind == DT_OPT_ADAMW) {
        float step_size, bc2_sqrt;
        dt_adamw_factors(o, lr, &step_size, &bc2_sqrt);
        adamw_k<<<blocks, EW_THREADS, 0, dt_cuda_stream()>>>(params, state, state + n, grads, n, lr, o->beta1, o->beta2,
                                                            o->eps, o->weight_decay, step_size, bc2_sqrt);
        LAUNCH_OK("adamw_k");
    } else {
        sgd_k<<<blocks, EW_THREADS, 0, dt_cuda_stream()>>>(params, o->momentum != 0.0f ? state : NULL, grads, n, lr,
                                                          o->momentum, o->weight_decay, o->step == 1);
        LAUNCH_OK("sgd_k");
    }
}
