/* tokenizer_encode.c — the encode pipeline, in HF's order:
 *   1. split out added tokens whose normalized=false, on the raw text
 *   2. normalize each remaining piece, then split out normalized added tokens
 *   3. pre-tokenize the remaining pieces (tokenizer_pretok.c)
 *   4. BPE each piece (with a per-encoder cache of words), token pieces pass through
 *   5. add the template's special tokens when asked
 * and the per-thread encoder that owns the scratch memory.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

/* Words up to this many bytes are cached (HF: MAX_LENGTH 256), at most this many of them
 * (HF: 10 000 per thread); beyond that words are merged every time. */
#define CACHE_MAX_WORD 256
#define CACHE_MAX_WORDS 50000

typedef struct {
    int32_t c;
    int32_t prev, next;
    uint32_t len; /* 0: merged away */
} sym_t;

typedef struct {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
} hitem_t;

typedef struct {
    uint32_t off, n;
} cache_ent_t;

struct nmc_tok_encoder {
    const nmc_tokenizer_t *t;
    tok_pieces_t a, b, tmp;
    sym_t *sym;
    size_t sym_cap;
    hitem_t *heap;
    size_t heap_n, heap_cap;
    /* word cache: word -> ent[i] -> pool[off..off+n) */
    tok_hmap_t cache;
    nmc_arena_t *cache_arena;
    cache_ent_t *ent;
    size_t n_ent, ent_cap;
    int32_t *pool;
    size_t pool_n, pool_cap;
};

static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    p = realloc(p, c * elem);
    if (!p) abort(); /* out of memory: arena.h's policy */
    *cap = c;
    return p;
}

static void ids_push(nmc_tok_ids_t *v, int32_t id) {
    v->ids = grow(v->ids, &v->cap, v->n + 1, sizeof *v->ids);
    v->ids[v->n++] = id;
}

