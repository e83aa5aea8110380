/* fused_emu.cpp — runs the kernels of kernels/fused.cu (the NMC_CUDA_FAST path) on the CPU
 * warp emulator (tests/gpu/fa2_emu/emu_rt.h) and checks them against the plain-C
 * references of kernels/*.c on the same bf16-rounded inputs. Launch geometry mirrors the
 * host side of fused.cu. Built and run by tests/gpu/fused_emu/run.sh.
 * Tolerances: bf16 outputs rtol 1.6e-2 (2 bf16 ulps) + atol 1e-3 x max|ref|; rstd rtol
 * 1e-5 (fp32 sums in another order); AdamW bitwise (same per-element code as adamw.c);
 * sum of squares rel 1e-12 (double, other order).
 */
#define NMC_CUDA 1 /* nmc_kernels.h (via emu_rt.h) then declares the CUDA context type */
#include "emu_rt.h"
#include "nmc_cuda_fused.h"

/* the intrinsics fused.cu uses beyond those emu_rt.h has */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline void stbf(nmc_bf16 *p, size_t i, float v) { p[i] = f2bf(v); }
#define FZ_EMU 1
#include "nmc_adam_math.cuh"
#include "kern.inc"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand() { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (rng >> 11) * (1.0 / 9007199254740992.0); }
static std::vector<float> rand_bf(size_t n, float lo, float hi) {
    std::vector<float> x(n);
    for (auto &v : x) v = bf2f(f2bf(lo + (hi - lo) * (float)urand()));
    return x;
}
static std::vector<uint16_t> to_bf(const std::vector<float> &x) { std::vector<uint16_t> r(x.size()); for (size_t i = 0; i < x.size(); i++) r[i] = f2bf(x[i]); return r; }
static std::vector<float> from_bf(const std::vector<uint16_t> &x) { std::vector<float> r(x.size()); for (size_t i = 0; i < x.size(); i++) r[i] = bf2f(x[i]); return r; }
static int g_bad, g_checks;

static void check(const char *name, const std::vector<float> &got, const std::vector<float> &ref,
                  double atol_rel_max, double rtol) {
    double mx = 0;
    for (float r : ref) mx = std::max(mx, (double)fabs(r));
    const double atol = atol_rel_max * mx + 1e-30;
    size_t bad = 0, first = 0;
    double worst = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        const double e = fabs((double)got[i] - ref[i]), al = atol + rtol * fabs(ref[i]);
        if (!(e <= al)) { if (!bad) first = i; bad++; }
        if (std::isnan(e) || e / al > worst) worst = std::isnan(e) ? INFINITY : e / al;
    }
    g_checks++;
    printf("  %-34s worst %.3f %s", name, worst, bad ? "FAIL" : "ok");
    if (bad) { printf(" (%zu/%zu bad, first %zu: got %g ref %g)", bad, ref.size(), first, got[first], ref[first]); g_bad++; }
    printf("\n");
}
static void check_exact(const char *name, const float *got, const float *ref, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&got[i], &ref[i], 4) != 0;
    g_checks++;
    printf("  %-34s %s", name, bad ? "FAIL" : "ok (bitwise)");
    if (bad) { printf(" (%zu/%zu differ)", bad, n); g_bad++; }
    printf("\n");
}

/* the host side's geometry (fused.cu rms_geometry) */
static int geometry(int nvec, int *gs, int *vm) {
    if (nvec <= 32) { int g = 1; while (g < nvec) g <<= 1; *gs = g; *vm = 1; return 1; }
    *gs = 32; int v = 2; while (v * 32 < nvec) v <<= 1; *vm = v; return v <= 8;
}

template <int G, int V>
static void rms_launch(int N, int D, uint16_t *y, float *rstd, uint16_t *dx, const uint16_t *x,
                       const uint16_t *dy, const uint16_t *w, const float *rs_in, float eps) {
    const unsigned grid = (unsigned)(((size_t)N * G + FZ_THREADS - 1) / FZ_THREADS);
    run_grid(dim3(grid), FZ_THREADS, 0, [&] {
        fz_rms_fwd_k<G, V>((uint4 *)y, rstd, (const uint4 *)x, (const uint4 *)w, N, D / 8, D, eps);
    });
    run_grid(dim3(grid), FZ_THREADS, 0, [&] {
        fz_rms_bwd_k<G, V>((uint4 *)dx, (const uint4 *)dy, (const uint4 *)x, (const uint4 *)w, rs_in, N, D / 8, D);
    });
}

