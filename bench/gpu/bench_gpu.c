/* bench_gpu.c — times the nmc CUDA kernels and prints one JSON object per line.
 *
 * Driven by bench/gpu/bench_vs_torch.py, which runs the same shapes through PyTorch on the
 * same GPU and prints the ratios; runnable alone too. Inputs are seeded random bf16 (the
 * timings do not depend on values except softmax sparsity, which we keep realistic).
 * Sections (argv[1], default all): attention | lmhead | matmul | attention_fa2.
 *   attention: causal GQA fwd and fwd+bwd, B 1..4, T 2048, H 16 / KVH 8, hd 64 and 128
 *   attention_fa2: the same shapes through the FlashAttention-2 kernels; runs LAST in "all"
 *              and never exits on a failure (prints {"bench":"attention_fa2","error":...}),
 *              so a fault there cannot hide the lines above
 *   lmhead:    fused lm_head + CE fwd+bwd, with the op's scratch (its only temporary)
 *   matmul:    the linear layers of a ~1B Llama (D 2048, F 8192, H 32, KVH 8, hd 64) at
 *              8192 tokens, forward (x W^T), dx (dy W) and dW (dy^T x, fp32 accumulate)
 * Timing: warm-up call, then `iters` calls between two stream syncs (wall clock).
 */
#include "nmc_cuda.h"
#include "nmc_cuda_fa2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static nmc_cuda_ctx_t *g_ctx;

static void die(const char *what)
{
    fprintf(stderr, "bench_gpu: %s failed: %s\n", what, nmc_cuda_last_error(g_ctx));
    exit(1);
}
#define CU(call) do { if ((call) != 0) die(#call); } while (0)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

#define TIMED(ms_out, iters, stmt)                                                          \
    do {                                                                                    \
        stmt;                                                                               \
        CU(nmc_cuda_sync(g_ctx));                                                           \
        double t0_ = now_ms();                                                              \
        for (int it_ = 0; it_ < (iters); it_++) stmt;                                       \
        CU(nmc_cuda_sync(g_ctx));                                                           \
        (ms_out) = (now_ms() - t0_) / (iters);                                              \
    } while (0)

/* device buffer of n bf16 values uniform in [-a, a] (seeded) */
static nmc_bf16 *rand_dev(size_t n, float a, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    nmc_bf16 *t = malloc(n * sizeof *t);
    if (!x || !t) { fprintf(stderr, "bench_gpu: out of host memory\n"); exit(1); }
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = a * (2.0f * (float)((s >> 40) * (1.0 / 16777216.0)) - 1.0f);
    }
    nmc_f32_to_bf16(t, x, n);
    nmc_bf16 *d = nmc_cuda_malloc(g_ctx, n * 2);
    if (!d) die("nmc_cuda_malloc");
    CU(nmc_cuda_memcpy_h2d(g_ctx, d, t, n * 2));
    free(x);
    free(t);
    return d;
}
static void *zeros_dev(size_t bytes)
{
    void *d = nmc_cuda_malloc(g_ctx, bytes);
    if (!d) die("nmc_cuda_malloc");
    CU(nmc_cuda_memset0(g_ctx, d, bytes));
    return d;
}

static void bench_attention(void)
{
    int hds[2] = {64, 128};
    for (int hi = 0; hi < 2; hi++)
        for (int B = 1; B <= 4; B *= 2) {
            int T = 2048, H = 16, KVH = 8, hd = hds[hi];
            size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KVH * hd;
            nmc_bf16 *q = rand_dev(nq, 1.0f, 1), *k = rand_dev(nk, 1.0f, 2), *v = rand_dev(nk, 1.0f, 3);
            nmc_bf16 *dout = rand_dev(nq, 1.0f, 4);
            nmc_bf16 *out = zeros_dev(nq * 2), *dq = zeros_dev(nq * 2), *dk = zeros_dev(nk * 2),
                     *dv = zeros_dev(nk * 2);
            float *lse = zeros_dev((size_t)B * H * T * 4);
            float sc = 1.0f / sqrtf((float)hd);
            double fwd, fb;
            TIMED(fwd, 10, CU(nmc_cuda_attention_fwd(out, lse, q, k, v, NULL, B, T, H, KVH, hd, sc, g_ctx)));
            TIMED(fb, 10, {
                CU(nmc_cuda_attention_fwd(out, lse, q, k, v, NULL, B, T, H, KVH, hd, sc, g_ctx));
                CU(nmc_cuda_attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, NULL, B, T, H, KVH,
                                          hd, sc, g_ctx));
            });
            double flops = 2.0 * B * H * (double)T * T * hd; /* causal fwd: 2 matmuls, half */
            printf("{\"bench\":\"attention\",\"B\":%d,\"T\":%d,\"H\":%d,\"KVH\":%d,\"hd\":%d,"
                   "\"fwd_ms\":%.4f,\"fwdbwd_ms\":%.4f,\"fwd_tflops\":%.2f,\"fwdbwd_tflops\":%.2f}\n",
                   B, T, H, KVH, hd, fwd, fb, flops / fwd / 1e9, 3.5 * flops / fb / 1e9);
            fflush(stdout);
            void *bufs[9] = {q, k, v, dout, out, dq, dk, dv, lse};
            for (int i = 0; i < 9; i++) nmc_cuda_free(g_ctx, bufs[i]);
        }
}

