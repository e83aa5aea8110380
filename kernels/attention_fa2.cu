/* attention_fa2.cu — causal GQA attention with packed-document masking, FlashAttention-2
 * style (mma.sync m16n8k16 bf16 tensor cores, scores and outputs in registers).
 *
 * Belongs here: nmc_cuda_attention_fa2_{fwd,bwd,supports} (kernels/nmc_cuda_fa2.h). Same
 * contract as attention.cu / attention.c: q, out, dq, dout [B*T, H*hd]; k, v, dk, dv
 * [B*T, KVH*hd]; lse [B, H, T] fp32 natural log; token i attends to keys j with
 * ds(i) <= j <= i, ds(i) = doc_start[i] clamped to [0, i] (0 when doc_start is NULL).
 *
 * Fragments (PTX ISA, mma.m16n8k16 .bf16; g = lane / 4, t = lane % 4):
 *   A 16x16 (4 regs of bf16x2): {row g, cols 2t..2t+1}, {row g+8, same}, {row g, cols
 *     2t+8..}, {row g+8, cols 2t+8..}; B 16x8 (2 regs): {k 2t..2t+1, n g}, {k 2t+8.., n g};
 *   C 16x8 fp32 (4 regs): {row g, cols 2t, 2t+1}, {row g+8, cols 2t, 2t+1}.
 *   So the C fragments of two adjacent 8-column tiles, packed to bf16, ARE the A fragment
 *   of the next product (P V, P^T dO, dS K, ...): no shared-memory round trip for scores.
 *   Operands in shared memory are read with ldmatrix.x4: A tiles and "k-major" B tiles
 *   (V, dO, Q, K as the right factor of P V, P^T dO, dS^T Q, dS K) with .trans, "n-major" B
 *   tiles (K in Q K^T, Q in K Q^T, ...) without. Rows are padded by 16 bytes (hd + 8
 *   elements), so the 8 row addresses of one 8x8 matrix hit distinct banks.
 *
 * Kernels (128 threads = 4 warps each; tiles stream through cp.async, double-buffered):
 *   fa2_fwd_k     grid (B*H, T/128): 128 queries per block, 32 per warp (two 16-row MMA
 *                 tiles share each K/V fragment), 64-key tiles; online softmax in base 2
 *                 (exp2f), row sums kept per thread and reduced once at the end.
 *   fa2_stats_k   per (row, 64-query tile): min and max clamped doc start (backward only).
 *   fa2_dsum_k    Dsum[b,h,i] = dout_i . out_i.
 *   fa2_dkdv_k    grid (B*KVH, T/64): one block per 64-key tile, 16 keys per warp; loops
 *                 over the group's heads and the query tiles that can see the keys (32
 *                 queries per step for hd 128, 64 for hd 64), recomputing P = exp(s - lse)
 *                 and dS = P (dO V^T - Dsum) in registers; dK, dV accumulate in registers.
 *   fa2_dq_k      grid (B*H, T/64): one block per 64-query tile, 16 rows per warp; loops
 *                 over key tiles recomputing S and dP; dQ accumulates in registers.
 *   dQ has its own pass (two matmuls recomputed) instead of fp32 atomics: deterministic.
 * Masking: key tiles no query of the tile can see are skipped (causal end, and the first
 *   tile from the smallest doc start); the elementwise mask only runs on tiles that need
 *   it (diagonal tiles, tiles reaching before some row's doc start, ragged tails).
 * Test tolerance: as attention.cu (tests/gpu/test_kernels_gpu.c): out atol 4e-3 + rtol
 *   2 bf16 ulps, lse 1e-4 + 1e-5, dq/dk/dv atol 6% of the gradient RMS + rtol 3 ulps
 *   (P and dS are rounded to bf16 before their matmuls, as FlashAttention-2).
 * CPU check without a GPU: tests/gpu/fa2_emu/run.sh runs these kernel bodies on a warp
 *   emulator; it cuts this file at the markers "---- PTX wrappers", "two floats -> bf16x2
 *   register", "==== host side" and the extern __shared__ line: keep them.
 */
#include "cuda_common.cuh"
#include "nmc_cuda_fa2.h"

#include <stdint.h>

#define FA2_THREADS 128
#define FA2_LOG2E 1.4426950408889634f
#define FA2_LN2 0.6931471805599453f
#define FA2_STAT_ROWS 64 /* query rows per doc-start bounds entry (= dQ tile) */

