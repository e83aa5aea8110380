/* nmc_kernels.h — the training ops of the Llama-family decoder, CPU (fp32) and CUDA (bf16).
 *
 * Every op has a plain-C implementation nmc_cpu_<op> (kernels/<op>.c): the reference the
 * CUDA kernels are tested against AND the real CPU training path (blocked, threaded).
 * The CUDA twin nmc_cuda_<op> (kernels/<op>.cu) takes the same arguments in the same order,
 * with 16-bit tensors as nmc_bf16 (bf16 storage, fp32 accumulation) plus a trailing
 * nmc_cuda_ctx_t*. Statistics saved for backward (rstd, lse) are fp32 on both sides.
 *
 * Layout conventions (row-major, contiguous):
 *   N = B*T tokens; D model dim; H query heads; KVH key/value heads (H % KVH == 0);
 *   hd head dim (even); F MLP hidden dim; V vocabulary.
 *   activations [N, D]; q [N, H*hd]; k, v [N, KVH*hd]; linear weights [out, in] (HF layout),
 *   so y = x @ W^T.
 * Backward ops ACCUMULATE into weight gradients (dW += ...) and OVERWRITE input gradients
 * unless stated otherwise, so gradient accumulation across micro-batches is free.
 */
#ifndef NMC_KERNELS_H
#define NMC_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CPU threading ---------------------------------------------------------------- */
/* Threads used by CPU kernels (default: nmc_cpu_cores()). Deterministic results for a given
 * thread count: work is split statically, reductions are done in a fixed order. */
void nmc_cpu_set_threads(int n);
/* More threads than this is never useful for the op sizes we run and bounds the pool
 * (nmc_cpu_set_threads caps at it; `nmc train --threads` refuses more). */
#define NMC_CPU_MAX_THREADS 256
int nmc_cpu_threads(void);
/* Cores this process may run on (its CPU affinity mask, else the online cores; the
 * default thread count); *restricted (may be NULL) = the mask is narrower than the online
 * cores, i.e. something (a launcher's binding, taskset) already partitioned them. */
int nmc_cpu_cores(int *restricted);

/* ---- matmul ------------------------------------------------------------------------ */
/* C[M,N] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T.
 * A is [M,K] (transA=0) or [K,M] (transA=1); B is [K,N] (transB=0) or [N,K] (transB=1).
 * Linear forward: y = x @ W^T  -> matmul(y, x, W, N, out, in, 0, 1, 1, 0)
 * dx = dy @ W                  -> matmul(dx, dy, W, N, in, out, 0, 0, 1, 0)
 * dW += dy^T @ x               -> matmul(dW, dy, x, out, in, N, 1, 0, 1, 1) */
void nmc_cpu_matmul(float *C, const float *A, const float *B, int M, int N, int K,
                    int transA, int transB, float alpha, float beta);
/* bias: y[N,C] += b[C]; db[C] += sum_rows dy */
void nmc_cpu_bias_fwd(float *y, const float *b, int N, int C);
void nmc_cpu_bias_bwd(float *db, const float *dy, int N, int C);

/* ---- embedding --------------------------------------------------------------------- */
void nmc_cpu_embedding_fwd(float *out, const int32_t *ids, const float *table, int N, int D);
/* dtable[V,D] += scatter(dout) */
void nmc_cpu_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int N, int D);

/* ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w ------------------------------------ */
void nmc_cpu_rmsnorm_fwd(float *y, float *rstd /*[N]*/, const float *x, const float *w,
                         int N, int D, float eps);
/* dx overwritten; dw accumulated (dw may be NULL for a frozen weight) */
void nmc_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x,
                         const float *w, const float *rstd, int N, int D);

/* ---- RoPE (HF rotate_half convention: pairs (i, i + hd/2)) ------------------------- */
typedef enum { NMC_ROPE_DEFAULT = 0, NMC_ROPE_LINEAR = 1, NMC_ROPE_LLAMA3 = 2 } nmc_rope_type_t;
typedef struct {
    nmc_rope_type_t type;
    double theta;                     /* rope_theta */
    double factor;                    /* linear / llama3 */
    double low_freq_factor;           /* llama3 */
    double high_freq_factor;          /* llama3 */
    double original_max_position;     /* llama3: original_max_position_embeddings */
} nmc_rope_cfg_t;
/* inv_freq[hd/2] exactly as transformers computes it (float32 arithmetic, as torch does). */
void nmc_rope_inv_freq(float *inv_freq, int hd, const nmc_rope_cfg_t *cfg);
/* x [N, nh*hd] rotated in place at positions pos[N]. bwd applies the inverse rotation to dx. */
void nmc_cpu_rope_fwd(float *x, const int32_t *pos, const float *inv_freq, int N, int nh, int hd);
void nmc_cpu_rope_bwd(float *dx, const int32_t *pos, const float *inv_freq, int N, int nh, int hd);

