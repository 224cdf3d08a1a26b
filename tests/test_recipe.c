// Recipe loading, defaults, the bad-recipe corpus, overrides, the emit -> load -> emit round trip, and
// `deltatune validate`'s exit codes through the binary.
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "recipes/recipe.h"
#include "recipes/recipe_internal.h"
#include "tests/test_util.h"

#define GOOD "tests/data/recipes/good/"
#define BAD "tests/data/recipes/bad/"

static char cwd[PATH_MAX];

// cwd + "/" + rel, for expected absolute paths.
static const char *abs_of(const char *rel) {
    static char buf[4][PATH_MAX + 256];
    static int slot;
    char *b = buf[slot++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", cwd, rel);
    return b;
}

static bool streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

// Collects the failed conditions of one test case so that it reports one line.
typedef struct { char why[1024]; size_t n; } checks;
static void need(checks *c, bool ok, const char *what) {
    if (!ok && c->n < sizeof c->why) c->n += (size_t)snprintf(c->why + c->n, sizeof c->why - c->n, "%s; ", what);
}
#define NEED(c, cond) need(c, cond, #cond)

static int load(dt_ctx *ctx, const char *path, dt_recipe *r, int n, ...) {
    const char *ov[16];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) ov[i] = va_arg(ap, const char *);
    va_end(ap);
    return dt_recipe_load(ctx, path, ov, n, r);
}

static void test_minimal_defaults(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_recipe r;
    int rc = load(&ctx, GOOD "minimal.yaml", &r, 0);
    if (rc) { TEST_FAIL("recipe_minimal_defaults", "load failed: %s", ctx.msg); return; }
    checks c = {0};
    NEED(&c, streq(r.model.path, abs_of(GOOD "models/tiny")));
    NEED(&c, streq(r.model.tokenizer, r.model.path));
    NEED(&c, streq(r.recipe_path, abs_of(GOOD "minimal.yaml")));
    NEED(&c, r.method.name == DT_METHOD_LORA && r.method.r == 8 && r.method.alpha == 16.0);
    NEED(&c, r.method.dropout == 0.05 && !r.method.target_all_linear && r.method.target_modules.n == 2);
    NEED(&c, streq(r.method.target_modules.items[0], "q_proj") && streq(r.method.target_modules.items[1], "v_proj"));
    NEED(&c, r.method.layers_to_transform.n == 0 && !r.method.use_rslora && !r.method.init_from);
    NEED(&c, r.method.num_virtual_tokens == 20 && r.method.init == DT_PT_INIT_RANDOM && !r.method.init_text);
    NEED(&c, r.data.train.n == 1 && streq(r.data.train.items[0], abs_of(GOOD "train.jsonl")));
    NEED(&c, r.data.val.n == 0 && r.data.val_split == 0 && r.data.format == DT_FORMAT_AUTO);
    NEED(&c, r.data.max_seq_len == 2048 && !r.data.packing && !r.data.train_on_prompt);
    NEED(&c, r.data.chat_template == DT_TEMPLATE_AUTO && r.data.shuffle && !r.data.skip_bad_lines);
    NEED(&c, r.train.epochs == 1 && r.train.max_steps == 0 && r.train.batch_size == 1);
    NEED(&c, r.train.gradient_accumulation_steps == 1 && r.train.optimizer.name == DT_OPTIM_ADAMW);
    NEED(&c, r.train.optimizer.lr == 2e-4 && r.train.optimizer.betas[0] == 0.9 && r.train.optimizer.betas[1] == 0.999);
    NEED(&c, r.train.optimizer.eps == 1e-8 && r.train.optimizer.weight_decay == 0 && r.train.optimizer.momentum == 0);
    NEED(&c, r.train.lr_scheduler.name == DT_SCHED_CONSTANT && r.train.lr_scheduler.warmup_steps == 0);
    NEED(&c, r.train.lr_scheduler.warmup_ratio == -1 && r.train.lr_scheduler.min_lr_ratio == 0);
    NEED(&c, r.train.clip_grad_norm == 1.0 && !r.train.activation_checkpointing && r.train.seed == 42);
    NEED(&c, r.train.log_every_n_steps == 10 && r.train.eval_every_n_steps == 100);
    NEED(&c, r.train.save_every_n_steps == 0 && r.train.keep_last_n_checkpoints == 0);
    NEED(&c, r.hardware.device == DT_DEV_CPU && r.hardware.threads == 0 && r.hardware.dtype == DT_DTYPE_AUTO);
    NEED(&c, streq(r.output_dir, abs_of(GOOD "out")) && r.resume == DT_RESUME_NO && !r.resume_path);
    TEST_CHECK("recipe_minimal_defaults", !c.n, "%s", c.why);
    dt_recipe_free(&r);
}

