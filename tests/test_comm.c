/* test_comm.c — the communicator interface and the launcher, in one process (plus forked
 * children): the "single" communicator, launch-environment parsing for every launcher
 * (fake environments) and their precedence, the world-size and same-spec checks (a fake
 * communicator), nmc_comm_open's errors, the "shm" communicator between forked ranks
 * (exact sums, a dead peer, an aborting peer) and the self-spawn supervisor.
 * Multi-process MPI runs are in tests/run_comm_mpi.sh. */
#include "comm.h"
#include "launch.h"
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fake environments ------------------------------------------------------------------ */

static const char *fake_get(void *ctx, const char *name)
{
    const char *const *kv = ctx;
    size_t len = strlen(name);
    for (; *kv; kv++)
        if (!strncmp(*kv, name, len) && (*kv)[len] == '=') return *kv + len + 1;
    return NULL;
}

static int detect(nmc_launch_t *l, const char *const *env, nmc_diags_t *d)
{
    return nmc_launch_detect(l, fake_get, (void *)env, d);
}

static void assert_launch(const nmc_launch_t *l, nmc_launch_source_t src, int rank, int world,
                          int lrank, int lsize)
{
    ck_assert_str_eq(nmc_launch_source_name(l->source), nmc_launch_source_name(src));
    ck_assert_int_eq(l->rank, rank);
    ck_assert_int_eq(l->world, world);
    ck_assert_int_eq(l->local_rank, lrank);
    ck_assert_int_eq(l->local_size, lsize);
}

static void assert_one_diag(nmc_diags_t *d, const char *code, const char *msg)
{
    ck_assert_uint_eq(d->n, 1);
    ck_assert_str_eq(d->items[0].code, code);
    ck_assert_str_eq(d->items[0].message, msg);
}

/* ---- single ------------------------------------------------------------------------------ */

START_TEST(test_single_ops)
{
    nmc_comm_t *c = nmc_comm_single_new();
    ck_assert_str_eq(c->kind, "single");
    ck_assert_int_eq(c->rank, 0);
    ck_assert_int_eq(c->size, 1);
    float x[4] = {1, 2, 3, 4}, y[4] = {0};
    ck_assert_int_eq(c->allreduce_sum(c, x, 4), 0);
    ck_assert_int_eq(c->allreduce_mean(c, x, 4), 0);
    ck_assert(x[0] == 1 && x[3] == 4);
    ck_assert_int_eq(c->reduce_scatter(c, y, x, 4), 0);
    ck_assert(y[0] == 1 && y[3] == 4);
    ck_assert_int_eq(c->reduce_scatter(c, x, x, 4), 0); /* in place */
    char a[3] = "ab", b[3] = "";
    ck_assert_int_eq(c->allgather(c, b, a, 3), 0);
    ck_assert_str_eq(b, "ab");
    ck_assert_int_eq(c->broadcast(c, a, 3, 0), 0);
    double f = 2.5;
    int64_t k = -3;
    ck_assert_int_eq(c->allreduce_f64(c, &f, 1), 0);
    ck_assert_int_eq(c->allreduce_i64(c, &k, 1), 0);
    ck_assert(f == 2.5 && k == -3);
    ck_assert_int_eq(c->barrier(c), 0);
    ck_assert_str_eq(c->last_error(c), "");
    nmc_comm_free(c);
    nmc_comm_free(NULL);
}
END_TEST

START_TEST(test_single_abort_exits)
{
    pid_t pid = fork();
    if (pid == 0) {
        nmc_comm_t *c = nmc_comm_single_new();
        c->abort(c, 9, NULL);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 9);
}
END_TEST

