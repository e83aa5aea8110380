/* model_config.c — config.json of the Llama family -> nmc_model_config_t, the tensor
 * list a config implies, and the checkpoint-vs-config check. What belongs here: config
 * semantics and HF tensor naming; the safetensors format itself is in safetensors.c. */
#include "model_config.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const ARCH_NAMES[NMC_ARCH_COUNT] = {
    [NMC_ARCH_LLAMA] = "LlamaForCausalLM",     [NMC_ARCH_MISTRAL] = "MistralForCausalLM",
    [NMC_ARCH_QWEN2] = "Qwen2ForCausalLM",     [NMC_ARCH_QWEN3] = "Qwen3ForCausalLM",
    [NMC_ARCH_QWEN3_MOE] = "Qwen3MoeForCausalLM", [NMC_ARCH_MIXTRAL] = "MixtralForCausalLM",
};
/* model_type of each architecture (used when `architectures` is absent). */
static const char *const MODEL_TYPES[NMC_ARCH_COUNT] = {
    [NMC_ARCH_LLAMA] = "llama",   [NMC_ARCH_MISTRAL] = "mistral", [NMC_ARCH_QWEN2] = "qwen2",
    [NMC_ARCH_QWEN3] = "qwen3",   [NMC_ARCH_QWEN3_MOE] = "qwen3_moe",
    [NMC_ARCH_MIXTRAL] = "mixtral",
};

const char *nmc_arch_name(nmc_arch_t arch)
{
    return (unsigned)arch < NMC_ARCH_COUNT ? ARCH_NAMES[arch] : "?";
}

const char *nmc_model_config_supported(void)
{
    return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
           "Qwen3MoeForCausalLM, MixtralForCausalLM";
}

bool nmc_arch_is_moe(nmc_arch_t arch)
{
    return arch == NMC_ARCH_QWEN3_MOE || arch == NMC_ARCH_MIXTRAL;
}

/* ---- typed getters: each reports at the value's position ----------------------------- */
typedef struct {
    const char *file;
    nmc_diags_t *d;
    int errors;
} ctx_t;

