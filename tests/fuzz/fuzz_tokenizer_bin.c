// llama2.c tokenizer.bin (max token length, then score, length, bytes per token), then encode and
// decode with it.
#include "datasets/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[128];
    fuzz_write("tokenizer.bin", data, n, path, sizeof path);
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_tokenizer *tok;
    if (dt_tokenizer_load(&ctx, path, &tok)) return 0;
    static const char text[] = "Hello world, \xc3\xa9t\xc3\xa9 \xe2\x96\x81 <s> 123\n\t";
    dt_ids ids = {0};
    if (!dt_tokenizer_encode(&ctx, tok, text, sizeof text - 1, true, &ids)) {
        char *out;
        size_t len;
        if (!dt_tokenizer_decode(&ctx, tok, ids.v, ids.n, false, &out, &len)) free(out);
    }
    int32_t all[64];
    int32_t V = dt_tokenizer_vocab_size(tok);
    for (int i = 0; i < 64; i++) all[i] = V > 0 ? (int32_t)((i * 7919) % V) : 0;
    char *out;
    size_t len;
    if (!dt_tokenizer_decode(&ctx, tok, all, 64, true, &out, &len)) free(out);
    dt_ids_free(&ids);
    dt_tokenizer_free(tok);
    return 0;
}
