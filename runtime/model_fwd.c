/* model_fwd.c — forward and backward of the decoder on an nmc_dev_t: activation pool,
 * batch validation and upload, linear (+LoRA) layers, the decoder layer, the chunked
 * lm_head + CE loss, and logits for tests / merge checks.
 *
 * Saved activations: every layer keeps what its backward needs (model_int.h,
 * nmc_acts_t). With opts.recompute only each layer's input is kept and the layer's
 * forward is re-run (same dropout masks: same RNG counters) right before its backward.
 * Backward stops at the lowest layer that holds a trainable tensor (LoRA on upper
 * layers only, or a frozen embedding, need no gradient below it), and that layer skips
 * its own input gradient unless the embedding trains. On the CPU the lm_head + CE runs on
 * the labelled rows only (compact_rows): prompt and padding rows cost nothing there.
 */
#include "model_int.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CK(call)                                                                          \
    do {                                                                                  \
        if ((call) != 0) return -1;                                                       \
    } while (0)

static void *AP(const nmc_model_t *m, void *p, size_t elems)
{
    return (char *)p + elems * m->dev->act_size;
}

/* ---- activation pool ------------------------------------------------------------------ */

typedef struct {
    char *base;   /* NULL while sizing */
    size_t off;
} carve_t;

static void *take(carve_t *c, size_t bytes)
{
    size_t at = (c->off + 255) & ~(size_t)255; /* 256-byte alignment (vector loads, TMA) */
    c->off = at + bytes;
    return c->base ? c->base + at : NULL;
}

static int lora_r(const nmc_model_t *m) { return m->has_lora ? m->lora.r : 0; }

static void carve_layer(nmc_model_t *m, carve_t *c, nmc_acts_t *a, int l, size_t N)
{
    const nmc_model_config_t *g = &m->cfg;
    size_t as = m->dev->act_size, D = (size_t)g->hidden_size, F = (size_t)g->intermediate_size;
    size_t H = (size_t)g->num_heads, KVH = (size_t)g->num_kv_heads, hd = (size_t)g->head_dim;
    a->ln1 = take(c, N * D * as);
    a->ln2 = take(c, N * D * as);
    a->rstd1 = take(c, N * sizeof(float));
    a->rstd2 = take(c, N * sizeof(float));
    if (g->qk_norm) {
        a->q_pre = take(c, N * H * hd * as);
        a->k_pre = take(c, N * KVH * hd * as);
        a->q_rstd = take(c, N * H * sizeof(float));
        a->k_rstd = take(c, N * KVH * sizeof(float));
    }
    a->q = take(c, N * H * hd * as);
    a->k = take(c, N * KVH * hd * as);
    a->v = take(c, N * KVH * hd * as);
    a->att = take(c, N * H * hd * as);
    a->lse = take(c, N * H * sizeof(float));
    a->x_mid = take(c, N * D * as);
    a->g = take(c, N * F * as);
    a->u = take(c, N * F * as);
    a->h = take(c, N * F * as);
    for (int li = 0; li < LIN_COUNT; li++)
        a->lora_h[li] = m->layers[l].lin[li].A ? take(c, N * (size_t)lora_r(m) * as) : NULL;
}

