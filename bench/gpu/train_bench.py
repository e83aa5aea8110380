#!/usr/bin/env python3
"""train_bench.py — nmc training vs transformers + PEFT on one GPU, in the same run.

Creates a random Qwen3-0.6B-shaped model (hidden 1024, 28 layers, 16 query / 8 KV heads
of 128, MLP 3072, vocab 151936, tied embeddings; ~0.6 B parameters) with transformers on
the GPU, saves it (bf16 safetensors) into a temp dir, then measures per step, seq len
2048, batch 2 (4096 tokens; nmc refuses micro-batches whose N*V exceeds 2^30):
  nmc   build/gpu/train_bench (runtime/model.h on the CUDA device: bf16 activations,
        fp32 master weights, grads and AdamW moments; grad-norm clip 1.0; AdamW)
  peer  transformers + PEFT, attn_implementation="sdpa", torch.autocast(bf16):
        LoRA: bf16 frozen base, fp32 adapters (PEFT default); full: fp32 weights (the
        HF Trainer bf16=True setup); clip_grad_norm_(1.0); torch.optim.AdamW (fused).
  LoRA: r 16, alpha 32, dropout 0, the 7 projections of every layer.
Two warm-up steps, then STEPS timed steps, for each side.
Reported: tokens/s, ratio nmc/peer (> 1: nmc faster), MFU = 6 * N * tokens/s / peak with
N = all parameters (tied embedding once; its lm_head product is in the 6N) and peak =
989.4 TFLOP/s (H100 SXM dense bf16; the PCIe card is 756); attention FLOPs are not
counted, and LoRA's real work is ~4N/token (no frozen weight grads), so LoRA MFU reads
low by design. Peak memory: nmc = peak of its device allocations + context scratch;
peer = torch.cuda.max_memory_allocated. Ratios are nmc / peer.

Usage: train_bench.py BENCH_BINARY [--json OUT.jsonl] [--steps N] [--batch B] [--seq T]
Exit status 1 when a side fails (the other side still runs and prints).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

PEAK_TFLOPS = 989.4  # H100 SXM5, dense bf16 (NVIDIA datasheet); PCIe: 756


def with_dtype(fn, arg, dtype, **kw):
    """transformers >= 4.56 takes dtype=, older releases torch_dtype=."""
    try:
        return fn(arg, dtype=dtype, **kw)
    except TypeError:
        return fn(arg, torch_dtype=dtype, **kw)


def make_model(dirname):
    from transformers import AutoModelForCausalLM, Qwen3Config
    cfg = Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = with_dtype(AutoModelForCausalLM.from_config, cfg, torch.bfloat16)
    model.save_pretrained(dirname, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())  # tied weight counted once
    del model
    torch.cuda.empty_cache()
    return n


def batch(vocab, B, T):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, vocab, (B, T), generator=g).cuda()
    return ids


def hf_run(dirname, mode, B, T, steps):
    from transformers import AutoModelForCausalLM
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    dtype = torch.bfloat16 if mode == "lora" else torch.float32
    model = with_dtype(AutoModelForCausalLM.from_pretrained, dirname, dtype, attn_implementation="sdpa").cuda()
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        lc = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(model, lc)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, fused=True)
    ids = batch(model.config.vocab_size, B, T)
    losses = []

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())  # one host sync per step, as nmc's loss download

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated()
    del model, opt, params
    torch.cuda.empty_cache()
    return {"tokens_per_s": B * T * steps / dt, "step_ms": 1e3 * dt / steps, "peak_bytes": peak,
            "loss_first": losses[0], "loss_last": losses[-1]}


def nmc_run(binary, dirname, mode, B, T, steps):
    r = subprocess.run([binary, dirname, mode, str(B), str(T), str(steps), "cuda"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{binary} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["peak_bytes"] = out["peak_bytes"] + out["ctx_bytes"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--json")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=2048)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("train_bench: no GPU visible to torch")
        return 1
    gpu = torch.cuda.get_device_name(0)
    t_start = time.time()
    rc = 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="nmc-train-bench-") as tmp:
        mdir = os.path.join(tmp, "qwen3-0.6b-random")
        n = make_model(mdir)
        print(f"train_bench: random Qwen3-0.6B-shaped model, {n / 1e6:.1f} M parameters, "
              f"B={a.batch} T={a.seq}, {a.steps} timed steps, {gpu}; peak {PEAK_TFLOPS} TFLOP/s "
              f"(H100 SXM dense bf16) ({time.time() - t_start:.0f}s to create)", flush=True)
        for mode in ("lora", "full"):
            res = {}
            for side, fn in (("nmc", lambda: nmc_run(a.binary, mdir, mode, a.batch, a.seq, a.steps)),
                             ("hf", lambda: hf_run(mdir, mode, a.batch, a.seq, a.steps))):
                try:
                    res[side] = fn()
                except Exception as e:  # report and keep going: the other side still runs
                    print(f"train_bench: {mode} {side} FAILED: {e}", flush=True)
                    rc = 1
            for side, r in res.items():
                r["mfu"] = 6.0 * n * r["tokens_per_s"] / (PEAK_TFLOPS * 1e12)
                print(f"  {mode:4s} {side:3s}: {r['tokens_per_s']:9.0f} tok/s  {r['step_ms']:8.1f} ms/step  "
                      f"MFU {100 * r['mfu']:5.1f}%  peak {r['peak_bytes'] / 2**30:6.2f} GiB  "
                      f"loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}", flush=True)
            row = {"bench": "train", "mode": mode, "model": "qwen3-0.6b-random", "params": n,
                   "B": a.batch, "T": a.seq, "gpu": gpu, **{f"{s}_{k}": v for s, r in res.items() for k, v in r.items()}}
            if "nmc" in res and "hf" in res:
                row["speed_ratio"] = res["nmc"]["tokens_per_s"] / res["hf"]["tokens_per_s"]
                row["mem_ratio"] = res["nmc"]["peak_bytes"] / res["hf"]["peak_bytes"]
                print(f"  {mode:4s} ratio nmc/hf: tokens/s x{row['speed_ratio']:.2f} (>1 = nmc faster), "
                      f"peak memory x{row['mem_ratio']:.2f} (<1 = nmc smaller)", flush=True)
            rows.append(row)
    if a.json:
        with open(a.json, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    print(f"train_bench: {time.time() - t_start:.0f}s total")
    return rc


if __name__ == "__main__":
    sys.exit(main())
