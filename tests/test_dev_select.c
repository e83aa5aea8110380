/* test_dev_select.c — device specs, the job's hardware plan (Unsloth hardware.gpus,
 * Automodel parallelism) and their exact diagnostics (runtime/dev_select.c), on a machine
 * without a GPU. Expectations depend on the build: a CUDA build (nvcc found) without a
 * visible GPU says dev-not-found, a CPU-only build (NMC_CUDA=0, the sanitizer build) says
 * dev-cuda-unavailable. Cases needing "no GPU visible" skip themselves when one is.
 * The CUDA device itself is tested on GPU machines by tests/gpu/test_dev_cuda.c.
 */
#include "dev_select.h"
#include "job.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static nmc_diags_t D;

static void setup(void) { nmc_diags_init(&D); }
static void teardown(void) { nmc_diags_free(&D); }

static const nmc_diag_t *first_error(void)
{
    for (size_t i = 0; i < D.n; i++)
        if (D.items[i].sev == NMC_SEV_ERROR) return &D.items[i];
    return NULL;
}

static nmc_job_t *load_job(const char *backend, const char *src)
{
    nmc_job_opts_t o;
    memset(&o, 0, sizeof o);
    o.backend = nmc_backend_by_name(backend);
    o.no_other_backend_hint = true;
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_job_t *job = NULL;
    nmc_job_status_t st = nmc_job_load_buffer(src, strlen(src), "job.json", &o, &job, &d);
    ck_assert_msg(st == NMC_JOB_VALID, "job invalid: %s: %s", d.n ? d.items[0].code : "",
                  d.n ? d.items[0].message : "");
    nmc_diags_free(&d);
    return job;
}

#define NO_GPU_OR_SKIP()                                                                  \
    do {                                                                                  \
        if (nmc_dev_cuda_count() > 0) return;                                             \
    } while (0)

/* ---- specs ------------------------------------------------------------------------------ */

START_TEST(spec_cpu_and_auto)
{
    const char *specs[] = {"cpu", "auto", "", NULL};
    for (int i = 0; i < 4; i++) {
        nmc_dev_t *dv = NULL;
        ck_assert_int_eq(nmc_dev_open(specs[i], &dv, &D), 0);
        ck_assert_ptr_nonnull(dv);
        if (i == 0 || nmc_dev_cuda_count() == 0) {
            ck_assert_int_eq(dv->kind, NMC_DEV_CPU);
            ck_assert_str_eq(dv->name, "cpu");
        }
        dv->destroy(dv);
    }
    ck_assert_int_eq((int)D.n_errors, 0);
}
END_TEST

START_TEST(spec_invalid)
{
    const char *bad[] = {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1234567", "CPU", "cuda0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nmc_diags_free(&D);
        nmc_diags_init(&D);
        nmc_dev_t *dv = (nmc_dev_t *)1;
        ck_assert_int_eq(nmc_dev_open(bad[i], &dv, &D), -1);
        ck_assert_ptr_null(dv);
        ck_assert_uint_eq(D.n, 1);
        ck_assert_str_eq(D.items[0].code, "dev-spec-invalid");
        char want[64];
        snprintf(want, sizeof want, "unknown device \"%s\"", bad[i]);
        ck_assert_str_eq(D.items[0].message, want);
        ck_assert_str_eq(D.items[0].expected, "auto, cpu, cuda or cuda:N");
    }
}
END_TEST

START_TEST(spec_cuda_without_gpu)
{
    NO_GPU_OR_SKIP();
    nmc_dev_t *dv = NULL;
    ck_assert_int_eq(nmc_dev_open("cuda:0", &dv, &D), -1);
    ck_assert_ptr_null(dv);
    ck_assert_uint_eq(D.n, 1);
#ifdef NMC_CUDA
    ck_assert_str_eq(D.items[0].code, "dev-not-found");
    ck_assert_str_eq(D.items[0].message, "cuda:0 does not exist: 0 GPUs are visible");
    ck_assert_ptr_nonnull(strstr(D.items[0].got, "no GPU is visible to nmc"));
    ck_assert_str_eq(D.items[0].help, "check nvidia-smi and CUDA_VISIBLE_DEVICES, or use --device cpu");
#else
    ck_assert_str_eq(D.items[0].code, "dev-cuda-unavailable");
    ck_assert_str_eq(D.items[0].message, "cuda:0 requested, but this nmc was built without CUDA");
#endif
}
END_TEST

START_TEST(spec_cuda_missing_index)
{
    nmc_dev_t *dv = NULL;
    ck_assert_int_eq(nmc_dev_open("cuda:999", &dv, &D), -1);
    ck_assert_ptr_null(dv);
#ifdef NMC_CUDA
    ck_assert_str_eq(D.items[0].code, "dev-not-found");
    ck_assert_ptr_nonnull(strstr(D.items[0].message, "cuda:999 does not exist"));
#else
    ck_assert_str_eq(D.items[0].code, "dev-cuda-unavailable");
#endif
}
END_TEST

