/* jinja_builtins.c — the catalogue: Jinja2 filters and tests, the Python str/dict/list
 * methods templates call, and the built-in globals (range, namespace, dict,
 * raise_exception) of transformers' chat-template environment.
 *
 * What belongs here: one small function per filter/test/method, dispatched by name from a
 * table. A name not in a table is a jinja-unsupported error naming it. Case mapping
 * (upper/lower/title/capitalize) covers ASCII only: other letters are left as they are
 * (documented in docs/chat_templates.md).
 */
#include "jinja_int.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const nmc_jv_t *args, *kwn, *kwv;
    size_t nargs, nkw;
} argv_t;

/* Argument by position `pos` or keyword `name`; NULL when absent. */
static const nmc_jv_t *arg(const argv_t *a, size_t pos, const char *name) {
    if (pos < a->nargs) return &a->args[pos];
    for (size_t i = 0; name && i < a->nkw; i++)
        if (a->kwn[i].u.s.n == strlen(name) && memcmp(a->kwn[i].u.s.p, name, a->kwn[i].u.s.n) == 0)
            return &a->kwv[i];
    return NULL;
}

static nmc_jv_t mkstr(const char *p, size_t n) {
    return (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {p, n}};
}

static nmc_jv_t to_str(nmc_jinja_render_t *r, const nmc_jv_t *v) {
    if (v->kind == NMC_JV_STRING) return *v;
    jbuf_t b;
    jbuf_init(&b, r->a);
    jbuf_put(&b, "", 0);
    jv_write_str(&b, v);
    return mkstr(b.p, b.n);
}

static const char *need_str(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *v,
                            const char *what) {
    if (v->kind != NMC_JV_STRING) {
        if (v->kind == NMC_JV_UNDEFINED) jundef_fail(r, n, v);
        jfail_at(r, n, "jinja-type", "%s must be str, not %s", what, jv_type_name(v));
    }
    return v->u.s.p;
}

static int64_t need_int(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *v, const char *what) {
    if (v->kind == NMC_JV_INT) return v->u.i;
    if (v->kind == NMC_JV_BOOL) return v->u.b;
    if (v->kind == NMC_JV_UNDEFINED) jundef_fail(r, n, v);
    jfail_at(r, n, "jinja-type", "%s must be an integer, not %s", what, jv_type_name(v));
}

