// Inference with a KV cache (generation): the training forward (models/llama.c) with no tape and no
// gradients, so every adapter is applied unmerged exactly as in training. dt_kv_cache is in llama.h.
#ifndef DT_LLAMA_INFER_H
#define DT_LLAMA_INFER_H
#include "models/llama.h"

int dt_kv_cache_init(dt_ctx *ctx, const dt_llama *m, int64_t cap, dt_kv_cache *c);
void dt_kv_cache_free(dt_kv_cache *c);
// Feeds n positions after the cached ones: the prompt's virtual tokens (when ad->prompt is set and the
// cache is empty they go first automatically) and then ids (n_ids). Writes the logits of the last
// position into logits (V).
int dt_llama_infer(dt_ctx *ctx, const dt_llama *m, const dt_llama_adapters *ad, dt_kv_cache *c, const int32_t *ids,
                   int64_t n_ids, float *logits);

#endif
