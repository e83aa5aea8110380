/* comm_shm.c — the "shm" communicator: the ranks of one node exchange host buffers
 * through a shared file mapping in the rendezvous directory (NMC_RDZV_DIR). It is the
 * CPU transport of `nmc train`'s self-spawned local ranks, and of any launcher whose
 * ranks all share one node.
 *
 * Segment (file "nmc-comm-shm" in the rendezvous directory, created by rank 0 as a temp
 * file and renamed into place, polled for by the others; unlinked by rank 0 once every
 * rank has joined, so a clean start leaves nothing behind):
 *   header page | per-rank control block (one cache line each) | world × SLOT_BYTES data
 * Synchronization: a barrier is "my arrive counter = k, wait until every counter >= k"
 * (monotonic counters, C11 acquire/release atomics on the shared mapping). Each wait is
 * bounded: a rank whose pid has gone (kill(pid, 0) == ESRCH) fails the wait at once, a
 * rank that called abort() too, and anything else after the timeout; the message names
 * the missing ranks and the operation each one was last in.
 * Reductions sum slots in rank order 0..size-1 on every rank: bit-identical results.
 */
#include "comm.h"
#include "launch.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_MAGIC 0x6e6d632d73686d31ULL /* "nmc-shm1" */
#define SHM_FILE "nmc-comm-shm"
#define SLOT_BYTES (1u << 20)  /* per-rank staging: 1 MiB (collectives run in pieces) */
#define SHM_MAX_RANKS 512      /* one node; the header must stay small */
#define ERR_CAP 1024

typedef enum { OP_JOIN, OP_ALLREDUCE, OP_REDUCE_SCATTER, OP_ALLGATHER, OP_BROADCAST,
               OP_BARRIER, OP_ALLREDUCE_F64, OP_ALLREDUCE_I64 } op_t;
static const char *const op_names[] = {"join", "allreduce", "reduce_scatter", "allgather",
                                       "broadcast", "barrier", "allreduce_f64",
                                       "allreduce_i64"};

typedef struct {
    _Atomic uint64_t arrive; /* last barrier number this rank entered */
    _Atomic uint64_t op_seq; /* collectives started by this rank */
    _Atomic int32_t op;      /* op_t of the last one */
    _Atomic int32_t pid;
    char pad[40];
} rank_ctl_t;

typedef struct {
    uint64_t magic;
    int32_t world;
    int32_t pad0;
    _Atomic int32_t aborted; /* 1 + the rank that called abort(), 0 = none */
    int32_t pad1;
    char why[256];           /* its reason */
} shm_head_t;

typedef struct {
    unsigned char *base;
    size_t len;
    shm_head_t *head;
    rank_ctl_t *ctl;
    unsigned char *slots;
    uint64_t barrier_no; /* barriers passed (the same on every rank) */
    uint64_t op_seq;
    op_t op;
    double timeout;
    char path[NMC_LAUNCH_PATH_MAX + 32];
    char err[ERR_CAP];
} shm_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t ctl_offset(void) { return 4096; }

static size_t seg_len(int world)
{
    size_t ctl = ((size_t)world * sizeof(rank_ctl_t) + 4095) & ~(size_t)4095;
    return ctl_offset() + ctl + (size_t)world * SLOT_BYTES;
}

static unsigned char *slot(shm_t *s, int r) { return s->slots + (size_t)r * SLOT_BYTES; }

/* ---- waiting ------------------------------------------------------------------------------ */

