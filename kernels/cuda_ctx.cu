/* cuda_ctx.cu — the CUDA context (device, stream, cuBLASLt handle + workspace, scratch),
 * error recording and device-memory helpers. Ops live in their own kernels/<op>.cu.
 */
#include "cuda_common.cuh"
#include <stdlib.h>
#include <string.h>

#define LT_WORKSPACE_BYTES (32u << 20) /* cuBLASLt: 32 MiB is what Hopper kernels ask for */

void nmc_cuda_record(nmc_cuda_ctx_t *c, const char *file, int line, const char *call,
                     const char *msg) {
    if (!c || c->err[0]) return; /* keep the first error: later ones are usually fallout */
    const char *base = strrchr(file, '/');
    snprintf(c->err, sizeof c->err, "%s:%d: %s: %s", base ? base + 1 : file, line, call, msg);
}

static int ctx_init(nmc_cuda_ctx_t *c, int device) {
    int n = 0;
    CK(c, cudaGetDeviceCount(&n));
    REQUIRE(c, device >= 0 && device < n, "device %d does not exist (%d visible)", device, n);
    CK(c, cudaSetDevice(device));
    cudaDeviceProp prop;
    CK(c, cudaGetDeviceProperties(&prop, device));
    REQUIRE(c, prop.major >= 8,
            "device %d (%.64s) has compute capability %d.%d; the bf16 kernels need >= 8.0",
            device, prop.name, prop.major, prop.minor);
    c->device = device;
    CK(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CKLT(c, cublasLtCreate(&c->lt));
    c->lt_ws_bytes = LT_WORKSPACE_BYTES;
    CK(c, cudaMalloc(&c->lt_ws, c->lt_ws_bytes));
    return 0;
}

nmc_cuda_ctx_t *nmc_cuda_ctx_new(int device, char *err, size_t errcap) {
    nmc_cuda_ctx_t *c = (nmc_cuda_ctx_t *)calloc(1, sizeof *c);
    if (!c) {
        if (err && errcap) snprintf(err, errcap, "nmc_cuda_ctx_new: out of host memory");
        return NULL;
    }
    if (ctx_init(c, device) != 0) {
        if (err && errcap) snprintf(err, errcap, "%s", c->err);
        nmc_cuda_ctx_free(c);
        return NULL;
    }
    return c;
}

void nmc_cuda_ctx_free(nmc_cuda_ctx_t *c) {
    if (!c) return;
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->scratch) cudaFree(c->scratch);
    if (c->lt_ws) cudaFree(c->lt_ws);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

const char *nmc_cuda_last_error(nmc_cuda_ctx_t *c) {
    if (!c) return "nmc_cuda_last_error: no context";
    memcpy(c->err_read, c->err, sizeof c->err);
    c->err[0] = 0;
    return c->err_read;
}

int nmc_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

int nmc_cuda_sync(nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    CK(c, cudaStreamSynchronize(c->stream));
    CK(c, cudaGetLastError());
    return 0;
}

void *nmc_cuda_stream(nmc_cuda_ctx_t *c) { return c ? (void *)c->stream : NULL; }

void *nmc_cuda_scratch(nmc_cuda_ctx_t *c, size_t bytes) {
    if (bytes <= c->scratch_bytes) return c->scratch;
    size_t want = (bytes + 255) & ~(size_t)255;
    if (c->scratch) {
        /* the old buffer may still be in use by queued kernels */
        if (cudaStreamSynchronize(c->stream) != cudaSuccess) {
            nmc_cuda_record(c, __FILE__, __LINE__, "cudaStreamSynchronize",
                            cudaGetErrorString(cudaGetLastError()));
            return NULL;
        }
        cudaFree(c->scratch);
        c->scratch = NULL;
        c->scratch_bytes = 0;
    }
    cudaError_t e = cudaMalloc(&c->scratch, want);
    if (e != cudaSuccess) {
        char m[128];
        snprintf(m, sizeof m, "%s (asked for %zu bytes of scratch)", cudaGetErrorString(e), want);
        nmc_cuda_record(c, __FILE__, __LINE__, "cudaMalloc", m);
        c->scratch = NULL;
        return NULL;
    }
    c->scratch_bytes = want;
    return c->scratch;
}

void *nmc_cuda_malloc(nmc_cuda_ctx_t *c, size_t bytes) {
    if (!c) return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        char m[128];
        snprintf(m, sizeof m, "%s (asked for %zu bytes)", cudaGetErrorString(e), bytes);
        nmc_cuda_record(c, __FILE__, __LINE__, "cudaMalloc", m);
        cudaGetLastError();
        return NULL;
    }
    return p;
}

void nmc_cuda_free(nmc_cuda_ctx_t *c, void *p) {
    if (!p) return;
    cudaError_t e = cudaFree(p);
    if (e != cudaSuccess) nmc_cuda_record(c, __FILE__, __LINE__, "cudaFree", cudaGetErrorString(e));
}

int nmc_cuda_memcpy_h2d(nmc_cuda_ctx_t *c, void *dst, const void *host_src, size_t bytes) {
    REQUIRE_CTX(c);
    CK(c, cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
    /* pageable host memory: the copy is staged before return, but sync so callers may
     * free host_src immediately regardless of the driver's staging policy */
    CK(c, cudaStreamSynchronize(c->stream));
    return 0;
}

int nmc_cuda_memcpy_d2h(nmc_cuda_ctx_t *c, void *host_dst, const void *src, size_t bytes) {
    REQUIRE_CTX(c);
    CK(c, cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CK(c, cudaStreamSynchronize(c->stream));
    return 0;
}

int nmc_cuda_memset0(nmc_cuda_ctx_t *c, void *dst, size_t bytes) {
    REQUIRE_CTX(c);
    CK(c, cudaMemsetAsync(dst, 0, bytes, c->stream));
    return 0;
}
