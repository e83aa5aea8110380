/* comm_nccl.c — the "nccl" communicator: collectives on GPU buffers of the current CUDA
 * device (the caller selects it, normally cudaSetDevice(local_rank), before opening).
 *
 * Built only with NMC_CUDA and NMC_NCCL (the Makefile adds -DNMC_NCCL=1 and -lnccl
 * when nccl.h is found); otherwise nmc_comm_nccl_new fails with comm-kind-unavailable.
 *
 * Bootstrap: the NCCL unique id (128 bytes) created by rank 0 reaches the others
 *   - through a host communicator `boot` (mpi, shm) when one is given: boot->broadcast;
 *   - else through the file NMC_RDZV_DIR/nmc-nccl-id: rank 0 writes a temp file, fsyncs
 *     and renames it into place; the others poll for it (every 5 ms, up to the timeout).
 *     Rank 0 removes it once the communicator is up (every rank has read it by then), so
 *     a reused directory holds no stale id after a clean start. Across nodes the
 *     directory must be on a shared filesystem.
 * Completion and failure: the communicator is non-blocking (ncclConfig_t.blocking = 0).
 * Each call enqueues on the caller's stream and then polls cudaStreamQuery and
 * ncclCommGetAsyncError every 0.1 ms..1 ms; an NCCL error returns -1 with its string, and
 * a collective that is not done within NMC_COMM_TIMEOUT_S aborts the communicator
 * (ncclCommAbort) and returns -1 naming the operation. NCCL cannot say which rank is
 * missing; the message says so.
 */
#include "comm.h"
#include "launch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(NMC_CUDA) && NMC_CUDA && defined(NMC_NCCL) && NMC_NCCL
#include <cuda_runtime_api.h>
#include <errno.h>
#include <fcntl.h>
/* nccl.h declares `f()` prototypes; the warning is theirs, not ours */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <nccl.h>
#pragma GCC diagnostic pop
#include <time.h>
#include <unistd.h>

#define ERR_CAP 1024
#define ID_FILE "nmc-nccl-id"

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    double timeout;
    void *scratch;        /* device buffer for the host-array reductions */
    size_t scratch_bytes;
    nmc_comm_t *boot;     /* owned; NULL with the file rendezvous */
    int broken;           /* aborted after an error: destroy must not finalize */
    char id_path[NMC_LAUNCH_PATH_MAX + 32];
    char err[ERR_CAP];
} nccl_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void nap(long ns)
{
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

/* ---- completion ------------------------------------------------------------------------- */

static int fail(nmc_comm_t *c, const char *op, const char *fmt, const char *detail)
{
    nccl_t *n = c->impl;
    char what[512];
    snprintf(what, sizeof what, fmt, detail);
    snprintf(n->err, ERR_CAP, "rank %d: nccl %s failed: %s", c->rank, op, what);
    return -1;
}

/* Waits for an enqueued call (rc) and the stream; bounded by the timeout. */
static int wait_done(nmc_comm_t *c, const char *op, ncclResult_t rc, size_t count)
{
    nccl_t *n = c->impl;
    if (n->broken) return fail(c, op, "%s", "the communicator was aborted by an earlier error");
    if (rc != ncclSuccess && rc != ncclInProgress)
        return fail(c, op, "%s", ncclGetErrorString(rc));
    double t0 = now_s();
    for (unsigned long it = 0;; it++) {
        ncclResult_t st = ncclSuccess;
        ncclCommGetAsyncError(n->comm, &st);
        if (st != ncclSuccess && st != ncclInProgress) {
            ncclCommAbort(n->comm);
            n->broken = 1;
            return fail(c, op, "%s", ncclGetErrorString(st));
        }
        if (st == ncclSuccess) {
            cudaError_t ce = cudaStreamQuery(n->stream);
            if (ce == cudaSuccess) return 0;
            if (ce != cudaErrorNotReady) return fail(c, op, "cuda: %s", cudaGetErrorString(ce));
        }
        if (now_s() - t0 > n->timeout) {
            ncclCommAbort(n->comm);
            n->broken = 1;
            snprintf(n->err, ERR_CAP, "rank %d: nccl %s (%zu elements) did not complete "
                     "within %g s (NMC_COMM_TIMEOUT_S); aborted the communicator. NCCL "
                     "cannot tell which rank is missing: look for the rank that failed or "
                     "stopped first in the other ranks' output", c->rank, op, count,
                     n->timeout);
            return -1;
        }
        nap(it < 1000 ? 100000L : 1000000L);
    }
}

/* ---- collectives ------------------------------------------------------------------------- */

static int nccl_allreduce_sum(nmc_comm_t *c, float *buf, size_t count)
{
    nccl_t *n = c->impl;
    return wait_done(c, "allreduce_sum",
                     ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, n->comm, n->stream),
                     count);
}

