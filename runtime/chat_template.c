/* chat_template.c — conversations through a model's chat template, as transformers'
 * apply_chat_template(tokenize=False) renders them, plus per-assistant-message byte spans.
 *
 * What belongs here: template selection from tokenizer_config.json, the variables and
 * functions transformers passes, message normalization, strftime_now, and the span
 * methods documented in chat_template.h. The Jinja2 engine itself is runtime/jinja*.c.
 */
#include "chat_template.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *name; /* NULL for the string form */
    nmc_jinja_template_t *tpl;
} entry_t;

struct nmc_chat_template {
    entry_t *entries;
    size_t n;
    nmc_jdict_t tokens; /* bos_token, eos_token, ... */
};

static const char *const SPECIAL_TOKENS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                             "pad_token", "cls_token", "mask_token", NULL};

/* ---- loading ---------------------------------------------------------------------- */
static int parse_entry(nmc_arena_t *a, entry_t *e, const char *src, size_t len,
                       const char *tname, nmc_diags_t *d) {
    return nmc_jinja_parse(a, src, len, tname, &e->tpl, d);
}

int nmc_chat_template_from_string(nmc_arena_t *a, const char *src, size_t len, const char *name,
                                  nmc_chat_template_t **out, nmc_diags_t *diags) {
    nmc_chat_template_t *t = nmc_arena_alloc(a, sizeof *t);
    t->entries = nmc_arena_alloc(a, sizeof(entry_t));
    t->n = 1;
    *out = NULL;
    if (parse_entry(a, &t->entries[0], src, len, name ? name : "chat_template", diags)) return -1;
    *out = t;
    return 0;
}

void nmc_chat_template_set_token(nmc_arena_t *a, nmc_chat_template_t *t, const char *name,
                                 const char *value) {
    nmc_jdict_setc(a, &t->tokens, name, nmc_jv_cstr(a, value));
}

static void load_tokens(nmc_arena_t *a, nmc_chat_template_t *t, const nmc_json_t *config) {
    for (int i = 0; SPECIAL_TOKENS[i]; i++) {
        const nmc_json_t *v = nmc_json_get(config, SPECIAL_TOKENS[i]);
        if (v && v->kind == NMC_JSON_OBJECT) v = nmc_json_get(v, "content"); /* AddedToken form */
        if (v && v->kind == NMC_JSON_STRING)
            nmc_jdict_setc(a, &t->tokens, SPECIAL_TOKENS[i], nmc_jv_str(a, v->u.str.s, v->u.str.len));
    }
}

static int bad_config(nmc_diags_t *d, const char *file, const nmc_json_t *at, const char *code,
                      const char *msg, const char *help) {
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, code, file, at ? at->line : 0, at ? at->col : 0,
                                 at ? at->offset : 0, "%s", msg);
    nmc_diag_set_help(r, "%s", help);
    return -1;
}

static int load_list(nmc_arena_t *a, nmc_chat_template_t *t, const nmc_json_t *list,
                     const char *file, nmc_diags_t *d) {
    t->n = list->u.arr.n;
    t->entries = nmc_arena_alloc(a, (t->n + 1) * sizeof(entry_t));
    for (size_t i = 0; i < t->n; i++) {
        const nmc_json_t *it = list->u.arr.items[i];
        const nmc_json_t *name = nmc_json_get(it, "name"), *src = nmc_json_get(it, "template");
        if (!name || name->kind != NMC_JSON_STRING || !src || src->kind != NMC_JSON_STRING)
            return bad_config(d, file, it, "chat-template-type",
                              "chat_template list items must be {\"name\": string, \"template\": string}",
                              "use the tokenizer_config.json the model ships with");
        t->entries[i].name = name->u.str.s;
        char *tname = nmc_arena_printf(a, "%s:chat_template[%s]", file ? file : "tokenizer_config.json", name->u.str.s);
        if (parse_entry(a, &t->entries[i], src->u.str.s, src->u.str.len, tname, d)) return -1;
    }
    return 0;
}

