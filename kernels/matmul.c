/* matmul.c — fp32 GEMM (C = alpha op(A) op(B) + beta C) and the bias ops, CPU.
 *
 * Belongs here: nmc_cpu_matmul, nmc_cpu_bias_fwd/bwd and the matmul ISA switch.
 * Shapes: C [M,N] row-major; A [M,K] or [K,M] (transA); B [K,N] or [N,K] (transB).
 * Design (Goto/BLIS style): the K dimension is cut into KC blocks, op(B) into NC-column
 * blocks packed as KC x NR micro-panels, op(A) into MC-row blocks packed as MR x KC
 * micro-panels; an MR x NR register-tile micro-kernel does the FMAs. Micro-kernels
 * (AVX-512 12x32, plus 24x16 for N <= 16 and 8x32 for M <= 16, the rank-16 LoRA
 * products; AVX2+FMA 6x16; SSE2 6x8) are compiled with target attributes and picked at
 * run time, so the build needs no -march flag. AVX-512 packs with in-register 16x16
 * transposes and masked copies. A thread that spans several NC blocks packs its op(A)
 * rows once (when they fit A_ONCE_MAX) instead of once per block; packing buffers are
 * per-thread scratch kept between calls.
 * Threads split the output into column (or row) ranges of whole micro-tiles; every C
 * element is computed by one thread with the same K order, so results are bit-identical
 * for any thread count. Edge tiles run the same micro-kernel on a zero-padded copy.
 * beta == 0 never reads C (it may hold garbage/NaN), as in BLAS; alpha == 0 only scales C.
 * Test tolerance (tests/test_kernels.c): |c - ref| <= 2e-6 sqrt(K) + 1e-5 |ref| vs a double
 * reference, inputs in [-1, 1] (fp32 rounding grows ~ sqrt(K) eps); bias fwd exact, bias
 * bwd 1e-6 + 1e-6 rel.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* KC x NR B panel (32 KiB for AVX-512) stays in L1; the MC x KC A block (~144 KiB) in L2. */
#ifndef KC
#define KC 256
#endif
#ifndef MC
#define MC 144  /* a multiple of every MR */
#endif
#ifndef NC
#define NC 512  /* a multiple of every NR */
#endif
#define MAX_TILE (12 * 32) /* largest MR x NR of any tile shape (24x16 and 8x32 fit) */

typedef void (*ukr_fn)(int kc, const float *a, const float *b, float *c, size_t ldc,
                       float alpha, float beta);

/* ---- micro-kernels: c[MR x NR] = alpha * sum_p a[p][:] b[p][:]^T + beta * c ---------- */

/* AVX-512 tiles of MR rows x NV zmm columns. Every shape does the same per-element
 * arithmetic (one FMA chain over p in K order, then alpha * acc + beta * c), so which
 * shape computes a tile never changes its bits. 12x32 is the general tile; 24x16 serves
 * N <= 16 (LoRA's rank-16 outputs) and 8x32 serves M <= 16 without padding waste. */
#define UKR512(NAME, MR, NV)                                                                  \
    __attribute__((target("avx512f,fma"))) static void NAME(int kc, const float *a,           \
                                                           const float *b, float *c,          \
                                                           size_t ldc, float alpha, float beta) \
    {                                                                                         \
        __m512 acc[MR][NV];                                                                   \
        _Pragma("GCC unroll 24") for (int i = 0; i < MR; i++)                                 \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps(); \
        for (int p = 0; p < kc; p++, a += MR, b += 16 * NV) {                                 \
            __m512 bv[NV];                                                                    \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(b + 16 * v); \
            _Pragma("GCC unroll 24") for (int i = 0; i < MR; i++) {                           \
                __m512 ai = _mm512_set1_ps(a[i]);                                             \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                          \
                    acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);                        \
            }                                                                                 \
        }                                                                                     \
        __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                         \
        _Pragma("GCC unroll 24") for (int i = 0; i < MR; i++) {                               \
            float *ci = c + (size_t)i * ldc;                                                  \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) {                            \
                if (beta == 0.0f)                                                             \
                    _mm512_storeu_ps(ci + 16 * v, _mm512_mul_ps(va, acc[i][v]));              \
                else                                                                          \
                    _mm512_storeu_ps(ci + 16 * v,                                             \
                                     _mm512_fmadd_ps(va, acc[i][v],                           \
                                                     _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16 * v)))); \
            }                                                                                 \
        }                                                                                     \
    }
