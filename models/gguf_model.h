// A llama.cpp model file (GGUF) as a training base: the config from its metadata (architectures
// llama — which covers Mistral and SmolLM —, qwen2, qwen3) and its tensors under Hugging Face names,
// in their stored types (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K; any other type
// is refused naming file and tensor). Quantized tensors are views into the memory-mapped file; for
// "llama" the q/k rows, which the converter interleaved for llama.cpp's adjacent-pair RoPE, are put back
// in Hugging Face's rotate-half order (whole rows move, so quantized rows are copied unchanged).
#ifndef DT_GGUF_MODEL_H
#define DT_GGUF_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "models/config.h"
#include "models/gguf.h"
#include "models/safetensors.h"

typedef struct dt_gguf_model dt_gguf_model;

int dt_gguf_model_open(dt_ctx *ctx, const char *path, dt_model_config *cfg, dt_gguf_model **out);
void dt_gguf_model_close(dt_gguf_model *m); // NULL is fine
size_t dt_gguf_model_count(const dt_gguf_model *m);
const dt_st_tensor *dt_gguf_model_at(const dt_gguf_model *m, size_t i);
const dt_st_tensor *dt_gguf_model_find(const dt_gguf_model *m, const char *hf_name); // NULL when absent
// The GGUF tensor behind entry i (its llama.cpp name and ggml type).
const dt_gguf_tensor *dt_gguf_model_source(const dt_gguf_model *m, size_t i);
const dt_gguf_file *dt_gguf_model_file(const dt_gguf_model *m);
// llama3 RoPE: the converter's rope_freqs.weight (head_dim/2 factors that divide the frequencies), or NULL.
const float *dt_gguf_model_rope_factors(const dt_gguf_model *m);

#endif
