/* test_tokenizer.c — runtime/tokenizer*.c against HF tokenizers.
 *
 * Conformance: for each tokenizer trained by tests/oracle/make_tokenizers.py (gpt2, llama3,
 * qwen2, llama2, mistral, metaspace_unk) and each of the corpus strings, the ids with and
 * without special tokens and both decodes must equal HF's exactly; the suite prints how many
 * were checked. Lookups (vocab size, added tokens, token<->id) against the .meta.json files.
 * Negative: each tests/data/tokenizers/bad/NAME.json must fail to load with the first error
 * exactly as NAME.expected says ("line:col code path: message"). Plus invalid UTF-8 on
 * encode, unknown ids on decode, and two threads encoding with one tokenizer.
 * Run from the repository root (the Makefile's test runner does).
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "tokenizer_int.h" /* tok_pretokenize, to check pre-token boundaries directly */

#define DATA "tests/data/tokenizers/"

static const char *const NAMES[] = {"gpt2", "llama3", "qwen2", "llama2", "mistral", "metaspace_unk"};
enum { N_TOK = sizeof NAMES / sizeof NAMES[0] };
/* Pre-tokenizer settings the families do not use (pretok_<name>.json, boundaries only). */
static const char *const VARIANTS[] = {
    "pretok_bytelevel_prefix", "pretok_bytelevel_noregex", "pretok_split_removed_invert",
    "pretok_split_merged_prev", "pretok_split_merged_next_invert", "pretok_split_contiguous_string",
    "pretok_split_removed_string", "pretok_metaspace_never_split", "pretok_metaspace_first_split"};
enum { N_VAR = sizeof VARIANTS / sizeof VARIANTS[0] };

/* ---- fixtures ----------------------------------------------------------------------------- */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

/* Parse each line of a JSONL file into the arena. */
static size_t read_jsonl(nmc_arena_t *a, const char *path, nmc_json_t ***out) {
    size_t len, n = 0, cap = 0;
    char *text = slurp(path, &len);
    nmc_json_t **v = NULL;
    for (char *p = text; p < text + len;) {
        char *e = memchr(p, '\n', (size_t)(text + len - p));
        if (!e) e = text + len;
        nmc_diags_t d;
        nmc_diags_init(&d);
        nmc_json_t *j = NULL;
        ck_assert_msg(nmc_json_parse(a, p, (size_t)(e - p), path, NULL, &j, &d) == 0, "%s line %zu", path, n + 1);
        nmc_diags_free(&d);
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            v = realloc(v, cap * sizeof *v);
        }
        v[n++] = j;
        p = e + 1;
    }
    free(text);
    *out = v;
    return n;
}

/* The golden files' id lists: two base64url characters per id. */
static int b64(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '-' ? 62 : 63;
}

static void ids_from(const nmc_json_t *rec, const char *key, nmc_tok_ids_t *out) {
    const nmc_json_t *v = nmc_json_get(rec, key);
    if (!v) return;
    ck_assert(v->kind == NMC_JSON_STRING && v->u.str.len % 2 == 0);
    for (size_t i = 0; i < v->u.str.len; i += 2) {
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 64;
            out->ids = realloc(out->ids, out->cap * sizeof *out->ids);
        }
        out->ids[out->n++] = b64(v->u.str.s[i]) * 64 + b64(v->u.str.s[i + 1]);
    }
}

static nmc_tokenizer_t *load_ok(const char *name) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s.json", name);
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_tokenizer_t *t = nmc_tokenizer_load(path, &d);
    if (!t) nmc_diags_render_text(&d, NULL, 0, stderr, 0);
    ck_assert_msg(t != NULL, "%s failed to load", path);
    ck_assert_uint_eq(d.n_errors, 0);
    ck_assert_uint_eq(d.n_warnings, 0);
    nmc_diags_free(&d);
    return t;
}