UKR512(ukr_avx512, 12, 2)
UKR512(ukr_avx512_24x16, 24, 1)
UKR512(ukr_avx512_8x32, 8, 2)

__attribute__((target("avx2,fma"))) static void ukr_avx2(int kc, const float *a, const float *b,
                                                         float *c, size_t ldc, float alpha,
                                                         float beta)
{
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++, a += 6, b += 16) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        float *ci = c + (size_t)i * ldc;
        if (beta == 0.0f) {
            _mm256_storeu_ps(ci, _mm256_mul_ps(va, acc[i][0]));
            _mm256_storeu_ps(ci + 8, _mm256_mul_ps(va, acc[i][1]));
        } else {
            _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, acc[i][0], _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
            _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, acc[i][1],
                                                     _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
        }
    }
}

static void ukr_sse2(int kc, const float *a, const float *b, float *c, size_t ldc, float alpha,
                     float beta)
{
    __m128 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) acc[i][0] = acc[i][1] = _mm_setzero_ps();
    for (int p = 0; p < kc; p++, a += 6, b += 8) {
        __m128 b0 = _mm_load_ps(b), b1 = _mm_load_ps(b + 4);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m128 ai = _mm_set1_ps(a[i]);
            acc[i][0] = _mm_add_ps(acc[i][0], _mm_mul_ps(ai, b0));
            acc[i][1] = _mm_add_ps(acc[i][1], _mm_mul_ps(ai, b1));
        }
    }
    __m128 va = _mm_set1_ps(alpha), vb = _mm_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int v = 0; v < 2; v++) {
            __m128 r = _mm_mul_ps(va, acc[i][v]);
            if (beta != 0.0f) r = _mm_add_ps(r, _mm_mul_ps(vb, _mm_loadu_ps(ci + 4 * v)));
            _mm_storeu_ps(ci + 4 * v, r);
        }
    }
}

/* ---- ISA selection ------------------------------------------------------------------- */

/* rows x kc of a row-major source (row stride ld) into one w-wide panel, p-major, rows
 * >= `rows` zero; and kc x cols (columns contiguous in the source) likewise. */
typedef void (*pack_fn)(float *dst, const float *src, size_t ld, int n, int kc, int w);
static void pack_rows(float *dst, const float *src, size_t ld, int rows, int kc, int w);
static void pack_cols(float *dst, const float *src, size_t ld, int cols, int kc, int w);
static void pack_rows_avx512(float *dst, const float *src, size_t ld, int rows, int kc, int w);
static void pack_cols_avx512(float *dst, const float *src, size_t ld, int cols, int kc, int w);

typedef struct {
    ukr_fn ukr;
    int mr, nr;
    pack_fn rows, cols; /* packing routines for this level */
} isa_desc_t;

static const isa_desc_t isa_table[4] = {
    {NULL, 0, 0, NULL, NULL},
    {ukr_sse2, 6, 8, pack_rows, pack_cols},
    {ukr_avx2, 6, 16, pack_rows, pack_cols},
    {ukr_avx512, 12, 32, pack_rows_avx512, pack_cols_avx512}};
/* AVX-512 tile shapes for skinny products (same bits as the 12x32 tile) */
static const isa_desc_t avx512_n16 = {ukr_avx512_24x16, 24, 16, pack_rows_avx512, pack_cols_avx512};
static const isa_desc_t avx512_m16 = {ukr_avx512_8x32, 8, 32, pack_rows_avx512, pack_cols_avx512};
static nmc_isa_t isa_now = NMC_ISA_AUTO;

