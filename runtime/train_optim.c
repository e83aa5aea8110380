/* train_optim.c — the optimizer over a model's trainable parameters, and the global
 * gradient norm / clipping. Everything goes through the device table (runtime/dev.h), so
 * the same code drives the CPU and a GPU.
 *
 *   AdamW    torch.optim.AdamW (decoupled decay), dev->adamw with adam_l2 = 0
 *   Adam     torch.optim.Adam with weight_decay: coupled L2, dev->adamw with adam_l2 = 1
 *   SGD      torch.optim.SGD (momentum 0, as transformers' "sgd"): g += wd p; p -= lr g
 * Weight decay goes only to params whose weight_decay flag is set (HF Trainer rule: not
 * biases, not norm weights). clip: torch.nn.utils.clip_grad_norm_ (coef = max/(norm+1e-6),
 * applied only when below 1).
 * Where the device offers them (both devices do), the Adam step and the norm are one
 * multi-tensor call each (dev->adamw_many / sumsq_many over tables built once) instead of
 * one call per tensor: on a GPU that is two launches a step instead of ~2 per tensor; on
 * the CPU the same per-tensor kernels run in the same order (the same bits).
 */
#include "train.h"
#include <math.h>
#include <stdlib.h>

static int dev_fail(nmc_dev_t *dev, const char *what, nmc_diags_t *d)
{
    nmc_diag_add(d, NMC_SEV_ERROR, "train-device", NULL, 0, 0, 0, "%s failed on %s: %s", what,
                 dev->name, dev->last_error(dev));
    return -1;
}

int nmc_optim_init(nmc_optim_t *o, nmc_model_t *m, const nmc_optim_cfg_t *cfg, nmc_diags_t *d)
{
    *o = (nmc_optim_t){.cfg = *cfg, .dev = nmc_model_dev(m), .model = m};
    size_t np;
    nmc_param_t *ps = nmc_model_params(m, &np);
    o->params = calloc(np ? np : 1, sizeof *o->params);
    o->m = calloc(np ? np : 1, sizeof *o->m);
    o->v = calloc(np ? np : 1, sizeof *o->v);
    if (!o->params || !o->m || !o->v) abort();
    for (size_t i = 0; i < np; i++)
        if (ps[i].trainable) o->params[o->n++] = &ps[i];
    if (o->n == 0) {
        nmc_diag_add(d, NMC_SEV_ERROR, "train-no-trainable", NULL, 0, 0, 0,
                     "the model has no trainable parameters");
        return -1;
    }
    if (o->dev->sumsq_many) {
        o->mt_g = calloc(o->n, sizeof *o->mt_g);
        o->mt_n = calloc(o->n, sizeof *o->mt_n);
        if (!o->mt_g || !o->mt_n) abort();
        for (size_t i = 0; i < o->n; i++) {
            o->mt_g[i] = o->params[i]->grad;
            o->mt_n[i] = (size_t)o->params[i]->numel;
        }
    }
    if (cfg->kind == NMC_OPTIM_SGD) return 0;
    for (size_t i = 0; i < o->n; i++) {
        size_t bytes = (size_t)o->params[i]->numel * sizeof(float);
        o->m[i] = o->dev->alloc(o->dev, bytes);
        o->v[i] = o->dev->alloc(o->dev, bytes);
        if (!o->m[i] || !o->v[i]) {
            nmc_diag_add(d, NMC_SEV_ERROR, "train-out-of-memory", NULL, 0, 0, 0,
                         "cannot allocate optimizer state for %s on %s", o->params[i]->name,
                         o->dev->name);
            return -1;
        }
    }
    return 0;
}

/* The adamw_many table (after the moments exist; not with ZeRO-1, whose moments are
 * shards of the flat bucket). */
static nmc_dev_adam_t *adam_table(nmc_optim_t *o)
{
    if (o->mt_adam || !o->dev->adamw_many || !o->m[0] || !o->v[0]) return o->mt_adam;
    if (!(o->mt_adam = calloc(o->n, sizeof *o->mt_adam))) abort();
    for (size_t i = 0; i < o->n; i++) {
        nmc_param_t *p = o->params[i];
        o->mt_adam[i] = (nmc_dev_adam_t){
            .p = p->master, .p_act = (void *)p->master != p->data ? p->data : NULL,
            .g = p->grad, .m = o->m[i], .v = o->v[i], .n = (size_t)p->numel,
            .wd = p->weight_decay ? (float)o->cfg.weight_decay : 0.0f};
    }
    return o->mt_adam;
}

