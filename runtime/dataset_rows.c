/* dataset_rows.c — one JSONL row to tokens and a loss mask.
 *
 * What belongs here: checking a row's shape (every malformed-row diagnostic), turning it into
 * text (chat template, prompt + completion, prompt_template columns, text_field) and into
 * token ids with a mask of training targets. Truncation, packing and storage are dataset.c's.
 *
 * Tokenization follows the reference trainers (docs/dataset.md):
 *  - messages: render with the chat template (add_generation_prompt false), encode the whole
 *    text without added special tokens (transformers' apply_chat_template(tokenize=True)), and
 *    mark the tokens that overlap an assistant span (chat_template.h spans) — the rule of
 *    transformers' return_assistant_tokens_mask (char_to_token of the span's first and last
 *    character). Token byte offsets come from the token strings (byte-level or metaspace
 *    vocabularies) aligned against the text; when that alignment fails, a span boundary is
 *    placed where encode(text[:boundary]) stops agreeing with the full encoding (warning).
 *  - prompt + completion (and prompt_template): TRL SFTTrainer — the EOS token text is
 *    appended to the completion unless it already ends with it; encode(prompt) and
 *    encode(prompt + completion), both with special tokens; the completion starts at their
 *    common prefix length.
 *  - text (Unsloth text_field, and rendered chats with apply_chat_template): TRL's add_eos,
 *    then encode with special tokens unless the text already starts with the BOS token text
 *    (Unsloth's guard against a double BOS); every token is a target.
 */
#include "dataset_int.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct ds_rows {
    const nmc_dataset_opts_t *o;
    const nmc_dataset_model_t *m;
    nmc_tok_encoder_t *enc;
    nmc_tok_ids_t a, b;          /* scratch id buffers */
    char *buf;                   /* scratch text */
    size_t buf_cap;
    char *lit[3], *col[2];       /* parsed prompt_template */
    bool bytelevel;              /* vocabulary spells bytes GPT-2 style */
    int16_t inv[324];            /* byte-level code point -> byte, -1 none */
    size_t *off_s, *off_e;       /* token offsets scratch */
    size_t off_cap;
};

void ds_toks_reserve(ds_toks_t *t, size_t n)
{
    if (n <= t->cap) return;
    size_t c = t->cap ? t->cap : 256;
    while (c < n) c *= 2;
    int32_t *ids = realloc(t->ids, c * sizeof *ids);
    uint8_t *mask = realloc(t->mask, c);
    if (!ids || !mask) abort(); /* out of memory: as the arena does */
    t->ids = ids, t->mask = mask, t->cap = c;
}

void ds_toks_free(ds_toks_t *t)
{
    free(t->ids);
    free(t->mask);
    memset(t, 0, sizeof *t);
}

static void buf_reserve(ds_rows_t *r, size_t n)
{
    if (n <= r->buf_cap) return;
    size_t c = r->buf_cap ? r->buf_cap : 4096;
    while (c < n) c *= 2;
    char *p = realloc(r->buf, c);
    if (!p) abort();
    r->buf = p, r->buf_cap = c;
}

/* GPT-2's bytes_to_unicode, inverted: printable Latin-1 maps to itself, the other 68 bytes
 * to U+0100.. in byte order. */
static void build_bytelevel(ds_rows_t *r)
{
    for (int i = 0; i < 324; i++) r->inv[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        if (printable) r->inv[b] = (int16_t)b;
        else r->inv[256 + extra++] = (int16_t)b;
    }
}

ds_rows_t *ds_rows_new(const nmc_dataset_opts_t *o, const nmc_dataset_model_t *m)
{
    ds_rows_t *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->o = o, r->m = m;
    r->enc = nmc_tok_encoder_new(m->tok);
    r->bytelevel = nmc_tokenizer_token_to_id(m->tok, "\xc4\xa0", 2) >= 0 &&
                   nmc_tokenizer_token_to_id(m->tok, "\xc4\x8a", 2) >= 0; /* "Ġ" and "Ċ" */
    build_bytelevel(r);
    if (o->format == NMC_DS_FMT_TEMPLATE && o->prompt_template) {
        const char *why;
        if (ds_template_parse(o->prompt_template, r->lit, r->col, &why) != 0) {
            ds_rows_free(r);
            return NULL;
        }
    }
    return r;
}

