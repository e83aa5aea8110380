/* job.c — the strict job loader: reads a job file, picks the backend, walks the generated
 * descriptor tables (generated/schema.gen.c) over the JSON tree and fills the generated
 * structs, reporting every problem as a diagnostic; then defaults, autofill, derived values
 * and cross-field rules (runtime/rules.c). Also `explain` (the resolved job as JSON).
 *
 * What belongs here: type checks per field kind, unknown-key help (did you mean, where else
 * the key lives, the other backend's equivalent), defaults, backend choice, the request
 * envelope, the "valid as the other backend" probe, explain. Rule evaluation is rules.c.
 */
#include "job.h"
#include "job_int.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Long values are cut in messages (the caret shows the rest in the source). */
#define GOT_MAX 48
/* Unknown-key help lists at most this many places where the key lives. */
#define WHERE_MAX 3
/* Descriptor walks for where-else stop at this depth (jobs nest 4 deep). */
#define WALK_DEPTH 8

typedef struct {
    nmc_job_t *job;
    nmc_arena_t *a;
    nmc_diags_t *d;
    const char *file;
    const nmc_backend_desc_t *b;
    nmc_path_t path;
    int spec_depth;      /* path depth of the spec root (1 inside an envelope) */
    bool in_default;     /* loading a default value: no given bits, no positions */
} ctx_t;

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t *bits(void *base, size_t off) { return (uint64_t *)((char *)base + off); }

static void path_text(const ctx_t *c, char *buf, size_t cap)
{
    nmc_path_dotted(&c->path, buf, cap);
    if (!buf[0]) snprintf(buf, cap, "the job");
}

static nmc_diag_t *report(ctx_t *c, nmc_severity_t sev, const char *code, uint32_t line, uint32_t col,
                          size_t off, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static nmc_diag_t *report(ctx_t *c, nmc_severity_t sev, const char *code, uint32_t line, uint32_t col,
                          size_t off, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->in_default) line = col = 0, off = 0;
    nmc_diag_t *r = nmc_diag_add(c->d, sev, code, c->file, line, col, off, "%s", msg);
    nmc_diag_set_path(r, &c->path);
    return r;
}

#define AT_NODE(v) (v)->line, (v)->col, (v)->offset
#define AT_KEY(m) (m)->line, (m)->col, (m)->offset

static const char *kind_word(nmc_json_kind_t k)
{
    switch (k) {
    case NMC_JSON_NULL: return "null";
    case NMC_JSON_BOOL: return "a boolean";
    case NMC_JSON_NUMBER: return "a number";
    case NMC_JSON_STRING: return "a string";
    case NMC_JSON_ARRAY: return "an array";
    default: return "an object";
    }
}

static const char *article(const char *label)
{
    return strchr("aeiou", label[0]) && label[0] ? "an" : "a";
}

/* The value as the user wrote it, cut to GOT_MAX, for "got:" lines. */
static void got_text(const ctx_t *c, const nmc_json_t *v, char *buf, size_t cap)
{
    const char *src = c->job->src;
    size_t n = v->end > v->offset ? v->end - v->offset : 0;
    if (c->in_default || !src || v->end > c->job->src_len) n = 0;
    const char *kind = v->kind == NMC_JSON_STRING ? "string " : v->kind == NMC_JSON_NUMBER ? "number "
                     : v->kind == NMC_JSON_BOOL ? "boolean " : "";
    if (v->kind == NMC_JSON_ARRAY || v->kind == NMC_JSON_OBJECT) {
        snprintf(buf, cap, "%s", v->kind == NMC_JSON_ARRAY ? "array" : "object");
        return;
    }
    if (n == 0) {
        snprintf(buf, cap, "%s", nmc_json_kind_name(v->kind));
        return;
    }
    if (n > GOT_MAX) snprintf(buf, cap, "%s%.*s...", kind, GOT_MAX, src + v->offset);
    else snprintf(buf, cap, "%s%.*s", kind, (int)n, src + v->offset);
}

static void fmt_double(double d, char *buf, size_t cap)
{
    for (int p = 15; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, d);
        if (strtod(buf, NULL) == d) return;
    }
}

void nmc_lit_format(const nmc_lit_t *v, char *buf, size_t cap)
{
    switch (v->kind) {
    case NMC_LIT_BOOL: snprintf(buf, cap, "%s", v->b ? "true" : "false"); break;
    case NMC_LIT_INT: snprintf(buf, cap, "%lld", (long long)v->i); break;
    case NMC_LIT_FLOAT: fmt_double(v->d, buf, cap); break;
    case NMC_LIT_STRING: snprintf(buf, cap, "%s", v->s ? v->s : ""); break;
    default: snprintf(buf, cap, "null"); break;
    }
}

/* "integer > 0", "number >= 0 and < 1", "string", "one of a, b" */
static void expected_text(const nmc_type_desc_t *t, char *buf, size_t cap)
{
    size_t n = 0;
    if (t->kind == NMC_T_ENUM) {
        n += (size_t)snprintf(buf, cap, "one of ");
        for (size_t i = 0; i < t->enm->n && n < cap; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\"", i ? ", " : "", t->enm->names[i]);
        return;
    }
    n += (size_t)snprintf(buf, cap, "%s", t->label ? t->label : "value");
    char lo[40], hi[40];
    fmt_double(t->lo, lo, sizeof lo);
    fmt_double(t->hi, hi, sizeof hi);
    const char *sep = " ";
    if ((t->bounds & NMC_B_GE) && n < cap) n += (size_t)snprintf(buf + n, cap - n, " >= %s", lo), sep = " and ";
    if ((t->bounds & NMC_B_GT) && n < cap) n += (size_t)snprintf(buf + n, cap - n, " > %s", lo), sep = " and ";
    if ((t->bounds & NMC_B_LE) && n < cap) n += (size_t)snprintf(buf + n, cap - n, "%s<= %s", sep, hi);
    if ((t->bounds & NMC_B_LT) && n < cap) n += (size_t)snprintf(buf + n, cap - n, "%s< %s", sep, hi);
    if (t->min_len > 0 && n < cap) snprintf(buf + n, cap - n, " (at least %d character%s)", (int)t->min_len, t->min_len == 1 ? "" : "s");
}

/* ---- named patterns (the JSON Schema carries the regex; see schema_rt.h) ------------------ */

static bool seg_chars(const char *s, size_t n, const char *extra, bool upper_ok)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || strchr(extra, ch) ||
                  (upper_ok && ch >= 'A' && ch <= 'Z');
        if (!ok || ch == 0) return false;
    }
    return true;
}

/* ^[a-z0-9_-]+(/[a-z0-9_-]+)?$  and  ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$  and  ^[0-9]+(,[0-9]+)*$ */
static bool pattern_match(int pat, const char *s, size_t n)
{
    const char *slash = memchr(s, '/', n);
    switch (pat) {
    case NMC_PAT_SECRET_REF:
        if (!slash) return seg_chars(s, n, "_-", false);
        return seg_chars(s, (size_t)(slash - s), "_-", false) &&
               seg_chars(slash + 1, n - (size_t)(slash - s) - 1, "_-", false);
    case NMC_PAT_WORKSPACE_REF:
        if (!slash) return false;
        return seg_chars(s, (size_t)(slash - s), "_.-", true) &&
               seg_chars(slash + 1, n - (size_t)(slash - s) - 1, "_.-", true);
    case NMC_PAT_GPU_LIST: {
        size_t run = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] >= '0' && s[i] <= '9') run++;
            else if (s[i] == ',' && run > 0) run = 0;
            else return false;
        }
        return run > 0;
    }
    default: return true;
    }
}

static const char *pattern_desc(int pat)
{
    switch (pat) {
    case NMC_PAT_SECRET_REF: return "`secret` or `workspace/secret`: lowercase letters, digits, `_` and `-`";
    case NMC_PAT_WORKSPACE_REF: return "`workspace/name`: letters, digits, `_`, `.` and `-` on each side of one `/`";
    case NMC_PAT_GPU_LIST: return "comma-separated GPU indices such as \"0\" or \"0,1\"";
    default: return "the pattern";
    }
}

