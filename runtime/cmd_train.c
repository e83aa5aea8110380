/* cmd_train.c — `nmc train JOB`: load and check the job, resolve its model and filesets in
 * the store, tokenize the data, load the model, train with a progress display, publish the
 * result into the store, and keep the run directory's status up to date.
 * What belongs here: argument parsing, printing, signals, exit codes; the work is in
 * train*.c, store.c, dataset*.c and model*.c. Exit codes: 0 done, 1 the job or the run
 * failed, 2 usage or I/O error, 130 stopped by SIGINT/SIGTERM (checkpoint written).
 *
 * Data parallelism (docs/distributed.md): the launcher's ranks are read from the
 * environment (runtime/launch.h); with no launcher, one node and num_gpus_per_node > 1
 * this process only supervises N self-spawned ranks. Each rank checks world size and spec
 * hash before any weights load, opens its communicator (NMC_COMM, default auto), and
 * trains its data shard. Rank 0 alone writes the run directory, metrics, checkpoints and
 * outputs and prints progress; other ranks print only their errors (prefixed with their
 * rank). A broken communicator ends the job through comm->abort after rank 0 has written
 * the error into status.json.
 */
#include "train.h"
#include "dev_select.h"
#include "launch.h"
#include "nmc_kernels.h"
#include "peft.h"
#include "store.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NMC_STR_(x) #x
#define NMC_STR(x) NMC_STR_(x) /* a macro's value as a string literal */

static const char *USAGE =
    "usage: nmc train JOB.json [--resume] [--output-dir DIR] [--backend automodel|unsloth]\n"
    "                 [--device auto|cpu|cuda:N] [--threads N] [--zero1] [--quiet]\n"
    "       nmc train JOB.json --eval-only [--adapter DIR]\n"
    "Trains the job's model on its filesets (both from the store in $NMC_HOME) and publishes\n"
    "the result to the store. The run directory ($NMC_HOME/jobs/<job name>, or --output-dir)\n"
    "holds spec.json, status.json, train.log, metrics.jsonl and checkpoints/.\n"
    "  --resume        continue from the run directory's last checkpoint (same job file)\n"
    "  --output-dir DIR  the run directory\n"
    "  --backend B     automodel or unsloth (default: the file's \"$schema\", else automodel)\n"
    "  --device D      auto (default: the first visible GPU, else the CPU), cpu, cuda:N\n"
    "  --threads N     CPU threads (default: the cores nmc may run on, shared by the\n"
    "                  ranks of a node)\n"
    "  --quiet         no progress lines\n"
    "  --eval-only     print held-out loss, token accuracy and exact match of the model (with\n"
    "                  --adapter DIR: of that PEFT adapter on the base), then exit; trains\n"
    "                  nothing; without validation data it evaluates the training set\n"
    "  --stop-after N  stop after N steps as if interrupted (for testing resume)\n"
    "  --zero1         data parallelism: shard the optimizer state over the ranks (ZeRO-1;\n"
    "                  also NMC_ZERO1=1)\n"
    "Jobs laid out for several GPUs train data-parallel: under mpirun / srun (one rank per\n"
    "GPU) or, on one node without a launcher, with ranks nmc starts itself. NMC_COMM picks\n"
    "the communicator (auto, single, shm, mpi, nccl). See docs/training.md and\n"
    "docs/distributed.md.\n"
    "Ctrl-C writes a checkpoint at the next step boundary and exits with status 130.\n"
    "Exit status: 0 done, 1 invalid job or failed run, 2 usage or I/O error, 130 stopped.\n";

typedef struct {
    const char *job, *output_dir, *backend, *device, *adapter;
    bool resume, eval_only, quiet, help, zero1;
    int threads;
    long stop_after;
} args_t;

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "nmc train: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", USAGE);
    return 2;
}

