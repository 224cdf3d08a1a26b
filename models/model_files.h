// Where the files that go with a model are, by the one rule that train, eval, generate and preview share.
#ifndef DT_MODEL_FILES_H
#define DT_MODEL_FILES_H
#include <stdbool.h>
#include <stdint.h>
#include "autograd/context.h"

// The folder of a model: the model path itself when it is a folder, or the folder holding a model file
// (a llama2.c .bin, a .gguf or a .safetensors file): where config.json, generation_config.json and the
// tokenizer are looked for. malloc'd; NULL when out of memory.
char *dt_model_dir(const char *model_path);
// Where a model's tokenizer is when none is named: a .gguf file carries its own (tokenizer.ggml.*
// metadata), so it is the file itself; for any other model, its folder (dt_model_dir). By the name
// alone, like dt_model_dir: validating a recipe must not need the files. malloc'd; NULL when out of memory.
char *dt_model_tokenizer_path(const char *model_path);
// Whether a model path names a GGUF file (by its extension).
bool dt_model_path_is_gguf(const char *model_path);

// The ids that end generation: generation_config.json's eos_token_id (a number or a list) in the
// model's folder, when there is one. Appends to ids (at most max; *n counts them, duplicates skipped).
// A generation_config.json that is not JSON is DT_EINPUT naming it; a missing one is no error.
int dt_model_generation_eos(dt_ctx *ctx, const char *model_path, int32_t *ids, int max, int *n);

#endif
