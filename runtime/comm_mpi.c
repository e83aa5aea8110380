/* comm_mpi.c — the "mpi" communicator: host buffers over MPI (OpenMPI, MPICH), with a
 * watchdog thread that turns a hung collective into a diagnostic and a job abort.
 *
 * Built only when the Makefile finds mpi.h (NMC_MPI=1 and MPI_CFLAGS from
 * `mpicc --showme:compile`); otherwise nmc_comm_mpi_new fails with
 * comm-kind-unavailable.
 *
 * Errors: MPI_COMM_WORLD and our duplicates use MPI_ERRORS_RETURN, so a failed call
 * (a peer's connection reset) returns -1 with MPI's error string instead of killing
 * the process from inside the library.
 * Hangs: each collective marks itself in progress; the watchdog thread (polling every
 * 50 ms) aborts the job when one runs longer than NMC_COMM_TIMEOUT_S. Before it does,
 * it asks every other rank — over a separate duplicated communicator, answered by their
 * own watchdog threads — which operation it is in, and names in the diagnostic the
 * ranks that did not answer (exited or stuck inside MPI) or are not in this collective
 * (alive but elsewhere). The query needs MPI_THREAD_MULTIPLE; with less, the diagnostic
 * says the ranks are unknown. A rank that exits is noticed by the launcher (mpirun
 * ends the job and names it).
 */
#include "comm.h"
#include "launch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(NMC_MPI) && NMC_MPI
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define ERR_CAP 1024
#define PIECE (1 << 30)   /* elements per MPI call: MPI counts are int */
#define TAG_QUERY 7301
#define TAG_REPLY 7302
#define POLL_NS 50000000L /* watchdog period: 50 ms */

typedef struct {
    MPI_Comm comm;        /* dup of MPI_COMM_WORLD: the collectives */
    MPI_Comm diag;        /* dup: watchdog queries and replies */
    int own_init;         /* we called MPI_Init_thread (and finalize) */
    int multiple;         /* MPI_THREAD_MULTIPLE provided: queries possible */
    double timeout;
    pthread_t wd;
    int wd_started;
    _Atomic int stop;
    /* the collective in progress, read by the watchdog */
    _Atomic int in_op;
    _Atomic long long seq;    /* collectives started */
    _Atomic long long count;  /* its element count */
    _Atomic(const char *) op; /* its name (static) */
    _Atomic long long start_ns;
    char err[ERR_CAP];
} mpi_t;

static int live_comms; /* mpi communicators open in this process (finalize with the last) */
static int finalized;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- watchdog ---------------------------------------------------------------------------- */

typedef struct {
    long long rank, in_op, seq, pad;
} reply_t;

/* Answer one pending query, if any; re-arm the receive. */
static void serve(mpi_t *m, MPI_Request *q, long long *qbuf)
{
    int done = 0;
    MPI_Status st;
    if (*q == MPI_REQUEST_NULL || MPI_Test(q, &done, &st) != MPI_SUCCESS || !done) return;
    int me;
    MPI_Comm_rank(m->diag, &me);
    reply_t r = {me, atomic_load(&m->in_op), atomic_load(&m->seq), 0};
    MPI_Send(&r, 4, MPI_LONG_LONG, st.MPI_SOURCE, TAG_REPLY, m->diag); /* eager: tiny */
    MPI_Irecv(qbuf, 2, MPI_LONG_LONG, MPI_ANY_SOURCE, TAG_QUERY, m->diag, q);
}