static size_t utf8_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* ---- descriptors ---------------------------------------------------------------------------- */

/* The object a step through field f continues into (object, or a union's first object). */
const nmc_object_desc_t *nmc_desc_step(const nmc_field_desc_t *f)
{
    if (f->type.kind == NMC_T_OBJECT) return f->type.obj;
    if (f->type.kind == NMC_T_UNION)
        for (int i = 0; i < f->type.n_variants; i++)
            if (f->type.variants[i].kind == NMC_T_OBJECT) return f->type.variants[i].obj;
    return NULL;
}

/* Field named by a dotted schema path from od, or NULL. */
static const nmc_field_desc_t *desc_resolve(const nmc_object_desc_t *od, const char *path)
{
    const nmc_field_desc_t *f = NULL;
    const char *p = path;
    while (od && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        int i = od->lookup(p, n);
        if (i < 0) return NULL;
        f = &od->fields[i];
        if (!dot) return f;
        od = nmc_desc_step(f);
        p = dot + 1;
    }
    return NULL;
}

static const nmc_equiv_t *equiv_find(const nmc_backend_desc_t *b, const char *other)
{
    for (size_t i = 0; i < b->n_equivalents; i++)
        if (strcmp(b->equivalents[i].other, other) == 0) return &b->equivalents[i];
    return NULL;
}

/* The schema path (keys only, from the spec root) of the current position plus `key`. */
static void schema_path(const ctx_t *c, const char *key, size_t klen, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    int depth = c->path.depth < NMC_PATH_MAX ? c->path.depth : NMC_PATH_MAX;
    for (int i = c->spec_depth; i < depth && n < cap; i++) {
        if (!c->path.seg[i].key) continue;
        n += (size_t)snprintf(buf + n, cap - n, "%s%.*s", n ? "." : "", (int)c->path.seg[i].key_len,
                              c->path.seg[i].key);
    }
    if (key && n < cap) snprintf(buf + n, cap - n, "%s%.*s", n ? "." : "", (int)klen, key);
}

typedef struct {
    char found[WHERE_MAX][160];
    int n;
} where_t;

static void where_walk(const nmc_object_desc_t *od, const char *key, size_t klen, char *prefix,
                       size_t plen, int depth, where_t *w)
{
    if (depth > WALK_DEPTH) return;
    int i = od->lookup(key, klen);
    if (i >= 0 && !(od->fields[i].flags & (NMC_F_REMOVED | NMC_F_META)) && w->n < WHERE_MAX)
        snprintf(w->found[w->n++], sizeof w->found[0], "%s", plen ? prefix : "");
    for (int k = 0; k < od->n_fields; k++) {
        const nmc_object_desc_t *sub = nmc_desc_step(&od->fields[k]);
        if (!sub) continue;
        size_t add = (size_t)snprintf(prefix + plen, 200 - plen, "%s%s", plen ? "." : "", od->fields[k].name);
        if (plen + add < 200) where_walk(sub, key, klen, prefix, plen + add, depth + 1, w);
        prefix[plen] = 0;
    }
}

static const nmc_backend_desc_t *other_backend(const nmc_backend_desc_t *b, int k)
{
    /* k-th backend that is not b */
    for (int i = 0; i < NMC_BACKEND_COUNT; i++) {
        if (nmc_schema_backends[i] == b) continue;
        if (k-- == 0) return nmc_schema_backends[i];
    }
    return NULL;
}

/* ---- help text assembly --------------------------------------------------------------------- */

typedef struct {
    char s[1536];
    size_t n;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf_t *b, const char *fmt, ...)
{
    if (b->n >= sizeof b->s - 1) return;
    if (b->n) b->s[b->n++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    if (k > 0) b->n += (size_t)k;
    if (b->n >= sizeof b->s) b->n = sizeof b->s - 1;
    b->s[b->n] = 0;
}

/* Closest candidate by edit distance, or NULL when none is close enough. */
static const char *closest(const char *key, size_t klen, const char *const *cands, size_t n)
{
    size_t best = (size_t)-1;
    const char *pick = NULL;
    size_t limit = klen <= 3 ? 1 : klen <= 8 ? 2 : 3;
    for (size_t i = 0; i < n; i++) {
        size_t d = nmc_edit_distance(key, klen, cands[i], strlen(cands[i]));
        if (d < best) best = d, pick = cands[i];
    }
    return best <= limit ? pick : NULL;
}

static void ours_list(const nmc_equiv_t *e, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < e->n && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? " / " : "", e->ours[i]);
}

/* ---- unknown keys ----------------------------------------------------------------------------- */

