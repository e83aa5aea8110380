/* peft.c — PEFT LoRA adapter directories: write adapter_config.json and
 * adapter_model.safetensors from a model's LoRA state, read the config back into an
 * nmc_lora_cfg_t, and load the tensors into a model (resume, tests).
 */
#include "peft.h"
#include "json.h"
#include "model_int.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tensor names ---------------------------------------------------------------------- */

static bool lin_of_bias(nmc_model_t *m, const nmc_param_t *p, const nmc_lin_t **out)
{
    if (p->layer < 0) return false;
    for (int li = 0; li < LIN_COUNT; li++)
        if (m->layers[p->layer].lin[li].b == p) {
            *out = &m->layers[p->layer].lin[li];
            return true;
        }
    return false;
}

/* PEFT's adapter-file name of a trainable tensor (arena), or NULL when it is not saved. */
static const char *adapter_name(nmc_model_t *m, const nmc_param_t *p)
{
    if (!p->trainable) return NULL;
    if (p->kind == NMC_PARAM_LORA_A || p->kind == NMC_PARAM_LORA_B) return p->name;
    const nmc_lin_t *lin;
    if (p->kind == NMC_PARAM_BIAS && lin_of_bias(m, p, &lin) && lin->A)
        return nmc_arena_printf(m->arena, "base_model.model.%s.base_layer.bias", lin->module);
    return nmc_arena_printf(m->arena, "base_model.model.%s", p->name);
}

static int need_lora(nmc_model_t *m, nmc_diags_t *d)
{
    if (m->has_lora) return 0;
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "model-not-lora", NULL, 0, 0, 0,
                                 "the model was not loaded for LoRA training");
    nmc_diag_set_help(r, "load it with train = NMC_TRAIN_LORA and a LoRA config");
    return -1;
}

/* ---- adapter_config.json ------------------------------------------------------------- */

static void jw_strs(nmc_json_writer_t *w, const char *key, const char *const *s, int n)
{
    nmc_jw_key(w, key);
    if (!s || n <= 0) {
        nmc_jw_null(w);
        return;
    }
    nmc_jw_begin_array(w);
    for (int i = 0; i < n; i++) nmc_jw_string(w, s[i]);
    nmc_jw_end_array(w);
}

static const char *const LEAF[LIN_COUNT] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                            "gate_proj", "up_proj", "down_proj"};

/* target_modules as PEFT reads them. Suffix matching: the user's names. Glob matching:
 * the leaf names when every layer has exactly that set of adapters, else every adapted
 * module's full name (PEFT matches a name equal to a target). */
static void jw_targets(nmc_json_writer_t *w, nmc_model_t *m)
{
    const nmc_lora_cfg_t *c = &m->lora;
    if (c->match == NMC_LORA_MATCH_SUFFIX && c->n_target_modules > 0) {
        jw_strs(w, "target_modules", c->target_modules, c->n_target_modules);
        return;
    }
    bool uniform = true;
    for (int l = 1; l < m->n_layers; l++)
        for (int li = 0; li < LIN_COUNT; li++)
            uniform &= !m->layers[l].lin[li].A == !m->layers[0].lin[li].A;
    nmc_jw_key(w, "target_modules");
    nmc_jw_begin_array(w);
    for (int l = 0; l < (uniform ? 1 : m->n_layers); l++)
        for (int li = 0; li < LIN_COUNT; li++)
            if (m->layers[l].lin[li].A) nmc_jw_string(w, uniform ? LEAF[li] : m->layers[l].lin[li].module);
    nmc_jw_end_array(w);
}