static void carve_all(nmc_model_t *m, carve_t *c, size_t N)
{
    const nmc_model_config_t *g = &m->cfg;
    size_t as = m->dev->act_size, D = (size_t)g->hidden_size, F = (size_t)g->intermediate_size;
    size_t qd = (size_t)(g->num_heads * g->head_dim), kvd = (size_t)(g->num_kv_heads * g->head_dim);
    size_t wide = D > F ? D : F;
    if (qd > wide) wide = qd;
    for (int l = 0; l < m->n_layers; l++) {
        m->acts[l].x_in = take(c, N * D * as);
        if (!m->opts.recompute) carve_layer(m, c, &m->acts[l], l, N);
    }
    if (m->opts.recompute) {
        /* one shared set; lora_h sized for the adapters of any layer (all have the same
         * rank, so the union of adapted linears is enough) */
        carve_layer(m, c, &m->rc, 0, N);
        for (int li = 0; li < LIN_COUNT; li++)
            if (!m->rc.lora_h[li] && lora_r(m)) m->rc.lora_h[li] = take(c, N * (size_t)lora_r(m) * as);
    }
    m->x_final = take(c, N * D * as);
    m->lnf = take(c, N * D * as);
    m->rstd_f = take(c, N * sizeof(float));
    m->d_res = take(c, N * D * as);
    m->d_a = take(c, N * D * as);
    m->d_b = take(c, N * D * as);
    m->d_q = take(c, N * qd * as);
    m->d_k = take(c, N * kvd * as);
    m->d_v = take(c, N * kvd * as);
    m->d_att = take(c, N * qd * as);
    m->d_q2 = take(c, N * qd * as);
    m->d_k2 = take(c, N * kvd * as);
    m->d_g = take(c, N * F * as);
    m->d_u = take(c, N * F * as);
    m->d_h = take(c, N * F * as);
    m->d_lora = take(c, N * (size_t)(lora_r(m) ? lora_r(m) : 1) * as);
    m->x_drop = take(c, N * wide * as);
    m->ids = take(c, N * sizeof(int32_t));
    m->labels = take(c, N * sizeof(int32_t));
    m->pos = take(c, N * sizeof(int32_t));
    m->doc = take(c, N * sizeof(int32_t));
    m->loss_dev = take(c, sizeof(double));
    m->ce_rows = take(c, N * sizeof(int32_t));
    m->ce_labels = take(c, N * sizeof(int32_t));
}

void nmc_model_free_acts(nmc_model_t *m)
{
    if (m->pool) m->dev->free(m->dev, m->pool);
    if (m->logits) m->dev->free(m->dev, m->logits);
    free(m->ce_host);
    m->ce_host = NULL;
    m->pool = m->logits = NULL;
    m->cap_tokens = m->cap_logits = 0;
}

int nmc_model_ensure_acts(nmc_model_t *m, int B, int T, nmc_diags_t *d)
{
    int N = B * T;
    if (N <= m->cap_tokens) return 0;
    if (m->pool) m->dev->free(m->dev, m->pool);
    m->pool = NULL;
    m->cap_tokens = 0;
    free(m->ce_host);
    if (!(m->ce_host = malloc(sizeof(int32_t) * 2 * (size_t)N))) abort(); /* as the arena */
    if (!m->acts) m->acts = nmc_arena_alloc(m->arena, sizeof *m->acts * (size_t)(m->n_layers + 1));
    carve_t c = {NULL, 0};
    carve_all(m, &c, (size_t)N);
    m->pool = m->dev->alloc(m->dev, c.off);
    if (!m->pool) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "model-device-error", NULL, 0, 0, 0,
                                     "cannot allocate %zu bytes of activations for %d tokens "
                                     "on %s", c.off, N, m->dev->name);
        nmc_diag_set_help(r, "use a smaller micro-batch or sequence length, or enable "
                             "activation checkpointing");
        return -1;
    }
    c = (carve_t){m->pool, 0};
    carve_all(m, &c, (size_t)N);
    m->cap_tokens = N;
    return 0;
}

/* ---- batch ------------------------------------------------------------------------------ */

static int bad_batch(nmc_diags_t *d, const char *msg, long i, long v)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "model-batch-invalid", NULL, 0, 0, 0,
                                 "%s at token %ld", msg, i);
    nmc_diag_set_got(r, "%ld", v);
    nmc_diag_set_help(r, "the dataset pipeline must produce batches per runtime/batch.h");
    return -1;
}