static void unknown_key(ctx_t *c, const nmc_object_desc_t *od, const nmc_json_member_t *m)
{
    char where[256], spath[256], key[128];
    int kl = (int)(m->key_len < 100 ? m->key_len : 100);
    snprintf(key, sizeof key, "%.*s%s", kl, m->key, m->key_len > 100 ? "..." : "");
    for (char *p = key; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    nmc_path_dotted(&c->path, where, sizeof where);
    bool in_spec = c->path.depth >= c->spec_depth && c->job->spec != NULL;
    schema_path(c, m->key, m->key_len, spath, sizeof spath);
    sbuf_t help = {0};
    const char *code = "unknown-key";
    char msg[600];
    if (where[0]) snprintf(msg, sizeof msg, "unknown key `%s` in %s", key, where);
    else snprintf(msg, sizeof msg, "unknown key `%s`", key);

    /* did you mean (keys legal here) */
    const char *cands[128];
    size_t nc = 0;
    for (int i = 0; i < od->n_fields && nc < 128; i++)
        if (!(od->fields[i].flags & (NMC_F_REMOVED | NMC_F_ALIAS))) cands[nc++] = od->fields[i].name;
    const char *dym = closest(m->key, m->key_len, cands, nc);
    if (dym) sb_add(&help, "did you mean `%s`?", dym);

    /* the other backend's key */
    if (in_spec) {
        for (int k = 0; other_backend(c->b, k); k++) {
            const nmc_backend_desc_t *ob = other_backend(c->b, k);
            const nmc_equiv_t *e = equiv_find(c->b, spath);
            bool theirs = desc_resolve(ob->root, spath) != NULL;
            if (!e && !theirs) continue;
            code = "other-backend-key";
            snprintf(msg, sizeof msg, "`%s` is %s %s key, not %s %s one", spath, article(ob->name), ob->name,
                     article(c->b->name), c->b->name);
            if (e) {
                char ours[300];
                ours_list(e, ours, sizeof ours);
                sb_add(&help, "%s uses %s instead%s%s", c->b->name, ours, e->note ? ": " : "", e->note ? e->note : "");
            } else {
                sb_add(&help, "%s has no direct equivalent of %s.%s", c->b->name, ob->name, spath);
            }
            break;
        }
        /* where else the key lives in this backend (an equivalent already says it) */
        where_t w = {0};
        bool skip = strcmp(code, "other-backend-key") == 0;
        char prefix[208] = "";
        if (!skip) where_walk(c->b->root, m->key, m->key_len, prefix, 0, 0, &w);
        char here[256];
        schema_path(c, NULL, 0, here, sizeof here);
        for (int i = 0; i < w.n; i++) {
            if (strcmp(w.found[i], here) == 0 || strstr(help.s, w.found[i][0] ? w.found[i] : "\x01")) continue;
            if (w.found[i][0]) sb_add(&help, "`%s` belongs in `%s` for %s", key, w.found[i], c->b->name);
            else sb_add(&help, "`%s` belongs at the top level for %s", key, c->b->name);
        }
    }
    if (help.n == 0) {
        char list[700];
        size_t n = 0;
        list[0] = 0;
        for (size_t i = 0; i < nc && n < sizeof list; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", cands[i]);
        sb_add(&help, "allowed keys %s%s: %s", where[0] ? "in " : "at the top level", where, list);
    }
    nmc_path_push_key(&c->path, m->key, m->key_len);
    nmc_diag_t *r = report(c, NMC_SEV_ERROR, code, AT_KEY(m), "%s", msg);
    nmc_path_pop(&c->path);
    nmc_diag_set_help(r, "%s", help.s);
}

/* ---- values --------------------------------------------------------------------------------- */

typedef enum { LV_OK, LV_NULL, LV_BAD } lv_t;

static lv_t load_value(ctx_t *c, const nmc_type_desc_t *t, int store, const nmc_json_t *v, void *dst,
                       const nmc_field_desc_t *f);
static void load_object(ctx_t *c, const nmc_object_desc_t *od, const nmc_json_t *v, void *base);

/* Type help for a value of the wrong JSON kind. */
static void type_help(ctx_t *c, const nmc_type_desc_t *t, const nmc_json_t *v, const nmc_field_desc_t *f,
                      sbuf_t *h)
{
    if (f && f->type_help) {
        sb_add(h, "%s", f->type_help);
        return;
    }
    int k = t->kind;
    bool numeric = k == NMC_T_INT || k == NMC_T_FLOAT;
    if (numeric && v->kind == NMC_JSON_STRING) {
        char *end = NULL;
        errno = 0;
        const char *s = v->u.str.s;
        while (*s == ' ') s++;
        double d = strtod(s, &end);
        (void)d;
        if (end && end != s && *end == 0 && v->u.str.len < 40) sb_add(h, "remove the quotes: %s", s);
        else sb_add(h, "write a JSON number without quotes, e.g. 16");
    } else if ((k == NMC_T_STRING || k == NMC_T_ENUM) &&
               (v->kind == NMC_JSON_NUMBER || v->kind == NMC_JSON_BOOL)) {
        const char *lit = v->kind == NMC_JSON_NUMBER ? v->u.num.text : (v->u.boolean ? "true" : "false");
        sb_add(h, "put it in quotes: \"%s\"", lit);
    } else if (k == NMC_T_BOOL && v->kind == NMC_JSON_STRING) {
        const char *s = v->u.str.s;
        bool yes = !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1") || !strcasecmp(s, "on");
        bool no = !strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0") || !strcasecmp(s, "off");
        if (yes || no) sb_add(h, "write %s without quotes", yes ? "true" : "false");
        else sb_add(h, "write true or false without quotes");
    } else if (k == NMC_T_BOOL && v->kind == NMC_JSON_NUMBER) {
        sb_add(h, "write true or false (JSON booleans), not a number");
    }
    /* an object where a scalar belongs, or the reverse: the other backend's shape? */
    bool structural = (v->kind == NMC_JSON_OBJECT) != (k == NMC_T_OBJECT || k == NMC_T_MAP || k == NMC_T_ANY_OBJECT);
    char spath[256];
    schema_path(c, NULL, 0, spath, sizeof spath);
    for (size_t i = 0; structural && spath[0] && i < c->b->n_equivalents; i++) {
        const nmc_equiv_t *e = &c->b->equivalents[i];
        bool ours = false;
        for (size_t j = 0; j < e->n; j++) ours |= strcmp(e->ours[j], spath) == 0;
        if (e->note && (strcmp(e->other, spath) == 0 || ours)) {
            sb_add(h, "note: %s", e->note);
            break;
        }
    }
}

static lv_t type_error(ctx_t *c, const nmc_type_desc_t *t, const nmc_json_t *v, const nmc_field_desc_t *f)
{
    char where[256], exp[256], got[128];
    path_text(c, where, sizeof where);
    const char *label = t->label ? t->label : "value";
    if (t->kind == NMC_T_ENUM) label = "string";
    expected_text(t, exp, sizeof exp);
    got_text(c, v, got, sizeof got);
    nmc_diag_t *r;
    if (c->path.depth == 0)
        r = report(c, NMC_SEV_ERROR, "type-mismatch", AT_NODE(v), "a job file must hold a JSON object, not %s",
                   kind_word(v->kind));
    else
        r = report(c, NMC_SEV_ERROR, "type-mismatch", AT_NODE(v), "%s must be %s %s, not %s", where, article(label),
                   label, kind_word(v->kind));
    nmc_diag_set_expected(r, "%s", exp);
    nmc_diag_set_got(r, "%s", got);
    sbuf_t h = {0};
    type_help(c, t, v, f, &h);
    if (h.n) nmc_diag_set_help(r, "%s", h.s);
    return LV_BAD;
}

static lv_t bound_check(ctx_t *c, const nmc_type_desc_t *t, const nmc_json_t *v, double x)
{
    bool ok = true;
    if ((t->bounds & NMC_B_GE) && !(x >= t->lo)) ok = false;
    if ((t->bounds & NMC_B_GT) && !(x > t->lo)) ok = false;
    if ((t->bounds & NMC_B_LE) && !(x <= t->hi)) ok = false;
    if ((t->bounds & NMC_B_LT) && !(x < t->hi)) ok = false;
    if (ok) return LV_OK;
    char where[256], exp[256], got[128];
    path_text(c, where, sizeof where);
    expected_text(t, exp, sizeof exp);
    got_text(c, v, got, sizeof got);
    const char *cond = exp + strlen(t->label ? t->label : "");
    while (*cond == ' ') cond++;
    nmc_diag_t *r = report(c, NMC_SEV_ERROR, "out-of-range", AT_NODE(v), "%s must be %s, got %s", where, cond,
                           got[0] == 'n' ? got + 7 : got);
    nmc_diag_set_expected(r, "%s", exp);
    nmc_diag_set_got(r, "%s", got);
    return LV_BAD;
}

static lv_t load_int(ctx_t *c, const nmc_type_desc_t *t, const nmc_json_t *v, int64_t *out)
{
    if (v->kind != NMC_JSON_NUMBER) return LV_BAD;
    if (v->u.num.int_ok) {
        *out = v->u.num.i;
    } else {
        double d = v->u.num.d;
        char where[256], got[128];
        path_text(c, where, sizeof where);
        got_text(c, v, got, sizeof got);
        if (!v->u.num.is_int && isfinite(d) && d == floor(d) && fabs(d) < 9.2e18) {
            *out = (int64_t)d; /* an integral float (4096.0, 1e3): JSON Schema 2020-12 integers */
        } else if (v->u.num.is_int || !isfinite(d) || fabs(d) >= 9.2e18) {
            nmc_diag_t *r = report(c, NMC_SEV_ERROR, "out-of-range", AT_NODE(v),
                                   "%s %s does not fit in a 64-bit integer", where, v->u.num.text);
            nmc_diag_set_got(r, "%s", got);
            return LV_BAD;
        } else {
            nmc_diag_t *r = report(c, NMC_SEV_ERROR, "not-integer", AT_NODE(v), "%s must be a whole number, got %s",
                                   where, v->u.num.text);
            char exp[256];
            expected_text(t, exp, sizeof exp);
            nmc_diag_set_expected(r, "%s", exp);
            nmc_diag_set_got(r, "%s", got);
            nmc_diag_set_help(r, "use a whole number: %.0f or %.0f", floor(d), ceil(d));
            return LV_BAD;
        }
    }
    return bound_check(c, t, v, (double)*out);
}

static lv_t load_string(ctx_t *c, const nmc_type_desc_t *t, const nmc_json_t *v)
{
    char where[256];
    if (t->min_len > 0 && utf8_len(v->u.str.s, v->u.str.len) < (size_t)t->min_len) {
        path_text(c, where, sizeof where);
        nmc_diag_t *r = report(c, NMC_SEV_ERROR, "too-short", AT_NODE(v), "%s must not be empty", where);
        if (t->min_len > 1)
            nmc_diag_set_expected(r, "at least %d characters", (int)t->min_len);
        else
            nmc_diag_set_expected(r, "a non-empty string");
        return LV_BAD;
    }
    if (t->pattern && !pattern_match(t->pattern, v->u.str.s, v->u.str.len)) {
        char got[128];
        path_text(c, where, sizeof where);
        got_text(c, v, got, sizeof got);
        nmc_diag_t *r = report(c, NMC_SEV_ERROR, "pattern-mismatch", AT_NODE(v), "%s has the wrong form", where);
        nmc_diag_set_expected(r, "%s", pattern_desc(t->pattern));
        nmc_diag_set_got(r, "%s", got);
        return LV_BAD;
    }
    return LV_OK;
}

static lv_t load_enum(ctx_t *c, const nmc_type_desc_t *t, const nmc_json_t *v, int *out)
{
    const nmc_enum_desc_t *e = t->enm;
    for (size_t i = 0; i < e->n; i++)
        if (strlen(e->names[i]) == v->u.str.len && memcmp(e->names[i], v->u.str.s, v->u.str.len) == 0) {
            *out = (int)i;
            return LV_OK;
        }
    char where[256], exp[512], got[128];
    path_text(c, where, sizeof where);
    expected_text(t, exp, sizeof exp);
    got_text(c, v, got, sizeof got);
    nmc_diag_t *r = report(c, NMC_SEV_ERROR, "bad-enum", AT_NODE(v), "%s %s is not one of the allowed values",
                           where, got + 7);
    nmc_diag_set_expected(r, "%s", exp);
    nmc_diag_set_got(r, "%s", got);
    /* near miss: edit distance, or a case difference */
    const char *pick = closest(v->u.str.s, v->u.str.len, e->names, e->n);
    for (size_t i = 0; !pick && i < e->n; i++)
        if (strlen(e->names[i]) == v->u.str.len && strncasecmp(e->names[i], v->u.str.s, v->u.str.len) == 0)
            pick = e->names[i];
    if (pick) nmc_diag_set_help(r, "did you mean \"%s\"?", pick);
    return LV_BAD;
}

static bool const_matches(const nmc_type_desc_t *t, const nmc_json_t *v)
{
    const char *cj = t->const_json;
    if (cj[0] == '"') {
        size_t n = strlen(cj) - 2;
        return v->kind == NMC_JSON_STRING && v->u.str.len == n && memcmp(v->u.str.s, cj + 1, n) == 0;
    }
    if (v->kind == NMC_JSON_BOOL) return strcmp(cj, v->u.boolean ? "true" : "false") == 0;
    if (v->kind == NMC_JSON_NUMBER) return strtod(cj, NULL) == v->u.num.d;
    if (v->kind == NMC_JSON_NULL) return strcmp(cj, "null") == 0;
    return false;
}

/* Storage used for a type that is not a field's own (list items, union variants). */
static int store_for(const nmc_type_desc_t *t)
{
    switch (t->kind) {
    case NMC_T_BOOL: return NMC_FSTORE_BOOL;
    case NMC_T_INT: return NMC_FSTORE_INT;
    case NMC_T_FLOAT: return NMC_FSTORE_FLOAT;
    case NMC_T_STRING: return NMC_FSTORE_STRING;
    case NMC_T_ENUM: return NMC_FSTORE_ENUM;
    case NMC_T_OBJECT: return NMC_FSTORE_OBJECT_PTR;
    case NMC_T_UNION: return NMC_FSTORE_UNION;
    default: return NMC_FSTORE_JSON;
    }
}

static bool kind_fits(const nmc_type_desc_t *t, const nmc_json_t *v)
{
    switch (t->kind) {
    case NMC_T_BOOL: return v->kind == NMC_JSON_BOOL;
    case NMC_T_INT:
    case NMC_T_FLOAT: return v->kind == NMC_JSON_NUMBER;
    case NMC_T_STRING:
    case NMC_T_ENUM: return v->kind == NMC_JSON_STRING;
    case NMC_T_OBJECT:
    case NMC_T_MAP:
    case NMC_T_ANY_OBJECT: return v->kind == NMC_JSON_OBJECT;
    case NMC_T_LIST: return v->kind == NMC_JSON_ARRAY;
    case NMC_T_CONST: return const_matches(t, v);
    case NMC_T_UNION:
        for (int i = 0; i < t->n_variants; i++)
            if (kind_fits(&t->variants[i], v)) return true;
        return false;
    default: return false;
    }
}

static lv_t load_list(ctx_t *c, const nmc_type_desc_t *t, int store, const nmc_json_t *v, void *dst)
{
    size_t n = v->u.arr.n;
    const nmc_type_desc_t *it = t->sub;
    int ist = store_for(it);
    void *arr = NULL;
    size_t esz = store == NMC_FSTORE_STR_LIST ? sizeof(char *) : store == NMC_FSTORE_INT_LIST ? sizeof(int64_t)
               : store == NMC_FSTORE_FLOAT_LIST ? sizeof(double) : 0;
    if (esz && n) arr = nmc_arena_alloc(c->a, esz * n);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        union { bool b; int64_t i; double d; const char *s; int e; void *p; nmc_union_t u; const nmc_json_t *j; } tmp;
        memset(&tmp, 0, sizeof tmp);
        nmc_path_push_index(&c->path, (long)i);
        lv_t r = load_value(c, it, ist, v->u.arr.items[i], &tmp, NULL);
        nmc_path_pop(&c->path);
        if (r == LV_BAD) ok = false;
        if (r != LV_OK || !arr) continue;
        if (store == NMC_FSTORE_STR_LIST)
            ((const char **)arr)[i] = it->kind == NMC_T_ENUM ? it->enm->names[tmp.e] : tmp.s;
        else if (store == NMC_FSTORE_INT_LIST) ((int64_t *)arr)[i] = tmp.i;
        else ((double *)arr)[i] = tmp.d;
    }
    if (!ok) return LV_BAD;
    if (store == NMC_FSTORE_STR_LIST) *(nmc_str_list_t *)dst = (nmc_str_list_t){ arr, n };
    else if (store == NMC_FSTORE_INT_LIST) *(nmc_int_list_t *)dst = (nmc_int_list_t){ arr, n };
    else if (store == NMC_FSTORE_FLOAT_LIST) *(nmc_float_list_t *)dst = (nmc_float_list_t){ arr, n };
    else *(const nmc_json_t **)dst = v;
    return LV_OK;
}

static lv_t load_union(ctx_t *c, const nmc_type_desc_t *t, const nmc_json_t *v, nmc_union_t *dst)
{
    int cand[16], nc = 0;
    for (int i = 0; i < t->n_variants && nc < 16; i++) {
        const nmc_type_desc_t *vt = &t->variants[i];
        bool sel = vt->when_json >= 0 ? vt->when_json == (int)v->kind : kind_fits(vt, v);
        if (sel) cand[nc++] = i;
    }
    if (nc == 0) return LV_BAD; /* the caller reports the kind mismatch */
    int pick = cand[0];
    if (nc > 1) { /* try each quietly; the first that passes wins, else report the first */
        pick = -1;
        for (int k = 0; k < nc && pick < 0; k++) {
            nmc_diags_t scratch;
            nmc_diags_init(&scratch);
            nmc_diags_t *save = c->d;
            c->d = &scratch;
            union { int64_t i; double d; void *p; nmc_union_t u; } tmp;
            memset(&tmp, 0, sizeof tmp);
            lv_t r = load_value(c, &t->variants[cand[k]], store_for(&t->variants[cand[k]]), v, &tmp, NULL);
            c->d = save;
            if (r != LV_BAD && scratch.n_errors == 0) pick = cand[k];
            nmc_diags_free(&scratch);
        }
        if (pick < 0) pick = cand[0];
    }
    const nmc_type_desc_t *vt = &t->variants[pick];
    union { int64_t i; double d; void *p; nmc_union_t u; const nmc_json_t *j; } tmp;
    memset(&tmp, 0, sizeof tmp);
    lv_t r = load_value(c, vt, store_for(vt), v, &tmp, NULL);
    if (r == LV_BAD) return LV_BAD;
    dst->json = v;
    dst->variant = pick;
    dst->obj = vt->kind == NMC_T_OBJECT ? tmp.p : NULL;
    return LV_OK;
}

/* Validate v against t and store it in dst by `store`. f: the field (for its type help), or NULL. */
static lv_t load_value(ctx_t *c, const nmc_type_desc_t *t, int store, const nmc_json_t *v, void *dst,
                       const nmc_field_desc_t *f)
{
    if (v->kind == NMC_JSON_NULL) {
        if (t->nullable || (t->kind == NMC_T_CONST && strcmp(t->const_json, "null") == 0)) return LV_NULL;
        char where[256], exp[256];
        path_text(c, where, sizeof where);
        expected_text(t, exp, sizeof exp);
        nmc_diag_t *r = report(c, NMC_SEV_ERROR, "null-not-allowed", AT_NODE(v), "%s cannot be null", where);
        nmc_diag_set_expected(r, "%s", exp);
        nmc_diag_set_got(r, "null");
        if (f && (f->flags & NMC_F_HAS_DEFAULT) && !(f->flags & NMC_F_DEFAULT_NULL))
            nmc_diag_set_help(r, "remove the key to use the default");
        else if (f && (f->flags & NMC_F_REQUIRED))
            nmc_diag_set_help(r, "give a value: %s", f->doc);
        return LV_BAD;
    }
    switch (t->kind) {
    case NMC_T_BOOL:
        if (v->kind != NMC_JSON_BOOL) return type_error(c, t, v, f);
        *(bool *)dst = v->u.boolean;
        return LV_OK;
    case NMC_T_INT: {
        if (v->kind != NMC_JSON_NUMBER) return type_error(c, t, v, f);
        int64_t i = 0;
        if (load_int(c, t, v, &i) != LV_OK) return LV_BAD;
        *(int64_t *)dst = i;
        return LV_OK;
    }
    case NMC_T_FLOAT:
        if (v->kind != NMC_JSON_NUMBER) return type_error(c, t, v, f);
        if (!isfinite(v->u.num.d)) {
            char where[256];
            path_text(c, where, sizeof where);
            report(c, NMC_SEV_ERROR, "out-of-range", AT_NODE(v), "%s %s is too large for a number", where,
                   v->u.num.text);
            return LV_BAD;
        }
        if (bound_check(c, t, v, v->u.num.d) != LV_OK) return LV_BAD;
        *(double *)dst = v->u.num.d;
        return LV_OK;
    case NMC_T_STRING:
        if (v->kind != NMC_JSON_STRING) return type_error(c, t, v, f);
        if (load_string(c, t, v) != LV_OK) return LV_BAD;
        *(const char **)dst = v->u.str.s;
        return LV_OK;
    case NMC_T_ENUM: {
        if (v->kind != NMC_JSON_STRING) return type_error(c, t, v, f);
        int e = 0;
        if (load_enum(c, t, v, &e) != LV_OK) return LV_BAD;
        *(int *)dst = e;
        return LV_OK;
    }
    case NMC_T_CONST:
        if (!const_matches(t, v)) {
            char where[256], got[128];
            path_text(c, where, sizeof where);
            got_text(c, v, got, sizeof got);
            nmc_diag_t *r = report(c, NMC_SEV_ERROR, "bad-const", AT_NODE(v), "%s can only be %s", where, t->const_json);
            nmc_diag_set_expected(r, "%s", t->const_json);
            nmc_diag_set_got(r, "%s", got);
            if (f && f->doc) nmc_diag_set_help(r, "%s", f->doc);
            return LV_BAD;
        }
        if (store == NMC_FSTORE_STRING) *(const char **)dst = v->u.str.s;
        else *(const nmc_json_t **)dst = v;
        return LV_OK;
    case NMC_T_OBJECT: {
        if (v->kind != NMC_JSON_OBJECT) return type_error(c, t, v, f);
        void *sub = dst;
        if (store != NMC_FSTORE_OBJECT) {
            sub = nmc_arena_alloc(c->a, t->obj->size);
            *(void **)dst = sub;
        }
        /* errors inside mark the inner fields bad, not this one: rules can still read its
         * other members */
        load_object(c, t->obj, v, sub);
        return LV_OK;
    }
    case NMC_T_LIST:
        if (v->kind != NMC_JSON_ARRAY) return type_error(c, t, v, f);
        return load_list(c, t, store, v, dst);
    case NMC_T_MAP: {
        if (v->kind != NMC_JSON_OBJECT) return type_error(c, t, v, f);
        bool ok = true;
        for (size_t i = 0; i < v->u.obj.n; i++) {
            const nmc_json_member_t *m = &v->u.obj.members[i];
            union { int64_t i; double d; void *p; nmc_union_t u; } tmp;
            memset(&tmp, 0, sizeof tmp);
            nmc_path_push_key(&c->path, m->key, m->key_len);
            if (load_value(c, t->sub, store_for(t->sub), m->value, &tmp, NULL) == LV_BAD) ok = false;
            nmc_path_pop(&c->path);
        }
        if (!ok) return LV_BAD;
        *(const nmc_json_t **)dst = v;
        return LV_OK;
    }
    case NMC_T_ANY_OBJECT:
        if (v->kind != NMC_JSON_OBJECT) return type_error(c, t, v, f);
        *(const nmc_json_t **)dst = v;
        return LV_OK;
    case NMC_T_UNION: {
        nmc_union_t u = {0};
        size_t before = c->d->n_errors;
        lv_t r = load_union(c, t, v, &u);
        if (r == LV_BAD && c->d->n_errors == before) return type_error(c, t, v, f);
        if (r != LV_OK) return r;
        *(nmc_union_t *)dst = u;
        return LV_OK;
    }
    default:
        return LV_BAD;
    }
}

/* ---- defaults ------------------------------------------------------------------------------- */

static void fill_default(ctx_t *c, const nmc_object_desc_t *od, const nmc_field_desc_t *f, char *base);

static void fill_all_defaults(ctx_t *c, const nmc_object_desc_t *od, char *base)
{
    for (int i = 0; i < od->n_fields; i++) fill_default(c, od, &od->fields[i], base);
}

void nmc_job_fill_defaults(nmc_job_t *job, const nmc_object_desc_t *od, void *base)
{
    nmc_diags_t scratch;
    nmc_diags_init(&scratch);
    ctx_t c = { .job = job, .a = job->arena, .d = &scratch, .file = job->file, .b = job->backend, .in_default = true };
    fill_all_defaults(&c, od, base);
    nmc_diags_free(&scratch);
}

static void fill_default(ctx_t *c, const nmc_object_desc_t *od, const nmc_field_desc_t *f, char *base)
{
    if (!(f->flags & NMC_F_HAS_DEFAULT) || (f->flags & (NMC_F_META | NMC_F_REMOVED | NMC_F_ALIAS))) return;
    uint64_t *has = bits(base, od->has_off), *nul = bits(base, od->null_off);
    if (f->flags & NMC_F_DEFAULT_NULL) {
        NMC_BIT_SET(nul, f->index);
        return;
    }
    char *dst = base + f->offset;
    const nmc_default_t *d = &f->def;
    switch (f->store) {
    case NMC_FSTORE_BOOL: *(bool *)dst = d->b; break;
    case NMC_FSTORE_INT: *(int64_t *)dst = d->i; break;
    case NMC_FSTORE_FLOAT: *(double *)dst = d->d; break;
    case NMC_FSTORE_STRING: *(const char **)dst = d->s; break;
    case NMC_FSTORE_ENUM: *(int *)dst = d->e; break;
    case NMC_FSTORE_STR_LIST: *(nmc_str_list_t *)dst = (nmc_str_list_t){ d->sl, d->n }; break;
    case NMC_FSTORE_INT_LIST: *(nmc_int_list_t *)dst = (nmc_int_list_t){ d->il, d->n }; break;
    case NMC_FSTORE_FLOAT_LIST: *(nmc_float_list_t *)dst = (nmc_float_list_t){ d->fl, d->n }; break;
    case NMC_FSTORE_OBJECT:
    case NMC_FSTORE_OBJECT_PTR:
        if (d->json && strcmp(d->json, "{}") == 0) {
            char *sub = dst;
            if (f->store == NMC_FSTORE_OBJECT_PTR) {
                sub = nmc_arena_alloc(c->a, f->type.obj->size);
                *(void **)dst = sub;
            }
            fill_all_defaults(c, f->type.obj, sub);
            break;
        }
        /* a non-empty default object is loaded like user input */
        __attribute__((fallthrough));
    default: {
        if (!d->json) return;
        nmc_json_t *v = NULL;
        nmc_diags_t scratch;
        nmc_diags_init(&scratch);
        if (nmc_json_parse(c->a, d->json, strlen(d->json), "(default)", NULL, &v, &scratch) != 0) {
            nmc_diags_free(&scratch);
            return;
        }
        nmc_diags_free(&scratch);
        bool save = c->in_default;
        c->in_default = true;
        nmc_diags_t *saved = c->d, quiet;
        nmc_diags_init(&quiet);
        c->d = &quiet;
        lv_t r = load_value(c, &f->type, f->store, v, dst, f);
        c->d = saved;
        nmc_diags_free(&quiet);
        c->in_default = save;
        if (r == LV_NULL) NMC_BIT_SET(nul, f->index);
        if (r != LV_OK) return;
        break;
    }
    }
    NMC_BIT_SET(has, f->index);
}

/* ---- objects -------------------------------------------------------------------------------- */

static void load_member(ctx_t *c, const nmc_object_desc_t *od, const nmc_field_desc_t *f,
                        const nmc_json_member_t *m, char *base)
{
    uint64_t *has = bits(base, od->has_off), *nul = bits(base, od->null_off), *bad = bits(base, od->bad_off);
    char where[256];
    if (f->flags & NMC_F_REMOVED) {
        path_text(c, where, sizeof where);
        nmc_diag_t *r = report(c, NMC_SEV_ERROR, "removed-key", AT_KEY(m), "%s", f->removed);
        (void)r;
        NMC_BIT_SET(bad, f->index);
        return;
    }
    if (f->flags & NMC_F_ALIAS) {
        const char *target = od->fields[f->alias_of].name;
        path_text(c, where, sizeof where);
        nmc_diag_t *r = report(c, NMC_SEV_WARNING, "deprecated-key", AT_KEY(m), "%s is a deprecated spelling of `%s`",
                               where, target);
        nmc_diag_set_help(r, "rename `%s` to `%s`", f->name, target);
    }
    bool enter_spec = c->job->backend->envelope == od && strcmp(f->name, "spec") == 0;
    if (enter_spec) c->spec_depth = c->path.depth;
    if (f->flags & NMC_F_META) {
        /* checked (a string) and otherwise ignored; no member */
        union { const char *s; int64_t i; } tmp;
        lv_t r = load_value(c, &f->type, NMC_FSTORE_STRING, m->value, &tmp, f);
        if (r == LV_BAD) NMC_BIT_SET(bad, f->index);
        return;
    }
    if (enter_spec) c->job->spec = base + f->offset; /* unknown-key help needs it during the load */
    lv_t r = load_value(c, &f->type, f->store, m->value, base + f->offset, f);
    if (r == LV_OK) NMC_BIT_SET(has, f->index);
    else if (r == LV_NULL) NMC_BIT_SET(nul, f->index);
    else NMC_BIT_SET(bad, f->index);
    if (enter_spec && m->value->kind != NMC_JSON_OBJECT) c->job->spec = NULL;
}

static void copy_alias(const nmc_object_desc_t *od, const nmc_field_desc_t *f, char *base)
{
    const nmc_field_desc_t *t = &od->fields[f->alias_of];
    uint64_t *given = bits(base, od->given_off), *has = bits(base, od->has_off), *nul = bits(base, od->null_off),
             *bad = bits(base, od->bad_off);
    size_t sz = t->offset > f->offset ? t->offset - f->offset : f->offset - t->offset;
    /* same type (c.lua checks): copy the member's bytes; its size is at most that of a union */
    size_t n = sizeof(nmc_union_t) < sz ? sizeof(nmc_union_t) : sz;
    switch (f->store) {
    case NMC_FSTORE_BOOL: n = sizeof(bool); break;
    case NMC_FSTORE_INT: n = sizeof(int64_t); break;
    case NMC_FSTORE_FLOAT: n = sizeof(double); break;
    case NMC_FSTORE_ENUM: n = sizeof(int); break;
    case NMC_FSTORE_STRING:
    case NMC_FSTORE_OBJECT_PTR:
    case NMC_FSTORE_JSON: n = sizeof(void *); break;
    case NMC_FSTORE_STR_LIST: n = sizeof(nmc_str_list_t); break;
    case NMC_FSTORE_INT_LIST: n = sizeof(nmc_int_list_t); break;
    case NMC_FSTORE_FLOAT_LIST: n = sizeof(nmc_float_list_t); break;
    case NMC_FSTORE_UNION: n = sizeof(nmc_union_t); break;
    default: return; /* embedded objects are not aliased */
    }
    memcpy(base + t->offset, base + f->offset, n);
    NMC_BIT_SET(given, t->index);
    if (NMC_BIT_GET(has, f->index)) NMC_BIT_SET(has, t->index);
    if (NMC_BIT_GET(nul, f->index)) NMC_BIT_SET(nul, t->index);
    if (NMC_BIT_GET(bad, f->index)) NMC_BIT_SET(bad, t->index);
}

static void load_object(ctx_t *c, const nmc_object_desc_t *od, const nmc_json_t *v, void *vbase)
{
    char *base = vbase;
    uint64_t *given = bits(base, od->given_off);
    if (!c->in_default) *(const nmc_json_t **)(base + od->json_off) = v;
    for (size_t i = 0; i < v->u.obj.n; i++) {
        const nmc_json_member_t *m = &v->u.obj.members[i];
        int k = od->lookup(m->key, m->key_len);
        if (k < 0) {
            unknown_key(c, od, m);
            continue;
        }
        const nmc_field_desc_t *f = &od->fields[k];
        if (!c->in_default) NMC_BIT_SET(given, k);
        nmc_path_push_key(&c->path, m->key, m->key_len);
        load_member(c, od, f, m, base);
        nmc_path_pop(&c->path);
    }
    for (int k = 0; k < od->n_fields; k++) {
        const nmc_field_desc_t *f = &od->fields[k];
        if (!(f->flags & NMC_F_ALIAS) || !NMC_BIT_GET(given, k)) continue;
        if (NMC_BIT_GET(given, f->alias_of)) {
            const nmc_json_member_t *m = nmc_json_member(v, f->name);
            char where[256];
            nmc_path_push_key(&c->path, f->name, f->name_len);
            path_text(c, where, sizeof where);
            nmc_diag_t *r = report(c, NMC_SEV_ERROR, "duplicate-alias", m ? m->line : v->line, m ? m->col : v->col,
                                   m ? m->offset : v->offset, "%s and `%s` are the same setting; both are given", where,
                                   od->fields[f->alias_of].name);
            nmc_path_pop(&c->path);
            nmc_diag_set_help(r, "remove `%s`", f->name);
            continue;
        }
        copy_alias(od, f, base);
    }
    for (int k = 0; k < od->n_fields; k++) {
        const nmc_field_desc_t *f = &od->fields[k];
        if (NMC_BIT_GET(given, k)) continue;
        if (f->flags & NMC_F_REQUIRED) {
            char where[256];
            nmc_path_dotted(&c->path, where, sizeof where);
            nmc_diag_t *r;
            if (where[0])
                r = report(c, NMC_SEV_ERROR, "missing-key", AT_NODE(v), "%s is missing the required key `%s`", where,
                           f->name);
            else
                r = report(c, NMC_SEV_ERROR, "missing-key", AT_NODE(v), "the job is missing the required key `%s`",
                           f->name);
            nmc_diag_set_help(r, "add a \"%s\" key: %s", f->name, f->doc);
            NMC_BIT_SET(bits(base, od->bad_off), k);
            continue;
        }
        fill_default(c, od, f, base);
    }
}

/* ---- backend choice ------------------------------------------------------------------------- */

int nmc_backend_by_name(const char *name)
{
    for (int i = 0; i < NMC_BACKEND_COUNT; i++)
        if (name && strcmp(nmc_schema_backends[i]->name, name) == 0) return i;
    return -1;
}

/* The backend a "$schema" string names (by its last path component), or -1. */
static int backend_from_schema(const char *s, size_t n, size_t *comp_off, size_t *comp_len)
{
    size_t end = n;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '?' || s[i] == '#') { end = i; break; }
    size_t start = 0;
    for (size_t i = 0; i < end; i++)
        if (s[i] == '/' || s[i] == '\\') start = i + 1;
    *comp_off = start;
    *comp_len = end - start;
    for (int i = 0; i < NMC_BACKEND_COUNT; i++) {
        const char *f = nmc_schema_backends[i]->schema_file;
        if (strlen(f) == end - start && memcmp(f, s + start, end - start) == 0) return i;
    }
    return -1;
}