void ds_rows_free(ds_rows_t *r)
{
    if (!r) return;
    nmc_tok_encoder_free(r->enc);
    nmc_tok_ids_free(&r->a);
    nmc_tok_ids_free(&r->b);
    free(r->buf);
    for (int i = 0; i < 3; i++) free(r->lit[i]);
    for (int i = 0; i < 2; i++) free(r->col[i]);
    free(r->off_s);
    free(r->off_e);
    free(r);
}

/* ---- prompt_template ------------------------------------------------------------------- */
static bool col_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Append s[0..n) to a malloc'd string. */
static char *str_append(char *s, const char *p, size_t n)
{
    size_t l = s ? strlen(s) : 0;
    char *x = realloc(s, l + n + 1);
    if (!x) abort();
    memcpy(x + l, p, n);
    x[l + n] = '\0';
    return x;
}

int ds_template_parse(const char *t, char *lit[3], char *col[2], const char **why)
{
    int k = 0; /* placeholders seen */
    for (int i = 0; i < 3; i++) lit[i] = str_append(NULL, "", 0);
    col[0] = col[1] = NULL;
    for (const char *p = t; *p;) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            if (k <= 2) lit[k] = str_append(lit[k], p, 1);
            p += 2;
        } else if (*p == '}') {
            *why = "a '}' closes no placeholder (write '}}' for a literal brace)";
            goto fail;
        } else if (*p == '{') {
            const char *q = p + 1;
            while (col_char(*q)) q++;
            if (*q != '}' || q == p + 1) {
                *why = q == p + 1 && *q == '}' ? "a placeholder `{}` names no column"
                                               : "a placeholder is not `{column}` with a column name of letters, digits, '_' or '-' (write '{{' for a literal brace)";
                goto fail;
            }
            if (k >= 2) {
                *why = "more than two placeholders; the template takes exactly two: the prompt column, then the completion column";
                goto fail;
            }
            col[k] = str_append(NULL, p + 1, (size_t)(q - p - 1));
            k++;
            p = q + 1;
        } else {
            lit[k] = str_append(lit[k], p, 1);
            p++;
        }
    }
    if (k < 2) {
        *why = k == 0 ? "no placeholder; the template takes exactly two: the prompt column, then the completion column"
                      : "only one placeholder; the template takes exactly two: the prompt column, then the completion column";
        goto fail;
    }
    return 0;
fail:
    for (int i = 0; i < 3; i++) free(lit[i]), lit[i] = NULL;
    for (int i = 0; i < 2; i++) free(col[i]), col[i] = NULL;
    return -1;
}

/* ---- diagnostics ------------------------------------------------------------------------ */
typedef struct {
    nmc_diags_t *d;
    const char *file;
    uint32_t line;
} where_t;