/* ---- PTX wrappers ------------------------------------------------------------------ */
__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
/* 16 bytes global -> shared; valid == false writes 16 zero bytes (src-size 0) */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
/* d[16x8] += a[16x16] b[16x8], bf16 in, fp32 accumulate */
__device__ __forceinline__ void mma16816(float d[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* two floats -> bf16x2 register, lo in the low half (the lower column index) */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
/* A fragment for a 16-column k-step from two C fragments (columns 0-7 and 8-15) */
__device__ __forceinline__ void c_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
    a[0] = pack_bf16(c0[0], c0[1]);
    a[1] = pack_bf16(c0[2], c0[3]);
    a[2] = pack_bf16(c1[0], c1[1]);
    a[3] = pack_bf16(c1[2], c1[3]);
}

/* ldmatrix lane addresses inside a [rows][LD] bf16 tile:
 *   a_addr   A fragment of rows r0..r0+15, cols c0..c0+15 (also the .trans B fragments of
 *            a [k][n] tile: k rows r0.., n cols c0..; regs 0,1 -> n c0..c0+7, 2,3 -> c0+8..)
 *   bn_addr  B fragments of an [n][k] tile, n rows n0..n0+15, k cols k0..k0+15 (regs 0,1
 *            -> n-tile n0, regs 2,3 -> n-tile n0+8) */
template <int LD>
__device__ __forceinline__ uint32_t a_addr(const bf16 *tile, int r0, int c0, int lane) {
    return smem_addr(tile + (r0 + (lane & 15)) * LD + c0 + ((lane >> 4) << 3));
}
template <int LD>
__device__ __forceinline__ uint32_t bn_addr(const bf16 *tile, int n0, int k0, int lane) {
    return smem_addr(tile + (n0 + (lane & 7) + ((lane >> 4) << 3)) * LD + k0 +
                     (((lane >> 3) & 1) << 3));
}

/* ROWS x HD rows of a global [*, stride] matrix from row r0 into a [ROWS][HD+8] tile;
 * rows at or beyond T are zero-filled (keeps 0 * garbage out of P V and friends) */
template <int ROWS, int HD>
__device__ __forceinline__ void load_rows(bf16 *dst, const nmc_bf16 *src, size_t stride,
                                          int r0, int T) {
    constexpr int C8 = HD / 8, LD = HD + 8;
    for (int idx = threadIdx.x; idx < ROWS * C8; idx += FA2_THREADS) {
        int r = idx / C8, c = idx % C8;
        bool ok = r0 + r < T;
        const nmc_bf16 *s = src + (size_t)(ok ? r0 + r : 0) * stride + c * 8;
        cp_async16(smem_addr(dst + r * LD + c * 8), s, ok);
    }
}

__device__ __forceinline__ int clamp_ds(const int32_t *doc_start, size_t row0, int i) {
    if (!doc_start) return 0;
    int d = doc_start[row0 + i];
    return d < 0 ? 0 : (d > i ? i : d);
}

__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* ==== forward ========================================================================= */
template <int HD> struct fwd_cfg {
    static constexpr int BR = 128, BC = 64, WM = 32, MT = 2, LD = HD + 8;
    static constexpr int Q_ELEMS = BR * LD, KV_ELEMS = BC * LD;
    static constexpr size_t SMEM = (size_t)(Q_ELEMS + 4 * KV_ELEMS) * 2; /* Q, K[2], V[2] */
};

/* one 64-key tile for one warp's 32 rows: S = Q K^T, online softmax, O += P V */
template <int HD, bool MASK>
__device__ __forceinline__ void fwd_tile(float (&o)[2][HD / 8][4], float (&mrow)[2][2],
                                         float (&lrow)[2][2], const int (&dsr)[2][2],
                                         const bf16 *Qs, const bf16 *Ks, const bf16 *Vs,
                                         int wrow0, int qrow0, int k0, float sl2, int lane) {
    typedef fwd_cfg<HD> C;
    constexpr int LD = C::LD, NT = C::BC / 8;
    const int gq = lane >> 2, tq = lane & 3;
    float s[2][NT][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[mi][n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t a[2][4];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) ldsm_x4(a[mi], a_addr<LD>(Qs, wrow0 + mi * 16, kk * 16, lane));
#pragma unroll
        for (int nj = 0; nj < C::BC / 16; nj++) {
            uint32_t b[4];
            ldsm_x4(b, bn_addr<LD>(Ks, nj * 16, kk * 16, lane));
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                mma16816(s[mi][2 * nj], a[mi], b[0], b[1]);
                mma16816(s[mi][2 * nj + 1], a[mi], b[2], b[3]);
            }
        }
    }
    /* online softmax per row (mi, hf): row qrow0 + mi*16 + hf*8 + gq */
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int i = qrow0 + mi * 16 + hf * 8 + gq;
            float mx = -INFINITY;
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float x = s[mi][n][hf * 2 + e] * sl2;
                    if (MASK) {
                        int j = k0 + n * 8 + tq * 2 + e;
                        if (j > i || j < dsr[mi][hf]) x = -INFINITY;
                    }
                    s[mi][n][hf * 2 + e] = x;
                    mx = fmaxf(mx, x);
                }
            mx = quad_max(mx);
            const float m_new = fmaxf(mrow[mi][hf], mx);
            const float m_use = m_new == -INFINITY ? 0.f : m_new; /* row fully masked so far */
            const float alpha = exp2f(mrow[mi][hf] - m_use);       /* 0 when m_old = -inf */
            mrow[mi][hf] = m_new;
            float sum = 0.f;
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float p = exp2f(s[mi][n][hf * 2 + e] - m_use);
                    s[mi][n][hf * 2 + e] = p;
                    sum += p;
                }
            lrow[mi][hf] = lrow[mi][hf] * alpha + sum; /* this thread's columns only */
#pragma unroll
            for (int d = 0; d < HD / 8; d++) {
                o[mi][d][hf * 2] *= alpha;
                o[mi][d][hf * 2 + 1] *= alpha;
            }
        }
    /* O += P V: P from the S registers, V k-major (keys x hd) -> .trans */
#pragma unroll
    for (int kk = 0; kk < C::BC / 16; kk++) {
        uint32_t a[2][4];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) c_to_a(a[mi], s[mi][2 * kk], s[mi][2 * kk + 1]);
#pragma unroll
        for (int dj = 0; dj < HD / 16; dj++) {
            uint32_t b[4];
            ldsm_x4_t(b, a_addr<LD>(Vs, kk * 16, dj * 16, lane));
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                mma16816(o[mi][2 * dj], a[mi], b[0], b[1]);
                mma16816(o[mi][2 * dj + 1], a[mi], b[2], b[3]);
            }
        }
    }
}

