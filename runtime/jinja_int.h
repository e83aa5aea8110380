/* jinja_int.h — private to runtime/jinja*.c: the syntax tree, the render state and the
 * helpers the parser, evaluator and value code share. Not part of the public API.
 */
#ifndef NMC_JINJA_INT_H
#define NMC_JINJA_INT_H
#include "jinja.h"
#include <setjmp.h>

/* Node kinds: statements (S_) and expressions (E_). */
typedef enum {
    S_DATA, S_OUTPUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_BREAK, S_CONTINUE,
    S_GENERATION,
    E_CONST, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BINOP, E_NEG,
    E_POS, E_AND, E_OR, E_NOT, E_COMPARE, E_CMPOP, E_COND, E_LIST, E_TUPLE, E_DICT,
    E_PAIR, E_KWARG, E_PARAM
} jkind_t;

/* Binary and comparison operators. */
typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN
} jop_t;

typedef struct jnode jnode_t;
typedef struct {
    jnode_t **v;
    size_t n, cap;
} jnodes_t;

struct jnode {
    jkind_t kind;
    int op;             /* jop_t for BINOP/CMPOP; 1 = negated TEST ("is not") */
    uint32_t line, col; /* 1-based position in the template */
    const char *name;   /* NAME, ATTR, FILTER, TEST, KWARG, PARAM, MACRO, SET target name */
    size_t name_len;
    nmc_jv_t val;       /* CONST; DATA text */
    jnode_t *a, *b, *c; /* operands / target, iterable, condition */
    jnodes_t args;      /* positional args, items, chain, statement body */
    jnodes_t kw;        /* keyword args; for IF/FOR: the else body */
};

struct nmc_jinja_template {
    jnodes_t body;
    const char *name;
};

/* Growable byte buffer in an arena (old blocks are abandoned: at most 2x waste). */
typedef struct {
    nmc_arena_t *a;
    char *p;
    size_t n, cap;
} jbuf_t;
void jbuf_init(jbuf_t *b, nmc_arena_t *a);
void jbuf_put(jbuf_t *b, const char *s, size_t n);
void jbuf_putc(jbuf_t *b, char c);
void jbuf_puts(jbuf_t *b, const char *s);
void jbuf_printf(jbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Value helpers shared by the evaluator. */
bool jv_truthy(const nmc_jv_t *v);
const char *jv_type_name(const nmc_jv_t *v); /* Python's type name: "str", "dict", ... */
void jv_write_str(jbuf_t *b, const nmc_jv_t *v);  /* str(v) */
void jv_write_repr(jbuf_t *b, const nmc_jv_t *v); /* repr(v) */
void jv_write_float(jbuf_t *b, double d);         /* Python repr(float) */
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys); indent NULL = none.
 * Returns 0, or -1 with *bad set to the value that is not serialisable. */
int jv_write_json(jbuf_t *b, const nmc_jv_t *v, const char *indent, size_t indent_len,
                  const char *item_sep, const char *key_sep, bool sort_keys, int depth,
                  const nmc_jv_t **bad);
int jv_compare(const nmc_jv_t *x, const nmc_jv_t *y, bool *ok); /* <0, 0, >0 */
size_t utf8_count(const char *s, size_t n);
/* Byte offset of code point `cp` in s[0..n) (n when cp is past the end). */
size_t utf8_offset(const char *s, size_t n, size_t cp);
/* Length of the Python-whitespace character at s (0 when none). */
size_t py_space_at(const char *s, size_t n);
size_t py_space_before(const char *s, size_t n); /* the one ending at s[n) */

/* Undefined hint (kept in nmc_jv_t.u.ptr). */
typedef struct {
    const char *name; /* variable or attribute name, or NULL with has_index */
    size_t name_len;
    const char *obj_type; /* NULL: a plain undefined variable */
    bool has_index;
    int64_t index;
    const char *hint; /* full message when set */
    bool security;    /* the sandbox refused the access (jinja-security when used) */
} jundef_t;

/* A method bound to its receiver (NMC_JV_BOUND's u.ptr). */
typedef struct {
    nmc_jv_t self;
    const char *name;
    size_t len;
} jbound_t;

/* Render state. */
typedef struct jframe jframe_t;
struct nmc_jinja_render {
    nmc_arena_t *a;
    const nmc_jinja_template_t *t;
    const nmc_jdict_t *globals;
    const nmc_jinja_hooks_t *hooks;
    jframe_t *frame;   /* innermost scope */
    jbuf_t *out;       /* current output (a macro call or set block redirects it) */
    jbuf_t *top;       /* the template's output */
    int depth;
    int loop_ctl;      /* 1 = break, 2 = continue pending */
    jmp_buf jb;
    nmc_diags_t *diags;
    uint32_t line, col; /* position of the node being evaluated (for errors) */
};

_Noreturn void jfail_at(nmc_jinja_render_t *r, const jnode_t *n, const char *code,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* jinja_builtins.c: filters, tests, methods, built-in globals. */
nmc_jv_t jb_filter(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const nmc_jv_t *args,
                   size_t nargs, const nmc_jv_t *kwn, const nmc_jv_t *kwv, size_t nkw);
bool jb_test(nmc_jinja_render_t *r, const jnode_t *n, nmc_jv_t v, const nmc_jv_t *args,
             size_t nargs);
/* Attribute lookup of a method: returns a BOUND value, or UNDEFINED when `name` is not a
 * method of v's type. */
nmc_jv_t jb_method(nmc_jinja_render_t *r, nmc_jv_t v, const char *name, size_t len);
nmc_jv_t jb_call_bound(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *bound,
                       const nmc_jv_t *args, size_t nargs, const nmc_jv_t *kwn,
                       const nmc_jv_t *kwv, size_t nkw);
/* Built-in globals (range, namespace, dict): UNDEFINED when not one. */
nmc_jv_t jb_global(nmc_jinja_render_t *r, const char *name, size_t len);
/* Iterate v as Jinja's `for` does: list/tuple items, dict keys, string characters. */
nmc_jlist_t *jb_iter(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *v);
/* Call a macro or function value (for filters like map that call back). */
nmc_jv_t jeval_call_value(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *f,
                          const nmc_jv_t *args, size_t nargs, const nmc_jv_t *kwn,
                          const nmc_jv_t *kwv, size_t nkw);
/* Attribute / item lookup as Jinja2's getattr / getitem (for filters like selectattr). */
nmc_jv_t jeval_getattr(nmc_jinja_render_t *r, const nmc_jv_t *obj, const char *name,
                       size_t len);
nmc_jv_t jeval_getitem(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *obj,
                       const nmc_jv_t *key);
/* Raise UndefinedError for v (an UNDEFINED) at n. */
_Noreturn void jundef_fail(nmc_jinja_render_t *r, const jnode_t *n, const nmc_jv_t *v);
nmc_jv_t jundef_make(nmc_arena_t *a, const char *name, size_t len, const nmc_jv_t *obj);
/* Python's str.split / strip helpers reused by methods and filters. */
nmc_jv_t jstr_strip(nmc_arena_t *a, nmc_jv_t s, const nmc_jv_t *chars, bool left, bool right);

#endif
