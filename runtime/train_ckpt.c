/* train_ckpt.c — training checkpoints for exact resume.
 *
 * <run_dir>/checkpoints/step-<8 digits>/ holds
 *   trainable.safetensors   every trainable parameter, F32, under its model name
 *   optimizer.safetensors   Adam moments "<name>.exp_avg" / "<name>.exp_avg_sq" (none for SGD)
 *   trainer_state.json      {"format":1,"step","optimizer_step","epoch","batch_in_epoch",
 *                            "rng_offset" (decimal string: a uint64),"tokens","elapsed_s",
 *                            "spec_hash","world","micro_batch","batches_per_epoch"}
 *                            (the last three optional on reading: 1, unknown, unknown)
 * Data parallelism: rank 0 writes; the moments are always the full, unsharded tensors
 * (ZeRO-1 gathers them first), so a checkpoint resumes at any world size: each rank
 * re-slices the flat moments for its shard at load time, and the trainer converts the
 * data position (train.c).
 * A checkpoint is built in checkpoints/.tmp-step-<N>-<pid> and renamed into place, so a
 * directory named step-* is always complete. Only the newest `keep` are kept.
 * Resume restores weights, moments, the optimizer step count, the model RNG counter and
 * the data position; the schedule position is the step count itself.
 */
#include "train.h"
#include "json.h"
#include "safetensors.h"
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_FORMAT 1

static int io_err(nmc_diags_t *d, const char *path, const char *what)
{
    nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "%s: %s", what, strerror(errno));
    return -1;
}

/* rm -rf of a checkpoint directory (flat: files only). */
static void remove_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(dp))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(dp);
    }
    rmdir(dir);
}

static int write_tensors(const char *path, nmc_optim_t *o, int which, nmc_diags_t *d)
{
    /* which: 0 weights, 1 moments */
    size_t n = which ? (o->cfg.kind == NMC_OPTIM_SGD ? 0 : 2 * o->n) : o->n;
    nmc_st_write_tensor_t *t = calloc(n ? n : 1, sizeof *t);
    float **bufs = calloc(n ? n : 1, sizeof *bufs);
    char **names = calloc(n ? n : 1, sizeof *names);
    int rc = 0;
    for (size_t k = 0; k < n && rc == 0; k++) {
        nmc_param_t *p = o->params[which ? k / 2 : k];
        bufs[k] = malloc((size_t)p->numel * sizeof(float));
        if (!bufs[k]) abort();
        if (!which) {
            rc = nmc_model_param_read(o->model, p, bufs[k], d);
            names[k] = strdup(p->name);
        } else {
            const float *src = (k % 2) ? o->v[k / 2] : o->m[k / 2];
            if (o->gm) /* ZeRO-1: the gathered flat moments */
                src = ((k % 2) ? o->gv : o->gm) + o->offs[k / 2];
            if (o->dev->download_f32(o->dev, bufs[k], src, NMC_DTYPE_F32, (size_t)p->numel)) {
                nmc_diag_add(d, NMC_SEV_ERROR, "train-device", NULL, 0, 0, 0, "%s",
                             o->dev->last_error(o->dev));
                rc = -1;
            }
            size_t len = strlen(p->name) + 16;
            names[k] = malloc(len);
            snprintf(names[k], len, "%s.%s", p->name, (k % 2) ? "exp_avg_sq" : "exp_avg");
        }
        t[k] = (nmc_st_write_tensor_t){.name = names[k], .dtype = NMC_ST_F32, .ndim = p->ndim,
                                       .shape = {p->shape[0], p->shape[1]}, .data = bufs[k]};
    }
    char step[32];
    snprintf(step, sizeof step, "%ld", o->step);
    nmc_st_kv_t meta[] = {{"format", "nmc-train-checkpoint"}, {"optimizer_step", step}};
    if (rc == 0) rc = nmc_st_write(path, t, n, meta, 2, d);
    for (size_t k = 0; k < n; k++) free(bufs[k]), free(names[k]);
    free(bufs), free(names), free(t);
    return rc;
}

