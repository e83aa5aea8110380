/* json_tree.c — the tree of a checked document: jsmn tokenizes, this file builds nmc_json_t
 * nodes from the tokens (decoding strings, converting numbers, reporting duplicate keys),
 * and holds the lookup helpers.
 *
 * jsmn runs in strict mode with parent links: each token names its parent, so building is
 * one loop over the tokens in source order (no recursion, so no stack limit here) and the
 * line/column cursor only ever moves forward. jsmn only sees input the strict checker in
 * json.c accepted; a root that is a bare number or literal is built without jsmn (strict
 * jsmn wants a delimiter after every primitive).
 */
#include "json_priv.h"
#include "json_utf8.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS /* O(1) climbs on ',' and brackets; without them jsmn is O(n^2) on wide objects */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#include <jsmn.h>
#pragma GCC diagnostic pop

typedef struct {
    nmc_arena_t *a;
    const char *src;
    size_t len;
    const char *file;
    nmc_diags_t *diags;
    nmc_jpos_t cur;
    size_t ndup;
} builder_t;

/* ---- scalars ---- */

static int hexval(char b)
{
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    return b - 'A' + 10; /* the checker guaranteed a hex digit */
}

static uint32_t hex4(const char *s)
{
    return (uint32_t)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

/* Decode the checked string body s[0..n) (escapes resolved) into the arena. */
static char *decode_string(nmc_arena_t *a, const char *s, size_t n, size_t *out_len)
{
    if (!memchr(s, '\\', n)) {
        *out_len = n;
        return nmc_arena_strndup(a, s, n);
    }
    char *buf = nmc_arena_alloc(a, n + 1), *o = buf; /* decoded text is never longer */
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            *o++ = s[i++];
            continue;
        }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp = hex4(s + i);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* the checker guaranteed the low half */
                cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(s + i + 2) - 0xDC00);
                i += 6;
            }
            o += nmc_utf8_encode(cp, o);
            break;
        }
        default: *o++ = e; /* " \ / */
        }
    }
    *o = '\0';
    *out_len = (size_t)(o - buf);
    return buf;
}

/* int64 from a checked integer literal; false on overflow. */
static bool parse_int64(const char *t, int64_t *out)
{
    bool neg = *t == '-';
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (t += neg; *t; t++) {
        uint64_t d = (uint64_t)(*t - '0');
        if (v > (lim - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return true;
}

static void fill_primitive(builder_t *b, nmc_json_t *v, const char *t, size_t n)
{
    switch (t[0]) {
    case 't': v->kind = NMC_JSON_BOOL; v->u.boolean = true; return;
    case 'f': v->kind = NMC_JSON_BOOL; v->u.boolean = false; return;
    case 'n': v->kind = NMC_JSON_NULL; return;
    }
    v->kind = NMC_JSON_NUMBER;
    char *text = nmc_arena_strndup(b->a, t, n);
    v->u.num.text = text;
    v->u.num.is_int = !memchr(t, '.', n) && !memchr(t, 'e', n) && !memchr(t, 'E', n);
    if (v->u.num.is_int && parse_int64(text, &v->u.num.i)) {
        v->u.num.int_ok = true;
        v->u.num.d = (double)v->u.num.i; /* int64 -> double rounds to nearest, as strtod does */
        return;
    }
    locale_t c = nmc_json_c_locale();
    v->u.num.d = c ? strtod_l(text, NULL, c) : strtod(text, NULL);
}

static nmc_json_t *new_node(builder_t *b, size_t off, size_t end)
{
    nmc_json_t *v = nmc_arena_alloc(b->a, sizeof *v);
    nmc_jpos_seek(&b->cur, off);
    v->line = b->cur.line;
    v->col = b->cur.col;
    v->offset = off;
    v->end = end;
    return v;
}

/* ---- duplicate keys ---- */

static bool same_key(const nmc_json_member_t *x, const nmc_json_member_t *y)
{
    return x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0;
}

static void report_dup(builder_t *b, const nmc_json_member_t *first, const nmc_json_member_t *again)
{
    char q[96];
    nmc_json_quote_msg(q, 64, again->key, again->key_len);
    nmc_diag_t *r = nmc_diag_add(b->diags, NMC_SEV_ERROR, "json-duplicate-key", b->file, again->line,
                                 again->col, again->offset, "duplicate key \"%s\"", q);
    nmc_diag_set_help(r, "the first \"%s\" is at line %u, col %u; remove one of them (JSON readers disagree on which one wins)",
                      q, (unsigned)first->line, (unsigned)first->col);
    b->ndup++;
}

static uint64_t key_hash(const nmc_json_member_t *m)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < m->key_len; i++) h = (h ^ (unsigned char)m->key[i]) * 1099511628211ull;
    return h;
}

static void check_dups(builder_t *b, const nmc_json_t *o)
{
    size_t n = o->u.obj.n;
    const nmc_json_member_t *m = o->u.obj.members;
    if (n <= 8) { /* small objects (every job file): pairwise is cheapest */
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (same_key(&m[j], &m[i])) {
                    report_dup(b, &m[j], &m[i]);
                    break;
                }
        return;
    }
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    size_t *tab = calloc(cap, sizeof *tab); /* member index + 1; 0 = empty */
    if (!tab) abort();
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)key_hash(&m[i]) & (cap - 1);
        while (tab[h] && !same_key(&m[tab[h] - 1], &m[i])) h = (h + 1) & (cap - 1);
        if (tab[h]) report_dup(b, &m[tab[h] - 1], &m[i]);
        else tab[h] = i + 1;
    }
    free(tab);
}

