// safetensors: one file (header JSON, offsets, dtypes, shapes), every tensor read as f32 when small.
#include "models/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[128];
    fuzz_write("x.safetensors", data, n, path, sizeof path);
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_safetensors *st;
    if (dt_st_open(&ctx, path, &st)) return 0;
    (void)dt_st_metadata(st, "format");
    static float buf[1 << 14];
    for (size_t i = 0; i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        if (dt_st_find(st, t->name) == NULL) abort(); // every listed tensor can be found by name
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        if (numel <= (int64_t)(sizeof buf / sizeof buf[0])) (void)dt_st_read_f32(&ctx, st, t->name, buf, t->ndim, t->shape);
    }
    dt_st_close(st);
    return 0;
}
