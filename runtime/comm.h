/* comm.h — the communicator: collectives between the ranks of one training job (the
 * foundation of data parallelism: gradient averaging, ZeRO-1 sharding, loss/token sums).
 *
 * A communicator is a table of function pointers (like runtime/dev.h) over one group of
 * `size` ranks. Implementations:
 *   "single"  world size 1: every collective is a no-op (copies where in != out);
 *             runtime/comm.c.
 *   "shm"     the ranks of ONE node (self-spawned by `nmc train`, or any launcher whose
 *             ranks all share a node): a shared-memory file in the rendezvous directory;
 *             host buffers; runtime/comm_shm.c.
 *   "mpi"     any launcher that starts an MPI job (mpirun, srun --mpi=pmix): host
 *             buffers; runtime/comm_mpi.c, built only when mpi.h is found (NMC_MPI).
 *   "nccl"    GPU buffers (cudaMalloc'd); the NCCL unique id travels through a host
 *             communicator (mpi, shm) when one is given, else through a file in the
 *             rendezvous directory; runtime/comm_nccl.c, built only with NMC_CUDA and
 *             NMC_NCCL.
 * Which buffers an implementation takes is in `mem`: host memory (NMC_COMM_MEM_HOST) or
 * device memory of the current CUDA device (NMC_COMM_MEM_DEVICE). The host-array
 * reductions (allreduce_f64 / allreduce_i64) always take HOST arrays, on every kind.
 *
 * Semantics (every kind, bit-identical results on every rank):
 *   allreduce_sum(buf, n)      buf[i] = sum over ranks of buf[i] (fp32, in place).
 *   allreduce_mean(buf, n)     the sum times 1/size.
 *   reduce_scatter(out, in, chunk)
 *                              `in` holds size*chunk floats; rank r receives into out
 *                              [chunk] the sum over ranks of in[r*chunk, (r+1)*chunk).
 *                              Padding rule: a tensor of n elements is sharded as
 *                              chunk = nmc_comm_chunk(n, size) = ceil(n / size); the
 *                              caller's buffer has size*chunk floats with the tail
 *                              [n, size*chunk) ZERO, so the last rank's shard is padded
 *                              with zeros (and its reduced padding is zero).
 *                              out may equal in + rank*chunk (in place), else must not
 *                              overlap in.
 *   allgather(out, in, bytes)  out[r*bytes, (r+1)*bytes) = rank r's in[0, bytes). Any
 *                              dtype (bytes). out may equal in + rank*bytes (in place).
 *   broadcast(buf, bytes, root) buf on every rank = root's buf.
 *   barrier()                  returns once every rank has entered it.
 *   allreduce_f64(h, n)        host doubles, summed (loss sums, grad-norm^2).
 *   allreduce_i64(h, n)        host int64, summed exactly (token counts, small gathers).
 *   abort(code, why)           ends THIS PROCESS and, as far as the kind can, the whole
 *                              job (MPI_Abort / ncclCommAbort), exit status `code`. It
 *                              is the one entry point that does not return; callers use
 *                              it after a collective failed, when the group is broken.
 * Summation order is fixed by the implementation (never by arrival time), so every rank
 * gets the same bits and replicas stay identical.
 *
 * Errors: every collective returns 0, or -1 after which last_error() says why, naming the
 * operation and, where knowable, the ranks that did not arrive ("" when nothing failed).
 * A collective that does not complete within the timeout (NMC_COMM_TIMEOUT_S, default
 * 300 s; see nmc_comm_timeout_s) fails — never a silent hang:
 *   shm, nccl: the call returns -1 with the diagnostic (nccl aborts its communicator);
 *   mpi: a blocked MPI call cannot be interrupted, so the watchdog thread writes the
 *        diagnostic through the fatal hook (nmc_comm_set_fatal_hook; default: stderr)
 *        and calls MPI_Abort. This is the only place the library prints.
 * After any failure the communicator is unusable: call abort() or destroy().
 *
 * Threads: a communicator is used by one thread at a time.
 */
#ifndef NMC_COMM_H
#define NMC_COMM_H
#include "diag.h"
#include <stddef.h>
#include <stdint.h>

typedef enum { NMC_COMM_MEM_HOST = 0, NMC_COMM_MEM_DEVICE = 1 } nmc_comm_mem_t;

typedef struct nmc_comm nmc_comm_t;

struct nmc_comm {
    const char *kind;    /* "single", "shm", "mpi", "nccl" (static) */
    int rank;            /* 0 .. size-1 */
    int size;            /* ranks in the job */
    int local_rank;      /* rank among the ranks of this node (selects the GPU) */
    int local_size;      /* ranks on this node */
    nmc_comm_mem_t mem;  /* where the fp32 / byte buffers of the collectives live */
    void *impl;          /* implementation state */

