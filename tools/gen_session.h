// What `deltatune generate` does once the model, tokenizer and adapters are loaded: sampling, streaming
// the text as it is decoded, stopping at an end-of-sequence id, and the turns of a chat (one --prompt, or
// an interactive loop reading user turns from stdin) rendered with the model's chat template.
#ifndef DT_GEN_SESSION_H
#define DT_GEN_SESSION_H
#include <stdbool.h>
#include <stdio.h>
#include "autograd/rng.h"
#include "datasets/chat_template.h"
#include "datasets/tokenizer.h"
#include "models/llama_infer.h"
#include "tools/thread_env.h"

#define DT_GEN_MAX_EOS 16

typedef struct dt_gen {
    const dt_llama *m;
    const dt_tokenizer *tok;
    const dt_llama_adapters *view;
    int64_t n_new;               // tokens to generate per reply at most
    float temp, top_p;
    dt_rng rng;
    int32_t eos[DT_GEN_MAX_EOS]; // any of these ends a reply
    int n_eos;
    FILE *out;
    // state
    dt_kv_cache cache;
    dt_ids fed;                  // the ids the cache holds (after any virtual tokens)
    float *logits;               // (V) after the last fed id
    void *cand;                  // (V) sampling scratch
    bool warned_context;
    dt_thread_gov gov;           // fewer threads while other work takes the cores (thread_env.h)
} dt_gen;

int  dt_gen_init(dt_ctx *ctx, dt_gen *g);
void dt_gen_free(dt_gen *g);
// Plain text: prints the prompt, then what follows it.
int dt_gen_complete(dt_ctx *ctx, dt_gen *g, const char *prompt);
// One chat exchange, or (prompt NULL) an interactive loop reading one user turn per line of `in` until
// its end or an empty line. system may be NULL. Only replies are printed.
int dt_gen_chat(dt_ctx *ctx, dt_gen *g, const char *system, const char *prompt, FILE *in);

#endif
