#!/usr/bin/env python3
"""bench_vs_torch.py — nmc CUDA kernels vs PyTorch on the same GPU, in the same run.

Runs bench_gpu (the C driver; path in argv[1]) for our timings (JSON lines), times the
same shapes with PyTorch, and prints a comparison table with ratios (ours / torch: < 1
means we are faster). Peer definitions:
  attention  torch.nn.functional.scaled_dot_product_attention(is_causal=True), flash
             backend forced (enable_gqa; falls back to repeated K/V heads as HF does),
             tensors in our [B, T, H, hd] memory layout viewed as [B, H, T, hd]
  lmhead_ce  logits = x @ W.T (bf16), F.cross_entropy(logits.float(), labels), backward
             into x and W (what HF Llama does); temp memory = peak allocated minus
             inputs and gradient outputs (ours: the logits scratch)
  matmul     torch.matmul in bf16 (cuBLAS), same three products
  attention_fa2  our FlashAttention-2 kernels on the attention shapes: printed right after
             the attention rows of the same shape, against the same torch timing
A bench_gpu that fails part way still has its finished lines compared (exit status 1).
Usage: bench_vs_torch.py BENCH_GPU_BINARY [--json OUT.jsonl]
"""
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def timed(fn, iters=10):
    for _ in range(3):  # the first backward call loads kernels: keep it out of the timing
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / iters


def sdpa_callable(q, k, v):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    def gqa():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    def rep():
        r = q.shape[1] // k.shape[1]
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k.repeat_interleave(r, 1),
                                                  v.repeat_interleave(r, 1), is_causal=True)
    try:
        gqa()
        return gqa, "flash+gqa"
    except RuntimeError:
        return rep, "flash+repeat_kv"


def torch_attention(r):
    B, T, H, KVH, hd = r["B"], r["T"], r["H"], r["KVH"], r["hd"]
    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(B, T, H, hd, device=dev, dtype=dt).transpose(1, 2).requires_grad_()
    k = torch.randn(B, T, KVH, hd, device=dev, dtype=dt).transpose(1, 2).requires_grad_()
    v = torch.randn(B, T, KVH, hd, device=dev, dtype=dt).transpose(1, 2).requires_grad_()
    do = torch.randn(B, H, T, hd, device=dev, dtype=dt)
    fwd, how = sdpa_callable(q, k, v)
    def fb():
        out = fwd()
        out.backward(do)
    with torch.no_grad():
        f_ms = timed(fwd)
    fb_ms = timed(fb)
    return {"fwd_ms": f_ms, "fwdbwd_ms": fb_ms, "variant": how}


def torch_lmhead(r):
    N, D, V = r["N"], r["D"], r["V"]
    dev, dt = "cuda", torch.bfloat16
    x = (torch.rand(N, D, device=dev, dtype=dt) * 2 - 1).requires_grad_()
    W = ((torch.rand(V, D, device=dev, dtype=dt) * 2 - 1) * 0.05).requires_grad_()
    labels = torch.randint(0, V, (N,), device=dev)
    def fb():
        x.grad = None
        W.grad = None
        logits = x @ W.t()
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
    fb()  # warm-up (cuBLAS workspaces, allocator)
    torch.cuda.synchronize()
    x.grad = None
    W.grad = None
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()  # inputs only
    fb()
    torch.cuda.synchronize()
    # temporaries only: minus the gradient outputs x.grad and W.grad (bf16)
    peak = torch.cuda.max_memory_allocated() - base - (N * D + V * D) * 2
    ms = timed(fb, 5)
    return {"fwdbwd_ms": ms, "peak_extra_bytes": peak}


