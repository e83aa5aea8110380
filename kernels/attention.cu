/* attention.cu — causal GQA attention with packed-document masking (CUDA, flash-style).
 *
 * Same contract as attention.c: q, out, dq, dout [B*T, H*hd]; k, v, dk, dv [B*T, KVH*hd];
 * lse [B, H, T] fp32 (natural log); doc_start [B*T] or NULL, clamped to [0, i] like the
 * CPU. Query head h reads kv head h / (H/KVH).
 *
 * Tiling: 64 queries x 64 keys, 4 warps; warp w owns 16 rows of every tile, so after a
 * tile is staged in shared memory each warp works alone (only __syncwarp inside).
 * Matmuls use bf16 tensor cores through WMMA (16x16x16, fp32 accumulate); the softmax
 * and masking run in fp32 on tiles staged in shared memory. No T x T buffer exists.
 *   fwd     grid (T/64, H, B): online softmax in base 2; O kept in shared fp32 and
 *           rescaled per key tile; saves lse.
 *   bwd     1) Dsum[b,h,i] = dout_i . out_i (scratch);
 *           2) grid (T/64, KVH, B): one block per key tile accumulates dK, dV in WMMA
 *              registers over the heads of its group and every query tile that can see it
 *              (recomputing P = exp(s - lse));
 *           3) grid (T/64, H, B): one block per query tile accumulates dQ over key tiles.
 *           No atomics: dq, dk, dv are bitwise reproducible.
 * Supported head dims: 32, 64, 96, 128 (multiples of 16, registers bound the top).
 * Test tolerance (bf16 inputs, fp32 CPU reference on the same rounded inputs): out atol
 * 4e-3 + rtol 1.6e-2 (P rounded to bf16 before P V, then the output); lse atol 1e-4 +
 * rtol 1e-5 (fp32 throughout); dq, dk, dv atol 6% of the gradient RMS + rtol 2.3e-2
 * (P and dS rounded to bf16 before their matmuls, as FlashAttention-2; measured noise
 * sigma ~1% of the RMS, max over 5e5 elements ~4.5 sigma).
 */
#include "cuda_common.cuh"
#include <mma.h>

using namespace nvcuda;

#define BQ 64 /* query rows per tile */
#define BK 64 /* key rows per tile */
#define ATT_THREADS 128
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

/* shared-memory row strides (elements): padded against bank conflicts, and keeping every
 * 16-row fragment start 32-byte aligned as WMMA requires */
template <int HD> struct att_dims {
    static constexpr int LDH = HD + 8;   /* bf16 [rows][HD] tiles */
    static constexpr int LDO = HD + 4;   /* fp32 [rows][HD] */
    static constexpr int LDS = BK + 4;   /* fp32 [64][64] score tiles */
    static constexpr int LDP = BK + 8;   /* bf16 [64][64] probability tiles */
    static constexpr size_t TILE_H = (size_t)64 * LDH * 2;
    static constexpr size_t TILE_O = (size_t)64 * LDO * 4;
    static constexpr size_t TILE_S = (size_t)64 * LDS * 4;
    static constexpr size_t TILE_P = (size_t)64 * LDP * 2;
    static constexpr size_t ROWS = (size_t)64 * 4;
    /* fwd: Q K V (bf16) S (f32) P (bf16) O (f32) m l (f32) ds (int) */
    static constexpr size_t FWD = 3 * TILE_H + TILE_S + TILE_P + TILE_O + 3 * ROWS;
    /* bwd kv: K V Q dO (bf16) S dP (f32) P dS (bf16) lse D (f32) ds (int) */
    static constexpr size_t BWD_KV = 4 * TILE_H + 2 * TILE_S + 2 * TILE_P + 3 * ROWS;
    /* bwd q: Q dO K V (bf16) S dP (f32) dS (bf16) lse D (f32) ds (int) */
    static constexpr size_t BWD_Q = 4 * TILE_H + 2 * TILE_S + TILE_P + 3 * ROWS;
};

/* Copy 64 rows x HD of a [*, stride] bf16 matrix starting at row r0 into smem (zero rows
 * at or beyond T). 16-byte vectors: HD % 8 == 0 and 16-byte aligned bases (checked). */
