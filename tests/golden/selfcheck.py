"""Independent checks of hf_ref.py, run by gen_golden.py before anything is written.

- naive_* are written a second time, loop by loop, from the papers / Meta's reference
  (RoPE as a 2-D rotation of the pair (x[i], x[i + hd/2]); Llama 3.1 `apply_scaling` as
  a per-frequency if/elif; softmax by hand), not from the vectorised code.
- finite differences in float64 check the autograd gradients of the whole model.
"""
import math

import numpy as np
import torch

import hf_ref


def naive_inv_freq(cfg):
    hd = hf_ref.head_dim(cfg)
    theta = cfg["rope_theta"]
    freqs = [1.0 / theta ** (2 * i / hd) for i in range(hd // 2)]
    rs = cfg.get("rope_scaling")
    if rs is None:
        return freqs
    assert rs["rope_type"] == "llama3"
    old, lo, hi, fac = (rs["original_max_position_embeddings"], rs["low_freq_factor"],
                        rs["high_freq_factor"], rs["factor"])
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old / hi:
            out.append(f)
        elif wavelen > old / lo:
            out.append(f / fac)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append((1 - smooth) * f / fac + smooth * f)
    return out


def llama3_bands(cfg):
    """Count of (high, medium, low) frequency bands among the RoPE pairs."""
    rs = cfg["rope_scaling"]
    old = rs["original_max_position_embeddings"]
    hd = hf_ref.head_dim(cfg)
    n = [0, 0, 0]
    for i in range(hd // 2):
        wl = 2 * math.pi * cfg["rope_theta"] ** (2 * i / hd)
        n[0 if wl < old / rs["high_freq_factor"] else 2 if wl > old / rs["low_freq_factor"] else 1] += 1
    return tuple(n)


def naive_rope(vec, pos, freqs):
    half = len(vec) // 2
    out = np.empty_like(vec)
    for i in range(half):
        a = pos * freqs[i]
        c, s = math.cos(a), math.sin(a)
        out[i] = vec[i] * c - vec[i + half] * s
        out[i + half] = vec[i + half] * c + vec[i] * s
    return out


def naive_attention(q, k, v, pos, seq, freqs):
    """q (B,H,T,hd), k/v (B,KV,T,hd) numpy float64; pos/seq (B,T) -> (B,T,H*hd)."""
    B, H, T, hd = q.shape
    KV = k.shape[1]
    out = np.zeros((B, T, H * hd))
    for b in range(B):
        for h in range(H):
            g = h // (H // KV)  # the kv head this query head shares
            kr = [naive_rope(k[b, g, s], pos[b, s], freqs) for s in range(T)]
            for t in range(T):
                qr = naive_rope(q[b, h, t], pos[b, t], freqs)
                keys = [s for s in range(t + 1) if seq is None or seq[b, s] == seq[b, t]]
                sc = [float(qr @ kr[s]) / math.sqrt(hd) for s in keys]
                m = max(sc)
                e = [math.exp(x - m) for x in sc]
                z = sum(e)
                for w, s in zip(e, keys):
                    out[b, t, h * hd:(h + 1) * hd] += (w / z) * v[b, g, s]
    return out


def check_attention(cfg, B, T, position_ids=None, seq_ids=None, seed=0):
    """max |vectorised - naive| attention output on random q/k/v for this config."""
    g = torch.Generator().manual_seed(seed)
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], hf_ref.head_dim(cfg)
    q = torch.randn(B, H, T, hd, generator=g, dtype=torch.float64)
    k = torch.randn(B, KV, T, hd, generator=g, dtype=torch.float64)
    v = torch.randn(B, KV, T, hd, generator=g, dtype=torch.float64)
    if position_ids is None:
        position_ids = torch.arange(T)[None].expand(B, T)
    cos, sin = hf_ref.rope_cos_sin(hf_ref.rope_inv_freq(cfg), position_ids)
    got = hf_ref.attention(q, k, v, cos, sin, hf_ref.allowed_mask(B, T, seq_ids)).numpy()
    ref = naive_attention(q.numpy(), k.numpy(), v.numpy(), position_ids.numpy(),
                          None if seq_ids is None else seq_ids.numpy(), naive_inv_freq(cfg))
    freq_err = float(np.max(np.abs(hf_ref.rope_inv_freq(cfg).numpy() - np.array(naive_inv_freq(cfg)))))
    return float(np.max(np.abs(got - ref))), freq_err


def naive_loss(logits, labels):
    """Cross entropy of logits[b, t] against labels[b, t + 1], mean over labels != -100."""
    lg = logits.detach().numpy()
    lb = labels.numpy()
    tot, n = 0.0, 0
    for b in range(lb.shape[0]):
        for t in range(lb.shape[1] - 1):
            y = lb[b, t + 1]
            if y == hf_ref.IGNORE_INDEX:
                continue
            row = lg[b, t]
            m = row.max()
            tot += m + math.log(np.exp(row - m).sum()) - row[y]
            n += 1
    return tot / n


def directional_fd(loss_fn, params, grads, seed=0, h=1e-5):
    """Relative error of <grad, d> against the central difference of the loss along a random
    unit direction d covering every parameter (float64)."""
    g = torch.Generator().manual_seed(seed)
    ds = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    # unit length overall, so the truncation error (~ h^2 |d|^3) does not grow with the count
    norm = math.sqrt(sum(float((d * d).sum()) for d in ds))
    ds = [d / norm for d in ds]
    with torch.no_grad():
        for p, d in zip(params, ds):
            p.add_(h * d)
        lp = float(loss_fn())
        for p, d in zip(params, ds):
            p.sub_(2 * h * d)
        lm = float(loss_fn())
        for p, d in zip(params, ds):
            p.add_(h * d)
    fd = (lp - lm) / (2 * h)
    an = float(sum((gr * d).sum() for gr, d in zip(grads, ds)))
    return abs(fd - an) / max(abs(an), 1e-30), an


def entrywise_fd(loss_fn, named, grads, per_tensor=2, seed=0, h=1e-5):
    """Max relative error over `per_tensor` random entries of every tensor, each checked
    against its central difference. Returns (max rel err, max abs err, entries checked)."""
    g = torch.Generator().manual_seed(seed)
    worst_rel = worst_abs = 0.0
    n = 0
    with torch.no_grad():
        for (name, p), gr in zip(named, grads):
            flat, gflat = p.view(-1), gr.reshape(-1)
            for j in torch.randint(0, flat.numel(), (per_tensor,), generator=g).tolist():
                old = float(flat[j])
                flat[j] = old + h
                lp = float(loss_fn())
                flat[j] = old - h
                lm = float(loss_fn())
                flat[j] = old
                fd = (lp - lm) / (2 * h)
                an = float(gflat[j])
                err = abs(fd - an)
                worst_abs = max(worst_abs, err)
                # relative to the tensor's largest gradient entry, so near-zero entries don't blow up
                worst_rel = max(worst_rel, err / max(float(gflat.abs().max()), 1e-30))
                n += 1
    return worst_rel, worst_abs, n


def llamacpp_permute_naive(w, n_head):
    """Row map of convert_hf_to_gguf.py LlamaModel.permute written out per row: inside each
    head, HF's rotate-half row (half s, index j) moves to the interleaved row 2*j + s."""
    rows = w.shape[0]
    hd = rows // n_head
    out = np.empty_like(w)
    for h in range(n_head):
        for s in range(2):
            for j in range(hd // 2):
                out[h * hd + 2 * j + s] = w[h * hd + s * (hd // 2) + j]
    return out