static void choose_backend(ctx_t *c, const nmc_job_opts_t *opts)
{
    nmc_job_t *job = c->job;
    const nmc_json_member_t *m = nmc_json_member(job->doc, "$schema");
    const nmc_json_t *spec = nmc_json_get(job->doc, "spec");
    if (!m && spec) m = nmc_json_member(spec, "$schema");
    int from_schema = -1;
    if (m && m->value->kind == NMC_JSON_STRING) {
        size_t off, len;
        from_schema = backend_from_schema(m->value->u.str.s, m->value->u.str.len, &off, &len);
        if (from_schema < 0) {
            nmc_path_push_key(&c->path, "$schema", 7);
            nmc_diag_t *r = report(c, NMC_SEV_ERROR, "unknown-schema", AT_NODE(m->value),
                                   "\"$schema\" names `%.*s`, which is not an nmc job schema", (int)(len > 80 ? 80 : len),
                                   m->value->u.str.s + off);
            nmc_path_pop(&c->path);
            char list[256];
            size_t n = 0;
            for (int i = 0; i < NMC_BACKEND_COUNT; i++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? " or " : "", nmc_schema_backends[i]->schema_file);
            nmc_diag_set_help(r, "end the path with %s, or remove \"$schema\" and pass --backend", list);
        }
    }
    if (opts && opts->backend >= 0 && opts->backend < NMC_BACKEND_COUNT) {
        job->backend = nmc_schema_backends[opts->backend];
        job->backend_source = NMC_JOB_BACKEND_OPTION;
        if (from_schema >= 0 && from_schema != opts->backend) {
            nmc_path_push_key(&c->path, "$schema", 7);
            nmc_diag_t *r = report(c, NMC_SEV_WARNING, "schema-backend-mismatch", AT_NODE(m->value),
                                   "\"$schema\" names the %s schema, but --backend %s was given; checking as %s",
                                   nmc_schema_backends[from_schema]->name, job->backend->name, job->backend->name);
            nmc_path_pop(&c->path);
            nmc_diag_set_help(r, "drop --backend or fix \"$schema\" so that they agree");
        }
    } else if (from_schema >= 0) {
        job->backend = nmc_schema_backends[from_schema];
        job->backend_source = NMC_JOB_BACKEND_SCHEMA_KEY;
    } else {
        job->backend = &nmc_backend_automodel;
        job->backend_source = NMC_JOB_BACKEND_DEFAULT;
    }
    c->b = job->backend;
}