static int check_batch(const nmc_model_t *m, const nmc_batch_t *b, nmc_diags_t *d)
{
    const nmc_model_config_t *g = &m->cfg;
    if (b->B <= 0 || b->T <= 0 || !b->input_ids || !b->labels || !b->positions || !b->doc_start)
        return bad_batch(d, "empty batch or missing arrays", 0, (long)b->B * b->T);
    int64_t wide = g->intermediate_size > g->hidden_size ? g->intermediate_size : g->hidden_size;
    if (g->num_heads * g->head_dim > wide) wide = g->num_heads * g->head_dim;
    /* [N, wide] activations are indexed in 32 bits; [N, V] logits never exist (the loss is
     * chunked; nmc_model_logits checks its own n x V) */
    if ((int64_t)b->B * b->T * wide >= INT32_MAX / 2)
        return bad_batch(d, "micro-batch too large for 32-bit kernel indexing", 0,
                         (long)b->B * b->T);
    if (g->sliding_window > 0 && b->T > g->sliding_window) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "model-sliding-window-unsupported", NULL,
                                     0, 0, 0, "rows of %d tokens exceed the model's sliding "
                                     "window of %lld, and nmc trains full attention only",
                                     b->T, (long long)g->sliding_window);
        nmc_diag_set_help(r, "use a max sequence length <= %lld", (long long)g->sliding_window);
        return -1;
    }
    long V = (long)g->vocab_size;
    for (long i = 0; i < (long)b->B * b->T; i++) {
        long t = i % b->T;
        if (b->input_ids[i] < 0 || b->input_ids[i] >= V)
            return bad_batch(d, "input id outside the vocabulary", i, b->input_ids[i]);
        if (b->labels[i] != NMC_IGNORE_INDEX && (b->labels[i] < 0 || b->labels[i] >= V))
            return bad_batch(d, "label outside the vocabulary (and not -100)", i, b->labels[i]);
        if (b->doc_start[i] < 0 || b->doc_start[i] > t)
            return bad_batch(d, "doc_start outside [0, row index]", i, b->doc_start[i]);
        if (b->positions[i] < 0) return bad_batch(d, "negative position", i, b->positions[i]);
    }
    return 0;
}

/* lm_head + CE costs the same for a row with an ignored label (prompt, padding) as for a
 * labelled one: on the CPU the labelled rows are gathered (m->ce_rows) and only they go
 * through it, when at least 1/64 of the rows are ignored (below that the gather, scatter
 * and zeroing of [N, D] cost about what they save). Rows are independent, so losses and
 * dx are the same; dW sums the same terms (ignored rows add exact zeros). The GPU device
 * keeps its own path (its dx is bf16, the scatter accumulates fp32). */
static int compact_rows(nmc_model_t *m, const nmc_batch_t *b)
{
    int N = b->B * b->T, n = 0;
    m->n_ce = -1;
    if (m->dev->kind != NMC_DEV_CPU) return 0;
    for (int i = 0; i < N; i++)
        if (b->labels[i] != NMC_IGNORE_INDEX) {
            m->ce_host[n] = i;
            m->ce_host[N + n++] = b->labels[i];
        }
    if ((int64_t)(N - n) * 64 < N) return 0;
    m->n_ce = n;
    CK(m->dev->upload(m->dev, m->ce_rows, m->ce_host, sizeof(int32_t) * (size_t)n));
    return m->dev->upload(m->dev, m->ce_labels, m->ce_host + N, sizeof(int32_t) * (size_t)n);
}

static int upload_batch(nmc_model_t *m, const nmc_batch_t *b, nmc_diags_t *d)
{
    if (check_batch(m, b, d) != 0 || nmc_model_ensure_acts(m, b->B, b->T, d) != 0) return -1;
    size_t bytes = (size_t)b->B * (size_t)b->T * sizeof(int32_t);
    nmc_dev_t *dev = m->dev;
    CK(dev->upload(dev, m->ids, b->input_ids, bytes));
    CK(dev->upload(dev, m->labels, b->labels, bytes));
    CK(dev->upload(dev, m->pos, b->positions, bytes));
    CK(dev->upload(dev, m->doc, b->doc_start, bytes));
    return compact_rows(m, b);
}

/* ---- linear + LoRA ------------------------------------------------------------------------ */

typedef struct {
    int N;
    bool train;        /* dropout active */
    uint64_t offset;   /* RNG counter of this call */
} pass_t;

