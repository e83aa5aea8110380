/* matmul.cu — row-major matmul on cuBLASLt (bf16 inputs, fp32 compute, bf16 or fp32 C) and
 * the bias ops. Row-major C[M,N] is column-major C^T[N,M], so we ask cuBLASLt for
 * C^T = op(B)^T-as-stored @ op(A)^T-as-stored: the first cuBLAS operand is our B, the
 * second our A, m = N, n = M. Test tolerance (bf16 C): rtol 1.6e-2, atol 1e-2*sqrt(K)/32.
 */
#include "cuda_common.cuh"
#include <string.h>

static unsigned align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 2 && (a & (al - 1))) al >>= 1;
    return al;
}

/* algo for this shape, from the per-context cache or the heuristic */
static int find_algo(nmc_cuda_ctx_t *c, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la,
                     cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, const int key[9],
                     const unsigned al[3], cublasLtMatmulAlgo_t *algo) {
    for (int i = 0; i < NMC_LT_CACHE; i++) {
        struct lt_plan *p = &c->plans[i];
        if (p->valid && !memcmp(p->key, key, sizeof p->key) && !memcmp(p->al, al, sizeof p->al)) {
            *algo = p->algo;
            return 0;
        }
    }
    cublasLtMatmulPreference_t pref;
    CKLT(c, cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = c->lt_ws_bytes;
    uint32_t a0 = al[0], a1 = al[1], a2 = al[2];
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a0, sizeof a0);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a1, sizeof a1);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &a2, sizeof a2);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &a2, sizeof a2);
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(c->lt, op, la, lb, lc, lc, pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    CKLT(c, s);
    REQUIRE(c, nres > 0, "cuBLASLt has no algorithm for M=%d N=%d K=%d transA=%d transB=%d",
            key[0], key[1], key[2], key[3], key[4]);
    struct lt_plan *p = &c->plans[c->next_plan];
    c->next_plan = (c->next_plan + 1) % NMC_LT_CACHE;
    p->valid = 1;
    memcpy(p->key, key, sizeof p->key);
    memcpy(p->al, al, sizeof p->al);
    p->algo = res.algo;
    *algo = res.algo;
    return 0;
}

struct lt_descs {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
};

static void descs_free(struct lt_descs *d) {
    if (d->op) cublasLtMatmulDescDestroy(d->op);
    if (d->la) cublasLtMatrixLayoutDestroy(d->la);
    if (d->lb) cublasLtMatrixLayoutDestroy(d->lb);
    if (d->lc) cublasLtMatrixLayoutDestroy(d->lc);
}