/* ---- the tree ---- */

static int internal_error(builder_t *b, const char *what)
{
    nmc_diag_t *r = nmc_diag_add(b->diags, NMC_SEV_ERROR, "json-internal-error", b->file, 0, 0, 0,
                                 "internal error in the JSON layer: %s", what);
    nmc_diag_set_help(r, "this is a bug in nmc; please report it with the input file");
    return -1;
}

static size_t root_offset(const char *s, size_t len, size_t p)
{
    while (p < len && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) p++;
    return p;
}

/* Attach value node v (token i) to its parent; slot[] maps tokens to nodes or members. */
static int attach(builder_t *b, const jsmntok_t *toks, void **slot, int i, nmc_json_t *v)
{
    int par = toks[i].parent;
    if (par < 0) return 0;
    if (toks[par].type == JSMN_ARRAY) {
        nmc_json_t *arr = slot[par];
        if (arr->u.arr.n >= (size_t)toks[par].size) return internal_error(b, "array overflow");
        arr->u.arr.items[arr->u.arr.n++] = v;
        return 0;
    }
    nmc_json_member_t *m = slot[par];
    if (toks[par].type != JSMN_STRING || !m || m->value) return internal_error(b, "value without key");
    m->value = v;
    return 0;
}

/* A key token i: the next member of its object. */
static int add_key(builder_t *b, const jsmntok_t *toks, void **slot, int i, size_t base)
{
    nmc_json_t *o = slot[toks[i].parent];
    if (o->u.obj.n >= (size_t)toks[toks[i].parent].size) return internal_error(b, "object overflow");
    nmc_json_member_t *m = &o->u.obj.members[o->u.obj.n++];
    size_t off = base + (size_t)toks[i].start - 1;
    nmc_jpos_seek(&b->cur, off);
    m->line = b->cur.line;
    m->col = b->cur.col;
    m->offset = off;
    m->key = decode_string(b->a, b->src + base + toks[i].start, (size_t)(toks[i].end - toks[i].start), &m->key_len);
    slot[i] = m;
    return 0;
}

static nmc_json_t *value_node(builder_t *b, const jsmntok_t *t, size_t base)
{
    const char *s = b->src + base;
    size_t start = (size_t)t->start, end = (size_t)t->end;
    nmc_json_t *v;
    switch (t->type) {
    case JSMN_STRING:
        v = new_node(b, base + start - 1, base + end + 1);
        v->kind = NMC_JSON_STRING;
        v->u.str.s = decode_string(b->a, s + start, end - start, &v->u.str.len);
        return v;
    case JSMN_PRIMITIVE:
        v = new_node(b, base + start, base + end);
        fill_primitive(b, v, s + start, end - start);
        return v;
    case JSMN_ARRAY:
        v = new_node(b, base + start, base + end);
        v->kind = NMC_JSON_ARRAY;
        if (t->size) v->u.arr.items = nmc_arena_alloc(b->a, (size_t)t->size * sizeof *v->u.arr.items);
        return v;
    case JSMN_OBJECT:
        v = new_node(b, base + start, base + end);
        v->kind = NMC_JSON_OBJECT;
        if (t->size) v->u.obj.members = nmc_arena_alloc(b->a, (size_t)t->size * sizeof *v->u.obj.members);
        return v;
    default:
        return NULL;
    }
}

