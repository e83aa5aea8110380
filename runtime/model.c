/* model.c — loading the Llama-family decoder: config, checkpoint check, parameter list
 * (base tensors, LoRA adapters, trainability and weight-decay flags), device upload,
 * parameter access, and the full-weight / merged save.
 * Forward and backward are in model_fwd.c; the adapter file format in peft.c.
 */
#include "model_int.h"
#include "json.h"
#include "store.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const LIN_SUFFIX[LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

void nmc_model_opts_default(nmc_model_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 42;
    o->ce_chunk = 256;
    o->tp_size = 1;
}

const char *nmc_model_lin_module(nmc_model_t *m, int l, int li)
{
    return nmc_arena_printf(m->arena, "model.layers.%d.%s", l, LIN_SUFFIX[li]);
}

/* ---- small helpers ------------------------------------------------------------------ */

static int read_text(nmc_arena_t *a, const char *path, const char **out, size_t *len,
                     nmc_diags_t *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "cannot open: %s",
                     strerror(errno));
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = nmc_arena_alloc(a, (size_t)(n > 0 ? n : 0) + 1);
    size_t got = n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (n < 0 || got != (size_t)n) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "cannot read the file");
        return -1;
    }
    *out = buf;
    *len = got;
    return 0;
}

static nmc_diag_t *model_err(nmc_diags_t *d, const char *code, const char *file,
                             const char *msg)
{
    return nmc_diag_add(d, NMC_SEV_ERROR, code, file, 0, 0, 0, "%s", msg);
}

/* ---- option checks ------------------------------------------------------------------ */

static int check_opts(const nmc_model_opts_t *o, const nmc_model_config_t *c, nmc_diags_t *d)
{
    int bad = 0;
    if (nmc_arch_is_moe(c->arch)) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "model-arch-unsupported", o->model_dir,
                                     0, 0, 0, "%s has no trainer in nmc yet",
                                     c->architecture);
        nmc_diag_set_help(r, "supported for training: LlamaForCausalLM, MistralForCausalLM, "
                             "Qwen2ForCausalLM, Qwen3ForCausalLM");
        bad = 1;
    }
    bool all_layers = (o->layer_begin == 0 && (o->layer_end == 0 || o->layer_end == c->num_layers));
    if (!all_layers || o->tp_size > 1 || o->tp_rank != 0) {
        nmc_diag_t *r = model_err(d, "model-parallel-unsupported", o->model_dir,
                                  "a model split across ranks (layer range or tensor "
                                  "parallelism) is not implemented yet");
        nmc_diag_set_got(r, "layers [%d, %d), tp %d/%d", o->layer_begin, o->layer_end,
                         o->tp_rank, o->tp_size);
        nmc_diag_set_help(r, "load the whole model on one rank (layer_begin = layer_end = 0, "
                             "tp_size = 1)");
        bad = 1;
    }
    if (!(o->label_smoothing >= 0 && o->label_smoothing < 1)) {
        nmc_diag_t *r = model_err(d, "model-option-invalid", NULL,
                                  "label_smoothing must be in [0, 1)");
        nmc_diag_set_got(r, "%g", o->label_smoothing);
        bad = 1;
    }
    if (!(o->neftune_alpha >= 0 && isfinite(o->neftune_alpha))) {
        nmc_diag_t *r = model_err(d, "model-option-invalid", NULL,
                                  "neftune_alpha must be a finite number >= 0");
        nmc_diag_set_got(r, "%g", o->neftune_alpha);
        bad = 1;
    }
    if (c->head_dim % 2 != 0) {
        nmc_diag_t *r = model_err(d, "model-config-unsupported", o->model_dir,
                                  "head_dim must be even for rotary embeddings");
        nmc_diag_set_got(r, "%lld", (long long)c->head_dim);
        bad = 1;
    }
    if (o->train == NMC_TRAIN_LORA) {
        if (!o->lora) {
            model_err(d, "model-option-invalid", NULL, "LoRA training needs a LoRA config");
            bad = 1;
        } else if (nmc_lora_check_supported(o->lora, d) != 0) {
            bad = 1;
        } else if (c->tie_word_embeddings) {
            for (int i = 0; i < o->lora->n_modules_to_save; i++) {
                nmc_diag_t *r = nmc_diag_add(
                    d, NMC_SEV_ERROR, "lora-modules-to-save-tied", NULL, 0, 0, 0,
                    "modules_to_save \"%s\" on a model with tied embeddings is not supported",
                    o->lora->modules_to_save[i]);
                nmc_diag_set_help(r, "leave modules_to_save empty, or train all weights");
                bad = 1;
            }
        }
    }
    return bad ? -1 : 0;
}

