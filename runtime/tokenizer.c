/* tokenizer.c — loading tokenizer.json into nmc_tokenizer_t, lookups, and decoding.
 *
 * Loading follows HF's deserializer: the model's vocab and merges, then the pipeline pieces,
 * then added_tokens registered in order the way AddedVocabulary::add_tokens does (an added
 * token takes the model's id for the same text, else the next free id counted from the model
 * vocabulary's size; a normalized one is matched in its normalized form). Every refusal is a
 * diagnostic naming the JSON path, what was found and what is supported.
 * The encode pipeline is in tokenizer_encode.c and tokenizer_pretok.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

/* ---- hash map --------------------------------------------------------------------------- */
uint32_t tok_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void hmap_grow(tok_hmap_t *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    tok_hent_t *e = calloc(cap, sizeof *e);
    if (!e) abort(); /* out of memory: arena.h's policy */
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->e[i].s) continue;
        size_t j = m->e[i].hash & (cap - 1);
        while (e[j].s) j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
}

int32_t tok_hmap_put(tok_hmap_t *m, const char *s, size_t n, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) hmap_grow(m);
    uint32_t h = tok_hash(s, n);
    size_t i = h & (m->cap - 1);
    while (m->e[i].s) {
        if (m->e[i].hash == h && m->e[i].len == n && memcmp(m->e[i].s, s, n) == 0) {
            int32_t old = m->e[i].val;
            m->e[i].val = val;
            return old;
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->e[i] = (tok_hent_t){s, (uint32_t)n, h, val};
    m->n++;
    return -1;
}

int32_t tok_hmap_get(const tok_hmap_t *m, const char *s, size_t n) {
    if (!m->cap) return -1;
    uint32_t h = tok_hash(s, n);
    size_t i = h & (m->cap - 1);
    while (m->e[i].s) {
        if (m->e[i].hash == h && m->e[i].len == n && memcmp(m->e[i].s, s, n) == 0) return m->e[i].val;
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

void tok_hmap_free(tok_hmap_t *m) {
    free(m->e);
    m->e = NULL;
    m->cap = m->n = 0;
}

/* ---- diagnostics ------------------------------------------------------------------------ */
typedef struct {
    nmc_tokenizer_t *t;
    nmc_diags_t *diags;
    const char *file;
    nmc_path_t path;
    int errors;
} ld_t;

static nmc_diag_t *vdiag(ld_t *L, nmc_severity_t sev, const nmc_json_t *at, const char *code,
                         const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (sev == NMC_SEV_ERROR) L->errors++;
    if (!L->diags) return NULL;
    nmc_diag_t *r = nmc_diag_add(L->diags, sev, code, L->file, at ? at->line : 0, at ? at->col : 0,
                                 at ? at->offset : 0, "%s", msg);
    nmc_diag_set_path(r, &L->path);
    return r;
}

__attribute__((format(printf, 4, 5)))
static nmc_diag_t *err(ld_t *L, const nmc_json_t *at, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nmc_diag_t *r = vdiag(L, NMC_SEV_ERROR, at, code, fmt, ap);
    va_end(ap);
    return r;
}

__attribute__((format(printf, 4, 5)))
static nmc_diag_t *warn(ld_t *L, const nmc_json_t *at, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nmc_diag_t *r = vdiag(L, NMC_SEV_WARNING, at, code, fmt, ap);
    va_end(ap);
    return r;
}

static void push_key(ld_t *L, const char *k) { nmc_path_push_key(&L->path, k, strlen(k)); }

/* ---- typed field access ----------------------------------------------------------------- */
static const nmc_json_t *field(ld_t *L, const nmc_json_t *o, const char *key, nmc_json_kind_t kind,
                               bool required) {
    const nmc_json_t *v = nmc_json_get(o, key);
    if (!v || (v->kind == NMC_JSON_NULL && !required)) {
        if (required) {
            push_key(L, key);
            nmc_diag_t *r = err(L, o, "tokenizer-bad-json", "missing field \"%s\"", key);
            nmc_diag_set_expected(r, "a %s", nmc_json_kind_name(kind));
            nmc_diag_set_help(r, "compare with a tokenizer.json written by HF tokenizers 0.23");
            nmc_path_pop(&L->path);
        }
        return NULL;
    }
    if (v->kind != kind) {
        push_key(L, key);
        nmc_diag_t *r = err(L, v, "tokenizer-bad-json", "field \"%s\" has the wrong type", key);
        nmc_diag_set_expected(r, "%s", nmc_json_kind_name(kind));
        nmc_diag_set_got(r, "%s", nmc_json_kind_name(v->kind));
        nmc_path_pop(&L->path);
        return NULL;
    }
    return v;
}

static bool get_bool(ld_t *L, const nmc_json_t *o, const char *key, bool dflt) {
    const nmc_json_t *v = field(L, o, key, NMC_JSON_BOOL, false);
    return v ? v->u.boolean : dflt;
}

/* A string field copied into the tokenizer's arena; NULL when absent (required: error). */
static const char *get_str(ld_t *L, const nmc_json_t *o, const char *key, bool required, uint32_t *len) {
    const nmc_json_t *v = field(L, o, key, NMC_JSON_STRING, required);
    if (!v) return NULL;
    if (len) *len = (uint32_t)v->u.str.len;
    return nmc_arena_strndup(L->t->arena, v->u.str.s, v->u.str.len);
}

static bool get_uint(ld_t *L, const nmc_json_t *o, const char *key, uint32_t dflt, uint32_t *out) {
    const nmc_json_t *v = field(L, o, key, NMC_JSON_NUMBER, false);
    *out = dflt;
    if (!v) return true;
    if (!v->u.num.int_ok || v->u.num.i < 0 || v->u.num.i > 1000000) {
        push_key(L, key);
        err(L, v, "tokenizer-bad-json", "field \"%s\" must be a small non-negative integer, got %s",
            key, v->u.num.text);
        nmc_path_pop(&L->path);
        return false;
    }
    *out = (uint32_t)v->u.num.i;
    return true;
}

/* The single code point of a string field ("replacement", "content"). */
static bool get_char(ld_t *L, const nmc_json_t *o, const char *key, uint32_t *cp) {
    const nmc_json_t *v = field(L, o, key, NMC_JSON_STRING, true);
    if (!v) return false;
    size_t k = 0;
    if (v->u.str.len) *cp = nmc_utf8_get((const unsigned char *)v->u.str.s, v->u.str.len, &k);
    if (k == 0 || k != v->u.str.len) {
        push_key(L, key);
        err(L, v, "tokenizer-bad-json", "field \"%s\" must be exactly one character", key);
        nmc_path_pop(&L->path);
        return false;
    }
    return true;
}

static const char *type_of(ld_t *L, const nmc_json_t *o) {
    const nmc_json_t *v = field(L, o, "type", NMC_JSON_STRING, true);
    return v ? v->u.str.s : NULL;
}

static bool expect_object(ld_t *L, const nmc_json_t *v, const char *what) {
    if (v->kind == NMC_JSON_OBJECT) return true;
    nmc_diag_t *r = err(L, v, "tokenizer-bad-json", "%s must be an object", what);
    nmc_diag_set_got(r, "%s", nmc_json_kind_name(v->kind));
    return false;
}

static void *grow_arr(void *p, size_t n, size_t elem) {
    p = realloc(p, (n + 1) * elem);
    if (!p) abort();
    return p;
}

/* ---- model ------------------------------------------------------------------------------ */
static bool token_id(ld_t *L, const nmc_json_t *v, int32_t *id) {
    if (v->kind != NMC_JSON_NUMBER || !v->u.num.int_ok || v->u.num.i < 0 || v->u.num.i >= NMC_TOK_MAX_ID) {
        nmc_diag_t *r = err(L, v, "tokenizer-token-id-out-of-range", "token id %s is out of range",
                            v->kind == NMC_JSON_NUMBER ? v->u.num.text : nmc_json_kind_name(v->kind));
        nmc_diag_set_expected(r, "an integer in [0, %d)", (int)NMC_TOK_MAX_ID);
        nmc_diag_set_help(r, "token ids are row numbers of the embedding: 0, 1, 2, ...");
        return false;
    }
    *id = (int32_t)v->u.num.i;
    return true;
}

/* Two passes in source order: ids and their range first (to size the id table), then the
 * tokens, so a duplicate id names the earlier token and points at the later one. */
static void load_vocab(ld_t *L, const nmc_json_t *vocab) {
    nmc_tokenizer_t *t = L->t;
    int32_t max = -1, before = L->errors;
    push_key(L, "vocab");
    for (size_t i = 0; i < vocab->u.obj.n; i++) {
        const nmc_json_member_t *m = &vocab->u.obj.members[i];
        int32_t id;
        nmc_path_push_key(&L->path, m->key, m->key_len);
        if (token_id(L, m->value, &id) && id > max) max = id;
        nmc_path_pop(&L->path);
    }
    t->id_limit = max + 1;
    t->id_tok = calloc((size_t)t->id_limit + 1, sizeof *t->id_tok);
    t->id_len = calloc((size_t)t->id_limit + 1, sizeof *t->id_len);
    if (!t->id_tok || !t->id_len) abort();
    for (size_t i = 0; i < vocab->u.obj.n && L->errors == before; i++) {
        const nmc_json_member_t *m = &vocab->u.obj.members[i];
        int32_t id = (int32_t)m->value->u.num.i;
        if (t->id_tok[id]) {
            nmc_path_push_key(&L->path, m->key, m->key_len);
            nmc_diag_t *r = err(L, m->value, "tokenizer-duplicate-id", "id %d is given to both \"%s\" and \"%s\"",
                                id, t->id_tok[id], m->key);
            nmc_diag_set_help(r, "every token of the vocabulary needs its own id");
            nmc_path_pop(&L->path);
            continue;
        }
        const char *s = nmc_arena_strndup(t->arena, m->key, m->key_len);
        tok_hmap_put(&t->vocab, s, m->key_len, id);
        t->id_tok[id] = s;
        t->id_len[id] = (uint32_t)m->key_len;
    }
    t->model_size = t->vocab.n;
    nmc_path_pop(&L->path);
}

static void merge_put(nmc_tokenizer_t *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = t->merge_cap - 1, i = (size_t)(h >> 32) & mask;
    while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key) i = (i + 1) & mask;
    t->merges[i] = (tok_merge_t){key, rank, id}; /* a later duplicate wins, as in HF's map */
}

static int32_t merge_part(ld_t *L, const nmc_json_t *at, const char *s, size_t n, size_t idx) {
    int32_t id = tok_hmap_get(&L->t->vocab, s, n);
    if (id < 0) {
        nmc_diag_t *r = err(L, at, "tokenizer-merge-not-in-vocab",
                            "merge %zu needs token \"%.*s\", which is not in the vocabulary", idx, (int)n, s);
        nmc_diag_set_help(r, "every merge's parts and their concatenation must be tokens of model.vocab");
    }
    return id;
}

/* One merge: "a b" (exactly one space) or ["a", "b"]. */
static bool merge_strings(ld_t *L, const nmc_json_t *m, size_t idx, const char **a, size_t *an,
                          const char **b, size_t *bn) {
    if (m->kind == NMC_JSON_STRING) {
        const char *sp = memchr(m->u.str.s, ' ', m->u.str.len);
        if (sp && !memchr(sp + 1, ' ', m->u.str.len - (size_t)(sp + 1 - m->u.str.s))) {
            *a = m->u.str.s;
            *an = (size_t)(sp - m->u.str.s);
            *b = sp + 1;
            *bn = m->u.str.len - *an - 1;
            return true;
        }
    } else if (m->kind == NMC_JSON_ARRAY && m->u.arr.n == 2 && m->u.arr.items[0]->kind == NMC_JSON_STRING &&
               m->u.arr.items[1]->kind == NMC_JSON_STRING) {
        *a = m->u.arr.items[0]->u.str.s;
        *an = m->u.arr.items[0]->u.str.len;
        *b = m->u.arr.items[1]->u.str.s;
        *bn = m->u.arr.items[1]->u.str.len;
        return true;
    }
    nmc_diag_t *r = err(L, m, "tokenizer-bad-merge", "merge %zu is not a pair of tokens", idx);
    nmc_diag_set_expected(r, "\"left right\" (one space) or [\"left\", \"right\"]");
    nmc_diag_set_got(r, "%s", nmc_json_kind_name(m->kind));
    return false;
}

static void load_merges(ld_t *L, const nmc_json_t *merges) {
    nmc_tokenizer_t *t = L->t;
    size_t cap = 64;
    while (cap < merges->u.arr.n * 2 + 2) cap *= 2;
    t->merges = malloc(cap * sizeof *t->merges);
    if (!t->merges) abort();
    memset(t->merges, 0xFF, cap * sizeof *t->merges);
    t->merge_cap = cap;
    push_key(L, "merges");
    char *buf = NULL;
    size_t bufcap = 0, rank = 0;
    for (size_t i = 0; i < merges->u.arr.n; i++) {
        const nmc_json_t *m = merges->u.arr.items[i];
        const char *a, *b;
        size_t an, bn;
        if (m->kind == NMC_JSON_STRING && m->u.str.len >= 8 && !memcmp(m->u.str.s, "#version", 8)) continue;
        nmc_path_push_index(&L->path, (long)i);
        if (merge_strings(L, m, i, &a, &an, &b, &bn)) {
            int32_t ia = merge_part(L, m, a, an, i), ib = ia < 0 ? -1 : merge_part(L, m, b, bn, i);
            if (ib < 0) goto next;
            if (an + bn > bufcap) {
                bufcap = (an + bn) * 2;
                buf = realloc(buf, bufcap);
                if (!buf) abort();
            }
            memcpy(buf, a, an);
            memcpy(buf + an, b, bn);
            int32_t inew = merge_part(L, m, buf, an + bn, i);
            if (inew >= 0) merge_put(t, ia, ib, (uint32_t)rank, inew);
        }
    next:
        rank++;
        nmc_path_pop(&L->path);
    }
    free(buf);
    nmc_path_pop(&L->path);
}

static void model_options(ld_t *L, const nmc_json_t *m) {
    nmc_tokenizer_t *t = L->t;
    const nmc_json_t *d = field(L, m, "dropout", NMC_JSON_NUMBER, false);
    if (d && d->u.num.d != 0.0) {
        nmc_diag_t *r = err(L, d, "tokenizer-unsupported-option", "BPE dropout %s is not supported",
                            d->u.num.text);
        nmc_diag_set_help(r, "dropout is a training-time augmentation; set \"dropout\": null");
    }
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const nmc_json_t *v = field(L, m, affixes[i], NMC_JSON_STRING, false);
        if (v && v->u.str.len) {
            nmc_diag_t *r = err(L, v, "tokenizer-unsupported-option", "BPE %s \"%s\" is not supported",
                                affixes[i], v->u.str.s);
            nmc_diag_set_help(r, "supported: BPE models without word affixes (GPT-2, Llama, Qwen, Mistral)");
        }
    }
    t->byte_fallback = get_bool(L, m, "byte_fallback", false);
    t->fuse_unk = get_bool(L, m, "fuse_unk", false);
    t->ignore_merges = get_bool(L, m, "ignore_merges", false);
}

static const char SUPPORTED_MODELS[] = "supported models: BPE (byte-level as in GPT-2, Llama-3, Qwen2; "
                                       "SentencePiece-style with byte_fallback as in Llama-2, Mistral)";

static void load_model(ld_t *L, const nmc_json_t *root) {
    const nmc_json_t *m = nmc_json_get(root, "model");
    if (!m || m->kind == NMC_JSON_NULL) {
        nmc_diag_t *r = err(L, root, "tokenizer-missing-model", "tokenizer.json has no \"model\"");
        nmc_diag_set_help(r, "%s", SUPPORTED_MODELS);
        return;
    }
    push_key(L, "model");
    if (!expect_object(L, m, "model")) goto out;
    const nmc_json_t *ty = nmc_json_get(m, "type");
    if (ty && (ty->kind != NMC_JSON_STRING || strcmp(ty->u.str.s, "BPE") != 0)) {
        nmc_diag_t *r = err(L, ty, "tokenizer-unsupported-model", "model type %s is not supported",
                            ty->kind == NMC_JSON_STRING ? ty->u.str.s : nmc_json_kind_name(ty->kind));
        nmc_diag_set_help(r, "%s", SUPPORTED_MODELS);
        goto out;
    }
    const nmc_json_t *vocab = field(L, m, "vocab", NMC_JSON_OBJECT, true);
    const nmc_json_t *merges = field(L, m, "merges", NMC_JSON_ARRAY, true);
    if (!vocab || !merges) goto out;
    model_options(L, m);
    int before = L->errors;
    load_vocab(L, vocab);
    if (L->errors != before) goto out; /* merges would only repeat the vocabulary's errors */
    load_merges(L, merges);
    const nmc_json_t *unk = field(L, m, "unk_token", NMC_JSON_STRING, false);
    L->t->unk_id = -1;
    if (unk) {
        L->t->unk_id = tok_hmap_get(&L->t->vocab, unk->u.str.s, unk->u.str.len);
        if (L->t->unk_id < 0) {
            push_key(L, "unk_token");
            nmc_diag_t *r = err(L, unk, "tokenizer-unknown-token", "unk_token \"%s\" is not in model.vocab",
                                unk->u.str.s);
            nmc_diag_set_help(r, "name a token of model.vocab, or set \"unk_token\": null");
            nmc_path_pop(&L->path);
        }
    }
out:
    nmc_path_pop(&L->path);
}

/* ---- normalizer ------------------------------------------------------------------------- */
static const char SUPPORTED_NORM[] = "supported normalizers: NFC, Prepend, Replace (String pattern), Sequence";
static const char SUPPORTED_PRE[] = "supported pre-tokenizers: ByteLevel, Split (the GPT-2, Llama-3 and "
                                    "Qwen2 regexes, or a String), Metaspace, Sequence";
static const char SUPPORTED_DEC[] = "supported decoders: ByteLevel, Replace (String pattern), ByteFallback, "
                                    "Fuse, Strip, Metaspace, Sequence";
static const char SUPPORTED_POST[] = "supported post-processors: TemplateProcessing, ByteLevel, Sequence";

/* {"String": s} -> s; {"Regex": r} -> *regex = r (or an error when regex is NULL). */
static const char *get_pattern(ld_t *L, const nmc_json_t *o, uint32_t *len, const char **regex,
                               size_t *regex_len) {
    const nmc_json_t *p = field(L, o, "pattern", NMC_JSON_OBJECT, true);
    if (!p) return NULL;
    push_key(L, "pattern");
    const nmc_json_t *s = nmc_json_get(p, "String"), *r = nmc_json_get(p, "Regex");
    const char *out = NULL;
    if (s && s->kind == NMC_JSON_STRING && s->u.str.len) {
        out = nmc_arena_strndup(L->t->arena, s->u.str.s, s->u.str.len);
        *len = (uint32_t)s->u.str.len;
    } else if (r && r->kind == NMC_JSON_STRING && regex) {
        *regex = r->u.str.s;
        *regex_len = r->u.str.len;
    } else if (r && r->kind == NMC_JSON_STRING) {
        nmc_diag_t *d = err(L, r, "tokenizer-unsupported-pattern", "a Regex pattern is not supported here: %s",
                            r->u.str.s);
        nmc_diag_set_help(d, "Replace is supported with a String pattern only");
    } else {
        nmc_diag_t *d = err(L, p, "tokenizer-bad-json", "pattern must be {\"String\": \"...\"} or {\"Regex\": \"...\"}");
        nmc_diag_set_expected(d, "a non-empty String or a Regex");
    }
    nmc_path_pop(&L->path);
    return out;
}

static void load_normalizer(ld_t *L, const nmc_json_t *n) {
    nmc_tokenizer_t *t = L->t;
    if (!expect_object(L, n, "normalizer")) return;
    const char *ty = type_of(L, n);
    if (!ty) return;
    tok_norm_t st = {0};
    if (!strcmp(ty, "Sequence")) {
        const nmc_json_t *list = field(L, n, "normalizers", NMC_JSON_ARRAY, true);
        if (!list) return;
        push_key(L, "normalizers");
        for (size_t i = 0; i < list->u.arr.n; i++) {
            nmc_path_push_index(&L->path, (long)i);
            load_normalizer(L, list->u.arr.items[i]);
            nmc_path_pop(&L->path);
        }
        nmc_path_pop(&L->path);
        return;
    } else if (!strcmp(ty, "NFC")) {
        st.kind = NORM_NFC;
    } else if (!strcmp(ty, "Prepend")) {
        st.kind = NORM_PREPEND;
        if (!(st.a = get_str(L, n, "prepend", true, &st.alen))) return;
    } else if (!strcmp(ty, "Replace")) {
        st.kind = NORM_REPLACE;
        if (!(st.a = get_pattern(L, n, &st.alen, NULL, NULL))) return;
        if (!(st.b = get_str(L, n, "content", true, &st.blen))) return;
    } else {
        nmc_diag_t *r = err(L, n, "tokenizer-unsupported-normalizer", "normalizer %s is not supported", ty);
        nmc_diag_set_help(r, "%s", SUPPORTED_NORM);
        return;
    }
    t->norm = grow_arr(t->norm, t->n_norm, sizeof *t->norm);
    t->norm[t->n_norm++] = st;
}

/* ---- pre-tokenizer ---------------------------------------------------------------------- */
static bool get_prepend(ld_t *L, const nmc_json_t *o, tok_prepend_t *out) {
    const nmc_json_t *v = field(L, o, "prepend_scheme", NMC_JSON_STRING, false);
    *out = PREPEND_ALWAYS;
    if (v) {
        if (!strcmp(v->u.str.s, "first")) *out = PREPEND_FIRST;
        else if (!strcmp(v->u.str.s, "never")) *out = PREPEND_NEVER;
        else if (strcmp(v->u.str.s, "always") != 0) {
            push_key(L, "prepend_scheme");
            nmc_diag_t *r = err(L, v, "tokenizer-bad-json", "unknown prepend_scheme \"%s\"", v->u.str.s);
            nmc_diag_set_expected(r, "\"first\", \"always\" or \"never\"");
            nmc_path_pop(&L->path);
            return false;
        }
    }
    const nmc_json_t *aps = field(L, o, "add_prefix_space", NMC_JSON_BOOL, false);
    if (aps && !aps->u.boolean) {
        if (*out != PREPEND_NEVER) {
            push_key(L, "add_prefix_space");
            err(L, aps, "tokenizer-bad-json", "add_prefix_space does not match declared prepend_scheme");
            nmc_path_pop(&L->path);
            return false;
        }
    }
    return true;
}

static bool load_split(ld_t *L, const nmc_json_t *n, tok_pre_t *st) {
    static const struct { const char *name; tok_behavior_t b; } behaviors[] = {
        {"Removed", SPLIT_REMOVED}, {"Isolated", SPLIT_ISOLATED}, {"MergedWithPrevious", SPLIT_MERGED_PREV},
        {"MergedWithNext", SPLIT_MERGED_NEXT}, {"Contiguous", SPLIT_CONTIGUOUS}};
    const char *re = NULL;
    size_t re_len = 0;
    st->kind = PRE_SPLIT;
    st->lit = get_pattern(L, n, &st->litlen, &re, &re_len);
    if (!st->lit && !re) return false;
    st->pat = PAT_LITERAL;
    if (re) {
        int p = tok_pattern_lookup(re, re_len);
        if (p < 0) {
            push_key(L, "pattern");
            nmc_diag_t *r = err(L, n, "tokenizer-unsupported-pattern", "Split regex is not one nmc knows: %s", re);
            nmc_diag_set_help(r, "nmc matches the exact regexes of GPT-2, Llama-3 and Qwen2 by hand-written "
                                 "code; another regex needs a matcher in runtime/tokenizer_pretok.c");
            nmc_path_pop(&L->path);
            return false;
        }
        st->pat = (tok_pat_t)p;
    }
    const nmc_json_t *b = field(L, n, "behavior", NMC_JSON_STRING, true);
    if (!b) return false;
    for (size_t i = 0; i < sizeof behaviors / sizeof behaviors[0]; i++)
        if (!strcmp(b->u.str.s, behaviors[i].name)) {
            st->behavior = behaviors[i].b;
            st->invert = get_bool(L, n, "invert", false);
            return true;
        }
    push_key(L, "behavior");
    nmc_diag_t *r = err(L, b, "tokenizer-bad-json", "unknown Split behavior \"%s\"", b->u.str.s);
    nmc_diag_set_expected(r, "Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
    nmc_path_pop(&L->path);
    return false;
}

static void load_pre(ld_t *L, const nmc_json_t *n) {
    nmc_tokenizer_t *t = L->t;
    if (!expect_object(L, n, "pre_tokenizer")) return;
    const char *ty = type_of(L, n);
    if (!ty) return;
    tok_pre_t st = {0};
    if (!strcmp(ty, "Sequence")) {
        const nmc_json_t *list = field(L, n, "pretokenizers", NMC_JSON_ARRAY, true);
        if (!list) return;
        push_key(L, "pretokenizers");
        for (size_t i = 0; i < list->u.arr.n; i++) {
            nmc_path_push_index(&L->path, (long)i);
            load_pre(L, list->u.arr.items[i]);
            nmc_path_pop(&L->path);
        }
        nmc_path_pop(&L->path);
        return;
    } else if (!strcmp(ty, "ByteLevel")) {
        st.kind = PRE_BYTELEVEL;
        st.add_prefix_space = get_bool(L, n, "add_prefix_space", true);
        st.use_regex = get_bool(L, n, "use_regex", true);
    } else if (!strcmp(ty, "Split")) {
        if (!load_split(L, n, &st)) return;
    } else if (!strcmp(ty, "Metaspace")) {
        uint32_t cp;
        st.kind = PRE_METASPACE;
        if (!get_char(L, n, "replacement", &cp) || !get_prepend(L, n, &st.prepend)) return;
        st.repl_len = (uint32_t)nmc_utf8_put(cp, st.repl);
        st.split = get_bool(L, n, "split", true);
    } else {
        nmc_diag_t *r = err(L, n, "tokenizer-unsupported-pre-tokenizer", "pre-tokenizer %s is not supported", ty);
        nmc_diag_set_help(r, "%s", SUPPORTED_PRE);
        return;
    }
    t->pre = grow_arr(t->pre, t->n_pre, sizeof *t->pre);
    t->pre[t->n_pre++] = st;
}

/* ---- decoder ---------------------------------------------------------------------------- */
static void load_dec(ld_t *L, const nmc_json_t *n) {
    nmc_tokenizer_t *t = L->t;
    if (!expect_object(L, n, "decoder")) return;
    const char *ty = type_of(L, n);
    if (!ty) return;
    tok_dec_t st = {0};
    if (!strcmp(ty, "Sequence")) {
        const nmc_json_t *list = field(L, n, "decoders", NMC_JSON_ARRAY, true);
        if (!list) return;
        push_key(L, "decoders");
        for (size_t i = 0; i < list->u.arr.n; i++) {
            nmc_path_push_index(&L->path, (long)i);
            load_dec(L, list->u.arr.items[i]);
            nmc_path_pop(&L->path);
        }
        nmc_path_pop(&L->path);
        return;
    } else if (!strcmp(ty, "ByteLevel")) {
        st.kind = DEC_BYTELEVEL;
    } else if (!strcmp(ty, "ByteFallback")) {
        st.kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(ty, "Fuse")) {
        st.kind = DEC_FUSE;
    } else if (!strcmp(ty, "Replace")) {
        st.kind = DEC_REPLACE;
        if (!(st.a = get_pattern(L, n, &st.alen, NULL, NULL))) return;
        if (!(st.b = get_str(L, n, "content", true, &st.blen))) return;
    } else if (!strcmp(ty, "Strip")) {
        st.kind = DEC_STRIP;
        if (!get_char(L, n, "content", &st.content) || !get_uint(L, n, "start", 0, &st.start) ||
            !get_uint(L, n, "stop", 0, &st.stop))
            return;
    } else if (!strcmp(ty, "Metaspace")) {
        st.kind = DEC_METASPACE;
        if (!get_char(L, n, "replacement", &st.content) || !get_prepend(L, n, &st.prepend)) return;
    } else {
        nmc_diag_t *r = err(L, n, "tokenizer-unsupported-decoder", "decoder %s is not supported", ty);
        nmc_diag_set_help(r, "%s", SUPPORTED_DEC);
        return;
    }
    t->dec = grow_arr(t->dec, t->n_dec, sizeof *t->dec);
    t->dec[t->n_dec++] = st;
}

/* ---- post-processor --------------------------------------------------------------------- */
static void append_ids(int32_t **v, size_t *n, const int32_t *src, size_t k, bool front) {
    if (k == 0) return;
    int32_t *p = realloc(*v, (*n + k + 1) * sizeof *p);
    if (!p) abort();
    if (front) {
        memmove(p + k, p, *n * sizeof *p);
        memcpy(p, src, k * sizeof *p);
    } else memcpy(p + *n, src, k * sizeof *p);
    *v = p;
    *n += k;
}

/* The ids of a template's special token name. */
static bool template_ids(ld_t *L, const nmc_json_t *specials, const nmc_json_t *piece, const char *name,
                         int32_t **ids, size_t *n) {
    const nmc_json_t *sp = specials ? nmc_json_get(specials, name) : NULL;
    const nmc_json_t *list = sp && sp->kind == NMC_JSON_OBJECT ? nmc_json_get(sp, "ids") : NULL;
    if (!list || list->kind != NMC_JSON_ARRAY) {
        nmc_diag_t *r = err(L, piece, "tokenizer-unknown-token",
                            "template names special token \"%s\" but special_tokens has no ids for it", name);
        nmc_diag_set_help(r, "add \"%s\": {\"id\": \"%s\", \"ids\": [ID], \"tokens\": [\"%s\"]}", name, name, name);
        return false;
    }
    *n = 0;
    *ids = NULL;
    for (size_t i = 0; i < list->u.arr.n; i++) {
        int32_t id;
        if (!token_id(L, list->u.arr.items[i], &id)) return false;
        append_ids(ids, n, &id, 1, false);
    }
    return true;
}

static void load_template(ld_t *L, const nmc_json_t *n) {
    nmc_tokenizer_t *t = L->t;
    const nmc_json_t *single = field(L, n, "single", NMC_JSON_ARRAY, true);
    const nmc_json_t *specials = field(L, n, "special_tokens", NMC_JSON_OBJECT, false);
    if (!single) return;
    int32_t *pre = NULL, *post = NULL;
    size_t npre = 0, npost = 0, seqs = 0;
    push_key(L, "single");
    for (size_t i = 0; i < single->u.arr.n; i++) {
        const nmc_json_t *p = single->u.arr.items[i];
        const nmc_json_t *tokp = p->kind == NMC_JSON_OBJECT ? nmc_json_get(p, "SpecialToken") : NULL;
        const nmc_json_t *seqp = p->kind == NMC_JSON_OBJECT ? nmc_json_get(p, "Sequence") : NULL;
        const nmc_json_t *id = tokp ? nmc_json_get(tokp, "id") : NULL;
        if (seqp) { seqs++; continue; }
        if (!id || id->kind != NMC_JSON_STRING) {
            nmc_path_push_index(&L->path, (long)i);
            err(L, p, "tokenizer-bad-json", "template piece must be {\"SpecialToken\": {\"id\": ...}} or "
                                            "{\"Sequence\": {\"id\": \"A\"}}");
            nmc_path_pop(&L->path);
            continue;
        }
        int32_t *ids;
        size_t k;
        nmc_path_push_index(&L->path, (long)i);
        bool ok = template_ids(L, specials, p, id->u.str.s, &ids, &k);
        nmc_path_pop(&L->path);
        if (!ok) continue;
        if (seqs) append_ids(&post, &npost, ids, k, false);
        else append_ids(&pre, &npre, ids, k, false);
        free(ids);
    }
    if (seqs != 1) err(L, single, "tokenizer-bad-json", "the single template must hold $A exactly once");
    nmc_path_pop(&L->path);
    /* a later processor wraps what the earlier ones produced */
    append_ids(&t->tmpl_pre, &t->n_tmpl_pre, pre, npre, true);
    append_ids(&t->tmpl_post, &t->n_tmpl_post, post, npost, false);
    free(pre);
    free(post);
}

static void load_post(ld_t *L, const nmc_json_t *n) {
    if (!expect_object(L, n, "post_processor")) return;
    const char *ty = type_of(L, n);
    if (!ty) return;
    if (!strcmp(ty, "Sequence")) {
        const nmc_json_t *list = field(L, n, "processors", NMC_JSON_ARRAY, true);
        if (!list) return;
        push_key(L, "processors");
        for (size_t i = 0; i < list->u.arr.n; i++) {
            nmc_path_push_index(&L->path, (long)i);
            load_post(L, list->u.arr.items[i]);
            nmc_path_pop(&L->path);
        }
        nmc_path_pop(&L->path);
    } else if (!strcmp(ty, "TemplateProcessing")) {
        load_template(L, n);
    } else if (strcmp(ty, "ByteLevel") != 0) { /* ByteLevel only trims offsets */
        nmc_diag_t *r = err(L, n, "tokenizer-unsupported-post-processor", "post-processor %s is not supported", ty);
        nmc_diag_set_help(r, "%s", SUPPORTED_POST);
    }
}

/* A pipeline member: null is fine, anything else goes to fn under its key. */
static void load_member(ld_t *L, const nmc_json_t *root, const char *key, void (*fn)(ld_t *, const nmc_json_t *)) {
    const nmc_json_t *v = nmc_json_get(root, key);
    if (!v || v->kind == NMC_JSON_NULL) return;
    push_key(L, key);
    fn(L, v);
    nmc_path_pop(&L->path);
}

/* ---- added tokens ----------------------------------------------------------------------- */
static void added_pattern(nmc_tokenizer_t *t, tok_added_t *at) {
    at->pattern = at->content;
    at->plen = at->len;
    if (!at->normalized || !t->n_norm) return;
    nmc_arena_t *tmp = nmc_arena_new();
    size_t n;
    const char *s = tok_normalize(t, tmp, at->content, at->len, &n);
    at->pattern = nmc_arena_strndup(t->arena, s, n);
    at->plen = (uint32_t)n;
    nmc_arena_free(tmp);
}

/* HF AddedVocabulary::add_tokens for one token. */
static void add_token(ld_t *L, const nmc_json_t *o, int32_t *next_id) {
    nmc_tokenizer_t *t = L->t;
    tok_added_t at = {0};
    if (!expect_object(L, o, "an added token")) return;
    if (!(at.content = get_str(L, o, "content", true, &at.len))) return;
    const nmc_json_t *jid = field(L, o, "id", NMC_JSON_NUMBER, true);
    int32_t want = -1;
    if (!jid) return;
    push_key(L, "id");
    bool ok = token_id(L, jid, &want);
    nmc_path_pop(&L->path);
    if (!ok) return;
    at.special = get_bool(L, o, "special", false);
    at.single_word = get_bool(L, o, "single_word", false);
    at.lstrip = get_bool(L, o, "lstrip", false);
    at.rstrip = get_bool(L, o, "rstrip", false);
    at.normalized = get_bool(L, o, "normalized", !at.special);
    if (at.len == 0) return; /* HF ignores empty contents */
    int32_t k = tok_hmap_get(&t->added_map, at.content, at.len);
    at.id = k >= 0 ? t->added[k].id : tok_hmap_get(&t->vocab, at.content, at.len);
    if (at.id < 0) at.id = (*next_id)++;
    if (at.id != want) {
        nmc_diag_t *r = warn(L, o, "tokenizer-added-token-id", "added token \"%s\" has id %d in the file but "
                             "gets %d (as in HF tokenizers)", at.content, want, at.id);
        nmc_diag_set_help(r, "an added token takes the model's id for the same text, else the next id after the "
                             "model vocabulary");
    }
    added_pattern(t, &at);
    if (at.special) tok_hmap_put(&t->special_set, at.content, at.len, 1);
    if (k >= 0) { t->added[k] = at; return; }
    t->added = grow_arr(t->added, t->n_added, sizeof *t->added);
    tok_hmap_put(&t->added_map, at.content, at.len, (int32_t)t->n_added);
    t->added[t->n_added++] = at;
}

static void load_added(ld_t *L, const nmc_json_t *root) {
    const nmc_json_t *list = field(L, root, "added_tokens", NMC_JSON_ARRAY, false);
    if (!list) return;
    int32_t next_id = (int32_t)L->t->model_size;
    push_key(L, "added_tokens");
    for (size_t i = 0; i < list->u.arr.n; i++) {
        nmc_path_push_index(&L->path, (long)i);
        add_token(L, list->u.arr.items[i], &next_id);
        nmc_path_pop(&L->path);
    }
    nmc_path_pop(&L->path);
}

static int by_first_byte_len(const void *x, const void *y, void *ctx) {
    const nmc_tokenizer_t *t = ctx;
    const tok_added_t *a = &t->added[*(const uint32_t *)x], *b = &t->added[*(const uint32_t *)y];
    unsigned fa = (unsigned char)a->pattern[0], fb = (unsigned char)b->pattern[0];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (a->plen != b->plen) return a->plen > b->plen ? -1 : 1;
    return *(const uint32_t *)x < *(const uint32_t *)y ? -1 : 1;
}

static void build_matchset(nmc_tokenizer_t *t, tok_matchset_t *ms, bool normalized) {
    ms->idx = malloc((t->n_added + 1) * sizeof *ms->idx);
    if (!ms->idx) abort();
    ms->n = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].plen) ms->idx[ms->n++] = (uint32_t)i;
    qsort_r(ms->idx, ms->n, sizeof *ms->idx, by_first_byte_len, t);
    size_t k = 0;
    for (unsigned b = 0; b <= 256; b++) {
        while (k < ms->n && (unsigned char)t->added[ms->idx[k]].pattern[0] < b) k++;
        ms->start[b] = (uint32_t)k;
    }
}

