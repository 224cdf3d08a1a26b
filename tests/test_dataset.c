// Dataset tests: every JSONL format (plain and .gz), chat templates rendered segment by segment against
// strings derived by hand from the models' Jinja templates, trained-token masks with the real Qwen3,
// Llama 3 and Mistral tokenizers (checked against whole-string tokenisation), malformed lines, packing,
// padding, truncation, shuffling and the train/val split.
// Most cases use tests/data/datasets/tiny_tok, a byte-level tokenizer (one token per byte plus
// <|endoftext|> 256, <|im_start|> 257, <|im_end|> 258 = EOS, a ChatML chat_template), so they run without
// the shared fixtures.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <zlib.h>
#include "datasets/chat_template.h"
#include "datasets/dataset.h"
#include "datasets/jsonl.h"
#include "datasets/packing.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

#define TINY "tests/data/datasets/tiny_tok"

static char tmpdir[] = "/tmp/dt_dataset_test_XXXXXX";
static char warned[4096];

// Keeps every warning of a load, one per line.
static void capture_warning(void *user, const char *msg) {
    (void)user;
    size_t n = strlen(warned);
    snprintf(warned + n, sizeof warned - n, "%s\n", msg);
}

static const char *tmp_path(const char *name) {
    static char buf[32][512]; // a ring: several paths are alive at once in the tables below
    static int k;
    char *p = buf[k++ % 32];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static const char *write_text(const char *name, const char *text) {
    const char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return p;
}

static const char *write_gz(const char *name, const char *text, size_t cut) {
    const char *p = tmp_path(name);
    gzFile g = gzopen(p, "wb");
    gzwrite(g, text, (unsigned)strlen(text));
    gzclose(g);
    if (cut) { // drop the last `cut` bytes: a truncated download
        FILE *f = fopen(p, "rb");
        char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        f = fopen(p, "wb");
        fwrite(buf, 1, n - cut, f);
        fclose(f);
    }
    return p;
}

static int load(dt_ctx *ctx, const char *path, const dt_tokenizer *tok, const dt_dataset_opts *o, dt_dataset **ds) {
    dt_ctx_init(ctx);
    ctx->warn = capture_warning;
    warned[0] = 0;
    dt_dataset_opts def = {0};
    return dt_dataset_load(ctx, &path, 1, tok, o ? o : &def, ds);
}

// Example i as rendered for `deltatune preview`, without the summary line and the final newline.
static char *body(const dt_dataset *ds, const dt_tokenizer *tok, size_t i) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    int rc = dt_dataset_render_example(&ctx, ds, tok, i, f);
    fclose(f);
    if (rc) {
        free(buf);
        return strdup(ctx.msg);
    }
    char *nl = strchr(buf, '\n');
    char *out = strdup(nl ? nl + 1 : "");
    size_t k = strlen(out);
    if (k && out[k - 1] == '\n') out[k - 1] = 0;
    free(buf);
    return out;
}

// Loads one record of the given JSONL text and checks its rendering with trained parts in «…».
static void check_render(const char *name, const dt_tokenizer *tok, const dt_dataset_opts *o, const char *jsonl,
                         const char *want) {
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    const char *p = write_text("render.jsonl", jsonl);
    if (load(&ctx, p, tok, o, &ds)) {
        TEST_FAIL(name, "load: %s", ctx.msg);
        return;
    }
    char *got = body(ds, tok, 0);
    TEST_CHECK(name, !strcmp(got, want), "\n got: %s\nwant: %s", got, want);
    free(got);
    dt_dataset_free(ds);
}

// ---- formats, with the tiny tokenizer

static bool row_eq(const int32_t *got, const int32_t *want, int64_t n);

// A tokenizer folder whose chat template is ChatML opened by {{bos_token}} (as Nous Hermes 2's): the tiny
// tokenizer with <|endoftext|> (256) as its BOS. The loaded chat example starts with that BOS, untrained,
// as the template's text does; the rest is the plain ChatML rendering.
static void chatml_bos(void) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/hermes_tok", tmpdir);
    mkdir(dir, 0777);
    size_t n = 0;
    char *tj = tf_slurp(TINY "/tokenizer.json", &n);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    bool ok = tj && tf_write(path, tj, n);
    free(tj);
    const char cfg[] = "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": \"<|im_end|>\", \"chat_template\": "
                       "\"{{bos_token}}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                       "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\"}";
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    ok = ok && tf_write(path, cfg, sizeof cfg - 1);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *tok = NULL;
    dt_dataset *ds = NULL;
    if (!ok || dt_tokenizer_load(&ctx, dir, &tok) || load(&ctx, write_text("hermes.jsonl", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
                                                                          "{\"role\":\"assistant\",\"content\":\"Hello\"}]}\n"),
                tok, NULL, &ds)) {
        TEST_FAIL("chatml with {{bos_token}}: the example starts with BOS", "%s", ok ? ctx.msg : "cannot write the folder");
        dt_tokenizer_free(tok);
        return;
    }
    const int32_t *ids, *lab;
    int64_t len = dt_dataset_example(ds, 0, &ids, &lab);
    char *got = body(ds, tok, 0);
    TEST_CHECK("chatml with {{bos_token}}: the example starts with BOS", len > 2 && ids[0] == 256 && lab[0] == -100 &&
               ids[1] == 257 && !strcmp(got, "<|endoftext|>" "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                                                "«Hello<|im_end|>»\n"), "ids[0] %d: %s", len ? ids[0] : -1, got);
    free(got);
    dt_dataset_free(ds);
    dt_tokenizer_free(tok);
}

// `deltatune tokenize` reads each line with dt_json_line_string: a line that starts a string and goes
// wrong says why (a lone surrogate is valid JSON syntax but no text), not only "expected a JSON string".
static void json_line_string(void) {
    struct { const char *line, *want; } c[] = {
        {"\"a\\ud800\"", "expected a JSON string (byte 8: unpaired surrogate in a \\u escape)"},
        {"\"abc", "expected a JSON string (byte 4: unterminated string)"},
        {"\"a\" \"b\"", "expected a JSON string alone on the line (more follows at byte 4)"},
        {"[1, 2]", "expected a JSON string"},
    };
    char *buf = NULL;
    size_t cap = 0, len = 0;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    bool ok = true;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int rc = dt_json_line_string(&ctx, c[i].line, strlen(c[i].line), &buf, &cap, &len);
        if (rc != DT_EINPUT || strcmp(ctx.msg, c[i].want)) {
            printf("  %s: rc %d '%s', want '%s'\n", c[i].line, rc, rc ? ctx.msg : "", c[i].want);
            ok = false;
        }
    }
    int rc = dt_json_line_string(&ctx, " \"a\\u0000b\" ", 12, &buf, &cap, &len);
    ok = ok && rc == DT_OK && len == 3 && !memcmp(buf, "a\0b", 4);
    TEST_CHECK("tokenize lines: a broken JSON string says why; \\u0000 is kept", ok, "see above");
    free(buf);
}

// "\u0000" is valid JSON; the text keeps the NUL byte, as `deltatune tokenize` and Hugging Face do.
static void nul_bytes(const dt_tokenizer *tok) {
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    const int32_t *ids, *lab;
    const char *p = write_text("nul.jsonl", "{\"text\":\"a\\u0000b\"}\n");
    if (load(&ctx, p, tok, NULL, &ds)) {
        TEST_FAIL("\\u0000 in text: loaded", "%s", ctx.msg);
    } else {
        int64_t n = dt_dataset_example(ds, 0, &ids, &lab);
        const int32_t want_ids[] = {'a', 0, 'b', 258}, want_lab[] = {-100, 0, 'b', 258};
        TEST_CHECK("\\u0000 in text: one byte token 0 between a and b", n == 4 && row_eq(ids, want_ids, 4) &&
                   row_eq(lab, want_lab, 4), "n=%lld", (long long)n);
        dt_dataset_free(ds);
    }
    p = write_text("nul_chat.jsonl", "{\"messages\":[{\"role\":\"user\",\"content\":\"\\u0000\"},"
                                     "{\"role\":\"assistant\",\"content\":\"c\\u0000\"}]}\n");
    if (load(&ctx, p, tok, NULL, &ds)) {
        TEST_FAIL("\\u0000 in chat content: loaded", "%s", ctx.msg);
        return;
    }
    // <|im_start|>user\n NUL <|im_end|>\n<|im_start|>assistant\n «c NUL <|im_end|>» \n
    const int32_t chat[] = {257, 'u', 's', 'e', 'r', '\n', 0, 258, '\n', 257, 'a', 's', 's', 'i', 's', 't', 'a', 'n', 't',
                            '\n', 'c', 0, 258, '\n'};
    bool ok = dt_dataset_example(ds, 0, &ids, &lab) == 24 && row_eq(ids, chat, 24);
    for (int t = 0; ok && t < 24; t++) ok = lab[t] == (t >= 20 && t < 23 ? chat[t] : -100);
    TEST_CHECK("\\u0000 in chat content: kept in the user and the trained assistant text", ok, "ids/labels differ");
    dt_dataset_free(ds);
}

static const char CHAT1[] =
    "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello\"}]}\n";
static const char CHAT1_WANT[] = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n«Hello<|im_end|>»\n";

