/* dev_profile.h — per-op time of a training step, by wrapping a device table's function
 * pointers (runtime/dev.h). Benchmarks only (bench/cpu_train/bench_cpu_train.c --profile 1,
 * bench/gpu/train_bench.c NMC_BENCH_PROFILE=1); include it in one file.
 *
 *   prof_install(dev, sync)   wrap dev's compute ops; sync = 1 for an asynchronous device:
 *                             dev->sync before and after every op, so each op's time is its
 *                             own (the step is then serialized: slower than the benchmark)
 *   prof_reset()              forget what was timed so far (call after the warm-up)
 *   prof_print(steps)         table to stderr, per step: ms, share, calls, GFLOP/s (matmuls
 *                             by shape), sorted by time
 * Ops left unwrapped (uploads, downloads, copies between host and device) are not timed;
 * the table's total is then below the step time.
 */
#ifndef NMC_BENCH_DEV_PROFILE_H
#define NMC_BENCH_DEV_PROFILE_H
#include "dev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PROF_MAX_KEYS = 256 };
typedef struct {
    char key[96];
    double sec, flop;
    long calls;
} prof_row_t;
static prof_row_t prof_rows[PROF_MAX_KEYS];
static int prof_n, prof_sync;
static nmc_dev_t prof_real; /* the unwrapped table */

