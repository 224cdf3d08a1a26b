// Tokenizer tests: ids against the reference files for the Qwen3, Llama 3 and Mistral fixtures, decode
// round trips, HF's added-token rules on small generated tokenizers, llama2.c tokenizer.bin, the two BPE
// merge loops against each other, encoding from several threads, and error messages.
#include <jansson.h>
#include <omp.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <utf8proc.h>
#include "datasets/tokenizer_impl.h"
#include "tests/corpus_lines.h"
#include "tests/test_util.h"

#define DATA "tests/data/tokenizer"

static void ids_str(const int32_t *v, size_t n, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < n && k + 16 < cap; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ",%d" : "%d", v[i]);
    snprintf(buf + k, cap - k, "]");
}

static bool ids_equal_json(const dt_ids *ids, const json_t *arr) {
    if (!json_is_array(arr) || json_array_size(arr) != ids->n) return false;
    for (size_t i = 0; i < ids->n; i++)
        if (json_integer_value(json_array_get(arr, i)) != ids->v[i]) return false;
    return true;
}

// Every corpus line must give the reference ids.
static void check_expected(const char *name, const dt_tokenizer *tok, const lines *corpus, const char *exp_path,
                           bool special) {
    char test[128];
    snprintf(test, sizeof test, "%s: %zu corpus lines match %s", name, corpus->n, exp_path);
    FILE *f = fopen(exp_path, "r");
    if (!f) { TEST_FAIL(test, "cannot open %s", exp_path); return; }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_ids ids = {0};
    char *line = NULL, got[512];
    size_t cap = 0, bad = 0, i = 0;
    for (; i < corpus->n && getline(&line, &cap, f) > 0; i++) {
        json_t *exp = json_loads(line, 0, NULL);
        ids.n = 0;
        int rc = dt_tokenizer_encode(&ctx, tok, corpus->s[i], corpus->len[i], special, &ids);
        if (rc || !ids_equal_json(&ids, exp)) {
            if (bad++ < 3) {
                ids_str(ids.v, ids.n, got, sizeof got);
                printf("  %s line %zu: got %s (rc %d %s) expected %.300s", name, i + 1, got, rc, rc ? ctx.msg : "", line);
            }
        }
        json_decref(exp);
    }
    free(line);
    fclose(f);
    dt_ids_free(&ids);
    TEST_CHECK(test, bad == 0 && i == corpus->n, "%zu of %zu lines differ (%zu lines compared)", bad, corpus->n, i);
}

// decode(encode(x)) == x wherever HF gives it back: everywhere for byte-level tokenizers (after NFC when the
// tokenizer normalizes), and for SentencePiece ones on lines without added tokens or a literal '▁' (the
// decoder turns '▁' into a space and puts a space after each added token).
static void check_round_trip(const char *name, const dt_tokenizer *tok, const lines *corpus, bool normalizes,
                             bool sentencepiece) {
    char test[128];
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_ids ids = {0};
    size_t bad = 0, checked = 0;
    for (size_t i = 0; i < corpus->n; i++) {
        const char *x = corpus->s[i];
        size_t n = corpus->len[i];
        if (sentencepiece && (strstr(x, "<s>") || strstr(x, "</s>") || strstr(x, "<unk>") || strstr(x, "\xE2\x96\x81")))
            continue;
        char *want = NULL;
        size_t want_n = n;
        if (normalizes) {
            utf8proc_uint8_t *m = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)x, (utf8proc_ssize_t)n, &m, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r < 0) continue;
            want = (char *)m;
            want_n = (size_t)r;
        }
        ids.n = 0;
        char *out = NULL;
        size_t out_n = 0;
        int rc = dt_tokenizer_encode(&ctx, tok, x, n, false, &ids);
        if (!rc) rc = dt_tokenizer_decode(&ctx, tok, ids.v, ids.n, false, &out, &out_n);
        const char *w = want ? want : x;
        if (rc || out_n != want_n || memcmp(out, w, want_n)) {
            if (bad++ < 3) printf("  %s round trip line %zu: got \"%s\" want \"%s\" (rc %d)\n", name, i + 1, out ? out : "", w, rc);
        }
        checked++;
        free(out);
        free(want);
    }
    dt_ids_free(&ids);
    snprintf(test, sizeof test, "%s: decode(encode(x)) == x on %zu lines", name, checked);
    TEST_CHECK(test, bad == 0 && checked > 300, "%zu lines differ", bad);
}

