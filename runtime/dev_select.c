/* dev_select.c — which device a run uses: device specs ("auto", "cpu", "cuda:N"), the
 * Unsloth hardware.gpus selection and the Automodel parallelism layout checked against the
 * visible GPUs before any weights load. Device construction itself is in dev_cpu.c and
 * dev_cuda.c; API and error codes in dev_select.h.
 */
#include "dev_select.h"
#include "job.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A device spec names at most this many digits: no machine has 10^6 GPUs, and the cap keeps
 * the integer parse from overflowing. */
#define SPEC_MAX_DIGITS 6

typedef enum { SPEC_AUTO, SPEC_CPU, SPEC_CUDA } spec_kind_t;

/* "12" -> 12; -1 unless 1..SPEC_MAX_DIGITS decimal digits and nothing else. */
static int parse_index(const char *s, size_t len)
{
    if (len == 0 || len > SPEC_MAX_DIGITS) return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int parse_spec(const char *spec, spec_kind_t *kind, int *index)
{
    *index = 0;
    if (!spec || !*spec || !strcmp(spec, "auto")) *kind = SPEC_AUTO;
    else if (!strcmp(spec, "cpu")) *kind = SPEC_CPU;
    else if (!strcmp(spec, "cuda")) *kind = SPEC_CUDA;
    else if (!strncmp(spec, "cuda:", 5) && (*index = parse_index(spec + 5, strlen(spec + 5))) >= 0)
        *kind = SPEC_CUDA;
    else return -1;
    return 0;
}

/* "visible GPUs: 0: NVIDIA H100 (79.1 GiB, sm_90); 1: ..." or why there are none. */
static void describe_visible(char *buf, size_t cap)
{
    int n = nmc_dev_cuda_count();
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (n <= 0) {
        snprintf(buf, cap, "no GPU is visible to nmc%s%s%s", cvd ? " (CUDA_VISIBLE_DEVICES=\"" : "",
                 cvd ? cvd : "", cvd ? "\")" : "");
        return;
    }
    size_t o = (size_t)snprintf(buf, cap, "visible GPUs%s%s%s:", cvd ? " (CUDA_VISIBLE_DEVICES=\"" : "",
                                cvd ? cvd : "", cvd ? "\")" : "");
    for (int i = 0; i < n && o + 1 < cap; i++) {
        char one[320];
        nmc_dev_cuda_describe(i, one, sizeof one);
        o += (size_t)snprintf(buf + o, cap - o, "%s %s", i ? ";" : "", one);
    }
}

static int open_cuda(int index, nmc_dev_t **out, nmc_diags_t *d)
{
    char err[1200];
    int n = nmc_dev_cuda_count();
#ifndef NMC_CUDA
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "dev-cuda-unavailable", NULL, 0, 0, 0,
                                 "cuda:%d requested, but this nmc was built without CUDA", index);
    nmc_diag_set_help(r, "rebuild on a machine with the CUDA toolkit (make; nvcc must be on "
                         "PATH or in /usr/local/cuda), or use --device cpu");
    (void)n;
    (void)err;
    return -1;
#else
    if (index >= n) {
        char vis[2048];
        describe_visible(vis, sizeof vis);
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "dev-not-found", NULL, 0, 0, 0,
                                     "cuda:%d does not exist: %d GPU%s visible", index, n,
                                     n == 1 ? " is" : "s are");
        nmc_diag_set_got(r, "%s", vis);
        if (n > 0) nmc_diag_set_help(r, "use cuda:0 .. cuda:%d, or --device auto", n - 1);
        else nmc_diag_set_help(r, "check nvidia-smi and CUDA_VISIBLE_DEVICES, or use --device cpu");
        return -1;
    }
    *out = nmc_dev_cuda_new(index, err, sizeof err);
    if (!*out) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "dev-init-failed", NULL, 0, 0, 0,
                                     "cannot start cuda:%d: %s", index, err);
        nmc_diag_set_help(r, "nmc's kernels need compute capability 8.0 or newer (A100, H100, "
                             "RTX 30xx and later); --device cpu trains without a GPU");
        return -1;
    }
    return 0;
