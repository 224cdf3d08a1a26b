// Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020): a small residual MLP on a block's
// output, h -> h + up(relu(down(h))), down (r, D) + bias (r), up (D, r) + bias (D), up initialised to zero
// so the adapted model starts equal to the base. Houlsby: after the attention block and after the MLP;
// Pfeiffer: after the MLP only.
//
// Where it attaches: the sites on o_proj's and down_proj's outputs (models/llama.h), which are the
// attention and MLP blocks' outputs before their residual adds; built from ordinary autograd ops
// (dt_dense, dt_relu, dt_add).
//
// PEFT has no bottleneck adapters (its issues #244, #2654), so the files are our own, in PEFT's folder
// layout: adapter_config.json {"peft_type": "BOTTLENECK", "bottleneck_type": "houlsby" | "pfeiffer",
// "bottleneck_size": r, "non_linearity": "relu", "base_model_name_or_path", "task_type": "CAUSAL_LM",
// "inference_mode", "revision"} and adapter_model.safetensors with, per layer N and block B (self_attn
// for Houlsby's first adapter, mlp for the MLP's):
//   base_model.model.model.layers.N.B.adapter.down.weight (r, D)   .adapter.down.bias (r)
//   base_model.model.model.layers.N.B.adapter.up.weight   (D, r)   .adapter.up.bias   (D)
// Merge refuses: the ReLU between the projections has no linear fold.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"
#include "peft/bottleneck.h"

typedef struct bn_state {
    dt_bottleneck_type type;
    int size;
    dt_tensor **t; // (L * 2 * 4): [layer][block 0 attention, 1 MLP][down.w, down.b, up.w, up.b], NULL where none
    bool *at;      // (L * DT_MOD_COUNT): o_proj (Houlsby) and down_proj outputs
} bn_state;

static void bn_free(void *p) {
    bn_state *s = p;
    if (!s) return;
    free(s->t);
    free(s->at);
    free(s);
}

static dt_tensor *bn_site(dt_graph *g, const void *self, const dt_llama *m, int layer, int mod, dt_tensor *h) {
    (void)m;
    const bn_state *s = self;
    dt_tensor *const *t = s->t + ((size_t)layer * 2 + (mod == DT_MOD_DOWN)) * 4;
    dt_tensor *z = dt_relu(g, dt_dense(g, h, t[0], t[1])); // (B, T, r)
    return dt_add(g, h, dt_dense(g, z, t[2], t[3]));        // (B, T, D)
}

static const char *const TYPES[] = {"houlsby", "pfeiffer"};