static void sleep_ns(long ns)
{
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

/* Ask every other rank where it is; describe the stragglers into buf. */
static void ask_peers(mpi_t *m, MPI_Request *q, long long *qbuf, char *buf, size_t cap)
{
    int me, n;
    MPI_Comm_rank(m->diag, &me);
    MPI_Comm_size(m->diag, &n);
    reply_t *rep = calloc((size_t)n, sizeof *rep);
    MPI_Request *req = calloc((size_t)n * 2, sizeof *req);
    long long ask[2] = {me, atomic_load(&m->seq)};
    size_t len = 0;
    if (!rep || !req) {
        snprintf(buf, cap, "  (out of memory asking the other ranks)");
        free(rep);
        free(req);
        return;
    }
    for (int r = 0; r < n; r++) {
        req[2 * r] = req[2 * r + 1] = MPI_REQUEST_NULL;
        if (r == me) continue;
        MPI_Irecv(&rep[r], 4, MPI_LONG_LONG, r, TAG_REPLY, m->diag, &req[2 * r]);
        MPI_Isend(ask, 2, MPI_LONG_LONG, r, TAG_QUERY, m->diag, &req[2 * r + 1]);
    }
    double grace = m->timeout < 1.0 ? m->timeout : 1.0; /* live peers answer in ~50 ms */
    long long t0 = now_ns();
    int *got = calloc((size_t)n, sizeof *got);
    while (got && now_ns() - t0 < (long long)(grace * 1e9)) {
        serve(m, q, qbuf);
        for (int r = 0; r < n; r++) {
            int done = 0;
            if (r != me && !got[r] && MPI_Test(&req[2 * r], &done, MPI_STATUS_IGNORE) ==
                                          MPI_SUCCESS && done)
                got[r] = 1;
        }
        sleep_ns(10000000L);
    }
    long long seq = ask[1];
    for (int r = 0; r < n && len < cap; r++) {
        if (r == me) continue;
        const char *what = NULL;
        char tmp[128];
        if (!got || !got[r]) {
            what = "did not answer (exited, or stuck inside MPI)";
        } else if (!rep[r].in_op || rep[r].seq != seq) {
            snprintf(tmp, sizeof tmp, "has not arrived (alive, %s collective #%lld)",
                     rep[r].in_op ? "in" : "last finished", rep[r].seq);
            what = tmp;
        }
        if (what)
            len += (size_t)snprintf(buf + len, cap - len, "\n  rank %d %s", r, what);
    }
    if (len == 0) snprintf(buf, cap, "\n  every rank is inside this collective (a slow or "
                                     "broken network?)");
    free(got);
    free(rep);
    free(req); /* pending requests die with the job: MPI_Abort follows */
}

static void timeout_abort(mpi_t *m, MPI_Request *q, long long *qbuf)
{
    int me;
    MPI_Comm_rank(m->diag, &me);
    char peers[2048] = "";
    if (m->multiple)
        ask_peers(m, q, qbuf, peers, sizeof peers);
    else
        snprintf(peers, sizeof peers, "\n  (which ranks are missing is unknown: MPI gave no "
                 "MPI_THREAD_MULTIPLE)");
    char msg[3072];
    snprintf(msg, sizeof msg, "error[comm-timeout]: rank %d: %s (collective #%lld, %lld "
             "elements) did not complete within %g s (NMC_COMM_TIMEOUT_S)%s\n"
             "help: the ranks named above stopped or went elsewhere; their own output says "
             "why. Raise NMC_COMM_TIMEOUT_S if a step is legitimately slower",
             me, atomic_load(&m->op), atomic_load(&m->seq), atomic_load(&m->count),
             m->timeout, peers);
    nmc_comm_fatal(msg);
    fflush(NULL);
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1); /* MPI_Abort does not return; belt and braces */
}

static void *watchdog(void *arg)
{
    mpi_t *m = arg;
    long long qbuf[2];
    MPI_Request q = MPI_REQUEST_NULL;
    if (m->multiple) MPI_Irecv(qbuf, 2, MPI_LONG_LONG, MPI_ANY_SOURCE, TAG_QUERY, m->diag, &q);
    while (!atomic_load(&m->stop)) {
        if (m->multiple) serve(m, &q, qbuf);
        if (atomic_load(&m->in_op) &&
            now_ns() - atomic_load(&m->start_ns) > (long long)(m->timeout * 1e9))
            timeout_abort(m, &q, qbuf);
        sleep_ns(POLL_NS);
    }
    if (q != MPI_REQUEST_NULL) {
        MPI_Cancel(&q);
        MPI_Wait(&q, MPI_STATUS_IGNORE);
    }
    return NULL;
}

/* ---- collectives ------------------------------------------------------------------------ */

static void begin(mpi_t *m, const char *op, size_t count)
{
    atomic_store(&m->op, op);
    atomic_store(&m->count, (long long)count);
    atomic_store(&m->start_ns, now_ns());
    atomic_fetch_add(&m->seq, 1);
    atomic_store(&m->in_op, 1);
}

/* Ends the collective; rc != MPI_SUCCESS records MPI's message. Returns 0 or -1. */
static int end(nmc_comm_t *c, int rc)
{
    mpi_t *m = c->impl;
    atomic_store(&m->in_op, 0);
    if (rc == MPI_SUCCESS) return 0;
    char es[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, es, &len) != MPI_SUCCESS) snprintf(es, sizeof es, "code %d", rc);
    snprintf(m->err, ERR_CAP, "rank %d: %s (collective #%lld) failed: %s", c->rank,
             atomic_load(&m->op), atomic_load(&m->seq), es);
    return -1;
}

static int too_big(nmc_comm_t *c, const char *op, size_t n)
{
    mpi_t *m = c->impl;
    snprintf(m->err, ERR_CAP, "rank %d: %s of %zu per rank exceeds MPI's int count limit "
             "(%d); split the call", c->rank, op, n, INT_MAX);
    return -1;
}