static int parse_args(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char **slot = NULL, *num = NULL;
        if (strcmp(s, "--resume") == 0) a->resume = true;
        else if (strcmp(s, "--eval-only") == 0) a->eval_only = true;
        else if (strcmp(s, "--zero1") == 0) a->zero1 = true;
        else if (strcmp(s, "--quiet") == 0 || strcmp(s, "-q") == 0) a->quiet = true;
        else if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) a->help = true;
        else if (strcmp(s, "--output-dir") == 0) slot = &a->output_dir;
        else if (strcmp(s, "--backend") == 0) slot = &a->backend;
        else if (strcmp(s, "--device") == 0) slot = &a->device;
        else if (strcmp(s, "--adapter") == 0) slot = &a->adapter;
        else if (strcmp(s, "--threads") == 0 || strcmp(s, "--stop-after") == 0) slot = &num;
        else if (s[0] == '-' && s[1]) return usage_error("unknown option '%s'", s);
        else if (a->job) return usage_error("unexpected argument '%s' (one job file per run)", s);
        else a->job = s;
        if (!slot) continue;
        if (i + 1 >= argc) return usage_error("option '%s' needs a value", s);
        *slot = argv[++i];
        if (slot != &num) continue;
        char *end;
        long v = strtol(num, &end, 10);
        if (*end || v < 1) return usage_error("'%s' needs a positive integer", s);
        if (strcmp(s, "--threads") == 0 && v > NMC_CPU_MAX_THREADS)
            return usage_error("'--threads %s': nmc runs at most " NMC_STR(NMC_CPU_MAX_THREADS)
                               " threads", num);
        if (strcmp(s, "--threads") == 0) a->threads = (int)v;
        else a->stop_after = v;
    }
    if (!a->help && !a->job) return usage_error("%s", "missing the job file");
    if (a->adapter && !a->eval_only) return usage_error("%s", "--adapter needs --eval-only");
    return 0;
}

static int RANK, WORLD = 1; /* this process in the job (runtime/launch.h) */

/* Rank 0 (or a single process) prints everything; other ranks only errors, under a line
 * naming the rank. */
static void render(nmc_diags_t *d, const char *src, size_t len)
{
    if (d->n == 0 && d->n_dropped == 0) return;
    if (RANK > 0 && d->n_errors == 0) {
        nmc_diags_free(d);
        nmc_diags_init(d);
        return;
    }
    if (RANK > 0) fprintf(stderr, "nmc train: rank %d of %d:\n", RANK, WORLD);
    nmc_diags_sort(d);
    nmc_diags_render_text(d, src, len, stderr, isatty(2) && !getenv("NO_COLOR"));
    nmc_diags_free(d); /* printed */
    nmc_diags_init(d);
}

/* ---- signals --------------------------------------------------------------------------- */
static volatile sig_atomic_t STOP;
static void on_signal(int sig) { STOP = sig; }
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- progress ------------------------------------------------------------------------- */
typedef struct {
    bool tty, quiet, bar_open;
    const char *run_dir;
} progress_t;

