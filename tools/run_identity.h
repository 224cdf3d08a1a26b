// Which run a checkpoint belongs to. A resumed run must continue its own checkpoints, never those of an
// earlier run into the same output_dir with other settings or other data (it would silently return
// that run's weights). A checkpoint records two fingerprints: a hash of the recipe settings that shape
// the trained weights, and a hash of the bytes of the training and validation data files.
#ifndef DT_RUN_IDENTITY_H
#define DT_RUN_IDENTITY_H
#include <stdbool.h>
#include "optim/checkpoint.h"
#include "recipes/recipe.h"

int dt_run_identity(dt_ctx *ctx, const dt_recipe *r, dt_run_id *id);

// DT_OK when the checkpoint in ckpt_dir (whose state s was just loaded) was written by this run,
// else DT_EINPUT with the reason (recipe or data changed).
int dt_run_identity_check(dt_ctx *ctx, const char *ckpt_dir, const dt_run_id *want, const dt_run_id *got);

// A fresh (not resumed) run into output_dir: DT_EINPUT when output_dir/checkpoints holds checkpoints
// unless overwrite, in which case they are removed first.
int dt_run_fresh_output(dt_ctx *ctx, const char *output_dir, bool overwrite);

#endif
