#!/bin/sh
# run_train_val.sh — `nmc train` end to end: when validation happens, and the merge check.
#   1. validation cadence from the job fields, read back from metrics.jsonl (the exact steps
#      that carry a val_loss record): Unsloth schedule.eval_steps (every N optimizer steps)
#      and its default (once per epoch, plus the end of a run cut mid-epoch by max_steps);
#      Automodel schedule.val_check_interval as a fraction of an epoch (0.5 with 5 steps an
#      epoch: after the epoch's 2nd and 4th step and at its end, counted from each epoch's
#      first step), as a step count (3), and null (once per epoch);
#   2. the last val_loss equals independent evaluations of the result: the held-out eval
#      printed after training and `nmc train --eval-only --adapter` on the published adapter
#      (4 decimals: what they print; tests/test_train.c checks every point bit for bit);
#   3. a merge that diverges fails loudly: NMC_TEST_CORRUPT_MERGE=1 (a test aid read only by
#      the merge check, runtime/train_output.c) perturbs the reloaded merged weights;
#      error[train-merge-mismatch] with the max abs diff and the tolerance, status.json
#      "error", nothing published, no temp directory left; the same job without the aid
#      publishes under that name.
# Model: the random-init tiny Llama fixture with the llama2 test tokenizer and the
# quickstart's ChatML template; data: 20 training rows (4 per micro-batch: 5 steps an
# epoch) and 8 validation rows of examples/quickstart.
set -u
NMC_BIN=${NMC_BIN:-./nmc}
T=$(mktemp -d "${TMPDIR:-/tmp}/nmc_train_val.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
fail=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; fail=1; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
show() { sed 's/^/     | /' "$1" | tail -20; }

export NMC_HOME="$T/home"
unset NMC_TEST_CORRUPT_MERGE
M="$T/model"
. tests/lib/tiny_model.sh
tiny_model_dir "$M" || { echo "FAIL tiny model"; exit 1; }
head -20 examples/quickstart/train.jsonl > "$T/train.jsonl"
head -8 examples/quickstart/heldout.jsonl > "$T/val.jsonl"
"$NMC_BIN" models import "$M" --name tiny >/dev/null || { echo "FAIL import model"; exit 1; }
"$NMC_BIN" filesets import "$T/train.jsonl" --name add20 >/dev/null || { echo "FAIL import data"; exit 1; }
"$NMC_BIN" filesets import "$T/val.jsonl" --name val8 >/dev/null || { echo "FAIL import data"; exit 1; }

unsloth() { # name schedule-json
  cat > "$T/$1.json" <<EOF
{"\$schema": "unsloth.schema.json", "name": "$1",
 "model": {"name": "tiny", "load_in_4bit": false, "max_seq_length": 64},
 "dataset": {"path": "add20", "validation_path": "val8", "apply_chat_template": true},
 "training": {"lora": {"rank": 4, "alpha": 8}},
 "schedule": {"seed": 5 $2},
 "batch": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1},
 "optimizer": {"learning_rate": 0.002, "optim": "adamw_torch"}, "output": {"name": "$1"}}
EOF
}
automodel() { # name schedule-json [training-json]
  cat > "$T/$1.json" <<EOF
{"name": "$1", "model": "tiny", "dataset": {"training": "add20", "validation": "val8"},
 "training": {"max_seq_length": 64, "lora": {"rank": 4, "alpha": 8} ${3:-}},
 "schedule": {"seed": 5, "epochs": 2 $2},
 "batch": {"global_batch_size": 4, "micro_batch_size": 4},
 "optimizer": {"learning_rate": 0.002, "warmup_steps": 2}, "output": {"name": "$1"}}
EOF
}
# steps that carry a val_loss record, space-separated
val_steps() { grep '"val_loss"' "$1/metrics.jsonl" | sed 's/^{"step":\([0-9]*\),.*/\1/' | tr '\n' ' ' | sed 's/ $//'; }
train_steps() { grep -c '"loss"' "$1/metrics.jsonl"; }
run() { # name: trains into $T/run-name
  "$NMC_BIN" train "$T/$1.json" --output-dir "$T/run-$1" --threads 2 --quiet > "$T/$1.out" 2> "$T/$1.err"
}

# 1. cadence
unsloth u-eval2 ', "max_steps": 7, "eval_steps": 2'
run u-eval2; rc=$?
check "unsloth eval_steps 2: exits 0" '[ $rc -eq 0 ]' || show "$T/u-eval2.err"
check "unsloth eval_steps 2: 7 training records" '[ "$(train_steps "$T/run-u-eval2")" -eq 7 ]'
check "unsloth eval_steps 2: val_loss after steps 2 4 6 ($(val_steps "$T/run-u-eval2"))" \
  '[ "$(val_steps "$T/run-u-eval2")" = "2 4 6" ]'

unsloth u-default ', "max_steps": 7'
run u-default; rc=$?
check "unsloth eval_steps null: exits 0" '[ $rc -eq 0 ]' || show "$T/u-default.err"
check "unsloth eval_steps null: val_loss at the epoch end and the cut end, 5 7 ($(val_steps "$T/run-u-default"))" \
  '[ "$(val_steps "$T/run-u-default")" = "5 7" ]'

