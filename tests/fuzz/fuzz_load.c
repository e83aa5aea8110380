/* fuzz_load.c — libFuzzer target over the whole job loader: strict JSON, backend choice,
 * envelope, every field kind, defaults, autofill, derived values, rules, the other-backend
 * probe, the model rules with fake facts, and explain. Each input is loaded as automodel,
 * as unsloth and with the automatic choice. Seeds: tests/fuzz/corpus/load/ (the job fixtures).
 */
#include "job.h"
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink) sink = fopen("/dev/null", "w");
    nmc_model_fact_t f[] = {
        { "num_experts", { .kind = NMC_LIT_INT, .i = 6, .d = 6 } },
        { "teacher_same_tokenizer", { .kind = NMC_LIT_BOOL, .b = false } },
    };
    nmc_model_facts_t facts = { f, 2 };
    for (int b = -1; b < NMC_BACKEND_COUNT; b++) {
        nmc_job_opts_t o = { .backend = b };
        nmc_diags_t d;
        nmc_diags_init(&d);
        nmc_job_t *job = NULL;
        nmc_job_status_t st = nmc_job_load_buffer((const char *)data, size, "fuzz.json", &o, &job, &d);
        if (job && job->spec) nmc_job_check_model(job, &facts, &d);
        if (st == NMC_JOB_VALID && sink) nmc_job_explain(job, sink);
        if (sink) nmc_diags_render_text(&d, job ? job->src : NULL, job ? job->src_len : 0, sink, 0);
        nmc_job_free(job);
        nmc_diags_free(&d);
    }
    return 0;
}