/* Deep copy of the LoRA config into the arena. */
static const char *const *copy_strs(nmc_arena_t *a, const char *const *s, int n)
{
    if (!s || n <= 0) return NULL;
    const char **o = nmc_arena_alloc(a, sizeof *o * (size_t)n);
    for (int i = 0; i < n; i++) o[i] = nmc_arena_strdup(a, s[i] ? s[i] : "");
    return o;
}
static void copy_lora(nmc_arena_t *a, nmc_lora_cfg_t *dst, const nmc_lora_cfg_t *src)
{
    *dst = *src;
    dst->target_modules = copy_strs(a, src->target_modules, src->n_target_modules);
    dst->exclude_modules = copy_strs(a, src->exclude_modules, src->n_exclude_modules);
    dst->modules_to_save = copy_strs(a, src->modules_to_save, src->n_modules_to_save);
    if (src->layers_to_transform && src->n_layers_to_transform > 0) {
        int *l = nmc_arena_alloc(a, sizeof *l * (size_t)src->n_layers_to_transform);
        memcpy(l, src->layers_to_transform, sizeof *l * (size_t)src->n_layers_to_transform);
        dst->layers_to_transform = l;
    }
}

static bool lora_saves(const nmc_model_t *m, const char *module)
{
    if (!m->has_lora) return false;
    for (int i = 0; i < m->lora.n_modules_to_save; i++)
        if (strcmp(m->lora.modules_to_save[i], module) == 0) return true;
    return false;
}

/* ---- parameter list ------------------------------------------------------------------- */

static nmc_param_t *new_param(nmc_model_t *m, const char *name, nmc_param_kind_t kind,
                              int layer, int ndim, int64_t s0, int64_t s1)
{
    nmc_param_t *p = &m->params[m->n_params++];
    p->name = name;
    p->kind = kind;
    p->layer = layer;
    p->ndim = ndim;
    p->shape[0] = s0;
    p->shape[1] = ndim == 2 ? s1 : 0;
    p->numel = ndim == 2 ? s0 * s1 : s0;
    p->full_shape[0] = p->shape[0];
    p->full_shape[1] = p->shape[1];
    p->shard_dim = -1;
    p->weight_decay = kind != NMC_PARAM_BIAS && kind != NMC_PARAM_NORM;
    return p;
}

/* Which layer component a checkpoint name is: sets *layer and returns the part after
 * "model.layers.N." (or the whole name for non-layer tensors, *layer = -1). */
static const char *split_layer(const char *name, int *layer)
{
    *layer = -1;
    if (strncmp(name, "model.layers.", 13) != 0) return name;
    char *end;
    long l = strtol(name + 13, &end, 10);
    if (*end != '.') return name;
    *layer = (int)l;
    return end + 1;
}

static void bind_layer_tensor(nmc_model_t *m, nmc_param_t *p, const char *rest)
{
    nmc_layer_t *L = &m->layers[p->layer];
    if (!strcmp(rest, "input_layernorm.weight")) L->ln1 = p;
    else if (!strcmp(rest, "post_attention_layernorm.weight")) L->ln2 = p;
    else if (!strcmp(rest, "self_attn.q_norm.weight")) L->qn = p;
    else if (!strcmp(rest, "self_attn.k_norm.weight")) L->kn = p;
    for (int li = 0; li < LIN_COUNT; li++) {
        size_t n = strlen(LIN_SUFFIX[li]);
        if (strncmp(rest, LIN_SUFFIX[li], n) != 0) continue;
        if (!strcmp(rest + n, ".weight")) L->lin[li].w = p;
        else if (!strcmp(rest + n, ".bias")) L->lin[li].b = p;
    }
}

