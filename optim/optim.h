// Optimizers over one flat block of trainable parameters and its gradient block. State (AdamW moments,
// SGD momentum) is allocated once at creation, as one block of the same layout.
#ifndef DT_OPTIM_H
#define DT_OPTIM_H
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"

typedef enum { DT_OPT_ADAMW = 0, DT_OPT_SGD = 1 } dt_opt_kind;

typedef struct dt_optimizer {
    dt_opt_kind kind;
    float beta1, beta2, eps, weight_decay, momentum;
    int64_t step;      // updates done (AdamW bias correction uses step + 1 for the next one)
    size_t n;          // parameters
    float *state;      // AdamW: m then v (2n); SGD with momentum: velocity (n); else NULL
    float *lr_mult;    // (n) each parameter's learning-rate multiplier (LoRA+), or NULL for 1; owned
} dt_optimizer;

int dt_optim_init(dt_ctx *ctx, dt_optimizer *o, dt_opt_kind kind, size_t n, float beta1, float beta2, float eps,
                  float weight_decay, float momentum);
void dt_optim_free(dt_optimizer *o);
// Gives parameter i the learning rate lr * mult[i] from now on (mult: n floats, copied).
int dt_optim_set_lr_mult(dt_ctx *ctx, dt_optimizer *o, const float *mult);
// One update of params (n) from grads (n) at learning rate lr (times lr_mult where set).
void dt_optim_step(dt_optimizer *o, float *params, const float *grads, float lr);
// AdamW's bias corrections for the update numbered o->step (already advanced): lr / (1 - beta1^step)
// and sqrt(1 - beta2^step), computed in double as torch does. Shared with the CUDA kernel
// (autograd/cuda/optim.cu) so both devices use the same two floats.
void dt_adamw_factors(const dt_optimizer *o, float lr, float *step_size, float *bc2_sqrt);
// Global L2 norm of grads (n); when max_norm > 0 and the norm exceeds it, scales grads to max_norm.
// Returns the norm before clipping (as PyTorch's clip_grad_norm_ does).
double dt_clip_grad_norm(float *grads, size_t n, double max_norm);

#endif
