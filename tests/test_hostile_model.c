// Model folders a user might download, crafted to break the loader: each is refused with a message
// naming the problem, never loaded wrongly or crashed on (run under `make test-asan` for the memory
// errors these once caused). The weights are the golden llama_gqa model's; only config.json changes.
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "models/llama.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];

// A model folder tmp/name whose config.json is the golden one with each key of the NULL-terminated
// (key, JSON value) pairs given that value, and whose weights are the golden file.
static const char *model_with(const char *name, ...) {
    static char dir[256];
    char path[512], src[PATH_MAX], quoted[128];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    mkdir(dir, 0777);
    char *cfg = tf_slurp("tests/golden/llama_gqa/config.json", NULL);
    if (!cfg || !realpath("tests/golden/llama_gqa/model.safetensors", src)) { free(cfg); return NULL; }
    va_list ap;
    va_start(ap, name);
    const char *key, *value;
    while (cfg && (key = va_arg(ap, const char *))) {
        value = va_arg(ap, const char *);
        snprintf(quoted, sizeof quoted, "\"%s\": ", key);
        char *at = strstr(cfg, quoted);
        char *end = at ? strpbrk(at + strlen(quoted), ",\n}") : NULL;
        char *next = NULL;
        if (end && asprintf(&next, "%.*s%s%s", (int)(at - cfg + strlen(quoted)), cfg, value, end) < 0) next = NULL;
        free(cfg);
        cfg = next;
    }
    va_end(ap);
    if (!cfg) return NULL;
    snprintf(path, sizeof path, "%s/config.json", dir);
    bool ok = tf_write(path, cfg, strlen(cfg));
    free(cfg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    return ok && symlink(src, path) == 0 ? dir : NULL;
}

// Loads dir; true when it fails with DT_EINPUT and a message holding every needle.
static bool refused(const char *dir, const char *n1, const char *n2, char *msg, size_t n) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_llama *m = NULL;
    int rc = dir ? dt_llama_load(&ctx, dir, dt_backend_cpu(), &m) : -1;
    snprintf(msg, n, "rc %d: %s", rc, ctx.msg);
    dt_llama_free(m);
    return rc == DT_EINPUT && strstr(ctx.msg, n1) && (!n2 || strstr(ctx.msg, n2));
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/dt_hostile_model_%d", (int)getpid());
    mkdir(tmp, 0777);
    char msg[4400];

    // The golden folder itself loads (so the refusals below are about the edit).
    TEST_CHECK("hostile_model_baseline_loads", !refused(model_with("ok", NULL), "", NULL, msg, sizeof msg) &&
                                                   strstr(msg, "rc 0"), "%s", msg);

    // One layer declared, two in the file: the second layer's tensors are named, not silently dropped.
    TEST_CHECK("config_fewer_layers_names_unused_tensors",
               refused(model_with("fewer", "num_hidden_layers", "1", NULL), "model.layers.1.", "not used", msg, sizeof msg),
               "%s", msg);

    // head_dim too large: the message reads the config, which must still be alive (a use-after-free before).
    TEST_CHECK("config_head_dim_too_large_message",
               refused(model_with("hd", "vocab_size", "128, \"head_dim\": 1024", NULL), "head_dim 1024", NULL, msg, sizeof msg),
               "%s", msg);

    // Sizes whose products wrap 64 bits (or describe an absurd model) are refused before any allocation.
    TEST_CHECK("config_size_overflow_refused",
               refused(model_with("wrap", "intermediate_size", "4000000", "num_hidden_layers", "65536", "hidden_size",
                                  "1048576", "num_attention_heads", "65536", "num_key_value_heads", "65536", NULL),
                       "not a real model", NULL, msg, sizeof msg),
               "%s", msg);
    TEST_CHECK("config_dimension_bound",
               refused(model_with("huge", "vocab_size", "2147483647", NULL), "vocab_size is 2147483647, expected at most", NULL, msg, sizeof msg),
               "%s", msg);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!dt_test_failures) (void)!system(cmd);
    TEST_EXIT();
}
