#!/usr/bin/env python3
"""train_bench.py — nmc training vs transformers + PEFT on one GPU, in the same run.

Creates random models with transformers on the GPU, saves them (bf16 safetensors) into a
temp dir, and measures one optimizer step at seq len 2048 for each config:
  qwen3-0.6b  Qwen3-0.6B-shaped (hidden 1024, 28 layers, 16 query / 8 KV heads of 128,
              MLP 3072, vocab 151936, tied embeddings; 0.6 B parameters), batch 2
  llama-1b    Llama-3.2-1B-shaped (hidden 2048, 16 layers, 32 query / 8 KV heads of 64,
              MLP 8192, vocab 128256, tied embeddings; 1.24 B parameters), batch 2 and 8
For each (config, mode):
  nmc   build/bench/train_bench (runtime/model.h on the CUDA device: bf16 activations,
        fp32 master weights, grads and AdamW moments; grad-norm clip 1.0; AdamW), run
        twice: "nmc" with NMC_CUDA_FAST=0 (the plain kernels) and "nmc-fast" with
        NMC_CUDA_FAST=1 (the default: fused/vectorized kernels, larger lm_head chunks,
        multi-tensor AdamW with the clip folded in)
  peer  transformers + PEFT, attn_implementation="sdpa", torch.autocast(bf16):
        LoRA: bf16 frozen base, fp32 adapters (PEFT default); full: fp32 weights (the
        HF Trainer bf16=True setup); clip_grad_norm_(1.0); torch.optim.AdamW (fused).
  LoRA: r 16, alpha 32, dropout 0, the 7 projections of every layer.
Two warm-up steps, then the config's timed steps (--steps scales them), for each side. A
side that runs out of memory prints OOM (HF full fine-tuning at batch 8 may) and the run
goes on.
Reported: tokens/s, ratio nmc/peer (> 1: nmc faster), MFU = 6 * N * tokens/s / peak with
N = all parameters (tied embedding once; its lm_head product is in the 6N) and peak =
989.4 TFLOP/s (H100 SXM dense bf16; the PCIe card is 756); attention FLOPs are not
counted, and LoRA's real work is ~4N/token (no frozen weight grads), so LoRA MFU reads
low by design. Peak memory: nmc = peak of its device allocations + context scratch;
peer = torch.cuda.max_memory_allocated. Ratios are nmc / peer.

With --profile, each (config, mode) also runs nmc-fast once more with NMC_BENCH_PROFILE=1
and prints its per-op table (bench/dev_profile.h: every op synchronized, so the profiled
step is slower than the timed one; the tables show where the step's time goes).

Usage: train_bench.py BENCH_BINARY [--json OUT.jsonl] [--steps N] [--seq T]
                      [--configs qwen3-0.6b:2,llama-1b:2,llama-1b:8] [--profile]
Exit status 1 when a side fails (the other side still runs and prints).
"""
import argparse
import json
import os
import shutil
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


def model_config(name):
    if name == "qwen3-0.6b":
        from transformers import Qwen3Config
        return Qwen3Config(
            vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
            num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True)
    if name == "llama-1b":
        from transformers import LlamaConfig
        return LlamaConfig(
            vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
            num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=4096,
            rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True)
    raise ValueError(f"unknown config {name!r} (qwen3-0.6b, llama-1b)")


# timed steps per (config, batch) at --steps 6 (the default); scaled by --steps / 6. Sized so
# the whole bench stays under ~3 minutes on an H100 (tests/gpu/run.sh budget).
BASE_STEPS = {("qwen3-0.6b", 2): 5, ("llama-1b", 2): 4, ("llama-1b", 8): 2}


def make_model(dirname, name):
    from transformers import AutoModelForCausalLM
    cfg = model_config(name)
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


def is_oom(e):
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def hf_run(dirname, mode, B, T, steps):
    try:
        return hf_run_inner(dirname, mode, B, T, steps)
    finally:
        import gc
        gc.collect()
        torch.cuda.empty_cache()


def hf_run_inner(dirname, mode, B, T, steps):
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


