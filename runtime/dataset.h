/* dataset.h — the training data pipeline: JSONL rows of a job's filesets turned into the
 * micro-batches of runtime/batch.h, with loss masks, truncation, packing, a deterministic
 * per-epoch shuffle sharded by data-parallel rank, a validation set, a tokenization cache
 * and a report. docs/dataset.md documents every choice and how it follows the reference
 * trainers (TRL SFTTrainer for Unsloth, NeMo Automodel); this header gives the contract.
 *
 * Typical use (the trainer):
 *   nmc_dataset_model_t *m; nmc_dataset_model_load(model_dir, &m, &d);   // tokenizer + template
 *   nmc_dataset_opts_t o;   nmc_dataset_opts_from_job(job, &o, &d);         // fields of the job
 *   o.train_files = ...;    o.val_files = ...;  o.cache_dir = ...;           // resolved filesets
 *   nmc_dataset_t *ds;      nmc_dataset_open(&o, m, &ds, &d);                // 0 ok, 1 bad rows, 2 I/O
 *   nmc_dataset_iter_t *it = nmc_dataset_iter_new(ds, NMC_DS_TRAIN, mbs, rank, world);
 *   for (epoch...) { nmc_dataset_iter_seek(it, epoch, 0);
 *       nmc_batch_t b; while (nmc_dataset_iter_next(it, &b, &d) == 1) model(b); }
 *   checkpoint: nmc_dataset_iter_tell(it) -> {epoch, position}; resume: _seek(it, epoch, position)
 *
 * Memory: rows are read line by line (a line is at most NMC_DATASET_MAX_LINE bytes); every
 * kept sample's tokens go to a sample file on disk (the cache file, or an unlinked temp
 * file); memory holds only a 24-byte index entry per sample plus one micro-batch.
 *
 * Diagnostic codes (stable): data-invalid-json, data-line-too-long, data-invalid-utf8,
 * data-missing-field, data-wrong-type, data-empty-messages, data-unknown-role,
 * data-unknown-format, data-template-column-missing, data-bad-prompt-template,
 * data-chat-template (the template raised or failed on a row), data-no-files,
 * data-no-samples, data-cache (warning: a cache could not be used or written),
 * data-mask-approx (warning: token offsets unavailable, mask boundaries by prefix encoding),
 * plus io-error and the tokenizer-, chat-template- and jinja- codes of the model files.
 */
#ifndef NMC_DATASET_H
#define NMC_DATASET_H
/* This header includes neither job.h nor store.h; the job is named by its struct tag
 * (dataset_job.c includes job.h, and dataset_store.c store.h). */
#include "arena.h"
#include "batch.h"
#include "chat_template.h"
#include "diag.h"
#include "json.h"
#include "tokenizer.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest accepted JSONL line. A training row is at most max_seq_length tokens of a few bytes
 * each (131 072 tokens × ~4 bytes ≈ 0.5 MiB); 16 MiB leaves 30x headroom for long contexts
 * with tool schemas while still stopping a whole-file JSON array on one line early. */
#define NMC_DATASET_MAX_LINE ((size_t)16 << 20)
/* How many file:line locations the report keeps per category (counts are never capped). */
#define NMC_DATASET_REPORT_LOCS 20
/* Seed used when the job leaves schedule.seed null (Automodel); HF TrainingArguments' default. */
#define NMC_DATASET_DEFAULT_SEED 42

typedef enum { NMC_DS_TRAIN = 0, NMC_DS_VALID = 1 } nmc_dataset_split_t;
typedef enum { NMC_DATASET_OK = 0, NMC_DATASET_INVALID = 1, NMC_DATASET_IO_ERROR = 2 } nmc_dataset_status_t;

/* The model side: tokenizer, chat template and the special tokens of tokenizer_config.json. */
typedef struct {
    nmc_tokenizer_t *tok;           /* owned */
    nmc_chat_template_t *tmpl;      /* in arena; NULL when the config has no chat_template */
    nmc_arena_t *arena;             /* owns tmpl and the strings below */
    const char *bos_text, *eos_text;/* token strings; NULL when unknown */
    int32_t bos_id, eos_id, pad_id; /* pad falls back to eos (documented), -1 when neither */
    uint64_t fingerprint[2];        /* hash of tokenizer.json + tokenizer_config.json bytes */
    bool template_uses_time;        /* the template calls strftime_now (cache key gets the date) */
} nmc_dataset_model_t;

/* Load <dir>/tokenizer.json and <dir>/tokenizer_config.json (the latter optional: without it
 * there is no chat template and no configured special tokens). Returns 0, or -1 with
 * diagnostics (data-no-files when tokenizer.json is missing, tokenizer-*, chat-template-*). */
int nmc_dataset_model_load(const char *dir, nmc_dataset_model_t **out, nmc_diags_t *d);
/* Build from parts (tests): takes ownership of tok; config may be NULL; fingerprint_src is
 * hashed as the fingerprint. */