START_TEST(test_helpers)
{
    ck_assert_uint_eq(nmc_comm_chunk(10, 4), 3);
    ck_assert_uint_eq(nmc_comm_chunk(8, 4), 2);
    ck_assert_uint_eq(nmc_comm_chunk(0, 4), 0);
    ck_assert_uint_eq(nmc_comm_chunk(5, 1), 5);
    /* FNV-1a 64 reference values */
    ck_assert(nmc_comm_hash64("", 0) == 0xcbf29ce484222325ULL);
    ck_assert(nmc_comm_hash64("a", 1) == 0xaf63dc4c8601ec8cULL);
    int bad;
    unsetenv("NMC_COMM_TIMEOUT_S");
    ck_assert(nmc_comm_timeout_s(&bad) == 300.0 && bad == 0);
    setenv("NMC_COMM_TIMEOUT_S", "2.5", 1);
    ck_assert(nmc_comm_timeout_s(&bad) == 2.5 && bad == 0);
    setenv("NMC_COMM_TIMEOUT_S", "5s", 1);
    ck_assert(nmc_comm_timeout_s(&bad) == 300.0 && bad == 1);
    setenv("NMC_COMM_TIMEOUT_S", "-1", 1);
    ck_assert(nmc_comm_timeout_s(&bad) == 300.0 && bad == 1);
    unsetenv("NMC_COMM_TIMEOUT_S");
}
END_TEST

/* ---- launch environments ------------------------------------------------------------------- */