static int write_state(const char *path, const nmc_optim_t *o, const nmc_ckpt_state_t *st,
                       nmc_diags_t *d)
{
    FILE *f = fopen(path, "w");
    if (!f) return io_err(d, path, "cannot write");
    nmc_json_writer_t w;
    nmc_jw_init(&w, f, 2);
    nmc_jw_begin_object(&w);
    nmc_jw_key(&w, "format"), nmc_jw_int(&w, CKPT_FORMAT);
    nmc_jw_key(&w, "step"), nmc_jw_int(&w, st->step);
    nmc_jw_key(&w, "optimizer_step"), nmc_jw_int(&w, o->step);
    nmc_jw_key(&w, "epoch"), nmc_jw_int(&w, st->epoch);
    nmc_jw_key(&w, "batch_in_epoch"), nmc_jw_int(&w, st->batch_in_epoch);
    char rng[32];
    snprintf(rng, sizeof rng, "%" PRIu64, st->rng_offset);
    nmc_jw_key(&w, "rng_offset"), nmc_jw_string(&w, rng);
    nmc_jw_key(&w, "tokens"), nmc_jw_int(&w, st->tokens);
    nmc_jw_key(&w, "elapsed_s"), nmc_jw_double(&w, st->elapsed_s);
    nmc_jw_key(&w, "spec_hash"), nmc_jw_string(&w, st->spec_hash);
    nmc_jw_key(&w, "world"), nmc_jw_int(&w, st->world > 0 ? st->world : 1);
    nmc_jw_key(&w, "micro_batch"), nmc_jw_int(&w, st->micro_batch);
    nmc_jw_key(&w, "batches_per_epoch"), nmc_jw_int(&w, st->batches_per_epoch);
    nmc_jw_end_object(&w);
    fputc('\n', f);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        return io_err(d, path, "cannot write");
    }
    return fclose(f) == 0 ? 0 : io_err(d, path, "cannot write");
}

/* step numbers of complete checkpoints, sorted ascending; returns the count */
static size_t list_steps(const char *run_dir, int64_t **out)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    *out = NULL;
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "step-%lld%c", &s, &tail) != 1) continue;
        char st[4096 + 512];
        struct stat sb;
        snprintf(st, sizeof st, "%s/%s/trainer_state.json", dir, e->d_name);
        if (stat(st, &sb) != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            *out = realloc(*out, cap * sizeof **out);
            if (!*out) abort();
        }
        (*out)[n++] = s;
    }
    closedir(dp);
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of entries */
        for (size_t j = i; j > 0 && (*out)[j - 1] > (*out)[j]; j--) {
            int64_t t = (*out)[j];
            (*out)[j] = (*out)[j - 1], (*out)[j - 1] = t;
        }
    return n;
}

static void prune(const char *run_dir, int keep)
{
    int64_t *steps;
    size_t n = list_steps(run_dir, &steps);
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/checkpoints/step-%08lld", run_dir, (long long)steps[i]);
        remove_dir(p);
    }
    free(steps);
}

int nmc_ckpt_save(const char *run_dir, nmc_optim_t *o, const nmc_ckpt_state_t *st, int keep,
                  char **dir_out, nmc_diags_t *d)
{
    char base[4096], tmp[4200], fin[4200], p[4300];
    snprintf(base, sizeof base, "%s/checkpoints", run_dir);
    if (nmc_run_mkdirs(base, d)) return -1;
    snprintf(tmp, sizeof tmp, "%s/.tmp-step-%08lld-%ld", base, (long long)st->step, (long)getpid());
    snprintf(fin, sizeof fin, "%s/step-%08lld", base, (long long)st->step);
    remove_dir(tmp);
    if (mkdir(tmp, 0755) != 0) return io_err(d, tmp, "cannot create directory");
    int rc = 0;
    snprintf(p, sizeof p, "%s/trainable.safetensors", tmp);
    rc = write_tensors(p, o, 0, d);
    snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
    if (rc == 0) rc = write_tensors(p, o, 1, d);
    snprintf(p, sizeof p, "%s/trainer_state.json", tmp);
    if (rc == 0) rc = write_state(p, o, st, d);
    if (rc == 0) {
        remove_dir(fin); /* a checkpoint of the same step from an earlier attempt */
        if (rename(tmp, fin) != 0) rc = io_err(d, fin, "cannot rename the checkpoint into place");
    }
    if (rc) {
        remove_dir(tmp);
        return -1;
    }
    prune(run_dir, keep > 0 ? keep : 2);
    if (dir_out) *dir_out = strdup(fin);
    return 0;
}

