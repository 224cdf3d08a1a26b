// LoRA training-step benchmark on the GPU: a random-weight model of Llama-3.2-1B's shape (hidden 2048,
// 16 layers, 32 heads, 8 KV heads, intermediate 8192, vocab 128256, tied), batch 4 x 2048, r = 16 on every
// linear, forward + backward + AdamW; or (--shape 8b --quantize nf4 --batch 1) Llama-3-8B's shape (hidden
// 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab 128256, untied) with its linears in NF4
// with double quantization (QLoRA; dt_llama_init_random_ex quantizes them as model.quantize does). Prints tokens/s (median of the steps after warm-up), model FLOP/s
// as a fraction of --peak-tflops, and the peak device memory in use (cudaMemGetInfo: the whole device,
// sampled after each forward and backward). bench/bench_cuda_pytorch.py runs the same step in PyTorch +
// PEFT and prints the same lines.
// Model FLOPs per token: 2 x (matmul params) for the forward and the same again for dX in the backward
// (no dW: the base is frozen), 6 x (LoRA params), and attention 3 x 4 x T x H x hd per layer (counted
// without causal halving, as bench_lora_step.c does).
// Notes: under --dtype bf16 the frozen matrices are stored in bf16 on the device and multiplied as they
// are through cuBLASLt (activations rounded to bf16, f32 accumulation); the LoRA and attention matmuls
// round their f32 inputs to bf16 inside cuBLAS. Under --dtype f32 everything is f32. The AdamW step is the
// device kernel the trainer uses (dt_cuda_optim_step): parameters, gradients and moments stay on the GPU.
// Without a usable GPU (or in a build without CUDA) it prints why and exits 0.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "autograd/cuda/cuda_backend.h"
#include "models/llama.h"
#include "optim/optim.h"
#include "peft/adapter.h"
#include "bench/bench_util.h"

typedef struct {
    double peak_tflops;
    int steps, batch, seq;
    dt_dtype dtype, quantize;
    bool big; // Llama-3-8B's shape instead of Llama-3.2-1B's
} bench_args;

static int parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){989.4, 10, 4, 2048, DT_BF16, DT_F32, false}; // 989.4: H100/H200 SXM dense bf16
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return fprintf(stderr, "bench_cuda_step: %s needs a value\n", k), -1;
        if (!strcmp(k, "--peak-tflops")) a->peak_tflops = atof(v);
        else if (!strcmp(k, "--steps")) a->steps = atoi(v);
        else if (!strcmp(k, "--batch")) a->batch = atoi(v);
        else if (!strcmp(k, "--seq")) a->seq = atoi(v);
        else if (!strcmp(k, "--dtype") && (!strcmp(v, "bf16") || !strcmp(v, "f32")))
            a->dtype = !strcmp(v, "bf16") ? DT_BF16 : DT_F32;
        else if (!strcmp(k, "--shape") && (!strcmp(v, "1b") || !strcmp(v, "8b"))) a->big = !strcmp(v, "8b");
        else if (!strcmp(k, "--quantize") && (!strcmp(v, "nf4") || !strcmp(v, "none")))
            a->quantize = !strcmp(v, "nf4") ? DT_NF4 : DT_F32;
        else return fprintf(stderr, "usage: bench_cuda_step [--peak-tflops X] [--steps N] [--batch B] [--seq T] "
                                    "[--dtype bf16|f32] [--shape 1b|8b] [--quantize nf4|none]\n"), -1;
        i++;
    }
    if (a->peak_tflops <= 0 || a->steps < 1 || a->batch < 1 || a->seq < 2)
        return fprintf(stderr, "bench_cuda_step: --peak-tflops, --steps, --batch must be positive, --seq >= 2\n"), -1;
    return 0;
}

static dt_model_config llama_3_2_1b(void) {
    dt_model_config c = {0};
    c.arch = DT_ARCH_LLAMA;
    snprintf(c.arch_name, sizeof c.arch_name, "LlamaForCausalLM");
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.hidden_size = 2048; c.num_layers = 16; c.num_heads = 32; c.num_kv_heads = 8; c.head_dim = 64;
    c.intermediate_size = 8192; c.vocab_size = 128256; c.max_position_embeddings = 131072;
    c.rms_norm_eps = 1e-5f; c.rope_theta = 500000.0f; c.tie_word_embeddings = true;
    c.rope_scaling_type = DT_ROPE_LLAMA3; c.rope_factor = 32.0f; c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f; c.rope_original_max_pos = 8192;
    c.bos_token_id = 128000; c.eos_token_id = 128001; c.torch_dtype = DT_BF16;
    return c;
}