static void write_config(nmc_json_writer_t *w, nmc_model_t *m, const nmc_peft_save_opts_t *o)
{
    const nmc_lora_cfg_t *c = &m->lora;
    bool glob = c->match == NMC_LORA_MATCH_GLOB;
    nmc_jw_begin_object(w);
    nmc_jw_key(w, "alpha_pattern"), nmc_jw_begin_object(w), nmc_jw_end_object(w);
    nmc_jw_key(w, "auto_mapping"), nmc_jw_null(w);
    nmc_jw_key(w, "base_model_name_or_path");
    if (o && o->base_model_name_or_path) nmc_jw_string(w, o->base_model_name_or_path);
    else nmc_jw_null(w);
    nmc_jw_key(w, "bias"), nmc_jw_string(w, nmc_lora_bias_name(c->bias));
    /* glob excludes are folded into the written target list */
    jw_strs(w, "exclude_modules", glob ? NULL : c->exclude_modules, c->n_exclude_modules);
    nmc_jw_key(w, "fan_in_fan_out"), nmc_jw_bool(w, false);
    nmc_jw_key(w, "inference_mode"), nmc_jw_bool(w, true);
    nmc_jw_key(w, "init_lora_weights");
    if (c->init == NMC_LORA_INIT_GAUSSIAN) nmc_jw_string(w, "gaussian");
    else nmc_jw_bool(w, c->init != NMC_LORA_INIT_RANDOM);
    nmc_jw_key(w, "layer_replication"), nmc_jw_null(w);
    nmc_jw_key(w, "layers_pattern"), nmc_jw_null(w);
    nmc_jw_key(w, "layers_to_transform");
    if (!c->layers_to_transform || c->n_layers_to_transform <= 0) nmc_jw_null(w);
    else {
        nmc_jw_begin_array(w);
        for (int i = 0; i < c->n_layers_to_transform; i++) nmc_jw_int(w, c->layers_to_transform[i]);
        nmc_jw_end_array(w);
    }
    nmc_jw_key(w, "loftq_config"), nmc_jw_begin_object(w), nmc_jw_end_object(w);
    nmc_jw_key(w, "lora_alpha"); /* PEFT writes an int when it is one */
    if (c->alpha == (double)(int64_t)c->alpha) nmc_jw_int(w, (int64_t)c->alpha);
    else nmc_jw_double(w, c->alpha);
    nmc_jw_key(w, "lora_bias"), nmc_jw_bool(w, false);
    nmc_jw_key(w, "lora_dropout"), nmc_jw_double(w, c->dropout);
    nmc_jw_key(w, "megatron_config"), nmc_jw_null(w);
    nmc_jw_key(w, "megatron_core"), nmc_jw_string(w, "megatron.core");
    jw_strs(w, "modules_to_save", c->modules_to_save, c->n_modules_to_save);
    nmc_jw_key(w, "peft_type"), nmc_jw_string(w, "LORA");
    nmc_jw_key(w, "r"), nmc_jw_int(w, c->r);
    nmc_jw_key(w, "rank_pattern"), nmc_jw_begin_object(w), nmc_jw_end_object(w);
    nmc_jw_key(w, "revision"), nmc_jw_null(w);
    jw_targets(w, m);
    nmc_jw_key(w, "task_type"), nmc_jw_string(w, "CAUSAL_LM");
    nmc_jw_key(w, "use_dora"), nmc_jw_bool(w, false);
    nmc_jw_key(w, "use_rslora"), nmc_jw_bool(w, c->use_rslora);
    nmc_jw_end_object(w);
}

static int save_config(nmc_model_t *m, const char *dir, const nmc_peft_save_opts_t *o,
                       nmc_diags_t *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) abort();
    nmc_json_writer_t w;
    nmc_jw_init(&w, f, 2);
    write_config(&w, m, o);
    fputc('\n', f);
    fclose(f);
    int rc = nmc_model_write_file(nmc_arena_printf(m->arena, "%s/adapter_config.json", dir), buf,
                                  len, d);
    free(buf);
    return rc;
}

/* ---- adapter_model.safetensors -------------------------------------------------------- */

