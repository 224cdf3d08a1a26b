// The PEFT method interface. Each method is one file in peft/ holding one dt_method: what its
// adapter_config.json says (read and written in PEFT's layout), how it creates its tensors in the
// adapter's one flat parameter block, where it attaches to the model (dt_adapter.view: LoRA's hooks on
// linears, prompt embeddings, a site that rewrites a projection's output with ordinary autograd ops, or
// key/value entries in front of every example),
// and how it folds into the base weights for `merge` (or why it cannot). The list of methods is
// peft/methods.c; nothing else in the project branches on a method's name.
//
// Adding a method: its file (the dt_method and its create function), one row in peft/methods.c, its
// recipe rows (recipes/recipe_schema.c, recipe.h) and tests. Nothing in autograd/ or models/ as long as
// the model has a site where it attaches (linear hooks, prompt rows, projection-output sites, the
// key/value prefix of models/llama.h); a new kind of attachment is added there method-agnostic.
#ifndef DT_METHOD_H
#define DT_METHOD_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "models/config.h"
#include "models/tensor_names.h"

struct dt_adapter;
struct dt_llama;

enum { DT_FOLD_ROWS = 4 }; // rows per dt_method.fold_rows call

// Merge targets beyond the dt_layer_tensor values (the lt of dt_method.folds / fold_rows): o_proj's bias
// (layer >= 0; transformers' Llama and Qwen3 have it with attention_bias), and the global matrices
// (layer -1): the embedding table (V, D) and the LM head (V, D). A merge may create a tensor the base lacks
// when an adapter folds it: q/k/v/o biases (then config.json gets attention_bias: true and every one of
// them, zeros where no adapter writes), or lm_head.weight of a model with tied embeddings (then the model
// is untied: tie_word_embeddings false, lm_head starting as a copy of the embedding table).
enum { DT_FOLD_O_BIAS = DT_LT_COUNT, DT_FOLD_EMBED, DT_FOLD_LM_HEAD, DT_FOLD_COUNT };

typedef struct dt_method {
    const char *name;      // "lora", "prompt_tuning", "ia3": the recipe's method.name
    const char *peft_type; // adapter_config.json's peft_type: "LORA", "PROMPT_TUNING", "IA3"
    // adapter_config.json keys of this method beyond the shared list in peft/peft_io.c (NULL-terminated,
    // or NULL): read or knowingly ignored, so they draw no "unknown key" warning.
    const char *const *keys;
    // A new adapter from the method's keys of adapter_config.json (cfg, read from path) for model m,
    // its tensors allocated and named; their values are then read from the safetensors file by the
    // caller. Only m->cfg is read (merge passes a model without weights). Bad keys: DT_EINPUT naming path
    // and the key.
    int (*from_json)(dt_ctx *ctx, json_t *cfg, const char *path, const struct dt_llama *m, struct dt_adapter **out);
    // Sets the method's keys of adapter_config.json on c (the shared ones are set by the caller).
    void (*to_json)(const struct dt_adapter *a, const dt_model_config *mc, json_t *c);
    // Merge. folds: whether the adapter changes layer tensor lt (a dt_layer_tensor, or a DT_FOLD_* value
    // above) of this layer (-1 for the global ones).
    // fold_rows: rows[b] (cols floats), b < nb, are rows src[b] of that tensor in f32 (a 1-D tensor has
    // cols 1); the adapter, with multiplier weight, is folded into them in place. rows has DT_FOLD_ROWS
    // entries; those from nb on are zeroed scratch rows it may write. Both NULL when no_merge.
    bool (*folds)(const struct dt_adapter *a, int layer, int lt);
    void (*fold_rows)(const struct dt_adapter *a, int layer, int lt, float weight, const int64_t *src, int nb,
                      int64_t cols, float *const *rows);
    // true when the method only scales the biases it folds (IA3: b' = l * b): a bias the base lacks stays
    // zero, so such folds never make the merge create q/k/v/o biases.
    bool scales_bias;
    const char *no_merge;  // why it cannot be merged into weights; NULL when it can
    // Optional (NULL: every model): DT_EINPUT naming dir and the reason when this adapter cannot be merged
    // into a model of config c (what the merged model's config could not express).
    int (*merge_check)(dt_ctx *ctx, const struct dt_adapter *a, const dt_model_config *c, const char *dir);
    // Frees the method's own state (dt_adapter.state); NULL when it has none.
    void (*free_state)(void *state);
} dt_method;

// The method whose peft_type is this, or NULL.
const dt_method *dt_method_by_peft_type(const char *peft_type);
// "LORA, PROMPT_TUNING, IA3": the supported peft_types into buf (size n), for messages.
void dt_method_peft_types(char *buf, size_t n);

#endif
