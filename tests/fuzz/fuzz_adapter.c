// PEFT adapters: adapter_config.json (LoRA with target_modules, layers_to_transform, rank_pattern /
// alpha_pattern; prompt tuning) FUZZ_SEP adapter_model.safetensors, for the golden llama_gqa config
// (2 layers, hidden 64, vocab 128), loaded without weights as `merge` and `inspect` do.
#include <sys/stat.h>
#include "models/config.h"
#include "peft/adapter.h"
#include "peft/merge.h"
#include "tests/fuzz/fuzz_util.h"

static const char CONFIG[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 96, "
    "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"num_key_value_heads\": 2, \"vocab_size\": 128}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static dt_model_config cfg;
    static bool ready;
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    char path[160], dir[128];
    if (!ready) {
        fuzz_write("config.json", CONFIG, sizeof CONFIG - 1, path, sizeof path);
        if (dt_config_load(&ctx, path, &cfg)) abort();
        ready = true;
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
    return 0;
}
