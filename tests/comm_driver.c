/* comm_driver.c — a multi-process test driver for the communicators (runtime/comm.h)
 * and the self-spawn launcher (runtime/launch.h), run by tests/run_comm_mpi.sh under
 * mpirun and through its own `spawn` mode, and by tests/gpu for nccl.
 *
 *   comm_driver [--comm KIND] ops     every collective, exact results (integers as floats)
 *   comm_driver [--comm KIND] die     rank 1 exits with status 3 after the first barrier;
 *                                     the others keep calling collectives
 *   comm_driver [--comm KIND] hang    rank 1 sleeps 60 s before the second collective
 *   comm_driver [--comm KIND] spec    rank 1 (and 3) use a different spec hash
 *   comm_driver world N               nmc_launch_check_world against N GPUs
 *   comm_driver [--comm KIND] spawn N MODE
 *                                     self-spawn N local ranks of `--comm KIND MODE`
 *                                     (KIND auto means shm here)
 * KIND: auto (default), single, shm, mpi, nccl (device buffers; needs NMC_NCCL).
 * Output: "rank R/S: ..." lines; errors on stderr. Exit: 0 ok, 1 collective failure,
 * 2 bad usage or setup error, 3 the deliberate death, or the spawn's first failure.
 */
#include "comm.h"
#include "launch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(NMC_CUDA) && NMC_CUDA && defined(NMC_NCCL) && NMC_NCCL
#include <cuda_runtime_api.h>
#define HAVE_DEV 1
#else
#define HAVE_DEV 0
#endif

static nmc_comm_t *g_comm;
static int g_fail;

/* ---- buffers: host, or device for nccl ------------------------------------------------- */

static void *buf_new(size_t bytes)
{
#if HAVE_DEV
    if (g_comm->mem == NMC_COMM_MEM_DEVICE) {
        void *p = NULL;
        if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) abort();
        return p;
    }
#endif
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) abort();
    return p;
}

static void buf_free(void *p)
{
#if HAVE_DEV
    if (g_comm->mem == NMC_COMM_MEM_DEVICE) {
        cudaFree(p);
        return;
    }
#endif
    free(p);
}

static void put(void *dst, const void *src, size_t bytes)
{
#if HAVE_DEV
    if (g_comm->mem == NMC_COMM_MEM_DEVICE) {
        cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
        return;
    }
#endif
    memcpy(dst, src, bytes);
}

static void get(void *dst, const void *src, size_t bytes)
{
#if HAVE_DEV
    if (g_comm->mem == NMC_COMM_MEM_DEVICE) {
        cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
        return;
    }
#endif
    memcpy(dst, src, bytes);
}

/* ---- checks ------------------------------------------------------------------------------ */

static void die_on(int rc, const char *what)
{
    if (rc == 0) return;
    fprintf(stderr, "comm_driver: %s: %s\n", what, g_comm->last_error(g_comm));
    exit(1);
}

static void expect_f(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            fprintf(stderr, "comm_driver: rank %d: %s: element %zu is %.9g, expected %.9g\n",
                    g_comm->rank, what, i, got[i], want[i]);
            g_fail = 1;
            return;
        }
    }
}

static void check_allreduce(void)
{
    nmc_comm_t *c = g_comm;
    size_t n = 300001; /* more than one shm slot (262144 floats) */
    float *h = malloc(n * sizeof *h), *want = malloc(n * sizeof *want);
    float *d = buf_new(n * sizeof *d);
    int S = c->size;
    for (size_t i = 0; i < n; i++) {
        h[i] = (float)(c->rank * 1000 + (int)(i % 5000));
        want[i] = (float)(1000 * S * (S - 1) / 2 + S * (int)(i % 5000));
    }
    put(d, h, n * sizeof *h);
    die_on(c->allreduce_sum(c, d, n), "allreduce_sum");
    get(h, d, n * sizeof *h);
    expect_f("allreduce_sum", h, want, n);
    for (size_t i = 0; i < n; i++) {
        h[i] = (float)(c->rank + (int)(i % 64));
        want[i] = (float)(S - 1) / 2.0f + (float)(i % 64);
    }
    put(d, h, n * sizeof *h);
    die_on(c->allreduce_mean(c, d, n), "allreduce_mean");
    get(h, d, n * sizeof *h);
    expect_f("allreduce_mean", h, want, n);
    buf_free(d);
    free(h);
    free(want);
}

