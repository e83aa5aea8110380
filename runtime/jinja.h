/* jinja.h — a Jinja2-subset interpreter for model chat templates (tokenizer_config.json's
 * `chat_template`), byte-identical to transformers' rendering: Jinja2 3.x semantics with
 * the environment transformers builds (ImmutableSandboxedEnvironment, trim_blocks=True,
 * lstrip_blocks=True, loopcontrols, the `{% generation %}` tag, default Undefined).
 *
 * What belongs here: the value model, parsing a template, rendering it with a set of
 * variables. Chat specifics (messages, special tokens, strftime_now, spans) live in
 * chat_template.h. Supported constructs are listed in docs/chat_templates.md; anything
 * else is an error naming the construct and its template line:column.
 *
 * Values are small structs passed by value; lists, dicts and strings they point to live in
 * an arena and are never mutated after construction, except namespaces (set ns.x = ...).
 * Strings are UTF-8, (pointer, byte length), not necessarily NUL-terminated; lengths,
 * indices and slices seen by templates count code points, as Python does.
 */
#ifndef NMC_JINJA_H
#define NMC_JINJA_H
#include "arena.h"
#include "diag.h"
#include "json.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    NMC_JV_UNDEFINED = 0, /* Jinja2 Undefined: prints "", falsy, iterates empty */
    NMC_JV_NONE,
    NMC_JV_BOOL,
    NMC_JV_INT,
    NMC_JV_FLOAT,
    NMC_JV_STRING,
    NMC_JV_LIST,      /* list or tuple (nmc_jlist_t.is_tuple) */
    NMC_JV_DICT,      /* insertion-ordered, keys compared with Python equality */
    NMC_JV_NAMESPACE, /* namespace(): a dict whose attributes templates may set */
    NMC_JV_FUNC,      /* a host or built-in callable (raise_exception, range, ...) */
    NMC_JV_MACRO,     /* a {% macro %} defined by the template */
    NMC_JV_LOOP,      /* the `loop` variable of a for loop */
    NMC_JV_BOUND      /* a method bound to its object (message.content.startswith) */
} nmc_jv_kind_t;

typedef struct nmc_jv nmc_jv_t;
typedef struct nmc_jlist nmc_jlist_t;
typedef struct nmc_jdict nmc_jdict_t;
typedef struct nmc_jinja_render nmc_jinja_render_t;

/* A host function: args[0..nargs) positional, kw names/values [0..nkw). Returns 0 and sets
 * *out, or reports an error with nmc_jinja_fail() (which does not return). */
typedef void (*nmc_jinja_fn_t)(nmc_jinja_render_t *r, void *ud, const nmc_jv_t *args,
                               size_t nargs, const nmc_jv_t *kwnames, const nmc_jv_t *kwvals,
                               size_t nkw, nmc_jv_t *out);

typedef struct nmc_jfunc {
    const char *name;
    nmc_jinja_fn_t fn;
    void *ud;
} nmc_jfunc_t;

struct nmc_jv {
    nmc_jv_kind_t kind;
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            const char *p;
            size_t n; /* bytes */
        } s;
        nmc_jlist_t *list;
        nmc_jdict_t *dict; /* DICT and NAMESPACE */
        const nmc_jfunc_t *fn;
        const void *ptr; /* MACRO, LOOP, BOUND, UNDEFINED (hint; may be NULL) */
    } u;
};

struct nmc_jlist {
    nmc_jv_t *items;
    size_t n, cap;
    bool is_tuple;
};

struct nmc_jdict {
    nmc_jv_t *keys, *vals;
    size_t n, cap;
};