static nmc_diag_t *err_at(ctx_t *c, const char *code, const nmc_json_t *v, const char *key,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static nmc_diag_t *err_at(ctx_t *c, const char *code, const nmc_json_t *v, const char *key,
                          const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->errors++;
    nmc_diag_t *r = nmc_diag_add(c->d, NMC_SEV_ERROR, code, c->file, v ? v->line : 0,
                                 v ? v->col : 0, v ? v->offset : 0, "%s", msg);
    if (key) {
        nmc_path_t p = {.depth = 0};
        nmc_path_push_key(&p, key, strlen(key));
        nmc_diag_set_path(r, &p);
    }
    return r;
}

static bool is_null(const nmc_json_t *v) { return !v || v->kind == NMC_JSON_NULL; }

/* A required key is absent (or null) in object o. */
static void missing_key(ctx_t *c, const nmc_json_t *o, const char *key)
{
    nmc_diag_t *r = err_at(c, "config-missing-key", o, key, "missing required key \"%s\"", key);
    nmc_diag_set_help(r, "add \"%s\" (the model's original config.json always has it)", key);
}

/* Integer `key` of o; `def` when absent or null (def < 0 with required: error). */
static int64_t get_int(ctx_t *c, const nmc_json_t *o, const char *key, int64_t def, bool required)
{
    const nmc_json_t *v = nmc_json_get(o, key);
    if (is_null(v)) {
        if (required) missing_key(c, o, key);
        return def;
    }
    if (v->kind != NMC_JSON_NUMBER || !v->u.num.int_ok) {
        nmc_diag_t *r = err_at(c, "config-bad-type", v, key, "\"%s\" must be an integer", key);
        nmc_diag_set_got(r, "%s", v->kind == NMC_JSON_NUMBER ? v->u.num.text
                                                             : nmc_json_kind_name(v->kind));
        return def;
    }
    return v->u.num.i;
}

static double get_num(ctx_t *c, const nmc_json_t *o, const char *key, double def, bool required)
{
    const nmc_json_t *v = nmc_json_get(o, key);
    if (is_null(v)) {
        if (required) missing_key(c, o, key);
        return def;
    }
    if (v->kind != NMC_JSON_NUMBER) {
        nmc_diag_t *r = err_at(c, "config-bad-type", v, key, "\"%s\" must be a number", key);
        nmc_diag_set_got(r, "%s", nmc_json_kind_name(v->kind));
        return def;
    }
    return v->u.num.d;
}

static bool get_bool(ctx_t *c, const nmc_json_t *o, const char *key, bool def)
{
    const nmc_json_t *v = nmc_json_get(o, key);
    if (is_null(v)) return def;
    if (v->kind != NMC_JSON_BOOL) {
        nmc_diag_t *r = err_at(c, "config-bad-type", v, key, "\"%s\" must be true or false", key);
        nmc_diag_set_got(r, "%s", nmc_json_kind_name(v->kind));
        return def;
    }
    return v->u.boolean;
}

static const char *get_str(ctx_t *c, nmc_arena_t *a, const nmc_json_t *o, const char *key)
{
    const nmc_json_t *v = nmc_json_get(o, key);
    if (is_null(v)) return NULL;
    if (v->kind != NMC_JSON_STRING) {
        err_at(c, "config-bad-type", v, key, "\"%s\" must be a string", key);
        return NULL;
    }
    return nmc_arena_strdup(a, v->u.str.s);
}

/* ---- architecture ---------------------------------------------------------------------- */
static int find_arch(const char *s, const char *const *table)
{
    for (int i = 0; i < NMC_ARCH_COUNT; i++)
        if (strcmp(s, table[i]) == 0) return i;
    return -1;
}

static int parse_arch(ctx_t *c, nmc_arena_t *a, const nmc_json_t *root, nmc_model_config_t *m)
{
    const nmc_json_t *archs = nmc_json_get(root, "architectures");
    m->model_type = get_str(c, a, root, "model_type");
    int arch = -1;
    const nmc_json_t *at = root;
    const char *name = NULL;
    if (!is_null(archs)) {
        if (archs->kind != NMC_JSON_ARRAY || archs->u.arr.n == 0 ||
            archs->u.arr.items[0]->kind != NMC_JSON_STRING) {
            err_at(c, "config-bad-type", archs, "architectures",
                   "\"architectures\" must be a non-empty array of strings");
            return -1;
        }
        at = archs->u.arr.items[0];
        name = at->u.str.s;
        arch = find_arch(name, ARCH_NAMES);
    } else if (m->model_type) {
        name = m->model_type;
        arch = find_arch(name, MODEL_TYPES);
        at = nmc_json_get(root, "model_type");
    }
    if (arch < 0) {
        nmc_diag_t *r = err_at(c, "config-unsupported-architecture", at, name ? NULL : "architectures",
                               name ? "architecture '%s' is not supported"
                                    : "config names no architecture%s",
                               name ? name : " (no \"architectures\" or \"model_type\")");
        nmc_diag_set_expected(r, "%s", nmc_model_config_supported());
        nmc_diag_set_help(r, "nmc trains Llama-family decoder models; use a checkpoint of a "
                             "supported architecture");
        return -1;
    }
    m->arch = (nmc_arch_t)arch;
    m->architecture = ARCH_NAMES[arch];
    return 0;
}

/* ---- rope -------------------------------------------------------------------------------- */
static void parse_rope(ctx_t *c, const nmc_json_t *root, nmc_model_config_t *m)
{
    const nmc_json_t *params = nmc_json_get(root, "rope_parameters");
    const nmc_json_t *sc = nmc_json_get(root, "rope_scaling");
    if (is_null(sc)) sc = params;
    m->rope.theta = get_num(c, root, "rope_theta", 0, false);
    if (m->rope.theta == 0 && !is_null(params)) m->rope.theta = get_num(c, params, "rope_theta", 0, false);
    if (m->rope.theta == 0) m->rope.theta = 10000.0; /* transformers' default */
    m->rope.type = NMC_ROPE_DEFAULT;
    if (is_null(sc)) return;
    if (sc->kind != NMC_JSON_OBJECT) {
        err_at(c, "config-bad-type", sc, "rope_scaling", "\"rope_scaling\" must be an object");
        return;
    }
    const nmc_json_t *t = nmc_json_get(sc, "rope_type");
    if (is_null(t)) t = nmc_json_get(sc, "type"); /* legacy spelling */
    const char *type = !is_null(t) && t->kind == NMC_JSON_STRING ? t->u.str.s : "default";
    if (strcmp(type, "default") == 0) return;
    m->rope.factor = get_num(c, sc, "factor", 1.0, true);
    if (strcmp(type, "linear") == 0) {
        m->rope.type = NMC_ROPE_LINEAR;
    } else if (strcmp(type, "llama3") == 0) {
        m->rope.type = NMC_ROPE_LLAMA3;
        m->rope.low_freq_factor = get_num(c, sc, "low_freq_factor", 1.0, true);
        m->rope.high_freq_factor = get_num(c, sc, "high_freq_factor", 4.0, true);
        m->rope.original_max_position =
            (double)get_int(c, sc, "original_max_position_embeddings", 8192, true);
    } else {
        nmc_diag_t *r = err_at(c, "config-rope-unsupported", t, "rope_scaling",
                               "rope scaling type '%s' is not supported", type);
        nmc_diag_set_expected(r, "default, linear or llama3");
        return;
    }
    if (m->rope.factor <= 0) err_at(c, "config-out-of-range", sc, "rope_scaling", "rope factor must be > 0");
}

/* ---- token ids ------------------------------------------------------------------------------ */
static void parse_eos(ctx_t *c, const nmc_json_t *root, nmc_model_config_t *m)
{
    const nmc_json_t *v = nmc_json_get(root, "eos_token_id");
    if (is_null(v)) return;
    if (v->kind == NMC_JSON_NUMBER) {
        m->eos_token_ids[m->n_eos++] = get_int(c, root, "eos_token_id", -1, false);
        return;
    }
    bool ok = v->kind == NMC_JSON_ARRAY && v->u.arr.n <= NMC_CONFIG_MAX_EOS;
    for (size_t i = 0; ok && i < v->u.arr.n; i++) {
        const nmc_json_t *x = v->u.arr.items[i];
        ok = x->kind == NMC_JSON_NUMBER && x->u.num.int_ok && x->u.num.i >= 0;
        if (ok) m->eos_token_ids[m->n_eos++] = x->u.num.i;
    }
    if (!ok) {
        nmc_diag_t *r = err_at(c, "config-bad-type", v, "eos_token_id",
                               "\"eos_token_id\" must be an id or a list of at most %d ids",
                               NMC_CONFIG_MAX_EOS);
        nmc_diag_set_expected(r, "a non-negative integer or an array of them");
    }
}

/* ---- MoE --------------------------------------------------------------------------------- */
static void parse_moe(ctx_t *c, nmc_arena_t *a, const nmc_json_t *root, nmc_model_config_t *m)
{
    nmc_moe_config_t *e = &m->moe;
    int before = c->errors;
    const char *nkey = nmc_json_get(root, "num_experts") ? "num_experts" : "num_local_experts";
    e->num_experts = get_int(c, root, nkey, 0, true);
    e->num_experts_per_tok = get_int(c, root, "num_experts_per_tok", 0, true);
    e->router_aux_loss_coef = get_num(c, root, "router_aux_loss_coef", 0.001, false);
    if (m->arch == NMC_ARCH_MIXTRAL) {
        e->moe_intermediate_size = m->intermediate_size;
        e->decoder_sparse_step = 1;
        e->norm_topk_prob = true; /* Mixtral renormalises the top-k softmax */
    } else {
        e->moe_intermediate_size = get_int(c, root, "moe_intermediate_size", 0, true);
        e->decoder_sparse_step = get_int(c, root, "decoder_sparse_step", 1, false);
        e->norm_topk_prob = get_bool(c, root, "norm_topk_prob", false);
        const nmc_json_t *ml = nmc_json_get(root, "mlp_only_layers");
        if (!is_null(ml) && ml->kind == NMC_JSON_ARRAY) {
            e->mlp_only_layers = nmc_arena_alloc(a, (ml->u.arr.n + 1) * sizeof(int64_t));
            for (size_t i = 0; i < ml->u.arr.n; i++)
                if (ml->u.arr.items[i]->kind == NMC_JSON_NUMBER && ml->u.arr.items[i]->u.num.int_ok)
                    e->mlp_only_layers[e->n_mlp_only_layers++] = ml->u.arr.items[i]->u.num.i;
                else
                    err_at(c, "config-bad-type", ml->u.arr.items[i], "mlp_only_layers",
                           "\"mlp_only_layers\" must list layer indices");
        } else if (!is_null(ml)) {
            err_at(c, "config-bad-type", ml, "mlp_only_layers", "\"mlp_only_layers\" must be an array");
        }
    }
    if (c->errors != before) return; /* a missing key already explains it */
    if (e->num_experts <= 0 || e->num_experts_per_tok <= 0 ||
        e->num_experts_per_tok > e->num_experts || e->decoder_sparse_step <= 0 ||
        (m->arch == NMC_ARCH_QWEN3_MOE && e->moe_intermediate_size <= 0)) {
        nmc_diag_t *r = err_at(c, "config-out-of-range", root, NULL,
                               "MoE sizes are inconsistent: %s=%lld, num_experts_per_tok=%lld, "
                               "moe_intermediate_size=%lld, decoder_sparse_step=%lld",
                               nkey, (long long)e->num_experts,
                               (long long)e->num_experts_per_tok,
                               (long long)e->moe_intermediate_size,
                               (long long)e->decoder_sparse_step);
        nmc_diag_set_expected(r, "all > 0 and num_experts_per_tok <= %s", nkey);
    }
}

/* ---- sizes and sanity -------------------------------------------------------------------- */
static void parse_sizes(ctx_t *c, const nmc_json_t *root, nmc_model_config_t *m)
{
    m->vocab_size = get_int(c, root, "vocab_size", 0, true);
    m->hidden_size = get_int(c, root, "hidden_size", 0, true);
    m->intermediate_size = get_int(c, root, "intermediate_size", 0, true);
    m->num_layers = get_int(c, root, "num_hidden_layers", 0, true);
    m->num_heads = get_int(c, root, "num_attention_heads", 0, true);
    m->num_kv_heads = get_int(c, root, "num_key_value_heads", m->num_heads, false);
    m->head_dim = get_int(c, root, "head_dim", 0, false);
    m->max_position_embeddings = get_int(c, root, "max_position_embeddings", 2048, false);
    m->rms_norm_eps = get_num(c, root, "rms_norm_eps", 1e-6, false);
}

static void check_positive(ctx_t *c, const nmc_json_t *root, const char *key, int64_t v)
{
    if (v > 0) return;
    nmc_diag_t *r = err_at(c, "config-out-of-range", nmc_json_get(root, key), key,
                           "\"%s\" is %lld; it must be > 0", key, (long long)v);
    nmc_diag_set_expected(r, "a positive integer");
}

static void check_sizes(ctx_t *c, const nmc_json_t *root, nmc_model_config_t *m)
{
    static const char *const keys[] = {"vocab_size", "hidden_size", "intermediate_size",
                                       "num_hidden_layers", "num_attention_heads",
                                       "num_key_value_heads", "max_position_embeddings"};
    int64_t vals[] = {m->vocab_size, m->hidden_size, m->intermediate_size, m->num_layers,
                      m->num_heads, m->num_kv_heads, m->max_position_embeddings};
    int before = c->errors;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) check_positive(c, root, keys[i], vals[i]);
    if (c->errors != before) return;
    bool explicit_hd = m->head_dim != 0;
    if (!explicit_hd && m->hidden_size % m->num_heads != 0) {
        nmc_diag_t *r = err_at(c, "config-inconsistent", nmc_json_get(root, "hidden_size"),
                               "hidden_size", "hidden_size %lld is not divisible by "
                               "num_attention_heads %lld",
                               (long long)m->hidden_size, (long long)m->num_heads);
        nmc_diag_set_help(r, "set \"head_dim\" explicitly, or fix the sizes");
    }
    if (!explicit_hd) m->head_dim = m->hidden_size / m->num_heads;
    if (m->num_heads % m->num_kv_heads != 0)
        err_at(c, "config-inconsistent", nmc_json_get(root, "num_key_value_heads"),
               "num_key_value_heads", "num_attention_heads %lld is not divisible by "
               "num_key_value_heads %lld", (long long)m->num_heads, (long long)m->num_kv_heads);
    if (m->head_dim <= 0 || m->head_dim % 2 != 0)
        err_at(c, "config-out-of-range", nmc_json_get(root, "head_dim"), "head_dim",
               "head_dim %lld must be positive and even (rotary embedding pairs)",
               (long long)m->head_dim);
    if (!(m->rms_norm_eps > 0))
        err_at(c, "config-out-of-range", nmc_json_get(root, "rms_norm_eps"), "rms_norm_eps",
               "rms_norm_eps must be > 0");
}

