// GGUF: header, metadata of every type (model hyper-parameters, tokenizer arrays, adapter keys such as
// adapter.lora.alpha read with the generic getters), tensor infos and F32/F16/BF16 tensor views.
#include "models/gguf.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[128];
    fuzz_write("x.gguf", data, n, path, sizeof path);
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_gguf_file *f;
    if (dt_gguf_open(&ctx, path, &f)) return 0;
    volatile double sink = 0;
    for (int64_t i = 0; i < f->n_kv; i++) {
        const dt_gguf_kv *kv = &f->kvs[i];
        if (dt_gguf_find_key(f, kv->key) < 0) abort();
        for (uint64_t j = 0; j < 3; j++) // also past the count: the getters must refuse, not read
            sink += (double)dt_gguf_kv_int(kv, j) + dt_gguf_kv_float(kv, j) + (double)dt_gguf_kv_uint(kv, j);
        if (kv->strs && kv->n) sink += (double)kv->str_lens[0];
    }
    const char *s;
    int64_t iv;
    double dv;
    bool bv;
    (void)dt_gguf_get_str(&ctx, f, "general.architecture", &s);
    (void)dt_gguf_get_str(&ctx, f, "general.type", &s);
    (void)dt_gguf_get_float(&ctx, f, "adapter.lora.alpha", &dv);
    (void)dt_gguf_get_int(&ctx, f, "llama.block_count", &iv);
    (void)dt_gguf_get_bool(&ctx, f, "tokenizer.ggml.add_bos_token", &bv);
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const dt_gguf_tensor *t = &f->tensors[i];
        if (dt_gguf_find_tensor(f, t->name) == NULL) abort();
        dt_tensor view;
        if (!dt_gguf_tensor_view(&ctx, f, t, &view)) {
            size_t nb = dt_nbytes(&view);
            const uint8_t *p = view.data; // the view lies inside the mapping: touch its first and last byte
            if (nb) sink += p[0] + p[nb - 1];
        }
    }
    dt_gguf_close(f);
    return 0;
}