static nmc_isa_t best_isa(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return NMC_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NMC_ISA_AVX2;
    return NMC_ISA_GENERIC;
}

nmc_isa_t nmc_cpu_matmul_set_isa(nmc_isa_t isa)
{
    nmc_isa_t best = best_isa();
    isa_now = (isa == NMC_ISA_AUTO || isa > best) ? best : isa;
    return isa_now;
}

nmc_isa_t nmc_cpu_isa(void)
{
    if (isa_now == NMC_ISA_AUTO) nmc_cpu_matmul_set_isa(NMC_ISA_AUTO);
    return isa_now;
}

/* The tile shape for an M x N product: at AVX-512, N <= 16 and M <= 16 get the shapes
 * that waste no lanes (rank-16 LoRA products); otherwise the level's general tile. */
static const isa_desc_t *pick_isa(int M, int N)
{
    nmc_isa_t isa = nmc_cpu_isa();
    if (isa == NMC_ISA_AVX512 && N <= 16 && M > N) return &avx512_n16;
    if (isa == NMC_ISA_AVX512 && M <= 16 && N > 16) return &avx512_m16;
    return &isa_table[isa];
}

/* ---- packing --------------------------------------------------------------------------- */

typedef struct {
    float *C;
    const float *A, *B;
    int M, N, K, transA, transB;
    float alpha, beta;
    const isa_desc_t *isa;
    int split_n; /* 1: threads own column ranges, 0: row ranges */
} mm_job_t;

/* Packing is a copy whose cost is paid once per block, but a slow copy is visible next
 * to the micro-kernel: each layout gets a loop whose inner index walks memory
 * contiguously (on the source when it is strided, else on both sides). */

/* Generic packing (loops the compiler can keep simple): a strided source is walked
 * along its contiguous rows; zero padding for the rows/columns past the edge. */
static void pack_rows(float *dst, const float *src, size_t ld, int rows, int kc, int w)
{
    for (int r = 0; r < rows; r++) {
        const float *s = src + (size_t)r * ld;
        float *d = dst + r;
        for (int p = 0; p < kc; p++) d[(size_t)p * w] = s[p];
    }
    for (int r = rows; r < w; r++)
        for (int p = 0; p < kc; p++) dst[(size_t)p * w + r] = 0.0f;
}

static void pack_cols(float *dst, const float *src, size_t ld, int cols, int kc, int w)
{
    for (int p = 0; p < kc; p++, dst += w) {
        const float *s = src + (size_t)p * ld;
        for (int c = 0; c < cols; c++) dst[c] = s[c];
        for (int c = cols; c < w; c++) dst[c] = 0.0f;
    }
}

/* AVX-512 packing (w <= 32, a multiple of 4). pack_rows is a transpose: 16 source rows x
 * 16 p are loaded as 16 zmm, transposed in registers (unpack, shuffle, 128-bit lane
 * shuffles: 64 shuffles per 256 floats) and stored as 16 panel rows; the scalar loop
 * cost ~1 cycle per float and was a quarter to a half of small-K or skinny GEMMs. */
__attribute__((target("avx512f"), always_inline)) static inline void
transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* u[4g + c]: 128-bit lane k holds column 4k + c of rows 4g..4g+3 */
    for (int h = 0; h < 16; h += 8)
        for (int c = 0; c < 4; c++) {
            t[h + c] = _mm512_shuffle_f32x4(u[h + c], u[h + 4 + c], 0x88);     /* cols c, c+8 */
            t[h + 4 + c] = _mm512_shuffle_f32x4(u[h + c], u[h + 4 + c], 0xDD); /* c+4, c+12 */
        }
    for (int c = 0; c < 8; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    }
}

