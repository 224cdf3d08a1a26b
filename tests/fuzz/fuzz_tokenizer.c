// Hugging Face tokenizers: tokenizer.json (BPE model, normalizers, pre-tokenizers incl. Split regexes,
// decoders, added tokens) FUZZ_SEP tokenizer_config.json FUZZ_SEP text; then encode the text (with and
// without special tokens) and decode the ids back, and decode arbitrary ids.
#include <sys/stat.h>
#include "datasets/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fuzz_part parts[3];
    int k = fuzz_split(data, n, parts, 3);
    char path[160], dir[128];
    snprintf(dir, sizeof dir, "%s/tok", fuzz_tmpdir());
    mkdir(dir, 0777);
    fuzz_write("tok/tokenizer.json", parts[0].p, parts[0].n, path, sizeof path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (k > 1) fuzz_write("tok/tokenizer_config.json", parts[1].p, parts[1].n, path, sizeof path);
    else unlink(path);
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_tokenizer *tok;
    if (dt_tokenizer_load(&ctx, dir, &tok)) return 0;
    const char *text = k > 2 ? (const char *)parts[2].p : "Hello world! \xc3\xa9\xe2\x96\x81 <|im_start|> 42";
    size_t tn = k > 2 ? parts[2].n : strlen(text);
    dt_ids ids = {0};
    char *out;
    size_t len;
    for (int special = 0; special < 2; special++) {
        dt_ids_clear(&ids);
        if (!dt_tokenizer_encode(&ctx, tok, text, tn, special, &ids) &&
            !dt_tokenizer_decode(&ctx, tok, ids.v, ids.n, !special, &out, &len))
            free(out);
    }
    int32_t V = dt_tokenizer_vocab_size(tok), some[32];
    for (int i = 0; i < 32; i++) some[i] = V > 0 ? (int32_t)(((uint32_t)i * 2654435761u) % (uint32_t)V) : 0;
    if (!dt_tokenizer_decode(&ctx, tok, some, 32, false, &out, &len)) free(out);
    (void)dt_tokenizer_chat_template(tok);
    dt_ids_free(&ids);
    dt_tokenizer_free(tok);
    return 0;
}
