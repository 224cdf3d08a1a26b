// config.json: the four supported architectures with their transformers defaults, refusals by name,
// missing keys and wrong types naming the key, and a save/load round trip.
#include <ftw.h>
#include <jansson.h>
#include <sys/stat.h>
#include "autograd/context.h"
#include "models/config.h"
#include "tests/test_util.h"

#define DATA "tests/data/models/"
static char g_dir[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void test_archs(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_model_config c;
    int rc = dt_config_load(&ctx, DATA "llama3.2-1b.config.json", &c);
    TEST_CHECK("llama 3.2: sizes", rc == DT_OK && c.arch == DT_ARCH_LLAMA && !strcmp(c.arch_name, "LlamaForCausalLM") &&
               !strcmp(c.model_type, "llama") && c.hidden_size == 2048 && c.num_layers == 16 && c.num_heads == 32 &&
               c.num_kv_heads == 8 && c.head_dim == 64 && c.intermediate_size == 8192 && c.vocab_size == 128256 &&
               c.max_position_embeddings == 131072, "%s", ctx.msg);
    TEST_CHECK("llama 3.2: rope llama3 scaling, eos list, tied, bf16", rc == DT_OK && c.rms_norm_eps == 1e-5f &&
               c.rope_theta == 500000.0f && c.rope_scaling_type == DT_ROPE_LLAMA3 && c.rope_factor == 32.0f &&
               c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f && c.rope_original_max_pos == 8192 &&
               c.tie_word_embeddings && !c.attention_bias && !c.qk_norm && !c.rope_interleaved &&
               c.bos_token_id == 128000 && c.eos_token_id == 128001 && c.torch_dtype == DT_BF16, "%s", ctx.msg);

    rc = dt_config_load(&ctx, DATA "mistral-7b.config.json", &c);
    TEST_CHECK("mistral 7b", rc == DT_OK && c.arch == DT_ARCH_MISTRAL && c.head_dim == 128 && c.num_kv_heads == 8 &&
               c.sliding_window == 4096 && !c.tie_word_embeddings && !c.attention_bias && c.rope_scaling_type == 0 &&
               c.bos_token_id == 1 && c.eos_token_id == 2, "%s", ctx.msg);

    rc = dt_config_load(&ctx, DATA "qwen2.5-0.5b.config.json", &c);
    TEST_CHECK("qwen2.5: q/k/v bias, no sliding window unless enabled", rc == DT_OK && c.arch == DT_ARCH_QWEN2 &&
               c.head_dim == 64 && c.num_kv_heads == 2 && c.attention_bias && !c.qk_norm && c.sliding_window == 0 &&
               c.rope_theta == 1e6f && c.rms_norm_eps == 1e-6f && c.tie_word_embeddings, "%s", ctx.msg);

    rc = dt_config_load(&ctx, DATA "qwen3-0.6b.config.json", &c);
    TEST_CHECK("qwen3: explicit head_dim, qk_norm, integer rope_theta", rc == DT_OK && c.arch == DT_ARCH_QWEN3 &&
               c.head_dim == 128 && c.hidden_size == 1024 && c.num_heads == 16 && c.qk_norm && !c.attention_bias &&
               c.rope_theta == 1e6f && c.eos_token_id == 151645, "%s", ctx.msg);

    rc = dt_config_load(&ctx, DATA "gpt2.config.json", &c);
    TEST_CHECK("gpt2 refused by name with the supported list", rc == DT_EUNSUPPORTED &&
               strstr(ctx.msg, "gpt2.config.json: architecture 'GPT2LMHeadModel' is not supported; supported: "
                               "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"),
               "%d %s", rc, ctx.msg);

    const char *fx = dt_test_fixtures();
    if (fx) {
        char p[512];
        snprintf(p, sizeof p, "%s/stories260K-hf", fx);
        rc = dt_config_load(&ctx, p, &c);
        TEST_CHECK("fixture folder: stories260K-hf config", rc == DT_OK && c.hidden_size == 64 && c.num_layers == 5 &&
                   c.num_heads == 8 && c.num_kv_heads == 4 && c.head_dim == 8 && c.intermediate_size == 172 &&
                   c.vocab_size == 512 && c.tie_word_embeddings && c.torch_dtype == DT_F32, "%s", ctx.msg);
    } else {
        TEST_SKIP("fixture folder: stories260K-hf config", "no ../shared/fixtures");
    }
}

// Loads base, applies one change (key = JSON value text, or NULL value to delete), writes it and loads it.
static int variant(dt_ctx *ctx, const char *base, const char *key, const char *value, dt_model_config *c) {
    json_t *root = json_load_file(base, 0, NULL);
    if (value) json_object_set_new(root, key, json_loads(value, JSON_DECODE_ANY, NULL));
    else json_object_del(root, key);
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", g_dir);
    json_dump_file(root, path, 0);
    json_decref(root);
    return dt_config_load(ctx, g_dir, c); // the folder form
}

static void expect(const char *test, const char *base, const char *key, const char *value, int want,
                   const char *s1, const char *s2) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_model_config c;
    int rc = variant(&ctx, base, key, value, &c);
    TEST_CHECK(test, rc == want && (!s1 || strstr(ctx.msg, s1)) && (!s2 || strstr(ctx.msg, s2)) &&
               (want == DT_OK || strstr(ctx.msg, "config.json")), "status %d (want %d): %s", rc, want, ctx.msg);
}