static nmc_diag_t *row_err(const where_t *w, const nmc_json_t *at, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static nmc_diag_t *row_err(const where_t *w, const nmc_json_t *at, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nmc_diag_add(w->d, NMC_SEV_ERROR, code, w->file, w->line, at ? at->col : 1, at ? at->offset : 0,
                        "%s", msg);
}

static const char *kind(const nmc_json_t *v) { return nmc_json_kind_name(v->kind); }

/* Re-file the parser's records (positions in the one-line buffer) at file:line. */
static void refile(const where_t *w, const nmc_diags_t *tmp)
{
    for (size_t i = 0; i < tmp->n; i++) {
        const nmc_diag_t *s = &tmp->items[i];
        nmc_diag_t *r = nmc_diag_add(w->d, s->sev, s->code, w->file, w->line, s->col ? s->col : 1,
                                     s->offset, "%s", s->message);
        if (s->expected) nmc_diag_set_expected(r, "%s", s->expected);
        if (s->got) nmc_diag_set_got(r, "%s", s->got);
        if (s->help) nmc_diag_set_help(r, "%s", s->help);
    }
}

/* ---- tokens -------------------------------------------------------------------------------- */
static int encode(ds_rows_t *r, const char *s, size_t n, bool special, nmc_tok_ids_t *out, const where_t *w)
{
    nmc_diags_t tmp;
    nmc_diags_init(&tmp);
    int rc = nmc_tok_encode(r->enc, s, n, special, out, &tmp);
    if (rc != 0) {
        nmc_diag_t *e = row_err(w, NULL, "data-invalid-utf8", "row text is not valid UTF-8: %s",
                                tmp.n ? tmp.items[0].message : "encoding failed");
        nmc_diag_set_help(e, "write the file as UTF-8");
    }
    nmc_diags_free(&tmp);
    return rc;
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

static bool ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return k <= n && memcmp(s + n - k, suf, k) == 0;
}

/* TRL prompt/completion: completion gets the EOS text; the mask starts at the common prefix of
 * encode(prompt) and encode(prompt + completion). */
static int tokenize_pc(ds_rows_t *r, const char *p, size_t pn, const char *c, size_t cn, ds_toks_t *out,
                       const where_t *w)
{
    const char *eos = r->m->eos_text;
    bool add_eos = eos && !ends_with(c, cn, eos);
    size_t en = add_eos ? strlen(eos) : 0;
    buf_reserve(r, pn + cn + en + 1);
    memcpy(r->buf, p, pn);
    memcpy(r->buf + pn, c, cn);
    if (en) memcpy(r->buf + pn + cn, eos, en);
    if (encode(r, p, pn, true, &r->a, w) || encode(r, r->buf, pn + cn + en, true, &r->b, w)) return -1;
    size_t L = common_prefix(r->a.ids, r->a.n, r->b.ids, r->b.n);
    ds_toks_reserve(out, r->b.n);
    memcpy(out->ids, r->b.ids, r->b.n * sizeof(int32_t));
    for (size_t i = 0; i < r->b.n; i++) out->mask[i] = i >= L;
    out->n = r->b.n;
    return 0;
}

/* TRL text: add_eos, then encode (special tokens unless the text starts with the BOS text). */
static int tokenize_text(ds_rows_t *r, const char *s, size_t n, ds_toks_t *out, const where_t *w)
{
    const char *eos = r->m->eos_text, *bos = r->m->bos_text;
    size_t en = eos && !ends_with(s, n, eos) ? strlen(eos) : 0;
    buf_reserve(r, n + en + 1);
    memcpy(r->buf, s, n);
    if (en) memcpy(r->buf + n, eos, en);
    bool special = !(bos && n >= strlen(bos) && memcmp(s, bos, strlen(bos)) == 0);
    if (encode(r, r->buf, n + en, special, &r->b, w)) return -1;
    ds_toks_reserve(out, r->b.n);
    memcpy(out->ids, r->b.ids, r->b.n * sizeof(int32_t));
    memset(out->mask, 1, r->b.n);
    out->n = r->b.n;
    return 0;
}

/* Decode one UTF-8 code point at s (valid UTF-8 assumed: token strings come from JSON). */
static uint32_t utf8_next(const unsigned char **s)
{
    const unsigned char *p = *s;
    uint32_t c = *p++;
    int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (extra) c &= (0x3Fu >> extra);
    while (extra-- > 0 && (*p & 0xC0) == 0x80) c = (c << 6) | (*p++ & 0x3F);
    *s = p;
    return c;
}

/* The bytes a token stands for in the text, into r->buf. Returns the length, or -1. */
static long surface(ds_rows_t *r, int32_t id)
{
    size_t tl;
    const char *t = nmc_tokenizer_id_to_token(r->m->tok, id, &tl);
    if (!t) return -1;
    buf_reserve(r, tl + 1);
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)t, *end = p + tl;
    if (!r->bytelevel && tl == 6 && t[0] == '<' && t[1] == '0' && t[2] == 'x' && t[5] == '>') {
        r->buf[0] = (char)strtol(t + 3, NULL, 16); /* byte_fallback <0xHH> */
        return 1;
    }
    while (p < end) {
        const unsigned char *q = p;
        uint32_t c = utf8_next(&p);
        if (r->bytelevel) {
            if (c >= 324 || r->inv[c] < 0) return -1;
            r->buf[n++] = (char)r->inv[c];
        } else if (c == 0x2581) {
            r->buf[n++] = ' ';
        } else {
            memcpy(r->buf + n, q, (size_t)(p - q));
            n += (size_t)(p - q);
        }
    }
    return (long)n;
}

/* Byte offsets [s_i, e_i) of every token in text. Returns 0, or -1 when the token strings do
 * not spell the text. A special token absent from the text is zero-width. */
