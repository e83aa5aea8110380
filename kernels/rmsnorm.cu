/* rmsnorm.cu — RMSNorm forward/backward (CUDA), LlamaRMSNorm semantics as rmsnorm.c.
 * x, y, dy, dx [N, D] bf16; w [D] bf16; dw [D] fp32 accumulated (NULL = frozen);
 * rstd [N] fp32. One block per row, fp32 block reductions (fixed order).
 * dw: deterministic two-pass column sum (nmc_cuda_colsum).
 * Test tolerance: y, dx rtol 1.6e-2 (2 bf16 ulps) + atol 1e-2 (values ~1);
 * rstd rtol 1e-4 (fp32 sum order); dw rtol 1e-2 + atol 1e-3*sqrt(N).
 */
#include "cuda_common.cuh"

#define RMS_THREADS 256

__global__ void rms_fwd_k(nmc_bf16 *y, float *rstd, const nmc_bf16 *x, const nmc_bf16 *w, int D,
                          float eps) {
    __shared__ float sh[32];
    size_t o = (size_t)blockIdx.x * D;
    float ss = 0.f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float v = ldbf(x, o + i);
        ss += v * v;
    }
    ss = block_sum(ss, sh);
    float rs = 1.0f / sqrtf(ss / (float)D + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
    for (int i = threadIdx.x; i < D; i += blockDim.x) stbf(y, o + i, ldbf(w, i) * (ldbf(x, o + i) * rs));
}

__global__ void rms_bwd_k(nmc_bf16 *dx, const nmc_bf16 *dy, const nmc_bf16 *x, const nmc_bf16 *w,
                          const float *rstd, int D) {
    __shared__ float sh[32];
    size_t o = (size_t)blockIdx.x * D;
    float rs = rstd[blockIdx.x];
    float dot = 0.f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) dot += ldbf(dy, o + i) * ldbf(w, i) * ldbf(x, o + i);
    dot = block_sum(dot, sh);
    float cc = dot / (float)D * rs * rs * rs;
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        stbf(dx, o + i, rs * (ldbf(dy, o + i) * ldbf(w, i)) - cc * ldbf(x, o + i));
}

int nmc_cuda_rmsnorm_fwd(nmc_bf16 *y, float *rstd, const nmc_bf16 *x, const nmc_bf16 *w,
                         int N, int D, float eps, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, N >= 0 && D > 0 && y && rstd && x && w, "bad arguments N=%d D=%d", N, D);
    if (!N) return 0;
    rms_fwd_k<<<N, RMS_THREADS, 0, c->stream>>>(y, rstd, x, w, D, eps);
    CKLAUNCH(c, "rms_fwd_k");
    return 0;
}

int nmc_cuda_rmsnorm_bwd(nmc_bf16 *dx, float *dw, const nmc_bf16 *dy, const nmc_bf16 *x,
                         const nmc_bf16 *w, const float *rstd, int N, int D,
                         nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, N >= 0 && D > 0 && dx && dy && x && w && rstd, "bad arguments N=%d D=%d", N, D);
    if (!N) return 0;
    rms_bwd_k<<<N, RMS_THREADS, 0, c->stream>>>(dx, dy, x, w, rstd, D);
    CKLAUNCH(c, "rms_bwd_k");
    if (dw) return nmc_cuda_colsum(c, dw, dy, x, rstd, N, D, 1);
    return 0;
}
