// The `deltatune` command's consistency, through the binary: every command's --help and -h exit 0 and
// mention every option its source parses; bad options and values exit 2 naming the option; a mistyped
// command gets a suggestion; generate's checks, context warning, EOS ids from generation_config.json,
// --system and the interactive --chat loop; eval and generate find the tokenizer beside a model file and
// eval needs none for token ids; eval, generate and train take a .gguf (its own tokenizer) or a
// .safetensors file (config.json beside it, else exit 2); a tokenizer larger than the model's vocabulary, a data folder and an
// unwritable output_dir exit 2 before anything is written; recipes accept data.format sharegpt, every
// chat template the errors suggest, and model.name_or_path; the process keeps its name after the
// OpenBLAS restart; the progress bar moves every step and its ETA after a resume (the
// formula, and a real resumed run slowed by strace); streaming decoding
// gives the full decode's text at a linear cost; the shipped stories260K data is what its script says.
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pty.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include "datasets/chat_template.h"
#include "datasets/decode_stream.h"
#include "tests/file_util.h"
#include "tests/test_util.h"
#include "tools/train_progress.c" // the formatting is pure; the test links it directly
#include "tools/thread_env.c"     // the same for the governor's choice

static char tmp[64];
static char out[1 << 16];
static char demo_gen[512]; // the demo model generator, in the build folder this test was built in

// Runs a shell command (printf-style) with stdout and stderr into `out`; returns its exit status.
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[8192], full[8400], path[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/out.txt", tmp);
    snprintf(full, sizeof full, "(%s) >%s 2>&1", cmd, path);
    int st = system(full);
    size_t n = 0;
    char *s = tf_slurp(path, &n);
    snprintf(out, sizeof out, "%s", s ? s : "");
    free(s);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The commands, from main.c's table ({"name", cmd_...}).
static int commands(char names[][32], int max) {
    char *src = tf_slurp("tools/main.c", NULL);
    int n = 0;
    regex_t re;
    regcomp(&re, "\\{\"([a-z]+)\", cmd_", REG_EXTENDED);
    regmatch_t m[2];
    for (const char *p = src; p && n < max && !regexec(&re, p, 2, m, 0); p += m[0].rm_eo)
        snprintf(names[n++], 32, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), p + m[1].rm_so);
    regfree(&re);
    free(src);
    return n;
}

static void test_help_documents_every_option(void) {
    char names[32][32]; // command names
    int n = commands(names, 32);
    TEST_CHECK("cli_command_table_read", n >= 10, "found %d commands in tools/main.c", n);
    char *readme = tf_slurp("README.md", NULL);
    regex_t opt;
    // An option is a string literal "--word" or "-x" in the command's source.
    regcomp(&opt, "\"(--[a-z][a-z0-9-]*|-[a-zA-Z])\"", REG_EXTENDED);
    for (int c = 0; c < n; c++) { // names[c] is at most 31 bytes
        static char help[sizeof out];
        char src_path[1100], name[1100];
        snprintf(src_path, sizeof src_path, !strcmp(names[c], "version") ? "tools/cli_util.c" : "tools/cmd_%s.c", names[c]);
        int rc_long = run("./deltatune %s --help", names[c]);
        snprintf(help, sizeof help, "%s", out);
        int rc_short = run("./deltatune %s -h", names[c]);
        snprintf(name, sizeof name, "cli_help_exit_0_%s", names[c]);
        char usage[1100];
        snprintf(usage, sizeof usage, "usage: deltatune %s", names[c]);
        TEST_CHECK(name, rc_long == 0 && rc_short == 0 && strstr(help, usage) && !strcmp(help, out),
                   "--help exit %d, -h exit %d: %.200s", rc_long, rc_short, help);
        char *src = tf_slurp(src_path, NULL);
        regmatch_t m[2];
        char missing[512] = "";
        int found = 0;
        for (const char *p = src; p && !regexec(&opt, p, 2, m, 0); p += m[0].rm_eo) {
            char o[64];
            snprintf(o, sizeof o, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), p + m[1].rm_so);
            if (!strcmp(o, "-h") || !strcmp(o, "--help")) continue;
            found++;
            if (!strstr(help, o)) snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " %s", o);
        }
        free(src);
        snprintf(name, sizeof name, "cli_help_lists_options_%s", names[c]);
        TEST_CHECK(name, !missing[0], "%s parses%s but --help does not mention it (%d options)", src_path, missing, found);
        // The README's command table has a row for every command.
        char row[1100];
        snprintf(row, sizeof row, "| `deltatune %s", names[c]);
        snprintf(name, sizeof name, "cli_readme_lists_%s", names[c]);
        TEST_CHECK(name, readme && strstr(readme, row), "README.md has no row starting %s", row);
    }
    regfree(&opt);
    free(readme);
}

