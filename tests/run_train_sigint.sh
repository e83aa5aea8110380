#!/bin/sh
# run_train_sigint.sh — a real Ctrl-C: SIGINT sent to a running `nmc train` process (not
# --stop-after). The run must finish the step it is in, write a complete checkpoint (built in a
# temp directory and renamed: no temp left behind), set status.json to "cancelled", say how to
# resume, and exit 130; `--resume` must then finish the run with the same metrics (loss, lr,
# grad norm per step, validation loss) as an uninterrupted run of the same job.
# Model: the random-init tiny Llama fixture with the llama2 test tokenizer and the quickstart's
# ChatML template; data: examples/quickstart/train.jsonl. 30 steps of 208 rows each, so a
# step takes long enough (~0.1 s, more under sanitizers) for the signal to land mid-run.
set -u
NMC_BIN=${NMC_BIN:-./nmc}
T=$(mktemp -d "${TMPDIR:-/tmp}/nmc_train_sigint.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$T"; }
trap cleanup EXIT
fail=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; fail=1; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
show() { sed 's/^/     | /' "$1" | tail -20; }

export NMC_HOME="$T/home"
M="$T/model"
. tests/lib/tiny_model.sh
tiny_model_dir "$M" || { echo "FAIL tiny model"; exit 1; }
"$NMC_BIN" models import "$M" --name tiny >/dev/null || { echo "FAIL import model"; exit 1; }
"$NMC_BIN" filesets import examples/quickstart/train.jsonl --name add >/dev/null || { echo "FAIL import data"; exit 1; }
cat > "$T/job.json" <<'EOF'
{"name": "sigint", "model": "tiny", "dataset": {"training": "add"},
 "training": {"finetuning_type": "lora", "max_seq_length": 64, "lora": {"rank": 4, "alpha": 8}},
 "schedule": {"epochs": 20, "max_steps": 30, "seed": 11, "validation_split": 0.1},
 "batch": {"global_batch_size": 208, "micro_batch_size": 16},
 "optimizer": {"learning_rate": 0.002, "warmup_steps": 2}, "output": {"name": "sigint"}}
EOF
sed 's/"sigint"/"sigint-ref"/g' "$T/job.json" > "$T/ref.json"
steps() { [ -f "$1/metrics.jsonl" ] && grep -c '"loss"' "$1/metrics.jsonl" || echo 0; }
metrics() { sed 's/,"tokens_per_s".*}/}/' "$1/metrics.jsonl"; }

# 1. the reference: the same job, uninterrupted
"$NMC_BIN" train "$T/ref.json" --output-dir "$T/ref" --threads 1 --quiet > "$T/ref.out" 2>&1; rc=$?
check "uninterrupted run exits 0" '[ $rc -eq 0 ]' || show "$T/ref.out"
check "uninterrupted run: 30 steps" '[ "$(steps "$T/ref")" -eq 30 ]'

# 2. start the run, wait until it has logged 2 steps, send SIGINT
"$NMC_BIN" train "$T/job.json" --output-dir "$T/run" --threads 1 > "$T/run.out" 2> "$T/run.err" &
PID=$!
i=0
while [ "$(steps "$T/run")" -lt 2 ] && kill -0 "$PID" 2>/dev/null && [ $i -lt 1200 ]; do
  sleep 0.1; i=$((i + 1))
done
kill -INT "$PID" 2>/dev/null
wait "$PID"; rc=$?
PID=
n=$(steps "$T/run")
check "SIGINT: exit status 130" '[ $rc -eq 130 ]' || show "$T/run.err"
check "SIGINT: stopped mid-run ($n of 30 steps)" '[ "$n" -ge 2 ] && [ "$n" -lt 30 ]'
check "SIGINT: status.json cancelled" 'grep -q "\"status\": \"cancelled\"" "$T/run/status.json"'
check "SIGINT: status.json step" 'grep -q "\"step\": $n," "$T/run/status.json"'
C="$T/run/checkpoints/$(printf 'step-%08d' "$n")"
check "SIGINT: checkpoint of the last finished step" \
  '[ -f "$C/trainable.safetensors" ] && [ -f "$C/optimizer.safetensors" ] && [ -f "$C/trainer_state.json" ]'
check "SIGINT: no temp checkpoint left" '[ "$(ls -A "$T/run/checkpoints" | grep -vc "^step-[0-9]\{8\}$")" -eq 0 ]'
check "SIGINT: tells how to resume" 'grep -q "stopped at step $n of 30; run .nmc train .* --resume" "$T/run.err"'
check "SIGINT: train.log records it" 'grep -q "stopped: checkpoint written" "$T/run/train.log"'
check "SIGINT: nothing published" '! "$NMC_BIN" models show tiny | grep -q "^    sigint "'

# 3. --resume finishes with the uninterrupted metrics
"$NMC_BIN" train "$T/job.json" --output-dir "$T/run" --threads 1 --resume --quiet > "$T/res.out" 2> "$T/res.err"; rc=$?
check "resume exits 0" '[ $rc -eq 0 ]' || show "$T/res.err"
check "resume said loudly" 'grep -q "RESUMING from the last checkpoint" "$T/res.err"'
check "resume: status completed" 'grep -q "\"status\": \"completed\"" "$T/run/status.json"'
metrics "$T/ref" > "$T/m.ref"
metrics "$T/run" > "$T/m.run"
check "resume: metrics identical to the uninterrupted run" 'cmp -s "$T/m.ref" "$T/m.run"' ||
  diff "$T/m.ref" "$T/m.run" | head -6
check "resume: adapter published" '"$NMC_BIN" models show tiny | grep -q "^    sigint "'

[ $fail -eq 0 ] && echo "run_train_sigint: all passed"
exit $fail
