// Prompt-tuning adapter_config.json, both ways. Written with init TEXT it names a tokenizer (PEFT's
// PromptTuningConfig refuses TEXT with tokenizer_name_or_path null); read, a num_virtual_tokens that is
// huge, past 2^31, or not what the tensor file holds is refused before anything of that size is allocated.
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "models/llama.h"
#include "peft/peft_io.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];

// tokenizer_name_or_path of the adapter_config.json in dir, "null" when null, "" when unreadable.
static void config_tokenizer(const char *dir, char *buf, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    json_t *v = j ? json_object_get(j, "tokenizer_name_or_path") : NULL;
    snprintf(buf, n, "%s", json_is_string(v) ? json_string_value(v) : json_is_null(v) ? "null" : "");
    json_decref(j);
}

// Copies the golden prompt-tuning adapter into tmp/name with num_virtual_tokens set to `n` (JSON text).
static const char *adapter_with_n(const char *name, const char *n) {
    static char dir[256];
    char cmd[1024], path[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r tests/golden/prompt_tuning/adapter %s", dir, dir);
    if (system(cmd)) return NULL;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *cfg = tf_slurp(path, NULL), *at = cfg ? strstr(cfg, "\"num_virtual_tokens\": 5") : NULL;
    if (!at) { free(cfg); return NULL; }
    char *out = NULL;
    bool ok = asprintf(&out, "%.*s\"num_virtual_tokens\": %s%s", (int)(at - cfg), cfg, n, at + strlen("\"num_virtual_tokens\": 5")) > 0 &&
              tf_write(path, out, strlen(out));
    free(cfg);
    free(out);
    return ok ? dir : NULL;
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/dt_prompt_cfg_%d", (int)getpid());
    mkdir(tmp, 0777);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_llama *m;
    if (dt_llama_load(&ctx, "tests/golden/llama_gqa", dt_backend_cpu(), &m)) { TEST_FAIL("prompt_cfg_model", "%s", ctx.msg); TEST_EXIT(); }

    // TEXT init: tokenizer_name_or_path is the tokenizer's folder, or the base model when none was set.
    dt_prompt_config pc = {4, DT_PROMPT_INIT_TEXT, "hello"};
    dt_adapter *a;
    char dir[256], got[512];
    int rc = dt_prompt_create(&ctx, m, &pc, 1, (const int32_t[]){1, 5, 9}, 3, &a);
    if (!rc) {
        snprintf(a->base_model, sizeof a->base_model, "some/base");
        snprintf(dir, sizeof dir, "%s/text", tmp);
        rc = dt_adapter_save(&ctx, a, m, dir);
        config_tokenizer(dir, got, sizeof got);
        TEST_CHECK("prompt_text_init_names_base_as_tokenizer", !rc && !strcmp(got, "some/base"),
                   "rc %d, tokenizer_name_or_path %s (want \"some/base\")", rc, got);
        snprintf(a->tokenizer, sizeof a->tokenizer, "some/tokenizer");
        rc = dt_adapter_save(&ctx, a, m, dir);
        dt_adapter_free(a);
        dt_adapter *b = NULL;
        if (!rc) rc = dt_adapter_load(&ctx, dir, m, &b);
        TEST_CHECK("prompt_text_init_tokenizer_round_trip", !rc && !strcmp(b->tokenizer, "some/tokenizer"),
                   "rc %d (%s), read back '%s'", rc, ctx.msg, b ? b->tokenizer : "");
        dt_adapter_free(b);
    } else {
        TEST_FAIL("prompt_text_init_create", "%s", ctx.msg);
    }

    // RANDOM init keeps tokenizer_name_or_path null, as PEFT writes it.
    pc.init = DT_PROMPT_INIT_RANDOM;
    if (!dt_prompt_create(&ctx, m, &pc, 1, NULL, 0, &a)) {
        snprintf(dir, sizeof dir, "%s/random", tmp);
        rc = dt_adapter_save(&ctx, a, m, dir);
        config_tokenizer(dir, got, sizeof got);
        TEST_CHECK("prompt_random_init_tokenizer_null", !rc && !strcmp(got, "null"), "rc %d, got %s", rc, got);
        dt_adapter_free(a);
    }

    // num_virtual_tokens from a hostile file.
    const struct { const char *name, *n, *want; } bad[] = {
        {"n_huge", "1000000000000", "num_virtual_tokens"},     // past 2^31: once truncated
        {"n_wrap", "4294967301", "num_virtual_tokens"},        // 2^32 + 5 truncated to 5 matched the file
        {"n_big", "1000000", "prompt_embeddings"},             // in range, but the file holds 5 rows
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *d = adapter_with_n(bad[i].name, bad[i].n);
        dt_adapter *x = NULL;
        rc = d ? dt_adapter_load(&ctx, d, m, &x) : -1;
        char name[64];
        snprintf(name, sizeof name, "prompt_num_virtual_tokens_%s", bad[i].name);
        TEST_CHECK(name, rc == DT_EINPUT && strstr(ctx.msg, bad[i].want), "rc %d: %s", rc, ctx.msg);
        dt_adapter_free(x);
    }
    const char *d = adapter_with_n("n_ok", "5");
    dt_adapter *x = NULL;
    rc = d ? dt_adapter_load(&ctx, d, m, &x) : -1;
    TEST_CHECK("prompt_num_virtual_tokens_valid_loads", rc == 0, "rc %d: %s", rc, ctx.msg);
    dt_adapter_free(x);

    dt_llama_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!dt_test_failures) (void)!system(cmd);
    TEST_EXIT();
}