static int save_tensors(nmc_model_t *m, const char *dir, nmc_diags_t *d)
{
    nmc_st_write_tensor_t *wt = calloc(m->n_params + 1, sizeof *wt);
    if (!wt) abort();
    size_t nw = 0;
    int rc = 0;
    for (size_t i = 0; i < m->n_params && rc == 0; i++) {
        nmc_param_t *p = &m->params[i];
        const char *name = adapter_name(m, p);
        if (!name) continue;
        float *host = malloc(sizeof(float) * (size_t)p->numel + 1);
        if (!host) abort();
        rc = nmc_model_param_read(m, p, host, d);
        wt[nw] = (nmc_st_write_tensor_t){.name = name, .dtype = NMC_ST_F32, .ndim = p->ndim,
                                         .data = host};
        wt[nw].shape[0] = p->shape[0];
        wt[nw].shape[1] = p->shape[1];
        nw++;
    }
    nmc_st_kv_t meta = {"format", "pt"};
    if (!rc)
        rc = nmc_st_write(nmc_arena_printf(m->arena, "%s/adapter_model.safetensors", dir), wt, nw,
                          &meta, 1, d);
    for (size_t i = 0; i < nw; i++) free((void *)wt[i].data);
    free(wt);
    return rc;
}

int nmc_peft_save(nmc_model_t *m, const char *dir, const nmc_peft_save_opts_t *o, nmc_diags_t *d)
{
    if (need_lora(m, d) || nmc_model_make_dir(dir, d)) return -1;
    if (save_tensors(m, dir, d) != 0) return -1;
    return save_config(m, dir, o, d);
}

/* ---- load tensors --------------------------------------------------------------------- */

static nmc_diag_t *perr(nmc_diags_t *d, const char *code, const char *file, const char *name,
                        const char *msg)
{
    return nmc_diag_add(d, NMC_SEV_ERROR, code, file, 0, 0, 0, "%s: %s", name, msg);
}

static int load_one(nmc_model_t *m, nmc_param_t *p, const nmc_st_tensor_t *t, const char *file,
                    nmc_diags_t *d)
{
    bool ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] && (p->ndim < 2 || t->shape[1] == p->shape[1]);
    if (!ok) {
        nmc_diag_t *r = perr(d, "peft-tensor-shape", file, t->name, "wrong shape for this model and LoRA rank");
        nmc_diag_set_expected(r, "[%lld%s%lld]", (long long)p->shape[0], p->ndim == 2 ? ", " : "",
                              p->ndim == 2 ? (long long)p->shape[1] : 0LL);
        nmc_diag_set_got(r, "[%lld%s%lld]", (long long)t->shape[0], t->ndim == 2 ? ", " : "",
                         t->ndim == 2 ? (long long)t->shape[1] : 0LL);
        return -1;
    }
    float *host = malloc(sizeof(float) * (size_t)p->numel + 1);
    if (!host) abort();
    int rc = nmc_st_to_f32(t, host, d);
    if (!rc) rc = nmc_model_param_write(m, p, host, d);
    free(host);
    return rc;
}

int nmc_peft_load(nmc_model_t *m, const char *dir, nmc_diags_t *d)
{
    if (need_lora(m, d)) return -1;
    const char *file = nmc_arena_printf(m->arena, "%s/adapter_model.safetensors", dir);
    nmc_st_t *st = NULL;
    if (nmc_st_open(file, &st, d) != 0) return -1;
    int rc = 0;
    size_t used = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        const char *name = adapter_name(m, &m->params[i]);
        if (!name) continue;
        const nmc_st_tensor_t *t = nmc_st_find(st, name);
        if (!t) {
            nmc_diag_t *r = perr(d, "peft-tensor-missing", file, name, "tensor missing from the adapter");
            nmc_diag_set_help(r, "the adapter was trained with other target_modules, bias or "
                                 "modules_to_save settings than this model was loaded with");
            rc = -1;
            continue;
        }
        used++;
        if (load_one(m, &m->params[i], t, file, d) != 0) rc = -1;
    }
    if (used != nmc_st_count(st))
        for (size_t k = 0; k < nmc_st_count(st); k++) {
            const char *tn = nmc_st_at(st, k)->name;
            bool known = false;
            for (size_t i = 0; i < m->n_params && !known; i++) {
                const char *n = adapter_name(m, &m->params[i]);
                known = n && !strcmp(n, tn);
            }
            if (!known) {
                perr(d, "peft-tensor-unexpected", file, tn, "tensor this model's LoRA setup does not have");
                rc = -1;
            }
        }
    nmc_st_close(st);
    return rc;
}

