// One query of attention over a KV cache, defined once for the CPU (cpu_attention.c's
// dt_cpu_attention_cached) and the device (autograd/cuda/attention.cu's attention_cached_k, where DT_HD
// makes it a device function): one pass over the keys with a running max, as generation needs only a
// handful of queries at a time.
#ifndef DT_ATTENTION_CACHED_ROW_H
#define DT_ATTENTION_CACHED_ROW_H
#include <math.h>
#include <stdint.h>
#include "autograd/half.h" // DT_HD

// o (hd) = softmax(scale * qi . k_j for j < len) . v_j, where k_j = k + j * stride and v_j = v + j * stride
// (the cache's rows of this query's key/value head).
static inline DT_HD void dt_attention_cached_row(float *o, const float *qi, const float *k, const float *v, int64_t len,
                                                 int64_t stride, int64_t hd, float scale) {
    float m = -INFINITY, sum = 0;
    for (int64_t e = 0; e < hd; e++) o[e] = 0;
    for (int64_t j = 0; j < len; j++) {
        const float *kj = k + j * stride, *vj = v + j * stride;
        float s = 0;
        for (int64_t e = 0; e < hd; e++) s += qi[e] * kj[e];
        s *= scale;
        const float mn = s > m ? s : m, corr = expf(m - mn), w = expf(s - mn);
        sum = sum * corr + w;
        for (int64_t e = 0; e < hd; e++) o[e] = o[e] * corr + w * vj[e];
        m = mn;
    }
    for (int64_t e = 0; e < hd; e++) o[e] /= sum;
}

#endif
