// deltatune inspect: the per-module ranks, alphas and scales of a PEFT LoRA adapter with rank_pattern /
// alpha_pattern (see inspect_lora.h).
#include "tools/inspect_lora.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "models/tensor_names.h"
#include "peft/lora_pattern.h"

// (layer, module) of a PEFT lora_A key "base_model.model.model.layers.N.<module path>.lora_A.weight", or -1.
static int parse_lora_a(const char *name, int *layer, int *mod) {
    static const char PREFIX[] = "base_model.model.", SUFFIX[] = ".lora_A.weight";
    size_t n = strlen(name), pl = sizeof PREFIX - 1, sl = sizeof SUFFIX - 1;
    if (n <= pl + sl || strncmp(name, PREFIX, pl) || strcmp(name + n - sl, SUFFIX)) return -1;
    char hf[256]; // "model.layers.N.<module path>.weight", the base weight's name
    if (snprintf(hf, sizeof hf, "%.*s.weight", (int)(n - pl - sl), name + pl) >= (int)sizeof hf) return -1;
    dt_layer_tensor t;
    if (dt_tn_parse_layer(hf, layer, &t) || (int)t >= DT_MOD_COUNT) return -1;
    *mod = (int)t;
    return 0;
}

static void print_pattern(const char *key, const dt_lora_pattern *p) {
    if (!p->n) return;
    printf("%s:", key);
    for (int i = 0; i < p->n; i++) printf("%s %s = %g", i ? "," : "", p->keys[i], p->values[i]);
    putchar('\n');
}

int dt_inspect_lora_modules(dt_ctx *ctx, const json_t *cfg, const char *cpath, const dt_safetensors *st) {
    const json_int_t r = json_integer_value(json_object_get(cfg, "r"));
    const json_t *al = json_object_get(cfg, "lora_alpha");
    const double alpha = json_is_number(al) ? json_number_value(al) : 8.0; // PEFT's default, as peft_io reads it
    const bool rs = json_is_true(json_object_get(cfg, "use_rslora"));
    dt_lora_pattern rp = {0}, ap = {0};
    int rc = dt_lora_pattern_from_json(ctx, cfg, cpath, "rank_pattern", true, &rp);
    if (!rc) rc = dt_lora_pattern_from_json(ctx, cfg, cpath, "alpha_pattern", false, &ap);
    int L = 0, layer, mod;
    bool uniform = rp.n == 0 && ap.n == 0;
    for (size_t i = 0; i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        if (parse_lora_a(t->name, &layer, &mod)) continue;
        if (layer + 1 > L) L = layer + 1;
        if (t->ndim != 2 || t->shape[0] != r) uniform = false;
    }
    int *rank = NULL; // (L * DT_MOD_COUNT) each module's lora_A rows, 0 where none
    dt_lora_matcher *am = NULL;
    if (!rc && !uniform) {
        rank = calloc((size_t)L * DT_MOD_COUNT + 1, sizeof *rank);
        rc = rank ? dt_lora_matcher_new(ctx, &ap, cpath, &am) : dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    if (!rc && !uniform) {
        for (size_t i = 0; i < dt_st_count(st); i++) {
            const dt_st_tensor *t = dt_st_at(st, i);
            if (!parse_lora_a(t->name, &layer, &mod)) rank[layer * DT_MOD_COUNT + mod] = t->ndim == 2 ? (int)t->shape[0] : 0;
        }
        print_pattern("rank_pattern", &rp);
        print_pattern("alpha_pattern", &ap);
        printf("per module (rank from lora_A, alpha, scale):\n");
        char name[256];
        double *alphas = calloc((size_t)L + 1, sizeof *alphas); // (L) this module's alpha per layer
        if (!alphas) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
        for (mod = 0; mod < DT_MOD_COUNT && !rc; mod++) {
            for (layer = 0; layer < L && !rc; layer++) {
                // Only modules the file holds: a tiny file naming layer 999999 must not cost a million
                // pattern matches per module.
                alphas[layer] = alpha;
                if (!rank[layer * DT_MOD_COUNT + mod]) continue;
                dt_tn_module(name, sizeof name, "", layer, (dt_module)mod, ""); // the name PEFT matches
                rc = dt_lora_matcher_value(ctx, am, name, alpha, &alphas[layer]);
            }
            bool any = false;
            // Consecutive layers with the same rank and alpha share one entry: "r 3, alpha 16, scale 5.33333 (layers 0-1)".
            for (layer = 0; layer < L && !rc;) {
                const int rk = rank[layer * DT_MOD_COUNT + mod];
                int end = layer;
                while (end + 1 < L && rank[(end + 1) * DT_MOD_COUNT + mod] == rk && alphas[end + 1] == alphas[layer]) end++;
                if (rk > 0) {
                    const double scale = rs ? alphas[layer] / sqrt((double)rk) : alphas[layer] / (double)rk;
                    printf(any ? "; " : "  %s: ", dt_module_short((dt_module)mod));
                    printf("r %d, alpha %g, scale %g", rk, alphas[layer], scale);
                    if (end > layer) printf(" (layers %d-%d)", layer, end);
                    else printf(" (layer %d)", layer);
                    any = true;
                }
                layer = end + 1;
            }
            if (any) putchar('\n');
        }
        free(alphas);
    }
    dt_lora_matcher_free(am);
    free(rank);
    dt_lora_pattern_free(&rp);
    dt_lora_pattern_free(&ap);
    return rc;
}
