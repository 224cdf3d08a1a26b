// `deltatune eval` against PyTorch: the golden batches written as pre-tokenized data give the golden
// loss (1e-5 relative), through the binary; and bad input exits 2.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "models/safetensors.h"
#include "tests/golden_data.h"
#include "tests/test_util.h"

static void check(const char *name, const char *case_dir, const char *model) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char path[512], data[256], cmd[2048];
    snprintf(path, sizeof path, "%s/golden.safetensors", case_dir);
    float ref = 0;
    snprintf(data, sizeof data, "/tmp/dt_eval_%s_%d.jsonl", name, (int)getpid());
    if (golden_batch_to_jsonl(&ctx, path, data, &ref)) { TEST_FAIL(name, "%s", ctx.msg); return; }
    snprintf(cmd, sizeof cmd, "./deltatune eval --model %s --adapter %s/adapter --data %s --format tokens --json --dtype f32", model, case_dir, data);
    FILE *p = popen(cmd, "r");
    char line[512] = "";
    if (!fgets(line, sizeof line, p)) line[0] = 0;
    int st = pclose(p);
    unlink(data);
    char *l = strstr(line, "\"loss\": ");
    double loss = l ? atof(l + 8) : NAN;
    TEST_CHECK(name, WIFEXITED(st) && WEXITSTATUS(st) == 0 && fabs(loss - ref) <= 1e-5 * fabs(ref),
               "eval printed '%s', PyTorch's loss is %.8f", line, ref);
}

int main(void) {
    check("eval_llama_gqa", "tests/golden/llama_gqa", "tests/golden/llama_gqa");
    check("eval_qwen2_bias", "tests/golden/qwen2_bias", "tests/golden/qwen2_bias");
    check("eval_qwen3_qknorm", "tests/golden/qwen3_qknorm", "tests/golden/qwen3_qknorm");
    check("eval_rank_pattern", "tests/golden/rank_pattern", "tests/golden/llama_gqa"); // per-module ranks and alphas
    const char *fx = dt_test_fixtures();
    if (fx) {
        char model[512];
        snprintf(model, sizeof model, "%s/stories260K-hf", fx);
        check("eval_stories260k", "tests/golden/stories260k", model);
    } else {
        TEST_SKIP("eval_stories260k", "../shared/fixtures is absent");
    }
    // Prompt tuning: the last virtual token predicts each row's first token, and PEFT's loss with labels
    // (PeftModelForCausalLM prefixes -100 labels for the virtual tokens) scores it. Reference: transformers
    // 4.40 + PEFT 0.13.2, PeftModel.from_pretrained(llama_gqa, prompt_tuning/adapter), model(input_ids=x,
    // labels=x).loss per row of tokens_val.jsonl, weighted by its T targets: 5.480946829978456 over 94
    // (deltatune scored 88 = sum of T - 1 before, leaving the first token out).
    {
        FILE *p = popen("./deltatune eval --model tests/golden/llama_gqa --adapter tests/golden/prompt_tuning/adapter "
                        "--data tests/data/train/tokens_val.jsonl --format tokens --json --dtype f32", "r");
        char line[512] = "";
        if (!fgets(line, sizeof line, p)) line[0] = 0;
        int pst = pclose(p);
        char *l = strstr(line, "\"loss\": "), *t = strstr(line, "\"tokens\": ");
        double loss = l ? atof(l + 8) : NAN, ref = 5.480946829978456;
        long long n = t ? atoll(t + 10) : -1;
        TEST_CHECK("eval_prompt_tuning_scores_first_token_as_peft", WIFEXITED(pst) && WEXITSTATUS(pst) == 0 && n == 94 &&
                   fabs(loss - ref) <= 1e-5 * ref, "eval printed '%s'; PEFT's labels loss is %.8f over 94 targets", line, ref);
    }
    int st = system("./deltatune eval --model tests/golden/llama_gqa --data /nonexistent.jsonl --format tokens 2>/dev/null");
    TEST_CHECK("eval_missing_data_exit_2", WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d", st);
    st = system("./deltatune eval --model tests/golden/llama_gqa --adapter tests/golden/qwen3_qknorm/adapter --data tests/data/train/tokens.jsonl --format tokens 2>/dev/null");
    TEST_CHECK("eval_adapter_mismatch_exit_2", WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d", st);
    TEST_EXIT();
}
