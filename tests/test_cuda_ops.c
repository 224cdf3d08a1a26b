// Every kernel of the CUDA backend against its CPU twin (autograd/cpu_*.c) on random shapes, forward and
// backward, plus the flash attention against the naive GPU attention. Without a GPU, or in a build
// without CUDA, it prints one SKIP line.
// Error measure: the worst |gpu - cpu| over an array divided by the largest |cpu| of that array (1 when
// all are zero), so a value near zero in a sum with cancellation does not count as a large relative error.
// Tolerances: f32 kernels 1e-5 (summation order and fused multiply-adds differ); matmuls with bf16 or
// f16 inputs 2e-2; copies and dropout masks exact; the sum of squares (in double) 1e-12; a whole
// training step of a small model (loss and LoRA gradients) 1e-4.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/backend.h"
#include "autograd/cpu_kernels.h"
#include "autograd/dtype.h"
#include "autograd/half.h"
#include "autograd/quant.h"
#include "autograd/cuda/cuda_backend.h"
#include "models/llama.h"
#include "models/llama_quant.h"
#include "optim/optim.h"
#include "peft/adapter.h"
#include "tests/test_util.h"

#ifndef DT_CUDA

int main(void) {
    TEST_SKIP("cuda_ops", "no CUDA device (built without CUDA; build with make CUDA=1)");
    TEST_EXIT();
}

#else

#define GQA "tests/golden/llama_gqa" // before bnb4_writer.h, which reads its config.json
#include "tests/bnb4_writer.h"

#define TOL_F32 1e-5
#define TOL_16 2e-2
#define TOL_STEP 1e-4

static const dt_backend *G; // the CUDA table with f32 matmuls
static dt_ctx ctx;
static uint64_t rng_i = 1;

static float frand(void) { return dt_uniform(11, rng_i++) * 2.0f - 1.0f; }
static int64_t irand(int64_t n) { return (int64_t)(dt_uniform(13, rng_i++) * (float)n) % n; }

static float *rand_host(int64_t n, float scale) { // (n) uniform in [-scale, scale)
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = frand() * scale;
    return h;
}
static float *copy_host(const float *h, int64_t n) {
    float *c = malloc((size_t)(n ? n : 1) * sizeof(float));
    memcpy(c, h, (size_t)n * sizeof(float));
    return c;
}
static void *to_dev(const void *h, size_t bytes) {
    void *d = G->alloc(G, bytes);
    G->upload(G, d, h, bytes);
    return d;
}
static float *from_dev(const void *d, int64_t n) { // (n) floats copied to the host
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    G->download(G, h, d, (size_t)n * sizeof(float));
    return h;
}

static double rel_err(const float *got, const float *ref, int64_t n) {
    double worst = 0, big = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) != isnan(ref[i])) return INFINITY;
        double d = fabs((double)got[i] - ref[i]);
        if (d > worst) worst = d;
        if (fabs(ref[i]) > big) big = fabs(ref[i]);
    }
    return worst / (big > 0 ? big : 1.0);
}

// Compares a device array with a host reference, frees nothing.
static void check_dev(const char *name, const float *dev, const float *ref, int64_t n, double tol) {
    float *got = from_dev(dev, n);
    double e = rel_err(got, ref, n);
    TEST_CHECK(name, e <= tol, "worst error %.3g (relative to max |ref|) above %.1g", e, tol);
    free(got);
}

static void test_memory(void) {
    const int64_t n = 1000;
    float *h = rand_host(n, 1.0f);
    float *d = to_dev(h, n * sizeof(float));
    float *back = from_dev(d, n);
    TEST_CHECK("cuda_upload_download", !memcmp(h, back, n * sizeof(float)), "the round trip changed the data");
    G->zero(G, d, 100 * sizeof(float));
    free(back);
    back = from_dev(d, n);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= back[i] == (i < 100 ? 0.0f : h[i]);
    TEST_CHECK("cuda_zero", ok, "zero(100 floats) did not clear exactly the first 100");
    free(back); free(h); G->free(G, d);
}

// One matmul of every transpose combination, with padded leading dimensions and beta != 0.
static void test_gemm(const dt_backend *be, const char *tag, double tol, bool ta, bool tb, int64_t M, int64_t N,
                      int64_t K) {
    const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    const int64_t lda = ac + 3, ldb = bc + 1, ldc = N + 2;
    float *A = rand_host(ar * lda, 1.0f), *B = rand_host(br * ldb, 1.0f), *C = rand_host(M * ldc, 1.0f);
    float *dA = to_dev(A, ar * lda * sizeof(float)), *dB = to_dev(B, br * ldb * sizeof(float));
    float *dC = to_dev(C, M * ldc * sizeof(float));
    dt_cpu_gemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.5f, C, ldc);
    be->gemm(be, ta, tb, M, N, K, 0.7f, dA, lda, dB, ldb, 0.5f, dC, ldc);
    char name[128];
    snprintf(name, sizeof name, "cuda_gemm_%s %c%c M=%lld N=%lld K=%lld", tag, ta ? 'T' : 'N', tb ? 'T' : 'N',
             (long long)M, (long long)N, (long long)K);
    check_dev(name, dC, C, M * ldc, tol); // the padding columns must be untouched too
    free(A); free(B); free(C); G->free(G, dA); G->free(G, dB); G->free(G, dC);
}

static void test_gemms(void) {
    const int64_t shapes[][3] = {{37, 53, 29}, {128, 64, 256}, {1, 300, 17}, {65, 1, 130}};
    const dt_backend *bf16, *f16;
    if (dt_backend_cuda_init(&ctx, DT_BF16, &bf16) || dt_backend_cuda_init(&ctx, DT_F16, &f16)) {
        TEST_FAIL("cuda_init_16bit", "%s", ctx.msg);
        return;
    }
    for (int s = 0; s < 4; s++)
        for (int t = 0; t < 4; t++) {
            test_gemm(G, "f32", TOL_F32, t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2]);
            if (s == 1) { // the 16-bit paths on one shape, all transposes
                test_gemm(bf16, "bf16", TOL_16, t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2]);
                test_gemm(f16, "f16", TOL_16, t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2]);
            }
        }
}

static void test_embedding(void) {
    const int64_t V = 50, D = 33, n = 70;
    float *table = rand_host(V * D, 1.0f), *ref = malloc(n * D * sizeof(float));
    int32_t ids[70];
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)irand(V);
    dt_cpu_embedding_fwd(ref, ids, n, table, D);
    float *dt = to_dev(table, V * D * sizeof(float)), *dout = G->alloc(G, n * D * sizeof(float));
    int32_t *dids = to_dev(ids, sizeof ids);
    dt_tensor tt;
    dt_tensor_set(&tt, DT_F32, dt, 2, (int64_t[]){V, D});
    G->embedding_fwd(G, dout, dids, n, &tt);
    check_dev("cuda_embedding_fwd", dout, ref, n * D, 0.0);
    free(table); free(ref); G->free(G, dt); G->free(G, dout); G->free(G, dids);
}