def torch_matmul(r):
    N, out, inn = r["N"], r["out"], r["in"]
    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(N, inn, device=dev, dtype=dt)
    W = torch.randn(out, inn, device=dev, dtype=dt) * 0.05
    dy = torch.randn(N, out, device=dev, dtype=dt)
    res = {}
    res["fwd_ms"] = timed(lambda: x @ W.t(), 20)
    res["dx_ms"] = timed(lambda: dy @ W, 20)
    res["dw_ms"] = timed(lambda: dy.t() @ x, 20)
    return res


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    out_json = None
    if "--json" in sys.argv:
        out_json = sys.argv[sys.argv.index("--json") + 1]
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
    proc = subprocess.run([sys.argv[1]], capture_output=True, text=True)
    fails = 0
    if proc.returncode != 0:  # keep what it finished: a late failure must not hide the rest
        print(proc.stdout)
        print(proc.stderr, file=sys.stderr)
        print(f"bench_gpu failed with status {proc.returncode}; comparing the lines it printed")
        fails += 1
    ours = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            try:
                ours.append(json.loads(line))
            except ValueError:
                print(f"unreadable bench_gpu line: {line}")
                fails += 1
    shape_key = lambda r: (r["B"], r["T"], r["H"], r["KVH"], r["hd"])
    fa2 = {}
    for r in ours:
        if r["bench"] == "attention_fa2" and "error" in r:
            print(f"attention_fa2 FAILED at B{r.get('B')} hd{r.get('hd')}: {r['error']}")
            fails += 1
        elif r["bench"] == "attention_fa2":
            fa2[shape_key(r)] = r
    torch_attn = {}
    rows = []
    for r in ours:
        try:
            if r["bench"] in ("attention", "attention_fa2") and "error" not in r:
                key = shape_key(r)
                if r["bench"] == "attention_fa2" and key in torch_attn:
                    continue  # already printed beside the attention rows of its shape
                t = torch_attention(r)
                torch_attn[key] = t
                names = [("attn", r)] if r["bench"] == "attention" else []
                if key in fa2:
                    names.append(("attn_fa2", fa2[key]))
                for name, rr in names:
                    tag = f"{name} B{r['B']} T{r['T']} H{r['H']}/{r['KVH']} hd{r['hd']}"
                    rows.append((tag + " fwd", rr["fwd_ms"], t["fwd_ms"], t["variant"]))
                    rows.append((tag + " fwd+bwd", rr["fwdbwd_ms"], t["fwdbwd_ms"], t["variant"]))
            elif r["bench"] == "lmhead_ce":
                t = torch_lmhead(r)
                tag = f"lmhead+CE N{r['N']} D{r['D']} V{r['V']}"
                mem = (f"temp MiB ours {r['temp_bytes'] / 2**20:.0f} "
                       f"torch {t['peak_extra_bytes'] / 2**20:.0f}")
                rows.append((tag + " fwd+bwd", r["fwdbwd_ms"], t["fwdbwd_ms"], mem))
            elif r["bench"] == "matmul":
                t = torch_matmul(r)
                f = 2.0 * r["N"] * r["out"] * r["in"]
                for part in ("fwd", "dx", "dw"):
                    tag = f"matmul {r['layer']} {part} N{r['N']} {r['out']}x{r['in']}"
                    ms_o, ms_t = r[part + "_ms"], t[part + "_ms"]
                    rows.append((tag, ms_o, ms_t,
                                 f"TFLOP/s ours {f / ms_o / 1e9:.0f} torch {f / ms_t / 1e9:.0f}"))
        except Exception as e:  # keep going: one failed peer must not hide the rest
            fails += 1
            print(f"torch side failed for {r}: {e}", flush=True)
        torch.cuda.empty_cache()
    print()
    print(f"{'benchmark':<48} {'ours ms':>9} {'torch ms':>9} {'ratio':>6}  note")
    for tag, a, b, note in rows:
        print(f"{tag:<48} {a:9.3f} {b:9.3f} {a / b:6.2f}  {note}")
    print("(ratio = ours / torch; < 1 means nmc is faster)")
    if out_json:
        with open(out_json, "w") as fh:
            for tag, a, b, note in rows:
                fh.write(json.dumps({"bench": tag, "ours_ms": a, "torch_ms": b,
                                     "ratio": a / b, "note": note}) + "\n")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
