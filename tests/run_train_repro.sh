#!/bin/sh
# run_train_repro.sh — `nmc train` end to end: reproducibility, NEFTune, the metrics record.
#   1. bit-identical reruns: the same job file trained twice from scratch (two fresh stores,
#      so tokenization, shuffling, LoRA init, dropout and NEFTune all start over; same seed,
#      --threads 2) gives byte-identical metrics.jsonl values (step, epoch, loss, lr,
#      grad_norm, val_loss) and byte-identical published adapter files (sha256);
#      another schedule.seed gives other losses;
#   2. NEFTune (Unsloth optimizer.neftune_noise_alpha) trains; its noise is in the training
#      forward only: `--eval-only` of the job (the untrained model, "step 0") prints exactly
#      what the same job without NEFTune prints, while the training losses differ;
#      reproducibility with the seed is part 1 (the job there uses NEFTune and LoRA dropout);
#   3. metrics.jsonl: every training record has exactly the keys step, epoch, loss, lr,
#      grad_norm, tokens_per_s, elapsed_s, eta_s (in that order, all numbers); every
#      validation record exactly step, epoch, val_loss.
# Model: the random-init tiny Llama fixture with the llama2 test tokenizer and the
# quickstart's ChatML template; data: 20 training rows and 8 validation rows.
set -u
NMC_BIN=${NMC_BIN:-./nmc}
T=$(mktemp -d "${TMPDIR:-/tmp}/nmc_train_repro.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
fail=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; fail=1; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
show() { sed 's/^/     | /' "$1" | tail -20; }

M="$T/model"
. tests/lib/tiny_model.sh
tiny_model_dir "$M" || { echo "FAIL tiny model"; exit 1; }
head -20 examples/quickstart/train.jsonl > "$T/train.jsonl"
head -8 examples/quickstart/heldout.jsonl > "$T/val.jsonl"
store() { # NMC_HOME: a fresh store with the model and both filesets
  NMC_HOME="$1" "$NMC_BIN" models import "$M" --name tiny >/dev/null &&
  NMC_HOME="$1" "$NMC_BIN" filesets import "$T/train.jsonl" --name add20 >/dev/null &&
  NMC_HOME="$1" "$NMC_BIN" filesets import "$T/val.jsonl" --name val8 >/dev/null
}
store "$T/h1" && store "$T/h2" || { echo "FAIL import"; exit 1; }

job() { # name seed optimizer-extra-json
  cat > "$T/$1.json" <<EOF
{"\$schema": "unsloth.schema.json", "name": "$1",
 "model": {"name": "tiny", "load_in_4bit": false, "max_seq_length": 64},
 "dataset": {"path": "add20", "validation_path": "val8", "apply_chat_template": true},
 "training": {"lora": {"rank": 4, "alpha": 8, "dropout": 0.1}},
 "schedule": {"seed": $2, "max_steps": 6, "eval_steps": 3, "warmup_steps": 1},
 "batch": {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2},
 "optimizer": {"learning_rate": 0.002, "optim": "adamw_torch" $3}, "output": {"name": "$1"}}
EOF
}
train() { # home job
  NMC_HOME="$1" "$NMC_BIN" train "$T/$2.json" --threads 2 --quiet > "$T/$2.$(basename "$1").out" 2> "$T/$2.$(basename "$1").err"
}
# the values that must reproduce: everything but the wall-clock fields
values() { sed 's/,"tokens_per_s".*}/}/' "$1/jobs/$2/metrics.jsonl"; }
losses() { grep '"loss"' "$1/jobs/$2/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }
sums() { (cd "$1/models/default/tiny/adapters/$2" && sha256sum adapter_model.safetensors adapter_config.json); }

# 1. the same job twice from scratch, then another seed
job neft 7 ', "neftune_noise_alpha": 5'
train "$T/h1" neft; rc1=$?
train "$T/h2" neft; rc2=$?
check "run 1 exits 0" '[ $rc1 -eq 0 ]' || show "$T/neft.h1.err"
check "run 2 exits 0" '[ $rc2 -eq 0 ]' || show "$T/neft.h2.err"
values "$T/h1" neft > "$T/v1"
values "$T/h2" neft > "$T/v2"
check "reruns: 6 training and 2 validation records" \
  '[ "$(grep -c "\"loss\"" "$T/v1")" -eq 6 ] && [ "$(grep -c "\"val_loss\"" "$T/v1")" -eq 2 ]'
check "reruns: metrics values byte-identical" 'cmp -s "$T/v1" "$T/v2"' || diff "$T/v1" "$T/v2" | head -6
sums "$T/h1" neft > "$T/s1" 2>&1
sums "$T/h2" neft > "$T/s2" 2>&1
check "reruns: adapter files sha256-identical" \
  '[ "$(grep -c "  adapter_" "$T/s1")" -eq 2 ] && cmp -s "$T/s1" "$T/s2"' || cat "$T/s1" "$T/s2"
job neft8 8 ', "neftune_noise_alpha": 5'
train "$T/h1" neft8; rc=$?
check "another seed: exits 0" '[ $rc -eq 0 ]' || show "$T/neft8.h1.err"
losses "$T/h1" neft > "$T/l7"
losses "$T/h1" neft8 > "$T/l8"
check "another seed: every training loss differs" \
  '[ "$(paste -d" " "$T/l7" "$T/l8" | awk "\$1 != \$2" | wc -l)" -eq 6 ]'
check "another seed: other adapter weights" \
  '[ "$(sums "$T/h1" neft | head -1 | cut -d" " -f1)" != "$(sums "$T/h1" neft8 | head -1 | cut -d" " -f1)" ]'

# 2. NEFTune against the same job without it
job plain 7 ''
train "$T/h1" plain; rc=$?
check "without NEFTune: exits 0" '[ $rc -eq 0 ]' || show "$T/plain.h1.err"
losses "$T/h1" plain > "$T/l0"
check "NEFTune changes every training loss" \
  '[ "$(paste -d" " "$T/l7" "$T/l0" | awk "\$1 != \$2" | wc -l)" -eq 6 ]'
NMC_HOME="$T/h1" "$NMC_BIN" train "$T/neft.json" --eval-only --threads 2 > "$T/e.neft" 2> "$T/e.neft.err"; rc1=$?
NMC_HOME="$T/h1" "$NMC_BIN" train "$T/plain.json" --eval-only --threads 2 > "$T/e.plain" 2> "$T/e.plain.err"; rc2=$?
check "eval-only with and without NEFTune: exit 0" '[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ]' || show "$T/e.neft.err"
check "step 0: evaluation with NEFTune = without ($(cat "$T/e.neft"))" \
  'grep -q "^eval (validation set): loss " "$T/e.neft" && cmp -s "$T/e.neft" "$T/e.plain"'

# 3. the key set of every record
keys() { sed 's/"\([a-z_]*\)":[^,}]*/\1/g' "$1/jobs/$2/metrics.jsonl"; }
for r in h1/neft h1/plain h2/neft; do
  h=${r%/*} j=${r#*/}
  F="$T/$h/jobs/$j/metrics.jsonl"
  n=$(keys "$T/$h" "$j" | grep -cv '^{step,epoch,loss,lr,grad_norm,tokens_per_s,elapsed_s,eta_s}$\|^{step,epoch,val_loss}$')
  check "metrics keys of $j ($h): every record exact" '[ "$n" -eq 0 ] && [ "$(wc -l < "$F")" -eq 8 ]' ||
    keys "$T/$h" "$j" | head -3
  check "metrics values of $j ($h): numbers, never null" '[ -s "$F" ] && ! grep -q "null" "$F"'
done

[ $fail -eq 0 ] && echo "run_train_repro: all passed"
exit $fail
