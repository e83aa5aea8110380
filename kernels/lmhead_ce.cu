/* lmhead_ce.cu — fused, chunked lm_head projection + cross-entropy + backward (CUDA).
 *
 * Same contract as lmhead_ce.c (x [N,D] bf16, W [V,D] bf16, labels [N], -100 ignored, a
 * label outside [0, V) makes the loss NaN and gives no gradient), except: the loss SUM is
 * added to the device double *loss_sum, dW is fp32 (accumulated), dx is bf16.
 * Per chunk of `rows` tokens (chunk <= 0: at most 2^24 logits, 64 MiB):
 *   1. logits [rows, V] fp32 = x_c W^T            (cuBLASLt, scratch buffer)
 *   2. one block per row: max / sum-exp / sum of logits, loss; then, in place, the row's
 *      fp32 logits are overwritten by its bf16 dlogits packed in the FIRST HALF of the
 *      row's own bytes (bf16 matrix with leading dimension 2V). Element j's bf16 lands in
 *      the bytes of fp32 element j/2 <= j, read before the barrier that precedes the write.
 *   3. dx_c = dlogits W (bf16 out), dW += dlogits^T x_c (fp32 out), both cuBLASLt.
 * Row losses are summed in row order by one thread: deterministic. Never [N, V].
 * Test tolerance: loss rtol 1e-5 (fp32 logits from exact bf16 products; the CPU sums in
 * double); dx, dW atol 2% of the gradient RMS + rtol 1.6e-2 (dlogits rounded to bf16).
 */
#include "cuda_common.cuh"
#include <math.h>

#define CE_THREADS 1024
#define CE_MAX_LOGITS ((size_t)1 << 24)
#define CE_IGNORE (-100)

__global__ void __launch_bounds__(CE_THREADS)
ce_row_k(float *logits, float *rowloss, const int32_t *labels, int V, float eps, float gs,
         int grad) {
    __shared__ float sh[32];
    float *l = logits + (size_t)blockIdx.x * V;
    bf16 *dl = reinterpret_cast<bf16 *>(l); /* same row, bf16 view */
    const int y = labels[blockIdx.x];
    const bool ignored = y == CE_IGNORE, bad = !ignored && (y < 0 || y >= V);
    if (ignored || bad) {
        if (threadIdx.x == 0) rowloss[blockIdx.x] = bad ? NAN : 0.f;
        if (grad) /* bf16 zeros cover bytes [0, 2V): only the first half of the row */
            for (int j = threadIdx.x; j < V; j += blockDim.x) dl[j] = __float2bfloat16_rn(0.f);
        return;
    }
    /* pass 1: online max / sum-exp per thread, then combine */
    float m = -INFINITY, s = 0.f, zsum = 0.f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float z = l[j];
        zsum += z;
        if (z > m) {
            s = s * expf(m - z) + 1.f;
            m = z;
        } else {
            s += expf(z - m);
        }
    }
    float M = block_max(m, sh);
    float S = block_sum(m == -INFINITY ? 0.f : s * expf(m - M), sh);
    float Z = block_sum(zsum, sh);
    const float zy = l[y];
    const float lse = M + logf(S);
    if (threadIdx.x == 0) rowloss[blockIdx.x] = lse - (1.f - eps) * zy - eps * (Z / (float)V);
    if (!grad) return;
    /* pass 2: dlogits in place (see the header for why one barrier per step is enough) */
    const float off = eps / (float)V;
    for (int base = 0; base < V; base += blockDim.x) {
        int j = base + threadIdx.x;
        float z = j < V ? l[j] : 0.f;
        __syncthreads();
        if (j < V) {
            float g = expf(z - lse) - off - (j == y ? 1.f - eps : 0.f);
            dl[j] = __float2bfloat16_rn(gs * g);
        }
    }
}

__global__ void ce_loss_add_k(double *loss_sum, const float *rowloss, int rows) {
    if (threadIdx.x != 0) return;
    double s = 0.0;
    for (int r = 0; r < rows; r++) s += (double)rowloss[r];
    *loss_sum += s;
}

int nmc_cuda_lmhead_ce(double *loss_sum, nmc_bf16 *dx, float *dW, const nmc_bf16 *x,
                       const nmc_bf16 *W, const int32_t *labels, int N, int D, int V,
                       float label_smoothing, float grad_scale, int chunk, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, N >= 0 && D > 0 && V > 0, "bad shape N=%d D=%d V=%d", N, D, V);
    REQUIRE(c, loss_sum && x && W && labels, "null tensor (loss_sum, x, W and labels are required)");
    if (!N) return 0;
    if (chunk <= 0) chunk = (int)(CE_MAX_LOGITS / (size_t)V > 0 ? CE_MAX_LOGITS / (size_t)V : 1);
    if (chunk > N) chunk = N;
    size_t lbytes = ((size_t)chunk * V * sizeof(float) + 255) & ~(size_t)255;
    unsigned char *scr = (unsigned char *)nmc_cuda_scratch(c, lbytes + (size_t)chunk * sizeof(float));
    if (!scr) return -1;
    float *logits = (float *)scr, *rowloss = (float *)(scr + lbytes);
    const int grad = dx != NULL;
    for (int r0 = 0; r0 < N; r0 += chunk) {
        int rows = N - r0 < chunk ? N - r0 : chunk;
        const nmc_bf16 *xc = x + (size_t)r0 * D;
        if (nmc_cuda_matmul_ld(c, logits, CUDA_R_32F, xc, D, W, D, rows, V, D, 0, 1, 1.f, 0.f))
            return -1;
        ce_row_k<<<rows, CE_THREADS, 0, c->stream>>>(logits, rowloss, labels + r0, V,
                                                     label_smoothing, grad_scale, grad);
        CKLAUNCH(c, "ce_row_k");
        ce_loss_add_k<<<1, 32, 0, c->stream>>>(loss_sum, rowloss, rows);
        CKLAUNCH(c, "ce_loss_add_k");
        if (!grad) continue;
        /* dlogits: bf16 [rows, V] with leading dimension 2V inside the logits buffer */
        if (nmc_cuda_matmul_ld(c, dx + (size_t)r0 * D, CUDA_R_16BF, logits, 2 * V, W, D, rows, D,
                               V, 0, 0, 1.f, 0.f))
            return -1;
        if (dW && nmc_cuda_matmul_ld(c, dW, CUDA_R_32F, logits, 2 * V, xc, D, V, D, rows, 1, 0,
                                     1.f, 1.f))
            return -1;
    }
    return 0;
}