/* Architecture-specific flags: biases, q/k norm, sliding window. */
static void parse_flags(ctx_t *c, const nmc_json_t *root, nmc_model_config_t *m)
{
    m->tie_word_embeddings = get_bool(c, root, "tie_word_embeddings", false);
    m->attention_bias = get_bool(c, root, "attention_bias", false);
    m->mlp_bias = m->arch == NMC_ARCH_LLAMA && get_bool(c, root, "mlp_bias", false);
    m->qkv_bias = m->attention_bias || m->arch == NMC_ARCH_QWEN2;
    m->o_bias = m->attention_bias && m->arch != NMC_ARCH_QWEN2;
    m->qk_norm = m->arch == NMC_ARCH_QWEN3 || m->arch == NMC_ARCH_QWEN3_MOE;
    bool uses_sw = m->arch == NMC_ARCH_MISTRAL || m->arch == NMC_ARCH_MIXTRAL ||
                   get_bool(c, root, "use_sliding_window", false);
    int64_t sw = get_int(c, root, "sliding_window", 0, false);
    m->sliding_window = uses_sw && sw > 0 ? sw : 0;
    m->bos_token_id = get_int(c, root, "bos_token_id", -1, false);
}

int nmc_model_config_parse(nmc_arena_t *a, const nmc_json_t *root, const char *file,
                           nmc_model_config_t *out, nmc_diags_t *d)
{
    ctx_t c = {.file = file, .d = d};
    memset(out, 0, sizeof *out);
    if (!root || root->kind != NMC_JSON_OBJECT) {
        err_at(&c, "config-bad-type", root, NULL, "config.json must hold a JSON object");
        return -1;
    }
    if (parse_arch(&c, a, root, out) != 0) return -1;
    parse_sizes(&c, root, out);
    parse_flags(&c, root, out);
    parse_rope(&c, root, out);
    parse_eos(&c, root, out);
    out->dtype = get_str(&c, a, root, "torch_dtype");
    if (!out->dtype) out->dtype = get_str(&c, a, root, "dtype");
    out->hidden_act = get_str(&c, a, root, "hidden_act");
    if (!out->hidden_act) out->hidden_act = "silu";
    if (strcmp(out->hidden_act, "silu") != 0) {
        nmc_diag_t *r = err_at(&c, "config-unsupported", nmc_json_get(root, "hidden_act"),
                               "hidden_act", "hidden_act '%s' is not supported", out->hidden_act);
        nmc_diag_set_expected(r, "silu");
    }
    if (c.errors == 0) check_sizes(&c, root, out);
    if (nmc_arch_is_moe(out->arch)) parse_moe(&c, a, root, out);
    return c.errors ? -1 : 0;
}

