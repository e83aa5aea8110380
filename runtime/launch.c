/* launch.c — rank discovery from launcher environments, the pre-flight checks of a
 * multi-rank job, and the local self-spawn of N ranks (fork/exec + supervision).
 * What belongs here: everything about WHO the ranks are and how they are started;
 * how they talk is runtime/comm*.c.
 */
#include "launch.h"
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SPAWN_MAX 1024 /* local ranks one parent supervises (one per GPU; far above 8) */

const char *nmc_launch_source_name(nmc_launch_source_t s)
{
    switch (s) {
    case NMC_LAUNCH_NMC: return "nmc";
    case NMC_LAUNCH_OPENMPI: return "openmpi";
    case NMC_LAUNCH_PMI: return "pmi";
    case NMC_LAUNCH_TORCHRUN: return "torchrun";
    case NMC_LAUNCH_SLURM: return "slurm";
    default: return "none";
    }
}

/* ---- environment parsing ------------------------------------------------------------ */

typedef struct {
    nmc_getenv_fn get;
    void *ctx;
    nmc_diags_t *d;
    int bad; /* a variable failed to parse */
} env_t;

static const char *env_get(env_t *e, const char *name)
{
    const char *v = e->get ? e->get(e->ctx, name) : getenv(name);
    return (v && *v) ? v : NULL;
}

/* Strict non-negative decimal int (no sign, no spaces, fits an int). */
static int parse_nonneg(const char *s, int *out)
{
    long v = 0;
    if (!s || !*s) return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v > 0x7fffffffL) return -1;
    }
    *out = (int)v;
    return 0;
}

/* Reads integer variable `name` into *out; absent leaves *out and returns 0; present but
 * not a number records launch-env-invalid. Returns 1 when present and valid. */
static int env_int(env_t *e, const char *name, int *out)
{
    const char *v = env_get(e, name);
    if (!v) return 0;
    if (parse_nonneg(v, out) == 0) return 1;
    nmc_diag_t *r = nmc_diag_add(e->d, NMC_SEV_ERROR, "launch-env-invalid", NULL, 0, 0, 0,
                                 "environment variable %s=\"%s\" is not a non-negative "
                                 "integer", name, v);
    nmc_diag_set_help(r, "the launcher sets it; unset it or fix the launch command");
    e->bad = 1;
    return 0;
}

/* Slurm tasks-per-node list "2(x3),1": the count for node `node`. Returns -1 when the
 * list does not parse or has no entry for that node. */
