// The delta-tuning methods beyond the golden forward/backward (test_golden): PEFT-format round trips,
// merge against PyTorch's logits, LoRA+ learning rates, and bad input (exit 2 with the file and key).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "models/weights.h"
#include "optim/optim.h"
#include "models/gguf.h"
#include "peft/bitfit.h"
#include "peft/export_gguf.h"
#include "peft/merge.h"
#include "peft/peft_io.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];
static dt_ctx ctx;

// write -> read -> write of an adapter gives the same two files, byte for byte; with same_as_source,
// the first write is also byte for byte the PEFT-layout file it was read from.
static void test_roundtrip(const char *label, const char *model, const char *adapter, bool same_as_source) {
    dt_llama *m = NULL;
    dt_adapter *a = NULL, *b = NULL;
    char out1[256], out2[256], x[512], y[512], z[512];
    snprintf(out1, sizeof out1, "%s/%s_1", tmp, label);
    snprintf(out2, sizeof out2, "%s/%s_2", tmp, label);
    if (dt_llama_load(&ctx, model, dt_backend_cpu(), &m) || dt_adapter_load(&ctx, adapter, m, &a) ||
        dt_adapter_save(&ctx, a, m, out1) || dt_adapter_load(&ctx, out1, m, &b) || dt_adapter_save(&ctx, b, m, out2)) {
        TEST_FAIL(label, "%s", ctx.msg);
    } else {
        bool same = true, source = true;
        const char *files[] = {"adapter_config.json", "adapter_model.safetensors"};
        for (int i = 0; i < 2; i++) {
            snprintf(x, sizeof x, "%s/%s", out1, files[i]);
            snprintf(y, sizeof y, "%s/%s", out2, files[i]);
            snprintf(z, sizeof z, "%s/%s", adapter, files[i]);
            same &= tf_same_file(x, y);
            source &= tf_same_file(x, z);
        }
        TEST_CHECK(label, same && (source || !same_as_source), "%s", same ? "the first write differs from the source" : "the two writes differ");
    }
    dt_adapter_free(a);
    dt_adapter_free(b);
    dt_llama_free(m);
}

// Logits (B, T, V) of the training forward of a model folder, no adapter.
static float *logits_of(const char *model, const int32_t *ids, int64_t B, int64_t T, size_t *n) {
    dt_llama *m = NULL;
    dt_graph g = {0};
    float *out = NULL;
    if (dt_llama_load(&ctx, model, dt_backend_cpu(), &m)) return NULL;
    dt_batch batch = {B, T, ids, NULL, NULL, NULL};
    dt_llama_out o;
    if (!dt_graph_init(&ctx, &g, dt_backend_cpu(), 0) && !dt_llama_forward(&ctx, &g, m, NULL, &batch, 0, true, &o)) {
        *n = (size_t)dt_numel(o.logits);
        out = malloc(*n * sizeof(float));
        memcpy(out, o.logits->data, *n * sizeof(float));
    }
    dt_graph_free(&g);
    dt_llama_free(m);
    return out;
}

// Merged into the weights, the adapter gives PyTorch's base + adapter logits (the golden file's).
static void test_merge(const char *label, const char *model, const char *case_dir) {
    char adapter[256], golden[256], out[256];
    snprintf(adapter, sizeof adapter, "%s/adapter", case_dir);
    snprintf(golden, sizeof golden, "%s/golden.safetensors", case_dir);
    snprintf(out, sizeof out, "%s/%s_merged", tmp, label);
    dt_merge_adapter ad = {adapter, 1.0f};
    dt_merge_opts o = {.model = model, .adapters = &ad, .n_adapters = 1, .out = out, .dtype = -1, .format = DT_MERGE_HF};
    dt_safetensors *st = NULL;
    if (dt_merge(&ctx, &o) || dt_st_open(&ctx, golden, &st)) { TEST_FAIL(label, "%s", ctx.msg); dt_st_close(st); return; }
    const dt_st_tensor *it = dt_st_find(st, "input_ids"), *lt = dt_st_find(st, "logits");
    int32_t *ids = malloc(it->nbytes);
    float *ref = malloc(lt->nbytes);
    memcpy(ids, it->data, it->nbytes); // the mapping may be unaligned
    memcpy(ref, lt->data, lt->nbytes);
    size_t n = 0;
    float *got = logits_of(out, ids, it->shape[0], it->shape[1], &n);
    double d = got && n == lt->nbytes / 4 ? 0 : INFINITY;
    for (size_t i = 0; got && i < n; i++) d = fmax(d, fabs((double)got[i] - ref[i]));
    TEST_CHECK(label, d <= 1e-4, "max |merged - PyTorch base+adapter| = %.3g (%s)", d, got ? "" : ctx.msg);
    free(got);
    free(ids);
    free(ref);
    dt_st_close(st);
}

