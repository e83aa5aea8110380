/* nmc_cuda.h — CUDA twins of the ops in nmc_kernels.h, plus device-memory helpers.
 *
 * Every nmc_cuda_<op> takes the arguments of nmc_cpu_<op> in the same order, followed by
 * the context. Conventions (all pointers are DEVICE pointers unless a name says host):
 *   - activations and their gradients are nmc_bf16 (bf16 storage, fp32 math inside);
 *   - statistics saved for backward (rstd, lse) are fp32, as on the CPU;
 *   - WEIGHT GRADIENTS THAT ACCUMULATE (dtable, dw, db, lm_head dW, optimizer grads) are
 *     fp32: summing many micro-batches in bf16 would lose the small updates;
 *   - scalar results the CPU op returns (CE loss sum, sum of squares) are ADDED into a
 *     device double passed as the first argument, so no call synchronizes the host.
 * All calls are asynchronous on the context's stream and return 0, or -1 with a message
 * ("file:line: call: error") retrievable with nmc_cuda_last_error(). Errors from an
 * earlier asynchronous kernel may surface in a later call or in nmc_cuda_sync().
 * Determinism: every op is bitwise reproducible run to run EXCEPT nmc_cuda_embedding_bwd,
 * which scatters with fp32 atomicAdd (order of additions varies between runs).
 * A context (one stream) is used by one host thread at a time; its scratch buffer is shared
 * by the ops, which is safe because they are ordered on that stream.
 * Requires compute capability >= 8.0 (bf16 tensor cores); see docs/cuda.md.
 */
#ifndef NMC_CUDA_H
#define NMC_CUDA_H
#ifndef NMC_CUDA
#define NMC_CUDA 1
#endif
#include "nmc_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- device memory (ownership: the caller frees what nmc_cuda_malloc returns) ------- */
void *nmc_cuda_malloc(nmc_cuda_ctx_t *c, size_t bytes); /* NULL on failure (last_error) */
void nmc_cuda_free(nmc_cuda_ctx_t *c, void *p);          /* NULL is a no-op */
int nmc_cuda_memcpy_h2d(nmc_cuda_ctx_t *c, void *dst, const void *host_src, size_t bytes);
/* synchronizes the stream: host_dst is valid on return */
int nmc_cuda_memcpy_d2h(nmc_cuda_ctx_t *c, void *host_dst, const void *src, size_t bytes);
int nmc_cuda_memset0(nmc_cuda_ctx_t *c, void *dst, size_t bytes);
/* the cudaStream_t the ops run on (as void* to keep this header free of CUDA headers) */
void *nmc_cuda_stream(nmc_cuda_ctx_t *c);

/* ---- matmul (cuBLASLt, fp32 compute) ------------------------------------------------ */
/* Same semantics as nmc_cpu_matmul (row-major, op(X) = X or X^T). C is bf16; beta != 0
 * reads the old bf16 C. */
int nmc_cuda_matmul(nmc_bf16 *C, const nmc_bf16 *A, const nmc_bf16 *B, int M, int N, int K,
                    int transA, int transB, float alpha, float beta, nmc_cuda_ctx_t *c);
/* Same, with an fp32 C (weight-gradient accumulation: beta = 1). */
int nmc_cuda_matmul_f32c(float *C, const nmc_bf16 *A, const nmc_bf16 *B, int M, int N, int K,
                         int transA, int transB, float alpha, float beta, nmc_cuda_ctx_t *c);
int nmc_cuda_bias_fwd(nmc_bf16 *y, const nmc_bf16 *b, int N, int C, nmc_cuda_ctx_t *c);
int nmc_cuda_bias_bwd(float *db, const nmc_bf16 *dy, int N, int C, nmc_cuda_ctx_t *c);

/* ---- embedding ------------------------------------------------------------------------ */
/* ids outside [0, V) are not checked here (V is unknown): validate ids on the host. */
int nmc_cuda_embedding_fwd(nmc_bf16 *out, const int32_t *ids, const nmc_bf16 *table, int N,
                           int D, nmc_cuda_ctx_t *c);
int nmc_cuda_embedding_bwd(float *dtable, const nmc_bf16 *dout, const int32_t *ids, int N,
                           int D, nmc_cuda_ctx_t *c);

/* ---- RMSNorm ------------------------------------------------------------------------- */
int nmc_cuda_rmsnorm_fwd(nmc_bf16 *y, float *rstd, const nmc_bf16 *x, const nmc_bf16 *w,
                         int N, int D, float eps, nmc_cuda_ctx_t *c);
int nmc_cuda_rmsnorm_bwd(nmc_bf16 *dx, float *dw, const nmc_bf16 *dy, const nmc_bf16 *x,
                         const nmc_bf16 *w, const float *rstd, int N, int D,
                         nmc_cuda_ctx_t *c);

/* ---- RoPE (inv_freq: fp32 device array [hd/2], from nmc_rope_inv_freq) -------------- */
int nmc_cuda_rope_fwd(nmc_bf16 *x, const int32_t *pos, const float *inv_freq, int N, int nh,
                      int hd, nmc_cuda_ctx_t *c);
