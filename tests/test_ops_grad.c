// Finite-difference checks of every op's backward, and the blocked attention against the naive one.
// Each case builds its op from host arrays; the loss is sum(out * R) for a fixed random R. Analytic
// gradients are compared with central differences at a sample of elements of every input.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/cpu_kernels.h"
#include "autograd/ops.h"
#include "peft/lora_ops.h"
#include "tests/test_util.h"

#define MAXIN 10

typedef struct fd_case fd_case;
struct fd_case {
    const char *name;
    int n_in;
    int ndim[MAXIN];
    int64_t shape[MAXIN][DT_MAX_DIMS];
    bool grad[MAXIN];                   // which inputs are differentiated
    float *data[MAXIN];                 // host values, owned by the case
    dt_tensor *(*fwd)(dt_graph *g, dt_tensor **in, void *arg);
    void *arg;
    bool training;                      // dropout active
};

static uint64_t rng = 12345;
static float frand(void) { return dt_uniform(7, rng++) * 2.0f - 1.0f; }

static int64_t numel_of(const fd_case *c, int i) {
    int64_t n = 1;
    for (int d = 0; d < c->ndim[i]; d++) n *= c->shape[i][d];
    return n;
}

// One forward from the case's host data; returns the output and (when want_grad) fills in[] with the
// leaf tensors so their gradients can be read after the backward.
static dt_tensor *run_forward(dt_graph *g, fd_case *c, dt_tensor **in, bool want_grad) {
    dt_graph_reset(g);
    g->grad_enabled = want_grad;
    g->training = c->training;
    for (int i = 0; i < c->n_in; i++) {
        in[i] = dt_graph_tensor(g, c->ndim[i], c->shape[i]);
        memcpy(in[i]->data, c->data[i], (size_t)numel_of(c, i) * sizeof(float));
        in[i]->requires_grad = c->grad[i];
        in[i]->grad = NULL;
    }
    return c->fwd(g, in, c->arg);
}

static double weighted_sum(const dt_tensor *y, const float *R) {
    double s = 0;
    for (int64_t i = 0; i < dt_numel(y); i++) s += (double)dt_f32(y)[i] * R[i];
    return s;
}

static void check_case(dt_ctx *ctx, fd_case *c) {
    dt_graph g;
    dt_graph_init(ctx, &g, dt_backend_cpu(), 1 << 20);
    dt_tensor *in[MAXIN];
    dt_tensor *y = run_forward(&g, c, in, true);
    if (!y) { TEST_FAIL(c->name, "forward failed: %s", ctx->msg); dt_graph_free(&g); return; }
    int64_t ny = dt_numel(y);
    float *R = malloc((size_t)ny * sizeof(float));
    for (int64_t i = 0; i < ny; i++) R[i] = frand();
    if (dt_graph_backward_from(&g, y, R)) { TEST_FAIL(c->name, "backward failed: %s", ctx->msg); free(R); dt_graph_free(&g); return; }
    float *analytic[MAXIN] = {0};
    for (int i = 0; i < c->n_in; i++) {
        if (!c->grad[i]) continue;
        analytic[i] = malloc((size_t)numel_of(c, i) * sizeof(float));
        if (in[i]->grad) memcpy(analytic[i], in[i]->grad, (size_t)numel_of(c, i) * sizeof(float));
        else memset(analytic[i], 0, (size_t)numel_of(c, i) * sizeof(float));
    }
    double worst = 0;
    int worst_in = -1;
    int64_t worst_idx = -1;
    double worst_a = 0, worst_n = 0;
    const float eps = 3e-3f;
    for (int i = 0; i < c->n_in; i++) {
        if (!c->grad[i]) continue;
        int64_t n = numel_of(c, i);
        int64_t step = n > 40 ? n / 40 : 1;
        for (int64_t j = 0; j < n; j += step) {
            float keep = c->data[i][j];
            c->data[i][j] = keep + eps;
            double lp = weighted_sum(run_forward(&g, c, in, false), R);
            c->data[i][j] = keep - eps;
            double lm = weighted_sum(run_forward(&g, c, in, false), R);
            c->data[i][j] = keep;
            double num = (lp - lm) / (2 * eps), a = analytic[i][j];
            double err = fabs(num - a) / (2e-3 + 2e-2 * fabs(num));
            if (err > worst) { worst = err; worst_in = i; worst_idx = j; worst_a = a; worst_n = num; }
        }
    }
    TEST_CHECK(c->name, worst <= 1.0, "input %d element %lld: analytic %.6g vs numeric %.6g", worst_in,
               (long long)worst_idx, worst_a, worst_n);
    for (int i = 0; i < c->n_in; i++) free(analytic[i]);
    free(R);
    dt_graph_free(&g);
}