// LoRA+: the lora_B elements get the ratio, and an AdamW step with those multipliers moves each element
// as a step at lr * multiplier would.
static void test_loraplus(void) {
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    if (dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m) ||
        dt_adapter_load(&ctx, "tests/golden/llama_gqa/adapter", m, &a)) {
        TEST_FAIL("loraplus_mult", "%s", ctx.msg);
        dt_llama_free(m);
        return;
    }
    const size_t n = a->n_params;
    float *mult = malloc(n * sizeof(float)), *p1 = malloc(n * sizeof(float)), *p2 = malloc(n * sizeof(float));
    float *g = malloc(n * sizeof(float));
    int rc = dt_lora_plus_lr_mult(&ctx, a, 16.0f, mult);
    size_t b_elems = 0, ones = 0;
    for (int i = 0; i < a->n_tensors; i++)
        if (strstr(a->names[i], "lora_B")) b_elems += (size_t)dt_numel(&a->tensors[i]);
    for (size_t i = 0; i < n; i++) ones += mult[i] == 1.0f;
    size_t sixteens = 0;
    for (size_t i = 0; i < n; i++) sixteens += mult[i] == 16.0f;
    TEST_CHECK("loraplus_mult", !rc && sixteens == b_elems && ones == n - b_elems && b_elems > 0,
               "rc %d: %zu elements at 16 (want the %zu of lora_B), %zu at 1", rc, sixteens, b_elems, ones);
    // Two optimizers from the same start: one with the multipliers, one stepping each group at its own lr.
    for (size_t i = 0; i < n; i++) { p1[i] = p2[i] = a->params[i]; g[i] = (float)sin((double)i); }
    dt_optimizer o1, o2a, o2b;
    dt_optim_init(&ctx, &o1, DT_OPT_ADAMW, n, 0.9f, 0.999f, 1e-8f, 0.01f, 0);
    dt_optim_init(&ctx, &o2a, DT_OPT_ADAMW, n, 0.9f, 0.999f, 1e-8f, 0.01f, 0);
    dt_optim_init(&ctx, &o2b, DT_OPT_ADAMW, n, 0.9f, 0.999f, 1e-8f, 0.01f, 0);
    dt_optim_set_lr_mult(&ctx, &o1, mult);
    float *q = malloc(n * sizeof(float));
    double worst = 0;
    for (int step = 0; step < 3; step++) {
        dt_optim_step(&o1, p1, g, 1e-3f);
        memcpy(q, p2, n * sizeof(float));
        dt_optim_step(&o2a, p2, g, 1e-3f);  // the A group
        dt_optim_step(&o2b, q, g, 16e-3f);  // the B group
        for (size_t i = 0; i < n; i++) if (mult[i] != 1.0f) p2[i] = q[i];
        // o2b's moments of the A elements are not used; both optimizers see the same gradients.
    }
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)p1[i] - p2[i]));
    TEST_CHECK("loraplus_adamw_groups", worst <= 1e-7, "max difference %.3g", worst);
    dt_optim_free(&o1);
    dt_optim_free(&o2a);
    dt_optim_free(&o2b);
    free(q);
    free(mult);
    free(p1);
    free(p2);
    free(g);
    dt_adapter_free(a);
    dt_llama_free(m);
}

// Logits (B, T, V) of model + adapter (adapter NULL: the model alone).
static float *logits_with(dt_llama *m, const dt_adapter *a, const int32_t *ids, int64_t B, int64_t T, size_t *n) {
    dt_graph g = {0};
    float *out = NULL;
    dt_batch batch = {B, T, ids, NULL, NULL, NULL};
    dt_llama_out o;
    if (!dt_graph_init(&ctx, &g, dt_backend_cpu(), 0) && !dt_llama_forward(&ctx, &g, m, a ? &a->view : NULL, &batch, 0, true, &o)) {
        *n = (size_t)dt_numel(o.logits);
        out = malloc(*n * sizeof(float));
        memcpy(out, o.logits->data, *n * sizeof(float));
    }
    dt_graph_free(&g);
    return out;
}

// BitFit on a Llama without biases, q/k/v/o: the merge creates every attention bias (v's from zeros: v is
// not trained here), sets attention_bias, and the merged model gives the adapter's logits.
static void test_bitfit_merge_new_biases(void) {
    const char *label = "merge_bitfit_llama_new_biases";
    dt_llama *m = NULL, *mm = NULL;
    dt_adapter *a = NULL;
    char dir[256], out[256], cfgp[300];
    snprintf(dir, sizeof dir, "%s/bitfit_qko", tmp);
    snprintf(out, sizeof out, "%s/bitfit_qko_merged", tmp);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", out);
    const bool target[DT_MOD_COUNT] = {true, true, false, true};
    if (dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m) || dt_bitfit_create(&ctx, m, target, "test", &a)) {
        TEST_FAIL(label, "%s", ctx.msg);
        dt_llama_free(m);
        return;
    }
    for (size_t i = 0; i < a->n_params; i++) a->params[i] = (float)(0.3 * sin(1.7 * (double)i));
    dt_merge_adapter ad = {dir, 1.0f};
    dt_merge_opts o = {.model = "tests/golden/llama_gqa", .adapters = &ad, .n_adapters = 1, .out = out, .dtype = -1,
                       .format = DT_MERGE_HF};
    int32_t ids[2 * 9];
    for (int i = 0; i < 18; i++) ids[i] = (i * 37 + 5) % 128;
    size_t n1 = 0, n2 = 0, n0 = 0;
    float *want = NULL, *got = NULL, *base = NULL;
    if (dt_adapter_save(&ctx, a, m, dir) || dt_merge(&ctx, &o) || dt_llama_load(&ctx, out, dt_backend_cpu(), &mm)) {
        TEST_FAIL(label, "%s", ctx.msg);
    } else {
        want = logits_with(m, a, ids, 2, 9, &n1);
        base = logits_with(m, NULL, ids, 2, 9, &n0);
        got = logits_with(mm, NULL, ids, 2, 9, &n2);
        double d = want && got && n1 == n2 ? 0 : INFINITY, effect = 0;
        for (size_t i = 0; want && got && base && i < n1 && n1 == n2; i++) {
            d = fmax(d, fabs((double)got[i] - want[i]));
            effect = fmax(effect, fabs((double)base[i] - want[i]));
        }
        char *cfg = tf_slurp(cfgp, NULL);
        TEST_CHECK(label, d <= 1e-5 && effect > 1e-2 && mm->cfg.attention_bias && mm->layers[1].o_bias.data && cfg &&
                   strstr(cfg, "\"attention_bias\": true"),
                   "max |merged - adapter| = %.3g, adapter effect %.3g, attention_bias %d, o_proj bias %s", d, effect,
                   mm->cfg.attention_bias, mm->layers[1].o_bias.data ? "loaded" : "missing");
        free(cfg);
    }
    free(want);
    free(got);
    free(base);
    dt_adapter_free(a);
    dt_llama_free(m);
    dt_llama_free(mm);
}

// A tied model merged with an embedding/head LoRA is untied: lm_head.weight written, tie_word_embeddings false.
static void test_untie(void) {
    char out[256], cfgp[300];
    snprintf(out, sizeof out, "%s/merge_lora_embed_vs_pytorch_merged/config.json", tmp);
    snprintf(cfgp, sizeof cfgp, "%s", out);
    char *cfg = tf_slurp(cfgp, NULL);
    dt_llama *mm = NULL;
    snprintf(out, sizeof out, "%s/merge_lora_embed_vs_pytorch_merged", tmp);
    int rc = dt_llama_load(&ctx, out, dt_backend_cpu(), &mm);
    TEST_CHECK("merge_lora_embed_unties", cfg && strstr(cfg, "\"tie_word_embeddings\": false") && !rc && !mm->cfg.tie_word_embeddings &&
               mm->lm_head.data != mm->embed.data, "config %s, load: %s", cfg ? "read" : "missing", rc ? ctx.msg : "ok");
    free(cfg);
    dt_llama_free(mm);
}

