#!/usr/bin/env python3
"""make_data.py — the quickstart's synthetic data: number text to pre-train the bundled base
model on, and the chat task that LoRA then teaches it.

  python3 make_data.py                 writes train.jsonl and heldout.jsonl next to this script
  python3 make_data.py --corpus DIR    also writes DIR/corpus.jsonl and DIR/probe.jsonl (the
                                       base model's pre-training data, used by make_base.sh)

The task (LoRA, chat format):
  {"messages": [{"role": "user", "content": "23 + 45 ="}, {"role": "assistant", "content": "68"}]}
with a, b in 0..99. train.jsonl has 400 rows, heldout.jsonl 100 rows whose (a, b) pairs never
occur in train.jsonl. The symbols "+" and "=" and the chat markup never occur in the
pre-training corpus, so before fine-tuning the base cannot answer in this format; after, it can,
also for the held-out pairs: LoRA taught the format, the arithmetic comes from the base.

The corpus (pre-training, text rows): sentences about numbers in words — "23 plus 45 is 68.",
"the sum of 23 and 45 is 68.", "68 minus 45 is 23.", "adding 45 to 23 gives 68.", counting runs
"17, 18, 19, 20.", comparisons "23 is less than 45." — a few per row. It is broad number text,
not the task: it never uses the task's symbols or chat format. It does include sums of the
held-out pairs (a base model's pre-training is not kept disjoint from a downstream task), and
probe.jsonl measures how well the base learned them (prompt "23 plus 45 is", completion " 68.").

Deterministic (seeded random.Random): re-running gives the same files byte for byte.
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
N = 20               # operands 0..N-1
TRAIN_ROWS = 240
HELDOUT_ROWS = 160
CORPUS_ROWS = 120000
PROBE_ROWS = 200


def chat(a, b):
    return {"messages": [{"role": "user", "content": f"{a} + {b} ="},
                         {"role": "assistant", "content": str(a + b)}]}


def task_rows(rng):
    pairs = [(a, b) for a in range(N) for b in range(N)]
    rng.shuffle(pairs)
    train = [chat(a, b) for a, b in pairs[:TRAIN_ROWS]]
    heldout = [chat(a, b) for a, b in pairs[TRAIN_ROWS:TRAIN_ROWS + HELDOUT_ROWS]]
    return train, heldout


def sentence(rng):
    a, b = rng.randrange(N), rng.randrange(N)
    k = rng.randrange(10)
    if k < 4:
        return f"{a} plus {b} is {a + b}."
    if k < 6:
        return f"the sum of {a} and {b} is {a + b}."
    if k < 7:
        return f"adding {b} to {a} gives {a + b}."
    if k < 9:
        return f"{a + b} minus {b} is {a}."
    if rng.randrange(2):
        n = rng.randrange(2 * N - 4)
        return ", ".join(str(n + i) for i in range(4)) + "."
    if a == b:
        return f"{a} is equal to {b}."
    return f"{a} is {'less' if a < b else 'more'} than {b}."


def equation(rng):
    a, b = rng.randrange(N), rng.randrange(N)
    if rng.randrange(3):
        return f"{a} + {b} = {a + b}"
    return f"{a + b} - {b} = {a}"


def corpus_rows(rng):
    for _ in range(CORPUS_ROWS):
        if rng.randrange(10) < 7:
            yield {"text": sentence(rng)}
        else:
            yield {"text": "\n".join(equation(rng) for _ in range(rng.randint(1, 4)))}


def probe_rows(rng):
    for _ in range(PROBE_ROWS):
        a, b = rng.randrange(N), rng.randrange(N)
        yield {"prompt": f"{a} plus {b} is", "completion": f" {a + b}."}


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv):
    if len(argv) not in (0, 2) or (argv and argv[0] != "--corpus"):
        sys.exit("usage: make_data.py [--corpus DIR]")
    train, heldout = task_rows(random.Random(1234))
    write_jsonl(os.path.join(HERE, "train.jsonl"), train)
    write_jsonl(os.path.join(HERE, "heldout.jsonl"), heldout)
    if argv:
        os.makedirs(argv[1], exist_ok=True)
        write_jsonl(os.path.join(argv[1], "corpus.jsonl"), corpus_rows(random.Random(5678)))
        write_jsonl(os.path.join(argv[1], "probe.jsonl"), probe_rows(random.Random(91011)))


if __name__ == "__main__":
    main(sys.argv[1:])
