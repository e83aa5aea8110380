/* job_int.h — internals shared by runtime/job.c (loading, defaults, explain) and
 * runtime/rules.c (reading paths, autofill, derived values, cross-field rules).
 * Not part of the public API.
 */
#ifndef NMC_JOB_INT_H
#define NMC_JOB_INT_H
#include "job.h"

/* A value read through an nmc_ref_t. */
typedef struct {
    bool present;   /* holds a value (not absent, not null) */
    bool is_null;   /* explicit or default null */
    bool given;     /* the user wrote the key */
    bool bad;       /* the written value (or an object on the way) failed validation */
    bool unknown;   /* a model fact that was not supplied, or an undefined derived value */
    bool scalar;    /* v is meaningful (bool/int/float/string/enum); false for lists, objects, JSON */
    nmc_lit_t v;
    /* where the value sits (for positions): the struct holding it (NULL when read from the
     * defaults of an absent object), its descriptor and the field */
    const void *base;
    const nmc_object_desc_t *od;
    const nmc_field_desc_t *f;
} nmc_val_t;

/* Read a path of the job's spec (after defaults). facts may be NULL. */
void nmc_ref_read(const nmc_job_t *job, const nmc_ref_t *r, const nmc_model_facts_t *facts, nmc_val_t *out);

/* 1: the clause holds; 0: it does not; -1: cannot tell (bad field, missing fact). */
int nmc_clause_eval(const nmc_job_t *job, const nmc_clause_t *c, const nmc_model_facts_t *facts);

/* Fill autofill objects, compute derived values, check rules (needs_model == model_pass). */
void nmc_rules_autofill(nmc_job_t *job, void *base, const nmc_object_desc_t *od);
void nmc_rules_derive(nmc_job_t *job);
size_t nmc_rules_check(const nmc_job_t *job, const nmc_model_facts_t *facts, bool model_pass,
                       nmc_diags_t *diags);

/* The object a path step through f continues into: the object, or a union's first object
 * variant; NULL for other kinds. */
const nmc_object_desc_t *nmc_desc_step(const nmc_field_desc_t *f);

/* Fill every default of an object (job.c); used by autofill. */
void nmc_job_fill_defaults(nmc_job_t *job, const nmc_object_desc_t *od, void *base);

/* Source position of a node or key; used to place rule diagnostics. */
typedef struct {
    uint32_t line, col;
    size_t offset;
} nmc_pos_t;

/* Format a literal for messages: 8, 0.5, lora, true, null. */
void nmc_lit_format(const nmc_lit_t *v, char *buf, size_t cap);

#endif
