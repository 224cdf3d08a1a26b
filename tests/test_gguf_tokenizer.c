// tokenizer.ggml.* metadata from Hugging Face tokenizer folders: a small hand-made SentencePiece-style
// folder (tests/data/gguf/tok_spm), error cases, and the Qwen3, Llama 3 and Mistral fixtures.
#include <dirent.h>
#include "autograd/context.h"
#include "models/gguf.h"
#include "models/gguf_tokenizer.h"
#include "models/gguf_write.h"
#include "tests/test_util.h"

static char out_path[256];

// Writes the tokenizer keys of DIR into a vocabulary-only GGUF and opens it (NULL on failure, with ctx->msg).
static dt_gguf_file *vocab_gguf(dt_ctx *ctx, const char *dir, const dt_gguf_tok_opts *opts, int *status) {
    dt_gguf_writer *w;
    int st = dt_gguf_writer_new(ctx, out_path, &w);
    st = st ? st : dt_gguf_set_str(ctx, w, "general.architecture", "llama");
    st = st ? st : dt_gguf_add_tokenizer(ctx, w, dir, opts);
    st = st ? st : dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    dt_gguf_file *f = NULL;
    st = st ? st : dt_gguf_check_spec(ctx, out_path);
    st = st ? st : dt_gguf_open(ctx, out_path, &f);
    if (status) *status = st;
    return f;
}

static const dt_gguf_kv *kv(const dt_gguf_file *f, const char *key) {
    int64_t i = dt_gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kvs[i];
}

static int64_t int_of(const dt_gguf_file *f, const char *key) {
    const dt_gguf_kv *k = kv(f, key);
    return k && k->type != DT_GGUF_ARRAY ? dt_gguf_kv_int(k, 0) : -999;
}

static const char *str_of(const dt_gguf_file *f, const char *key) {
    const dt_gguf_kv *k = kv(f, key);
    return k && k->type == DT_GGUF_STRING ? k->strs[0] : "(missing)";
}

// Token i of tokenizer.ggml.tokens, its type and (when present) score.
static const char *tok(const dt_gguf_file *f, int64_t i) { return kv(f, "tokenizer.ggml.tokens")->strs[i]; }
static int64_t ttype(const dt_gguf_file *f, int64_t i) { return dt_gguf_kv_int(kv(f, "tokenizer.ggml.token_type"), (uint64_t)i); }
static double score(const dt_gguf_file *f, int64_t i) { return dt_gguf_kv_float(kv(f, "tokenizer.ggml.scores"), (uint64_t)i); }

#define EXPECT(cond) do { if (!(cond)) { bad++; printf("  mismatch: %s\n", #cond); } } while (0)

