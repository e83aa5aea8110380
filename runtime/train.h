/* train.h — the trainer: a resolved job becomes a training plan; the plan drives the
 * optimizer, the learning-rate schedule, gradient accumulation, clipping, validation,
 * checkpoints (exact resume) and the run directory. `nmc train` (runtime/cmd_train.c) is
 * the command on top; docs/training.md documents every rule and formula.
 *
 * Files: train.c (the loop), train_plan.c (job -> plan, refusals and notices),
 * train_optim.c (Adam/AdamW/SGD over model params, grad norm and clipping),
 * train_dp.c (data parallelism: gradient all-reduce, ZeRO-1 sharded optimizer state),
 * train_sched.c (learning-rate schedules), train_ckpt.c (checkpoints), train_run.c
 * (run directory: status.json, train.log, metrics.jsonl), train_output.c (adapter /
 * merged / full model into the store), cmd_train.c (CLI).
 *
 * Library code: returns status, appends diagnostics (codes train-*), never prints; the
 * progress display is a callback the CLI supplies.
 */
#ifndef NMC_TRAIN_H
#define NMC_TRAIN_H
#include "arena.h"
#include "batch.h"
#include "comm.h"
#include "diag.h"
#include "lora.h"
#include "model.h"
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* job.h and store.h cannot share a translation unit (both define nmc_store_t), so the
 * trainer names the job by its struct tag. */
struct nmc_job;

/* ---- learning-rate schedules (train_sched.c) ------------------------------------------ */
typedef enum {
    NMC_SCHED_LINEAR = 0,        /* transformers get_scheduler("linear") */
    NMC_SCHED_COSINE,            /* "cosine" (num_cycles 0.5) */
    NMC_SCHED_CONSTANT,          /* "constant" */
    NMC_SCHED_CONSTANT_WARMUP,   /* "constant_with_warmup" */
    NMC_SCHED_COSINE_RESTARTS,   /* "cosine_with_restarts" (num_cycles, default 1) */
    NMC_SCHED_NEMO_COSINE,       /* Automodel lr_decay_style cosine (min_lr floor) */
    NMC_SCHED_NEMO_LINEAR,       /* Automodel lr_decay_style linear */
    NMC_SCHED_NEMO_CONSTANT,     /* Automodel lr_decay_style constant */
} nmc_sched_kind_t;

typedef struct {
    nmc_sched_kind_t kind;
    double base_lr;     /* peak learning rate */
    double min_lr;      /* NEMO_* only: floor of the decay (0 = decay to 0) */
    int64_t warmup;     /* linear warmup steps */
    int64_t total;      /* optimizer steps of the whole run (decay length) */
    double num_cycles;  /* cosine: 0.5; cosine_with_restarts: 1 unless given */
} nmc_sched_t;

/* Learning rate used by the optimizer step that follows `done` completed steps (the
 * LambdaLR / Megatron scheduler position: step k, 1-based, uses nmc_sched_lr(s, k - 1)).
 * Formulas in docs/training.md; computed in double as Python does. */
double nmc_sched_lr(const nmc_sched_t *s, int64_t done);
const char *nmc_sched_name(nmc_sched_kind_t k);

/* ---- optimizer (train_optim.c) ----------------------------------------------------------- */
typedef enum {
    NMC_OPTIM_ADAMW = 0, /* torch.optim.AdamW: decoupled decay */
    NMC_OPTIM_ADAM_L2,   /* torch.optim.Adam with weight_decay: coupled L2 (g += wd p) */
    NMC_OPTIM_SGD,       /* torch.optim.SGD, no momentum: coupled L2, p -= lr g */
} nmc_optim_kind_t;

typedef struct {
    nmc_optim_kind_t kind;
    double beta1, beta2, eps;
    double weight_decay; /* applied only to params with weight_decay == true (HF rule) */
} nmc_optim_cfg_t;

