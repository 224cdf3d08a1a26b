// One way in for model weights, whatever the source: a Hugging Face folder (config.json + model.safetensors
// or a sharded index), a llama2.c .bin or a llama.cpp .gguf. Gives the config and HF-named tensors
// (a GGUF's quantized ones as DT_ST_BLOCK views, see gguf_model.h).
#ifndef DT_WEIGHTS_H
#define DT_WEIGHTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "models/config.h"
#include "models/safetensors.h"

typedef struct dt_weights dt_weights;

// path: a folder with config.json and safetensors, a llama2.c .bin file (by its ".bin" suffix) or a GGUF
// model (by ".gguf").
int dt_weights_open(dt_ctx *ctx, const char *path, dt_model_config *cfg, dt_weights **out);
void dt_weights_close(dt_weights *w); // NULL is fine
const char *dt_weights_path(const dt_weights *w);
size_t dt_weights_count(const dt_weights *w);
const dt_st_tensor *dt_weights_at(const dt_weights *w, size_t i);
const dt_st_tensor *dt_weights_find(const dt_weights *w, const char *name); // NULL when absent
// The type a matrix stored as t keeps when loaded as stored (DT_DTYPE_STORED): t's own when it is bf16
// or f16, else f32 (t NULL included).
dt_dtype dt_weights_stored_type(const dt_st_tensor *t);
struct dt_gguf_model;
// The GGUF model behind w, or NULL for other sources (its ggml types, rope factors, file).
const struct dt_gguf_model *dt_weights_gguf(const dt_weights *w);
// RoPE factors stored with the weights (a GGUF's rope_freqs.weight: head_dim/2 divisors of the
// frequencies, llama.cpp's form of llama3 scaling), or NULL.
const float *dt_weights_rope_factors(const dt_weights *w);
// DT_EINPUT naming the source's tensors that are not in used[0..n_used) (pointers from dt_weights_find):
// a config that declares fewer layers than the files hold must not train on part of the model. Ignored,
// as transformers ignores them: RoPE's cached "rotary_emb.inv_freq" buffers, and lm_head.weight when
// the config ties the output to the embedding.
int dt_weights_check_unused(dt_ctx *ctx, const dt_weights *w, const dt_st_tensor *const *used, int n_used, bool tied);
// Shape-checked copies, like dt_st_read_f32 / dt_st_read_as.
int dt_weights_read_f32(dt_ctx *ctx, const dt_weights *w, const char *name, float *dst, int ndim,
                        const int64_t *expect_shape);
int dt_weights_read_as(dt_ctx *ctx, const dt_weights *w, const char *name, dt_dtype dst_dtype, void *dst,
                       int ndim, const int64_t *expect_shape);

#endif
