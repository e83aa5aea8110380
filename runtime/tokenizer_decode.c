/* tokenizer_decode.c — ids back to text, as HF's Tokenizer::decode: ids -> token strings
 * (added tokens first, special ones dropped when asked), the decoder chain over the list of
 * strings (each HF decoder's decode_chain), then the pieces joined. Without a decoder the
 * tokens are joined with spaces, as HF does.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

typedef struct {
    char *s;
    size_t n;
} dstr_t;

typedef struct {
    dstr_t *v;
    size_t n, cap;
} dlist_t;

static void dl_push(dlist_t *l, nmc_arena_t *a, const char *s, size_t n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) abort(); /* out of memory: arena.h's policy */
    }
    l->v[l->n++] = (dstr_t){nmc_arena_strndup(a, s, n), n};
}

/* ByteLevel: each token's chars back to bytes (a token with a char outside the map keeps its
 * own bytes), everything concatenated, then Rust's from_utf8_lossy. */
static void dec_bytelevel(const tok_bytemap_t *m, dlist_t *in, dlist_t *out, nmc_arena_t *a) {
    nmc_ubuf_t raw = {0}, fixed = {0};
    for (size_t i = 0; i < in->n; i++) {
        const unsigned char *s = (const unsigned char *)in->v[i].s;
        size_t n = in->v[i].n, start = raw.n, j = 0;
        bool ok = true;
        while (j < n) {
            size_t k;
            uint32_t c = nmc_utf8_get(s + j, n - j, &k);
            int b = c < sizeof m->rev / sizeof m->rev[0] ? m->rev[c] : -1;
            if (b < 0) { ok = false; break; }
            char byte = (char)b;
            nmc_ubuf_append(&raw, &byte, 1);
            j += k;
        }
        if (!ok) {
            raw.n = start;
            nmc_ubuf_append(&raw, (const char *)s, n);
        }
    }
    nmc_utf8_lossy(raw.p ? raw.p : "", raw.n, &fixed);
    dl_push(out, a, fixed.p ? fixed.p : "", fixed.n);
    nmc_ubuf_free(&raw);
    nmc_ubuf_free(&fixed);
}

