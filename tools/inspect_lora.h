// deltatune inspect, for a PEFT LoRA adapter folder whose modules do not all share r and lora_alpha.
#ifndef DT_INSPECT_LORA_H
#define DT_INSPECT_LORA_H
#include "autograd/context.h"
#include "models/safetensors.h"

struct json_t; // jansson's

// When cfg (adapter_config.json at cpath) has a rank_pattern or alpha_pattern, or a lora_A tensor of st
// has another rank than r: prints the patterns, then each adapted module's rank (from its lora_A),
// alpha (resolved as PEFT does) and scale, consecutive layers with the same values on one line. Prints
// nothing for a uniform adapter. A bad pattern is DT_EINPUT naming cpath and the key.
int dt_inspect_lora_modules(dt_ctx *ctx, const struct json_t *cfg, const char *cpath, const dt_safetensors *st);

#endif
