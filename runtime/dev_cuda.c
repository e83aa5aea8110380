/* dev_cuda.c — the CUDA device: runtime/dev.h's table over kernels/nmc_cuda.h (+ the few
 * extra entry points of kernels/nmc_cuda_extra.h).
 *
 * Activations are bf16 (act_size 2); weight gradients, master weights, moments and saved
 * statistics are fp32; scalar results are added into device doubles. Every op is queued
 * on the context's single stream: nothing here synchronizes the host except download,
 * sync, free, the rare growth of a scratch buffer, and uploads too large for the pinned
 * staging ring (weights, at load time). Buffers are cudaMalloc'ed (never managed memory)
 * and zeroed on the stream; allocations are counted for nmc_dev_mem_stats.
 *
 * Errors: an op that fails returns -1 and leaves "dev_cuda.c:LINE: op: <kernel error with
 * its own file:line>" in last_error. Asynchronous kernel faults surface at a later call or
 * at sync. What belongs here: glue only — kernels live in kernels/.
 *
 * Compiled to nothing but a stub constructor unless NMC_CUDA is defined (CPU-only build).
 */
#include "dev.h"
#include "dev_select.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef NMC_CUDA
#include "nmc_cuda.h"
#include "nmc_cuda_extra.h"
#include "nmc_cuda_fa2.h"
#include "nmc_cuda_fused.h"

#define STAGE_BYTES (8u << 20) /* pinned ring for per-step uploads: ~32 steps of 16k-token
                                  batches (4 int32 arrays) before it waits once */
#define CE_MIN_LOGITS ((size_t)1 << 26) /* lm_head chunk floor: 256 MiB of fp32 logits keeps
                                           the CE matmuls large on a GPU */
#define CE_FAST_LOGITS ((size_t)1 << 28) /* fast path: 1 GiB of fp32 logits, so the dW
                                            accumulation (V*D*8 bytes per chunk) runs 2-8
                                            times per step instead of 10-31 */
#define ERR_CAP 1400

/* A multi-tensor table mirrored on the device (adamw_many / sumsq_many): uploaded again
 * only when its contents change (they are the same every step). */
typedef struct {
    nmc_cuda_mt_t *host;     /* last uploaded contents, count entries */
    nmc_cuda_mt_t *dev;      /* device copy, cap entries */
    size_t count, cap;
    unsigned long long blocks;
} mt_cache_t;

typedef struct {
    void *p;
    size_t bytes;
} alloc_rec_t;

typedef struct {
    nmc_cuda_ctx_t *ctx;
    nmc_cuda_stager_t *stage;
    int index;
    char name[24];
    char err[ERR_CAP];
    alloc_rec_t *recs;       /* live allocations (unordered) */
    size_t n_recs, cap_recs;
    size_t live, peak;       /* bytes */
    nmc_bf16 *att_pad;       /* head-dim padding buffers for attention (grown on demand) */
    size_t att_pad_bytes;
    int fast;                /* NMC_CUDA_FAST: kernels/nmc_cuda_fused.h where they apply */
    mt_cache_t mt_adam, mt_sumsq;
} cuda_impl_t;

static cuda_impl_t *I(nmc_dev_t *dev) { return (cuda_impl_t *)dev->impl; }

