/* peft.h — PEFT LoRA adapter directories: adapter_config.json + adapter_model.safetensors,
 * written so that peft.PeftModel.from_pretrained(base, dir) loads them, and read back
 * (resume, tests).
 *
 * Tensor names (as PEFT 0.21's save_pretrained writes them, checked by the interop test):
 *   base_model.model.<HF module>.lora_A.weight / .lora_B.weight
 *   base_model.model.<HF module>.base_layer.bias   (bias "all" / "lora_only": adapted linear)
 *   base_model.model.<HF module>.bias          (bias "all": a linear without an adapter)
 *   base_model.model.<HF tensor name>          (modules_to_save: model.embed_tokens.weight,
 *                                               lm_head.weight)
 * Tensors are written F32 (adapter weights are trained in fp32; PEFT casts on load).
 */
#ifndef NMC_PEFT_H
#define NMC_PEFT_H
#include "arena.h"
#include "diag.h"
#include "lora.h"
#include "model.h"

typedef struct {
    const char *base_model_name_or_path; /* written as is; NULL -> null */
} nmc_peft_save_opts_t;

/* Write m's adapter into `dir` (created if absent; both files atomic). The model must
 * have been loaded with NMC_TRAIN_LORA (else model-not-lora). */
int nmc_peft_save(nmc_model_t *m, const char *dir, const nmc_peft_save_opts_t *o,
                  nmc_diags_t *d);

/* Read dir/adapter_config.json into *cfg (strings in arena a). Fields nmc refuses
 * (use_dora true, init pissa/...) are read as such so nmc_lora_check_supported names
 * them. Matching: a list of names gives NMC_LORA_MATCH_SUFFIX (PEFT semantics); a string
 * target_modules (PEFT regex) is refused (peft-target-regex-unsupported). Codes peft-*. */
int nmc_peft_read_config(nmc_arena_t *a, const char *dir, nmc_lora_cfg_t *cfg,
                         nmc_diags_t *d);

/* Load dir/adapter_model.safetensors into m's LoRA (and bias / modules_to_save)
 * parameters. Every trainable adapter tensor of m must be present with its shape
 * (peft-tensor-missing / peft-tensor-shape); extra tensors are refused
 * (peft-tensor-unexpected). */
int nmc_peft_load(nmc_model_t *m, const char *dir, nmc_diags_t *d);

#endif