static bool lora_drops(const nmc_model_t *m, const pass_t *ps)
{
    return ps->train && m->has_lora && m->lora.dropout > 0;
}

/* y = x W^T (+b) (+ scale * drop(x) A^T B^T); acc: y += instead of y =. */
static int lin_fwd(nmc_model_t *m, const nmc_lin_t *L, const void *x, void *y, void *lora_h,
                   int acc, const pass_t *ps)
{
    nmc_dev_t *dev = m->dev;
    int N = ps->N;
    CK(dev->matmul(dev, y, x, L->w->data, N, L->out, L->in, 0, 1, 1.0f, acc ? 1.0f : 0.0f));
    if (L->b) CK(dev->bias_fwd(dev, y, L->b->data, N, L->out));
    if (!L->A) return 0;
    const void *xl = x;
    if (lora_drops(m, ps)) {
        CK(dev->dropout_apply(dev, m->x_drop, x, (size_t)N * L->in, (float)m->lora.dropout,
                              m->opts.seed ^ L->drop_seed, ps->offset));
        xl = m->x_drop;
    }
    int r = m->lora.r;
    CK(dev->matmul(dev, lora_h, xl, L->A->data, N, r, L->in, 0, 1, 1.0f, 0.0f));
    CK(dev->matmul(dev, y, lora_h, L->Bm->data, N, L->out, r, 0, 1, L->scale, 1.0f));
    return 0;
}

/* Gradients of a linear: weight/bias/LoRA grads accumulated, dx = (or +=, acc) dL/dx;
 * dx == NULL: no input gradient (nothing below needs it). */
static int lin_bwd(nmc_model_t *m, const nmc_lin_t *L, const void *dy, const void *x,
                   const void *lora_h, void *dx, int acc, const pass_t *ps)
{
    nmc_dev_t *dev = m->dev;
    int N = ps->N, r = lora_r(m);
    if (L->w->trainable)
        CK(dev->matmul_f32c(dev, L->w->grad, dy, x, L->out, L->in, N, 1, 0, 1.0f, 1.0f));
    if (L->b && L->b->trainable) CK(dev->bias_bwd(dev, L->b->grad, dy, N, L->out));
    if (dx)
        CK(dev->matmul(dev, dx, dy, L->w->data, N, L->in, L->out, 0, 0, 1.0f, acc ? 1.0f : 0.0f));
    if (!L->A || (!dx && !L->A->trainable && !L->Bm->trainable)) return 0;
    bool drop = lora_drops(m, ps);
    uint64_t seed = m->opts.seed ^ L->drop_seed;
    float p = (float)m->lora.dropout;
    if (L->Bm->trainable)
        CK(dev->matmul_f32c(dev, L->Bm->grad, dy, lora_h, L->out, r, N, 1, 0, L->scale, 1.0f));
    if (!dx && !L->A->trainable) return 0;
    CK(dev->matmul(dev, m->d_lora, dy, L->Bm->data, N, r, L->out, 0, 0, L->scale, 0.0f));
    if (L->A->trainable) {
        const void *xl = x;
        if (drop) {
            CK(dev->dropout_apply(dev, m->x_drop, x, (size_t)N * L->in, p, seed, ps->offset));
            xl = m->x_drop;
        }
        CK(dev->matmul_f32c(dev, L->A->grad, m->d_lora, xl, r, L->in, N, 1, 0, 1.0f, 1.0f));
    }
    if (!dx) return 0;
    if (!drop) return dev->matmul(dev, dx, m->d_lora, L->A->data, N, L->in, r, 0, 0, 1.0f, 1.0f);
    CK(dev->matmul(dev, m->x_drop, m->d_lora, L->A->data, N, L->in, r, 0, 0, 1.0f, 0.0f));
    CK(dev->dropout_apply(dev, m->x_drop, m->x_drop, (size_t)N * L->in, p, seed, ps->offset));
    return dev->add_act(dev, dx, m->x_drop, (size_t)N * L->in, 1.0f);
}

/* ---- decoder layer ----------------------------------------------------------------------- */

