/* lora.c — LoRA configuration checks, target matching (Automodel globs, PEFT/Unsloth
 * names), initialisation (PEFT's distributions from nmc's seeded RNG) and host merge.
 * See runtime/lora.h for the semantics and their sources.
 */
#include "lora.h"
#include "nmc_dropout_rng.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const UNSLOTH_DEFAULT[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};
static const char *const AUTOMODEL_DEFAULT[] = {"*_proj"};

void nmc_lora_cfg_default(nmc_lora_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->r = 16;
    c->alpha = 32;
    c->match = NMC_LORA_MATCH_GLOB;
    c->bias = NMC_LORA_BIAS_NONE;
    c->init = NMC_LORA_INIT_DEFAULT;
    c->seed = 3407;
}

const char *nmc_lora_bias_name(nmc_lora_bias_t b)
{
    return b == NMC_LORA_BIAS_ALL ? "all" : b == NMC_LORA_BIAS_LORA_ONLY ? "lora_only" : "none";
}

const char *nmc_lora_init_name(nmc_lora_init_t i)
{
    static const char *const names[] = {"true", "gaussian", "false", "pissa", "olora", "loftq"};
    return (unsigned)i < sizeof names / sizeof names[0] ? names[i] : "?";
}

/* ---- validation ---------------------------------------------------------------------- */

static nmc_diag_t *refuse(nmc_diags_t *d, const char *code, const char *field, const char *msg)
{
    nmc_path_t p = {.depth = 0};
    nmc_path_push_key(&p, "training", 8);
    nmc_path_push_key(&p, "lora", 4);
    nmc_path_push_key(&p, field, strlen(field));
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, code, NULL, 0, 0, 0, "%s", msg);
    nmc_diag_set_path(r, &p);
    return r;
}

static int check_patterns(const char *const *pats, int n, const char *field, nmc_diags_t *d)
{
    int bad = 0;
    if (n > NMC_LORA_MAX_PATTERNS) {
        nmc_diag_t *r = refuse(d, "lora-pattern-invalid", field, "too many module patterns");
        nmc_diag_set_got(r, "%d", n);
        nmc_diag_set_expected(r, "at most %d", NMC_LORA_MAX_PATTERNS);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!pats || !pats[i] || !pats[i][0]) {
            nmc_diag_t *r = refuse(d, "lora-pattern-invalid", field, "empty module pattern");
            nmc_diag_set_help(r, "remove the empty entry, or name a module such as \"*.q_proj\"");
            bad = 1;
        }
    return bad ? -1 : 0;
}

static int check_values(const nmc_lora_cfg_t *c, nmc_diags_t *d)
{
    int bad = 0;
    if (c->r <= 0) {
        nmc_diag_set_got(refuse(d, "lora-rank-invalid", "rank", "LoRA rank must be > 0"), "%d", c->r);
        bad = 1;
    }
    if (!(c->alpha > 0) || !isfinite(c->alpha)) {
        nmc_diag_set_got(refuse(d, "lora-alpha-invalid", "alpha", "LoRA alpha must be > 0"), "%g", c->alpha);
        bad = 1;
    }
    if (!(c->dropout >= 0 && c->dropout < 1)) {
        nmc_diag_t *r = refuse(d, "lora-dropout-invalid", "dropout", "LoRA dropout must be in [0, 1)");
        nmc_diag_set_got(r, "%g", c->dropout);
        nmc_diag_set_help(r, "a dropout of 1 drops the whole adapter path; use a value below 1");
        bad = 1;
    }
    return bad ? -1 : 0;
}