int dt_bottleneck_create(dt_ctx *ctx, const dt_llama *m, dt_bottleneck_type type, int size, uint64_t seed,
                         const char *where, dt_adapter **out) {
    *out = NULL;
    const int L = m->cfg.num_layers;
    const int64_t D = m->cfg.hidden_size;
    if (size <= 0 || size > 65536) return dt_fail(ctx, DT_EINPUT, "%s: bottleneck_size %d: expected 1 to 65536", where, size);
    const int blocks = type == DT_BN_HOULSBY ? 2 : 1, n = L * blocks * 4;
    dt_adapter *a = calloc(1, sizeof *a);
    bn_state *s = calloc(1, sizeof *s);
    dt_adapter_layout lo;
    int rc = dt_adapter_layout_init(ctx, &lo, n);
    if (s) {
        s->t = calloc((size_t)L * 8, sizeof *s->t);
        s->at = calloc((size_t)L * DT_MOD_COUNT, sizeof *s->at);
    }
    if (!rc && !(a && s && s->t && s->at)) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (a) { a->method = &dt_method_bottleneck; a->state = s; } else bn_free(s);
    static const char *const PARTS[4] = {"down.weight", "down.bias", "up.weight", "up.bias"};
    const int64_t dims[4][2] = {{size, D}, {size, 1}, {D, size}, {D, 1}};
    char buf[256];
    for (int l = 0, i = 0; l < L && !rc; l++)
        for (int b = 2 - blocks; b < 2 && !rc; b++)
            for (int p = 0; p < 4 && !rc; p++, i++) {
                snprintf(buf, sizeof buf, "base_model.model.model.layers.%d.%s.adapter.%s", l, b ? "mlp" : "self_attn", PARTS[p]);
                rc = dt_adapter_layout_set(ctx, &lo, i, buf, p % 2 ? 1 : 2, dims[p][0], dims[p][1]);
            }
    if (!rc) {
        s->type = type;
        s->size = size;
    }
    rc = dt_adapter_layout_commit(ctx, &lo, a, rc);
    if (rc) { dt_adapter_free(a); return rc; }
    // down as nn.Linear's default (U(-1/sqrt(D), 1/sqrt(D)) weights), its bias and all of up zero.
    dt_rng rng = {seed};
    const double bound = 1.0 / sqrt((double)D);
    for (int l = 0, i = 0; l < L; l++)
        for (int b = 2 - blocks; b < 2; b++, i += 4) {
            dt_tensor *down = &a->tensors[i];
            for (int64_t e = 0; e < dt_numel(down); e++) dt_f32(down)[e] = (float)((2.0 * dt_rng_uniform(&rng) - 1.0) * bound);
            for (int p = 0; p < 4; p++) s->t[((size_t)l * 2 + (size_t)b) * 4 + (size_t)p] = &a->tensors[i + p];
            s->at[(size_t)l * DT_MOD_COUNT + (size_t)(b ? DT_MOD_DOWN : DT_MOD_O)] = true;
        }
    a->view.site = (dt_llama_site){bn_site, s, s->at};
    *out = a;
    return DT_OK;
}

static int bn_from_json(dt_ctx *ctx, json_t *cfg, const char *path, const dt_llama *m, dt_adapter **out) {
    const char *type = json_string_value(json_object_get(cfg, "bottleneck_type"));
    const char *act = json_string_value(json_object_get(cfg, "non_linearity"));
    json_t *size = json_object_get(cfg, "bottleneck_size");
    int t = -1;
    for (int i = 0; type && i < 2; i++)
        if (!strcmp(type, TYPES[i])) t = i;
    if (t < 0) return dt_fail(ctx, DT_EINPUT, "%s: key 'bottleneck_type': expected \"houlsby\" or \"pfeiffer\"", path);
    if (!json_is_integer(size)) return dt_fail(ctx, DT_EINPUT, "%s: key 'bottleneck_size': expected an integer", path);
    if (act && strcmp(act, "relu")) return dt_fail(ctx, DT_EINPUT, "%s: key 'non_linearity': '%s' is not supported (relu)", path, act);
    char where[4200];
    snprintf(where, sizeof where, "%s: key 'bottleneck_size'", path);
    return dt_bottleneck_create(ctx, m, (dt_bottleneck_type)t, (int)json_integer_value(size), 0, where, out);
}

static void bn_to_json(const dt_adapter *a, const dt_model_config *mc, json_t *c) {
    (void)mc;
    const bn_state *s = a->state;
    json_object_set_new(c, "bottleneck_type", json_string(TYPES[s->type]));
    json_object_set_new(c, "bottleneck_size", json_integer(s->size));
    json_object_set_new(c, "non_linearity", json_string("relu"));
}

static const char *const BN_KEYS[] = {"bottleneck_type", "bottleneck_size", "non_linearity", NULL};

const dt_method dt_method_bottleneck = {
    .name = "bottleneck",
    .peft_type = "BOTTLENECK",
    .keys = BN_KEYS,
    .from_json = bn_from_json,
    .to_json = bn_to_json,
    .no_merge = "the ReLU between a bottleneck adapter's two projections has no fold into the linear weights",
    .free_state = bn_free,
};