static int build_tokens(builder_t *b, const jsmntok_t *toks, int n, size_t base, nmc_json_t **root)
{
    void **slot = calloc((size_t)n, sizeof *slot);
    if (!slot) abort();
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        int par = toks[i].parent;
        if (par >= i) rc = internal_error(b, "token order");
        else if (par >= 0 && toks[par].type == JSMN_OBJECT) rc = add_key(b, toks, slot, i, base);
        else {
            nmc_json_t *v = value_node(b, &toks[i], base);
            if (!v) rc = internal_error(b, "token type");
            else if (par < 0 && i > 0) rc = internal_error(b, "second root");
            else {
                slot[i] = v;
                rc = attach(b, toks, slot, i, v);
            }
        }
    }
    for (int i = 0; i < n && rc == 0; i++)
        if (toks[i].type == JSMN_OBJECT) check_dups(b, slot[i]);
    if (rc == 0 && n > 0) *root = slot[0];
    free(slot);
    return rc;
}

int nmc_json_build(nmc_arena_t *a, const char *src, size_t len, size_t base, size_t ntok,
                   const char *file, nmc_json_t **out, nmc_diags_t *diags)
{
    builder_t b = {.a = a, .src = src, .len = len, .file = file, .diags = diags};
    nmc_jpos_init(&b.cur, src, len, base);
    b.cur.valid_utf8 = true; /* the checker validated it */
    size_t r0 = root_offset(src, len, base);
    if (r0 >= len) return internal_error(&b, "no root");
    if (src[r0] != '{' && src[r0] != '[' && src[r0] != '"') { /* bare number or literal */
        size_t e = r0;
        while (e < len && nmc_json_is_word_byte((unsigned char)src[e])) e++;
        nmc_json_t *v = new_node(&b, r0, e);
        fill_primitive(&b, v, src + r0, e - r0);
        *out = v;
        return 0;
    }
    if (ntok == 0 || ntok > (size_t)INT32_MAX / 2) return internal_error(&b, "token count");
    jsmntok_t *toks = malloc(ntok * sizeof *toks);
    if (!toks) abort();
    jsmn_parser p;
    jsmn_init(&p);
    int n = jsmn_parse(&p, src + base, len - base, toks, (unsigned)ntok);
    int rc;
    if (n < 0 || (size_t)n != ntok) rc = internal_error(&b, "jsmn disagrees with the strict checker");
    else rc = build_tokens(&b, toks, n, base, out);
    free(toks);
    if (rc == 0 && b.ndup) {
        *out = NULL;
        return -1;
    }
    return rc;
}

/* ---- lookups ---- */

const nmc_json_member_t *nmc_json_member(const nmc_json_t *o, const char *key)
{
    if (!o || o->kind != NMC_JSON_OBJECT || !key) return NULL;
    size_t k = strlen(key);
    for (size_t i = 0; i < o->u.obj.n; i++) {
        const nmc_json_member_t *m = &o->u.obj.members[i];
        if (m->key_len == k && memcmp(m->key, key, k) == 0) return m;
    }
    return NULL;
}

const nmc_json_t *nmc_json_get(const nmc_json_t *o, const char *key)
{
    const nmc_json_member_t *m = nmc_json_member(o, key);
    return m ? m->value : NULL;
}

const char *nmc_json_kind_name(nmc_json_kind_t k)
{
    switch (k) {
    case NMC_JSON_NULL: return "null";
    case NMC_JSON_BOOL: return "boolean";
    case NMC_JSON_NUMBER: return "number";
    case NMC_JSON_STRING: return "string";
    case NMC_JSON_ARRAY: return "array";
    case NMC_JSON_OBJECT: return "object";
    }
    return "unknown";
}
