/* nmc_cpu_internal.h — private helpers shared by the CPU kernels (the kernels/ C files only).
 *
 * The thread pool (threads.c): a kernel hands a function and a context to
 * nmc_cpu_parallel(), which runs it on `n` threads with ids 0..n-1 (the caller is id 0).
 * Every kernel splits its work statically by id and writes each output element from
 * exactly one thread in a fixed order, so results are bit-identical for ANY thread count.
 * Not part of the public API: the runtime includes only nmc_kernels.h.
 */
#ifndef NMC_CPU_INTERNAL_H
#define NMC_CPU_INTERNAL_H
#include <stddef.h>

/* fn(ctx, id, n) is called once for every id in [0, n). */
typedef void (*nmc_cpu_task_fn)(void *ctx, int id, int n);

/* Runs fn on min(want, nmc_cpu_threads()) threads (at least 1) and returns when all are
 * done. Nested calls (from inside a task) and calls while another thread is using the
 * pool run serially on the calling thread with n = 1. */
void nmc_cpu_parallel(nmc_cpu_task_fn fn, void *ctx, int want);

/* Jobs that have run on more than one thread so far (tests use it to prove that a
 * determinism check really ran threaded). */
unsigned long nmc_cpu_parallel_jobs(void);

/* Static split of [0, total) into n near-equal contiguous ranges; range `id` is
 * [*lo, *hi). Larger ranges come first. */
static inline void nmc_cpu_range(size_t total, int id, int n, size_t *lo, size_t *hi)
{
    size_t base = total / (size_t)n, rem = total % (size_t)n, u = (size_t)id;
    *lo = u * base + (u < rem ? u : rem);
    *hi = *lo + base + (u < rem ? 1 : 0);
}

/* How many threads a job of `work` units deserves, given that one thread should get at
 * least `grain` units (small jobs stay on the caller: waking threads costs ~10 us). */
static inline int nmc_cpu_want(size_t work, size_t grain)
{
    size_t w = grain ? work / grain : work;
    return w < 1 ? 1 : (w > 1024 ? 1024 : (int)w);
}

/* ISA levels of the vectorized CPU kernels (matmul micro-kernels, attention rows). */
typedef enum { NMC_ISA_AUTO = 0, NMC_ISA_GENERIC = 1, NMC_ISA_AVX2 = 2, NMC_ISA_AVX512 = 3 } nmc_isa_t;
/* Forces the ISA level used by matmul and attention (tests use it to cover every code
 * path); NMC_ISA_AUTO picks the best the CPU supports. A level the CPU lacks is lowered to
 * one it has. Returns the level now in use. Not thread-safe against concurrent kernels. */
nmc_isa_t nmc_cpu_matmul_set_isa(nmc_isa_t isa);
/* The ISA level in use (decided on first use). */
nmc_isa_t nmc_cpu_isa(void);
#endif
