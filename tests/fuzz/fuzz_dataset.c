// Training data: JSONL in every format (text, completion, alpaca, chat, sharegpt, tokens, or detected)
// rendered through every built-in chat template, with the byte-level test tokenizer
// (tests/data/datasets/tiny_tok). The first two input bytes choose the format and template.
#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_util.h"

static const char *const FORMATS[] = {"auto", "text", "completion", "alpaca", "chat", "sharegpt", "tokens"};
static const char *const TEMPLATES[] = {"auto", "chatml", "qwen3", "llama3", "llama3.1", "llama2", "mistral", "zephyr", "alpaca", "none"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static dt_tokenizer *tok;
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    if (!tok && dt_tokenizer_load(&ctx, "tests/data/datasets/tiny_tok", &tok)) {
        fprintf(stderr, "fuzz_dataset: run from the project root: %s\n", ctx.msg);
        abort();
    }
    if (n < 2) return 0;
    dt_dataset_opts o = {FORMATS[data[0] % 7], TEMPLATES[data[1] % 10], data[0] & 0x80, data[1] & 0x80, (data[0] >> 3) & 15};
    char path[128];
    const char *p = fuzz_write("data.jsonl", data + 2, n - 2, path, sizeof path);
    dt_dataset *ds;
    if (dt_dataset_load(&ctx, &p, 1, tok, &o, &ds)) return 0;
    for (size_t i = 0; i < dt_dataset_size(ds) && i < 4; i++) {
        const int32_t *ids, *labels;
        int64_t len = dt_dataset_example(ds, i, &ids, &labels);
        volatile int64_t sum = 0;
        for (int64_t j = 0; j < len; j++) sum += ids[j] + labels[j];
        FILE *out = fopen("/dev/null", "w");
        if (out) { (void)dt_dataset_render_example(&ctx, ds, tok, i, out); fclose(out); }
    }
    dt_dataset_free(ds);
    return 0;
}
