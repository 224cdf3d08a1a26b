// deltatune inspect on golden files: the lines it prints for a safetensors file, a sharded model folder, a
// Qwen3 model folder, PEFT LoRA / rsLoRA / prompt-tuning adapters (and per-module ranks and alphas), GGUF
// LoRA adapters (one rank, several ranks) and a GGUF model;
// parameter counts against a sum over the file's tensors; exit 2 with the path named for what it cannot read.
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "peft/export_gguf.h"
#include "peft/merge.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];

// The output of `deltatune inspect ARG` (exit status in *rc), or NULL.
static char *inspect(const char *arg, int *rc) {
    char args[1024], log[256];
    snprintf(args, sizeof args, "inspect %s", arg);
    snprintf(log, sizeof log, "%s/out.txt", tmp);
    *rc = tf_run(args, log);
    return tf_slurp(log, NULL);
}

// True when some line of out is exactly `line`.
static bool has_line(const char *out, const char *line) {
    size_t n = strlen(line);
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0')) return true;
    return false;
}

// True when some line starts with "  name" and ends with `tail` (the columns between are padding).
static bool has_tensor(const char *out, const char *name, const char *tail) {
    char head[256];
    snprintf(head, sizeof head, "  %s ", name);
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p), tl = strlen(tail);
        if (!strncmp(p, head, strlen(head)) && len >= tl && !strncmp(p + len - tl, tail, tl)) return true;
    }
    return false;
}

// Checks every line in `lines` (NULL-terminated) and reports the first one missing.
static void expect_lines(const char *label, const char *arg, const char *const *lines) {
    int rc;
    char *out = inspect(arg, &rc);
    const char *missing = NULL;
    for (int i = 0; lines[i] && !missing; i++)
        if (!out || !has_line(out, lines[i])) missing = lines[i];
    TEST_CHECK(label, rc == 0 && !missing, "exit %d; missing line '%s' in:\n%s", rc, missing ? missing : "", out ? out : "");
    free(out);
}

static long long count_params(const char *path) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *st;
    if (dt_st_open(&ctx, path, &st)) return -1;
    long long n = 0;
    for (size_t i = 0; i < dt_st_count(st); i++) n += (long long)(dt_st_at(st, i)->nbytes / 4);
    dt_st_close(st);
    return n;
}

static void test_safetensors(void) {
    char params[128];
    long long n = count_params("tests/golden/llama_gqa/model.safetensors");
    snprintf(params, sizeof params, "parameters: %lld (F32 %lld), %lld bytes of tensor data", n, n, n * 4);
    const char *lines[] = {"safetensors: tests/golden/llama_gqa/model.safetensors", "shards: 1", "metadata: format = pt",
                           "tensors: 21", params, NULL};
    expect_lines("inspect_safetensors", "tests/golden/llama_gqa/model.safetensors", lines);
    int rc;
    char *out = inspect("tests/golden/llama_gqa/model.safetensors", &rc);
    TEST_CHECK("inspect_safetensors_tensors",
               out && has_tensor(out, "model.layers.0.self_attn.k_proj.weight", "F32  [32, 64]") &&
                   has_tensor(out, "model.layers.1.mlp.down_proj.weight", "F32  [64, 96]") &&
                   has_tensor(out, "model.norm.weight", "F32  [64]"),
               "tensor lines missing in:\n%s", out ? out : "");
    free(out);
}