/* the fa2 calls under test; which = 0: forward, 1: forward + backward */
typedef struct {
    nmc_bf16 *q, *k, *v, *dout, *out, *dq, *dk, *dv;
    float *lse;
    int B, T, H, KVH, hd;
    float sc;
} fa2_args_t;

static int fa2_call(const fa2_args_t *a, int which)
{
    int rc = nmc_cuda_attention_fa2_fwd(a->out, a->lse, a->q, a->k, a->v, NULL, a->B, a->T, a->H,
                                        a->KVH, a->hd, a->sc, g_ctx);
    if (rc || !which) return rc;
    return nmc_cuda_attention_fa2_bwd(a->dq, a->dk, a->dv, a->dout, a->out, a->lse, a->q, a->k,
                                      a->v, NULL, a->B, a->T, a->H, a->KVH, a->hd, a->sc, g_ctx);
}

/* as TIMED, but a failed call or sync returns nonzero instead of exiting */
static int timed_soft(double *ms, int iters, const fa2_args_t *a, int which)
{
    int rc = fa2_call(a, which) || nmc_cuda_sync(g_ctx);
    double t0 = now_ms();
    for (int it = 0; it < iters && !rc; it++) rc = fa2_call(a, which);
    if (!rc) rc = nmc_cuda_sync(g_ctx);
    *ms = (now_ms() - t0) / iters;
    return rc;
}

/* one shape; nonzero (nothing printed) when a call failed */
static int bench_fa2_shape(int B, int hd)
{
    fa2_args_t a = {0};
    a.B = B, a.T = 2048, a.H = 16, a.KVH = 8, a.hd = hd, a.sc = 1.0f / sqrtf((float)hd);
    size_t nq = (size_t)B * a.T * a.H * hd, nk = (size_t)B * a.T * a.KVH * hd;
    a.q = rand_dev(nq, 1.0f, 1), a.k = rand_dev(nk, 1.0f, 2), a.v = rand_dev(nk, 1.0f, 3);
    a.dout = rand_dev(nq, 1.0f, 4);
    a.out = zeros_dev(nq * 2), a.dq = zeros_dev(nq * 2), a.dk = zeros_dev(nk * 2);
    a.dv = zeros_dev(nk * 2);
    a.lse = zeros_dev((size_t)B * a.H * a.T * 4);
    double fwd = 0, fb = 0;
    int rc = timed_soft(&fwd, 10, &a, 0) || timed_soft(&fb, 10, &a, 1);
    if (!rc) {
        double flops = 2.0 * B * a.H * (double)a.T * a.T * hd; /* as bench_attention */
        printf("{\"bench\":\"attention_fa2\",\"B\":%d,\"T\":%d,\"H\":%d,\"KVH\":%d,\"hd\":%d,"
               "\"fwd_ms\":%.4f,\"fwdbwd_ms\":%.4f,\"fwd_tflops\":%.2f,\"fwdbwd_tflops\":%.2f}\n",
               B, a.T, a.H, a.KVH, hd, fwd, fb, flops / fwd / 1e9, 3.5 * flops / fb / 1e9);
        fflush(stdout);
    }
    void *bufs[9] = {a.q, a.k, a.v, a.dout, a.out, a.dq, a.dk, a.dv, a.lse};
    for (int i = 0; i < 9; i++) nmc_cuda_free(g_ctx, bufs[i]);
    return rc;
}

/* the attention shapes through the fa2 kernels; stops at the first failure */
static void bench_attention_fa2(void)
{
    int hds[2] = {64, 128};
    for (int hi = 0; hi < 2; hi++)
        for (int B = 1; B <= 4; B *= 2)
            if (bench_fa2_shape(B, hds[hi])) {
                const char *e = nmc_cuda_last_error(g_ctx);
                printf("{\"bench\":\"attention_fa2\",\"B\":%d,\"hd\":%d,\"error\":\"", B, hds[hi]);
                for (; *e; e++) /* JSON string: drop quotes, backslashes and control bytes */
                    if (*e != '"' && *e != '\\' && (unsigned char)*e >= 0x20) putchar(*e);
                printf("\"}\n");
                fflush(stdout);
                return;
            }
}

