/* cpu_kernels.c — benchmark of the CPU training kernels (the C files in kernels/), not a test.
 *
 * Prints GFLOP/s of nmc_cpu_matmul on 512x512x512 for every micro-kernel ISA and thread
 * count 1 and all (best of 20 runs), next to this core's fp32 FMA peak measured in the
 * same run (12 independent FMA chains, best of 30), plus timings of attention,
 * fused lm_head+CE and RMSNorm at small-model sizes. Build and run: see bench/README.md.
 */
#include "nmc_cpu_internal.h"
#include "nmc_kernels.h"
#include "fma_peak.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define now bench_now

/* one core's fp32 FMA rate at this ISA's vector width */
static double peak_gflops(nmc_isa_t isa)
{
    return bench_core_peak_gflops(isa == NMC_ISA_AVX512 ? 16 : 8, 1000000);
}

static float *filled(size_t n, float s)
{
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = s * (float)((i * 2654435761u) % 1000) / 1000.0f - s / 2;
    return x;
}

static double time_matmul(int n, int reps)
{
    float *A = filled((size_t)n * n, 1), *B = filled((size_t)n * n, 1), *C = filled((size_t)n * n, 1);
    nmc_cpu_matmul(C, A, B, n, n, n, 0, 1, 1.0f, 0.0f); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        nmc_cpu_matmul(C, A, B, n, n, n, 0, 1, 1.0f, 0.0f);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    free(A), free(B), free(C);
    return 2.0 * n * n * n / best / 1e9;
}

static void bench_matmul(void)
{
    const char *names[4] = {"", "sse2 6x8", "avx2 6x16", "avx512 12x32"};
    int all = nmc_cpu_threads();
    for (int isa = NMC_ISA_AVX512; isa >= NMC_ISA_GENERIC; isa--) {
        if ((int)nmc_cpu_matmul_set_isa((nmc_isa_t)isa) != isa) continue;
        double peak = isa == NMC_ISA_GENERIC ? 0 : peak_gflops((nmc_isa_t)isa);
        nmc_cpu_set_threads(1);
        double g1 = time_matmul(512, 20);
        nmc_cpu_set_threads(all);
        double gn = time_matmul(512, 20);
        if (peak > 0)
            printf("matmul 512^3 %-13s 1 thread %6.1f GFLOP/s (%4.1f%% of measured 1-core FMA peak %.1f)"
                   "  %d threads %6.1f GFLOP/s\n", names[isa], g1, 100 * g1 / peak, peak, all, gn);
        else
            printf("matmul 512^3 %-13s 1 thread %6.1f GFLOP/s  %d threads %6.1f GFLOP/s\n", names[isa], g1,
                   all, gn);
    }
    nmc_cpu_matmul_set_isa(NMC_ISA_AUTO);
}

static void bench_attention(void)
{
    int B = 1, T = 1024, H = 8, KVH = 2, hd = 64;
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KVH * hd;
    float *q = filled(nq, 1), *k = filled(nk, 1), *v = filled(nk, 1), *o = filled(nq, 1);
    float *lse = filled((size_t)B * H * T, 1), *dq = filled(nq, 1), *dk = filled(nk, 1), *dv = filled(nk, 1);
    double flops = 4.0 * B * H * hd * T * (T + 1) / 2; /* QK^T and PV, causal half */
    double t0 = now();
    nmc_cpu_attention_fwd(o, lse, q, k, v, NULL, B, T, H, KVH, hd, 0.125f);
    double t1 = now();
    nmc_cpu_attention_bwd(dq, dk, dv, o, o, lse, q, k, v, NULL, B, T, H, KVH, hd, 0.125f);
    double t2 = now();
    printf("attention B=%d T=%d H=%d KVH=%d hd=%d: fwd %.1f ms (%.1f GFLOP/s), bwd %.1f ms (%.1f GFLOP/s)\n", B, T,
           H, KVH, hd, 1e3 * (t1 - t0), flops / (t1 - t0) / 1e9, 1e3 * (t2 - t1), 2.5 * flops / (t2 - t1) / 1e9);
    free(q), free(k), free(v), free(o), free(lse), free(dq), free(dk), free(dv);
}

static void bench_ce(void)
{
    int N = 512, D = 512, V = 32000;
    float *x = filled((size_t)N * D, 1), *W = filled((size_t)V * D, 0.1f), *dx = filled((size_t)N * D, 1);
    float *dW = filled((size_t)V * D, 1);
    int32_t *labels = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) labels[i] = (i * 7919) % V;
    double t0 = now();
    double loss = nmc_cpu_lmhead_ce(dx, dW, x, W, labels, N, D, V, 0.0f, 1.0f / N, 128);
    double dt = now() - t0;
    printf("lmhead_ce N=%d D=%d V=%d chunk=128: %.1f ms (%.1f GFLOP/s incl. softmax), mean loss %.3f\n", N, D, V,
           1e3 * dt, 6.0 * N * D * V / dt / 1e9, loss / N);
    free(x), free(W), free(dx), free(dW), free(labels);
}

static void bench_rmsnorm(void)
{
    int N = 4096, D = 2048;
    float *x = filled((size_t)N * D, 1), *y = filled((size_t)N * D, 1), *w = filled(D, 1), *rs = filled(N, 1);
    float *dw = filled(D, 1);
    double t0 = now();
    nmc_cpu_rmsnorm_fwd(y, rs, x, w, N, D, 1e-5f);
    double t1 = now();
    nmc_cpu_rmsnorm_bwd(y, dw, x, x, w, rs, N, D);
    double t2 = now();
    printf("rmsnorm N=%d D=%d: fwd %.2f ms (%.1f GB/s), bwd %.2f ms\n", N, D, 1e3 * (t1 - t0),
           8.0 * N * D / (t1 - t0) / 1e9, 1e3 * (t2 - t1));
    free(x), free(y), free(w), free(rs), free(dw);
}

int main(void)
{
    printf("threads available: %d\n", nmc_cpu_threads());
    bench_matmul();
    bench_attention();
    bench_ce();
    bench_rmsnorm();
    return 0;
}