static void formats(const dt_tokenizer *tok) {
    // The first token of every example is never trained (nothing predicts it); the tiny tokenizer adds no BOS.
    check_render("format text: all trained but the first token, EOS appended", tok, NULL, "{\"text\":\"ab c\"}\n",
                 "a«b c<|im_end|>»");
    check_render("format completion: prompt untrained, completion + EOS trained", tok, NULL,
                 "{\"prompt\":\"Q: 1+1?\\nA:\",\"completion\":\" 2\"}\n", "Q: 1+1?\nA:« 2<|im_end|>»");
    check_render("format alpaca without input: the Stanford prompt", tok, NULL,
                 "{\"instruction\":\"Say hi\",\"input\":\"\",\"output\":\"hi\"}\n",
                 "Below is an instruction that describes a task. Write a response that appropriately completes the "
                 "request.\n\n### Instruction:\nSay hi\n\n### Response:\n«hi<|im_end|>»");
    check_render("format alpaca with input: the Stanford prompt with input", tok, NULL,
                 "{\"instruction\":\"Add\",\"input\":\"1 2\",\"output\":\"3\"}\n",
                 "Below is an instruction that describes a task, paired with an input that provides further context. "
                 "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd\n\n### Input:\n1 2"
                 "\n\n### Response:\n«3<|im_end|>»");
    check_render("format chat: template chosen from tokenizer_config (chatml)", tok, NULL, CHAT1, CHAT1_WANT);
    check_render("format sharegpt: human/gpt/system mapped to user/assistant/system", tok, NULL,
                 "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"human\",\"value\":\"Hi\"},"
                 "{\"from\":\"gpt\",\"value\":\"Hello\"}]}\n",
                 "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                 "«Hello<|im_end|>»\n");
    dt_dataset_opts o = {.train_on_prompt = true};
    check_render("train_on_prompt: every token but the first trained", tok, &o, CHAT1,
                 "<|im_start|>«user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n»");
    o = (dt_dataset_opts){.chat_template = "zephyr"};
    check_render("chat_template by name overrides tokenizer_config", tok, &o, CHAT1,
                 "<|user|>\nHi<|im_end|>\n<|assistant|>\n«Hello<|im_end|>»\n");

    // Pre-tokenized: labels as given (the first forced to -100), or all trained when absent.
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    const char *p = write_text("tokens.jsonl", "{\"input_ids\":[5,6,7,8],\"labels\":[-100,-100,7,8]}\n"
                                               "{\"input_ids\":[9,10,11]}\n");
    int rc = load(&ctx, p, tok, NULL, &ds);
    if (rc) {
        TEST_FAIL("format tokens", "%s", ctx.msg);
    } else {
        const int32_t *ids, *lab, *ids2, *lab2;
        int64_t n = dt_dataset_example(ds, 0, &ids, &lab), n2 = dt_dataset_example(ds, 1, &ids2, &lab2);
        TEST_CHECK("format tokens: input_ids and labels as given", n == 4 && ids[0] == 5 && ids[3] == 8 &&
                   lab[1] == -100 && lab[2] == 7 && lab[3] == 8, "n %lld", (long long)n);
        TEST_CHECK("format tokens: no labels = all trained (but the first)", n2 == 3 && lab2[0] == -100 &&
                   lab2[1] == 10 && lab2[2] == 11 && ids2[0] == 9, "n %lld", (long long)n2);
        dt_dataset_free(ds);
    }

    // .gz: the same records through zlib.
    p = write_gz("chat.jsonl.gz", CHAT1, 0);
    rc = load(&ctx, p, tok, NULL, &ds);
    if (rc) {
        TEST_FAIL("format chat .jsonl.gz", "%s", ctx.msg);
    } else {
        char *got = body(ds, tok, 0);
        TEST_CHECK("format chat .jsonl.gz", !strcmp(got, CHAT1_WANT), "got %s", got);
        free(got);
        dt_dataset_free(ds);
    }

    // Several files, each with its own format, into one dataset; blank lines and CRLF endings.
    const char *paths[2] = {write_text("mix_a.jsonl", "{\"text\":\"x\"}\r\n\r\n{\"text\":\"yz\"}\r\n"),
                            write_text("mix_b.jsonl", CHAT1)};
    dt_ctx_init(&ctx);
    dt_dataset_opts def = {0};
    rc = dt_dataset_load(&ctx, paths, 2, tok, &def, &ds);
    if (rc) {
        TEST_FAIL("formats detected per file", "%s", ctx.msg);
    } else {
        int64_t line;
        const char *src = dt_dataset_example_source(ds, 1, &line, NULL);
        char *b0 = body(ds, tok, 1), *b2 = body(ds, tok, 2);
        TEST_CHECK("formats detected per file (text + chat), CRLF, blank lines keep line numbers",
                   dt_dataset_size(ds) == 3 && !strcmp(b0, "y«z<|im_end|>»") && line == 3 && !strcmp(src, paths[0]) &&
                   !strcmp(b2, CHAT1_WANT) && !strcmp(dt_dataset_chat_template(ds), "chatml"),
                   "n %zu, line %lld, %s / %s", dt_dataset_size(ds), (long long)line, b0, b2);
        free(b0);
        free(b2);
        dt_dataset_free(ds);
    }

    // A line far longer than the reader's 64 KiB chunk, also compressed.
    size_t big = 300000;
    char *text = malloc(big + 64);
    strcpy(text, "{\"text\":\"");
    memset(text + 9, 'q', big);
    strcpy(text + 9 + big, "\"}\n");
    for (int gz = 0; gz < 2; gz++) {
        p = gz ? write_gz("long.jsonl.gz", text, 0) : write_text("long.jsonl", text);
        rc = load(&ctx, p, tok, NULL, &ds);
        int64_t n = rc ? -1 : dt_dataset_example(ds, 0, NULL, NULL);
        TEST_CHECK(gz ? "a 300 KB line in a .gz file" : "a 300 KB line", !rc && n == (int64_t)big + 1,
                   "rc %d n %lld: %s", rc, (long long)n, ctx.msg);
        if (!rc) dt_dataset_free(ds);
    }
    free(text);
}

// ---- chat templates, segment by segment (no tokenizer: BOS and EOS are shown as <bos> and <eos>)

static char *render_segments(const dt_chat_fmt *fmt, const dt_message *m, size_t n, bool add_bos, int *rc, dt_ctx *ctx) {
    dt_seg_encoder e = {.bos = 1, .eos = 2, .add_bos = add_bos};
    dt_segs s = {0};
    dt_ctx_init(ctx);
    *rc = dt_chat_render(ctx, fmt, m, n, &e, &s);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bool open = false;
    for (size_t i = 0; !*rc && i < s.n; i++) {
        const dt_seg *g = &s.v[i];
        if (g->trained != open) fputs(g->trained ? "«" : "»", f);
        open = g->trained;
        if (g->token >= 0) fputs(g->token == 1 ? "<bos>" : "<eos>", f);
        else fwrite(s.text + g->off, 1, g->len, f);
    }
    if (open) fputs("»", f);
    fclose(f);
    dt_segs_free(&s);
    return buf;
}

#define MSG(r, s) ((dt_message){DT_ROLE_##r, s, sizeof(s) - 1})

static void check_fmt(const char *name, const dt_chat_fmt *f, const dt_message *m, size_t n, bool add_bos,
                      const char *want) {
    dt_ctx ctx;
    int rc;
    char *got = render_segments(f, m, n, add_bos, &rc, &ctx);
    TEST_CHECK(name, !rc && !strcmp(got, want), "rc %d %s\n got: %s\nwant: %s", rc, ctx.msg, got, want);
    free(got);
}

static void check_template(const char *name, dt_chat_tmpl t, const dt_message *m, size_t n, bool add_bos,
                           const char *want) {
    dt_chat_fmt f = {.kind = t};
    check_fmt(name, &f, m, n, add_bos, want);
}

static void check_template_error(const char *name, dt_chat_tmpl t, const dt_message *m, size_t n, const char *want) {
    dt_ctx ctx;
    int rc;
    dt_chat_fmt f = {.kind = t};
    free(render_segments(&f, m, n, false, &rc, &ctx));
    TEST_CHECK(name, rc == DT_EINPUT && strstr(ctx.msg, want), "rc %d: %s", rc, ctx.msg);
}

// The later Mistral chat templates as their tokenizer_config.json "chat_template" holds them (the Jinja
// text, here without the JSON escaping): Mistral 7B Instruct v0.2 / Mixtral 8x7B Instruct (2024 revision),
// v0.3 (also Mistral Large 2407) and Mistral Nemo Instruct 2407; and Mixtral 8x22B Instruct's "default"
// template, which none of the built-in ones writes. Copied from public copies of those files (llama.cpp's
// tests/test-chat-template.cpp and others, which agree).
static const char MISTRAL_V02_JINJA[] =
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n"
    "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] + eos_token}}\n"
    "    {%- else %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";
static const char MISTRAL_V03_JINJA[] =
    "{%- if messages[0][\"role\"] == \"system\" %}\n"
    "    {%- set system_message = messages[0][\"content\"] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n"
    "\n"
    "{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n"
    "{%- set ns = namespace() %}\n"
    "{%- set ns.index = 0 %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n"
    "        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n"
    "            {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "        {%- endif %}\n"
    "        {%- set ns.index = ns.index + 1 %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS] [\" }}\n"
    "            {%- for tool in tools %}\n"
    "                {%- set tool = tool.function %}\n"
    "                {{- '{\"type\": \"function\", \"function\": {' }}\n"
    "                {%- for key, val in tool.items() if key != \"return\" %}\n"
    "                    {%- if val is string %}\n"
    "                        {{- '\"' + key + '\": \"' + val + '\"' }}\n"
    "                    {%- else %}\n"
    "                        {{- '\"' + key + '\": ' + val|tojson }}\n"
    "                    {%- endif %}\n"
    "                    {%- if not loop.last %}\n"
    "                        {{- \", \" }}\n"
    "                    {%- endif %}\n"
    "                {%- endfor %}\n"
    "                {{- \"}}\" }}\n"
    "                {%- if not loop.last %}\n"
    "                    {{- \", \" }}\n"
    "                {%- else %}\n"
    "                    {{- \"]\" }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
    "            {%- endif %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    "            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- else %}\n"
    "            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- endif %}\n"
    "    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n"
    "        {{- \"[TOOL_CALLS] [\" }}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- set out = tool_call.function|tojson %}\n"
    "            {{- out[:-1] }}\n"
    "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
    "                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
    "            {%- endif %}\n"
    "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
    "            {%- if not loop.last %}\n"
    "                {{- \", \" }}\n"
    "            {%- else %}\n"
    "                {{- \"]\" + eos_token }}\n"
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    "    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- \" \" + message[\"content\"]|trim + eos_token}}\n"
    "    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n"
    "        {%- if message.content is defined and message.content.content is defined %}\n"
    "            {%- set content = message.content.content %}\n"
    "        {%- else %}\n"
    "            {%- set content = message.content %}\n"
    "        {%- endif %}\n"
    "        {{- '[TOOL_RESULTS] {\"content\": ' + content|string + \", \" }}\n"
    "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
    "            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
    "        {%- endif %}\n"
    "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";
