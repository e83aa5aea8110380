#!/usr/bin/env python3
"""model_golden.py — PyTorch/transformers/PEFT reference data for tests/test_model.c.

For each model (tests/data/models/tiny-llama, tiny-qwen3, and tests/data/golden/tiny-qwen2,
a Qwen2 checkpoint with q/k/v biases that this script writes itself) and one fixed
micro-batch (B=2, T=16; row 0 one document with masked prompt tokens, row 1 two packed
documents + padding), in fp32 with attn_implementation="eager":
  (a) full fine-tuning: mean CE loss and the gradient of every parameter after one
      backward;
  (b) LoRA via PEFT (r=4, lora_alpha=8, the 7 projections, dropout 0; B set to small
      random values so dL/dA is not zero; Qwen2 also with bias="all"): the initial A/B,
      the loss and the gradients of every trainable tensor;
  (c) 10 steps of torch.optim.AdamW(lr 1e-3, weight_decay 0.01) on the same batch
      (full fine-tuning): the loss before each step.
Packed rows: the reference runs every document as its own sequence (position ids from 0),
which is exactly doc-bounded causal attention; padding carries no labels.

Size: gradients of [V, D] tensors (embed_tokens, lm_head) are stored as a subset of rows
("rows.<name>" + "rowidx.<name>") plus their sum of squares ("sumsq.<name>"); every
other gradient is stored whole ("grad.<name>"). Output: tests/data/golden/model/<m>.safetensors
(F32/I32 tensors; names listed in tests/test_model.c).

Usage: python3 tests/oracle/model_golden.py [REPO_ROOT]   (deterministic; needs torch,
transformers, peft)
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
OUT = os.path.join(ROOT, "tests", "data", "golden", "model")
B, T = 2, 16
ROWS_KEPT = 40  # rows of a [V, D] gradient kept besides those of the batch's tokens


def make_qwen2(path):
    """Tiny Qwen2 (q/k/v bias, untied) in bf16, written once."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return
    cfg = Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                      bos_token_id=None, eos_token_id=2, torch_dtype="bfloat16")
    torch.manual_seed(7)
    m = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.05)
    m.save_pretrained(path, safe_serialization=True)


def make_batch(vocab):
    """Returns dict of int32 [B, T] arrays per runtime/batch.h, plus the documents."""
    g = np.random.RandomState(1234)
    ids = np.zeros((B, T), np.int32)
    labels = np.full((B, T), -100, np.int32)
    pos = np.zeros((B, T), np.int32)
    doc = np.zeros((B, T), np.int32)
    docs = []  # (row, start, length, first labelled index within doc)
    # row 0: one document of 16 tokens, first 4 are "prompt" (no labels)
    docs.append((0, 0, 16, 3))
    # row 1: documents of 6 and 7 tokens, then 3 padding tokens (their own document)
    docs.append((1, 0, 6, 1))
    docs.append((1, 6, 7, 2))
    for (r, s, n, first) in docs:
        toks = g.randint(3, vocab, size=n)
        ids[r, s:s + n] = toks
        pos[r, s:s + n] = np.arange(n)
        doc[r, s:s + n] = s
        for i in range(first, n - 1):
            labels[r, s + i] = toks[i + 1]
    ids[1, 13:16] = 0  # padding: token 0, own document, positions 0..2
    pos[1, 13:16] = np.arange(3)
    doc[1, 13:16] = 13
    return dict(input_ids=ids, labels=labels, positions=pos, doc_start=doc), docs


def loss_of(model, batch, docs):
    """Mean CE over labelled tokens, each document run as its own sequence."""
    total = torch.zeros((), dtype=torch.float64)
    n = 0
    for (r, s, ln, _) in docs:
        ids = torch.tensor(batch["input_ids"][r, s:s + ln], dtype=torch.long)[None]
        lab = torch.tensor(batch["labels"][r, s:s + ln], dtype=torch.long)
        out = model(input_ids=ids, position_ids=torch.arange(ln)[None], use_cache=False)
        total = total + F.cross_entropy(out.logits[0].float(), lab, ignore_index=-100,
                                        reduction="sum").double()
        n += int((lab != -100).sum())
    return (total / n).float()


def load(path):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    m.train()  # dropout probabilities are 0 in these configs
    return m


def store_grad(out, name, g, used_rows):
    g = g.detach().float().numpy()
    if g.ndim == 2 and g.shape[0] > 256 and ("embed_tokens" in name or "lm_head" in name):
        rng = np.random.RandomState(99)
        extra = rng.choice(g.shape[0], size=ROWS_KEPT, replace=False)
        idx = np.unique(np.concatenate([np.array(sorted(used_rows), dtype=np.int64), extra])).astype(np.int32)
        out["rowidx." + name] = idx
        out["rows." + name] = np.ascontiguousarray(g[idx])
        out["sumsq." + name] = np.array([np.sum(g.astype(np.float64) ** 2)], np.float32)
    else:
        out["grad." + name] = np.ascontiguousarray(g)


def full_ft(path, batch, docs, out, used):
    m = load(path)
    loss = loss_of(m, batch, docs)
    loss.backward()
    out["full.loss"] = np.array([loss.item()], np.float32)
    for name, p in m.named_parameters():
        store_grad(out, "full." + name, p.grad, used)


def adam_steps(path, batch, docs, out):
    m = load(path)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = loss_of(m, batch, docs)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out["adam.loss"] = np.array(losses, np.float32)


def lora(path, batch, docs, out, used, bias):
    from peft import LoraConfig, get_peft_model
    m = load(path)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, bias=bias,
                     task_type="CAUSAL_LM")
    torch.manual_seed(11)  # same initial A for every call on a model
    pm = get_peft_model(m, cfg)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    tag = "lora" if bias == "none" else "lorab"
    for name, p in pm.named_parameters():
        if "lora_" in name:
            out["init." + name.replace(".default", "")] = p.detach().float().numpy().copy()
    pm.train()
    loss = loss_of(pm, batch, docs)
    loss.backward()
    out[tag + ".loss"] = np.array([loss.item()], np.float32)
    for name, p in pm.named_parameters():
        if p.requires_grad:
            store_grad(out, tag + "." + name.replace(".default", ""), p.grad, used)


def main():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    qwen2 = os.path.join(ROOT, "tests", "data", "golden", "tiny-qwen2")
    make_qwen2(qwen2)
    models = [("llama", os.path.join(ROOT, "tests", "data", "models", "tiny-llama")),
              ("qwen3", os.path.join(ROOT, "tests", "data", "models", "tiny-qwen3")),
              ("qwen2", qwen2)]
    for tag, path in models:
        vocab = load(path).config.vocab_size
        batch, docs = make_batch(vocab)
        used = set(int(x) for x in batch["input_ids"].ravel()) | \
            set(int(x) for x in batch["labels"].ravel() if x >= 0)
        out = {"batch." + k: v for k, v in batch.items()}
        full_ft(path, batch, docs, out, used)
        lora(path, batch, docs, out, used, "none")
        if tag == "qwen2":
            lora(path, batch, docs, out, used, "all")
        adam_steps(path, batch, docs, out)
        fn = os.path.join(OUT, tag + ".safetensors")
        save_file(out, fn)
        print(f"{fn}: {os.path.getsize(fn)} bytes, full loss {out['full.loss'][0]:.6f}")


if __name__ == "__main__":
    main()
