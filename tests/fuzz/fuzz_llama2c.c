// llama2.c checkpoints (.bin): the seven-int header, the size check, the HF renaming and permutes; a file
// that loads then runs a forward (fuzz_model.h).
#include "models/llama2c.h"
#include "tests/fuzz/fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[128];
    fuzz_write("model.bin", data, n, path, sizeof path);
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_model_config cfg;
    dt_llama2c *m;
    if (dt_llama2c_load(&ctx, path, &cfg, &m)) return 0;
    static float buf[1 << 14];
    for (size_t i = 0; i < dt_llama2c_count(m); i++) {
        const dt_st_tensor *t = dt_llama2c_at(m, i);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        if (numel <= (int64_t)(sizeof buf / sizeof buf[0])) (void)dt_llama2c_read_f32(&ctx, m, t->name, buf, t->ndim, t->shape);
    }
    dt_llama2c_free(m);
    fuzz_model_forward(path, DT_F32);
    return 0;
}
