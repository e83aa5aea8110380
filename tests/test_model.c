/* test_model.c — the decoder's training math against PyTorch / transformers / PEFT.
 *
 * Golden data: tests/data/golden/model/<m>.safetensors from tests/oracle/model_golden.py
 * (tiny-llama: llama3 rope, GQA, untied; tiny-qwen3: q/k norm, tied; tiny-qwen2: q/k/v
 * bias). One batch B=2, T=16 with a packed row (two documents + padding).
 *   full fine-tuning: loss and every parameter's gradient after one backward
 *   LoRA (PEFT r=4, alpha 8, 7 projections, PEFT's initial A and non-zero B loaded):
 *     loss and the gradients of every trainable tensor (Qwen2 also with bias "all")
 *   10 AdamW steps (lr 1e-3, wd 0.01 on every tensor, as torch.optim.AdamW over
 *     model.parameters()): the loss sequence
 * Tolerances (fp32 on both sides; differences come from summation order only):
 *   loss: relative 1e-5 (one step), 1e-4 (after 10 Adam steps, where rounding compounds)
 *   gradients: |x - ref| <= 1e-6 * max|ref| + 1e-4 * |ref| per element, per tensor;
 *     [V, D] gradients stored as row subsets are also checked by their sum of squares
 *     (relative 1e-4).
 * Also: recompute (activation checkpointing) gives the same gradients; LoRA dropout
 * gradients against central finite differences of the loss (same RNG counter);
 * NEFTune changes training loss only; errors for bad inputs and options.
 */
#include "lora.h"
#include "model.h"
#include "nmc_kernels.h"
#include "peft.h"
#include "safetensors.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LLAMA "tests/data/models/tiny-llama"
#define QWEN3 "tests/data/models/tiny-qwen3"
#define QWEN2 "tests/data/golden/tiny-qwen2"
#define GOLD(m) "tests/data/golden/model/" m ".safetensors"

static const char *const SEVEN[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                    "gate_proj", "up_proj", "down_proj"};

/* ---- helpers ----------------------------------------------------------------------- */

static nmc_st_t *open_gold(const char *path)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *st = NULL;
    int rc = nmc_st_open(path, &st, &d);
    ck_assert_msg(rc == 0, "cannot open %s: %s", path, d.n ? d.items[0].message : "");
    nmc_diags_free(&d);
    return st;
}

static const nmc_st_tensor_t *gt(nmc_st_t *st, const char *name)
{
    const nmc_st_tensor_t *t = nmc_st_find(st, name);
    ck_assert_msg(t != NULL, "golden tensor %s missing", name);
    return t;
}

static const float *gf(nmc_st_t *st, const char *name)
{
    const nmc_st_tensor_t *t = gt(st, name);
    ck_assert_int_eq(t->dtype, NMC_ST_F32);
    return t->data;
}

typedef struct {
    nmc_batch_t b;
    int32_t arr[4][64];
} gbatch_t;

static void load_batch(nmc_st_t *st, gbatch_t *g)
{
    const char *names[4] = {"batch.input_ids", "batch.labels", "batch.positions", "batch.doc_start"};
    for (int i = 0; i < 4; i++) {
        const nmc_st_tensor_t *t = gt(st, names[i]);
        ck_assert_int_eq(t->dtype, NMC_ST_I32);
        ck_assert_int_le(t->numel, 64);
        memcpy(g->arr[i], t->data, t->nbytes);
        g->b.B = (int)t->shape[0];
        g->b.T = (int)t->shape[1];
    }
    g->b.input_ids = g->arr[0];
    g->b.labels = g->arr[1];
    g->b.positions = g->arr[2];
    g->b.doc_start = g->arr[3];
    g->b.n_label_tokens = 0;
    for (int i = 0; i < g->b.B * g->b.T; i++) g->b.n_label_tokens += g->arr[1][i] != -100;
    g->b.n_real_tokens = g->b.B * g->b.T;
    g->b.first_sample = -1;
}

static nmc_model_t *load_model(const char *dir, nmc_train_mode_t mode, const nmc_lora_cfg_t *lc,
                               bool recompute)
{
    nmc_model_opts_t o;
    nmc_model_opts_default(&o);
    o.model_dir = dir;
    o.train = mode;
    o.lora = lc;
    o.recompute = recompute;
    o.ce_chunk = 7; /* odd chunk: exercises the chunk tail */
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *m = NULL;
    int rc = nmc_model_load(&o, &m, &d);
    ck_assert_msg(rc == 0, "load %s: %s: %s", dir, d.n ? d.items[0].code : "",
                  d.n ? d.items[0].message : "");
    nmc_diags_free(&d);
    return m;
}

static float *read_param(nmc_model_t *m, const nmc_param_t *p, bool grad)
{
    float *h = malloc(sizeof(float) * (size_t)p->numel);
    nmc_diags_t d;
    nmc_diags_init(&d);
    if (grad) nmc_model_dev(m)->download_f32(nmc_model_dev(m), h, p->grad, NMC_DTYPE_F32, (size_t)p->numel);
    else ck_assert_int_eq(nmc_model_param_read(m, p, h, &d), 0);
    nmc_diags_free(&d);
    return h;
}