/* State over the model's trainable parameters: Adam moments m, v (fp32 device buffers,
 * zero until the first step) and the step count.
 * Data parallelism (train_dp.c, after nmc_optim_set_dp): the trainable parameters are laid
 * end to end in model order as one flat vector of `numel` floats (param i at offs[i]); the
 * bucket `flat` (world × chunk floats, chunk = ceil(numel / world), tail zero) carries
 * gradients and parameters through the communicator. With ZeRO-1, rank r owns flat
 * indices [r·chunk, r·chunk + chunk) and keeps moments only for them (zm, zv); m / v are
 * then NULL. */
typedef struct {
    nmc_optim_cfg_t cfg;
    nmc_dev_t *dev;
    nmc_model_t *model;
    nmc_param_t **params;  /* trainable params in model order */
    size_t n;
    float **m, **v;        /* [n] device buffers (NULL for SGD, and each NULL with ZeRO-1) */
    long step;             /* optimizer steps taken (1-based step of the last update) */
    /* multi-tensor tables for dev->adamw_many / sumsq_many (NULL when the device has none):
     * built once, the same host arrays every step (a device may cache their contents) */
    nmc_dev_adam_t *mt_adam;  /* [n], NULL for SGD and with ZeRO-1 */
    const float **mt_g;       /* [n] gradients */
    size_t *mt_n;             /* [n] element counts */
    /* data parallelism (all zero / NULL for one process) */
    nmc_comm_t *comm;      /* NULL: one process */
    bool zero1;            /* optimizer state sharded by flat index */
    size_t numel, chunk;   /* trainable elements in total; shard length ceil(numel / world) */
    size_t *offs;          /* [n] flat offset of each param */
    float *flat;           /* device [world × chunk] bucket */
    float *zm, *zv;        /* device [chunk] ZeRO-1 moments of this rank's shard */
    float *gm, *gv;        /* device [world × chunk] gathered moments while a checkpoint is
                              written (nmc_optim_gather_state), else NULL */
} nmc_optim_t;

int nmc_optim_init(nmc_optim_t *o, nmc_model_t *m, const nmc_optim_cfg_t *cfg, nmc_diags_t *d);
void nmc_optim_free(nmc_optim_t *o);
/* One update of every trainable param with the gradients now in param->grad. */
int nmc_optim_step(nmc_optim_t *o, double lr, nmc_diags_t *d);
/* Global L2 norm of every trainable gradient (sum of squares in double). */
int nmc_grad_norm(nmc_optim_t *o, double *norm, nmc_diags_t *d);
/* torch.nn.utils.clip_grad_norm_: when max_norm > 0 and norm > max_norm, scale every
 * gradient by max_norm / (norm + 1e-6). `norm` is the value nmc_grad_norm gave. */
int nmc_grad_clip(nmc_optim_t *o, double norm, double max_norm, nmc_diags_t *d);

/* ---- data parallelism (train_dp.c) --------------------------------------------------------
 * Every function here is COLLECTIVE when o->comm has more than one rank: every rank calls
 * it in the same order. A failed collective gives train-comm-failed naming the operation
 * and, from the communicator, the ranks that did not arrive; the communicator is then
 * unusable (the caller ends the job). */

/* Attach communicator c to an initialized optimizer: flat layout, bucket, and with zero1
 * the shard moments (the per-param moments are freed). c NULL: a no-op (one process; the
 * trainer passes NULL for the "single" communicator). */
int nmc_optim_set_dp(nmc_optim_t *o, nmc_comm_t *c, bool zero1, nmc_diags_t *d);
/* Broadcast rank 0's trainable parameters to every rank (identical replicas at start). */
int nmc_dp_broadcast_params(nmc_optim_t *o, nmc_diags_t *d);
/* Sum the gradients over ranks in one bucket: plain DP all-reduces into every param's
 * grad; ZeRO-1 reduce-scatters, leaving this rank's shard of the summed gradient in
 * o->flat + rank·chunk. Then *norm = the global L2 norm of the summed gradient. */
int nmc_dp_reduce_grads(nmc_optim_t *o, double *norm, nmc_diags_t *d);
/* Clipping and the update after nmc_dp_reduce_grads: plain DP = nmc_grad_clip +
 * nmc_optim_step on every rank; ZeRO-1 = clip and update this rank's shard, then
 * all-gather the parameters. */