static void fmt_time(double s, char *buf, size_t cap)
{
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void end_bar(progress_t *p)
{
    if (p->bar_open) fputc('\n', stderr), p->bar_open = false;
}

static void on_event(void *ctx, const nmc_train_ev_t *ev)
{
    progress_t *p = ctx;
    char eta[32], el[32];
    switch (ev->kind) {
    case NMC_TRAIN_EV_STEP:
        if (p->quiet) return;
        fmt_time(ev->eta_s, eta, sizeof eta), fmt_time(ev->elapsed_s, el, sizeof el);
        if (p->tty) {
            int w = 24, fill = ev->total_steps ? (int)(w * ev->step / ev->total_steps) : w;
            char bar[32];
            for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '-';
            bar[w] = 0;
            fprintf(stderr, "\r\033[Kstep %lld/%lld [%s] loss %.4f lr %.2e | %.0f tok/s | %s, eta %s",
                    (long long)ev->step, (long long)ev->total_steps, bar, ev->loss, ev->lr,
                    ev->tokens_per_s, el, eta);
            p->bar_open = true;
        } else if (ev->logged) {
            fprintf(stderr, "step %lld/%lld epoch %.2f loss %.4f lr %.3e grad_norm %.3f tok/s %.0f eta %s\n",
                    (long long)ev->step, (long long)ev->total_steps, ev->epoch, ev->loss, ev->lr,
                    ev->grad_norm, ev->tokens_per_s, eta);
        }
        break;
    case NMC_TRAIN_EV_VAL:
        if (p->quiet) return;
        end_bar(p);
        fprintf(stderr, "step %lld/%lld val_loss %.4f\n", (long long)ev->step, (long long)ev->total_steps,
                ev->val_loss);
        break;
    case NMC_TRAIN_EV_CKPT:
        if (p->quiet) return;
        end_bar(p);
        fprintf(stderr, "checkpoint: %s\n", ev->text);
        break;
    case NMC_TRAIN_EV_NOTE:
        if (RANK > 0) return;
        end_bar(p);
        fprintf(stderr, "nmc train: %s\n", ev->text);
        break;
    default: break;
    }
}

/* ---- the run -------------------------------------------------------------------------- */
typedef struct {
    args_t a;
    nmc_diags_t d;
    nmc_arena_t *arena;
    nmc_train_plan_t plan;
    char *src, *explain;
    size_t src_len;
    struct nmc_job *job;
    nmc_store_t *store;
    nmc_store_entity_t model, train, val;
    bool has_val;
    char run_dir[4096], hash[17];
    const char *name, *out_name;
    nmc_train_dataset_t *ds;
    nmc_train_data_t tdata, vdata;
    nmc_dev_t *dev;
    nmc_model_t *m;
    int64_t total;
    int64_t steps;           /* optimizer steps done so far (status.json on failure) */
    nmc_launch_t launch;
    nmc_dev_plan_t dplan;
    nmc_comm_t *comm;        /* every rank, world 1 included ("single") */
    bool writer;             /* rank 0: writes the run directory and the outputs */
} run_t;

static const char *basename_noext(nmc_arena_t *a, const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && strcmp(b + n - 5, ".json") == 0) n -= 5;
    return nmc_arena_strndup(a, b, n);
}

static const char *ref_name(const char *ref)
{
    const char *s = strrchr(ref, '/');
    return s ? s + 1 : ref;
}

static int resolve(run_t *r)
{
    const nmc_train_plan_t *p = &r->plan;
    if (nmc_store_open(NULL, &r->store, &r->d)) return 2;
    int bad = nmc_store_resolve_model(r->store, p->model_ref, &r->model, &r->d);
    bad |= nmc_store_resolve_fileset(r->store, p->train_ref, &r->train, &r->d);
    if (p->val_ref) bad |= nmc_store_resolve_fileset(r->store, p->val_ref, &r->val, &r->d), r->has_val = true;
    if (bad) return 1;
    r->name = p->job_name ? p->job_name : basename_noext(r->arena, r->a.job);
    r->out_name = p->output_name ? p->output_name
                                 : nmc_arena_printf(r->arena, "%s-%s-%.8s", ref_name(p->model_ref),
                                                    ref_name(p->train_ref), r->hash);
    return 0;
}

static void run_dir_path(run_t *r)
{
    if (r->a.output_dir) snprintf(r->run_dir, sizeof r->run_dir, "%s", r->a.output_dir);
    else snprintf(r->run_dir, sizeof r->run_dir, "%s/jobs/%s", nmc_store_home(r->store), r->name);
}