/* |x - ref| <= 1e-6 * max|ref| + 1e-4 * |ref|, naming tensor and index on failure. */
static void compare(const char *what, const float *x, const float *ref, size_t n)
{
    double mx = 0, worst = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double tol = 1e-6 * mx + 1e-4 * fabs(ref[i]);
        worst = fmax(worst, fabs((double)x[i] - ref[i]) / tol);
        ck_assert_msg(fabs((double)x[i] - ref[i]) <= tol,
                      "%s[%zu]: got %.9g, expected %.9g (tol %.3g, max|ref| %.3g)", what, i,
                      x[i], ref[i], tol, mx);
    }
    if (getenv("NMC_TEST_VERBOSE")) fprintf(stderr, "%-70s worst |diff|/tol %.3f\n", what, worst);
}

static void check_rel(const char *what, double got, double ref, double rel)
{
    if (getenv("NMC_TEST_VERBOSE")) fprintf(stderr, "%-70s rel diff %.2e\n", what, fabs(got - ref) / fabs(ref));
    ck_assert_msg(fabs(got - ref) <= rel * fabs(ref), "%s: got %.9g, expected %.9g (rel %.1g)",
                  what, got, ref, rel);
}

/* The golden name of nmc param p under prefix ("full.", "lora.", ...). */
static void gold_name(char *buf, size_t cap, const char *prefix, const nmc_param_t *p, bool lora)
{
    if (!lora || strncmp(p->name, "base_model.", 11) == 0) {
        snprintf(buf, cap, "%s%s", prefix, p->name);
        return;
    }
    /* a base tensor trained in LoRA mode (bias): PEFT wraps the linear, the bias moves to
     * base_layer */
    const char *dot = strrchr(p->name, '.');
    snprintf(buf, cap, "%sbase_model.model.%.*s.base_layer%s", prefix, (int)(dot - p->name),
             p->name, dot);
}

static void check_grads(nmc_model_t *m, nmc_st_t *st, const char *prefix, bool lora)
{
    size_t n;
    nmc_param_t *ps = nmc_model_params(m, &n);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        nmc_param_t *p = &ps[i];
        if (!p->trainable) continue;
        char name[256], alt[300];
        gold_name(name, sizeof name, prefix, p, lora);
        float *g = read_param(m, p, true);
        const nmc_st_tensor_t *t = nmc_st_find(st, name + 0);
        snprintf(alt, sizeof alt, "grad.%s", name);
        t = nmc_st_find(st, alt);
        if (t) {
            ck_assert_int_eq(t->numel, p->numel);
            compare(alt, g, t->data, (size_t)p->numel);
        } else {
            char rn[300], ri[300], rs[300];
            snprintf(rn, sizeof rn, "rows.%s", name);
            snprintf(ri, sizeof ri, "rowidx.%s", name);
            snprintf(rs, sizeof rs, "sumsq.%s", name);
            const nmc_st_tensor_t *rows = gt(st, rn), *idx = gt(st, ri);
            int64_t D = p->shape[1];
            float *sel = malloc(sizeof(float) * (size_t)rows->numel);
            for (int64_t k = 0; k < idx->numel; k++)
                memcpy(sel + k * D, g + (int64_t)((const int32_t *)idx->data)[k] * D, sizeof(float) * (size_t)D);
            compare(rn, sel, rows->data, (size_t)rows->numel);
            check_rel(rs, nmc_cpu_sumsq(g, (size_t)p->numel), gf(st, rs)[0], 1e-4);
            free(sel);
        }
        free(g);
        checked++;
    }
    ck_assert_int_gt(checked, 0);
}

static double step(nmc_model_t *m, const gbatch_t *g)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    double loss = 0;
    int64_t nt = 0;
    int rc = nmc_model_fwd_bwd(m, &g->b, 1.0f / (float)g->b.n_label_tokens, &loss, &nt, &d);
    ck_assert_msg(rc == 0, "fwd_bwd: %s", d.n ? d.items[0].message : "");
    ck_assert_int_eq(nt, g->b.n_label_tokens);
    nmc_diags_free(&d);
    return loss / (double)nt;
}

/* ---- full fine-tuning --------------------------------------------------------------- */

static void full_case(const char *dir, const char *gold, bool recompute)
{
    nmc_st_t *st = open_gold(gold);
    gbatch_t g;
    load_batch(st, &g);
    nmc_model_t *m = load_model(dir, NMC_TRAIN_FULL, NULL, recompute);
    check_rel("full.loss", step(m, &g), gf(st, "full.loss")[0], 1e-5);
    check_grads(m, st, "full.", false);
    /* accumulation: a second identical micro-batch doubles every gradient */
    nmc_param_t *p = nmc_model_param_find(m, "model.layers.0.self_attn.q_proj.weight");
    ck_assert_ptr_nonnull(p);
    float *g1 = read_param(m, p, true);
    step(m, &g);
    float *g2 = read_param(m, p, true);
    for (int64_t i = 0; i < p->numel; i++) ck_assert_float_eq_tol(g2[i], 2 * g1[i], 1e-6f + 1e-5f * fabsf(g1[i]));
    free(g1);
    free(g2);
    nmc_model_free(m);
    nmc_st_close(st);
}

