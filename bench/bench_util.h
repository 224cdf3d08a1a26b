// Timing helpers every benchmark in bench/ shares: a monotonic clock and the median of a sample.
#ifndef DT_BENCH_UTIL_H
#define DT_BENCH_UTIL_H
#include <stdlib.h>
#include <time.h>

// Seconds on the monotonic clock.
static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// For qsort over doubles, ascending.
static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// The median of v (n > 0), sorting v in place.
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

#endif
