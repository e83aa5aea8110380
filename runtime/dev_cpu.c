/* dev_cpu.c — the CPU device: runtime/dev.h's table over the nmc_cpu_* kernels.
 *
 * Activations are fp32, so "act" and fp32 tensors are the same thing here; device
 * buffers are host memory (calloc). Copies are memcpy; nothing is asynchronous, so sync
 * and last_error are trivial. What belongs here: glue only — the math is in kernels/.
 */
#include "dev.h"
#include "nmc_dropout_rng.h"
#include "nmc_kernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char err[128];
    float *mask;     /* dropout mask scratch [DROP_BLK], allocated on first use */
    float *ce_ws;    /* lm_head + CE logits scratch, grown to the largest call, kept */
    size_t ce_ws_n;  /* its size in floats */
} cpu_impl_t;

/* Dropout draws its mask in blocks of this many floats (512 KiB of scratch): large enough
 * that nmc_cpu_dropout_mask spreads a block over the threads (its grain is 2^16). */
#define DROP_BLK ((size_t)1 << 17)

size_t nmc_dtype_size(nmc_dtype_t dt) { return dt == NMC_DTYPE_BF16 ? 2 : 4; }

static void *cpu_alloc(nmc_dev_t *dev, size_t bytes)
{
    return calloc(1, bytes ? bytes : 1);
}
static void cpu_free(nmc_dev_t *dev, void *p) { free(p); }

static int cpu_copy(nmc_dev_t *dev, void *dst, const void *src, size_t bytes)
{
    if (bytes) memmove(dst, src, bytes);
    return 0;
}
static int cpu_zero(nmc_dev_t *dev, void *dst, size_t bytes)
{
    if (bytes) memset(dst, 0, bytes);
    return 0;
}

static int cpu_upload_f32(nmc_dev_t *dev, void *dst, nmc_dtype_t dt, const float *src, size_t n)
{
    if (dt == NMC_DTYPE_BF16) nmc_f32_to_bf16(dst, src, n);
    else if (n) memcpy(dst, src, n * sizeof(float));
    return 0;
}
static int cpu_download_f32(nmc_dev_t *dev, float *dst, const void *src, nmc_dtype_t dt, size_t n)
{
    if (dt == NMC_DTYPE_BF16) nmc_bf16_to_f32(dst, src, n);
    else if (n) memcpy(dst, src, n * sizeof(float));
    return 0;
}
static int cpu_f32_to_act(nmc_dev_t *dev, void *dst, const float *src, size_t n)
{
    return cpu_copy(dev, dst, src, n * sizeof(float));
}
static int cpu_sync(nmc_dev_t *dev) { return 0; }
static const char *cpu_last_error(nmc_dev_t *dev) { return ((cpu_impl_t *)dev->impl)->err; }
static void cpu_destroy(nmc_dev_t *dev)
{
    if (!dev) return;
    free(((cpu_impl_t *)dev->impl)->mask);
    free(((cpu_impl_t *)dev->impl)->ce_ws);
    free(dev->impl);
    free(dev);
}