void nmc_tok_ids_free(nmc_tok_ids_t *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* ---- added tokens ----------------------------------------------------------------------- */
static unsigned flags_before(const char *s, size_t end) {
    size_t i = end;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
    if (i > 0) i--;
    size_t k;
    return nmc_uni_flags(nmc_utf8_get((const unsigned char *)s + i, end - i, &k));
}

static size_t ws_back(const char *s, size_t end) { /* start of the whitespace run ending at end */
    while (end > 0) {
        size_t i = end;
        while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
        if (i > 0) i--;
        size_t k;
        if (!(nmc_uni_flags(nmc_utf8_get((const unsigned char *)s + i, end - i, &k)) & NMC_UNI_WS)) break;
        end = i;
    }
    return end;
}

static size_t ws_fwd(const char *s, size_t i, size_t n) {
    while (i < n) {
        size_t k;
        if (!(nmc_uni_flags(nmc_utf8_get((const unsigned char *)s + i, n - i, &k)) & NMC_UNI_WS)) break;
        i += k;
    }
    return i;
}

/* Longest pattern of ms starting at s[i..n), or -1. */
static int32_t longest_at(const nmc_tokenizer_t *t, const tok_matchset_t *ms, const char *s,
                          size_t i, size_t n) {
    unsigned b = (unsigned char)s[i];
    for (uint32_t k = ms->start[b]; k < ms->start[b + 1]; k++) {
        const tok_added_t *at = &t->added[ms->idx[k]];
        if (at->plen <= n - i && memcmp(s + i, at->pattern, at->plen) == 0) return (int32_t)ms->idx[k];
    }
    return -1;
}

/* HF AddedVocabulary::find_matches + split_with_indices: leftmost-longest matches, filtered
 * by single_word, widened by lstrip/rstrip; the pieces between go on as text. */
static void split_added(const nmc_tokenizer_t *t, const tok_matchset_t *ms, const char *s, size_t n,
                        bool orig0, tok_pieces_t *out) {
    if (n == 0) return;
    if (ms->n == 0) {
        tok_pieces_push(out, s, n, -1, orig0);
        return;
    }
    size_t start_offset = 0, i = 0;
    while (i < n) {
        int32_t k = longest_at(t, ms, s, i, n);
        if (k < 0) { i++; continue; }
        const tok_added_t *at = &t->added[k];
        size_t start = i, stop = i + at->plen;
        i = stop;
        if (at->single_word) {
            bool start_space = start == 0 || !(flags_before(s, start) & NMC_UNI_W);
            size_t kk;
            bool stop_space = stop == n ||
                !(nmc_uni_flags(nmc_utf8_get((const unsigned char *)s + stop, n - stop, &kk)) & NMC_UNI_W);
            if (!start_space || !stop_space) continue;
        }
        if (at->lstrip) {
            size_t ns = ws_back(s, start);
            start = ns > start_offset ? ns : start_offset;
        }
        if (at->rstrip) stop = ws_fwd(s, stop, n);
        if (start_offset < start) tok_pieces_push(out, s + start_offset, start - start_offset, -1,
                                                  orig0 && start_offset == 0);
        tok_pieces_push(out, s + start, stop - start, at->id, false);
        start_offset = stop;
    }
    if (start_offset != n)
        tok_pieces_push(out, s + start_offset, n - start_offset, -1, orig0 && start_offset == 0);
}

/* ---- BPE -------------------------------------------------------------------------------- */
static const tok_merge_t *merge_get(const nmc_tokenizer_t *t, int32_t a, int32_t b) {
    if (!t->merge_cap) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = t->merge_cap - 1, i = (size_t)(h >> 32) & mask;
    for (;;) {
        const tok_merge_t *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
        i = (i + 1) & mask;
    }
}

static bool hless(hitem_t x, hitem_t y) { return x.rank != y.rank ? x.rank < y.rank : x.pos < y.pos; }

static void heap_push(nmc_tok_encoder_t *e, hitem_t it) {
    e->heap = grow(e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap);
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(it, e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = it;
}

static hitem_t heap_pop(nmc_tok_encoder_t *e) {
    hitem_t top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        hitem_t best = last;
        if (l < n && hless(e->heap[l], best)) { m = l; best = e->heap[l]; }
        if (r < n && hless(e->heap[r], best)) m = r;
        if (m == i) break;
        e->heap[i] = e->heap[m];
        i = m;
    }
    if (n) e->heap[i] = last;
    return top;
}

static size_t sym_add(nmc_tok_encoder_t *e, size_t n, int32_t c, uint32_t len) {
    e->sym = grow(e->sym, &e->sym_cap, n + 1, sizeof *e->sym);
    if (n) e->sym[n - 1].next = (int32_t)n;
    e->sym[n] = (sym_t){c, (int32_t)n - 1, -1, len};
    return n + 1;
}

/* HF Word::merge_all: lowest (rank, position) first; stale queue entries are skipped by
 * checking that the pair still merges into the same id. */
static void merge_all(nmc_tok_encoder_t *e, size_t n) {
    const nmc_tokenizer_t *t = e->t;
    sym_t *s = e->sym;
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const tok_merge_t *m = merge_get(t, s[i].c, s[i + 1].c);
        if (m) heap_push(e, (hitem_t){m->rank, (uint32_t)i, m->new_id});
    }
    while (e->heap_n) {
        hitem_t top = heap_pop(e);
        sym_t *cur = &s[top.pos];
        if (cur->len == 0 || cur->next == -1) continue;
        sym_t right = s[cur->next];
        const tok_merge_t *m = merge_get(t, cur->c, right.c);
        if (!m || m->new_id != top.new_id) continue;
        s[cur->next].len = 0;
        cur->c = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next > -1 && (size_t)right.next < n) s[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            m = merge_get(t, s[cur->prev].c, cur->c);
            if (m) heap_push(e, (hitem_t){m->rank, (uint32_t)cur->prev, m->new_id});
        }
        if (cur->next >= 0 && (size_t)cur->next < n) {
            m = merge_get(t, cur->c, s[cur->next].c);
            if (m) heap_push(e, (hitem_t){m->rank, top.pos, m->new_id});
        }
    }
}

/* HF BPE::merge_word (without continuing_subword_prefix / end_of_word_suffix, refused at
 * load): one symbol per char, byte fallback, unk (fused when fuse_unk), then merges. */
static size_t initial_symbols(nmc_tok_encoder_t *e, const char *w, size_t len) {
    const nmc_tokenizer_t *t = e->t;
    size_t n = 0, i = 0;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    while (i < len) {
        size_t k = nmc_utf8_len((unsigned char)w[i]);
        int32_t id = tok_hmap_get(&t->vocab, w + i, k);
        if (id >= 0) {
            if (unk >= 0) { n = sym_add(e, n, unk, unk_len); unk = -1; }
            n = sym_add(e, n, id, (uint32_t)k);
        } else {
            bool done = false;
            if (t->byte_fallback) {
                done = true;
                for (size_t j = 0; j < k; j++)
                    if (t->byte_id[(unsigned char)w[i + j]] < 0) done = false;
                if (done)
                    for (size_t j = 0; j < k; j++) n = sym_add(e, n, t->byte_id[(unsigned char)w[i + j]], 1);
            }
            if (!done && t->unk_id >= 0) {
                if (unk >= 0 && t->fuse_unk) unk_len += (uint32_t)k;
                else {
                    if (unk >= 0) n = sym_add(e, n, unk, unk_len);
                    unk = t->unk_id;
                    unk_len = (uint32_t)k;
                }
            }
        }
        i += k;
    }
    if (unk >= 0) n = sym_add(e, n, unk, unk_len);
    return n;
}

