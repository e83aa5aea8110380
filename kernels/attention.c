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
 * Layout of the work: keys in blocks of ATT_BLOCK, each block of K (and V) transposed once
 * into scratch, so the scores (and dout.v) of 16 keys are 16-lane FMAs over the head dim;
 * every query row of the head(s) then visits the block. Forward keeps the running max /
 * sum per row and rescales the out row in place (flash style). exp is nmc_vexp.
 * Rows are vectorized with 16-lane GCC vector types (nmc_cpu_vec.h) and instantiated for
 * AVX-512, AVX2 and SSE2 (picked with matmul's ISA level); the lane math is identical, so
 * are the bits.
 * Test tolerance: out/lse vs double and vs torch 2e-7 + 2e-6 rel; dq/dk/dv vs central
 * differences of the double forward 1e-6 + 1e-4 rel, vs torch 1e-6 + 1e-5 rel.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"
#include "nmc_cpu_vec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATT_BLOCK 64 /* keys per block: a transposed K (and V) block fits in L1 */
#define ATT_VB (ATT_BLOCK / 16) /* 16-lane vectors per block: row_scores assumes 4 */

typedef struct {
    float *out, *lse, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *out_in, *lse_in;
    const int32_t *doc_start;
    int B, T, H, KVH, hd;
    float scale;
} att_job_t;

#define INLINE NMC_VEC_INLINE

INLINE float dotf(const float *a, const float *b, int n)
{
    float s = 0.0f;
    int i = 0;
    if (n >= 16) {
        v16f acc = {0};
        for (; i + 16 <= n; i += 16) acc += *(const v16u *)(a + i) * *(const v16u *)(b + i);
        s = (float)nmc_vsum(&acc);
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

/* Block [jb, jb + nb) of a [T, ks]-strided head (hd wide) transposed into
 * kt[d * ATT_BLOCK + t], lanes t >= nb zero: scores of 16 keys are then 16-lane FMAs
 * over d, with no horizontal sums. */
INLINE void transpose_block(float *kt, const float *src, size_t ks, int jb, int nb, int hd)
{
    for (int t = 0; t < nb; t++) {
        const float *row = src + (size_t)(jb + t) * ks;
        for (int d = 0; d < hd; d++) kt[(size_t)d * ATT_BLOCK + t] = row[d];
    }
    for (int d = 0; d < hd; d++)
        for (int t = nb; t < ATT_BLOCK; t++) kt[(size_t)d * ATT_BLOCK + t] = 0.0f;
}

/* acc[v] lanes t: sum_d x[d] * kt[d][16 v + t] (the whole block; the caller masks) */
INLINE void row_scores(v16f *acc, const float *x, const float *kt, int hd)
{
    v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int d = 0; d < hd; d++) {
        const float *kd = kt + (size_t)d * ATT_BLOCK;
        float xd = x[d];
        a0 += xd * *(const v16u *)kd;
        a1 += xd * *(const v16u *)(kd + 16);
        a2 += xd * *(const v16u *)(kd + 32);
        a3 += xd * *(const v16u *)(kd + 48);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* y = a * y + sum_t c[t] * rows[t] (n rows of hd, stride ks). 64 columns at a time in four
 * independent register sums (one sum would wait on the add latency every row), then 16,
 * then scalar: y is read and written once. */
INLINE void rows_combine(float *y, float a, const float *c, const float *rows, size_t ks, int n,
                         int hd)
{
    int d = 0;
    for (; d + 64 <= hd; d += 64) {
        v16f a0 = *(const v16u *)(y + d) * a, a1 = *(const v16u *)(y + d + 16) * a;
        v16f a2 = *(const v16u *)(y + d + 32) * a, a3 = *(const v16u *)(y + d + 48) * a;
        for (int t = 0; t < n; t++) {
            const float *r = rows + (size_t)t * ks + d;
            float ct = c[t];
            a0 += ct * *(const v16u *)r;
            a1 += ct * *(const v16u *)(r + 16);
            a2 += ct * *(const v16u *)(r + 32);
            a3 += ct * *(const v16u *)(r + 48);
        }
        *(v16u *)(y + d) = a0, *(v16u *)(y + d + 16) = a1;
        *(v16u *)(y + d + 32) = a2, *(v16u *)(y + d + 48) = a3;
    }
    for (; d + 16 <= hd; d += 16) {
        v16f acc = *(const v16u *)(y + d) * a;
        for (int t = 0; t < n; t++) acc += c[t] * *(const v16u *)(rows + (size_t)t * ks + d);
        *(v16u *)(y + d) = acc;
    }
    for (; d < hd; d++) {
        float acc = y[d] * a;
        for (int t = 0; t < n; t++) acc += c[t] * rows[(size_t)t * ks + d];
        y[d] = acc;
    }
}

/* lanes of block jb outside keys [lo, hi] set to -inf */
INLINE void mask_scores(v16f *s, int jb, int lo, int hi)
{
    for (int v = 0; v < ATT_VB; v++) {
        v16i t = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        t += jb + 16 * v;
        v16i bad = (t < lo) | (t > hi);
        s[v] = NMC_VSEL(bad, (v16f){0} - INFINITY, s[v]);
    }
}

typedef struct {
    float *kt, *vt;      /* [hd][ATT_BLOCK] each */
    float *m, *l;        /* fwd: running max / sum per query row [T] */
    float *D;            /* bwd: dout . out per (head of group, row) [rep * T] */
} att_scratch_t;

static int scratch_new(att_scratch_t *w, const att_job_t *j, int bwd)
{
    size_t blk = (size_t)j->hd * ATT_BLOCK, rows = (size_t)j->T * (bwd ? (size_t)(j->H / j->KVH) : 2);
    w->kt = aligned_alloc(64, ((2 * blk + rows) * sizeof(float) + 63) / 64 * 64);
    if (!w->kt) return -1;
    w->vt = w->kt + blk;
    w->m = w->D = w->vt + blk;
    w->l = w->m + j->T;
    return 0;
}

/* Forward of (row b, head h): out rows of the head are the running accumulators. */
INLINE void fwd_head(const att_job_t *j, int b, int h, att_scratch_t *w)
{
    int hd = j->hd, T = j->T, kvh = h / (j->H / j->KVH);
    size_t qs = (size_t)j->H * hd, ks = (size_t)j->KVH * hd, row0 = (size_t)b * T;
    const float *q = j->q + row0 * qs + (size_t)h * hd;
    const float *k = j->k + row0 * ks + (size_t)kvh * hd, *vb = j->v + row0 * ks + (size_t)kvh * hd;
    float *out = j->out + row0 * qs + (size_t)h * hd;
    for (int i = 0; i < T; i++) {
        w->m[i] = -INFINITY;
        w->l[i] = 0.0f;
        memset(out + (size_t)i * qs, 0, sizeof(float) * (size_t)hd);
    }
    for (int jb = 0; jb < T; jb += ATT_BLOCK) {
        int nb = T - jb < ATT_BLOCK ? T - jb : ATT_BLOCK;
        transpose_block(w->kt, k, ks, jb, nb, hd);
        for (int i = jb; i < T; i++) {
            int lo = first_key(j, b, i), hi = i < jb + nb - 1 ? i : jb + nb - 1;
            if (lo < jb) lo = jb;
            if (lo > hi) continue;
            v16f s[ATT_VB];
            row_scores(s, q + (size_t)i * qs, w->kt, hd);
            for (int v = 0; v < ATT_VB; v++) s[v] *= j->scale;
            mask_scores(s, jb, lo, hi);
            v16f vm = s[0];
            for (int v = 1; v < ATT_VB; v++) vm = NMC_VSEL(s[v] > vm, s[v], vm);
            float bm = nmc_vmax(&vm);
            float mn = bm > w->m[i] ? bm : w->m[i];
            float corr = expf(w->m[i] - mn); /* exp(-inf) = 0 on the row's first block */
            float p[ATT_BLOCK] __attribute__((aligned(64)));
            v16f es = {0};
            for (int v = 0; v < ATT_VB; v++) {
                v16f x = s[v] - mn, e;
                nmc_vexp(&e, &x);
                es += e;
                memcpy(p + 16 * v, &e, sizeof e);
            }
            float *o = out + (size_t)i * qs;
            w->l[i] = w->l[i] * corr + (float)nmc_vsum(&es);
            rows_combine(o, corr, p + (lo - jb), vb + (size_t)lo * ks, ks, hi - lo + 1, hd);
            w->m[i] = mn;
        }
    }
    for (int i = 0; i < T; i++) {
        scalef(out + (size_t)i * qs, 1.0f / w->l[i], hd);
        j->lse[((size_t)b * j->H + h) * T + i] = w->m[i] + logf(w->l[i]);
    }
}

INLINE void fwd_body(void *ctx, int id, int n)
{
    const att_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->B * j->H, id, n, &lo, &hi);
    att_scratch_t w;
    int ok = scratch_new(&w, j, 0) == 0;
    for (size_t t = lo; t < hi; t++) {
        int b = (int)(t / (size_t)j->H), h = (int)(t % (size_t)j->H);
        if (ok) {
            fwd_head(j, b, h, &w);
            continue;
        }
        /* out of memory: poison the outputs so the loss turns NaN visibly */
        for (int i = 0; i < j->T; i++) {
            float *o = j->out + ((size_t)b * j->T + i) * j->H * j->hd + (size_t)h * j->hd;
            for (int d = 0; d < j->hd; d++) o[d] = NAN;
            j->lse[((size_t)b * j->H + h) * j->T + i] = NAN;
        }
    }
    if (ok) free(w.kt);
}

/* One query row i of head h against key block jb (keys lo..hi): dq row accumulated,
 * dk / dv rows of the block accumulated. */
INLINE void bwd_row(const att_job_t *j, const att_scratch_t *w, int b, int h, int i, int jb,
                    int lo, int hi, float Di)
{
    int hd = j->hd, g = h / (j->H / j->KVH);
    size_t qs = (size_t)j->H * hd, ks = (size_t)j->KVH * hd, row0 = (size_t)b * j->T;
    size_t qo = (row0 + i) * qs + (size_t)h * hd;
    const float *qi = j->q + qo, *doi = j->dout + qo;
    float *dqi = j->dq + qo;
    const float *kb = j->k + row0 * ks + (size_t)g * hd;
    float *dkb = j->dk + row0 * ks + (size_t)g * hd, *dvb = j->dv + row0 * ks + (size_t)g * hd;
    float lse = j->lse_in[((size_t)b * j->H + h) * j->T + i];
    v16f s[ATT_VB], dp[ATT_VB];
    row_scores(s, qi, w->kt, hd);
    row_scores(dp, doi, w->vt, hd);
    float p[ATT_BLOCK] __attribute__((aligned(64))), ds[ATT_BLOCK] __attribute__((aligned(64)));
    for (int v = 0; v < ATT_VB; v++) s[v] = s[v] * j->scale - lse;
    mask_scores(s, jb, lo, hi);
    for (int v = 0; v < ATT_VB; v++) {
        v16f e, d;
        nmc_vexp(&e, &s[v]);
        d = e * (dp[v] - Di);
        memcpy(p + 16 * v, &e, sizeof e);
        memcpy(ds + 16 * v, &d, sizeof d);
    }
    rows_combine(dqi, 1.0f, ds + (lo - jb), kb + (size_t)lo * ks, ks, hi - lo + 1, hd);
    for (int t = lo - jb; t <= hi - jb; t++) {
        size_t r = (size_t)(jb + t) * ks;
        axpyf(dkb + r, j->scale * ds[t], qi, hd);
        axpyf(dvb + r, p[t], doi, hd);
    }
}

/* All query heads of kv group (b, g): dk/dv rows of the group, dq rows of its heads. */
INLINE void bwd_group(const att_job_t *j, int b, int g, att_scratch_t *w)
{
    int hd = j->hd, rep = j->H / j->KVH, T = j->T;
    size_t qs = (size_t)j->H * hd, ks = (size_t)j->KVH * hd, row0 = (size_t)b * T;
    const float *kb = j->k + row0 * ks + (size_t)g * hd, *vb = j->v + row0 * ks + (size_t)g * hd;
    for (int t = 0; t < T; t++) {
        memset(j->dk + (row0 + t) * ks + (size_t)g * hd, 0, sizeof(float) * (size_t)hd);
        memset(j->dv + (row0 + t) * ks + (size_t)g * hd, 0, sizeof(float) * (size_t)hd);
    }
    for (int r = 0; r < rep; r++)
        for (int i = 0; i < T; i++) {
            size_t qo = (row0 + i) * qs + (size_t)(g * rep + r) * hd;
            memset(j->dq + qo, 0, sizeof(float) * (size_t)hd);
            w->D[(size_t)r * T + i] = dotf(j->dout + qo, j->out_in + qo, hd);
        }
    for (int jb = 0; jb < T; jb += ATT_BLOCK) {
        int nb = T - jb < ATT_BLOCK ? T - jb : ATT_BLOCK;
        transpose_block(w->kt, kb, ks, jb, nb, hd);
        transpose_block(w->vt, vb, ks, jb, nb, hd);
        for (int r = 0; r < rep; r++)
            for (int i = jb; i < T; i++) {
                int lo = first_key(j, b, i), hi = i < jb + nb - 1 ? i : jb + nb - 1;
                if (lo < jb) lo = jb;
                if (lo <= hi) bwd_row(j, w, b, g * rep + r, i, jb, lo, hi, w->D[(size_t)r * T + i]);
            }
    }
    for (int r = 0; r < rep; r++)
        for (int i = 0; i < T; i++) scalef(j->dq + (row0 + i) * qs + (size_t)(g * rep + r) * hd, j->scale, hd);
}

INLINE void bwd_body(void *ctx, int id, int n)
{
    const att_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->B * j->KVH, id, n, &lo, &hi);
    att_scratch_t w;
    if (scratch_new(&w, j, 1) != 0) {
        /* out of memory: NaN gradients, visible at the first norm / optimizer step */
        size_t qs = (size_t)j->H * j->hd, ks = (size_t)j->KVH * j->hd;
        for (size_t t = lo; t < hi; t++) {
            int b = (int)(t / (size_t)j->KVH), g = (int)(t % (size_t)j->KVH), rep = j->H / j->KVH;
            for (int i = 0; i < j->T; i++) {
                size_t r = (size_t)b * j->T + i;
                for (int d = 0; d < j->hd; d++) {
                    j->dk[r * ks + (size_t)g * j->hd + d] = NAN;
                    j->dv[r * ks + (size_t)g * j->hd + d] = NAN;
                }
                for (int d = 0; d < rep * j->hd; d++) j->dq[r * qs + (size_t)g * rep * j->hd + d] = NAN;
            }
        }
        return;
    }
    for (size_t t = lo; t < hi; t++) bwd_group(j, (int)(t / (size_t)j->KVH), (int)(t % (size_t)j->KVH), &w);
    free(w.kt);
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
