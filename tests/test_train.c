/* test_train.c — the trainer against PyTorch goldens (tests/oracle/train_golden.py):
 * schedules of every type vs transformers / NeMo; full fine-tuning with AdamW + warmup +
 * cosine + accumulation 2 + clipping over 10 steps, Adam (L2), SGD, label smoothing, a
 * clipping-dominated run, LoRA (PEFT init) for 5 steps: loss per step rel 1e-4, lr rel
 * 1e-7. Resume: 6 steps == 3 steps + stop + resume 3 (bit-identical losses); a
 * checkpoint of another spec is refused. Validation cadence (Unsloth eval_steps, Automodel
 * val_check_interval as a fraction and as a step count, once per epoch by default): the
 * exact steps of the val_loss records of metrics.jsonl, each val_loss equal bit for bit to
 * an evaluation of a fresh run stopped at that step, the untrained evaluation equal to
 * transformers' loss. NEFTune in training forwards only; reruns bit-identical, another seed
 * different; the exact key set of every metrics record. Plans from jobs: per-backend
 * rules, refusals and notices. */
#include "train.h"
#include "job.h"
#include "json.h"
#include "nmc_kernels.h"
#include "safetensors.h"
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOLDEN "tests/data/train/golden.json"
#define SCHEDULES "tests/data/train/schedules.json"
#define MODEL_DIR "tests/data/models/tiny-llama"

static nmc_diags_t D;
static void setup(void) { nmc_diags_init(&D); nmc_cpu_set_threads(2); }
static void teardown(void) { nmc_diags_free(&D); }

static void dump(void)
{
    if (D.n) nmc_diags_render_text(&D, NULL, 0, stderr, 0);
}

static bool has_code(const char *code)
{
    for (size_t i = 0; i < D.n; i++)
        if (strcmp(D.items[i].code, code) == 0) return true;
    return false;
}

static const nmc_diag_t *find_code(const char *code)
{
    for (size_t i = 0; i < D.n; i++)
        if (strcmp(D.items[i].code, code) == 0) return &D.items[i];
    return NULL;
}

/* ---- golden data -------------------------------------------------------------------- */
static nmc_arena_t *GA;
static nmc_json_t *GOLD;

static const nmc_json_t *golden(void)
{
    if (GOLD) return GOLD;
    GA = nmc_arena_new();
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_json_parse_file(GA, GOLDEN, &(nmc_json_limits_t){0}, &GOLD, NULL, NULL, &d), 0);
    nmc_diags_free(&d);
    return GOLD;
}

static const nmc_json_t *config(const char *name)
{
    const nmc_json_t *cs = nmc_json_get(golden(), "configs");
    for (size_t i = 0; i < cs->u.arr.n; i++) {
        const nmc_json_t *n = nmc_json_get(cs->u.arr.items[i], "name");
        if (strcmp(n->u.str.s, name) == 0) return cs->u.arr.items[i];
    }
    ck_abort_msg("no golden config %s", name);
    return NULL;
}

static double jnum(const nmc_json_t *o, const char *k) { return nmc_json_get(o, k)->u.num.d; }

/* ---- an in-memory data source: 5 micro-batches, epoch e visits (i + 2e) mod 5 -------- */
#define NB 5
typedef struct {
    nmc_batch_t b[NB];
    int32_t buf[NB][4][64];
    int64_t epoch, pos;
    int64_t n_batches;
} mem_src_t;

static void mem_load(mem_src_t *s)
{
    memset(s, 0, sizeof *s);
    const nmc_json_t *g = golden();
    int B = (int)nmc_json_get(g, "B")->u.num.i, T = (int)nmc_json_get(g, "T")->u.num.i;
    ck_assert_int_le(B * T, 64);
    const nmc_json_t *bs = nmc_json_get(g, "batches");
    ck_assert_int_eq((int)bs->u.arr.n, NB);
    s->n_batches = NB;
    for (int i = 0; i < NB; i++) {
        const nmc_json_t *ids = nmc_json_get(bs->u.arr.items[i], "input_ids");
        const nmc_json_t *lab = nmc_json_get(bs->u.arr.items[i], "labels");
        const nmc_json_t *lens = nmc_json_get(bs->u.arr.items[i], "lens");
        nmc_batch_t *b = &s->b[i];
        b->B = B, b->T = T;
        b->input_ids = s->buf[i][0], b->labels = s->buf[i][1];
        b->positions = s->buf[i][2], b->doc_start = s->buf[i][3];
        b->first_sample = -1;
        for (int r = 0; r < B; r++) {
            int len = (int)lens->u.arr.items[r]->u.num.i;
            for (int t = 0; t < T; t++) {
                int k = r * T + t;
                b->input_ids[k] = (int32_t)ids->u.arr.items[k]->u.num.i;
                b->labels[k] = (int32_t)lab->u.arr.items[k]->u.num.i;
                b->positions[k] = t < len ? t : t - len;
                b->doc_start[k] = t < len ? 0 : len;
                if (b->labels[k] != NMC_IGNORE_INDEX) b->n_label_tokens++;
                if (t < len) b->n_real_tokens++;
            }
        }
    }
}

static int64_t mem_n(void *ctx) { return ((mem_src_t *)ctx)->n_batches; }
static int mem_begin(void *ctx, int64_t epoch, int64_t skip, nmc_diags_t *d)
{
    mem_src_t *s = ctx;
    s->epoch = epoch, s->pos = skip;
    return 0;
}
static int mem_next(void *ctx, const nmc_batch_t **b, nmc_diags_t *d)
{
    mem_src_t *s = ctx;
    if (s->pos >= s->n_batches) return 0;
    *b = &s->b[(s->pos + 2 * s->epoch) % NB];
    s->pos++;
    return 1;
}
static nmc_train_data_t mem_data(mem_src_t *s)
{
    return (nmc_train_data_t){.ctx = s, .n_batches = mem_n, .begin_epoch = mem_begin, .next = mem_next};
}

/* ---- recording events ------------------------------------------------------------------ */
typedef struct {
    int n;
    double loss[64], lr[64], gn[64];
    bool resumed;
    int n_ckpt, n_val;
    int64_t val_step[64];    /* step of each validation pass */
    double val_loss[64];
} rec_t;

