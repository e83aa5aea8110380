/* dropout.cu — dropout masks (CUDA), bit-identical with dropout.c: the counter-based RNG
 * and the keep rule live in nmc_dropout_rng.h (element i uses counter offset + i).
 * Test: exact equality with nmc_cpu_dropout_mask.
 */
#include "cuda_common.cuh"
#include "nmc_dropout_rng.h"

__device__ __forceinline__ float drop_mask(float p, float scale, uint64_t seed, uint64_t ctr) {
    if (!(p > 0.f)) return 1.f;
    if (p >= 1.f) return 0.f;
    return nmc_dropout_uniform(seed, ctr) >= p ? scale : 0.f;
}

__global__ void drop_mask_k(float *mask, size_t n, float p, float scale, uint64_t seed,
                            uint64_t offset) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        mask[i] = drop_mask(p, scale, seed, offset + i);
}

__global__ void drop_apply_k(nmc_bf16 *y, const nmc_bf16 *x, size_t n, float p, float scale,
                             uint64_t seed, uint64_t offset) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        stbf(y, i, ldbf(x, i) * drop_mask(p, scale, seed, offset + i));
}

/* 1/(1-p) as dropout.c computes it (float division) */
static float keep_scale(float p) { return (p > 0.f && p < 1.f) ? 1.0f / (1.0f - p) : 1.f; }

int nmc_cuda_dropout_mask(float *mask, size_t n, float p, uint64_t seed, uint64_t offset,
                          nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, mask, "null tensor");
    if (!n) return 0;
    drop_mask_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(mask, n, p, keep_scale(p), seed, offset);
    CKLAUNCH(c, "drop_mask_k");
    return 0;
}

int nmc_cuda_dropout_apply(nmc_bf16 *y, const nmc_bf16 *x, size_t n, float p, uint64_t seed,
                           uint64_t offset, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, y && x, "null tensor");
    if (!n) return 0;
    drop_apply_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(y, x, n, p, keep_scale(p), seed, offset);
    CKLAUNCH(c, "drop_apply_k");
    return 0;
}
