/* rmsnorm.c — RMSNorm forward/backward, CPU fp32 (transformers LlamaRMSNorm semantics).
 *
 * Belongs here: nmc_cpu_rmsnorm_fwd / nmc_cpu_rmsnorm_bwd.
 * x, y, dy, dx [N, D] row-major; w, dw [D]; rstd [N] (saved by fwd for bwd).
 *   rstd = 1 / sqrt(mean(x^2) + eps)   (mean accumulated in double, rounded to float)
 *   y    = w * (x * rstd)              (the same product order as LlamaRMSNorm)
 * Backward with g = dy * w:  dx = rstd * g - x * rstd^3 * mean(g * x);  dw += sum_rows dy*x*rstd.
 * Threads own row ranges for y/dx and column ranges for dw (rows summed in order), so
 * results do not depend on the thread count.
 * Test tolerance (atol + rtol): y vs double 1e-5 + 1e-5, vs torch 1e-6 + 1e-5; rstd vs torch
 * 1e-6 rel; dx vs central differences of the double forward 2e-5 + 2e-4 (a row scaled by
 * 1e-3 has rstd ~ 1e3), dw 1e-5 + 1e-4; dx, dw vs torch 1e-6 + 1e-5.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float *y, *rstd, *dx, *dw;
    const float *x, *w, *dy;
    const float *rstd_in;
    int N, D;
    float eps;
} rms_job_t;

static void fwd_task(void *ctx, int id, int n)
{
    const rms_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->N, id, n, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        const float *x = j->x + r * (size_t)j->D;
        float *y = j->y + r * (size_t)j->D;
        double ss = 0.0;
        for (int i = 0; i < j->D; i++) ss += (double)x[i] * x[i];
        float var = (float)(ss / j->D);
        float rs = 1.0f / sqrtf(var + j->eps);
        j->rstd[r] = rs;
        for (int i = 0; i < j->D; i++) y[i] = j->w[i] * (x[i] * rs);
    }
}

void nmc_cpu_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int N, int D,
                         float eps)
{
    if (N <= 0 || D <= 0) return;
    rms_job_t j = {y, rstd, NULL, NULL, x, w, NULL, NULL, N, D, eps};
    nmc_cpu_parallel(fwd_task, &j, nmc_cpu_want((size_t)N * D, 1 << 15));
}

static void bwd_dx_task(void *ctx, int id, int n)
{
    const rms_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->N, id, n, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        size_t o = r * (size_t)j->D;
        const float *x = j->x + o, *dy = j->dy + o;
        float *dx = j->dx + o;
        float rs = j->rstd_in[r];
        double dot = 0.0;
        for (int i = 0; i < j->D; i++) dot += (double)dy[i] * j->w[i] * x[i];
        float c = (float)(dot / j->D) * rs * rs * rs;
        for (int i = 0; i < j->D; i++) dx[i] = rs * (dy[i] * j->w[i]) - c * x[i];
    }
}

/* dw for a column range: rows are walked in order (cache-friendly), each column summed in
 * double in row order; without a buffer the same sums are formed column by column. */
static void bwd_dw_task(void *ctx, int id, int n)
{
    const rms_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->D, id, n, &lo, &hi);
    if (lo >= hi) return;
    double *acc = calloc(hi - lo, sizeof(double));
    if (acc) {
        for (int r = 0; r < j->N; r++) {
            size_t o = (size_t)r * (size_t)j->D;
            float rs = j->rstd_in[r];
            for (size_t i = lo; i < hi; i++) acc[i - lo] += (double)j->dy[o + i] * (j->x[o + i] * rs);
        }
        for (size_t i = lo; i < hi; i++) j->dw[i] += (float)acc[i - lo];
        free(acc);
        return;
    }
    for (size_t i = lo; i < hi; i++) {
        double s = 0.0;
        for (int r = 0; r < j->N; r++) {
            size_t o = (size_t)r * (size_t)j->D + i;
            s += (double)j->dy[o] * (j->x[o] * j->rstd_in[r]);
        }
        j->dw[i] += (float)s;
    }
}

void nmc_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         const float *rstd, int N, int D)
{
    if (N <= 0 || D <= 0) return;
    rms_job_t j = {NULL, NULL, dx, dw, x, w, dy, rstd, N, D, 0.0f};
    int want = nmc_cpu_want((size_t)N * D, 1 << 15);
    nmc_cpu_parallel(bwd_dx_task, &j, want);
    if (dw) nmc_cpu_parallel(bwd_dw_task, &j, want);
}