static int nccl_allreduce_mean(nmc_comm_t *c, float *buf, size_t count)
{
    nccl_t *n = c->impl;
    return wait_done(c, "allreduce_mean",
                     ncclAllReduce(buf, buf, count, ncclFloat32, ncclAvg, n->comm, n->stream),
                     count);
}

static int nccl_reduce_scatter(nmc_comm_t *c, float *out, const float *in, size_t chunk)
{
    nccl_t *n = c->impl;
    return wait_done(c, "reduce_scatter",
                     ncclReduceScatter(in, out, chunk, ncclFloat32, ncclSum, n->comm,
                                       n->stream),
                     chunk);
}

static int nccl_allgather(nmc_comm_t *c, void *out, const void *in, size_t bytes)
{
    nccl_t *n = c->impl;
    return wait_done(c, "allgather",
                     ncclAllGather(in, out, bytes, ncclUint8, n->comm, n->stream), bytes);
}

static int nccl_broadcast(nmc_comm_t *c, void *buf, size_t bytes, int root)
{
    nccl_t *n = c->impl;
    if (root < 0 || root >= c->size) {
        snprintf(n->err, ERR_CAP, "rank %d: broadcast root %d outside [0, %d)", c->rank, root,
                 c->size);
        return -1;
    }
    return wait_done(c, "broadcast",
                     ncclBroadcast(buf, buf, bytes, ncclUint8, root, n->comm, n->stream),
                     bytes);
}

static int ensure_scratch(nmc_comm_t *c, size_t bytes)
{
    nccl_t *n = c->impl;
    if (n->scratch_bytes >= bytes) return 0;
    cudaFree(n->scratch);
    n->scratch = NULL;
    n->scratch_bytes = 0;
    cudaError_t ce = cudaMalloc(&n->scratch, bytes);
    if (ce != cudaSuccess) return fail(c, "scratch", "cudaMalloc: %s", cudaGetErrorString(ce));
    n->scratch_bytes = bytes;
    return 0;
}

/* Host array -> device scratch -> allreduce -> host. */
static int host_allreduce(nmc_comm_t *c, void *h, size_t count, size_t es, ncclDataType_t t,
                          const char *op)
{
    nccl_t *n = c->impl;
    if (count == 0) return 0;
    if (ensure_scratch(c, count * es) != 0) return -1;
    cudaError_t ce = cudaMemcpyAsync(n->scratch, h, count * es, cudaMemcpyHostToDevice,
                                     n->stream);
    if (ce != cudaSuccess) return fail(c, op, "cuda: %s", cudaGetErrorString(ce));
    if (wait_done(c, op, ncclAllReduce(n->scratch, n->scratch, count, t, ncclSum, n->comm,
                                       n->stream), count) != 0)
        return -1;
    ce = cudaMemcpy(h, n->scratch, count * es, cudaMemcpyDeviceToHost);
    return ce == cudaSuccess ? 0 : fail(c, op, "cuda: %s", cudaGetErrorString(ce));
}

static int nccl_allreduce_f64(nmc_comm_t *c, double *h, size_t count)
{
    return host_allreduce(c, h, count, sizeof *h, ncclFloat64, "allreduce_f64");
}

static int nccl_allreduce_i64(nmc_comm_t *c, int64_t *h, size_t count)
{
    return host_allreduce(c, h, count, sizeof *h, ncclInt64, "allreduce_i64");
}

static int nccl_barrier(nmc_comm_t *c)
{
    int64_t one = 1;
    return host_allreduce(c, &one, 1, sizeof one, ncclInt64, "barrier");
}

static const char *nccl_last_error(nmc_comm_t *c) { return ((nccl_t *)c->impl)->err; }