static void test_small_spm(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    int st, bad = 0;
    dt_gguf_file *f = vocab_gguf(&ctx, "tests/data/gguf/tok_spm", NULL, &st);
    if (!f) { TEST_FAIL("spm_small", "%s", ctx.msg); return; }
    EXPECT(!strcmp(str_of(f, "tokenizer.ggml.model"), "llama"));
    EXPECT(!strcmp(str_of(f, "tokenizer.ggml.pre"), "default"));
    const dt_gguf_kv *t = kv(f, "tokenizer.ggml.tokens");
    EXPECT(t && t->n == 20 && kv(f, "tokenizer.ggml.token_type")->arr_type == DT_GGUF_I32 &&
           kv(f, "tokenizer.ggml.token_type")->n == 20 && kv(f, "tokenizer.ggml.scores")->arr_type == DT_GGUF_F32);
    EXPECT(!kv(f, "tokenizer.ggml.merges"));
    if (t && t->n == 20) {
        EXPECT(!strcmp(tok(f, 10), "\xe2\x96\x81" "ab") && ttype(f, 10) == 1);
        EXPECT(!strcmp(tok(f, 12), "[PAD12]") && ttype(f, 12) == 5 && !strcmp(tok(f, 19), "[PAD19]"));
        EXPECT(!strcmp(tok(f, 13), "<tool>") && ttype(f, 13) == 4);       // added, not special: user-defined
        EXPECT(!strcmp(tok(f, 14), "<|im_end|>") && ttype(f, 14) == 3);   // not marked special, but looks it
        EXPECT(ttype(f, 0) == 3 && ttype(f, 1) == 3 && ttype(f, 2) == 3);  // special added tokens: control
        EXPECT(ttype(f, 3) == 6 && ttype(f, 4) == 6);                      // <0x0A>, <0xFF>: byte
        // Scores follow the merge order: ▁a (rank 0), ab (1), ▁ab (2 and 3: the first counts).
        EXPECT(score(f, 8) == 0.0 && score(f, 9) == -1.0 && score(f, 10) == -2.0);
        EXPECT(score(f, 5) == -9.0 && score(f, 11) == -15.0);              // not produced: -(n_merges + id)
        EXPECT(score(f, 3) == 0.0 && score(f, 1) == -1000.0 && score(f, 12) == -1000.0);
    }
    EXPECT(int_of(f, "tokenizer.ggml.bos_token_id") == 1 && kv(f, "tokenizer.ggml.bos_token_id")->type == DT_GGUF_U32);
    EXPECT(int_of(f, "tokenizer.ggml.eos_token_id") == 2 && int_of(f, "tokenizer.ggml.unknown_token_id") == 0);
    EXPECT(int_of(f, "tokenizer.ggml.padding_token_id") == 2);           // from config.json
    EXPECT(int_of(f, "tokenizer.ggml.add_bos_token") == 1 && kv(f, "tokenizer.ggml.add_bos_token")->type == DT_GGUF_BOOL);
    EXPECT(int_of(f, "tokenizer.ggml.add_eos_token") == 0);
    EXPECT(!strcmp(str_of(f, "tokenizer.chat_template"), "{{ messages }}"));
    EXPECT(!strcmp(str_of(f, "tokenizer.chat_template.tool_use"), "{{ tools }}"));
    EXPECT(kv(f, "tokenizer.chat_templates") && kv(f, "tokenizer.chat_templates")->n == 1 &&
           !strcmp(kv(f, "tokenizer.chat_templates")->strs[0], "tool_use"));
    // The converter's key order: model, pre, tokens, scores, types, then special ids and flags.
    EXPECT(!strcmp(f->kvs[1].key, "tokenizer.ggml.model") && !strcmp(f->kvs[4].key, "tokenizer.ggml.scores") &&
           !strcmp(f->kvs[5].key, "tokenizer.ggml.token_type") && !strcmp(f->kvs[6].key, "tokenizer.ggml.bos_token_id"));
    dt_gguf_close(f);
    TEST_CHECK("spm_small", bad == 0, "%d mismatches", bad);

    dt_gguf_tok_opts o = {.n_vocab = 10};
    f = vocab_gguf(&ctx, "tests/data/gguf/tok_spm", &o, &st);
    TEST_CHECK("spm_vocab_too_small", !f && st == DT_EINPUT && strstr(ctx.msg, "tok_spm/tokenizer.json") && strstr(ctx.msg, "14"),
               "status %d: %s", st, ctx.msg);
    dt_gguf_close(f);
}