void nmc_optim_free(nmc_optim_t *o)
{
    if (!o->params) return;
    for (size_t i = 0; i < o->n; i++) {
        if (o->m[i]) o->dev->free(o->dev, o->m[i]);
        if (o->v[i]) o->dev->free(o->dev, o->v[i]);
    }
    nmc_optim_release_state(o);
    float *dp_bufs[] = {o->flat, o->zm, o->zv}; /* train_dp.c */
    for (size_t i = 0; i < 3; i++)
        if (dp_bufs[i]) o->dev->free(o->dev, dp_bufs[i]);
    free(o->offs);
    free(o->mt_adam), free(o->mt_g), free(o->mt_n);
    free(o->params), free(o->m), free(o->v);
    *o = (nmc_optim_t){0};
}

static int sgd_one(nmc_optim_t *o, nmc_param_t *p, float lr, float wd, nmc_diags_t *d)
{
    nmc_dev_t *dev = o->dev;
    size_t n = (size_t)p->numel;
    if (wd != 0.0f && dev->axpy(dev, p->grad, p->master, n, wd)) return dev_fail(dev, "sgd", d);
    if (dev->axpy(dev, p->master, p->grad, n, -lr)) return dev_fail(dev, "sgd", d);
    if ((void *)p->master != p->data && dev->f32_to_act(dev, p->data, p->master, n))
        return dev_fail(dev, "sgd", d);
    return 0;
}

int nmc_optim_step(nmc_optim_t *o, double lr, nmc_diags_t *d)
{
    nmc_dev_t *dev = o->dev;
    const nmc_optim_cfg_t *c = &o->cfg;
    o->step++;
    const nmc_dev_adam_t *tab = c->kind == NMC_OPTIM_SGD ? NULL : adam_table(o);
    if (tab) {
        if (dev->adamw_many(dev, tab, o->n, (float)lr, (float)c->beta1, (float)c->beta2,
                            (float)c->eps, c->kind == NMC_OPTIM_ADAM_L2, o->step, NULL, 0.0f))
            return dev_fail(dev, "the optimizer step", d);
        return 0;
    }
    for (size_t i = 0; i < o->n; i++) {
        nmc_param_t *p = o->params[i];
        float wd = p->weight_decay ? (float)c->weight_decay : 0.0f;
        if (c->kind == NMC_OPTIM_SGD) {
            if (sgd_one(o, p, (float)lr, wd, d)) return -1;
            continue;
        }
        void *act = (void *)p->master != p->data ? p->data : NULL;
        if (dev->adamw(dev, p->master, act, p->grad, o->m[i], o->v[i], (size_t)p->numel,
                       (float)lr, (float)c->beta1, (float)c->beta2, (float)c->eps, wd,
                       c->kind == NMC_OPTIM_ADAM_L2, o->step))
            return dev_fail(dev, "the optimizer step", d);
    }
    return 0;
}

int nmc_grad_norm(nmc_optim_t *o, double *norm, nmc_diags_t *d)
{
    nmc_dev_t *dev = o->dev;
    double *acc = dev->alloc(dev, sizeof(double));
    if (!acc) return dev_fail(dev, "allocation", d);
    int rc = 0; /* acc starts at 0: dev->alloc zeroes */
    if (o->mt_g)
        rc = dev->sumsq_many(dev, acc, o->mt_g, o->mt_n, o->n);
    else
        for (size_t i = 0; i < o->n && rc == 0; i++)
            rc = dev->sumsq(dev, acc, o->params[i]->grad, (size_t)o->params[i]->numel);
    double ss = 0.0;
    if (rc == 0) rc = dev->download(dev, &ss, acc, sizeof ss);
    dev->free(dev, acc);
    if (rc) return dev_fail(dev, "the gradient norm", d);
    *norm = sqrt(ss);
    return 0;
}

int nmc_grad_clip(nmc_optim_t *o, double norm, double max_norm, nmc_diags_t *d)
{
    if (max_norm <= 0.0) return 0;
    float coef = (float)max_norm / ((float)norm + 1e-6f);
    if (!(coef < 1.0f)) return 0;
    for (size_t i = 0; i < o->n; i++)
        if (o->dev->scale(o->dev, o->params[i]->grad, (size_t)o->params[i]->numel, coef))
            return dev_fail(o->dev, "gradient clipping", d);
    return 0;
}
