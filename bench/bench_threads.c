// Thread-count and OpenMP wait-policy benchmark: LoRA training steps (forward + backward + AdamW, r = 16
// on every linear) of a small random Llama (hidden 256, 4 layers, intermediate 688, vocab 4096, batch
// 1 x 256): many short parallel regions, where threads waiting at barriers matter most. Prints the
// median step time over DT_BENCH_STEPS steps (default 20) after 3 warm-up steps, on DT_BENCH_THREADS
// threads (default: the library's). bench/bench_threads.sh runs it with and without other work on the
// cores, under each wait policy, side by side. DT_BENCH_AUTO=1: what `deltatune train` does by default
// (tools/thread_env.h): the start-up load sample chooses the policy, and the governor adjusts the thread
// count between steps.
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <time.h>
#include "models/llama.h"
#include "optim/optim.h"
#include "peft/adapter.h"
#include "bench/bench_util.h"
#include "tools/thread_env.c" // the command's thread defaults (tools/ is not in the library)

int main(int argc, char **argv) {
    (void)argc;
    const bool autop = getenv("DT_BENCH_AUTO") && atoi(getenv("DT_BENCH_AUTO"));
    if (autop && dt_thread_env_defaults("train")) execv("/proc/self/exe", argv); // libgomp reads the policy at start
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const char *th = getenv("DT_BENCH_THREADS");
    ctx.nthreads = th ? atoi(th) : 0;
    dt_ctx_apply_threads(&ctx);
    const int steps = getenv("DT_BENCH_STEPS") ? atoi(getenv("DT_BENCH_STEPS")) : 20, warmup = 3;
    dt_model_config cfg = {0};
    cfg.arch = DT_ARCH_LLAMA;
    snprintf(cfg.arch_name, sizeof cfg.arch_name, "LlamaForCausalLM");
    cfg.hidden_size = 256; cfg.num_layers = 4; cfg.num_heads = 4; cfg.num_kv_heads = 2; cfg.head_dim = 64;
    cfg.intermediate_size = 688; cfg.vocab_size = 4096; cfg.max_position_embeddings = 1024;
    cfg.rms_norm_eps = 1e-5f; cfg.rope_theta = 10000.0f; cfg.tie_word_embeddings = true;
    cfg.bos_token_id = 1; cfg.eos_token_id = 2; cfg.torch_dtype = DT_F32;
    dt_llama *m;
    if (dt_llama_init_random(&ctx, &cfg, dt_backend_cpu(), 1, &m)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    dt_lora_config lc = {.r = 16, .alpha = 32, .dropout = 0.0f};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    dt_adapter *a;
    if (dt_lora_create(&ctx, m, &lc, 2, &a)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    dt_optimizer opt;
    dt_optim_init(&ctx, &opt, DT_OPT_ADAMW, a->n_params, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f);
    const int64_t T = 256;
    int32_t ids[256], labels[256]; // (1, T)
    for (int64_t i = 0; i < T; i++) ids[i] = labels[i] = (int32_t)((i * 7919) % cfg.vocab_size);
    dt_batch batch = {1, T, ids, labels, NULL, NULL};
    dt_graph g;
    dt_graph_init(&ctx, &g, dt_backend_cpu(), 0);
    g.training = true;
    double *dt = malloc(sizeof(double) * (size_t)steps);
    dt_thread_gov gov;
    dt_thread_gov_init(&gov, autop ? ctx.nthreads : 1); // (1: off)
    for (int s = 0; s < warmup + steps; s++) {
        dt_thread_gov_tick(&gov);
        double t0 = now();
        dt_graph_reset(&g);
        dt_adapter_zero_grad(a);
        dt_llama_out out;
        if (dt_llama_forward(&ctx, &g, m, &a->view, &batch, 0, false, &out) || dt_graph_backward(&g, out.loss, 1.0f)) {
            fprintf(stderr, "step failed: %s\n", ctx.msg);
            return 1;
        }
        dt_optim_step(&opt, a->params, a->grads, 1e-4f);
        if (s >= warmup) dt[s - warmup] = now() - t0;
    }
    qsort(dt, (size_t)steps, sizeof *dt, cmp_double);
    printf("median_step_ms %.2f min %.2f max %.2f threads %d policy %s\n", dt[steps / 2] * 1e3, dt[0] * 1e3,
           dt[steps - 1] * 1e3, ctx.nthreads, getenv("DT_WAIT_AUTO") ? getenv("DT_WAIT_AUTO") : "-");
    free(dt);
    dt_graph_free(&g);
    dt_optim_free(&opt);
    dt_adapter_free(a);
    dt_llama_free(m);
    return 0;
}