/* ---- loading ---------------------------------------------------------------------------------- */

static void load_doc(ctx_t *c)
{
    nmc_job_t *job = c->job;
    const nmc_backend_desc_t *b = job->backend;
    const nmc_json_t *doc = job->doc;
    if (doc->kind != NMC_JSON_OBJECT) {
        nmc_type_desc_t t = { .kind = NMC_T_OBJECT, .label = "object" };
        type_error(c, &t, doc, NULL);
        return;
    }
    bool envelope = b->envelope && nmc_json_member(doc, "spec") && b->root->lookup("spec", 4) < 0;
    if (envelope) {
        job->is_envelope = true;
        job->envelope = nmc_arena_alloc(c->a, b->envelope->size);
        c->spec_depth = 1;
        load_object(c, b->envelope, doc, job->envelope);
    } else {
        job->spec = nmc_arena_alloc(c->a, b->root->size);
        load_object(c, b->root, doc, job->spec);
    }
    if (!job->spec) return;
    nmc_rules_autofill(job, job->spec, b->root);
    nmc_rules_derive(job);
    nmc_rules_check(job, NULL, false, c->d);
}

/* A note when the file would pass as another backend. */
static void probe_other_backends(nmc_job_t *job, nmc_diags_t *diags)
{
    for (int k = 0; other_backend(job->backend, k); k++) {
        const nmc_backend_desc_t *ob = other_backend(job->backend, k);
        nmc_job_opts_t o = { .backend = ob->id, .no_other_backend_hint = true };
        nmc_diags_t scratch;
        nmc_diags_init(&scratch);
        nmc_job_t *alt = NULL;
        nmc_job_status_t st = nmc_job_load_buffer(job->src, job->src_len, job->file, &o, &alt, &scratch);
        nmc_job_free(alt);
        nmc_diags_free(&scratch);
        if (st != NMC_JOB_VALID) continue;
        nmc_diag_t *r = nmc_diag_add(diags, NMC_SEV_NOTE, "valid-as-other-backend", job->file, 0, 0, 0,
                                     "this job is a valid %s job", ob->name);
        if (job->backend_source == NMC_JOB_BACKEND_SCHEMA_KEY)
            nmc_diag_set_help(r, "change \"$schema\" to \"%s\", or run with --backend %s", ob->schema_file, ob->name);
        else if (job->backend_source == NMC_JOB_BACKEND_OPTION)
            nmc_diag_set_help(r, "run with --backend %s", ob->name);
        else
            nmc_diag_set_help(r, "run with --backend %s or add \"$schema\": \"%s\"", ob->name, ob->schema_file);
        return;
    }
}