int nmc_chat_template_from_config(nmc_arena_t *a, const nmc_json_t *config, const char *file,
                                  nmc_chat_template_t **out, nmc_diags_t *diags) {
    *out = NULL;
    const nmc_json_t *ct = nmc_json_get(config, "chat_template");
    if (!ct || ct->kind == NMC_JSON_NULL)
        return bad_config(diags, file, config, "chat-template-missing",
                          "tokenizer_config.json has no chat_template",
                          "base models ship without one; use the instruct model's tokenizer, or "
                          "put the template (chat_template.jinja) into tokenizer_config.json");
    nmc_chat_template_t *t = nmc_arena_alloc(a, sizeof *t);
    load_tokens(a, t, config);
    if (ct->kind == NMC_JSON_STRING) {
        t->entries = nmc_arena_alloc(a, sizeof(entry_t));
        t->n = 1;
        char *tname = nmc_arena_printf(a, "%s:chat_template", file ? file : "tokenizer_config.json");
        if (parse_entry(a, &t->entries[0], ct->u.str.s, ct->u.str.len, tname, diags)) return -1;
    } else if (ct->kind == NMC_JSON_ARRAY) {
        if (load_list(a, t, ct, file, diags)) return -1;
    } else
        return bad_config(diags, file, ct, "chat-template-type",
                          "chat_template must be a string or a list of {name, template}",
                          "use the tokenizer_config.json the model ships with");
    *out = t;
    return 0;
}

static const nmc_jinja_template_t *pick(const nmc_chat_template_t *t, bool has_tools,
                                        nmc_diags_t *d) {
    if (t->n == 1 && !t->entries[0].name) return t->entries[0].tpl;
    for (size_t i = 0; has_tools && i < t->n; i++)
        if (strcmp(t->entries[i].name, "tool_use") == 0) return t->entries[i].tpl;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->entries[i].name, "default") == 0) return t->entries[i].tpl;
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "chat-template-missing", NULL, 0, 0, 0,
                                 "the model has several chat templates and none is named \"default\"");
    nmc_diag_set_help(r, "transformers refuses this too; name the template to use in the config");
    return NULL;
}

/* ---- strftime_now ---------------------------------------------------------------------- */
int nmc_chat_strftime(char *buf, size_t cap, const char *fmt, size_t fmt_len, int64_t unix_time,
                      bool local, char *bad) {
    time_t tt = (time_t)unix_time;
    struct tm tm;
    if (local) localtime_r(&tt, &tm);
    else gmtime_r(&tt, &tm);
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < fmt_len; i++) {
        char one[3] = {'%', 0, 0}, piece[64];
        size_t k;
        if (fmt[i] != '%') {
            piece[0] = fmt[i];
            k = 1;
        } else {
            one[1] = i + 1 < fmt_len ? fmt[++i] : 0;
            if (!one[1] || !strchr("dmYybBaAHMSIpje%", one[1])) {
                if (bad) *bad = one[1];
                return -1;
            }
            k = strftime(piece, sizeof piece, one, &tm);
        }
        if (n + k + 1 > cap) return -1;
        memcpy(buf + n, piece, k);
        n += k;
        buf[n] = 0;
    }
    return 0;
}

static void fn_strftime_now(nmc_jinja_render_t *r, void *ud, const nmc_jv_t *args, size_t nargs,
                            const nmc_jv_t *kwn, const nmc_jv_t *kwv, size_t nkw, nmc_jv_t *out) {
    const nmc_chat_input_t *in = ud;
    (void)kwn, (void)kwv;
    if (nargs != 1 || nkw || args[0].kind != NMC_JV_STRING)
        nmc_jinja_fail(r, "jinja-type", "strftime_now() takes one string argument (the format)");
    char buf[512], bad = 0;
    int64_t now = in->fixed_time ? in->unix_time : (int64_t)time(NULL);
    if (nmc_chat_strftime(buf, sizeof buf, args[0].u.s.p, args[0].u.s.n, now, !in->fixed_time, &bad))
        nmc_jinja_fail(r, "jinja-unsupported", "unsupported strftime_now format directive '%%%c'", bad);
    *out = nmc_jv_cstr(nmc_jinja_arena(r), buf);
}