int nmc_dp_clip_and_step(nmc_optim_t *o, double norm, double max_norm, double lr,
                         nmc_diags_t *d);
/* ZeRO-1: all-gather the shard moments into o->gm / o->gv (full, flat order) for a
 * checkpoint; nmc_optim_release_state frees them. A no-op without ZeRO-1. */
int nmc_optim_gather_state(nmc_optim_t *o, nmc_diags_t *d);
void nmc_optim_release_state(nmc_optim_t *o);
/* A collective failure as a diagnostic: "<what>: <comm->last_error()>". Returns -1. */
int nmc_dp_fail(nmc_optim_t *o, const char *what, nmc_diags_t *d);

/* ---- the plan: a job resolved into what the loop needs (train_plan.c) ------------------- */
typedef enum {
    NMC_OUTPUT_ADAPTER = 0, /* PEFT adapter under the base model entity */
    NMC_OUTPUT_MERGED,      /* LoRA folded into a new full model entity */
    NMC_OUTPUT_FULL,        /* every weight: a new model entity */
} nmc_output_kind_t;

typedef struct {
    int backend;                 /* NMC_BACKEND_* */
    const char *job_name;        /* spec.name / envelope name, NULL when neither */
    const char *model_ref;       /* base Model Entity */
    const char *train_ref;       /* training fileset */
    const char *val_ref;         /* validation fileset or NULL */
    double validation_split;     /* Automodel hold-out when val_ref is NULL (0: none) */
    bool shuffle;                /* reshuffle each epoch */
    const char *prompt_template; /* Automodel dataset.prompt_template or NULL */
    const char *text_field;      /* Unsloth dataset.text_field or NULL */
    bool apply_chat_template;    /* Unsloth */
    bool packing;                /* sequence packing requested */
    int64_t packed_size;         /* Automodel packed_sequence_size, 0 = estimate */

    nmc_train_mode_t mode;       /* NMC_TRAIN_LORA or NMC_TRAIN_FULL */
    nmc_lora_cfg_t lora;         /* mode LORA; strings in the plan's arena */
    int64_t max_seq_len;
    int64_t micro_batch;         /* samples per forward/backward */
    int64_t accum;               /* micro-batches per optimizer step */

    int64_t epochs;
    int64_t max_steps;           /* 0 = none */
    bool max_steps_overrides;    /* Unsloth: max_steps replaces epochs; Automodel: min */

    nmc_optim_cfg_t optim;
    double lr;
    double max_grad_norm;        /* 0 = no clipping */
    double label_smoothing;
    double neftune_alpha;        /* 0 = off */
    nmc_sched_kind_t sched;
    int64_t warmup_steps;
    double warmup_ratio;         /* used when warmup_steps is 0 (Unsloth) */
    double min_lr;
    double num_cycles;

    uint64_t seed;
    bool seed_given;
    int64_t logging_steps;
    int64_t save_steps;          /* 0 = at validation points / epoch ends (Automodel), end only (Unsloth) */
    int64_t eval_steps;          /* Unsloth; 0 = once per epoch when validation exists */
    double val_interval;         /* Automodel val_check_interval, 0 = unset */
    bool recompute;              /* activation checkpointing */
    int dp_rank, dp_world;       /* data-parallel rank / ranks (set by the caller, not the
                                    job; 0 / 0 = one process): shards the training data */

    nmc_output_kind_t output;
    const char *output_name;     /* NULL: generated (see docs/training.md) */
    const char *output_description;
} nmc_train_plan_t;

/* Resolve a loaded, valid job into *p (strings in arena a). Refuses what nmc does not
 * implement (train-unsupported naming the field: distillation, more than one GPU,
 * merged_4bit, retrieval recipes, MTP, LoRA options via nmc_lora_check_supported) and
 * adds notes for what it maps (8-bit optimizers -> fp32 AdamW, 4/8-bit loading -> the
 * unquantized base, precision on the CPU, unset seed, integrations). Returns 0 or -1. */