static void test_lora_full(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_recipe r;
    if (load(&ctx, GOOD "lora-full.yaml", &r, 0)) { TEST_FAIL("recipe_lora_full", "%s", ctx.msg); return; }
    checks c = {0};
    NEED(&c, streq(r.model.path, "/abs/models/tiny.bin"));
    NEED(&c, streq(r.model.tokenizer, abs_of(GOOD "tokenizer")));
    NEED(&c, r.method.r == 16 && r.method.alpha == 32 && r.method.dropout == 0);
    NEED(&c, r.method.target_all_linear && r.method.target_modules.n == 0);
    NEED(&c, r.method.layers_to_transform.n == 3 && r.method.layers_to_transform.items[2] == 4);
    NEED(&c, r.method.use_rslora && streq(r.method.init_from, abs_of(GOOD "adapters/start")));
    NEED(&c, r.data.train.n == 2 && streq(r.data.train.items[1], abs_of(GOOD "sub/b.jsonl.gz")));
    NEED(&c, r.data.val_split == 0.1 && r.data.format == DT_FORMAT_ALPACA && r.data.max_seq_len == 512);
    NEED(&c, r.data.packing && r.data.train_on_prompt && !r.data.shuffle && r.data.skip_bad_lines);
    NEED(&c, r.data.chat_template == DT_TEMPLATE_NONE);
    NEED(&c, r.train.epochs == 3 && r.train.max_steps == 0);
    NEED(&c, r.train.batch_size == 4 && r.train.gradient_accumulation_steps == 4);   // through an alias
    NEED(&c, r.train.optimizer.lr == 1e-5 && r.train.optimizer.betas[0] == 0.85 && r.train.optimizer.eps == 1e-6);
    NEED(&c, r.train.optimizer.weight_decay == 0.01 && r.train.lr_scheduler.name == DT_SCHED_COSINE);
    NEED(&c, r.train.lr_scheduler.warmup_steps == 20 && r.train.lr_scheduler.warmup_ratio == -1);
    NEED(&c, r.train.lr_scheduler.min_lr_ratio == 0.1 && r.train.clip_grad_norm == 0);
    NEED(&c, r.train.activation_checkpointing && r.train.seed == 0 && r.train.eval_every_n_steps == 0);
    NEED(&c, r.hardware.device == DT_DEV_CUDA && r.hardware.threads == 8 && r.hardware.dtype == DT_BF16);
    NEED(&c, r.resume == DT_RESUME_LATEST && !r.resume_path);
    TEST_CHECK("recipe_lora_full", !c.n, "%s", c.why);
    dt_recipe_free(&r);
}

