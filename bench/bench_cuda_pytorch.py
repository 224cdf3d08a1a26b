#!/usr/bin/env python3
"""The LoRA training step of bench/bench_cuda_step.c in PyTorch + Hugging Face PEFT, for comparison.

--shape 8b --quantize nf4: Llama-3-8B's shape with every decoder linear a bitsandbytes Linear4bit (NF4,
double quantization, bf16 compute), as transformers' BitsAndBytesConfig(load_in_4bit=True) makes them;
needs bitsandbytes (skipped, saying so, without it).

A random-weight model of Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate
8192, vocab 128256, tied) with bf16 weights and SDPA attention, batch 4 x 2048, LoRA r = 16 (alpha 32, no
dropout) on every linear, forward + backward + AdamW. Prints the lines bench_cuda_step prints: tokens/s
(median of the steps after warm-up), MFU against --peak-tflops with the same FLOP count, and the peak
device memory in use (torch.cuda.mem_get_info, i.e. cudaMemGetInfo, sampled after each forward and
backward, as the C benchmark does), plus PyTorch's own allocator peak.

Model FLOPs per token: 4 x (matmul params) (forward and dX; the frozen base gets no dW), 6 x (LoRA
params), and attention 3 x 4 x T x H x hd per layer (counted without causal halving).

Needs a CUDA GPU, torch, transformers and peft (pip install torch transformers peft).
Usage: python3 bench/bench_cuda_pytorch.py [--peak-tflops 989.4] [--steps 10] [--batch 4] [--seq 2048]
                                            [--dtype bf16|f32] [--shape 1b|8b] [--quantize none|nf4]
"""
import argparse
import sys
import time

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peak-tflops", type=float, default=989.4, help="device peak (default: H100 SXM dense bf16)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16", help="dtype of the frozen weights")
    ap.add_argument("--shape", choices=["1b", "8b"], default="1b", help="Llama-3.2-1B or Llama-3-8B")
    ap.add_argument("--quantize", choices=["none", "nf4"], default="none", help="decoder linears in NF4")
    args = ap.parse_args()
    if args.peak_tflops <= 0 or args.steps < 1 or args.batch < 1 or args.seq < 2:
        ap.error("--peak-tflops, --steps, --batch must be positive, --seq >= 2")
    return args


def llama_3_2_1b_config(LlamaConfig):
    return LlamaConfig(
        hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
        intermediate_size=8192, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
        rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        attn_implementation="sdpa",
    )


def llama_3_8b_config(LlamaConfig):
    return LlamaConfig(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192, rms_norm_eps=1e-5,
        rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001,
        attn_implementation="sdpa",
    )


def to_nf4(model, torch, bnb):
    """Every decoder linear replaced by a bitsandbytes Linear4bit holding its weights in NF4."""
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, lin in list(parent.named_children()):
                if not isinstance(lin, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(lin.weight.data.cpu(), requires_grad=False, compress_statistics=True,
                                             quant_type="nf4").to("cuda")  # quantized on the move
                setattr(parent, name, q)
                del lin
        torch.cuda.empty_cache()


def main():
    args = parse_args()
    try:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        print(f"bench_cuda_pytorch: needs torch, transformers and peft (pip install torch transformers peft): {e}",
              file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("bench_cuda_pytorch: skipped: no CUDA device")
        return 0

    bnb = None
    if args.quantize == "nf4":
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            print(f"bench_cuda_pytorch: skipped: --quantize nf4 needs bitsandbytes ({e})")
            return 0
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    cfg = (llama_3_8b_config if args.shape == "8b" else llama_3_2_1b_config)(LlamaConfig)
    torch.manual_seed(1)
    torch.set_default_dtype(dtype)  # build the weights in their storage dtype, on the GPU
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    if bnb is not None:
        to_nf4(model, torch, bnb)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)  # adapters in f32 (PEFT's autocast_adapter_dtype), like deltatune's
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(1e-3)  # non-zero B so that dA flows, as bench_cuda_step does
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    B, T, V = args.batch, args.seq, cfg.vocab_size
    ids = ((torch.arange(B * T, dtype=torch.int64) * 7919) % V).reshape(B, T).cuda()
    warmup, times, peak, loss = 2, [], 0, 0.0

    def sample_peak(current):
        free, total = torch.cuda.mem_get_info()
        return max(current, total - free)

    torch.cuda.reset_peak_memory_stats()
    for s in range(warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids)
        peak = sample_peak(peak)
        out.loss.backward()
        peak = sample_peak(peak)
        opt.step()
        loss = out.loss.item()  # synchronises
        torch.cuda.synchronize()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
        del out

    tps = sorted(B * T / t for t in times)
    med = tps[len(tps) // 2]  # the element bench_cuda_step reports
    D, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    matmul_params = L * (D * q + 2 * D * kv + q * D + 3 * D * I) + V * D
    n_lora = sum(p.numel() for p in trainable)
    flops_tok = 4.0 * matmul_params + 6.0 * n_lora + L * 3.0 * 4.0 * T * q
    n_train, n_all = model.get_nb_trainable_parameters()
    shape = "Llama-3-8B" if args.shape == "8b" else "Llama-3.2-1B"
    nf4 = ", linears NF4 (bitsandbytes, double quant)" if bnb is not None else ""
    print(f"pytorch lora step  {shape} shape, B={B} T={T}, r=16 all-linear, weights {args.dtype}{nf4}, SDPA, "
          f"on {torch.cuda.get_device_name()}")
    print(f"  trainable params: {n_train} || all params: {n_all} || trainable%: {100.0 * n_train / n_all:.4f}")
    print(f"  model FLOPs/token   {flops_tok * 1e-9:.2f} GFLOP")
    print(f"  tokens/s (median)   {med:.0f}  (min {tps[0]:.0f}, max {tps[-1]:.0f} over {args.steps} steps)")
    print(f"  achieved            {med * flops_tok * 1e-12:.1f} TFLOP/s = "
          f"{100.0 * med * flops_tok / (args.peak_tflops * 1e12):.1f}% MFU of {args.peak_tflops:.1f} TFLOP/s peak")
    print(f"  peak GPU memory     {peak / 2**30:.2f} GiB in use on the device (cudaMemGetInfo); "
          f"torch allocator peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"  last loss           {loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