/* The expected decode of a golden record: absent = the text, *_prefix = prefix + text. */
static char *expected_text(const nmc_json_t *rec, const char *key, const nmc_json_t *text, size_t *len) {
    char pkey[32];
    snprintf(pkey, sizeof pkey, "%s_prefix", key);
    const nmc_json_t *v = nmc_json_get(rec, key), *p = nmc_json_get(rec, pkey);
    const nmc_json_t *first = v ? v : p, *second = v ? NULL : text;
    size_t fl = first ? first->u.str.len : 0, sl = second ? second->u.str.len : 0;
    char *s = malloc(fl + sl + 1);
    if (fl) memcpy(s, first->u.str.s, fl);
    if (sl) memcpy(s + fl, second->u.str.s, sl);
    s[fl + sl] = '\0';
    *len = fl + sl;
    return s;
}

static void show_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* One corpus line; returns the number of failed checks (printing the first few). */
static int check_line(nmc_tok_encoder_t *e, const nmc_tokenizer_t *t, const char *name, size_t line,
                      const nmc_json_t *text, const nmc_json_t *rec, int *shown) {
    nmc_tok_ids_t want = {0}, full = {0}, got = {0};
    int bad = 0;
    ids_from(rec, "pre", &full);
    ids_from(rec, "ids", &want);
    ids_from(rec, "ids", &full);
    ids_from(rec, "post", &full);
    for (int special = 0; special < 2; special++) {
        const nmc_tok_ids_t *w = special ? &full : &want;
        ck_assert_int_eq(nmc_tok_encode(e, text->u.str.s, text->u.str.len, special, &got, NULL), 0);
        if (got.n == w->n && (!got.n || !memcmp(got.ids, w->ids, got.n * sizeof *got.ids))) continue;
        bad++;
        if ((*shown)++ < 5) {
            fprintf(stderr, "%s line %zu (special=%d): ids differ for %s\n", name, line, special, text->u.str.s);
            show_ids("want", w->ids, w->n);
            show_ids("got ", got.ids, got.n);
        }
    }
    for (int skip = 0; skip < 2; skip++) {
        size_t n, en;
        char *exp = expected_text(rec, skip ? "skip" : "dec", text, &en);
        char *dec = nmc_tokenizer_decode(t, full.ids, full.n, skip, &n, NULL);
        ck_assert_ptr_nonnull(dec);
        if (en != n || memcmp(exp, dec, n) != 0) {
            bad++;
            if ((*shown)++ < 5)
                fprintf(stderr, "%s line %zu: decode(skip=%d)\n  want: [%s]\n  got:  [%s]\n", name, line, skip, exp, dec);
        }
        free(dec);
        free(exp);
    }
    nmc_tok_ids_free(&want);
    nmc_tok_ids_free(&full);
    nmc_tok_ids_free(&got);
    return bad;
}

START_TEST(test_conformance) {
    const char *name = NAMES[_i];
    char path[256];
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t **corpus, **gold;
    size_t n = read_jsonl(a, DATA "corpus.jsonl", &corpus);
    snprintf(path, sizeof path, DATA "%s.golden.jsonl", name);
    size_t ng = read_jsonl(a, path, &gold);
    ck_assert_uint_eq(n, ng);
    ck_assert_uint_ge(n, 2000);
    nmc_tokenizer_t *t = load_ok(name);
    nmc_tok_encoder_t *e = nmc_tok_encoder_new(t);
    int bad = 0, shown = 0;
    for (size_t i = 0; i < n; i++) bad += check_line(e, t, name, i + 1, corpus[i], gold[i], &shown);
    printf("tokenizer %s: %zu strings x 4 checks (ids, ids+special, decode, decode skip), %d mismatches\n",
           name, n, bad);
    ck_assert_int_eq(bad, 0);
    nmc_tok_encoder_free(e);
    nmc_tokenizer_free(t);
    free(corpus);
    free(gold);
    nmc_arena_free(a);
}
END_TEST

/* Pre-token boundaries of the pre_tokenizer alone (HF pre_tokenize_str) on the hand-written and
 * character-soup lines: the regex matchers and Metaspace, boundary by boundary. */
