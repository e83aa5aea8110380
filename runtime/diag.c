/* diag.c — diagnostic records: storage with a cap, instance paths (dotted and RFC 6901),
 * sorting, rendering as rustc-style text or as JSON, and edit distance for did-you-mean.
 *
 * Text rendering shows the user's own line under the header, with a caret under the
 * reported column: tabs are shown as 4 spaces, bytes that are not printable UTF-8 as U+FFFD,
 * and columns count UTF-8 units as the JSON layer does (json_utf8.h); for the caret, wide
 * CJK characters and emoji take two cells. The caret spans the token at the
 * position (a string literal, a number or a word) when it can be read from the source. The
 * dotted path is not printed separately: messages name the value themselves.
 */
#include "diag.h"
#include "json_priv.h"
#include "json_utf8.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DIAG_DEFAULT_CAP 50 /* a screenful; the rest is counted ("N more errors") */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "nmc: out of memory (%zu bytes)\n", n);
        abort();
    }
    return q;
}

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *p = xrealloc(NULL, n + 1);
    memcpy(p, s, n + 1);
    return p;
}

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return xstrdup("");
    char *p = xrealloc(NULL, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

/* ---- a growable string ---- */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf_t;

static void sb_putn(sbuf_t *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s) { sb_putn(b, s, strlen(s)); }

/* ---- paths ---- */

void nmc_path_push_key(nmc_path_t *p, const char *key, size_t len)
{
    if (p->depth >= 0 && p->depth < NMC_PATH_MAX) {
        p->seg[p->depth].key = key ? key : "";
        p->seg[p->depth].key_len = key ? len : 0;
        p->seg[p->depth].index = 0;
    }
    p->depth++; /* deeper segments are counted, not stored, so push/pop stay balanced */
}

void nmc_path_push_index(nmc_path_t *p, long index)
{
    if (p->depth >= 0 && p->depth < NMC_PATH_MAX) {
        p->seg[p->depth].key = NULL;
        p->seg[p->depth].key_len = 0;
        p->seg[p->depth].index = index;
    }
    p->depth++;
}

void nmc_path_pop(nmc_path_t *p)
{
    if (p->depth > 0) p->depth--;
}

static bool is_ident(const char *k, size_t n)
{
    if (n == 0 || (k[0] >= '0' && k[0] <= '9')) return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* JSON string escaping into a buffer (the same rules as nmc_json_write_string). */
static void sb_json_string(sbuf_t *b, const char *s, size_t n)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    if (!f) abort();
    nmc_json_write_string(f, s, n);
    fclose(f);
    sb_putn(b, mem, len);
    free(mem);
}

static int stored(const nmc_path_t *p) { return p->depth < NMC_PATH_MAX ? p->depth : NMC_PATH_MAX; }

static void path_dotted(const nmc_path_t *p, sbuf_t *b)
{
    sb_puts(b, "");
    for (int i = 0; i < stored(p); i++) {
        char num[32];
        const char *k = p->seg[i].key;
        if (!k) {
            snprintf(num, sizeof num, "[%ld]", p->seg[i].index);
            sb_puts(b, num);
        } else if (is_ident(k, p->seg[i].key_len)) {
            if (i > 0) sb_puts(b, ".");
            sb_putn(b, k, p->seg[i].key_len);
        } else {
            sb_puts(b, "[");
            sb_json_string(b, k, p->seg[i].key_len);
            sb_puts(b, "]");
        }
    }
    if (p->depth > NMC_PATH_MAX) sb_puts(b, "...");
}

static void path_pointer(const nmc_path_t *p, sbuf_t *b)
{
    sb_puts(b, "");
    for (int i = 0; i < stored(p); i++) {
        sb_puts(b, "/");
        const char *k = p->seg[i].key;
        if (!k) {
            char num[32];
            snprintf(num, sizeof num, "%ld", p->seg[i].index);
            sb_puts(b, num);
            continue;
        }
        for (size_t j = 0; j < p->seg[i].key_len; j++) {
            if (k[j] == '~') sb_puts(b, "~0");
            else if (k[j] == '/') sb_puts(b, "~1");
            else sb_putn(b, k + j, 1);
        }
    }
}

static void copy_out(sbuf_t *b, char *buf, size_t cap)
{
    if (cap == 0) {
        free(b->s);
        return;
    }
    size_t n = b->n < cap - 1 ? b->n : cap - 1;
    if (n) memcpy(buf, b->s, n);
    buf[n] = '\0';
    free(b->s);
}

void nmc_path_dotted(const nmc_path_t *p, char *buf, size_t cap)
{
    sbuf_t b = {0};
    path_dotted(p, &b);
    copy_out(&b, buf, cap);
}

void nmc_path_pointer(const nmc_path_t *p, char *buf, size_t cap)
{
    sbuf_t b = {0};
    path_pointer(p, &b);
    copy_out(&b, buf, cap);
}

/* ---- records ---- */

void nmc_diags_init(nmc_diags_t *d) { memset(d, 0, sizeof *d); }

static void free_record(nmc_diag_t *r)
{
    free(r->code);
    free(r->file);
    free(r->path);
    free(r->pointer);
    free(r->message);
    free(r->expected);
    free(r->got);
    free(r->help);
}

void nmc_diags_free(nmc_diags_t *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) free_record(&d->items[i]);
    free(d->items);
    size_t cap = d->cap;
    nmc_diags_init(d);
    d->cap = cap;
}

