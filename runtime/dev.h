/* dev.h — the device-ops interface: the ONLY way the model (and the trainer) touches
 * tensors. A device is a table of function pointers plus opaque device buffers.
 *
 * Implementations: runtime/dev_cpu.c (fp32 activations, nmc_cpu_* kernels). A CUDA device
 * (runtime/dev_cuda.c over kernels/nmc_cuda.h: bf16 activations) fills the same table.
 *
 * Dtypes. Every op's tensors are `void *` device buffers:
 *   - "act" tensors (activations, their gradients, the weights the forward reads) are in
 *     the device's activation dtype dev->act (fp32 on CPU, bf16 on CUDA);
 *   - tensors typed `float *` are fp32 on every device: weight gradients that accumulate,
 *     optimizer master weights and moments, and the statistics saved for backward
 *     (rstd, lse);
 *   - index tensors (ids, labels, positions, doc_start) are int32 device buffers;
 *   - scalar results (CE loss sum, sum of squares) are ADDED into a device double, read
 *     with dev->download(), so no op forces the host to wait.
 * Op semantics are those of the same-named nmc_cpu_* op in kernels/nmc_kernels.h (same
 * argument order) unless the comment here says otherwise.
 *
 * Errors: every function returns 0, or -1 after which dev->last_error(dev) says why
 * ("" when nothing failed). The model turns that into a diagnostic. Allocation failure
 * returns NULL (not an abort: device memory is a resource the user sizes).
 *
 * Multi-device: one nmc_dev_t per device (rank). Collectives are not part of this table;
 * they belong to a separate communicator that works on the same device buffers.
 */
#ifndef NMC_DEV_H
#define NMC_DEV_H
#include <stddef.h>
#include <stdint.h>

typedef enum { NMC_DTYPE_F32 = 0, NMC_DTYPE_BF16 = 1 } nmc_dtype_t;
typedef enum { NMC_DEV_CPU = 0, NMC_DEV_CUDA = 1 } nmc_dev_kind_t;

typedef struct nmc_dev nmc_dev_t;

/* One tensor of a multi-tensor AdamW (dev->adamw_many): the arguments of dev->adamw. */
typedef struct {
    float *p;          /* fp32 master */
    void *p_act;       /* act copy rewritten from p, or NULL (as dev->adamw) */
    const float *g;    /* fp32 gradient */
    float *m, *v;      /* moments */
    size_t n;          /* elements */
    float wd;          /* weight decay of this tensor */
} nmc_dev_adam_t;

struct nmc_dev {
    nmc_dev_kind_t kind;
    const char *name;   /* "cpu", "cuda:0" (static or owned by impl) */
    nmc_dtype_t act;    /* activation dtype */
    size_t act_size;    /* bytes per activation element (4 or 2) */
    void *impl;         /* implementation state */

    /* ---- memory -------------------------------------------------------------------- */
    /* Zeroed buffer of `bytes` (NULL on failure). free(NULL) is a no-op. */
    void *(*alloc)(nmc_dev_t *dev, size_t bytes);
    void (*free)(nmc_dev_t *dev, void *p);
    /* Raw copies (host <-> device, device -> device). download synchronizes. */
    int (*upload)(nmc_dev_t *dev, void *dst, const void *host_src, size_t bytes);
    int (*download)(nmc_dev_t *dev, void *host_dst, const void *src, size_t bytes);
    int (*copy)(nmc_dev_t *dev, void *dst, const void *src, size_t bytes);
    int (*zero)(nmc_dev_t *dev, void *dst, size_t bytes);
    /* Host fp32 <-> device tensor of dtype dt (n elements; bf16 rounds to nearest even). */
    int (*upload_f32)(nmc_dev_t *dev, void *dst, nmc_dtype_t dt, const float *host_src,
                      size_t n);
    int (*download_f32)(nmc_dev_t *dev, float *host_dst, const void *src, nmc_dtype_t dt,
                        size_t n);
    /* Device fp32 -> device act dtype (the forward copy of a master weight). */
    int (*f32_to_act)(nmc_dev_t *dev, void *dst, const float *src, size_t n);
    /* Wait for queued work; returns the first asynchronous error. */
    int (*sync)(nmc_dev_t *dev);
    const char *(*last_error)(nmc_dev_t *dev);
    void (*destroy)(nmc_dev_t *dev); /* frees the device object itself */

    /* ---- linear algebra (act tensors unless typed float) ---------------------------- */
    int (*matmul)(nmc_dev_t *dev, void *C, const void *A, const void *B, int M, int N, int K,
                  int transA, int transB, float alpha, float beta);
    /* C fp32 (weight-gradient accumulation with beta = 1). */
    int (*matmul_f32c)(nmc_dev_t *dev, float *C, const void *A, const void *B, int M, int N,
                       int K, int transA, int transB, float alpha, float beta);
    int (*bias_fwd)(nmc_dev_t *dev, void *y, const void *b, int N, int C);
    int (*bias_bwd)(nmc_dev_t *dev, float *db, const void *dy, int N, int C);
    /* y[n] += a * x[n], act tensors (residual adds, gradient sums). */
    int (*add_act)(nmc_dev_t *dev, void *y, const void *x, size_t n, float a);