static void t_rmsnorm(int N, int D) {
    int gs, vm;
    if (!geometry(D / 8, &gs, &vm)) { printf("rmsnorm D%d: unsupported (expected)\n", D); return; }
    printf("rmsnorm N%d D%d (group %d lanes, %d vectors/lane)\n", N, D, gs, vm);
    const float eps = 1e-6f;
    auto x = rand_bf((size_t)N * D, -2, 2), w = rand_bf(D, 0.5f, 1.5f), dy = rand_bf((size_t)N * D, -1, 1);
    std::vector<float> yref((size_t)N * D), rref(N), dxref((size_t)N * D);
    nmc_cpu_rmsnorm_fwd(yref.data(), rref.data(), x.data(), w.data(), N, D, eps);
    nmc_cpu_rmsnorm_bwd(dxref.data(), nullptr, dy.data(), x.data(), w.data(), rref.data(), N, D);
    auto xb = to_bf(x), wb = to_bf(w), dyb = to_bf(dy);
    std::vector<uint16_t> yb((size_t)N * D, 0x7fc0), dxb((size_t)N * D, 0x7fc0);
    std::vector<float> rs(N, NAN);
#define X(G, V) if (gs == G && vm == V) rms_launch<G, V>(N, D, yb.data(), rs.data(), dxb.data(), xb.data(), dyb.data(), wb.data(), rref.data(), eps);
    X(1, 1) X(2, 1) X(4, 1) X(8, 1) X(16, 1) X(32, 1) X(32, 2) X(32, 4) X(32, 8)
#undef X
    check("y", from_bf(yb), yref, 1e-3, 1.6e-2);
    check("rstd", rs, rref, 0, 1e-5);
    check("dx", from_bf(dxb), dxref, 1e-3, 1.6e-2);
}

static void t_rope(int N, int nh, int hd, double theta) {
    printf("rope N%d nh%d hd%d theta %g\n", N, nh, hd, theta);
    nmc_rope_cfg_t cfg = {};
    cfg.type = NMC_ROPE_DEFAULT;
    cfg.theta = theta;
    std::vector<float> inv(hd / 2);
    nmc_rope_inv_freq(inv.data(), hd, &cfg);
    std::vector<int32_t> pos(N);
    for (int i = 0; i < N; i++) pos[i] = i * 251 % 2048;
    auto x = rand_bf((size_t)N * nh * hd, -2, 2);
    for (int dir = 0; dir < 2; dir++) {
        std::vector<float> ref = x;
        if (dir == 0) nmc_cpu_rope_fwd(ref.data(), pos.data(), inv.data(), N, nh, hd);
        else nmc_cpu_rope_bwd(ref.data(), pos.data(), inv.data(), N, nh, hd);
        auto xb = to_bf(x);
        run_grid(dim3(N), 128, 0, [&] {
            fz_rope_k((uint4 *)xb.data(), pos.data(), inv.data(), nh, hd, dir == 0 ? 1.f : -1.f);
        });
        check(dir == 0 ? "fwd" : "bwd", from_bf(xb), ref, 1e-3, 1.6e-2);
    }
}

static void t_swiglu(size_t n) {
    printf("swiglu n%zu\n", n);
    auto g = rand_bf(n, -4, 4), u = rand_bf(n, -2, 2), dh = rand_bf(n, -1, 1);
    std::vector<float> h(n), dg(n), du(n);
    nmc_cpu_swiglu_fwd(h.data(), g.data(), u.data(), n);
    nmc_cpu_swiglu_bwd(dg.data(), du.data(), dh.data(), g.data(), u.data(), n);
    auto gb = to_bf(g), ub = to_bf(u), dhb = to_bf(dh);
    std::vector<uint16_t> hb(n), dgb(n), dub(n);
    /* a small grid so the grid-stride loop wraps */
    run_grid(dim3(2), 32, 0, [&] { fz_swiglu_fwd_k((uint4 *)hb.data(), (const uint4 *)gb.data(), (const uint4 *)ub.data(), n / 8); });
    run_grid(dim3(2), 32, 0, [&] {
        fz_swiglu_bwd_k((uint4 *)dgb.data(), (uint4 *)dub.data(), (const uint4 *)dhb.data(), (const uint4 *)gb.data(), (const uint4 *)ub.data(), n / 8);
    });
    check("h", from_bf(hb), h, 1e-3, 1.6e-2);
    check("dg", from_bf(dgb), dg, 1e-3, 1.6e-2);
    check("du", from_bf(dub), du, 1e-3, 1.6e-2);
}

/* AdamW over a table of tensors (one with a bf16 copy, one fp32 only, an empty one), with
 * and without clipping, vs nmc_cpu_scale + nmc_cpu_adamw per tensor; and the sum of squares. */
