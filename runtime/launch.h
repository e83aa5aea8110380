/* launch.h — where this process sits in a multi-process job: rank discovery from the
 * launcher's environment, the local self-spawn of N ranks, and the checks every rank
 * runs before loading weights (world size, same spec).
 *
 * Launchers, in precedence order (the first whose variables are present wins; the order
 * matters because launchers nest: mpirun or torchrun inside an sbatch script inherit the
 * batch step's SLURM_PROCID=0):
 *   1. nmc self-spawn / manual:  NMC_RANK, NMC_WORLD_SIZE [, NMC_LOCAL_RANK,
 *                                NMC_LOCAL_WORLD_SIZE]
 *   2. OpenMPI (mpirun):         OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE
 *   3. MPICH / Intel MPI (PMI):  PMI_RANK, PMI_SIZE [, MPI_LOCALRANKID, MPI_LOCALNRANKS]
 *   4. torchrun-style:           RANK, WORLD_SIZE [, LOCAL_RANK, LOCAL_WORLD_SIZE]
 *   5. Slurm srun:               SLURM_PROCID, SLURM_STEP_NUM_TASKS (else SLURM_NTASKS),
 *                                SLURM_LOCALID, tasks on this node from
 *                                SLURM_STEP_TASKS_PER_NODE ("2(x3),1", indexed by
 *                                SLURM_NODEID) else SLURM_NTASKS_PER_NODE, nodes from
 *                                SLURM_STEP_NUM_NODES else SLURM_NNODES. Only inside an
 *                                srun step (SLURM_STEP_NUM_TASKS set): a bare sbatch
 *                                script (SLURM_PROCID=0 of its batch step) is no launch.
 *   6. none:                     rank 0 of 1.
 * Missing local fields default to local rank = rank, local size = world (one node).
 * The rendezvous directory (file exchange of the NCCL id, the shm segment) is
 * NMC_RDZV_DIR; unset: none (nccl then needs an MPI bootstrap, shm fails clearly).
 *
 * Errors: functions taking nmc_diags_t append records (codes launch-*, comm-*) and
 * return -1; they never print and never exit.
 */
#ifndef NMC_LAUNCH_H
#define NMC_LAUNCH_H
#include "comm.h"
#include "diag.h"
#include <stdint.h>

typedef enum {
    NMC_LAUNCH_NONE = 0,
    NMC_LAUNCH_NMC = 1,      /* NMC_RANK (self-spawn or set by hand) */
    NMC_LAUNCH_OPENMPI = 2,
    NMC_LAUNCH_PMI = 3,
    NMC_LAUNCH_TORCHRUN = 4,
    NMC_LAUNCH_SLURM = 5,
} nmc_launch_source_t;

#define NMC_LAUNCH_PATH_MAX 1024 /* rendezvous directory path, bytes with the NUL */

struct nmc_launch {
    nmc_launch_source_t source;
    int rank;        /* global rank, 0 .. world-1 */
    int world;       /* number of ranks */
    int local_rank;  /* rank on this node */
    int local_size;  /* ranks on this node */
    int num_nodes;   /* nodes when the launcher says (Slurm), else 0 = unknown */
    int under_mpi;   /* MPI_Init can wire up the ranks here: OpenMPI or PMI launch, or
                        PMIX_RANK / PMI_FD present (srun --mpi=pmix / pmi2) */
    char rdzv_dir[NMC_LAUNCH_PATH_MAX]; /* NMC_RDZV_DIR, "" when unset */
};

/* Name of a source ("none", "nmc", "openmpi", "pmi", "torchrun", "slurm"). */
const char *nmc_launch_source_name(nmc_launch_source_t s);

/* Environment lookup, getenv-shaped; NULL = the process environment. Tests pass a fake. */
typedef const char *(*nmc_getenv_fn)(void *ctx, const char *name);

/* Fill *l from the environment (precedence above). Returns 0, or -1 with
 * launch-env-invalid (a variable that is not a number, a rank outside [0, world), a
 * tasks-per-node list that does not parse) naming the variable and its value. */
int nmc_launch_detect(nmc_launch_t *l, nmc_getenv_fn get, void *ctx, nmc_diags_t *d);

/* Before any weights load: the world must be exactly the job's GPU count
 * (parallelism.num_nodes × num_gpus_per_node = total_gpus) and, when gpus_per_node > 0
 * and the launcher told us the local size, every node must run gpus_per_node ranks.
 * Returns 0, or -1 with launch-world-mismatch / launch-local-mismatch (and the launch
 * command to use in help). */
int nmc_launch_check_world(const nmc_launch_t *l, int64_t total_gpus, int64_t gpus_per_node,
                           nmc_diags_t *d);

/* Whether `nmc train` should spawn its own ranks: no launcher, one node, and more than
 * one GPU per node requested. */
int nmc_launch_should_spawn(const nmc_launch_t *l, int64_t num_nodes, int64_t gpus_per_node);

/* ---- self-spawn -------------------------------------------------------------------- */

typedef struct {
    int failed_rank;  /* first rank that failed, -1 when all exited 0 */
    int status;       /* its exit status (128 + signal when killed by a signal) */
    int signal;       /* the signal that ended it, 0 when it exited */
} nmc_spawn_result_t;

/* Run `argv` (argv[0] is the program, resolved through PATH when it has no '/') as
 * nprocs local ranks 0..nprocs-1 and wait for them. Each child gets NMC_RANK,
 * NMC_WORLD_SIZE, NMC_LOCAL_RANK, NMC_LOCAL_WORLD_SIZE and NMC_RDZV_DIR = a fresh
 * directory (rdzv_parent, or $TMPDIR or /tmp when NULL) removed afterwards. When a rank
 * exits non-zero or is killed, the others get SIGTERM, then SIGKILL after grace_s
 * seconds, and the first failure is reported. Returns 0 when every rank exited 0; 1
 * with launch-rank-failed naming the rank (and *res filled) when one failed; -1 with
 * launch-spawn-failed when the ranks could not be started. res may be NULL. */
int nmc_launch_spawn(char *const argv[], int nprocs, const char *rdzv_parent,
                     double grace_s, nmc_spawn_result_t *res, nmc_diags_t *d);

#endif