template <int HD>
__global__ void __launch_bounds__(FA2_THREADS)
fa2_fwd_k(nmc_bf16 *out, float *lse, const nmc_bf16 *q, const nmc_bf16 *k, const nmc_bf16 *v,
          const int32_t *doc_start, int T, int H, int KVH, float sl2) {
    typedef fwd_cfg<HD> C;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem;
    bf16 *Kb = Qs + C::Q_ELEMS;     /* [2][BC][LD] */
    bf16 *Vb = Kb + 2 * C::KV_ELEMS; /* [2][BC][LD] */
    __shared__ int red_min[4], red_max[4];

    const int b = blockIdx.x / H, h = blockIdx.x % H;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * C::BR; /* heaviest (last) tiles first */
    const int kvh = h / (H / KVH);
    const size_t qs = (size_t)H * HD, ks = (size_t)KVH * HD, row0 = (size_t)b * T;
    const nmc_bf16 *qg = q + row0 * qs + (size_t)h * HD;
    const nmc_bf16 *kg = k + row0 * ks + (size_t)kvh * HD;
    const nmc_bf16 *vg = v + row0 * ks + (size_t)kvh * HD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const int wrow0 = warp * C::WM;

    /* doc starts of this thread's 4 rows; block min (first key tile) and max (mask test) */
    int dsr[2][2], dmin = 0x7fffffff, dmax = 0;
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            int i = q0 + wrow0 + mi * 16 + hf * 8 + gq;
            dsr[mi][hf] = 0;
            if (i < T) {
                dsr[mi][hf] = clamp_ds(doc_start, row0, i);
                dmin = min(dmin, dsr[mi][hf]);
                dmax = max(dmax, dsr[mi][hf]);
            }
        }
    dmin = __reduce_min_sync(0xffffffffu, dmin);
    dmax = __reduce_max_sync(0xffffffffu, dmax);
    if (lane == 0) {
        red_min[warp] = dmin;
        red_max[warp] = dmax;
    }
    load_rows<C::BR, HD>(Qs, qg, qs, q0, T);
    __syncthreads();
    const int bmin = min(min(red_min[0], red_min[1]), min(red_min[2], red_min[3]));
    const int bmax = max(max(red_max[0], red_max[1]), max(red_max[2], red_max[3]));
    const int q_last = min(q0 + C::BR, T) - 1;
    const int kt0 = bmin / C::BC, kt1 = q_last / C::BC;

    load_rows<C::BC, HD>(Kb, kg, ks, kt0 * C::BC, T);
    load_rows<C::BC, HD>(Vb, vg, ks, kt0 * C::BC, T);
    cp_async_commit();

    float o[2][HD / 8][4], mrow[2][2], lrow[2][2];
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
#pragma unroll
        for (int d = 0; d < HD / 8; d++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[mi][d][e] = 0.f;
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            mrow[mi][hf] = -INFINITY;
            lrow[mi][hf] = 0.f;
        }
    }

    for (int kt = kt0; kt <= kt1; kt++) {
        const int st = (kt - kt0) & 1;
        if (kt < kt1) { /* prefetch the next tile into the other buffer */
            load_rows<C::BC, HD>(Kb + (st ^ 1) * C::KV_ELEMS, kg, ks, (kt + 1) * C::BC, T);
            load_rows<C::BC, HD>(Vb + (st ^ 1) * C::KV_ELEMS, vg, ks, (kt + 1) * C::BC, T);
        }
        cp_async_commit();
        cp_async_wait<1>(); /* this tile's group (and Q) landed */
        __syncthreads();
        const int k0 = kt * C::BC;
        /* a warp whose rows all precede the tile sees none of it */
        if (q0 + wrow0 + C::WM - 1 >= k0) {
            const bf16 *Ks = Kb + st * C::KV_ELEMS, *Vs = Vb + st * C::KV_ELEMS;
            if (k0 + C::BC - 1 > q0 || bmax > k0)
                fwd_tile<HD, true>(o, mrow, lrow, dsr, Qs, Ks, Vs, wrow0, q0 + wrow0, k0, sl2, lane);
            else
                fwd_tile<HD, false>(o, mrow, lrow, dsr, Qs, Ks, Vs, wrow0, q0 + wrow0, k0, sl2, lane);
        }
        __syncthreads(); /* everyone is done with buffer st before it is refilled */
    }

    /* normalize, write O (bf16x2 per thread) and lse */
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const float l = quad_sum(lrow[mi][hf]);
            const int i = q0 + wrow0 + mi * 16 + hf * 8 + gq;
            if (i >= T) continue;
            const float inv = l > 0.f ? 1.f / l : 0.f;
            nmc_bf16 *orow = out + (row0 + i) * qs + (size_t)h * HD;
#pragma unroll
            for (int d = 0; d < HD / 8; d++)
                *reinterpret_cast<__nv_bfloat162 *>(orow + d * 8 + tq * 2) =
                    __floats2bfloat162_rn(o[mi][d][hf * 2] * inv, o[mi][d][hf * 2 + 1] * inv);
            if (tq == 0)
                lse[((size_t)b * H + h) * T + i] =
                    l > 0.f ? (mrow[mi][hf] + log2f(l)) * FA2_LN2 : -INFINITY;
        }
}

/* ==== backward: preprocessing ========================================================== */
/* st[b * ntile + t] = (min, max) clamped doc start over the valid rows of 64-row tile t */
__global__ void fa2_stats_k(int2 *st, const int32_t *doc_start, int B, int T, int ntile) {
    const size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)B * ntile) return; /* whole warps leave together */
    const int b = (int)(w / ntile), t = (int)(w % ntile);
    int mn = 0x7fffffff, mx = 0;
    for (int r = lane; r < FA2_STAT_ROWS; r += 32) {
        int i = t * FA2_STAT_ROWS + r;
        if (i < T) {
            int d = clamp_ds(doc_start, (size_t)b * T, i);
            mn = min(mn, d);
            mx = max(mx, d);
        }
    }
    mn = __reduce_min_sync(0xffffffffu, mn);
    mx = __reduce_max_sync(0xffffffffu, mx);
    if (lane == 0) st[w] = make_int2(mn, mx);
}

