"""Reference values for the quantized storage types (autograd/quant*.c), written as tests/golden/quant/vectors.json.

An implementation independent of the C code, written from ggml's published block layouts
(ggml-common.h, dequantize_row_* / quantize_row_*_ref in ggml-quants.c) and bitsandbytes'
functional.py (get_4bit_type, create_dynamic_map, quantize_4bit with compress_statistics).

To stay tiny, the inputs are not stored: both sides draw them from the same splitmix64 stream
(`stream_bytes`, `stream_floats`), and the file holds a 64-bit FNV-1a hash of each exact result
(plus its sum, to see how far off a mismatch is). Bit-exact means: the hash of the C output's
little-endian bytes equals the hash here.
"""
import json
import math
import os

import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = (1 << 64) - 1

# ggml type name -> (values per block, bytes per block, byte offsets of the f16 scale fields)
GGML = {
    "q8_0": (32, 34, [0]),
    "q4_0": (32, 18, [0]),
    "q4_1": (32, 20, [0, 2]),
    "q5_0": (32, 22, [0]),
    "q5_1": (32, 24, [0, 2]),
    "q4_K": (256, 144, [0, 2]),
    "q5_K": (256, 176, [0, 2]),
    "q6_K": (256, 210, [208]),
}
N_BLOCKS = {32: 6, 256: 2, 64: 5}  # blocks per case, by block size


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def stream_bytes(seed, n):
    """n bytes: each splitmix64 output's 8 bytes, little-endian."""
    r, out = SplitMix64(seed), bytearray()
    while len(out) < n:
        out += r.next().to_bytes(8, "little")
    return bytearray(out[:n])


def stream_floats(seed, n, block):
    """n f32 values: (u24 / 2^24 - 0.5) * 2^(b % 9 - 4) for block b; block 0 is all zeros and
    block 1 has a single non-zero value (the edge cases of every quantizer)."""
    r = SplitMix64(seed)
    x = np.zeros(n, np.float32)
    for i in range(n):
        b = i // block
        u = r.next() >> 40
        v = (u / 16777216.0 - 0.5) * 2.0 ** (b % 9 - 4)  # exact in f32: 24-bit u times a power of two
        x[i] = 0.0 if b == 0 or (b == 1 and i % block != 3) else v
    return x


def fix_f16(buf, off):
    """Makes the f16 at buf[off] finite: exponent 31 (inf/NaN) becomes 15."""
    h = buf[off] | buf[off + 1] << 8
    if (h >> 10) & 31 == 31:
        h &= ~(1 << 14)
    buf[off], buf[off + 1] = h & 255, h >> 8


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in bytes(data):
        h = ((h ^ b) * 0x100000001B3) & MASK
    return f"{h:016x}"


def f16(buf, off):
    return torch.tensor(np.frombuffer(bytes(buf[off:off + 2]), np.float16).astype(np.float32))


def u8(buf, off, n):
    return torch.tensor(list(buf[off:off + n]), dtype=torch.int32)


# ---- dequantization, one block at a time, torch float32 ----

