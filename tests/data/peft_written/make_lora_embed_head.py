# A LoRA adapter on embed_tokens, q_proj, v_proj and lm_head written by the real PEFT 0.13.2 (every trainable
# tensor random, torch seed 0), for deltatune's reader (README.md here). Run with the hf_reference venv:
#   HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /tmp/hf_reference/venv/bin/python make_lora_embed_head.py MODEL_DIR OUT_DIR
import sys, torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
model_dir, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
pm = get_peft_model(m, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
                                  target_modules=["embed_tokens", "q_proj", "v_proj", "lm_head"]))
with torch.no_grad():
    for n, p in pm.named_parameters():
        if p.requires_grad:
            p.copy_(torch.randn_like(p) * (0.3 if "embedding" in n else 0.1))
pm.save_pretrained(out)
print(sorted(k for k, _ in pm.named_parameters() if _.requires_grad)[:3])
