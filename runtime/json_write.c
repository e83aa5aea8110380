/* json_write.c — JSON output: escaping, the compact serializer of parsed trees, and the
 * nmc_jw_* writer for output built by hand (pretty-printed or compact).
 *
 * Output is always valid JSON: strings are escaped per RFC 8259 (non-ASCII kept as UTF-8,
 * bytes that are not UTF-8 written as \ufffd), NaN and infinities become null, and numbers
 * are formatted in the C locale whatever LC_NUMERIC says.
 */
#include "json_priv.h"
#include "json_utf8.h"
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void nmc_json_write_string(FILE *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', out);
    size_t p = 0;
    while (p < n) {
        size_t q = p;
        while (q < n && u[q] >= 0x20 && u[q] < 0x80 && u[q] != '"' && u[q] != '\\') q++;
        if (q > p) fwrite(s + p, 1, q - p, out);
        if (q >= n) break;
        unsigned char b = u[q];
        p = q + 1;
        switch (b) {
        case '"': fputs("\\\"", out); continue;
        case '\\': fputs("\\\\", out); continue;
        case '\b': fputs("\\b", out); continue;
        case '\f': fputs("\\f", out); continue;
        case '\n': fputs("\\n", out); continue;
        case '\r': fputs("\\r", out); continue;
        case '\t': fputs("\\t", out); continue;
        }
        if (b < 0x20) {
            fprintf(out, "\\u%04x", b);
            continue;
        }
        int32_t cp;
        size_t k = nmc_utf8_unit(u + q, n - q, &cp, NULL);
        if (cp < 0) fputs("\\ufffd", out);
        else fwrite(s + q, 1, k, out);
        p = q + k;
    }
    fputc('"', out);
}

void nmc_json_write(const nmc_json_t *v, FILE *out)
{
    if (!v) {
        fputs("null", out);
        return;
    }
    switch (v->kind) {
    case NMC_JSON_NULL: fputs("null", out); return;
    case NMC_JSON_BOOL: fputs(v->u.boolean ? "true" : "false", out); return;
    case NMC_JSON_NUMBER: fputs(v->u.num.text, out); return;
    case NMC_JSON_STRING: nmc_json_write_string(out, v->u.str.s, v->u.str.len); return;
    case NMC_JSON_ARRAY:
        fputc('[', out);
        for (size_t i = 0; i < v->u.arr.n; i++) {
            if (i) fputc(',', out);
            nmc_json_write(v->u.arr.items[i], out);
        }
        fputc(']', out);
        return;
    case NMC_JSON_OBJECT:
        fputc('{', out);
        for (size_t i = 0; i < v->u.obj.n; i++) {
            const nmc_json_member_t *m = &v->u.obj.members[i];
            if (i) fputc(',', out);
            nmc_json_write_string(out, m->key, m->key_len);
            fputc(':', out);
            nmc_json_write(m->value, out);
        }
        fputc('}', out);
        return;
    }
}

/* ---- the writer ---- */

/* need_comma[] has NMC_JSON_DEFAULT_MAX_DEPTH + 1 slots; deeper levels share the last one
 * (nmc_jw_value writes subtrees that deep compactly, so only hand-built output that deep
 * can get its commas wrong). */
static int slot(const nmc_json_writer_t *w)
{
    return w->depth < NMC_JSON_DEFAULT_MAX_DEPTH ? w->depth : NMC_JSON_DEFAULT_MAX_DEPTH;
}

static void newline(nmc_json_writer_t *w)
{
    if (w->indent <= 0) return;
    fputc('\n', w->out);
    for (int i = 0; i < w->depth * w->indent; i++) fputc(' ', w->out);
}

/* Separator and indentation before a value or key. */
static void before(nmc_json_writer_t *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth == 0) return;
    if (w->need_comma[slot(w)]) fputc(',', w->out);
    w->need_comma[slot(w)] = true;
    newline(w);
}

void nmc_jw_init(nmc_json_writer_t *w, FILE *out, int indent)
{
    memset(w, 0, sizeof *w);
    w->out = out;
    w->indent = indent < 0 ? 0 : indent;
}

