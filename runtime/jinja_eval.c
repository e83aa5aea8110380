/* jinja_eval.c — the tree-walking evaluator: scopes, statements, expressions, operators,
 * attribute/item lookup and Undefined, with Jinja2 3.x / Python semantics.
 *
 * What belongs here: everything about executing a parsed template except the catalogue of
 * filters, tests and methods (jinja_builtins.c). Errors unwind with longjmp to
 * nmc_jinja_render(), which records one diagnostic; all memory is in the render arena.
 *
 * Scoping follows Jinja2: a for-loop iteration and a macro call get a fresh scope that
 * reads through to the enclosing ones; `set` writes the innermost scope; `if` has none.
 */
#include "jinja_int.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jframe {
    jframe_t *parent;
    nmc_jdict_t vars;
};

typedef struct {
    const jnode_t *node; /* S_MACRO */
    jframe_t *closure;
} jmacro_t;

typedef struct {
    const nmc_jlist_t *items;
    size_t idx;
} jloop_t;

static nmc_jv_t eval(nmc_jinja_render_t *r, const jnode_t *n);
static void exec_body(nmc_jinja_render_t *r, const jnodes_t *body);

/* ---- errors ------------------------------------------------------------------- */
static void vfail(nmc_jinja_render_t *r, uint32_t line, uint32_t col, const char *code,
                  const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    nmc_diag_t *d = nmc_diag_add(r->diags, NMC_SEV_ERROR, code, r->t->name, line, col, 0, "%s", msg);
    if (strcmp(code, "jinja-unsupported") == 0)
        nmc_diag_set_help(d, "nmc implements the Jinja2 subset real chat templates use "
                             "(docs/chat_templates.md); rewrite the template without it");
    longjmp(r->jb, 1);
}

void jfail_at(nmc_jinja_render_t *r, const jnode_t *n, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(r, n ? n->line : r->line, n ? n->col : r->col, code, fmt, ap);
    va_end(ap);
    abort(); /* not reached */
}

void nmc_jinja_fail(nmc_jinja_render_t *r, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(r, r->line, r->col, code, fmt, ap);
    va_end(ap);
    abort(); /* not reached */
}

nmc_arena_t *nmc_jinja_arena(nmc_jinja_render_t *r) { return r->a; }

/* ---- Undefined ------------------------------------------------------------------ */
static const char *obj_type_repr(nmc_arena_t *a, const nmc_jv_t *obj) {
    if (obj->kind == NMC_JV_NONE) return "None";
    if (obj->kind == NMC_JV_NAMESPACE)
        return "transformers.utils.chat_template_utils.TemplateNamespace object";
    if (obj->kind == NMC_JV_LOOP) return "jinja2.runtime.LoopContext object";
    return nmc_arena_printf(a, "%s object", jv_type_name(obj));
}

nmc_jv_t jundef_make(nmc_arena_t *a, const char *name, size_t len, const nmc_jv_t *obj) {
    jundef_t *u = nmc_arena_alloc(a, sizeof *u);
    u->name = name;
    u->name_len = len;
    u->obj_type = obj ? obj_type_repr(a, obj) : NULL;
    return (nmc_jv_t){.kind = NMC_JV_UNDEFINED, .u.ptr = u};
}

static nmc_jv_t undef_index(nmc_arena_t *a, const nmc_jv_t *obj, const nmc_jv_t *key) {
    jundef_t *u = nmc_arena_alloc(a, sizeof *u);
    u->obj_type = obj_type_repr(a, obj);
    jbuf_t b;
    jbuf_init(&b, a);
    jbuf_put(&b, "", 0);
    jv_write_repr(&b, key);
    u->hint = nmc_arena_printf(a, "%s has no element %s", u->obj_type, b.p);
    return (nmc_jv_t){.kind = NMC_JV_UNDEFINED, .u.ptr = u};
}

void jundef_fail(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *v) {
    const jundef_t *u = v->u.ptr;
    if (!u) jfail_at(r, n, "jinja-undefined", "undefined value");
    if (u->hint) jfail_at(r, n, u->security ? "jinja-security" : "jinja-undefined", "%s", u->hint);
    if (!u->obj_type)
        jfail_at(r, n, "jinja-undefined", "'%.*s' is undefined", (int)u->name_len, u->name);
    jfail_at(r, n, "jinja-undefined", "'%s' has no attribute '%.*s'", u->obj_type,
             (int)u->name_len, u->name);
}

static void need_defined(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *v) {
    if (v->kind == NMC_JV_UNDEFINED) jundef_fail(r, n, v);
}

/* ---- scopes ---------------------------------------------------------------------- */
static jframe_t *push_frame(nmc_jinja_render_t *r, jframe_t *parent) {
    jframe_t *f = nmc_arena_alloc(r->a, sizeof *f);
    f->parent = parent;
    return f;
}