// The frozen-linear entry and embedding rows with W stored as bf16, f16 or one of ggml's block types
// (random values rounded or quantized to the type, special f16 values included), against the CPU
// backend's entries on the same bytes: forward, backward, acc and not. Both sides widen W to the same
// f32 values (the device's block decoders are the CPU's, operation for operation) and multiply in f32,
// so the f32 tolerance holds for every type. out x in of 16400 x 256 spans two of the device's
// 16384-row panels.
// NF4/FP4 (dq: double-quantized absmax) are quantized as model.quantize does (dt_lq_fill) and copied to
// the device as the loader does (dt_lq_upload_nf4): their rows are not whole blocks when in is not a
// multiple of 64, so a panel starts inside a block. They have no embedding entry on the device.
static void test_frozen_ex(dt_dtype type, bool dq, int64_t out, int64_t in, int64_t N) {
    const dt_backend *cpu = dt_backend_cpu();
    char name[128];
    float *w32 = rand_host(out * in, 1.0f);
    if (type == DT_F16) { w32[0] = 6e-8f; w32[1] = -65504.0f; w32[2] = 1e-5f; } // subnormal, largest, small
    const bool bnb = type == DT_NF4 || type == DT_FP4;
    const size_t wbytes = bnb ? dt_lq_bytes(type, dq, out, in) : dt_type_row_bytes(type, in) * (size_t)out;
    void *w = malloc(wbytes), *dev_block;
    dt_tensor hw, dw;
    dt_nf4_state dev_state;
    if (bnb) {
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        if (dt_lq_fill(&ctx, "w", type, dq, w32, out, in, w, &hw)) {
            TEST_FAIL("cuda_frozen nf4 fill", "%s", ctx.msg);
            free(w32), free(w);
            return;
        }
        void *qs;
        dev_block = G->alloc(G, dt_lq_device_bytes(hw.aux, out * in));
        dt_lq_upload_nf4(G, dev_block, hw.aux, hw.data, out * in, &dev_state, &qs);
        dt_tensor_set(&dw, type, qs, 2, (int64_t[]){out, in});
        dw.aux = &dev_state;
    } else {
        if (dt_is_quant(type)) dt_quant_row_from_f32(type, w32, w, out * in);
        else dt_convert_from_f32(w, type, w32, (size_t)(out * in));
        dt_tensor_set(&hw, type, w, 2, (int64_t[]){out, in});
        dt_tensor_set(&dw, type, dev_block = to_dev(w, wbytes), 2, (int64_t[]){out, in});
    }
    dw.device = DT_DEV_CUDA;
    float *x = rand_host(N * in, 1.0f), *dy = rand_host(N * out, 1.0f);
    float *y = rand_host(N * out, 1.0f), *dx = rand_host(N * in, 1.0f);
    float *dX = to_dev(x, N * in * sizeof(float)), *dDY = to_dev(dy, N * out * sizeof(float));
    float *hs = malloc(cpu->frozen_scratch_bytes(cpu, &hw, N) + 4);
    size_t sb = G->frozen_scratch_bytes(G, &dw, N);
    void *ds = G->alloc(G, sb);
    for (int acc = 0; acc < 2; acc++) {
        float *dY = to_dev(y, N * out * sizeof(float)), *dDX = to_dev(dx, N * in * sizeof(float));
        float *ry = copy_host(y, N * out), *rdx = copy_host(dx, N * in);
        cpu->frozen_fwd(cpu, ry, acc, x, N, &hw, hs);
        G->frozen_fwd(G, dY, acc, dX, N, &dw, ds);
        snprintf(name, sizeof name, "cuda_frozen_fwd %s%s %lldx%lld acc=%d", dt_dtype_name(type), dq ? " dq" : "",
                 (long long)out, (long long)in, acc);
        check_dev(name, dY, ry, N * out, TOL_F32);
        cpu->frozen_bwd(cpu, rdx, acc, dy, N, &hw, hs);
        G->frozen_bwd(G, dDX, acc, dDY, N, &dw, ds);
        snprintf(name, sizeof name, "cuda_frozen_bwd %s%s %lldx%lld acc=%d", dt_dtype_name(type), dq ? " dq" : "",
                 (long long)out, (long long)in, acc);
        check_dev(name, dDX, rdx, N * in, TOL_F32);
        free(ry); free(rdx); G->free(G, dY); G->free(G, dDX);
    }
    if (bnb) {
        free(w32); free(w); free(x); free(dy); free(y); free(dx); free(hs);
        G->free(G, dev_block); G->free(G, dX); G->free(G, dDY); G->free(G, ds);
        return;
    }
    // embedding rows of the same table: exact (a widening, no arithmetic)
    int32_t ids[9];
    for (int i = 0; i < 9; i++) ids[i] = i < 3 ? i : (int32_t)irand(out);
    float *ref = malloc(9 * in * sizeof(float)), *dO = G->alloc(G, 9 * in * sizeof(float));
    int32_t *dIds = to_dev(ids, sizeof ids);
    cpu->embedding_fwd(cpu, ref, ids, 9, &hw);
    G->embedding_fwd(G, dO, dIds, 9, &dw);
    snprintf(name, sizeof name, "cuda_embedding_fwd %s", dt_dtype_name(type));
    check_dev(name, dO, ref, 9 * in, 0.0);
    free(ref); G->free(G, dO); G->free(G, dIds);
    free(w32); free(w); free(x); free(dy); free(y); free(dx); free(hs);
    G->free(G, dev_block); G->free(G, dX); G->free(G, dDY); G->free(G, ds);
}
static void test_frozen(dt_dtype type, int64_t out, int64_t in, int64_t N) { test_frozen_ex(type, false, out, in, N); }

// 16-bit W under the table of its precision: cuBLASLt multiplies W as stored by the activation rounded
// to the same type. The CPU reference gets the same rounded activation (dt_convert round trip) and
// multiplies in f32, so the f32 tolerance holds. N = 70000 rows of x with in = 130 spans two of the
// 64527-row chunks the activation is rounded in.
static void test_frozen_lt(dt_dtype type, int64_t out, int64_t in, int64_t N) {
    const dt_backend *cpu = dt_backend_cpu(), *be;
    char name[128];
    if (dt_backend_cuda_init(&ctx, type, &be)) { TEST_FAIL("cuda_frozen_lt init", "%s", ctx.msg); return; }
    float *w32 = rand_host(out * in, 1.0f);
    const size_t wbytes = (size_t)(out * in) * 2;
    uint16_t *w = malloc(wbytes), *h16 = malloc((size_t)(N * (in > out ? in : out)) * 2);
    dt_convert_from_f32(w, type, w32, (size_t)(out * in));
    dt_tensor hw, dw;
    dt_tensor_set(&hw, type, w, 2, (int64_t[]){out, in});
    dt_tensor_set(&dw, type, to_dev(w, wbytes), 2, (int64_t[]){out, in});
    dw.device = DT_DEV_CUDA;
    float *x = rand_host(N * in, 1.0f), *dy = rand_host(N * out, 1.0f), *y = rand_host(N * out, 1.0f);
    float *dx = rand_host(N * in, 1.0f), *xr = malloc(N * in * sizeof(float)), *dyr = malloc(N * out * sizeof(float));
    dt_convert_from_f32(h16, type, x, (size_t)(N * in)); // the rounded copies the CPU multiplies
    dt_convert_to_f32(xr, h16, type, (size_t)(N * in));
    dt_convert_from_f32(h16, type, dy, (size_t)(N * out));
    dt_convert_to_f32(dyr, h16, type, (size_t)(N * out));
    float *dX = to_dev(x, N * in * sizeof(float)), *dDY = to_dev(dy, N * out * sizeof(float));
    float *hs = malloc(cpu->frozen_scratch_bytes(cpu, &hw, N) + 4);
    void *ds = G->alloc(G, be->frozen_scratch_bytes(be, &dw, N));
    for (int acc = 0; acc < 2; acc++) {
        float *dY = to_dev(y, N * out * sizeof(float)), *dDX = to_dev(dx, N * in * sizeof(float));
        float *ry = copy_host(y, N * out), *rdx = copy_host(dx, N * in);
        cpu->frozen_fwd(cpu, ry, acc, xr, N, &hw, hs);
        be->frozen_fwd(be, dY, acc, dX, N, &dw, ds);
        snprintf(name, sizeof name, "cuda_frozen_fwd cublasLt %s %lldx%lld N=%lld acc=%d", dt_dtype_name(type),
                 (long long)out, (long long)in, (long long)N, acc);
        check_dev(name, dY, ry, N * out, TOL_F32);
        cpu->frozen_bwd(cpu, rdx, acc, dyr, N, &hw, hs);
        be->frozen_bwd(be, dDX, acc, dDY, N, &dw, ds);
        snprintf(name, sizeof name, "cuda_frozen_bwd cublasLt %s %lldx%lld N=%lld acc=%d", dt_dtype_name(type),
                 (long long)out, (long long)in, (long long)N, acc);
        check_dev(name, dDX, rdx, N * in, TOL_F32);
        free(ry); free(rdx); G->free(G, dY); G->free(G, dDX);
    }
    free(w32); free(w); free(h16); free(x); free(dy); free(y); free(dx); free(xr); free(dyr); free(hs);
    G->free(G, dw.data); G->free(G, dX); G->free(G, dDY); G->free(G, ds);
}