/* Dsum[b,h,i] = dout_i . out_i; HD/8 lanes per (token, head), 8 bf16 per lane */
template <int HD>
__global__ void fa2_dsum_k(float *Dsum, const nmc_bf16 *dout, const nmc_bf16 *out, int T,
                           int H, size_t rows) {
    constexpr int L = HD / 8;
    const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t r = tid / L; /* token * H + head */
    const int c = (int)(tid % L);
    float s = 0.f;
    if (r < rows) {
        const uint4 a = *reinterpret_cast<const uint4 *>(dout + r * HD + c * 8);
        const uint4 o = *reinterpret_cast<const uint4 *>(out + r * HD + c * 8);
        const uint32_t aw[4] = {a.x, a.y, a.z, a.w}, ow[4] = {o.x, o.y, o.z, o.w};
#pragma unroll
        for (int e = 0; e < 4; e++) /* bf16 -> fp32 is exact: the bits move up 16 */
            s += __uint_as_float(aw[e] << 16) * __uint_as_float(ow[e] << 16) +
                 __uint_as_float(aw[e] & 0xffff0000u) * __uint_as_float(ow[e] & 0xffff0000u);
    }
#pragma unroll
    for (int off = L / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (r < rows && c == 0) {
        const size_t tok = r / H;
        const int h = (int)(r % H);
        const size_t b = tok / T, i = tok % T;
        Dsum[(b * H + h) * T + i] = s;
    }
}

/* ==== backward: dK, dV ================================================================= */
template <int HD> struct dkdv_cfg {
    static constexpr int BK = 64;                /* keys per block, 16 per warp */
    static constexpr int BQ = HD >= 128 ? 32 : 64; /* queries per step (registers bound it) */
    static constexpr int LD = HD + 8;
    static constexpr int K_ELEMS = BK * LD, Q_ELEMS = BQ * LD;
    /* K, V, Q[2], dO[2] (bf16), then lse[2], D[2], ds[2] (4 bytes each) */
    static constexpr size_t SMEM = (size_t)(2 * K_ELEMS + 4 * Q_ELEMS) * 2 + (size_t)6 * BQ * 4;
};

template <int HD, bool MASK>
__device__ __forceinline__ void dkdv_step(float (&dk)[HD / 8][4], float (&dv)[HD / 8][4],
                                          const bf16 *Ks, const bf16 *Vs, const bf16 *Qs,
                                          const bf16 *dOs, const float *lse_s, const float *D_s,
                                          const int *ds_s, int kw0, int j0, int q0, int T,
                                          float sl2, int lane) {
    typedef dkdv_cfg<HD> C;
    constexpr int LD = C::LD, NT = C::BQ / 8;
    const int gq = lane >> 2, tq = lane & 3;
    float s[NT][4], dp[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.f;
    /* S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys (rows) x BQ queries */
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t ak[4], av[4];
        ldsm_x4(ak, a_addr<LD>(Ks, kw0, kk * 16, lane));
        ldsm_x4(av, a_addr<LD>(Vs, kw0, kk * 16, lane));
#pragma unroll
        for (int nj = 0; nj < C::BQ / 16; nj++) {
            uint32_t bq[4], bo[4];
            ldsm_x4(bq, bn_addr<LD>(Qs, nj * 16, kk * 16, lane));
            mma16816(s[2 * nj], ak, bq[0], bq[1]);
            mma16816(s[2 * nj + 1], ak, bq[2], bq[3]);
            ldsm_x4(bo, bn_addr<LD>(dOs, nj * 16, kk * 16, lane));
            mma16816(dp[2 * nj], av, bo[0], bo[1]);
            mma16816(dp[2 * nj + 1], av, bo[2], bo[3]);
        }
    }
    /* P^T = exp2(s * scale * log2e - lse * log2e), dS^T = P^T (dP^T - D) */
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int r = n * 8 + tq * 2 + e, i = q0 + r;
            const float L = lse_s[r] * FA2_LOG2E, Dv = D_s[r];
            int dsi = 0;
            if (MASK) dsi = min(max(ds_s[r], 0), i);
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int c = hf * 2 + e;
                float p = exp2f(s[n][c] * sl2 - L);
                if (MASK) {
                    const int j = j0 + hf * 8 + gq;
                    if (!(i < T && j <= i && j >= dsi)) p = 0.f;
                }
                s[n][c] = p;
                dp[n][c] = p * (dp[n][c] - Dv);
            }
        }
    /* dV += P^T dO, dK += dS^T Q (A from registers, B k-major -> .trans) */
#pragma unroll
    for (int kq = 0; kq < C::BQ / 16; kq++) {
        uint32_t ap[4], as[4];
        c_to_a(ap, s[2 * kq], s[2 * kq + 1]);
        c_to_a(as, dp[2 * kq], dp[2 * kq + 1]);
#pragma unroll
        for (int dj = 0; dj < HD / 16; dj++) {
            uint32_t bo[4], bq[4];
            ldsm_x4_t(bo, a_addr<LD>(dOs, kq * 16, dj * 16, lane));
            mma16816(dv[2 * dj], ap, bo[0], bo[1]);
            mma16816(dv[2 * dj + 1], ap, bo[2], bo[3]);
            ldsm_x4_t(bq, a_addr<LD>(Qs, kq * 16, dj * 16, lane));
            mma16816(dk[2 * dj], as, bq[0], bq[1]);
            mma16816(dk[2 * dj + 1], as, bq[2], bq[3]);
        }
    }
}

