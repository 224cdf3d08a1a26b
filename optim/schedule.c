#include "optim/schedule.h"
#include <math.h>

double dt_lr_at(dt_lr_kind kind, double base_lr, int64_t step, int64_t total, int64_t warmup, double min_lr_ratio) {
    // transformers' warm-up: lr * step / warmup while step < warmup (so step 0 trains with lr 0).
    if (warmup > 0 && step < warmup) return base_lr * (double)step / (double)warmup;
    if (kind == DT_LR_CONSTANT) return base_lr;
    int64_t span = total - warmup;
    double progress = span > 0 ? (double)(step - warmup) / (double)span : 1.0;
    if (progress > 1.0) progress = 1.0;
    double f = kind == DT_LR_LINEAR ? 1.0 - progress : 0.5 * (1.0 + cos(M_PI * progress));
    return base_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * f);
}