START_TEST(full_llama) { full_case(LLAMA, GOLD("llama"), false); }
END_TEST
START_TEST(full_qwen3) { full_case(QWEN3, GOLD("qwen3"), false); }
END_TEST
START_TEST(full_qwen2) { full_case(QWEN2, GOLD("qwen2"), false); }
END_TEST
START_TEST(full_llama_recompute) { full_case(LLAMA, GOLD("llama"), true); }
END_TEST
START_TEST(full_qwen3_recompute) { full_case(QWEN3, GOLD("qwen3"), true); }
END_TEST

/* ---- LoRA ------------------------------------------------------------------------------ */

static void lora_cfg(nmc_lora_cfg_t *c, nmc_lora_bias_t bias)
{
    nmc_lora_cfg_default(c);
    c->r = 4;
    c->alpha = 8;
    c->match = NMC_LORA_MATCH_SUFFIX;
    c->target_modules = SEVEN;
    c->n_target_modules = 7;
    c->bias = bias;
}

/* Overwrite every LoRA tensor with the golden initial values. */
static void load_init(nmc_model_t *m, nmc_st_t *st)
{
    size_t n;
    nmc_param_t *ps = nmc_model_params(m, &n);
    int k = 0;
    nmc_diags_t d;
    nmc_diags_init(&d);
    for (size_t i = 0; i < n; i++) {
        if (ps[i].kind != NMC_PARAM_LORA_A && ps[i].kind != NMC_PARAM_LORA_B) continue;
        char name[300];
        snprintf(name, sizeof name, "init.%s", ps[i].name);
        const nmc_st_tensor_t *t = gt(st, name);
        ck_assert_int_eq(t->numel, ps[i].numel);
        ck_assert_int_eq(nmc_model_param_write(m, &ps[i], t->data, &d), 0);
        k++;
    }
    ck_assert_int_eq(k, 2 * 7 * (int)nmc_model_config(m)->num_layers);
    nmc_diags_free(&d);
}

static void lora_case(const char *dir, const char *gold, const char *prefix, nmc_lora_bias_t bias,
                      bool recompute)
{
    nmc_st_t *st = open_gold(gold);
    gbatch_t g;
    load_batch(st, &g);
    nmc_lora_cfg_t c;
    lora_cfg(&c, bias);
    nmc_model_t *m = load_model(dir, NMC_TRAIN_LORA, &c, recompute);
    load_init(m, st);
    char ln[64];
    snprintf(ln, sizeof ln, "%sloss", prefix);
    check_rel(ln, step(m, &g), gf(st, ln)[0], 1e-5);
    check_grads(m, st, prefix, true);
    nmc_model_free(m);
    nmc_st_close(st);
}

START_TEST(lora_llama) { lora_case(LLAMA, GOLD("llama"), "lora.", NMC_LORA_BIAS_NONE, false); }
END_TEST
START_TEST(lora_qwen3) { lora_case(QWEN3, GOLD("qwen3"), "lora.", NMC_LORA_BIAS_NONE, false); }
END_TEST
START_TEST(lora_qwen2) { lora_case(QWEN2, GOLD("qwen2"), "lora.", NMC_LORA_BIAS_NONE, false); }
END_TEST
START_TEST(lora_qwen2_bias_all) { lora_case(QWEN2, GOLD("qwen2"), "lorab.", NMC_LORA_BIAS_ALL, true); }
END_TEST

/* ---- AdamW ----------------------------------------------------------------------------- */

static void adam_case(const char *dir, const char *gold)
{
    nmc_st_t *st = open_gold(gold);
    gbatch_t g;
    load_batch(st, &g);
    nmc_model_t *m = load_model(dir, NMC_TRAIN_FULL, NULL, false);
    size_t n;
    nmc_param_t *ps = nmc_model_params(m, &n);
    float **mom = calloc(2 * n, sizeof *mom);
    for (size_t i = 0; i < n; i++) {
        mom[2 * i] = calloc((size_t)ps[i].numel, sizeof(float));
        mom[2 * i + 1] = calloc((size_t)ps[i].numel, sizeof(float));
    }
    const float *ref = gf(st, "adam.loss");
    for (int s = 1; s <= 10; s++) {
        ck_assert_int_eq(nmc_model_zero_grads(m), 0);
        char what[32];
        snprintf(what, sizeof what, "adam.loss[%d]", s - 1);
        check_rel(what, step(m, &g), ref[s - 1], 1e-4);
        for (size_t i = 0; i < n; i++) /* CPU device: master == data, host memory */
            nmc_cpu_adamw(ps[i].master, ps[i].grad, mom[2 * i], mom[2 * i + 1], (size_t)ps[i].numel,
                          1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, s);
    }
    for (size_t i = 0; i < 2 * n; i++) free(mom[i]);
    free(mom);
    nmc_model_free(m);
    nmc_st_close(st);
}

START_TEST(adam_llama) { adam_case(LLAMA, GOLD("llama")); }
END_TEST
START_TEST(adam_qwen3) { adam_case(QWEN3, GOLD("qwen3")); }
END_TEST