static void on_ev(void *ctx, const nmc_train_ev_t *ev)
{
    rec_t *r = ctx;
    if (ev->kind == NMC_TRAIN_EV_START) r->resumed = ev->resumed;
    if (ev->kind == NMC_TRAIN_EV_CKPT) r->n_ckpt++;
    if (ev->kind == NMC_TRAIN_EV_VAL && r->n_val < 64)
        r->val_step[r->n_val] = ev->step, r->val_loss[r->n_val++] = ev->val_loss;
    if (ev->kind != NMC_TRAIN_EV_STEP || r->n >= 64) return;
    r->loss[r->n] = ev->loss, r->lr[r->n] = ev->lr, r->gn[r->n] = ev->grad_norm;
    r->n++;
}

/* ---- plans built by hand, as the golden configs describe them ---------------------------- */
static void golden_plan(const nmc_json_t *c, nmc_train_plan_t *p)
{
    memset(p, 0, sizeof *p);
    p->backend = NMC_BACKEND_UNSLOTH;
    const char *mode = nmc_json_get(c, "mode")->u.str.s;
    p->mode = strcmp(mode, "lora") == 0 ? NMC_TRAIN_LORA : NMC_TRAIN_FULL;
    p->micro_batch = 2;
    p->accum = (int64_t)jnum(c, "accum");
    p->epochs = 1;
    p->max_steps = (int64_t)jnum(c, "steps");
    p->max_steps_overrides = true;
    const char *o = nmc_json_get(c, "optim")->u.str.s;
    p->optim.kind = strcmp(o, "adamw") == 0 ? NMC_OPTIM_ADAMW
                  : strcmp(o, "adam_l2") == 0 ? NMC_OPTIM_ADAM_L2 : NMC_OPTIM_SGD;
    p->optim.beta1 = 0.9, p->optim.beta2 = 0.999, p->optim.eps = 1e-8;
    p->optim.weight_decay = jnum(c, "wd");
    p->lr = jnum(c, "lr");
    p->max_grad_norm = jnum(c, "clip");
    const nmc_json_t *ls = nmc_json_get(c, "ls");
    p->label_smoothing = ls ? ls->u.num.d : 0;
    const char *s = nmc_json_get(c, "sched")->u.str.s;
    p->sched = strcmp(s, "linear") == 0 ? NMC_SCHED_LINEAR
             : strcmp(s, "cosine") == 0 ? NMC_SCHED_COSINE
             : strcmp(s, "constant") == 0 ? NMC_SCHED_CONSTANT : NMC_SCHED_CONSTANT_WARMUP;
    p->num_cycles = 0.5;
    p->warmup_steps = (int64_t)jnum(c, "warmup");
    p->seed = 3407, p->seed_given = true;
    p->logging_steps = 1;
    if (p->mode == NMC_TRAIN_LORA) {
        nmc_lora_cfg_default(&p->lora);
        static const char *const targets[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};
        p->lora.r = (int)jnum(c, "r");
        p->lora.alpha = jnum(c, "alpha");
        p->lora.dropout = 0;
        p->lora.match = NMC_LORA_MATCH_SUFFIX;
        p->lora.target_modules = targets, p->lora.n_target_modules = 7;
    }
}

static nmc_model_t *load_model(const nmc_train_plan_t *p)
{
    nmc_model_opts_t mo;
    nmc_model_opts_default(&mo);
    mo.model_dir = MODEL_DIR;
    mo.train = p->mode;
    mo.lora = p->mode == NMC_TRAIN_LORA ? &p->lora : NULL;
    mo.label_smoothing = (float)p->label_smoothing;
    mo.neftune_alpha = (float)p->neftune_alpha;
    mo.seed = p->seed;
    nmc_model_t *m = NULL;
    int rc = nmc_model_load(&mo, &m, &D);
    if (rc) dump();
    ck_assert_int_eq(rc, 0);
    return m;
}

/* LoRA A/B as PEFT initialised them */
static void load_lora_init(nmc_model_t *m)
{
    nmc_st_t *st = NULL;
    ck_assert_int_eq(nmc_st_open("tests/data/train/lora_init.safetensors", &st, &D), 0);
    size_t np, loaded = 0;
    nmc_param_t *ps = nmc_model_params(m, &np);
    for (size_t i = 0; i < np; i++) {
        if (ps[i].kind != NMC_PARAM_LORA_A && ps[i].kind != NMC_PARAM_LORA_B) continue;
        const nmc_st_tensor_t *t = nmc_st_find(st, ps[i].name);
        ck_assert_msg(t != NULL, "lora_init lacks %s", ps[i].name);
        ck_assert_int_eq(t->numel, ps[i].numel);
        float *h = malloc((size_t)t->numel * sizeof *h);
        ck_assert_int_eq(nmc_st_to_f32(t, h, &D), 0);
        ck_assert_int_eq(nmc_model_param_write(m, &ps[i], h, &D), 0);
        free(h);
        loaded++;
    }
    ck_assert_uint_eq(loaded, nmc_st_count(st));
    nmc_st_close(st);
}

static void check_golden(const char *name)
{
    const nmc_json_t *c = config(name);
    nmc_train_plan_t p;
    golden_plan(c, &p);
    nmc_model_t *m = load_model(&p);
    if (p.mode == NMC_TRAIN_LORA) load_lora_init(m);
    mem_src_t src;
    mem_load(&src);
    nmc_train_data_t data = mem_data(&src);
    rec_t rec = {0};
    nmc_train_opts_t o = {.on_event = on_ev, .ev_ctx = &rec};
    nmc_train_result_t res;
    int rc = nmc_train_run(m, &p, &data, NULL, &o, &res, &D);
    if (rc) dump();
    ck_assert_int_eq(rc, 0);
    const nmc_json_t *gl = nmc_json_get(c, "loss"), *glr = nmc_json_get(c, "lrs"), *ggn = nmc_json_get(c, "grad_norm");
    ck_assert_int_eq(rec.n, (int)gl->u.arr.n);
    ck_assert_int_eq(res.steps, (int64_t)gl->u.arr.n);
    for (int i = 0; i < rec.n; i++) {
        double el = gl->u.arr.items[i]->u.num.d, elr = glr->u.arr.items[i]->u.num.d;
        double egn = ggn->u.arr.items[i]->u.num.d;
        /* fp32 model math vs torch fp32: 1e-4 relative on the loss per step */
        ck_assert_msg(fabs(rec.loss[i] - el) <= 1e-4 * fabs(el), "%s step %d: loss %.8f, torch %.8f",
                      name, i + 1, rec.loss[i], el);
        ck_assert_msg(fabs(rec.lr[i] - elr) <= 1e-7 * fabs(elr) + 1e-15, "%s step %d: lr %.10g, torch %.10g",
                      name, i + 1, rec.lr[i], elr);
        /* grad norm: fp32 sums of many terms, 1e-3 relative */
        ck_assert_msg(fabs(rec.gn[i] - egn) <= 1e-3 * fabs(egn), "%s step %d: grad_norm %.6f, torch %.6f",
                      name, i + 1, rec.gn[i], egn);
    }
    nmc_model_free(m);
}

