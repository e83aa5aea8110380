/* swiglu.c — SwiGLU activation h = silu(g) * u, CPU fp32.
 *
 * Belongs here: nmc_cpu_swiglu_fwd / nmc_cpu_swiglu_bwd. g, u, h, dh, dg, du are flat
 * arrays of n elements (the [N, F] gate and up projections).
 *   silu(g) = g * sigmoid(g), sigmoid from exp(-|g|) (nmc_vexp, 16 lanes per ISA level
 *   like attention.c; no overflow for any g)
 *   dg = dh * u * s * (1 + g * (1 - s)),  s = sigmoid(g);   du = dh * silu(g)
 * Elementwise, split into contiguous ranges over threads.
 * Test tolerance: h vs double 1e-7 + 2e-6 rel; dg, du vs central differences 1e-6 + 1e-5.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"
#include "nmc_cpu_vec.h"

#include <math.h>

typedef struct {
    float *h, *dg, *du;
    const float *g, *u, *dh;
    size_t n;
} swiglu_job_t;

/* sigmoid of 16 lanes from exp(-|g|) (never overflows): g >= 0: 1 / (1 + e), else
 * e / (1 + e). Equal to 1 / (1 + exp(-g)) up to nmc_vexp's ~1.5e-7 relative error. */
NMC_VEC_INLINE void vsigmoid(v16f *s, const v16f *g)
{
    v16i neg = *g < 0.0f;
    v16f a = NMC_VSEL(neg, *g, -*g), e;
    nmc_vexp(&e, &a);
    v16f r = 1.0f / (1.0f + e);
    *s = NMC_VSEL(neg, e * r, r);
}

static float sigmoidf(float g)
{
    float e = expf(g < 0.0f ? g : -g), r = 1.0f / (1.0f + e);
    return g < 0.0f ? e * r : r;
}

NMC_VEC_INLINE void fwd_body(void *ctx, int id, int nt)
{
    const swiglu_job_t *j = ctx;
    size_t lo, hi, i;
    nmc_cpu_range(j->n, id, nt, &lo, &hi);
    for (i = lo; i + 16 <= hi; i += 16) {
        v16f g = *(const v16u *)(j->g + i), sg;
        vsigmoid(&sg, &g);
        *(v16u *)(j->h + i) = g * sg * *(const v16u *)(j->u + i);
    }
    for (; i < hi; i++) j->h[i] = j->g[i] * sigmoidf(j->g[i]) * j->u[i];
}

NMC_VEC_INLINE void bwd_body(void *ctx, int id, int nt)
{
    const swiglu_job_t *j = ctx;
    size_t lo, hi, i;
    nmc_cpu_range(j->n, id, nt, &lo, &hi);
    for (i = lo; i + 16 <= hi; i += 16) {
        v16f g = *(const v16u *)(j->g + i), u = *(const v16u *)(j->u + i);
        v16f dh = *(const v16u *)(j->dh + i), sg;
        vsigmoid(&sg, &g);
        *(v16u *)(j->dg + i) = dh * u * (sg * (1.0f + g * (1.0f - sg)));
        *(v16u *)(j->du + i) = dh * (g * sg);
    }
    for (; i < hi; i++) {
        float g = j->g[i], u = j->u[i], dh = j->dh[i], sg = sigmoidf(g);
        j->dg[i] = dh * u * (sg * (1.0f + g * (1.0f - sg)));
        j->du[i] = dh * (g * sg);
    }
}

/* One instantiation per ISA level (nmc_cpu_isa), identical lane math. */
#define SWIGLU_VARIANT(SUF, ATTR)                                                          \
    ATTR static void fwd_task_##SUF(void *ctx, int id, int n) { fwd_body(ctx, id, n); } \
    ATTR static void bwd_task_##SUF(void *ctx, int id, int n) { bwd_body(ctx, id, n); }
SWIGLU_VARIANT(generic, )
SWIGLU_VARIANT(avx2, __attribute__((target("avx2"))))
SWIGLU_VARIANT(avx512, __attribute__((target("avx512f"))))

static nmc_cpu_task_fn pick(int bwd)
{
    switch (nmc_cpu_isa()) {
    case NMC_ISA_AVX512: return bwd ? bwd_task_avx512 : fwd_task_avx512;
    case NMC_ISA_AVX2: return bwd ? bwd_task_avx2 : fwd_task_avx2;
    default: return bwd ? bwd_task_generic : fwd_task_generic;
    }
}

void nmc_cpu_swiglu_fwd(float *h, const float *g, const float *u, size_t n)
{
    swiglu_job_t j = {h, NULL, NULL, g, u, NULL, n};
    nmc_cpu_parallel(pick(0), &j, nmc_cpu_want(n, 1 << 15));
}

void nmc_cpu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                        size_t n)
{
    swiglu_job_t j = {NULL, dg, du, g, u, dh, n};
    nmc_cpu_parallel(pick(1), &j, nmc_cpu_want(n, 1 << 15));
}