static nmc_acts_t *acts_of(nmc_model_t *m, int l)
{
    if (!m->opts.recompute) return &m->acts[l];
    m->rc.x_in = m->acts[l].x_in;
    return &m->rc;
}

static void *layer_out(nmc_model_t *m, int l)
{
    return l + 1 < m->n_layers ? m->acts[l + 1].x_in : m->x_final;
}

static int layer_fwd(nmc_model_t *m, int l, const nmc_batch_t *b, const pass_t *ps)
{
    nmc_dev_t *dev = m->dev;
    const nmc_model_config_t *g = &m->cfg;
    nmc_layer_t *L = &m->layers[l];
    nmc_acts_t *a = acts_of(m, l);
    int N = ps->N, D = (int)g->hidden_size, F = (int)g->intermediate_size;
    int H = (int)g->num_heads, KVH = (int)g->num_kv_heads, hd = (int)g->head_dim;
    float eps = (float)g->rms_norm_eps;
    CK(dev->rmsnorm_fwd(dev, a->ln1, a->rstd1, a->x_in, L->ln1->data, N, D, eps));
    CK(lin_fwd(m, &L->lin[LIN_Q], a->ln1, g->qk_norm ? a->q_pre : a->q, a->lora_h[LIN_Q], 0, ps));
    CK(lin_fwd(m, &L->lin[LIN_K], a->ln1, g->qk_norm ? a->k_pre : a->k, a->lora_h[LIN_K], 0, ps));
    CK(lin_fwd(m, &L->lin[LIN_V], a->ln1, a->v, a->lora_h[LIN_V], 0, ps));
    if (g->qk_norm) {
        CK(dev->rmsnorm_fwd(dev, a->q, a->q_rstd, a->q_pre, L->qn->data, N * H, hd, eps));
        CK(dev->rmsnorm_fwd(dev, a->k, a->k_rstd, a->k_pre, L->kn->data, N * KVH, hd, eps));
    }
    CK(dev->rope_fwd(dev, a->q, m->pos, m->inv_freq, N, H, hd));
    CK(dev->rope_fwd(dev, a->k, m->pos, m->inv_freq, N, KVH, hd));
    CK(dev->attention_fwd(dev, a->att, a->lse, a->q, a->k, a->v, m->doc, b->B, b->T, H, KVH, hd,
                          1.0f / sqrtf((float)hd)));
    CK(dev->copy(dev, a->x_mid, a->x_in, (size_t)N * D * dev->act_size));
    CK(lin_fwd(m, &L->lin[LIN_O], a->att, a->x_mid, a->lora_h[LIN_O], 1, ps));
    CK(dev->rmsnorm_fwd(dev, a->ln2, a->rstd2, a->x_mid, L->ln2->data, N, D, eps));
    CK(lin_fwd(m, &L->lin[LIN_GATE], a->ln2, a->g, a->lora_h[LIN_GATE], 0, ps));
    CK(lin_fwd(m, &L->lin[LIN_UP], a->ln2, a->u, a->lora_h[LIN_UP], 0, ps));
    CK(dev->swiglu_fwd(dev, a->h, a->g, a->u, (size_t)N * F));
    void *out = layer_out(m, l);
    CK(dev->copy(dev, out, a->x_mid, (size_t)N * D * dev->act_size));
    return lin_fwd(m, &L->lin[LIN_DOWN], a->h, out, a->lora_h[LIN_DOWN], 1, ps);
}

static float *grad_of(nmc_param_t *p) { return p && p->trainable ? p->grad : NULL; }

/* In: m->d_res = dL/d(layer output). Out: m->d_res = dL/d(layer input) when need_dx;
 * else (nothing below needs it) the input gradient is not computed and d_res is stale. */