static int prepare_run_dir(run_t *r)
{
    run_dir_path(r);
    if (nmc_run_mkdirs(r->run_dir, &r->d)) return 2;
    char *latest = nmc_ckpt_latest(r->run_dir);
    if (latest && !r->a.resume) {
        nmc_diag_t *e = nmc_diag_add(&r->d, NMC_SEV_ERROR, "train-run-exists", r->run_dir, 0, 0, 0,
                                     "the run directory already holds checkpoints of an earlier run (%s)", latest);
        nmc_diag_set_help(e, "pass --resume to continue that run, or --output-dir DIR (or remove the "
                             "directory) to start a fresh one");
        free(latest);
        return 1;
    }
    fprintf(stderr, "nmc train: %s in %s\n",
            latest ? "RESUMING from the last checkpoint" : (r->a.resume ? "no checkpoint found: STARTING FRESH"
                                                                        : "starting fresh"),
            r->run_dir);
    free(latest);
    char path[4200];
    snprintf(path, sizeof path, "%s/spec.json", r->run_dir);
    nmc_atomic_file_t af;
    if (nmc_atomic_begin(&af, path, &r->d)) return 2;
    fputs(r->explain, af.f);
    if (nmc_atomic_commit(&af, &r->d)) return 2;
    if (nmc_run_write_status(r->run_dir, r->name, NMC_JOB_CREATED, 0, 0, NULL, NULL, &r->d)) return 2;
    nmc_run_log(r->run_dir, "job %s (%s): model %s, data %s, output %s", r->name,
                r->plan.backend == 0 ? "automodel" : "unsloth", r->plan.model_ref, r->plan.train_ref, r->out_name);
    return 0;
}

static int open_data(run_t *r)
{
    char cache[4200], line[512];
    snprintf(cache, sizeof cache, "%s/cache/datasets", nmc_store_home(r->store));
    if (nmc_run_mkdirs(cache, &r->d)) return 2;
    int rc = nmc_train_dataset_open(r->job, &r->plan, r->model.path, r->train.path,
                                    r->has_val ? r->val.path : NULL, cache, &r->ds, &r->tdata, &r->vdata, &r->d);
    if (rc) return rc;
    nmc_train_dataset_summary(r->ds, line, sizeof line);
    if (!r->a.quiet) fprintf(stderr, "nmc train: %s\n", line);
    if (r->run_dir[0] && r->writer) nmc_run_log(r->run_dir, "%s", line);
    return 0;
}

static int load_model(run_t *r, const nmc_lora_cfg_t *lora)
{
    if (!r->dev && nmc_dev_open_for_job(r->job, r->a.device, 1, &r->dev, NULL, &r->d)) return 1;
    nmc_model_opts_t mo;
    nmc_model_opts_default(&mo);
    mo.model_dir = r->model.path;
    mo.dev = r->dev;
    mo.train = lora ? NMC_TRAIN_LORA : r->plan.mode;
    mo.lora = lora ? lora : (r->plan.mode == NMC_TRAIN_LORA ? &r->plan.lora : NULL);
    mo.label_smoothing = (float)r->plan.label_smoothing;
    mo.neftune_alpha = (float)r->plan.neftune_alpha;
    mo.seed = r->plan.seed;
    mo.recompute = r->plan.recompute;
    if (nmc_model_load(&mo, &r->m, &r->d)) return 1;
    char on[64];
    int threads = nmc_cpu_threads();
    if (r->dev->kind == NMC_DEV_CPU)
        snprintf(on, sizeof on, "%s (%d thread%s)", r->dev->name, threads, threads == 1 ? "" : "s");
    else
        snprintf(on, sizeof on, "%s", r->dev->name);
    if (!r->a.quiet && r->comm && (WORLD > 1 || strcmp(r->comm->kind, "single")))
        fprintf(stderr, "nmc train: %s on %d rank%s (%s communicator%s), rank 0 on %s, %lld trainable "
                "parameters\n", r->model.ref, WORLD, WORLD == 1 ? "" : "s", r->comm->kind,
                r->a.zero1 ? ", ZeRO-1" : "", on, (long long)nmc_model_trainable_count(r->m));
    else if (!r->a.quiet)
        fprintf(stderr, "nmc train: %s on %s, %lld trainable parameters\n", r->model.ref, on,
                (long long)nmc_model_trainable_count(r->m));
    return 0;
}