static int offsets(ds_rows_t *r, const char *text, size_t len, const int32_t *ids, size_t n)
{
    if (n > r->off_cap) {
        free(r->off_s), free(r->off_e);
        r->off_s = malloc(n * sizeof(size_t));
        r->off_e = malloc(n * sizeof(size_t));
        if (!r->off_s || !r->off_e) abort();
        r->off_cap = n;
    }
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        long L = surface(r, ids[i]);
        if (L < 0) return -1;
        size_t l = (size_t)L;
        r->off_s[i] = c;
        if (l <= len - c && memcmp(text + c, r->buf, l) == 0) {
            c += l;
        } else if (l > 0 && r->buf[0] == ' ' && l - 1 <= len - c && memcmp(text + c, r->buf + 1, l - 1) == 0) {
            c += l - 1; /* the space a metaspace pre-tokenizer prepends */
        } else if (!nmc_tokenizer_is_special(r->m->tok, ids[i])) {
            return -1;
        }
        r->off_e[i] = c;
    }
    return c == len ? 0 : -1;
}

/* Mask by prefix encoding: tokens from the first that encode(text[:start]) does not account
 * for, through the token that holds byte end-1. */
static int mask_by_prefix(ds_rows_t *r, const char *text, const nmc_chat_span_t *sp, size_t ns, ds_toks_t *out,
                          const where_t *w)
{
    for (size_t k = 0; k < ns; k++) {
        if (sp[k].end <= sp[k].start) continue;
        if (encode(r, text, sp[k].start, false, &r->a, w)) return -1;
        size_t s = common_prefix(r->a.ids, r->a.n, out->ids, out->n);
        if (encode(r, text, sp[k].end, false, &r->a, w)) return -1;
        size_t e = common_prefix(r->a.ids, r->a.n, out->ids, out->n);
        if (e < r->a.n && e < out->n) e++; /* a token straddles the end: it holds byte end-1 */
        for (size_t i = s; i < e; i++) out->mask[i] = 1;
    }
    return 0;
}

static int tokenize_chat_spans(ds_rows_t *r, const char *text, size_t len, const nmc_chat_span_t *sp, size_t ns,
                               ds_toks_t *out, bool *approx, const where_t *w)
{
    if (encode(r, text, len, false, &r->b, w)) return -1;
    ds_toks_reserve(out, r->b.n);
    memcpy(out->ids, r->b.ids, r->b.n * sizeof(int32_t));
    memset(out->mask, 0, r->b.n);
    out->n = r->b.n;
    if (offsets(r, text, len, out->ids, out->n) != 0) {
        *approx = true;
        return mask_by_prefix(r, text, sp, ns, out, w);
    }
    for (size_t i = 0; i < out->n; i++) {
        if (r->off_e[i] == r->off_s[i]) continue;
        for (size_t k = 0; k < ns; k++)
            if (r->off_s[i] < sp[k].end && r->off_e[i] > sp[k].start) out->mask[i] = 1;
    }
    return 0;
}

/* ---- messages ------------------------------------------------------------------------------ */
static const char *const ROLES[] = {"system", "user", "assistant", "tool", NULL};

static nmc_json_t *json_str(nmc_arena_t *a, const char *s, size_t n, const nmc_json_t *pos)
{
    nmc_json_t *v = nmc_arena_alloc(a, sizeof *v);
    *v = *pos;
    v->kind = NMC_JSON_STRING;
    v->u.str.s = nmc_arena_strndup(a, s, n);
    v->u.str.len = n;
    return v;
}

/* content as a list of {"type": "text", "text": ...} parts: joined with " " as Automodel's
 * ChatDataset does. Returns the string node, or NULL after a diagnostic. */
static nmc_json_t *join_parts(nmc_arena_t *a, const nmc_json_t *c, size_t mi, const where_t *w)
{
    char *acc = NULL;
    size_t n = 0;
    for (size_t j = 0; j < c->u.arr.n; j++) {
        const nmc_json_t *part = c->u.arr.items[j], *ty = nmc_json_get(part, "type"),
                         *tx = nmc_json_get(part, "text");
        if (part->kind != NMC_JSON_OBJECT || !tx || tx->kind != NMC_JSON_STRING ||
            (ty && (ty->kind != NMC_JSON_STRING || strcmp(ty->u.str.s, "text") != 0))) {
            nmc_diag_t *e = row_err(w, part, "data-wrong-type",
                                    "messages[%zu].content[%zu] is not a text part", mi, j);
            nmc_diag_set_expected(e, "{\"type\": \"text\", \"text\": string}");
            nmc_diag_set_help(e, "only text content is supported");
            free(acc);
            return NULL;
        }
        char *x = realloc(acc, n + (j ? 1 : 0) + tx->u.str.len + 1);
        if (!x) abort();
        acc = x;
        if (j) acc[n++] = ' ';
        memcpy(acc + n, tx->u.str.s, tx->u.str.len);
        n += tx->u.str.len;
    }
    nmc_json_t *v = json_str(a, acc ? acc : "", n, c);
    free(acc);
    return v;
}

