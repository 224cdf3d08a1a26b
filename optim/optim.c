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

// One AdamW update of one parameter, k its learning-rate multiplier (torch: p *= 1 - lr*wd; m, v
// updated; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)).
typedef struct { float b1, b2, wd, eps, lr, step_size, bc2_sqrt; } adamw_consts;
static inline void adamw_one(float *p, float *m, float *v, float g, float k, const adamw_consts *c) {
    *p *= 1.0f - k * c->lr * c->wd;
    *m = c->b1 * *m + (1.0f - c->b1) * g;
    *v = c->b2 * *v + (1.0f - c->b2) * g * g;
    *p -= k * c->step_size * *m / (sqrtf(*v) / c->bc2_sqrt + c->eps);
}

// SGD: d = g + wd p (into the momentum buffer when there is one; torch: buf = d at the first step).
static inline void sgd_one(float *p, float *buf, float g, float k, float lr, float wd, float mu, bool first) {
    float d = g + wd * *p;
    if (buf) { *buf = first ? d : mu * *buf + d; d = *buf; }
    *p -= k * lr * d;
}

// Each loop comes twice, with and without per-parameter multipliers (LoRA+ groups), rather than once
// with `mult ? mult[i] : 1`: GCC vectorises that select as a masked load from mult even when mult is
// NULL, and a masked load from an unmapped page takes a microcode assist on every vector (measured:
// AdamW over 4.9M parameters took 48 ms, against 3.9 ms without it, on 2 cores of an AMD EPYC).
void dt_optim_step(dt_optimizer *o, float *p, const float *g, float lr) {
    const size_t n = o->n;
    const float *mult = o->lr_mult;
    o->step++;
    if (o->kind == DT_OPT_ADAMW) {
        float *m = o->state, *v = o->state + n;
        adamw_consts c = {o->beta1, o->beta2, o->weight_decay, o->eps, lr, 0, 0};
        dt_adamw_factors(o, lr, &c.step_size, &c.bc2_sqrt);
        if (mult) {
            #pragma omp parallel for simd if (n > 65536)
            for (size_t i = 0; i < n; i++) adamw_one(&p[i], &m[i], &v[i], g[i], mult[i], &c);
        } else {
            #pragma omp parallel for simd if (n > 65536)
            for (size_t i = 0; i < n; i++) adamw_one(&p[i], &m[i], &v[i], g[i], 1.0f, &c);
        }
    } else {
        float *buf = o->state;
        const float mu = o->momentum, wd = o->weight_decay;
        const bool first = o->step == 1;
        if (buf && mult) {
            #pragma omp parallel for simd if (n > 65536)
            for (size_t i = 0; i < n; i++) sgd_one(&p[i], &buf[i], g[i], mult[i], lr, wd, mu, first);
        } else if (buf) {
            #pragma omp parallel for simd if (n > 65536)
            for (size_t i = 0; i < n; i++) sgd_one(&p[i], &buf[i], g[i], 1.0f, lr, wd, mu, first);
        } else if (mult) {
            #pragma omp parallel for simd if (n > 65536)
            for (size_t i = 0; i < n; i++) sgd_one(&p[i], NULL, g[i], mult[i], lr, wd, mu, first);
        } else {
            #pragma omp parallel for simd if (n > 65536)
            for (size_t i = 0; i < n; i++) sgd_one(&p[i], NULL, g[i], 1.0f, lr, wd, mu, first);
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