static void test_prompt_tuning(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_recipe r;
    if (load(&ctx, GOOD "prompt-tuning.yaml", &r, 0)) { TEST_FAIL("recipe_prompt_tuning", "%s", ctx.msg); return; }
    checks c = {0};
    NEED(&c, r.method.name == DT_METHOD_PROMPT_TUNING && r.method.num_virtual_tokens == 8);
    NEED(&c, r.method.init == DT_PT_INIT_TEXT && streq(r.method.init_text, "Classify the review: positive or négatif?"));
    NEED(&c, r.data.val.n == 2 && streq(r.data.val.items[1], abs_of(GOOD "val2.jsonl")) && r.data.val_split == 0);
    NEED(&c, r.data.format == DT_FORMAT_COMPLETION);
    NEED(&c, r.train.epochs == 0 && r.train.max_steps == 1000);
    NEED(&c, r.train.optimizer.name == DT_OPTIM_SGD && r.train.optimizer.lr == 0.1 && r.train.optimizer.momentum == 0.9);
    NEED(&c, r.train.lr_scheduler.name == DT_SCHED_LINEAR && r.train.lr_scheduler.warmup_ratio == 0.05);
    NEED(&c, r.train.lr_scheduler.warmup_steps == -1);
    NEED(&c, r.hardware.device == DT_DEV_CPU && r.hardware.dtype == DT_BF16);
    NEED(&c, r.resume == DT_RESUME_PATH && streq(r.resume_path, abs_of("tests/data/recipes/checkpoints/step-100")));
    TEST_CHECK("recipe_prompt_tuning", !c.n, "%s", c.why);
    dt_recipe_free(&r);
}

// Every ready recipe in recipes/ must validate; a few values are checked against the files.
static void test_ready_recipes(void) {
    const char *names[] = {
        "smollm2-135m-instruct-lora-cpu", "smollm2-135m-instruct-lora-cuda", "qwen2.5-0.5b-instruct-lora-cpu",
        "qwen2.5-0.5b-instruct-lora-cuda", "llama-3.2-1b-instruct-lora-cpu", "llama-3.2-1b-instruct-lora-cuda",
        "stories260k-lora", "stories260k-bitfit"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[256], test[128], out[256];
        snprintf(path, sizeof path, "recipes/%s.yaml", names[i]);
        snprintf(test, sizeof test, "recipe_ready_%s", names[i]);
        snprintf(out, sizeof out, "runs/%s", names[i]);
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        dt_recipe r;
        if (dt_recipe_load(&ctx, path, NULL, 0, &r)) { TEST_FAIL(test, "%s", ctx.msg); continue; }
        checks c = {0};
        bool cuda = strstr(names[i], "cuda") != NULL, stories = strstr(names[i], "stories") != NULL;
        const bool bitfit = strstr(names[i], "bitfit") != NULL;
        NEED(&c, streq(r.output_dir, abs_of(out)) && r.method.name == (bitfit ? DT_METHOD_BITFIT : DT_METHOD_LORA));
        NEED(&c, r.hardware.device == (cuda ? DT_DEV_CUDA : DT_DEV_CPU));
        NEED(&c, r.hardware.dtype == (cuda ? DT_BF16 : DT_DTYPE_AUTO));
        if (stories) {
            // recipes/../../shared/... is the shared folder beside the repository.
            char want[PATH_MAX + 64];
            snprintf(want, sizeof want, "%.*s/shared/fixtures/stories260K/stories260K.bin",
                     (int)(strrchr(cwd, '/') - cwd), cwd);
            NEED(&c, streq(r.model.path, want) && r.data.format == DT_FORMAT_TOKENS);
            NEED(&c, streq(r.data.train.items[0], abs_of("recipes/data/stories260k-train.jsonl")));
            NEED(&c, r.train.max_steps == 200 && r.train.epochs == 0 && (bitfit ? r.method.target_modules.n == 4 : r.method.r == 4));
            NEED(&c, r.model.tokenizer && strstr(want, r.model.tokenizer) == want &&
                         streq(want + strlen(r.model.tokenizer), "/stories260K.bin"));
        } else {
            NEED(&c, r.data.format == DT_FORMAT_CHAT && r.data.val_split == 0.05 && r.train.epochs == 1);
            NEED(&c, streq(r.data.train.items[0], abs_of("data/chat-train.jsonl")));
            NEED(&c, r.data.chat_template == (strstr(names[i], "llama") ? DT_TEMPLATE_LLAMA3 : DT_TEMPLATE_CHATML));
            NEED(&c, r.train.lr_scheduler.name == DT_SCHED_COSINE && r.train.lr_scheduler.warmup_ratio == 0.03);
            NEED(&c, strstr(r.model.path, "/models/") && streq(r.model.tokenizer, r.model.path));
        }
        TEST_CHECK(test, !c.n, "%s", c.why);
        dt_recipe_free(&r);
    }
    // And every recipe shipped in recipes/ (one per method) loads and validates, its output_dir under runs/.
    DIR *d = opendir("recipes");
    int n = 0, bad = 0;
    char why[512] = "";
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml")) continue;
        char path[128], out[128];
        if (len > 100) continue; // (no such name is shipped; keeps the buffers small)
        snprintf(path, sizeof path, "recipes/%s", e->d_name);
        snprintf(out, sizeof out, "runs/%.*s", (int)(len - 5), e->d_name);
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        dt_recipe r;
        n++;
        if (dt_recipe_load(&ctx, path, NULL, 0, &r)) {
            bad++;
            snprintf(why, sizeof why, "%.500s", ctx.msg);
            continue;
        }
        if (!streq(r.output_dir, abs_of(out))) { bad++; snprintf(why, sizeof why, "%s: output_dir %.300s", path, r.output_dir); }
        dt_recipe_free(&r);
    }
    if (d) closedir(d);
    TEST_CHECK("recipe_ready_all_in_recipes", d && n >= 14 && !bad, "%d recipes, %d bad: %s", n, bad, why);
}

