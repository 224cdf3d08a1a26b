// deltatune merge: a merged model gives the logits of the base with its adapters applied unmerged
// (f32: within 1e-5 of the largest logit), for LoRA, rsLoRA, Qwen2/Qwen3/llama3-RoPE models, and two
// weighted adapters; and the logits PyTorch computed for base + adapter (golden files, 1e-4). The hf output
// keeps the input's shard files and index byte for byte where nothing changes; --dtype casts and sets
// torch_dtype. The gguf output passes the strict GGUF check and reads back (q/k un-permuted) equal to the
// hf output. Bad input exits 2 through the binary, names the file and tensor, and leaves nothing behind.
#include <math.h>
#include "models/gguf.h"
#include "models/llama.h"
#include "models/llama_infer.h"
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "peft/export_gguf.h"
#include "peft/merge.h"
#include "peft/peft_io.h"
#include "tests/file_util.h"
#include "tests/test_util.h"
#define GQA "tests/golden/llama_gqa" // before bnb4_writer.h, which reads its config.json
#include "tests/bnb4_writer.h"

static char tmp[64];
static dt_ctx ctx;

// Logits (B, T, V) of model + adapters (scaled by weights), from the KV-cache path fed one token at a
// time (the only path that applies several adapters to one module).
static float *logits_of(const char *model, const char *const *adapters, const float *weights, int n_ad,
                        const int32_t *ids, int64_t B, int64_t T) {
    dt_llama *m = NULL;
    dt_adapter *ad[4] = {0};
    const dt_linear_hook **chain = NULL;
    float *out = NULL;
    dt_kv_cache c = {0};
    if (dt_llama_load(&ctx, model, dt_backend_cpu(), &m)) return NULL;
    const int64_t V = m->cfg.vocab_size, K = (int64_t)m->cfg.num_layers * DT_MOD_COUNT;
    chain = calloc((size_t)K, sizeof *chain);
    int rc = DT_OK;
    for (int i = 0; i < n_ad && !rc; i++) {
        if ((rc = dt_adapter_load(&ctx, adapters[i], m, &ad[i]))) break;
        for (int64_t k = 0; k < K; k++) {
            if (!ad[i]->ref_ptrs[k]) continue;
            ad[i]->refs[k].scale *= weights[i];
            ad[i]->hooks[k].next = chain[k];
            chain[k] = &ad[i]->hooks[k];
        }
    }
    dt_llama_adapters view = {.linear = chain};
    out = rc ? NULL : malloc((size_t)(B * T * V) * sizeof(float));
    for (int64_t b = 0; b < B && out; b++) {
        if (dt_kv_cache_init(&ctx, m, T, &c)) { free(out); out = NULL; break; }
        for (int64_t t = 0; t < T && out; t++)
            if (dt_llama_infer(&ctx, m, &view, &c, &ids[b * T + t], 1, out + (b * T + t) * V)) { free(out); out = NULL; }
        dt_kv_cache_free(&c);
    }
    free(chain);
    for (int i = 0; i < n_ad; i++) dt_adapter_free(ad[i]);
    dt_llama_free(m);
    return out;
}

// Logits of the training forward (no adapters), for comparing with PyTorch's golden logits.
static float *forward_logits(const char *model, const int32_t *ids, int64_t B, int64_t T, size_t *n) {
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

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

typedef struct { int32_t *ids; int64_t B, T; float *logits; size_t n; } golden;

static bool golden_load(const char *case_name, golden *g) {
    char path[256];
    snprintf(path, sizeof path, "tests/golden/%s/golden.safetensors", case_name);
    dt_safetensors *st;
    if (dt_st_open(&ctx, path, &st)) return false;
    const dt_st_tensor *it = dt_st_find(st, "input_ids"), *lt = dt_st_find(st, "logits");
    g->B = it->shape[0];
    g->T = it->shape[1];
    g->ids = malloc(it->nbytes);
    memcpy(g->ids, it->data, it->nbytes);
    g->n = lt->nbytes / 4;
    g->logits = malloc(lt->nbytes);
    memcpy(g->logits, lt->data, lt->nbytes);
    dt_st_close(st);
    return true;
}

static int merge(const char *model, const dt_merge_adapter *ad, int n, const char *out, int dtype, dt_merge_format fmt,
                 const char *tok) {
    dt_merge_opts o = {.model = model, .adapters = ad, .n_adapters = n, .out = out, .dtype = dtype, .format = fmt, .tokenizer = tok};
    return dt_merge(&ctx, &o);
}

// One golden case: merged logits against PyTorch's base + adapter and against our unmerged forward.
// model_case: the case folder holding the model (the case's own when NULL).
static void test_case(const char *name, const char *model_case) {
    char model[128], adapter[128], out[256], label[128];
    snprintf(model, sizeof model, "tests/golden/%s", model_case ? model_case : name);
    snprintf(adapter, sizeof adapter, "tests/golden/%s/adapter", name);
    snprintf(out, sizeof out, "%s/%s_merged", tmp, name);
    golden g = {0};
    snprintf(label, sizeof label, "merge_%s", name);
    dt_merge_adapter ad = {adapter, 1.0f};
    if (!golden_load(name, &g) || merge(model, &ad, 1, out, -1, DT_MERGE_HF, NULL)) {
        TEST_FAIL(label, "%s", ctx.msg);
        return;
    }
    size_t n = 0;
    float *merged = forward_logits(out, g.ids, g.B, g.T, &n);
    const char *ads[1] = {adapter};
    const float ws[1] = {1.0f};
    float *unmerged = logits_of(model, ads, ws, 1, g.ids, g.B, g.T);
    float *merged_kv = logits_of(out, NULL, NULL, 0, g.ids, g.B, g.T);
    if (!merged || !unmerged || !merged_kv || n != g.n) {
        TEST_FAIL(label, "forward: %s", ctx.msg);
    } else {
        double d = max_diff(merged, g.logits, n);
        snprintf(label, sizeof label, "merge_%s_vs_pytorch", name);
        TEST_CHECK(label, d <= 1e-4, "max |merged - PyTorch base+adapter| = %.3g", d);
        double scale = max_abs(unmerged, n), d2 = max_diff(merged_kv, unmerged, n);
        snprintf(label, sizeof label, "merge_%s_vs_unmerged", name);
        TEST_CHECK(label, d2 <= 1e-5 * scale, "max |merged - base+adapter| = %.3g (largest logit %.3g)", d2, scale);
    }
    free(merged);
    free(unmerged);
    free(merged_kv);
    free(g.ids);
    free(g.logits);
}

// A second adapter for llama_gqa: rsLoRA r=2 on q, k, v and down, with random (non-zero) B.
static bool make_second_adapter(const char *dir) {
    dt_llama *m;
    if (dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m)) return false;
    dt_lora_config lc = {.r = 2, .alpha = 3, .use_rslora = true};
    lc.target[DT_MOD_Q] = lc.target[DT_MOD_K] = lc.target[DT_MOD_V] = lc.target[DT_MOD_DOWN] = true;
    dt_adapter *a;
    bool ok = !dt_lora_create(&ctx, m, &lc, 11, &a);
    if (ok) {
        uint64_t s = 12345;
        for (int i = 0; i < a->n_tensors; i++)
            if (strstr(a->names[i], "lora_B"))
                for (int64_t j = 0; j < dt_numel(&a->tensors[i]); j++) {
                    s = s * 6364136223846793005ull + 1442695040888963407ull;
                    dt_f32(&a->tensors[i])[j] = 0.2f * ((float)(s >> 40) / (float)(1 << 24) - 0.5f);
                }
        ok = !dt_adapter_save(&ctx, a, m, dir);
        dt_adapter_free(a);
    }
    dt_llama_free(m);
    return ok;
}