static void test_rmsnorm(int64_t N, int64_t D) {
    char name[96];
    float *x = rand_host(N * D, 2.0f), *w = rand_host(D, 1.0f), *dy = rand_host(N * D, 1.0f);
    float *y = malloc(N * D * sizeof(float)), *rstd = malloc(N * sizeof(float)), *dx = rand_host(N * D, 1.0f);
    float *dx0 = copy_host(dx, N * D);
    float *dX = to_dev(x, N * D * 4), *dW = to_dev(w, D * 4), *dDY = to_dev(dy, N * D * 4);
    float *dY = G->alloc(G, N * D * 4), *dR = G->alloc(G, N * 4), *dY2 = G->alloc(G, N * D * 4), *dDX = to_dev(dx, N * D * 4);
    dt_cpu_rmsnorm_fwd(y, rstd, x, w, N, D, 1e-5f);
    G->rmsnorm_fwd(G, dY, dR, dX, dW, N, D, 1e-5f);
    snprintf(name, sizeof name, "cuda_rmsnorm_fwd N=%lld D=%lld", (long long)N, (long long)D);
    check_dev(name, dY, y, N * D, TOL_F32);
    snprintf(name, sizeof name, "cuda_rmsnorm_fwd rstd D=%lld", (long long)D);
    check_dev(name, dR, rstd, N, TOL_F32);
    // apply with the saved rstd must give the forward's values bit for bit
    G->rmsnorm_apply(G, dY2, dX, dR, dW, N, D);
    float *a = from_dev(dY, N * D), *b2 = from_dev(dY2, N * D);
    snprintf(name, sizeof name, "cuda_rmsnorm_apply D=%lld", (long long)D);
    TEST_CHECK(name, !memcmp(a, b2, N * D * sizeof(float)), "apply differs from the forward");
    free(a); free(b2);
    for (int acc = 0; acc < 2; acc++) { // the GPU uses its own rstd, the CPU its own (they agree to 1e-5)
        memcpy(dx, dx0, N * D * sizeof(float));
        G->upload(G, dDX, dx0, N * D * 4);
        dt_cpu_rmsnorm_bwd(dx, acc, dy, x, w, rstd, N, D);
        G->rmsnorm_bwd(G, dDX, acc, dDY, dX, dW, dR, N, D);
        snprintf(name, sizeof name, "cuda_rmsnorm_bwd D=%lld acc=%d", (long long)D, acc);
        check_dev(name, dDX, dx, N * D, TOL_F32);
    }
    free(x); free(w); free(dy); free(y); free(rstd); free(dx); free(dx0);
    G->free(G, dX); G->free(G, dW); G->free(G, dDY); G->free(G, dY); G->free(G, dR); G->free(G, dY2); G->free(G, dDX);
}

static void test_rope(int64_t N, int64_t H, int64_t hd) {
    char name[96];
    float *x = rand_host(N * H * hd, 1.0f), *inv = malloc(hd / 2 * sizeof(float));
    int32_t *pos = malloc(N * sizeof(int32_t));
    for (int64_t i = 0; i < hd / 2; i++) inv[i] = (float)(1.0 / pow(500000.0, 2.0 * i / hd));
    for (int64_t n = 0; n < N; n++) pos[n] = (int32_t)irand(131072);
    float *dX = to_dev(x, N * H * hd * 4), *dI = to_dev(inv, hd / 2 * 4), *cs = malloc(N * hd * 4);
    int32_t *dP = to_dev(pos, N * 4);
    float *dCS = G->alloc(G, N * hd * 4);
    dt_cpu_rope_table(cs, pos, inv, N, hd);
    G->rope_table(G, dCS, dP, dI, N, hd);
    check_dev("cuda_rope_table", dCS, cs, N * hd, TOL_F32);
    for (int inverse = 0; inverse < 2; inverse++) {
        dt_cpu_rope(x, cs, N, H, hd, inverse);
        G->rope(G, dX, dCS, N, H, hd, inverse);
        snprintf(name, sizeof name, "cuda_rope hd=%lld inverse=%d", (long long)hd, inverse);
        check_dev(name, dX, x, N * H * hd, TOL_F32);
    }
    free(x); free(inv); free(pos); free(cs); G->free(G, dX); G->free(G, dI); G->free(G, dP); G->free(G, dCS);
}

// seg (B, T): random example boundaries, each position pointing at its example's first position.
static int32_t *make_segments(int64_t B, int64_t T) {
    int32_t *seg = malloc(B * T * sizeof(int32_t));
    for (int64_t b = 0; b < B; b++) {
        int32_t start = 0;
        for (int64_t t = 0; t < T; t++) {
            if (t > 0 && irand(10) == 0) start = (int32_t)t;
            seg[b * T + t] = start;
        }
    }
    return seg;
}

typedef struct { int64_t B, T, H, KV, hd; bool packed; } attn_case;