static void set_var(nmc_jinja_render_t *r, const char *name, size_t len, nmc_jv_t v) {
    nmc_jdict_set(r->a, &r->frame->vars, nmc_jv_str(r->a, name, len), v);
}

static nmc_jv_t lookup(nmc_jinja_render_t *r, const char *name, size_t len) {
    for (jframe_t *f = r->frame; f; f = f->parent) {
        const nmc_jv_t *v = nmc_jdict_get(&f->vars, name, len);
        if (v) return *v;
    }
    const nmc_jv_t *g = nmc_jdict_get(r->globals, name, len);
    if (g) return *g;
    nmc_jv_t b = jb_global(r, name, len);
    if (b.kind != NMC_JV_UNDEFINED) return b;
    return jundef_make(r->a, nmc_arena_strndup(r->a, name, len), len, NULL);
}

/* ---- attribute and item lookup ------------------------------------------------------ */
static nmc_jv_t loop_attr(nmc_jinja_render_t *r, const nmc_jv_t *lv, const char *name, size_t len) {
    const jloop_t *l = lv->u.ptr;
    size_t n = l->items->n, i = l->idx;
#define IS(s) (len == strlen(s) && memcmp(name, s, len) == 0)
    if (IS("index")) return nmc_jv_int((int64_t)i + 1);
    if (IS("index0")) return nmc_jv_int((int64_t)i);
    if (IS("revindex")) return nmc_jv_int((int64_t)(n - i));
    if (IS("revindex0")) return nmc_jv_int((int64_t)(n - i - 1));
    if (IS("first")) return nmc_jv_bool(i == 0);
    if (IS("last")) return nmc_jv_bool(i + 1 == n);
    if (IS("length")) return nmc_jv_int((int64_t)n);
    if (IS("depth")) return nmc_jv_int(1);
    if (IS("depth0")) return nmc_jv_int(0);
    if (IS("previtem")) return i > 0 ? l->items->items[i - 1] : jundef_make(r->a, "previtem", 8, NULL);
    if (IS("nextitem")) return i + 1 < n ? l->items->items[i + 1] : jundef_make(r->a, "nextitem", 8, NULL);
    if (IS("cycle")) {
        jbound_t *b = nmc_arena_alloc(r->a, sizeof *b);
        b->self = *lv;
        b->name = "cycle";
        b->len = 5;
        return (nmc_jv_t){.kind = NMC_JV_BOUND, .u.ptr = b};
    }
#undef IS
    return jundef_make(r->a, nmc_arena_strndup(r->a, name, len), len, lv);
}

nmc_jv_t jeval_getattr(nmc_jinja_render_t *r, const nmc_jv_t *obj, const char *name, size_t len) {
    switch (obj->kind) {
    case NMC_JV_LOOP: return loop_attr(r, obj, name, len);
    case NMC_JV_NAMESPACE: {
        const nmc_jv_t *v = nmc_jdict_get(obj->u.dict, name, len);
        return v ? *v : jundef_make(r->a, nmc_arena_strndup(r->a, name, len), len, obj);
    }
    case NMC_JV_DICT: {
        nmc_jv_t m = jb_method(r, *obj, name, len); /* getattr first: d.items is the method */
        if (m.kind != NMC_JV_UNDEFINED || m.u.ptr) return m;
        const nmc_jv_t *v = nmc_jdict_get(obj->u.dict, name, len);
        return v ? *v : jundef_make(r->a, nmc_arena_strndup(r->a, name, len), len, obj);
    }
    default: {
        nmc_jv_t m = jb_method(r, *obj, name, len);
        if (m.kind != NMC_JV_UNDEFINED || m.u.ptr) return m; /* a method, or a refused one */
        return jundef_make(r->a, nmc_arena_strndup(r->a, name, len), len, obj);
    }
    }
}

