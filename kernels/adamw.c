/* adamw.c — AdamW / Adam(L2) optimizer step, CPU fp32 (torch.optim semantics).
 *
 * Belongs here: nmc_cpu_adamw. p, g, m, v are flat arrays of n fp32 elements; m and v are
 * the optimizer state (zero before step 1); step is 1-based (the step being taken).
 * Mirrors torch.optim.AdamW / Adam single-tensor (foreach=False, fused=False) op by op,
 * in float32 with the python-float scalars computed in double and cast to float where
 * torch casts them:
 *   adam_l2:  g' = g + wd * p                      (torch.optim.Adam weight_decay)
 *   else:     p  = p * (1 - lr * wd)               (AdamW decoupled decay)
 *   m = lerp(m, g', 1 - beta1)   v = v * beta2 + ((1 - beta2) * g') * g'
 *   step_size = lr / (1 - beta1^step);  bc2_sqrt = sqrt(1 - beta2^step)
 *   p = p + (-step_size * m) / (sqrt(v) / bc2_sqrt + eps)
 * Test tolerance: p, m, v vs torch after 3 steps (AdamW and Adam L2) and vs a double
 * implementation 1e-8 + 1e-6 rel (p is bit-exact with torch 2.15 here).
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <immintrin.h>
#include <math.h>

typedef struct {
    float *p, *m, *v;
    const float *g;
    size_t n;
    float decay_mul;  /* 1 - lr*wd (AdamW) or 1 */
    float l2;         /* wd (Adam) or 0 */
    float w1;         /* lerp weight 1 - beta1 */
    float beta2, c2;  /* c2 = 1 - beta2 */
    float neg_step;   /* -lr / bias_correction1 */
    float bc2_sqrt;
    float eps;
} adam_job_t;

/* torch's lerp: start + w*(end-start) for |w| < 0.5, else end - (end-start)*(1-w) */
static float lerpf(float start, float end, float w)
{
    return fabsf(w) < 0.5f ? start + w * (end - start) : end - (end - start) * (1.0f - w);
}

/* Elements [lo, hi) one at a time: the reference arithmetic (and every tail). */
static void adam_scalar(const adam_job_t *j, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        float p = j->p[i], g = j->g[i];
        if (j->l2 != 0.0f) g = g + j->l2 * p;
        p = p * j->decay_mul;
        float m = lerpf(j->m[i], g, j->w1);
        float v = j->v[i] * j->beta2 + (j->c2 * g) * g;
        float denom = sqrtf(v) / j->bc2_sqrt + j->eps;
        j->p[i] = p + (j->neg_step * m) / denom;
        j->m[i] = m;
        j->v[i] = v;
    }
}

/* The same operations in the same order on 16 lanes (IEEE mul/add/div/sqrt, no FMA):
 * bit-identical to adam_scalar. One pass over p, g, m, v (memory bound: 28 bytes per
 * parameter; the scalar loop's division and square root were compute bound). Returns the
 * first element it did not do. */
__attribute__((target("avx512f"))) static size_t adam_avx512(const adam_job_t *j, size_t lo,
                                                             size_t hi)
{
    const __m512 l2 = _mm512_set1_ps(j->l2), dm = _mm512_set1_ps(j->decay_mul),
                 w1 = _mm512_set1_ps(j->w1), w1c = _mm512_set1_ps(1.0f - j->w1),
                 b2 = _mm512_set1_ps(j->beta2), c2 = _mm512_set1_ps(j->c2),
                 bc = _mm512_set1_ps(j->bc2_sqrt), eps = _mm512_set1_ps(j->eps),
                 ns = _mm512_set1_ps(j->neg_step);
    int use_l2 = j->l2 != 0.0f, small_w = fabsf(j->w1) < 0.5f;
    size_t i = lo;
    for (; i + 16 <= hi; i += 16) {
        __m512 p = _mm512_loadu_ps(j->p + i), g = _mm512_loadu_ps(j->g + i);
        __m512 m = _mm512_loadu_ps(j->m + i), v = _mm512_loadu_ps(j->v + i);
        if (use_l2) g = _mm512_add_ps(g, _mm512_mul_ps(l2, p));
        p = _mm512_mul_ps(p, dm);
        __m512 d = _mm512_sub_ps(g, m);
        m = small_w ? _mm512_add_ps(m, _mm512_mul_ps(w1, d)) : _mm512_sub_ps(g, _mm512_mul_ps(d, w1c));
        v = _mm512_add_ps(_mm512_mul_ps(v, b2), _mm512_mul_ps(_mm512_mul_ps(c2, g), g));
        __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v), bc), eps);
        p = _mm512_add_ps(p, _mm512_div_ps(_mm512_mul_ps(ns, m), den));
        _mm512_storeu_ps(j->p + i, p);
        _mm512_storeu_ps(j->m + i, m);
        _mm512_storeu_ps(j->v + i, v);
    }
    return i;
}

static void adam_task(void *ctx, int id, int nt)
{
    const adam_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range(j->n, id, nt, &lo, &hi);
    if (nmc_cpu_isa() == NMC_ISA_AVX512) lo = adam_avx512(j, lo, hi);
    adam_scalar(j, lo, hi);
}

void nmc_cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                   float beta2, float eps, float wd, int adam_l2, long step)
{
    if (n == 0 || step < 1) return;
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    adam_job_t j = {p, m, v, g, n,
                    adam_l2 ? 1.0f : (float)(1.0 - (double)lr * wd),
                    adam_l2 ? wd : 0.0f,
                    (float)(1.0 - (double)beta1),
                    beta2,
                    (float)(1.0 - (double)beta2),
                    (float)(-((double)lr / bc1)),
                    (float)sqrt(bc2),
                    eps};
    nmc_cpu_parallel(adam_task, &j, nmc_cpu_want(n, 1 << 16));
}