// A tied model whose checkpoint also stores lm_head.weight (transformers ignores it and ties the head to
// the embedding; deltatune's loader does the same): merging an embedding/head LoRA unties it, and the
// head written must be the embedding plus the head's LoRA, once. The stored copy here is deliberately
// not the embedding (2x), so a merge that took it, or wrote lm_head.weight twice, fails.
static void test_untie_stored_head(void) {
    const char *label = "merge_lora_embed_unties_stored_lm_head";
    char base[256], path[300], out_ref[256], out[256];
    snprintf(base, sizeof base, "%s/tied_stored_head", tmp);
    snprintf(out_ref, sizeof out_ref, "%s/tied_ref_merged", tmp);
    snprintf(out, sizeof out, "%s/tied_stored_head_merged", tmp);
    snprintf(path, sizeof path, "%s/model.safetensors", base);
    mkdir(base, 0755);
    tf_copy_dir("tests/golden/qwen3_qknorm", base);
    dt_safetensors *st = NULL;
    dt_st_writer *w = NULL;
    float *head = NULL;
    int rc = dt_st_open(&ctx, "tests/golden/qwen3_qknorm/model.safetensors", &st);
    if (!rc) rc = dt_st_writer_init(&ctx, &w);
    if (!rc) rc = dt_st_writer_set_metadata(&ctx, w, "format", "pt");
    for (size_t i = 0; !rc && i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        rc = dt_st_writer_add(&ctx, w, t->name, t->dtype, t->ndim, t->shape, t->data);
        if (!rc && !strcmp(t->name, "model.embed_tokens.weight")) {
            const size_t n = (size_t)(t->shape[0] * t->shape[1]);
            if (!(head = malloc(n * sizeof *head)) || t->dtype != DT_F32) { rc = DT_ENOMEM; break; }
            for (size_t k = 0; k < n; k++) head[k] = 2.0f * ((const float *)t->data)[k];
            rc = dt_st_writer_add(&ctx, w, "lm_head.weight", DT_F32, 2, t->shape, head);
        }
    }
    if (!rc) rc = dt_st_writer_write(&ctx, w, path);
    dt_st_writer_free(w);
    free(head);
    dt_st_close(st);
    if (rc) { TEST_FAIL(label, "setup: %s", ctx.msg); return; }
    const dt_merge_adapter ad = {"tests/golden/lora_embed/adapter", 1.0f};
    dt_merge_opts o = {.model = "tests/golden/qwen3_qknorm", .adapters = &ad, .n_adapters = 1, .out = out_ref, .dtype = DT_F32};
    rc = dt_merge(&ctx, &o);
    o.model = base;
    o.out = out;
    if (!rc) rc = dt_merge(&ctx, &o);
    dt_weights *a = NULL, *b = NULL;
    dt_model_config ca, cb;
    if (!rc) rc = dt_weights_open(&ctx, out_ref, &ca, &a);
    if (!rc) rc = dt_weights_open(&ctx, out, &cb, &b);
    const dt_st_tensor *ha = rc ? NULL : dt_weights_find(a, "lm_head.weight"), *hb = rc ? NULL : dt_weights_find(b, "lm_head.weight");
    TEST_CHECK(label, !rc && ha && hb && ha->nbytes == hb->nbytes && !memcmp(ha->data, hb->data, ha->nbytes) && !cb.tie_word_embeddings,
               "%s", rc ? ctx.msg : "the merged lm_head differs from the one merged from the base without the stored copy");
    dt_weights_close(a);
    dt_weights_close(b);
}

// An adapter as PEFT saves it with embed_tokens targeted: with copies of the base layers (which must be
// the base's own) beside the LoRA tensors; it gives the golden logits.
static void test_peft_base_copies(void) {
    const char *label = "lora_embed_peft_base_copies";
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_safetensors *st = NULL;
    if (dt_llama_load(&ctx, "tests/golden/qwen3_qknorm", dt_backend_cpu(), &m) ||
        dt_adapter_load(&ctx, "tests/golden/lora_embed/adapter_peft", m, &a) ||
        dt_st_open(&ctx, "tests/golden/lora_embed/golden.safetensors", &st)) {
        TEST_FAIL(label, "%s", ctx.msg);
    } else {
        const dt_st_tensor *it = dt_st_find(st, "input_ids"), *lt = dt_st_find(st, "logits");
        int32_t *ids = malloc(it->nbytes);
        float *ref = malloc(lt->nbytes);
        memcpy(ids, it->data, it->nbytes);
        memcpy(ref, lt->data, lt->nbytes);
        size_t n = 0;
        float *got = logits_with(m, a, ids, it->shape[0], it->shape[1], &n);
        double d = got && n == lt->nbytes / 4 ? 0 : INFINITY;
        for (size_t i = 0; got && i < n; i++) d = fmax(d, fabs((double)got[i] - ref[i]));
        TEST_CHECK(label, d <= 1e-4, "max |logits - PyTorch| = %.3g", d);
        free(got);
        free(ids);
        free(ref);
    }
    dt_st_close(st);
    dt_adapter_free(a);
    dt_llama_free(m);
}