int nmc_dataset_model_from(nmc_tokenizer_t *tok, const nmc_json_t *config, const char *config_file,
                           const char *fingerprint_src, nmc_dataset_model_t **out, nmc_diags_t *d);
void nmc_dataset_model_free(nmc_dataset_model_t *m);

/* Row formats. */
typedef enum {
    NMC_DS_FMT_AUTO = 0,      /* Automodel: per row, `messages` or `prompt`+`completion` */
    NMC_DS_FMT_TEMPLATE,      /* Automodel dataset.prompt_template */
    NMC_DS_FMT_TEXT,          /* Unsloth: text_field, loss on every token */
    NMC_DS_FMT_CHAT_AS_TEXT   /* Unsloth apply_chat_template: render, then train as text */
} nmc_dataset_format_t;

typedef struct {
    nmc_dataset_format_t format;
    const char *prompt_template;  /* NMC_DS_FMT_TEMPLATE */
    const char *text_field;       /* NMC_DS_FMT_TEXT / CHAT_AS_TEXT ("text") */
    int64_t max_seq_length;       /* tokens; longer samples are truncated (kept start) */
    bool packing;
    int64_t pack_size;            /* row length when packing (tokens) */
    bool shuffle;                 /* reshuffle training units every epoch */
    uint64_t seed;
    double validation_split;      /* > 0: hold out this fraction when val_files is empty */
    const char *const *train_files; size_t n_train_files;  /* JSONL files, in order */
    const char *const *val_files;   size_t n_val_files;
    const char *cache_dir;        /* NULL: no cache (an unlinked temp file holds the tokens) */
    /* where job fields came from, for diagnostics about them (may be NULL / 0) */
    const char *job_file; uint32_t template_line, template_col; size_t template_offset;
} nmc_dataset_opts_t;

/* Fill o from a loaded (valid) job: format, template, text_field, max_seq_length, packing and
 * pack size (packed_sequence_size, else max_seq_length), shuffle (Automodel dataset.shuffle;
 * Unsloth always), seed (schedule.seed, else NMC_DATASET_DEFAULT_SEED), validation_split
 * (Automodel only, used when no validation fileset is given). File lists and cache_dir are
 * left empty. Returns 0, or -1 (data-bad-prompt-template) when prompt_template is malformed. */
struct nmc_job;
int nmc_dataset_opts_from_job(const struct nmc_job *job, nmc_dataset_opts_t *o, nmc_diags_t *d);
/* The fileset refs a job names (training, validation or NULL) and its model ref. */
void nmc_dataset_job_refs(const struct nmc_job *job, const char **model, const char **train,
                          const char **valid);
/* Micro-batch size of the job (Automodel batch.micro_batch_size, Unsloth
 * per_device_train_batch_size). */
int64_t nmc_dataset_job_micro_batch(const struct nmc_job *job);

/* Resolve through the store (home NULL: the default location) the model entity's directory
 * and the files of the training and (ref non-NULL) validation filesets. Strings and arrays
 * live in arena a. Returns 0, or -1 with the store-* / data-no-files / io-error diagnostics. */
int nmc_dataset_resolve(nmc_arena_t *a, const char *home, const char *model_ref, const char *train_ref,
                        const char *valid_ref, const char **model_dir, const char ***train_files,
                        size_t *n_train, const char ***val_files, size_t *n_val, nmc_diags_t *d);

/* Check a prompt_template: exactly two `{column}` placeholders (column names
 * [A-Za-z0-9_-]+, `{{`/`}}` are literal braces). Returns 0, or -1 with data-bad-prompt-template. */
int nmc_dataset_check_template(const char *tmpl, const nmc_dataset_opts_t *o, nmc_diags_t *d);

/* Files of a fileset path: the file itself, or the *.jsonl files of a directory (recursive,
 * sorted by path). Strings and the array live in arena a. Returns 0, or -1 (data-no-files,
 * io-error). */
int nmc_dataset_list_files(nmc_arena_t *a, const char *path, const char ***files, size_t *n,
                           nmc_diags_t *d);

/* ---- report ---------------------------------------------------------------------- */
typedef struct {
    const char *file; /* borrowed from opts (lives as long as the caller's list) */
    uint32_t line;
    int64_t detail;   /* truncated: original token count; zero-trainable: token count */
} nmc_dataset_loc_t;

typedef struct {
    int64_t rows;               /* non-blank lines read */
    int64_t blank_lines;        /* skipped whitespace-only lines */
    int64_t invalid;            /* malformed rows (each has a diagnostic) */
    int64_t samples;            /* kept samples */
    int64_t truncated;          /* kept samples cut to max_seq_length / pack_size */
    int64_t truncated_tokens;   /* tokens cut off */
    int64_t zero_trainable;     /* skipped: no token left to learn */
    int64_t mask_approx;        /* samples whose mask used the prefix-encoding fallback */
    int64_t tokens;             /* tokens of kept samples (after truncation) */
    int64_t label_tokens;       /* labels != NMC_IGNORE_INDEX over kept samples */
    int64_t min_len, max_len;   /* tokens per kept sample */
    int64_t n_truncated_locs, n_zero_locs;
    nmc_dataset_loc_t truncated_at[NMC_DATASET_REPORT_LOCS];
    nmc_dataset_loc_t zero_at[NMC_DATASET_REPORT_LOCS];
    bool from_cache;
} nmc_dataset_report_t;