static void test_errors(void) {
    const char *L = DATA "llama3.2-1b.config.json", *Q3 = DATA "qwen3-0.6b.config.json",
               *M = DATA "mistral-7b.config.json", *Q2 = DATA "qwen2.5-0.5b.config.json";
    expect("missing hidden_size", L, "hidden_size", NULL, DT_EINPUT, "missing required key 'hidden_size'", NULL);
    expect("missing vocab_size", L, "vocab_size", NULL, DT_EINPUT, "'vocab_size'", NULL);
    expect("missing num_hidden_layers", Q3, "num_hidden_layers", NULL, DT_EINPUT, "'num_hidden_layers'", NULL);
    expect("hidden_size as a string", L, "hidden_size", "\"2048\"", DT_EINPUT, "'hidden_size' must be an integer",
           "a string");
    expect("hidden_size fractional", L, "hidden_size", "2048.5", DT_EINPUT, "'hidden_size' must be an integer", NULL);
    expect("hidden_size integral real accepted", L, "hidden_size", "2048.0", DT_OK, NULL, NULL);
    expect("rope_theta as a string", L, "rope_theta", "\"1e4\"", DT_EINPUT, "'rope_theta' must be a number", NULL);
    expect("tie_word_embeddings as a string", L, "tie_word_embeddings", "\"yes\"", DT_EINPUT,
           "'tie_word_embeddings' must be true or false", NULL);
    expect("eos_token_id negative", L, "eos_token_id", "-5", DT_EINPUT, "'eos_token_id'", NULL);
    expect("architectures not a list", L, "architectures", "\"LlamaForCausalLM\"", DT_EINPUT, "'architectures'", NULL);
    expect("zero heads", L, "num_attention_heads", "0", DT_EINPUT, "num_attention_heads is 0", NULL);
    expect("kv heads not dividing heads", L, "num_key_value_heads", "5", DT_EINPUT, "not a multiple", NULL);
    expect("heads not dividing hidden without head_dim", M, "num_attention_heads", "30", DT_EINPUT,
           "not divisible", NULL);
    expect("odd head_dim", Q3, "head_dim", "63", DT_EINPUT, "head_dim 63 is odd", NULL);
    expect("negative eps", L, "rms_norm_eps", "-1e-6", DT_EINPUT, "rms_norm_eps", NULL);
    expect("rope_scaling linear refused", L, "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}",
           DT_EUNSUPPORTED, "rope_scaling type 'linear' is not supported", NULL);
    expect("rope_scaling yarn refused", Q3, "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}",
           DT_EUNSUPPORTED, "'yarn'", NULL);
    expect("rope_scaling llama3 via 'type'", M, "rope_scaling",
           "{\"type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4, "
           "\"original_max_position_embeddings\": 8192}", DT_OK, NULL, NULL);
    expect("rope_scaling llama3 missing factor", L, "rope_scaling",
           "{\"rope_type\": \"llama3\", \"low_freq_factor\": 1, \"high_freq_factor\": 4, "
           "\"original_max_position_embeddings\": 8192}", DT_EINPUT, "rope_scaling", "'factor'");
    expect("rope_scaling default accepted", L, "rope_scaling", "{\"rope_type\": \"default\"}", DT_OK, NULL, NULL);
    expect("mlp_bias refused", L, "mlp_bias", "true", DT_EUNSUPPORTED, "mlp_bias", NULL);
    expect("hidden_act gelu refused", L, "hidden_act", "\"gelu\"", DT_EUNSUPPORTED, "hidden_act 'gelu'", NULL);
    expect("torch_dtype float64 refused", L, "torch_dtype", "\"float64\"", DT_EUNSUPPORTED, "'float64'", NULL);
    expect("unknown architecture", L, "architectures", "[\"PhiForCausalLM\"]", DT_EUNSUPPORTED,
           "architecture 'PhiForCausalLM' is not supported; supported: LlamaForCausalLM", NULL);

    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_model_config c;
    int rc = variant(&ctx, Q3, "head_dim", NULL, &c);
    TEST_CHECK("qwen3 head_dim defaults to 128 as in Qwen3Config", rc == DT_OK && c.head_dim == 128, "%s", ctx.msg);
    rc = variant(&ctx, L, "num_key_value_heads", NULL, &c);
    TEST_CHECK("num_key_value_heads defaults to num_attention_heads", rc == DT_OK && c.num_kv_heads == 32, "%s", ctx.msg);
    rc = variant(&ctx, L, "architectures", NULL, &c);
    TEST_CHECK("model_type alone picks the architecture", rc == DT_OK && c.arch == DT_ARCH_LLAMA, "%s", ctx.msg);
    rc = variant(&ctx, L, "torch_dtype", NULL, &c);
    TEST_CHECK("no torch_dtype means F32", rc == DT_OK && c.torch_dtype == DT_F32, "%s", ctx.msg);
    rc = variant(&ctx, L, "attention_bias", "true", &c);
    TEST_CHECK("llama attention_bias read", rc == DT_OK && c.attention_bias, "%s", ctx.msg);
    rc = variant(&ctx, Q2, "use_sliding_window", "true", &c);
    TEST_CHECK("qwen2 sliding window when enabled", rc == DT_OK && c.sliding_window == 32768, "%s", ctx.msg);
    rc = variant(&ctx, L, "rope_theta", NULL, &c);
    TEST_CHECK("rope_theta defaults to 10000", rc == DT_OK && c.rope_theta == 10000.0f, "%s", ctx.msg);
    rc = variant(&ctx, L, "rope_parameters", "{\"rope_theta\": 250000.0, \"rope_type\": \"default\"}", &c);
    TEST_CHECK("transformers v5 rope_parameters", rc == DT_OK && c.rope_theta == 250000.0f, "%s", ctx.msg);

    char path[128];
    snprintf(path, sizeof path, "%s/config.json", g_dir);
    FILE *f = fopen(path, "w");
    fputs("{\"architectures\": [\"LlamaForCausalLM\"],\n \"hidden_size\": 64,,}", f);
    fclose(f);
    rc = dt_config_load(&ctx, path, &c);
    TEST_CHECK("not JSON: file and line named", rc == DT_EINPUT && strstr(ctx.msg, "config.json") &&
               strstr(ctx.msg, "line 2"), "%d %s", rc, ctx.msg);
    f = fopen(path, "w");
    fputs("[1, 2]", f);
    fclose(f);
    rc = dt_config_load(&ctx, path, &c);
    TEST_CHECK("JSON array refused", rc == DT_EINPUT && strstr(ctx.msg, "expected a JSON object"), "%s", ctx.msg);
    rc = dt_config_load(&ctx, "tests/data/models/nothere.json", &c);
    TEST_CHECK("missing file", rc == DT_EINPUT && strstr(ctx.msg, "nothere.json"), "%s", ctx.msg);
}