/* Check one message; returns the (possibly normalized) message or NULL after a diagnostic. */
static const nmc_json_t *check_message(nmc_arena_t *a, const nmc_json_t *m, size_t i, const where_t *w)
{
    if (m->kind != NMC_JSON_OBJECT) {
        row_err(w, m, "data-wrong-type", "messages[%zu] must be an object, got %s", i, kind(m));
        return NULL;
    }
    const nmc_json_t *role = nmc_json_get(m, "role"), *content = nmc_json_get(m, "content"),
                     *calls = nmc_json_get(m, "tool_calls");
    if (!role) {
        nmc_diag_t *e = row_err(w, m, "data-missing-field", "messages[%zu] has no `role`", i);
        nmc_diag_set_help(e, "give every message a role: system, user, assistant or tool");
        return NULL;
    }
    if (role->kind != NMC_JSON_STRING) {
        row_err(w, role, "data-wrong-type", "messages[%zu].role must be a string, got %s", i, kind(role));
        return NULL;
    }
    bool known = false;
    for (int k = 0; ROLES[k]; k++) known |= strcmp(role->u.str.s, ROLES[k]) == 0;
    if (!known) {
        nmc_diag_t *e = row_err(w, role, "data-unknown-role", "messages[%zu].role is \"%s\"", i, role->u.str.s);
        nmc_diag_set_expected(e, "system, user, assistant or tool");
        return NULL;
    }
    if (calls && calls->kind != NMC_JSON_ARRAY && calls->kind != NMC_JSON_NULL) {
        row_err(w, calls, "data-wrong-type", "messages[%zu].tool_calls must be an array, got %s", i, kind(calls));
        return NULL;
    }
    if (!content && !(calls && calls->kind == NMC_JSON_ARRAY)) {
        nmc_diag_t *e = row_err(w, m, "data-missing-field", "messages[%zu] has no `content`", i);
        nmc_diag_set_help(e, "only an assistant message with `tool_calls` may leave out its content");
        return NULL;
    }
    if (!content || content->kind == NMC_JSON_STRING || content->kind == NMC_JSON_NULL) return m;
    if (content->kind != NMC_JSON_ARRAY) {
        row_err(w, content, "data-wrong-type",
                "messages[%zu].content must be a string, null or a list of text parts, got %s", i, kind(content));
        return NULL;
    }
    nmc_json_t *joined = join_parts(a, content, i, w);
    if (!joined) return NULL;
    nmc_json_t *copy = nmc_arena_alloc(a, sizeof *copy);
    *copy = *m;
    nmc_json_member_t *mem = nmc_arena_alloc(a, m->u.obj.n * sizeof *mem);
    memcpy(mem, m->u.obj.members, m->u.obj.n * sizeof *mem);
    for (size_t k = 0; k < m->u.obj.n; k++)
        if (strcmp(mem[k].key, "content") == 0) mem[k].value = joined;
    copy->u.obj.members = mem;
    return copy;
}

/* Check `messages` (and `tools`); returns the messages array to render, or NULL. */
static const nmc_json_t *check_messages(nmc_arena_t *a, const nmc_json_t *row, const nmc_json_t **tools,
                                        const where_t *w)
{
    const nmc_json_t *msgs = nmc_json_get(row, "messages");
    if (msgs->kind != NMC_JSON_ARRAY) {
        row_err(w, msgs, "data-wrong-type", "`messages` must be an array of message objects, got %s", kind(msgs));
        return NULL;
    }
    if (msgs->u.arr.n == 0) {
        nmc_diag_t *e = row_err(w, msgs, "data-empty-messages", "`messages` is empty");
        nmc_diag_set_help(e, "a chat row needs at least one message, and the last should be the assistant's");
        return NULL;
    }
    *tools = nmc_json_get(row, "tools");
    if (*tools && (*tools)->kind == NMC_JSON_NULL) *tools = NULL;
    if (*tools && (*tools)->kind != NMC_JSON_ARRAY) {
        row_err(w, *tools, "data-wrong-type", "`tools` must be an array of tool definitions, got %s", kind(*tools));
        return NULL;
    }
    nmc_json_t *out = nmc_arena_alloc(a, sizeof *out);
    *out = *msgs;
    out->u.arr.items = nmc_arena_alloc(a, msgs->u.arr.n * sizeof(nmc_json_t *));
    bool ok = true;
    for (size_t i = 0; i < msgs->u.arr.n; i++) {
        const nmc_json_t *m = check_message(a, msgs->u.arr.items[i], i, w);
        if (!m) ok = false;
        out->u.arr.items[i] = (nmc_json_t *)m;
    }
    return ok ? out : NULL;
}