static void print_eval(run_t *r, const char *what, const nmc_train_eval_t *e)
{
    printf("%s: loss %.4f, token accuracy %.1f%% (%lld/%lld), exact match %.1f%% (%lld/%lld)\n", what,
           e->loss, e->tokens ? 100.0 * (double)e->tokens_correct / (double)e->tokens : 0.0,
           (long long)e->tokens_correct, (long long)e->tokens,
           e->docs ? 100.0 * (double)e->docs_exact / (double)e->docs : 0.0, (long long)e->docs_exact,
           (long long)e->docs);
    if (r->run_dir[0])
        nmc_run_log(r->run_dir, "%s: loss %.6f token accuracy %lld/%lld exact match %lld/%lld", what, e->loss,
                    (long long)e->tokens_correct, (long long)e->tokens, (long long)e->docs_exact,
                    (long long)e->docs);
}

static int eval_only(run_t *r)
{
    nmc_lora_cfg_t cfg;
    if (r->a.adapter && nmc_peft_read_config(r->arena, r->a.adapter, &cfg, &r->d)) return 1;
    int rc = open_data(r);
    if (rc) return rc;
    if (load_model(r, r->a.adapter ? &cfg : NULL)) return 1;
    if (r->a.adapter && nmc_peft_load(r->m, r->a.adapter, &r->d)) return 1;
    nmc_train_eval_t e;
    nmc_train_data_t *src = r->vdata.ctx ? &r->vdata : &r->tdata;
    if (nmc_train_evaluate(r->m, src, &e, &r->d)) return 1;
    print_eval(r, r->vdata.ctx ? "eval (validation set)" : "eval (training set)", &e);
    return 0;
}

static int fail_status(run_t *r, int rc)
{
    if (!r->run_dir[0] || !r->writer) return rc;
    char msg[512] = "";
    for (size_t i = 0; i < r->d.n; i++)
        if (r->d.items[i].sev == NMC_SEV_ERROR) {
            snprintf(msg, sizeof msg, "%s: %s", r->d.items[i].code, r->d.items[i].message);
            break;
        }
    nmc_diags_t d2;
    nmc_diags_init(&d2);
    nmc_run_write_status(r->run_dir, r->name, NMC_JOB_ERROR, r->steps, r->total, msg[0] ? msg : "failed", NULL,
                         &d2);
    nmc_diags_free(&d2);
    nmc_run_log(r->run_dir, "error: %s", msg);
    return rc;
}

/* ---- ranks ----------------------------------------------------------------------------- */

/* Every rank reports rc (0 ok); returns the first failing rank's rc (so every rank exits
 * alike), or 0. A rank that did not fail gets a diagnostic naming the one that did. */
static int agree(run_t *r, int rc, const char *what)
{
    if (WORLD <= 1) return rc;
    int64_t *v = calloc((size_t)WORLD, sizeof *v);
    if (!v) abort();
    v[RANK] = rc;
    if (r->comm->allreduce_i64(r->comm, v, (size_t)WORLD)) {
        nmc_diag_add(&r->d, NMC_SEV_ERROR, "train-comm-failed", NULL, 0, 0, 0, "rank %d: %s failed: %s",
                     RANK, what, r->comm->last_error(r->comm));
        free(v);
        return 1;
    }
    int bad = -1;
    for (int i = 0; i < WORLD && bad < 0; i++)
        if (v[i]) bad = i;
    int out = bad >= 0 ? (int)v[bad] : 0;
    free(v);
    if (bad >= 0 && rc == 0) {
        nmc_diag_t *e = nmc_diag_add(&r->d, NMC_SEV_ERROR, "train-rank-failed", NULL, 0, 0, 0,
                                     "%s failed on rank %d", what, bad);
        nmc_diag_set_help(e, "rank %d's own error above (rank 0: also status.json and train.log) says why",
                          bad);
    }
    return out;
}

/* A collective failed: the communicator is unusable. */
static bool comm_broken(const run_t *r)
{
    for (size_t i = 0; i < r->d.n; i++)
        if (!strcmp(r->d.items[i].code, "train-comm-failed") || !strcmp(r->d.items[i].code, "comm-failed") ||
            !strcmp(r->d.items[i].code, "comm-timeout"))
            return true;
    return false;
}

