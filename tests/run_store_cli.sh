#!/bin/sh
# run_store_cli.sh — `nmc models ...` / `nmc filesets ...` end to end: exit codes, exact
# output of list, import by reference and by copy, errors with their help lines.
# Uses $NMC_BIN when it has the commands; otherwise builds a small driver that calls
# nmc_cmd_models / nmc_cmd_filesets from $BUILD/libnmc.a; skips when neither exists.
set -u
BUILD=${BUILD:-build}
ROOT=$(pwd)
T=$(mktemp -d /tmp/nmc-store-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0

NMC=""
if [ -n "${NMC_BIN:-}" ] && [ -x "$NMC_BIN" ] && "$NMC_BIN" models --help >/dev/null 2>&1; then
  NMC="$NMC_BIN"
elif [ -f "$BUILD/libnmc.a" ]; then
  cat > "$T/driver.c" <<'C'
#include "store.h"
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "models") == 0) return nmc_cmd_models(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "filesets") == 0) return nmc_cmd_filesets(argc - 2, argv + 2);
    fprintf(stderr, "usage: driver models|filesets ...\n");
    return 2;
}
C
  for flags in "" "-fsanitize=address,undefined"; do
    if ${CC:-cc} -std=c11 -D_GNU_SOURCE $flags -Iruntime -Ikernels -o "$T/nmc" "$T/driver.c" \
         "$BUILD/libnmc.a" -lm -lpthread 2>"$T/cc.log"; then NMC="$T/nmc"; break; fi
  done
  [ -n "$NMC" ] || { echo "run_store_cli: cannot link a driver against $BUILD/libnmc.a:"; cat "$T/cc.log"; exit 1; }
else
  echo "run_store_cli: skipped ($NMC_BIN has no 'models' command and $BUILD/libnmc.a is missing)"
  exit 0
fi

export NMC_HOME="$T/home"
M="$ROOT/tests/data/models"

# check NAME WANT_RC CMD...: runs CMD, stdout -> $T/out, stderr -> $T/err
check() {
  name=$1; want=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; rc=$?
  if [ "$rc" != "$want" ]; then
    echo "FAIL $name: exit $rc, want $want"; cat "$T/out" "$T/err"; fail=1; return 1
  fi
  return 0
}
# has NAME FILE TEXT: FILE contains TEXT (fixed string)
has() {
  grep -qF -- "$3" "$2" || { echo "FAIL $1: $2 lacks: $3"; cat "$2"; fail=1; }
}
# same NAME FILE: FILE equals $T/want
same() {
  cmp -s "$2" "$T/want" || { echo "FAIL $1: output differs"; diff "$T/want" "$2"; fail=1; }
}

check help 0 "$NMC" models --help && has help "$T/out" "usage: nmc models import DIR --name"
check no-sub 2 "$NMC" models
check bad-sub 2 "$NMC" models frob && has bad-sub "$T/err" "unknown subcommand 'frob'"
check bad-opt 2 "$NMC" models list --bogus && has bad-opt "$T/err" "unknown option '--bogus'"
check no-name 2 "$NMC" models import "$M/tiny-llama" && has no-name "$T/err" "import needs --name"
check no-value 2 "$NMC" models import "$M/tiny-llama" --name
check bad-format 2 "$NMC" models list --format yaml

check empty-list 0 "$NMC" models list
printf 'no models in the store (%s)\nimport one: nmc models import DIR --name NAME\n' "$NMC_HOME" > "$T/want"
same empty-list "$T/out"

check import-ref 0 "$NMC" models import "$M/tiny-llama" --name tiny
has import-ref "$T/out" "imported model default/tiny by reference (not copied: nmc reads the files in place and checks they still exist on every use)"
has import-ref "$T/out" "  weights: 336192 parameters, bfloat16, 21 tensors in model.safetensors (1 file)"
has import-ref "$T/err" "warning[store-no-tokenizer]: no tokenizer.json in the model directory"

mkdir "$T/src" && cp "$M/tiny-qwen3-sharded/"* "$T/src/" && echo '{}' > "$T/src/tokenizer.json"
check import-copy 0 "$NMC" models import "$T/src" --name=team/qwen --copy
has import-copy "$T/out" "imported model team/qwen by copy (the files live in the store)"
[ -s "$T/err" ] && { echo "FAIL import-copy: unexpected stderr"; cat "$T/err"; fail=1; }
rm -rf "$T/src"   # a copy does not need its source

