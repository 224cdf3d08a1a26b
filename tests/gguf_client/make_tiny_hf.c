// Writes a tiny random Hugging Face model with a real tokenizer, two PEFT adapters for it, and our own
// reference outputs, for checking `deltatune export` and `deltatune merge --format gguf` in a real
// llama.cpp (tests/gguf_client/check_export.mjs). Not part of `make test`; see README.md here.
//   make_tiny_hf KIND TOKENIZER_DIR OUT_DIR
// KIND: llama (GQA 4/2, untied), llama3 (llama3 RoPE scaling, tied), qwen2 (q/k/v biases),
//       qwen3 (q/k norms, head_dim 32 != hidden/heads, tied); all f32. The vocabulary is the tokenizer's size.
// OUT_DIR/model: config.json, model.safetensors, tokenizer files. OUT_DIR/lora: LoRA r=4 alpha=8 on every
// linear module, B random. OUT_DIR/rslora: rsLoRA r=8 alpha=4 on q/k/v/o of layer 1. OUT_DIR/ref.json: the
// prompt ids, and for "base" (no adapter), "lora" (lora at weight 1) and "both" (lora at 1 + rslora at 0.5): the logits after
// the prompt and 8 greedy ids, from our KV-cache forward with the adapters unmerged.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "models/llama_infer.h"
#include "models/safetensors_write.h"
#include "peft/peft_io.h"

static uint64_t rng_state = 88172645463325252ull;
static float uniform(void) { // [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / (float)(1 << 23) - 1.0f;
}

static int copy_file(const char *src, const char *dst) {
    FILE *a = fopen(src, "rb"), *b = a ? fopen(dst, "wb") : NULL;
    if (!a || !b) { if (a) fclose(a); return 1; }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    return fclose(b) != 0;
}

// The tokenizer's size: the largest id in model.vocab and added_tokens, plus one.
static int64_t vocab_size(const char *tokdir) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizer.json", tokdir);
    json_t *t = json_load_file(p, 0, NULL);
    if (!t) return -1;
    int64_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(t, "model"), "vocab"), k, v)
        if (json_integer_value(v) + 1 > n) n = json_integer_value(v) + 1;
    size_t i;
    json_array_foreach(json_object_get(t, "added_tokens"), i, v)
        if (json_integer_value(json_object_get(v, "id")) + 1 > n) n = json_integer_value(json_object_get(v, "id")) + 1;
    json_decref(t);
    return n;
}

static int write_config(const char *kind, int64_t V, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    const bool qwen3 = !strcmp(kind, "qwen3"), qwen2 = !strcmp(kind, "qwen2"), l3 = !strcmp(kind, "llama3");
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n",
            qwen3 ? "Qwen3ForCausalLM" : qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", qwen3 ? "qwen3" : qwen2 ? "qwen2" : "llama");
    fprintf(f, "  \"hidden_size\": 64,\n  \"intermediate_size\": 128,\n  \"num_hidden_layers\": 2,\n"
               "  \"num_attention_heads\": 4,\n  \"num_key_value_heads\": 2,\n  \"vocab_size\": %lld,\n"
               "  \"max_position_embeddings\": 256,\n  \"rms_norm_eps\": 1e-05,\n", (long long)V);
    if (qwen3) fprintf(f, "  \"head_dim\": 32,\n");
    fprintf(f, "  \"rope_theta\": %s,\n", l3 ? "500000.0" : qwen2 || qwen3 ? "1000000.0" : "10000.0");
    if (l3) fprintf(f, "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                       "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 32},\n");
    fprintf(f, "  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\"\n}\n", l3 || qwen3 ? "true" : "false",
            "float32");
    return fclose(f) != 0;
}

