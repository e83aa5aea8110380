/* fused.cu — the CUDA fast-path kernels of nmc_cuda_fused.h (NMC_CUDA_FAST=1): vectorized
 * RMSNorm / RoPE / SwiGLU and the multi-tensor AdamW / sum of squares.
 *
 * Why they exist (docs/cuda.md, "Where a training step goes"): the plain kernels run one
 * 256-thread block per row, which for Qwen3's per-head q/k norm (rows of 128) means 65536
 * tiny blocks per call at 4096 tokens, bound by block scheduling (~0.2 TB/s); RoPE spends
 * most of its time in 64-bit index divisions; the optimizer issues 2-4 launches per tensor.
 * Here: a group of GS lanes per row with 16-byte loads (rows stay in registers between the
 * reduction and the output), one sin/cos table per token shared by all heads, and one
 * launch over every tensor of the model for AdamW and for the squared norm.
 *
 * Layouts, dtypes and semantics are those of the plain ops (nmc_cuda.h); math is fp32 in
 * the same operation order, so results differ from the plain kernels only by the order of
 * the fp32 row sums (rstd, the RMSNorm backward dot). Multi-tensor AdamW uses adamw's
 * per-element code (nmc_adam_math.cuh): the CPU's bits.
 *
 * The section between the "device code" markers is also compiled on the CPU by
 * tests/gpu/fused_emu/run.sh (with the warp emulator of tests/gpu/fa2_emu/emu_rt.h): keep
 * it free of PTX and of shuffles on types other than float.
 */
#include "cuda_common.cuh"
#include "nmc_adam_math.cuh"
#include "nmc_cuda_fused.h"

/* ==== device code (begin) */
#define FZ_THREADS 256
#define FZ_FULL 0xffffffffu

__device__ __forceinline__ void fz_unpack8(uint4 u, float f[8]) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        float2 t = __bfloat1622float2(h[k]);
        f[2 * k] = t.x;
        f[2 * k + 1] = t.y;
    }
}
__device__ __forceinline__ uint4 fz_pack8(const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
    for (int k = 0; k < 4; k++) h[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
    return u;
}

/* sum over the GS lanes of an aligned lane group (GS divides 32; every lane calls) */
template <int GS> __device__ __forceinline__ float fz_group_sum(float v) {
#pragma unroll
    for (int o = GS / 2; o > 0; o >>= 1) v += __shfl_xor_sync(FZ_FULL, v, o);
    return v;
}

/* ---- RMSNorm: GS lanes per row, lane `sub` holds vectors sub, sub+GS, ... (<= VMAX) --- */
template <int GS, int VMAX>
__global__ void __launch_bounds__(FZ_THREADS)
fz_rms_fwd_k(uint4 *y, float *rstd, const uint4 *x, const uint4 *w, int N, int nvec, int D,
             float eps) {
    const int sub = threadIdx.x & (GS - 1);
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / GS;
    const bool live = row < N;
    float v[VMAX][8];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < VMAX; k++) {
        const int j = sub + k * GS;
        if (live && j < nvec) {
            fz_unpack8(x[row * nvec + j], v[k]);
#pragma unroll
            for (int e = 0; e < 8; e++) ss += v[k][e] * v[k][e];
        }
    }
    ss = fz_group_sum<GS>(ss);
    const float rs = 1.0f / sqrtf(ss / (float)D + eps);
    if (!live) return; /* after the shuffles: every lane of the warp takes part in them */
    if (sub == 0) rstd[row] = rs;
#pragma unroll
    for (int k = 0; k < VMAX; k++) {
        const int j = sub + k * GS;
        if (j < nvec) {
            float wv[8], o[8];
            fz_unpack8(w[j], wv);
#pragma unroll
            for (int e = 0; e < 8; e++) o[e] = wv[e] * (v[k][e] * rs);
            y[row * nvec + j] = fz_pack8(o);
        }
    }
}