/* ZeRO-style round trip: shard-sum with zero padding, then gather the shards back. */
static void check_scatter_gather(int inplace)
{
    nmc_comm_t *c = g_comm;
    int S = c->size;
    size_t n = 100003, chunk = nmc_comm_chunk(n, S), total = chunk * (size_t)S;
    float *h = calloc(total, sizeof *h), *want = calloc(total, sizeof *want);
    float *in = buf_new(total * sizeof *in), *full = buf_new(total * sizeof *full);
    for (size_t j = 0; j < n; j++) {
        h[j] = (float)(c->rank + (int)(j % 7));
        want[j] = (float)(S * (S - 1) / 2 + S * (int)(j % 7));
    }
    put(in, h, total * sizeof *h);
    float *shard = inplace ? in + (size_t)c->rank * chunk : buf_new(chunk * sizeof *shard);
    die_on(c->reduce_scatter(c, shard, in, chunk), "reduce_scatter");
    get(h, shard, chunk * sizeof *h);
    expect_f(inplace ? "reduce_scatter (in place)" : "reduce_scatter", h,
             want + (size_t)c->rank * chunk, chunk);
    if (inplace) {
        die_on(c->allgather(c, in, shard, chunk * sizeof(float)), "allgather (in place)");
        get(h, in, total * sizeof *h);
    } else {
        die_on(c->allgather(c, full, shard, chunk * sizeof(float)), "allgather");
        get(h, full, total * sizeof *h);
        buf_free(shard);
    }
    expect_f(inplace ? "allgather round trip (in place)" : "allgather round trip", h, want,
             total);
    buf_free(in);
    buf_free(full);
    free(h);
    free(want);
}

static void check_bytes(void)
{
    nmc_comm_t *c = g_comm;
    int S = c->size;
    unsigned char mine[5], *all = malloc(5 * (size_t)S);
    for (int i = 0; i < 5; i++) mine[i] = (unsigned char)(c->rank * 16 + i);
    unsigned char *din = buf_new(5), *dall = buf_new(5 * (size_t)S);
    put(din, mine, 5);
    die_on(c->allgather(c, dall, din, 5), "allgather (5 bytes)");
    get(all, dall, 5 * (size_t)S);
    for (int r = 0; r < S; r++)
        for (int i = 0; i < 5; i++)
            if (all[r * 5 + i] != (unsigned char)(r * 16 + i)) {
                fprintf(stderr, "comm_driver: rank %d: allgather byte %d of rank %d wrong\n",
                        c->rank, i, r);
                g_fail = 1;
            }
    size_t nb = 3u << 20; /* 3 MiB: several shm pieces */
    unsigned char *h = malloc(nb), *db = buf_new(nb);
    int root = S - 1;
    for (size_t i = 0; i < nb; i++) h[i] = c->rank == root ? (unsigned char)(i * 31 + 7) : 0;
    put(db, h, nb);
    die_on(c->broadcast(c, db, nb, root), "broadcast");
    get(h, db, nb);
    for (size_t i = 0; i < nb; i++)
        if (h[i] != (unsigned char)(i * 31 + 7)) {
            fprintf(stderr, "comm_driver: rank %d: broadcast byte %zu wrong\n", c->rank, i);
            g_fail = 1;
            break;
        }
    buf_free(din);
    buf_free(dall);
    buf_free(db);
    free(all);
    free(h);
}

static void check_host(void)
{
    nmc_comm_t *c = g_comm;
    int S = c->size;
    double f[2] = {0.5 * c->rank, 1e10 + c->rank};
    int64_t k[3] = {c->rank, (int64_t)c->rank << 40, -7};
    die_on(c->allreduce_f64(c, f, 2), "allreduce_f64");
    die_on(c->allreduce_i64(c, k, 3), "allreduce_i64");
    double tri = S * (S - 1) / 2.0;
    if (f[0] != 0.5 * tri || f[1] != 1e10 * S + tri || k[0] != (int64_t)tri ||
        k[1] != (int64_t)tri << 40 || k[2] != -7LL * S) {
        fprintf(stderr, "comm_driver: rank %d: host reductions gave %.17g %.17g %lld %lld "
                "%lld\n", c->rank, f[0], f[1], (long long)k[0], (long long)k[1],
                (long long)k[2]);
        g_fail = 1;
    }
    die_on(c->barrier(c), "barrier");
}

static int run_ops(void)
{
    check_allreduce();
    check_scatter_gather(0);
    check_scatter_gather(1);
    check_bytes();
    check_host();
    nmc_diags_t d;
    nmc_diags_init(&d);
    if (nmc_comm_check_same_spec(g_comm, 0x1234abcdULL, &d) != 0) g_fail = 1;
    nmc_diags_free(&d);
    printf("rank %d/%d (%s, local %d/%d): %s\n", g_comm->rank, g_comm->size, g_comm->kind,
           g_comm->local_rank, g_comm->local_size, g_fail ? "FAILED" : "all collectives ok");
    return g_fail;
}

