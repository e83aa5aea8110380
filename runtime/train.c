/* train.c — the training loop: gradient accumulation, loss normalisation, clipping, the
 * schedule, validation, checkpoints, resume and stop requests.
 *
 * One optimizer step = up to `accum` micro-batches of the current epoch (the last step of
 * an epoch takes what remains, as transformers' Trainer does). The micro-batches of a
 * step are fetched first so the label tokens of the whole step are known: every
 * micro-batch's gradient is scaled by 1 / (label tokens of the step), so the accumulated
 * gradient is that of the mean loss over the step's tokens, and the step's loss is
 * sum(CE) / tokens. Then: global grad norm (reported before clipping), clipping, the
 * learning rate of the schedule position, the optimizer update.
 *
 * Validation, checkpoint and logging cadence: docs/training.md ("When things happen").
 *
 * Data parallelism (o->comm with more than one rank; docs/distributed.md): every rank runs
 * this loop on its shard of the data in lockstep. Per step the label and real token counts
 * are all-reduced BEFORE backward (grad_scale = 1 / global label tokens, so the summed
 * gradients are exactly the gradient of the global mean loss), the loss sum is all-reduced,
 * and train_dp.c sums the gradients (one bucket) and updates (plain or ZeRO-1). The stop
 * decision, validation sums, checkpoint writing and resume are agreed through the
 * communicator, so every rank takes the same branch; only rank 0 (the one given a run_dir)
 * writes anything.
 */
#include "train.h"
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    nmc_batch_t b;
    size_t cap; /* elements allocated per array */
} owned_batch_t;

typedef struct {
    nmc_model_t *m;
    const nmc_train_plan_t *p;
    const nmc_train_opts_t *o;
    nmc_train_data_t *train, *val;
    nmc_comm_t *comm;             /* NULL unless more than one rank */
    nmc_optim_t opt;
    nmc_sched_t sched;
    int64_t n_batches, spe, total, epochs;
    nmc_ckpt_state_t st;          /* position: step, epoch, batch_in_epoch, tokens */
    owned_batch_t *mb;            /* [accum] */
    double t0, elapsed_before;    /* monotonic start of this invocation; earlier runs */
    int64_t steps_here, tokens_here;
    double log_loss_sum;          /* step losses since the last logging step */
    int64_t log_n;
    double last_loss, last_val;
} loop_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void emit(loop_t *L, nmc_train_ev_t *ev)
{
    ev->step = L->st.step;
    ev->total_steps = L->total;
    ev->epoch = L->n_batches ? (double)L->st.epoch + (double)L->st.batch_in_epoch / (double)L->n_batches : 0;
    if (L->o->on_event) L->o->on_event(L->o->ev_ctx, ev);
}

static void note(loop_t *L, const char *text)
{
    nmc_train_ev_t ev = {.kind = NMC_TRAIN_EV_NOTE, .text = text};
    nmc_run_log(L->o->run_dir, "%s", text);
    emit(L, &ev);
}

static void copy_batch(owned_batch_t *dst, const nmc_batch_t *src)
{
    size_t n = (size_t)src->B * (size_t)src->T;
    if (n > dst->cap) {
        int32_t **arrs[] = {&dst->b.input_ids, &dst->b.labels, &dst->b.positions, &dst->b.doc_start};
        for (int i = 0; i < 4; i++) {
            free(*arrs[i]);
            *arrs[i] = malloc(n * sizeof(int32_t));
            if (!*arrs[i]) abort();
        }
        dst->cap = n;
    }
    int32_t *ids = dst->b.input_ids, *lab = dst->b.labels, *pos = dst->b.positions, *doc = dst->b.doc_start;
    memcpy(ids, src->input_ids, n * sizeof(int32_t));
    memcpy(lab, src->labels, n * sizeof(int32_t));
    memcpy(pos, src->positions, n * sizeof(int32_t));
    memcpy(doc, src->doc_start, n * sizeof(int32_t));
    dst->b = *src;
    dst->b.input_ids = ids, dst->b.labels = lab, dst->b.positions = pos, dst->b.doc_start = doc;
}

static void free_batches(loop_t *L)
{
    for (int64_t i = 0; L->mb && i < L->p->accum; i++) {
        free(L->mb[i].b.input_ids), free(L->mb[i].b.labels);
        free(L->mb[i].b.positions), free(L->mb[i].b.doc_start);
    }
    free(L->mb);
}

