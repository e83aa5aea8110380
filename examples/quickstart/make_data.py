#!/usr/bin/env python3
"""make_data.py — the quickstart's synthetic task: add two small numbers, in chat format.

Writes train.jsonl (300 rows) and heldout.jsonl (50 rows) next to this script. Every row is
{"messages": [{"role": "user", "content": "3 + 4 ="}, {"role": "assistant", "content": "7"}]}
with a and b drawn from 0..9 (seed 1234). Held-out rows are fresh draws from the same 100
pairs: the demo measures whether the model learned the addition table (in-distribution),
not whether a 2-layer random-init model generalises arithmetic to unseen pairs.
Deterministic: re-running gives the same files byte for byte.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def row(a, b):
    return {"messages": [{"role": "user", "content": f"{a} + {b} ="},
                         {"role": "assistant", "content": str(a + b)}]}


def main():
    rng = random.Random(1234)
    pairs = [(a, b) for a in range(10) for b in range(10)]
    train = [row(*rng.choice(pairs)) for _ in range(300)]
    heldout = [row(*rng.choice(pairs)) for _ in range(50)]
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        with open(os.path.join(HERE, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