static void test_attention(attn_case c) {
    const int64_t B = c.B, T = c.T, H = c.H, KV = c.KV, hd = c.hd;
    const int64_t nq = B * T * H * hd, nk = B * T * KV * hd, nl = B * H * T;
    char tag[96], name[160];
    snprintf(tag, sizeof tag, "B=%lld T=%lld H=%lld KV=%lld hd=%lld%s", (long long)B, (long long)T, (long long)H,
             (long long)KV, (long long)hd, c.packed ? " packed" : "");
    float *q = rand_host(nq, 1.0f), *k = rand_host(nk, 1.0f), *v = rand_host(nk, 1.0f), *dout = rand_host(nq, 1.0f);
    int32_t *seg = c.packed ? make_segments(B, T) : NULL;
    float *out = malloc(nq * 4), *lse = malloc(nl * 4), *naive = malloc(nq * 4);
    void *scratch = malloc(dt_cpu_attention_scratch_bytes(B, T, H, KV, hd));
    dt_cpu_attention_fwd(out, lse, q, k, v, seg, B, T, H, KV, hd, scratch);
    dt_cpu_attention_fwd_naive(naive, q, k, v, seg, B, T, H, KV, hd);

    float *dQ = to_dev(q, nq * 4), *dK = to_dev(k, nk * 4), *dV = to_dev(v, nk * 4), *dDO = to_dev(dout, nq * 4);
    int32_t *dSeg = seg ? to_dev(seg, B * T * 4) : NULL;
    float *dOut = G->alloc(G, nq * 4), *dLse = G->alloc(G, nl * 4), *dNaive = G->alloc(G, nq * 4), *dNLse = G->alloc(G, nl * 4);
    void *dScratch = G->alloc(G, G->attention_scratch_bytes(G, B, T, H, KV, hd));
    G->attention_fwd(G, dOut, dLse, dQ, dK, dV, dSeg, B, T, H, KV, hd, dScratch);
    snprintf(name, sizeof name, "cuda_attention_fwd %s", tag);
    check_dev(name, dOut, out, nq, TOL_F32);
    snprintf(name, sizeof name, "cuda_attention_fwd lse %s", tag);
    check_dev(name, dLse, lse, nl, TOL_F32);
    dt_cuda_attention_fwd_naive(dNaive, dNLse, dQ, dK, dV, dSeg, B, T, H, KV, hd);
    snprintf(name, sizeof name, "cuda_attention_naive vs cpu naive %s", tag);
    check_dev(name, dNaive, naive, nq, TOL_F32);
    float *flash = from_dev(dOut, nq), *flash_lse = from_dev(dLse, nl);
    snprintf(name, sizeof name, "cuda_attention_fwd vs cuda naive %s", tag);
    check_dev(name, dNaive, flash, nq, TOL_F32);
    snprintf(name, sizeof name, "cuda_attention_fwd lse vs cuda naive %s", tag);
    check_dev(name, dNLse, flash_lse, nl, TOL_F32);
    free(flash); free(flash_lse);

    // Backward, three ways: all gradients overwritten; all accumulated into; dq not wanted and dk alone.
    float *gq0 = rand_host(nq, 1.0f), *gk0 = rand_host(nk, 1.0f), *gv0 = rand_host(nk, 1.0f);
    float *gq = malloc(nq * 4), *gk = malloc(nk * 4), *gv = malloc(nk * 4);
    float *dGQ = G->alloc(G, nq * 4), *dGK = G->alloc(G, nk * 4), *dGV = G->alloc(G, nk * 4);
    for (int mode = 0; mode < 3; mode++) {
        bool acc = mode == 1;
        memcpy(gq, gq0, nq * 4); memcpy(gk, gk0, nk * 4); memcpy(gv, gv0, nk * 4);
        G->upload(G, dGQ, gq0, nq * 4); G->upload(G, dGK, gk0, nk * 4); G->upload(G, dGV, gv0, nk * 4);
        float *cq = mode == 2 ? NULL : gq, *cv = mode == 2 ? NULL : gv;
        float *gq_d = mode == 2 ? NULL : dGQ, *gv_d = mode == 2 ? NULL : dGV;
        dt_cpu_attention_bwd(cq, gk, cv, acc, acc, acc, dout, out, lse, q, k, v, seg, B, T, H, KV, hd, scratch);
        G->attention_bwd(G, gq_d, dGK, gv_d, acc, acc, acc, dDO, dOut, dLse, dQ, dK, dV, dSeg, B, T, H, KV, hd, dScratch);
        const char *what = mode == 0 ? "" : mode == 1 ? " acc" : " dk only";
        snprintf(name, sizeof name, "cuda_attention_bwd dq %s%s", tag, what);
        check_dev(name, dGQ, gq, nq, TOL_F32); // mode 2: both must still hold gq0
        snprintf(name, sizeof name, "cuda_attention_bwd dk %s%s", tag, what);
        check_dev(name, dGK, gk, nk, TOL_F32);
        snprintf(name, sizeof name, "cuda_attention_bwd dv %s%s", tag, what);
        check_dev(name, dGV, gv, nk, TOL_F32);
    }
    free(q); free(k); free(v); free(dout); free(seg); free(out); free(lse); free(naive); free(scratch);
    free(gq0); free(gk0); free(gv0); free(gq); free(gk); free(gv);
    G->free(G, dQ); G->free(G, dK); G->free(G, dV); G->free(G, dDO); G->free(G, dSeg); G->free(G, dOut); G->free(G, dLse);
    G->free(G, dNaive); G->free(G, dNLse); G->free(G, dScratch); G->free(G, dGQ); G->free(G, dGK); G->free(G, dGV);
}

// The calls the 16-bit tables ran on cuDNN and on the hand kernel so far (from the attention note).
static void attention_calls(long long *dnn, long long *hand) {
    const char *note = dt_backend_cuda_attention_note(), *p = strstr(note, "attention ");
    *dnn = *hand = -1;
    if (p) sscanf(p, "attention %lld calls, hand-written flash kernel %lld", dnn, hand);
}

// x (n) rounded to bf16 in place.
static void round_bf16(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = dt_hf_bf16_to_f32(dt_hf_f32_to_bf16(x[i]));
}