static nmc_param_kind_t kind_of(const char *name, const char *rest, int ndim)
{
    if (!strcmp(name, "model.embed_tokens.weight")) return NMC_PARAM_EMBED;
    if (!strcmp(name, "lm_head.weight")) return NMC_PARAM_LM_HEAD;
    if (strstr(rest, "norm")) return NMC_PARAM_NORM;
    size_t n = strlen(rest);
    if (n > 5 && !strcmp(rest + n - 5, ".bias")) return NMC_PARAM_BIAS;
    return ndim == 2 ? NMC_PARAM_LINEAR : NMC_PARAM_BIAS;
}

static void add_lora(nmc_model_t *m, int l, int li)
{
    nmc_lin_t *lin = &m->layers[l].lin[li];
    const char *mod = nmc_model_lin_module(m, l, li);
    if (!nmc_lora_targets(&m->lora, mod, l)) return;
    int r = m->lora.r;
    lin->A = new_param(m, nmc_arena_printf(m->arena, "base_model.model.%s.lora_A.weight", mod),
                       NMC_PARAM_LORA_A, l, 2, r, lin->in);
    lin->Bm = new_param(m, nmc_arena_printf(m->arena, "base_model.model.%s.lora_B.weight", mod),
                        NMC_PARAM_LORA_B, l, 2, lin->out, r);
    lin->A->trainable = lin->Bm->trainable = true;
    lin->scale = nmc_lora_scale(&m->lora);
    lin->drop_seed = (uint64_t)(l * LIN_COUNT + li + 1) * 0x9E3779B97F4A7C15ull;
}

static void set_trainable(nmc_model_t *m, nmc_param_t *p)
{
    if (m->opts.train == NMC_TRAIN_FULL) {
        p->trainable = true;
        return;
    }
    if (m->opts.train != NMC_TRAIN_LORA) return;
    if (p->kind == NMC_PARAM_EMBED) p->trainable = lora_saves(m, "embed_tokens");
    else if (p->kind == NMC_PARAM_LM_HEAD) p->trainable = lora_saves(m, "lm_head");
    else if (p->kind == NMC_PARAM_BIAS) {
        if (m->lora.bias == NMC_LORA_BIAS_ALL) p->trainable = true;
        if (m->lora.bias == NMC_LORA_BIAS_LORA_ONLY && p->layer >= 0)
            for (int li = 0; li < LIN_COUNT; li++)
                if (m->layers[p->layer].lin[li].b == p && m->layers[p->layer].lin[li].A)
                    p->trainable = true;
    }
}