static bool index_of(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

nmc_jv_t jeval_getitem(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *obj,
                       const nmc_jv_t *key) {
    need_defined(r, n, obj);
    bool int_key = key->kind == NMC_JV_INT || key->kind == NMC_JV_BOOL;
    int64_t ki = key->kind == NMC_JV_INT ? key->u.i : key->kind == NMC_JV_BOOL ? key->u.b : 0;
    size_t at;
    switch (obj->kind) {
    case NMC_JV_LIST:
        if (int_key && index_of(ki, obj->u.list->n, &at)) return obj->u.list->items[at];
        break;
    case NMC_JV_STRING:
        if (int_key && index_of(ki, utf8_count(obj->u.s.p, obj->u.s.n), &at)) {
            size_t b = utf8_offset(obj->u.s.p, obj->u.s.n, at);
            size_t e = utf8_offset(obj->u.s.p, obj->u.s.n, at + 1);
            return (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {obj->u.s.p + b, e - b}};
        }
        break;
    case NMC_JV_DICT:
        for (size_t i = 0; i < obj->u.dict->n; i++)
            if (nmc_jv_equal(&obj->u.dict->keys[i], key)) return obj->u.dict->vals[i];
        break;
    default: break;
    }
    if (key->kind == NMC_JV_STRING) { /* Jinja falls back to getattr for string keys */
        if (obj->kind == NMC_JV_DICT) {
            nmc_jv_t m = jb_method(r, *obj, key->u.s.p, key->u.s.n);
            if (m.kind != NMC_JV_UNDEFINED) return m;
            return jundef_make(r->a, key->u.s.p, key->u.s.n, obj);
        }
        return jeval_getattr(r, obj, key->u.s.p, key->u.s.n);
    }
    return undef_index(r->a, obj, key);
}

/* Python slice indices for a sequence of n items. */
static void slice_bounds(int64_t n, const nmc_jv_t *sv, int64_t *start, int64_t *stop,
                         int64_t *step) {
    *step = sv[2].kind == NMC_JV_INT ? sv[2].u.i : 1;
    bool neg = *step < 0;
    int64_t lo = neg ? -1 : 0, hi = neg ? n - 1 : n;
    for (int k = 0; k < 2; k++) {
        int64_t *dst = k ? stop : start;
        if (sv[k].kind != NMC_JV_INT) {
            *dst = k ? (neg ? lo : hi) : (neg ? hi : lo);
            continue;
        }
        int64_t v = sv[k].u.i;
        if (v < 0) v += n;
        *dst = v < lo ? lo : v > hi ? hi : v;
    }
}

static nmc_jv_t eval_slice(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t obj = eval(r, n->a), sv[3];
    need_defined(r, n, &obj);
    for (int k = 0; k < 3; k++) {
        sv[k] = n->args.v[k] ? eval(r, n->args.v[k]) : nmc_jv_none();
        if (sv[k].kind == NMC_JV_BOOL) sv[k] = nmc_jv_int(sv[k].u.b);
        if (sv[k].kind != NMC_JV_NONE && sv[k].kind != NMC_JV_INT)
            jfail_at(r, n, "jinja-type", "slice indices must be integers or None");
    }
    if (sv[2].kind == NMC_JV_INT && sv[2].u.i == 0)
        jfail_at(r, n, "jinja-value", "slice step cannot be zero");
    bool is_str = obj.kind == NMC_JV_STRING;
    if (!is_str && obj.kind != NMC_JV_LIST)
        jfail_at(r, n, "jinja-type", "'%s' object is not subscriptable", jv_type_name(&obj));
    int64_t len = is_str ? (int64_t)utf8_count(obj.u.s.p, obj.u.s.n) : (int64_t)obj.u.list->n;
    int64_t start, stop, step;
    slice_bounds(len, sv, &start, &stop, &step);
    nmc_jv_t out = is_str ? nmc_jv_str(r->a, "", 0) : nmc_jv_list(r->a);
    jbuf_t b;
    jbuf_init(&b, r->a);
    jbuf_put(&b, "", 0);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (is_str) {
            size_t s = utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)i);
            size_t e = utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)i + 1);
            jbuf_put(&b, obj.u.s.p + s, e - s);
        } else nmc_jlist_push(r->a, out.u.list, obj.u.list->items[i]);
    }
    if (is_str) out.u.s.p = b.p, out.u.s.n = b.n;
    else out.u.list->is_tuple = obj.u.list->is_tuple;
    return out;
}

/* ---- operators ---------------------------------------------------------------------- */
static bool numeric(const nmc_jv_t *v) {
    return v->kind == NMC_JV_INT || v->kind == NMC_JV_BOOL || v->kind == NMC_JV_FLOAT;
}
static int64_t as_i(const nmc_jv_t *v) {
    return v->kind == NMC_JV_INT ? v->u.i : v->kind == NMC_JV_BOOL ? v->u.b : 0;
}
static double as_d(const nmc_jv_t *v) { return v->kind == NMC_JV_FLOAT ? v->u.d : (double)as_i(v); }

static const char *OP_SYM[] = {"+", "-", "*", "/", "//", "%", "**", "~"};

_Noreturn static void bad_operands(nmc_jinja_render_t *r, const jnode_t *n, int op,
                                   const nmc_jv_t *x, const nmc_jv_t *y) {
    if (op == OP_ADD && x->kind == NMC_JV_STRING)
        jfail_at(r, n, "jinja-type", "can only concatenate str (not \"%s\") to str", jv_type_name(y));
    if (op == OP_ADD && x->kind == NMC_JV_LIST && !x->u.list->is_tuple)
        jfail_at(r, n, "jinja-type", "can only concatenate list (not \"%s\") to list", jv_type_name(y));
    jfail_at(r, n, "jinja-type", "unsupported operand type(s) for %s: '%s' and '%s'",
             OP_SYM[op], jv_type_name(x), jv_type_name(y));
}

