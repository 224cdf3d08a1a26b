"""Golden cases of the delta-tuning methods beyond LoRA and prompt tuning (issue 11), called from
gen_golden.py's main with one line. Each method's forward is written here from PEFT 0.13.2's
tuners/<method>/layer.py, as a wrapper around hf_ref.linear (hf_ref.forward looks `linear` up at
call time, so the wrapper sees every projection with its module path); the rest of the model is
hf_ref's. Case folders have the layout of README.md: model.txt, adapter/, golden.safetensors.

gg is the gen_golden module (its checks, writers and tolerances are shared, so the checks made
here count in its summary).
"""
import contextlib
import json
import os

import torch

import hf_ref
import selfcheck
import st_io


@contextlib.contextmanager
def patched_linear(wrap):
    """hf_ref.linear replaced by wrap(base_linear) for the duration."""
    base = hf_ref.linear
    hf_ref.linear = wrap(base)
    try:
        yield
    finally:
        hf_ref.linear = base


def ia3_wrap(vectors, feedforward):
    """PEFT's IA3 Linear.forward: a feedforward module scales its input, x * l (l (1, in)); any
    other scales the base layer's output, bias included, (x W^T + b) * l (l (out, 1))."""
    def wrap(base):
        def linear(x, W, path, lora, bias=False):
            if path not in vectors:
                return base(x, W, path, lora, bias)
            scale = vectors[path].flatten()
            if path.rsplit(".", 1)[1] in feedforward:
                return base(x * scale, W, path, lora, bias)
            return base(x, W, path, lora, bias) * scale
        return linear
    return wrap


def dora_wrap(adapters, scaling, fixed_norms=None):
    """PEFT's LoRA Linear.forward with use_dora (lora/layer.py + DoraLinearLayer.forward, dropout 0):
    base(x) + (g - 1) * (x W^T) + g * lora_B(lora_A(x)) * scaling, g = m / ||W + scaling B A||_row with
    the norm detached; the base keeps its bias. fixed_norms: {path: norm} used instead of the norms
    of the current values (the detached norm as a constant, for finite differences)."""
    def wrap(base):
        def linear(x, W, path, lora, bias=False):
            y = base(x, W, path, lora, bias)
            if path not in adapters:
                return y
            A, Bm, mag = adapters[path]
            weight = W[path + ".weight"]
            lora_weight = Bm @ A  # lora_B(lora_A(eye)).T
            norm = torch.linalg.norm(weight + scaling * lora_weight.detach(), dim=1).detach()
            if fixed_norms is not None:
                norm = fixed_norms[path]
            g = (mag / norm).view(1, -1)
            return y + (g - 1) * (x @ weight.T) + g * ((x @ A.T) @ Bm.T) * scaling
        return linear
    return wrap


def ia3_key(path):
    # PEFT's saved name: "base_model.model." + module path + ".ia3_l" (adapter name removed).
    return f"base_model.model.{path}.ia3_l"


def ia3_config(targets, feedforward, base):
    # The fields PEFT 0.13.2 writes for an IA3Config (save_pretrained: sorted keys; its sets as lists,
    # written here sorted).
    return {
        "auto_mapping": None, "base_model_name_or_path": base, "fan_in_fan_out": False,
        "feedforward_modules": sorted(feedforward), "inference_mode": True, "init_ia3_weights": True,
        "modules_to_save": None, "peft_type": "IA3", "revision": None,
        "target_modules": sorted(targets), "task_type": "CAUSAL_LM",
    }


def write_adapter(d, config, tensors):
    """As PEFT's save_pretrained writes them: config json.dumps(indent=2, sort_keys=True) with no final
    newline (PeftConfigMixin.to_json_file), tensors F32 with {"format": "pt"}."""
    os.makedirs(d, exist_ok=True)
    st_io.write_atomic(os.path.join(d, "adapter_config.json"), json.dumps(config, indent=2, sort_keys=True).encode())
    st_io.save(os.path.join(d, "adapter_model.safetensors"),
               {k: v.detach().float().numpy() for k, v in tensors.items()}, {"format": "pt"})