START_TEST(cuda_new_stub_message)
{
    char err[300] = "";
    nmc_dev_t *dv = nmc_dev_cuda_new(12345, err, sizeof err);
    ck_assert_ptr_null(dv);
#ifndef NMC_CUDA
    ck_assert_str_eq(err, "cuda:12345 requested, but this nmc was built without CUDA (no nvcc at "
                          "build time, or NMC_CUDA=0)");
#else
    ck_assert_msg(err[0] != 0, "an error message is required");
#endif
}
END_TEST

START_TEST(mem_stats_cpu)
{
    nmc_dev_t *dv = nmc_dev_cpu_new();
    nmc_dev_mem_t ms;
    ck_assert_int_eq(nmc_dev_mem_stats(dv, &ms), -1);
    nmc_dev_mem_reset_peak(dv); /* no-op on the CPU */
    dv->destroy(dv);
}
END_TEST

/* The CPU's multi-tensor AdamW / sum of squares (the trainer's path) equal the per-tensor
 * calls bit for bit; with clip_sumsq the gradients are read scaled by
 * max_norm / (norm + 1e-6) (clip_grad_norm_ first) and left unscaled. */
START_TEST(cpu_multi_tensor_ops)
{
    nmc_dev_t *dv = nmc_dev_cpu_new();
    ck_assert_ptr_nonnull(dv->adamw_many);
    ck_assert_ptr_nonnull(dv->sumsq_many);
    enum { T = 3 };
    size_t n[T] = {5, 37, 1};
    float *buf[2][T][4]; /* [many / per-tensor][tensor][p, g, m, v] */
    for (int w = 0; w < 2; w++)
        for (int t = 0; t < T; t++)
            for (int k = 0; k < 4; k++) {
                buf[w][t][k] = malloc(n[t] * sizeof(float));
                for (size_t i = 0; i < n[t]; i++)
                    buf[w][t][k][i] = k >= 2 ? 0.0f : (float)(((i * 7 + t * 13 + k * 5) % 17) - 8) / 4.0f;
            }
    const float *gs[T];
    nmc_dev_adam_t tab[T];
    double ss_many = 0.0, ss_one = 0.0;
    for (int t = 0; t < T; t++) {
        gs[t] = buf[0][t][1];
        tab[t] = (nmc_dev_adam_t){buf[0][t][0], NULL, buf[0][t][1], buf[0][t][2], buf[0][t][3], n[t], t == 1 ? 0.1f : 0.0f};
        ck_assert_int_eq(dv->sumsq(dv, &ss_one, buf[1][t][1], n[t]), 0);
    }
    ck_assert_int_eq(dv->sumsq_many(dv, &ss_many, gs, n, T), 0);
    ck_assert(ss_many == ss_one);
    float max_norm = 1.0f, coef = (float)(max_norm / (sqrt(ss_one) + 1e-6));
    ck_assert(coef < 1.0f);
    for (long step = 1; step <= 2; step++) {
        ck_assert_int_eq(dv->adamw_many(dv, tab, T, 1e-2f, 0.9f, 0.999f, 1e-8f, 0, step,
                                        step == 1 ? &ss_many : NULL, max_norm), 0);
        for (int t = 0; t < T; t++) {
            float *g = malloc(n[t] * sizeof(float));
            for (size_t i = 0; i < n[t]; i++) g[i] = step == 1 ? buf[1][t][1][i] * coef : buf[1][t][1][i];
            ck_assert_int_eq(dv->adamw(dv, buf[1][t][0], NULL, g, buf[1][t][2], buf[1][t][3], n[t],
                                       1e-2f, 0.9f, 0.999f, 1e-8f, t == 1 ? 0.1f : 0.0f, 0, step), 0);
            free(g);
        }
    }
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < 4; k++)
            ck_assert_msg(memcmp(buf[0][t][k], buf[1][t][k], n[t] * sizeof(float)) == 0,
                          "tensor %d buffer %d differs", t, k);
        for (int w = 0; w < 2; w++)
            for (int k = 0; k < 4; k++) free(buf[w][t][k]);
    }
    dv->destroy(dv);
}
END_TEST

/* ---- Unsloth hardware.gpus ---------------------------------------------------------------- */

#define UNSLOTH(hw)                                                                       \
    "{\"model\": {\"name\": \"m\", \"load_in_4bit\": false},\n"                           \
    " \"dataset\": {\"path\": \"p\"},\n"                                                  \
    " \"hardware\": " hw "}\n"

