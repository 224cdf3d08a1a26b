// LoRA training-step benchmark: a random-weight model of SmolLM2-135M's shape (hidden 576, 30 layers,
// 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied) or, with DT_BENCH_MODEL=llama-3.2-1b,
// Llama-3.2-1B's (hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, vocab 128256, tied),
// batch 1 x 512, r = 16 on every linear, forward + backward + AdamW, on DT_BENCH_THREADS threads
// (default 2), with the frozen weights in DT_BENCH_DTYPE: f32 (the default), bf16 (oneDNN's bf16
// matmuls) or stored (the matrices in bf16, as a bf16 file loaded as stored keeps them, computed in
// f32 on the plain backend: hardware.dtype auto on a CPU without bf16 units). Prints tokens/s
// (median of the steps after warm-up), model FLOP/s as a fraction of the matmul peak of that dtype
// (OpenBLAS sgemm for f32, oneDNN's bf16 matmul for bf16; both are measured and printed), peak RSS,
// and one "RESULT key=value ..." line for bench/bench_bf16.sh.
// These machines are shared and their speed drifts by 20% within a minute, so the peak is measured
// right after every step (a 2048^3 matmul, best of two) and each step is set against its own peak;
// the median of those ratios is the headline, and the ratio against the best peak of the whole run is
// printed beside it as the conservative figure. Model FLOPs per token: 2 x (matmul params) for the forward, the same again for dX in the
// backward (no dW: the base is frozen), plus full (non-causal) attention 3 x 4 x T x H x hd per layer.
// DT_BENCH_TRAINED=f (default 1) trains only the last fraction f of each row's positions, the rest
// labelled -100 as the prompt of instruction data is: tokens/s still counts every position, and the
// model FLOPs count the vocabulary projection only for the trained ones (the only rows it runs on).
// DT_BENCH_PROFILE=1 also prints the step's time per backend entry (bench/bench_profile.h). Keep at
// least the default 2 warm-up steps with it: the second step first touches the arena's final chunk,
// which shows up as conversions 5x slower (measured with DT_BENCH_WARMUP=1).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <cblas.h>
#include "autograd/blas_core.h"
#include "autograd/cpu_bf16.h"
#include "autograd/cpu_bf16_backend.h"
#include "bench/bench_profile.h"
#include "models/llama.h"
#include "optim/optim.h"
#include "peft/adapter.h"
#include "bench/bench_util.h"

// The machine's practical SGEMM peak on these threads: the best of `reps` 2048^3 sgemms on the
// caller's buffers (n*n floats each).
static double sgemm_peak(float *a, float *b, float *c, int reps) {
    const int n = 2048;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double f = 2.0 * n * n * n / (now() - t);
        if (f > best) best = f;
    }
    return best;
}

// The same for oneDNN's bf16 matmul (f32 output) on bf16 copies of the operands.
static double bf16_peak(dt_bf16_mm *e, const uint16_t *a, const uint16_t *b, float *c, int reps) {
    const int n = 2048;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t = now();
        if (dt_bf16_matmul(e, false, false, n, n, n, 1.0f, a, n, b, n, false, c, n)) return 0;
        double f = 2.0 * n * n * n / (now() - t);
        if (f > best) best = f;
    }
    return best;
}

