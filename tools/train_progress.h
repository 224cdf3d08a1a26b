// What `deltatune train` shows while it runs. On a terminal: one bar redrawn after every step (loss,
// learning rate, speed, the last validation loss, ETA), and a line of its own for each validation. Else
// (a log file): one line every log_every_n_steps and one per validation. The ETA counts only the steps
// run since this process started, so after a resume it is not skewed by steps done before.
#ifndef DT_TRAIN_PROGRESS_H
#define DT_TRAIN_PROGRESS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct dt_progress {
    FILE *out;
    bool tty;
    int64_t first_step, total; // the step this run started from; the last step
    double t_start;            // seconds (monotonic) when the first step of this run began
    double val_loss;           // the last validation loss, NAN before the first
} dt_progress;

double dt_progress_now(void);
void dt_progress_start(dt_progress *p, FILE *out, bool tty, int64_t first_step, int64_t total);
// After optimizer step `step`; log: whether this step is one of the log_every_n_steps ones.
void dt_progress_step(dt_progress *p, int64_t step, double loss, double lr, double tokens_per_s, bool log);
void dt_progress_val(dt_progress *p, int64_t step, double val_loss);
// Ends the bar's line (on a terminal).
void dt_progress_end(dt_progress *p);
// The bar or the log line for `step` at time `now` into buf (what dt_progress_step prints).
void dt_progress_format(const dt_progress *p, double now, int64_t step, double loss, double lr, double tokens_per_s,
                        char *buf, size_t n);

#endif
