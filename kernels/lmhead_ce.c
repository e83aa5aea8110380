/* lmhead_ce.c — fused, chunked lm_head projection + cross-entropy (+ backward), CPU fp32.
 *
 * Belongs here: nmc_cpu_lmhead_ce.
 * x, dx [N, D]; W, dW [V, D] (HF lm_head layout, logits = x W^T); labels [N] with -100 =
 * ignored. For `chunk` rows at a time: logits [chunk, V] = x_c W^T (threaded matmul), then
 * per row (threads over rows)
 *   lse = log sum_j exp(l_j)   (max-shifted, sum in double)
 *   loss = lse - (1-eps) l_y - eps * mean_j(l_j)       (torch cross_entropy, label_smoothing=eps)
 *   dlogits_j = grad_scale * (softmax_j - eps/V - (1-eps) [j == y])   (0 for ignored rows)
 * (exp vectorized: nmc_vexp in nmc_cpu_vec.h; row sums in float lanes over blocks of 512
 * then double), then dx_c = dlogits W and dW += dlogits^T x_c (both threaded matmuls, fixed order).
 * Returns the SUM of the per-token losses over non-ignored rows (the caller divides by the
 * token count, as torch's reduction='mean' with ignore_index does). A label outside [0, V)
 * other than -100 makes the result NaN (that row gets no gradient) so the caller can report
 * it; running out of memory for the logits chunk also returns NaN.
 * chunk <= 0 picks rows so the chunk holds at most 2^24 logits (64 MiB).
 * The logits scratch is the caller's workspace when given (nmc_cpu_lmhead_ce_ws: the CPU
 * device keeps one between calls; a fresh 64 MiB+ buffer per call is page-faulted anew,
 * ~30 ms per call at 1024 x 32000), else allocated for the call.
 * Test tolerance: loss vs double and vs torch 1e-5 rel; dx/dW vs central differences of
 * the double forward 1e-6 + 1e-4 rel, vs torch 1e-7 + 1e-5 rel.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"
#include "nmc_cpu_vec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NMC_CE_IGNORE (-100)
#define CE_MAX_LOGITS ((size_t)1 << 24)

typedef struct {
    float *logits;       /* [rows, V], overwritten with dlogits when grad */
    double *loss;        /* [rows] */
    const int32_t *labels;
    int rows, V, grad;
    float eps, grad_scale;
} ce_job_t;

/* Sums of 16-lane blocks of CE_SUM_BLOCK elements go to double: float lanes never add
 * more than CE_SUM_BLOCK / 16 terms. */
#define CE_SUM_BLOCK 512

/* Loss of one row; when grad, the row becomes grad_scale * dloss/dlogits. */
NMC_VEC_INLINE double ce_row(float *l, int32_t y, int V, float eps, float gs, int grad)
{
    if (y == NMC_CE_IGNORE || y < 0 || y >= V) {
        if (grad) memset(l, 0, sizeof(float) * (size_t)V);
        return y == NMC_CE_IGNORE ? 0.0 : NAN;
    }
    int V16 = V & ~15;
    float m = l[0];
    if (V16) {
        v16f vm = *(const v16u *)l;
        for (int c = 16; c < V16; c += 16) {
            v16f x = *(const v16u *)(l + c);
            vm = NMC_VSEL(x > vm, x, vm);
        }
        m = nmc_vmax(&vm);
    }
    for (int c = V16; c < V; c++) m = l[c] > m ? l[c] : m;
    float ly = l[y];
    double se = 0.0, sl = 0.0;
    /* pass 2: l <- exp(l - m), with the sums of exp and of the logits */
    for (int c0 = 0; c0 < V16; c0 += CE_SUM_BLOCK) {
        int c1 = c0 + CE_SUM_BLOCK < V16 ? c0 + CE_SUM_BLOCK : V16;
        v16f ae = {0}, al = {0};
        for (int c = c0; c < c1; c += 16) {
            v16f x = *(const v16u *)(l + c);
            v16f xm = x - m, e;
            nmc_vexp(&e, &xm);
            al += x;
            ae += e;
            *(v16u *)(l + c) = e;
        }
        se += nmc_vsum(&ae);
        sl += nmc_vsum(&al);
    }
    for (int c = V16; c < V; c++) {
        sl += l[c];
        l[c] = expf(l[c] - m);
        se += l[c];
    }
    double lse = (double)m + log(se);
    double loss = lse - (1.0 - eps) * ly - (double)eps * (sl / V);
    if (grad) {
        float inv = (float)(1.0 / se), u = eps / (float)V;
        int c = 0;
        for (; c < V16; c += 16) *(v16u *)(l + c) = gs * (*(const v16u *)(l + c) * inv - u);
        for (; c < V; c++) l[c] = gs * (l[c] * inv - u);
        l[y] -= gs * (1.0f - eps);
    }
    return loss;
}