/* ---- finishing ---------------------------------------------------------------------------- */
static int32_t first_present(const nmc_tokenizer_t *t, const char *const *names) {
    for (; *names; names++) {
        int32_t id = nmc_tokenizer_token_to_id(t, *names, strlen(*names));
        if (id >= 0) return id;
    }
    return -1;
}

static void finish(nmc_tokenizer_t *t) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id >= t->id_limit) t->id_limit = t->added[i].id + 1;
    t->added_of_id = malloc(((size_t)t->id_limit + 1) * sizeof *t->added_of_id);
    if (!t->added_of_id) abort();
    for (int32_t i = 0; i < t->id_limit; i++) t->added_of_id[i] = -1;
    for (size_t i = 0; i < t->n_added; i++) t->added_of_id[t->added[i].id] = (int32_t)i;
    build_matchset(t, &t->raw_set, false);
    build_matchset(t, &t->norm_set, true);
    for (unsigned b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = tok_hmap_get(&t->vocab, name, 6);
    }
    static const char *const bos[] = {"<|begin_of_text|>", "<s>", "<bos>", NULL};
    static const char *const eos[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>", "<|im_end|>", NULL};
    static const char *const pad[] = {"<pad>", "<|pad|>", "<|finetune_right_pad_id|>", NULL};
    t->bos = t->n_tmpl_pre ? t->tmpl_pre[0] : first_present(t, bos);
    t->eos = first_present(t, eos);
    t->pad = first_present(t, pad);
}

