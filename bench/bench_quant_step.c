// QLoRA training-step benchmark on quantized bases: LoRA r = 16 on every linear, B = 1, T = 512 (or
// DT_BENCH_T), forward + backward + AdamW on DT_BENCH_THREADS threads (default 2).
//   1. Llama-3.2-1B shape (hidden 2048, 16 layers, 32/8 heads, intermediate 8192, vocab 128256, tied):
//      Q8_0, Q4_K and NF4 bases against bf16, side by side; tokens/s and the ratio to bf16.
//   2. Llama-3-8B shape (hidden 4096, 32 layers, 32/8 heads, intermediate 14336, vocab 128256): a Q4_K
//      base (embeddings Q4_K, output Q6_K, as a Q4_K_M GGUF) and an NF4 base (linears NF4 with double
//      quantization, embeddings and head bf16, as QLoRA); peak RSS (must stay under 8 GiB) and tokens/s.
// Each configuration runs in its own child process, so each peak RSS is its own. Random weights are made
// here without ever holding a model in f32: 64 random rows per weight shape are quantized once and
// tiled over the rows (the speed and memory of a step do not depend on the values).
// DT_BENCH_ONLY=1b or 8b runs one part; DT_BENCH_STEPS sets the timed steps (default 2 for 1B, 1 for 8B,
// after one warm-up step for 1B).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "autograd/dtype.h"
#include "autograd/quant.h"
#include "autograd/rng.h"
#include "models/llama.h"
#include "models/llama_quant.h"
#include "optim/optim.h"
#include "peft/adapter.h"
#include "bench/bench_util.h"

enum { POOL = 64 }; // random rows per weight shape

static size_t al64(size_t n) { return (n + 63) & ~(size_t)63; }

// Bytes a (rows, cols) weight of type t takes here (NF4: nibbles, then its state).
static size_t weight_bytes(dt_dtype t, int64_t rows, int64_t cols) {
    return t == DT_NF4 ? dt_lq_bytes(DT_NF4, true, rows, cols) : al64(dt_type_row_bytes(t, cols) * (size_t)rows);
}

// Fills dst with a (rows, cols) weight of type t: POOL random rows (normal * 0.02) stored as t, tiled.
static int make_weight(dt_ctx *ctx, dt_dtype t, int64_t rows, int64_t cols, uint64_t seed, uint8_t *dst, dt_tensor *out) {
    const int64_t pr = rows < POOL ? rows : POOL;
    float *x = malloc((size_t)(pr * cols) * sizeof *x);
    if (!x) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    dt_rng r = {seed};
    for (int64_t i = 0; i < pr * cols; i++) x[i] = (float)(0.02 * dt_rng_normal(&r));
    const int64_t shape[2] = {rows, cols};
    if (t == DT_NF4) {
        // The pool's nibbles and absmax tiled, then the absmax of the whole tensor double-quantized.
        uint8_t *tmp = malloc(dt_lq_bytes(DT_NF4, false, pr, cols));
        dt_tensor pool;
        int rc = tmp ? dt_lq_fill(ctx, "pool", DT_NF4, false, x, pr, cols, tmp, &pool) : dt_fail(ctx, DT_ENOMEM, "out of memory");
        if (rc) { free(x); free(tmp); return rc; }
        const dt_nf4_state *ps = pool.aux;
        const int64_t nb_row = cols / DT_QK_NF4, nb = rows * nb_row;
        dt_nf4_state *st = (dt_nf4_state *)dst;
        *st = *ps;
        uint8_t *qs = dst + al64(sizeof *st), *qa = qs + al64((size_t)(rows * cols / 2));
        float *nested = (float *)(qa + al64((size_t)nb)), *absmax = malloc((size_t)nb * sizeof *absmax);
        for (int64_t row = 0; row < rows; row++) {
            memcpy(qs + row * (cols / 2), (const uint8_t *)pool.data + (row % pr) * (cols / 2), (size_t)(cols / 2));
            memcpy(absmax + row * nb_row, ps->absmax + (row % pr) * nb_row, (size_t)nb_row * sizeof *absmax);
        }
        dt_bnb_dynamic_map(st->nested_code);
        st->nested_block = DT_BNB_NESTED_BLOCK;
        dt_nf4_double_quant(absmax, nb, DT_BNB_NESTED_BLOCK, st->nested_code, qa, nested, &st->offset);
        st->absmax = NULL;
        st->qabsmax = qa;
        st->nested_absmax = nested;
        dt_tensor_set(out, DT_NF4, qs, 2, shape);
        out->aux = st;
        free(absmax);
        free(tmp);
    } else {
        const size_t rb = dt_type_row_bytes(t, cols);
        dt_type_traits_of(t)->from_f32(x, dst, pr * cols);
        for (int64_t row = pr; row < rows; row++) memcpy(dst + row * rb, dst + (row % pr) * rb, rb);
        dt_tensor_set(out, t, dst, 2, shape);
    }
    free(x);
    return DT_OK;
}