static void nccl_abort(nmc_comm_t *c, int code, const char *why)
{
    nccl_t *n = c->impl;
    if (n->comm) ncclCommAbort(n->comm);
    n->broken = 1;
    if (n->boot) n->boot->abort(n->boot, code, why); /* MPI: ends the whole job */
    if (why && *why) nmc_comm_fatal(why);
    fflush(NULL);
    _exit(code ? code : 1);
}

static void nccl_destroy(nmc_comm_t *c)
{
    nccl_t *n = c->impl;
    if (n->comm) {
        if (n->broken) {
            ncclCommAbort(n->comm);
        } else {
            double t0 = now_s();
            ncclResult_t st = ncclCommFinalize(n->comm);
            while (st == ncclSuccess || st == ncclInProgress) {
                ncclCommGetAsyncError(n->comm, &st);
                if (st != ncclInProgress || now_s() - t0 > n->timeout) break;
                nap(1000000L);
            }
            if (st == ncclSuccess) ncclCommDestroy(n->comm);
            else ncclCommAbort(n->comm);
        }
    }
    cudaFree(n->scratch);
    nmc_comm_free(n->boot);
    free(n);
    free(c);
}

/* ---- bootstrap --------------------------------------------------------------------------- */

static int boot_fail(nmc_diags_t *d, const char *code, const char *file, const char *fmt,
                     const char *detail)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, code, file, 0, 0, 0, fmt, detail);
    nmc_diag_set_help(r, "launch with mpirun, or give every rank the same NMC_RDZV_DIR (a "
                      "shared directory across nodes); see docs/distributed.md");
    return -1;
}

static int write_id(const char *path, const ncclUniqueId *id, nmc_diags_t *d)
{
    char tmp[NMC_LAUNCH_PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int ok = fd >= 0 && write(fd, id, sizeof *id) == (ssize_t)sizeof *id && fsync(fd) == 0;
    if (fd >= 0) ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return boot_fail(d, "comm-init-failed", path, "cannot write the NCCL id: %s",
                         strerror(errno));
    }
    return 0;
}

static int read_id(const char *path, ncclUniqueId *id, double timeout, nmc_diags_t *d)
{
    double t0 = now_s();
    for (;;) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            ssize_t got = read(fd, id, sizeof *id);
            close(fd);
            if (got == (ssize_t)sizeof *id) return 0;
        }
        if (now_s() - t0 > timeout) {
            char msg[64];
            snprintf(msg, sizeof msg, "%g", timeout);
            return boot_fail(d, "comm-rendezvous-timeout", path,
                             "rank 0 did not publish the NCCL id within %s s "
                             "(NMC_COMM_TIMEOUT_S)", msg);
        }
        nap(5000000L);
    }
}

static int exchange_id(const nmc_launch_t *l, nccl_t *n, ncclUniqueId *id, nmc_diags_t *d)
{
    if (l->rank == 0) {
        ncclResult_t rc = ncclGetUniqueId(id);
        if (rc != ncclSuccess)
            return boot_fail(d, "comm-init-failed", NULL, "ncclGetUniqueId: %s",
                             ncclGetErrorString(rc));
    }
    if (l->world == 1) return 0; /* nobody to tell */
    if (n->boot) {
        if (n->boot->broadcast(n->boot, id, sizeof *id, 0) == 0) return 0;
        return boot_fail(d, "comm-init-failed", NULL, "sending the NCCL id: %s",
                         n->boot->last_error(n->boot));
    }
    if (!l->rdzv_dir[0])
        return boot_fail(d, "comm-init-failed", NULL, "%s",
                         "nccl needs MPI or a rendezvous directory, and NMC_RDZV_DIR is "
                         "not set");
    snprintf(n->id_path, sizeof n->id_path, "%s/%s", l->rdzv_dir, ID_FILE);
    return l->rank == 0 ? write_id(n->id_path, id, d) : read_id(n->id_path, id, n->timeout, d);
}