nmc_job_status_t nmc_job_load_buffer(const char *src, size_t len, const char *file, const nmc_job_opts_t *opts,
                                     nmc_job_t **out, nmc_diags_t *diags)
{
    nmc_arena_t *a = nmc_arena_new();
    nmc_job_t *job = nmc_arena_alloc(a, sizeof *job);
    job->arena = a;
    job->file = file ? nmc_arena_strdup(a, file) : NULL;
    char *copy = nmc_arena_alloc(a, len + 1);
    if (len) memcpy(copy, src, len);
    job->src = copy;
    job->src_len = len;
    size_t errors_before = diags->n_errors;
    nmc_json_t *doc = NULL;
    const nmc_json_limits_t *lim = opts ? &opts->limits : NULL;
    if (nmc_json_parse(a, copy, len, job->file, lim, &doc, diags) == 0) {
        job->doc = doc;
        ctx_t c = { .job = job, .a = a, .d = diags, .file = job->file };
        choose_backend(&c, opts);
        load_doc(&c);
    } else {
        job->backend = opts && opts->backend >= 0 && opts->backend < NMC_BACKEND_COUNT
                           ? nmc_schema_backends[opts->backend] : &nmc_backend_automodel;
    }
    nmc_diags_sort(diags);
    bool failed = diags->n_errors > errors_before;
    job->status = failed ? NMC_JOB_INVALID : NMC_JOB_VALID;
    if (failed && job->doc && !(opts && opts->no_other_backend_hint)) probe_other_backends(job, diags);
    if (out) *out = job;
    else nmc_job_free(job);
    return failed ? NMC_JOB_INVALID : NMC_JOB_VALID;
}

