// Recipes: the YAML file (every key, type, range and cross-key rule, typo suggestions) FUZZ_SEP
// dotted.key=value overrides, one per line.
#include "recipes/recipe.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fuzz_part parts[2];
    int k = fuzz_split(data, n, parts, 2);
    char path[128];
    fuzz_write("recipe.yaml", parts[0].p, parts[0].n, path, sizeof path);
    // Overrides: the lines of the second part (NUL-terminated copies).
    char *ov_text = k > 1 ? strndup((const char *)parts[1].p, parts[1].n) : NULL;
    const char *ov[16];
    int n_ov = 0;
    for (char *save = NULL, *line = ov_text ? strtok_r(ov_text, "\n", &save) : NULL; line && n_ov < 16;
         line = strtok_r(NULL, "\n", &save))
        ov[n_ov++] = line;
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_recipe r;
    if (!dt_recipe_load(&ctx, path, ov, n_ov, &r)) {
        char *text;
        size_t len;
        if (!dt_recipe_emit_string(&ctx, &r, &text, &len)) free(text);
        dt_recipe_free(&r);
    }
    free(ov_text);
    return 0;
}
