// PEFT's rank_pattern / alpha_pattern: the rule that picks a module's key (each expectation below was
// checked against Python's re.match(rf"(.*\.)?({key})$", name), PEFT's get_pattern_key); the golden
// rank_pattern adapter loads with the per-module ranks and scales PEFT gives it; load -> save -> load ->
// save is byte-identical and keeps the patterns' order; a checkpoint of another per-module layout is
// refused; bad patterns, ranks and tensors exit 2 naming the file, the key, the pattern and what was
// expected.
#include <jansson.h>
#include <math.h>
#include "optim/checkpoint.h"
#include "peft/lora_pattern.h"
#include "peft/peft_io.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];
#define GOLDEN "tests/golden/rank_pattern/adapter"

// Index of the first key of keys[0..n) matching name, or -2 when the matcher fails.
static int first_match(dt_ctx *ctx, const char *const *keys, int n, const char *name) {
    dt_lora_pattern p = {0};
    dt_lora_matcher *m = NULL;
    int index = -2;
    for (int i = 0; i < n; i++) dt_lora_pattern_add(ctx, &p, keys[i], i + 1, true);
    if (!dt_lora_matcher_new(ctx, &p, "test", &m) && dt_lora_matcher_find(ctx, m, name, &index)) index = -2;
    dt_lora_matcher_free(m);
    dt_lora_pattern_free(&p);
    return index;
}

static void test_rule(dt_ctx *ctx) {
    const char *q = "model.layers.0.self_attn.q_proj", *k = "model.layers.0.self_attn.k_proj",
               *v = "model.layers.0.self_attn.v_proj", *d0 = "model.layers.0.mlp.down_proj",
               *d1 = "model.layers.1.mlp.down_proj", *d3 = "model.layers.3.mlp.down_proj", *d11 = "model.layers.11.mlp.down_proj";
    struct { const char *key, *name; bool match; } one[] = {
        // a suffix that starts after a dot, or the whole name
        {"q_proj", q, true}, {"self_attn.q_proj", q, true}, {"layers.0.self_attn.q_proj", q, true}, {"model.layers.0.self_attn.q_proj", q, true},
        {"_proj", q, false}, {"proj", q, false}, {"attn.q_proj", q, false}, {"odel.layers.0.self_attn.q_proj", q, false},
        // anchored at both ends
        {"q_pro", q, false}, {"self_attn", q, false}, {"layers.1", d1, false}, {"1.mlp.down_proj", d1, true}, {"1.mlp.down_proj", d11, false},
        // keys are regular expressions, not escaped
        {"q.proj", q, true}, {"q_proj|v_proj", q, true}, {"q_proj|v_proj", v, true}, {"q_proj|v_proj", k, false},
        {"layers\\.[13]\\..*down_proj", d1, true}, {"layers\\.[13]\\..*down_proj", d3, true}, {"layers\\.[13]\\..*down_proj", d0, false},
        {"layers\\.[13]\\..*down_proj", d11, false}, {"model\\.layers\\.\\d+\\.self_attn\\.k_proj", k, true}, {"(q|k)_proj", k, true},
        {"\\w+_proj", q, true}, {".*", q, true}, {"", q, false}, {"Q_PROJ", q, false}, {"(?i:Q_PROJ)", q, true},
    };
    int bad = 0;
    char first_bad[160] = "";
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) {
        int got = first_match(ctx, &one[i].key, 1, one[i].name);
        if (got != (one[i].match ? 0 : -1) && !bad++)
            snprintf(first_bad, sizeof first_bad, "key '%s' on %s: got %d", one[i].key, one[i].name, got);
    }
    TEST_CHECK("rank_pattern_rule", bad == 0, "%d wrong, first: %s", bad, first_bad);
    // The first key in the pattern's order wins, not the most specific or the last one.
    const char *order1[] = {"down_proj", "layers.1.mlp.down_proj"}, *order2[] = {"layers.1.mlp.down_proj", "down_proj"};
    const char *order3[] = {"v_proj", "k_proj", "q_proj", "self_attn\\..*"};
    TEST_CHECK("rank_pattern_first_key_wins",
               first_match(ctx, order1, 2, d1) == 0 && first_match(ctx, order2, 2, d1) == 0 && first_match(ctx, order2, 2, d0) == 1 &&
                   first_match(ctx, order3, 4, q) == 2 && first_match(ctx, order3, 4, d0) == -1,
               "%d %d %d %d %d", first_match(ctx, order1, 2, d1), first_match(ctx, order2, 2, d1), first_match(ctx, order2, 2, d0),
               first_match(ctx, order3, 4, q), first_match(ctx, order3, 4, d0));
    // No key matches: the default.
    dt_lora_pattern p = {0};
    dt_lora_pattern_add(ctx, &p, "v_proj", 4, true);
    dt_lora_matcher *m = NULL;
    double a = 0, b = 0;
    int rc = dt_lora_matcher_new(ctx, &p, "test", &m) || dt_lora_matcher_value(ctx, m, q, 8, &a) || dt_lora_matcher_value(ctx, m, v, 8, &b);
    TEST_CHECK("rank_pattern_no_match_default", !rc && a == 8 && b == 4, "q %g (want 8), v %g (want 4): %s", a, b, ctx->msg);
    dt_lora_matcher_free(m);
    dt_lora_pattern_free(&p);
}