NMC_VEC_INLINE void ce_body(void *ctx, int id, int n)
{
    const ce_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->rows, id, n, &lo, &hi);
    for (size_t r = lo; r < hi; r++)
        j->loss[r] = ce_row(j->logits + r * (size_t)j->V, j->labels[r], j->V, j->eps,
                            j->grad_scale, j->grad);
}

static void ce_task_generic(void *ctx, int id, int n) { ce_body(ctx, id, n); }
__attribute__((target("avx2"))) static void ce_task_avx2(void *ctx, int id, int n)
{
    ce_body(ctx, id, n);
}
__attribute__((target("avx512f"))) static void ce_task_avx512(void *ctx, int id, int n)
{
    ce_body(ctx, id, n);
}

static nmc_cpu_task_fn ce_task(void)
{
    switch (nmc_cpu_isa()) {
    case NMC_ISA_AVX512: return ce_task_avx512;
    case NMC_ISA_AVX2: return ce_task_avx2;
    default: return ce_task_generic;
    }
}

static int pick_chunk(int chunk, int N, int V)
{
    if (chunk <= 0) {
        size_t c = CE_MAX_LOGITS / (size_t)V;
        chunk = c < 1 ? 1 : (c > 4096 ? 4096 : (int)c);
    }
    return chunk < N ? chunk : N;
}

size_t nmc_cpu_lmhead_ce_ws_floats(int N, int V, int chunk)
{
    if (N <= 0 || V <= 0) return 0;
    chunk = pick_chunk(chunk, N, V);
    /* logits, then the per-row losses (doubles) on a 64-byte boundary */
    return ((size_t)chunk * (size_t)V + 15) / 16 * 16 + 2 * (size_t)chunk;
}

double nmc_cpu_lmhead_ce_ws(float *dx, float *dW, const float *x, const float *W,
                            const int32_t *labels, int N, int D, int V, float label_smoothing,
                            float grad_scale, int chunk, float *ws)
{
    if (N <= 0) return 0.0;
    if (D <= 0 || V <= 0) return NAN;
    size_t need = nmc_cpu_lmhead_ce_ws_floats(N, V, chunk);
    chunk = pick_chunk(chunk, N, V);
    float *own = NULL;
    if (!ws && !(ws = own = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64))) return NAN;
    float *logits = ws;
    double *loss = (double *)(ws + ((size_t)chunk * (size_t)V + 15) / 16 * 16);
    double total = 0.0;
    for (int r0 = 0; r0 < N; r0 += chunk) {
        int rows = N - r0 < chunk ? N - r0 : chunk;
        const float *xc = x + (size_t)r0 * D;
        nmc_cpu_matmul(logits, xc, W, rows, V, D, 0, 1, 1.0f, 0.0f);
        ce_job_t j = {logits, loss, labels + r0, rows, V, dx != NULL, label_smoothing, grad_scale};
        nmc_cpu_parallel(ce_task(), &j, nmc_cpu_want((size_t)rows * V, 1 << 15));
        for (int r = 0; r < rows; r++) total += loss[r];
        if (dx) {
            nmc_cpu_matmul(dx + (size_t)r0 * D, logits, W, rows, D, V, 0, 0, 1.0f, 0.0f);
            if (dW) nmc_cpu_matmul(dW, logits, xc, V, D, rows, 1, 0, 1.0f, 1.0f);
        }
    }
    free(own);
    return total;
}

double nmc_cpu_lmhead_ce(float *dx, float *dW, const float *x, const float *W,
                         const int32_t *labels, int N, int D, int V, float label_smoothing,
                         float grad_scale, int chunk)
{
    return nmc_cpu_lmhead_ce_ws(dx, dW, x, W, labels, N, D, V, label_smoothing, grad_scale,
                                chunk, NULL);
}