#endif
}

int nmc_dev_open(const char *spec, nmc_dev_t **out, nmc_diags_t *d)
{
    *out = NULL;
    spec_kind_t kind;
    int index;
    if (parse_spec(spec, &kind, &index) != 0) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "dev-spec-invalid", NULL, 0, 0, 0,
                                     "unknown device \"%s\"", spec);
        nmc_diag_set_expected(r, "auto, cpu, cuda or cuda:N");
        nmc_diag_set_help(r, "for example --device cuda:0 (the first visible GPU) or --device cpu");
        return -1;
    }
    if (kind == SPEC_CPU) {
        *out = nmc_dev_cpu_new();
        return 0;
    }
    if (kind == SPEC_CUDA) return open_cuda(index, out, d);
    /* auto: the first GPU when one is visible and starts, else the CPU */
    if (nmc_dev_cuda_count() > 0) {
        nmc_diags_t tmp;
        nmc_diags_init(&tmp);
        int rc = open_cuda(0, out, &tmp);
        if (rc != 0) {
            nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_WARNING, "dev-cuda-fallback", NULL, 0, 0, 0,
                                         "a GPU is visible but cannot be used (%s); training "
                                         "on the CPU", tmp.n ? tmp.items[0].message : "unknown");
            nmc_diag_set_help(r, "pass --device cpu to silence this, or --device cuda:0 to make "
                                 "it an error");
        }
        nmc_diags_free(&tmp);
        if (rc == 0) return 0;
    }
    *out = nmc_dev_cpu_new();
    return 0;
}

/* ---- jobs ------------------------------------------------------------------------------ */

/* A diagnostic at member `key` of JSON object `obj` (or at obj, or nowhere), with the dotted
 * path parent.key. */
static nmc_diag_t *job_diag(nmc_diags_t *d, const nmc_job_t *job, nmc_severity_t sev,
                            const char *code, const nmc_json_t *obj, const char *parent,
                            const char *key, const char *msg)
{
    const nmc_json_t *v = obj ? nmc_json_get(obj, key) : NULL;
    const nmc_json_t *at = v ? v : obj;
    nmc_diag_t *r = nmc_diag_add(d, sev, code, job->file, at ? at->line : 0, at ? at->col : 0,
                                 at ? at->offset : 0, "%s", msg);
    nmc_path_t p;
    p.depth = 0;
    nmc_path_push_key(&p, parent, strlen(parent));
    if (key) nmc_path_push_key(&p, key, strlen(key));
    nmc_diag_set_path(r, &p);
    return r;
}

/* Parse "0,2" (already checked against the schema's pattern; checked again here since the
 * plan may be asked of any loaded job). Returns the count and the first index. */
static int parse_gpu_list(const char *s, int *first)
{
    int n = 0;
    *first = -1;
    while (*s) {
        size_t len = strspn(s, "0123456789");
        int v = parse_index(s, len);
        if (v < 0) return -1;
        if (n++ == 0) *first = v;
        s += len;
        if (*s == ',') {
            s++;
            if (!*s) return -1;
        } else if (*s) {
            return -1;
        }
    }
    return n;
}

