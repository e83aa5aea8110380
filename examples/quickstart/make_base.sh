#!/bin/sh
# make_base.sh — rebuild the quickstart's bundled base model, examples/quickstart/base/, with nmc.
#
#   1. make_data.py --corpus: the pre-training corpus (120 000 short rows of number text:
#      "7 plus 12 is 19.", "19 minus 12 is 7.", "7 + 12 = 19", counting, comparisons) and a
#      probe set ("7 plus 12 is" -> " 19.")
#   2. make_base.py: a byte-level BPE tokenizer trained on the corpus (Qwen2 pre-tokenizer,
#      digits one by one, 306 ids + ChatML special tokens) and a random-init bf16 Llama
#      (4 layers, hidden 128, 673k parameters)
#   3. `nmc train base_job.json`: full fine-tuning (pre-training, in effect) of that model on
#      the corpus for one epoch — Unsloth text rows, packed to 256 tokens, AdamW 2e-3, cosine —
#      about 930 steps, 1.5 to 3 minutes on 2 cores
#   4. `nmc train probe_job.json --eval-only`, before and after: how well the model completes
#      "a plus b is" (exact match: the sum, the period and the end of text)
#   5. copies the published model (bf16 safetensors, config, tokenizer, generation config)
#      into base/, replacing it
# Reproducible: same machine and thread count (pinned to 2 here) give the same bytes.
# Needs: make, cc, python3 with tokenizers. Takes a few minutes; run.sh does not need it.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
make -s nmc
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nmc-make-base.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
NMC_HOME="$WORK/home"
export NMC_HOME
python3 "$HERE/make_data.py" --corpus "$WORK/data"
python3 "$HERE/make_base.py" "$WORK/data/corpus.jsonl" "$WORK/init"
./nmc models import "$WORK/init" --name quickstart-init --copy >/dev/null
./nmc filesets import "$WORK/data/corpus.jsonl" --name quickstart-corpus --copy >/dev/null
./nmc filesets import "$WORK/data/probe.jsonl" --name quickstart-probe --copy >/dev/null
echo "== probe before pre-training (random init)"
sed 's/"model": "quickstart-base"/"model": "quickstart-init"/' "$HERE/probe_job.json" > "$WORK/probe_init.json"
./nmc train "$WORK/probe_init.json" --eval-only --quiet
echo "== pre-training (full fine-tuning on the corpus)"
./nmc train "$HERE/base_job.json" --threads 2 --output-dir "$WORK/run"
echo "== probe after pre-training: completes 'a plus b is' with ' a+b.'"
./nmc train "$HERE/probe_job.json" --eval-only --quiet
SRC="$NMC_HOME/models/default/quickstart-base/files"
rm -rf "$HERE/base.tmp"
mkdir "$HERE/base.tmp"
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
  cp "$SRC/$f" "$HERE/base.tmp/$f"
done
sync
rm -rf "$HERE/base.old"
[ ! -d "$HERE/base" ] || mv "$HERE/base" "$HERE/base.old"
mv "$HERE/base.tmp" "$HERE/base"
rm -rf "$HERE/base.old"
echo "wrote $HERE/base:"
ls -l "$HERE/base"