START_TEST(test_pretokenize) {
    const char *name = _i < N_TOK ? NAMES[_i] : VARIANTS[_i - N_TOK];
    char path[256];
    if (!strcmp(name, "llama2")) return; /* no pre-tokenizer */
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t **corpus, **pt;
    size_t n = read_jsonl(a, DATA "corpus.jsonl", &corpus);
    snprintf(path, sizeof path, DATA "%s.pretok.jsonl", name);
    size_t np = read_jsonl(a, path, &pt);
    ck_assert_uint_ge(np, 600);
    nmc_tokenizer_t *t = load_ok(name);
    tok_pieces_t in = {0}, tmp = {0};
    int bad = 0;
    for (size_t k = 0; k < np; k++) {
        size_t i = (size_t)nmc_json_get(pt[k], "i")->u.num.i;
        ck_assert_uint_lt(i, n);
        nmc_tok_ids_t want = {0};
        ids_from(pt[k], "pt", &want);
        nmc_arena_t *scratch = nmc_arena_new();
        in.n = 0;
        if (corpus[i]->u.str.len) tok_pieces_push(&in, corpus[i]->u.str.s, corpus[i]->u.str.len, -1, true);
        tok_pretokenize(t, scratch, &in, &tmp);
        bool same = in.n == want.n;
        for (size_t j = 0; same && j < in.n; j++) same = (int32_t)in.p[j].len == want.ids[j];
        if (!same && bad++ < 5) {
            fprintf(stderr, "%s pretok line %zu: %s\n", name, i + 1, corpus[i]->u.str.s);
            show_ids("want lengths", want.ids, want.n);
            fprintf(stderr, "  got lengths:");
            for (size_t j = 0; j < in.n; j++) fprintf(stderr, " %u", in.p[j].len);
            fprintf(stderr, "\n");
        }
        nmc_arena_free(scratch);
        nmc_tok_ids_free(&want);
    }
    printf("tokenizer %s: %zu pre-tokenizations, %d mismatches\n", name, np, bad);
    ck_assert_int_eq(bad, 0);
    free(in.p);
    free(tmp.p);
    nmc_tokenizer_free(t);
    free(corpus);
    free(pt);
    nmc_arena_free(a);
}
END_TEST

START_TEST(test_lookups) {
    const char *name = NAMES[_i];
    char path[256];
    snprintf(path, sizeof path, DATA "%s.meta.json", name);
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *m;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_json_parse_file(a, path, NULL, &m, NULL, NULL, &d), 0);
    nmc_tokenizer_t *t = load_ok(name);
    ck_assert_int_eq((long)nmc_tokenizer_vocab_size(t), nmc_json_get(m, "vocab_size")->u.num.i);
    const nmc_json_t *added = nmc_json_get(m, "added");
    for (size_t i = 0; i < added->u.arr.n; i++) {
        const nmc_json_t *x = added->u.arr.items[i];
        const char *c = nmc_json_get(x, "content")->u.str.s;
        int32_t id = (int32_t)nmc_json_get(x, "id")->u.num.i;
        ck_assert_int_eq(nmc_tokenizer_token_to_id(t, c, strlen(c)), id);
        ck_assert_int_eq(nmc_tokenizer_is_special(t, id), nmc_json_get(x, "special")->u.boolean);
        ck_assert_int_lt(id, nmc_tokenizer_id_limit(t));
    }
    const nmc_json_t *lk = nmc_json_get(m, "lookups");
    for (size_t i = 0; i < lk->u.arr.n; i++) {
        const nmc_json_t *x = lk->u.arr.items[i];
        const nmc_json_t *tok = nmc_json_get(x, "token"), *back = nmc_json_get(x, "back");
        int32_t id = (int32_t)nmc_json_get(x, "id")->u.num.i;
        size_t len;
        ck_assert_int_eq(nmc_tokenizer_token_to_id(t, tok->u.str.s, tok->u.str.len), id);
        const char *s = nmc_tokenizer_id_to_token(t, id, &len);
        ck_assert_uint_eq(len, back->u.str.len);
        ck_assert(memcmp(s, back->u.str.s, len) == 0);
    }
    ck_assert_int_eq(nmc_tokenizer_token_to_id(t, "no such token", 13), -1);
    ck_assert_ptr_null(nmc_tokenizer_id_to_token(t, nmc_tokenizer_id_limit(t), NULL));
    ck_assert_ptr_null(nmc_tokenizer_id_to_token(t, -1, NULL));
    nmc_tokenizer_free(t);
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

