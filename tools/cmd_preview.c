// deltatune preview RECIPE.yaml [-n N] [key=value ...]: the first examples as the model will see them,
// with the trained tokens marked, so masking can be checked before a long run.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "datasets/dataset.h"
#include "recipes/recipe.h"
#include "tools/commands.h"

int cmd_preview(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: deltatune preview RECIPE.yaml [-n N] [dotted.key=value ...]\n"); return 2; }
    int n = 3;
    const char *over[64];
    int n_over = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoi(argv[++i]);
        else if (n_over < 64) over[n_over++] = argv[i];
    }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    ctx.warn = dt_cli_warn;
    dt_recipe r;
    int rc = dt_recipe_load(&ctx, argv[1], over, n_over, &r);
    if (rc) return dt_cli_fail("preview", &ctx, rc);
    dt_tokenizer *tok = NULL;
    dt_dataset *ds = NULL;
    if (r.data.format != DT_FORMAT_TOKENS) rc = dt_tokenizer_load(&ctx, r.model.tokenizer, &tok);
    dt_dataset_opts o = {dt_recipe_format_name(r.data.format), dt_recipe_template_name(r.data.chat_template),
                         r.data.train_on_prompt, r.data.skip_bad_lines, r.data.max_seq_len};
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
