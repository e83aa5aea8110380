#!/bin/sh
# run.sh — CPU training benchmark: nmc vs PyTorch (transformers + PEFT), same model,
# batch, sequence length and thread count, measured in one run. Not a test.
#
# Steps: build libnmc.a (CPU-only, the Makefile's flags, into $BUILD) and the driver;
# create a random-init Llama (peer.py make) in a temp dir; then for each mode (LoRA r=16
# on all 7 projections, full fine-tuning) run bench_cpu_train and peer.py train one after
# the other (never at the same time) and print
#   mode | nmc tok/s | torch tok/s | ratio | nmc GFLOP/s | % of fp32 peak | loss0 nmc/torch
# Environment (defaults): THREADS=2 B=4 T=256 WARMUP=2 STEPS=5 RANK=16 MODES="lora full"
#   HIDDEN=512 LAYERS=8 HEADS=8 KV_HEADS=4 INTERMEDIATE=1408 VOCAB=32000 TIED=1
#   BUILD=build/bench-cpu  KEEP=1 keeps the model dir.
set -eu
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2} B=${B:-4} T=${T:-256} WARMUP=${WARMUP:-2} STEPS=${STEPS:-5}
RANK=${RANK:-16} MODES=${MODES:-"lora full"}
BUILD=${BUILD:-build/bench-cpu}
PY=${PYTHON:-python3}

BIN="$BUILD/bench/bench_cpu_train"
make -s NMC_CUDA=0 BUILD="$BUILD" "$BIN"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/nmc-bench-llama.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$DIR"' EXIT
PARAMS=$($PY bench/cpu_train/peer.py make --out "$DIR" --hidden "${HIDDEN:-512}" \
  --layers "${LAYERS:-8}" --heads "${HEADS:-8}" --kv-heads "${KV_HEADS:-4}" \
  --intermediate "${INTERMEDIATE:-1408}" --vocab "${VOCAB:-32000}" --tied "${TIED:-1}" \
  --max-pos $((T > 2048 ? T : 2048)) | sed -n 's/^params=//p')
echo "model: random-init LlamaForCausalLM, $PARAMS parameters (hidden ${HIDDEN:-512}, ${LAYERS:-8} layers," \
     "${HEADS:-8} heads, ${KV_HEADS:-4} kv heads, intermediate ${INTERMEDIATE:-1408}, vocab ${VOCAB:-32000}," \
     "tied embeddings ${TIED:-1}) in $DIR"
echo "batch B=$B T=$T, $THREADS threads, $WARMUP warm-up + $STEPS timed steps (fwd+bwd+AdamW)"

# key=value field of a result line
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

ROWS=""
for mode in $MODES; do
  common="--model $DIR --mode $mode --B $B --T $T --threads $THREADS --warmup $WARMUP --steps $STEPS --rank $RANK"
  N=$("$BIN" $common)
  echo "$N"
  P=$(OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS $PY bench/cpu_train/peer.py train $common | grep '^torch ')
  echo "$P"
  ROWS="$ROWS$mode $(field "$N" tok_s) $(field "$P" tok_s) $(field "$N" gflops) $(field "$N" peak_gflops) $(field "$N" peak_pct) $(field "$N" loss0) $(field "$P" loss0)
"
done
echo
printf '%s' "$ROWS" | awk '
  BEGIN { printf "%-5s | %10s | %11s | %6s | %11s | %14s | %s\n", "mode", "nmc tok/s", "torch tok/s", "ratio", "nmc GFLOP/s", "% of fp32 peak", "loss0 nmc/torch" }
  NF { printf "%-5s | %10.1f | %11.1f | %5.2fx | %11.1f | %5.1f%% of %5.0f | %s / %s\n", $1, $2, $3, $2 / $3, $4, $6, $5, $7, $8 }'