static int layer_bwd(nmc_model_t *m, int l, const nmc_batch_t *b, const pass_t *ps,
                     bool need_dx)
{
    nmc_dev_t *dev = m->dev;
    const nmc_model_config_t *g = &m->cfg;
    nmc_layer_t *L = &m->layers[l];
    if (m->opts.recompute) CK(layer_fwd(m, l, b, ps));
    nmc_acts_t *a = acts_of(m, l);
    int N = ps->N, D = (int)g->hidden_size, F = (int)g->intermediate_size;
    int H = (int)g->num_heads, KVH = (int)g->num_kv_heads, hd = (int)g->head_dim;
    size_t ND = (size_t)N * D;
    /* MLP */
    CK(lin_bwd(m, &L->lin[LIN_DOWN], m->d_res, a->h, a->lora_h[LIN_DOWN], m->d_h, 0, ps));
    CK(dev->swiglu_bwd(dev, m->d_g, m->d_u, m->d_h, a->g, a->u, (size_t)N * F));
    CK(lin_bwd(m, &L->lin[LIN_GATE], m->d_g, a->ln2, a->lora_h[LIN_GATE], m->d_a, 0, ps));
    CK(lin_bwd(m, &L->lin[LIN_UP], m->d_u, a->ln2, a->lora_h[LIN_UP], m->d_a, 1, ps));
    CK(dev->rmsnorm_bwd(dev, m->d_b, grad_of(L->ln2), m->d_a, a->x_mid, L->ln2->data, a->rstd2, N, D));
    CK(dev->add_act(dev, m->d_res, m->d_b, ND, 1.0f));
    /* attention */
    CK(lin_bwd(m, &L->lin[LIN_O], m->d_res, a->att, a->lora_h[LIN_O], m->d_att, 0, ps));
    CK(dev->attention_bwd(dev, m->d_q, m->d_k, m->d_v, m->d_att, a->att, a->lse, a->q, a->k,
                          a->v, m->doc, b->B, b->T, H, KVH, hd, 1.0f / sqrtf((float)hd)));
    CK(dev->rope_bwd(dev, m->d_q, m->pos, m->inv_freq, N, H, hd));
    CK(dev->rope_bwd(dev, m->d_k, m->pos, m->inv_freq, N, KVH, hd));
    void *dq = m->d_q, *dk = m->d_k;
    if (g->qk_norm) {
        CK(dev->rmsnorm_bwd(dev, m->d_q2, grad_of(L->qn), m->d_q, a->q_pre, L->qn->data, a->q_rstd, N * H, hd));
        CK(dev->rmsnorm_bwd(dev, m->d_k2, grad_of(L->kn), m->d_k, a->k_pre, L->kn->data, a->k_rstd, N * KVH, hd));
        dq = m->d_q2;
        dk = m->d_k2;
    }
    /* the input_layernorm's input gradient also feeds its weight gradient */
    void *d_ln1 = need_dx || grad_of(L->ln1) ? m->d_a : NULL;
    CK(lin_bwd(m, &L->lin[LIN_Q], dq, a->ln1, a->lora_h[LIN_Q], d_ln1, 0, ps));
    CK(lin_bwd(m, &L->lin[LIN_K], dk, a->ln1, a->lora_h[LIN_K], d_ln1, 1, ps));
    CK(lin_bwd(m, &L->lin[LIN_V], m->d_v, a->ln1, a->lora_h[LIN_V], d_ln1, 1, ps));
    if (!d_ln1) return 0;
    CK(dev->rmsnorm_bwd(dev, m->d_b, grad_of(L->ln1), m->d_a, a->x_in, L->ln1->data, a->rstd1, N, D));
    return need_dx ? dev->add_act(dev, m->d_res, m->d_b, ND, 1.0f) : 0;
}

/* ---- whole model -------------------------------------------------------------------------- */

static int embed_fwd(nmc_model_t *m, const nmc_batch_t *b, const pass_t *ps)
{
    nmc_dev_t *dev = m->dev;
    int N = ps->N, D = (int)m->cfg.hidden_size;
    void *x0 = m->n_layers ? m->acts[0].x_in : m->x_final;
    CK(dev->embedding_fwd(dev, x0, m->ids, m->embed->data, N, D));
    if (ps->train && m->opts.neftune_alpha > 0) {
        /* transformers' neftune_post_forward_hook: uniform(-mag, mag), mag = alpha/sqrt(T*D) */
        float mag = m->opts.neftune_alpha / sqrtf((float)b->T * (float)D);
        CK(dev->add_uniform_noise(dev, x0, (size_t)N * D, mag, m->opts.seed ^ 0x4E4546ull,
                                  ps->offset));
    }
    return 0;
}

