// A quantized base against PyTorch (tests/golden/quant/model_golden.safetensors, made by gen_quant.py
// on the dequantized weights in float64): the llama_gqa case with its adapter and batch, on
//   q4_0: the model written as a Q4_0 GGUF by our writer (merge --format gguf --dtype q4_0) and loaded back;
//   nf4:  the f32 model with its linear weights quantized to NF4 at load (model.quantize: nf4);
// logits at the last position, loss, and the gradients of layer 0's q_proj adapter (the file keeps only
// those, to stay small), at the tolerances of the other golden cases.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "models/llama.h"
#include "models/safetensors.h"
#include "peft/merge.h"
#include "peft/peft_io.h"
#include "tests/test_util.h"

#define GOLDEN "tests/golden/quant/model_golden.safetensors"
#define GQA "tests/golden/llama_gqa"

static float *floats(const dt_safetensors *st, const char *name, size_t *n) {
    const dt_st_tensor *t = dt_st_find(st, name);
    if (!t) return NULL;
    *n = t->nbytes / 4;
    float *p = malloc(t->nbytes);
    memcpy(p, t->data, t->nbytes); // the mapping may be unaligned
    return p;
}

static void check_case(const char *kind, const char *model_path, const dt_load_opts *lo, const dt_safetensors *gs,
                       const dt_safetensors *batch) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char label[256], key[256];
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_graph g = {0};
    float *ref = NULL;
    int32_t *ids = NULL, *labels = NULL;
    if (dt_llama_load_ex(&ctx, model_path, dt_backend_cpu(), lo, &m) || dt_adapter_load(&ctx, GQA "/adapter", m, &a)) {
        TEST_FAIL(kind, "load: %s", ctx.msg);
        goto done;
    }
    const dt_st_tensor *it = dt_st_find(batch, "input_ids"), *lt = dt_st_find(batch, "labels");
    const int64_t B = it->shape[0], T = it->shape[1], V = m->cfg.vocab_size;
    ids = malloc(it->nbytes);
    labels = malloc(lt->nbytes);
    memcpy(ids, it->data, it->nbytes);
    memcpy(labels, lt->data, lt->nbytes);
    dt_batch b = {B, T, ids, labels, NULL, NULL};
    dt_graph_init(&ctx, &g, dt_backend_cpu(), 0);
    dt_llama_out out;
    if (dt_llama_forward(&ctx, &g, m, &a->view, &b, 0, true, &out)) { TEST_FAIL(kind, "forward: %s", ctx.msg); goto done; }
    size_t n;
    snprintf(key, sizeof key, "%s.logits_last", kind);
    ref = floats(gs, key, &n);
    double worst = 0;
    for (int64_t r = 0; ref && n == (size_t)(B * V) && r < B; r++)
        for (int64_t v = 0; v < V; v++) worst = fmax(worst, fabs(dt_f32(out.logits)[(r * T + T - 1) * V + v] - ref[r * V + v]));
    snprintf(label, sizeof label, "quant_golden_%s_logits", kind);
    TEST_CHECK(label, ref && n == (size_t)(B * V) && worst <= 1e-4, "max abs diff %.3g (reference %s)", worst, ref ? "present" : "missing");
    free(ref);
    snprintf(key, sizeof key, "%s.loss", kind);
    ref = floats(gs, key, &n);
    const float loss = dt_f32(out.loss)[0];
    snprintf(label, sizeof label, "quant_golden_%s_loss", kind);
    TEST_CHECK(label, ref && fabs(loss - ref[0]) <= 1e-5 * fabs(ref[0]) + 1e-6, "ours %.8f, torch %.8f", loss, ref ? ref[0] : NAN);
    free(ref);
    ref = NULL;
    if (dt_graph_backward(&g, out.loss, 1.0f)) { TEST_FAIL(kind, "backward: %s", ctx.msg); goto done; }
    int found = 0;
    double worst_rel = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        snprintf(key, sizeof key, "%s.grad.%s", kind, a->names[i]);
        float *r = floats(gs, key, &n);
        if (!r) continue;
        found += n == (size_t)dt_numel(&a->tensors[i]);
        double dd = 0, rr = 0;
        for (size_t j = 0; j < n && n == (size_t)dt_numel(&a->tensors[i]); j++) {
            double d = (double)a->tensors[i].grad[j] - r[j];
            dd += d * d;
            rr += (double)r[j] * r[j];
        }
        worst_rel = fmax(worst_rel, sqrt(dd) / (sqrt(rr) + 1e-30));
        free(r);
    }
    if (!strcmp(kind, "q4_0")) {
        snprintf(label, sizeof label, "quant_golden_%s_grads", kind);
        TEST_CHECK(label, found == 2 && worst_rel <= 1e-4, "%d of 2 reference gradients found; worst relative error %.3g", found, worst_rel);
    }
done:
    free(ids);
    free(labels);
    dt_graph_free(&g);
    dt_adapter_free(a);
    dt_llama_free(m);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *gs = NULL, *batch = NULL;
    if (dt_st_open(&ctx, GOLDEN, &gs) || dt_st_open(&ctx, GQA "/golden.safetensors", &batch)) {
        TEST_FAIL("quant_golden", "%s", ctx.msg);
        TEST_EXIT();
    }
    char dir[] = "/tmp/dt_quant_golden.XXXXXX", gg[512];
    if (!mkdtemp(dir)) { TEST_FAIL("quant_golden", "mkdtemp"); TEST_EXIT(); }
    snprintf(gg, sizeof gg, "%s/q4_0.gguf", dir);
    dt_merge_opts o = {.model = GQA, .out = gg, .dtype = DT_Q4_0, .format = DT_MERGE_GGUF, .tokenizer = "tests/data/gguf/tok_spm"};
    if (dt_merge(&ctx, &o)) TEST_FAIL("quant_golden_q4_0", "writing the Q4_0 GGUF: %s", ctx.msg);
    else check_case("q4_0", gg, NULL, gs, batch);
    const dt_load_opts nf4 = {.quantize = DT_NF4};
    check_case("nf4", GQA, &nf4, gs, batch);
    unlink(gg);
    rmdir(dir);
    dt_st_close(gs);
    dt_st_close(batch);
    TEST_EXIT();
}