nmc_diag_t *nmc_diag_add(nmc_diags_t *d, nmc_severity_t sev, const char *code,
                         const char *file, uint32_t line, uint32_t col, size_t offset,
                         const char *fmt, ...)
{
    if (sev == NMC_SEV_ERROR) d->n_errors++;
    else if (sev == NMC_SEV_WARNING) d->n_warnings++;
    size_t cap = d->cap ? d->cap : DIAG_DEFAULT_CAP;
    if (d->n >= cap) {
        d->n_dropped++;
        return NULL;
    }
    if (d->n == d->alloc) {
        d->alloc = d->alloc ? d->alloc * 2 : 8;
        d->items = xrealloc(d->items, d->alloc * sizeof *d->items);
    }
    nmc_diag_t *r = &d->items[d->n++];
    memset(r, 0, sizeof *r);
    r->sev = sev;
    r->code = xstrdup(code ? code : "unknown");
    r->file = xstrdup(file);
    r->line = line;
    r->col = line ? col : 0;
    r->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    r->message = vformat(fmt ? fmt : "", ap);
    va_end(ap);
    return r;
}

void nmc_diag_set_path(nmc_diag_t *r, const nmc_path_t *p)
{
    if (!r || !p) return;
    sbuf_t a = {0}, b = {0};
    path_dotted(p, &a);
    path_pointer(p, &b);
    free(r->path);
    free(r->pointer);
    r->path = a.s ? a.s : xstrdup("");
    r->pointer = b.s ? b.s : xstrdup("");
}

#define SETTER(name, field)                                    \
    void name(nmc_diag_t *r, const char *fmt, ...)             \
    {                                                          \
        if (!r || !fmt) return;                                \
        va_list ap;                                            \
        va_start(ap, fmt);                                     \
        char *s = vformat(fmt, ap);                            \
        va_end(ap);                                            \
        free(r->field);                                        \
        r->field = s;                                          \
    }
SETTER(nmc_diag_set_expected, expected)
SETTER(nmc_diag_set_got, got)
SETTER(nmc_diag_set_help, help)

/* ---- sorting ---- */

typedef struct {
    nmc_diag_t rec;
    size_t index;
} keyed_t;

static int cmp_keyed(const void *pa, const void *pb)
{
    const keyed_t *a = pa, *b = pb;
    const char *fa = a->rec.file, *fb = b->rec.file;
    if (fa != fb) {
        if (!fa) return -1;
        if (!fb) return 1;
        int c = strcmp(fa, fb);
        if (c) return c;
    }
    if (a->rec.line != b->rec.line) return a->rec.line < b->rec.line ? -1 : 1;
    if (a->rec.col != b->rec.col) return a->rec.col < b->rec.col ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index; /* stable */
}

void nmc_diags_sort(nmc_diags_t *d)
{
    if (d->n < 2) return;
    keyed_t *k = xrealloc(NULL, d->n * sizeof *k);
    for (size_t i = 0; i < d->n; i++) k[i] = (keyed_t){d->items[i], i};
    qsort(k, d->n, sizeof *k, cmp_keyed);
    for (size_t i = 0; i < d->n; i++) d->items[i] = k[i].rec;
    free(k);
}

/* ---- text rendering ---- */

typedef struct {
    const char *bold, *sev, *blue, *cyan, *reset;
} palette_t;

static palette_t palette(int color, nmc_severity_t sev)
{
    if (!color) return (palette_t){"", "", "", "", ""};
    const char *s = sev == NMC_SEV_ERROR ? "\x1b[1;31m" : sev == NMC_SEV_WARNING ? "\x1b[1;33m" : "\x1b[1;36m";
    return (palette_t){"\x1b[1m", s, "\x1b[1;34m", "\x1b[1;36m", "\x1b[0m"};
}

static const char *sev_name(nmc_severity_t s)
{
    return s == NMC_SEV_ERROR ? "error" : s == NMC_SEV_WARNING ? "warning" : "note";
}

