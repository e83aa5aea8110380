#!/usr/bin/env python3
"""train_golden.py — golden data for tests/test_train.c, made with PyTorch / transformers / PEFT.

Writes tests/data/train/:
  golden.json          the micro-batches (token ids, shifted labels) and, per training
                       config, its settings and the per-step loss, learning rate applied
                       ("lrs") and pre-clip grad norm
  lora_init.safetensors  the PEFT-initialised LoRA A/B of config "lora" (the C test loads
                       them, since nmc's own LoRA init RNG is not torch's)
  schedules.json       learning rates of transformers' get_scheduler for every type at
                       several (warmup, total, num_cycles), and of NeMo/Megatron's
                       OptimizerParamScheduler decay styles (the formula of
                       megatron/core/optimizer_param_scheduler.py get_lr, init_lr 0)

The training loop mirrors what nmc promises (docs/training.md): micro-batches of one
optimizer step are fetched first; each micro-batch's loss is sum(CE) / (label tokens of
the whole step); grads accumulate; clip_grad_norm_; optimizer.step(); scheduler.step().
Epoch e visits micro-batch (i + 2e) mod 5 at position i; the last step of an epoch takes
the remaining micro-batch (5 micro-batches, accumulation 2: 3 steps per epoch).
Weight decay goes to every parameter except biases and norm weights (HF Trainer rule).

Usage: python3 tests/oracle/train_golden.py [OUT_DIR]   (default tests/data/train)
Deterministic (fixed seeds, fp32, single-tensor optimizers).
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaForCausalLM, get_scheduler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "data", "models", "tiny-llama")
B, T, NB, V = 2, 16, 5, 2048


def make_batches():
    g = torch.Generator().manual_seed(20240601)
    batches = []
    for bi in range(NB):
        ids = torch.randint(3, V, (B, T), generator=g)
        labels = torch.full((B, T), -100, dtype=torch.long)
        lens = [T, T]
        if bi == 3:
            lens[1] = T - 5  # a padded row
        for r in range(B):
            n = lens[r]
            ids[r, n:] = 0
            labels[r, : n - 1] = ids[r, 1:n]
            labels[r, : 3 + bi % 2] = -100  # prompt tokens carry no loss
        batches.append((ids, labels, lens))
    return batches


def order(epoch, i):
    return (i + 2 * epoch) % NB


def steps_plan(total, accum):
    """[(epoch, [micro-batch indices])] for `total` steps."""
    plan, epoch, pos = [], 0, 0
    while len(plan) < total:
        if pos >= NB:
            epoch, pos = epoch + 1, 0
        k = min(accum, NB - pos)
        plan.append((epoch, [order(epoch, pos + j) for j in range(k)]))
        pos += k
    return plan


def load_model():
    torch.manual_seed(0)
    m = LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
    m.config.use_cache = False
    m.train()
    return m


def is_decay(name):
    return not ("bias" in name or "norm" in name)


def run(cfg, batches, model, params):
    named = [(n, p) for n, p in params]
    groups = [
        {"params": [p for n, p in named if is_decay(n)], "weight_decay": cfg["wd"]},
        {"params": [p for n, p in named if not is_decay(n)], "weight_decay": 0.0},
    ]
    if cfg["optim"] == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    elif cfg["optim"] == "adam_l2":
        opt = torch.optim.Adam(groups, lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    else:
        opt = torch.optim.SGD(groups, lr=cfg["lr"], foreach=False)
    sched = get_scheduler(cfg["sched"], opt, num_warmup_steps=cfg["warmup"],
                          num_training_steps=cfg["steps"])
    out = {"loss": [], "lrs": [], "grad_norm": []}
    for _, mbs in steps_plan(cfg["steps"], cfg["accum"]):
        tokens = sum(int((batches[i][1] != -100).sum()) for i in mbs)
        opt.zero_grad(set_to_none=False)
        loss_sum = 0.0
        for i in mbs:
            ids, labels, _ = batches[i]
            pos = torch.arange(T).unsqueeze(0).expand(B, T)
            logits = model(input_ids=ids, position_ids=pos).logits
            ce = torch.nn.functional.cross_entropy(
                logits.reshape(-1, V).float(), labels.reshape(-1), ignore_index=-100,
                reduction="sum", label_smoothing=cfg.get("ls", 0.0))
            (ce / tokens).backward()
            loss_sum += float(ce.detach())
        gn = torch.nn.utils.clip_grad_norm_([p for _, p in named], cfg["clip"] if cfg["clip"] > 0 else float("inf"))
        out["lrs"].append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        out["loss"].append(loss_sum / tokens)
        out["grad_norm"].append(float(gn))
    return out


def full_config(name, **kw):
    cfg = {"name": name, "mode": "full", "optim": "adamw", "lr": 1e-3, "wd": 0.01, "warmup": 2,
           "sched": "cosine", "steps": 10, "accum": 2, "clip": 1.0}
    cfg.update(kw)
    return cfg


def lora_run(batches, out_dir):
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    model = load_model()
    torch.manual_seed(7)
    lc = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    pm = get_peft_model(model, lc)
    # PEFT's default init leaves B = 0; give B small values so step 1 moves A as well
    with torch.no_grad():
        g = torch.Generator().manual_seed(11)
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    sd = {("base_model.model." + k[len("base_model.model."):]): v.detach().clone().contiguous()
          for k, v in get_peft_model_state_dict(pm).items()}
    save_file(sd, os.path.join(out_dir, "lora_init.safetensors"))
    cfg = {"name": "lora", "mode": "lora", "r": 4, "alpha": 8, "optim": "adamw", "lr": 5e-3, "wd": 0.01,
           "warmup": 1, "sched": "linear", "steps": 5, "accum": 2, "clip": 1.0}
    params = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    res = run(cfg, batches, pm, params)
    cfg.update(res)
    return cfg


def schedules():
    cases = []
    p = torch.nn.Parameter(torch.zeros(1))
    for kind in ["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"]:
        for warmup, total, cycles in [(0, 10, None), (3, 10, None), (2, 7, 3.0), (5, 5, None), (4, 23, 1.5)]:
            if cycles is not None and kind not in ("cosine", "cosine_with_restarts"):
                continue
            opt = torch.optim.SGD([p], lr=3e-4)
            kw = {"num_cycles": cycles} if cycles is not None else None
            s = get_scheduler(kind, opt, num_warmup_steps=warmup, num_training_steps=total,
                              scheduler_specific_kwargs=kw)
            lrs = []
            for _ in range(total + 2):
                lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                s.step()
            cases.append({"kind": kind, "base_lr": 3e-4, "warmup": warmup, "total": total,
                          "num_cycles": cycles if cycles is not None else
                          (1.0 if kind == "cosine_with_restarts" else 0.5), "lr": lrs})
    # NeMo / Megatron OptimizerParamScheduler.get_lr (init_lr 0), transcribed
    for style in ["cosine", "linear", "constant"]:
        for warmup, total, min_lr in [(0, 10, 0.0), (3, 10, 1e-5), (2, 6, 0.0)]:
            max_lr, lrs = 2e-4, []
            for n in range(total + 2):
                if warmup > 0 and n <= warmup:
                    lr = 0.0 + (max_lr - 0.0) * float(n) / float(warmup)
                elif style == "constant":
                    lr = max_lr
                elif n > total:
                    lr = min_lr
                else:
                    r = float(n - warmup) / float(total - warmup)
                    coeff = 1.0 - r if style == "linear" else 0.5 * (math.cos(math.pi * r) + 1.0)
                    lr = min_lr + coeff * (max_lr - min_lr)
                lrs.append(lr)
            cases.append({"kind": "nemo-" + style, "base_lr": max_lr, "min_lr": min_lr, "warmup": warmup,
                          "total": total, "num_cycles": 0.5, "lr": lrs})
    return cases


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "data", "train")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    batches = make_batches()
    configs = []
    for cfg in [full_config("full_adamw_cosine"),
                full_config("full_clip", clip=0.05, steps=4, sched="constant", warmup=0),
                full_config("full_adam_l2", optim="adam_l2", steps=4, sched="linear", warmup=1),
                full_config("full_sgd", optim="sgd", lr=0.05, steps=4, sched="constant_with_warmup", warmup=1),
                full_config("full_label_smoothing", ls=0.1, steps=3, sched="constant", warmup=0)]:
        model = load_model()
        res = run(cfg, batches, model, list(model.named_parameters()))
        cfg.update(res)
        configs.append(cfg)
    configs.append(lora_run(batches, out_dir))
    doc = {
        "generator": "tests/oracle/train_golden.py",
        "B": B, "T": T,
        "batches": [{"input_ids": b[0].reshape(-1).tolist(), "labels": b[1].reshape(-1).tolist(),
                     "lens": b[2]} for b in batches],
        "configs": configs,
    }
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "schedules.json"), "w") as f:
        json.dump({"generator": "tests/oracle/train_golden.py", "cases": schedules()}, f, indent=1)
        f.write("\n")
    for c in configs:
        print(c["name"], ["%.5f" % x for x in c["loss"]], ["%.3f" % x for x in c["grad_norm"]])


if __name__ == "__main__":
    main()
