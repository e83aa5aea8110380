/* nmc_cuda_extra.h — CUDA entry points the device layer (runtime/dev_cuda.c) needs beyond
 * kernels/nmc_cuda.h: bf16 residual adds, NEFTune noise, device-to-device copies, a pinned
 * staging ring for small asynchronous uploads, device listing and memory accounting.
 * Implemented in kernels/dev_extra.cu. Conventions as nmc_cuda.h: device pointers, calls
 * asynchronous on the context's stream, 0 or -1 with nmc_cuda_last_error().
 */
#ifndef NMC_CUDA_EXTRA_H
#define NMC_CUDA_EXTRA_H
#include "nmc_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = bf16(y[i] + a * x[i]) (fp32 math, one rounding), n elements. y == x allowed.
 * Test tolerance vs nmc_cpu_axpy on bf16-rounded inputs: 1 bf16 ulp (rel 2^-8). */
int nmc_cuda_add_bf16(nmc_bf16 *y, const nmc_bf16 *x, size_t n, float a, nmc_cuda_ctx_t *c);

/* x[i] = bf16(x[i] + mag * (2u - 1)), u = nmc_dropout_uniform(seed, offset + i): the
 * NEFTune noise of dev_cpu.c drawn from the same counter-based RNG (same u on both). */
int nmc_cuda_add_uniform_noise_bf16(nmc_bf16 *x, size_t n, float mag, uint64_t seed,
                                    uint64_t offset, nmc_cuda_ctx_t *c);

/* Re-pitch head vectors: dst [rows, dst_hd], src [rows, src_hd] (bf16);
 * dst[r, j] = j < src_hd ? src[r, j] : 0. Pads head dims the attention kernels lack
 * (dst_hd > src_hd) and strips the padding again (dst_hd < src_hd). Exact. */
int nmc_cuda_copy_heads(nmc_bf16 *dst, int dst_hd, const nmc_bf16 *src, int src_hd,
                        size_t rows, nmc_cuda_ctx_t *c);

/* Stream-ordered device -> device copy (no host sync). Overlapping ranges are not allowed
 * (dst == src is a no-op). */
int nmc_cuda_memcpy_d2d(nmc_cuda_ctx_t *c, void *dst, const void *src, size_t bytes);

/* Pinned staging ring for small host -> device uploads (token ids, labels, positions)
 * that must not synchronize the stream: the host bytes are copied into pinned memory and
 * the device copy is queued; the ring only waits for the GPU when it wraps around (once
 * per `bytes` of uploads). Uploads larger than half the ring fall back to a synchronous
 * copy. One stager per context; not thread-safe (as the context). */
typedef struct nmc_cuda_stager nmc_cuda_stager_t;
nmc_cuda_stager_t *nmc_cuda_stager_new(nmc_cuda_ctx_t *c, size_t bytes); /* NULL + last_error */
void nmc_cuda_stager_free(nmc_cuda_stager_t *s);
int nmc_cuda_stager_upload(nmc_cuda_stager_t *s, void *dst, const void *host_src, size_t bytes,
                           nmc_cuda_ctx_t *c);

/* Name, total memory (bytes) and compute capability of visible device `index`; 0 or -1
 * (no such device / no driver) with a message in err[errcap]. Creates no context state
 * beyond what the CUDA runtime does on first use. */
int nmc_cuda_device_info(int index, char *name, size_t namecap, size_t *total_bytes,
                         int *cc_major, int *cc_minor, char *err, size_t errcap);

/* Bytes the context itself holds on the device: op scratch + cuBLASLt workspace. */
size_t nmc_cuda_ctx_bytes(nmc_cuda_ctx_t *c);
/* cudaMemGetInfo on the context's device (free, total); 0 or -1. */
int nmc_cuda_mem_info(nmc_cuda_ctx_t *c, size_t *free_bytes, size_t *total_bytes);

#ifdef __cplusplus
}
#endif
#endif