static const char MISTRAL_NEMO_JINJA[] =
    "{%- if messages[0][\"role\"] == \"system\" %}\n"
    "    {%- set system_message = messages[0][\"content\"] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n"
    "\n"
    "{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n"
    "{%- set ns = namespace() %}\n"
    "{%- set ns.index = 0 %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n"
    "        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n"
    "            {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "        {%- endif %}\n"
    "        {%- set ns.index = ns.index + 1 %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS][\" }}\n"
    "            {%- for tool in tools %}\n"
    "                {%- set tool = tool.function %}\n"
    "                {{- '{\"type\": \"function\", \"function\": {' }}\n"
    "                {%- for key, val in tool.items() if key != \"return\" %}\n"
    "                    {%- if val is string %}\n"
    "                        {{- '\"' + key + '\": \"' + val + '\"' }}\n"
    "                    {%- else %}\n"
    "                        {{- '\"' + key + '\": ' + val|tojson }}\n"
    "                    {%- endif %}\n"
    "                    {%- if not loop.last %}\n"
    "                        {{- \", \" }}\n"
    "                    {%- endif %}\n"
    "                {%- endfor %}\n"
    "                {{- \"}}\" }}\n"
    "                {%- if not loop.last %}\n"
    "                    {{- \", \" }}\n"
    "                {%- else %}\n"
    "                    {{- \"]\" }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
    "            {%- endif %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    "            {{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- else %}\n"
    "            {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- endif %}\n"
    "    {%- elif (message.tool_calls is defined and message.tool_calls is not none) %}\n"
    "        {{- \"[TOOL_CALLS][\" }}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- set out = tool_call.function|tojson %}\n"
    "            {{- out[:-1] }}\n"
    "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
    "                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
    "            {%- endif %}\n"
    "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
    "            {%- if not loop.last %}\n"
    "                {{- \", \" }}\n"
    "            {%- else %}\n"
    "                {{- \"]\" + eos_token }}\n"
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    "    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- message[\"content\"] + eos_token}}\n"
    "    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n"
    "        {%- if message.content is defined and message.content.content is defined %}\n"
    "            {%- set content = message.content.content %}\n"
    "        {%- else %}\n"
    "            {%- set content = message.content %}\n"
    "        {%- endif %}\n"
    "        {{- '[TOOL_RESULTS]{\"content\": ' + content|string + \", \" }}\n"
    "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
    "            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
    "        {%- endif %}\n"
    "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";
static const char MIXTRAL_8X22B_JINJA[] =
    "{{bos_token}}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ ' [INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

// src with the first `from` replaced by `to` (malloc'd).
static char *replaced(const char *src, const char *from, const char *to) {
    const char *at = strstr(src, from);
    size_t n = strlen(src), k = strlen(from), m = strlen(to);
    char *out = malloc(n - k + m + 1);
    memcpy(out, src, (size_t)(at - src));
    memcpy(out + (at - src), to, m);
    strcpy(out + (at - src) + m, at + k);
    return out;
}

static void templates(void) {
    const dt_message c[] = {MSG(SYSTEM, "S"), MSG(USER, "U1"), MSG(ASSISTANT, "A1"), MSG(USER, "U2"), MSG(ASSISTANT, "A2")};
    // Expected strings: the Jinja templates applied by hand (add_generation_prompt false), with the
    // assistant content and the token that ends its turn marked as trained.
    check_template("template chatml: 2 turns with system", DT_TMPL_CHATML, c, 5, false,
                   "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n"
                   "«A1<|im_end|>»\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n«A2<|im_end|>»\n");
    check_template("template qwen3: empty think block only on the answer after the last user turn", DT_TMPL_QWEN3,
                   c, 5, false,
                   "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n"
                   "«A1<|im_end|>»\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n"
                   "«<think>\n\n</think>\n\nA2<|im_end|>»\n");
    const dt_message think[] = {MSG(USER, "U1"), MSG(ASSISTANT, "<think>r1</think>A1"), MSG(USER, "U2"),
                                MSG(ASSISTANT, "<think>\nR2\n\n</think>\n\nA2")};
    check_template("template qwen3: reasoning kept for the last answer, dropped for earlier ones", DT_TMPL_QWEN3,
                   think, 4, false,
                   "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n«A1<|im_end|>»\n<|im_start|>user\nU2<|im_end|>\n"
                   "<|im_start|>assistant\n«<think>\nR2\n</think>\n\nA2<|im_end|>»\n");
    check_template("template llama3: BOS, headers, trimmed content, <|eot_id|> trained", DT_TMPL_LLAMA3, c, 5, false,
                   "<bos><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>"
                   "\n\nU1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n«A1<|eot_id|>»<|start_header_id|>user"
                   "<|end_header_id|>\n\nU2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n«A2<|eot_id|>»");
    check_template("template llama3.1: the dated system header holds the system message", DT_TMPL_LLAMA31, c, 3, false,
                   "<bos><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: "
                   "26 Jul 2024\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|><|start_header_id|>"
                   "assistant<|end_header_id|>\n\n«A1<|eot_id|>»");
    check_template("template llama3.1: the system header is there without a system message", DT_TMPL_LLAMA31, c + 1, 2,
                   false, "<bos><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday "
                   "Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n«A1<|eot_id|>»");
    const dt_message ws[] = {MSG(USER, " \tU1\n"), MSG(ASSISTANT, "\n A1 \xE3\x80\x80")};
    check_template("template llama3: trim strips Unicode whitespace (U+3000) like Python", DT_TMPL_LLAMA3, ws, 2, false,
                   "<bos><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|><|start_header_id|>assistant"
                   "<|end_header_id|>\n\n«A1<|eot_id|>»");
    check_template("template llama2: <<SYS>> in the first [INST], BOS per turn, spaces around answers", DT_TMPL_LLAMA2,
                   c, 5, false,
                   "<bos>[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST]« A1 <eos>»<bos>[INST] U2 [/INST]« A2 <eos>»");
    check_template("template llama2: content stripped", DT_TMPL_LLAMA2, ws, 2, false,
                   "<bos>[INST] U1 [/INST]« A1 <eos>»");
    check_template("template mistral: [INST] pairs, answer + EOS trained", DT_TMPL_MISTRAL, c + 1, 4, false,
                   "<bos>[INST] U1 [/INST]«A1<eos>»[INST] U2 [/INST]«A2<eos>»");
    // The later Mistral templates; expected strings from their Jinja (above) rendered with jinja2 as
    // transformers does. The space before the answer is trained with it (it is the answer's first "▁").
    check_template("template mistral-v0.2: \" [INST] \", system in the first user turn, \" \" + answer",
                   DT_TMPL_MISTRAL_V02, c, 5, false,
                   "<bos> [INST] S\n\nU1 [/INST]« A1<eos>» [INST] U2 [/INST]« A2<eos>»");
    check_template("template mistral-v0.3: no space before [/INST], \" \" + answer", DT_TMPL_MISTRAL_V03, c + 1, 4,
                   false, "<bos>[INST] U1[/INST]« A1<eos>»[INST] U2[/INST]« A2<eos>»");
    check_template("template mistral-nemo: no spaces", DT_TMPL_MISTRAL_NEMO, c + 1, 4, false,
                   "<bos>[INST]U1[/INST]«A1<eos>»[INST]U2[/INST]«A2<eos>»");
    check_template("template mistral-v0.3: the system message goes into a user message that ends the conversation",
                   DT_TMPL_MISTRAL_V03, c, 4, false, "<bos>[INST] U1[/INST]« A1<eos>»[INST] S\n\nU2[/INST]");
    check_template("template mistral-nemo: the system message goes into a user message that ends the conversation",
                   DT_TMPL_MISTRAL_NEMO, c, 4, false, "<bos>[INST]U1[/INST]«A1<eos>»[INST]S\n\nU2[/INST]");
    check_template("template mistral-v0.2: content as is", DT_TMPL_MISTRAL_V02, ws, 2, false,
                   "<bos> [INST]  \tU1\n [/INST]« \n A1 \xE3\x80\x80<eos>»");
    check_template("template mistral-v0.3: the answer trimmed, the user message not", DT_TMPL_MISTRAL_V03, ws, 2, false,
                   "<bos>[INST]  \tU1\n[/INST]« A1<eos>»");
    check_template("template mistral-nemo: content as is", DT_TMPL_MISTRAL_NEMO, ws, 2, false,
                   "<bos>[INST] \tU1\n[/INST]«\n A1 \xE3\x80\x80<eos>»");
    // v0.3's and Nemo's Jinja write the system message only into a last user message: before an answer
    // they drop it silently, which deltatune refuses rather than train without the system prompt.
    check_template_error("template mistral-v0.3: a system message the template would drop is an error",
                         DT_TMPL_MISTRAL_V03, c, 5, "would be left out");
    check_template_error("template mistral-nemo: a system message the template would drop is an error",
                         DT_TMPL_MISTRAL_NEMO, c, 3, "would be left out");
    check_template_error("template mistral-v0.3: roles must alternate", DT_TMPL_MISTRAL_V03, c + 2, 3, "must alternate");
    const dt_message late_sys[] = {MSG(USER, "U1"), MSG(ASSISTANT, "A1"), MSG(SYSTEM, "S")};
    check_template_error("template mistral-v0.2: a system message after the first is an error", DT_TMPL_MISTRAL_V02,
                         late_sys, 3, "only as the first message");
    check_template("template zephyr: <|role|> turns ended by EOS and a newline", DT_TMPL_ZEPHYR, c, 5, true,
                   "<bos><|system|>\nS<eos>\n<|user|>\nU1<eos>\n<|assistant|>\n«A1<eos>»\n<|user|>\nU2<eos>\n"
                   "<|assistant|>\n«A2<eos>»\n");
    check_template("template alpaca: system replaces the preamble", DT_TMPL_ALPACA, c, 5, true,
                   "<bos>S\n\n### Instruction:\nU1\n\n### Response:\n«A1<eos>»\n\n### Instruction:\nU2\n\n### Response:\n"
                   "«A2<eos>»");
    check_template("template alpaca: one turn is the single-turn Alpaca prompt", DT_TMPL_ALPACA, c + 1, 2, false,
                   "Below is an instruction that describes a task. Write a response that appropriately completes the "
                   "request.\n\n### Instruction:\nU1\n\n### Response:\n«A1<eos>»");
    check_template_error("template mistral: a system message is an error", DT_TMPL_MISTRAL, c, 5, "system messages");
    const dt_message twice[] = {MSG(USER, "U1"), MSG(USER, "U2")};
    check_template_error("template llama2: roles must alternate", DT_TMPL_LLAMA2, twice, 2, "must alternate");

    struct { const char *jinja; dt_chat_tmpl want; } det[] = {
        {"{{'<|im_start|>' + message['role']}}", DT_TMPL_CHATML},
        {"{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}",
         DT_TMPL_LLAMA31},
        {"<|im_start|>{% if '</think>' in c %}{%- if loop.last or (not loop.last and reasoning_content) %}<think>"
         "{% endif %}{% endif %}", DT_TMPL_QWEN3},
        {"'<|start_header_id|>' + message['role'] + '<|end_header_id|>'", DT_TMPL_LLAMA3},
        {"{{ bos_token + '[INST] ' + '<<SYS>>\\n' }}", DT_TMPL_LLAMA2},
        {"{{ '[INST] ' + message['content'] + ' [/INST]' }}", DT_TMPL_MISTRAL},
        {"{{ '<|user|>\\n' + message['content'] + eos_token }}", DT_TMPL_ZEPHYR},
        {"{{ '### Instruction:\\n' + message['content'] }}", DT_TMPL_ALPACA},
    };
    bool ok = true;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_chat_fmt f;
    for (size_t i = 0; i < sizeof det / sizeof det[0]; i++) {
        if (dt_chat_tmpl_detect(&ctx, det[i].jinja, &f) || f.kind != det[i].want || f.default_system[0]) {
            printf("  detect %s: %s\n", det[i].jinja, ctx.msg);
            ok = false;
        }
    }
    int rc = dt_chat_tmpl_detect(&ctx, "{{'<|user|>' + content + '<|end|>'}}", &f); // Phi-3
    TEST_CHECK("chat template detection by markers", ok && rc == DT_EINPUT && strstr(ctx.msg, "chatml, qwen3"),
               "phi-3: rc %d %s", rc, ctx.msg);

    // QwQ's ChatML template writes <think> only in its generation prompt and strips reasoning from every
    // answer; rendered as Qwen3's, the last answer would get (and train) an empty <think></think> block.
    rc = dt_chat_tmpl_detect(&ctx, "{%- elif message.role == \"assistant\" and not message.tool_calls %}{%- set content = "
                             "message.content.split('</think>')[-1].lstrip('\\n') %}{{- '<|im_start|>' + message.role + "
                             "'\\n' + content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if "
                             "add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}", &f);
    TEST_CHECK("chat template detection: QwQ's <think> ChatML template is not taken for Qwen3's",
               rc == DT_EINPUT && strstr(ctx.msg, "not Qwen3's"), "rc %d kind %s: %s", rc,
               rc ? "-" : dt_chat_tmpl_name(f.kind), rc ? ctx.msg : "");
    // The later Mistral templates share [INST] with v0.1 but not its spacing (v0.3 "[INST] U[/INST] A</s>",
    // Nemo "[INST]U[/INST]A</s>", v0.2 2024 " [INST] U [/INST] A</s>", where v0.1 writes "[INST] U [/INST]A</s>"):
    // each real template is taken for its own renderer, never for v0.1's.
    struct { const char *name, *jinja; dt_chat_tmpl want; } later[] = {
        {"v0.2 (2024)", MISTRAL_V02_JINJA, DT_TMPL_MISTRAL_V02},
        {"v0.3", MISTRAL_V03_JINJA, DT_TMPL_MISTRAL_V03},
        {"Nemo", MISTRAL_NEMO_JINJA, DT_TMPL_MISTRAL_NEMO},
    };
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "chat template detection: Mistral %s's real template is %s", later[i].name,
                 dt_chat_tmpl_name(later[i].want));
        rc = dt_chat_tmpl_detect(&ctx, later[i].jinja, &f);
        TEST_CHECK(name, !rc && f.kind == later[i].want, "rc %d kind %s: %s", rc, rc ? "-" : dt_chat_tmpl_name(f.kind),
                   rc ? ctx.msg : "");
    }
    // [INST] templates that none of the renderers writes exactly are refused, not rendered with a near miss:
    // Mixtral 8x22B's (a space after the answer too), fragments, and v0.3's with one expression changed.
    const char *refused[] = {
        MIXTRAL_8X22B_JINJA,
        "{%- if message[\"role\"] == \"user\" %}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}"
        "{%- elif message[\"role\"] == \"assistant\" %}{{- \" \" + message[\"content\"]|trim + eos_token}}{%- endif %}",
        "{{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}{{- message[\"content\"]|trim + eos_token }}",
        "{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- elif message['role'] == 'assistant' %}"
        "{{- ' ' + message['content'] + eos_token}}",
        NULL, NULL,
    };
    const char *refused_name[] = {"Mixtral 8x22B", "v0.3 fragment", "Nemo-style fragment", "v0.2 fragment",
                                  "v0.3 with an untrimmed answer", "v0.3 with the system in the first turn"};
    char *untrimmed = replaced(MISTRAL_V03_JINJA, "|trim", ""),
         *first_sys = replaced(MISTRAL_V03_JINJA, "loop.last and system", "loop.first and system");
    refused[4] = untrimmed;
    refused[5] = first_sys;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "chat template detection: Mistral %s [INST] template is refused", refused_name[i]);
        rc = dt_chat_tmpl_detect(&ctx, refused[i], &f);
        TEST_CHECK(name, rc == DT_EINPUT && strstr(ctx.msg, "not Mistral v0.1's"), "rc %d kind %s: %s", rc,
                   rc ? "-" : dt_chat_tmpl_name(f.kind), rc ? ctx.msg : "");
    }
    free(untrimmed);
    free(first_sys);

    // ChatML templates that insert a default system prompt (Jinja source as in tokenizer_config.json).
    struct { const char *jinja, *want; } sys[] = {
        {"{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
         "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
         "<|im_end|>\\n' }}{%- endif %}", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."}, // Qwen2.5
        {"{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant "
         "named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}",
         "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}, // SmolLM2
        {"{{ \"<|im_start|>system\\nYou're \\\"kind\\\".\\nReally.<|im_end|>\\n\" }}", "You're \"kind\".\nReally."},
        {"{{ '<|im_start|>system\\n' + system_message + '<|im_end|>\\n' }}", ""},
    };
    ok = true;
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++) {
        if (dt_chat_tmpl_detect(&ctx, sys[i].jinja, &f) || f.kind != DT_TMPL_CHATML || strcmp(f.default_system, sys[i].want)) {
            printf("  default system of %s: '%s' %s\n", sys[i].jinja, f.default_system, ctx.msg);
            ok = false;
        }
    }
    TEST_CHECK("chatml: default system prompt read from the template (Qwen2.5, SmolLM2, escapes)", ok, "see above");
    dt_chat_tmpl_detect(&ctx, sys[0].jinja, &f);
    check_fmt("chatml: the default system prompt opens a conversation without one", &f, c + 1, 2, false,
              "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
              "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n«A1<|im_end|>»\n");
    check_fmt("chatml: ... and is not used when the conversation has a system message", &f, c, 3, false,
              "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n«A1<|im_end|>»\n");
    // A ChatML template that starts with {{bos_token}} (Nous Hermes 2 Mixtral, Bielik, LFM2): the
    // rendered text starts with BOS, so the BOS token leads (untrained); plain ChatML has none.
    const char *hermes = "{{bos_token}}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                         "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
                         "{{ '<|im_start|>assistant\\n' }}{% endif %}";
    rc = dt_chat_tmpl_detect(&ctx, hermes, &f);
    TEST_CHECK("chatml: a template that writes {{bos_token}} is chatml with BOS", !rc && f.kind == DT_TMPL_CHATML && f.bos,
               "rc %d kind %s bos %d: %s", rc, dt_chat_tmpl_name(f.kind), f.bos, ctx.msg);
    check_fmt("chatml with {{bos_token}}: BOS first, untrained", &f, c + 1, 2, false,
              "<bos><|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n«A1<|im_end|>»\n");
    dt_chat_tmpl_detect(&ctx, sys[0].jinja, &f);
    TEST_CHECK("chatml: Qwen2.5's template (no bos_token) has no BOS", !f.bos, "bos set");
}

