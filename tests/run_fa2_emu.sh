#!/bin/sh
# The FlashAttention-2 CUDA kernels (kernels/attention_fa2.cu) checked on the CPU by the
# warp emulator in tests/gpu/fa2_emu/: the only check of those kernels CI (no GPU) can run.
exec bash tests/gpu/fa2_emu/run.sh
