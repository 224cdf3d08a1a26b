// GGUF: header, metadata of every type (model hyper-parameters, tokenizer arrays, adapter keys such as
// adapter.lora.alpha read with the generic getters), tensor infos and F32/F16/BF16 tensor views, and the
// tokenizer built from the tokenizer.ggml.* metadata (datasets/tokenizer_gguf.c), which then encodes and
// decodes a short text.
#include "datasets/tokenizer.h"
#include "models/gguf.h"
#include "tests/fuzz/fuzz_util.h"

static void exercise_tokenizer(dt_ctx *ctx, const dt_gguf_file *f) {
    dt_tokenizer *tok;
    if (dt_tokenizer_load_gguf(ctx, f, &tok)) return;
    static const char text[] = "<s>Hello  world 12345\n\xC3\xA9t\xC3\xA9 <|im_end|>ab";
    dt_ids ids = {0};
    if (!dt_tokenizer_encode(ctx, tok, text, sizeof text - 1, true, &ids)) {
        char *out = NULL;
        for (int skip = 0; skip < 2; skip++) {
            if (!dt_tokenizer_decode(ctx, tok, ids.v, ids.n, skip, &out, NULL)) free(out);
            out = NULL;
        }
    }
    for (size_t i = 0; i < ids.n; i++)
        if (ids.v[i] < 0 || ids.v[i] >= dt_tokenizer_vocab_size(tok)) abort(); // an id the model could not embed
    dt_ids_free(&ids);
    (void)dt_tokenizer_chat_template(tok);
    dt_tokenizer_free(tok);
}

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
    exercise_tokenizer(&ctx, f);
    dt_gguf_close(f);
    return 0;
}
