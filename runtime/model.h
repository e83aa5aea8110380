/* model.h — the Llama-family decoder (Llama 2/3.x, Mistral, Qwen2, Qwen3): load, forward,
 * backward, parameters, LoRA, save.
 *
 * Architecture (transformers' modeling_llama / qwen2 / qwen3, fp32 math on CPU):
 *   h = embed(ids) [+ NEFTune noise in training];  per layer:
 *   a = rmsnorm(h); q,k,v = a Wq^T (+bq), ...; Qwen3: q,k = rmsnorm_headdim(q,k);
 *   rope(q,k, positions); o = causal GQA attention within documents (batch doc_start);
 *   h += o Wo^T;  m = rmsnorm(h); h += (silu(m Wg^T) * m Wu^T) Wd^T;
 *   final rmsnorm; loss = CE(lm_head(h), labels) computed in chunks (never [N, V] logits).
 * Every linear may carry a LoRA adapter (runtime/lora.h).
 *
 * Tensors live on an nmc_dev_t (runtime/dev.h); the model calls only that interface.
 * Parallelism: a model object is one rank's share: layers [layer_begin, layer_end)
 * (pipeline stage) and 1/tp_size of each sharded tensor (tensor parallel). Only the
 * whole model on one rank (layer range = all, tp_size = 1) is implemented now; other
 * values are refused at load with model-parallel-unsupported. See docs/model.md.
 *
 * Errors: functions returning int give 0 or -1 with diagnostics appended (codes model-*,
 * plus config-*, st-* and lora-* from the modules they call). Never prints, never exits.
 */
#ifndef NMC_MODEL_H
#define NMC_MODEL_H
#include "batch.h"
#include "dev.h"
#include "diag.h"
#include "lora.h"
#include "model_config.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nmc_model nmc_model_t;

typedef enum {
    NMC_PARAM_EMBED,   /* model.embed_tokens.weight [V, D] */
    NMC_PARAM_LINEAR,  /* projection weight [out, in] */
    NMC_PARAM_BIAS,    /* projection bias [out] */
    NMC_PARAM_NORM,    /* RMSNorm weight [D] or [hd] (q_norm/k_norm) */
    NMC_PARAM_LM_HEAD, /* lm_head.weight [V, D] (untied models only) */
    NMC_PARAM_LORA_A,  /* [r, in] */
    NMC_PARAM_LORA_B,  /* [out, r] */
} nmc_param_kind_t;

/* One parameter tensor as this rank holds it. Owned by the model; valid until
 * nmc_model_free(). Buffers are device buffers of m's device. */
typedef struct {
    const char *name;       /* HF name ("model.layers.0.self_attn.q_proj.weight"); LoRA
                               tensors: PEFT adapter-file name
                               ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
                               modules_to_save copies keep the HF name of the tensor */
    nmc_param_kind_t kind;
    int layer;              /* decoder layer index, -1 for embed / final norm / lm_head */
    int ndim;               /* 1 or 2 */
    int64_t shape[2];       /* this rank's shard */
    int64_t numel;
    void *data;             /* act dtype: the tensor the forward pass reads */
    float *master;          /* fp32 copy the optimizer updates; == data when act is fp32;
                               NULL for frozen tensors on devices with a 16-bit act dtype */
    float *grad;            /* fp32 gradient [numel], accumulated by fwd_bwd; NULL if frozen */
    bool trainable;
    bool weight_decay;      /* HF Trainer rule: false for biases and norm weights, true
                               for everything else (embeddings, linears, lm_head, LoRA) */
    /* tensor-parallel shard: this rank holds [shard_offset, shard_offset + shape[shard_dim])
     * of full_shape[shard_dim]; shard_dim = -1 when replicated (always, for now). */
    int shard_dim;
    int64_t full_shape[2];
    int64_t shard_offset;
} nmc_param_t;

typedef enum {
    NMC_TRAIN_NONE = 0, /* frozen (eval / distillation teacher) */
    NMC_TRAIN_FULL = 1, /* every base parameter trainable (all_weights) */
    NMC_TRAIN_LORA = 2, /* base frozen; LoRA tensors (+ bias mode, modules_to_save) train */
} nmc_train_mode_t;

typedef struct {
    const char *model_dir;     /* config.json + model.safetensors (or sharded index) */
    nmc_dev_t *dev;            /* device to run on; NULL = a CPU device owned by the model */
    nmc_train_mode_t train;
    const nmc_lora_cfg_t *lora; /* required for NMC_TRAIN_LORA (copied), else ignored */
    float label_smoothing;     /* [0, 1): torch cross_entropy label_smoothing */
    float neftune_alpha;       /* 0 = off; noise in training forward only (see fwd_bwd) */
    uint64_t seed;             /* dropout and NEFTune stream (LoRA init uses lora->seed) */
    bool recompute;            /* activation checkpointing: keep only each layer's input
                                  and recompute the layer in backward */
    int ce_chunk;              /* lm_head+CE rows per chunk; 0 = 256 */
    /* parallel layout (only the defaults are implemented) */
    int layer_begin, layer_end; /* 0, 0 = every layer */
    int tp_rank, tp_size;       /* 0, 0 or 0, 1 = no tensor parallelism */
} nmc_model_opts_t;

