#!/usr/bin/python3
"""Writes the golden reference files under tests/golden/<case>/ (see README.md there).

Run with `make golden` (OMP_NUM_THREADS=2 /usr/bin/python3 tests/golden/gen_golden.py);
needs only torch + numpy. Each case is what Hugging Face transformers + PEFT compute in
float32 with dropout 0, but computed here in float64 from the float32 weights and
stored as float32 (the most accurate reference for a float32 C implementation).

LOSS CONVENTION: `labels` are aligned with the input positions (labels[b, t] is the
token at position t, usually input_ids[b, t]); the shift happens inside the loss, as in
transformers' ForCausalLMLoss: logits[b, t] is scored against labels[b, t + 1], -100 is
ignored, and the loss is the mean over the scored positions. The C side does the same.

PACKED CONVENTION (case `packed`): several examples share a row; `seq_ids` (B, T) says
which example of its row each position belongs to, `position_ids` restart at 0 at each
example, attention is causal and block-diagonal (never across examples), and the label of
the first token of every example is -100 (it would otherwise be predicted from the
previous example's last token).
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_ref  # noqa: E402
import selfcheck  # noqa: E402
import st_io  # noqa: E402
import gen_quant  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))  # tests/golden
REPO = os.path.dirname(os.path.dirname(HERE))
STORIES_REL = "../shared/fixtures/stories260K-hf"  # relative to the repo root, where tests run
LLAMA_GQA_REL = "tests/golden/llama_gqa"
SIZE_LIMIT = 2_300_000  # bytes (2 MB + 15% for issue 11's ia3, dora, bottleneck, bitfit and lora_embed cases)
# Tolerances the C tests should use, also stored in each golden.safetensors' metadata.
LOGITS_ATOL = 1e-4
# stories260K's logits reach |19| and float32 itself (PyTorch, no adapter) is 1.2e-4 off the
# float64 result, so 1e-4 there would fail a correct float32 implementation.
STORIES_LOGITS_ATOL = 5e-4
GRAD_RTOL = 1e-4  # ||grad - ref|| / ||ref|| per adapter tensor

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]
ALL_LINEAR = ATTN + MLP

LLAMA_GQA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None,
    "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
    "max_position_embeddings": 128, "hidden_act": "silu", "torch_dtype": "float32",
    "bos_token_id": 1, "eos_token_id": 2,
}
QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None,
    "tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": None,
    "max_window_layers": 2, "max_position_embeddings": 128, "hidden_act": "silu",
    "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
}
QWEN3 = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
    "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 32,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None,
    "tie_word_embeddings": True, "attention_bias": False, "use_sliding_window": False,
    "sliding_window": None, "max_window_layers": 1, "max_position_embeddings": 128,
    "hidden_act": "silu", "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
}
LLAMA3_ROPE = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "vocab_size": 32,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 32, "rope_type": "llama3"},
    "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False,
    "max_position_embeddings": 256, "hidden_act": "silu", "torch_dtype": "float32",
    "bos_token_id": 1, "eos_token_id": 2,
}

CHECKS = []  # one bool per check; any False fails the run


def check(what, value, limit):
    ok = value <= limit
    CHECKS.append(ok)
    print(f"  check {what}: {value:.3e} (limit {limit:.0e}) {'ok' if ok else 'FAILED'}")


def check_min(what, value, floor):
    ok = value >= floor
    CHECKS.append(ok)
    print(f"  check {what}: {value:.3e} (at least {floor:.0e}) {'ok' if ok else 'FAILED'}")


# ---------------------------------------------------------------- model and adapter init

def module_path(i, name):
    return f"model.layers.{i}.{'self_attn' if name in ATTN else 'mlp'}.{name}"


def linear_shape(cfg, name):
    """(out, in) of nn.Linear `name`."""
    C, I, hd = cfg["hidden_size"], cfg["intermediate_size"], hf_ref.head_dim(cfg)
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    return {"q_proj": (q, C), "k_proj": (kv, C), "v_proj": (kv, C), "o_proj": (C, q),
            "gate_proj": (I, C), "up_proj": (I, C), "down_proj": (C, I)}[name]


def init_model(cfg):
    """Random float32 weights with HF names. Linear weights ~ N(0, 1/fan_in) keep activations
    O(1); norm weights 1 + 0.1 N(0,1) so a reader that skips a norm fails."""
    C, V, hd = cfg["hidden_size"], cfg["vocab_size"], hf_ref.head_dim(cfg)
    # A tied table is also the output head: a smaller scale keeps those logits O(1).
    W = {"model.embed_tokens.weight": torch.randn(V, C) * (0.25 if cfg["tie_word_embeddings"] else 0.5)}

    def norm(n):
        return 1 + 0.1 * torch.randn(n)

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = norm(C)
        for name in ALL_LINEAR:
            out, inp = linear_shape(cfg, name)
            W[module_path(i, name) + ".weight"] = torch.randn(out, inp) / math.sqrt(inp)
            if name in ("q_proj", "k_proj", "v_proj") and hf_ref.has_qkv_bias(cfg):
                W[module_path(i, name) + ".bias"] = 0.1 * torch.randn(out)
        if hf_ref.has_qk_norm(cfg):
            W[p + "self_attn.q_norm.weight"] = norm(hd)
            W[p + "self_attn.k_norm.weight"] = norm(hd)
        W[p + "post_attention_layernorm.weight"] = norm(C)
    W["model.norm.weight"] = norm(C)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = torch.randn(V, C) / math.sqrt(C)
    return {k: v.float() for k, v in W.items()}


def lora_key(path, ab):
    # PEFT's saved name: "base_model.model." + module path, adapter name removed.
    return f"base_model.model.{path}.lora_{ab}.weight"


def init_lora(cfg, targets, r, layers=None, ranks=None):
    """{module path: (A (r, in), B (out, r))} float32. A as PEFT (kaiming_uniform_, a=sqrt(5));
    B random N(0, 0.02^2) instead of PEFT's zeros so that A gets gradients. ranks: {module path:
    rank} overriding r (rank_pattern)."""
    out = {}
    for i in range(cfg["num_hidden_layers"]):
        if layers is not None and i not in layers:
            continue
        for name in ALL_LINEAR:
            if name not in targets:
                continue
            o, inp = linear_shape(cfg, name)
            if ranks is not None:
                r = ranks[module_path(i, name)]
            A = torch.empty(r, inp)
            torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))
            B = torch.randn(o, r) * 0.02
            out[module_path(i, name)] = (A, B)
    return out


def lora_config(targets, r, alpha, use_rslora=False, layers=None, base=""):
    # The fields PEFT (0.13 - 0.15) writes for a LoraConfig; json sorted as save_pretrained does.
    return {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": base,
        "bias": "none", "eva_config": None, "exclude_modules": None, "fan_in_fan_out": False,
        "inference_mode": True, "init_lora_weights": True, "layer_replication": None,
        "layers_pattern": None, "layers_to_transform": layers, "loftq_config": {},
        "lora_alpha": alpha, "lora_bias": False, "lora_dropout": 0.0, "megatron_config": None,
        "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA",
        "r": r, "rank_pattern": {}, "revision": None, "target_modules": sorted(targets),
        "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": use_rslora,
    }


def prompt_config(cfg, n_virtual, base=""):
    return {
        "auto_mapping": None, "base_model_name_or_path": base, "inference_mode": True,
        "num_attention_heads": cfg["num_attention_heads"], "num_layers": cfg["num_hidden_layers"],
        "num_transformer_submodules": 1, "num_virtual_tokens": n_virtual,
        "peft_type": "PROMPT_TUNING", "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None, "revision": None, "task_type": "CAUSAL_LM",
        "token_dim": cfg["hidden_size"], "tokenizer_kwargs": None, "tokenizer_name_or_path": None,
    }


def random_batch(V, B, T, ignore):
    """input_ids (B, T) uniform in [0, V); labels = input_ids with `ignore` [(b, t)] set to -100."""
    ids = torch.randint(0, V, (B, T))
    labels = ids.clone()
    for b, t in ignore:
        labels[b, t] = hf_ref.IGNORE_INDEX
    return ids, labels


# ---------------------------------------------------------------- writing

def case_dir(name):
    d = os.path.join(HERE, name)
    if os.path.isdir(d):
        shutil.rmtree(d)  # a regenerated case never keeps files of an older layout
    os.makedirs(d)
    return d


def write_json(path, obj):
    st_io.write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_model(d, cfg, W):
    write_json(os.path.join(d, "config.json"), cfg)
    st_io.save(os.path.join(d, "model.safetensors"), {k: v.numpy() for k, v in W.items()},
               {"format": "pt"})


def write_model_note(d, rel):
    # The model is not copied; this path is relative to the repo root (tests run there).
    st_io.write_atomic(os.path.join(d, "model.txt"), f"model: {rel}\n".encode())


def write_adapter(d, config, tensors):
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "adapter_config.json"), config)
    st_io.save(os.path.join(d, "adapter_model.safetensors"),
               {k: v.detach().float().numpy() for k, v in tensors.items()}, {"format": "pt"})


def i32(t):
    return t.to(torch.int32).numpy()


def f32(t):
    return t.detach().to(torch.float32).numpy()


# ---------------------------------------------------------------- running a case

def run(spec, dtype=torch.float64, backward=True):
    """Forward (+ backward) of a case in `dtype` (float64 for the reference, float32 for the
    precision check). spec: cfg, W32, ids, labels and optionally lora32 + scaling, prompt32,
    position_ids, seq_ids. -> dict with logits, hidden, loss, adapter params {key: leaf},
    grads {key: tensor} and a loss closure for the finite-difference checks."""
    cfg, ids, labels = spec["cfg"], spec["ids"], spec["labels"]
    lora32, prompt32 = spec.get("lora32"), spec.get("prompt32")
    W = {k: v.to(dtype) for k, v in spec["W32"].items()}
    params = {}
    if lora32 is not None:
        for path, (A, B) in lora32.items():
            params[lora_key(path, "A")] = A.to(dtype, copy=True).requires_grad_()
            params[lora_key(path, "B")] = B.to(dtype, copy=True).requires_grad_()
    if prompt32 is not None:
        params["prompt_embeddings"] = prompt32.to(dtype, copy=True).requires_grad_()
    n_virtual = 0 if prompt32 is None else prompt32.shape[0]
    full_labels = hf_ref.prompt_labels(labels, n_virtual) if n_virtual else labels

    def fwd():
        lora = None
        if lora32 is not None:
            sc = spec["scaling"]  # one number, or {module path: scaling} with rank/alpha patterns
            lora = {p: (params[lora_key(p, "A")], params[lora_key(p, "B")], sc[p] if isinstance(sc, dict) else sc)
                    for p in lora32}
        logits, hidden = hf_ref.forward(cfg, W, ids, lora=lora, prompt=params.get("prompt_embeddings"),
                                        position_ids=spec.get("position_ids"), seq_ids=spec.get("seq_ids"))
        return logits, hidden, hf_ref.causal_lm_loss(logits, full_labels)

    logits, hidden, loss = fwd()
    grads = {}
    if backward:
        loss.backward()
        grads = {k: p.grad.detach().clone() for k, p in params.items()}
    return {"logits": logits.detach(), "hidden": hidden.detach(), "loss": loss.detach(),
            "params": params, "grads": grads, "loss_fn": lambda: fwd()[2], "full_labels": full_labels}


def reference(name, spec, logits_atol=LOGITS_ATOL):
    """The float64 reference of a case, with the checks that need no finite differences:
    the loss against a naive loop; a float32 run of the same code within a fifth of the C
    tolerances (so those tolerances are reachable in float32); and the adapter changing the
    logits by far more than the tolerance (so a C side that ignores it fails)."""
    res = run(spec)
    check(f"{name}: loss vs naive loop cross entropy",
          abs(float(res["loss"]) - selfcheck.naive_loss(res["logits"], res["full_labels"])), 1e-12)
    r32 = run(spec, torch.float32)
    check(f"{name}: float32 run vs float64 reference, logits (abs)",
          float((r32["logits"].double() - res["logits"]).abs().max()), logits_atol / 5)
    worst = max(float((r32["grads"][k].double() - g).norm() / g.norm()) for k, g in res["grads"].items())
    check(f"{name}: float32 run vs float64 reference, worst adapter grad (rel)", worst, GRAD_RTOL / 5)
    bare = run(dict(spec, lora32=None, prompt32=None), backward=False)
    if spec.get("prompt32") is not None:
        effect = float((bare["logits"] - res["logits"][:, spec["prompt32"].shape[0]:]).abs().max())
    else:
        effect = float((bare["logits"] - res["logits"]).abs().max())
    check_min(f"{name}: largest change of a logit made by the adapter", effect, 1e-2)
    return res


def golden_tensors(res, ids, labels, extra=None):
    g = {"input_ids": i32(ids), "labels": i32(labels), "logits": f32(res["logits"]),
         "hidden.final": f32(res["hidden"]), "loss": f32(res["loss"].reshape(1))}
    for k, v in res["grads"].items():
        g["grad." + k] = f32(v)
    g.update(extra or {})
    return g


def fd_checks(name, res, entrywise=False):
    keys = list(res["params"])
    params = [res["params"][k] for k in keys]
    grads = [res["grads"][k] for k in keys]
    rel, _ = selfcheck.directional_fd(res["loss_fn"], params, grads)
    check(f"{name}: directional finite difference vs autograd (rel)", rel, 1e-6)
    if entrywise:
        worst_rel, worst_abs, n = selfcheck.entrywise_fd(res["loss_fn"], [(k, res["params"][k]) for k in keys], grads)
        check(f"{name}: {n} single-entry finite differences vs autograd (rel to tensor max)", worst_rel, 1e-6)


def attn_check(name, cfg, B, T, position_ids=None, seq_ids=None):
    err, ferr = selfcheck.check_attention(cfg, B, T, position_ids, seq_ids)
    check(f"{name}: rope inv_freq vs naive per-frequency formula", ferr, 1e-15)
    check(f"{name}: rope+attention vs naive loops", err, 1e-12)


def tolerances(meta, logits_atol=LOGITS_ATOL):
    return dict(meta, logits_atol=repr(logits_atol), grad_rtol=repr(GRAD_RTOL))


def lora_case(name, seed, cfg, targets, r, alpha, use_rslora=False, layers=None, B=2, T=12,
              ignore=((0, 3), (1, 9), (1, 10), (1, 11)), W32=None, model_rel=None, fd_entrywise=False,
              logits_atol=LOGITS_ATOL):
    print(f"{name}:")
    torch.manual_seed(seed)
    if W32 is None:
        W32 = init_model(cfg)
    lora32 = init_lora(cfg, targets, r, layers)
    ids, labels = random_batch(cfg["vocab_size"], B, T, ignore)
    scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
    res = reference(name, dict(cfg=cfg, W32=W32, ids=ids, labels=labels, lora32=lora32, scaling=scaling),
                    logits_atol)
    d = case_dir(name)
    if model_rel is None:
        write_model(d, cfg, W32)
    else:
        write_model_note(d, model_rel)
    base = model_rel or f"tests/golden/{name}"
    write_adapter(os.path.join(d, "adapter"), lora_config(targets, r, alpha, use_rslora, layers, base),
                  {k: p for k, p in res["params"].items()})
    meta = tolerances({"format": "pt", "case": name, "model": base, "scaling": repr(scaling)}, logits_atol)
    st_io.save(os.path.join(d, "golden.safetensors"), golden_tensors(res, ids, labels), meta)
    print(f"  loss {float(res['loss']):.6f}, {len(res['params'])} adapter tensors, scaling {scaling:.6g}")
    attn_check(name, cfg, B, T)
    fd_checks(name, res, fd_entrywise)
    return W32, lora32, res, ids, labels


# ---------------------------------------------------------------- the cases

def case_prompt_tuning(W32):
    name, cfg, n_virtual = "prompt_tuning", LLAMA_GQA, 5
    print(f"{name}:")
    torch.manual_seed(105)
    prompt32 = torch.randn(n_virtual, cfg["hidden_size"])  # PEFT RANDOM init: nn.Embedding's N(0, 1)
    ids, labels = random_batch(cfg["vocab_size"], 2, 12, [(0, 5), (1, 11)])
    res = reference(name, dict(cfg=cfg, W32=W32, ids=ids, labels=labels, prompt32=prompt32))
    d = case_dir(name)
    write_model_note(d, LLAMA_GQA_REL)
    write_adapter(os.path.join(d, "adapter"), prompt_config(cfg, n_virtual, LLAMA_GQA_REL),
                  {"prompt_embeddings": res["params"]["prompt_embeddings"]})
    meta = tolerances({"format": "pt", "case": name, "model": LLAMA_GQA_REL, "num_virtual_tokens": n_virtual})
    st_io.save(os.path.join(d, "golden.safetensors"), golden_tensors(res, ids, labels), meta)
    print(f"  loss {float(res['loss']):.6f}, logits {tuple(res['logits'].shape)}")
    attn_check(name, cfg, 2, 12 + n_virtual)
    fd_checks(name, res, entrywise=True)


def case_packed(W32):
    name, cfg = "packed", LLAMA_GQA
    print(f"{name}:")
    torch.manual_seed(107)
    lora32 = init_lora(cfg, ALL_LINEAR, 4)
    scaling = 8 / 4
    lengths = [[5, 7], [4, 3, 5]]  # examples per row; row 1 packs three to test more than one boundary
    T = sum(lengths[0])
    ids = torch.randint(0, cfg["vocab_size"], (2, T))
    pos = torch.cat([torch.cat([torch.arange(n) for n in row])[None] for row in lengths])
    seq = torch.cat([torch.cat([torch.full((n,), j) for j, n in enumerate(row)])[None] for row in lengths])
    labels = ids.clone()
    labels[pos == 0] = hf_ref.IGNORE_INDEX  # first token of every example: no cross-example target
    res = reference(name, dict(cfg=cfg, W32=W32, ids=ids, labels=labels, lora32=lora32, scaling=scaling,
                               position_ids=pos, seq_ids=seq))
    # Each example alone (plain causal mask, positions from 0) must give the packed logits,
    # and the packed loss is the mean over all examples' scored tokens.
    W = {k: v.double() for k, v in W32.items()}
    lora = {p: (A.double(), Bm.double(), scaling) for p, (A, Bm) in lora32.items()}
    worst, tot, cnt = 0.0, 0.0, 0
    for b, row in enumerate(lengths):
        start = 0
        for n in row:
            ex = ids[b:b + 1, start:start + n]
            lg, _ = hf_ref.forward(cfg, W, ex, lora=lora)
            worst = max(worst, float((lg[0] - res["logits"][b, start:start + n]).abs().max()))
            if n > 1:
                tot += float(hf_ref.causal_lm_loss(lg, labels[b:b + 1, start:start + n])) * (n - 1)
                cnt += n - 1
            start += n
    check("packed: logits vs each example run alone", worst, 1e-12)
    check("packed: loss vs examples run alone", abs(tot / cnt - float(res["loss"])), 1e-12)
    d = case_dir(name)
    write_model_note(d, LLAMA_GQA_REL)
    write_adapter(os.path.join(d, "adapter"), lora_config(ALL_LINEAR, 4, 8, base=LLAMA_GQA_REL), res["params"])
    meta = tolerances({"format": "pt", "case": name, "model": LLAMA_GQA_REL, "scaling": repr(scaling)})
    st_io.save(os.path.join(d, "golden.safetensors"),
               golden_tensors(res, ids, labels, {"position_ids": i32(pos), "seq_ids": i32(seq)}), meta)
    print(f"  loss {float(res['loss']):.6f}")
    attn_check(name, cfg, 2, T, pos, seq)
    fd_checks(name, res)


def case_sgd_step(gqa):
    """One plain SGD step from the llama_gqa adapter on the llama_gqa batch."""
    name, lr = "sgd_step", 0.1
    print(f"{name}:")
    W32, lora32, res, ids, labels = gqa
    d = case_dir(name)
    write_model_note(d, LLAMA_GQA_REL)
    conf = lora_config(ALL_LINEAR, 4, 8, base=LLAMA_GQA_REL)
    write_adapter(os.path.join(d, "adapter"), conf, res["params"])
    # No momentum, no weight decay: p - lr * grad, from the stored float32 p.
    after = {k: p.detach() - lr * res["grads"][k] for k, p in res["params"].items()}
    write_adapter(os.path.join(d, "adapter_after_sgd"), conf, after)
    meta = tolerances({"format": "pt", "case": name, "model": LLAMA_GQA_REL, "scaling": "2.0",
                       "optimizer": "sgd", "lr": repr(lr), "momentum": "0", "weight_decay": "0"})
    # Only what the step needs (the logits are those of llama_gqa/golden.safetensors).
    g = {k: v for k, v in golden_tensors(res, ids, labels).items() if k not in ("logits", "hidden.final")}
    st_io.save(os.path.join(d, "golden.safetensors"), g, meta)
    rel = max(float((after[k] - res["params"][k]).norm() / res["params"][k].norm()) for k in after)
    print(f"  largest relative change of a tensor by the step {rel:.3e}")
    # The same step taken entirely in float32 (as the C test does) must land within 1e-5.
    r32 = run(dict(cfg=LLAMA_GQA, W32=W32, ids=ids, labels=labels, lora32=lora32, scaling=2.0), torch.float32)
    worst = max(float(((r32["params"][k].detach() - lr * r32["grads"][k]).double() - after[k]).norm()
                      / after[k].norm()) for k in after)
    check("sgd_step: float32 step vs float64 reference step (rel)", worst, 2e-6)


# Per-module ranks and alphas. PEFT's save_pretrained sorts these keys too (json.dumps(sort_keys=True)),
# so they are listed here in that order, the order PEFT reads them back in and the first match wins in.
# Default r 4, alpha 16: q 4, k 3 (a whole-name regex with metacharacters), v 2: mixed ranks in the
# stacked q/k/v A; layer 0 up 3 next to gate 4; down 2 in layer 0 but 1 in layer 1, where
# "layers.1.mlp.down_proj" comes before the also matching "mlp.down_proj". q's alpha 32, down's 4.5 (a
# JSON real); the rest keep 16.
RANK_PATTERN = {"layers.0.mlp.up_proj": 3, "layers.1.mlp.down_proj": 1, "mlp.down_proj": 2,
                r"model\.layers\.\d+\.self_attn\.k_proj": 3, "v_proj": 2}
ALPHA_PATTERN = {"down_proj": 4.5, "q_proj": 32}
# What the rule must give (layer 0, layer 1), worked out by hand.
RANK_PATTERN_WANT = {"q_proj": (4, 4), "k_proj": (3, 3), "v_proj": (2, 2), "o_proj": (4, 4),
                     "gate_proj": (4, 4), "up_proj": (3, 4), "down_proj": (2, 1)}
ALPHA_PATTERN_WANT = {"q_proj": 32, "down_proj": 4.5}


def case_rank_pattern(W32):
    """rank_pattern/: llama_gqa with per-module ranks and alphas, all linears but o_proj; and
    rank_pattern/rslora/: the same patterns with use_rslora on q, v, o, down (o keeps r and alpha, so
    one module there needs no rescaling in a llama.cpp export). B=2, T=8 and no hidden.final: the
    folder must keep tests/golden under its size limit."""
    name, cfg = "rank_pattern", LLAMA_GQA
    d = case_dir(name)
    variants = [(name, d, 110, [m for m in ALL_LINEAR if m != "o_proj"], False),
                (name + "/rslora", os.path.join(d, "rslora"), 111, ["q_proj", "v_proj", "o_proj", "down_proj"], True)]
    for label, vd, seed, targets, rslora in variants:
        print(f"{label}:")
        conf = lora_config(targets, 4, 16, rslora, base=LLAMA_GQA_REL)
        conf["rank_pattern"], conf["alpha_pattern"] = dict(RANK_PATTERN), dict(ALPHA_PATTERN)
        conf = json.loads(json.dumps(conf, sort_keys=True))  # as the file will be read: patterns in file order
        paths = [module_path(i, m) for i in range(cfg["num_hidden_layers"]) for m in targets]
        got = {p: hf_ref.lora_rank_alpha(conf, p) for p in paths}
        bad = sum(got[module_path(i, m)] != (RANK_PATTERN_WANT[m][i], ALPHA_PATTERN_WANT.get(m, 16))
                  for i in range(cfg["num_hidden_layers"]) for m in targets)
        check(f"{label}: modules whose rank/alpha differ from the hand-worked table", bad, 0)
        torch.manual_seed(seed)
        lora32 = init_lora(cfg, targets, 4, ranks={p: ra[0] for p, ra in got.items()})
        scaling = {p: hf_ref.lora_scaling(conf, p) for p in paths}
        ids, labels = random_batch(cfg["vocab_size"], 2, 8, [(0, 4), (1, 6)])
        res = reference(label, dict(cfg=cfg, W32=W32, ids=ids, labels=labels, lora32=lora32, scaling=scaling))
        os.makedirs(vd, exist_ok=True)
        write_model_note(vd, LLAMA_GQA_REL)
        write_adapter(os.path.join(vd, "adapter"), conf, res["params"])
        meta = tolerances({"format": "pt", "case": label, "model": LLAMA_GQA_REL,
                           "scaling": json.dumps(scaling, sort_keys=True)})
        g = {k: v for k, v in golden_tensors(res, ids, labels).items() if k != "hidden.final"}
        st_io.save(os.path.join(vd, "golden.safetensors"), g, meta)
        print(f"  loss {float(res['loss']):.6f}, {len(res['params'])} adapter tensors, ranks "
              f"{sorted(set(ra[0] for ra in got.values()))}, scalings {sorted(set(round(v, 6) for v in scaling.values()))}")
        fd_checks(label, res, entrywise=not rslora)


def case_stories260k():
    name = "stories260k"
    src = os.path.join(REPO, STORIES_REL)
    if not os.path.isfile(os.path.join(src, "model.safetensors")):
        print(f"{name}: SKIPPED: fixture {os.path.normpath(src)} is absent")
        if os.path.isdir(os.path.join(HERE, name)):
            print(f"  (keeping the committed {name}/ as it is)")
        return
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    tensors, _ = st_io.load(os.path.join(src, "model.safetensors"))
    W32 = {k: torch.from_numpy(v) for k, v in tensors.items()}
    lora_case(name, 106, cfg, ALL_LINEAR, 8, 16, B=2, T=64, W32=W32, model_rel=STORIES_REL,
              ignore=((0, 10), (1, 60), (1, 61), (1, 62), (1, 63)), logits_atol=STORIES_LOGITS_ATOL)


def case_qk_permute():
    name, cfg = "qk_permute", LLAMA_GQA
    print(f"{name}:")
    torch.manual_seed(109)
    H, KV, r = cfg["num_attention_heads"], cfg["num_key_value_heads"], 4
    q_b = torch.randn(linear_shape(cfg, "q_proj")[0], r).numpy()  # (64, 4)
    k_b = torch.randn(linear_shape(cfg, "k_proj")[0], r).numpy()  # (32, 4)

    def permute(w, n_head):
        # convert_hf_to_gguf.py LlamaModel.permute (n_head = n_head_kv for k)
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    qp, kp = permute(q_b, H), permute(k_b, KV)
    check("qk_permute: q permutation vs per-row map", float(np.abs(qp - selfcheck.llamacpp_permute_naive(q_b, H)).max()), 0)
    check("qk_permute: k permutation vs per-row map", float(np.abs(kp - selfcheck.llamacpp_permute_naive(k_b, KV)).max()), 0)
    d = case_dir(name)
    write_model_note(d, LLAMA_GQA_REL)
    st_io.save(os.path.join(d, "qk_permute.safetensors"),
               {"q.lora_b": q_b, "q.lora_b.permuted": np.ascontiguousarray(qp),
                "k.lora_b": k_b, "k.lora_b.permuted": np.ascontiguousarray(kp)},
               {"format": "pt", "n_head": H, "n_head_kv": KV, "model": LLAMA_GQA_REL})


def check_roundtrip():
    worst = 0
    for root, _, files in os.walk(HERE):
        for fn in files:
            if fn.endswith(".safetensors"):
                path = os.path.join(root, fn)
                tensors, meta = st_io.load(path)
                with open(path, "rb") as f:
                    raw = f.read()
                worst = max(worst, int(st_io.encode(tensors, meta) != raw))
    check("every written safetensors file re-reads and re-encodes byte for byte", worst, 0)


def tree_size(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs
               if not r.endswith("__pycache__"))


def main():
    torch.set_num_threads(1)  # fixed reduction order: same bytes on every run
    torch.set_default_dtype(torch.float32)
    gqa = lora_case("llama_gqa", 101, LLAMA_GQA, ALL_LINEAR, 4, 8, fd_entrywise=True)
    W_gqa = gqa[0]
    lora_case("qwen2_bias", 102, QWEN2, ["q_proj", "v_proj"], 8, 16, use_rslora=True, layers=[1],
              fd_entrywise=True)
    lora_case("qwen3_qknorm", 103, QWEN3, ALL_LINEAR, 4, 4, fd_entrywise=True)
    print(f"  llama3_rope bands (high, medium, low): {selfcheck.llama3_bands(LLAMA3_ROPE)}")
    lora_case("llama3_rope", 104, LLAMA3_ROPE, ATTN, 4, 8, T=40, ignore=((0, 20), (1, 39)))
    case_prompt_tuning(W_gqa)
    case_stories260k()
    case_packed(W_gqa)
    case_sgd_step(gqa)
    case_qk_permute()
    case_rank_pattern(W_gqa)
    gen_quant.main(check)
    __import__("gen_methods").main(sys.modules[__name__], W_gqa)  # issue 11's methods (gen_methods.py)
    check_roundtrip()

    print("sizes:")
    for name in sorted(os.listdir(HERE)):
        p = os.path.join(HERE, name)
        if os.path.isdir(p) and name != "__pycache__":
            print(f"  {name:14s} {tree_size(p):9d} bytes")
    total = tree_size(HERE)
    print(f"  total tests/golden {total} bytes (limit {SIZE_LIMIT})")
    check("tests/golden size / SIZE_LIMIT", total / SIZE_LIMIT, 1)
    bad = CHECKS.count(False)
    print(f"{len(CHECKS) - bad} checks passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