static int render(ds_rows_t *r, nmc_arena_t *a, const nmc_json_t *row, bool spans, nmc_chat_result_t *res,
                  const where_t *w)
{
    const nmc_json_t *tools = NULL;
    const nmc_json_t *msgs = check_messages(a, row, &tools, w);
    if (!msgs) return -1;
    if (!r->m->tmpl) {
        nmc_diag_t *e = row_err(w, nmc_json_get(row, "messages"), "data-chat-template",
                                "row has `messages` but the model has no chat template");
        nmc_diag_set_help(e, "use a model whose tokenizer_config.json has a chat_template, or give rows as "
                             "`prompt` + `completion`");
        return -1;
    }
    nmc_chat_input_t in = {.messages = msgs, .tools = tools, .want_spans = spans};
    nmc_diags_t tmp;
    nmc_diags_init(&tmp);
    int rc = nmc_chat_render(a, r->m->tmpl, &in, res, &tmp);
    if (rc != 0) {
        nmc_diag_t *e = row_err(w, nmc_json_get(row, "messages"), "data-chat-template",
                                "the chat template failed on this row: %s", tmp.n ? tmp.items[0].message : "error");
        nmc_diag_set_help(e, "check the order of roles and the fields the model's template expects");
    }
    nmc_diags_free(&tmp);
    return rc;
}

/* ---- row shapes ------------------------------------------------------------------------------ */
static const nmc_json_t *need_string(const nmc_json_t *row, const char *key, const char *what, const where_t *w)
{
    const nmc_json_t *v = nmc_json_get(row, key);
    if (!v) {
        nmc_diag_t *e = row_err(w, row, "data-missing-field", "row has no `%s`%s", key, what);
        (void)e;
        return NULL;
    }
    if (v->kind != NMC_JSON_STRING) {
        row_err(w, v, "data-wrong-type", "`%s` must be a string, got %s", key, kind(v));
        return NULL;
    }
    return v;
}

static int row_auto(ds_rows_t *r, nmc_arena_t *a, const nmc_json_t *row, ds_toks_t *out, bool *approx,
                    const where_t *w)
{
    if (nmc_json_get(row, "messages")) {
        nmc_chat_result_t res;
        if (render(r, a, row, true, &res, w)) return -1;
        return tokenize_chat_spans(r, res.text, res.len, res.spans, res.n_spans, out, approx, w);
    }
    bool hp = nmc_json_get(row, "prompt") != NULL, hc = nmc_json_get(row, "completion") != NULL;
    if (!hp && !hc) {
        nmc_diag_t *e = row_err(w, row, "data-unknown-format", "row has neither `messages` nor `prompt` and `completion`");
        nmc_diag_set_help(e, "chat rows need a `messages` list, completion rows `prompt` and `completion` strings; "
                             "for other columns set dataset.prompt_template, e.g. \"{question} {answer}\"");
        return -1;
    }
    const nmc_json_t *p = need_string(row, "prompt", " (the row has `completion`)", w);
    const nmc_json_t *c = need_string(row, "completion", " (the row has `prompt`)", w);
    if (!p || !c) return -1;
    return tokenize_pc(r, p->u.str.s, p->u.str.len, c->u.str.s, c->u.str.len, out, w);
}

static const nmc_json_t *column(const nmc_json_t *row, const char *col, const where_t *w)
{
    const nmc_json_t *v = nmc_json_get(row, col);
    if (!v) {
        nmc_diag_t *e = row_err(w, row, "data-template-column-missing",
                                "row has no column `%s` (named in dataset.prompt_template)", col);
        nmc_diag_set_help(e, "every row needs both columns of the template");
        return NULL;
    }
    if (v->kind != NMC_JSON_STRING) {
        row_err(w, v, "data-wrong-type", "column `%s` must be a string, got %s", col, kind(v));
        return NULL;
    }
    return v;
}

