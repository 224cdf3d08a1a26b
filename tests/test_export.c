// deltatune export: PEFT LoRA adapters as llama.cpp GGUF adapters. The file passes our strict GGUF check
// and reads back with the keys llama.cpp's loader needs; lora_a holds PEFT's A bytes, lora_b PEFT's B
// (rows permuted for Llama q/k); the permutation equals PyTorch's run of the converter's
// LlamaModel.permute (tests/golden/qk_permute); rsLoRA's alpha is written so that alpha' / r = alpha /
// sqrt(r); with rank_pattern / alpha_pattern, the deltas llama.cpp applies (alpha / rank_of_tensor
// lora_b lora_a) equal scale_i B_i A_i for every module; prompt tuning and missing adapters are refused
// with exit 2 and leave no file.
// The real-llama.cpp check is tests/gguf_client/check_export.mjs (not part of make test).
#include <math.h>
#include "models/gguf.h"
#include "models/safetensors.h"
#include "peft/export_gguf.h"
#include "peft/merge.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];

// The golden q/k lora_B and their rows as permuted by PyTorch: our permutation must equal them exactly.
static void test_permute_golden(dt_ctx *ctx) {
    dt_safetensors *st;
    if (dt_st_open(ctx, "tests/golden/qk_permute/qk_permute.safetensors", &st)) { TEST_FAIL("permute_golden", "%s", ctx->msg); return; }
    const char *which[2] = {"q", "k"};
    const int heads[2] = {atoi(dt_st_metadata(st, "n_head")), atoi(dt_st_metadata(st, "n_head_kv"))};
    for (int w = 0; w < 2; w++) {
        char n1[64], n2[64], label[64];
        snprintf(n1, sizeof n1, "%s.lora_b", which[w]);
        snprintf(n2, sizeof n2, "%s.lora_b.permuted", which[w]);
        const dt_st_tensor *b = dt_st_find(st, n1), *p = dt_st_find(st, n2);
        snprintf(label, sizeof label, "permute_golden_%s", which[w]);
        if (!b || !p) { TEST_FAIL(label, "tensors missing"); continue; }
        const int64_t rows = b->shape[0];
        const size_t rb = (size_t)b->shape[1] * 4;
        char *src = malloc(b->nbytes), *dst = malloc(b->nbytes), *back = malloc(b->nbytes);
        memcpy(src, b->data, b->nbytes);
        dt_gguf_permute_rows(dst, src, rows, rb, heads[w], false);
        bool same = !memcmp(dst, p->data, p->nbytes);
        bool moved = memcmp(dst, src, b->nbytes) != 0;
        TEST_CHECK(label, same && moved, "%d heads, %lld rows: differs from PyTorch's permutation (moved %d)", heads[w], (long long)rows, moved);
        dt_gguf_permute_rows(back, dst, rows, rb, heads[w], true);
        snprintf(label, sizeof label, "permute_inverse_%s", which[w]);
        TEST_CHECK(label, !memcmp(back, src, b->nbytes), "inverse does not restore the rows");
        bool rowwise = true;
        for (int64_t r = 0; r < rows; r++)
            rowwise &= !memcmp(dst + (size_t)r * rb, src + (size_t)dt_gguf_qk_source_row(r, rows, heads[w]) * rb, rb);
        snprintf(label, sizeof label, "permute_source_row_%s", which[w]);
        TEST_CHECK(label, rowwise, "dt_gguf_qk_source_row disagrees with dt_gguf_permute_rows");
        free(src);
        free(dst);
        free(back);
    }
    dt_st_close(st);
}

static const dt_gguf_kv *kv(const dt_gguf_file *f, const char *key) {
    int64_t i = dt_gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kvs[i];
}

static bool kv_str(const dt_gguf_file *f, const char *key, const char *want) {
    const dt_gguf_kv *k = kv(f, key);
    return k && k->type == DT_GGUF_STRING && !strcmp(k->strs[0], want);
}

// max |llama.cpp's delta - ours| / max |ours| for one module: llama.cpp applies (alpha / rank) lora_b
// lora_a, rank = lora_b's ne[0] (scale 1 when alpha is 0: llama-graph.cpp build_lora_mm); ours is
// scale_i B_i A_i with B's rows in llama.cpp's order (src_row) for q/k.
static double delta_error(const dt_gguf_tensor *ta, const dt_gguf_tensor *tb, double alpha, const dt_lora_ref *r, int heads) {
    const int64_t rk = r->A->shape[0], in = r->A->shape[1], o = r->B->shape[0];
    float *ga = malloc(ta->nbytes), *gb = malloc(tb->nbytes); // (rk, in), (o, rk) as in the file
    memcpy(ga, ta->data, ta->nbytes);
    memcpy(gb, tb->data, tb->nbytes);
    const double s_ll = alpha != 0 ? (double)((float)alpha / (float)tb->ne[0]) : 1.0;
    double worst = 0, big = 0;
    for (int64_t row = 0; row < o; row++) {
        const int64_t src = heads ? dt_gguf_qk_source_row(row, o, heads) : row;
        for (int64_t i = 0; i < in; i++) {
            double ll = 0, ours = 0;
            for (int64_t k = 0; k < rk; k++) {
                ll += (double)gb[row * rk + k] * ga[k * in + i];
                ours += (double)dt_f32(r->B)[src * rk + k] * dt_f32(r->A)[k * in + i];
            }
            ll *= s_ll;
            ours *= r->scale;
            worst = fmax(worst, fabs(ll - ours));
            big = fmax(big, fabs(ours));
        }
    }
    free(ga);
    free(gb);
    return worst / (big + 1e-30);
}