// ---- malformed input

typedef struct { const char *name, *good, *bad, *want; } bad_case;

static void bad_lines(const dt_tokenizer *tok) {
    const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}";
    const char *text = "{\"text\":\"abc\"}", *toks = "{\"input_ids\":[1,2,3]}";
    const bad_case cases[] = {
        {"invalid JSON", text, "{\"text\": \"a\"", "invalid JSON at column"},
        {"not an object", text, "[1, 2]", "expected a JSON object per line, got an array"},
        {"missing the format's key", chat, "{\"text\":\"x\"}", "missing key 'messages' (the file's format is chat"},
        {"messages not an array", chat, "{\"messages\":\"hi\"}", "key 'messages': expected an array of {role, content} objects"},
        {"message not an object", chat, "{\"messages\":[\"hi\"]}", "key 'messages': expected an array of {role, content} objects"},
        {"unknown role", chat, "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
         "key 'messages', message 1: role 'tool' is not one of system, user, assistant"},
        {"content not a string", chat, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}",
         "key 'messages', message 1: 'content' must be a string"},
        {"role missing", chat, "{\"messages\":[{\"content\":\"x\"}]}", "key 'messages', message 1: 'role' is missing"},
        {"empty conversation", chat, "{\"messages\":[]}", "key 'messages': the conversation is empty"},
        {"role with a NUL byte is not that role", chat, "{\"messages\":[{\"role\":\"user\\u0000x\",\"content\":\"x\"}]}",
         "key 'messages', message 1: role 'user' (followed by a NUL byte) is not one of system, user, assistant"},
        {"text not a string", text, "{\"text\":5}", "key 'text': expected a string"},
        {"sharegpt: unknown from", "{\"conversations\":[{\"from\":\"human\",\"value\":\"a\"},{\"from\":\"gpt\",\"value\":\"b\"}]}",
         "{\"conversations\":[{\"from\":\"bot\",\"value\":\"x\"}]}", "key 'conversations', message 1: from 'bot' is not one of human, gpt, system"},
        {"alpaca: output missing", "{\"instruction\":\"a\",\"output\":\"b\"}", "{\"instruction\":\"a\"}", "missing key 'output'"},
        {"completion: prompt not a string", "{\"prompt\":\"a\",\"completion\":\"b\"}", "{\"prompt\":[],\"completion\":\"b\"}",
         "key 'prompt': expected a string"},
        {"tokens: id outside the vocabulary", toks, "{\"input_ids\":[1,99999]}", "key 'input_ids', entry 2: 99999 is outside the tokenizer's vocabulary"},
        {"tokens: labels not aligned", toks, "{\"input_ids\":[1,2],\"labels\":[1]}", "key 'labels': 1 entries for 2 input_ids"},
        {"tokens: a label that is not an id", toks, "{\"input_ids\":[1,2],\"labels\":[1,\"x\"]}",
         "key 'labels', entry 2: expected an array of token ids or -100"},
    };
    size_t nc = sizeof cases / sizeof cases[0];
    // Each bad line is line 3 of its file (line 2 is blank), after one good line.
    for (size_t i = 0; i < nc; i++) {
        char doc[1024], name[160], want[512];
        snprintf(doc, sizeof doc, "%s\n\n%s\n", cases[i].good, cases[i].bad);
        const char *p = write_text("bad.jsonl", doc);
        snprintf(want, sizeof want, "%s:3: %s", p, cases[i].want);
        snprintf(name, sizeof name, "bad line: %s, named with file:line", cases[i].name);
        dt_ctx ctx;
        dt_dataset *ds = NULL;
        int rc = load(&ctx, p, tok, NULL, &ds);
        TEST_CHECK(name, rc == DT_EINPUT && strstr(ctx.msg, want), "rc %d: %s\nwant: %s", rc, ctx.msg, want);
        dt_dataset_free(ds);
    }

    // skip_bad_lines: the bad lines of one chat file, skipped and counted in one warning.
    char doc[4096] = "";
    size_t nbad = 0;
    for (size_t i = 0; i < nc; i++) {
        if (cases[i].good != chat) continue;
        strcat(doc, chat), strcat(doc, "\n"), strcat(doc, cases[i].bad), strcat(doc, "\n");
        nbad++;
    }
    const char *p = write_text("skip.jsonl", doc);
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    dt_dataset_opts o = {.skip_bad_lines = true};
    int rc = load(&ctx, p, tok, &o, &ds);
    char want[256];
    snprintf(want, sizeof want, "%s: skipped %zu bad lines of %zu (first, line 2: missing key 'messages'", p, nbad, 2 * nbad);
    TEST_CHECK("skip_bad_lines: skipped, counted, one warning with file and first line", !rc &&
               dt_dataset_get_stats(ds)->n_bad_lines == nbad && dt_dataset_size(ds) == nbad && strstr(warned, want),
               "rc %d %s; warning: %s", rc, ctx.msg, warned);
    dt_dataset_free(ds);

    // Whole-file and option errors.
    struct { const char *name, *path; dt_dataset_opts o; const char *want; } errs[] = {
        {"empty file is an error", write_text("empty.jsonl", ""), {0}, "empty file"},
        {"a file of blank lines is an error", write_text("blank.jsonl", "\n  \n\n"), {0}, "empty file"},
        {"missing file", tmp_path("nope.jsonl"), {0}, "cannot open"},
        {"unknown format name lists the formats", write_text("f.jsonl", text), {.format = "xml"},
         "unknown data format 'xml' (expected auto or one of: text {\"text\"}, completion"},
        {"record of no known format lists the formats", write_text("g.jsonl", "{\"foo\":1,\"bar\":2}\n"), {0},
         ":1: cannot tell the data format from the keys {'foo', 'bar'}; expected one of: text"},
        {"unknown chat template name", write_text("h.jsonl", chat), {.chat_template = "vicuna"}, "unknown chat template 'vicuna'"},
        {"chat_template none with conversations", write_text("i.jsonl", chat), {.chat_template = "none"},
         ":1: conversations need a chat template"},
        {"template error is a bad line with file:line", write_text("j.jsonl", "{\"messages\":[{\"role\":\"user\",\"content\":"
         "\"a\"},{\"role\":\"user\",\"content\":\"b\"}]}\n"), {.chat_template = "mistral"}, ":1: chat template mistral: "
         "conversation roles must alternate"},
        {"truncated .gz", write_gz("cut.jsonl.gz", "{\"text\":\"abc\"}\n{\"text\":\"def\"}\n", 6), {0},
         "corrupt or truncated gzip data"},
        {"no usable example", write_text("k.jsonl", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n"), {0},
         "no usable examples (0 bad lines skipped, 1 without any trained token)"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        rc = load(&ctx, errs[i].path, tok, &errs[i].o, &ds);
        TEST_CHECK(errs[i].name, rc == DT_EINPUT && strstr(ctx.msg, errs[i].want), "rc %d: %s", rc, ctx.msg);
        if (!rc) dt_dataset_free(ds);
    }
    rc = load(&ctx, write_text("l.jsonl", text), NULL, NULL, &ds);
    TEST_CHECK("text without a tokenizer is an error", rc == DT_EINPUT && strstr(ctx.msg, "needs a tokenizer"), "%s", ctx.msg);
    if (!rc) dt_dataset_free(ds);
}

// ---- batching, with pre-tokenized data and no tokenizer

// e0 3 tokens, e1 5 (first two untrained), e2 2, e3 4, e4 6, a 1-token example (nothing trained: dropped),
// e5 12 tokens (cut to max_seq_len 8).
static const char PACK[] =
    "{\"input_ids\":[10,11,12]}\n"
    "{\"input_ids\":[20,21,22,23,24],\"labels\":[-100,-100,22,23,24]}\n"
    "{\"input_ids\":[30,31]}\n"
    "{\"input_ids\":[40,41,42,43]}\n"
    "{\"input_ids\":[50,51,52,53,54,55]}\n"
    "{\"input_ids\":[60]}\n"
    "{\"input_ids\":[70,71,72,73,74,75,76,77,78,79,80,81]}\n";

static bool row_eq(const int32_t *got, const int32_t *want, int64_t n) { return !memcmp(got, want, (size_t)n * 4); }

static void packing(void) {
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    dt_dataset_opts o = {.max_seq_len = 8};
    int rc = load(&ctx, write_text("pack.jsonl", PACK), NULL, &o, &ds);
    if (rc) {
        TEST_FAIL("packing: load", "%s", ctx.msg);
        return;
    }
    const dt_dataset_stats *s = dt_dataset_get_stats(ds);
    TEST_CHECK("truncation to max_seq_len is counted", s->n_truncated == 1 && dt_dataset_example(ds, 5, NULL, NULL) == 8 &&
               s->max_len == 8 && strstr(warned, "1 of 6 examples was longer than max_seq_len (8 tokens) and truncated"),
               "truncated %zu; warnings: %s", s->n_truncated, warned);
    TEST_CHECK("an example with no trained token is dropped and counted", s->n_untrained == 1 && dt_dataset_size(ds) == 6 &&
               strstr(warned, "1 example had no trained token (no answer, or the answer was cut off by max_seq_len) and was dropped"), "untrained %zu, size %zu", s->n_untrained, dt_dataset_size(ds));

    dt_batcher *b = NULL;
    dt_batcher_opts bo = {.batch_size = 2, .packing = true};
    dt_batch_buf buf = {0};
    int64_t nb = 0;
    rc = dt_batcher_create(&ctx, ds, NULL, 0, &bo, &b);
    if (!rc) rc = dt_batcher_epoch_batches(&ctx, b, 0, &nb);
    if (!rc) rc = dt_batcher_get(&ctx, b, 0, 0, &buf);
    if (rc) {
        TEST_FAIL("packing: batch", "%s", ctx.msg);
    } else {
        // Rows: [e0 e1] (8), [e2 e3] (6, e4 does not fit) + 2 pads; then [e4] + pads, [e5].
        const dt_batch *x = &buf.batch;
        int32_t ids[16] = {10, 11, 12, 20, 21, 22, 23, 24, 30, 31, 40, 41, 42, 43, 0, 0};
        int32_t pos[16] = {0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 0, 1};
        int32_t seg[16] = {0, 0, 0, 3, 3, 3, 3, 3, 0, 0, 2, 2, 2, 2, 6, 6};
        int32_t lab[16] = {-100, 11, 12, -100, -100, 22, 23, 24, -100, 31, -100, 41, 42, 43, -100, -100};
        TEST_CHECK("packing: rows filled greedily, padded with the pad id", x->B == 2 && x->T == 8 && nb == 2 &&
                   row_eq(x->input_ids, ids, 16), "B %lld T %lld batches %lld", (long long)x->B, (long long)x->T, (long long)nb);
        TEST_CHECK("packing: positions restart per example", x->pos && row_eq(x->pos, pos, 16), "pos");
        TEST_CHECK("packing: seg_start = first position of the token's example", x->seg_start && row_eq(x->seg_start, seg, 16), "seg");
        TEST_CHECK("packing: label at each example start is -100", row_eq(x->labels, lab, 16), "labels");
        TEST_CHECK("packing: trained-token count = dt_count_targets", buf.n_trained == 9 &&
                   dt_count_targets(x->labels, x->B, x->T, 0) == 9 && buf.n_tokens == 14 && buf.n_examples == 4,
                   "n_trained %lld tokens %lld", (long long)buf.n_trained, (long long)buf.n_tokens);
        rc = dt_batcher_get(&ctx, b, 0, 1, &buf);
        TEST_CHECK("packing: the last batch", !rc && buf.batch.B == 2 && buf.batch.T == 8 && buf.batch.input_ids[0] == 50 &&
                   buf.batch.input_ids[6] == 0 && buf.batch.labels[6] == -100 && buf.batch.input_ids[8] == 70 &&
                   buf.batch.input_ids[15] == 77 && buf.n_trained == 5 + 7, "rc %d %s", rc, ctx.msg);
        rc = dt_batcher_get(&ctx, b, 0, 2, &buf);
        TEST_CHECK("packing: a batch past the epoch's end is an error", rc == DT_EINPUT, "rc %d", rc);
    }
    dt_batcher_free(b);

    // Without packing: one example per row, right-padded to the batch's longest, no pos/seg_start. Each
    // row keeps its first label as encoded (10, -100, 30, 40): a prompt-tuning forward scores it from the
    // last virtual token, as PEFT does; no other forward does, and n_trained does not count it.
    bo = (dt_batcher_opts){.batch_size = 4};
    rc = dt_batcher_create(&ctx, ds, NULL, 0, &bo, &b);
    if (!rc) rc = dt_batcher_get(&ctx, b, 0, 0, &buf);
    if (rc) {
        TEST_FAIL("padding: batch", "%s", ctx.msg);
    } else {
        const dt_batch *x = &buf.batch;
        int32_t ids[20] = {10, 11, 12, 0, 0, 20, 21, 22, 23, 24, 30, 31, 0, 0, 0, 40, 41, 42, 43, 0};
        int32_t lab[20] = {10, 11, 12, -100, -100, -100, -100, 22, 23, 24, 30, 31, -100, -100, -100, 40, 41, 42, 43, -100};
        TEST_CHECK("padding: right-padded to the longest example, pads untrained", x->B == 4 && x->T == 5 &&
                   row_eq(x->input_ids, ids, 20) && row_eq(x->labels, lab, 20) && !x->pos && !x->seg_start &&
                   buf.n_trained == dt_count_targets(x->labels, 4, 5, 0), "B %lld T %lld", (long long)x->B, (long long)x->T);
        TEST_CHECK("unpacked: the first labels are there for prompt tuning's last virtual token",
                   dt_count_targets(x->labels, 4, 5, 4) == buf.n_trained + 3, "%lld targets with 4 virtual tokens, want %lld",
                   (long long)dt_count_targets(x->labels, 4, 5, 4), (long long)buf.n_trained + 3);
    }
    dt_batcher_free(b);

    // Packed rows of a given length (eval's rows), longer than the dataset's max_seq_len: lengths 3 5 2 4 6 8
    // go [e0 e1 e2] (10), [e3 e4] (10), [e5] (8).
    bo = (dt_batcher_opts){.batch_size = 1, .packing = true, .row_len = 12};
    rc = dt_batcher_create(&ctx, ds, NULL, 0, &bo, &b);
    if (!rc) rc = dt_batcher_epoch_batches(&ctx, b, 0, &nb);
    if (!rc) rc = dt_batcher_get(&ctx, b, 0, 1, &buf);
    TEST_CHECK("packing: row_len sets the packed row's length", !rc && nb == 3 && buf.batch.T == 10 && buf.n_examples == 2 &&
               buf.batch.input_ids[0] == 40 && buf.batch.input_ids[4] == 50 && buf.batch.seg_start[9] == 4,
               "rc %d %s, batches %lld, T %lld", rc, ctx.msg, (long long)nb, (long long)buf.batch.T);
    dt_batcher_free(b);
    bo.row_len = 7; // shorter than e5
    rc = dt_batcher_create(&ctx, ds, NULL, 0, &bo, &b);
    TEST_CHECK("packing: a row_len shorter than an example is refused", rc && !b && strstr(ctx.msg, "longer than a packed row (7)"),
               "rc %d %s", rc, ctx.msg);
    dt_batcher_free(b);
    dt_batch_buf_free(&buf);
    dt_dataset_free(ds);
}

// Every example id of one epoch in batch order (non-packed, one example per row: the first input id / 10).
static void epoch_order(dt_batcher *b, uint64_t epoch, int *out, int *n) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_batch_buf buf = {0};
    int64_t nb;
    dt_batcher_epoch_batches(&ctx, b, epoch, &nb);
    *n = 0;
    for (int64_t i = 0; i < nb; i++) {
        dt_batcher_get(&ctx, b, epoch, i, &buf);
        for (int64_t r = 0; r < buf.batch.B; r++) out[(*n)++] = buf.batch.input_ids[r * buf.batch.T] / 10;
    }
    dt_batch_buf_free(&buf);
}