__attribute__((target("avx512f"))) static void pack_rows_avx512(float *dst, const float *src,
                                                                 size_t ld, int rows, int kc,
                                                                 int w)
{
    int p = 0;
    for (; p + 16 <= kc; p += 16)
        for (int g = 0; g < w; g += 16) {
            int live = rows - g < 0 ? 0 : (rows - g > 16 ? 16 : rows - g);
            __mmask16 keep = (__mmask16)((1u << (w - g < 16 ? w - g : 16)) - 1u);
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = i < live ? _mm512_loadu_ps(src + (size_t)(g + i) * ld + p) : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) _mm512_mask_storeu_ps(dst + (size_t)(p + q) * w + g, keep, r[q]);
        }
    for (; p < kc; p++)
        for (int i = 0; i < w; i++) dst[(size_t)p * w + i] = i < rows ? src[(size_t)i * ld + p] : 0.0f;
}

__attribute__((target("avx512f"))) static void pack_cols_avx512(float *dst, const float *src,
                                                                 size_t ld, int cols, int kc,
                                                                 int w)
{
    for (int g = 0; g < w; g += 16) {
        int live = cols - g < 0 ? 0 : (cols - g > 16 ? 16 : cols - g);
        __mmask16 ld_m = (__mmask16)((1u << live) - 1u);
        __mmask16 st_m = (__mmask16)((1u << (w - g < 16 ? w - g : 16)) - 1u);
        const float *s = src + g;
        float *d = dst + g;
        for (int p = 0; p < kc; p++, s += ld, d += w)
            _mm512_mask_storeu_ps(d, st_m, _mm512_maskz_loadu_ps(ld_m, s));
    }
}

/* op(A)[i0+r, p0+p] for r < mc, p < kc into MR-row panels, p-major; rows >= mc are 0. */
static void pack_a(float *dst, const mm_job_t *j, int i0, int mc, int p0, int kc)
{
    int mr = j->isa->mr;
    for (int ir = 0; ir < mc; ir += mr, dst += (size_t)mr * kc) {
        int rows = mc - ir < mr ? mc - ir : mr;
        size_t i = (size_t)(i0 + ir), k = (size_t)p0;
        if (j->transA) j->isa->cols(dst, j->A + k * (size_t)j->M + i, (size_t)j->M, rows, kc, mr);
        else j->isa->rows(dst, j->A + i * (size_t)j->K + k, (size_t)j->K, rows, kc, mr);
    }
}

/* op(B)[p0+p, j0+c] for c < nc, p < kc into NR-column panels, p-major; cols >= nc are 0. */
static void pack_b(float *dst, const mm_job_t *j, int j0, int nc, int p0, int kc)
{
    int nr = j->isa->nr;
    for (int jr = 0; jr < nc; jr += nr, dst += (size_t)nr * kc) {
        int cols = nc - jr < nr ? nc - jr : nr;
        size_t jj = (size_t)(j0 + jr), k = (size_t)p0;
        if (j->transB) j->isa->rows(dst, j->B + jj * (size_t)j->K + k, (size_t)j->K, cols, kc, nr);
        else j->isa->cols(dst, j->B + k * (size_t)j->N + jj, (size_t)j->N, cols, kc, nr);
    }
}

/* One micro-tile: full tiles go straight to C, edge tiles through a padded copy so the
 * arithmetic is the same whatever the tile position. */
static void run_tile(const mm_job_t *j, int kc, const float *ap, const float *bp, int i, int jc,
                     int rows, int cols, float beta)
{
    const isa_desc_t *isa = j->isa;
    float *c = j->C + (size_t)i * (size_t)j->N + (size_t)jc;
    if (rows == isa->mr && cols == isa->nr) {
        isa->ukr(kc, ap, bp, c, (size_t)j->N, j->alpha, beta);
        return;
    }
    float tmp[MAX_TILE];
    memset(tmp, 0, sizeof tmp);
    if (beta != 0.0f)
        for (int r = 0; r < rows; r++) memcpy(tmp + r * isa->nr, c + (size_t)r * (size_t)j->N, (size_t)cols * sizeof(float));
    isa->ukr(kc, ap, bp, tmp, (size_t)isa->nr, j->alpha, beta);
    for (int r = 0; r < rows; r++) memcpy(c + (size_t)r * (size_t)j->N, tmp + r * isa->nr, (size_t)cols * sizeof(float));
}