static int slurm_tasks_on_node(const char *list, int node)
{
    const char *p = list;
    long seen = 0;
    while (*p) {
        char *end;
        long n = strtol(p, &end, 10), rep = 1;
        if (end == p || n < 0) return -1;
        p = end;
        if (p[0] == '(' && p[1] == 'x') {
            rep = strtol(p + 2, &end, 10);
            if (end == p + 2 || *end != ')' || rep < 1) return -1;
            p = end + 1;
        }
        if (node < seen + rep) return n > 0x7fffffffL ? -1 : (int)n;
        seen += rep;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return -1;
}

static void detect_slurm(env_t *e, nmc_launch_t *l)
{
    int node = 0, n = 0;
    l->source = NMC_LAUNCH_SLURM;
    env_int(e, "SLURM_PROCID", &l->rank);
    if (!env_int(e, "SLURM_STEP_NUM_TASKS", &l->world)) env_int(e, "SLURM_NTASKS", &l->world);
    l->local_rank = -1;
    env_int(e, "SLURM_LOCALID", &l->local_rank);
    if (!env_int(e, "SLURM_STEP_NUM_NODES", &l->num_nodes))
        env_int(e, "SLURM_NNODES", &l->num_nodes);
    env_int(e, "SLURM_NODEID", &node);
    const char *tpn = env_get(e, "SLURM_STEP_TASKS_PER_NODE");
    if (tpn) {
        n = slurm_tasks_on_node(tpn, node);
        if (n < 0) {
            nmc_diag_t *r = nmc_diag_add(e->d, NMC_SEV_ERROR, "launch-env-invalid", NULL,
                                         0, 0, 0,
                                         "environment variable SLURM_STEP_TASKS_PER_NODE="
                                         "\"%s\" has no task count for node %d", tpn, node);
            nmc_diag_set_expected(r, "a list like \"4\" or \"2(x3),1\"");
            e->bad = 1;
        } else {
            l->local_size = n;
        }
    } else if (env_int(e, "SLURM_NTASKS_PER_NODE", &n)) {
        l->local_size = n;
    }
}

/* Fill *l for the first launcher whose rank variable is present. */
static void detect_source(env_t *e, nmc_launch_t *l)
{
    l->local_rank = l->local_size = -1;
    if (env_get(e, "NMC_RANK")) {
        l->source = NMC_LAUNCH_NMC;
        env_int(e, "NMC_RANK", &l->rank);
        env_int(e, "NMC_WORLD_SIZE", &l->world);
        env_int(e, "NMC_LOCAL_RANK", &l->local_rank);
        env_int(e, "NMC_LOCAL_WORLD_SIZE", &l->local_size);
    } else if (env_get(e, "OMPI_COMM_WORLD_RANK")) {
        l->source = NMC_LAUNCH_OPENMPI;
        env_int(e, "OMPI_COMM_WORLD_RANK", &l->rank);
        env_int(e, "OMPI_COMM_WORLD_SIZE", &l->world);
        env_int(e, "OMPI_COMM_WORLD_LOCAL_RANK", &l->local_rank);
        env_int(e, "OMPI_COMM_WORLD_LOCAL_SIZE", &l->local_size);
    } else if (env_get(e, "PMI_RANK")) {
        l->source = NMC_LAUNCH_PMI;
        env_int(e, "PMI_RANK", &l->rank);
        env_int(e, "PMI_SIZE", &l->world);
        env_int(e, "MPI_LOCALRANKID", &l->local_rank);
        env_int(e, "MPI_LOCALNRANKS", &l->local_size);
    } else if (env_get(e, "RANK") && env_get(e, "WORLD_SIZE")) {
        l->source = NMC_LAUNCH_TORCHRUN;
        env_int(e, "RANK", &l->rank);
        env_int(e, "WORLD_SIZE", &l->world);
        env_int(e, "LOCAL_RANK", &l->local_rank);
        env_int(e, "LOCAL_WORLD_SIZE", &l->local_size);
    } else if (env_get(e, "SLURM_PROCID") && env_get(e, "SLURM_STEP_NUM_TASKS")) {
        detect_slurm(e, l);
    } else {
        l->source = NMC_LAUNCH_NONE;
        l->rank = 0;
        l->world = 1;
    }
}

/* The world-size variable each source reads, for messages. */
static const char *world_var(nmc_launch_source_t s)
{
    switch (s) {
    case NMC_LAUNCH_NMC: return "NMC_WORLD_SIZE";
    case NMC_LAUNCH_OPENMPI: return "OMPI_COMM_WORLD_SIZE";
    case NMC_LAUNCH_PMI: return "PMI_SIZE";
    case NMC_LAUNCH_TORCHRUN: return "WORLD_SIZE";
    case NMC_LAUNCH_SLURM: return "SLURM_STEP_NUM_TASKS";
    default: return "(none)";
    }
}

static int check_ranges(env_t *e, nmc_launch_t *l)
{
    const char *src = nmc_launch_source_name(l->source);
    if (l->world < 1) {
        nmc_diag_t *r = nmc_diag_add(e->d, NMC_SEV_ERROR, "launch-env-invalid", NULL, 0, 0,
                                     0, "%s launch: world size is missing or 0 (%s)", src,
                                     world_var(l->source));
        nmc_diag_set_help(r, "set %s to the number of ranks", world_var(l->source));
        return -1;
    }
    if (l->rank >= l->world) {
        nmc_diag_add(e->d, NMC_SEV_ERROR, "launch-env-invalid", NULL, 0, 0, 0,
                     "%s launch: rank %d is outside the world of %d ranks", src, l->rank,
                     l->world);
        return -1;
    }
    if (l->local_size < 0) l->local_size = l->world; /* unknown: assume one node */
    if (l->local_rank < 0) l->local_rank = l->local_size == l->world ? l->rank : 0;
    if (l->local_size < 1 || l->local_size > l->world || l->local_rank >= l->local_size) {
        nmc_diag_add(e->d, NMC_SEV_ERROR, "launch-env-invalid", NULL, 0, 0, 0,
                     "%s launch: local rank %d of %d local ranks does not fit a world of "
                     "%d", src, l->local_rank, l->local_size, l->world);
        return -1;
    }
    return 0;
}

int nmc_launch_detect(nmc_launch_t *l, nmc_getenv_fn get, void *ctx, nmc_diags_t *d)
{
    env_t e = {get, ctx, d, 0};
    memset(l, 0, sizeof *l);
    detect_source(&e, l);
    l->under_mpi = l->source == NMC_LAUNCH_OPENMPI || l->source == NMC_LAUNCH_PMI ||
                   (l->source == NMC_LAUNCH_SLURM &&
                    (env_get(&e, "PMIX_RANK") || env_get(&e, "PMI_FD")));
    const char *dir = env_get(&e, "NMC_RDZV_DIR");
    if (dir) {
        if (strlen(dir) >= sizeof l->rdzv_dir) {
            nmc_diag_add(d, NMC_SEV_ERROR, "launch-env-invalid", NULL, 0, 0, 0,
                         "NMC_RDZV_DIR is longer than %d bytes", NMC_LAUNCH_PATH_MAX - 1);
            e.bad = 1;
        } else {
            strcpy(l->rdzv_dir, dir);
        }
    }
    if (e.bad) return -1;
    return check_ranges(&e, l);
}

/* ---- pre-flight checks --------------------------------------------------------------- */

int nmc_launch_check_world(const nmc_launch_t *l, int64_t total_gpus, int64_t gpus_per_node,
                           nmc_diags_t *d)
{
    if (l->world != total_gpus) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "launch-world-mismatch", NULL, 0, 0,
                                     0, "the job asks for %lld GPUs (parallelism.num_nodes "
                                     "× num_gpus_per_node) but %d rank%s started (%s "
                                     "launch)", (long long)total_gpus, l->world,
                                     l->world == 1 ? " was" : "s were",
                                     nmc_launch_source_name(l->source));
        nmc_diag_set_expected(r, "%lld ranks", (long long)total_gpus);
        nmc_diag_set_got(r, "%d", l->world);
        nmc_diag_set_help(r, "start one rank per GPU, e.g. `mpirun -np %lld nmc train ...` "
                          "or `srun --ntasks=%lld ...`, or change parallelism in the job",
                          (long long)total_gpus, (long long)total_gpus);
        return -1;
    }
    if (gpus_per_node > 0 && l->local_size != gpus_per_node && l->world > 1) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "launch-local-mismatch", NULL, 0, 0,
                                     0, "rank %d: the job asks for %lld GPUs per node but "
                                     "%d ranks run on this node", l->rank,
                                     (long long)gpus_per_node, l->local_size);
        nmc_diag_set_help(r, "start parallelism.num_gpus_per_node ranks on every node "
                          "(mpirun --npernode %lld, srun --ntasks-per-node=%lld)",
                          (long long)gpus_per_node, (long long)gpus_per_node);
        return -1;
    }
    return 0;
}