static char ascii_up(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 32) : c; }
static char ascii_low(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }
static bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* ---- iteration --------------------------------------------------------------------- */
nmc_jlist_t *jb_iter(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *v) {
    nmc_jlist_t *l = nmc_arena_alloc(r->a, sizeof *l);
    switch (v->kind) {
    case NMC_JV_UNDEFINED: return l;
    case NMC_JV_LIST: return v->u.list;
    case NMC_JV_DICT:
        for (size_t i = 0; i < v->u.dict->n; i++) nmc_jlist_push(r->a, l, v->u.dict->keys[i]);
        return l;
    case NMC_JV_STRING:
        for (size_t i = 0; i < v->u.s.n;) {
            size_t k = i + 1;
            while (k < v->u.s.n && ((unsigned char)v->u.s.p[k] & 0xC0) == 0x80) k++;
            nmc_jlist_push(r->a, l, mkstr(v->u.s.p + i, k - i));
            i = k;
        }
        return l;
    default:
        jfail_at(r, n, "jinja-type", "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ---- string helpers ------------------------------------------------------------------ */
static bool in_chars(const char *s, size_t n, const nmc_jv_t *chars, size_t *len) {
    size_t k = 1;
    while (k < n && ((unsigned char)s[k] & 0xC0) == 0x80) k++;
    *len = k;
    for (size_t i = 0; i < chars->u.s.n;) {
        size_t m = i + 1;
        while (m < chars->u.s.n && ((unsigned char)chars->u.s.p[m] & 0xC0) == 0x80) m++;
        if (m - i == k && memcmp(chars->u.s.p + i, s, k) == 0) return true;
        i = m;
    }
    return false;
}

nmc_jv_t jstr_strip(nmc_arena_t *a, nmc_jv_t s, const nmc_jv_t *chars, bool left, bool right) {
    (void)a;
    const char *p = s.u.s.p;
    size_t b = 0, e = s.u.s.n, k;
    bool custom = chars && chars->kind == NMC_JV_STRING;
    while (left && b < e) {
        if (custom ? !in_chars(p + b, e - b, chars, &k) : !(k = py_space_at(p + b, e - b))) break;
        b += k;
    }
    while (right && e > b) {
        size_t st = e - 1;
        while (st > b && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
        if (custom ? !in_chars(p + st, e - st, chars, &k) : !py_space_at(p + st, e - st)) break;
        e = st;
    }
    return mkstr(p + b, e - b);
}

static const char *find_sub(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    for (size_t i = 0; i + nn <= hn; i++)
        if (memcmp(h + i, nd, nn) == 0) return h + i;
    return NULL;
}

static nmc_jv_t str_replace(nmc_jinja_render_t *r, nmc_jv_t s, nmc_jv_t old, nmc_jv_t new_,
                            int64_t count) {
    jbuf_t b;
    jbuf_init(&b, r->a);
    jbuf_put(&b, "", 0);
    const char *p = s.u.s.p, *end = p + s.u.s.n;
    if (old.u.s.n == 0) { /* Python inserts `new` between characters */
        int64_t done = 0;
        for (size_t i = 0; i <= s.u.s.n;) {
            if (count < 0 || done < count) jbuf_put(&b, new_.u.s.p, new_.u.s.n), done++;
            if (i == s.u.s.n) break;
            size_t k = i + 1;
            while (k < s.u.s.n && ((unsigned char)p[k] & 0xC0) == 0x80) k++;
            jbuf_put(&b, p + i, k - i);
            i = k;
        }
        return mkstr(b.p, b.n);
    }
    for (int64_t done = 0; p < end && (count < 0 || done < count); done++) {
        const char *hit = find_sub(p, (size_t)(end - p), old.u.s.p, old.u.s.n);
        if (!hit) break;
        jbuf_put(&b, p, (size_t)(hit - p));
        jbuf_put(&b, new_.u.s.p, new_.u.s.n);
        p = hit + old.u.s.n;
    }
    jbuf_put(&b, p, (size_t)(end - p));
    return mkstr(b.p, b.n);
}

/* str.split / rsplit; sep NULL = runs of whitespace. */
static nmc_jv_t str_split(nmc_jinja_render_t *r, nmc_jv_t s, const nmc_jv_t *sep, int64_t maxsplit,
                          bool from_right) {
    nmc_jv_t out = nmc_jv_list(r->a);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (!sep || sep->kind == NMC_JV_NONE) {
        /* collect whitespace-separated words, then honour maxsplit from the chosen side */
        nmc_jlist_t words = {0};
        size_t *starts = nmc_arena_alloc(r->a, (n + 1) * sizeof *starts);
        size_t nw = 0;
        for (size_t i = 0; i < n;) {
            size_t k = py_space_at(p + i, n - i);
            if (k) { i += k; continue; }
            size_t j = i;
            while (j < n && !py_space_at(p + j, n - j)) j++;
            starts[nw++] = i;
            nmc_jlist_push(r->a, &words, mkstr(p + i, j - i));
            i = j;
        }
        if (maxsplit < 0 || (size_t)maxsplit >= nw) {
            *out.u.list = words;
            return out;
        }
        if (!from_right) {
            for (int64_t i = 0; i < maxsplit; i++) nmc_jlist_push(r->a, out.u.list, words.items[i]);
            nmc_jlist_push(r->a, out.u.list, mkstr(p + starts[maxsplit], n - starts[maxsplit]));
        } else {
            size_t first = nw - (size_t)maxsplit;
            const nmc_jv_t *last = &words.items[first - 1];
            nmc_jlist_push(r->a, out.u.list, mkstr(p, (size_t)(last->u.s.p + last->u.s.n - p)));
            for (size_t i = first; i < nw; i++) nmc_jlist_push(r->a, out.u.list, words.items[i]);
        }
        return out;
    }
    if (sep->u.s.n == 0) jfail_at(r, NULL, "jinja-value", "empty separator");
    /* explicit separator: find all occurrences left to right */
    size_t *hits = nmc_arena_alloc(r->a, (n / sep->u.s.n + 2) * sizeof *hits), nh = 0;
    for (size_t i = 0; i + sep->u.s.n <= n;) {
        if (memcmp(p + i, sep->u.s.p, sep->u.s.n) == 0) {
            hits[nh++] = i;
            i += sep->u.s.n;
        } else i++;
    }
    size_t use_from = 0, use_to = nh;
    if (maxsplit >= 0 && (size_t)maxsplit < nh) {
        if (from_right) use_from = nh - (size_t)maxsplit;
        else use_to = (size_t)maxsplit;
    }
    size_t pos = 0;
    for (size_t h = use_from; h < use_to; h++) {
        if (h == use_from && from_right) {
            nmc_jlist_push(r->a, out.u.list, mkstr(p, hits[h]));
        } else nmc_jlist_push(r->a, out.u.list, mkstr(p + pos, hits[h] - pos));
        pos = hits[h] + sep->u.s.n;
    }
    nmc_jlist_push(r->a, out.u.list, mkstr(p + pos, n - pos));
    return out;
}

static nmc_jv_t map_case(nmc_jinja_render_t *r, nmc_jv_t s, int mode) {
    char *o = nmc_arena_alloc(r->a, s.u.s.n + 1);
    bool prev_alpha = false;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        switch (mode) {
        case 0: o[i] = ascii_up(c); break;
        case 1: o[i] = ascii_low(c); break;
        case 2: o[i] = prev_alpha ? ascii_low(c) : ascii_up(c); break; /* str.title */
        default: o[i] = i == 0 ? ascii_up(c) : ascii_low(c); break;   /* capitalize */
        }
        prev_alpha = ascii_alpha(c) || ((unsigned char)c >= 0x80);
    }
    return mkstr(o, s.u.s.n);
}

/* Jinja's title filter: capitalize each piece after a run of [-\s({\[<]. */
static nmc_jv_t jinja_title(nmc_jinja_render_t *r, nmc_jv_t s) {
    char *o = nmc_arena_alloc(r->a, s.u.s.n + 1);
    bool start = true;
    for (size_t i = 0; i < s.u.s.n;) {
        size_t sp = py_space_at(s.u.s.p + i, s.u.s.n - i);
        char c = s.u.s.p[i];
        if (sp || strchr("-({[<", c)) {
            size_t k = sp ? sp : 1;
            memcpy(o + i, s.u.s.p + i, k);
            i += k;
            start = true;
            continue;
        }
        o[i] = start ? ascii_up(c) : ascii_low(c);
        start = false;
        i++;
    }
    return mkstr(o, s.u.s.n);
}

/* ---- methods ------------------------------------------------------------------------- */
static const char *const STR_METHODS[] = {
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "replace", "upper",
    "lower", "title", "capitalize", "find", "rfind", "count", "join", "isdigit", "isalpha",
    "isalnum", "isspace", "islower", "isupper", "splitlines", "format", "index", "rindex",
    "center", "ljust", "rjust", "zfill", "encode", "partition", "rpartition", "casefold",
    "swapcase", "expandtabs", NULL};
static const char *const DICT_METHODS[] = {"get", "items", "keys", "values", "copy", "pop",
                                           "popitem", "setdefault", "update", "clear", NULL};
static const char *const LIST_METHODS[] = {"index", "count", "copy", "append", "extend", "insert",
                                           "pop", "remove", "reverse", "sort", "clear", NULL};
static const char *const UNSAFE[] = {"pop", "popitem", "setdefault", "update", "clear", "append",
                                     "extend", "insert", "remove", "reverse", "sort", NULL};

static bool in_list(const char *const *l, const char *name, size_t len) {
    for (; *l; l++)
        if (strlen(*l) == len && memcmp(*l, name, len) == 0) return true;
    return false;
}

nmc_jv_t jb_method(nmc_jinja_render_t *r, nmc_jv_t v, const char *name, size_t len) {
    const char *const *table = v.kind == NMC_JV_STRING ? STR_METHODS
                               : v.kind == NMC_JV_DICT ? DICT_METHODS
                               : v.kind == NMC_JV_LIST && !v.u.list->is_tuple ? LIST_METHODS
                               : NULL;
    if (!table || !in_list(table, name, len)) return nmc_jv_undefined();
    if (v.kind != NMC_JV_STRING && in_list(UNSAFE, name, len)) {
        jundef_t *u = nmc_arena_alloc(r->a, sizeof *u);
        u->hint = nmc_arena_printf(r->a, "access to attribute '%.*s' of '%s' object is unsafe.",
                                   (int)len, name, jv_type_name(&v));
        u->security = true;
        return (nmc_jv_t){.kind = NMC_JV_UNDEFINED, .u.ptr = u};
    }
    jbound_t *b = nmc_arena_alloc(r->a, sizeof *b);
    b->self = v;
    b->name = name;
    b->len = len;
    return (nmc_jv_t){.kind = NMC_JV_BOUND, .u.ptr = b};
}

static bool affix_match(nmc_jv_t s, const nmc_jv_t *x, bool end) {
    if (x->kind == NMC_JV_LIST) {
        for (size_t i = 0; i < x->u.list->n; i++)
            if (affix_match(s, &x->u.list->items[i], end)) return true;
        return false;
    }
    if (x->u.s.n > s.u.s.n) return false;
    return memcmp(s.u.s.p + (end ? s.u.s.n - x->u.s.n : 0), x->u.s.p, x->u.s.n) == 0;
}

static bool all_chars(nmc_jv_t s, int kind) {
    if (s.u.s.n == 0) return false;
    bool cased = false;
    for (size_t i = 0; i < s.u.s.n;) {
        char c = s.u.s.p[i];
        size_t sp = py_space_at(s.u.s.p + i, s.u.s.n - i);
        switch (kind) {
        case 0: if (c < '0' || c > '9') return false; break;
        case 1: if (!ascii_alpha(c)) return false; break;
        case 2: if (!ascii_alpha(c) && (c < '0' || c > '9')) return false; break;
        case 3: if (!sp) return false; break;
        case 4: if (c >= 'A' && c <= 'Z') return false; cased |= c >= 'a' && c <= 'z'; break;
        default: if (c >= 'a' && c <= 'z') return false; cased |= c >= 'A' && c <= 'Z'; break;
        }
        i += sp ? sp : 1;
    }
    return kind < 4 || cased;
}

static nmc_jv_t str_find(nmc_jv_t s, const nmc_jv_t *sub, bool rev) {
    const char *hit = NULL;
    for (size_t i = 0; i + sub->u.s.n <= s.u.s.n; i++)
        if (memcmp(s.u.s.p + i, sub->u.s.p, sub->u.s.n) == 0) {
            hit = s.u.s.p + i;
            if (!rev) break;
        }
    if (!hit) return nmc_jv_int(-1);
    return nmc_jv_int((int64_t)utf8_count(s.u.s.p, (size_t)(hit - s.u.s.p)));
}

static nmc_jv_t str_join(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t sep, const nmc_jv_t *seq) {
    nmc_jlist_t *items = jb_iter(r, n, seq);
    jbuf_t b;
    jbuf_init(&b, r->a);
    jbuf_put(&b, "", 0);
    for (size_t i = 0; i < items->n; i++) {
        if (i) jbuf_put(&b, sep.u.s.p, sep.u.s.n);
        if (items->items[i].kind != NMC_JV_STRING)
            jfail_at(r, n, "jinja-type", "sequence item %zu: expected str instance, %s found", i,
                     jv_type_name(&items->items[i]));
        jbuf_put(&b, items->items[i].u.s.p, items->items[i].u.s.n);
    }
    return mkstr(b.p, b.n);
}

static nmc_jv_t call_str_method(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t s,
                                const char *m, const argv_t *a) {
    const nmc_jv_t *a0 = arg(a, 0, NULL), *a1 = arg(a, 1, NULL);
#define IS(x) (strcmp(m, x) == 0)
    if (IS("startswith") || IS("endswith")) {
        if (!a0) jfail_at(r, n, "jinja-type", "%s() takes at least 1 argument (0 given)", m);
        if (a0->kind != NMC_JV_LIST) need_str(r, n, a0, "prefix");
        if (a1) jfail_at(r, n, "jinja-unsupported", "unsupported: str.%s() with start/end", m);
        return nmc_jv_bool(affix_match(s, a0, IS("endswith")));
    }
    if (IS("strip") || IS("lstrip") || IS("rstrip")) {
        if (a0 && a0->kind != NMC_JV_NONE) need_str(r, n, a0, "strip argument");
        return jstr_strip(r->a, s, a0, !IS("rstrip"), !IS("lstrip"));
    }
    if (IS("split") || IS("rsplit")) {
        const nmc_jv_t *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
        if (sep && sep->kind != NMC_JV_NONE) need_str(r, n, sep, "separator");
        if (sep && sep->kind == NMC_JV_STRING && sep->u.s.n == 0)
            jfail_at(r, n, "jinja-value", "empty separator");
        return str_split(r, s, sep, mx ? need_int(r, n, mx, "maxsplit") : -1, IS("rsplit"));
    }
    if (IS("replace")) {
        if (!a0 || !a1) jfail_at(r, n, "jinja-type", "replace() takes at least 2 arguments");
        need_str(r, n, a0, "replace() argument 1");
        need_str(r, n, a1, "replace() argument 2");
        const nmc_jv_t *c = arg(a, 2, "count");
        return str_replace(r, s, *a0, *a1, c ? need_int(r, n, c, "count") : -1);
    }
    if (IS("upper")) return map_case(r, s, 0);
    if (IS("lower") || IS("casefold")) return map_case(r, s, 1);
    if (IS("title")) return map_case(r, s, 2);
    if (IS("capitalize")) return map_case(r, s, 3);
    if (IS("find") || IS("rfind") || IS("index") || IS("rindex")) {
        if (!a0) jfail_at(r, n, "jinja-type", "%s() takes at least 1 argument (0 given)", m);
        need_str(r, n, a0, "substring");
        nmc_jv_t pos = str_find(s, a0, m[0] == 'r');
        if (pos.u.i < 0 && strstr(m, "index")) jfail_at(r, n, "jinja-value", "substring not found");
        return pos;
    }
    if (IS("count")) {
        if (!a0) jfail_at(r, n, "jinja-type", "count() takes at least 1 argument (0 given)");
        need_str(r, n, a0, "substring");
        if (a0->u.s.n == 0) return nmc_jv_int((int64_t)utf8_count(s.u.s.p, s.u.s.n) + 1);
        int64_t c = 0;
        for (size_t i = 0; i + a0->u.s.n <= s.u.s.n;)
            if (memcmp(s.u.s.p + i, a0->u.s.p, a0->u.s.n) == 0) c++, i += a0->u.s.n;
            else i++;
        return nmc_jv_int(c);
    }
    if (IS("join")) {
        if (!a0) jfail_at(r, n, "jinja-type", "join() takes exactly one argument (0 given)");
        return str_join(r, n, s, a0);
    }
    if (IS("isdigit")) return nmc_jv_bool(all_chars(s, 0));
    if (IS("isalpha")) return nmc_jv_bool(all_chars(s, 1));
    if (IS("isalnum")) return nmc_jv_bool(all_chars(s, 2));
    if (IS("isspace")) return nmc_jv_bool(all_chars(s, 3));
    if (IS("islower")) return nmc_jv_bool(all_chars(s, 4));
    if (IS("isupper")) return nmc_jv_bool(all_chars(s, 5));
#undef IS
    jfail_at(r, n, "jinja-unsupported", "unsupported method: str.%s()", m);
}

static nmc_jv_t items_list(nmc_jinja_render_t *r, const nmc_jdict_t *d, int what) {
    nmc_jv_t out = nmc_jv_list(r->a);
    for (size_t i = 0; i < d->n; i++) {
        if (what == 0) nmc_jlist_push(r->a, out.u.list, d->keys[i]);
        else if (what == 1) nmc_jlist_push(r->a, out.u.list, d->vals[i]);
        else {
            nmc_jv_t t = nmc_jv_list(r->a);
            t.u.list->is_tuple = true;
            nmc_jlist_push(r->a, t.u.list, d->keys[i]);
            nmc_jlist_push(r->a, t.u.list, d->vals[i]);
            nmc_jlist_push(r->a, out.u.list, t);
        }
    }
    return out;
}

static nmc_jv_t call_dict_method(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t d,
                                 const char *m, const argv_t *a) {
    if (strcmp(m, "get") == 0) {
        const nmc_jv_t *k = arg(a, 0, NULL), *def = arg(a, 1, NULL);
        if (!k) jfail_at(r, n, "jinja-type", "get expected at least 1 argument, got 0");
        for (size_t i = 0; i < d.u.dict->n; i++)
            if (nmc_jv_equal(&d.u.dict->keys[i], k)) return d.u.dict->vals[i];
        return def ? *def : nmc_jv_none();
    }
    if (strcmp(m, "keys") == 0) return items_list(r, d.u.dict, 0);
    if (strcmp(m, "values") == 0) return items_list(r, d.u.dict, 1);
    if (strcmp(m, "items") == 0) return items_list(r, d.u.dict, 2);
    if (strcmp(m, "copy") == 0) return d;
    jfail_at(r, n, "jinja-unsupported", "unsupported method: dict.%s()", m);
}

static nmc_jv_t call_list_method(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t l,
                                 const char *m, const argv_t *a) {
    const nmc_jv_t *x = arg(a, 0, NULL);
    if (strcmp(m, "copy") == 0) return l;
    if (!x) jfail_at(r, n, "jinja-type", "list.%s() takes exactly one argument (0 given)", m);
    int64_t c = 0;
    for (size_t i = 0; i < l.u.list->n; i++) {
        if (!nmc_jv_equal(&l.u.list->items[i], x)) continue;
        if (m[0] == 'i') return nmc_jv_int((int64_t)i);
        c++;
    }
    if (m[0] == 'i') jfail_at(r, n, "jinja-value", "value is not in list");
    return nmc_jv_int(c);
}

nmc_jv_t jb_call_bound(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *bv,
                       const nmc_jv_t *args, size_t nargs, const nmc_jv_t *kwn,
                       const nmc_jv_t *kwv, size_t nkw) {
    const jbound_t *b = bv->u.ptr;
    argv_t a = {args, kwn, kwv, nargs, nkw};
    char m[32];
    snprintf(m, sizeof m, "%.*s", (int)b->len, b->name);
    switch (b->self.kind) {
    case NMC_JV_STRING: return call_str_method(r, n, b->self, m, &a);
    case NMC_JV_DICT: return call_dict_method(r, n, b->self, m, &a);
    case NMC_JV_LIST: return call_list_method(r, n, b->self, m, &a);
    case NMC_JV_LOOP: {
        if (nargs == 0) jfail_at(r, n, "jinja-type", "no items for cycling given");
        nmc_jv_t idx = jeval_getattr(r, &b->self, "index0", 6);
        return args[idx.u.i % (int64_t)nargs];
    }
    default: jfail_at(r, n, "jinja-unsupported", "unsupported method: %s", m);
    }
}

/* ---- built-in globals ----------------------------------------------------------------- */
static void g_range(nmc_jinja_render_t *r, void *ud, const nmc_jv_t *args, size_t nargs,
                    const nmc_jv_t *kwn, const nmc_jv_t *kwv, size_t nkw, nmc_jv_t *out) {
    (void)ud, (void)kwn, (void)kwv;
    if (nargs < 1 || nargs > 3 || nkw) nmc_jinja_fail(r, "jinja-type", "range expected 1 to 3 integer arguments");
    int64_t v[3] = {0, 0, 1};
    for (size_t i = 0; i < nargs; i++) v[nargs == 1 ? 1 : i] = need_int(r, NULL, &args[i], "range() argument");
    if (v[2] == 0) nmc_jinja_fail(r, "jinja-value", "range() arg 3 must not be zero");
    /* MAX_RANGE of Jinja's sandbox is 100000 items */
    int64_t count = v[2] > 0 ? (v[1] - v[0] + v[2] - 1) / v[2] : (v[0] - v[1] - v[2] - 1) / -v[2];
    if (count > 100000) nmc_jinja_fail(r, "jinja-security", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    *out = nmc_jv_list(r->a);
    for (int64_t i = 0; i < count; i++) nmc_jlist_push(r->a, out->u.list, nmc_jv_int(v[0] + i * v[2]));
}

static void g_namespace(nmc_jinja_render_t *r, void *ud, const nmc_jv_t *args, size_t nargs,
                        const nmc_jv_t *kwn, const nmc_jv_t *kwv, size_t nkw, nmc_jv_t *out) {
    (void)ud;
    *out = nmc_jv_dict(r->a);
    for (size_t i = 0; i < nargs; i++) {
        if (args[i].kind != NMC_JV_DICT) nmc_jinja_fail(r, "jinja-type", "namespace() positional argument must be a dict");
        for (size_t k = 0; k < args[i].u.dict->n; k++)
            nmc_jdict_set(r->a, out->u.dict, args[i].u.dict->keys[k], args[i].u.dict->vals[k]);
    }
    for (size_t i = 0; i < nkw; i++) {
        if (ud == NULL && kwn[i].u.s.n && kwn[i].u.s.p[0] == '_')
            nmc_jinja_fail(r, "jinja-security", "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '%.*s'. Please rename the attribute.", (int)kwn[i].u.s.n, kwn[i].u.s.p);
        nmc_jdict_set(r->a, out->u.dict, kwn[i], kwv[i]);
    }
    out->kind = NMC_JV_NAMESPACE;
}

static void g_dict(nmc_jinja_render_t *r, void *ud, const nmc_jv_t *args, size_t nargs,
                   const nmc_jv_t *kwn, const nmc_jv_t *kwv, size_t nkw, nmc_jv_t *out) {
    g_namespace(r, (void *)1, args, nargs, kwn, kwv, nkw, out);
    (void)ud;
    out->kind = NMC_JV_DICT;
}

static void g_raise(nmc_jinja_render_t *r, void *ud, const nmc_jv_t *args, size_t nargs,
                    const nmc_jv_t *kwn, const nmc_jv_t *kwv, size_t nkw, nmc_jv_t *out) {
    (void)ud, (void)out;
    const nmc_jv_t *m = nargs ? &args[0] : NULL;
    for (size_t i = 0; !m && i < nkw; i++)
        if (kwn[i].u.s.n == 7 && memcmp(kwn[i].u.s.p, "message", 7) == 0) m = &kwv[i];
    if (!m) nmc_jinja_fail(r, "jinja-type", "raise_exception() missing 1 required positional argument: 'message'");
    nmc_jv_t s = to_str(r, m);
    nmc_jinja_fail(r, "jinja-raise", "%.*s", (int)s.u.s.n, s.u.s.p);
}

nmc_jv_t jb_global(nmc_jinja_render_t *r, const char *name, size_t len) {
    static const nmc_jfunc_t fns[] = {{"range", g_range, NULL},
                                      {"namespace", g_namespace, NULL},
                                      {"dict", g_dict, NULL},
                                      {"raise_exception", g_raise, NULL}};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if (strlen(fns[i].name) == len && memcmp(fns[i].name, name, len) == 0)
            return (nmc_jv_t){.kind = NMC_JV_FUNC, .u.fn = &fns[i]};
    if ((len == 6 && memcmp(name, "lipsum", 6) == 0) || (len == 6 && memcmp(name, "cycler", 6) == 0) ||
        (len == 6 && memcmp(name, "joiner", 6) == 0))
        nmc_jinja_fail(r, "jinja-unsupported", "unsupported global: %.*s", (int)len, name);
    return nmc_jv_undefined();
}

/* ---- tests ------------------------------------------------------------------------------ */
static bool is_number(const nmc_jv_t *v) {
    return v->kind == NMC_JV_INT || v->kind == NMC_JV_FLOAT || v->kind == NMC_JV_BOOL;
}

static bool test_compare(nmc_jinja_render_t *r, const jnode_t *n, const char *t, nmc_jv_t v,
                         const nmc_jv_t *x) {
    if (!x) jfail_at(r, n, "jinja-type", "test '%s' needs an argument", t);
    if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "==")) return nmc_jv_equal(&v, x);
    if (!strcmp(t, "ne") || !strcmp(t, "!=")) return !nmc_jv_equal(&v, x);
    if (!strcmp(t, "sameas")) {
        if (v.kind != x->kind) return false;
        if (v.kind == NMC_JV_NONE || v.kind == NMC_JV_UNDEFINED) return true;
        if (v.kind == NMC_JV_BOOL) return v.u.b == x->u.b;
        if (v.kind == NMC_JV_INT) return v.u.i == x->u.i && v.u.i >= -5 && v.u.i <= 256; /* small-int cache */
        return v.u.ptr == x->u.ptr;
    }
    if (!strcmp(t, "in")) {
        nmc_jv_t res = nmc_jv_bool(false);
        nmc_jlist_t *items = NULL;
        if (x->kind == NMC_JV_STRING) {
            if (v.kind != NMC_JV_STRING) jfail_at(r, n, "jinja-type", "'in <string>' requires string as left operand, not %s", jv_type_name(&v));
            return find_sub(x->u.s.p, x->u.s.n, v.u.s.p, v.u.s.n) != NULL;
        }
        items = jb_iter(r, n, x);
        for (size_t i = 0; i < items->n && !res.u.b; i++) res.u.b = nmc_jv_equal(&v, &items->items[i]);
        return res.u.b;
    }
    bool ok;
    if (v.kind == NMC_JV_UNDEFINED) jundef_fail(r, n, &v);
    int c = jv_compare(&v, x, &ok);
    if (!ok) jfail_at(r, n, "jinja-type", "'%s' not supported between instances of '%s' and '%s'", t, jv_type_name(&v), jv_type_name(x));
    if (!strcmp(t, "lt") || !strcmp(t, "lessthan") || !strcmp(t, "<")) return c < 0;
    if (!strcmp(t, "le") || !strcmp(t, "<=")) return c <= 0;
    if (!strcmp(t, "gt") || !strcmp(t, "greaterthan") || !strcmp(t, ">")) return c > 0;
    return c >= 0;
}

static const char *const FILTER_NAMES[];

bool jb_test(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const nmc_jv_t *args, size_t nargs) {
    char t[32];
    snprintf(t, sizeof t, "%.*s", (int)n->name_len, n->name);
    const nmc_jv_t *x = nargs ? &args[0] : NULL;
    nmc_jv_kind_t k = v.kind;
    if (!strcmp(t, "defined")) return k != NMC_JV_UNDEFINED;
    if (!strcmp(t, "undefined")) return k == NMC_JV_UNDEFINED;
    if (!strcmp(t, "none")) return k == NMC_JV_NONE;
    if (!strcmp(t, "boolean")) return k == NMC_JV_BOOL;
    if (!strcmp(t, "true")) return k == NMC_JV_BOOL && v.u.b;
    if (!strcmp(t, "false")) return k == NMC_JV_BOOL && !v.u.b;
    if (!strcmp(t, "integer")) return k == NMC_JV_INT;
    if (!strcmp(t, "float")) return k == NMC_JV_FLOAT;
    if (!strcmp(t, "number")) return is_number(&v);
    if (!strcmp(t, "string")) return k == NMC_JV_STRING;
    if (!strcmp(t, "mapping")) return k == NMC_JV_DICT;
    if (!strcmp(t, "iterable"))
        return k == NMC_JV_UNDEFINED || k == NMC_JV_STRING || k == NMC_JV_LIST || k == NMC_JV_DICT;
    if (!strcmp(t, "sequence")) return k == NMC_JV_STRING || k == NMC_JV_LIST || k == NMC_JV_DICT;
    if (!strcmp(t, "callable")) return k == NMC_JV_FUNC || k == NMC_JV_MACRO || k == NMC_JV_BOUND;
    if (!strcmp(t, "escaped")) return false;
    if (!strcmp(t, "odd") || !strcmp(t, "even")) {
        int64_t i = need_int(r, n, &v, "value");
        return (i % 2 != 0) == (t[0] == 'o');
    }
    if (!strcmp(t, "divisibleby")) {
        int64_t d = x ? need_int(r, n, x, "divisor") : 0;
        if (d == 0) jfail_at(r, n, "jinja-value", "division by zero");
        return need_int(r, n, &v, "value") % d == 0;
    }
    if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (k != NMC_JV_STRING) return false;
        return all_chars(v, t[0] == 'l' ? 4 : 5);
    }
    if (!strcmp(t, "filter")) return x && x->kind == NMC_JV_STRING && in_list(FILTER_NAMES, x->u.s.p, x->u.s.n);
    static const char *const cmp[] = {"eq", "equalto", "==", "ne", "!=", "sameas", "in", "lt",
                                      "lessthan", "<", "le", "<=", "gt", "greaterthan", ">",
                                      "ge", ">=", NULL};
    if (in_list(cmp, t, strlen(t))) return test_compare(r, n, t, v, x);
    jfail_at(r, n, "jinja-unsupported", "unsupported test '%s'", t);
}

/* Run test `name` from a filter (select/reject/selectattr). */
static bool run_test(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *name, nmc_jv_t v,
                     const nmc_jv_t *args, size_t nargs) {
    if (!name) return jv_truthy(&v);
    jnode_t tn = *n;
    tn.name = need_str(r, n, name, "test name");
    tn.name_len = name->u.s.n;
    return jb_test(r, &tn, v, args, nargs);
}

/* ---- filters ----------------------------------------------------------------------------- */
/* Jinja's make_attrgetter: dotted path, each part looked up with getitem (ints for digits). */
static nmc_jv_t attr_path(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const nmc_jv_t *path) {
    if (path->kind == NMC_JV_INT) return jeval_getitem(r, n, &v, path);
    const char *p = need_str(r, n, path, "attribute"), *end = p + path->u.s.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(end - p);
        bool digits = len > 0;
        for (size_t i = 0; i < len; i++) digits &= p[i] >= '0' && p[i] <= '9';
        nmc_jv_t key = digits ? nmc_jv_int(strtoll(p, NULL, 10)) : mkstr(p, len);
        if (v.kind == NMC_JV_UNDEFINED) return v;
        v = jeval_getitem(r, n, &v, &key);
        if (!dot) break;
        p = dot + 1;
    }
    return v;
}