nmc_job_status_t nmc_job_load_file(const char *path, const nmc_job_opts_t *opts, nmc_job_t **out, nmc_diags_t *diags)
{
    size_t max = opts && opts->limits.max_bytes ? opts->limits.max_bytes : NMC_JSON_DEFAULT_MAX_BYTES;
    FILE *fp = fopen(path, "rb");
    struct stat st;
    const char *why = NULL;
    if (!fp) why = strerror(errno);
    else if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) why = "is a directory";
    if (why) {
        if (fp) fclose(fp);
        nmc_diag_t *r = nmc_diag_add(diags, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "cannot read %s: %s", path, why);
        nmc_diag_set_help(r, "check the path and its permissions");
        if (out) {
            nmc_arena_t *a = nmc_arena_new();
            nmc_job_t *job = nmc_arena_alloc(a, sizeof *job);
            job->arena = a;
            job->file = nmc_arena_strdup(a, path);
            job->backend = opts && opts->backend >= 0 && opts->backend < NMC_BACKEND_COUNT
                               ? nmc_schema_backends[opts->backend] : &nmc_backend_automodel;
            job->status = NMC_JOB_IO_ERROR;
            *out = job;
        }
        return NMC_JOB_IO_ERROR;
    }
    /* read at most max+1 bytes: the parser reports "too large" with the limit */
    size_t cap = 64 * 1024, n = 0;
    char *buf = malloc(cap);
    if (!buf) abort();
    for (;;) {
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) abort();
            buf = nb;
        }
        size_t want = cap - n;
        if (n + want > max + 1) want = max + 1 - n;
        if (want == 0) break;
        size_t k = fread(buf + n, 1, want, fp);
        n += k;
        if (k < want) break;
    }
    int rerr = ferror(fp);
    fclose(fp);
    if (rerr) {
        free(buf);
        nmc_diag_add(diags, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "cannot read %s: read error", path);
        if (out) *out = NULL;
        return NMC_JOB_IO_ERROR;
    }
    nmc_job_status_t s = nmc_job_load_buffer(buf, n, path, opts, out, diags);
    free(buf);
    return s;
}