template <int GS, int VMAX>
__global__ void __launch_bounds__(FZ_THREADS)
fz_rms_bwd_k(uint4 *dx, const uint4 *dy, const uint4 *x, const uint4 *w, const float *rstd,
             int N, int nvec, int D) {
    const int sub = threadIdx.x & (GS - 1);
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / GS;
    const bool live = row < N;
    float xv[VMAX][8], gw[VMAX][8]; /* x and dy * w */
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < VMAX; k++) {
        const int j = sub + k * GS;
        if (live && j < nvec) {
            float dv[8], wv[8];
            fz_unpack8(x[row * nvec + j], xv[k]);
            fz_unpack8(dy[row * nvec + j], dv);
            fz_unpack8(w[j], wv);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                gw[k][e] = dv[e] * wv[e];
                dot += gw[k][e] * xv[k][e];
            }
        }
    }
    dot = fz_group_sum<GS>(dot);
    if (!live) return;
    const float rs = rstd[row];
    const float cc = dot / (float)D * rs * rs * rs;
#pragma unroll
    for (int k = 0; k < VMAX; k++) {
        const int j = sub + k * GS;
        if (j < nvec) {
            float o[8];
#pragma unroll
            for (int e = 0; e < 8; e++) o[e] = rs * gw[k][e] - cc * xv[k][e];
            dx[row * nvec + j] = fz_pack8(o);
        }
    }
}

/* ---- RoPE: one block per token; sin/cos of the token's angles computed once ----------- */
#define FZ_ROPE_MAX_HALF 256
__global__ void __launch_bounds__(128)
fz_rope_k(uint4 *x, const int32_t *pos, const float *inv_freq, int nh, int hd, float sign) {
    __shared__ float s_sin[FZ_ROPE_MAX_HALF], s_cos[FZ_ROPE_MAX_HALF];
    const int half = hd / 2, hv = half / 8, rowv = hd / 8;
    const long long tok = blockIdx.x;
    const float p = (float)pos[tok];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float s, cs;
        sincosf(p * inv_freq[i], &s, &cs);
        s_sin[i] = s * sign;
        s_cos[i] = cs;
    }
    __syncthreads();
    uint4 *row = x + tok * nh * rowv;
    for (int it = threadIdx.x; it < nh * hv; it += blockDim.x) {
        const int h = it / hv, j = it - h * hv;
        uint4 *a = row + h * rowv + j, *b = a + hv;
        float x1[8], x2[8], o1[8], o2[8];
        fz_unpack8(*a, x1);
        fz_unpack8(*b, x2);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const float cs = s_cos[8 * j + e], s = s_sin[8 * j + e];
            o1[e] = x1[e] * cs - x2[e] * s;
            o2[e] = x2[e] * cs + x1[e] * s;
        }
        *a = fz_pack8(o1);
        *b = fz_pack8(o2);
    }
}

/* ---- SwiGLU, 8 elements per thread ------------------------------------------------------ */
__device__ __forceinline__ float fz_sigm(float g) { return 1.f / (1.f + expf(-g)); }

__global__ void fz_swiglu_fwd_k(uint4 *h, const uint4 *g, const uint4 *u, size_t nv) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv;
         i += (size_t)gridDim.x * blockDim.x) {
        float gf[8], uf[8], o[8];
        fz_unpack8(g[i], gf);
        fz_unpack8(u[i], uf);
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = gf[e] * fz_sigm(gf[e]) * uf[e];
        h[i] = fz_pack8(o);
    }
}

__global__ void fz_swiglu_bwd_k(uint4 *dg, uint4 *du, const uint4 *dh, const uint4 *g,
                                const uint4 *u, size_t nv) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv;
         i += (size_t)gridDim.x * blockDim.x) {
        float gf[8], uf[8], df[8], og[8], ou[8];
        fz_unpack8(g[i], gf);
        fz_unpack8(u[i], uf);
        fz_unpack8(dh[i], df);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const float s = fz_sigm(gf[e]);
            og[e] = df[e] * uf[e] * s * (1.f + gf[e] * (1.f - s));
            ou[e] = df[e] * gf[e] * s;
        }
        dg[i] = fz_pack8(og);
        du[i] = fz_pack8(ou);
    }
}