int nmc_launch_should_spawn(const nmc_launch_t *l, int64_t num_nodes, int64_t gpus_per_node)
{
    return l->source == NMC_LAUNCH_NONE && num_nodes == 1 && gpus_per_node > 1;
}

/* ---- self-spawn ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static int is_rank_var(const char *kv)
{
    static const char *const names[] = {"NMC_RANK=", "NMC_WORLD_SIZE=", "NMC_LOCAL_RANK=",
                                        "NMC_LOCAL_WORLD_SIZE=", "NMC_RDZV_DIR="};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(kv, names[i], strlen(names[i])) == 0) return 1;
    return 0;
}

/* A child's environment: ours without the rank variables, plus the 5 of `rank`.
 * The strings live in `buf` (5 × 1100 bytes). Returns a malloc'd array or NULL. */
static char **child_env(int rank, int n, const char *dir, char *buf)
{
    size_t cnt = 0, k = 0;
    while (environ[cnt]) cnt++;
    char **envp = malloc((cnt + 6) * sizeof *envp);
    if (!envp) return NULL;
    for (size_t i = 0; i < cnt; i++)
        if (!is_rank_var(environ[i])) envp[k++] = environ[i];
    const int len = 1100;
    snprintf(buf, len, "NMC_RANK=%d", rank);
    snprintf(buf + len, len, "NMC_WORLD_SIZE=%d", n);
    snprintf(buf + 2 * len, len, "NMC_LOCAL_RANK=%d", rank);
    snprintf(buf + 3 * len, len, "NMC_LOCAL_WORLD_SIZE=%d", n);
    snprintf(buf + 4 * len, len, "NMC_RDZV_DIR=%s", dir);
    for (int i = 0; i < 5; i++) envp[k++] = buf + i * len;
    envp[k] = NULL;
    return envp;
}

