#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz harnesses (tests/fuzz/corpus/NAME/*): small valid
files of each format, so the fuzzer starts from inputs that get past the first checks. Plain Python,
no dependencies; run from the project root after changing it. The text seeds (JSON, YAML, JSONL) are
the project's own test files, copied. Files named finding-* are inputs that once made a harness fail
(each also has a regression test); they are kept as seeds and this script leaves them alone."""
import json, os, struct

ROOT = "tests/fuzz/corpus"
SEP = b"\n#--#\n"  # FUZZ_SEP in tests/fuzz/fuzz_util.h


def put(name, fname, data):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read(path):
    with open(path, "rb") as f:
        return f.read()


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)]"""
    header, off, blob = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors):
    """kvs: [(key, type id, packed value)]; tensors: [(name, ne list, ggml type, raw)]"""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gguf_str(k) + struct.pack("<i", t) + v
    off, blobs = 0, b""
    for name, ne, t, raw in tensors:
        out += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", n) for n in ne)
        out += struct.pack("<iQ", t, off)
        pad = -len(raw) % 32
        blobs += raw + b"\0" * pad
        off += len(raw) + pad
    out += b"\0" * (-len(out) % 32)
    return out + blobs


def main():
    # safetensors
    put("fuzz_safetensors", "f32", safetensors([("a.weight", "F32", [2, 3], f32(*range(6)))], {"format": "pt"}))
    put("fuzz_safetensors", "mixed", safetensors([("x", "F16", [4], b"\0<" * 4), ("y", "BF16", [2, 2], b"\x80?" * 4),
                                                  ("z", "I32", [1], b"\1\0\0\0")]))
    put("fuzz_safetensors", "prompt", read("tests/golden/prompt_tuning/adapter/adapter_model.safetensors"))
    put("fuzz_st_index", "index", json.dumps({"metadata": {"total_size": 48}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}, indent=2))
    # GGUF: a model header, a LoRA adapter, a tokenizer's metadata
    STR, U32, F32T, ARR, BOOL = 8, 4, 6, 9, 7
    model_kvs = [("general.architecture", STR, gguf_str("llama")), ("general.alignment", U32, struct.pack("<I", 32)),
                 ("llama.block_count", U32, struct.pack("<I", 1)), ("llama.embedding_length", U32, struct.pack("<I", 4)),
                 ("llama.rope.freq_base", F32T, struct.pack("<f", 10000.0))]
    put("fuzz_gguf", "model", gguf(model_kvs, [("token_embd.weight", [4, 3], 0, f32(*range(12))),
                                               ("output_norm.weight", [4], 1, b"\0<" * 4)]))
    adapter_kvs = [("general.architecture", STR, gguf_str("llama")), ("general.type", STR, gguf_str("adapter")),
                   ("adapter.type", STR, gguf_str("lora")), ("adapter.lora.alpha", F32T, struct.pack("<f", 16.0))]
    put("fuzz_gguf", "adapter", gguf(adapter_kvs, [("blk.0.attn_q.weight.lora_a", [4, 2], 0, f32(*range(8))),
                                                   ("blk.0.attn_q.weight.lora_b", [2, 4], 0, f32(*range(8)))]))
    toks = ["<unk>", "<s>", "</s>", "a", "b", "ab"]
    tok_kvs = [("general.architecture", STR, gguf_str("llama")), ("tokenizer.ggml.model", STR, gguf_str("gpt2")),
               ("tokenizer.ggml.tokens", ARR, struct.pack("<iQ", STR, len(toks)) + b"".join(gguf_str(t) for t in toks)),
               ("tokenizer.ggml.merges", ARR, struct.pack("<iQ", STR, 1) + gguf_str("a b")),
               ("tokenizer.ggml.scores", ARR, struct.pack("<iQ", F32T, len(toks)) + f32(*[0.0] * len(toks))),
               ("tokenizer.ggml.add_bos_token", BOOL, b"\1")]
    put("fuzz_gguf", "tokenizer", gguf(tok_kvs, []))
    # Tokenizers the GGUF tokenizer reader builds (datasets/tokenizer_gguf.c): byte-level BPE with its
    # pre-tokenizer named, and SentencePiece-style with scores, byte tokens and control tokens.
    I32T = 5
    bl = ["a", "b", "ab", "\u0120", "\u0120a", "1", "2", "<|im_end|>", "[PAD8]"]
    bl_kvs = [("tokenizer.ggml.model", STR, gguf_str("gpt2")), ("tokenizer.ggml.pre", STR, gguf_str("qwen2")),
              ("tokenizer.ggml.tokens", ARR, struct.pack("<iQ", STR, len(bl)) + b"".join(gguf_str(t) for t in bl)),
              ("tokenizer.ggml.token_type", ARR, struct.pack("<iQ", I32T, len(bl)) + struct.pack("<9i", 1, 1, 1, 1, 1, 1, 1, 3, 5)),
              ("tokenizer.ggml.merges", ARR, struct.pack("<iQ", STR, 2) + gguf_str("a b") + gguf_str("\u0120 a")),
              ("tokenizer.ggml.eos_token_id", U32, struct.pack("<I", 7)),
              ("tokenizer.chat_template", STR, gguf_str("{{ '<|im_start|>' + message['content'] + '<|im_end|>' }}"))]
    put("fuzz_gguf", "tokenizer_gpt2", gguf(bl_kvs, []))
    sp = ["<unk>", "<s>", "</s>", "<0x0A>", "<0xC3>", "\u2581", "a", "b", "\u2581a", "ab", "<tool>"]
    sp_kvs = [("tokenizer.ggml.model", STR, gguf_str("llama")), ("tokenizer.ggml.pre", STR, gguf_str("default")),
              ("tokenizer.ggml.tokens", ARR, struct.pack("<iQ", STR, len(sp)) + b"".join(gguf_str(t) for t in sp)),
              ("tokenizer.ggml.scores", ARR, struct.pack("<iQ", F32T, len(sp)) + f32(0, 0, 0, 0, 0, -1, -2, -3, -4, -4, -1000)),
              ("tokenizer.ggml.token_type", ARR, struct.pack("<iQ", I32T, len(sp)) + struct.pack("<11i", 3, 3, 3, 6, 6, 1, 1, 1, 1, 1, 4)),
              ("tokenizer.ggml.bos_token_id", U32, struct.pack("<I", 1)), ("tokenizer.ggml.eos_token_id", U32, struct.pack("<I", 2)),
              ("tokenizer.ggml.unknown_token_id", U32, struct.pack("<I", 0)), ("tokenizer.ggml.add_eos_token", BOOL, b"\1")]
    put("fuzz_gguf", "tokenizer_llama", gguf(sp_kvs, []))
    # GGUF bases (fuzz_gguf_model): a one-layer llama, hidden 32, 2 heads of 16, 1 KV head, vocab 4, with
    # Q8_0 (f16 scale + 32 int8), Q4_0 (f16 scale + 16 nibble bytes), F16 and F32 tensors and llama3 RoPE
    # factors; and a qwen2 one with q/k/v biases and a tied head (no output.weight).
    def q8_0(rows): return (b"\x00\x3c" + bytes(range(32))) * rows
    def q4_0(rows): return (b"\x00\x3c" + bytes(range(16))) * rows
    def base_kvs(arch, extra=()):
        u = lambda v: struct.pack("<I", v)
        return [("general.architecture", STR, gguf_str(arch)), ("%s.block_count" % arch, U32, u(1)),
                ("%s.embedding_length" % arch, U32, u(32)), ("%s.attention.head_count" % arch, U32, u(2)),
                ("%s.attention.head_count_kv" % arch, U32, u(1)), ("%s.feed_forward_length" % arch, U32, u(32)),
                ("%s.context_length" % arch, U32, u(64)),
                ("%s.attention.layer_norm_rms_epsilon" % arch, F32T, struct.pack("<f", 1e-5))] + list(extra)
    layer = [("blk.0.attn_norm.weight", [32], 0, f32(*[1.0] * 32)), ("blk.0.attn_q.weight", [32, 32], 8, q8_0(32)),
             ("blk.0.attn_k.weight", [32, 16], 8, q8_0(16)), ("blk.0.attn_v.weight", [32, 16], 1, b"\x00\x3c" * 512),
             ("blk.0.attn_output.weight", [32, 32], 2, q4_0(32)), ("blk.0.ffn_norm.weight", [32], 0, f32(*[1.0] * 32)),
             ("blk.0.ffn_gate.weight", [32, 32], 8, q8_0(32)), ("blk.0.ffn_up.weight", [32, 32], 8, q8_0(32)),
             ("blk.0.ffn_down.weight", [32, 32], 8, q8_0(32))]
    common = [("token_embd.weight", [32, 4], 0, f32(*[0.01 * i for i in range(128)])),
              ("output_norm.weight", [32], 0, f32(*[1.0] * 32))]
    put("fuzz_gguf_model", "llama_q8", gguf(base_kvs("llama", [("tokenizer.ggml.bos_token_id", U32, struct.pack("<I", 1))]),
        common + layer + [("output.weight", [32, 4], 8, q8_0(4)), ("rope_freqs.weight", [8], 0, f32(*[1.0] * 8))]))
    put("fuzz_gguf_model", "qwen2_bias", gguf(base_kvs("qwen2"), common + layer + [
        ("blk.0.attn_q.bias", [32], 0, f32(*[0.0] * 32)), ("blk.0.attn_k.bias", [16], 0, f32(*[0.0] * 16)),
        ("blk.0.attn_v.bias", [16], 0, f32(*[0.0] * 16))]))
    # Hugging Face model folders (fuzz_hf_model): config.json SEP model.safetensors, one layer, hidden 8,
    # 2 heads of 4, 1 KV head, intermediate 8, vocab 4: a llama in F32, a qwen3 with q/k norms in BF16 and
    # a tied qwen2 with q/k/v biases in F16.
    def hf_model(model_type, arch, dt, tied=False, bias=False, qk_norm=False):
        H, I, V, hd = 8, 8, 4, 4
        cfg = {"architectures": [arch], "model_type": model_type, "hidden_size": H, "intermediate_size": I,
               "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 1, "vocab_size": V,
               "rms_norm_eps": 1e-6, "tie_word_embeddings": tied, "max_position_embeddings": 32, "head_dim": hd}
        raw = {"F32": lambda k: f32(*[0.01 * (i % 7) for i in range(k)]), "BF16": lambda k: b"\x80\x3c" * k,
               "F16": lambda k: b"\x00\x24" * k}[dt]
        p = "model.layers.0."
        ts = [("model.embed_tokens.weight", [V, H]), (p + "input_layernorm.weight", [H]),
              (p + "self_attn.q_proj.weight", [H, H]), (p + "self_attn.k_proj.weight", [hd, H]),
              (p + "self_attn.v_proj.weight", [hd, H]), (p + "self_attn.o_proj.weight", [H, H]),
              (p + "post_attention_layernorm.weight", [H]), (p + "mlp.gate_proj.weight", [I, H]),
              (p + "mlp.up_proj.weight", [I, H]), (p + "mlp.down_proj.weight", [H, I]), ("model.norm.weight", [H])]
        if bias:
            ts += [(p + "self_attn.q_proj.bias", [H]), (p + "self_attn.k_proj.bias", [hd]), (p + "self_attn.v_proj.bias", [hd])]
        if qk_norm:
            ts += [(p + "self_attn.q_norm.weight", [hd]), (p + "self_attn.k_norm.weight", [hd])]
        if not tied:
            ts += [("lm_head.weight", [V, H])]
        tensors = [(name, dt, shape, raw(shape[0] * (shape[1] if len(shape) > 1 else 1))) for name, shape in ts]
        return json.dumps(cfg, indent=1).encode() + SEP + safetensors(tensors)
    put("fuzz_hf_model", "llama_f32", hf_model("llama", "LlamaForCausalLM", "F32"))
    put("fuzz_hf_model", "qwen3_bf16", hf_model("qwen3", "Qwen3ForCausalLM", "BF16", qk_norm=True))
    put("fuzz_hf_model", "qwen2_f16_tied", hf_model("qwen2", "Qwen2ForCausalLM", "F16", tied=True, bias=True))
    # llama2.c: dim 4, hidden 4, 1 layer, 2 heads, 1 kv head, vocab 3 (shared classifier), seq_len 4
    dim, hid, L, H, KV, V, S = 4, 4, 1, 2, 1, 3, 4
    hs = dim // H
    n = V * dim + L * dim + L * dim * dim + 2 * L * dim * KV * hs + L * dim * dim + L * dim + 3 * L * dim * hid + dim + S * hs
    put("fuzz_llama2c", "tiny", struct.pack("<7i", dim, hid, L, H, KV, V, S) + f32(*[0.01 * i for i in range(n)]))
    put("fuzz_llama2c", "tiny_cls", struct.pack("<7i", dim, hid, L, H, KV, -V, S) + f32(*[0.01 * i for i in range(n + V * dim)]))
    # llama2.c tokenizer.bin: max_token_length, then per token: score f32, length i32, bytes
    tb = struct.pack("<i", 4)
    for i, t in enumerate(["<unk>", "<s>", "</s>", "<0x0A>", " ", "a", "b", " a", "ab", "\u2581"]):
        b = t.encode()
        tb += struct.pack("<fi", -float(i), len(b)) + b
    put("fuzz_tokenizer_bin", "tiny", tb)
    # config.json
    for name in ["llama_gqa", "qwen2_bias", "qwen3_qknorm", "llama3_rope"]:
        put("fuzz_config", name, read("tests/golden/%s/config.json" % name))
    # adapters: config SEP tensors
    put("fuzz_adapter", "prompt", read("tests/golden/prompt_tuning/adapter/adapter_config.json") + SEP +
        read("tests/golden/prompt_tuning/adapter/adapter_model.safetensors"))
    lora = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"], "layers_to_transform": [1],
            "rank_pattern": {"layers.1.self_attn.q_proj": 1}, "alpha_pattern": {"v_proj": 8}, "use_rslora": False}
    ts = [("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", "F32", [1, 64], f32(*[0.0] * 64)),
          ("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", "F32", [64, 1], f32(*[0.0] * 64))]
    put("fuzz_adapter", "lora", json.dumps(lora).encode() + SEP + safetensors(ts))
    # The golden adapters of the harness's base config (llama_gqa), each loading onto the model: every
    # method's tensors reach the forward.
    for name in ["llama_gqa", "rank_pattern", "ia3", "bitfit", "bottleneck", "prefix_tuning"]:
        a = "tests/golden/%s/adapter/" % name
        put("fuzz_adapter", "golden_" + name, read(a + "adapter_config.json") + SEP + read(a + "adapter_model.safetensors"))
    # recipes: YAML SEP overrides
    put("fuzz_recipe", "tiny", read("tests/data/train/tiny.yaml") + SEP + b"train.max_steps=3\nmethod.r=2\nresume=true\n")
    put("fuzz_recipe", "stories", read("recipes/stories260k-lora.yaml"))
    put("fuzz_recipe", "prompt", b"model:\n  path: m\nmethod:\n  name: prompt_tuning\n  num_virtual_tokens: 4\n  init: text\n"
        b"  init_text: hello\ndata:\n  train: d.jsonl\noutput_dir: out\n" + SEP + b"data.max_seq_len=64\n")
    # datasets: format byte, template byte, JSONL
    lines = {
        1: '{"text": "hello world"}\n{"text": "second line"}\n',
        2: '{"prompt": "Q: 1+1?", "completion": " 2"}\n',
        3: '{"instruction": "Add.", "input": "1 1", "output": "2"}\n',
        4: '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, '
           '{"role": "assistant", "content": "Hello!"}]}\n',
        5: '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey"}]}\n',
        6: '{"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4]}\n',
    }
    for fmt, text in lines.items():
        for tmpl in ([1, 3, 6] if fmt in (4, 5) else [0]):
            put("fuzz_dataset", "f%d_t%d" % (fmt, tmpl), bytes([fmt, tmpl]) + text.encode())
    # tokenizers: tokenizer.json SEP tokenizer_config.json SEP text
    tj, tc = read("tests/data/datasets/tiny_tok/tokenizer.json"), read("tests/data/datasets/tiny_tok/tokenizer_config.json")
    put("fuzz_tokenizer", "tiny_tok", tj + SEP + tc + SEP + "<|im_start|>user\nHé ▁ 12\n<|im_end|>".encode())
    model = '"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\\u00e9": 3, "\\u2581": 4}, "merges": ["a b"]}'
    put("fuzz_tokenizer", "split", '{"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Replace", '
        '"pattern": {"String": " "}, "content": "\\u2581"}]}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": '
        '"\\\\p{L}+|\\\\s+"}, "behavior": "Isolated", "invert": false}, "decoder": {"type": "Replace", "pattern": '
        '{"String": "\\u2581"}, "content": " "}, ' + model + '}' + SEP.decode() + '{}' + SEP.decode() + 'ab é ab')
    put("fuzz_tokenizer", "metaspace", '{"pre_tokenizer": {"type": "Metaspace", "replacement": "\\u2581", '
        '"prepend_scheme": "first"}, "decoder": {"type": "Metaspace"}, ' + model + '}')


if __name__ == "__main__":
    main()
