// Prefix tuning (peft/prefix_tuning.c).
#ifndef DT_PREFIX_TUNING_H
#define DT_PREFIX_TUNING_H
#include "peft/adapter.h"

extern const dt_method dt_method_prefix;

// A new prefix-tuning adapter of n virtual tokens for model m: PEFT's prompt_embeddings (n, L*2*KV*hd),
// drawn N(0, 1) from seed as PEFT's nn.Embedding. A bad n is DT_EINPUT, the message starting with `where`.
int dt_prefix_create(dt_ctx *ctx, const dt_llama *m, int n, uint64_t seed, const char *where, dt_adapter **out);
// Whether a was read from an adapter_config.json with prefix_projection true: PEFT trained it through its
// MLP reparameterisation, and the file holds that MLP's output (what PEFT itself uses at inference), so
// it evaluates and generates as it is, but it cannot be trained further here.
bool dt_prefix_projected(const dt_adapter *a);

#endif