static nmc_jv_t int_result(nmc_jinja_render_t *r, const jnode_t *n, bool overflow, int64_t v) {
    if (overflow) jfail_at(r, n, "jinja-limit", "integer result does not fit 64 bits");
    return nmc_jv_int(v);
}

static nmc_jv_t repeat(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *seq, int64_t times) {
    if (times < 0) times = 0;
    size_t unit = seq->kind == NMC_JV_STRING ? seq->u.s.n : seq->u.list->n;
    if (unit && (uint64_t)times > NMC_JINJA_MAX_OUTPUT / unit)
        jfail_at(r, n, "jinja-limit", "repetition result is larger than %zu bytes", NMC_JINJA_MAX_OUTPUT);
    if (seq->kind == NMC_JV_STRING) {
        jbuf_t b;
        jbuf_init(&b, r->a);
        jbuf_put(&b, "", 0);
        for (int64_t i = 0; i < times; i++) jbuf_put(&b, seq->u.s.p, seq->u.s.n);
        return (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {b.p, b.n}};
    }
    nmc_jv_t out = nmc_jv_list(r->a);
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < unit; k++) nmc_jlist_push(r->a, out.u.list, seq->u.list->items[k]);
    out.u.list->is_tuple = seq->u.list->is_tuple;
    return out;
}

static nmc_jv_t concat_seq(nmc_jinja_render_t *r, const nmc_jv_t *x, const nmc_jv_t *y) {
    if (x->kind == NMC_JV_STRING) {
        jbuf_t b;
        jbuf_init(&b, r->a);
        jbuf_put(&b, x->u.s.p, x->u.s.n);
        jbuf_put(&b, y->u.s.p, y->u.s.n);
        return (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {b.p, b.n}};
    }
    nmc_jv_t out = nmc_jv_list(r->a);
    for (size_t i = 0; i < x->u.list->n; i++) nmc_jlist_push(r->a, out.u.list, x->u.list->items[i]);
    for (size_t i = 0; i < y->u.list->n; i++) nmc_jlist_push(r->a, out.u.list, y->u.list->items[i]);
    out.u.list->is_tuple = x->u.list->is_tuple;
    return out;
}

static double py_fmod(double a, double b) {
    double m = fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
}

static nmc_jv_t arith_num(nmc_jinja_render_t *r, const jnode_t *n, int op, const nmc_jv_t *x,
                          const nmc_jv_t *y) {
    bool fl = x->kind == NMC_JV_FLOAT || y->kind == NMC_JV_FLOAT;
    int64_t a = as_i(x), b = as_i(y), v;
    double da = as_d(x), db = as_d(y);
    if ((op == OP_DIV || op == OP_FLOORDIV || op == OP_MOD) && (fl ? db == 0.0 : b == 0))
        jfail_at(r, n, "jinja-value", "division by zero");
    switch (op) {
    case OP_ADD:
    case OP_SUB:
    case OP_MUL: {
        if (fl) return nmc_jv_float(op == OP_ADD ? da + db : op == OP_SUB ? da - db : da * db);
        bool ovf = op == OP_ADD ? __builtin_add_overflow(a, b, &v)
                   : op == OP_SUB ? __builtin_sub_overflow(a, b, &v) : __builtin_mul_overflow(a, b, &v);
        return int_result(r, n, ovf, v);
    }
    case OP_DIV: return nmc_jv_float(da / db);
    case OP_FLOORDIV:
        if (fl) return nmc_jv_float(floor(da / db));
        if (a == INT64_MIN && b == -1) jfail_at(r, n, "jinja-limit", "integer result does not fit 64 bits");
        v = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0))) v--;
        return nmc_jv_int(v);
    case OP_MOD:
        if (fl) return nmc_jv_float(py_fmod(da, db));
        if (b == -1) return nmc_jv_int(0);
        v = a % b;
        if (v != 0 && ((v < 0) != (b < 0))) v += b;
        return nmc_jv_int(v);
    case OP_POW:
        if (fl || b < 0) return nmc_jv_float(pow(da, db));
        v = 1;
        for (int64_t i = 0; i < b; i++)
            if (__builtin_mul_overflow(v, a, &v)) int_result(r, n, true, 0);
        return nmc_jv_int(v);
    }
    return nmc_jv_none();
}