/* ---- helpers for the self-contained tests ------------------------------------------- */

static nmc_model_t *try_load(const char *dir, nmc_train_mode_t mode, const nmc_lora_cfg_t *lc,
                             nmc_diags_t *d)
{
    nmc_model_opts_t o;
    nmc_model_opts_default(&o);
    o.model_dir = dir;
    o.train = mode;
    o.lora = lc;
    nmc_model_t *m = NULL;
    if (nmc_model_load(&o, &m, d) != 0) ck_assert_ptr_null(m);
    return m;
}

static bool has_code(const nmc_diags_t *d, const char *code)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->items[i].code, code)) return true;
    return false;
}

static void expect_load_error(const char *dir, nmc_train_mode_t mode, const nmc_lora_cfg_t *lc,
                              const char *code, const char *msg_part)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *m = try_load(dir, mode, lc, &d);
    ck_assert_ptr_null(m);
    ck_assert_msg(has_code(&d, code), "expected %s, got %s: %s", code, d.n ? d.items[0].code : "(none)",
                  d.n ? d.items[0].message : "");
    bool found = false;
    for (size_t i = 0; i < d.n; i++) found |= strstr(d.items[i].message, msg_part) != NULL;
    ck_assert_msg(found, "no message containing \"%s\"", msg_part);
    nmc_diags_free(&d);
}

static double train_loss(nmc_model_t *m, const gbatch_t *g, uint64_t off)
{
    nmc_model_set_rng_offset(m, off);
    return step(m, g);
}

static double eval_loss(nmc_model_t *m, const gbatch_t *g)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    double loss;
    int64_t nt;
    ck_assert_int_eq(nmc_model_eval(m, &g->b, &loss, &nt, &d), 0);
    nmc_diags_free(&d);
    return loss / (double)nt;
}

/* ---- flags, init, matching ----------------------------------------------------------- */

START_TEST(param_flags)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *m = try_load(QWEN2, NMC_TRAIN_FULL, NULL, &d);
    ck_assert_ptr_nonnull(m);
    size_t n;
    nmc_param_t *ps = nmc_model_params(m, &n);
    for (size_t i = 0; i < n; i++) {
        bool nodecay = strstr(ps[i].name, "norm") || strstr(ps[i].name, ".bias");
        ck_assert_msg(ps[i].weight_decay == !nodecay, "%s weight_decay", ps[i].name);
        ck_assert(ps[i].trainable && ps[i].grad);
    }
    ck_assert_int_eq(nmc_model_trainable_count(m), nmc_model_config_param_count(nmc_model_config(m)));
    nmc_model_free(m);
    /* LoRA, bias lora_only on q/v: A, B and the q/v biases train; k bias does not */
    nmc_lora_cfg_t c;
    nmc_lora_cfg_default(&c);
    const char *const qv[] = {"*.q_proj", "*.v_proj"};
    c.target_modules = qv, c.n_target_modules = 2, c.bias = NMC_LORA_BIAS_LORA_ONLY, c.r = 2;
    m = try_load(QWEN2, NMC_TRAIN_LORA, &c, &d);
    ck_assert_ptr_nonnull(m);
    ps = nmc_model_params(m, &n);
    int nt = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ps[i].trainable) continue;
        nt++;
        ck_assert_msg(strstr(ps[i].name, "lora_") || strstr(ps[i].name, "q_proj.bias") ||
                          strstr(ps[i].name, "v_proj.bias"), "%s should be frozen", ps[i].name);
    }
    ck_assert_int_eq(nt, 2 * 2 + 2); /* 1 layer: q and v adapters + their biases */
    nmc_param_t *a = nmc_model_param_find(m, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->shape[0], 2);
    ck_assert_int_eq(a->shape[1], 32);
    ck_assert(a->weight_decay);
    nmc_model_free(m);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(lora_init_distributions)
{
    enum { R = 8, IN = 512, OUT = 64 };
    static float A[R * IN], Bm[OUT * R];
    nmc_lora_cfg_t c;
    nmc_lora_cfg_default(&c);
    c.r = R;
    for (int kind = 0; kind < 3; kind++) {
        c.init = kind == 0 ? NMC_LORA_INIT_DEFAULT : kind == 1 ? NMC_LORA_INIT_GAUSSIAN : NMC_LORA_INIT_RANDOM;
        nmc_lora_init_host(&c, 3, A, Bm, OUT, IN);
        double s = 0, s2 = 0, bmax = 0;
        for (int i = 0; i < R * IN; i++) s += A[i], s2 += (double)A[i] * A[i];
        for (int i = 0; i < OUT * R; i++) bmax = fmax(bmax, fabs(Bm[i]));
        double mean = s / (R * IN), var = s2 / (R * IN) - mean * mean;
        /* kaiming_uniform(a=sqrt 5): U(-1/sqrt(in), 1/sqrt(in)), var 1/(3 in); gaussian: std 1/r */
        double want = kind == 1 ? 1.0 / (R * R) : 1.0 / (3.0 * IN);
        ck_assert_msg(fabs(var / want - 1) < 0.05, "init %d: var %g want %g", kind, var, want);
        ck_assert(fabs(mean) < 0.05 * sqrt(want));
        if (kind != 1)
            for (int i = 0; i < R * IN; i++) ck_assert(fabsf(A[i]) <= 1.0f / sqrtf((float)IN));
        if (kind == 2) ck_assert(bmax > 0 && bmax <= 1.0 / sqrt((double)R)); /* nn.Linear default */
        else ck_assert(bmax == 0);
    }
    /* streams differ, seeds reproduce */
    static float A2[R * IN];
    c.init = NMC_LORA_INIT_DEFAULT;
    nmc_lora_init_host(&c, 3, A, Bm, OUT, IN);
    nmc_lora_init_host(&c, 3, A2, Bm, OUT, IN);
    ck_assert(memcmp(A, A2, sizeof A) == 0);
    nmc_lora_init_host(&c, 4, A2, Bm, OUT, IN);
    ck_assert(memcmp(A, A2, sizeof A) != 0);
}
END_TEST

