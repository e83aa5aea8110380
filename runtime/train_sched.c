/* train_sched.c — learning-rate schedules: transformers' get_scheduler family (Unsloth)
 * and NeMo/Megatron's OptimizerParamScheduler decay styles (Automodel).
 *
 * `done` is the number of optimizer steps already taken (the scheduler's position); the
 * step about to run uses nmc_sched_lr(s, done). All arithmetic in double, in the order
 * Python evaluates it, so the values equal the reference to the last bit or nearly.
 *
 * transformers (lr = base_lr * lambda(done)), W = warmup, N = total:
 *   warmup (all but constant): done < W  ->  done / max(1, W)
 *   linear:        max(0, (N - done) / max(1, N - W))
 *   cosine:        p = (done - W) / max(1, N - W);  max(0, 0.5 (1 + cos(pi c 2 p))), c = 0.5
 *   restarts:      p as above; p >= 1 -> 0; else max(0, 0.5 (1 + cos(pi ((c p) mod 1)))), c = 1
 *   constant:      1;  constant_with_warmup: warmup, then 1
 * NeMo (OptimizerParamScheduler, init lr 0, decay over N steps):
 *   W > 0 and done <= W:  max_lr * done / W
 *   constant: max_lr;  done > N: min_lr
 *   r = (done - W) / (N - W);  linear: coeff = 1 - r;  cosine: coeff = 0.5 (cos(pi r) + 1)
 *   lr = min_lr + coeff (max_lr - min_lr)
 */
#include "train.h"
#include <math.h>

static double hf_lambda(const nmc_sched_t *s, int64_t done)
{
    double W = (double)s->warmup, N = (double)s->total, x = (double)done;
    if (s->kind == NMC_SCHED_CONSTANT) return 1.0;
    if (done < s->warmup) return x / (W > 1.0 ? W : 1.0);
    double span = N - W > 1.0 ? N - W : 1.0;
    double p = (x - W) / span;
    switch (s->kind) {
    case NMC_SCHED_LINEAR: {
        double v = (N - x) / span;
        return v > 0.0 ? v : 0.0;
    }
    case NMC_SCHED_COSINE: {
        double v = 0.5 * (1.0 + cos(M_PI * s->num_cycles * 2.0 * p));
        return v > 0.0 ? v : 0.0;
    }
    case NMC_SCHED_COSINE_RESTARTS: {
        if (p >= 1.0) return 0.0;
        double v = 0.5 * (1.0 + cos(M_PI * fmod(s->num_cycles * p, 1.0)));
        return v > 0.0 ? v : 0.0;
    }
    default: return 1.0; /* constant_with_warmup after warmup */
    }
}

static double nemo_lr(const nmc_sched_t *s, int64_t done)
{
    double max_lr = s->base_lr, min_lr = s->min_lr;
    if (s->warmup > 0 && done <= s->warmup) return max_lr * (double)done / (double)s->warmup;
    if (s->kind == NMC_SCHED_NEMO_CONSTANT) return max_lr;
    if (done > s->total) return min_lr;
    int64_t decay = s->total - s->warmup;
    if (decay <= 0) return min_lr;
    double r = (double)(done - s->warmup) / (double)decay;
    double coeff = s->kind == NMC_SCHED_NEMO_LINEAR ? 1.0 - r : 0.5 * (cos(M_PI * r) + 1.0);
    return min_lr + coeff * (max_lr - min_lr);
}

double nmc_sched_lr(const nmc_sched_t *s, int64_t done)
{
    if (done < 0) done = 0;
    switch (s->kind) {
    case NMC_SCHED_NEMO_COSINE:
    case NMC_SCHED_NEMO_LINEAR:
    case NMC_SCHED_NEMO_CONSTANT: return nemo_lr(s, done);
    default: return s->base_lr * hf_lambda(s, done);
    }
}

const char *nmc_sched_name(nmc_sched_kind_t k)
{
    static const char *const names[] = {"linear", "cosine", "constant", "constant_with_warmup",
                                        "cosine_with_restarts", "nemo-cosine", "nemo-linear",
                                        "nemo-constant"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}