typedef struct {
    int64_t units;              /* rows of the epoch before sharding (samples or packed rows) */
    int64_t row_capacity;       /* packing: units × pack_size */
    double packing_efficiency;  /* packing: tokens / row_capacity; 0 without packing */
} nmc_dataset_plan_t;

typedef struct nmc_dataset nmc_dataset_t;

/* Read, check, tokenize every row of the training and validation files (using the cache when
 * o->cache_dir is set and holds a matching entry), split off validation rows when asked, and
 * plan packing. m must outlive the dataset. Every malformed row gets a diagnostic (capped by
 * d->cap, all rows still checked); then the status is NMC_DATASET_INVALID and *out is NULL.
 * I/O failures give NMC_DATASET_IO_ERROR. On success *out is set (free with
 * nmc_dataset_free). */
nmc_dataset_status_t nmc_dataset_open(const nmc_dataset_opts_t *o, const nmc_dataset_model_t *m,
                                      nmc_dataset_t **out, nmc_diags_t *d);
void nmc_dataset_free(nmc_dataset_t *ds);

/* Report of a split (TRAIN covers the training files before the validation hold-out;
 * VALID the validation files, or the held-out part). */
const nmc_dataset_report_t *nmc_dataset_report(const nmc_dataset_t *ds, nmc_dataset_split_t s);
const nmc_dataset_plan_t *nmc_dataset_plan(const nmc_dataset_t *ds, nmc_dataset_split_t s);
int64_t nmc_dataset_num_samples(const nmc_dataset_t *ds, nmc_dataset_split_t s);
/* The cache file used or written ("" when none). */
const char *nmc_dataset_cache_path(const nmc_dataset_t *ds);

/* One sample as the model sees it (file order within the split, 0-based). ids and mask
 * (1 = the token is a training target) are malloc'd into *s; free with
 * nmc_dataset_sample_free. Returns 0, -1 on a bad index or read error. */
typedef struct {
    int32_t *ids;
    uint8_t *mask;
    int64_t n;
    const char *file;
    uint32_t line;
    bool truncated;
} nmc_dataset_sample_t;
int nmc_dataset_get_sample(const nmc_dataset_t *ds, nmc_dataset_split_t s, int64_t index,
                           nmc_dataset_sample_t *out, nmc_diags_t *d);
void nmc_dataset_sample_free(nmc_dataset_sample_t *s);

/* ---- iteration ----------------------------------------------------------------------- */
typedef struct nmc_dataset_iter nmc_dataset_iter_t;
typedef struct {
    int64_t epoch;     /* 0-based */
    int64_t position;  /* units of this rank already consumed in the epoch */
} nmc_dataset_pos_t;

/* An iterator over one split for data-parallel rank `rank` of `world`, micro-batches of
 * micro_batch_size units (a unit is a sample, or a packed row). Starts at epoch 0, position 0.
 * Returns NULL on bad arguments (micro_batch_size < 1, rank outside [0, world)). */
nmc_dataset_iter_t *nmc_dataset_iter_new(const nmc_dataset_t *ds, nmc_dataset_split_t s,
                                         int micro_batch_size, int rank, int world);
void nmc_dataset_iter_free(nmc_dataset_iter_t *it);
/* Position the iterator (restore a checkpoint, or start the next epoch with position 0). */
void nmc_dataset_iter_seek(nmc_dataset_iter_t *it, int64_t epoch, int64_t position);
nmc_dataset_pos_t nmc_dataset_iter_tell(const nmc_dataset_iter_t *it);
/* Units of this rank per epoch, and micro-batches per epoch (the last may be short). */
int64_t nmc_dataset_iter_units(const nmc_dataset_iter_t *it);
int64_t nmc_dataset_iter_batches(const nmc_dataset_iter_t *it);
/* Fill *b with the next micro-batch of the epoch (arrays owned by the iterator, valid until
 * the next call). Returns 1, 0 at the end of the epoch, -1 on a read error (diagnostic). */
int nmc_dataset_iter_next(nmc_dataset_iter_t *it, nmc_batch_t *b, nmc_diags_t *d);
/* The epoch's unit order (indices into the split's units) for rank: n = iter_units. For tests
 * and for logging; the array lives until the next seek/next. */
const int64_t *nmc_dataset_iter_order(nmc_dataset_iter_t *it);

/* ---- CLI (wired into runtime/main.c by the coordinator) --------------------------------- */
/* `nmc data inspect JOB [--n N] [--backend B] [--color auto|always|never]`. argv[0] is the
 * subcommand. Returns 0 ok, 1 invalid job or data, 2 usage or I/O error. */
int nmc_cmd_data(int argc, char **argv);

#endif
