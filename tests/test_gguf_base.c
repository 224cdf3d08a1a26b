// GGUF models as a base: a golden model written by our writer as a quantized GGUF (merge --format gguf
// --dtype q8_0) loads with the config read from its metadata, its q/k rows un-permuted, and gives the
// logits of the Hugging Face model whose weights went through the same quantization round trip; merge
// --dtype same keeps every tensor's type and reports the error an independent recomputation finds;
// corrupt quantized files are refused naming file and tensor; merge --format hf from a GGUF base writes
// the GGUF's tokenizer as tokenizer.json and the merged folder evaluates on its own.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "autograd/dtype.h"
#include "autograd/quant.h"
#include "datasets/tokenizer.h"
#include "models/gguf.h"
#include "models/gguf_model.h"
#include "models/weights.h"
#include "models/llama.h"
#include "peft/merge.h"
#include "peft/peft_io.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

#define TOK "tests/data/gguf/tok_spm" // a 15-token tokenizer, padded to the model's vocabulary

static char g_dir[256];

static int write_gguf(dt_ctx *ctx, const char *model, const dt_merge_adapter *ad, int n_ad, int dtype, const char *out,
                      dt_merge_report *report) {
    dt_merge_opts o = {.model = model, .adapters = ad, .n_adapters = n_ad, .out = out, .dtype = dtype,
                       .format = DT_MERGE_GGUF, .tokenizer = TOK, .report = report};
    return dt_merge(ctx, &o);
}

// Logits (1, T, V) of model m with adapter dir applied, for a fixed batch; malloc'd.
static float *logits_of(dt_ctx *ctx, dt_llama *m, const char *adapter, int64_t T) {
    dt_adapter *a = NULL;
    if (adapter && dt_adapter_load(ctx, adapter, m, &a)) return NULL;
    const int64_t V = m->cfg.vocab_size;
    int32_t ids[16];
    for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)((i * 37 + 5) % V);
    dt_graph g;
    dt_graph_init(ctx, &g, dt_backend_cpu(), 0);
    g.grad_enabled = false;
    dt_batch b = {1, T, ids, NULL, NULL, NULL};
    dt_llama_out out;
    float *lg = NULL;
    if (!dt_llama_forward(ctx, &g, m, a ? &a->view : NULL, &b, 0, true, &out) && (lg = malloc((size_t)(T * V) * sizeof *lg)))
        memcpy(lg, dt_f32(out.logits), (size_t)(T * V) * sizeof *lg);
    dt_graph_free(&g);
    dt_adapter_free(a);
    return lg;
}

// Replaces every 2-D weight of m (f32) by its round trip through type t, as the GGUF file holds it; the
// weights may be read-only views of the file, so each gets a copy (freed by the caller through *owned).
static void round_trip_weights(dt_llama *m, dt_dtype t, float **owned) {
    size_t bytes;
    int64_t block;
    dt_quant_layout(t, &block, &bytes);
    dt_tensor *ws[2 + 7 * 64];
    int n = 0;
    ws[n++] = &m->embed;
    if (!m->cfg.tie_word_embeddings) ws[n++] = &m->lm_head;
    for (int l = 0; l < m->cfg.num_layers; l++)
        for (int k = 0; k < DT_MOD_COUNT; k++) ws[n++] = &m->layers[l].w[k];
    for (int i = 0; i < n; i++) {
        const int64_t rows = ws[i]->shape[0], cols = ws[i]->shape[1];
        owned[i] = malloc((size_t)(rows * cols) * sizeof(float));
        memcpy(owned[i], ws[i]->data, (size_t)(rows * cols) * sizeof(float));
        if (ws[i] == &m->embed && m->cfg.tie_word_embeddings) m->lm_head.data = owned[i];
        ws[i]->data = owned[i];
        void *q = malloc(dt_type_row_bytes(t, cols));
        for (int64_t r = 0; r < rows; r++) {
            float *row = dt_f32(ws[i]) + r * cols;
            dt_quant_row_from_f32(t, row, q, cols);
            dt_quant_row_f32(t, q, NULL, 0, cols, row);
        }
        free(q);
    }
}