static void cache_put(nmc_tok_encoder_t *e, const char *w, size_t len, const nmc_tok_ids_t *out,
                      size_t from) {
    if (len > CACHE_MAX_WORD || e->n_ent >= CACHE_MAX_WORDS) return;
    size_t cnt = out->n - from;
    e->ent = grow(e->ent, &e->ent_cap, e->n_ent + 1, sizeof *e->ent);
    e->pool = grow(e->pool, &e->pool_cap, e->pool_n + cnt, sizeof *e->pool);
    if (cnt) memcpy(e->pool + e->pool_n, out->ids + from, cnt * sizeof *e->pool);
    e->ent[e->n_ent] = (cache_ent_t){(uint32_t)e->pool_n, (uint32_t)cnt};
    e->pool_n += cnt;
    char *key = nmc_arena_strndup(e->cache_arena, w, len);
    tok_hmap_put(&e->cache, key, len, (int32_t)e->n_ent++);
}

static void bpe_word(nmc_tok_encoder_t *e, const char *w, size_t len, nmc_tok_ids_t *out) {
    const nmc_tokenizer_t *t = e->t;
    if (t->ignore_merges) {
        int32_t id = tok_hmap_get(&t->vocab, w, len);
        if (id >= 0) { ids_push(out, id); return; }
    }
    int32_t c = tok_hmap_get(&e->cache, w, len);
    if (c >= 0) {
        cache_ent_t ce = e->ent[c];
        if (!ce.n) return;
        out->ids = grow(out->ids, &out->cap, out->n + ce.n, sizeof *out->ids);
        memcpy(out->ids + out->n, e->pool + ce.off, ce.n * sizeof *out->ids);
        out->n += ce.n;
        return;
    }
    size_t n = initial_symbols(e, w, len), from = out->n;
    merge_all(e, n);
    for (size_t i = 0; i < n; i++)
        if (e->sym[i].len) ids_push(out, e->sym[i].c);
    cache_put(e, w, len, out, from);
}

/* ---- the encoder ------------------------------------------------------------------------ */
nmc_tok_encoder_t *nmc_tok_encoder_new(const nmc_tokenizer_t *t) {
    nmc_tok_encoder_t *e = calloc(1, sizeof *e);
    if (!e) abort();
    e->t = t;
    e->cache_arena = nmc_arena_new();
    return e;
}

void nmc_tok_encoder_free(nmc_tok_encoder_t *e) {
    if (!e) return;
    free(e->a.p);
    free(e->b.p);
    free(e->tmp.p);
    free(e->sym);
    free(e->heap);
    tok_hmap_free(&e->cache);
    nmc_arena_free(e->cache_arena);
    free(e->ent);
    free(e->pool);
    free(e);
}

int nmc_tok_encode(nmc_tok_encoder_t *e, const char *text, size_t len, bool add_special_tokens,
                   nmc_tok_ids_t *out, nmc_diags_t *diags) {
    const nmc_tokenizer_t *t = e->t;
    size_t bad;
    out->n = 0;
    if (!nmc_utf8_valid(text, len, &bad)) {
        if (diags) {
            nmc_diag_t *r = nmc_diag_add(diags, NMC_SEV_ERROR, "tokenizer-invalid-utf8", NULL, 0, 0,
                                         bad, "text to encode is not valid UTF-8 at byte %zu", bad);
            nmc_diag_set_help(r, "decode the source as UTF-8 (or repair it) before tokenizing");
        }
        return -1;
    }
    nmc_arena_t *a = nmc_arena_new();
    e->a.n = e->b.n = 0;
    split_added(t, &t->raw_set, text, len, true, &e->a);
    for (size_t i = 0; i < e->a.n; i++) {
        tok_piece_t p = e->a.p[i];
        if (p.id >= 0) { tok_pieces_push(&e->b, p.s, p.len, p.id, false); continue; }
        size_t n;
        const char *s = tok_normalize(t, a, p.s, p.len, &n);
        split_added(t, &t->norm_set, s, n, p.orig0, &e->b);
    }
    tok_pretokenize(t, a, &e->b, &e->tmp);
    if (add_special_tokens)
        for (size_t i = 0; i < t->n_tmpl_pre; i++) ids_push(out, t->tmpl_pre[i]);
    for (size_t i = 0; i < e->b.n; i++) {
        tok_piece_t p = e->b.p[i];
        if (p.id >= 0) ids_push(out, p.id);
        else if (p.len) bpe_word(e, p.s, p.len, out);
    }
    if (add_special_tokens)
        for (size_t i = 0; i < t->n_tmpl_post; i++) ids_push(out, t->tmpl_post[i]);
    nmc_arena_free(a);
    return 0;
}

int nmc_tokenizer_encode(const nmc_tokenizer_t *t, const char *text, size_t len,
                         bool add_special_tokens, nmc_tok_ids_t *out, nmc_diags_t *diags) {
    nmc_tok_encoder_t *e = nmc_tok_encoder_new(t);
    int rc = nmc_tok_encode(e, text, len, add_special_tokens, out, diags);
    nmc_tok_encoder_free(e);
    return rc;
}