// The golden adapter's modules get the ranks and scales hf_ref.lora_rank_alpha gives them.
static void test_loaded(dt_ctx *ctx, const dt_llama *m) {
    dt_adapter *a = NULL;
    if (dt_adapter_load(ctx, GOLDEN, m, &a)) { TEST_FAIL("rank_pattern_loaded", "%s", ctx->msg); return; }
    // rank (layer 0, layer 1) and alpha per module; o_proj is not targeted. r 4, lora_alpha 16.
    const int want_r[DT_MOD_COUNT][2] = {{4, 4}, {3, 3}, {2, 2}, {0, 0}, {4, 4}, {3, 4}, {2, 1}};
    const float want_alpha[DT_MOD_COUNT] = {32, 16, 16, 0, 16, 16, 4.5f};
    int bad = 0;
    char first_bad[160] = "";
    for (int l = 0; l < 2; l++)
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            const dt_lora_ref *r = a->ref_ptrs[l * DT_MOD_COUNT + mod];
            int rk = r ? (int)r->A->shape[0] : 0;
            float scale = want_r[mod][l] ? want_alpha[mod] / (float)want_r[mod][l] : 0;
            bool ok = rk == want_r[mod][l] && (!r || (r->B->shape[1] == rk && fabsf(r->scale - scale) <= 1e-6f * scale));
            if (!ok && !bad++) snprintf(first_bad, sizeof first_bad, "layer %d %s: rank %d scale %g", l, dt_module_short((dt_module)mod), rk, r ? (double)r->scale : 0.0);
        }
    TEST_CHECK("rank_pattern_loaded", bad == 0 && a->lora.rank_pattern.n == 5 && a->lora.alpha_pattern.n == 2,
               "%d modules wrong, first: %s", bad, first_bad);
    dt_adapter_free(a);
}

static bool same_files(const char *d1, const char *d2, const char *file) {
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/%s", d1, file);
    snprintf(p2, sizeof p2, "%s/%s", d2, file);
    return tf_same_file(p1, p2);
}

// The keys of `key` in dir's adapter_config.json, joined with spaces, into buf.
static void pattern_keys(const char *dir, const char *key, char *buf, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_t *c = json_load_file(path, 0, NULL);
    buf[0] = 0;
    const char *k;
    json_t *v;
    size_t len = 0;
    json_object_foreach(json_object_get(c, key), k, v) {
        int w = snprintf(buf + len, n - len, "%s%s=%s%g", len ? " " : "", k, json_is_integer(v) ? "" : "real:", json_number_value(v));
        if (w < 0 || (size_t)w >= n - len) break;
        len += (size_t)w;
    }
    json_decref(c);
}