static int forward(nmc_model_t *m, const nmc_batch_t *b, const pass_t *ps)
{
    CK(embed_fwd(m, b, ps));
    for (int l = 0; l < m->n_layers; l++) CK(layer_fwd(m, l, b, ps));
    return m->dev->rmsnorm_fwd(m->dev, m->lnf, m->rstd_f, m->x_final, m->final_norm->data, ps->N,
                               (int)m->cfg.hidden_size, (float)m->cfg.rms_norm_eps);
}

/* Lowest layer whose backward is needed: everything below it is frozen. */
static int lowest_trainable_layer(const nmc_model_t *m)
{
    if (m->embed->trainable) return 0;
    int lo = m->n_layers;
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].trainable && m->params[i].layer >= 0 && m->params[i].layer < lo)
            lo = m->params[i].layer;
    return lo;
}

static int dev_error(nmc_model_t *m, nmc_diags_t *d)
{
    nmc_diag_add(d, NMC_SEV_ERROR, "model-device-error", NULL, 0, 0, 0, "%s: %s",
                 m->dev->name, m->dev->last_error(m->dev));
    return -1;
}

static int64_t count_labels(const nmc_batch_t *b)
{
    int64_t n = 0;
    for (long i = 0; i < (long)b->B * b->T; i++) n += b->labels[i] != NMC_IGNORE_INDEX;
    return n;
}

/* Loss into m->loss_dev; bwd: dL/d(lnf) into m->d_a (and the lm_head's dW). */
static int run_loss(nmc_model_t *m, const pass_t *ps, bool bwd, float grad_scale)
{
    nmc_dev_t *dev = m->dev;
    const nmc_model_config_t *g = &m->cfg;
    int D = (int)g->hidden_size, n = m->n_ce;
    CK(dev->zero(dev, m->loss_dev, sizeof(double)));
    if (n >= 0) { /* labelled rows only (compact_rows): x gathered into d_b, dx in d_res */
        CK(dev->embedding_fwd(dev, m->d_b, m->ce_rows, m->lnf, n, D));
        CK(dev->lmhead_ce(dev, m->loss_dev, bwd ? m->d_res : NULL,
                          bwd ? grad_of(m->lm_head) : NULL, m->d_b, m->lm_head->data,
                          m->ce_labels, n, D, (int)g->vocab_size, m->opts.label_smoothing,
                          grad_scale, m->opts.ce_chunk));
        if (!bwd) return 0;
        CK(dev->zero(dev, m->d_a, (size_t)ps->N * D * dev->act_size));
        return dev->embedding_bwd(dev, m->d_a, m->d_res, m->ce_rows, n, D);
    }
    return dev->lmhead_ce(dev, m->loss_dev, bwd ? m->d_a : NULL, bwd ? grad_of(m->lm_head) : NULL,
                          m->lnf, m->lm_head->data, m->labels, ps->N, (int)g->hidden_size,
                          (int)g->vocab_size, m->opts.label_smoothing, grad_scale,
                          m->opts.ce_chunk);
}

static int fwd_bwd(nmc_model_t *m, const nmc_batch_t *b, float grad_scale, const pass_t *ps)
{
    nmc_dev_t *dev = m->dev;
    int N = ps->N, D = (int)m->cfg.hidden_size;
    CK(forward(m, b, ps));
    CK(run_loss(m, ps, true, grad_scale));
    CK(dev->rmsnorm_bwd(dev, m->d_res, grad_of(m->final_norm), m->d_a, m->x_final,
                        m->final_norm->data, m->rstd_f, N, D));
    int lo = lowest_trainable_layer(m);
    /* the lowest layer's input gradient is needed only by a trainable embedding */
    for (int l = m->n_layers - 1; l >= lo; l--)
        CK(layer_bwd(m, l, b, ps, l > lo || m->embed->trainable));
    if (m->embed->trainable) CK(dev->embedding_bwd(dev, m->embed->grad, m->d_res, m->ids, N, D));
    return 0;
}

