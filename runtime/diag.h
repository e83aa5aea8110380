/* diag.h — diagnostics: the records every nmc module appends instead of printing.
 *
 * A record carries severity, a stable symbolic code ("unknown-key", "json-trailing-comma"),
 * the position (file:line:col, 1-based; 0 = unknown), the instance path (dotted form for
 * text, RFC 6901 pointer for --format json), the message, optional expected/got, and an
 * optional help line. Library code never prints: the CLI renders a list with
 * nmc_diags_render_text() or nmc_diags_render_json().
 *
 * Ownership: a nmc_diags_t owns every string of its records (copied in); free it with
 * nmc_diags_free(). Errors beyond `cap` are counted, not kept ("N more errors").
 */
#ifndef NMC_DIAG_H
#define NMC_DIAG_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { NMC_SEV_ERROR = 0, NMC_SEV_WARNING = 1, NMC_SEV_NOTE = 2 } nmc_severity_t;

/* An instance path: a stack of object keys and array indices. */
#define NMC_PATH_MAX 64
typedef struct {
    struct {
        const char *key; /* NULL: this segment is an array index */
        size_t key_len;
        long index;
    } seg[NMC_PATH_MAX];
    int depth;
} nmc_path_t;

void nmc_path_push_key(nmc_path_t *p, const char *key, size_t len);
void nmc_path_push_index(nmc_path_t *p, long index);
void nmc_path_pop(nmc_path_t *p);
/* Render into buf (always NUL-terminated, truncated to cap).
 * Dotted: training.lora.target_modules[2]; a key that is not an identifier is quoted:
 * deployment_config.additional_envs["A.B"]. The root is "" (dotted) and "" (pointer). */
void nmc_path_dotted(const nmc_path_t *p, char *buf, size_t cap);
void nmc_path_pointer(const nmc_path_t *p, char *buf, size_t cap); /* RFC 6901: ~0 ~1 escapes */

typedef struct {
    nmc_severity_t sev;
    char *code;     /* stable symbolic code, never NULL */
    char *file;     /* may be NULL */
    uint32_t line;  /* 1-based; 0 = no position */
    uint32_t col;   /* 1-based, in characters (UTF-8 code points) of the line */
    size_t offset;  /* byte offset of the position in the source (for the caret) */
    char *path;     /* dotted path, NULL when not about a value */
    char *pointer;  /* RFC 6901 pointer, NULL when path is NULL */
    char *message;  /* lowercase, no trailing period */
    char *expected; /* may be NULL */
    char *got;      /* may be NULL */
    char *help;     /* may be NULL; several lines allowed ('\n'-separated) */
} nmc_diag_t;

typedef struct {
    nmc_diag_t *items;
    size_t n, alloc;
    size_t n_errors, n_warnings; /* counted even when dropped */
    size_t cap;                  /* keep at most this many records; 0 = default (50) */
    size_t n_dropped;
} nmc_diags_t;

void nmc_diags_init(nmc_diags_t *d);
void nmc_diags_free(nmc_diags_t *d);
/* Append a record; returns it for the optional setters below, or NULL when over the cap
 * (the setters accept NULL and do nothing, so callers need not check). */
nmc_diag_t *nmc_diag_add(nmc_diags_t *d, nmc_severity_t sev, const char *code,
                         const char *file, uint32_t line, uint32_t col, size_t offset,
                         const char *fmt, ...) __attribute__((format(printf, 8, 9)));
void nmc_diag_set_path(nmc_diag_t *r, const nmc_path_t *p);
void nmc_diag_set_expected(nmc_diag_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nmc_diag_set_got(nmc_diag_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nmc_diag_set_help(nmc_diag_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sort records by (file, line, col) stably — call before rendering. */
void nmc_diags_sort(nmc_diags_t *d);

/* Text form, rustc-like:
 *   job.json:12:5: error[gbs-not-divisible]: batch.global_batch_size 10 is not divisible ...
 *      12 |     "global_batch_size": 10,
 *         |                          ^^
 *      = expected: ..., got: ...
 *   help: ...
 * then "... and N more errors" when records were dropped. `src` (may be NULL) is the file's
 * text for the source line; color!=0 adds ANSI colour. */
void nmc_diags_render_text(const nmc_diags_t *d, const char *src, size_t src_len, FILE *out, int color);
/* JSON form: one object {"file":..., "valid":bool, "errors":n, "warnings":n, "dropped":n,
 * "diagnostics":[{"severity","code","file","line","column","path","pointer","message",
 * "expected","got","help"}...]} (keys with NULL values omitted). */
void nmc_diags_render_json(const nmc_diags_t *d, const char *file, FILE *out);

/* Edit distance (Damerau–Levenshtein, optimal string alignment), for did-you-mean. */
size_t nmc_edit_distance(const char *a, size_t alen, const char *b, size_t blen);

#endif
