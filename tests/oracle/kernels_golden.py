#!/usr/bin/env python3
"""kernels_golden.py — PyTorch/transformers golden data for the CPU kernel tests.

Writes tests/data/kernels/<name>.bin (raw little-endian float32 or int32/uint16 arrays)
and tests/data/kernels/manifest.txt (one line per array: "<name> <f32|i32|u16> <dims...>"),
which tests/test_kernels.c reads. Deterministic (fixed seeds, CPU, float32). Cases:
  rmsnorm   transformers LlamaRMSNorm forward + autograd backward
  rope      inv_freq for default / linear / llama3 (transformers LlamaRotaryEmbedding) and
            apply_rotary_pos_emb forward + autograd backward at large positions
  attn      causal GQA attention (H=4, KVH=2) with packed documents, out/lse + grads
  ce        lm_head + cross_entropy(ignore_index=-100, label_smoothing=0.1) + grads
  adamw     torch.optim.AdamW and torch.optim.Adam(weight_decay) 3 steps (foreach=False)
  bf16      float32 -> bfloat16 bit patterns of edge cases (NaN, inf, ties, overflow)
Usage: python3 tests/oracle/kernels_golden.py [outdir]   (default tests/data/kernels)
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "kernels")
manifest = []


def save(name, t, kind="f32"):
    dtype = {"f32": "<f4", "i32": "<i4", "u16": "<u2"}[kind]
    a = np.ascontiguousarray(t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)).astype(dtype)
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(a.tobytes())
    dims = " ".join(str(d) for d in a.shape) or "1"
    manifest.append(f"{name} {kind} {dims}")


def f32(x):  # a python float that is exactly a float32 (C receives floats)
    return float(np.float32(x))


def rmsnorm():
    g = torch.Generator().manual_seed(1)
    N, D, eps = 6, 40, f32(1e-5)
    x = torch.randn(N, D, generator=g) * 2.0
    x[2] *= 1e-3  # a small-norm row: eps matters
    norm = LlamaRMSNorm(D, eps=eps)
    with torch.no_grad():
        norm.weight.copy_(1.0 + 0.5 * torch.randn(D, generator=g))
    dy = torch.randn(N, D, generator=g)
    xr = x.clone().requires_grad_(True)
    y = norm(xr)
    y.backward(dy)
    rstd = torch.rsqrt(x.pow(2).mean(-1) + eps)
    save("rms_eps", torch.tensor([eps]))
    save("rms_x", x); save("rms_w", norm.weight); save("rms_dy", dy)
    save("rms_y", y); save("rms_rstd", rstd); save("rms_dx", xr.grad); save("rms_dw", norm.weight.grad)


def rope():
    hd, nh = 64, 3
    base = dict(hidden_size=hd * 4, num_attention_heads=4, head_dim=hd, max_position_embeddings=16384)
    cfgs = {
        "default": LlamaConfig(**base, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "linear": LlamaConfig(**base, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}),
        "llama3": LlamaConfig(**base, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    }
    for name, cfg in cfgs.items():
        rot = LlamaRotaryEmbedding(cfg)
        assert rot.attention_scaling == 1.0
        save(f"rope_inv_{name}", rot.inv_freq.float())
    # forward/backward with the llama3 frequencies and LlamaRotaryEmbedding's own cos/sin
    rot = LlamaRotaryEmbedding(cfgs["llama3"])
    g = torch.Generator().manual_seed(2)
    pos = torch.tensor([0, 1, 2, 7, 100, 4095, 8191, 16000], dtype=torch.int32)
    N = pos.numel()
    x = torch.randn(N, nh, hd, generator=g)
    dy = torch.randn(N, nh, hd, generator=g)
    cos, sin = rot(x, pos[None].long())  # [1, N, hd]
    xr = x.clone().requires_grad_(True)
    q = xr.transpose(0, 1)[None]  # [1, nh, N, hd]
    y, _ = apply_rotary_pos_emb(q, q, cos, sin)
    y = y[0].transpose(0, 1)
    y.backward(dy)
    save("rope_pos", pos, "i32"); save("rope_x", x.reshape(N, nh * hd)); save("rope_dy", dy.reshape(N, nh * hd))
    save("rope_y", y.reshape(N, nh * hd)); save("rope_dx", xr.grad.reshape(N, nh * hd))


def attention():
    g = torch.Generator().manual_seed(3)
    B, T, H, KVH, hd = 2, 9, 4, 2, 8
    scale = f32(1.0 / np.sqrt(hd))
    doc_start = torch.tensor([[0, 0, 0, 0, 4, 4, 4, 7, 7], [0] * 9], dtype=torch.int32)
    q = torch.randn(B, T, H, hd, generator=g)
    k = torch.randn(B, T, KVH, hd, generator=g)
    v = torch.randn(B, T, KVH, hd, generator=g)
    dout = torch.randn(B, T, H, hd, generator=g)
    i = torch.arange(T)
    allowed = (i[None, :, None] >= i[None, None, :]) & (i[None, None, :] >= doc_start[:, :, None])  # [B,Tq,Tk]
    qr, kr, vr = (t.clone().requires_grad_(True) for t in (q, k, v))
    qh = qr.transpose(1, 2)                                      # [B,H,T,hd]
    kh = kr.transpose(1, 2).repeat_interleave(H // KVH, dim=1)   # query head h -> kv head h // 2
    vh = vr.transpose(1, 2).repeat_interleave(H // KVH, dim=1)
    s = (qh @ kh.transpose(-1, -2)) * scale
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    lse = torch.logsumexp(s, dim=-1)                             # [B,H,T]
    out = (torch.softmax(s, dim=-1) @ vh).transpose(1, 2)        # [B,T,H,hd]
    out.backward(dout)
    save("attn_scale", torch.tensor([scale]))
    save("attn_doc_start", doc_start.reshape(B * T), "i32")
    save("attn_q", q.reshape(B * T, H * hd)); save("attn_k", k.reshape(B * T, KVH * hd))
    save("attn_v", v.reshape(B * T, KVH * hd)); save("attn_dout", dout.reshape(B * T, H * hd))
    save("attn_out", out.reshape(B * T, H * hd)); save("attn_lse", lse)
    save("attn_dq", qr.grad.reshape(B * T, H * hd)); save("attn_dk", kr.grad.reshape(B * T, KVH * hd))
    save("attn_dv", vr.grad.reshape(B * T, KVH * hd))


def ce():
    g = torch.Generator().manual_seed(4)
    N, D, V, ls = 7, 16, 50, f32(0.1)
    x = torch.randn(N, D, generator=g)
    W = torch.randn(V, D, generator=g) * 0.5
    labels = torch.tensor([3, -100, 49, 0, 17, -100, 3], dtype=torch.int64)
    count = int((labels != -100).sum())
    xr, Wr = x.clone().requires_grad_(True), W.clone().requires_grad_(True)
    loss_sum = F.cross_entropy(xr @ Wr.T, labels, ignore_index=-100, label_smoothing=ls, reduction="sum")
    loss_mean = F.cross_entropy(x @ W.T, labels, ignore_index=-100, label_smoothing=ls)
    gs = f32(1.0 / count)
    (loss_sum * gs).backward()
    save("ce_smoothing", torch.tensor([ls])); save("ce_grad_scale", torch.tensor([gs]))
    save("ce_x", x); save("ce_W", W); save("ce_labels", labels.int(), "i32")
    save("ce_loss_sum", loss_sum.reshape(1)); save("ce_loss_mean", loss_mean.reshape(1))
    save("ce_dx", xr.grad); save("ce_dW", Wr.grad)


def adam(tag, cls, **kw):
    g = torch.Generator().manual_seed(5)
    n = 37
    p0 = torch.randn(n, generator=g)
    grads = [torch.randn(n, generator=g) * s for s in (1.0, 0.01, 3.0)]
    p = p0.clone().requires_grad_(True)
    opt = cls([p], foreach=False, fused=False, **kw)
    for gr in grads:
        p.grad = gr.clone()
        opt.step()
    st = opt.state[p]
    save(f"{tag}_p0", p0)
    for s, gr in enumerate(grads):
        save(f"{tag}_g{s + 1}", gr)
    save(f"{tag}_p", p); save(f"{tag}_m", st["exp_avg"]); save(f"{tag}_v", st["exp_avg_sq"])


def adamw():
    hp = dict(lr=f32(1e-2), betas=(f32(0.9), f32(0.95)), eps=f32(1e-8), weight_decay=f32(0.1))
    save("adam_hparams", torch.tensor([hp["lr"], hp["betas"][0], hp["betas"][1], hp["eps"], hp["weight_decay"]]))
    adam("adamw", torch.optim.AdamW, **hp)
    adam("adaml2", torch.optim.Adam, **hp)


def bf16():
    bits = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000,  # zeros, infinities
            0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFF812345,  # NaNs (quiet, signalling, negative)
            0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF,  # ties to even (down, up), just above/below
            0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0xFF7FFFFF,  # largest finite: overflow to inf or not
            0x00000001, 0x00008000, 0x00018000, 0x807FFFFF,  # subnormals (tie cases included)
            0x3F800000, 0x40490FDB, 0xC2F6E979]                # 1, pi, -123.456
    g = np.random.default_rng(6)
    bits += [int(b) for b in g.integers(0, 2**32, size=40, dtype=np.uint64)]
    x = torch.from_numpy(np.array(bits, dtype=np.uint32).view(np.float32).copy())
    y = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    save("bf16_in", np.array(bits, dtype=np.uint32).view(np.float32), "f32")
    save("bf16_out", y, "u16")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rmsnorm(); rope(); attention(); ce(); adamw(); bf16()
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("# generated by tests/oracle/kernels_golden.py with torch %s, transformers %s; DO NOT EDIT\n"
                % (torch.__version__.split("+")[0], __import__("transformers").__version__))
        f.write("# <name> <f32|i32|u16> <dims...>: <name>.bin is the raw little-endian array\n")
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
