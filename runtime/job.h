/* job.h — load a job file for one backend: strict JSON, the generated schema tables
 * (generated/schema.gen.h), defaults, autofill, derived values and cross-field rules, all
 * reported as diagnostics (runtime/diag.h). Also `explain` (the resolved job as JSON) and
 * the model-dependent rules, checked once the model's facts are known.
 *
 * Typical use:
 *   nmc_diags_t d; nmc_diags_init(&d);
 *   nmc_job_t *job = NULL;
 *   int st = nmc_job_load_file("job.json", NULL, &job, &d);   // 0 valid, 1 invalid, 2 I/O
 *   const nmc_automodel_job_t *am = nmc_job_automodel(job);    // NULL unless automodel
 *   ... am->batch.global_batch_size, job->derived[NMC_AUTOMODEL_DERIVED_DATA_PARALLEL_SIZE].i
 *   nmc_job_free(job); nmc_diags_free(&d);
 */
#ifndef NMC_JOB_H
#define NMC_JOB_H
#include "arena.h"
#include "diag.h"
#include "json.h"
#include "schema.gen.h"
#include <stdbool.h>
#include <stdio.h>

/* How the backend was chosen. */
typedef enum {
    NMC_JOB_BACKEND_DEFAULT = 0, /* neither --backend nor "$schema": automodel (the reference default) */
    NMC_JOB_BACKEND_OPTION,      /* opts->backend */
    NMC_JOB_BACKEND_SCHEMA_KEY   /* the top-level "$schema" string */
} nmc_job_backend_source_t;

typedef struct {
    int backend;                /* NMC_BACKEND_*, or -1: from "$schema", else automodel */
    nmc_json_limits_t limits;   /* zero: the JSON defaults (1 MiB, depth 64) */
    bool no_other_backend_hint; /* skip the "this would be a valid <other> job" probe */
} nmc_job_opts_t;

/* A derived value (product, quotient or case table of the backend). */
typedef struct {
    bool defined;   /* false: an operand is missing or a quotient is not exact */
    nmc_lit_t v;    /* NMC_LIT_INT for sizes, NMC_LIT_STRING for output_type etc. */
} nmc_derived_t;

typedef enum { NMC_JOB_VALID = 0, NMC_JOB_INVALID = 1, NMC_JOB_IO_ERROR = 2 } nmc_job_status_t;

typedef struct nmc_job {
    nmc_arena_t *arena;         /* owns everything below */
    const char *file;           /* as given (used in diagnostics) */
    const char *src;            /* file text, NULL on an I/O error */
    size_t src_len;
    const nmc_json_t *doc;      /* parsed document, NULL when the JSON was invalid */
    const nmc_backend_desc_t *backend;
    nmc_job_backend_source_t backend_source;
    bool is_envelope;           /* the file was a request envelope {name, spec, ...} */
    void *envelope;             /* the envelope struct (e.g. nmc_automodel_job_request_t *) or NULL */
    void *spec;                 /* the root struct: nmc_automodel_job_t * / nmc_unsloth_job_t *; NULL when not loaded */
    nmc_derived_t *derived;     /* backend->n_derived entries, indexed by NMC_<B>_DERIVED_* */
    nmc_job_status_t status;
} nmc_job_t;

/* Load and validate a job file. Always sets *out (free it with nmc_job_free) unless out is
 * NULL; appends every finding to `diags` (sorted by position, with a final note when the
 * file would be valid for another backend). opts may be NULL (automatic backend).
 * Returns the status: NMC_JOB_VALID (warnings allowed), NMC_JOB_INVALID, NMC_JOB_IO_ERROR. */
nmc_job_status_t nmc_job_load_file(const char *path, const nmc_job_opts_t *opts, nmc_job_t **out,
                                   nmc_diags_t *diags);
/* Same from memory; `file` names the source in diagnostics (may be NULL). src is copied. */
nmc_job_status_t nmc_job_load_buffer(const char *src, size_t len, const char *file,
                                     const nmc_job_opts_t *opts, nmc_job_t **out, nmc_diags_t *diags);
void nmc_job_free(nmc_job_t *job);

/* Typed views: the root struct when the job is of that backend and loaded, else NULL. */
const nmc_automodel_job_t *nmc_job_automodel(const nmc_job_t *job);
const nmc_unsloth_job_t *nmc_job_unsloth(const nmc_job_t *job);

/* Backend lookup by name ("automodel"); -1 when unknown. */
int nmc_backend_by_name(const char *name);

/* Facts about the model(s) a job names, for the rules marked needs_model ("$model.<name>" in
 * the schema: num_experts, teacher_same_tokenizer, ...). A rule whose fact is missing is
 * skipped. Strings and literals are borrowed for the call. */
typedef struct {
    const char *name;
    nmc_lit_t value;
} nmc_model_fact_t;
typedef struct {
    const nmc_model_fact_t *items;
    size_t n;
} nmc_model_facts_t;

/* Check the model-dependent rules of a loaded job (status VALID or INVALID with a spec).
 * Appends findings to diags; returns the number of errors it added. */
size_t nmc_job_check_model(const nmc_job_t *job, const nmc_model_facts_t *facts, nmc_diags_t *diags);

/* Write the resolved job as pretty JSON: {"spec": {...every default filled...},
 * "derived": {"backend": ..., <derived values>}}. The job must have a loaded spec. */
void nmc_job_explain(const nmc_job_t *job, FILE *out);

#endif