static void load_top(ld_t *L, const nmc_json_t *root) {
    const nmc_json_t *ver = nmc_json_get(root, "version");
    if (ver && (ver->kind != NMC_JSON_STRING || strcmp(ver->u.str.s, "1.0") != 0)) {
        push_key(L, "version");
        nmc_diag_t *r = err(L, ver, "tokenizer-bad-version", "unknown tokenizer.json version %s",
                            ver->kind == NMC_JSON_STRING ? ver->u.str.s : nmc_json_kind_name(ver->kind));
        nmc_diag_set_expected(r, "\"1.0\"");
        nmc_diag_set_help(r, "nmc reads the format of HF tokenizers 0.14 to 0.23 (version \"1.0\")");
        nmc_path_pop(&L->path);
    }
    static const char *const ignored[] = {"truncation", "padding"};
    for (int i = 0; i < 2; i++) {
        const nmc_json_t *v = nmc_json_get(root, ignored[i]);
        if (!v || v->kind == NMC_JSON_NULL) continue;
        push_key(L, ignored[i]);
        nmc_diag_t *r = warn(L, v, "tokenizer-ignored-field", "%s settings are ignored", ignored[i]);
        nmc_diag_set_help(r, "nmc's data pipeline truncates and pads sequences itself (job fields)");
        nmc_path_pop(&L->path);
    }
}