static int descs_make(nmc_cuda_ctx_t *c, struct lt_descs *d, cudaDataType_t ctype, int lda,
                      int ldb, int M, int N, int K, int transA, int transB) {
    cublasOperation_t opa = transB ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS "A" = our B */
    cublasOperation_t opb = transA ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS "B" = our A */
    CKLT(c, cublasLtMatmulDescCreate(&d->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CKLT(c, cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CKLT(c, cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    /* stored column-major shapes: our B is [K,N] row-major = [N rows, K cols] col-major
     * (transB=0) or [N,K] row-major = [K rows, N cols]; likewise for A with M */
    CKLT(c, cublasLtMatrixLayoutCreate(&d->la, CUDA_R_16BF, transB ? K : N, transB ? N : K, ldb));
    CKLT(c, cublasLtMatrixLayoutCreate(&d->lb, CUDA_R_16BF, transA ? M : K, transA ? K : M, lda));
    CKLT(c, cublasLtMatrixLayoutCreate(&d->lc, ctype, N, M, N));
    return 0;
}

int nmc_cuda_matmul_ld(nmc_cuda_ctx_t *c, void *C, cudaDataType_t ctype, const void *A,
                       int lda, const void *B, int ldb, int M, int N, int K, int transA,
                       int transB, float alpha, float beta) {
    REQUIRE_CTX(c);
    REQUIRE(c, M > 0 && N > 0 && K > 0, "bad shape M=%d N=%d K=%d (all must be > 0)", M, N, K);
    REQUIRE(c, A && B && C, "null matrix pointer");
    REQUIRE(c, lda >= (transA ? M : K) && ldb >= (transB ? K : N),
            "leading dimension too small (lda=%d ldb=%d)", lda, ldb);
    struct lt_descs d;
    memset(&d, 0, sizeof d);
    int rc = descs_make(c, &d, ctype, lda, ldb, M, N, K, transA, transB);
    cublasLtMatmulAlgo_t algo;
    int key[9] = {M, N, K, transA, transB, lda, ldb, (int)ctype, beta != 0.f};
    unsigned al[3] = {align_of(B), align_of(A), align_of(C)};
    if (rc == 0) rc = find_algo(c, d.op, d.la, d.lb, d.lc, key, al, &algo);
    if (rc == 0) {
        cublasStatus_t s = cublasLtMatmul(c->lt, d.op, &alpha, B, d.la, A, d.lb, &beta, C, d.lc,
                                          C, d.lc, &algo, c->lt_ws, c->lt_ws_bytes, c->stream);
        if (s != CUBLAS_STATUS_SUCCESS) {
            char m[128];
            snprintf(m, sizeof m, "cublas status %d (M=%d N=%d K=%d transA=%d transB=%d)",
                     (int)s, M, N, K, transA, transB);
            nmc_cuda_record(c, __FILE__, __LINE__, "cublasLtMatmul", m);
            rc = -1;
        }
    }
    descs_free(&d);
    return rc;
}

int nmc_cuda_matmul(nmc_bf16 *C, const nmc_bf16 *A, const nmc_bf16 *B, int M, int N, int K,
                    int transA, int transB, float alpha, float beta, nmc_cuda_ctx_t *c) {
    return nmc_cuda_matmul_ld(c, C, CUDA_R_16BF, A, transA ? M : K, B, transB ? K : N, M, N,
                              K, transA, transB, alpha, beta);
}

int nmc_cuda_matmul_f32c(float *C, const nmc_bf16 *A, const nmc_bf16 *B, int M, int N, int K,
                         int transA, int transB, float alpha, float beta, nmc_cuda_ctx_t *c) {
    return nmc_cuda_matmul_ld(c, C, CUDA_R_32F, A, transA ? M : K, B, transB ? K : N, M, N,
                              K, transA, transB, alpha, beta);
}

/* ---- bias --------------------------------------------------------------------------- */
__global__ void bias_fwd_k(nmc_bf16 *y, const nmc_bf16 *b, size_t total, int C) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        stbf(y, i, ldbf(y, i) + ldbf(b, i % C));
}

int nmc_cuda_bias_fwd(nmc_bf16 *y, const nmc_bf16 *b, int N, int C, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, N >= 0 && C > 0 && y && b, "bad arguments N=%d C=%d", N, C);
    size_t total = (size_t)N * C;
    if (!total) return 0;
    bias_fwd_k<<<grid_for(total, 256, 65535), 256, 0, c->stream>>>(y, b, total, C);
    CKLAUNCH(c, "bias_fwd_k");
    return 0;
}

/* Column sums in two deterministic passes: pass 1 gives partial[r][col] for row slab r
 * (fixed split of the rows), pass 2 adds the slabs in order. mode 0: sum dy; mode 1:
 * sum dy * x * rstd[row] (RMSNorm dw). Shared with rmsnorm.cu. */
#define COLSUM_SLABS_MAX 128
__global__ void colsum_pass1(float *partial, const nmc_bf16 *dy, const nmc_bf16 *x,
                             const float *rstd, int N, int C, int rows_per_slab, int mode) {
    __shared__ float sh[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per_slab, r1 = min(N, r0 + rows_per_slab);
    float acc = 0.f;
    if (col < C) {
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            size_t i = (size_t)r * C + col;
            float v = ldbf(dy, i);
            if (mode == 1) v *= ldbf(x, i) * rstd[r];
            acc += v;
        }
    }
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < C) {
        float s = 0.f;
        for (int k = 0; k < 8; k++) s += sh[k][threadIdx.x];
        partial[(size_t)blockIdx.y * C + col] = s;
    }
}

__global__ void colsum_pass2(float *out, const float *partial, int C, int slabs) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= C) return;
    float s = 0.f;
    for (int r = 0; r < slabs; r++) s += partial[(size_t)r * C + col];
    out[col] += s;
}

int nmc_cuda_colsum(nmc_cuda_ctx_t *c, float *out, const nmc_bf16 *dy, const nmc_bf16 *x,
                    const float *rstd, int N, int C, int mode) {
    if (N <= 0) return 0;
    int slabs = (N + 63) / 64;
    if (slabs > COLSUM_SLABS_MAX) slabs = COLSUM_SLABS_MAX;
    int rows = (N + slabs - 1) / slabs;
    slabs = (N + rows - 1) / rows;
    float *partial = (float *)nmc_cuda_scratch(c, (size_t)slabs * C * sizeof(float));
    if (!partial) return -1;
    dim3 g1((C + 31) / 32, slabs), b1(32, 8);
    colsum_pass1<<<g1, b1, 0, c->stream>>>(partial, dy, x, rstd, N, C, rows, mode);
    CKLAUNCH(c, "colsum_pass1");
    colsum_pass2<<<(C + 255) / 256, 256, 0, c->stream>>>(out, partial, C, slabs);
    CKLAUNCH(c, "colsum_pass2");
    return 0;
}

int nmc_cuda_bias_bwd(float *db, const nmc_bf16 *dy, int N, int C, nmc_cuda_ctx_t *c) {
    REQUIRE_CTX(c);
    REQUIRE(c, N >= 0 && C > 0 && db && dy, "bad arguments N=%d C=%d", N, C);
    return nmc_cuda_colsum(c, db, dy, NULL, NULL, N, C, 0);
}