/* can some query of BQ-row tile qt see a key in [k0, k_last]? (conservative: per 64 rows) */
template <int BQ>
__device__ __forceinline__ bool q_tile_sees(const int2 *stats, int srow, int qt, int k_last) {
    if (!stats) return true; /* plain causal: every tile from the diagonal on */
    return stats[srow + qt * BQ / FA2_STAT_ROWS].x <= k_last;
}

template <int HD>
__global__ void __launch_bounds__(FA2_THREADS)
fa2_dkdv_k(nmc_bf16 *dk, nmc_bf16 *dv, const nmc_bf16 *dout, const float *lse,
           const float *Dsum, const nmc_bf16 *q, const nmc_bf16 *k, const nmc_bf16 *v,
           const int32_t *doc_start, const int2 *stats, int T, int H, int KVH, float scale,
           float sl2) {
    typedef dkdv_cfg<HD> C;
    constexpr int BQ = C::BQ;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Ks = (bf16 *)smem;
    bf16 *Vs = Ks + C::K_ELEMS;
    bf16 *Qb = Vs + C::K_ELEMS;       /* [2][BQ][LD] */
    bf16 *dOb = Qb + 2 * C::Q_ELEMS;  /* [2][BQ][LD] */
    float *lse_b = (float *)(dOb + 2 * C::Q_ELEMS); /* [2][BQ] */
    float *D_b = lse_b + 2 * BQ;                     /* [2][BQ] */
    int *ds_b = (int *)(D_b + 2 * BQ);               /* [2][BQ] */

    const int b = blockIdx.x / KVH, kvh = blockIdx.x % KVH;
    const int k0 = blockIdx.y * C::BK, k_last = min(k0 + C::BK, T) - 1;
    const int rep = H / KVH, h_lo = kvh * rep, h_hi = h_lo + rep;
    const size_t qs = (size_t)H * HD, ks = (size_t)KVH * HD, row0 = (size_t)b * T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const int kw0 = warp * 16, j0 = k0 + kw0; /* this warp's first key */
    const int nqt = (T + BQ - 1) / BQ, qt_lo = k0 / BQ;
    const int ntile = (T + FA2_STAT_ROWS - 1) / FA2_STAT_ROWS, srow = b * ntile;

    load_rows<C::BK, HD>(Ks, k + row0 * ks + (size_t)kvh * HD, ks, k0, T);
    load_rows<C::BK, HD>(Vs, v + row0 * ks + (size_t)kvh * HD, ks, k0, T);

    /* work items (head, query tile) in order, skipping tiles that cannot see the keys */
    int h = h_lo, qt = qt_lo - 1;
    auto advance = [&](int &hh, int &tt) -> bool {
        for (;;) {
            if (++tt >= nqt) {
                tt = qt_lo;
                ++hh;
            }
            if (hh >= h_hi) return false;
            if (q_tile_sees<BQ>(stats, srow, tt, k_last)) return true;
        }
    };
    auto issue = [&](int hh, int tt, int stage) {
        const int q0 = tt * BQ;
        load_rows<BQ, HD>(Qb + stage * C::Q_ELEMS, q + row0 * qs + (size_t)hh * HD, qs, q0, T);
        load_rows<BQ, HD>(dOb + stage * C::Q_ELEMS, dout + row0 * qs + (size_t)hh * HD, qs, q0, T);
        const size_t lrow = ((size_t)b * H + hh) * T;
        for (int r = threadIdx.x; r < BQ; r += FA2_THREADS) {
            const int i = q0 + r;
            const bool ok = i < T;
            const size_t ii = ok ? (size_t)i : 0;
            cp_async4(smem_addr(lse_b + stage * BQ + r), lse + lrow + ii, ok);
            cp_async4(smem_addr(D_b + stage * BQ + r), Dsum + lrow + ii, ok);
            if (doc_start) cp_async4(smem_addr(ds_b + stage * BQ + r), doc_start + row0 + ii, ok);
            else ds_b[stage * BQ + r] = 0;
        }
    };

    float dkf[HD / 8][4], dvf[HD / 8][4];
#pragma unroll
    for (int d = 0; d < HD / 8; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) dkf[d][e] = dvf[d][e] = 0.f;

    bool have = advance(h, qt);
    if (have) issue(h, qt, 0);
    cp_async_commit(); /* K, V (+ the first item) */
    int stage = 0;
    while (have) {
        int nh = h, nq = qt;
        const bool have_next = advance(nh, nq);
        if (have_next) issue(nh, nq, stage ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const int q0 = qt * BQ;
        /* the warp computes only if some query of the tile is at or after its first key,
         * and it has keys inside the row */
        if (q0 + BQ - 1 >= j0 && j0 < T) {
            const int2 sb = stats ? stats[srow + q0 / FA2_STAT_ROWS] : make_int2(0, 0);
            const bool mask = q0 < k0 + C::BK - 1 || sb.y > k0 || q0 + BQ > T;
            const bf16 *Qs = Qb + stage * C::Q_ELEMS, *dOs = dOb + stage * C::Q_ELEMS;
            const float *ls = lse_b + stage * BQ, *Ds = D_b + stage * BQ;
            const int *dss = ds_b + stage * BQ;
            if (mask)
                dkdv_step<HD, true>(dkf, dvf, Ks, Vs, Qs, dOs, ls, Ds, dss, kw0, j0, q0, T, sl2, lane);
            else
                dkdv_step<HD, false>(dkf, dvf, Ks, Vs, Qs, dOs, ls, Ds, dss, kw0, j0, q0, T, sl2, lane);
        }
        __syncthreads(); /* buffers of `stage` are free again */
        stage ^= 1;
        h = nh;
        qt = nq;
        have = have_next;
    }
    cp_async_wait<0>(); /* nothing may stay in flight when the block exits */

    /* rows j0 + gq (+8) of dK (times scale) and dV */
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const int j = j0 + hf * 8 + gq;
        if (j >= T) continue;
        nmc_bf16 *dkr = dk + (row0 + j) * ks + (size_t)kvh * HD;
        nmc_bf16 *dvr = dv + (row0 + j) * ks + (size_t)kvh * HD;
#pragma unroll
        for (int d = 0; d < HD / 8; d++) {
            *reinterpret_cast<__nv_bfloat162 *>(dkr + d * 8 + tq * 2) =
                __floats2bfloat162_rn(dkf[d][hf * 2] * scale, dkf[d][hf * 2 + 1] * scale);
            *reinterpret_cast<__nv_bfloat162 *>(dvr + d * 8 + tq * 2) =
                __floats2bfloat162_rn(dvf[d][hf * 2], dvf[d][hf * 2 + 1]);
        }
    }
}