nmc_tokenizer_t *nmc_tokenizer_from_json(const nmc_json_t *root, const char *file, nmc_diags_t *diags) {
    nmc_tokenizer_t *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->arena = nmc_arena_new();
    t->unk_id = -1;
    tok_bytelevel_init(&t->bytemap);
    ld_t L = {.t = t, .diags = diags, .file = file};
    if (!expect_object(&L, root, "tokenizer.json's top level")) goto fail;
    load_top(&L, root);
    load_model(&L, root);
    if (L.errors) goto fail;
    load_member(&L, root, "normalizer", load_normalizer);
    load_member(&L, root, "pre_tokenizer", load_pre);
    load_member(&L, root, "post_processor", load_post);
    const nmc_json_t *dec = nmc_json_get(root, "decoder");
    t->has_decoder = dec && dec->kind != NMC_JSON_NULL;
    load_member(&L, root, "decoder", load_dec);
    if (L.errors) goto fail;
    load_added(&L, root);
    if (L.errors) goto fail;
    finish(t);
    return t;
fail:
    nmc_tokenizer_free(t);
    return NULL;
}

nmc_tokenizer_t *nmc_tokenizer_load(const char *path, nmc_diags_t *diags) {
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_limits_t lim = {.max_bytes = NMC_JSON_DATA_MAX_BYTES, .max_depth = 0};
    nmc_json_t *root = NULL;
    nmc_tokenizer_t *t = NULL;
    if (nmc_json_parse_file(a, path, &lim, &root, NULL, NULL, diags) == 0)
        t = nmc_tokenizer_from_json(root, path, diags);
    nmc_arena_free(a);
    return t;
}

