/* embedding.cu — token embedding lookup and its scatter-add backward (CUDA).
 * out, dout [N, D] bf16; table [V, D] bf16; dtable [V, D] fp32 (accumulated); ids [N].
 * A negative id gives a zero row (fwd) and no gradient (bwd), as embedding.c.
 * Backward uses fp32 atomicAdd: NOT bitwise deterministic when ids repeat (the order of
 * the additions varies), exact up to fp32 rounding. Test tolerance: fwd exact (a copy);
 * bwd 1e-5 abs + 1e-5 rel vs the fp32 CPU sum of the same bf16 values.
 */
#include "cuda_common.cuh"

/* one block row per token; 16-byte vectors when D % 8 == 0 */
__global__ void emb_fwd_vec(uint4 *out, const int32_t *ids, const uint4 *table, int N, int D8) {
    int n = blockIdx.x, id = ids[n];
    const uint4 *src = table + (size_t)(id < 0 ? 0 : id) * D8;
    for (int i = threadIdx.x; i < D8; i += blockDim.x)
        out[(size_t)n * D8 + i] = id < 0 ? make_uint4(0, 0, 0, 0) : src[i];
}
__global__ void emb_fwd_scalar(nmc_bf16 *out, const int32_t *ids, const nmc_bf16 *table, int N,
                               int D) {
    int n = blockIdx.x, id = ids[n];
    const nmc_bf16 *src = table + (size_t)(id < 0 ? 0 : id) * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) out[(size_t)n * D + i] = id < 0 ? 0 : src[i];
}
__global__ void emb_bwd_k(float *dtable, const nmc_bf16 *dout, const int32_t *ids, int N, int D) {
    int n = blockIdx.x;
    if (ids[n] < 0) return;
    float *dst = dtable + (size_t)ids[n] * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) atomicAdd(dst + i, ldbf(dout, (size_t)n * D + i));
}

int nmc_cuda_embedding_fwd(nmc_bf16 *out, const int32_t *ids, const nmc_bf16 *table, int N,
                           int D, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, N >= 0 && D > 0 && out && ids && table, "bad arguments N=%d D=%d", N, D);
    if (!N) return 0;
    int aligned = D % 8 == 0 && ((uintptr_t)out % 16) == 0 && ((uintptr_t)table % 16) == 0;
    if (aligned)
        emb_fwd_vec<<<N, 128, 0, c->stream>>>((uint4 *)out, ids, (const uint4 *)table, N, D / 8);
    else
        emb_fwd_scalar<<<N, 256, 0, c->stream>>>(out, ids, table, N, D);
    CKLAUNCH(c, "emb_fwd");
    return 0;
}

int nmc_cuda_embedding_bwd(float *dtable, const nmc_bf16 *dout, const int32_t *ids, int N,
                           int D, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, N >= 0 && D > 0 && dtable && dout && ids, "bad arguments N=%d D=%d", N, D);
    if (!N) return 0;
    emb_bwd_k<<<N, 256, 0, c->stream>>>(dtable, dout, ids, N, D);
    CKLAUNCH(c, "emb_bwd_k");
    return 0;
}
