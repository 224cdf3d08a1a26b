// The bf16 matmul against its naive reference (every transpose / accumulate / scale case, odd shapes,
// leading dimensions wider than the rows, and from inside an OpenMP region), through oneDNN where the
// CPU has bf16 units and emulated (widened, sgemm) always; the attention kernels on it; and the vector
// f32 -> bf16 rounding against the scalar one of tensor.c on the values where rounding is delicate.
#include <math.h>
#include <omp.h>
#include "autograd/cpu_bf16.h"
#include "autograd/cpu_kernels.h"
#include "autograd/tensor.h"
#include "tests/test_util.h"

// Pseudo-random bf16 values in [-1, 1).
static void fill(uint16_t *x, int64_t n, uint32_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = dt_f32_to_bf16((float)(seed >> 8) / (float)(1u << 23) - 1.0f);
    }
}

// Both kernels compute exact products of bf16 values (8-bit mantissas: 16-bit products, exact in f32)
// and differ only in summation order and width (f32 in oneDNN and sgemm, double in the reference): the error
// bound is K * 2^-24 * sum |a||b| <= K * 2^-24 * K for |a|, |b| <= 1, plus the f32 rounding of C.
static double bound(int64_t K) { return (double)K * K * ldexp(1.0, -24) + 1e-6; }

static const char *mode(const dt_bf16_mm *e) { return dt_bf16_mm_emulated(e) ? "emulated" : "oneDNN"; }

static void check_case(dt_bf16_mm *e, bool ta, bool tb, bool acc, float alpha, int64_t M, int64_t N, int64_t K,
                       bool nested) {
    const int64_t pad = 3, lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    uint16_t *A = malloc(sizeof *A * (size_t)((ta ? K : M) * lda)); // op(A) (M, K)
    uint16_t *B = malloc(sizeof *B * (size_t)((tb ? N : K) * ldb)); // op(B) (K, N)
    // (M, N) each: C2 is a second thread's output in the nested case
    float *C = malloc(sizeof *C * (size_t)(M * ldc)), *C2 = malloc(sizeof *C * (size_t)(M * ldc));
    float *R = malloc(sizeof *R * (size_t)(M * ldc));
    fill(A, (ta ? K : M) * lda, 1);
    fill(B, (tb ? N : K) * ldb, 2);
    for (int64_t i = 0; i < M * ldc; i++) C[i] = C2[i] = R[i] = (float)(i % 11) * 0.25f;
    int rc = 0;
    if (nested) {
        // Two threads run the same shape at once, each into its own output: two cache entries.
        int rcs[2] = {0, 0};
        #pragma omp parallel num_threads(2)
        {
            int t = omp_get_thread_num();
            rcs[t] = dt_bf16_matmul(e, ta, tb, M, N, K, alpha, A, lda, B, ldb, acc, t ? C2 : C, ldc);
        }
        rc = rcs[0] ? rcs[0] : rcs[1];
        if (omp_get_max_threads() < 2) memcpy(C2, C, sizeof *C * (size_t)(M * ldc)); // one thread ran
    } else {
        rc = dt_bf16_matmul(e, ta, tb, M, N, K, alpha, A, lda, B, ldb, acc, C, ldc);
        memcpy(C2, C, sizeof *C * (size_t)(M * ldc));
    }
    dt_bf16_matmul_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, acc, R, ldc);
    double worst = 0;
    bool pad_ok = true;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            worst = fmax(worst, fabs((double)C[i * ldc + j] - R[i * ldc + j]));
            worst = fmax(worst, fabs((double)C2[i * ldc + j] - R[i * ldc + j]));
        }
        for (int64_t j = N; j < ldc; j++) pad_ok &= C[i * ldc + j] == (float)((i * ldc + j) % 11) * 0.25f;
    }
    char name[128];
    snprintf(name, sizeof name, "bf16 matmul (%s) ta=%d tb=%d acc=%d alpha=%g %lldx%lldx%lld%s", mode(e), ta, tb, acc,
             alpha, (long long)M, (long long)N, (long long)K, nested ? " in omp region" : "");
    double tol = fabs(alpha) * bound(K);
    TEST_CHECK(name, rc == DT_OK && worst <= tol && pad_ok, "rc %d (%s), worst %.3g > %.3g or padding written", rc,
               rc ? dt_bf16_mm_error(e) : "", worst, tol);
    free(A); free(B); free(C); free(C2); free(R);
}

