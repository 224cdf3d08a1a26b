// The quantized-base round trip through real llama.cpp (not part of `make test`; see README.md here):
//   make_quant_base TOKENIZER_DIR OUT_DIR TYPE   (TYPE: q8_0, q4_K, ...)
// writes a random Hugging Face Llama (hidden 256 so that k-quant rows are whole blocks) to OUT/hf, then
// OUT/base.gguf with every linear and the embeddings as TYPE by our own writer (merge --dtype TYPE);
// trains a LoRA on that GGUF base with `deltatune train` (OUT/run); exports it as OUT/lora.gguf; and
// writes OUT/ref.json: our greedy ids for a fixed prompt on the GGUF base with the adapter (unmerged).
// check_quant_base.mjs then runs the same prompt in llama.cpp with base.gguf + lora.gguf.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "autograd/quant.h"
#include "models/llama.h"
#include "models/llama_infer.h"
#include "models/safetensors_write.h"
#include "peft/export_gguf.h"
#include "peft/merge.h"
#include "peft/peft_io.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float uniform(void) { // [-1, 1)
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

enum { D = 256, F = 512, L = 2, H = 4, KV = 2, V = 32000 };

static int write_hf(dt_ctx *ctx, const char *dir) {
    char p[1024 + 32]; // dir (up to 1024) + "/model.safetensors"
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    if (!f) return dt_fail(ctx, DT_EIO, "%s: cannot write", p);
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
               "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
               "\"vocab_size\": %d, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
               "\"tie_word_embeddings\": false, \"torch_dtype\": \"float32\", \"bos_token_id\": 1, \"eos_token_id\": 2}\n",
            D, F, L, H, KV, V);
    fclose(f);
    dt_st_writer *w;
    int rc = dt_st_writer_init(ctx, &w);
    if (rc) return rc;
    float *bufs[64];
    int nb = 0;
    char name[256];
    const int64_t rows[DT_MOD_COUNT] = {H * 64, KV * 64, KV * 64, D, F, F, D}, cols[DT_MOD_COUNT] = {D, D, D, H * 64, D, D, F};
    for (int g = -3; g < L * DT_MOD_COUNT + 2 * L && !rc; g++) {
        int64_t r, c;
        float scale, center = 0;
        if (g < 0) { // embed, norm, lm_head
            const int k = g + 3;
            snprintf(name, sizeof name, "%s", dt_tn_global((dt_global_tensor)k));
            r = k == 1 ? D : V;
            c = k == 1 ? 1 : D;
            scale = k == 1 ? 0.1f : k == 0 ? 1.0f : sqrtf(3.0f / D) * 4.0f; // a peaked head: clear greedy choices
            center = k == 1 ? 1.0f : 0.0f;
        } else if (g < L * DT_MOD_COUNT) {
            dt_tn_layer(name, sizeof name, g / DT_MOD_COUNT, (dt_layer_tensor)(g % DT_MOD_COUNT));
            r = rows[g % DT_MOD_COUNT];
            c = cols[g % DT_MOD_COUNT];
            scale = sqrtf(3.0f / (float)c);
        } else {
            const int k = g - L * DT_MOD_COUNT;
            dt_tn_layer(name, sizeof name, k / 2, k % 2 ? DT_LT_FFN_NORM : DT_LT_ATTN_NORM);
            r = D;
            c = 1;
            scale = 0.1f;
            center = 1.0f;
        }
        float *x = malloc((size_t)(r * c) * sizeof *x);
        for (int64_t i = 0; i < r * c; i++) x[i] = center + scale * uniform();
        bufs[nb++] = x;
        const int64_t shape[2] = {r, c};
        rc = dt_st_writer_add(ctx, w, name, DT_F32, c == 1 ? 1 : 2, shape, x);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (!rc) rc = dt_st_writer_write(ctx, w, p);
    dt_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return rc;
}

