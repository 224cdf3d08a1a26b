// GGUF files as training bases (models/gguf_model.c): the config from the architecture's metadata, the
// tensors under Hugging Face names in their stored types (quantized ones as views), llama's q/k rows put
// back in rotate-half order, and the llama3 RoPE factors. Every entry's first and last byte is read and
// its first row converted to f32, so a view that overran the file or a permute that wrote outside its
// copy shows up under ASan. A file that opens then loads as a model and runs a forward (fuzz_model.h).
#include "autograd/dtype.h"
#include "models/gguf_model.h"
#include "tests/fuzz/fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[128];
    fuzz_write("base.gguf", data, n, path, sizeof path);
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_model_config cfg;
    dt_gguf_model *m;
    if (dt_gguf_model_open(&ctx, path, &cfg, &m)) return 0;
    volatile double sink = 0;
    static float row[1 << 14];
    for (size_t i = 0; i < dt_gguf_model_count(m); i++) {
        const dt_st_tensor *t = dt_gguf_model_at(m, i);
        if (dt_gguf_model_find(m, t->name) != t || !dt_gguf_model_source(m, i)) abort();
        const uint8_t *p = t->data;
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
        const int64_t len = t->shape[t->ndim - 1];
        const dt_type_traits *tr = dt_type_traits_of(t->dtype);
        if (t->nbytes && tr && tr->to_f32 && len <= (int64_t)(sizeof row / sizeof row[0])) {
            tr->to_f32(t->data, row, len);
            sink += row[0];
        }
    }
    const float *rf = dt_gguf_model_rope_factors(m);
    if (rf && cfg.head_dim >= 2) sink += rf[0] + rf[cfg.head_dim / 2 - 1];
    dt_gguf_model_close(m);

    fuzz_model_forward(path, DT_F32);
    fuzz_model_forward(path, DT_DTYPE_STORED); // its F16/BF16 tensors used in place
    return 0;
}
