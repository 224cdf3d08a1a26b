// `deltatune validate RECIPE [KEY=VALUE ...]`: checks a recipe (with overrides) and prints it fully
// resolved. Nothing is written; a bad recipe exits 2 with one message naming the place and the key.
#include <stdio.h>
#include <string.h>
#include "recipes/recipe.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"

int cmd_validate(int argc, char **argv) {
    char *pos[65];
    int n_pos = 0;
    const dt_cli cli = {"validate", "RECIPE.yaml [dotted.key=value ...]",
                        "Checks the recipe and prints it with every default filled in and every path absolute.",
                        NULL, 0, "RECIPE.yaml: the recipe (recipes/README.md documents every key);\n"
                        "dotted.key=value overrides one key, e.g. train.optimizer.lr=3e-4 data.train=[a.jsonl,b.jsonl]."};
    int st = dt_cli_parse(&cli, argc, argv, pos, &n_pos, 65);
    if (st >= 0) return st;
    if (n_pos < 1) return dt_cli_bad(&cli, "a recipe is required");
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
    dt_recipe r;
    int rc = dt_recipe_load(&ctx, pos[0], (const char *const *)pos + 1, n_pos - 1, &r);
    if (rc) return dt_cli_fail("validate", &ctx, rc);
    rc = dt_recipe_emit(&ctx, &r, stdout);
    dt_recipe_free(&r);
    if (rc) return dt_cli_fail("validate", &ctx, rc);
    return fflush(stdout) ? 1 : 0;
}
