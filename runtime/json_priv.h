/* json_priv.h — internals shared by json.c (entry points, strict checker), json_tree.c
 * (tree built from jsmn tokens) and json_write.c (serializers). Not for other modules. */
#ifndef NMC_JSON_PRIV_H
#define NMC_JSON_PRIV_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* newlocale, uselocale, strtod_l */
#endif
#include "json.h"
#include <locale.h>
#include <stdbool.h>

/* Deepest nesting any caller may ask for: consumers (nmc_json_write, schema checks) recurse
 * over the tree, and 4096 frames stay far inside an 8 MiB stack, even under ASan. */
#define NMC_JSON_HARD_MAX_DEPTH 4096

/* Line/column cursor over a source. Columns count UTF-8 units (json_utf8.h), 1-based.
 * Moving forward is incremental; moving backward restarts from `base` (the offset after a
 * BOM), so a run of positions in source order costs one pass over the text. */
typedef struct {
    const unsigned char *s;
    size_t len, base, off;
    uint32_t line, col;
    bool valid_utf8; /* set when the text is known to be UTF-8: columns = lead bytes (faster) */
} nmc_jpos_t;
void nmc_jpos_init(nmc_jpos_t *c, const char *s, size_t len, size_t base);
void nmc_jpos_seek(nmc_jpos_t *c, size_t off);

/* The "C" locale, created once (NULL only if newlocale fails): number text is never
 * subject to LC_NUMERIC. */
locale_t nmc_json_c_locale(void);

/* Render s[0..n) for a message: JSON-escaped, without quotes, cut at `cap - 4` bytes on a
 * unit boundary with "..." appended; buf is always NUL-terminated. */
void nmc_json_quote_msg(char *buf, size_t cap, const char *s, size_t n);

/* Build the tree of a document the checker accepted. `ntok` is the exact number of jsmn
 * tokens (values plus keys). Reports duplicate keys. Returns 0 or -1. */
int nmc_json_build(nmc_arena_t *a, const char *src, size_t len, size_t base, size_t ntok,
                   const char *file, nmc_json_t **out, nmc_diags_t *diags);

/* Bytes allowed in an unquoted literal or number ("tru", "1.2.3", "0x1F"): the parser
 * reads such a run whole so that it can name it in the message. */
static inline int nmc_json_is_word_byte(unsigned char b)
{
    return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
           b == '+' || b == '-' || b == '.' || b == '_';
}

#endif