/* ---- inputs ------------------------------------------------------------------------- */
static int input_error(nmc_diags_t *d, const nmc_json_t *at, const char *msg, const char *help) {
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "chat-input", NULL, at ? at->line : 0,
                                 at ? at->col : 0, at ? at->offset : 0, "%s", msg);
    nmc_diag_set_help(r, "%s", help);
    return -1;
}

/* One message as transformers hands it to the template (null keys dropped, reasoning aliased). */
static nmc_jv_t convert_message(nmc_arena_t *a, const nmc_json_t *m) {
    nmc_jv_t d = nmc_jv_dict(a);
    static const char *const reasoning_keys[] = {"reasoning_content", "thinking", "reasoning"};
    const nmc_json_t *reasoning = NULL;
    for (int k = 0; k < 3 && !reasoning; k++) {
        const nmc_json_t *v = nmc_json_get(m, reasoning_keys[k]);
        if (v && v->kind != NMC_JSON_NULL) reasoning = v;
    }
    if (reasoning) nmc_jdict_setc(a, d.u.dict, "thinking", nmc_jv_from_json(a, reasoning));
    for (size_t i = 0; i < m->u.obj.n; i++) {
        const nmc_json_member_t *mem = &m->u.obj.members[i];
        if (mem->value->kind == NMC_JSON_NULL) continue;
        nmc_jv_t v = nmc_jv_from_json(a, mem->value);
        if (reasoning && ((mem->key_len == 8 && !memcmp(mem->key, "thinking", 8)) ||
                          (mem->key_len == 17 && !memcmp(mem->key, "reasoning_content", 17))))
            v = nmc_jv_from_json(a, reasoning);
        nmc_jdict_set(a, d.u.dict, nmc_jv_str(a, mem->key, mem->key_len), v);
    }
    if (reasoning) nmc_jdict_setc(a, d.u.dict, "reasoning_content", nmc_jv_from_json(a, reasoning));
    return d;
}

static int check_input(const nmc_chat_input_t *in, nmc_diags_t *d) {
    const nmc_json_t *m = in->messages;
    if (!m || m->kind != NMC_JSON_ARRAY || m->u.arr.n == 0)
        return input_error(d, m, "messages must be a non-empty array of message objects",
                           "give at least one {\"role\": ..., \"content\": ...} object");
    for (size_t i = 0; i < m->u.arr.n; i++)
        if (m->u.arr.items[i]->kind != NMC_JSON_OBJECT)
            return input_error(d, m->u.arr.items[i], "each message must be an object",
                               "write messages as {\"role\": ..., \"content\": ...}");
    if (in->tools && in->tools->kind != NMC_JSON_ARRAY && in->tools->kind != NMC_JSON_NULL)
        return input_error(d, in->tools, "tools must be an array of tool schemas",
                           "give tools as [{\"type\": \"function\", \"function\": {...}}]");
    if (in->kwargs && in->kwargs->kind != NMC_JSON_OBJECT)
        return input_error(d, in->kwargs, "template kwargs must be an object",
                           "give extra variables as {\"enable_thinking\": false, ...}");
    static const char *const reserved[] = {"messages", "tools", "documents", "add_generation_prompt", NULL};
    for (int i = 0; in->kwargs && reserved[i]; i++)
        if (nmc_json_get(in->kwargs, reserved[i]))
            return input_error(d, nmc_json_get(in->kwargs, reserved[i]),
                               "template kwargs may not redefine messages, tools, documents or add_generation_prompt",
                               "pass these through their own fields");
    return 0;
}