static nmc_jv_t binop(nmc_jinja_render_t *r, const jnode_t *n, int op, nmc_jv_t x, nmc_jv_t y) {
    if (op == OP_CONCAT) {
        jbuf_t b;
        jbuf_init(&b, r->a);
        jbuf_put(&b, "", 0);
        jv_write_str(&b, &x);
        jv_write_str(&b, &y);
        return (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {b.p, b.n}};
    }
    need_defined(r, n, &x);
    need_defined(r, n, &y);
    if (numeric(&x) && numeric(&y)) return arith_num(r, n, op, &x, &y);
    if (op == OP_ADD && x.kind == y.kind && (x.kind == NMC_JV_STRING ||
        (x.kind == NMC_JV_LIST && x.u.list->is_tuple == y.u.list->is_tuple)))
        return concat_seq(r, &x, &y);
    if (op == OP_MUL && (x.kind == NMC_JV_STRING || x.kind == NMC_JV_LIST) &&
        (y.kind == NMC_JV_INT || y.kind == NMC_JV_BOOL))
        return repeat(r, n, &x, as_i(&y));
    if (op == OP_MUL && (y.kind == NMC_JV_STRING || y.kind == NMC_JV_LIST) &&
        (x.kind == NMC_JV_INT || x.kind == NMC_JV_BOOL))
        return repeat(r, n, &y, as_i(&x));
    if (op == OP_MOD && x.kind == NMC_JV_STRING)
        jfail_at(r, n, "jinja-unsupported", "unsupported: printf-style string formatting ('%%' on a string)");
    bad_operands(r, n, op, &x, &y);
}

static bool contains(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *x, const nmc_jv_t *y) {
    switch (y->kind) {
    case NMC_JV_UNDEFINED: return false; /* Undefined iterates as empty */
    case NMC_JV_STRING:
        if (x->kind != NMC_JV_STRING) {
            need_defined(r, n, x);
            jfail_at(r, n, "jinja-type", "'in <string>' requires string as left operand, not %s", jv_type_name(x));
        }
        if (x->u.s.n == 0) return true;
        for (size_t i = 0; i + x->u.s.n <= y->u.s.n; i++)
            if (memcmp(y->u.s.p + i, x->u.s.p, x->u.s.n) == 0) return true;
        return false;
    case NMC_JV_LIST:
        for (size_t i = 0; i < y->u.list->n; i++)
            if (nmc_jv_equal(x, &y->u.list->items[i])) return true;
        return false;
    case NMC_JV_DICT:
    case NMC_JV_NAMESPACE:
        for (size_t i = 0; i < y->u.dict->n; i++)
            if (nmc_jv_equal(x, &y->u.dict->keys[i])) return true;
        return false;
    default:
        jfail_at(r, n, "jinja-type", "argument of type '%s' is not iterable", jv_type_name(y));
    }
}

static bool compare_op(nmc_jinja_render_t *r, const jnode_t *n, int op, const nmc_jv_t *x,
                       const nmc_jv_t *y) {
    static const char *sym[] = {"==", "!=", "<", "<=", ">", ">="};
    switch (op) {
    case OP_EQ: return nmc_jv_equal(x, y);
    case OP_NE: return !nmc_jv_equal(x, y);
    case OP_IN: return contains(r, n, x, y);
    case OP_NOTIN: return !contains(r, n, x, y);
    default: break;
    }
    need_defined(r, n, x);
    need_defined(r, n, y);
    bool ok;
    int c = jv_compare(x, y, &ok);
    if (!ok)
        jfail_at(r, n, "jinja-type", "'%s' not supported between instances of '%s' and '%s'",
                 sym[op - OP_EQ], jv_type_name(x), jv_type_name(y));
    return op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
}

static nmc_jv_t eval_compare(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t left = eval(r, n->a);
    for (size_t i = 0; i < n->args.n; i++) {
        const jnode_t *o = n->args.v[i];
        nmc_jv_t right = eval(r, o->a);
        if (!compare_op(r, o, o->op, &left, &right)) return nmc_jv_bool(false);
        left = right;
    }
    return nmc_jv_bool(true);
}

/* ---- calls ----------------------------------------------------------------------- */
typedef struct {
    nmc_jv_t *args, *kwn, *kwv;
    size_t nargs, nkw;
} jargs_t;

static jargs_t eval_args(nmc_jinja_render_t *r, const jnode_t *n) {
    jargs_t a = {0};
    a.nargs = n->args.n;
    a.nkw = n->kw.n;
    a.args = nmc_arena_alloc(r->a, (a.nargs + 1) * sizeof(nmc_jv_t));
    a.kwn = nmc_arena_alloc(r->a, (a.nkw + 1) * sizeof(nmc_jv_t));
    a.kwv = nmc_arena_alloc(r->a, (a.nkw + 1) * sizeof(nmc_jv_t));
    for (size_t i = 0; i < a.nargs; i++) a.args[i] = eval(r, n->args.v[i]);
    for (size_t i = 0; i < a.nkw; i++) {
        const jnode_t *k = n->kw.v[i];
        a.kwn[i] = (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {k->name, k->name_len}};
        a.kwv[i] = eval(r, k->a);
    }
    return a;
}