// tests/data/recipes/bad/NAME.yaml must fail with DT_EINPUT and a message containing every line of
// NAME.expect (the place as file:line:col, the key path, what was expected, the suggestion).
static void test_bad_corpus(void) {
    DIR *d = opendir(BAD);
    if (!d) { TEST_FAIL("recipe_bad_corpus", "cannot open %s", BAD); return; }
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml")) continue;
        char path[512], expect[512], test[512];
        snprintf(path, sizeof path, BAD "%s", e->d_name);
        snprintf(expect, sizeof expect, BAD "%.*s.expect", (int)(n - 5), e->d_name);
        snprintf(test, sizeof test, "recipe_bad_%.*s", (int)(n - 5), e->d_name);
        count++;
        FILE *f = fopen(expect, "r");
        if (!f) { TEST_FAIL(test, "no %s", expect); continue; }
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        dt_recipe r;
        int rc = dt_recipe_load(&ctx, path, NULL, 0, &r);
        checks c = {0};
        NEED(&c, rc == DT_EINPUT);
        NEED(&c, !r.model.path && !r.data.train.n);   // nothing left behind on failure
        char line[512];
        int lines = 0;
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = 0;
            if (!line[0]) continue;
            lines++;
            if (!strstr(ctx.msg, line) && c.n < sizeof c.why)
                c.n += (size_t)snprintf(c.why + c.n, sizeof c.why - c.n, "missing '%s'; ", line);
        }
        fclose(f);
        NEED(&c, lines > 0);
        TEST_CHECK(test, !c.n, "%sgot rc %d: %s", c.why, rc, ctx.msg);
    }
    closedir(d);
    TEST_CHECK("recipe_bad_corpus_size", count >= 20, "only %d bad recipes", count);
}

typedef struct {
    const char *name, *recipe;
    const char *ov[3];
    const char *fragment;   // NULL: must load
} override_case;