// hf_cases.jsonl: lines where the JavaScript reference and HF (Rust) disagree, with HF's ids.
static void check_hf_cases(const char *name, const dt_tokenizer *tok) {
    char test[128];
    snprintf(test, sizeof test, "%s: %s/hf_cases.jsonl (HF behaviour where the JS port differs)", name, DATA);
    FILE *f = fopen(DATA "/hf_cases.jsonl", "r");
    if (!f) { TEST_FAIL(test, "cannot open it"); return; }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_ids ids = {0};
    char *line = NULL;
    size_t cap = 0, bad = 0, n = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        const json_t *text = json_object_get(j, "text");
        ids.n = 0;
        int rc = dt_tokenizer_encode(&ctx, tok, json_string_value(text), json_string_length(text), false, &ids);
        if (rc || !ids_equal_json(&ids, json_object_get(j, name))) bad++;
        n++;
        json_decref(j);
    }
    free(line);
    fclose(f);
    dt_ids_free(&ids);
    TEST_CHECK(test, bad == 0 && n > 0, "%zu of %zu cases differ", bad, n);
}

// The same ids from 8 threads at once on one tokenizer (the word cache is shared).
static void check_threads(const char *name, const dt_tokenizer *tok, const lines *corpus) {
    size_t n = corpus->n;
    dt_ids *want = calloc(n, sizeof *want);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    for (size_t i = 0; i < n; i++) dt_tokenizer_encode(&ctx, tok, corpus->s[i], corpus->len[i], true, &want[i]);
    int bad = 0;
#pragma omp parallel for num_threads(8) schedule(dynamic, 1) reduction(+ : bad)
    for (size_t k = 0; k < 8 * n; k++) {
        size_t i = (k * 7919) % n;
        dt_ctx c;
        dt_ctx_init(&c);
        dt_ids ids = {0};
        int rc = dt_tokenizer_encode(&c, tok, corpus->s[i], corpus->len[i], true, &ids);
        if (rc || ids.n != want[i].n || (ids.n && memcmp(ids.v, want[i].v, ids.n * sizeof *ids.v))) bad++;
        dt_ids_free(&ids);
    }
    for (size_t i = 0; i < n; i++) dt_ids_free(&want[i]);
    free(want);
    char test[128];
    snprintf(test, sizeof test, "%s: 8 threads encoding at once agree with one", name);
    TEST_CHECK(test, bad == 0, "%d encodings differ", bad);
}

// The naive merge loop (used for short words) and the heap (long ones) must agree.
static void check_merge_loops(const dt_tokenizer *tok, const lines *corpus) {
    int32_t sym[2][4096], aux[8 * 4096];
    size_t bad = 0, runs = 0;
    uint64_t rng = 12345;
    for (size_t i = 0; i < corpus->n; i++) {
        for (int r = 0; r < 4; r++) {
            // A random slice of the line, as bytes; byte-level tokenizers start from one symbol per byte.
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t len = corpus->len[i], a = len ? (rng >> 33) % len : 0, n = len - a;
            if (n > 4096) n = 4096;
            for (size_t k = 0; k < n; k++) sym[0][k] = sym[1][k] = tok->byte_id[(unsigned char)corpus->s[i][a + k]];
            size_t n0 = tk_bpe_merge_naive(&tok->merges, sym[0], n, aux);
            size_t n1 = tk_bpe_merge_heap(&tok->merges, sym[1], n, aux);
            if (n0 != n1 || memcmp(sym[0], sym[1], n0 * sizeof(int32_t))) bad++;
            runs++;
        }
    }
    TEST_CHECK("qwen3: naive and heap BPE merges agree", bad == 0, "%zu of %zu slices differ", bad, runs);
}

