"""Plain-torch reference of the Hugging Face Llama-family causal LM (Llama, Qwen2, Qwen3)
with PEFT LoRA and PEFT prompt tuning, written from transformers' modeling_llama.py /
modeling_qwen2.py / modeling_qwen3.py / modeling_rope_utils.py and PEFT's lora/layer.py
and peft_model.py (PeftModelForCausalLM.forward).

Everything runs in whatever dtype the weights have; gen_golden.py passes float64
copies of float32 weights, so the stored float32 reference is the exact result
rounded once (more accurate than transformers' own float32 run).

Tensor names are the Hugging Face ones, `W` is {hf_name: tensor}.
"""
import math
import re

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def head_dim(cfg):
    # transformers: getattr(config, "head_dim", None) or hidden_size // num_attention_heads
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def has_qkv_bias(cfg):
    # Qwen2Attention hard-codes bias=True on q/k/v (o_proj never has one there);
    # Llama and Qwen3 use config.attention_bias for all four projections.
    return cfg["model_type"] == "qwen2" or bool(cfg.get("attention_bias", False))


def has_o_bias(cfg):
    return cfg["model_type"] != "qwen2" and bool(cfg.get("attention_bias", False))


def has_qk_norm(cfg):
    return cfg["model_type"] == "qwen3"


def rms_norm(x, w, eps):
    # LlamaRMSNorm / Qwen3RMSNorm: x * rsqrt(mean(x^2) + eps), then weight *.
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def default_inv_freq(theta, hd, dtype):
    # _compute_default_rope_parameters: 1 / theta^(arange(0, dim, 2) / dim)
    return 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).to(dtype) / hd))


def llama3_inv_freq(inv_freq, rs):
    # _compute_llama3_parameters (Llama 3.1 wavelength-banded scaling).
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def rope_inv_freq(cfg, dtype=torch.float64):
    inv = default_inv_freq(cfg["rope_theta"], head_dim(cfg), dtype)
    rs = cfg.get("rope_scaling")
    if rs is None:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "default":
        return inv
    if kind == "llama3":
        return llama3_inv_freq(inv, rs)
    raise NotImplementedError(f"rope_scaling type {kind}")


def rope_cos_sin(inv_freq, position_ids):
    # LlamaRotaryEmbedding.forward: freqs = pos * inv_freq; emb = cat(freqs, freqs).
    freqs = position_ids[:, :, None].to(inv_freq.dtype) * inv_freq[None, None, :]  # (B, T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin):
    # x (B, H, T, hd); cos/sin (B, T, hd) broadcast over heads (unsqueeze_dim=1).
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def repeat_kv(x, n_rep):
    # (B, KV, T, hd) -> (B, KV*n_rep, T, hd), each kv head repeated n_rep times in a row.
    b, kv, t, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)


def allowed_mask(B, T, seq_ids=None):
    """(B, 1, T, T) bool: query t may attend key s. Causal; with seq_ids also block-diagonal
    (a packed row: a position sees only earlier positions of its own example)."""
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    if seq_ids is None:
        return causal[None, None].expand(B, 1, T, T)
    same = seq_ids[:, :, None] == seq_ids[:, None, :]  # (B, T, T)
    return (causal[None] & same)[:, None]


def attention(q, k, v, cos, sin, mask):
    """q (B, H, T, hd), k/v (B, KV, T, hd) before RoPE -> (B, T, H*hd) (eager_attention_forward)."""
    B, H, T, hd = q.shape
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    n_rep = H // k.shape[1]
    k = repeat_kv(k, n_rep)
    v = repeat_kv(v, n_rep)
    att = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5  # (B, H, T, T)
    att = att.masked_fill(~mask, float("-inf"))
    att = F.softmax(att, dim=-1)
    y = torch.matmul(att, v)  # (B, H, T, hd)
    return y.transpose(1, 2).reshape(B, T, H * hd)


def get_pattern_key(pattern_keys, key_to_match):
    """PEFT utils.other.get_pattern_key: the first key, in the dict's order, that matches the module
    name as a regular expression for a suffix after a dot or for the whole name; else the name."""
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match


