/* nmc_adam_math.cuh — private to kernels/optim.cu and kernels/fused.cu: the per-element
 * AdamW update of adamw.c (torch.optim.AdamW, foreach=False) and its scalars, shared by the
 * per-tensor kernels and the multi-tensor one so both give the CPU's bits. Plain device
 * code (no intrinsics beyond the _rn ones), so the CPU emulator (tests/gpu/fused_emu) can
 * compile it too.
 */
#ifndef NMC_ADAM_MATH_CUH
#define NMC_ADAM_MATH_CUH
#include <math.h>

struct adam_hp { /* the scalars of adamw.c, computed the same way */
    float decay_mul, l2, w1, beta2, c2, neg_step, bc2_sqrt, eps;
};

/* The scalars for one step (host; step >= 1 checked by the caller). */
static inline void adam_hp_fill(adam_hp *h, float lr, float beta1, float beta2, float eps,
                                float wd, int adam_l2, long step) {
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    h->decay_mul = adam_l2 ? 1.0f : (float)(1.0 - (double)lr * wd);
    h->l2 = adam_l2 ? wd : 0.0f;
    h->w1 = (float)(1.0 - (double)beta1);
    h->beta2 = beta2;
    h->c2 = (float)(1.0 - (double)beta2);
    h->neg_step = (float)(-((double)lr / bc1));
    h->bc2_sqrt = (float)sqrt(bc2);
    h->eps = eps;
}

/* torch's lerp: start + w*(end-start) for |w| < 0.5, else end - (end-start)*(1-w) */
__device__ __forceinline__ float lerp_t(float a, float b, float w) {
    return fabsf(w) < 0.5f ? __fadd_rn(a, __fmul_rn(w, __fsub_rn(b, a)))
                           : __fsub_rn(b, __fmul_rn(__fsub_rn(b, a), __fsub_rn(1.0f, w)));
}

/* _rn intrinsics: no FMA contraction, so every step rounds as adamw.c (built without
 * contraction) does; sqrtf and '/' are IEEE-exact without --use_fast_math. */
__device__ __forceinline__ float adam_one(float p, float g, float *m, float *v, size_t i,
                                          const adam_hp &h) {
    if (h.l2 != 0.f) g = __fadd_rn(g, __fmul_rn(h.l2, p));
    p = __fmul_rn(p, h.decay_mul);
    float mi = lerp_t(m[i], g, h.w1);
    float vi = __fadd_rn(__fmul_rn(v[i], h.beta2), __fmul_rn(__fmul_rn(h.c2, g), g));
    m[i] = mi;
    v[i] = vi;
    float denom = __fadd_rn(sqrtf(vi) / h.bc2_sqrt, h.eps);
    return __fadd_rn(p, __fmul_rn(h.neg_step, mi) / denom);
}
#endif
