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
 * query rows visit the block ATT_R at a time (register tiles: one load of the block feeds
 * ATT_R rows). Forward keeps the running max / sum per row and rescales the out row in
 * place (flash style). Backward gathers a key block's dK / dV in scratch from ATT_G query
 * rows at a time and writes them once. exp is nmc_vexp. hd=64, B=4 T=256 H=8 KVH=4, 2
 * threads: fwd 3.0 -> 1.65 ms, bwd 7.3 -> 3.2 ms against one row at a time (the forward
 * is bound by exp at this head size).
 * Rows are vectorized with 16-lane GCC vector types (nmc_cpu_vec.h) and instantiated for
 * AVX-512, AVX2 and SSE2 (picked with matmul's ISA level); every level sums in the same
 * order, AVX-512 and AVX2 with fused multiply-adds, SSE2 without, so levels agree to
 * rounding (each is deterministic).
 * Test tolerance: out/lse vs double and vs torch 2e-7 + 2e-6 rel; dq/dk/dv vs central
 * differences of the double forward 1e-6 + 1e-4 rel, vs torch 1e-6 + 1e-5 rel.
 */
/* Lane arithmetic may fuse a * b + c into one FMA where the ISA level has it (the AVX-512
 * and AVX2+FMA instantiations; SSE2 has none): set before the includes so the inlined
 * vector helpers are compiled alike. */
#pragma GCC optimize("fp-contract=fast")
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

/* Query rows in register tiles of ATT_R: the scores of ATT_R rows against a key block
 * share every load of the transposed block, and the out / dq rows of ATT_R rows share every
 * load of a V / K row (one row at a time the loops wait on loads, not on FMAs). */
#define ATT_R 4

/* s[r][v] lanes t: sum_d x_r[d] * kt[d][16 v + t] for rows x_r = x + r * xs */
INLINE void rows_scores4(v16f s[ATT_R][ATT_VB], const float *x, size_t xs, const float *kt, int hd)
{
    v16f a[ATT_R][ATT_VB];
    for (int r = 0; r < ATT_R; r++)
        for (int v = 0; v < ATT_VB; v++) a[r][v] = (v16f){0};
    for (int d = 0; d < hd; d++) {
        const float *kd = kt + (size_t)d * ATT_BLOCK;
        v16f k0 = *(const v16u *)kd, k1 = *(const v16u *)(kd + 16);
        v16f k2 = *(const v16u *)(kd + 32), k3 = *(const v16u *)(kd + 48);
#pragma GCC unroll 4
        for (int r = 0; r < ATT_R; r++) {
            float xd = x[(size_t)r * xs + d];
            a[r][0] += xd * k0;
            a[r][1] += xd * k1;
            a[r][2] += xd * k2;
            a[r][3] += xd * k3;
        }
    }
    for (int r = 0; r < ATT_R; r++)
        for (int v = 0; v < ATT_VB; v++) s[r][v] = a[r][v];
}

/* For rows r < ATT_R: y_r = a[r] * y_r + sum_{t < n} c[r * cs + t] * rows[t] (rows of hd,
 * stride ks; y_r = y + r * ys). Per row the same sums in the same order as rows_combine. */
INLINE void rows_combine4(float *y, size_t ys, const float *a, const float *c, size_t cs,
                          const float *rows, size_t ks, int n, int hd)
{
    int d = 0;
    for (; d + 64 <= hd; d += 64) {
        v16f acc[ATT_R][4];
#pragma GCC unroll 4
        for (int r = 0; r < ATT_R; r++)
            for (int u = 0; u < 4; u++) acc[r][u] = *(const v16u *)(y + r * ys + d + 16 * u) * a[r];
        for (int t = 0; t < n; t++) {
            const float *rt = rows + (size_t)t * ks + d;
            v16f r0 = *(const v16u *)rt, r1 = *(const v16u *)(rt + 16);
            v16f r2 = *(const v16u *)(rt + 32), r3 = *(const v16u *)(rt + 48);
#pragma GCC unroll 4
            for (int r = 0; r < ATT_R; r++) {
                float ct = c[(size_t)r * cs + t];
                acc[r][0] += ct * r0;
                acc[r][1] += ct * r1;
                acc[r][2] += ct * r2;
                acc[r][3] += ct * r3;
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < ATT_R; r++)
            for (int u = 0; u < 4; u++) *(v16u *)(y + r * ys + d + 16 * u) = acc[r][u];
    }
    for (; d + 16 <= hd; d += 16) {
        v16f acc[ATT_R];
        for (int r = 0; r < ATT_R; r++) acc[r] = *(const v16u *)(y + r * ys + d) * a[r];
        for (int t = 0; t < n; t++) {
            v16f rt = *(const v16u *)(rows + (size_t)t * ks + d);
            for (int r = 0; r < ATT_R; r++) acc[r] += c[(size_t)r * cs + t] * rt;
        }
        for (int r = 0; r < ATT_R; r++) *(v16u *)(y + r * ys + d) = acc[r];
    }
    for (; d < hd; d++)
        for (int r = 0; r < ATT_R; r++) {
            float acc = y[r * ys + d] * a[r];
            for (int t = 0; t < n; t++) acc += c[(size_t)r * cs + t] * rows[(size_t)t * ks + d];
            y[r * ys + d] = acc;
        }
}

/* dst[t][:] += sum_{i < m} c[i * ATT_BLOCK + t] * x_i[:] for the keys t < ATT_BLOCK of a
 * block (dst [ATT_BLOCK][hd]; x_i = x + i * xs): dK / dV of a key block from m query rows.
 * Four keys at a time in registers over all m rows, then added to dst once. */
INLINE void keys_accum(float *dst, const float *c, const float *x, size_t xs, int m, int hd)
{
    for (int t0 = 0; t0 < ATT_BLOCK; t0 += 4) {
        int d = 0;
        for (; d + 64 <= hd; d += 64) {
            v16f acc[4][4];
            for (int k = 0; k < 4; k++)
                for (int u = 0; u < 4; u++) acc[k][u] = (v16f){0};
            for (int i = 0; i < m; i++) {
                const float *xi = x + (size_t)i * xs + d, *ci = c + (size_t)i * ATT_BLOCK + t0;
                v16f x0 = *(const v16u *)xi, x1 = *(const v16u *)(xi + 16);
                v16f x2 = *(const v16u *)(xi + 32), x3 = *(const v16u *)(xi + 48);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    float ck = ci[k];
                    acc[k][0] += ck * x0;
                    acc[k][1] += ck * x1;
                    acc[k][2] += ck * x2;
                    acc[k][3] += ck * x3;
                }
            }
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                for (int u = 0; u < 4; u++)
                    *(v16u *)(dst + (size_t)(t0 + k) * hd + d + 16 * u) += acc[k][u];
        }
        for (; d + 16 <= hd; d += 16) {
            v16f acc[4] = {{0}, {0}, {0}, {0}};
            for (int i = 0; i < m; i++) {
                v16f xi = *(const v16u *)(x + (size_t)i * xs + d);
                for (int k = 0; k < 4; k++) acc[k] += c[(size_t)i * ATT_BLOCK + t0 + k] * xi;
            }
            for (int k = 0; k < 4; k++) *(v16u *)(dst + (size_t)(t0 + k) * hd + d) += acc[k];
        }
        for (; d < hd; d++)
            for (int k = 0; k < 4; k++) {
                float acc = 0.0f;
                for (int i = 0; i < m; i++) acc += c[(size_t)i * ATT_BLOCK + t0 + k] * x[(size_t)i * xs + d];
                dst[(size_t)(t0 + k) * hd + d] += acc;
            }
    }
}

/* Lane max / sum by halving (lane-wise ops only: the same bits at every ISA level). */
INLINE float vmax_tree(const v16f *pv)
{
    v16f v = *pv;
    v16f t = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v = NMC_VSEL(t > v, t, v);
    t = __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
    v = NMC_VSEL(t > v, t, v);
    t = __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
    v = NMC_VSEL(t > v, t, v);
    return v[0] > v[1] ? v[0] : v[1];
}
INLINE float vsum_tree(const v16f *pv)
{
    v16f v = *pv;
    v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
    return v[0] + v[1];
}

/* lanes of block jb outside keys [lo, hi] set to -inf */
INLINE void mask_scores(v16f *s, int jb, int lo, int hi)
{
    if (lo <= jb && hi >= jb + ATT_BLOCK - 1) return; /* the whole block: nothing to mask */
    for (int v = 0; v < ATT_VB; v++) {
        v16i t = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        t += jb + 16 * v;
        v16i bad = (t < lo) | (t > hi);
        s[v] = NMC_VSEL(bad, (v16f){0} - INFINITY, s[v]);
    }
}

#define ATT_G 16 /* query rows per backward group: dK / dV of a key block gather them */

typedef struct {
    float *kt, *vt;      /* [hd][ATT_BLOCK] each: the key block's K (and V) transposed */
    float *dkb, *dvb;    /* bwd: [ATT_BLOCK][hd] each, dK / dV of the key block */
    float *p, *ds;       /* bwd: [ATT_G][ATT_BLOCK] each, probabilities / score grads */
    float *m, *l;        /* fwd: running max / sum per query row [T] */
    float *D;            /* bwd: dout . out per (head of group, row) [rep * T] */
} att_scratch_t;

/* Scratch of the calling thread, kept between calls (grow-only, as matmul.c's packing
 * buffers): a fresh buffer per call was page-faulted anew. Freed never (reachable from
 * the thread). */
static _Thread_local float *att_ws;
static _Thread_local size_t att_ws_n;

static int scratch_get(att_scratch_t *w, const att_job_t *j)
{
    size_t blk = (size_t)j->hd * ATT_BLOCK, gb = (size_t)ATT_G * ATT_BLOCK;
    size_t rows = (size_t)j->T * (j->H / j->KVH > 2 ? (size_t)(j->H / j->KVH) : 2);
    size_t n = 4 * blk + 2 * gb + rows;
    if (n > att_ws_n) {
        float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        if (!p) return -1;
        free(att_ws);
        att_ws = p;
        att_ws_n = n;
    }
    w->kt = att_ws;
    w->vt = w->kt + blk;
    w->dkb = w->vt + blk;
    w->dvb = w->dkb + blk;
    w->p = w->dvb + blk;
    w->ds = w->p + gb;
    w->m = w->D = w->ds + gb;
    w->l = w->m + j->T;
    return 0;
}

/* Keys [lo, hi] of block [jb, jb + nb) that query row i of batch row b attends to;
 * lo > hi when none. */
INLINE void block_range(const att_job_t *j, int b, int i, int jb, int nb, int *lo, int *hi)
{
    int l = first_key(j, b, i), h = i < jb + nb - 1 ? i : jb + nb - 1;
    *lo = l < jb ? jb : l;
    *hi = h;
}

/* Online-softmax update of query row i (its state m[i], l[i]) with the masked scores s of
 * one key block: p (ATT_BLOCK, zero outside [lo, hi]) gets the new terms' weights and the
 * return value is the factor for the row's old accumulator. */
INLINE float softmax_update(const att_job_t *j, att_scratch_t *w, v16f *s, float *p, int i,
                            int jb, int lo, int hi)
{
    for (int v = 0; v < ATT_VB; v++) s[v] *= j->scale;
    mask_scores(s, jb, lo, hi);
    v16f vm = s[0];
    for (int v = 1; v < ATT_VB; v++) vm = NMC_VSEL(s[v] > vm, s[v], vm);
    float bm = vmax_tree(&vm);
    float mn = bm > w->m[i] ? bm : w->m[i];
    float corr = expf(w->m[i] - mn); /* exp(-inf) = 0 on the row's first block */
    v16f es = {0};
    for (int v = 0; v < ATT_VB; v++) {
        v16f x = s[v] - mn, e;
        nmc_vexp(&e, &x);
        es += e;
        memcpy(p + 16 * v, &e, sizeof e);
    }
    w->l[i] = w->l[i] * corr + vsum_tree(&es);
    w->m[i] = mn;
    return corr;
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
        int i = jb;
        for (; i + ATT_R <= T; i += ATT_R) {
            /* ATT_R rows: a row with no key in this block keeps its state (factor 1, p 0) */
            v16f s[ATT_R][ATT_VB];
            float p[ATT_R][ATT_BLOCK] __attribute__((aligned(64))), a[ATT_R];
            int tmin = jb + nb, tmax = jb - 1;
            rows_scores4(s, q + (size_t)i * qs, qs, w->kt, hd);
            for (int r = 0; r < ATT_R; r++) {
                int lo, hi;
                block_range(j, b, i + r, jb, nb, &lo, &hi);
                if (lo > hi) {
                    memset(p[r], 0, sizeof p[r]);
                    a[r] = 1.0f;
                    continue;
                }
                a[r] = softmax_update(j, w, s[r], p[r], i + r, jb, lo, hi);
                tmin = lo < tmin ? lo : tmin;
                tmax = hi > tmax ? hi : tmax;
            }
            if (tmin <= tmax)
                rows_combine4(out + (size_t)i * qs, qs, a, p[0] + (tmin - jb), ATT_BLOCK,
                              vb + (size_t)tmin * ks, ks, tmax - tmin + 1, hd);
        }
        for (; i < T; i++) {
            int lo, hi;
            block_range(j, b, i, jb, nb, &lo, &hi);
            if (lo > hi) continue;
            v16f s[ATT_VB];
            float p[ATT_BLOCK] __attribute__((aligned(64)));
            row_scores(s, q + (size_t)i * qs, w->kt, hd);
            float corr = softmax_update(j, w, s, p, i, jb, lo, hi);
            rows_combine(out + (size_t)i * qs, corr, p + (lo - jb), vb + (size_t)lo * ks, ks,
                         hi - lo + 1, hd);
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
    int ok = scratch_get(&w, j) == 0;
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
}

/* p and ds rows (w->p, w->ds [m][ATT_BLOCK]) of query rows i0 .. i0+m-1 of head h against
 * key block jb: p = exp(scale s - lse), ds = p (dout.v - D), zero outside each row's keys.
 * Returns how many rows have a key in the block. */
INLINE int bwd_scores(const att_job_t *j, att_scratch_t *w, int b, int h, int i0, int m, int jb,
                      int nb)
{
    int hd = j->hd, rep = j->H / j->KVH;
    size_t qs = (size_t)j->H * hd, qo = ((size_t)b * j->T + i0) * qs + (size_t)h * hd;
    const float *Dh = w->D + (size_t)(h % rep) * j->T;
    int active = 0;
    for (int r0 = 0; r0 < m; r0 += ATT_R) {
        v16f s[ATT_R][ATT_VB], dp[ATT_R][ATT_VB];
        int nr = m - r0 < ATT_R ? m - r0 : ATT_R;
        if (nr == ATT_R) {
            rows_scores4(s, j->q + qo + (size_t)r0 * qs, qs, w->kt, hd);
            rows_scores4(dp, j->dout + qo + (size_t)r0 * qs, qs, w->vt, hd);
        } else {
            for (int r = 0; r < nr; r++) {
                row_scores(s[r], j->q + qo + (size_t)(r0 + r) * qs, w->kt, hd);
                row_scores(dp[r], j->dout + qo + (size_t)(r0 + r) * qs, w->vt, hd);
            }
        }
        for (int r = 0; r < nr; r++) {
            int i = i0 + r0 + r, lo, hi;
            float *p = w->p + (size_t)(r0 + r) * ATT_BLOCK, *ds = w->ds + (size_t)(r0 + r) * ATT_BLOCK;
            block_range(j, b, i, jb, nb, &lo, &hi);
            if (lo > hi) {
                memset(p, 0, sizeof(float) * ATT_BLOCK);
                memset(ds, 0, sizeof(float) * ATT_BLOCK);
                continue;
            }
            active++;
            float lse = j->lse_in[((size_t)b * j->H + h) * j->T + i], Di = Dh[i];
            for (int v = 0; v < ATT_VB; v++) s[r][v] = s[r][v] * j->scale - lse;
            mask_scores(s[r], jb, lo, hi);
            for (int v = 0; v < ATT_VB; v++) {
                v16f e, d;
                nmc_vexp(&e, &s[r][v]);
                d = e * (dp[r][v] - Di);
                memcpy(p + 16 * v, &e, sizeof e);
                memcpy(ds + 16 * v, &d, sizeof d);
            }
        }
    }
    return active;
}

/* All query heads of kv group (b, g): dk/dv rows of the group, dq rows of its heads.
 * Key blocks outermost: a block's dK / dV gather in scratch from every query row (ATT_G
 * at a time), then are written once. */
INLINE void bwd_group(const att_job_t *j, int b, int g, att_scratch_t *w)
{
    int hd = j->hd, rep = j->H / j->KVH, T = j->T;
    size_t qs = (size_t)j->H * hd, ks = (size_t)j->KVH * hd, row0 = (size_t)b * T;
    const float *kb = j->k + row0 * ks + (size_t)g * hd, *vb = j->v + row0 * ks + (size_t)g * hd;
    static const float ones[ATT_R] = {1.0f, 1.0f, 1.0f, 1.0f};
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
        memset(w->dkb, 0, sizeof(float) * (size_t)ATT_BLOCK * (size_t)hd);
        memset(w->dvb, 0, sizeof(float) * (size_t)ATT_BLOCK * (size_t)hd);
        const float *kblk = kb + (size_t)jb * ks;
        for (int r = 0; r < rep; r++) {
            int h = g * rep + r;
            for (int i0 = jb; i0 < T; i0 += ATT_G) {
                int m = T - i0 < ATT_G ? T - i0 : ATT_G;
                if (!bwd_scores(j, w, b, h, i0, m, jb, nb)) continue;
                size_t qo = (row0 + i0) * qs + (size_t)h * hd;
                int i = 0;
                for (; i + ATT_R <= m; i += ATT_R)
                    rows_combine4(j->dq + qo + (size_t)i * qs, qs, ones, w->ds + (size_t)i * ATT_BLOCK,
                                  ATT_BLOCK, kblk, ks, nb, hd);
                for (; i < m; i++)
                    rows_combine(j->dq + qo + (size_t)i * qs, 1.0f, w->ds + (size_t)i * ATT_BLOCK,
                                 kblk, ks, nb, hd);
                keys_accum(w->dkb, w->ds, j->q + qo, qs, m, hd);
                keys_accum(w->dvb, w->p, j->dout + qo, qs, m, hd);
            }
        }
        for (int t = 0; t < nb; t++) {
            float *dk = j->dk + (row0 + jb + t) * ks + (size_t)g * hd;
            float *dv = j->dv + (row0 + jb + t) * ks + (size_t)g * hd;
            const float *sk = w->dkb + (size_t)t * hd, *sv = w->dvb + (size_t)t * hd;
            for (int d = 0; d < hd; d++) {
                dk[d] = j->scale * sk[d];
                dv[d] = sv[d];
            }
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
    if (scratch_get(&w, j) != 0) {
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
}

/* One instantiation per ISA level (see nmc_cpu_isa in matmul.c). */
#define ATT_VARIANT(SUF, ATTR)                                                               \
    ATTR static void fwd_task_##SUF(void *ctx, int id, int n) { fwd_body(ctx, id, n); } \
    ATTR static void bwd_task_##SUF(void *ctx, int id, int n) { bwd_body(ctx, id, n); }
ATT_VARIANT(generic, )
ATT_VARIANT(avx2, __attribute__((target("avx2,fma"))))
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