static void test_errors(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    int st;
    dt_gguf_file *f = vocab_gguf(&ctx, "tests/data/gguf/tok_unigram", NULL, &st);
    TEST_CHECK("tok_unigram_unsupported", !f && st == DT_EUNSUPPORTED && strstr(ctx.msg, "tok_unigram/tokenizer.json") && strstr(ctx.msg, "Unigram"),
               "status %d: %s", st, ctx.msg);
    dt_gguf_close(f);
    f = vocab_gguf(&ctx, "tests/data/gguf/tok_badjson", NULL, &st);
    TEST_CHECK("tok_bad_json", !f && st == DT_EINPUT && strstr(ctx.msg, "tok_badjson/tokenizer.json:2:"), "status %d: %s", st, ctx.msg);
    dt_gguf_close(f);
    f = vocab_gguf(&ctx, "tests/data/gguf/tok_unknown_pre", NULL, &st);
    TEST_CHECK("tok_unknown_pre", !f && st == DT_EUNSUPPORTED && strstr(ctx.msg, "pre_tokenizer") && strstr(ctx.msg, "Whitespace"),
               "status %d: %s", st, ctx.msg);
    dt_gguf_close(f);
    dt_gguf_tok_opts o = {.pre = "gpt-2"};
    f = vocab_gguf(&ctx, "tests/data/gguf/tok_unknown_pre", &o, &st);
    TEST_CHECK("tok_pre_override", f && !strcmp(str_of(f, "tokenizer.ggml.pre"), "gpt-2") &&
               kv(f, "tokenizer.ggml.merges")->n == 1 && !strcmp(kv(f, "tokenizer.ggml.merges")->strs[0], "a b"),
               "status %d: %s", st, ctx.msg);
    dt_gguf_close(f);
    f = vocab_gguf(&ctx, "tests/data/gguf/does_not_exist", NULL, &st);
    TEST_CHECK("tok_missing_dir", !f && st == DT_EINPUT && strstr(ctx.msg, "does_not_exist/tokenizer.json"), "status %d: %s", st, ctx.msg);
    dt_gguf_close(f);
}