    /* ---- layers ------------------------------------------------------------------------- */
    int (*embedding_fwd)(nmc_dev_t *dev, void *out, const int32_t *ids, const void *table,
                         int N, int D);
    int (*embedding_bwd)(nmc_dev_t *dev, float *dtable, const void *dout, const int32_t *ids,
                         int N, int D);
    int (*rmsnorm_fwd)(nmc_dev_t *dev, void *y, float *rstd, const void *x, const void *w,
                       int N, int D, float eps);
    /* dx overwritten; dw (fp32, may be NULL) accumulated. */
    int (*rmsnorm_bwd)(nmc_dev_t *dev, void *dx, float *dw, const void *dy, const void *x,
                       const void *w, const float *rstd, int N, int D);
    /* inv_freq: fp32 device buffer [hd/2] (upload nmc_rope_inv_freq's output). */
    int (*rope_fwd)(nmc_dev_t *dev, void *x, const int32_t *pos, const float *inv_freq, int N,
                    int nh, int hd);
    int (*rope_bwd)(nmc_dev_t *dev, void *dx, const int32_t *pos, const float *inv_freq,
                    int N, int nh, int hd);
    int (*attention_fwd)(nmc_dev_t *dev, void *out, float *lse, const void *q, const void *k,
                         const void *v, const int32_t *doc_start, int B, int T, int H,
                         int KVH, int hd, float scale);
    int (*attention_bwd)(nmc_dev_t *dev, void *dq, void *dk, void *dv, const void *dout,
                         const void *out, const float *lse, const void *q, const void *k,
                         const void *v, const int32_t *doc_start, int B, int T, int H,
                         int KVH, int hd, float scale);
    int (*swiglu_fwd)(nmc_dev_t *dev, void *h, const void *g, const void *u, size_t n);
    int (*swiglu_bwd)(nmc_dev_t *dev, void *dg, void *du, const void *dh, const void *g,
                      const void *u, size_t n);
    /* *loss_sum (device double) += sum of CE over labelled rows. dx (act, NULL = forward
     * only) overwritten, dW (fp32, may be NULL) accumulated, both scaled by grad_scale. */
    int (*lmhead_ce)(nmc_dev_t *dev, double *loss_sum, void *dx, float *dW, const void *x,
                     const void *W, const int32_t *labels, int N, int D, int V,
                     float label_smoothing, float grad_scale, int chunk);

    /* ---- randomness (counter-based, identical on every device: nmc_dropout_rng.h) ----- */
    /* y = x * mask(seed, offset), mask in {0, 1/(1-p)}; backward: the same call on dy. */
    int (*dropout_apply)(nmc_dev_t *dev, void *y, const void *x, size_t n, float p,
                         uint64_t seed, uint64_t offset);
    /* x[i] += mag * (2u - 1), u = nmc_dropout_uniform(seed, offset + i) (NEFTune noise). */
    int (*add_uniform_noise)(nmc_dev_t *dev, void *x, size_t n, float mag, uint64_t seed,
                             uint64_t offset);

    /* ---- optimizer and gradient utilities (fp32 tensors) ----------------------------- */
    /* torch.optim.AdamW on the fp32 master p; when p_act != NULL (a device whose act
     * dtype is not fp32) the act copy is rewritten from the updated p. */
    int (*adamw)(nmc_dev_t *dev, float *p, void *p_act, const float *g, float *m, float *v,
                 size_t n, float lr, float beta1, float beta2, float eps, float wd,
                 int adam_l2, long step);
    int (*sumsq)(nmc_dev_t *dev, double *out, const float *x, size_t n); /* *out += */
    int (*scale)(nmc_dev_t *dev, float *x, size_t n, float s);
    int (*axpy)(nmc_dev_t *dev, float *y, const float *x, size_t n, float a);

    /* ---- optional multi-tensor ops (NULL where a device lacks them: callers then loop
     * over the per-tensor ops above). The CUDA device fills them while its fast path is
     * on (NMC_CUDA_FAST=1, nmc_dev_cuda_set_fast). Tables are host arrays; the device may
     * keep a copy of their contents, so reusing the same table every step is cheapest. */
    /* dev->adamw on each t[i] (wd per tensor), as one launch. clip_sumsq (device double,
     * NULL = none): each gradient is read as g * coef, coef = max_norm / (sqrt(*clip_sumsq)
     * + 1e-6) when that is < 1 — the bits of scaling the grads first (clip_grad_norm_) —
     * but the stored grads are left unscaled. */
    int (*adamw_many)(nmc_dev_t *dev, const nmc_dev_adam_t *t, size_t count, float lr,
                      float beta1, float beta2, float eps, int adam_l2, long step,
                      const double *clip_sumsq, float max_norm);
    /* *out += sum over i of sum(x[i][j]^2), j < n[i]: dev->sumsq of every tensor at once,
     * deterministic. */
    int (*sumsq_many)(nmc_dev_t *dev, double *out, const float *const *x, const size_t *n,
                      size_t count);
};

/* The CPU device (fp32 activations, nmc_cpu_* kernels, their thread pool). Returns a
 * new device (free with dev->destroy(dev)); never NULL. */
nmc_dev_t *nmc_dev_cpu_new(void);

/* CUDA devices: turn the fast path (kernels/nmc_cuda_fused.h: vectorized RMSNorm, RoPE,
 * SwiGLU; larger lm_head chunks; adamw_many / sumsq_many) on (1) or off (0); -1 only asks.
 * It starts on, unless NMC_CUDA_FAST=0 is in the environment at nmc_dev_cuda_new. Returns the
 * setting before the call, or -1 for a device that has no fast path (the CPU). Both
 * settings compute the same ops (tests/gpu/test_dev_cuda.c checks each against the CPU). */
int nmc_dev_cuda_set_fast(nmc_dev_t *dev, int on);

/* Bytes of n elements of dtype dt. */
size_t nmc_dtype_size(nmc_dtype_t dt);

#endif
