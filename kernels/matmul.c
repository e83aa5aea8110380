/* matmul.c — fp32 GEMM (C = alpha op(A) op(B) + beta C) and the bias ops, CPU.
 *
 * Belongs here: nmc_cpu_matmul, nmc_cpu_bias_fwd/bwd and the matmul ISA switch.
 * Shapes: C [M,N] row-major; A [M,K] or [K,M] (transA); B [K,N] or [N,K] (transB).
 * Design (Goto/BLIS style): the K dimension is cut into KC blocks, op(B) into NC-column
 * blocks packed as KC x NR micro-panels, op(A) into MC-row blocks packed as MR x KC
 * micro-panels; an MR x NR register-tile micro-kernel does the FMAs. Three micro-kernels
 * (AVX-512 12x32, AVX2+FMA 6x16, SSE2 6x8) are compiled with target attributes and picked
 * at run time, so the build needs no -march flag.
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
#define MAX_MR 12
#define MAX_NR 32

typedef void (*ukr_fn)(int kc, const float *a, const float *b, float *c, size_t ldc,
                       float alpha, float beta);

/* ---- micro-kernels: c[MR x NR] = alpha * sum_p a[p][:] b[p][:]^T + beta * c ---------- */

__attribute__((target("avx512f,fma"))) static void ukr_avx512(int kc, const float *a,
                                                               const float *b, float *c,
                                                               size_t ldc, float alpha,
                                                               float beta)
{
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++, a += 12, b += 32) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
        float *ci = c + (size_t)i * ldc;
        if (beta == 0.0f) {
            _mm512_storeu_ps(ci, _mm512_mul_ps(va, acc[i][0]));
            _mm512_storeu_ps(ci + 16, _mm512_mul_ps(va, acc[i][1]));
        } else {
            _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, acc[i][0], _mm512_mul_ps(vb, _mm512_loadu_ps(ci))));
            _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(va, acc[i][1],
                                                      _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16))));
        }
    }
}

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

typedef struct {
    ukr_fn ukr;
    int mr, nr;
} isa_desc_t;

static const isa_desc_t isa_table[4] = {
    {NULL, 0, 0}, {ukr_sse2, 6, 8}, {ukr_avx2, 6, 16}, {ukr_avx512, 12, 32}};
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

