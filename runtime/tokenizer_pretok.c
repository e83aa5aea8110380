/* tokenizer_pretok.c — normalizers, pre-tokenizers and the hand-written regex matchers.
 *
 * HF runs Split/ByteLevel regexes on Oniguruma (leftmost-first alternation, backtracking).
 * nmc recognises the exact pattern strings of GPT-2, Llama-3 and Qwen2 and matches each with
 * code that takes the same alternative, with the same length, as the engine would; the class
 * tests use the Oniguruma classes captured in unicode_data.c. Each matcher's comment walks
 * its alternatives in the pattern's order.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

/* ---- the known patterns ---------------------------------------------------------------- */
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

int tok_pattern_lookup(const char *re, size_t len) {
    static const struct { const char *re; tok_pat_t pat; } known[] = {
        {GPT2_RE, PAT_GPT2}, {LLAMA3_RE, PAT_LLAMA3}, {QWEN2_RE, PAT_QWEN2}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].re) == len && memcmp(known[i].re, re, len) == 0) return (int)known[i].pat;
    return -1;
}

/* ---- character tests -------------------------------------------------------------------- */
typedef struct {
    const unsigned char *s;
    size_t n;
} text_t;

static inline uint32_t at(text_t t, size_t i, size_t *k) { return nmc_utf8_get(t.s + i, t.n - i, k); }
static inline unsigned flags_at(text_t t, size_t i) {
    size_t k;
    return i < t.n ? nmc_uni_flags(at(t, i, &k)) : 0;
}
#define CL_L NMC_UNI_L
#define CL_N NMC_UNI_N
#define CL_S NMC_UNI_S
static inline bool is_other(unsigned f) { return !(f & (CL_L | CL_N | CL_S)); }

/* End of the run of chars from i whose flags satisfy (f & mask) (or is_other when mask 0). */
static size_t run(text_t t, size_t i, unsigned mask) {
    while (i < t.n) {
        size_t k;
        unsigned f = nmc_uni_flags(at(t, i, &k));
        if (mask ? !(f & mask) : !is_other(f)) break;
        i += k;
    }
    return i;
}

/* `\s+(?!\S)|\s+` at i (a whitespace char): the run, less its last char when more than one
 * char is followed by a non-space (that char then starts the next piece). */
static size_t ws_tail(text_t t, size_t i) {
    size_t j = i, last = i;
    while (j < t.n) {
        size_t k;
        if (!(nmc_uni_flags(at(t, j, &k)) & CL_S)) break;
        last = j;
        j += k;
    }
    if (j == t.n || last == i) return j;
    return last;
}

/* GPT-2 at i: 's|'t|'re|'ve|'m|'ll|'d, then ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
 * (each with the optional space tried first), then the whitespace alternatives. */
