/* convert.cu — fp32 <-> bf16 conversion (CUDA), round-to-nearest-even as torch's .to().
 * Test: exact (bitwise) against nmc_f32_to_bf16 / nmc_bf16_to_f32, NaN and inf included.
 */
#include "cuda_common.cuh"

__global__ void f2b_k(nmc_bf16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
    {
        float v = src[i];
        if (v != v) dst[i] = 0x7FC0; /* every NaN -> quiet NaN, as bf16.c / c10 */
        else stbf(dst, i, v);
    }
}
__global__ void b2f_k(float *dst, const nmc_bf16 *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = ldbf(src, i);
}

int nmc_cuda_f32_to_bf16(nmc_bf16 *dst, const float *src, size_t n, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, dst && src, "null tensor");
    if (!n) return 0;
    f2b_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(dst, src, n);
    CKLAUNCH(c, "f2b_k");
    return 0;
}

int nmc_cuda_bf16_to_f32(float *dst, const nmc_bf16 *src, size_t n, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, dst && src, "null tensor");
    if (!n) return 0;
    b2f_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(dst, src, n);
    CKLAUNCH(c, "b2f_k");
    return 0;
}
