// A PEFT adapter: the trainable tensors of one method (peft/method.h) carved out of one parameter block,
// with a gradient block of the same layout, so zeroing, clipping, the optimizer step and saving are each
// one loop over one block.
#ifndef DT_ADAPTER_H
#define DT_ADAPTER_H
#include <stdbool.h>
#include "autograd/ops.h"
#include "models/llama.h"
#include "peft/lora_ops.h"
#include "peft/lora_pattern.h"
#include "peft/method.h"

typedef enum { DT_PROMPT_INIT_RANDOM = 0, DT_PROMPT_INIT_VOCAB = 1, DT_PROMPT_INIT_TEXT = 2 } dt_prompt_init;

typedef struct dt_lora_config {
    int r;                     // the rank of modules no rank_pattern key matches
    float alpha, dropout;      // alpha: of modules no alpha_pattern key matches
    bool use_rslora;
    bool use_dora;             // DoRA (peft/dora.c): a magnitude vector per adapted module
    bool target[DT_MOD_COUNT]; // which linear modules carry an adapter
    bool embed_tokens;         // a LoRA on the token embedding (PEFT's lora_embedding_A/B; peft/lora_embed.c)
    bool lm_head;              // a LoRA on the LM head (an ordinary linear LoRA on the output projection)
    bool *layers;              // (L) which layers; NULL = all (layers_to_transform unset)
    // PEFT's per-module overrides of r and alpha (empty = none), kept as read so that saving writes
    // them back unchanged; dt_lora_create resolves them per module.
    dt_lora_pattern rank_pattern, alpha_pattern;
} dt_lora_config;

// More virtual tokens than any context a model here can hold; bounds what an adapter_config.json can ask.
#define DT_MAX_VIRTUAL_TOKENS (1 << 20)

typedef struct dt_prompt_config {
    int num_virtual_tokens;
    dt_prompt_init init;
    char *init_text;           // for DT_PROMPT_INIT_TEXT (tokenised by the caller)
} dt_prompt_config;

typedef struct dt_adapter {
    const dt_method *method;
    dt_lora_config lora;
    dt_prompt_config prompt;
    char base_model[512];      // base_model_name_or_path for adapter_config.json
    char tokenizer[512];       // tokenizer_name_or_path (prompt tuning with TEXT init: PEFT loads it)
    int n_tensors;
    dt_tensor *tensors;        // (n_tensors) trainable tensors, data in `params`, grad in `grads`
    char **names;              // (n_tensors) PEFT keys, e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
    float *params, *grads;     // (n_params) each: one block per kind
    size_t n_params;
    dt_lora_ref *refs;         // (L * DT_MOD_COUNT) LoRA only
    float *alphas;             // (L * DT_MOD_COUNT) LoRA only: each adapted module's alpha (lora_alpha or its
                               // alpha_pattern value; its rank is refs[i].A->shape[0]), 0 elsewhere
    const dt_lora_ref **ref_ptrs; // (L * DT_MOD_COUNT) NULL where a module has no adapter
    dt_linear_hook *hooks;     // (L * DT_MOD_COUNT) LoRA only: refs[i] as a linear hook (next: chained adapters)
    const dt_linear_hook **hook_ptrs; // (L * DT_MOD_COUNT) NULL where a module has no adapter; view.linear
    dt_lora_ref embed_ref;     // LoRA with lora.embed_tokens: A (r, V) lora_embedding_A, B (D, r) lora_embedding_B
    dt_lora_ref head_ref;      // LoRA with lora.lm_head: A (r, D), B (V, r)
    dt_linear_hook head_hook;  // head_ref as the LM head's hook (view.lm_head)
    dt_llama_adapters view;    // what dt_llama_forward takes
    void *state;               // the method's own data (methods other than LoRA and prompt tuning), freed by
                               // method->free_state
} dt_adapter;

// The methods LoRA and prompt tuning (peft/lora.c, peft/prompt_tuning.c).
extern const dt_method dt_method_lora, dt_method_prompt;