/* NMC_TRAIN_FAULT="RANK:STEP": that rank kills itself (SIGKILL) when it starts optimizer
 * step STEP. A testing aid for the failure paths (tests/run_train_dp.sh). */
static void fault_from_env(nmc_train_opts_t *o)
{
    const char *f = getenv("NMC_TRAIN_FAULT");
    int rank;
    long long step;
    if (f && sscanf(f, "%d:%lld", &rank, &step) == 2 && step > 0) o->fault_rank = rank, o->fault_step = step;
}

static int train(run_t *r)
{
    int rc = r->writer ? prepare_run_dir(r) : (run_dir_path(r), 0);
    if ((rc = agree(r, rc, "preparing the run directory"))) return rc;
    /* rank 0 tokenizes first (and fills the dataset cache); the others then read it */
    if (r->writer) rc = open_data(r);
    if ((rc = agree(r, rc, "reading the training data"))) return fail_status(r, rc);
    if (!r->writer) rc = open_data(r);
    if (rc == 0) rc = load_model(r, NULL);
    if ((rc = agree(r, rc, "loading the data and the model"))) return fail_status(r, rc);
    r->total = nmc_train_total_steps(&r->plan, r->tdata.n_batches(r->tdata.ctx), NULL);
    if (r->writer) nmc_run_write_status(r->run_dir, r->name, NMC_JOB_ACTIVE, 0, r->total, NULL, NULL, &r->d);
    install_signals();
    progress_t pg = {.tty = isatty(2) != 0, .quiet = r->a.quiet, .run_dir = r->run_dir};
    nmc_train_opts_t o = {.run_dir = r->writer ? r->run_dir : NULL, .read_dir = r->run_dir,
                          .spec_hash = r->hash, .resume = r->a.resume, .stop_after = r->a.stop_after,
                          .stop = &STOP, .on_event = on_event, .ev_ctx = &pg, .comm = r->comm,
                          .zero1 = r->a.zero1};
    fault_from_env(&o);
    nmc_train_result_t res;
    rc = nmc_train_run(r->m, &r->plan, &r->tdata, r->vdata.ctx ? &r->vdata : NULL, &o, &res, &r->d);
    r->steps = res.steps;
    end_bar(&pg);
    if (rc) return fail_status(r, 1);
    if (res.outcome == NMC_TRAIN_CANCELLED) {
        if (!r->writer) return 130;
        nmc_run_write_status(r->run_dir, r->name, NMC_JOB_CANCELLED, res.steps, res.total_steps, NULL, NULL, &r->d);
        fprintf(stderr, "nmc train: stopped at step %lld of %lld; run `nmc train %s --resume%s%s` to continue\n",
                (long long)res.steps, (long long)res.total_steps, r->a.job, r->a.output_dir ? " --output-dir " : "",
                r->a.output_dir ? r->a.output_dir : "");
        return 130;
    }
    if (!r->writer) return 0; /* the replicas are identical: rank 0 evaluates and publishes */
    if (r->vdata.ctx) {
        nmc_train_eval_t e;
        if (nmc_train_evaluate(r->m, &r->vdata, &e, &r->d)) return fail_status(r, 1);
        print_eval(r, "eval (validation set)", &e);
    }
    char *where = NULL;
    if (nmc_train_publish(r->m, &r->plan, r->store, r->plan.model_ref, r->out_name, &where, &r->d))
        return fail_status(r, 1);
    nmc_run_write_status(r->run_dir, r->name, NMC_JOB_COMPLETED, res.steps, res.total_steps, NULL, where, &r->d);
    nmc_run_log(r->run_dir, "completed: %lld steps, loss %.6f, published %s", (long long)res.steps,
                res.last_loss, where);
    printf("trained %s: %lld steps, final loss %.4f\n%s '%s' published at %s\n", r->name, (long long)res.steps,
           res.last_loss, r->plan.output == NMC_OUTPUT_ADAPTER ? "adapter" : "model", r->out_name, where);
    free(where);
    return 0;
}