static void test_bad_options(void) {
    int rc = run("./deltatune trian x.yaml");
    TEST_CHECK("cli_unknown_command_suggests", rc == 2 && strstr(out, "did you mean train?"), "exit %d: %s", rc, out);
    rc = run("./deltatune eval --modle m --data d");
    TEST_CHECK("cli_unknown_option_suggests", rc == 2 && strstr(out, "'--modle'") && strstr(out, "did you mean --model?"),
               "exit %d: %s", rc, out);
    static const struct { const char *args, *names; } bad[] = {
        {"generate --model m --prompt x --temp abc", "--temp 'abc'"},
        {"generate --model m --prompt x -n 10x", "-n '10x'"},
        {"generate --model m --prompt x -n -3", "-n '-3'"},
        {"generate --model m --prompt x --top-p 2", "--top-p '2'"},
        {"generate --model m --prompt x --top-p 0", "--top-p '0'"},
        {"generate --model m --prompt x --seed -1", "--seed '-1'"},
        {"generate --model m --prompt x --temp -0.5", "--temp '-0.5'"},
        {"generate --model m --prompt x -n", "-n: expected a value"},
        {"eval --model m --data d --max-seq-len 1.5", "--max-seq-len '1.5'"},
        {"eval --model m --data d --format chatt", "--format 'chatt'"},
        {"merge --model m --out o --dtype f8", "--dtype 'f8'"},
        {"preview r.yaml -n x", "-n 'x'"},
        {"export --adapter a --model m --out o --format onnx", "--format 'onnx'"},
        {"tokenize --tokenizer t --json-lines f --special=yes", "--special takes no value"},
        {"inspect a b", "unexpected argument 'b'"},
        {"generate --prompt x", "--model"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[96];
        rc = run("./deltatune %s", bad[i].args);
        snprintf(name, sizeof name, "cli_bad_value_%zu", i);
        TEST_CHECK(name, rc == 2 && strstr(out, bad[i].names), "deltatune %s: exit %d, want 2 and '%s': %s", bad[i].args,
                   rc, bad[i].names, out);
    }
}

// tokenize reads its lines as the data loader does: a UTF-8 byte-order mark and CRLF line ends are not
// part of the JSON, so a file saved by a Windows editor gives the same ids as a plain one.
static void test_tokenize_bom_crlf(void) {
    char plain[128], bom[128], want[256];
    snprintf(plain, sizeof plain, "%s/plain.txt", tmp);
    snprintf(bom, sizeof bom, "%s/bom.txt", tmp);
    FILE *f = fopen(plain, "wb");
    fputs("\"Hi there\"\n\"ok\"\n", f);
    fclose(f);
    f = fopen(bom, "wb");
    fputs("\xEF\xBB\xBF\"Hi there\"\r\n\r\n\"ok\"", f);
    fclose(f);
    int rc = run("./deltatune tokenize --tokenizer demo/tokenizer --json-lines %s", plain);
    snprintf(want, sizeof want, "%.200s", out);
    int rc2 = run("./deltatune tokenize --tokenizer demo/tokenizer --json-lines %s", bom);
    TEST_CHECK("cli_tokenize_bom_crlf", rc == 0 && rc2 == 0 && strchr(want, '[') && !strcmp(out, want),
               "exit %d/%d: '%s', want '%s'", rc, rc2, out, want);
}

// The quickstart's model and a LoRA trained on it (a few seconds), shared by the tests below.
static bool make_demo(void) {
    int rc = run("rm -rf %s/m && %s demo/tokenizer %s/m && "
                 "./deltatune train demo/demo.yaml model.path=%s/m output_dir=%s/a model.name_or_path=org/tiny-base",
                 tmp, demo_gen, tmp, tmp, tmp);
    TEST_CHECK("cli_demo_model_and_adapter", rc == 0, "exit %d: %s", rc, out);
    return rc == 0;
}

static char g_one[256]; // the demo adapter's greedy reply to 'What do cats say?' (test_generate)

static void test_generate(void) {
    char *one = g_one;
    int rc = run("./deltatune generate --model %s/m --adapter %s/a --chat --prompt 'What do cats say?'", tmp, tmp);
    snprintf(one, sizeof g_one, "%.255s", out);
    TEST_CHECK("cli_generate_chat_reply", rc == 0 && strlen(one) > 1 && strlen(one) < 40, "exit %d: %s", rc, out);
    // Two turns on stdin: the first reply is the one-shot reply; the second follows it.
    rc = run("printf 'What do cats say?\\nWhat is 2 + 2?\\n' | ./deltatune generate --model %s/m --adapter %s/a --chat", tmp, tmp);
    char *nl = strchr(out, '\n');
    bool two = nl && strchr(nl + 1, '\n') && !strchr(strchr(nl + 1, '\n') + 1, '\n');
    TEST_CHECK("cli_generate_chat_loop", rc == 0 && two && !strncmp(out, one, strlen(one)), "exit %d: %s (one-shot: %s)", rc, out, one);
    rc = run("./deltatune generate --model %s/m --adapter %s/a --system 'Answer briefly.' --prompt 'What do cats say?'", tmp, tmp);
    TEST_CHECK("cli_generate_system", rc == 0 && strlen(out) > 1, "exit %d: %s", rc, out);
    // Past the model's 256 positions: a warning, and generation goes on.
    rc = run("./deltatune generate --model %s/m --prompt 'Hello' -n 300 --temp 1 --seed 3 2>&1 >/dev/null", tmp);
    TEST_CHECK("cli_generate_context_warning", rc == 0 && strstr(out, "warning:") && strstr(out, "context of 256"), "exit %d: %s", rc, out);
    // generation_config.json's eos_token_id ends the reply: make the id of the reply's second character one.
    char first[8] = {one[0], 0}, second[8] = {one[1], 0};
    FILE *f = fopen("/tmp/dt_cli_chars.jsonl", "w");
    fprintf(f, "\"%s\"\n", second);
    fclose(f);
    rc = run("./deltatune tokenize --tokenizer %s/m --json-lines /tmp/dt_cli_chars.jsonl", tmp);
    int id = -1;
    sscanf(out, "[%d]", &id);
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/m/generation_config.json", tmp);
    f = fopen(cfg, "w");
    fprintf(f, "{\"eos_token_id\": [258, %d]}\n", id);
    fclose(f);
    rc = run("./deltatune generate --model %s/m --adapter %s/a --chat --prompt 'What do cats say?'", tmp, tmp);
    char want[16];
    snprintf(want, sizeof want, "%s\n", first);
    TEST_CHECK("cli_generate_eos_from_generation_config", id >= 0 && rc == 0 && !strcmp(out, want),
               "eos %d (%s): exit %d: '%s', want '%s'", id, second, rc, out, first);
    remove(cfg);
}

static void test_tokenizer_and_data(void) {
    // A llama2.c model file (stories260K, vocabulary 512) with a tokenizer beside it: the tokenizer is the
    // folder's, not the model file read as a tokenizer.
    const char *fx = dt_test_fixtures();
    int rc;
    if (!fx) {
        TEST_SKIP("cli_eval_tokenizer_beside_model_file", "no ../shared/fixtures (stories260K.bin)");
    } else {
        rc = run("mkdir -p %s/s && cp %s/stories260K/stories260K.bin demo/tokenizer/* %s/s/ && "
                 "./deltatune eval --model %s/s/stories260K.bin --data demo/data/val.jsonl", tmp, fx, tmp, tmp);
        TEST_CHECK("cli_eval_tokenizer_beside_model_file", rc == 0 && strstr(out, "perplexity"), "exit %d: %s", rc, out);
        rc = run("./deltatune generate --model %s/s/stories260K.bin --prompt Hi -n 3", tmp);
        TEST_CHECK("cli_generate_tokenizer_beside_model_file", rc == 0, "exit %d: %s", rc, out);
    }
    // Token ids need no tokenizer: the golden model folder has none.
    rc = run("./deltatune eval --model tests/golden/llama_gqa --data tests/data/train/tokens.jsonl");
    TEST_CHECK("cli_eval_tokens_without_tokenizer", rc == 0 && strstr(out, "perplexity"), "exit %d: %s", rc, out);
    // The same for train and preview with data.format auto: the recipe names no tokenizer and the model
    // folder holds none, so loading one would fail.
    // (Paths in a recipe are relative to the recipe's folder.)
    char cwd[2048];
    if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
    rc = run("printf 'model: {path: %s/tests/golden/llama_gqa}\\ndata: {train: [%s/tests/data/train/tokens.jsonl], "
             "max_seq_len: 16}\\nmethod: {name: lora, r: 2, target_modules: [q_proj]}\\n"
             "train: {max_steps: 2, batch_size: 1}\\noutput_dir: %s/tok_run\\n' > %s/tok.yaml && "
             "./deltatune preview %s/tok.yaml -n 1 && ./deltatune train %s/tok.yaml", cwd, cwd, tmp, tmp, tmp, tmp);
    char adapter_path[128];
    snprintf(adapter_path, sizeof adapter_path, "%s/tok_run/adapter_model.safetensors", tmp);
    TEST_CHECK("cli_train_preview_auto_tokens_without_tokenizer", rc == 0 && strstr(out, "example 0:") &&
               access(adapter_path, F_OK) == 0, "exit %d: %s", rc, out);
    rc = run("./deltatune eval --model tests/golden/llama_gqa --data demo/data");
    TEST_CHECK("cli_eval_data_folder_exit_2", rc == 2 && strstr(out, "demo/data: is a folder"), "exit %d: %s", rc, out);
    // The 259-token tokenizer with the 128-token golden model: caught, naming both.
    rc = run("./deltatune eval --model tests/golden/llama_gqa --tokenizer demo/tokenizer --data demo/data/val.jsonl");
    TEST_CHECK("cli_eval_vocab_mismatch", rc == 2 && strstr(out, "demo/tokenizer") && strstr(out, "tests/golden/llama_gqa") &&
               strstr(out, "128"), "exit %d: %s", rc, out);
    char over[512];
    snprintf(over, sizeof over, "model.path=%s/tests/golden/llama_gqa model.tokenizer=%s/demo/tokenizer output_dir=%s/vocab",
             getenv("PWD"), getenv("PWD"), tmp);
    rc = run("./deltatune preview demo/demo.yaml %s", over);
    TEST_CHECK("cli_preview_vocab_mismatch", rc == 2 && strstr(out, "demo/tokenizer") && strstr(out, "llama_gqa"), "exit %d: %s", rc, out);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/vocab", tmp);
    rc = run("./deltatune train demo/demo.yaml %s", over);
    TEST_CHECK("cli_train_vocab_mismatch_writes_nothing", rc == 2 && strstr(out, "demo/tokenizer") && access(dir, F_OK) != 0,
               "exit %d, %s %s: %s", rc, dir, access(dir, F_OK) ? "absent" : "exists", out);
    rc = run("./deltatune train demo/demo.yaml model.path=%s/m data.train=%s/demo/data output_dir=%s/x", tmp, getenv("PWD"), tmp);
    TEST_CHECK("cli_train_data_folder_exit_2", rc == 2 && strstr(out, "is a folder"), "exit %d: %s", rc, out);
    char file[128];
    snprintf(file, sizeof file, "%s/file", tmp);
    tf_write(file, "x", 1);
    rc = run("./deltatune train demo/demo.yaml model.path=%s/m output_dir=%s/sub", tmp, file);
    TEST_CHECK("cli_train_output_dir_not_writable", rc == 2 && strstr(out, "output_dir") && strstr(out, "is a file") &&
               !strstr(out, "trainable params"), "exit %d: %s", rc, out);
    // A sliding-window model (the demo model as a Mistral with sliding_window 40; its examples reach 60
    // tokens): train refuses examples longer than the window before the first step (naming data.max_seq_len,
    // and with nothing written), and trains once data.max_seq_len fits it.
    rc = run("rm -rf %s/msw && cp -r %s/m %s/msw && sed 's/LlamaForCausalLM/MistralForCausalLM/; s/\"llama\"/\"mistral\"/; "
             "s/\"vocab_size\"/\"sliding_window\": 40, \"vocab_size\"/' %s/m/config.json > %s/msw/config.json", tmp, tmp, tmp, tmp, tmp);
    snprintf(dir, sizeof dir, "%s/sw", tmp);
    if (!rc) rc = run("./deltatune train demo/demo.yaml model.path=%s/msw output_dir=%s train.max_steps=1", tmp, dir);
    TEST_CHECK("cli_train_longer_than_sliding_window_refused", rc == 2 && strstr(out, "sliding_window (40)") &&
               strstr(out, "data.max_seq_len") && !strstr(out, "step 1") && access(dir, F_OK) != 0, "exit %d: %s", rc, out);
    rc = run("./deltatune train demo/demo.yaml model.path=%s/msw output_dir=%s/sw2 train.max_steps=1 data.max_seq_len=40", tmp, tmp);
    TEST_CHECK("cli_train_within_sliding_window_runs", rc == 0, "exit %d: %s", rc, out);
}

// The loss eval prints ("loss 0.414496  perplexity ..."), or NAN.
static double loss_of(const char *text) {
    double v;
    return sscanf(text, "loss %lf", &v) == 1 ? v : NAN;
}

// eval, generate and train with --model / model.path a bare file: a .gguf with its own tokenizer (merge
// --format gguf writes the model folder's tokenizer into it; the folder holding it has none), and a
// .safetensors with config.json and the tokenizer beside it, or without config.json: exit 2 saying so.
static void test_model_files(const char *one_reply) {
    int rc = run("mkdir -p %s/g && ./deltatune merge --model %s/m --format gguf --out %s/g/m.gguf", tmp, tmp, tmp);
    TEST_CHECK("cli_model_file_gguf_written", rc == 0, "exit %d: %s", rc, out);
    rc = run("./deltatune eval --model %s/m --adapter %s/a --data demo/data/val.jsonl", tmp, tmp);
    double folder = loss_of(out);
    rc = run("./deltatune eval --model %s/g/m.gguf --adapter %s/a --data demo/data/val.jsonl", tmp, tmp);
    double gguf = loss_of(out);
    TEST_CHECK("cli_eval_gguf_own_tokenizer", rc == 0 && fabs(gguf - folder) < 1e-3 * fabs(folder),
               "exit %d: loss %g, the folder's %g: %s", rc, gguf, folder, out);
    // Greedy: the same reply as from the folder, through the GGUF's own chat template and tokenizer.
    rc = run("./deltatune generate --model %s/g/m.gguf --adapter %s/a --chat --prompt 'What do cats say?'", tmp, tmp);
    TEST_CHECK("cli_generate_gguf_own_tokenizer", rc == 0 && !strcmp(out, one_reply), "exit %d: '%s', want '%s'", rc, out, one_reply);
    rc = run("./deltatune validate demo/demo.yaml model.path=%s/g/m.gguf", tmp);
    char want[256];
    snprintf(want, sizeof want, "tokenizer: %s/g/m.gguf\n", tmp);
    TEST_CHECK("cli_validate_gguf_tokenizer_default", rc == 0 && strstr(out, want), "exit %d: %s", rc, out);
    rc = run("./deltatune train demo/demo.yaml model.path=%s/g/m.gguf train.max_steps=2 output_dir=%s/ga", tmp, tmp);
    snprintf(want, sizeof want, "tokenizer: the tokenizer.ggml.* metadata of %s/g/m.gguf", tmp);
    TEST_CHECK("cli_train_gguf_own_tokenizer", rc == 0 && strstr(out, want), "exit %d: %s", rc, out);
    // model.tokenizer still wins (and then train says nothing about the GGUF's).
    rc = run("./deltatune train demo/demo.yaml model.path=%s/g/m.gguf model.tokenizer=%s/m train.max_steps=1 output_dir=%s/gb",
             tmp, tmp, tmp);
    TEST_CHECK("cli_train_gguf_tokenizer_override", rc == 0 && !strstr(out, "tokenizer.ggml"), "exit %d: %s", rc, out);
    // .safetensors: config.json and the tokenizer from the folder holding it.
    rc = run("./deltatune eval --model %s/m/model.safetensors --adapter %s/a --data demo/data/val.jsonl", tmp, tmp);
    double st = loss_of(out);
    TEST_CHECK("cli_eval_safetensors_file", rc == 0 && st == folder, "exit %d: loss %g, the folder's %g: %s", rc, st, folder, out);
    rc = run("./deltatune generate --model %s/m/model.safetensors --adapter %s/a --chat --prompt 'What do cats say?'", tmp, tmp);
    TEST_CHECK("cli_generate_safetensors_file", rc == 0 && !strcmp(out, one_reply), "exit %d: '%s', want '%s'", rc, out, one_reply);
    rc = run("mkdir -p %s/bare && cp %s/m/model.safetensors %s/bare/ && "
             "./deltatune generate --model %s/bare/model.safetensors --tokenizer %s/m --prompt Hi -n 2", tmp, tmp, tmp, tmp, tmp);
    snprintf(want, sizeof want, "%s/bare/config.json", tmp);
    TEST_CHECK("cli_safetensors_file_without_config_exit_2", rc == 2 && strstr(out, want) && strstr(out, ".safetensors model file"),
               "exit %d: %s", rc, out);
    rc = run("./deltatune eval --model %s/bare/model.safetensors --tokenizer %s/m --data demo/data/val.jsonl", tmp, tmp);
    TEST_CHECK("cli_eval_safetensors_file_without_config_exit_2", rc == 2 && strstr(out, want), "exit %d: %s", rc, out);
    // A model that is not there is named as the model, not as a tokenizer missing beside it.
    rc = run("./deltatune eval --model %s/g/none.gguf --data demo/data/val.jsonl", tmp);
    TEST_CHECK("cli_eval_missing_model_named", rc == 2 && strstr(out, "--model") && strstr(out, "none.gguf: no such model"),
               "exit %d: %s", rc, out);
    rc = run("./deltatune generate --model %s/g/none.gguf --prompt Hi", tmp);
    TEST_CHECK("cli_generate_missing_model_named", rc == 2 && strstr(out, "none.gguf: no such model"), "exit %d: %s", rc, out);
}

static void test_recipe_keys(void) {
    int rc = run("./deltatune validate demo/demo.yaml data.format=sharegpt");
    TEST_CHECK("cli_recipe_format_sharegpt", rc == 0 && strstr(out, "format: sharegpt"), "exit %d: %s", rc, out);
    // Every template the error messages name (DT_CHAT_TEMPLATE_NAMES) is a value of data.chat_template.
    char names[] = DT_CHAT_TEMPLATE_NAMES, bad[256] = "";
    for (char *t = strtok(names, ", "); t; t = strtok(NULL, ", ")) {
        if (!strcmp(t, "or")) continue;
        if (run("./deltatune validate demo/demo.yaml data.chat_template=%s", t) != 0)
            snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " %s", t);
    }
    TEST_CHECK("cli_recipe_suggested_templates_exist", !bad[0], "refused:%s", bad);
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/a/adapter_config.json", tmp);
    char *s = tf_slurp(cfg, NULL);
    TEST_CHECK("cli_recipe_name_or_path", s && strstr(s, "\"base_model_name_or_path\": \"org/tiny-base\""), "%s", s ? s : "no file");
    free(s);
}