static size_t match_gpt2(text_t t, size_t i) {
    const unsigned char *s = t.s;
    if (s[i] == '\'' && i + 1 < t.n) {
        unsigned a = s[i + 1], b = i + 2 < t.n ? s[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' || a == 'v') && b == 'e') return i + 3;
        if (a == 'l' && b == 'l') return i + 3;
    }
    size_t k0;
    unsigned f0 = nmc_uni_flags(at(t, i, &k0));
    if (s[i] == ' ' && i + 1 < t.n) {
        unsigned f1 = flags_at(t, i + 1);
        if (f1 & CL_L) return run(t, i + 1, CL_L);
        if (f1 & CL_N) return run(t, i + 1, CL_N);
        if (is_other(f1)) return run(t, i + 1, 0);
    }
    if (f0 & CL_L) return run(t, i, CL_L);
    if (f0 & CL_N) return run(t, i, CL_N);
    if (is_other(f0)) return run(t, i, 0);
    return ws_tail(t, i);
}

/* c equals ASCII lowercase letter l under Oniguruma's case folding (ſ folds to s). */
static bool ci(uint32_t c, char l) {
    return c == (uint32_t)l || c == (uint32_t)(l - 32) || (l == 's' && c == 0x17F);
}

/* Llama-3 / Qwen2 at i (max_digits 3 / 1): (?i:'s|'t|'re|'ve|'m|'ll|'d), then
 * `[^\r\n\p{L}\p{N}]?\p{L}+`, `\p{N}{1,max}`, ` ?[^\s\p{L}\p{N}]+[\r\n]*`, `\s*[\r\n]+`
 * (ends after the last CR/LF of the whitespace run), then `\s+(?!\S)|\s+`. */
static size_t match_llama3(text_t t, size_t i, int max_digits) {
    const unsigned char *s = t.s;
    size_t k0, k1 = 0, k2;
    uint32_t c0 = at(t, i, &k0), c1 = i + k0 < t.n ? at(t, i + k0, &k1) : 0;
    if (c0 == '\'' && c1) {
        if (ci(c1, 's') || ci(c1, 't') || ci(c1, 'm') || ci(c1, 'd')) return i + 1 + k1;
        if (i + 1 + k1 < t.n) {
            uint32_t c2 = at(t, i + 1 + k1, &k2);
            if ((ci(c1, 'r') || ci(c1, 'v')) && ci(c2, 'e')) return i + 1 + k1 + k2;
            if (ci(c1, 'l') && ci(c2, 'l')) return i + 1 + k1 + k2;
        }
    }
    unsigned f0 = nmc_uni_flags(c0), f1 = c1 ? nmc_uni_flags(c1) : 0;
    if (c0 != '\r' && c0 != '\n' && !(f0 & (CL_L | CL_N)) && (f1 & CL_L)) return run(t, i + k0, CL_L);
    if (f0 & CL_L) return run(t, i, CL_L);
    if (f0 & CL_N) {
        size_t j = i;
        for (int d = 0; d < max_digits && j < t.n; d++) {
            size_t k;
            if (!(nmc_uni_flags(at(t, j, &k)) & CL_N)) break;
            j += k;
        }
        return j;
    }
    size_t p = (size_t)-1;
    if (c0 == ' ' && c1 && is_other(f1)) p = i + 1;
    else if (is_other(f0)) p = i;
    if (p != (size_t)-1) {
        size_t e = run(t, p, 0);
        while (e < t.n && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    if (f0 & CL_S) {
        size_t j = i, nl = (size_t)-1;
        while (j < t.n) {
            size_t k;
            uint32_t c = at(t, j, &k);
            if (!(nmc_uni_flags(c) & CL_S)) break;
            if (c == '\r' || c == '\n') nl = j;
            j += k;
        }
        if (nl != (size_t)-1) return nl + 1;
        return ws_tail(t, i);
    }
    return i;
}

/* Literal occurrence at i (non-overlapping search resumes after it). */
static size_t match_literal(text_t t, size_t i, const char *lit, size_t len) {
    if (len && t.n - i >= len && memcmp(t.s + i, lit, len) == 0) return i + len;
    return i;
}

/* ---- Split: matches -> pieces ----------------------------------------------------------- */
typedef struct {
    size_t a, b;
    bool match;
} span_t;

typedef struct {
    span_t *v;
    size_t n, cap;
} spans_t;

static void span_push(spans_t *sp, size_t a, size_t b, bool m) {
    if (sp->n == sp->cap) {
        sp->cap = sp->cap ? sp->cap * 2 : 64;
        sp->v = realloc(sp->v, sp->cap * sizeof *sp->v);
        if (!sp->v) abort();
    }
    sp->v[sp->n++] = (span_t){a, b, m};
}

/* find_matches: the whole text as alternating non-match / match spans. */
static void find_spans(text_t t, tok_pat_t pat, const char *lit, size_t litlen, spans_t *sp) {
    size_t prev = 0, i = 0;
    sp->n = 0;
    if (t.n == 0) {
        span_push(sp, 0, 0, false);
        return;
    }
    while (i < t.n) {
        size_t e;
        switch (pat) {
        case PAT_GPT2: e = match_gpt2(t, i); break;
        case PAT_LLAMA3: e = match_llama3(t, i, 3); break;
        case PAT_QWEN2: e = match_llama3(t, i, 1); break;
        default: e = match_literal(t, i, lit, litlen); break;
        }
        if (e > i) {
            if (prev != i) span_push(sp, prev, i, false);
            span_push(sp, i, e, true);
            prev = i = e;
        } else {
            i += nmc_utf8_len(t.s[i]);
        }
    }
    if (prev != t.n) span_push(sp, prev, t.n, false);
}

/* Apply invert and behavior; the kept spans are marked match=false, removed ones true. */
static void apply_behavior(spans_t *sp, tok_behavior_t beh, bool invert) {
    if (invert)
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = !sp->v[i].match;
    size_t out = 0;
    bool prevm = false;
    switch (beh) {
    case SPLIT_REMOVED: return;
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = false;
        return;
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            bool m = sp->v[i].match;
            if (m == prevm && out) sp->v[out - 1].b = sp->v[i].b;
            else sp->v[out++] = (span_t){sp->v[i].a, sp->v[i].b, false};
            prevm = m;
        }
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < sp->n; i++) {
            bool m = sp->v[i].match;
            if (m && !prevm && out) sp->v[out - 1].b = sp->v[i].b;
            else sp->v[out++] = (span_t){sp->v[i].a, sp->v[i].b, false};
            prevm = m;
        }
        break;
    case SPLIT_MERGED_NEXT: { /* walk backwards, then restore the order */
        size_t n = sp->n;
        span_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
        if (!tmp) abort();
        for (size_t r = n; r-- > 0;) {
            bool m = sp->v[r].match;
            if (m && !prevm && out) tmp[out - 1].a = sp->v[r].a;
            else tmp[out++] = (span_t){sp->v[r].a, sp->v[r].b, false};
            prevm = m;
        }
        for (size_t i = 0; i < out; i++) sp->v[i] = tmp[out - 1 - i];
        free(tmp);
        break;
    }
    }
    sp->n = out;
}

static void split_piece(const tok_piece_t *p, tok_pat_t pat, const char *lit, size_t litlen,
                        tok_behavior_t beh, bool invert, spans_t *sp, tok_pieces_t *out) {
    text_t t = {(const unsigned char *)p->s, p->len};
    find_spans(t, pat, lit, litlen, sp);
    apply_behavior(sp, beh, invert);
    for (size_t i = 0; i < sp->n; i++) {
        span_t s = sp->v[i];
        if (s.match || s.b == s.a) continue;
        tok_pieces_push(out, p->s + s.a, s.b - s.a, -1, p->orig0 && s.a == 0);
    }
}

void tok_pieces_push(tok_pieces_t *v, const char *s, size_t len, int32_t id, bool orig0) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->p = realloc(v->p, v->cap * sizeof *v->p);
        if (!v->p) abort();
    }
    v->p[v->n++] = (tok_piece_t){s, (uint32_t)len, id, orig0};
}

