// Adapters in Hugging Face PEFT's format: a folder with adapter_config.json and
// adapter_model.safetensors. Written exactly as PEFT writes them, read back for init_from, resume,
// merge and export.
#ifndef DT_PEFT_IO_H
#define DT_PEFT_IO_H
#include "peft/adapter.h"

// Reads dir/adapter_config.json and dir/adapter_model.safetensors for model m. F32/F16/BF16 tensors;
// unknown config keys are ignored with a warning; rank_pattern / alpha_pattern give modules their own
// rank and alpha as PEFT does (peft/lora_pattern.h; a bad pattern or value is DT_EINPUT naming the file,
// the key and the pattern); a missing tensor, an extra one, or a shape that does not fit the base model
// and those ranks is DT_EINPUT naming the file and the tensor.
int dt_adapter_load(dt_ctx *ctx, const char *dir, const dt_llama *m, dt_adapter **out);
// PEFT's save_embedding_layers: with embed_tokens or lm_head in target_modules, PEFT's save_pretrained
// also stores the base layer's weight ("base_model.model.model.embed_tokens.base_layer.weight",
// "base_model.model.lm_head.base_layer.weight"), and its loader puts that back into the model. The HF name
// of the model tensor such a key copies (the embedding for a tied head), or NULL for any other key.
const char *dt_peft_base_copy_of(const char *key, const dt_model_config *c);
// Such a copy (file, tensor t) must equal the base's tensor `base` (same shape, f32 values; rows of any
// storage type): a resized or retrained embedding cannot be applied here. DT_EINPUT naming both otherwise.
int dt_peft_check_base_copy(dt_ctx *ctx, const char *file, const dt_st_tensor *t, const dt_tensor *base);
// Writes both files into dir (created if needed), each atomically; a LoRA adapter's rank_pattern /
// alpha_pattern as they were read (same keys, values and order; {} when there are none).
int dt_adapter_save(dt_ctx *ctx, const dt_adapter *a, const dt_llama *m, const char *dir);

#endif
