// The Llama-family decoder (Llama, Mistral, Qwen2, Qwen3, SmolLM, TinyLlama, llama2.c checkpoints):
// one implementation; the differences are options of dt_model_config (q/k/v bias, per-head q/k norm,
// explicit head_dim, llama3 RoPE scaling, tied embeddings). Weights are frozen; adapters (LoRA on any
// linear, prompt embeddings) are passed in and are the only trainable tensors.
#ifndef DT_LLAMA_H
#define DT_LLAMA_H
#include "autograd/ops.h"
#include "models/config.h"
#include "models/tensor_names.h"
#include "models/weights.h"

typedef struct dt_llama_layer {
    dt_tensor w[DT_MOD_COUNT];        // linear weights (out, in): q (H*hd, D), k/v (KV*hd, D), o (D, H*hd),
                                      // gate/up (I, D), down (D, I)
    dt_tensor q_bias, k_bias, v_bias; // (H*hd), (KV*hd), (KV*hd) when cfg.attention_bias
    dt_tensor o_bias;                 // (D) when cfg.attention_bias and not Qwen2: transformers' Llama and
                                      // Qwen3 put attention_bias on o_proj as well (data NULL otherwise)
    dt_tensor q_norm, k_norm;         // (hd) when cfg.qk_norm
    dt_tensor attn_norm, ffn_norm;    // (D)
} dt_llama_layer;

typedef struct dt_llama {
    dt_model_config cfg;
    const dt_backend *be;
    dt_tensor embed;         // (V, D)
    dt_tensor norm;          // (D)
    dt_tensor lm_head;       // (V, D); the same memory as embed when tied
    dt_llama_layer *layers;  // (L)
    float *inv_freq;         // (hd/2) RoPE frequencies after any llama3 scaling, device memory
    void *block;             // one device block holding every weight that could not be used in place
    size_t block_bytes;
    size_t param_count;      // frozen parameters (tied embeddings counted once)
    dt_weights *src;         // keeps the memory mapping alive for weights used in place
    dt_dtype wtype;          // the matrices' dtype (norms, biases are f32); loaded as stored: the file's
                             // 16-bit type, the one its bf16/f16 matrices keep (f32 when it has none)
    struct dt_nf4_state *dev_nf4; // on a device: the NF4/FP4 weights' states (host memory, arrays in block), or NULL
    bool owns_be;            // be was made for this model (dt_llama_load_cpu) and goes with it
} dt_llama;

// Where a PEFT method rewrites a tensor of the forward with ordinary autograd ops: the output of a
// linear module (q/k/v after their bias), before anything else reads it (q/k norm, RoPE, SwiGLU, the
// residual add). o_proj's and down_proj's outputs are the attention and MLP blocks' outputs; a claimed
// one is computed apart from the residual add it is otherwise fused with. fn returns the tensor the
// model uses instead of x.
typedef struct dt_llama_site {
    // x (B, T', out) of module `mod` of layer `layer` of model m -> its replacement (NULL when the graph
    // failed).
    dt_tensor *(*fn)(dt_graph *g, const void *self, const struct dt_llama *m, int layer, int mod, dt_tensor *x);
    const void *self;
    const bool *at; // (L * DT_MOD_COUNT): [layer * DT_MOD_COUNT + module], which outputs fn rewrites
} dt_llama_site;

// Where a PEFT method adds key/value entries in front of every example (prefix tuning's virtual tokens):
// fn gives layer `layer`'s keys (which 0) or values (which 1), (n, KV*hd), built with ordinary autograd
// ops (NULL when the graph failed). Every token of an example attends to all n of them, used as given
// (no RoPE, no k-norm), then to its own example causally; they take the first n positions, so the tokens'
// RoPE positions start at n, as with a KV cache already holding n entries. With packing each example gets
// its own copy. In generation they are written into an empty cache, ahead of everything else.
typedef struct dt_llama_kv_prefix {
    dt_tensor *(*fn)(dt_graph *g, const void *self, const struct dt_llama *m, int layer, int which);
    const void *self;
    int64_t n;
} dt_llama_kv_prefix;