// GGUF export of LoRA on the embedding and the head of an untied model, in llama.cpp's layout (checked in
// llama.cpp itself by hand, see the report in recipes/README.md): token_embd's lora_a is lora_embedding_A
// transposed, ggml ne {r, V}; its lora_b is lora_embedding_B as it is, ne {r, D}; output's pair as any linear.
static void test_export_embed_head(void) {
    const char *label = "export_lora_embed_head_layout";
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_gguf_file *f = NULL;
    char dir[256], out[300];
    snprintf(dir, sizeof dir, "%s/embed_head_untied", tmp);
    snprintf(out, sizeof out, "%s/embed_head_untied.gguf", tmp);
    dt_lora_config lc = {.r = 4, .alpha = 8, .embed_tokens = true, .lm_head = true};
    lc.target[DT_MOD_Q] = true;
    int rc = dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m);
    if (!rc) rc = dt_lora_create(&ctx, m, &lc, 7, &a);
    for (size_t i = 0; !rc && i < a->n_params; i++) a->params[i] = (float)sin(0.37 * (double)i);
    if (!rc) rc = dt_adapter_save(&ctx, a, m, dir);
    if (!rc) rc = dt_export_lora_gguf(&ctx, dir, "tests/golden/llama_gqa", out, NULL);
    if (!rc) rc = dt_gguf_open(&ctx, out, &f);
    if (rc) {
        TEST_FAIL(label, "%s", ctx.msg);
    } else {
        const dt_gguf_tensor *ea = dt_gguf_find_tensor(f, "token_embd.weight.lora_a"), *eb = dt_gguf_find_tensor(f, "token_embd.weight.lora_b");
        const dt_gguf_tensor *ha = dt_gguf_find_tensor(f, "output.weight.lora_a"), *hb = dt_gguf_find_tensor(f, "output.weight.lora_b");
        dt_tensor va = {0}, vb = {0}, vha = {0};
        bool ok = ea && eb && ha && hb && ea->ne[0] == 4 && ea->ne[1] == 128 && eb->ne[0] == 4 && eb->ne[1] == 64 &&
                  ha->ne[0] == 64 && ha->ne[1] == 4 && hb->ne[0] == 4 && hb->ne[1] == 128 &&
                  !dt_gguf_tensor_view(&ctx, f, ea, &va) && !dt_gguf_tensor_view(&ctx, f, eb, &vb) &&
                  !dt_gguf_tensor_view(&ctx, f, ha, &vha);
        double d = ok ? 0 : INFINITY;
        const float *A = dt_f32(a->embed_ref.A), *B = dt_f32(a->embed_ref.B), *HA = dt_f32(a->head_ref.A);
        for (int64_t v = 0; ok && v < 128; v++)
            for (int64_t k = 0; k < 4; k++) d = fmax(d, fabs((double)dt_f32(&va)[v * 4 + k] - A[k * 128 + v]));
        for (int64_t i = 0; ok && i < 64 * 4; i++) d = fmax(d, fabs((double)dt_f32(&vb)[i] - B[i]) + fabs((double)dt_f32(&vha)[i] - HA[i]));
        TEST_CHECK(label, ok && d == 0, "shapes %s, max difference %g", ok ? "as expected" : "wrong or missing", d);
    }
    dt_gguf_close(f);
    dt_adapter_free(a);
    dt_llama_free(m);
}

// `deltatune train` from a recipe with only the method section changed: BitFit, and LoRA on embed_tokens and
// lm_head; a few steps lower the loss (metrics.jsonl's first and last) and the adapter holds the method's keys.
static void test_train_cli(const char *label, const char *method, const char *want_key) {
    char dir[256], args[1024], out[300], path[320];
    snprintf(dir, sizeof dir, "%s/%s_run", tmp, label);
    snprintf(out, sizeof out, "%s/%s_out.txt", tmp, label);
    snprintf(args, sizeof args, "train recipes/stories260k-lora.yaml model.path=tests/golden/llama_gqa "
             "data.train=tests/data/train/tokens.jsonl data.val=null data.packing=false data.max_seq_len=32 train.max_steps=12 "
             "train.batch_size=4 train.optimizer.lr=5e-2 train.lr_scheduler.warmup_steps=0 train.log_every_n_steps=1 "
             "train.eval_every_n_steps=0 train.save_every_n_steps=0 hardware.threads=1 hardware.dtype=f32 '%s' output_dir=%s",
             method, dir);
    int rc = tf_run(args, out);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    size_t n = 0;
    char *st = tf_slurp(path, &n);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *metrics = tf_slurp(path, NULL);
    double first = NAN, last = NAN;
    for (const char *p = metrics ? strstr(metrics, "\"loss\":") : NULL; p; p = strstr(p + 1, "\"loss\":")) {
        double v = atof(p + 7);
        if (isnan(first)) first = v;
        last = v;
    }
    char *msg = tf_slurp(out, NULL);
    TEST_CHECK(label, rc == 0 && st && memmem(st, n, want_key, strlen(want_key)) && last < first,
               "exit %d, key %s %s, loss %g -> %g; %s", rc, want_key, st && memmem(st, n, want_key, strlen(want_key)) ? "found" : "missing",
               first, last, msg ? msg : "");
    free(msg);
    free(st);
    free(metrics);
}

// An adapter PEFT 0.13.2 wrote itself (tests/data/peft_written, README there) gives, through our forward,
// the logits PEFT gave for the same tokens (peft_check.py --logits: the first row, (T, V) f32).
static void test_peft_logits(const char *label, const char *adapter, const char *logits_file) {
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_graph g = {0};
    size_t nb = 0;
    float *ref = (float *)tf_slurp(logits_file, &nb);
    const int32_t ids[] = {1, 17, 93, 4, 55, 120, 8, 33, 71, 2}; // tests/data/peft_written/tokens.jsonl
    const int64_t T = 10;
    dt_batch batch = {1, T, ids, NULL, NULL, NULL};
    dt_llama_out o;
    if (!ref || dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m) || dt_adapter_load(&ctx, adapter, m, &a) ||
        dt_graph_init(&ctx, &g, dt_backend_cpu(), 0) || dt_llama_forward(&ctx, &g, m, &a->view, &batch, 0, true, &o)) {
        TEST_FAIL(label, "%s", ref ? ctx.msg : "cannot read the reference logits");
    } else {
        double d = nb == (size_t)dt_numel(o.logits) * sizeof(float) ? 0 : INFINITY;
        for (size_t i = 0; isfinite(d) && i < nb / sizeof(float); i++) d = fmax(d, fabs((double)dt_f32(o.logits)[i] - ref[i]));
        TEST_CHECK(label, d <= 1e-4, "max |ours - PEFT| logit difference %.3g (%zu reference bytes)", d, nb);
    }
    dt_graph_free(&g);
    dt_adapter_free(a);
    dt_llama_free(m);
    free(ref);
}

