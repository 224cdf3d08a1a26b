// The CPU frozen-linear entry on quantized weights: the dispatch (fast AVX2 kernels for Q8_0, Q4_0,
// Q4_K, NF4/FP4, the generic path for the rest) against the generic reference path, bit for bit (same
// widened panels, same sgemm), and both against a naive double-precision product with the dequantized
// weights; forward (y = x W^T) and backward (dx = dy W), overwriting and accumulating.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/cpu_kernels.h"
#include "autograd/dtype.h"
#include "autograd/quant.h"
#include "autograd/rng.h"
#include "models/llama.h"
#include "models/llama_quant.h"
#include "tests/test_util.h"

static void fill(float *x, int64_t n, uint64_t seed, float scale) {
    dt_rng r = {seed};
    for (int64_t i = 0; i < n; i++) x[i] = scale * (float)dt_rng_normal(&r);
}

// N rows of x: 7 take the panel paths, 1 (generation's decode) the few-rows path (dt_cpu_frozen_fwd_widened).
static void check_type_n(const char *label, dt_dtype q, bool dq, int64_t out, int64_t in, int64_t N) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    float *w = malloc((size_t)(out * in) * sizeof *w), *x = malloc((size_t)(N * in) * sizeof *x);
    float *dy = malloc((size_t)(N * out) * sizeof *dy), *deq = malloc((size_t)(out * in) * sizeof *deq);
    float *y1 = malloc((size_t)(N * out) * sizeof *y1), *y2 = malloc((size_t)(N * out) * sizeof *y2);
    float *dx1 = malloc((size_t)(N * in) * sizeof *dx1), *dx2 = malloc((size_t)(N * in) * sizeof *dx2);
    void *block = aligned_alloc(64, (dt_lq_bytes(q, dq, out, in) + 63) & ~(size_t)63);
    fill(w, out * in, 1, 0.05f);
    fill(x, N * in, 2, 1.0f);
    fill(dy, N * out, 3, 1.0f);
    dt_tensor W;
    if (dt_lq_fill(&ctx, label, q, dq, w, out, in, block, &W)) { TEST_FAIL(label, "%s", ctx.msg); goto done; }
    for (int64_t r = 0; r < out; r++) dt_tensor_row_f32(&W, r, deq + r * in);
    float *scratch = malloc(dt_cpu_frozen_scratch_bytes(&W, N));
    double worst = 0, ref_max = 0;
    bool same = true;
    for (int acc = 0; acc < 2; acc++) {
        // forward: y = x W^T (+ the value already there)
        for (int64_t i = 0; i < N * out; i++) y1[i] = y2[i] = acc ? 0.25f * (float)(i % 7) : 0.0f;
        dt_cpu_frozen_fwd(y1, acc, x, N, &W, scratch);
        dt_cpu_frozen_fwd_generic(y2, acc, x, N, &W, scratch);
        same = same && !memcmp(y1, y2, (size_t)(N * out) * sizeof *y1);
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < out; o++) {
                double s = acc ? 0.25 * (double)((n * out + o) % 7) : 0.0;
                for (int64_t k = 0; k < in; k++) s += (double)x[n * in + k] * deq[o * in + k];
                worst = fmax(worst, fabs(s - y1[n * out + o]));
                ref_max = fmax(ref_max, fabs(s));
            }
        // backward: dx = dy W (+ the value already there)
        for (int64_t i = 0; i < N * in; i++) dx1[i] = dx2[i] = acc ? 0.5f * (float)(i % 5) : 0.0f;
        dt_cpu_frozen_bwd(dx1, acc, dy, N, &W, scratch);
        dt_cpu_frozen_bwd_generic(dx2, acc, dy, N, &W, scratch);
        same = same && !memcmp(dx1, dx2, (size_t)(N * in) * sizeof *dx1);
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < in; k++) {
                double s = acc ? 0.5 * (double)((n * in + k) % 5) : 0.0;
                for (int64_t o = 0; o < out; o++) s += (double)dy[n * out + o] * deq[o * in + k];
                worst = fmax(worst, fabs(s - dx1[n * in + k]));
                ref_max = fmax(ref_max, fabs(s));
            }
    }
    char name[96];
    snprintf(name, sizeof name, "%s_N%lld", label, (long long)N);
    TEST_CHECK(name, same && worst <= 1e-5 * ref_max, "dispatch %s the generic path; max abs diff to the naive product %.3g (of %.3g)",
               same ? "equals" : "DIFFERS from", worst, ref_max);
    free(scratch);