/* ---- causal GQA attention with packed-document boundaries -------------------------- */
/* q [B*T, H*hd], k/v [B*T, KVH*hd], out [B*T, H*hd], lse [B, H, T] (natural log).
 * Token i of a row attends to j with doc_start[i] <= j <= i (indices within the row);
 * doc_start == NULL means one document per row (plain causal). Scores are scaled by
 * `scale` (1/sqrt(hd)). No T x T matrix is kept (online softmax). */
void nmc_cpu_attention_fwd(float *out, float *lse, const float *q, const float *k,
                           const float *v, const int32_t *doc_start, int B, int T, int H,
                           int KVH, int hd, float scale);
/* dq overwritten; dk, dv overwritten (sums over the query heads of each group). */
void nmc_cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout,
                           const float *out, const float *lse, const float *q, const float *k,
                           const float *v, const int32_t *doc_start, int B, int T, int H,
                           int KVH, int hd, float scale);

/* ---- SwiGLU: h = silu(g) * u ------------------------------------------------------- */
void nmc_cpu_swiglu_fwd(float *h, const float *g, const float *u, size_t n);
void nmc_cpu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                        size_t n);

/* ---- fused, chunked lm_head + cross-entropy ---------------------------------------- */
/* x [N,D] final hidden states, W [V,D] lm_head weight, labels [N] (-100 = ignored).
 * Returns the SUM over non-ignored tokens of the (label-smoothed) CE loss, in double.
 * Backward is fused: dx [N,D] is overwritten with grad_scale * d(sum loss)/dx, and
 * dW (may be NULL when frozen) accumulates grad_scale * d(sum loss)/dW. Logits are
 * computed `chunk` rows at a time (never [N,V] at once). label_smoothing as in
 * torch.nn.functional.cross_entropy. Pass dx == NULL for a forward-only (eval) call. */
double nmc_cpu_lmhead_ce(float *dx, float *dW, const float *x, const float *W,
                         const int32_t *labels, int N, int D, int V, float label_smoothing,
                         float grad_scale, int chunk);
/* The same with the caller's scratch: ws (64-byte aligned) holds at least
 * nmc_cpu_lmhead_ce_ws_floats(N, V, chunk) floats; ws == NULL allocates per call. */
double nmc_cpu_lmhead_ce_ws(float *dx, float *dW, const float *x, const float *W,
                            const int32_t *labels, int N, int D, int V, float label_smoothing,
                            float grad_scale, int chunk, float *ws);
size_t nmc_cpu_lmhead_ce_ws_floats(int N, int V, int chunk);

/* ---- optimizer and gradient utilities ---------------------------------------------- */
/* torch.optim.AdamW semantics (decoupled decay p -= lr*wd*p, then the Adam step with
 * bias corrections; eps added to sqrt(v_hat)). step is 1-based. wd = 0 gives Adam
 * without L2; torch.optim.Adam's coupled L2 is `adam_l2` (g += wd*p first). */
void nmc_cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr,
                   float beta1, float beta2, float eps, float wd, int adam_l2, long step);
/* sum of squares in double, fixed reduction order */
double nmc_cpu_sumsq(const float *x, size_t n);
void nmc_cpu_scale(float *x, size_t n, float s);
/* y += a * x */
void nmc_cpu_axpy(float *y, const float *x, size_t n, float a);

/* ---- dropout ----------------------------------------------------------------------- */
/* mask[n] in {0, 1/(1-p)} drawn from a counter-based RNG (seed, offset): reproducible and
 * identical on CPU and GPU. y = x * mask. */
void nmc_cpu_dropout_mask(float *mask, size_t n, float p, uint64_t seed, uint64_t offset);

/* ---- bf16 conversion (round-to-nearest-even, as torch) ----------------------------- */
typedef uint16_t nmc_bf16;
void nmc_f32_to_bf16(nmc_bf16 *dst, const float *src, size_t n);
void nmc_bf16_to_f32(float *dst, const nmc_bf16 *src, size_t n);

/* ---- CUDA ---------------------------------------------------------------------------- */
#ifdef NMC_CUDA
typedef struct nmc_cuda_ctx nmc_cuda_ctx_t;
/* Creates stream, cuBLASLt handle and workspace on `device`. Returns NULL and writes a
 * message (with file:line of the failing call) into err[errcap] on failure. */
nmc_cuda_ctx_t *nmc_cuda_ctx_new(int device, char *err, size_t errcap);
void nmc_cuda_ctx_free(nmc_cuda_ctx_t *c);
/* Last CUDA/cuBLAS error recorded by any nmc_cuda_* call ("" if none); cleared by reading. */
const char *nmc_cuda_last_error(nmc_cuda_ctx_t *c);
int nmc_cuda_device_count(void);
int nmc_cuda_sync(nmc_cuda_ctx_t *c); /* 0 ok, -1 error (see last_error) */
#endif

#ifdef __cplusplus
}
#endif
#endif
