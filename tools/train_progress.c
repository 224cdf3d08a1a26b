#include "tools/train_progress.h"
#include <math.h>
#include <time.h>

double dt_progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void dt_progress_start(dt_progress *p, FILE *out, bool tty, int64_t first_step, int64_t total) {
    *p = (dt_progress){out, tty, first_step, total, dt_progress_now(), NAN};
}

void dt_progress_format(const dt_progress *p, double now, int64_t step, double loss, double lr, double tokens_per_s,
                        char *buf, size_t n) {
    int64_t run = step - p->first_step; // steps timed by this process
    double eta = run > 0 ? (now - p->t_start) / (double)run * (double)(p->total - step) : 0;
    if (eta < 0) eta = 0;
    if (p->tty) {
        enum { WIDTH = 30 };
        char bar[WIDTH + 1], val[32] = "";
        int fill = p->total > 0 ? (int)(WIDTH * step / p->total) : WIDTH;
        for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
        bar[WIDTH] = 0;
        if (!isnan(p->val_loss)) snprintf(val, sizeof val, " val %.4f", p->val_loss);
        // \r and "erase to end of line" redraw the bar in place.
        snprintf(buf, n, "\r[%s] %lld/%lld loss %.4f%s lr %.2e %.0f tok/s ETA %02d:%02d:%02d\033[K", bar, (long long)step,
                 (long long)p->total, loss, val, lr, tokens_per_s, (int)(eta / 3600), (int)fmod(eta / 60, 60),
                 (int)fmod(eta, 60));
    } else {
        snprintf(buf, n, "step %lld/%lld loss %.4f lr %.3e tokens/s %.0f eta %.0fs\n", (long long)step, (long long)p->total,
                 loss, lr, tokens_per_s, eta);
    }
}

void dt_progress_step(dt_progress *p, int64_t step, double loss, double lr, double tokens_per_s, bool log) {
    if (!p->tty && !log) return;
    char buf[256];
    dt_progress_format(p, dt_progress_now(), step, loss, lr, tokens_per_s, buf, sizeof buf);
    fputs(buf, p->out);
    fflush(p->out);
}

void dt_progress_val(dt_progress *p, int64_t step, double val_loss) {
    p->val_loss = val_loss;
    // On a terminal the line replaces the bar, which the next step draws again below it.
    fprintf(p->out, "%sstep %lld val_loss %.4f perplexity %.3f\n", p->tty ? "\r\033[K" : "", (long long)step, val_loss,
            exp(val_loss));
    fflush(p->out);
}

void dt_progress_end(dt_progress *p) {
    if (p->tty) fputc('\n', p->out);
}