static dt_model_config llama_3_8b(void) {
    dt_model_config c = llama_3_2_1b();
    c.hidden_size = 4096; c.num_layers = 32; c.num_heads = 32; c.num_kv_heads = 8; c.head_dim = 128;
    c.intermediate_size = 14336; c.max_position_embeddings = 8192; c.tie_word_embeddings = false;
    c.rope_scaling_type = DT_ROPE_NONE; c.rope_factor = 1.0f; c.rope_original_max_pos = 0;
    return c;
}

// Moves the adapter's parameters and gradients to the device: each tensor is repointed into two device
// blocks laid out like the host ones, so the host blocks stay usable by the optimizer.
static int adapter_to_device(dt_ctx *ctx, const dt_backend *be, dt_adapter *a, float **dparams, float **dgrads) {
    size_t bytes = a->n_params * sizeof(float);
    *dparams = be->alloc(be, bytes);
    *dgrads = be->alloc(be, bytes);
    if (!*dparams || !*dgrads) return dt_fail(ctx, DT_ENOMEM, "cannot allocate %zu bytes for the adapter", 2 * bytes);
    be->upload(be, *dparams, a->params, bytes);
    for (int i = 0; i < a->n_tensors; i++) {
        dt_tensor *t = &a->tensors[i];
        size_t off = (size_t)((float *)t->data - a->params);
        t->data = *dparams + off;
        t->grad = *dgrads + off;
        t->device = DT_DEV_CUDA;
    }
    return dt_backend_cuda_check(ctx);
}

static size_t sample_mem(dt_ctx *ctx, size_t peak) {
    size_t used, total;
    if (dt_backend_cuda_mem_info(ctx, &used, &total) == DT_OK && used > peak) return used;
    return peak;
}

