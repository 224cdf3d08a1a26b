// Hugging Face model folders: config.json FUZZ_SEP model.safetensors, loaded as `train` loads a base
// (config, tensor names and shapes, 16-bit weights kept as stored, tied heads, biases, q/k norms), then
// a forward (fuzz_model.h).
#include "tests/fuzz/fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char dir[128];
    fuzz_write_pair("hf", "config.json", "model.safetensors", data, n, dir, sizeof dir);
    // Widened, then the 16-bit path (a BF16 file is mapped in place, others converted once), then as
    // stored (each matrix in its own file type when 16-bit, on the f32 backend).
    fuzz_model_forward(dir, DT_F32);
    fuzz_model_forward(dir, DT_BF16);
    fuzz_model_forward(dir, DT_DTYPE_STORED);
    return 0;
}