START_TEST(golden_full_adamw_cosine) { check_golden("full_adamw_cosine"); }
END_TEST
START_TEST(golden_full_clip) { check_golden("full_clip"); }
END_TEST
START_TEST(golden_full_adam_l2) { check_golden("full_adam_l2"); }
END_TEST
START_TEST(golden_full_sgd) { check_golden("full_sgd"); }
END_TEST
START_TEST(golden_label_smoothing) { check_golden("full_label_smoothing"); }
END_TEST
START_TEST(golden_lora) { check_golden("lora"); }
END_TEST

/* ---- schedules ------------------------------------------------------------------------ */
START_TEST(schedules_match_transformers_and_nemo)
{
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *root = NULL;
    ck_assert_int_eq(nmc_json_parse_file(a, SCHEDULES, NULL, &root, NULL, NULL, &D), 0);
    const nmc_json_t *cs = nmc_json_get(root, "cases");
    int checked = 0;
    for (size_t i = 0; i < cs->u.arr.n; i++) {
        const nmc_json_t *c = cs->u.arr.items[i];
        const char *kind = nmc_json_get(c, "kind")->u.str.s;
        nmc_sched_t s = {0};
        int k;
        for (k = 0; k <= NMC_SCHED_NEMO_CONSTANT; k++)
            if (strcmp(nmc_sched_name((nmc_sched_kind_t)k), kind) == 0) break;
        ck_assert_msg(k <= NMC_SCHED_NEMO_CONSTANT, "unknown kind %s", kind);
        s.kind = (nmc_sched_kind_t)k;
        s.base_lr = jnum(c, "base_lr");
        const nmc_json_t *ml = nmc_json_get(c, "min_lr");
        s.min_lr = ml ? ml->u.num.d : 0;
        s.warmup = (int64_t)jnum(c, "warmup");
        s.total = (int64_t)jnum(c, "total");
        s.num_cycles = jnum(c, "num_cycles");
        const nmc_json_t *lrs = nmc_json_get(c, "lr");
        for (size_t j = 0; j < lrs->u.arr.n; j++) {
            double want = lrs->u.arr.items[j]->u.num.d, got = nmc_sched_lr(&s, (int64_t)j);
            ck_assert_msg(fabs(got - want) <= 1e-7 * fabs(want) + 1e-18,
                          "%s warmup %lld total %lld step %zu: %.12g, reference %.12g", kind,
                          (long long)s.warmup, (long long)s.total, j, got, want);
            checked++;
        }
    }
    ck_assert_int_gt(checked, 150);
    nmc_arena_free(a);
}
END_TEST

START_TEST(step_arithmetic)
{
    nmc_train_plan_t p = {.accum = 2, .epochs = 3};
    ck_assert_int_eq(nmc_train_steps_per_epoch(5, 2), 3);
    ck_assert_int_eq(nmc_train_steps_per_epoch(4, 2), 2);
    ck_assert_int_eq(nmc_train_steps_per_epoch(0, 2), 0);
    int64_t ep;
    ck_assert_int_eq(nmc_train_total_steps(&p, 5, &ep), 9);
    ck_assert_int_eq(ep, 3);
    p.max_steps = 4; /* Automodel: whichever comes first */
    ck_assert_int_eq(nmc_train_total_steps(&p, 5, &ep), 4);
    ck_assert_int_eq(ep, 2);
    p.max_steps = 20;
    ck_assert_int_eq(nmc_train_total_steps(&p, 5, &ep), 9);
    p.max_steps_overrides = true; /* Unsloth: max_steps wins, data repeats */
    ck_assert_int_eq(nmc_train_total_steps(&p, 5, &ep), 20);
    ck_assert_int_eq(ep, 7);
    p.warmup_ratio = 0.1;
    ck_assert_int_eq(nmc_train_warmup(&p, 20), 2);
    ck_assert_int_eq(nmc_train_warmup(&p, 21), 3); /* ceil, as HF */
    p.warmup_steps = 5;
    ck_assert_int_eq(nmc_train_warmup(&p, 21), 5);
}
END_TEST

/* ---- resume ------------------------------------------------------------------------------ */
static char TMP[128];

static void mk_tmp(void)
{
    snprintf(TMP, sizeof TMP, "/tmp/nmc_test_train_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(TMP));
}
static void rm_tmp(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", TMP);
    ck_assert_int_eq(system(cmd), 0);
}

static int run_six(const char *dir, int64_t stop_after, bool resume, const char *hash, rec_t *rec,
                   nmc_train_result_t *res)
{
    nmc_train_plan_t p;
    golden_plan(config("full_adamw_cosine"), &p);
    p.max_steps = 6;
    p.save_steps = 2;
    nmc_model_t *m = load_model(&p);
    mem_src_t src;
    mem_load(&src);
    nmc_train_data_t data = mem_data(&src);
    nmc_train_opts_t o = {.run_dir = dir, .spec_hash = hash, .resume = resume, .stop_after = stop_after,
                          .on_event = on_ev, .ev_ctx = rec};
    int rc = nmc_train_run(m, &p, &data, NULL, &o, res, &D);
    nmc_model_free(m);
    return rc;
}

static char *slurp_metrics(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    /* keep step, epoch, loss, lr, grad_norm: cut each line before tokens_per_s */
    char *out = malloc(n + 1), *w = out;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char *cut = strstr(line, ",\"tokens_per_s\"");
        if (cut) *cut = 0;
        w += sprintf(w, "%s\n", line);
    }
    return out;
}

