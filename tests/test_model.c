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
#include "safetensors.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
