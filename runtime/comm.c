/* comm.c — the communicator interface's shared parts: opening ("auto" selection), the
 * single-process implementation, and the helpers every kind uses (timeout, spec hash
 * check, fatal hook). What belongs here: nothing transport-specific; transports live in
 * comm_shm.c, comm_mpi.c, comm_nccl.c.
 */
#include "comm.h"
#include "launch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- single ----------------------------------------------------------------------------- */

static int single_nop_f32(nmc_comm_t *c, float *buf, size_t n) { return 0; }

/* World size 1 moves no data between processes, so "single" serves host and device
 * buffers alike; the one thing it cannot do is copy device memory (it has no stream), so
 * an out-of-place reduce_scatter/allgather on device buffers is refused. */
static int single_copy(nmc_comm_t *c, void *out, const void *in, size_t bytes)
{
    if (out == in || bytes == 0) return 0;
    if (c->mem == NMC_COMM_MEM_DEVICE) return -1;
    memmove(out, in, bytes);
    return 0;
}

static int single_reduce_scatter(nmc_comm_t *c, float *out, const float *in, size_t chunk)
{
    return single_copy(c, out, in, chunk * sizeof *out);
}

static int single_allgather(nmc_comm_t *c, void *out, const void *in, size_t bytes)
{
    return single_copy(c, out, in, bytes);
}

static int single_broadcast(nmc_comm_t *c, void *buf, size_t bytes, int root) { return 0; }
static int single_barrier(nmc_comm_t *c) { return 0; }
static int single_f64(nmc_comm_t *c, double *h, size_t n) { return 0; }
static int single_i64(nmc_comm_t *c, int64_t *h, size_t n) { return 0; }
static const char *single_last_error(nmc_comm_t *c)
{
    return c->mem == NMC_COMM_MEM_DEVICE
               ? "communicator \"single\" cannot copy between device buffers (pass out == in)"
               : "";
}

static void single_abort(nmc_comm_t *c, int code, const char *why)
{
    if (why && *why) nmc_comm_fatal(why);
    fflush(NULL);
    _exit(code ? code : 1); /* no atexit handlers: the job is being torn down */
}

static void single_destroy(nmc_comm_t *c) { free(c); }

nmc_comm_t *nmc_comm_single_new(void)
{
    nmc_comm_t *c = calloc(1, sizeof *c);
    if (!c) abort(); /* a few dozen bytes at startup: nothing sensible to report */
    c->kind = "single";
    c->size = c->local_size = 1;
    c->mem = NMC_COMM_MEM_HOST;
    c->allreduce_sum = single_nop_f32;
    c->allreduce_mean = single_nop_f32;
    c->reduce_scatter = single_reduce_scatter;
    c->allgather = single_allgather;
    c->broadcast = single_broadcast;
    c->barrier = single_barrier;
    c->allreduce_f64 = single_f64;
    c->allreduce_i64 = single_i64;
    c->abort = single_abort;
    c->last_error = single_last_error;
    c->destroy = single_destroy;
    return c;
}

/* ---- opening ---------------------------------------------------------------------------- */

/* "auto" -> a concrete kind for this launch and buffer location (NULL: none fits). */
static const char *auto_kind(const nmc_launch_t *l, nmc_comm_mem_t mem)
{
    if (l->world == 1) return "single";
    if (mem == NMC_COMM_MEM_DEVICE) return "nccl";
    if (l->under_mpi && nmc_comm_mpi_available()) return "mpi";
    if (l->local_size == l->world) return "shm";
    return NULL;
}

/* nccl over the best bootstrap: MPI when launched by MPI and built with it, else the
 * file rendezvous. */
static int open_nccl(const nmc_launch_t *l, void *stream, nmc_comm_t **out, nmc_diags_t *d)
{
    nmc_comm_t *boot = NULL;
    if (l->under_mpi && nmc_comm_mpi_available() && !l->rdzv_dir[0] &&
        nmc_comm_mpi_new(l, &boot, d) != 0)
        return -1;
    return nmc_comm_nccl_new(l, boot, stream, out, d); /* owns boot */
}