// The bf16 table's attention: cuDNN's fused kernel (sdpa_cudnn.cu) on rows of one segment, against the
// CPU's f32 attention on the same inputs rounded to bf16, which is what cuDNN multiplies. What it rounds
// beyond that: P before P V, dS before dS^T Q, and out, dk, dv (dq comes from its f32 accumulator):
// each 2^-9 relative, so out, dq, dk and dv are held to TOL_16 of their largest value; lse comes from
// f32 scores of the rounded inputs, held to TOL_STEP. Packed rows (several segments) take the graph
// with the segment mask. Each case also checks that cuDNN ran both calls, from the counts in
// dt_backend_cuda_attention_note.
static void test_attention_cudnn(attn_case c) {
    const int64_t B = c.B, T = c.T, H = c.H, KV = c.KV, hd = c.hd;
    const int64_t nq = B * T * H * hd, nk = B * T * KV * hd, nl = B * H * T;
    const dt_backend *G16;
    if (dt_backend_cuda_init(&ctx, DT_BF16, &G16)) { TEST_FAIL("cuda_cudnn_init", "%s", ctx.msg); return; }
    char tag[96], name[200];
    snprintf(tag, sizeof tag, "B=%lld T=%lld H=%lld KV=%lld hd=%lld%s", (long long)B, (long long)T, (long long)H,
             (long long)KV, (long long)hd, c.packed ? " packed" : "");
    float *q = rand_host(nq, 1.0f), *k = rand_host(nk, 1.0f), *v = rand_host(nk, 1.0f), *dout = rand_host(nq, 1.0f);
    int32_t *seg = c.packed ? make_segments(B, T) : NULL;
    float *dQ = to_dev(q, nq * 4), *dK = to_dev(k, nk * 4), *dV = to_dev(v, nk * 4), *dDO = to_dev(dout, nq * 4);
    int32_t *dSeg = seg ? to_dev(seg, B * T * 4) : NULL;
    round_bf16(q, nq); round_bf16(k, nk); round_bf16(v, nk); round_bf16(dout, nq);
    float *out = malloc(nq * 4), *lse = malloc(nl * 4), *gq = malloc(nq * 4), *gk = malloc(nk * 4), *gv = malloc(nk * 4);
    void *scratch = malloc(dt_cpu_attention_scratch_bytes(B, T, H, KV, hd));
    dt_cpu_attention_fwd(out, lse, q, k, v, seg, B, T, H, KV, hd, scratch);
    dt_cpu_attention_bwd(gq, gk, gv, false, false, false, dout, out, lse, q, k, v, seg, B, T, H, KV, hd, scratch);
    float *dOut = G16->alloc(G16, nq * 4), *dLse = G16->alloc(G16, nl * 4), *dGQ = G16->alloc(G16, nq * 4),
          *dGK = G16->alloc(G16, nk * 4), *dGV = G16->alloc(G16, nk * 4);
    void *dScratch = G16->alloc(G16, G16->attention_scratch_bytes(G16, B, T, H, KV, hd));
    long long dnn0, hand0, dnn1, hand1;
    attention_calls(&dnn0, &hand0);
    G16->attention_fwd(G16, dOut, dLse, dQ, dK, dV, dSeg, B, T, H, KV, hd, dScratch);
    G16->attention_bwd(G16, dGQ, dGK, dGV, false, false, false, dDO, dOut, dLse, dQ, dK, dV, dSeg, B, T, H, KV, hd,
                       dScratch);
    attention_calls(&dnn1, &hand1);
    const double tol = TOL_16;
    snprintf(name, sizeof name, "cuda_cudnn_attention ran cuDNN %s", tag);
    TEST_CHECK(name, dnn1 == dnn0 + 2 && hand1 == hand0, "%s", dt_backend_cuda_attention_note());
    snprintf(name, sizeof name, "cuda_cudnn_attention out %s", tag);
    check_dev(name, dOut, out, nq, tol);
    snprintf(name, sizeof name, "cuda_cudnn_attention lse %s", tag);
    check_dev(name, dLse, lse, nl, TOL_STEP);
    snprintf(name, sizeof name, "cuda_cudnn_attention dq %s", tag);
    check_dev(name, dGQ, gq, nq, tol);
    snprintf(name, sizeof name, "cuda_cudnn_attention dk %s", tag);
    check_dev(name, dGK, gk, nk, tol);
    snprintf(name, sizeof name, "cuda_cudnn_attention dv %s", tag);
    check_dev(name, dGV, gv, nk, tol);
    free(q); free(k); free(v); free(dout); free(seg); free(out); free(lse); free(gq); free(gk); free(gv); free(scratch);
    G16->free(G16, dQ); G16->free(G16, dK); G16->free(G16, dV); G16->free(G16, dDO); G16->free(G16, dSeg);
    G16->free(G16, dOut); G16->free(G16, dLse); G16->free(G16, dGQ); G16->free(G16, dGK); G16->free(G16, dGV);
    G16->free(G16, dScratch);
}

// Emulator only (EMU_ASYNC_FAIL_BYTES): no device memory for cuDNN's workspace (the stand-in's engine asks
// for 4096 bytes) sends the call to the hand kernel, which needs none: its f32 result, no error recorded,
// and the reason in the attention note.
static void test_cudnn_no_workspace(void) {
    if (strcmp(dt_backend_cuda_device_name(), "CPU emulation")) return;
    const int64_t B = 1, T = 9, H = 2, KV = 1, hd = 16, nq = B * T * H * hd, nk = B * T * KV * hd;
    const dt_backend *G16;
    if (dt_backend_cuda_init(&ctx, DT_BF16, &G16)) { TEST_FAIL("cuda_cudnn_no_workspace", "%s", ctx.msg); return; }
    float *q = rand_host(nq, 1.0f), *k = rand_host(nk, 1.0f), *v = rand_host(nk, 1.0f), *out = malloc(nq * 4),
          *lse = malloc(B * H * T * 4);
    void *scratch = malloc(dt_cpu_attention_scratch_bytes(B, T, H, KV, hd));
    dt_cpu_attention_fwd(out, lse, q, k, v, NULL, B, T, H, KV, hd, scratch);
    float *dQ = to_dev(q, nq * 4), *dK = to_dev(k, nk * 4), *dV = to_dev(v, nk * 4), *dOut = G16->alloc(G16, nq * 4),
          *dLse = G16->alloc(G16, B * H * T * 4);
    void *dScratch = G16->alloc(G16, G16->attention_scratch_bytes(G16, B, T, H, KV, hd));
    long long dnn0, hand0, dnn1, hand1;
    attention_calls(&dnn0, &hand0);
    setenv("EMU_ASYNC_FAIL_BYTES", "4096", 1);
    G16->attention_fwd(G16, dOut, dLse, dQ, dK, dV, NULL, B, T, H, KV, hd, dScratch);
    unsetenv("EMU_ASYNC_FAIL_BYTES");
    attention_calls(&dnn1, &hand1);
    int rc = dt_backend_cuda_check(&ctx);
    TEST_CHECK("cuda_cudnn_no_workspace_hand_kernel", !rc && dnn1 == dnn0 && hand1 == hand0 + 1 &&
                   strstr(dt_backend_cuda_attention_note(), "no device memory for cuDNN's workspace"),
               "rc %d (%s), %s", rc, rc ? ctx.msg : "", dt_backend_cuda_attention_note());
    check_dev("cuda_cudnn_no_workspace_out", dOut, out, nq, TOL_F32);
    free(q); free(k); free(v); free(out); free(lse); free(scratch);
    G16->free(G16, dQ); G16->free(G16, dK); G16->free(G16, dV); G16->free(G16, dOut); G16->free(G16, dLse);
    G16->free(G16, dScratch);
}

// Generation's attention over a KV cache: n new queries at positions p0.. over p0+n cached rows.
static void test_attention_cached(int64_t n, int64_t p0, int64_t H, int64_t KV, int64_t hd) {
    const dt_backend *cpu = dt_backend_cpu();
    char name[96];
    const int64_t len = p0 + n;
    float *q = rand_host(n * H * hd, 1.0f), *kc = rand_host(len * KV * hd, 1.0f), *vc = rand_host(len * KV * hd, 1.0f);
    float *ref = malloc((size_t)(n * H * hd) * sizeof(float));
    float *dQ = to_dev(q, n * H * hd * 4), *dK = to_dev(kc, len * KV * hd * 4), *dV = to_dev(vc, len * KV * hd * 4);
    float *dO = G->alloc(G, n * H * hd * 4);
    cpu->attention_cached(cpu, ref, q, kc, vc, n, p0, H, KV, hd);
    G->attention_cached(G, dO, dQ, dK, dV, n, p0, H, KV, hd);
    snprintf(name, sizeof name, "cuda_attention_cached n=%lld p0=%lld H=%lld KV=%lld hd=%lld", (long long)n,
             (long long)p0, (long long)H, (long long)KV, (long long)hd);
    check_dev(name, dO, ref, n * H * hd, TOL_F32);
    free(q); free(kc); free(vc); free(ref);
    G->free(G, dQ); G->free(G, dK); G->free(G, dV); G->free(G, dO);
}