static void check_model(const char *name, const char *model, const char *adapter, dt_dtype t) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char gg[512];
    snprintf(gg, sizeof gg, "%s/%s.gguf", g_dir, name);
    dt_llama *ref = NULL, *m = NULL;
    float *a = NULL, *b = NULL, *owned[2 + 7 * 64] = {NULL};
    const int64_t T = 9;
    if (write_gguf(&ctx, model, NULL, 0, t, gg, NULL) || dt_llama_load(&ctx, model, dt_backend_cpu(), &ref) ||
        dt_llama_load(&ctx, gg, dt_backend_cpu(), &m)) {
        TEST_FAIL(name, "%s", ctx.msg);
        goto done;
    }
    const dt_model_config *x = &ref->cfg, *y = &m->cfg;
    bool same_cfg = x->arch == y->arch && x->hidden_size == y->hidden_size && x->num_layers == y->num_layers &&
                    x->num_heads == y->num_heads && x->num_kv_heads == y->num_kv_heads && x->head_dim == y->head_dim &&
                    x->intermediate_size == y->intermediate_size && x->vocab_size == y->vocab_size &&
                    x->tie_word_embeddings == y->tie_word_embeddings && x->attention_bias == y->attention_bias &&
                    x->qk_norm == y->qk_norm && x->rms_norm_eps == y->rms_norm_eps && x->rope_theta == y->rope_theta;
    if (!same_cfg) { TEST_FAIL(name, "the config read from the GGUF metadata differs from config.json"); goto done; }
    round_trip_weights(ref, t, owned);
    a = logits_of(&ctx, ref, adapter, T);
    b = a ? logits_of(&ctx, m, adapter, T) : NULL;
    if (!b) { TEST_FAIL(name, "%s", ctx.msg); goto done; }
    double worst = 0;
    for (int64_t i = 0; i < T * x->vocab_size; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    TEST_CHECK(name, worst < 1e-4, "max abs logit difference %.3g vs the HF model with round-tripped weights", worst);
done:
    for (int i = 0; i < 2 + 7 * 64; i++) free(owned[i]);
    free(a);
    free(b);
    dt_llama_free(ref);
    dt_llama_free(m);
}

// The tensor info of `name` in a GGUF file's bytes: the position just after the name (n_dims u32, ne[]
// i64, type i32, offset u64 follow).
static size_t info_after_name(const char *x, size_t n, const char *name) {
    const size_t k = strlen(name);
    for (size_t i = 8; i + k + 4 < n; i++)
        if (!memcmp(x + i, name, k) && (uint64_t)(uint8_t)x[i - 8] == k) return i + k;
    return 0;
}

// A corrupted copy of a good Q8_0 file must be refused by `deltatune merge` (which loads it as a base)
// with exit 2, a message naming the file, the tensor and `want`, and no output file.
static void expect_corrupt(const char *label, const char *good, size_t keep, const char *tensor, size_t field, const void *val,
                           size_t val_n, const char *want) {
    char bad[512], out[512], log[512], args[2048];
    snprintf(bad, sizeof bad, "%s/%s.gguf", g_dir, label);
    snprintf(out, sizeof out, "%s/%s.out.gguf", g_dir, label);
    snprintf(log, sizeof log, "%s/%s.log", g_dir, label);
    size_t n;
    char *x = tf_slurp(good, &n);
    size_t at = x && tensor ? info_after_name(x, n, tensor) : 0;
    if (!x || (tensor && !at)) { TEST_FAIL(label, "cannot prepare the corrupt file"); free(x); return; }
    if (tensor) memcpy(x + at + field, val, val_n);
    tf_write(bad, x, keep ? keep : n);
    free(x);
    snprintf(args, sizeof args, "merge --model %s --format gguf --dtype same --out %s", bad, out);
    int rc = tf_run(args, log);
    char *msg = tf_slurp(log, NULL);
    TEST_CHECK(label, rc == 2 && msg && strstr(msg, bad) && strstr(msg, want) && access(out, F_OK) != 0,
               "exit %d (want 2), message: %s", rc, msg ? msg : "");
    free(msg);
}