/* Describe ranks whose arrive counter is below k into s->err (after a prefix). */
static void describe_missing(nmc_comm_t *c, uint64_t k, const char *what)
{
    shm_t *s = c->impl;
    size_t len = (size_t)snprintf(s->err, ERR_CAP, "rank %d: %s (op #%llu) %s: ", c->rank,
                                  op_names[s->op], (unsigned long long)s->op_seq, what);
    int listed = 0;
    for (int r = 0; r < c->size && len < ERR_CAP; r++) {
        if (atomic_load_explicit(&s->ctl[r].arrive, memory_order_acquire) >= k) continue;
        int pid = atomic_load(&s->ctl[r].pid);
        int dead = pid > 0 && kill(pid, 0) != 0 && errno == ESRCH;
        uint64_t seq = atomic_load(&s->ctl[r].op_seq);
        int op = atomic_load(&s->ctl[r].op);
        len += (size_t)snprintf(s->err + len, ERR_CAP - len,
                                "%srank %d (pid %d) %s, last entered op #%llu %s",
                                listed++ ? "; " : "", r, pid,
                                !pid ? "never joined" : dead ? "has exited" : "did not arrive",
                                (unsigned long long)seq, op_names[op]);
    }
}

/* Fails the wait: aborted by a peer, a peer process gone, or timed out. */
static int check_peers(nmc_comm_t *c, uint64_t k, double t0)
{
    shm_t *s = c->impl;
    int ab = atomic_load(&s->head->aborted);
    if (ab) {
        snprintf(s->err, ERR_CAP, "rank %d: %s (op #%llu) failed: rank %d aborted the job: "
                 "%.256s", c->rank, op_names[s->op], (unsigned long long)s->op_seq, ab - 1,
                 s->head->why);
        return -1;
    }
    for (int r = 0; r < c->size; r++) {
        if (atomic_load_explicit(&s->ctl[r].arrive, memory_order_acquire) >= k) continue;
        int pid = atomic_load(&s->ctl[r].pid);
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
            describe_missing(c, k, "failed");
            return -1;
        }
    }
    if (now_s() - t0 > s->timeout) {
        char what[96];
        snprintf(what, sizeof what, "timed out after %g s (NMC_COMM_TIMEOUT_S)", s->timeout);
        describe_missing(c, k, what);
        return -1;
    }
    return 0;
}

static int all_arrived(shm_t *s, int size, uint64_t k)
{
    for (int r = 0; r < size; r++)
        if (atomic_load_explicit(&s->ctl[r].arrive, memory_order_acquire) < k) return 0;
    return 1;
}

/* The barrier: publish arrival k, wait for everyone (bounded). */
static int shm_wait_all(nmc_comm_t *c)
{
    shm_t *s = c->impl;
    uint64_t k = ++s->barrier_no;
    atomic_store_explicit(&s->ctl[c->rank].arrive, k, memory_order_release);
    double t0 = now_s();
    for (unsigned long it = 0;; it++) {
        if (all_arrived(s, c->size, k)) return 0;
        if (it < 200) continue;
        if (it < 2000) {
            sched_yield();
            continue;
        }
        struct timespec ts = {0, 100000}; /* 0.1 ms: a waiting rank costs no CPU */
        nanosleep(&ts, NULL);
        if (it % 256 == 0 && check_peers(c, k, t0) != 0) return -1;
    }
}

static void begin(nmc_comm_t *c, op_t op)
{
    shm_t *s = c->impl;
    s->op = op;
    s->op_seq++;
    atomic_store(&s->ctl[c->rank].op, (int32_t)op);
    atomic_store(&s->ctl[c->rank].op_seq, s->op_seq);
}

/* ---- collectives ---------------------------------------------------------------------- */

/* Sum of the slots' first n elements (rank order) into dst, for type T. */
#define DEFINE_SUM(name, T)                                                      \
    static void name(shm_t *s, int size, T *dst, size_t n)                        \
    {                                                                              \
        memcpy(dst, slot(s, 0), n * sizeof(T));                                  \
        for (int r = 1; r < size; r++) {                                         \
            const T *x = (const T *)(const void *)slot(s, r);                   \
            for (size_t i = 0; i < n; i++) dst[i] += x[i];                       \
        }                                                                          \
    }
DEFINE_SUM(sum_f32, float)
DEFINE_SUM(sum_f64, double)
DEFINE_SUM(sum_i64, int64_t)

