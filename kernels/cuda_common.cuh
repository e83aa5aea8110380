/* cuda_common.cuh — private to the CUDA sources in kernels/: the context struct, the error-check macros,
 * bf16 load/store helpers and block reductions. Nothing here is part of the C API.
 */
#ifndef NMC_CUDA_COMMON_CUH
#define NMC_CUDA_COMMON_CUH
#include "nmc_cuda.h"
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>

#define NMC_CUDA_ERR_CAP 1024
#define NMC_LT_CACHE 128 /* matmul shapes remembered per context: a LoRA step has ~35 (7 adapted
                          linears x fwd/bwd x rank-r shapes + lm_head chunks); round-robin
                          eviction with fewer slots than shapes misses on every layer type */

struct lt_plan {
    int valid;
    int key[9];  /* M, N, K, transA, transB, lda, ldb, ctype, beta != 0 */
    unsigned al[3]; /* pointer alignments (bytes) of cuBLAS A, B, C */
    cublasLtMatmulAlgo_t algo;
};

struct nmc_cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;          /* cuBLASLt workspace, lt_ws_bytes */
    size_t lt_ws_bytes;
    void *scratch;        /* op scratch (CE logits, partial sums); grown on demand */
    size_t scratch_bytes;
    struct lt_plan plans[NMC_LT_CACHE];
    int next_plan;        /* round-robin eviction */
    char err[NMC_CUDA_ERR_CAP];
    char err_read[NMC_CUDA_ERR_CAP];
};

/* Record "file:line: call: message" (first error wins until read). */
void nmc_cuda_record(nmc_cuda_ctx_t *c, const char *file, int line, const char *call,
                     const char *msg);
/* Scratch of at least `bytes` (256-aligned), NULL + recorded error on failure. Valid until
 * the next call that asks for more; ops are stream-ordered so reuse between ops is safe. */
void *nmc_cuda_scratch(nmc_cuda_ctx_t *c, size_t bytes);
/* Row-major matmul with explicit leading dimensions (elements) for A and B; ctype is
 * CUDA_R_16BF or CUDA_R_32F for C. Used by the lm_head. */
int nmc_cuda_matmul_ld(nmc_cuda_ctx_t *c, void *C, cudaDataType_t ctype, const void *A,
                       int lda, const void *B, int ldb, int M, int N, int K, int transA,
                       int transB, float alpha, float beta);

/* out[col] += sum over rows of dy (mode 0) or of dy*x*rstd[row] (mode 1); two
 * deterministic passes through the scratch buffer (matmul.cu). */
int nmc_cuda_colsum(nmc_cuda_ctx_t *c, float *out, const nmc_bf16 *dy, const nmc_bf16 *x,
                    const float *rstd, int N, int C, int mode);

#define CK(c, call)                                                                       \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            nmc_cuda_record((c), __FILE__, __LINE__, #call, cudaGetErrorString(e_));      \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

#define CKLT(c, call)                                                                     \
    do {                                                                                  \
        cublasStatus_t s_ = (call);                                                       \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                \
            char m_[96];                                                                  \
            snprintf(m_, sizeof m_, "cublas status %d", (int)s_);                         \
            nmc_cuda_record((c), __FILE__, __LINE__, #call, m_);                          \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

/* after a <<<>>> launch */
#define CKLAUNCH(c, name) CK(c, (cudaGetLastError()))

/* argument validation: records "nmc_cuda_x: message" */
#define REQUIRE(c, cond, ...)                                                             \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            char m_[512];                                                                 \
            snprintf(m_, sizeof m_, __VA_ARGS__);                                         \
            nmc_cuda_record((c), __FILE__, __LINE__, __func__, m_);                       \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

#define REQUIRE_CTX(c) do { if (!(c)) return -1; } while (0)

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ldbf(const nmc_bf16 *p, size_t i) {
    return __bfloat162float(reinterpret_cast<const bf16 *>(p)[i]);
}
__device__ __forceinline__ void stbf(nmc_bf16 *p, size_t i, float v) {
    reinterpret_cast<bf16 *>(p)[i] = __float2bfloat16_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block-wide sum, result broadcast to every thread. `sh` holds >= 32 floats; blockDim.x
 * is a multiple of 32. Fixed order, so deterministic. */
__device__ __forceinline__ float block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.f;
    return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(v);
}

static inline unsigned grid_for(size_t n, int threads, unsigned cap) {
    size_t g = (n + (size_t)threads - 1) / (size_t)threads;
    if (g > cap) g = cap;
    return g ? (unsigned)g : 1u;
}
#endif