START_TEST(test_launch_none)
{
    const char *env[] = {"HOME=/root", NULL};
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(detect(&l, env, &d), 0);
    assert_launch(&l, NMC_LAUNCH_NONE, 0, 1, 0, 1);
    ck_assert_str_eq(l.rdzv_dir, "");
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_launch_each)
{
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_diags_init(&d);
    const char *ompi[] = {"OMPI_COMM_WORLD_RANK=5", "OMPI_COMM_WORLD_SIZE=8",
                          "OMPI_COMM_WORLD_LOCAL_RANK=1", "OMPI_COMM_WORLD_LOCAL_SIZE=4", NULL};
    ck_assert_int_eq(detect(&l, ompi, &d), 0);
    assert_launch(&l, NMC_LAUNCH_OPENMPI, 5, 8, 1, 4);
    ck_assert_int_eq(l.under_mpi, 1);
    const char *pmi[] = {"PMI_RANK=2", "PMI_SIZE=4", "MPI_LOCALRANKID=0",
                         "MPI_LOCALNRANKS=2", NULL};
    ck_assert_int_eq(detect(&l, pmi, &d), 0);
    assert_launch(&l, NMC_LAUNCH_PMI, 2, 4, 0, 2);
    const char *torch[] = {"RANK=3", "WORLD_SIZE=4", "LOCAL_RANK=3", NULL};
    ck_assert_int_eq(detect(&l, torch, &d), 0);
    assert_launch(&l, NMC_LAUNCH_TORCHRUN, 3, 4, 3, 4); /* no LOCAL_WORLD_SIZE: one node */
    const char *nmc[] = {"NMC_RANK=1", "NMC_WORLD_SIZE=2", "NMC_LOCAL_RANK=1",
                         "NMC_LOCAL_WORLD_SIZE=2", "NMC_RDZV_DIR=/tmp/r", NULL};
    ck_assert_int_eq(detect(&l, nmc, &d), 0);
    assert_launch(&l, NMC_LAUNCH_NMC, 1, 2, 1, 2);
    ck_assert_str_eq(l.rdzv_dir, "/tmp/r");
    ck_assert_uint_eq(d.n, 0);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_launch_slurm)
{
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_diags_init(&d);
    /* 4 nodes: 2,2,2,1 tasks; this is node 3 (the last), task 6 */
    const char *s1[] = {"SLURM_PROCID=6", "SLURM_NTASKS=99", "SLURM_STEP_NUM_TASKS=7",
                        "SLURM_LOCALID=0", "SLURM_NODEID=3", "SLURM_STEP_NUM_NODES=4",
                        "SLURM_STEP_TASKS_PER_NODE=2(x3),1", "SLURM_STEP_ID=0", NULL};
    ck_assert_int_eq(detect(&l, s1, &d), 0);
    assert_launch(&l, NMC_LAUNCH_SLURM, 6, 7, 0, 1);
    ck_assert_int_eq(l.num_nodes, 4);
    const char *s2[] = {"SLURM_PROCID=3", "SLURM_STEP_NUM_TASKS=8", "SLURM_LOCALID=3",
                        "SLURM_NTASKS_PER_NODE=4", "SLURM_NNODES=2", NULL};
    ck_assert_int_eq(detect(&l, s2, &d), 0);
    assert_launch(&l, NMC_LAUNCH_SLURM, 3, 8, 3, 4);
    ck_assert_int_eq(l.num_nodes, 2);
    ck_assert_int_eq(l.under_mpi, 0);
    const char *s3[] = {"SLURM_PROCID=1", "SLURM_STEP_NUM_TASKS=2", "PMIX_RANK=1", NULL};
    ck_assert_int_eq(detect(&l, s3, &d), 0);
    assert_launch(&l, NMC_LAUNCH_SLURM, 1, 2, 1, 2);
    ck_assert_int_eq(l.under_mpi, 1);
    /* a bare sbatch script (batch step): not a launch */
    const char *batch[] = {"SLURM_PROCID=0", "SLURM_NTASKS=8", "SLURM_JOB_ID=12", NULL};
    ck_assert_int_eq(detect(&l, batch, &d), 0);
    assert_launch(&l, NMC_LAUNCH_NONE, 0, 1, 0, 1);
    ck_assert_uint_eq(d.n, 0);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_launch_precedence)
{
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_diags_init(&d);
    /* mpirun inside an sbatch script inherits the batch step's Slurm variables */
    const char *a[] = {"SLURM_PROCID=0", "SLURM_STEP_NUM_TASKS=1", "OMPI_COMM_WORLD_RANK=3",
                       "OMPI_COMM_WORLD_SIZE=4", NULL};
    ck_assert_int_eq(detect(&l, a, &d), 0);
    assert_launch(&l, NMC_LAUNCH_OPENMPI, 3, 4, 3, 4);
    /* torchrun under srun: one srun task per node, RANK is the worker's */
    const char *b[] = {"SLURM_PROCID=1", "SLURM_STEP_NUM_TASKS=2", "RANK=5", "WORLD_SIZE=8",
                       "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=4", NULL};
    ck_assert_int_eq(detect(&l, b, &d), 0);
    assert_launch(&l, NMC_LAUNCH_TORCHRUN, 5, 8, 1, 4);
    /* our own self-spawn wins over everything */
    const char *c[] = {"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=1", "NMC_RANK=1",
                       "NMC_WORLD_SIZE=2", "PMI_RANK=0", NULL};
    ck_assert_int_eq(detect(&l, c, &d), 0);
    assert_launch(&l, NMC_LAUNCH_NMC, 1, 2, 1, 2);
    /* PMI before torchrun-style variables */
    const char *e[] = {"RANK=0", "WORLD_SIZE=1", "PMI_RANK=1", "PMI_SIZE=2", NULL};
    ck_assert_int_eq(detect(&l, e, &d), 0);
    assert_launch(&l, NMC_LAUNCH_PMI, 1, 2, 1, 2);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_launch_invalid)
{
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_diags_init(&d);
    const char *a[] = {"RANK=x1", "WORLD_SIZE=2", NULL};
    ck_assert_int_eq(detect(&l, a, &d), -1);
    assert_one_diag(&d, "launch-env-invalid",
                    "environment variable RANK=\"x1\" is not a non-negative integer");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    const char *b[] = {"OMPI_COMM_WORLD_RANK=4", "OMPI_COMM_WORLD_SIZE=4", NULL};
    ck_assert_int_eq(detect(&l, b, &d), -1);
    assert_one_diag(&d, "launch-env-invalid",
                    "openmpi launch: rank 4 is outside the world of 4 ranks");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    const char *c[] = {"NMC_RANK=0", NULL};
    ck_assert_int_eq(detect(&l, c, &d), -1);
    assert_one_diag(&d, "launch-env-invalid",
                    "nmc launch: world size is missing or 0 (NMC_WORLD_SIZE)");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    const char *e[] = {"SLURM_PROCID=0", "SLURM_STEP_NUM_TASKS=4", "SLURM_NODEID=2",
                       "SLURM_STEP_TASKS_PER_NODE=2(x2)", NULL};
    ck_assert_int_eq(detect(&l, e, &d), -1);
    assert_one_diag(&d, "launch-env-invalid",
                    "environment variable SLURM_STEP_TASKS_PER_NODE=\"2(x2)\" has no task "
                    "count for node 2");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    const char *f[] = {"RANK=1", "WORLD_SIZE=4", "LOCAL_RANK=2", "LOCAL_WORLD_SIZE=2", NULL};
    ck_assert_int_eq(detect(&l, f, &d), -1);
    assert_one_diag(&d, "launch-env-invalid",
                    "torchrun launch: local rank 2 of 2 local ranks does not fit a world of 4");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    const char *g[] = {"RANK=1", "WORLD_SIZE=99999999999", NULL};
    ck_assert_int_eq(detect(&l, g, &d), -1);
    ck_assert_str_eq(d.items[0].message, "environment variable WORLD_SIZE=\"99999999999\" is "
                                         "not a non-negative integer");
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_check_world)
{
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_diags_init(&d);
    const char *env[] = {"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=2",
                         "OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL};
    ck_assert_int_eq(detect(&l, env, &d), 0);
    ck_assert_int_eq(nmc_launch_check_world(&l, 2, 2, &d), 0);
    ck_assert_int_eq(nmc_launch_check_world(&l, 4, 4, &d), -1);
    assert_one_diag(&d, "launch-world-mismatch",
                    "the job asks for 4 GPUs (parallelism.num_nodes × num_gpus_per_node) but "
                    "2 ranks were started (openmpi launch)");
    ck_assert_str_eq(d.items[0].help, "start one rank per GPU, e.g. `mpirun -np 4 nmc train "
                                      "...` or `srun --ntasks=4 ...`, or change parallelism "
                                      "in the job");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_launch_check_world(&l, 2, 1, &d), -1);
    assert_one_diag(&d, "launch-local-mismatch",
                    "rank 0: the job asks for 1 GPUs per node but 2 ranks run on this node");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    const char *none[] = {NULL};
    ck_assert_int_eq(detect(&l, none, &d), 0);
    ck_assert_int_eq(nmc_launch_check_world(&l, 8, 8, &d), -1);
    ck_assert_str_eq(d.items[0].message, "the job asks for 8 GPUs (parallelism.num_nodes × "
                                         "num_gpus_per_node) but 1 rank was started (none "
                                         "launch)");
    ck_assert(nmc_launch_should_spawn(&l, 1, 8));
    ck_assert(!nmc_launch_should_spawn(&l, 2, 8));
    ck_assert(!nmc_launch_should_spawn(&l, 1, 1));
    nmc_diags_free(&d);
}
END_TEST

