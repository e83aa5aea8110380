/* jinja_parse.c — lexer and recursive-descent parser for the Jinja2 subset.
 *
 * The lexer follows Jinja2 3.x's (jinja2/lexer.py) with transformers' settings:
 * trim_blocks (drop the first newline after a block or comment tag), lstrip_blocks (drop
 * the spaces before a block or comment tag that starts a line), `-`/`+` modifiers, and
 * keep_trailing_newline=False. The grammar and operator precedence follow
 * jinja2/parser.py. Errors unwind with longjmp to nmc_jinja_parse(), which records one
 * diagnostic (jinja-syntax, jinja-unsupported) at the template line:column.
 */
#include "jinja_int.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT,
    T_FLOAT, T_OP, T_EOF
} ttype_t;

typedef struct {
    ttype_t type;
    const char *p; /* token text (NAME, OP) */
    size_t n;
    uint32_t line, col;
    nmc_jv_t val; /* DATA, STRING, INT, FLOAT */
} tok_t;

typedef struct {
    nmc_arena_t *a;
    const char *src; /* normalized source */
    size_t len;
    size_t *line_start;
    size_t n_lines;
    tok_t *toks;
    size_t n_toks, cap_toks, pos;
    int depth;
    jmp_buf jb;
    char msg[256];
    const char *code;
    uint32_t err_line, err_col;
} parser_t;

/* ---- errors and positions --------------------------------------------------- */
static void pos_of(const parser_t *ps, size_t off, uint32_t *line, uint32_t *col) {
    size_t lo = 0, hi = ps->n_lines;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ps->line_start[mid] <= off) lo = mid;
        else hi = mid;
    }
    *line = (uint32_t)lo + 1;
    *col = (uint32_t)utf8_count(ps->src + ps->line_start[lo], off - ps->line_start[lo]) + 1;
}

__attribute__((format(printf, 5, 6))) _Noreturn static void
perr(parser_t *ps, const char *code, uint32_t line, uint32_t col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->msg, sizeof ps->msg, fmt, ap);
    va_end(ap);
    ps->code = code;
    ps->err_line = line;
    ps->err_col = col;
    longjmp(ps->jb, 1);
}

