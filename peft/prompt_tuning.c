// Prompt tuning: n virtual token embeddings (n, D) prepended to every row's input embeddings.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/dtype.h"
#include "autograd/rng.h"
#include "peft/adapter.h"

int dt_prompt_create(dt_ctx *ctx, const dt_llama *m, const dt_prompt_config *cfg, uint64_t seed,
                     const int32_t *text_ids, int n_text_ids, dt_adapter **out) {
    *out = NULL;
    const int64_t n = cfg->num_virtual_tokens, D = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (n <= 0) return dt_fail(ctx, DT_EINPUT, "num_virtual_tokens must be positive, got %lld", (long long)n);
    if (cfg->init == DT_PROMPT_INIT_TEXT && n_text_ids <= 0)
        return dt_fail(ctx, DT_EINPUT, "prompt tuning init 'text' needs a non-empty init_text");
    dt_adapter *a = calloc(1, sizeof *a);
    char **names = calloc(1, sizeof *names);
    if (!a || !names || !(names[0] = strdup("prompt_embeddings"))) {
        free(a); free(names); return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    a->method = DT_PEFT_PROMPT;
    a->prompt = *cfg;
    a->prompt.init_text = cfg->init_text ? strdup(cfg->init_text) : NULL;
    int64_t shape[1][2] = {{n, D}};
    int rc = dt_adapter_alloc(ctx, a, 1, (const int64_t(*)[2])shape, (int[]){2}, names);
    if (rc) { dt_adapter_free(a); return rc; }
    float *P = a->params; // (n, D)
    dt_rng rng = {seed};
    float *row = malloc((size_t)D * sizeof(float));
    if (!row) { dt_adapter_free(a); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    for (int64_t i = 0; i < n; i++) {
        if (cfg->init == DT_PROMPT_INIT_RANDOM) {
            for (int64_t j = 0; j < D; j++) P[i * D + j] = (float)dt_rng_normal(&rng);
            continue;
        }
        // PEFT repeats the text's ids until n and cuts the rest.
        int64_t id = cfg->init == DT_PROMPT_INIT_VOCAB ? (int64_t)dt_rng_below(&rng, (uint64_t)V) : text_ids[i % n_text_ids];
        if (id < 0 || id >= V) { free(row); dt_adapter_free(a); return dt_fail(ctx, DT_EINPUT, "init token id %lld outside the vocabulary", (long long)id); }
        if (m->embed.device == DT_DEV_CPU) dt_tensor_row_f32(&m->embed, id, row); // any storage type
        else m->be->download(m->be, row, dt_f32(&m->embed) + id * D, (size_t)D * sizeof(float)); // f32 on devices
        memcpy(P + i * D, row, (size_t)D * sizeof(float));
    }
    free(row);
    a->view.prompt = &a->tensors[0];
    *out = a;
    return DT_OK;
}