/* Removes the files of the rendezvous directory (flat, written by our ranks) and it. */
static void remove_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *de;
        char path[NMC_LAUNCH_PATH_MAX + 300];
        while ((de = readdir(dp)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(dp);
    }
    rmdir(dir);
}

static int exit_code(int st, int *sig)
{
    *sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + *sig;
}

/* In the child before exec: handlers inherited from the parent (a trainer's SIGTERM
 * handler, a test framework's) must not run in this half-started copy, so caught
 * signals go back to their default (ignored ones stay ignored, as exec keeps them). */
static void default_handlers(void)
{
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) != 0) continue;
        if (sa.sa_handler == SIG_IGN || sa.sa_handler == SIG_DFL) continue;
        signal(sig, SIG_DFL);
    }
}

/* Starts rank `rank`; returns its pid or -1. Signals stay blocked from fork until the
 * child has reset its handlers, so a stop signal arriving early kills only the child. */
static pid_t start_rank(char *const argv[], int rank, int n, const char *dir)
{
    char buf[5 * 1100];
    char **envp = child_env(rank, n, dir, buf);
    if (!envp) return -1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        default_handlers();
        /* the child dies with the supervisor (a killed parent leaves no orphans) */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (getppid() != parent) _exit(127);
        execvpe(argv[0], argv, envp);
        _exit(127);
    }
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(envp);
    errno = saved;
    return pid;
}

typedef struct {
    pid_t *pid;  /* per rank; 0 once reaped */
    int n, live;
} ranks_t;

/* Reaps whatever exited; returns the rank of the first non-zero exit seen this call
 * (-1 none) and its status. */
static int reap(ranks_t *r, int *status, int *sig)
{
    int failed = -1;
    for (int i = 0; i < r->n; i++) {
        int st;
        if (r->pid[i] <= 0 || waitpid(r->pid[i], &st, WNOHANG) != r->pid[i]) continue;
        r->pid[i] = 0;
        r->live--;
        int s, code = exit_code(st, &s);
        if (code != 0 && failed < 0) {
            failed = i;
            *status = code;
            *sig = s;
        }
    }
    return failed;
}

