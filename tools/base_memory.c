// The base model's memory line printed by train.
#include "tools/base_memory.h"
#include <stdio.h>
#include "models/llama_quant.h"

void dt_print_base_memory(const dt_llama *m) {
    size_t quant = 0, total = dt_llama_base_bytes(m, &quant);
    const dt_tensor *w = &m->layers[0].w[DT_MOD_Q];
    fprintf(stderr, "base: %zu parameters, %.1f MiB (%.2f bits/weight; linear weights %s, %.1f MiB of them quantized)\n",
            m->param_count, (double)total / 1048576.0, m->param_count ? 8.0 * (double)total / (double)m->param_count : 0.0,
            dt_dtype_name(w->dtype), (double)quant / 1048576.0);
}
