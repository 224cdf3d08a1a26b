// The tensor-name table: HF and GGUF spellings, module lookups, formatting and parsing.
#include <stdbool.h>
#include "models/tensor_names.h"
#include "tests/test_util.h"

int main(void) {
    char b[256];
    int n = dt_tn_layer(b, sizeof b, 3, DT_LT_Q);
    TEST_CHECK("hf: q_proj weight", n > 0 && !strcmp(b, "model.layers.3.self_attn.q_proj.weight"), "%s", b);
    dt_tn_layer(b, sizeof b, 0, DT_LT_K_BIAS);
    TEST_CHECK("hf: k_proj bias", !strcmp(b, "model.layers.0.self_attn.k_proj.bias"), "%s", b);
    dt_tn_layer(b, sizeof b, 11, DT_LT_FFN_NORM);
    TEST_CHECK("hf: post_attention_layernorm", !strcmp(b, "model.layers.11.post_attention_layernorm.weight"), "%s", b);
    dt_tn_layer(b, sizeof b, 2, DT_LT_Q_NORM);
    TEST_CHECK("hf: qwen3 q_norm", !strcmp(b, "model.layers.2.self_attn.q_norm.weight"), "%s", b);
    dt_tn_layer_gguf(b, sizeof b, 7, DT_LT_O);
    TEST_CHECK("gguf: attn_output", !strcmp(b, "blk.7.attn_output.weight"), "%s", b);
    dt_tn_layer_gguf(b, sizeof b, 0, DT_LT_ATTN_NORM);
    TEST_CHECK("gguf: attn_norm", !strcmp(b, "blk.0.attn_norm.weight"), "%s", b);
    dt_tn_layer_gguf(b, sizeof b, 1, DT_LT_K_NORM);
    TEST_CHECK("gguf: attn_k_norm", !strcmp(b, "blk.1.attn_k_norm.weight"), "%s", b);
    TEST_CHECK("globals", !strcmp(dt_tn_global(DT_GT_EMBED), "model.embed_tokens.weight") &&
               !strcmp(dt_tn_global(DT_GT_NORM), "model.norm.weight") && !strcmp(dt_tn_global(DT_GT_LM_HEAD), "lm_head.weight") &&
               !strcmp(dt_tn_global_gguf(DT_GT_EMBED), "token_embd.weight") &&
               !strcmp(dt_tn_global_gguf(DT_GT_NORM), "output_norm.weight") &&
               !strcmp(dt_tn_global_gguf(DT_GT_LM_HEAD), "output.weight"), "mismatch");
    n = dt_tn_module(b, sizeof b, "base_model.model.", 0, DT_MOD_V, ".lora_A.weight");
    TEST_CHECK("module with PEFT prefix and suffix",
               n > 0 && !strcmp(b, "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"), "%s", b);
    dt_tn_module(b, sizeof b, NULL, 5, DT_MOD_DOWN, NULL);
    TEST_CHECK("module without prefix or suffix", !strcmp(b, "model.layers.5.mlp.down_proj"), "%s", b);
    n = dt_tn_layer(b, 10, 3, DT_LT_Q);
    TEST_CHECK("too small a buffer is reported", n == -1 && strlen(b) == 9, "%d", n);
    TEST_CHECK("module names", dt_module_from_name("gate_proj") == DT_MOD_GATE &&
               dt_module_from_name("self_attn.o_proj") == DT_MOD_O && dt_module_from_name("lm_head") == -1 &&
               !strcmp(dt_module_short(DT_MOD_UP), "up_proj") && !strcmp(dt_module_path(DT_MOD_K), "self_attn.k_proj") &&
               !strcmp(dt_module_gguf(DT_MOD_GATE), "ffn_gate"), "mismatch");
    // Every module's weight is the layer tensor with the same index.
    bool ok = true;
    for (int m = 0; m < DT_MOD_COUNT; m++) {
        char x[256];
        dt_tn_layer(b, sizeof b, 4, (dt_layer_tensor)m);
        dt_tn_module(x, sizeof x, "", 4, (dt_module)m, ".weight");
        ok = ok && !strcmp(b, x);
    }
    TEST_CHECK("module m's weight is layer tensor m", ok, "mismatch");
    int layer;
    dt_layer_tensor t;
    ok = true;
    for (int i = 0; i < DT_LT_COUNT; i++) {
        dt_tn_layer(b, sizeof b, 23, (dt_layer_tensor)i);
        ok = ok && dt_tn_parse_layer(b, &layer, &t) == 0 && layer == 23 && t == (dt_layer_tensor)i;
    }
    TEST_CHECK("parse inverts format for every layer tensor", ok, "mismatch");
    TEST_CHECK("parse refuses other names",
               dt_tn_parse_layer("model.layers.01.input_layernorm.weight", &layer, &t) &&
               dt_tn_parse_layer("model.layers.-1.input_layernorm.weight", &layer, &t) &&
               dt_tn_parse_layer("model.layers.1.input_layernorm.bias", &layer, &t) &&
               dt_tn_parse_layer("model.layers..input_layernorm.weight", &layer, &t) &&
               dt_tn_parse_layer("model.norm.weight", &layer, &t), "accepted");
    TEST_EXIT();
}