automodel a-half ', "val_check_interval": 0.5'
run a-half; rc=$?
check "automodel val_check_interval 0.5: exits 0" '[ $rc -eq 0 ]' || show "$T/a-half.err"
check "automodel val_check_interval 0.5: 10 training records" '[ "$(train_steps "$T/run-a-half")" -eq 10 ]'
check "automodel val_check_interval 0.5: val_loss after 2 4 5 7 9 10 ($(val_steps "$T/run-a-half"))" \
  '[ "$(val_steps "$T/run-a-half")" = "2 4 5 7 9 10" ]'

automodel a-three ', "val_check_interval": 3'
run a-three; rc=$?
check "automodel val_check_interval 3: exits 0" '[ $rc -eq 0 ]' || show "$T/a-three.err"
check "automodel val_check_interval 3: val_loss after 3 6 9 ($(val_steps "$T/run-a-three"))" \
  '[ "$(val_steps "$T/run-a-three")" = "3 6 9" ]'

automodel a-null ''
run a-null; rc=$?
check "automodel val_check_interval null: exits 0" '[ $rc -eq 0 ]' || show "$T/a-null.err"
check "automodel val_check_interval null: once per epoch, 5 10 ($(val_steps "$T/run-a-null"))" \
  '[ "$(val_steps "$T/run-a-null")" = "5 10" ]'

# 2. the last val_loss (after step 10) against the evaluations of the trained adapter
last=$(grep '"val_loss"' "$T/run-a-half/metrics.jsonl" | tail -1 | sed 's/.*"val_loss":\([-0-9.e]*\)}.*/\1/')
want=$(printf '%.4f' "$last")
check "held-out eval after training = last val_loss ($want)" \
  'grep -q "^eval (validation set): loss $want," "$T/a-half.out"' || show "$T/a-half.out"
A="$NMC_HOME/models/default/tiny/adapters/a-half"
"$NMC_BIN" train "$T/a-half.json" --eval-only --adapter "$A" --threads 2 > "$T/eval.out" 2> "$T/eval.err"; rc=$?
check "--eval-only --adapter = last val_loss ($want)" \
  '[ $rc -eq 0 ] && grep -q "^eval (validation set): loss $want," "$T/eval.out"' || show "$T/eval.err"

# 3. the merge check fails loudly, and nothing is published
automodel merged ', "max_steps": 3' ', "finetuning_type": "lora_merged"'
NMC_TEST_CORRUPT_MERGE=1 "$NMC_BIN" train "$T/merged.json" --output-dir "$T/run-bad" --quiet \
  > "$T/bad.out" 2> "$T/bad.err"; rc=$?
check "corrupted merge: exit 1" '[ $rc -eq 1 ]' || show "$T/bad.err"
check "corrupted merge: error[train-merge-mismatch] with max abs diff and tolerance" \
  'grep -q "error\[train-merge-mismatch\]: the merged model.s logits differ from adapter-on-base by [0-9][0-9.e+-]* (tolerance 1e-03)$" "$T/bad.err"' ||
  show "$T/bad.err"
diff=$(sed -n 's/.*adapter-on-base by \([0-9.e+-]*\) (tolerance.*/\1/p' "$T/bad.err")
check "corrupted merge: the reported diff ($diff) is above the tolerance" \
  'awk -v d="$diff" "BEGIN { exit !(d + 0 > 1e-3) }"'
check "corrupted merge: says nothing was published" 'grep -q "help: nothing was published" "$T/bad.err"'
check "corrupted merge: status.json error" \
  'grep -q "\"status\": \"error\"" "$T/run-bad/status.json" && grep -q "\"error\": \"train-merge-mismatch: " "$T/run-bad/status.json"'
check "corrupted merge: status.json has no output" 'grep -q "\"output\": null" "$T/run-bad/status.json"'
check "corrupted merge: status.json keeps the steps done" 'grep -q "\"step\": 3," "$T/run-bad/status.json"'
check "corrupted merge: model not in the store" '! "$NMC_BIN" models show merged > /dev/null 2>&1'
check "corrupted merge: no entity directory" '[ ! -e "$NMC_HOME/models/default/merged" ]'
check "corrupted merge: no temp directory left" '[ -z "$(ls -A "$NMC_HOME" | grep "^\.tmp")" ]'
check "corrupted merge: no 'published' line" '! grep -q "published" "$T/bad.out"'
"$NMC_BIN" train "$T/merged.json" --output-dir "$T/run-good" --quiet > "$T/good.out" 2> "$T/good.err"; rc=$?
check "same job without the aid: merge check passes, published" \
  '[ $rc -eq 0 ] && grep -q "model .merged. published at" "$T/good.out" && "$NMC_BIN" models show merged > /dev/null 2>&1' ||
  show "$T/good.err"

[ $fail -eq 0 ] && echo "run_train_val: all passed"
exit $fail