static int cpu_matmul(nmc_dev_t *dev, void *C, const void *A, const void *B, int M, int N, int K,
                      int ta, int tb, float alpha, float beta)
{
    nmc_cpu_matmul(C, A, B, M, N, K, ta, tb, alpha, beta);
    return 0;
}
static int cpu_matmul_f32c(nmc_dev_t *dev, float *C, const void *A, const void *B, int M, int N,
                           int K, int ta, int tb, float alpha, float beta)
{
    nmc_cpu_matmul(C, A, B, M, N, K, ta, tb, alpha, beta);
    return 0;
}
static int cpu_bias_fwd(nmc_dev_t *dev, void *y, const void *b, int N, int C)
{
    nmc_cpu_bias_fwd(y, b, N, C);
    return 0;
}
static int cpu_bias_bwd(nmc_dev_t *dev, float *db, const void *dy, int N, int C)
{
    nmc_cpu_bias_bwd(db, dy, N, C);
    return 0;
}
static int cpu_add_act(nmc_dev_t *dev, void *y, const void *x, size_t n, float a)
{
    nmc_cpu_axpy(y, x, n, a);
    return 0;
}
static int cpu_embedding_fwd(nmc_dev_t *dev, void *out, const int32_t *ids, const void *table,
                             int N, int D)
{
    nmc_cpu_embedding_fwd(out, ids, table, N, D);
    return 0;
}
static int cpu_embedding_bwd(nmc_dev_t *dev, float *dtable, const void *dout, const int32_t *ids,
                             int N, int D)
{
    nmc_cpu_embedding_bwd(dtable, dout, ids, N, D);
    return 0;
}
static int cpu_rmsnorm_fwd(nmc_dev_t *dev, void *y, float *rstd, const void *x, const void *w,
                           int N, int D, float eps)
{
    nmc_cpu_rmsnorm_fwd(y, rstd, x, w, N, D, eps);
    return 0;
}
static int cpu_rmsnorm_bwd(nmc_dev_t *dev, void *dx, float *dw, const void *dy, const void *x,
                           const void *w, const float *rstd, int N, int D)
{
    nmc_cpu_rmsnorm_bwd(dx, dw, dy, x, w, rstd, N, D);
    return 0;
}
static int cpu_rope_fwd(nmc_dev_t *dev, void *x, const int32_t *pos, const float *inv_freq, int N,
                        int nh, int hd)
{
    nmc_cpu_rope_fwd(x, pos, inv_freq, N, nh, hd);
    return 0;
}
static int cpu_rope_bwd(nmc_dev_t *dev, void *dx, const int32_t *pos, const float *inv_freq,
                        int N, int nh, int hd)
{
    nmc_cpu_rope_bwd(dx, pos, inv_freq, N, nh, hd);
    return 0;
}
static int cpu_attention_fwd(nmc_dev_t *dev, void *out, float *lse, const void *q, const void *k,
                             const void *v, const int32_t *doc_start, int B, int T, int H,
                             int KVH, int hd, float scale)
{
    nmc_cpu_attention_fwd(out, lse, q, k, v, doc_start, B, T, H, KVH, hd, scale);
    return 0;
}
static int cpu_attention_bwd(nmc_dev_t *dev, void *dq, void *dk, void *dv, const void *dout,
                             const void *out, const float *lse, const void *q, const void *k,
                             const void *v, const int32_t *doc_start, int B, int T, int H,
                             int KVH, int hd, float scale)
{
    nmc_cpu_attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, T, H, KVH, hd,
                          scale);
    return 0;
}
static int cpu_swiglu_fwd(nmc_dev_t *dev, void *h, const void *g, const void *u, size_t n)
{
    nmc_cpu_swiglu_fwd(h, g, u, n);
    return 0;
}
static int cpu_swiglu_bwd(nmc_dev_t *dev, void *dg, void *du, const void *dh, const void *g,
                          const void *u, size_t n)
{
    nmc_cpu_swiglu_bwd(dg, du, dh, g, u, n);
    return 0;
}
/* Logits scratch of one lm_head + CE chunk on the CPU: at most 2^25 fp32 logits (128 MiB),
 * kept by the device between calls (impl->ce_ws; a fresh buffer of this size is
 * page-faulted anew on every call: +30 ms of system time per call at 1024 x 32000).
 * The model's chunk only bounds scratch memory (rows are independent), so, as on the GPU,
 * it is raised to the most rows under this budget, in equal chunks (a short last chunk is
 * a badly shaped matmul). Every chunk re-packs all of W [V, D] for its two GEMMs and
 * re-reads / re-writes dW, so fewer chunks are faster: N=1024 D=512 V=32000, 2 threads,
 * CPU time per call / 2 (dx / dx+dW): 256-row chunks 196 / 284 ms, 512 rows 174 / 261,
 * 1024 rows 159 / 251. dW sums per chunk in fp32. */
#define CPU_CE_MAX_LOGITS ((size_t)1 << 25)