START_TEST(lora_matching)
{
    nmc_lora_cfg_t c;
    nmc_lora_cfg_default(&c);
    const char *q = "model.layers.3.self_attn.q_proj", *dn = "model.layers.3.mlp.down_proj";
    ck_assert(nmc_lora_glob("*.q_proj", q));
    ck_assert(!nmc_lora_glob("*.q_proj", dn));
    ck_assert(nmc_lora_glob("*.layers.3.*", q));
    ck_assert(!nmc_lora_glob("*.layers.1.*", q));
    ck_assert(nmc_lora_glob("*", q));
    ck_assert(!nmc_lora_glob("q_proj", q));
    /* Automodel default: "*_proj" */
    ck_assert(nmc_lora_targets(&c, q, 3) && nmc_lora_targets(&c, dn, 3));
    ck_assert(!nmc_lora_targets(&c, "lm_head", 0));
    const char *const bare[] = {"q_proj"}, *const ex[] = {"*.down_proj", "lm_head"};
    c.target_modules = bare, c.n_target_modules = 1;
    ck_assert(!nmc_lora_targets(&c, q, 3)); /* glob: full-name match only */
    c.match = NMC_LORA_MATCH_SUFFIX;
    ck_assert(nmc_lora_targets(&c, q, 3) && !nmc_lora_targets(&c, dn, 3));
    ck_assert(!nmc_lora_targets(&c, "model.layers.3.self_attn.xq_proj", 3));
    c.target_modules = NULL, c.n_target_modules = 0; /* Unsloth default: the 7 projections */
    ck_assert(nmc_lora_targets(&c, dn, 3));
    c.match = NMC_LORA_MATCH_GLOB, c.exclude_modules = ex, c.n_exclude_modules = 2;
    ck_assert(nmc_lora_targets(&c, q, 3) && !nmc_lora_targets(&c, dn, 3));
    int layers[] = {0, 2};
    c.layers_to_transform = layers, c.n_layers_to_transform = 2;
    ck_assert(!nmc_lora_targets(&c, q, 3));
    ck_assert(nmc_lora_targets(&c, "model.layers.2.self_attn.q_proj", 2));
    ck_assert_float_eq(nmc_lora_scale(&c), 2.0f);
    c.use_rslora = true, c.r = 4, c.alpha = 8;
    ck_assert_float_eq(nmc_lora_scale(&c), 4.0f);
}
END_TEST

/* ---- refusals ------------------------------------------------------------------------- */

static void expect_check(nmc_lora_cfg_t *c, const char *code, const char *path)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_lora_check_supported(c, &d), -1);
    ck_assert_msg(d.n >= 1 && !strcmp(d.items[0].code, code), "expected %s got %s", code,
                  d.n ? d.items[0].code : "(none)");
    ck_assert_str_eq(d.items[0].path, path);
    nmc_diags_free(&d);
    nmc_lora_cfg_default(c);
}

START_TEST(lora_refusals)
{
    nmc_lora_cfg_t c;
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_lora_cfg_default(&c);
    ck_assert_int_eq(nmc_lora_check_supported(&c, &d), 0);
    ck_assert_int_eq((int)d.n, 0);
    nmc_diags_free(&d);
    c.use_dora = true;
    expect_check(&c, "lora-dora-unsupported", "training.lora.use_dora");
    c.init = NMC_LORA_INIT_PISSA;
    expect_check(&c, "lora-init-unsupported", "training.lora.init_lora_weights");
    c.init = NMC_LORA_INIT_LOFTQ;
    expect_check(&c, "lora-init-unsupported", "training.lora.init_lora_weights");
    c.has_layer_replication = true;
    expect_check(&c, "lora-layer-replication-unsupported", "training.lora.layer_replication");
    c.has_loftq_config = true;
    expect_check(&c, "lora-loftq-unsupported", "training.lora.loftq_config");
    c.r = 0;
    expect_check(&c, "lora-rank-invalid", "training.lora.rank");
    c.alpha = -1;
    expect_check(&c, "lora-alpha-invalid", "training.lora.alpha");
    c.dropout = 1.0;
    expect_check(&c, "lora-dropout-invalid", "training.lora.dropout");
    const char *const bad[] = {"mlp"}, *const t[] = {"*.q_proj"}, *const e[] = {"*.v_proj"},
                      *const empty[] = {""};
    c.modules_to_save = bad, c.n_modules_to_save = 1;
    expect_check(&c, "lora-modules-to-save-unsupported", "training.lora.modules_to_save");
    c.target_modules = t, c.n_target_modules = 1, c.exclude_modules = e, c.n_exclude_modules = 1;
    expect_check(&c, "lora-target-exclude-both", "training.lora.exclude_modules");
    c.target_modules = empty, c.n_target_modules = 1;
    expect_check(&c, "lora-pattern-invalid", "training.lora.target_modules");
    /* refused at model load, before any training */
    c.use_dora = true;
    expect_load_error(LLAMA, NMC_TRAIN_LORA, &c, "lora-dora-unsupported", "DoRA");
}
END_TEST

