/* dataset_pack.c — best-fit-decreasing sequence packing, TRL's default strategy ("bfd"):
 * samples in order of decreasing length (ties: file order), each into the open bin whose free
 * space is the smallest that still fits it, else a new bin. Bins with the same free space are
 * used first-in first-out. A two-level bitset over free-space values finds the best fit in
 * O(cap / 4096) word scans at worst. Deterministic: no randomness, stable tie order.
 */
#include "dataset_int.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t len;
    int64_t idx;
} item_t;

static int by_len_desc(const void *pa, const void *pb)
{
    const item_t *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

typedef struct {
    uint64_t *l0, *l1;   /* bit s of l0: some bin has exactly s free; bit w of l1: l0[w] != 0 */
    size_t n0, n1;
} bits_t;

static void bit_set(bits_t *b, int64_t s, bool on)
{
    size_t w = (size_t)s >> 6;
    if (on) b->l0[w] |= 1ull << (s & 63);
    else b->l0[w] &= ~(1ull << (s & 63));
    if (b->l0[w]) b->l1[w >> 6] |= 1ull << (w & 63);
    else b->l1[w >> 6] &= ~(1ull << (w & 63));
}

/* Smallest set s >= from, or -1. */
static int64_t bit_find(const bits_t *b, int64_t from)
{
    size_t w = (size_t)from >> 6;
    if (w >= b->n0) return -1;
    uint64_t x = b->l0[w] & (~0ull << (from & 63));
    if (x) return (int64_t)(w * 64 + (size_t)__builtin_ctzll(x));
    size_t v = (w + 1) >> 6;
    if (v >= b->n1) return -1;
    uint64_t y = (w + 1) & 63 ? b->l1[v] & (~0ull << ((w + 1) & 63)) : b->l1[v];
    for (;;) {
        if (y) {
            size_t ww = v * 64 + (size_t)__builtin_ctzll(y);
            return (int64_t)(ww * 64 + (size_t)__builtin_ctzll(b->l0[ww]));
        }
        if (++v >= b->n1) return -1;
        y = b->l1[v];
    }
}

int64_t ds_pack_bfd(const uint32_t *len, int64_t n, int64_t cap, int64_t *bin_of)
{
    item_t *it = malloc((size_t)(n ? n : 1) * sizeof *it);
    bits_t b = {0};
    b.n0 = (size_t)(cap + 64) / 64;
    b.n1 = (b.n0 + 63) / 64;
    b.l0 = calloc(b.n0, 8);
    b.l1 = calloc(b.n1, 8);
    int64_t *head = malloc((size_t)(cap + 1) * sizeof *head), *tail = malloc((size_t)(cap + 1) * sizeof *tail);
    int64_t *next = malloc((size_t)(n ? n : 1) * sizeof *next), *space = malloc((size_t)(n ? n : 1) * sizeof *space);
    if (!it || !b.l0 || !b.l1 || !head || !tail || !next || !space) abort();
    for (int64_t s = 0; s <= cap; s++) head[s] = tail[s] = -1;
    for (int64_t i = 0; i < n; i++) it[i].len = len[i], it[i].idx = i;
    qsort(it, (size_t)n, sizeof *it, by_len_desc);
    int64_t bins = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t l = it[k].len, s = bit_find(&b, l), bin;
        if (s < 0) {
            bin = bins++;
            space[bin] = cap;
        } else {
            bin = head[s]; /* pop the oldest bin with s free */
            head[s] = next[bin];
            if (head[s] < 0) tail[s] = -1, bit_set(&b, s, false);
        }
        bin_of[it[k].idx] = bin;
        space[bin] -= l;
        int64_t f = space[bin];
        if (f > 0) { /* append to the FIFO of bins with f free */
            next[bin] = -1;
            if (tail[f] >= 0) next[tail[f]] = bin;
            else head[f] = bin, bit_set(&b, f, true);
            tail[f] = bin;
        }
    }
    free(it), free(b.l0), free(b.l1), free(head), free(tail), free(next), free(space);
    return bins;
}