static void build_params(nmc_model_t *m)
{
    const nmc_model_config_t *c = &m->cfg;
    nmc_tensor_spec_t *specs;
    size_t ns = nmc_model_config_tensors(m->arena, c, &specs);
    m->n_layers = (int)c->num_layers;
    m->layers = nmc_arena_alloc(m->arena, sizeof *m->layers * (size_t)(m->n_layers ? m->n_layers : 1));
    m->params = nmc_arena_alloc(m->arena, sizeof *m->params * (ns + 2 * LIN_COUNT * (size_t)m->n_layers + 1));
    int D = (int)c->hidden_size, F = (int)c->intermediate_size;
    int qd = (int)(c->num_heads * c->head_dim), kvd = (int)(c->num_kv_heads * c->head_dim);
    int ins[LIN_COUNT] = {D, D, D, qd, D, D, F}, outs[LIN_COUNT] = {qd, kvd, kvd, D, F, F, D};
    for (int l = 0; l < m->n_layers; l++)
        for (int li = 0; li < LIN_COUNT; li++) {
            m->layers[l].lin[li].in = ins[li];
            m->layers[l].lin[li].out = outs[li];
            m->layers[l].lin[li].module = nmc_model_lin_module(m, l, li);
        }
    for (size_t i = 0; i < ns; i++) {
        int layer;
        const char *rest = split_layer(specs[i].name, &layer);
        nmc_param_kind_t k = kind_of(specs[i].name, rest, specs[i].ndim);
        nmc_param_t *p = new_param(m, specs[i].name, k, layer, specs[i].ndim,
                                   specs[i].shape[0], specs[i].shape[1]);
        if (k == NMC_PARAM_EMBED) m->embed = p;
        else if (k == NMC_PARAM_LM_HEAD) m->lm_head = p;
        else if (!strcmp(p->name, "model.norm.weight")) m->final_norm = p;
        else if (layer >= 0 && layer < m->n_layers) bind_layer_tensor(m, p, rest);
        if (m->has_lora && layer >= 0 && k == NMC_PARAM_LINEAR)
            for (int li = 0; li < LIN_COUNT; li++)
                if (m->layers[layer].lin[li].w == p) add_lora(m, layer, li);
    }
    if (!m->lm_head) m->lm_head = m->embed; /* tied */
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].kind != NMC_PARAM_LORA_A && m->params[i].kind != NMC_PARAM_LORA_B)
            set_trainable(m, &m->params[i]);
}

static int count_adapters(const nmc_model_t *m)
{
    int n = 0;
    for (size_t i = 0; i < m->n_params; i++) n += m->params[i].kind == NMC_PARAM_LORA_A;
    return n;
}

/* ---- device upload ------------------------------------------------------------------- */

static int dev_fail(nmc_model_t *m, nmc_diags_t *d, const char *what)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "model-device-error", NULL, 0, 0, 0,
                                 "%s on %s failed: %s", what, m->dev->name,
                                 m->dev->last_error(m->dev));
    nmc_diag_set_help(r, "a smaller micro-batch or model needs less device memory");
    return -1;
}

static int alloc_param(nmc_model_t *m, nmc_param_t *p, nmc_diags_t *d)
{
    nmc_dev_t *dev = m->dev;
    size_t n = (size_t)p->numel;
    p->data = dev->alloc(dev, n * dev->act_size);
    if (!p->data) return dev_fail(m, d, "allocating a parameter");
    if (dev->act == NMC_DTYPE_F32) p->master = p->data;
    else if (p->trainable && !(p->master = dev->alloc(dev, n * sizeof(float))))
        return dev_fail(m, d, "allocating a master weight");
    if (p->trainable && !(p->grad = dev->alloc(dev, n * sizeof(float))))
        return dev_fail(m, d, "allocating a gradient");
    return 0;
}

static int upload_host(nmc_model_t *m, nmc_param_t *p, const float *host, nmc_diags_t *d)
{
    nmc_dev_t *dev = m->dev;
    if (dev->upload_f32(dev, p->data, dev->act, host, (size_t)p->numel) != 0)
        return dev_fail(m, d, "uploading a parameter");
    if (p->master && p->master != p->data &&
        dev->upload_f32(dev, p->master, NMC_DTYPE_F32, host, (size_t)p->numel) != 0)
        return dev_fail(m, d, "uploading a parameter");
    return 0;
}

static int load_tensors(nmc_model_t *m, nmc_st_t *st, nmc_diags_t *d)
{
    size_t maxn = 0;
    for (size_t i = 0; i < m->n_params; i++)
        if ((size_t)m->params[i].numel > maxn) maxn = (size_t)m->params[i].numel;
    float *host = malloc(maxn * sizeof(float) + 1);
    if (!host) abort();
    int rc = 0;
    uint64_t stream = 0;
    for (size_t i = 0; i < m->n_params && rc == 0; i++) {
        nmc_param_t *p = &m->params[i];
        rc = alloc_param(m, p, d);
        if (rc) break;
        if (p->kind == NMC_PARAM_LORA_A) {
            nmc_param_t *B = &m->params[i + 1]; /* B follows A */
            float *hb = malloc((size_t)B->numel * sizeof(float));
            if (!hb) abort();
            nmc_lora_init_host(&m->lora, stream++, host, hb, (int)B->shape[0], (int)p->shape[1]);
            rc = upload_host(m, p, host, d);
            if (!rc) rc = alloc_param(m, B, d);
            if (!rc) rc = upload_host(m, B, hb, d);
            free(hb);
            i++;
            continue;
        }
        const nmc_st_tensor_t *t = nmc_st_get(st, p->name, d);
        if (!t || nmc_st_to_f32(t, host, d) != 0) rc = -1;
        else rc = upload_host(m, p, host, d);
    }
    free(host);
    return rc;
}