static void shuffling(void) {
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    dt_dataset_opts o = {.max_seq_len = 8};
    if (load(&ctx, write_text("shuf.jsonl", PACK), NULL, &o, &ds)) {
        TEST_FAIL("shuffle: load", "%s", ctx.msg);
        return;
    }
    dt_batcher *a, *b, *c;
    dt_batcher_opts bo = {.batch_size = 2, .shuffle = true, .seed = 42};
    dt_batcher_create(&ctx, ds, NULL, 0, &bo, &a);
    dt_batcher_create(&ctx, ds, NULL, 0, &bo, &b);
    bo.seed = 43;
    dt_batcher_create(&ctx, ds, NULL, 0, &bo, &c);
    int oa0[8], oa1[8], ob0[8], ob1[8], oc0[8], na, n;
    epoch_order(a, 0, oa0, &na);
    epoch_order(a, 1, oa1, &n);
    epoch_order(b, 1, ob1, &n); // epoch 1 first: an epoch's order does not depend on the epochs before it
    epoch_order(b, 0, ob0, &n);
    epoch_order(c, 0, oc0, &n);
    int seen = 0;
    for (int i = 0; i < na; i++) seen |= 1 << oa0[i];
    TEST_CHECK("shuffle: an epoch is a permutation of the examples", na == 6 && seen == (1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 |
               1 << 5 | 1 << 7), "n %d seen %x", na, seen);
    TEST_CHECK("shuffle: same seed, same order in every epoch", !memcmp(oa0, ob0, sizeof(int) * 6) &&
               !memcmp(oa1, ob1, sizeof(int) * 6), "orders differ");
    TEST_CHECK("shuffle: another seed or epoch gives another order", memcmp(oa0, oc0, sizeof(int) * 6) &&
               memcmp(oa0, oa1, sizeof(int) * 6), "orders equal");

    // Sequential batches, and a resume from a saved state.
    dt_batch_buf buf = {0};
    int got[12], k = 0;
    for (int i = 0; i < 7; i++) { // 3 batches per epoch: through epoch 1 into epoch 2
        dt_batcher_next(&ctx, a, &buf);
        got[k++] = buf.batch.input_ids[0] / 10;
        if (i == 3) {
            dt_batcher_state st = dt_batcher_get_state(a);
            dt_batcher_set_state(&ctx, c, &st); // the wrong seed: refused
            TEST_CHECK("state: restoring under another seed is refused", strstr(ctx.msg, "another seed") != NULL, "%s", ctx.msg);
            dt_ctx_init(&ctx);
            int rc = dt_batcher_set_state(&ctx, b, &st);
            TEST_CHECK("state: epoch 1, batch 1 saved", !rc && st.epoch == 1 && st.index == 1, "rc %d epoch %llu index %lld",
                       rc, (unsigned long long)st.epoch, (long long)st.index);
        }
    }
    bool same = got[0] == oa0[0] && got[1] == oa0[2] && got[2] == oa0[4] && got[3] == oa1[0];
    for (int i = 4; i < 7; i++) {
        dt_batcher_next(&ctx, b, &buf);
        same = same && buf.batch.input_ids[0] / 10 == got[i];
    }
    dt_batcher_state st = dt_batcher_get_state(b);
    TEST_CHECK("state: next() follows the epochs, and a restored batcher continues identically", same && st.epoch == 2 &&
               st.index == 1, "epoch %llu index %lld", (unsigned long long)st.epoch, (long long)st.index);
    dt_batch_buf_free(&buf);
    dt_batcher_free(a);
    dt_batcher_free(b);
    dt_batcher_free(c);

    // The validation split.
    size_t *t1, *v1, *t2, *v2, nt, nv, nt2, nv2;
    int rc = dt_dataset_split(&ctx, ds, 0.34, 7, &t1, &nt, &v1, &nv);
    rc |= dt_dataset_split(&ctx, ds, 0.34, 7, &t2, &nt2, &v2, &nv2);
    bool ok = !rc && nv == 2 && nt == 4 && nv2 == 2 && !memcmp(v1, v2, 2 * sizeof *v1) && !memcmp(t1, t2, 4 * sizeof *t1);
    int all = 0;
    for (size_t i = 0; ok && i < nt; i++) all |= 1 << t1[i], ok = i == 0 || t1[i] > t1[i - 1];
    for (size_t i = 0; ok && i < nv; i++) all |= 1 << v1[i], ok = i == 0 || v1[i] > v1[i - 1];
    TEST_CHECK("val_split: deterministic by seed, disjoint, sorted, covers every example", ok && all == 0x3f,
               "rc %d nv %zu nt %zu all %x", rc, nv, nt, all);
    free(t1), free(v1), free(t2), free(v2);
    rc = dt_dataset_split(&ctx, ds, 0.01, 7, &t1, &nt, &v1, &nv);
    TEST_CHECK("val_split: a small fraction still holds out one example", !rc && nv == 1 && nt == 5, "nv %zu", nv);
    free(t1), free(v1);
    rc = dt_dataset_split(&ctx, ds, 0.95, 7, &t1, &nt, &v1, &nv);
    TEST_CHECK("val_split: leaving nothing to train on is an error", rc == DT_EINPUT, "rc %d", rc);
    dt_dataset_free(ds);
}