void nmc_tokenizer_free(nmc_tokenizer_t *t) {
    if (!t) return;
    tok_hmap_free(&t->vocab);
    tok_hmap_free(&t->added_map);
    tok_hmap_free(&t->special_set);
    free(t->id_tok);
    free(t->id_len);
    free(t->merges);
    free(t->added);
    free(t->added_of_id);
    free(t->raw_set.idx);
    free(t->norm_set.idx);
    free(t->norm);
    free(t->pre);
    free(t->dec);
    free(t->tmpl_pre);
    free(t->tmpl_post);
    nmc_arena_free(t->arena);
    free(t);
}

/* ---- lookups ------------------------------------------------------------------------------ */
int32_t nmc_tokenizer_token_to_id(const nmc_tokenizer_t *t, const char *tok, size_t len) {
    int32_t k = tok_hmap_get(&t->added_map, tok, len);
    return k >= 0 ? t->added[k].id : tok_hmap_get(&t->vocab, tok, len);
}

const char *nmc_tokenizer_id_to_token(const nmc_tokenizer_t *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->id_limit) return NULL;
    int32_t k = t->added_of_id[id];
    if (k >= 0) {
        if (len) *len = t->added[k].plen;
        return t->added[k].pattern;
    }
    if (len) *len = t->id_len[id];
    return t->id_tok[id];
}