/* ---- multi-tensor AdamW and sum of squares -------------------------------------------------
 * Block b works on elements [(b - block0) * CHUNK, +CHUNK) of the tensor whose block range
 * holds b (binary search in the table; entries with n == 0 own no block). */
__device__ __forceinline__ int fz_mt_find(const nmc_cuda_mt_t *tab, int count,
                                          unsigned long long b) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (tab[mid].block0 <= b) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

__global__ void __launch_bounds__(FZ_THREADS)
fz_adamw_multi_k(const nmc_cuda_mt_t *tab, int count, adam_hp base, double lr, int adam_l2,
                 const double *clip_sumsq, float max_norm) {
    __shared__ int s_t;
    if (threadIdx.x == 0) s_t = fz_mt_find(tab, count, blockIdx.x);
    __syncthreads();
    const nmc_cuda_mt_t e = tab[s_t];
    bool clip = false;
    float coef = 1.f;
    if (clip_sumsq) { /* nmc_cuda_clip_scale's coefficient, in double as there */
        const double cf = (double)max_norm / (sqrt(*clip_sumsq) + 1e-6);
        if (cf < 1.0) {
            clip = true;
            coef = (float)cf;
        }
    }
    adam_hp h = base;
    h.decay_mul = adam_l2 ? 1.0f : (float)(1.0 - lr * (double)e.wd);
    h.l2 = adam_l2 ? e.wd : 0.0f;
    const unsigned long long start = (blockIdx.x - e.block0) * (unsigned long long)NMC_CUDA_MT_CHUNK;
#pragma unroll
    for (int k = 0; k < NMC_CUDA_MT_CHUNK / FZ_THREADS; k++) {
        const unsigned long long i = start + (unsigned long long)(k * FZ_THREADS) + threadIdx.x;
        if (i < e.n) {
            float g = e.g[i];
            if (clip) g *= coef;
            const float np = adam_one(e.p[i], g, e.m, e.v, (size_t)i, h);
            e.p[i] = np;
            if (e.pb) stbf(e.pb, (size_t)i, np);
        }
    }
}