static void render(const dt_tokenizer *tok) {
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    const char *p = write_text("render2.jsonl", CHAT1);
    if (load(&ctx, p, tok, NULL, &ds)) {
        TEST_FAIL("render", "%s", ctx.msg);
        return;
    }
    char *buf = NULL, want[512];
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    dt_dataset_render_example(&ctx, ds, tok, 0, f);
    fclose(f);
    snprintf(want, sizeof want, "example 0 (%s:1): 28 tokens, 6 trained, 22 not trained\n%s\n", p, CHAT1_WANT);
    TEST_CHECK("render: summary line and «trained» text", !strcmp(buf, want), "\n got: %s\nwant: %s", buf, want);
    free(buf);
    f = open_memstream(&buf, &n);
    dt_dataset_render_example_styled(&ctx, ds, tok, 0, true, f);
    fclose(f);
    TEST_CHECK("render: ANSI colours for a terminal", strstr(buf, "\x1b[32mHello<|im_end|>\x1b[0m") && !strstr(buf, "«"),
               "%s", buf);
    free(buf);
    int rc = dt_dataset_render_example(&ctx, ds, tok, 5, stdout);
    TEST_CHECK("render: an example that does not exist", rc == DT_EINPUT, "rc %d", rc);
    rc = dt_dataset_render_example(&ctx, ds, NULL, 0, stdout);
    TEST_CHECK("render: no tokenizer is an error, not a crash", rc == DT_EINPUT, "rc %d", rc);
    dt_dataset_free(ds);
}

// ---- real tokenizers (shared fixtures)

// The expected rendering with «…» around trained text is turned into ids and a mask by tokenising the whole
// string (special tokens written in it are matched) and taking each part's tokens as the growth of the
// tokenised prefix. The dataset's segment-wise ids must equal the whole-string ids and its mask this mask.
static void check_real(const char *name, const dt_tokenizer *tok, const char *tmpl, const char *jsonl, const char *want,
                       bool byte_level) {
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    dt_dataset_opts o = {.chat_template = tmpl};
    if (load(&ctx, write_text("real.jsonl", jsonl), tok, &o, &ds)) {
        TEST_FAIL(name, "load: %s", ctx.msg);
        return;
    }
    char *plain = malloc(strlen(want) + 1);
    size_t np = 0, nmark = 0;
    size_t cuts[64];
    for (const char *s = want; *s;) {
        if (!strncmp(s, "«", 2) || !strncmp(s, "»", 2)) {
            cuts[nmark++] = np;
            s += 2;
        } else {
            plain[np++] = *s++;
        }
    }
    cuts[nmark++] = np;
    plain[np] = 0;
    dt_ids whole = {0}, pre = {0};
    dt_tokenizer_encode(&ctx, tok, plain, np, false, &whole);
    int8_t *mask = calloc(whole.n + 1, 1);
    size_t done = 0;
    for (size_t k = 0; k < nmark; k++) { // part k ends at cuts[k]; odd parts are inside «…»
        dt_ids_clear(&pre);
        dt_tokenizer_encode(&ctx, tok, plain, cuts[k], false, &pre);
        for (size_t t = done; t < pre.n && t < whole.n; t++) mask[t] = k % 2;
        done = pre.n;
    }
    mask[0] = 0;
    const int32_t *ids, *lab;
    int64_t n = dt_dataset_example(ds, 0, &ids, &lab);
    bool ids_ok = (size_t)n == whole.n && !memcmp(ids, whole.v, whole.n * 4), mask_ok = ids_ok;
    for (int64_t t = 0; mask_ok && t < n; t++) mask_ok = (lab[t] != -100) == mask[t] && (lab[t] == -100 || lab[t] == ids[t]);
    char *got = byte_level ? body(ds, tok, 0) : NULL;
    TEST_CHECK(name, ids_ok && mask_ok && (!got || !strcmp(got, want)), "ids %s, mask %s (%lld vs %zu tokens)%s%s",
               ids_ok ? "ok" : "differ", mask_ok ? "ok" : "differs", (long long)n, whole.n, got ? "\n got: " : "", got ? got : "");
    if (!ids_ok || !mask_ok) {
        for (int64_t t = 0; t < n; t++) printf("%d%s ", ids[t], lab[t] == -100 ? "" : "*");
        printf("\n");
        for (size_t t = 0; t < whole.n; t++) printf("%d%s ", whole.v[t], mask[t] ? "*" : "");
        printf("\n");
    }
    free(got);
    free(mask);
    free(plain);
    dt_ids_free(&whole);
    dt_ids_free(&pre);
    dt_dataset_free(ds);
}