static nmc_jv_t call_macro(nmc_jinja_render_t *r, const jnode_t *n, const jmacro_t *m,
                           const nmc_jv_t *args, size_t nargs, const nmc_jv_t *kwn,
                           const nmc_jv_t *kwv, size_t nkw) {
    const jnode_t *def = m->node;
    if (nargs > def->kw.n)
        jfail_at(r, n, "jinja-type", "macro '%.*s' takes not more than %zu argument(s)",
                 (int)def->name_len, def->name, def->kw.n);
    if (++r->depth > NMC_JINJA_MAX_DEPTH)
        jfail_at(r, n, "jinja-limit", "macro calls nest deeper than %d", NMC_JINJA_MAX_DEPTH);
    jframe_t *saved = r->frame;
    jbuf_t *saved_out = r->out, buf;
    r->frame = push_frame(r, m->closure);
    for (size_t k = 0; k < nkw; k++) {
        bool known = false;
        for (size_t p = 0; p < def->kw.n; p++) {
            const jnode_t *pn = def->kw.v[p];
            known |= pn->name_len == kwn[k].u.s.n && memcmp(pn->name, kwn[k].u.s.p, pn->name_len) == 0;
        }
        if (!known)
            jfail_at(r, n, "jinja-type", "macro '%.*s' has no parameter named '%.*s'",
                     (int)def->name_len, def->name, (int)kwn[k].u.s.n, kwn[k].u.s.p);
    }
    for (size_t p = 0; p < def->kw.n; p++) {
        const jnode_t *pn = def->kw.v[p];
        nmc_jv_t v = jundef_make(r->a, pn->name, pn->name_len, NULL);
        bool set = false;
        if (p < nargs) v = args[p], set = true;
        for (size_t k = 0; k < nkw; k++)
            if (pn->name_len == kwn[k].u.s.n && memcmp(pn->name, kwn[k].u.s.p, pn->name_len) == 0)
                v = kwv[k], set = true;
        if (!set && pn->a) v = eval(r, pn->a);
        set_var(r, pn->name, pn->name_len, v);
    }
    jbuf_init(&buf, r->a);
    jbuf_put(&buf, "", 0);
    r->out = &buf;
    exec_body(r, &def->args);
    r->out = saved_out;
    r->frame = saved;
    r->depth--;
    return (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {buf.p, buf.n}};
}

nmc_jv_t jeval_call_value(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *f,
                          const nmc_jv_t *args, size_t nargs, const nmc_jv_t *kwn,
                          const nmc_jv_t *kwv, size_t nkw) {
    nmc_jv_t out = nmc_jv_none();
    switch (f->kind) {
    case NMC_JV_UNDEFINED: jundef_fail(r, n, f);
    case NMC_JV_MACRO: return call_macro(r, n, f->u.ptr, args, nargs, kwn, kwv, nkw);
    case NMC_JV_BOUND: return jb_call_bound(r, n, f, args, nargs, kwn, kwv, nkw);
    case NMC_JV_FUNC:
        r->line = n->line;
        r->col = n->col;
        f->u.fn->fn(r, f->u.fn->ud, args, nargs, kwn, kwv, nkw, &out);
        return out;
    default:
        jfail_at(r, n, "jinja-type", "'%s' object is not callable", jv_type_name(f));
    }
}

static nmc_jv_t eval_call(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t f = eval(r, n->a);
    jargs_t a = eval_args(r, n);
    return jeval_call_value(r, n, &f, a.args, a.nargs, a.kwn, a.kwv, a.nkw);
}

static nmc_jv_t eval_filter(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t v = eval(r, n->a);
    jargs_t a = eval_args(r, n);
    return jb_filter(r, n, v, a.args, a.nargs, a.kwn, a.kwv, a.nkw);
}

static nmc_jv_t eval_test(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t v = eval(r, n->a);
    jargs_t a = eval_args(r, n);
    bool res = jb_test(r, n, v, a.args, a.nargs);
    return nmc_jv_bool(n->op ? !res : res);
}

/* ---- expressions --------------------------------------------------------------------- */
static nmc_jv_t eval_list(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t l = nmc_jv_list(r->a);
    for (size_t i = 0; i < n->args.n; i++) nmc_jlist_push(r->a, l.u.list, eval(r, n->args.v[i]));
    l.u.list->is_tuple = n->kind == E_TUPLE;
    return l;
}

static nmc_jv_t eval_dict(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t d = nmc_jv_dict(r->a);
    for (size_t i = 0; i < n->args.n; i++) {
        nmc_jv_t k = eval(r, n->args.v[i]->a);
        if (k.kind == NMC_JV_LIST && !k.u.list->is_tuple)
            jfail_at(r, n->args.v[i], "jinja-type", "unhashable type: 'list'");
        if (k.kind == NMC_JV_DICT) jfail_at(r, n->args.v[i], "jinja-type", "unhashable type: 'dict'");
        nmc_jdict_set(r->a, d.u.dict, k, eval(r, n->args.v[i]->b));
    }
    return d;
}

