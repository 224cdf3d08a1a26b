// Folding LoRA adapters into a model's weights: W' = W + sum_i weight_i * scale_i * B_i A_i, computed in
// f32 and stored in the output dtype, written as a Hugging Face folder (the input's shard layout) or as a
// complete llama.cpp GGUF model. One tensor at a time, one shard at a time, so a model larger than memory
// merges: unchanged tensors go from the memory-mapped input straight to the file (their pages dropped once
// written); peak memory is the adapters plus a few copies of the largest folded tensor.
#ifndef DT_MERGE_H
#define DT_MERGE_H
#include <stdint.h>
#include "autograd/context.h"
#include "models/config.h"
#include "peft/adapter.h"

typedef struct dt_merge_adapter {
    const char *dir;  // a PEFT LoRA adapter folder
    float weight;     // its multiplier (1 = as trained)
} dt_merge_adapter;

typedef enum { DT_MERGE_HF = 0, DT_MERGE_GGUF = 1 } dt_merge_format;

// --dtype same: each tensor keeps its input type (a quantized GGUF base's tensors are re-quantized).
#define DT_MERGE_DTYPE_SAME (-2)

// What re-quantization did to one output tensor: the RMS of (re-quantized - exact merged weights)
// relative to the RMS of the exact merged weights.
typedef struct dt_merge_quant_err {
    char name[96];
    dt_dtype type;
    double err2, ref2; // sums of squares of the difference and of the exact weights
} dt_merge_quant_err;

typedef struct dt_merge_report {
    dt_merge_quant_err *t; // (n) one per re-quantized tensor, in file order; malloc'd, free with free()
    size_t n;
} dt_merge_report;

typedef struct dt_merge_opts {
    const char *model;                 // Hugging Face folder, llama2.c .bin or GGUF model
    const dt_merge_adapter *adapters;  // (n_adapters); none gives a plain conversion
    int n_adapters;
    const char *out;                   // hf: a folder that must not exist yet; gguf: the .gguf file
    int dtype;                         // DT_F32, DT_F16, DT_BF16; gguf also a ggml quantized type (DT_Q8_0,
                                       // DT_Q4_K, ...); -1: the base's storage dtype (its embedding's);
                                       // DT_MERGE_DTYPE_SAME: each tensor's own input type
    dt_merge_format format;
    const char *tokenizer;             // folder with tokenizer.json: gguf: written into the file; hf: its
                                       // tokenizer files copied. NULL = the model's folder, or for a GGUF
                                       // base its own tokenizer.ggml.* metadata
    dt_merge_report *report;           // optional: filled with the error of every re-quantized tensor
} dt_merge_opts;

// Merges and writes. hf: the same tensor names and shard files as the input (model.safetensors, or the
// shards + model.safetensors.index.json), config.json (torch_dtype set when --dtype changes it; written
// from the config for a llama2.c input), and the generation/tokenizer files copied when present (a GGUF
// base without o->tokenizer: its tokenizer written as tokenizer.json, tokenizer_config.json,
// special_tokens_map.json and generation_config.json; one that cannot be converted is DT_EINPUT/
// DT_EUNSUPPORTED before anything is written); it
// is written into "OUT.tmp.XXXXXX" beside OUT and renamed when complete, so nothing partial is left.
// gguf: F32/F16/BF16 (norms and 1-D tensors F32, as llama.cpp's converter writes them), q/k permuted for
// "llama", the tokenizer from tokenizer.json (or, for a GGUF base, copied from it); quantized output
// types need rows of whole blocks. Errors name the file and the tensor (DT_EINPUT for bad
// input: no adapter, a config that does not fit the tensors, an adapter that does not fit the base, ...).
int dt_merge(dt_ctx *ctx, const dt_merge_opts *o);

// Reads a PEFT adapter for a model of this config without loading the model's weights (dt_adapter_load
// needs only the config for LoRA and for the shape of prompt embeddings).
int dt_adapter_load_cfg(dt_ctx *ctx, const char *dir, const dt_model_config *cfg, dt_adapter **out);

// W (out, in) += scale * B (out, r) @ A (r, in), in f32.
void dt_lora_fold(float *W, const float *A, const float *B, int64_t out, int64_t in, int64_t r, float scale);

// The PEFT adapter's LoRA ref for (layer, module), or NULL (also for prompt tuning).
const dt_lora_ref *dt_adapter_lora_at(const dt_adapter *a, int layer, int module);

#endif
