/* emu_rt.h — a CPU emulator of the CUDA features kernels/attention_fa2.cu uses, so that its
 * kernel bodies run unchanged on a machine without a GPU (tests/gpu/fa2_emu/run.sh).
 *
 * Each thread of a block is a ucontext coroutine; blocks run one at a time. Warp-collective
 * operations (ldmatrix, mma.sync, shuffles, warp reductions) are implemented from their PTX
 * ISA definitions: every lane deposits its operands, a warp barrier, every lane computes its
 * own result, a second barrier. cp.async copies are queued per thread and land at the
 * wait_group that retires their group (late mode: catches reading a tile before waiting
 * for it) or at issue (early mode: catches overwriting a tile others still read). Shared
 * memory starts as 0xFF bytes (bf16 and fp32 NaN), so reading a byte no copy wrote shows.
 * What this cannot check: the ISA semantics themselves (it encodes the same reading of the
 * PTX manual as the kernels), timing, register limits, and real concurrency.
 */
#pragma once
#include <ucontext.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <functional>
#include <algorithm>
#include "nmc_kernels.h"

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
#define __align__(x)

struct dim3 { unsigned x = 1, y = 1, z = 1; dim3() {} dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct int2 { int x, y; };
static inline int2 make_int2(int a, int b) { return int2{a, b}; }
struct uint4 { unsigned x, y, z, w; };
struct float2 { float x, y; };
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

struct __nv_bfloat16 { uint16_t v; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __nv_bfloat16 bf16;
static inline float bf2f(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
static inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t f2bf(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    __nv_bfloat162 r; r.x.v = f2bf(a); r.y.v = f2bf(b); return r;
}
static inline float2 __bfloat1622float2(__nv_bfloat162 v) { return float2{bf2f(v.x.v), bf2f(v.y.v)}; }

// ---- lanes as ucontexts, one block at a time -------------------------------------------
struct Lane { dim3 tid; ucontext_t ctx; bool alive; std::vector<char> stack;
              std::vector<std::vector<std::function<void()>>> groups; std::vector<std::function<void()>> open; };
static Lane g_lane[256];
static Lane *cur;
static ucontext_t g_sched;
static dim3 blockIdx, gridDim, blockDim;
#define threadIdx (cur->tid)
static unsigned char *emu_smem;
static int g_late_copies = 1; // cp.async data lands at wait_group (1) or at issue (0)

static inline void yield_() { swapcontext(&cur->ctx, &g_sched); }
struct Bar { int count = 0; unsigned gen = 0; };
static Bar g_wbar[8], g_bbar;
static inline void barrier(Bar &b, int n) {
    unsigned gen = b.gen;
    if (++b.count == n) { b.count = 0; b.gen++; return; }
    while (b.gen == gen) yield_();
}
static inline int lane_id() { return threadIdx.x & 31; }
static inline int warp_id() { return threadIdx.x >> 5; }
static inline void warp_sync() { barrier(g_wbar[warp_id()], 32); }
static inline void __syncthreads() { barrier(g_bbar, (int)blockDim.x); }

// per-warp exchange slots
struct Slot { uint32_t a[4]; uint32_t b[2]; uint32_t addr; float f; int i; };
static Slot g_slot[8][32];
static inline Slot &my() { return g_slot[warp_id()][lane_id()]; }

static inline float __shfl_xor_sync(unsigned, float v, int off) {
    my().f = v; warp_sync(); float r = g_slot[warp_id()][lane_id() ^ off].f; warp_sync(); return r;
}
static inline int __reduce_min_sync(unsigned, int v) {
    my().i = v; warp_sync(); int r = v; for (int l = 0; l < 32; l++) r = std::min(r, g_slot[warp_id()][l].i); warp_sync(); return r;
}
static inline int __reduce_max_sync(unsigned, int v) {
    my().i = v; warp_sync(); int r = v; for (int l = 0; l < 32; l++) r = std::max(r, g_slot[warp_id()][l].i); warp_sync(); return r;
}

// ---- PTX wrappers (semantics from the PTX ISA) --------------------------------------------
static inline uint32_t smem_addr(const void *p) { return (uint32_t)((const unsigned char *)p - emu_smem); }
static inline void cp_async_n(uint32_t dst, const void *src, bool valid, int n) {
    unsigned char tmp[16];
    if (valid) memcpy(tmp, src, n); else memset(tmp, 0, n);
    std::vector<unsigned char> data(tmp, tmp + n);
    auto f = [dst, data]() { memcpy(emu_smem + dst, data.data(), data.size()); };
    // the source is read at issue in both modes (inputs are constant while a kernel runs)
    if (g_late_copies) cur->open.push_back(f); else f();
}
static inline void cp_async16(uint32_t dst, const void *src, bool valid) { cp_async_n(dst, src, valid, 16); }
static inline void cp_async4(uint32_t dst, const void *src, bool valid) { cp_async_n(dst, src, valid, 4); }
static inline void cp_async_commit() { cur->groups.push_back(cur->open); cur->open.clear(); }
template <int N> static inline void cp_async_wait() {
    while ((int)cur->groups.size() > N) { for (auto &f : cur->groups.front()) f(); cur->groups.erase(cur->groups.begin()); }
}
static inline uint16_t sm16(uint32_t a) { uint16_t v; memcpy(&v, emu_smem + a, 2); return v; }
static inline void ldsm_impl(uint32_t r[4], uint32_t addr, bool trans) {
    my().addr = addr; warp_sync();
    const int l = lane_id();
    Slot *s = g_slot[warp_id()];
    for (int m = 0; m < 4; m++) {
        uint16_t lo, hi;
        if (!trans) { uint32_t row = s[8 * m + l / 4].addr; lo = sm16(row + (l % 4) * 4); hi = sm16(row + (l % 4) * 4 + 2); }
        else { lo = sm16(s[8 * m + 2 * (l % 4)].addr + (l / 4) * 2); hi = sm16(s[8 * m + 2 * (l % 4) + 1].addr + (l / 4) * 2); }
        r[m] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
    warp_sync();
}
static inline void ldsm_x4(uint32_t r[4], uint32_t addr) { ldsm_impl(r, addr, false); }
static inline void ldsm_x4_t(uint32_t r[4], uint32_t addr) { ldsm_impl(r, addr, true); }
static inline void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    Slot &m = my();
    for (int i = 0; i < 4; i++) m.a[i] = a[i];
    m.b[0] = b0; m.b[1] = b1;
    warp_sync();
    float A[16][16], B[16][8];
    Slot *s = g_slot[warp_id()];
    for (int l = 0; l < 32; l++) {
        int g = l / 4, t = l % 4;
        auto lo = [](uint32_t x) { return bf2f((uint16_t)(x & 0xffff)); };
        auto hi = [](uint32_t x) { return bf2f((uint16_t)(x >> 16)); };
        A[g][2 * t] = lo(s[l].a[0]); A[g][2 * t + 1] = hi(s[l].a[0]);
        A[g + 8][2 * t] = lo(s[l].a[1]); A[g + 8][2 * t + 1] = hi(s[l].a[1]);
        A[g][2 * t + 8] = lo(s[l].a[2]); A[g][2 * t + 9] = hi(s[l].a[2]);
        A[g + 8][2 * t + 8] = lo(s[l].a[3]); A[g + 8][2 * t + 9] = hi(s[l].a[3]);
        B[2 * t][g] = lo(s[l].b[0]); B[2 * t + 1][g] = hi(s[l].b[0]);
        B[2 * t + 8][g] = lo(s[l].b[1]); B[2 * t + 9][g] = hi(s[l].b[1]);
    }
    warp_sync();
    const int l = lane_id(), g = l / 4, t = l % 4;
    for (int e = 0; e < 4; e++) {
        int r = g + (e >> 1) * 8, c = 2 * t + (e & 1);
        float acc = d[e];
        for (int k = 0; k < 16; k++) acc += A[r][k] * B[k][c];
        d[e] = acc;
    }
}

// ---- grid runner -----------------------------------------------------------------------
static std::function<void()> g_body;
static void trampoline(int t) { g_body(); g_lane[t].alive = false; swapcontext(&g_lane[t].ctx, &g_sched); }
static void run_grid(dim3 grid, int threads, size_t smem_bytes, std::function<void()> body) {
    static std::vector<unsigned char> arena;
    arena.assign(smem_bytes + 64, 0xFF); // poison: unloaded bytes read as NaN
    emu_smem = arena.data();
    gridDim = grid; blockDim = dim3(threads);
    g_body = body;
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx = dim3(bx, by);
            std::fill(arena.begin(), arena.end(), 0xFF);
            for (int t = 0; t < threads; t++) {
                Lane &L = g_lane[t];
                L.tid = dim3(t); L.alive = true; L.groups.clear(); L.open.clear();
                L.stack.resize(1 << 18);
                getcontext(&L.ctx);
                L.ctx.uc_stack.ss_sp = L.stack.data(); L.ctx.uc_stack.ss_size = L.stack.size();
                L.ctx.uc_link = nullptr;
                makecontext(&L.ctx, (void (*)())trampoline, 1, t);
            }
            bool any = true;
            while (any) {
                any = false;
                for (int t = 0; t < threads; t++)
                    if (g_lane[t].alive) { any = true; cur = &g_lane[t]; swapcontext(&g_sched, &g_lane[t].ctx); }
            }
            for (int t = 0; t < threads; t++)
                { size_t n = g_lane[t].open.size(); for (auto &gr : g_lane[t].groups) n += gr.size();
                  if (n) { fprintf(stderr, "EMU: lane %d exited with %zu cp.async copies in flight\n", t, n); exit(3); } }
        }
}
