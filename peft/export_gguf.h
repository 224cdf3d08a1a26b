// llama.cpp's side of adapters and merged models: a PEFT LoRA adapter as a GGUF LoRA adapter (what
// llama.cpp loads with --lora), and the conventions a merged GGUF model shares with it: the
// architecture name, the model's metadata keys and the llama3 RoPE factors (the q/k row permutation
// is in models/qk_permute.h, which this header includes for the exporters).
// Each follows llama.cpp's convert_hf_to_gguf.py / convert_lora_to_gguf.py and src/llama-adapter.cpp.
#ifndef DT_EXPORT_GGUF_H
#define DT_EXPORT_GGUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "models/config.h"
#include "models/gguf_write.h"
#include "models/qk_permute.h" // dt_gguf_permutes_qk, dt_gguf_permute_rows: re-exported for the exporters

// llama.cpp's general.file_type values (LlamaFileType) for the dtypes we write.
enum { DT_GGUF_FTYPE_F32 = 0, DT_GGUF_FTYPE_F16 = 1, DT_GGUF_FTYPE_BF16 = 32 };

// The llama.cpp architecture of a model: "llama" (Llama, Mistral, llama2.c), "qwen2" or "qwen3". For a
// configuration llama.cpp cannot run as the Hugging Face model does (Qwen3 with q/k/v biases, which its
// qwen3 graph has no place for) it fails with DT_EUNSUPPORTED naming `path`.
int dt_gguf_arch(dt_ctx *ctx, const dt_model_config *cfg, const char *path, const char **arch);

// The llama3 RoPE frequency factors (head_dim/2 values) that the converter stores as rope_freqs.weight:
// 1 for high frequencies, factor for low ones, a smooth blend between.
void dt_gguf_rope_factors(const dt_model_config *cfg, float *out);

// The model keys of a llama.cpp model file: general.* (type "model", name, file_type) and the
// {arch}.* hyper-parameters. Tokenizer keys are separate (dt_gguf_add_tokenizer).
int dt_gguf_set_model_keys(dt_ctx *ctx, dt_gguf_writer *w, const dt_model_config *cfg, const char *arch,
                           const char *name, uint32_t file_type);

// What an exported adapter holds, for callers that report it.
typedef struct dt_export_info {
    int n_pairs;      // adapted weights (lora_a + lora_b pairs)
    int rank_min, rank_max; // the smallest and largest rank of a pair (equal unless rank_pattern)
    int n_folded;     // lora_b's rescaled to carry a module's own scale (alpha_pattern, rsLoRA + rank_pattern)
    float alpha;      // adapter.lora.alpha as written
    const char *arch; // static string
} dt_export_info;

// Writes the LoRA adapter in adapter_dir (PEFT format) for the model at model_path (a Hugging Face
// folder or llama2.c .bin; only its config is used) as a llama.cpp GGUF LoRA adapter at out_path
// (atomically), F32 tensors. Keys: general.architecture (the base's), general.type "adapter",
// adapter.type "lora", adapter.lora.alpha. llama.cpp scales by alpha / r (r read from lora_b), so an
// rsLoRA adapter (scale alpha / sqrt(r)) is written with alpha * sqrt(r). Tensors per adapted weight W:
// "W.lora_a" = PEFT's A (r, in), "W.lora_b" = B (out, r), B's rows permuted for q/k as the base's are.
// llama.cpp has a single alpha per file: a module whose own scale differs from alpha / r_i (another alpha
// from alpha_pattern, or rsLoRA at another rank from rank_pattern) has lora_b = (scale_i r_i / alpha) B.
// A prompt-tuning adapter is DT_EINPUT (llama.cpp has no form for it). info may be NULL.
int dt_export_lora_gguf(dt_ctx *ctx, const char *adapter_dir, const char *model_path, const char *out_path,
                        dt_export_info *info);

#endif