static void check_rounding(void) {
    const float special[] = {0.0f, -0.0f, 1.0f, 1.00390625f /* tie, even below */, 1.01171875f /* tie, odd below */,
                             1.0039063f, 3.4028235e38f /* rounds to inf */, -3.4028235e38f, 1e-40f /* denormal */,
                             INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 1.17549435e-38f, 0.1f, -0.3f};
    const int n = (int)(sizeof special / sizeof special[0]);
    float big[1 << 17]; // over the parallel threshold, so the OpenMP split is tested too
    uint16_t got[1 << 17], *small = malloc(sizeof *small * (size_t)n);
    for (int i = 0; i < (1 << 17); i++) big[i] = special[i % n] * (i % 3 == 2 ? -1.0f : 1.0f) + (float)(i % 5) * 1e-3f;
    dt_cpu_f32_to_bf16(got, big, 1 << 17);
    dt_cpu_f32_to_bf16(small, special, n);
    int bad = -1;
    for (int i = 0; i < (1 << 17) && bad < 0; i++) {
        uint16_t want = dt_f32_to_bf16(big[i]);
        bool both_nan = isnan(big[i]) && isnan(dt_bf16_to_f32(got[i]));
        if (got[i] != want && !both_nan) bad = i;
    }
    for (int i = 0; i < n && bad < 0; i++)
        if (small[i] != dt_f32_to_bf16(special[i]) && !isnan(special[i])) bad = i;
    TEST_CHECK("f32 -> bf16 vector rounding = scalar rounding", bad < 0, "value %d (%g) differs", bad,
               bad >= 0 ? (double)big[bad] : 0.0);
    // The streaming version, at each start of the destination modulo its 32-byte stores, and short.
    uint16_t *st = malloc(sizeof *st * ((1 << 17) + 16));
    int bad_stream = -1;
    for (int off = 0; off < 16 && bad_stream < 0; off++) {
        int64_t n2 = off == 15 ? 11 : (1 << 17) - off; // off 15: fewer values than one vector
        dt_cpu_f32_to_bf16_stream(st + off, big + off, n2);
        for (int64_t i = 0; i < n2 && bad_stream < 0; i++) {
            uint16_t want = dt_f32_to_bf16(big[off + i]);
            if (st[off + i] != want && !(isnan(big[off + i]) && isnan(dt_bf16_to_f32(st[off + i])))) bad_stream = off;
        }
    }
    TEST_CHECK("f32 -> bf16 streaming rounding = scalar rounding, every alignment", bad_stream < 0,
               "destination offset %d differs", bad_stream);
    free(st);
    float back[4];
    uint16_t h[4] = {0x3f80, 0xbf80, 0x7f80, 0x0001};
    dt_cpu_bf16_to_f32(back, h, 4);
    TEST_CHECK("bf16 -> f32 widening", back[0] == 1.0f && back[1] == -1.0f && isinf(back[2]) && back[3] > 0,
               "got %g %g %g %g", back[0], back[1], back[2], back[3]);
    free(small);
}

static double rel_err(const float *a, const float *ref, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) { d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]); r += (double)ref[i] * ref[i]; }
    return sqrt(d / r);
}