/* ---- spec check through a fake communicator ------------------------------------------------ */

typedef struct {
    uint64_t hashes[8]; /* what every rank would contribute */
    int fail;
} fake_t;

/* Adds the other ranks' contributions, as a real allreduce would. */
static int fake_i64(nmc_comm_t *c, int64_t *h, size_t n)
{
    fake_t *f = c->impl;
    if (f->fail) return -1;
    ck_assert_uint_eq(n, (size_t)c->size);
    for (int r = 0; r < c->size; r++) {
        ck_assert(r == c->rank || h[r] == 0);
        if (r != c->rank) memcpy(&h[r], &f->hashes[r], sizeof(int64_t));
    }
    return 0;
}

static const char *fake_err(nmc_comm_t *c) { return "peer vanished"; }

static nmc_comm_t fake_comm(fake_t *f, int rank, int size)
{
    nmc_comm_t c;
    memset(&c, 0, sizeof c);
    c.kind = "fake";
    c.rank = rank;
    c.size = size;
    c.impl = f;
    c.allreduce_i64 = fake_i64;
    c.last_error = fake_err;
    return c;
}

START_TEST(test_spec_same)
{
    fake_t f = {{7, 7, 7, 7}, 0};
    nmc_comm_t c = fake_comm(&f, 2, 4);
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_check_same_spec(&c, 7, &d), 0);
    ck_assert_uint_eq(d.n, 0);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_spec_mismatch)
{
    fake_t f = {{0xabc, 0xabc, 0xdef, 0xabc, 0x1, 0xabc}, 0};
    nmc_comm_t c = fake_comm(&f, 2, 6);
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_check_same_spec(&c, 0xdef, &d), -1);
    assert_one_diag(&d, "comm-spec-mismatch",
                    "2 of 6 ranks run a different job spec than rank 0 (0000000000000abc): "
                    "ranks 2 (0000000000000def), 4 (0000000000000001)");
    nmc_diags_free(&d);
    /* rank 0's view of a single outlier */
    fake_t g = {{5, 6}, 0};
    nmc_comm_t c0 = fake_comm(&g, 0, 2);
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_check_same_spec(&c0, 5, &d), -1);
    assert_one_diag(&d, "comm-spec-mismatch",
                    "1 of 2 ranks run a different job spec than rank 0 (0000000000000005): "
                    "rank 1 (0000000000000006)");
    nmc_diags_free(&d);
    /* the collective itself fails */
    g.fail = 1;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_check_same_spec(&c0, 5, &d), -1);
    assert_one_diag(&d, "comm-failed",
                    "rank 0: comparing the job spec across ranks failed: peer vanished");
    nmc_diags_free(&d);
}
END_TEST

