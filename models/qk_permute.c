// llama.cpp's q/k row permutation (see qk_permute.h).
#include "models/qk_permute.h"
#include <string.h>

bool dt_gguf_permutes_qk(const dt_model_config *cfg) { return cfg->arch == DT_ARCH_LLAMA || cfg->arch == DT_ARCH_MISTRAL; }

int64_t dt_gguf_qk_source_row(int64_t row, int64_t rows, int n_head) {
    // reshape(n_head, 2, hd/2, ...).swapaxes(1, 2): llama row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i.
    const int64_t hd = rows / n_head, h = row / hd, within = row % hd;
    return h * hd + (within % 2) * (hd / 2) + within / 2;
}

void dt_gguf_permute_rows(void *dst, const void *src, int64_t rows, size_t row_bytes, int n_head, bool inverse) {
    char *d = dst;
    const char *s = src;
    for (int64_t r = 0; r < rows; r++) {
        int64_t hf = dt_gguf_qk_source_row(r, rows, n_head);
        if (inverse) memcpy(d + (size_t)hf * row_bytes, s + (size_t)r * row_bytes, row_bytes);
        else memcpy(d + (size_t)r * row_bytes, s + (size_t)hf * row_bytes, row_bytes);
    }
}
