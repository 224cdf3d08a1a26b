// config.json (Hugging Face model config): architectures, sizes, RoPE scaling, limits, then a save and
// reload of what was accepted.
#include "models/config.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[128], out[160];
    fuzz_write("config.json", data, n, path, sizeof path);
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_model_config cfg, again;
    if (dt_config_load(&ctx, path, &cfg)) return 0;
    snprintf(out, sizeof out, "%s/saved.json", fuzz_tmpdir());
    if (!dt_config_save(&ctx, &cfg, out)) (void)dt_config_load(&ctx, out, &again);
    return 0;
}