size_t nmc_tokenizer_vocab_size(const nmc_tokenizer_t *t) {
    size_t overlap = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (tok_hmap_get(&t->vocab, t->added[i].content, t->added[i].len) >= 0) overlap++;
    return t->model_size + t->n_added - overlap;
}

int32_t nmc_tokenizer_id_limit(const nmc_tokenizer_t *t) { return t->id_limit; }

bool nmc_tokenizer_is_special(const nmc_tokenizer_t *t, int32_t id) {
    if (id < 0 || id >= t->id_limit || t->added_of_id[id] < 0) return false;
    return t->added[t->added_of_id[id]].special;
}

int32_t nmc_tokenizer_bos_id(const nmc_tokenizer_t *t) { return t->bos; }
int32_t nmc_tokenizer_eos_id(const nmc_tokenizer_t *t) { return t->eos; }
int32_t nmc_tokenizer_pad_id(const nmc_tokenizer_t *t) { return t->pad; }

int32_t nmc_tokenizer_set_special(nmc_tokenizer_t *t, nmc_tok_role_t role, const char *tok) {
    int32_t id = nmc_tokenizer_token_to_id(t, tok, strlen(tok));
    if (id < 0) return -1;
    if (role == NMC_TOK_BOS) t->bos = id;
    else if (role == NMC_TOK_EOS) t->eos = id;
    else t->pad = id;
    return id;
}