static void fill(fd_case *c) {
    for (int i = 0; i < c->n_in; i++) {
        c->data[i] = malloc((size_t)numel_of(c, i) * sizeof(float));
        for (int64_t j = 0; j < numel_of(c, i); j++) c->data[i][j] = frand();
    }
}

static void release(fd_case *c) {
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

#define SHAPE(...) {__VA_ARGS__}

static dt_tensor *f_add(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_add(g, in[0], in[1]); }
static dt_tensor *f_mul(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_mul(g, in[0], in[1]); }
static dt_tensor *f_dropout(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_dropout(g, in[0], 0.3f); }
static dt_tensor *f_rmsnorm(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_rmsnorm(g, in[0], in[1], 1e-5f); }
static dt_tensor *f_swiglu(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_swiglu(g, in[0], in[1]); }
static dt_tensor *f_scale_cols(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_scale_cols(g, in[0], in[1], NULL); }
static dt_tensor *f_scale_cols_centred(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_scale_cols(g, in[0], in[1], in[2]); }
static dt_tensor *f_concat(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_prompt_concat(g, in[0], in[1]); }

static dt_tensor *f_rope(dt_graph *g, dt_tensor **in, void *a) {
    (void)a;
    int64_t N = in[0]->shape[0] * in[0]->shape[1];
    int32_t pos[64];
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(i * 7 % 23);
    float inv[4];
    for (int i = 0; i < 4; i++) inv[i] = powf(10000.0f, -(float)(2 * i) / 8.0f);
    float *dinv = dt_graph_scratch(g, sizeof inv);
    memcpy(dinv, inv, sizeof inv);
    // rope is in place on a non-leaf: apply it to x * 1 so the leaf keeps its value
    dt_tensor *x = dt_mul(g, in[0], in[1]);
    return dt_rope_(g, x, 3, 8, dt_rope_table(g, dt_graph_ints(g, pos, N), dinv, N, 8));
}

typedef struct { float scale, dropout; bool bias; } lin_arg;
static dt_tensor *f_linear(dt_graph *g, dt_tensor **in, void *a) {
    lin_arg *la = a;
    static dt_lora_ref l; // rebuilt each call from the leaves of this forward
    static dt_linear_hook h;
    l = (dt_lora_ref){in[2], in[3], la->scale, la->dropout};
    h = dt_lora_hook(&l);
    // A and B are trainable leaves: their gradients must exist before the backward accumulates into them.
    for (int i = 2; i <= 3; i++) {
        in[i]->grad = dt_graph_scratch(g, dt_nbytes(in[i]));
        memset(in[i]->grad, 0, dt_nbytes(in[i]));
    }
    return dt_linear(g, in[0], in[1], la->bias ? in[4] : NULL, &h);
}

static void make_trainable(dt_graph *g, dt_tensor *t) {
    t->grad = dt_graph_scratch(g, dt_nbytes(t));
    memset(t->grad, 0, dt_nbytes(t));
}

// x (2,3,6) -> rmsnorm(x, w) -> two projections with LoRA; the output is their sum (multi-output op).
static dt_tensor *f_norm_linears(dt_graph *g, dt_tensor **in, void *a) {
    (void)a;
    static dt_lora_ref l0, l1;
    static dt_linear_hook h0, h1;
    for (int i = 3; i <= 6; i++) make_trainable(g, in[i]);
    l0 = (dt_lora_ref){in[3], in[4], 0.8f, 0.0f};
    l1 = (dt_lora_ref){in[5], in[6], 1.3f, 0.0f};
    h0 = dt_lora_hook(&l0);
    h1 = dt_lora_hook(&l1);
    const dt_tensor *W[2] = {in[1], in[2]};
    const dt_linear_hook *L[2] = {&h0, &h1};
    dt_tensor *out[2];
    if (dt_norm_linears(g, in[0], in[7], 1e-5f, 2, W, NULL, L, out)) return NULL;
    return dt_add(g, out[0], out[1]);
}

// Three projections whose A's (ranks 2, 3, 2) are rows of one (7, 6) input, as peft/lora.c lays out q/k/v:
// dt_norm_linears takes its stacked path. With *skip_middle the middle projection does not reach the loss.
static dt_tensor *f_norm_linears_stacked(dt_graph *g, dt_tensor **in, void *a) {
    bool skip_middle = *(bool *)a;
    static dt_tensor A[3];
    static dt_lora_ref l[3];
    static dt_linear_hook h[3];
    for (int i = 3; i <= 6; i++) make_trainable(g, in[i]);
    const int64_t ranks[3] = {2, 3, 2};
    for (int i = 0, off = 0; i < 3; off += (int)ranks[i], i++) {
        dt_tensor_set(&A[i], DT_F32, dt_f32(in[3]) + off * 6, 2, (int64_t[]){ranks[i], 6});
        A[i].grad = in[3]->grad + off * 6;
        A[i].requires_grad = true;
        l[i] = (dt_lora_ref){&A[i], in[4 + i], 0.5f + 0.4f * (float)i, 0.0f};
        h[i] = dt_lora_hook(&l[i]);
    }
    const dt_tensor *W[3] = {in[0 + 7], in[1 + 7], in[1]};
    const dt_linear_hook *L[3] = {&h[0], &h[1], &h[2]};
    dt_tensor *out[3];
    if (dt_norm_linears(g, in[0], in[2], 1e-5f, 3, W, NULL, L, out)) return NULL;
    return skip_middle ? dt_add(g, out[0], out[2]) : dt_add(g, dt_add(g, out[0], out[1]), out[2]);
}

// residual + (silu(gate) * up) W^T + LoRA with dropout
static dt_tensor *f_swiglu_linear(dt_graph *g, dt_tensor **in, void *a) {
    (void)a;
    static dt_lora_ref l;
    static dt_linear_hook h;
    make_trainable(g, in[3]);
    make_trainable(g, in[4]);
    l = (dt_lora_ref){in[3], in[4], 0.9f, 0.2f};
    h = dt_lora_hook(&l);
    return dt_swiglu_linear(g, in[0], in[1], in[2], &h, in[5]);
}

typedef struct { int64_t H, KV, hd; bool packed; } attn_arg;
static dt_tensor *f_attention(dt_graph *g, dt_tensor **in, void *a) {
    attn_arg *aa = a;
    int64_t B = in[0]->shape[0], T = in[0]->shape[1];
    int32_t *seg = NULL;
    if (aa->packed) {
        int32_t host[1024];
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) host[b * T + t] = t < T / 3 ? 0 : (t < T / 2 + b ? (int32_t)(T / 3) : (int32_t)(T / 2 + b));
        seg = dt_graph_ints(g, host, B * T);
    }
    return dt_attention(g, in[0], in[1], in[2], aa->H, aa->KV, aa->hd, seg);
}