static void check_decode(const dt_tokenizer *q, const dt_tokenizer *m) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char *out = NULL;
    int32_t hello[] = {1, 22557, 1526, 2};
    int rc = dt_tokenizer_decode(&ctx, m, hello, 4, false, &out, NULL);
    TEST_CHECK("mistral: decode keeps <s> and </s> and strips one leading space", !rc && !strcmp(out, "<s> Hello world</s>"),
               "got '%s'", out ? out : ctx.msg);
    free(out);
    rc = dt_tokenizer_decode(&ctx, m, hello, 4, true, &out, NULL);
    TEST_CHECK("mistral: decode skip_special", !rc && !strcmp(out, "Hello world"), "got '%s'", out ? out : ctx.msg);
    free(out);
    // <0xE4> alone is not UTF-8: the ByteFallback decoder gives U+FFFD per byte, then "A" from <0x41>.
    int32_t bytes[] = {dt_tokenizer_token_to_id(m, "<0xE4>"), dt_tokenizer_token_to_id(m, "<0xB8>"), 22557,
                       dt_tokenizer_token_to_id(m, "<0x41>")};
    rc = dt_tokenizer_decode(&ctx, m, bytes, 4, false, &out, NULL);
    TEST_CHECK("mistral: byte-fallback decode of a broken sequence", !rc && !strcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBD HelloA"),
               "got '%s'", out ? out : ctx.msg);
    free(out);
    dt_ids ids = {0};
    const char *chat = "<|im_start|>user\n\xE4\xBD\xA0<|im_end|>";
    rc = dt_tokenizer_encode(&ctx, q, chat, strlen(chat), false, &ids);
    if (!rc) rc = dt_tokenizer_decode(&ctx, q, ids.v, ids.n, true, &out, NULL);
    TEST_CHECK("qwen3: decode skip_special drops <|im_start|> <|im_end|>", !rc && !strcmp(out, "user\n\xE4\xBD\xA0"),
               "got '%s'", out ? out : ctx.msg);
    free(out);
    // The first byte of a three-byte character alone decodes to U+FFFD, like Rust's from_utf8_lossy.
    int32_t half = q->byte_id[0xE4];
    rc = dt_tokenizer_decode(&ctx, q, &half, 1, false, &out, NULL);
    TEST_CHECK("qwen3: a partial UTF-8 sequence decodes to U+FFFD", !rc && !strcmp(out, "\xEF\xBF\xBD"), "got '%s'", out ? out : ctx.msg);
    free(out);
    int32_t badid = 999999;
    rc = dt_tokenizer_decode(&ctx, q, &badid, 1, false, &out, NULL);
    TEST_CHECK("decode rejects an id outside the vocabulary", rc == DT_EINPUT && strstr(ctx.msg, "999999"), "rc %d: %s", rc, ctx.msg);
    rc = dt_tokenizer_encode(&ctx, q, "ok \xC3\x28", 5, false, &ids);
    TEST_CHECK("encode rejects invalid UTF-8", rc == DT_EINPUT && strstr(ctx.msg, "byte 3"), "rc %d: %s", rc, ctx.msg);
    dt_ids_free(&ids);
}

static void check_lookups(const dt_tokenizer *q, const dt_tokenizer *l, const dt_tokenizer *m) {
    TEST_CHECK("qwen3: sizes and special ids",
               dt_tokenizer_vocab_size(q) == 151669 && dt_tokenizer_bos_id(q) == -1 && dt_tokenizer_eos_id(q) == 151645 &&
                   dt_tokenizer_pad_id(q) == 151643 && dt_tokenizer_is_special(q, 151644) && !dt_tokenizer_is_special(q, 151667) &&
                   !dt_tokenizer_is_special(q, 9707),
               "vocab %d bos %d eos %d pad %d", dt_tokenizer_vocab_size(q), dt_tokenizer_bos_id(q), dt_tokenizer_eos_id(q),
               dt_tokenizer_pad_id(q));
    const char *tpl = dt_tokenizer_chat_template(q);
    TEST_CHECK("qwen3: chat_template from tokenizer_config.json", tpl && !strncmp(tpl, "{%- if tools %}", 15), "got %.40s", tpl ? tpl : "NULL");
    TEST_CHECK("qwen3: token_to_id / id_to_token",
               dt_tokenizer_token_to_id(q, "Hello") == 9707 && !strcmp(dt_tokenizer_id_to_token(q, 9707), "Hello") &&
                   dt_tokenizer_token_to_id(q, "<|im_start|>") == 151644 &&
                   !strcmp(dt_tokenizer_id_to_token(q, 151668), "</think>") && dt_tokenizer_token_to_id(q, "no such token") == -1 &&
                   dt_tokenizer_id_to_token(q, 151669) == NULL && dt_tokenizer_id_to_token(q, -1) == NULL,
               "lookups differ");
    TEST_CHECK("llama3: sizes and special ids",
               dt_tokenizer_vocab_size(l) == 128256 && dt_tokenizer_bos_id(l) == 128000 && dt_tokenizer_eos_id(l) == 128001 &&
                   dt_tokenizer_pad_id(l) == -1 && dt_tokenizer_chat_template(l) != NULL,
               "vocab %d bos %d eos %d pad %d", dt_tokenizer_vocab_size(l), dt_tokenizer_bos_id(l), dt_tokenizer_eos_id(l),
               dt_tokenizer_pad_id(l));
    TEST_CHECK("mistral: sizes, special ids, lookups",
               dt_tokenizer_vocab_size(m) == 32000 && dt_tokenizer_bos_id(m) == 1 && dt_tokenizer_eos_id(m) == 2 &&
                   dt_tokenizer_pad_id(m) == -1 && dt_tokenizer_chat_template(m) == NULL &&
                   dt_tokenizer_token_to_id(m, "\xE2\x96\x81Hello") == 22557 && dt_tokenizer_is_special(m, 0) &&
                   !strcmp(dt_tokenizer_id_to_token(m, 13), "<0x0A>"),
               "vocab %d bos %d eos %d", dt_tokenizer_vocab_size(m), dt_tokenizer_bos_id(m), dt_tokenizer_eos_id(m));
}