template <int HD>
__device__ __forceinline__ void load_tile(bf16 *dst, const nmc_bf16 *src, int r0, int T,
                                          size_t stride) {
    constexpr int V8 = HD / 8, LDH = att_dims<HD>::LDH;
    for (int idx = threadIdx.x; idx < 64 * V8; idx += ATT_THREADS) {
        int r = idx / V8, c8 = idx % V8;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (r0 + r < T) val = *reinterpret_cast<const uint4 *>(src + (size_t)(r0 + r) * stride + c8 * 8);
        *reinterpret_cast<uint4 *>(dst + r * LDH + c8 * 8) = val;
    }
}

/* clamped doc start of query i (CPU rule); rows past T get INT_MAX (never the minimum) */
__device__ __forceinline__ int doc_first(const int32_t *doc_start, int b, int T, int i) {
    if (i >= T) return 0x7fffffff;
    if (!doc_start) return 0;
    int ds = doc_start[(size_t)b * T + i];
    return ds < 0 ? 0 : (ds > i ? i : ds);
}

/* ---- forward ------------------------------------------------------------------------- */
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
att_fwd_k(nmc_bf16 *out, float *lse, const nmc_bf16 *q, const nmc_bf16 *k, const nmc_bf16 *v,
          const int32_t *doc_start, int T, int H, int KVH, float scale_log2) {
    typedef att_dims<HD> Dm;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem;
    bf16 *Ks = (bf16 *)(smem + Dm::TILE_H);
    bf16 *Vs = (bf16 *)(smem + 2 * Dm::TILE_H);
    float *Ss = (float *)(smem + 3 * Dm::TILE_H);
    bf16 *Ps = (bf16 *)(smem + 3 * Dm::TILE_H + Dm::TILE_S);
    float *Os = (float *)(smem + 3 * Dm::TILE_H + Dm::TILE_S + Dm::TILE_P);
    float *mrow = (float *)(smem + 3 * Dm::TILE_H + Dm::TILE_S + Dm::TILE_P + Dm::TILE_O);
    float *lrow = mrow + 64;
    int *dsq = (int *)(lrow + 64);
    __shared__ int kmin_s;

    const int qt = gridDim.x - 1 - blockIdx.x; /* heaviest (last) tiles first */
    const int h = blockIdx.y, b = blockIdx.z, q0 = qt * BQ;
    const int kvh = h / (H / KVH);
    const size_t qstride = (size_t)H * HD, kstride = (size_t)KVH * HD;
    const size_t row0 = (size_t)b * T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * 16;

    load_tile<HD>(Qs, q + row0 * qstride + (size_t)h * HD, q0, T, qstride);
    for (int r = threadIdx.x; r < 64; r += ATT_THREADS) {
        dsq[r] = doc_first(doc_start, b, T, q0 + r);
        mrow[r] = -INFINITY;
        lrow[r] = 0.f;
    }
    for (int idx = threadIdx.x; idx < 64 * Dm::LDO; idx += ATT_THREADS) Os[idx] = 0.f;
    __syncthreads();
    if (threadIdx.x == 0) {
        int mn = 0x7fffffff;
        for (int r = 0; r < 64; r++) mn = min(mn, dsq[r]);
        kmin_s = mn;
    }
    __syncthreads();
    const int q_last = min(q0 + BQ, T) - 1;
    const int kt0 = kmin_s / BK, kt1 = q_last / BK;

    frag_a qf[HD / 16];
    for (int kk = 0; kk < HD / 16; kk++) wmma::load_matrix_sync(qf[kk], Qs + r0 * Dm::LDH + kk * 16, Dm::LDH);

    for (int kt = kt0; kt <= kt1; kt++) {
        const int k0 = kt * BK;
        __syncthreads(); /* every warp is done with the previous K/V tile */
        load_tile<HD>(Ks, k + row0 * kstride + (size_t)kvh * HD, k0, T, kstride);
        load_tile<HD>(Vs, v + row0 * kstride + (size_t)kvh * HD, k0, T, kstride);
        __syncthreads();
        /* S[16 x 64] = Q K^T for this warp's rows */
        for (int n = 0; n < BK / 16; n++) {
            frag_c acc;
            wmma::fill_fragment(acc, 0.f);
            for (int kk = 0; kk < HD / 16; kk++) {
                frag_b_col kf;
                wmma::load_matrix_sync(kf, Ks + n * 16 * Dm::LDH + kk * 16, Dm::LDH);
                wmma::mma_sync(acc, qf[kk], kf, acc);
            }
            wmma::store_matrix_sync(Ss + r0 * Dm::LDS + n * 16, acc, Dm::LDS, wmma::mem_row_major);
        }
        __syncwarp();
        /* online softmax, one row at a time; lanes cover key columns lane, lane + 32 */
        for (int rr = 0; rr < 16; rr++) {
            const int row = r0 + rr, i = q0 + row, ds = dsq[row];
            float s[2];
            for (int t = 0; t < 2; t++) {
                int c = lane + 32 * t, j = k0 + c;
                bool ok = i < T && j <= i && j >= ds;
                s[t] = ok ? Ss[row * Dm::LDS + c] * scale_log2 : -INFINITY;
            }
            float mx = warp_max(fmaxf(s[0], s[1]));
            float m_old = mrow[row], m_new = fmaxf(m_old, mx);
            float alpha = 1.f, p0 = 0.f, p1 = 0.f;
            if (m_new != -INFINITY) {
                alpha = exp2f(m_old - m_new); /* 0 when m_old = -inf */
                p0 = exp2f(s[0] - m_new);
                p1 = exp2f(s[1] - m_new);
            }
            float rs = warp_sum(p0 + p1);
            Ps[row * Dm::LDP + lane] = __float2bfloat16_rn(p0);
            Ps[row * Dm::LDP + lane + 32] = __float2bfloat16_rn(p1);
            if (alpha != 1.f) /* warp-uniform; 1 once the row max has settled */
                for (int d = lane; d < HD; d += 32) Os[row * Dm::LDO + d] *= alpha;
            __syncwarp();
            if (lane == 0) {
                lrow[row] = lrow[row] * alpha + rs;
                mrow[row] = m_new;
            }
        }
        __syncwarp();
        /* O[16 x HD] += P[16 x 64] V[64 x HD] */
        for (int n = 0; n < HD / 16; n++) {
            frag_c acc;
            wmma::load_matrix_sync(acc, Os + r0 * Dm::LDO + n * 16, Dm::LDO, wmma::mem_row_major);
            for (int kk = 0; kk < BK / 16; kk++) {
                frag_a pf;
                frag_b_row vf;
                wmma::load_matrix_sync(pf, Ps + r0 * Dm::LDP + kk * 16, Dm::LDP);
                wmma::load_matrix_sync(vf, Vs + kk * 16 * Dm::LDH + n * 16, Dm::LDH);
                wmma::mma_sync(acc, pf, vf, acc);
            }
            wmma::store_matrix_sync(Os + r0 * Dm::LDO + n * 16, acc, Dm::LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }
    /* normalize and write this warp's rows */
    for (int rr = 0; rr < 16; rr++) {
        const int row = r0 + rr, i = q0 + row;
        if (i >= T) break;
        float l = lrow[row], inv = l > 0.f ? 1.f / l : 0.f;
        nmc_bf16 *o = out + (row0 + i) * qstride + (size_t)h * HD;
        for (int d = lane; d < HD; d += 32) stbf(o, d, Os[row * Dm::LDO + d] * inv);
        if (lane == 0)
            lse[((size_t)b * H + h) * T + i] = l > 0.f ? (mrow[row] + log2f(l)) * LN2 : -INFINITY;
    }
}

/* ---- backward ------------------------------------------------------------------------ */
/* Dsum[b,h,i] = dout_i . out_i, one warp per (token, head) */
__global__ void att_dsum_k(float *Dsum, const nmc_bf16 *dout, const nmc_bf16 *out, int B, int T,
                           int H, int hd) {
    size_t w = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (size_t)B * T * H) return;
    size_t tok = w / H;
    int h = (int)(w % H);
    size_t o = tok * (size_t)H * hd + (size_t)h * hd;
    float s = 0.f;
    for (int d = lane; d < hd; d += 32) s += ldbf(dout, o + d) * ldbf(out, o + d);
    s = warp_sum(s);
    int b = (int)(tok / T), i = (int)(tok % T);
    if (lane == 0) Dsum[((size_t)b * H + h) * T + i] = s;
}

/* store a 16x16 fp32 fragment (times mul) to bf16 global rows via a warp staging area */
__device__ __forceinline__ void store_frag_bf16(nmc_bf16 *dst, size_t stride, int rows_left,
                                                const frag_c &f, float mul, float *stage,
                                                int ldst) {
    wmma::store_matrix_sync(stage, f, ldst, wmma::mem_row_major);
    __syncwarp();
    int lane = threadIdx.x & 31;
    for (int e = lane; e < 256; e += 32) {
        int r = e >> 4, cc = e & 15;
        if (r < rows_left) stbf(dst, (size_t)r * stride + cc, stage[r * ldst + cc] * mul);
    }
    __syncwarp();
}

/* dK, dV for one key tile of kv head g, summed over the group's query heads */
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
att_bwd_kv_k(nmc_bf16 *dk, nmc_bf16 *dv, const nmc_bf16 *dout, const float *lse,
             const float *Dsum, const nmc_bf16 *q, const nmc_bf16 *k, const nmc_bf16 *v,
             const int32_t *doc_start, int T, int H, int KVH, float scale, float scale_log2) {
    typedef att_dims<HD> Dm;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Ks = (bf16 *)smem;
    bf16 *Vs = (bf16 *)(smem + Dm::TILE_H);
    bf16 *Qs = (bf16 *)(smem + 2 * Dm::TILE_H);
    bf16 *dOs = (bf16 *)(smem + 3 * Dm::TILE_H);
    float *St = (float *)(smem + 4 * Dm::TILE_H);
    float *dPt = (float *)(smem + 4 * Dm::TILE_H + Dm::TILE_S);
    bf16 *Pt = (bf16 *)(smem + 4 * Dm::TILE_H + 2 * Dm::TILE_S);
    bf16 *dSt = (bf16 *)(smem + 4 * Dm::TILE_H + 2 * Dm::TILE_S + Dm::TILE_P);
    float *lse_s = (float *)(smem + 4 * Dm::TILE_H + 2 * Dm::TILE_S + 2 * Dm::TILE_P);
    float *D_s = lse_s + 64;
    int *dsq = (int *)(D_s + 64);

    const int kt = blockIdx.x, g = blockIdx.y, b = blockIdx.z, k0 = kt * BK;
    const int rep = H / KVH;
    const size_t qstride = (size_t)H * HD, kstride = (size_t)KVH * HD, row0 = (size_t)b * T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * 16;
    const int k_last = min(k0 + BK, T) - 1;

    load_tile<HD>(Ks, k + row0 * kstride + (size_t)g * HD, k0, T, kstride);
    load_tile<HD>(Vs, v + row0 * kstride + (size_t)g * HD, k0, T, kstride);

    frag_c dKf[HD / 16], dVf[HD / 16];
    for (int n = 0; n < HD / 16; n++) {
        wmma::fill_fragment(dKf[n], 0.f);
        wmma::fill_fragment(dVf[n], 0.f);
    }
    const int nqt = (T + BQ - 1) / BQ;
    for (int h = g * rep; h < (g + 1) * rep; h++) {
        const size_t hrow = ((size_t)b * H + h) * T;
        for (int qt = k0 / BQ; qt < nqt; qt++) {
            const int q0 = qt * BQ;
            __syncthreads(); /* previous Q/dO tile no longer read */
            load_tile<HD>(Qs, q + row0 * qstride + (size_t)h * HD, q0, T, qstride);
            load_tile<HD>(dOs, dout + row0 * qstride + (size_t)h * HD, q0, T, qstride);
            int any = 0;
            for (int r = threadIdx.x; r < 64; r += ATT_THREADS) {
                int i = q0 + r, ds = doc_first(doc_start, b, T, i);
                dsq[r] = ds;
                lse_s[r] = i < T ? lse[hrow + i] * LOG2E : 0.f;
                D_s[r] = i < T ? Dsum[hrow + i] : 0.f;
                any |= i < T && i >= k0 && ds <= k_last;
            }
            if (!__syncthreads_or(any)) continue; /* no query of this tile sees these keys */
            /* S^T[16 keys x 64 q] = K Q^T ; dP^T = V dO^T */
            for (int n = 0; n < BQ / 16; n++) {
                frag_c sa, pa;
                wmma::fill_fragment(sa, 0.f);
                wmma::fill_fragment(pa, 0.f);
                for (int kk = 0; kk < HD / 16; kk++) {
                    frag_a ka, va;
                    frag_b_col qb, ob;
                    wmma::load_matrix_sync(ka, Ks + r0 * Dm::LDH + kk * 16, Dm::LDH);
                    wmma::load_matrix_sync(qb, Qs + n * 16 * Dm::LDH + kk * 16, Dm::LDH);
                    wmma::mma_sync(sa, ka, qb, sa);
                    wmma::load_matrix_sync(va, Vs + r0 * Dm::LDH + kk * 16, Dm::LDH);
                    wmma::load_matrix_sync(ob, dOs + n * 16 * Dm::LDH + kk * 16, Dm::LDH);
                    wmma::mma_sync(pa, va, ob, pa);
                }
                wmma::store_matrix_sync(St + r0 * Dm::LDS + n * 16, sa, Dm::LDS, wmma::mem_row_major);
                wmma::store_matrix_sync(dPt + r0 * Dm::LDS + n * 16, pa, Dm::LDS, wmma::mem_row_major);
            }
            __syncwarp();
            for (int rr = 0; rr < 16; rr++) {
                const int kr = r0 + rr, j = k0 + kr;
                for (int t = 0; t < 2; t++) {
                    int c = lane + 32 * t, i = q0 + c;
                    bool ok = i < T && j <= i && j >= dsq[c];
                    float p = ok ? exp2f(St[kr * Dm::LDS + c] * scale_log2 - lse_s[c]) : 0.f;
                    float dsv = p * (dPt[kr * Dm::LDS + c] - D_s[c]);
                    Pt[kr * Dm::LDP + c] = __float2bfloat16_rn(p);
                    dSt[kr * Dm::LDP + c] = __float2bfloat16_rn(dsv);
                }
            }
            __syncwarp();
            /* dV += P^T dO ; dK += dS^T Q   ([16 keys x 64 q] @ [64 q x HD]) */
            for (int kk = 0; kk < BQ / 16; kk++) {
                frag_a pa, sa;
                wmma::load_matrix_sync(pa, Pt + r0 * Dm::LDP + kk * 16, Dm::LDP);
                wmma::load_matrix_sync(sa, dSt + r0 * Dm::LDP + kk * 16, Dm::LDP);
                for (int n = 0; n < HD / 16; n++) {
                    frag_b_row ob, qb;
                    wmma::load_matrix_sync(ob, dOs + kk * 16 * Dm::LDH + n * 16, Dm::LDH);
                    wmma::mma_sync(dVf[n], pa, ob, dVf[n]);
                    wmma::load_matrix_sync(qb, Qs + kk * 16 * Dm::LDH + n * 16, Dm::LDH);
                    wmma::mma_sync(dKf[n], sa, qb, dKf[n]);
                }
            }
        }
    }
    /* write this warp's 16 key rows (staging in the warp's own S^T rows) */
    __syncwarp();
    const int rows_left = T - (k0 + r0);
    if (rows_left <= 0) return;
    float *stage = St + r0 * Dm::LDS;
    nmc_bf16 *dkb = dk + (row0 + k0 + r0) * kstride + (size_t)g * HD;
    nmc_bf16 *dvb = dv + (row0 + k0 + r0) * kstride + (size_t)g * HD;
    for (int n = 0; n < HD / 16; n++) {
        store_frag_bf16(dkb + n * 16, kstride, rows_left, dKf[n], scale, stage, Dm::LDS);
        store_frag_bf16(dvb + n * 16, kstride, rows_left, dVf[n], 1.f, stage, Dm::LDS);
    }
}

/* dQ for one query tile of head h, over the key tiles it sees */
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
att_bwd_q_k(nmc_bf16 *dq, const nmc_bf16 *dout, const float *lse, const float *Dsum,
            const nmc_bf16 *q, const nmc_bf16 *k, const nmc_bf16 *v, const int32_t *doc_start,
            int T, int H, int KVH, float scale, float scale_log2) {
    typedef att_dims<HD> Dm;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem;
    bf16 *dOs = (bf16 *)(smem + Dm::TILE_H);
    bf16 *Ks = (bf16 *)(smem + 2 * Dm::TILE_H);
    bf16 *Vs = (bf16 *)(smem + 3 * Dm::TILE_H);
    float *Ss = (float *)(smem + 4 * Dm::TILE_H);
    float *dPs = (float *)(smem + 4 * Dm::TILE_H + Dm::TILE_S);
    bf16 *dSs = (bf16 *)(smem + 4 * Dm::TILE_H + 2 * Dm::TILE_S);
    float *lse_s = (float *)(smem + 4 * Dm::TILE_H + 2 * Dm::TILE_S + Dm::TILE_P);
    float *D_s = lse_s + 64;
    int *dsq = (int *)(D_s + 64);
    __shared__ int kmin_s;

    const int qt = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, q0 = qt * BQ;
    const int kvh = h / (H / KVH);
    const size_t qstride = (size_t)H * HD, kstride = (size_t)KVH * HD, row0 = (size_t)b * T;
    const size_t hrow = ((size_t)b * H + h) * T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * 16;

    load_tile<HD>(Qs, q + row0 * qstride + (size_t)h * HD, q0, T, qstride);
    load_tile<HD>(dOs, dout + row0 * qstride + (size_t)h * HD, q0, T, qstride);
    for (int r = threadIdx.x; r < 64; r += ATT_THREADS) {
        int i = q0 + r;
        dsq[r] = doc_first(doc_start, b, T, i);
        lse_s[r] = i < T ? lse[hrow + i] * LOG2E : 0.f;
        D_s[r] = i < T ? Dsum[hrow + i] : 0.f;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int mn = 0x7fffffff;
        for (int r = 0; r < 64; r++) mn = min(mn, dsq[r]);
        kmin_s = mn;
    }
    __syncthreads();
    const int q_last = min(q0 + BQ, T) - 1;
    const int kt0 = kmin_s / BK, kt1 = q_last / BK;

    frag_c dQf[HD / 16];
    for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(dQf[n], 0.f);

    for (int kt = kt0; kt <= kt1; kt++) {
        const int k0 = kt * BK;
        __syncthreads();
        load_tile<HD>(Ks, k + row0 * kstride + (size_t)kvh * HD, k0, T, kstride);
        load_tile<HD>(Vs, v + row0 * kstride + (size_t)kvh * HD, k0, T, kstride);
        __syncthreads();
        /* S[16 q x 64 k] = Q K^T ; dP = dO V^T */
        for (int n = 0; n < BK / 16; n++) {
            frag_c sa, pa;
            wmma::fill_fragment(sa, 0.f);
            wmma::fill_fragment(pa, 0.f);
            for (int kk = 0; kk < HD / 16; kk++) {
                frag_a qa, oa;
                frag_b_col kb, vb;
                wmma::load_matrix_sync(qa, Qs + r0 * Dm::LDH + kk * 16, Dm::LDH);
                wmma::load_matrix_sync(kb, Ks + n * 16 * Dm::LDH + kk * 16, Dm::LDH);
                wmma::mma_sync(sa, qa, kb, sa);
                wmma::load_matrix_sync(oa, dOs + r0 * Dm::LDH + kk * 16, Dm::LDH);
                wmma::load_matrix_sync(vb, Vs + n * 16 * Dm::LDH + kk * 16, Dm::LDH);
                wmma::mma_sync(pa, oa, vb, pa);
            }
            wmma::store_matrix_sync(Ss + r0 * Dm::LDS + n * 16, sa, Dm::LDS, wmma::mem_row_major);
            wmma::store_matrix_sync(dPs + r0 * Dm::LDS + n * 16, pa, Dm::LDS, wmma::mem_row_major);
        }
        __syncwarp();
        for (int rr = 0; rr < 16; rr++) {
            const int row = r0 + rr, i = q0 + row, ds = dsq[row];
            for (int t = 0; t < 2; t++) {
                int c = lane + 32 * t, j = k0 + c;
                bool ok = i < T && j <= i && j >= ds;
                float p = ok ? exp2f(Ss[row * Dm::LDS + c] * scale_log2 - lse_s[row]) : 0.f;
                dSs[row * Dm::LDP + c] = __float2bfloat16_rn(p * (dPs[row * Dm::LDS + c] - D_s[row]));
            }
        }
        __syncwarp();
        /* dQ[16 x HD] += dS[16 x 64] K[64 x HD] */
        for (int kk = 0; kk < BK / 16; kk++) {
            frag_a sa;
            wmma::load_matrix_sync(sa, dSs + r0 * Dm::LDP + kk * 16, Dm::LDP);
            for (int n = 0; n < HD / 16; n++) {
                frag_b_row kb;
                wmma::load_matrix_sync(kb, Ks + kk * 16 * Dm::LDH + n * 16, Dm::LDH);
                wmma::mma_sync(dQf[n], sa, kb, dQf[n]);
            }
        }
    }
    __syncwarp();
    const int rows_left = T - (q0 + r0);
    if (rows_left <= 0) return;
    float *stage = Ss + r0 * Dm::LDS;
    nmc_bf16 *dqb = dq + (row0 + q0 + r0) * qstride + (size_t)h * HD;
    for (int n = 0; n < HD / 16; n++)
        store_frag_bf16(dqb + n * 16, qstride, rows_left, dQf[n], scale, stage, Dm::LDS);
}

/* ---- host side ----------------------------------------------------------------------- */
static int check_args(nmc_cuda_ctx_t *c, const void *const *ptrs, int np, int B, int T, int H,
                      int KVH, int hd) {
    REQUIRE(c, B > 0 && T > 0 && H > 0 && KVH > 0 && H % KVH == 0,
            "bad shape B=%d T=%d H=%d KVH=%d (all > 0, H %% KVH == 0)", B, T, H, KVH);
    REQUIRE(c, hd == 32 || hd == 64 || hd == 96 || hd == 128,
            "head dim %d is not supported (expected 32, 64, 96 or 128)", hd);
    for (int i = 0; i < np; i++) {
        REQUIRE(c, ptrs[i] != NULL, "tensor argument %d is NULL", i + 1);
        REQUIRE(c, ((uintptr_t)ptrs[i] & 15) == 0,
                "tensor argument %d is not 16-byte aligned (the kernels load 8 bf16 at once)", i + 1);
    }
    return 0;
}

template <typename K>
static int set_smem(nmc_cuda_ctx_t *c, K kernel, size_t bytes) {
    CK(c, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return 0;
}

template <int HD>
static int fwd_launch(nmc_bf16 *out, float *lse, const nmc_bf16 *q, const nmc_bf16 *k,
                      const nmc_bf16 *v, const int32_t *doc_start, int B, int T, int H, int KVH,
                      float scale, nmc_cuda_ctx_t *c) {
    size_t sm = att_dims<HD>::FWD;
    if (set_smem(c, att_fwd_k<HD>, sm)) return -1;
    dim3 grid((T + BQ - 1) / BQ, H, B);
    att_fwd_k<HD><<<grid, ATT_THREADS, sm, c->stream>>>(out, lse, q, k, v, doc_start, T, H, KVH,
                                                        scale * LOG2E);
    CKLAUNCH(c, "att_fwd_k");
    return 0;
}

template <int HD>
static int bwd_launch(nmc_bf16 *dq, nmc_bf16 *dk, nmc_bf16 *dv, const nmc_bf16 *dout,
                      const float *lse, const float *Dsum, const nmc_bf16 *q, const nmc_bf16 *k,
                      const nmc_bf16 *v, const int32_t *doc_start, int B, int T, int H, int KVH,
                      float scale, nmc_cuda_ctx_t *c) {
    size_t smkv = att_dims<HD>::BWD_KV, smq = att_dims<HD>::BWD_Q;
    if (set_smem(c, att_bwd_kv_k<HD>, smkv) || set_smem(c, att_bwd_q_k<HD>, smq)) return -1;
    dim3 gkv((T + BK - 1) / BK, KVH, B), gq((T + BQ - 1) / BQ, H, B);
    att_bwd_kv_k<HD><<<gkv, ATT_THREADS, smkv, c->stream>>>(dk, dv, dout, lse, Dsum, q, k, v,
                                                            doc_start, T, H, KVH, scale,
                                                            scale * LOG2E);
    CKLAUNCH(c, "att_bwd_kv_k");
    att_bwd_q_k<HD><<<gq, ATT_THREADS, smq, c->stream>>>(dq, dout, lse, Dsum, q, k, v, doc_start,
                                                         T, H, KVH, scale, scale * LOG2E);
    CKLAUNCH(c, "att_bwd_q_k");
    return 0;
}

int nmc_cuda_attention_fwd(nmc_bf16 *out, float *lse, const nmc_bf16 *q, const nmc_bf16 *k,
                           const nmc_bf16 *v, const int32_t *doc_start, int B, int T, int H,
                           int KVH, int hd, float scale, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    const void *ptrs[4] = {out, q, k, v};
    if (check_args(c, ptrs, 4, B, T, H, KVH, hd)) return -1;
    REQUIRE(c, lse != NULL, "lse is NULL");
    switch (hd) {
    case 32: return fwd_launch<32>(out, lse, q, k, v, doc_start, B, T, H, KVH, scale, c);
    case 64: return fwd_launch<64>(out, lse, q, k, v, doc_start, B, T, H, KVH, scale, c);
    case 96: return fwd_launch<96>(out, lse, q, k, v, doc_start, B, T, H, KVH, scale, c);
    default: return fwd_launch<128>(out, lse, q, k, v, doc_start, B, T, H, KVH, scale, c);
    }
}

int nmc_cuda_attention_bwd(nmc_bf16 *dq, nmc_bf16 *dk, nmc_bf16 *dv, const nmc_bf16 *dout,
                           const nmc_bf16 *out, const float *lse, const nmc_bf16 *q,
                           const nmc_bf16 *k, const nmc_bf16 *v, const int32_t *doc_start,
                           int B, int T, int H, int KVH, int hd, float scale,
                           nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    const void *ptrs[8] = {dq, dk, dv, dout, out, q, k, v};
    if (check_args(c, ptrs, 8, B, T, H, KVH, hd)) return -1;
    REQUIRE(c, lse != NULL, "lse is NULL");
    size_t nrow = (size_t)B * H * T;
    float *Dsum = (float *)nmc_cuda_scratch(c, nrow * sizeof(float));
    if (!Dsum) return -1;
    size_t threads = (size_t)B * T * H * 32;
    att_dsum_k<<<grid_for(threads, 256, 0x7fffffff), 256, 0, c->stream>>>(Dsum, dout, out, B, T, H, hd);
    CKLAUNCH(c, "att_dsum_k");
    switch (hd) {
    case 32: return bwd_launch<32>(dq, dk, dv, dout, lse, Dsum, q, k, v, doc_start, B, T, H, KVH, scale, c);
    case 64: return bwd_launch<64>(dq, dk, dv, dout, lse, Dsum, q, k, v, doc_start, B, T, H, KVH, scale, c);
    case 96: return bwd_launch<96>(dq, dk, dv, dout, lse, Dsum, q, k, v, doc_start, B, T, H, KVH, scale, c);
    default: return bwd_launch<128>(dq, dk, dv, dout, lse, Dsum, q, k, v, doc_start, B, T, H, KVH, scale, c);
    }
}