static void test_save(void) {
    const char *files[] = {DATA "llama3.2-1b.config.json", DATA "mistral-7b.config.json",
                           DATA "qwen2.5-0.5b.config.json", DATA "qwen3-0.6b.config.json"};
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char path[128];
    snprintf(path, sizeof path, "%s/saved.json", g_dir);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        dt_model_config a, b;
        int rc = dt_config_load(&ctx, files[i], &a);
        if (!rc) rc = dt_config_save(&ctx, &a, path);
        if (!rc) rc = dt_config_load(&ctx, path, &b);
        char name[128];
        snprintf(name, sizeof name, "save/load round trip: %s", files[i] + strlen(DATA));
        TEST_CHECK(name, rc == DT_OK && !memcmp(&a, &b, sizeof a), "%s", ctx.msg);
    }
    FILE *f = fopen(path, "r");
    char buf[4096] = {0};
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    TEST_CHECK("save: short float spellings", (strstr(buf, "\"rms_norm_eps\": 1e-06") || strstr(buf, "\"rms_norm_eps\": 1e-6")) &&
               strstr(buf, "\"rope_theta\": 1000000.0"), "%s", buf);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_test_cfg_XXXXXX");
    if (!mkdtemp(g_dir)) {
        TEST_FAIL("setup", "mkdtemp failed");
        TEST_EXIT();
    }
    test_archs();
    test_errors();
    test_save();
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    TEST_EXIT();
}