/* ---- ByteLevel byte <-> char map (GPT-2's bytes_to_unicode) ---------------------------- */
static bool printable_byte(unsigned b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

/* Printable bytes map to themselves, the others (in byte order) to 256, 257, ... */
static uint32_t byte_char(unsigned b) {
    if (printable_byte(b)) return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++) n += !printable_byte(x);
    return 256 + n;
}

void tok_bytelevel_init(tok_bytemap_t *m) {
    for (unsigned c = 0; c < sizeof m->rev / sizeof m->rev[0]; c++) m->rev[c] = -1;
    for (unsigned b = 0; b < 256; b++) {
        uint32_t c = byte_char(b);
        m->len[b] = (uint8_t)nmc_utf8_put(c, m->enc[b]);
        m->rev[c] = (int16_t)b;
    }
}

static const char *bytelevel_map(const tok_bytemap_t *m, nmc_arena_t *a, const char *s, size_t n,
                                 size_t *out_len) {
    char *o = nmc_arena_alloc(a, n * 2 + 1), *w = o;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        memcpy(w, m->enc[b], m->len[b]);
        w += m->len[b];
    }
    *out_len = (size_t)(w - o);
    return o;
}

/* ---- normalizers ------------------------------------------------------------------------ */
static const char *replace_all(nmc_arena_t *a, const char *s, size_t n, const char *pat,
                               size_t plen, const char *rep, size_t rlen, size_t *out_len) {
    size_t count = 0;
    for (size_t i = 0; i + plen <= n;) {
        if (memcmp(s + i, pat, plen) == 0) { count++; i += plen; } else i++;
    }
    if (!count) { *out_len = n; return s; }
    char *o = nmc_arena_alloc(a, n + count * rlen + 1), *w = o;
    for (size_t i = 0; i < n;) {
        if (i + plen <= n && memcmp(s + i, pat, plen) == 0) {
            memcpy(w, rep, rlen);
            w += rlen;
            i += plen;
        } else *w++ = s[i++];
    }
    *out_len = (size_t)(w - o);
    return o;
}

static const char *prepend(nmc_arena_t *a, const char *s, size_t n, const char *p, size_t plen,
                           size_t *out_len) {
    char *o = nmc_arena_alloc(a, n + plen + 1);
    memcpy(o, p, plen);
    memcpy(o + plen, s, n);
    *out_len = n + plen;
    return o;
}