int nmc_comm_open(const nmc_launch_t *l, const char *kind, nmc_comm_mem_t mem,
                  void *cuda_stream, nmc_comm_t **out, nmc_diags_t *d)
{
    *out = NULL;
    const char *k = kind && strcmp(kind, "auto") ? kind : auto_kind(l, mem);
    if (!k) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-kind-unavailable", NULL, 0, 0,
                                     0, "no host communicator reaches %d ranks on several "
                                     "nodes (%s launch)", l->world,
                                     nmc_launch_source_name(l->source));
        nmc_diag_set_help(r, "launch with mpirun (nmc built with MPI), or train on GPUs "
                          "(nccl)");
        return -1;
    }
    int dev_kind = !strcmp(k, "nccl");
    if (!strcmp(k, "shm") || !strcmp(k, "mpi") || dev_kind) {
        if ((mem == NMC_COMM_MEM_DEVICE) != dev_kind) {
            nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-kind-mismatch", NULL, 0, 0,
                                         0, "communicator \"%s\" takes %s buffers but the "
                                         "device's are in %s memory", k,
                                         dev_kind ? "GPU" : "host",
                                         mem == NMC_COMM_MEM_DEVICE ? "GPU" : "host");
            nmc_diag_set_help(r, "use \"nccl\" with CUDA devices and \"mpi\" or \"shm\" "
                              "with the CPU device, or \"auto\"");
            return -1;
        }
    }
    if (!strcmp(k, "single")) {
        if (l->world != 1) {
            nmc_diag_add(d, NMC_SEV_ERROR, "comm-kind-mismatch", NULL, 0, 0, 0,
                         "communicator \"single\" cannot serve a world of %d ranks",
                         l->world);
            return -1;
        }
        *out = nmc_comm_single_new();
        (*out)->rank = 0;
        (*out)->mem = mem;
        return 0;
    }
    if (!strcmp(k, "shm")) return nmc_comm_shm_new(l, out, d);
    if (!strcmp(k, "mpi")) return nmc_comm_mpi_new(l, out, d);
    if (dev_kind) return open_nccl(l, cuda_stream, out, d);
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-kind-unknown", NULL, 0, 0, 0,
                                 "unknown communicator \"%s\"", k);
    nmc_diag_set_expected(r, "one of auto, single, shm, mpi, nccl");
    return -1;
}

void nmc_comm_free(nmc_comm_t *c)
{
    if (c) c->destroy(c);
}

/* ---- helpers ------------------------------------------------------------------------------ */

size_t nmc_comm_chunk(size_t n, int size)
{
    return size > 0 ? (n + (size_t)size - 1) / (size_t)size : n;
}

double nmc_comm_timeout_s(int *bad)
{
    const char *v = getenv("NMC_COMM_TIMEOUT_S");
    if (bad) *bad = 0;
    if (!v || !*v) return 300.0;
    char *end;
    double t = strtod(v, &end);
    if (*end || !(t > 0) || t > 1e7) {
        if (bad) *bad = 1;
        return 300.0;
    }
    return t;
}

uint64_t nmc_comm_hash64(const void *bytes, size_t n)
{
    const unsigned char *p = bytes;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Appends "a, b and c" style rank lists of ranks whose hash differs from rank 0's. */
static void list_ranks(const int64_t *h, int n, char *buf, size_t cap, int *count)
{
    size_t len = 0;
    int shown = 0;
    *count = 0;
    buf[0] = 0;
    for (int r = 1; r < n; r++) {
        if (h[r] == h[0]) continue;
        (*count)++;
        if (shown == 16) { /* keep the message one line on large jobs */
            len += (size_t)snprintf(buf + len, cap - len, ", ...");
            shown++;
        }
        if (shown > 16 || len >= cap) continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s%d (%016llx)", shown ? ", " : "",
                                r, (unsigned long long)h[r]);
        shown++;
    }
}

int nmc_comm_check_same_spec(nmc_comm_t *c, uint64_t hash, nmc_diags_t *d)
{
    int64_t *h = calloc((size_t)c->size, sizeof *h);
    if (!h) {
        nmc_diag_add(d, NMC_SEV_ERROR, "comm-failed", NULL, 0, 0, 0,
                     "out of memory gathering %d spec hashes", c->size);
        return -1;
    }
    memcpy(&h[c->rank], &hash, sizeof hash); /* bit pattern; every other slot is 0 */
    if (c->allreduce_i64(c, h, (size_t)c->size) != 0) {
        nmc_diag_add(d, NMC_SEV_ERROR, "comm-failed", NULL, 0, 0, 0,
                     "rank %d: comparing the job spec across ranks failed: %s", c->rank,
                     c->last_error(c));
        free(h);
        return -1;
    }
    char buf[1024];
    int count;
    list_ranks(h, c->size, buf, sizeof buf, &count);
    if (count > 0) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "comm-spec-mismatch", NULL, 0, 0, 0,
                                     "%d of %d ranks run a different job spec than rank 0 "
                                     "(%016llx): rank%s %s", count, c->size,
                                     (unsigned long long)h[0], count > 1 ? "s" : "", buf);
        nmc_diag_set_help(r, "every rank must get the same job file, model and nmc version; "
                          "check the paths each node sees");
    }
    free(h);
    return count > 0 ? -1 : 0;
}

static nmc_comm_fatal_hook_t fatal_hook;

void nmc_comm_set_fatal_hook(nmc_comm_fatal_hook_t hook) { fatal_hook = hook; }

void nmc_comm_fatal(const char *message)
{
    if (fatal_hook) {
        fatal_hook(message);
        return;
    }
    fprintf(stderr, "nmc: %s\n", message);
    fflush(stderr);
}