START_TEST(load_refusals)
{
    nmc_lora_cfg_t c;
    nmc_lora_cfg_default(&c);
    const char *const bare[] = {"q_proj"}, *const ex[] = {"*.q_proj"}, *const mts[] = {"lm_head"};
    c.target_modules = bare, c.n_target_modules = 1;
    expect_load_error(LLAMA, NMC_TRAIN_LORA, &c, "lora-no-target-matched", "no module");
    nmc_lora_cfg_default(&c);
    c.exclude_modules = ex, c.n_exclude_modules = 1;
    expect_load_error(LLAMA, NMC_TRAIN_LORA, &c, "lora-lm-head-unsupported", "lm_head");
    nmc_lora_cfg_default(&c);
    c.modules_to_save = mts, c.n_modules_to_save = 1;
    expect_load_error(QWEN3, NMC_TRAIN_LORA, &c, "lora-modules-to-save-tied", "tied");
    nmc_lora_cfg_default(&c);
    int layers[] = {5};
    c.layers_to_transform = layers, c.n_layers_to_transform = 1;
    expect_load_error(LLAMA, NMC_TRAIN_LORA, &c, "lora-layer-out-of-range", "layer");
    expect_load_error(LLAMA, NMC_TRAIN_LORA, NULL, "model-option-invalid", "LoRA config");
    expect_load_error("tests/data/golden/no-such-model", NMC_TRAIN_FULL, NULL, "io-error", "");
    nmc_model_opts_t o;
    nmc_model_opts_default(&o);
    o.model_dir = LLAMA, o.layer_begin = 1;
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *m = NULL;
    ck_assert_int_eq(nmc_model_load(&o, &m, &d), -1);
    ck_assert_str_eq(d.items[0].code, "model-parallel-unsupported");
    nmc_diags_free(&d);
}
END_TEST

START_TEST(batch_refusals)
{
    nmc_st_t *st = open_gold(GOLD("qwen2"));
    gbatch_t g;
    load_batch(st, &g);
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *m = try_load(QWEN2, NMC_TRAIN_FULL, NULL, &d);
    double loss;
    int64_t nt;
    g.arr[0][3] = 128; /* vocab is 128 */
    ck_assert_int_eq(nmc_model_fwd_bwd(m, &g.b, 1.0f, &loss, &nt, &d), -1);
    ck_assert_str_eq(d.items[0].code, "model-batch-invalid");
    ck_assert_str_eq(d.items[0].message, "input id outside the vocabulary at token 3");
    ck_assert_str_eq(d.items[0].got, "128");
    nmc_diags_free(&d);
    g.arr[0][3] = 5;
    g.arr[3][20] = 9; /* token 20 is row-local index 4 */
    ck_assert_int_eq(nmc_model_eval(m, &g.b, &loss, &nt, &d), -1);
    ck_assert_str_eq(d.items[0].message, "doc_start outside [0, row index] at token 20");
    nmc_diags_free(&d);
    g.arr[3][20] = 0;
    g.arr[1][0] = -7;
    ck_assert_int_eq(nmc_model_eval(m, &g.b, &loss, &nt, &d), -1);
    ck_assert_str_eq(d.items[0].message, "label outside the vocabulary (and not -100) at token 0");
    nmc_diags_free(&d);
    float out[128];
    ck_assert_int_eq(nmc_model_logits(m, &g.b, 31, 2, out, &d), -1);
    ck_assert_str_eq(d.items[0].code, "model-logits-range");
    nmc_diags_free(&d);
    nmc_model_free(m);
    nmc_st_close(st);
}
END_TEST

/* ---- dropout, NEFTune ----------------------------------------------------------------- */

