/* train_plan.c — a loaded job (Automodel or Unsloth) resolved into nmc_train_plan_t: the
 * backend-neutral numbers the training loop needs, plus the refusals (before any weights
 * load) and the notices for what nmc maps to something else.
 *
 * What belongs here: field-to-plan mapping, per-backend rules (epochs vs max_steps,
 * warmup, optimizer names), and the step arithmetic (steps per epoch, total, warmup).
 * docs/training.md is the user-facing account of every decision made here.
 */
#include "train.h"
#include "job.h"
#include <stdlib.h>
#include "schema_rt.h"
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* Automodel leaves schedule.seed null by default: runs then use this fixed seed (and a
 * note says reproducibility is only promised when the seed is set). */
#define NMC_TRAIN_DEFAULT_SEED 42
/* Automodel's reference llm_finetune recipes clip the global grad norm at 1.0; the job
 * schema has no field for it, so nmc uses the same value. */
#define NMC_AUTOMODEL_MAX_GRAD_NORM 1.0

typedef struct {
    const nmc_job_t *job;
    nmc_diags_t *d;
    int errors;
} ctx_t;

/* The spec object of the job document (the root, or "spec" of a request envelope). */
static const nmc_json_t *spec_root(const nmc_job_t *job)
{
    if (!job->doc) return NULL;
    return job->is_envelope ? nmc_json_get(job->doc, "spec") : job->doc;
}

/* Diagnostic at dotted path `path` of the spec, positioned at the value when written. */
static nmc_diag_t *at(ctx_t *c, nmc_severity_t sev, const char *code, const char *path,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static nmc_diag_t *at(ctx_t *c, nmc_severity_t sev, const char *code, const char *path,
                      const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const nmc_json_t *v = spec_root(c->job);
    nmc_path_t np = {.depth = 0};
    const char *s = path;
    while (s && *s) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        nmc_path_push_key(&np, s, len);
        const nmc_json_t *next = NULL;
        if (v && v->kind == NMC_JSON_OBJECT)
            for (size_t i = 0; i < v->u.obj.n; i++)
                if (v->u.obj.members[i].key_len == len &&
                    memcmp(v->u.obj.members[i].key, s, len) == 0)
                    next = v->u.obj.members[i].value;
        v = next;
        s = dot ? dot + 1 : NULL;
    }
    nmc_diag_t *r = nmc_diag_add(c->d, sev, code, c->job->file, v ? v->line : 0, v ? v->col : 0,
                                 v ? v->offset : 0, "%s", msg);
    nmc_diag_set_path(r, &np);
    if (sev == NMC_SEV_ERROR) c->errors++;
    return r;
}

static void unsupported(ctx_t *c, const char *path, const char *what, const char *help)
{
    nmc_diag_t *r = at(c, NMC_SEV_ERROR, "train-unsupported", path, "%s is not supported by nmc yet", what);
    nmc_diag_set_help(r, "%s", help);
}

static void note(ctx_t *c, const char *code, const char *path, const char *msg)
{
    at(c, NMC_SEV_NOTE, code, path, "%s", msg);
}

static const char *const *copy_list(nmc_arena_t *a, nmc_str_list_t l, int *n)
{
    *n = (int)l.n;
    if (!l.v || l.n == 0) return NULL;
    const char **out = nmc_arena_alloc(a, l.n * sizeof *out);
    for (size_t i = 0; i < l.n; i++) out[i] = nmc_arena_strdup(a, l.v[i]);
    return out;
}

/* ---- Automodel ---------------------------------------------------------------------------- */
static void automodel_lora(ctx_t *c, nmc_arena_t *a, const nmc_automodel_lora_t *l, uint64_t seed,
                           nmc_lora_cfg_t *cfg)
{
    nmc_lora_cfg_default(cfg);
    cfg->match = NMC_LORA_MATCH_GLOB;
    cfg->seed = seed;
    if (!l) return;
    cfg->r = (int)l->rank;
    cfg->alpha = (double)l->alpha;
    cfg->dropout = l->dropout;
    cfg->target_modules = copy_list(a, l->target_modules, &cfg->n_target_modules);
    cfg->exclude_modules = copy_list(a, l->exclude_modules, &cfg->n_exclude_modules);
}

