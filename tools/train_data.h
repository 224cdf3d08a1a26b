// The trainer's view of its data: batch `index` of epoch `epoch` (the order is a deterministic
// function of the seed and the epoch, so a resumed run sees the same batches), and the validation batches.
#ifndef DT_TRAIN_DATA_H
#define DT_TRAIN_DATA_H
#include "models/llama.h"
#include "recipes/recipe.h"
#include "datasets/tokenizer.h"

typedef struct dt_train_data {
    int64_t n_batches, n_val_batches; // of epoch 0 (with packing, other epochs may differ slightly)
    void *impl;
} dt_train_data;

int dt_train_data_open(dt_ctx *ctx, dt_train_data *d, const dt_recipe *r, const dt_tokenizer *tok,
                       const dt_model_config *cfg);
// Batches in this epoch, or -1 on error.
int64_t dt_train_data_epoch_batches(dt_ctx *ctx, dt_train_data *d, int64_t epoch);
// Batch `index` of `epoch` into buffer `slot` (one slot per micro-batch of a step stays valid together).
int dt_train_data_batch(dt_ctx *ctx, dt_train_data *d, int64_t epoch, int64_t index, int slot, dt_batch *out);
int64_t dt_train_data_val_batches(const dt_train_data *d);
int dt_train_data_val_batch(dt_ctx *ctx, dt_train_data *d, int64_t index, dt_batch *out);
void dt_train_data_close(dt_train_data *d);

#endif
