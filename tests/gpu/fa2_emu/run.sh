#!/usr/bin/env bash
# tests/gpu/fa2_emu/run.sh — checks kernels/attention_fa2.cu on the CPU, no GPU needed.
#
#   bash tests/gpu/fa2_emu/run.sh [CASE]      (~20 s on 2 cores; CASE 1..8, default all)
#
# Cuts the kernel bodies out of attention_fa2.cu (dropping the include, the PTX wrappers and
# the host side, at the section markers named below), compiles them as C++ against the
# emulator in emu_rt.h, and runs fa2_emu.cpp: every case against the CPU reference, with
# cp.async data landing late and then early. Exit status 0 when every check passes.
set -eu
cd "$(dirname "$0")/../../.."
OUT=build/fa2_emu
SRC=kernels/attention_fa2.cu
mkdir -p "$OUT"
for marker in '/* ---- PTX wrappers' '/* two floats -> bf16x2 register' '/* ==== host side' \
              'extern __shared__ __align__(128) unsigned char smem[];'; do
    grep -qF "$marker" "$SRC" || { echo "fa2_emu: marker '$marker' not found in $SRC" >&2; exit 1; }
done
awk '
/#include "cuda_common.cuh"/ {next}
/#include "nmc_cuda_fa2.h"/ {next}
/^\/\* ---- PTX wrappers/ {skip=1}
/^\/\* two floats -> bf16x2 register/ {skip=0}
/^\/\* ==== host side/ {exit}
skip!=1 {print}
' "$SRC" | sed 's/extern __shared__ __align__(128) unsigned char smem\[\];/unsigned char *smem = emu_smem;/' \
    > "$OUT/kern.inc"
CFLAGS="-std=c11 -O2 -D_GNU_SOURCE -pthread -Ikernels -Iruntime"
for f in attention threads bf16 matmul; do
    ${CC:-cc} $CFLAGS -c -o "$OUT/$f.o" "kernels/$f.c"
done
# -fno-strict-aliasing: the kernels pun bf16 pairs through 32-bit words, as CUDA code does
${CXX:-c++} -std=c++17 -O2 -fno-strict-aliasing -w -Itests/gpu/fa2_emu -I"$OUT" -Ikernels -Iruntime \
    -o "$OUT/fa2_emu" tests/gpu/fa2_emu/fa2_emu.cpp "$OUT"/attention.o "$OUT"/threads.o \
    "$OUT"/bf16.o "$OUT"/matmul.o -lpthread -lm
"$OUT/fa2_emu" "$@"
