#include "tools/cli_checks.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "datasets/jsonl.h"
#include "models/weights.h"

int dt_check_vocab(dt_ctx *ctx, const dt_tokenizer *tok, const char *tok_path, int64_t model_vocab,
                   const char *model_path) {
    int64_t n = dt_tokenizer_vocab_size(tok);
    if (n <= model_vocab) return DT_OK;
    return dt_fail(ctx, DT_EINPUT, "the tokenizer %s has ids up to %lld but the model %s has only %lld token "
                   "embeddings (vocab_size): they do not belong together; give the model's own tokenizer",
                   tok_path, (long long)n - 1, model_path, (long long)model_vocab);
}

int dt_check_vocab_of(dt_ctx *ctx, const dt_tokenizer *tok, const char *tok_path, const char *model_path) {
    dt_model_config cfg;
    dt_weights *w = NULL;
    int rc = dt_weights_open(ctx, model_path, &cfg, &w);
    dt_weights_close(w);
    return rc ? rc : dt_check_vocab(ctx, tok, tok_path, cfg.vocab_size, model_path);
}

int dt_data_format_of(dt_ctx *ctx, const char *path, const char *format, dt_rec_format *out) {
    int rc = dt_rec_format_parse(ctx, format, out);
    if (rc || *out != DT_FMT_AUTO) return rc;
    dt_jsonl *r;
    if ((rc = dt_jsonl_open(ctx, path, &r))) return rc;
    const char *line;
    size_t len;
    int64_t lineno = 0;
    rc = dt_jsonl_next(ctx, r, &line, &len, &lineno);
    if (!rc && !line) rc = dt_fail(ctx, DT_EINPUT, "%s: the file is empty", path);
    if (!rc) {
        json_error_t err;
        json_t *rec = json_loadb(line, len, JSON_ALLOW_NUL, &err); // as the loader reads it (dataset.c)
        if (!rec) rc = dt_fail(ctx, DT_EINPUT, "%s:%lld: not JSON: %s", path, (long long)lineno, err.text);
        else if ((rc = dt_rec_format_detect(ctx, rec, out))) dt_prefix(ctx, rc, "%s:%lld: ", path, (long long)lineno);
        json_decref(rec);
    }
    dt_jsonl_close(r);
    return rc;
}

int dt_data_needs_tokenizer(dt_ctx *ctx, const char *const *paths, int n, const char *format, bool *needs) {
    *needs = false;
    for (int i = 0; i < n && !*needs; i++) {
        dt_rec_format f;
        int rc = dt_data_format_of(ctx, paths[i], format, &f);
        if (rc) return rc;
        *needs = f != DT_FMT_TOKENS;
    }
    return DT_OK;
}

int dt_recipe_data_needs_tokenizer(dt_ctx *ctx, const dt_recipe *r, bool *needs) {
    const char *fmt = dt_recipe_format_name(r->data.format);
    int rc = dt_data_needs_tokenizer(ctx, (const char *const *)r->data.train.items, r->data.train.n, fmt, needs);
    if (!rc && !*needs) rc = dt_data_needs_tokenizer(ctx, (const char *const *)r->data.val.items, r->data.val.n, fmt, needs);
    return rc;
}

int dt_check_writable_dir(dt_ctx *ctx, const char *dir, const char *key) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return dt_fail(ctx, DT_EINPUT, "%s: %s: path too long", key, dir);
    // Walk up to the nearest part of the path that exists: that is where the first folder gets created.
    for (;;) {
        struct stat sb;
        if (stat(p, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) return dt_fail(ctx, DT_EINPUT, "%s: %s: %s is a file, not a folder", key, dir, p);
            if (access(p, W_OK | X_OK)) return dt_fail(ctx, DT_EINPUT, "%s: %s: cannot write in %s: %s", key, dir, p, strerror(errno));
            return DT_OK;
        }
        // ENOTDIR: a part of the path is a file; walking up finds it and says so.
        if (errno != ENOENT && errno != ENOTDIR) return dt_fail(ctx, DT_EINPUT, "%s: %s: %s", key, p, strerror(errno));
        char *slash = strrchr(p, '/');
        if (!slash) { snprintf(p, sizeof p, "."); continue; }
        if (slash == p) { p[1] = 0; continue; }
        *slash = 0;
    }
}
