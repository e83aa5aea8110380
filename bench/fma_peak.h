/* fma_peak.h — the CPU benchmarks' shared timer and fp32 FMA-peak probe (header-only,
 * bench programs only; not part of libnmc).
 *
 * bench_now(): monotonic seconds. bench_core_peak_gflops(width): one core's fp32 FMA rate
 * for vector width 16 (AVX-512) or 8 (AVX2+FMA), measured by 12 independent FMA chains
 * (enough to hide FMA latency on current cores), best of 30 runs of `iters` iterations —
 * the best run is the hardware's rate on a shared machine. bench_vector_width(): 16, 8, or
 * 0 when the CPU has neither.
 */
#ifndef NMC_BENCH_FMA_PEAK_H
#define NMC_BENCH_FMA_PEAK_H
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define BENCH_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
__attribute__((target("avx512f,fma"), noinline)) static float bench_peak512(long iters, float x)
{
    __m512 b = _mm512_set1_ps(x), c = _mm512_set1_ps(1e-4f);
#define DECL(i) __m512 a##i = _mm512_set1_ps(0.1f * (i + 1));
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, b, c);
#define SUM(i) s = _mm512_add_ps(s, a##i);
    BENCH_CHAINS(DECL)
    for (long t = 0; t < iters; t++) { BENCH_CHAINS(STEP) }
    __m512 s = _mm512_setzero_ps();
    BENCH_CHAINS(SUM)
    return _mm512_reduce_add_ps(s);
#undef DECL
#undef STEP
#undef SUM
}
__attribute__((target("avx2,fma"), noinline)) static float bench_peak256(long iters, float x)
{
    __m256 b = _mm256_set1_ps(x), c = _mm256_set1_ps(1e-4f);
#define DECL(i) __m256 a##i = _mm256_set1_ps(0.1f * (i + 1));
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, b, c);
#define SUM(i) s = _mm256_add_ps(s, a##i);
    BENCH_CHAINS(DECL)
    for (long t = 0; t < iters; t++) { BENCH_CHAINS(STEP) }
    __m256 s = _mm256_setzero_ps();
    BENCH_CHAINS(SUM)
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0];
#undef DECL
#undef STEP
#undef SUM
}

static inline int bench_vector_width(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 16;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 8 : 0;
}

static inline double bench_core_peak_gflops(int width, long iters)
{
    if (width != 16 && width != 8) return 0;
    double best = 1e30;
    for (int r = 0; r < 30; r++) {
        double t0 = bench_now();
        float x = width == 16 ? bench_peak512(iters, 0.999f) : bench_peak256(iters, 0.999f);
        double dt = bench_now() - t0;
        if (x == 12345.0f) puts(""); /* keep the result alive */
        best = dt < best ? dt : best;
    }
    return (double)iters * 12 * width * 2 / best / 1e9;
}
#endif