void nmc_job_free(nmc_job_t *job)
{
    if (job) nmc_arena_free(job->arena);
}

const nmc_automodel_job_t *nmc_job_automodel(const nmc_job_t *job)
{
    return job && job->spec && job->backend == &nmc_backend_automodel ? job->spec : NULL;
}

const nmc_unsloth_job_t *nmc_job_unsloth(const nmc_job_t *job)
{
    return job && job->spec && job->backend == &nmc_backend_unsloth ? job->spec : NULL;
}

size_t nmc_job_check_model(const nmc_job_t *job, const nmc_model_facts_t *facts, nmc_diags_t *diags)
{
    if (!job || !job->spec) return 0;
    return nmc_rules_check(job, facts, true, diags);
}

/* ---- explain -------------------------------------------------------------------------------- */

static void explain_object(nmc_json_writer_t *w, const nmc_object_desc_t *od, const char *base);

static void explain_value(nmc_json_writer_t *w, const nmc_field_desc_t *f, const char *p)
{
    switch (f->store) {
    case NMC_FSTORE_BOOL: nmc_jw_bool(w, *(const bool *)p); break;
    case NMC_FSTORE_INT: nmc_jw_int(w, *(const int64_t *)p); break;
    case NMC_FSTORE_FLOAT: nmc_jw_double(w, *(const double *)p); break;
    case NMC_FSTORE_STRING: nmc_jw_string(w, *(const char *const *)p); break;
    case NMC_FSTORE_ENUM: nmc_jw_string(w, f->type.enm->names[*(const int *)p]); break;
    case NMC_FSTORE_OBJECT: explain_object(w, f->type.obj, p); break;
    case NMC_FSTORE_OBJECT_PTR:
        if (*(void *const *)p) explain_object(w, f->type.obj, *(const char *const *)p);
        else nmc_jw_null(w);
        break;
    case NMC_FSTORE_STR_LIST: {
        const nmc_str_list_t *l = (const void *)p;
        nmc_jw_begin_array(w);
        for (size_t i = 0; i < l->n; i++) nmc_jw_string(w, l->v[i]);
        nmc_jw_end_array(w);
        break;
    }
    case NMC_FSTORE_INT_LIST: {
        const nmc_int_list_t *l = (const void *)p;
        nmc_jw_begin_array(w);
        for (size_t i = 0; i < l->n; i++) nmc_jw_int(w, l->v[i]);
        nmc_jw_end_array(w);
        break;
    }
    case NMC_FSTORE_FLOAT_LIST: {
        const nmc_float_list_t *l = (const void *)p;
        nmc_jw_begin_array(w);
        for (size_t i = 0; i < l->n; i++) nmc_jw_double(w, l->v[i]);
        nmc_jw_end_array(w);
        break;
    }
    case NMC_FSTORE_UNION: {
        const nmc_union_t *u = (const void *)p;
        const nmc_type_desc_t *vt = &f->type.variants[u->variant];
        if (u->obj && vt->kind == NMC_T_OBJECT) explain_object(w, vt->obj, u->obj);
        else if (u->json) nmc_jw_value(w, u->json);
        else nmc_jw_null(w);
        break;
    }
    case NMC_FSTORE_JSON:
        if (*(const nmc_json_t *const *)p) nmc_jw_value(w, *(const nmc_json_t *const *)p);
        else nmc_jw_null(w);
        break;
    default: nmc_jw_null(w); break;
    }
}

static void explain_object(nmc_json_writer_t *w, const nmc_object_desc_t *od, const char *base)
{
    const uint64_t *has = (const uint64_t *)(base + od->has_off), *nul = (const uint64_t *)(base + od->null_off);
    nmc_jw_begin_object(w);
    for (int i = 0; i < od->n_fields; i++) {
        const nmc_field_desc_t *f = &od->fields[i];
        if (f->flags & (NMC_F_META | NMC_F_ALIAS | NMC_F_REMOVED)) continue;
        if (NMC_BIT_GET(nul, i)) {
            nmc_jw_key(w, f->name);
            nmc_jw_null(w);
        } else if (NMC_BIT_GET(has, i)) {
            nmc_jw_key(w, f->name);
            explain_value(w, f, base + f->offset);
        }
    }
    nmc_jw_end_object(w);
}

void nmc_job_explain(const nmc_job_t *job, FILE *out)
{
    nmc_json_writer_t w;
    nmc_jw_init(&w, out, 2);
    nmc_jw_begin_object(&w);
    nmc_jw_key(&w, "spec");
    if (job->spec) explain_object(&w, job->backend->root, job->spec);
    else nmc_jw_null(&w);
    nmc_jw_key(&w, "derived");
    nmc_jw_begin_object(&w);
    nmc_jw_key(&w, "backend");
    nmc_jw_string(&w, job->backend->name);
    for (size_t i = 0; job->derived && i < job->backend->n_derived; i++) {
        const nmc_derived_t *d = &job->derived[i];
        nmc_jw_key(&w, job->backend->derived[i].name);
        if (!d->defined) nmc_jw_null(&w);
        else if (d->v.kind == NMC_LIT_INT) nmc_jw_int(&w, d->v.i);
        else if (d->v.kind == NMC_LIT_FLOAT) nmc_jw_double(&w, d->v.d);
        else if (d->v.kind == NMC_LIT_BOOL) nmc_jw_bool(&w, d->v.b);
        else if (d->v.kind == NMC_LIT_STRING) nmc_jw_string(&w, d->v.s);
        else nmc_jw_null(&w);
    }
    nmc_jw_end_object(&w);
    nmc_jw_end_object(&w);
    fputc('\n', out);
}