START_TEST(gpus_not_visible)
{
    NO_GPU_OR_SKIP();
    nmc_job_t *job = load_job("unsloth", UNSLOTH("{\"gpus\": \"3\"}"));
    nmc_dev_plan_t pl;
    ck_assert_int_eq(nmc_dev_plan_job(job, 1, &pl, &D), -1);
    const nmc_diag_t *e = first_error();
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->code, "dev-not-found");
    ck_assert_str_eq(e->message, "hardware.gpus selects GPU 3, but 0 GPUs are visible");
    ck_assert_str_eq(e->path, "hardware.gpus");
    ck_assert_str_eq(e->file, "job.json");
    ck_assert_uint_eq(e->line, 3);
    ck_assert_uint_eq(e->col, 23);
    ck_assert_str_eq(e->help, "remove hardware.gpus to train on the CPU, or run where nvidia-smi "
                              "lists a GPU");
    /* the open refuses too, before any model is loaded */
    nmc_dev_t *dv = (nmc_dev_t *)1;
    ck_assert_int_eq(nmc_dev_open_for_job(job, NULL, 1, &dv, NULL, &D), -1);
    ck_assert_ptr_null(dv);
    nmc_job_free(job);
}
END_TEST

START_TEST(gpus_list_uses_first)
{
    NO_GPU_OR_SKIP();
    nmc_job_t *job = load_job("unsloth", UNSLOTH("{\"gpus\": \"1,0\"}"));
    nmc_dev_plan_t pl;
    ck_assert_int_eq(nmc_dev_plan_job(job, 1, &pl, &D), -1);
    ck_assert_int_eq(pl.gpu_index, 1);
    ck_assert_str_eq(D.items[0].code, "dev-gpus-first");
    ck_assert_int_eq(D.items[0].sev, NMC_SEV_NOTE);
    ck_assert_str_eq(D.items[0].message, "hardware.gpus lists 2 GPUs; Unsloth jobs train on one, "
                                         "so nmc uses the first (GPU 1)");
    ck_assert_str_eq(first_error()->message, "hardware.gpus selects GPU 1, but 0 GPUs are visible");
    nmc_job_free(job);
}
END_TEST

START_TEST(gpus_overridden_by_cpu)
{
    nmc_job_t *job = load_job("unsloth", UNSLOTH("{\"gpus\": \"3\"}"));
    nmc_dev_t *dv = NULL;
    nmc_dev_plan_t pl;
    ck_assert_int_eq(nmc_dev_open_for_job(job, "cpu", 1, &dv, &pl, &D), 0);
    ck_assert_ptr_nonnull(dv);
    ck_assert_int_eq(dv->kind, NMC_DEV_CPU);
    ck_assert_int_eq((int)D.n_errors, 0);
    ck_assert_uint_eq(D.n, 1);
    ck_assert_str_eq(D.items[0].code, "dev-gpus-overridden");
    ck_assert_str_eq(D.items[0].message, "--device cpu overrides hardware.gpus \"3\"");
    ck_assert_int_eq(pl.total_gpus, 1);
    dv->destroy(dv);
    /* the trainer plans before it opens: with an explicit device the index is not checked
     * (regression: `nmc train --device cpu` refused such a job with dev-not-found) */
    nmc_diags_free(&D);
    nmc_diags_init(&D);
    ck_assert_int_eq(nmc_dev_plan_job_for(job, "cpu", 1, &pl, &D), 0);
    ck_assert_int_eq((int)D.n_errors, 0);
    ck_assert_int_eq(nmc_dev_plan_job_for(job, NULL, 1, &pl, &D), -1);
    ck_assert_str_eq(D.items[D.n - 1].code, "dev-not-found");
    nmc_job_free(job);
}
END_TEST

START_TEST(unsloth_default_is_cpu_here)
{
    NO_GPU_OR_SKIP();
    nmc_job_t *job = load_job("unsloth", UNSLOTH("{}"));
    nmc_dev_t *dv = NULL;
    nmc_dev_plan_t pl;
    ck_assert_int_eq(nmc_dev_open_for_job(job, NULL, 1, &dv, &pl, &D), 0);
    ck_assert_int_eq(dv->kind, NMC_DEV_CPU);
    ck_assert_int_eq(pl.gpu_index, -1);
    ck_assert_int_eq(pl.visible_gpus, 0);
    ck_assert_uint_eq(D.n, 0);
    dv->destroy(dv);
    nmc_job_free(job);
}
END_TEST

/* ---- Automodel parallelism -------------------------------------------------------------- */

#define AUTOMODEL(par)                                                                    \
    "{\"model\": \"m\", \"dataset\": {\"training\": \"t\"}, \"training\": {},\n"          \
    " \"parallelism\": " par "}\n"

