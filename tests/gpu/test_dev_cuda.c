/* test_dev_cuda.c — the CUDA device (runtime/dev_cuda.c, bf16 activations) against the CPU
 * device (fp32) through runtime/dev.h and runtime/model.h.
 *
 *   build/gpu/test_dev_cuda [DEVICE]      DEVICE: auto (default), cuda:N, cpu
 *
 * Built by tests/gpu/run.sh against build/libnmc.a. On a machine without a GPU, "auto"
 * opens the CPU device and every comparison runs CPU against CPU: a self-check of the
 * harness (it must pass, and says so), not a test of dev_cuda.c.
 *
 * Device ops (the glue and kernels/dev_extra.cu): residual add, NEFTune noise, copies,
 * bf16 upload/download (exact RNE), attention through the head-dim padding path (hd 16,
 * misaligned) and the direct path (hd 64), lm_head+CE with a chunk the device raises,
 * AdamW with the bf16 copy, and the pinned staging ring across a wrap-around.
 * Model (tiny fixtures, LoRA and full, packed batch): loss within rel 2e-2 of fp32 (bf16
 * activations: ~3 significant digits per op, errors partly cancel in the mean loss); each
 * gradient's norm within rel 5e-2 and cosine similarity >= 0.99 with the fp32 gradient
 * (direction catches index bugs that norms miss); loss after one AdamW step within 2e-2.
 * Fast path (NMC_CUDA_FAST, kernels/nmc_cuda_fused.h): on a CUDA device every check runs
 * twice, with the fast path off and on (nmc_dev_cuda_set_fast; lines of the second pass
 * start with "[fast]"), so both kernel sets are compared with the CPU. Op checks added for
 * it: RMSNorm fwd/bwd (row widths 16..2048 and a misaligned fallback), RoPE fwd/bwd,
 * SwiGLU fwd/bwd, and the multi-tensor AdamW (with clipping) / sum of squares.
 * Prints one PASS/FAIL line per check; exit status 1 when any failed.
 */
#include "dev.h"
#include "dev_select.h"
#include "model.h"
#include "nmc_dropout_rng.h"
#include "nmc_kernels.h"
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int n_fail, n_pass;
static int g_fast; /* this pass runs with the CUDA fast path on */

static void result(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %s", ok ? "PASS" : "FAIL", g_fast ? "[fast] " : "");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (ok) n_pass++;
    else n_fail++;
}

/* deterministic uniform in [-1, 1) */
static float urand(uint64_t seed, uint64_t i) { return 2.0f * nmc_dropout_uniform(seed, i) - 1.0f; }

static float *rand_host(size_t n, uint64_t seed, float scale)
{
    float *h = malloc(n * sizeof *h + 4);
    if (!h) abort();
    for (size_t i = 0; i < n; i++) h[i] = scale * urand(seed, i);
    return h;
}

/* act-dtype device tensor from host fp32 */
static void *put_act(nmc_dev_t *dv, const float *h, size_t n)
{
    void *p = dv->alloc(dv, n * dv->act_size + 16);
    if (!p || dv->upload_f32(dv, p, dv->act, h, n) != 0) {
        fprintf(stderr, "put_act on %s: %s\n", dv->name, dv->last_error(dv));
        exit(2);
    }
    return p;
}
/* the same at element offset off of a buffer with 16 bytes of slack (misaligned views) */
static char *put_act_at(nmc_dev_t *dv, const float *h, size_t n, int off)
{
    char *p = dv->alloc(dv, n * dv->act_size + 16);
    if (!p || dv->upload_f32(dv, p + (size_t)off * dv->act_size, dv->act, h, n) != 0) {
        fprintf(stderr, "put_act_at on %s: %s\n", dv->name, dv->last_error(dv));
        exit(2);
    }
    return p;
}
static float *get_act(nmc_dev_t *dv, const void *p, size_t n)
{
    float *h = malloc(n * sizeof *h + 4);
    if (!h) abort();
    if (dv->download_f32(dv, h, p, dv->act, n) != 0) {
        fprintf(stderr, "get_act on %s: %s\n", dv->name, dv->last_error(dv));
        exit(2);
    }
    return h;
}
static float *get_f32(nmc_dev_t *dv, const void *p, size_t n)
{
    float *h = malloc(n * sizeof *h + 4);
    if (!h) abort();
    if (dv->download_f32(dv, h, p, NMC_DTYPE_F32, n) != 0) {
        fprintf(stderr, "get_f32 on %s: %s\n", dv->name, dv->last_error(dv));
        exit(2);
    }
    return h;
}

/* max over i of |x - ref| / (atol + rtol |ref|); <= 1 passes */
static double worst(const float *x, const float *ref, size_t n, double atol, double rtol, size_t *at)
{
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)x[i] - ref[i]) / (atol + rtol * fabs(ref[i]));
        if (!(e <= w)) { /* NaN counts as worst */
            w = isnan(e) ? INFINITY : e;
            if (at) *at = i;
        }
    }
    return w;
}
static double maxabs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static void expect_close(const char *what, const float *x, const float *ref, size_t n,
                         double atol_rel_max, double rtol)
{
    size_t at = 0;
    double atol = atol_rel_max * maxabs(ref, n) + 1e-30;
    double w = worst(x, ref, n, atol, rtol, &at);
    result(w <= 1.0, "%s: worst %.3g of tolerance (atol %.2g, rtol %.2g) at %zu: %g vs %g", what,
           w, atol, rtol, at, n ? x[at] : 0.0, n ? ref[at] : 0.0);
}

