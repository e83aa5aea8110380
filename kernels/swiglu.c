/* swiglu.c — SwiGLU activation h = silu(g) * u, CPU fp32.
 *
 * Belongs here: nmc_cpu_swiglu_fwd / nmc_cpu_swiglu_bwd. g, u, h, dh, dg, du are flat
 * arrays of n elements (the [N, F] gate and up projections).
 *   silu(g) = g / (1 + exp(-g))     (torch's CPU formula)
 *   dg = dh * u * s * (1 + g * (1 - s)),  s = sigmoid(g);   du = dh * silu(g)
 * Elementwise, split into contiguous ranges over threads.
 * Test tolerance: h vs double 1e-7 + 2e-6 rel; dg, du vs central differences 1e-6 + 1e-5.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <math.h>

typedef struct {
    float *h, *dg, *du;
    const float *g, *u, *dh;
    size_t n;
} swiglu_job_t;

static void fwd_task(void *ctx, int id, int nt)
{
    const swiglu_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range(j->n, id, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        float g = j->g[i];
        j->h[i] = g / (1.0f + expf(-g)) * j->u[i];
    }
}

static void bwd_task(void *ctx, int id, int nt)
{
    const swiglu_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range(j->n, id, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        float g = j->g[i], u = j->u[i], dh = j->dh[i];
        float s = 1.0f / (1.0f + expf(-g));
        j->dg[i] = dh * u * (s * (1.0f + g * (1.0f - s)));
        j->du[i] = dh * (g * s);
    }
}

void nmc_cpu_swiglu_fwd(float *h, const float *g, const float *u, size_t n)
{
    swiglu_job_t j = {h, NULL, NULL, g, u, NULL, n};
    nmc_cpu_parallel(fwd_task, &j, nmc_cpu_want(n, 1 << 15));
}

void nmc_cpu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                        size_t n)
{
    swiglu_job_t j = {NULL, dg, du, g, u, dh, n};
    nmc_cpu_parallel(bwd_task, &j, nmc_cpu_want(n, 1 << 15));
}