START_TEST(lora_dropout_finite_differences)
{
    nmc_st_t *st = open_gold(GOLD("qwen2"));
    gbatch_t g;
    load_batch(st, &g);
    nmc_lora_cfg_t c;
    lora_cfg(&c, NMC_LORA_BIAS_NONE);
    c.dropout = 0.3, c.init = NMC_LORA_INIT_RANDOM;
    nmc_model_t *m = load_model(QWEN2, NMC_TRAIN_LORA, &c, false);
    const uint64_t off = 12345;
    double l0 = train_loss(m, &g, off);
    ck_assert(fabs(train_loss(m, &g, off) - l0) == 0);  /* same counter, same masks */
    ck_assert(fabs(train_loss(m, &g, off + 999999) - l0) > 1e-6); /* other masks */
    ck_assert(fabs(eval_loss(m, &g) - l0) > 1e-6);                 /* eval: no dropout */
    const char *names[] = {"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
                           "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"};
    for (int k = 0; k < 2; k++) {
        nmc_param_t *p = nmc_model_param_find(m, names[k]);
        ck_assert_ptr_nonnull(p);
        nmc_model_zero_grads(m);
        train_loss(m, &g, off);
        float *gr = read_param(m, p, true);
        int best = 0;
        for (int i = 1; i < p->numel; i++) if (fabsf(gr[i]) > fabsf(gr[best])) best = i;
        float *w = read_param(m, p, false), keep = w[best];
        const float h = 1e-2f;
        nmc_diags_t d;
        nmc_diags_init(&d);
        w[best] = keep + h;
        nmc_model_param_write(m, p, w, &d);
        double lp = train_loss(m, &g, off);
        w[best] = keep - h;
        nmc_model_param_write(m, p, w, &d);
        double lm = train_loss(m, &g, off);
        w[best] = keep;
        nmc_model_param_write(m, p, w, &d);
        double fd = (lp - lm) / (2 * h);
        ck_assert_msg(fabs(fd - gr[best]) <= 0.02 * fabs(gr[best]) + 1e-4,
                      "%s[%d]: analytic %.6g vs finite difference %.6g", names[k], best, gr[best], fd);
        ck_assert(fabs(gr[best]) > 1e-3);
        free(gr);
        free(w);
        nmc_diags_free(&d);
    }
    nmc_model_free(m);
    nmc_st_close(st);
}
END_TEST

START_TEST(neftune_training_only)
{
    nmc_st_t *st = open_gold(GOLD("qwen2"));
    gbatch_t g;
    load_batch(st, &g);
    nmc_model_opts_t o;
    nmc_model_opts_default(&o);
    o.model_dir = QWEN2, o.train = NMC_TRAIN_FULL;
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *plain, *noisy;
    ck_assert_int_eq(nmc_model_load(&o, &plain, &d), 0);
    o.neftune_alpha = 5;
    ck_assert_int_eq(nmc_model_load(&o, &noisy, &d), 0);
    double e = eval_loss(plain, &g);
    ck_assert(eval_loss(noisy, &g) == e);           /* eval: no noise */
    ck_assert(train_loss(plain, &g, 7) == e);       /* alpha 0: training == eval loss */
    double n1 = train_loss(noisy, &g, 7);
    ck_assert(n1 != e && fabs(n1 - e) < 0.1 * e);   /* small, non-zero perturbation */
    ck_assert(train_loss(noisy, &g, 7) == n1);      /* reproducible for a counter */
    nmc_model_free(plain);
    nmc_model_free(noisy);
    nmc_diags_free(&d);
    nmc_st_close(st);
}
END_TEST

/* ---- adapter round trip and merged save ------------------------------------------------- */

static float *all_logits(nmc_model_t *m, const gbatch_t *g)
{
    int V = (int)nmc_model_config(m)->vocab_size, N = g->b.B * g->b.T;
    float *out = malloc(sizeof(float) * (size_t)N * V);
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_model_logits(m, &g->b, 0, N, out, &d), 0);
    nmc_diags_free(&d);
    return out;
}