def deq_block(name, b):
    """b: the bytes of one block -> torch float32 tensor of its values."""
    if name == "q8_0":
        q = torch.tensor(np.frombuffer(bytes(b[2:34]), np.int8).astype(np.int32))
        return q.float() * f16(b, 0)
    if name in ("q4_0", "q4_1"):
        qs = u8(b, 4 if name == "q4_1" else 2, 16)
        q = torch.cat([qs & 15, qs >> 4]).float()
        return (q - 8) * f16(b, 0) if name == "q4_0" else q * f16(b, 0) + f16(b, 2)
    if name in ("q5_0", "q5_1"):
        o = 4 if name == "q5_1" else 2
        qh = int.from_bytes(bytes(b[o:o + 4]), "little")
        qs = u8(b, o + 4, 16)
        hi = torch.tensor([(qh >> j) & 1 for j in range(32)], dtype=torch.int32) << 4
        q = (torch.cat([qs & 15, qs >> 4]) | hi).float()
        return (q - 16) * f16(b, 0) if name == "q5_0" else q * f16(b, 0) + f16(b, 2)
    if name in ("q4_K", "q5_K"):
        d, dmin = f16(b, 0), f16(b, 2)
        s = list(b[4:16])
        sc, mn = [], []
        for j in range(8):  # 6-bit scale and min of sub-block j
            if j < 4:
                sc.append(s[j] & 63); mn.append(s[j + 4] & 63)
            else:
                sc.append((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4)); mn.append((s[j + 4] >> 4) | ((s[j] >> 6) << 4))
        qs = u8(b, 48 if name == "q5_K" else 16, 128)
        qh = u8(b, 16, 32) if name == "q5_K" else None
        out = []
        for j in range(8):
            nib = qs[32 * (j // 2):32 * (j // 2) + 32]
            q = (nib & 15) if j % 2 == 0 else (nib >> 4)
            if qh is not None:
                q = q | (((qh >> j) & 1) << 4)
            dj = d * float(sc[j])  # f32 products of an f16 and a small integer, as ggml
            mj = dmin * float(mn[j])
            out.append(dj * q.float() - mj)
        return torch.cat(out)
    if name == "q6_K":
        ql, qh = u8(b, 0, 128), u8(b, 128, 64)
        sc = torch.tensor(np.frombuffer(bytes(b[192:208]), np.int8).astype(np.float32))
        d = f16(b, 208)
        y = torch.zeros(256)
        for h in range(2):
            L, H = ql[64 * h:64 * h + 64], qh[32 * h:32 * h + 32]
            quads = [(L[:32] & 15) | ((H & 3) << 4), (L[32:] & 15) | (((H >> 2) & 3) << 4),
                     (L[:32] >> 4) | (((H >> 4) & 3) << 4), (L[32:] >> 4) | (((H >> 6) & 3) << 4)]
            for k, q in enumerate(quads):
                for half in range(2):  # 16 values per scale
                    s = sc[8 * h + 2 * k + half]
                    idx = slice(128 * h + 32 * k + 16 * half, 128 * h + 32 * k + 16 * half + 16)
                    y[idx] = (d * s) * (q[16 * half:16 * half + 16] - 32).float()
        return y
    raise KeyError(name)


def dequant(name, data, nb):
    blck, size, _ = GGML[name]
    return torch.cat([deq_block(name, data[i * size:(i + 1) * size]) for i in range(nb)])


# ---- bitsandbytes ----

def bnb_code(kind):
    if kind == "nf4":
        data = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0]
    else:
        data = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]
    t = torch.tensor(data, dtype=torch.float32)
    return t / t.abs().max()