int nmc_model_config_load(nmc_arena_t *a, const char *path, nmc_model_config_t *out,
                          nmc_diags_t *d)
{
    struct stat sb;
    const char *file = path;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) file = nmc_arena_printf(a, "%s/config.json", path);
    nmc_json_limits_t lim = {.max_bytes = 16u << 20, .max_depth = 32}; /* configs are < 100 KB */
    nmc_json_t *root = NULL;
    if (nmc_json_parse_file(a, file, &lim, &root, NULL, NULL, d) != 0) return -1;
    return nmc_model_config_parse(a, root, file, out, d);
}

/* ---- tensor list --------------------------------------------------------------------------- */
typedef struct {
    nmc_arena_t *a;
    nmc_tensor_spec_t *v;
    size_t n, cap;
} specs_t;

static void add(specs_t *s, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add(specs_t *s, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        nmc_tensor_spec_t *v = nmc_arena_alloc(s->a, cap * sizeof *v);
        if (s->n) memcpy(v, s->v, s->n * sizeof *v);
        s->v = v, s->cap = cap;
    }
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    nmc_tensor_spec_t *t = &s->v[s->n++];
    t->name = nmc_arena_strdup(s->a, name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
}

static void add_attention(specs_t *s, const nmc_model_config_t *c, int64_t i)
{
    int64_t H = c->hidden_size, q = c->num_heads * c->head_dim, kv = c->num_kv_heads * c->head_dim;
    const char *p = "model.layers";
    add(s, 2, q, H, "%s.%lld.self_attn.q_proj.weight", p, (long long)i);
    if (c->qkv_bias) add(s, 1, q, 0, "%s.%lld.self_attn.q_proj.bias", p, (long long)i);
    add(s, 2, kv, H, "%s.%lld.self_attn.k_proj.weight", p, (long long)i);
    if (c->qkv_bias) add(s, 1, kv, 0, "%s.%lld.self_attn.k_proj.bias", p, (long long)i);
    add(s, 2, kv, H, "%s.%lld.self_attn.v_proj.weight", p, (long long)i);
    if (c->qkv_bias) add(s, 1, kv, 0, "%s.%lld.self_attn.v_proj.bias", p, (long long)i);
    add(s, 2, H, q, "%s.%lld.self_attn.o_proj.weight", p, (long long)i);
    if (c->o_bias) add(s, 1, H, 0, "%s.%lld.self_attn.o_proj.bias", p, (long long)i);
    if (c->qk_norm) {
        add(s, 1, c->head_dim, 0, "%s.%lld.self_attn.q_norm.weight", p, (long long)i);
        add(s, 1, c->head_dim, 0, "%s.%lld.self_attn.k_norm.weight", p, (long long)i);
    }
}

static void add_dense_mlp(specs_t *s, const nmc_model_config_t *c, int64_t i)
{
    int64_t H = c->hidden_size, I = c->intermediate_size;
    long long li = (long long)i;
    add(s, 2, I, H, "model.layers.%lld.mlp.gate_proj.weight", li);
    if (c->mlp_bias) add(s, 1, I, 0, "model.layers.%lld.mlp.gate_proj.bias", li);
    add(s, 2, I, H, "model.layers.%lld.mlp.up_proj.weight", li);
    if (c->mlp_bias) add(s, 1, I, 0, "model.layers.%lld.mlp.up_proj.bias", li);
    add(s, 2, H, I, "model.layers.%lld.mlp.down_proj.weight", li);
    if (c->mlp_bias) add(s, 1, H, 0, "model.layers.%lld.mlp.down_proj.bias", li);
}

static bool qwen3_moe_sparse(const nmc_model_config_t *c, int64_t i)
{
    for (int64_t k = 0; k < c->moe.n_mlp_only_layers; k++)
        if (c->moe.mlp_only_layers[k] == i) return false;
    return (i + 1) % c->moe.decoder_sparse_step == 0;
}

static void add_moe(specs_t *s, const nmc_model_config_t *c, int64_t i)
{
    int64_t H = c->hidden_size, E = c->moe.num_experts, I = c->moe.moe_intermediate_size;
    long long li = (long long)i;
    if (c->arch == NMC_ARCH_MIXTRAL) {
        add(s, 2, E, H, "model.layers.%lld.block_sparse_moe.gate.weight", li);
        for (long long e = 0; e < E; e++) {
            add(s, 2, I, H, "model.layers.%lld.block_sparse_moe.experts.%lld.w1.weight", li, e);
            add(s, 2, H, I, "model.layers.%lld.block_sparse_moe.experts.%lld.w2.weight", li, e);
            add(s, 2, I, H, "model.layers.%lld.block_sparse_moe.experts.%lld.w3.weight", li, e);
        }
        return;
    }
    add(s, 2, E, H, "model.layers.%lld.mlp.gate.weight", li);
    for (long long e = 0; e < E; e++) {
        add(s, 2, I, H, "model.layers.%lld.mlp.experts.%lld.gate_proj.weight", li, e);
        add(s, 2, I, H, "model.layers.%lld.mlp.experts.%lld.up_proj.weight", li, e);
        add(s, 2, H, I, "model.layers.%lld.mlp.experts.%lld.down_proj.weight", li, e);
    }
}

size_t nmc_model_config_tensors(nmc_arena_t *a, const nmc_model_config_t *c,
                                nmc_tensor_spec_t **out)
{
    specs_t s = {.a = a};
    int64_t H = c->hidden_size;
    add(&s, 2, c->vocab_size, H, "model.embed_tokens.weight");
    for (int64_t i = 0; i < c->num_layers; i++) {
        add(&s, 1, H, 0, "model.layers.%lld.input_layernorm.weight", (long long)i);
        add_attention(&s, c, i);
        add(&s, 1, H, 0, "model.layers.%lld.post_attention_layernorm.weight", (long long)i);
        bool sparse = c->arch == NMC_ARCH_MIXTRAL ||
                      (c->arch == NMC_ARCH_QWEN3_MOE && qwen3_moe_sparse(c, i));
        if (sparse) add_moe(&s, c, i);
        else add_dense_mlp(&s, c, i);
    }
    add(&s, 1, H, 0, "model.norm.weight");
    if (!c->tie_word_embeddings) add(&s, 2, c->vocab_size, H, "lm_head.weight");
    *out = s.v;
    return s.n;
}

int64_t nmc_model_config_param_count(const nmc_model_config_t *c)
{
    nmc_arena_t *a = nmc_arena_new();
    nmc_tensor_spec_t *v;
    size_t n = nmc_model_config_tensors(a, c, &v);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) total += v[i].ndim == 2 ? v[i].shape[0] * v[i].shape[1] : v[i].shape[0];
    nmc_arena_free(a);
    return total;
}