static void cleanup(run_t *r)
{
    if (r->m) nmc_model_free(r->m);
    nmc_comm_free(r->comm); /* before the device: nccl's buffers live on it */
    if (r->dev) r->dev->destroy(r->dev);
    nmc_train_dataset_close(r->ds);
    if (r->job) nmc_job_free(r->job);
    if (r->store) nmc_store_close(r->store);
    free(r->src), free(r->explain);
    nmc_arena_free(r->arena);
    nmc_diags_free(&r->d);
}

/* The hash checkpoints carry: the resolved spec without the GPU layout (Automodel's
 * parallelism.num_nodes / num_gpus_per_node and what is derived from them), so a run can
 * resume at another world size with the same global batch. */
static void layout_free_hash(const run_t *r, char out[17])
{
    static const char *const keys[] = {"\"num_nodes\":", "\"num_gpus_per_node\":", "\"total_gpus\":",
                                       "\"data_parallel_size\":", "\"dp_cp_size\":",
                                       "\"gradient_accumulation_steps\":"};
    size_t n = strlen(r->explain), o = 0;
    char *buf = malloc(n + 1);
    if (!buf) abort();
    for (const char *line = r->explain; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
        const char *t = line + strspn(line, " ");
        bool drop = false;
        for (size_t k = 0; r->plan.backend == 0 && k < sizeof keys / sizeof keys[0]; k++)
            drop = drop || !strncmp(t, keys[k], strlen(keys[k]));
        if (!drop) memcpy(buf + o, line, len), o += len;
        line += len;
    }
    nmc_hash_hex(buf, o, out);
    free(buf);
}

/* The parent of self-spawned ranks: re-run this command as ranks 0..n-1 and wait. */
static int spawn_ranks(int argc, char **argv, int n, nmc_diags_t *d)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) {
        nmc_diag_add(d, NMC_SEV_ERROR, "launch-spawn-failed", NULL, 0, 0, 0,
                     "cannot find the nmc executable to start %d ranks: %s", n, strerror(errno));
        return 2;
    }
    exe[len] = '\0';
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args) abort();
    args[0] = exe, args[1] = "train";
    for (int i = 0; i < argc; i++) args[i + 2] = argv[i];
    nmc_spawn_result_t res;
    /* grace: rank 0 needs a moment to write status.json after a peer died */
    int rc = nmc_launch_spawn(args, n, NULL, 10.0, &res, d);
    free(args);
    if (rc < 0) return 2;
    return rc == 0 ? 0 : (res.status ? res.status : 1);
}

/* Where this process sits: launcher ranks, or (returns 1 in *spawned) the supervisor of
 * self-spawned ranks. Then the world check, the device, the communicator and the spec
 * check — all before any weights load. Returns the exit code (0 = go on). */
