// PEFT adapters: write -> read -> write gives identical bytes; the config is PEFT's; bad adapters are
// refused naming the file and tensor; one SGD step from a non-zero adapter equals PyTorch's (1e-5);
// AdamW and SGD with momentum against a double-precision transcription of torch.optim's update.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "optim/optim.h"
#include "peft/peft_io.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static void test_round_trip(dt_ctx *ctx, const dt_llama *m) {
    dt_lora_config lc = {.r = 4, .alpha = 8, .dropout = 0.05f, .use_rslora = true};
    lc.target[DT_MOD_Q] = lc.target[DT_MOD_V] = lc.target[DT_MOD_DOWN] = true;
    bool layers[2] = {false, true};
    lc.layers = layers;
    dt_adapter *a, *b;
    char d1[] = "/tmp/dt_peft_XXXXXX", d2[] = "/tmp/dt_peft_XXXXXX";
    if (!mkdtemp(d1) || !mkdtemp(d2)) { TEST_FAIL("peft_round_trip", "mkdtemp"); return; }
    if (dt_lora_create(ctx, m, &lc, 7, &a)) { TEST_FAIL("peft_round_trip", "%s", ctx->msg); goto cleanup; }
    for (size_t i = 0; i < a->n_params; i++) a->params[i] += 0.001f * (float)(i % 13); // B non-zero too
    snprintf(a->base_model, sizeof a->base_model, "tests/golden/llama_gqa");
    int rc = dt_adapter_save(ctx, a, m, d1) || dt_adapter_load(ctx, d1, m, &b) || dt_adapter_save(ctx, b, m, d2);
    if (rc) { TEST_FAIL("peft_round_trip", "%s", ctx->msg); dt_adapter_free(a); goto cleanup; }
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, "%s/adapter_model.safetensors", d1);
    snprintf(p2, sizeof p2, "%s/adapter_model.safetensors", d2);
    TEST_CHECK("peft_round_trip_weights_identical", tf_same_file(p1, p2), "%s and %s differ", p1, p2);
    snprintf(p1, sizeof p1, "%s/adapter_config.json", d1);
    snprintf(p2, sizeof p2, "%s/adapter_config.json", d2);
    TEST_CHECK("peft_round_trip_config_identical", tf_same_file(p1, p2), "%s and %s differ", p1, p2);
    size_t n;
    char *cfg = tf_slurp(p1, &n);
    TEST_CHECK("peft_config_fields",
               cfg && strstr(cfg, "\"peft_type\": \"LORA\"") && strstr(cfg, "\"layers_to_transform\": [\n    1\n  ]") &&
                   strstr(cfg, "\"target_modules\": [\n    \"q_proj\",\n    \"v_proj\",\n    \"down_proj\"\n  ]") &&
                   strstr(cfg, "\"use_rslora\": true") && strstr(cfg, "\"lora_dropout\": 0.05") &&
                   strstr(cfg, "\"inference_mode\": true") && strstr(cfg, "\"task_type\": \"CAUSAL_LM\"") &&
                   strstr(cfg, "\"alpha_pattern\": {}") && strstr(cfg, "\"bias\": \"none\"") &&
                   strstr(cfg, "\"lora_alpha\": 8,") && strstr(cfg, "\"r\": 4,"),
               "unexpected adapter_config.json:\n%s", cfg ? cfg : "(missing)");
    // keys sorted: each key's first occurrence comes after the previous one alphabetically
    TEST_CHECK("peft_config_sorted", cfg && strstr(cfg, "\"alpha_pattern\"") < strstr(cfg, "\"base_model_name_or_path\"") &&
                                         strstr(cfg, "\"use_rslora\"") > strstr(cfg, "\"target_modules\""), "keys not sorted");
    dt_safetensors *st;
    snprintf(p1, sizeof p1, "%s/adapter_model.safetensors", d1);
    if (!dt_st_open(ctx, p1, &st)) {
        const char *fmt = dt_st_metadata(st, "format");
        const dt_st_tensor *t = dt_st_find(st, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
        TEST_CHECK("peft_weights_keys", fmt && !strcmp(fmt, "pt") && t && t->shape[0] == 4 && t->shape[1] == 64 &&
                                            dt_st_count(st) == 6 && !dt_st_find(st, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
                   "metadata/keys/shapes not as PEFT writes them");
        dt_st_close(st);
    } else TEST_FAIL("peft_weights_keys", "%s", ctx->msg);
    free(cfg);
    dt_adapter_free(a);
    dt_adapter_free(b);
cleanup:
    tf_rm_tree(d1);
    tf_rm_tree(d2);
}

static void test_bad_adapters(dt_ctx *ctx, const dt_llama *m) {
    dt_adapter *a = NULL;
    int rc = dt_adapter_load(ctx, "/nonexistent/adapter", m, &a);
    TEST_CHECK("peft_missing_folder", rc == DT_EINPUT && strstr(ctx->msg, "no adapter here"), "rc %d: %s", rc, ctx->msg);
    // An adapter made for another model (qwen3_qknorm: head_dim 32, so q_proj's lora_B is (128, r)) must be
    // refused naming the tensor.
    rc = dt_adapter_load(ctx, "tests/golden/qwen3_qknorm/adapter", m, &a);
    TEST_CHECK("peft_shape_mismatch", rc == DT_EINPUT && strstr(ctx->msg, "adapter_model.safetensors") && strstr(ctx->msg, "lora_"),
               "rc %d: %s", rc, ctx->msg);
}

static void test_sgd_golden(dt_ctx *ctx, const dt_llama *m) {
    dt_adapter *a = NULL, *after = NULL;
    dt_safetensors *gs = NULL;
    if (dt_adapter_load(ctx, "tests/golden/sgd_step/adapter", m, &a) ||
        dt_adapter_load(ctx, "tests/golden/sgd_step/adapter_after_sgd", m, &after) ||
        dt_st_open(ctx, "tests/golden/sgd_step/golden.safetensors", &gs)) {
        TEST_FAIL("sgd_step_golden", "%s", ctx->msg);
        goto done;
    }
    const dt_st_tensor *it = dt_st_find(gs, "input_ids"), *lt = dt_st_find(gs, "labels");
    int64_t B = it->shape[0], T = it->shape[1];
    int32_t *ids = malloc(it->nbytes), *labels = malloc(lt->nbytes);
    memcpy(ids, it->data, it->nbytes);
    memcpy(labels, lt->data, lt->nbytes);
    dt_batch batch = {B, T, ids, labels, NULL, NULL};
    dt_graph g;
    dt_graph_init(ctx, &g, dt_backend_cpu(), 0);
    g.training = true;
    dt_llama_out out;
    dt_optimizer opt;
    dt_optim_init(ctx, &opt, DT_OPT_SGD, a->n_params, 0, 0, 0, 0, 0);
    if (dt_llama_forward(ctx, &g, m, &a->view, &batch, 0, false, &out) || dt_graph_backward(&g, out.loss, 1.0f)) {
        TEST_FAIL("sgd_step_golden", "%s", ctx->msg);
    } else {
        dt_optim_step(&opt, a->params, a->grads, 0.1f);
        double dd = 0, rr = 0;
        for (size_t i = 0; i < a->n_params; i++) {
            double d = (double)a->params[i] - after->params[i];
            dd += d * d;
            rr += (double)after->params[i] * after->params[i];
        }
        double rel = sqrt(dd / rr);
        TEST_CHECK("sgd_step_golden", rel <= 1e-5, "relative difference %.3g after one SGD step", rel);
    }
    dt_optim_free(&opt);
    dt_graph_free(&g);
    free(ids);
    free(labels);
done:
    dt_st_close(gs);
    dt_adapter_free(a);
    dt_adapter_free(after);
}

// torch.optim.AdamW / SGD written out in double for three steps.
static void test_optimizers(dt_ctx *ctx) {
    enum { N = 37 };
    float p[N], g[N];
    double pr[N], m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++) { p[i] = (float)(pr[i] = 0.1 * (i - 18)); }
    dt_optimizer o;
    dt_optim_init(ctx, &o, DT_OPT_ADAMW, N, 0.9f, 0.95f, 1e-8f, 0.1f, 0);
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
    double worst = 0;
    for (int s = 1; s <= 3; s++) {
        for (int i = 0; i < N; i++) g[i] = (float)sin(i * 0.7 + s);
        dt_optim_step(&o, p, g, (float)lr);
        for (int i = 0; i < N; i++) {
            pr[i] *= 1 - lr * wd;
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * (double)g[i] * g[i];
            double mh = m[i] / (1 - pow(b1, s)), vh = v[i] / (1 - pow(b2, s));
            pr[i] -= lr * mh / (sqrt(vh) + eps);
            worst = fmax(worst, fabs(pr[i] - p[i]));
        }
    }
    dt_optim_free(&o);
    TEST_CHECK("adamw_matches_torch_formula", worst < 1e-6, "max abs diff %.3g", worst);
    dt_optim_init(ctx, &o, DT_OPT_SGD, N, 0, 0, 0, 0.01f, 0.9f);
    double buf[N] = {0};
    worst = 0;
    for (int i = 0; i < N; i++) p[i] = (float)(pr[i] = 0.1 * (i - 18));
    for (int s = 1; s <= 3; s++) {
        for (int i = 0; i < N; i++) g[i] = (float)cos(i * 0.3 + s);
        dt_optim_step(&o, p, g, 0.05f);
        for (int i = 0; i < N; i++) {
            double d = g[i] + 0.01 * pr[i];
            buf[i] = s == 1 ? d : 0.9 * buf[i] + d;
            pr[i] -= 0.05 * buf[i];
            worst = fmax(worst, fabs(pr[i] - p[i]));
        }
    }
    dt_optim_free(&o);
    TEST_CHECK("sgd_momentum_matches_torch_formula", worst < 1e-6, "max abs diff %.3g", worst);
    float gc[4] = {3, 4, 0, 0};
    double norm = dt_clip_grad_norm(gc, 4, 1.0);
    TEST_CHECK("clip_grad_norm", fabs(norm - 5.0) < 1e-9 && fabs(gc[0] - 0.6f) < 1e-6 && fabs(gc[1] - 0.8f) < 1e-6,
               "norm %.6f, clipped (%.6f, %.6f)", norm, gc[0], gc[1]);
}