// The naive preview that dt_dataset_render_example's windowed decode must equal: each run of trained or
// untrained tokens cut out of the decoded whole prefix (quadratic in the number of runs; kept here only).
static char *naive_body(const dt_dataset *ds, const dt_tokenizer *tok, size_t i) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const int32_t *ids, *labels;
    int64_t n = dt_dataset_example(ds, i, &ids, &labels);
    char *buf = NULL, *prev = NULL, *cur = NULL, *piece = NULL;
    size_t len = 0, prev_len = 0, cur_len, piece_len;
    FILE *f = open_memstream(&buf, &len);
    for (int64_t a = 0, b; a < n; a = b) {
        bool tr = labels[a] != -100;
        for (b = a; b < n && (labels[b] != -100) == tr;) b++;
        dt_tokenizer_decode(&ctx, tok, ids, (size_t)b, false, &cur, &cur_len);
        const char *text = cur + prev_len;
        size_t k = cur_len - prev_len;
        if (cur_len < prev_len || memcmp(cur, prev ? prev : "", prev_len)) {
            dt_tokenizer_decode(&ctx, tok, ids + a, (size_t)(b - a), false, &piece, &piece_len);
            text = piece, k = piece_len;
        }
        fprintf(f, "%s%.*s%s", tr ? "«" : "", (int)k, text, tr ? "»" : "");
        free(piece), free(prev);
        piece = NULL, prev = cur, prev_len = cur_len;
    }
    free(prev);
    fclose(f);
    return buf;
}

// A long conversation with characters of 2, 3 and 4 bytes on the turn boundaries: preview decodes each run
// with a few tokens of context, and must print exactly what decoding the whole prefix gives.
static void check_preview_window(const char *name, const dt_tokenizer *tok, const char *tmpl) {
    char *jsonl = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&jsonl, &n);
    fputs("{\"messages\":[", f);
    for (int t = 0; t < 40; t++)
        fprintf(f, "%s{\"role\":\"user\",\"content\":\"%s question %d, caf\u00e9 \u6f22\u5b57\"},"
                   "{\"role\":\"assistant\",\"content\":\"\U0001F600 answer %d %s\u00e9\"}",
                t ? "," : "", t % 2 ? "\U0001F30A" : "\u00fc", t, t, t % 3 ? "\u6f22" : "a");
    fputs("]}\n", f);
    fclose(f);
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    dt_dataset_opts o = {.chat_template = tmpl};
    if (load(&ctx, write_text("window.jsonl", jsonl), tok, &o, &ds)) {
        TEST_FAIL(name, "load: %s", ctx.msg);
        free(jsonl);
        return;
    }
    char *got = body(ds, tok, 0), *want = naive_body(ds, tok, 0);
    TEST_CHECK(name, !strcmp(got, want) && strstr(got, "\U0001F600 answer 39"), "\n got: %.300s\nwant: %.300s", got, want);
    free(got), free(want), free(jsonl);
    dt_dataset_free(ds);
}

// Example 0 of `jsonl` against ids and a trained mask ('1' = label is the id) made outside deltatune: the
// conversation rendered by the model's Jinja template with jinja2 as transformers renders it
// (add_generation_prompt false), tokenised whole by tokenize_ref.js (shared/tools) with the same
// tokenizer, trained = the tokens from after each "[/INST]" through the EOS that ends the answer.
static void check_ref_ids(const char *name, const dt_tokenizer *tok, const char *tmpl, const char *want_tmpl,
                          const char *jsonl, const int32_t *want, size_t nwant, const char *mask) {
    dt_ctx ctx;
    dt_dataset *ds = NULL;
    dt_dataset_opts o = {.chat_template = tmpl};
    if (load(&ctx, write_text("ref.jsonl", jsonl), tok, &o, &ds)) {
        TEST_FAIL(name, "load: %s", ctx.msg);
        return;
    }
    const int32_t *ids, *lab;
    int64_t n = dt_dataset_example(ds, 0, &ids, &lab);
    const char *used = dt_dataset_chat_template(ds);
    bool ok = used && !strcmp(used, want_tmpl) && (size_t)n == nwant && strlen(mask) == nwant &&
              !memcmp(ids, want, nwant * 4);
    for (int64_t t = 0; ok && t < n; t++) {
        int32_t l = t ? lab[t] : dt_dataset_first_label(ds, 0);
        ok = l == (mask[t] == '1' ? ids[t] : -100);
    }
    TEST_CHECK(name, ok, "%s: %lld tokens vs %zu", used ? used : "-", (long long)n, nwant);
    if (!ok) {
        for (int64_t t = 0; t < n; t++) printf("%d%s ", ids[t], lab[t] == -100 ? "" : "*");
        printf("\n");
    }
    dt_dataset_free(ds);
}

