// Golden tests against PyTorch (llm.c's test_gpt2.c style): tests/golden/<case>/ holds a model, a PEFT
// adapter and golden.safetensors written by tests/golden/gen_golden.py (make golden). We load the same
// files through our own readers, run the forward and the backward, and compare:
//   logits within 1e-4 absolute, the loss within 1e-5 relative, every adapter gradient within 1e-4
//   relative (norm of the difference over the norm of the reference).
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "models/llama.h"
#include "models/safetensors.h"
#include "peft/peft_io.h"
#include "tests/test_util.h"

static const int32_t *ints(const dt_safetensors *g, const char *name) {
    const dt_st_tensor *t = dt_st_find(g, name);
    if (!t || t->st_dtype != DT_ST_I32) return NULL;
    int32_t *p = malloc(t->nbytes);
    memcpy(p, t->data, t->nbytes); // the mapping may be unaligned
    return p;
}

static float *floats(const dt_safetensors *g, const char *name, size_t *n) {
    const dt_st_tensor *t = dt_st_find(g, name);
    if (!t || t->st_dtype != DT_ST_F32) return NULL;
    float *p = malloc(t->nbytes);
    memcpy(p, t->data, t->nbytes);
    *n = t->nbytes / 4;
    return p;
}

static void run_case(const char *name, const char *case_dir, const char *model_path, bool checkpoint) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char path[1024], adapter_dir[1024];
    snprintf(adapter_dir, sizeof adapter_dir, "%s/adapter", case_dir);
    snprintf(path, sizeof path, "%s/golden.safetensors", case_dir);
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_safetensors *gs = NULL;
    dt_graph g = {0};
    int32_t *ids = NULL, *labels = NULL, *pos = NULL, *seq = NULL, *seg = NULL;
    float *ref_logits = NULL, *ref_loss = NULL;
    if (dt_llama_load(&ctx, model_path, dt_backend_cpu(), &m) || dt_adapter_load(&ctx, adapter_dir, m, &a) ||
        dt_st_open(&ctx, path, &gs)) {
        TEST_FAIL(name, "load: %s", ctx.msg);
        goto done;
    }
    const dt_st_tensor *it = dt_st_find(gs, "input_ids");
    int64_t B = it->shape[0], T = it->shape[1];
    ids = (int32_t *)ints(gs, "input_ids");
    labels = (int32_t *)ints(gs, "labels");
    pos = (int32_t *)ints(gs, "position_ids");
    seq = (int32_t *)ints(gs, "seq_ids");
    if (seq) { // first position of each example, from the per-position example ids
        seg = malloc((size_t)(B * T) * sizeof *seg);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                seg[b * T + t] = t > 0 && seq[b * T + t] == seq[b * T + t - 1] ? seg[b * T + t - 1] : (int32_t)t;
    }
    dt_batch batch = {B, T, ids, labels, pos, seg};
    dt_graph_init(&ctx, &g, dt_backend_cpu(), 0);
    g.checkpoint_layers = checkpoint;
    dt_llama_out out;
    if (dt_llama_forward(&ctx, &g, m, &a->view, &batch, 0, true, &out)) { TEST_FAIL(name, "forward: %s", ctx.msg); goto done; }
    size_t nl, n1;
    ref_logits = floats(gs, "logits", &nl);
    ref_loss = floats(gs, "loss", &n1);
    if (!ref_logits || nl != (size_t)dt_numel(out.logits)) { TEST_FAIL(name, "logits: shape differs from the golden file"); goto done; }
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < nl; i++) {
        double d = fabs((double)dt_f32(out.logits)[i] - ref_logits[i]);
        if (d > worst) { worst = d; wi = i; }
    }
    char label[256];
    snprintf(label, sizeof label, "%s_logits", name);
    TEST_CHECK(label, worst <= 1e-4, "max abs diff %.3g at %zu (ours %.6f, torch %.6f)", worst, wi, dt_f32(out.logits)[wi], ref_logits[wi]);
    float loss = dt_f32(out.loss)[0];
    snprintf(label, sizeof label, "%s_loss", name);
    TEST_CHECK(label, fabs(loss - ref_loss[0]) <= 1e-5 * fabs(ref_loss[0]) + 1e-6, "ours %.8f, torch %.8f", loss, ref_loss[0]);
    if (dt_graph_backward(&g, out.loss, 1.0f)) { TEST_FAIL(name, "backward: %s", ctx.msg); goto done; }
    double worst_rel = 0;
    const char *worst_name = "";
    int missing = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        char gname[512];
        snprintf(gname, sizeof gname, "grad.%s", a->names[i]);
        size_t n;
        float *ref = floats(gs, gname, &n);
        if (!ref || n != (size_t)dt_numel(&a->tensors[i])) { missing++; free(ref); continue; }
        double dd = 0, rr = 0;
        for (size_t j = 0; j < n; j++) {
            double d = (double)a->tensors[i].grad[j] - ref[j];
            dd += d * d;
            rr += (double)ref[j] * ref[j];
        }
        double rel = sqrt(dd) / (sqrt(rr) + 1e-30);
        if (rel > worst_rel) { worst_rel = rel; worst_name = a->names[i]; }
        free(ref);
    }
    snprintf(label, sizeof label, "%s_grads", name);
    TEST_CHECK(label, missing == 0 && worst_rel <= 1e-4, "%d gradients missing from the golden file; worst relative error %.3g in %s",
               missing, worst_rel, worst_name);
