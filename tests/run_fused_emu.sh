#!/bin/sh
# The NMC_CUDA_FAST kernels (kernels/fused.cu: RMSNorm, RoPE, SwiGLU, multi-tensor AdamW and
# sum of squares) checked on the CPU by the warp emulator in tests/gpu/fused_emu/ against
# the plain-C references: the only check of those kernel bodies CI (no GPU) can run.
exec bash tests/gpu/fused_emu/run.sh