// A copy of the Mistral fixture tokenizer in tmpdir/name with v0.3's chat template in its config and,
// when `control`, [INST] (32000) and [/INST] (32001) added as special tokens, as v0.3's and Nemo's
// tokenizers have them. NULL (after a failed check) when it cannot be made.
static dt_tokenizer *mistral_variant(const char *fx, const char *name, bool control) {
    char dir[600], src[700], dst[700];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    mkdir(dir, 0777);
    snprintf(src, sizeof src, "%s/tokenizers/mistral/tokenizer.json", fx);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", dir);
    json_t *tj = json_load_file(src, 0, NULL);
    bool ok = tj != NULL;
    const char *ctl[] = {"[INST]", "[/INST]"};
    for (int i = 0; ok && control && i < 2; i++)
        ok = !json_array_append_new(json_object_get(tj, "added_tokens"),
                                    json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", 32000 + i, "content", ctl[i],
                                              "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
    ok = ok && !json_dump_file(tj, dst, 0);
    json_decref(tj);
    snprintf(src, sizeof src, "%s/tokenizers/mistral/tokenizer_config.json", fx);
    snprintf(dst, sizeof dst, "%s/tokenizer_config.json", dir);
    json_t *cfg = json_load_file(src, JSON_DECODE_INT_AS_REAL, NULL); // model_max_length 1e30 is no jansson integer
    ok = ok && cfg && !json_object_set_new(cfg, "chat_template", json_string(MISTRAL_V03_JINJA)) &&
         !json_dump_file(cfg, dst, 0);
    json_decref(cfg);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *tok = NULL;
    if (!ok || dt_tokenizer_load(&ctx, dir, &tok)) {
        TEST_FAIL(name, "%s", ok ? ctx.msg : "cannot write the folder");
        return NULL;
    }
    return tok;
}

static void real_tokenizers(const char *fx) {
    char path[512];
    dt_tokenizer *qwen = NULL, *llama3 = NULL, *mistral = NULL;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    snprintf(path, sizeof path, "%s/tokenizers/qwen3", fx);
    if (dt_tokenizer_load(&ctx, path, &qwen)) TEST_FAIL("load qwen3 tokenizer", "%s", ctx.msg);
    snprintf(path, sizeof path, "%s/tokenizers/llama3", fx);
    if (dt_tokenizer_load(&ctx, path, &llama3)) TEST_FAIL("load llama3 tokenizer", "%s", ctx.msg);
    snprintf(path, sizeof path, "%s/tokenizers/mistral", fx);
    if (dt_tokenizer_load(&ctx, path, &mistral)) TEST_FAIL("load mistral tokenizer", "%s", ctx.msg);
    const char *two =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"What is 2+2?\"},{\"role\":\"assistant\",\"content\":\"2+2 equals 4.\"}]}\n";
    const char *four =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},{\"role\":\"user\",\"content\":\"Hello!\"},"
        "{\"role\":\"assistant\",\"content\":\"Hi.\"},{\"role\":\"user\",\"content\":\"Name a colour.\"},"
        "{\"role\":\"assistant\",\"content\":\"Blue, like the sea.\"}]}\n";
    const char *nosys =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"},{\"role\":\"assistant\",\"content\":\"Hi there.\"},"
        "{\"role\":\"user\",\"content\":\"Name a colour.\"},{\"role\":\"assistant\",\"content\":\"Blue, like the sea.\"}]}\n";
    if (qwen) {
        check_real("qwen3 (auto from tokenizer_config): 2-turn conversation", qwen, NULL, two,
                   "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n«<think>\n\n</think>\n\n2+2 equals 4."
                   "<|im_end|>»\n", true);
        check_real("qwen3: system + 2 exchanges", qwen, NULL, four,
                   "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
                   "«Hi.<|im_end|>»\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n«<think>\n\n</think>"
                   "\n\nBlue, like the sea.<|im_end|>»\n", true);
        check_real("chatml with the qwen3 tokenizer", qwen, "chatml", four,
                   "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
                   "«Hi.<|im_end|>»\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
                   "«Blue, like the sea.<|im_end|>»\n", true);
        check_real("qwen3: text format (no BOS, EOS <|im_end|>)", qwen, NULL, "{\"text\":\"Once upon a time.\"}\n",
                   "Once« upon a time.<|im_end|>»", true);
        check_real("qwen3: completion format", qwen, NULL, "{\"prompt\":\"The capital of France is\",\"completion\":\" Paris.\"}\n",
                   "The capital of France is« Paris.<|im_end|>»", true);
        check_real("qwen3: alpaca format", qwen, NULL, "{\"instruction\":\"Name a fruit.\",\"input\":\"\",\"output\":\"Apple.\"}\n",
                   "Below is an instruction that describes a task. Write a response that appropriately completes the "
                   "request.\n\n### Instruction:\nName a fruit.\n\n### Response:\n«Apple.<|im_end|>»", true);
    }
    if (llama3) {
        check_real("llama3 (auto from tokenizer_config): system + 2 exchanges", llama3, NULL, four,
                   "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
                   "\n\n«Hi.<|eot_id|>»<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n«Blue, like the sea.<|eot_id|>»", true);
    }
    if (mistral) {
        // SentencePiece: the answer after "[/INST]" must not get the "▁" that starts a fresh piece.
        check_real("llama2 template with the Mistral tokenizer: <<SYS>>, BOS per turn", mistral, "llama2", four,
                   "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHello! [/INST]« Hi. </s>»<s>[INST] Name a colour. [/INST]"
                   "« Blue, like the sea. </s>»", false);
        check_real("mistral template: answer right after [/INST]", mistral, "mistral", nosys,
                   "<s>[INST] Hello! [/INST]«Hi there.</s>»[INST] Name a colour. [/INST]«Blue, like the sea.</s>»", false);
        check_real("zephyr template with the Mistral tokenizer", mistral, "zephyr", four,
                   "<s><|system|>\nYou are terse.</s>\n<|user|>\nHello!</s>\n<|assistant|>\n«Hi.</s>»\n<|user|>\n"
                   "Name a colour.</s>\n<|assistant|>\n«Blue, like the sea.</s>»\n", false);
        check_real("alpaca template with the Mistral tokenizer", mistral, "alpaca", nosys,
                   "<s>Below is an instruction that describes a task. Write a response that appropriately completes the "
                   "request.\n\n### Instruction:\nHello!\n\n### Response:\n«Hi there.</s>»\n\n### Instruction:\nName a colour."
                   "\n\n### Response:\n«Blue, like the sea.</s>»", false);
        check_real("mistral: text format gets BOS (tokenizer setting) and EOS", mistral, NULL,
                   "{\"text\":\"Once upon a time.\"}\n", "<s>«Once upon a time.</s>»", false);
        // Expected ids from the real templates (MISTRAL_*_JINJA) rendered with jinja2 and tokenised whole by
        // tokenize_ref.js with this tokenizer (Mistral 7B v0.1's: 32000 ids, [INST] is plain text in it).
        // Identical, token for token, labels too: the segment cuts change no token here.
        // "<s> [INST] You are terse.\n\nHello! [/INST] Hi.</s> [INST] Name a colour. [/INST] Blue, like the sea.</s>"
        static const int32_t ref_mistral_v02_3[] = {1, 28705, 733, 16289, 28793, 995, 460, 3636, 331, 28723, 13, 13, 16230, 28808, 733, 28748, 16289, 28793, 15359, 28723, 2, 28705, 733, 16289, 28793, 6620, 264, 11474, 28723, 733, 28748, 16289, 28793, 8836, 28725, 737, 272, 6163, 28723, 2};
        check_ref_ids("mistral-v0.2 with the Mistral tokenizer: system + 2 exchanges (ids from jinja2 + tokenize_ref.js)", mistral,
                      "mistral-v0.2", "mistral-v0.2", "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"Hello!\"}, {\"role\": \"assistant\", \"content\": \"Hi.\"}, {\"role\": \"user\", \"content\": \"Name a colour.\"}, {\"role\": \"assistant\", \"content\": \"Blue, like the sea.\"}]}\n",
                      ref_mistral_v02_3, sizeof ref_mistral_v02_3 / sizeof ref_mistral_v02_3[0], "0000000000000000001110000000000001111111");
        // "<s> [INST]  What is 2+2?  [/INST]   4.\n</s>"
        static const int32_t ref_mistral_v02_4[] = {1, 28705, 733, 16289, 28793, 28705, 1824, 349, 28705, 28750, 28806, 28750, 28804, 28705, 733, 28748, 16289, 28793, 2287, 28781, 28723, 13, 2};
        check_ref_ids("mistral-v0.2 with the Mistral tokenizer: whitespace kept (ids from jinja2 + tokenize_ref.js)", mistral,
                      "mistral-v0.2", "mistral-v0.2", "{\"messages\": [{\"role\": \"user\", \"content\": \" What is 2+2? \"}, {\"role\": \"assistant\", \"content\": \"  4.\\n\"}]}\n",
                      ref_mistral_v02_4, sizeof ref_mistral_v02_4 / sizeof ref_mistral_v02_4[0], "00000000000000000011111");
        // "<s>[INST] Hello![/INST] Hi there.</s>[INST] Name a colour.[/INST] Blue, like the sea.</s>"
        static const int32_t ref_mistral_v03_1[] = {1, 733, 16289, 28793, 22557, 25531, 28748, 16289, 28793, 15359, 736, 28723, 2, 733, 16289, 28793, 6620, 264, 11474, 20011, 28748, 16289, 28793, 8836, 28725, 737, 272, 6163, 28723, 2};
        check_ref_ids("mistral-v0.3 with the Mistral tokenizer: 2 exchanges (ids from jinja2 + tokenize_ref.js)", mistral,
                      "mistral-v0.3", "mistral-v0.3", "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}, {\"role\": \"assistant\", \"content\": \"Hi there.\"}, {\"role\": \"user\", \"content\": \"Name a colour.\"}, {\"role\": \"assistant\", \"content\": \"Blue, like the sea.\"}]}\n",
                      ref_mistral_v03_1, sizeof ref_mistral_v03_1 / sizeof ref_mistral_v03_1[0], "000000000111100000000001111111");
        // "<s>[INST]  What is 2+2? [/INST] 4.</s>"
        static const int32_t ref_mistral_v03_4[] = {1, 733, 16289, 28793, 28705, 1824, 349, 28705, 28750, 28806, 28750, 28804, 733, 28748, 16289, 28793, 28705, 28781, 28723, 2};
        check_ref_ids("mistral-v0.3 with the Mistral tokenizer: answer trimmed (ids from jinja2 + tokenize_ref.js)", mistral,
                      "mistral-v0.3", "mistral-v0.3", "{\"messages\": [{\"role\": \"user\", \"content\": \" What is 2+2? \"}, {\"role\": \"assistant\", \"content\": \"  4.\\n\"}]}\n",
                      ref_mistral_v03_4, sizeof ref_mistral_v03_4 / sizeof ref_mistral_v03_4[0], "00000000000000001111");
        // "<s>[INST]Hello![/INST]Hi there.</s>[INST]Name a colour.[/INST]Blue, like the sea.</s>"
        static const int32_t ref_mistral_nemo_1[] = {1, 733, 16289, 28793, 16230, 25531, 28748, 16289, 28793, 23809, 736, 28723, 2, 733, 16289, 28793, 952, 264, 11474, 20011, 28748, 16289, 28793, 17596, 28725, 737, 272, 6163, 28723, 2};
        check_ref_ids("mistral-nemo with the Mistral tokenizer: 2 exchanges (ids from jinja2 + tokenize_ref.js)", mistral,
                      "mistral-nemo", "mistral-nemo", "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}, {\"role\": \"assistant\", \"content\": \"Hi there.\"}, {\"role\": \"user\", \"content\": \"Name a colour.\"}, {\"role\": \"assistant\", \"content\": \"Blue, like the sea.\"}]}\n",
                      ref_mistral_nemo_1, sizeof ref_mistral_nemo_1 / sizeof ref_mistral_nemo_1[0], "000000000111100000000001111111");
        // "<s>[INST] What is 2+2? [/INST]  4.\n</s>"
        static const int32_t ref_mistral_nemo_4[] = {1, 733, 16289, 28793, 1824, 349, 28705, 28750, 28806, 28750, 28804, 733, 28748, 16289, 28793, 259, 28781, 28723, 13, 2};
        check_ref_ids("mistral-nemo with the Mistral tokenizer: whitespace kept (ids from jinja2 + tokenize_ref.js)", mistral,
                      "mistral-nemo", "mistral-nemo", "{\"messages\": [{\"role\": \"user\", \"content\": \" What is 2+2? \"}, {\"role\": \"assistant\", \"content\": \"  4.\\n\"}]}\n",
                      ref_mistral_nemo_4, sizeof ref_mistral_nemo_4 / sizeof ref_mistral_nemo_4[0], "00000000000000011111");
        // "<s>[INST] Hello![/INST] Hi there.</s>"
        static const int32_t ref_mistral_v03_0[] = {1, 733, 16289, 28793, 22557, 25531, 28748, 16289, 28793, 15359, 736, 28723, 2};
        // The same through auto-detection: a copy of this tokenizer with v0.3's template in its config.
        dt_tokenizer *v03 = mistral_variant(fx, "mistral_v03_tok", false);
        if (v03)
            check_ref_ids("mistral-v0.3 chosen from tokenizer_config.json (ids from jinja2 + tokenize_ref.js)", v03, NULL,
                          "mistral-v0.3", "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}, "
                          "{\"role\": \"assistant\", \"content\": \"Hi there.\"}]}\n",
                          ref_mistral_v03_0, sizeof ref_mistral_v03_0 / sizeof ref_mistral_v03_0[0], "0000000001111");
        dt_tokenizer_free(v03);
        // v0.3's and Nemo's real tokenizers have [INST] and [/INST] as special (control) tokens; these
        // fixtures do not. Adding them to this tokenizer as special added tokens (32000, 32001) checks the
        // cuts next to them: Hugging Face starts the text after a special token as a new piece ("▁" first,
        // 28705 below), and so does deltatune. Expected ids made the same way (tokenize_ref.js with the
        // same tokenizer.json).
        dt_tokenizer *ctl = mistral_variant(fx, "mistral_ctl_tok", true);
        static const int32_t ctl_v03[] = {1, 32000, 28705, 22557, 28808, 32001, 28705, 15359, 736, 28723, 2, 32000, 28705,
                                          6620, 264, 11474, 28723, 32001, 28705, 8836, 28725, 737, 272, 6163, 28723, 2};
        static const int32_t ctl_nemo[] = {1, 32000, 22557, 28808, 32001, 15359, 736, 28723, 2, 32000, 6620, 264, 11474,
                                           28723, 32001, 8836, 28725, 737, 272, 6163, 28723, 2};
        if (ctl) {
            check_ref_ids("mistral-v0.3 with [INST]/[/INST] as special tokens: 2 exchanges (jinja2 + tokenize_ref.js)",
                          ctl, NULL, "mistral-v0.3", nosys, ctl_v03, sizeof ctl_v03 / sizeof ctl_v03[0],
                          "00000011111000000011111111");
            check_ref_ids("mistral-nemo with [INST]/[/INST] as special tokens: 2 exchanges (jinja2 + tokenize_ref.js)",
                          ctl, "mistral-nemo", "mistral-nemo", nosys, ctl_nemo, sizeof ctl_nemo / sizeof ctl_nemo[0],
                          "0000011110000001111111");
        }
        dt_tokenizer_free(ctl);
    }
    if (qwen) check_preview_window("preview: 80 turns with qwen3 equal the whole-prefix decode", qwen, NULL);
    if (llama3) check_preview_window("preview: 80 turns with llama3 equal the whole-prefix decode", llama3, NULL);
    if (mistral) check_preview_window("preview: 80 turns with mistral (Metaspace) equal the whole-prefix decode", mistral, "mistral");
    dt_tokenizer_free(qwen);
    dt_tokenizer_free(llama3);
    dt_tokenizer_free(mistral);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        TEST_FAIL("mkdtemp", "cannot make a temporary folder");
        TEST_EXIT();
    }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *tiny = NULL;
    if (dt_tokenizer_load(&ctx, TINY, &tiny)) {
        TEST_FAIL("load " TINY, "%s", ctx.msg);
    } else {
        formats(tiny);
        nul_bytes(tiny);
        json_line_string();
        chatml_bos();
        bad_lines(tiny);
        render(tiny);
        check_preview_window("preview: 80 turns, byte tokens, equal the whole-prefix decode", tiny, NULL);
    }
    templates();
    packing();
    shuffling();
    const char *fx = dt_test_fixtures();
    if (fx) real_tokenizers(fx);
    else TEST_SKIP("real tokenizers (Qwen3, Llama 3, Mistral)", "../shared/fixtures not found");
    dt_tokenizer_free(tiny);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) printf("  could not remove %s\n", tmpdir);
    TEST_EXIT();
}
