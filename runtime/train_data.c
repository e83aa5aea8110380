/* train_data.c — runtime/dataset.h's iterators behind the trainer's nmc_train_data_t.
 * A micro-batch position of the trainer is micro_batch_size units of the dataset
 * iterator (samples, or packed rows), so `skip` micro-batches seek to skip × mbs units.
 * Training data is sharded by the plan's data-parallel rank (DistributedSampler); the
 * validation iterator is whole on every rank (the loop deals its batches round-robin). */
#include "train.h"
#include "dataset.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    nmc_dataset_iter_t *it;
    nmc_batch_t b;
    int64_t mbs;
} src_t;

struct nmc_train_dataset {
    nmc_arena_t *arena;
    nmc_dataset_model_t *model;
    nmc_dataset_t *ds;
    src_t tr, va;
};

static int64_t src_n(void *ctx) { return nmc_dataset_iter_batches(((src_t *)ctx)->it); }

static int src_begin(void *ctx, int64_t epoch, int64_t skip, nmc_diags_t *d)
{
    src_t *s = ctx;
    int64_t units = nmc_dataset_iter_units(s->it), pos = skip * s->mbs;
    nmc_dataset_iter_seek(s->it, epoch, pos < units ? pos : units);
    return 0;
}

static int src_next(void *ctx, const nmc_batch_t **b, nmc_diags_t *d)
{
    src_t *s = ctx;
    int r = nmc_dataset_iter_next(s->it, &s->b, d);
    if (r == 1) *b = &s->b;
    return r;
}

static nmc_train_data_t as_data(src_t *s)
{
    return (nmc_train_data_t){.ctx = s, .n_batches = src_n, .begin_epoch = src_begin, .next = src_next};
}

int nmc_train_dataset_open(const struct nmc_job *job, const nmc_train_plan_t *p,
                           const char *model_dir, const char *train_path, const char *val_path,
                           const char *cache_dir, nmc_train_dataset_t **out,
                           nmc_train_data_t *train, nmc_train_data_t *val, nmc_diags_t *d)
{
    *out = NULL;
    memset(val, 0, sizeof *val);
    nmc_train_dataset_t *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->arena = nmc_arena_new();
    int rc = 2;
    if (nmc_dataset_model_load(model_dir, &t->model, d)) goto fail;
    nmc_dataset_opts_t o;
    rc = 1;
    if (nmc_dataset_opts_from_job(job, &o, d)) goto fail;
    rc = 2;
    const char **files = NULL;
    size_t n = 0;
    if (nmc_dataset_list_files(t->arena, train_path, &files, &n, d)) goto fail;
    o.train_files = files, o.n_train_files = n;
    if (val_path) {
        if (nmc_dataset_list_files(t->arena, val_path, &files, &n, d)) goto fail;
        o.val_files = files, o.n_val_files = n;
    }
    o.cache_dir = cache_dir;
    nmc_dataset_status_t st = nmc_dataset_open(&o, t->model, &t->ds, d);
    if (st != NMC_DATASET_OK) {
        rc = (int)st;
        goto fail;
    }
    t->tr.mbs = t->va.mbs = p->micro_batch;
    int world = p->dp_world > 1 ? p->dp_world : 1; /* DistributedSampler sharding */
    t->tr.it = nmc_dataset_iter_new(t->ds, NMC_DS_TRAIN, (int)p->micro_batch,
                                    world > 1 ? p->dp_rank : 0, world);
    if (!t->tr.it) {
        nmc_diag_add(d, NMC_SEV_ERROR, "train-data-rank", NULL, 0, 0, 0,
                     "data-parallel rank %d is outside 0 .. %d", p->dp_rank, world - 1);
        rc = 2;
        goto fail;
    }
    *train = as_data(&t->tr);
    if (nmc_dataset_num_samples(t->ds, NMC_DS_VALID) > 0) {
        t->va.it = nmc_dataset_iter_new(t->ds, NMC_DS_VALID, (int)p->micro_batch, 0, 1);
        *val = as_data(&t->va);
    }
    *out = t;
    return 0;
fail:
    nmc_train_dataset_close(t);
    return rc;
}

void nmc_train_dataset_summary(const nmc_train_dataset_t *t, char *buf, size_t cap)
{
    const nmc_dataset_report_t *r = nmc_dataset_report(t->ds, NMC_DS_TRAIN);
    const nmc_dataset_plan_t *pl = nmc_dataset_plan(t->ds, NMC_DS_TRAIN);
    snprintf(buf, cap, "data: %lld training samples (%lld tokens, %lld label tokens, %lld truncated, "
             "%lld skipped without labels), %lld validation samples%s",
             (long long)nmc_dataset_num_samples(t->ds, NMC_DS_TRAIN), (long long)r->tokens,
             (long long)r->label_tokens, (long long)r->truncated, (long long)r->zero_trainable,
             (long long)nmc_dataset_num_samples(t->ds, NMC_DS_VALID),
             pl->packing_efficiency > 0 ? ", packed" : "");
}

void nmc_train_dataset_close(nmc_train_dataset_t *t)
{
    if (!t) return;
    if (t->tr.it) nmc_dataset_iter_free(t->tr.it);
    if (t->va.it) nmc_dataset_iter_free(t->va.it);
    if (t->ds) nmc_dataset_free(t->ds);
    if (t->model) nmc_dataset_model_free(t->model);
    nmc_arena_free(t->arena);
    free(t);
}