static nmc_jv_t eval_unary(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t v = eval(r, n->a);
    need_defined(r, n, &v);
    if (!numeric(&v))
        jfail_at(r, n, "jinja-type", "bad operand type for unary %s: '%s'",
                 n->kind == E_NEG ? "-" : "+", jv_type_name(&v));
    if (n->kind == E_POS) return v.kind == NMC_JV_BOOL ? nmc_jv_int(v.u.b) : v;
    if (v.kind == NMC_JV_FLOAT) return nmc_jv_float(-v.u.d);
    if (as_i(&v) == INT64_MIN) jfail_at(r, n, "jinja-limit", "integer result does not fit 64 bits");
    return nmc_jv_int(-as_i(&v));
}

static nmc_jv_t eval(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t x;
    switch (n->kind) {
    case E_CONST: return n->val;
    case E_NAME:
        r->line = n->line, r->col = n->col; /* for errors raised inside lookup */
        return lookup(r, n->name, n->name_len);
    case E_ATTR:
        x = eval(r, n->a);
        need_defined(r, n, &x);
        return jeval_getattr(r, &x, n->name, n->name_len);
    case E_ITEM: {
        x = eval(r, n->a);
        nmc_jv_t k = eval(r, n->b);
        return jeval_getitem(r, n, &x, &k);
    }
    case E_SLICE: return eval_slice(r, n);
    case E_CALL: return eval_call(r, n);
    case E_FILTER: return eval_filter(r, n);
    case E_TEST: return eval_test(r, n);
    case E_BINOP: {
        x = eval(r, n->a);
        nmc_jv_t y = eval(r, n->b);
        return binop(r, n, n->op, x, y);
    }
    case E_NEG:
    case E_POS: return eval_unary(r, n);
    case E_AND: x = eval(r, n->a); return jv_truthy(&x) ? eval(r, n->b) : x;
    case E_OR: x = eval(r, n->a); return jv_truthy(&x) ? x : eval(r, n->b);
    case E_NOT: x = eval(r, n->a); return nmc_jv_bool(!jv_truthy(&x));
    case E_COMPARE: return eval_compare(r, n);
    case E_COND:
        x = eval(r, n->a);
        if (jv_truthy(&x)) return eval(r, n->b);
        return n->c ? eval(r, n->c) : jundef_make(r->a, "", 0, NULL);
    case E_LIST:
    case E_TUPLE: return eval_list(r, n);
    case E_DICT: return eval_dict(r, n);
    default: jfail_at(r, n, "jinja-syntax", "not an expression");
    }
}

/* ---- statements ------------------------------------------------------------------------ */
static void emit(nmc_jinja_render_t *r, const jnode_t *n, const char *s, size_t len) {
    if (r->out->n + len > NMC_JINJA_MAX_OUTPUT)
        jfail_at(r, n, "jinja-limit", "output is larger than %zu bytes", NMC_JINJA_MAX_OUTPUT);
    jbuf_put(r->out, s, len);
}

static void assign(nmc_jinja_render_t *r, const jnode_t *target, nmc_jv_t v) {
    if (target->kind == E_NAME) {
        set_var(r, target->name, target->name_len, v);
        return;
    }
    if (target->kind == E_ATTR) {
        nmc_jv_t ns = eval(r, target->a);
        if (ns.kind != NMC_JV_NAMESPACE)
            jfail_at(r, target, "jinja-type", "cannot assign attribute on non-namespace object");
        nmc_jdict_set(r->a, ns.u.dict, nmc_jv_str(r->a, target->name, target->name_len), v);
        return;
    }
    /* tuple unpacking */
    nmc_jlist_t *items = jb_iter(r, target, &v);
    if (items->n != target->args.n)
        jfail_at(r, target, "jinja-value", "%s values to unpack (expected %zu, got %zu)",
                 items->n > target->args.n ? "too many" : "not enough", target->args.n, items->n);
    for (size_t i = 0; i < items->n; i++) assign(r, target->args.v[i], items->items[i]);
}

static nmc_jlist_t *filtered_items(nmc_jinja_render_t *r, const jnode_t *n, nmc_jlist_t *all) {
    if (!n->c) return all;
    nmc_jlist_t *kept = nmc_arena_alloc(r->a, sizeof *kept);
    for (size_t i = 0; i < all->n; i++) {
        jframe_t *saved = r->frame;
        r->frame = push_frame(r, saved);
        assign(r, n->a, all->items[i]);
        nmc_jv_t c = eval(r, n->c);
        r->frame = saved;
        if (jv_truthy(&c)) nmc_jlist_push(r->a, kept, all->items[i]);
    }
    return kept;
}

