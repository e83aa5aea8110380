/* train_dp.c — data parallelism for the trainer: the gradient bucket, its all-reduce, the
 * global gradient norm, and ZeRO-1 (optimizer state sharded by flat index).
 *
 * Layout: the trainable parameters, in model order, are one flat vector of `numel` floats
 * (param i at offs[i]). One device buffer `flat` of world × chunk floats (chunk =
 * nmc_comm_chunk(numel, world), the tail past numel zero) is the bucket: one collective
 * per step, never one per tensor.
 *   plain DP   grads packed into flat, allreduce_sum(flat, numel), unpacked; every rank
 *              then clips and steps its full replica (identical bits on every rank).
 *   ZeRO-1     grads packed, reduce_scatter: rank r gets the summed flat[r·chunk, +chunk);
 *              the norm is the all-reduced sum of the shards' squares; each rank clips and
 *              updates only its shard (moments zm / zv hold just that shard), copies the
 *              updated master slice into flat and all-gathers the parameters.
 * The per-element arithmetic of both is the single-process optimizer's; results differ
 * from one process only by the order of fp32 gradient sums (docs/distributed.md).
 *
 * CUDA devices: the communicator is nccl on the legacy default stream, so every collective
 * is preceded by dev->sync (the device's own stream is done) and completes before it
 * returns (comm.h).
 */
#include "train.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int rank_of(const nmc_optim_t *o) { return o->comm ? o->comm->rank : 0; }

int nmc_dp_fail(nmc_optim_t *o, const char *what, nmc_diags_t *d)
{
    const char *why = o->comm ? o->comm->last_error(o->comm) : "";
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-comm-failed", NULL, 0, 0, 0,
                                 "rank %d: %s failed: %s", rank_of(o), what,
                                 why && *why ? why : "the communicator reported an error");
    nmc_diag_set_help(r, "another rank died, hung or failed: its own output (or the "
                         "launcher's report) says why; fix that and continue with "
                         "`nmc train JOB --resume`");
    return -1;
}

static int dev_fail(nmc_optim_t *o, const char *what, nmc_diags_t *d)
{
    nmc_diag_add(d, NMC_SEV_ERROR, "train-device", NULL, 0, 0, 0, "%s failed on %s: %s", what,
                 o->dev->name, o->dev->last_error(o->dev));
    return -1;
}

/* The device's queued work is done (nccl runs on another stream). */
static int ready(nmc_optim_t *o, nmc_diags_t *d)
{
    if (o->comm->mem == NMC_COMM_MEM_DEVICE && o->dev->sync(o->dev)) return dev_fail(o, "sync", d);
    return 0;
}

static float *alloc_f32(nmc_optim_t *o, size_t n, nmc_diags_t *d)
{
    float *p = o->dev->alloc(o->dev, (n ? n : 1) * sizeof(float));
    if (!p)
        nmc_diag_add(d, NMC_SEV_ERROR, "train-out-of-memory", NULL, 0, 0, 0,
                     "cannot allocate %zu floats of data-parallel buffers on %s", n, o->dev->name);
    return p;
}

int nmc_optim_set_dp(nmc_optim_t *o, nmc_comm_t *c, bool zero1, nmc_diags_t *d)
{
    if (!c) return 0;
    o->comm = c;
    o->zero1 = zero1;
    o->offs = calloc(o->n ? o->n : 1, sizeof *o->offs);
    if (!o->offs) abort();
    size_t tot = 0;
    for (size_t i = 0; i < o->n; i++) o->offs[i] = tot, tot += (size_t)o->params[i]->numel;
    o->numel = tot;
    o->chunk = nmc_comm_chunk(tot, c->size);
    if (!(o->flat = alloc_f32(o, (size_t)c->size * o->chunk, d))) return -1;
    if (!zero1 || o->cfg.kind == NMC_OPTIM_SGD) return 0;
    for (size_t i = 0; i < o->n; i++) { /* the shard replaces the per-param moments */
        o->dev->free(o->dev, o->m[i]), o->dev->free(o->dev, o->v[i]);
        o->m[i] = o->v[i] = NULL;
    }
    if (!(o->zm = alloc_f32(o, o->chunk, d)) || !(o->zv = alloc_f32(o, o->chunk, d))) return -1;
    return 0;
}