/* ---- lexer ------------------------------------------------------------------ */
static tok_t *push_tok(parser_t *ps, ttype_t type, size_t off, const char *p, size_t n) {
    if (ps->n_toks == ps->cap_toks) {
        size_t cap = ps->cap_toks ? ps->cap_toks * 2 : 256;
        tok_t *t = nmc_arena_alloc(ps->a, cap * sizeof *t);
        if (ps->n_toks) memcpy(t, ps->toks, ps->n_toks * sizeof *t);
        ps->toks = t;
        ps->cap_toks = cap;
    }
    tok_t *t = &ps->toks[ps->n_toks++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->p = p;
    t->n = n;
    pos_of(ps, off, &t->line, &t->col);
    return t;
}

/* Jinja2 normalizes \r\n and \r to \n and drops one trailing newline. */
static void normalize(parser_t *ps, const char *src, size_t len) {
    char *out = nmc_arena_alloc(ps->a, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            out[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else out[n++] = src[i];
    }
    if (n && out[n - 1] == '\n') n--;
    out[n] = 0;
    ps->src = out;
    ps->len = n;
    ps->n_lines = 1;
    for (size_t i = 0; i < n; i++) ps->n_lines += out[i] == '\n';
    ps->line_start = nmc_arena_alloc(ps->a, ps->n_lines * sizeof(size_t));
    size_t k = 1;
    for (size_t i = 0; i < n; i++)
        if (out[i] == '\n') ps->line_start[k++] = i + 1;
}

/* Next "{{", "{%" or "{#" at or after i; len when none. */
static size_t find_tag(const parser_t *ps, size_t i) {
    for (; i + 1 < ps->len; i++)
        if (ps->src[i] == '{' && (ps->src[i + 1] == '{' || ps->src[i + 1] == '%' || ps->src[i + 1] == '#'))
            return i;
    return ps->len;
}

static bool all_space(const char *s, size_t n) {
    if (n == 0) return false; /* Jinja's \s+ needs at least one character */
    for (size_t i = 0; i < n;) {
        size_t k = py_space_at(s + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* Emit the data between two tags, applying `-` and lstrip_blocks for the tag that ends it. */
static void lex_data(parser_t *ps, size_t start, size_t end, char kind, char sign,
                     bool line_starting) {
    size_t e = end;
    if (sign == '-') {
        while (e > start) {
            size_t k = py_space_before(ps->src + start, e - start);
            if (!k) break;
            e -= k;
        }
    } else if (sign != '+' && kind != '{' && end < ps->len) {
        size_t l = e;
        while (l > start && ps->src[l - 1] != '\n') l--;
        if ((l > start || line_starting) && all_space(ps->src + l, e - l)) e = l;
    }
    if (e > start) {
        tok_t *t = push_tok(ps, T_DATA, start, NULL, 0);
        t->val = nmc_jv_str(ps->a, ps->src + start, e - start);
    }
}

static size_t skip_space(const parser_t *ps, size_t i) {
    while (i < ps->len) {
        size_t k = py_space_at(ps->src + i, ps->len - i);
        if (!k) break;
        i += k;
    }
    return i;
}

/* After a tag end: `-` eats all whitespace, else trim_blocks eats one newline (blocks and
 * comments only). Returns the new position and whether the match ended with a newline. */
static size_t after_tag_end(parser_t *ps, size_t i, char sign, bool is_block, bool *ls) {
    size_t j = i;
    if (sign == '-') j = skip_space(ps, i);
    else if (sign != '+' && is_block && j < ps->len && ps->src[j] == '\n') j++;
    *ls = j > i && ps->src[j - 1] == '\n'; /* Jinja: the tag-end match ends with a newline */
    return j;
}

static void lex_string(parser_t *ps, size_t *ip) {
    size_t i = *ip, start = i;
    char q = ps->src[i++];
    jbuf_t b;
    jbuf_init(&b, ps->a);
    jbuf_put(&b, "", 0);
    while (i < ps->len && ps->src[i] != q) {
        char c = ps->src[i];
        if (c != '\\' || i + 1 >= ps->len) {
            jbuf_putc(&b, c);
            i++;
            continue;
        }
        char e = ps->src[i + 1];
        const char *simple = strchr("nrt\\'\"abfv0\n", e);
        if (simple && e) {
            static const char from[] = "nrt\\'\"abfv0";
            static const char to[] = "\n\r\t\\'\"\a\b\f\v";
            if (e == '\n') { /* backslash-newline: line continuation */
            } else if (e == '0') jbuf_putc(&b, '\0');
            else jbuf_putc(&b, to[strchr(from, e) - from]);
            i += 2;
        } else if (e == 'x' || e == 'u' || e == 'U') {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < nd; k++) {
                char h = i + 2 + (size_t)k < ps->len ? ps->src[i + 2 + k] : 0;
                int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (v < 0) {
                    uint32_t l, col;
                    pos_of(ps, i, &l, &col);
                    perr(ps, "jinja-syntax", l, col, "truncated \\%c escape in string literal", e);
                }
                cp = cp * 16 + (uint32_t)v;
            }
            char u[4];
            size_t un = 0;
            if (cp < 0x80) u[un++] = (char)cp;
            else if (cp < 0x800) {
                u[un++] = (char)(0xC0 | (cp >> 6));
                u[un++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                u[un++] = (char)(0xE0 | (cp >> 12));
                u[un++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[un++] = (char)(0x80 | (cp & 0x3F));
            } else {
                u[un++] = (char)(0xF0 | (cp >> 18));
                u[un++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                u[un++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[un++] = (char)(0x80 | (cp & 0x3F));
            }
            jbuf_put(&b, u, un);
            i += 2 + (size_t)nd;
        } else { /* unknown escape: kept as written, as Python does */
            jbuf_putc(&b, c);
            jbuf_putc(&b, e);
            i += 2;
        }
    }
    if (i >= ps->len) {
        uint32_t l, c;
        pos_of(ps, start, &l, &c);
        perr(ps, "jinja-syntax", l, c, "unterminated string literal");
    }
    tok_t *t = push_tok(ps, T_STRING, start, NULL, 0);
    t->val = (nmc_jv_t){.kind = NMC_JV_STRING, .u.s = {b.p, b.n}};
    *ip = i + 1;
}

static void lex_number(parser_t *ps, size_t *ip) {
    size_t i = *ip, start = i;
    while (i < ps->len && (ps->src[i] >= '0' && ps->src[i] <= '9')) i++;
    bool is_float = false;
    if (i + 1 < ps->len && ps->src[i] == '.' && ps->src[i + 1] >= '0' && ps->src[i + 1] <= '9') {
        is_float = true;
        i++;
        while (i < ps->len && ps->src[i] >= '0' && ps->src[i] <= '9') i++;
    }
    if (i < ps->len && (ps->src[i] == 'e' || ps->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < ps->len && (ps->src[j] == '+' || ps->src[j] == '-')) j++;
        if (j < ps->len && ps->src[j] >= '0' && ps->src[j] <= '9') {
            is_float = true;
            i = j;
            while (i < ps->len && ps->src[i] >= '0' && ps->src[i] <= '9') i++;
        }
    }
    char *text = nmc_arena_strndup(ps->a, ps->src + start, i - start);
    tok_t *t = push_tok(ps, is_float ? T_FLOAT : T_INT, start, text, i - start);
    if (is_float) t->val = nmc_jv_float(strtod(text, NULL));
    else {
        errno = 0;
        long long v = strtoll(text, NULL, 10);
        if (errno) perr(ps, "jinja-unsupported", t->line, t->col, "integer literal %s does not fit 64 bits", text);
        t->val = nmc_jv_int(v);
    }
    *ip = i;
}

static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%",
                                  "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".",
                                  ":", "|", ";", NULL};

/* Tokens inside {{ }} or {% %} up to the closing delimiter. Returns the position after the
 * end delimiter; *sign is its modifier. */
static size_t lex_tag(parser_t *ps, size_t i, bool is_block, size_t open, char *sign) {
    int balance = 0;
    char endc = is_block ? '%' : '}';
    for (;;) {
        i = skip_space(ps, i);
        if (i >= ps->len) {
            uint32_t l, c;
            pos_of(ps, open, &l, &c);
            perr(ps, "jinja-syntax", l, c, "unclosed %s tag", is_block ? "{% %}" : "{{ }}");
        }
        const char *s = ps->src + i;
        size_t rest = ps->len - i;
        if (balance == 0) {
            size_t off = s[0] == '-' || (s[0] == '+' && is_block) ? 1 : 0;
            if (rest >= off + 2 && s[off] == endc && s[off + 1] == '}') {
                *sign = off ? s[0] : 0;
                push_tok(ps, is_block ? T_BLOCK_END : T_VAR_END, i, NULL, 0);
                return i + off + 2;
            }
        }
        char c = s[0];
        if (c == '\'' || c == '"') lex_string(ps, &i);
        else if (c >= '0' && c <= '9') lex_number(ps, &i);
        else if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            size_t j = i;
            while (j < ps->len && (ps->src[j] == '_' || (ps->src[j] >= 'a' && ps->src[j] <= 'z') ||
                                   (ps->src[j] >= 'A' && ps->src[j] <= 'Z') ||
                                   (ps->src[j] >= '0' && ps->src[j] <= '9')))
                j++;
            push_tok(ps, T_NAME, i, ps->src + i, j - i);
            i = j;
        } else {
            int k = 0;
            for (; OPS[k]; k++)
                if (strncmp(s, OPS[k], strlen(OPS[k])) == 0) break;
            uint32_t l, col;
            pos_of(ps, i, &l, &col);
            if (!OPS[k]) perr(ps, "jinja-syntax", l, col, "unexpected character '%c'", c);
            if (strchr("([{", c)) balance++;
            if (strchr(")]}", c) && --balance < 0) perr(ps, "jinja-syntax", l, col, "unexpected '%c'", c);
            push_tok(ps, T_OP, i, OPS[k], strlen(OPS[k]));
            i += strlen(OPS[k]);
        }
    }
}

static size_t lex_comment(parser_t *ps, size_t i, size_t open, char *sign) {
    for (; i + 1 < ps->len; i++) {
        if (ps->src[i] == '#' && ps->src[i + 1] == '}') {
            char m = i > open + 2 ? ps->src[i - 1] : 0;
            *sign = m == '-' || m == '+' ? m : 0;
            return i + 2;
        }
    }
    uint32_t l, c;
    pos_of(ps, open, &l, &c);
    perr(ps, "jinja-syntax", l, c, "missing end of comment tag");
}

static void lex(parser_t *ps) {
    size_t i = 0;
    bool line_starting = true;
    while (i < ps->len) {
        size_t tag = find_tag(ps, i);
        char kind = tag < ps->len ? ps->src[tag + 1] : 0;
        char sign = tag + 2 < ps->len && (ps->src[tag + 2] == '-' || ps->src[tag + 2] == '+')
                        ? ps->src[tag + 2] : 0;
        lex_data(ps, i, tag, kind, sign, line_starting);
        if (tag >= ps->len) break;
        size_t body = tag + 2 + (sign ? 1 : 0), after;
        char esign = 0;
        if (kind == '#') after = lex_comment(ps, body, tag, &esign);
        else {
            push_tok(ps, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, tag, NULL, 0);
            after = lex_tag(ps, body, kind == '%', tag, &esign);
        }
        i = after_tag_end(ps, after, esign, kind != '{', &line_starting);
    }
    push_tok(ps, T_EOF, ps->len, NULL, 0);
}

/* ---- parser helpers ------------------------------------------------------------ */
static tok_t *cur(parser_t *ps) { return &ps->toks[ps->pos]; }
static tok_t *peek(parser_t *ps, size_t k) {
    size_t p = ps->pos + k;
    return &ps->toks[p < ps->n_toks ? p : ps->n_toks - 1];
}
static bool is_op(const tok_t *t, const char *op) {
    return t->type == T_OP && t->n == strlen(op) && memcmp(t->p, op, t->n) == 0;
}
static bool is_name(const tok_t *t, const char *name) {
    return t->type == T_NAME && t->n == strlen(name) && memcmp(t->p, name, t->n) == 0;
}

static const char *tok_desc(parser_t *ps, const tok_t *t) {
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_BLOCK_END: return "end of statement block";
    case T_VAR_END: return "end of print statement";
    case T_STRING: return "string";
    case T_INT:
    case T_FLOAT: return "number";
    default: return nmc_arena_printf(ps->a, "'%.*s'", (int)t->n, t->p);
    }
}

_Noreturn static void unexpected(parser_t *ps, const char *expected) {
    tok_t *t = cur(ps);
    perr(ps, "jinja-syntax", t->line, t->col, "expected %s, got %s", expected, tok_desc(ps, t));
}

static void expect_op(parser_t *ps, const char *op) {
    if (!is_op(cur(ps), op)) unexpected(ps, nmc_arena_printf(ps->a, "'%s'", op));
    ps->pos++;
}

static tok_t *expect_name(parser_t *ps) {
    if (cur(ps)->type != T_NAME) unexpected(ps, "a name");
    return &ps->toks[ps->pos++];
}

static jnode_t *mk(parser_t *ps, jkind_t kind, const tok_t *at) {
    jnode_t *n = nmc_arena_alloc(ps->a, sizeof *n);
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static void nodes_push(parser_t *ps, jnodes_t *l, jnode_t *n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jnode_t **v = nmc_arena_alloc(ps->a, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
}

static void enter(parser_t *ps) {
    if (++ps->depth > NMC_JINJA_MAX_DEPTH)
        perr(ps, "jinja-limit", cur(ps)->line, cur(ps)->col,
             "template nests deeper than %d levels", NMC_JINJA_MAX_DEPTH);
}

/* ---- expressions ----------------------------------------------------------------- */
static jnode_t *parse_expr(parser_t *ps, bool with_cond);
static jnode_t *parse_tuple(parser_t *ps, bool with_cond, bool explicit_parens);
static jnode_t *parse_unary(parser_t *ps, bool with_filter);

/* call_args := '(' [arg {',' arg}] ')' ; arg := expr | name '=' expr */
static void parse_call_args(parser_t *ps, jnode_t *call) {
    expect_op(ps, "(");
    while (!is_op(cur(ps), ")")) {
        if (call->args.n + call->kw.n) expect_op(ps, ",");
        if (is_op(cur(ps), ")")) break;
        if (cur(ps)->type == T_NAME && is_op(peek(ps, 1), "=")) {
            tok_t *nt = cur(ps);
            jnode_t *kw = mk(ps, E_KWARG, nt);
            kw->name = nt->p;
            kw->name_len = nt->n;
            ps->pos += 2;
            kw->a = parse_expr(ps, true);
            nodes_push(ps, &call->kw, kw);
        } else {
            if (call->kw.n) unexpected(ps, "a keyword argument (positional after keyword)");
            nodes_push(ps, &call->args, parse_expr(ps, true));
        }
    }
    ps->pos++;
}

/* subscript := expr | [expr] ':' [expr] [':' [expr]] */
static jnode_t *parse_subscript(parser_t *ps, jnode_t *obj, tok_t *at) {
    jnode_t *start = NULL;
    if (!is_op(cur(ps), ":")) {
        start = parse_expr(ps, true);
        if (!is_op(cur(ps), ":")) {
            jnode_t *n = mk(ps, E_ITEM, at);
            n->a = obj;
            n->b = start;
            expect_op(ps, "]");
            return n;
        }
    }
    jnode_t *n = mk(ps, E_SLICE, at);
    n->a = obj;
    nodes_push(ps, &n->args, start);
    ps->pos++; /* ':' */
    jnode_t *stop = NULL, *step = NULL;
    if (!is_op(cur(ps), "]") && !is_op(cur(ps), ":")) stop = parse_expr(ps, true);
    if (is_op(cur(ps), ":")) {
        ps->pos++;
        if (!is_op(cur(ps), "]")) step = parse_expr(ps, true);
    }
    nodes_push(ps, &n->args, stop);
    nodes_push(ps, &n->args, step);
    expect_op(ps, "]");
    return n;
}

/* postfix := primary { '.' name | '.' int | '[' subscript ']' | call_args } */
static jnode_t *parse_postfix(parser_t *ps, jnode_t *n) {
    for (;;) {
        tok_t *t = cur(ps);
        if (is_op(t, ".")) {
            ps->pos++;
            tok_t *nt = cur(ps);
            if (nt->type == T_INT) {
                jnode_t *k = mk(ps, E_CONST, nt);
                k->val = nt->val;
                jnode_t *it = mk(ps, E_ITEM, t);
                it->a = n;
                it->b = k;
                ps->pos++;
                n = it;
                continue;
            }
            nt = expect_name(ps);
            jnode_t *at = mk(ps, E_ATTR, nt);
            at->a = n;
            at->name = nt->p;
            at->name_len = nt->n;
            n = at;
        } else if (is_op(t, "[")) {
            ps->pos++;
            n = parse_subscript(ps, n, t);
        } else if (is_op(t, "(")) {
            jnode_t *call = mk(ps, E_CALL, t);
            call->a = n;
            parse_call_args(ps, call);
            n = call;
        } else return n;
    }
}

/* filter := '|' name {'.' name} [call_args] */
static jnode_t *parse_filter(parser_t *ps, jnode_t *n) {
    ps->pos++;
    tok_t *nt = expect_name(ps);
    jnode_t *f = mk(ps, E_FILTER, nt);
    f->a = n;
    f->name = nt->p;
    f->name_len = nt->n;
    if (is_op(cur(ps), "(")) parse_call_args(ps, f);
    return f;
}

/* test := 'is' ['not'] name [call_args | primary-arg] */
static jnode_t *parse_test(parser_t *ps, jnode_t *n) {
    ps->pos++;
    bool neg = false;
    if (is_name(cur(ps), "not")) {
        neg = true;
        ps->pos++;
    }
    tok_t *nt = expect_name(ps);
    jnode_t *t = mk(ps, E_TEST, nt);
    t->a = n;
    t->op = neg;
    t->name = nt->p;
    t->name_len = nt->n;
    tok_t *c = cur(ps);
    if (is_op(c, "(")) parse_call_args(ps, t);
    else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT || c->type == T_FLOAT ||
              is_op(c, "[") || is_op(c, "{")) &&
             !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is")) perr(ps, "jinja-syntax", c->line, c->col, "you cannot chain multiple tests with is");
        nodes_push(ps, &t->args, parse_unary(ps, false));
    }
    return t;
}

static jnode_t *parse_filter_expr(parser_t *ps, jnode_t *n) {
    for (;;) {
        tok_t *t = cur(ps);
        if (is_op(t, "|")) n = parse_filter(ps, n);
        else if (is_name(t, "is")) n = parse_test(ps, n);
        else if (is_op(t, "(")) {
            jnode_t *call = mk(ps, E_CALL, t);
            call->a = n;
            parse_call_args(ps, call);
            n = call;
        } else return n;
    }
}

static jnode_t *parse_list_or_dict(parser_t *ps, bool dict) {
    tok_t *open = cur(ps);
    ps->pos++;
    jnode_t *n = mk(ps, dict ? E_DICT : E_LIST, open);
    const char *close = dict ? "}" : "]";
    while (!is_op(cur(ps), close)) {
        if (n->args.n) expect_op(ps, ",");
        if (is_op(cur(ps), close)) break;
        jnode_t *item = parse_expr(ps, true);
        if (dict) {
            jnode_t *pair = mk(ps, E_PAIR, open);
            pair->a = item;
            expect_op(ps, ":");
            pair->b = parse_expr(ps, true);
            item = pair;
        }
        nodes_push(ps, &n->args, item);
    }
    ps->pos++;
    return n;
}

/* primary := name | string+ | number | '(' tuple ')' | list | dict */
static jnode_t *parse_primary(parser_t *ps) {
    tok_t *t = cur(ps);
    if (t->type == T_NAME) {
        ps->pos++;
        jnode_t *n = mk(ps, E_CONST, t);
        if (is_name(t, "true") || is_name(t, "True")) n->val = nmc_jv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False")) n->val = nmc_jv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None")) n->val = nmc_jv_none();
        else {
            n->kind = E_NAME;
            n->name = t->p;
            n->name_len = t->n;
        }
        return n;
    }
    if (t->type == T_STRING) {
        jnode_t *n = mk(ps, E_CONST, t);
        n->val = t->val;
        ps->pos++;
        while (cur(ps)->type == T_STRING) { /* implicit concatenation: 'a' 'b' */
            jbuf_t b;
            jbuf_init(&b, ps->a);
            jbuf_put(&b, n->val.u.s.p, n->val.u.s.n);
            jbuf_put(&b, cur(ps)->val.u.s.p, cur(ps)->val.u.s.n);
            n->val.u.s.p = b.p;
            n->val.u.s.n = b.n;
            ps->pos++;
        }
        return n;
    }
    if (t->type == T_INT || t->type == T_FLOAT) {
        jnode_t *n = mk(ps, E_CONST, t);
        n->val = t->val;
        ps->pos++;
        return n;
    }
    if (is_op(t, "(")) {
        ps->pos++;
        jnode_t *n = parse_tuple(ps, true, true);
        expect_op(ps, ")");
        return n;
    }
    if (is_op(t, "[")) return parse_list_or_dict(ps, false);
    if (is_op(t, "{")) return parse_list_or_dict(ps, true);
    unexpected(ps, "an expression");
}

/* unary := '-' unary | '+' unary | primary postfix ; then filters/tests when with_filter */
static jnode_t *parse_unary(parser_t *ps, bool with_filter) {
    tok_t *t = cur(ps);
    jnode_t *n;
    enter(ps);
    if (is_op(t, "-") || is_op(t, "+")) {
        ps->pos++;
        n = mk(ps, is_op(t, "-") ? E_NEG : E_POS, t);
        n->a = parse_unary(ps, false);
    } else {
        n = parse_postfix(ps, parse_primary(ps));
    }
    if (with_filter) n = parse_filter_expr(ps, n);
    ps->depth--;
    return n;
}

static jnode_t *binop(parser_t *ps, tok_t *at, int op, jnode_t *l, jnode_t *r) {
    jnode_t *n = mk(ps, E_BINOP, at);
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

/* pow := unary {'**' unary} */
static jnode_t *parse_pow(parser_t *ps) {
    jnode_t *n = parse_unary(ps, true);
    while (is_op(cur(ps), "**")) {
        tok_t *t = &ps->toks[ps->pos++];
        n = binop(ps, t, OP_POW, n, parse_unary(ps, true));
    }
    return n;
}

/* math2 := pow {('*' | '/' | '//' | '%') pow} */
static jnode_t *parse_math2(parser_t *ps) {
    jnode_t *n = parse_pow(ps);
    for (;;) {
        tok_t *t = cur(ps);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV
                 : is_op(t, "%") ? OP_MOD : -1;
        if (op < 0) return n;
        ps->pos++;
        n = binop(ps, t, op, n, parse_pow(ps));
    }
}

/* concat := math2 {'~' math2} */
static jnode_t *parse_concat(parser_t *ps) {
    jnode_t *n = parse_math2(ps);
    while (is_op(cur(ps), "~")) {
        tok_t *t = &ps->toks[ps->pos++];
        n = binop(ps, t, OP_CONCAT, n, parse_math2(ps));
    }
    return n;
}

/* math1 := concat {('+' | '-') concat} */
static jnode_t *parse_math1(parser_t *ps) {
    jnode_t *n = parse_concat(ps);
    for (;;) {
        tok_t *t = cur(ps);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (op < 0) return n;
        ps->pos++;
        n = binop(ps, t, op, n, parse_concat(ps));
    }
}

/* compare := math1 {cmpop math1} ; cmpop := == != < <= > >= in | not in */
static jnode_t *parse_compare(parser_t *ps) {
    jnode_t *first = parse_math1(ps), *cmp = NULL;
    for (;;) {
        tok_t *t = cur(ps);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT
                 : is_op(t, "<=") ? OP_LE : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE
                 : is_name(t, "in") ? OP_IN
                 : is_name(t, "not") && is_name(peek(ps, 1), "in") ? OP_NOTIN : -1;
        if (op < 0) return cmp ? cmp : first;
        ps->pos += op == OP_NOTIN ? 2 : 1;
        if (!cmp) {
            cmp = mk(ps, E_COMPARE, t);
            cmp->a = first;
        }
        jnode_t *o = mk(ps, E_CMPOP, t);
        o->op = op;
        o->a = parse_math1(ps);
        nodes_push(ps, &cmp->args, o);
    }
}

/* not := 'not' not | compare */
static jnode_t *parse_not(parser_t *ps) {
    tok_t *t = cur(ps);
    if (is_name(t, "not")) {
        ps->pos++;
        enter(ps);
        jnode_t *n = mk(ps, E_NOT, t);
        n->a = parse_not(ps);
        ps->depth--;
        return n;
    }
    return parse_compare(ps);
}

/* and := not {'and' not} ; or := and {'or' and} */
static jnode_t *parse_and(parser_t *ps) {
    jnode_t *n = parse_not(ps);
    while (is_name(cur(ps), "and")) {
        tok_t *t = &ps->toks[ps->pos++];
        jnode_t *x = mk(ps, E_AND, t);
        x->a = n;
        x->b = parse_not(ps);
        n = x;
    }
    return n;
}

static jnode_t *parse_or(parser_t *ps) {
    jnode_t *n = parse_and(ps);
    while (is_name(cur(ps), "or")) {
        tok_t *t = &ps->toks[ps->pos++];
        jnode_t *x = mk(ps, E_OR, t);
        x->a = n;
        x->b = parse_and(ps);
        n = x;
    }
    return n;
}

/* expr := or ['if' or ['else' expr]] */
static jnode_t *parse_expr(parser_t *ps, bool with_cond) {
    enter(ps);
    jnode_t *n = parse_or(ps);
    while (with_cond && is_name(cur(ps), "if")) {
        tok_t *t = &ps->toks[ps->pos++];
        jnode_t *c = mk(ps, E_COND, t);
        c->a = parse_or(ps); /* condition */
        c->b = n;            /* value when true */
        if (is_name(cur(ps), "else")) {
            ps->pos++;
            c->c = parse_expr(ps, true);
        }
        n = c;
    }
    ps->depth--;
    return n;
}

static bool tuple_ends(parser_t *ps) {
    tok_t *t = cur(ps);
    return t->type == T_VAR_END || t->type == T_BLOCK_END || t->type == T_EOF || is_op(t, ")") ||
           is_op(t, "=") || is_name(t, "if") || is_name(t, "in") || is_name(t, "recursive");
}

/* tuple := expr {',' expr} [','] — a single expr without a comma is itself */
static jnode_t *parse_tuple(parser_t *ps, bool with_cond, bool explicit_parens) {
    tok_t *at = cur(ps);
    if (explicit_parens && is_op(at, ")")) return mk(ps, E_TUPLE, at);
    jnode_t *first = parse_expr(ps, with_cond);
    if (!is_op(cur(ps), ",")) return first;
    jnode_t *t = mk(ps, E_TUPLE, at);
    nodes_push(ps, &t->args, first);
    while (is_op(cur(ps), ",")) {
        ps->pos++;
        if (tuple_ends(ps)) break;
        nodes_push(ps, &t->args, parse_expr(ps, with_cond));
    }
    return t;
}

/* ---- statements ------------------------------------------------------------------- */
static void expect_block_end(parser_t *ps) {
    if (cur(ps)->type != T_BLOCK_END) unexpected(ps, "end of statement block");
    ps->pos++;
}

/* Parse statements until a block tag named one of `ends` ("a|b|c"); leaves the position on
 * that tag's name and returns the body. */
static jnodes_t parse_body(parser_t *ps, const char *ends, const tok_t *opener);

static bool name_in(const tok_t *t, const char *list) {
    const char *p = list;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (t->type == T_NAME && t->n == n && memcmp(t->p, p, n) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

/* for := 'for' target 'in' tuple ['if' expr] ... ['else' ...] 'endfor' */
static jnode_t *parse_for(parser_t *ps, tok_t *kw) {
    jnode_t *n = mk(ps, S_FOR, kw);
    tok_t *t0 = expect_name(ps);
    jnode_t *target = mk(ps, E_NAME, t0);
    target->name = t0->p;
    target->name_len = t0->n;
    if (is_op(cur(ps), ",")) {
        jnode_t *tup = mk(ps, E_TUPLE, t0);
        nodes_push(ps, &tup->args, target);
        while (is_op(cur(ps), ",")) {
            ps->pos++;
            tok_t *ti = expect_name(ps);
            jnode_t *nm = mk(ps, E_NAME, ti);
            nm->name = ti->p;
            nm->name_len = ti->n;
            nodes_push(ps, &tup->args, nm);
        }
        target = tup;
    }
    n->a = target;
    if (!is_name(cur(ps), "in")) unexpected(ps, "'in'");
    ps->pos++;
    n->b = parse_tuple(ps, false, false);
    if (is_name(cur(ps), "if")) {
        ps->pos++;
        n->c = parse_expr(ps, true);
    }
    if (is_name(cur(ps), "recursive"))
        perr(ps, "jinja-unsupported", cur(ps)->line, cur(ps)->col, "unsupported: recursive for loops");
    expect_block_end(ps);
    n->args = parse_body(ps, "endfor|else", kw);
    if (is_name(cur(ps), "else")) {
        ps->pos++;
        expect_block_end(ps);
        n->kw = parse_body(ps, "endfor", kw);
    }
    ps->pos++;
    expect_block_end(ps);
    return n;
}

/* if := 'if' expr body {'elif' expr body} ['else' body] 'endif' */
static jnode_t *parse_if(parser_t *ps, tok_t *kw) {
    jnode_t *n = mk(ps, S_IF, kw);
    n->a = parse_tuple(ps, true, false);
    expect_block_end(ps);
    n->args = parse_body(ps, "elif|else|endif", kw);
    tok_t *t = cur(ps);
    ps->pos++;
    if (is_name(t, "elif")) {
        nodes_push(ps, &n->kw, parse_if(ps, t));
        return n; /* the nested if consumed endif */
    }
    if (is_name(t, "else")) {
        expect_block_end(ps);
        n->kw = parse_body(ps, "endif", kw);
        ps->pos++;
    }
    expect_block_end(ps);
    return n;
}

/* set := 'set' target '=' tuple | 'set' name body 'endset' ; target := name | name.attr | names */
static jnode_t *parse_set(parser_t *ps, tok_t *kw) {
    tok_t *t0 = expect_name(ps);
    jnode_t *target = mk(ps, E_NAME, t0);
    target->name = t0->p;
    target->name_len = t0->n;
    if (is_op(cur(ps), ".")) {
        ps->pos++;
        tok_t *at = expect_name(ps);
        jnode_t *attr = mk(ps, E_ATTR, at);
        attr->a = target;
        attr->name = at->p;
        attr->name_len = at->n;
        target = attr;
    } else if (is_op(cur(ps), ",")) {
        jnode_t *tup = mk(ps, E_TUPLE, t0);
        nodes_push(ps, &tup->args, target);
        while (is_op(cur(ps), ",")) {
            ps->pos++;
            tok_t *ti = expect_name(ps);
            jnode_t *nm = mk(ps, E_NAME, ti);
            nm->name = ti->p;
            nm->name_len = ti->n;
            nodes_push(ps, &tup->args, nm);
        }
        target = tup;
    }
    if (cur(ps)->type == T_BLOCK_END && target->kind == E_NAME) {
        ps->pos++;
        jnode_t *n = mk(ps, S_SETBLOCK, kw);
        n->a = target;
        n->args = parse_body(ps, "endset", kw);
        ps->pos++;
        expect_block_end(ps);
        return n;
    }
    jnode_t *n = mk(ps, S_SET, kw);
    n->a = target;
    expect_op(ps, "=");
    n->b = parse_tuple(ps, true, false);
    expect_block_end(ps);
    return n;
}

/* macro := 'macro' name '(' [param {',' param}] ')' body 'endmacro' ; param := name ['=' expr] */
static jnode_t *parse_macro(parser_t *ps, tok_t *kw) {
    tok_t *nt = expect_name(ps);
    jnode_t *n = mk(ps, S_MACRO, kw);
    n->name = nt->p;
    n->name_len = nt->n;
    expect_op(ps, "(");
    while (!is_op(cur(ps), ")")) {
        if (n->kw.n) expect_op(ps, ",");
        tok_t *pt = expect_name(ps);
        jnode_t *p = mk(ps, E_PARAM, pt);
        p->name = pt->p;
        p->name_len = pt->n;
        if (is_op(cur(ps), "=")) {
            ps->pos++;
            p->a = parse_expr(ps, true);
        }
        nodes_push(ps, &n->kw, p);
    }
    ps->pos++;
    expect_block_end(ps);
    n->args = parse_body(ps, "endmacro", kw);
    ps->pos++;
    if (cur(ps)->type == T_NAME) ps->pos++; /* {% endmacro name %} */
    expect_block_end(ps);
    return n;
}

static jnode_t *parse_statement(parser_t *ps) {
    tok_t *kw = expect_name(ps);
    enter(ps);
    jnode_t *n;
    if (is_name(kw, "for")) n = parse_for(ps, kw);
    else if (is_name(kw, "if")) n = parse_if(ps, kw);
    else if (is_name(kw, "set")) n = parse_set(ps, kw);
    else if (is_name(kw, "macro")) n = parse_macro(ps, kw);
    else if (is_name(kw, "break") || is_name(kw, "continue")) {
        n = mk(ps, is_name(kw, "break") ? S_BREAK : S_CONTINUE, kw);
        expect_block_end(ps);
    } else if (is_name(kw, "generation")) {
        n = mk(ps, S_GENERATION, kw);
        expect_block_end(ps);
        n->args = parse_body(ps, "endgeneration", kw);
        ps->pos++;
        expect_block_end(ps);
    } else
        perr(ps, "jinja-unsupported", kw->line, kw->col, "unsupported tag '%.*s'", (int)kw->n, kw->p);
    ps->depth--;
    return n;
}

static jnodes_t parse_body(parser_t *ps, const char *ends, const tok_t *opener) {
    jnodes_t body = {0};
    for (;;) {
        tok_t *t = cur(ps);
        if (t->type == T_EOF) {
            if (!ends) return body;
            perr(ps, "jinja-syntax", opener->line, opener->col,
                 "unexpected end of template: '%.*s' is never closed (expected '%s')",
                 (int)opener->n, opener->p, ends);
        }
        if (t->type == T_DATA) {
            jnode_t *n = mk(ps, S_DATA, t);
            n->val = t->val;
            nodes_push(ps, &body, n);
            ps->pos++;
        } else if (t->type == T_VAR_BEGIN) {
            ps->pos++;
            jnode_t *n = mk(ps, S_OUTPUT, t);
            n->a = parse_tuple(ps, true, false);
            if (cur(ps)->type != T_VAR_END) unexpected(ps, "end of print statement");
            ps->pos++;
            nodes_push(ps, &body, n);
        } else if (t->type == T_BLOCK_BEGIN) {
            ps->pos++;
            if (ends && name_in(cur(ps), ends)) return body;
            tok_t *nt = cur(ps);
            if (nt->type == T_NAME &&
                name_in(nt, "endfor|endif|elif|else|endset|endmacro|endgeneration"))
                perr(ps, "jinja-syntax", nt->line, nt->col, "unexpected '%.*s'%s%s%s", (int)nt->n,
                     nt->p, ends ? " (expected '" : "", ends ? ends : "", ends ? "')" : "");
            nodes_push(ps, &body, parse_statement(ps));
        } else unexpected(ps, "template data or a tag");
    }
}

int nmc_jinja_parse(nmc_arena_t *a, const char *src, size_t len, const char *name,
                    nmc_jinja_template_t **out, nmc_diags_t *diags) {
    parser_t *ps = calloc(1, sizeof *ps);
    if (!ps) abort();
    ps->a = a;
    *out = NULL;
    if (setjmp(ps->jb)) {
        nmc_diag_t *d = nmc_diag_add(diags, NMC_SEV_ERROR, ps->code, name, ps->err_line,
                                     ps->err_col, 0, "%s", ps->msg);
        if (strcmp(ps->code, "jinja-unsupported") == 0)
            nmc_diag_set_help(d, "nmc implements the Jinja2 subset real chat templates use "
                                 "(docs/chat_templates.md); rewrite the template without it");
        free(ps);
        return -1;
    }
    normalize(ps, src ? src : "", src ? len : 0);
    lex(ps);
    nmc_jinja_template_t *t = nmc_arena_alloc(a, sizeof *t);
    t->name = nmc_arena_strdup(a, name ? name : "template");
    t->body = parse_body(ps, NULL, NULL);
    *out = t;
    free(ps);
    return 0;
}