static int join(run_t *r, int argc, char **argv, bool *spawned)
{
    *spawned = false;
    if (nmc_launch_detect(&r->launch, NULL, NULL, &r->d)) return 2;
    RANK = r->launch.rank, WORLD = r->launch.world;
    r->writer = RANK == 0;
    if (RANK > 0) r->a.quiet = true; /* rank 0 reports for the job */
    if (r->a.eval_only) { /* evaluation is one process: rank 0 of any launch does it */
        if (RANK != 0) return -1;
        r->launch.world = 1, WORLD = 1;
        return 0;
    }
    /* the layout first, to know whether to spawn: a launcher's ranks are checked below;
     * without one, this machine's GPUs (or, with none, at most one CPU rank per core) */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int can = r->launch.source != NMC_LAUNCH_NONE || nmc_dev_cuda_count() > 0 ? INT_MAX
            : (int)(cores > 1 ? cores : 1);
    if (nmc_dev_plan_job_for(r->job, r->a.device, can, &r->dplan, &r->d)) return 1;
    int64_t nodes = r->dplan.num_nodes, gpn = r->dplan.total_gpus / (nodes > 0 ? nodes : 1);
    if (nmc_launch_should_spawn(&r->launch, nodes, gpn)) {
        *spawned = true;
        nmc_diags_free(&r->d); /* rank 0 prints the job's notes */
        nmc_diags_init(&r->d);
        return spawn_ranks(argc, argv, (int)gpn, &r->d);
    }
    if (nmc_launch_check_world(&r->launch, r->dplan.total_gpus, WORLD > 1 ? gpn : 0, &r->d)) return 1;
    char spec[32];
    const char *dev = r->a.device;
    if (WORLD > 1 && (!dev || !strcmp(dev, "auto")) && nmc_dev_cuda_count() > 0) /* a GPU per rank */
        snprintf(spec, sizeof spec, "cuda:%d", r->launch.local_rank), dev = spec;
    if (nmc_dev_open_for_job(r->job, dev, WORLD, &r->dev, NULL, &r->d)) return 1;
    const char *kind = getenv("NMC_COMM");
    nmc_comm_mem_t mem = r->dev->kind == NMC_DEV_CUDA ? NMC_COMM_MEM_DEVICE : NMC_COMM_MEM_HOST;
    if (nmc_comm_open(&r->launch, kind && *kind ? kind : "auto", mem, NULL, &r->comm, &r->d)) return 1;
    r->plan.dp_rank = RANK, r->plan.dp_world = WORLD;
    const char *z = getenv("NMC_ZERO1");
    if (z && *z && strcmp(z, "0")) r->a.zero1 = true;
    if (WORLD > 1 && nmc_comm_check_same_spec(r->comm, nmc_comm_hash64(r->explain, strlen(r->explain)), &r->d))
        return 1;
    return 0;
}

/* CPU threads of this process: --threads; else the cores it may run on, shared evenly by
 * the ranks of this node unless the launcher already bound each rank to its own cores
 * (every rank taking every core would run local_size x cores threads on the cores). */
static int rank_threads(int asked, int local_size)
{
    if (asked > 0) return asked;
    int restricted = 0, cores = nmc_cpu_cores(&restricted);
    if (local_size <= 1 || restricted) return cores;
    return cores / local_size > 1 ? cores / local_size : 1;
}

int nmc_cmd_train(int argc, char **argv)
{
    run_t r;
    memset(&r, 0, sizeof r);
    int rc = parse_args(argc, argv, &r.a);
    if (rc) return rc;
    if (r.a.help) {
        fputs(USAGE, stdout);
        return 0;
    }
    nmc_diags_init(&r.d);
    r.arena = nmc_arena_new();
    bool spawned = false;
    RANK = 0, WORLD = 1;
    { /* rank known before anything prints */
        nmc_launch_t l;
        nmc_diags_t tmp;
        nmc_diags_init(&tmp);
        int local = 1;
        if (nmc_launch_detect(&l, NULL, NULL, &tmp) == 0) RANK = l.rank, WORLD = l.world, local = l.local_size;
        nmc_diags_free(&tmp);
        nmc_cpu_set_threads(rank_threads(r.a.threads, local));
    }
    rc = nmc_train_load_job(r.a.job, r.a.backend, r.arena, &r.plan, &r.src, &r.src_len, &r.explain, &r.job, &r.d);
    if (rc == 0) {
        rc = join(&r, argc, argv, &spawned);
        if (rc < 0) { /* eval-only under a launcher: only rank 0 evaluates */
            cleanup(&r);
            return 0;
        }
    }
    if (!spawned) render(&r.d, r.src, r.src_len); /* job findings, refusals and notices come first */
    if (rc == 0 && !spawned) {
        layout_free_hash(&r, r.hash);
        rc = resolve(&r);
        if (!r.a.eval_only) rc = agree(&r, rc, "resolving the model and filesets in the store");
        if (rc == 0) rc = r.a.eval_only ? eval_only(&r) : train(&r);
    }
    bool broken = WORLD > 1 && r.comm && comm_broken(&r);
    render(&r.d, NULL, 0);
    if (broken) { /* end the whole job: the other ranks may be blocked in a collective */
        fflush(NULL);
        r.comm->abort(r.comm, rc ? rc : 1, NULL);
    }
    cleanup(&r);
    return rc;
}