char *nmc_ckpt_latest(const char *run_dir)
{
    int64_t *steps;
    size_t n = list_steps(run_dir, &steps);
    if (n == 0) return NULL;
    char p[4096];
    snprintf(p, sizeof p, "%s/checkpoints/step-%08lld", run_dir, (long long)steps[n - 1]);
    free(steps);
    return strdup(p);
}

static int bad_ckpt(nmc_diags_t *d, const char *file, const char *fmt, const char *what)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-checkpoint-invalid", file, 0, 0, 0, fmt, what);
    nmc_diag_set_help(r, "the checkpoint is damaged or from another nmc version; remove it "
                         "(or run without --resume) to start fresh");
    return -1;
}

static int64_t get_int(const nmc_json_t *o, const char *k, bool *ok)
{
    const nmc_json_t *v = nmc_json_get(o, k);
    if (!v || v->kind != NMC_JSON_NUMBER || !v->u.num.int_ok) {
        *ok = false;
        return 0;
    }
    return v->u.num.i;
}

static int read_state(const char *path, const char *spec_hash, nmc_ckpt_state_t *st, long *opt_step,
                      nmc_diags_t *d)
{
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *root = NULL;
    int rc = -1;
    if (nmc_json_parse_file(a, path, NULL, &root, NULL, NULL, d) != 0) goto out;
    bool ok = root->kind == NMC_JSON_OBJECT;
    if (ok && get_int(root, "format", &ok) != CKPT_FORMAT) ok = false;
    st->step = get_int(root, "step", &ok);
    *opt_step = (long)get_int(root, "optimizer_step", &ok);
    st->epoch = get_int(root, "epoch", &ok);
    st->batch_in_epoch = get_int(root, "batch_in_epoch", &ok);
    st->tokens = get_int(root, "tokens", &ok);
    bool opt_ok = true; /* optional (absent in checkpoints of one-process nmc) */
    st->world = nmc_json_get(root, "world") ? get_int(root, "world", &opt_ok) : 1;
    st->micro_batch = nmc_json_get(root, "micro_batch") ? get_int(root, "micro_batch", &opt_ok) : 0;
    st->batches_per_epoch = nmc_json_get(root, "batches_per_epoch") ? get_int(root, "batches_per_epoch", &opt_ok) : 0;
    if (!opt_ok || st->world < 1 || st->micro_batch < 0 || st->batches_per_epoch < 0) ok = false;
    const nmc_json_t *rng = nmc_json_get(root, "rng_offset");
    const nmc_json_t *el = nmc_json_get(root, "elapsed_s");
    const nmc_json_t *h = nmc_json_get(root, "spec_hash");
    if (!ok || !rng || rng->kind != NMC_JSON_STRING || !el || el->kind != NMC_JSON_NUMBER || !h ||
        h->kind != NMC_JSON_STRING || h->u.str.len != 16) {
        bad_ckpt(d, path, "%s is not a valid nmc trainer state", "trainer_state.json");
        goto out;
    }
    st->rng_offset = strtoull(rng->u.str.s, NULL, 10);
    st->elapsed_s = el->u.num.d;
    memcpy(st->spec_hash, h->u.str.s, 17);
    if (spec_hash && strcmp(spec_hash, st->spec_hash) != 0) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-resume-spec-mismatch", path, 0, 0, 0,
                                     "cannot resume: the checkpoint was made for a different job spec "
                                     "(spec hash %s, this job %s)", st->spec_hash, spec_hash);
        nmc_diag_set_help(r, "resume with the exact job file of the interrupted run, or start fresh "
                             "without --resume (or with another --output-dir)");
        goto out;
    }
    rc = 0;
