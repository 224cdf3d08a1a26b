// Compact graphs (autograd/graph.h): inside a scope, activations live in pool blocks that the scope's
// end gives back, and the backward reads the bf16 copies the ops kept. Checked here:
//  - the mechanics: begin refuses a backend without bf16 conversions; a scope's tensors lose their
//    data at its end except the kept output; dt_graph_saved gives exactly the bf16-rounded values;
//  - a LoRA step of a small random model (bf16 weights, bf16 backend) with compact layers against
//    the same step with them off (the same backend table without its conversions): the loss is the
//    same bit for bit (the forward computes from the f32 values either way), the adapter gradients
//    agree to the bf16 rounding of the saved values, and the step's activation arena is at most 2/3
//    of the uncompacted one's (the saved values halve and the layers' f32 outputs go; the state kept
//    in f32 - norm statistics, LoRA's x A^T, the loss's chunk of logits - stays).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/cpu_bf16.h"
#include "autograd/cpu_bf16_backend.h"
#include "models/llama.h"
#include "peft/adapter.h"
#include "tests/test_util.h"

static void test_mechanics(dt_ctx *ctx, const dt_backend *bf) {
    dt_graph g;
    if (dt_graph_init(ctx, &g, dt_backend_cpu(), 0)) { TEST_FAIL("compact_init", "%s", ctx->msg); return; }
    TEST_CHECK("compact_refused_without_bf16_conversions", !dt_graph_compact_begin(&g) && !g.compact,
               "the f32 CPU table started a compact scope");
    dt_graph_free(&g);

    if (dt_graph_init(ctx, &g, bf, 0)) { TEST_FAIL("compact_init", "%s", ctx->msg); return; }
    dt_graph_reset(&g);
    const int64_t n = 1000;
    bool began = dt_graph_compact_begin(&g);
    dt_tensor *a = dt_graph_tensor(&g, 1, &n), *b = dt_graph_tensor(&g, 1, &n), *c = dt_graph_tensor(&g, 1, &n);
    if (!began || !a || !b || !c) { TEST_FAIL("compact_scope", "begin %d: %s", began, ctx->msg); dt_graph_free(&g); return; }
    for (int64_t i = 0; i < n; i++) {
        dt_f32(a)[i] = (float)sin(0.37 * (double)i) * 3.0f + 1e-3f * (float)i; // values bf16 cannot hold
        dt_f32(b)[i] = dt_f32(c)[i] = 1.0f;
    }
    dt_graph_keep16(&g, a);
    dt_graph_compact_end(&g, c);
    TEST_CHECK("compact_end_gives_back_data", !a->data && !b->data && c->data && g.n_live == 1 && !g.compact,
               "a %p b %p c %p, %d live", a->data, b->data, c->data, g.n_live);
    const float *va = dt_graph_saved(&g, a);
    bool exact = va != NULL;
    for (int64_t i = 0; exact && i < n; i++) {
        float x = (float)sin(0.37 * (double)i) * 3.0f + 1e-3f * (float)i;
        exact = va[i] == dt_bf16_to_f32(dt_f32_to_bf16(x));
    }
    TEST_CHECK("compact_saved_is_bf16_rounding", exact, "dt_graph_saved differs from the bf16 rounding of the values");
    dt_graph_saved_done(&g, a, va);
    TEST_CHECK("compact_saved_plain_tensor", dt_graph_saved(&g, c) == dt_f32(c), "a tensor without a copy is read in place");
    dt_graph_free(&g);
}

typedef struct { double loss; float *grads; size_t n, arena; } step_result;

