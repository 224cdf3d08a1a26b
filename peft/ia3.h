// IA3 adapters (peft/ia3.c).
#ifndef DT_IA3_H
#define DT_IA3_H
#include "peft/adapter.h"

extern const dt_method dt_method_ia3;

// A new IA3 adapter on the target modules (DT_MOD_COUNT flags) of every layer, feedforward ones scaled on
// their input, its vectors set to one (PEFT's init_ia3_weights). A choice the model cannot apply is
// DT_EINPUT, the message starting with `where` (the file and keys it came from).
int dt_ia3_create(dt_ctx *ctx, const dt_llama *m, const bool *target, const bool *feedforward, const char *where,
                  dt_adapter **out);

#endif
