/* train_bench.c — nmc's training step on one GPU: tokens/s and peak device memory of
 * LoRA or full fine-tuning through runtime/model.h on the CUDA device. Driven by
 * bench/gpu/train_bench.py, which creates the model and times transformers + PEFT on the
 * same shapes in the same run.
 *
 *   train_bench MODEL_DIR lora|full B T STEPS [DEVICE]
 *
 * One optimizer step = zero grads, forward + backward of one B x T micro-batch (random
 * ids, every position labelled, one document per row), global grad norm (device sum of
 * squares, one download) with clipping at 1.0, AdamW (fp32 master, bf16 copy) on every
 * trainable tensor. This is the work of `nmc train` per step minus data loading and
 * logging. Two warm-up steps are not timed. Unless NMC_CUDA_FAST=0 is in the environment
 * the device runs its fast path (the default), and where the device offers dev->sumsq_many / adamw_many the
 * optimizer uses them: one squared-norm pass, clipping folded into one AdamW launch over
 * every tensor, no host sync for the norm. Prints one JSON line:
 *   {"mode", "B", "T", "steps", "params", "trainable", "tokens_per_s", "step_ms",
 *    "peak_bytes", "ctx_bytes", "loss_first", "loss_last", "load_s", "device", "fast",
 *    "profiled"}
 * NMC_BENCH_PROFILE=1 in the environment also prints the timed steps' per-op table
 * (bench/dev_profile.h, every op synchronized: the step is slower than unprofiled, and the
 * JSON line says "profiled": 1).
 * Exit 1 on any error (message on stderr).
 */
#include "../dev_profile.h"
#include "dev.h"
#include "dev_select.h"
#include "model.h"
#include "nmc_dropout_rng.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const SEVEN[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                    "gate_proj", "up_proj", "down_proj"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die_diag(const char *what, nmc_diags_t *d)
{
    fprintf(stderr, "train_bench: %s: %s: %s\n", what, d->n ? d->items[0].code : "?",
            d->n ? d->items[0].message : "?");
    exit(1);
}
static void die_dev(const char *what, nmc_dev_t *dv)
{
    fprintf(stderr, "train_bench: %s: %s\n", what, dv->last_error(dv));
    exit(1);
}

typedef struct {
    nmc_param_t **p;
    float **m, **v;
    size_t n;
    nmc_dev_adam_t *tab; /* multi-tensor tables (used when the device has the ops) */
    const float **grads;
    size_t *numel;
} opt_t;

static void opt_init(opt_t *o, nmc_model_t *model)
{
    nmc_dev_t *dv = nmc_model_dev(model);
    size_t n;
    nmc_param_t *ps = nmc_model_params(model, &n);
    o->p = calloc(n, sizeof *o->p);
    o->m = calloc(n, sizeof *o->m);
    o->v = calloc(n, sizeof *o->v);
    if (!o->p || !o->m || !o->v) abort();
    o->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ps[i].trainable) continue;
        size_t bytes = sizeof(float) * (size_t)ps[i].numel;
        o->p[o->n] = &ps[i];
        o->m[o->n] = dv->alloc(dv, bytes);
        o->v[o->n] = dv->alloc(dv, bytes);
        if (!o->m[o->n] || !o->v[o->n]) die_dev("allocating optimizer state", dv);
        o->n++;
    }
    o->tab = calloc(o->n + 1, sizeof *o->tab);
    o->grads = calloc(o->n + 1, sizeof *o->grads);
    o->numel = calloc(o->n + 1, sizeof *o->numel);
    if (!o->tab || !o->grads || !o->numel) abort();
    for (size_t i = 0; i < o->n; i++) {
        nmc_param_t *p = o->p[i];
        o->tab[i] = (nmc_dev_adam_t){.p = p->master, .g = p->grad, .m = o->m[i], .v = o->v[i],
                                     .n = (size_t)p->numel,
                                     .p_act = p->data != (void *)p->master ? p->data : NULL,
                                     .wd = p->weight_decay ? 0.01f : 0.0f};
        o->grads[i] = p->grad;
        o->numel[i] = (size_t)p->numel;
    }
}

