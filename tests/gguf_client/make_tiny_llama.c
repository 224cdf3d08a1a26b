// Writes tiny random Llama models with our GGUF writer, for checking them with a real llama.cpp
// (tests/gguf_client/check_tiny.mjs). Not part of `make test`; see README.md here for how to build it.
//   make_tiny_llama TOKENIZER_DIR OUT_DIR [N_VOCAB]     (N_VOCAB: embedding rows, default 32000)
// writes OUT_DIR/base.gguf (random weights, the tokenizer's metadata), OUT_DIR/lora.gguf (a LoRA adapter on
// attn_q and attn_v of every layer) and OUT_DIR/merged.gguf (base with W + alpha/r * B A folded in), so that
// base + lora and merged must give the same logits.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/context.h"
#include "models/gguf.h"
#include "models/gguf_tokenizer.h"
#include "models/gguf_write.h"

enum { N_EMBD = 64, N_HEAD = 4, N_HEAD_KV = 2, HEAD_DIM = N_EMBD / N_HEAD, N_FF = 128, N_LAYER = 2,
       N_CTX = 256, RANK = 4 };
static const float LORA_ALPHA = 8.0f;

// The model's tensors: one table. rows == 0 means a 1-D tensor of `cols` (a norm weight), rows == VOCAB
// the vocabulary size.
enum { VOCAB = -1 };
typedef struct { const char *name; uint32_t type; int64_t rows, cols; bool lora; } wspec;
static const wspec GLOBAL[] = {
    {"token_embd.weight", DT_GGML_F16, VOCAB, N_EMBD, false},
    {"output_norm.weight", DT_GGML_F32, 0, N_EMBD, false},
    {"output.weight", DT_GGML_F32, VOCAB, N_EMBD, false},
};
static const wspec LAYER[] = {
    {"attn_norm.weight", DT_GGML_F32, 0, N_EMBD, false},
    {"attn_q.weight", DT_GGML_F32, N_HEAD * HEAD_DIM, N_EMBD, true},
    {"attn_k.weight", DT_GGML_F32, N_HEAD_KV * HEAD_DIM, N_EMBD, false},
    {"attn_v.weight", DT_GGML_F32, N_HEAD_KV * HEAD_DIM, N_EMBD, true},
    {"attn_output.weight", DT_GGML_F16, N_EMBD, N_HEAD * HEAD_DIM, false},
    {"ffn_norm.weight", DT_GGML_F32, 0, N_EMBD, false},
    {"ffn_gate.weight", DT_GGML_BF16, N_FF, N_EMBD, false},
    {"ffn_up.weight", DT_GGML_BF16, N_FF, N_EMBD, false},
    {"ffn_down.weight", DT_GGML_BF16, N_EMBD, N_FF, false},
};
#define N_LAYER_TENSORS (sizeof LAYER / sizeof LAYER[0])
#define N_TENSORS (sizeof GLOBAL / sizeof GLOBAL[0] + N_LAYER * N_LAYER_TENSORS)

// Tensor i of the model: its spec (rows resolved) and full name.
static wspec tensor_at(size_t i, int64_t n_vocab, char name[64]) {
    wspec s;
    if (i < sizeof GLOBAL / sizeof GLOBAL[0]) {
        snprintf(name, 64, "%s", GLOBAL[i].name);
        s = GLOBAL[i];
    } else {
        i -= sizeof GLOBAL / sizeof GLOBAL[0];
        snprintf(name, 64, "blk.%zu.%s", i / N_LAYER_TENSORS, LAYER[i % N_LAYER_TENSORS].name);
        s = LAYER[i % N_LAYER_TENSORS];
    }
    if (s.rows == VOCAB) s.rows = n_vocab;
    return s;
}

