/* json.c — strict RFC 8259 parsing: entry points, limits, file reading and the strict
 * checker.
 *
 * Parsing runs in two passes. The checker below walks the bytes once with the JSON grammar
 * and reports everything jsmn would let through (see json.h), each with its own code,
 * line:col and a help line; it recovers from local mistakes (a bad number, a trailing comma,
 * a missing comma, a bad escape) to report further independent errors, and stops at the
 * first structural one (unterminated string, unbalanced bracket, end of input). Only a
 * document it accepts goes to jsmn, whose tokens json_tree.c turns into the tree; that pass
 * adds duplicate-key errors. Positions, the C locale and message quoting live here too.
 */
#include "json_priv.h"
#include "json_utf8.h"
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- positions, locale, message quoting ------------------------------------------------ */

void nmc_jpos_init(nmc_jpos_t *c, const char *s, size_t len, size_t base)
{
    c->s = (const unsigned char *)s;
    c->len = len;
    c->base = c->off = base;
    c->line = c->col = 1;
    c->valid_utf8 = false;
}

void nmc_jpos_seek(nmc_jpos_t *c, size_t off)
{
    if (off > c->len) off = c->len;
    if (off < c->off) {
        bool valid = c->valid_utf8;
        nmc_jpos_init(c, (const char *)c->s, c->len, c->base);
        c->valid_utf8 = valid;
    }
    const unsigned char *s = c->s;
    size_t p = c->off;
    uint32_t line = c->line, col = c->col;
    while (p < off) {
        unsigned char b = s[p];
        if (b == '\n') {
            line++;
            col = 1;
            p++;
        } else if (b < 0x80) {
            col++;
            p++;
        } else if (c->valid_utf8) {
            col += (b & 0xC0) != 0x80; /* count lead bytes */
            p++;
        } else {
            int32_t cp;
            p += nmc_utf8_unit(s + p, c->len - p, &cp, NULL);
            col++;
        }
    }
    c->off = p;
    c->line = line;
    c->col = col;
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void make_c_locale(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

locale_t nmc_json_c_locale(void)
{
    pthread_once(&c_locale_once, make_c_locale);
    return c_locale;
}

void nmc_json_quote_msg(char *buf, size_t cap, const char *s, size_t n)
{
    if (cap == 0) return;
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, p = 0, room = cap > 4 ? cap - 4 : 0;
    while (p < n) {
        char tmp[8];
        size_t k;
        int32_t cp;
        size_t ul = nmc_utf8_unit(u + p, n - p, &cp, NULL);
        if (cp == '"' || cp == '\\') k = (size_t)snprintf(tmp, sizeof tmp, "\\%c", (char)cp);
        else if (cp >= 0 && cp < 0x20) k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
        else if (cp < 0) k = (size_t)snprintf(tmp, sizeof tmp, "\\ufffd");
        else {
            memcpy(tmp, s + p, ul);
            k = ul;
        }
        if (o + k > room) {
            if (cap > 4) memcpy(buf + o, "...", 3), o += 3;
            break;
        }
        memcpy(buf + o, tmp, k);
        o += k;
        p += ul;
    }
    buf[o < cap ? o : cap - 1] = '\0';
}

/* ---- the strict checker ----------------------------------------------------------------- */

enum { ST_VALUE, ST_AFTER, ST_KEY, ST_DONE };

typedef struct {
    unsigned char kind; /* '[' or '{' */
    size_t off;         /* offset of the opening bracket */
} frame_t;

typedef struct {
    const unsigned char *s;
    size_t len, p;
    const char *file;
    nmc_diags_t *diags;
    nmc_jpos_t cur;
    size_t nerr;
    bool fatal;
    size_t ntok; /* values + keys: the jsmn tokens the document needs */
    int max_depth;
    frame_t *stack;
    int depth, stack_cap;
} checker_t;

static nmc_diag_t *err(checker_t *c, const char *code, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static nmc_diag_t *err(checker_t *c, const char *code, size_t off, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nmc_jpos_seek(&c->cur, off);
    c->nerr++;
    return nmc_diag_add(c->diags, NMC_SEV_ERROR, code, c->file, c->cur.line, c->cur.col, off,
                        "%s", msg);
}

/* A fatal error: record it and stop checking. */
#define FATAL(c, ...) ((c)->fatal = true, err(c, __VA_ARGS__))

static bool at(const checker_t *c, size_t p, unsigned char b) { return p < c->len && c->s[p] == b; }

/* "'x'", "U+00E9 'é'", "control character U+0001" or "end of input", for messages. */
static void describe(const checker_t *c, size_t p, char *buf, size_t cap)
{
    if (p >= c->len) {
        snprintf(buf, cap, "end of input");
        return;
    }
    int32_t cp;
    size_t n = nmc_utf8_unit(c->s + p, c->len - p, &cp, NULL);
    if (cp < 0) snprintf(buf, cap, "byte 0x%02X", c->s[p]);
    else if (cp < 0x20 || cp == 0x7F) snprintf(buf, cap, "control character U+%04X", (unsigned)cp);
    else if (cp == '\'') snprintf(buf, cap, "single quote \"'\"");
    else if (cp < 0x80) snprintf(buf, cap, "'%c'", (char)cp);
    else snprintf(buf, cap, "U+%04X '%.*s'", (unsigned)cp, (int)n, (const char *)c->s + p);
}

static bool is_value_start(unsigned char b)
{
    return b == '"' || b == '[' || b == '{' || nmc_json_is_word_byte(b);
}

static const char *closer_name(unsigned char kind) { return kind == '[' ? "']'" : "'}'"; }
static const char *kind_word(unsigned char kind) { return kind == '[' ? "array" : "object"; }

/* Anything the grammar has no place for. `expected` describes what would have fit. */
static void unexpected(checker_t *c, const char *expected)
{
    size_t p = c->p;
    if (p >= c->len) return; /* callers handle end of input */
    int32_t cp;
    const char *why = NULL;
    nmc_utf8_unit(c->s + p, c->len - p, &cp, &why);
    if (cp < 0) {
        nmc_diag_t *r = FATAL(c, "json-invalid-utf8", p, "invalid UTF-8: %s (byte 0x%02X)", why, c->s[p]);
        nmc_diag_set_help(r, "JSON text must be UTF-8; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)");
        return;
    }
    char got[48];
    describe(c, p, got, sizeof got);
    nmc_diag_t *r = FATAL(c, "json-unexpected-char", p, "unexpected %s", got);
    nmc_diag_set_expected(r, "%s", expected);
    nmc_diag_set_got(r, "%s", got);
    if (cp == '\'') nmc_diag_set_help(r, "JSON strings and keys use double quotes: \"...\"");
    else if (cp == '=' && strstr(expected, "':'")) nmc_diag_set_help(r, "separate a key from its value with ':'");
    else if (cp == ';') nmc_diag_set_help(r, "separate elements with ','");
    else if (strcmp(expected, "end of input") == 0) nmc_diag_set_help(r, "remove the text after the end of the JSON value");
    else if (cp < 0x20 || cp == 0x7F) nmc_diag_set_help(r, "remove the control character");
    else if (cp >= 0x80) nmc_diag_set_help(r, "text belongs inside double quotes");
    else nmc_diag_set_help(r, "write %s here, or remove the %s", expected, got);
}

static void skip_comment(checker_t *c)
{
    size_t p = c->p;
    nmc_diag_t *r = err(c, "json-comment", p, "comments are not allowed in JSON");
    nmc_diag_set_help(r, "remove the comment (to annotate a value, add a key such as \"_comment\" only where the schema allows it)");
    if (c->s[p + 1] == '/') {
        while (p < c->len && c->s[p] != '\n') p++;
    } else {
        p += 2;
        while (p < c->len && !(c->s[p] == '*' && at(c, p + 1, '/'))) p++;
        p = p < c->len ? p + 2 : c->len;
    }
    c->p = p;
}

static void skip_ws(checker_t *c)
{
    for (;;) {
        const unsigned char *s = c->s;
        size_t p = c->p, n = c->len;
        while (p < n && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) p++;
        c->p = p;
        if (p + 1 < n && s[p] == '/' && (s[p + 1] == '/' || s[p + 1] == '*')) skip_comment(c);
        else return;
    }
}

/* ---- strings ---- */

static int hexval(unsigned char b)
{
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

/* The 4 hex digits after "\u" at p (p points at the backslash); -1 when malformed. */
static long hex4(const checker_t *c, size_t p)
{
    if (p + 6 > c->len || c->s[p] != '\\' || c->s[p + 1] != 'u') return -1;
    long v = 0;
    for (size_t i = p + 2; i < p + 6; i++) {
        int h = hexval(c->s[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* One escape at p (the backslash). Returns where scanning continues. */
static size_t scan_escape(checker_t *c, size_t p)
{
    unsigned char e = c->s[p + 1];
    if (e && strchr("\"\\/bfnrt", e)) return p + 2;
    if (e != 'u') {
        nmc_diag_t *r;
        if (e > 0x20 && e < 0x7F) r = err(c, "json-bad-escape", p, "invalid escape \\%c in string", e);
        else {
            char got[48];
            describe(c, p + 1, got, sizeof got);
            r = err(c, "json-bad-escape", p, "invalid escape: '\\' followed by %s", got);
        }
        nmc_diag_set_help(r, "valid escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX; write a literal backslash as \\\\");
        if (e < 0x20) return p + 1; /* let the string loop report the control character */
        int32_t cp;
        return p + 1 + nmc_utf8_unit(c->s + p + 1, c->len - p - 1, &cp, NULL);
    }
    long u = hex4(c, p);
    if (u < 0) {
        nmc_diag_t *r = err(c, "json-bad-escape", p, "\\u must be followed by four hex digits");
        nmc_diag_set_help(r, "write the code point as \\u plus exactly four hex digits, e.g. \\u00e9");
        return p + 2;
    }
    if (u >= 0xD800 && u <= 0xDBFF) {
        long lo = hex4(c, p + 6);
        if (lo >= 0xDC00 && lo <= 0xDFFF) return p + 12;
        nmc_diag_t *r = err(c, "json-bad-surrogate", p,
                            "unpaired high surrogate \\u%04lX (not followed by a low surrogate)", u);
        nmc_diag_set_help(r, "follow it with a \\uDC00-\\uDFFF escape to form a pair, or write the character itself in UTF-8");
        return p + 6;
    }
    if (u >= 0xDC00 && u <= 0xDFFF) {
        nmc_diag_t *r = err(c, "json-bad-surrogate", p,
                            "unpaired low surrogate \\u%04lX (no high surrogate before it)", u);
        nmc_diag_set_help(r, "precede it with a \\uD800-\\uDBFF escape to form a pair, or write the character itself in UTF-8");
    }
    return p + 6;
}

static const char *control_escape(unsigned char b)
{
    switch (b) {
    case '\t': return "\\t";
    case '\b': return "\\b";
    case '\f': return "\\f";
    default: return NULL;
    }
}

static void string_unterminated(checker_t *c, size_t open)
{
    nmc_diag_t *r = FATAL(c, "json-unterminated-string", open, "string is not closed before the end of input");
    nmc_diag_set_expected(r, "'\"'");
    nmc_diag_set_got(r, "end of input");
    nmc_diag_set_help(r, "add the closing '\"'");
    c->p = c->len;
}

/* A string at c->p (the opening quote); leaves c->p after the closing quote. */
static void scan_string(checker_t *c)
{
    const unsigned char *s = c->s;
    size_t open = c->p, p = open + 1, n = c->len;
    for (;;) {
        while (p < n && s[p] >= 0x20 && s[p] < 0x80 && s[p] != '"' && s[p] != '\\') p++;
        if (p >= n) return string_unterminated(c, open);
        unsigned char b = s[p];
        if (b == '"') break;
        if (b == '\\') {
            if (p + 1 >= n) return string_unterminated(c, open);
            p = scan_escape(c, p);
            continue;
        }
        if (b == '\n' || b == '\r') {
            nmc_diag_t *r = FATAL(c, "json-control-char", p, "line break inside a string (strings cannot span lines)");
            nmc_diag_set_help(r, "if the string should end here, add the closing '\"'; to keep the line break, write it as \\n");
            c->p = p;
            return;
        }
        if (b < 0x20) {
            nmc_diag_t *r = err(c, "json-control-char", p, "raw control character U+%04X inside a string", b);
            const char *esc = control_escape(b);
            if (esc) nmc_diag_set_help(r, "write it escaped as %s", esc);
            else nmc_diag_set_help(r, "write it escaped as \\u%04x, or remove it", b);
            p++;
            continue;
        }
        int32_t cp;
        const char *why = NULL;
        size_t u = nmc_utf8_unit(s + p, n - p, &cp, &why);
        if (cp < 0) {
            nmc_diag_t *r = err(c, "json-invalid-utf8", p, "invalid UTF-8 in string: %s (byte 0x%02X)", why, b);
            nmc_diag_set_help(r, "JSON text must be UTF-8; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)");
        }
        p += u;
    }
    c->p = p + 1;
}

/* ---- numbers and literals ---- */

static bool is_digit(unsigned char b) { return b >= '0' && b <= '9'; }

static bool ieq(const char *t, size_t n, const char *w)
{
    size_t k = strlen(w);
    if (k != n) return false;
    for (size_t i = 0; i < n; i++) {
        char a = t[i] >= 'A' && t[i] <= 'Z' ? (char)(t[i] + 32) : t[i];
        if (a != w[i]) return false;
    }
    return true;
}

static bool is_nonfinite_word(const char *t, size_t n)
{
    if (n && (t[0] == '-' || t[0] == '+')) t++, n--;
    return ieq(t, n, "nan") || ieq(t, n, "inf") || ieq(t, n, "infinity");
}

/* Shown text of a word: at most 40 bytes. */
#define SHOW(t, n) ((int)((n) > 40 ? 40 : (n))), (t), ((n) > 40 ? "..." : "")

static void bad_number(checker_t *c, size_t off, const char *t, size_t n, const char *what)
{
    nmc_diag_t *r = err(c, "json-bad-number", off, "invalid number `%.*s%s`: %s", SHOW(t, n), what);
    nmc_diag_set_help(r, "a JSON number is -?digits[.digits][e[+-]digits], e.g. -12.5e3; if this is text, put it in double quotes: \"%.*s%s\"",
                      SHOW(t, n));
}

/* The number grammar of RFC 8259 §6 over the word t[0..n) at offset off. */
static void check_number(checker_t *c, size_t off, const char *t, size_t n)
{
    size_t i = 0;
    if (is_nonfinite_word(t, n)) {
        nmc_diag_t *r = err(c, "json-invalid-literal", off, "`%.*s%s` is not a JSON number", SHOW(t, n));
        nmc_diag_set_help(r, "JSON has no NaN or Infinity; use null, or a string");
        return;
    }
    if (t[0] == '+') {
        nmc_diag_t *r = err(c, "json-bad-number", off, "invalid number `%.*s%s`: a number cannot start with '+'", SHOW(t, n));
        nmc_diag_set_help(r, "remove the '+'");
        return;
    }
    if (t[0] == '.') {
        nmc_diag_t *r = err(c, "json-bad-number", off, "invalid number `%.*s%s`: a digit must come before the '.'", SHOW(t, n));
        nmc_diag_set_help(r, "write 0%.*s%s", SHOW(t, n));
        return;
    }
    if (t[i] == '-') i++;
    if (i == n || !is_digit((unsigned char)t[i])) return bad_number(c, off, t, n, "expected a digit after '-'");
    if (t[i] == '0' && i + 1 < n && is_digit((unsigned char)t[i + 1])) {
        size_t k = i;
        while (t[k] == '0' && k + 1 < n && is_digit((unsigned char)t[k + 1])) k++;
        nmc_diag_t *r = err(c, "json-leading-zero", off, "invalid number `%.*s%s`: leading zeros are not allowed", SHOW(t, n));
        nmc_diag_set_help(r, "write %.*s%.*s%s (or quote it if the zeros matter: \"%.*s%s\")", (int)i, t,
                          SHOW(t + k, n - k), SHOW(t, n));
        return;
    }
    if (t[i] == '0' && i + 1 < n && (t[i + 1] == 'x' || t[i + 1] == 'X')) {
        nmc_diag_t *r = err(c, "json-bad-number", off, "invalid number `%.*s%s`: hexadecimal numbers are not allowed", SHOW(t, n));
        nmc_diag_set_help(r, "write the value in decimal");
        return;
    }
    while (i < n && is_digit((unsigned char)t[i])) i++;
    if (i < n && t[i] == '.') {
        i++;
        if (i == n || !is_digit((unsigned char)t[i])) {
            if (i == n) {
                nmc_diag_t *r = err(c, "json-bad-number", off, "invalid number `%.*s%s`: expected a digit after '.'", SHOW(t, n));
                nmc_diag_set_help(r, "write %.*s%s0 or %.*s", SHOW(t, n), (int)(n - 1 > 40 ? 40 : n - 1), t);
                return;
            }
            return bad_number(c, off, t, n, "expected a digit after '.'");
        }
        while (i < n && is_digit((unsigned char)t[i])) i++;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) i++;
        if (i == n || !is_digit((unsigned char)t[i])) return bad_number(c, off, t, n, "expected a digit in the exponent");
        while (i < n && is_digit((unsigned char)t[i])) i++;
    }
    if (i < n) {
        char what[40];
        snprintf(what, sizeof what, "unexpected '%c'", t[i]);
        bad_number(c, off, t, n, what);
    }
}

static void check_literal(checker_t *c, size_t off, const char *t, size_t n)
{
    static const char *const lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++)
        if (n == strlen(lits[k]) && memcmp(t, lits[k], n) == 0) return;
    nmc_diag_t *r = err(c, "json-invalid-literal", off, "invalid literal `%.*s%s`", SHOW(t, n));
    for (int k = 0; k < 3; k++)
        if (ieq(t, n, lits[k])) return nmc_diag_set_help(r, "JSON literals are lowercase: write %s", lits[k]);
    if (is_nonfinite_word(t, n)) return nmc_diag_set_help(r, "JSON has no NaN or Infinity; use null, or a string");
    if (ieq(t, n, "none") || ieq(t, n, "nil") || ieq(t, n, "undefined"))
        return nmc_diag_set_help(r, "JSON writes an absent value as null");
    for (int k = 0; k < 3; k++)
        if (n >= 2 && nmc_edit_distance(t, n, lits[k], strlen(lits[k])) <= 2)
            return nmc_diag_set_help(r, "did you mean %s? (or, if this is text, put it in double quotes: \"%.*s%s\")",
                                     lits[k], SHOW(t, n));
    nmc_diag_set_help(r, "if this is text, put it in double quotes: \"%.*s%s\"", SHOW(t, n));
}

static size_t word_end(const checker_t *c, size_t p)
{
    while (p < c->len && nmc_json_is_word_byte(c->s[p])) p++;
    return p;
}

/* A number or literal at c->p. */
static void scan_word(checker_t *c)
{
    size_t off = c->p, end = word_end(c, off);
    const char *t = (const char *)c->s + off;
    unsigned char b = c->s[off];
    if (is_digit(b) || b == '-' || b == '+' || b == '.') check_number(c, off, t, end - off);
    else check_literal(c, off, t, end - off);
    c->p = end;
}

/* ---- structure ---- */

/* Where an end-of-input error points: just after the last non-blank byte, so the caret sits
 * at the end of the user's text rather than on an empty last line. */
static size_t eof_offset(const checker_t *c)
{
    size_t e = c->len;
    while (e > c->cur.base && (c->s[e - 1] == ' ' || c->s[e - 1] == '\n' || c->s[e - 1] == '\r' || c->s[e - 1] == '\t'))
        e--;
    return e;
}

static void unexpected_eof(checker_t *c, const char *expected)
{
    nmc_diag_t *r;
    if (c->depth == 0) {
        r = FATAL(c, "json-unexpected-eof", eof_offset(c), "unexpected end of input, expected %s", expected);
    } else {
        frame_t *f = &c->stack[c->depth - 1];
        nmc_jpos_seek(&c->cur, f->off);
        uint32_t l = c->cur.line, col = c->cur.col;
        r = FATAL(c, "json-unexpected-eof", eof_offset(c),
                  "unexpected end of input: the %s opened at line %u, col %u is not closed",
                  kind_word(f->kind), (unsigned)l, (unsigned)col);
        nmc_diag_set_help(r, "add the missing %s (and check the brackets before it)", closer_name(f->kind));
    }
    nmc_diag_set_expected(r, "%s", expected);
    nmc_diag_set_got(r, "end of input");
}

static int open_container(checker_t *c, unsigned char kind)
{
    if (c->depth >= c->max_depth) {
        nmc_diag_t *r = FATAL(c, "json-too-deep", c->p, "nesting depth %d exceeds the limit of %d",
                              c->depth + 1, c->max_depth);
        nmc_diag_set_help(r, "flatten the data; the limit (nmc_json_limits_t.max_depth) keeps recursive consumers within their stack");
        return ST_DONE;
    }
    if (c->depth == c->stack_cap) {
        c->stack_cap = c->stack_cap ? c->stack_cap * 2 : 16;
        frame_t *ns = realloc(c->stack, (size_t)c->stack_cap * sizeof *ns);
        if (!ns) abort(); /* out of memory is not a user error (see arena.h) */
        c->stack = ns;
    }
    c->stack[c->depth++] = (frame_t){kind, c->p};
    c->ntok++;
    c->p++;
    skip_ws(c);
    unsigned char close = kind == '[' ? ']' : '}';
    if (at(c, c->p, close)) {
        c->p++;
        c->depth--;
        return ST_AFTER;
    }
    return kind == '[' ? ST_VALUE : ST_KEY;
}

/* value := object | array | string | number | literal */
static int st_value(checker_t *c)
{
    if (c->p >= c->len) return unexpected_eof(c, "a value"), ST_DONE;
    unsigned char b = c->s[c->p];
    if (b == '[' || b == '{') return open_container(c, b);
    c->ntok++;
    if (b == '"') return scan_string(c), ST_AFTER;
    if (nmc_json_is_word_byte(b)) return scan_word(c), ST_AFTER;
    if (c->depth > 0 && (b == ',' || b == ']' || b == '}')) {
        frame_t *f = &c->stack[c->depth - 1];
        nmc_diag_t *r;
        if (f->kind == '[') {
            r = err(c, "json-missing-value", c->p, "missing array element before '%c'", b);
            nmc_diag_set_help(r, "remove the extra ',' or put a value there");
        } else {
            r = err(c, "json-missing-value", c->p, "missing value after ':'");
            nmc_diag_set_help(r, "write a value after the ':' (null if there is none), or remove the key");
        }
        return ST_AFTER; /* the bracket or comma is handled there */
    }
    unexpected(c, "a value");
    return ST_DONE;
}

/* After a value: ',' or the closing bracket, or the end of input at the root. */
static int st_after(checker_t *c)
{
    if (c->depth == 0) {
        if (c->p >= c->len) return ST_DONE;
        if (is_value_start(c->s[c->p])) {
            nmc_diag_t *r = FATAL(c, "json-multiple-roots", c->p, "more than one top-level value");
            nmc_diag_set_help(r, "a JSON document holds exactly one value: wrap the values in an array [a, b], or remove the extra text");
        } else {
            unexpected(c, "end of input");
        }
        return ST_DONE;
    }
    frame_t *f = &c->stack[c->depth - 1];
    const char *expected = f->kind == '[' ? "',' or ']'" : "',' or '}'";
    if (c->p >= c->len) return unexpected_eof(c, expected), ST_DONE;
    unsigned char b = c->s[c->p], close = f->kind == '[' ? ']' : '}';
    if (b == ',') {
        size_t comma = c->p++;
        skip_ws(c);
        if (at(c, c->p, close)) {
            nmc_diag_t *r = err(c, "json-trailing-comma", comma, "trailing comma after the last %s",
                                f->kind == '[' ? "element" : "member");
            nmc_diag_set_help(r, "remove the comma after the last %s", f->kind == '[' ? "element" : "member");
            c->p++;
            c->depth--;
            return ST_AFTER;
        }
        return f->kind == '[' ? ST_VALUE : ST_KEY;
    }
    if (b == close) {
        c->p++;
        c->depth--;
        return ST_AFTER;
    }
    if (b == ']' || b == '}') {
        nmc_jpos_seek(&c->cur, f->off);
        uint32_t l = c->cur.line, col = c->cur.col;
        nmc_diag_t *r = FATAL(c, "json-mismatched-bracket", c->p, "'%c' does not close the %s opened at line %u, col %u",
                              b, kind_word(f->kind), (unsigned)l, (unsigned)col);
        nmc_diag_set_expected(r, "%s", expected);
        nmc_diag_set_got(r, "'%c'", b);
        nmc_diag_set_help(r, "close the %s with %s, or check the brackets before it", kind_word(f->kind), closer_name(f->kind));
        return ST_DONE;
    }
    if (is_value_start(b)) {
        nmc_diag_t *r = err(c, "json-missing-comma", c->p, "missing ',' before this %s",
                            f->kind == '[' ? "element" : "member");
        nmc_diag_set_help(r, "insert a ',' between the %s", f->kind == '[' ? "elements" : "members");
        return f->kind == '[' ? ST_VALUE : ST_KEY;
    }
    unexpected(c, expected);
    return ST_DONE;
}

/* What follows a key: ':' then the value. */
static int after_key(checker_t *c, size_t key_off, size_t text_off, size_t text_len)
{
    skip_ws(c);
    if (c->p >= c->len) return unexpected_eof(c, "':'"), ST_DONE;
    unsigned char b = c->s[c->p];
    if (b == ':') {
        c->p++;
        return ST_VALUE;
    }
    char q[96];
    nmc_json_quote_msg(q, 64, (const char *)c->s + text_off, text_len);
    if (b == ',' || b == '}') {
        nmc_diag_t *r = err(c, "json-missing-value", key_off, "key \"%s\" has no value", q);
        nmc_diag_set_help(r, "add ': <value>' after the key, or remove the key");
        return ST_AFTER;
    }
    if (is_value_start(b)) {
        nmc_diag_t *r = err(c, "json-missing-colon", c->p, "missing ':' after key \"%s\"", q);
        nmc_diag_set_help(r, "separate a key from its value with ':'");
        return ST_VALUE;
    }
    unexpected(c, "':'");
    return ST_DONE;
}

/* member := string ':' value */
static int st_key(checker_t *c)
{
    if (c->p >= c->len) return unexpected_eof(c, "a key"), ST_DONE;
    unsigned char b = c->s[c->p];
    size_t off = c->p;
    c->ntok++;
    if (b == '"') {
        scan_string(c);
        if (c->fatal) return ST_DONE;
        return after_key(c, off, off + 1, c->p - off - 2);
    }
    if (nmc_json_is_word_byte(b)) {
        size_t end = word_end(c, off);
        nmc_diag_t *r = err(c, "json-unquoted-key", off, "object key `%.*s%s` is not a string",
                            SHOW((const char *)c->s + off, end - off));
        nmc_diag_set_help(r, "put the key in double quotes: \"%.*s%s\"", SHOW((const char *)c->s + off, end - off));
        c->p = end;
        return after_key(c, off, off, end - off);
    }
    if (b == ',') {
        nmc_diag_t *r = err(c, "json-missing-value", off, "missing member before ','");
        nmc_diag_set_help(r, "remove the extra ','");
        c->p++;
        skip_ws(c);
        if (at(c, c->p, '}')) { /* "{,}": nothing else is wrong */
            c->p++;
            c->depth--;
            return ST_AFTER;
        }
        return ST_KEY;
    }
    unexpected(c, "a key (a string in double quotes)");
    return ST_DONE;
}

/* Runs the checker over s[base..len). Returns the number of errors. */
static size_t check(checker_t *c)
{
    skip_ws(c);
    if (c->p >= c->len) {
        nmc_diag_t *r = err(c, "json-empty", c->cur.base, "no JSON value: the input is %s",
                            c->len == c->cur.base ? "empty" : "only whitespace and comments");
        nmc_diag_set_help(r, "write one JSON value, e.g. {}");
        return c->nerr;
    }
    int st = ST_VALUE;
    while (st != ST_DONE && !c->fatal) {
        skip_ws(c);
        if (st == ST_VALUE) st = st_value(c);
        else if (st == ST_AFTER) st = st_after(c);
        else st = st_key(c);
    }
    return c->nerr;
}

/* ---- entry points ------------------------------------------------------------------------ */

static void effective_limits(const nmc_json_limits_t *l, size_t *max_bytes, int *max_depth)
{
    *max_bytes = l && l->max_bytes ? l->max_bytes : NMC_JSON_DEFAULT_MAX_BYTES;
    *max_depth = l && l->max_depth > 0 ? l->max_depth : NMC_JSON_DEFAULT_MAX_DEPTH;
    if (*max_depth > NMC_JSON_HARD_MAX_DEPTH) *max_depth = NMC_JSON_HARD_MAX_DEPTH;
}

static void too_large(nmc_diags_t *diags, const char *file, const char *size, size_t limit, bool by_jsmn)
{
    nmc_diag_t *r = nmc_diag_add(diags, NMC_SEV_ERROR, "json-too-large", file, 0, 0, 0,
                                 "input is %s bytes, over the limit of %zu bytes", size, limit);
    if (by_jsmn) nmc_diag_set_help(r, "the tokenizer addresses input with int offsets; split the data into smaller files");
    else nmc_diag_set_help(r, "check that this is the intended file; the limit is nmc_json_limits_t.max_bytes");
}

int nmc_json_parse(nmc_arena_t *a, const char *src, size_t len, const char *file,
                   const nmc_json_limits_t *limits, nmc_json_t **out, nmc_diags_t *diags)
{
    if (out) *out = NULL;
    size_t max_bytes;
    int max_depth;
    effective_limits(limits, &max_bytes, &max_depth);
    char size[32];
    snprintf(size, sizeof size, "%zu", len);
    if (len > max_bytes) return too_large(diags, file, size, max_bytes, false), -1;
    if (len > (size_t)INT_MAX - 1) return too_large(diags, file, size, (size_t)INT_MAX - 1, true), -1;
    if (!src) { /* nothing to read, whatever len says */
        src = "";
        len = 0;
    }
    size_t base = len >= 3 && memcmp(src, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    checker_t c = {.s = (const unsigned char *)src, .len = len, .p = base, .file = file,
                   .diags = diags, .max_depth = max_depth};
    nmc_jpos_init(&c.cur, src, len, base);
    size_t nerr = check(&c);
    free(c.stack);
    if (nerr) return -1;
    nmc_json_t *root = NULL;
    if (nmc_json_build(a, src, len, base, c.ntok, file, &root, diags) != 0) return -1;
    if (out) *out = root;
    return 0;
}

static void io_error(nmc_diags_t *diags, const char *path, const char *what, int e)
{
    char buf[256];
    const char *m = strerror_r(e, buf, sizeof buf);
    char lower[256];
    snprintf(lower, sizeof lower, "%s", m);
    if (lower[0] >= 'A' && lower[0] <= 'Z') lower[0] = (char)(lower[0] + 32);
    nmc_diag_t *r = nmc_diag_add(diags, NMC_SEV_ERROR, "io-error", path, 0, 0, 0,
                                 "cannot %s '%s': %s", what, path, lower);
    if (e == ENOENT) nmc_diag_set_help(r, "check the path (relative paths start at the current directory)");
}

/* Reads the whole file into a malloc'd buffer. Stops after limit+1 bytes. Returns 0, or
 * -1 with errno set. */
static int read_all(FILE *f, size_t hint, size_t limit, char **buf_out, size_t *len_out)
{
    size_t cap = hint + 1 < limit + 1 ? hint + 1 : limit + 1, len = 0;
    if (cap < 4096) cap = 4096;
    char *buf = malloc(cap);
    if (!buf) abort();
    for (;;) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0 || len > limit) {
            if (ferror(f)) {
                int e = errno ? errno : EIO;
                free(buf);
                errno = e;
                return -1;
            }
            if (feof(f) || len > limit) break;
        }
        if (len == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) abort();
            buf = nb;
        }
    }
    *buf_out = buf;
    *len_out = len;
    return 0;
}

int nmc_json_parse_file(nmc_arena_t *a, const char *path, const nmc_json_limits_t *limits,
                        nmc_json_t **out, const char **src_out, size_t *len_out,
                        nmc_diags_t *diags)
{
    if (out) *out = NULL;
    if (src_out) *src_out = NULL;
    if (len_out) *len_out = 0;
    size_t max_bytes;
    int max_depth;
    effective_limits(limits, &max_bytes, &max_depth);
    FILE *f = fopen(path, "rb");
    if (!f) return io_error(diags, path, "open", errno), -1;
    struct stat st;
    size_t hint = 0;
    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fclose(f);
            return io_error(diags, path, "read", EISDIR), -1;
        }
        if (S_ISREG(st.st_mode)) {
            hint = (size_t)st.st_size;
            if (hint > max_bytes) {
                char size[32];
                snprintf(size, sizeof size, "%zu", hint);
                fclose(f);
                return too_large(diags, path, size, max_bytes, false), -1;
            }
        }
    }
    char *buf;
    size_t len;
    errno = 0;
    if (read_all(f, hint, max_bytes, &buf, &len) != 0) {
        int e = errno;
        fclose(f);
        return io_error(diags, path, "read", e), -1;
    }
    fclose(f);
    if (len > max_bytes) {
        free(buf);
        char size[48];
        snprintf(size, sizeof size, "more than %zu", max_bytes);
        return too_large(diags, path, size, max_bytes, false), -1;
    }
    char *src = nmc_arena_strndup(a, buf, len);
    free(buf);
    if (src_out) *src_out = src;
    if (len_out) *len_out = len;
    return nmc_json_parse(a, src, len, path, limits, out, diags);
}