static void op_fail(nmc_dev_t *dv, const char *what)
{
    result(false, "%s on %s: %s", what, dv->name, dv->last_error(dv));
}

/* ---- device ops ------------------------------------------------------------------------ */

static void t_roundtrip(nmc_dev_t *dv)
{
    enum { N = 1000 };
    float *h = rand_host(N, 1, 3.0f);
    h[0] = 1.00390625f; /* halfway between two bf16: rounds to even (1.0) */
    h[1] = 1.01171875f; /* halfway: rounds up to even (1.015625) */
    h[2] = NAN;
    h[3] = -INFINITY;
    void *p = put_act(dv, h, N);
    float *back = get_act(dv, p, N);
    float *ref = malloc(sizeof *ref * N);
    nmc_bf16 *tmp = malloc(sizeof *tmp * N);
    if (dv->act == NMC_DTYPE_BF16) {
        nmc_f32_to_bf16(tmp, h, N);
        nmc_bf16_to_f32(ref, tmp, N);
    } else {
        memcpy(ref, h, sizeof *ref * N);
    }
    bool ok = memcmp(back + 4, ref + 4, sizeof *ref * (N - 4)) == 0 && back[0] == ref[0] &&
              back[1] == ref[1] && isnan(back[2]) && back[3] == -INFINITY;
    result(ok, "upload_f32/download_f32 act round trip is the host RNE rounding (%s)", dv->name);
    /* f32_to_act on the device equals the host rounding */
    float *f = dv->alloc(dv, sizeof(float) * N);
    void *a = dv->alloc(dv, dv->act_size * N);
    if (!f || !a || dv->upload(dv, f, h, sizeof(float) * N) || dv->f32_to_act(dv, a, f, N)) {
        op_fail(dv, "f32_to_act");
    } else {
        float *b2 = get_act(dv, a, N);
        result(memcmp(b2 + 4, ref + 4, sizeof *ref * (N - 4)) == 0,
               "f32_to_act equals the host rounding");
        free(b2);
    }
    /* copy and zero */
    void *c = dv->alloc(dv, dv->act_size * N);
    if (!c || dv->copy(dv, c, p, dv->act_size * N) || dv->zero(dv, p, dv->act_size * 10)) {
        op_fail(dv, "copy/zero");
    } else {
        float *cc = get_act(dv, c, N), *pz = get_act(dv, p, N);
        bool z = true;
        for (int i = 0; i < 10; i++) z = z && pz[i] == 0.0f;
        result(memcmp(cc + 4, ref + 4, sizeof *ref * (N - 4)) == 0 && z && pz[10] == ref[10],
               "copy is exact, zero clears only its range");
        free(cc);
        free(pz);
    }
    dv->free(dv, c);
    dv->free(dv, a);
    dv->free(dv, f);
    dv->free(dv, p);
    free(h);
    free(back);
    free(ref);
    free(tmp);
}

/* residual add and NEFTune noise vs the CPU device on the same (bf16-rounded) inputs */
static void t_elementwise(nmc_dev_t *dv, nmc_dev_t *cpu)
{
    const size_t n = 10007; /* odd: vector body + scalar tail */
    float *y = rand_host(n, 2, 1.0f), *x = rand_host(n, 3, 1.0f);
    if (dv->act == NMC_DTYPE_BF16) { /* same inputs on both sides */
        nmc_bf16 *t = malloc(sizeof *t * n);
        nmc_f32_to_bf16(t, y, n);
        nmc_bf16_to_f32(y, t, n);
        nmc_f32_to_bf16(t, x, n);
        nmc_bf16_to_f32(x, t, n);
        free(t);
    }
    void *yd = put_act(dv, y, n), *xd = put_act(dv, x, n);
    void *yc = put_act(cpu, y, n), *xc = put_act(cpu, x, n);
    /* aligned body, then a misaligned view (offset 1 element) for the scalar path */
    if (dv->add_act(dv, yd, xd, n, -0.75f) || cpu->add_act(cpu, yc, xc, n, -0.75f) ||
        dv->add_act(dv, (char *)yd + dv->act_size, xd, n - 1, 0.5f) ||
        cpu->add_act(cpu, (char *)yc + cpu->act_size, xc, n - 1, 0.5f)) {
        op_fail(dv, "add_act");
    } else {
        float *a = get_act(dv, yd, n), *b = get_act(cpu, yc, n);
        /* two bf16 roundings of values ~1: 2 ulps = 2^-7 relative */
        expect_close("add_act (aligned + misaligned) vs cpu", a, b, n, 1e-3, 8e-3);
        free(a);
        free(b);
    }
    if (dv->add_uniform_noise(dv, xd, n, 0.25f, 77, 1000) ||
        cpu->add_uniform_noise(cpu, xc, n, 0.25f, 77, 1000)) {
        op_fail(dv, "add_uniform_noise");
    } else {
        float *a = get_act(dv, xd, n), *b = get_act(cpu, xc, n);
        expect_close("add_uniform_noise (same RNG stream) vs cpu", a, b, n, 1e-3, 8e-3);
        free(a);
        free(b);
    }
    dv->free(dv, yd);
    dv->free(dv, xd);
    cpu->free(cpu, yc);
    cpu->free(cpu, xc);
    free(x);
    free(y);
}