// Adapters PEFT writes that deltatune cannot apply as they are are refused naming the cause, not applied
// differently: PiSSA / OLoRA / LoftQ / CorDA initialisation (PEFT subtracts the initial adapter from the
// base when it loads one, so W + s·B·A would be off by the initial s·B0·A0), modules_to_save (whole trained
// module copies) and an adapter saved as a pickle (safe_serialization=False).
static void test_peft_refusals(dt_ctx *ctx, const dt_llama *m) {
    char d[] = "/tmp/dt_peft_XXXXXX", path[256], bin[256];
    if (!mkdtemp(d) || !tf_copy_dir("tests/golden/llama_gqa/adapter", d)) { TEST_FAIL("peft_refusals_setup", "copy"); return; }
    snprintf(path, sizeof path, "%s/adapter_config.json", d);
    size_t n;
    char *orig = tf_slurp(path, &n), *at = orig ? strstr(orig, "\"init_lora_weights\": true") : NULL;
    char *mts = orig ? strstr(orig, "\"modules_to_save\": null") : NULL;
    if (!at || !mts) { TEST_FAIL("peft_refusals_setup", "unexpected %s", path); free(orig); tf_rm_tree(d); return; }
    static const struct { const char *value; bool refused; } inits[] = {
        {"\"pissa\"", true}, {"\"pissa_niter_4\"", true}, {"\"olora\"", true}, {"\"loftq\"", true},
        {"\"gaussian\"", false}, {"false", false},
    };
    for (size_t i = 0; i < sizeof inits / sizeof inits[0]; i++) {
        char text[8192], name[64];
        snprintf(text, sizeof text, "%.*s\"init_lora_weights\": %s%s", (int)(at - orig), orig, inits[i].value,
                 at + strlen("\"init_lora_weights\": true"));
        dt_adapter *a = NULL;
        int rc = tf_write(path, text, strlen(text)) ? dt_adapter_load(ctx, d, m, &a) : -1;
        snprintf(name, sizeof name, "peft_init_lora_weights_%s", inits[i].value[0] == '"' ? inits[i].value + 1 : inits[i].value);
        if (name[strlen(name) - 1] == '"') name[strlen(name) - 1] = 0;
        if (inits[i].refused)
            TEST_CHECK(name, rc == DT_EUNSUPPORTED && strstr(ctx->msg, "'init_lora_weights'") && strstr(ctx->msg, "base weights"),
                       "rc %d: %s", rc, rc ? ctx->msg : "loaded");
        else
            TEST_CHECK(name, rc == DT_OK, "rc %d: %s", rc, ctx->msg);
        dt_adapter_free(a);
    }
    char text[8192];
    snprintf(text, sizeof text, "%.*s\"modules_to_save\": [\"lm_head\"]%s", (int)(mts - orig), orig,
             mts + strlen("\"modules_to_save\": null"));
    dt_adapter *a = NULL;
    int rc = tf_write(path, text, strlen(text)) ? dt_adapter_load(ctx, d, m, &a) : -1;
    TEST_CHECK("peft_modules_to_save_refused", rc == DT_EUNSUPPORTED && strstr(ctx->msg, "'modules_to_save'") &&
               strstr(ctx->msg, "lm_head"), "rc %d: %s", rc, rc ? ctx->msg : "loaded");
    dt_adapter_free(a);
    a = NULL;
    tf_write(path, orig, n);
    snprintf(bin, sizeof bin, "%s/adapter_model.bin", d);
    char st[256];
    snprintf(st, sizeof st, "%s/adapter_model.safetensors", d);
    rc = rename(st, bin) == 0 ? dt_adapter_load(ctx, d, m, &a) : -1;
    TEST_CHECK("peft_pickle_adapter_refused", rc == DT_EINPUT && strstr(ctx->msg, "adapter_model.bin") &&
               strstr(ctx->msg, "safe_serialization"), "rc %d: %s", rc, rc ? ctx->msg : "loaded");
    dt_adapter_free(a);
    free(orig);
    tf_rm_tree(d);
}

