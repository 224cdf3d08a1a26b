// Data-parallel step benchmark: the LoRA step of bench_lora_step (a random-weight model of SmolLM2-135M's
// shape, micro-batches of 1 x 512 tokens, r = 16 on every linear, AdamW) with a global batch of 2
// micro-batches, run as 1 process x 2 threads (2 accumulation steps) and as 2 processes x 1 thread
// (1 each) under mpirun, with the trainer's exchange (tools/train_dist.h: status agreement, loss
// gather, ordered gradient sum + broadcast). Prints tokens/s and the exchange's share of the step, then,
// on paper from the measured compute time and the gradient size, the expected efficiency at 8, 64 and
// 512 processes on a 25 Gb/s network.
//
// Run without mpirun, it is the driver: it starts itself under mpirun for both configurations and reads
// their RESULT lines. The machine is shared, so the two runs are side by side and ratios matter more
// than absolute figures.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "autograd/blas_core.h"
#include "models/llama.h"
#include "optim/optim.h"
#include "peft/adapter.h"
#include "tools/comm.h"
#include "tools/train_dist.h"
#include "bench/bench_util.h"

// One process of the job: prints (rank 0) "RESULT procs threads tokens_per_s step_s compute_s exchange_s grad_floats".
static int worker(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_comm *comm;
    if (dt_comm_open(&ctx, &comm)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    ctx.nthreads = getenv("DT_BENCH_THREADS") ? atoi(getenv("DT_BENCH_THREADS")) : 1;
    dt_ctx_apply_threads(&ctx);
    const int accum = getenv("DT_BENCH_ACCUM") ? atoi(getenv("DT_BENCH_ACCUM")) : 1;
    const int steps = getenv("DT_BENCH_STEPS") ? atoi(getenv("DT_BENCH_STEPS")) : 4, warmup = 1;
    dt_model_config cfg = {0};
    cfg.arch = DT_ARCH_LLAMA;
    snprintf(cfg.arch_name, sizeof cfg.arch_name, "LlamaForCausalLM");
    cfg.hidden_size = 576; cfg.num_layers = 30; cfg.num_heads = 9; cfg.num_kv_heads = 3; cfg.head_dim = 64;
    cfg.intermediate_size = 1536; cfg.vocab_size = 49152; cfg.max_position_embeddings = 8192;
    cfg.rms_norm_eps = 1e-5f; cfg.rope_theta = 100000.0f; cfg.tie_word_embeddings = true;
    cfg.bos_token_id = 1; cfg.eos_token_id = 2; cfg.torch_dtype = DT_F32;
    dt_llama *m;
    dt_adapter *a;
    dt_lora_config lc = {.r = 16, .alpha = 32, .dropout = 0.0f};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    if (dt_llama_init_random(&ctx, &cfg, dt_backend_cpu(), 1, &m) || dt_lora_create(&ctx, m, &lc, 2, &a)) {
        fprintf(stderr, "%s\n", ctx.msg);
        return 1;
    }
    for (size_t i = 0; i < a->n_params; i++) if (a->params[i] == 0) a->params[i] = 1e-3f; // non-zero B
    dt_optimizer opt;
    dt_dist dp;
    float *grad = malloc(a->n_params * sizeof(float)); // (n_params) the step's summed gradient
    dt_graph g;
    if (dt_optim_init(&ctx, &opt, DT_OPT_ADAMW, a->n_params, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f) ||
        dt_dist_init(&ctx, &dp, comm, accum, a->n_params) || dt_graph_init(&ctx, &g, dt_backend_cpu(), 0) || !grad) {
        fprintf(stderr, "%s\n", ctx.msg);
        return 1;
    }
    g.training = true;
    const int64_t B = 1, T = 512;
    int32_t *ids = malloc(B * T * 4), *labels = malloc(B * T * 4); // (B, T) each
    double *step_s = malloc(sizeof(double) * (size_t)steps), *comp_s = malloc(sizeof(double) * (size_t)steps);
    double *ex_s = malloc(sizeof(double) * (size_t)steps);
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now();
        dt_dist_step_begin(&dp);
        for (int k = 0; k < accum; k++) {
            // Different tokens per global micro-batch, as a real step has.
            int j = comm->rank * accum + k;
            for (int64_t i = 0; i < B * T; i++) ids[i] = labels[i] = (int32_t)((i * 7919 + j * 104729) % cfg.vocab_size);
            dt_batch batch = {B, T, ids, labels, NULL, NULL};
            dt_graph_reset(&g);
            dt_adapter_zero_grad(a);
            dt_llama_out out;
            if (dt_llama_forward(&ctx, &g, m, &a->view, &batch, 1.0f, false, &out) || dt_graph_backward(&g, out.loss, 1.0f)) {
                fprintf(stderr, "step failed: %s\n", ctx.msg);
                return 1;
            }
            dt_dist_keep(&dp, grad, a->grads, out.loss_sum, out.n_targets, B * T);
        }
        double t1 = now();
        // Wait for the slowest rank first, so the exchange is timed alone, not the imbalance of a shared machine.
        dt_dist_agree(&ctx, comm, DT_OK);
        double t2 = now();
        dt_dist_step sum;
        if (dt_dist_step_end(&ctx, &dp, DT_OK, false, grad, &sum)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
        double t3 = now();
        dt_optim_step(&opt, a->params, grad, 1e-4f);
        if (s >= warmup) {
            step_s[s - warmup] = now() - t0;
            comp_s[s - warmup] = t1 - t0;
            ex_s[s - warmup] = t3 - t2;
        }
    }
    if (comm->rank == 0)
        printf("RESULT %d %d %.3f %.6f %.6f %.6f %zu\n", comm->size, ctx.nthreads,
               (double)(B * T * accum * comm->size) / median(step_s, steps), median(step_s, steps), median(comp_s, steps),
               median(ex_s, steps), a->n_params);
    fflush(stdout);
    dt_graph_free(&g);
    dt_dist_free(&dp);
    dt_optim_free(&opt);
    dt_adapter_free(a);
    dt_llama_free(m);
    free(grad); free(ids); free(labels); free(step_s); free(comp_s); free(ex_s);
    dt_comm_close(comm);
    return 0;
}

typedef struct { int procs, threads; double tps, step, compute, exchange; size_t n; } result;

static bool launch(const char *self, int procs, int threads, int accum, result *r) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -q --oversubscribe --bind-to none -np %d "
             "-x DT_BENCH_THREADS=%d -x DT_BENCH_ACCUM=%d %s%s %s", procs, threads, accum,
             getenv("DT_BENCH_STEPS") ? "-x DT_BENCH_STEPS=" : "", getenv("DT_BENCH_STEPS") ? getenv("DT_BENCH_STEPS") : "", self);
    FILE *p = popen(cmd, "r");
    char line[512];
    bool ok = false;
    while (p && fgets(line, sizeof line, p))
        ok |= sscanf(line, "RESULT %d %d %lf %lf %lf %lf %zu", &r->procs, &r->threads, &r->tps, &r->step, &r->compute,
                     &r->exchange, &r->n) == 7;
    if (p) pclose(p);
    return ok;
}