int nmc_train_plan_from_job(const struct nmc_job *job, nmc_arena_t *a, nmc_train_plan_t *p,
                            nmc_diags_t *d);

/* Load job file `path` (backend NULL = automatic, else "automodel" / "unsloth"), check it
 * and resolve the plan. Diagnostics (including the job's own) go to d; *src / *src_len
 * receive the job text for rendering (malloc'd, may be NULL on I/O errors). *explain
 * (malloc'd) receives nmc_job_explain's output (the resolved spec). Returns 0, 1 when the
 * job is invalid or refused, 2 on I/O errors (the CLI exit codes). */
int nmc_train_load_job(const char *path, const char *backend, nmc_arena_t *a,
                       nmc_train_plan_t *p, char **src, size_t *src_len, char **explain,
                       struct nmc_job **job_out, nmc_diags_t *d);
/* = nmc_job_free (runtime/job.h), for files that cannot include job.h. */
void nmc_job_free(struct nmc_job *job);


/* Steps of one epoch with `batches` micro-batches: ceil(batches / accum) (HF rule: the
 * last step of an epoch takes the remaining micro-batches). */
int64_t nmc_train_steps_per_epoch(int64_t batches, int64_t accum);
/* Total optimizer steps per the backend's rule; *epochs_out = epochs actually run. */
int64_t nmc_train_total_steps(const nmc_train_plan_t *p, int64_t batches, int64_t *epochs_out);
/* Warmup steps: warmup_steps, else ceil(warmup_ratio * total). */
int64_t nmc_train_warmup(const nmc_train_plan_t *p, int64_t total);
/* The schedule of the plan for a run of `total` steps. */
void nmc_train_sched(const nmc_train_plan_t *p, int64_t total, nmc_sched_t *s);

/* ---- data sources ----------------------------------------------------------------------- */
/* A source of micro-batches for one rank. The trainer copies what it keeps, so the batch
 * returned by next() need only live until the following call. */
typedef struct {
    void *ctx;
    int64_t (*n_batches)(void *ctx);  /* micro-batches in one epoch */
    /* Position at the start of `epoch` (0-based; shuffling is the source's business,
     * seeded from the epoch), then skip `skip` micro-batches. */
    int (*begin_epoch)(void *ctx, int64_t epoch, int64_t skip, nmc_diags_t *d);
    /* 1: *b set; 0: epoch exhausted; -1: error (diagnostics appended). */
    int (*next)(void *ctx, const nmc_batch_t **b, nmc_diags_t *d);
} nmc_train_data_t;

/* ---- the dataset pipeline as training data sources (train_data.c) ------------------------ */
typedef struct nmc_train_dataset nmc_train_dataset_t;
/* Tokenize the job's filesets (runtime/dataset.h) with the tokenizer and chat template of
 * model_dir; train_path / val_path (NULL) are the resolved fileset paths, cache_dir may be
 * NULL. Fills *train and, when validation rows exist (validation fileset or
 * validation_split), *val (else val->ctx is NULL). Returns 0, 1 invalid rows, 2 I/O. */
int nmc_train_dataset_open(const struct nmc_job *job, const nmc_train_plan_t *p,
                           const char *model_dir, const char *train_path, const char *val_path,
                           const char *cache_dir, nmc_train_dataset_t **out,
                           nmc_train_data_t *train, nmc_train_data_t *val, nmc_diags_t *d);
/* One line about the data for the log: samples, truncations, packing. buf NUL-terminated. */
void nmc_train_dataset_summary(const nmc_train_dataset_t *t, char *buf, size_t cap);
void nmc_train_dataset_close(nmc_train_dataset_t *t);

/* ---- the loop (train.c) ---------------------------------------------------------------- */
typedef enum {
    NMC_TRAIN_EV_START = 0,  /* before the first step (resume info filled) */
    NMC_TRAIN_EV_STEP,       /* after each optimizer step */
    NMC_TRAIN_EV_VAL,        /* after a validation pass */
    NMC_TRAIN_EV_CKPT,       /* after a checkpoint was written */
    NMC_TRAIN_EV_NOTE,       /* a message for the user (text) */
} nmc_train_ev_kind_t;