// Exports the adapter of a golden case and checks keys and every tensor against the PEFT tensors: A as
// it is, B as it is (rows permuted for Llama's q/k) unless the module has its own scale (n_folded of
// them: alpha_pattern, rsLoRA with rank_pattern), and for every module llama.cpp's applied delta
// against scale_i B_i A_i.
static void check_case(dt_ctx *ctx, const char *name, const char *model, const char *arch, bool permutes, int n_folded) {
    char adir[256], out[256], label[128], id[64];
    snprintf(adir, sizeof adir, "tests/golden/%s/adapter", name);
    snprintf(id, sizeof id, "%s", name);
    for (char *p = id; *p; p++) if (*p == '/') *p = '_'; // rank_pattern/rslora -> rank_pattern_rslora
    name = id;
    snprintf(out, sizeof out, "%s/%s.gguf", tmp, name);
    dt_model_config cfg;
    dt_weights *w;
    dt_adapter *a = NULL;
    dt_gguf_file *f = NULL;
    snprintf(label, sizeof label, "export_%s", name);
    if (dt_weights_open(ctx, model, &cfg, &w)) { TEST_FAIL(label, "%s", ctx->msg); return; }
    dt_weights_close(w);
    dt_export_info info;
    if (dt_export_lora_gguf(ctx, adir, model, out, &info) || dt_gguf_check_spec(ctx, out) ||
        dt_adapter_load_cfg(ctx, adir, &cfg, &a) || dt_gguf_open(ctx, out, &f)) {
        TEST_FAIL(label, "%s", ctx->msg);
        dt_adapter_free(a);
        return;
    }
    TEST_PASS(label);
    const float want_alpha = a->lora.use_rslora ? a->lora.alpha * sqrtf((float)a->lora.r) : a->lora.alpha;
    const dt_gguf_kv *alpha = kv(f, "adapter.lora.alpha");
    snprintf(label, sizeof label, "export_%s_keys", name);
    TEST_CHECK(label,
               kv_str(f, "general.architecture", arch) && kv_str(f, "general.type", "adapter") && kv_str(f, "adapter.type", "lora") &&
                   alpha && alpha->type == DT_GGUF_F32 && fabs(dt_gguf_kv_float(alpha, 0) - want_alpha) <= 1e-6 * want_alpha &&
                   f->alignment == 32 && f->version == 3,
               "architecture/type/alpha (want %s, alpha %g)", arch, (double)want_alpha);
    // llama.cpp's scale alpha' / r must equal the trained scale.
    snprintf(label, sizeof label, "export_%s_scale", name);
    TEST_CHECK(label, alpha && fabs(dt_gguf_kv_float(alpha, 0) / a->lora.r - dt_lora_scale(&a->lora)) <= 1e-6,
               "alpha'/r = %g, trained scale %g", alpha ? dt_gguf_kv_float(alpha, 0) / a->lora.r : 0.0, (double)dt_lora_scale(&a->lora));
    int pairs = 0, bad = 0, folded = 0;
    double worst_delta = 0;
    char bad_name[128] = "", worst_name[64] = "";
    for (int l = 0; l < cfg.num_layers; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            const dt_lora_ref *r = dt_adapter_lora_at(a, l, mod);
            if (!r) continue;
            pairs++;
            char base[64], an[96], bn[96];
            dt_tn_layer_gguf(base, sizeof base, l, (dt_layer_tensor)mod);
            snprintf(an, sizeof an, "%s.lora_a", base);
            snprintf(bn, sizeof bn, "%s.lora_b", base);
            const dt_gguf_tensor *ta = dt_gguf_find_tensor(f, an), *tb = dt_gguf_find_tensor(f, bn);
            const int64_t rk = r->A->shape[0], in = r->A->shape[1], o = r->B->shape[0];
            // ggml ne: lora_a {in, r}, lora_b {r, out}; what llama-adapter.cpp checks against the base.
            bool ok = ta && tb && ta->type == DT_GGML_F32 && tb->type == DT_GGML_F32 && ta->ne[0] == in && ta->ne[1] == rk &&
                      tb->ne[0] == rk && tb->ne[1] == o && !memcmp(ta->data, r->A->data, ta->nbytes);
            const int heads = !permutes ? 0 : mod == DT_MOD_Q ? cfg.num_heads : mod == DT_MOD_K ? cfg.num_kv_heads : 0;
            if (ok) {
                float *p = malloc(tb->nbytes);
                if (heads) dt_gguf_permute_rows(p, r->B->data, o, (size_t)rk * 4, heads, false);
                else memcpy(p, r->B->data, tb->nbytes);
                if (memcmp(tb->data, p, tb->nbytes)) folded++; // rescaled: the delta check below says whether right
                ok = !heads || memcmp(tb->data, r->B->data, tb->nbytes);
                free(p);
            }
            if (!ok && !bad++) snprintf(bad_name, sizeof bad_name, "%s", base);
            if (ok) {
                double e = delta_error(ta, tb, alpha ? dt_gguf_kv_float(alpha, 0) : 0.0, r, heads);
                if (e > worst_delta) { worst_delta = e; snprintf(worst_name, sizeof worst_name, "%s", base); }
            }
        }
    snprintf(label, sizeof label, "export_%s_tensors", name);
    TEST_CHECK(label, !bad && pairs > 0 && f->n_tensors == 2 * pairs && info.n_pairs == pairs && folded == n_folded && info.n_folded == n_folded,
               "%d of %d pairs wrong (first %s); %lld tensors; %d (reported %d) lora_b rescaled, want %d", bad, pairs, bad_name,
               (long long)f->n_tensors, folded, info.n_folded, n_folded);
    // What llama.cpp applies, alpha / rank_of_tensor * lora_b lora_a, is what we trained.
    snprintf(label, sizeof label, "export_%s_deltas", name);
    TEST_CHECK(label, !bad && worst_delta <= 1e-6, "worst relative difference %.3g in %s", worst_delta, worst_name);
    dt_gguf_close(f);
    dt_adapter_free(a);
}

