/* unicode.c — UTF-8 validation and lossy repair, and NFC over the generated tables.
 *
 * NFC is canonical decomposition (recursive mappings are pre-expanded by the generator,
 * Hangul is algorithmic), a stable sort of each run of non-starters by combining class,
 * then canonical composition (UAX #15). The tables hold what HF's normalizer implements, so
 * the result equals tokenizers' NFC even where it lags the current Unicode version.
 */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

#include "arena.h"

size_t nmc_utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The well-formed sequence at s[i..n): returns its length, or 0 and sets *sub to the length
 * of the maximal subpart (>= 1) that a lossy decoder replaces with one U+FFFD. */
static size_t seq_at(const unsigned char *s, size_t n, size_t i, size_t *sub) {
    unsigned c = s[i];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    *sub = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    for (size_t k = 1; k <= need; k++) {
        if (i + k >= n) { *sub = k; return 0; }
        unsigned b = s[i + k];
        unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) { *sub = k; return 0; }
    }
    return need + 1;
}

bool nmc_utf8_valid(const char *s, size_t n, size_t *bad) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, sub;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        size_t k = seq_at(u, n, i, &sub);
        if (!k) {
            if (bad) *bad = i;
            return false;
        }
        i += k;
    }
    return true;
}

void nmc_ubuf_reserve(nmc_ubuf_t *b, size_t extra) {
    if (b->n + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) abort(); /* out of memory: same policy as arena.h */
    b->p = p;
    b->cap = cap;
}

void nmc_ubuf_append(nmc_ubuf_t *b, const char *s, size_t n) {
    nmc_ubuf_reserve(b, n + 1);
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void nmc_ubuf_free(nmc_ubuf_t *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

void nmc_utf8_lossy(const char *s, size_t n, nmc_ubuf_t *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, sub;
    nmc_ubuf_reserve(out, n + 1);
    while (i < n) {
        size_t k = seq_at(u, n, i, &sub);
        if (k) {
            nmc_ubuf_append(out, s + i, k);
            i += k;
        } else {
            nmc_ubuf_append(out, "\xEF\xBF\xBD", 3);
            i += sub;
        }
    }
}

/* ---- NFC ------------------------------------------------------------------------------- */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
       L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
       S_COUNT = L_COUNT * N_COUNT };

static unsigned ccc_of(uint32_t cp) {
    size_t lo = 0, hi = nmc_uni_ccc_n;
    if (cp < 0x300) return 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t k = nmc_uni_ccc[mid] >> 8;
        if (k == cp) return nmc_uni_ccc[mid] & 0xFF;
        if (k < cp) lo = mid + 1; else hi = mid;
    }
    return 0;
}

/* Canonical full decomposition of cp: pointer into the pool and count, or 0 when none. */
static size_t decomp_of(uint32_t cp, const uint32_t **seq) {
    size_t lo = 0, hi = nmc_uni_decomp_n;
    if (cp < 0xC0) return 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t k = nmc_uni_decomp_cp[mid];
        if (k == cp) {
            *seq = nmc_uni_decomp_pool + (nmc_uni_decomp_off[mid] & 0xFFFFFF);
            return nmc_uni_decomp_off[mid] >> 24;
        }
        if (k < cp) lo = mid + 1; else hi = mid;
    }
    return 0;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    uint64_t key = ((uint64_t)a << 21) | b;
    size_t lo = 0, hi = nmc_uni_comp_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (nmc_uni_comp_key[mid] == key) return nmc_uni_comp_val[mid];
        if (nmc_uni_comp_key[mid] < key) lo = mid + 1; else hi = mid;
    }
    return 0;
}

typedef struct {
    uint32_t *cp;
    size_t n, cap;
} cpbuf_t;

static void cp_push(cpbuf_t *b, uint32_t cp) {
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->cp = realloc(b->cp, b->cap * sizeof *b->cp);
        if (!b->cp) abort();
    }
    b->cp[b->n++] = cp;
}

static void decompose_into(uint32_t cp, cpbuf_t *b) {
    const uint32_t *seq;
    size_t k;
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t si = cp - S_BASE;
        cp_push(b, L_BASE + si / N_COUNT);
        cp_push(b, V_BASE + (si % N_COUNT) / T_COUNT);
        if (si % T_COUNT) cp_push(b, T_BASE + si % T_COUNT);
    } else if ((k = decomp_of(cp, &seq)) != 0) {
        for (size_t i = 0; i < k; i++) cp_push(b, seq[i]);
    } else {
        cp_push(b, cp);
    }
}

/* Stable insertion sort of each run of non-starters by combining class. */
static void reorder(cpbuf_t *b) {
    for (size_t i = 1; i < b->n; i++) {
        unsigned c = ccc_of(b->cp[i]);
        if (!c) continue;
        size_t j = i;
        uint32_t x = b->cp[i];
        while (j > 0) {
            unsigned p = ccc_of(b->cp[j - 1]);
            if (p <= c || p == 0) break;
            b->cp[j] = b->cp[j - 1];
            j--;
        }
        b->cp[j] = x;
    }
}

static void compose(cpbuf_t *b) {
    if (b->n == 0) return;
    size_t out = 1, starter = 0;
    unsigned last = ccc_of(b->cp[0]) ? 256 : 0;
    bool have_starter = last == 0;
    for (size_t i = 1; i < b->n; i++) {
        uint32_t ch = b->cp[i];
        unsigned c = ccc_of(ch);
        if (have_starter && (last < c || last == 0)) {
            uint32_t comp = compose_pair(b->cp[starter], ch);
            if (comp) {
                b->cp[starter] = comp;
                continue;
            }
        }
        if (c == 0) {
            starter = out;
            have_starter = true;
        }
        last = c;
        b->cp[out++] = ch;
    }
    b->n = out;
}

void nmc_uni_nfc(const char *s, size_t n, nmc_ubuf_t *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    /* Below U+0300 every character is a starter that nothing composes with or decomposes
     * into anything that recomposes differently: such text is already NFC. (Lead bytes up
     * to 0xCB encode at most U+02FF.) */
    while (i < n && u[i] < 0xCC) i++;
    if (i == n) {
        nmc_ubuf_append(out, s, n);
        return;
    }
    cpbuf_t b = {0};
    for (i = 0; i < n;) {
        size_t k;
        uint32_t cp = nmc_utf8_get(u + i, n - i, &k);
        decompose_into(cp, &b);
        i += k;
    }
    reorder(&b);
    compose(&b);
    nmc_ubuf_reserve(out, b.n * 4 + 1);
    for (size_t j = 0; j < b.n; j++) out->n += nmc_utf8_put(b.cp[j], out->p + out->n);
    out->p[out->n] = '\0';
    free(b.cp);
}