/* Start and end (exclusive, without '\r') of 1-based line `line` in src; false if absent. */
static bool find_line(const char *src, size_t len, uint32_t line, size_t *start, size_t *end)
{
    size_t p = 0;
    for (uint32_t l = 1; l < line; l++) {
        const char *nl = memchr(src + p, '\n', len - p);
        if (!nl) return false;
        p = (size_t)(nl - src) + 1;
    }
    if (line == 1 && len >= 3 && memcmp(src, "\xEF\xBB\xBF", 3) == 0) p = 3;
    const char *nl = memchr(src + p, '\n', len - p);
    size_t e = nl ? (size_t)(nl - src) : len;
    if (e > p && src[e - 1] == '\r') e--;
    *start = p;
    *end = e;
    return true;
}

/* East Asian wide and emoji ranges take two terminal cells (a coarse table: enough for the
 * caret to line up under CJK text and common emoji). */
static bool is_wide(int32_t cp)
{
    static const int32_t r[][2] = {{0x1100, 0x115F}, {0x2E80, 0x303E}, {0x3041, 0x33FF}, {0x3400, 0x4DBF},
                                   {0x4E00, 0x9FFF}, {0xA000, 0xA4CF}, {0xAC00, 0xD7A3}, {0xF900, 0xFAFF},
                                   {0xFE30, 0xFE4F}, {0xFF00, 0xFF60}, {0xFFE0, 0xFFE6}, {0x1F300, 0x1F64F},
                                   {0x1F900, 0x1F9FF}, {0x20000, 0x3FFFD}};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (cp >= r[i][0] && cp <= r[i][1]) return true;
    return false;
}

/* Display cells of the unit at s[p] (tab = 4, wide = 2) and its byte length. */
static size_t unit_at(const char *s, size_t end, size_t p, int *width, int32_t *cp)
{
    size_t k = nmc_utf8_unit((const unsigned char *)s + p, end - p, cp, NULL);
    *width = *cp == '\t' ? 4 : is_wide(*cp) ? 2 : 1;
    return k;
}

static void put_unit(FILE *out, const char *s, size_t k, int32_t cp)
{
    if (cp == '\t') fputs("    ", out);
    else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) fputs("\xEF\xBF\xBD", out);
    else fwrite(s, 1, k, out);
}

/* Byte length of the token at p (string literal, number or word), or 0 when unknown. */
static size_t token_len(const char *s, size_t end, size_t p)
{
    if (p >= end) return 0;
    if (s[p] == '"') {
        for (size_t q = p + 1; q < end; q++) {
            if (s[q] == '\\') q++;
            else if (s[q] == '"') return q + 1 - p;
        }
        return 0;
    }
    size_t q = p;
    while (q < end && nmc_json_is_word_byte((unsigned char)s[q])) q++;
    return q - p;
}

static void render_source(const nmc_diag_t *r, const char *src, size_t len, FILE *out, const palette_t *c)
{
    size_t ls, le;
    if (!src || r->line == 0 || !find_line(src, len, r->line, &ls, &le)) return;
    /* the caret's byte: the record's offset when it lies on this line, else col units in */
    size_t at = ls;
    if (r->offset >= ls && r->offset <= le) at = r->offset;
    else {
        int w;
        int32_t cp;
        for (uint32_t k = 1; k < r->col && at < le; k++) at += unit_at(src, le, at, &w, &cp);
    }
    char num[16];
    int digits = snprintf(num, sizeof num, "%u", (unsigned)r->line);
    fprintf(out, "   %s%s |%s", c->blue, num, c->reset);
    if (le > ls) fputc(' ', out);
    size_t pad = 0;
    for (size_t p = ls; p < le;) {
        int w;
        int32_t cp;
        size_t k = unit_at(src, le, p, &w, &cp);
        put_unit(out, src + p, k, cp);
        if (p < at) pad += (size_t)w;
        p += k;
    }
    fputc('\n', out);
    size_t tl = token_len(src, le, at), width = 0;
    for (size_t p = at; p < at + tl;) {
        int w;
        int32_t cp;
        p += unit_at(src, le, p, &w, &cp);
        width += (size_t)w;
    }
    if (width == 0) width = 1;
    fprintf(out, "   %*s %s|%s %*s%s", digits, "", c->blue, c->reset, (int)pad, "", c->sev);
    for (size_t i = 0; i < width; i++) fputc('^', out);
    fprintf(out, "%s\n", c->reset);
}