static void test_refused(void) {
    char out[256], log[256], args[1024];
    snprintf(out, sizeof out, "%s/prompt.gguf", tmp);
    snprintf(log, sizeof log, "%s/log.txt", tmp);
    snprintf(args, sizeof args, "export --adapter tests/golden/prompt_tuning/adapter --model tests/golden/llama_gqa --format gguf --out %s", out);
    int rc = tf_run(args, log);
    char *msg = tf_slurp(log, NULL);
    TEST_CHECK("export_prompt_tuning_refused", rc == 2 && access(out, F_OK) && msg && strstr(msg, "PROMPT_TUNING adapter has no llama.cpp"),
               "exit %d, output: %s", rc, msg ? msg : "");
    free(msg);
    snprintf(args, sizeof args, "export --adapter %s --model tests/golden/llama_gqa --format gguf --out %s", tmp, out);
    rc = tf_run(args, log);
    msg = tf_slurp(log, NULL);
    TEST_CHECK("export_no_adapter_refused", rc == 2 && access(out, F_OK) && msg && strstr(msg, "adapter_config.json"),
               "exit %d, output: %s", rc, msg ? msg : "");
    free(msg);
    snprintf(args, sizeof args, "export --adapter tests/golden/qwen3_qknorm/adapter --model tests/golden/llama_gqa --format gguf --out %s", out);
    rc = tf_run(args, log);
    msg = tf_slurp(log, NULL);
    TEST_CHECK("export_wrong_base_refused", rc == 2 && access(out, F_OK) && msg && strstr(msg, "adapter_model.safetensors") && strstr(msg, "expected"),
               "exit %d, output: %s", rc, msg ? msg : "");
    free(msg);
    TEST_CHECK("export_no_temporary_left", tf_count_prefix(tmp, "prompt.gguf") == 0, "a temporary file is left in %s", tmp);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    snprintf(tmp, sizeof tmp, "/tmp/dt_export_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("export_tmp", "mkdtemp"); TEST_EXIT(); }
    test_permute_golden(&ctx);
    check_case(&ctx, "llama_gqa", "tests/golden/llama_gqa", "llama", true, 0);
    check_case(&ctx, "qwen2_bias", "tests/golden/qwen2_bias", "qwen2", false, 0);      // rsLoRA, one layer
    check_case(&ctx, "qwen3_qknorm", "tests/golden/qwen3_qknorm", "qwen3", false, 0);
    check_case(&ctx, "llama3_rope", "tests/golden/llama3_rope", "llama", true, 0);
    // Per-module ranks and alphas: q (alpha 32) and down_proj (alpha 4.5) in both layers carry their own
    // scale in lora_b; k and v (ranks 3, 2 at the default alpha) need nothing: llama.cpp divides by
    // their rank too.
    check_case(&ctx, "rank_pattern", "tests/golden/llama_gqa", "llama", true, 4);
    // rsLoRA: also v (rank 2 instead of 4: llama.cpp divides by 2, not sqrt(2)); only o_proj keeps
    // the default rank and alpha.
    check_case(&ctx, "rank_pattern/rslora", "tests/golden/llama_gqa", "llama", true, 6);
    if (access("./deltatune", X_OK)) TEST_SKIP("export_binary", "./deltatune not built");
    else test_refused();
    tf_rm_tree(tmp);
    TEST_EXIT();
}
