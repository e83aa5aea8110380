/* jinja.c — the value model of the Jinja2 interpreter: constructors, Python-compatible
 * equality, ordering, str()/repr() and json.dumps() output, UTF-8 and whitespace helpers.
 *
 * What belongs here: anything about values that does not depend on a render in progress.
 * Parsing is in jinja_parse.c, evaluation in jinja_eval.c, filters/tests/methods in
 * jinja_builtins.c.
 */
#include "jinja_int.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ---------------------------------------------------------------- */
void jbuf_init(jbuf_t *b, nmc_arena_t *a) {
    b->a = a;
    b->p = NULL;
    b->n = b->cap = 0;
}

static void jbuf_grow(jbuf_t *b, size_t need) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + need + 1) cap *= 2;
    char *p = nmc_arena_alloc(b->a, cap);
    if (b->n) memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = cap;
}

void jbuf_put(jbuf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) jbuf_grow(b, n);
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jbuf_putc(jbuf_t *b, char c) { jbuf_put(b, &c, 1); }
void jbuf_puts(jbuf_t *b, const char *s) { jbuf_put(b, s, strlen(s)); }

void jbuf_printf(jbuf_t *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        jbuf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = nmc_arena_alloc(b->a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    jbuf_put(b, big, (size_t)n);
}

/* ---- constructors ------------------------------------------------------------- */
nmc_jv_t nmc_jv_undefined(void) { return (nmc_jv_t){.kind = NMC_JV_UNDEFINED}; }
nmc_jv_t nmc_jv_none(void) { return (nmc_jv_t){.kind = NMC_JV_NONE}; }
nmc_jv_t nmc_jv_bool(bool b) { return (nmc_jv_t){.kind = NMC_JV_BOOL, .u.b = b}; }
nmc_jv_t nmc_jv_int(int64_t i) { return (nmc_jv_t){.kind = NMC_JV_INT, .u.i = i}; }
nmc_jv_t nmc_jv_float(double d) { return (nmc_jv_t){.kind = NMC_JV_FLOAT, .u.d = d}; }

nmc_jv_t nmc_jv_str(nmc_arena_t *a, const char *s, size_t n) {
    nmc_jv_t v = {.kind = NMC_JV_STRING};
    v.u.s.p = nmc_arena_strndup(a, s ? s : "", s ? n : 0);
    v.u.s.n = s ? n : 0;
    return v;
}

nmc_jv_t nmc_jv_cstr(nmc_arena_t *a, const char *s) { return nmc_jv_str(a, s, strlen(s)); }

nmc_jv_t nmc_jv_list(nmc_arena_t *a) {
    nmc_jv_t v = {.kind = NMC_JV_LIST};
    v.u.list = nmc_arena_alloc(a, sizeof(nmc_jlist_t));
    return v;
}

nmc_jv_t nmc_jv_dict(nmc_arena_t *a) {
    nmc_jv_t v = {.kind = NMC_JV_DICT};
    v.u.dict = nmc_arena_alloc(a, sizeof(nmc_jdict_t));
    return v;
}

nmc_jv_t nmc_jv_func(nmc_arena_t *a, const char *name, nmc_jinja_fn_t fn, void *ud) {
    nmc_jfunc_t *f = nmc_arena_alloc(a, sizeof *f);
    f->name = nmc_arena_strdup(a, name);
    f->fn = fn;
    f->ud = ud;
    return (nmc_jv_t){.kind = NMC_JV_FUNC, .u.fn = f};
}

void nmc_jlist_push(nmc_arena_t *a, nmc_jlist_t *l, nmc_jv_t v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        nmc_jv_t *items = nmc_arena_alloc(a, cap * sizeof *items);
        if (l->n) memcpy(items, l->items, l->n * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = v;
}

void nmc_jdict_set(nmc_arena_t *a, nmc_jdict_t *d, nmc_jv_t key, nmc_jv_t val) {
    for (size_t i = 0; i < d->n; i++)
        if (nmc_jv_equal(&d->keys[i], &key)) {
            d->vals[i] = val;
            return;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        nmc_jv_t *k = nmc_arena_alloc(a, cap * sizeof *k), *v = nmc_arena_alloc(a, cap * sizeof *v);
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof *k);
            memcpy(v, d->vals, d->n * sizeof *v);
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
}

void nmc_jdict_setc(nmc_arena_t *a, nmc_jdict_t *d, const char *key, nmc_jv_t val) {
    nmc_jdict_set(a, d, nmc_jv_cstr(a, key), val);
}

const nmc_jv_t *nmc_jdict_get(const nmc_jdict_t *d, const char *key, size_t klen) {
    for (size_t i = 0; d && i < d->n; i++) {
        const nmc_jv_t *k = &d->keys[i];
        if (k->kind == NMC_JV_STRING && k->u.s.n == klen && memcmp(k->u.s.p, key, klen) == 0)
            return &d->vals[i];
    }
    return NULL;
}

nmc_jv_t nmc_jv_from_json(nmc_arena_t *a, const nmc_json_t *j) {
    if (!j) return nmc_jv_none();
    switch (j->kind) {
    case NMC_JSON_NULL: return nmc_jv_none();
    case NMC_JSON_BOOL: return nmc_jv_bool(j->u.boolean);
    case NMC_JSON_NUMBER:
        return j->u.num.int_ok ? nmc_jv_int(j->u.num.i) : nmc_jv_float(j->u.num.d);
    case NMC_JSON_STRING: return nmc_jv_str(a, j->u.str.s, j->u.str.len);
    case NMC_JSON_ARRAY: {
        nmc_jv_t l = nmc_jv_list(a);
        for (size_t i = 0; i < j->u.arr.n; i++)
            nmc_jlist_push(a, l.u.list, nmc_jv_from_json(a, j->u.arr.items[i]));
        return l;
    }
    case NMC_JSON_OBJECT: {
        nmc_jv_t d = nmc_jv_dict(a);
        for (size_t i = 0; i < j->u.obj.n; i++) {
            const nmc_json_member_t *m = &j->u.obj.members[i];
            nmc_jdict_set(a, d.u.dict, nmc_jv_str(a, m->key, m->key_len),
                          nmc_jv_from_json(a, m->value));
        }
        return d;
    }
    }
    return nmc_jv_none();
}

/* ---- equality and ordering --------------------------------------------------- */
static bool is_num(const nmc_jv_t *v) {
    return v->kind == NMC_JV_INT || v->kind == NMC_JV_FLOAT || v->kind == NMC_JV_BOOL;
}

static double num_d(const nmc_jv_t *v) {
    return v->kind == NMC_JV_FLOAT ? v->u.d : v->kind == NMC_JV_INT ? (double)v->u.i : v->u.b;
}

static int64_t num_i(const nmc_jv_t *v) { return v->kind == NMC_JV_INT ? v->u.i : v->u.b; }

static bool dict_equal(const nmc_jdict_t *x, const nmc_jdict_t *y) {
    if (x->n != y->n) return false;
    for (size_t i = 0; i < x->n; i++) {
        bool found = false;
        for (size_t k = 0; k < y->n && !found; k++)
            if (nmc_jv_equal(&x->keys[i], &y->keys[k])) {
                if (!nmc_jv_equal(&x->vals[i], &y->vals[k])) return false;
                found = true;
            }
        if (!found) return false;
    }
    return true;
}

bool nmc_jv_equal(const nmc_jv_t *x, const nmc_jv_t *y) {
    if (is_num(x) && is_num(y)) {
        if (x->kind == NMC_JV_FLOAT || y->kind == NMC_JV_FLOAT) return num_d(x) == num_d(y);
        return num_i(x) == num_i(y);
    }
    if (x->kind != y->kind) return false;
    switch (x->kind) {
    case NMC_JV_UNDEFINED:
    case NMC_JV_NONE: return true;
    case NMC_JV_STRING: return x->u.s.n == y->u.s.n && memcmp(x->u.s.p, y->u.s.p, x->u.s.n) == 0;
    case NMC_JV_LIST:
        if (x->u.list->is_tuple != y->u.list->is_tuple || x->u.list->n != y->u.list->n)
            return false;
        for (size_t i = 0; i < x->u.list->n; i++)
            if (!nmc_jv_equal(&x->u.list->items[i], &y->u.list->items[i])) return false;
        return true;
    case NMC_JV_DICT: return dict_equal(x->u.dict, y->u.dict);
    case NMC_JV_NAMESPACE: return x->u.dict == y->u.dict;
    default: return x->u.ptr == y->u.ptr;
    }
}

int jv_compare(const nmc_jv_t *x, const nmc_jv_t *y, bool *ok) {
    *ok = true;
    if (is_num(x) && is_num(y)) {
        if (x->kind == NMC_JV_FLOAT || y->kind == NMC_JV_FLOAT) {
            double a = num_d(x), b = num_d(y);
            return a < b ? -1 : a > b ? 1 : 0;
        }
        int64_t a = num_i(x), b = num_i(y);
        return a < b ? -1 : a > b ? 1 : 0;
    }
    if (x->kind == NMC_JV_STRING && y->kind == NMC_JV_STRING) {
        /* UTF-8 byte order is code point order, which is Python's str order. */
        size_t n = x->u.s.n < y->u.s.n ? x->u.s.n : y->u.s.n;
        int c = memcmp(x->u.s.p, y->u.s.p, n);
        if (c) return c < 0 ? -1 : 1;
        return x->u.s.n < y->u.s.n ? -1 : x->u.s.n > y->u.s.n ? 1 : 0;
    }
    if (x->kind == NMC_JV_LIST && y->kind == NMC_JV_LIST &&
        x->u.list->is_tuple == y->u.list->is_tuple) {
        size_t n = x->u.list->n < y->u.list->n ? x->u.list->n : y->u.list->n;
        for (size_t i = 0; i < n; i++) {
            if (nmc_jv_equal(&x->u.list->items[i], &y->u.list->items[i])) continue;
            return jv_compare(&x->u.list->items[i], &y->u.list->items[i], ok);
        }
        return x->u.list->n < y->u.list->n ? -1 : x->u.list->n > y->u.list->n ? 1 : 0;
    }
    *ok = false;
    return 0;
}

bool jv_truthy(const nmc_jv_t *v) {
    switch (v->kind) {
    case NMC_JV_UNDEFINED:
    case NMC_JV_NONE: return false;
    case NMC_JV_BOOL: return v->u.b;
    case NMC_JV_INT: return v->u.i != 0;
    case NMC_JV_FLOAT: return v->u.d != 0.0;
    case NMC_JV_STRING: return v->u.s.n != 0;
    case NMC_JV_LIST: return v->u.list->n != 0;
    case NMC_JV_DICT: return v->u.dict->n != 0;
    default: return true;
    }
}

const char *jv_type_name(const nmc_jv_t *v) {
    switch (v->kind) {
    case NMC_JV_UNDEFINED: return "Undefined";
    case NMC_JV_NONE: return "NoneType";
    case NMC_JV_BOOL: return "bool";
    case NMC_JV_INT: return "int";
    case NMC_JV_FLOAT: return "float";
    case NMC_JV_STRING: return "str";
    case NMC_JV_LIST: return v->u.list->is_tuple ? "tuple" : "list";
    case NMC_JV_DICT: return "dict";
    case NMC_JV_NAMESPACE: return "Namespace";
    case NMC_JV_MACRO: return "Macro";
    case NMC_JV_LOOP: return "LoopContext";
    default: return "function";
    }
}

/* ---- UTF-8 and whitespace ---------------------------------------------------- */
size_t utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) c++;
    return c;
}

