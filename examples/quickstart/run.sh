#!/bin/sh
# run.sh — nmc quickstart: LoRA-fine-tune the bundled tiny model to answer "a + b =" in a chat
# turn, on the CPU, and print held-out accuracy before and after. Under 3 minutes on 2 cores,
# the build included.
#
#   1. builds nmc (make -j2)
#   2. imports into a fresh store, build/quickstart/home (it never touches your $NMC_HOME):
#      - the model base/: a 673k-parameter Llama (4 layers, hidden 128, bf16) with its own
#        byte-level BPE tokenizer and a ChatML chat template, pre-trained by nmc itself
#        (make_base.sh) on number text — "7 plus 12 is 19.", "19 minus 12 is 7.",
#        "7 + 12 = 19", counting, comparisons — but never a chat
#      - the task (make_data.py): chat rows, user "7 + 12 =", assistant "19", operands 0..19;
#        train.jsonl 240 pairs, heldout.jsonl the other 160 pairs (never seen in fine-tuning)
#   3. held-out accuracy before (`nmc train job.json --eval-only`): the base cannot answer in
#      a chat turn (0% exact match)
#   4. `nmc train job.json`: LoRA rank 16 on every projection, 40 epochs (1 200 steps)
#   5. held-out accuracy after (about 95% exact match), the adapter listed under its base by
#      `nmc models show`, and — when torch, transformers and peft are installed — PEFT loading
#      the adapter and answering the held-out questions by greedy generation
# Accuracy: greedy next-token accuracy on the answer tokens (the digits, <|im_end|>, newline)
# and exact match (every answer token of a row right). See docs/training.md ("Quickstart").
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
echo "== building nmc"
make -s -j2 nmc
NMC_HOME="$ROOT/build/quickstart/home"
export NMC_HOME
rm -rf "$NMC_HOME"
mkdir -p "$NMC_HOME"
OUT="$ROOT/build/quickstart"
./nmc models import "$HERE/base" --name quickstart-base --copy | sed -n '1p;4,5p'
./nmc filesets import "$HERE/train.jsonl" --name quickstart-add-train --copy | sed -n 1p
./nmc filesets import "$HERE/heldout.jsonl" --name quickstart-add-heldout --copy | sed -n 1p

echo "== held-out accuracy BEFORE fine-tuning (160 questions never used in training)"
./nmc train "$HERE/job.json" --eval-only --quiet | tee "$OUT/before.txt"

echo "== LoRA fine-tuning (rank 16, 40 epochs of 240 rows; progress on stderr)"
QUIET=--quiet
[ -t 2 ] && QUIET=
./nmc train "$HERE/job.json" $QUIET | tee "$OUT/after.txt"

em() { sed -n 's/^eval (validation set): .*exact match \([0-9.]*%\).*/\1/p' "$1" | tail -1; }
echo
echo "held-out exact match: $(em "$OUT/before.txt") -> $(em "$OUT/after.txt")   (base model -> base + LoRA adapter)"
echo
echo "== the adapter, stored under its base model (nmc models show quickstart-base):"
./nmc models show quickstart-base | sed -n '1p;/^  adapters:/,$p'
ADAPTER="$NMC_HOME/models/default/quickstart-base/adapters/quickstart-add-lora"
if python3 -c "import torch, transformers, peft" 2>/dev/null; then
  python3 "$HERE/peft_check.py" "$NMC_HOME/models/default/quickstart-base/files" "$ADAPTER" \
    "$HERE/heldout.jsonl"
else
  echo "(PEFT check skipped: torch, transformers and peft are not installed; see deps/pip.txt)"
fi
echo "The store stays in $NMC_HOME: NMC_HOME=$NMC_HOME ./nmc models show quickstart-base"