/* ---- read adapter_config.json --------------------------------------------------------- */

static nmc_diag_t *cfg_err(nmc_diags_t *d, const char *file, const nmc_json_t *v, const char *key,
                           const char *code, const char *msg)
{
    nmc_path_t p = {.depth = 0};
    nmc_path_push_key(&p, key, strlen(key));
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, code, file, v ? v->line : 0, v ? v->col : 0,
                                 v ? v->offset : 0, "%s", msg);
    nmc_diag_set_path(r, &p);
    return r;
}

static int get_strs(nmc_arena_t *a, const char *file, const nmc_json_t *root, const char *key,
                    const char *const **out, int *n, nmc_diags_t *d)
{
    const nmc_json_t *v = nmc_json_get(root, key);
    *out = NULL;
    *n = 0;
    if (!v || v->kind == NMC_JSON_NULL) return 0;
    if (v->kind == NMC_JSON_STRING) {
        nmc_diag_t *r = cfg_err(d, file, v, key, "peft-target-regex-unsupported",
                                "a string here is a PEFT regular expression, which nmc does not support");
        nmc_diag_set_help(r, "list the module names instead, e.g. [\"q_proj\", \"v_proj\"]");
        return -1;
    }
    if (v->kind != NMC_JSON_ARRAY) {
        cfg_err(d, file, v, key, "peft-config-type", "expected a list of strings or null");
        return -1;
    }
    const char **s = nmc_arena_alloc(a, sizeof *s * (v->u.arr.n + 1));
    for (size_t i = 0; i < v->u.arr.n; i++) {
        if (v->u.arr.items[i]->kind != NMC_JSON_STRING) {
            cfg_err(d, file, v->u.arr.items[i], key, "peft-config-type", "expected a string");
            return -1;
        }
        s[i] = v->u.arr.items[i]->u.str.s;
    }
    *out = s;
    *n = (int)v->u.arr.n;
    return 0;
}

static int get_num(const char *file, const nmc_json_t *root, const char *key, double *out,
                   bool required, nmc_diags_t *d)
{
    const nmc_json_t *v = nmc_json_get(root, key);
    if (!v || v->kind == NMC_JSON_NULL) {
        if (required) cfg_err(d, file, NULL, key, "peft-config-missing", "required key missing");
        return required ? -1 : 0;
    }
    if (v->kind != NMC_JSON_NUMBER) {
        cfg_err(d, file, v, key, "peft-config-type", "expected a number");
        return -1;
    }
    *out = v->u.num.d;
    return 0;
}

static bool get_bool(const nmc_json_t *root, const char *key)
{
    const nmc_json_t *v = nmc_json_get(root, key);
    return v && v->kind == NMC_JSON_BOOL && v->u.boolean;
}

static int read_init(const char *file, const nmc_json_t *root, nmc_lora_cfg_t *c, nmc_diags_t *d)
{
    const nmc_json_t *v = nmc_json_get(root, "init_lora_weights");
    if (!v || v->kind == NMC_JSON_NULL) return 0;
    if (v->kind == NMC_JSON_BOOL) {
        c->init = v->u.boolean ? NMC_LORA_INIT_DEFAULT : NMC_LORA_INIT_RANDOM;
        return 0;
    }
    static const struct { const char *s; nmc_lora_init_t i; } names[] = {
        {"gaussian", NMC_LORA_INIT_GAUSSIAN}, {"pissa", NMC_LORA_INIT_PISSA},
        {"olora", NMC_LORA_INIT_OLORA},       {"loftq", NMC_LORA_INIT_LOFTQ}};
    if (v->kind == NMC_JSON_STRING) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strncmp(v->u.str.s, names[i].s, strlen(names[i].s))) { /* pissa_niter_16 too */
                c->init = names[i].i;
                return 0;
            }
        c->init = NMC_LORA_INIT_PISSA; /* any other named method: refused later */
        return 0;
    }
    cfg_err(d, file, v, "init_lora_weights", "peft-config-type", "expected a boolean or a string");
    return -1;
}