static void test_overrides(void) {
    static const override_case cases[] = {
        {"lr", GOOD "minimal.yaml", {"train.optimizer.lr=3e-4"}, NULL},
        {"new_section", GOOD "minimal.yaml", {"train.lr_scheduler.name=cosine", "method.r=16"}, NULL},
        {"list", GOOD "minimal.yaml", {"data.train=[a.jsonl,b.jsonl]"}, NULL},
        {"null", GOOD "minimal.yaml", {"train.clip_grad_norm=null", "method.init_from="}, NULL},
        {"later_wins", GOOD "minimal.yaml", {"method.r=4", "method.r=32"}, NULL},
        {"replace_section", GOOD "lora-full.yaml", {"train.optimizer={name: sgd, lr: 0.5}"}, NULL},
        {"switch_method", GOOD "prompt-tuning.yaml",
         {"method={name: lora, r: 4}", "train.optimizer={name: adamw, lr: 1e-4}"}, NULL},
        {"bad_number", GOOD "minimal.yaml", {"train.optimizer.lr=abc"},
         "command line override 'train.optimizer.lr=abc': train.optimizer.lr: expected a number > 0, got 'abc'"},
        {"bad_int", GOOD "minimal.yaml", {"method.r=8.5"},
         "command line override 'method.r=8.5': method.r: expected an integer from 1 to 65536, got '8.5'"},
        {"unknown_leaf", GOOD "minimal.yaml", {"train.optimizer.lrr=1"},
         "command line override 'train.optimizer.lrr=1': unknown key 'train.optimizer.lrr'; did you mean `lr`?"},
        {"unknown_section", GOOD "minimal.yaml", {"trian.epochs=2"}, "unknown key 'trian'; did you mean `train`?"},
        {"no_equals", GOOD "minimal.yaml", {"train.epochs"}, "command line override 'train.epochs': expected KEY=VALUE"},
        {"empty_key", GOOD "minimal.yaml", {"=3"}, "expected KEY=VALUE"},
        {"double_dot", GOOD "minimal.yaml", {"train..epochs=3"}, "expected KEY=VALUE"},
        {"syntax", GOOD "minimal.yaml", {"data.train=[a"}, "command line override 'data.train=[a': YAML syntax error"},
        {"required_null", GOOD "minimal.yaml", {"output_dir="},
         "command line override 'output_dir=': output_dir: expected a path, got null"},
        {"exclusive", GOOD "prompt-tuning.yaml", {"data.val_split=0.1"},
         "command line override 'data.val_split=0.1': data.val_split: cannot be combined with data.val "
         "(given at " GOOD "prompt-tuning.yaml:11:8)"},
        {"dtype_stored", GOOD "minimal.yaml", {"hardware.dtype=stored"}, NULL},
        {"dtype_auto_cuda", GOOD "minimal.yaml", {"hardware.device=cuda", "hardware.dtype=auto"}, NULL},
        {"dtype_stored_cuda", GOOD "minimal.yaml", {"hardware.device=cuda", "hardware.dtype=stored"},
         "hardware.dtype: stored is for hardware.device: cpu"},
        {"dtype_typo", GOOD "minimal.yaml", {"hardware.dtype=store"}, "auto, stored, f32, bf16"},
        {"other_method", GOOD "lora-full.yaml", {"method.name=prompt_tuning"},
         GOOD "lora-full.yaml:7:6: method.r, method.alpha, method.dropout, method.target_modules, "
         "method.layers_to_transform, method.use_rslora, method.init_from: not used with method.name: prompt_tuning"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const override_case *t = &cases[i];
        char test[128];
        snprintf(test, sizeof test, "recipe_override_%s", t->name);
        int n = 0;
        while (n < 3 && t->ov[n]) n++;
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        dt_recipe r;
        int rc = dt_recipe_load(&ctx, t->recipe, t->ov, n, &r);
        if (t->fragment) {
            TEST_CHECK(test, rc == DT_EINPUT && strstr(ctx.msg, t->fragment), "rc %d, message: %s", rc, ctx.msg);
            continue;
        }
        if (rc) { TEST_FAIL(test, "%s", ctx.msg); continue; }
        checks c = {0};
        if (!strcmp(t->name, "lr")) NEED(&c, r.train.optimizer.lr == 3e-4 && r.method.r == 8);
        if (!strcmp(t->name, "new_section"))
            NEED(&c, r.train.lr_scheduler.name == DT_SCHED_COSINE && r.method.r == 16 && r.train.epochs == 1);
        if (!strcmp(t->name, "list")) {
            // Override paths are relative to the current folder, not the recipe's.
            NEED(&c, r.data.train.n == 2 && streq(r.data.train.items[0], abs_of("a.jsonl")));
            NEED(&c, streq(r.data.train.items[1], abs_of("b.jsonl")));
        }
        if (!strcmp(t->name, "null")) NEED(&c, r.train.clip_grad_norm == 0 && !r.method.init_from);
        if (!strcmp(t->name, "later_wins")) NEED(&c, r.method.r == 32);
        if (!strcmp(t->name, "replace_section")) {
            NEED(&c, r.train.optimizer.name == DT_OPTIM_SGD && r.train.optimizer.lr == 0.5);
            NEED(&c, r.train.optimizer.momentum == 0 && r.train.optimizer.weight_decay == 0);
        }
        if (!strcmp(t->name, "dtype_stored")) NEED(&c, r.hardware.dtype == DT_DTYPE_STORED);
        // auto on a device is its matmuls' bf16, as when hardware.dtype is not given.
        if (!strcmp(t->name, "dtype_auto_cuda")) NEED(&c, r.hardware.device == DT_DEV_CUDA && r.hardware.dtype == DT_BF16);
        if (!strcmp(t->name, "switch_method"))
            NEED(&c, r.method.name == DT_METHOD_LORA && r.method.r == 4 && r.train.optimizer.lr == 1e-4);
        TEST_CHECK(test, !c.n, "%s", c.why);
        dt_recipe_free(&r);
    }
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

// emit -> load -> emit gives the same text, for every good and ready recipe and for strings that
// would read back as something else if written plain.
static void test_round_trip(const char *tmpdir) {
    static const struct { const char *path, *ov[2]; } cases[] = {
        {GOOD "minimal.yaml", {0}},
        {GOOD "lora-full.yaml", {0}},
        {GOOD "prompt-tuning.yaml", {"method.init_text=\"yes\"", "output_dir=\"123\""}},
        {GOOD "prompt-tuning.yaml", {"method.init_text=\"line one\\nline two: \\\"quoted\\\" # not a comment\""}},
        {GOOD "prompt-tuning.yaml", {"method.init_text='null'", "resume=\"true\""}},
        {"recipes/smollm2-135m-instruct-lora-cpu.yaml", {0}},
        {"recipes/llama-3.2-1b-instruct-lora-cuda.yaml", {0}},
        {"recipes/stories260k-lora.yaml", {0}},
    };
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s/resolved.yaml", tmpdir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char test[64];
        snprintf(test, sizeof test, "recipe_round_trip_%zu", i);
        int n = cases[i].ov[1] ? 2 : cases[i].ov[0] ? 1 : 0;
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        dt_recipe a, b;
        char *t1 = NULL, *t2 = NULL;
        size_t l1, l2;
        if (dt_recipe_load(&ctx, cases[i].path, cases[i].ov, n, &a)) { TEST_FAIL(test, "%s", ctx.msg); continue; }
        int rc = dt_recipe_emit_string(&ctx, &a, &t1, &l1);
        if (!rc) rc = write_text(copy, t1) ? DT_EIO : DT_OK;
        if (!rc) rc = dt_recipe_load(&ctx, copy, NULL, 0, &b);
        if (!rc) {
            rc = dt_recipe_emit_string(&ctx, &b, &t2, &l2);
            if (i == 2) rc = rc ? rc : !streq(b.method.init_text, "yes") || !strstr(b.output_dir, "/123");
            if (i == 3) rc = rc ? rc : !streq(b.method.init_text, "line one\nline two: \"quoted\" # not a comment");
            if (i == 4) rc = rc ? rc : !streq(b.method.init_text, "null") || b.resume != DT_RESUME_PATH;
            dt_recipe_free(&b);
        }
        TEST_CHECK(test, !rc && l1 == l2 && !strcmp(t1, t2), "rc %d (%s); first:\n%s\nsecond:\n%s", rc, ctx.msg,
                   t1 ? t1 : "", t2 ? t2 : "");
        free(t1);
        free(t2);
        dt_recipe_free(&a);
    }
    unlink(copy);
}

// dt_recipe_write: the file appears complete under its name, with no temporary left beside it.
static void test_write(const char *tmpdir) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/written.yaml", tmpdir);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_recipe a, b;
    char *t1 = NULL, *t2 = NULL;
    size_t l1, l2;
    int rc = dt_recipe_load(&ctx, GOOD "lora-full.yaml", NULL, 0, &a);
    if (!rc) rc = dt_recipe_write(&ctx, &a, path);
    if (!rc) rc = dt_recipe_load(&ctx, path, NULL, 0, &b);
    if (!rc) {
        dt_recipe_emit_string(&ctx, &a, &t1, &l1);
        dt_recipe_emit_string(&ctx, &b, &t2, &l2);
        dt_recipe_free(&b);
    }
    int files = 0;
    DIR *d = opendir(tmpdir);
    for (struct dirent *e; d && (e = readdir(d));) files += e->d_name[0] != '.';
    if (d) closedir(d);
    TEST_CHECK("recipe_write", !rc && t1 && t2 && !strcmp(t1, t2) && files == 1, "rc %d (%s), %d files", rc,
               ctx.msg, files);
    // Into a folder that does not exist: bad input (the one atomic-write helper says DT_EINPUT), nothing written.
    char bad[PATH_MAX];
    snprintf(bad, sizeof bad, "%s/missing/r.yaml", tmpdir);
    rc = dt_recipe_write(&ctx, &a, bad);
    TEST_CHECK("recipe_write_missing_dir", rc == DT_EINPUT && strstr(ctx.msg, "missing"), "rc %d: %s", rc, ctx.msg);
    free(t1);
    free(t2);
    dt_recipe_free(&a);
    unlink(path);
}

