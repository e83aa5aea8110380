/* attention.c — causal grouped-query attention with packed-document masking, CPU fp32.
 *
 * Belongs here: nmc_cpu_attention_fwd / nmc_cpu_attention_bwd.
 * q, out, dq, dout [B*T, H*hd]; k, v, dk, dv [B*T, KVH*hd]; lse [B, H, T] (natural log);
 * doc_start [B*T] (within-row index of the first token of each token's document) or NULL.
 * Query head h reads kv head h / (H/KVH). Token i attends to keys j in [ds(i), i] where
 * ds(i) = doc_start[i] clamped to [0, i] (so a bad doc_start can never read outside the row).
 *   fwd: s_j = scale q_i.k_j;  out_i = sum_j softmax(s)_j v_j;  lse_i = log sum_j exp(s_j)
 *        online softmax over blocks of ATT_BLOCK keys (flash style): no T x T buffer.
 *   bwd: p_j = exp(s_j - lse_i), D_i = dout_i.out_i, ds_j = p_j (dout_i.v_j - D_i);
 *        dq_i = scale sum_j ds_j k_j;  dk_j = scale sum_i ds_j q_i;  dv_j = sum_i p_j dout_i
 *        (dk/dv summed over the query heads of the group; all of dq, dk, dv overwritten).
 * Threads: fwd splits the B*H (row, head) pairs, bwd the B*KVH (row, kv head) groups, so
 * each output element has one writer and a fixed summation order (any thread count gives
 * the same bits).
 * Rows are vectorized with 16-lane GCC vector types and instantiated for AVX-512, AVX2 and
 * SSE2 (picked with matmul's ISA level); the lane math is identical, so are the bits.
 * Test tolerance: out/lse vs double and vs torch 2e-7 + 2e-6 rel; dq/dk/dv vs central
 * differences of the double forward 1e-6 + 1e-4 rel, vs torch 1e-6 + 1e-5 rel.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATT_BLOCK 64 /* keys per online-softmax block: scores fit in L1, one rescale each */

typedef struct {
    float *out, *lse, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *out_in, *lse_in;
    const int32_t *doc_start;
    int B, T, H, KVH, hd;
    float scale;
} att_job_t;

/* 16-lane GCC vector type: one zmm under AVX-512, two ymm under AVX2, four xmm otherwise.
 * Lane arithmetic is the same IEEE mul/add at every ISA level (no FMA contraction in
 * ISO C mode), so all three instantiations below produce the same bits. */
typedef float v16f __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define INLINE static inline __attribute__((always_inline))

INLINE float dotf(const float *a, const float *b, int n)
{
    float s = 0.0f;
    int i = 0;
    if (n >= 16) {
        v16f acc = {0};
        for (; i + 16 <= n; i += 16) acc += *(const v16u *)(a + i) * *(const v16u *)(b + i);
        float t[16];
        memcpy(t, &acc, sizeof t);
        for (int l = 0; l < 16; l++) s += t[l];
    }
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

INLINE void axpyf(float *y, float a, const float *x, int n)
{
    int i = 0;
    v16f va = {0};
    va += a;
    for (; i + 16 <= n; i += 16) *(v16u *)(y + i) += va * *(const v16u *)(x + i);
    for (; i < n; i++) y[i] += a * x[i];
}

INLINE void scalef(float *y, float a, int n)
{
    for (int i = 0; i < n; i++) y[i] *= a;
}

INLINE int first_key(const att_job_t *j, int b, int i)
{
    if (!j->doc_start) return 0;
    int ds = j->doc_start[(size_t)b * j->T + i];
    return ds < 0 ? 0 : (ds > i ? i : ds);
}

/* One query row: online softmax over key blocks. acc has hd floats. */
INLINE void fwd_row(const att_job_t *j, int b, int h, int i, float *acc)
{
    int hd = j->hd, kvh = h / (j->H / j->KVH);
    size_t qs = (size_t)j->H * hd, ks = (size_t)j->KVH * hd, row0 = (size_t)b * j->T;
    const float *qi = j->q + (row0 + i) * qs + (size_t)h * hd;
    const float *kb = j->k + row0 * ks + (size_t)kvh * hd, *vb = j->v + row0 * ks + (size_t)kvh * hd;
    float s[ATT_BLOCK], m = -INFINITY, l = 0.0f;
    memset(acc, 0, sizeof(float) * (size_t)hd);
    for (int j0 = first_key(j, b, i); j0 <= i; j0 += ATT_BLOCK) {
        int nb = i + 1 - j0 < ATT_BLOCK ? i + 1 - j0 : ATT_BLOCK;
        float bm = -INFINITY;
        for (int t = 0; t < nb; t++) {
            s[t] = j->scale * dotf(qi, kb + (size_t)(j0 + t) * ks, hd);
            bm = s[t] > bm ? s[t] : bm;
        }
        float mn = bm > m ? bm : m;
        float corr = expf(m - mn); /* exp(-inf) = 0 on the first block */
        l *= corr;
        scalef(acc, corr, hd);
        for (int t = 0; t < nb; t++) {
            float p = expf(s[t] - mn);
            l += p;
            axpyf(acc, p, vb + (size_t)(j0 + t) * ks, hd);
        }
        m = mn;
    }
    float *o = j->out + (row0 + i) * qs + (size_t)h * hd;
    float inv = 1.0f / l;
    for (int d = 0; d < hd; d++) o[d] = acc[d] * inv;
    j->lse[((size_t)b * j->H + h) * j->T + i] = m + logf(l);
}

INLINE void fwd_body(void *ctx, int id, int n)
{
    const att_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->B * j->H, id, n, &lo, &hi);
    float *acc = malloc(sizeof(float) * (size_t)j->hd);
    for (size_t t = lo; t < hi; t++) {
        int b = (int)(t / (size_t)j->H), h = (int)(t % (size_t)j->H);
        for (int i = 0; i < j->T; i++) {
            if (acc) {
                fwd_row(j, b, h, i, acc);
                continue;
            }
            /* out of memory: poison the outputs so the loss turns NaN visibly */
            float *o = j->out + ((size_t)b * j->T + i) * j->H * j->hd + (size_t)h * j->hd;
            for (int d = 0; d < j->hd; d++) o[d] = NAN;
            j->lse[((size_t)b * j->H + h) * j->T + i] = NAN;
        }
    }
    free(acc);
}