/* attention fwd + bwd; off: element offset applied to every tensor (misalignment) */
static void t_attention(nmc_dev_t *dv, nmc_dev_t *cpu, int hd, int off)
{
    const int B = 2, T = 70, H = 4, KVH = 2;
    const size_t N = (size_t)B * T, nq = N * H * hd, nk = N * KVH * hd;
    float *q = rand_host(nq, 10, 1.0f), *k = rand_host(nk, 11, 1.0f), *v = rand_host(nk, 12, 1.0f);
    float *dout = rand_host(nq, 13, 1.0f);
    int32_t doc[2 * 70];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) doc[b * T + t] = b == 0 && t >= 30 ? 30 : 0; /* packed row 0 */
    float scale = 1.0f / sqrtf((float)hd);
    nmc_dev_t *ds[2] = {dv, cpu};
    float *res[2][5];
    bool ok = true;
    for (int s = 0; s < 2 && ok; s++) {
        nmc_dev_t *d = ds[s];
        size_t o = (size_t)off * d->act_size;
        char *qd = put_act_at(d, q, nq, off), *kd = put_act_at(d, k, nk, off);
        char *vd = put_act_at(d, v, nk, off), *dod = put_act_at(d, dout, nq, off);
        char *od = d->alloc(d, nq * d->act_size + 16), *dqd = d->alloc(d, nq * d->act_size + 16);
        char *dkd = d->alloc(d, nk * d->act_size + 16), *dvd = d->alloc(d, nk * d->act_size + 16);
        float *lse = d->alloc(d, sizeof(float) * N * H);
        int32_t *docd = d->alloc(d, sizeof doc);
        ok = ok && !d->upload(d, docd, doc, sizeof doc) &&
             !d->attention_fwd(d, od + o, lse, qd + o, kd + o, vd + o, docd, B, T, H, KVH, hd, scale) &&
             !d->attention_bwd(d, dqd + o, dkd + o, dvd + o, dod + o, od + o, lse, qd + o, kd + o,
                               vd + o, docd, B, T, H, KVH, hd, scale);
        if (!ok) {
            op_fail(d, "attention");
        } else {
            res[s][0] = get_act(d, od + o, nq);
            res[s][1] = get_act(d, dqd + o, nq);
            res[s][2] = get_act(d, dkd + o, nk);
            res[s][3] = get_act(d, dvd + o, nk);
            res[s][4] = get_f32(d, lse, N * H);
        }
        void *all[] = {qd, kd, vd, dod, od, dqd, dkd, dvd, lse, docd};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) d->free(d, all[i]);
    }
    if (ok) {
        const char *names[5] = {"out", "dq", "dk", "dv", "lse"};
        for (int i = 0; i < 5; i++) {
            char what[96];
            snprintf(what, sizeof what, "attention hd %d offset %d: %s vs cpu", hd, off, names[i]);
            /* bf16 inputs and outputs: 2% of the tensor's max + 2% relative */
            expect_close(what, res[0][i], res[1][i], i == 4 ? N * H : (i == 0 || i == 1 ? nq : nk),
                         2e-2, 2e-2);
            free(res[0][i]);
            free(res[1][i]);
        }
    }
    free(q);
    free(k);
    free(v);
    free(dout);
}

static void t_lmhead(nmc_dev_t *dv, nmc_dev_t *cpu)
{
    const int N = 37, D = 64, V = 300;
    float *x = rand_host((size_t)N * D, 20, 1.0f), *W = rand_host((size_t)V * D, 21, 0.2f);
    int32_t lab[37];
    for (int i = 0; i < N; i++) lab[i] = i % 5 == 4 ? -100 : (int32_t)((i * 37) % V);
    nmc_dev_t *ds[2] = {dv, cpu};
    double loss[2] = {0, 0};
    float *dx[2] = {NULL, NULL}, *dW[2] = {NULL, NULL};
    for (int s = 0; s < 2; s++) {
        nmc_dev_t *d = ds[s];
        void *xd = put_act(d, x, (size_t)N * D), *Wd = put_act(d, W, (size_t)V * D);
        void *dxd = d->alloc(d, (size_t)N * D * d->act_size);
        float *dWd = d->alloc(d, sizeof(float) * (size_t)V * D);
        int32_t *ld = d->alloc(d, sizeof lab);
        double *ls = d->alloc(d, sizeof(double));
        if (d->upload(d, ld, lab, sizeof lab) ||
            d->lmhead_ce(d, ls, dxd, dWd, xd, Wd, ld, N, D, V, 0.1f, 1.0f / 29, 7) ||
            d->download(d, &loss[s], ls, sizeof(double))) {
            op_fail(d, "lmhead_ce");
            return;
        }
        dx[s] = get_act(d, dxd, (size_t)N * D);
        dW[s] = get_f32(d, dWd, (size_t)V * D);
        void *all[] = {xd, Wd, dxd, dWd, ld, ls};
        for (size_t i = 0; i < 6; i++) d->free(d, all[i]);
    }
    result(fabs(loss[0] - loss[1]) <= 2e-2 * fabs(loss[1]), "lmhead_ce loss %.6f vs cpu %.6f (rel 2e-2)",
           loss[0], loss[1]);
    expect_close("lmhead_ce dx vs cpu", dx[0], dx[1], (size_t)N * D, 2e-2, 2e-2);
    expect_close("lmhead_ce dW vs cpu", dW[0], dW[1], (size_t)V * D, 2e-2, 2e-2);
    for (int s = 0; s < 2; s++) {
        free(dx[s]);
        free(dW[s]);
    }
    free(x);
    free(W);
}

