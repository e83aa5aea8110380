/* micro.c — micro-benchmark of the CPU kernels that dominate bench_cpu_train's step
 * (fused lm_head+CE with and without dW, the model's GEMM shapes incl. LoRA's rank-16
 * ones, AdamW), best of R runs each: the tool for iterating on one kernel while the
 * machine is shared. Not a test. Build: see bench/README.md (cpu_train section).
 * Usage: micro [what] [reps]   what: all|ce|mm|lora|adamw
 */
#include "nmc_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Process CPU time (all threads) halved for 2 threads: on a shared machine wall time
 * also counts the time other jobs held our cores; NMC_MICRO_WALL=1 switches to wall. */
static double now(void)
{
    static int wall = -1;
    if (wall < 0) wall = getenv("NMC_MICRO_WALL") != NULL;
    struct timespec t;
    clock_gettime(wall ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID, &t);
    return ((double)t.tv_sec + 1e-9 * (double)t.tv_nsec) / (wall ? 1.0 : 2.0);
}

static float *rnd(size_t n, float s)
{
    float *p = malloc(n * sizeof(float));
    unsigned x = 12345u;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = s * ((float)(x >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    return p;
}

static void mm(int M, int N, int K, int ta, int tb, float beta, int reps)
{
    float *A = rnd((size_t)M * K, 1.0f), *B = rnd((size_t)K * N, 1.0f), *C = rnd((size_t)M * N, 1.0f);
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        double t = now();
        nmc_cpu_matmul(C, A, B, M, N, K, ta, tb, 1.0f, beta);
        t = now() - t;
        if (t < best) best = t;
    }
    printf("mm M=%5d N=%5d K=%5d ta=%d tb=%d beta=%g  %8.3f ms  %6.1f GFLOP/s\n", M, N, K, ta, tb,
           beta, 1e3 * best, 2.0 * M * N * K / best * 1e-9);
    free(A), free(B), free(C);
}

static void ce(int full, int reps)
{
    int N = 1024, D = 512, V = 32000;
    float *x = rnd((size_t)N * D, 1.0f), *W = rnd((size_t)V * D, 0.05f);
    float *dx = malloc(sizeof(float) * N * D), *dW = calloc((size_t)V * D, sizeof(float));
    int32_t *lab = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) lab[i] = (i * 7919) % V;
    double best = 1e9, loss = 0;
    for (int r = 0; r < reps; r++) {
        double t = now();
        loss = nmc_cpu_lmhead_ce(dx, full ? dW : NULL, x, W, lab, N, D, V, 0.0f, 1.0f / N, 256);
        t = now() - t;
        if (t < best) best = t;
    }
    printf("lmhead_ce %s N=%d D=%d V=%d  %8.3f ms  loss %.6f\n", full ? "dx+dW" : "dx   ", N, D, V,
           1e3 * best, loss / N);
    free(x), free(W), free(dx), free(dW), free(lab);
}

static void adam(int reps)
{
    size_t n = 40000000;
    float *p = rnd(n, 1), *g = rnd(n, 1), *m = calloc(n, 4), *v = calloc(n, 4);
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        double t = now();
        nmc_cpu_adamw(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, r + 1);
        t = now() - t;
        if (t < best) best = t;
    }
    printf("adamw n=%zu  %8.3f ms  %.1f GB/s\n", n, 1e3 * best, 28.0 * n / best * 1e-9);
    free(p), free(g), free(m), free(v);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    int all = !strcmp(what, "all");
    nmc_cpu_set_threads(2);
    if (all || !strcmp(what, "ce")) ce(0, reps), ce(1, reps);
    if (all || !strcmp(what, "mm")) {
        mm(1024, 1408, 512, 0, 1, 0, reps);
        mm(1408, 512, 1024, 1, 0, 1, reps);
        mm(1024, 512, 1408, 0, 0, 0, reps);
        mm(1024, 32000, 512, 0, 1, 0, reps / 2 + 1);
        mm(256, 32000, 512, 0, 1, 0, reps);
        mm(256, 512, 32000, 0, 0, 0, reps);
        mm(32000, 512, 256, 1, 0, 1, reps);
    }
    if (all || !strcmp(what, "lora")) {
        mm(1024, 16, 512, 0, 1, 0, reps * 4);
        mm(1024, 16, 1408, 0, 0, 0, reps * 4);
        mm(1024, 512, 16, 0, 0, 1, reps * 4);
        mm(1024, 1408, 16, 0, 1, 1, reps * 4);
        mm(16, 512, 1024, 1, 0, 1, reps * 4);
        mm(1408, 16, 1024, 1, 0, 1, reps * 4);
        mm(512, 16, 1024, 1, 0, 1, reps * 4);
        mm(1024, 512, 16, 0, 1, 1, reps * 4);
    }
    if (all || !strcmp(what, "adamw")) adam(reps);
    return 0;
}