static void dec_replace(const tok_dec_t *d, dlist_t *in, dlist_t *out, nmc_arena_t *a) {
    for (size_t i = 0; i < in->n; i++) {
        nmc_ubuf_t b = {0};
        const char *s = in->v[i].s;
        size_t n = in->v[i].n;
        for (size_t j = 0; j < n;) {
            if (j + d->alen <= n && memcmp(s + j, d->a, d->alen) == 0) {
                nmc_ubuf_append(&b, d->b, d->blen);
                j += d->alen;
            } else nmc_ubuf_append(&b, s + j++, 1);
        }
        dl_push(out, a, b.p ? b.p : "", b.n);
        nmc_ubuf_free(&b);
    }
}

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* u8::from_str_radix(token[3..5], 16) on "<0xHH>" (Rust accepts a leading '+'). */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    if (s[3] == '+') return hexv(s[4]);
    int hi = hexv(s[3]), lo = hexv(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static void flush_bytes(nmc_ubuf_t *bytes, dlist_t *out, nmc_arena_t *a) {
    if (!bytes->n) return;
    if (nmc_utf8_valid(bytes->p, bytes->n, NULL)) dl_push(out, a, bytes->p, bytes->n);
    else
        for (size_t k = 0; k < bytes->n; k++) dl_push(out, a, "\xEF\xBF\xBD", 3);
    bytes->n = 0;
}

static void dec_bytefallback(dlist_t *in, dlist_t *out, nmc_arena_t *a) {
    nmc_ubuf_t bytes = {0};
    for (size_t i = 0; i < in->n; i++) {
        int b = byte_token(in->v[i].s, in->v[i].n);
        if (b >= 0) {
            char c = (char)b;
            nmc_ubuf_append(&bytes, &c, 1);
            continue;
        }
        flush_bytes(&bytes, out, a);
        dl_push(out, a, in->v[i].s, in->v[i].n);
    }
    flush_bytes(&bytes, out, a);
    nmc_ubuf_free(&bytes);
}

static void dec_fuse(dlist_t *in, dlist_t *out, nmc_arena_t *a) {
    nmc_ubuf_t b = {0};
    for (size_t i = 0; i < in->n; i++) nmc_ubuf_append(&b, in->v[i].s, in->v[i].n);
    dl_push(out, a, b.p ? b.p : "", b.n);
    nmc_ubuf_free(&b);
}

/* Strip: up to `start` leading and `stop` trailing `content` chars of each token. */
static void dec_strip(const tok_dec_t *d, dlist_t *in, dlist_t *out, nmc_arena_t *a) {
    for (size_t i = 0; i < in->n; i++) {
        const unsigned char *s = (const unsigned char *)in->v[i].s;
        size_t n = in->v[i].n, b = 0, e = n, k;
        for (uint32_t c = 0; c < d->start && b < n; c++) {
            if (nmc_utf8_get(s + b, n - b, &k) != d->content) break;
            b += k;
        }
        for (uint32_t c = 0; c < d->stop && e > b; c++) {
            size_t p = e - 1;
            while (p > b && (s[p] & 0xC0) == 0x80) p--;
            if (nmc_utf8_get(s + p, e - p, &k) != d->content) break;
            e = p;
        }
        dl_push(out, a, (const char *)s + b, e - b);
    }
}

/* Metaspace: the replacement char becomes a space, and is dropped in the first token unless
 * prepend_scheme is never. */
static void dec_metaspace(const tok_dec_t *d, dlist_t *in, dlist_t *out, nmc_arena_t *a) {
    for (size_t i = 0; i < in->n; i++) {
        nmc_ubuf_t b = {0};
        const unsigned char *s = (const unsigned char *)in->v[i].s;
        size_t n = in->v[i].n, k;
        for (size_t j = 0; j < n; j += k) {
            uint32_t c = nmc_utf8_get(s + j, n - j, &k);
            if (c != d->content) nmc_ubuf_append(&b, (const char *)s + j, k);
            else if (!(i == 0 && d->prepend != PREPEND_NEVER)) nmc_ubuf_append(&b, " ", 1);
        }
        dl_push(out, a, b.p ? b.p : "", b.n);
        nmc_ubuf_free(&b);
    }
}

static void run_step(const nmc_tokenizer_t *t, const tok_dec_t *d, dlist_t *in, dlist_t *out,
                     nmc_arena_t *a) {
    out->n = 0;
    switch (d->kind) {
    case DEC_BYTELEVEL: dec_bytelevel(&t->bytemap, in, out, a); break;
    case DEC_REPLACE: dec_replace(d, in, out, a); break;
    case DEC_BYTEFALLBACK: dec_bytefallback(in, out, a); break;
    case DEC_FUSE: dec_fuse(in, out, a); break;
    case DEC_STRIP: dec_strip(d, in, out, a); break;
    case DEC_METASPACE: dec_metaspace(d, in, out, a); break;
    }
}

static bool collect(const nmc_tokenizer_t *t, const int32_t *ids, size_t n, bool skip, dlist_t *l,
                    nmc_arena_t *a, nmc_diags_t *diags) {
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = nmc_tokenizer_id_to_token(t, ids[i], &len);
        if (!s) {
            if (diags) {
                nmc_diag_t *r = nmc_diag_add(diags, NMC_SEV_ERROR, "tokenizer-bad-id", NULL, 0, 0, 0,
                                             "ids[%zu] = %d is not a token id of this tokenizer", i, (int)ids[i]);
                nmc_diag_set_expected(r, "an id of the vocabulary (below %d)", (int)t->id_limit);
                nmc_diag_set_help(r, "decode ids produced by the same tokenizer.json");
            }
            return false;
        }
        if (skip && tok_hmap_get(&t->special_set, s, len) >= 0) continue;
        dl_push(l, a, s, len);
    }
    return true;
}

char *nmc_tokenizer_decode(const nmc_tokenizer_t *t, const int32_t *ids, size_t n,
                           bool skip_special_tokens, size_t *len_out, nmc_diags_t *diags) {
    nmc_arena_t *a = nmc_arena_new();
    dlist_t x = {0}, y = {0};
    nmc_ubuf_t res = {0};
    char *out = NULL;
    if (!collect(t, ids, n, skip_special_tokens, &x, a, diags)) goto done;
    for (size_t i = 0; i < t->n_dec; i++) {
        run_step(t, &t->dec[i], &x, &y, a);
        dlist_t sw = x;
        x = y;
        y = sw;
    }
    nmc_ubuf_reserve(&res, 1);
    res.p[0] = '\0';
    for (size_t i = 0; i < x.n; i++) {
        if (i && !t->has_decoder) nmc_ubuf_append(&res, " ", 1);
        nmc_ubuf_append(&res, x.v[i].s, x.v[i].n);
    }
    out = res.p;
    if (len_out) *len_out = res.n;
done:
    if (!out) nmc_ubuf_free(&res);
    free(x.v);
    free(y.v);
    nmc_arena_free(a);
    return out;
}