static nmc_jv_t f_tojson(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a) {
    const nmc_jv_t *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"),
                   *sep = arg(a, 2, "separators"), *sk = arg(a, 3, "sort_keys");
    const char *indent = NULL;
    size_t ilen = 0;
    if (ind && ind->kind == NMC_JV_INT) {
        char *sp = nmc_arena_alloc(r->a, ind->u.i > 0 ? (size_t)ind->u.i + 1 : 1);
        for (int64_t i = 0; i < ind->u.i; i++) sp[i] = ' ';
        indent = sp;
        ilen = ind->u.i > 0 ? (size_t)ind->u.i : 0;
    } else if (ind && ind->kind == NMC_JV_STRING) {
        indent = ind->u.s.p;
        ilen = ind->u.s.n;
    } else if (ind && ind->kind != NMC_JV_NONE)
        jfail_at(r, n, "jinja-type", "tojson indent must be an int, a str or None, not %s", jv_type_name(ind));
    const char *isep = indent ? "," : ", ", *ksep = ": ";
    if (sep && sep->kind != NMC_JV_NONE) {
        if (sep->kind != NMC_JV_LIST || sep->u.list->n != 2 || sep->u.list->items[0].kind != NMC_JV_STRING ||
            sep->u.list->items[1].kind != NMC_JV_STRING)
            jfail_at(r, n, "jinja-type", "tojson separators must be a pair of strings");
        isep = nmc_arena_strndup(r->a, sep->u.list->items[0].u.s.p, sep->u.list->items[0].u.s.n);
        ksep = nmc_arena_strndup(r->a, sep->u.list->items[1].u.s.p, sep->u.list->items[1].u.s.n);
    }
    if (ea && jv_truthy(ea))
        jfail_at(r, n, "jinja-unsupported", "unsupported: tojson(ensure_ascii=True)");
    jbuf_t b;
    jbuf_init(&b, r->a);
    jbuf_put(&b, "", 0);
    const nmc_jv_t *bad = NULL;
    if (jv_write_json(&b, &v, indent, ilen, isep, ksep, sk && jv_truthy(sk), 0, &bad)) {
        if (bad->kind == NMC_JV_LIST || bad->kind == NMC_JV_DICT)
            jfail_at(r, n, "jinja-limit", "tojson: value nests deeper than %d", NMC_JINJA_MAX_DEPTH);
        if (bad->kind == NMC_JV_UNDEFINED) jfail_at(r, n, "jinja-type", "Object of type Undefined is not JSON serializable");
        jfail_at(r, n, "jinja-type", "Object of type %s is not JSON serializable", jv_type_name(bad));
    }
    return mkstr(b.p, b.n);
}

