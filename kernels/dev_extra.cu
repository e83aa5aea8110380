/* dev_extra.cu — the CUDA pieces runtime/dev_cuda.c needs that kernels/nmc_cuda.h lacks:
 * bf16 residual add, NEFTune uniform noise, device-to-device copy, the pinned upload
 * staging ring, device listing and memory accounting (API: kernels/nmc_cuda_extra.h).
 *
 * Tolerances (tests/gpu/test_dev_cuda.c): add_bf16 within 1 bf16 ulp of fp32 y + a*x on
 * the same bf16 inputs; noise: the same uniform draws as dev_cpu.c (exact u), one bf16
 * rounding of the sum. fp32 math uses _rn intrinsics (no FMA contraction), as the CPU.
 */
#include "cuda_common.cuh"
#include "nmc_cuda_extra.h"
#include "nmc_dropout_rng.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXTRA_THREADS 256
#define EXTRA_GRID_CAP 65535u

__device__ __forceinline__ float axpy1(float y, float x, float a) {
    return __fadd_rn(y, __fmul_rn(a, x));
}

/* 8 bf16 per 16-byte vector (both pointers 16-byte aligned) */
__global__ void add_bf16_vec_k(uint4 *y, const uint4 *x, size_t nv, float a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv;
         i += (size_t)gridDim.x * blockDim.x) {
        uint4 yv = y[i];
        const uint4 xv = x[i];
        bf16 *yb = reinterpret_cast<bf16 *>(&yv);
        const bf16 *xb = reinterpret_cast<const bf16 *>(&xv);
#pragma unroll
        for (int j = 0; j < 8; j++)
            yb[j] = __float2bfloat16_rn(axpy1(__bfloat162float(yb[j]), __bfloat162float(xb[j]), a));
        y[i] = yv;
    }
}

__global__ void add_bf16_k(nmc_bf16 *y, const nmc_bf16 *x, size_t lo, size_t n, float a) {
    for (size_t i = lo + blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        stbf(y, i, axpy1(ldbf(y, i), ldbf(x, i), a));
}

int nmc_cuda_add_bf16(nmc_bf16 *y, const nmc_bf16 *x, size_t n, float a, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, y && x, "null tensor");
    if (!n) return 0;
    size_t nv = 0;
    if (((uintptr_t)y % 16) == 0 && ((uintptr_t)x % 16) == 0) nv = n / 8;
    if (nv) {
        add_bf16_vec_k<<<grid_for(nv, EXTRA_THREADS, EXTRA_GRID_CAP), EXTRA_THREADS, 0, c->stream>>>(
            reinterpret_cast<uint4 *>(y), reinterpret_cast<const uint4 *>(x), nv, a);
        CKLAUNCH(c, "add_bf16_vec_k");
    }
    size_t lo = nv * 8;
    if (lo < n) {
        add_bf16_k<<<grid_for(n - lo, EXTRA_THREADS, EXTRA_GRID_CAP), EXTRA_THREADS, 0, c->stream>>>(
            y, x, lo, n, a);
        CKLAUNCH(c, "add_bf16_k");
    }
    return 0;
}

__global__ void noise_bf16_k(nmc_bf16 *x, size_t n, float mag, uint64_t seed, uint64_t offset) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float u = nmc_dropout_uniform(seed, offset + i);
        float r = __fsub_rn(__fmul_rn(2.0f, u), 1.0f);
        stbf(x, i, __fadd_rn(ldbf(x, i), __fmul_rn(mag, r)));
    }
}

int nmc_cuda_add_uniform_noise_bf16(nmc_bf16 *x, size_t n, float mag, uint64_t seed,
                                    uint64_t offset, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, x, "null tensor");
    if (!n) return 0;
    noise_bf16_k<<<grid_for(n, EXTRA_THREADS, EXTRA_GRID_CAP), EXTRA_THREADS, 0, c->stream>>>(
        x, n, mag, seed, offset);
    CKLAUNCH(c, "noise_bf16_k");
    return 0;
}

__global__ void copy_heads_k(nmc_bf16 *dst, int dst_hd, const nmc_bf16 *src, int src_hd,
                             size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / (size_t)dst_hd;
        int j = (int)(i - r * (size_t)dst_hd);
        dst[i] = j < src_hd ? src[r * (size_t)src_hd + (size_t)j] : (nmc_bf16)0;
    }
}