/* The variables for one render of messages[0..n). */
static nmc_jdict_t *make_vars(nmc_arena_t *a, const nmc_chat_template_t *t, const nmc_chat_input_t *in,
                              const nmc_jv_t *msgs, size_t n, bool agp) {
    nmc_jv_t vars = nmc_jv_dict(a), list = nmc_jv_list(a);
    for (size_t i = 0; i < n; i++) nmc_jlist_push(a, list.u.list, msgs[i]);
    nmc_jdict_setc(a, vars.u.dict, "messages", list);
    nmc_jdict_setc(a, vars.u.dict, "tools",
                   in->tools && in->tools->kind == NMC_JSON_ARRAY ? nmc_jv_from_json(a, in->tools) : nmc_jv_none());
    nmc_jdict_setc(a, vars.u.dict, "documents", nmc_jv_none());
    nmc_jdict_setc(a, vars.u.dict, "add_generation_prompt", nmc_jv_bool(agp));
    for (size_t i = 0; i < t->tokens.n; i++)
        nmc_jdict_set(a, vars.u.dict, t->tokens.keys[i], t->tokens.vals[i]);
    for (size_t i = 0; in->kwargs && i < in->kwargs->u.obj.n; i++) {
        const nmc_json_member_t *m = &in->kwargs->u.obj.members[i];
        nmc_jdict_set(a, vars.u.dict, nmc_jv_str(a, m->key, m->key_len), nmc_jv_from_json(a, m->value));
    }
    nmc_jdict_setc(a, vars.u.dict, "strftime_now", nmc_jv_func(a, "strftime_now", fn_strftime_now, (void *)in));
    return vars.u.dict;
}

/* ---- spans ----------------------------------------------------------------------------- */
typedef struct {
    const nmc_jv_t *msgs;
    size_t n;
    size_t *begin, *end; /* per message: union of non-empty iterations; begin == SIZE_MAX: none */
    size_t *open;        /* output position when the current iteration began */
} loop_track_t;

static void on_loop_item(void *ud, const nmc_jv_t *item, size_t pos, bool begin) {
    loop_track_t *lt = ud;
    if (item->kind != NMC_JV_DICT) return;
    for (size_t i = 0; i < lt->n; i++) {
        if (lt->msgs[i].u.dict != item->u.dict) continue;
        if (begin) lt->open[i] = pos;
        else if (pos > lt->open[i]) {
            if (lt->begin[i] == SIZE_MAX || lt->open[i] < lt->begin[i]) lt->begin[i] = lt->open[i];
            if (pos > lt->end[i]) lt->end[i] = pos;
        }
        return;
    }
}

/* Render quietly (errors are the caller's to judge): NULL on failure. */
static char *render_quiet(nmc_arena_t *a, const nmc_chat_template_t *t, const nmc_jinja_template_t *tpl,
                          const nmc_chat_input_t *in, const nmc_jv_t *msgs, size_t n, bool agp, size_t *len) {
    nmc_diags_t d;
    nmc_diags_init(&d);
    char *out = NULL;
    int rc = nmc_jinja_render(a, tpl, make_vars(a, t, in, msgs, n, agp), NULL, &out, len, &d);
    nmc_diags_free(&d);
    return rc ? NULL : out;
}

static bool has_prefix(const char *s, size_t n, const char *p, size_t pn) {
    return pn <= n && memcmp(s, p, pn) == 0;
}

