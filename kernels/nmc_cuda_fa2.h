/* nmc_cuda_fa2.h — FlashAttention-2-style causal GQA attention (kernels/attention_fa2.cu).
 *
 * Same arguments, layouts and semantics as nmc_cuda_attention_fwd / _bwd in nmc_cuda.h
 * (q, out, dq, dout [B*T, H*hd]; k, v, dk, dv [B*T, KVH*hd]; lse fp32 [B, H, T], natural
 * log; doc_start device int32 [B*T] or NULL, clamped to [0, i]; query head h reads kv head
 * h / (H/KVH); dq, dk, dv overwritten, dk/dv summed over the heads of each group).
 * Differences: mma.sync m16n8k16 tensor cores with S, P and O in registers; only the
 * shapes below are supported, others return NMC_CUDA_FA2_UNSUPPORTED so that a
 * dispatcher can fall back to nmc_cuda_attention_*:
 *
 *     rc = nmc_cuda_attention_fa2_fwd(...);
 *     if (rc == NMC_CUDA_FA2_UNSUPPORTED) rc = nmc_cuda_attention_fwd(...);
 *
 * Supported: hd 64 or 128; 1 <= T <= NMC_CUDA_FA2_MAX_T; B*H <= NMC_CUDA_FA2_MAX_BH.
 * Requires compute capability >= 8.0 (cp.async, ldmatrix, bf16 mma.sync).
 * Return values: 0 (queued on the context's stream), NMC_CUDA_FA2_UNSUPPORTED (nothing
 * done, no error recorded), or -1 with a located message in nmc_cuda_last_error()
 * (bad shape, NULL or misaligned tensor: every bf16 tensor must be 16-byte aligned).
 * Determinism: no atomics (dQ has its own pass): bitwise reproducible run to run.
 */
#ifndef NMC_CUDA_FA2_H
#define NMC_CUDA_FA2_H
#include "nmc_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* positive on purpose: callers testing `rc != 0` treat it as a failure, never as success */
#define NMC_CUDA_FA2_UNSUPPORTED 1
/* longest row: the range the kernel was built and tested for (tile counts, in-row int
 * offsets); longer rows go to the fallback */
#define NMC_CUDA_FA2_MAX_T 32768
/* rows x heads per call: kept within 65535 so the (batch, head) grid axis fits every CUDA
 * grid dimension; larger batches go to the fallback (or split the batch) */
#define NMC_CUDA_FA2_MAX_BH 65535

/* 1 when the fa2 kernels handle this shape (then fwd/bwd never return
 * NMC_CUDA_FA2_UNSUPPORTED for it), else 0. Pure host function, no context needed. */
int nmc_cuda_attention_fa2_supports(int B, int T, int H, int KVH, int hd);

int nmc_cuda_attention_fa2_fwd(nmc_bf16 *out, float *lse, const nmc_bf16 *q,
                               const nmc_bf16 *k, const nmc_bf16 *v,
                               const int32_t *doc_start, int B, int T, int H, int KVH,
                               int hd, float scale, nmc_cuda_ctx_t *c);

/* Uses the context scratch for Dsum (B*H*T fp32) and per-64-row doc_start bounds. */
int nmc_cuda_attention_fa2_bwd(nmc_bf16 *dq, nmc_bf16 *dk, nmc_bf16 *dv,
                               const nmc_bf16 *dout, const nmc_bf16 *out, const float *lse,
                               const nmc_bf16 *q, const nmc_bf16 *k, const nmc_bf16 *v,
                               const int32_t *doc_start, int B, int T, int H, int KVH,
                               int hd, float scale, nmc_cuda_ctx_t *c);

#ifdef __cplusplus
}
#endif
#endif
