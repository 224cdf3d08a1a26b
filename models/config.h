// Hugging Face config.json for the Llama family: LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM (q/k/v bias), Qwen3ForCausalLM (per-head q_norm/k_norm, explicit head_dim).
// Defaults follow transformers' config classes where a key is absent.
#ifndef DT_CONFIG_H
#define DT_CONFIG_H
#include <stdbool.h>
#include "autograd/context.h"
#include "autograd/tensor.h"

typedef enum { DT_ARCH_LLAMA, DT_ARCH_MISTRAL, DT_ARCH_QWEN2, DT_ARCH_QWEN3 } dt_arch;

typedef enum { DT_ROPE_NONE = 0, DT_ROPE_LLAMA3 = 1 } dt_rope_scaling;

typedef struct {
    dt_arch arch;
    char arch_name[64];    // "LlamaForCausalLM", ...
    char model_type[32];   // "llama", "mistral", "qwen2", "qwen3" (from config, else the arch's)
    int hidden_size, num_layers, num_heads, num_kv_heads, head_dim, intermediate_size, vocab_size,
        max_position_embeddings;
    float rms_norm_eps, rope_theta;
    int rope_scaling_type; // dt_rope_scaling: 0 none, 1 llama3; linear/dynamic/yarn/... are refused
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor; // llama3 scaling only
    int rope_original_max_pos;                                      // llama3 scaling only
    bool tie_word_embeddings;
    bool attention_bias;   // q, k, v projections have a bias; o_proj too except on Qwen2 (as transformers)
    bool qk_norm;          // Qwen3: RMSNorm over each head of q and k, weight (head_dim)
    bool rope_interleaved; // RoPE over adjacent pairs; always false for weights handed out by this
                           // module: the llama2.c loader permutes q/k rows into the HF rotate-half layout
    int sliding_window;    // sliding-window attention size when the config enables it (Mistral's
                           // "sliding_window"; Qwen's when "use_sliding_window" is true), else 0
    int bos_token_id, eos_token_id; // -1 when absent (eos may be a list: the first is kept)
    dt_dtype torch_dtype;  // storage dtype named in config ("torch_dtype" or "dtype"), default F32
} dt_model_config;

const char *dt_arch_name(dt_arch a); // "LlamaForCausalLM", ...

// path: config.json or a folder holding it. Loads and validates (dt_config_validate).
// DT_EINPUT naming the file and the key for a missing/ill-typed key or an unsupported architecture.
int dt_config_load(dt_ctx *ctx, const char *path, dt_model_config *cfg);
// Checks positive sizes, heads dividing hidden/kv heads dividing heads, even head_dim, ...; path names
// the source in messages.
int dt_config_validate(dt_ctx *ctx, const dt_model_config *cfg, const char *path);
// Writes cfg as a transformers-readable config.json (atomically), e.g. for a merged llama2.c model.
int dt_config_save(dt_ctx *ctx, const dt_model_config *cfg, const char *path);

#endif