typedef struct {
    nmc_train_ev_kind_t kind;
    int64_t step, total_steps;
    double epoch;            /* fractional epoch at this point */
    double loss;             /* mean CE over the step's label tokens (STEP) */
    double lr;               /* rate applied at this step */
    double grad_norm;        /* before clipping */
    double tokens_per_s;     /* real tokens / wall time, since this invocation started */
    double elapsed_s, eta_s;
    double val_loss;         /* VAL */
    bool logged;             /* STEP: this step is a logging step (logging_steps) */
    bool resumed;            /* START: continued from a checkpoint */
    const char *text;        /* NOTE / CKPT (the checkpoint directory) */
} nmc_train_ev_t;

typedef struct {
    const char *run_dir;      /* existing directory: checkpoints/, metrics.jsonl, train.log;
                                 NULL = nothing written (tests) */
    const char *spec_hash;    /* hex digest of the resolved spec (checkpoints carry it) */
    bool resume;              /* continue from run_dir's latest checkpoint (if any) */
    int64_t stop_after;       /* > 0: stop (as if cancelled) after this many steps in this
                                 invocation: a testing aid for resume */
    volatile sig_atomic_t *stop; /* non-zero: checkpoint at the next step boundary, stop */
    int keep_checkpoints;     /* newest checkpoints kept (0 = 2) */
    nmc_comm_t *comm;         /* data parallelism: the ranks' communicator (NULL = one
                                 process). Only rank 0 should get a run_dir; every rank
                                 gets the same resume / stop_after. */
    const char *read_dir;     /* run directory every rank resumes from (NULL = run_dir);
                                 ranks other than 0 read rank 0's checkpoints here */
    bool zero1;               /* ZeRO-1: shard the optimizer state over the ranks */
    int fault_rank;           /* testing aid: this rank (with fault_step > 0) kills itself */
    int64_t fault_step;       /*   with SIGKILL when it starts optimizer step fault_step */
    void (*on_event)(void *ctx, const nmc_train_ev_t *ev);
    void *ev_ctx;
} nmc_train_opts_t;

typedef enum { NMC_TRAIN_COMPLETED = 0, NMC_TRAIN_CANCELLED = 1 } nmc_train_outcome_t;

typedef struct {
    nmc_train_outcome_t outcome;
    int64_t steps;            /* optimizer steps completed in total (incl. before resume) */
    int64_t total_steps;
    bool resumed;
    double last_loss;
    double last_val_loss;     /* NaN when never validated */
} nmc_train_result_t;

/* Train model m (loaded with the plan's mode) on `train` (val may be NULL). Writes the run
 * directory's checkpoints and metrics when o->run_dir is set. Returns 0 (see res->outcome)
 * or -1 with diagnostics. */
int nmc_train_run(nmc_model_t *m, const nmc_train_plan_t *p, nmc_train_data_t *train,
                  nmc_train_data_t *val, const nmc_train_opts_t *o, nmc_train_result_t *res,
                  nmc_diags_t *d);

/* ---- checkpoints (train_ckpt.c) ---------------------------------------------------------- */
typedef struct {
    int64_t step;             /* optimizer steps done */
    int64_t epoch;            /* epoch in progress (0-based) */
    int64_t batch_in_epoch;   /* micro-batches of that epoch consumed (per rank) */
    int64_t world;            /* data-parallel ranks that wrote it (1 in older checkpoints) */
    int64_t micro_batch;      /* micro_batch_size (0 when unknown: older checkpoints) */
    int64_t batches_per_epoch;/* micro-batches per epoch per rank at that world size */
    uint64_t rng_offset;      /* model RNG counter */
    int64_t tokens;           /* real tokens seen */
    double elapsed_s;         /* training wall time before this invocation */
    char spec_hash[17];
} nmc_ckpt_state_t;