/* ==== backward: dQ ===================================================================== */
template <int HD> struct dq_cfg {
    static constexpr int BR = FA2_STAT_ROWS, BC = 64, LD = HD + 8; /* 16 rows per warp */
    static constexpr int R_ELEMS = BR * LD, K_ELEMS = BC * LD;
    static constexpr size_t SMEM = (size_t)(2 * R_ELEMS + 4 * K_ELEMS) * 2; /* Q dO K[2] V[2] */
};

template <int HD, bool MASK>
__device__ __forceinline__ void dq_step(float (&dq)[HD / 8][4], const bf16 *Qs, const bf16 *dOs,
                                        const bf16 *Ks, const bf16 *Vs, const float (&L)[2],
                                        const float (&Dv)[2], const int (&dsr)[2], int wrow0,
                                        int i0, int k0, float sl2, int lane) {
    typedef dq_cfg<HD> C;
    constexpr int LD = C::LD, NT = C::BC / 8;
    const int tq = lane & 3;
    float s[NT][4], dp[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.f;
    /* S = Q K^T, dP = dO V^T for this warp's 16 rows */
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t aq[4], ao[4];
        ldsm_x4(aq, a_addr<LD>(Qs, wrow0, kk * 16, lane));
        ldsm_x4(ao, a_addr<LD>(dOs, wrow0, kk * 16, lane));
#pragma unroll
        for (int nj = 0; nj < C::BC / 16; nj++) {
            uint32_t bk[4], bv[4];
            ldsm_x4(bk, bn_addr<LD>(Ks, nj * 16, kk * 16, lane));
            mma16816(s[2 * nj], aq, bk[0], bk[1]);
            mma16816(s[2 * nj + 1], aq, bk[2], bk[3]);
            ldsm_x4(bv, bn_addr<LD>(Vs, nj * 16, kk * 16, lane));
            mma16816(dp[2 * nj], ao, bv[0], bv[1]);
            mma16816(dp[2 * nj + 1], ao, bv[2], bv[3]);
        }
    }
    /* dS = P (dP - D), P = exp2(s * scale * log2e - lse * log2e) */
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int hf = c >> 1;
            float p = exp2f(s[n][c] * sl2 - L[hf]);
            if (MASK) {
                const int i = i0 + hf * 8, j = k0 + n * 8 + tq * 2 + (c & 1);
                if (j > i || j < dsr[hf]) p = 0.f;
            }
            dp[n][c] = p * (dp[n][c] - Dv[hf]);
        }
    /* dQ += dS K (K k-major: keys x hd -> .trans) */
#pragma unroll
    for (int kk = 0; kk < C::BC / 16; kk++) {
        uint32_t a[4];
        c_to_a(a, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
        for (int dj = 0; dj < HD / 16; dj++) {
            uint32_t bk[4];
            ldsm_x4_t(bk, a_addr<LD>(Ks, kk * 16, dj * 16, lane));
            mma16816(dq[2 * dj], a, bk[0], bk[1]);
            mma16816(dq[2 * dj + 1], a, bk[2], bk[3]);
        }
    }
}