static double prof_now(nmc_dev_t *dev)
{
    if (prof_sync) prof_real.sync(dev);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void prof_add(const char *key, double sec, double flop)
{
    int i = 0;
    while (i < prof_n && strcmp(prof_rows[i].key, key)) i++;
    if (i == prof_n) {
        if (prof_n == PROF_MAX_KEYS) return;
        snprintf(prof_rows[prof_n++].key, sizeof prof_rows[0].key, "%s", key);
    }
    prof_rows[i].sec += sec;
    prof_rows[i].flop += flop;
    prof_rows[i].calls++;
}

static int prof_matmul(nmc_dev_t *dev, void *C, const void *A, const void *B, int M, int N, int K,
                       int ta, int tb, float alpha, float beta)
{
    char k[96];
    snprintf(k, sizeof k, "matmul M=%d N=%d K=%d ta=%d tb=%d beta=%g", M, N, K, ta, tb, beta);
    double t0 = prof_now(dev);
    int rc = prof_real.matmul(dev, C, A, B, M, N, K, ta, tb, alpha, beta);
    prof_add(k, prof_now(dev) - t0, 2.0 * M * N * K);
    return rc;
}
static int prof_matmul_f32c(nmc_dev_t *dev, float *C, const void *A, const void *B, int M, int N,
                            int K, int ta, int tb, float alpha, float beta)
{
    char k[96];
    snprintf(k, sizeof k, "matmul_f32c M=%d N=%d K=%d ta=%d tb=%d beta=%g", M, N, K, ta, tb, beta);
    double t0 = prof_now(dev);
    int rc = prof_real.matmul_f32c(dev, C, A, B, M, N, K, ta, tb, alpha, beta);
    prof_add(k, prof_now(dev) - t0, 2.0 * M * N * K);
    return rc;
}
#define PROF_WRAP(name, params, args)                                                       \
    static int prof_##name params                                                            \
    {                                                                                        \
        double t0 = prof_now(dev);                                                           \
        int rc = prof_real.name args;                                                        \
        prof_add(#name, prof_now(dev) - t0, 0);                                              \
        return rc;                                                                           \
    }
PROF_WRAP(copy, (nmc_dev_t *dev, void *dst, const void *src, size_t b), (dev, dst, src, b))
PROF_WRAP(zero, (nmc_dev_t *dev, void *dst, size_t b), (dev, dst, b))
PROF_WRAP(f32_to_act, (nmc_dev_t *dev, void *dst, const float *src, size_t n), (dev, dst, src, n))
PROF_WRAP(add_act, (nmc_dev_t *dev, void *y, const void *x, size_t n, float a), (dev, y, x, n, a))
PROF_WRAP(bias_fwd, (nmc_dev_t *dev, void *y, const void *b, int N, int C), (dev, y, b, N, C))
PROF_WRAP(bias_bwd, (nmc_dev_t *dev, float *db, const void *dy, int N, int C), (dev, db, dy, N, C))
PROF_WRAP(rmsnorm_fwd, (nmc_dev_t *dev, void *y, float *r, const void *x, const void *w, int N, int D, float e),
          (dev, y, r, x, w, N, D, e))
PROF_WRAP(rmsnorm_bwd, (nmc_dev_t *dev, void *dx, float *dw, const void *dy, const void *x, const void *w,
                        const float *r, int N, int D), (dev, dx, dw, dy, x, w, r, N, D))
PROF_WRAP(rope_fwd, (nmc_dev_t *dev, void *x, const int32_t *p, const float *f, int N, int nh, int hd),
          (dev, x, p, f, N, nh, hd))
PROF_WRAP(rope_bwd, (nmc_dev_t *dev, void *x, const int32_t *p, const float *f, int N, int nh, int hd),
          (dev, x, p, f, N, nh, hd))
PROF_WRAP(attention_fwd, (nmc_dev_t *dev, void *o, float *l, const void *q, const void *k, const void *v,
                          const int32_t *ds, int B, int T, int H, int KVH, int hd, float s),
          (dev, o, l, q, k, v, ds, B, T, H, KVH, hd, s))
PROF_WRAP(attention_bwd, (nmc_dev_t *dev, void *dq, void *dk, void *dv, const void *dout, const void *o,
                          const float *l, const void *q, const void *k, const void *v, const int32_t *ds,
                          int B, int T, int H, int KVH, int hd, float s),
          (dev, dq, dk, dv, dout, o, l, q, k, v, ds, B, T, H, KVH, hd, s))
PROF_WRAP(swiglu_fwd, (nmc_dev_t *dev, void *h, const void *g, const void *u, size_t n), (dev, h, g, u, n))
PROF_WRAP(swiglu_bwd, (nmc_dev_t *dev, void *dg, void *du, const void *dh, const void *g, const void *u,
                       size_t n), (dev, dg, du, dh, g, u, n))
PROF_WRAP(lmhead_ce, (nmc_dev_t *dev, double *ls, void *dx, float *dW, const void *x, const void *W,
                      const int32_t *lab, int N, int D, int V, float e, float gs, int c),
          (dev, ls, dx, dW, x, W, lab, N, D, V, e, gs, c))
PROF_WRAP(embedding_fwd, (nmc_dev_t *dev, void *o, const int32_t *ids, const void *t, int N, int D),
          (dev, o, ids, t, N, D))
PROF_WRAP(embedding_bwd, (nmc_dev_t *dev, float *dt, const void *dout, const int32_t *ids, int N, int D),
          (dev, dt, dout, ids, N, D))
PROF_WRAP(dropout_apply, (nmc_dev_t *dev, void *y, const void *x, size_t n, float p, uint64_t seed,
                          uint64_t off), (dev, y, x, n, p, seed, off))
PROF_WRAP(add_uniform_noise, (nmc_dev_t *dev, void *x, size_t n, float mag, uint64_t seed, uint64_t off),
          (dev, x, n, mag, seed, off))
PROF_WRAP(adamw, (nmc_dev_t *dev, float *p, void *pa, const float *g, float *m, float *v, size_t n, float lr,
                  float b1, float b2, float eps, float wd, int l2, long step),
          (dev, p, pa, g, m, v, n, lr, b1, b2, eps, wd, l2, step))
PROF_WRAP(sumsq, (nmc_dev_t *dev, double *out, const float *x, size_t n), (dev, out, x, n))
PROF_WRAP(scale, (nmc_dev_t *dev, float *x, size_t n, float s), (dev, x, n, s))
PROF_WRAP(axpy, (nmc_dev_t *dev, float *y, const float *x, size_t n, float a), (dev, y, x, n, a))
PROF_WRAP(adamw_many, (nmc_dev_t *dev, const nmc_dev_adam_t *t, size_t count, float lr, float b1, float b2,
                       float eps, int l2, long step, const double *clip, float max_norm),
          (dev, t, count, lr, b1, b2, eps, l2, step, clip, max_norm))
PROF_WRAP(sumsq_many, (nmc_dev_t *dev, double *out, const float *const *x, const size_t *n, size_t count),
          (dev, out, x, n, count))

static void prof_install(nmc_dev_t *dev, int sync)
{
    prof_real = *dev;
    prof_sync = sync;
#define PROF_SET(name) if (dev->name) dev->name = prof_##name
    PROF_SET(matmul);
    PROF_SET(matmul_f32c);
    PROF_SET(copy);
    PROF_SET(zero);
    PROF_SET(f32_to_act);
    PROF_SET(add_act);
    PROF_SET(bias_fwd);
    PROF_SET(bias_bwd);
    PROF_SET(rmsnorm_fwd);
    PROF_SET(rmsnorm_bwd);
    PROF_SET(rope_fwd);
    PROF_SET(rope_bwd);
    PROF_SET(attention_fwd);
    PROF_SET(attention_bwd);
    PROF_SET(swiglu_fwd);
    PROF_SET(swiglu_bwd);
    PROF_SET(lmhead_ce);
    PROF_SET(embedding_fwd);
    PROF_SET(embedding_bwd);
    PROF_SET(dropout_apply);
    PROF_SET(add_uniform_noise);
    PROF_SET(adamw);
    PROF_SET(sumsq);
    PROF_SET(scale);
    PROF_SET(axpy);
    PROF_SET(adamw_many);
    PROF_SET(sumsq_many);
#undef PROF_SET
}

static void prof_reset(void)
{
    prof_n = 0;
    memset(prof_rows, 0, sizeof prof_rows);
}

static int prof_by_time(const void *a, const void *b)
{
    double x = ((const prof_row_t *)a)->sec, y = ((const prof_row_t *)b)->sec;
    return x < y ? 1 : (x > y ? -1 : 0);
}

static void prof_print(int steps)
{
    qsort(prof_rows, (size_t)prof_n, sizeof prof_rows[0], prof_by_time);
    double total = 0;
    for (int i = 0; i < prof_n; i++) total += prof_rows[i].sec;
    fprintf(stderr, "profile per step (ops total %.1f ms%s):\n", 1e3 * total / steps,
            prof_sync ? ", each op synchronized" : "");
    for (int i = 0; i < prof_n; i++) {
        prof_row_t *r = &prof_rows[i];
        double gf = r->flop > 0 ? r->flop / r->sec / 1e9 : 0.0;
        fprintf(stderr, "  %8.2f ms %5.1f%% %5ld calls %9.1f %s  %s\n", 1e3 * r->sec / steps,
                100 * r->sec / total, r->calls / steps, gf > 1e4 ? gf / 1e3 : gf,
                gf > 1e4 ? "TFLOP/s" : "GFLOP/s", r->key);
    }
}
#endif