static int upload_rope(nmc_model_t *m, nmc_diags_t *d)
{
    int hd = (int)m->cfg.head_dim;
    float *inv = malloc(sizeof(float) * (size_t)(hd / 2 + 1));
    if (!inv) abort();
    nmc_rope_inv_freq(inv, hd, &m->cfg.rope);
    m->inv_freq = m->dev->alloc(m->dev, sizeof(float) * (size_t)(hd / 2 + 1));
    int rc = 0;
    if (!m->inv_freq || m->dev->upload(m->dev, m->inv_freq, inv, sizeof(float) * (size_t)(hd / 2)))
        rc = dev_fail(m, d, "uploading rope frequencies");
    free(inv);
    return rc;
}

/* ---- load / free ---------------------------------------------------------------------- */

static int open_checkpoint(nmc_model_t *m, nmc_st_t **st, nmc_diags_t *d)
{
    if (nmc_st_open(m->opts.model_dir, st, d) != 0) return -1;
    if (nmc_model_config_check_checkpoint(&m->cfg, *st, m->opts.model_dir, d) != 0) return -1;
    m->ckpt_dtype = nmc_st_count(*st) ? nmc_st_at(*st, 0)->dtype : NMC_ST_F32;
    return 0;
}

int nmc_model_load(const nmc_model_opts_t *opts, nmc_model_t **out, nmc_diags_t *d)
{
    *out = NULL;
    nmc_model_t *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->arena = nmc_arena_new();
    m->opts = *opts;
    m->opts.model_dir = nmc_arena_strdup(m->arena, opts->model_dir ? opts->model_dir : "");
    if (m->opts.ce_chunk <= 0) m->opts.ce_chunk = 256;
    const char *cfg_path = nmc_arena_printf(m->arena, "%s/config.json", m->opts.model_dir);
    nmc_st_t *st = NULL;
    int rc = nmc_model_config_load(m->arena, m->opts.model_dir, &m->cfg, d);
    if (!rc) rc = read_text(m->arena, cfg_path, &m->config_src, &m->config_len, d);
    if (!rc) rc = check_opts(&m->opts, &m->cfg, d);
    if (!rc && m->opts.train == NMC_TRAIN_LORA) {
        copy_lora(m->arena, &m->lora, opts->lora);
        m->has_lora = true;
    }
    m->opts.lora = m->has_lora ? &m->lora : NULL;
    if (!rc) rc = open_checkpoint(m, &st, d);
    if (!rc) {
        m->dev = opts->dev;
        if (!m->dev) {
            m->dev = nmc_dev_cpu_new();
            m->own_dev = true;
        }
        build_params(m);
        if (m->has_lora) rc = nmc_lora_check_model(&m->lora, m->n_layers, count_adapters(m), d);
        if (!rc) rc = load_tensors(m, st, d);
    }
    if (!rc) rc = upload_rope(m, d);
    if (st) nmc_st_close(st);
    if (rc) {
        nmc_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void nmc_model_free(nmc_model_t *m)
{
    if (!m) return;
    if (m->dev) {
        for (size_t i = 0; i < m->n_params; i++) {
            nmc_param_t *p = &m->params[i];
            if (p->master && p->master != p->data) m->dev->free(m->dev, p->master);
            m->dev->free(m->dev, p->data);
            m->dev->free(m->dev, p->grad);
        }
        m->dev->free(m->dev, m->inv_freq);
        nmc_model_free_acts(m);
        if (m->own_dev) m->dev->destroy(m->dev);
    }
    nmc_arena_free(m->arena);
    free(m);
}

/* ---- accessors ------------------------------------------------------------------------ */

const nmc_model_config_t *nmc_model_config(const nmc_model_t *m) { return &m->cfg; }
nmc_dev_t *nmc_model_dev(nmc_model_t *m) { return m->dev; }
nmc_st_dtype_t nmc_model_ckpt_dtype(const nmc_model_t *m) { return m->ckpt_dtype; }
const nmc_lora_cfg_t *nmc_model_lora(const nmc_model_t *m) { return m->has_lora ? &m->lora : NULL; }
uint64_t nmc_model_rng_offset(const nmc_model_t *m) { return m->rng_offset; }
void nmc_model_set_rng_offset(nmc_model_t *m, uint64_t off) { m->rng_offset = off; }

nmc_param_t *nmc_model_params(nmc_model_t *m, size_t *n)
{
    *n = m->n_params;
    return m->params;
}

nmc_param_t *nmc_model_param_find(nmc_model_t *m, const char *name)
{
    for (size_t i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

int64_t nmc_model_trainable_count(const nmc_model_t *m)
{
    int64_t n = 0;
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].trainable) n += m->params[i].numel;
    return n;
}

int nmc_model_zero_grads(nmc_model_t *m)
{
    for (size_t i = 0; i < m->n_params; i++) {
        nmc_param_t *p = &m->params[i];
        if (p->grad && m->dev->zero(m->dev, p->grad, (size_t)p->numel * sizeof(float)) != 0)
            return -1;
    }
    return 0;
}

int nmc_model_param_read(nmc_model_t *m, const nmc_param_t *p, float *host, nmc_diags_t *d)
{
    int rc = p->master ? m->dev->download_f32(m->dev, host, p->master, NMC_DTYPE_F32, (size_t)p->numel)
                       : m->dev->download_f32(m->dev, host, p->data, m->dev->act, (size_t)p->numel);
    return rc ? dev_fail(m, d, "reading a parameter") : 0;
}

int nmc_model_param_write(nmc_model_t *m, nmc_param_t *p, const float *host, nmc_diags_t *d)
{
    return upload_host(m, p, host, d);
}

/* ---- save ------------------------------------------------------------------------------ */

int nmc_model_make_dir(const char *dir, nmc_diags_t *d)
{
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return 0;
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "io-error", dir, 0, 0, 0,
                                 "cannot create the output directory: %s", strerror(errno));
    nmc_diag_set_help(r, "check that the parent directory exists and is writable");
    return -1;
}

int nmc_model_write_file(const char *path, const void *data, size_t len, nmc_diags_t *d)
{
    nmc_atomic_file_t af;
    if (nmc_atomic_begin(&af, path, d) != 0) return -1;
    if (len && fwrite(data, 1, len, af.f) != len) {
        nmc_atomic_abort(&af);
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "write failed");
        return -1;
    }
    return nmc_atomic_commit(&af, d);
}