def run(gg, cfg, W32, ids, labels, params32, wrap_of, dtype=torch.float64, backward=True):
    """Forward (+ backward) with the method's parameters {key: float32 tensor}; wrap_of(params) gives
    the hf_ref.linear wrapper for these (leaf) parameters. Same result layout as gg.run."""
    W = {k: v.to(dtype) for k, v in W32.items()}
    params = {k: v.to(dtype, copy=True).requires_grad_() for k, v in params32.items()}

    def fwd():
        wraps = wrap_of(params)
        with patched(wraps if isinstance(wraps, dict) else {"linear": wraps}):
            logits, hidden = hf_ref.forward(cfg, W, ids)
        return logits, hidden, hf_ref.causal_lm_loss(logits, labels)

    logits, hidden, loss = fwd()
    grads = {}
    if backward:
        loss.backward()
        grads = {k: p.grad.detach().clone() for k, p in params.items()}
    return {"logits": logits.detach(), "hidden": hidden.detach(), "loss": loss.detach(), "params": params,
            "grads": grads, "loss_fn": lambda: fwd()[2], "full_labels": labels}


def reference(gg, name, cfg, W32, ids, labels, params32, wrap_of, identity32, identity_tol=1e-12):
    """gg.reference's checks for a method case; identity32: parameter values that leave the base model
    unchanged (the adapter's effect is measured against them)."""
    res = run(gg, cfg, W32, ids, labels, params32, wrap_of)
    gg.check(f"{name}: loss vs naive loop cross entropy",
             abs(float(res["loss"]) - selfcheck.naive_loss(res["logits"], labels)), 1e-12)
    r32 = run(gg, cfg, W32, ids, labels, params32, wrap_of, torch.float32)
    gg.check(f"{name}: float32 run vs float64 reference, logits (abs)",
             float((r32["logits"].double() - res["logits"]).abs().max()), gg.LOGITS_ATOL / 5)
    worst = max(float((r32["grads"][k].double() - g).norm() / g.norm()) for k, g in res["grads"].items())
    gg.check(f"{name}: float32 run vs float64 reference, worst adapter grad (rel)", worst, gg.GRAD_RTOL / 5)
    bare = run(gg, cfg, W32, ids, labels, identity32, wrap_of, backward=False)
    plain = hf_ref.forward(cfg, {k: v.double() for k, v in W32.items()}, ids)[0]
    gg.check(f"{name}: identity parameters give the base model's logits",
             float((bare["logits"] - plain).abs().max()), identity_tol)
    gg.check_min(f"{name}: largest change of a logit made by the adapter",
                 float((bare["logits"] - res["logits"]).abs().max()), 1e-2)
    return res


def case_ia3(gg, W32):
    """IA3 on k_proj, v_proj (output scaled) and down_proj (feedforward: input scaled), PEFT's
    default for Llama, on the llama_gqa model."""
    name, cfg = "ia3", gg.LLAMA_GQA
    targets, feedforward = ["k_proj", "v_proj", "down_proj"], ["down_proj"]
    print(f"{name}:")
    torch.manual_seed(111)
    params32, identity32 = {}, {}
    for i in range(cfg["num_hidden_layers"]):
        for t in targets:
            out, inp = gg.linear_shape(cfg, t)
            shape = (1, inp) if t in feedforward else (out, 1)  # PEFT's IA3Layer.update_layer
            # PEFT starts at ones; 1 + 0.2 N(0, 1) (as hf_reference's peft_make.py) so a reader that
            # ignores a vector or applies it on the wrong side fails.
            params32[ia3_key(gg.module_path(i, t))] = 1 + 0.2 * torch.randn(shape)
            identity32[ia3_key(gg.module_path(i, t))] = torch.ones(shape)
    ids, labels = gg.random_batch(cfg["vocab_size"], 2, 12, [(0, 4), (1, 10)])

    def wrap_of(params):
        vectors = {k[len("base_model.model."):-len(".ia3_l")]: v for k, v in params.items()}
        return ia3_wrap(vectors, feedforward)

    res = reference(gg, name, cfg, W32, ids, labels, params32, wrap_of, identity32)
    d = gg.case_dir(name)
    gg.write_model_note(d, gg.LLAMA_GQA_REL)
    write_adapter(os.path.join(d, "adapter"), ia3_config(targets, feedforward, gg.LLAMA_GQA_REL),
                     res["params"])
    meta = gg.tolerances({"format": "pt", "case": name, "model": gg.LLAMA_GQA_REL})
    st_io.save(os.path.join(d, "golden.safetensors"), gg.golden_tensors(res, ids, labels), meta)
    print(f"  loss {float(res['loss']):.6f}, {len(res['params'])} adapter tensors")
    gg.fd_checks(name, res, entrywise=True)