static void fixture_tests(void) {
    const char *fx = dt_test_fixtures();
    if (!fx) {
        TEST_SKIP("tokenizer fixtures", "../shared/fixtures is absent");
        return;
    }
    lines corpus = {0};
    if (read_corpus(DATA "/corpus.jsonl", &corpus) || corpus.n < 300) {
        TEST_FAIL("corpus", "cannot read %s/corpus.jsonl (or under 300 lines)", DATA);
        return;
    }
    static const char *NAMES[] = {"qwen3", "llama3", "mistral"};
    dt_tokenizer *tok[3] = {0};
    for (int t = 0; t < 3; t++) {
        char path[512], exp[512], test[640];
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        snprintf(path, sizeof path, "%s/tokenizers/%s", fx, NAMES[t]);
        snprintf(test, sizeof test, "%s: load %s", NAMES[t], path);
        int rc = dt_tokenizer_load(&ctx, path, &tok[t]);
        TEST_CHECK(test, rc == DT_OK, "%s", ctx.msg);
        if (rc) continue;
        snprintf(exp, sizeof exp, DATA "/expected_%s.jsonl", NAMES[t]);
        check_expected(NAMES[t], tok[t], &corpus, exp, false);
        snprintf(exp, sizeof exp, DATA "/expected_%s_special.jsonl", NAMES[t]);
        check_expected(NAMES[t], tok[t], &corpus, exp, true);
        check_hf_cases(NAMES[t], tok[t]);
        check_round_trip(NAMES[t], tok[t], &corpus, t == 0, t == 2);
    }
    if (tok[0] && tok[1] && tok[2]) {
        check_lookups(tok[0], tok[1], tok[2]);
        check_decode(tok[0], tok[2]);
        check_threads("qwen3", tok[0], &corpus);
        check_threads("mistral", tok[2], &corpus);
        check_merge_loops(tok[0], &corpus);
    }
    for (int t = 0; t < 3; t++) dt_tokenizer_free(tok[t]);
    free_lines(&corpus);
}

// ---- small generated tokenizers

static char tmpdir[] = "/tmp/dt_tok_test_XXXXXX";

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

static dt_tokenizer *load_doc(const char *name, const char *doc) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    write_file(path, doc, strlen(doc));
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *tok = NULL;
    if (dt_tokenizer_load(&ctx, path, &tok)) printf("  %s: %s\n", name, ctx.msg);
    return tok;
}

// A character-level BPE (no merges) over the given characters, with the given added tokens and normalizer.
static dt_tokenizer *char_tokenizer(const char *chars[], size_t nchars, const char *added, const char *normalizer) {
    json_t *vocab = json_object();
    for (size_t i = 0; i < nchars; i++) json_object_set_new(vocab, chars[i], json_integer((json_int_t)i));
    char *v = json_dumps(vocab, JSON_COMPACT);
    json_decref(vocab);
    size_t cap = strlen(v) + strlen(added) + strlen(normalizer) + 512;
    char *doc = malloc(cap);
    snprintf(doc, cap,
             "{\"version\":\"1.0\",\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":null,\"post_processor\":null,"
             "\"decoder\":null,\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[]}}",
             added, normalizer, v);
    dt_tokenizer *tok = load_doc("char.json", doc);
    free(doc);
    free(v);
    return tok;
}