/* ---- value constructors (allocations in `a`) -------------------------------- */
nmc_jv_t nmc_jv_undefined(void);
nmc_jv_t nmc_jv_none(void);
nmc_jv_t nmc_jv_bool(bool b);
nmc_jv_t nmc_jv_int(int64_t i);
nmc_jv_t nmc_jv_float(double d);
/* The bytes are copied into `a`. */
nmc_jv_t nmc_jv_str(nmc_arena_t *a, const char *s, size_t n);
nmc_jv_t nmc_jv_cstr(nmc_arena_t *a, const char *s);
nmc_jv_t nmc_jv_list(nmc_arena_t *a);
nmc_jv_t nmc_jv_dict(nmc_arena_t *a);
nmc_jv_t nmc_jv_func(nmc_arena_t *a, const char *name, nmc_jinja_fn_t fn, void *ud);
void nmc_jlist_push(nmc_arena_t *a, nmc_jlist_t *l, nmc_jv_t v);
/* Insert or replace (replacing keeps the key's position, as Python dicts do). */
void nmc_jdict_set(nmc_arena_t *a, nmc_jdict_t *d, nmc_jv_t key, nmc_jv_t val);
void nmc_jdict_setc(nmc_arena_t *a, nmc_jdict_t *d, const char *key, nmc_jv_t val);
/* NULL when absent. */
const nmc_jv_t *nmc_jdict_get(const nmc_jdict_t *d, const char *key, size_t klen);
/* Deep conversion of a parsed JSON value: null/bool/number/string/array/object. Integers
 * that fit int64 become INT, every other number FLOAT. */
nmc_jv_t nmc_jv_from_json(nmc_arena_t *a, const nmc_json_t *j);

/* Python's ==, as Jinja2 applies it (1 == 1.0 == True; lists and dicts deeply). */
bool nmc_jv_equal(const nmc_jv_t *x, const nmc_jv_t *y);
/* Python's str(v) (what {{ v }} prints; repr() for items inside lists and dicts). */
char *nmc_jv_to_str(nmc_arena_t *a, const nmc_jv_t *v, size_t *len);

/* ---- templates ---------------------------------------------------------------- */
typedef struct nmc_jinja_template nmc_jinja_template_t;

/* Parse src[0..len) (need not be NUL-terminated). `name` names the template in diagnostics
 * (e.g. "chat_template"). On success returns 0 and sets *out (in `a`, valid as long as
 * `a`). On a syntax error or an unsupported tag returns -1 and appends one error record
 * (codes: jinja-syntax, jinja-unsupported) with the template line:column. */
int nmc_jinja_parse(nmc_arena_t *a, const char *src, size_t len, const char *name,
                    nmc_jinja_template_t **out, nmc_diags_t *diags);

/* Hooks that let a caller see which output bytes came from where. All optional. */
typedef struct {
    void *ud;
    /* A for loop is about to run (begin=true) or has run (begin=false) one iteration over
     * `item`; out_pos is the output length at that moment (top-level output only). */
    void (*on_loop_item)(void *ud, const nmc_jv_t *item, size_t out_pos, bool begin);
    /* A {% generation %} block produced out[start, end). */
    void (*on_generation)(void *ud, size_t start, size_t end);
} nmc_jinja_hooks_t;

/* Output limit: chat templates render conversations, not corpora; 256 MiB is far past any
 * real conversation and stops a runaway loop (`range(10**9)`) before it takes the host. */
#define NMC_JINJA_MAX_OUTPUT ((size_t)256 << 20)
/* Nesting limit for expressions, statements and macro calls (recursion guard). */
#define NMC_JINJA_MAX_DEPTH 200

/* Render `t` with the global variables `vars` (name -> value; copied by reference, never
 * modified). On success returns 0 and sets *out / *out_len (NUL-terminated, in `a`).
 * On error returns -1 and appends one record: jinja-raise (raise_exception(msg): message is
 * msg verbatim), jinja-undefined (Jinja2's UndefinedError text), jinja-type (an operation
 * on values of the wrong type), jinja-value (bad value, e.g. int('x'), division by zero),
 * jinja-unsupported (a filter, test, method or global nmc does not implement),
 * jinja-security (what the sandbox forbids), jinja-limit (NMC_JINJA_MAX_*). */
int nmc_jinja_render(nmc_arena_t *a, const nmc_jinja_template_t *t, const nmc_jdict_t *vars,
                     const nmc_jinja_hooks_t *hooks, char **out, size_t *out_len,
                     nmc_diags_t *diags);

/* For host functions: report an error and unwind the render (does not return). */
_Noreturn void nmc_jinja_fail(nmc_jinja_render_t *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The render's arena, for host functions that build values. */
nmc_arena_t *nmc_jinja_arena(nmc_jinja_render_t *r);

#endif