static int check_unsupported(const nmc_lora_cfg_t *c, nmc_diags_t *d)
{
    int bad = 0;
    if (c->use_dora) {
        nmc_diag_t *r = refuse(d, "lora-dora-unsupported", "use_dora", "DoRA is not implemented in nmc");
        nmc_diag_set_help(r, "set use_dora to false");
        bad = 1;
    }
    if (c->init >= NMC_LORA_INIT_PISSA) {
        nmc_diag_t *r = refuse(d, "lora-init-unsupported", "init_lora_weights",
                               "this LoRA initialisation is not implemented in nmc");
        nmc_diag_set_got(r, "%s", nmc_lora_init_name(c->init));
        nmc_diag_set_expected(r, "true, false or \"gaussian\"");
        bad = 1;
    }
    if (c->has_layer_replication) {
        nmc_diag_t *r = refuse(d, "lora-layer-replication-unsupported", "layer_replication",
                               "layer_replication is not implemented in nmc");
        nmc_diag_set_help(r, "remove layer_replication (or set it to null)");
        bad = 1;
    }
    if (c->has_loftq_config) {
        nmc_diag_t *r = refuse(d, "lora-loftq-unsupported", "loftq_config",
                               "LoftQ initialisation is not implemented in nmc");
        nmc_diag_set_help(r, "set loftq_config to null");
        bad = 1;
    }
    for (int i = 0; i < c->n_modules_to_save; i++) {
        const char *s = c->modules_to_save && c->modules_to_save[i] ? c->modules_to_save[i] : "";
        if (strcmp(s, "embed_tokens") && strcmp(s, "lm_head")) {
            nmc_diag_t *r = refuse(d, "lora-modules-to-save-unsupported", "modules_to_save",
                                   "nmc can train in full only embed_tokens and lm_head");
            nmc_diag_set_got(r, "\"%s\"", s);
            nmc_diag_set_expected(r, "\"embed_tokens\" or \"lm_head\"");
            bad = 1;
        }
    }
    return bad ? -1 : 0;
}

int nmc_lora_check_supported(const nmc_lora_cfg_t *c, nmc_diags_t *d)
{
    int bad = check_values(c, d) | check_unsupported(c, d);
    bad |= check_patterns(c->target_modules, c->n_target_modules, "target_modules", d);
    bad |= check_patterns(c->exclude_modules, c->n_exclude_modules, "exclude_modules", d);
    if (c->match == NMC_LORA_MATCH_GLOB && c->n_target_modules > 0 && c->n_exclude_modules > 0) {
        nmc_diag_t *r = refuse(d, "lora-target-exclude-both", "exclude_modules",
                               "target_modules and exclude_modules cannot both be set");
        nmc_diag_set_help(r, "keep one of them: target_modules lists what gets LoRA, "
                             "exclude_modules what does not");
        bad = -1;
    }
    return bad ? -1 : 0;
}

/* ---- matching ------------------------------------------------------------------------ */

bool nmc_lora_glob(const char *p, const char *s)
{
    /* iterative wildcard match with single backtrack point (linear for '*'-only globs) */
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*') p++;
    return *p == 0;
}

static bool suffix_match(const char *t, const char *name)
{
    size_t nt = strlen(t), nn = strlen(name);
    if (!strcmp(t, name)) return true;
    return nn > nt && name[nn - nt - 1] == '.' && !strcmp(name + nn - nt, t);
}

static bool any_match(const nmc_lora_cfg_t *c, const char *const *pats, int n, const char *name)
{
    for (int i = 0; i < n; i++) {
        if (c->match == NMC_LORA_MATCH_GLOB ? (!strcmp(pats[i], name) || nmc_lora_glob(pats[i], name))
                                            : suffix_match(pats[i], name))
            return true;
    }
    return false;
}

static bool layer_listed(const nmc_lora_cfg_t *c, int layer)
{
    if (!c->layers_to_transform || c->n_layers_to_transform <= 0) return true;
    for (int i = 0; i < c->n_layers_to_transform; i++)
        if (c->layers_to_transform[i] == layer) return true;
    return false;
}

bool nmc_lora_targets(const nmc_lora_cfg_t *c, const char *name, int layer)
{
    if (!layer_listed(c, layer)) return false;
    const char *const *t = c->target_modules;
    int nt = c->n_target_modules;
    bool glob = c->match == NMC_LORA_MATCH_GLOB;
    if (nt <= 0 || !t) {
        if (glob && c->n_exclude_modules > 0) /* Automodel: every linear not excluded */
            return !any_match(c, c->exclude_modules, c->n_exclude_modules, name);
        t = glob ? AUTOMODEL_DEFAULT : UNSLOTH_DEFAULT;
        nt = glob ? 1 : 7;
    }
    if (!any_match(c, t, nt, name)) return false;
    return !(c->n_exclude_modules > 0 && any_match(c, c->exclude_modules, c->n_exclude_modules, name));
}

