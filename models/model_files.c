#include "models/model_files.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

char *dt_model_tokenizer_path(const char *model_path) {
    bool file = ends_with(model_path, ".bin") || ends_with(model_path, ".gguf") || ends_with(model_path, ".safetensors");
    if (!file) return strdup(model_path);
    const char *slash = strrchr(model_path, '/');
    if (!slash) return strdup(".");
    if (slash == model_path) return strdup("/");
    return strndup(model_path, (size_t)(slash - model_path));
}