def dynamic_map_torch():
    """bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), in torch float32."""
    data = []
    for i in range(7):
        items = 2 ** i + 1
        bounds = torch.linspace(0.1, 1, items)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def dynamic_map():
    """The same levels in exact arithmetic, rounded once to float32 (torch's float32 linspace rounds
    differently from one CPU to another; the C side computes this one)."""
    from fractions import Fraction as Fr
    data = []
    for i in range(7):
        items = 2 ** i + 1
        bounds = [Fr(1, 10) + Fr(9, 10) * Fr(k, items - 1) for k in range(items)]
        for k in range(items - 1):
            m = (bounds[k] + bounds[k + 1]) / 2 * Fr(10) ** (i - 6)
            data += [float(np.float32(float(m))), -float(np.float32(float(m)))]
    data += [0.0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def nf4_dequant(code, q, absmax, block):
    hi, lo = (q >> 4).long(), (q & 15).long()
    vals = torch.stack([code[hi], code[lo]], 1).reshape(-1, block)
    return (vals * absmax[:, None]).reshape(-1)


def nf4_quant(code, x, block):
    """Nearest code by midpoints (ties to the lower code), sign kept for values rounding to FP4's -0."""
    order = sorted(range(16), key=lambda i: (float(code[i]), i))
    levels, index = [], []
    for i in order:
        if not levels or float(code[i]) != levels[-1]:
            levels.append(float(code[i])); index.append(i)
    lv = np.array(levels, np.float32)
    mids = (lv[:-1] + lv[1:]) * np.float32(0.5)
    neg_zero = [i for i in range(16) if float(code[i]) == 0 and math.copysign(1, float(code[i])) < 0]
    xb = x.reshape(-1, block)
    absmax = np.abs(xb).max(1).astype(np.float32)
    codes = []
    for b in range(xb.shape[0]):
        inv = np.float32(1) / absmax[b] if absmax[b] > 0 else np.float32(np.inf)
        for v in xb[b]:
            s = np.float32(v * inv) if absmax[b] > 0 else np.float32(0)
            c = index[int((mids < s).sum())]
            if neg_zero and float(code[c]) == 0 and s < 0:
                c = neg_zero[0]
            codes.append(c)
    codes = np.array(codes, np.uint8).reshape(-1, 2)
    return (codes[:, 0] << 4 | codes[:, 1]).astype(np.uint8), absmax


def double_quant(absmax, nested_block, dyn):
    s = 0.0
    for a in absmax:
        s += float(a)  # in order, in double, as the C side
    off = np.float32(s / len(absmax))
    dyn = dyn.numpy()
    q, nested = [], []
    for lo in range(0, len(absmax), nested_block):
        v = (absmax[lo:lo + nested_block] - off).astype(np.float32)
        amax = np.float32(np.abs(v).max())
        nested.append(amax)
        inv = np.float32(1) / amax if amax > 0 else np.float32(0)
        for t in (v * inv).astype(np.float32):
            dist = np.abs(dyn.astype(np.float64) - float(t))
            q.append(int(np.flatnonzero(dist == dist.min())[0]))  # nearest; the lower one on a tie
    return np.array(q, np.uint8), np.array(nested, np.float32), off


# ---- ggml reference quantizers (the simple ones) ----

def f32(v):
    return np.float32(v)


def to_f16_bytes(v):
    return np.float16(np.float32(v)).tobytes()


def quant_ggml(name, x):
    out = bytearray()
    for blk in x.reshape(-1, 32):
        if name == "q8_0":
            amax = f32(np.abs(blk).max())
            d = f32(amax / f32(127))
            idv = f32(1) / d if d != 0 else f32(0)
            q = [int(math.copysign(math.floor(abs(float(f32(v * idv))) + 0.5), float(v))) for v in blk]
            out += to_f16_bytes(d) + np.array(q, np.int8).tobytes()
            continue
        if name in ("q4_0", "q5_0"):
            i = int(np.argmax(np.abs(blk)))  # first of the largest magnitudes
            mx = blk[i]
            d = f32(mx / f32(-8 if name == "q4_0" else -16))
            idv = f32(1) / d if d != 0 else f32(0)
            add, top = (f32(8.5), 15) if name == "q4_0" else (f32(16.5), 31)
            q = [min(top, int(math.trunc(float(f32(f32(v * idv) + add))))) for v in blk]
            head = to_f16_bytes(d)
        else:
            mn, mx = f32(blk.min()), f32(blk.max())
            top = 15 if name == "q4_1" else 31
            d = f32(f32(mx - mn) / f32(top))
            idv = f32(1) / d if d != 0 else f32(0)
            q = [int(math.trunc(float(f32(f32(f32(v - mn) * idv) + f32(0.5))))) for v in blk]
            q = [min(top, v) for v in q]
            head = to_f16_bytes(d) + to_f16_bytes(mn)
        if name in ("q4_0", "q4_1"):
            out += head + bytes((q[j] | q[j + 16] << 4) for j in range(16))
        else:
            qh = 0
            for j in range(32):
                qh |= ((q[j] >> 4) & 1) << j
            out += head + qh.to_bytes(4, "little") + bytes(((q[j] & 15) | (q[j + 16] & 15) << 4) for j in range(16))
    return out


# ---- a quantized model: the llama_gqa case on a Q4_0 base (every 2-D weight quantized as a GGUF file
# written by `merge --dtype q4_0` holds it) and on an NF4 base (linear weights only, as quantize-on-load
# does), reference in float64 on the dequantized weights ----

def quantized_weights(W32, kind):
    out = {}
    for k, v in W32.items():
        x = v.numpy().astype(np.float32)
        if v.dim() != 2 or (kind == "nf4" and "_proj." not in k):
            out[k] = v
            continue
        flat = x.reshape(-1)
        if kind == "q4_0":
            q = quant_ggml("q4_0", flat)
            y = dequant("q4_0", q, flat.size // 32).numpy()
        else:
            code = bnb_code("nf4")
            qq, am = nf4_quant(code, flat, 64)
            y = nf4_dequant(code, torch.tensor(qq.astype(np.int32)), torch.tensor(am), 64).numpy()
        out[k] = torch.from_numpy(y.reshape(x.shape).copy())
    return out


def quant_model_case(check):
    import hf_ref
    import st_io
    gqa = os.path.join(HERE, "llama_gqa")
    with open(os.path.join(gqa, "config.json")) as f:
        cfg = json.load(f)
    W32 = {k: torch.from_numpy(v) for k, v in st_io.load(os.path.join(gqa, "model.safetensors"))[0].items()}
    ad, _ = st_io.load(os.path.join(gqa, "adapter", "adapter_model.safetensors"))
    with open(os.path.join(gqa, "adapter", "adapter_config.json")) as f:
        acfg = json.load(f)
    scaling = acfg["lora_alpha"] / acfg["r"]
    gold, _ = st_io.load(os.path.join(gqa, "golden.safetensors"))
    ids, labels = torch.from_numpy(gold["input_ids"]).long(), torch.from_numpy(gold["labels"]).long()
    prefix = "base_model.model."
    out = {}
    for kind in ("q4_0", "nf4"):
        W = {k: v.double() for k, v in quantized_weights(W32, kind).items()}
        params = {k: torch.from_numpy(v).double().requires_grad_() for k, v in ad.items()}
        lora = {}
        for k in params:
            if k.endswith("lora_A.weight"):
                path = k[len(prefix):-len(".lora_A.weight")]
                lora[path] = (params[k], params[k.replace("lora_A", "lora_B")], scaling)
        logits, _ = hf_ref.forward(cfg, W, ids, lora=lora)
        loss = hf_ref.causal_lm_loss(logits, labels)
        loss.backward()
        bare = float(hf_ref.causal_lm_loss(hf_ref.forward(cfg, {k: v.double() for k, v in W32.items()}, ids, lora=lora)[0], labels))
        check(f"quant model {kind}: loss moved by quantization (at least 1e-4)", -abs(float(loss) - bare), -1e-4)
        out[f"{kind}.loss"] = loss.detach().float().numpy().reshape(1)
        out[f"{kind}.logits_last"] = logits[:, -1, :].detach().float().numpy()  # (B, V)
        if kind == "q4_0":
            for ab in ("A", "B"):
                k = f"{prefix}model.layers.0.self_attn.q_proj.lora_{ab}.weight"
                out[f"{kind}.grad.{k}"] = params[k].grad.float().numpy()
        print(f"  quant model {kind}: loss {float(loss):.6f} (f32 base {bare:.6f})")
    st_io.save(os.path.join(HERE, "quant", "model_golden.safetensors"), out,
               {"model": "tests/golden/llama_gqa", "adapter": "tests/golden/llama_gqa/adapter", "logits_atol": "0.0001",
                "grad_rtol": "0.0001"})


def case_seed(name, what):
    return int.from_bytes(name.encode() + what.encode(), "little") & MASK


def entry(arr):
    a = np.ascontiguousarray(arr)
    return {"fnv1a64": fnv1a(a.tobytes()), "sum": repr(float(np.asarray(a, np.float64).sum())), "n": int(a.size)}


def main(check):
    torch.set_num_threads(1)
    out = {"about": "see gen_quant.py: inputs are splitmix64 streams, results hashed (FNV-1a 64)"}
    for name, (blck, size, f16s) in GGML.items():
        nb = N_BLOCKS[blck]
        data = stream_bytes(case_seed(name, "deq"), nb * size)
        for i in range(nb):
            for o in f16s:
                fix_f16(data, i * size + o)
        y = dequant(name, data, nb).numpy()
        check(f"quant {name}: dequantized values finite", float(np.isfinite(y).all() == False), 0)
        out[f"{name}.to_f32"] = entry(y)
        if blck == 32:
            x = stream_floats(case_seed(name, "q"), nb * blck, blck)
            q = quant_ggml(name, x)
            out[f"{name}.from_f32"] = entry(np.frombuffer(bytes(q), np.uint8))
            err = float(np.abs(dequant(name, q, nb).numpy() - x).max())
            check(f"quant {name}: reference quantizer round trip max error / 2^-4 range", err, 0.25)
    dyn = dynamic_map()
    check("quant: dynamic map vs bitsandbytes' torch float32 construction (max abs diff)",
          float((dyn - dynamic_map_torch()).abs().max()), 1.2e-7)
    out["bnb.dynamic_map"] = entry(dyn.numpy())
    for kind in ("nf4", "fp4"):
        code = bnb_code(kind)
        out[f"{kind}.code"] = entry(code.numpy())
        nb = N_BLOCKS[64]
        q = torch.tensor(list(stream_bytes(case_seed(kind, "deq"), nb * 32)), dtype=torch.int32)
        absmax = torch.tensor(np.abs(stream_floats(case_seed(kind, "am"), 9 * 64, 64)[-nb:]))
        out[f"{kind}.to_f32"] = entry(nf4_dequant(code, q, absmax, 64).numpy())
        x = stream_floats(case_seed(kind, "q"), nb * 64, 64)
        qq, am = nf4_quant(code, x, 64)
        out[f"{kind}.from_f32.q"] = entry(qq)
        out[f"{kind}.from_f32.absmax"] = entry(am)
    # Double quantization: 40 absmax values in nested blocks of 16 (bitsandbytes uses 256; any size
    # exercises the same indexing), then the NF4 dequantization through the double-quantized state.
    am = np.abs(stream_floats(case_seed("dq", "am"), 9 * 64, 64)[-40:]).astype(np.float32) + np.float32(0.01)
    qa, nested, off = double_quant(am, 16, dyn)
    out["dq.q"] = entry(qa)
    out["dq.nested_absmax"] = entry(nested)
    out["dq.offset"] = entry(np.array([off], np.float32))
    code = bnb_code("nf4")
    deq_am = torch.tensor(dyn.numpy()[qa]) * torch.tensor(np.repeat(nested, 16)[:40]) + torch.tensor(off)
    q = torch.tensor(list(stream_bytes(case_seed("dq", "deq"), 40 * 32)), dtype=torch.int32)
    out["dq.to_f32"] = entry(nf4_dequant(code, q, deq_am, 64).numpy())
    rel = float((deq_am - torch.tensor(am)).abs().max() / torch.tensor(am).abs().max())
    check("quant dq: double-quantized absmax relative error", rel, 0.02)
    d = os.path.join(HERE, "quant")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vectors.json"), "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"quant: {len(out) - 1} reference hashes")
    quant_model_case(check)


if __name__ == "__main__":
    def _check(what, value, limit):
        ok = value <= limit
        print(f"  {'ok ' if ok else 'BAD'} {what}: {value:.3g} (limit {limit:g})")
        if not ok:
            raise SystemExit(1)
    main(_check)