/* this rank's shard [*lo, *hi) of the flat vector (hi may equal lo at the tail) */
static void shard(const nmc_optim_t *o, size_t *lo, size_t *hi)
{
    *lo = (size_t)o->comm->rank * o->chunk;
    if (*lo > o->numel) *lo = o->numel;
    *hi = *lo + o->chunk < o->numel ? *lo + o->chunk : o->numel;
}

/* which: 0 grads, 1 masters */
static int pack(nmc_optim_t *o, int which, nmc_diags_t *d)
{
    for (size_t i = 0; i < o->n; i++) {
        nmc_param_t *p = o->params[i];
        if (o->dev->copy(o->dev, o->flat + o->offs[i], which ? p->master : p->grad,
                         (size_t)p->numel * sizeof(float)))
            return dev_fail(o, "packing the gradient bucket", d);
    }
    return 0;
}

static int unpack_grads(nmc_optim_t *o, nmc_diags_t *d)
{
    for (size_t i = 0; i < o->n; i++) {
        nmc_param_t *p = o->params[i];
        if (o->dev->copy(o->dev, p->grad, o->flat + o->offs[i], (size_t)p->numel * sizeof(float)))
            return dev_fail(o, "unpacking the gradient bucket", d);
    }
    return 0;
}

/* flat holds every rank's parameters: write masters and the act copies */
static int unpack_params(nmc_optim_t *o, nmc_diags_t *d)
{
    nmc_dev_t *dev = o->dev;
    for (size_t i = 0; i < o->n; i++) {
        nmc_param_t *p = o->params[i];
        size_t n = (size_t)p->numel;
        if (dev->copy(dev, p->master, o->flat + o->offs[i], n * sizeof(float)))
            return dev_fail(o, "unpacking the parameters", d);
        if ((void *)p->master != p->data && dev->f32_to_act(dev, p->data, p->master, n))
            return dev_fail(o, "unpacking the parameters", d);
    }
    return 0;
}

int nmc_dp_broadcast_params(nmc_optim_t *o, nmc_diags_t *d)
{
    if (!o->comm) return 0;
    if (pack(o, 1, d) || ready(o, d)) return -1;
    if (o->comm->broadcast(o->comm, o->flat, o->numel * sizeof(float), 0))
        return nmc_dp_fail(o, "broadcasting the initial parameters", d);
    return unpack_params(o, d);
}

/* sum of squares of n device floats at x, on the host */
static int sumsq(nmc_optim_t *o, const float *x, size_t n, double *out, nmc_diags_t *d)
{
    double *acc = o->dev->alloc(o->dev, sizeof(double));
    if (!acc) return dev_fail(o, "allocation", d);
    int rc = n ? o->dev->sumsq(o->dev, acc, x, n) : 0;
    if (rc == 0) rc = o->dev->download(o->dev, out, acc, sizeof *out);
    o->dev->free(o->dev, acc);
    return rc ? dev_fail(o, "the gradient norm", d) : 0;
}

int nmc_dp_reduce_grads(nmc_optim_t *o, double *norm, nmc_diags_t *d)
{
    if (!o->comm) return nmc_grad_norm(o, norm, d);
    if (pack(o, 0, d) || ready(o, d)) return -1;
    if (!o->zero1) {
        if (o->comm->allreduce_sum(o->comm, o->flat, o->numel))
            return nmc_dp_fail(o, "the gradient all-reduce", d);
        if (unpack_grads(o, d)) return -1;
        return nmc_grad_norm(o, norm, d);
    }
    size_t lo, hi;
    shard(o, &lo, &hi);
    float *mine = o->flat + (size_t)o->comm->rank * o->chunk;
    if (o->comm->reduce_scatter(o->comm, mine, o->flat, o->chunk))
        return nmc_dp_fail(o, "the gradient reduce-scatter", d);
    double ss = 0;
    if (sumsq(o, mine, hi - lo, &ss, d)) return -1;
    if (o->comm->allreduce_f64(o->comm, &ss, 1)) return nmc_dp_fail(o, "the gradient norm all-reduce", d);
    *norm = sqrt(ss);
    return 0;
}

