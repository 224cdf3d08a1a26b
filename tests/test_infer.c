// Generation's KV-cache path against the training forward: feeding a sequence in pieces (a chunk, then
// one token at a time) gives, at every position, the logits the full forward gives there, with the
// adapters applied unmerged (LoRA on the golden models, prompt tuning, IA3, DoRA, bottleneck, prefix tuning,
// BitFit, LoRA on the embedding and the LM head).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "models/llama_infer.h"
#include "peft/peft_io.h"
#include "tests/test_util.h"

static void check(const char *name, const char *model_dir, const char *adapter_dir) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_llama *m;
    dt_adapter *a;
    if (dt_llama_load(&ctx, model_dir, dt_backend_cpu(), &m) || dt_adapter_load(&ctx, adapter_dir, m, &a)) {
        TEST_FAIL(name, "%s", ctx.msg);
        return;
    }
    const int64_t T = 11, V = m->cfg.vocab_size;
    int32_t ids[11];
    for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)((i * 37 + 5) % V);
    dt_graph g;
    dt_graph_init(&ctx, &g, dt_backend_cpu(), 0);
    g.grad_enabled = false;
    dt_batch b = {1, T, ids, NULL, NULL, NULL};
    dt_llama_out out;
    int64_t P = dt_llama_out_len(&a->view, T) - T;
    dt_kv_cache c;
    float *lg = malloc((size_t)V * sizeof(float));
    double worst = 0;
    if (dt_llama_forward(&ctx, &g, m, &a->view, &b, 0, true, &out) || dt_kv_cache_init(&ctx, m, 64, &c)) {
        TEST_FAIL(name, "%s", ctx.msg);
    } else {
        // 4 tokens at once, then one by one
        int64_t fed = 0;
        while (fed < T) {
            int64_t n = fed == 0 ? 4 : 1;
            if (dt_llama_infer(&ctx, m, &a->view, &c, ids + fed, n, lg)) { TEST_FAIL(name, "%s", ctx.msg); break; }
            fed += n;
            const float *ref = dt_f32(out.logits) + (P + fed - 1) * V;
            for (int64_t j = 0; j < V; j++) worst = fmax(worst, fabs(lg[j] - ref[j]));
        }
        TEST_CHECK(name, fed == T && worst < 1e-4, "max abs logit difference %.3g", worst);
        dt_kv_cache_free(&c);
    }
    free(lg);
    dt_graph_free(&g);
    dt_adapter_free(a);
    dt_llama_free(m);
}

// Mistral's sliding_window (Qwen's with use_sliding_window): the attention has no window mask, so a forward
// where a query would see more than sliding_window keys is refused (transformers would mask there), and
// one within the window runs: whole rows, packed segments and the KV cache alike.
static void check_sliding_window(void) {
    const char *name = "sliding_window_longer_refused";
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_llama *m;
    if (dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m)) { TEST_FAIL(name, "%s", ctx.msg); return; }
    m->cfg.sliding_window = 8;
    int32_t ids[11], seg[11];
    for (int i = 0; i < 11; i++) ids[i] = (int32_t)((i * 37 + 5) % m->cfg.vocab_size), seg[i] = i < 6 ? 0 : 6;
    dt_graph g;
    dt_graph_init(&ctx, &g, dt_backend_cpu(), 0);
    g.grad_enabled = false;
    dt_llama_out out;
    dt_batch whole = {1, 11, ids, NULL, NULL, NULL}, inside = {1, 8, ids, NULL, NULL, NULL}, packed = {1, 11, ids, NULL, NULL, seg};
    int rc = dt_llama_forward(&ctx, &g, m, NULL, &whole, 0, true, &out);
    TEST_CHECK(name, rc == DT_EUNSUPPORTED && strstr(ctx.msg, "sliding_window (8)"), "rc %d: %s", rc, ctx.msg);
    dt_graph_reset(&g);
    rc = dt_llama_forward(&ctx, &g, m, NULL, &inside, 0, true, &out);
    TEST_CHECK("sliding_window_within_runs", rc == DT_OK, "rc %d: %s", rc, ctx.msg);
    dt_graph_reset(&g);
    rc = dt_llama_forward(&ctx, &g, m, NULL, &packed, 0, true, &out); // segments of 6 and 5 tokens
    TEST_CHECK("sliding_window_packed_segments_run", rc == DT_OK, "rc %d: %s", rc, ctx.msg);
    dt_kv_cache c;
    float *lg = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    if (!lg || dt_kv_cache_init(&ctx, m, 64, &c)) {
        TEST_FAIL("sliding_window_kv_cache", "%s", ctx.msg);
    } else {
        int rc8 = dt_llama_infer(&ctx, m, NULL, &c, ids, 8, lg), rc9 = rc8 ? rc8 : dt_llama_infer(&ctx, m, NULL, &c, ids + 8, 1, lg);
        TEST_CHECK("sliding_window_kv_cache", rc8 == DT_OK && rc9 == DT_EUNSUPPORTED, "rc %d then %d: %s", rc8, rc9, ctx.msg);
        dt_kv_cache_free(&c);
    }
    free(lg);
    dt_graph_free(&g);
    dt_llama_free(m);
}

int main(void) {
    check("kv_cache_llama_gqa_lora", "tests/golden/llama_gqa", "tests/golden/llama_gqa/adapter");
    check("kv_cache_qwen2_bias_rslora", "tests/golden/qwen2_bias", "tests/golden/qwen2_bias/adapter");
    check("kv_cache_qwen3_qknorm", "tests/golden/qwen3_qknorm", "tests/golden/qwen3_qknorm/adapter");
    check("kv_cache_llama3_rope", "tests/golden/llama3_rope", "tests/golden/llama3_rope/adapter");
    check("kv_cache_prompt_tuning", "tests/golden/llama_gqa", "tests/golden/prompt_tuning/adapter");
    check("kv_cache_rank_pattern", "tests/golden/llama_gqa", "tests/golden/rank_pattern/adapter"); // per-module ranks, scales
    check("kv_cache_ia3", "tests/golden/llama_gqa", "tests/golden/ia3/adapter");
    check("kv_cache_dora", "tests/golden/qwen2_bias", "tests/golden/dora/adapter");
    check("kv_cache_bottleneck", "tests/golden/llama_gqa", "tests/golden/bottleneck/adapter");
    check("kv_cache_prefix_tuning", "tests/golden/llama_gqa", "tests/golden/prefix_tuning/adapter"); // prefilled cache
    check("kv_cache_bitfit", "tests/golden/llama_gqa", "tests/golden/bitfit/adapter");
    check("kv_cache_bitfit_qwen2", "tests/golden/qwen2_bias", "tests/golden/bitfit_qwen2/adapter");
    check("kv_cache_lora_embed", "tests/golden/qwen3_qknorm", "tests/golden/lora_embed/adapter"); // embedding + head LoRA
    check_sliding_window();
    TEST_EXIT();
}
