#!/usr/bin/env python3
"""make_models.py — write the tiny random-init checkpoints under tests/data/models/.

Deterministic (torch.manual_seed per model) so re-running gives the same tensors.
Models (all bf16 to keep the committed fixtures < 2 MB in total):
  tiny-llama          LlamaForCausalLM: hidden 64, 2 layers, 4 heads / 2 kv heads,
                      intermediate 128, vocab 2048, llama3 rope scaling, untied lm_head
  tiny-qwen3          Qwen3ForCausalLM: q/k norm, explicit head_dim 16, tied embeddings
  tiny-qwen3-sharded  the same weights as tiny-qwen3, saved with max_shard_size=200KB
                      (model.safetensors.index.json + 2 or more shards)
Vocab 2048 is fixed here; the fixtures do not depend on tests/data/tokenizers/.
No tokenizer.json is written (the store tests add one where they need it).

Usage: python3 tests/oracle/make_models.py [OUT_DIR]   (default tests/data/models)
Needs torch and transformers.
"""
import os
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

VOCAB = 2048


def llama_config():
    return LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 256},
        bos_token_id=1, eos_token_id=[2, 3], torch_dtype="bfloat16")


def qwen3_config():
    return Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=2, torch_dtype="bfloat16")


def build(cls, config, seed):
    torch.manual_seed(seed)
    model = cls(config).to(torch.bfloat16)
    # Norm weights are initialised to ones; perturb them so a loader that ignores them fails.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    return model


def save(model, out, **kw):
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    model.save_pretrained(out, **kw)
    for f in os.listdir(out):
        os.chmod(os.path.join(out, f), 0o644)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data", "models")
    llama = build(LlamaForCausalLM, llama_config(), seed=1234)
    save(llama, os.path.join(root, "tiny-llama"))
    qwen = build(Qwen3ForCausalLM, qwen3_config(), seed=5678)
    save(qwen, os.path.join(root, "tiny-qwen3"))
    save(qwen, os.path.join(root, "tiny-qwen3-sharded"), max_shard_size="200KB")
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    print(f"wrote {root}: {total} bytes")


if __name__ == "__main__":
    main()
