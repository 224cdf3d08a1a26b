// Writes the batch of a golden file (input_ids, labels) as pre-tokenized JSONL, one row per line, so
// the commands can be run on exactly the batch PyTorch saw.
#ifndef DT_GOLDEN_DATA_H
#define DT_GOLDEN_DATA_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "models/safetensors.h"

// Returns 0, or the dt_status of opening the golden file; *loss gets its "loss" when loss is not NULL.
static inline int golden_batch_to_jsonl(dt_ctx *ctx, const char *golden, const char *out, float *loss) {
    dt_safetensors *gs;
    int rc = dt_st_open(ctx, golden, &gs);
    if (rc) return rc;
    const dt_st_tensor *it = dt_st_find(gs, "input_ids"), *lt = dt_st_find(gs, "labels"), *ls = dt_st_find(gs, "loss");
    int64_t B = it->shape[0], T = it->shape[1];
    int32_t *ids = malloc(it->nbytes), *lab = malloc(lt->nbytes);
    memcpy(ids, it->data, it->nbytes); // the mapping may be unaligned
    memcpy(lab, lt->data, lt->nbytes);
    if (loss && ls) memcpy(loss, ls->data, sizeof *loss);
    dt_st_close(gs);
    FILE *f = fopen(out, "w");
    for (int64_t r = 0; f && r < B; r++) {
        fprintf(f, "{\"input_ids\":[");
        for (int64_t t = 0; t < T; t++) fprintf(f, "%s%d", t ? "," : "", ids[r * T + t]);
        fprintf(f, "],\"labels\":[");
        for (int64_t t = 0; t < T; t++) fprintf(f, "%s%d", t ? "," : "", lab[r * T + t]);
        fprintf(f, "]}\n");
    }
    if (f) fclose(f);
    free(ids);
    free(lab);
    return f ? 0 : dt_fail(ctx, DT_EIO, "%s: cannot write", out);
}

#endif