static void test_two_adapters(const char *second) {
    char out[256];
    snprintf(out, sizeof out, "%s/two_merged", tmp);
    const dt_merge_adapter ad[2] = {{"tests/golden/llama_gqa/adapter", 0.7f}, {second, -1.3f}};
    golden g = {0};
    if (!golden_load("llama_gqa", &g) || merge("tests/golden/llama_gqa", ad, 2, out, -1, DT_MERGE_HF, NULL)) {
        TEST_FAIL("merge_two_adapters", "%s", ctx.msg);
        return;
    }
    const char *ads[2] = {ad[0].dir, ad[1].dir};
    const float ws[2] = {ad[0].weight, ad[1].weight};
    float *ref = logits_of("tests/golden/llama_gqa", ads, ws, 2, g.ids, g.B, g.T);
    float *one = logits_of("tests/golden/llama_gqa", ads, ws, 1, g.ids, g.B, g.T);
    float *got = logits_of(out, NULL, NULL, 0, g.ids, g.B, g.T);
    if (!ref || !got || !one) TEST_FAIL("merge_two_adapters", "forward: %s", ctx.msg);
    else {
        double scale = max_abs(ref, g.n), d = max_diff(got, ref, g.n), d1 = max_diff(one, ref, g.n);
        TEST_CHECK("merge_two_adapters", d <= 1e-5 * scale && d1 > 1e-2,
                   "max |merged - base+0.7 A1-1.3 A2| = %.3g (largest %.3g); second adapter moves logits by %.3g", d, scale, d1);
    }
    free(ref);
    free(one);
    free(got);
    free(g.ids);
    free(g.logits);
}

// The merged linear weights against dt_lora_fold (cblas_sgemm) on the base weights: the row kernel of the
// merge (4 of A's rows per pass, a scalar tail for r = 2) is the fast version of the same sum.
static void test_against_fold(const char *second) {
    char out[256];
    snprintf(out, sizeof out, "%s/two_merged", tmp); // written by test_two_adapters: adapters at 0.7 and -1.3
    const char *dirs[2] = {"tests/golden/llama_gqa/adapter", second};
    const float ws[2] = {0.7f, -1.3f};
    dt_model_config cfg;
    dt_safetensors *base = NULL, *merged = NULL;
    dt_adapter *ad[2] = {0};
    if (dt_config_load(&ctx, "tests/golden/llama_gqa", &cfg) || dt_st_open(&ctx, "tests/golden/llama_gqa", &base) ||
        dt_st_open(&ctx, out, &merged) || dt_adapter_load_cfg(&ctx, dirs[0], &cfg, &ad[0]) || dt_adapter_load_cfg(&ctx, dirs[1], &cfg, &ad[1])) {
        TEST_FAIL("merge_matches_lora_fold", "%s", ctx.msg);
    } else {
        double worst = 0;
        int checked = 0;
        for (int l = 0; l < cfg.num_layers; l++)
            for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
                char name[128];
                dt_tn_layer(name, sizeof name, l, (dt_layer_tensor)mod);
                const dt_st_tensor *t = dt_st_find(base, name), *mt = dt_st_find(merged, name);
                float *W = malloc(t->nbytes), *M = malloc(mt->nbytes);
                memcpy(W, t->data, t->nbytes);
                memcpy(M, mt->data, mt->nbytes);
                for (int i = 0; i < 2; i++) {
                    const dt_lora_ref *r = dt_adapter_lora_at(ad[i], l, mod);
                    if (r) dt_lora_fold(W, dt_f32(r->A), dt_f32(r->B), t->shape[0], t->shape[1], r->A->shape[0], r->scale * ws[i]);
                }
                worst = fmax(worst, max_diff(W, M, t->nbytes / 4) / fmax(1e-30, max_abs(W, t->nbytes / 4)));
                checked++;
                free(W);
                free(M);
            }
        TEST_CHECK("merge_matches_lora_fold", checked == 14 && worst <= 1e-6, "worst relative difference %.3g", worst);
    }
    dt_adapter_free(ad[0]);
    dt_adapter_free(ad[1]);
    dt_st_close(base);
    dt_st_close(merged);
}

// The first 8 + header bytes of a safetensors file: names, dtypes, shapes and offsets.
static bool same_header(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = tf_slurp(a, &na), *y = tf_slurp(b, &nb);
    uint64_t ha = 0, hb = 0;
    if (x && na >= 8) memcpy(&ha, x, 8);
    if (y && nb >= 8) memcpy(&hb, y, 8);
    bool same = x && y && ha == hb && na >= 8 + ha && nb >= 8 + hb && !memcmp(x, y, 8 + ha);
    free(x);
    free(y);
    return same;
}

