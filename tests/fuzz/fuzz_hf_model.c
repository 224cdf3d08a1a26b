// Hugging Face model folders: config.json FUZZ_SEP model.safetensors, loaded as `train` loads a base
// (config, tensor names and shapes, 16-bit weights kept as stored, tied heads, biases, q/k norms), then
// a forward (fuzz_model.h).
#include <sys/stat.h>
#include "tests/fuzz/fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[160], dir[128];
    fuzz_part parts[2];
    int k = fuzz_split(data, n, parts, 2);
    snprintf(dir, sizeof dir, "%s/hf", fuzz_tmpdir());
    mkdir(dir, 0777);
    fuzz_write("hf/config.json", parts[0].p, parts[0].n, path, sizeof path);
    fuzz_write("hf/model.safetensors", k > 1 ? parts[1].p : (const uint8_t *)"", k > 1 ? parts[1].n : 0, path,
               sizeof path);
    // Widened, then the 16-bit path (a BF16 file is mapped in place, others converted once).
    fuzz_model_forward(dir, DT_F32);
    fuzz_model_forward(dir, DT_BF16);
    return 0;
}
