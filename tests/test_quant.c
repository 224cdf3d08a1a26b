// The quantized storage types against tests/golden/quant/vectors.json (made by gen_quant.py, an
// independent PyTorch implementation): dequantization and the simple quantizers bit-exact (64-bit
// FNV-1a of the result bytes), the k-quant quantizers by their round-trip error.
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/quant.h"
#include "autograd/tensor.h"
#include "tests/test_util.h"

#define VECTORS "tests/golden/quant/vectors.json"

// ---- the input streams, as gen_quant.py draws them ----
typedef struct { uint64_t s; } splitmix;
static uint64_t sm_next(splitmix *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// gen_quant.py's case_seed: the little-endian integer of name + what, truncated to 64 bits.
static uint64_t case_seed(const char *name, const char *what) {
    char s[64];
    snprintf(s, sizeof s, "%s%s", name, what);
    uint64_t v = 0;
    for (size_t i = 0; i < strlen(s) && i < 8; i++) v |= (uint64_t)(uint8_t)s[i] << (8 * i);
    return v;
}
static void stream_bytes(uint64_t seed, uint8_t *out, size_t n) {
    splitmix r = {seed};
    for (size_t i = 0; i < n; i += 8) {
        uint64_t z = sm_next(&r);
        for (size_t k = 0; k < 8 && i + k < n; k++) out[i + k] = (uint8_t)(z >> (8 * k));
    }
}
static void stream_floats(uint64_t seed, float *x, int64_t n, int64_t block) {
    splitmix r = {seed};
    for (int64_t i = 0; i < n; i++) {
        int64_t b = i / block;
        double u = (double)(sm_next(&r) >> 40);
        double v = (u / 16777216.0 - 0.5) * ldexp(1.0, (int)(b % 9) - 4);
        x[i] = (b == 0 || (b == 1 && i % block != 3)) ? 0.0f : (float)v;
    }
}
static void fix_f16(uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    if (((h >> 10) & 31) == 31) h &= (uint16_t)~(1u << 14);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}
static uint64_t fnv1a(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static json_t *g_vec;

// Compares n bytes with the entry `key` of vectors.json.
static void check_hash(const char *key, const void *data, size_t n, double sum) {
    json_t *e = json_object_get(g_vec, key);
    const char *want = json_string_value(json_object_get(e, "fnv1a64"));
    if (!want) { TEST_FAIL(key, "no entry in %s", VECTORS); return; }
    char got[17];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)fnv1a(data, n));
    const char *ref_sum = json_string_value(json_object_get(e, "sum"));
    TEST_CHECK(key, !strcmp(got, want), "hash %s, reference %s (sum %.17g, reference %s)", got, want, sum,
               ref_sum ? ref_sum : "?");
}
static double fsum(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

typedef struct {
    const char *name;
    int64_t blck;
    size_t size;
    size_t f16_off[2];
    int n_f16;
    void (*to_f32)(const void *, float *, int64_t);
    void (*from_f32)(const float *, void *, int64_t);
    double max_rms_rel; // k-quants: bound on the round trip's RMS error relative to the data's RMS
} qtype;

static const qtype TYPES[] = {
    {"q8_0", 32, sizeof(dt_block_q8_0), {offsetof(dt_block_q8_0, d)}, 1, dt_q8_0_to_f32, dt_q8_0_from_f32, 0},
    {"q4_0", 32, sizeof(dt_block_q4_0), {offsetof(dt_block_q4_0, d)}, 1, dt_q4_0_to_f32, dt_q4_0_from_f32, 0},
    {"q4_1", 32, sizeof(dt_block_q4_1), {offsetof(dt_block_q4_1, d), offsetof(dt_block_q4_1, m)}, 2, dt_q4_1_to_f32, dt_q4_1_from_f32, 0},
    {"q5_0", 32, sizeof(dt_block_q5_0), {offsetof(dt_block_q5_0, d)}, 1, dt_q5_0_to_f32, dt_q5_0_from_f32, 0},
    {"q5_1", 32, sizeof(dt_block_q5_1), {offsetof(dt_block_q5_1, d), offsetof(dt_block_q5_1, m)}, 2, dt_q5_1_to_f32, dt_q5_1_from_f32, 0},
    // Uniform data: 4 bits leave about 1/(15 sqrt 12) of the range, relative to its RMS ~ 0.04-0.1.
    {"q4_K", 256, sizeof(dt_block_q4_K), {offsetof(dt_block_q4_K, d), offsetof(dt_block_q4_K, dmin)}, 2, dt_q4_K_to_f32, dt_q4_K_from_f32, 0.12},
    {"q5_K", 256, sizeof(dt_block_q5_K), {offsetof(dt_block_q5_K, d), offsetof(dt_block_q5_K, dmin)}, 2, dt_q5_K_to_f32, dt_q5_K_from_f32, 0.06},
    {"q6_K", 256, sizeof(dt_block_q6_K), {offsetof(dt_block_q6_K, d)}, 1, dt_q6_K_to_f32, dt_q6_K_from_f32, 0.03},
};

static int64_t n_blocks(int64_t blck) { return blck == 32 ? 6 : blck == 256 ? 2 : 5; }

static void test_ggml_type(const qtype *t) {
    const int64_t nb = n_blocks(t->blck), n = nb * t->blck;
    uint8_t *data = malloc((size_t)nb * t->size), *q = malloc((size_t)nb * t->size);
    float *y = malloc((size_t)n * sizeof *y), *x = malloc((size_t)n * sizeof *x);
    stream_bytes(case_seed(t->name, "deq"), data, (size_t)nb * t->size);
    for (int64_t i = 0; i < nb; i++)
        for (int k = 0; k < t->n_f16; k++) fix_f16(data + i * t->size + t->f16_off[k]);
    t->to_f32(data, y, n);
    char key[64];
    snprintf(key, sizeof key, "%s.to_f32", t->name);
    check_hash(key, y, (size_t)n * sizeof *y, fsum(y, n));

    stream_floats(case_seed(t->name, "q"), x, n, t->blck);
    t->from_f32(x, q, n);
    snprintf(key, sizeof key, "%s.from_f32", t->name);
    if (t->max_rms_rel == 0) {
        check_hash(key, q, (size_t)nb * t->size, 0);
    } else {
        // No Python k-quant quantizer: check the round trip instead, block by block (block 0 is zero).
        t->to_f32(q, y, n);
        double e2 = 0, x2 = 0, worst_zero = 0;
        for (int64_t i = 0; i < n; i++) {
            e2 += (double)(y[i] - x[i]) * (y[i] - x[i]);
            x2 += (double)x[i] * x[i];
            if (i < t->blck) worst_zero = fmax(worst_zero, fabs(y[i]));
        }
        double rel = sqrt(e2 / x2);
        TEST_CHECK(key, rel <= t->max_rms_rel && worst_zero == 0, "round trip RMS error %.3g of the data's RMS (at most %.3g), zero block -> %.3g",
                   rel, t->max_rms_rel, worst_zero);
    }
    free(data); free(q); free(y); free(x);
}

static void test_bnb(void) {
    float dyn[256];
    dt_bnb_dynamic_map(dyn);
    check_hash("bnb.dynamic_map", dyn, sizeof dyn, fsum(dyn, 256));
    const char *kinds[2] = {"nf4", "fp4"};
    for (int k = 0; k < 2; k++) {
        char key[64];
        dt_nf4_state st = {.kind = (dt_4bit_kind)k, .block = 64};
        dt_4bit_code(st.kind, st.code);
        snprintf(key, sizeof key, "%s.code", kinds[k]);
        check_hash(key, st.code, sizeof st.code, fsum(st.code, 16));
        const int64_t nb = 5, n = nb * 64;
        uint8_t q[5 * 32];
        float am_src[9 * 64], absmax[5], y[5 * 64], x[5 * 64];
        stream_bytes(case_seed(kinds[k], "deq"), q, sizeof q);
        stream_floats(case_seed(kinds[k], "am"), am_src, 9 * 64, 64);
        for (int b = 0; b < nb; b++) absmax[b] = fabsf(am_src[9 * 64 - nb + b]);
        st.absmax = absmax;
        dt_nf4_to_f32(&st, q, 0, nb, y);
        snprintf(key, sizeof key, "%s.to_f32", kinds[k]);
        check_hash(key, y, sizeof y, fsum(y, n));
        // From the middle: blocks 2..4 alone must give the same values as within the whole.
        float part[3 * 64];
        dt_nf4_to_f32(&st, q + 2 * 32, 2, 3, part);
        snprintf(key, sizeof key, "%s.to_f32 of blocks 2-4 alone", kinds[k]);
        TEST_CHECK(key, !memcmp(part, y + 2 * 64, sizeof part), "differs from the whole-tensor call");
        stream_floats(case_seed(kinds[k], "q"), x, n, 64);
        dt_nf4_from_f32(st.code, 64, x, n, q, absmax);
        snprintf(key, sizeof key, "%s.from_f32.q", kinds[k]);
        check_hash(key, q, sizeof q, 0);
        snprintf(key, sizeof key, "%s.from_f32.absmax", kinds[k]);
        check_hash(key, absmax, sizeof absmax, fsum(absmax, nb));
    }
    // Double quantization of 40 absmax values in nested blocks of 16, then NF4 through that state.
    float am_src[9 * 64], am[40], nested[3], off;
    uint8_t qa[40], q[40 * 32];
    stream_floats(case_seed("dq", "am"), am_src, 9 * 64, 64);
    for (int i = 0; i < 40; i++) am[i] = fabsf(am_src[9 * 64 - 40 + i]) + 0.01f;
    dt_nf4_double_quant(am, 40, 16, dyn, qa, nested, &off);
    check_hash("dq.q", qa, sizeof qa, 0);
    check_hash("dq.nested_absmax", nested, sizeof nested, fsum(nested, 3));
    check_hash("dq.offset", &off, sizeof off, off);
    dt_nf4_state st = {.kind = DT_4BIT_NF4, .block = 64, .qabsmax = qa, .nested_absmax = nested, .nested_block = 16,
                       .offset = off};
    dt_4bit_code(DT_4BIT_NF4, st.code);
    memcpy(st.nested_code, dyn, sizeof dyn);
    stream_bytes(case_seed("dq", "deq"), q, sizeof q);
    float *y = malloc(40 * 64 * sizeof *y);
    dt_nf4_to_f32(&st, q, 0, 40, y);
    check_hash("dq.to_f32", y, 40 * 64 * sizeof *y, fsum(y, 40 * 64));
    free(y);
}

int main(void) {
    json_error_t err;
    g_vec = json_load_file(VECTORS, 0, &err);
    if (!g_vec) {
        TEST_FAIL("quant vectors", "%s: %s (line %d)", VECTORS, err.text, err.line);
        TEST_EXIT();
    }
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) test_ggml_type(&TYPES[i]);
    test_bnb();
    json_decref(g_vec);
    TEST_EXIT();
}