static void t_adamw(nmc_dev_t *dv, nmc_dev_t *cpu)
{
    const size_t n = 4099;
    float *p = rand_host(n, 30, 1.0f), *g = rand_host(n, 31, 0.1f);
    float *out[2], *act[2];
    nmc_dev_t *ds[2] = {dv, cpu};
    for (int s = 0; s < 2; s++) {
        nmc_dev_t *d = ds[s];
        float *pd = d->alloc(d, n * 4), *gd = d->alloc(d, n * 4), *md = d->alloc(d, n * 4),
              *vd = d->alloc(d, n * 4);
        void *ad = d->act == NMC_DTYPE_F32 ? (void *)pd : d->alloc(d, n * d->act_size);
        if (d->upload(d, pd, p, n * 4) || d->upload(d, gd, g, n * 4) ||
            d->adamw(d, pd, ad, gd, md, vd, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, 1) ||
            d->adamw(d, pd, ad, gd, md, vd, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, 2)) {
            op_fail(d, "adamw");
            return;
        }
        out[s] = get_f32(d, pd, n);
        act[s] = get_act(d, ad, n);
        if (ad != (void *)pd) d->free(d, ad);
        d->free(d, pd);
        d->free(d, gd);
        d->free(d, md);
        d->free(d, vd);
    }
    expect_close("adamw master (2 steps) vs cpu", out[0], out[1], n, 1e-6, 1e-5);
    float *r = malloc(n * 4);
    nmc_bf16 *t = malloc(n * 2);
    if (dv->act == NMC_DTYPE_BF16) {
        nmc_f32_to_bf16(t, out[0], n);
        nmc_bf16_to_f32(r, t, n);
    } else {
        memcpy(r, out[0], n * 4);
    }
    result(memcmp(r, act[0], n * 4) == 0, "adamw rewrites the act copy as round(master)");
    free(r);
    free(t);
    for (int s = 0; s < 2; s++) {
        free(out[s]);
        free(act[s]);
    }
    free(p);
    free(g);
}

/* RMSNorm fwd + bwd (dw accumulated) vs the CPU; off: element offset (misaligned views
 * take the plain kernels on the fast path) */
static void t_rmsnorm(nmc_dev_t *dv, nmc_dev_t *cpu, int N, int D, int off)
{
    float *x = rand_host((size_t)N * D, 50 + D, 2.0f), *w = rand_host(D, 51, 0.5f);
    float *dy = rand_host((size_t)N * D, 52, 1.0f);
    for (int i = 0; i < D; i++) w[i] += 1.0f;
    nmc_dev_t *ds[2] = {dv, cpu};
    float *res[2][4];
    size_t nd = (size_t)N * D;
    for (int s = 0; s < 2; s++) {
        nmc_dev_t *d = ds[s];
        size_t o = (size_t)off * d->act_size;
        char *xd = put_act_at(d, x, nd, off), *dyd = put_act_at(d, dy, nd, off);
        void *wd = put_act(d, w, D);
        char *yd = d->alloc(d, nd * d->act_size + 16), *dxd = d->alloc(d, nd * d->act_size + 16);
        float *rs = d->alloc(d, sizeof(float) * N), *dw = d->alloc(d, sizeof(float) * D);
        if (d->rmsnorm_fwd(d, yd + o, rs, xd + o, wd, N, D, 1e-6f) ||
            d->rmsnorm_bwd(d, dxd + o, dw, dyd + o, xd + o, wd, rs, N, D)) {
            op_fail(d, "rmsnorm");
            return;
        }
        res[s][0] = get_act(d, yd + o, nd);
        res[s][1] = get_f32(d, rs, N);
        res[s][2] = get_act(d, dxd + o, nd);
        res[s][3] = get_f32(d, dw, D);
        void *all[] = {xd, dyd, wd, yd, dxd, rs, dw};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) d->free(d, all[i]);
    }
    const char *names[4] = {"y", "rstd", "dx", "dw"};
    size_t ns[4] = {nd, (size_t)N, nd, (size_t)D};
    for (int i = 0; i < 4; i++) {
        char what[96];
        snprintf(what, sizeof what, "rmsnorm N %d D %d offset %d: %s vs cpu", N, D, off, names[i]);
        /* bf16 in/out: 2% of max + 2% relative; rstd from bf16-rounded x: 1% */
        expect_close(what, res[0][i], res[1][i], ns[i], i == 1 ? 0 : 2e-2, i == 1 ? 1e-2 : 2e-2);
        free(res[0][i]);
        free(res[1][i]);
    }
    free(x);
    free(w);
    free(dy);
}

