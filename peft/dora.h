// DoRA, the part of LoRA (peft/lora.c) that rescales each adapted row to a learned magnitude (peft/dora.c).
#ifndef DT_DORA_H
#define DT_DORA_H
#include "peft/adapter.h"

// Attaches DoRA to LoRA adapter a for model m: its magnitude vectors are a->tensors[first...], one per
// adapted module in layer, module order; they get PEFT's start, the rows' norms of W, when m has weights.
// Sets a->state (freed by dt_dora_free) and a->view.site.
int dt_dora_attach(dt_ctx *ctx, dt_adapter *a, const dt_llama *m, int first);
void dt_dora_free(void *state);
// Whether a has a magnitude vector on layer tensor lt (a dt_layer_tensor) of this layer.
bool dt_dora_active(const dt_adapter *a, int layer, int lt);
// Merge: rows[b] (cols), b < nb, hold rows src[b] of W + s B A; each is rescaled to its magnitude
// (PEFT's merge: m / ||W + s B A||_row times the row).
void dt_dora_fold_rows(const dt_adapter *a, int layer, int lt, const int64_t *src, int nb, int64_t cols, float *const *rows);

#endif