/* Data parallelism over every GPU is implemented (docs/distributed.md); splitting the
 * model itself is not: each size above 1 is refused naming its field. */
static void model_parallel_refusals(ctx_t *c, const nmc_automodel_parallelism_t *par)
{
    static const struct { const char *field, *what; } kinds[] = {
        {"parallelism.tensor_parallel_size", "tensor parallelism"},
        {"parallelism.pipeline_parallel_size", "pipeline parallelism"},
        {"parallelism.context_parallel_size", "context parallelism"},
        {"parallelism.expert_parallel_size", "expert parallelism"},
    };
    int64_t sizes[] = {par->tensor_parallel_size, par->pipeline_parallel_size, par->context_parallel_size,
                       nmc_field_null(par, NMC_AUTOMODEL_PARALLELISM__EXPERT_PARALLEL_SIZE) ? 1
                                                                                        : par->expert_parallel_size};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (sizes[i] <= 1) continue;
        nmc_diag_t *r = at(c, NMC_SEV_ERROR, "train-unsupported", kinds[i].field,
                           "%s (%s %lld) is not supported by nmc yet", kinds[i].what,
                           kinds[i].field, (long long)sizes[i]);
        nmc_diag_set_help(r, "set %s to 1: nmc trains data-parallel, one full model replica per "
                             "GPU (num_gpus_per_node × num_nodes ranks)", kinds[i].field);
    }
}

static void automodel_refusals(ctx_t *c, const nmc_automodel_job_t *j)
{
    const nmc_automodel_training_t *t = &j->training;
    if (t->training_type == NMC_AUTOMODEL_TRAINING_TRAINING_TYPE_DISTILLATION)
        unsupported(c, "training.training_type", "knowledge distillation",
                    "train with training_type \"sft\" for now; distillation is planned");
    if (t->recipe == NMC_AUTOMODEL_TRAINING_RECIPE_BI_ENCODER ||
        t->recipe == NMC_AUTOMODEL_TRAINING_RECIPE_CROSS_ENCODER)
        unsupported(c, "training.recipe", "the retrieval recipes (bi_encoder, cross_encoder)",
                    "nmc trains causal LMs only: use recipe \"sft\" or \"auto\"");
    if (t->mtp) unsupported(c, "training.mtp", "multi-token prediction", "remove training.mtp");
    model_parallel_refusals(c, &j->parallelism);
    if (!nmc_field_null(t, NMC_AUTOMODEL_TRAINING__PRECISION) &&
        (t->precision == NMC_AUTOMODEL_TRAINING_PRECISION_FP8 ||
         t->precision == NMC_AUTOMODEL_TRAINING_PRECISION_FP16))
        note(c, "train-precision-cpu", "training.precision",
             "nmc computes in fp32 on the CPU and in bf16 (fp32 accumulation) on CUDA; fp16/fp8 training is not implemented");
}

