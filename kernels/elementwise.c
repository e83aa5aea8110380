/* elementwise.c — flat-array utilities used by the optimizer and gradient clipping, CPU.
 *
 * Belongs here: nmc_cpu_sumsq, nmc_cpu_scale, nmc_cpu_axpy.
 * sumsq accumulates in double over fixed 64 Ki-element blocks whose partial sums are added
 * in block order: the result is the same for any thread count (and any n split).
 * Test tolerance: sumsq 1e-12 rel vs a double loop; scale/axpy exact vs the same float expression
 * (the build uses -std=c11, so no FMA contraction).
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <stdlib.h>

#define SUMSQ_BLOCK ((size_t)1 << 16)

typedef struct {
    float *y;
    const float *x;
    size_t n;
    float a;
    double *partial; /* sumsq: one per block */
} ew_job_t;

static void sumsq_task(void *ctx, int id, int nt)
{
    const ew_job_t *j = ctx;
    size_t nb = (j->n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK, lo, hi;
    nmc_cpu_range(nb, id, nt, &lo, &hi);
    for (size_t b = lo; b < hi; b++) {
        size_t e = (b + 1) * SUMSQ_BLOCK < j->n ? (b + 1) * SUMSQ_BLOCK : j->n;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        size_t i = b * SUMSQ_BLOCK;
        for (; i + 4 <= e; i += 4) {
            s0 += (double)j->x[i] * j->x[i];
            s1 += (double)j->x[i + 1] * j->x[i + 1];
            s2 += (double)j->x[i + 2] * j->x[i + 2];
            s3 += (double)j->x[i + 3] * j->x[i + 3];
        }
        for (; i < e; i++) s0 += (double)j->x[i] * j->x[i];
        j->partial[b] = (s0 + s1) + (s2 + s3);
    }
}

double nmc_cpu_sumsq(const float *x, size_t n)
{
    if (n == 0) return 0.0;
    size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double one, *partial = nb == 1 ? &one : malloc(nb * sizeof(double));
    if (!partial) { /* same blocks, same order, no buffer */
        double s = 0.0, p;
        for (size_t b = 0; b < nb; b++) {
            ew_job_t j1 = {NULL, x + b * SUMSQ_BLOCK, n - b * SUMSQ_BLOCK < SUMSQ_BLOCK ? n - b * SUMSQ_BLOCK : SUMSQ_BLOCK, 0.0f, &p};
            sumsq_task(&j1, 0, 1);
            s += p;
        }
        return s;
    }
    ew_job_t j = {NULL, x, n, 0.0f, partial};
    nmc_cpu_parallel(sumsq_task, &j, nmc_cpu_want(nb, 1));
    double s = 0.0;
    for (size_t b = 0; b < nb; b++) s += partial[b];
    if (partial != &one) free(partial);
    return s;
}

static void scale_task(void *ctx, int id, int nt)
{
    const ew_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range(j->n, id, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) j->y[i] *= j->a;
}

void nmc_cpu_scale(float *x, size_t n, float s)
{
    ew_job_t j = {x, NULL, n, s, NULL};
    nmc_cpu_parallel(scale_task, &j, nmc_cpu_want(n, 1 << 17));
}

static void axpy_task(void *ctx, int id, int nt)
{
    const ew_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range(j->n, id, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) j->y[i] += j->a * j->x[i];
}

void nmc_cpu_axpy(float *y, const float *x, size_t n, float a)
{
    ew_job_t j = {y, x, n, a, NULL};
    nmc_cpu_parallel(axpy_task, &j, nmc_cpu_want(n, 1 << 17));
}