/* All query heads of kv group (b, g): accumulates dk/dv rows of the group, writes dq. */
INLINE void bwd_group(const att_job_t *j, int b, int g)
{
    int hd = j->hd, rep = j->H / j->KVH;
    size_t qs = (size_t)j->H * hd, ks = (size_t)j->KVH * hd, row0 = (size_t)b * j->T;
    const float *kb = j->k + row0 * ks + (size_t)g * hd, *vb = j->v + row0 * ks + (size_t)g * hd;
    float *dkb = j->dk + row0 * ks + (size_t)g * hd, *dvb = j->dv + row0 * ks + (size_t)g * hd;
    for (int t = 0; t < j->T; t++) {
        memset(dkb + (size_t)t * ks, 0, sizeof(float) * (size_t)hd);
        memset(dvb + (size_t)t * ks, 0, sizeof(float) * (size_t)hd);
    }
    for (int h = g * rep; h < (g + 1) * rep; h++) {
        for (int i = 0; i < j->T; i++) {
            size_t qo = (row0 + i) * qs + (size_t)h * hd;
            const float *qi = j->q + qo, *doi = j->dout + qo;
            float *dqi = j->dq + qo;
            float lse = j->lse_in[((size_t)b * j->H + h) * j->T + i];
            float Di = dotf(doi, j->out_in + qo, hd);
            memset(dqi, 0, sizeof(float) * (size_t)hd);
            for (int jj = first_key(j, b, i); jj <= i; jj++) {
                const float *kj = kb + (size_t)jj * ks, *vj = vb + (size_t)jj * ks;
                float p = expf(j->scale * dotf(qi, kj, hd) - lse);
                float ds = p * (dotf(doi, vj, hd) - Di);
                axpyf(dqi, ds, kj, hd);
                axpyf(dkb + (size_t)jj * ks, j->scale * ds, qi, hd);
                axpyf(dvb + (size_t)jj * ks, p, doi, hd);
            }
            scalef(dqi, j->scale, hd);
        }
    }
}

INLINE void bwd_body(void *ctx, int id, int n)
{
    const att_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->B * j->KVH, id, n, &lo, &hi);
    for (size_t t = lo; t < hi; t++) bwd_group(j, (int)(t / (size_t)j->KVH), (int)(t % (size_t)j->KVH));
}

/* One instantiation per ISA level (see nmc_cpu_isa in matmul.c). */
#define ATT_VARIANT(SUF, ATTR)                                                               \
    ATTR static void fwd_task_##SUF(void *ctx, int id, int n) { fwd_body(ctx, id, n); } \
    ATTR static void bwd_task_##SUF(void *ctx, int id, int n) { bwd_body(ctx, id, n); }
ATT_VARIANT(generic, )
ATT_VARIANT(avx2, __attribute__((target("avx2"))))
ATT_VARIANT(avx512, __attribute__((target("avx512f"))))

static nmc_cpu_task_fn pick(int bwd)
{
    switch (nmc_cpu_isa()) {
    case NMC_ISA_AVX512: return bwd ? bwd_task_avx512 : fwd_task_avx512;
    case NMC_ISA_AVX2: return bwd ? bwd_task_avx2 : fwd_task_avx2;
    default: return bwd ? bwd_task_generic : fwd_task_generic;
    }
}

void nmc_cpu_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *doc_start, int B, int T, int H, int KVH, int hd,
                           float scale)
{
    if (B <= 0 || T <= 0 || H <= 0 || KVH <= 0 || hd <= 0 || H % KVH != 0) return;
    att_job_t j = {out, lse, NULL, NULL, NULL, q, k, v, NULL, NULL, NULL, doc_start,
                   B, T, H, KVH, hd, scale};
    size_t work = (size_t)T * T * hd; /* per (row, head) pair, roughly */
    int want = nmc_cpu_want(work * (size_t)B * H, 1 << 20);
    nmc_cpu_parallel(pick(0), &j, want < B * H ? want : B * H);
}

void nmc_cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                           const float *lse, const float *q, const float *k, const float *v,
                           const int32_t *doc_start, int B, int T, int H, int KVH, int hd,
                           float scale)
{
    if (B <= 0 || T <= 0 || H <= 0 || KVH <= 0 || hd <= 0 || H % KVH != 0) return;
    att_job_t j = {NULL, NULL, dq, dk, dv, q, k, v, dout, out, lse, doc_start,
                   B, T, H, KVH, hd, scale};
    size_t work = (size_t)T * T * hd * (size_t)(H / KVH);
    int want = nmc_cpu_want(work * (size_t)B * KVH, 1 << 20);
    nmc_cpu_parallel(pick(1), &j, want < B * KVH ? want : B * KVH);
}