typedef void (*sum_fn)(shm_t *, int, void *, size_t);

/* In-place allreduce of n elements of `es` bytes in slot-sized pieces. */
static int allreduce_any(nmc_comm_t *c, void *buf, size_t n, size_t es, sum_fn sum, op_t op)
{
    shm_t *s = c->impl;
    begin(c, op);
    size_t step = SLOT_BYTES / es;
    unsigned char *b = buf;
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        memcpy(slot(s, c->rank), b + off * es, k * es);
        if (shm_wait_all(c) != 0) return -1;
        sum(s, c->size, b + off * es, k);
        if (shm_wait_all(c) != 0) return -1;
    }
    return 0;
}

static void sum_f32_v(shm_t *s, int size, void *d, size_t n) { sum_f32(s, size, d, n); }
static void sum_f64_v(shm_t *s, int size, void *d, size_t n) { sum_f64(s, size, d, n); }
static void sum_i64_v(shm_t *s, int size, void *d, size_t n) { sum_i64(s, size, d, n); }

static int shm_allreduce_sum(nmc_comm_t *c, float *buf, size_t n)
{
    return allreduce_any(c, buf, n, sizeof *buf, sum_f32_v, OP_ALLREDUCE);
}

static int shm_allreduce_mean(nmc_comm_t *c, float *buf, size_t n)
{
    if (shm_allreduce_sum(c, buf, n) != 0) return -1;
    float inv = 1.0f / (float)c->size;
    for (size_t i = 0; i < n; i++) buf[i] *= inv;
    return 0;
}

static int shm_allreduce_f64(nmc_comm_t *c, double *h, size_t n)
{
    return allreduce_any(c, h, n, sizeof *h, sum_f64_v, OP_ALLREDUCE_F64);
}

static int shm_allreduce_i64(nmc_comm_t *c, int64_t *h, size_t n)
{
    return allreduce_any(c, h, n, sizeof *h, sum_i64_v, OP_ALLREDUCE_I64);
}

/* Each piece: every rank stages k elements for each target q at slot[q*k]; rank r then
 * sums column r. out may be in + rank*chunk: the piece is staged before it is written. */
static int shm_reduce_scatter(nmc_comm_t *c, float *out, const float *in, size_t chunk)
{
    shm_t *s = c->impl;
    begin(c, OP_REDUCE_SCATTER);
    size_t step = SLOT_BYTES / sizeof(float) / (size_t)c->size;
    for (size_t off = 0; off < chunk; off += step) {
        size_t k = chunk - off < step ? chunk - off : step;
        float *mine = (float *)(void *)slot(s, c->rank);
        for (int q = 0; q < c->size; q++)
            memcpy(mine + (size_t)q * k, in + (size_t)q * chunk + off, k * sizeof(float));
        if (shm_wait_all(c) != 0) return -1;
        for (size_t i = 0; i < k; i++) {
            float acc = 0.0f;
            for (int r = 0; r < c->size; r++)
                acc += ((const float *)(const void *)slot(s, r))[(size_t)c->rank * k + i];
            out[off + i] = acc;
        }
        if (shm_wait_all(c) != 0) return -1;
    }
    return 0;
}

static int shm_allgather(nmc_comm_t *c, void *out, const void *in, size_t bytes)
{
    shm_t *s = c->impl;
    begin(c, OP_ALLGATHER);
    for (size_t off = 0; off < bytes; off += SLOT_BYTES) {
        size_t k = bytes - off < SLOT_BYTES ? bytes - off : SLOT_BYTES;
        memcpy(slot(s, c->rank), (const unsigned char *)in + off, k);
        if (shm_wait_all(c) != 0) return -1;
        for (int r = 0; r < c->size; r++)
            memcpy((unsigned char *)out + (size_t)r * bytes + off, slot(s, r), k);
        if (shm_wait_all(c) != 0) return -1;
    }
    return 0;
}