/* A rank dies (exit 3) or hangs; the rest must fail, not wait forever. */
static int run_fault(int die)
{
    nmc_comm_t *c = g_comm;
    die_on(c->barrier(c), "first barrier");
    if (c->rank == 1) {
        if (die) {
            fprintf(stderr, "comm_driver: rank 1: exiting with status 3 on purpose\n");
            fflush(stderr);
            _exit(3);
        }
        sleep(60);
    }
    float x[16] = {1};
    for (int i = 0; i < 3; i++) {
        if (c->allreduce_sum(c, x, 16) != 0) {
            fprintf(stderr, "comm_driver: %s\n", c->last_error(c));
            c->abort(c, 1, NULL);
        }
    }
    printf("rank %d: collectives completed although rank 1 %s\n", c->rank,
           die ? "died" : "hung");
    return 0;
}

static int run_spec(void)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    uint64_t h = nmc_comm_hash64("spec-A", 6);
    if (g_comm->rank % 2 == 1) h = nmc_comm_hash64("spec-B", 6);
    int rc = nmc_comm_check_same_spec(g_comm, h, &d);
    if (rc != 0 && g_comm->rank == 0) nmc_diags_render_text(&d, NULL, 0, stderr, 0);
    fflush(stderr);
    nmc_diags_free(&d);
    die_on(g_comm->barrier(g_comm), "barrier after the spec check"); /* rank 0 printed */
    return rc != 0 ? 1 : 0;
}

/* ---- launcher modes ---------------------------------------------------------------------- */

static int run_spawn(int n, const char *kind, const char *mode)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return 2;
    self[len] = 0;
    char *argv[] = {self, "--comm", (char *)kind, (char *)mode, NULL};
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_spawn_result_t res;
    int rc = nmc_launch_spawn(argv, n, NULL, 2.0, &res, &d);
    nmc_diags_render_text(&d, NULL, 0, stderr, 0);
    nmc_diags_free(&d);
    if (rc == 0) printf("spawn: %d ranks exited 0\n", n);
    return rc == 0 ? 0 : rc < 0 ? 2 : res.status;
}

static int run_world(long expected)
{
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_diags_init(&d);
    int rc = nmc_launch_detect(&l, NULL, NULL, &d);
    if (rc == 0) rc = nmc_launch_check_world(&l, expected, 0, &d);
    if (rc != 0 && l.rank == 0) nmc_diags_render_text(&d, NULL, 0, stderr, 0);
    nmc_diags_free(&d);
    return rc != 0 ? 2 : 0;
}

int main(int argc, char **argv)
{
    const char *kind = "auto";
    int a = 1;
    if (a + 1 < argc && !strcmp(argv[a], "--comm")) {
        kind = argv[a + 1];
        a += 2;
    }
    if (a >= argc) {
        fprintf(stderr, "usage: comm_driver [--comm KIND] ops|die|hang|spec | world N | "
                "spawn N MODE\n");
        return 2;
    }
    const char *mode = argv[a];
    if (!strcmp(mode, "spawn") && a + 2 < argc)
        return run_spawn(atoi(argv[a + 1]), strcmp(kind, "auto") ? kind : "shm", argv[a + 2]);
    if (!strcmp(mode, "world") && a + 1 < argc) return run_world(atol(argv[a + 1]));
    nmc_launch_t l;
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_comm_mem_t mem = !strcmp(kind, "nccl") ? NMC_COMM_MEM_DEVICE : NMC_COMM_MEM_HOST;
    int bad = nmc_launch_detect(&l, NULL, NULL, &d) != 0;
#if HAVE_DEV
    int ndev = 0;
    if (!bad && mem == NMC_COMM_MEM_DEVICE && cudaGetDeviceCount(&ndev) == cudaSuccess &&
        ndev > 0)
        cudaSetDevice(l.local_rank % ndev);
#endif
    if (bad || nmc_comm_open(&l, kind, mem, NULL, &g_comm, &d) != 0) {
        nmc_diags_render_text(&d, NULL, 0, stderr, 0);
        nmc_diags_free(&d);
        return 2;
    }
    nmc_diags_free(&d);
    int rc = 2;
    if (!strcmp(mode, "ops")) rc = run_ops();
    else if (!strcmp(mode, "die")) rc = run_fault(1);
    else if (!strcmp(mode, "hang")) rc = run_fault(0);
    else if (!strcmp(mode, "spec")) rc = run_spec();
    else fprintf(stderr, "comm_driver: unknown mode %s\n", mode);
    fflush(stdout);
    nmc_comm_free(g_comm);
    return rc;
}
