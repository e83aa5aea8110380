/* dataset_iter.c — epochs of micro-batches (runtime/batch.h) for one data-parallel rank.
 *
 * Order: the split's units (samples, or packed rows) in file/packing order, shuffled for the
 * training split when opts.shuffle is set with a Fisher-Yates shuffle driven by splitmix64
 * seeded from (seed, epoch) — the same order on every run and every rank. Sharding follows
 * torch's DistributedSampler: the order is padded to a multiple of `world` by repeating its
 * first units, and rank r takes positions r, r+world, r+2·world, ... A micro-batch takes the
 * next micro_batch_size units of the rank; the last one of an epoch may be shorter
 * (drop_last=False, HF Trainer's default). Rows are T long: pack_size when packing, else the
 * longest sample of the micro-batch (right padding with the pad id).
 */
#include "dataset_int.h"
#include <stdlib.h>
#include <string.h>

struct nmc_dataset_iter {
    const nmc_dataset_t *ds;
    nmc_dataset_split_t split;
    int B, rank, world;
    int64_t epoch, pos;
    int64_t per;           /* units of this rank per epoch */
    int64_t *order;        /* this rank's units for order_epoch */
    int64_t order_epoch;   /* -1: not computed */
    int32_t *ids, *labels, *positions, *doc_start;
    size_t cap;            /* elements of the four arrays */
    int32_t *s_ids;        /* one sample */
    uint8_t *s_mask;
    size_t s_cap;
};

nmc_dataset_iter_t *nmc_dataset_iter_new(const nmc_dataset_t *ds, nmc_dataset_split_t s, int micro_batch_size,
                                         int rank, int world)
{
    if (micro_batch_size < 1 || world < 1 || rank < 0 || rank >= world) return NULL;
    nmc_dataset_iter_t *it = calloc(1, sizeof *it);
    if (!it) abort();
    it->ds = ds, it->split = s, it->B = micro_batch_size, it->rank = rank, it->world = world;
    int64_t n = ds_units(ds, s);
    it->per = n ? (n + world - 1) / world : 0;
    it->order = malloc((size_t)(it->per ? it->per : 1) * sizeof *it->order);
    if (!it->order) abort();
    it->order_epoch = -1;
    return it;
}

void nmc_dataset_iter_free(nmc_dataset_iter_t *it)
{
    if (!it) return;
    free(it->order);
    free(it->ids), free(it->labels), free(it->positions), free(it->doc_start);
    free(it->s_ids), free(it->s_mask);
    free(it);
}

void nmc_dataset_iter_seek(nmc_dataset_iter_t *it, int64_t epoch, int64_t position)
{
    it->epoch = epoch < 0 ? 0 : epoch;
    it->pos = position < 0 ? 0 : position > it->per ? it->per : position;
}

nmc_dataset_pos_t nmc_dataset_iter_tell(const nmc_dataset_iter_t *it)
{
    nmc_dataset_pos_t p = {it->epoch, it->pos};
    return p;
}

int64_t nmc_dataset_iter_units(const nmc_dataset_iter_t *it) { return it->per; }
int64_t nmc_dataset_iter_batches(const nmc_dataset_iter_t *it) { return (it->per + it->B - 1) / it->B; }

static void compute_order(nmc_dataset_iter_t *it)
{
    if (it->order_epoch == it->epoch) return;
    int64_t n = ds_units(it->ds, it->split);
    int64_t *perm = malloc((size_t)(n ? n : 1) * sizeof *perm);
    if (!perm) abort();
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (it->split == NMC_DS_TRAIN && ds_opts(it->ds)->shuffle) {
        uint64_t st = ds_opts(it->ds)->seed;
        st = ds_splitmix64(&st) ^ ((uint64_t)it->epoch * 0xd1b54a32d192ed03ull);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(ds_splitmix64(&st) % (uint64_t)(i + 1));
            int64_t x = perm[i];
            perm[i] = perm[j], perm[j] = x;
        }
    }
    for (int64_t k = 0; k < it->per; k++) it->order[k] = perm[(it->rank + k * it->world) % n];
    free(perm);
    it->order_epoch = it->epoch;
}

