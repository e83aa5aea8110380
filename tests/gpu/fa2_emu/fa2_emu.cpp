/* fa2_emu.cpp — runs the kernels of kernels/attention_fa2.cu on the CPU emulator (emu_rt.h)
 * and checks them against nmc_cpu_attention_fwd / _bwd with the tolerances of
 * tests/gpu/test_kernels_gpu.c. Built and run by tests/gpu/fa2_emu/run.sh, which turns the
 * .cu into kern.inc (PTX wrappers and host code removed). Launch geometry below mirrors
 * fa2_fwd_launch / fa2_bwd_launch. Exit status 0 when every check passes.
 * Usage: fa2_emu [CASE]   (CASE 1..8 runs one case, default all)
 */
#include "emu_rt.h"
#include "kern.inc"

static uint64_t rng = 88172645463325252ull;
static double urand() { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (rng >> 11) * (1.0 / 9007199254740992.0); }
static std::vector<float> rand_bf(size_t n, float lo, float hi) {
    std::vector<float> x(n);
    for (auto &v : x) v = bf2f(f2bf(lo + (hi - lo) * (float)urand()));
    return x;
}
static std::vector<uint16_t> to_bf(const std::vector<float> &x) { std::vector<uint16_t> r(x.size()); for (size_t i = 0; i < x.size(); i++) r[i] = f2bf(x[i]); return r; }
static std::vector<float> from_bf(const std::vector<uint16_t> &x) { std::vector<float> r(x.size()); for (size_t i = 0; i < x.size(); i++) r[i] = bf2f(x[i]); return r; }
static double rmsv(const std::vector<float> &x) { double s = 0; for (float v : x) s += (double)v * v; return x.empty() ? 0 : sqrt(s / x.size()); }
static int g_bad;
static void check(const char *name, const std::vector<float> &got, const std::vector<float> &ref, double atol, double rtol) {
    size_t bad = 0, first = 0; double worst = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double g = got[i], r = ref[i], e = fabs(g - r);
        if (g == r) continue;
        double al = atol + rtol * fabs(r);
        if (!(e <= al)) { if (!bad) first = i; bad++; }
        if (e / al > worst || std::isnan(e)) worst = std::isnan(e) ? INFINITY : e / al;
    }
    printf("  %-8s worst %.3f %s", name, worst, bad ? "FAIL" : "ok");
    if (bad) { printf(" (%zu/%zu bad, first %zu: got %g ref %g)", bad, ref.size(), first, got[first], ref[first]); g_bad++; }
    printf("\n");
}