/* the same step through the multi-tensor ops: no host sync, clipping inside AdamW */
static void opt_step_many(opt_t *o, nmc_dev_t *dv, double *norm_sq_dev, long step)
{
    if (dv->zero(dv, norm_sq_dev, sizeof(double))) die_dev("zero", dv);
    if (dv->sumsq_many(dv, norm_sq_dev, o->grads, o->numel, o->n)) die_dev("sumsq_many", dv);
    if (dv->adamw_many(dv, o->tab, o->n, 1e-5f, 0.9f, 0.999f, 1e-8f, 0, step, norm_sq_dev, 1.0f))
        die_dev("adamw_many", dv);
}

static void opt_step(opt_t *o, nmc_dev_t *dv, double *norm_sq_dev, long step)
{
    if (dv->sumsq_many && dv->adamw_many) {
        opt_step_many(o, dv, norm_sq_dev, step);
        return;
    }
    double sq = 0;
    if (dv->zero(dv, norm_sq_dev, sizeof(double))) die_dev("zero", dv);
    for (size_t i = 0; i < o->n; i++)
        if (dv->sumsq(dv, norm_sq_dev, o->p[i]->grad, (size_t)o->p[i]->numel)) die_dev("sumsq", dv);
    if (dv->download(dv, &sq, norm_sq_dev, sizeof sq)) die_dev("download norm", dv);
    double norm = sqrt(sq);
    if (norm > 1.0) /* clip_grad_norm_(max_norm = 1) */
        for (size_t i = 0; i < o->n; i++)
            if (dv->scale(dv, o->p[i]->grad, (size_t)o->p[i]->numel, (float)(1.0 / (norm + 1e-6))))
                die_dev("scale", dv);
    for (size_t i = 0; i < o->n; i++) {
        nmc_param_t *p = o->p[i];
        void *act = p->data != (void *)p->master ? p->data : NULL;
        if (dv->adamw(dv, p->master, act, p->grad, o->m[i], o->v[i], (size_t)p->numel, 1e-5f,
                      0.9f, 0.999f, 1e-8f, p->weight_decay ? 0.01f : 0.0f, 0, step))
            die_dev("adamw", dv);
    }
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: train_bench MODEL_DIR lora|full B T STEPS [DEVICE]\n");
        return 2;
    }
    const char *dir = argv[1];
    int lora = !strcmp(argv[2], "lora");
    int B = atoi(argv[3]), T = atoi(argv[4]), steps = atoi(argv[5]);
    const char *spec = argc > 6 ? argv[6] : "cuda";
    if (B <= 0 || T <= 0 || steps <= 0) {
        fprintf(stderr, "train_bench: B, T and STEPS must be positive\n");
        return 2;
    }
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_dev_t *dv = NULL;
    if (nmc_dev_open(spec, &dv, &d)) die_diag("device", &d);

    nmc_lora_cfg_t lc;
    nmc_lora_cfg_default(&lc);
    lc.r = 16;
    lc.alpha = 32;
    lc.dropout = 0;
    lc.match = NMC_LORA_MATCH_SUFFIX;
    lc.target_modules = SEVEN;
    lc.n_target_modules = 7;
    nmc_model_opts_t o;
    nmc_model_opts_default(&o);
    o.model_dir = dir;
    o.dev = dv;
    o.train = lora ? NMC_TRAIN_LORA : NMC_TRAIN_FULL;
    o.lora = &lc;
    nmc_model_t *m = NULL;
    double t_load = now_s();
    if (nmc_model_load(&o, &m, &d)) die_diag("load", &d);
    t_load = now_s() - t_load;
    const nmc_model_config_t *cfg = nmc_model_config(m);
    size_t np;
    nmc_param_t *ps = nmc_model_params(m, &np);
    int64_t params = 0;
    for (size_t i = 0; i < np; i++)
        if (ps[i].kind != NMC_PARAM_LORA_A && ps[i].kind != NMC_PARAM_LORA_B) params += ps[i].numel;

    size_t N = (size_t)B * (size_t)T;
    int32_t *ids = malloc(N * 4), *labels = malloc(N * 4), *pos = malloc(N * 4), *doc = malloc(N * 4);
    if (!ids || !labels || !pos || !doc) abort();
    for (size_t i = 0; i < N; i++) {
        ids[i] = (int32_t)(nmc_dropout_uniform(7, i) * (float)cfg->vocab_size) % (int32_t)cfg->vocab_size;
        pos[i] = (int32_t)(i % (size_t)T);
        doc[i] = 0;
    }
    for (size_t i = 0; i < N; i++) labels[i] = (i + 1) % (size_t)T ? ids[i + 1] : -100;
    nmc_batch_t b = {.B = B, .T = T, .input_ids = ids, .labels = labels, .positions = pos,
                     .doc_start = doc, .first_sample = -1};
    for (size_t i = 0; i < N; i++) b.n_label_tokens += labels[i] != -100;
    b.n_real_tokens = (int64_t)N;

    opt_t opt;
    opt_init(&opt, m);
    double *nsq = dv->alloc(dv, sizeof(double));
    if (!nsq) die_dev("alloc", dv);
    const int warm = 2;
    const char *pe = getenv("NMC_BENCH_PROFILE");
    int profile = pe && *pe && strcmp(pe, "0") != 0;
    if (profile) prof_install(dv, 1);
    double loss_first = NAN, loss_last = NAN, t0 = 0;
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) {
            if (dv->sync(dv)) die_dev("sync", dv);
            if (profile) prof_reset();
            t0 = now_s();
        }
        double sum;
        int64_t ntok;
        if (nmc_model_zero_grads(m)) die_dev("zero grads", dv);
        if (nmc_model_fwd_bwd(m, &b, 1.0f / (float)b.n_label_tokens, &sum, &ntok, &d))
            die_diag("fwd_bwd", &d);
        opt_step(&opt, dv, nsq, s + 1);
        double loss = sum / (double)ntok;
        if (s == 0) loss_first = loss;
        loss_last = loss;
    }
    if (dv->sync(dv)) die_dev("sync", dv);
    double dt = now_s() - t0;
    if (profile) prof_print(steps);
    nmc_dev_mem_t ms;
    memset(&ms, 0, sizeof ms);
    nmc_dev_mem_stats(dv, &ms);
    printf("{\"mode\": \"%s\", \"B\": %d, \"T\": %d, \"steps\": %d, \"params\": %lld, "
           "\"trainable\": %lld, \"tokens_per_s\": %.1f, \"step_ms\": %.2f, \"peak_bytes\": %zu, "
           "\"ctx_bytes\": %zu, \"loss_first\": %.5f, \"loss_last\": %.5f, \"load_s\": %.2f, "
           "\"device\": \"%s\", \"fast\": %d, \"profiled\": %d}\n",
           lora ? "lora" : "full", B, T, steps, (long long)params,
           (long long)nmc_model_trainable_count(m), (double)N * steps / dt, 1e3 * dt / steps,
           ms.peak_bytes, ms.ctx_bytes, loss_first, loss_last, t_load, dv->name,
           nmc_dev_cuda_set_fast(dv, -1), profile);
    for (size_t i = 0; i < opt.n; i++) {
        dv->free(dv, opt.m[i]);
        dv->free(dv, opt.v[i]);
    }
    dv->free(dv, nsq);
    nmc_model_free(m);
    dv->destroy(dv);
    free(opt.p);
    free(opt.m);
    free(opt.v);
    free(opt.tab);
    free(opt.grads);
    free(opt.numel);
    free(ids);
    free(labels);
    free(pos);
    free(doc);
    nmc_diags_free(&d);
    return 0;
}