// The loss of the DoRA golden batch in training mode (dropout as the adapter's refs say, masks from seed 99),
// after a backward when grad (the adapter's gradients then hold it); logits into *logits when not NULL.
static double dora_train_loss(dt_llama *m, dt_adapter *a, dt_safetensors *gs, bool grad, bool checkpoint, float **logits) {
    const dt_st_tensor *it = dt_st_find(gs, "input_ids"), *lt = dt_st_find(gs, "labels");
    int32_t *ids = malloc(it->nbytes), *labels = malloc(lt->nbytes);
    memcpy(ids, it->data, it->nbytes);
    memcpy(labels, lt->data, lt->nbytes);
    dt_graph g = {0};
    dt_batch batch = {it->shape[0], it->shape[1], ids, labels, NULL, NULL};
    dt_llama_out o;
    double loss = NAN;
    dt_adapter_zero_grad(a);
    if (!dt_graph_init(&ctx, &g, dt_backend_cpu(), 0)) {
        g.training = true;
        g.grad_enabled = grad;
        g.checkpoint_layers = checkpoint;
        g.dropout_seed = 99;
        if (!dt_llama_forward(&ctx, &g, m, &a->view, &batch, 0, logits != NULL, &o) && (!grad || !dt_graph_backward(&g, o.loss, 1.0f))) {
            loss = o.loss_sum / (double)o.n_targets;
            if (logits) {
                *logits = malloc((size_t)dt_numel(o.logits) * sizeof(float));
                memcpy(*logits, o.logits->data, (size_t)dt_numel(o.logits) * sizeof(float));
            }
        }
    }
    dt_graph_free(&g);
    free(ids);
    free(labels);
    return loss;
}

// LoRA+ with DoRA: PEFT 0.13.2's create_loraplus_optimizer puts a parameter in the lr * ratio group
// when "lora_B" is in its name or it is 1-D, so lora_magnitude_vector trains at lr * ratio too (seen
// end to end: 4 AdamW steps of stories260K-hf, ratio 4, against PEFT + torch.optim.AdamW, the adapter
// differed by 0.074 with the magnitudes at lr; within f32 noise with them at lr * ratio).
static void test_loraplus_dora(void) {
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    if (dt_llama_load(&ctx, "tests/golden/qwen2_bias", dt_backend_cpu(), &m) ||
        dt_adapter_load(&ctx, "tests/golden/dora/adapter", m, &a)) {
        TEST_FAIL("loraplus_dora_mult", "%s", ctx.msg);
        dt_llama_free(m);
        return;
    }
    float *mult = malloc(a->n_params * sizeof(float));
    int rc = dt_lora_plus_lr_mult(&ctx, a, 16.0f, mult);
    size_t wrong = 0, mags = 0;
    for (int i = 0; !rc && i < a->n_tensors; i++) {
        const dt_tensor *t = &a->tensors[i];
        const bool mag = strstr(a->names[i], "lora_magnitude_vector") != NULL;
        const float want = mag || strstr(a->names[i], "lora_B") ? 16.0f : 1.0f;
        mags += mag;
        for (int64_t e = 0; e < dt_numel(t); e++) wrong += mult[dt_f32(t) - a->params + e] != want;
    }
    TEST_CHECK("loraplus_dora_mult", !rc && mags > 0 && wrong == 0,
               "rc %d: %zu magnitude vectors, %zu elements with another multiplier than PEFT's groups", rc, mags, wrong);
    free(mult);
    dt_adapter_free(a);
    dt_llama_free(m);
}

// DoRA trained with dropout takes PEFT's path (peft/dora.c: the base on x, DoRA's term on the dropped-out
// input). At p = 1e-9 (the path taken, its mask keeping everything) it must give PyTorch's DoRA logits and
// gradients of the golden case, also with activation checkpointing; at p = 0.3 the magnitudes' gradients
// (the norm does not depend on them) must match finite differences of the loss with the same masks, which
// also checks the gradient the later layers' dropout paths send back to the earlier ones.
static void test_dora_dropout(void) {
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_safetensors *gs = NULL;
    if (dt_llama_load(&ctx, "tests/golden/qwen2_bias", dt_backend_cpu(), &m) ||
        dt_adapter_load(&ctx, "tests/golden/dora/adapter", m, &a) || dt_st_open(&ctx, "tests/golden/dora/golden.safetensors", &gs)) {
        TEST_FAIL("dora_dropout_setup", "%s", ctx.msg);
        dt_llama_free(m);
        dt_adapter_free(a);
        return;
    }
    const int nref = m->cfg.num_layers * DT_MOD_COUNT;
    for (int ck = 0; ck < 2; ck++) {
        for (int k = 0; k < nref; k++) a->refs[k].dropout = a->ref_ptrs[k] ? 1e-9f : 0.0f;
        float *logits = NULL;
        double loss = dora_train_loss(m, a, gs, true, ck, &logits);
        const dt_st_tensor *lt = dt_st_find(gs, "logits"), *ls = dt_st_find(gs, "loss");
        float ref_loss;
        memcpy(&ref_loss, ls->data, sizeof ref_loss);
        double dl = logits ? 0 : INFINITY, worst = 0;
        for (int64_t i = 0; logits && i < (int64_t)(lt->nbytes / 4); i++) {
            float r;
            memcpy(&r, (const char *)lt->data + 4 * i, 4);
            dl = fmax(dl, fabs((double)logits[i] - r));
        }
        for (int i = 0; i < a->n_tensors; i++) {
            char gname[512];
            snprintf(gname, sizeof gname, "grad.%s", a->names[i]);
            const dt_st_tensor *rt = dt_st_find(gs, gname);
            double dd = 0, rr = 0;
            for (int64_t j = 0; rt && j < dt_numel(&a->tensors[i]); j++) {
                float r;
                memcpy(&r, (const char *)rt->data + 4 * j, 4);
                dd += ((double)a->tensors[i].grad[j] - r) * ((double)a->tensors[i].grad[j] - r);
                rr += (double)r * r;
            }
            worst = fmax(worst, rt ? sqrt(dd) / (sqrt(rr) + 1e-30) : INFINITY);
        }
        TEST_CHECK(ck ? "dora_dropout_path_vs_pytorch_checkpointed" : "dora_dropout_path_vs_pytorch",
                   dl <= 1e-4 && fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss) && worst <= 1e-4,
                   "max logit difference %.3g, loss %.7f vs %.7f, worst gradient %.3g", dl, loss, ref_loss, worst);
        free(logits);
    }
    for (int k = 0; k < nref; k++) a->refs[k].dropout = a->ref_ptrs[k] ? 0.3f : 0.0f;
    double base = dora_train_loss(m, a, gs, true, false, NULL), worst = 0, biggest = 0;
    float *grad = malloc(a->n_params * sizeof(float));
    memcpy(grad, a->grads, a->n_params * sizeof(float));
    double plain = 0;
    { // the same parameters without dropout: the path must change the loss
        for (int k = 0; k < nref; k++) a->refs[k].dropout = 0.0f;
        plain = dora_train_loss(m, a, gs, false, false, NULL);
        for (int k = 0; k < nref; k++) a->refs[k].dropout = a->ref_ptrs[k] ? 0.3f : 0.0f;
    }
    int checked = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        if (!strstr(a->names[i], "lora_magnitude_vector")) continue;
        float *v = dt_f32(&a->tensors[i]);
        const size_t off = (size_t)(v - a->params);
        for (int64_t j = 0; j < dt_numel(&a->tensors[i]); j += 7) { // a sample of entries of every vector
            const float keep = v[j], eps = 1e-2f * (fabsf(keep) > 1 ? fabsf(keep) : 1);
            v[j] = keep + eps;
            const double up = dora_train_loss(m, a, gs, false, false, NULL);
            v[j] = keep - eps;
            const double down = dora_train_loss(m, a, gs, false, false, NULL);
            v[j] = keep;
            const double fd = (up - down) / (2.0 * (double)eps);
            worst = fmax(worst, fabs(fd - grad[off + (size_t)j]));
            biggest = fmax(biggest, fabs(fd));
            checked++;
        }
    }
    TEST_CHECK("dora_dropout_magnitude_grads_vs_finite_differences",
               checked > 0 && isfinite(base) && fabs(base - plain) > 1e-3 && worst <= 2e-3 * biggest,
               "%d entries: worst |fd - autograd| %.3g (largest fd %.3g); loss %.6f with dropout, %.6f without", checked, worst,
               biggest, base, plain);
    free(grad);
    dt_st_close(gs);
    dt_adapter_free(a);
    dt_llama_free(m);
}