// One LoRA training step of m on be; the adapter's gradients copied into r->grads (caller frees).
static int lora_step(dt_ctx *ctx, const dt_backend *be, const dt_llama *m, const dt_model_config *cfg,
                     step_result *r) {
    dt_lora_config lc = {.r = 8, .alpha = 16, .dropout = 0.0f};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    dt_adapter *ad;
    if (dt_lora_create(ctx, m, &lc, 7, &ad)) return 1;
    for (size_t i = 0; i < ad->n_params; i++)
        if (ad->params[i] == 0) ad->params[i] = 0.01f * (float)((int)(i % 13) - 6); // B non-zero: every path has a gradient
    enum { B = 2, T = 48 };
    int32_t ids[B * T], labels[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = labels[i] = (int32_t)((i * 131 + 7) % cfg->vocab_size);
    dt_batch batch = {B, T, ids, labels, NULL, NULL};
    dt_graph g;
    int rc = dt_graph_init(ctx, &g, be, 0);
    dt_llama_out out;
    if (!rc) {
        dt_graph_reset(&g);
        g.training = true;
        dt_adapter_zero_grad(ad);
        rc = dt_llama_forward(ctx, &g, m, &ad->view, &batch, 0, false, &out) || dt_graph_backward(&g, out.loss, 1.0f);
    }
    if (!rc) {
        r->loss = dt_f32(out.loss)[0];
        r->arena = g.arena.peak;
        r->n = ad->n_params;
        r->grads = malloc(r->n * sizeof(float));
        if (r->grads) memcpy(r->grads, ad->grads, r->n * sizeof(float));
        rc = !r->grads;
    }
    dt_graph_free(&g);
    dt_adapter_free(ad);
    return rc;
}

static void test_step(dt_ctx *ctx, const dt_backend *bf) {
    dt_model_config cfg = {0};
    cfg.arch = DT_ARCH_LLAMA;
    snprintf(cfg.arch_name, sizeof cfg.arch_name, "LlamaForCausalLM");
    cfg.hidden_size = 64; cfg.num_layers = 3; cfg.num_heads = 4; cfg.num_kv_heads = 2; cfg.head_dim = 16;
    cfg.intermediate_size = 160; cfg.vocab_size = 96; cfg.rope_theta = 10000.0f; cfg.max_position_embeddings = 256;
    cfg.rms_norm_eps = 1e-5f; cfg.tie_word_embeddings = true; cfg.bos_token_id = 1; cfg.eos_token_id = 2;
    cfg.torch_dtype = DT_F32;
    dt_llama *m;
    if (dt_llama_init_random_typed(ctx, &cfg, bf, 11, DT_BF16, &m)) { TEST_FAIL("compact_model", "%s", ctx->msg); return; }
    dt_backend plain = *bf; // the same kernels, without the conversions: layers keep f32 activations
    plain.to_bf16 = NULL;
    plain.from_bf16 = NULL;
    step_result c = {0}, f = {0};
    if (lora_step(ctx, bf, m, &cfg, &c) || lora_step(ctx, &plain, m, &cfg, &f) || c.n != f.n) {
        TEST_FAIL("compact_step", "%s", ctx->msg);
    } else {
        TEST_CHECK("compact_step_same_loss", c.loss == f.loss, "compact %.9g, f32-saved %.9g", c.loss, f.loss);
        double num = 0, den = 0;
        for (size_t i = 0; i < c.n; i++) {
            double d = (double)c.grads[i] - f.grads[i];
            num += d * d;
            den += (double)f.grads[i] * f.grads[i];
        }
        double rel = den > 0 ? sqrt(num / den) : INFINITY;
        // Each saved value is off by at most 2^-9 relative (round to nearest, 8 significant bits), about
        // 2^-9/sqrt(3) RMS; a gradient sums several such terms in quadrature. 2^-6 leaves a margin of
        // about 10 over that, and is far below what a stale or wrong saved value gives (order 1).
        printf("# compact step: relative gradient difference %.3g, arena %zu vs %zu bytes\n", rel, c.arena, f.arena);
        TEST_CHECK("compact_step_gradients_close", rel > 0 && rel < 1.0 / 64,
                   "relative gradient difference %.3g (want > 0: the backward must read the bf16 copies; < %.3g)", rel,
                   1.0 / 64);
        TEST_CHECK("compact_step_smaller_arena", c.arena * 3 <= f.arena * 2, "compact arena %zu bytes, f32-saved %zu",
                   c.arena, f.arena);
    }
    free(c.grads);
    free(f.grads);
    dt_llama_free(m);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    // No bf16 units needed: the compact mechanism is the graph's, and without them the bf16 table's
    // matmuls run emulated (bf16 operands widened, sgemm: the same products), so the same checks hold.
    if (!dt_cpu_has_bf16()) printf("# no bf16 matrix instructions: the bf16 table's matmuls run emulated\n");
    dt_backend *bf;
    if (dt_cpu_bf16_backend_create(&ctx, &bf)) { TEST_FAIL("compact_backend", "%s", ctx.msg); TEST_EXIT(); }
    test_mechanics(&ctx, bf);
    test_step(&ctx, bf);
    dt_cpu_bf16_backend_free(bf);
    TEST_EXIT();
}
