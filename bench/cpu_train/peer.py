#!/usr/bin/env python3
"""peer.py — the PyTorch side of the CPU training benchmark (bench/cpu_train/run.sh).

Two jobs:
  peer.py make  --out DIR [--hidden 512 --layers 8 --heads 8 --kv-heads 4
                 --intermediate 1408 --vocab 32000 --tied 1 --max-pos 2048 --seed 0]
      writes a random-init LlamaForCausalLM (transformers' own init, fp32) as an HF
      directory (config.json + model.safetensors) and prints "params=<count>".
  peer.py train --model DIR --mode lora|full [--B 4 --T 256 --threads 2 --warmup 2
                 --steps 5 --rank 16 --seed 1]
      times optimizer steps exactly as bench_cpu_train.c does: zero grads, forward with
      labels (transformers shifts them: B*(T-1) labelled tokens, as nmc's batch), backward,
      torch.optim.AdamW (lr 1e-4, weight decay 0.01 except biases/norms; fused CPU kernel
      when this torch has it). LoRA: PEFT LoraConfig(r, alpha 2r, dropout 0, all 7
      projections). Prints one key=value line: "torch mode=... step_ms=... tok_s=... loss0=..."
The token ids come from the same LCG as bench_cpu_train.c (make_ids), so both sides
train the same batch and their first-step losses must agree.
"""
import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")


def make_ids(B, T, V, seed):
    s, out = seed & 0xFFFFFFFF, []
    for _ in range(B * T):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append((s >> 8) % V)
    return out


def cmd_make(a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(a.seed)
    cfg = LlamaConfig(hidden_size=a.hidden, intermediate_size=a.intermediate,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, vocab_size=a.vocab,
                      max_position_embeddings=a.max_pos, tie_word_embeddings=bool(a.tied),
                      rms_norm_eps=1e-5, torch_dtype="float32")
    model = LlamaForCausalLM(cfg).float()
    model.save_pretrained(a.out, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())  # tied weights counted once
    print(f"params={n}")


def cmd_train(a):
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    model = LlamaForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32,
                                             attn_implementation="sdpa")
    if a.mode == "lora":
        from peft import LoraConfig, get_peft_model
        lc = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, bias="none",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj"], task_type="CAUSAL_LM")
        model = get_peft_model(model, lc)
    model.train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, fused=True)
        fused = True
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        fused = False
    V = model.config.vocab_size
    ids = torch.tensor(make_ids(a.B, a.T, V, a.seed), dtype=torch.long).view(a.B, a.T)
    loss0 = loss = None
    timed, best = 0.0, float("inf")
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        loss = out.loss.item()
        if s == 0:
            loss0 = loss
        if s >= a.warmup:
            timed += dt
            best = min(best, dt)
    step = best  # fastest timed step, as bench_cpu_train.c (mean_ms: the mean)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"torch mode={a.mode} B={a.B} T={a.T} threads={torch.get_num_threads()} "
          f"trainable={trainable} fused_adamw={int(fused)} step_ms={1e3 * step:.1f} "
          f"mean_ms={1e3 * timed / a.steps:.1f} "
          f"tok_s={a.B * a.T / step:.1f} loss0={loss0:.4f} loss={loss:.4f} "
          f"torch={torch.__version__}")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    for k, v in (("hidden", 512), ("layers", 8), ("heads", 8), ("kv-heads", 4),
                 ("intermediate", 1408), ("vocab", 32000), ("tied", 1), ("max-pos", 2048),
                 ("seed", 0)):
        m.add_argument("--" + k, type=int, default=v)
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--mode", choices=["lora", "full"], required=True)
    for k, v in (("B", 4), ("T", 256), ("threads", 2), ("warmup", 2), ("steps", 5),
                 ("rank", 16), ("seed", 1)):
        t.add_argument("--" + k, type=int, default=v)
    a = ap.parse_args(argv)
    cmd_make(a) if a.cmd == "make" else cmd_train(a)


if __name__ == "__main__":
    main(sys.argv[1:])