static int allreduce_typed(nmc_comm_t *c, void *buf, size_t n, MPI_Datatype t, size_t es,
                           const char *op)
{
    mpi_t *m = c->impl;
    begin(m, op, n);
    int rc = MPI_SUCCESS;
    for (size_t off = 0; off < n && rc == MPI_SUCCESS; off += PIECE) {
        size_t k = n - off < PIECE ? n - off : PIECE;
        rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * es, (int)k, t, MPI_SUM, m->comm);
    }
    return end(c, rc);
}

static int mpi_allreduce_sum(nmc_comm_t *c, float *buf, size_t n)
{
    return allreduce_typed(c, buf, n, MPI_FLOAT, sizeof *buf, "allreduce_sum");
}

static int mpi_allreduce_mean(nmc_comm_t *c, float *buf, size_t n)
{
    if (allreduce_typed(c, buf, n, MPI_FLOAT, sizeof *buf, "allreduce_mean") != 0) return -1;
    float inv = 1.0f / (float)c->size;
    for (size_t i = 0; i < n; i++) buf[i] *= inv;
    return 0;
}

static int mpi_allreduce_f64(nmc_comm_t *c, double *h, size_t n)
{
    return allreduce_typed(c, h, n, MPI_DOUBLE, sizeof *h, "allreduce_f64");
}

static int mpi_allreduce_i64(nmc_comm_t *c, int64_t *h, size_t n)
{
    return allreduce_typed(c, h, n, MPI_INT64_T, sizeof *h, "allreduce_i64");
}

static int mpi_reduce_scatter(nmc_comm_t *c, float *out, const float *in, size_t chunk)
{
    mpi_t *m = c->impl;
    if (chunk > INT_MAX) return too_big(c, "reduce_scatter", chunk);
    int inplace = out == in + (size_t)c->rank * chunk;
    float *dst = inplace ? malloc(chunk * sizeof *dst + 1) : out;
    if (!dst) {
        snprintf(m->err, ERR_CAP, "rank %d: reduce_scatter: out of memory", c->rank);
        return -1;
    }
    begin(m, "reduce_scatter", chunk);
    int rc = MPI_Reduce_scatter_block(in, dst, (int)chunk, MPI_FLOAT, MPI_SUM, m->comm);
    if (inplace) {
        if (rc == MPI_SUCCESS) memcpy(out, dst, chunk * sizeof *dst);
        free(dst);
    }
    return end(c, rc);
}

static int mpi_allgather(nmc_comm_t *c, void *out, const void *in, size_t bytes)
{
    mpi_t *m = c->impl;
    if (bytes > INT_MAX) return too_big(c, "allgather", bytes);
    int inplace = (const char *)out + (size_t)c->rank * bytes == (const char *)in;
    begin(m, "allgather", bytes);
    int rc = MPI_Allgather(inplace ? MPI_IN_PLACE : in, (int)bytes, MPI_BYTE, out, (int)bytes,
                           MPI_BYTE, m->comm);
    return end(c, rc);
}

static int mpi_broadcast(nmc_comm_t *c, void *buf, size_t bytes, int root)
{
    mpi_t *m = c->impl;
    if (root < 0 || root >= c->size) {
        snprintf(m->err, ERR_CAP, "rank %d: broadcast root %d outside [0, %d)", c->rank, root,
                 c->size);
        return -1;
    }
    begin(m, "broadcast", bytes);
    int rc = MPI_SUCCESS;
    for (size_t off = 0; off < bytes && rc == MPI_SUCCESS; off += PIECE) {
        size_t k = bytes - off < PIECE ? bytes - off : PIECE;
        rc = MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, m->comm);
    }
    return end(c, rc);
}

static int mpi_barrier(nmc_comm_t *c)
{
    mpi_t *m = c->impl;
    begin(m, "barrier", 0);
    return end(c, MPI_Barrier(m->comm));
}

static const char *mpi_last_error(nmc_comm_t *c) { return ((mpi_t *)c->impl)->err; }

static void mpi_abort(nmc_comm_t *c, int code, const char *why)
{
    if (why && *why) nmc_comm_fatal(why);
    fflush(NULL);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    _exit(code ? code : 1);
}

static void mpi_destroy(nmc_comm_t *c)
{
    mpi_t *m = c->impl;
    if (m->wd_started) {
        atomic_store(&m->stop, 1);
        pthread_join(m->wd, NULL);
    }
    if (m->diag != MPI_COMM_NULL) MPI_Comm_free(&m->diag);
    if (m->comm != MPI_COMM_NULL) MPI_Comm_free(&m->comm);
    if (--live_comms == 0 && m->own_init) {
        MPI_Finalize();
        finalized = 1;
    }
    free(m);
    free(c);
}