static void render_one(const nmc_diag_t *r, const char *src, size_t len, FILE *out, int color)
{
    palette_t c = palette(color, r->sev);
    fputs(c.bold, out);
    if (r->file && r->line) fprintf(out, "%s:%u:%u: ", r->file, (unsigned)r->line, (unsigned)r->col);
    else if (r->line) fprintf(out, "%u:%u: ", (unsigned)r->line, (unsigned)r->col);
    else if (r->file) fprintf(out, "%s: ", r->file);
    fprintf(out, "%s%s[%s]%s%s: %s%s\n", c.sev, sev_name(r->sev), r->code, c.reset, c.bold, r->message, c.reset);
    render_source(r, src, len, out, &c);
    if (r->expected || r->got) {
        fprintf(out, "   %s=%s ", c.blue, c.reset);
        if (r->expected) fprintf(out, "expected: %s%s", r->expected, r->got ? ", " : "");
        if (r->got) fprintf(out, "got: %s", r->got);
        fputc('\n', out);
    }
    if (r->help) {
        fprintf(out, "%shelp%s: ", c.cyan, c.reset);
        for (const char *h = r->help; *h; h++) {
            fputc(*h, out);
            if (*h == '\n' && h[1]) fputs("      ", out);
        }
        if (r->help[0] && r->help[strlen(r->help) - 1] != '\n') fputc('\n', out);
    }
}

void nmc_diags_render_text(const nmc_diags_t *d, const char *src, size_t src_len, FILE *out, int color)
{
    for (size_t i = 0; i < d->n; i++) {
        if (i) fputc('\n', out);
        render_one(&d->items[i], src, src_len, out, color);
    }
    if (d->n_dropped) {
        size_t kept_err = 0;
        for (size_t i = 0; i < d->n; i++) kept_err += d->items[i].sev == NMC_SEV_ERROR;
        bool all_errors = d->n_errors - kept_err == d->n_dropped;
        fprintf(out, "%s... and %zu more %s%s\n", d->n ? "\n" : "", d->n_dropped,
                all_errors ? "error" : "diagnostic", d->n_dropped == 1 ? "" : "s");
    }
}

/* ---- JSON rendering ---- */

static void jw_opt(nmc_json_writer_t *w, const char *key, const char *v)
{
    if (!v) return;
    nmc_jw_key(w, key);
    nmc_jw_string(w, v);
}

void nmc_diags_render_json(const nmc_diags_t *d, const char *file, FILE *out)
{
    nmc_json_writer_t w;
    nmc_jw_init(&w, out, 2);
    nmc_jw_begin_object(&w);
    jw_opt(&w, "file", file);
    nmc_jw_key(&w, "valid");
    nmc_jw_bool(&w, d->n_errors == 0);
    nmc_jw_key(&w, "errors");
    nmc_jw_int(&w, (int64_t)d->n_errors);
    nmc_jw_key(&w, "warnings");
    nmc_jw_int(&w, (int64_t)d->n_warnings);
    nmc_jw_key(&w, "dropped");
    nmc_jw_int(&w, (int64_t)d->n_dropped);
    nmc_jw_key(&w, "diagnostics");
    nmc_jw_begin_array(&w);
    for (size_t i = 0; i < d->n; i++) {
        const nmc_diag_t *r = &d->items[i];
        nmc_jw_begin_object(&w);
        jw_opt(&w, "severity", sev_name(r->sev));
        jw_opt(&w, "code", r->code);
        jw_opt(&w, "file", r->file);
        if (r->line) {
            nmc_jw_key(&w, "line");
            nmc_jw_int(&w, r->line);
            nmc_jw_key(&w, "column");
            nmc_jw_int(&w, r->col);
        }
        jw_opt(&w, "path", r->path);
        jw_opt(&w, "pointer", r->pointer);
        jw_opt(&w, "message", r->message);
        jw_opt(&w, "expected", r->expected);
        jw_opt(&w, "got", r->got);
        jw_opt(&w, "help", r->help);
        nmc_jw_end_object(&w);
    }
    nmc_jw_end_array(&w);
    nmc_jw_end_object(&w);
    fputc('\n', out);
}

/* ---- edit distance ---- */

size_t nmc_edit_distance(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen == 0) return blen;
    if (blen == 0) return alen;
    size_t *rows = xrealloc(NULL, 3 * (blen + 1) * sizeof *rows);
    size_t *pp = rows, *prev = rows + (blen + 1), *cur = rows + 2 * (blen + 1);
    for (size_t j = 0; j <= blen; j++) prev[j] = j;
    for (size_t i = 1; i <= alen; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= blen; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = prev[j] + 1;
            if (cur[j - 1] + 1 < v) v = cur[j - 1] + 1;
            if (prev[j - 1] + cost < v) v = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1; /* transposition */
            cur[j] = v;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    size_t d = prev[blen];
    free(rows);
    return d;
}
