/* bench_cpu_train.c — nmc's side of the CPU training benchmark (bench/cpu_train/run.sh),
 * not a test.
 *
 * Loads an HF Llama checkpoint (config.json + model.safetensors) with the model engine
 * (runtime/model.h) on the CPU device, and times full optimizer steps on one random
 * micro-batch: zero grads, nmc_model_fwd_bwd (forward + backward, loss mean over labels),
 * then torch.optim.AdamW on every trainable tensor through dev->adamw. Warm-up steps
 * first, then timed steps; prints one line of key=value pairs that run.sh parses:
 *   nmc mode=lora B=4 T=256 threads=2 params=... trainable=... step_ms=... tok_s=...
 *       gflop_step=... gflops=... peak_gflops=... peak_pct=... loss0=... loss=...
 * step_ms is the FASTEST timed step (mean_ms the mean): the machine may be shared, and
 * the fastest step is the implementation's rate; peer.py reports the same way.
 * Tokens = B*T per step. GFLOP per step is the model's matmul work counted analytically
 * (count_flops below: linears, LoRA, causal attention, lm_head; elementwise ops ignored),
 * the same count for any implementation. The fp32 peak is measured in this process by
 * independent FMA chains (the method of bench/cpu_kernels.c) on one core, times threads.
 *
 * Usage: bench_cpu_train --model DIR --mode lora|full [--B 4] [--T 256] [--threads 2]
 *                        [--warmup 2] [--steps 5] [--rank 16] [--seed 1] [--profile 1]
 * --profile 1 wraps the device table's ops with timers and prints, per timed step, the
 * time of every op (matmuls by shape) to stderr: the tool for finding hot spots.
 */
#include "model.h"
#include "nmc_kernels.h"
#include "../dev_profile.h"
#include "../fma_peak.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *model, *mode;
    int B, T, threads, warmup, steps, rank, profile;
    unsigned seed;
} args_t;

#define now bench_now

/* one core's fp32 FMA peak (bench/fma_peak.h); 0 when the CPU has neither AVX-512 nor
 * AVX2+FMA */
static double core_peak_gflops(void) { return bench_core_peak_gflops(bench_vector_width(), 200000); }

/* ---- analytic FLOP count of one training step ----------------------------------------- */

/* Matmul FLOPs of forward + backward. Weight gradients only for trainable weights; input
 * gradients everywhere above the lowest trainable layer (layer 0's input needs none when
 * the embedding is frozen). Causal attention counts the lower triangle (T(T+1)/2 pairs):
 * forward QK^T + PV, backward 2.5x (scores recomputed, dP, dQ, dK, dV). */
static double count_flops(const nmc_model_config_t *c, int B, int T, int r, int full)
{
    double N = (double)B * T, D = (double)c->hidden_size, F = (double)c->intermediate_size;
    double qd = (double)c->num_heads * c->head_dim, kvd = (double)c->num_kv_heads * c->head_dim;
    double lin[7][2] = {{D, qd}, {D, kvd}, {D, kvd}, {qd, D}, {D, F}, {D, F}, {F, D}};
    double total = 0;
    for (int l = 0; l < c->num_layers; l++) {
        int need_dx = full || l > 0;
        for (int i = 0; i < 7; i++) {
            double in = lin[i][0], out = lin[i][1], mm = 2 * N * in * out;
            total += mm * (1 + (need_dx ? 1 : 0) + (full ? 1 : 0));
            if (!full) total += 2 * N * r * (in + out) * 3; /* fwd, dA/dB, d_h/dx of LoRA */
        }
        double att = 4.0 * B * (double)c->num_heads * c->head_dim * T * (T + 1) / 2;
        total += att * 3.5;
    }
    double head = 2 * N * D * (double)c->vocab_size;
    total += head * (2 + (full ? 1 : 0));
    return total;
}

/* ---- batch and optimizer ------------------------------------------------------------- */

static void make_batch(nmc_batch_t *b, int B, int T, int V, unsigned seed)
{
    size_t n = (size_t)B * T;
    int32_t *a = malloc(4 * n * sizeof(int32_t));
    if (!a) abort();
    b->B = B;
    b->T = T;
    b->input_ids = a;
    b->labels = a + n;
    b->positions = a + 2 * n;
    b->doc_start = a + 3 * n;
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        a[i] = (int32_t)((s >> 8) % (unsigned)V);
    }
    /* labels shifted as batch.h says; peer.py draws the same ids (make_ids) */
    for (size_t i = 0; i < n; i++) {
        int t = (int)(i % (size_t)T);
        b->labels[i] = t + 1 < T ? b->input_ids[i + 1] : NMC_IGNORE_INDEX;
        b->positions[i] = t;
        b->doc_start[i] = 0;
    }
    b->n_label_tokens = (int64_t)B * (T - 1);
    b->n_real_tokens = (int64_t)n;
    b->first_sample = -1;
}

typedef struct {
    nmc_param_t *p;
    float *m, *v;
} opt_slot_t;

static int die(const char *what, nmc_diags_t *d)
{
    fprintf(stderr, "bench_cpu_train: %s failed", what);
    if (d && d->n) fprintf(stderr, ": %s: %s", d->items[0].code, d->items[0].message);
    fputc('\n', stderr);
    return 1;
}