int nmc_cuda_rope_bwd(nmc_bf16 *dx, const int32_t *pos, const float *inv_freq, int N, int nh,
                      int hd, nmc_cuda_ctx_t *c);

/* ---- attention (flash-style, bf16 tensor cores; hd in {32, 64, 96, 128}) ------------- */
/* doc_start: device int32 [B*T] (or NULL), lse: fp32 [B, H, T]. */
int nmc_cuda_attention_fwd(nmc_bf16 *out, float *lse, const nmc_bf16 *q, const nmc_bf16 *k,
                           const nmc_bf16 *v, const int32_t *doc_start, int B, int T, int H,
                           int KVH, int hd, float scale, nmc_cuda_ctx_t *c);
int nmc_cuda_attention_bwd(nmc_bf16 *dq, nmc_bf16 *dk, nmc_bf16 *dv, const nmc_bf16 *dout,
                           const nmc_bf16 *out, const float *lse, const nmc_bf16 *q,
                           const nmc_bf16 *k, const nmc_bf16 *v, const int32_t *doc_start,
                           int B, int T, int H, int KVH, int hd, float scale,
                           nmc_cuda_ctx_t *c);

/* ---- SwiGLU -------------------------------------------------------------------------- */
int nmc_cuda_swiglu_fwd(nmc_bf16 *h, const nmc_bf16 *g, const nmc_bf16 *u, size_t n,
                        nmc_cuda_ctx_t *c);
int nmc_cuda_swiglu_bwd(nmc_bf16 *dg, nmc_bf16 *du, const nmc_bf16 *dh, const nmc_bf16 *g,
                        const nmc_bf16 *u, size_t n, nmc_cuda_ctx_t *c);

/* ---- fused chunked lm_head + cross-entropy ------------------------------------------ */
/* loss_sum (device double) += SUM of the CE loss over non-ignored rows; the rest as
 * nmc_cpu_lmhead_ce. dW is fp32 (accumulated, may be NULL); dx bf16 (overwritten, NULL
 * = forward only). Labels outside [0, V) other than -100 are treated as ignored (the data
 * loader validates them). Scratch: chunk*V*4 bytes owned by the context. */
int nmc_cuda_lmhead_ce(double *loss_sum, nmc_bf16 *dx, float *dW, const nmc_bf16 *x,
                       const nmc_bf16 *W, const int32_t *labels, int N, int D, int V,
                       float label_smoothing, float grad_scale, int chunk, nmc_cuda_ctx_t *c);

/* ---- optimizer and gradient utilities -------------------------------------------------- */
/* fp32 params, grads and moments (as nmc_cpu_adamw). */
int nmc_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr,
                   float beta1, float beta2, float eps, float wd, int adam_l2, long step,
                   nmc_cuda_ctx_t *c);
/* fp32 master weights p, plus the bf16 copy p_bf16 the forward pass reads (rewritten). */
int nmc_cuda_adamw_master(float *p, nmc_bf16 *p_bf16, const float *g, float *m, float *v,
                          size_t n, float lr, float beta1, float beta2, float eps, float wd,
                          int adam_l2, long step, nmc_cuda_ctx_t *c);
/* *out (device double) += sum of squares, fixed reduction order (deterministic). */
int nmc_cuda_sumsq(double *out, const float *x, size_t n, nmc_cuda_ctx_t *c);
int nmc_cuda_sumsq_bf16(double *out, const nmc_bf16 *x, size_t n, nmc_cuda_ctx_t *c);
int nmc_cuda_scale(float *x, size_t n, float s, nmc_cuda_ctx_t *c);
/* gradient clipping without a host sync: x *= min(1, max_norm / (sqrt(*sumsq) + 1e-6))
 * (torch.nn.utils.clip_grad_norm_). sumsq is a device double. */
int nmc_cuda_clip_scale(float *x, size_t n, const double *sumsq, float max_norm,
                        nmc_cuda_ctx_t *c);
int nmc_cuda_axpy(float *y, const float *x, size_t n, float a, nmc_cuda_ctx_t *c);

/* ---- dropout (same counter-based RNG as kernels/dropout.c) ----------------------------- */
int nmc_cuda_dropout_mask(float *mask, size_t n, float p, uint64_t seed, uint64_t offset,
                          nmc_cuda_ctx_t *c);
/* y = x * mask(seed, offset) without storing the mask; backward: the same call on dy. */
int nmc_cuda_dropout_apply(nmc_bf16 *y, const nmc_bf16 *x, size_t n, float p, uint64_t seed,
                           uint64_t offset, nmc_cuda_ctx_t *c);

/* ---- bf16 conversion (round-to-nearest-even) -------------------------------------------- */
int nmc_cuda_f32_to_bf16(nmc_bf16 *dst, const float *src, size_t n, nmc_cuda_ctx_t *c);
int nmc_cuda_bf16_to_f32(float *dst, const nmc_bf16 *src, size_t n, nmc_cuda_ctx_t *c);

#ifdef __cplusplus
}
#endif
#endif