START_TEST(resume_gives_identical_losses)
{
    mk_tmp();
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/a", TMP), snprintf(b, sizeof b, "%s/b", TMP);
    nmc_diags_t dd;
    nmc_diags_init(&dd);
    ck_assert_int_eq(nmc_run_mkdirs(a, &dd), 0);
    ck_assert_int_eq(nmc_run_mkdirs(b, &dd), 0);
    nmc_diags_free(&dd);
    rec_t ra = {0}, rb1 = {0}, rb2 = {0};
    nmc_train_result_t res;
    ck_assert_int_eq(run_six(a, 0, false, "00000000000000aa", &ra, &res), 0);
    ck_assert_int_eq(res.outcome, NMC_TRAIN_COMPLETED);
    ck_assert_int_eq(ra.n, 6);
    ck_assert_int_eq(run_six(b, 3, false, "00000000000000aa", &rb1, &res), 0);
    ck_assert_int_eq(res.outcome, NMC_TRAIN_CANCELLED);
    ck_assert_int_eq(res.steps, 3);
    ck_assert_int_eq(rb1.n, 3);
    ck_assert(!rb1.resumed);
    ck_assert_int_eq(run_six(b, 0, true, "00000000000000aa", &rb2, &res), 0);
    ck_assert(rb2.resumed);
    ck_assert_int_eq(res.outcome, NMC_TRAIN_COMPLETED);
    ck_assert_int_eq(rb2.n, 3);
    for (int i = 0; i < 6; i++) {
        double l = i < 3 ? rb1.loss[i] : rb2.loss[i - 3], lr = i < 3 ? rb1.lr[i] : rb2.lr[i - 3];
        ck_assert_msg(l == ra.loss[i], "step %d: resumed loss %.17g, uninterrupted %.17g", i + 1, l, ra.loss[i]);
        ck_assert(lr == ra.lr[i]);
    }
    char *ma = slurp_metrics(a), *mb = slurp_metrics(b);
    ck_assert_str_eq(ma, mb);
    free(ma), free(mb);
    /* only the newest 2 checkpoints are kept */
    char *latest = nmc_ckpt_latest(b);
    ck_assert_ptr_nonnull(latest);
    ck_assert(strstr(latest, "step-00000006") != NULL);
    free(latest);
    char p[512];
    snprintf(p, sizeof p, "%s/checkpoints/step-00000002", b);
    ck_assert_int_ne(access(p, F_OK), 0);
    /* a checkpoint of another spec is refused */
    rec_t rc = {0};
    ck_assert_int_eq(run_six(b, 0, true, "00000000000000bb", &rc, &res), -1);
    const nmc_diag_t *e = find_code("train-resume-spec-mismatch");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->message, "cannot resume: the checkpoint was made for a different job spec "
                                 "(spec hash 00000000000000aa, this job 00000000000000bb)");
    rm_tmp();
}
END_TEST

START_TEST(stop_flag_checkpoints_at_step_boundary)
{
    mk_tmp();
    volatile sig_atomic_t stop = 1;
    nmc_train_plan_t p;
    golden_plan(config("full_clip"), &p);
    nmc_model_t *m = load_model(&p);
    mem_src_t src;
    mem_load(&src);
    nmc_train_data_t data = mem_data(&src);
    rec_t rec = {0};
    nmc_train_opts_t o = {.run_dir = TMP, .spec_hash = "0123456789abcdef", .stop = &stop,
                          .on_event = on_ev, .ev_ctx = &rec};
    nmc_train_result_t res;
    ck_assert_int_eq(nmc_train_run(m, &p, &data, NULL, &o, &res, &D), 0);
    ck_assert_int_eq(res.outcome, NMC_TRAIN_CANCELLED);
    ck_assert_int_eq(res.steps, 0);
    ck_assert_int_eq(rec.n_ckpt, 1);
    char *latest = nmc_ckpt_latest(TMP);
    ck_assert_ptr_nonnull(latest);
    ck_assert(strstr(latest, "step-00000000") != NULL);
    free(latest);
    nmc_model_free(m);
    rm_tmp();
}
END_TEST

/* ---- validation cadence ---------------------------------------------------------------- */
START_TEST(validation_once_per_epoch_by_default)
{
    nmc_train_plan_t p;
    golden_plan(config("full_clip"), &p);
    p.max_steps = 6; /* 3 steps per epoch: validation after steps 3 and 6 */
    nmc_model_t *m = load_model(&p);
    mem_src_t src, vsrc;
    mem_load(&src), mem_load(&vsrc);
    vsrc.n_batches = 2;
    nmc_train_data_t data = mem_data(&src), val = mem_data(&vsrc);
    rec_t rec = {0};
    nmc_train_opts_t o = {.on_event = on_ev, .ev_ctx = &rec};
    nmc_train_result_t res;
    ck_assert_int_eq(nmc_train_run(m, &p, &data, &val, &o, &res, &D), 0);
    ck_assert_int_eq(rec.n_val, 2);
    ck_assert(isfinite(res.last_val_loss));
    nmc_model_free(m);
}
END_TEST

/* ---- validation cadence, evaluation, NEFTune, reruns, metrics fields --------------------
 * Plans over the golden micro-batches (5 per epoch); validation set = micro-batches 0 and 1.
 * accum 1: 5 steps per epoch; accum 2: 3 (2 + 2 + 1 micro-batches). */
static void cadence_plan(nmc_train_plan_t *p, int backend, int64_t accum, int64_t epochs,
                         int64_t max_steps, int64_t eval_steps, double val_interval)
{
    golden_plan(config("full_adamw_cosine"), p);
    p->backend = backend;
    p->accum = accum;
    p->epochs = epochs;
    p->max_steps = max_steps;
    p->max_steps_overrides = backend == NMC_BACKEND_UNSLOTH;
    p->eval_steps = eval_steps;
    p->val_interval = val_interval;
}

/* Train p from the fixture's initial weights; validation on micro-batches 0 and 1 when
 * with_val. run_dir may be NULL; stop_after > 0 stops after that many steps. Returns the
 * trained model (the caller frees it). */
static nmc_model_t *train_with(const nmc_train_plan_t *p, bool with_val, const char *run_dir,
                               int64_t stop_after, rec_t *rec)
{
    nmc_model_t *m = load_model(p);
    mem_src_t src, vsrc;
    mem_load(&src), mem_load(&vsrc);
    vsrc.n_batches = 2;
    nmc_train_data_t data = mem_data(&src), val = mem_data(&vsrc);
    nmc_train_opts_t o = {.run_dir = run_dir, .spec_hash = "00000000000000cc", .stop_after = stop_after,
                          .on_event = on_ev, .ev_ctx = rec};
    nmc_train_result_t res;
    int rc = nmc_train_run(m, p, &data, with_val ? &val : NULL, &o, &res, &D);
    if (rc) dump();
    ck_assert_int_eq(rc, 0);
    return m;
}

/* An evaluation independent of the loop's validation pass: nmc_train_evaluate (the path of
 * `nmc train --eval-only`) over the validation micro-batches. */
static double eval_val(nmc_model_t *m)
{
    mem_src_t v;
    mem_load(&v);
    v.n_batches = 2;
    nmc_train_data_t vd = mem_data(&v);
    nmc_train_eval_t e;
    int rc = nmc_train_evaluate(m, &vd, &e, &D);
    if (rc) dump();
    ck_assert_int_eq(rc, 0);
    return e.loss;
}

