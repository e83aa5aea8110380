/* model_int.h — private to runtime/model*.c and runtime/peft.c: the model object, its
 * layers and activation buffers. Not an API: other modules use runtime/model.h.
 */
#ifndef NMC_MODEL_INT_H
#define NMC_MODEL_INT_H
#include "arena.h"
#include "model.h"

/* A linear layer y = x W^T (+ b) (+ scale * drop(x) A^T B^T). */
typedef struct {
    nmc_param_t *w, *b;      /* b may be NULL */
    nmc_param_t *A, *Bm;     /* LoRA, both NULL when not adapted */
    const char *module;      /* HF module name, "model.layers.0.self_attn.q_proj" */
    int in, out;
    float scale;             /* LoRA scale */
    uint64_t drop_seed;      /* per-adapter dropout stream */
} nmc_lin_t;

enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT };

typedef struct {
    nmc_lin_t lin[LIN_COUNT];
    nmc_param_t *ln1, *ln2;  /* input_layernorm, post_attention_layernorm */
    nmc_param_t *qn, *kn;    /* Qwen3 q_norm / k_norm, else NULL */
} nmc_layer_t;

/* Saved activations of one layer (act dtype unless noted). With recompute only x_in is
 * kept per layer; the rest lives in one shared set refilled in backward. */
typedef struct {
    void *x_in;              /* [N, D] layer input (residual stream) */
    void *ln1, *ln2;         /* [N, D] norm outputs */
    float *rstd1, *rstd2;    /* [N] fp32 */
    void *q_pre, *k_pre;     /* [N, H*hd], [N, KVH*hd] before q/k norm (Qwen3 only) */
    float *q_rstd, *k_rstd;  /* [N*H], [N*KVH] fp32 (Qwen3 only) */
    void *q, *k, *v;         /* after norm + rope: attention inputs */
    void *att;               /* [N, H*hd] attention output */
    float *lse;              /* [B, H, T] fp32 */
    void *x_mid;             /* [N, D] residual after attention */
    void *g, *u, *h;         /* [N, F] gate, up, silu(g)*u */
    void *lora_h[LIN_COUNT]; /* [N, r] drop(x) A^T for adapted linears */
} nmc_acts_t;

struct nmc_model {
    nmc_arena_t *arena;
    nmc_model_config_t cfg;
    nmc_model_opts_t opts;
    nmc_lora_cfg_t lora;     /* valid when has_lora */
    bool has_lora;
    nmc_dev_t *dev;
    bool own_dev;
    const char *config_src;  /* config.json bytes (for save) */
    size_t config_len;
    nmc_st_dtype_t ckpt_dtype;

    nmc_param_t *params;
    size_t n_params;
    nmc_param_t *embed, *final_norm, *lm_head; /* lm_head == embed when tied */
    nmc_layer_t *layers;
    int n_layers;

    float *inv_freq;         /* device fp32 [hd/2] */
    uint64_t rng_offset;

    /* activation storage for up to cap_tokens tokens (grown on demand): one device
     * allocation (pool) carved into the buffers below */
    void *pool;
    int cap_tokens;
    nmc_acts_t *acts;        /* [n_layers] (with recompute: x_in only) */
    nmc_acts_t rc;           /* recompute set (recompute only) */
    void *x_final, *lnf;     /* [N, D] */
    float *rstd_f;           /* [N] */
    void *d_res, *d_a, *d_b; /* [N, D] gradient scratch */
    void *d_q, *d_k, *d_v, *d_att; /* [N, H*hd] / [N, KVH*hd] */
    void *d_q2, *d_k2;       /* q/k norm input gradients (Qwen3) */
    void *d_g, *d_u, *d_h;   /* [N, F] */
    void *d_lora;            /* [N, r] */
    void *x_drop;            /* [N, max(D, F, H*hd)] dropout(x) scratch */
    void *logits;            /* [n, V] for nmc_model_logits (grown separately) */
    int cap_logits;
    int32_t *ids, *labels, *pos, *doc; /* device [N] */
    double *loss_dev;        /* device double */
    /* lm_head + CE on the labelled rows only (CPU: model_fwd.c, compact_rows): n_ce rows,
     * their indices and labels (device [N]); n_ce < 0 runs every row */
    int32_t *ce_rows, *ce_labels;
    int n_ce;
    int32_t *ce_host;        /* host [2 * cap_tokens]: indices then labels (malloc) */
};

/* Internal, model.c: write a whole file atomically (io-error on failure). */
int nmc_model_write_file(const char *path, const void *data, size_t len, nmc_diags_t *d);
/* Internal, model.c: mkdir (existing is fine). */
int nmc_model_make_dir(const char *dir, nmc_diags_t *d);

/* Internal, model_fwd.c */
int nmc_model_ensure_acts(nmc_model_t *m, int B, int T, nmc_diags_t *d);
void nmc_model_free_acts(nmc_model_t *m);
/* HF module name of linear li in layer l ("model.layers.3.mlp.down_proj"), arena. */
const char *nmc_model_lin_module(nmc_model_t *m, int l, int li);

#endif
