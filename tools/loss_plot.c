#include "tools/loss_plot.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "models/atomic_file.h"

#define W 640
#define H 400
#define PAD 50

static void polyline(FILE *f, const dt_point *p, size_t n, int64_t s0, int64_t s1, double lo, double hi, const char *color) {
    if (!n) return;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
    for (size_t i = 0; i < n; i++) {
        double x = PAD + (W - 2 * PAD) * (s1 > s0 ? (double)(p[i].step - s0) / (double)(s1 - s0) : 0.5);
        double y = H - PAD - (H - 2 * PAD) * (hi > lo ? (p[i].loss - lo) / (hi - lo) : 0.5);
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n");
}

int dt_loss_plot_write(dt_ctx *ctx, const char *path, const dt_point *train, size_t n_train, const dt_point *val,
                       size_t n_val) {
    int64_t s0 = INT64_MAX, s1 = INT64_MIN;
    double lo = INFINITY, hi = -INFINITY;
    const dt_point *sets[2] = {train, val};
    size_t ns[2] = {n_train, n_val};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < ns[k]; i++) {
            const dt_point *p = &sets[k][i];
            if (p->step < s0) s0 = p->step;
            if (p->step > s1) s1 = p->step;
            if (p->loss < lo) lo = p->loss;
            if (p->loss > hi) hi = p->loss;
        }
    if (s0 > s1) { s0 = 0; s1 = 1; lo = 0; hi = 1; }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", PAD, H - PAD, W - PAD, H - PAD);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", PAD, PAD, PAD, H - PAD);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step</text>\n", W / 2, H - 10);
    fprintf(f, "<text x=\"%d\" y=\"%d\">%lld</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%lld</text>\n", PAD,
            H - PAD + 15, (long long)s0, W - PAD, H - PAD + 15, (long long)s1);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3f</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3f</text>\n",
            PAD - 4, PAD + 4, hi, PAD - 4, H - PAD, lo);
    polyline(f, train, n_train, s0, s1, lo, hi, "#1f77b4");
    polyline(f, val, n_val, s0, s1, lo, hi, "#d62728");
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#1f77b4\">train loss</text>\n", W - PAD - 150, PAD - 20);
    if (n_val) fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#d62728\">val loss</text>\n", W - PAD - 60, PAD - 20);
    fprintf(f, "</svg>\n");
    fclose(f);
    int rc = dt_atomic_write(ctx, path, buf, len);
    free(buf);
    return rc;
}