/* ---- checkpoint check ------------------------------------------------------------------------- */
#define CHECK_REPORT_MAX 20 /* per kind: a wrong config would otherwise list every tensor */

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static int cmp_spec(const void *x, const void *y)
{
    return strcmp(((const nmc_tensor_spec_t *)x)->name, ((const nmc_tensor_spec_t *)y)->name);
}

typedef struct {
    nmc_diags_t *d;
    const char *where;
    int count[4]; /* missing, shape, dtype, unexpected */
} report_t;

static nmc_diag_t *report(report_t *r, int kind, const char *code, const char *tensor,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static nmc_diag_t *report(report_t *r, int kind, const char *code, const char *tensor,
                          const char *fmt, ...)
{
    if (r->count[kind]++ >= CHECK_REPORT_MAX) return NULL;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nmc_diag_t *x = nmc_diag_add(r->d, NMC_SEV_ERROR, code, r->where, 0, 0, 0, "tensor '%s' %s",
                                 tensor, msg);
    nmc_path_t p = {.depth = 0};
    nmc_path_push_key(&p, tensor, strlen(tensor));
    nmc_diag_set_path(x, &p);
    return x;
}

static void check_spec(report_t *r, const nmc_tensor_spec_t *sp, const nmc_st_t *st)
{
    const nmc_st_tensor_t *t = nmc_st_find(st, sp->name);
    if (!t) {
        nmc_diag_t *x = report(r, 0, "config-tensor-missing", sp->name,
                               "is required by config.json but not in the checkpoint");
        nmc_diag_set_help(x, "the checkpoint does not match config.json (wrong architecture, "
                             "sizes or a partial download)");
        return;
    }
    bool same = t->ndim == sp->ndim;
    for (int i = 0; same && i < sp->ndim; i++) same = t->shape[i] == sp->shape[i];
    if (!same) {
        char want[96], got[96];
        fmt_shape(want, sizeof want, sp->ndim, sp->shape);
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        nmc_diag_t *x = report(r, 1, "config-tensor-shape", sp->name,
                               "has shape %s but config.json implies %s", got, want);
        nmc_diag_set_expected(x, "%s", want);
        nmc_diag_set_got(x, "%s", got);
    }
    if (!nmc_st_dtype_trainable(t->dtype)) {
        nmc_diag_t *x = report(r, 2, "st-dtype-unsupported", sp->name,
                               "has dtype %s, which nmc cannot train with", nmc_st_dtype_name(t->dtype));
        nmc_diag_set_expected(x, "F32, F16 or BF16");
    }
}

static bool ignorable(const nmc_model_config_t *c, const char *name)
{
    size_t n = strlen(name), m = strlen(".rotary_emb.inv_freq");
    if (n > m && strcmp(name + n - m, ".rotary_emb.inv_freq") == 0) return true; /* old exports */
    return c->tie_word_embeddings && strcmp(name, "lm_head.weight") == 0;
}

int nmc_model_config_check_checkpoint(const nmc_model_config_t *c, const nmc_st_t *st,
                                      const char *where, nmc_diags_t *d)
{
    nmc_arena_t *a = nmc_arena_new();
    nmc_tensor_spec_t *v;
    size_t n = nmc_model_config_tensors(a, c, &v);
    report_t r = {.d = d, .where = where};
    for (size_t i = 0; i < n; i++) check_spec(&r, &v[i], st);
    qsort(v, n, sizeof *v, cmp_spec);
    for (size_t i = 0; i < nmc_st_count(st); i++) {
        const nmc_st_tensor_t *t = nmc_st_at(st, i);
        nmc_tensor_spec_t key = {.name = t->name};
        if (bsearch(&key, v, n, sizeof key, cmp_spec) || ignorable(c, t->name)) continue;
        nmc_diag_t *x = report(&r, 3, "config-tensor-unexpected", t->name,
                               "is in the checkpoint but not implied by config.json (%s)",
                               c->architecture);
        nmc_diag_set_help(x, "the checkpoint does not match config.json");
    }
    static const char *const kinds[] = {"missing", "wrong-shape", "unsupported-dtype", "unexpected"};
    int total = 0;
    for (int k = 0; k < 4; k++) {
        total += r.count[k];
        if (r.count[k] > CHECK_REPORT_MAX)
            nmc_diag_add(d, NMC_SEV_NOTE, "config-tensor-summary", where, 0, 0, 0,
                         "%d more %s tensors not listed", r.count[k] - CHECK_REPORT_MAX, kinds[k]);
    }
    nmc_arena_free(a);
    return total ? -1 : 0;
}
