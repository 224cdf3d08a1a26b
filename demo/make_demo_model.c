// Writes the quickstart's model: a tiny Llama (2 layers, hidden 64, 4 heads / 2 KV heads, f32) with
// random weights and demo/tokenizer (one token per byte plus ChatML's three special tokens, 259 ids), as
// a Hugging Face model folder: config.json, generation_config.json, model.safetensors and the tokenizer
// files. Random weights know nothing, so what the demo's adapter makes the model say is all learned from
// demo/data. Deterministic: the same bytes on every machine.
//   make_demo_model TOKENIZER_DIR OUT_DIR
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "autograd/rng.h"
#include "models/config.h"
#include "models/safetensors_write.h"
#include "models/tensor_names.h"

#define D 64
#define F 128
#define LAYERS 2
#define HEADS 4
#define KV_HEADS 2
#define V 259
#define HD (D / HEADS)

static int copy_file(const char *src_dir, const char *dst_dir, const char *name) {
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", src_dir, name);
    snprintf(b, sizeof b, "%s/%s", dst_dir, name);
    FILE *in = fopen(a, "rb"), *out = in ? fopen(b, "wb") : NULL;
    if (!out) { if (in) fclose(in); fprintf(stderr, "make_demo_model: cannot copy %s to %s\n", a, b); return 1; }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    return fclose(out) != 0;
}

static int write_text(const char *dir, const char *name, const char *text) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) { fprintf(stderr, "make_demo_model: cannot write %s\n", p); return 1; }
    fputs(text, f);
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: make_demo_model TOKENIZER_DIR OUT_DIR\n"); return 2; }
    const char *out = argv[2];
    char dir[4096]; // mkdir -p
    snprintf(dir, sizeof dir, "%s", out);
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(dir, 0777); *p = '/'; }
    mkdir(dir, 0777);
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_size\": %d,\n"
             "  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n  \"max_position_embeddings\": 256,\n"
             "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": false,\n"
             "  \"eos_token_id\": 258,\n  \"torch_dtype\": \"float32\"\n}\n", D, F, LAYERS, HEADS, KV_HEADS, V);
    if (write_text(out, "config.json", cfg) ||
        write_text(out, "generation_config.json", "{\n  \"eos_token_id\": [258, 256]\n}\n") ||
        copy_file(argv[1], out, "tokenizer.json") || copy_file(argv[1], out, "tokenizer_config.json"))
        return 1;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_st_writer *w;
    int rc = dt_st_writer_init(&ctx, &w);
    // transformers refuses a safetensors file without the metadata torch's save_file writes.
    if (!rc) rc = dt_st_writer_set_metadata(&ctx, w, "format", "pt");
    dt_rng rng = {20251202};
    float *bufs[3 + LAYERS * DT_LT_COUNT];
    int nb = 0;
    // (rows, cols) of each layer tensor; cols 0 = a vector (norm weights, 1.0).
    int64_t shape[DT_LT_COUNT][2] = {{0}};
    shape[DT_LT_Q][0] = HEADS * HD; shape[DT_LT_Q][1] = D;
    shape[DT_LT_K][0] = KV_HEADS * HD; shape[DT_LT_K][1] = D;
    shape[DT_LT_V][0] = KV_HEADS * HD; shape[DT_LT_V][1] = D;
    shape[DT_LT_O][0] = D; shape[DT_LT_O][1] = HEADS * HD;
    shape[DT_LT_GATE][0] = F; shape[DT_LT_GATE][1] = D;
    shape[DT_LT_UP][0] = F; shape[DT_LT_UP][1] = D;
    shape[DT_LT_DOWN][0] = D; shape[DT_LT_DOWN][1] = F;
    shape[DT_LT_ATTN_NORM][0] = D;
    shape[DT_LT_FFN_NORM][0] = D;
    for (int g = 0; g < 3 + LAYERS * DT_LT_COUNT && !rc; g++) {
        char name[256];
        int64_t sh[2];
        if (g < 3) { // embeddings (V, D), final norm (D), lm_head (V, D)
            snprintf(name, sizeof name, "%s", dt_tn_global((dt_global_tensor)g));
            sh[0] = g == 1 ? D : V;
            sh[1] = g == 1 ? 0 : D;
        } else {
            int t = (g - 3) % DT_LT_COUNT;
            if (!shape[t][0]) continue; // biases and q/k norms: not in a Llama
            dt_tn_layer(name, sizeof name, (g - 3) / DT_LT_COUNT, (dt_layer_tensor)t);
            sh[0] = shape[t][0];
            sh[1] = shape[t][1];
        }
        size_t n = (size_t)(sh[0] * (sh[1] ? sh[1] : 1));
        float *x = malloc(n * sizeof(float)); // (sh[0], sh[1]) or (sh[0])
        if (!x) { fprintf(stderr, "make_demo_model: out of memory\n"); return 1; }
        // Norms 1; embeddings N(0, 1); linears N(0, 1/fan_in), so activations keep their scale.
        float sd = sh[1] == 0 ? 0.0f : g == 0 ? 1.0f : 1.0f / sqrtf((float)sh[1]);
        for (size_t i = 0; i < n; i++) x[i] = sh[1] == 0 ? 1.0f : sd * (float)dt_rng_normal(&rng);
        bufs[nb++] = x;
        rc = dt_st_writer_add(&ctx, w, name, DT_F32, sh[1] ? 2 : 1, sh, x);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    if (!rc) rc = dt_st_writer_write(&ctx, w, path);
    dt_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    if (rc) { fprintf(stderr, "make_demo_model: %s\n", ctx.msg); return 1; }
    printf("wrote %s: a random tiny Llama (hidden %d, %d layers, vocabulary %d) and its tokenizer\n", out, D, LAYERS, V);
    return 0;
}
