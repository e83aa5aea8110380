/* optim.cu — AdamW (fp32 and fp32-master + bf16-copy variants), sum of squares, scale,
 * gradient clipping and axpy (CUDA).
 * AdamW follows adamw.c (torch.optim.AdamW foreach=False) op by op; the scalars are
 * computed on the host in double exactly as adamw.c does. sumsq reduces in double in a fixed order (a fixed
 * grid of SUMSQ_BLOCKS partials, then one block), so it is bitwise reproducible.
 * Elementwise math uses _rn intrinsics (no FMA contraction), so AdamW, scale and axpy
 * give the CPU's bits. Test tolerance: AdamW p/m/v 1 fp32 ulp (rtol 1.2e-7, atol
 * 1e-12); scale/axpy exact; sumsq rel 1e-9 (double, different order).
 */
#include "cuda_common.cuh"
#include "nmc_adam_math.cuh"
#include <math.h>

#define SUMSQ_BLOCKS 256

__global__ void adamw_k(float *p, const float *g, float *m, float *v, size_t n, adam_hp h) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        p[i] = adam_one(p[i], g[i], m, v, i, h);
}

__global__ void adamw_master_k(float *p, nmc_bf16 *pb, const float *g, float *m, float *v,
                               size_t n, adam_hp h) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float np = adam_one(p[i], g[i], m, v, i, h);
        p[i] = np;
        stbf(pb, i, np);
    }
}

static int adam_hparams(nmc_cuda_ctx_t *c, adam_hp *h, float lr, float beta1, float beta2,
                        float eps, float wd, int adam_l2, long step) {
    REQUIRE(c, step >= 1, "step %ld must be >= 1 (1-based)", step);
    adam_hp_fill(h, lr, beta1, beta2, eps, wd, adam_l2, step);
    return 0;
}

int nmc_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr,
                   float beta1, float beta2, float eps, float wd, int adam_l2, long step,
                   nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, p && g && m && v, "null tensor");
    adam_hp h;
    if (adam_hparams(c, &h, lr, beta1, beta2, eps, wd, adam_l2, step)) return -1;
    if (!n) return 0;
    adamw_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(p, g, m, v, n, h);
    CKLAUNCH(c, "adamw_k");
    return 0;
}

int nmc_cuda_adamw_master(float *p, nmc_bf16 *p_bf16, const float *g, float *m, float *v,
                          size_t n, float lr, float beta1, float beta2, float eps, float wd,
                          int adam_l2, long step, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, p && p_bf16 && g && m && v, "null tensor");
    adam_hp h;
    if (adam_hparams(c, &h, lr, beta1, beta2, eps, wd, adam_l2, step)) return -1;
    if (!n) return 0;
    adamw_master_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(p, p_bf16, g, m, v, n, h);
    CKLAUNCH(c, "adamw_master_k");
    return 0;
}

/* ---- sum of squares ------------------------------------------------------------------ */
template <typename T> __device__ __forceinline__ double as_d(const T *x, size_t i);
template <> __device__ __forceinline__ double as_d<float>(const float *x, size_t i) { return x[i]; }
template <> __device__ __forceinline__ double as_d<nmc_bf16>(const nmc_bf16 *x, size_t i) {
    return ldbf(x, i);
}

template <typename T>
__global__ void sumsq_pass1(double *partial, const T *x, size_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        double v = as_d<T>(x, i);
        s += v * v;
    }
    s = warp_sum_d(s);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) sh[w] = s;
    __syncthreads();
    if (w == 0) {
        s = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
        s = warp_sum_d(s);
        if (lane == 0) partial[blockIdx.x] = s;
    }
}

__global__ void sumsq_pass2(double *out, const double *partial, int np) {
    if (threadIdx.x != 0) return;
    double s = 0.0;
    for (int i = 0; i < np; i++) s += partial[i];
    *out += s;
}

template <typename T>
static int sumsq_run(double *out, const T *x, size_t n, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, out && x, "null pointer");
    if (!n) return 0;
    double *partial = (double *)nmc_cuda_scratch(c, SUMSQ_BLOCKS * sizeof(double));
    if (!partial) return -1;
    sumsq_pass1<T><<<SUMSQ_BLOCKS, 256, 0, c->stream>>>(partial, x, n);
    CKLAUNCH(c, "sumsq_pass1");
    sumsq_pass2<<<1, 32, 0, c->stream>>>(out, partial, SUMSQ_BLOCKS);
    CKLAUNCH(c, "sumsq_pass2");
    return 0;
}

int nmc_cuda_sumsq(double *out, const float *x, size_t n, nmc_cuda_ctx_t *c) {
    return sumsq_run<float>(out, x, n, c);
}
int nmc_cuda_sumsq_bf16(double *out, const nmc_bf16 *x, size_t n, nmc_cuda_ctx_t *c) {
    return sumsq_run<nmc_bf16>(out, x, n, c);
}

/* ---- scale / clip / axpy ---------------------------------------------------------------- */
__global__ void scale_k(float *x, size_t n, float s, const double *sumsq, float max_norm) {
    if (sumsq) { /* torch clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1 */
        double coef = (double)max_norm / (sqrt(*sumsq) + 1e-6);
        if (coef >= 1.0) return;
        s = (float)coef;
    }
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

__global__ void axpy_k(float *y, const float *x, size_t n, float a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i])); /* no FMA: same bits as the CPU */
}

int nmc_cuda_scale(float *x, size_t n, float s, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, x, "null tensor");
    if (!n) return 0;
    scale_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(x, n, s, NULL, 0.f);
    CKLAUNCH(c, "scale_k");
    return 0;
}

int nmc_cuda_clip_scale(float *x, size_t n, const double *sumsq, float max_norm,
                        nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, x && sumsq && max_norm > 0.f, "null tensor or max_norm <= 0");
    if (!n) return 0;
    scale_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(x, n, 1.f, sumsq, max_norm);
    CKLAUNCH(c, "scale_k");
    return 0;
}

int nmc_cuda_axpy(float *y, const float *x, size_t n, float a, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, y && x, "null tensor");
    if (!n) return 0;
    axpy_k<<<grid_for(n, 256, 65535), 256, 0, c->stream>>>(y, x, n, a);
    CKLAUNCH(c, "axpy_k");
    return 0;
}
