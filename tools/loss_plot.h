// loss.svg: a small line plot of train loss (and val loss, when there is any) against the step.
#ifndef DT_LOSS_PLOT_H
#define DT_LOSS_PLOT_H
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"

typedef struct { int64_t step; double loss; } dt_point;

// Writes the plot atomically; either series may be empty.
int dt_loss_plot_write(dt_ctx *ctx, const char *path, const dt_point *train, size_t n_train, const dt_point *val,
                       size_t n_val);

#endif