static void automodel_plan(ctx_t *c, const nmc_automodel_job_t *j, nmc_arena_t *a, nmc_train_plan_t *p)
{
    automodel_refusals(c, j);
    const nmc_automodel_schedule_t *s = &j->schedule;
    const nmc_automodel_optimizer_t *o = &j->optimizer;
    const nmc_derived_t *dv = c->job->derived;
    p->model_ref = j->model;
    p->train_ref = j->dataset.training;
    p->val_ref = j->dataset.validation;
    p->validation_split = nmc_field_null(s, NMC_AUTOMODEL_SCHEDULE__VALIDATION_SPLIT) ? 0 : s->validation_split;
    p->shuffle = j->dataset.shuffle;
    p->prompt_template = j->dataset.prompt_template;
    p->packing = j->batch.sequence_packing;
    p->packed_size = nmc_field_null(&j->batch, NMC_AUTOMODEL_BATCH__PACKED_SEQUENCE_SIZE) ? 0 : j->batch.packed_sequence_size;
    p->max_seq_len = j->training.max_seq_length;
    p->micro_batch = j->batch.micro_batch_size;
    p->accum = dv[NMC_AUTOMODEL_DERIVED_GRADIENT_ACCUMULATION_STEPS].defined
                   ? dv[NMC_AUTOMODEL_DERIVED_GRADIENT_ACCUMULATION_STEPS].v.i : 1;
    p->epochs = s->epochs;
    p->max_steps = nmc_field_null(s, NMC_AUTOMODEL_SCHEDULE__MAX_STEPS) ? 0 : s->max_steps;
    p->max_steps_overrides = false;
    p->seed_given = !nmc_field_null(s, NMC_AUTOMODEL_SCHEDULE__SEED) && nmc_field_has(s, NMC_AUTOMODEL_SCHEDULE__SEED);
    p->seed = p->seed_given ? (uint64_t)s->seed : NMC_TRAIN_DEFAULT_SEED;
    if (!p->seed_given)
        note(c, "train-seed-default", "schedule.seed",
             "schedule.seed is null: nmc uses seed 42; set schedule.seed to make runs reproducible by contract");
    p->val_interval = nmc_field_null(s, NMC_AUTOMODEL_SCHEDULE__VAL_CHECK_INTERVAL) ? 0 : s->val_check_interval;
    p->logging_steps = 1;
    p->recompute = j->training.activation_checkpointing;

    p->lr = o->learning_rate;
    p->optim.beta1 = o->adam_beta1, p->optim.beta2 = o->adam_beta2, p->optim.eps = o->adam_eps;
    p->optim.weight_decay = o->weight_decay;
    /* auto = torch Adam for SFT; FusedAdam (Transformer Engine) defaults to adam_w_mode. */
    p->optim.kind = (o->optimizer == NMC_AUTOMODEL_OPTIMIZER_OPTIMIZER_ADAMW ||
                     o->optimizer == NMC_AUTOMODEL_OPTIMIZER_OPTIMIZER_FUSEDADAM)
                        ? NMC_OPTIM_ADAMW : NMC_OPTIM_ADAM_L2;
    p->max_grad_norm = NMC_AUTOMODEL_MAX_GRAD_NORM;
    p->warmup_steps = o->warmup_steps;
    p->min_lr = nmc_field_null(o, NMC_AUTOMODEL_OPTIMIZER__MIN_LEARNING_RATE) ? 0.0 : o->min_learning_rate;
    p->sched = o->lr_decay_style == NMC_AUTOMODEL_OPTIMIZER_LR_DECAY_STYLE_LINEAR ? NMC_SCHED_NEMO_LINEAR
             : o->lr_decay_style == NMC_AUTOMODEL_OPTIMIZER_LR_DECAY_STYLE_CONSTANT ? NMC_SCHED_NEMO_CONSTANT
             : NMC_SCHED_NEMO_COSINE;

    int ft = j->training.finetuning_type;
    bool merge = j->training.lora && j->training.lora->merge;
    if (ft == NMC_AUTOMODEL_TRAINING_FINETUNING_TYPE_ALL_WEIGHTS) {
        p->mode = NMC_TRAIN_FULL, p->output = NMC_OUTPUT_FULL;
    } else {
        p->mode = NMC_TRAIN_LORA;
        p->output = (ft == NMC_AUTOMODEL_TRAINING_FINETUNING_TYPE_LORA_MERGED || merge) ? NMC_OUTPUT_MERGED
                                                                                      : NMC_OUTPUT_ADAPTER;
        automodel_lora(c, a, j->training.lora, p->seed, &p->lora);
    }
    if (j->output) p->output_name = j->output->name, p->output_description = j->output->description;
}