static void t_multi(int adam_l2) {
    printf("multi-tensor AdamW + sumsq (adam_l2 %d)\n", adam_l2);
    const size_t ns[4] = {5000, 0, 1, 2049};
    const float wds[4] = {0.01f, 0.0f, 0.1f, 0.0f};
    std::vector<float> P[4], G[4], M[4], Vv[4], Pc[4], Mc[4], Vc[4];
    std::vector<uint16_t> PB[4];
    std::vector<nmc_cuda_mt_t> tab(4);
    double ss_ref = 0;
    for (int t = 0; t < 4; t++) {
        P[t] = rand_bf(ns[t], -1, 1);
        G[t] = rand_bf(ns[t], -0.5f, 0.5f);
        M[t].assign(ns[t], 0.f);
        Vv[t].assign(ns[t], 0.f);
        Pc[t] = P[t];
        Mc[t] = M[t];
        Vc[t] = Vv[t];
        PB[t].assign(ns[t], 0);
        ss_ref += nmc_cpu_sumsq(G[t].data(), ns[t]);
        tab[t] = nmc_cuda_mt_t{};
        tab[t].p = P[t].data();
        tab[t].pb = t == 3 ? nullptr : PB[t].data();
        tab[t].g = G[t].data();
        tab[t].m = M[t].data();
        tab[t].v = Vv[t].data();
        tab[t].n = ns[t];
        tab[t].wd = wds[t];
    }
    /* sum of squares of the gradients: a table whose p are the grads */
    std::vector<nmc_cuda_mt_t> gtab = tab;
    for (int t = 0; t < 4; t++) gtab[t].p = G[t].data();
    const unsigned long long nb = nmc_cuda_mt_prepare(tab.data(), 4);
    nmc_cuda_mt_prepare(gtab.data(), 4);
    std::vector<double> partial(nb);
    double ss = 0.25; /* += */
    run_grid(dim3((unsigned)nb), FZ_THREADS, 0, [&] { fz_sumsq_multi_k(partial.data(), gtab.data(), 4); });
    run_grid(dim3(1), FZ_THREADS, 0, [&] { fz_sum_partials_k(&ss, partial.data(), nb); });
    g_checks++;
    const bool ssok = fabs((ss - 0.25) - ss_ref) <= 1e-12 * ss_ref;
    printf("  %-34s %s (%.17g vs %.17g)\n", "sumsq_multi", ssok ? "ok" : "FAIL", ss - 0.25, ss_ref);
    if (!ssok) g_bad++;
    /* step 1 clipped to max_norm 0.5 (the norm is ~ 20), step 2 unclipped */
    for (long step = 1; step <= 2; step++) {
        const float lr = 1e-2f, max_norm = 0.5f;
        const double *clip = step == 1 ? &ss_ref : nullptr;
        for (int t = 0; t < 4; t++) {
            std::vector<float> g = G[t];
            if (clip) {
                const double cf = (double)max_norm / (sqrt(ss_ref) + 1e-6);
                if (cf < 1.0) nmc_cpu_scale(g.data(), ns[t], (float)cf);
            }
            nmc_cpu_adamw(Pc[t].data(), g.data(), Mc[t].data(), Vc[t].data(), ns[t], lr, 0.9f, 0.999f, 1e-8f, wds[t], adam_l2, step);
        }
        adam_hp h;
        adam_hp_fill(&h, lr, 0.9f, 0.999f, 1e-8f, 0.0f, adam_l2, step);
        run_grid(dim3((unsigned)nb), FZ_THREADS, 0, [&] { fz_adamw_multi_k(tab.data(), 4, h, (double)lr, adam_l2, clip, max_norm); });
    }
    for (int t = 0; t < 4; t++) {
        char nm[64];
        snprintf(nm, sizeof nm, "tensor %d (n %zu) p, m, v", t, ns[t]);
        std::vector<float> all = P[t], ref = Pc[t];
        all.insert(all.end(), M[t].begin(), M[t].end());
        all.insert(all.end(), Vv[t].begin(), Vv[t].end());
        ref.insert(ref.end(), Mc[t].begin(), Mc[t].end());
        ref.insert(ref.end(), Vc[t].begin(), Vc[t].end());
        check_exact(nm, all.data(), ref.data(), all.size());
        if (tab[t].pb) {
            std::vector<float> pb = from_bf(PB[t]), r(ns[t]);
            for (size_t i = 0; i < ns[t]; i++) r[i] = bf2f(f2bf(P[t][i]));
            snprintf(nm, sizeof nm, "tensor %d bf16 copy == bf16(p)", t);
            check_exact(nm, pb.data(), r.data(), ns[t]);
        }
    }
}

int main() {
    const int Ds[] = {8, 16, 64, 96, 128, 256, 520, 1024, 2048, 4096};
    for (int D : Ds) t_rmsnorm(D >= 1024 ? 9 : 37, D);
    t_rope(5, 3, 16, 10000.0);
    t_rope(4, 16, 128, 1000000.0);
    t_rope(3, 9, 64, 500000.0);
    t_swiglu(8 * 333);
    t_multi(0);
    t_multi(1);
    printf("%d checks, %d failed: %s\n", g_checks, g_bad, g_bad ? "FAIL" : "PASS");
    return g_bad ? 1 : 0;
}