/* RoPE fwd then bwd (in place) on q-shaped rows vs the CPU */
static void t_rope(nmc_dev_t *dv, nmc_dev_t *cpu, int N, int nh, int hd)
{
    nmc_rope_cfg_t rc = {.type = NMC_ROPE_DEFAULT, .theta = 1000000.0};
    float *inv = malloc(sizeof(float) * (size_t)hd);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)N);
    if (!inv || !pos) abort();
    nmc_rope_inv_freq(inv, hd, &rc);
    for (int i = 0; i < N; i++) pos[i] = (i * 37) % 2048;
    size_t n = (size_t)N * nh * hd;
    float *x = rand_host(n, 60 + hd, 1.0f), *res[2][2];
    nmc_dev_t *ds[2] = {dv, cpu};
    for (int s = 0; s < 2; s++) {
        nmc_dev_t *d = ds[s];
        void *xd = put_act(d, x, n), *dd = put_act(d, x, n);
        float *invd = d->alloc(d, sizeof(float) * (size_t)hd);
        int32_t *posd = d->alloc(d, sizeof(int32_t) * (size_t)N);
        if (!invd || !posd || d->upload(d, invd, inv, sizeof(float) * (size_t)(hd / 2)) ||
            d->upload(d, posd, pos, sizeof(int32_t) * (size_t)N) ||
            d->rope_fwd(d, xd, posd, invd, N, nh, hd) || d->rope_bwd(d, dd, posd, invd, N, nh, hd)) {
            op_fail(d, "rope");
            return;
        }
        res[s][0] = get_act(d, xd, n);
        res[s][1] = get_act(d, dd, n);
        void *all[] = {xd, dd, invd, posd};
        for (size_t i = 0; i < 4; i++) d->free(d, all[i]);
    }
    for (int i = 0; i < 2; i++) {
        char what[96];
        snprintf(what, sizeof what, "rope_%s N %d nh %d hd %d vs cpu", i ? "bwd" : "fwd", N, nh, hd);
        expect_close(what, res[0][i], res[1][i], n, 1e-2, 2e-2);
        free(res[0][i]);
        free(res[1][i]);
    }
    free(x);
    free(inv);
    free(pos);
}

/* SwiGLU fwd + bwd vs the CPU (n % 8 != 0 takes the plain kernels on the fast path) */
static void t_swiglu(nmc_dev_t *dv, nmc_dev_t *cpu, size_t n)
{
    float *g = rand_host(n, 70, 4.0f), *u = rand_host(n, 71, 2.0f), *dh = rand_host(n, 72, 1.0f);
    float *res[2][3];
    nmc_dev_t *ds[2] = {dv, cpu};
    for (int s = 0; s < 2; s++) {
        nmc_dev_t *d = ds[s];
        void *gd = put_act(d, g, n), *ud = put_act(d, u, n), *dhd = put_act(d, dh, n);
        void *hd = d->alloc(d, n * d->act_size), *dgd = d->alloc(d, n * d->act_size);
        void *dud = d->alloc(d, n * d->act_size);
        if (d->swiglu_fwd(d, hd, gd, ud, n) || d->swiglu_bwd(d, dgd, dud, dhd, gd, ud, n)) {
            op_fail(d, "swiglu");
            return;
        }
        res[s][0] = get_act(d, hd, n);
        res[s][1] = get_act(d, dgd, n);
        res[s][2] = get_act(d, dud, n);
        void *all[] = {gd, ud, dhd, hd, dgd, dud};
        for (size_t i = 0; i < 6; i++) d->free(d, all[i]);
    }
    const char *names[3] = {"h", "dg", "du"};
    for (int i = 0; i < 3; i++) {
        char what[96];
        snprintf(what, sizeof what, "swiglu n %zu: %s vs cpu", n, names[i]);
        expect_close(what, res[0][i], res[1][i], n, 1e-2, 2e-2);
        free(res[0][i]);
        free(res[1][i]);
    }
    free(g);
    free(u);
    free(dh);
}

/* dev->sumsq_many + dev->adamw_many (clipped, then not) vs the CPU's per-tensor sumsq,
 * scale and adamw: the same bits up to the tolerance of t_adamw. */