/* ---- Unsloth ------------------------------------------------------------------------------ */
static void unsloth_layers(nmc_arena_t *a, const nmc_json_t *v, nmc_lora_cfg_t *cfg)
{
    if (!v || v->kind == NMC_JSON_NULL) return;
    if (v->kind == NMC_JSON_NUMBER) {
        int *one = nmc_arena_alloc(a, sizeof *one);
        *one = (int)v->u.num.i;
        cfg->layers_to_transform = one, cfg->n_layers_to_transform = 1;
        return;
    }
    if (v->kind != NMC_JSON_ARRAY) return;
    int *l = nmc_arena_alloc(a, (v->u.arr.n ? v->u.arr.n : 1) * sizeof *l);
    for (size_t i = 0; i < v->u.arr.n; i++) l[i] = (int)v->u.arr.items[i]->u.num.i;
    cfg->layers_to_transform = l, cfg->n_layers_to_transform = (int)v->u.arr.n;
}

static nmc_lora_init_t unsloth_init(const nmc_json_t *v)
{
    if (!v || v->kind == NMC_JSON_NULL) return NMC_LORA_INIT_DEFAULT;
    if (v->kind == NMC_JSON_BOOL) return v->u.boolean ? NMC_LORA_INIT_DEFAULT : NMC_LORA_INIT_RANDOM;
    if (v->kind != NMC_JSON_STRING) return NMC_LORA_INIT_DEFAULT;
    if (strcmp(v->u.str.s, "gaussian") == 0) return NMC_LORA_INIT_GAUSSIAN;
    if (strcmp(v->u.str.s, "pissa") == 0) return NMC_LORA_INIT_PISSA;
    if (strcmp(v->u.str.s, "olora") == 0) return NMC_LORA_INIT_OLORA;
    return NMC_LORA_INIT_LOFTQ;
}

static void unsloth_lora(nmc_arena_t *a, const nmc_unsloth_lora_t *l, nmc_lora_cfg_t *cfg)
{
    nmc_lora_cfg_default(cfg);
    cfg->match = NMC_LORA_MATCH_SUFFIX;
    if (!l) return;
    cfg->r = (int)l->rank;
    cfg->alpha = (double)l->alpha;
    cfg->dropout = l->dropout;
    cfg->use_rslora = l->use_rslora;
    cfg->use_dora = l->use_dora;
    cfg->target_modules = copy_list(a, l->target_modules, &cfg->n_target_modules);
    cfg->modules_to_save = copy_list(a, l->modules_to_save, &cfg->n_modules_to_save);
    cfg->bias = l->bias == NMC_UNSLOTH_LORA_BIAS_ALL ? NMC_LORA_BIAS_ALL
              : l->bias == NMC_UNSLOTH_LORA_BIAS_LORA_ONLY ? NMC_LORA_BIAS_LORA_ONLY : NMC_LORA_BIAS_NONE;
    cfg->seed = (uint64_t)l->random_state;
    cfg->has_loftq_config = l->loftq_config && l->loftq_config->kind != NMC_JSON_NULL;
    cfg->has_layer_replication = l->layer_replication && l->layer_replication->kind != NMC_JSON_NULL;
    unsloth_layers(a, l->layers_to_transform.json, cfg);
    cfg->init = unsloth_init(l->init_lora_weights.json);
}