static void test_swiglu(void) {
    const int64_t n = 5003;
    float *g = rand_host(n, 4.0f), *u = rand_host(n, 2.0f), *dh = rand_host(n, 1.0f), *h = malloc(n * 4);
    float *dg0 = rand_host(n, 1.0f), *du0 = rand_host(n, 1.0f), *dg = malloc(n * 4), *du = malloc(n * 4);
    float *dG = to_dev(g, n * 4), *dU = to_dev(u, n * 4), *dDH = to_dev(dh, n * 4), *dH = G->alloc(G, n * 4);
    float *dDG = G->alloc(G, n * 4), *dDU = G->alloc(G, n * 4);
    dt_cpu_swiglu_fwd(h, g, u, n);
    G->swiglu_fwd(G, dH, dG, dU, n);
    check_dev("cuda_swiglu_fwd", dH, h, n, TOL_F32);
    for (int mode = 0; mode < 3; mode++) { // overwrite both; accumulate both; dg alone, accumulated
        bool acc = mode > 0;
        memcpy(dg, dg0, n * 4); memcpy(du, du0, n * 4);
        G->upload(G, dDG, dg0, n * 4); G->upload(G, dDU, du0, n * 4);
        dt_cpu_swiglu_bwd(dg, mode == 2 ? NULL : du, acc, acc, dh, g, u, n);
        G->swiglu_bwd(G, dDG, mode == 2 ? NULL : dDU, acc, acc, dDH, dG, dU, n);
        char name[64];
        snprintf(name, sizeof name, "cuda_swiglu_bwd dg mode=%d", mode);
        check_dev(name, dDG, dg, n, TOL_F32);
        snprintf(name, sizeof name, "cuda_swiglu_bwd du mode=%d", mode);
        check_dev(name, dDU, du, n, TOL_F32);
    }
    free(g); free(u); free(dh); free(h); free(dg0); free(du0); free(dg); free(du);
    G->free(G, dG); G->free(G, dU); G->free(G, dDH); G->free(G, dH); G->free(G, dDG); G->free(G, dDU);
}

static void test_elementwise(void) {
    const int64_t N = 37, D = 129, n = N * D;
    float *a = rand_host(n, 1.0f), *b = rand_host(n, 1.0f), *y0 = rand_host(n, 1.0f), *bias = rand_host(D, 1.0f);
    float *y = malloc(n * 4);
    float *dA = to_dev(a, n * 4), *dB = to_dev(b, n * 4), *dY = G->alloc(G, n * 4), *dBias = to_dev(bias, D * 4);
    dt_cpu_add(y, a, b, n);
    G->add(G, dY, dA, dB, n);
    check_dev("cuda_add", dY, y, n, TOL_F32);
    for (int acc = 0; acc < 2; acc++) {
        memcpy(y, y0, n * 4);
        G->upload(G, dY, y0, n * 4);
        dt_cpu_mul(y, acc, a, b, n);
        G->mul(G, dY, acc, dA, dB, n);
        check_dev(acc ? "cuda_mul acc" : "cuda_mul", dY, y, n, TOL_F32);
        memcpy(y, y0, n * 4);
        G->upload(G, dY, y0, n * 4);
        dt_cpu_axpy(y, acc, -0.3f, a, n);
        G->axpy(G, dY, acc, -0.3f, dA, n);
        check_dev(acc ? "cuda_axpy acc" : "cuda_axpy", dY, y, n, TOL_F32);
    }
    memcpy(y, y0, n * 4);
    G->upload(G, dY, y0, n * 4);
    dt_cpu_add_bias(y, bias, N, D);
    G->add_bias(G, dY, dBias, N, D);
    check_dev("cuda_add_bias", dY, y, n, TOL_F32);
    dt_cpu_scale(y, 1.7f, n);
    G->scale(G, dY, 1.7f, n);
    check_dev("cuda_scale", dY, y, n, TOL_F32);
    free(a); free(b); free(y0); free(bias); free(y);
    G->free(G, dA); G->free(G, dB); G->free(G, dY); G->free(G, dBias);
}

// The mask comes from the same counter-based hash on both sides, so kept/dropped must agree everywhere.
static void test_dropout(void) {
    const int64_t n = 10007;
    const uint64_t seed = 0x1234567890abcdefull;
    float *x = rand_host(n, 1.0f), *y0 = rand_host(n, 1.0f), *y = malloc(n * 4);
    float *dX = to_dev(x, n * 4), *dY = G->alloc(G, n * 4);
    for (int acc = 0; acc < 2; acc++) {
        memcpy(y, y0, n * 4);
        G->upload(G, dY, y0, n * 4);
        dt_cpu_dropout(y, acc, x, n, 0.3f, seed);
        G->dropout(G, dY, acc, dX, n, 0.3f, seed);
        float *got = from_dev(dY, n);
        int64_t mismatched = 0;
        for (int64_t i = 0; i < n; i++) { // dropped: the output is what it was before (0, or y0 when accumulating)
            float before = acc ? y0[i] : 0.0f;
            mismatched += (got[i] == before) != (y[i] == before);
        }
        double e = rel_err(got, y, n);
        TEST_CHECK(acc ? "cuda_dropout acc" : "cuda_dropout", mismatched == 0 && e <= TOL_F32,
                   "%lld positions kept on one side and dropped on the other; worst error %.3g", (long long)mismatched,
                   e);
        free(got);
    }
    free(x); free(y0); free(y); G->free(G, dX); G->free(G, dY);
}

static void test_xent(int64_t n, int64_t V) {
    char name[96];
    float *logits = rand_host(n * V, 8.0f);
    int32_t *tg = malloc(n * sizeof(int32_t));
    for (int64_t r = 0; r < n; r++) tg[r] = r % 3 == 1 ? -100 : (int32_t)irand(V);
    float *dL = to_dev(logits, n * V * 4);
    int32_t *dT = to_dev(tg, n * 4);
    double ref = dt_cpu_xent_rows(logits, tg, n, V, 0.25f);
    double got = G->xent_rows(G, dL, dT, n, V, 0.25f);
    snprintf(name, sizeof name, "cuda_xent_rows loss n=%lld V=%lld", (long long)n, (long long)V);
    TEST_CHECK(name, fabs(got - ref) <= TOL_F32 * fabs(ref), "loss %.9g, cpu %.9g", got, ref);
    snprintf(name, sizeof name, "cuda_xent_rows grad n=%lld V=%lld", (long long)n, (long long)V);
    check_dev(name, dL, logits, n * V, TOL_F32);
    free(logits); free(tg); G->free(G, dL); G->free(G, dT);
}

static void test_sumsq(void) {
    const int64_t n = 1000003;
    float *x = rand_host(n, 3.0f), *dX = to_dev(x, n * 4);
    double ref = dt_cpu_sumsq(x, n), got = G->sumsq(G, dX, n);
    TEST_CHECK("cuda_sumsq", fabs(got - ref) <= 1e-12 * ref, "%.17g, cpu %.17g", got, ref);
    free(x); G->free(G, dX);
}

