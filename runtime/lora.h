/* lora.h — LoRA adapters on the decoder's linear layers, with PEFT semantics.
 *
 *   y = x W^T (+ b) + scale * dropout(x) A^T B^T,   A [r, in], B [out, r]
 *   scale = alpha / r  (use_rslora: alpha / sqrt(r))
 *
 * What belongs here: the LoRA configuration (both backends' option sets), validation of
 * the options nmc supports, target-module matching, initialisation, and merge. The
 * adapter tensors themselves are model parameters (runtime/model.h, nmc_param_t with
 * kind NMC_PARAM_LORA_A / _B and PEFT names); the adapter directory format is
 * runtime/peft.h.
 *
 * Target matching (module names are HF names without ".weight", e.g.
 * "model.layers.0.self_attn.q_proj"; the candidates are the 7 projections q/k/v/o_proj,
 * gate/up/down_proj of every layer; lm_head is never a LoRA target):
 *   NMC_LORA_MATCH_GLOB (Automodel's ModuleMatcher): a module matches a pattern when its
 *     full name equals the pattern, or the pattern read as a glob ('*' = any run of
 *     characters, dots included; every other character literal) matches the whole name:
 *     "*.q_proj" matches, a bare "q_proj" does NOT (use "*.q_proj" or "*q_proj").
 *     NULL/empty target_modules and exclude_modules = the pattern "*_proj" (all 7
 *     projections). exclude_modules alone = every linear layer not excluded, which in
 *     Automodel includes lm_head: nmc refuses that unless lm_head is excluded
 *     (lora-lm-head-unsupported, see nmc_lora_check_model). Both set: refused
 *     (lora-target-exclude-both), as Automodel does.
 *   NMC_LORA_MATCH_SUFFIX (Unsloth / PEFT list): a module matches when its name equals a
 *     target or ends with "." + target. NULL/empty = the Unsloth default 7-module set.
 *     exclude_modules: same rule, removes matches.
 * Known differences from Automodel's own LinearLoRA (nmc follows PEFT for both backends,
 * so adapters load in PEFT): Automodel applies dropout to the LoRA output ("post") and
 * initialises A with torch.nn.init.uniform_ (U(0, 1)) for its default "xavier"; nmc
 * applies dropout to the input (PEFT) and uses PEFT's initialisations.
 * layers_to_transform (PEFT): only layers whose index is listed get adapters.
 *
 * Initialisation: nmc draws from its own seeded counter-based RNG (splitmix64, see
 * kernels/nmc_dropout_rng.h), so values do NOT reproduce torch's RNG stream for the same
 * seed; the distributions are PEFT's. Golden tests load PEFT's initial A/B instead.
 */
#ifndef NMC_LORA_H
#define NMC_LORA_H
#include "diag.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    NMC_LORA_MATCH_GLOB = 0,   /* Automodel target_modules / exclude_modules patterns */
    NMC_LORA_MATCH_SUFFIX = 1, /* PEFT / Unsloth list of module names */
} nmc_lora_match_t;

typedef enum {
    NMC_LORA_BIAS_NONE = 0,      /* no bias trained */
    NMC_LORA_BIAS_ALL = 1,       /* every bias of the model trained */
    NMC_LORA_BIAS_LORA_ONLY = 2, /* biases of LoRA-adapted layers trained */
} nmc_lora_bias_t;

typedef enum {
    NMC_LORA_INIT_DEFAULT = 0, /* init_lora_weights=true: A kaiming_uniform(a=sqrt 5), B 0 */
    NMC_LORA_INIT_GAUSSIAN,    /* "gaussian": A ~ N(0, 1/r), B 0 */
    NMC_LORA_INIT_RANDOM,      /* false: A and B both nn.Linear default (kaiming a=sqrt 5) */
    NMC_LORA_INIT_PISSA,       /* refused by nmc_lora_check_supported */
    NMC_LORA_INIT_OLORA,       /* refused */
    NMC_LORA_INIT_LOFTQ,       /* refused */
} nmc_lora_init_t;