def lora_rank_alpha(config, path):
    """LoraModel._create_and_replace: (r, lora_alpha) of the module `path` (its name in the base model,
    e.g. model.layers.0.self_attn.q_proj) under an adapter_config.json dict, with rank_pattern and
    alpha_pattern in the file's order."""
    r_key = get_pattern_key(config["rank_pattern"].keys(), path)
    alpha_key = get_pattern_key(config["alpha_pattern"].keys(), path)
    return (config["rank_pattern"].get(r_key, config["r"]),
            config["alpha_pattern"].get(alpha_key, config["lora_alpha"]))


def lora_scaling(config, path):
    """LoraLayer.update_layer: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora, per module."""
    r, alpha = lora_rank_alpha(config, path)
    return alpha / math.sqrt(r) if config["use_rslora"] else alpha / r


def linear(x, W, path, lora, bias=False):
    """nn.Linear `path` plus, when targeted, PEFT LoRA: base(x) + lora_B(lora_A(x)) * scaling."""
    y = x @ W[path + ".weight"].T
    if bias:
        y = y + W[path + ".bias"]
    if lora is not None and path in lora:
        A, Bm, scaling = lora[path]  # A (r, in), B (out, r)
        y = y + (x @ A.T) @ Bm.T * scaling
    return y


def embed(W, input_ids):
    """nn.Embedding model.embed_tokens: the rows of the table (gen_methods.py wraps it for LoRA)."""
    return W["model.embed_tokens.weight"][input_ids]


def head(hf, weight):
    """The output projection lm_head (no bias); weight is the embedding table when tied."""
    return hf @ weight.T


def forward(cfg, W, input_ids, lora=None, prompt=None, position_ids=None, seq_ids=None):
    """-> (logits (B, T', V), final-norm hidden (B, T', C)); T' = n_virtual + T with a prompt.

    lora: {module path: (A, B, scaling)}; prompt: (n_virtual, C) prepended to the input
    embeddings as PeftModelForCausalLM does for prompt tuning; position_ids (B, T') default
    0..T'-1; seq_ids (B, T') makes the mask block-diagonal (packed rows)."""
    H = cfg["num_attention_heads"]
    KV = cfg["num_key_value_heads"]
    hd = head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    x = embed(W, input_ids)  # (B, T, C)
    B = x.shape[0]
    if prompt is not None:
        x = torch.cat((prompt[None].expand(B, -1, -1).to(x.dtype), x), dim=1)  # (B, n+T, C)
    T = x.shape[1]
    if position_ids is None:
        position_ids = torch.arange(T)[None].expand(B, T)
    cos, sin = rope_cos_sin(rope_inv_freq(cfg, x.dtype), position_ids)  # (B, T, hd)
    mask = allowed_mask(B, T, seq_ids)
    qkv_bias, o_bias = has_qkv_bias(cfg), has_o_bias(cfg)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(h, W, p + "self_attn.q_proj", lora, qkv_bias).view(B, T, H, hd)
        k = linear(h, W, p + "self_attn.k_proj", lora, qkv_bias).view(B, T, KV, hd)
        v = linear(h, W, p + "self_attn.v_proj", lora, qkv_bias).view(B, T, KV, hd)
        if has_qk_norm(cfg):
            # Qwen3: RMSNorm over head_dim of each head, before RoPE.
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        y = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), cos, sin, mask)
        x = x + linear(y, W, p + "self_attn.o_proj", lora, o_bias)
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = linear(h, W, p + "mlp.gate_proj", lora)
        u = linear(h, W, p + "mlp.up_proj", lora)
        x = x + linear(F.silu(g) * u, W, p + "mlp.down_proj", lora)
    hf = rms_norm(x, W["model.norm.weight"], eps)
    head_w = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return head(hf, head_w), hf


def causal_lm_loss(logits, labels):
    """transformers ForCausalLMLoss: the shift is inside the loss. logits[:, t] is scored
    against labels[:, t+1]; -100 is ignored; mean over the scored positions."""
    V = logits.shape[-1]
    shift_logits = logits[:, :-1].reshape(-1, V)
    shift_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="mean")


def prompt_labels(labels, n_virtual):
    """PeftModelForCausalLM prefixes the labels with n_virtual x -100 for prompt tuning."""
    pre = torch.full((labels.shape[0], n_virtual), IGNORE_INDEX, dtype=labels.dtype)
    return torch.cat((pre, labels), dim=1)