static void open_c(nmc_json_writer_t *w, char c)
{
    before(w);
    fputc(c, w->out);
    w->depth++;
    w->need_comma[slot(w)] = false;
}

static void close_c(nmc_json_writer_t *w, char c)
{
    bool had = w->need_comma[slot(w)];
    if (w->depth > 0) w->depth--;
    if (had) newline(w);
    fputc(c, w->out);
}

void nmc_jw_begin_object(nmc_json_writer_t *w) { open_c(w, '{'); }
void nmc_jw_end_object(nmc_json_writer_t *w) { close_c(w, '}'); }
void nmc_jw_begin_array(nmc_json_writer_t *w) { open_c(w, '['); }
void nmc_jw_end_array(nmc_json_writer_t *w) { close_c(w, ']'); }

void nmc_jw_key(nmc_json_writer_t *w, const char *key)
{
    before(w);
    nmc_json_write_string(w->out, key ? key : "", key ? strlen(key) : 0);
    fputs(w->indent > 0 ? ": " : ":", w->out);
    w->after_key = true;
}

static void raw(nmc_json_writer_t *w, const char *text)
{
    before(w);
    fputs(text, w->out);
}

void nmc_jw_string_n(nmc_json_writer_t *w, const char *s, size_t n)
{
    if (!s) return nmc_jw_null(w);
    before(w);
    nmc_json_write_string(w->out, s, n);
}

void nmc_jw_string(nmc_json_writer_t *w, const char *s) { nmc_jw_string_n(w, s, s ? strlen(s) : 0); }

void nmc_jw_int(nmc_json_writer_t *w, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    raw(w, buf);
}

/* Shortest of %.15g/%.16g/%.17g that reads back as exactly v; integral values keep a ".0"
 * so that they stay recognisably floating point. */
static void format_double(double v, char *buf, size_t cap)
{
    locale_t c = nmc_json_c_locale(), old = c ? uselocale(c) : (locale_t)0;
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (c) uselocale(old);
    if (!strpbrk(buf, ".eE")) strncat(buf, ".0", cap - strlen(buf) - 1);
}

void nmc_jw_double(nmc_json_writer_t *w, double v)
{
    if (!isfinite(v)) return nmc_jw_null(w);
    char buf[48];
    format_double(v, buf, sizeof buf);
    raw(w, buf);
}

void nmc_jw_bool(nmc_json_writer_t *w, bool v) { raw(w, v ? "true" : "false"); }
void nmc_jw_null(nmc_json_writer_t *w) { raw(w, "null"); }

void nmc_jw_value(nmc_json_writer_t *w, const nmc_json_t *v)
{
    if (!v) return nmc_jw_null(w);
    if (w->depth >= NMC_JSON_DEFAULT_MAX_DEPTH - 1 && (v->kind == NMC_JSON_ARRAY || v->kind == NMC_JSON_OBJECT)) {
        before(w);
        nmc_json_write(v, w->out);
        return;
    }
    switch (v->kind) {
    case NMC_JSON_NULL: nmc_jw_null(w); return;
    case NMC_JSON_BOOL: nmc_jw_bool(w, v->u.boolean); return;
    case NMC_JSON_NUMBER: raw(w, v->u.num.text); return;
    case NMC_JSON_STRING: nmc_jw_string_n(w, v->u.str.s, v->u.str.len); return;
    case NMC_JSON_ARRAY:
        nmc_jw_begin_array(w);
        for (size_t i = 0; i < v->u.arr.n; i++) nmc_jw_value(w, v->u.arr.items[i]);
        nmc_jw_end_array(w);
        return;
    case NMC_JSON_OBJECT:
        nmc_jw_begin_object(w);
        for (size_t i = 0; i < v->u.obj.n; i++) {
            const nmc_json_member_t *m = &v->u.obj.members[i];
            before(w);
            nmc_json_write_string(w->out, m->key, m->key_len);
            fputs(w->indent > 0 ? ": " : ":", w->out);
            w->after_key = true;
            nmc_jw_value(w, m->value);
        }
        nmc_jw_end_object(w);
        return;
    }
}