static int span_for(nmc_arena_t *a, const nmc_chat_template_t *t, const nmc_jinja_template_t *tpl,
                    const nmc_chat_input_t *in, const nmc_jv_t *msgs, size_t i,
                    const nmc_chat_result_t *full, const loop_track_t *lt, nmc_chat_span_t *sp) {
    size_t pl = 0, ql = 0, bl = 0;
    char *p = render_quiet(a, t, tpl, in, msgs, i, true, &pl);
    char *q = render_quiet(a, t, tpl, in, msgs, i + 1, false, &ql);
    sp->message = i;
    if (p && q && has_prefix(q, ql, p, pl) && has_prefix(full->text, full->len, q, ql)) {
        sp->start = pl;
        sp->end = ql;
        sp->method = NMC_CHAT_SPAN_PREFIX;
        return 0;
    }
    if (!p || lt->begin[i] == SIZE_MAX) return -1;
    char *base = render_quiet(a, t, tpl, in, msgs, i, false, &bl);
    if (!base || !has_prefix(p, pl, base, bl)) return -1;
    const char *g = p + bl;
    size_t gl = pl - bl, b = lt->begin[i], e = lt->end[i];
    if (!has_prefix(full->text + b, e - b, g, gl)) return -1;
    sp->start = b + gl;
    sp->end = e;
    sp->method = NMC_CHAT_SPAN_LOOP;
    return 0;
}

static bool is_assistant(const nmc_jv_t *m) {
    const nmc_jv_t *role = nmc_jdict_get(m->u.dict, "role", 4);
    return role && role->kind == NMC_JV_STRING && role->u.s.n == 9 && !memcmp(role->u.s.p, "assistant", 9);
}

static int compute_spans(nmc_arena_t *a, const nmc_chat_template_t *t, const nmc_jinja_template_t *tpl,
                         const nmc_chat_input_t *in, const nmc_jv_t *msgs, size_t n,
                         const loop_track_t *lt, nmc_chat_result_t *out, nmc_diags_t *d) {
    out->spans = nmc_arena_alloc(a, (n + 1) * sizeof *out->spans);
    for (size_t i = 0; i < n; i++) {
        if (!is_assistant(&msgs[i])) continue;
        if (span_for(a, t, tpl, in, msgs, i, out, lt, &out->spans[out->n_spans])) {
            const nmc_json_t *m = in->messages->u.arr.items[i];
            nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "chat-span", NULL, m->line, m->col, m->offset,
                                         "messages[%zu]: cannot tell exactly which output bytes this assistant message produced", i);
            nmc_diag_set_help(r, "the template renders this turn differently depending on later turns and "
                                 "does not open it with its generation prompt; train on conversations that "
                                 "end with this turn instead (split the conversation)");
            return -1;
        }
        out->n_spans++;
    }
    return 0;
}

int nmc_chat_render(nmc_arena_t *a, const nmc_chat_template_t *t, const nmc_chat_input_t *in,
                    nmc_chat_result_t *out, nmc_diags_t *diags) {
    memset(out, 0, sizeof *out);
    if (check_input(in, diags)) return -1;
    bool has_tools = in->tools && in->tools->kind == NMC_JSON_ARRAY;
    const nmc_jinja_template_t *tpl = pick(t, has_tools, diags);
    if (!tpl) return -1;
    size_t n = in->messages->u.arr.n;
    nmc_jv_t *msgs = nmc_arena_alloc(a, n * sizeof *msgs);
    for (size_t i = 0; i < n; i++) msgs[i] = convert_message(a, in->messages->u.arr.items[i]);
    loop_track_t lt = {msgs, n, nmc_arena_alloc(a, n * sizeof(size_t)), nmc_arena_alloc(a, n * sizeof(size_t)),
                       nmc_arena_alloc(a, n * sizeof(size_t))};
    for (size_t i = 0; i < n; i++) lt.begin[i] = SIZE_MAX;
    nmc_jinja_hooks_t hooks = {.ud = &lt, .on_loop_item = on_loop_item};
    if (nmc_jinja_render(a, tpl, make_vars(a, t, in, msgs, n, in->add_generation_prompt),
                         in->want_spans ? &hooks : NULL, &out->text, &out->len, diags))
        return -1;
    if (!in->want_spans) return 0;
    return compute_spans(a, t, tpl, in, msgs, n, &lt, out, diags);
}