template <int HD>
__global__ void __launch_bounds__(FA2_THREADS)
fa2_dq_k(nmc_bf16 *dq, const nmc_bf16 *dout, const float *lse, const float *Dsum,
         const nmc_bf16 *q, const nmc_bf16 *k, const nmc_bf16 *v, const int32_t *doc_start,
         const int2 *stats, int T, int H, int KVH, float scale, float sl2) {
    typedef dq_cfg<HD> C;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem;
    bf16 *dOs = Qs + C::R_ELEMS;
    bf16 *Kb = dOs + C::R_ELEMS;     /* [2][BC][LD] */
    bf16 *Vb = Kb + 2 * C::K_ELEMS;  /* [2][BC][LD] */

    const int b = blockIdx.x / H, h = blockIdx.x % H;
    const int qt = gridDim.y - 1 - blockIdx.y, q0 = qt * C::BR;
    const int kvh = h / (H / KVH);
    const size_t qs = (size_t)H * HD, ks = (size_t)KVH * HD, row0 = (size_t)b * T;
    const size_t lrow = ((size_t)b * H + h) * T;
    const nmc_bf16 *kg = k + row0 * ks + (size_t)kvh * HD;
    const nmc_bf16 *vg = v + row0 * ks + (size_t)kvh * HD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const int wrow0 = warp * 16, i0 = q0 + wrow0 + gq;
    const int ntile = (T + FA2_STAT_ROWS - 1) / FA2_STAT_ROWS;
    const int2 sb = stats ? stats[(size_t)b * ntile + qt] : make_int2(0, 0);
    const int q_last = min(q0 + C::BR, T) - 1;
    const int kt0 = sb.x / C::BC, kt1 = q_last / C::BC;

    load_rows<C::BR, HD>(Qs, q + row0 * qs + (size_t)h * HD, qs, q0, T);
    load_rows<C::BR, HD>(dOs, dout + row0 * qs + (size_t)h * HD, qs, q0, T);
    load_rows<C::BC, HD>(Kb, kg, ks, kt0 * C::BC, T);
    load_rows<C::BC, HD>(Vb, vg, ks, kt0 * C::BC, T);
    cp_async_commit();

    float L[2], Dv[2];
    int dsr[2];
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const int i = i0 + hf * 8;
        const bool ok = i < T;
        L[hf] = ok ? lse[lrow + i] * FA2_LOG2E : 0.f;
        Dv[hf] = ok ? Dsum[lrow + i] : 0.f;
        dsr[hf] = ok ? clamp_ds(doc_start, row0, i) : 0;
    }
    float dqf[HD / 8][4];
#pragma unroll
    for (int d = 0; d < HD / 8; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) dqf[d][e] = 0.f;

    for (int kt = kt0; kt <= kt1; kt++) {
        const int st = (kt - kt0) & 1;
        if (kt < kt1) {
            load_rows<C::BC, HD>(Kb + (st ^ 1) * C::K_ELEMS, kg, ks, (kt + 1) * C::BC, T);
            load_rows<C::BC, HD>(Vb + (st ^ 1) * C::K_ELEMS, vg, ks, (kt + 1) * C::BC, T);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const int k0 = kt * C::BC;
        if (q0 + wrow0 + 15 >= k0) {
            const bf16 *Ks = Kb + st * C::K_ELEMS, *Vs = Vb + st * C::K_ELEMS;
            if (k0 + C::BC - 1 > q0 || sb.y > k0)
                dq_step<HD, true>(dqf, Qs, dOs, Ks, Vs, L, Dv, dsr, wrow0, i0, k0, sl2, lane);
            else
                dq_step<HD, false>(dqf, Qs, dOs, Ks, Vs, L, Dv, dsr, wrow0, i0, k0, sl2, lane);
        }
        __syncthreads();
    }

#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const int i = i0 + hf * 8;
        if (i >= T) continue;
        nmc_bf16 *dqr = dq + (row0 + i) * qs + (size_t)h * HD;
#pragma unroll
        for (int d = 0; d < HD / 8; d++)
            *reinterpret_cast<__nv_bfloat162 *>(dqr + d * 8 + tq * 2) =
                __floats2bfloat162_rn(dqf[d][hf * 2] * scale, dqf[d][hf * 2 + 1] * scale);
    }
}

/* ==== host side ======================================================================== */
extern "C" int nmc_cuda_attention_fa2_supports(int B, int T, int H, int KVH, int hd) {
    if (B <= 0 || T <= 0 || H <= 0 || KVH <= 0 || H % KVH != 0) return 0;
    if (hd != 64 && hd != 128) return 0;
    if (T > NMC_CUDA_FA2_MAX_T) return 0;
    return (long long)B * H <= NMC_CUDA_FA2_MAX_BH;
}

/* 0: go; NMC_CUDA_FA2_UNSUPPORTED: valid call the fallback must take; -1: bad call */
static int fa2_check(nmc_cuda_ctx_t *c, const void *const *ptrs, const char *const *names,
                     int np, int B, int T, int H, int KVH, int hd) {
    REQUIRE(c, B > 0 && T > 0 && H > 0 && KVH > 0 && H % KVH == 0,
            "bad shape B=%d T=%d H=%d KVH=%d (all > 0, H %% KVH == 0)", B, T, H, KVH);
    if (!nmc_cuda_attention_fa2_supports(B, T, H, KVH, hd)) return NMC_CUDA_FA2_UNSUPPORTED;
    REQUIRE(c, (hd * 2) % 16 == 0, "head dim %d: rows of %d bytes are not a multiple of 16",
            hd, hd * 2);
    for (int i = 0; i < np; i++) {
        REQUIRE(c, ptrs[i] != NULL, "%s is NULL", names[i]);
        REQUIRE(c, ((uintptr_t)ptrs[i] & 15) == 0,
                "%s (%p) is not 16-byte aligned (the kernels copy 8 bf16 at once); allocate "
                "with nmc_cuda_malloc or offset by multiples of 8 elements",
                names[i], ptrs[i]);
    }
    return 0;
}

static int fa2_check_small(nmc_cuda_ctx_t *c, const float *lse, const int32_t *doc_start) {
    REQUIRE(c, lse != NULL, "lse is NULL");
    REQUIRE(c, ((uintptr_t)lse & 3) == 0, "lse (%p) is not 4-byte aligned", (const void *)lse);
    REQUIRE(c, ((uintptr_t)doc_start & 3) == 0, "doc_start (%p) is not 4-byte aligned",
            (const void *)doc_start);
    return 0;
}