// A sharded copy of llama_gqa (about 100 kB a shard) with generation/tokenizer files; the merged output
// must have the same files, the same headers, the same index, and copies of the extra files.
static void test_sharded(const char *second) {
    char in[256], out[256], outb[256], p[512], q[512];
    snprintf(in, sizeof in, "%s/sharded", tmp);
    snprintf(out, sizeof out, "%s/sharded_merged", tmp);
    snprintf(outb, sizeof outb, "%s/sharded_bf16", tmp);
    mkdir(in, 0755);
    dt_safetensors *st = NULL;
    dt_st_writer *w = NULL;
    int rc = dt_st_open(&ctx, "tests/golden/llama_gqa/model.safetensors", &st) || dt_st_writer_init(&ctx, &w) ||
             dt_st_writer_set_metadata(&ctx, w, "format", "pt");
    for (size_t i = 0; !rc && i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        rc = dt_st_writer_add(&ctx, w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    if (!rc) rc = dt_st_writer_write_sharded(&ctx, w, in, 100000);
    dt_st_writer_free(w);
    dt_st_close(st);
    snprintf(p, sizeof p, "%s/config.json", in);
    size_t n;
    char *cfg = tf_slurp("tests/golden/llama_gqa/config.json", &n);
    const char *gen = "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n", *tokc = "{\"model_max_length\": 128}\n";
    bool ok = !rc && cfg && tf_write(p, cfg, n);
    snprintf(p, sizeof p, "%s/generation_config.json", in);
    ok = ok && tf_write(p, gen, strlen(gen));
    snprintf(p, sizeof p, "%s/tokenizer_config.json", in);
    ok = ok && tf_write(p, tokc, strlen(tokc));
    const dt_merge_adapter ad[2] = {{"tests/golden/llama_gqa/adapter", 1.0f}, {second, 0.5f}};
    if (!ok || merge(in, ad, 2, out, -1, DT_MERGE_HF, NULL) || merge(in, ad, 2, outb, DT_BF16, DT_MERGE_HF, NULL)) {
        TEST_FAIL("merge_sharded", "%s", ctx.msg);
        free(cfg);
        return;
    }
    const char *files[] = {"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                           "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
    bool headers = true;
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", in, files[i]);
        snprintf(q, sizeof q, "%s/%s", out, files[i]);
        headers &= same_header(p, q);
    }
    TEST_CHECK("merge_sharded_same_shards", headers && tf_count_prefix(out, "model-") == 4 && tf_count_prefix(in, "model-") == 4,
               "shard files or their headers differ from the input's");
    const char *same[] = {"model.safetensors.index.json", "config.json", "generation_config.json", "tokenizer_config.json"};
    bool copies = true;
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", in, same[i]);
        snprintf(q, sizeof q, "%s/%s", out, same[i]);
        if (!tf_same_file(p, q)) { copies = false; TEST_FAIL("merge_sharded_files", "%s differs from the input's", same[i]); }
    }
    if (copies) TEST_PASS("merge_sharded_files");
    // The shards hold the merged weights: equal, tensor for tensor, to a merge of the one-file model.
    char single[256];
    snprintf(single, sizeof single, "%s/single_merged", tmp);
    dt_safetensors *a = NULL, *b = NULL;
    if (merge("tests/golden/llama_gqa", ad, 2, single, -1, DT_MERGE_HF, NULL) || dt_st_open(&ctx, single, &a) || dt_st_open(&ctx, out, &b)) {
        TEST_FAIL("merge_sharded_values", "%s", ctx.msg);
    } else {
        int differ = 0;
        for (size_t i = 0; i < dt_st_count(a); i++) {
            const dt_st_tensor *x = dt_st_at(a, i), *y = dt_st_find(b, x->name);
            differ += !y || y->nbytes != x->nbytes || memcmp(x->data, y->data, x->nbytes);
        }
        TEST_CHECK("merge_sharded_values", differ == 0 && dt_st_count(a) == dt_st_count(b), "%d tensors differ", differ);
    }
    // --dtype bf16: every tensor the bf16 rounding of the f32 merge, torch_dtype updated, the index's total halved.
    dt_safetensors *c = NULL;
    if (!a || dt_st_open(&ctx, outb, &c)) TEST_FAIL("merge_bf16", "%s", ctx.msg);
    else {
        int differ = 0;
        for (size_t i = 0; i < dt_st_count(a); i++) {
            const dt_st_tensor *x = dt_st_at(a, i), *y = dt_st_find(c, x->name);
            size_t ne = x->nbytes / 4;
            if (!y || y->dtype != DT_BF16 || y->nbytes != ne * 2) { differ++; continue; }
            float *f = malloc(x->nbytes);
            uint16_t *h = malloc(ne * 2);
            memcpy(f, x->data, x->nbytes);
            dt_convert_from_f32(h, DT_BF16, f, ne);
            differ += memcmp(h, y->data, ne * 2) != 0;
            free(f);
            free(h);
        }
        snprintf(p, sizeof p, "%s/config.json", outb);
        char *c2 = tf_slurp(p, NULL);
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", outb);
        char *idx = tf_slurp(p, NULL);
        TEST_CHECK("merge_bf16", differ == 0 && c2 && strstr(c2, "\"torch_dtype\": \"bfloat16\"") && !strstr(c2, "float32") &&
                                     idx && strstr(idx, "\"total_size\": ") && tf_count_prefix(outb, "model-0000") == 4,
                   "%d tensors differ; config: %s", differ, c2 ? c2 : "?");
        // The f32 total, from the input index, halves.
        snprintf(q, sizeof q, "%s/model.safetensors.index.json", in);
        char *idx_in = tf_slurp(q, NULL);
        const char *tin = idx_in ? strstr(idx_in, "\"total_size\": ") : NULL, *tout = idx ? strstr(idx, "\"total_size\": ") : NULL;
        long long n_in = tin ? atoll(tin + 14) : 0, n_out = tout ? atoll(tout + 14) : 0;
        TEST_CHECK("merge_bf16_index_total", n_in > 0 && n_out * 2 == n_in, "total_size %lld, input %lld", n_out, n_in);
        free(idx_in);
        free(c2);
        free(idx);
    }
    dt_st_close(a);
    dt_st_close(b);
    dt_st_close(c);
    free(cfg);
}

static const dt_gguf_kv *kv(const dt_gguf_file *f, const char *key) {
    int64_t i = dt_gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kvs[i];
}

// The GGUF model reads back equal to the hf merge: each tensor by its llama.cpp name, q/k rows un-permuted
// for "llama", norms and 1-D tensors in f32.
static void check_gguf_vs_hf(const char *label, const char *gguf, const char *hf, const char *arch, bool permutes) {
    dt_gguf_file *f = NULL;
    dt_safetensors *st = NULL;
    dt_model_config cfg;
    if (dt_gguf_check_spec(&ctx, gguf) || dt_gguf_open(&ctx, gguf, &f) || dt_st_open(&ctx, hf, &st) || dt_config_load(&ctx, hf, &cfg)) {
        TEST_FAIL(label, "%s", ctx.msg);
        dt_gguf_close(f);
        dt_st_close(st);
        return;
    }
    int differ = 0, used = 0;
    char first[128] = "";
    for (size_t i = 0; i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        char gname[96];
        int layer;
        dt_layer_tensor lt;
        int heads = 0;
        if (!dt_tn_parse_layer(t->name, &layer, &lt)) {
            dt_tn_layer_gguf(gname, sizeof gname, layer, lt);
            if (permutes && (lt == DT_LT_Q || lt == DT_LT_Q_BIAS)) heads = cfg.num_heads;
            if (permutes && (lt == DT_LT_K || lt == DT_LT_K_BIAS)) heads = cfg.num_kv_heads;
        } else {
            for (int gt = 0; gt < DT_GT_COUNT; gt++)
                if (!strcmp(t->name, dt_tn_global(gt))) snprintf(gname, sizeof gname, "%s", dt_tn_global_gguf(gt));
        }
        const dt_gguf_tensor *g = dt_gguf_find_tensor(f, gname);
        dt_tensor v;
        bool ok = g && !dt_gguf_tensor_view(&ctx, f, g, &v) && v.ndim == t->ndim && v.shape[0] == t->shape[0];
        dt_dtype want = t->ndim == 1 || strstr(gname, "norm") ? DT_F32 : t->dtype;
        ok = ok && v.dtype == want;
        if (ok) { // compared in the hf tensor's dtype (a norm kept in f32 by the GGUF is rounded to it)
            const size_t ne = (size_t)dt_numel(&v), hb = ne * dt_dtype_size(t->dtype);
            float *f32 = malloc(ne * 4);
            char *x = malloc(hb), *y = malloc(hb);
            dt_convert_to_f32(f32, v.data, v.dtype, ne);
            dt_convert_from_f32(y, t->dtype, f32, ne);
            if (heads) dt_gguf_permute_rows(x, y, v.shape[0], hb / (size_t)v.shape[0], heads, true);
            else memcpy(x, y, hb);
            ok = hb == t->nbytes && !memcmp(x, t->data, hb);
            free(f32);
            free(x);
            free(y);
        }
        used++;
        if (!ok && !differ++) snprintf(first, sizeof first, "%s (%s)", t->name, gname);
    }
    const dt_gguf_kv *arch_kv = kv(f, "general.architecture"), *type = kv(f, "general.type");
    char key[96];
    snprintf(key, sizeof key, "%s.block_count", arch);
    const dt_gguf_kv *blocks = kv(f, key);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    const dt_gguf_kv *kvh = kv(f, key);
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    const dt_gguf_kv *kl = kv(f, key);
    bool keys = arch_kv && !strcmp(arch_kv->strs[0], arch) && type && !strcmp(type->strs[0], "model") && blocks &&
                dt_gguf_kv_int(blocks, 0) == cfg.num_layers && kvh && dt_gguf_kv_int(kvh, 0) == cfg.num_kv_heads && kl &&
                dt_gguf_kv_int(kl, 0) == cfg.head_dim && dt_gguf_find_key(f, "tokenizer.ggml.model") >= 0;
    TEST_CHECK(label, differ == 0 && used > 0 && keys, "%d of %d tensors differ (first %s); keys ok %d", differ, used, first, keys);
    dt_gguf_close(f);
    dt_st_close(st);
}

static void test_gguf(const char *second) {
    char hf[256], gg[256], hf16[256], gg16[256], g3[256], h3[256];
    const char *tok = "tests/data/gguf/tok_spm"; // a 15-token tokenizer, padded to the model's vocabulary
    snprintf(hf, sizeof hf, "%s/sharded_merged", tmp); // the two-adapter merge of test_sharded
    snprintf(gg, sizeof gg, "%s/llama.gguf", tmp);
    const dt_merge_adapter ad[2] = {{"tests/golden/llama_gqa/adapter", 1.0f}, {second, 0.5f}};
    if (merge("tests/golden/llama_gqa", ad, 2, gg, -1, DT_MERGE_GGUF, tok)) TEST_FAIL("merge_gguf_llama", "%s", ctx.msg);
    else check_gguf_vs_hf("merge_gguf_llama", gg, hf, "llama", true);
    // Qwen3 (no permutation, explicit head_dim), cast to f16 in both outputs.
    snprintf(hf16, sizeof hf16, "%s/qwen3_f16", tmp);
    snprintf(gg16, sizeof gg16, "%s/qwen3.gguf", tmp);
    const dt_merge_adapter q3 = {"tests/golden/qwen3_qknorm/adapter", 1.0f};
    if (merge("tests/golden/qwen3_qknorm", &q3, 1, hf16, DT_F16, DT_MERGE_HF, NULL) ||
        merge("tests/golden/qwen3_qknorm", &q3, 1, gg16, DT_F16, DT_MERGE_GGUF, tok))
        TEST_FAIL("merge_gguf_qwen3_f16", "%s", ctx.msg);
    else check_gguf_vs_hf("merge_gguf_qwen3_f16", gg16, hf16, "qwen3", false);
    // Qwen2 keeps its q/k/v biases.
    snprintf(h3, sizeof h3, "%s/qwen2_bias_merged", tmp); // from test_case
    snprintf(g3, sizeof g3, "%s/qwen2.gguf", tmp);
    const dt_merge_adapter q2 = {"tests/golden/qwen2_bias/adapter", 1.0f};
    if (merge("tests/golden/qwen2_bias", &q2, 1, g3, -1, DT_MERGE_GGUF, tok)) TEST_FAIL("merge_gguf_qwen2", "%s", ctx.msg);
    else check_gguf_vs_hf("merge_gguf_qwen2", g3, h3, "qwen2", false);
    // llama3 RoPE scaling: rope_freqs.weight, 1 for the high-frequency pair, 8 for the 14 low ones, one between.
    snprintf(h3, sizeof h3, "%s/llama3_rope_merged", tmp);
    snprintf(g3, sizeof g3, "%s/llama3.gguf", tmp);
    const dt_merge_adapter l3 = {"tests/golden/llama3_rope/adapter", 1.0f};
    dt_gguf_file *f = NULL;
    if (merge("tests/golden/llama3_rope", &l3, 1, g3, -1, DT_MERGE_GGUF, tok) || dt_gguf_open(&ctx, g3, &f)) {
        TEST_FAIL("merge_gguf_llama3_rope", "%s", ctx.msg);
    } else {
        check_gguf_vs_hf("merge_gguf_llama3_rope", g3, h3, "llama", true);
        const dt_gguf_tensor *rf = dt_gguf_find_tensor(f, "rope_freqs.weight");
        int ones = 0, eights = 0, mid = 0;
        for (int i = 0; rf && rf->type == DT_GGML_F32 && i < rf->ne[0]; i++) {
            float v;
            memcpy(&v, (const char *)rf->data + 4 * i, 4);
            ones += v == 1.0f;
            eights += v == 8.0f;
            mid += v > 1.0f && v < 8.0f;
        }
        TEST_CHECK("merge_gguf_rope_freqs", rf && rf->ne[0] == 16 && ones == 1 && eights == 14 && mid == 1,
                   "rope_freqs: %d ones, %d eights, %d between", ones, eights, mid);
    }
    dt_gguf_close(f);
}

// llama2.c checkpoint -> Hugging Face folder with an adapter made for it: the folder loads and gives the
// logits of the .bin with the adapter applied.
static void test_llama2c(void) {
    const char *fx = dt_test_fixtures();
    if (!fx) { TEST_SKIP("merge_llama2c", "../shared/fixtures is absent"); return; }
    char bin[512], adir[256], out[256];
    snprintf(bin, sizeof bin, "%s/stories260K/stories260K.bin", fx);
    snprintf(adir, sizeof adir, "%s/l2c_adapter", tmp);
    snprintf(out, sizeof out, "%s/l2c_merged", tmp);
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_lora_config lc = {.r = 4, .alpha = 8};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    int rc = dt_llama_load(&ctx, bin, dt_backend_cpu(), &m) || dt_lora_create(&ctx, m, &lc, 3, &a);
    if (!rc) {
        for (size_t i = 0; i < a->n_params; i++) a->params[i] += 0.01f * (float)((int)(i % 7) - 3); // B non-zero
        rc = dt_adapter_save(&ctx, a, m, adir);
    }
    dt_adapter_free(a);
    dt_llama_free(m);
    const dt_merge_adapter ad = {adir, 1.0f};
    if (rc || merge(bin, &ad, 1, out, -1, DT_MERGE_HF, NULL)) { TEST_FAIL("merge_llama2c", "%s", ctx.msg); return; }
    int32_t ids[2 * 16];
    for (int i = 0; i < 32; i++) ids[i] = (int32_t)((i * 37 + 5) % 512);
    const char *ads[1] = {adir};
    const float ws[1] = {1.0f};
    float *ref = logits_of(bin, ads, ws, 1, ids, 2, 16), *got = logits_of(out, NULL, NULL, 0, ids, 2, 16);
    if (!ref || !got) TEST_FAIL("merge_llama2c", "forward: %s", ctx.msg);
    else {
        double scale = max_abs(ref, 2 * 16 * 512), d = max_diff(ref, got, 2 * 16 * 512);
        TEST_CHECK("merge_llama2c", d <= 1e-5 * scale, "max diff %.3g (largest logit %.3g)", d, scale);
    }
    free(ref);
    free(got);
}

static void test_fold(void) {
    // W (3, 5) += 0.5 * B (3, 2) @ A (2, 5) against the definition.
    float A[10], B[6], W[15], ref[15];
    for (int i = 0; i < 10; i++) A[i] = (float)(i - 4) * 0.25f;
    for (int i = 0; i < 6; i++) B[i] = (float)(i + 1) * 0.5f;
    for (int i = 0; i < 15; i++) W[i] = ref[i] = (float)i;
    for (int o = 0; o < 3; o++)
        for (int j = 0; j < 5; j++) ref[o * 5 + j] += 0.5f * (B[o * 2] * A[j] + B[o * 2 + 1] * A[5 + j]);
    dt_lora_fold(W, A, B, 3, 5, 2, 0.5f);
    TEST_CHECK("lora_fold", max_diff(W, ref, 15) <= 1e-6, "max diff %.3g", max_diff(W, ref, 15));
}

// Bad input through the binary: exit 2, a message naming the file (and tensor), no output left.
static void expect_refused(const char *label, const char *args, const char *out, const char *want1, const char *want2) {
    char log[256], full[2048];
    snprintf(log, sizeof log, "%s/log.txt", tmp);
    snprintf(full, sizeof full, "merge %s --out %s", args, out);
    int rc = tf_run(full, log);
    char *msg = tf_slurp(log, NULL);
    const char *slash = strrchr(out, '/');
    // The message names the user's files, never the temporary the output is written into.
    TEST_CHECK(label, rc == 2 && msg && strstr(msg, want1) && (!want2 || strstr(msg, want2)) && !strstr(msg, ".tmp.") &&
                          access(out, F_OK) && tf_count_prefix(tmp, slash + 1) == 0,
               "exit %d (want 2), leftovers %d, message: %s", rc, tf_count_prefix(tmp, slash + 1), msg ? msg : "");
    free(msg);
}

static void truncate_copy(const char *src, const char *dst, size_t keep) {
    size_t n;
    char *x = tf_slurp(src, &n);
    if (x) tf_write(dst, x, keep < n ? keep : n);
    free(x);
}

static void replace_in_file(const char *path, const char *from, const char *to) {
    size_t n;
    char *x = tf_slurp(path, &n), *at = x ? strstr(x, from) : NULL;
    if (!at) { free(x); return; }
    size_t a = (size_t)(at - x), fl = strlen(from), tl = strlen(to);
    char *y = malloc(n - fl + tl + 1);
    memcpy(y, x, a);
    memcpy(y + a, to, tl);
    memcpy(y + a + tl, at + fl, n - a - fl);
    tf_write(path, y, n - fl + tl);
    free(x);
    free(y);
}

// A copy of the llama_gqa model in dir whose layer 0 q_proj holds 1e5 at one element, beyond f16's range.
static bool big_value_model(const char *dir) {
    tf_copy_dir("tests/golden/llama_gqa", dir);
    dt_safetensors *st = NULL;
    dt_st_writer *w = NULL;
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    bool ok = !dt_st_open(&ctx, "tests/golden/llama_gqa/model.safetensors", &st) && !dt_st_writer_init(&ctx, &w);
    float *bufs[64] = {0};
    size_t n = ok ? dt_st_count(st) : 0;
    for (size_t i = 0; ok && i < n && i < 64; i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        bufs[i] = malloc(t->nbytes / dt_st_dtype_size(t->st_dtype) * sizeof(float));
        ok = bufs[i] && !dt_st_tensor_copy(&ctx, p, t, DT_F32, bufs[i]);
        if (ok && !strcmp(t->name, "model.layers.0.self_attn.q_proj.weight")) bufs[i][5] = 1e5f;
        ok = ok && !dt_st_writer_add(&ctx, w, t->name, DT_F32, t->ndim, t->shape, bufs[i]);
    }
    ok = ok && n <= 64 && !dt_st_writer_write(&ctx, w, p);
    for (size_t i = 0; i < 64; i++) free(bufs[i]);
    dt_st_writer_free(w);
    dt_st_close(st);
    return ok;
}

// Values beyond f16's range are refused, never written as infinities: a plain conversion (HF), a
// computed tensor (GGUF's permuted q_proj), and a base loaded as f16.
static void test_f16_range(void) {
    char d[256], args[1024], out[256], q[256], p[512];
    snprintf(d, sizeof d, "%s/big", tmp);
    if (!big_value_model(d)) { TEST_FAIL("merge_f16_range_model", "%s", ctx.msg); return; }
    snprintf(out, sizeof out, "%s/big_out", tmp);
    snprintf(q, sizeof q, "%s/big_out.gguf", tmp);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    snprintf(args, sizeof args, "--model %s --dtype f16", d);
    expect_refused("merge_refuses_f16_overflow", args, out, "model.layers.0.self_attn.q_proj.weight", "beyond f16's range");
    snprintf(args, sizeof args, "--model %s --dtype f16 --format gguf --tokenizer tests/data/gguf/tok_spm", d);
    expect_refused("merge_refuses_f16_overflow_computed", args, q, "model.layers.0.self_attn.q_proj.weight", "beyond f16's range");
    snprintf(args, sizeof args, "--model %s --dtype bf16", d); // bf16 has f32's range
    char log[256], full[1400];
    snprintf(log, sizeof log, "%s/log.txt", tmp);
    snprintf(full, sizeof full, "merge %s --out %s", args, out);
    TEST_CHECK("merge_bf16_keeps_large_values", tf_run(full, log) == 0, "exit not 0");
    snprintf(full, sizeof full, "eval --model %s --data tests/data/train/tokens.jsonl --format tokens --dtype f16", d);
    int rc = tf_run(full, log);
    char *msg = tf_slurp(log, NULL);
    TEST_CHECK("eval_refuses_f16_overflow", rc == 2 && msg && strstr(msg, p) && strstr(msg, "q_proj") &&
               strstr(msg, "beyond f16's range"), "exit %d, message: %s", rc, msg ? msg : "");
    free(msg);
}

static void test_bad_input(void) {
    if (access("./deltatune", X_OK)) { TEST_SKIP("merge_bad_input", "./deltatune not built"); return; }
    char d[256], args[1024], out[256], p[512], q[512];
    snprintf(out, sizeof out, "%s/bad_out", tmp);
    snprintf(d, sizeof d, "%s/empty", tmp);
    mkdir(d, 0755);
    snprintf(args, sizeof args, "--model tests/golden/llama_gqa --adapter %s", d);
    expect_refused("merge_refuses_no_adapter", args, out, d, "adapter_config.json");
    // config.json that does not match the tensors: intermediate_size 96 -> 80.
    snprintf(d, sizeof d, "%s/badcfg", tmp);
    tf_copy_dir("tests/golden/llama_gqa", d);
    snprintf(p, sizeof p, "%s/config.json", d);
    replace_in_file(p, "\"intermediate_size\": 96", "\"intermediate_size\": 80");
    snprintf(args, sizeof args, "--model %s --adapter tests/golden/llama_gqa/adapter", d);
    expect_refused("merge_refuses_config_mismatch", args, out, "model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight'", "expected [80, 64]");
    // An adapter whose rank does not fit its tensors, and one made for another model.
    snprintf(d, sizeof d, "%s/badrank", tmp);
    tf_copy_dir("tests/golden/llama_gqa/adapter", d);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    replace_in_file(p, "\"r\": 4", "\"r\": 8");
    snprintf(args, sizeof args, "--model tests/golden/llama_gqa --adapter %s", d);
    expect_refused("merge_refuses_rank_mismatch", args, out, "adapter_model.safetensors: tensor 'base_model.model.model.layers.0", "expected [8, 64]");
    expect_refused("merge_refuses_other_model_adapter", "--model tests/golden/llama_gqa --adapter tests/golden/qwen3_qknorm/adapter", out,
                   "qwen3_qknorm/adapter/adapter_model.safetensors: tensor", "expected");
    // Truncated files: the model's weights, the adapter's weights.
    snprintf(d, sizeof d, "%s/trunc", tmp);
    tf_copy_dir("tests/golden/llama_gqa", d);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    truncate_copy("tests/golden/llama_gqa/model.safetensors", p, 200000);
    snprintf(args, sizeof args, "--model %s --adapter tests/golden/llama_gqa/adapter", d);
    expect_refused("merge_refuses_truncated_model", args, out, p, NULL);
    snprintf(d, sizeof d, "%s/trunc_adapter", tmp);
    tf_copy_dir("tests/golden/llama_gqa/adapter", d);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    truncate_copy("tests/golden/llama_gqa/adapter/adapter_model.safetensors", p, 5000);
    snprintf(args, sizeof args, "--model tests/golden/llama_gqa --adapter %s", d);
    expect_refused("merge_refuses_truncated_adapter", args, out, p, NULL);
    // Architectures: one we do not know at all, and a Qwen3 with biases that llama.cpp cannot hold.
    snprintf(d, sizeof d, "%s/gpt2", tmp);
    tf_copy_dir("tests/golden/llama_gqa", d);
    snprintf(p, sizeof p, "%s/config.json", d);
    replace_in_file(p, "LlamaForCausalLM", "GPT2LMHeadModel");
    snprintf(args, sizeof args, "--model %s --adapter tests/golden/llama_gqa/adapter", d);
    expect_refused("merge_refuses_unknown_architecture", args, out, p, "GPT2LMHeadModel");
    snprintf(d, sizeof d, "%s/qwen3bias", tmp);
    tf_copy_dir("tests/golden/qwen3_qknorm", d);
    snprintf(p, sizeof p, "%s/config.json", d);
    replace_in_file(p, "\"attention_bias\": false", "\"attention_bias\": true");
    snprintf(args, sizeof args, "--model %s --format gguf --tokenizer tests/data/gguf/tok_spm", d);
    snprintf(q, sizeof q, "%s/bad_out.gguf", tmp);
    expect_refused("merge_refuses_unexportable_architecture", args, q, d, "cannot be exported");
    expect_refused("merge_refuses_prompt_tuning", "--model tests/golden/llama_gqa --adapter tests/golden/prompt_tuning/adapter", out,
                   "PROMPT_TUNING adapter cannot be merged", NULL);
    // A tokenizer that cannot be read: the GGUF file is not left half-written.
    snprintf(d, sizeof d, "%s/empty", tmp);
    snprintf(args, sizeof args, "--model tests/golden/llama_gqa --adapter tests/golden/llama_gqa/adapter --format gguf --tokenizer %s", d);
    expect_refused("merge_refuses_missing_tokenizer", args, q, "tokenizer.json", NULL);
    // An existing output folder is left alone.
    snprintf(d, sizeof d, "%s/exists", tmp);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/keep.txt", d);
    tf_write(p, "x", 1);
    char log[256];
    snprintf(log, sizeof log, "%s/log.txt", tmp);
    snprintf(args, sizeof args, "merge --model tests/golden/llama_gqa --adapter tests/golden/llama_gqa/adapter --out %s", d);
    int rc = tf_run(args, log);
    TEST_CHECK("merge_refuses_existing_output", rc == 2 && !access(p, F_OK) && tf_count_prefix(tmp, "exists") == 1, "exit %d", rc);
}

// IA3 scales the biases of the modules it scales (b' = l * b); a bias the base lacks stays zero. So an IA3
// adapter on k/v of a model without attention biases merges with no bias tensors added: a Mistral
// (whose config cannot declare attention biases) merges instead of being refused, and a Llama keeps
// attention_bias false. The merged logits equal the unmerged forward's.
static void test_ia3_no_bias(void) {
    static const char *const archs[][3] = {{"llama", NULL, NULL}, {"mistral", "LlamaForCausalLM", "MistralForCausalLM"}};
    for (size_t i = 0; i < 2; i++) {
        char model[256], out[256], path[300], label[96];
        snprintf(model, sizeof model, "%s/ia3_%s_base", tmp, archs[i][0]);
        snprintf(out, sizeof out, "%s/ia3_%s_merged", tmp, archs[i][0]);
        snprintf(label, sizeof label, "merge_ia3_%s_adds_no_bias", archs[i][0]);
        tf_copy_dir("tests/golden/llama_gqa", model);
        snprintf(path, sizeof path, "%s/config.json", model);
        if (archs[i][1]) {
            replace_in_file(path, archs[i][1], archs[i][2]);
            replace_in_file(path, "\"llama\"", "\"mistral\"");
        }
        dt_merge_adapter ad = {"tests/golden/ia3/adapter", 1.0f};
        int rc = merge(model, &ad, 1, out, -1, DT_MERGE_HF, NULL);
        if (rc) { TEST_FAIL(label, "rc %d: %s", rc, ctx.msg); continue; }
        snprintf(path, sizeof path, "%s/model.safetensors", out);
        dt_safetensors *st = NULL;
        int biases = -1;
        if (!dt_st_open(&ctx, path, &st)) {
            biases = 0;
            for (size_t k = 0; k < dt_st_count(st); k++) biases += strstr(dt_st_at(st, k)->name, ".bias") != NULL;
            dt_st_close(st);
        }
        snprintf(path, sizeof path, "%s/config.json", out);
        size_t n;
        char *cfg = tf_slurp(path, &n);
        TEST_CHECK(label, biases == 0 && cfg && !strstr(cfg, "\"attention_bias\": true"), "%d bias tensors; config %s", biases,
                   cfg ? cfg : "(none)");
        free(cfg);
        // merged vs unmerged logits
        const int32_t ids[8] = {1, 17, 5, 99, 42, 7, 63, 120};
        size_t nm = 0;
        float *merged = forward_logits(out, ids, 1, 8, &nm), *unmerged = NULL;
        dt_llama *m = NULL;
        dt_adapter *a = NULL;
        dt_graph g = {0};
        dt_llama_out o;
        dt_batch b = {1, 8, ids, NULL, NULL, NULL};
        if (!dt_llama_load(&ctx, model, dt_backend_cpu(), &m) && !dt_adapter_load(&ctx, ad.dir, m, &a) &&
            !dt_graph_init(&ctx, &g, dt_backend_cpu(), 0) && !dt_llama_forward(&ctx, &g, m, &a->view, &b, 0, true, &o) &&
            (size_t)dt_numel(o.logits) == nm && (unmerged = malloc(nm * sizeof(float))))
            memcpy(unmerged, o.logits->data, nm * sizeof(float));
        snprintf(label, sizeof label, "merge_ia3_%s_vs_unmerged", archs[i][0]);
        if (!merged || !unmerged) TEST_FAIL(label, "%s", ctx.msg);
        else TEST_CHECK(label, max_diff(merged, unmerged, nm) <= 1e-5 * max_abs(unmerged, nm), "max diff %.3g",
                        max_diff(merged, unmerged, nm));
        free(merged);
        free(unmerged);
        dt_graph_free(&g);
        dt_adapter_free(a);
        dt_llama_free(m);
    }
}

// A merge weight that is not a finite number (--adapter DIR:nan, :inf, or :1e39, which strtof makes inf)
// would write NaN or infinite weights into every tensor the adapter touches: refused, naming the adapter,
// before anything is written; for HF and GGUF outputs, through the library and the command line.
static void test_nonfinite_weight(void) {
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    const char *names[3] = {"nan", "inf", "-inf"};
    char out[256], label[96];
    for (int i = 0; i < 3; i++)
        for (int f = 0; f < 2; f++) {
            const dt_merge_adapter ad[2] = {{"tests/golden/llama_gqa/adapter", 0.5f}, {"tests/golden/llama_gqa/adapter", bad[i]}};
            snprintf(out, sizeof out, "%s/nonfinite_%d_%d%s", tmp, i, f, f ? ".gguf" : "");
            snprintf(label, sizeof label, "merge_refuses_weight_%s_%s", names[i], f ? "gguf" : "hf");
            int rc = merge("tests/golden/llama_gqa", ad, 2, out, DT_F32, f ? DT_MERGE_GGUF : DT_MERGE_HF, f ? "tests/data/gguf/tok_spm" : NULL);
            TEST_CHECK(label, rc == DT_EINPUT && strstr(ctx.msg, "tests/golden/llama_gqa/adapter") && strstr(ctx.msg, "weight") &&
                       access(out, F_OK) != 0, "rc %d (want %d), %s: %s", rc, DT_EINPUT, access(out, F_OK) ? "no output" : "output written",
                       rc ? ctx.msg : "");
        }
    if (access("./deltatune", X_OK)) { TEST_SKIP("merge_refuses_weight_cli", "./deltatune not built"); return; }
    snprintf(out, sizeof out, "%s/nonfinite_cli", tmp);
    expect_refused("merge_refuses_weight_cli_1e39", "--model tests/golden/llama_gqa --adapter tests/golden/llama_gqa/adapter:1e39", out,
                   "tests/golden/llama_gqa/adapter", "weight");
}

// config.json with "torch_dtype": null (what PretrainedConfig.to_dict() gives a config with no dtype):
// --dtype must set that key, not add a second "torch_dtype" beside it (Python's json keeps the last of
// duplicate keys, so transformers would read null).
static void test_null_torch_dtype(void) {
    char base[256], cfg[300], out[256], ocfg[300];
    snprintf(base, sizeof base, "%s/null_dtype", tmp);
    snprintf(cfg, sizeof cfg, "%s/config.json", base);
    snprintf(out, sizeof out, "%s/null_dtype_merged", tmp);
    snprintf(ocfg, sizeof ocfg, "%s/config.json", out);
    mkdir(base, 0755);
    tf_copy_dir("tests/golden/llama_gqa", base);
    replace_in_file(cfg, "\"torch_dtype\": \"float32\"", "\"torch_dtype\": null");
    const dt_merge_adapter ad = {"tests/golden/llama_gqa/adapter", 1.0f};
    int rc = merge(base, &ad, 1, out, DT_BF16, DT_MERGE_HF, NULL);
    char *text = rc ? NULL : tf_slurp(ocfg, NULL);
    const char *first = text ? strstr(text, "\"torch_dtype\"") : NULL;
    TEST_CHECK("merge_sets_null_torch_dtype", first && !strstr(first + 1, "\"torch_dtype\"") && strstr(text, "\"torch_dtype\": \"bfloat16\"") &&
               !strstr(text, "\"torch_dtype\": null"), "%s", rc ? ctx.msg : text ? text : "no config.json");
    free(text);
}

// A bitsandbytes 4-bit checkpoint (a QLoRA base) as the merge's base: its packed U8 weights are no model
// tensors the merge can fold into. It is refused as such, exit 2, pointing at the unquantized base, rather
// than with a shape error about "q_proj.weight" being [2048, 1].
static void test_bnb4_base(void) {
    char dir[256], out[256], args[1024];
    snprintf(dir, sizeof dir, "%s/bnb4_base", tmp);
    snprintf(out, sizeof out, "%s/bnb4_merged", tmp);
    const dt_load_opts lo = {.quantize = DT_NF4, .double_quant = true};
    dt_llama *m = NULL;
    if (dt_llama_load_ex(&ctx, GQA, dt_backend_cpu(), &lo, &m) || !write_bnb(m, dir, NULL)) {
        TEST_FAIL("merge_refuses_bnb4_base", "setup: %s", ctx.msg);
        dt_llama_free(m);
        return;
    }
    dt_llama_free(m);
    if (access("./deltatune", X_OK)) { TEST_SKIP("merge_refuses_bnb4_base", "./deltatune not built"); return; }
    snprintf(args, sizeof args, "--model %s --adapter tests/golden/llama_gqa/adapter --dtype f32", dir);
    expect_refused("merge_refuses_bnb4_base", args, out, "bitsandbytes 4-bit", "unquantized base");
}

int main(void) {
    dt_ctx_init(&ctx);
    snprintf(tmp, sizeof tmp, "/tmp/dt_merge_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("merge_tmp", "mkdtemp"); TEST_EXIT(); }
    test_fold();
    test_f16_range();
    const char *cases[] = {"llama_gqa", "qwen2_bias", "qwen3_qknorm", "llama3_rope"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_case(cases[i], NULL);
    test_case("rank_pattern", "llama_gqa"); // per-module ranks and alphas: each module's own scale folded in
    char second[256];
    snprintf(second, sizeof second, "%s/second_adapter", tmp);
    if (!make_second_adapter(second)) TEST_FAIL("merge_second_adapter", "%s", ctx.msg);
    else {
        test_two_adapters(second);
        test_against_fold(second);
        test_sharded(second);
        test_gguf(second);
    }
    test_llama2c();
    test_ia3_no_bias();
    test_bad_input();
    test_nonfinite_weight();
    test_null_torch_dtype();
    test_bnb4_base();
    tf_rm_tree(tmp);
    TEST_EXIT();
}