def case_dora(gg):
    """DoRA (use_dora) on Qwen2 (q/k/v biases, which DoRA leaves unscaled) on q_proj, v_proj, o_proj and
    down_proj: the q/v sites and the o/down block outputs."""
    name, cfg, r, alpha = "dora", gg.QWEN2, 4, 8
    targets = ["q_proj", "v_proj", "o_proj", "down_proj"]
    print(f"{name}:")
    W32, _ = st_io.load(os.path.join(gg.HERE, "qwen2_bias", "model.safetensors"))
    W32 = {k: torch.from_numpy(v.copy()) for k, v in W32.items()}
    torch.manual_seed(112)
    lora32 = gg.init_lora(cfg, targets, r)
    scaling = alpha / r
    params32, identity32 = {}, {}
    for path, (A, B) in lora32.items():
        weight = W32[path + ".weight"].double()
        norm = torch.linalg.norm(weight + scaling * (B.double() @ A.double()), dim=1)
        # PEFT starts at the norm (no change); times 1 + 0.1 N(0, 1) as hf_reference's peft_make.py, so a
        # reader that ignores the magnitude fails.
        mag = (norm * (1 + 0.1 * torch.randn(norm.shape, dtype=torch.float64))).float()
        for key, v in ((gg.lora_key(path, "A"), A), (gg.lora_key(path, "B"), B),
                       (f"base_model.model.{path}.lora_magnitude_vector", mag)):
            params32[key] = v
        identity32.update({gg.lora_key(path, "A"): A, gg.lora_key(path, "B"): torch.zeros_like(B),
                           f"base_model.model.{path}.lora_magnitude_vector":
                               torch.linalg.norm(W32[path + ".weight"].double(), dim=1).float()})
    ids, labels = gg.random_batch(cfg["vocab_size"], 2, 10, [(0, 3), (1, 8)])

    def wrap_of(params):
        adapters = {p: (params[gg.lora_key(p, "A")], params[gg.lora_key(p, "B")],
                        params[f"base_model.model.{p}.lora_magnitude_vector"]) for p in lora32}
        return dora_wrap(adapters, scaling)

    # The identity magnitudes are norms rounded to float32: ~1e-7 of a logit.
    res = reference(gg, name, cfg, W32, ids, labels, params32, wrap_of, identity32, identity_tol=1e-6)
    d = gg.case_dir(name)
    gg.write_model_note(d, "tests/golden/qwen2_bias")
    config = dict(gg.lora_config(targets, r, alpha, base="tests/golden/qwen2_bias"), use_dora=True)
    write_adapter(os.path.join(d, "adapter"), config, res["params"])
    meta = gg.tolerances({"format": "pt", "case": name, "model": "tests/golden/qwen2_bias", "scaling": repr(scaling)})
    st_io.save(os.path.join(d, "golden.safetensors"), gg.golden_tensors(res, ids, labels), meta)
    print(f"  loss {float(res['loss']):.6f}, {len(res['params'])} adapter tensors")
    # Finite differences see the norm move with A and B; autograd (as PEFT) does not: the check runs on
    # the loss with the norms held at their values here, whose gradient is exactly the detached one.
    p = res["params"]
    W64 = {k: v.double() for k, v in W32.items()}
    with torch.no_grad():
        norms = {q: torch.linalg.norm(W64[q + ".weight"] + scaling * (p[gg.lora_key(q, "B")] @ p[gg.lora_key(q, "A")]), dim=1)
                 for q in lora32}

    def fixed_loss():
        adapters = {q: (p[gg.lora_key(q, "A")], p[gg.lora_key(q, "B")], p[f"base_model.model.{q}.lora_magnitude_vector"])
                    for q in lora32}
        with patched_linear(dora_wrap(adapters, scaling, norms)):
            logits, _ = hf_ref.forward(cfg, W64, ids)
        return hf_ref.causal_lm_loss(logits, labels)

    gg.fd_checks(name + " (norms held)", dict(res, loss_fn=fixed_loss), entrywise=True)


