// PEFT's per-module LoRA ranks and alphas: adapter_config.json's rank_pattern and alpha_pattern, objects
// whose keys are regular expressions over module names and whose values override r / lora_alpha.
// Hugging Face PEFT (LoraModel._create_and_replace, utils get_pattern_key) gives the module
// "model.layers.3.self_attn.q_proj" the value of the FIRST key, in the object's order, for which
// Python's re.match(rf"(.*\.)?({key})$", name) matches; with no matching key, r / lora_alpha apply.
// We run the same expression with PCRE2, anchored the same way.
#ifndef DT_LORA_PATTERN_H
#define DT_LORA_PATTERN_H
#include <stdbool.h>
#include "autograd/context.h"

struct json_t; // jansson's

// An ordered list of (key, value): the order is the file's, because it decides which key wins.
typedef struct dt_lora_pattern {
    int n;
    char **keys;     // (n) regular expressions, unescaped, as in the file
    double *values;  // (n) ranks (positive integers) or alphas
    bool *integral;  // (n) the value was a JSON integer, and is written back as one
} dt_lora_pattern;

// An empty pattern is all zeros.
void dt_lora_pattern_free(dt_lora_pattern *p);
int dt_lora_pattern_add(dt_ctx *ctx, dt_lora_pattern *p, const char *key, double value, bool integral);
int dt_lora_pattern_copy(dt_ctx *ctx, dt_lora_pattern *dst, const dt_lora_pattern *src);

// Reads adapter_config.json's `key` ("rank_pattern" or "alpha_pattern") from the config object cfg into
// *out (emptied first; absent or null = empty). ranks: every value must be an integer from 1 to 65536;
// else a number. Every key must compile. Errors are DT_EINPUT naming path, key, the pattern and what was
// expected.
int dt_lora_pattern_from_json(dt_ctx *ctx, const struct json_t *cfg, const char *path, const char *key, bool ranks,
                              dt_lora_pattern *out);
// A new JSON object with p's keys and values in p's order (integers where they were read as integers).
struct json_t *dt_lora_pattern_to_json(const dt_lora_pattern *p);

// The compiled keys of a pattern (it keeps a pointer to p, which must outlive it).
typedef struct dt_lora_matcher dt_lora_matcher;
// what names the pattern in messages, e.g. "adapter/adapter_config.json: key 'rank_pattern'".
int dt_lora_matcher_new(dt_ctx *ctx, const dt_lora_pattern *p, const char *what, dt_lora_matcher **out);
void dt_lora_matcher_free(dt_lora_matcher *m);
// *index = the first key of the pattern that matches module `name` (get_pattern_key), or -1.
int dt_lora_matcher_find(dt_ctx *ctx, const dt_lora_matcher *m, const char *name, int *index);
// *value = the value of that key, or dflt when none matches.
int dt_lora_matcher_value(dt_ctx *ctx, const dt_lora_matcher *m, const char *name, double dflt, double *value);

#endif