int nmc_cuda_copy_heads(nmc_bf16 *dst, int dst_hd, const nmc_bf16 *src, int src_hd,
                        size_t rows, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, dst && src && dst_hd > 0 && src_hd > 0, "bad arguments dst_hd=%d src_hd=%d",
            dst_hd, src_hd);
    size_t n = rows * (size_t)dst_hd;
    if (!n) return 0;
    copy_heads_k<<<grid_for(n, EXTRA_THREADS, EXTRA_GRID_CAP), EXTRA_THREADS, 0, c->stream>>>(
        dst, dst_hd, src, src_hd, n);
    CKLAUNCH(c, "copy_heads_k");
    return 0;
}

int nmc_cuda_memcpy_d2d(nmc_cuda_ctx_t *c, void *dst, const void *src, size_t bytes) {
    REQUIRE_CTX(c);
    if (!bytes || dst == src) return 0;
    REQUIRE(c, dst && src, "null pointer");
    CK(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    return 0;
}

/* ---- pinned staging ring ---------------------------------------------------------- */

struct nmc_cuda_stager {
    unsigned char *host; /* pinned, cap bytes */
    size_t cap, pos;     /* next free byte; wraps to 0 after a full-ring wait */
    cudaEvent_t ev;      /* recorded at a wrap, waited on before reuse */
};

nmc_cuda_stager_t *nmc_cuda_stager_new(nmc_cuda_ctx_t *c, size_t bytes) {
    if (!c) return NULL;
    nmc_cuda_stager_t *s = (nmc_cuda_stager_t *)calloc(1, sizeof *s);
    if (!s) {
        nmc_cuda_record(c, __FILE__, __LINE__, "calloc", "out of host memory");
        return NULL;
    }
    cudaError_t e = cudaMallocHost((void **)&s->host, bytes);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->ev, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        nmc_cuda_record(c, __FILE__, __LINE__, "cudaMallocHost/cudaEventCreate", cudaGetErrorString(e));
        cudaGetLastError();
        if (s->host) cudaFreeHost(s->host);
        free(s);
        return NULL;
    }
    s->cap = bytes;
    return s;
}

void nmc_cuda_stager_free(nmc_cuda_stager_t *s) {
    if (!s) return;
    /* queued copies may still read the pinned buffer */
    if (s->ev) cudaEventSynchronize(s->ev);
    cudaDeviceSynchronize();
    if (s->ev) cudaEventDestroy(s->ev);
    if (s->host) cudaFreeHost(s->host);
    free(s);
}

int nmc_cuda_stager_upload(nmc_cuda_stager_t *s, void *dst, const void *host_src, size_t bytes,
                           nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    if (!bytes) return 0;
    if (!s || bytes > s->cap / 2) return nmc_cuda_memcpy_h2d(c, dst, host_src, bytes);
    size_t need = (bytes + 255) & ~(size_t)255;
    if (s->pos + need > s->cap) {
        /* every copy queued from the ring so far precedes this event on the stream */
        CK(c, cudaEventRecord(s->ev, c->stream));
        CK(c, cudaEventSynchronize(s->ev));
        s->pos = 0;
    }
    memcpy(s->host + s->pos, host_src, bytes);
    CK(c, cudaMemcpyAsync(dst, s->host + s->pos, bytes, cudaMemcpyHostToDevice, c->stream));
    s->pos += need;
    return 0;
}

/* ---- devices and memory ------------------------------------------------------------- */

int nmc_cuda_device_info(int index, char *name, size_t namecap, size_t *total_bytes,
                         int *cc_major, int *cc_minor, char *err, size_t errcap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (err && errcap) snprintf(err, errcap, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        return -1;
    }
    if (index < 0 || index >= n) {
        if (err && errcap) snprintf(err, errcap, "device %d does not exist (%d visible)", index, n);
        return -1;
    }
    cudaDeviceProp p;
    e = cudaGetDeviceProperties(&p, index);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (err && errcap) snprintf(err, errcap, "cudaGetDeviceProperties: %s", cudaGetErrorString(e));
        return -1;
    }
    if (name && namecap) snprintf(name, namecap, "%s", p.name);
    if (total_bytes) *total_bytes = p.totalGlobalMem;
    if (cc_major) *cc_major = p.major;
    if (cc_minor) *cc_minor = p.minor;
    return 0;
}

size_t nmc_cuda_ctx_bytes(nmc_cuda_ctx_t *c) { return c ? c->scratch_bytes + c->lt_ws_bytes : 0; }

int nmc_cuda_mem_info(nmc_cuda_ctx_t *c, size_t *free_bytes, size_t *total_bytes) {
    REQUIRE_CTX(c);
    size_t f = 0, t = 0;
    CK(c, cudaSetDevice(c->device));
    CK(c, cudaMemGetInfo(&f, &t));
    if (free_bytes) *free_bytes = f;
    if (total_bytes) *total_bytes = t;
    return 0;
}