static void check_encode(const char *test, const dt_tokenizer *tok, const char *text, bool special, const int32_t *want,
                         size_t n) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_ids ids = {0};
    char got[512], exp[512];
    int rc = tok ? dt_tokenizer_encode(&ctx, tok, text, strlen(text), special, &ids) : -1;
    ids_str(ids.v, ids.n, got, sizeof got);
    ids_str(want, n, exp, sizeof exp);
    TEST_CHECK(test, rc == 0 && !strcmp(got, exp), "got %s want %s %s", got, exp, rc > 0 ? ctx.msg : "");
    dt_ids_free(&ids);
}

// HF's own AddedVocabulary tests (options_use_cases, test_single_word_is_correct, test_lstrip_unicode_space).
static void added_token_rules(void) {
    // ids: a..z = 0..25, ' ' 26, '\t' 27, U+2000 28, '-' 29, ',' 30, U+0330 31, '<' 32, '>' 33
    const char *chars[34];
    static char letters[26][2];
    for (int i = 0; i < 26; i++) {
        letters[i][0] = (char)('a' + i);
        chars[i] = letters[i];
    }
    chars[26] = " "; chars[27] = "\t"; chars[28] = "\xE2\x80\x80"; chars[29] = "-"; chars[30] = ","; chars[31] = "\xCC\xB0";
    chars[32] = "<"; chars[33] = ">";
    const char *lower = "{\"type\":\"Lowercase\"}";
    dt_tokenizer *t = char_tokenizer(chars, 34,
        "[{\"id\":40,\"content\":\"my\",\"lstrip\":true,\"rstrip\":true,\"normalized\":true,\"special\":false},"
        "{\"id\":41,\"content\":\"name\",\"normalized\":true,\"special\":false},"
        "{\"id\":42,\"content\":\"ony\",\"single_word\":true,\"normalized\":true,\"special\":false},"
        "{\"id\":43,\"content\":\"[CLS]\",\"normalized\":false,\"special\":true},"
        "{\"id\":44,\"content\":\"[SEP]\",\"normalized\":false,\"special\":true}]", lower);
    // "[CLS]", " my " (both spaces stripped into it), "name", " is anthony " (ony is not a single word), "[SEP]"
    int32_t want1[] = {43, 40, 41, 26, 8, 18, 26, 0, 13, 19, 7, 14, 13, 24, 26, 44};
    check_encode("added tokens: lstrip/rstrip/normalized/single_word (HF options_use_cases)", t,
                 "[CLS] My name is Anthony [SEP]", false, want1, sizeof want1 / 4);
    dt_tokenizer_free(t);
    t = char_tokenizer(chars, 34, "[{\"id\":40,\"content\":\"<mask>\",\"single_word\":true,\"special\":false}]", lower);
    // "<mask>", " my name ", "<mask>", " a<mask> <mask>ony ", "<mask>"
    int32_t want2[] = {40, 26, 12, 24, 26, 13, 0, 12, 4, 26, 40, 26, 0, 32, 12, 0, 18, 10, 33,
                       26, 32, 12, 0, 18, 10, 33, 14, 13, 24, 26, 40};
    check_encode("added tokens: single_word (HF test_single_word_is_correct)", t,
                 "<mask> My name <mask> A<mask> <mask>ony <mask>", false, want2, sizeof want2 / 4);
    // A combining mark is a word character; punctuation and '-' are not.
    int32_t want3[] = {40, 30, 26, 40, 29, 26, 31, 32, 12, 0, 18, 10, 33, 18};
    check_encode("added tokens: single_word around marks and punctuation", t, "<mask>, <mask>- \xCC\xB0<mask>s", false, want3,
                 sizeof want3 / 4);
    dt_tokenizer_free(t);
    t = char_tokenizer(chars, 34,
        "[{\"id\":40,\"content\":\"<mask>\",\"single_word\":true,\"lstrip\":true,\"rstrip\":true,\"special\":false}]", lower);
    // "hi", " <mask> ", "there", "\t<mask>\t", "<mask>\u2000"
    int32_t want4[] = {7, 8, 40, 19, 7, 4, 17, 4, 40, 40};
    check_encode("added tokens: lstrip/rstrip eat Unicode spaces (HF test_lstrip_unicode_space)", t,
                 "Hi <mask> there\t<mask>\t<mask>\xE2\x80\x80", false, want4, sizeof want4 / 4);
    dt_tokenizer_free(t);
}

