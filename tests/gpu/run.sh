#!/usr/bin/env bash
# tests/gpu/run.sh — everything GPU-side in one go, for a rented GPU machine (no network).
#
#   bash tests/gpu/run.sh            (from the repository root, or anywhere: it cd's there)
#   OUT=/some/dir bash tests/gpu/run.sh   also writes $OUT/gpu_run.log and $OUT/bench.jsonl
#
# Steps (each runs even when an earlier one failed; a summary comes last):
#   env      nvidia-smi -L, nvcc --version, torch version
#   nmc      make -j16 nmc (the CUDA build of the CLI)
#   kbuild   the kernel objects -> build/gpu/libnmc_kernels.a, test and bench drivers
#   ktest    build/gpu/test_kernels_gpu: every CUDA op vs its CPU reference (+ timings)
#   bench    bench/gpu/bench_vs_torch.py: our kernels vs PyTorch, ratios
#   dbuild   build/gpu/test_dev_cuda and build/bench/train_bench (the Makefile's target)
#            against build/libnmc.a
#   devtest  build/gpu/test_dev_cuda: the CUDA device (runtime/dev_cuda.c) vs the CPU
#            device through dev.h and model.h (ops, tiny models' loss and gradients)
#   tbench   bench/gpu/train_bench.py: LoRA and full training of a 0.6B Qwen3-shaped model
#            (B 2) and a 1.2B Llama-3.2-1B-shaped one (B 2 and 8), nmc (plain kernels,
#            NMC_CUDA_FAST=0, and the default fast path) vs transformers + PEFT (tokens/s,
#            MFU, peak memory, ratios)
#   train    tests/gpu/train_smoke.sh (`nmc train` GPU vs CPU, NCCL at world size 1)
# Exit status 1 when any step FAILED, else 0. Budget: < 4 minutes on an H100 (tbench ~3).
# No libjsmn-dev on the GPU machine: when .gpu-carry/include/jsmn.h exists (the coordinator
# carries it), every make gets EXTRA_CFLAGS=-I.gpu-carry/include.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export PATH="/usr/local/cuda/bin:$PATH"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu_run.log") 2>&1
fi
PY=${PYTHON:-python3}
LOGS=build/gpu/logs
mkdir -p "$LOGS"
SUMMARY=()
FAILED=0
MAKE_EXTRA=()
[ -f .gpu-carry/include/jsmn.h ] && MAKE_EXTRA=("EXTRA_CFLAGS=-I$ROOT/.gpu-carry/include")
T_START=$(date +%s)

# step NAME TIMEOUT_S CMD...: runs CMD with a timeout, output to the terminal and to a log
step() {
    local name=$1 limit=$2
    shift 2
    echo
    echo "==== [$name] $* (limit ${limit}s)"
    local t0=$(date +%s)
    # through bash so the exported shell functions below can be steps too
    timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    local dt=$(( $(date +%s) - t0 ))
    if [ "$rc" -eq 0 ]; then
        SUMMARY+=("PASS $name (${dt}s)")
    else
        [ "$rc" -eq 124 ] && echo "[$name] TIMED OUT after ${limit}s"
        SUMMARY+=("FAIL $name (rc $rc, ${dt}s; log $LOGS/$name.log)")
        FAILED=1
    fi
    return "$rc"
}
skip() { echo; echo "==== [$1] SKIP $2"; SUMMARY+=("SKIP $1 ($2)"); }

env_info() {
    date -u
    echo "host $(hostname), $(nproc) cpus"
    nvidia-smi -L || return 1
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
    nvcc --version || return 1
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu ok', torch.cuda.is_available())" || true
}

