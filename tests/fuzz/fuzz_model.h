// Shared by the model harnesses (fuzz_gguf_model, fuzz_hf_model, fuzz_llama2c; fuzz_adapter runs
// fuzz_forward through its adapters): a model file or folder
// is loaded on the CPU's f32 backend, its matrices as wtype (DT_F32: widened, as dt_llama_load_cpu does;
// DT_BF16/DT_F16: kept or mapped in place as dt_llama_load_typed does; quantized ones stay quantized),
// and runs a 3-token forward with its loss, grad off. A shape the loader let through but the forward
// reads past, or a weight type a kernel does not expect, is found there.
#ifndef DT_FUZZ_MODEL_H
#define DT_FUZZ_MODEL_H
#include "autograd/dtype_choice.h"
#include "autograd/graph.h"
#include "models/llama.h"
#include "tests/fuzz/fuzz_util.h"

// A 3-token forward with loss (grad off) of m, through ad when not NULL: the first, second and last ids.
static inline void fuzz_forward(const dt_llama *m, const dt_llama_adapters *ad) {
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    const int32_t V = m->cfg.vocab_size;
    const int32_t ids[3] = {0, 1 % V, (V - 1) % V};
    dt_graph g;
    if (dt_graph_init(&ctx, &g, m->be, 0)) return;
    g.grad_enabled = false;
    dt_batch b = {1, 3, ids, ids, NULL, NULL};
    dt_llama_out out;
    volatile float sink = 0;
    if (!dt_llama_forward(&ctx, &g, m, ad, &b, 0, true, &out)) sink += dt_f32(out.logits)[0];
    (void)sink;
    dt_graph_free(&g);
}

static inline void fuzz_model_forward(const char *path, dt_dtype wtype) {
    dt_ctx ctx;
    fuzz_ctx(&ctx);
    dt_llama *m;
    if (wtype == DT_F32 || wtype == DT_DTYPE_STORED ? dt_llama_load_cpu(&ctx, path, wtype, "fuzz", &m)
                                                    : dt_llama_load_typed(&ctx, path, dt_backend_cpu(), wtype, &m))
        return;
    fuzz_forward(m, NULL);
    dt_llama_free(m);
}

#endif