/* ---- nmc_comm_open ----------------------------------------------------------------------- */

START_TEST(test_open_errors)
{
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_comm_t *c = (nmc_comm_t *)1;
    const char *two[] = {"NMC_RANK=0", "NMC_WORLD_SIZE=2", NULL};
    nmc_diags_init(&d);
    ck_assert_int_eq(detect(&l, two, &d), 0);
    ck_assert_int_eq(nmc_comm_open(&l, "gloo", NMC_COMM_MEM_HOST, NULL, &c, &d), -1);
    ck_assert_ptr_null(c);
    assert_one_diag(&d, "comm-kind-unknown", "unknown communicator \"gloo\"");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_open(&l, "shm", NMC_COMM_MEM_DEVICE, NULL, &c, &d), -1);
    assert_one_diag(&d, "comm-kind-mismatch", "communicator \"shm\" takes host buffers but "
                                              "the device's are in GPU memory");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_open(&l, "single", NMC_COMM_MEM_HOST, NULL, &c, &d), -1);
    assert_one_diag(&d, "comm-kind-mismatch",
                    "communicator \"single\" cannot serve a world of 2 ranks");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_open(&l, "auto", NMC_COMM_MEM_HOST, NULL, &c, &d), -1);
    assert_one_diag(&d, "comm-init-failed", "communicator \"shm\" needs a rendezvous "
                                            "directory, and NMC_RDZV_DIR is not set");
    nmc_diags_free(&d);
    /* two nodes, no MPI launcher: no host transport */
    const char *multi[] = {"RANK=0", "WORLD_SIZE=4", "LOCAL_RANK=0", "LOCAL_WORLD_SIZE=2",
                           NULL};
    nmc_diags_init(&d);
    ck_assert_int_eq(detect(&l, multi, &d), 0);
    ck_assert_int_eq(nmc_comm_open(&l, "auto", NMC_COMM_MEM_HOST, NULL, &c, &d), -1);
    assert_one_diag(&d, "comm-kind-unavailable", "no host communicator reaches 4 ranks on "
                                                 "several nodes (torchrun launch)");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_open(&l, "shm", NMC_COMM_MEM_HOST, NULL, &c, &d), -1);
    assert_one_diag(&d, "comm-kind-unavailable", "communicator \"shm\" needs every rank on "
                                                 "one node, but 2 of the 4 ranks run here");
    nmc_diags_free(&d);
    if (!nmc_comm_nccl_available()) {
        nmc_diags_init(&d);
        ck_assert_int_eq(nmc_comm_open(&l, "auto", NMC_COMM_MEM_DEVICE, NULL, &c, &d), -1);
        assert_one_diag(&d, "comm-kind-unavailable", "communicator \"nccl\" is not "
                                                     "available: this nmc was built without "
                                                     "CUDA and NCCL");
        nmc_diags_free(&d);
    }
    if (!nmc_comm_mpi_available()) {
        nmc_diags_init(&d);
        ck_assert_int_eq(nmc_comm_open(&l, "mpi", NMC_COMM_MEM_HOST, NULL, &c, &d), -1);
        assert_one_diag(&d, "comm-kind-unavailable", "communicator \"mpi\" is not available: "
                                                     "this nmc was built without MPI");
        nmc_diags_free(&d);
    }
}
END_TEST