done:
    free(ids); free(labels); free(pos); free(seq); free(seg); free(ref_logits); free(ref_loss);
    dt_graph_free(&g);
    dt_st_close(gs);
    dt_adapter_free(a);
    dt_llama_free(m);
}

int main(void) {
    // rank_pattern: per-module ranks and alphas from PEFT's rank_pattern / alpha_pattern, read through
    // dt_adapter_load (mixed ranks in the stacked q/k/v and gate/up A's); rank_pattern_rslora: the same
    // with rsLoRA. ia3: IA3 on k/v (output) and down_proj (input), PEFT's default for Llama; dora: DoRA on Qwen2's q/v (biases) and
    // o/down; bottleneck: Houlsby adapters after attention and the MLP; prefix_tuning: PEFT's prefix as
    // past_key_values (unrotated entries, tokens' positions from n); prefix_packed: the same on packed
    // rows, each example seeing the prefix as it would alone; bitfit: new biases on Llama's q/k/o/up/down;
    // bitfit_qwen2: Qwen2's own q/k biases trained; lora_embed: LoRA on embed_tokens, q/v and lm_head of a tied
    // model (gen_methods.py).
    const char *cases[] = {"llama_gqa", "qwen2_bias", "qwen3_qknorm", "llama3_rope", "prompt_tuning", "packed",
                           "rank_pattern", "rank_pattern_rslora", "ia3", "dora", "bottleneck", "prefix_tuning",
                           "prefix_packed", "bitfit", "bitfit_qwen2", "lora_embed"};
    const char *dirs[] = {"llama_gqa", "qwen2_bias", "qwen3_qknorm", "llama3_rope", "prompt_tuning", "packed",
                          "rank_pattern", "rank_pattern/rslora", "ia3", "dora", "bottleneck", "prefix_tuning",
                          "prefix_packed", "bitfit", "bitfit_qwen2", "lora_embed"};
    char dir[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(dir, sizeof dir, "tests/golden/%s", dirs[i]);
        // Cases that reuse another case's model name it in model.txt ("model: tests/golden/llama_gqa").
        char model[512], note[600];
        snprintf(model, sizeof model, "%s", dir);
        snprintf(note, sizeof note, "%s/model.txt", dir);
        FILE *f = fopen(note, "r");
        if (f) {
            if (fscanf(f, "model: %511s", model) != 1) snprintf(model, sizeof model, "%s", dir);
            fclose(f);
        }
        run_case(cases[i], dir, model, false);
        // The same with activation checkpointing: the recomputed layers must give the same gradients.
        char ck[128];
        snprintf(ck, sizeof ck, "%s_checkpointed", cases[i]);
        run_case(ck, dir, model, true);
    }
    // The real stories260K weights, in both the Hugging Face and the llama2.c form, against one golden file.
    const char *fx = dt_test_fixtures();
    if (!fx) {
        TEST_SKIP("stories260k_hf", "../shared/fixtures is absent");
        TEST_SKIP("stories260k_llama2c", "../shared/fixtures is absent");
    } else {
        char model[1024];
        snprintf(model, sizeof model, "%s/stories260K-hf", fx);
        run_case("stories260k_hf", "tests/golden/stories260k", model, false);
        snprintf(model, sizeof model, "%s/stories260K/stories260K.bin", fx);
        run_case("stories260k_llama2c", "tests/golden/stories260k", model, false);
    }
    TEST_EXIT();
}