static void unsloth_optim(ctx_t *c, const nmc_unsloth_optimizer_t *o, nmc_train_plan_t *p)
{
    p->lr = o->learning_rate;
    p->optim.beta1 = o->adam_beta1, p->optim.beta2 = o->adam_beta2, p->optim.eps = o->adam_epsilon;
    p->optim.weight_decay = o->weight_decay;
    p->optim.kind = NMC_OPTIM_ADAMW;
    if (o->optim == NMC_UNSLOTH_OPTIMIZER_OPTIM_SGD) p->optim.kind = NMC_OPTIM_SGD;
    if (o->optim == NMC_UNSLOTH_OPTIMIZER_OPTIM_ADAMW_8BIT ||
        o->optim == NMC_UNSLOTH_OPTIMIZER_OPTIM_PAGED_ADAMW_8BIT)
        note(c, "train-optim-8bit", "optimizer.optim",
             "8-bit AdamW is not implemented: nmc uses AdamW with fp32 state (same update, larger state)");
    p->max_grad_norm = o->max_grad_norm;
    p->label_smoothing = o->label_smoothing_factor;
    p->neftune_alpha = nmc_field_null(o, NMC_UNSLOTH_OPTIMIZER__NEFTUNE_NOISE_ALPHA) ? 0.0 : o->neftune_noise_alpha;
}

static void unsloth_schedule(ctx_t *c, const nmc_unsloth_schedule_t *s, nmc_train_plan_t *p)
{
    p->epochs = s->epochs;
    p->max_steps = nmc_field_null(s, NMC_UNSLOTH_SCHEDULE__MAX_STEPS) ? 0 : s->max_steps;
    p->max_steps_overrides = true;
    p->warmup_steps = s->warmup_steps;
    p->warmup_ratio = nmc_field_null(s, NMC_UNSLOTH_SCHEDULE__WARMUP_RATIO) ? 0.0 : s->warmup_ratio;
    static const nmc_sched_kind_t kinds[] = {NMC_SCHED_LINEAR, NMC_SCHED_COSINE, NMC_SCHED_CONSTANT,
                                             NMC_SCHED_CONSTANT_WARMUP, NMC_SCHED_COSINE_RESTARTS};
    p->sched = kinds[s->lr_scheduler_type];
    p->num_cycles = p->sched == NMC_SCHED_COSINE_RESTARTS ? 1.0 : 0.5;
    const nmc_json_t *kw = s->lr_scheduler_kwargs;
    if (kw && kw->kind == NMC_JSON_OBJECT) {
        for (size_t i = 0; i < kw->u.obj.n; i++) {
            const nmc_json_member_t *mb = &kw->u.obj.members[i];
            bool cosine = p->sched == NMC_SCHED_COSINE || p->sched == NMC_SCHED_COSINE_RESTARTS;
            if (strcmp(mb->key, "num_cycles") == 0 && cosine && mb->value->kind == NMC_JSON_NUMBER &&
                mb->value->u.num.d > 0) {
                p->num_cycles = mb->value->u.num.d;
                continue;
            }
            nmc_diag_t *r = at(c, NMC_SEV_ERROR, "train-scheduler-kwarg", "schedule.lr_scheduler_kwargs",
                               "lr_scheduler_kwargs key \"%s\" is not supported with lr_scheduler_type %s",
                               mb->key, nmc_sched_name(p->sched));
            nmc_diag_set_help(r, "nmc reads only num_cycles (a positive number) for cosine and "
                                 "cosine_with_restarts; remove other keys");
        }
    }
    p->logging_steps = s->logging_steps;
    p->save_steps = nmc_field_null(s, NMC_UNSLOTH_SCHEDULE__SAVE_STEPS) ? 0 : s->save_steps;
    p->eval_steps = nmc_field_null(s, NMC_UNSLOTH_SCHEDULE__EVAL_STEPS) ? 0 : s->eval_steps;
    p->seed = (uint64_t)s->seed;
    p->seed_given = true;
}