START_TEST(peft_round_trip_and_merge)
{
    nmc_st_t *st = open_gold(GOLD("qwen2"));
    gbatch_t g;
    load_batch(st, &g);
    nmc_lora_cfg_t c;
    nmc_lora_cfg_default(&c);
    const char *const tm[] = {"*.q_proj", "*.down_proj"}, *const mts[] = {"lm_head"};
    c.r = 4, c.target_modules = tm, c.n_target_modules = 2, c.init = NMC_LORA_INIT_RANDOM;
    c.bias = NMC_LORA_BIAS_ALL, c.modules_to_save = mts, c.n_modules_to_save = 1;
    nmc_model_t *m = load_model(QWEN2, NMC_TRAIN_LORA, &c, false);
    nmc_param_t *lm = nmc_model_param_find(m, "lm_head.weight");
    ck_assert(lm->trainable);
    float *w = read_param(m, lm, false);
    w[5] += 0.5f; /* a trained lm_head must travel with the adapter */
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_param_write(m, lm, w, &d);
    free(w);
    char dir[] = "/tmp/nmc_test_model_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ad[300], mg[300];
    snprintf(ad, sizeof ad, "%s/adapter", dir);
    snprintf(mg, sizeof mg, "%s/merged", dir);
    nmc_peft_save_opts_t po = {"tiny-qwen2"};
    ck_assert_int_eq(nmc_peft_save(m, ad, &po, &d), 0);
    nmc_model_save_opts_t so = {.merge_lora = true, .fp32 = true};
    ck_assert_int_eq(nmc_model_save(m, mg, &so, &d), 0);
    float *ref = all_logits(m, &g);
    /* read back: the config written for glob patterns is a PEFT name list */
    nmc_arena_t *a = nmc_arena_new();
    nmc_lora_cfg_t rc;
    ck_assert_int_eq(nmc_peft_read_config(a, ad, &rc, &d), 0);
    ck_assert_int_eq(rc.match, NMC_LORA_MATCH_SUFFIX);
    ck_assert_int_eq(rc.n_target_modules, 2);
    ck_assert_str_eq(rc.target_modules[0], "q_proj");
    ck_assert_str_eq(rc.target_modules[1], "down_proj");
    ck_assert_int_eq(rc.r, 4);
    ck_assert(rc.alpha == 32 && rc.bias == NMC_LORA_BIAS_ALL && rc.init == NMC_LORA_INIT_RANDOM);
    ck_assert_int_eq(rc.n_modules_to_save, 1);
    nmc_model_t *m2 = load_model(QWEN2, NMC_TRAIN_LORA, &rc, false);
    ck_assert_int_eq(nmc_peft_load(m2, ad, &d), 0);
    float *got = all_logits(m2, &g);
    int V = 128, N = g.b.B * g.b.T;
    ck_assert(memcmp(got, ref, sizeof(float) * (size_t)N * V) == 0); /* bit-exact */
    free(got);
    nmc_model_t *mm = load_model(mg, NMC_TRAIN_NONE, NULL, false);
    got = all_logits(mm, &g);
    compare("merged logits", got, ref, (size_t)N * V);
    free(got);
    nmc_model_free(mm);
    nmc_model_free(m2);
    /* a rank mismatch is refused, naming the tensor */
    rc.r = 2;
    m2 = load_model(QWEN2, NMC_TRAIN_LORA, &rc, false);
    ck_assert_int_eq(nmc_peft_load(m2, ad, &d), -1);
    ck_assert_str_eq(d.items[0].code, "peft-tensor-shape");
    ck_assert_ptr_nonnull(strstr(d.items[0].message, "lora_A.weight"));
    nmc_model_free(m2);
    nmc_diags_free(&d);
    /* without bias training the adapter holds tensors the model does not have */
    rc.r = 4, rc.bias = NMC_LORA_BIAS_NONE;
    m2 = load_model(QWEN2, NMC_TRAIN_LORA, &rc, false);
    ck_assert_int_eq(nmc_peft_load(m2, ad, &d), -1);
    ck_assert(has_code(&d, "peft-tensor-unexpected"));
    nmc_model_free(m2);
    nmc_diags_free(&d);
    free(ref);
    nmc_arena_free(a);
    nmc_model_free(m);
    nmc_st_close(st);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(peft_config_refusals)
{
    char dir[] = "/tmp/nmc_test_peftcfg_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16,\n"
          " \"target_modules\": \".*q_proj\", \"use_dora\": true}\n", f);
    fclose(f);
    nmc_arena_t *a = nmc_arena_new();
    nmc_lora_cfg_t c;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_peft_read_config(a, dir, &c, &d), -1);
    ck_assert_str_eq(d.items[0].code, "peft-target-regex-unsupported");
    ck_assert_int_eq(d.items[0].line, 2);
    nmc_diags_free(&d);
    f = fopen(path, "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, \"use_dora\": true,"
          " \"init_lora_weights\": \"pissa_niter_4\"}", f);
    fclose(f);
    ck_assert_int_eq(nmc_peft_read_config(a, dir, &c, &d), 0);
    ck_assert_int_eq(nmc_lora_check_supported(&c, &d), -1); /* both named */
    ck_assert(has_code(&d, "lora-dora-unsupported") && has_code(&d, "lora-init-unsupported"));
    nmc_diags_free(&d);
    f = fopen(path, "w");
    fputs("{\"peft_type\": \"PREFIX_TUNING\"}", f);
    fclose(f);
    ck_assert_int_eq(nmc_peft_read_config(a, dir, &c, &d), -1);
    ck_assert_str_eq(d.items[0].code, "peft-type-unsupported");
    nmc_diags_free(&d);
    nmc_arena_free(a);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* ---- suite ----------------------------------------------------------------------------- */

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, full_llama);
    tcase_add_test(tc, full_qwen3);
    tcase_add_test(tc, full_qwen2);
    tcase_add_test(tc, full_llama_recompute);
    tcase_add_test(tc, full_qwen3_recompute);
    tcase_add_test(tc, lora_llama);
    tcase_add_test(tc, lora_qwen3);
    tcase_add_test(tc, lora_qwen2);
    tcase_add_test(tc, lora_qwen2_bias_all);
    tcase_add_test(tc, adam_llama);
    tcase_add_test(tc, adam_qwen3);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("behaviour");
    tcase_set_timeout(tb, 120);
    tcase_add_test(tb, param_flags);
    tcase_add_test(tb, lora_init_distributions);
    tcase_add_test(tb, lora_matching);
    tcase_add_test(tb, lora_refusals);
    tcase_add_test(tb, load_refusals);
    tcase_add_test(tb, batch_refusals);
    tcase_add_test(tb, lora_dropout_finite_differences);
    tcase_add_test(tb, neftune_training_only);
    tcase_add_test(tb, peft_round_trip_and_merge);
    tcase_add_test(tb, peft_config_refusals);
    suite_add_tcase(s, tb);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? 1 : 0;
}