static void replace_in_file(const char *path, const char *from, const char *to) {
    size_t n;
    char *s = tf_slurp(path, &n), *at = s ? strstr(s, from) : NULL;
    if (!at) { free(s); return; }
    size_t lf = strlen(from), lt = strlen(to);
    char *o = malloc(n - lf + lt + 1);
    memcpy(o, s, (size_t)(at - s));
    memcpy(o + (at - s), to, lt);
    memcpy(o + (at - s) + lt, at + lf, n - (size_t)(at - s) - lf);
    tf_write(path, o, n - lf + lt);
    free(o);
    free(s);
}

// `deltatune ARGS` exits 2 with a message holding want1 and want2 (when not NULL).
static void expect_exit2(const char *label, const char *args, const char *want1, const char *want2) {
    char out[256];
    snprintf(out, sizeof out, "%s/out.txt", tmp);
    int rc = tf_run(args, out);
    char *msg = tf_slurp(out, NULL);
    TEST_CHECK(label, rc == 2 && msg && strstr(msg, want1) && (!want2 || strstr(msg, want2)), "exit %d, message: %s", rc,
               msg ? msg : "(none)");
    free(msg);
}

static void test_bad_input(void) {
    char d[256], p[300], args[1024];
    // An adapter_config.json of a method we do not have: named, with the file and key.
    snprintf(d, sizeof d, "%s/adalora", tmp);
    tf_copy_dir("tests/golden/llama_gqa/adapter", d);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    replace_in_file(p, "\"LORA\"", "\"ADALORA\"");
    snprintf(args, sizeof args, "eval --model tests/golden/llama_gqa --adapter %s --data tests/data/train/tokens.jsonl --format tokens", d);
    expect_exit2("bad_unsupported_peft_type", args, "ADALORA adapters are not supported", "'peft_type'");
    // IA3 scaling q_proj's input: no site for it (q/k/v share one normalised input).
    snprintf(d, sizeof d, "%s/ia3_ff_q", tmp);
    tf_copy_dir("tests/golden/ia3/adapter", d);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    replace_in_file(p, "\"feedforward_modules\": [", "\"feedforward_modules\": [\n    \"q_proj\",");
    replace_in_file(p, "\"k_proj\",", "\"k_proj\",\n    \"q_proj\",");
    snprintf(args, sizeof args, "eval --model tests/golden/llama_gqa --adapter %s --data tests/data/train/tokens.jsonl --format tokens", d);
    expect_exit2("bad_ia3_feedforward_q_proj", args, "only down_proj can be a feedforward", "feedforward_modules");
    // Merge refuses a bottleneck adapter, naming why; nothing is written.
    snprintf(p, sizeof p, "%s/bn_merged", tmp);
    snprintf(args, sizeof args, "merge --model tests/golden/llama_gqa --adapter tests/golden/bottleneck/adapter --out %s", p);
    expect_exit2("bad_merge_bottleneck", args, "BOTTLENECK adapter cannot be merged", "ReLU");
    TEST_CHECK("bad_merge_bottleneck_nothing_written", access(p, F_OK) != 0, "%s exists", p);
    // Keys of another method in a recipe.
    expect_exit2("bad_recipe_lora_key_with_ia3", "validate recipes/stories260k-ia3.yaml method.r=8", "method.r: not used with method.name: ia3", NULL);
    expect_exit2("bad_recipe_loraplus_with_ia3", "validate recipes/stories260k-ia3.yaml train.optimizer.loraplus_lr_ratio=16",
                 "loraplus_lr_ratio: not used with method.name: ia3", NULL);
    // BitFit: a config naming no module; an MLP bias (no mlp_bias in transformers 4.40) or Qwen2's o_proj
    // merged; GGUF export of BitFit and of an embedding LoRA; a LoRA key in a BitFit recipe.
    snprintf(d, sizeof d, "%s/bitfit_none", tmp);
    tf_copy_dir("tests/golden/bitfit_qwen2/adapter", d);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    replace_in_file(p, "\"q_proj\",\n    \"k_proj\"\n", "\n");
    snprintf(args, sizeof args, "eval --model tests/golden/qwen2_bias --adapter %s --data tests/data/train/tokens.jsonl --format tokens", d);
    expect_exit2("bad_bitfit_no_module", args, "BitFit targets no module", "'target_modules'");
    snprintf(p, sizeof p, "%s/bitfit_mlp_merged", tmp);
    snprintf(args, sizeof args, "merge --model tests/golden/llama_gqa --adapter tests/golden/bitfit/adapter --out %s", p);
    expect_exit2("bad_merge_bitfit_mlp", args, "tests/golden/bitfit/adapter", "mlp_bias");
    TEST_CHECK("bad_merge_bitfit_mlp_nothing_written", access(p, F_OK) != 0, "%s exists", p);
    snprintf(args, sizeof args, "export --adapter tests/golden/bitfit/adapter --model tests/golden/llama_gqa --out %s/b.gguf", tmp);
    expect_exit2("bad_export_bitfit", args, "BITFIT adapter has no llama.cpp GGUF adapter form", "biases");
    snprintf(args, sizeof args, "export --adapter tests/golden/lora_embed/adapter --model tests/golden/qwen3_qknorm --out %s/e.gguf", tmp);
    expect_exit2("bad_export_lora_embed_tied", args, "tied embeddings has no llama.cpp adapter form", "merge");
    // PEFT's copy of the base embedding that is not the base's (one value changed): refused, eval and merge.
    snprintf(d, sizeof d, "%s/embed_other", tmp);
    tf_copy_dir("tests/golden/lora_embed/adapter_peft", d);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    size_t n = 0;
    char *st = tf_slurp(p, &n);
    const char *key = st ? strstr(st + 8, "\"base_model.model.model.embed_tokens.base_layer.weight\"") : NULL;
    const char *off = key ? strstr(key, "\"data_offsets\":[") : NULL;
    long begin = -1;
    uint64_t hlen = 0;
    if (off && sscanf(off, "\"data_offsets\":[%ld", &begin) == 1) {
        memcpy(&hlen, st, 8);
        st[8 + hlen + (uint64_t)begin + 2] ^= 0x10; // a mantissa bit of the first value
        tf_write(p, st, n);
    }
    free(st);
    TEST_CHECK("bad_lora_embed_tampered_copy_made", begin >= 0, "no data_offsets for the copy in %s", p);
    snprintf(args, sizeof args, "eval --model tests/golden/qwen3_qknorm --adapter %s --data tests/data/train/tokens.jsonl --format tokens", d);
    expect_exit2("bad_lora_embed_other_base", args, "save_embedding_layers", "embed_tokens.base_layer.weight");
    snprintf(p, sizeof p, "%s/embed_other_merged", tmp);
    snprintf(args, sizeof args, "merge --model tests/golden/qwen3_qknorm --adapter %s --out %s", d, p);
    expect_exit2("bad_merge_lora_embed_other_base", args, "save_embedding_layers", NULL);
    TEST_CHECK("bad_merge_lora_embed_other_base_nothing_written", access(p, F_OK) != 0, "%s exists", p);
    snprintf(p, sizeof p, "%s/loraplus_embed", tmp);
    snprintf(args, sizeof args, "train recipes/stories260k-lora.yaml model.path=tests/golden/llama_gqa data.train=tests/data/train/tokens.jsonl "
             "data.val=null 'method.target_modules=[embed_tokens, q_proj]' train.optimizer.loraplus_lr_ratio=16 output_dir=%s", p);
    expect_exit2("bad_loraplus_with_lora_embed", args, "train.optimizer.loraplus_lr_ratio", "loraplus_lr_embedding");
    expect_exit2("bad_recipe_lora_embed_layers", "validate recipes/stories260k-lora.yaml 'method.target_modules=[embed_tokens, q_proj]' "
                 "'method.layers_to_transform=[1]'", "method.layers_to_transform: cannot be combined with embed_tokens", NULL);
    expect_exit2("bad_recipe_lora_head_dora", "validate recipes/stories260k-lora.yaml 'method.target_modules=[lm_head]' "
                 "method.use_dora=true method.dropout=0", "method.use_dora: DoRA on embed_tokens or lm_head", NULL);
    expect_exit2("bad_recipe_lora_key_with_bitfit", "validate recipes/stories260k-bitfit.yaml method.r=8", "method.r: not used with method.name: bitfit", NULL);
    snprintf(p, sizeof p, "%s/bitfit_c_attn", tmp);
    snprintf(args, sizeof args, "train recipes/stories260k-bitfit.yaml model.path=tests/golden/llama_gqa "
             "'method.target_modules=[c_attn]' output_dir=%s", p);
    expect_exit2("bad_recipe_bitfit_no_such_module", args, "method.target_modules", "'c_attn'");
    TEST_CHECK("bad_recipe_bitfit_nothing_written", access(p, F_OK) != 0, "%s exists", p);
    expect_exit2("bad_recipe_ia3_ff_not_target", "validate recipes/stories260k-ia3.yaml method.feedforward_modules=[up_proj]",
                 "feedforward_modules", NULL);
    // Prefix tuning: merge and GGUF export refuse, naming why; nothing is written.
    snprintf(p, sizeof p, "%s/prefix_merged", tmp);
    snprintf(args, sizeof args, "merge --model tests/golden/llama_gqa --adapter tests/golden/prefix_tuning/adapter --out %s", p);
    expect_exit2("bad_merge_prefix", args, "PREFIX_TUNING adapter cannot be merged", "key/value entries");
    TEST_CHECK("bad_merge_prefix_nothing_written", access(p, F_OK) != 0, "%s exists", p);
    snprintf(p, sizeof p, "%s/prefix.gguf", tmp);
    snprintf(args, sizeof args, "export --model tests/golden/llama_gqa --adapter tests/golden/prefix_tuning/adapter --format gguf --out %s", p);
    expect_exit2("bad_export_prefix", args, "PREFIX_TUNING adapter has no llama.cpp GGUF adapter form", NULL);
    TEST_CHECK("bad_export_prefix_nothing_written", access(p, F_OK) != 0, "%s exists", p);
    // A config whose token_dim is the hidden size (as if every head had its own keys): the file's prefix
    // would not match this grouped-query model's key/value width.
    snprintf(d, sizeof d, "%s/prefix_td", tmp);
    tf_copy_dir("tests/golden/prefix_tuning/adapter", d);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    replace_in_file(p, "\"token_dim\": 32", "\"token_dim\": 64");
    snprintf(args, sizeof args, "eval --model tests/golden/llama_gqa --adapter %s --data tests/data/train/tokens.jsonl --format tokens", d);
    expect_exit2("bad_prefix_token_dim", args, "key 'token_dim': expected 32", "adapter_config.json");
    // Another model's layer count; then a prompt_embeddings of another length than num_virtual_tokens.
    replace_in_file(p, "\"token_dim\": 64", "\"token_dim\": 32");
    replace_in_file(p, "\"num_layers\": 2", "\"num_layers\": 3");
    expect_exit2("bad_prefix_num_layers", args, "key 'num_layers': expected 2", "adapter_config.json");
    replace_in_file(p, "\"num_layers\": 3", "\"num_layers\": 2");
    replace_in_file(p, "\"num_virtual_tokens\": 3", "\"num_virtual_tokens\": 4");
    expect_exit2("bad_prefix_shape", args, "tensor 'prompt_embeddings' has another shape", "(4, 128)");
    // Recipes: keys of another method, a prefix not shorter than max_seq_len, the MLP reparameterisation.
    expect_exit2("bad_recipe_lora_key_with_prefix", "validate recipes/stories260k-prefix.yaml method.r=8",
                 "method.r: not used with method.name: prefix_tuning", NULL);
    expect_exit2("bad_recipe_prefix_key_with_lora", "validate recipes/stories260k-lora.yaml method.prefix_projection=false",
                 "method.prefix_projection: not used with method.name: lora", NULL);
    expect_exit2("bad_recipe_prefix_at_max_seq_len", "validate recipes/stories260k-prefix.yaml method.num_virtual_tokens=256",
                 "method.num_virtual_tokens: 256 virtual tokens is not below data.max_seq_len (256)", NULL);
    expect_exit2("bad_recipe_prefix_projection", "validate recipes/stories260k-prefix.yaml method.prefix_projection=true",
                 "method.prefix_projection: true", "not implemented");
}

