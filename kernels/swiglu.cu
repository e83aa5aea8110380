/* swiglu.cu — SwiGLU h = silu(g) * u and its backward (CUDA), elementwise on bf16.
 *   dg = dh * u * s * (1 + g * (1 - s)), s = sigmoid(g);  du = dh * silu(g).
 * Test tolerance: rtol 1.6e-2 + atol 1e-3 (one bf16 rounding of an fp32 result).
 */
#include "cuda_common.cuh"

__device__ __forceinline__ float sigm(float g) { return 1.f / (1.f + expf(-g)); }

__global__ void swiglu_fwd_k(nmc_bf16 *h, const nmc_bf16 *g, const nmc_bf16 *u, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gv = ldbf(g, i);
        stbf(h, i, gv * sigm(gv) * ldbf(u, i));
    }
}

__global__ void swiglu_bwd_k(nmc_bf16 *dg, nmc_bf16 *du, const nmc_bf16 *dh, const nmc_bf16 *g,
                             const nmc_bf16 *u, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gv = ldbf(g, i), uv = ldbf(u, i), d = ldbf(dh, i), s = sigm(gv);
        stbf(dg, i, d * uv * s * (1.f + gv * (1.f - s)));
        stbf(du, i, d * gv * s);
    }
}

int nmc_cuda_swiglu_fwd(nmc_bf16 *h, const nmc_bf16 *g, const nmc_bf16 *u, size_t n,
                        nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, h && g && u, "null tensor");
    if (!n) return 0;
    swiglu_fwd_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(h, g, u, n);
    CKLAUNCH(c, "swiglu_fwd_k");
    return 0;
}

int nmc_cuda_swiglu_bwd(nmc_bf16 *dg, nmc_bf16 *du, const nmc_bf16 *dh, const nmc_bf16 *g,
                        const nmc_bf16 *u, size_t n, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, dg && du && dh && g && u, "null tensor");
    if (!n) return 0;
    swiglu_bwd_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(dg, du, dh, g, u, n);
    CKLAUNCH(c, "swiglu_bwd_k");
    return 0;
}