/* metrics.jsonl of a run directory, every record checked for its exact key set. */
typedef struct {
    int n_train, n_val;
    int64_t train_step[64], val_step[64];
    double train_epoch[64], val_epoch[64], val_loss[64], eta[64];
} metrics_t;

static void check_keys(const nmc_json_t *o, const char *const *keys, size_t n, const char *line)
{
    ck_assert_msg(o && o->kind == NMC_JSON_OBJECT && o->u.obj.n == n, "record %s: want %zu keys", line, n);
    for (size_t i = 0; i < n; i++) {
        const nmc_json_member_t *mb = &o->u.obj.members[i];
        ck_assert_msg(strcmp(mb->key, keys[i]) == 0, "record %s: key %zu is %s, want %s", line, i, mb->key,
                      keys[i]);
        ck_assert_msg(mb->value->kind == NMC_JSON_NUMBER, "record %s: %s is not a number", line, keys[i]);
    }
}

static void read_metrics(const char *dir, metrics_t *mt)
{
    static const char *const train_keys[] = {"step", "epoch", "loss", "lr", "grad_norm",
                                             "tokens_per_s", "elapsed_s", "eta_s"};
    static const char *const val_keys[] = {"step", "epoch", "val_loss"};
    memset(mt, 0, sizeof *mt);
    char path[512], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    nmc_arena_t *a = nmc_arena_new();
    while (fgets(line, sizeof line, f)) {
        nmc_json_t *o = NULL;
        ck_assert_int_eq(nmc_json_parse(a, line, strlen(line), path, NULL, &o, &D), 0);
        bool val = nmc_json_get(o, "val_loss") != NULL;
        if (val) check_keys(o, val_keys, 3, line);
        else check_keys(o, train_keys, 8, line);
        const nmc_json_t *step = nmc_json_get(o, "step");
        ck_assert(step->u.num.int_ok);
        if (val && mt->n_val < 64) {
            mt->val_step[mt->n_val] = step->u.num.i;
            mt->val_epoch[mt->n_val] = jnum(o, "epoch");
            mt->val_loss[mt->n_val++] = jnum(o, "val_loss");
        } else if (!val && mt->n_train < 64) {
            for (size_t k = 5; k < 8; k++) ck_assert_msg(jnum(o, train_keys[k]) >= 0, "%s < 0: %s", train_keys[k], line);
            mt->train_step[mt->n_train] = step->u.num.i;
            mt->train_epoch[mt->n_train] = jnum(o, "epoch");
            mt->eta[mt->n_train++] = jnum(o, "eta_s");
        }
    }
    fclose(f);
    nmc_arena_free(a);
}

static const struct {
    const char *what;
    int backend;
    int64_t accum, epochs, max_steps, eval_steps;
    double val_interval;
    int n;
    int64_t steps[8]; /* steps after which val_loss is recorded */
} CADENCE[] = {
    {"unsloth eval_steps 2", NMC_BACKEND_UNSLOTH, 1, 1, 7, 2, 0, 3, {2, 4, 6}},
    {"unsloth eval_steps 3, accumulation 2", NMC_BACKEND_UNSLOTH, 2, 1, 7, 3, 0, 2, {3, 6}},
    {"unsloth null: epoch ends, and the end of a run cut mid-epoch", NMC_BACKEND_UNSLOTH, 1, 1, 7, 0, 0, 2, {5, 7}},
    {"automodel val_check_interval 0.5, 5 steps an epoch", NMC_BACKEND_AUTOMODEL, 1, 2, 0, 0, 0.5, 6,
     {2, 4, 5, 7, 9, 10}},
    {"automodel val_check_interval 0.7, 3 steps an epoch", NMC_BACKEND_AUTOMODEL, 2, 2, 0, 0, 0.7, 4, {2, 3, 5, 6}},
    {"automodel val_check_interval 0.5, 4 steps an epoch", NMC_BACKEND_AUTOMODEL, 1, 2, 0, 0, 0.5, 4, {2, 4, 6, 8}},
    {"automodel val_check_interval 3 (steps)", NMC_BACKEND_AUTOMODEL, 1, 2, 0, 0, 3, 3, {3, 6, 9}},
    {"automodel val_check_interval 1 (every step)", NMC_BACKEND_AUTOMODEL, 2, 1, 0, 0, 1, 3, {1, 2, 3}},
    {"automodel null: once per epoch", NMC_BACKEND_AUTOMODEL, 1, 2, 0, 0, 0, 2, {5, 10}},
    {"automodel null, max_steps cut mid-epoch", NMC_BACKEND_AUTOMODEL, 1, 2, 7, 0, 0, 2, {5, 7}},
};

START_TEST(validation_cadence)
{
    int i = _i;
    nmc_train_plan_t p;
    cadence_plan(&p, CADENCE[i].backend, CADENCE[i].accum, CADENCE[i].epochs, CADENCE[i].max_steps,
                 CADENCE[i].eval_steps, CADENCE[i].val_interval);
    mem_src_t four; /* "4 steps an epoch": the same source cut to 4 micro-batches */
    bool cut = strstr(CADENCE[i].what, "4 steps") != NULL;
    mk_tmp();
    rec_t rec = {0};
    nmc_model_t *m;
    if (!cut) {
        m = train_with(&p, true, TMP, 0, &rec);
    } else {
        m = load_model(&p);
        mem_src_t vsrc;
        mem_load(&four), mem_load(&vsrc);
        four.n_batches = 4, vsrc.n_batches = 2;
        nmc_train_data_t data = mem_data(&four), val = mem_data(&vsrc);
        nmc_train_opts_t o = {.run_dir = TMP, .spec_hash = "00000000000000cc", .on_event = on_ev, .ev_ctx = &rec};
        nmc_train_result_t res;
        ck_assert_int_eq(nmc_train_run(m, &p, &data, &val, &o, &res, &D), 0);
    }
    nmc_model_free(m);
    metrics_t mt;
    read_metrics(TMP, &mt);
    ck_assert_msg(mt.n_val == CADENCE[i].n, "%s: %d validation records, want %d", CADENCE[i].what, mt.n_val,
                  CADENCE[i].n);
    ck_assert_int_eq(rec.n_val, CADENCE[i].n);
    for (int k = 0; k < mt.n_val; k++) {
        ck_assert_msg(mt.val_step[k] == CADENCE[i].steps[k], "%s: validation %d after step %lld, want %lld",
                      CADENCE[i].what, k + 1, (long long)mt.val_step[k], (long long)CADENCE[i].steps[k]);
        ck_assert(mt.val_loss[k] == rec.val_loss[k]); /* the file holds the exact value */
        /* a validation record carries the epoch of the training record of its step */
        int64_t s = mt.val_step[k];
        ck_assert(s >= 1 && s <= mt.n_train && mt.train_step[s - 1] == s);
        ck_assert(mt.val_epoch[k] == mt.train_epoch[s - 1]);
    }
    ck_assert_int_eq(mt.n_train, rec.n); /* logging_steps 1: a record per step */
    for (int k = 0; k < mt.n_train; k++) ck_assert_int_eq(mt.train_step[k], k + 1);
    ck_assert(mt.eta[mt.n_train - 1] == 0.0);
    rm_tmp();
}
END_TEST

