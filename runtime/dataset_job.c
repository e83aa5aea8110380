/* dataset_job.c — the job fields the dataset pipeline reads (runtime/job.h), turned into
 * nmc_dataset_opts_t. Kept apart from dataset.c because job.h and store.h cannot share a
 * translation unit.
 */
#include "dataset_int.h"
#include "job.h"
#include <stdlib.h>
#include <string.h>

/* ---- job fields --------------------------------------------------------------------------- */
void nmc_dataset_job_refs(const nmc_job_t *job, const char **model, const char **train, const char **valid)
{
    const nmc_automodel_job_t *am = nmc_job_automodel(job);
    const nmc_unsloth_job_t *us = nmc_job_unsloth(job);
    *model = am ? am->model : us ? us->model.name : NULL;
    *train = am ? am->dataset.training : us ? us->dataset.path : NULL;
    *valid = NULL;
    if (am && nmc_field_has(&am->dataset, NMC_AUTOMODEL_DATASET__VALIDATION)) *valid = am->dataset.validation;
    if (us && nmc_field_has(&us->dataset, NMC_UNSLOTH_DATASET__VALIDATION_PATH)) *valid = us->dataset.validation_path;
}

int64_t nmc_dataset_job_micro_batch(const nmc_job_t *job)
{
    const nmc_automodel_job_t *am = nmc_job_automodel(job);
    const nmc_unsloth_job_t *us = nmc_job_unsloth(job);
    return am ? am->batch.micro_batch_size : us ? us->batch.per_device_train_batch_size : 1;
}

int nmc_dataset_check_template(const char *tmpl, const nmc_dataset_opts_t *o, nmc_diags_t *d)
{
    char *lit[3], *col[2];
    const char *why = NULL;
    if (!tmpl) why = "no template given";
    else if (ds_template_parse(tmpl, lit, col, &why) == 0) {
        for (int i = 0; i < 3; i++) free(lit[i]);
        for (int i = 0; i < 2; i++) free(col[i]);
        return 0;
    }
    nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_ERROR, "data-bad-prompt-template", o ? o->job_file : NULL,
                                 o ? o->template_line : 0, o ? o->template_col : 0, o ? o->template_offset : 0,
                                 "dataset.prompt_template \"%s\": %s", tmpl ? tmpl : "", why);
    nmc_diag_set_expected(e, "two placeholders, e.g. \"{question} {answer}\"");
    nmc_diag_set_help(e, "the first placeholder's column is the prompt (no loss), the second the completion "
                         "(trained); both must be columns of every row");
    return -1;
}

static void template_pos(const nmc_json_t *obj, nmc_dataset_opts_t *o)
{
    const nmc_json_member_t *mm = nmc_json_member(obj, "prompt_template");
    if (!mm) return;
    o->template_line = mm->value->line, o->template_col = mm->value->col, o->template_offset = mm->value->offset;
}

int nmc_dataset_opts_from_job(const nmc_job_t *job, nmc_dataset_opts_t *o, nmc_diags_t *d)
{
    memset(o, 0, sizeof *o);
    o->job_file = job->file;
    o->seed = NMC_DATASET_DEFAULT_SEED;
    const nmc_automodel_job_t *am = nmc_job_automodel(job);
    const nmc_unsloth_job_t *us = nmc_job_unsloth(job);
    if (am) {
        o->format = NMC_DS_FMT_AUTO;
        if (nmc_field_has(&am->dataset, NMC_AUTOMODEL_DATASET__PROMPT_TEMPLATE) && am->dataset.prompt_template) {
            o->format = NMC_DS_FMT_TEMPLATE;
            o->prompt_template = am->dataset.prompt_template;
            template_pos(am->dataset.nmc_json, o);
        }
        o->max_seq_length = am->training.max_seq_length;
        o->packing = am->batch.sequence_packing;
        o->pack_size = nmc_field_has(&am->batch, NMC_AUTOMODEL_BATCH__PACKED_SEQUENCE_SIZE)
                           ? am->batch.packed_sequence_size : o->max_seq_length;
        o->shuffle = am->dataset.shuffle;
        if (nmc_field_has(&am->schedule, NMC_AUTOMODEL_SCHEDULE__SEED)) o->seed = (uint64_t)am->schedule.seed;
        if (nmc_field_has(&am->schedule, NMC_AUTOMODEL_SCHEDULE__VALIDATION_SPLIT))
            o->validation_split = am->schedule.validation_split;
    } else if (us) {
        o->format = us->dataset.apply_chat_template ? NMC_DS_FMT_CHAT_AS_TEXT : NMC_DS_FMT_TEXT;
        o->text_field = us->dataset.text_field ? us->dataset.text_field : "text";
        o->max_seq_length = us->model.max_seq_length;
        o->packing = us->dataset.packing;
        o->pack_size = o->max_seq_length;
        o->shuffle = true; /* HF Trainer's RandomSampler */
        if (nmc_field_has(&us->schedule, NMC_UNSLOTH_SCHEDULE__SEED)) o->seed = (uint64_t)us->schedule.seed;
    }
    if (o->format == NMC_DS_FMT_TEMPLATE) return nmc_dataset_check_template(o->prompt_template, o, d);
    return 0;
}