// A /proc file (whose size reads as 0, so tf_slurp cannot be used) into buf; returns its length.
static size_t read_proc(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY);
    size_t n = 0;
    ssize_t k;
    while (fd >= 0 && n < cap - 1 && (k = read(fd, buf + n, cap - 1 - n)) > 0) n += (size_t)k;
    if (fd >= 0) close(fd);
    buf[n] = 0;
    return n;
}

// Starts `deltatune eval` reading its data from a pipe (so it waits), with OMP_WAIT_POLICY set to
// `policy` (NULL: unset), and once the process runs its final image (its environment holds
// OMP_WAIT_POLICY: deltatune restarts itself to set it, tools/thread_env.h) reads its /proc/PID/comm,
// OMP_WAIT_POLICY and DT_WAIT_AUTO.
static bool probe(const char *policy, char *comm, size_t comm_n, char *wait_policy, size_t wp_n, char *aut, size_t aut_n) {
    int fds[2];
    if (pipe(fds)) return false;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[0], 0);
        close(fds[1]);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        unsetenv("GOMP_SPINCOUNT");
        unsetenv("DT_WAIT_AUTO");
        if (policy) setenv("OMP_WAIT_POLICY", policy, 1);
        else unsetenv("OMP_WAIT_POLICY");
        execl("./deltatune", "./deltatune", "eval", "--model", "tests/golden/llama_gqa", "--data", "/dev/stdin", (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    char path[64];
    comm[0] = wait_policy[0] = aut[0] = 0;
    for (int i = 0; i < 100 && !wait_policy[0]; i++) { // up to 5 s
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        static char env[1 << 16];
        size_t n = read_proc(path, env, sizeof env);
        for (size_t k = 0; k < n; k += strlen(env + k) + 1) {
            if (!strncmp(env + k, "OMP_WAIT_POLICY=", 16)) snprintf(wait_policy, wp_n, "%s", env + k + 16);
            if (!strncmp(env + k, "DT_WAIT_AUTO=", 13)) snprintf(aut, aut_n, "%s", env + k + 13);
        }
        if (!wait_policy[0]) nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    read_proc(path, comm, comm_n);
    kill(pid, SIGTERM);
    close(fds[1]);
    waitpid(pid, NULL, 0);
    return true;
}

// With every core busy with other work (busy loops started here), a compute command chooses sleeping
// waiters (OMP_WAIT_POLICY=passive, DT_WAIT_AUTO=passive) and restarts under its own name; a policy the
// user set is kept. The governor's thread count for a given load is checked directly.
static void test_process_name_and_wait_policy(void) {
    char comm[64], wp[64], aut[64];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pid_t loops[256];
    int nl = 0;
    for (long i = 0; i < ncpu && nl < 256; i++) {
        pid_t p = fork();
        if (p == 0) { for (volatile unsigned long x = 0;; x++) {} }
        if (p > 0) loops[nl++] = p;
    }
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    bool ok = probe(NULL, comm, sizeof comm, wp, sizeof wp, aut, sizeof aut);
    for (int i = 0; i < nl; i++) { kill(loops[i], SIGKILL); waitpid(loops[i], NULL, 0); }
    if (ncpu < 2) {
        TEST_SKIP("cli_wait_policy_passive_when_loaded", "one core: no thread ever waits at a barrier");
    } else {
        TEST_CHECK("cli_wait_policy_passive_when_loaded", ok && !strcmp(wp, "passive") && !strcmp(aut, "passive"),
                   "OMP_WAIT_POLICY '%s', DT_WAIT_AUTO '%s'", wp, aut);
        TEST_CHECK("cli_process_name_after_restart", ok && !strcmp(comm, "deltatune\n"), "/proc/PID/comm is '%s'", comm);
    }
    ok = probe("active", comm, sizeof comm, wp, sizeof wp, aut, sizeof aut);
    TEST_CHECK("cli_wait_policy_user_kept", ok && !strcmp(wp, "active") && !aut[0], "OMP_WAIT_POLICY '%s', DT_WAIT_AUTO '%s'", wp, aut);
    // 2 cores: idle or light noise keeps both threads; one busy loop beside a spinning 2-thread run
    // (measured as 2/3 of a core) or a whole core taken leaves one; never fewer than one.
    TEST_CHECK("cli_thread_gov_choose", dt_thread_gov_choose(2, 2, 0.0) == 2 && dt_thread_gov_choose(2, 2, 0.3) == 2 &&
               dt_thread_gov_choose(2, 2, 0.67) == 1 && dt_thread_gov_choose(2, 2, 1.0) == 1 &&
               dt_thread_gov_choose(2, 2, 5.0) == 1 && dt_thread_gov_choose(4, 8, 2.0) == 4 &&
               dt_thread_gov_choose(8, 8, 2.0) == 6, "thread counts");
}

// On a terminal the bar is drawn after every step, and validation losses show.
static void test_progress_tty(void) {
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    if (pid == 0) {
        char over[256];
        snprintf(over, sizeof over, "output_dir=%s/tty", tmp);
        execl("./deltatune", "./deltatune", "train", "tests/data/train/tiny.yaml", over, "train.max_steps=6",
              "train.log_every_n_steps=100", "train.eval_every_n_steps=3", "train.save_every_n_steps=0", (char *)NULL);
        _exit(127);
    }
    static char buf[1 << 16];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf - 1 && (k = read(master, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)k;
    buf[n] = 0;
    int st;
    waitpid(pid, &st, 0);
    close(master);
    int bars = 0;
    for (char *p = buf; (p = strstr(p, "\r[")); p++) bars++;
    TEST_CHECK("cli_progress_bar_every_step", WIFEXITED(st) && WEXITSTATUS(st) == 0 && bars == 6,
               "%d bars for 6 steps: %s", bars, buf);
    TEST_CHECK("cli_progress_val_loss_on_tty", strstr(buf, "step 3 val_loss") && strstr(buf, "step 6 val_loss") &&
               strstr(buf, " val "), "%s", buf);
    // ETA: 2 steps run in 10 s since a restart at step 100 of 110 leave 8 steps: 40 s (not 10 / 102 * 8).
    dt_progress p = {stdout, false, 100, 110, 1000.0, NAN};
    char line[256];
    dt_progress_format(&p, 1010.0, 102, 1.0, 1e-3, 10, line, sizeof line);
    TEST_CHECK("cli_progress_eta_after_resume", strstr(line, "eta 40s"), "%s", line);
}

// The ETA of a real resumed run counts only the steps run since the restart. strace makes every line
// written to the log take DELAY s (its syscall fault injection), so a step costs about that much:
// resumed at step 4 of 12, the line of step 6 has run 2 steps in some k * DELAY s and 6 to go, an ETA of
// 3 k DELAY; dividing by all 6 steps since step 0 instead would give k DELAY. k (the number of writes
// before that line) is fixed by the code; it is 2 today, so the ETA reads 3 s against 1 s.
static void test_eta_after_real_resume(void) {
    if (system("strace -V >/dev/null 2>&1")) { TEST_SKIP("cli_eta_after_real_resume", "strace is not installed"); return; }
    char log[128];
    snprintf(log, sizeof log, "%s/eta.log", tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml output_dir=%s/eta && rm -r %s/eta/checkpoints/step-8 && "
                 "strace -f -o /dev/null -P %s -e inject=write:delay_exit=500000 ./deltatune train "
                 "tests/data/train/tiny.yaml output_dir=%s/eta resume=true 2>%s", tmp, tmp, log, tmp, log);
    char *s = tf_slurp(log, NULL);
    if (rc && s && strstr(s, "PTRACE")) { // a container that forbids ptrace
        TEST_SKIP("cli_eta_after_real_resume", "strace cannot trace here: %.200s", s);
        free(s);
        return;
    }
    const char *l6 = s ? strstr(s, "step 6/12 ") : NULL;
    int eta = -1;
    if (l6) { const char *e = strstr(l6, " eta "); if (e) eta = atoi(e + 5); }
    TEST_CHECK("cli_eta_after_real_resume", rc == 0 && s && strstr(s, "resum") && eta >= 2,
               "exit %d, eta at step 6: %d s (expected 3; 1 if it counted the steps before the restart): %s", rc, eta,
               s ? s : out);
    free(s);
}

// Streaming decoding equals the full decode and decodes O(n) ids in all.
static void stream_case(const char *name, const char *tokdir, const char *text) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *tok;
    if (dt_tokenizer_load(&ctx, tokdir, &tok)) { TEST_FAIL(name, "%s", ctx.msg); return; }
    dt_ids ids = {0};
    dt_tokenizer_encode(&ctx, tok, text, strlen(text), false, &ids);
    const size_t prompt = 3;
    char *full = NULL, *head = NULL;
    size_t full_len = 0, head_len = 0;
    dt_tokenizer_decode(&ctx, tok, ids.v + prompt - 1, ids.n - prompt + 1, true, &full, &full_len);
    dt_tokenizer_decode(&ctx, tok, ids.v + prompt - 1, 1, true, &head, &head_len);
    dt_decode_stream ds;
    dt_decode_stream_init(&ds, prompt);
    char *got = calloc(1, full_len + 1);
    size_t got_len = 0;
    int rc = 0;
    for (size_t n = prompt + 1; n <= ids.n && !rc; n++) {
        const char *piece;
        size_t len;
        if ((rc = dt_decode_stream_next(&ctx, &ds, tok, ids.v, n, &piece, &len))) break;
        if (got_len + len <= full_len) memcpy(got + got_len, piece, len);
        got_len += len;
    }
    const char *piece;
    size_t len;
    if (!rc) rc = dt_decode_stream_flush(&ctx, &ds, tok, ids.v, ids.n, &piece, &len);
    if (!rc && got_len + len <= full_len) memcpy(got + got_len, piece, len);
    got_len += len;
    bool same = got_len == full_len - head_len && !memcmp(got, full + head_len, got_len);
    TEST_CHECK(name, !rc && same && ds.ids_decoded <= 6 * (int64_t)ids.n, "rc %d, %zu ids, %lld decoded, same %d: '%s' vs '%s'",
               rc, ids.n, (long long)ds.ids_decoded, same, got, full + head_len);
    dt_decode_stream_free(&ds);
    free(got);
    free(full);
    free(head);
    dt_ids_free(&ids);
    dt_tokenizer_free(tok);
}

static void test_decode_stream(void) {
    const char *text = "Once upon a time, a café served crème brûlée 🍮 to 42 dragons.\n  Then\tthey  left: ünïcödé!";
    stream_case("cli_decode_stream_bytelevel", "demo/tokenizer", text);
    const char *fx = dt_test_fixtures();
    if (!fx) { TEST_SKIP("cli_decode_stream_sentencepiece", "no ../shared/fixtures"); return; }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tokenizers/mistral", fx);
    stream_case("cli_decode_stream_sentencepiece", dir, text);
    snprintf(dir, sizeof dir, "%s/tokenizers/qwen3", fx);
    stream_case("cli_decode_stream_qwen3", dir, text);
}

// recipes/data/make_stories260k_data.sh: BOS then 63 ids in 3..511 (no BOS or EOS after the first).
static void test_stories260k_data(void) {
    const char *files[] = {"recipes/data/stories260k-train.jsonl", "recipes/data/stories260k-val.jsonl"};
    for (int f = 0; f < 2; f++) {
        FILE *in = fopen(files[f], "r");
        char line[4096];
        int lines = 0, bad = 0;
        while (in && fgets(line, sizeof line, in)) {
            lines++;
            char *p = strstr(line, "[");
            int count = 0, first = -1, v;
            bool ok = p != NULL;
            for (p = p ? p + 1 : NULL; ok && p && sscanf(p, "%d", &v) == 1; count++) {
                if (count == 0) first = v;
                else if (v < 3 || v > 511) ok = false;
                p = strchr(p, ',');
                if (p) p++;
            }
            if (!ok || first != 1 || count != 64) bad++;
        }
        if (in) fclose(in);
        char name[64];
        snprintf(name, sizeof name, "cli_stories260k_data_%s", f ? "val" : "train");
        TEST_CHECK(name, lines > 0 && bad == 0, "%s: %d lines, %d not BOS + 63 ids in 3..511", files[f], lines, bad);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    snprintf(tmp, sizeof tmp, "/tmp/dt_cli_%d", (int)getpid());
    mkdir(tmp, 0777);
    // argv[0] is BUILD/tests/test_cli; the generator is BUILD/demo/make_demo_model.
    const char *slash = strstr(argv[0], "/tests/");
    snprintf(demo_gen, sizeof demo_gen, "%.*s/demo/make_demo_model", slash ? (int)(slash - argv[0]) : 5, slash ? argv[0] : "build");
    if (access("./deltatune", X_OK) || access(demo_gen, X_OK)) {
        TEST_FAIL("cli_binaries", "run from the project root after make (./deltatune, %s)", demo_gen);
        TEST_EXIT();
    }
    test_help_documents_every_option();
    test_bad_options();
    test_stories260k_data();
    test_decode_stream();
    test_process_name_and_wait_policy();
    test_progress_tty();
    test_eta_after_real_resume();
    test_tokenize_bom_crlf();
    if (make_demo()) {
        test_generate();
        test_tokenizer_and_data();
        test_model_files(g_one);
        test_recipe_keys();
    }
    tf_rm_tree(tmp);
    TEST_EXIT();
}