/* Host fp32 of a base weight, with its LoRA folded in when asked. */
static int read_merged(nmc_model_t *m, const nmc_param_t *p, bool merge, float *host,
                       nmc_diags_t *d)
{
    if (nmc_model_param_read(m, p, host, d) != 0) return -1;
    if (!merge || !m->has_lora || p->kind != NMC_PARAM_LINEAR || p->layer < 0) return 0;
    for (int li = 0; li < LIN_COUNT; li++) {
        nmc_lin_t *lin = &m->layers[p->layer].lin[li];
        if (lin->w != p || !lin->A) continue;
        float *a = malloc(sizeof(float) * (size_t)(lin->A->numel + lin->Bm->numel));
        if (!a) abort();
        int rc = nmc_model_param_read(m, lin->A, a, d);
        if (!rc) rc = nmc_model_param_read(m, lin->Bm, a + lin->A->numel, d);
        if (!rc) nmc_lora_merge_host(host, a, a + lin->A->numel, lin->out, lin->in, m->lora.r, lin->scale);
        free(a);
        return rc;
    }
    return 0;
}

static void *to_dtype(const float *src, size_t n, nmc_st_dtype_t dt)
{
    void *out = malloc(n * nmc_st_dtype_size(dt) + 1);
    if (!out) abort();
    for (size_t i = 0; i < n; i++) {
        if (dt == NMC_ST_F32) ((float *)out)[i] = src[i];
        else if (dt == NMC_ST_BF16) ((uint16_t *)out)[i] = nmc_st_f32_to_bf16(src[i]);
        else ((uint16_t *)out)[i] = nmc_st_f32_to_f16(src[i]);
    }
    return out;
}