def bottleneck_wrap(adapters):
    """A bottleneck adapter on a block's output (o_proj: the attention block, down_proj: the MLP), before
    the residual add: h + up(relu(down(h))). adapters: {module path: (down_w, down_b, up_w, up_b)}."""
    def wrap(base):
        def linear(x, W, path, lora, bias=False):
            h = base(x, W, path, lora, bias)
            if path not in adapters:
                return h
            dw, db, uw, ub = adapters[path]
            return h + torch.relu(h @ dw.T + db) @ uw.T + ub
        return linear
    return wrap


def case_bottleneck(gg, W32):
    """Houlsby bottleneck adapters (after attention and after the MLP), size 8, on the llama_gqa model.
    Our own format (PEFT has none): see peft/bottleneck.c."""
    name, cfg, size = "bottleneck", gg.LLAMA_GQA, 8
    print(f"{name}:")
    torch.manual_seed(113)
    C = cfg["hidden_size"]
    params32, identity32, places = {}, {}, {}
    for i in range(cfg["num_hidden_layers"]):
        for block, module in (("self_attn", "o_proj"), ("mlp", "down_proj")):
            pre = f"base_model.model.model.layers.{i}.{block}.adapter."
            # Random up (ours starts at zero) so that every tensor gets a gradient.
            vals = {"down.weight": torch.randn(size, C) / C ** 0.5, "down.bias": 0.1 * torch.randn(size),
                    "up.weight": 0.1 * torch.randn(C, size), "up.bias": 0.1 * torch.randn(C)}
            for k, v in vals.items():
                params32[pre + k] = v
                identity32[pre + k] = torch.zeros_like(v) if k.startswith("up") else v
            places[gg.module_path(i, module)] = pre
    ids, labels = gg.random_batch(cfg["vocab_size"], 2, 12, [(0, 2), (1, 7)])

    def wrap_of(params):
        return bottleneck_wrap({path: tuple(params[pre + k] for k in ("down.weight", "down.bias", "up.weight", "up.bias"))
                                for path, pre in places.items()})

    res = reference(gg, name, cfg, W32, ids, labels, params32, wrap_of, identity32)
    d = gg.case_dir(name)
    gg.write_model_note(d, gg.LLAMA_GQA_REL)
    config = {"base_model_name_or_path": gg.LLAMA_GQA_REL, "bottleneck_size": size, "bottleneck_type": "houlsby",
              "inference_mode": True, "non_linearity": "relu", "peft_type": "BOTTLENECK", "revision": None,
              "task_type": "CAUSAL_LM"}
    write_adapter(os.path.join(d, "adapter"), config, res["params"])
    meta = gg.tolerances({"format": "pt", "case": name, "model": gg.LLAMA_GQA_REL})
    st_io.save(os.path.join(d, "golden.safetensors"), gg.golden_tensors(res, ids, labels), meta)
    print(f"  loss {float(res['loss']):.6f}, {len(res['params'])} adapter tensors")
    gg.fd_checks(name, res, entrywise=True)


