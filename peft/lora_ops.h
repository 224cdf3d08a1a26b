// LoRA's term on a linear, y += scale * dropout(x) A^T B^T, as a dt_linear_hook (autograd/ops.h): its
// forward, backward, and the fusion of the adapters that read one input (peft/lora_ops.c).
#ifndef DT_LORA_OPS_H
#define DT_LORA_OPS_H
#include "autograd/ops.h"

// A LoRA adapter on one linear: y += scale * dropout(x) A^T B^T.
typedef struct dt_lora_ref {
    dt_tensor *A;   // (r, in), trainable
    dt_tensor *B;   // (out, r), trainable
    float scale;    // alpha / r, or alpha / sqrt(r) for rsLoRA
    float dropout;  // probability, applied to x on the adapter path only, while training
} dt_lora_ref;

extern const dt_linear_hook_ops dt_lora_hook_ops;

// The hook of ref (not copied: ref must outlive it).
static inline dt_linear_hook dt_lora_hook(const dt_lora_ref *ref) {
    return (dt_linear_hook){&dt_lora_hook_ops, ref, NULL};
}

#endif