static int cpu_ce_chunk(int chunk, int N, int V)
{
    if (N <= 0 || V <= 0) return chunk;
    size_t rows = CPU_CE_MAX_LOGITS / (size_t)V;
    if (rows < 1) rows = 1;
    if (rows > (size_t)N) rows = (size_t)N;
    size_t nch = ((size_t)N + rows - 1) / rows;
    rows = ((size_t)N + nch - 1) / nch;
    return chunk > 0 && (size_t)chunk > rows ? chunk : (int)rows;
}

static int cpu_lmhead_ce(nmc_dev_t *dev, double *loss_sum, void *dx, float *dW, const void *x,
                         const void *W, const int32_t *labels, int N, int D, int V, float ls,
                         float grad_scale, int chunk)
{
    cpu_impl_t *impl = dev->impl;
    chunk = cpu_ce_chunk(chunk, N, V);
    size_t need = nmc_cpu_lmhead_ce_ws_floats(N, V, chunk);
    if (need > impl->ce_ws_n) {
        free(impl->ce_ws);
        impl->ce_ws_n = 0;
        if (!(impl->ce_ws = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64))) {
            snprintf(impl->err, sizeof impl->err, "cannot allocate %zu bytes of lm_head logits",
                     need * sizeof(float));
            return -1;
        }
        impl->ce_ws_n = need;
    }
    *loss_sum += nmc_cpu_lmhead_ce_ws(dx, dW, x, W, labels, N, D, V, ls, grad_scale, chunk,
                                      impl->ce_ws);
    return 0;
}

/* Dropout without a stored mask: draw the mask in blocks of DROP_BLK (bounded scratch,
 * threaded inside nmc_cpu_dropout_mask). The mask depends only on (seed, offset + i), so
 * the block size changes no bit. */
static int cpu_dropout_apply(nmc_dev_t *dev, void *y, const void *x, size_t n, float p,
                             uint64_t seed, uint64_t offset)
{
    cpu_impl_t *impl = dev->impl;
    if (!impl->mask && !(impl->mask = malloc(DROP_BLK * sizeof(float)))) {
        snprintf(impl->err, sizeof impl->err, "cannot allocate %zu bytes of dropout scratch",
                 DROP_BLK * sizeof(float));
        return -1;
    }
    float *yo = y;
    const float *xi = x;
    for (size_t i = 0; i < n; i += DROP_BLK) {
        size_t m = n - i < DROP_BLK ? n - i : DROP_BLK;
        nmc_cpu_dropout_mask(impl->mask, m, p, seed, offset + i);
        for (size_t j = 0; j < m; j++) yo[i + j] = xi[i + j] * impl->mask[j];
    }
    return 0;
}
static int cpu_add_uniform_noise(nmc_dev_t *dev, void *x, size_t n, float mag, uint64_t seed,
                                 uint64_t offset)
{
    float *xo = x;
    for (size_t i = 0; i < n; i++)
        xo[i] += mag * (2.0f * nmc_dropout_uniform(seed, offset + i) - 1.0f);
    return 0;
}
static int cpu_adamw(nmc_dev_t *dev, float *p, void *p_act, const float *g, float *m, float *v,
                     size_t n, float lr, float b1, float b2, float eps, float wd, int adam_l2,
                     long step)
{
    nmc_cpu_adamw(p, g, m, v, n, lr, b1, b2, eps, wd, adam_l2, step);
    if (p_act && p_act != (void *)p) memcpy(p_act, p, n * sizeof(float));
    return 0;
}
static int cpu_sumsq(nmc_dev_t *dev, double *out, const float *x, size_t n)
{
    *out += nmc_cpu_sumsq(x, n);
    return 0;
}
/* dev->adamw on each tensor in order (the same bits as the per-tensor calls); a clipped
 * gradient is read through a scaled copy, as the CUDA kernel reads g * coef. */