// Where a PEFT method changes the token embeddings: fn gets the looked-up rows x (B, T, D) of ids (B*T,
// device array) and returns the tensor the model uses instead (NULL when the graph failed).
typedef struct dt_llama_embed_site {
    dt_tensor *(*fn)(dt_graph *g, const void *self, const struct dt_llama *m, const int32_t *ids, dt_tensor *x);
    const void *self;
} dt_llama_embed_site;

// The adapters a forward applies; all pointers may be NULL.
typedef struct dt_llama_adapters {
    const dt_linear_hook *const *linear; // (L * DT_MOD_COUNT): [layer * DT_MOD_COUNT + module] or NULL
    dt_tensor *prompt;              // (n_virtual, D) prepended to every row's embeddings
    dt_llama_site site;             // site.fn NULL: none
    dt_llama_kv_prefix kv_prefix;   // kv_prefix.fn NULL: none
    dt_llama_embed_site embed;      // embed.fn NULL: none
    const dt_linear_hook *lm_head;  // a term on the LM head's output (logits and the loss), or NULL. With
                                    // tied embeddings it changes the output projection only, not the lookup
} dt_llama_adapters;

// The keys and values of the positions fed so far, for generation (dt_llama_infer, models/llama_infer.h).
typedef struct dt_kv_cache {
    int64_t cap, len;  // positions held / filled
    float *k, *v;      // (L, cap, KV*hd) each, in the model's backend memory
    const dt_backend *be; // the backend that holds k and v
    dt_graph g;        // the forward's graph (grad off), kept so that its memory is reused from call to call
} dt_kv_cache;

// One batch. labels follow the Hugging Face convention: aligned with input_ids and shifted inside the
// loss (position t is scored on predicting labels[t+1]); -100 means not trained.
typedef struct dt_batch {
    int64_t B, T;
    const int32_t *input_ids; // (B, T) host
    const int32_t *labels;    // (B, T) host, or NULL for no loss
    const int32_t *pos;       // (B, T) host position ids, or NULL for 0..T-1 in every row
    const int32_t *seg_start; // (B, T) host: first position of each token's example (packing), or NULL
} dt_batch;

typedef struct dt_llama_out {
    dt_tensor *loss;    // scalar: sum of token losses / denom (NULL without labels)
    double loss_sum;    // the un-normalised sum of token losses
    int64_t n_targets;  // trained tokens in this batch
    dt_tensor *logits;  // (B, T', V) when want_logits (T' = n_virtual + T); (1, 1, V) with a KV cache
    dt_tensor *hidden;  // (B, T', D) final-norm output
} dt_llama_out;

