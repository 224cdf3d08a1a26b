// deltatune preview RECIPE.yaml [-n N] [key=value ...]: the first examples as the model will see them,
// with the trained tokens marked, so masking can be checked before a long run.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "datasets/dataset.h"
#include "recipes/recipe.h"
#include "tools/cli_checks.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"

int cmd_preview(int argc, char **argv) {
    int64_t n = 3;
    char *pos[65];
    int n_pos = 0;
    const dt_opt opts[] = {DT_O_INT("-n", "N", "how many examples to print (default 3)", &n, 0, 1e9)};
    const dt_cli cli = {"preview", "RECIPE.yaml [-n N] [dotted.key=value ...]",
                        "Prints the first training examples as the model will see them, the trained tokens marked\n"
                        "(green on a terminal, inside «…» otherwise), so masking can be checked before a long run.",
                        opts, 1, "RECIPE.yaml: the recipe (recipes/README.md); dotted.key=value overrides a key, as for train."};
    int st = dt_cli_parse(&cli, argc, argv, pos, &n_pos, 65);
    if (st >= 0) return st;
    if (n_pos < 1) return dt_cli_bad(&cli, "a recipe is required");
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
    dt_recipe r;
    int rc = dt_recipe_load(&ctx, pos[0], (const char *const *)pos + 1, n_pos - 1, &r);
    if (rc) return dt_cli_fail("preview", &ctx, rc);
    dt_tokenizer *tok = NULL;
    dt_dataset *ds = NULL;
    // Token-id data needs no tokenizer, but when the model has one its text is easier to check.
    bool need_tok;
    rc = dt_recipe_data_needs_tokenizer(&ctx, &r, &need_tok);
    if (!rc && need_tok) {
        rc = dt_tokenizer_load(&ctx, r.model.tokenizer, &tok);
    } else if (!rc && dt_tokenizer_load(&ctx, r.model.tokenizer, &tok)) {
        dt_warn(&ctx, "showing token ids: %s", ctx.msg);
        tok = NULL;
    }
    if (!rc && tok) rc = dt_check_vocab_of(&ctx, tok, r.model.tokenizer, r.model.path);
    dt_dataset_opts o = {dt_recipe_format_name(r.data.format), dt_recipe_template_name(r.data.chat_template),
                         r.data.train_on_prompt, r.data.skip_bad_lines, r.data.max_seq_len, 0}; // no model loaded
    if (!rc) rc = dt_dataset_load(&ctx, (const char *const *)r.data.train.items, (size_t)r.data.train.n, tok, &o, &ds);
    bool ansi = isatty(STDOUT_FILENO);
    for (size_t i = 0; !rc && i < (size_t)n && i < dt_dataset_size(ds); i++) {
        if (tok) {
            rc = dt_dataset_render_example_styled(&ctx, ds, tok, i, ansi, stdout);
        } else { // pre-tokenized data without a tokenizer: the ids, trained ones inside «…»
            const int32_t *ids, *labels;
            int64_t len = dt_dataset_example(ds, i, &ids, &labels);
            printf("example %zu: %lld tokens\n", i, (long long)len);
            bool in = false;
            for (int64_t t = 0; t < len; t++) {
                bool trained = labels[t] != -100;
                printf("%s%s%d", t ? " " : "", trained && !in ? "«" : (!trained && in ? "» " : ""), ids[t]);
                in = trained;
            }
            printf("%s\n", in ? "»" : "");
        }
        fputc('\n', stdout);
    }
    dt_dataset_free(ds);
    dt_tokenizer_free(tok);
    dt_recipe_free(&r);
    return rc ? dt_cli_fail("preview", &ctx, rc) : 0;
}
