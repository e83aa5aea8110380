/* model_config.h — Hugging Face config.json for the Llama family, and the tensor list
 * a config implies.
 *
 * Supported `architectures[0]`: LlamaForCausalLM (Llama 2 / 3.x), MistralForCausalLM,
 * Qwen2ForCausalLM, Qwen3ForCausalLM, and (parsed for later; no trainer yet)
 * Qwen3MoeForCausalLM and MixtralForCausalLM. Both the transformers 4 spelling
 * (`rope_theta` + `rope_scaling` with `rope_type` or legacy `type`, `torch_dtype`) and the
 * transformers 5 spelling (`rope_parameters` holding rope_theta and rope_type, `dtype`)
 * are read. Keys nmc does not use are ignored (configs carry many); keys it uses are
 * type-checked. Codes: config-* (see docs/store.md).
 */
#ifndef NMC_MODEL_CONFIG_H
#define NMC_MODEL_CONFIG_H
#include "arena.h"
#include "diag.h"
#include "json.h"
#include "nmc_kernels.h"
#include "safetensors.h"
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    NMC_ARCH_LLAMA,
    NMC_ARCH_MISTRAL,
    NMC_ARCH_QWEN2,
    NMC_ARCH_QWEN3,
    NMC_ARCH_QWEN3_MOE, /* parsed; training not implemented */
    NMC_ARCH_MIXTRAL,   /* parsed; training not implemented */
    NMC_ARCH_COUNT
} nmc_arch_t;

/* At most this many eos ids (Llama 3.x instruct lists 3). */
#define NMC_CONFIG_MAX_EOS 8

typedef struct {
    int64_t num_experts;           /* num_experts (Qwen3-MoE) / num_local_experts (Mixtral) */
    int64_t num_experts_per_tok;   /* top-k */
    int64_t moe_intermediate_size; /* expert FFN width (Qwen3-MoE); Mixtral: intermediate_size */
    int64_t decoder_sparse_step;   /* Qwen3-MoE: layer i is sparse when (i+1) % step == 0 */
    int64_t *mlp_only_layers;      /* Qwen3-MoE: dense layers (arena) */
    int64_t n_mlp_only_layers;
    bool norm_topk_prob;           /* Qwen3-MoE: renormalise the top-k weights */
    double router_aux_loss_coef;
} nmc_moe_config_t;

typedef struct {
    nmc_arch_t arch;
    const char *architecture;   /* "LlamaForCausalLM" (arena) */
    const char *model_type;     /* "llama"; NULL when absent */
    int64_t vocab_size;
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t num_layers;         /* num_hidden_layers */
    int64_t num_heads;          /* num_attention_heads */
    int64_t num_kv_heads;       /* num_key_value_heads (default: num_heads) */
    int64_t head_dim;           /* default hidden_size / num_heads */
    int64_t max_position_embeddings;
    double rms_norm_eps;
    nmc_rope_cfg_t rope;        /* theta always set; type/factors from rope scaling */
    bool tie_word_embeddings;   /* default false for every supported architecture */
    bool attention_bias;        /* q/k/v/o biases (Llama, Qwen3); Qwen2: q/k/v always */
    bool qkv_bias;              /* derived: q, k, v projections have a bias */
    bool o_bias;                /* derived: o_proj has a bias */
    bool mlp_bias;              /* Llama mlp_bias */
    bool qk_norm;               /* derived: Qwen3 q_norm / k_norm (RMSNorm over head_dim) */
    int64_t sliding_window;     /* 0 = none. Mistral: noted, nmc trains full attention */
    const char *dtype;          /* torch_dtype / dtype: "bfloat16", ...; NULL when absent */
    int64_t bos_token_id;       /* -1 when absent */
    int64_t eos_token_ids[NMC_CONFIG_MAX_EOS];
    int n_eos;
    const char *hidden_act;     /* "silu" */
    nmc_moe_config_t moe;       /* arch QWEN3_MOE / MIXTRAL only */
} nmc_model_config_t;

/* Parse a config.json tree. `file` names the source in diagnostics. Strings are copied
 * into `a`. Returns 0, or -1 with every problem found (config-* codes). */
int nmc_model_config_parse(nmc_arena_t *a, const nmc_json_t *root, const char *file,
                           nmc_model_config_t *out, nmc_diags_t *d);
/* Read `path` (config.json, or a directory holding one) and parse it. */
int nmc_model_config_load(nmc_arena_t *a, const char *path, nmc_model_config_t *out,
                          nmc_diags_t *d);

const char *nmc_arch_name(nmc_arch_t arch);
/* "LlamaForCausalLM, MistralForCausalLM, ..." (static). */
const char *nmc_model_config_supported(void);
bool nmc_arch_is_moe(nmc_arch_t arch);

/* One tensor a config implies, with its Hugging Face name. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[3];
} nmc_tensor_spec_t;

/* The exact tensor list (in model order: embeddings, layers, norm, lm_head). *out is
 * allocated in `a`. Returns the count. */
size_t nmc_model_config_tensors(nmc_arena_t *a, const nmc_model_config_t *c,
                                nmc_tensor_spec_t **out);
/* Parameter count implied by the config (tied embeddings counted once). */
int64_t nmc_model_config_param_count(const nmc_model_config_t *c);

/* Check that `st` holds exactly the tensors the config implies, with the right shapes
 * and a trainable dtype (F32/F16/BF16). A tied checkpoint that also stores lm_head.weight
 * is accepted (some exporters write it). Errors: config-tensor-missing,
 * config-tensor-unexpected, config-tensor-shape, st-dtype-unsupported; at most 20 of each
 * are reported then summarised. `where` names the checkpoint in diagnostics. */
int nmc_model_config_check_checkpoint(const nmc_model_config_t *c, const nmc_st_t *st,
                                      const char *where, nmc_diags_t *d);

#endif