static void bench_lmhead(void)
{
    int Vs[2] = {32000, 128256};
    for (int vi = 0; vi < 2; vi++) {
        int N = 8192, D = 2048, V = Vs[vi], chunk = 1024;
        nmc_bf16 *x = rand_dev((size_t)N * D, 1.0f, 5), *W = rand_dev((size_t)V * D, 0.05f, 6);
        nmc_bf16 *dx = zeros_dev((size_t)N * D * 2);
        float *dW = zeros_dev((size_t)V * D * 4);
        int32_t *lab = malloc(N * 4);
        for (int i = 0; i < N; i++) lab[i] = (int32_t)((i * 2654435761u) % (unsigned)V);
        int32_t *dlab = nmc_cuda_malloc(g_ctx, N * 4);
        if (!dlab) die("nmc_cuda_malloc");
        CU(nmc_cuda_memcpy_h2d(g_ctx, dlab, lab, N * 4));
        double *loss = zeros_dev(8);
        double ms;
        TIMED(ms, 5, CU(nmc_cuda_lmhead_ce(loss, dx, dW, x, W, dlab, N, D, V, 0.0f, 1.0f / N, chunk, g_ctx)));
        size_t scratch = (size_t)chunk * V * 4 + (size_t)chunk * 4;
        size_t io = (size_t)N * D * 2 * 2 + (size_t)V * D * (2 + 4) + (size_t)N * 4;
        printf("{\"bench\":\"lmhead_ce\",\"N\":%d,\"D\":%d,\"V\":%d,\"chunk\":%d,\"fwdbwd_ms\":%.4f,"
               "\"tflops\":%.2f,\"temp_bytes\":%zu,\"io_bytes\":%zu}\n",
               N, D, V, chunk, ms, 6.0 * N * D * (double)V / ms / 1e9, scratch, io);
        fflush(stdout);
        free(lab);
        void *bufs[6] = {x, W, dx, dW, dlab, loss};
        for (int i = 0; i < 6; i++) nmc_cuda_free(g_ctx, bufs[i]);
    }
}

static void bench_matmul(void)
{
    /* name, out, in  (Llama-3.2-1B-like: D 2048, F 8192, q 2048 + k 512 + v 512) */
    struct { const char *name; int out, in; } L[4] = {
        {"qkv", 3072, 2048}, {"o", 2048, 2048}, {"gate_up", 16384, 2048}, {"down", 2048, 8192}};
    int N = 8192;
    size_t maxw = (size_t)16384 * 2048, maxa = (size_t)N * 16384;
    nmc_bf16 *x = rand_dev(maxa, 1.0f, 7), *W = rand_dev(maxw, 0.05f, 8), *y = zeros_dev(maxa * 2);
    float *dW = zeros_dev(maxw * 4);
    for (int l = 0; l < 4; l++) {
        int out = L[l].out, in = L[l].in;
        double f = 2.0 * N * (double)out * in, fwd, dx, dw;
        TIMED(fwd, 20, CU(nmc_cuda_matmul(y, x, W, N, out, in, 0, 1, 1.f, 0.f, g_ctx)));
        TIMED(dx, 20, CU(nmc_cuda_matmul(y, x, W, N, in, out, 0, 0, 1.f, 0.f, g_ctx)));
        TIMED(dw, 20, CU(nmc_cuda_matmul_f32c(dW, x, x, out, in, N, 1, 0, 1.f, 1.f, g_ctx)));
        printf("{\"bench\":\"matmul\",\"layer\":\"%s\",\"N\":%d,\"out\":%d,\"in\":%d,"
               "\"fwd_ms\":%.4f,\"dx_ms\":%.4f,\"dw_ms\":%.4f,\"fwd_tflops\":%.1f,"
               "\"dx_tflops\":%.1f,\"dw_tflops\":%.1f}\n",
               L[l].name, N, out, in, fwd, dx, dw, f / fwd / 1e9, f / dx / 1e9, f / dw / 1e9);
        fflush(stdout);
    }
    void *bufs[4] = {x, W, y, dW};
    for (int i = 0; i < 4; i++) nmc_cuda_free(g_ctx, bufs[i]);
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "all";
    char err[1024];
    g_ctx = nmc_cuda_ctx_new(0, err, sizeof err);
    if (!g_ctx) {
        fprintf(stderr, "bench_gpu: cannot create CUDA context: %s\n", err);
        return 2;
    }
    if (!strcmp(only, "all") || !strcmp(only, "attention")) bench_attention();
    if (!strcmp(only, "all") || !strcmp(only, "lmhead")) bench_lmhead();
    if (!strcmp(only, "all") || !strcmp(only, "matmul")) bench_matmul();
    /* last: a fault in the new kernels must not cost the lines above */
    if (!strcmp(only, "all") || !strcmp(only, "attention_fa2")) bench_attention_fa2();
    nmc_cuda_ctx_free(g_ctx);
    return 0;
}
