// The adapters of the methods beyond LoRA and prompt tuning, made from a recipe's `method` section.
#ifndef DT_TRAIN_METHOD_H
#define DT_TRAIN_METHOD_H
#include "models/llama.h"
#include "peft/adapter.h"
#include "optim/optim.h"
#include "recipes/recipe.h"

// A fresh adapter of r->method.name (IA3, bottleneck, prefix tuning) for model m. Bad keys: DT_EINPUT naming the recipe and key.
int dt_train_method_adapter(dt_ctx *ctx, const dt_recipe *r, const dt_llama *m, dt_adapter **out);
// LoRA+ (train.optimizer.loraplus_lr_ratio): the lora_B elements of a train at lr * ratio. Nothing
// when the ratio is unset.
int dt_train_lr_mult(dt_ctx *ctx, const dt_recipe *r, const dt_adapter *a, dt_optimizer *o);

#endif