static void unsloth_plan(ctx_t *c, const nmc_unsloth_job_t *j, nmc_arena_t *a, nmc_train_plan_t *p)
{
    p->model_ref = j->model.name;
    p->train_ref = j->dataset.path;
    p->val_ref = j->dataset.validation_path;
    p->shuffle = true;
    p->text_field = j->dataset.text_field;
    p->apply_chat_template = j->dataset.apply_chat_template;
    p->packing = j->dataset.packing;
    p->max_seq_len = j->model.max_seq_length;
    p->micro_batch = j->batch.per_device_train_batch_size;
    p->accum = j->batch.gradient_accumulation_steps;
    p->recompute = j->training.use_gradient_checkpointing != NMC_UNSLOTH_TRAINING_USE_GRADIENT_CHECKPOINTING_FALSE_;
    if (j->model.load_in_4bit || j->model.load_in_8bit)
        note(c, "train-quantized-load", j->model.load_in_4bit ? "model.load_in_4bit" : "model.load_in_8bit",
             "quantized loading is not implemented: nmc trains the unquantized base (fp32 on the CPU, bf16 on CUDA)");
    unsloth_optim(c, &j->optimizer, p);
    unsloth_schedule(c, &j->schedule, p);
    if (j->training.finetuning_type == NMC_UNSLOTH_TRAINING_FINETUNING_TYPE_ALL_WEIGHTS) {
        p->mode = NMC_TRAIN_FULL, p->output = NMC_OUTPUT_FULL;
    } else {
        p->mode = NMC_TRAIN_LORA;
        unsloth_lora(a, j->training.lora, &p->lora);
        int sm = j->output ? (int)j->output->save_method : NMC_UNSLOTH_OUTPUT_SAVE_METHOD_LORA;
        p->output = sm == NMC_UNSLOTH_OUTPUT_SAVE_METHOD_LORA ? NMC_OUTPUT_ADAPTER : NMC_OUTPUT_MERGED;
        if (sm == NMC_UNSLOTH_OUTPUT_SAVE_METHOD_MERGED_4BIT)
            unsupported(c, "output.save_method", "save_method \"merged_4bit\" (4-bit quantized export)",
                        "use \"merged_16bit\" for a merged model, or \"lora\" for the adapter");
    }
    if (j->output) p->output_name = j->output->name, p->output_description = j->output->description;
}

/* ---- common ------------------------------------------------------------------------------- */
static void common_notes(ctx_t *c, const nmc_integrations_t *in, const nmc_union_t *deploy)
{
    if (in && (in->wandb || in->mlflow))
        note(c, "train-integration-ignored", "integrations",
             "experiment tracking (W&B / MLflow) is not implemented: metrics go to metrics.jsonl in the run directory");
    if (deploy->json && deploy->json->kind != NMC_JSON_NULL)
        note(c, "train-deployment-ignored", "deployment_config",
             "deployment is not part of nmc train: the result is only published to the local store");
}

int nmc_train_plan_from_job(const nmc_job_t *job, nmc_arena_t *a, nmc_train_plan_t *p, nmc_diags_t *d)
{
    memset(p, 0, sizeof *p);
    ctx_t c = {.job = job, .d = d};
    if (!job || !job->spec || job->status != NMC_JOB_VALID) {
        nmc_diag_add(d, NMC_SEV_ERROR, "train-job-invalid", job ? job->file : NULL, 0, 0, 0,
                     "the job is not valid; fix the errors `nmc validate` reports first");
        return -1;
    }
    const nmc_automodel_job_t *am = nmc_job_automodel(job);
    const nmc_unsloth_job_t *un = nmc_job_unsloth(job);
    if (am) {
        p->backend = NMC_BACKEND_AUTOMODEL;
        p->job_name = am->name;
        automodel_plan(&c, am, a, p);
        common_notes(&c, am->integrations, &am->deployment_config);
    } else {
        p->backend = NMC_BACKEND_UNSLOTH;
        p->job_name = un->name;
        unsloth_plan(&c, un, a, p);
        common_notes(&c, un->integrations, &un->deployment_config);
    }
    if (!p->job_name && job->is_envelope && job->envelope) {
        /* both request structs start with `name` */
        p->job_name = am ? ((const nmc_automodel_job_request_t *)job->envelope)->name
                         : ((const nmc_unsloth_job_request_t *)job->envelope)->name;
    }
    if (p->mode == NMC_TRAIN_LORA && nmc_lora_check_supported(&p->lora, d) != 0) c.errors++;
    if (p->micro_batch < 1) p->micro_batch = 1;
    if (p->accum < 1) p->accum = 1;
    if (p->logging_steps < 1) p->logging_steps = 1;
    return c.errors ? -1 : 0;
}

