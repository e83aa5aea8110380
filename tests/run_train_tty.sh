#!/bin/sh
# run_train_tty.sh — `nmc train`'s progress display: on a terminal (a pty from util-linux
# `script`) one bar redrawn in place ("\r\033[K", bar, loss, lr, tok/s, elapsed and ETA);
# piped, one plain line per logged step and no escape sequences.
# Model: the random-init tiny Llama fixture; data: examples/quickstart/train.jsonl; 6 steps.
set -u
NMC_BIN=${NMC_BIN:-./nmc}
command -v script >/dev/null 2>&1 || { echo "FAIL util-linux 'script' is needed (apt-get install bsdutils)"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/nmc_train_tty.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; fail=1; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

export NMC_HOME="$T/home"
M="$T/model"
. tests/lib/tiny_model.sh
tiny_model_dir "$M" || { echo "FAIL tiny model"; exit 1; }
"$NMC_BIN" models import "$M" --name tiny >/dev/null || { echo "FAIL import model"; exit 1; }
"$NMC_BIN" filesets import examples/quickstart/train.jsonl --name add >/dev/null || { echo "FAIL import data"; exit 1; }
job() {
  cat > "$T/$1.json" <<EOF
{"name": "$1", "model": "tiny", "dataset": {"training": "add"},
 "training": {"finetuning_type": "lora", "max_seq_length": 64, "lora": {"rank": 4, "alpha": 8}},
 "schedule": {"epochs": 3, "seed": 3, "validation_split": 0.1},
 "batch": {"global_batch_size": 208, "micro_batch_size": 16},
 "optimizer": {"learning_rate": 0.002, "warmup_steps": 2}, "output": {"name": "$1"}}
EOF
}
ESC=$(printf '\033')
CR=$(printf '\r')

job tty
script -qec "'$NMC_BIN' train '$T/tty.json' --output-dir '$T/run-tty' --threads 1" /dev/null > "$T/tty.out" 2>&1 < /dev/null
rc=$?
check "on a pty: exits 0" '[ $rc -eq 0 ]'
check "on a pty: the bar is redrawn in place" \
  'grep -q "${CR}${ESC}\[Kstep 6/6 \[########################\] loss [0-9.]* lr [0-9.e+-]* | [0-9]* tok/s | [0-9]*:[0-9][0-9], eta 0:00" "$T/tty.out"'
check "on a pty: every step redraws" '[ "$(grep -o "${ESC}\[Kstep [0-9]/6 \[" "$T/tty.out" | wc -l)" -eq 6 ]'
check "on a pty: no plain step lines" '! grep -q "^step [0-9]/6 epoch" "$T/tty.out"'

job pipe
"$NMC_BIN" train "$T/pipe.json" --output-dir "$T/run-pipe" --threads 1 > "$T/pipe.out" 2> "$T/pipe.err" < /dev/null
rc=$?
check "piped: exits 0" '[ $rc -eq 0 ]'
check "piped: one plain line per step" '[ "$(grep -c "^step [0-9]/6 epoch [0-9.]* loss [0-9.]* lr [0-9.e+-]* grad_norm [0-9.]* tok/s [0-9]* eta [0-9]*:[0-9][0-9]$" "$T/pipe.err")" -eq 6 ]'
check "piped: no escape sequences" '! grep -q "$ESC" "$T/pipe.err" "$T/pipe.out"'

[ $fail -eq 0 ] && echo "run_train_tty: all passed"
exit $fail