const char *tok_normalize(const nmc_tokenizer_t *t, nmc_arena_t *a, const char *s, size_t n,
                          size_t *out_len) {
    for (size_t i = 0; i < t->n_norm; i++) {
        const tok_norm_t *st = &t->norm[i];
        switch (st->kind) {
        case NORM_NFC: {
            nmc_ubuf_t b = {0};
            nmc_uni_nfc(s, n, &b);
            char *o = nmc_arena_strndup(a, b.p ? b.p : "", b.n);
            n = b.n;
            s = o;
            nmc_ubuf_free(&b);
            break;
        }
        case NORM_PREPEND:
            if (n) s = prepend(a, s, n, st->a, st->alen, &n);
            break;
        case NORM_REPLACE: s = replace_all(a, s, n, st->a, st->alen, st->b, st->blen, &n); break;
        }
    }
    *out_len = n;
    return s;
}

/* ---- pre-tokenizers --------------------------------------------------------------------- */
static void step_bytelevel(const nmc_tokenizer_t *t, const tok_pre_t *st, nmc_arena_t *a, tok_pieces_t *in, tok_pieces_t *out,
                           spans_t *sp) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        tok_piece_t p = in->p[i];
        if (p.id >= 0) { tok_pieces_push(out, p.s, p.len, p.id, p.orig0); continue; }
        if (st->add_prefix_space && p.len && p.s[0] != ' ') {
            size_t n;
            p.s = prepend(a, p.s, p.len, " ", 1, &n);
            p.len = (uint32_t)n;
        }
        size_t first = out->n;
        if (st->use_regex) split_piece(&p, PAT_GPT2, NULL, 0, SPLIT_ISOLATED, false, sp, out);
        else if (p.len) tok_pieces_push(out, p.s, p.len, -1, p.orig0);
        for (size_t j = first; j < out->n; j++) {
            size_t n;
            out->p[j].s = bytelevel_map(&t->bytemap, a, out->p[j].s, out->p[j].len, &n);
            out->p[j].len = (uint32_t)n;
        }
    }
}

static void step_split(const tok_pre_t *st, tok_pieces_t *in, tok_pieces_t *out, spans_t *sp) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        tok_piece_t p = in->p[i];
        if (p.id >= 0) tok_pieces_push(out, p.s, p.len, p.id, p.orig0);
        else split_piece(&p, st->pat, st->lit, st->litlen, st->behavior, st->invert, sp, out);
    }
}

static void step_metaspace(const tok_pre_t *st, nmc_arena_t *a, tok_pieces_t *in, tok_pieces_t *out,
                           spans_t *sp) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        tok_piece_t p = in->p[i];
        if (p.id >= 0) { tok_pieces_push(out, p.s, p.len, p.id, p.orig0); continue; }
        size_t n;
        p.s = replace_all(a, p.s, p.len, " ", 1, st->repl, st->repl_len, &n);
        p.len = (uint32_t)n;
        bool starts = p.len >= st->repl_len && memcmp(p.s, st->repl, st->repl_len) == 0;
        bool add = p.len && !starts &&
                   (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && p.orig0));
        if (add) {
            p.s = prepend(a, p.s, p.len, st->repl, st->repl_len, &n);
            p.len = (uint32_t)n;
        }
        if (st->split)
            split_piece(&p, PAT_LITERAL, st->repl, st->repl_len, SPLIT_MERGED_NEXT, false, sp, out);
        else if (p.len) tok_pieces_push(out, p.s, p.len, -1, p.orig0);
    }
}

void tok_pretokenize(const nmc_tokenizer_t *t, nmc_arena_t *a, tok_pieces_t *in, tok_pieces_t *tmp) {
    spans_t sp = {0};
    for (size_t i = 0; i < t->n_pre; i++) {
        const tok_pre_t *st = &t->pre[i];
        switch (st->kind) {
        case PRE_BYTELEVEL: step_bytelevel(t, st, a, in, tmp, &sp); break;
        case PRE_SPLIT: step_split(st, in, tmp, &sp); break;
        case PRE_METASPACE: step_metaspace(st, a, in, tmp, &sp); break;
        }
        tok_pieces_t swap = *in;
        *in = *tmp;
        *tmp = swap;
    }
    free(sp.v);
}