static void test_fixture(const char *fixtures, const char *name) {
    char dir[512], label[64];
    snprintf(dir, sizeof dir, "%s/tokenizers/%s", fixtures, name);
    snprintf(label, sizeof label, "fixture_%s", name);
    if (access(dir, R_OK) != 0) { TEST_SKIP(label, "%s is absent", dir); return; }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    int st, bad = 0;
    dt_gguf_file *f = vocab_gguf(&ctx, dir, NULL, &st);
    if (!f) { TEST_FAIL(label, "%s", ctx.msg); return; }
    const dt_gguf_kv *t = kv(f, "tokenizer.ggml.tokens"), *m = kv(f, "tokenizer.ggml.merges");
    if (!strcmp(name, "mistral")) {
        EXPECT(!strcmp(str_of(f, "tokenizer.ggml.model"), "llama") && !strcmp(str_of(f, "tokenizer.ggml.pre"), "default"));
        EXPECT(t->n == 32000 && !m && kv(f, "tokenizer.ggml.scores")->n == 32000);
        EXPECT(!strcmp(tok(f, 22557), "\xe2\x96\x81Hello") && ttype(f, 22557) == 1);
        EXPECT(!strcmp(tok(f, 0), "<unk>") && ttype(f, 0) == 3 && ttype(f, 1) == 3 && ttype(f, 2) == 3);
        EXPECT(!strcmp(tok(f, 3), "<0x00>") && ttype(f, 3) == 6 && !strcmp(tok(f, 258), "<0xFF>") && ttype(f, 258) == 6);
        EXPECT(!strcmp(tok(f, 261), "\xe2\x96\x81t") && score(f, 261) == 0.0); // the first merge
        EXPECT(score(f, 259) < -58000.0);                                        // "▁▁" is merged last
        EXPECT(int_of(f, "tokenizer.ggml.bos_token_id") == 1 && int_of(f, "tokenizer.ggml.eos_token_id") == 2 &&
               int_of(f, "tokenizer.ggml.unknown_token_id") == 0 && !kv(f, "tokenizer.ggml.padding_token_id"));
        EXPECT(int_of(f, "tokenizer.ggml.add_bos_token") == 1 && int_of(f, "tokenizer.ggml.add_eos_token") == 0);
        EXPECT(!kv(f, "tokenizer.chat_template"));
    } else if (!strcmp(name, "qwen3")) {
        EXPECT(!strcmp(str_of(f, "tokenizer.ggml.model"), "gpt2") && !strcmp(str_of(f, "tokenizer.ggml.pre"), "qwen2"));
        EXPECT(t->n == 151669 && m && m->n == 151387 && !kv(f, "tokenizer.ggml.scores"));
        EXPECT(m && !strcmp(m->strs[0], "\xc4\xa0 \xc4\xa0"));                   // ["Ġ", "Ġ"] -> "Ġ Ġ"
        EXPECT(!strcmp(tok(f, 151643), "<|endoftext|>") && ttype(f, 151643) == 3);
        EXPECT(!strcmp(tok(f, 151667), "<think>") && ttype(f, 151667) == 4);    // added, special: false
        EXPECT(!strcmp(tok(f, 9707), "Hello") && ttype(f, 9707) == 1);
        EXPECT(int_of(f, "tokenizer.ggml.eos_token_id") == 151645 && int_of(f, "tokenizer.ggml.padding_token_id") == 151643);
        EXPECT(!kv(f, "tokenizer.ggml.bos_token_id") && int_of(f, "tokenizer.ggml.add_bos_token") == 0);
        EXPECT(strstr(str_of(f, "tokenizer.chat_template"), "<|im_start|>"));
    } else {
        EXPECT(!strcmp(str_of(f, "tokenizer.ggml.model"), "gpt2") && !strcmp(str_of(f, "tokenizer.ggml.pre"), "llama-bpe"));
        EXPECT(t->n == 128256 && m && m->n == 280147);
        EXPECT(m && !strcmp(m->strs[0], "\xc4\xa0 \xc4\xa0"));
        EXPECT(!strcmp(tok(f, 128000), "<|begin_of_text|>") && ttype(f, 128000) == 3 && ttype(f, 128255) == 3);
        EXPECT(!strcmp(tok(f, 9906), "Hello") && ttype(f, 9906) == 1);
        EXPECT(int_of(f, "tokenizer.ggml.bos_token_id") == 128000 && int_of(f, "tokenizer.ggml.eos_token_id") == 128001);
        EXPECT(int_of(f, "tokenizer.ggml.add_bos_token") == 0); // this tokenizer.json adds no BOS
        EXPECT(strstr(str_of(f, "tokenizer.chat_template"), "<|start_header_id|>"));
    }
    dt_gguf_close(f);
    TEST_CHECK(label, bad == 0, "%d mismatches", bad);

    if (!strcmp(name, "qwen3")) { // Qwen3 models have 151936 embedding rows: the rest are padding tokens
        dt_gguf_tok_opts o = {.n_vocab = 151936};
        f = vocab_gguf(&ctx, dir, &o, &st);
        TEST_CHECK("fixture_qwen3_padded", f && kv(f, "tokenizer.ggml.tokens")->n == 151936 && !strcmp(tok(f, 151700), "[PAD151700]") &&
                   ttype(f, 151700) == 5 && !strcmp(tok(f, 151668), "</think>"), "%s", f ? "wrong padding" : ctx.msg);
        dt_gguf_close(f);
    }
}

int main(void) {
    char dir[] = "/tmp/dt_test_gguf_tok.XXXXXX";
    if (!mkdtemp(dir)) { TEST_FAIL("setup", "mkdtemp failed"); TEST_EXIT(); }
    snprintf(out_path, sizeof out_path, "%s/vocab.gguf", dir);
    test_small_spm();
    test_errors();
    const char *fx = dt_test_fixtures();
    if (!fx) {
        TEST_SKIP("fixtures", "../shared/fixtures is absent");
    } else {
        test_fixture(fx, "mistral");
        test_fixture(fx, "qwen3");
        test_fixture(fx, "llama3");
    }
    unlink(out_path);
    rmdir(dir);
    TEST_EXIT();
}
