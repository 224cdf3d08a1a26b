// AdamW (decoupled weight decay, bias correction) and SGD (optional momentum, L2 weight decay), as
// torch.optim.AdamW / torch.optim.SGD compute them, plus global-norm clipping.
#include "optim/optim.h"
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int dt_optim_init(dt_ctx *ctx, dt_optimizer *o, dt_opt_kind kind, size_t n, float beta1, float beta2, float eps,
                  float weight_decay, float momentum) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->momentum = momentum;
    o->n = n;
    size_t states = kind == DT_OPT_ADAMW ? 2 * n : (momentum != 0.0f ? n : 0);
    if (states) {
        o->state = calloc(states, sizeof(float));
        if (!o->state) return dt_fail(ctx, DT_ENOMEM, "out of memory for optimizer state (%zu floats)", states);
    }
    return DT_OK;
}

void dt_optim_free(dt_optimizer *o) {
    free(o->state);
    free(o->lr_mult);
    o->state = o->lr_mult = NULL;
}

int dt_optim_set_lr_mult(dt_ctx *ctx, dt_optimizer *o, const float *mult) {
    if (!o->lr_mult && !(o->lr_mult = malloc((o->n ? o->n : 1) * sizeof(float))))
        return dt_fail(ctx, DT_ENOMEM, "out of memory for learning-rate multipliers");
    memcpy(o->lr_mult, mult, o->n * sizeof(float));
    return DT_OK;
}

void dt_adamw_factors(const dt_optimizer *o, float lr, float *step_size, float *bc2_sqrt) {
    const double bc1 = 1.0 - pow(o->beta1, (double)o->step), bc2 = 1.0 - pow(o->beta2, (double)o->step);
    *step_size = (float)(lr / bc1);
    *bc2_sqrt = (float)sqrt(bc2);
}

void dt_optim_step(dt_optimizer *o, float *p, const float *g, float lr) {
    const size_t n = o->n;
    o->step++;
    if (o->kind == DT_OPT_ADAMW) {
        float *m = o->state, *v = o->state + n;
        const float b1 = o->beta1, b2 = o->beta2, wd = o->weight_decay, eps = o->eps;
        // torch: p *= 1 - lr*wd; m, v updated; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
        float step_size, bc2_sqrt;
        dt_adamw_factors(o, lr, &step_size, &bc2_sqrt);
        const float *mult = o->lr_mult;
        #pragma omp parallel for simd if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            // A parameter group of its own learning rate, as torch runs each group (LoRA+).
            const float k = mult ? mult[i] : 1.0f;
            p[i] *= 1.0f - k * lr * wd;
            m[i] = b1 * m[i] + (1.0f - b1) * g[i];
            v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
            p[i] -= k * step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        }
    } else {
        float *buf = o->state;
        const float mu = o->momentum, wd = o->weight_decay;
        const bool first = o->step == 1;
        const float *mult = o->lr_mult;
        #pragma omp parallel for simd if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            if (buf) { buf[i] = first ? d : mu * buf[i] + d; d = buf[i]; } // torch: buf = d at the first step
            p[i] -= (mult ? mult[i] : 1.0f) * lr * d;
        }
    }
}

double dt_clip_grad_norm(float *g, size_t n, double max_norm) {
    double s = 0;
    #pragma omp parallel for reduction(+ : s) if (n > 65536)
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    double norm = sqrt(s);
    if (max_norm > 0 && norm > max_norm) {
        // torch multiplies by max_norm / (norm + 1e-6)
        float c = (float)(max_norm / (norm + 1e-6));
        #pragma omp parallel for simd if (n > 65536)
        for (size_t i = 0; i < n; i++) g[i] *= c;
    }
    return norm;
}