// The same with extra key/value rows in[3], in[4] (n, KV*hd) in front of every example.
static dt_tensor *f_attention_ext(dt_graph *g, dt_tensor **in, void *a) {
    attn_arg *aa = a;
    int64_t B = in[0]->shape[0], T = in[0]->shape[1];
    static int32_t host[1024]; // read by the op while it builds its layout only
    if (aa->packed) // row 0: examples of 3, 3, 3 tokens; row 1: 3, 6 (rows with unequal expanded lengths)
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) host[b * T + t] = (int32_t)(b == 0 ? t / 3 * 3 : t < 3 ? 0 : 3);
    return dt_attention_ext(g, in[0], in[1], in[2], in[3], in[4], aa->H, aa->KV, aa->hd, aa->packed ? host : NULL);
}

static dt_tensor *f_slice_cols(dt_graph *g, dt_tensor **in, void *a) { (void)a; return dt_slice_cols(g, in[0], 3, 4); }

// Which targets are ignored: every fourth row (too scattered to compact: every row is projected);
// rows 0-4 and 10-13 (runs of trained rows 5-9 and 14-15 are compacted); or all (no row projected).
typedef enum { XENT_SCATTERED, XENT_RUNS, XENT_NONE } xent_mask;

static dt_tensor *f_xent(dt_graph *g, dt_tensor **in, void *a) {
    const xent_mask mask = *(const xent_mask *)a;
    int64_t N = in[0]->shape[0];
    int32_t tg[64];
    for (int64_t i = 0; i < N; i++) {
        bool ignored = mask == XENT_NONE || (mask == XENT_SCATTERED ? i % 4 == 3 : i < 5 || (i >= 10 && i < 14));
        tg[i] = ignored ? -100 : (int32_t)((i * 5) % in[1]->shape[0]);
    }
    return dt_lm_head_xent(g, in[0], in[1], NULL, tg, 7.0f, NULL);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

// The blocked kernels against the naive ones. T crosses several row blocks (64), the last one partial,
// so the block logic, the pairing of blocks in the backward and the packing masks are exercised; three
// query heads share each key/value head.
static void test_attention_vs_naive(void) {
    const int64_t B = 2, T = 150, H = 6, KV = 2, hd = 16;
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *o1 = malloc(nq * 4), *o2 = malloc(nq * 4);
    float *dout = malloc(nq * 4), *dq1 = malloc(nq * 4), *dq2 = malloc(nq * 4);
    float *dk1 = malloc(nk * 4), *dk2 = malloc(nk * 4), *dv1 = malloc(nk * 4), *dv2 = malloc(nk * 4);
    float *lse = malloc((size_t)B * H * T * 4);
    int32_t *seg = malloc((size_t)B * T * 4);
    for (size_t i = 0; i < nq; i++) { q[i] = frand(); dout[i] = frand(); }
    for (size_t i = 0; i < nk; i++) { k[i] = frand(); v[i] = frand(); }
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) seg[b * T + t] = t < 70 ? 0 : (t < 101 ? 70 : 101);
    void *scratch = malloc(dt_cpu_attention_scratch_bytes(B, T, H, KV, hd));
    for (int packed = 0; packed < 2; packed++) {
        const int32_t *s = packed ? seg : NULL;
        dt_cpu_attention_fwd(o1, lse, q, k, v, s, B, T, H, KV, hd, scratch);
        dt_cpu_attention_fwd_naive(o2, q, k, v, s, B, T, H, KV, hd);
        double worst = max_abs_diff(o1, o2, nq);
        TEST_CHECK(packed ? "attention_blocked_vs_naive_packed" : "attention_blocked_vs_naive", worst < 1e-5,
                   "max abs diff %.3g", worst);
        dt_cpu_attention_bwd(dq1, dk1, dv1, false, false, false, dout, o1, lse, q, k, v, s, B, T, H, KV, hd, scratch);
        dt_cpu_attention_bwd_naive(dq2, dk2, dv2, dout, q, k, v, s, B, T, H, KV, hd);
        double wq = max_abs_diff(dq1, dq2, nq), wk = max_abs_diff(dk1, dk2, nk), wv = max_abs_diff(dv1, dv2, nk);
        TEST_CHECK(packed ? "attention_bwd_blocked_vs_naive_packed" : "attention_bwd_blocked_vs_naive",
                   wq < 1e-5 && wk < 1e-5 && wv < 1e-5, "max abs diff dq %.3g dk %.3g dv %.3g", wq, wk, wv);
        // accumulate mode adds the same gradients onto what is there
        dt_cpu_attention_bwd(dq1, dk1, dv1, true, true, true, dout, o1, lse, q, k, v, s, B, T, H, KV, hd, scratch);
        for (size_t i = 0; i < nq; i++) dq2[i] *= 2;
        for (size_t i = 0; i < nk; i++) { dk2[i] *= 2; dv2[i] *= 2; }
        wq = max_abs_diff(dq1, dq2, nq), wk = max_abs_diff(dk1, dk2, nk), wv = max_abs_diff(dv1, dv2, nk);
        TEST_CHECK(packed ? "attention_bwd_accumulate_packed" : "attention_bwd_accumulate",
                   wq < 2e-5 && wk < 2e-5 && wv < 2e-5, "max abs diff dq %.3g dk %.3g dv %.3g", wq, wk, wv);
    }
    free(q); free(k); free(v); free(o1); free(o2); free(lse); free(seg); free(scratch);
    free(dout); free(dq1); free(dq2); free(dk1); free(dk2); free(dv1); free(dv2);
}