template <int HD>
static void run_case(int B, int T, int H, int KVH, int packed) {
    printf("case B%d T%d H%d KVH%d hd%d%s late=%d\n", B, T, H, KVH, HD, packed ? " packed" : "", g_late_copies);
    size_t nq = (size_t)B * T * H * HD, nk = (size_t)B * T * KVH * HD, nl = (size_t)B * H * T;
    float scale = 1.0f / sqrtf((float)HD);
    auto q = rand_bf(nq, -2, 2), k = rand_bf(nk, -1, 1), v = rand_bf(nk, -1, 1), dout = rand_bf(nq, -1, 1);
    std::vector<int32_t> ds;
    if (packed) {
        ds.resize((size_t)B * T);
        for (int b = 0; b < B; b++) {
            int start = 0, left = 1 + (int)(urand() * 90);
            for (int i = 0; i < T; i++) {
                if (left-- == 0) { start = i; left = (int)(urand() * 90); }
                ds[(size_t)b * T + i] = start;
            }
        }
        if (packed == 2) /* arbitrary, non-monotone values: the clamp must hold */
            for (auto &d : ds) d = (int)(urand() * 2 * T) - T / 2;
    }
    const int32_t *dsp = packed ? ds.data() : nullptr;
    auto qb = to_bf(q), kb = to_bf(k), vb = to_bf(v), dob = to_bf(dout);
    std::vector<uint16_t> ob(nq, 0x7fc0), dqb(nq, 0x7fc0), dkb(nk, 0x7fc0), dvb(nk, 0x7fc0);
    std::vector<float> glse(nl, NAN);
    const float sl2 = scale * FA2_LOG2E;
    run_grid(dim3(B * H, (T + 127) / 128), FA2_THREADS, fwd_cfg<HD>::SMEM, [&] {
        fa2_fwd_k<HD>(ob.data(), glse.data(), qb.data(), kb.data(), vb.data(), dsp, T, H, KVH, sl2); });
    // backward, mirroring fa2_bwd_launch
    const int ntile = (T + 63) / 64;
    std::vector<float> Dsum(nl, NAN);
    std::vector<int2> stats((size_t)B * ntile);
    size_t rows = (size_t)B * T * H, threads = rows * (HD / 8);
    run_grid(dim3((unsigned)((threads + 255) / 256)), 256, 0, [&] {
        fa2_dsum_k<HD>(Dsum.data(), dob.data(), ob.data(), T, H, rows); });
    if (dsp) run_grid(dim3((unsigned)(((size_t)B * ntile * 32 + 127) / 128)), 128, 0, [&] {
        fa2_stats_k(stats.data(), dsp, B, T, ntile); });
    const int2 *sp = dsp ? stats.data() : nullptr;
    { double md = 0; auto o2 = from_bf(ob), d2 = from_bf(dob);
      for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int i = 0; i < T; i++) {
        double s = 0; for (int d = 0; d < HD; d++) s += (double)d2[((size_t)(b*T+i)*H+h)*HD+d] * o2[((size_t)(b*T+i)*H+h)*HD+d];
        double e_ = fabs(s - Dsum[((size_t)b*H+h)*T+i]); if (!(e_ <= md)) md = e_; }
      /* fp32 sums of the same bf16 products in another order: 1e-4 absolute */
      printf("  %-8s max_abs %.3g %s\n", "dsum", md, md <= 1e-4 ? "ok" : "FAIL");
      if (!(md <= 1e-4)) g_bad++; }
    run_grid(dim3(B * KVH, (T + 63) / 64), FA2_THREADS, dkdv_cfg<HD>::SMEM, [&] {
        fa2_dkdv_k<HD>(dkb.data(), dvb.data(), dob.data(), glse.data(), Dsum.data(), qb.data(), kb.data(), vb.data(), dsp, sp, T, H, KVH, scale, sl2); });
    run_grid(dim3(B * H, ntile), FA2_THREADS, dq_cfg<HD>::SMEM, [&] {
        fa2_dq_k<HD>(dqb.data(), dob.data(), glse.data(), Dsum.data(), qb.data(), kb.data(), vb.data(), dsp, sp, T, H, KVH, scale, sl2); });

    std::vector<float> out(nq), lse(nl), dq(nq), dk(nk), dv(nk);
    nmc_cpu_attention_fwd(out.data(), lse.data(), q.data(), k.data(), v.data(), dsp, B, T, H, KVH, HD, scale);
    nmc_cpu_attention_bwd(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(), q.data(), k.data(), v.data(), dsp, B, T, H, KVH, HD, scale);
    const double U = 7.8125e-3;
    check("out", from_bf(ob), out, 4e-3, 2 * U);
    check("lse", glse, lse, 1e-4, 1e-5);
    check("dq", from_bf(dqb), dq, 6e-2 * rmsv(dq), 3 * U);
    check("dk", from_bf(dkb), dk, 6e-2 * rmsv(dk), 3 * U);
    check("dv", from_bf(dvb), dv, 6e-2 * rmsv(dv), 3 * U);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int which = argc > 1 ? atoi(argv[1]) : 0;
    for (int late = 1; late >= 0; late--) {
        g_late_copies = late;
        if (which == 0 || which == 1) run_case<64>(1, 70, 2, 1, 0);
        if (which == 0 || which == 2) run_case<128>(1, 150, 2, 2, 1);
        if (which == 0 || which == 3) run_case<64>(2, 200, 4, 2, 1);
        if (which == 0 || which == 4) run_case<128>(1, 2, 1, 1, 0); /* T=1 has dq = dk = 0: no scale for atol */
        if (which == 0 || which == 5) run_case<64>(1, 260, 2, 1, 2);
        if (which == 0 || which == 6) run_case<128>(1, 300, 2, 1, 0);
        if (which == 0 || which == 7) run_case<128>(1, 200, 4, 1, 1);
        if (which == 0 || which == 8) run_case<64>(1, 129, 3, 1, 2);
    }
    printf("%s\n", g_bad ? "EMU FAIL" : "EMU PASS");
    return g_bad != 0;
}