@contextlib.contextmanager
def patched_attention(prefix, n_layers, KV, hd):
    """hf_ref.attention replaced by transformers' LlamaAttention (eager) given PEFT's prefix as
    past_key_values (PeftModelForCausalLM.forward + get_prompt, PEFT 0.13.2; LlamaModel.forward,
    transformers 4.40): prompt_embeddings (n, L*2*KV*hd) viewed as (n, L*2, KV, hd), index 2l layer l's
    keys and 2l+1 its values. The cache entries are used as given (RoPE is applied to the new keys only,
    before DynamicCache.update concatenates them after the prefix), and the causal mask built from
    cache_position (n + t) lets every token see all n entries. hf_ref.forward calls attention once per
    layer, in order."""
    base = hf_ref.attention
    view = prefix.view(prefix.shape[0], n_layers * 2, KV, hd)
    layer = [0]

    def attention(q, k, v, cos, sin, mask):
        B, H, T, _ = q.shape
        i = layer[0]
        layer[0] += 1
        q = hf_ref.apply_rope(q, cos, sin)
        k = hf_ref.apply_rope(k, cos, sin)
        pk = view[:, 2 * i].permute(1, 0, 2)[None].expand(B, -1, -1, -1).to(q.dtype)      # (B, KV, n, hd)
        pv = view[:, 2 * i + 1].permute(1, 0, 2)[None].expand(B, -1, -1, -1).to(q.dtype)  # (B, KV, n, hd)
        k = torch.cat((pk, k), dim=2)
        v = torch.cat((pv, v), dim=2)
        n_rep = H // KV
        k = hf_ref.repeat_kv(k, n_rep)
        v = hf_ref.repeat_kv(v, n_rep)
        att = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5  # (B, H, T, n+T)
        full = torch.cat((torch.ones(B, 1, T, prefix.shape[0], dtype=torch.bool), mask), dim=3)
        att = att.masked_fill(~full, float("-inf"))
        y = torch.matmul(torch.softmax(att, dim=-1), v)  # (B, H, T, hd)
        return y.transpose(1, 2).reshape(B, T, H * hd)

    hf_ref.attention = attention
    try:
        yield
    finally:
        hf_ref.attention = base


def prefix_run(cfg, W32, ids, labels, prefix32, pos=None, seq=None, dtype=torch.float64, backward=True):
    """Forward (+ backward) with the prefix: the tokens' RoPE positions are n + their own (transformers:
    position_ids = cache_position = past length + t; PEFT drops any position_ids it is given)."""
    n, L, KV = prefix32.shape[0], cfg["num_hidden_layers"], cfg["num_key_value_heads"]
    W = {k: v.to(dtype) for k, v in W32.items()}
    params = {"prompt_embeddings": prefix32.to(dtype, copy=True).requires_grad_()}
    B, T = ids.shape
    position_ids = n + (torch.arange(T)[None].expand(B, T) if pos is None else pos)

    def fwd():
        with patched_attention(params["prompt_embeddings"], L, KV, hf_ref.head_dim(cfg)):
            logits, hidden = hf_ref.forward(cfg, W, ids, position_ids=position_ids, seq_ids=seq)
        return logits, hidden, hf_ref.causal_lm_loss(logits, labels)

    logits, hidden, loss = fwd()
    grads = {}
    if backward:
        loss.backward()
        grads = {k: p.grad.detach().clone() for k, p in params.items()}
    return {"logits": logits.detach(), "hidden": hidden.detach(), "loss": loss.detach(), "params": params,
            "grads": grads, "loss_fn": lambda: fwd()[2], "full_labels": labels}


def prefix_config(cfg, n, base):
    """The fields PEFT 0.13.2 writes for a PrefixTuningConfig on a decoder-only Llama: token_dim and
    num_attention_heads as _prepare_prompt_learning_config sets them for grouped-query attention
    (hidden / heads * KV, and KV), encoder_hidden_size defaulting to that token_dim."""
    td = hf_ref.head_dim(cfg) * cfg["num_key_value_heads"]
    return {"auto_mapping": None, "base_model_name_or_path": base, "encoder_hidden_size": td, "inference_mode": True,
            "num_attention_heads": cfg["num_key_value_heads"], "num_layers": cfg["num_hidden_layers"],
            "num_transformer_submodules": 1, "num_virtual_tokens": n, "peft_type": "PREFIX_TUNING",
            "prefix_projection": False, "revision": None, "task_type": "CAUSAL_LM", "token_dim": td}