/* Fetch the micro-batches of the next step; returns their count (0 = the data is
 * exhausted), or -1. Starts the next epoch when the current one is done. */
static int gather(loop_t *L, nmc_diags_t *d)
{
    if (L->st.batch_in_epoch >= L->n_batches) {
        L->st.epoch++, L->st.batch_in_epoch = 0;
        if (L->train->begin_epoch(L->train->ctx, L->st.epoch, 0, d)) return -1;
    }
    int k = 0;
    while (k < L->p->accum && L->st.batch_in_epoch < L->n_batches) {
        const nmc_batch_t *b = NULL;
        int r = L->train->next(L->train->ctx, &b, d);
        if (r < 0) return -1;
        if (r == 0) {
            nmc_diag_add(d, NMC_SEV_ERROR, "train-data-short", NULL, 0, 0, 0,
                         "the training data ended after %lld of %lld micro-batches in epoch %lld",
                         (long long)L->st.batch_in_epoch, (long long)L->n_batches, (long long)L->st.epoch);
            return -1;
        }
        copy_batch(&L->mb[k++], b);
        L->st.batch_in_epoch++;
    }
    return k;
}

static int validate(loop_t *L, nmc_diags_t *d)
{
    nmc_train_data_t *v = L->val;
    if (v->begin_epoch(v->ctx, 0, 0, d)) return -1;
    double acc[2] = {0, 0}; /* CE sum, label tokens (exact in a double below 2^53) */
    int rank = L->comm ? L->comm->rank : 0, world = L->comm ? L->comm->size : 1;
    for (int64_t i = 0;; i++) {
        const nmc_batch_t *b = NULL;
        int r = v->next(v->ctx, &b, d);
        if (r < 0) return -1;
        if (r == 0) break;
        if (i % world != rank) continue; /* validation batches dealt round-robin, no padding */
        double s = 0;
        int64_t n = 0;
        if (nmc_model_eval(L->m, b, &s, &n, d)) return -1;
        acc[0] += s, acc[1] += (double)n;
    }
    if (L->comm && L->comm->allreduce_f64(L->comm, acc, 2))
        return nmc_dp_fail(&L->opt, "the validation loss all-reduce", d);
    L->last_val = acc[1] > 0 ? acc[0] / acc[1] : NAN;
    nmc_train_ev_t ev = {.kind = NMC_TRAIN_EV_VAL, .val_loss = L->last_val};
    emit(L, &ev);
    nmc_run_metrics(L->o->run_dir, &ev);
    nmc_run_log(L->o->run_dir, "step %lld: val_loss %.6f", (long long)L->st.step, L->last_val);
    return 0;
}

/* Every rank reports rc (0 ok); returns 0 when all are 0, else -1 (with a diagnostic on
 * the ranks that succeeded, naming the first that failed). Collective. */
static int agree(loop_t *L, int rc, const char *what, nmc_diags_t *d)
{
    if (!L->comm) return rc ? -1 : 0;
    int w = L->comm->size;
    int64_t *v = calloc((size_t)w, sizeof *v);
    if (!v) abort();
    v[L->comm->rank] = rc ? 1 : 0;
    int cr = L->comm->allreduce_i64(L->comm, v, (size_t)w);
    int bad = -1;
    for (int i = 0; cr == 0 && i < w && bad < 0; i++)
        if (v[i]) bad = i;
    free(v);
    if (cr) return nmc_dp_fail(&L->opt, what, d);
    if (bad >= 0 && rc == 0) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-rank-failed", NULL, 0, 0, 0,
                                     "rank %d: %s failed on rank %d", L->comm->rank, what, bad);
        nmc_diag_set_help(r, "rank %d's own error (rank 0: stderr and train.log; other ranks: "
                             "their stderr) says why", bad);
    }
    return bad >= 0 ? -1 : 0;
}

