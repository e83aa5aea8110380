#!/usr/bin/env bash
# tests/gpu/train_smoke.sh — `nmc train` end to end on the GPU and on the CPU, same job, same
# seed; called by tests/gpu/run.sh once `./nmc train --help` works (also runs on a machine
# without a GPU: the GPU half then SKIPs and the device-selection checks still run).
#
# Fixture: tests/data/models/tiny-llama (2 layers, vocab 2048) + the llama2 test tokenizer
# (tests/data/tokenizers/llama2.json, ids < 2003) + the quickstart's chat template, imported
# into a temp NMC_HOME; data: examples/quickstart/train.jsonl (chat rows, "a + b =").
# Jobs (Unsloth schema, logging_steps 1 so metrics.jsonl has every step): LoRA r 8 and full
# weights, 6 steps of 8 rows, lr 3e-3 (LoRA) / 1e-3 (full), grad clip 1.0, seed 1234.
#
# Checks, each printed as PASS/FAIL:
#   - each run completes (exit 0) and writes 6 step records;
#   - GPU vs CPU: step-1 loss within rel 2e-2 (bf16 activations vs fp32: ~3 significant
#     digits per op, the mean over a batch's tokens is within ~1e-3 in practice) and steps
#     2-3 within rel 5e-2 (updates of slightly different gradients compound);
#   - GPU run: mean loss of steps 5-6 below step 1 (training makes progress);
#   - device selection before weights load: hardware.gpus "63" fails with dev-not-found,
#     an Automodel job laid out for 64 GPUs is refused (dev-gpus-insufficient: more GPUs
#     per node than visible) before the model loads; hardware.gpus "0"
#     trains on cuda:0 (GPU machines only);
#   - NMC_COMM=nccl at world size 1 (plain and --zero1) gives the plain GPU run's losses.
# Exit status 1 when any check failed. Env: NMC (binary, default ./nmc), KEEP=1 keeps the
# temp dir.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
NMC=${NMC:-$ROOT/nmc}
PY=${PY:-python3}
T=$(mktemp -d /tmp/nmc-train-smoke.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$T"' EXIT
export NMC_HOME="$T/home"
FAILS=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

# ---- fixture: model dir with tokenizer, store entities ------------------------------------
M="$T/tiny-llama-tok"
mkdir -p "$NMC_HOME"
. tests/lib/tiny_model.sh
tiny_model_dir "$M" || { echo "FAIL tiny model"; exit 1; }
"$NMC" models import "$M" --name smoke-tiny --copy >"$T/import.log" 2>&1 &&
    "$NMC" filesets import examples/quickstart/train.jsonl --name smoke-train >>"$T/import.log" 2>&1 ||
    { cat "$T/import.log"; echo "FAIL fixture import"; exit 1; }

# job MODE(lora|all_weights) LR OUT [HARDWARE_JSON]
job() {
    local hw=${4:-}
    [ -n "$hw" ] && hw=", \"hardware\": $hw"
    local lora=""
    [ "$1" = lora ] && lora=', "lora": {"rank": 8, "alpha": 16, "dropout": 0.0}'
    cat <<EOF
{"name": "$3", "model": {"name": "smoke-tiny", "load_in_4bit": false, "max_seq_length": 128},
 "dataset": {"path": "smoke-train", "apply_chat_template": true},
 "training": {"finetuning_type": "$1"$lora},
 "schedule": {"max_steps": 6, "logging_steps": 1, "warmup_steps": 0, "seed": 1234},
 "batch": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1},
 "optimizer": {"learning_rate": $2, "weight_decay": 0.0, "max_grad_norm": 1.0,
               "optim": "adamw_torch"},
 "output": {"name": "$3"}$hw}
EOF
}

# losses RUN_DIR -> "l1 l2 ... l6" from metrics.jsonl
losses() {
    $PY - "$1/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(" ".join(repr(r["loss"]) for r in rows if "loss" in r))
EOF
}