static int row_template(ds_rows_t *r, const nmc_json_t *row, ds_toks_t *out, const where_t *w)
{
    const nmc_json_t *v0 = column(row, r->col[0], w), *v1 = column(row, r->col[1], w);
    if (!v0 || !v1) return -1;
    size_t l0 = strlen(r->lit[0]), l1 = strlen(r->lit[1]), l2 = strlen(r->lit[2]);
    size_t pn = l0 + v0->u.str.len + l1, cn = v1->u.str.len + l2;
    char *p = malloc(pn + 1), *c = malloc(cn + 1);
    if (!p || !c) abort();
    memcpy(p, r->lit[0], l0);
    memcpy(p + l0, v0->u.str.s, v0->u.str.len);
    memcpy(p + l0 + v0->u.str.len, r->lit[1], l1);
    memcpy(c, v1->u.str.s, v1->u.str.len);
    memcpy(c + v1->u.str.len, r->lit[2], l2);
    int rc = tokenize_pc(r, p, pn, c, cn, out, w);
    free(p);
    free(c);
    return rc;
}

static int row_text(ds_rows_t *r, const nmc_json_t *row, ds_toks_t *out, const where_t *w)
{
    const char *f = r->o->text_field ? r->o->text_field : "text";
    const nmc_json_t *v = nmc_json_get(row, f);
    if (!v) {
        nmc_diag_t *e = row_err(w, row, "data-missing-field", "row has no `%s` (dataset.text_field)", f);
        if (nmc_json_get(row, "messages"))
            nmc_diag_set_help(e, "this row has `messages`: set dataset.apply_chat_template to true");
        else
            nmc_diag_set_help(e, "set dataset.text_field to the column that holds the text");
        return -1;
    }
    if (v->kind != NMC_JSON_STRING) {
        row_err(w, v, "data-wrong-type", "`%s` must be a string, got %s", f, kind(v));
        return -1;
    }
    return tokenize_text(r, v->u.str.s, v->u.str.len, out, w);
}

static int row_chat_text(ds_rows_t *r, nmc_arena_t *a, const nmc_json_t *row, ds_toks_t *out, const where_t *w)
{
    if (!nmc_json_get(row, "messages")) {
        nmc_diag_t *e = row_err(w, row, "data-missing-field", "row has no `messages` (dataset.apply_chat_template is true)");
        nmc_diag_set_help(e, "give chat rows a `messages` list, or set apply_chat_template to false for text rows");
        return -1;
    }
    nmc_chat_result_t res;
    if (render(r, a, row, false, &res, w)) return -1;
    return tokenize_text(r, res.text, res.len, out, w);
}

int ds_rows_process(ds_rows_t *r, const char *line, size_t len, const char *file, uint32_t lineno, ds_toks_t *out,
                    bool *approx, nmc_diags_t *d)
{
    where_t w = {d, file, lineno};
    *approx = false;
    out->n = 0;
    nmc_arena_t *a = nmc_arena_new();
    nmc_diags_t tmp;
    nmc_diags_init(&tmp);
    nmc_json_limits_t lim = {.max_bytes = NMC_DATASET_MAX_LINE + 1, .max_depth = NMC_JSON_DEFAULT_MAX_DEPTH};
    nmc_json_t *row = NULL;
    int rc = -1;
    if (nmc_json_parse(a, line, len, file, &lim, &row, &tmp) != 0) {
        refile(&w, &tmp);
    } else if (row->kind != NMC_JSON_OBJECT) {
        nmc_diag_t *e = row_err(&w, row, "data-wrong-type", "row must be a JSON object, got %s", kind(row));
        nmc_diag_set_help(e, "each line of a JSONL file holds one object, e.g. {\"prompt\": ..., \"completion\": ...}");
    } else {
        switch (r->o->format) {
        case NMC_DS_FMT_AUTO: rc = row_auto(r, a, row, out, approx, &w); break;
        case NMC_DS_FMT_TEMPLATE: rc = row_template(r, row, out, &w); break;
        case NMC_DS_FMT_TEXT: rc = row_text(r, row, out, &w); break;
        case NMC_DS_FMT_CHAT_AS_TEXT: rc = row_chat_text(r, a, row, out, &w); break;
        }
    }
    nmc_diags_free(&tmp);
    nmc_arena_free(a);
    return rc;
}