typedef struct { const char *label; dt_dtype linear, embed, head; } base_kind;

// A model of cfg with its linears stored as k->linear, embeddings as k->embed, an untied head as k->head.
static int build(dt_ctx *ctx, const dt_model_config *cfg, const base_kind *k, dt_llama **out) {
    const dt_backend *be = dt_backend_cpu();
    dt_llama *m = calloc(1, sizeof *m);
    if (!m || !(m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers))) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    const int64_t D = cfg->hidden_size, H = cfg->num_heads, KV = cfg->num_kv_heads, hd = cfg->head_dim, I = cfg->intermediate_size,
                  V = cfg->vocab_size;
    const int64_t rows[DT_MOD_COUNT] = {H * hd, KV * hd, KV * hd, D, I, I, D}, cols[DT_MOD_COUNT] = {D, D, D, H * hd, D, D, I};
    size_t bytes = weight_bytes(k->embed, V, D) + (cfg->tie_word_embeddings ? 0 : weight_bytes(k->head, V, D));
    bytes += al64((size_t)D * 4) * (1 + 2 * (size_t)cfg->num_layers) + al64((size_t)hd / 2 * 4);
    for (int l = 0; l < cfg->num_layers; l++)
        for (int t = 0; t < DT_MOD_COUNT; t++) bytes += weight_bytes(k->linear, rows[t], cols[t]);
    uint8_t *p = m->block = be->alloc(be, bytes);
    m->block_bytes = bytes;
    if (!p) return dt_fail(ctx, DT_ENOMEM, "cannot allocate %zu bytes", bytes);
    int rc = make_weight(ctx, k->embed, V, D, 1, p, &m->embed);
    p += weight_bytes(k->embed, V, D);
    if (!rc && !cfg->tie_word_embeddings) {
        rc = make_weight(ctx, k->head, V, D, 2, p, &m->lm_head);
        p += weight_bytes(k->head, V, D);
    } else {
        m->lm_head = m->embed;
    }
    size_t params = (size_t)(V * D) * (cfg->tie_word_embeddings ? 1 : 2);
    dt_tensor *norms[1 + 2 * 64];
    int nn = 0;
    norms[nn++] = &m->norm;
    for (int l = 0; l < cfg->num_layers && !rc; l++) {
        for (int t = 0; t < DT_MOD_COUNT && !rc; t++) {
            rc = make_weight(ctx, k->linear, rows[t], cols[t], 10 + (uint64_t)t, p, &m->layers[l].w[t]);
            p += weight_bytes(k->linear, rows[t], cols[t]);
            params += (size_t)(rows[t] * cols[t]);
        }
        norms[nn++] = &m->layers[l].attn_norm;
        norms[nn++] = &m->layers[l].ffn_norm;
    }
    for (int i = 0; i < nn; i++) {
        float *w = (float *)p;
        for (int64_t j = 0; j < D; j++) w[j] = 1.0f;
        dt_tensor_set(norms[i], DT_F32, w, 1, &D);
        p += al64((size_t)D * 4);
        params += (size_t)D;
    }
    m->inv_freq = (float *)p;
    for (int64_t i = 0; i < hd / 2; i++) m->inv_freq[i] = (float)(1.0 / pow((double)cfg->rope_theta, (double)(2 * i) / (double)hd));
    m->param_count = params;
    *out = m;
    return rc;
}