/* SIGTERM to every live rank, SIGKILL after grace_s, reap all. */
static void stop_all(ranks_t *r, double grace_s)
{
    int st, sig;
    for (int i = 0; i < r->n; i++)
        if (r->pid[i] > 0) kill(r->pid[i], SIGTERM);
    double t0 = now_s();
    while (r->live > 0 && now_s() - t0 < grace_s) {
        reap(r, &st, &sig);
        sleep_s(0.01);
    }
    for (int i = 0; i < r->n; i++)
        if (r->pid[i] > 0) kill(r->pid[i], SIGKILL);
    for (int i = 0; i < r->n; i++)
        if (r->pid[i] > 0) waitpid(r->pid[i], &st, 0);
    r->live = 0;
}

static int make_rdzv(const char *parent, char *dir, size_t cap, nmc_diags_t *d)
{
    if (!parent) parent = getenv("TMPDIR");
    if (!parent || !*parent) parent = "/tmp";
    if ((size_t)snprintf(dir, cap, "%s/nmc-rdzv-XXXXXX", parent) >= cap || !mkdtemp(dir)) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "launch-spawn-failed", NULL, 0, 0, 0,
                                     "cannot create a rendezvous directory under %s: %s",
                                     parent, strerror(errno));
        nmc_diag_set_help(r, "set TMPDIR to a writable directory");
        return -1;
    }
    return 0;
}

int nmc_launch_spawn(char *const argv[], int nprocs, const char *rdzv_parent,
                     double grace_s, nmc_spawn_result_t *res, nmc_diags_t *d)
{
    nmc_spawn_result_t tmp;
    if (!res) res = &tmp;
    res->failed_rank = -1;
    res->status = res->signal = 0;
    if (nprocs < 1 || nprocs > SPAWN_MAX || !argv || !argv[0]) {
        nmc_diag_add(d, NMC_SEV_ERROR, "launch-spawn-failed", NULL, 0, 0, 0,
                     "cannot spawn %d local ranks (expected 1..%d and a program)", nprocs,
                     SPAWN_MAX);
        return -1;
    }
    char dir[NMC_LAUNCH_PATH_MAX];
    if (make_rdzv(rdzv_parent, dir, sizeof dir, d) != 0) return -1;
    pid_t pids[SPAWN_MAX];
    ranks_t r = {pids, 0, 0};
    for (int i = 0; i < nprocs; i++) {
        pids[i] = start_rank(argv, i, nprocs, dir);
        if (pids[i] < 0) {
            nmc_diag_add(d, NMC_SEV_ERROR, "launch-spawn-failed", NULL, 0, 0, 0,
                         "cannot start local rank %d of %d: %s", i, nprocs, strerror(errno));
            stop_all(&r, grace_s);
            remove_dir(dir);
            return -1;
        }
        r.n = i + 1;
        r.live++;
    }
    int status = 0, sig = 0, failed = -1;
    while (r.live > 0 && failed < 0) {
        failed = reap(&r, &status, &sig);
        if (failed < 0 && r.live > 0) sleep_s(0.01);
    }
    int others = r.live;
    if (failed >= 0) {
        stop_all(&r, grace_s);
        res->failed_rank = failed;
        res->status = status;
        res->signal = sig;
        char how[96], rest[64] = "";
        if (sig)
            snprintf(how, sizeof how, "was killed by signal %d (%s)", sig, strsignal(sig));
        else
            snprintf(how, sizeof how, "exited with status %d", status);
        if (others > 0)
            snprintf(rest, sizeof rest, "; stopped the other %d running rank%s", others,
                     others == 1 ? "" : "s");
        nmc_diag_t *rec = nmc_diag_add(d, NMC_SEV_ERROR, "launch-rank-failed", NULL, 0, 0, 0,
                                       "rank %d of %d %s%s", failed, nprocs, how, rest);
        nmc_diag_set_help(rec, "rank %d's own error output above says why", failed);
    }
    remove_dir(dir);
    return failed >= 0 ? 1 : 0;
}