// path: a Hugging Face folder or a llama2.c .bin. Weights are converted to f32 for the CPU backend;
// F32 tensors of a memory-mapped file are used in place when aligned.
int dt_llama_load(dt_ctx *ctx, const char *path, const dt_backend *be, dt_llama **out);
// How the frozen weights are stored. A quantized base keeps its types (GGUF's blocks, bitsandbytes'
// NF4/FP4 with their state), on the CPU and on a device.
typedef struct dt_load_opts {
    dt_dtype quantize;  // DT_F32: as loaded; DT_NF4, DT_FP4, DT_Q8_0, DT_Q4_0, ...: the linear weights
                        // quantized at load, one tensor at a time (refused for a quantized base)
    bool double_quant;  // NF4/FP4: quantize the block scales too (bitsandbytes' compress_statistics)
    dt_dtype wtype;     // the other matrices' dtype, as dt_llama_load_typed (DT_F32, the zero value: f32)
} dt_load_opts;
// dt_load_opts NULL: as dt_llama_load.
int dt_llama_load_ex(dt_ctx *ctx, const char *path, const dt_backend *be, const dt_load_opts *o, dt_llama **out);
// The same with the matrices (linears, embedding, LM head) kept as wtype (f32, bf16 or f16): on the CPU
// memory-mapped in place when the file stores them in wtype, converted once otherwise; on a device
// converted on the host and copied. Norms and biases are f32 always. On the CPU wtype may also be
// DT_DTYPE_STORED: each matrix in the file's own type when that is bf16 or f16 (in place), else f32.
int dt_llama_load_typed(dt_ctx *ctx, const char *path, const dt_backend *be, dt_dtype wtype, dt_llama **out);
// Loads path for the CPU with the matrices in the dtype `requested` resolves to (DT_DTYPE_AUTO,
// DT_DTYPE_STORED or a float dtype; see dt_dtype_resolve, whose messages start with `what`: the recipe
// key or the option). A bf16 model gets its own bf16 backend instance (oneDNN), released by
// dt_llama_free; a stored one runs on the plain CPU backend (f32 arithmetic).
int dt_llama_load_cpu(dt_ctx *ctx, const char *path, dt_dtype requested, const char *what, dt_llama **out);
// dt_llama_load_cpu with the linear weights quantized at load as o says (o NULL: as dt_llama_load_cpu).
int dt_llama_load_cpu_ex(dt_ctx *ctx, const char *path, dt_dtype requested, const char *what, const dt_load_opts *o,
                         dt_llama **out);
void dt_llama_free(dt_llama *m);
// A model of this config with random weights (normal * 0.02, norms 1), for benchmarks and tests.
int dt_llama_init_random(dt_ctx *ctx, const dt_model_config *cfg, const dt_backend *be, uint64_t seed, dt_llama **out);
// The same with the matrices (linears, embedding, LM head) stored as wtype (f32, bf16 or f16), drawn
// in f32 and rounded; norms and biases stay f32.
int dt_llama_init_random_typed(dt_ctx *ctx, const dt_model_config *cfg, const dt_backend *be, uint64_t seed,
                               dt_dtype wtype, dt_llama **out);
// The same with the matrices as o->wtype and the linears quantized as o->quantize (as a load with o would
// store them): the same draws as dt_llama_init_random_typed, so the two models differ by the quantization.
int dt_llama_init_random_ex(dt_ctx *ctx, const dt_model_config *cfg, const dt_backend *be, uint64_t seed,
                            const dt_load_opts *o, dt_llama **out);
// Number of positions the forward will produce for T input tokens (adds the virtual tokens).
int64_t dt_llama_out_len(const dt_llama_adapters *ad, int64_t T);
// Positions the adapters take in an empty KV cache before the first token: key/value prefix entries and
// prompt virtual tokens.
int64_t dt_llama_cache_front(const dt_llama_adapters *ad);
// Builds the forward on g (recording the tape when g->grad_enabled). denom: the divisor of the loss
// (the trained-token count of the whole accumulated batch); <= 0 uses this batch's count.
int dt_llama_forward(dt_ctx *ctx, dt_graph *g, const dt_llama *m, const dt_llama_adapters *ad, const dt_batch *b,
                     float denom, bool want_logits, dt_llama_out *out);
// The same forward for generation, on kv->g with grad off: b has one row and no labels, positions or
// packing; its T positions follow the kv->len cached ones (key/value prefix entries, then the prompt's
// virtual tokens, go first when the cache is empty), their keys and values join the cache, and out->logits (1, 1, V) is the last
// position's.
int dt_llama_forward_cached(dt_ctx *ctx, const dt_llama *m, const dt_llama_adapters *ad, const dt_batch *b,
                            dt_kv_cache *kv, dt_llama_out *out);
// Counts the trained tokens of labels (B, T) under the shift convention; with n_virtual prompt tokens
// in front, the last virtual position also predicts labels[0].
int64_t dt_count_targets(const int32_t *labels, int64_t B, int64_t T, int64_t n_virtual);

#endif