check list 0 "$NMC" models list
{
  printf '%-32s %-20s %12s %-9s %-9s %s\n' NAME ARCHITECTURE PARAMETERS DTYPE STORAGE PATH
  printf '%-32s %-20s %12s %-9s %-9s %s\n' default/tiny LlamaForCausalLM 336192 bfloat16 reference "$M/tiny-llama"
  printf '%-32s %-20s %12s %-9s %-9s %s\n' team/qwen Qwen3ForCausalLM 205184 bfloat16 copy "$NMC_HOME/models/team/qwen/files"
} > "$T/want"
same list "$T/out"

check list-json 0 "$NMC" models list --format json
if command -v python3 >/dev/null 2>&1; then
  python3 -c "import json,sys; v=json.load(open(sys.argv[1])); assert [e['ref'] for e in v] == ['default/tiny', 'team/qwen'], v; assert v[1]['model']['shards'] == 2 and v[1]['model']['has_tokenizer'], v[1]" "$T/out" \
    || { echo "FAIL list-json"; fail=1; }
fi

check show 0 "$NMC" models show team/qwen
has show "$T/out" "  model:   Qwen3ForCausalLM, 2 layers, hidden 64, heads 4/2 kv, vocab 2048"
has show "$T/out" "  entity:  $NMC_HOME/models/team/qwen/entity.json"
has show "$T/out" "  adapters: 0"
mkdir -p "$NMC_HOME/models/team/qwen/adapters/b-lora" "$NMC_HOME/models/team/qwen/adapters/a-lora" "$NMC_HOME/models/team/qwen/adapters/.tmp-save"
echo "{}" > "$NMC_HOME/models/team/qwen/adapters/b-lora/adapter_config.json"
echo "{}" > "$NMC_HOME/models/team/qwen/adapters/a-lora/adapter_config.json"
check show-adapters 0 "$NMC" models show team/qwen
has show-adapters "$T/out" "  adapters: 2 (PEFT layout; evaluate one with \`nmc train JOB --eval-only --adapter PATH\`)"
has show-adapters "$T/out" "    a-lora                       $NMC_HOME/models/team/qwen/adapters/a-lora"
check show-adapters-json 0 "$NMC" models show team/qwen --format json
has show-adapters-json "$T/out" "\"name\": \"b-lora\""
check show-tensors 0 "$NMC" models show tiny --tensors
has show-tensors "$T/out" "model.layers.1.mlp.up_proj.weight"
has show-tensors "$T/out" "BF16  [128, 64]"
check show-tensors-json 0 "$NMC" models show tiny --tensors --format json
has show-tensors-json "$T/out" "\"name\": \"model.layers.1.mlp.up_proj.weight\""
has show-tensors-json "$T/out" "\"checkpoint_tensors\": ["
check show-json-no-tensors 0 "$NMC" models show tiny --format json
if grep -qF checkpoint_tensors "$T/out"; then echo "FAIL show-json-no-tensors: tensors listed without --tensors"; fail=1; fi

check missing 1 "$NMC" models show qwen
has missing "$T/err" "error[store-model-not-found]: model 'default/qwen' is not in the store ($NMC_HOME)"
has missing "$T/err" "did you mean 'team/qwen'?"
has missing "$T/err" "import it first: nmc models import /path/to/model-dir --name qwen"
check bad-name 1 "$NMC" models import "$M/tiny-llama" --name ../evil
has bad-name "$T/err" "error[store-invalid-name]: --name: invalid model name \"../evil\""
check exists 1 "$NMC" models import "$M/tiny-llama" --name tiny
has exists "$T/err" "error[store-entity-exists]: model 'default/tiny' already exists"

printf '{"prompt":"a","completion":"b"}\n' > "$T/train.jsonl"
check fs-import 0 "$NMC" filesets import "$T/train.jsonl" --name sft --copy
has fs-import "$T/out" "imported fileset default/sft by copy"
check fs-list 0 "$NMC" filesets list
{
  printf '%-32s %8s %14s %-9s %s\n' NAME FILES BYTES STORAGE PATH
  printf '%-32s %8s %14s %-9s %s\n' default/sft 1 32 copy "$NMC_HOME/filesets/default/sft/files/train.jsonl"
} > "$T/want"
same fs-list "$T/out"
check fs-tensors 2 "$NMC" filesets show sft --tensors
check fs-missing 1 "$NMC" filesets show nope
has fs-missing "$T/err" "help: import it first: nmc filesets import /path/to/data --name nope"
check fs-import-json 0 "$NMC" filesets import "$T/train.jsonl" --name sft-json --format json
has fs-import-json "$T/out" "\"ref\": \"default/sft-json\""
has fs-import-json "$T/out" "\"storage\": \"reference\""

if [ "$fail" -eq 0 ]; then echo "run_store_cli: all checks passed ($NMC)"; fi
exit "$fail"