def case_prefix(gg, W32, name, seed, lengths=None):
    """Prefix tuning, 3 virtual tokens, on the llama_gqa model (4 heads, 2 KV heads: the prefix is
    KV x head_dim wide). lengths: packed rows ([[examples of row 0], ...]), each example seeing the prefix
    as it would alone; None: two plain rows of 8 tokens."""
    cfg, n = gg.LLAMA_GQA, 3
    print(f"{name}:")
    torch.manual_seed(seed)
    td = hf_ref.head_dim(cfg) * cfg["num_key_value_heads"]
    prefix32 = torch.randn(n, cfg["num_hidden_layers"] * 2 * td)  # PEFT: nn.Embedding's N(0, 1)
    pos = seq = None
    if lengths is None:
        ids, labels = gg.random_batch(cfg["vocab_size"], 2, 8, [(0, 2), (1, 6)])
    else:
        T = sum(lengths[0])
        ids = torch.randint(0, cfg["vocab_size"], (len(lengths), T))
        pos = torch.cat([torch.cat([torch.arange(k) for k in row])[None] for row in lengths])
        seq = torch.cat([torch.cat([torch.full((k,), j) for j, k in enumerate(row)])[None] for row in lengths])
        labels = ids.clone()
        labels[pos == 0] = hf_ref.IGNORE_INDEX  # first token of every example: no cross-example target
    res = prefix_run(cfg, W32, ids, labels, prefix32, pos, seq)
    gg.check(f"{name}: loss vs naive loop cross entropy",
             abs(float(res["loss"]) - selfcheck.naive_loss(res["logits"], labels)), 1e-12)
    r32 = prefix_run(cfg, W32, ids, labels, prefix32, pos, seq, torch.float32)
    gg.check(f"{name}: float32 run vs float64 reference, logits (abs)",
             float((r32["logits"].double() - res["logits"]).abs().max()), gg.LOGITS_ATOL / 5)
    g = res["grads"]["prompt_embeddings"]
    gg.check(f"{name}: float32 run vs float64 reference, prefix grad (rel)",
             float((r32["grads"]["prompt_embeddings"].double() - g).norm() / g.norm()), gg.GRAD_RTOL / 5)
    plain = hf_ref.forward(cfg, {k: v.double() for k, v in W32.items()}, ids, position_ids=pos, seq_ids=seq)[0]
    gg.check_min(f"{name}: largest change of a logit made by the adapter", float((plain - res["logits"]).abs().max()), 1e-2)
    if lengths is not None:
        # Each example alone (one plain row) with the prefix gives the packed logits.
        worst = 0.0
        for b, row in enumerate(lengths):
            start = 0
            for k in row:
                alone = prefix_run(cfg, W32, ids[b:b + 1, start:start + k], labels[b:b + 1, start:start + k], prefix32,
                                   backward=False)
                worst = max(worst, float((alone["logits"][0] - res["logits"][b, start:start + k]).abs().max()))
                start += k
        gg.check(f"{name}: logits vs each example run alone", worst, 1e-12)
    d = gg.case_dir(name)
    gg.write_model_note(d, gg.LLAMA_GQA_REL)
    write_adapter(os.path.join(d, "adapter"), prefix_config(cfg, n, gg.LLAMA_GQA_REL), res["params"])
    meta = gg.tolerances({"format": "pt", "case": name, "model": gg.LLAMA_GQA_REL, "num_virtual_tokens": str(n)})
    extra = None if lengths is None else {"position_ids": gg.i32(pos), "seq_ids": gg.i32(seq)}
    tensors = gg.golden_tensors(res, ids, labels, extra)
    del tensors["hidden.final"]  # for debugging only, and the folder is near SIZE_LIMIT
    st_io.save(os.path.join(d, "golden.safetensors"), tensors, meta)
    print(f"  loss {float(res['loss']):.6f}, logits {tuple(res['logits'].shape)}")
    gg.fd_checks(name, res, entrywise=True)


def main(gg, W_gqa):
    case_ia3(gg, W_gqa)
    case_dora(gg)
    case_bottleneck(gg, W_gqa)
    case_prefix(gg, W_gqa, "prefix_tuning", 115)
    case_prefix(gg, W_gqa, "prefix_packed", 117, lengths=[[3, 5], [2, 2, 4]])
    main_more(gg, W_gqa)


