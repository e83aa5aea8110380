#!/bin/sh
# run_bench_smoke.sh — the training benches still build and run (they only measure on
# bench/cpu_train/run.sh and tests/gpu/run.sh, where a compile error would cost GPU time):
# bench_cpu_train and the GPU training bench's driver, train_bench, each one tiny step on
# the CPU with the per-op profile (bench/dev_profile.h). Checks the result lines and the
# profile tables, not numbers.
set -u
BUILD=${BUILD:-build}
M=tests/data/models/tiny-llama
fail=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; fail=1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/nmc_bench_smoke.XXXXXX")
trap 'rm -rf "$T"' EXIT

for mode in lora full; do
  "$BUILD/bench/bench_cpu_train" --model "$M" --mode $mode --B 2 --T 32 --threads 2 --warmup 1 \
    --steps 2 --profile 1 > "$T/cpu.out" 2> "$T/cpu.err"; rc=$?
  if [ $rc -eq 0 ] && grep -q "^nmc mode=$mode B=2 T=32 .*tok_s=[0-9.]* .*loss0=[0-9.]*" "$T/cpu.out" \
     && grep -q "^profile per step (ops total" "$T/cpu.err" && grep -q " matmul M=" "$T/cpu.err" \
     && grep -q " lmhead_ce$" "$T/cpu.err"; then
    ok "bench_cpu_train $mode with --profile"
  else
    bad "bench_cpu_train $mode (exit $rc)"; sed 's/^/    /' "$T/cpu.out" "$T/cpu.err" | tail -10
  fi
  NMC_BENCH_PROFILE=1 "$BUILD/bench/train_bench" "$M" $mode 2 32 2 cpu > "$T/gpu.out" 2> "$T/gpu.err"; rc=$?
  if [ $rc -eq 0 ] && grep -q "^{\"mode\": \"$mode\", \"B\": 2, \"T\": 32, .*\"device\": \"cpu\", .*\"profiled\": 1}" "$T/gpu.out" \
     && grep -q "^profile per step (ops total .*, each op synchronized)" "$T/gpu.err" \
     && grep -q " adamw_many$" "$T/gpu.err"; then
    ok "train_bench $mode on the CPU with NMC_BENCH_PROFILE=1"
  else
    bad "train_bench $mode (exit $rc)"; sed 's/^/    /' "$T/gpu.out" "$T/gpu.err" | tail -10
  fi
done
"$BUILD/bench/train_bench" "$M" full 2 32 1 cuda:63 > /dev/null 2> "$T/nodev.err"; rc=$?
# (a CUDA build: no such GPU; a CPU-only build, e.g. the sanitizer one: no CUDA)
if [ $rc -ne 0 ] && grep -Eq "dev-not-found|dev-cuda-unavailable" "$T/nodev.err"; then ok "train_bench: a missing GPU is an error"
else bad "train_bench on cuda:63 (exit $rc)"; fi
[ $fail -eq 0 ] && echo "run_bench_smoke: all passed"
exit $fail
