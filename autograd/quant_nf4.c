// bitsandbytes' 4-bit types (NF4, FP4) and the 8-bit "dynamic" code of its double quantization,
// following bitsandbytes/functional.py (get_4bit_type, create_dynamic_map, quantize_4bit) and its
// blockwise kernels (two values per byte, the first in the high nibble).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/quant.h"

// functional.py's get_4bit_type lists; FP4's are divided by their absolute maximum (12) as it does.
static const double NF4_LEVELS[16] = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
};
// e2m1 values of nibbles 0-7 (the sign is bit 3): 0b000 = 0, 0b001 = 0.0625, 0b010 = 8, 0b011 = 12,
// 0b100 = 4, 0b101 = 6, 0b110 = 2, 0b111 = 3.
static const float FP4_LEVELS[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};

void dt_4bit_code(dt_4bit_kind kind, float code[16]) {
    for (int i = 0; i < 16; i++) {
        if (kind == DT_4BIT_NF4) {
            code[i] = (float)NF4_LEVELS[i];
        } else {
            float v = FP4_LEVELS[i & 7] / 12.0f; // torch's f32 division, as data /= data.abs().max()
            code[i] = i & 8 ? -v : v;
        }
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for exponents 10^-6 .. 10^0 the
// midpoints of linspace(0.1, 1, 2^i + 1) scaled by the power of ten, both signs, plus 0 and 1; sorted.
// Computed in double and rounded once: PyTorch's own float32 linspace rounds differently on different
// CPUs (its vectorised kernel), so bitsandbytes' table is within a unit in the last place of this one.
// A checkpoint carries its table (nested_quant_map), which is what reading one uses.
void dt_bnb_dynamic_map(float code[256]) {
    int n = 0;
    for (int i = 0; i < 7; i++) {
        const int items = (1 << i) + 1;
        const double e = pow(10.0, (double)(i - 6)), step = 0.9 / (double)(items - 1);
        for (int k = 0; k + 1 < items; k++) {
            double mean = (0.1 + step * k + 0.1 + step * (k + 1)) / 2.0;
            code[n++] = (float)(e * mean);
            code[n++] = (float)(-e * mean);
        }
    }
    // additional_items = 2^(7-7) - 1 = 0: nothing more.
    code[n++] = 0.0f;
    code[n++] = 1.0f;
    qsort(code, (size_t)n, sizeof *code, cmp_float);
}

float dt_nf4_absmax(const dt_nf4_state *st, int64_t b) {
    if (st->absmax) return st->absmax[b];
    return st->nested_code[st->qabsmax[b]] * st->nested_absmax[b / st->nested_block] + st->offset;
}

void dt_nf4_to_f32(const dt_nf4_state *st, const uint8_t *q, int64_t b0, int64_t nb, float *dst) {
    const int64_t half = st->block / 2;
    for (int64_t b = 0; b < nb; b++, q += half, dst += st->block) {
        const float a = dt_nf4_absmax(st, b0 + b);
        for (int64_t j = 0; j < half; j++) {
            dst[2 * j] = st->code[q[j] >> 4] * a;
            dst[2 * j + 1] = st->code[q[j] & 15] * a;
        }
    }
}

// Index of the code nearest to v (code sorted ascending; ties go to the lower code, as bitsandbytes'
// comparisons `v > midpoint`). FP4's code is not sorted, so it goes through the sorted order.
static int nearest_code(const float *sorted, const int *index, float v) {
    int lo = 0;
    for (int k = 1; k < 16; k++)
        if (v > (sorted[k - 1] + sorted[k]) * 0.5f) lo = k;
    return index[lo];
}

void dt_nf4_from_f32(const float code[16], int64_t block, const float *x, int64_t n, uint8_t *q, float *absmax) {
    float sorted[16];
    int index[16];
    // Sort the levels once (FP4 has +0 and -0: the +0 nibble is kept for zero, negative values take -0
    // only when v < 0 rounds to it, below).
    for (int i = 0; i < 16; i++) { sorted[i] = code[i]; index[i] = i; }
    for (int i = 1; i < 16; i++)
        for (int k = i; k > 0 && sorted[k - 1] > sorted[k]; k--) {
            float t = sorted[k]; sorted[k] = sorted[k - 1]; sorted[k - 1] = t;
            int u = index[k]; index[k] = index[k - 1]; index[k - 1] = u;
        }
    // Equal neighbours (FP4's +0/-0) leave a zero-width bin; drop the later one so lookups skip it.
    int m = 0;
    for (int i = 0; i < 16; i++)
        if (m == 0 || sorted[i] != sorted[m - 1]) { sorted[m] = sorted[i]; index[m] = index[i]; m++; }
    for (; m < 16; m++) { sorted[m] = INFINITY; index[m] = index[m - 1]; }
    // A zero-valued level of sign bit 8 (FP4's -0) is what bitsandbytes gives negative inputs that round to 0.
    int neg_zero = -1;
    for (int i = 0; i < 16; i++)
        if (code[i] == 0.0f && signbit(code[i])) neg_zero = i;
    for (int64_t b = 0; b < n / block; b++, x += block, q += block / 2) {
        float amax = 0.0f;
        for (int64_t j = 0; j < block; j++) amax = fmaxf(amax, fabsf(x[j]));
        absmax[b] = amax;
        const float inv = 1.0f / amax; // amax 0: inf * 0 = NaN below, which no comparison takes: level 0
        for (int64_t j = 0; j < block; j += 2) {
            int c[2];
            for (int k = 0; k < 2; k++) {
                float v = x[j + k] * inv;
                c[k] = nearest_code(sorted, index, v == v ? v : 0.0f);
                if (neg_zero >= 0 && code[c[k]] == 0.0f && v < 0) c[k] = neg_zero;
            }
            q[j / 2] = (uint8_t)(c[0] << 4 | c[1]);
        }
    }
}

void dt_nf4_double_quant(const float *absmax, int64_t n, int64_t nested_block, const float dyn[256], uint8_t *q,
                         float *nested_absmax, float *offset) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += absmax[i];
    const float off = (float)(sum / (double)n); // torch's f32 mean may differ in the last bit; it is stored
    *offset = off;
    for (int64_t b = 0; b * nested_block < n; b++) {
        const int64_t lo = b * nested_block, hi = lo + nested_block < n ? lo + nested_block : n;
        float amax = 0.0f;
        for (int64_t i = lo; i < hi; i++) amax = fmaxf(amax, fabsf(absmax[i] - off));
        nested_absmax[b] = amax;
        const float inv = amax > 0 ? 1.0f / amax : 0.0f;
        for (int64_t i = lo; i < hi; i++) {
            // Nearest of the 256 sorted levels by bisection, then the closer neighbour.
            float v = (absmax[i] - off) * inv;
            int a = 0, z = 255;
            while (z - a > 1) {
                int mid = (a + z) / 2;
                if (dyn[mid] <= v) a = mid; else z = mid;
            }
            q[i] = (uint8_t)(fabsf(v - dyn[a]) <= fabsf(dyn[z] - v) ? a : z);
        }
    }
}
