// The storage-type seam: every traits row round-trips reference values, and the CPU frozen-linear
// entry (dt_backend.frozen_fwd/bwd, embedding_fwd) on a bf16 or f16 weight equals the plain f32 sgemm
// on the same weight widened, for panel boundaries that do and do not divide the rows. The quantized
// rows and the fast kernels for a type are tested against this same generic path in their own tests.
// dt_cpu_gemm itself, which every one of them ends in, is checked against a naive loop.
#include <math.h>
#include "autograd/backend.h"
#include "autograd/cpu_kernels.h"
#include "autograd/dtype.h"
#include "tests/test_util.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static double max_rel(const float *a, const float *b, int64_t n) {
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]) / (scale > 0 ? scale : 1));
    return worst;
}

static void test_traits(void) {
    // Values every element type holds exactly (small integers and powers of two), plus their rounding:
    // 1 + 2^-9 is between two bf16 values and rounds to even (1.0); f16 keeps it.
    const float ref[8] = {0.0f, 1.0f, -2.0f, 0.5f, 3.0f, -0.25f, 1024.0f, 1.0f + 1.0f / 512.0f};
    for (int t = 0; t < DT_DTYPE_COUNT; t++) {
        const dt_type_traits *tr = dt_type_traits_of((dt_dtype)t);
        char name[64];
        snprintf(name, sizeof name, "traits_%s_row", tr ? tr->name : "?");
        if (!tr) { TEST_FAIL(name, "type %d has no traits row", t); continue; }
        if (!tr->to_f32) continue; // integer types hold no weights
        if (tr->block != 1) continue; // block types round-trip in their own tests (test_quant)
        uint8_t buf[64];
        float back[8];
        tr->from_f32(ref, buf, 8);
        tr->to_f32(buf, back, 8);
        bool ok = dt_type_row_bytes((dt_dtype)t, 8) == 8 * tr->block_bytes && dt_type_by_name(tr->name) == (dt_dtype)t;
        for (int i = 0; i < 7; i++) ok &= back[i] == ref[i];
        float want_last = t == DT_BF16 ? 1.0f : ref[7];
        ok &= back[7] == want_last;
        TEST_CHECK(name, ok, "round trip of %s differs (last %.9g, want %.9g)", tr->name, back[7], want_last);
    }
    TEST_CHECK("traits_unknown_is_null", dt_type_traits_of(DT_DTYPE_COUNT) == NULL &&
               dt_type_by_name("no-such-type") == DT_DTYPE_COUNT, "an unknown type has a row");
}

// W (out, in) random, stored as `type`; compares the backend's entry with sgemm on the widened W.
static void test_frozen_type(dt_dtype type, int64_t out, int64_t in, int64_t N) {
    const dt_backend *be = dt_backend_cpu();
    uint64_t seed = 42 + (uint64_t)out;
    const dt_type_traits *tr = dt_type_traits_of(type);
    float *w = malloc((size_t)(out * in) * 4), *wide = malloc((size_t)(out * in) * 4);
    float *x = malloc((size_t)(N * in) * 4), *dy = malloc((size_t)(N * out) * 4);
    float *y = malloc((size_t)(N * out) * 4), *yref = malloc((size_t)(N * out) * 4);
    float *dx = malloc((size_t)(N * in) * 4), *dxref = malloc((size_t)(N * in) * 4);
    void *stored = malloc(dt_type_row_bytes(type, in) * (size_t)out);
    for (int64_t i = 0; i < out * in; i++) w[i] = frand(&seed);
    for (int64_t i = 0; i < N * in; i++) x[i] = frand(&seed);
    for (int64_t i = 0; i < N * out; i++) dy[i] = frand(&seed);
    tr->from_f32(w, stored, out * in);
    tr->to_f32(stored, wide, out * in);
    dt_tensor W;
    dt_tensor_set(&W, type, stored, 2, (int64_t[]){out, in});
    void *scratch = malloc(be->frozen_scratch_bytes(be, &W, N) + 1);
    char name[96];
    for (int acc = 0; acc < 2; acc++) {
        // acc: both start from the same y and dx, which the calls add into
        for (int64_t i = 0; i < N * out; i++) y[i] = yref[i] = acc ? 0.5f : 0.0f;
        for (int64_t i = 0; i < N * in; i++) dx[i] = dxref[i] = acc ? -0.25f : 0.0f;
        be->frozen_fwd(be, y, acc, x, N, &W, scratch);
        dt_cpu_gemm(false, true, N, out, in, 1.0f, x, in, wide, in, acc ? 1.0f : 0.0f, yref, out);
        be->frozen_bwd(be, dx, acc, dy, N, &W, scratch);
        dt_cpu_gemm(false, false, N, in, out, 1.0f, dy, out, wide, in, acc ? 1.0f : 0.0f, dxref, in);
        // Same products, summed in another blocking (panels): f32 rounding only.
        double ef = max_rel(y, yref, N * out), eb = max_rel(dx, dxref, N * in);
        snprintf(name, sizeof name, "frozen_%s_%lldx%lld_N%lld%s", tr->name, (long long)out, (long long)in,
                 (long long)N, acc ? "_acc" : "");
        TEST_CHECK(name, ef < 1e-5 && eb < 1e-5, "fwd %.3g, bwd %.3g relative to the largest value", ef, eb);
        if (type == DT_F32) continue;
        // The dispatch (a fast row widener where the CPU has one) equals the generic path bit for bit.
        float *y2 = malloc((size_t)(N * out) * 4), *dx2 = malloc((size_t)(N * in) * 4);
        for (int64_t i = 0; i < N * out; i++) y2[i] = acc ? 0.5f : 0.0f;
        for (int64_t i = 0; i < N * in; i++) dx2[i] = acc ? -0.25f : 0.0f;
        dt_cpu_frozen_fwd_generic(y2, acc, x, N, &W, scratch);
        dt_cpu_frozen_bwd_generic(dx2, acc, dy, N, &W, scratch);
        snprintf(name, sizeof name, "frozen_%s_%lldx%lld_N%lld%s_generic", tr->name, (long long)out, (long long)in,
                 (long long)N, acc ? "_acc" : "");
        TEST_CHECK(name, !memcmp(y, y2, (size_t)(N * out) * 4) && !memcmp(dx, dx2, (size_t)(N * in) * 4),
                   "the dispatch differs from the generic path");
        free(y2); free(dx2);
    }
    // Embedding rows of the stored table are the widened rows, exactly.
    int32_t ids[5] = {0, (int32_t)out - 1, 3 % (int32_t)out, 1, 0};
    float *rows = malloc((size_t)(5 * in) * 4);
    be->embedding_fwd(be, rows, ids, 5, &W);
    bool same = true;
    for (int i = 0; i < 5; i++) same &= memcmp(rows + i * in, wide + (int64_t)ids[i] * in, (size_t)in * 4) == 0;
    snprintf(name, sizeof name, "embedding_rows_%s_%lldx%lld", tr->name, (long long)out, (long long)in);
    TEST_CHECK(name, same, "embedding rows differ from the widened table");
    free(rows); free(scratch); free(stored); free(w); free(wide); free(x); free(dy); free(y); free(yref);
    free(dx); free(dxref);
}