// One configuration in this (child) process: prints tokens/s, the base's size and the peak RSS.
static int run(const char *shape, const dt_model_config *cfg, const base_kind *k, int warmup, int steps, int64_t T, int threads) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    ctx.nthreads = threads;
    dt_ctx_apply_threads(&ctx);
    dt_llama *m = NULL;
    double t_build = now();
    if (build(&ctx, cfg, k, &m)) { fprintf(stderr, "%s %s: %s\n", shape, k->label, ctx.msg); return 1; }
    t_build = now() - t_build;
    size_t qbytes, base = dt_llama_base_bytes(m, &qbytes);
    dt_lora_config lc = {.r = 16, .alpha = 32, .dropout = 0.0f};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    dt_adapter *a;
    if (dt_lora_create(&ctx, m, &lc, 2, &a)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    for (size_t i = 0; i < a->n_params; i++) if (a->params[i] == 0) a->params[i] = 1e-3f; // non-zero B
    dt_optimizer opt;
    dt_optim_init(&ctx, &opt, DT_OPT_ADAMW, a->n_params, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f);
    int32_t *ids = malloc((size_t)T * 4), *labels = malloc((size_t)T * 4);
    for (int64_t i = 0; i < T; i++) ids[i] = labels[i] = (int32_t)((i * 7919) % cfg->vocab_size);
    dt_batch batch = {1, T, ids, labels, NULL, NULL};
    dt_graph g;
    dt_graph_init(&ctx, &g, dt_backend_cpu(), 0);
    g.training = true;
    g.checkpoint_layers = true; // what a large model is trained with
    double best = 0, total = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now();
        dt_graph_reset(&g);
        dt_adapter_zero_grad(a);
        dt_llama_out out;
        if (dt_llama_forward(&ctx, &g, m, &a->view, &batch, 0, false, &out) || dt_graph_backward(&g, out.loss, 1.0f)) {
            fprintf(stderr, "step failed: %s\n", ctx.msg);
            return 1;
        }
        dt_optim_step(&opt, a->params, a->grads, 1e-4f);
        double tps = (double)T / (now() - t0);
        if (s >= warmup) { total += tps; if (tps > best) best = tps; }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("  %-4s %-6s linears %-5s base %7.1f MiB (%.2f bits/weight)  tokens/s %7.2f (mean of %d, best %.2f)  peak RSS %7.1f MiB  (built in %.0f s)\n",
           shape, k->label, dt_dtype_name(k->linear), (double)base / 1048576.0, 8.0 * (double)base / (double)m->param_count,
           total / steps, steps, best, ru.ru_maxrss / 1024.0, t_build);
    fflush(stdout);
    dt_graph_free(&g);
    dt_optim_free(&opt);
    dt_adapter_free(a);
    dt_llama_free(m);
    free(ids);
    free(labels);
    return 0;
}

// Runs one configuration in a child; returns its exit status.
static int in_child(const char *shape, const dt_model_config *cfg, const base_kind *k, int warmup, int steps, int64_t T, int threads) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(run(shape, cfg, k, warmup, steps, T, threads));
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static dt_model_config llama_cfg(int D, int L, int I, bool tied) {
    dt_model_config c = {0};
    c.arch = DT_ARCH_LLAMA;
    snprintf(c.arch_name, sizeof c.arch_name, "LlamaForCausalLM");
    c.hidden_size = D; c.num_layers = L; c.num_heads = 32; c.num_kv_heads = 8; c.head_dim = D / 32;
    c.intermediate_size = I; c.vocab_size = 128256; c.max_position_embeddings = 8192;
    c.rms_norm_eps = 1e-5f; c.rope_theta = 500000.0f; c.tie_word_embeddings = tied;
    c.bos_token_id = 128000; c.eos_token_id = 128001; c.torch_dtype = DT_BF16;
    return c;
}

int main(void) {
    const char *th = getenv("DT_BENCH_THREADS"), *only = getenv("DT_BENCH_ONLY"), *te = getenv("DT_BENCH_T");
    const int threads = th ? atoi(th) : 2;
    const int64_t T = te ? atoll(te) : 512;
    const int steps_env = getenv("DT_BENCH_STEPS") ? atoi(getenv("DT_BENCH_STEPS")) : 0;
    int rc = 0;
    printf("QLoRA step: LoRA r=16 on every linear, B=1, T=%lld, %d threads, activation checkpointing\n", (long long)T, threads);
    if (!only || !strcmp(only, "1b")) {
        const dt_model_config c = llama_cfg(2048, 16, 8192, true);
        const base_kind kinds[] = {{"bf16", DT_BF16, DT_BF16, DT_BF16}, {"q8_0", DT_Q8_0, DT_Q8_0, DT_Q8_0},
                                   {"q4_K", DT_Q4_K, DT_Q4_K, DT_Q4_K}, {"nf4", DT_NF4, DT_BF16, DT_BF16}};
        printf("Llama-3.2-1B shape (side by side):\n");
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0] && !rc; i++)
            rc = in_child("1B", &c, &kinds[i], 1, steps_env ? steps_env : 2, T, threads);
    }
    if (!rc && (!only || !strcmp(only, "8b"))) {
        const dt_model_config c = llama_cfg(4096, 32, 14336, false);
        const base_kind kinds[] = {{"q4_K", DT_Q4_K, DT_Q4_K, DT_Q6_K}, {"nf4", DT_NF4, DT_BF16, DT_BF16}};
        printf("Llama-3-8B shape (peak RSS must stay under 8192 MiB):\n");
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0] && !rc; i++)
            rc = in_child("8B", &c, &kinds[i], 0, steps_env ? steps_env : 1, T, threads);
    }
    return rc;
}