// Random weights for every tensor the config implies: linears U(-1,1)*sqrt(3/fan_in), embeddings U(-1,1),
// norms 1 + 0.1 U, biases 0.1 U.
static int write_weights(dt_ctx *ctx, const dt_model_config *c, const char *path) {
    dt_st_writer *w;
    int rc = dt_st_writer_init(ctx, &w);
    if (rc) return rc;
    rc = dt_st_writer_set_metadata(ctx, w, "format", "pt");
    const int64_t D = c->hidden_size, V = c->vocab_size, F = c->intermediate_size, hd = c->head_dim;
    const int64_t q = (int64_t)c->num_heads * hd, kv = (int64_t)c->num_kv_heads * hd;
    const dt_dtype dt = c->torch_dtype;
    void *bufs[64];
    int nb = 0;
    char name[256];
    struct { int lt; int64_t r, cols; float scale, center; } spec[DT_LT_COUNT] = {
        {DT_LT_Q, q, D, 0, 0}, {DT_LT_K, kv, D, 0, 0}, {DT_LT_V, kv, D, 0, 0}, {DT_LT_O, D, q, 0, 0},
        {DT_LT_GATE, F, D, 0, 0}, {DT_LT_UP, F, D, 0, 0}, {DT_LT_DOWN, D, F, 0, 0},
        {DT_LT_Q_BIAS, q, 0, 0.1f, 0}, {DT_LT_K_BIAS, kv, 0, 0.1f, 0}, {DT_LT_V_BIAS, kv, 0, 0.1f, 0},
        {DT_LT_Q_NORM, hd, 0, 0.1f, 1}, {DT_LT_K_NORM, hd, 0, 0.1f, 1}, {DT_LT_ATTN_NORM, D, 0, 0.1f, 1}, {DT_LT_FFN_NORM, D, 0, 0.1f, 1},
    };
    for (int g = 0; g < 3 + c->num_layers * DT_LT_COUNT && !rc; g++) {
        int64_t rows, cols;
        float scale, center = 0;
        if (g < 3) {
            if (g == 2 && c->tie_word_embeddings) continue;
            snprintf(name, sizeof name, "%s", dt_tn_global((dt_global_tensor)g));
            rows = g == 1 ? D : V;
            cols = g == 1 ? 0 : D;
            scale = g == 0 ? 1.0f : g == 1 ? 0.1f : sqrtf(3.0f / (float)D);
            center = g == 1 ? 1.0f : 0.0f;
        } else {
            const int l = (g - 3) / DT_LT_COUNT, t = (g - 3) % DT_LT_COUNT;
            const bool bias = t == DT_LT_Q_BIAS || t == DT_LT_K_BIAS || t == DT_LT_V_BIAS, norm = t == DT_LT_Q_NORM || t == DT_LT_K_NORM;
            if ((bias && !c->attention_bias) || (norm && !c->qk_norm)) continue;
            dt_tn_layer(name, sizeof name, l, (dt_layer_tensor)t);
            rows = spec[t].r;
            cols = spec[t].cols;
            scale = cols ? sqrtf(3.0f / (float)cols) : spec[t].scale;
            center = spec[t].center;
        }
        size_t n = (size_t)(rows * (cols ? cols : 1));
        float *x = malloc(n * sizeof(float));
        void *y = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) x[i] = center + scale * uniform();
        dt_convert_from_f32(y, dt, x, n);
        free(x);
        bufs[nb++] = y;
        int64_t shape[2] = {rows, cols};
        rc = dt_st_writer_add(ctx, w, name, dt, cols ? 2 : 1, shape, y);
    }
    if (!rc) rc = dt_st_writer_write(ctx, w, path);
    dt_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return rc;
}

static int make_adapter(dt_ctx *ctx, const dt_llama *m, const dt_lora_config *lc, const char *dir) {
    dt_adapter *a;
    int rc = dt_lora_create(ctx, m, lc, 5, &a);
    if (rc) return rc;
    for (int i = 0; i < a->n_tensors; i++)
        if (strstr(a->names[i], "lora_B"))
            for (int64_t j = 0; j < dt_numel(&a->tensors[i]); j++) dt_f32(&a->tensors[i])[j] = 0.3f * uniform();
    rc = dt_adapter_save(ctx, a, m, dir);
    dt_adapter_free(a);
    return rc;
}

