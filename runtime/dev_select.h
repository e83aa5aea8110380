/* dev_select.h — choosing the device a job trains on, and the CUDA device constructor.
 *
 * Device specs (the CLI's --device): "auto" (CUDA device 0 when a GPU is
 * visible, else the CPU), "cpu", "cuda" (= "cuda:0"), "cuda:N" (N-th VISIBLE device,
 * i.e. counted after CUDA_VISIBLE_DEVICES). NULL or "" means "auto".
 *
 * Jobs: the Unsloth `hardware.gpus` list ("0" or "0,1", CUDA_VISIBLE_DEVICES semantics:
 * it selects, training uses ONE GPU, the first listed) and the Automodel `parallelism`
 * block (total_gpus = num_gpus_per_node × num_nodes; more GPUs than visible is an error
 * raised BEFORE any weights load) are honoured by nmc_dev_open_for_job.
 *
 * Error codes (diagnostics): dev-spec-invalid, dev-not-found, dev-cuda-unavailable,
 * dev-init-failed, dev-gpus-invalid, dev-gpus-insufficient, dev-multi-node-unsupported,
 * dev-multi-gpu-unsupported. Messages name the visible devices and say how to fix it.
 */
#ifndef NMC_DEV_SELECT_H
#define NMC_DEV_SELECT_H
#include "dev.h"
#include "diag.h"
#include <stddef.h>

struct nmc_job; /* runtime/job.h */

/* Visible CUDA devices (0 in a CPU-only build or without a driver/GPU). */
int nmc_dev_cuda_count(void);

/* A CUDA device on visible index `index` (bf16 activations, kernels/nmc_cuda.h ops, one
 * stream). Returns NULL and a message in err[errcap] on failure (no such device, compute
 * capability < 8.0, out of memory, CPU-only build). Free with dev->destroy(dev). */
nmc_dev_t *nmc_dev_cuda_new(int index, char *err, size_t errcap);

/* Open the device named by spec (see above). Returns 0 and *out (caller destroys), or -1
 * with one diagnostic (*out NULL). A GPU index that does not exist lists the visible
 * devices in the message's help. */
int nmc_dev_open(const char *spec, nmc_dev_t **out, nmc_diags_t *d);

/* What a job asks of the hardware, as resolved by nmc_dev_plan_job. */
typedef struct {
    int total_gpus;   /* GPUs the job is laid out for (Automodel: nodes × GPUs per node;
                         Unsloth: 1) */
    int num_nodes;    /* Automodel parallelism.num_nodes, else 1 */
    int tp, pp, cp;   /* parallel sizes (1 when not Automodel) */
    int dp;           /* total_gpus / (tp·pp·cp) */
    int gpu_index;    /* -1: no GPU named by the job; else the visible index it selects */
    int visible_gpus; /* nmc_dev_cuda_count() at planning time */
} nmc_dev_plan_t;

/* Check a loaded, valid job against the visible hardware WITHOUT opening a device (so
 * call it before loading weights). max_ranks: the ranks the caller's launch provides (its
 * world size: `nmc train` passes it after nmc_launch_check_world; 1 for one process). A
 * job laid out for more GPUs than that is refused with dev-multi-gpu-unsupported (or
 * dev-multi-node-unsupported for num_nodes > 1) when enough GPUs are visible, and with
 * dev-gpus-insufficient when a node has fewer GPUs than num_gpus_per_node. Without any
 * visible GPU, a job whose every GPU has a rank is accepted: the ranks train on the CPU
 * (as a one-GPU job does); spec "cuda..." then fails in nmc_dev_open. Data-parallel ranks
 * pick their GPU themselves (`cuda:<local rank>`). Returns 0 and *plan, or -1 with
 * diagnostics positioned at the job's fields. */
int nmc_dev_plan_job(const struct nmc_job *job, int max_ranks, nmc_dev_plan_t *plan,
                     nmc_diags_t *d);

/* nmc_dev_plan_job for a run whose device is `spec` (the CLI's --device): an explicit
 * "cpu" / "cuda:N" takes precedence over hardware.gpus, so its index is not checked against
 * the visible GPUs; NULL / "auto" checks it as nmc_dev_plan_job does. */
int nmc_dev_plan_job_for(const struct nmc_job *job, const char *spec, int max_ranks,
                         nmc_dev_plan_t *plan, nmc_diags_t *d);

/* nmc_dev_plan_job, then open the device: spec NULL/"auto" lets the job choose
 * (hardware.gpus, else auto); an explicit "cpu" / "cuda:N" wins over hardware.gpus (a
 * warning says so). Returns 0 and *out, or -1 (*out NULL). plan may be NULL. */
int nmc_dev_open_for_job(const struct nmc_job *job, const char *spec, int max_ranks,
                         nmc_dev_t **out, nmc_dev_plan_t *plan, nmc_diags_t *d);

/* Device memory accounting (CUDA devices): live and peak bytes of dev->alloc buffers plus
 * the bytes the CUDA context holds (op scratch, cuBLASLt workspace). Returns 0, or -1 for
 * devices that do not count (the CPU). */
typedef struct {
    size_t live_bytes;    /* dev->alloc buffers alive now */
    size_t peak_bytes;    /* max of live_bytes since creation or the last reset */
    size_t ctx_bytes;     /* context scratch + cuBLASLt workspace (grows on demand) */
    size_t device_total;  /* device memory size */
    size_t device_free;   /* cudaMemGetInfo free bytes now */
} nmc_dev_mem_t;
int nmc_dev_mem_stats(nmc_dev_t *dev, nmc_dev_mem_t *out);
void nmc_dev_mem_reset_peak(nmc_dev_t *dev);

/* Internal to dev_cuda.c / dev_select.c (no-ops / -1 in a CPU-only build). */
int nmc_dev_cuda_mem_stats(nmc_dev_t *dev, nmc_dev_mem_t *out);
void nmc_dev_cuda_reset_peak(nmc_dev_t *dev);
/* "0: NVIDIA H100 80GB HBM3 (79.1 GiB, sm_90)" for visible device i; 0 or -1. */
int nmc_dev_cuda_describe(int index, char *buf, size_t cap);

#endif