START_TEST(test_open_single)
{
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_comm_t *c = NULL;
    const char *none[] = {NULL};
    nmc_diags_init(&d);
    ck_assert_int_eq(detect(&l, none, &d), 0);
    ck_assert_int_eq(nmc_comm_open(&l, "auto", NMC_COMM_MEM_HOST, NULL, &c, &d), 0);
    ck_assert_str_eq(c->kind, "single");
    nmc_comm_free(c);
    /* one GPU, no launcher: the trainer opens "auto" with device buffers (regression: this
     * was refused with comm-kind-mismatch, which broke every single-GPU `nmc train`) */
    ck_assert_int_eq(nmc_comm_open(&l, "auto", NMC_COMM_MEM_DEVICE, NULL, &c, &d), 0);
    ck_assert_str_eq(c->kind, "single");
    ck_assert_int_eq(c->mem, NMC_COMM_MEM_DEVICE);
    ck_assert_uint_eq(d.n_errors, 0);
    float buf[4] = {1, 2, 3, 4}, other[4] = {0};
    ck_assert_int_eq(c->allreduce_sum(c, buf, 4), 0);
    ck_assert_int_eq(c->allgather(c, buf, buf, sizeof buf), 0); /* in place: nothing to move */
    ck_assert_int_eq(c->reduce_scatter(c, other, buf, 4), -1);   /* no device copy without a stream */
    ck_assert_ptr_nonnull(strstr(c->last_error(c), "cannot copy between device buffers"));
    ck_assert(other[0] == 0.0f);
    nmc_comm_free(c);
    ck_assert_int_eq(nmc_comm_open(&l, "single", NMC_COMM_MEM_DEVICE, NULL, &c, &d), 0);
    nmc_comm_free(c);
    nmc_diags_free(&d);
}
END_TEST

/* ---- shm between forked ranks --------------------------------------------------------------- */

static char rdzv[256];

