/* nmc_cpu_vec.h — 16-lane float vectors for the CPU kernels (kernels/ C files only).
 *
 * GCC vector types: one zmm under AVX-512, two ymm under AVX2, four xmm with SSE2. A
 * kernel writes its row loops once with these (always-inline helpers), then instantiates
 * them per ISA level with target attributes and picks one with nmc_cpu_isa(); the lane
 * arithmetic is the same IEEE mul/add at every level (ISO C mode: no FMA contraction),
 * so every level gives the same bits. Vectors are passed by pointer or inside
 * always-inline helpers only (no ABI question between ISA levels).
 */
#ifndef NMC_CPU_VEC_H
#define NMC_CPU_VEC_H
#include <stdint.h>
#include <string.h>

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
/* unaligned, aliasing view for loads and stores: *(v16u *)p */
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define NMC_VEC_INLINE static inline __attribute__((always_inline))

/* lane select: m ? a : b, m from a vector comparison (all-ones or zero per lane) */
#define NMC_VSEL(m, a, b) ((v16f)(((v16i)(a) & (m)) | ((v16i)(b) & ~(m))))

/* *out = exp(*px) per lane, for arguments <= ~0 (max-shifted scores and logits):
 * Cephes expf (reduction by ln 2 split in two, degree-6 polynomial; relative error
 * ~1.5e-7 vs exp in double). Lanes below -87.3 (and -inf) give 0; NaN stays NaN-free
 * only if the caller never passes NaN (it does not: scores are finite). */
NMC_VEC_INLINE void nmc_vexp(v16f *out, const v16f *px)
{
    v16f x = *px;
    v16i under = x < -87.3f; /* these lanes are computed at -87.3, then zeroed */
    v16f lo = NMC_VSEL(under, (v16f){0} - 87.3f, x);
    v16f t = lo * 1.44269504088896341f + 12582912.0f; /* round(x log2 e): 1.5 * 2^23 trick */
    v16f n = t - 12582912.0f;
    v16f r = lo - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v16f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    v16i e = __builtin_convertvector(n, v16i) << 23;
    *out = (v16f)(((v16i)p + e) & ~under);
}

NMC_VEC_INLINE float nmc_vmax(const v16f *v)
{
    float t[16], m;
    memcpy(t, v, sizeof t);
    m = t[0];
    for (int i = 1; i < 16; i++) m = t[i] > m ? t[i] : m;
    return m;
}

/* lanes summed in lane order, in double */
NMC_VEC_INLINE double nmc_vsum(const v16f *v)
{
    float t[16];
    double s = 0.0;
    memcpy(t, v, sizeof t);
    for (int i = 0; i < 16; i++) s += t[i];
    return s;
}
#endif