/* C[i0:i1, j0:j1] with packing buffers ap and bp (KC x NC). When a_once, ap holds ALL
 * of op(A)[i0:i1, :] (packed during the first column block, block (pc, ic) at
 * pc * mpad + (ic - i0) * kc) and is reused by the later column blocks; else ap is one
 * MC x KC block, repacked for every (jc, pc, ic). */
static void gemm_block(const mm_job_t *j, int i0, int i1, int j0, int j1, float *ap, float *bp,
                       int a_once)
{
    int mr = j->isa->mr, nr = j->isa->nr;
    size_t mpad = (size_t)((i1 - i0 + mr - 1) / mr * mr);
    for (int jc = j0; jc < j1; jc += NC) {
        int nc = j1 - jc < NC ? j1 - jc : NC;
        for (int pc = 0; pc < j->K; pc += KC) {
            int kc = j->K - pc < KC ? j->K - pc : KC;
            float beta = pc == 0 ? j->beta : 1.0f;
            pack_b(bp, j, jc, nc, pc, kc);
            for (int ic = i0; ic < i1; ic += MC) {
                int mc = i1 - ic < MC ? i1 - ic : MC;
                float *a = a_once ? ap + (size_t)pc * mpad + (size_t)(ic - i0) * (size_t)kc : ap;
                if (!a_once || jc == j0) pack_a(a, j, ic, mc, pc, kc);
                for (int jr = 0; jr < nc; jr += nr) {
                    int cols = nc - jr < nr ? nc - jr : nr;
                    for (int ir = 0; ir < mc; ir += mr) {
                        int rows = mc - ir < mr ? mc - ir : mr;
                        run_tile(j, kc, a + (size_t)ir * (size_t)kc, bp + (size_t)jr * (size_t)kc,
                                 ic + ir, jc + jr, rows, cols, beta);
                    }
                }
            }
        }
    }
}

/* Fallback when the packing buffers cannot be allocated: slow, but never a crash. */
static void gemm_naive(const mm_job_t *j, int i0, int i1, int j0, int j1)
{
    for (int i = i0; i < i1; i++)
        for (int jj = j0; jj < j1; jj++) {
            double s = 0.0;
            for (int k = 0; k < j->K; k++) {
                float a = j->transA ? j->A[(size_t)k * j->M + i] : j->A[(size_t)i * j->K + k];
                float b = j->transB ? j->B[(size_t)jj * j->K + k] : j->B[(size_t)k * j->N + jj];
                s += (double)a * b;
            }
            float *c = j->C + (size_t)i * j->N + jj;
            *c = j->alpha * (float)s + (j->beta == 0.0f ? 0.0f : j->beta * *c);
        }
}

/* Packing scratch of the calling thread, kept between calls: page-faulting fresh
 * buffers on every call cost ~10% of a rank-16 LoRA product. Grows to the largest
 * request (at most A_ONCE_MAX + KC x NC floats, ~6 MiB); a failed growth returns NULL
 * and the caller falls back to gemm_naive. Freed never (reachable from the thread). */
static _Thread_local float *scratch;
static _Thread_local size_t scratch_n;

static float *scratch_get(size_t nfloats)
{
    if (nfloats <= scratch_n) return scratch;
    float *p = aligned_alloc(64, (nfloats * sizeof(float) + 63) / 64 * 64);
    if (!p) return NULL;
    free(scratch);
    scratch = p;
    scratch_n = nfloats;
    return p;
}

/* op(A) is packed once per thread (instead of once per NC column block) when the thread
 * spans several column blocks and its packed rows fit in this many floats (4 MiB: the
 * lm_head logits GEMM re-packed its 256 x 512 rows 31 times per call). */
#define A_ONCE_MAX ((size_t)1 << 20)