/* Write checkpoint `<run_dir>/checkpoints/step-<NNNNNNNN>` atomically (built in a temp
 * directory, renamed): trainable.safetensors, optimizer.safetensors, trainer_state.json.
 * Keeps the newest `keep` checkpoints. *dir_out (malloc'd, may be NULL) gets the path.
 * With ZeRO-1 the moments come from o->gm / o->gv (nmc_optim_gather_state first): the
 * files always hold the full, unsharded state, so any world size can resume them. */
int nmc_ckpt_save(const char *run_dir, nmc_optim_t *o, const nmc_ckpt_state_t *st, int keep,
                  char **dir_out, nmc_diags_t *d);
/* Newest complete checkpoint directory of run_dir (malloc'd) or NULL when none. */
char *nmc_ckpt_latest(const char *run_dir);
/* Restore weights, moments and *st from checkpoint dir `dir`. Refuses a checkpoint whose
 * spec hash differs from `spec_hash` (train-resume-spec-mismatch). With ZeRO-1 each rank
 * keeps the slice of the full moments its shard covers at the current world size. */
int nmc_ckpt_load(const char *dir, nmc_optim_t *o, const char *spec_hash, nmc_ckpt_state_t *st,
                  nmc_diags_t *d);

/* ---- run directory (train_run.c) ------------------------------------------------------- */
/* Status values of the platform's job status enum that nmc uses. */
typedef enum {
    NMC_JOB_CREATED = 0, NMC_JOB_ACTIVE, NMC_JOB_COMPLETED, NMC_JOB_ERROR, NMC_JOB_CANCELLED
} nmc_job_state_t;
const char *nmc_job_state_name(nmc_job_state_t s);

/* Write <run_dir>/status.json atomically: {"name", "status", "updated_at", "step",
 * "total_steps", "error" (or null), "output" (or null)}. */
int nmc_run_write_status(const char *run_dir, const char *name, nmc_job_state_t s, int64_t step,
                         int64_t total, const char *error, const char *output, nmc_diags_t *d);
/* Append one line to <run_dir>/train.log, prefixed with an ISO-8601 UTC time. */
void nmc_run_log(const char *run_dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append one metrics record (STEP or VAL event) to <run_dir>/metrics.jsonl. */
void nmc_run_metrics(const char *run_dir, const nmc_train_ev_t *ev);
/* mkdir -p. Returns 0 or -1 with io-error. */
int nmc_run_mkdirs(const char *path, nmc_diags_t *d);
/* FNV-1a 64 of buf as 16 hex digits into out[17]. */
void nmc_hash_hex(const void *buf, size_t n, char out[17]);

/* ---- outputs into the store (train_output.c) -------------------------------------------- */
/* Publish the trained model per p->output: the adapter into the store's adapters dir of
 * the base entity, or a new model entity (merged / full) named p->output_name (or
 * `name`, generated by the caller). For merges, the merged weights are checked against
 * adapter-on-base logits (max abs diff <= 1e-3, fp32) before anything is published.
 * *where_out (malloc'd) gets the published location. */
struct nmc_store;
int nmc_train_publish(nmc_model_t *m, const nmc_train_plan_t *p, struct nmc_store *store,
                      const char *base_ref, const char *name, char **where_out,
                      nmc_diags_t *d);
/* Max abs difference of eval logits between two models on a few fixed prompts. */
int nmc_train_logits_diff(nmc_model_t *a, nmc_model_t *b, double *max_diff, nmc_diags_t *d);

/* Held-out evaluation with eval-mode logits: mean CE, greedy next-token accuracy on the
 * label tokens, and exact match per document (every label token of a sample right). */
typedef struct {
    double loss;             /* mean CE per label token */
    int64_t tokens, tokens_correct;
    int64_t docs, docs_exact;
} nmc_train_eval_t;
int nmc_train_evaluate(nmc_model_t *m, nmc_train_data_t *data, nmc_train_eval_t *out, nmc_diags_t *d);

/* ---- CLI (runtime/cmd_train.c; wired into runtime/main.c by the coordinator) ----------- */
int nmc_cmd_train(int argc, char **argv);

#endif