// Logits after the prompt and n greedy ids of m with the adapters (scaled by weights) applied unmerged.
static int reference(dt_ctx *ctx, const dt_llama *m, dt_adapter **ad, const float *weights, int n_ad,
                     const int32_t *prompt, int np, FILE *out, const char *key) {
    const int64_t K = (int64_t)m->cfg.num_layers * DT_MOD_COUNT, V = m->cfg.vocab_size;
    const dt_linear_hook **chain = calloc((size_t)K, sizeof *chain);
    dt_lora_ref *refs = calloc((size_t)(K * n_ad), sizeof *refs);
    dt_linear_hook *hooks = calloc((size_t)(K * n_ad), sizeof *hooks);
    for (int i = 0; i < n_ad; i++)
        for (int64_t k = 0; k < K; k++)
            if (ad[i]->ref_ptrs[k]) {
                refs[i * K + k] = ad[i]->refs[k];
                refs[i * K + k].scale *= weights[i];
                hooks[i * K + k] = dt_lora_hook(&refs[i * K + k]);
                hooks[i * K + k].next = chain[k];
                chain[k] = &hooks[i * K + k];
            }
    dt_llama_adapters view = {.linear = chain};
    dt_kv_cache c = {0};
    float *logits = malloc((size_t)V * sizeof(float));
    int rc = dt_kv_cache_init(ctx, m, np + 16, &c);
    if (!rc) rc = dt_llama_infer(ctx, m, &view, &c, prompt, np, logits);
    fprintf(out, "  \"%s\": {\n    \"logits\": [", key);
    for (int64_t i = 0; i < V && !rc; i++) fprintf(out, "%s%.9g", i ? "," : "", (double)logits[i]);
    fprintf(out, "],\n    \"greedy\": [");
    for (int s = 0; s < 8 && !rc; s++) {
        int32_t best = 0;
        for (int64_t i = 1; i < V; i++) if (logits[i] > logits[best]) best = (int32_t)i;
        fprintf(out, "%s%d", s ? "," : "", best);
        rc = dt_llama_infer(ctx, m, &view, &c, &best, 1, logits);
    }
    fprintf(out, "]\n  }");
    dt_kv_cache_free(&c);
    free(logits);
    free(chain);
    free(refs);
    free(hooks);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: make_tiny_hf llama|llama3|qwen2|qwen3 TOKENIZER_DIR OUT_DIR\n");
        return 2;
    }
    const char *kind = argv[1], *tok = argv[2], *out = argv[3];
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char mdir[1024], p[1200], q[1200], lora[1024], rslora[1024];
    snprintf(mdir, sizeof mdir, "%s/model", out);
    snprintf(lora, sizeof lora, "%s/lora", out);
    snprintf(rslora, sizeof rslora, "%s/rslora", out);
    mkdir(out, 0755);
    mkdir(mdir, 0755);
    const int64_t V = vocab_size(tok);
    snprintf(p, sizeof p, "%s/config.json", mdir);
    if (V <= 0 || write_config(kind, V, p)) { fprintf(stderr, "make_tiny_hf: cannot read %s/tokenizer.json or write %s\n", tok, p); return 1; }
    const char *files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", tok, files[i]);
        snprintf(q, sizeof q, "%s/%s", mdir, files[i]);
        copy_file(p, q);
    }
    dt_model_config cfg;
    dt_llama *m = NULL;
    dt_adapter *ad[2] = {0};
    snprintf(p, sizeof p, "%s/model.safetensors", mdir);
    int rc = dt_config_load(&ctx, mdir, &cfg);
    if (!rc) rc = write_weights(&ctx, &cfg, p);
    if (!rc) rc = dt_llama_load(&ctx, mdir, dt_backend_cpu(), &m);
    dt_lora_config l1 = {.r = 4, .alpha = 8};
    for (int i = 0; i < DT_MOD_COUNT; i++) l1.target[i] = true;
    dt_lora_config l2 = {.r = 8, .alpha = 4, .use_rslora = true};
    l2.target[DT_MOD_Q] = l2.target[DT_MOD_K] = l2.target[DT_MOD_V] = l2.target[DT_MOD_O] = true;
    bool layers[2] = {false, true};
    l2.layers = layers;
    if (!rc) rc = make_adapter(&ctx, m, &l1, lora);
    if (!rc) rc = make_adapter(&ctx, m, &l2, rslora);
    if (!rc) rc = dt_adapter_load(&ctx, lora, m, &ad[0]);
    if (!rc) rc = dt_adapter_load(&ctx, rslora, m, &ad[1]);
    int32_t prompt[7];
    for (int i = 0; i < 7; i++) prompt[i] = (int32_t)((1 + 7919 * (i + 1)) % V);
    snprintf(p, sizeof p, "%s/ref.json", out);
    FILE *f = rc ? NULL : fopen(p, "w");
    if (f) {
        fprintf(f, "{\n  \"tokens\": [");
        for (int i = 0; i < 7; i++) fprintf(f, "%s%d", i ? "," : "", prompt[i]);
        fprintf(f, "],\n");
        const float w1[1] = {1.0f}, w2[2] = {1.0f, 0.5f};
        rc = reference(&ctx, m, ad, w1, 0, prompt, 7, f, "base");
        fprintf(f, ",\n");
        if (!rc) rc = reference(&ctx, m, ad, w1, 1, prompt, 7, f, "lora");
        fprintf(f, ",\n");
        if (!rc) rc = reference(&ctx, m, ad, w2, 2, prompt, 7, f, "both");
        fprintf(f, "\n}\n");
        fclose(f);
    }
    dt_adapter_free(ad[0]);
    dt_adapter_free(ad[1]);
    dt_llama_free(m);
    if (rc || !f) {
        fprintf(stderr, "make_tiny_hf: %s\n", ctx.msg);
        return 1;
    }
    printf("wrote %s/{model,lora,rslora,ref.json} (%s, vocabulary %lld)\n", out, kind, (long long)V);
    return 0;
}