static int64_t length_of(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *v) {
    switch (v->kind) {
    case NMC_JV_UNDEFINED: return 0;
    case NMC_JV_STRING: return (int64_t)utf8_count(v->u.s.p, v->u.s.n);
    case NMC_JV_LIST: return (int64_t)v->u.list->n;
    case NMC_JV_DICT: return (int64_t)v->u.dict->n;
    default: jfail_at(r, n, "jinja-type", "object of type '%s' has no len()", jv_type_name(v));
    }
}

static nmc_jv_t f_select(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a,
                         bool by_attr, bool keep) {
    nmc_jlist_t *items = jb_iter(r, n, &v);
    nmc_jv_t out = nmc_jv_list(r->a);
    size_t first = by_attr ? 1 : 0;
    const nmc_jv_t *attr = by_attr ? arg(a, 0, NULL) : NULL;
    if (by_attr && !attr) jfail_at(r, n, "jinja-type", "missing parameter for attribute name");
    const nmc_jv_t *test = arg(a, first, NULL);
    size_t targs = a->nargs > first + 1 ? a->nargs - first - 1 : 0;
    for (size_t i = 0; i < items->n; i++) {
        nmc_jv_t x = by_attr ? attr_path(r, n, items->items[i], attr) : items->items[i];
        if (run_test(r, n, test, x, a->args + first + 1, targs) == keep)
            nmc_jlist_push(r->a, out.u.list, items->items[i]);
    }
    return out;
}