    int (*allreduce_sum)(nmc_comm_t *c, float *buf, size_t n);
    int (*allreduce_mean)(nmc_comm_t *c, float *buf, size_t n);
    int (*reduce_scatter)(nmc_comm_t *c, float *out, const float *in, size_t chunk);
    int (*allgather)(nmc_comm_t *c, void *out, const void *in, size_t bytes);
    int (*broadcast)(nmc_comm_t *c, void *buf, size_t bytes, int root);
    int (*barrier)(nmc_comm_t *c);
    int (*allreduce_f64)(nmc_comm_t *c, double *host, size_t n);
    int (*allreduce_i64)(nmc_comm_t *c, int64_t *host, size_t n);
    void (*abort)(nmc_comm_t *c, int code, const char *why); /* never returns */
    const char *(*last_error)(nmc_comm_t *c);
    void (*destroy)(nmc_comm_t *c); /* frees the communicator itself; NULL-safe wrapper:
                                       nmc_comm_free */
};

/* Where this process sits in the job and how its ranks meet: filled by
 * nmc_launch_detect (runtime/launch.h) and read by nmc_comm_open. */
typedef struct nmc_launch nmc_launch_t;

/* ---- opening ---------------------------------------------------------------------- */

/* Open the communicator for this process. kind: "auto", "single", "shm", "mpi" or
 * "nccl"; "auto" picks (see docs/distributed.md):
 *   world size 1 -> single; mem DEVICE -> nccl (NCCL id through MPI when l->under_mpi,
 *   built with MPI and NMC_RDZV_DIR unset, else through the rendezvous file);
 *   l->under_mpi and built with MPI -> mpi; every rank on this node -> shm; else an error.
 * mem: the buffers the caller will pass (HOST for the CPU device, DEVICE for CUDA).
 * cuda_stream: for nccl, the cudaStream_t the caller's device computes on (collectives
 *   are ordered after it and complete before returning); NULL = the legacy default stream.
 * Returns 0 and *out (free with nmc_comm_free), or -1 with diagnostics
 * (comm-kind-unknown, comm-kind-unavailable, comm-kind-mismatch, comm-init-failed,
 * comm-rendezvous-timeout). */
int nmc_comm_open(const nmc_launch_t *l, const char *kind, nmc_comm_mem_t mem,
                  void *cuda_stream, nmc_comm_t **out, nmc_diags_t *d);

/* The single-process communicator (never fails; free with nmc_comm_free). */
nmc_comm_t *nmc_comm_single_new(void);

/* Implementations (called by nmc_comm_open; usable directly by tests and drivers). Each
 * returns 0 and *out, or -1 with a diagnostic. */
int nmc_comm_shm_new(const nmc_launch_t *l, nmc_comm_t **out, nmc_diags_t *d);
int nmc_comm_mpi_new(const nmc_launch_t *l, nmc_comm_t **out, nmc_diags_t *d);
/* boot: a host communicator over the same ranks to carry the NCCL id (NULL: the file
 * rendezvous in l's rendezvous directory). Ownership of boot passes to the call: it is
 * freed with the new communicator, or before returning on failure (an MPI boot must
 * outlive NCCL's use of the job: MPI_Finalize runs when it is freed). */
int nmc_comm_nccl_new(const nmc_launch_t *l, nmc_comm_t *boot, void *cuda_stream,
                      nmc_comm_t **out, nmc_diags_t *d);
int nmc_comm_mpi_available(void);  /* 1 when built with MPI */
int nmc_comm_nccl_available(void); /* 1 when built with NCCL */

void nmc_comm_free(nmc_comm_t *c); /* NULL is a no-op */

/* ---- helpers ---------------------------------------------------------------------- */

/* ceil(n / size): the shard length of an n-element tensor (see reduce_scatter). */
size_t nmc_comm_chunk(size_t n, int size);

/* Per-collective timeout in seconds: NMC_COMM_TIMEOUT_S (a positive number, fractions
 * allowed), default 300. An unparsable value gives the default and *bad = 1 (bad may be
 * NULL). */
double nmc_comm_timeout_s(int *bad);

/* FNV-1a 64 of bytes: the hash of the resolved job spec every rank compares. */
uint64_t nmc_comm_hash64(const void *bytes, size_t n);

/* Check that every rank runs the same resolved spec: gathers each rank's `hash` (through
 * allreduce_i64) and compares with rank 0's. Collective: every rank must call it.
 * Returns 0, or -1 with comm-spec-mismatch naming the ranks that differ from rank 0
 * (the same diagnostic on every rank), or comm-failed when the collective failed. */
int nmc_comm_check_same_spec(nmc_comm_t *c, uint64_t hash, nmc_diags_t *d);

/* The fatal hook: how the MPI watchdog reports a timeout before it aborts the job
 * (message is one or more lines, no trailing newline). Default (NULL): write
 * "nmc: " message "\n" to stderr. Process-wide. */
typedef void (*nmc_comm_fatal_hook_t)(const char *message);
void nmc_comm_set_fatal_hook(nmc_comm_fatal_hook_t hook);
void nmc_comm_fatal(const char *message); /* calls the hook (for implementations) */

#endif