static void t_multi(nmc_dev_t *dv, nmc_dev_t *cpu)
{
    if (!dv->adamw_many || !dv->sumsq_many) {
        printf("NOTE multi-tensor ops not provided by %s in this mode (callers loop)\n", dv->name);
        return;
    }
    enum { T = 3 };
    const size_t ns[T] = {4099, 1, 3000};
    const float wds[T] = {0.01f, 0.0f, 0.1f};
    float *hp[T], *hg[T], *out[2][T], *act[T];
    double ss[2] = {0, 0};
    nmc_dev_t *ds[2] = {dv, cpu};
    for (int t = 0; t < T; t++) {
        hp[t] = rand_host(ns[t], 80 + t, 1.0f);
        hg[t] = rand_host(ns[t], 90 + t, 0.5f);
    }
    for (int s = 0; s < 2; s++) {
        nmc_dev_t *d = ds[s];
        float *p[T], *g[T], *m[T], *v[T];
        void *a[T];
        nmc_dev_adam_t tab[T];
        const float *gs[T];
        double *acc = d->alloc(d, sizeof(double));
        int rc = !acc;
        for (int t = 0; t < T && !rc; t++) {
            size_t b = ns[t] * 4;
            p[t] = d->alloc(d, b), g[t] = d->alloc(d, b), m[t] = d->alloc(d, b), v[t] = d->alloc(d, b);
            a[t] = d->act == NMC_DTYPE_F32 ? (void *)p[t] : d->alloc(d, ns[t] * d->act_size);
            rc = !p[t] || !g[t] || !m[t] || !v[t] || !a[t] || d->upload(d, p[t], hp[t], b) ||
                 d->upload(d, g[t], hg[t], b);
            tab[t] = (nmc_dev_adam_t){.p = p[t], .p_act = a[t] == (void *)p[t] ? NULL : a[t],
                                      .g = g[t], .m = m[t], .v = v[t], .n = ns[t], .wd = wds[t]};
            gs[t] = g[t];
        }
        /* the norm is ~ 30: max_norm 0.5 clips step 1 */
        if (!rc && s == 0) {
            rc = d->sumsq_many(d, acc, gs, ns, T) ||
                 d->adamw_many(d, tab, T, 1e-2f, 0.9f, 0.999f, 1e-8f, 0, 1, acc, 0.5f) ||
                 d->adamw_many(d, tab, T, 1e-2f, 0.9f, 0.999f, 1e-8f, 0, 2, NULL, 0.0f);
        } else if (!rc) {
            for (int t = 0; t < T && !rc; t++) rc = d->sumsq(d, acc, g[t], ns[t]);
        }
        if (!rc) rc = d->download(d, &ss[s], acc, sizeof(double));
        if (!rc && s == 1) {
            float coef = (float)(0.5 / (sqrt(ss[1]) + 1e-6));
            for (int t = 0; t < T && !rc; t++) {
                float *gc = d->alloc(d, ns[t] * 4);
                rc = !gc || d->copy(d, gc, g[t], ns[t] * 4) || d->scale(d, gc, ns[t], coef) ||
                     d->adamw(d, p[t], NULL, gc, m[t], v[t], ns[t], 1e-2f, 0.9f, 0.999f, 1e-8f, wds[t], 0, 1) ||
                     d->adamw(d, p[t], NULL, g[t], m[t], v[t], ns[t], 1e-2f, 0.9f, 0.999f, 1e-8f, wds[t], 0, 2);
                d->free(d, gc);
            }
        }
        if (rc) {
            op_fail(d, "multi-tensor ops");
            return;
        }
        for (int t = 0; t < T; t++) {
            out[s][t] = get_f32(d, p[t], ns[t]);
            if (s == 0) act[t] = get_act(d, a[t], ns[t]);
            if (a[t] != (void *)p[t]) d->free(d, a[t]);
            d->free(d, p[t]), d->free(d, g[t]), d->free(d, m[t]), d->free(d, v[t]);
        }
        d->free(d, acc);
    }
    result(fabs(ss[0] - ss[1]) <= 1e-9 * ss[1], "sumsq_many %.12g vs cpu sumsq per tensor %.12g",
           ss[0], ss[1]);
    for (int t = 0; t < T; t++) {
        char what[96];
        snprintf(what, sizeof what, "adamw_many tensor %d (n %zu, clipped step + plain step) vs cpu", t, ns[t]);
        expect_close(what, out[0][t], out[1][t], ns[t], 1e-6, 1e-5);
        nmc_bf16 *tb = malloc(ns[t] * 2);
        float *r = malloc(ns[t] * 4);
        if (!tb || !r) abort();
        if (dv->act == NMC_DTYPE_BF16) {
            nmc_f32_to_bf16(tb, out[0][t], ns[t]);
            nmc_bf16_to_f32(r, tb, ns[t]);
        } else {
            memcpy(r, out[0][t], ns[t] * 4);
        }
        result(memcmp(r, act[t], ns[t] * 4) == 0, "adamw_many tensor %d: act copy == round(master)", t);
        free(tb);
        free(r);
        free(out[0][t]);
        free(out[1][t]);
        free(act[t]);
    }
    for (int t = 0; t < T; t++) {
        free(hp[t]);
        free(hg[t]);
    }
}

/* many small uploads: more than the 8 MiB staging ring, the host buffer reused each time */
static void t_staging(nmc_dev_t *dv)
{
    const size_t piece = 4096 * 4, count = 800; /* 12.5 MiB in total */
    int32_t *host = malloc(piece), *back = malloc(piece * count);
    int32_t *dd = dv->alloc(dv, piece * count);
    if (!host || !back || !dd) {
        op_fail(dv, "staging alloc");
        return;
    }
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        for (size_t j = 0; j < piece / 4; j++) host[j] = (int32_t)(i * 100003 + j);
        rc = dv->upload(dv, (char *)dd + i * piece, host, piece);
    }
    if (rc || dv->download(dv, back, dd, piece * count)) {
        op_fail(dv, "staged uploads");
    } else {
        size_t bad = 0;
        for (size_t i = 0; i < count; i++)
            for (size_t j = 0; j < piece / 4; j++) bad += back[i * piece / 4 + j] != (int32_t)(i * 100003 + j);
        result(bad == 0, "800 staged uploads (ring wraps) arrive intact: %zu wrong", bad);
    }
    dv->free(dv, dd);
    free(host);
    free(back);
}

static void t_select(void)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_dev_t *x = NULL;
    int rc = nmc_dev_open("cuda:99", &x, &d);
    result(rc == -1 && !x && d.n == 1 &&
               (!strcmp(d.items[0].code, "dev-not-found") || !strcmp(d.items[0].code, "dev-cuda-unavailable")),
           "nmc_dev_open(cuda:99) fails: %s: %s", d.n ? d.items[0].code : "-", d.n ? d.items[0].message : "-");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    rc = nmc_dev_open("gpu0", &x, &d);
    result(rc == -1 && d.n == 1 && !strcmp(d.items[0].code, "dev-spec-invalid"),
           "nmc_dev_open(gpu0) is dev-spec-invalid");
    nmc_diags_free(&d);
}

/* ---- model ---------------------------------------------------------------------------- */

static const char *const SEVEN[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                    "gate_proj", "up_proj", "down_proj"};

/* Two rows of T tokens: row 0 packs two documents, row 1 one document then padding. */
typedef struct {
    nmc_batch_t b;
    int32_t ids[2 * 64], labels[2 * 64], pos[2 * 64], doc[2 * 64];
} tbatch_t;