static void exec_for(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t seq = eval(r, n->b);
    nmc_jlist_t *items = filtered_items(r, n, jb_iter(r, n->b, &seq));
    jframe_t *saved = r->frame;
    jloop_t *lp = nmc_arena_alloc(r->a, sizeof *lp);
    lp->items = items;
    bool top = r->out == r->top;
    for (size_t i = 0; i < items->n; i++) {
        lp->idx = i;
        r->frame = push_frame(r, saved);
        set_var(r, "loop", 4, (nmc_jv_t){.kind = NMC_JV_LOOP, .u.ptr = lp});
        assign(r, n->a, items->items[i]);
        if (top && r->hooks && r->hooks->on_loop_item)
            r->hooks->on_loop_item(r->hooks->ud, &items->items[i], r->out->n, true);
        exec_body(r, &n->args);
        if (top && r->hooks && r->hooks->on_loop_item)
            r->hooks->on_loop_item(r->hooks->ud, &items->items[i], r->out->n, false);
        r->frame = saved;
        int ctl = r->loop_ctl;
        r->loop_ctl = 0;
        if (ctl == 1) break;
    }
    r->frame = saved;
    if (items->n == 0) exec_body(r, &n->kw);
}

static void exec_if(nmc_jinja_render_t *r, const jnode_t *n) {
    nmc_jv_t c = eval(r, n->a);
    exec_body(r, jv_truthy(&c) ? &n->args : &n->kw);
}

static void exec_setblock(nmc_jinja_render_t *r, const jnode_t *n) {
    jbuf_t *saved = r->out, buf;
    jbuf_init(&buf, r->a);
    jbuf_put(&buf, "", 0);
    r->out = &buf;
    exec_body(r, &n->args);
    r->out = saved;
    assign(r, n->a, (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {buf.p, buf.n}});
}

static void exec_generation(nmc_jinja_render_t *r, const jnode_t *n) {
    size_t start = r->out->n;
    exec_body(r, &n->args);
    if (r->out == r->top && r->hooks && r->hooks->on_generation)
        r->hooks->on_generation(r->hooks->ud, start, r->out->n);
}

static void exec_macro_def(nmc_jinja_render_t *r, const jnode_t *n) {
    jmacro_t *m = nmc_arena_alloc(r->a, sizeof *m);
    m->node = n;
    m->closure = r->frame;
    set_var(r, n->name, n->name_len, (nmc_jv_t){.kind = NMC_JV_MACRO, .u.ptr = m});
}

static void exec_stmt(nmc_jinja_render_t *r, const jnode_t *n) {
    switch (n->kind) {
    case S_DATA: emit(r, n, n->val.u.s.p, n->val.u.s.n); break;
    case S_OUTPUT: {
        nmc_jv_t v = eval(r, n->a);
        size_t before = r->out->n;
        jv_write_str(r->out, &v);
        if (r->out->n > NMC_JINJA_MAX_OUTPUT) {
            r->out->n = before;
            jfail_at(r, n, "jinja-limit", "output is larger than %zu bytes", NMC_JINJA_MAX_OUTPUT);
        }
        break;
    }
    case S_IF: exec_if(r, n); break;
    case S_FOR: exec_for(r, n); break;
    case S_SET: assign(r, n->a, eval(r, n->b)); break;
    case S_SETBLOCK: exec_setblock(r, n); break;
    case S_MACRO: exec_macro_def(r, n); break;
    case S_BREAK: r->loop_ctl = 1; break;
    case S_CONTINUE: r->loop_ctl = 2; break;
    case S_GENERATION: exec_generation(r, n); break;
    default: jfail_at(r, n, "jinja-syntax", "not a statement");
    }
}

static void exec_body(nmc_jinja_render_t *r, const jnodes_t *body) {
    if (++r->depth > NMC_JINJA_MAX_DEPTH)
        jfail_at(r, body->n ? body->v[0] : NULL, "jinja-limit", "statements nest deeper than %d",
                 NMC_JINJA_MAX_DEPTH);
    for (size_t i = 0; i < body->n && !r->loop_ctl; i++) exec_stmt(r, body->v[i]);
    r->depth--;
}

int nmc_jinja_render(nmc_arena_t *a, const nmc_jinja_template_t *t, const nmc_jdict_t *vars,
                     const nmc_jinja_hooks_t *hooks, char **out, size_t *out_len,
                     nmc_diags_t *diags) {
    nmc_jinja_render_t *r = calloc(1, sizeof *r);
    if (!r) abort();
    jbuf_t top;
    jbuf_init(&top, a);
    jbuf_put(&top, "", 0);
    r->a = a;
    r->t = t;
    r->globals = vars;
    r->hooks = hooks;
    r->diags = diags;
    r->out = r->top = &top;
    r->frame = push_frame(r, NULL);
    *out = NULL;
    if (out_len) *out_len = 0;
    if (setjmp(r->jb)) {
        free(r);
        return -1;
    }
    exec_body(r, &t->body);
    *out = top.p;
    if (out_len) *out_len = top.n;
    free(r);
    return 0;
}