@contextlib.contextmanager
def patched(wraps):
    """hf_ref's functions named in wraps ({"linear" | "embed" | "head": wrap}) replaced by wrap(base)."""
    saved = {n: getattr(hf_ref, n) for n in wraps}
    for n, w in wraps.items():
        setattr(hf_ref, n, w(saved[n]))
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(hf_ref, n, f)


def bitfit_wrap(deltas):
    """BitFit (our format, peft/bitfit.c): each target module's output plus its trained bias delta,
    x W^T + b + delta (b: the base's bias where it has one, else none)."""
    def wrap(base):
        def linear(x, W, path, lora, bias=False):
            y = base(x, W, path, lora, bias)
            return y + deltas[path] if path in deltas else y
        return linear
    return wrap


def bitfit_key(path):
    return f"base_model.model.{path}.bias"


def bitfit_config(targets, base):
    # What our writer puts in adapter_config.json (peft/bitfit.c): target_modules in module order.
    order = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return {"base_model_name_or_path": base, "inference_mode": True, "peft_type": "BITFIT", "revision": None,
            "target_modules": [m for m in order if m in targets], "task_type": "CAUSAL_LM"}


def bitfit_case(gg, name, seed, cfg, W32, model_rel, targets):
    print(f"{name}:")
    torch.manual_seed(seed)
    params32, identity32 = {}, {}
    for i in range(cfg["num_hidden_layers"]):
        for t in targets:
            out, _ = gg.linear_shape(cfg, t)
            # Ours start at zero; 0.2 N(0, 1) so that a reader that ignores a delta fails.
            params32[bitfit_key(gg.module_path(i, t))] = 0.2 * torch.randn(out)
            identity32[bitfit_key(gg.module_path(i, t))] = torch.zeros(out)
    ids, labels = gg.random_batch(cfg["vocab_size"], 2, 12, [(0, 5), (1, 9)])

    def wrap_of(params):
        return bitfit_wrap({k[len("base_model.model."):-len(".bias")]: v for k, v in params.items()})

    res = reference(gg, name, cfg, W32, ids, labels, params32, wrap_of, identity32)
    d = gg.case_dir(name)
    gg.write_model_note(d, model_rel)
    write_adapter(os.path.join(d, "adapter"), bitfit_config(targets, model_rel), res["params"])
    meta = gg.tolerances({"format": "pt", "case": name, "model": model_rel})
    # No hidden.final (the size limit); the logits carry the same information.
    st_io.save(os.path.join(d, "golden.safetensors"), without_hidden(gg.golden_tensors(res, ids, labels)), meta)
    print(f"  loss {float(res['loss']):.6f}, {len(res['params'])} adapter tensors")
    gg.fd_checks(name, res, entrywise=True)


def without_hidden(g):
    return {k: v for k, v in g.items() if k != "hidden.final"}


def case_bitfit(gg, W_gqa):
    """BitFit on llama_gqa (no biases: every one is new) on q/k/o and the MLP's up/down (the sites of
    q/k, the attention block's output, gate/up and the MLP block's output), and on Qwen2's q/k (its
    existing biases trained)."""
    bitfit_case(gg, "bitfit", 114, gg.LLAMA_GQA, W_gqa, gg.LLAMA_GQA_REL,
                ["q_proj", "k_proj", "o_proj", "up_proj", "down_proj"])
    W32, _ = st_io.load(os.path.join(gg.HERE, "qwen2_bias", "model.safetensors"))
    W32 = {k: torch.from_numpy(v.copy()) for k, v in W32.items()}
    bitfit_case(gg, "bitfit_qwen2", 115, gg.QWEN2, W32, "tests/golden/qwen2_bias", ["q_proj", "k_proj"])