static nmc_jv_t f_map(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a) {
    nmc_jlist_t *items = jb_iter(r, n, &v);
    nmc_jv_t out = nmc_jv_list(r->a);
    const nmc_jv_t *attr = arg(a, 99, "attribute"), *def = arg(a, 99, "default");
    for (size_t i = 0; i < items->n; i++) {
        nmc_jv_t x = items->items[i];
        if (attr) {
            x = attr_path(r, n, x, attr);
            if (x.kind == NMC_JV_UNDEFINED && def) x = *def;
        } else {
            if (a->nargs == 0) jfail_at(r, n, "jinja-type", "map requires a filter argument");
            jnode_t fn = *n;
            fn.name = need_str(r, n, &a->args[0], "filter name");
            fn.name_len = a->args[0].u.s.n;
            x = jb_filter(r, &fn, x, a->args + 1, a->nargs - 1, a->kwn, a->kwv, a->nkw);
        }
        nmc_jlist_push(r->a, out.u.list, x);
    }
    return out;
}

static nmc_jv_t f_join(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a) {
    const nmc_jv_t *d = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
    nmc_jlist_t *items = jb_iter(r, n, &v);
    jbuf_t b;
    jbuf_init(&b, r->a);
    jbuf_put(&b, "", 0);
    for (size_t i = 0; i < items->n; i++) {
        if (i && d) jv_write_str(&b, d);
        nmc_jv_t x = attr ? attr_path(r, n, items->items[i], attr) : items->items[i];
        jv_write_str(&b, &x);
    }
    return mkstr(b.p, b.n);
}

