#!/usr/bin/env python3
"""run.py — tokens/s of nmc's tokenizer vs HF tokenizers, single thread, same corpus, one run.

Builds bench_tokenizer (needs build/libnmc.a: run `make` first), then for each tokenizer of
tests/data/tokenizers/ encodes every line of corpus.jsonl REPS times with both, checks the two
produce the same ids, and prints tokens/s and the ratio nmc / HF. HF is measured two ways
(encode per string, and encode_batch, which saves Python call overhead) and the ratio is taken
against the faster. Usage: python3 bench/tokenizer/run.py [REPS]
"""
import json
import os
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402  (after the thread settings)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "tokenizers")
NAMES = ["gpt2", "llama3", "qwen2", "llama2", "mistral", "metaspace_unk"]


def build():
    exe = os.path.join(ROOT, "build", "bench_tokenizer")
    cuda = ["-L/usr/local/cuda/lib64", "-Wl,-rpath,/usr/local/cuda/lib64", "-lcudart", "-lcublasLt",
            "-lcublas", "-lstdc++"] if os.path.exists("/usr/local/cuda/lib64/libcudart.so") else []
    cmd = ["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-Iruntime", "-o", exe,
           "bench/tokenizer/bench_tokenizer.c", "build/libnmc.a", "-lm", "-lpthread"]
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        subprocess.run(cmd + cuda, cwd=ROOT, check=True)
    return exe


def hf(name, lines, reps):
    tok = Tokenizer.from_file(os.path.join(DATA, name + ".json"))
    for s in lines:  # warm the per-thread cache, as nmc's first pass does
        tok.encode(s, add_special_tokens=False)
    t0 = time.perf_counter()
    n = 0
    for _ in range(reps):
        for s in lines:
            n += len(tok.encode(s, add_special_tokens=False).ids)
    one = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = 0
    for _ in range(reps):
        for k in range(0, len(lines), 256):
            n += sum(len(e.ids) for e in tok.encode_batch(lines[k:k + 256], add_special_tokens=False))
    batch = n / (time.perf_counter() - t0)
    return one, batch, n


def table(exe, corpus, lines, reps, label):
    print("%s: %d strings, %d bytes, x%d; single thread" % (label, len(lines), sum(len(s.encode()) for s in lines), reps))
    print("%-14s %14s %14s %14s %8s" % ("tokenizer", "nmc tok/s", "HF encode", "HF batch", "ratio"))
    ratios = []
    for name in NAMES:
        out = subprocess.run([exe, os.path.join(DATA, name + ".json"), corpus, str(reps + 1)],
                             capture_output=True, text=True, check=True).stdout
        kv = dict(x.split("=") for x in out.split())
        one, batch, n_hf = hf(name, lines, reps)
        nmc = float(kv["tokens_per_s"])
        assert int(kv["tokens"]) * reps == n_hf * (reps + 1), "token counts differ"
        ratio = nmc / max(one, batch)
        ratios.append(ratio)
        print("%-14s %14.0f %14.0f %14.0f %7.2fx" % (name, nmc, one, batch, ratio))
    geo = 1.0
    for r in ratios:
        geo *= r
    print("geometric mean ratio nmc/HF: %.2fx\n" % geo ** (1 / len(ratios)))


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    exe = build()
    corpus = os.path.join(DATA, "corpus.jsonl")
    with open(corpus, encoding="utf-8") as f:
        lines = [json.loads(x) for x in f]
    table(exe, corpus, lines, reps, "corpus lines (short strings: per-call overhead counts)")
    # the same text as ~16 KB documents, as the data pipeline feeds rendered conversations
    docs, cur = [], []
    for s in lines:
        cur.append(s)
        if sum(len(x) for x in cur) > 16000:
            docs.append("\n".join(cur))
            cur = []
    docs.append("\n".join(cur))
    path = os.path.join(ROOT, "build", "bench_tokenizer_docs.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    table(exe, path, docs, reps, "corpus as documents")


if __name__ == "__main__":
    main()
