/* threads.c — the small persistent pthread pool behind every threaded CPU kernel.
 *
 * Belongs here: nmc_cpu_set_threads / nmc_cpu_threads (public, nmc_kernels.h) and
 * nmc_cpu_parallel (private, nmc_cpu_internal.h). Workers are started lazily on the first
 * parallel call and then sleep on a condition variable between jobs; a job is one
 * function run as ids 0..n-1 with the caller doing id 0. Work splitting is the kernels'
 * business (static, by id), which keeps results independent of scheduling.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>


typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* workers wait here for a new generation */
    pthread_cond_t done;        /* the caller waits here for pending == 0 */
    pthread_mutex_t busy;       /* held by the thread that owns the pool for a job */
    int started;                /* workers created so far (ids 1..started) */
    int threads;                /* configured thread count, 0 = not yet decided */
    unsigned long generation;   /* bumped for each job */
    int pending;                /* workers still running the current job */
    nmc_cpu_task_fn fn;         /* current job */
    void *ctx;
    int n;                      /* ids of the current job: 0..n-1 */
    unsigned long jobs;         /* jobs run with n > 1 */
} pool_t;

static pool_t pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                      PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0,
                      NULL, NULL, 0, 0};
static _Thread_local int in_task; /* set while this thread runs a task: nested calls go serial */

/* The cores this process may run on: its CPU affinity mask (a launcher that binds each
 * rank to some cores, taskset, a cgroup cpuset), else the online cores. *restricted is set
 * when the mask is narrower than the online cores. */
int nmc_cpu_cores(int *restricted)
{
    long on = sysconf(_SC_NPROCESSORS_ONLN);
    int n = on < 1 ? 1 : (int)on;
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (restricted) *restricted = c > 0 && c < n;
        if (c > 0) n = c;
    } else if (restricted) {
        *restricted = 0;
    }
#else
    if (restricted) *restricted = 0;
#endif
    return n > NMC_CPU_MAX_THREADS ? NMC_CPU_MAX_THREADS : n;
}

static int online_cores(void) { return nmc_cpu_cores(NULL); }

void nmc_cpu_set_threads(int n)
{
    pthread_mutex_lock(&pool.mu);
    pool.threads = n <= 0 ? online_cores() : (n > NMC_CPU_MAX_THREADS ? NMC_CPU_MAX_THREADS : n);
    pthread_mutex_unlock(&pool.mu);
}

int nmc_cpu_threads(void)
{
    pthread_mutex_lock(&pool.mu);
    if (pool.threads == 0) pool.threads = online_cores();
    int n = pool.threads;
    pthread_mutex_unlock(&pool.mu);
    return n;
}

static void *worker_main(void *arg)
{
    int id = (int)(size_t)arg;
    unsigned long seen = 0;
    in_task = 1;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.mu);
        seen = pool.generation;
        if (id >= pool.n) continue; /* not needed for this job */
        nmc_cpu_task_fn fn = pool.fn;
        void *ctx = pool.ctx;
        int n = pool.n;
        pthread_mutex_unlock(&pool.mu);
        fn(ctx, id, n);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* A forked child has none of the parent's workers: start from an empty pool there. */
static void reset_in_child(void)
{
    pthread_mutex_init(&pool.mu, NULL);
    pthread_mutex_init(&pool.busy, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.started = 0;
    pool.pending = 0;
    in_task = 0;
}

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, reset_in_child);
}

/* Starts workers up to id n-1; returns how many ids can run (n, or fewer if a
 * pthread_create failed — then the job simply uses fewer threads). Called with mu held. */
static int ensure_workers(int n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handler);
    while (pool.started < n - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker_main, (void *)(size_t)(pool.started + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pool.started++;
    }
    return pool.started + 1 < n ? pool.started + 1 : n;
}

unsigned long nmc_cpu_parallel_jobs(void)
{
    pthread_mutex_lock(&pool.mu);
    unsigned long j = pool.jobs;
    pthread_mutex_unlock(&pool.mu);
    return j;
}

void nmc_cpu_parallel(nmc_cpu_task_fn fn, void *ctx, int want)
{
    int n = nmc_cpu_threads();
    if (want < n) n = want;
    if (n <= 1 || in_task || pthread_mutex_trylock(&pool.busy) != 0) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    n = ensure_workers(n);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.pending = n - 1;
    pool.generation++;
    pool.jobs += n > 1;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);

    in_task = 1;
    fn(ctx, 0, n);
    in_task = 0;

    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool.busy);
}
