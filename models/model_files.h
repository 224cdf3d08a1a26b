// Where the files that go with a model are, by the one rule that train, eval, generate and preview share.
#ifndef DT_MODEL_FILES_H
#define DT_MODEL_FILES_H
#include <stdint.h>
#include "autograd/context.h"

// The folder of a model: the model path itself when it is a folder, or the folder holding a model file
// (a llama2.c .bin, a .gguf or a .safetensors file). Its tokenizer is looked for there: a model file is
// never its own tokenizer. malloc'd; NULL when out of memory.
char *dt_model_dir(const char *model_path);
static inline char *dt_model_tokenizer_path(const char *model_path) { return dt_model_dir(model_path); }

// The ids that end generation: generation_config.json's eos_token_id (a number or a list) in the
// model's folder, when there is one. Appends to ids (at most max; *n counts them, duplicates skipped).
// A generation_config.json that is not JSON is DT_EINPUT naming it; a missing one is no error.
int dt_model_generation_eos(dt_ctx *ctx, const char *model_path, int32_t *ids, int max, int *n);

#endif