static int checkpoint(loop_t *L, nmc_diags_t *d)
{
    if (!L->o->run_dir && !L->comm) return 0;
    L->st.rng_offset = nmc_model_rng_offset(L->m);
    nmc_ckpt_state_t st = L->st;
    st.elapsed_s = L->elapsed_before + (now_s() - L->t0);
    st.world = L->comm ? L->comm->size : 1;
    st.micro_batch = L->p->micro_batch;
    st.batches_per_epoch = L->n_batches;
    snprintf(st.spec_hash, sizeof st.spec_hash, "%s", L->o->spec_hash ? L->o->spec_hash : "0000000000000000");
    if (nmc_optim_gather_state(&L->opt, d)) return -1; /* ZeRO-1: the full moments */
    char *dir = NULL;
    int rc = L->o->run_dir ? nmc_ckpt_save(L->o->run_dir, &L->opt, &st, L->o->keep_checkpoints, &dir, d) : 0;
    nmc_optim_release_state(&L->opt);
    if (agree(L, rc, "writing the checkpoint", d)) {
        free(dir);
        return -1;
    }
    if (!dir) return 0;
    nmc_train_ev_t ev = {.kind = NMC_TRAIN_EV_CKPT, .text = dir};
    nmc_run_log(L->o->run_dir, "step %lld: checkpoint %s", (long long)L->st.step, dir);
    emit(L, &ev);
    free(dir);
    return 0;
}

/* ---- cadence ------------------------------------------------------------------------ */
static bool epoch_end(const loop_t *L) { return L->st.batch_in_epoch >= L->n_batches; }

static bool val_due(const loop_t *L)
{
    const nmc_train_plan_t *p = L->p;
    int64_t s = L->st.step;
    if (!L->val) return false;
    if (p->backend == 0 /* automodel */ && p->val_interval > 0) {
        if (p->val_interval >= 1) return s % (int64_t)p->val_interval == 0; /* a step count */
        /* a fraction of an epoch: every floor(f × steps per epoch) steps counted from the
         * epoch's first step (steps of this epoch so far = ceil(micro-batches / accum)),
         * and at the epoch's end: 0.5 with 4 steps an epoch validates after its 2nd and 4th */
        int64_t every = (int64_t)floor(p->val_interval * (double)L->spe);
        if (every < 1) every = 1;
        int64_t in_epoch = (L->st.batch_in_epoch + p->accum - 1) / p->accum;
        return in_epoch % every == 0 || epoch_end(L);
    }
    if (p->eval_steps > 0) return s % p->eval_steps == 0;
    return epoch_end(L);
}

static bool save_due(const loop_t *L, bool validated)
{
    const nmc_train_plan_t *p = L->p;
    if (p->save_steps > 0) return L->st.step % p->save_steps == 0;
    if (p->backend == 0) return validated || epoch_end(L); /* Automodel: validation points, epoch ends */
    return false;
}

/* ---- one optimizer step --------------------------------------------------------------- */
static int step(loop_t *L, nmc_diags_t *d)
{
    if (L->o->fault_step > 0 && L->st.step + 1 == L->o->fault_step &&
        (L->comm ? L->comm->rank : 0) == L->o->fault_rank)
        raise(SIGKILL); /* testing aid (nmc_train_opts_t.fault_step) */
    int k = gather(L, d);
    if (k <= 0) return -1;
    int64_t cnt[2] = {0, 0}; /* label tokens, real tokens: of the whole step, every rank */
    for (int i = 0; i < k; i++) cnt[0] += L->mb[i].b.n_label_tokens, cnt[1] += L->mb[i].b.n_real_tokens;
    if (L->comm && L->comm->allreduce_i64(L->comm, cnt, 2))
        return nmc_dp_fail(&L->opt, "the token count all-reduce", d);
    int64_t tokens = cnt[0], real = cnt[1];
    float scale = 1.0f / (float)(tokens > 0 ? tokens : 1);
    if (nmc_model_zero_grads(L->m)) return -1;
    double loss_sum = 0;
    for (int i = 0; i < k; i++) {
        double s = 0;
        int64_t n = 0;
        if (nmc_model_fwd_bwd(L->m, &L->mb[i].b, scale, &s, &n, d)) return -1;
        loss_sum += s;
    }
    if (L->comm && L->comm->allreduce_f64(L->comm, &loss_sum, 1))
        return nmc_dp_fail(&L->opt, "the loss all-reduce", d);
    double loss = loss_sum / (double)(tokens > 0 ? tokens : 1), norm = 0;
    if (nmc_dp_reduce_grads(&L->opt, &norm, d)) return -1; /* one process: the local norm */
    if (!isfinite(loss) || !isfinite(norm)) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-nonfinite", NULL, 0, 0, 0,
                                     "step %lld: the %s is not finite", (long long)L->st.step + 1,
                                     isfinite(loss) ? "gradient norm" : "loss");
        nmc_diag_set_help(r, "lower the learning rate, or resume from the last checkpoint");
        return -1;
    }
    double lr = nmc_sched_lr(&L->sched, L->st.step);
    if (nmc_dp_clip_and_step(&L->opt, norm, L->p->max_grad_norm, lr, d)) return -1;
    L->st.step++, L->steps_here++;
    L->st.tokens += real, L->tokens_here += real;
    L->last_loss = loss;
    L->log_loss_sum += loss, L->log_n++;

    double el = now_s() - L->t0;
    nmc_train_ev_t ev = {.kind = NMC_TRAIN_EV_STEP, .loss = loss, .lr = lr, .grad_norm = norm};
    ev.elapsed_s = L->elapsed_before + el;
    ev.tokens_per_s = el > 0 ? (double)L->tokens_here / el : 0;
    ev.eta_s = el / (double)L->steps_here * (double)(L->total - L->st.step);
    ev.logged = L->st.step % L->p->logging_steps == 0 || L->st.step == L->total;
    if (ev.logged) {
        ev.loss = L->log_loss_sum / (double)L->log_n;
        L->log_loss_sum = 0, L->log_n = 0;
    }
    emit(L, &ev);
    if (ev.logged) {
        nmc_run_metrics(L->o->run_dir, &ev);
        nmc_run_log(L->o->run_dir, "step %lld/%lld: loss %.6f lr %.6g grad_norm %.4f",
                    (long long)L->st.step, (long long)L->total, ev.loss, lr, norm);
    }
    return 0;
}