// A GPT-2 style tokenizer: ByteLevel with its own regex and add_prefix_space, one merge, a Digits split.
static void byte_level_options(void) {
    uint16_t b2c[256];
    tk_byte_level_table(b2c);
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[4];
        int n = tk_utf8_put(b2c[b], s);
        json_object_set_new(vocab, (char[5]){s[0], n > 1 ? s[1] : 0, 0}, json_integer(b));
    }
    json_object_set_new(vocab, "\xC4\xA0h", json_integer(256)); // "Ġh"
    char *v = json_dumps(vocab, JSON_COMPACT);
    json_decref(vocab);
    size_t cap = strlen(v) + 1024;
    char *doc = malloc(cap);
    snprintf(doc, cap,
             "{\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
             "{\"type\":\"Digits\",\"individual_digits\":false},{\"type\":\"ByteLevel\"}]},"
             "\"post_processor\":{\"type\":\"RobertaProcessing\",\"sep\":[\"</s>\",2],\"cls\":[\"<s>\",0]},"
             "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[\"\xC4\xA0 h\"]}}", v);
    dt_tokenizer *t = load_doc("gpt2.json", doc);
    free(doc);
    free(v);
    // Digits gives "12" and "hi"; ByteLevel puts a space before each (HF does it per piece), " h" merges,
    // and RobertaProcessing wraps the ids in <s> (0) and </s> (2). Vocabulary ids are the byte values.
    int32_t want[] = {0, ' ', '1', '2', 256, 'i', 2};
    check_encode("byte-level options: Digits, add_prefix_space, RobertaProcessing", t, "12hi", true, want, 7);
    dt_tokenizer_free(t);
}

// Metaspace pre-tokenizer and decoder (prepend_scheme "first", split), as newer Llama/Mistral files have.
static void metaspace_tests(void) {
    dt_tokenizer *t = load_doc("meta.json",
        "{\"added_tokens\":[{\"id\":9,\"content\":\"<s>\",\"special\":true}],\"normalizer\":null,"
        "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":true},"
        "\"post_processor\":null,\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\"},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"\xE2\x96\x81\":0,\"H\":1,\"e\":2,\"l\":3,\"o\":4,\"w\":5,\"r\":6,"
        "\"d\":7,\"\xE2\x96\x81H\":8},\"merges\":[[\"\xE2\x96\x81\",\"H\"]]}}");
    // "Hello world" → "▁Hello▁world" → "▁Hello", "▁world"; "▁H" merges.
    int32_t want[] = {8, 2, 3, 3, 4, 0, 5, 4, 6, 3, 7};
    check_encode("Metaspace: replace spaces, prepend to the first section, split before '\xE2\x96\x81'", t, "Hello world", false,
                 want, sizeof want / 4);
    // After an added token the section does not start the text, so "first" prepends nothing.
    int32_t want2[] = {8, 2, 9, 2, 0, 7};
    check_encode("Metaspace: prepend_scheme first skips sections after an added token", t, "He<s>e d", false, want2, sizeof want2 / 4);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char *out = NULL;
    int rc = t ? dt_tokenizer_decode(&ctx, t, want, sizeof want / 4, false, &out, NULL) : -1;
    TEST_CHECK("Metaspace decoder: spaces back, none in front", rc == 0 && !strcmp(out, "Hello world"), "got '%s'", out ? out : ctx.msg);
    free(out);
    dt_tokenizer_free(t);
}