size_t utf8_offset(const char *s, size_t n, size_t cp) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == cp) return i;
            c++;
        }
    }
    return n;
}

static uint32_t decode_at(const char *s, size_t n, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || n < 2) {
        *len = 1;
        return u[0];
    }
    if ((u[0] & 0xE0) == 0xC0) {
        *len = 2;
        return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if ((u[0] & 0xF0) == 0xE0 && n >= 3) {
        *len = 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    if (n >= 4) {
        *len = 4;
        return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
               ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    }
    *len = 1;
    return u[0];
}

/* Python's str.isspace() code points. */
static bool py_is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

size_t py_space_at(const char *s, size_t n) {
    if (n == 0) return 0;
    size_t len;
    uint32_t c = decode_at(s, n, &len);
    return py_is_space(c) ? len : 0;
}

size_t py_space_before(const char *s, size_t n) {
    if (n == 0) return 0;
    size_t start = n - 1;
    while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80 && n - start < 4) start--;
    size_t len = py_space_at(s + start, n - start);
    return len == n - start ? len : 0;
}

/* ---- str() and repr() ---------------------------------------------------------- */
void jv_write_float(jbuf_t *b, double d) {
    if (isnan(d)) {
        jbuf_puts(b, "nan");
        return;
    }
    if (isinf(d)) {
        jbuf_puts(b, d < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[40];
    int prec = 1;
    for (; prec <= 17; prec++) { /* shortest digits that round-trip, as repr() */
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* tmp = [-]D[.DDD]e[+-]XX: collect digits and exponent */
    char digits[24];
    int nd = 0, exp10;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) jbuf_putc(b, '-');
    if (exp10 < -4 || exp10 >= 16) {
        jbuf_putc(b, digits[0]);
        if (nd > 1) {
            jbuf_putc(b, '.');
            jbuf_put(b, digits + 1, (size_t)nd - 1);
        }
        jbuf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        return;
    }
    if (exp10 < 0) {
        jbuf_puts(b, "0.");
        for (int i = 0; i < -exp10 - 1; i++) jbuf_putc(b, '0');
        jbuf_put(b, digits, (size_t)nd);
        return;
    }
    for (int i = 0; i <= exp10; i++) jbuf_putc(b, i < nd ? digits[i] : '0');
    jbuf_putc(b, '.');
    if (nd > exp10 + 1) jbuf_put(b, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
    else jbuf_putc(b, '0');
}

/* Characters Python's repr() escapes (str.isprintable() false), for the ranges that can
 * appear in chat data; other non-ASCII code points are printed as they are. */
static bool py_unprintable(uint32_t c) {
    return c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD || (c >= 0x200B && c <= 0x200F) ||
           (c >= 0x2028 && c <= 0x202E) || (c >= 0x2060 && c <= 0x2064) || c == 0xFEFF ||
           (c >= 0xD800 && c <= 0xDFFF) || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x205F || c == 0x3000 || c == 0xFFF9 || c == 0xFFFA || c == 0xFFFB;
}

static void write_str_repr(jbuf_t *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jbuf_putc(b, q);
    for (size_t i = 0; i < n;) {
        size_t len;
        uint32_t c = decode_at(s + i, n - i, &len);
        if (c == (uint32_t)q || c == '\\') {
            jbuf_putc(b, '\\');
            jbuf_putc(b, (char)c);
        } else if (c == '\n') jbuf_puts(b, "\\n");
        else if (c == '\r') jbuf_puts(b, "\\r");
        else if (c == '\t') jbuf_puts(b, "\\t");
        else if (py_unprintable(c)) {
            if (c <= 0xFF) jbuf_printf(b, "\\x%02x", c);
            else jbuf_printf(b, "\\u%04x", c);
        } else jbuf_put(b, s + i, len);
        i += len;
    }
    jbuf_putc(b, q);
}

static void write_container_repr(jbuf_t *b, const nmc_jv_t *v) {
    if (v->kind == NMC_JV_LIST) {
        const nmc_jlist_t *l = v->u.list;
        jbuf_putc(b, l->is_tuple ? '(' : '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) jbuf_puts(b, ", ");
            jv_write_repr(b, &l->items[i]);
        }
        if (l->is_tuple && l->n == 1) jbuf_putc(b, ',');
        jbuf_putc(b, l->is_tuple ? ')' : ']');
        return;
    }
    const nmc_jdict_t *d = v->u.dict;
    if (v->kind == NMC_JV_NAMESPACE) jbuf_puts(b, "<Namespace ");
    jbuf_putc(b, '{');
    for (size_t i = 0; i < d->n; i++) {
        if (i) jbuf_puts(b, ", ");
        jv_write_repr(b, &d->keys[i]);
        jbuf_puts(b, ": ");
        jv_write_repr(b, &d->vals[i]);
    }
    jbuf_putc(b, '}');
    if (v->kind == NMC_JV_NAMESPACE) jbuf_putc(b, '>');
}

void jv_write_repr(jbuf_t *b, const nmc_jv_t *v) {
    switch (v->kind) {
    case NMC_JV_UNDEFINED: jbuf_puts(b, "Undefined"); return;
    case NMC_JV_STRING: write_str_repr(b, v->u.s.p, v->u.s.n); return;
    default: jv_write_str(b, v);
    }
}

void jv_write_str(jbuf_t *b, const nmc_jv_t *v) {
    switch (v->kind) {
    case NMC_JV_UNDEFINED: return;
    case NMC_JV_NONE: jbuf_puts(b, "None"); return;
    case NMC_JV_BOOL: jbuf_puts(b, v->u.b ? "True" : "False"); return;
    case NMC_JV_INT: jbuf_printf(b, "%lld", (long long)v->u.i); return;
    case NMC_JV_FLOAT: jv_write_float(b, v->u.d); return;
    case NMC_JV_STRING: jbuf_put(b, v->u.s.p, v->u.s.n); return;
    case NMC_JV_LIST:
    case NMC_JV_DICT:
    case NMC_JV_NAMESPACE: write_container_repr(b, v); return;
    case NMC_JV_MACRO: jbuf_puts(b, "<Macro>"); return;
    case NMC_JV_LOOP: jbuf_puts(b, "<LoopContext>"); return;
    case NMC_JV_FUNC: jbuf_printf(b, "<function %s>", v->u.fn->name); return;
    case NMC_JV_BOUND: jbuf_puts(b, "<built-in method>"); return;
    }
}

char *nmc_jv_to_str(nmc_arena_t *a, const nmc_jv_t *v, size_t *len) {
    jbuf_t b;
    jbuf_init(&b, a);
    jbuf_put(&b, "", 0);
    jv_write_str(&b, v);
    if (len) *len = b.n;
    return b.p;
}

/* ---- json.dumps ------------------------------------------------------------------- */
static void write_json_str(jbuf_t *b, const char *s, size_t n) {
    jbuf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': jbuf_puts(b, "\\\""); break;
        case '\\': jbuf_puts(b, "\\\\"); break;
        case '\n': jbuf_puts(b, "\\n"); break;
        case '\r': jbuf_puts(b, "\\r"); break;
        case '\t': jbuf_puts(b, "\\t"); break;
        case '\b': jbuf_puts(b, "\\b"); break;
        case '\f': jbuf_puts(b, "\\f"); break;
        default:
            if (c < 0x20) jbuf_printf(b, "\\u%04x", c);
            else jbuf_putc(b, (char)c);
        }
    }
    jbuf_putc(b, '"');
}

static void json_newline(jbuf_t *b, const char *indent, size_t ilen, int depth) {
    jbuf_putc(b, '\n');
    for (int i = 0; i < depth; i++) jbuf_put(b, indent, ilen);
}

static int write_json_key(jbuf_t *b, const nmc_jv_t *k, const nmc_jv_t **bad) {
    switch (k->kind) {
    case NMC_JV_STRING: write_json_str(b, k->u.s.p, k->u.s.n); return 0;
    case NMC_JV_NONE: jbuf_puts(b, "\"null\""); return 0;
    case NMC_JV_BOOL: jbuf_puts(b, k->u.b ? "\"true\"" : "\"false\""); return 0;
    case NMC_JV_INT: jbuf_printf(b, "\"%lld\"", (long long)k->u.i); return 0;
    case NMC_JV_FLOAT:
        jbuf_putc(b, '"');
        jv_write_float(b, k->u.d);
        jbuf_putc(b, '"');
        return 0;
    default: *bad = k; return -1;
    }
}

static size_t *sorted_order(nmc_arena_t *a, const nmc_jdict_t *d, bool sort) {
    size_t *ord = nmc_arena_alloc(a, (d->n + 1) * sizeof *ord);
    for (size_t i = 0; i < d->n; i++) ord[i] = i;
    if (!sort) return ord;
    for (size_t i = 1; i < d->n; i++) { /* insertion sort: stable, dicts are small */
        size_t k = ord[i], j = i;
        bool ok;
        while (j > 0 && jv_compare(&d->keys[ord[j - 1]], &d->keys[k], &ok) > 0) {
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = k;
    }
    return ord;
}

static int write_json_container(jbuf_t *b, const nmc_jv_t *v, const char *indent, size_t ilen,
                                const char *isep, const char *ksep, bool sort, int depth,
                                const nmc_jv_t **bad) {
    bool is_list = v->kind == NMC_JV_LIST;
    size_t n = is_list ? v->u.list->n : v->u.dict->n;
    if (depth > NMC_JINJA_MAX_DEPTH) {
        *bad = v;
        return -1;
    }
    jbuf_putc(b, is_list ? '[' : '{');
    if (n == 0) {
        jbuf_putc(b, is_list ? ']' : '}');
        return 0;
    }
    size_t *ord = is_list ? NULL : sorted_order(b->a, v->u.dict, sort);
    for (size_t i = 0; i < n; i++) {
        if (i) jbuf_puts(b, isep);
        if (indent) json_newline(b, indent, ilen, depth + 1);
        const nmc_jv_t *item = is_list ? &v->u.list->items[i] : &v->u.dict->vals[ord[i]];
        if (!is_list) {
            if (write_json_key(b, &v->u.dict->keys[ord[i]], bad)) return -1;
            jbuf_puts(b, ksep);
        }
        if (jv_write_json(b, item, indent, ilen, isep, ksep, sort, depth + 1, bad)) return -1;
    }
    if (indent) json_newline(b, indent, ilen, depth);
    jbuf_putc(b, is_list ? ']' : '}');
    return 0;
}

int jv_write_json(jbuf_t *b, const nmc_jv_t *v, const char *indent, size_t ilen,
                  const char *isep, const char *ksep, bool sort, int depth,
                  const nmc_jv_t **bad) {
    switch (v->kind) {
    case NMC_JV_NONE: jbuf_puts(b, "null"); return 0;
    case NMC_JV_BOOL: jbuf_puts(b, v->u.b ? "true" : "false"); return 0;
    case NMC_JV_INT: jbuf_printf(b, "%lld", (long long)v->u.i); return 0;
    case NMC_JV_FLOAT:
        if (isnan(v->u.d)) jbuf_puts(b, "NaN");
        else if (isinf(v->u.d)) jbuf_puts(b, v->u.d < 0 ? "-Infinity" : "Infinity");
        else jv_write_float(b, v->u.d);
        return 0;
    case NMC_JV_STRING: write_json_str(b, v->u.s.p, v->u.s.n); return 0;
    case NMC_JV_LIST:
    case NMC_JV_DICT:
        return write_json_container(b, v, indent, ilen, isep, ksep, sort, depth, bad);
    default: *bad = v; return -1;
    }
}