/* ---- setup ---------------------------------------------------------------------------- */
/* The checkpoint every rank resumes from: rank 0 picks the newest of its run directory
 * and the others open the same step under o->read_dir. NULL when there is none. */
static int pick_checkpoint(loop_t *L, char **dir, nmc_diags_t *d)
{
    *dir = L->o->run_dir ? nmc_ckpt_latest(L->o->run_dir) : NULL;
    if (!L->comm) return 0;
    int64_t step = -1;
    const char *base = *dir ? strrchr(*dir, '/') : NULL;
    long long s;
    if (base && sscanf(base, "/step-%lld", &s) == 1) step = s;
    int64_t v = L->comm->rank == 0 ? step + 1 : 0; /* 0: none */
    if (L->comm->allreduce_i64(L->comm, &v, 1)) return nmc_dp_fail(&L->opt, "agreeing on the checkpoint", d);
    if (L->comm->rank == 0 || v == 0) return 0;
    const char *rd = L->o->read_dir ? L->o->read_dir : L->o->run_dir;
    size_t cap = (rd ? strlen(rd) : 1) + 64;
    *dir = malloc(cap);
    if (!*dir) abort();
    snprintf(*dir, cap, "%s/checkpoints/step-%08lld", rd ? rd : ".", (long long)(v - 1));
    return 0;
}

/* The data position of a checkpoint written at another world size (or micro-batch size):
 * the global units consumed in the epoch must be a whole number of this run's global
 * micro-batch rows (mbs × world); an epoch that was complete stays complete. */
static int rescale_position(loop_t *L, const char *dir, nmc_diags_t *d)
{
    nmc_ckpt_state_t *st = &L->st;
    int64_t world = L->comm ? L->comm->size : 1, mbs = L->p->micro_batch;
    if (st->world == world && (st->micro_batch == 0 || st->micro_batch == mbs)) return 0;
    if (st->batches_per_epoch > 0 && st->batch_in_epoch >= st->batches_per_epoch) {
        st->batch_in_epoch = L->n_batches;
        return 0;
    }
    int64_t units = st->batch_in_epoch * (st->micro_batch ? st->micro_batch : mbs) * st->world;
    if (units % (mbs * world) == 0) {
        st->batch_in_epoch = units / (mbs * world);
        return 0;
    }
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-resume-world", dir, 0, 0, 0,
                                 "cannot resume at %lld ranks: the checkpoint (written by %lld ranks) "
                                 "stopped after %lld samples of epoch %lld, not a multiple of "
                                 "micro_batch_size × ranks = %lld", (long long)world,
                                 (long long)st->world, (long long)units, (long long)st->epoch,
                                 (long long)(mbs * world));
    nmc_diag_set_help(r, "resume with %lld ranks (parallelism.num_gpus_per_node × num_nodes), or "
                         "from a checkpoint at an epoch end", (long long)st->world);
    return -1;
}

