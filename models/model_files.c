#include "models/model_files.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

char *dt_model_dir(const char *model_path) {
    bool file = ends_with(model_path, ".bin") || ends_with(model_path, ".gguf") || ends_with(model_path, ".safetensors");
    if (!file) return strdup(model_path);
    const char *slash = strrchr(model_path, '/');
    if (!slash) return strdup(".");
    if (slash == model_path) return strdup("/");
    return strndup(model_path, (size_t)(slash - model_path));
}

bool dt_model_path_is_gguf(const char *model_path) { return ends_with(model_path, ".gguf"); }

char *dt_model_tokenizer_path(const char *model_path) {
    return dt_model_path_is_gguf(model_path) ? strdup(model_path) : dt_model_dir(model_path);
}

static void add_id(json_int_t v, int32_t *ids, int max, int *n) {
    if (v < 0 || v > INT32_MAX) return;
    for (int i = 0; i < *n; i++) if (ids[i] == (int32_t)v) return;
    if (*n < max) ids[(*n)++] = (int32_t)v;
}

int dt_model_generation_eos(dt_ctx *ctx, const char *model_path, int32_t *ids, int max, int *n) {
    char *dir = dt_model_dir(model_path);
    if (!dir) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    free(dir);
    if (access(path, F_OK)) return DT_OK;
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) return dt_fail(ctx, DT_EINPUT, "%s:%d: not JSON: %s", path, err.line, err.text);
    json_t *e = json_object_get(j, "eos_token_id");
    size_t i;
    json_t *v;
    if (json_is_integer(e)) add_id(json_integer_value(e), ids, max, n);
    else json_array_foreach(e, i, v) if (json_is_integer(v)) add_id(json_integer_value(v), ids, max, n);
    json_decref(j);
    return DT_OK;
}