// The attention kernels with bf16 block matmuls against the naive f32/double ones, packed and not.
// One bf16 matmul whose two operands are rounded adds a relative RMS error of sqrt(2/3) 2^-8 (see
// test_bf16_golden.c); the output passes through two in sequence (QK^T, PV), the gradients through
// three (the scores recomputed, dP or dS, and their product): bounds 4 sqrt(2) and 4 sqrt(3) times it.
static void check_attention(dt_bf16_mm *e) {
    const int64_t B = 2, T = 150, H = 6, KV = 2, hd = 16;
    const double rho1 = sqrt(2.0 / 3.0) / 256.0, tol_f = 4 * sqrt(2.0) * rho1, tol_b = 4 * sqrt(3.0) * rho1;
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *o1 = malloc(nq * 4), *o2 = malloc(nq * 4);
    float *dout = malloc(nq * 4), *dq1 = malloc(nq * 4), *dq2 = malloc(nq * 4), *lse = malloc((size_t)B * H * T * 4);
    float *dk1 = malloc(nk * 4), *dk2 = malloc(nk * 4), *dv1 = malloc(nk * 4), *dv2 = malloc(nk * 4);
    int32_t *seg = malloc((size_t)B * T * 4);
    uint16_t *h = malloc(nq * 2);
    fill(h, (int64_t)nq, 3); dt_cpu_bf16_to_f32(q, h, (int64_t)nq);
    fill(h, (int64_t)nq, 4); dt_cpu_bf16_to_f32(dout, h, (int64_t)nq);
    fill(h, (int64_t)nk, 5); dt_cpu_bf16_to_f32(k, h, (int64_t)nk);
    fill(h, (int64_t)nk, 6); dt_cpu_bf16_to_f32(v, h, (int64_t)nk);
    for (size_t i = 0; i < nq; i++) q[i] *= 4.0f; // scores of a few units, as in a trained model
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) seg[b * T + t] = t < 70 ? 0 : (t < 101 ? 70 : 101);
    void *scratch = malloc(dt_cpu_attention_bf16_scratch_bytes(B, T, H, KV, hd));
    for (int packed = 0; packed < 2; packed++) {
        const int32_t *s = packed ? seg : NULL;
        dt_cpu_attention_fwd_bf16(e, o1, lse, q, k, v, s, B, T, H, KV, hd, scratch);
        dt_cpu_attention_fwd_naive(o2, q, k, v, s, B, T, H, KV, hd);
        double ef = rel_err(o1, o2, nq);
        char name[96];
        snprintf(name, sizeof name, "bf16 attention (%s) forward vs naive%s", mode(e), packed ? " (packed)" : "");
        TEST_CHECK(name, ef <= tol_f, "relative error %.3g > %.3g", ef, tol_f);
        dt_cpu_attention_bwd_bf16(e, dq1, dk1, dv1, false, false, false, dout, o1, lse, q, k, v, s, B, T, H, KV, hd, scratch);
        dt_cpu_attention_bwd_naive(dq2, dk2, dv2, dout, q, k, v, s, B, T, H, KV, hd);
        double eq = rel_err(dq1, dq2, nq), ek = rel_err(dk1, dk2, nk), ev = rel_err(dv1, dv2, nk);
        snprintf(name, sizeof name, "bf16 attention (%s) backward vs naive%s", mode(e), packed ? " (packed)" : "");
        TEST_CHECK(name, eq <= tol_b && ek <= tol_b && ev <= tol_b, "relative errors dq %.3g dk %.3g dv %.3g > %.3g",
                   eq, ek, ev, tol_b);
        printf("# bf16 attention%s: forward %.3g (bound %.3g), dq %.3g dk %.3g dv %.3g (bound %.3g)\n",
               packed ? " packed" : "", ef, tol_f, eq, ek, ev, tol_b);
    }
    free(q); free(k); free(v); free(o1); free(o2); free(lse); free(seg); free(scratch); free(h);
    free(dout); free(dq1); free(dq2); free(dk1); free(dk2); free(dv1); free(dv2);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_bf16_mm *e;
    if (dt_bf16_mm_create(&ctx, &e)) { TEST_FAIL("bf16 engine", "%s", ctx.msg); TEST_EXIT(); }
    bool units = dt_cpu_has_bf16();
    printf("# oneDNN ISA %s (bf16 units: %s)\n", dt_onednn_isa(), units ? "yes" : "no");
    TEST_CHECK("bf16 matmul emulated exactly when the CPU has no bf16 units", dt_bf16_mm_emulated(e) == !units,
               "emulated %d, units %d", dt_bf16_mm_emulated(e), units);
    if (!units) printf("# oneDNN has no bf16 matmul here: only the emulated products run\n");
    for (int emulated = units ? 0 : 1; emulated < 2; emulated++) {
        dt_bf16_mm_set_emulated(e, emulated);
        for (int t = 0; t < 8; t++) check_case(e, t & 1, (t >> 1) & 1, (t >> 2) & 1, 1.0f, 37, 29, 70, false);
        check_case(e, false, true, true, 0.125f, 64, 100, 64, false);
        check_case(e, false, true, false, 1.0f, 1, 300, 129, false);       // one row: the generate path
        check_case(e, false, false, false, -2.0f, 130, 64, 257, true);
        check_case(e, false, true, false, 1.0f, 5, 7, 0, false);           // empty reduction: zeros
        // The cached entry is reused: the same call again gives the same answer.
        check_case(e, false, true, false, 1.0f, 37, 29, 70, false);
        check_attention(e);
    }
    check_rounding();
    dt_bf16_mm_free(e);
    TEST_EXIT();
}