static int resume(loop_t *L, nmc_train_result_t *res, nmc_diags_t *d)
{
    char *dir = NULL;
    char msg[4400];
    if (pick_checkpoint(L, &dir, d)) return -1;
    if (!dir) {
        note(L, "resume: no checkpoint in the run directory, starting fresh");
        return 0;
    }
    int rc = nmc_ckpt_load(dir, &L->opt, L->o->spec_hash, &L->st, d);
    if (rc == 0) rc = rescale_position(L, dir, d);
    if (agree(L, rc, "loading the checkpoint", d)) rc = -1;
    if (rc == 0) {
        nmc_model_set_rng_offset(L->m, L->st.rng_offset);
        L->elapsed_before = L->st.elapsed_s;
        res->resumed = true;
        snprintf(msg, sizeof msg, "resuming from %s (step %lld of %lld, epoch %lld, micro-batch %lld)",
                 dir, (long long)L->st.step, (long long)L->total, (long long)L->st.epoch,
                 (long long)L->st.batch_in_epoch);
        note(L, msg);
    }
    free(dir);
    return rc;
}

static int setup(loop_t *L, nmc_train_result_t *res, nmc_diags_t *d)
{
    L->n_batches = L->train->n_batches(L->train->ctx);
    if (L->n_batches <= 0) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-data-empty", NULL, 0, 0, 0,
                                     "the training data has no batches");
        nmc_diag_set_help(r, "check the training fileset: every row may have been filtered out");
        return -1;
    }
    L->spe = nmc_train_steps_per_epoch(L->n_batches, L->p->accum);
    L->total = nmc_train_total_steps(L->p, L->n_batches, &L->epochs);
    nmc_train_sched(L->p, L->total, &L->sched);
    L->mb = calloc((size_t)L->p->accum, sizeof *L->mb);
    if (!L->mb) abort();
    if (nmc_optim_init(&L->opt, L->m, &L->p->optim, d)) return -1;
    if (nmc_optim_set_dp(&L->opt, L->comm, L->o->zero1, d)) return -1;
    if (L->comm && nmc_dp_broadcast_params(&L->opt, d)) return -1;
    if (L->o->resume && resume(L, res, d)) return -1;
    return L->train->begin_epoch(L->train->ctx, L->st.epoch, L->st.batch_in_epoch, d);
}

int nmc_train_run(nmc_model_t *m, const nmc_train_plan_t *p, nmc_train_data_t *train,
                  nmc_train_data_t *val, const nmc_train_opts_t *o, nmc_train_result_t *res,
                  nmc_diags_t *d)
{
    loop_t L = {.m = m, .p = p, .o = o, .train = train, .val = val, .last_val = NAN,
                /* a real communicator (also nccl at world 1: the GPU smoke test) */
                .comm = o->comm && (o->comm->size > 1 || strcmp(o->comm->kind, "single")) ? o->comm : NULL};
    memset(res, 0, sizeof *res);
    res->last_val_loss = NAN;
    L.t0 = now_s();
    int rc = setup(&L, res, d);
    nmc_train_ev_t start = {.kind = NMC_TRAIN_EV_START, .resumed = res->resumed};
    if (rc == 0) emit(&L, &start);
    bool stopped = false;
    while (rc == 0 && L.st.step < L.total) {
        int64_t want = (o->stop && *o->stop) || (o->stop_after > 0 && L.steps_here >= o->stop_after);
        if (L.comm && L.comm->allreduce_i64(L.comm, &want, 1)) { /* any rank's signal stops all */
            rc = nmc_dp_fail(&L.opt, "agreeing on a stop request", d);
            break;
        }
        if (want) {
            stopped = true;
            break;
        }
        rc = step(&L, d);
        bool v = rc == 0 && val_due(&L);
        if (v) rc = validate(&L, d);
        if (rc == 0 && L.st.step < L.total && save_due(&L, v)) rc = checkpoint(&L, d);
    }
    if (rc == 0 && L.st.step >= L.total && L.val && !val_due(&L) && L.p->eval_steps == 0 &&
        L.p->val_interval == 0)
        rc = validate(&L, d); /* a run cut by max_steps mid-epoch still reports a val loss */
    if (rc == 0) rc = checkpoint(&L, d);
    if (rc == 0 && stopped) note(&L, "stopped: checkpoint written; continue with `nmc train --resume`");
    res->outcome = stopped ? NMC_TRAIN_CANCELLED : NMC_TRAIN_COMPLETED;
    res->steps = L.st.step;
    res->total_steps = L.total;
    res->last_loss = L.last_loss;
    res->last_val_loss = L.last_val;
    nmc_optim_free(&L.opt);
    free_batches(&L);
    return rc;
}