static void test_scalars_and_paths(void) {
    static const struct { const char *s; bool ok; double v; } floats[] = {
        {"1e-5", true, 1e-5}, {"2E-4", true, 2e-4}, {".5", true, 0.5}, {"5.", true, 5}, {"+3", true, 3},
        {"-0.25e+1", true, -2.5}, {"1e", false, 0}, {"e5", false, 0}, {".", false, 0}, {"0x10", false, 0},
        {"inf", false, 0}, {".inf", false, 0}, {"nan", false, 0}, {"1e999", false, 0}, {"1_000", false, 0},
        {"", false, 0}, {"1.5.2", false, 0}, {" 1", false, 0}};
    int bad = 0;
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        double v = 0;
        bool ok = dt_rscalar_float(floats[i].s, &v);
        if (ok != floats[i].ok || (ok && v != floats[i].v)) { printf("  float '%s'\n", floats[i].s); bad++; }
    }
    static const struct { const char *s; bool ok; int64_t v; } ints[] = {
        {"0", true, 0}, {"42", true, 42}, {"-7", true, -7}, {"+7", true, 7}, {"08", false, 0}, {"8.0", false, 0},
        {"1e3", false, 0}, {"9223372036854775807", true, INT64_MAX}, {"9223372036854775808", false, 0}, {"", false, 0}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = 0;
        bool ok = dt_rscalar_int(ints[i].s, &v);
        if (ok != ints[i].ok || (ok && v != ints[i].v)) { printf("  int '%s'\n", ints[i].s); bad++; }
    }
    bool b;
    if (!dt_rscalar_bool("Off", &b) || b || !dt_rscalar_bool("YES", &b) || !b || dt_rscalar_bool("y", &b) ||
        dt_rscalar_bool("tRue", &b)) { printf("  bool\n"); bad++; }
    TEST_CHECK("recipe_scalars", !bad, "%d wrong", bad);

    static const char *const paths[][3] = {
        {"/a/b", "../c", "/a/c"}, {"/a", "/x/./y//z/..", "/x/y"}, {"/", "..", "/"}, {"/a/b", "./", "/a/b"},
        {"/a/b", "../../../x", "/x"}, {"/a", "b/../../..", "/"}, {"/a", "c.d/e", "/a/c.d/e"}};
    bad = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char *p = dt_rpath_resolve(paths[i][0], paths[i][1]);
        if (!streq(p, paths[i][2])) { printf("  path %s + %s = %s\n", paths[i][0], paths[i][1], p); bad++; }
        free(p);
    }
    TEST_CHECK("recipe_paths", !bad, "%d wrong", bad);

    const char *keys[] = {"epochs", "max_steps", "batch_size", "gradient_accumulation_steps"};
    const char *s1 = dt_rsuggest("gradient_acumulation_step", keys, 4), *s2 = dt_rsuggest("max_stpes", keys, 4);
    const char *s3 = dt_rsuggest("learning_rate", keys, 4), *s4 = dt_rsuggest("EPOCHS", keys, 4);
    TEST_CHECK("recipe_suggest", streq(s1, "gradient_accumulation_steps") && streq(s2, "max_steps") && !s3 &&
               streq(s4, "epochs"), "%s %s %s %s", s1, s2, s3 ? s3 : "(none)", s4);
}