static void test_models(void) {
    const char *qwen3[] = {"model: tests/golden/qwen3_qknorm", "architecture: Qwen3ForCausalLM (model_type qwen3)",
                           "layers: 1, hidden: 64, intermediate: 32, vocabulary: 32",
                           "attention: 4 heads, 2 kv heads, head_dim 32, q/k norm",
                           "tied embeddings: yes, torch_dtype: float32", NULL};
    expect_lines("inspect_model_qwen3", "tests/golden/qwen3_qknorm", qwen3);
    const char *l3[] = {"rope_theta: 500000, rms_norm_eps: 1e-05, max_position_embeddings: 256, rope scaling llama3 (factor 8, low 1, high 4, original 32)",
                        NULL};
    expect_lines("inspect_model_llama3_rope", "tests/golden/llama3_rope", l3);
    // A sharded copy of llama_gqa: shards listed, each tensor's shard shown, the same parameter count.
    char dir[256], p[512];
    snprintf(dir, sizeof dir, "%s/sharded", tmp);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *st = NULL;
    dt_st_writer *w = NULL;
    mkdir(dir, 0755);
    int rc = dt_st_open(&ctx, "tests/golden/llama_gqa/model.safetensors", &st) || dt_st_writer_init(&ctx, &w);
    for (size_t i = 0; !rc && i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        rc = dt_st_writer_add(&ctx, w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    if (!rc) rc = dt_st_writer_write_sharded(&ctx, w, dir, 100000);
    dt_st_writer_free(w);
    dt_st_close(st);
    size_t n;
    char *cfg = tf_slurp("tests/golden/llama_gqa/config.json", &n);
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (rc || !cfg || !tf_write(p, cfg, n)) { TEST_FAIL("inspect_model_sharded", "setup: %s", ctx.msg); free(cfg); return; }
    free(cfg);
    char shard1[512], params[128];
    snprintf(shard1, sizeof shard1, "  %s/model-00001-of-00004.safetensors", dir);
    long long np = count_params("tests/golden/llama_gqa/model.safetensors");
    snprintf(params, sizeof params, "parameters: %lld (F32 %lld), %lld bytes of tensor data", np, np, np * 4);
    const char *lines[] = {"architecture: LlamaForCausalLM (model_type llama)", "shards: 4", shard1, "tensors: 21", params, NULL};
    expect_lines("inspect_model_sharded", dir, lines);
    int code;
    char *out = inspect(dir, &code);
    TEST_CHECK("inspect_model_sharded_tensors", out && has_tensor(out, "model.embed_tokens.weight", "F32  [128, 64]  (shard 1)"),
               "no shard shown for model.embed_tokens.weight in:\n%s", out ? out : "");
    free(out);
}

static void test_adapters(void) {
    const char *rs[] = {"adapter: tests/golden/qwen2_bias/adapter (PEFT)", "method: LORA", "base model: tests/golden/qwen2_bias",
                        "rank: 8, alpha: 16, scale: 5.65685 (alpha/sqrt(r)), rsLoRA: yes, DoRA: no, dropout: 0",
                        "target modules: q_proj, v_proj", "layers: 1", "tensors: 4",
                        "parameters: 1792 (F32 1792), 7168 bytes of tensor data", NULL};
    expect_lines("inspect_adapter_rslora", "tests/golden/qwen2_bias/adapter", rs);
    const char *lora[] = {"method: LORA", "rank: 4, alpha: 8, scale: 2 (alpha/r), rsLoRA: no, DoRA: no, dropout: 0",
                          "target modules: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj", "layers: all",
                          "tensors: 28", NULL};
    expect_lines("inspect_adapter_lora", "tests/golden/llama_gqa/adapter", lora);
    // Per-module ranks and alphas: the patterns, then each module's rank (from lora_A), alpha and scale.
    const char *rp[] = {"rank: 4, alpha: 16, scale: 4 (alpha/r), rsLoRA: no, DoRA: no, dropout: 0",
                        "rank_pattern: layers.0.mlp.up_proj = 3, layers.1.mlp.down_proj = 1, mlp.down_proj = 2, "
                        "model\\.layers\\.\\d+\\.self_attn\\.k_proj = 3, v_proj = 2",
                        "alpha_pattern: down_proj = 4.5, q_proj = 32", "per module (rank from lora_A, alpha, scale):",
                        "  q_proj: r 4, alpha 32, scale 8 (layers 0-1)", "  k_proj: r 3, alpha 16, scale 5.33333 (layers 0-1)",
                        "  up_proj: r 3, alpha 16, scale 5.33333 (layer 0); r 4, alpha 16, scale 4 (layer 1)",
                        "  down_proj: r 2, alpha 4.5, scale 2.25 (layer 0); r 1, alpha 4.5, scale 4.5 (layer 1)", "tensors: 24", NULL};
    expect_lines("inspect_adapter_rank_pattern", "tests/golden/rank_pattern/adapter", rp);
    const char *rprs[] = {"  v_proj: r 2, alpha 16, scale 11.3137 (layers 0-1)", "  o_proj: r 4, alpha 16, scale 8 (layers 0-1)", NULL};
    expect_lines("inspect_adapter_rank_pattern_rslora", "tests/golden/rank_pattern/rslora/adapter", rprs);
    const char *bf[] = {"method: BITFIT", "target modules: q_proj, k_proj (a trained bias delta on each output)", "tensors: 4",
                        "  base_model.model.model.layers.1.self_attn.k_proj.bias        F32  [32]", NULL};
    expect_lines("inspect_adapter_bitfit", "tests/golden/bitfit_qwen2/adapter", bf);
    const char *le[] = {"method: LORA", "target modules: embed_tokens, lm_head, q_proj, v_proj",
                        "  base_model.model.model.embed_tokens.lora_embedding_A         F32  [4, 32]",
                        "  base_model.model.lm_head.lora_B.weight                       F32  [32, 4]", NULL};
    expect_lines("inspect_adapter_lora_embed", "tests/golden/lora_embed/adapter", le);
    int rc;
    char *out = inspect("tests/golden/llama_gqa/adapter", &rc);
    TEST_CHECK("inspect_adapter_uniform_no_per_module", rc == 0 && out && !strstr(out, "per module") && !strstr(out, "rank_pattern"),
               "a uniform adapter got per-module lines:\n%s", out ? out : "");
    free(out);
    const char *pt[] = {"method: PROMPT_TUNING", "virtual tokens: 5, token dim: 64, init: RANDOM", "tensors: 1",
                        "  prompt_embeddings                                            F32  [5, 64]", NULL};
    expect_lines("inspect_adapter_prompt_tuning", "tests/golden/prompt_tuning/adapter", pt);
}

static void test_gguf(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char ad[256], model[256];
    snprintf(ad, sizeof ad, "%s/rslora.gguf", tmp);
    snprintf(model, sizeof model, "%s/model.gguf", tmp);
    const dt_merge_adapter one = {"tests/golden/llama_gqa/adapter", 1.0f};
    dt_merge_opts o = {.model = "tests/golden/llama_gqa", .adapters = &one, .n_adapters = 1, .out = model, .dtype = DT_F16,
                       .format = DT_MERGE_GGUF, .tokenizer = "tests/data/gguf/tok_spm"};
    if (dt_export_lora_gguf(&ctx, "tests/golden/qwen2_bias/adapter", "tests/golden/qwen2_bias", ad, NULL) || dt_merge(&ctx, &o)) {
        TEST_FAIL("inspect_gguf", "setup: %s", ctx.msg);
        return;
    }
    char head[512];
    snprintf(head, sizeof head, "gguf: %s (version 3, alignment 32, 5 keys, 4 tensors)", ad);
    const char *al[] = {head, "  general.architecture = \"qwen2\"", "  general.type = \"adapter\"", "  adapter.lora.alpha = 45.2548",
                        "adapter: method lora, rank 8, alpha 45.2548 (llama.cpp scale alpha/r = 5.65685), 2 adapted weights",
                        "target modules: attn_q (q_proj), attn_v (v_proj)", "layers: 1",
                        "  blk.1.attn_v.weight.lora_b                                   F32   [32, 8]", "parameters: 1792, 7168 bytes of tensor data",
                        NULL};
    expect_lines("inspect_gguf_adapter", ad, al);
    const char *ml[] = {"  general.type = \"model\"", "  llama.block_count = 2", "  general.file_type = 1",
                        "  tokenizer.ggml.tokens = [str x 128] \"<unk>\", \"<s>\", \"</s>\", \"<0x0A>\", ...",
                        "tensors: 21 (shapes row-major: ggml ne reversed)",
                        "  blk.0.attn_k.weight                                          F16   [32, 64]",
                        "  blk.0.attn_norm.weight                                       F32   [64]", NULL};
    expect_lines("inspect_gguf_model", model, ml);
    // An export of per-module ranks: llama.cpp divides by each tensor's own rank.
    snprintf(ad, sizeof ad, "%s/rank_pattern.gguf", tmp);
    if (dt_export_lora_gguf(&ctx, "tests/golden/rank_pattern/adapter", "tests/golden/llama_gqa", ad, NULL)) {
        TEST_FAIL("inspect_gguf_adapter_ranks", "setup: %s", ctx.msg);
        return;
    }
    const char *rl[] = {"adapter: method lora, ranks 1 to 4, alpha 16 (llama.cpp scale alpha / each tensor's rank), 12 adapted weights",
                        "  blk.1.ffn_down.weight.lora_b                                 F32   [64, 1]", NULL};
    expect_lines("inspect_gguf_adapter_ranks", ad, rl);
}

static void test_errors(void) {
    struct { const char *label, *arg, *want; } cases[] = {
        {"inspect_refuses_missing", "/nonexistent/deltatune", "/nonexistent/deltatune: no such file or folder"},
        {"inspect_refuses_text_file", "tests/golden/README.md", "tests/golden/README.md"},
        {"inspect_refuses_plain_folder", "tests/golden", "neither a model folder"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc;
        char *out = inspect(cases[i].arg, &rc);
        TEST_CHECK(cases[i].label, rc == 2 && out && strstr(out, cases[i].want), "exit %d, output: %s", rc, out ? out : "");
        free(out);
    }
}

int main(void) {
    if (access("./deltatune", X_OK)) { TEST_SKIP("inspect", "./deltatune not built"); TEST_EXIT(); }
    snprintf(tmp, sizeof tmp, "/tmp/dt_inspect_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("inspect_tmp", "mkdtemp"); TEST_EXIT(); }
    test_safetensors();
    test_models();
    test_adapters();
    test_gguf();
    test_errors();
    tf_rm_tree(tmp);
    TEST_EXIT();
}
