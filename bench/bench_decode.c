// Generation benchmark: greedy decoding with the KV cache, as `deltatune generate` runs it, on a
// random-weight model of SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads, 3 KV heads, intermediate
// 1536, vocab 49152, tied), with its linear weights in f32 and in Q8_0, on DT_BENCH_THREADS threads
// (default 2): a 16-token prompt, then DT_BENCH_TOKENS (default 128) tokens one at a time.
// A decoded token reads every weight once and does 2 flops per weight, so decoding is bound by memory
// bandwidth: the reference measured beside each run is the machine's read bandwidth (the best of 3 sums
// over a 256 MiB buffer, on the same threads), and the headline is the weight bytes read per second as
// a fraction of it. Prints tokens/s (median of 3 runs), weight MiB per token, that fraction, and the
// resident memory after the model's first run (before the bandwidth buffer exists).
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "autograd/blas_core.h"
#include "autograd/dtype.h"
#include "bench/bench_util.h"
#include "models/llama.h"
#include "models/llama_infer.h"

#define RUNS 3
#define PROMPT 16

// The process's resident memory now (VmRSS), in MiB: each row's model alone, which a peak would not give
// after the first row.
static double rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024.0;
}

// Bytes a decoded token reads: every linear weight and the LM head (the tied embedding).
static double weight_bytes(const dt_llama *m) {
    double b = (double)dt_type_row_bytes(m->lm_head.dtype, m->lm_head.shape[1]) * (double)m->lm_head.shape[0];
    for (int l = 0; l < m->cfg.num_layers; l++)
        for (int i = 0; i < DT_MOD_COUNT; i++) {
            const dt_tensor *w = &m->layers[l].w[i];
            b += (double)dt_type_row_bytes(w->dtype, w->shape[1]) * (double)w->shape[0];
        }
    return b;
}

// Read bandwidth in bytes/s: the best of 3 parallel sums over buf (n floats). Each sum is stored in
// bw_sink, so the loads cannot be dropped.
static volatile float bw_sink;
static double read_bandwidth(const float *buf, size_t n) {
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t = now();
        float s = 0;
        #pragma omp parallel for simd reduction(+ : s) // simd: vector partial sums, so loads are the limit
        for (size_t i = 0; i < n; i++) s += buf[i];
        double bw = (double)n * sizeof(float) / (now() - t);
        bw_sink = s;
        if (bw > best) best = bw;
    }
    return best;
}

// One greedy generation: the prompt, then n tokens; returns decoding's tokens/s (the prompt excluded).
static double decode_run(dt_ctx *ctx, const dt_llama *m, int n, float *logits, int32_t *last) {
    dt_kv_cache c;
    if (dt_kv_cache_init(ctx, m, PROMPT + n + 1, &c)) return -1;
    int32_t prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++) prompt[i] = (int32_t)((i * 7919 + 1) % m->cfg.vocab_size);
    double tps = -1;
    if (!dt_llama_infer(ctx, m, NULL, &c, prompt, PROMPT, logits)) {
        double t = now();
        int i = 0;
        for (; i < n; i++) {
            int32_t next = 0;
            for (int64_t v = 1; v < m->cfg.vocab_size; v++) if (logits[v] > logits[next]) next = (int32_t)v;
            *last = next;
            if (dt_llama_infer(ctx, m, NULL, &c, &next, 1, logits)) break;
        }
        if (i == n) tps = n / (now() - t);
    }
    dt_kv_cache_free(&c);
    return tps;
}

int main(int argc, char **argv) {
    (void)argc;
    // The same restart as the deltatune command's (blas_core.h), so the bench measures what users get.
    const char *core = dt_blas_better_coretype();
    if (core && setenv("OPENBLAS_CORETYPE", core, 1) == 0) execv("/proc/self/exe", argv);
    const char *th = getenv("DT_BENCH_THREADS");
    omp_set_num_threads(th ? atoi(th) : 2);
    const int n = getenv("DT_BENCH_TOKENS") ? atoi(getenv("DT_BENCH_TOKENS")) : 128;
    if (n < 1) { fprintf(stderr, "bench_decode: DT_BENCH_TOKENS >= 1\n"); return 2; }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_model_config cfg = {0};
    cfg.arch = DT_ARCH_LLAMA;
    snprintf(cfg.arch_name, sizeof cfg.arch_name, "LlamaForCausalLM");
    cfg.hidden_size = 576; cfg.num_layers = 30; cfg.num_heads = 9; cfg.num_kv_heads = 3;
    cfg.intermediate_size = 1536; cfg.vocab_size = 49152; cfg.rope_theta = 100000.0f;
    cfg.head_dim = 64; cfg.max_position_embeddings = 8192;
    cfg.rms_norm_eps = 1e-5f; cfg.tie_word_embeddings = true;
    cfg.bos_token_id = 1; cfg.eos_token_id = 2; cfg.torch_dtype = DT_F32;
    float *logits = malloc((size_t)cfg.vocab_size * sizeof(float));
    const size_t probe_n = (size_t)64 << 20; // 256 MiB of floats
    const dt_dtype types[2] = {DT_F32, DT_Q8_0};
    printf("decode  smollm2-135m shape, %d-token prompt then %d tokens one at a time, greedy, %d threads\n", PROMPT, n,
           omp_get_max_threads());
    for (int t = 0; t < 2; t++) {
        dt_load_opts o = {.quantize = types[t], .wtype = DT_F32};
        dt_llama *m;
        if (dt_llama_init_random_ex(&ctx, &cfg, dt_backend_cpu(), 1, &o, &m)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
        int32_t last = -1;
        if (decode_run(&ctx, m, n, logits, &last) < 0) { fprintf(stderr, "%s\n", ctx.msg); return 1; } // warm-up
        const double rss = rss_mib(); // the previous row's model and probe are gone (freed, unmapped)
        float *probe = malloc(probe_n * sizeof(float));
        if (!probe) { fprintf(stderr, "out of memory\n"); return 1; }
        for (size_t i = 0; i < probe_n; i++) probe[i] = (float)(i & 7);
        double tps[RUNS], frac[RUNS], bw[RUNS];
        const double wb = weight_bytes(m);
        for (int r = 0; r < RUNS; r++) {
            tps[r] = decode_run(&ctx, m, n, logits, &last);
            if (tps[r] < 0) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
            bw[r] = read_bandwidth(probe, probe_n);
            frac[r] = tps[r] * wb / bw[r];
        }
        const double tps_med = median(tps, RUNS), frac_med = median(frac, RUNS), bw_med = median(bw, RUNS);
        printf("  %-5s linears  %.1f tokens/s (min %.1f, max %.1f)  weights %.1f MiB/token  read bandwidth %.1f GB/s  "
               "= %.0f%% of it  RSS %.0f MiB  (last id %d)\n",
               dt_type_traits_of(types[t])->name, tps_med, tps[0], tps[RUNS - 1], wb / 1048576.0, bw_med * 1e-9,
               100.0 * frac_med, rss, last);
        printf("RESULT impl=deltatune bench=decode model=smollm2-135m linears=%s tps=%.2f weight_mib=%.1f bw_gbs=%.2f "
               "bw_frac=%.3f rss_mib=%.1f\n", dt_type_traits_of(types[t])->name, tps_med, wb / 1048576.0, bw_med * 1e-9,
               frac_med, rss);
        free(probe);
        dt_llama_free(m);
    }
    free(logits);
    return 0;
}