// An unsupported shape is recorded and reported by the next check, which then clears it.
static void test_error_report(void) {
    float *d = G->alloc(G, 4096);
    G->attention_fwd(G, d, d, d, d, d, NULL, 1, 1, 1, 1, 1024, d);
    int rc = dt_backend_cuda_check(&ctx);
    TEST_CHECK("cuda_error_reported", rc == DT_EUNSUPPORTED && strstr(ctx.msg, "head_dim 1024"),
               "check returned %d: %s", rc, ctx.msg);
    rc = dt_backend_cuda_check(&ctx);
    TEST_CHECK("cuda_error_cleared", rc == DT_OK, "a second check still failed (%d): %s", rc, ctx.msg);
    G->free(G, d);
}

// Three optimizer updates on the device against dt_optim_step from the same start: bit for bit (the
// kernel repeats the CPU's operations without fused multiply-adds). AdamW with weight decay, SGD with
// and without momentum.
static void test_optim(dt_opt_kind kind, float momentum, const char *name) {
    const int64_t n = 3000;
    dt_optimizer cpu, gpu;
    int rc = dt_optim_init(&ctx, &cpu, kind, (size_t)n, 0.9f, 0.999f, 1e-8f, 0.01f, momentum);
    if (!rc) rc = dt_optim_init(&ctx, &gpu, kind, (size_t)n, 0.9f, 0.999f, 1e-8f, 0.01f, momentum);
    if (rc) { TEST_FAIL(name, "%s", ctx.msg); return; }
    const size_t states = kind == DT_OPT_ADAMW ? 2 * (size_t)n : momentum != 0.0f ? (size_t)n : 0;
    float *p = rand_host(n, 1.0f), *dP = to_dev(p, (size_t)n * sizeof(float));
    float *dS = states ? G->alloc(G, states * sizeof(float)) : NULL; // (states) zero, as dt_optim_init's
    if (dS) G->zero(G, dS, states * sizeof(float));
    for (int step = 0; step < 3; step++) {
        float *g = rand_host(n, 0.1f), *dG = to_dev(g, (size_t)n * sizeof(float));
        const float lr = 1e-2f / (float)(step + 1);
        dt_optim_step(&cpu, p, g, lr);
        gpu.step++;
        dt_cuda_optim_step(G, &gpu, dP, dG, dS, lr);
        free(g);
        G->free(G, dG);
    }
    float *got = from_dev(dP, n);
    TEST_CHECK(name, !memcmp(got, p, (size_t)n * sizeof(float)), "the parameters differ from the CPU's after 3 steps");
    free(got);
    if (states) {
        float *st = from_dev(dS, (int64_t)states);
        TEST_CHECK(name, !memcmp(st, cpu.state, states * sizeof(float)), "the optimizer state differs from the CPU's");
        free(st);
        G->free(G, dS);
    }
    free(p);
    G->free(G, dP);
    dt_optim_free(&cpu);
    dt_optim_free(&gpu);
}

// One LoRA training step (forward + backward) of a small random Llama with packed sequences and LoRA
// dropout, on the CPU and on the GPU from the same weights and adapter: loss and every LoRA gradient.
// *grads: a malloc'd copy of the adapter's gradient block, *n its length.
static int step_on(const dt_backend *be, const dt_model_config *cfg, const dt_load_opts *o, const dt_batch *batch,
                   float *loss, float **grads, size_t *n) {
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_graph g;
    float *dp = NULL, *dg = NULL;
    dt_lora_config lc = {.r = 4, .alpha = 8, .dropout = 0.1f};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    int rc = dt_llama_init_random_ex(&ctx, cfg, be, 7, o, &m);
    if (!rc) rc = dt_lora_create(&ctx, m, &lc, 3, &a);
    if (rc) { dt_llama_free(m); return rc; }
    for (size_t i = 0; i < a->n_params; i++) // B != 0, the same on both backends
        if (a->params[i] == 0) a->params[i] = 0.02f * dt_uniform(5, i) - 0.01f;
    if (be->device == DT_DEV_CUDA) { // parameters and gradients into device blocks of the same layout
        size_t bytes = a->n_params * sizeof(float);
        dp = to_dev(a->params, bytes);
        dg = G->alloc(G, bytes);
        for (int i = 0; i < a->n_tensors; i++) {
            size_t off = (size_t)((float *)a->tensors[i].data - a->params);
            a->tensors[i].data = dp + off;
            a->tensors[i].grad = dg + off;
        }
        G->zero(G, dg, bytes);
    }
    rc = dt_graph_init(&ctx, &g, be, 0);
    if (!rc) {
        g.training = true;
        g.dropout_seed = 99;
        dt_llama_out out;
        rc = dt_llama_forward(&ctx, &g, m, &a->view, batch, 0, false, &out);
        if (!rc) rc = dt_graph_backward(&g, out.loss, 1.0f);
        if (!rc) be->download(be, loss, dt_f32(out.loss), sizeof *loss);
        *n = a->n_params;
        *grads = malloc(a->n_params * sizeof(float));
        if (!rc) be->download(be, *grads, dg ? dg : a->grads, a->n_params * sizeof(float));
        dt_graph_free(&g);
    }
    if (dp) { G->free(G, dp); G->free(G, dg); }
    dt_adapter_free(a);
    dt_llama_free(m);
    return rc ? rc : dt_backend_cuda_check(&ctx);
}

// Logits (T, V) of ids through m on its backend, on the host; NULL on failure.
static float *model_logits(dt_llama *m, const int32_t *ids, int64_t T) {
    const dt_backend *be = m->be;
    const int64_t V = m->cfg.vocab_size;
    int32_t *dids = be->device == DT_DEV_CUDA ? to_dev(ids, (size_t)T * sizeof *ids) : NULL;
    dt_graph g;
    float *lg = NULL;
    if (dt_graph_init(&ctx, &g, be, 0)) return NULL;
    g.grad_enabled = false;
    dt_batch b = {1, T, dids ? dids : ids, NULL, NULL, NULL};
    dt_llama_out out;
    if (!dt_llama_forward(&ctx, &g, m, NULL, &b, 0, true, &out) && (lg = malloc((size_t)(T * V) * sizeof *lg)))
        be->download(be, lg, dt_f32(out.logits), (size_t)(T * V) * sizeof *lg);
    dt_graph_free(&g);
    if (dids) G->free(G, dids);
    return lg;
}