/* Limits: a config names at most this many patterns of each kind (the 7 projections plus
 * a few spellings is the real-world maximum; 64 leaves room). */
#define NMC_LORA_MAX_PATTERNS 64

typedef struct {
    int r;                          /* rank > 0 */
    double alpha;                   /* lora_alpha > 0 */
    double dropout;                 /* lora_dropout in [0, 1) (1.0 refused: PEFT divides by 1-p) */
    bool use_rslora;
    bool use_dora;                  /* refused */
    nmc_lora_match_t match;
    const char *const *target_modules; /* n_target_modules patterns; NULL/0 = default set */
    int n_target_modules;
    const char *const *exclude_modules;
    int n_exclude_modules;
    const int *layers_to_transform; /* NULL = every layer */
    int n_layers_to_transform;
    nmc_lora_bias_t bias;
    const char *const *modules_to_save; /* "embed_tokens", "lm_head" (full-trained) */
    int n_modules_to_save;
    nmc_lora_init_t init;
    bool has_layer_replication;     /* refused when true */
    bool has_loftq_config;          /* refused when true */
    uint64_t seed;                  /* init RNG seed (Unsloth random_state) */
} nmc_lora_cfg_t;

/* Defaults: r 16, alpha 32, dropout 0, glob matching, bias none, init default, seed 3407. */
void nmc_lora_cfg_default(nmc_lora_cfg_t *c);

/* Refuse, before training, every option nmc does not implement or values out of range:
 * lora-dora-unsupported, lora-init-unsupported, lora-layer-replication-unsupported,
 * lora-loftq-unsupported, lora-rank-invalid, lora-alpha-invalid, lora-dropout-invalid,
 * lora-pattern-invalid (empty pattern), lora-target-exclude-both (glob matching),
 * lora-modules-to-save-unsupported
 * (names other than embed_tokens / lm_head). Path in diagnostics: training.lora.<field>.
 * Returns 0 or -1 (all problems appended). */
int nmc_lora_check_supported(const nmc_lora_cfg_t *c, nmc_diags_t *d);

/* Automodel wildcard: '*' matches any run (dots included), the rest is literal; the
 * whole name must match. */
bool nmc_lora_glob(const char *pattern, const char *name);
/* Does module `name` (e.g. "model.layers.3.mlp.down_proj") of layer `layer` get an adapter? */
bool nmc_lora_targets(const nmc_lora_cfg_t *c, const char *name, int layer);

/* After matching against a model with n_layers layers: errors when no module matched
 * (lora-no-target-matched, with a help line suggesting the right spelling for the
 * matching mode), when glob matching would put LoRA on lm_head
 * (lora-lm-head-unsupported), or when layers_to_transform names a layer the model does
 * not have (lora-layer-out-of-range). n_matched: adapters the model would get. */
int nmc_lora_check_model(const nmc_lora_cfg_t *c, int n_layers, int n_matched, nmc_diags_t *d);

/* scale = alpha / r, or alpha / sqrt(r) with rsLoRA. */
float nmc_lora_scale(const nmc_lora_cfg_t *c);

/* Fill host A [r, in] and B [out, r] per c->init, drawing from (c->seed, stream): stream
 * distinguishes adapters (the model passes the adapter's index). */
void nmc_lora_init_host(const nmc_lora_cfg_t *c, uint64_t stream, float *A, float *B,
                        int out, int in);

/* Host merge: W [out, in] += scale * B [out, r] @ A [r, in], fp32. */
void nmc_lora_merge_host(float *W, const float *A, const float *B, int out, int in, int r,
                         float scale);

/* Names for error messages and adapter_config.json. */
const char *nmc_lora_bias_name(nmc_lora_bias_t b);      /* "none", "all", "lora_only" */
const char *nmc_lora_init_name(nmc_lora_init_t i);      /* "true", "gaussian", "false", ... */

#endif
