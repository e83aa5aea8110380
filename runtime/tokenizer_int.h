/* tokenizer_int.h — the loaded tokenizer's layout, shared by tokenizer.c (loading, lookups,
 * decoding), tokenizer_encode.c (the encode pipeline and BPE) and tokenizer_pretok.c (the
 * regex matchers and pre-tokenizers). Not a public header.
 */
#ifndef NMC_TOKENIZER_INT_H
#define NMC_TOKENIZER_INT_H
#include "arena.h"
#include "tokenizer.h"
#include "unicode.h"

/* ---- string -> int32 hash map (open addressing; tables malloc'd, strings not owned) ---- */
typedef struct {
    const char *s; /* NULL: empty slot */
    uint32_t len;
    uint32_t hash;
    int32_t val;
} tok_hent_t;
typedef struct {
    tok_hent_t *e;
    size_t cap; /* power of two, or 0 */
    size_t n;
} tok_hmap_t;
uint32_t tok_hash(const char *s, size_t n);
/* Insert or overwrite; returns the previous value or -1. */
int32_t tok_hmap_put(tok_hmap_t *m, const char *s, size_t n, int32_t val);
int32_t tok_hmap_get(const tok_hmap_t *m, const char *s, size_t n); /* -1 when absent */
void tok_hmap_free(tok_hmap_t *m);

/* ---- merges: (left id, right id) -> (rank, merged id) ---- */
typedef struct {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    uint32_t rank;
    int32_t new_id;
} tok_merge_t;

typedef struct {
    const char *content; /* as written in added_tokens */
    uint32_t len;
    const char *pattern; /* what is matched: content, or its normalized form */
    uint32_t plen;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} tok_added_t;

/* One trie-like matching set: added-token indices sorted by (first byte, length desc). */
typedef struct {
    uint32_t *idx;
    uint32_t start[257]; /* idx[start[b]..start[b+1]) begin with byte b */
    size_t n;
} tok_matchset_t;

typedef enum { NORM_NFC, NORM_PREPEND, NORM_REPLACE } tok_norm_kind_t;
typedef struct {
    tok_norm_kind_t kind;
    const char *a, *b; /* Prepend: a; Replace: a -> b */
    uint32_t alen, blen;
} tok_norm_t;

/* The regexes nmc recognises (each matched by hand-written code). */
typedef enum { PAT_GPT2, PAT_LLAMA3, PAT_QWEN2, PAT_LITERAL } tok_pat_t;
typedef enum {
    SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS
} tok_behavior_t;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } tok_prepend_t;

typedef enum { PRE_BYTELEVEL, PRE_SPLIT, PRE_METASPACE } tok_pre_kind_t;
typedef struct {
    tok_pre_kind_t kind;
    bool add_prefix_space, use_regex; /* ByteLevel */
    tok_pat_t pat;                    /* Split */
    const char *lit;                  /* Split with a String pattern */
    uint32_t litlen;
    tok_behavior_t behavior;
    bool invert;
    char repl[5]; /* Metaspace replacement char, UTF-8 */
    uint32_t repl_len;
    tok_prepend_t prepend;
    bool split;
} tok_pre_t;

typedef enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE } tok_dec_kind_t;
typedef struct {
    tok_dec_kind_t kind;
    const char *a, *b; /* Replace: a -> b */
    uint32_t alen, blen;
    uint32_t content;        /* Strip: the char; Metaspace: replacement */
    uint32_t start, stop;    /* Strip */
    tok_prepend_t prepend;   /* Metaspace */
} tok_dec_t;

/* ByteLevel's byte <-> char map; chars are all below 324. */
typedef struct {
    char enc[256][2]; /* UTF-8 of each byte's char (1 or 2 bytes) */
    uint8_t len[256];
    int16_t rev[324]; /* char -> byte, -1 when not in the map */
} tok_bytemap_t;

struct nmc_tokenizer {
    nmc_arena_t *arena; /* every string below */
    /* model (BPE) */
    tok_hmap_t vocab;     /* token -> id */
    const char **id_tok;  /* [id_limit] model token text, NULL for holes */
    uint32_t *id_len;
    int32_t id_limit;     /* one past the largest id (model or added) */
    size_t model_size;    /* entries in the model vocab */
    tok_merge_t *merges;  /* hash table */
    size_t merge_cap;     /* power of two */
    int32_t unk_id;       /* -1: none */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_id[256]; /* <0xXX> ids, -1 when absent */
    /* added tokens */
    tok_added_t *added;
    size_t n_added;
    tok_hmap_t added_map;   /* content -> index in added */
    int32_t *added_of_id;   /* [id_limit] index in added, -1 */
    tok_hmap_t special_set; /* contents of special added tokens */
    tok_matchset_t raw_set, norm_set;
    /* pipeline */
    tok_norm_t *norm;
    size_t n_norm;
    tok_pre_t *pre;
    size_t n_pre;
    tok_dec_t *dec;
    size_t n_dec;
    bool has_decoder;
    int32_t *tmpl_pre, *tmpl_post; /* ids around $A for add_special_tokens */
    size_t n_tmpl_pre, n_tmpl_post;
    int32_t bos, eos, pad;
    tok_bytemap_t bytemap;
};

/* A piece of text flowing through the pipeline. */
typedef struct {
    const char *s;
    uint32_t len;
    int32_t id;    /* >= 0: an added token, already final */
    bool orig0;    /* starts at offset 0 of the original text (Metaspace prepend "first") */
} tok_piece_t;

typedef struct {
    tok_piece_t *p;
    size_t n, cap;
} tok_pieces_t;
void tok_pieces_push(tok_pieces_t *v, const char *s, size_t len, int32_t id, bool orig0);

/* Normalizers applied to s (valid UTF-8); the result is in the arena. */
const char *tok_normalize(const nmc_tokenizer_t *t, nmc_arena_t *a, const char *s, size_t n,
                          size_t *out_len);
/* Run the pre-tokenizer steps over in (non-token pieces split; token pieces kept). */
void tok_pretokenize(const nmc_tokenizer_t *t, nmc_arena_t *a, tok_pieces_t *in,
                     tok_pieces_t *tmp);
/* Recognise a Split/ByteLevel regex string; -1 if unknown. */
int tok_pattern_lookup(const char *re, size_t len);
/* Fill the ByteLevel byte <-> char map (GPT-2's bytes_to_unicode). */
void tok_bytelevel_init(tok_bytemap_t *m);

#endif