static void test_corrupt(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char good[512];
    snprintf(good, sizeof good, "%s/good_q8.gguf", g_dir);
    if (write_gguf(&ctx, "tests/golden/llama_gqa", NULL, 0, DT_Q8_0, good, NULL)) { TEST_FAIL("corrupt_setup", "%s", ctx.msg); return; }
    // inspect: the quantized tensors' type and bits per weight (Q8_0: 34 bytes per 32 values = 8.5).
    char args[1024], log[512];
    snprintf(log, sizeof log, "%s/inspect.log", g_dir);
    snprintf(args, sizeof args, "inspect %s", good);
    int irc = tf_run(args, log);
    char *msg = tf_slurp(log, NULL);
    TEST_CHECK("inspect_quant_bits_per_weight", irc == 0 && msg && strstr(msg, "blk.0.attn_q.weight                                          Q8_0") &&
               strstr(msg, "Q8_0 77824 (8.50 bits/weight)"), "exit %d: %s", irc, msg ? msg : "");
    free(msg);
    const char *t = "blk.1.ffn_down.weight"; // (64, 96): ne = {96, 64}
    // n_dims (4 bytes), ne[0] (8), ne[1] (8), then the type (4).
    const int32_t unknown = 99, iq4_nl = 20; // IQ4_NL: a real ggml type with 32-value blocks, no base type here
    expect_corrupt("corrupt_unknown_type", good, 0, t, 4 + 16, &unknown, 4, "blk.1.ffn_down.weight");
    expect_corrupt("corrupt_unsupported_type", good, 0, t, 4 + 16, &iq4_nl, 4, "has type IQ4_NL, which is not supported");
    const int64_t ne0 = 80; // rows of 80 values: not whole blocks of 32
    expect_corrupt("corrupt_partial_block_row", good, 0, t, 4, &ne0, 8, "blk.1.ffn_down.weight");
    // Empty q/k weights (fuzz_gguf_model's findings): no rows (ne[1] = 0) once divided by zero in the row
    // permute; rows of no bytes (ne[0] = 0, ne[1] = 2^28) spun it for seconds.
    const int64_t zero = 0, empty_rows[2] = {0, 1ll << 28};
    expect_corrupt("corrupt_zero_q_rows", good, 0, "blk.0.attn_q.weight", 4 + 8, &zero, 8, "'blk.0.attn_q.weight' is empty");
    expect_corrupt("corrupt_empty_k_rows", good, 0, "blk.0.attn_k.weight", 4, empty_rows, 16, "'blk.0.attn_k.weight' is empty");
    {   // fuzz_gguf_model's finding: rope_freqs.weight of ne {8, 32435593019392, 0} (head_dim/2 = 8 as ne[0],
        // 0 bytes) was taken as 8 factors and read past its empty copy.
        dt_ctx c2;
        dt_ctx_init(&c2);
        dt_model_config cfg;
        dt_gguf_model *gm = NULL;
        int st = dt_gguf_model_open(&c2, "tests/fuzz/corpus/fuzz_gguf_model/finding-rope-freqs-3d", &cfg, &gm);
        TEST_CHECK("corrupt_rope_freqs_shape", st == DT_EINPUT && strstr(c2.msg, "rope_freqs.weight") &&
                   strstr(c2.msg, "finding-rope-freqs-3d"), "status %d: %s", st, c2.msg);
        dt_gguf_model_close(gm);
    }
    size_t n;
    char *x = tf_slurp(good, &n);
    free(x);
    expect_corrupt("corrupt_short_blocks", good, n - 600, NULL, 0, NULL, 0, "output.weight");
}

// The weight `hf` of a model source, all rows widened to f32 (malloc'd; rows x cols in *rows, *cols).
static float *widened(const dt_weights *w, const char *hf, int64_t *rows, int64_t *cols) {
    const dt_st_tensor *t = dt_weights_find(w, hf);
    if (!t || t->ndim != 2) return NULL;
    *rows = t->shape[0];
    *cols = t->shape[1];
    float *x = malloc((size_t)(*rows * *cols) * sizeof *x);
    for (int64_t r = 0; x && r < *rows; r++) dt_quant_row_f32(t->dtype, t->data, t->aux, r, *cols, x + r * *cols);
    return x;
}