static int write_train_data(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    for (int r = 0; r < 16; r++) { // a repeating pattern the adapter can learn
        fprintf(f, "{\"input_ids\":[");
        for (int t = 0; t < 48; t++) fprintf(f, "%s%d", t ? "," : "", 300 + (r * 7 + t * 13) % 97);
        fprintf(f, "]}\n");
    }
    return fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: make_quant_base TOKENIZER_DIR OUT_DIR TYPE\n"); return 2; }
    const char *tok = argv[1], *out = argv[2];
    const int type = dt_quant_from_name(argv[3]);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char hf[1024], base[1024], run[1024], cmd[4096], data[1024], recipe[1024], adapter[1024], lora[1024], ref[1024];
    mkdir(out, 0755);
    snprintf(hf, sizeof hf, "%s/hf", out);
    snprintf(base, sizeof base, "%s/base.gguf", out);
    snprintf(run, sizeof run, "%s/run", out);
    snprintf(data, sizeof data, "%s/train.jsonl", out);
    snprintf(recipe, sizeof recipe, "%s/recipe.yaml", out);
    snprintf(adapter, sizeof adapter, "%s/run", out);
    snprintf(lora, sizeof lora, "%s/lora.gguf", out);
    snprintf(ref, sizeof ref, "%s/ref.json", out);
    dt_merge_opts mo = {.model = hf, .out = base, .dtype = type, .format = DT_MERGE_GGUF, .tokenizer = tok};
    if (type < 0 || write_hf(&ctx, hf) || dt_merge(&ctx, &mo)) { fprintf(stderr, "base: %s\n", ctx.msg); return 1; }
    if (write_train_data(data)) { fprintf(stderr, "cannot write %s\n", data); return 1; }
    FILE *f = fopen(recipe, "w");
    fprintf(f, "model:\n  path: %s\nmethod:\n  name: lora\n  r: 8\n  alpha: 16\n  target_modules: all-linear\n"
               "data:\n  train: %s\n  format: tokens\n  max_seq_len: 48\ntrain:\n  max_steps: 30\n  batch_size: 4\n"
               "  optimizer:\n    name: adamw\n    lr: 1e-2\n  save_every_n_steps: 0\n  seed: 1\noutput_dir: %s\n", base, data, run);
    fclose(f);
    snprintf(cmd, sizeof cmd, "rm -rf %s && ./deltatune train %s 2>&1 | grep -E \"^base|^step 30|^done\"", run, recipe);
    if (system(cmd)) { fprintf(stderr, "train failed\n"); return 1; }
    dt_export_info info;
    if (dt_export_lora_gguf(&ctx, adapter, base, lora, &info)) { fprintf(stderr, "export: %s\n", ctx.msg); return 1; }
    // Our greedy ids on the GGUF base with the adapter unmerged.
    dt_llama *m;
    dt_adapter *a;
    if (dt_llama_load(&ctx, base, dt_backend_cpu(), &m) || dt_adapter_load(&ctx, adapter, m, &a)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    int32_t prompt[6] = {1, 300, 313, 326, 339, 352}, ids[6 + 12];
    memcpy(ids, prompt, sizeof prompt);
    float *lg = malloc((size_t)V * sizeof *lg);
    dt_kv_cache c;
    if (dt_kv_cache_init(&ctx, m, 64, &c)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    int n = 6;
    if (dt_llama_infer(&ctx, m, &a->view, &c, ids, n, lg)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    f = fopen(ref, "w");
    fprintf(f, "{\"prompt\": [1,300,313,326,339,352], \"greedy\": [");
    for (int k = 0; k < 12; k++) {
        int best = 0;
        float second = -INFINITY;
        for (int v = 1; v < V; v++) if (lg[v] > lg[best]) best = v;
        for (int v = 0; v < V; v++) if (v != best && lg[v] > second) second = lg[v];
        fprintf(f, "%s%d", k ? "," : "", best);
        fprintf(stderr, "step %d: id %d, margin to the runner-up %.3f\n", k, best, lg[best] - second);
        ids[n] = best;
        if (dt_llama_infer(&ctx, m, &a->view, &c, ids + n, 1, lg)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
        n++;
    }
    fprintf(f, "]}\n");
    fclose(f);
    printf("wrote %s, %s (%d pairs), %s\n", base, lora, info.n_pairs, ref);
    return 0;
}