/* ZeRO-1 update of flat[a, b) (inside this rank's shard and param i) */
static int update_segment(nmc_optim_t *o, size_t i, size_t a, size_t b, size_t lo, float lr,
                          nmc_diags_t *d)
{
    nmc_dev_t *dev = o->dev;
    nmc_param_t *p = o->params[i];
    const nmc_optim_cfg_t *c = &o->cfg;
    float wd = p->weight_decay ? (float)c->weight_decay : 0.0f;
    float *w = p->master + (a - o->offs[i]), *g = o->flat + a;
    size_t n = b - a;
    if (c->kind == NMC_OPTIM_SGD) {
        if ((wd != 0.0f && dev->axpy(dev, g, w, n, wd)) || dev->axpy(dev, w, g, n, -lr))
            return dev_fail(o, "sgd", d);
        return 0;
    }
    if (dev->adamw(dev, w, NULL, g, o->zm + (a - lo), o->zv + (a - lo), n, lr, (float)c->beta1,
                   (float)c->beta2, (float)c->eps, wd, c->kind == NMC_OPTIM_ADAM_L2, o->step))
        return dev_fail(o, "the optimizer step", d);
    return 0;
}

static int zero1_step(nmc_optim_t *o, double norm, double max_norm, double lr, nmc_diags_t *d)
{
    nmc_dev_t *dev = o->dev;
    size_t lo, hi;
    shard(o, &lo, &hi);
    if (max_norm > 0.0) { /* nmc_grad_clip's rule on the shard */
        float coef = (float)max_norm / ((float)norm + 1e-6f);
        if (coef < 1.0f && hi > lo && dev->scale(dev, o->flat + lo, hi - lo, coef))
            return dev_fail(o, "gradient clipping", d);
    }
    o->step++;
    for (size_t i = 0; i < o->n; i++) {
        size_t p0 = o->offs[i], p1 = p0 + (size_t)o->params[i]->numel;
        size_t a = p0 > lo ? p0 : lo, b = p1 < hi ? p1 : hi;
        if (a >= b) continue;
        if (update_segment(o, i, a, b, lo, (float)lr, d)) return -1;
        if (dev->copy(dev, o->flat + a, o->params[i]->master + (a - p0), (b - a) * sizeof(float)))
            return dev_fail(o, "packing the parameters", d);
    }
    if (ready(o, d)) return -1;
    float *mine = o->flat + (size_t)o->comm->rank * o->chunk;
    if (o->comm->allgather(o->comm, o->flat, mine, o->chunk * sizeof(float)))
        return nmc_dp_fail(o, "the parameter all-gather", d);
    return unpack_params(o, d);
}

int nmc_dp_clip_and_step(nmc_optim_t *o, double norm, double max_norm, double lr, nmc_diags_t *d)
{
    if (o->comm && o->zero1) return zero1_step(o, norm, max_norm, lr, d);
    if (nmc_grad_clip(o, norm, max_norm, d)) return -1;
    return nmc_optim_step(o, lr, d);
}

static int gather_one(nmc_optim_t *o, float **out, const float *mine, nmc_diags_t *d)
{
    if (!(*out = alloc_f32(o, (size_t)o->comm->size * o->chunk, d))) return -1;
    float *slot = *out + (size_t)o->comm->rank * o->chunk;
    if (o->dev->copy(o->dev, slot, mine, o->chunk * sizeof(float))) return dev_fail(o, "copy", d);
    if (ready(o, d)) return -1;
    if (o->comm->allgather(o->comm, *out, slot, o->chunk * sizeof(float)))
        return nmc_dp_fail(o, "gathering the optimizer state", d);
    return 0;
}

int nmc_optim_gather_state(nmc_optim_t *o, nmc_diags_t *d)
{
    if (!o->comm || !o->zero1 || o->cfg.kind == NMC_OPTIM_SGD) return 0;
    if (gather_one(o, &o->gm, o->zm, d) || gather_one(o, &o->gv, o->zv, d)) {
        nmc_optim_release_state(o);
        return -1;
    }
    return 0;
}

void nmc_optim_release_state(nmc_optim_t *o)
{
    if (o->gm) o->dev->free(o->dev, o->gm);
    if (o->gv) o->dev->free(o->dev, o->gv);
    o->gm = o->gv = NULL;
}