static nmc_jv_t f_int(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a) {
    const nmc_jv_t *def = arg(a, 0, "default");
    nmc_jv_t fallback = def ? *def : nmc_jv_int(0);
    (void)n;
    if (v.kind == NMC_JV_INT) return v;
    if (v.kind == NMC_JV_BOOL) return nmc_jv_int(v.u.b);
    if (v.kind == NMC_JV_FLOAT) return isfinite(v.u.d) ? nmc_jv_int((int64_t)v.u.d) : fallback;
    if (v.kind != NMC_JV_STRING) return fallback;
    nmc_jv_t s = jstr_strip(r->a, v, NULL, true, true);
    char *txt = nmc_arena_strndup(r->a, s.u.s.p, s.u.s.n), *end;
    if (!*txt) return fallback;
    long long i = strtoll(txt, &end, 10);
    if (!*end) return nmc_jv_int(i);
    double d = strtod(txt, &end);
    return !*end && isfinite(d) ? nmc_jv_int((int64_t)d) : fallback;
}

static nmc_jv_t f_float(nmc_jinja_render_t *r, nmc_jv_t v, const argv_t *a) {
    const nmc_jv_t *def = arg(a, 0, "default");
    nmc_jv_t fallback = def ? *def : nmc_jv_float(0.0);
    if (v.kind == NMC_JV_FLOAT) return v;
    if (v.kind == NMC_JV_INT || v.kind == NMC_JV_BOOL) return nmc_jv_float(v.kind == NMC_JV_INT ? (double)v.u.i : v.u.b);
    if (v.kind != NMC_JV_STRING) return fallback;
    nmc_jv_t s = jstr_strip(r->a, v, NULL, true, true);
    char *txt = nmc_arena_strndup(r->a, s.u.s.p, s.u.s.n), *end;
    double d = strtod(txt, &end);
    return *txt && !*end ? nmc_jv_float(d) : fallback;
}

static nmc_jv_t f_escape(nmc_jinja_render_t *r, nmc_jv_t v) {
    nmc_jv_t s = to_str(r, &v);
    jbuf_t b;
    jbuf_init(&b, r->a);
    jbuf_put(&b, "", 0);
    for (size_t i = 0; i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        if (c == '&') jbuf_puts(&b, "&amp;");
        else if (c == '<') jbuf_puts(&b, "&lt;");
        else if (c == '>') jbuf_puts(&b, "&gt;");
        else if (c == '"') jbuf_puts(&b, "&#34;");
        else if (c == '\'') jbuf_puts(&b, "&#39;");
        else jbuf_putc(&b, c);
    }
    return mkstr(b.p, b.n);
}