/* val_loss at each validation point equals an independent evaluation of the model trained
 * to that step (a fresh run stopped there), bit for bit; and before training the
 * evaluation equals transformers' loss of the untrained model on the same tokens. */
START_TEST(validation_loss_equals_evaluation)
{
    const int cases[] = {0, 3}; /* unsloth eval_steps 2; automodel 0.5 */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int i = cases[c];
        nmc_train_plan_t p;
        cadence_plan(&p, CADENCE[i].backend, CADENCE[i].accum, CADENCE[i].epochs, CADENCE[i].max_steps,
                     CADENCE[i].eval_steps, CADENCE[i].val_interval);
        rec_t rec = {0};
        nmc_model_free(train_with(&p, true, NULL, 0, &rec));
        ck_assert_int_eq(rec.n_val, CADENCE[i].n);
        for (int k = 0; k < rec.n_val; k++) {
            rec_t r2 = {0};
            nmc_model_t *m = train_with(&p, false, NULL, rec.val_step[k], &r2);
            ck_assert_int_eq(r2.n, rec.val_step[k]);
            double e = eval_val(m);
            ck_assert_msg(e == rec.val_loss[k], "%s: val_loss %.17g after step %lld, evaluation %.17g",
                          CADENCE[i].what, rec.val_loss[k], (long long)rec.val_step[k], e);
            nmc_model_free(m);
        }
    }
    /* step 0: the golden step-1 loss is the untrained model's mean CE on micro-batches 0
     * and 1 (full fine-tuning: the training forward is the eval forward) */
    nmc_train_plan_t p;
    cadence_plan(&p, NMC_BACKEND_UNSLOTH, 2, 1, 1, 0, 0);
    nmc_model_t *m = load_model(&p);
    double e = eval_val(m), want = nmc_json_get(config("full_adamw_cosine"), "loss")->u.arr.items[0]->u.num.d;
    ck_assert_msg(fabs(e - want) <= 1e-4 * fabs(want), "untrained eval %.8f, torch %.8f", e, want);
    nmc_model_free(m);
}
END_TEST

static void params_equal(nmc_model_t *a, nmc_model_t *b, bool *same)
{
    size_t na, nb;
    nmc_param_t *pa = nmc_model_params(a, &na), *pb = nmc_model_params(b, &nb);
    ck_assert_uint_eq(na, nb);
    *same = true;
    for (size_t i = 0; i < na; i++) {
        ck_assert_int_eq(pa[i].numel, pb[i].numel);
        float *x = malloc((size_t)pa[i].numel * sizeof *x), *y = malloc((size_t)pb[i].numel * sizeof *y);
        ck_assert_int_eq(nmc_model_param_read(a, &pa[i], x, &D), 0);
        ck_assert_int_eq(nmc_model_param_read(b, &pb[i], y, &D), 0);
        if (memcmp(x, y, (size_t)pa[i].numel * sizeof *x)) *same = false;
        free(x), free(y);
    }
}

/* NEFTune: noise in the training forward only. Before training the evaluation with and
 * without NEFTune is identical; the training losses differ; validation passes neither add
 * noise nor consume the noise stream (a run with validation trains exactly as one without,
 * and its val_loss equals the evaluation of the model at that step); the seed reproduces. */
START_TEST(neftune_in_training_forward_only)
{
    nmc_train_plan_t p, q;
    cadence_plan(&p, NMC_BACKEND_UNSLOTH, 1, 1, 4, 1, 0); /* validation after every step */
    p.neftune_alpha = 5;
    q = p;
    q.neftune_alpha = 0;
    nmc_model_t *a = load_model(&p), *b = load_model(&q);
    ck_assert(eval_val(a) == eval_val(b)); /* "step 0" */
    nmc_model_free(a), nmc_model_free(b);

    rec_t rn = {0}, r0 = {0}, rnv = {0}, rn2 = {0}, rs = {0};
    nmc_model_t *mn = train_with(&p, true, NULL, 0, &rn);
    nmc_model_free(train_with(&q, true, NULL, 0, &r0));
    ck_assert_int_eq(rn.n, 4);
    ck_assert_int_eq(r0.n, 4);
    for (int k = 0; k < 4; k++) /* the noise changes every training forward */
        ck_assert_msg(rn.loss[k] != r0.loss[k], "step %d: NEFTune loss %.17g equals the plain one", k + 1, rn.loss[k]);
    /* a perturbation, not garbage: within 5% of the plain loss at step 1 */
    ck_assert(fabs(rn.loss[0] - r0.loss[0]) < 0.05 * r0.loss[0]);

    nmc_model_t *mnv = train_with(&p, false, NULL, 0, &rnv); /* no validation at all */
    bool same;
    params_equal(mn, mnv, &same);
    ck_assert_msg(same, "validation changed the NEFTune training");
    for (int k = 0; k < 4; k++) ck_assert(rnv.loss[k] == rn.loss[k] && rnv.gn[k] == rn.gn[k]);
    nmc_model_free(mnv);

    rec_t r2 = {0}; /* the model at step 2, evaluated outside the loop */
    nmc_model_t *m2 = train_with(&p, false, NULL, 2, &r2);
    ck_assert_int_eq(rn.val_step[1], 2);
    ck_assert(eval_val(m2) == rn.val_loss[1]);
    nmc_model_free(m2);

    nmc_model_t *mn2 = train_with(&p, true, NULL, 0, &rn2); /* same seed: bit-identical */
    params_equal(mn, mn2, &same);
    ck_assert(same);
    for (int k = 0; k < 4; k++) ck_assert(rn2.loss[k] == rn.loss[k] && rn2.val_loss[k] == rn.val_loss[k]);
    nmc_model_free(mn2);

    p.seed = 3408; /* another noise stream (the data order here does not depend on it) */
    nmc_model_t *ms = train_with(&p, true, NULL, 0, &rs);
    for (int k = 0; k < 4; k++) ck_assert(rs.loss[k] != rn.loss[k]);
    nmc_model_free(ms);
    nmc_model_free(mn);
}
END_TEST