// Creates a LoRA adapter for model m with PEFT's initialisation: A Kaiming-uniform (a = sqrt(5)), i.e.
// U(-1/sqrt(in), 1/sqrt(in)), from seed; B zero. cfg is copied (layers and patterns too). Each module's
// rank and alpha come from cfg's patterns where a key matches (see lora_pattern.h), else r and alpha;
// its ref's scale is alpha_i / r_i (alpha_i / sqrt(r_i) with rsLoRA).
int dt_lora_create(dt_ctx *ctx, const dt_llama *m, const dt_lora_config *cfg, uint64_t seed, dt_adapter **out);
// Prompt tuning with n virtual tokens (n, D): RANDOM ~ N(0, 1) like nn.Embedding; VOCAB copies rows of
// randomly sampled token ids; TEXT copies the rows of text_ids (the tokenised init text, repeated or cut
// to n as PEFT does).
int dt_prompt_create(dt_ctx *ctx, const dt_llama *m, const dt_prompt_config *cfg, uint64_t seed,
                     const int32_t *text_ids, int n_text_ids, dt_adapter **out);
void dt_adapter_free(dt_adapter *a);
void dt_adapter_zero_grad(dt_adapter *a);
// The LoRA scale of this config's default rank and alpha: alpha / r, or alpha / sqrt(r) with rsLoRA.
float dt_lora_scale(const dt_lora_config *c);
// The same for one module's rank and alpha.
float dt_lora_scale_of(float alpha, int r, bool use_rslora);
// Frees what a config owns (layers and patterns, as the adapter readers fill them) and empties it. A
// caller whose layers point at its own array clears that pointer first, or frees only the patterns.
void dt_lora_config_free(dt_lora_config *c);
// Prints "trainable params: N || all params: M || trainable%: P" into buf.
void dt_adapter_param_summary(const dt_adapter *a, const dt_llama *m, char *buf, size_t n);
// LoRA+ (Hayou et al. 2024; PEFT's create_loraplus_optimizer): mult (n_params) gets ratio for the
// elements of the lora_B matrices and of DoRA's magnitude vectors (PEFT puts every 1-D parameter in
// its lr * ratio group) and 1 elsewhere, as learning-rate multipliers. DT_EINPUT when a is not a LoRA
// adapter.
int dt_lora_plus_lr_mult(dt_ctx *ctx, const dt_adapter *a, float ratio, float *mult);
// The tensor with this PEFT key, or NULL.
dt_tensor *dt_adapter_find(const dt_adapter *a, const char *name);

// For the method files: allocates the blocks for n tensors of these shapes and carves them (takes names).
int dt_adapter_alloc(dt_ctx *ctx, dt_adapter *a, int n, const int64_t (*shapes)[2], const int *ndims, char **names);

// For the method files: a method's trainable tensors listed (name and shape of each) before
// dt_adapter_layout_commit allocates them as one block.
typedef struct {
    int n;
    int64_t (*shapes)[2]; // (n) d0, d1 (d1 is 1 for a vector)
    int *ndims;           // (n) 1 or 2
    char **names;         // (n) PEFT keys, owned until commit
} dt_adapter_layout;
// Room for n tensors. Always leaves lo safe to commit; DT_ENOMEM (message set) when memory runs out.
int dt_adapter_layout_init(dt_ctx *ctx, dt_adapter_layout *lo, int n);
// Tensor i: a copy of name, shape (d0) when ndim is 1, (d0, d1) when 2.
int dt_adapter_layout_set(dt_ctx *ctx, dt_adapter_layout *lo, int i, const char *name, int ndim, int64_t d0, int64_t d1);
// When rc is DT_OK, allocates a's tensors from the layout (a takes the names, also on failure, so
// dt_adapter_free frees them) and returns that status; otherwise returns rc. Frees the layout either way.
int dt_adapter_layout_commit(dt_ctx *ctx, dt_adapter_layout *lo, dt_adapter *a, int rc);

#endif
