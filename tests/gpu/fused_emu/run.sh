#!/usr/bin/env bash
# tests/gpu/fused_emu/run.sh — runs the fast-path kernels of kernels/fused.cu on the CPU,
# no GPU needed (the only check of those kernel bodies CI can run).
#
#   bash tests/gpu/fused_emu/run.sh        (~5 s on 2 cores)
#
# Cuts the section between the "device code" markers out of kernels/fused.cu, compiles it
# as C++ against the warp emulator of tests/gpu/fa2_emu/emu_rt.h (plus the few intrinsics
# added in fused_emu.cpp), and runs every kernel against the plain-C references in
# kernels/*.c. Exit status 0 when every check passes.
set -eu
cd "$(dirname "$0")/../../.."
OUT=build/fused_emu
SRC=kernels/fused.cu
mkdir -p "$OUT"
for marker in '/* ==== device code (begin) */' '/* ==== device code (end) */'; do
    grep -qF "$marker" "$SRC" || { echo "fused_emu: marker '$marker' not found in $SRC" >&2; exit 1; }
done
awk '
/^\/\* ==== device code \(begin\) \*\// {on=1; next}
/^\/\* ==== device code \(end\) \*\// {on=0}
on==1 {print}
' "$SRC" > "$OUT/kern.inc"
CFLAGS="-std=c11 -O2 -D_GNU_SOURCE -pthread -ffp-contract=off -Ikernels -Iruntime"
OBJS=()
for f in adamw bf16 elementwise matmul rmsnorm rope swiglu threads; do
    ${CC:-cc} $CFLAGS -c -o "$OUT/$f.o" "kernels/$f.c"
    OBJS+=("$OUT/$f.o")
done
# -fno-strict-aliasing: the kernels pun bf16 vectors through uint4, as CUDA code does
${CXX:-c++} -std=c++17 -O2 -ffp-contract=off -fno-strict-aliasing -w -Itests/gpu/fa2_emu \
    -Itests/gpu/fused_emu -I"$OUT" -Ikernels -Iruntime \
    -o "$OUT/fused_emu" tests/gpu/fused_emu/fused_emu.cpp "${OBJS[@]}" -lpthread -lm
"$OUT/fused_emu" "$@"