// Runs the binary; returns its exit status and fills out/err with the start of its output.
static int run(const char *tmpdir, const char *args, char *out, size_t out_size, char *err, size_t err_size) {
    char cmd[3 * PATH_MAX], o[PATH_MAX], e[PATH_MAX];
    snprintf(o, sizeof o, "%s/stdout", tmpdir);
    snprintf(e, sizeof e, "%s/stderr", tmpdir);
    snprintf(cmd, sizeof cmd, "./deltatune validate %s >%s 2>%s", args, o, e);
    int st = system(cmd);
    const char *names[2] = {o, e};
    char *bufs[2] = {out, err};
    size_t sizes[2] = {out_size, err_size};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(names[i], "r");
        size_t n = f ? fread(bufs[i], 1, sizes[i] - 1, f) : 0;
        bufs[i][n] = 0;
        if (f) fclose(f);
        unlink(names[i]);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_binary(const char *tmpdir) {
    if (access("./deltatune", X_OK)) { TEST_SKIP("recipe_validate_binary", "./deltatune not built"); return; }
    char out[8192], err[2048];
    int rc = run(tmpdir, BAD "lr-not-a-number.yaml", out, sizeof out, err, sizeof err);
    TEST_CHECK("recipe_validate_exit2_bad_file", rc == 2 && !out[0] &&
               strstr(err, "deltatune validate: " BAD "lr-not-a-number.yaml:8:9: train.optimizer.lr: expected"),
               "rc %d, stdout '%s', stderr '%s'", rc, out, err);
    rc = run(tmpdir, GOOD "minimal.yaml method.r=8.5", out, sizeof out, err, sizeof err);
    TEST_CHECK("recipe_validate_exit2_override", rc == 2 && !out[0] &&
               strstr(err, "command line override 'method.r=8.5'"), "rc %d, stderr '%s'", rc, err);
    rc = run(tmpdir, "tests/data/recipes/no-such-file.yaml", out, sizeof out, err, sizeof err);
    TEST_CHECK("recipe_validate_exit2_missing", rc == 2 && strstr(err, "no-such-file.yaml: cannot open"),
               "rc %d, stderr '%s'", rc, err);
    rc = run(tmpdir, "recipes", out, sizeof out, err, sizeof err);
    TEST_CHECK("recipe_validate_exit2_folder", rc == 2 && strstr(err, "recipes: is a folder"), "rc %d, stderr '%s'",
               rc, err);
    rc = run(tmpdir, "", out, sizeof out, err, sizeof err);
    TEST_CHECK("recipe_validate_exit2_usage", rc == 2 && strstr(err, "usage:"), "rc %d, stderr '%s'", rc, err);
    rc = run(tmpdir, "recipes/stories260k-lora.yaml train.max_steps=50", out, sizeof out, err, sizeof err);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "output_dir: %s/runs/stories260k-lora\n", cwd);
    TEST_CHECK("recipe_validate_exit0", rc == 0 && !err[0] && strstr(out, "  max_steps: 50\n") && strstr(out, want),
               "rc %d, stderr '%s', stdout '%s'", rc, err, out);
}

int main(void) {
    if (!getcwd(cwd, sizeof cwd)) { TEST_FAIL("recipe_setup", "getcwd"); TEST_EXIT(); }
    char tmpdir[] = "/tmp/dt_test_recipe.XXXXXX";
    if (!mkdtemp(tmpdir)) { TEST_FAIL("recipe_setup", "mkdtemp"); TEST_EXIT(); }
    test_minimal_defaults();
    test_lora_full();
    test_prompt_tuning();
    test_ready_recipes();
    test_bad_corpus();
    test_overrides();
    test_round_trip(tmpdir);
    test_write(tmpdir);
    test_scalars_and_paths();
    test_binary(tmpdir);
    rmdir(tmpdir);
    TEST_EXIT();
}