done:
    free(w); free(x); free(dy); free(deq); free(y1); free(y2); free(dx1); free(dx2); free(block);
}

static void check_type(const char *label, dt_dtype q, bool dq, int64_t out, int64_t in) {
    check_type_n(label, q, dq, out, in, 7);
    check_type_n(label, q, dq, out, in, 1);
}

// dt_llama_init_random_ex with NF4 linears: the same draws as the f32 random model, quantized: every
// linear is NF4 and dequantizes to the f32 model's weights within NF4's error (relative RMS about 0.1 on
// normal values; held to 0.2, and above 0, so that a model left unquantized or drawn differently fails);
// the embedding, not a linear, is identical.
static void check_random_nf4(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_model_config cfg = {0};
    cfg.arch = DT_ARCH_LLAMA;
    snprintf(cfg.arch_name, sizeof cfg.arch_name, "LlamaForCausalLM");
    cfg.hidden_size = 64; cfg.num_layers = 2; cfg.num_heads = 4; cfg.num_kv_heads = 2; cfg.head_dim = 16;
    cfg.intermediate_size = 128; cfg.vocab_size = 100; cfg.max_position_embeddings = 64;
    cfg.rms_norm_eps = 1e-5f; cfg.rope_theta = 10000.0f; cfg.torch_dtype = DT_F32;
    const dt_load_opts o = {.quantize = DT_NF4, .double_quant = true};
    dt_llama *f = NULL, *q = NULL;
    if (dt_llama_init_random(&ctx, &cfg, dt_backend_cpu(), 3, &f) ||
        dt_llama_init_random_ex(&ctx, &cfg, dt_backend_cpu(), 3, &o, &q)) {
        TEST_FAIL("random_nf4_model", "%s", ctx.msg);
        dt_llama_free(f);
        return;
    }
    double num = 0, den = 0;
    bool all_nf4 = true;
    float row[128];
    for (int l = 0; l < cfg.num_layers; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            const dt_tensor *wq = &q->layers[l].w[mod], *wf = &f->layers[l].w[mod];
            all_nf4 = all_nf4 && wq->dtype == DT_NF4 && wq->aux;
            if (wq->dtype != DT_NF4) continue;
            for (int64_t r = 0; r < wq->shape[0]; r++) {
                dt_nf4_row_to_f32(wq, r, row);
                for (int64_t c = 0; c < wq->shape[1]; c++) {
                    const double w = dt_f32(wf)[r * wf->shape[1] + c];
                    num += (row[c] - w) * (row[c] - w);
                    den += w * w;
                }
            }
        }
    const double rel = den > 0 ? sqrt(num / den) : INFINITY;
    TEST_CHECK("random_nf4_model_linears_quantized", all_nf4 && rel > 0 && rel <= 0.2,
               "all NF4: %d, relative RMS against the f32 draws %.3g", all_nf4, rel);
    TEST_CHECK("random_nf4_model_embedding_kept", q->embed.dtype == DT_F32 &&
                   !memcmp(q->embed.data, f->embed.data, (size_t)(cfg.vocab_size * cfg.hidden_size) * sizeof(float)),
               "embedding dtype %s", dt_dtype_name(q->embed.dtype));
    dt_llama_free(f);
    dt_llama_free(q);
}

int main(void) {
    check_random_nf4();
    // Panels of 1024 rows at in = 4096 (dt_cpu_frozen_panel_rows): 1100 rows make a full panel and a partial one.
    check_type("frozen_q8_0", DT_Q8_0, false, 300, 4096);
    check_type("frozen_q4_0", DT_Q4_0, false, 300, 4096);
    check_type("frozen_q4_K", DT_Q4_K, false, 1100, 4096);
    check_type("frozen_nf4", DT_NF4, false, 1100, 4096);
    check_type("frozen_nf4_double_quant", DT_NF4, true, 300, 4096);
    check_type("frozen_fp4", DT_FP4, false, 40, 256);
    check_type("frozen_nf4_rows_across_blocks", DT_NF4, false, 40, 96); // bitsandbytes blocks span rows: generic path
    check_type("frozen_q4_1", DT_Q4_1, false, 40, 256);
    check_type("frozen_q5_0", DT_Q5_0, false, 40, 256);
    check_type("frozen_q5_1", DT_Q5_1, false, 40, 256);
    check_type("frozen_q5_K", DT_Q5_K, false, 40, 256);
    check_type("frozen_q6_K", DT_Q6_K, false, 40, 256);
    TEST_EXIT();
}