// The chain all-reduce of tools/comm_mpi.c on P processes: a pipelined reduce along the ranks then a
// broadcast, each ~ (chunks + P - 2) hops of one 256 KiB chunk; alpha the per-message latency.
static double chain_seconds(double bytes, int P, double bw, double alpha) {
    const double chunk = 262144.0;
    double chunks = bytes / chunk > 1 ? bytes / chunk : 1;
    return 2.0 * (chunks + P - 2) * (alpha + (bytes < chunk ? bytes : chunk) / bw);
}

static int driver(const char *self) {
#ifndef DT_MPI
    (void)self;
    printf("dist step: skipped, deltatune was built without MPI (make MPI=1)\n");
    return 0;
#else
    result one, two;
    if (!launch(self, 1, 2, 2, &one) || !launch(self, 2, 1, 1, &two)) {
        printf("dist step: skipped, mpirun could not run the benchmark (openmpi-bin missing?)\n");
        return 0;
    }
    double gbytes = (double)two.n * 4.0;
    printf("dist step  SmolLM2-135M shape, micro-batch 1 x 512, r=16 all-linear, global batch 2 micro-batches (machine shared)\n");
    printf("  gradient block      %zu floats = %.1f MiB\n", two.n, gbytes / 1048576.0);
    printf("  1 process  x 2 threads  %.1f tokens/s  step %.3f s, exchange %.2f ms = %.2f%% of the step\n", one.tps, one.step,
           one.exchange * 1e3, 100.0 * one.exchange / one.step);
    printf("  2 processes x 1 thread  %.1f tokens/s  step %.3f s, exchange %.2f ms = %.2f%% of the step (goal < 2%%)\n",
           two.tps, two.step, two.exchange * 1e3, 100.0 * two.exchange / two.step);
    printf("  2 x 1 / 1 x 2 throughput %.3f\n", two.tps / one.tps);
    // On paper: 25 Gb/s, 30 us per message (TCP); the measured per-rank compute of one micro-batch.
    const double bw = 25e9 / 8, alpha = 30e-6;
    printf("  on paper, 25 Gb/s, 30 us/message, %.3f s of compute per micro-batch per rank (measured, 2 x 1):\n", two.compute);
    for (int P = 8; P <= 512; P *= 8) {
        double ex = chain_seconds(gbytes, P, bw, alpha);
        // Weak scaling: one micro-batch per rank, the global batch grows with P.
        double weak = two.compute / (two.compute + ex);
        // Strong scaling: a global batch of 512 micro-batches split over P ranks.
        double per = 512.0 / P * two.compute, strong = per / (per + ex);
        printf("    %3d processes: exchange %.1f ms; efficiency %.1f%% (1 micro-batch each), %.1f%% (global batch 512, %d each)\n",
               P, ex * 1e3, 100 * weak, 100 * strong, 512 / P);
    }
    return 0;
#endif
}

int main(int argc, char **argv) {
    (void)argc;
    // The same OpenBLAS restart as the deltatune command's (blas_core.h), before MPI starts.
    const char *core = dt_blas_better_coretype();
    if (core && setenv("OPENBLAS_CORETYPE", core, 1) == 0) execv("/proc/self/exe", argv);
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK")) return worker();
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = 0;
    return driver(self);
}