static void gemm_task(void *ctx, int id, int n)
{
    const mm_job_t *j = ctx;
    int unit = j->split_n ? j->isa->nr : j->isa->mr;
    int total = j->split_n ? j->N : j->M;
    size_t lo, hi;
    nmc_cpu_range((size_t)((total + unit - 1) / unit), id, n, &lo, &hi);
    int a = (int)lo * unit, b = (int)hi * unit < total ? (int)hi * unit : total;
    if (a >= b) return;
    int i0 = j->split_n ? 0 : a, i1 = j->split_n ? j->M : b;
    int j0 = j->split_n ? a : 0, j1 = j->split_n ? b : j->N;
    int mr = j->isa->mr, nr = j->isa->nr, kc = j->K < KC ? j->K : KC;
    size_t mpad = (size_t)((i1 - i0 + mr - 1) / mr * mr);
    size_t mc = mpad < MC ? mpad : MC;
    size_t nc = j1 - j0 < NC ? (size_t)((j1 - j0 + nr - 1) / nr * nr) : NC;
    int a_once = j1 - j0 > NC && mpad * (size_t)j->K <= A_ONCE_MAX;
    size_t na = a_once ? mpad * (size_t)j->K : mc * (size_t)kc, nb = (size_t)kc * nc;
    float *buf = scratch_get(na + nb);
    if (buf) gemm_block(j, i0, i1, j0, j1, buf + nb, buf, a_once);
    else gemm_naive(j, i0, i1, j0, j1);
}

static void scale_c(float *C, size_t n, float beta)
{
    for (size_t i = 0; i < n; i++) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
}

void nmc_cpu_matmul(float *C, const float *A, const float *B, int M, int N, int K, int transA,
                    int transB, float alpha, float beta)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(C, (size_t)M * (size_t)N, beta);
        return;
    }
    mm_job_t j = {C, A, B, M, N, K, transA != 0, transB != 0, alpha, beta, pick_isa(M, N), 0};
    int tiles_n = (N + j.isa->nr - 1) / j.isa->nr, tiles_m = (M + j.isa->mr - 1) / j.isa->mr;
    j.split_n = tiles_n * j.isa->nr >= tiles_m * j.isa->mr;
    /* ~2 MFLOP per thread at least: below that waking a thread costs more than it saves */
    size_t flops = 2 * (size_t)M * (size_t)N * (size_t)K;
    int want = nmc_cpu_want(flops, (size_t)1 << 21);
    int units = j.split_n ? tiles_n : tiles_m;
    nmc_cpu_parallel(gemm_task, &j, want < units ? want : units);
}

/* ---- bias -------------------------------------------------------------------------------- */

void nmc_cpu_bias_fwd(float *y, const float *b, int N, int C)
{
    for (size_t i = 0; i < (size_t)(N > 0 ? N : 0); i++)
        for (int c = 0; c < C; c++) y[i * (size_t)C + c] += b[c];
}

typedef struct {
    float *db;
    const float *dy;
    int N, C;
} bias_job_t;

/* Threads own column ranges; each column is summed in double in row order (rows walked
 * outermost for the cache), so the result does not depend on the thread count. */
static void bias_bwd_task(void *ctx, int id, int n)
{
    const bias_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->C, id, n, &lo, &hi);
    if (lo >= hi) return;
    double *acc = calloc(hi - lo, sizeof(double));
    if (acc) {
        for (int i = 0; i < j->N; i++)
            for (size_t c = lo; c < hi; c++) acc[c - lo] += j->dy[(size_t)i * j->C + c];
        for (size_t c = lo; c < hi; c++) j->db[c] += (float)acc[c - lo];
        free(acc);
        return;
    }
    for (size_t c = lo; c < hi; c++) {
        double s = 0.0;
        for (int i = 0; i < j->N; i++) s += j->dy[(size_t)i * j->C + c];
        j->db[c] += (float)s;
    }
}

void nmc_cpu_bias_bwd(float *db, const float *dy, int N, int C)
{
    if (N <= 0 || C <= 0) return;
    bias_job_t j = {db, dy, N, C};
    nmc_cpu_parallel(bias_bwd_task, &j, nmc_cpu_want((size_t)N * C, 1 << 16));
}