// merge --dtype same on a Q8_0 GGUF base: every output tensor has its input's type, and the error
// reported for each re-quantized tensor equals a recomputation here (from the files, in double).
static void test_merge_same(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char base[512], out[512];
    snprintf(base, sizeof base, "%s/same_base.gguf", g_dir);
    snprintf(out, sizeof out, "%s/same_merged.gguf", g_dir);
    dt_merge_adapter ad = {"tests/golden/llama_gqa/adapter", 1.0f};
    dt_merge_report rep = {0};
    dt_merge_opts o = {.model = base, .adapters = &ad, .n_adapters = 1, .out = out, .dtype = DT_MERGE_DTYPE_SAME,
                       .format = DT_MERGE_GGUF, .report = &rep};
    dt_weights *wb = NULL, *wo = NULL;
    dt_model_config cb, co;
    dt_adapter *a = NULL;
    if (write_gguf(&ctx, "tests/golden/llama_gqa", NULL, 0, DT_Q8_0, base, NULL) || dt_merge(&ctx, &o) ||
        dt_weights_open(&ctx, base, &cb, &wb) || dt_weights_open(&ctx, out, &co, &wo) ||
        dt_adapter_load_cfg(&ctx, ad.dir, &cb, &a)) {
        TEST_FAIL("merge_same", "%s", ctx.msg);
        goto done;
    }
    // Types: each tensor of the output as in the input (the GGUF files themselves).
    const dt_gguf_file *fb = dt_gguf_model_file(dt_weights_gguf(wb)), *fo = dt_gguf_model_file(dt_weights_gguf(wo));
    int differ = 0;
    for (int64_t i = 0; i < fb->n_tensors; i++) {
        const dt_gguf_tensor *t = dt_gguf_find_tensor(fo, fb->tensors[i].name);
        differ += !t || t->type != fb->tensors[i].type;
    }
    TEST_CHECK("merge_same_types", differ == 0 && fo->n_tensors == fb->n_tensors, "%d of %lld tensors changed type or went missing",
               differ, (long long)fb->n_tensors);
    // Errors: recomputed from the base file, the adapter and the output file.
    double worst = 0;
    int checked = 0;
    const struct dt_gguf_model *gm = dt_weights_gguf(wb);
    for (size_t e = 0; e < dt_gguf_model_count(gm); e++) {
        const char *gname = dt_gguf_model_source(gm, e)->name, *hf = dt_gguf_model_at(gm, e)->name;
        const dt_merge_quant_err *r = NULL;
        for (size_t k = 0; k < rep.n; k++)
            if (!strcmp(rep.t[k].name, gname)) r = &rep.t[k];
        int layer;
        dt_layer_tensor lt;
        const dt_lora_ref *lr = !dt_tn_parse_layer(hf, &layer, &lt) && (int)lt < (int)DT_MOD_COUNT ? dt_adapter_lora_at(a, layer, (int)lt) : NULL;
        if (!lr) continue;
        if (!r) { worst = INFINITY; continue; } // a folded tensor must be reported
        int64_t R, C, R2, C2;
        float *x = widened(wb, hf, &R, &C), *y = widened(wo, hf, &R2, &C2);
        const int64_t rk = lr->A->shape[0];
        double e2 = 0, r2 = 0;
        for (int64_t i = 0; x && y && i < R; i++)
            for (int64_t j = 0; j < C; j++) {
                double exact = x[i * C + j];
                for (int64_t k = 0; k < rk; k++) exact += (double)lr->scale * dt_f32(lr->B)[i * rk + k] * dt_f32(lr->A)[k * C + j];
                e2 += (y[i * C + j] - exact) * (y[i * C + j] - exact);
                r2 += exact * exact;
            }
        const double mine = sqrt(e2 / r2), theirs = sqrt(r->err2 / r->ref2);
        worst = fmax(worst, fabs(mine - theirs) / mine);
        checked++;
        free(x);
        free(y);
    }
    TEST_CHECK("merge_same_reported_error", checked == 14 && worst < 1e-3,
               "%d folded tensors checked (want 14); worst relative difference of a reported error %.3g", checked, worst);
    // merge --dtype f32 (a Hugging Face folder): the dequantized merge gives the logits of the GGUF base
    // with the adapter unmerged.
    char hf[512];
    snprintf(hf, sizeof hf, "%s/merged_f32", g_dir);
    dt_merge_opts of = {.model = base, .adapters = &ad, .n_adapters = 1, .out = hf, .dtype = DT_F32, .format = DT_MERGE_HF};
    dt_llama *mb = NULL, *mm = NULL;
    float *la = NULL, *lb = NULL;
    if (dt_merge(&ctx, &of) || dt_llama_load(&ctx, base, dt_backend_cpu(), &mb) || dt_llama_load(&ctx, hf, dt_backend_cpu(), &mm) ||
        !(la = logits_of(&ctx, mb, ad.dir, 9)) || !(lb = logits_of(&ctx, mm, NULL, 9))) {
        TEST_FAIL("merge_f32_from_quantized_base", "%s", ctx.msg);
    } else {
        double wl = 0;
        for (int64_t i = 0; i < 9 * mb->cfg.vocab_size; i++) wl = fmax(wl, fabs(la[i] - lb[i]));
        TEST_CHECK("merge_f32_from_quantized_base", mm->layers[0].w[DT_MOD_Q].dtype == DT_F32 && wl < 1e-4,
                   "max abs logit difference %.3g (merged f32 vs quantized base + adapter)", wl);
    }
    free(la);
    free(lb);
    dt_llama_free(mb);
    dt_llama_free(mm);
done:
    free(rep.t);
    dt_adapter_free(a);
    dt_weights_close(wb);
    dt_weights_close(wo);
}