/* ---- step arithmetic ---------------------------------------------------------------------- */
int64_t nmc_train_steps_per_epoch(int64_t batches, int64_t accum)
{
    if (batches <= 0) return 0;
    return (batches + accum - 1) / accum;
}

int64_t nmc_train_total_steps(const nmc_train_plan_t *p, int64_t batches, int64_t *epochs_out)
{
    int64_t spe = nmc_train_steps_per_epoch(batches, p->accum);
    int64_t total, epochs = p->epochs;
    if (spe == 0) total = 0, epochs = 0;
    else if (p->max_steps > 0 && p->max_steps_overrides) {
        total = p->max_steps;
        epochs = (total + spe - 1) / spe;
    } else {
        total = p->epochs * spe;
        if (p->max_steps > 0 && p->max_steps < total) {
            total = p->max_steps;
            epochs = (total + spe - 1) / spe;
        }
    }
    if (epochs_out) *epochs_out = epochs;
    return total;
}

int64_t nmc_train_warmup(const nmc_train_plan_t *p, int64_t total)
{
    if (p->warmup_steps > 0) return p->warmup_steps;
    if (p->warmup_ratio > 0) return (int64_t)ceil((double)total * p->warmup_ratio);
    return 0;
}

void nmc_train_sched(const nmc_train_plan_t *p, int64_t total, nmc_sched_t *s)
{
    *s = (nmc_sched_t){.kind = p->sched, .base_lr = p->lr, .min_lr = p->min_lr,
                       .warmup = nmc_train_warmup(p, total), .total = total,
                       .num_cycles = p->num_cycles > 0 ? p->num_cycles : 0.5};
}

int nmc_train_load_job(const char *path, const char *backend, nmc_arena_t *a,
                       nmc_train_plan_t *p, char **src, size_t *src_len, char **explain,
                       struct nmc_job **job_out, nmc_diags_t *d)
{
    *src = NULL, *src_len = 0, *explain = NULL;
    if (job_out) *job_out = NULL;
    nmc_job_opts_t opts = {.backend = -1};
    if (backend) {
        opts.backend = nmc_backend_by_name(backend);
        if (opts.backend < 0) {
            nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-backend-unknown", NULL, 0, 0, 0,
                                         "unknown backend '%s'", backend);
            nmc_diag_set_help(r, "use --backend automodel or --backend unsloth");
            return 2;
        }
    }
    nmc_job_t *job = NULL;
    nmc_job_status_t st = nmc_job_load_file(path, &opts, &job, d);
    if (job && job->src) {
        *src = malloc(job->src_len + 1);
        if (!*src) abort();
        memcpy(*src, job->src, job->src_len);
        (*src)[job->src_len] = '\0';
        *src_len = job->src_len;
    }
    int rc = st == NMC_JOB_IO_ERROR ? 2 : st == NMC_JOB_INVALID ? 1 : 0;
    if (rc == 0 && nmc_train_plan_from_job(job, a, p, d) != 0) rc = 1;
    if (rc == 0) {
        /* strings of the plan that point into the job must outlive it */
        const char **strs[] = {&p->job_name, &p->model_ref, &p->train_ref, &p->val_ref,
                               &p->prompt_template, &p->text_field, &p->output_name,
                               &p->output_description};
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
            if (*strs[i]) *strs[i] = nmc_arena_strdup(a, *strs[i]);
        size_t n = 0;
        FILE *f = open_memstream(explain, &n);
        if (!f) abort();
        nmc_job_explain(job, f);
        fclose(f);
    }
    if (rc == 0 && job_out) *job_out = job;
    else nmc_job_free(job);
    return rc;
}
