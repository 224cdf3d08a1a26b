// PEFT adapters: adapter_config.json (LoRA with target_modules, layers_to_transform, rank_pattern /
// alpha_pattern; prompt tuning) FUZZ_SEP adapter_model.safetensors, for the golden llama_gqa config
// (2 layers, hidden 64, vocab 128), loaded without weights as `merge` and `inspect` do; then onto a model
// of that config (random weights) as `eval`, `generate` and a resume do, with a 3-token forward through
// the adapter and a save of what loaded.
#include <sys/stat.h>
#include "autograd/graph.h"
#include "models/config.h"
#include "models/llama.h"
#include "peft/adapter.h"
#include "peft/merge.h"
#include "peft/peft_io.h"
#include "tests/fuzz/fuzz_util.h"

static const char CONFIG[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 96, "
    "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"num_key_value_heads\": 2, \"vocab_size\": 128}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static dt_model_config cfg;
    static dt_llama *model; // built once: the harness checks adapters, not the model
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    char path[160], dir[128], saved[160];
    if (!model) {
        fuzz_write("config.json", CONFIG, sizeof CONFIG - 1, path, sizeof path);
        if (dt_config_load(&ctx, path, &cfg) || dt_llama_init_random(&ctx, &cfg, dt_backend_cpu(), 1, &model)) abort();
    }
    fuzz_part parts[2];
    int k = fuzz_split(data, n, parts, 2);
    snprintf(dir, sizeof dir, "%s/adapter", fuzz_tmpdir());
    mkdir(dir, 0777);
    fuzz_write("adapter/adapter_config.json", parts[0].p, parts[0].n, path, sizeof path);
    fuzz_write("adapter/adapter_model.safetensors", k > 1 ? parts[1].p : (const uint8_t *)"", k > 1 ? parts[1].n : 0, path,
               sizeof path);
    dt_adapter *a;
    if (!dt_adapter_load_cfg(&ctx, dir, &cfg, &a)) dt_adapter_free(a);
    if (dt_adapter_load(&ctx, dir, model, &a)) return 0;
    const int32_t ids[3] = {0, 5, 127};
    dt_graph g;
    if (!dt_graph_init(&ctx, &g, model->be, 0)) {
        g.grad_enabled = false;
        dt_batch b = {1, 3, ids, ids, NULL, NULL};
        dt_llama_out out;
        volatile float sink = 0;
        if (!dt_llama_forward(&ctx, &g, model, &a->view, &b, 0, true, &out)) sink += dt_f32(out.logits)[0];
        (void)sink;
        dt_graph_free(&g);
    }
    snprintf(saved, sizeof saved, "%s/saved", fuzz_tmpdir());
    (void)dt_adapter_save(&ctx, a, model, saved);
    dt_adapter_free(a);
    return 0;
}
