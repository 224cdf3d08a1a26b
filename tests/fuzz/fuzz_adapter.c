// PEFT adapters: adapter_config.json (LoRA with target_modules, layers_to_transform, rank_pattern /
// alpha_pattern; prompt tuning) FUZZ_SEP adapter_model.safetensors, for the golden llama_gqa config
// (2 layers, hidden 64, vocab 128), loaded without weights as `merge` and `inspect` do; then onto a model
// of that config (random weights) as `eval`, `generate` and a resume do, with a 3-token forward through
// the adapter and a save of what loaded.
#include "models/config.h"
#include "peft/adapter.h"
#include "peft/merge.h"
#include "peft/peft_io.h"
#include "tests/fuzz/fuzz_model.h"

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
    fuzz_write_pair("adapter", "adapter_config.json", "adapter_model.safetensors", data, n, dir, sizeof dir);
    dt_adapter *a;
    if (!dt_adapter_load_cfg(&ctx, dir, &cfg, &a)) dt_adapter_free(a);
    if (dt_adapter_load(&ctx, dir, model, &a)) return 0;
    fuzz_forward(model, &a->view);
    snprintf(saved, sizeof saved, "%s/saved", fuzz_tmpdir());
    (void)dt_adapter_save(&ctx, a, model, saved);
    dt_adapter_free(a);
    return 0;
}