static int plan_unsloth(const nmc_job_t *job, const nmc_unsloth_job_t *u, bool check_index,
                        nmc_dev_plan_t *pl, nmc_diags_t *d)
{
    const char *gpus = u->hardware.gpus;
    const nmc_json_t *hw = u->hardware.nmc_json;
    if (!gpus) return 0;
    char msg[2400];
    int first, n = parse_gpu_list(gpus, &first);
    if (n <= 0) {
        snprintf(msg, sizeof msg, "hardware.gpus \"%s\" is not a list of GPU indices", gpus);
        nmc_diag_t *r = job_diag(d, job, NMC_SEV_ERROR, "dev-gpus-invalid", hw, "hardware", "gpus", msg);
        nmc_diag_set_expected(r, "comma-separated indices such as \"0\" or \"0,1\"");
        return -1;
    }
    pl->gpu_index = first;
    if (n > 1) {
        snprintf(msg, sizeof msg, "hardware.gpus lists %d GPUs; Unsloth jobs train on one, so "
                 "nmc uses the first (GPU %d)", n, first);
        job_diag(d, job, NMC_SEV_NOTE, "dev-gpus-first", hw, "hardware", "gpus", msg);
    }
    if (check_index && first >= pl->visible_gpus) {
        char vis[2048];
        describe_visible(vis, sizeof vis);
        snprintf(msg, sizeof msg, "hardware.gpus selects GPU %d, but %d GPU%s visible", first,
                 pl->visible_gpus, pl->visible_gpus == 1 ? " is" : "s are");
        nmc_diag_t *r = job_diag(d, job, NMC_SEV_ERROR, "dev-not-found", hw, "hardware", "gpus", msg);
        nmc_diag_set_got(r, "%s", vis);
        if (pl->visible_gpus > 0)
            nmc_diag_set_help(r, "indices count the GPUs nmc can see (after CUDA_VISIBLE_DEVICES): "
                                 "use 0 .. %d, or remove hardware.gpus", pl->visible_gpus - 1);
        else
            nmc_diag_set_help(r, "remove hardware.gpus to train on the CPU, or run where "
                                 "nvidia-smi lists a GPU");
        return -1;
    }
    return 0;
}

static int plan_automodel(const nmc_job_t *job, const nmc_automodel_job_t *a, int max_ranks,
                          nmc_dev_plan_t *pl, nmc_diags_t *d)
{
    const nmc_automodel_parallelism_t *p = &a->parallelism;
    const nmc_json_t *pj = p->nmc_json;
    char msg[400];
    pl->num_nodes = (int)p->num_nodes;
    pl->tp = (int)(p->tensor_parallel_size > 0 ? p->tensor_parallel_size : 1);
    pl->pp = (int)(p->pipeline_parallel_size > 0 ? p->pipeline_parallel_size : 1);
    pl->cp = (int)(p->context_parallel_size > 0 ? p->context_parallel_size : 1);
    int64_t total = p->num_gpus_per_node * p->num_nodes;
    pl->total_gpus = (int)total;
    int64_t model_par = (int64_t)pl->tp * pl->pp * pl->cp;
    pl->dp = total % model_par == 0 ? (int)(total / model_par) : 0;
    /* ranks on several machines exist only when a launcher started them */
    if (p->num_nodes > 1 && total > max_ranks) {
        snprintf(msg, sizeof msg, "parallelism.num_nodes is %lld: a multi-node job needs a "
                 "launcher that starts its %lld ranks", (long long)p->num_nodes, (long long)total);
        nmc_diag_t *r = job_diag(d, job, NMC_SEV_ERROR, "dev-multi-node-unsupported", pj,
                                 "parallelism", "num_nodes", msg);
        nmc_diag_set_help(r, "launch with mpirun or srun, one rank per GPU (docs/distributed.md), "
                             "or set parallelism.num_nodes to 1");
        return -1;
    }
    /* GPUs are counted per node. Without any GPU, ranks started for every GPU of the job
     * train on the CPU (as a one-GPU job does). */
    bool cpu_ranks = pl->visible_gpus == 0 && total <= max_ranks;
    if (total > 1 && p->num_gpus_per_node > pl->visible_gpus && !cpu_ranks) {
        char vis[2048];
        describe_visible(vis, sizeof vis);
        snprintf(msg, sizeof msg, "the job is laid out for %lld GPUs (num_gpus_per_node %lld × "
                 "num_nodes %lld) but %d %s visible", (long long)total,
                 (long long)p->num_gpus_per_node, (long long)p->num_nodes, pl->visible_gpus,
                 pl->visible_gpus == 1 ? "is" : "are");
        nmc_diag_t *r = job_diag(d, job, NMC_SEV_ERROR, "dev-gpus-insufficient", pj,
                                 "parallelism", "num_gpus_per_node", msg);
        nmc_diag_set_got(r, "%s", vis);
        nmc_diag_set_help(r, "lower parallelism.num_gpus_per_node to %d (with tensor, pipeline "
                             "and context sizes whose product divides it), or make more GPUs "
                             "visible", pl->visible_gpus > 0 ? pl->visible_gpus : 1);
        return -1;
    }
    if (total > max_ranks) {
        snprintf(msg, sizeof msg, "the job is laid out for %lld GPUs but only %d rank%s "
                 "started", (long long)total, max_ranks, max_ranks == 1 ? " was" : "s were");
        nmc_diag_t *r = job_diag(d, job, NMC_SEV_ERROR, "dev-multi-gpu-unsupported", pj,
                                 "parallelism", "num_gpus_per_node", msg);
        nmc_diag_set_help(r, "run `nmc train` without a launcher on one node (it starts one rank "
                             "per GPU), or start %lld ranks with mpirun / srun; or set "
                             "parallelism.num_gpus_per_node to %d", (long long)total, max_ranks);
        return -1;
    }
    return 0;
}