out:
    nmc_arena_free(a);
    return rc;
}

static int load_tensor(const nmc_st_t *st, const char *name, const nmc_param_t *p, float *host,
                       const char *file, nmc_diags_t *d)
{
    const nmc_st_tensor_t *t = nmc_st_find(st, name);
    if (!t) return bad_ckpt(d, file, "tensor %s is missing", name);
    if (t->dtype != NMC_ST_F32 || t->numel != p->numel)
        return bad_ckpt(d, file, "tensor %s has the wrong dtype or shape for this model", name);
    return nmc_st_to_f32(t, host, d);
}

/* Moment k (0 exp_avg, 1 exp_avg_sq) of param i from host h[numel]: the whole tensor, or
 * with ZeRO-1 the part inside this rank's shard of the flat vector. */
static int upload_moment(nmc_optim_t *o, size_t i, int k, const float *h)
{
    size_t n = (size_t)o->params[i]->numel;
    if (!o->zero1 || !o->comm) return o->dev->upload_f32(o->dev, k ? o->v[i] : o->m[i], NMC_DTYPE_F32, h, n);
    size_t lo = (size_t)o->comm->rank * o->chunk, hi = lo + o->chunk;
    size_t p0 = o->offs[i], p1 = p0 + n;
    size_t a = p0 > lo ? p0 : lo, b = p1 < hi ? p1 : hi;
    if (a >= b) return 0;
    return o->dev->upload_f32(o->dev, (k ? o->zv : o->zm) + (a - lo), NMC_DTYPE_F32, h + (a - p0), b - a);
}

static int load_tensors(const char *dir, nmc_optim_t *o, nmc_diags_t *d)
{
    char wp[4200], op[4200];
    snprintf(wp, sizeof wp, "%s/trainable.safetensors", dir);
    snprintf(op, sizeof op, "%s/optimizer.safetensors", dir);
    nmc_st_t *ws = NULL, *os = NULL;
    int rc = -1;
    if (nmc_st_open(wp, &ws, d) || nmc_st_open(op, &os, d)) goto out;
    if (nmc_st_count(ws) != o->n) {
        bad_ckpt(d, wp, "%s holds a different set of trainable tensors than this model", "the checkpoint");
        goto out;
    }
    for (size_t i = 0; i < o->n; i++) {
        nmc_param_t *p = o->params[i];
        float *h = malloc((size_t)p->numel * sizeof(float));
        if (!h) abort();
        int r = load_tensor(ws, p->name, p, h, wp, d);
        if (r == 0) r = nmc_model_param_write(o->model, p, h, d);
        char nm[1024];
        for (int k = 0; k < 2 && r == 0 && o->cfg.kind != NMC_OPTIM_SGD; k++) {
            snprintf(nm, sizeof nm, "%s.%s", p->name, k ? "exp_avg_sq" : "exp_avg");
            r = load_tensor(os, nm, p, h, op, d);
            if (r == 0 && upload_moment(o, i, k, h))
                r = bad_ckpt(d, op, "%s", o->dev->last_error(o->dev));
        }
        free(h);
        if (r) goto out;
    }
    rc = 0;
out:
    if (ws) nmc_st_close(ws);
    if (os) nmc_st_close(os);
    return rc;
}

int nmc_ckpt_load(const char *dir, nmc_optim_t *o, const char *spec_hash, nmc_ckpt_state_t *st,
                  nmc_diags_t *d)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/trainer_state.json", dir);
    long opt_step = 0;
    memset(st, 0, sizeof *st);
    if (read_state(p, spec_hash, st, &opt_step, d)) return -1;
    if (load_tensors(dir, o, d)) return -1;
    o->step = opt_step;
    return 0;
}
