// The one table of tensor names: Hugging Face names of the Llama family, the per-layer linear modules
// that adapters attach to, and the llama.cpp GGUF equivalents. Nothing else in the project spells
// these names by hand.
#ifndef DT_TENSOR_NAMES_H
#define DT_TENSOR_NAMES_H
#include <stddef.h>

// The per-layer linear modules, in the order used everywhere (adapters, target_modules).
typedef enum { DT_MOD_Q, DT_MOD_K, DT_MOD_V, DT_MOD_O, DT_MOD_GATE, DT_MOD_UP, DT_MOD_DOWN, DT_MOD_COUNT } dt_module;

const char *dt_module_short(dt_module m); // "q_proj", ..., "down_proj" (PEFT target_modules names)
const char *dt_module_path(dt_module m);  // "self_attn.q_proj", ..., "mlp.down_proj"
const char *dt_module_gguf(dt_module m);  // "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", ...
// The module with this short name ("q_proj") or module path ("self_attn.q_proj"), or -1.
int dt_module_from_name(const char *name);

// Every per-layer tensor. The first DT_MOD_COUNT values are the linear weights, so a dt_module m is
// also the dt_layer_tensor of its weight.
typedef enum {
    DT_LT_Q, DT_LT_K, DT_LT_V, DT_LT_O, DT_LT_GATE, DT_LT_UP, DT_LT_DOWN, // "<path>.weight"
    DT_LT_Q_BIAS, DT_LT_K_BIAS, DT_LT_V_BIAS,   // "self_attn.{q,k,v}_proj.bias" (Qwen2, attention_bias)
    DT_LT_Q_NORM, DT_LT_K_NORM,                 // "self_attn.{q,k}_norm.weight" (Qwen3)
    DT_LT_ATTN_NORM, DT_LT_FFN_NORM,            // "input_layernorm.weight", "post_attention_layernorm.weight"
    DT_LT_COUNT
} dt_layer_tensor;

typedef enum { DT_GT_EMBED, DT_GT_NORM, DT_GT_LM_HEAD, DT_GT_COUNT } dt_global_tensor;

const char *dt_tn_layer_suffix(dt_layer_tensor t);   // "self_attn.q_proj.weight" (after "model.layers.N.")
const char *dt_tn_layer_gguf_suffix(dt_layer_tensor t); // "attn_q.weight" (after "blk.N.")
const char *dt_tn_global(dt_global_tensor t);        // "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"
const char *dt_tn_global_gguf(dt_global_tensor t);   // "token_embd.weight", "output_norm.weight", "output.weight"

// The formatters write a NUL-terminated name into buf (size n) and return its length, or -1 when it
// does not fit (buf then holds a truncated string). 256 bytes is always enough for the fixed names.
// "model.layers.{layer}.{suffix}"
int dt_tn_layer(char *buf, size_t n, int layer, dt_layer_tensor t);
// "blk.{layer}.{gguf suffix}"
int dt_tn_layer_gguf(char *buf, size_t n, int layer, dt_layer_tensor t);
// "{prefix}model.layers.{layer}.{module path}{suffix}", e.g. prefix "base_model.model." and suffix
// ".lora_A.weight" gives PEFT's "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
// prefix and suffix may be NULL or "".
int dt_tn_module(char *buf, size_t n, const char *prefix, int layer, dt_module m, const char *suffix);
// Parses an HF name "model.layers.N.<suffix>" back into (layer, tensor). Returns 0 on a match, -1 otherwise.
int dt_tn_parse_layer(const char *name, int *layer, dt_layer_tensor *t);

#endif
