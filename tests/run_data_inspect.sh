#!/bin/sh
# run_data_inspect.sh — `nmc data inspect` through the real binary: a temporary store with a
# tiny model (tokenizer + chat template) and filesets, then Automodel and Unsloth jobs:
# exact sample rendering with and without colour, the report, and exit codes for an invalid
# job (1), bad rows (1), a missing job file (2) and a usage error (2).
# Skips (exit 0 with a message) when $NMC_BIN has no `data` command yet.
set -u
NMC=${NMC_BIN:-./nmc}
if ! [ -x "$NMC" ] || ! "$NMC" data --help >/dev/null 2>&1; then
  echo "run_data_inspect.sh: skipped: $NMC has no \`data\` command (not wired into main.c yet)"
  exit 0
fi
ROOT=$(pwd)
T=$(mktemp -d /tmp/nmc-data-inspect-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
check() { # description, condition command...
  d=$1; shift
  if "$@"; then :; else echo "FAIL: $d"; fail=1; fi
}

export NMC_HOME="$T/home"
mkdir -p "$T/model" "$T/chat" "$T/text"
cp "$ROOT"/tests/data/models/tiny-qwen3/* "$T/model/"
cp "$ROOT/tests/data/tokenizers/qwen2.json" "$T/model/tokenizer.json"
cp "$ROOT/tests/data/datasets/chat_qwen25.tokenizer_config.json" "$T/model/tokenizer_config.json"
cp "$ROOT/tests/data/datasets/chat.jsonl" "$T/chat/train.jsonl"
cp "$ROOT/tests/data/datasets/text.jsonl" "$T/text/train.jsonl"
"$NMC" models import "$T/model" --name tiny >/dev/null || { echo "FAIL: model import"; exit 1; }
"$NMC" filesets import "$T/chat" --name chat >/dev/null || { echo "FAIL: fileset import"; exit 1; }
"$NMC" filesets import "$T/text" --name text >/dev/null || { echo "FAIL: fileset import"; exit 1; }

cat > "$T/am.json" <<'EOF'
{"model": "tiny", "dataset": {"training": "chat"}, "training": {}, "schedule": {"validation_split": null}}
EOF
"$NMC" data inspect "$T/am.json" --n 1 --color never > "$T/out" 2> "$T/err"
check "automodel inspect exits 0" [ $? -eq 0 ]
check "no diagnostics" [ ! -s "$T/err" ]
printf '%s\n' "── sample 1  $T/chat/train.jsonl:1  103 tokens, 17 trained" "<|im_start|>system" \
  "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>" "<|im_start|>user" "Hello!<|im_end|>" "<|im_start|>assistant" \
  "«Hi there. How can I help?<|im_end|>" "»" > "$T/want"
sed -n '/^── sample 1/,/^»$/p' "$T/out" > "$T/got"
check "first sample rendered with markers" cmp -s "$T/want" "$T/got"
check "zero-trainable row listed" grep -q "chat/train.jsonl:8  46 tokens, none trained" "$T/out"
check "samples kept" grep -q "^  samples kept           7$" "$T/out"

"$NMC" data inspect "$T/am.json" --n 1 --color always > "$T/out" 2>&1
check "colour: trained part green" grep -q "$(printf '\033\\[32mHi there')" "$T/out"

cat > "$T/us.json" <<'EOF'
{"$schema": "unsloth.schema.json", "model": {"name": "tiny", "max_seq_length": 16}, "dataset": {"path": "text"}}
EOF
"$NMC" data inspect "$T/us.json" --n 0 --color never > "$T/out" 2> "$T/err"
check "unsloth inspect exits 0" [ $? -eq 0 ]
check "unsloth text: every token trained" grep -q "loss on every token" "$T/out"
check "truncation reported" grep -q "^  truncated              2$" "$T/out"

echo '{"model": "tiny", "dataset": {"training": "chat"}, "training": {}, "batch": {"micro_batch_size": 3}}' > "$T/bad.json"
"$NMC" data inspect "$T/bad.json" --color never >/dev/null 2>&1
check "invalid job exits 1" [ $? -eq 1 ]
echo '{"messages": []}' > "$T/chat/broken.jsonl"
"$NMC" data inspect "$T/am.json" --color never >/dev/null 2> "$T/err"
check "bad rows exit 1" [ $? -eq 1 ]
check "bad row located" grep -q "chat/broken.jsonl:1:14: error\[data-empty-messages\]" "$T/err"
"$NMC" data inspect "$T/missing.json" >/dev/null 2>&1
check "missing job exits 2" [ $? -eq 2 ]
"$NMC" data inspect "$T/am.json" --n x >/dev/null 2>&1
check "usage error exits 2" [ $? -eq 2 ]
[ $fail -eq 0 ] && echo "run_data_inspect.sh: ok"
exit $fail