static nmc_jv_t f_indent(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a) {
    const nmc_jv_t *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
    nmc_jv_t s = to_str(r, &v), pad;
    if (w && w->kind == NMC_JV_STRING) pad = *w;
    else {
        int64_t k = w ? need_int(r, n, w, "width") : 4;
        char *sp = nmc_arena_alloc(r->a, k > 0 ? (size_t)k + 1 : 1);
        for (int64_t i = 0; i < k; i++) sp[i] = ' ';
        pad = mkstr(sp, k > 0 ? (size_t)k : 0);
    }
    jbuf_t b;
    jbuf_init(&b, r->a);
    jbuf_put(&b, "", 0);
    if (first && jv_truthy(first)) jbuf_put(&b, pad.u.s.p, pad.u.s.n);
    bool blank_too = blank && jv_truthy(blank);
    for (size_t i = 0; i < s.u.s.n; i++) {
        jbuf_putc(&b, s.u.s.p[i]);
        if (s.u.s.p[i] != '\n' || i + 1 == s.u.s.n) continue;
        bool next_blank = s.u.s.p[i + 1] == '\n';
        if (blank_too || !next_blank) jbuf_put(&b, pad.u.s.p, pad.u.s.n);
    }
    return mkstr(b.p, b.n);
}

static nmc_jv_t f_list_of(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v) {
    nmc_jlist_t *items = jb_iter(r, n, &v);
    nmc_jv_t out = nmc_jv_list(r->a);
    for (size_t i = 0; i < items->n; i++) nmc_jlist_push(r->a, out.u.list, items->items[i]);
    return out;
}

static nmc_jv_t f_first_last(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, bool last) {
    nmc_jlist_t *items = jb_iter(r, n, &v);
    if (items->n == 0) {
        jundef_t *u = nmc_arena_alloc(r->a, sizeof *u);
        u->hint = last ? "No last item, sequence was empty." : "No first item, sequence was empty.";
        return (nmc_jv_t){.kind = NMC_JV_UNDEFINED, .u.ptr = u};
    }
    return items->items[last ? items->n - 1 : 0];
}

static nmc_jv_t f_items(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v) {
    if (v.kind == NMC_JV_UNDEFINED) return nmc_jv_list(r->a);
    if (v.kind != NMC_JV_DICT) jfail_at(r, n, "jinja-type", "Can only get item pairs from a mapping.");
    return items_list(r, v.u.dict, 2);
}

static nmc_jv_t f_unique_sort(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a,
                              bool unique) {
    nmc_jlist_t *items = jb_iter(r, n, &v);
    nmc_jv_t out = nmc_jv_list(r->a);
    const nmc_jv_t *attr = arg(a, unique ? 1 : 2, "attribute");
    const nmc_jv_t *rev = unique ? NULL : arg(a, 0, "reverse");
    const nmc_jv_t *cs = arg(a, unique ? 0 : 1, "case_sensitive");
    bool case_sens = cs && jv_truthy(cs);
    nmc_jv_t *keys = nmc_arena_alloc(r->a, (items->n + 1) * sizeof *keys);
    for (size_t i = 0; i < items->n; i++) {
        nmc_jv_t k = attr ? attr_path(r, n, items->items[i], attr) : items->items[i];
        keys[i] = k.kind == NMC_JV_STRING && !case_sens ? map_case(r, k, 1) : k;
        bool dup = false;
        for (size_t j = 0; unique && j < out.u.list->n && !dup; j++) {
            nmc_jv_t seen = attr ? attr_path(r, n, out.u.list->items[j], attr) : out.u.list->items[j];
            if (seen.kind == NMC_JV_STRING && !case_sens) seen = map_case(r, seen, 1);
            dup = nmc_jv_equal(&seen, &keys[i]);
        }
        if (!dup) nmc_jlist_push(r->a, out.u.list, items->items[i]);
    }
    if (unique) return out;
    bool desc = rev && jv_truthy(rev);
    for (size_t i = 1; i < out.u.list->n; i++) { /* stable insertion sort, as sorted() */
        nmc_jv_t item = out.u.list->items[i], key = keys[i];
        size_t j = i;
        for (; j > 0; j--) {
            bool ok;
            int c = jv_compare(&keys[j - 1], &key, &ok);
            if (!ok) jfail_at(r, n, "jinja-type", "'<' not supported between instances of '%s' and '%s'", jv_type_name(&keys[j - 1]), jv_type_name(&key));
            if (desc ? c >= 0 : c <= 0) break;
            out.u.list->items[j] = out.u.list->items[j - 1];
            keys[j] = keys[j - 1];
        }
        out.u.list->items[j] = item;
        keys[j] = key;
    }
    return out;
}

static nmc_jv_t f_minmax_sum(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a, int what) {
    nmc_jlist_t *items = jb_iter(r, n, &v);
    const nmc_jv_t *attr = arg(a, what == 2 ? 0 : 1, "attribute");
    if (what == 2) { /* sum */
        const nmc_jv_t *start = arg(a, 1, "start");
        nmc_jv_t acc = start ? *start : nmc_jv_int(0);
        for (size_t i = 0; i < items->n; i++) {
            nmc_jv_t x = attr ? attr_path(r, n, items->items[i], attr) : items->items[i];
            if (!is_number(&x) || !is_number(&acc)) jfail_at(r, n, "jinja-type", "sum: unsupported operand type(s) for +: '%s' and '%s'", jv_type_name(&acc), jv_type_name(&x));
            if (acc.kind == NMC_JV_FLOAT || x.kind == NMC_JV_FLOAT)
                acc = nmc_jv_float((acc.kind == NMC_JV_FLOAT ? acc.u.d : (double)(acc.kind == NMC_JV_INT ? acc.u.i : acc.u.b)) +
                                   (x.kind == NMC_JV_FLOAT ? x.u.d : (double)(x.kind == NMC_JV_INT ? x.u.i : x.u.b)));
            else acc = nmc_jv_int((acc.kind == NMC_JV_INT ? acc.u.i : acc.u.b) + (x.kind == NMC_JV_INT ? x.u.i : x.u.b));
        }
        return acc;
    }
    if (items->n == 0) {
        jundef_t *u = nmc_arena_alloc(r->a, sizeof *u);
        u->hint = "No aggregated item, sequence was empty.";
        return (nmc_jv_t){.kind = NMC_JV_UNDEFINED, .u.ptr = u};
    }
    size_t best = 0;
    for (size_t i = 1; i < items->n; i++) {
        nmc_jv_t x = attr ? attr_path(r, n, items->items[i], attr) : items->items[i];
        nmc_jv_t y = attr ? attr_path(r, n, items->items[best], attr) : items->items[best];
        if (x.kind == NMC_JV_STRING) x = map_case(r, x, 1);
        if (y.kind == NMC_JV_STRING) y = map_case(r, y, 1);
        bool ok;
        int c = jv_compare(&x, &y, &ok);
        if (!ok) jfail_at(r, n, "jinja-type", "values are not comparable");
        if (what == 0 ? c < 0 : c > 0) best = i;
    }
    return items->items[best];
}

