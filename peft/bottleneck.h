// Bottleneck adapters (peft/bottleneck.c).
#ifndef DT_BOTTLENECK_H
#define DT_BOTTLENECK_H
#include "peft/adapter.h"

typedef enum { DT_BN_HOULSBY = 0, DT_BN_PFEIFFER = 1 } dt_bottleneck_type;

extern const dt_method dt_method_bottleneck;

// A new bottleneck adapter of this type and size on every layer of m (down from seed, up zero). A bad size
// is DT_EINPUT, the message starting with `where`.
int dt_bottleneck_create(dt_ctx *ctx, const dt_llama *m, dt_bottleneck_type type, int size, uint64_t seed,
                         const char *where, dt_adapter **out);

#endif