START_TEST(test_special_ids) {
    nmc_tokenizer_t *q = load_ok("qwen2"), *l3 = load_ok("llama3"), *l2 = load_ok("llama2");
    ck_assert_int_eq(nmc_tokenizer_bos_id(q), -1);
    ck_assert_int_eq(nmc_tokenizer_eos_id(q), nmc_tokenizer_token_to_id(q, "<|endoftext|>", 13));
    ck_assert_int_eq(nmc_tokenizer_set_special(q, NMC_TOK_EOS, "<|im_end|>"),
                     nmc_tokenizer_token_to_id(q, "<|im_end|>", 10));
    ck_assert_int_eq(nmc_tokenizer_eos_id(q), nmc_tokenizer_token_to_id(q, "<|im_end|>", 10));
    ck_assert_int_eq(nmc_tokenizer_set_special(q, NMC_TOK_PAD, "<nope>"), -1);
    ck_assert_int_eq(nmc_tokenizer_bos_id(l3), nmc_tokenizer_token_to_id(l3, "<|begin_of_text|>", 17));
    ck_assert_int_eq(nmc_tokenizer_eos_id(l3), nmc_tokenizer_token_to_id(l3, "<|end_of_text|>", 15));
    ck_assert_int_eq(nmc_tokenizer_bos_id(l2), 1);
    ck_assert_int_eq(nmc_tokenizer_eos_id(l2), 2);
    ck_assert_int_eq(nmc_tokenizer_pad_id(l2), -1);
    /* chat text: the special tokens come out as single ids, wherever they sit */
    const char *chat = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    nmc_tok_ids_t ids = {0};
    ck_assert_int_eq(nmc_tokenizer_encode(q, chat, strlen(chat), true, &ids, NULL), 0);
    ck_assert_int_eq(ids.ids[0], nmc_tokenizer_token_to_id(q, "<|im_start|>", 12));
    nmc_tok_ids_free(&ids);
    nmc_tokenizer_free(q);
    nmc_tokenizer_free(l3);
    nmc_tokenizer_free(l2);
}
END_TEST

START_TEST(test_invalid_input) {
    nmc_tokenizer_t *t = load_ok("llama3");
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_tok_ids_t ids = {0};
    ck_assert_int_eq(nmc_tokenizer_encode(t, "ok\xC3(", 4, false, &ids, &d), -1);
    ck_assert_uint_eq(ids.n, 0);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_str_eq(d.items[0].code, "tokenizer-invalid-utf8");
    ck_assert_str_eq(d.items[0].message, "text to encode is not valid UTF-8 at byte 2");
    ck_assert_int_eq(nmc_tokenizer_encode(t, "\xED\xA0\x80", 3, false, &ids, NULL), -1); /* surrogate */
    ck_assert_int_eq(nmc_tokenizer_encode(t, "", 0, true, &ids, NULL), 0);
    ck_assert_uint_eq(ids.n, 1); /* just <|begin_of_text|> */
    int32_t bad[] = {5, nmc_tokenizer_id_limit(t)};
    ck_assert_ptr_null(nmc_tokenizer_decode(t, bad, 2, false, NULL, &d));
    ck_assert_uint_eq(d.n, 2);
    ck_assert_str_eq(d.items[1].code, "tokenizer-bad-id");
    char want[64];
    snprintf(want, sizeof want, "ids[1] = %d is not a token id of this tokenizer", nmc_tokenizer_id_limit(t));
    ck_assert_str_eq(d.items[1].message, want);
    size_t n = 99;
    char *empty = nmc_tokenizer_decode(t, NULL, 0, true, &n, NULL);
    ck_assert_str_eq(empty, "");
    ck_assert_uint_eq(n, 0);
    free(empty);
    nmc_tok_ids_free(&ids);
    nmc_diags_free(&d);
    nmc_tokenizer_free(t);
}
END_TEST