// dt_attention_ext against a direct loop: each query over the n extra rows and then its own example's keys
// up to itself, softmax, weighted values. Packed rows with different numbers of examples.
static void test_attention_ext_vs_naive(dt_ctx *ctx) {
    enum { B = 2, T = 10, H = 4, KV = 2, hd = 8, n = 3, qd = H * hd, kvd = KV * hd };
    static float q[B * T * qd], k[B * T * kvd], v[B * T * kvd], pk[n * kvd], pv[n * kvd];
    int32_t seg[B * T];
    for (int64_t t = 0; t < T; t++) { seg[t] = (int32_t)(t < 4 ? 0 : 4); seg[T + t] = (int32_t)(t < 2 ? 0 : t < 7 ? 2 : 7); }
    float *all[] = {q, k, v, pk, pv};
    const int64_t len[] = {B * T * qd, B * T * kvd, B * T * kvd, n * kvd, n * kvd};
    for (int i = 0; i < 5; i++) for (int64_t j = 0; j < len[i]; j++) all[i][j] = frand();
    dt_graph g;
    dt_graph_init(ctx, &g, dt_backend_cpu(), 1 << 20);
    g.grad_enabled = false;
    dt_tensor *t[5];
    const int64_t shapes[5][3] = {{B, T, qd}, {B, T, kvd}, {B, T, kvd}, {n, kvd, 0}, {n, kvd, 0}};
    for (int i = 0; i < 5; i++) {
        t[i] = dt_graph_tensor(&g, i < 3 ? 3 : 2, shapes[i]);
        memcpy(t[i]->data, all[i], (size_t)len[i] * sizeof(float));
    }
    dt_tensor *y = dt_attention_ext(&g, t[0], t[1], t[2], t[3], t[4], H, KV, hd, seg);
    double worst = y ? 0 : INFINITY;
    for (int64_t b = 0; y && b < B; b++)
        for (int64_t i = 0; i < T; i++)
            for (int64_t h = 0; h < H; h++) {
                const float *qi = q + (b * T + i) * qd + h * hd;
                const int64_t gk = h / (H / KV), s0 = seg[b * T + i], nk = n + i - s0 + 1;
                double sc[n + T], m = -INFINITY, sum = 0;
                for (int64_t j = 0; j < nk; j++) { // key j: extra row j, then token s0 + j - n
                    const float *kj = j < n ? pk + j * kvd + gk * hd : k + (b * T + s0 + j - n) * kvd + gk * hd;
                    double d = 0;
                    for (int64_t e = 0; e < hd; e++) d += (double)qi[e] * kj[e];
                    sc[j] = d / sqrt((double)hd);
                    m = fmax(m, sc[j]);
                }
                for (int64_t j = 0; j < nk; j++) sum += (sc[j] = exp(sc[j] - m));
                for (int64_t e = 0; e < hd; e++) {
                    double o = 0;
                    for (int64_t j = 0; j < nk; j++)
                        o += sc[j] / sum * (j < n ? pv[j * kvd + gk * hd + e] : v[(b * T + s0 + j - n) * kvd + gk * hd + e]);
                    worst = fmax(worst, fabs(o - dt_f32(y)[(b * T + i) * qd + h * hd + e]));
                }
            }
    TEST_CHECK("attention_ext_vs_naive_packed", worst < 1e-5, "max abs diff %.3g (%s)", worst, y ? "" : ctx->msg);
    dt_graph_free(&g);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    fd_case cases[] = {
        {"grad_add", 2, {2, 2}, {SHAPE(3, 5), SHAPE(3, 5)}, {true, true}, {0}, f_add, NULL, false},
        {"grad_mul", 2, {2, 2}, {SHAPE(3, 5), SHAPE(3, 5)}, {true, true}, {0}, f_mul, NULL, false},
        {"grad_dropout", 1, {2}, {SHAPE(4, 9)}, {true}, {0}, f_dropout, NULL, true},
        {"grad_rmsnorm", 2, {3, 1}, {SHAPE(2, 3, 12), SHAPE(12)}, {true, false}, {0}, f_rmsnorm, NULL, false},
        {"grad_rmsnorm_per_head", 2, {3, 1}, {SHAPE(2, 3, 24), SHAPE(8)}, {true, false}, {0}, f_rmsnorm, NULL, false},
        {"grad_scale_cols", 2, {3, 1}, {SHAPE(2, 3, 7), SHAPE(7)}, {true, true}, {0}, f_scale_cols, NULL, false},
        {"grad_scale_cols_centred", 3, {3, 1, 1}, {SHAPE(2, 3, 7), SHAPE(7), SHAPE(7)}, {true, true, false}, {0},
         f_scale_cols_centred, NULL, false},
        {"grad_swiglu", 2, {2, 2}, {SHAPE(4, 6), SHAPE(4, 6)}, {true, true}, {0}, f_swiglu, NULL, false},
        {"grad_prompt_concat", 2, {2, 3}, {SHAPE(3, 4), SHAPE(2, 5, 4)}, {true, true}, {0}, f_concat, NULL, false},
        {"grad_rope", 2, {3, 3}, {SHAPE(2, 5, 24), SHAPE(2, 5, 24)}, {true, false}, {0}, f_rope, NULL, false},
        {"grad_linear_lora", 4, {3, 2, 2, 2}, {SHAPE(2, 3, 6), SHAPE(5, 6), SHAPE(2, 6), SHAPE(5, 2)},
         {true, false, true, true}, {0}, f_linear, &(lin_arg){1.5f, 0.0f, false}, false},
        {"grad_linear_lora_bias_dropout", 5, {3, 2, 2, 2, 1}, {SHAPE(2, 3, 6), SHAPE(5, 6), SHAPE(3, 6), SHAPE(5, 3), SHAPE(5)},
         {true, false, true, true, false}, {0}, f_linear, &(lin_arg){0.7f, 0.25f, true}, true},
        {"grad_attention_gqa", 3, {3, 3, 3}, {SHAPE(2, 7, 32), SHAPE(2, 7, 16), SHAPE(2, 7, 16)},
         {true, true, true}, {0}, f_attention, &(attn_arg){4, 2, 8, false}, false},
        {"grad_attention_packed", 3, {3, 3, 3}, {SHAPE(2, 9, 16), SHAPE(2, 9, 8), SHAPE(2, 9, 8)},
         {true, true, true}, {0}, f_attention, &(attn_arg){2, 1, 8, true}, false},
        {"grad_attention_ext_gqa", 5, {3, 3, 3, 2, 2},
         {SHAPE(2, 5, 32), SHAPE(2, 5, 16), SHAPE(2, 5, 16), SHAPE(3, 16), SHAPE(3, 16)},
         {true, true, true, true, true}, {0}, f_attention_ext, &(attn_arg){4, 2, 8, false}, false},
        {"grad_attention_ext_packed", 5, {3, 3, 3, 2, 2},
         {SHAPE(2, 9, 16), SHAPE(2, 9, 8), SHAPE(2, 9, 8), SHAPE(2, 8), SHAPE(2, 8)},
         {true, true, true, true, true}, {0}, f_attention_ext, &(attn_arg){2, 1, 8, true}, false},
        {"grad_slice_cols", 1, {2}, {SHAPE(3, 10)}, {true}, {0}, f_slice_cols, NULL, false},
        {"grad_norm_linears_lora", 8, {3, 2, 2, 2, 2, 2, 2, 1},
         {SHAPE(2, 3, 6), SHAPE(5, 6), SHAPE(5, 6), SHAPE(2, 6), SHAPE(5, 2), SHAPE(3, 6), SHAPE(5, 3), SHAPE(6)},
         {true, false, false, true, true, true, true, false}, {0}, f_norm_linears, NULL, false},
        {"grad_norm_linears_lora_stacked", 9, {3, 2, 1, 2, 2, 2, 2, 2, 2},
         {SHAPE(2, 3, 6), SHAPE(5, 6), SHAPE(6), SHAPE(7, 6), SHAPE(5, 2), SHAPE(5, 3), SHAPE(5, 2), SHAPE(5, 6), SHAPE(5, 6)},
         {true, false, false, true, true, true, true, false, false}, {0}, f_norm_linears_stacked, &(bool){false}, false},
        {"grad_norm_linears_lora_stacked_unused_output", 9, {3, 2, 1, 2, 2, 2, 2, 2, 2},
         {SHAPE(2, 3, 6), SHAPE(5, 6), SHAPE(6), SHAPE(7, 6), SHAPE(5, 2), SHAPE(5, 3), SHAPE(5, 2), SHAPE(5, 6), SHAPE(5, 6)},
         {true, false, false, true, true, true, true, false, false}, {0}, f_norm_linears_stacked, &(bool){true}, false},
        {"grad_swiglu_linear_residual_dropout", 6, {3, 3, 2, 2, 2, 3},
         {SHAPE(2, 3, 7), SHAPE(2, 3, 7), SHAPE(5, 7), SHAPE(2, 7), SHAPE(5, 2), SHAPE(2, 3, 5)},
         {true, true, false, true, true, true}, {0}, f_swiglu_linear, NULL, true},
        {"grad_lm_head_xent", 2, {2, 2}, {SHAPE(8, 6), SHAPE(11, 6)}, {true, false}, {0}, f_xent,
         &(xent_mask){XENT_SCATTERED}, false},
        {"grad_lm_head_xent_trained_runs", 2, {2, 2}, {SHAPE(16, 6), SHAPE(11, 6)}, {true, false}, {0}, f_xent,
         &(xent_mask){XENT_RUNS}, false},
        {"grad_lm_head_xent_all_ignored", 2, {2, 2}, {SHAPE(5, 6), SHAPE(11, 6)}, {true, false}, {0}, f_xent,
         &(xent_mask){XENT_NONE}, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fill(&cases[i]);
        check_case(&ctx, &cases[i]);
        release(&cases[i]);
    }
    test_attention_vs_naive();
    test_attention_ext_vs_naive(&ctx);
    TEST_EXIT();
}