static void test_round_trip(dt_ctx *ctx, const dt_llama *m) {
    char d1[128], d2[128];
    snprintf(d1, sizeof d1, "%s/rt1", tmp);
    snprintf(d2, sizeof d2, "%s/rt2", tmp);
    dt_adapter *a = NULL, *b = NULL;
    int rc = dt_adapter_load(ctx, GOLDEN, m, &a) || dt_adapter_save(ctx, a, m, d1) || dt_adapter_load(ctx, d1, m, &b) ||
             dt_adapter_save(ctx, b, m, d2);
    if (rc) { TEST_FAIL("rank_pattern_round_trip", "%s", ctx->msg); dt_adapter_free(a); dt_adapter_free(b); return; }
    TEST_CHECK("rank_pattern_round_trip_identical", same_files(d1, d2, "adapter_config.json") && same_files(d1, d2, "adapter_model.safetensors"),
               "%s and %s differ", d1, d2);
    // The tensors are written exactly as PyTorch's side wrote them; the config keeps the patterns.
    TEST_CHECK("rank_pattern_round_trip_weights_as_golden", same_files(GOLDEN, d1, "adapter_model.safetensors"), "%s differs from %s", d1, GOLDEN);
    char want[512], got[512], want_a[256], got_a[256];
    pattern_keys(GOLDEN, "rank_pattern", want, sizeof want);
    pattern_keys(d1, "rank_pattern", got, sizeof got);
    pattern_keys(GOLDEN, "alpha_pattern", want_a, sizeof want_a);
    pattern_keys(d1, "alpha_pattern", got_a, sizeof got_a);
    TEST_CHECK("rank_pattern_round_trip_patterns", want[0] && !strcmp(want, got) && !strcmp(want_a, got_a),
               "rank_pattern '%s' -> '%s', alpha_pattern '%s' -> '%s'", want, got, want_a, got_a);
    dt_adapter_free(a);
    dt_adapter_free(b);

    // Patterns not in sorted order stay in their order (it decides which key wins); the other keys
    // are still written sorted, as PEFT writes them.
    dt_lora_config lc = {.r = 4, .alpha = 8};
    lc.target[DT_MOD_Q] = lc.target[DT_MOD_V] = lc.target[DT_MOD_DOWN] = true;
    dt_lora_pattern_add(ctx, &lc.rank_pattern, "v_proj", 2, true);
    dt_lora_pattern_add(ctx, &lc.rank_pattern, "down_proj", 3, true);
    dt_lora_pattern_add(ctx, &lc.rank_pattern, "layers.1.mlp.down_proj", 1, true); // never reached: down_proj comes first
    dt_lora_pattern_add(ctx, &lc.alpha_pattern, "v_proj", 2.5, false);
    dt_lora_pattern_add(ctx, &lc.alpha_pattern, "q_proj", 12, true);
    snprintf(d1, sizeof d1, "%s/order1", tmp);
    snprintf(d2, sizeof d2, "%s/order2", tmp);
    rc = dt_lora_create(ctx, m, &lc, 3, &a);
    dt_lora_config_free(&lc);
    if (rc) { TEST_FAIL("rank_pattern_order_kept", "%s", ctx->msg); return; }
    for (size_t i = 0; i < a->n_params; i++) a->params[i] += 0.001f * (float)(i % 7);
    rc = dt_adapter_save(ctx, a, m, d1) || dt_adapter_load(ctx, d1, m, &b) || dt_adapter_save(ctx, b, m, d2);
    if (rc) { TEST_FAIL("rank_pattern_order_kept", "%s", ctx->msg); dt_adapter_free(a); dt_adapter_free(b); return; }
    pattern_keys(d1, "rank_pattern", got, sizeof got);
    pattern_keys(d1, "alpha_pattern", got_a, sizeof got_a);
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", d1);
    char *cfg = tf_slurp(path, NULL);
    const dt_lora_ref *down1 = b->ref_ptrs[1 * DT_MOD_COUNT + DT_MOD_DOWN], *v0 = b->ref_ptrs[DT_MOD_V];
    TEST_CHECK("rank_pattern_order_kept",
               !strcmp(got, "v_proj=2 down_proj=3 layers.1.mlp.down_proj=1") && !strcmp(got_a, "v_proj=real:2.5 q_proj=12") && cfg &&
                   strstr(cfg, "\"alpha_pattern\"") < strstr(cfg, "\"base_model_name_or_path\"") &&
                   strstr(cfg, "\"rank_pattern\"") < strstr(cfg, "\"revision\"") && down1->A->shape[0] == 3 &&
                   v0->A->shape[0] == 2 && fabsf(v0->scale - 1.25f) < 1e-6f,
               "rank_pattern '%s', alpha_pattern '%s', down rank %lld, v scale %g:\n%s", got, got_a, (long long)down1->A->shape[0],
               (double)v0->scale, cfg ? cfg : "");
    TEST_CHECK("rank_pattern_order_round_trip", same_files(d1, d2, "adapter_config.json") && same_files(d1, d2, "adapter_model.safetensors"),
               "%s and %s differ", d1, d2);
    free(cfg);
    dt_adapter_free(a);
    dt_adapter_free(b);
}

