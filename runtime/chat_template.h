/* chat_template.h — render a conversation with a model's own chat template, exactly as
 * transformers' tokenizer.apply_chat_template(..., tokenize=False) does, and report which
 * output bytes each assistant message produced (for loss masks).
 *
 * What transformers does, and so what this does:
 *  - template choice: tokenizer_config.json's `chat_template` is a string, or a list of
 *    {name, template}: "tool_use" when tools are given and it exists, else "default";
 *  - messages: keys whose value is null are dropped; reasoning given as
 *    reasoning_content / thinking / reasoning is copied to `thinking` (first key) and
 *    `reasoning_content` (last key) — transformers 5.x _alias_reasoning_fields;
 *  - variables: messages, tools (none when not given), documents (none),
 *    add_generation_prompt, the special tokens of tokenizer_config (bos_token, eos_token,
 *    unk_token, sep_token, pad_token, cls_token, mask_token; string or {"content": ...}
 *    form), then the caller's extra kwargs (enable_thinking, date_string, ...), which win;
 *  - functions: raise_exception(msg), strftime_now(fmt) (time injectable for tests),
 *    namespace(), dict(), range().
 */
#ifndef NMC_CHAT_TEMPLATE_H
#define NMC_CHAT_TEMPLATE_H
#include "jinja.h"

typedef struct nmc_chat_template nmc_chat_template_t;

/* From a parsed tokenizer_config.json (`file` names it in diagnostics). Parses every
 * template it holds. Errors: chat-template-missing, chat-template-type, and the parse
 * errors of nmc_jinja_parse (the template name is "<file>:chat_template[<name>]"). */
int nmc_chat_template_from_config(nmc_arena_t *a, const nmc_json_t *config, const char *file,
                                  nmc_chat_template_t **out, nmc_diags_t *diags);
/* From a bare template string (no special tokens; add them with _set_token). */
int nmc_chat_template_from_string(nmc_arena_t *a, const char *src, size_t len, const char *name,
                                  nmc_chat_template_t **out, nmc_diags_t *diags);
/* Set or replace a template variable that comes with the tokenizer (e.g. "bos_token"). */
void nmc_chat_template_set_token(nmc_arena_t *a, nmc_chat_template_t *t, const char *name,
                                 const char *value);

typedef struct {
    const nmc_json_t *messages; /* array of objects; required, non-empty */
    const nmc_json_t *tools;    /* array, or NULL (the template sees none) */
    const nmc_json_t *kwargs;   /* object of extra template variables, or NULL */
    bool add_generation_prompt;
    bool fixed_time;            /* strftime_now uses `unix_time` (UTC) instead of now (local) */
    int64_t unix_time;
    bool want_spans;            /* fill nmc_chat_result_t.spans (renders more, see below) */
} nmc_chat_input_t;

typedef enum {
    NMC_CHAT_SPAN_PREFIX = 0, /* [len(render(m[:i], gen prompt)), len(render(m[:i+1]))) */
    NMC_CHAT_SPAN_LOOP = 1    /* bytes the template emitted while iterating m[i], minus
                                 the generation prompt that opens them */
} nmc_chat_span_method_t;

typedef struct {
    size_t message;    /* index in the caller's messages */
    size_t start, end; /* byte range in text: what the model generates for this turn */
    nmc_chat_span_method_t method;
} nmc_chat_span_t;

typedef struct {
    char *text; /* NUL-terminated, in the arena */
    size_t len;
    nmc_chat_span_t *spans; /* one per assistant message, in order (when want_spans) */
    size_t n_spans;
} nmc_chat_result_t;

/* Render. Returns 0 and fills *out (allocations in `a`), or -1 with diagnostics: the
 * jinja-* codes of nmc_jinja_render (jinja-raise carries the template's own message),
 * chat-input (messages not a non-empty array of objects, tools not an array, kwargs not
 * an object), chat-span (want_spans and an assistant span cannot be derived exactly).
 *
 * Spans (exact by construction, never by searching text): for assistant message i the
 * prefix method renders m[:i] with add_generation_prompt=true (P) and m[:i+1] without (Q);
 * when P is a prefix of Q and Q a prefix of the full text, the span is [|P|, |Q|). When a
 * template is not prefix-stable (it rewrites earlier turns once later ones exist: Qwen3
 * drops old reasoning, Mistral moves the system prompt to the last user turn), the loop
 * method takes the bytes emitted while the template's `for` iterated that very message
 * object, and removes the generation prompt G (render(m[:i], true) minus
 * render(m[:i], false)) when the turn starts with G. When neither applies: chat-span. */
int nmc_chat_render(nmc_arena_t *a, const nmc_chat_template_t *t, const nmc_chat_input_t *in,
                    nmc_chat_result_t *out, nmc_diags_t *diags);

/* strftime subset used by templates: %d %m %Y %y %b %B %a %A %H %M %S %I %p %j %e %%.
 * Returns 0, or -1 when fmt has another conversion (*bad set to it). */
int nmc_chat_strftime(char *buf, size_t cap, const char *fmt, size_t fmt_len, int64_t unix_time,
                      bool local, char *bad);

#endif