// Deterministic uniform values in [-a, a), seeded by the tensor name.
static void random_fill(float *x, size_t n, const char *name, float a, float center) {
    uint64_t s = 1469598103934665603ull;
    for (const char *c = name; *c; c++) s = (s ^ (uint8_t)*c) * 1099511628211ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = center + a * ((float)(s >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
    }
}

// w (out, in) += scale * b (out, r) @ a (r, in)
static void fold_lora(float *w, const float *a, const float *b, int64_t out, int64_t in, float scale) {
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            double acc = 0;
            for (int r = 0; r < RANK; r++) acc += (double)b[o * RANK + r] * a[r * in + i];
            w[o * in + i] += scale * (float)acc;
        }
}

static void lora_names(const char *weight, char a[80], char b[80]) {
    snprintf(a, 80, "%s.lora_a", weight);
    snprintf(b, 80, "%s.lora_b", weight);
}

static int set_llama_keys(dt_ctx *ctx, dt_gguf_writer *w, const char *name, int64_t n_vocab) {
    int st = dt_gguf_set_str(ctx, w, "general.architecture", "llama");
    st = st ? st : dt_gguf_set_str(ctx, w, "general.name", name);
    st = st ? st : dt_gguf_set_u32(ctx, w, "llama.context_length", N_CTX);
    st = st ? st : dt_gguf_set_u32(ctx, w, "llama.embedding_length", N_EMBD);
    st = st ? st : dt_gguf_set_u32(ctx, w, "llama.block_count", N_LAYER);
    st = st ? st : dt_gguf_set_u32(ctx, w, "llama.feed_forward_length", N_FF);
    st = st ? st : dt_gguf_set_u32(ctx, w, "llama.rope.dimension_count", HEAD_DIM);
    st = st ? st : dt_gguf_set_u32(ctx, w, "llama.attention.head_count", N_HEAD);
    st = st ? st : dt_gguf_set_u32(ctx, w, "llama.attention.head_count_kv", N_HEAD_KV);
    st = st ? st : dt_gguf_set_f32(ctx, w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    st = st ? st : dt_gguf_set_f32(ctx, w, "llama.rope.freq_base", 10000.0f);
    st = st ? st : dt_gguf_set_u32(ctx, w, "llama.vocab_size", (uint32_t)n_vocab);
    return st;
}

// The LoRA factors of one weight: a (RANK, in), b (out, RANK).
static void lora_factors(const char *weight, const wspec *s, float *a, float *b) {
    char an[80], bn[80];
    lora_names(weight, an, bn);
    random_fill(a, (size_t)RANK * s->cols, an, 0.5f, 0.0f);
    random_fill(b, (size_t)s->rows * RANK, bn, 0.5f, 0.0f);
}

static int write_model(dt_ctx *ctx, const char *path, const char *tok_dir, int64_t n_vocab, bool merged) {
    dt_gguf_writer *w;
    int st = dt_gguf_writer_new(ctx, path, &w);
    st = st ? st : set_llama_keys(ctx, w, merged ? "tiny-llama-merged" : "tiny-llama", n_vocab);
    dt_gguf_tok_opts opts = {.n_vocab = n_vocab};
    st = st ? st : dt_gguf_add_tokenizer(ctx, w, tok_dir, &opts);
    char name[64];
    for (size_t i = 0; i < N_TENSORS && !st; i++) {
        const wspec sp = tensor_at(i, n_vocab, name), *s = &sp;
        st = s->rows ? dt_gguf_add_tensor(ctx, w, name, s->type, 2, (int64_t[]){s->rows, s->cols})
                     : dt_gguf_add_tensor(ctx, w, name, s->type, 1, (int64_t[]){s->cols});
    }
    for (size_t i = 0; i < N_TENSORS && !st; i++) {
        const wspec sp = tensor_at(i, n_vocab, name), *s = &sp;
        size_t n = (size_t)(s->rows ? s->rows : 1) * (size_t)s->cols;
        float *x = malloc(n * sizeof *x);    // (rows, cols)
        void *conv = malloc(n * sizeof *x);  // the same in the stored type
        if (s->rows) random_fill(x, n, name, 1.0f / sqrtf((float)s->cols), 0.0f);
        else random_fill(x, n, name, 0.1f, 1.0f);
        if (merged && s->lora) {
            float *a = malloc((size_t)RANK * s->cols * sizeof *a), *b = malloc((size_t)s->rows * RANK * sizeof *b);
            lora_factors(name, s, a, b);
            fold_lora(x, a, b, s->rows, s->cols, LORA_ALPHA / RANK);
            free(a);
            free(b);
        }
        dt_dtype dt;
        dt_ggml_to_dtype(s->type, &dt);
        dt_convert_from_f32(conv, dt, x, n);
        st = dt_gguf_write_tensor(ctx, w, name, conv);
        free(x);
        free(conv);
    }
    st = st ? st : dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    return st ? st : dt_gguf_check_spec(ctx, path);
}

// A LoRA adapter as llama.cpp loads it: general.type "adapter", adapter.type "lora", adapter.lora.alpha,
// and for each adapted weight W (out, in) the tensors W.lora_a (RANK, in) and W.lora_b (out, RANK).
static int write_lora(dt_ctx *ctx, const char *path, int64_t n_vocab) {
    dt_gguf_writer *w;
    int st = dt_gguf_writer_new(ctx, path, &w);
    st = st ? st : dt_gguf_set_str(ctx, w, "general.architecture", "llama");
    st = st ? st : dt_gguf_set_str(ctx, w, "general.type", "adapter");
    st = st ? st : dt_gguf_set_str(ctx, w, "adapter.type", "lora");
    st = st ? st : dt_gguf_set_f32(ctx, w, "adapter.lora.alpha", LORA_ALPHA);
    char name[64], an[80], bn[80];
    for (size_t i = 0; i < N_TENSORS && !st; i++) {
        const wspec sp = tensor_at(i, n_vocab, name), *s = &sp;
        if (!s->lora) continue;
        lora_names(name, an, bn);
        st = dt_gguf_add_tensor(ctx, w, an, DT_GGML_F32, 2, (int64_t[]){RANK, s->cols});
        st = st ? st : dt_gguf_add_tensor(ctx, w, bn, DT_GGML_F32, 2, (int64_t[]){s->rows, RANK});
    }
    for (size_t i = 0; i < N_TENSORS && !st; i++) {
        const wspec sp = tensor_at(i, n_vocab, name), *s = &sp;
        if (!s->lora) continue;
        float *a = malloc((size_t)RANK * s->cols * sizeof *a), *b = malloc((size_t)s->rows * RANK * sizeof *b);
        lora_factors(name, s, a, b);
        lora_names(name, an, bn);
        st = dt_gguf_write_tensor(ctx, w, an, a);
        st = st ? st : dt_gguf_write_tensor(ctx, w, bn, b);
        free(a);
        free(b);
    }
    st = st ? st : dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    return st ? st : dt_gguf_check_spec(ctx, path);
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: make_tiny_llama TOKENIZER_DIR OUT_DIR [N_VOCAB]\n");
        return 2;
    }
    int64_t n_vocab = argc == 4 ? atoll(argv[3]) : 32000;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char base[1024], lora[1024], merged[1024];
    snprintf(base, sizeof base, "%s/base.gguf", argv[2]);
    snprintf(lora, sizeof lora, "%s/lora.gguf", argv[2]);
    snprintf(merged, sizeof merged, "%s/merged.gguf", argv[2]);
    int st = write_model(&ctx, base, argv[1], n_vocab, false);
    st = st ? st : write_lora(&ctx, lora, n_vocab);
    st = st ? st : write_model(&ctx, merged, argv[1], n_vocab, true);
    if (st) {
        fprintf(stderr, "make_tiny_llama: %s\n", ctx.msg);
        return st == DT_EINPUT ? 2 : 1;
    }
    printf("wrote %s, %s, %s\n", base, lora, merged);
    return 0;
}
