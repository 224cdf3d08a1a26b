// safetensors sharded index (model.safetensors.index.json) beside two small valid shards.
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "tests/fuzz/fuzz_util.h"

static void write_shard(const char *name, const char *tensor) {
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_st_writer *w;
    char path[128];
    float v[6] = {1, 2, 3, 4, 5, 6};
    snprintf(path, sizeof path, "%s/%s", fuzz_tmpdir(), name);
    if (dt_st_writer_init(&ctx, &w) || dt_st_writer_add(&ctx, w, tensor, DT_F32, 2, (int64_t[]){2, 3}, v) ||
        dt_st_writer_write(&ctx, w, path))
        abort();
    dt_st_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static bool shards;
    if (!shards) {
        write_shard("model-00001-of-00002.safetensors", "a.weight");
        write_shard("model-00002-of-00002.safetensors", "b.weight");
        shards = true;
    }
    char path[128];
    fuzz_write("model.safetensors.index.json", data, n, path, sizeof path);
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_safetensors *st;
    if (dt_st_open(&ctx, path, &st)) return 0;
    float buf[6];
    for (size_t i = 0; i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        (void)dt_st_read_f32(&ctx, st, t->name, buf, 2, (int64_t[]){2, 3});
    }
    dt_st_close(st);
    return 0;
}