/* ---- opening ----------------------------------------------------------------------------- */

static int init_fail(nmc_diags_t *d, const char *what, int rc)
{
    char es[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (rc != MPI_SUCCESS) MPI_Error_string(rc, es, &len);
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-init-failed", NULL, 0, 0, 0,
                                 "mpi: %s%s%s", what, *es ? ": " : "", es);
    nmc_diag_set_help(r, "start the ranks with mpirun (or srun --mpi=pmix) from the same "
                      "MPI installation nmc was built with");
    return -1;
}

/* MPI_Init_thread when nobody did; returns 0 and sets m->own_init / m->multiple. */
static int init_mpi(mpi_t *m, nmc_diags_t *d)
{
    int inited = 0, provided = 0;
    if (finalized) return init_fail(d, "MPI was already finalized in this process", 0);
    MPI_Initialized(&inited);
    if (!inited) {
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
        if (rc != MPI_SUCCESS) return init_fail(d, "MPI_Init_thread failed", rc);
        m->own_init = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    m->multiple = provided >= MPI_THREAD_MULTIPLE;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return 0;
}

static int setup(nmc_comm_t *c, mpi_t *m, const nmc_launch_t *l, nmc_diags_t *d)
{
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(MPI_COMM_WORLD, &m->diag);
    if (rc != MPI_SUCCESS) return init_fail(d, "MPI_Comm_dup failed", rc);
    MPI_Comm_rank(m->comm, &c->rank);
    MPI_Comm_size(m->comm, &c->size);
    if (l && l->source != NMC_LAUNCH_NONE && (l->rank != c->rank || l->world != c->size)) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-init-failed", NULL, 0, 0, 0,
                                     "mpi says rank %d of %d, but the %s launch environment "
                                     "says rank %d of %d", c->rank, c->size,
                                     nmc_launch_source_name(l->source), l->rank, l->world);
        nmc_diag_set_help(r, "do not mix launchers: unset NMC_RANK / RANK / WORLD_SIZE when "
                          "starting with mpirun");
        return -1;
    }
    MPI_Comm node;
    if (MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(node, &c->local_rank);
        MPI_Comm_size(node, &c->local_size);
        MPI_Comm_free(&node);
    } else {
        c->local_rank = l ? l->local_rank : 0;
        c->local_size = l ? l->local_size : 1;
    }
    if (pthread_create(&m->wd, NULL, watchdog, m) != 0)
        return init_fail(d, "cannot start the watchdog thread", 0);
    m->wd_started = 1;
    return 0;
}

int nmc_comm_mpi_new(const nmc_launch_t *l, nmc_comm_t **out, nmc_diags_t *d)
{
    *out = NULL;
    nmc_comm_t *c = calloc(1, sizeof *c);
    mpi_t *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return init_fail(d, "out of memory", 0);
    }
    m->comm = m->diag = MPI_COMM_NULL;
    m->timeout = nmc_comm_timeout_s(NULL);
    atomic_store(&m->op, "init");
    c->kind = "mpi";
    c->mem = NMC_COMM_MEM_HOST;
    c->impl = m;
    c->allreduce_sum = mpi_allreduce_sum;
    c->allreduce_mean = mpi_allreduce_mean;
    c->reduce_scatter = mpi_reduce_scatter;
    c->allgather = mpi_allgather;
    c->broadcast = mpi_broadcast;
    c->barrier = mpi_barrier;
    c->allreduce_f64 = mpi_allreduce_f64;
    c->allreduce_i64 = mpi_allreduce_i64;
    c->abort = mpi_abort;
    c->last_error = mpi_last_error;
    c->destroy = mpi_destroy;
    if (init_mpi(m, d) != 0) {
        free(m);
        free(c);
        return -1;
    }
    live_comms++;
    if (setup(c, m, l, d) != 0) {
        mpi_destroy(c);
        return -1;
    }
    *out = c;
    return 0;
}

int nmc_comm_mpi_available(void) { return 1; }

#else /* built without MPI */

int nmc_comm_mpi_new(const nmc_launch_t *l, nmc_comm_t **out, nmc_diags_t *d)
{
    *out = NULL;
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-kind-unavailable", NULL, 0, 0, 0,
                                 "communicator \"mpi\" is not available: this nmc was built "
                                 "without MPI");
    nmc_diag_set_help(r, "install libopenmpi-dev (deps/apt.txt) and rebuild (make clean && "
                      "make), or use \"shm\" for ranks on one node");
    return -1;
}

int nmc_comm_mpi_available(void) { return 0; }

#endif
