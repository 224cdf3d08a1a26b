// Where the files that go with a model are, by the one rule that train, eval, generate and preview share.
#ifndef DT_MODEL_FILES_H
#define DT_MODEL_FILES_H

// The tokenizer that belongs to a model: the model folder itself, or the folder holding a model file
// (a llama2.c .bin, a .gguf or a .safetensors file is a model, never its own tokenizer). malloc'd; NULL
// when out of memory.
char *dt_model_tokenizer_path(const char *model_path);

#endif