static int shm_broadcast(nmc_comm_t *c, void *buf, size_t bytes, int root)
{
    shm_t *s = c->impl;
    begin(c, OP_BROADCAST);
    if (root < 0 || root >= c->size) {
        snprintf(s->err, ERR_CAP, "rank %d: broadcast root %d outside [0, %d)", c->rank, root,
                 c->size);
        return -1;
    }
    for (size_t off = 0; off < bytes; off += SLOT_BYTES) {
        size_t k = bytes - off < SLOT_BYTES ? bytes - off : SLOT_BYTES;
        if (c->rank == root) memcpy(slot(s, root), (unsigned char *)buf + off, k);
        if (shm_wait_all(c) != 0) return -1;
        if (c->rank != root) memcpy((unsigned char *)buf + off, slot(s, root), k);
        if (shm_wait_all(c) != 0) return -1;
    }
    return 0;
}

static int shm_barrier(nmc_comm_t *c)
{
    begin(c, OP_BARRIER);
    return shm_wait_all(c);
}

static const char *shm_last_error(nmc_comm_t *c) { return ((shm_t *)c->impl)->err; }

static void shm_abort(nmc_comm_t *c, int code, const char *why)
{
    shm_t *s = c->impl;
    int expected = 0;
    if (atomic_compare_exchange_strong(&s->head->aborted, &expected, c->rank + 1))
        snprintf(s->head->why, sizeof s->head->why, "%s", why ? why : "");
    if (why && *why) nmc_comm_fatal(why);
    fflush(NULL);
    _exit(code ? code : 1);
}

static void shm_destroy(nmc_comm_t *c)
{
    shm_t *s = c->impl;
    if (s->base) munmap(s->base, s->len);
    free(s);
    free(c);
}

/* ---- joining ----------------------------------------------------------------------------- */

static int rdzv_fail(nmc_diags_t *d, const char *code, const char *msg, const char *path)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, code, path, 0, 0, 0, "%s", msg);
    nmc_diag_set_help(r, "every local rank needs the same NMC_RDZV_DIR, a fresh writable "
                      "directory on this node (nmc train's self-spawn sets it)");
    return -1;
}

/* Rank 0: create the segment under a temp name, then rename it into place. */
static int create_segment(shm_t *s, int world, nmc_diags_t *d)
{
    char tmp[sizeof s->path + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", s->path, (int)getpid());
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)s->len) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "cannot create the shared segment: %s", strerror(errno));
        if (fd >= 0) close(fd);
        return rdzv_fail(d, "comm-init-failed", msg, tmp);
    }
    s->base = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (s->base == MAP_FAILED) {
        s->base = NULL;
        unlink(tmp);
        return rdzv_fail(d, "comm-init-failed", "cannot map the shared segment", tmp);
    }
    s->head = (shm_head_t *)(void *)s->base;
    s->head->world = world;
    atomic_thread_fence(memory_order_release);
    s->head->magic = SHM_MAGIC;
    if (rename(tmp, s->path) != 0) {
        unlink(tmp);
        return rdzv_fail(d, "comm-init-failed", "cannot rename the shared segment into place",
                         s->path);
    }
    return 0;
}

