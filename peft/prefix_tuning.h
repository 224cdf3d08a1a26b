// Prefix tuning (peft/prefix_tuning.c).
#ifndef DT_PREFIX_TUNING_H
#define DT_PREFIX_TUNING_H
#include "peft/adapter.h"

extern const dt_method dt_method_prefix;

// A new prefix-tuning adapter of n virtual tokens for model m: PEFT's prompt_embeddings (n, L*2*KV*hd),
// drawn N(0, 1) from seed as PEFT's nn.Embedding. A bad n is DT_EINPUT, the message starting with `where`.
int dt_prefix_create(dt_ctx *ctx, const dt_llama *m, int n, uint64_t seed, const char *where, dt_adapter **out);
#endif