static int cpu_adamw_many(nmc_dev_t *dev, const nmc_dev_adam_t *t, size_t count, float lr,
                          float b1, float b2, float eps, int adam_l2, long step,
                          const double *clip_sumsq, float max_norm)
{
    float coef = 1.0f;
    if (clip_sumsq) {
        double cf = (double)max_norm / (sqrt(*clip_sumsq) + 1e-6);
        if (cf < 1.0) coef = (float)cf;
    }
    for (size_t i = 0; i < count; i++) {
        const float *g = t[i].g;
        float *tmp = NULL;
        if (coef != 1.0f) {
            if (!(tmp = malloc((t[i].n ? t[i].n : 1) * sizeof(float)))) {
                cpu_impl_t *impl = dev->impl;
                snprintf(impl->err, sizeof impl->err, "cannot allocate %zu bytes for a clipped "
                         "gradient", t[i].n * sizeof(float));
                return -1;
            }
            for (size_t k = 0; k < t[i].n; k++) tmp[k] = t[i].g[k] * coef;
            g = tmp;
        }
        cpu_adamw(dev, t[i].p, t[i].p_act, g, t[i].m, t[i].v, t[i].n, lr, b1, b2, eps, t[i].wd,
                  adam_l2, step);
        free(tmp);
    }
    return 0;
}
static int cpu_sumsq_many(nmc_dev_t *dev, double *out, const float *const *x, const size_t *n,
                          size_t count)
{
    for (size_t i = 0; i < count; i++) *out += nmc_cpu_sumsq(x[i], n[i]);
    return 0;
}
static int cpu_scale(nmc_dev_t *dev, float *x, size_t n, float s)
{
    nmc_cpu_scale(x, n, s);
    return 0;
}
static int cpu_axpy(nmc_dev_t *dev, float *y, const float *x, size_t n, float a)
{
    nmc_cpu_axpy(y, x, n, a);
    return 0;
}

static int cpu_upload(nmc_dev_t *dev, void *dst, const void *src, size_t bytes)
{
    return cpu_copy(dev, dst, src, bytes);
}

nmc_dev_t *nmc_dev_cpu_new(void)
{
    nmc_dev_t *d = calloc(1, sizeof *d);
    cpu_impl_t *impl = calloc(1, sizeof *impl);
    if (!d || !impl) abort(); /* as the arena: host OOM is not a recoverable user error */
    *d = (nmc_dev_t){
        .kind = NMC_DEV_CPU, .name = "cpu", .act = NMC_DTYPE_F32, .act_size = 4, .impl = impl,
        .alloc = cpu_alloc, .free = cpu_free, .upload = cpu_upload, .download = cpu_upload,
        .copy = cpu_copy, .zero = cpu_zero, .upload_f32 = cpu_upload_f32,
        .download_f32 = cpu_download_f32, .f32_to_act = cpu_f32_to_act, .sync = cpu_sync,
        .last_error = cpu_last_error, .destroy = cpu_destroy, .matmul = cpu_matmul,
        .matmul_f32c = cpu_matmul_f32c, .bias_fwd = cpu_bias_fwd, .bias_bwd = cpu_bias_bwd,
        .add_act = cpu_add_act, .embedding_fwd = cpu_embedding_fwd,
        .embedding_bwd = cpu_embedding_bwd, .rmsnorm_fwd = cpu_rmsnorm_fwd,
        .rmsnorm_bwd = cpu_rmsnorm_bwd, .rope_fwd = cpu_rope_fwd, .rope_bwd = cpu_rope_bwd,
        .attention_fwd = cpu_attention_fwd, .attention_bwd = cpu_attention_bwd,
        .swiglu_fwd = cpu_swiglu_fwd, .swiglu_bwd = cpu_swiglu_bwd,
        .lmhead_ce = cpu_lmhead_ce, .dropout_apply = cpu_dropout_apply,
        .add_uniform_noise = cpu_add_uniform_noise, .adamw = cpu_adamw, .sumsq = cpu_sumsq,
        .scale = cpu_scale, .axpy = cpu_axpy, .adamw_many = cpu_adamw_many,
        .sumsq_many = cpu_sumsq_many,
    };
    return d;
}