static void make_rdzv(void)
{
    snprintf(rdzv, sizeof rdzv, "%s/nmc-test-comm-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                              : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(rdzv));
}

static nmc_launch_t shm_launch(int rank, int world)
{
    nmc_launch_t l;
    memset(&l, 0, sizeof l);
    l.source = NMC_LAUNCH_NMC;
    l.rank = l.local_rank = rank;
    l.world = l.local_size = world;
    snprintf(l.rdzv_dir, sizeof l.rdzv_dir, "%s", rdzv);
    return l;
}

static void quiet(const char *message) { (void)message; }

/* Child rank body: `what` 0 = sum, 1 = exit after joining, 2 = abort after joining. */
static void shm_child(int rank, int world, int what)
{
    nmc_comm_set_fatal_hook(quiet);
    nmc_launch_t l = shm_launch(rank, world);
    nmc_comm_t *c;
    nmc_diags_t d;
    nmc_diags_init(&d);
    if (nmc_comm_shm_new(&l, &c, &d) != 0) _exit(20);
    if (what == 1) _exit(0);
    if (what == 2) c->abort(c, 4, "rank 1 gives up");
    float x[3] = {(float)rank, 1.0f, 0.5f};
    int64_t k = rank + 10;
    int rc = c->allreduce_sum(c, x, 3) | c->allreduce_i64(c, &k, 1);
    _exit(rc ? 21 : 0);
}

static pid_t fork_rank(int rank, int world, int what)
{
    pid_t pid = fork();
    if (pid == 0) shm_child(rank, world, what);
    return pid;
}

START_TEST(test_shm_sum)
{
    make_rdzv();
    pid_t p1 = fork_rank(1, 3, 0), p2 = fork_rank(2, 3, 0);
    nmc_launch_t l = shm_launch(0, 3);
    nmc_comm_t *c = NULL;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_shm_new(&l, &c, &d), 0);
    float x[3] = {0.0f, 1.0f, 0.5f};
    int64_t k = 10;
    ck_assert_int_eq(c->allreduce_sum(c, x, 3), 0);
    ck_assert_int_eq(c->allreduce_i64(c, &k, 1), 0);
    ck_assert(x[0] == 3.0f && x[1] == 3.0f && x[2] == 1.5f);
    ck_assert_int_eq(k, 33);
    int st;
    ck_assert_int_eq(waitpid(p1, &st, 0), p1);
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ck_assert_int_eq(waitpid(p2, &st, 0), p2);
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    nmc_comm_free(c);
    /* rank 0 removed the segment once everyone had joined */
    ck_assert_int_eq(rmdir(rdzv), 0);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_shm_dead_peer)
{
    make_rdzv();
    signal(SIGCHLD, SIG_IGN); /* children are reaped at once: their pid disappears */
    fork_rank(1, 2, 1);
    nmc_launch_t l = shm_launch(0, 2);
    nmc_comm_t *c = NULL;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_shm_new(&l, &c, &d), 0);
    float x[2] = {1, 2};
    ck_assert_int_eq(c->allreduce_sum(c, x, 2), -1);
    const char *e = c->last_error(c);
    ck_assert_msg(strstr(e, "rank 0: allreduce (op #2) failed: rank 1 (pid ") == e, "%s", e);
    ck_assert_msg(strstr(e, ") has exited, last entered op #1 join") != NULL, "%s", e);
    signal(SIGCHLD, SIG_DFL);
    nmc_comm_free(c);
    rmdir(rdzv);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_shm_abort_peer)
{
    make_rdzv();
    pid_t p1 = fork_rank(1, 2, 2);
    nmc_launch_t l = shm_launch(0, 2);
    nmc_comm_t *c = NULL;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_shm_new(&l, &c, &d), 0);
    ck_assert_int_eq(c->barrier(c), -1);
    ck_assert_str_eq(c->last_error(c),
                     "rank 0: barrier (op #2) failed: rank 1 aborted the job: rank 1 gives up");
    int st;
    ck_assert_int_eq(waitpid(p1, &st, 0), p1);
    ck_assert_int_eq(WEXITSTATUS(st), 4);
    nmc_comm_free(c);
    rmdir(rdzv);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_shm_rendezvous_timeout)
{
    make_rdzv();
    setenv("NMC_COMM_TIMEOUT_S", "0.2", 1);
    nmc_launch_t l = shm_launch(1, 2); /* rank 0 never comes */
    nmc_comm_t *c = NULL;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_comm_shm_new(&l, &c, &d), -1);
    unsetenv("NMC_COMM_TIMEOUT_S");
    assert_one_diag(&d, "comm-rendezvous-timeout", "rank 0 did not create the shared segment "
                                                   "within 0.2 s (NMC_COMM_TIMEOUT_S)");
    rmdir(rdzv);
    nmc_diags_free(&d);
}
END_TEST