// The ready prefix-tuning recipe trains (packed rows, as its LoRA twin) and its adapter evaluates; a prefix
// that with max_seq_len passes the model's context is refused before anything is written.
static void test_prefix_recipe(void) {
    if (!dt_test_fixtures()) {
        TEST_SKIP("prefix_recipe_trains", "../shared/fixtures is absent");
        return;
    }
    char out[256], args[1024];
    snprintf(out, sizeof out, "%s/prefix_run", tmp);
    snprintf(args, sizeof args, "train recipes/stories260k-prefix.yaml train.max_steps=3 train.eval_every_n_steps=3 "
             "train.activation_checkpointing=true output_dir=%s", out);
    int rc = tf_run(args, "/dev/null");
    snprintf(args, sizeof args, "eval --model ../shared/fixtures/stories260K/stories260K.bin --adapter %s "
             "--data recipes/data/stories260k-val.jsonl --format tokens", out);
    int rc2 = rc ? -1 : tf_run(args, "/dev/null");
    TEST_CHECK("prefix_recipe_trains", rc == 0 && rc2 == 0, "train exit %d, eval exit %d", rc, rc2);
    snprintf(out, sizeof out, "%s/prefix_ctx", tmp);
    snprintf(args, sizeof args, "train recipes/stories260k-prefix.yaml data.max_seq_len=500 output_dir=%s", out);
    expect_exit2("bad_prefix_past_context", args, "method.num_virtual_tokens: 16 virtual tokens + data.max_seq_len 500",
                 "max_position_embeddings 512");
    TEST_CHECK("bad_prefix_past_context_nothing_written", access(out, F_OK) != 0, "%s exists", out);
}

