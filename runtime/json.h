/* json.h — strict RFC 8259 JSON: jsmn tokenizes, a strictness layer rejects what jsmn lets
 * through, and the result is a tree of nmc_json_t in an arena, every node carrying its
 * source position.
 *
 * Rejected (each with its own diagnostic code, position and help line): invalid literals
 * (`tru`), leading zeros (`01`), malformed numbers (`1.2.3`, `1.`, `.5`, `-`, `1e`),
 * missing commas (`[1 2]`), trailing commas (`[1,]`), a key without a value (`{"a"}`),
 * more than one root value, raw control characters in strings, bad escapes, unpaired
 * surrogates in \u escapes, invalid UTF-8 anywhere, duplicate object keys, nesting deeper
 * than limits.max_depth, input larger than limits.max_bytes. A UTF-8 BOM at the start is
 * skipped (RFC 8259 §8.1 allows a parser to ignore it).
 *
 * Numbers keep their source text; is_int says the literal has no fraction or exponent.
 * Whether `1.0` may fill an int field is the schema layer's decision, not this one's.
 */
#ifndef NMC_JSON_H
#define NMC_JSON_H
#include "arena.h"
#include "diag.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    NMC_JSON_NULL,
    NMC_JSON_BOOL,
    NMC_JSON_NUMBER,
    NMC_JSON_STRING,
    NMC_JSON_ARRAY,
    NMC_JSON_OBJECT
} nmc_json_kind_t;

typedef struct nmc_json nmc_json_t;

typedef struct {
    const char *key; /* decoded UTF-8, NUL-terminated (may contain \0 from \u0000: use key_len) */
    size_t key_len;
    uint32_t line, col; /* position of the key's opening quote */
    size_t offset;
    nmc_json_t *value;
} nmc_json_member_t;

struct nmc_json {
    nmc_json_kind_t kind;
    uint32_t line, col; /* 1-based position of the value's first character */
    size_t offset;      /* byte offset of the value's first byte */
    size_t end;         /* byte offset one past the value's last byte */
    union {
        bool boolean;
        struct {
            const char *text; /* the literal as written, NUL-terminated */
            bool is_int;      /* no '.', 'e' or 'E' in the literal */
            bool int_ok;      /* is_int and fits int64 */
            int64_t i;        /* valid when int_ok */
            double d;         /* nearest double (±inf when out of range) */
        } num;
        struct {
            const char *s; /* decoded UTF-8, NUL-terminated */
            size_t len;
        } str;
        struct {
            nmc_json_t **items;
            size_t n;
        } arr;
        struct {
            nmc_json_member_t *members; /* in source order; keys unique */
            size_t n;
        } obj;
    } u;
};

typedef struct {
    size_t max_bytes; /* whole input; 0 = NMC_JSON_DEFAULT_MAX_BYTES */
    int max_depth;    /* arrays/objects nested; 0 = NMC_JSON_DEFAULT_MAX_DEPTH */
} nmc_json_limits_t;

/* Job files are hand-written and small: 1 MiB leaves 100x headroom over the largest real
 * job and stops a mistaken `nmc validate big.bin` early. Depth 64: a job nests 4 deep. */
#define NMC_JSON_DEFAULT_MAX_BYTES ((size_t)1 << 20)
#define NMC_JSON_DEFAULT_MAX_DEPTH 64
/* Data files (tokenizer.json of real models is 2-35 MB, safetensors headers, configs). */
#define NMC_JSON_DATA_MAX_BYTES ((size_t)512 << 20)

/* Parse src[0..len). On success returns 0 and sets *out (allocated in `a`).
 * On failure returns -1, appends one or more error records to `diags` (file names the
 * source in them), and leaves *out NULL. Never reads past len; src need not be
 * NUL-terminated. limits may be NULL (defaults). */
int nmc_json_parse(nmc_arena_t *a, const char *src, size_t len, const char *file,
                   const nmc_json_limits_t *limits, nmc_json_t **out, nmc_diags_t *diags);

/* Read a whole file (I/O errors become diagnostics with code "io-error") and parse it.
 * *src_out, if not NULL, receives the file text (in the arena) for rendering. */
int nmc_json_parse_file(nmc_arena_t *a, const char *path, const nmc_json_limits_t *limits,
                        nmc_json_t **out, const char **src_out, size_t *len_out,
                        nmc_diags_t *diags);

/* Lookup helpers: NULL when absent or when `o` is not an object. */
const nmc_json_t *nmc_json_get(const nmc_json_t *o, const char *key);
const nmc_json_member_t *nmc_json_member(const nmc_json_t *o, const char *key);
const char *nmc_json_kind_name(nmc_json_kind_t k); /* "null", "boolean", "number", ... */

/* Serialize (compact, keys in source order, strings escaped per RFC 8259 with non-ASCII
 * kept as UTF-8; numbers written from their source text). */
void nmc_json_write(const nmc_json_t *v, FILE *out);

/* Writer for building JSON output by hand (used by `nmc explain`, metrics, configs).
 * Pretty-printed with `indent` spaces (0 = compact). */
typedef struct {
    FILE *out;
    int indent;
    int depth;
    bool need_comma[NMC_JSON_DEFAULT_MAX_DEPTH + 1];
    bool after_key;
} nmc_json_writer_t;
void nmc_jw_init(nmc_json_writer_t *w, FILE *out, int indent);
void nmc_jw_begin_object(nmc_json_writer_t *w);
void nmc_jw_end_object(nmc_json_writer_t *w);
void nmc_jw_begin_array(nmc_json_writer_t *w);
void nmc_jw_end_array(nmc_json_writer_t *w);
void nmc_jw_key(nmc_json_writer_t *w, const char *key);
void nmc_jw_string(nmc_json_writer_t *w, const char *s);
void nmc_jw_string_n(nmc_json_writer_t *w, const char *s, size_t n);
void nmc_jw_int(nmc_json_writer_t *w, int64_t v);
void nmc_jw_double(nmc_json_writer_t *w, double v); /* shortest round-trip form ("%.17g" trimmed) */
void nmc_jw_bool(nmc_json_writer_t *w, bool v);
void nmc_jw_null(nmc_json_writer_t *w);
void nmc_jw_value(nmc_json_writer_t *w, const nmc_json_t *v); /* a parsed value, re-indented */
/* Escape s as a JSON string literal (with quotes) to out. */
void nmc_json_write_string(FILE *out, const char *s, size_t n);

#endif