def lora_embed_wraps(params, lin, scaling):
    """PEFT 0.13.2's LoRA on the embedding (lora.Embedding.forward: base(x) + embed(x, A^T) @ B^T *
    scaling, no dropout), on the head (a Linear LoRA) and on the linears in lin {path: (A, B)}."""
    eA, eB = params["base_model.model.model.embed_tokens.lora_embedding_A"], params["base_model.model.model.embed_tokens.lora_embedding_B"]
    hA, hB = params["base_model.model.lm_head.lora_A.weight"], params["base_model.model.lm_head.lora_B.weight"]

    def embed(base):
        def f(W, ids):
            return base(W, ids) + (eA.T[ids] @ eB.T) * scaling
        return f

    def head(base):
        def f(hf, weight):
            return base(hf, weight) + (hf @ hA.T) @ hB.T * scaling
        return f

    def linear(base):
        def f(x, W, path, lora, bias=False):
            y = base(x, W, path, lora, bias)
            if path in lin:
                A, Bm = lin[path]
                y = y + (x @ A.T) @ Bm.T * scaling
            return y
        return f
    return {"embed": embed, "head": head, "linear": linear}


def case_lora_embed(gg):
    """LoRA on embed_tokens, q_proj, v_proj and lm_head of the tied Qwen3 model (qwen3_qknorm): the lookup
    and the output projection each get their own LoRA on the one shared matrix, as PEFT at run time."""
    name, cfg, r, alpha = "lora_embed", gg.QWEN3, 4, 8
    print(f"{name}:")
    W32, _ = st_io.load(os.path.join(gg.HERE, "qwen3_qknorm", "model.safetensors"))
    W32 = {k: torch.from_numpy(v.copy()) for k, v in W32.items()}
    torch.manual_seed(116)
    lora32 = gg.init_lora(cfg, ["q_proj", "v_proj"], r)
    V, C = cfg["vocab_size"], cfg["hidden_size"]
    params32 = {}
    for path, (A, B) in lora32.items():
        params32[gg.lora_key(path, "A")], params32[gg.lora_key(path, "B")] = A, B
    # PEFT starts lora_embedding_A at zero and B at N(0, 1); both random here so both get gradients.
    params32["base_model.model.model.embed_tokens.lora_embedding_A"] = 0.5 * torch.randn(r, V)
    params32["base_model.model.model.embed_tokens.lora_embedding_B"] = 0.2 * torch.randn(C, r)
    hA = torch.empty(r, C)
    torch.nn.init.kaiming_uniform_(hA, a=5 ** 0.5)
    params32["base_model.model.lm_head.lora_A.weight"] = hA
    params32["base_model.model.lm_head.lora_B.weight"] = 0.1 * torch.randn(V, r)
    identity32 = {k: (torch.zeros_like(v) if ("lora_B" in k or "lora_embedding_A" in k) else v) for k, v in params32.items()}
    ids, labels = gg.random_batch(V, 2, 12, [(0, 2), (1, 7)])
    scaling = alpha / r

    def wrap_of(params):
        lin = {p: (params[gg.lora_key(p, "A")], params[gg.lora_key(p, "B")]) for p in lora32}
        return lora_embed_wraps(params, lin, scaling)

    res = reference(gg, name, cfg, W32, ids, labels, params32, wrap_of, identity32)
    d = gg.case_dir(name)
    gg.write_model_note(d, "tests/golden/qwen3_qknorm")
    config = gg.lora_config(["embed_tokens", "q_proj", "v_proj", "lm_head"], r, alpha, base="tests/golden/qwen3_qknorm")
    write_adapter(os.path.join(d, "adapter"), config, res["params"])
    # As PEFT 0.13.2's save_pretrained writes it with embed_tokens targeted (save_embedding_layers="auto"
    # turns to True): also the base layers' weights, here the one tied table under both names.
    copies = {"base_model.model.model.embed_tokens.base_layer.weight": W32["model.embed_tokens.weight"],
              "base_model.model.lm_head.base_layer.weight": W32["model.embed_tokens.weight"]}
    write_adapter(os.path.join(d, "adapter_peft"), config, dict(res["params"], **copies))
    meta = gg.tolerances({"format": "pt", "case": name, "model": "tests/golden/qwen3_qknorm", "scaling": repr(scaling)})
    st_io.save(os.path.join(d, "golden.safetensors"), without_hidden(gg.golden_tensors(res, ids, labels)), meta)
    print(f"  loss {float(res['loss']):.6f}, {len(res['params'])} adapter tensors")
    gg.fd_checks(name, res, entrywise=True)


def main_more(gg, W_gqa):
    case_bitfit(gg, W_gqa)
    case_lora_embed(gg)