static int plan(const nmc_job_t *job, int max_ranks, bool check_index, nmc_dev_plan_t *pl,
                nmc_diags_t *d)
{
    memset(pl, 0, sizeof *pl);
    pl->total_gpus = pl->num_nodes = pl->tp = pl->pp = pl->cp = pl->dp = 1;
    pl->gpu_index = -1;
    pl->visible_gpus = nmc_dev_cuda_count();
    if (max_ranks < 1) max_ranks = 1;
    const nmc_unsloth_job_t *u = job ? nmc_job_unsloth(job) : NULL;
    const nmc_automodel_job_t *a = job ? nmc_job_automodel(job) : NULL;
    if (u) return plan_unsloth(job, u, check_index, pl, d);
    if (a) return plan_automodel(job, a, max_ranks, pl, d);
    return 0;
}

int nmc_dev_plan_job(const nmc_job_t *job, int max_ranks, nmc_dev_plan_t *pl, nmc_diags_t *d)
{
    nmc_dev_plan_t tmp;
    return plan(job, max_ranks, true, pl ? pl : &tmp, d);
}

int nmc_dev_plan_job_for(const nmc_job_t *job, const char *spec, int max_ranks,
                         nmc_dev_plan_t *pl, nmc_diags_t *d)
{
    nmc_dev_plan_t tmp;
    spec_kind_t kind;
    int index;
    bool explicit_spec = parse_spec(spec, &kind, &index) == 0 && kind != SPEC_AUTO;
    return plan(job, max_ranks, !explicit_spec, pl ? pl : &tmp, d);
}

int nmc_dev_open_for_job(const nmc_job_t *job, const char *spec, int max_ranks, nmc_dev_t **out,
                         nmc_dev_plan_t *pl, nmc_diags_t *d)
{
    *out = NULL;
    nmc_dev_plan_t tmp;
    if (!pl) pl = &tmp;
    spec_kind_t kind;
    int index;
    bool explicit_spec = parse_spec(spec, &kind, &index) == 0 && kind != SPEC_AUTO;
    if (plan(job, max_ranks, !explicit_spec, pl, d) != 0) return -1;
    if (explicit_spec && pl->gpu_index >= 0) {
        const nmc_unsloth_job_t *u = nmc_job_unsloth(job);
        char msg[200];
        snprintf(msg, sizeof msg, "--device %s overrides hardware.gpus \"%s\"", spec,
                 u && u->hardware.gpus ? u->hardware.gpus : "");
        job_diag(d, job, NMC_SEV_WARNING, "dev-gpus-overridden", u ? u->hardware.nmc_json : NULL,
                 "hardware", "gpus", msg);
    }
    if (!explicit_spec && pl->gpu_index >= 0) return open_cuda(pl->gpu_index, out, d);
    return nmc_dev_open(spec, out, d);
}

int nmc_dev_mem_stats(nmc_dev_t *dev, nmc_dev_mem_t *out)
{
    if (!dev || !out || dev->kind != NMC_DEV_CUDA) return -1;
    return nmc_dev_cuda_mem_stats(dev, out);
}

void nmc_dev_mem_reset_peak(nmc_dev_t *dev)
{
    if (dev && dev->kind == NMC_DEV_CUDA) nmc_dev_cuda_reset_peak(dev);
}