// tokenizer_config.json's add_bos_token / add_eos_token override the post-processor's template.
static void config_flag_tests(void) {
    const char *fx = dt_test_fixtures();
    if (!fx) {
        TEST_SKIP("tokenizer_config add_bos_token/add_eos_token", "../shared/fixtures is absent");
        return;
    }
    char dir[160], src[1024], dst[200];
    snprintf(dir, sizeof dir, "%s/mistral_eos", tmpdir);
    mkdir(dir, 0700);
    snprintf(src, sizeof src, "%s/tokenizers/mistral/tokenizer.json", fx);
    if (src[0] != '/') { // symlinks resolve from their own folder
        char cwd[256];
        if (!getcwd(cwd, sizeof cwd)) return;
        char rel[1024];
        snprintf(rel, sizeof rel, "%s/%.700s", cwd, src);
        snprintf(src, sizeof src, "%s", rel);
    }
    snprintf(dst, sizeof dst, "%s/tokenizer.json", dir);
    if (symlink(src, dst) != 0) {
        TEST_FAIL("tokenizer_config add_bos_token/add_eos_token", "cannot link %s", src);
        return;
    }
    snprintf(dst, sizeof dst, "%s/tokenizer_config.json", dir);
    const char *cfg = "{\"add_bos_token\": false, \"add_eos_token\": true, \"bos_token\": \"<s>\", "
                      "\"eos_token\": {\"__type\": \"AddedToken\", \"content\": \"</s>\"}, \"pad_token\": \"<unk>\"}";
    write_file(dst, cfg, strlen(cfg));
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *t = NULL;
    dt_ids ids = {0};
    int rc = dt_tokenizer_load(&ctx, dir, &t);
    if (!rc) rc = dt_tokenizer_encode(&ctx, t, "Hello", 5, true, &ids);
    TEST_CHECK("tokenizer_config add_bos_token false / add_eos_token true override the template",
               !rc && ids.n == 2 && ids.v[0] == 22557 && ids.v[1] == 2 && dt_tokenizer_pad_id(t) == 0, "rc %d %s n %zu", rc,
               ctx.msg, ids.n);
    dt_ids_free(&ids);
    dt_tokenizer_free(t);
}

// llama2.c tokenizer.bin written here: <unk> <s> </s>, 256 byte tokens, then merged pieces with scores.
static void llama2c_tests(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.bin", tmpdir);
    const char *extra[] = {" ", "a", "b", "c", " a", "ab", " ab", "abc", " abc", "bc", "\xC3\xA9"};
    float score[] = {-10, -10, -10, -10, -1, -2, -0.5f, -3, -0.1f, -5, -10};
    FILE *f = fopen(path, "wb");
    int32_t max_len = 8;
    fwrite(&max_len, 4, 1, f);
    for (int i = 0; i < 3 + 256 + 11; i++) {
        char buf[16];
        const char *s = i == 0 ? "<unk>" : i == 1 ? "\n<s>\n" : i == 2 ? "\n</s>\n" : buf;
        float sc = 0;
        if (i >= 3 && i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        if (i >= 259) {
            s = extra[i - 259];
            sc = score[i - 259];
        }
        int32_t n = (int32_t)strlen(s);
        fwrite(&sc, 4, 1, f);
        fwrite(&n, 4, 1, f);
        fwrite(s, 1, (size_t)n, f);
    }
    fclose(f);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *t = NULL;
    int rc = dt_tokenizer_load(&ctx, path, &t);
    TEST_CHECK("llama2.c: load a generated tokenizer.bin", rc == 0 && dt_tokenizer_vocab_size(t) == 270, "%s", ctx.msg);
    if (rc) return;
    // " a b c": " a" (-1) beats "ab" (-2) and "bc" (-5), then " ab" (-0.5), then " abc" (-0.1).
    int32_t want1[] = {1, 267};
    check_encode("llama2.c: greedy best-score merges with the dummy space", t, "abc", true, want1, 2);
    // "b" then "a": no pair is in the vocabulary; "ü" is not either, so its two bytes fall back to ids byte + 3.
    int32_t want2[] = {259, 261, 260, 0xC3 + 3, 0xBC + 3, 269};
    check_encode("llama2.c: byte fallback and known multi-byte pieces", t, "ba\xC3\xBC\xC3\xA9", false, want2, 6);
    char *out = NULL;
    rc = dt_tokenizer_decode(&ctx, t, want2, 6, false, &out, NULL);
    TEST_CHECK("llama2.c: decode drops the dummy space and joins byte tokens", !rc && !strcmp(out, "ba\xC3\xBC\xC3\xA9"),
               "got '%s'", out ? out : ctx.msg);
    free(out);
    int32_t with_bos[] = {1, 267, 2};
    rc = dt_tokenizer_decode(&ctx, t, with_bos, 3, true, &out, NULL);
    TEST_CHECK("llama2.c: decode skip_special after BOS", !rc && !strcmp(out, "abc"), "got '%s'", out ? out : ctx.msg);
    free(out);
    dt_tokenizer_free(t);
    // A record cut short is reported with its token index.
    FILE *g = fopen(path, "r+b");
    fseek(g, 0, SEEK_END);
    long size = ftell(g);
    fclose(g);
    if (truncate(path, size - 3) == 0) {
        rc = dt_tokenizer_load(&ctx, path, &t);
        TEST_CHECK("llama2.c: a truncated tokenizer.bin is rejected", rc == DT_EINPUT && strstr(ctx.msg, "token 269"), "rc %d: %s", rc, ctx.msg);
    }
}

static void error_tests(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *t = NULL;
    int rc = dt_tokenizer_load(&ctx, "/nonexistent/tok", &t);
    TEST_CHECK("load: a missing path is named", rc == DT_EINPUT && strstr(ctx.msg, "/nonexistent/tok"), "rc %d: %s", rc, ctx.msg);
    char path[128];
    snprintf(path, sizeof path, "%s/broken.json", tmpdir);
    const char *broken = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}";
    write_file(path, broken, strlen(broken));
    rc = dt_tokenizer_load(&ctx, path, &t);
    TEST_CHECK("load: a merge of unknown tokens names the merge", rc == DT_EINPUT && strstr(ctx.msg, "model.merges[0]") &&
               strstr(ctx.msg, "'c'"), "rc %d: %s", rc, ctx.msg);
    const char *cut = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\"";
    write_file(path, cut, strlen(cut));
    rc = dt_tokenizer_load(&ctx, path, &t);
    TEST_CHECK("load: truncated JSON names the byte", rc == DT_EINPUT && strstr(ctx.msg, "byte"), "rc %d: %s", rc, ctx.msg);
    const char *uni = "{\"model\": {\"type\": \"Unigram\", \"vocab\": [], \"merges\": []}}";
    write_file(path, uni, strlen(uni));
    rc = dt_tokenizer_load(&ctx, path, &t);
    TEST_CHECK("load: other model types are unsupported", rc == DT_EUNSUPPORTED && strstr(ctx.msg, "Unigram"), "rc %d: %s", rc, ctx.msg);
}