__global__ void __launch_bounds__(FZ_THREADS)
fz_sumsq_multi_k(double *partial, const nmc_cuda_mt_t *tab, int count) {
    __shared__ int s_t;
    __shared__ double sh[FZ_THREADS];
    if (threadIdx.x == 0) s_t = fz_mt_find(tab, count, blockIdx.x);
    __syncthreads();
    const nmc_cuda_mt_t e = tab[s_t];
    const unsigned long long start = (blockIdx.x - e.block0) * (unsigned long long)NMC_CUDA_MT_CHUNK;
    double s = 0.0;
#pragma unroll
    for (int k = 0; k < NMC_CUDA_MT_CHUNK / FZ_THREADS; k++) {
        const unsigned long long i = start + (unsigned long long)(k * FZ_THREADS) + threadIdx.x;
        if (i < e.n) {
            const double v = e.p[i];
            s += v * v;
        }
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = FZ_THREADS / 2; o > 0; o >>= 1) { /* fixed tree: deterministic */
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

__global__ void __launch_bounds__(FZ_THREADS)
fz_sum_partials_k(double *out, const double *partial, unsigned long long nb) {
    __shared__ double sh[FZ_THREADS];
    double s = 0.0;
    for (unsigned long long i = threadIdx.x; i < nb; i += FZ_THREADS) s += partial[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = FZ_THREADS / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out += sh[0];
}
/* host helper, here so that the emulator uses the same block layout */
unsigned long long nmc_cuda_mt_prepare(nmc_cuda_mt_t *tab, int count) {
    unsigned long long b = 0;
    for (int i = 0; i < count; i++) {
        tab[i].block0 = b;
        b += (tab[i].n + NMC_CUDA_MT_CHUNK - 1) / NMC_CUDA_MT_CHUNK;
    }
    return b;
}
/* ==== device code (end) */

/* ==== host side */

static int fz_al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* lane-group geometry for rows of nvec 16-byte vectors: 0 = unsupported */
static int rms_geometry(int nvec, int *gs, int *vmax) {
    if (nvec <= 0) return 0;
    if (nvec <= 32) {
        int g = 1;
        while (g < nvec) g <<= 1;
        *gs = g;
        *vmax = 1;
        return 1;
    }
    *gs = 32;
    int v = 2;
    while (v * 32 < nvec) v <<= 1;
    *vmax = v;
    return v <= 8; /* D <= 2048: the row stays in registers (bwd: 2 x 64 floats) */
}

#define RMS_CASES(X)                                                                      \
    X(1, 1) X(2, 1) X(4, 1) X(8, 1) X(16, 1) X(32, 1) X(32, 2) X(32, 4) X(32, 8)

int nmc_cuda_rmsnorm_fwd_fast(nmc_bf16 *y, float *rstd, const nmc_bf16 *x, const nmc_bf16 *w,
                              int N, int D, float eps, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    int gs = 0, vm = 0;
    if (D % 8 || !rms_geometry(D / 8, &gs, &vm) || !fz_al16(y) || !fz_al16(x) || !fz_al16(w))
        return NMC_CUDA_FAST_UNSUPPORTED;
    REQUIRE(c, N >= 0 && y && rstd && x && w, "bad arguments N=%d D=%d", N, D);
    if (!N) return 0;
    const unsigned grid = (unsigned)(((size_t)N * gs + FZ_THREADS - 1) / FZ_THREADS);
#define X(G, V)                                                                           \
    if (gs == G && vm == V)                                                               \
        fz_rms_fwd_k<G, V><<<grid, FZ_THREADS, 0, c->stream>>>(                           \
            (uint4 *)y, rstd, (const uint4 *)x, (const uint4 *)w, N, D / 8, D, eps);
    RMS_CASES(X)
#undef X
    CKLAUNCH(c, "fz_rms_fwd_k");
    return 0;
}

int nmc_cuda_rmsnorm_bwd_fast(nmc_bf16 *dx, float *dw, const nmc_bf16 *dy, const nmc_bf16 *x,
                              const nmc_bf16 *w, const float *rstd, int N, int D,
                              nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    int gs = 0, vm = 0;
    if (D % 8 || !rms_geometry(D / 8, &gs, &vm) || !fz_al16(dx) || !fz_al16(dy) ||
        !fz_al16(x) || !fz_al16(w))
        return NMC_CUDA_FAST_UNSUPPORTED;
    REQUIRE(c, N >= 0 && dx && dy && x && w && rstd, "bad arguments N=%d D=%d", N, D);
    if (!N) return 0;
    const unsigned grid = (unsigned)(((size_t)N * gs + FZ_THREADS - 1) / FZ_THREADS);
#define X(G, V)                                                                           \
    if (gs == G && vm == V)                                                               \
        fz_rms_bwd_k<G, V><<<grid, FZ_THREADS, 0, c->stream>>>(                           \
            (uint4 *)dx, (const uint4 *)dy, (const uint4 *)x, (const uint4 *)w, rstd, N,  \
            D / 8, D);
    RMS_CASES(X)
#undef X
    CKLAUNCH(c, "fz_rms_bwd_k");
    if (dw) return nmc_cuda_colsum(c, dw, dy, x, rstd, N, D, 1);
    return 0;
}

static int rope_fast(nmc_bf16 *x, const int32_t *pos, const float *inv_freq, int N, int nh,
                     int hd, float sign, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    if (hd % 16 || hd / 2 > FZ_ROPE_MAX_HALF || nh <= 0 || !fz_al16(x))
        return NMC_CUDA_FAST_UNSUPPORTED;
    REQUIRE(c, N >= 0 && x && pos && inv_freq, "bad arguments N=%d nh=%d hd=%d", N, nh, hd);
    if (!N) return 0;
    fz_rope_k<<<(unsigned)N, 128, 0, c->stream>>>((uint4 *)x, pos, inv_freq, nh, hd, sign);
    CKLAUNCH(c, "fz_rope_k");
    return 0;
}

int nmc_cuda_rope_fwd_fast(nmc_bf16 *x, const int32_t *pos, const float *inv_freq, int N,
                           int nh, int hd, nmc_cuda_ctx_t *c) {
    return rope_fast(x, pos, inv_freq, N, nh, hd, 1.f, c);
}
int nmc_cuda_rope_bwd_fast(nmc_bf16 *dx, const int32_t *pos, const float *inv_freq, int N,
                           int nh, int hd, nmc_cuda_ctx_t *c) {
    return rope_fast(dx, pos, inv_freq, N, nh, hd, -1.f, c);
}

int nmc_cuda_swiglu_fwd_fast(nmc_bf16 *h, const nmc_bf16 *g, const nmc_bf16 *u, size_t n,
                             nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    if (n % 8 || !fz_al16(h) || !fz_al16(g) || !fz_al16(u)) return NMC_CUDA_FAST_UNSUPPORTED;
    if (!n) return 0;
    fz_swiglu_fwd_k<<<grid_for(n / 8, FZ_THREADS, 65535), FZ_THREADS, 0, c->stream>>>(
        (uint4 *)h, (const uint4 *)g, (const uint4 *)u, n / 8);
    CKLAUNCH(c, "fz_swiglu_fwd_k");
    return 0;
}

int nmc_cuda_swiglu_bwd_fast(nmc_bf16 *dg, nmc_bf16 *du, const nmc_bf16 *dh, const nmc_bf16 *g,
                             const nmc_bf16 *u, size_t n, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    if (n % 8 || !fz_al16(dg) || !fz_al16(du) || !fz_al16(dh) || !fz_al16(g) || !fz_al16(u))
        return NMC_CUDA_FAST_UNSUPPORTED;
    if (!n) return 0;
    fz_swiglu_bwd_k<<<grid_for(n / 8, FZ_THREADS, 65535), FZ_THREADS, 0, c->stream>>>(
        (uint4 *)dg, (uint4 *)du, (const uint4 *)dh, (const uint4 *)g, (const uint4 *)u, n / 8);
    CKLAUNCH(c, "fz_swiglu_bwd_k");
    return 0;
}

#define MT_MAX_BLOCKS 0x7fffffffull /* gridDim.x limit */

int nmc_cuda_adamw_multi(const nmc_cuda_mt_t *dtab, int count, unsigned long long blocks,
                         float lr, float beta1, float beta2, float eps, int adam_l2, long step,
                         const double *clip_sumsq, float max_norm, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, step >= 1, "step %ld must be >= 1 (1-based)", step);
    REQUIRE(c, count >= 0 && (count == 0 || dtab), "null tensor table");
    REQUIRE(c, blocks <= MT_MAX_BLOCKS, "%llu blocks exceed the grid limit", blocks);
    REQUIRE(c, !clip_sumsq || max_norm > 0.f, "max_norm must be > 0 when clipping");
    if (!count || !blocks) return 0;
    adam_hp h;
    adam_hp_fill(&h, lr, beta1, beta2, eps, 0.0f, adam_l2, step); /* wd: per tensor */
    fz_adamw_multi_k<<<(unsigned)blocks, FZ_THREADS, 0, c->stream>>>(
        dtab, count, h, (double)lr, adam_l2, clip_sumsq, max_norm);
    CKLAUNCH(c, "fz_adamw_multi_k");
    return 0;
}

int nmc_cuda_sumsq_multi(double *out, const nmc_cuda_mt_t *dtab, int count,
                         unsigned long long blocks, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, out && count >= 0 && (count == 0 || dtab), "null pointer");
    REQUIRE(c, blocks <= MT_MAX_BLOCKS, "%llu blocks exceed the grid limit", blocks);
    if (!count || !blocks) return 0;
    double *partial = (double *)nmc_cuda_scratch(c, (size_t)blocks * sizeof(double));
    if (!partial) return -1;
    fz_sumsq_multi_k<<<(unsigned)blocks, FZ_THREADS, 0, c->stream>>>(partial, dtab, count);
    CKLAUNCH(c, "fz_sumsq_multi_k");
    fz_sum_partials_k<<<1, FZ_THREADS, 0, c->stream>>>(out, partial, blocks);
    CKLAUNCH(c, "fz_sum_partials_k");
    return 0;
}