/* The same job twice from scratch (same seed, same threads): byte-identical metrics
 * (loss, lr, grad_norm, val_loss) and bit-identical weights; another seed changes the
 * losses. LoRA with dropout, so the seed's stream is in use. */
START_TEST(reruns_are_bit_identical)
{
    nmc_train_plan_t p;
    golden_plan(config("lora"), &p);
    p.lora.dropout = 0.1;
    p.max_steps = 6, p.eval_steps = 3;
    mk_tmp();
    char a[256], b[256], c[256];
    snprintf(a, sizeof a, "%s/a", TMP), snprintf(b, sizeof b, "%s/b", TMP), snprintf(c, sizeof c, "%s/c", TMP);
    ck_assert_int_eq(nmc_run_mkdirs(a, &D), 0);
    ck_assert_int_eq(nmc_run_mkdirs(b, &D), 0);
    ck_assert_int_eq(nmc_run_mkdirs(c, &D), 0);
    rec_t ra = {0}, rb = {0}, rc = {0};
    nmc_model_t *ma = train_with(&p, true, a, 0, &ra), *mb = train_with(&p, true, b, 0, &rb);
    char *ta = slurp_metrics(a), *tb = slurp_metrics(b);
    ck_assert_str_eq(ta, tb);
    ck_assert_int_eq(ra.n_val, 2);
    bool same;
    params_equal(ma, mb, &same);
    ck_assert_msg(same, "two runs of the same job gave different weights");
    p.seed = 3408;
    nmc_model_t *mc = train_with(&p, true, c, 0, &rc);
    char *tc = slurp_metrics(c);
    ck_assert_str_ne(ta, tc);
    /* B = 0 until step 2 (step 1 has lr 0: warmup 1): equal losses, different gradients */
    ck_assert(rc.gn[0] != ra.gn[0] && rc.gn[1] != ra.gn[1]);
    for (int k = 2; k < 6; k++) ck_assert_msg(rc.loss[k] != ra.loss[k], "step %d: %.17g %.17g gn %.17g %.17g", k + 1, rc.loss[k], ra.loss[k], rc.gn[k], ra.gn[k]);
    params_equal(ma, mc, &same);
    ck_assert(!same);
    free(ta), free(tb), free(tc);
    nmc_model_free(ma), nmc_model_free(mb), nmc_model_free(mc);
    rm_tmp();
}
END_TEST

/* ---- plans from jobs -------------------------------------------------------------------- */
static nmc_job_t *JOB;
static nmc_arena_t *PA;

static int plan_of(const char *json, nmc_train_plan_t *p)
{
    if (JOB) nmc_job_free(JOB);
    if (!PA) PA = nmc_arena_new();
    JOB = NULL;
    nmc_job_load_buffer(json, strlen(json), "job.json", NULL, &JOB, &D);
    if (JOB->status != NMC_JOB_VALID) dump();
    ck_assert_int_eq(JOB->status, NMC_JOB_VALID);
    return nmc_train_plan_from_job(JOB, PA, p, &D);
}

static void plan_teardown(void)
{
    if (JOB) nmc_job_free(JOB);
    if (PA) nmc_arena_free(PA);
    JOB = NULL, PA = NULL;
    teardown();
}

START_TEST(plan_automodel_defaults)
{
    nmc_train_plan_t p;
    ck_assert_int_eq(plan_of("{\"model\": \"m\", \"dataset\": {\"training\": \"d\"}, \"training\": {},"
                             " \"batch\": {\"global_batch_size\": 8, \"micro_batch_size\": 2}}", &p), 0);
    ck_assert_int_eq(p.backend, NMC_BACKEND_AUTOMODEL);
    ck_assert_int_eq(p.accum, 4);
    ck_assert_int_eq(p.micro_batch, 2);
    ck_assert_int_eq(p.mode, NMC_TRAIN_LORA);
    ck_assert_int_eq(p.output, NMC_OUTPUT_ADAPTER);
    ck_assert_int_eq(p.optim.kind, NMC_OPTIM_ADAM_L2); /* auto = torch Adam for SFT */
    ck_assert_int_eq(p.sched, NMC_SCHED_NEMO_COSINE);
    ck_assert(!p.seed_given);
    ck_assert_int_eq(p.seed, 42);
    ck_assert(p.max_grad_norm == 1.0);
    ck_assert(!p.max_steps_overrides);
    ck_assert_int_eq(p.lora.match, NMC_LORA_MATCH_GLOB);
    ck_assert(has_code("train-seed-default"));
    ck_assert_str_eq(p.model_ref, "m");
}
END_TEST

START_TEST(plan_automodel_refusals)
{
    nmc_train_plan_t p;
    ck_assert_int_eq(plan_of("{\"model\": \"m\", \"dataset\": {\"training\": \"d\"},"
                             " \"training\": {\"training_type\": \"distillation\", \"teacher_model\": \"t\"},"
                             " \"batch\": {\"global_batch_size\": 16, \"micro_batch_size\": 1},"
                             " \"parallelism\": {\"num_gpus_per_node\": 2, \"tensor_parallel_size\": 2}}", &p), -1);
    const nmc_diag_t *e = find_code("train-unsupported");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->message, "knowledge distillation is not supported by nmc yet");
    ck_assert_str_eq(e->path, "training.training_type");
    ck_assert_uint_eq(e->line, 1);
    int n = 0;
    for (size_t i = 0; i < D.n; i++)
        if (strcmp(D.items[i].code, "train-unsupported") == 0) {
            n++;
            if (strstr(D.items[i].message, "tensor"))
                ck_assert_str_eq(D.items[i].message, "tensor parallelism (parallelism.tensor_parallel_size 2) "
                                                     "is not supported by nmc yet");
        }
    ck_assert_int_eq(n, 2);
    /* data parallelism alone is planned: accumulation = gbs / (mbs × dp) */
    nmc_diags_free(&D);
    nmc_diags_init(&D);
    ck_assert_int_eq(plan_of("{\"model\": \"m\", \"dataset\": {\"training\": \"d\"}, \"training\": {},"
                             " \"batch\": {\"global_batch_size\": 16, \"micro_batch_size\": 2},"
                             " \"parallelism\": {\"num_gpus_per_node\": 4}}", &p), 0);
    ck_assert_int_eq(p.accum, 2);
    ck_assert_ptr_null(find_code("train-unsupported"));
}
END_TEST