# run NAME DEVICE JOBFILE -> trains into $T/run-NAME, exit status of nmc train
run() {
    local t0=$(date +%s)
    "$NMC" train "$3" --backend unsloth --device "$2" --output-dir "$T/run-$1" --quiet \
        >"$T/$1.out" 2>"$T/$1.err"
    local rc=$?
    echo "  [$1 on $2: exit $rc, $(( $(date +%s) - t0 ))s]"
    [ "$rc" -ne 0 ] && sed 's/^/    | /' "$T/$1.err" | tail -15
    return $rc
}

# compare TAG GPU_LOSSES CPU_LOSSES
compare() {
    $PY - "$1" "$2" "$3" <<'EOF'
import sys
tag, g, c = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ok = True
def chk(cond, msg):
    global ok
    print(("PASS " if cond else "FAIL ") + msg)
    ok = ok and cond
chk(len(g) == 6 and len(c) == 6, f"{tag}: 6 logged steps on each device (gpu {len(g)}, cpu {len(c)})")
if len(g) >= 3 and len(c) >= 3:
    r1 = abs(g[0] - c[0]) / abs(c[0])
    chk(r1 <= 2e-2, f"{tag}: step-1 loss gpu {g[0]:.5f} vs cpu {c[0]:.5f}: rel {r1:.2e} <= 2e-2")
    r23 = max(abs(g[i] - c[i]) / abs(c[i]) for i in (1, 2))
    chk(r23 <= 5e-2, f"{tag}: steps 2-3 loss gpu {g[1]:.5f} {g[2]:.5f} vs cpu {c[1]:.5f} {c[2]:.5f}: rel {r23:.2e} <= 5e-2")
if len(g) == 6:
    chk((g[4] + g[5]) / 2 < g[0], f"{tag}: gpu loss goes down: step 1 {g[0]:.4f} -> steps 5-6 {(g[4] + g[5]) / 2:.4f}")
sys.exit(0 if ok else 1)
EOF
}

HAVE_GPU=0
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && HAVE_GPU=1

for mode in lora all_weights; do
    lr=0.003
    [ "$mode" = all_weights ] && lr=0.001
    job "$mode" "$lr" "smoke-$mode-cpu" >"$T/$mode-cpu.json"
    job "$mode" "$lr" "smoke-$mode-gpu" >"$T/$mode-gpu.json"
    if run "$mode-cpu" cpu "$T/$mode-cpu.json"; then pass "$mode: cpu run completes"
    else fail "$mode: cpu run (see above)"; continue; fi
    if [ "$HAVE_GPU" = 0 ]; then
        echo "SKIP $mode: gpu run (no GPU on this machine); cpu losses: $(losses "$T/run-$mode-cpu")"
        continue
    fi
    if run "$mode-gpu" cuda:0 "$T/$mode-gpu.json"; then pass "$mode: gpu run completes"
    else fail "$mode: gpu run (see above)"; continue; fi
    if compare "$mode" "$(losses "$T/run-$mode-gpu")" "$(losses "$T/run-$mode-cpu")"; then :; else FAILS=$((FAILS + 1)); fi
done

# ---- the nccl communicator at world size 1: the data-parallel path on the GPU ------------
# NMC_COMM=nccl forces nccl for one rank: the gradient bucket goes through ncclAllReduce
# (plain) or ncclReduceScatter + per-shard AdamW + ncclAllGather (--zero1). Losses must
# match the plain LoRA GPU run above: rel 1e-5 (plain: the same arithmetic) and 1e-3
# (ZeRO-1: bf16 act copies are rewritten by a separate conversion, not inside AdamW).
if [ "$HAVE_GPU" = 1 ] && [ -f "$T/run-lora-gpu/metrics.jsonl" ]; then
    for z in plain zero1; do
        job lora 0.003 "smoke-nccl-$z" >"$T/nccl-$z.json"
        extra="" tol=1e-5
        [ "$z" = zero1 ] && extra="--zero1" tol=1e-3
        NMC_COMM=nccl timeout 60 "$NMC" train "$T/nccl-$z.json" --backend unsloth --device cuda:0 \
            --output-dir "$T/run-nccl-$z" $extra >"$T/nccl-$z.out" 2>"$T/nccl-$z.err"
        rc=$?
        if [ "$rc" -ne 0 ] || ! grep -q "nccl communicator" "$T/nccl-$z.err"; then
            fail "nccl $z at world size 1: exit $rc"; sed 's/^/    | /' "$T/nccl-$z.err" | tail -12; continue
        fi
        if $PY - "$z" "$tol" "$(losses "$T/run-lora-gpu")" "$(losses "$T/run-nccl-$z")" <<'EOF'