/* Record a failure of `what` at dev_cuda.c:line, with the context's own message. */
static int fail(nmc_dev_t *dev, int line, const char *what)
{
    cuda_impl_t *im = I(dev);
    const char *ke = nmc_cuda_last_error(im->ctx);
    snprintf(im->err, sizeof im->err, "dev_cuda.c:%d: %s: %s", line, what,
             ke && ke[0] ? ke : "failed");
    return -1;
}
#define TRY(dev, call) \
    do { if ((call) != 0) return fail((dev), __LINE__, #call); } while (0)

/* ---- memory ------------------------------------------------------------------------ */

static void track_add(cuda_impl_t *im, void *p, size_t bytes)
{
    if (im->n_recs == im->cap_recs) {
        size_t nc = im->cap_recs ? 2 * im->cap_recs : 256;
        alloc_rec_t *r = realloc(im->recs, nc * sizeof *r);
        if (!r) abort(); /* host OOM: as the arena */
        im->recs = r;
        im->cap_recs = nc;
    }
    im->recs[im->n_recs++] = (alloc_rec_t){p, bytes};
    im->live += bytes;
    if (im->live > im->peak) im->peak = im->live;
}

static void track_del(cuda_impl_t *im, void *p)
{
    for (size_t i = im->n_recs; i-- > 0;) /* newest first: frees are mostly LIFO */
        if (im->recs[i].p == p) {
            im->live -= im->recs[i].bytes;
            im->recs[i] = im->recs[--im->n_recs];
            return;
        }
}

static void *cu_alloc(nmc_dev_t *dev, size_t bytes)
{
    cuda_impl_t *im = I(dev);
    void *p = nmc_cuda_malloc(im->ctx, bytes);
    if (!p) {
        fail(dev, __LINE__, "cudaMalloc");
        return NULL;
    }
    if (nmc_cuda_memset0(im->ctx, p, bytes ? bytes : 1) != 0) {
        fail(dev, __LINE__, "zeroing a new buffer");
        nmc_cuda_free(im->ctx, p);
        return NULL;
    }
    track_add(im, p, bytes);
    return p;
}

static void cu_free(nmc_dev_t *dev, void *p)
{
    if (!p) return;
    cuda_impl_t *im = I(dev);
    track_del(im, p);
    nmc_cuda_free(im->ctx, p); /* cudaFree waits for queued work using p */
}

static int cu_upload(nmc_dev_t *dev, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return 0;
    TRY(dev, nmc_cuda_stager_upload(I(dev)->stage, dst, src, bytes, I(dev)->ctx));
    return 0;
}
static int cu_download(nmc_dev_t *dev, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return 0;
    TRY(dev, nmc_cuda_memcpy_d2h(I(dev)->ctx, dst, src, bytes));
    return 0;
}
static int cu_copy(nmc_dev_t *dev, void *dst, const void *src, size_t bytes)
{
    TRY(dev, nmc_cuda_memcpy_d2d(I(dev)->ctx, dst, src, bytes));
    return 0;
}
static int cu_zero(nmc_dev_t *dev, void *dst, size_t bytes)
{
    if (!bytes) return 0;
    TRY(dev, nmc_cuda_memset0(I(dev)->ctx, dst, bytes));
    return 0;
}

static int cu_upload_f32(nmc_dev_t *dev, void *dst, nmc_dtype_t dt, const float *src, size_t n)
{
    if (!n) return 0;
    if (dt == NMC_DTYPE_F32) return cu_upload(dev, dst, src, n * sizeof(float));
    nmc_bf16 *tmp = malloc(n * sizeof *tmp);
    if (!tmp) abort();
    nmc_f32_to_bf16(tmp, src, n); /* the host rounding (RNE) the CPU references use */
    int rc = cu_upload(dev, dst, tmp, n * sizeof *tmp);
    free(tmp);
    return rc;
}

static int cu_download_f32(nmc_dev_t *dev, float *dst, const void *src, nmc_dtype_t dt, size_t n)
{
    if (!n) return 0;
    if (dt == NMC_DTYPE_F32) return cu_download(dev, dst, src, n * sizeof(float));
    nmc_bf16 *tmp = malloc(n * sizeof *tmp);
    if (!tmp) abort();
    int rc = cu_download(dev, tmp, src, n * sizeof *tmp);
    if (!rc) nmc_bf16_to_f32(dst, tmp, n);
    free(tmp);
    return rc;
}

static int cu_f32_to_act(nmc_dev_t *dev, void *dst, const float *src, size_t n)
{
    TRY(dev, nmc_cuda_f32_to_bf16(dst, src, n, I(dev)->ctx));
    return 0;
}

static int cu_sync(nmc_dev_t *dev)
{
    TRY(dev, nmc_cuda_sync(I(dev)->ctx));
    return 0;
}

static const char *cu_last_error(nmc_dev_t *dev) { return I(dev)->err; }

static void cu_destroy(nmc_dev_t *dev)
{
    if (!dev) return;
    cuda_impl_t *im = I(dev);
    if (im) {
        if (im->ctx) nmc_cuda_sync(im->ctx);
        for (size_t i = 0; i < im->n_recs; i++) nmc_cuda_free(im->ctx, im->recs[i].p);
        if (im->att_pad) nmc_cuda_free(im->ctx, im->att_pad);
        nmc_cuda_free(im->ctx, im->mt_adam.dev);
        nmc_cuda_free(im->ctx, im->mt_sumsq.dev);
        free(im->mt_adam.host);
        free(im->mt_sumsq.host);
        nmc_cuda_stager_free(im->stage);
        nmc_cuda_ctx_free(im->ctx);
        free(im->recs);
        free(im);
    }
    free(dev);
}

/* ---- linear algebra ------------------------------------------------------------------ */

static int cu_matmul(nmc_dev_t *dev, void *C, const void *A, const void *B, int M, int N, int K,
                     int ta, int tb, float alpha, float beta)
{
    TRY(dev, nmc_cuda_matmul(C, A, B, M, N, K, ta, tb, alpha, beta, I(dev)->ctx));
    return 0;
}
static int cu_matmul_f32c(nmc_dev_t *dev, float *C, const void *A, const void *B, int M, int N,
                          int K, int ta, int tb, float alpha, float beta)
{
    TRY(dev, nmc_cuda_matmul_f32c(C, A, B, M, N, K, ta, tb, alpha, beta, I(dev)->ctx));
    return 0;
}
static int cu_bias_fwd(nmc_dev_t *dev, void *y, const void *b, int N, int C)
{
    TRY(dev, nmc_cuda_bias_fwd(y, b, N, C, I(dev)->ctx));
    return 0;
}
static int cu_bias_bwd(nmc_dev_t *dev, float *db, const void *dy, int N, int C)
{
    TRY(dev, nmc_cuda_bias_bwd(db, dy, N, C, I(dev)->ctx));
    return 0;
}
static int cu_add_act(nmc_dev_t *dev, void *y, const void *x, size_t n, float a)
{
    TRY(dev, nmc_cuda_add_bf16(y, x, n, a, I(dev)->ctx));
    return 0;
}

/* ---- layers ------------------------------------------------------------------------- */

/* Fast-path dispatch: run `call` (a nmc_cuda_*_fast op) when the fast path is on; it
 * returns NMC_CUDA_FAST_UNSUPPORTED for shapes it does not take, and the plain op below
 * the macro then runs. */
#define TRY_FAST(dev, call)                                                               \
    do {                                                                                  \
        if (I(dev)->fast) {                                                               \
            int rc_ = (call);                                                             \
            if (rc_ == 0) return 0;                                                       \
            if (rc_ != NMC_CUDA_FAST_UNSUPPORTED) return fail((dev), __LINE__, #call);    \
        }                                                                                 \
    } while (0)

static int cu_embedding_fwd(nmc_dev_t *dev, void *out, const int32_t *ids, const void *table,
                            int N, int D)
{
    TRY(dev, nmc_cuda_embedding_fwd(out, ids, table, N, D, I(dev)->ctx));
    return 0;
}
static int cu_embedding_bwd(nmc_dev_t *dev, float *dtable, const void *dout, const int32_t *ids,
                            int N, int D)
{
    TRY(dev, nmc_cuda_embedding_bwd(dtable, dout, ids, N, D, I(dev)->ctx));
    return 0;
}
static int cu_rmsnorm_fwd(nmc_dev_t *dev, void *y, float *rstd, const void *x, const void *w,
                          int N, int D, float eps)
{
    TRY_FAST(dev, nmc_cuda_rmsnorm_fwd_fast(y, rstd, x, w, N, D, eps, I(dev)->ctx));
    TRY(dev, nmc_cuda_rmsnorm_fwd(y, rstd, x, w, N, D, eps, I(dev)->ctx));
    return 0;
}
static int cu_rmsnorm_bwd(nmc_dev_t *dev, void *dx, float *dw, const void *dy, const void *x,
                          const void *w, const float *rstd, int N, int D)
{
    TRY_FAST(dev, nmc_cuda_rmsnorm_bwd_fast(dx, dw, dy, x, w, rstd, N, D, I(dev)->ctx));
    TRY(dev, nmc_cuda_rmsnorm_bwd(dx, dw, dy, x, w, rstd, N, D, I(dev)->ctx));
    return 0;
}
static int cu_rope_fwd(nmc_dev_t *dev, void *x, const int32_t *pos, const float *inv_freq, int N,
                       int nh, int hd)
{
    TRY_FAST(dev, nmc_cuda_rope_fwd_fast(x, pos, inv_freq, N, nh, hd, I(dev)->ctx));
    TRY(dev, nmc_cuda_rope_fwd(x, pos, inv_freq, N, nh, hd, I(dev)->ctx));
    return 0;
}
static int cu_rope_bwd(nmc_dev_t *dev, void *dx, const int32_t *pos, const float *inv_freq,
                       int N, int nh, int hd)
{
    TRY_FAST(dev, nmc_cuda_rope_bwd_fast(dx, pos, inv_freq, N, nh, hd, I(dev)->ctx));
    TRY(dev, nmc_cuda_rope_bwd(dx, pos, inv_freq, N, nh, hd, I(dev)->ctx));
    return 0;
}

/* ---- attention ------------------------------------------------------------------------
 * The kernels take head dims 32/64/96/128 and 16-byte aligned tensors. Anything else
 * (tiny test models with hd 16, odd carve-outs) goes through padded copies: head vectors
 * are zero-padded to the next supported size, which leaves scores and outputs unchanged
 * (zeros add nothing to q·k, and the padded output columns are dropped). */

static int att_hd(int hd)
{
    if (hd <= 32) return 32;
    if (hd <= 64) return 64;
    if (hd <= 96) return 96;
    if (hd <= 128) return 128;
    return 0;
}
static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* n bf16 of padding workspace, from one buffer grown on demand (a tensor group). */
static nmc_bf16 *pad_space(nmc_dev_t *dev, size_t n)
{
    cuda_impl_t *im = I(dev);
    size_t bytes = n * sizeof(nmc_bf16);
    if (bytes > im->att_pad_bytes) {
        if (im->att_pad) nmc_cuda_free(im->ctx, im->att_pad);
        im->att_pad_bytes = 0;
        im->att_pad = nmc_cuda_malloc(im->ctx, bytes);
        if (!im->att_pad) return NULL;
        im->att_pad_bytes = bytes;
    }
    return im->att_pad;
}

/* Kernel choice: the FlashAttention-2-style kernels (kernels/attention_fa2.cu: mma.sync,
 * register-resident scores; head dims 64 and 128) when they take the shape, else the tiled
 * WMMA kernels (kernels/attention.cu). NMC_CUDA_ATTENTION=tiled forces the latter (for
 * comparisons and as an escape hatch). Both are tested against the CPU reference. */
static int fa2_enabled(void)
{
    const char *e = getenv("NMC_CUDA_ATTENTION");
    return !(e && strcmp(e, "tiled") == 0);
}

static int attn_fwd_kernel(void *out, float *lse, const void *q, const void *k, const void *v,
                           const int32_t *doc_start, int B, int T, int H, int KVH, int hd,
                           float scale, nmc_cuda_ctx_t *c)
{
    if (fa2_enabled()) {
        int rc = nmc_cuda_attention_fa2_fwd(out, lse, q, k, v, doc_start, B, T, H, KVH, hd,
                                            scale, c);
        if (rc != NMC_CUDA_FA2_UNSUPPORTED) return rc;
    }
    return nmc_cuda_attention_fwd(out, lse, q, k, v, doc_start, B, T, H, KVH, hd, scale, c);
}

static int attn_bwd_kernel(void *dq, void *dk, void *dv, const void *dout, const void *out,
                           const float *lse, const void *q, const void *k, const void *v,
                           const int32_t *doc_start, int B, int T, int H, int KVH, int hd,
                           float scale, nmc_cuda_ctx_t *c)
{
    if (fa2_enabled()) {
        int rc = nmc_cuda_attention_fa2_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc_start, B,
                                            T, H, KVH, hd, scale, c);
        if (rc != NMC_CUDA_FA2_UNSUPPORTED) return rc;
    }
    return nmc_cuda_attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, T, H, KVH,
                                  hd, scale, c);
}

/* 16-byte aligned slices of the padding buffer */
static size_t slot16(size_t n) { return (n + 7) & ~(size_t)7; }

static int cu_attention_fwd(nmc_dev_t *dev, void *out, float *lse, const void *q, const void *k,
                            const void *v, const int32_t *doc_start, int B, int T, int H,
                            int KVH, int hd, float scale)
{
    nmc_cuda_ctx_t *c = I(dev)->ctx;
    int hp = att_hd(hd);
    if (hp == hd && aligned16(out) && aligned16(q) && aligned16(k) && aligned16(v)) {
        TRY(dev, attn_fwd_kernel(out, lse, q, k, v, doc_start, B, T, H, KVH, hd, scale, c));
        return 0;
    }
    if (!hp) {
        snprintf(I(dev)->err, ERR_CAP, "dev_cuda.c:%d: attention: head_dim %d is larger than "
                 "the CUDA kernels support (128)", __LINE__, hd);
        return -1;
    }
    size_t N = (size_t)B * (size_t)T, nq = slot16(N * H * hp), nk = slot16(N * KVH * hp);
    nmc_bf16 *w = pad_space(dev, 2 * nq + 2 * nk);
    if (!w) return fail(dev, __LINE__, "attention padding buffer");
    nmc_bf16 *qp = w, *op = qp + nq, *kp = op + nq, *vp = kp + nk;
    TRY(dev, nmc_cuda_copy_heads(qp, hp, q, hd, N * H, c));
    TRY(dev, nmc_cuda_copy_heads(kp, hp, k, hd, N * KVH, c));
    TRY(dev, nmc_cuda_copy_heads(vp, hp, v, hd, N * KVH, c));
    TRY(dev, attn_fwd_kernel(op, lse, qp, kp, vp, doc_start, B, T, H, KVH, hp, scale, c));
    TRY(dev, nmc_cuda_copy_heads(out, hd, op, hp, N * H, c));
    return 0;
}

static int cu_attention_bwd(nmc_dev_t *dev, void *dq, void *dk, void *dv, const void *dout,
                            const void *out, const float *lse, const void *q, const void *k,
                            const void *v, const int32_t *doc_start, int B, int T, int H,
                            int KVH, int hd, float scale)
{
    nmc_cuda_ctx_t *c = I(dev)->ctx;
    int hp = att_hd(hd);
    const void *all[8] = {dq, dk, dv, dout, out, q, k, v};
    int ok = hp == hd;
    for (int i = 0; i < 8 && ok; i++) ok = aligned16(all[i]);
    if (ok) {
        TRY(dev, attn_bwd_kernel(dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, T, H,
                                        KVH, hd, scale, c));
        return 0;
    }
    if (!hp) {
        snprintf(I(dev)->err, ERR_CAP, "dev_cuda.c:%d: attention: head_dim %d is larger than "
                 "the CUDA kernels support (128)", __LINE__, hd);
        return -1;
    }
    size_t N = (size_t)B * (size_t)T, nq = slot16(N * H * hp), nk = slot16(N * KVH * hp);
    nmc_bf16 *w = pad_space(dev, 4 * nq + 4 * nk);
    if (!w) return fail(dev, __LINE__, "attention padding buffer");
    nmc_bf16 *qp = w, *op = qp + nq, *dop = op + nq, *dqp = dop + nq;
    nmc_bf16 *kp = dqp + nq, *vp = kp + nk, *dkp = vp + nk, *dvp = dkp + nk;
    TRY(dev, nmc_cuda_copy_heads(qp, hp, q, hd, N * H, c));
    TRY(dev, nmc_cuda_copy_heads(op, hp, out, hd, N * H, c));
    TRY(dev, nmc_cuda_copy_heads(dop, hp, dout, hd, N * H, c));
    TRY(dev, nmc_cuda_copy_heads(kp, hp, k, hd, N * KVH, c));
    TRY(dev, nmc_cuda_copy_heads(vp, hp, v, hd, N * KVH, c));
    TRY(dev, attn_bwd_kernel(dqp, dkp, dvp, dop, op, lse, qp, kp, vp, doc_start, B, T, H,
                                    KVH, hp, scale, c));
    TRY(dev, nmc_cuda_copy_heads(dq, hd, dqp, hp, N * H, c));
    TRY(dev, nmc_cuda_copy_heads(dk, hd, dkp, hp, N * KVH, c));
    TRY(dev, nmc_cuda_copy_heads(dv, hd, dvp, hp, N * KVH, c));
    return 0;
}

static int cu_swiglu_fwd(nmc_dev_t *dev, void *h, const void *g, const void *u, size_t n)
{
    TRY_FAST(dev, nmc_cuda_swiglu_fwd_fast(h, g, u, n, I(dev)->ctx));
    TRY(dev, nmc_cuda_swiglu_fwd(h, g, u, n, I(dev)->ctx));
    return 0;
}
static int cu_swiglu_bwd(nmc_dev_t *dev, void *dg, void *du, const void *dh, const void *g,
                         const void *u, size_t n)
{
    TRY_FAST(dev, nmc_cuda_swiglu_bwd_fast(dg, du, dh, g, u, n, I(dev)->ctx));
    TRY(dev, nmc_cuda_swiglu_bwd(dg, du, dh, g, u, n, I(dev)->ctx));
    return 0;
}

/* The chunk only bounds scratch memory (rows are independent), so on the GPU it is raised
 * to CE_MIN_LOGITS logits: larger, faster matmuls. dW sums per chunk in fp32 either way.
 * Fast path: up to CE_FAST_LOGITS logits per chunk, split into equal chunks (a short last
 * chunk is a badly shaped matmul); every chunk re-reads and re-writes the fp32 dW. */
static int cu_lmhead_ce(nmc_dev_t *dev, double *loss_sum, void *dx, float *dW, const void *x,
                        const void *W, const int32_t *labels, int N, int D, int V, float ls,
                        float grad_scale, int chunk)
{
    if (V > 0 && N > 0) {
        size_t rows = (I(dev)->fast ? CE_FAST_LOGITS : CE_MIN_LOGITS) / (size_t)V;
        if (rows < 1) rows = 1;
        if (rows > (size_t)N) rows = (size_t)N;
        if (I(dev)->fast) { /* equal chunks: ceil(N / rows) of them */
            size_t nch = ((size_t)N + rows - 1) / rows;
            rows = ((size_t)N + nch - 1) / nch;
        }
        if (chunk <= 0 || (size_t)chunk < rows) chunk = (int)rows;
    }
    TRY(dev, nmc_cuda_lmhead_ce(loss_sum, dx, dW, x, W, labels, N, D, V, ls, grad_scale, chunk,
                                I(dev)->ctx));
    return 0;
}

/* ---- randomness ---------------------------------------------------------------------- */

static int cu_dropout_apply(nmc_dev_t *dev, void *y, const void *x, size_t n, float p,
                            uint64_t seed, uint64_t offset)
{
    TRY(dev, nmc_cuda_dropout_apply(y, x, n, p, seed, offset, I(dev)->ctx));
    return 0;
}
static int cu_add_uniform_noise(nmc_dev_t *dev, void *x, size_t n, float mag, uint64_t seed,
                                uint64_t offset)
{
    TRY(dev, nmc_cuda_add_uniform_noise_bf16(x, n, mag, seed, offset, I(dev)->ctx));
    return 0;
}

/* ---- optimizer and gradient utilities ---------------------------------------------- */

static int cu_adamw(nmc_dev_t *dev, float *p, void *p_act, const float *g, float *m, float *v,
                    size_t n, float lr, float b1, float b2, float eps, float wd, int adam_l2,
                    long step)
{
    nmc_cuda_ctx_t *c = I(dev)->ctx;
    if (p_act && p_act != (void *)p)
        TRY(dev, nmc_cuda_adamw_master(p, p_act, g, m, v, n, lr, b1, b2, eps, wd, adam_l2, step, c));
    else
        TRY(dev, nmc_cuda_adamw(p, g, m, v, n, lr, b1, b2, eps, wd, adam_l2, step, c));
    return 0;
}
static int cu_sumsq(nmc_dev_t *dev, double *out, const float *x, size_t n)
{
    TRY(dev, nmc_cuda_sumsq(out, x, n, I(dev)->ctx));
    return 0;
}
static int cu_scale(nmc_dev_t *dev, float *x, size_t n, float s)
{
    TRY(dev, nmc_cuda_scale(x, n, s, I(dev)->ctx));
    return 0;
}
static int cu_axpy(nmc_dev_t *dev, float *y, const float *x, size_t n, float a)
{
    TRY(dev, nmc_cuda_axpy(y, x, n, a, I(dev)->ctx));
    return 0;
}

/* ---- multi-tensor optimizer ops (fast path) ----------------------------------------- */

/* Make the device copy of `tab` (count entries) current; uploads only on a change. */
static int mt_sync(nmc_dev_t *dev, mt_cache_t *mc, nmc_cuda_mt_t *tab, size_t count)
{
    cuda_impl_t *im = I(dev);
    if (count > (size_t)INT32_MAX) {
        snprintf(im->err, ERR_CAP, "dev_cuda.c:%d: %zu tensors in one multi-tensor op (max %d)",
                 __LINE__, count, INT32_MAX);
        return -1;
    }
    mc->blocks = nmc_cuda_mt_prepare(tab, (int)count);
    size_t bytes = count * sizeof *tab;
    if (count == mc->count && mc->host && !memcmp(mc->host, tab, bytes)) return 0;
    if (count > mc->cap) {
        nmc_cuda_free(im->ctx, mc->dev); /* cudaFree waits for kernels still reading it */
        free(mc->host);
        mc->cap = 0;
        mc->count = 0;
        mc->host = malloc(bytes);
        mc->dev = nmc_cuda_malloc(im->ctx, bytes);
        if (!mc->host) abort();
        if (!mc->dev) return fail(dev, __LINE__, "multi-tensor table");
        mc->cap = count;
    }
    TRY(dev, nmc_cuda_stager_upload(im->stage, mc->dev, tab, bytes, im->ctx));
    memcpy(mc->host, tab, bytes);
    mc->count = count;
    return 0;
}

static int cu_adamw_many(nmc_dev_t *dev, const nmc_dev_adam_t *t, size_t count, float lr,
                         float b1, float b2, float eps, int adam_l2, long step,
                         const double *clip_sumsq, float max_norm)
{
    if (!count) return 0;
    nmc_cuda_mt_t *tab = calloc(count, sizeof *tab);
    if (!tab) abort();
    for (size_t i = 0; i < count; i++)
        tab[i] = (nmc_cuda_mt_t){.p = t[i].p, .g = t[i].g, .m = t[i].m, .v = t[i].v,
                                 .n = t[i].n, .wd = t[i].wd,
                                 .pb = t[i].p_act && t[i].p_act != (void *)t[i].p
                                           ? (nmc_bf16 *)t[i].p_act : NULL};
    mt_cache_t *mc = &I(dev)->mt_adam;
    int rc = mt_sync(dev, mc, tab, count);
    free(tab);
    if (rc) return -1;
    TRY(dev, nmc_cuda_adamw_multi(mc->dev, (int)count, mc->blocks, lr, b1, b2, eps, adam_l2,
                                  step, clip_sumsq, max_norm, I(dev)->ctx));
    return 0;
}

static int cu_sumsq_many(nmc_dev_t *dev, double *out, const float *const *x, const size_t *n,
                         size_t count)
{
    if (!count) return 0;
    nmc_cuda_mt_t *tab = calloc(count, sizeof *tab);
    if (!tab) abort();
    for (size_t i = 0; i < count; i++) tab[i] = (nmc_cuda_mt_t){.p = (float *)x[i], .n = n[i]};
    mt_cache_t *mc = &I(dev)->mt_sumsq;
    int rc = mt_sync(dev, mc, tab, count);
    free(tab);
    if (rc) return -1;
    TRY(dev, nmc_cuda_sumsq_multi(out, mc->dev, (int)count, mc->blocks, I(dev)->ctx));
    return 0;
}

/* ---- construction ------------------------------------------------------------------- */

static const nmc_dev_t CUDA_TABLE = {
    .kind = NMC_DEV_CUDA, .act = NMC_DTYPE_BF16, .act_size = 2,
    .alloc = cu_alloc, .free = cu_free, .upload = cu_upload, .download = cu_download,
    .copy = cu_copy, .zero = cu_zero, .upload_f32 = cu_upload_f32,
    .download_f32 = cu_download_f32, .f32_to_act = cu_f32_to_act, .sync = cu_sync,
    .last_error = cu_last_error, .destroy = cu_destroy, .matmul = cu_matmul,
    .matmul_f32c = cu_matmul_f32c, .bias_fwd = cu_bias_fwd, .bias_bwd = cu_bias_bwd,
    .add_act = cu_add_act, .embedding_fwd = cu_embedding_fwd,
    .embedding_bwd = cu_embedding_bwd, .rmsnorm_fwd = cu_rmsnorm_fwd,
    .rmsnorm_bwd = cu_rmsnorm_bwd, .rope_fwd = cu_rope_fwd, .rope_bwd = cu_rope_bwd,
    .attention_fwd = cu_attention_fwd, .attention_bwd = cu_attention_bwd,
    .swiglu_fwd = cu_swiglu_fwd, .swiglu_bwd = cu_swiglu_bwd, .lmhead_ce = cu_lmhead_ce,
    .dropout_apply = cu_dropout_apply, .add_uniform_noise = cu_add_uniform_noise,
    .adamw = cu_adamw, .sumsq = cu_sumsq, .scale = cu_scale, .axpy = cu_axpy,
};

nmc_dev_t *nmc_dev_cuda_new(int index, char *err, size_t errcap)
{
    nmc_dev_t *d = calloc(1, sizeof *d);
    cuda_impl_t *im = calloc(1, sizeof *im);
    if (!d || !im) abort();
    im->index = index;
    im->ctx = nmc_cuda_ctx_new(index, err, errcap);
    if (!im->ctx) {
        free(im);
        free(d);
        return NULL;
    }
    im->stage = nmc_cuda_stager_new(im->ctx, STAGE_BYTES);
    if (!im->stage) {
        if (err && errcap) snprintf(err, errcap, "%s", nmc_cuda_last_error(im->ctx));
        nmc_cuda_ctx_free(im->ctx);
        free(im);
        free(d);
        return NULL;
    }
    snprintf(im->name, sizeof im->name, "cuda:%d", index);
    *d = CUDA_TABLE;
    d->name = im->name;
    d->impl = im;
    /* On by default since the H100 run of 2026-11-27 (every op and the tiny models match
     * the CPU both ways; +16..36% tokens/s); NMC_CUDA_FAST=0 selects the plain kernels. */
    const char *fe = getenv("NMC_CUDA_FAST");
    nmc_dev_cuda_set_fast(d, !(fe && !strcmp(fe, "0")));
    return d;
}

int nmc_dev_cuda_set_fast(nmc_dev_t *dev, int on)
{
    if (!dev || dev->kind != NMC_DEV_CUDA || dev->destroy != cu_destroy) return -1;
    int was = I(dev)->fast;
    if (on < 0) return was;
    I(dev)->fast = on != 0;
    dev->adamw_many = on ? cu_adamw_many : NULL;
    dev->sumsq_many = on ? cu_sumsq_many : NULL;
    return was;
}

int nmc_dev_cuda_count(void) { return nmc_cuda_device_count(); }

int nmc_dev_cuda_mem_stats(nmc_dev_t *dev, nmc_dev_mem_t *out)
{
    if (!dev || dev->kind != NMC_DEV_CUDA || dev->destroy != cu_destroy) return -1;
    cuda_impl_t *im = I(dev);
    memset(out, 0, sizeof *out);
    out->live_bytes = im->live;
    out->peak_bytes = im->peak;
    out->ctx_bytes = nmc_cuda_ctx_bytes(im->ctx) + im->att_pad_bytes;
    if (nmc_cuda_mem_info(im->ctx, &out->device_free, &out->device_total) != 0)
        return fail(dev, __LINE__, "cudaMemGetInfo");
    return 0;
}

void nmc_dev_cuda_reset_peak(nmc_dev_t *dev)
{
    if (!dev || dev->kind != NMC_DEV_CUDA || dev->destroy != cu_destroy) return;
    I(dev)->peak = I(dev)->live;
}

int nmc_dev_cuda_describe(int index, char *buf, size_t cap)
{
    char name[256], err[256];
    size_t total = 0;
    int ma = 0, mi = 0;
    if (nmc_cuda_device_info(index, name, sizeof name, &total, &ma, &mi, err, sizeof err) != 0) {
        snprintf(buf, cap, "%d: (%s)", index, err);
        return -1;
    }
    snprintf(buf, cap, "%d: %s (%.1f GiB, sm_%d%d)", index, name,
             (double)total / (1024.0 * 1024.0 * 1024.0), ma, mi);
    return 0;
}

#else /* CPU-only build: the constructor says why there is no GPU */

nmc_dev_t *nmc_dev_cuda_new(int index, char *err, size_t errcap)
{
    if (err && errcap)
        snprintf(err, errcap, "cuda:%d requested, but this nmc was built without CUDA "
                 "(no nvcc at build time, or NMC_CUDA=0)", index);
    return NULL;
}
int nmc_dev_cuda_count(void) { return 0; }
int nmc_dev_cuda_set_fast(nmc_dev_t *dev, int on) { return -1; }
int nmc_dev_cuda_mem_stats(nmc_dev_t *dev, nmc_dev_mem_t *out) { return -1; }
void nmc_dev_cuda_reset_peak(nmc_dev_t *dev) {}
int nmc_dev_cuda_describe(int index, char *buf, size_t cap)
{
    snprintf(buf, cap, "%d: (no CUDA in this build)", index);
    return -1;
}
#endif
