// Learning-rate schedules: linear warm-up from 0, then constant, linear decay or cosine decay down to
// lr * min_lr_ratio at the last step (as transformers' get_*_schedule_with_warmup, with a floor).
#ifndef DT_SCHEDULE_H
#define DT_SCHEDULE_H
#include <stdint.h>

typedef enum { DT_LR_CONSTANT = 0, DT_LR_LINEAR = 1, DT_LR_COSINE = 2 } dt_lr_kind;

// lr for optimizer step `step` (0-based) of `total` steps.
double dt_lr_at(dt_lr_kind kind, double base_lr, int64_t step, int64_t total, int64_t warmup, double min_lr_ratio);

#endif