const int64_t *nmc_dataset_iter_order(nmc_dataset_iter_t *it)
{
    compute_order(it);
    return it->order;
}

static void reserve(nmc_dataset_iter_t *it, size_t n)
{
    if (n <= it->cap) return;
    it->ids = realloc(it->ids, n * sizeof(int32_t));
    it->labels = realloc(it->labels, n * sizeof(int32_t));
    it->positions = realloc(it->positions, n * sizeof(int32_t));
    it->doc_start = realloc(it->doc_start, n * sizeof(int32_t));
    if (!it->ids || !it->labels || !it->positions || !it->doc_start) abort();
    it->cap = n;
}

static void reserve_sample(nmc_dataset_iter_t *it, size_t n)
{
    if (n <= it->s_cap) return;
    it->s_ids = realloc(it->s_ids, n * sizeof(int32_t));
    it->s_mask = realloc(it->s_mask, n);
    if (!it->s_ids || !it->s_mask) abort();
    it->s_cap = n;
}

/* Fill row r (T tokens at base) with the samples of unit u; returns -1 on a read error. */
static int fill_row(nmc_dataset_iter_t *it, int64_t u, int T, size_t base, nmc_batch_t *b, nmc_diags_t *d)
{
    const int64_t *mem;
    int64_t k;
    ds_unit(it->ds, it->split, u, &mem, &k);
    int c = 0;
    for (int64_t m = 0; m < k; m++) {
        int64_t L = ds_sample_len(it->ds, it->split, mem[m]);
        reserve_sample(it, (size_t)L);
        if (ds_read_sample(it->ds, it->split, mem[m], it->s_ids, it->s_mask, d) != 0) return -1;
        for (int64_t j = 0; j < L; j++) {
            size_t i = base + (size_t)c + (size_t)j;
            b->input_ids[i] = it->s_ids[j];
            bool lab = j + 1 < L && it->s_mask[j + 1];
            b->labels[i] = lab ? it->s_ids[j + 1] : NMC_IGNORE_INDEX;
            b->n_label_tokens += lab;
            b->positions[i] = (int32_t)j;
            b->doc_start[i] = c;
        }
        c += (int)L;
    }
    b->n_real_tokens += c;
    int32_t pad = ds_pad_id(it->ds);
    for (int j = c; j < T; j++) { /* padding: its own document, no labels */
        size_t i = base + (size_t)j;
        b->input_ids[i] = pad;
        b->labels[i] = NMC_IGNORE_INDEX;
        b->positions[i] = j - c;
        b->doc_start[i] = c;
    }
    return 0;
}

int nmc_dataset_iter_next(nmc_dataset_iter_t *it, nmc_batch_t *b, nmc_diags_t *d)
{
    memset(b, 0, sizeof *b);
    if (it->pos >= it->per) return 0;
    compute_order(it);
    int B = (int)(it->per - it->pos < it->B ? it->per - it->pos : it->B);
    const nmc_dataset_opts_t *o = ds_opts(it->ds);
    int64_t T = 0;
    if (o->packing) T = o->pack_size;
    else
        for (int r = 0; r < B; r++) {
            const int64_t *mem;
            int64_t k;
            ds_unit(it->ds, it->split, it->order[it->pos + r], &mem, &k);
            int64_t L = ds_sample_len(it->ds, it->split, mem[0]);
            if (L > T) T = L;
        }
    reserve(it, (size_t)B * (size_t)T);
    b->B = B, b->T = (int)T;
    b->input_ids = it->ids, b->labels = it->labels, b->positions = it->positions, b->doc_start = it->doc_start;
    b->first_sample = it->pos;
    for (int r = 0; r < B; r++)
        if (fill_row(it, it->order[it->pos + r], (int)T, (size_t)r * (size_t)T, b, d) != 0) return -1;
    it->pos += B;
    return 1;
}