// `deltatune tokenize` on a file whose second line is not a JSON string.
static void cli_tests(void) {
    const char *fx = dt_test_fixtures();
    if (!fx || access("./deltatune", X_OK) != 0) {
        TEST_SKIP("deltatune tokenize", "needs ../shared/fixtures and ./deltatune");
        return;
    }
    char in[128], err[128], cmd[1024];
    snprintf(in, sizeof in, "%s/lines.jsonl", tmpdir);
    snprintf(err, sizeof err, "%s/err.txt", tmpdir);
    const char *text = "\"Hello world\"\n[1, 2]\n";
    write_file(in, text, strlen(text));
    snprintf(cmd, sizeof cmd, "./deltatune tokenize --tokenizer %s/tokenizers/qwen3 --json-lines %s >%s/out.txt 2>%s", fx, in, tmpdir, err);
    int st = system(cmd);
    char msg[512] = {0}, out[256] = {0}, outp[160];
    FILE *f = fopen(err, "r");
    if (f) { fread(msg, 1, sizeof msg - 1, f); fclose(f); }
    snprintf(outp, sizeof outp, "%s/out.txt", tmpdir);
    f = fopen(outp, "r");
    if (f) { fread(out, 1, sizeof out - 1, f); fclose(f); }
    char want[256];
    snprintf(want, sizeof want, "%s:2: expected a JSON string", in);
    TEST_CHECK("deltatune tokenize: a non-string line exits 2 naming FILE:LINE",
               WIFEXITED(st) && WEXITSTATUS(st) == 2 && strstr(msg, want) && !strcmp(out, "[9707,1879]\n"),
               "status %d, stderr '%s', stdout '%s'", WEXITSTATUS(st), msg, out);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        TEST_FAIL("mkdtemp", "cannot make a temporary folder");
        TEST_EXIT();
    }
    fixture_tests();
    added_token_rules();
    byte_level_options();
    metaspace_tests();
    config_flag_tests();
    llama2c_tests();
    error_tests();
    cli_tests();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    TEST_EXIT();
}