/* Zeroes and fills defaults (train NONE, seed 42, ce_chunk 256, whole model). */
void nmc_model_opts_default(nmc_model_opts_t *o);

/* Load a model. Order: config.json parsed (config-*), refused when the architecture has
 * no trainer (model-arch-unsupported: MoE); checkpoint opened and checked against the
 * config (st-*, config-tensor-*); LoRA options checked (lora-*); then tensors converted
 * F32/F16/BF16 -> fp32 -> device. Returns 0 and *out, or -1 (*out NULL). */
int nmc_model_load(const nmc_model_opts_t *opts, nmc_model_t **out, nmc_diags_t *d);
void nmc_model_free(nmc_model_t *m);

const nmc_model_config_t *nmc_model_config(const nmc_model_t *m);
nmc_dev_t *nmc_model_dev(nmc_model_t *m);
/* dtype of the loaded checkpoint's tensors ("BF16" when mixed: the first tensor's). */
nmc_st_dtype_t nmc_model_ckpt_dtype(const nmc_model_t *m);

/* Parameters in a fixed order (model order; each LoRA A, B after its base weight).
 * The array is owned by m. */
nmc_param_t *nmc_model_params(nmc_model_t *m, size_t *n);
nmc_param_t *nmc_model_param_find(nmc_model_t *m, const char *name); /* NULL if absent */
int64_t nmc_model_trainable_count(const nmc_model_t *m); /* trainable elements */

/* Training forward + backward of one micro-batch. Gradients are ACCUMULATED into each
 * trainable param's grad, scaled by grad_scale (pass 1 / label tokens of the whole
 * optimizer step over every micro-batch and rank: the sums then give the mean loss's
 * gradient). *loss_sum = sum of CE over the batch's labelled tokens (unscaled),
 * *n_tokens = that count. Training mode: LoRA dropout, NEFTune noise
 * (x += uniform(-1,1) * alpha / sqrt(T * D) on the embedding output, T = the batch's
 * row length, as transformers' neftune_post_forward_hook). Each call advances the RNG
 * counter. Errors: model-batch-invalid (ids/labels out of range, bad doc_start). */
int nmc_model_fwd_bwd(nmc_model_t *m, const nmc_batch_t *b, float grad_scale,
                      double *loss_sum, int64_t *n_tokens, nmc_diags_t *d);
/* Forward only, eval mode (no dropout, no noise). */
int nmc_model_eval(nmc_model_t *m, const nmc_batch_t *b, double *loss_sum,
                   int64_t *n_tokens, nmc_diags_t *d);
/* Eval-mode logits of tokens [tok_begin, tok_begin + n) of the flattened batch into
 * host out[n * V] (fp32). For tests, merge checks and distillation teachers. */
int nmc_model_logits(nmc_model_t *m, const nmc_batch_t *b, int tok_begin, int n, float *out,
                     nmc_diags_t *d);
int nmc_model_zero_grads(nmc_model_t *m);

/* RNG counter for dropout / NEFTune (a checkpoint saves it for exact resume). */
uint64_t nmc_model_rng_offset(const nmc_model_t *m);
void nmc_model_set_rng_offset(nmc_model_t *m, uint64_t off);

/* Host copy of a parameter (fp32, numel elements): master when present, else data. */
int nmc_model_param_read(nmc_model_t *m, const nmc_param_t *p, float *host, nmc_diags_t *d);
/* Overwrite a parameter from host fp32 (master and act copy). Used by resume and tests. */
int nmc_model_param_write(nmc_model_t *m, nmc_param_t *p, const float *host, nmc_diags_t *d);

typedef struct {
    bool merge_lora;   /* fold each adapter into its base weight (W += scale * B A) */
    bool fp32;         /* write F32; default: the dtype of the original checkpoint
                          (F32/F16/BF16, rounding to nearest even) */
} nmc_model_save_opts_t;

/* Full-weight save into directory `dir` (created if absent): config.json (the original
 * bytes) + model.safetensors with HF names, written atomically. With LoRA and
 * merge_lora false, the adapters are left out (use nmc_peft_save). The trainer adds the
 * tokenizer files and generation_config.json. */
int nmc_model_save(nmc_model_t *m, const char *dir, const nmc_model_save_opts_t *o,
                   nmc_diags_t *d);

/* The LoRA config the model was built with (a copy owned by m), NULL without LoRA. */
const nmc_lora_cfg_t *nmc_model_lora(const nmc_model_t *m);

#endif
