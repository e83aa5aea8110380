/* rope.cu — rotary position embedding (CUDA), HF rotate_half pairing as rope.c.
 * x [N, nh*hd] bf16 rotated in place; pos [N] int32; inv_freq [hd/2] fp32 (device).
 * Angle (float)pos * inv_freq[i] in fp32 and full-precision sincosf (angles reach 1e5
 * rad: the fast intrinsics are wrong there), one rounding to bf16 per element.
 * Test tolerance: rtol 1.6e-2 + atol 1e-2 (inputs ~1; one bf16 rounding of the output).
 */
#include "cuda_common.cuh"

/* one thread per (token, head, i < hd/2); sign -1 = inverse rotation (backward) */
__global__ void rope_k(nmc_bf16 *x, const int32_t *pos, const float *inv_freq, int N, int nh,
                       int half, float sign) {
    size_t total = (size_t)N * nh * half;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(t % half);
        size_t rh = t / half; /* row * nh + head */
        size_t r = rh / nh;
        float s, cs;
        sincosf((float)pos[r] * inv_freq[i], &s, &cs);
        s *= sign;
        size_t o = rh * (size_t)(2 * half) + i;
        float x1 = ldbf(x, o), x2 = ldbf(x, o + half);
        stbf(x, o, x1 * cs - x2 * s);
        stbf(x, o + half, x2 * cs + x1 * s);
    }
}

static int rope_run(nmc_bf16 *x, const int32_t *pos, const float *inv_freq, int N, int nh,
                    int hd, float sign, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, N >= 0 && nh > 0 && hd >= 2 && hd % 2 == 0 && x && pos && inv_freq,
            "bad arguments N=%d nh=%d hd=%d (hd must be even)", N, nh, hd);
    size_t total = (size_t)N * nh * (hd / 2);
    if (!total) return 0;
    rope_k<<<grid_for(total, 256, 65535), 256, 0, c->stream>>>(x, pos, inv_freq, N, nh, hd / 2, sign);
    CKLAUNCH(c, "rope_k");
    return 0;
}

int nmc_cuda_rope_fwd(nmc_bf16 *x, const int32_t *pos, const float *inv_freq, int N, int nh,
                      int hd, nmc_cuda_ctx_t *c) {
    return rope_run(x, pos, inv_freq, N, nh, hd, 1.f, c);
}

int nmc_cuda_rope_bwd(nmc_bf16 *dx, const int32_t *pos, const float *inv_freq, int N, int nh,
                      int hd, nmc_cuda_ctx_t *c) {
    return rope_run(dx, pos, inv_freq, N, nh, hd, -1.f, c);
}
