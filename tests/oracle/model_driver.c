/* model_driver.c — test driver for tests/test_peft_interop.py (compiled by that test
 * against build/libnmc.a; not part of nmc).
 *
 *   model_driver MODEL_DIR OUT_DIR MODE
 *     MODE lora:  LoRA r=4, alpha 8 on the 7 projections (init "false": A and B random,
 *                 so the adapter is not the identity), bias "all", 2 AdamW steps
 *     MODE lora_mts: as lora plus modules_to_save ["lm_head"] (untied models)
 *     MODE full:  full fine-tuning, 2 AdamW steps
 *   Writes OUT_DIR/adapter (PEFT, LoRA modes), OUT_DIR/merged (merged fp32 save, LoRA
 *   modes), OUT_DIR/full (fp32 save, full mode), OUT_DIR/batch.i32 (input_ids,
 *   positions, doc_start of the fixed batch, [3, B*T]) and OUT_DIR/logits.f32 (eval
 *   logits [B*T, V]). Exit 0, or 1 with diagnostics on stderr.
 */
#include "lora.h"
#include "model.h"
#include "nmc_kernels.h"
#include "peft.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 12 };

static const char *const SEVEN[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                    "gate_proj", "up_proj", "down_proj"};
static const char *const MTS[] = {"lm_head"};

static void make_batch(nmc_batch_t *b, int32_t *arr, int V)
{
    int32_t *ids = arr, *lab = arr + B * T, *pos = arr + 2 * B * T, *doc = arr + 3 * B * T;
    for (int i = 0; i < B * T; i++) ids[i] = 3 + (i * 37 + 11) % (V - 3);
    for (int t = 0; t < T; t++) { /* row 0: one document; row 1: 5 + 7 */
        pos[t] = t, doc[t] = 0;
        pos[T + t] = t < 5 ? t : t - 5, doc[T + t] = t < 5 ? 0 : 5;
    }
    for (int i = 0; i < B * T; i++) {
        int last = (i % T == T - 1) || i == T + 4;
        lab[i] = last ? -100 : ids[i + 1];
    }
    *b = (nmc_batch_t){B, T, ids, lab, pos, doc, 0, B * T, -1};
    for (int i = 0; i < B * T; i++) b->n_label_tokens += lab[i] != -100;
}

static int fail(nmc_diags_t *d)
{
    nmc_diags_render_text(d, NULL, 0, stderr, 0);
    return 1;
}

static int train(nmc_model_t *m, const nmc_batch_t *b, nmc_diags_t *d)
{
    size_t n;
    nmc_param_t *ps = nmc_model_params(m, &n);
    float **mv = calloc(2 * n, sizeof *mv);
    for (size_t i = 0; i < 2 * n; i++) mv[i] = calloc((size_t)ps[i / 2].numel, sizeof(float));
    int rc = 0;
    for (int s = 1; s <= 2 && !rc; s++) {
        double loss;
        int64_t nt;
        nmc_model_zero_grads(m);
        rc = nmc_model_fwd_bwd(m, b, 1.0f / (float)b->n_label_tokens, &loss, &nt, d);
        for (size_t i = 0; i < n && !rc; i++)
            if (ps[i].trainable)
                nmc_cpu_adamw(ps[i].master, ps[i].grad, mv[2 * i], mv[2 * i + 1], (size_t)ps[i].numel,
                              1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, s);
    }
    for (size_t i = 0; i < 2 * n; i++) free(mv[i]);
    free(mv);
    return rc;
}

static int write_bin(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) return 1;
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: model_driver MODEL_DIR OUT_DIR lora|lora_mts|full\n");
        return 2;
    }
    const char *mode = argv[3], *out = argv[2];
    bool lora = strncmp(mode, "lora", 4) == 0;
    nmc_lora_cfg_t c;
    nmc_lora_cfg_default(&c);
    c.r = 4, c.alpha = 8, c.match = NMC_LORA_MATCH_SUFFIX, c.target_modules = SEVEN;
    c.n_target_modules = 7, c.bias = NMC_LORA_BIAS_ALL, c.init = NMC_LORA_INIT_RANDOM;
    if (!strcmp(mode, "lora_mts")) c.modules_to_save = MTS, c.n_modules_to_save = 1;
    nmc_model_opts_t o;
    nmc_model_opts_default(&o);
    o.model_dir = argv[1];
    o.train = lora ? NMC_TRAIN_LORA : NMC_TRAIN_FULL;
    o.lora = &c;
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_model_t *m;
    if (nmc_model_load(&o, &m, &d) != 0) return fail(&d);
    int V = (int)nmc_model_config(m)->vocab_size;
    int32_t arr[4 * B * T];
    nmc_batch_t b;
    make_batch(&b, arr, V);
    if (train(m, &b, &d) != 0) return fail(&d);
    char sub[4096];
    nmc_model_save_opts_t so = {.merge_lora = lora, .fp32 = true};
    snprintf(sub, sizeof sub, "%s/%s", out, lora ? "merged" : "full");
    if (nmc_model_save(m, sub, &so, &d) != 0) return fail(&d);
    if (lora) {
        nmc_peft_save_opts_t po = {.base_model_name_or_path = argv[1]};
        snprintf(sub, sizeof sub, "%s/adapter", out);
        if (nmc_peft_save(m, sub, &po, &d) != 0) return fail(&d);
    }
    float *logits = malloc(sizeof(float) * (size_t)B * T * V);
    if (nmc_model_logits(m, &b, 0, B * T, logits, &d) != 0) return fail(&d);
    int32_t meta[3 * B * T];
    memcpy(meta, arr, sizeof(int32_t) * B * T);
    memcpy(meta + B * T, arr + 2 * B * T, sizeof(int32_t) * 2 * B * T);
    int rc = write_bin(out, "batch.i32", meta, sizeof meta) |
             write_bin(out, "logits.f32", logits, sizeof(float) * (size_t)B * T * V);
    free(logits);
    nmc_model_free(m);
    nmc_diags_free(&d);
    return rc;
}
