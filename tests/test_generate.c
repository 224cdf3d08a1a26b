// `deltatune generate` through the binary: at temperature 0, base + unmerged adapter and the merged
// model (`deltatune merge`) produce the same text, which differs from the base alone; --chat runs.
// The model is the golden llama_gqa one with its vocabulary widened to the small test tokenizer's.
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "autograd/rng.h"
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "tests/test_util.h"

static char tmp[64];

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = calloc(1, 1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

static int make_model(dt_ctx *ctx, int64_t V) {
    dt_safetensors *st;
    if (dt_st_open(ctx, "tests/golden/llama_gqa/model.safetensors", &st)) return 1;
    dt_st_writer *w;
    dt_st_writer_init(ctx, &w);
    int64_t D = 64;
    float *emb = malloc((size_t)(V * D) * sizeof(float)), *head = malloc((size_t)(V * D) * sizeof(float));
    dt_rng rng = {11};
    for (int64_t i = 0; i < V * D; i++) { emb[i] = (float)dt_rng_normal(&rng) * 0.5f; head[i] = (float)dt_rng_normal(&rng) * 0.1f; }
    float *copies[64];
    int nc = 0;
    for (size_t i = 0; i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        if (!strcmp(t->name, "model.embed_tokens.weight") || !strcmp(t->name, "lm_head.weight")) continue;
        float *c = copies[nc++] = malloc(t->nbytes);
        memcpy(c, t->data, t->nbytes);
        dt_st_writer_add(ctx, w, t->name, DT_F32, t->ndim, t->shape, c);
    }
    dt_st_writer_add(ctx, w, "model.embed_tokens.weight", DT_F32, 2, (int64_t[]){V, D}, emb);
    dt_st_writer_add(ctx, w, "lm_head.weight", DT_F32, 2, (int64_t[]){V, D}, head);
    char path[256];
    snprintf(path, sizeof path, "%s/model/model.safetensors", tmp);
    int rc = dt_st_writer_write(ctx, w, path);
    dt_st_writer_free(w);
    dt_st_close(st);
    for (int i = 0; i < nc; i++) free(copies[i]);
    free(emb);
    free(head);
    return rc;
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    snprintf(tmp, sizeof tmp, "/tmp/dt_gen_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("generate", "mkdtemp"); TEST_EXIT(); }
    char cmd[2048];
    // tiny_tok: 256 byte tokens + 3 added (ChatML) = 259 ids
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/model && cp tests/data/datasets/tiny_tok/tokenizer.json tests/data/datasets/tiny_tok/tokenizer_config.json %s/model/ && "
             "sed 's/\"vocab_size\": 128/\"vocab_size\": 259/' tests/golden/llama_gqa/config.json > %s/model/config.json",
             tmp, tmp, tmp);
    if (sh(cmd) || make_model(&ctx, 259)) { TEST_FAIL("generate_setup", "%s", ctx.msg); TEST_EXIT(); }
    const char *prompt = "--prompt 'Hello there' -n 16";
    snprintf(cmd, sizeof cmd, "./deltatune generate --dtype f32 --model %s/model --adapter tests/golden/llama_gqa/adapter %s > %s/a.txt 2>%s/err.txt", tmp, prompt, tmp, tmp);
    int r1 = sh(cmd);
    snprintf(cmd, sizeof cmd, "./deltatune merge --model %s/model --adapter tests/golden/llama_gqa/adapter --out %s/merged >/dev/null 2>>%s/err.txt", tmp, tmp, tmp);
    int r2 = sh(cmd);
    snprintf(cmd, sizeof cmd, "./deltatune generate --dtype f32 --model %s/merged %s > %s/b.txt 2>>%s/err.txt", tmp, prompt, tmp, tmp);
    int r3 = sh(cmd);
    snprintf(cmd, sizeof cmd, "./deltatune generate --dtype f32 --model %s/model %s > %s/c.txt 2>>%s/err.txt", tmp, prompt, tmp, tmp);
    int r4 = sh(cmd);
    char pa[128], pb[128], pc[128];
    snprintf(pa, sizeof pa, "%s/a.txt", tmp);
    snprintf(pb, sizeof pb, "%s/b.txt", tmp);
    snprintf(pc, sizeof pc, "%s/c.txt", tmp);
    char *a = slurp(pa), *b = slurp(pb), *c = slurp(pc);
    TEST_CHECK("generate_merged_equals_unmerged", !r1 && !r2 && !r3 && a && b && strlen(a) > strlen("Hello there") + 2 && !strcmp(a, b),
               "exit %d/%d/%d; unmerged '%s' vs merged '%s'", r1, r2, r3, a ? a : "", b ? b : "");
    TEST_CHECK("generate_adapter_changes_text", !r4 && c && a && strcmp(a, c), "the adapter did not change the greedy text '%s'", c ? c : "");
    free(a); free(b); free(c);
    snprintf(cmd, sizeof cmd, "./deltatune generate --model %s/model --chat --prompt hi -n 4 --temp 0.7 --top-p 0.9 --seed 1 >/dev/null 2>&1", tmp);
    TEST_CHECK("generate_chat_sampling_runs", sh(cmd) == 0, "generate --chat failed");
    snprintf(cmd, sizeof cmd, "./deltatune generate --model %s/model --adapter /nonexistent --prompt hi >/dev/null 2>&1", tmp);
    TEST_CHECK("generate_missing_adapter_exit_2", sh(cmd) == 2, "expected exit 2");
    // A sliding-window model (Mistral, sliding_window 16): a prompt plus -n beyond the window is refused
    // before any text is printed (the forward would refuse it mid-reply); within it, generate runs.
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/model_sw && cp %s/model/tokenizer.json %s/model/tokenizer_config.json %s/model/model.safetensors %s/model_sw/ && "
             "sed 's/LlamaForCausalLM/MistralForCausalLM/; s/\"llama\"/\"mistral\"/; s/\"vocab_size\"/\"sliding_window\": 16, \"vocab_size\"/' "
             "%s/model/config.json > %s/model_sw/config.json", tmp, tmp, tmp, tmp, tmp, tmp, tmp);
    int rs = sh(cmd);
    snprintf(cmd, sizeof cmd, "./deltatune generate --dtype f32 --model %s/model_sw --prompt 'Hello there' -n 30 > %s/sw.txt 2>%s/sw_err.txt", tmp, tmp, tmp);
    int r5 = rs ? -1 : sh(cmd);
    snprintf(pa, sizeof pa, "%s/sw.txt", tmp);
    snprintf(pb, sizeof pb, "%s/sw_err.txt", tmp);
    a = slurp(pa);
    b = slurp(pb);
    TEST_CHECK("generate_past_sliding_window_refused_upfront", r5 == 2 && a && !*a && b && strstr(b, "sliding_window (16)"),
               "exit %d, printed '%s', stderr '%s'", r5, a ? a : "", b ? b : "");
    free(a); free(b);
    snprintf(cmd, sizeof cmd, "./deltatune generate --dtype f32 --model %s/model_sw --prompt 'Hi' -n 4 >/dev/null 2>&1", tmp);
    TEST_CHECK("generate_within_sliding_window_runs", sh(cmd) == 0, "generate within the window failed");
    if (!dt_test_failures) { snprintf(cmd, sizeof cmd, "rm -rf %s", tmp); sh(cmd); }
    TEST_EXIT();
}
