// LoRA on the token embedding (peft/lora_embed.c).
#ifndef DT_LORA_EMBED_H
#define DT_LORA_EMBED_H
#include "models/llama.h"
#include "peft/lora_ops.h"

// x (B, T, D), the embedding rows of ids (B*T) -> x + scale * A[:, ids]^T B^T, with l->A (r, V) and
// l->B (D, r) trainable. CPU backend only.
dt_tensor *dt_lora_embed(dt_graph *g, const dt_lora_ref *l, const int32_t *ids, dt_tensor *x);
// The same as a dt_llama_embed_site function (self: the dt_lora_ref).
dt_tensor *dt_lora_embed_site(dt_graph *g, const void *self, const dt_llama *m, const int32_t *ids, dt_tensor *x);

#endif
