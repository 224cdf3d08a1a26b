// llama2.c legacy checkpoint (.bin) reader: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; a negative vocab_size means an untied classifier is stored at the end), then
// fp32 tensors in run.c's order. The tensors are exposed under their Hugging Face names as F32
// dt_st_tensor entries (w1 = gate_proj, w3 = up_proj, w2 = down_proj), with q/k rows permuted from
// llama2.c's adjacent-pair RoPE layout into HF's rotate-half layout, so the rest of the code sees only
// the HF layout. The precomputed freq_cis tables are skipped. The file size must match the header exactly.
#ifndef DT_LLAMA2C_H
#define DT_LLAMA2C_H
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "models/config.h"
#include "models/safetensors.h"

typedef struct dt_llama2c dt_llama2c;

// Fills cfg as a LlamaForCausalLM (rms_norm_eps 1e-5, rope_theta 10000, max_position_embeddings =
// seq_len, tie_word_embeddings unless the classifier is stored, F32, bos 1, eos 2, rope_interleaved false).
int dt_llama2c_load(dt_ctx *ctx, const char *path, dt_model_config *cfg, dt_llama2c **out);
void dt_llama2c_free(dt_llama2c *m); // NULL is fine

size_t dt_llama2c_count(const dt_llama2c *m);
const dt_st_tensor *dt_llama2c_at(const dt_llama2c *m, size_t i);
// By HF name ("model.layers.0.self_attn.q_proj.weight"); NULL when absent. data is aligned f32.
const dt_st_tensor *dt_llama2c_find(const dt_llama2c *m, const char *name);
// Copies a tensor into dst after checking its shape (like dt_st_read_f32); errors name the file.
int dt_llama2c_read_f32(dt_ctx *ctx, const dt_llama2c *m, const char *name, float *dst, int ndim,
                        const int64_t *expect_shape);

#endif