/* Other ranks: poll for the segment (bounded by the timeout), map it, check it. */
static int open_segment(shm_t *s, int world, nmc_diags_t *d)
{
    double t0 = now_s();
    for (;;) {
        int fd = open(s->path, O_RDWR);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && (size_t)st.st_size == s->len) {
            s->base = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
            if (s->base == MAP_FAILED) {
                s->base = NULL;
                return rdzv_fail(d, "comm-init-failed", "cannot map the shared segment",
                                 s->path);
            }
            s->head = (shm_head_t *)(void *)s->base;
            if (s->head->magic == SHM_MAGIC && s->head->world == world) return 0;
            return rdzv_fail(d, "comm-init-failed",
                             "the shared segment belongs to another job (world size or "
                             "format differ)", s->path);
        }
        if (fd >= 0) close(fd);
        if (now_s() - t0 > s->timeout) {
            char msg[256];
            snprintf(msg, sizeof msg, "rank 0 did not create the shared segment within %g s "
                     "(NMC_COMM_TIMEOUT_S)", s->timeout);
            return rdzv_fail(d, "comm-rendezvous-timeout", msg, s->path);
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

static nmc_comm_t *shm_comm(shm_t *s, const nmc_launch_t *l)
{
    nmc_comm_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->kind = "shm";
    c->rank = l->rank;
    c->size = l->world;
    c->local_rank = l->local_rank;
    c->local_size = l->local_size;
    c->mem = NMC_COMM_MEM_HOST;
    c->impl = s;
    c->allreduce_sum = shm_allreduce_sum;
    c->allreduce_mean = shm_allreduce_mean;
    c->reduce_scatter = shm_reduce_scatter;
    c->allgather = shm_allgather;
    c->broadcast = shm_broadcast;
    c->barrier = shm_barrier;
    c->allreduce_f64 = shm_allreduce_f64;
    c->allreduce_i64 = shm_allreduce_i64;
    c->abort = shm_abort;
    c->last_error = shm_last_error;
    c->destroy = shm_destroy;
    return c;
}

static int check_launch(const nmc_launch_t *l, nmc_diags_t *d)
{
    if (l->local_size != l->world) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-kind-unavailable", NULL, 0, 0, 0,
                                     "communicator \"shm\" needs every rank on one node, "
                                     "but %d of the %d ranks run here", l->local_size,
                                     l->world);
        nmc_diag_set_help(r, "use \"mpi\" (CPU) or \"nccl\" (GPU) across nodes");
        return -1;
    }
    if (l->world > SHM_MAX_RANKS) {
        nmc_diag_add(d, NMC_SEV_ERROR, "comm-kind-unavailable", NULL, 0, 0, 0,
                     "communicator \"shm\" supports at most %d ranks, got %d", SHM_MAX_RANKS,
                     l->world);
        return -1;
    }
    if (!l->rdzv_dir[0])
        return rdzv_fail(d, "comm-init-failed",
                         "communicator \"shm\" needs a rendezvous directory, and NMC_RDZV_DIR "
                         "is not set", NULL);
    return 0;
}

int nmc_comm_shm_new(const nmc_launch_t *l, nmc_comm_t **out, nmc_diags_t *d)
{
    *out = NULL;
    if (check_launch(l, d) != 0) return -1;
    shm_t *s = calloc(1, sizeof *s);
    if (!s) return rdzv_fail(d, "comm-init-failed", "out of memory", NULL);
    s->timeout = nmc_comm_timeout_s(NULL);
    s->len = seg_len(l->world);
    snprintf(s->path, sizeof s->path, "%s/%s", l->rdzv_dir, SHM_FILE);
    int rc = l->rank == 0 ? create_segment(s, l->world, d) : open_segment(s, l->world, d);
    nmc_comm_t *c = rc == 0 ? shm_comm(s, l) : NULL;
    if (!c) {
        if (rc == 0) rdzv_fail(d, "comm-init-failed", "out of memory", NULL);
        if (s->base) munmap(s->base, s->len);
        free(s);
        return -1;
    }
    s->ctl = (rank_ctl_t *)(void *)(s->base + ctl_offset());
    s->slots = s->base + (seg_len(l->world) - (size_t)l->world * SLOT_BYTES);
    atomic_store(&s->ctl[l->rank].pid, (int32_t)getpid());
    begin(c, OP_JOIN);
    if (shm_wait_all(c) != 0) {
        nmc_diag_add(d, NMC_SEV_ERROR, "comm-rendezvous-timeout", s->path, 0, 0, 0, "%s",
                     s->err);
        if (l->rank == 0) unlink(s->path);
        nmc_comm_free(c);
        return -1;
    }
    if (l->rank == 0) unlink(s->path); /* every rank has it mapped */
    *out = c;
    return 0;
}