static int parse(int argc, char **argv, args_t *a)
{
    *a = (args_t){NULL, "lora", 4, 256, 2, 2, 5, 16, 0, 1};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--mode")) a->mode = v;
        else if (!strcmp(k, "--B")) a->B = atoi(v);
        else if (!strcmp(k, "--T")) a->T = atoi(v);
        else if (!strcmp(k, "--threads")) a->threads = atoi(v);
        else if (!strcmp(k, "--warmup")) a->warmup = atoi(v);
        else if (!strcmp(k, "--steps")) a->steps = atoi(v);
        else if (!strcmp(k, "--rank")) a->rank = atoi(v);
        else if (!strcmp(k, "--seed")) a->seed = (unsigned)atoi(v);
        else if (!strcmp(k, "--profile")) a->profile = atoi(v);
        else return -1;
    }
    if ((argc - 1) % 2 || !a->model || (strcmp(a->mode, "lora") && strcmp(a->mode, "full")) ||
        a->B < 1 || a->T < 2 || a->threads < 1 || a->warmup < 0 || a->steps < 1 || a->rank < 1)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    args_t a;
    if (parse(argc, argv, &a) != 0) {
        fprintf(stderr, "usage: bench_cpu_train --model DIR --mode lora|full [--B 4] [--T 256] "
                        "[--threads 2] [--warmup 2] [--steps 5] [--rank 16] [--seed 1]\n");
        return 2;
    }
    int full = !strcmp(a.mode, "full");
    nmc_cpu_set_threads(a.threads);
    nmc_lora_cfg_t lc;
    nmc_lora_cfg_default(&lc); /* r 16, alpha 32, dropout 0, all 7 projections */
    lc.r = a.rank;
    lc.alpha = 2.0 * a.rank;
    nmc_model_opts_t o;
    nmc_model_opts_default(&o);
    o.model_dir = a.model;
    o.train = full ? NMC_TRAIN_FULL : NMC_TRAIN_LORA;
    o.lora = &lc;
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *m = NULL;
    if (nmc_model_load(&o, &m, &d) != 0) return die("model load", &d);
    nmc_dev_t *dev = nmc_model_dev(m);
    const nmc_model_config_t *cfg = nmc_model_config(m);

    size_t np;
    nmc_param_t *ps = nmc_model_params(m, &np);
    opt_slot_t *slots = calloc(np, sizeof *slots);
    int ns = 0;
    int64_t params = 0;
    for (size_t i = 0; i < np; i++) {
        if (ps[i].kind != NMC_PARAM_LORA_A && ps[i].kind != NMC_PARAM_LORA_B) params += ps[i].numel;
        if (!ps[i].trainable) continue;
        size_t bytes = (size_t)ps[i].numel * sizeof(float);
        slots[ns] = (opt_slot_t){&ps[i], dev->alloc(dev, bytes), dev->alloc(dev, bytes)};
        if (!slots[ns].m || !slots[ns].v) return die("optimizer state allocation", NULL);
        ns++;
    }

    nmc_batch_t b;
    make_batch(&b, a.B, a.T, (int)cfg->vocab_size, a.seed);
    double loss0 = 0, loss = 0, t_timed = 0, t_min = 1e30;
    if (a.profile) prof_install(dev, 0);
    for (int s = 0; s < a.warmup + a.steps; s++) {
        if (s == a.warmup) prof_reset();
        double t0 = now(), ls;
        int64_t nt;
        if (nmc_model_zero_grads(m) != 0) return die("zero grads", NULL);
        if (nmc_model_fwd_bwd(m, &b, 1.0f / (float)b.n_label_tokens, &ls, &nt, &d) != 0)
            return die("fwd_bwd", &d);
        for (int i = 0; i < ns; i++) {
            nmc_param_t *p = slots[i].p;
            if (dev->adamw(dev, p->master, p->data != (void *)p->master ? p->data : NULL, p->grad,
                           slots[i].m, slots[i].v, (size_t)p->numel, 1e-4f, 0.9f, 0.999f, 1e-8f,
                           p->weight_decay ? 0.01f : 0.0f, 0, (long)s + 1) != 0)
                return die("adamw", NULL);
        }
        if (dev->sync(dev) != 0) return die("sync", NULL);
        double dt = now() - t0;
        if (s == 0) loss0 = ls / (double)nt;
        loss = ls / (double)nt;
        if (s >= a.warmup) t_timed += dt, t_min = dt < t_min ? dt : t_min;
    }
    if (a.profile) prof_print(a.steps);
    double step = t_min, flops = count_flops(cfg, a.B, a.T, a.rank, full);
    double peak = core_peak_gflops() * a.threads;
    double gf = flops / step / 1e9;
    printf("nmc mode=%s B=%d T=%d threads=%d params=%lld trainable=%lld step_ms=%.1f mean_ms=%.1f "
           "tok_s=%.1f gflop_step=%.2f gflops=%.1f peak_gflops=%.1f peak_pct=%.1f "
           "loss0=%.4f loss=%.4f\n",
           a.mode, a.B, a.T, a.threads, (long long)params,
           (long long)nmc_model_trainable_count(m), 1e3 * step, 1e3 * t_timed / a.steps, (double)a.B * a.T / step,
           flops / 1e9, gf, peak, peak > 0 ? 100 * gf / peak : 0.0, loss0, loss);
    for (int i = 0; i < ns; i++) dev->free(dev, slots[i].m), dev->free(dev, slots[i].v);
    free(slots);
    free(b.input_ids);
    nmc_model_free(m);
    nmc_diags_free(&d);
    return 0;
}