// The golden adapter folder with one replacement in its adapter_config.json, exported: exit status 2 and
// `want` in the output.
static void bad_case(const char *label, const char *from, const char *to, const char *want) {
    char dir[128], path[256], args[1024], log[256];
    snprintf(dir, sizeof dir, "%s/%s", tmp, label);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    size_t n;
    char *cfg = tf_slurp(GOLDEN "/adapter_config.json", &n), *at = cfg ? strstr(cfg, from) : NULL;
    if (!at || !tf_copy_dir(GOLDEN, dir)) { TEST_FAIL(label, "setup: '%s' not in the golden config", from); free(cfg); return; }
    FILE *f = fopen(path, "w");
    fprintf(f, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
    fclose(f);
    free(cfg);
    snprintf(log, sizeof log, "%s/log.txt", tmp);
    snprintf(args, sizeof args, "export --adapter %s --model tests/golden/llama_gqa --format gguf --out %s/out.gguf", dir, dir);
    int rc = tf_run(args, log);
    char *msg = tf_slurp(log, NULL);
    bool found = msg && strstr(msg, want);
    TEST_CHECK(label, rc == 2 && found, "exit %d (want 2), '%s' missing from: %s", rc, found ? "" : want, msg ? msg : "");
    free(msg);
}

static void test_bad_input(void) {
    if (access("./deltatune", X_OK)) { TEST_SKIP("rank_pattern_bad_input", "./deltatune not built"); return; }
    static const struct { const char *label, *from, *to, *want; } cases[] = {
        {"rank_pattern_bad_regex", "\"v_proj\": 2", "\"v_proj(\": 2",
         "adapter_config.json: key 'rank_pattern': pattern 'v_proj(': expected a regular expression"},
        {"alpha_pattern_bad_regex", "\"q_proj\": 32", "\"[q_proj\": 32",
         "adapter_config.json: key 'alpha_pattern': pattern '[q_proj': expected a regular expression"},
        {"rank_pattern_rank_zero", "\"v_proj\": 2", "\"v_proj\": 0",
         "key 'rank_pattern': pattern 'v_proj': expected a positive integer rank (1 to 65536), got 0"},
        {"rank_pattern_rank_not_integer", "\"v_proj\": 2", "\"v_proj\": 2.5",
         "key 'rank_pattern': pattern 'v_proj': expected a positive integer rank (1 to 65536), got 2.5"},
        {"rank_pattern_rank_string", "\"v_proj\": 2", "\"v_proj\": \"2\"",
         "key 'rank_pattern': pattern 'v_proj': expected a positive integer rank (1 to 65536), got \"2\""},
        {"alpha_pattern_not_number", "\"q_proj\": 32", "\"q_proj\": \"32\"",
         "key 'alpha_pattern': pattern 'q_proj': expected a number (the module's alpha), got \"32\""},
        {"rank_pattern_not_object", "\"rank_pattern\": {", "\"rank_pattern\": [], \"x\": {",
         "key 'rank_pattern': expected an object"},
        // A rank the tensors do not have: the tensor is named with its shape and the one expected.
        {"rank_pattern_tensor_shape", "\"v_proj\": 2", "\"v_proj\": 3",
         "adapter_model.safetensors: tensor 'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight': shape [2, 64], expected [3, 64]"},
        // The same keys in another order pick other ranks (mlp.down_proj before layers.1.mlp.down_proj gives
        // layer 1's down_proj rank 2): the file's order is the rule, so this adapter no longer fits.
        {"rank_pattern_order_matters", "\"layers.1.mlp.down_proj\": 1,\n    \"mlp.down_proj\": 2,",
         "\"mlp.down_proj\": 2,\n    \"layers.1.mlp.down_proj\": 1,",
         "tensor 'base_model.model.model.layers.1.mlp.down_proj.lora_A.weight': shape [1, 96], expected [2, 96]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        bad_case(cases[i].label, cases[i].from, cases[i].to, cases[i].want);
}

// A checkpoint whose modules have other ranks than the run's adapter is refused, even when the totals
// agree (q 2 + o 4 against q 4 + o 2: both 768 parameters a layer), since the optimizer state is copied
// as one block.
static void test_checkpoint_layout(dt_ctx *ctx, const dt_llama *m) {
    dt_lora_config x = {.r = 4, .alpha = 8}, y = {.r = 4, .alpha = 8};
    x.target[DT_MOD_Q] = x.target[DT_MOD_O] = y.target[DT_MOD_Q] = y.target[DT_MOD_O] = true;
    dt_lora_pattern_add(ctx, &x.rank_pattern, "q_proj", 2, true);
    dt_lora_pattern_add(ctx, &y.rank_pattern, "o_proj", 2, true);
    dt_adapter *a = NULL, *b = NULL;
    dt_optimizer oa = {0}, ob = {0};
    dt_train_state sa = {0}, sb = {0};
    char dir[128];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    int rc = dt_lora_create(ctx, m, &x, 1, &a) || dt_lora_create(ctx, m, &y, 1, &b) ||
             dt_optim_init(ctx, &oa, DT_OPT_SGD, a->n_params, 0, 0, 0, 0, 0) || dt_optim_init(ctx, &ob, DT_OPT_SGD, b->n_params, 0, 0, 0, 0, 0) ||
             dt_checkpoint_save(ctx, dir, a, m, &oa, &sa);
    if (rc || a->n_params != b->n_params) {
        TEST_FAIL("rank_pattern_checkpoint_layout", "setup: %s (%zu vs %zu parameters)", ctx->msg, a ? a->n_params : 0, b ? b->n_params : 0);
    } else {
        rc = dt_checkpoint_load(ctx, dir, b, m, &ob, &sb);
        TEST_CHECK("rank_pattern_checkpoint_layout", rc == DT_EINPUT && strstr(ctx->msg, "does not match"), "rc %d: %s", rc, ctx->msg);
        rc = dt_checkpoint_load(ctx, dir, a, m, &oa, &sa);
        TEST_CHECK("rank_pattern_checkpoint_same_layout", rc == DT_OK, "rc %d: %s", rc, ctx->msg);
    }
    dt_optim_free(&oa);
    dt_optim_free(&ob);
    dt_adapter_free(a);
    dt_adapter_free(b);
    dt_lora_config_free(&x);
    dt_lora_config_free(&y);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    snprintf(tmp, sizeof tmp, "/tmp/dt_rank_pattern_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("rank_pattern_tmp", "mkdtemp"); TEST_EXIT(); }
    dt_llama *m;
    if (dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m)) { TEST_FAIL("load", "%s", ctx.msg); TEST_EXIT(); }
    test_rule(&ctx);
    test_loaded(&ctx, m);
    test_round_trip(&ctx, m);
    test_checkpoint_layout(&ctx, m);
    test_bad_input();
    dt_llama_free(m);
    if (!dt_test_failures) tf_rm_tree(tmp);
    TEST_EXIT();
}
