// tokenizer.json files a user might download, including the ones the fuzzer found: omitted
// normalizer / pre_tokenizer / decoder mean null (as in HF); a repeated top-level member followed by a
// malformed value is an error, not a use-after-free (visible under `make test-asan`); a Split regex
// that can cut a UTF-8 sequence (\C) is refused; a token id far beyond any vocabulary is refused before
// the id tables are allocated.
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];

// A tiny byte-free BPE: a, b, ab, é and one merge.
#define MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u00e9\": 3}, \"merges\": [\"a b\"]}"

// Writes text as tmp/tokenizer.json and loads it; returns the status, message in ctx.
static int load(dt_ctx *ctx, const char *text, dt_tokenizer **tok) {
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    *tok = NULL;
    if (!tf_write(path, text, strlen(text))) return -1;
    return dt_tokenizer_load(ctx, path, tok);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/dt_hostile_tok_%d", (int)getpid());
    mkdir(tmp, 0777);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *tok;

    // No normalizer, pre_tokenizer, decoder or added_tokens members at all.
    int rc = load(&ctx, "{" MODEL "}", &tok);
    dt_ids ids = {0};
    if (!rc) rc = dt_tokenizer_encode(&ctx, tok, "ab", 2, false, &ids);
    TEST_CHECK("tokenizer_omitted_parts_mean_null", !rc && ids.n == 1 && ids.v[0] == 2, "rc %d: %s (%zu ids)", rc, ctx.msg,
               ids.n);
    dt_ids_free(&ids);
    dt_tokenizer_free(tok);

    // A repeated member whose second value is malformed: an error naming it, nothing freed twice.
    rc = load(&ctx, "{\"normalizer\": {\"type\": \"NFC\"}, \"normalizer\": {\"type\": [}, " MODEL "}", &tok);
    TEST_CHECK("tokenizer_repeated_key_malformed_value", rc == DT_EINPUT && strstr(ctx.msg, "normalizer"), "rc %d: %s", rc,
               ctx.msg);
    dt_tokenizer_free(tok);
    rc = load(&ctx, "{\"decoder\": null, \"decoder\": nul, " MODEL "}", &tok);
    TEST_CHECK("tokenizer_repeated_key_bad_literal", rc == DT_EINPUT, "rc %d: %s", rc, ctx.msg);
    dt_tokenizer_free(tok);

    // An added token with id 1211111118 (fuzz_tokenizer, 8.5M executions in): the dense id tables would take
    // about 10 GB. Refused at load, naming the id.
    rc = load(&ctx, "{\"added_tokens\": [{\"id\": 1211111118, \"content\": \"<x>\", \"single_word\": false, \"lstrip\": false, "
                    "\"rstrip\": false, \"normalized\": false, \"special\": true}], " MODEL "}", &tok);
    TEST_CHECK("tokenizer_huge_token_id_refused", rc == DT_EINPUT && strstr(ctx.msg, "1211111118") && strstr(ctx.msg, "too large"),
               "rc %d: %s", rc, ctx.msg);
    dt_tokenizer_free(tok);

    // \C in a Split regex matches one byte and would cut "é" in two: refused at load.
    rc = load(&ctx, "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\C\"}, \"behavior\": \"Isolated\"}, "
                    MODEL "}", &tok);
    TEST_CHECK("tokenizer_split_regex_backslash_c_refused", rc == DT_EINPUT && strstr(ctx.msg, "regex"), "rc %d: %s", rc,
               ctx.msg);
    dt_tokenizer_free(tok);
    // The same through a Replace normalizer, whose output the pre-tokenizer regexes then read unchecked.
    rc = load(&ctx, "{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\C\"}, \"content\": \"a\"}, "
                    MODEL "}", &tok);
    TEST_CHECK("tokenizer_replace_regex_backslash_c_refused", rc == DT_EINPUT && strstr(ctx.msg, "regex"), "rc %d: %s",
               rc, ctx.msg);
    dt_tokenizer_free(tok);
    // An ordinary Split regex still works on multi-byte text.
    rc = load(&ctx, "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \".\"}, \"behavior\": \"Isolated\"}, "
                    MODEL "}", &tok);
    if (!rc) rc = dt_tokenizer_encode(&ctx, tok, "\xc3\xa9" "ab", 4, false, &ids);
    TEST_CHECK("tokenizer_split_regex_utf8", !rc && ids.n == 3 && ids.v[0] == 3 && ids.v[1] == 0 && ids.v[2] == 1,
               "rc %d: %s (%zu ids)", rc, ctx.msg, ids.n);
    dt_ids_free(&ids);
    dt_tokenizer_free(tok);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!dt_test_failures) (void)!system(cmd);
    TEST_EXIT();
}