static const isa_desc_t *current_isa(void)
{
    return &isa_table[nmc_cpu_isa()];
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

/* rows x kc of a row-major source (row stride ld) into one MR-wide panel, p-major. */
static void pack_rows(float *dst, const float *src, size_t ld, int rows, int kc, int mr)
{
    for (int r = 0; r < rows; r++) {
        const float *s = src + (size_t)r * ld;
        float *d = dst + r;
        for (int p = 0; p < kc; p++) d[(size_t)p * mr] = s[p];
    }
    for (int r = rows; r < mr; r++)
        for (int p = 0; p < kc; p++) dst[(size_t)p * mr + r] = 0.0f;
}

/* kc x cols of a row-major source (row stride ld, the panel's columns contiguous) into
 * one NR-wide (or MR-wide) panel, p-major. */
static void pack_cols(float *dst, const float *src, size_t ld, int cols, int kc, int w)
{
    for (int p = 0; p < kc; p++, dst += w) {
        const float *s = src + (size_t)p * ld;
        for (int c = 0; c < cols; c++) dst[c] = s[c];
        for (int c = cols; c < w; c++) dst[c] = 0.0f;
    }
}

/* op(A)[i0+r, p0+p] for r < mc, p < kc into MR-row panels, p-major; rows >= mc are 0. */
static void pack_a(float *dst, const mm_job_t *j, int i0, int mc, int p0, int kc)
{
    int mr = j->isa->mr;
    for (int ir = 0; ir < mc; ir += mr, dst += (size_t)mr * kc) {
        int rows = mc - ir < mr ? mc - ir : mr;
        size_t i = (size_t)(i0 + ir), k = (size_t)p0;
        if (j->transA) pack_cols(dst, j->A + k * (size_t)j->M + i, (size_t)j->M, rows, kc, mr);
        else pack_rows(dst, j->A + i * (size_t)j->K + k, (size_t)j->K, rows, kc, mr);
    }
}

/* op(B)[p0+p, j0+c] for c < nc, p < kc into NR-column panels, p-major; cols >= nc are 0. */
static void pack_b(float *dst, const mm_job_t *j, int j0, int nc, int p0, int kc)
{
    int nr = j->isa->nr;
    for (int jr = 0; jr < nc; jr += nr, dst += (size_t)nr * kc) {
        int cols = nc - jr < nr ? nc - jr : nr;
        size_t jj = (size_t)(j0 + jr), k = (size_t)p0;
        if (j->transB) pack_rows(dst, j->B + jj * (size_t)j->K + k, (size_t)j->K, cols, kc, nr);
        else pack_cols(dst, j->B + k * (size_t)j->N + jj, (size_t)j->N, cols, kc, nr);
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
    float tmp[MAX_MR * MAX_NR];
    memset(tmp, 0, sizeof tmp);
    if (beta != 0.0f)
        for (int r = 0; r < rows; r++) memcpy(tmp + r * isa->nr, c + (size_t)r * (size_t)j->N, (size_t)cols * sizeof(float));
    isa->ukr(kc, ap, bp, tmp, (size_t)isa->nr, j->alpha, beta);
    for (int r = 0; r < rows; r++) memcpy(c + (size_t)r * (size_t)j->N, tmp + r * isa->nr, (size_t)cols * sizeof(float));
}

/* C[i0:i1, j0:j1] with packing buffers ap (MC x KC) and bp (KC x NC). */
static void gemm_block(const mm_job_t *j, int i0, int i1, int j0, int j1, float *ap, float *bp)
{
    int mr = j->isa->mr, nr = j->isa->nr;
    for (int jc = j0; jc < j1; jc += NC) {
        int nc = j1 - jc < NC ? j1 - jc : NC;
        for (int pc = 0; pc < j->K; pc += KC) {
            int kc = j->K - pc < KC ? j->K - pc : KC;
            float beta = pc == 0 ? j->beta : 1.0f;
            pack_b(bp, j, jc, nc, pc, kc);
            for (int ic = i0; ic < i1; ic += MC) {
                int mc = i1 - ic < MC ? i1 - ic : MC;
                pack_a(ap, j, ic, mc, pc, kc);
                for (int jr = 0; jr < nc; jr += nr) {
                    int cols = nc - jr < nr ? nc - jr : nr;
                    for (int ir = 0; ir < mc; ir += mr) {
                        int rows = mc - ir < mr ? mc - ir : mr;
                        run_tile(j, kc, ap + (size_t)ir * (size_t)kc, bp + (size_t)jr * (size_t)kc,
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

/* 64-byte aligned floats (C11 wants the size to be a multiple of the alignment). */
static float *alloc64(size_t nfloats)
{
    return aligned_alloc(64, (nfloats * sizeof(float) + 63) / 64 * 64);
}

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
    /* buffers sized to this job (small GEMMs stay off mmap-sized allocations) */
    int mr = j->isa->mr, nr = j->isa->nr, kc = j->K < KC ? j->K : KC;
    int mc = i1 - i0 < MC ? (i1 - i0 + mr - 1) / mr * mr : MC;
    int nc = j1 - j0 < NC ? (j1 - j0 + nr - 1) / nr * nr : NC;
    float *ap = alloc64((size_t)mc * (size_t)kc), *bp = alloc64((size_t)kc * (size_t)nc);
    if (ap && bp) gemm_block(j, i0, i1, j0, j1, ap, bp);
    else gemm_naive(j, i0, i1, j0, j1);
    free(ap);
    free(bp);
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
    mm_job_t j = {C, A, B, M, N, K, transA != 0, transB != 0, alpha, beta, current_isa(), 0};
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
