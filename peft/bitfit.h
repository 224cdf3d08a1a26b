// BitFit adapters (peft/bitfit.c).
#ifndef DT_BITFIT_H
#define DT_BITFIT_H
#include "peft/adapter.h"

extern const dt_method dt_method_bitfit;

// A new BitFit adapter: a zero bias delta on the target modules (DT_MOD_COUNT flags) of every layer. No
// target is DT_EINPUT, the message starting with `where` (the file and key it came from).
int dt_bitfit_create(dt_ctx *ctx, const dt_llama *m, const bool *target, const char *where, dt_adapter **out);

#endif
