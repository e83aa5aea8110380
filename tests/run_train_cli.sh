#!/bin/sh
# run_train_cli.sh — `nmc train` end to end on the tiny fixture model (CPU): a LoRA run
# publishes an adapter and fills the run directory; --stop-after + --resume reproduces the
# uninterrupted metrics exactly; a changed job refuses to resume; an existing run needs
# --resume; lora_merged publishes a merged model entity (merge check passes); refusals
# happen before any weights load. Uses `$NMC_BIN train` once main.c wires it, else a
# one-line driver over $BUILD/libnmc.a.
set -u
BUILD=${BUILD:-build}
NMC_BIN=${NMC_BIN:-./nmc}
T=$(mktemp -d "${TMPDIR:-/tmp}/nmc_train_cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; fail=1; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

if "$NMC_BIN" help train >/dev/null 2>&1; then
  TRAIN="$NMC_BIN train"
else
  printf '#include "train.h"\nint main(int c, char **v) { return nmc_cmd_train(c - 1, v + 1); }\n' > "$T/driver.c"
  extra=""
  nm "$BUILD/libnmc.a" 2>/dev/null | grep -q '__asan' && extra="-fsanitize=address,undefined"
  nm "$BUILD/libnmc.a" 2>/dev/null | grep -q ' U cudaMalloc' && \
    extra="$extra -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcudart -lcublasLt -lcublas -lstdc++"
  cc -std=c11 -D_GNU_SOURCE -pthread -Iruntime -Igenerated -Ikernels -o "$T/nmc-train" "$T/driver.c" \
     "$BUILD/libnmc.a" -lm -lpthread $extra || { echo "FAIL cannot build the train driver"; exit 1; }
  TRAIN="$T/nmc-train"
fi

export NMC_HOME="$T/home"
M="$T/model"
. tests/lib/tiny_model.sh
tiny_model_dir "$M" || { echo "FAIL tiny model"; exit 1; }
"$NMC_BIN" models import "$M" --name tiny >/dev/null || { echo "FAIL import"; exit 1; }
"$NMC_BIN" filesets import examples/quickstart/train.jsonl --name add >/dev/null || exit 1
"$NMC_BIN" filesets import examples/quickstart/heldout.jsonl --name add-val >/dev/null || exit 1

job() { # name extra-training-json extra-top-json
  cat > "$T/$1.json" <<EOF2
{"name": "$1", "model": "tiny", "dataset": {"training": "add", "validation": "add-val"},
 "training": {"max_seq_length": 64 $2}, "schedule": {"max_steps": 6, "seed": 5},
 "batch": {"global_batch_size": 32, "micro_batch_size": 16},
 "optimizer": {"learning_rate": 0.002, "warmup_steps": 2} $3}
EOF2
}
strip() { sed 's/,"tokens_per_s".*}/}/' "$1"; }

# 1. a LoRA run: adapter published, run directory complete
job lora ', "lora": {"rank": 4, "alpha": 8}' ', "output": {"name": "add-lora"}'
$TRAIN "$T/lora.json" --quiet > "$T/out1" 2> "$T/err1"; rc=$?
check "lora run exits 0" '[ $rc -eq 0 ]'
R="$NMC_HOME/jobs/lora"
check "status completed" 'grep -q "\"status\": \"completed\"" "$R/status.json"'
check "metrics: 6 step records" '[ $(grep -c "\"loss\"" "$R/metrics.jsonl") -eq 6 ]'
check "metrics: fields" 'head -1 "$R/metrics.jsonl" | grep -q "^{\"step\":1,\"epoch\":[0-9.e-]*,\"loss\":[0-9.]*,\"lr\":0[.0]*,\"grad_norm\":[0-9.]*,\"tokens_per_s\""'
check "spec.json resolved" 'grep -q "\"learning_rate\": 0.002" "$R/spec.json"'
check "train.log" 'grep -q "completed: 6 steps" "$R/train.log"'
A="$NMC_HOME/models/default/tiny/adapters/add-lora"
check "PEFT adapter" '[ -f "$A/adapter_config.json" ] && [ -f "$A/adapter_model.safetensors" ]'
check "prints the adapter" 'grep -q "adapter .add-lora. published at" "$T/out1"'

# 2. an existing run needs --resume
$TRAIN "$T/lora.json" --quiet > /dev/null 2> "$T/err2"; rc=$?
check "existing run refused" '[ $rc -eq 1 ] && grep -q "error\[train-run-exists\]" "$T/err2"'

# 3. stop after 3 + resume 3 == 6 uninterrupted (full fine-tuning, to exercise every weight)
job full ', "finetuning_type": "all_weights"' ', "output": {"name": "add-full"}'
$TRAIN "$T/full.json" --output-dir "$T/run-a" --quiet >/dev/null 2>&1; rc=$?
check "full run exits 0" '[ $rc -eq 0 ]'
sed 's/add-full/add-full-b/' "$T/full.json" > "$T/full-b.json"
$TRAIN "$T/full-b.json" --output-dir "$T/run-b" --stop-after 3 --quiet >/dev/null 2> "$T/err3"; rc=$?
check "stop exits 130" '[ $rc -eq 130 ]'
check "status cancelled" 'grep -q "\"status\": \"cancelled\"" "$T/run-b/status.json"'
$TRAIN "$T/full-b.json" --output-dir "$T/run-b" --resume > /dev/null 2> "$T/err4"; rc=$?
check "resume exits 0" '[ $rc -eq 0 ]'
check "resume said loudly" 'grep -q "RESUMING from the last checkpoint" "$T/err4"'
grep -v val_loss "$T/run-a/metrics.jsonl" | sed 's/,"tokens_per_s".*}/}/' > "$T/ma"
grep -v val_loss "$T/run-b/metrics.jsonl" | sed 's/,"tokens_per_s".*}/}/' > "$T/mb"
check "resumed metrics identical" 'cmp -s "$T/ma" "$T/mb" && [ $(wc -l < "$T/ma") -eq 6 ]'
check "full model published" '"$NMC_BIN" models show add-full >/dev/null 2>&1'

# 4. a changed job refuses to resume
sed 's/0.002/0.003/' "$T/full-b.json" > "$T/full-c.json"
$TRAIN "$T/full-c.json" --output-dir "$T/run-b" --resume --quiet > /dev/null 2> "$T/err5"; rc=$?
check "spec mismatch refused" '[ $rc -eq 1 ] && grep -q "error\[train-resume-spec-mismatch\]" "$T/err5"'

# 5. lora_merged: merge checked, merged model entity with tokenizer and generation config
job merged ', "finetuning_type": "lora_merged", "lora": {"rank": 4, "alpha": 8}' ', "output": {"name": "add-merged"}'
$TRAIN "$T/merged.json" --quiet > "$T/out6" 2> "$T/err6"; rc=$?
check "merged run exits 0" '[ $rc -eq 0 ]'
MD="$NMC_HOME/models/default/add-merged/files"
check "merged model files" '[ -f "$MD/model.safetensors" ] && [ -f "$MD/tokenizer.json" ] && [ -f "$MD/tokenizer_config.json" ] && [ -f "$MD/generation_config.json" ]'
check "generation config eos" 'grep -q "\"eos_token_id\"" "$MD/generation_config.json"'

# 6. refusals before any weights load
cat > "$T/kd.json" <<'EOF2'
{"model": "tiny", "dataset": {"training": "add"}, "training": {"training_type": "distillation", "teacher_model": "tiny"}}
EOF2
$TRAIN "$T/kd.json" > /dev/null 2> "$T/err7"; rc=$?
check "distillation refused" '[ $rc -eq 1 ] && grep -q "error\[train-unsupported\]: knowledge distillation is not supported by nmc yet" "$T/err7"'
check "refused before loading" '! grep -q "trainable parameters" "$T/err7"'
cat > "$T/u4.json" <<'EOF2'
{"$schema": "unsloth.schema.json", "model": {"name": "tiny"}, "dataset": {"path": "add"}, "output": {"save_method": "merged_4bit"}}
EOF2
$TRAIN "$T/u4.json" > /dev/null 2> "$T/err8"; rc=$?
check "merged_4bit refused" '[ $rc -eq 1 ] && grep -q "merged_4bit" "$T/err8"'
check "4-bit load notice" 'grep -q "note\[train-quantized-load\]" "$T/err8"'
$TRAIN > /dev/null 2> "$T/err9"; rc=$?
check "usage error" '[ $rc -eq 2 ] && grep -q "missing the job file" "$T/err9"'
$TRAIN "$T/lora.json" --threads 0 > /dev/null 2> "$T/err9b"; rc=$?
check "--threads 0 refused" '[ $rc -eq 2 ] && grep -q "'"'"'--threads'"'"' needs a positive integer" "$T/err9b"'
$TRAIN "$T/lora.json" --threads 99999 > /dev/null 2> "$T/err9c"; rc=$?
check "--threads 99999 refused" '[ $rc -eq 2 ] && grep -q "at most 256 threads" "$T/err9c"'

# 7. eval-only with the published adapter
$TRAIN "$T/lora.json" --eval-only --adapter "$A" > "$T/out10" 2>/dev/null; rc=$?
check "eval-only with adapter" '[ $rc -eq 0 ] && grep -q "^eval (validation set): loss [0-9.]*, token accuracy" "$T/out10"'

# 8. CPU threads: by default every core this process may run on (its affinity), said on the
# start line; --threads overrides
$TRAIN "$T/lora.json" --output-dir "$T/run-t1" --stop-after 1 > /dev/null 2> "$T/err11"
n=$(nproc); [ "$n" -eq 1 ] && s="" || s="s"
check "threads: every allowed core by default" 'grep -q "on cpu ($n thread$s)" "$T/err11"'
$TRAIN "$T/lora.json" --output-dir "$T/run-t2" --stop-after 1 --threads 3 > /dev/null 2> "$T/err12"
check "threads: --threads 3" 'grep -q "on cpu (3 threads)" "$T/err12"'
if command -v taskset > /dev/null 2>&1 && [ "$n" -gt 1 ]; then
  taskset -c 0 $TRAIN "$T/lora.json" --output-dir "$T/run-t3" --stop-after 1 > /dev/null 2> "$T/err13"
  check "threads: taskset -c 0 gives 1 thread" 'grep -q "on cpu (1 thread)" "$T/err13"'
fi

[ $fail -eq 0 ] && echo "run_train_cli: all passed"
exit $fail