/* ---- malformed tokenizer.json ------------------------------------------------------------ */
static const char *const BAD[] = {
    "missing_model", "bad_merge", "bad_merge_pair", "merge_not_in_vocab", "id_out_of_range",
    "id_too_large", "duplicate_id", "unknown_pre_tokenizer", "unknown_pattern", "wordpiece",
    "unknown_normalizer", "unknown_decoder", "unknown_post_processor", "bad_version",
    "unk_not_in_vocab", "vocab_not_object", "template_unknown_token", "not_json"};
enum { N_BAD = sizeof BAD / sizeof BAD[0] };

START_TEST(test_malformed) {
    char path[256], exp_path[256], got[1024];
    snprintf(path, sizeof path, DATA "bad/%s.json", BAD[_i]);
    snprintf(exp_path, sizeof exp_path, DATA "bad/%s.expected", BAD[_i]);
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_ptr_null(nmc_tokenizer_load(path, &d));
    ck_assert_uint_ge(d.n_errors, 1);
    const nmc_diag_t *r = NULL;
    for (size_t i = 0; i < d.n && !r; i++)
        if (d.items[i].sev == NMC_SEV_ERROR) r = &d.items[i];
    snprintf(got, sizeof got, "%u:%u %s %s: %s\n", r->line, r->col, r->code, r->path ? r->path : "",
             r->message);
    char *exp = slurp(exp_path, NULL);
    ck_assert_str_eq(got, exp);
    free(exp);
    nmc_diags_free(&d);
}
END_TEST

/* ---- threads ------------------------------------------------------------------------------ */
typedef struct {
    const nmc_tokenizer_t *t;
    nmc_json_t **corpus;
    size_t n;
    uint64_t sum;
} job_t;

static void *encode_all(void *arg) {
    job_t *j = arg;
    nmc_tok_encoder_t *e = nmc_tok_encoder_new(j->t);
    nmc_tok_ids_t ids = {0};
    for (int rep = 0; rep < 2; rep++)
        for (size_t i = 0; i < j->n; i++) {
            nmc_tok_encode(e, j->corpus[i]->u.str.s, j->corpus[i]->u.str.len, true, &ids, NULL);
            for (size_t k = 0; k < ids.n; k++) j->sum = j->sum * 31 + (uint64_t)ids.ids[k];
        }
    nmc_tok_ids_free(&ids);
    nmc_tok_encoder_free(e);
    return NULL;
}

START_TEST(test_threads) {
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t **corpus;
    size_t n = read_jsonl(a, DATA "corpus.jsonl", &corpus);
    nmc_tokenizer_t *t = load_ok("qwen2");
    job_t jobs[3] = {{t, corpus, n, 0}, {t, corpus, n, 0}, {t, corpus, n, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, encode_all, &jobs[i]), 0);
    encode_all(&jobs[2]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    ck_assert(jobs[0].sum == jobs[2].sum && jobs[1].sum == jobs[2].sum);
    nmc_tokenizer_free(t);
    free(corpus);
    nmc_arena_free(a);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_conformance, 0, N_TOK);
    tcase_add_loop_test(tc, test_pretokenize, 0, N_TOK + N_VAR);
    tcase_add_loop_test(tc, test_lookups, 0, N_TOK);
    tcase_add_test(tc, test_special_ids);
    tcase_add_test(tc, test_invalid_input);
    tcase_add_loop_test(tc, test_malformed, 0, N_BAD);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