// "loss" of `deltatune eval --json` in the log, or NAN.
static double eval_loss(const char *log) {
    char *msg = tf_slurp(log, NULL);
    const char *p = msg ? strstr(msg, "{\"loss\": ") : NULL;
    double v = p ? strtod(p + 9, NULL) : NAN;
    free(msg);
    return v;
}

// `deltatune merge --format hf` from a GGUF base, through the command line: with no --tokenizer the
// merged folder gets the GGUF's tokenizer as tokenizer.json + tokenizer_config.json (+ the special
// tokens map and generation_config.json), encodes as the GGUF does, and `eval --model MERGED` runs on it
// with no --tokenizer and gives the loss of the GGUF base with the adapter unmerged; --tokenizer DIR
// copies DIR's files instead; a GGUF whose tokenizer cannot be converted stops the merge with exit 2
// naming file and key, leaving no output and no temporary folder.
static void test_merge_hf_tokenizer(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char base[512], out[512], log[512], data[512], args[2048], p[700];
    snprintf(base, sizeof base, "%s/tok_base.gguf", g_dir);
    snprintf(out, sizeof out, "%s/merged_tok", g_dir);
    snprintf(log, sizeof log, "%s/merge_tok.log", g_dir);
    snprintf(data, sizeof data, "%s/tok_eval.jsonl", g_dir);
    const char *ad = "tests/golden/llama_gqa/adapter";
    if (write_gguf(&ctx, "tests/golden/llama_gqa", NULL, 0, DT_Q8_0, base, NULL)) { TEST_FAIL("merge_hf_tokenizer_setup", "%s", ctx.msg); return; }
    const char *text = "{\"text\": \"ab a b abc <tool> ab\\nc\"}\n{\"text\": \"  aab  bab\"}\n";
    tf_write(data, text, strlen(text));
    snprintf(args, sizeof args, "merge --model %s --adapter %s --dtype f32 --out %s", base, ad, out);
    int rc = tf_run(args, log);
    const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};
    int missing = 0;
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        missing += access(p, F_OK) != 0;
    }
    char *msg = tf_slurp(log, NULL);
    TEST_CHECK("merge_hf_gguf_base_writes_tokenizer", rc == 0 && !missing, "exit %d, %d of 4 files missing: %s", rc, missing, msg ? msg : "");
    free(msg);
    // The same ids from the merged folder's tokenizer as from the GGUF's, with BOS.
    dt_tokenizer *a = NULL, *b = NULL;
    dt_ids ia = {0}, ib = {0};
    const char *s = "ab a b\n abc<tool>ab</s> \xC3\xA9";
    int r = dt_tokenizer_load(&ctx, out, &a);
    if (!r) r = dt_tokenizer_load(&ctx, base, &b);
    if (!r) r = dt_tokenizer_encode(&ctx, a, s, strlen(s), true, &ia);
    if (!r) r = dt_tokenizer_encode(&ctx, b, s, strlen(s), true, &ib);
    TEST_CHECK("merge_hf_gguf_base_tokenizer_same_ids", !r && ia.n == ib.n && ia.n > 5 && !memcmp(ia.v, ib.v, ia.n * sizeof *ia.v) &&
               !dt_tokenizer_from_gguf(a) && dt_tokenizer_eos_id(a) == dt_tokenizer_eos_id(b), "%s (%zu vs %zu ids)", r ? ctx.msg : "ids differ",
               ia.n, ib.n);
    dt_ids_free(&ia);
    dt_ids_free(&ib);
    dt_tokenizer_free(a);
    dt_tokenizer_free(b);
    // eval on the merged folder alone, against the GGUF base with the adapter.
    char log2[512];
    snprintf(log2, sizeof log2, "%s/eval_base.log", g_dir);
    snprintf(args, sizeof args, "eval --model %s --data %s --json --dtype f32", out, data);
    int e1 = tf_run(args, log);
    snprintf(args, sizeof args, "eval --model %s --adapter %s --data %s --json --dtype f32", base, ad, data);
    int e2 = tf_run(args, log2);
    double l1 = eval_loss(log), l2 = eval_loss(log2);
    msg = tf_slurp(log, NULL);
    TEST_CHECK("merge_hf_gguf_base_eval_without_tokenizer", e1 == 0 && e2 == 0 && fabs(l1 - l2) < 1e-4 * fmax(1, fabs(l2)),
               "exit %d / %d, loss %.8g (merged) vs %.8g (base + adapter): %s", e1, e2, l1, l2, msg ? msg : "");
    free(msg);
    // --tokenizer DIR: its files, copied as they are.
    char out2[512], src[700];
    snprintf(out2, sizeof out2, "%s/merged_tok2", g_dir);
    snprintf(args, sizeof args, "merge --model %s --adapter %s --dtype bf16 --tokenizer %s --out %s", base, ad, TOK, out2);
    rc = tf_run(args, log);
    snprintf(p, sizeof p, "%s/tokenizer.json", out2);
    snprintf(src, sizeof src, "%s/tokenizer.json", TOK);
    char p2[700], src2[700];
    snprintf(p2, sizeof p2, "%s/tokenizer_config.json", out2);
    snprintf(src2, sizeof src2, "%s/tokenizer_config.json", TOK);
    TEST_CHECK("merge_hf_gguf_base_tokenizer_option_copies", rc == 0 && tf_same_file(p, src) && tf_same_file(p2, src2),
               "exit %d, or the tokenizer files differ from %s", rc, TOK);
    // A tokenizer that cannot be converted: tokenizer.ggml.model "llama" changed to "llamb" in place.
    size_t n;
    char *x = tf_slurp(base, &n), bad[512], out3[512];
    snprintf(bad, sizeof bad, "%s/tok_bad.gguf", g_dir);
    snprintf(out3, sizeof out3, "%s/merged_bad", g_dir);
    size_t at = 0;
    for (size_t i = 0; x && !at && i + 40 < n; i++)
        if (!memcmp(x + i, "tokenizer.ggml.model", 20) && !memcmp(x + i + 20 + 12, "llama", 5)) at = i + 20 + 12 + 4;
    if (!at) { TEST_FAIL("merge_hf_gguf_base_bad_tokenizer", "cannot find tokenizer.ggml.model in %s", base); free(x); return; }
    x[at] = 'b';
    tf_write(bad, x, n);
    free(x);
    snprintf(args, sizeof args, "merge --model %s --adapter %s --dtype f32 --out %s", bad, ad, out3);
    rc = tf_run(args, log);
    msg = tf_slurp(log, NULL);
    TEST_CHECK("merge_hf_gguf_base_bad_tokenizer", rc == 2 && msg && strstr(msg, bad) && strstr(msg, "tokenizer.ggml.model") &&
               strstr(msg, "--tokenizer") && access(out3, F_OK) != 0 && tf_count_prefix(g_dir, "merged_bad") == 0,
               "exit %d (want 2), %d outputs left: %s", rc, tf_count_prefix(g_dir, "merged_bad"), msg ? msg : "");
    free(msg);
}