static nmc_jv_t f_round(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const argv_t *a) {
    const nmc_jv_t *p = arg(a, 0, "precision"), *m = arg(a, 1, "method");
    int64_t prec = p ? need_int(r, n, p, "precision") : 0;
    if (!is_number(&v)) jfail_at(r, n, "jinja-type", "round: expected a number, got %s", jv_type_name(&v));
    double d = v.kind == NMC_JV_FLOAT ? v.u.d : (double)(v.kind == NMC_JV_INT ? v.u.i : v.u.b);
    double f = pow(10.0, (double)prec);
    const char *meth = m ? need_str(r, n, m, "method") : "common";
    if (!strcmp(meth, "common")) d = nearbyint(d * f) / f; /* Python round(): half to even */
    else if (!strcmp(meth, "ceil")) d = ceil(d * f) / f;
    else if (!strcmp(meth, "floor")) d = floor(d * f) / f;
    else jfail_at(r, n, "jinja-type", "method must be common, ceil or floor");
    return nmc_jv_float(d);
}

static const char *const FILTER_NAMES[] = {
    "abs", "attr", "capitalize", "count", "d", "default", "e", "escape", "first", "float",
    "forceescape", "indent", "int", "items", "join", "last", "length", "list", "lower", "map",
    "max", "min", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
    "selectattr", "sort", "string", "sum", "title", "tojson", "trim", "unique", "upper",
    "wordcount", NULL};

static nmc_jv_t filter_more(nmc_jinja_render_t *r, const jnode_t *n, const char *f, nmc_jv_t v,
                            const argv_t *a);

nmc_jv_t jb_filter(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const nmc_jv_t *args,
                   size_t nargs, const nmc_jv_t *kwn, const nmc_jv_t *kwv, size_t nkw) {
    argv_t a = {args, kwn, kwv, nargs, nkw};
    char f[32];
    snprintf(f, sizeof f, "%.*s", (int)n->name_len, n->name);
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        const nmc_jv_t *dv = arg(&a, 0, "default_value"), *bo = arg(&a, 1, "boolean");
        bool use = v.kind == NMC_JV_UNDEFINED || (bo && jv_truthy(bo) && !jv_truthy(&v));
        return use ? (dv ? *dv : mkstr("", 0)) : v;
    }
    if (!strcmp(f, "tojson")) return f_tojson(r, n, v, &a);
    if (!strcmp(f, "length") || !strcmp(f, "count")) return nmc_jv_int(length_of(r, n, &v));
    if (!strcmp(f, "string")) return to_str(r, &v);
    if (!strcmp(f, "safe")) return v;
    if (!strcmp(f, "trim")) {
        const nmc_jv_t *chars = arg(&a, 0, "chars");
        return jstr_strip(r->a, to_str(r, &v), chars, true, true);
    }
    if (!strcmp(f, "upper")) return map_case(r, to_str(r, &v), 0);
    if (!strcmp(f, "lower")) return map_case(r, to_str(r, &v), 1);
    if (!strcmp(f, "capitalize")) return map_case(r, to_str(r, &v), 3);
    if (!strcmp(f, "title")) return jinja_title(r, to_str(r, &v));
    if (!strcmp(f, "join")) return f_join(r, n, v, &a);
    if (!strcmp(f, "list")) return f_list_of(r, n, v);
    if (!strcmp(f, "items")) return f_items(r, n, v);
    if (!strcmp(f, "first") || !strcmp(f, "last")) return f_first_last(r, n, v, f[0] == 'l');
    if (!strcmp(f, "select") || !strcmp(f, "reject")) return f_select(r, n, v, &a, false, f[0] == 's');
    if (!strcmp(f, "selectattr") || !strcmp(f, "rejectattr")) return f_select(r, n, v, &a, true, f[0] == 's');
    if (!strcmp(f, "map")) return f_map(r, n, v, &a);
    return filter_more(r, n, f, v, &a);
}

static nmc_jv_t filter_more(nmc_jinja_render_t *r, const jnode_t *n, const char *f, nmc_jv_t v,
                            const argv_t *a) {
    if (!strcmp(f, "replace")) {
        const nmc_jv_t *o = arg(a, 0, "old"), *nw = arg(a, 1, "new"), *c = arg(a, 2, "count");
        if (!o || !nw) jfail_at(r, n, "jinja-type", "replace filter needs old and new");
        return str_replace(r, to_str(r, &v), to_str(r, o), to_str(r, nw),
                           c && c->kind != NMC_JV_NONE ? need_int(r, n, c, "count") : -1);
    }
    if (!strcmp(f, "int")) return f_int(r, n, v, a);
    if (!strcmp(f, "float")) return f_float(r, v, a);
    if (!strcmp(f, "escape") || !strcmp(f, "e") || !strcmp(f, "forceescape")) return f_escape(r, v);
    if (!strcmp(f, "indent")) return f_indent(r, n, v, a);
    if (!strcmp(f, "unique")) return f_unique_sort(r, n, v, a, true);
    if (!strcmp(f, "sort")) return f_unique_sort(r, n, v, a, false);
    if (!strcmp(f, "min")) return f_minmax_sum(r, n, v, a, 0);
    if (!strcmp(f, "max")) return f_minmax_sum(r, n, v, a, 1);
    if (!strcmp(f, "sum")) return f_minmax_sum(r, n, v, a, 2);
    if (!strcmp(f, "round")) return f_round(r, n, v, a);
    if (!strcmp(f, "abs")) {
        if (v.kind == NMC_JV_FLOAT) return nmc_jv_float(fabs(v.u.d));
        int64_t i = need_int(r, n, &v, "abs() argument");
        return nmc_jv_int(i < 0 ? -i : i);
    }
    if (!strcmp(f, "attr")) {
        const nmc_jv_t *name = arg(a, 0, "name");
        if (!name) jfail_at(r, n, "jinja-type", "attr filter needs a name");
        need_str(r, n, name, "attribute name");
        if (v.kind == NMC_JV_UNDEFINED) jundef_fail(r, n, &v);
        if (v.kind == NMC_JV_DICT) { /* getattr only: dict keys are not attributes */
            nmc_jv_t m = jb_method(r, v, name->u.s.p, name->u.s.n);
            return m.kind != NMC_JV_UNDEFINED ? m : jundef_make(r->a, name->u.s.p, name->u.s.n, &v);
        }
        return jeval_getattr(r, &v, name->u.s.p, name->u.s.n);
    }
    if (!strcmp(f, "reverse")) {
        if (v.kind == NMC_JV_STRING) {
            nmc_jlist_t *chars = jb_iter(r, n, &v);
            jbuf_t b;
            jbuf_init(&b, r->a);
            jbuf_put(&b, "", 0);
            for (size_t i = chars->n; i-- > 0;) jbuf_put(&b, chars->items[i].u.s.p, chars->items[i].u.s.n);
            return mkstr(b.p, b.n);
        }
        nmc_jlist_t *items = jb_iter(r, n, &v);
        nmc_jv_t out = nmc_jv_list(r->a);
        for (size_t i = items->n; i-- > 0;) nmc_jlist_push(r->a, out.u.list, items->items[i]);
        return out;
    }
    if (!strcmp(f, "wordcount")) {
        nmc_jv_t s = to_str(r, &v);
        int64_t c = 0;
        bool in_word = false;
        for (size_t i = 0; i < s.u.s.n; i++) {
            char ch = s.u.s.p[i];
            bool w = ascii_alpha(ch) || (ch >= '0' && ch <= '9') || ch == '_' || (unsigned char)ch >= 0x80;
            if (w && !in_word) c++;
            in_word = w;
        }
        return nmc_jv_int(c);
    }
    jfail_at(r, n, "jinja-unsupported", "unsupported filter '%s'", f);
}