int main(void) {
    dt_ctx_init(&ctx);
    snprintf(tmp, sizeof tmp, "/tmp/dt_methods_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("methods_tmp", "mkdtemp"); TEST_EXIT(); }
    test_roundtrip("roundtrip_ia3", "tests/golden/llama_gqa", "tests/golden/ia3/adapter", true);
    test_merge("merge_ia3_vs_pytorch", "tests/golden/llama_gqa", "tests/golden/ia3");
    test_roundtrip("roundtrip_dora", "tests/golden/qwen2_bias", "tests/golden/dora/adapter", false);
    test_merge("merge_dora_vs_pytorch", "tests/golden/qwen2_bias", "tests/golden/dora");
    test_roundtrip("roundtrip_bottleneck", "tests/golden/llama_gqa", "tests/golden/bottleneck/adapter", true);
    test_roundtrip("roundtrip_bitfit", "tests/golden/llama_gqa", "tests/golden/bitfit/adapter", true);
    test_roundtrip("roundtrip_bitfit_qwen2", "tests/golden/qwen2_bias", "tests/golden/bitfit_qwen2/adapter", true);
    test_merge("merge_bitfit_qwen2_vs_pytorch", "tests/golden/qwen2_bias", "tests/golden/bitfit_qwen2");
    test_bitfit_merge_new_biases();
    test_roundtrip("roundtrip_lora_embed", "tests/golden/qwen3_qknorm", "tests/golden/lora_embed/adapter", false);
    test_merge("merge_lora_embed_vs_pytorch", "tests/golden/qwen3_qknorm", "tests/golden/lora_embed");
    test_untie();
    test_untie_stored_head();
    test_peft_base_copies();
    test_export_embed_head();
    test_dora_dropout();
    test_train_cli("train_bitfit", "method={name: bitfit, target_modules: [q_proj, v_proj, o_proj, down_proj]}",
                   "layers.1.mlp.down_proj.bias");
    test_train_cli("train_lora_embed_head", "method={name: lora, r: 4, alpha: 8, dropout: 0.1, target_modules: [embed_tokens, lm_head]}",
                   "embed_tokens.lora_embedding_A");
    test_roundtrip("roundtrip_prefix", "tests/golden/llama_gqa", "tests/golden/prefix_tuning/adapter", true);
    test_roundtrip("roundtrip_prefix_peft_written", "tests/golden/llama_gqa", "tests/data/peft_written/prefix", true);
    test_roundtrip("roundtrip_prefix_projection_peft_written", "tests/golden/llama_gqa",
                   "tests/data/peft_written/prefix_projection", true);
    test_peft_logits("prefix_peft_written_logits_vs_peft", "tests/data/peft_written/prefix",
                     "tests/data/peft_written/prefix.logits.f32");
    test_peft_logits("prefix_projection_peft_written_logits_vs_peft", "tests/data/peft_written/prefix_projection",
                     "tests/data/peft_written/prefix_projection.logits.f32");
    test_roundtrip("roundtrip_lora_embed_head_peft_written", "tests/golden/llama_gqa", "tests/data/peft_written/lora_embed_head", false);
    test_peft_logits("lora_embed_head_peft_written_logits_vs_peft", "tests/data/peft_written/lora_embed_head",
                     "tests/data/peft_written/lora_embed_head.logits.f32");
    test_loraplus();
    test_loraplus_dora();
    test_bad_input();
    test_prefix_recipe();
    tf_rm_tree(tmp);
    TEST_EXIT();
}
