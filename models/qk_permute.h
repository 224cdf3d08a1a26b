// llama.cpp's q/k row order for the "llama" architecture. llama.cpp's RoPE rotates adjacent pairs
// where Hugging Face rotates the two halves of each head, so convert_hf_to_gguf.py interleaves each
// head's halves in the q/k weights (and biases). Reading a GGUF base undoes it (models/gguf_model.c);
// exporting an adapter or a merged model redoes it (peft/export_gguf.c, peft/merge_*.c). It lives here,
// in models/, so that the model loader needs nothing from peft/.
#ifndef DT_QK_PERMUTE_H
#define DT_QK_PERMUTE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "models/config.h"

// Whether the converter permutes the rows of q/k weights (and biases) for this model: only for
// "llama" (Llama, Mistral), whose llama.cpp RoPE rotates adjacent pairs.
bool dt_gguf_permutes_qk(const dt_model_config *cfg);

// The converter's LlamaModel.permute: the rows of src (rows, row_bytes) grouped in n_head heads of
// rows/n_head rows, each head's two halves interleaved: dst row h*hd + 2i + j = src row h*hd + j*hd/2 + i.
// inverse undoes it. rows must be a multiple of 2*n_head; dst and src must not overlap.
void dt_gguf_permute_rows(void *dst, const void *src, int64_t rows, size_t row_bytes, int n_head, bool inverse);
// The same map one row at a time: the Hugging Face row that becomes llama.cpp row `row`.
int64_t dt_gguf_qk_source_row(int64_t row, int64_t rows, int n_head);

#endif
