#!/usr/bin/python3
"""The LoRA training step of bench/bench_lora_step.c in plain PyTorch on the CPU, for comparison.

The same random-weight model shapes (--model smollm2-135m | llama-3.2-1b), batch 1 x 512, LoRA r = 16
(alpha 32, no dropout) on every linear, forward + backward + AdamW, on --threads threads (default 2).
The frozen base is stored in bf16, the LoRA parameters, their gradients and AdamW's state in f32, and
the step runs under torch.autocast("cpu", dtype=torch.bfloat16): what a user gets by flipping PyTorch
to bf16 (--dtype f32 keeps everything f32 for reference).

Written for Debian's python3-torch 1.13 (no transformers needed) and as fast as that version allows:
the model is a few tensor ops per layer with no module hooks, attention is two batched matmuls under a
precomputed causal mask with the GQA key/value heads expanded as views, RMSNorm and the loss in f32,
AdamW with foreach=True, no gradient for anything frozen.

Prints one line "RESULT key=value ..." (tokens/s median, min, max, peak RSS MiB, the bf16 matmul peak
of torch measured after each step) that bench/bench_bf16.sh reads, and the same as text.
"""
import argparse
import math
import resource
import sys
import time

SHAPES = {
    # hidden, layers, heads, kv heads, head_dim, intermediate, vocab, rope theta
    "smollm2-135m": (576, 30, 9, 3, 64, 1536, 49152, 100000.0),
    "llama-3.2-1b": (2048, 16, 32, 8, 64, 8192, 128256, 500000.0),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(SHAPES), default="smollm2-135m")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"bench_pytorch_cpu: needs Debian's python3-torch: {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    D, L, H, KV, hd, I, V, theta = SHAPES[args.model]
    T, r, alpha = args.seq, 16, 32.0
    G, scale = H // KV, alpha / r
    wdt = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    def frozen(*shape):
        return (torch.randn(*shape) * 0.02).to(wdt)

    # Frozen base (out, in) as nn.Linear stores it; adapters A (r, in) and B (out, r), B non-zero as in the C bench.
    embed = frozen(V, D)
    layers, params = [], []
    for _ in range(L):
        ly = {"attn_norm": torch.ones(D), "ffn_norm": torch.ones(D)}
        for name, out_f, in_f in (("q", H * hd, D), ("k", KV * hd, D), ("v", KV * hd, D), ("o", D, H * hd),
                                  ("gate", I, D), ("up", I, D), ("down", D, I)):
            A = (torch.randn(r, in_f) / math.sqrt(in_f)).requires_grad_()
            B = torch.full((out_f, r), 1e-3).requires_grad_()
            ly[name] = (frozen(out_f, in_f), A, B)
            params += [A, B]
        layers.append(ly)
    norm = torch.ones(D)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, foreach=True)

    inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).float()  # (T, hd)
    sin = torch.cat([ang.sin(), ang.sin()], -1).float()
    mask = torch.full((T, T), float("-inf")).triu(1)     # (T, T) causal

    def rms(x, w):
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def rope(x):  # (B, heads, T, hd), rotate-half
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def lin(x, p):
        W, A, B = p
        return F.linear(x, W) + F.linear(F.linear(x, A), B) * scale

    ids = (torch.arange(T) * 7919) % V
    ids = ids[None, :]
    labels = ids.clone()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            x = F.embedding(ids, embed).float()  # (1, T, D)
            for ly in layers:
                h = rms(x, ly["attn_norm"])
                q = lin(h, ly["q"]).view(1, T, H, hd).transpose(1, 2)
                k = lin(h, ly["k"]).view(1, T, KV, hd).transpose(1, 2)
                v = lin(h, ly["v"]).view(1, T, KV, hd).transpose(1, 2)
                q, k = rope(q.float()), rope(k.float())
                k = k[:, :, None].expand(1, KV, G, T, hd).reshape(1, H, T, hd)
                v = v[:, :, None].expand(1, KV, G, T, hd).reshape(1, H, T, hd)
                s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
                p = torch.softmax(s.float(), -1)
                a = torch.matmul(p, v).transpose(1, 2).reshape(1, T, H * hd)
                x = x + lin(a, ly["o"])
                h = rms(x, ly["ffn_norm"])
                x = x + lin(F.silu(lin(h, ly["gate"])) * lin(h, ly["up"]), ly["down"])
            h = rms(x, norm)
            logits = F.linear(h, embed)
            loss = F.cross_entropy(logits[0, :-1].float(), labels[0, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    pa = torch.randn(2048, 2048).to(wdt)
    pb = torch.randn(2048, 2048).to(wdt)

    def peak():  # torch's own matmul peak at this dtype, best of 2
        best = 0.0
        for _ in range(2):
            t = time.perf_counter()
            torch.matmul(pa, pb)
            best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - t))
        return best

    tps, peaks, loss = [], [], 0.0
    rss = 0.0
    for s in range(args.warmup + args.steps):
        if s == args.warmup:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        t = time.perf_counter()
        loss = step()
        dt = time.perf_counter() - t
        if s >= args.warmup:
            tps.append(T / dt)
            peaks.append(peak())
    rss = max(rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    tps.sort()
    peaks.sort()
    med = tps[len(tps) // 2]
    print(f"pytorch {torch.__version__} {args.model} {args.dtype} (autocast bf16: {args.dtype == 'bf16'}), "
          f"B=1 T={T} r={r} all-linear, AdamW, {args.threads} threads")
    print(f"  tokens/s (median)   {med:.1f}  (min {tps[0]:.1f}, max {tps[-1]:.1f} over {len(tps)} steps)")
    print(f"  torch {args.dtype} matmul peak {peaks[len(peaks) // 2] * 1e-9:.1f} GFLOP/s (2048^3, median)")
    print(f"  peak RSS            {rss:.1f} MiB, last loss {loss:.4f}")
    print(f"RESULT impl=pytorch model={args.model} dtype={args.dtype} tps={med:.2f} tps_min={tps[0]:.2f} "
          f"tps_max={tps[-1]:.2f} rss_mib={rss:.1f} peak_gflops={peaks[len(peaks) // 2] * 1e-9:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