int main(int argc, char **argv) {
    bench_args args;
    if (parse_args(argc, argv, &args)) return 2;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const dt_backend *be;
    int rc = dt_backend_cuda_init(&ctx, args.dtype, &be);
    if (rc == DT_EUNSUPPORTED) { printf("bench_cuda_step: skipped: %s\n", ctx.msg); return 0; }
    if (rc) { fprintf(stderr, "bench_cuda_step: %s\n", ctx.msg); return 1; }
    const int warmup = 2;
    dt_model_config cfg = args.big ? llama_3_8b() : llama_3_2_1b();
    dt_llama *m;
    dt_adapter *a;
    const dt_load_opts lo = {.quantize = args.quantize, .double_quant = true, .wtype = args.dtype};
    if (dt_llama_init_random_ex(&ctx, &cfg, be, 1, &lo, &m)) { fprintf(stderr, "bench_cuda_step: %s\n", ctx.msg); return 1; }
    dt_lora_config lc = {.r = 16, .alpha = 32, .dropout = 0.0f};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    if (dt_lora_create(&ctx, m, &lc, 2, &a)) { fprintf(stderr, "bench_cuda_step: %s\n", ctx.msg); return 1; }
    for (size_t i = 0; i < a->n_params; i++) if (a->params[i] == 0) a->params[i] = 1e-3f; // non-zero B: dA flows
    float *dparams, *dgrads;
    if (adapter_to_device(&ctx, be, a, &dparams, &dgrads)) {
        fprintf(stderr, "bench_cuda_step: %s\n", ctx.msg);
        return 1;
    }
    dt_optimizer opt;
    dt_optim_init(&ctx, &opt, DT_OPT_ADAMW, a->n_params, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f);
    float *dstate = be->alloc(be, 2 * a->n_params * sizeof(float)); // (2 n_params) AdamW m then v
    if (!dstate) { fprintf(stderr, "bench_cuda_step: out of device memory for the AdamW state\n"); return 1; }
    be->zero(be, dstate, 2 * a->n_params * sizeof(float));

    const int64_t B = args.batch, T = args.seq;
    int32_t *ids = malloc((size_t)(B * T) * sizeof(int32_t)), *labels = malloc((size_t)(B * T) * sizeof(int32_t));
    for (int64_t i = 0; i < B * T; i++) ids[i] = labels[i] = (int32_t)((i * 7919) % cfg.vocab_size);
    dt_batch batch = {B, T, ids, labels, NULL, NULL};
    dt_graph g;
    if (dt_graph_init(&ctx, &g, be, 0)) { fprintf(stderr, "bench_cuda_step: %s\n", ctx.msg); return 1; }
    g.training = true;
    double *tps = malloc(sizeof(double) * (size_t)args.steps), opt_time = 0;
    float loss = 0;
    size_t peak = sample_mem(&ctx, 0);
    for (int s = 0; s < warmup + args.steps; s++) {
        double t0 = now();
        dt_graph_reset(&g);
        be->zero(be, dgrads, a->n_params * sizeof(float));
        dt_llama_out out;
        rc = dt_llama_forward(&ctx, &g, m, &a->view, &batch, 0, false, &out);
        peak = sample_mem(&ctx, peak);
        if (!rc) rc = dt_graph_backward(&g, out.loss, 1.0f);
        if (!rc) rc = dt_backend_cuda_check(&ctx);
        if (rc) { fprintf(stderr, "bench_cuda_step: step %d failed: %s\n", s, ctx.msg); return 1; }
        peak = sample_mem(&ctx, peak);
        double t1 = now();
        opt.step++;
        dt_cuda_optim_step(be, &opt, dparams, dgrads, dstate, 1e-4f);
        be->download(be, &loss, dt_f32(out.loss), sizeof loss);
        if (dt_backend_cuda_check(&ctx)) { fprintf(stderr, "bench_cuda_step: %s\n", ctx.msg); return 1; }
        double t2 = now();
        if (s >= warmup) { tps[s - warmup] = (double)(B * T) / (t2 - t0); opt_time += t2 - t1; }
    }
    qsort(tps, (size_t)args.steps, sizeof *tps, cmp_double);
    double med = tps[args.steps / 2];
    double D = cfg.hidden_size, I = cfg.intermediate_size, L = cfg.num_layers, V = cfg.vocab_size;
    double q = (double)cfg.num_heads * cfg.head_dim, kv = (double)cfg.num_kv_heads * cfg.head_dim;
    double matmul_params = L * (D * q + 2 * D * kv + q * D + 3 * D * I) + V * D;
    double attn = L * 3.0 * 4.0 * (double)T * q;
    double flops_tok = 4.0 * matmul_params + 6.0 * (double)a->n_params + attn;
    char summary[256];
    dt_adapter_param_summary(a, m, summary, sizeof summary);
    printf("deltatune lora step  %s shape, B=%lld T=%lld, r=16 all-linear, matmuls %s%s, on %s\n",
           args.big ? "Llama-3-8B" : "Llama-3.2-1B", (long long)B, (long long)T, args.dtype == DT_BF16 ? "bf16" : "f32",
           args.quantize == DT_NF4 ? ", linears NF4 (double quant)" : "", dt_backend_cuda_device_name());
    printf("  attention           %s\n", dt_backend_cuda_attention_note());
    printf("  %s\n", summary);
    printf("  model FLOPs/token   %.2f GFLOP\n", flops_tok * 1e-9);
    printf("  tokens/s (median)   %.0f  (min %.0f, max %.0f over %d steps)\n", med, tps[0], tps[args.steps - 1],
           args.steps);
    printf("  achieved            %.1f TFLOP/s = %.1f%% MFU of %.1f TFLOP/s peak\n", med * flops_tok * 1e-12,
           100.0 * med * flops_tok / (args.peak_tflops * 1e12), args.peak_tflops);
    printf("  AdamW + loss read   %.1f ms per step\n", 1e3 * opt_time / args.steps);
    printf("  peak GPU memory     %.2f GiB in use on the device (cudaMemGetInfo)\n", peak / 1073741824.0);
    printf("  activation arena    %.2f GiB, last loss %.4f\n", dt_arena_capacity(&g.arena) / 1073741824.0, loss);
    dt_graph_free(&g);
    dt_optim_free(&opt);
    be->free(be, dparams);
    be->free(be, dgrads);
    be->free(be, dstate);
    dt_adapter_free(a);
    dt_llama_free(m);
    free(ids); free(labels); free(tps);
    return 0;
}
