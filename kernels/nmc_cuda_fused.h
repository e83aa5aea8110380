/* nmc_cuda_fused.h — the CUDA "fast path" kernels (NMC_CUDA_FAST=1, runtime/dev_cuda.c):
 * bandwidth-shaped twins of ops in nmc_cuda.h plus multi-tensor optimizer kernels.
 *
 * Same semantics, argument order and dtypes as the nmc_cuda_* op they replace; what changes
 * is the launch shape: 16-byte vectors (8 bf16 per load), a group of lanes per row instead
 * of a 256-thread block per row (RMSNorm rows of 16..4096 elements), one sin/cos table per
 * token shared by all heads (RoPE). Implemented in kernels/fused.cu (elementwise) and
 * kernels/optim.cu (multi-tensor AdamW / sum of squares, which share adamw's per-element
 * math and so give the CPU's bits).
 *
 * Shape/alignment limits: every *_fast op returns NMC_CUDA_FAST_UNSUPPORTED (and records no
 * error, queues nothing) when its fast kernel does not take the shape — D or hd not a
 * multiple of 8 / 16, a pointer not 16-byte aligned, D > 4096 — and the caller then runs
 * the plain op. 0 = done, -1 = error (nmc_cuda_last_error), as the rest of the API.
 *
 * Test tolerances (tests/gpu/test_dev_cuda.c, fast vs the fp32 CPU device; and
 * tests/gpu/fused_emu on the CPU emulator vs the plain-C references): as the plain ops —
 * bf16 outputs within 1-2 bf16 ulps (rtol 1.6e-2) plus a small atol; rstd rtol 1e-4 (fp32
 * sum order differs); AdamW / sumsq as nmc_cuda_adamw / nmc_cuda_sumsq (bitwise / 1e-9).
 */
#ifndef NMC_CUDA_FUSED_H
#define NMC_CUDA_FUSED_H
#include "nmc_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NMC_CUDA_FAST_UNSUPPORTED 1

/* RMSNorm (nmc_cuda_rmsnorm_fwd / _bwd semantics): D % 8 == 0, D <= 4096, x/y/dy/dx/w
 * 16-byte aligned. dw (fp32, may be NULL) is accumulated with the deterministic column sum
 * of the plain op. */
int nmc_cuda_rmsnorm_fwd_fast(nmc_bf16 *y, float *rstd, const nmc_bf16 *x, const nmc_bf16 *w,
                              int N, int D, float eps, nmc_cuda_ctx_t *c);
int nmc_cuda_rmsnorm_bwd_fast(nmc_bf16 *dx, float *dw, const nmc_bf16 *dy, const nmc_bf16 *x,
                              const nmc_bf16 *w, const float *rstd, int N, int D,
                              nmc_cuda_ctx_t *c);

/* RoPE in place (nmc_cuda_rope_fwd / _bwd semantics): hd % 16 == 0, hd <= 512, x 16-byte
 * aligned. One block per token. */
int nmc_cuda_rope_fwd_fast(nmc_bf16 *x, const int32_t *pos, const float *inv_freq, int N,
                           int nh, int hd, nmc_cuda_ctx_t *c);
int nmc_cuda_rope_bwd_fast(nmc_bf16 *dx, const int32_t *pos, const float *inv_freq, int N,
                           int nh, int hd, nmc_cuda_ctx_t *c);

/* SwiGLU (nmc_cuda_swiglu_fwd / _bwd semantics): n % 8 == 0, every pointer 16-byte aligned. */
int nmc_cuda_swiglu_fwd_fast(nmc_bf16 *h, const nmc_bf16 *g, const nmc_bf16 *u, size_t n,
                             nmc_cuda_ctx_t *c);
int nmc_cuda_swiglu_bwd_fast(nmc_bf16 *dg, nmc_bf16 *du, const nmc_bf16 *dh, const nmc_bf16 *g,
                             const nmc_bf16 *u, size_t n, nmc_cuda_ctx_t *c);

/* ---- multi-tensor optimizer (kernels/optim.cu) --------------------------------------- */
/* One entry per tensor. The table lives in DEVICE memory when a kernel reads it; the host
 * fills it (nmc_cuda_mt_prepare sets block0) and uploads it once: nothing in it depends on
 * the step or the learning rate, so it stays valid across steps. */
typedef struct {
    float *p;                  /* fp32 master (AdamW) / tensor (sumsq) */
    nmc_bf16 *pb;              /* bf16 copy rewritten by AdamW, or NULL */
    const float *g;            /* fp32 gradient (AdamW) */
    float *m, *v;              /* AdamW moments */
    unsigned long long n;      /* elements */
    unsigned long long block0; /* first block of this tensor (nmc_cuda_mt_prepare) */
    float wd;                  /* weight decay of this tensor (0 = none) */
    float pad_;
} nmc_cuda_mt_t;

#define NMC_CUDA_MT_CHUNK 2048 /* elements per block: 256 threads x 8 */

/* Sets block0 of every entry (entries in order, ceil(n / NMC_CUDA_MT_CHUNK) blocks each)
 * and returns the total number of blocks (the grid). Host only. */
unsigned long long nmc_cuda_mt_prepare(nmc_cuda_mt_t *tab, int count);

/* AdamW (nmc_cuda_adamw_master / nmc_cuda_adamw per entry: pb NULL = fp32 only) over every
 * tensor of the device table dtab in ONE launch. clip_sumsq: device double holding the
 * global sum of squares of the gradients, or NULL: when given, each gradient is read as
 * g * coef with coef = max_norm / (sqrt(*clip_sumsq) + 1e-6) if coef < 1 — the bits of
 * nmc_cuda_clip_scale followed by AdamW, without writing the scaled gradients back. */
int nmc_cuda_adamw_multi(const nmc_cuda_mt_t *dtab, int count, unsigned long long blocks,
                         float lr, float beta1, float beta2, float eps, int adam_l2, long step,
                         const double *clip_sumsq, float max_norm, nmc_cuda_ctx_t *c);

/* *out (device double) += sum over every table entry of sum(p[i]^2) (the `p` field), one
 * launch + one fixed-order reduction of the per-block partials: deterministic. */
int nmc_cuda_sumsq_multi(double *out, const nmc_cuda_mt_t *dtab, int count,
                         unsigned long long blocks, nmc_cuda_ctx_t *c);

#ifdef __cplusplus
}
#endif
#endif