// Keys of later PEFT versions that change what a LoRA computes are refused by name when set, and accepted
// at their "off" value (null, false, [] as PEFT writes them). alora_invocation_tokens loaded silently before:
// its tensors are plain LoRA ones.
static void test_peft_later_keys(dt_ctx *ctx, const dt_llama *m) {
    char d[] = "/tmp/dt_peft_XXXXXX", path[256];
    if (!mkdtemp(d) || !tf_copy_dir("tests/golden/llama_gqa/adapter", d)) { TEST_FAIL("peft_later_keys_setup", "copy"); return; }
    snprintf(path, sizeof path, "%s/adapter_config.json", d);
    json_t *cfg = json_load_file(path, 0, NULL);
    if (!cfg) { TEST_FAIL("peft_later_keys_setup", "cannot read %s", path); tf_rm_tree(d); return; }
    static const char *const keys[][3] = { // key, a value that is on, the value PEFT writes when off
        {"alora_invocation_tokens", "[32, 7]", "null"}, {"use_qalora", "true", "false"}, {"lora_bias", "true", "false"},
        {"exclude_modules", "[\"k_proj\"]", "null"}, {"layer_replication", "[[0, 2], [1, 2]]", "null"},
        {"trainable_token_indices", "[5]", "null"}, {"target_parameters", "[\"mlp.experts.gate_up_proj\"]", "null"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        for (int on = 1; on >= 0; on--) {
            char name[96];
            json_t *c = json_deep_copy(cfg);
            json_object_set_new(c, keys[i][0], json_loads(keys[i][on ? 1 : 2], JSON_DECODE_ANY, NULL));
            dt_adapter *a = NULL;
            int rc = json_dump_file(c, path, 0) == 0 ? dt_adapter_load(ctx, d, m, &a) : -1;
            json_decref(c);
            snprintf(name, sizeof name, "peft_later_key_%s_%s", keys[i][0], on ? "refused" : "off_loads");
            char want[64];
            snprintf(want, sizeof want, "'%s'", keys[i][0]);
            if (on)
                TEST_CHECK(name, rc == DT_EUNSUPPORTED && strstr(ctx->msg, want), "rc %d: %s", rc, rc ? ctx->msg : "loaded");
            else
                TEST_CHECK(name, rc == DT_OK, "rc %d: %s", rc, ctx->msg);
            dt_adapter_free(a);
        }
    json_decref(cfg);
    tf_rm_tree(d);
}

// bias "all" on a model with biases (Qwen2's q/k/v): PEFT saves the trained base biases beside the LoRA
// tensors. They are refused naming the key 'bias', not by a tensor "that does not fit the config".
static void test_peft_bias_all(dt_ctx *ctx, const dt_llama *m) {
    const char *name = "peft_bias_all_refused_by_key";
    char d[] = "/tmp/dt_peft_XXXXXX", path[256];
    dt_adapter *a = NULL, *b = NULL;
    if (!mkdtemp(d) || !tf_copy_dir("tests/golden/llama_gqa/adapter", d) || dt_adapter_load(ctx, d, m, &a)) {
        TEST_FAIL(name, "setup: %s", ctx->msg);
        tf_rm_tree(d);
        return;
    }
    snprintf(path, sizeof path, "%s/adapter_config.json", d);
    json_t *cfg = json_load_file(path, 0, NULL);
    if (cfg) json_object_set_new(cfg, "bias", json_string("all"));
    float bias[64] = {0.5f};
    dt_st_writer *w = NULL;
    int rc = cfg && json_dump_file(cfg, path, 0) == 0 ? dt_st_writer_init(ctx, &w) : -1;
    for (int i = 0; i < a->n_tensors && !rc; i++)
        rc = dt_st_writer_add(ctx, w, a->names[i], DT_F32, a->tensors[i].ndim, a->tensors[i].shape, a->tensors[i].data);
    if (!rc) rc = dt_st_writer_add(ctx, w, "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias", DT_F32, 1,
                                   (int64_t[]){64}, bias);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", d);
    if (!rc) rc = dt_st_writer_write(ctx, w, path);
    if (rc) {
        TEST_FAIL(name, "setup: %s", ctx->msg);
    } else {
        rc = dt_adapter_load(ctx, d, m, &b);
        TEST_CHECK(name, rc == DT_EUNSUPPORTED && strstr(ctx->msg, "key 'bias'") && strstr(ctx->msg, "q_proj.base_layer.bias"),
                   "rc %d: %s", rc, rc ? ctx->msg : "loaded");
    }
    dt_st_writer_free(w);
    json_decref(cfg);
    dt_adapter_free(a);
    dt_adapter_free(b);
    tf_rm_tree(d);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_llama *m;
    if (dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m)) { TEST_FAIL("load", "%s", ctx.msg); TEST_EXIT(); }
    test_round_trip(&ctx, m);
    test_bad_adapters(&ctx, m);
    test_peft_refusals(&ctx, m);
    test_peft_later_keys(&ctx, m);
    test_peft_bias_all(&ctx, m);
    test_sgd_golden(&ctx, m);
    test_optimizers(&ctx);
    char buf[256];
    dt_adapter *a;
    dt_lora_config lc = {.r = 4, .alpha = 8};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    dt_lora_create(&ctx, m, &lc, 1, &a);
    dt_adapter_param_summary(a, m, buf, sizeof buf);
    // 2 layers x (q 4*(64+64) + k 4*(64+32) + v 4*(64+32) + o 4*(64+64) + gate/up/down 3 * 4*(64+96)) = 7424;
    // base: embed 8192 + lm_head 8192 + 2 x 30848 + final norm 64 = 78144
    TEST_CHECK("trainable_params_line", strstr(buf, "trainable params: 7424 || all params: 85568 || trainable%: 8.6761"), "%s", buf);
    dt_adapter_free(a);
    dt_llama_free(m);
    TEST_EXIT();
}