static void make_batch(tbatch_t *t, int V, uint64_t seed)
{
    const int B = 2, T = 64;
    memset(t, 0, sizeof *t);
    int ends[2][3] = {{25, 64, -1}, {50, 64, -1}}; /* row 1: tokens 50.. are padding */
    for (int r = 0; r < B; r++) {
        int start = 0;
        for (int e = 0; ends[r][e] > 0; e++) {
            bool pad = r == 1 && e == 1;
            for (int i = start; i < ends[r][e]; i++) {
                int k = r * T + i;
                t->ids[k] = pad ? 0 : (int32_t)(nmc_dropout_uniform(seed, (uint64_t)k) * (float)V) % V;
                t->pos[k] = i - start;
                t->doc[k] = start;
                t->labels[k] = NMC_IGNORE_INDEX;
            }
            if (!pad)
                for (int i = start; i + 1 < ends[r][e]; i++) t->labels[r * T + i] = t->ids[r * T + i + 1];
            start = ends[r][e];
        }
    }
    t->b.B = B;
    t->b.T = T;
    t->b.input_ids = t->ids;
    t->b.labels = t->labels;
    t->b.positions = t->pos;
    t->b.doc_start = t->doc;
    for (int i = 0; i < B * T; i++) t->b.n_label_tokens += t->labels[i] != NMC_IGNORE_INDEX;
    t->b.n_real_tokens = 25 + 39 + 50;
    t->b.first_sample = -1;
}

static nmc_model_t *load(const char *dir, nmc_dev_t *dv, nmc_train_mode_t mode,
                         const nmc_lora_cfg_t *lc)
{
    nmc_model_opts_t o;
    nmc_model_opts_default(&o);
    o.model_dir = dir;
    o.dev = dv;
    o.train = mode;
    o.lora = lc;
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *m = NULL;
    if (nmc_model_load(&o, &m, &d) != 0)
        result(false, "load %s on %s: %s: %s", dir, dv ? dv->name : "cpu",
               d.n ? d.items[0].code : "", d.n ? d.items[0].message : "");
    nmc_diags_free(&d);
    return m;
}

static int step(nmc_model_t *m, const nmc_batch_t *b, double *loss)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    int64_t ntok = 0;
    double sum = 0;
    int rc = nmc_model_zero_grads(m);
    if (!rc) rc = nmc_model_fwd_bwd(m, b, 1.0f / (float)b->n_label_tokens, &sum, &ntok, &d);
    if (rc) result(false, "fwd_bwd on %s: %s", nmc_model_dev(m)->name, d.n ? d.items[0].message : "?");
    nmc_diags_free(&d);
    *loss = ntok ? sum / (double)ntok : NAN;
    return rc;
}

/* One AdamW step (lr 1e-3) on every trainable param: the trainer's update, by hand. */
static int adam_step(nmc_model_t *m)
{
    nmc_dev_t *dv = nmc_model_dev(m);
    size_t n;
    nmc_param_t *ps = nmc_model_params(m, &n);
    for (size_t i = 0; i < n; i++) {
        nmc_param_t *p = &ps[i];
        if (!p->trainable) continue;
        size_t bytes = sizeof(float) * (size_t)p->numel;
        float *mm = dv->alloc(dv, bytes), *vv = dv->alloc(dv, bytes);
        void *act = p->data != (void *)p->master ? p->data : NULL;
        int rc = !mm || !vv ||
                 dv->adamw(dv, p->master, act, p->grad, mm, vv, (size_t)p->numel, 1e-3f, 0.9f,
                           0.999f, 1e-8f, p->weight_decay ? 0.01f : 0.0f, 0, 1);
        dv->free(dv, mm);
        dv->free(dv, vv);
        if (rc) {
            op_fail(dv, "adamw on a param");
            return -1;
        }
    }
    return 0;
}

static void compare_grads(const char *tag, nmc_model_t *mg, nmc_model_t *mc)
{
    size_t n, n2;
    nmc_param_t *pg = nmc_model_params(mg, &n), *pc = nmc_model_params(mc, &n2);
    nmc_dev_t *dg = nmc_model_dev(mg), *dc = nmc_model_dev(mc);
    if (n != n2) {
        result(false, "%s: parameter lists differ (%zu vs %zu)", tag, n, n2);
        return;
    }
    int shown = 0, bad = 0;
    double total_g = 0, total_c = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pc[i].trainable) continue;
        size_t k = (size_t)pc[i].numel;
        float *a = get_f32(dg, pg[i].grad, k), *b = get_f32(dc, pc[i].grad, k);
        double na = 0, nb = 0, dot = 0;
        for (size_t j = 0; j < k; j++) {
            na += (double)a[j] * a[j];
            nb += (double)b[j] * b[j];
            dot += (double)a[j] * b[j];
        }
        total_g += na;
        total_c += nb;
        na = sqrt(na);
        nb = sqrt(nb);
        bool zero_ref = nb < 1e-12;
        double cosv = zero_ref ? 1.0 : dot / (na * nb + 1e-300);
        bool ok = zero_ref ? na < 1e-9 : (fabs(na - nb) <= 5e-2 * nb && cosv >= 0.99);
        if (!ok) bad++;
        /* print a few (and every failure) */
        if (!ok || shown < 4) {
            result(ok, "%s grad %s: norm %.5g vs cpu %.5g, cos %.5f", tag, pc[i].name, na, nb, cosv);
            shown++;
        }
        free(a);
        free(b);
    }
    result(bad == 0 && fabs(sqrt(total_g) - sqrt(total_c)) <= 5e-2 * sqrt(total_c),
           "%s: every trainable gradient (global norm %.5g vs cpu %.5g)", tag, sqrt(total_g),
           sqrt(total_c));
}

