// The tensor-name tables. Hugging Face names follow transformers' LlamaForCausalLM state dict (also
// Mistral/Qwen2/Qwen3); GGUF names follow llama.cpp's tensor naming (blk.N.*).
#include "models/tensor_names.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *short_name, *path, *gguf; } MODULES[DT_MOD_COUNT] = {
    [DT_MOD_Q] = {"q_proj", "self_attn.q_proj", "attn_q"},
    [DT_MOD_K] = {"k_proj", "self_attn.k_proj", "attn_k"},
    [DT_MOD_V] = {"v_proj", "self_attn.v_proj", "attn_v"},
    [DT_MOD_O] = {"o_proj", "self_attn.o_proj", "attn_output"},
    [DT_MOD_GATE] = {"gate_proj", "mlp.gate_proj", "ffn_gate"},
    [DT_MOD_UP] = {"up_proj", "mlp.up_proj", "ffn_up"},
    [DT_MOD_DOWN] = {"down_proj", "mlp.down_proj", "ffn_down"},
};

static const struct { const char *hf, *gguf; } LAYER[DT_LT_COUNT] = {
    [DT_LT_Q] = {"self_attn.q_proj.weight", "attn_q.weight"},
    [DT_LT_K] = {"self_attn.k_proj.weight", "attn_k.weight"},
    [DT_LT_V] = {"self_attn.v_proj.weight", "attn_v.weight"},
    [DT_LT_O] = {"self_attn.o_proj.weight", "attn_output.weight"},
    [DT_LT_GATE] = {"mlp.gate_proj.weight", "ffn_gate.weight"},
    [DT_LT_UP] = {"mlp.up_proj.weight", "ffn_up.weight"},
    [DT_LT_DOWN] = {"mlp.down_proj.weight", "ffn_down.weight"},
    [DT_LT_Q_BIAS] = {"self_attn.q_proj.bias", "attn_q.bias"},
    [DT_LT_K_BIAS] = {"self_attn.k_proj.bias", "attn_k.bias"},
    [DT_LT_V_BIAS] = {"self_attn.v_proj.bias", "attn_v.bias"},
    [DT_LT_Q_NORM] = {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    [DT_LT_K_NORM] = {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    [DT_LT_ATTN_NORM] = {"input_layernorm.weight", "attn_norm.weight"},
    [DT_LT_FFN_NORM] = {"post_attention_layernorm.weight", "ffn_norm.weight"},
};

static const struct { const char *hf, *gguf; } GLOBAL[DT_GT_COUNT] = {
    [DT_GT_EMBED] = {"model.embed_tokens.weight", "token_embd.weight"},
    [DT_GT_NORM] = {"model.norm.weight", "output_norm.weight"},
    [DT_GT_LM_HEAD] = {"lm_head.weight", "output.weight"},
};

#define HF_LAYER_PREFIX "model.layers."

const char *dt_module_short(dt_module m) { return (unsigned)m < DT_MOD_COUNT ? MODULES[m].short_name : NULL; }
const char *dt_module_path(dt_module m) { return (unsigned)m < DT_MOD_COUNT ? MODULES[m].path : NULL; }
const char *dt_module_gguf(dt_module m) { return (unsigned)m < DT_MOD_COUNT ? MODULES[m].gguf : NULL; }

int dt_module_from_name(const char *name) {
    for (int m = 0; m < DT_MOD_COUNT; m++)
        if (!strcmp(name, MODULES[m].short_name) || !strcmp(name, MODULES[m].path)) return m;
    return -1;
}

const char *dt_tn_layer_suffix(dt_layer_tensor t) { return (unsigned)t < DT_LT_COUNT ? LAYER[t].hf : NULL; }
const char *dt_tn_layer_gguf_suffix(dt_layer_tensor t) { return (unsigned)t < DT_LT_COUNT ? LAYER[t].gguf : NULL; }
const char *dt_tn_global(dt_global_tensor t) { return (unsigned)t < DT_GT_COUNT ? GLOBAL[t].hf : NULL; }
const char *dt_tn_global_gguf(dt_global_tensor t) { return (unsigned)t < DT_GT_COUNT ? GLOBAL[t].gguf : NULL; }

static int fit(int k, size_t n) { return k < 0 || (size_t)k >= n ? -1 : k; }

int dt_tn_layer(char *buf, size_t n, int layer, dt_layer_tensor t) {
    if ((unsigned)t >= DT_LT_COUNT) return -1;
    return fit(snprintf(buf, n, HF_LAYER_PREFIX "%d.%s", layer, LAYER[t].hf), n);
}

int dt_tn_layer_gguf(char *buf, size_t n, int layer, dt_layer_tensor t) {
    if ((unsigned)t >= DT_LT_COUNT) return -1;
    return fit(snprintf(buf, n, "blk.%d.%s", layer, LAYER[t].gguf), n);
}

int dt_tn_module(char *buf, size_t n, const char *prefix, int layer, dt_module m, const char *suffix) {
    if ((unsigned)m >= DT_MOD_COUNT) return -1;
    return fit(snprintf(buf, n, "%s" HF_LAYER_PREFIX "%d.%s%s", prefix ? prefix : "", layer, MODULES[m].path,
                        suffix ? suffix : ""), n);
}

int dt_tn_parse_layer(const char *name, int *layer, dt_layer_tensor *t) {
    size_t pl = strlen(HF_LAYER_PREFIX);
    if (strncmp(name, HF_LAYER_PREFIX, pl)) return -1;
    const char *p = name + pl;
    // Digits only, no sign or leading zero, so that every name has exactly one spelling.
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return -1;
    long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > 1000000) return -1;
    }
    if (*p++ != '.') return -1;
    for (int i = 0; i < DT_LT_COUNT; i++)
        if (!strcmp(p, LAYER[i].hf)) {
            *layer = (int)v;
            *t = (dt_layer_tensor)i;
            return 0;
        }
    return -1;
}
