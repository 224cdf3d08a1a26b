// bitsandbytes 4-bit checkpoints: the llama_gqa model saved here as transformers saves a model loaded with
// BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
// (U8 weights of shape [n/2, 1] with their absmax / quant_map / nested_absmax / nested_quant_map /
// quant_state.bitsandbytes__nf4 companions, quantization_config in config.json) loads as an NF4 base
// whose logits equal those of the same model quantized at load (model.quantize nf4, double_quant); a
// checkpoint with a companion missing is refused naming file and tensor.
#define GQA "tests/golden/llama_gqa" // before bnb4_writer.h, which reads its config.json
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "autograd/quant.h"
#include "models/llama.h"
#include "models/llama_quant.h"
#include "tests/bnb4_writer.h"
#include "tests/test_util.h"

static float *logits(dt_ctx *ctx, dt_llama *m) {
    const int64_t T = 7, V = m->cfg.vocab_size;
    int32_t ids[7] = {3, 17, 99, 5, 64, 120, 8};
    dt_graph g;
    dt_graph_init(ctx, &g, dt_backend_cpu(), 0);
    g.grad_enabled = false;
    dt_batch b = {1, T, ids, NULL, NULL, NULL};
    dt_llama_out out;
    float *lg = NULL;
    if (!dt_llama_forward(ctx, &g, m, NULL, &b, 0, true, &out) && (lg = malloc((size_t)(T * V) * sizeof *lg)))
        memcpy(lg, dt_f32(out.logits), (size_t)(T * V) * sizeof *lg);
    dt_graph_free(&g);
    return lg;
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char dir[] = "/tmp/dt_bnb4.XXXXXX", good[256], bad[256];
    if (!mkdtemp(dir)) { TEST_FAIL("bnb4", "mkdtemp"); TEST_EXIT(); }
    snprintf(good, sizeof good, "%s/good", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    const dt_load_opts lo = {.quantize = DT_NF4, .double_quant = true};
    dt_llama *ref = NULL, *m = NULL;
    float *a = NULL, *b = NULL;
    if (dt_llama_load_ex(&ctx, GQA, dt_backend_cpu(), &lo, &ref) || !write_bnb(ref, good, NULL) || !write_bnb(ref, bad, ".quant_map") ||
        dt_llama_load(&ctx, good, dt_backend_cpu(), &m)) {
        TEST_FAIL("bnb4_load", "%s", ctx.msg);
        goto done;
    }
    TEST_CHECK("bnb4_types", m->layers[1].w[DT_MOD_DOWN].dtype == DT_NF4 && m->layers[0].w[DT_MOD_Q].aux && m->embed.dtype == DT_F32,
               "the linears should load as NF4 with their state, the rest as F32");
    a = logits(&ctx, ref);
    b = a ? logits(&ctx, m) : NULL;
    double worst = 0;
    for (int64_t i = 0; a && b && i < 7 * m->cfg.vocab_size; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    TEST_CHECK("bnb4_logits", a && b && worst == 0, "max abs logit difference %.3g to the model quantized at load", worst);
    dt_llama *x = NULL;
    int rc = dt_llama_load(&ctx, bad, dt_backend_cpu(), &x);
    TEST_CHECK("bnb4_missing_companion", rc == DT_EINPUT && strstr(ctx.msg, "model.safetensors") &&
               strstr(ctx.msg, "model.layers.0.self_attn.q_proj.weight.quant_map"), "rc %d: %s", rc, ctx.msg);
    dt_llama_free(x);
done:
    free(a);
    free(b);
    dt_llama_free(ref);
    dt_llama_free(m);
    tf_rm_tree(dir);
    TEST_EXIT();
}