import sys
z, tol = sys.argv[1], float(sys.argv[2])
a, b = [float(x) for x in sys.argv[3].split()], [float(x) for x in sys.argv[4].split()]
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b)) if len(a) == len(b) == 6 else float("inf")
ok = worst <= tol
print(("PASS " if ok else "FAIL ") + f"nccl {z} at world size 1: 6 losses vs the plain GPU run, max rel {worst:.2e} <= {tol:g}")
sys.exit(0 if ok else 1)
EOF
        then :; else FAILS=$((FAILS + 1)); fi
    done
else
    echo "SKIP nccl at world size 1 (no GPU, or the LoRA GPU run failed)"
fi

# ---- device selection from the job, before weights load ----------------------------------
job lora 0.003 smoke-gpus-bad '{"gpus": "63"}' >"$T/gpus-bad.json"
"$NMC" train "$T/gpus-bad.json" --backend unsloth --output-dir "$T/run-gpus-bad" --quiet >"$T/gb.out" 2>"$T/gb.err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q 'dev-not-found' "$T/gb.err" && grep -q 'hardware.gpus selects GPU 63' "$T/gb.err"; then
    pass "hardware.gpus \"63\" is refused with dev-not-found"
else
    fail "hardware.gpus \"63\": expected exit 1 and dev-not-found, got exit $rc:"; sed 's/^/    | /' "$T/gb.err" | head -12
fi
cat >"$T/am-64.json" <<EOF
{"model": "smoke-tiny", "dataset": {"training": "smoke-train"}, "training": {"finetuning_type": "lora"},
 "schedule": {"max_steps": 2}, "batch": {"global_batch_size": 64, "micro_batch_size": 1},
 "parallelism": {"num_gpus_per_node": 64}, "output": {"name": "smoke-am64"}}
EOF
"$NMC" train "$T/am-64.json" --backend automodel --output-dir "$T/run-am64" --quiet >"$T/am.out" 2>"$T/am.err"
rc=$?
# the trainer's plan (train-unsupported) or the device plan (dev-gpus-insufficient) refuses
# it; either way before the model loads (no "trainable parameters" line)
if [ "$rc" -eq 1 ] && grep -Eq 'dev-gpus-insufficient|train-unsupported|launch-' "$T/am.err" &&
    ! grep -q 'trainable parameters' "$T/am.err"; then
    pass "parallelism.num_gpus_per_node 64 is refused before the model loads ($(grep -Eo 'dev-gpus-insufficient|train-unsupported' "$T/am.err" | head -1))"
else
    fail "num_gpus_per_node 64: expected exit 1 before loading, got exit $rc:"; sed 's/^/    | /' "$T/am.err" | head -12
fi
if [ "$HAVE_GPU" = 1 ]; then
    job lora 0.003 smoke-gpus-0 '{"gpus": "0"}' >"$T/gpus-0.json"
    "$NMC" train "$T/gpus-0.json" --backend unsloth --output-dir "$T/run-gpus-0" >"$T/g0.out" 2>"$T/g0.err"
    rc=$?
    if [ "$rc" -eq 0 ] && grep -q 'on cuda:0' "$T/g0.err"; then pass "hardware.gpus \"0\" trains on cuda:0"
    else fail "hardware.gpus \"0\": exit $rc"; sed 's/^/    | /' "$T/g0.err" | tail -12; fi
fi

echo "train_smoke: $FAILS failed"
[ "$FAILS" -eq 0 ]