static int init_comm(const nmc_launch_t *l, nccl_t *n, const ncclUniqueId *id,
                     nmc_diags_t *d)
{
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t rc = ncclCommInitRankConfig(&n->comm, l->world, *id, l->rank, &cfg);
    double t0 = now_s();
    while (rc == ncclInProgress || rc == ncclSuccess) {
        ncclCommGetAsyncError(n->comm, &rc);
        if (rc != ncclInProgress) break;
        if (now_s() - t0 > n->timeout) {
            ncclCommAbort(n->comm);
            n->comm = NULL;
            char msg[64];
            snprintf(msg, sizeof msg, "%g", n->timeout);
            return boot_fail(d, "comm-rendezvous-timeout", NULL,
                             "not every rank joined the NCCL communicator within %s s "
                             "(NMC_COMM_TIMEOUT_S)", msg);
        }
        nap(1000000L);
    }
    if (rc != ncclSuccess) {
        if (n->comm) ncclCommAbort(n->comm);
        n->comm = NULL;
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-init-failed", NULL, 0, 0, 0,
                                     "rank %d: ncclCommInitRankConfig: %s", l->rank,
                                     ncclGetErrorString(rc));
        if (rc == ncclInvalidUsage)
            nmc_diag_set_help(r, "each rank needs its own GPU (two ranks on one GPU is "
                              "invalid usage): run at most one rank per visible GPU and "
                              "select it with the local rank; NCCL_DEBUG=WARN says more");
        else
            nmc_diag_set_help(r, "rerun with NCCL_DEBUG=WARN; across nodes check "
                              "NCCL_SOCKET_IFNAME / NCCL_IB_HCA (docs/distributed.md)");
        return -1;
    }
    return 0;
}

static void fill_ops(nmc_comm_t *c)
{
    c->allreduce_sum = nccl_allreduce_sum;
    c->allreduce_mean = nccl_allreduce_mean;
    c->reduce_scatter = nccl_reduce_scatter;
    c->allgather = nccl_allgather;
    c->broadcast = nccl_broadcast;
    c->barrier = nccl_barrier;
    c->allreduce_f64 = nccl_allreduce_f64;
    c->allreduce_i64 = nccl_allreduce_i64;
    c->abort = nccl_abort;
    c->last_error = nccl_last_error;
    c->destroy = nccl_destroy;
}

int nmc_comm_nccl_new(const nmc_launch_t *l, nmc_comm_t *boot, void *cuda_stream,
                      nmc_comm_t **out, nmc_diags_t *d)
{
    *out = NULL;
    nmc_comm_t *c = calloc(1, sizeof *c);
    nccl_t *n = calloc(1, sizeof *n);
    if (!c || !n) {
        free(c);
        free(n);
        nmc_comm_free(boot);
        return boot_fail(d, "comm-init-failed", NULL, "%s", "out of memory");
    }
    n->boot = boot;
    n->stream = (cudaStream_t)cuda_stream;
    n->timeout = nmc_comm_timeout_s(NULL);
    c->kind = "nccl";
    c->rank = l->rank;
    c->size = l->world;
    c->local_rank = boot ? boot->local_rank : l->local_rank;
    c->local_size = boot ? boot->local_size : l->local_size;
    c->mem = NMC_COMM_MEM_DEVICE;
    c->impl = n;
    fill_ops(c);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int rc = exchange_id(l, n, &id, d);
    if (rc == 0) rc = init_comm(l, n, &id, d);
    /* every rank has read the id once init returns (or none will): no stale id left */
    if (l->rank == 0 && n->id_path[0]) unlink(n->id_path);
    if (rc != 0) {
        nccl_destroy(c);
        return -1;
    }
    *out = c;
    return 0;
}

int nmc_comm_nccl_available(void) { return 1; }

#else /* built without NCCL */

int nmc_comm_nccl_new(const nmc_launch_t *l, nmc_comm_t *boot, void *cuda_stream,
                      nmc_comm_t **out, nmc_diags_t *d)
{
    *out = NULL;
    nmc_comm_free(boot);
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-kind-unavailable", NULL, 0, 0, 0,
                                 "communicator \"nccl\" is not available: this nmc was built "
                                 "without CUDA and NCCL");
    nmc_diag_set_help(r, "build on a machine with the CUDA toolkit and NCCL (nccl.h, "
                      "libnccl) so that NMC_NCCL is set");
    return -1;
}

int nmc_comm_nccl_available(void) { return 0; }

#endif