START_TEST(parallel_default_ok)
{
    nmc_job_t *job = load_job("automodel", AUTOMODEL("{}"));
    nmc_dev_plan_t pl;
    ck_assert_int_eq(nmc_dev_plan_job(job, 1, &pl, &D), 0);
    ck_assert_int_eq(pl.total_gpus, 1);
    ck_assert_int_eq(pl.dp, 1);
    ck_assert_int_eq(pl.tp * pl.pp * pl.cp, 1);
    ck_assert_int_eq(pl.num_nodes, 1);
    ck_assert_uint_eq(D.n, 0);
    nmc_job_free(job);
}
END_TEST

START_TEST(parallel_more_gpus_than_visible)
{
    NO_GPU_OR_SKIP();
    nmc_job_t *job = load_job("automodel", AUTOMODEL("{\"num_gpus_per_node\": 8, \"tensor_parallel_size\": 2}"));
    nmc_dev_plan_t pl;
    ck_assert_int_eq(nmc_dev_plan_job(job, 1, &pl, &D), -1);
    ck_assert_int_eq(pl.total_gpus, 8);
    ck_assert_int_eq(pl.dp, 4);
    const nmc_diag_t *e = first_error();
    ck_assert_str_eq(e->code, "dev-gpus-insufficient");
    ck_assert_str_eq(e->message, "the job is laid out for 8 GPUs (num_gpus_per_node 8 × num_nodes 1) "
                                 "but 0 are visible");
    ck_assert_str_eq(e->path, "parallelism.num_gpus_per_node");
    ck_assert_uint_eq(e->line, 2);
    ck_assert_uint_eq(e->col, 39);
    ck_assert_str_eq(e->help, "lower parallelism.num_gpus_per_node to 1 (with tensor, pipeline and "
                              "context sizes whose product divides it), or make more GPUs visible");
    nmc_job_free(job);
}
END_TEST

START_TEST(parallel_multi_node)
{
    nmc_job_t *job = load_job("automodel", AUTOMODEL("{\"num_nodes\": 2}"));
    ck_assert_int_eq(nmc_dev_plan_job(job, 1, NULL, &D), -1);
    const nmc_diag_t *e = first_error();
    ck_assert_str_eq(e->code, "dev-multi-node-unsupported");
    ck_assert_str_eq(e->message, "parallelism.num_nodes is 2: a multi-node job needs a launcher "
                                 "that starts its 2 ranks");
    ck_assert_str_eq(e->path, "parallelism.num_nodes");
    ck_assert_str_eq(e->help, "launch with mpirun or srun, one rank per GPU (docs/distributed.md), "
                              "or set parallelism.num_nodes to 1");
    /* started by a launcher with every rank: planned (CPU ranks here, GPUs per node elsewhere) */
    nmc_diags_free(&D);
    nmc_diags_init(&D);
    nmc_dev_plan_t pl;
    if (nmc_dev_cuda_count() == 0) {
        ck_assert_int_eq(nmc_dev_plan_job(job, 2, &pl, &D), 0);
        ck_assert_int_eq(pl.total_gpus, 2);
        ck_assert_int_eq(pl.num_nodes, 2);
        ck_assert_int_eq(pl.dp, 2);
    }
    nmc_job_free(job);
}
END_TEST

START_TEST(parallel_automodel_opens_cpu_here)
{
    NO_GPU_OR_SKIP();
    nmc_job_t *job = load_job("automodel", AUTOMODEL("{}"));
    nmc_dev_t *dv = NULL;
    ck_assert_int_eq(nmc_dev_open_for_job(job, "auto", 1, &dv, NULL, &D), 0);
    ck_assert_int_eq(dv->kind, NMC_DEV_CPU);
    dv->destroy(dv);
    nmc_job_free(job);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dev_select");
    TCase *t = tcase_create("specs");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, spec_cpu_and_auto);
    tcase_add_test(t, spec_invalid);
    tcase_add_test(t, spec_cuda_without_gpu);
    tcase_add_test(t, spec_cuda_missing_index);
    tcase_add_test(t, cuda_new_stub_message);
    tcase_add_test(t, mem_stats_cpu);
    tcase_add_test(t, cpu_multi_tensor_ops);
    suite_add_tcase(s, t);
    t = tcase_create("jobs");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, gpus_not_visible);
    tcase_add_test(t, gpus_list_uses_first);
    tcase_add_test(t, gpus_overridden_by_cpu);
    tcase_add_test(t, unsloth_default_is_cpu_here);
    tcase_add_test(t, parallel_default_ok);
    tcase_add_test(t, parallel_more_gpus_than_visible);
    tcase_add_test(t, parallel_multi_node);
    tcase_add_test(t, parallel_automodel_opens_cpu_here);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