/* ---- self-spawn ------------------------------------------------------------------------------ */

START_TEST(test_spawn_ok)
{
    char *argv[] = {"sh", "-c",
                    "test \"$NMC_WORLD_SIZE\" = 3 && test \"$NMC_LOCAL_RANK\" = \"$NMC_RANK\" "
                    "&& test -d \"$NMC_RDZV_DIR\" && touch \"$NMC_RDZV_DIR/r$NMC_RANK\"",
                    NULL};
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_spawn_result_t res;
    ck_assert_int_eq(nmc_launch_spawn(argv, 3, NULL, 1.0, &res, &d), 0);
    ck_assert_int_eq(res.failed_rank, -1);
    ck_assert_uint_eq(d.n, 0);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_spawn_failure)
{
    char *argv[] = {"sh", "-c", "[ \"$NMC_RANK\" = 1 ] && exit 7; exec sleep 30", NULL};
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_spawn_result_t res;
    ck_assert_int_eq(nmc_launch_spawn(argv, 3, NULL, 1.0, &res, &d), 1);
    ck_assert_int_eq(res.failed_rank, 1);
    ck_assert_int_eq(res.status, 7);
    assert_one_diag(&d, "launch-rank-failed",
                    "rank 1 of 3 exited with status 7; stopped the other 2 running ranks");
    ck_assert_str_eq(d.items[0].help, "rank 1's own error output above says why");
    nmc_diags_free(&d);
    /* killed by a signal; a rank ignoring SIGTERM gets SIGKILL after the grace period */
    char *argv2[] = {"sh", "-c",
                     "if [ \"$NMC_RANK\" = 0 ]; then sleep 0.2; kill -9 $$; fi; "
                     "trap '' TERM; while :; do sleep 0.05; done", NULL};
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_launch_spawn(argv2, 2, NULL, 0.3, &res, &d), 1);
    ck_assert_int_eq(res.failed_rank, 0);
    ck_assert_int_eq(res.signal, 9);
    ck_assert_int_eq(res.status, 137);
    assert_one_diag(&d, "launch-rank-failed", "rank 0 of 2 was killed by signal 9 (Killed); "
                                              "stopped the other 1 running rank");
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_launch_spawn(argv, 0, NULL, 1.0, &res, &d), -1);
    assert_one_diag(&d, "launch-spawn-failed",
                    "cannot spawn 0 local ranks (expected 1..1024 and a program)");
    nmc_diags_free(&d);
}
END_TEST

static Suite *comm_suite(void)
{
    Suite *s = suite_create("comm");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_single_ops);
    tcase_add_test(tc, test_single_abort_exits);
    tcase_add_test(tc, test_helpers);
    tcase_add_test(tc, test_launch_none);
    tcase_add_test(tc, test_launch_each);
    tcase_add_test(tc, test_launch_slurm);
    tcase_add_test(tc, test_launch_precedence);
    tcase_add_test(tc, test_launch_invalid);
    tcase_add_test(tc, test_check_world);
    tcase_add_test(tc, test_spec_same);
    tcase_add_test(tc, test_spec_mismatch);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_open_single);
    tcase_add_test(tc, test_shm_sum);
    tcase_add_test(tc, test_shm_dead_peer);
    tcase_add_test(tc, test_shm_abort_peer);
    tcase_add_test(tc, test_shm_rendezvous_timeout);
    tcase_add_test(tc, test_spawn_ok);
    tcase_add_test(tc, test_spawn_failure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(comm_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