static uint64_t rng_advance(nmc_model_t *m, int N)
{
    uint64_t off = m->rng_offset;
    int64_t wide = m->cfg.intermediate_size > m->cfg.hidden_size ? m->cfg.intermediate_size : m->cfg.hidden_size;
    if (m->cfg.num_heads * m->cfg.head_dim > wide) wide = m->cfg.num_heads * m->cfg.head_dim;
    m->rng_offset += (uint64_t)N * (uint64_t)wide; /* every draw of one call stays below this */
    return off;
}

int nmc_model_fwd_bwd(nmc_model_t *m, const nmc_batch_t *b, float grad_scale,
                      double *loss_sum, int64_t *n_tokens, nmc_diags_t *d)
{
    *loss_sum = 0;
    *n_tokens = 0;
    if (upload_batch(m, b, d) != 0) return -1;
    pass_t ps = {b->B * b->T, true, rng_advance(m, b->B * b->T)};
    if (fwd_bwd(m, b, grad_scale, &ps) != 0 ||
        m->dev->download(m->dev, loss_sum, m->loss_dev, sizeof(double)) != 0)
        return dev_error(m, d);
    *n_tokens = count_labels(b);
    return 0;
}

int nmc_model_eval(nmc_model_t *m, const nmc_batch_t *b, double *loss_sum, int64_t *n_tokens,
                   nmc_diags_t *d)
{
    *loss_sum = 0;
    *n_tokens = 0;
    if (upload_batch(m, b, d) != 0) return -1;
    pass_t ps = {b->B * b->T, false, 0};
    if (forward(m, b, &ps) != 0 || run_loss(m, &ps, false, 1.0f) != 0 ||
        m->dev->download(m->dev, loss_sum, m->loss_dev, sizeof(double)) != 0)
        return dev_error(m, d);
    *n_tokens = count_labels(b);
    return 0;
}

int nmc_model_logits(nmc_model_t *m, const nmc_batch_t *b, int tok_begin, int n, float *out,
                     nmc_diags_t *d)
{
    if (tok_begin < 0 || n <= 0 || (int64_t)tok_begin + n > (int64_t)b->B * b->T) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "model-logits-range", NULL, 0, 0, 0,
                                     "token range [%d, %d) is outside the batch", tok_begin,
                                     tok_begin + n);
        nmc_diag_set_expected(r, "a range inside [0, %d)", b->B * b->T);
        return -1;
    }
    if ((int64_t)n * m->cfg.vocab_size >= INT32_MAX / 2) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "model-logits-range", NULL, 0, 0, 0,
                                     "%d tokens x vocabulary %lld logits exceed 32-bit "
                                     "kernel indexing", n, (long long)m->cfg.vocab_size);
        nmc_diag_set_help(r, "ask for fewer tokens per call");
        return -1;
    }
    if (upload_batch(m, b, d) != 0) return -1;
    nmc_dev_t *dev = m->dev;
    int D = (int)m->cfg.hidden_size, V = (int)m->cfg.vocab_size;
    if (n > m->cap_logits) {
        dev->free(dev, m->logits);
        m->cap_logits = 0;
        if (!(m->logits = dev->alloc(dev, (size_t)n * V * dev->act_size))) return dev_error(m, d);
        m->cap_logits = n;
    }
    pass_t ps = {b->B * b->T, false, 0};
    if (forward(m, b, &ps) != 0 ||
        dev->matmul(dev, m->logits, AP(m, m->lnf, (size_t)tok_begin * D), m->lm_head->data, n, V,
                    D, 0, 1, 1.0f, 0.0f) != 0 ||
        dev->download_f32(dev, out, m->logits, dev->act, (size_t)n * V) != 0)
        return dev_error(m, d);
    return 0;
}
