"""test_peft_interop.py — nmc's saves load in PEFT / transformers and give nmc's logits.

nmc side: tests/oracle/model_driver.c (compiled here against $BUILD/libnmc.a) trains a
few AdamW steps (LoRA with random A and B, bias "all"; or full weights), then writes a
PEFT adapter, a merged fp32 model, or a full fp32 model, plus its eval logits for a
fixed batch (two rows, one of them two packed documents).
Reference side: transformers (fp32, eager attention) loads the base model and
PeftModel.from_pretrained(base, adapter), or the merged / full save directly, and runs
every document as its own sequence. Logits must agree within max abs diff 1e-4.
Skips cleanly when torch, transformers or peft is missing or libnmc.a is not built.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("BUILD", "build")
LIB = os.path.join(ROOT, BUILD, "libnmc.a") if not os.path.isabs(BUILD) else os.path.join(BUILD, "libnmc.a")
MODELS = {
    "llama": os.path.join(ROOT, "tests/data/models/tiny-llama"),
    "qwen3": os.path.join(ROOT, "tests/data/models/tiny-qwen3"),
    "qwen2": os.path.join(ROOT, "tests/data/golden/tiny-qwen2"),
}
TOL = 1e-4


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if not os.path.exists(LIB):
        pytest.skip(f"{LIB} not built (run make first)")
    exe = str(tmp_path_factory.mktemp("drv") / "model_driver")
    src = os.path.join(ROOT, "tests/oracle/model_driver.c")
    base = ["cc", "-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-I" + os.path.join(ROOT, "runtime"),
            "-I" + os.path.join(ROOT, "kernels"), "-I" + os.path.join(ROOT, "generated"),
            "-o", exe, src, LIB, "-lm", "-lpthread"]
    cuda = ["-L/usr/local/cuda/lib64", "-Wl,-rpath,/usr/local/cuda/lib64", "-lcudart",
            "-lcublasLt", "-lcublas", "-lstdc++"]
    san = ["-fsanitize=address,undefined"]
    errs = []
    for extra in ([], cuda, san, san + cuda):  # plain, CUDA-enabled and sanitizer builds
        r = subprocess.run(base + extra, capture_output=True, text=True)
        if r.returncode == 0:
            return exe
        errs.append(r.stderr[-2000:])
    pytest.fail("cannot build model_driver:\n" + errs[0])


def run_driver(driver, model, out, mode):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    r = subprocess.run([driver, MODELS[model], str(out), mode], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    meta = np.fromfile(out / "batch.i32", dtype=np.int32).reshape(3, -1)
    logits = np.fromfile(out / "logits.f32", dtype=np.float32)
    return meta, logits.reshape(meta.shape[1], -1)


def ref_logits(model, meta):
    """Logits of every token, each packed document run as its own sequence."""
    ids, pos, doc = meta
    out = np.zeros((ids.shape[0], model.config.vocab_size), np.float32)
    T = 12
    i = 0
    with torch.no_grad():
        while i < ids.shape[0]:
            row_start = (i // T) * T
            j = i + 1
            while j < ids.shape[0] and j % T != 0 and doc[j] == doc[i]:
                j += 1
            x = torch.tensor(ids[i:j], dtype=torch.long)[None]
            p = torch.tensor(pos[i:j], dtype=torch.long)[None]
            assert doc[i] == i - row_start and pos[i] == 0
            out[i:j] = model(input_ids=x, position_ids=p, use_cache=False).logits[0].float().numpy()
            i = j
    return out


def load_hf(path):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def check(got, ref, what):
    diff = np.abs(got - ref).max()
    assert diff <= TOL, f"{what}: max abs logit diff {diff:.3g} > {TOL}"
    assert np.abs(ref).max() > 0.1  # not a vacuous comparison


@pytest.mark.parametrize("model,mode", [("llama", "lora"), ("qwen3", "lora"), ("qwen2", "lora"),
                                        ("llama", "lora_mts")])
def test_adapter_and_merged(driver, tmp_path, model, mode):
    from peft import PeftModel
    meta, logits = run_driver(driver, model, tmp_path, mode)
    base = load_hf(MODELS[model])
    before = ref_logits(base, meta)
    assert np.abs(before - logits).max() > 1e-3, "adapter has no effect: the test would be vacuous"
    pm = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    check(logits, ref_logits(pm, meta), f"{model} PEFT adapter")
    merged = load_hf(str(tmp_path / "merged"))
    check(logits, ref_logits(merged, meta), f"{model} merged save")


@pytest.mark.parametrize("model", ["llama", "qwen3"])
def test_full_save(driver, tmp_path, model):
    meta, logits = run_driver(driver, model, tmp_path, "full")
    before = ref_logits(load_hf(MODELS[model]), meta)
    assert np.abs(before - logits).max() > 1e-3, "training changed nothing: vacuous test"
    check(logits, ref_logits(load_hf(str(tmp_path / "full")), meta), f"{model} full save")