int nmc_lora_check_model(const nmc_lora_cfg_t *c, int n_layers, int n_matched, nmc_diags_t *d)
{
    int bad = 0;
    for (int i = 0; i < c->n_layers_to_transform; i++)
        if (c->layers_to_transform[i] < 0 || c->layers_to_transform[i] >= n_layers) {
            nmc_diag_t *r = refuse(d, "lora-layer-out-of-range", "layers_to_transform",
                                   "layers_to_transform names a layer the model does not have");
            nmc_diag_set_got(r, "%d", c->layers_to_transform[i]);
            nmc_diag_set_expected(r, "a layer index in [0, %d)", n_layers);
            bad = 1;
        }
    if (c->match == NMC_LORA_MATCH_GLOB && c->n_target_modules <= 0 && c->n_exclude_modules > 0 &&
        !any_match(c, c->exclude_modules, c->n_exclude_modules, "lm_head")) {
        nmc_diag_t *r = refuse(d, "lora-lm-head-unsupported", "exclude_modules",
                               "exclude_modules alone adapts every linear layer including "
                               "lm_head, and nmc does not train LoRA on lm_head");
        nmc_diag_set_help(r, "add \"lm_head\" to exclude_modules, or list target_modules "
                             "instead (e.g. [\"*_proj\"])");
        bad = 1;
    }
    if (n_matched == 0 && !bad) {
        nmc_diag_t *r = refuse(d, "lora-no-target-matched", "target_modules",
                               "no module of the model matches target_modules");
        nmc_diag_set_expected(r, "module names such as model.layers.0.self_attn.q_proj");
        nmc_diag_set_help(r, c->match == NMC_LORA_MATCH_GLOB
                                 ? "patterns match the full module name: write \"*.q_proj\", "
                                   "not \"q_proj\""
                                 : "name the projections: q_proj, k_proj, v_proj, o_proj, "
                                   "gate_proj, up_proj, down_proj");
        bad = 1;
    }
    return bad ? -1 : 0;
}

float nmc_lora_scale(const nmc_lora_cfg_t *c)
{
    return (float)(c->use_rslora ? c->alpha / sqrt((double)c->r) : c->alpha / (double)c->r);
}

/* ---- initialisation ------------------------------------------------------------------ */

static double uni(uint64_t seed, uint64_t ctr)
{
    /* 53-bit uniform in [0, 1) */
    return (double)(nmc_splitmix64(seed ^ nmc_splitmix64(ctr)) >> 11) * (1.0 / 9007199254740992.0);
}

/* nn.init.kaiming_uniform_(w, a=sqrt(5)) on [rows, fan_in]: gain sqrt(2/(1+5)),
 * bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in). */
static void kaiming(float *w, size_t n, int fan_in, uint64_t seed)
{
    double bound = 1.0 / sqrt((double)fan_in);
    for (size_t i = 0; i < n; i++) w[i] = (float)((2.0 * uni(seed, i) - 1.0) * bound);
}

static void gaussian(float *w, size_t n, double std, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) { /* Box-Muller, one draw per pair of uniforms */
        double u1 = 1.0 - uni(seed, 2 * i), u2 = uni(seed, 2 * i + 1);
        w[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

void nmc_lora_init_host(const nmc_lora_cfg_t *c, uint64_t stream, float *A, float *B, int out,
                        int in)
{
    size_t na = (size_t)c->r * (size_t)in, nb = (size_t)out * (size_t)c->r;
    uint64_t sa = nmc_splitmix64(c->seed ^ nmc_splitmix64(2 * stream + 1));
    uint64_t sb = nmc_splitmix64(c->seed ^ nmc_splitmix64(2 * stream + 2));
    if (c->init == NMC_LORA_INIT_GAUSSIAN) gaussian(A, na, 1.0 / c->r, sa); /* PEFT: std 1/r */
    else kaiming(A, na, in, sa);
    if (c->init == NMC_LORA_INIT_RANDOM) kaiming(B, nb, c->r, sb); /* nn.Linear default */
    else memset(B, 0, nb * sizeof *B);
}

void nmc_lora_merge_host(float *W, const float *A, const float *B, int out, int in, int r,
                         float scale)
{
    for (int o = 0; o < out; o++) {
        float *w = W + (size_t)o * in;
        for (int k = 0; k < r; k++) {
            float s = scale * B[(size_t)o * r + k];
            const float *a = A + (size_t)k * in;
            for (int i = 0; i < in; i++) w[i] += s * a[i];
        }
    }
}