// dt_cpu_gemm against a naive triple loop in double, for every transpose, strided operands, alpha and
// beta (beta 0 over a C full of NaN, which must not leak through), with one output row (the sgemv path
// generation's one-token steps take) and with several (sgemm).
static void test_gemm_vs_naive(void) {
    uint64_t seed = 7;
    const int64_t N = 37, pad = 3;
    for (int64_t K = 53; K >= 0; K -= 53) // K = 0: C = beta C only
    for (int64_t M = 1; M <= 3; M += 2)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int b = 0; b < 2; b++) {
                    const float alpha = 0.7f, beta = b ? 0.5f : 0.0f;
                    const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
                    float *A = malloc((size_t)((ta ? K : M) * lda) * 4), *B = malloc((size_t)((tb ? N : K) * ldb) * 4);
                    float *C = malloc((size_t)(M * ldc) * 4), *C0 = malloc((size_t)(M * ldc) * 4);
                    for (int64_t i = 0; i < (ta ? K : M) * lda; i++) A[i] = frand(&seed);
                    for (int64_t i = 0; i < (tb ? N : K) * ldb; i++) B[i] = frand(&seed);
                    for (int64_t i = 0; i < M * ldc; i++) C[i] = C0[i] = b ? frand(&seed) : NAN;
                    dt_cpu_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
                    double worst = 0;
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < N; j++) {
                            double acc = 0;
                            for (int64_t k = 0; k < K; k++)
                                acc += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
                            double want = alpha * acc + (b ? beta * (double)C0[i * ldc + j] : 0.0);
                            double d = fabs(C[i * ldc + j] - want);
                            worst = d == d && worst == worst ? fmax(worst, d) : NAN; // NaN sticks
                        }
                    char name[96];
                    snprintf(name, sizeof name, "gemm_vs_naive_M%lld_K%lld_%s%s_beta%g", (long long)M, (long long)K,
                             ta ? "T" : "N", tb ? "T" : "N", beta);
                    TEST_CHECK(name, worst <= 1e-5, "max |C - naive| = %g", worst);
                    free(A); free(B); free(C); free(C0);
                }
}

int main(void) {
    test_traits();
    test_gemm_vs_naive();
    // 600 x 2000: a 131-row panel, so the last panel is short; 40 x 24: one panel holding every row.
    const dt_dtype types[3] = {DT_F32, DT_BF16, DT_F16};
    for (int t = 0; t < 3; t++) {
        test_frozen_type(types[t], 600, 2000, 7);
        test_frozen_type(types[t], 40, 24, 3);
        test_frozen_type(types[t], 600, 2000, 1); // one row: generation's decode
        test_frozen_type(types[t], 37, 29, 1);    // rows not a whole number of vectors (the fast rows' tails)
        test_frozen_type(types[t], 37, 29, 5);
    }
    TEST_EXIT();
}