template <typename K> static int fa2_smem(nmc_cuda_ctx_t *c, K kernel, size_t bytes) {
    CK(c, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return 0;
}

template <int HD>
static int fa2_fwd_launch(nmc_bf16 *out, float *lse, const nmc_bf16 *q, const nmc_bf16 *k,
                          const nmc_bf16 *v, const int32_t *doc_start, int B, int T, int H,
                          int KVH, float scale, nmc_cuda_ctx_t *c) {
    typedef fwd_cfg<HD> C;
    if (fa2_smem(c, fa2_fwd_k<HD>, C::SMEM)) return -1;
    dim3 grid((unsigned)(B * H), (unsigned)((T + C::BR - 1) / C::BR));
    fa2_fwd_k<HD><<<grid, FA2_THREADS, C::SMEM, c->stream>>>(out, lse, q, k, v, doc_start, T,
                                                             H, KVH, scale * FA2_LOG2E);
    CKLAUNCH(c, "fa2_fwd_k");
    return 0;
}

template <int HD>
static int fa2_bwd_launch(nmc_bf16 *dq, nmc_bf16 *dk, nmc_bf16 *dv, const nmc_bf16 *dout,
                          const nmc_bf16 *out, const float *lse, const nmc_bf16 *q,
                          const nmc_bf16 *k, const nmc_bf16 *v, const int32_t *doc_start,
                          int B, int T, int H, int KVH, float scale, nmc_cuda_ctx_t *c) {
    const size_t nrow = (size_t)B * H * T;
    const int ntile = (T + FA2_STAT_ROWS - 1) / FA2_STAT_ROWS;
    const size_t dsum_bytes = (nrow * sizeof(float) + 15) & ~(size_t)15;
    const size_t stat_bytes = doc_start ? (size_t)B * ntile * sizeof(int2) : 0;
    unsigned char *scr = (unsigned char *)nmc_cuda_scratch(c, dsum_bytes + stat_bytes);
    if (!scr) return -1;
    float *Dsum = (float *)scr;
    int2 *stats = doc_start ? (int2 *)(scr + dsum_bytes) : NULL;

    const size_t rows = (size_t)B * T * H, threads = rows * (HD / 8);
    fa2_dsum_k<HD><<<grid_for(threads, 256, 0x7fffffffu), 256, 0, c->stream>>>(Dsum, dout, out,
                                                                                T, H, rows);
    CKLAUNCH(c, "fa2_dsum_k");
    if (stats) {
        const size_t sthreads = (size_t)B * ntile * 32;
        fa2_stats_k<<<grid_for(sthreads, 128, 0x7fffffffu), 128, 0, c->stream>>>(stats, doc_start,
                                                                                   B, T, ntile);
        CKLAUNCH(c, "fa2_stats_k");
    }
    typedef dkdv_cfg<HD> CK_;
    typedef dq_cfg<HD> CQ;
    if (fa2_smem(c, fa2_dkdv_k<HD>, CK_::SMEM) || fa2_smem(c, fa2_dq_k<HD>, CQ::SMEM)) return -1;
    const float sl2 = scale * FA2_LOG2E;
    dim3 gkv((unsigned)(B * KVH), (unsigned)((T + CK_::BK - 1) / CK_::BK));
    fa2_dkdv_k<HD><<<gkv, FA2_THREADS, CK_::SMEM, c->stream>>>(dk, dv, dout, lse, Dsum, q, k, v,
                                                               doc_start, stats, T, H, KVH,
                                                               scale, sl2);
    CKLAUNCH(c, "fa2_dkdv_k");
    dim3 gq((unsigned)(B * H), (unsigned)ntile);
    fa2_dq_k<HD><<<gq, FA2_THREADS, CQ::SMEM, c->stream>>>(dq, dout, lse, Dsum, q, k, v,
                                                           doc_start, stats, T, H, KVH, scale,
                                                           sl2);
    CKLAUNCH(c, "fa2_dq_k");
    return 0;
}

extern "C" int nmc_cuda_attention_fa2_fwd(nmc_bf16 *out, float *lse, const nmc_bf16 *q,
                                          const nmc_bf16 *k, const nmc_bf16 *v,
                                          const int32_t *doc_start, int B, int T, int H,
                                          int KVH, int hd, float scale, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    const void *ptrs[4] = {out, q, k, v};
    const char *names[4] = {"out", "q", "k", "v"};
    int rc = fa2_check(c, ptrs, names, 4, B, T, H, KVH, hd);
    if (rc) return rc;
    if (fa2_check_small(c, lse, doc_start)) return -1;
    if (hd == 64) return fa2_fwd_launch<64>(out, lse, q, k, v, doc_start, B, T, H, KVH, scale, c);
    return fa2_fwd_launch<128>(out, lse, q, k, v, doc_start, B, T, H, KVH, scale, c);
}

extern "C" int nmc_cuda_attention_fa2_bwd(nmc_bf16 *dq, nmc_bf16 *dk, nmc_bf16 *dv,
                                          const nmc_bf16 *dout, const nmc_bf16 *out,
                                          const float *lse, const nmc_bf16 *q,
                                          const nmc_bf16 *k, const nmc_bf16 *v,
                                          const int32_t *doc_start, int B, int T, int H,
                                          int KVH, int hd, float scale, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    const void *ptrs[8] = {dq, dk, dv, dout, out, q, k, v};
    const char *names[8] = {"dq", "dk", "dv", "dout", "out", "q", "k", "v"};
    int rc = fa2_check(c, ptrs, names, 8, B, T, H, KVH, hd);
    if (rc) return rc;
    if (fa2_check_small(c, lse, doc_start)) return -1;
    if (hd == 64)
        return fa2_bwd_launch<64>(dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, T, H, KVH,
                                  scale, c);
    return fa2_bwd_launch<128>(dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, T, H, KVH,
                               scale, c);
}