// A bitsandbytes NF4 checkpoint (double-quantized) as a base on the device: its linears stay NF4 there
// (nibbles and absmax arrays copied as stored) and the logits equal the CPU's on the same file.
static void test_bnb4_base(void) {
    char dir[] = "/tmp/dt_cuda_bnb4.XXXXXX", sub[300];
    if (!mkdtemp(dir)) { TEST_FAIL("cuda_bnb4_base", "mkdtemp"); return; }
    snprintf(sub, sizeof sub, "%s/m", dir);
    const dt_load_opts lo = {.quantize = DT_NF4, .double_quant = true};
    dt_llama *ref = NULL, *mc = NULL, *mg = NULL;
    float *a = NULL, *b = NULL;
    const int32_t ids[7] = {3, 17, 99, 5, 64, 120, 8};
    if (dt_llama_load_ex(&ctx, GQA, dt_backend_cpu(), &lo, &ref) || !write_bnb(ref, sub, NULL) ||
        dt_llama_load(&ctx, sub, dt_backend_cpu(), &mc) || dt_llama_load(&ctx, sub, G, &mg)) {
        TEST_FAIL("cuda_bnb4_base load", "%s", ctx.msg);
    } else {
        TEST_CHECK("cuda_bnb4_base stays NF4 on the device", mg->layers[1].w[DT_MOD_DOWN].dtype == DT_NF4 &&
                   mg->layers[1].w[DT_MOD_DOWN].device == DT_DEV_CUDA && mg->layers[1].w[DT_MOD_DOWN].aux,
                   "dtype %s", dt_dtype_name(mg->layers[1].w[DT_MOD_DOWN].dtype));
        a = model_logits(mc, ids, 7);
        b = model_logits(mg, ids, 7);
        if (!a || !b || dt_backend_cuda_check(&ctx)) TEST_FAIL("cuda_bnb4_base logits", "%s", ctx.msg);
        else {
            double e = rel_err(b, a, 7 * mc->cfg.vocab_size);
            TEST_CHECK("cuda_bnb4_base logits", e <= TOL_STEP, "worst error %.3g above %.1g", e, TOL_STEP);
        }
    }
    free(a), free(b);
    dt_llama_free(ref), dt_llama_free(mc), dt_llama_free(mg);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) printf("  could not remove %s\n", dir);
}

// o: how the random model's matrices are stored (f32, or the linears NF4 as the benchmark's QLoRA case).
static void test_llama_step(const dt_load_opts *o, const char *tag) {
    dt_model_config cfg = {0};
    cfg.arch = DT_ARCH_LLAMA;
    snprintf(cfg.arch_name, sizeof cfg.arch_name, "LlamaForCausalLM");
    cfg.hidden_size = 64; cfg.num_layers = 2; cfg.num_heads = 4; cfg.num_kv_heads = 2; cfg.head_dim = 16;
    cfg.intermediate_size = 96; cfg.vocab_size = 300; cfg.max_position_embeddings = 256;
    cfg.rms_norm_eps = 1e-5f; cfg.rope_theta = 10000.0f; cfg.tie_word_embeddings = true; cfg.torch_dtype = DT_F32;
    enum { B = 2, T = 24 };
    int32_t ids[B * T], labels[B * T], pos[B * T];
    int32_t *seg = make_segments(B, T);
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)irand(cfg.vocab_size);
        labels[i] = i % 5 == 0 ? -100 : ids[i];
        pos[i] = i % T - seg[i];
    }
    dt_batch batch = {B, T, ids, labels, pos, seg};
    float lc = 0, lg = 0, *gc = NULL, *gg = NULL;
    size_t n = 0, ng = 0;
    int rc = step_on(dt_backend_cpu(), &cfg, o, &batch, &lc, &gc, &n);
    if (!rc) rc = step_on(G, &cfg, o, &batch, &lg, &gg, &ng);
    char name[96];
    snprintf(name, sizeof name, "cuda_llama_step%s", tag);
    if (rc || n != ng) TEST_FAIL(name, "%s", rc ? ctx.msg : "adapter sizes differ");
    else {
        snprintf(name, sizeof name, "cuda_llama_step%s loss", tag);
        TEST_CHECK(name, fabs(lg - lc) <= TOL_STEP * fabs(lc), "loss %.7g, cpu %.7g", lg, lc);
        double e = rel_err(gg, gc, (int64_t)n);
        snprintf(name, sizeof name, "cuda_llama_step%s lora grads", tag);
        TEST_CHECK(name, e <= TOL_STEP, "worst error %.3g above %.1g", e, TOL_STEP);
    }
    free(seg); free(gc); free(gg);
}

int main(void) {
    dt_ctx_init(&ctx);
    int rc = dt_backend_cuda_init(&ctx, DT_F32, &G);
    if (rc == DT_EUNSUPPORTED) {
        TEST_SKIP("cuda_ops", "no CUDA device (%s)", ctx.msg);
        TEST_EXIT();
    }
    if (rc) { TEST_FAIL("cuda_init", "%s", ctx.msg); TEST_EXIT(); }
    printf("# device: %s\n", dt_backend_cuda_device_name());
    test_memory();
    test_gemms();
    test_embedding();
    test_frozen(DT_BF16, 37, 19, 5);
    test_frozen(DT_F16, 37, 19, 5);
    test_frozen(DT_BF16, 16400, 256, 3);
    for (dt_dtype t = DT_Q8_0; t <= DT_Q6_K; t++) test_frozen(t, 37, 256, 5);
    test_frozen(DT_Q4_K, 16400, 256, 2);
    // NF4 over two panels of 63550 rows of 66 values: the second panel starts inside a block
    test_frozen_ex(DT_NF4, false, 63552, 66, 2);
    test_frozen_ex(DT_NF4, true, 63552, 66, 2);
    test_frozen_ex(DT_FP4, true, 37, 256, 5);
    test_frozen_ex(DT_FP4, false, 37, 256, 5);
    test_bnb4_base();
    test_frozen_lt(DT_BF16, 37, 19, 5);
    test_frozen_lt(DT_F16, 37, 19, 5);
    test_frozen_lt(DT_BF16, 3, 130, 70000);
    test_rmsnorm(13, 64);
    test_rmsnorm(5, 2051);
    test_rope(19, 3, 16);
    test_rope(7, 4, 128);
    const attn_case cases[] = {
        {2, 37, 4, 2, 16, false}, {1, 130, 2, 1, 64, false}, {2, 100, 4, 4, 32, true}, {1, 70, 2, 2, 128, true},
        {1, 40, 2, 1, 96, false}, {1, 33, 2, 2, 256, false}, {1, 20, 2, 1, 512, true}, {3, 5, 2, 1, 8, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) test_attention(cases[i]);
    const attn_case cudnn_cases[] = {
        {2, 37, 4, 2, 16, false}, {1, 70, 4, 4, 64, false}, {2, 40, 4, 1, 32, false}, {2, 50, 4, 2, 16, true},
        {1, 64, 2, 2, 32, true}, {1, 37, 2, 1, 16, false},
    };
    for (size_t i = 0; i < sizeof cudnn_cases / sizeof *cudnn_cases; i++) test_attention_cudnn(cudnn_cases[i]);
    test_cudnn_no_workspace();
    test_attention_cached(1, 0, 4, 2, 16);
    test_attention_cached(5, 37, 8, 2, 64);
    test_swiglu();
    test_elementwise();
    test_dropout();
    test_xent(7, 1000);
    test_xent(5, 50000);
    test_sumsq();
    test_optim(DT_OPT_ADAMW, 0.0f, "cuda_optim_adamw");
    test_optim(DT_OPT_SGD, 0.9f, "cuda_optim_sgd_momentum");
    test_optim(DT_OPT_SGD, 0.0f, "cuda_optim_sgd");
    const dt_load_opts f32 = {.quantize = DT_F32}, nf4 = {.quantize = DT_NF4, .double_quant = true};
    test_llama_step(&f32, "");
    test_llama_step(&nf4, " nf4 random"); // dt_llama_init_random_ex's device upload, as bench_cuda_step uses it
    test_error_report();
    rc = dt_backend_cuda_check(&ctx);
    TEST_CHECK("cuda_no_errors", rc == DT_OK, "%s", ctx.msg);
    TEST_EXIT();
}

#endif
