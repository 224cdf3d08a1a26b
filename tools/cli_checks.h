// Checks the commands make before they load a model or write anything, so bad input fails fast with
// exit 2 and a message naming the files involved.
#ifndef DT_CLI_CHECKS_H
#define DT_CLI_CHECKS_H
#include <stdbool.h>
#include "autograd/context.h"
#include "datasets/formats.h"
#include "datasets/tokenizer.h"
#include "recipes/recipe.h"

// DT_EINPUT naming both files when the tokenizer (read from tok_path) has ids the model (model_path,
// model_vocab rows of embeddings) has no row for. A tokenizer smaller than the model's vocabulary is
// normal (the embedding matrix is often padded).
int dt_check_vocab(dt_ctx *ctx, const dt_tokenizer *tok, const char *tok_path, int64_t model_vocab,
                   const char *model_path);
// The same, reading only the model's header or config.json (for commands that do not load the weights).
int dt_check_vocab_of(dt_ctx *ctx, const dt_tokenizer *tok, const char *tok_path, const char *model_path);
// The record format of data file `path` when `format` is "auto" (from its first record), else `format`
// itself; so a command can tell whether it needs a tokenizer before loading one. A folder or an
// unreadable file is DT_EINPUT.
int dt_data_format_of(dt_ctx *ctx, const char *path, const char *format, dt_rec_format *out);
// Whether data in `format` read from these files needs a tokenizer: false only when every file holds
// token ids (format "tokens", or "auto" and each file's first record is token ids).
int dt_data_needs_tokenizer(dt_ctx *ctx, const char *const *paths, int n, const char *format, bool *needs);
// The same for a recipe's data.train and data.val files in its data.format.
int dt_recipe_data_needs_tokenizer(dt_ctx *ctx, const dt_recipe *r, bool *needs);
// Checks that `dir` can be created (or is a writable folder) without creating it: the nearest existing
// ancestor must be a writable folder. DT_EINPUT otherwise, naming `key` (the recipe key or option).
int dt_check_writable_dir(dt_ctx *ctx, const char *dir, const char *key);

#endif