/* config.json as loaded, with dtype / torch_dtype naming the dtype written. */
static int save_config(nmc_model_t *m, const char *dir, nmc_st_dtype_t dt, nmc_diags_t *d)
{
    const char *name = dt == NMC_ST_F32 ? "float32" : dt == NMC_ST_BF16 ? "bfloat16" : "float16";
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *root = NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc = nmc_json_parse(a, m->config_src, m->config_len, "config.json", NULL, &root, d);
    if (!rc) {
        FILE *f = open_memstream(&buf, &len);
        if (!f) abort();
        nmc_json_writer_t w;
        nmc_jw_init(&w, f, 2);
        nmc_jw_begin_object(&w);
        for (size_t i = 0; i < root->u.obj.n; i++) {
            const nmc_json_member_t *mb = &root->u.obj.members[i];
            nmc_jw_key(&w, mb->key);
            if (!strcmp(mb->key, "dtype") || !strcmp(mb->key, "torch_dtype")) nmc_jw_string(&w, name);
            else nmc_jw_value(&w, mb->value);
        }
        nmc_jw_end_object(&w);
        fputc('\n', f);
        fclose(f);
        rc = nmc_model_write_file(nmc_arena_printf(m->arena, "%s/config.json", dir), buf, len, d);
        free(buf);
    }
    nmc_arena_free(a);
    return rc;
}

int nmc_model_save(nmc_model_t *m, const char *dir, const nmc_model_save_opts_t *o,
                   nmc_diags_t *d)
{
    nmc_st_dtype_t dt = o->fp32 ? NMC_ST_F32 : m->ckpt_dtype;
    if (dt != NMC_ST_F32 && dt != NMC_ST_BF16 && dt != NMC_ST_F16) dt = NMC_ST_F32;
    if (nmc_model_make_dir(dir, d) != 0) return -1;
    nmc_st_write_tensor_t *wt = calloc(m->n_params + 1, sizeof *wt);
    if (!wt) abort();
    size_t nw = 0;
    int rc = 0;
    for (size_t i = 0; i < m->n_params && rc == 0; i++) {
        nmc_param_t *p = &m->params[i];
        if (p->kind == NMC_PARAM_LORA_A || p->kind == NMC_PARAM_LORA_B) continue;
        float *host = malloc(sizeof(float) * (size_t)p->numel + 1);
        if (!host) abort();
        rc = read_merged(m, p, o->merge_lora, host, d);
        if (!rc) {
            wt[nw] = (nmc_st_write_tensor_t){.name = p->name, .dtype = dt, .ndim = p->ndim,
                                             .data = to_dtype(host, (size_t)p->numel, dt)};
            wt[nw].shape[0] = p->shape[0];
            wt[nw].shape[1] = p->shape[1];
            nw++;
        }
        free(host);
    }
    const char *path = nmc_arena_printf(m->arena, "%s/model.safetensors", dir);
    nmc_st_kv_t meta = {"format", "pt"};
    if (!rc) rc = nmc_st_write(path, wt, nw, &meta, 1, d);
    for (size_t i = 0; i < nw; i++) free((void *)wt[i].data);
    free(wt);
    if (!rc) rc = save_config(m, dir, dt, d);
    return rc;
}
