/* embedding.c — token embedding lookup and its gradient, CPU fp32.
 *
 * Belongs here: nmc_cpu_embedding_fwd / nmc_cpu_embedding_bwd.
 * table, dtable [V, D]; ids [N] in [0, V) (the caller validates against V, which these
 * functions do not receive); out, dout [N, D]. A negative id gives a zero row in fwd and
 * no gradient in bwd (defensive: never an out-of-bounds read).
 * bwd accumulates dtable[ids[i]] += dout[i]; threads own column ranges and walk the
 * tokens in order, so repeated ids sum in a fixed order for any thread count.
 * Test tolerance: fwd exact; bwd 1e-7 + 2e-7 rel vs double.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <string.h>

void nmc_cpu_embedding_fwd(float *out, const int32_t *ids, const float *table, int N, int D)
{
    for (int i = 0; i < N; i++) {
        float *o = out + (size_t)i * D;
        if (ids[i] < 0) memset(o, 0, sizeof(float) * (size_t)(D > 0 ? D : 0));
        else memcpy(o, table + (size_t)ids[i] * D, sizeof(float) * (size_t)(D > 0 ? D : 0));
    }
}

typedef struct {
    float *dtable;
    const float *dout;
    const int32_t *ids;
    int N, D;
} emb_job_t;

static void bwd_task(void *ctx, int id, int n)
{
    const emb_job_t *j = ctx;
    size_t lo, hi;
    nmc_cpu_range((size_t)j->D, id, n, &lo, &hi);
    for (int i = 0; i < j->N; i++) {
        if (j->ids[i] < 0) continue;
        float *t = j->dtable + (size_t)j->ids[i] * j->D;
        const float *d = j->dout + (size_t)i * j->D;
        for (size_t c = lo; c < hi; c++) t[c] += d[c];
    }
}

void nmc_cpu_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int N, int D)
{
    if (N <= 0 || D <= 0) return;
    emb_job_t j = {dtable, dout, ids, N, D};
    int want = nmc_cpu_want((size_t)N * D, 1 << 16);
    /* keep at least 16 columns per thread so threads do not share cache lines */
    int cols = D / 16 > 0 ? D / 16 : 1;
    nmc_cpu_parallel(bwd_task, &j, want < cols ? want : cols);
}