static int read_layers(nmc_arena_t *a, const char *file, const nmc_json_t *root,
                       nmc_lora_cfg_t *c, nmc_diags_t *d)
{
    const nmc_json_t *v = nmc_json_get(root, "layers_to_transform");
    if (!v || v->kind == NMC_JSON_NULL) return 0;
    size_t n = v->kind == NMC_JSON_ARRAY ? v->u.arr.n : 1;
    int *l = nmc_arena_alloc(a, sizeof *l * (n + 1));
    for (size_t i = 0; i < n; i++) {
        const nmc_json_t *x = v->kind == NMC_JSON_ARRAY ? v->u.arr.items[i] : v;
        if (x->kind != NMC_JSON_NUMBER || !x->u.num.int_ok) {
            cfg_err(d, file, x, "layers_to_transform", "peft-config-type", "expected an integer or a list of integers");
            return -1;
        }
        l[i] = (int)x->u.num.i;
    }
    c->layers_to_transform = l;
    c->n_layers_to_transform = (int)n;
    return 0;
}

int nmc_peft_read_config(nmc_arena_t *a, const char *dir, nmc_lora_cfg_t *c, nmc_diags_t *d)
{
    const char *file = nmc_arena_printf(a, "%s/adapter_config.json", dir);
    nmc_json_limits_t lim = {NMC_JSON_DATA_MAX_BYTES, 0};
    nmc_json_t *root = NULL;
    if (nmc_json_parse_file(a, file, &lim, &root, NULL, NULL, d) != 0) return -1;
    nmc_lora_cfg_default(c);
    c->match = NMC_LORA_MATCH_SUFFIX;
    const nmc_json_t *pt = nmc_json_get(root, "peft_type");
    if (!pt || pt->kind != NMC_JSON_STRING || strcmp(pt->u.str.s, "LORA")) {
        nmc_diag_t *r = cfg_err(d, file, pt, "peft_type", "peft-type-unsupported", "not a LoRA adapter");
        nmc_diag_set_expected(r, "\"LORA\"");
        return -1;
    }
    double r = 0, alpha = 0, drop = 0;
    int rc = get_num(file, root, "r", &r, true, d) | get_num(file, root, "lora_alpha", &alpha, true, d) |
             get_num(file, root, "lora_dropout", &drop, false, d);
    rc |= get_strs(a, file, root, "target_modules", &c->target_modules, &c->n_target_modules, d);
    rc |= get_strs(a, file, root, "exclude_modules", &c->exclude_modules, &c->n_exclude_modules, d);
    rc |= get_strs(a, file, root, "modules_to_save", &c->modules_to_save, &c->n_modules_to_save, d);
    rc |= read_init(file, root, c, d) | read_layers(a, file, root, c, d);
    c->r = (int)r;
    c->alpha = alpha;
    c->dropout = drop;
    c->use_rslora = get_bool(root, "use_rslora");
    c->use_dora = get_bool(root, "use_dora");
    const nmc_json_t *b = nmc_json_get(root, "bias");
    if (b && b->kind == NMC_JSON_STRING)
        c->bias = !strcmp(b->u.str.s, "all") ? NMC_LORA_BIAS_ALL
                  : !strcmp(b->u.str.s, "lora_only") ? NMC_LORA_BIAS_LORA_ONLY : NMC_LORA_BIAS_NONE;
    const nmc_json_t *lr = nmc_json_get(root, "layer_replication");
    c->has_layer_replication = lr && lr->kind != NMC_JSON_NULL;
    const nmc_json_t *lq = nmc_json_get(root, "loftq_config");
    c->has_loftq_config = lq && lq->kind == NMC_JSON_OBJECT && lq->u.obj.n > 0;
    if (get_bool(root, "fan_in_fan_out")) {
        cfg_err(d, file, nmc_json_get(root, "fan_in_fan_out"), "fan_in_fan_out",
                "peft-config-unsupported", "fan_in_fan_out adapters (GPT-2 Conv1D) are not supported");
        rc = -1;
    }
    return rc ? -1 : 0;
}