static void t_model(nmc_dev_t *dv, const char *dir, nmc_train_mode_t mode)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("SKIP model %s (fixture absent)\n", dir);
        return;
    }
    nmc_lora_cfg_t lc;
    nmc_lora_cfg_default(&lc);
    lc.r = 8;
    lc.alpha = 16;
    lc.match = NMC_LORA_MATCH_SUFFIX;
    lc.target_modules = SEVEN;
    lc.n_target_modules = 7;
    char tag[200];
    snprintf(tag, sizeof tag, "%s %s", strrchr(dir, '/') + 1, mode == NMC_TRAIN_LORA ? "lora" : "full");
    nmc_model_t *mg = load(dir, dv, mode, &lc), *mc = load(dir, NULL, mode, &lc);
    if (!mg || !mc) {
        nmc_model_free(mg);
        nmc_model_free(mc);
        return;
    }
    if (mode == NMC_TRAIN_LORA) { /* B = 0 at init makes A's gradient 0: give B values */
        size_t n;
        nmc_param_t *ps = nmc_model_params(mc, &n), *pg = nmc_model_params(mg, &n);
        nmc_diags_t d;
        nmc_diags_init(&d);
        for (size_t i = 0; i < n; i++)
            if (ps[i].kind == NMC_PARAM_LORA_B) {
                float *h = rand_host((size_t)ps[i].numel, 40 + i, 0.05f);
                nmc_model_param_write(mc, &ps[i], h, &d);
                nmc_model_param_write(mg, &pg[i], h, &d);
                free(h);
            }
        nmc_diags_free(&d);
    }
    const nmc_model_config_t *cfg = nmc_model_config(mc);
    tbatch_t tb;
    make_batch(&tb, (int)cfg->vocab_size, 99);
    double lg = 0, lcpu = 0;
    if (step(mg, &tb.b, &lg) == 0 && step(mc, &tb.b, &lcpu) == 0) {
        result(fabs(lg - lcpu) <= 2e-2 * fabs(lcpu), "%s: step-1 loss %.6f vs cpu %.6f (rel 2e-2)",
               tag, lg, lcpu);
        compare_grads(tag, mg, mc);
        if (adam_step(mg) == 0 && adam_step(mc) == 0 && step(mg, &tb.b, &lg) == 0 &&
            step(mc, &tb.b, &lcpu) == 0)
            result(fabs(lg - lcpu) <= 2e-2 * fabs(lcpu),
                   "%s: loss after one AdamW step %.6f vs cpu %.6f (rel 2e-2)", tag, lg, lcpu);
    }
    nmc_model_free(mg);
    nmc_model_free(mc);
}

int main(int argc, char **argv)
{
    const char *spec = argc > 1 ? argv[1] : "auto";
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_dev_t *dv = NULL;
    if (nmc_dev_open(spec, &dv, &d) != 0) {
        printf("FAIL open device %s: %s: %s\n", spec, d.n ? d.items[0].code : "",
               d.n ? d.items[0].message : "");
        return 1;
    }
    nmc_diags_free(&d);
    if (dv->kind == NMC_DEV_CPU)
        printf("NOTE no GPU device (%s): comparing the CPU device with itself (harness "
               "self-check, not a test of dev_cuda.c)\n", spec);
    else
        printf("device %s (act bf16) vs cpu (fp32)\n", dv->name);
    nmc_dev_t *cpu = nmc_dev_cpu_new();
    t_select();
    /* the fast path off, then on (a device without one runs the checks once) */
    int passes = nmc_dev_cuda_set_fast(dv, 0) >= 0 ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        if (passes == 2) nmc_dev_cuda_set_fast(dv, pass);
        g_fast = passes == 2 && pass == 1;
        printf("---- %s: NMC_CUDA_FAST %s\n", dv->name, g_fast ? "on" : "off");
        t_roundtrip(dv);
        t_elementwise(dv, cpu);
        t_attention(dv, cpu, 16, 0);
        t_attention(dv, cpu, 64, 0);
        t_attention(dv, cpu, 64, 1);
        t_lmhead(dv, cpu);
        t_adamw(dv, cpu);
        const int widths[] = {16, 40, 128, 1024, 2048, 4096};
        for (size_t i = 0; i < sizeof widths / sizeof *widths; i++) t_rmsnorm(dv, cpu, 300, widths[i], 0);
        t_rmsnorm(dv, cpu, 300, 128, 1);
        t_rope(dv, cpu, 50, 4, 16);
        t_rope(dv, cpu, 50, 4, 8);
        t_rope(dv, cpu, 70, 16, 128);
        t_rope(dv, cpu, 70, 8, 64);
        t_swiglu(dv, cpu, 8 * 1001);
        t_swiglu(dv, cpu, 10007);
        t_multi(dv, cpu);
        t_staging(dv);
        const char *models[] = {"tests/data/models/tiny-llama", "tests/data/models/tiny-qwen3",
                                "tests/data/golden/tiny-qwen2"};
        for (int i = 0; i < 3; i++) {
            t_model(dv, models[i], NMC_TRAIN_FULL);
            t_model(dv, models[i], NMC_TRAIN_LORA);
        }
    }
    nmc_dev_mem_t ms;
    if (nmc_dev_mem_stats(dv, &ms) == 0)
        result(ms.live_bytes == 0 && ms.peak_bytes > 0,
               "memory accounting: %zu bytes live after frees (expect 0), peak %zu, ctx %zu",
               ms.live_bytes, ms.peak_bytes, ms.ctx_bytes);
    if (dv->sync(dv) != 0) result(false, "final sync: %s", dv->last_error(dv));
    dv->destroy(dv);
    cpu->destroy(cpu);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