// merge --format hf from an f16 or bf16 GGUF base without --dtype (or with --dtype same) keeps the base's
// types: config.json's torch_dtype must then name that type, as for a Hugging Face base, not float32 (a
// GGUF base's config.json is written from its header).
static void test_merge_hf_dtype_from_float_gguf(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const dt_dtype types[2] = {DT_F16, DT_BF16};
    const char *want[2] = {"\"torch_dtype\": \"float16\"", "\"torch_dtype\": \"bfloat16\""};
    const int modes[2] = {-1, DT_MERGE_DTYPE_SAME};
    const dt_merge_adapter ad = {"tests/golden/llama_gqa/adapter", 1.0f};
    for (int t = 0; t < 2; t++) {
        char base[512];
        snprintf(base, sizeof base, "%s/float_base_%d.gguf", g_dir, t);
        if (write_gguf(&ctx, "tests/golden/llama_gqa", NULL, 0, types[t], base, NULL)) {
            TEST_FAIL("merge_hf_torch_dtype_from_gguf_setup", "%s", ctx.msg);
            continue;
        }
        for (int k = 0; k < 2; k++) {
            char out[512], cfg[600], label[96];
            snprintf(out, sizeof out, "%s/float_merged_%d_%d", g_dir, t, k);
            snprintf(cfg, sizeof cfg, "%s/config.json", out);
            snprintf(label, sizeof label, "merge_hf_torch_dtype_from_gguf_%s_%s", dt_dtype_name(types[t]), k ? "same" : "default");
            dt_merge_opts o = {.model = base, .adapters = &ad, .n_adapters = 1, .out = out, .dtype = modes[k], .format = DT_MERGE_HF};
            dt_weights *w = NULL;
            dt_model_config c;
            int rc = dt_merge(&ctx, &o);
            if (!rc) rc = dt_weights_open(&ctx, out, &c, &w);
            const dt_st_tensor *q = rc ? NULL : dt_weights_find(w, "model.layers.0.self_attn.q_proj.weight");
            char *text = tf_slurp(cfg, NULL);
            TEST_CHECK(label, !rc && q && q->dtype == types[t] && text && strstr(text, want[t]),
                       "%s; q_proj %s; config.json: %s", rc ? ctx.msg : "merged", q ? dt_dtype_name(q->dtype) : "?", text ? text : "(none)");
            free(text);
            dt_weights_close(w);
        }
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_gguf_base.XXXXXX");
    if (!mkdtemp(g_dir)) { TEST_FAIL("tmpdir", "mkdtemp"); TEST_EXIT(); }
    check_model("gguf_base_llama_q8_0", "tests/golden/llama_gqa", "tests/golden/llama_gqa/adapter", DT_Q8_0);
    check_model("gguf_base_llama_q4_0", "tests/golden/llama_gqa", "tests/golden/llama_gqa/adapter", DT_Q4_0);
    check_model("gguf_base_qwen2_q5_1", "tests/golden/qwen2_bias", "tests/golden/qwen2_bias/adapter", DT_Q5_1);
    check_model("gguf_base_qwen3_q8_0", "tests/golden/qwen3_qknorm", "tests/golden/qwen3_qknorm/adapter", DT_Q8_0);
    check_model("gguf_base_llama3_rope_q4_1", "tests/golden/llama3_rope", "tests/golden/llama3_rope/adapter", DT_Q4_1);
    test_corrupt();
    test_merge_same();
    test_merge_hf_tokenizer();
    test_merge_hf_dtype_from_float_gguf();
    if (!getenv("DT_KEEP")) tf_rm_tree(g_dir);
    TEST_EXIT();
}
