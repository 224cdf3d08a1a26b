// `deltatune validate RECIPE [KEY=VALUE ...]`: checks a recipe (with overrides) and prints it fully
// resolved. Nothing is written; a bad recipe exits 2 with one message naming the place and the key.
#include <stdio.h>
#include <string.h>
#include "recipes/recipe.h"
#include "tools/commands.h"

static void usage(FILE *f) {
    fprintf(f, "usage: deltatune validate RECIPE.yaml [KEY=VALUE ...]\n"
               "Checks the recipe and prints it with every default filled in and every path absolute.\n"
               "KEY=VALUE overrides one key, e.g. train.optimizer.lr=3e-4 data.train=[a.jsonl,b.jsonl]\n"
               "(keys are documented in recipes/README.md).\n");
}

int cmd_validate(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-') {
        usage(stderr);
        return 2;
    }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    ctx.warn = dt_cli_warn;
    dt_recipe r;
    int rc = dt_recipe_load(&ctx, argv[1], (const char *const *)argv + 2, argc - 2, &r);
    if (rc) return dt_cli_fail("validate", &ctx, rc);
    rc = dt_recipe_emit(&ctx, &r, stdout);
    dt_recipe_free(&r);
    if (rc) return dt_cli_fail("validate", &ctx, rc);
    return fflush(stdout) ? 1 : 0;
}