START_TEST(plan_automodel_merge_and_full)
{
    nmc_train_plan_t p;
    ck_assert_int_eq(plan_of("{\"model\": \"m\", \"dataset\": {\"training\": \"d\"},"
                             " \"training\": {\"finetuning_type\": \"lora_merged\"},"
                             " \"optimizer\": {\"optimizer\": \"AdamW\", \"lr_decay_style\": \"linear\","
                             " \"min_learning_rate\": 1e-6}, \"schedule\": {\"seed\": 7, \"max_steps\": 5},"
                             " \"output\": {\"name\": \"merged\"}}", &p), 0);
    ck_assert_int_eq(p.output, NMC_OUTPUT_MERGED);
    ck_assert_int_eq(p.optim.kind, NMC_OPTIM_ADAMW);
    ck_assert_int_eq(p.sched, NMC_SCHED_NEMO_LINEAR);
    ck_assert(p.min_lr == 1e-6);
    ck_assert_int_eq(p.seed, 7);
    ck_assert_int_eq(p.max_steps, 5);
    ck_assert_str_eq(p.output_name, "merged");
    ck_assert(!has_code("train-seed-default"));
    ck_assert_int_eq(plan_of("{\"model\": \"m\", \"dataset\": {\"training\": \"d\"},"
                             " \"training\": {\"finetuning_type\": \"all_weights\"}}", &p), 0);
    ck_assert_int_eq(p.mode, NMC_TRAIN_FULL);
    ck_assert_int_eq(p.output, NMC_OUTPUT_FULL);
}
END_TEST

START_TEST(plan_unsloth_defaults_and_notices)
{
    nmc_train_plan_t p;
    ck_assert_int_eq(plan_of("{\"$schema\": \"unsloth.schema.json\", \"model\": {\"name\": \"m\"}, \"dataset\": {\"path\": \"d\"},"
                             " \"batch\": {\"per_device_train_batch_size\": 2, \"gradient_accumulation_steps\": 4},"
                             " \"schedule\": {\"warmup_ratio\": 0.1, \"lr_scheduler_type\": \"cosine_with_restarts\","
                             " \"lr_scheduler_kwargs\": {\"num_cycles\": 3}, \"max_steps\": 30}}", &p), 0);
    ck_assert_int_eq(p.backend, NMC_BACKEND_UNSLOTH);
    ck_assert_int_eq(p.accum, 4);
    ck_assert_int_eq(p.micro_batch, 2);
    ck_assert_int_eq(p.seed, 3407);
    ck_assert(p.max_steps_overrides);
    ck_assert_int_eq(p.max_steps, 30);
    ck_assert_int_eq(p.sched, NMC_SCHED_COSINE_RESTARTS);
    ck_assert(p.num_cycles == 3.0);
    ck_assert(p.warmup_ratio == 0.1);
    ck_assert_int_eq(p.optim.kind, NMC_OPTIM_ADAMW); /* adamw_8bit default */
    ck_assert_int_eq(p.lora.match, NMC_LORA_MATCH_SUFFIX);
    ck_assert_int_eq(p.lora.seed, 3407);
    ck_assert(p.max_grad_norm == 1.0);
    ck_assert(has_code("train-optim-8bit"));
    ck_assert(has_code("train-quantized-load")); /* load_in_4bit defaults to true */
    ck_assert_int_eq((int)D.n_errors, 0);
}
END_TEST

START_TEST(plan_unsloth_refusals)
{
    nmc_train_plan_t p;
    ck_assert_int_eq(plan_of("{\"$schema\": \"unsloth.schema.json\", \"model\": {\"name\": \"m\"}, \"dataset\": {\"path\": \"d\"},"
                             " \"training\": {\"lora\": {\"use_dora\": true}},"
                             " \"schedule\": {\"lr_scheduler_kwargs\": {\"power\": 2}},"
                             " \"output\": {\"save_method\": \"merged_4bit\"}}", &p), -1);
    const nmc_diag_t *e = find_code("train-unsupported");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->message, "save_method \"merged_4bit\" (4-bit quantized export) is not supported by nmc yet");
    ck_assert_str_eq(e->path, "output.save_method");
    ck_assert(has_code("lora-dora-unsupported"));
    e = find_code("train-scheduler-kwarg");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->message, "lr_scheduler_kwargs key \"power\" is not supported with lr_scheduler_type linear");
}
END_TEST

START_TEST(plan_unsloth_sgd_and_merged)
{
    nmc_train_plan_t p;
    ck_assert_int_eq(plan_of("{\"$schema\": \"unsloth.schema.json\", \"model\": {\"name\": \"m\", \"load_in_4bit\": false},"
                             " \"dataset\": {\"path\": \"d\"}, \"optimizer\": {\"optim\": \"sgd\","
                             " \"label_smoothing_factor\": 0.1, \"neftune_noise_alpha\": 5},"
                             " \"output\": {\"save_method\": \"merged_16bit\", \"name\": \"out\"}}", &p), 0);
    ck_assert_int_eq(p.optim.kind, NMC_OPTIM_SGD);
    ck_assert(p.label_smoothing == 0.1);
    ck_assert(p.neftune_alpha == 5.0);
    ck_assert_int_eq(p.output, NMC_OUTPUT_MERGED);
    ck_assert(!has_code("train-quantized-load"));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("golden");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, schedules_match_transformers_and_nemo);
    tcase_add_test(tc, step_arithmetic);
    tcase_add_test(tc, golden_full_adamw_cosine);
    tcase_add_test(tc, golden_full_clip);
    tcase_add_test(tc, golden_full_adam_l2);
    tcase_add_test(tc, golden_full_sgd);
    tcase_add_test(tc, golden_label_smoothing);
    tcase_add_test(tc, golden_lora);
    tcase_add_test(tc, resume_gives_identical_losses);
    tcase_add_test(tc, stop_flag_checkpoints_at_step_boundary);
    tcase_add_test(tc, validation_once_per_epoch_by_default);
    tcase_add_loop_test(tc, validation_cadence, 0, (int)(sizeof CADENCE / sizeof CADENCE[0]));
    tcase_add_test(tc, validation_loss_equals_evaluation);
    tcase_add_test(tc, neftune_in_training_forward_only);
    tcase_add_test(tc, reruns_are_bit_identical);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("plan");
    tcase_add_checked_fixture(tp, setup, plan_teardown);
    tcase_add_test(tp, plan_automodel_defaults);
    tcase_add_test(tp, plan_automodel_refusals);
    tcase_add_test(tp, plan_automodel_merge_and_full);
    tcase_add_test(tp, plan_unsloth_defaults_and_notices);
    tcase_add_test(tp, plan_unsloth_refusals);
    tcase_add_test(tp, plan_unsloth_sgd_and_merged);
    suite_add_tcase(s, tp);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
