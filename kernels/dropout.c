/* dropout.c — dropout mask generation, CPU (bit-identical with the CUDA twin).
 *
 * Belongs here: nmc_cpu_dropout_mask. mask [n] fp32, values in {0, 1/(1-p)}; the RNG and
 * the exact rule are in nmc_dropout_rng.h (shared with kernels/dropout.cu).
 * Test tolerance: exact (determinism), keep rate within 5 sigma of 1-p, mean(mask) ~ 1.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"
#include "nmc_dropout_rng.h"

typedef struct {
    float *mask;
    size_t n;
    float p, scale;
    uint64_t seed, offset;
} drop_job_t;

static void drop_task(void *ctx, int id, int nt)
{
    const drop_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range(j->n, id, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++)
        j->mask[i] = nmc_dropout_uniform(j->seed, j->offset + i) >= j->p ? j->scale : 0.0f;
}

void nmc_cpu_dropout_mask(float *mask, size_t n, float p, uint64_t seed, uint64_t offset)
{
    if (!(p > 0.0f)) { /* also NaN: no dropout */
        for (size_t i = 0; i < n; i++) mask[i] = 1.0f;
        return;
    }
    if (p >= 1.0f) {
        for (size_t i = 0; i < n; i++) mask[i] = 0.0f;
        return;
    }
    drop_job_t j = {mask, n, p, 1.0f / (1.0f - p), seed, offset};
    nmc_cpu_parallel(drop_task, &j, nmc_cpu_want(n, 1 << 16));
}