def nmc_run(binary, dirname, mode, B, T, steps, fast):
    env = dict(os.environ, NMC_CUDA_FAST="1" if fast else "0")
    r = subprocess.run([binary, dirname, mode, str(B), str(T), str(steps), "cuda"],
                       capture_output=True, text=True, timeout=150, env=env)
    if r.returncode != 0:
        err = r.stderr.strip()[-2000:]
        if "out of memory" in err.lower() or "cannot allocate" in err.lower():
            raise MemoryError(f"OOM: {err[-300:]}")
        raise RuntimeError(f"{binary} exited {r.returncode}: {err}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["peak_bytes"] = out["peak_bytes"] + out["ctx_bytes"]
    return out


def nmc_profile(binary, dirname, mode, B, T, steps, top=30):
    """nmc-fast once more with the per-op profile; prints the table's first `top` rows."""
    env = dict(os.environ, NMC_CUDA_FAST="1", NMC_BENCH_PROFILE="1")
    try:
        r = subprocess.run([binary, dirname, mode, str(B), str(T), str(steps), "cuda"],
                           capture_output=True, text=True, timeout=150, env=env)
    except subprocess.TimeoutExpired:
        print(f"  {mode:4s} profile: timed out", flush=True)
        return
    lines = r.stderr.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("profile per step")), None)
    if r.returncode != 0 or start is None:
        print(f"  {mode:4s} profile: FAILED (exit {r.returncode}): {r.stderr.strip()[-500:]}", flush=True)
        return
    print(f"  {mode:4s} nmc-fast {lines[start]}", flush=True)
    for line in lines[start + 1:start + 1 + top]:
        print(f"      {line.strip()}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--json")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--configs", default="qwen3-0.6b:2,llama-1b:2,llama-1b:8")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("train_bench: no GPU visible to torch")
        return 1
    gpu = torch.cuda.get_device_name(0)
    t_start = time.time()
    rc = 0
    rows = []
    plan = {}
    for item in a.configs.split(","):
        name, _, b = item.partition(":")
        plan.setdefault(name, []).append(int(b or 2))
    with tempfile.TemporaryDirectory(prefix="nmc-train-bench-") as tmp:
        for name, batches in plan.items():
            mdir = os.path.join(tmp, name + "-random")
            t0 = time.time()
            n = make_model(mdir, name)
            print(f"train_bench: random {name}-shaped model, {n / 1e6:.1f} M parameters, T={a.seq}, "
                  f"{gpu}; peak {PEAK_TFLOPS} TFLOP/s (H100 SXM dense bf16) "
                  f"({time.time() - t0:.0f}s to create)", flush=True)
            for B in batches:
                steps = max(1, round(BASE_STEPS.get((name, B), 3) * a.steps / 6))
                rc |= bench_config(a, mdir, name, n, B, steps, gpu, rows)
            shutil.rmtree(mdir, ignore_errors=True)
    if a.json:
        with open(a.json, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    print(f"train_bench: {time.time() - t_start:.0f}s total")
    return rc


def bench_config(a, mdir, name, n, B, steps, gpu, rows):
    """Both modes of one (model, batch): nmc, nmc-fast and HF; prints rows and ratios."""
    rc = 0
    print(f"  -- {name} B={B} T={a.seq} ({B * a.seq} tokens/step), {steps} timed steps", flush=True)
    for mode in ("lora", "full"):
        res = {}
        sides = (("nmc", lambda: nmc_run(a.binary, mdir, mode, B, a.seq, steps, False)),
                 ("nmc-fast", lambda: nmc_run(a.binary, mdir, mode, B, a.seq, steps, True)),
                 ("hf", lambda: hf_run(mdir, mode, B, a.seq, steps)))
        for side, fn in sides:
            try:
                res[side] = fn()
            except Exception as e:  # report and keep going: the other sides still run
                if is_oom(e) or isinstance(e, MemoryError):
                    print(f"  {mode:4s} {side:8s}: OOM", flush=True)
                    res[side] = "OOM"
                    if side != "hf":
                        rc = 1  # nmc must fit where it is benchmarked
                else:
                    print(f"  {mode:4s} {side:8s}: FAILED: {e}", flush=True)
                    rc = 1
            finally:  # free what a failed HF run left cached before nmc's next process
                import gc
                gc.collect()
                torch.cuda.empty_cache()
        for side, r in res.items():
            if r == "OOM":
                continue
            r["mfu"] = 6.0 * n * r["tokens_per_s"] / (PEAK_TFLOPS * 1e12)
            print(f"  {mode:4s} {side:8s}: {r['tokens_per_s']:9.0f} tok/s  {r['step_ms']:8.1f} ms/step  "
                  f"MFU {100 * r['mfu']:5.1f}%  peak {r['peak_bytes'] / 2**30:6.2f} GiB  "
                  f"loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}", flush=True)
        row = {"bench": "train", "mode": mode, "model": name + "-random", "params": n,
               "B": B, "T": a.seq, "steps": steps, "gpu": gpu}
        for s, r in res.items():
            key = s.replace("-", "_")
            if r == "OOM":
                row[f"{key}_oom"] = True
            else:
                row.update({f"{key}_{k}": v for k, v in r.items()})
        hf = res.get("hf")
        for side in ("nmc", "nmc-fast"):
            r = res.get(side)
            if not isinstance(r, dict):
                continue
            key = side.replace("-", "_")
            if isinstance(hf, dict):
                row[f"{key}_speed_ratio"] = r["tokens_per_s"] / hf["tokens_per_s"]
                row[f"{key}_mem_ratio"] = r["peak_bytes"] / hf["peak_bytes"]
                print(f"  {mode:4s} ratio {side}/hf: tokens/s x{row[key + '_speed_ratio']:.2f} (>1 = nmc faster), "
                      f"peak memory x{row[key + '_mem_ratio']:.2f} (<1 = nmc smaller)", flush=True)
            else:
                print(f"  {mode:4s} ratio {side}/hf: n/a (hf {'OOM' if hf == 'OOM' else 'failed'})", flush=True)
        if isinstance(res.get("nmc"), dict) and isinstance(res.get("nmc-fast"), dict):
            sp = res["nmc-fast"]["tokens_per_s"] / res["nmc"]["tokens_per_s"]
            row["fast_speedup"] = sp
            print(f"  {mode:4s} nmc-fast/nmc: x{sp:.2f}", flush=True)
        if a.profile:
            nmc_profile(a.binary, mdir, mode, B, a.seq, min(steps, 2))
        rows.append(row)
    return rc


if __name__ == "__main__":
    sys.exit(main())