kbuild() {
    local objs=() f MAKE_EXTRA=()
    [ -n "${MAKE_EXTRA_STR:-}" ] && MAKE_EXTRA=("$MAKE_EXTRA_STR")
    for f in kernels/*.c; do objs+=("build/${f%.c}.o"); done
    for f in kernels/*.cu; do objs+=("build/${f%.cu}.cu.o"); done
    make -j16 "${MAKE_EXTRA[@]}" "${objs[@]}" || return 1
    rm -f build/gpu/libnmc_kernels.a
    ar rcs build/gpu/libnmc_kernels.a "${objs[@]}" || return 1
    local cflags="-O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -DNMC_CUDA=1 -Ikernels -Iruntime -I/usr/local/cuda/include"
    local libs="build/gpu/libnmc_kernels.a -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcudart -lcublasLt -lcublas -lstdc++ -lm -lpthread"
    gcc $cflags -o build/gpu/test_kernels_gpu tests/gpu/test_kernels_gpu.c $libs || return 1
    gcc $cflags -o build/gpu/bench_gpu bench/gpu/bench_gpu.c $libs || return 1
    echo "built build/gpu/test_kernels_gpu build/gpu/bench_gpu"
}

bench() {
    local js=()
    [ -n "${OUT:-}" ] && js=(--json "$OUT/bench.jsonl")
    $PY bench/gpu/bench_vs_torch.py build/gpu/bench_gpu "${js[@]}"
}

# the device layer's test and the training bench link the whole library (make nmc built it)
dbuild() {
    [ -f build/libnmc.a ] || { echo "build/libnmc.a missing (see the nmc step)"; return 1; }
    mkdir -p build/gpu
    local cflags="-O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -DNMC_CUDA=1 -Ikernels -Iruntime -Igenerated -I/usr/local/cuda/include"
    local libs="build/libnmc.a -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcudart -lcublasLt -lcublas -lstdc++ -lm -lpthread"
    gcc $cflags -o build/gpu/test_dev_cuda tests/gpu/test_dev_cuda.c $libs || return 1
    local MAKE_EXTRA=()
    [ -n "${MAKE_EXTRA_STR:-}" ] && MAKE_EXTRA=("$MAKE_EXTRA_STR")
    make -s "${MAKE_EXTRA[@]}" build/bench/train_bench || return 1
    echo "built build/gpu/test_dev_cuda build/bench/train_bench"
}

tbench() {
    local js=()
    [ -n "${OUT:-}" ] && js=(--json "$OUT/bench.jsonl")
    # TBENCH_ARGS narrows the run when device time is short, e.g. "--steps 4 --configs qwen3-0.6b:2";
    # "--profile" adds a per-op table of nmc-fast for each (config, mode)
    $PY bench/gpu/train_bench.py build/bench/train_bench "${js[@]}" ${TBENCH_ARGS:-}
}

# ---- TRAIN SECTION ------------------------------------------------------------------------
# tests/gpu/train_smoke.sh: `nmc train` on the tiny fixtures on the GPU and the CPU (first
# losses compared, loss goes down), device selection refusals, and the NCCL communicator at
# world size 1.
train_smoke() {
    ./nmc train --help >/dev/null 2>&1 || { echo "nmc train --help failed"; return 1; }
    if [ -f tests/gpu/train_smoke.sh ]; then
        bash tests/gpu/train_smoke.sh
    else
        echo "nmc train exists but tests/gpu/train_smoke.sh is missing: write it"
        return 1
    fi
}

export PY OUT
export MAKE_EXTRA_STR="${MAKE_EXTRA[*]:-}"
export -f env_info kbuild bench train_smoke dbuild tbench

step env 60 env_info
step nmc 240 make -j16 "${MAKE_EXTRA[@]}" nmc
rm -f build/gpu/test_kernels_gpu build/gpu/bench_gpu build/gpu/test_dev_cuda build/bench/train_bench
if step kbuild 240 kbuild; then
    step ktest 180 build/gpu/test_kernels_gpu
    step bench 180 bench
else
    skip ktest "test driver not built (see kbuild)"
    skip bench "bench driver not built (see kbuild)"
fi
if step dbuild 120 dbuild; then
    step devtest 120 build/gpu/test_dev_cuda
    step tbench 240 tbench
else
    skip devtest "test driver not built (see dbuild)"
    skip tbench "bench driver not built (see dbuild)"
fi
if [ -x ./nmc ] && ./nmc train --help >/dev/null 2>&1; then
    step train 120 train_smoke
else
    skip train "engine not built yet"
    echo "SKIP train (engine not built yet)"
fi

echo
echo "==== summary ($(( $(date +%s) - T_START ))s total)"
for s in "${SUMMARY[@]}"; do echo "$s"; done
if [ "$FAILED" -ne 0 ]; then echo "RESULT: FAIL"; else echo "RESULT: PASS"; fi
exit "$FAILED"