int main(int argc, char **argv) {
    (void)argc;
    // The same restart as the deltatune command's (blas_core.h), so the bench measures what users get.
    const char *core = dt_blas_better_coretype();
    if (core && setenv("OPENBLAS_CORETYPE", core, 1) == 0) execv("/proc/self/exe", argv);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const char *th = getenv("DT_BENCH_THREADS");
    ctx.nthreads = th ? atoi(th) : 2;
    dt_ctx_apply_threads(&ctx);
    const int steps = getenv("DT_BENCH_STEPS") ? atoi(getenv("DT_BENCH_STEPS")) : 8;
    const int warmup = getenv("DT_BENCH_WARMUP") ? atoi(getenv("DT_BENCH_WARMUP")) : 2;
    const char *model = getenv("DT_BENCH_MODEL") ? getenv("DT_BENCH_MODEL") : "smollm2-135m";
    const char *dtype_name = getenv("DT_BENCH_DTYPE") ? getenv("DT_BENCH_DTYPE") : "f32";
    const bool bf16 = !strcmp(dtype_name, "bf16"), stored = !strcmp(dtype_name, "stored");
    if (steps < 1 || warmup < 1 || (!bf16 && !stored && strcmp(dtype_name, "f32")) ||
        (strcmp(model, "smollm2-135m") && strcmp(model, "llama-3.2-1b"))) {
        fprintf(stderr, "bench_lora_step: DT_BENCH_MODEL smollm2-135m|llama-3.2-1b, DT_BENCH_DTYPE f32|bf16|stored, "
                        "DT_BENCH_STEPS and DT_BENCH_WARMUP >= 1\n");
        return 2;
    }

    dt_model_config cfg = {0};
    cfg.arch = DT_ARCH_LLAMA;
    snprintf(cfg.arch_name, sizeof cfg.arch_name, "LlamaForCausalLM");
    if (!strcmp(model, "smollm2-135m")) {
        cfg.hidden_size = 576; cfg.num_layers = 30; cfg.num_heads = 9; cfg.num_kv_heads = 3;
        cfg.intermediate_size = 1536; cfg.vocab_size = 49152; cfg.rope_theta = 100000.0f;
    } else {
        cfg.hidden_size = 2048; cfg.num_layers = 16; cfg.num_heads = 32; cfg.num_kv_heads = 8;
        cfg.intermediate_size = 8192; cfg.vocab_size = 128256; cfg.rope_theta = 500000.0f;
    }
    cfg.head_dim = 64; cfg.max_position_embeddings = 8192;
    cfg.rms_norm_eps = 1e-5f; cfg.tie_word_embeddings = true;
    cfg.bos_token_id = 1; cfg.eos_token_id = 2; cfg.torch_dtype = DT_F32;
    dt_bf16_mm *mm;
    if (dt_bf16_mm_create(&ctx, &mm)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    // bf16 runs on the bf16 backend instance (oneDNN), as the deltatune commands do.
    const dt_backend *be;
    if (dt_cpu_backend_for(&ctx, bf16 ? DT_BF16 : DT_F32, &be)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    // DT_BENCH_PROFILE=1: the steps run on a table that times each backend entry (bench_profile.h).
    const bool profile = getenv("DT_BENCH_PROFILE") && atoi(getenv("DT_BENCH_PROFILE"));
    bench_prof *prof = profile ? bench_prof_wrap(be, cfg.vocab_size) : NULL;
    if (profile && !prof) { fprintf(stderr, "out of memory\n"); return 1; }
    const dt_backend *run_be = prof ? &prof->table : be;
    dt_llama *m;
    if (dt_llama_init_random_typed(&ctx, &cfg, run_be, 1, bf16 || stored ? DT_BF16 : DT_F32, &m)) {
        fprintf(stderr, "%s\n", ctx.msg);
        return 1;
    }
    dt_lora_config lc = {.r = 16, .alpha = 32, .dropout = 0.0f};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    dt_adapter *a;
    if (dt_lora_create(&ctx, m, &lc, 2, &a)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    for (size_t i = 0; i < a->n_params; i++) if (a->params[i] == 0) a->params[i] = 1e-3f; // non-zero B
    size_t n_trainable = a->n_params;
    dt_optimizer opt;
    dt_optim_init(&ctx, &opt, DT_OPT_ADAMW, a->n_params, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f);

    const int64_t B = 1, T = 512;
    int32_t *ids = malloc(B * T * 4), *labels = malloc(B * T * 4);
    const double trained = getenv("DT_BENCH_TRAINED") ? atof(getenv("DT_BENCH_TRAINED")) : 1.0;
    if (!(trained > 0 && trained <= 1)) { fprintf(stderr, "DT_BENCH_TRAINED: expected a fraction in (0, 1]\n"); return 2; }
    const int64_t prompt = T - (int64_t)(trained * (double)T + 0.5); // positions 0..prompt-1 of a row: not trained
    for (int64_t i = 0; i < B * T; i++) {
        ids[i] = labels[i] = (int32_t)((i * 7919) % cfg.vocab_size);
        if (i % T < prompt) labels[i] = -100;
    }
    dt_batch batch = {B, T, ids, labels, NULL, NULL};
    dt_graph g;
    dt_graph_init(&ctx, &g, run_be, 0);
    g.training = true;
    const bool ckpt = getenv("DT_BENCH_CHECKPOINT") && atoi(getenv("DT_BENCH_CHECKPOINT"));
    g.checkpoint_layers = ckpt;
    double *tps = malloc(sizeof(double) * (size_t)steps), *peaks = malloc(sizeof(double) * (size_t)steps);
    double *ratio = malloc(sizeof(double) * (size_t)steps), *bpeaks = malloc(sizeof(double) * (size_t)steps);
    float *pa = NULL, *pb = NULL, *pc = NULL; // (2048, 2048) each: the peak sgemm's operands
    uint16_t *ha = NULL, *hb = NULL;          // (2048, 2048) each: the same in bf16, for oneDNN's peak
    double loss = 0, rss_mib = 0, step_s = 0, opt_s = 0; // the timed steps' total, and the optimizer's part
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            // The steps allocate nothing after the first one, so the high-water mark now is the
            // training step's; read it before the peak sgemm's buffers exist.
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            rss_mib = ru.ru_maxrss / 1024.0;
            const size_t n2 = (size_t)2048 * 2048;
            pa = malloc(n2 * 4); pb = malloc(n2 * 4); pc = malloc(n2 * 4);
            for (size_t i = 0; i < n2; i++) { pa[i] = (float)(i % 7) * 0.1f; pb[i] = (float)(i % 5) * 0.1f; }
            sgemm_peak(pa, pb, pc, 1); // first touch and OpenBLAS's buffers, not timed
            ha = malloc(n2 * 2); hb = malloc(n2 * 2);
            dt_cpu_f32_to_bf16(ha, pa, (int64_t)n2);
            dt_cpu_f32_to_bf16(hb, pb, (int64_t)n2);
            bf16_peak(mm, ha, hb, pc, 1); // the primitive's creation, not timed
            if (prof) bench_prof_reset(prof);
        }
        double t0 = now();
        dt_graph_reset(&g);
        dt_adapter_zero_grad(a);
        dt_llama_out out;
        if (dt_llama_forward(&ctx, &g, m, &a->view, &batch, 0, false, &out) || dt_graph_backward(&g, out.loss, 1.0f)) {
            fprintf(stderr, "step failed: %s\n", ctx.msg);
            return 1;
        }
        double t_opt = now();
        dt_optim_step(&opt, a->params, a->grads, 1e-4f);
        double t1 = now(), dt = t1 - t0;
        if (s >= warmup) { step_s += dt; opt_s += t1 - t_opt; }
        loss = dt_f32(out.loss)[0];
        if (s >= warmup) {
            tps[s - warmup] = (double)(B * T) / dt;
            peaks[s - warmup] = sgemm_peak(pa, pb, pc, 2);
            bpeaks[s - warmup] = bf16_peak(mm, ha, hb, pc, 2);
        }
    }
    double arena_mib = dt_arena_capacity(&g.arena) / 1048576.0;
    dt_graph_free(&g);
    dt_optim_free(&opt);
    dt_adapter_free(a);
    dt_llama_free(m);
    dt_cpu_backend_release(be);
    free(pa); free(pb); free(pc); free(ha); free(hb);
    const bool emulated = dt_bf16_mm_emulated(mm);
    dt_bf16_mm_free(mm);
    double D = cfg.hidden_size, Imid = cfg.intermediate_size, L = cfg.num_layers, V = cfg.vocab_size;
    double q = cfg.num_heads * cfg.head_dim, kv = cfg.num_kv_heads * cfg.head_dim;
    double layer_params = L * (D * q + 2 * D * kv + q * D + 3 * D * Imid);
    double attn = L * 3.0 * 4.0 * (double)T * q;
    // The vocabulary projection runs on the trained positions only (T - prompt - 1 per row with a prompt:
    // the last position has no next token; counted as T - prompt, one row in 512 off).
    double flops_tok = 4.0 * layer_params + 4.0 * V * D * (double)(T - prompt) / (double)T + attn;

    // Each step is set against the peak of its own dtype's matmul.
    double *own = bf16 ? bpeaks : peaks, best_peak = 0;
    for (int i = 0; i < steps; i++) {
        ratio[i] = tps[i] * flops_tok / own[i];
        if (own[i] > best_peak) best_peak = own[i];
    }
    qsort(tps, (size_t)steps, sizeof *tps, cmp_double);
    qsort(peaks, (size_t)steps, sizeof *peaks, cmp_double);
    qsort(bpeaks, (size_t)steps, sizeof *bpeaks, cmp_double);
    qsort(ratio, (size_t)steps, sizeof *ratio, cmp_double);
    double med = tps[steps / 2];
    printf("lora step  %s shape, frozen weights %s, B=%lld T=%lld, r=16 all-linear, %d threads%s\n", model, dtype_name,
           (long long)B, (long long)T, ctx.nthreads, ckpt ? ", activation checkpointing" : "");
    printf("  trainable params: %zu\n", n_trainable);
    if (prompt) printf("  trained positions   %lld of %lld per row (DT_BENCH_TRAINED)\n", (long long)(T - prompt), (long long)T);
    printf("  OpenBLAS kernels    %s%s\n", openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? " (OPENBLAS_CORETYPE)" : "");
    printf("  oneDNN kernels      %s%s\n", dt_onednn_isa(),
           emulated ? " (no bf16 matmul: bf16 figures are of the tests' emulation, widened to f32 + sgemm, not of "
                      "bf16 hardware)" : "");
    printf("  sgemm peak          median %.1f GFLOP/s (2048^3 sgemm, best of 2 after each step)\n", peaks[steps / 2] * 1e-9);
    printf("  bf16 matmul peak    median %.1f GFLOP/s (2048^3 oneDNN bf16, f32 out, best of 2 after each step)\n",
           bpeaks[steps / 2] * 1e-9);
    printf("  model FLOPs/token   %.1f MFLOP\n", flops_tok * 1e-6);
    printf("  tokens/s (median)   %.1f  (min %.1f, max %.1f over %d steps)\n", med, tps[0], tps[steps - 1], steps);
    printf("  achieved            %.1f GFLOP/s = %.1f%% of the %s peak measured after each step (median; range %.1f-%.1f%%)\n",
           med * flops_tok * 1e-9, 100.0 * ratio[steps / 2], bf16 ? "bf16" : "sgemm", 100.0 * ratio[0],
           100.0 * ratio[steps - 1]);
    printf("                      = %.1f%% of the best peak of the run (conservative)\n", 100.0 * med * flops_tok / best_peak);
    printf("  peak RSS            %.1f MiB\n", rss_mib);
    printf("  activation arena    %.1f MiB, last loss %.4f\n", arena_mib, loss);
    if (prof) bench_prof_print(prof, steps, step_s, opt_s); // reads only its counters: be is gone
    free(prof);
    printf("RESULT impl=deltatune model=%s dtype=%s tps=%.2f tps_min=%.2f tps_max=%.2f rss_mib=%.1f "
           "sgemm_peak_gflops=%.1f bf16_peak_gflops=%.1f peak_frac=%.4f emulated=%d\n", model, dtype_name, med,
           tps[0], tps[steps - 1], rss_mib, peaks[steps / 2] * 1e-9, bpeaks[steps / 2] * 1e-9, ratio[steps / 2],
           emulated);
    free(ids); free(labels); free(tps); free(peaks); free(bpeaks); free(ratio);
    return 0;
}
