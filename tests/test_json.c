/* test_json.c — the strict JSON layer (runtime/json.c, json_tree.c, json_write.c).
 *
 * Invalid inputs are a table of (input, code, line, col) for the first error; valid inputs
 * check the tree, numbers and positions; tests/data/json/ holds whole files with the exact
 * rendered diagnostics beside each invalid one (*.expected, compared byte for byte; files
 * named valid-*.json must parse). Run from the repository root (make test does).
 */
#include "json.h"
#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DATA_DIR "tests/data/json"

/* ---- helpers ---- */

typedef struct {
    nmc_arena_t *a;
    nmc_diags_t d;
    nmc_json_t *v;
    int rc;
} parsed_t;

/* Parse a copy of s[0..n) in an exact-size heap buffer, so ASan catches any read past len. */
static parsed_t parse_n(const char *s, size_t n, const nmc_json_limits_t *lim)
{
    parsed_t p;
    p.a = nmc_arena_new();
    nmc_diags_init(&p.d);
    char *buf = malloc(n ? n : 1);
    if (n) memcpy(buf, s, n);
    p.rc = nmc_json_parse(p.a, buf, n, "t.json", lim, &p.v, &p.d);
    free(buf);
    return p;
}

static parsed_t parse(const char *s) { return parse_n(s, strlen(s), NULL); }

static void done(parsed_t *p)
{
    nmc_diags_free(&p->d);
    nmc_arena_free(p->a);
}

static char *render(const nmc_diags_t *d, const char *src, size_t len)
{
    char *mem = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&mem, &n);
    nmc_diags_render_text(d, src, len, f, 0);
    fclose(f);
    return mem;
}

static char *write_compact(const nmc_json_t *v)
{
    char *mem = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&mem, &n);
    nmc_json_write(v, f);
    fclose(f);
    return mem;
}

/* ---- invalid inputs: first error's code and position ---- */

typedef struct {
    const char *in;
    const char *code;
    uint32_t line, col;
} bad_t;

static const bad_t bad[] = {
    /* what jsmn lets through, one code each */
    {"[tru]", "json-invalid-literal", 1, 2},
    {"[True]", "json-invalid-literal", 1, 2},
    {"[nulll]", "json-invalid-literal", 1, 2},
    {"[NaN]", "json-invalid-literal", 1, 2},
    {"[-Infinity]", "json-invalid-literal", 1, 2},
    {"{\"a\": abc}", "json-invalid-literal", 1, 7},
    {"[01]", "json-leading-zero", 1, 2},
    {"[-007]", "json-leading-zero", 1, 2},
    {"[00]", "json-leading-zero", 1, 2},
    {"[1.2.3]", "json-bad-number", 1, 2},
    {"[1.]", "json-bad-number", 1, 2},
    {"[.5]", "json-bad-number", 1, 2},
    {"[-]", "json-bad-number", 1, 2},
    {"[1e]", "json-bad-number", 1, 2},
    {"[1e+]", "json-bad-number", 1, 2},
    {"[+1]", "json-bad-number", 1, 2},
    {"[0x1F]", "json-bad-number", 1, 2},
    {"[1.5x]", "json-bad-number", 1, 2},
    {"[-a]", "json-bad-number", 1, 2},
    {"[1 2]", "json-missing-comma", 1, 4},
    {"{\"a\":1 \"b\":2}", "json-missing-comma", 1, 8},
    {"[[1] [2]]", "json-missing-comma", 1, 6},
    {"[1,]", "json-trailing-comma", 1, 3},
    {"{\"a\":1,}", "json-trailing-comma", 1, 7},
    {"[1 , \n ]", "json-trailing-comma", 1, 4},
    {"{\"a\"}", "json-missing-value", 1, 2},
    {"{\"a\",\"b\":1}", "json-missing-value", 1, 2},
    {"{\"a\":}", "json-missing-value", 1, 6},
    {"[1,,2]", "json-missing-value", 1, 4},
    {"[,1]", "json-missing-value", 1, 2},
    {"{,}", "json-missing-value", 1, 2},
    {"{\"a\" 1}", "json-missing-colon", 1, 6},
    {"{a:1}", "json-unquoted-key", 1, 2},
    {"{1:2}", "json-unquoted-key", 1, 2},
    {"1 2", "json-multiple-roots", 1, 3},
    {"{}{}", "json-multiple-roots", 1, 3},
    {"{\"a\":1}\n{\"a\":2}\n", "json-multiple-roots", 2, 1},
    {"[\"a\tb\"]", "json-control-char", 1, 4},
    {"[\"a\x01\"]", "json-control-char", 1, 4},
    {"[\"ab\ncd\"]", "json-control-char", 1, 5},
    {"[\"\x7f\"]", NULL, 0, 0}, /* DEL is allowed raw (RFC 8259 §7) */
    {"{\"a\":1,\"a\":2}", "json-duplicate-key", 1, 8},
    {"{\"a\":1,\"b\":{\"c\":1,\"c\":2}}", "json-duplicate-key", 1, 19},
    {"{\"\\u0061\":1,\"a\":2}", "json-duplicate-key", 1, 13}, /* equal after decoding */
    {"[\"\\x\"]", "json-bad-escape", 1, 3},
    {"[\"\\u12\"]", "json-bad-escape", 1, 3},
    {"[\"\\u12G4\"]", "json-bad-escape", 1, 3},
    {"[\"\\'\"]", "json-bad-escape", 1, 3},
    {"[\"\\ud800\"]", "json-bad-surrogate", 1, 3},
    {"[\"\\ud800\\u0041\"]", "json-bad-surrogate", 1, 3},
    {"[\"\\udc00\"]", "json-bad-surrogate", 1, 3},
    {"[\"x\\ud83d\\ud83d\"]", "json-bad-surrogate", 1, 4},
    {"[\"\xc0\xaf\"]", "json-invalid-utf8", 1, 3},         /* overlong '/' */
    {"[\"\xe0\x80\xaf\"]", "json-invalid-utf8", 1, 3},     /* overlong, 3 bytes */
    {"[\"\xed\xa0\x80\"]", "json-invalid-utf8", 1, 3},     /* surrogate U+D800 in UTF-8 */
    {"[\"\xf4\x90\x80\x80\"]", "json-invalid-utf8", 1, 3}, /* U+110000 */
    {"[\"\xf5\x80\x80\x80\"]", "json-invalid-utf8", 1, 3},
    {"[\"\x80\"]", "json-invalid-utf8", 1, 3},
    {"[\"caf\xe9\"]", "json-invalid-utf8", 1, 6},
    {"[\"\xe2\x82\"]", "json-invalid-utf8", 1, 3}, /* truncated */
    {"[\"\xc3\xa9\xff\"]", "json-invalid-utf8", 1, 4},
    {"\xe9", "json-invalid-utf8", 1, 1},
    {"[\"abc", "json-unterminated-string", 1, 2},
    {"[\"abc\\", "json-unterminated-string", 1, 2},
    {"\"", "json-unterminated-string", 1, 1},
    {"[", "json-unexpected-eof", 1, 2},
    {"[1,", "json-unexpected-eof", 1, 4},
    {"{\"a\":1", "json-unexpected-eof", 1, 7},
    {"{\"a\"", "json-unexpected-eof", 1, 5},
    {"{\"a\":", "json-unexpected-eof", 1, 6},
    {"{\n  \"a\": [1,\n  2\n\n", "json-unexpected-eof", 3, 4},
    {"", "json-empty", 1, 1},
    {"  \n\t ", "json-empty", 1, 1}, /* nothing but blanks: point at the start */
    {"\xef\xbb\xbf", "json-empty", 1, 1},
    {"[1}", "json-mismatched-bracket", 1, 3},
    {"{\"a\":1]", "json-mismatched-bracket", 1, 7},
    {"]", "json-unexpected-char", 1, 1},
    {"{\"a\":1}}", "json-unexpected-char", 1, 8},
    {"{'a':1}", "json-unexpected-char", 1, 2},
    {"[1;2]", "json-unexpected-char", 1, 3},
    {"{\"a\"=1}", "json-unexpected-char", 1, 5},
    {"[\x01]", "json-unexpected-char", 1, 2},
    {"[1]\x00", "json-unexpected-char", 1, 4},
    {"[\xc3\xa9]", "json-unexpected-char", 1, 2},
    {"// c\n{}", "json-comment", 1, 1},
    {"{} /* x */", "json-comment", 1, 4},
    /* positions: columns count code points; BOM is not a column; tabs are one column */
    {"\xef\xbb\xbf[tru]", "json-invalid-literal", 1, 2},
    {"[\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\", tru]", "json-invalid-literal", 1, 9},
    {"\t[\ttru]", "json-invalid-literal", 1, 4},
    {"\r\n[\r\n1,]", "json-trailing-comma", 3, 2},
};

START_TEST(test_bad_inputs)
{
    const bad_t *b = &bad[_i];
    size_t n = strlen(b->in);
    if (strcmp(b->in, "[1]") == 0) n = 4; /* the NUL case: "[1]\0" */
    parsed_t p = parse_n(b->in, n, NULL);
    if (!b->code) {
        ck_assert_msg(p.rc == 0, "case %d should parse", _i);
        done(&p);
        return;
    }
    ck_assert_msg(p.rc == -1, "case %d (%s) should fail", _i, b->in);
    ck_assert_ptr_null(p.v);
    ck_assert_uint_ge(p.d.n, 1);
    nmc_diags_sort(&p.d);
    const nmc_diag_t *r = &p.d.items[0];
    ck_assert_msg(strcmp(r->code, b->code) == 0 && r->line == b->line && r->col == b->col,
                  "case %d (%s): got %s at %u:%u, want %s at %u:%u", _i, b->in, r->code,
                  r->line, r->col, b->code, b->line, b->col);
    ck_assert_str_eq(r->file, "t.json");
    ck_assert_int_eq(r->sev, NMC_SEV_ERROR);
    ck_assert_ptr_nonnull(r->help);
    ck_assert_uint_eq(p.d.n_errors, p.d.n);
    done(&p);
}
END_TEST

static const nmc_diag_t *first(parsed_t *p)
{
    nmc_diags_sort(&p->d);
    return p->d.n ? &p->d.items[0] : NULL;
}

START_TEST(test_messages)
{
    parsed_t p = parse("[1,2,]");
    ck_assert_str_eq(first(&p)->message, "trailing comma after the last element");
    ck_assert_str_eq(first(&p)->help, "remove the comma after the last element");
    done(&p);

    p = parse("{\n \"lr\": 1,\n \"epochs\": 2,\n \"lr\": 3\n}");
    ck_assert_str_eq(first(&p)->message, "duplicate key \"lr\"");
    ck_assert_uint_eq(first(&p)->line, 4);
    ck_assert_str_eq(first(&p)->help,
                     "the first \"lr\" is at line 2, col 2; remove one of them (JSON readers disagree on which one wins)");
    done(&p);

    p = parse("[tru]");
    ck_assert_str_eq(first(&p)->message, "invalid literal `tru`");
    ck_assert_str_eq(first(&p)->help, "did you mean true? (or, if this is text, put it in double quotes: \"tru\")");
    done(&p);

    p = parse("[007]");
    ck_assert_str_eq(first(&p)->help, "write 7 (or quote it if the zeros matter: \"007\")");
    done(&p);

    p = parse("[-01.5]");
    ck_assert_str_eq(first(&p)->help, "write -1.5 (or quote it if the zeros matter: \"-01.5\")");
    done(&p);

    p = parse("[1}");
    ck_assert_str_eq(first(&p)->message, "'}' does not close the array opened at line 1, col 1");
    ck_assert_str_eq(first(&p)->expected, "',' or ']'");
    ck_assert_str_eq(first(&p)->got, "'}'");
    done(&p);

    p = parse("[\"\\ud800x\"]");
    ck_assert_str_eq(first(&p)->message, "unpaired high surrogate \\uD800 (not followed by a low surrogate)");
    done(&p);

    p = parse("[\"caf\xe9\"]");
    ck_assert_str_eq(first(&p)->message, "invalid UTF-8 in string: truncated sequence (byte 0xE9)");
    done(&p);

    p = parse("[\"\xed\xa0\x80\"]");
    ck_assert_str_eq(first(&p)->message, "invalid UTF-8 in string: encoded surrogate (byte 0xED)");
    done(&p);

    p = parse("[\"\xf4\x90\x80\x80\"]");
    ck_assert_str_eq(first(&p)->message, "invalid UTF-8 in string: code point above U+10FFFF (byte 0xF4)");
    done(&p);

    p = parse("[\"\xc0\xaf\"]");
    ck_assert_str_eq(first(&p)->message, "invalid UTF-8 in string: overlong encoding (byte 0xC0)");
    done(&p);

    p = parse("{\"a\":[1,\n");
    ck_assert_str_eq(first(&p)->message, "unexpected end of input: the array opened at line 1, col 6 is not closed");
    ck_assert_str_eq(first(&p)->help, "add the missing ']' (and check the brackets before it)");
    done(&p);

    /* long words are cut in messages */
    char big[200] = "[";
    memset(big + 1, 'x', 100);
    strcpy(big + 101, "]");
    p = parse(big);
    ck_assert_str_eq(first(&p)->message, "invalid literal `xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...`");
    done(&p);
}
END_TEST

/* Independent errors are all reported; a structural one stops the scan. */
START_TEST(test_multiple_errors)
{
    parsed_t p = parse("{\n \"a\": [1,],\n \"b\": 01,\n \"c\": \"\\q\",\n \"d\": tru,\n \"e\": 1 \"f\": 2,\n}");
    ck_assert_int_eq(p.rc, -1);
    ck_assert_uint_eq(p.d.n, 6);
    nmc_diags_sort(&p.d);
    const char *codes[] = {"json-trailing-comma", "json-leading-zero", "json-bad-escape",
                           "json-invalid-literal", "json-missing-comma", "json-trailing-comma"};
    const uint32_t lines[] = {2, 3, 4, 5, 6, 6};
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(p.d.items[i].code, codes[i]);
        ck_assert_uint_eq(p.d.items[i].line, lines[i]);
    }
    done(&p);

    /* after an unterminated string nothing more is reported */
    p = parse("[tru, \"abc");
    ck_assert_uint_eq(p.d.n, 2);
    done(&p);

    /* several duplicate keys, in nested objects too */
    p = parse("{\"a\":1,\"a\":2,\"b\":{\"x\":1,\"x\":2},\"a\":3}");
    ck_assert_uint_eq(p.d.n, 3);
    done(&p);

    /* many errors: counted past the cap */
    char buf[4096] = "[";
    for (int i = 0; i < 200; i++) strcat(buf, "01,");
    strcat(buf, "1]");
    p = parse(buf);
    ck_assert_uint_eq(p.d.n, 50);
    ck_assert_uint_eq(p.d.n_errors, 200);
    ck_assert_uint_eq(p.d.n_dropped, 150);
    done(&p);
}
END_TEST

/* ---- valid inputs ---- */

START_TEST(test_rfc8259_examples)
{
    /* RFC 8259 §13 */
    const char *img =
        "{\n"
        "  \"Image\": {\n"
        "    \"Width\":  800,\n"
        "    \"Height\": 600,\n"
        "    \"Title\":  \"View from 15th Floor\",\n"
        "    \"Thumbnail\": {\n"
        "        \"Url\":    \"http://www.example.com/image/481989943\",\n"
        "        \"Height\": 125,\n"
        "        \"Width\":  100\n"
        "    },\n"
        "    \"Animated\" : false,\n"
        "    \"IDs\": [116, 943, 234, 38793]\n"
        "  }\n"
        "}";
    parsed_t p = parse(img);
    ck_assert_int_eq(p.rc, 0);
    const nmc_json_t *im = nmc_json_get(p.v, "Image");
    ck_assert_int_eq(nmc_json_get(im, "Width")->u.num.i, 800);
    ck_assert_str_eq(nmc_json_get(nmc_json_get(im, "Thumbnail"), "Url")->u.str.s,
                     "http://www.example.com/image/481989943");
    ck_assert(!nmc_json_get(im, "Animated")->u.boolean);
    const nmc_json_t *ids = nmc_json_get(im, "IDs");
    ck_assert_uint_eq(ids->u.arr.n, 4);
    ck_assert_int_eq(ids->u.arr.items[3]->u.num.i, 38793);
    ck_assert_uint_eq(ids->line, 12);
    ck_assert_uint_eq(ids->col, 12);
    const nmc_json_member_t *m = nmc_json_member(im, "Animated");
    ck_assert_uint_eq(m->line, 11);
    ck_assert_uint_eq(m->col, 5);
    ck_assert_uint_eq(m->value->col, 18);
    ck_assert_ptr_null(nmc_json_get(im, "Missing"));
    ck_assert_ptr_null(nmc_json_get(ids, "x")); /* not an object */
    done(&p);

    const char *arr =
        "[\n"
        "  {\n"
        "     \"precision\": \"zip\",\n"
        "     \"Latitude\":  37.7668,\n"
        "     \"Longitude\": -122.3959,\n"
        "     \"Address\":   \"\",\n"
        "     \"City\":      \"SAN FRANCISCO\",\n"
        "     \"State\":     \"CA\",\n"
        "     \"Zip\":       \"94107\",\n"
        "     \"Country\":   \"US\"\n"
        "  },\n"
        "  {\n"
        "     \"precision\": \"zip\",\n"
        "     \"Latitude\":  37.371991,\n"
        "     \"Longitude\": -122.026020,\n"
        "     \"Address\":   \"\",\n"
        "     \"City\":      \"SUNNYVALE\",\n"
        "     \"State\":     \"CA\",\n"
        "     \"Zip\":       \"94085\",\n"
        "     \"Country\":   \"US\"\n"
        "  }\n"
        "]";
    p = parse(arr);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_uint_eq(p.v->u.arr.n, 2);
    const nmc_json_t *lon = nmc_json_get(p.v->u.arr.items[1], "Longitude");
    ck_assert(!lon->u.num.is_int);
    ck_assert(lon->u.num.d == -122.026020);
    ck_assert_str_eq(lon->u.num.text, "-122.026020");
    ck_assert_uint_eq(nmc_json_get(p.v->u.arr.items[0], "Address")->u.str.len, 0);
    done(&p);

    const char *scalars[] = {"\"Hello world!\"", "42", "true", "false", "null", " 3.5 ", "-0", "\"\""};
    const nmc_json_kind_t kinds[] = {NMC_JSON_STRING, NMC_JSON_NUMBER, NMC_JSON_BOOL, NMC_JSON_BOOL,
                                     NMC_JSON_NULL, NMC_JSON_NUMBER, NMC_JSON_NUMBER, NMC_JSON_STRING};
    for (int i = 0; i < 8; i++) {
        p = parse(scalars[i]);
        ck_assert_msg(p.rc == 0, "%s", scalars[i]);
        ck_assert_int_eq(p.v->kind, kinds[i]);
        done(&p);
    }
}
END_TEST

START_TEST(test_numbers)
{
    parsed_t p = parse("[0, -0, 9223372036854775807, -9223372036854775808, 9223372036854775808,"
                       " -9223372036854775809, 1e308, 1e400, -1e400, 1.0, 2E-3, 1e-400, 123456789012345678901234567890,"
                       " 0.1, 5e-324, 9007199254740993]");
    ck_assert_int_eq(p.rc, 0);
    nmc_json_t **it = p.v->u.arr.items;
    ck_assert(it[0]->u.num.is_int && it[0]->u.num.int_ok && it[0]->u.num.i == 0);
    ck_assert(it[1]->u.num.int_ok && it[1]->u.num.i == 0);
    ck_assert_str_eq(it[1]->u.num.text, "-0");
    ck_assert(it[2]->u.num.int_ok && it[2]->u.num.i == INT64_MAX);
    ck_assert(it[3]->u.num.int_ok && it[3]->u.num.i == INT64_MIN);
    ck_assert(it[4]->u.num.is_int && !it[4]->u.num.int_ok);
    ck_assert(it[4]->u.num.d == 9223372036854775808.0);
    ck_assert(it[5]->u.num.is_int && !it[5]->u.num.int_ok);
    ck_assert(!it[6]->u.num.is_int && it[6]->u.num.d == 1e308);
    ck_assert(isinf(it[7]->u.num.d) && it[7]->u.num.d > 0);
    ck_assert(isinf(it[8]->u.num.d) && it[8]->u.num.d < 0);
    ck_assert(!it[9]->u.num.is_int && !it[9]->u.num.int_ok && it[9]->u.num.d == 1.0);
    ck_assert(!it[10]->u.num.is_int && it[10]->u.num.d == 2e-3);
    ck_assert(it[11]->u.num.d == 0.0);
    ck_assert(it[12]->u.num.is_int && !it[12]->u.num.int_ok && it[12]->u.num.d == 1.2345678901234568e29);
    ck_assert(it[13]->u.num.d == 0.1);
    ck_assert(it[14]->u.num.d == 5e-324);
    ck_assert(it[15]->u.num.int_ok && it[15]->u.num.i == 9007199254740993LL);
    ck_assert(it[15]->u.num.d == 9007199254740992.0); /* nearest double, ties to even */
    done(&p);
}
END_TEST

START_TEST(test_strings_and_unicode)
{
    parsed_t p = parse("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u4e2d\", \"\\ud83d\\ude00\", \"a\\u0000b\","
                       " \"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\", \"\\uFFFF\", \"\\uDBFF\\uDFFF\"]");
    ck_assert_int_eq(p.rc, 0);
    nmc_json_t **it = p.v->u.arr.items;
    ck_assert_str_eq(it[0]->u.str.s, "\"\\/\b\f\n\r\t");
    ck_assert_str_eq(it[1]->u.str.s, "\xc3\xa9\xe4\xb8\xad");
    ck_assert_str_eq(it[2]->u.str.s, "\xf0\x9f\x98\x80");
    ck_assert_uint_eq(it[3]->u.str.len, 3);
    ck_assert(memcmp(it[3]->u.str.s, "a\0b", 4) == 0);
    ck_assert_str_eq(it[4]->u.str.s, "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80");
    ck_assert_str_eq(it[5]->u.str.s, "\xef\xbf\xbf");
    ck_assert_str_eq(it[6]->u.str.s, "\xf4\x8f\xbf\xbf");
    done(&p);

    /* keys are decoded and may hold NUL; lookups compare decoded bytes */
    p = parse("{\"k\\u00e9y\": 1, \"a\\u0000b\": 2}");
    ck_assert_int_eq(p.rc, 0);
    ck_assert_ptr_nonnull(nmc_json_get(p.v, "k\xc3\xa9y"));
    ck_assert_uint_eq(p.v->u.obj.members[1].key_len, 3);
    ck_assert_ptr_null(nmc_json_get(p.v, "a"));
    done(&p);
}
END_TEST

START_TEST(test_positions_and_bom)
{
    parsed_t p = parse("\xef\xbb\xbf{\"a\": [true,\n  \"\xc3\xa9\", null]}");
    ck_assert_int_eq(p.rc, 0);
    ck_assert_uint_eq(p.v->line, 1);
    ck_assert_uint_eq(p.v->col, 1);
    ck_assert_uint_eq(p.v->offset, 3);
    ck_assert_uint_eq(p.v->end, strlen("\xef\xbb\xbf{\"a\": [true,\n  \"\xc3\xa9\", null]}"));
    const nmc_json_t *a = nmc_json_get(p.v, "a");
    ck_assert_uint_eq(a->col, 7);
    ck_assert_uint_eq(a->u.arr.items[1]->line, 2);
    ck_assert_uint_eq(a->u.arr.items[1]->col, 3);
    ck_assert_uint_eq(a->u.arr.items[1]->end - a->u.arr.items[1]->offset, 4);
    ck_assert_uint_eq(a->u.arr.items[2]->col, 8); /* é is one column */
    ck_assert_uint_eq(p.v->u.obj.members[0].offset, 4);
    done(&p);

    /* deep but within the limit; kinds */
    char deep[200] = "";
    for (int i = 0; i < 64; i++) strcat(deep, "[");
    for (int i = 0; i < 64; i++) strcat(deep, "]");
    p = parse(deep);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_str_eq(nmc_json_kind_name(p.v->kind), "array");
    ck_assert_str_eq(nmc_json_kind_name(NMC_JSON_BOOL), "boolean");
    ck_assert_str_eq(nmc_json_kind_name(NMC_JSON_OBJECT), "object");
    done(&p);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_limits)
{
    nmc_json_limits_t lim = {.max_bytes = 8, .max_depth = 2};
    parsed_t p = parse_n("[1,2,3,4]", 9, &lim);
    ck_assert_int_eq(p.rc, -1);
    ck_assert_str_eq(p.d.items[0].code, "json-too-large");
    ck_assert_str_eq(p.d.items[0].message, "input is 9 bytes, over the limit of 8 bytes");
    ck_assert_uint_eq(p.d.items[0].line, 0);
    done(&p);

    p = parse_n("[[1]]", 5, &lim);
    ck_assert_int_eq(p.rc, 0);
    done(&p);
    p = parse_n("[[[1]]]", 7, &lim);
    ck_assert_int_eq(p.rc, -1);
    ck_assert_str_eq(p.d.items[0].code, "json-too-deep");
    ck_assert_str_eq(p.d.items[0].message, "nesting depth 3 exceeds the limit of 2");
    ck_assert_uint_eq(p.d.items[0].col, 3);
    done(&p);

    /* default depth 64 */
    char deep[200] = "";
    for (int i = 0; i < 65; i++) strcat(deep, "[");
    p = parse(deep);
    ck_assert_str_eq(first(&p)->code, "json-too-deep");
    ck_assert_uint_eq(first(&p)->col, 65);
    done(&p);

    /* inputs past INT_MAX are refused before anything is read (jsmn uses int offsets):
     * the 1-byte buffer is never touched */
    nmc_json_limits_t huge = {.max_bytes = SIZE_MAX};
    char one = '[';
    nmc_arena_t *a = nmc_arena_new();
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_json_t *v = (nmc_json_t *)&one;
    ck_assert_int_eq(nmc_json_parse(a, &one, (size_t)INT_MAX + 1, "big.json", &huge, &v, &d), -1);
    ck_assert_ptr_null(v);
    ck_assert_str_eq(d.items[0].code, "json-too-large");
    ck_assert_str_eq(d.items[0].message, "input is 2147483648 bytes, over the limit of 2147483646 bytes");
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

/* Every prefix of a document parses or fails cleanly (no read past len: exact buffers). */
START_TEST(test_prefixes_never_overrun)
{
    const char *docs[] = {
        "\xef\xbb\xbf{\"a\": [1, -2.5e+3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}}",
        "[\"caf\xc3\xa9\", 0, 1e, tru, {\"k\" 1}, // c\n /* d */ \"\xe2\x82\"]",
        "{\"a\":{\"b\":{\"c\":[[[]]]}}} x",
    };
    for (size_t k = 0; k < sizeof docs / sizeof *docs; k++) {
        size_t n = strlen(docs[k]);
        for (size_t i = 0; i <= n; i++) {
            parsed_t p = parse_n(docs[k], i, NULL);
            ck_assert(p.rc == 0 || p.d.n_errors > 0);
            ck_assert(p.rc != 0 || p.v);
            free(render(&p.d, docs[k], i));
            done(&p);
        }
    }
}
END_TEST

/* ---- files ---- */

START_TEST(test_parse_file_errors)
{
    nmc_arena_t *a = nmc_arena_new();
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_json_t *v;
    const char *src = "x";
    size_t len = 7;
    ck_assert_int_eq(nmc_json_parse_file(a, "tests/data/json/no-such-file.json", NULL, &v, &src, &len, &d), -1);
    ck_assert_ptr_null(src);
    ck_assert_str_eq(d.items[0].code, "io-error");
    ck_assert_str_eq(d.items[0].file, "tests/data/json/no-such-file.json");
    ck_assert_str_eq(d.items[0].message,
                     "cannot open 'tests/data/json/no-such-file.json': no such file or directory");
    nmc_diags_free(&d);

    ck_assert_int_eq(nmc_json_parse_file(a, DATA_DIR, NULL, &v, NULL, NULL, &d), -1);
    ck_assert_str_eq(d.items[0].code, "io-error");
    ck_assert_str_eq(d.items[0].message, "cannot read 'tests/data/json': is a directory");
    nmc_diags_free(&d);

    nmc_json_limits_t lim = {.max_bytes = 10};
    ck_assert_int_eq(nmc_json_parse_file(a, DATA_DIR "/valid-job.json", &lim, &v, NULL, NULL, &d), -1);
    ck_assert_str_eq(d.items[0].code, "json-too-large");
    ck_assert(strstr(d.items[0].message, "over the limit of 10 bytes"));
    nmc_diags_free(&d);

    ck_assert_int_eq(nmc_json_parse_file(a, DATA_DIR "/valid-job.json", NULL, &v, &src, &len, &d), 0);
    ck_assert_uint_eq(len, strlen(src));
    ck_assert_int_eq(nmc_json_get(nmc_json_get(v, "training"), "epochs")->u.num.i, 3);
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *mem = NULL;
    size_t cap = 0;
    FILE *o = open_memstream(&mem, &cap);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, k, o);
    fclose(f);
    fclose(o);
    *n = cap;
    return mem;
}

/* tests/data/json: invalid files render exactly as *.expected; valid-*.json parse. */
START_TEST(test_data_dir)
{
    DIR *dir = opendir(DATA_DIR);
    ck_assert_msg(dir != NULL, "run from the repository root (" DATA_DIR " not found)");
    struct dirent *e;
    int n_valid = 0, n_invalid = 0;
    while ((e = readdir(dir))) {
        size_t nl = strlen(e->d_name);
        if (nl < 6 || strcmp(e->d_name + nl - 5, ".json") != 0) continue;
        char path[512], exp_path[512];
        snprintf(path, sizeof path, DATA_DIR "/%s", e->d_name);
        snprintf(exp_path, sizeof exp_path, DATA_DIR "/%.*s.expected", (int)(nl - 5), e->d_name);
        bool valid = strncmp(e->d_name, "valid-", 6) == 0;
        size_t exp_len = 0;
        char *expected = slurp(exp_path, &exp_len);
        ck_assert_msg(valid == (expected == NULL), "%s: valid-*.json must have no .expected, others must have one", path);
        nmc_arena_t *a = nmc_arena_new();
        nmc_diags_t d;
        nmc_diags_init(&d);
        nmc_json_t *v;
        const char *src;
        size_t len;
        int rc = nmc_json_parse_file(a, path, NULL, &v, &src, &len, &d);
        if (valid) {
            ck_assert_msg(rc == 0, "%s should parse", path);
            /* round trip: write, parse again, write again: same bytes */
            char *w1 = write_compact(v);
            parsed_t p = parse(w1);
            ck_assert_int_eq(p.rc, 0);
            char *w2 = write_compact(p.v);
            ck_assert_str_eq(w1, w2);
            free(w1);
            free(w2);
            done(&p);
            n_valid++;
        } else {
            ck_assert_msg(rc == -1, "%s should fail", path);
            nmc_diags_sort(&d);
            char *got = render(&d, src, len);
            ck_assert_msg(strlen(got) == exp_len && memcmp(got, expected, exp_len) == 0,
                          "%s: rendered diagnostics differ from %s:\n%s", path, exp_path, got);
            free(got);
            n_invalid++;
        }
        free(expected);
        nmc_diags_free(&d);
        nmc_arena_free(a);
    }
    closedir(dir);
    ck_assert_int_ge(n_valid, 4);
    ck_assert_int_ge(n_invalid, 15);
}
END_TEST

/* ---- writing ---- */

static char *jw_run(int indent, void (*fn)(nmc_json_writer_t *))
{
    char *mem = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&mem, &n);
    nmc_json_writer_t w;
    nmc_jw_init(&w, f, indent);
    fn(&w);
    fclose(f);
    return mem;
}

static void build_doc(nmc_json_writer_t *w)
{
    nmc_jw_begin_object(w);
    nmc_jw_key(w, "name");
    nmc_jw_string(w, "a\"b\\c\n\x01\xc3\xa9");
    nmc_jw_key(w, "n");
    nmc_jw_int(w, -42);
    nmc_jw_key(w, "list");
    nmc_jw_begin_array(w);
    nmc_jw_double(w, 0.1);
    nmc_jw_double(w, 2.0);
    nmc_jw_double(w, NAN);
    nmc_jw_bool(w, true);
    nmc_jw_null(w);
    nmc_jw_end_array(w);
    nmc_jw_key(w, "empty_o");
    nmc_jw_begin_object(w);
    nmc_jw_end_object(w);
    nmc_jw_key(w, "empty_a");
    nmc_jw_begin_array(w);
    nmc_jw_end_array(w);
    nmc_jw_key(w, "bytes");
    nmc_jw_string_n(w, "x\0y\xff", 4);
    nmc_jw_end_object(w);
}

START_TEST(test_writer_exact)
{
    char *s = jw_run(2, build_doc);
    ck_assert_str_eq(s,
                     "{\n"
                     "  \"name\": \"a\\\"b\\\\c\\n\\u0001\xc3\xa9\",\n"
                     "  \"n\": -42,\n"
                     "  \"list\": [\n"
                     "    0.1,\n"
                     "    2.0,\n"
                     "    null,\n"
                     "    true,\n"
                     "    null\n"
                     "  ],\n"
                     "  \"empty_o\": {},\n"
                     "  \"empty_a\": [],\n"
                     "  \"bytes\": \"x\\u0000y\\ufffd\"\n"
                     "}");
    free(s);
    s = jw_run(0, build_doc);
    ck_assert_str_eq(s, "{\"name\":\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\",\"n\":-42,\"list\":[0.1,2.0,null,true,null],"
                        "\"empty_o\":{},\"empty_a\":[],\"bytes\":\"x\\u0000y\\ufffd\"}");
    free(s);
}
END_TEST

static double dbl_in;
static void one_double(nmc_json_writer_t *w) { nmc_jw_double(w, dbl_in); }

static char *fmt_double(double v)
{
    dbl_in = v;
    return jw_run(0, one_double);
}

START_TEST(test_writer_doubles)
{
    const struct {
        double v;
        const char *s;
    } t[] = {
        {0.1, "0.1"}, {2.0, "2.0"}, {-0.0, "-0.0"}, {0.0, "0.0"}, {1e21, "1e+21"}, {1e-7, "1e-07"},
        {0.30000000000000004, "0.30000000000000004"}, {1.0 / 3, "0.3333333333333333"},
        {123456789.0, "123456789.0"}, {5e-324, "4.94065645841247e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
        {INFINITY, "null"}, {-INFINITY, "null"},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        char *s = fmt_double(t[i].v);
        ck_assert_msg(strcmp(s, t[i].s) == 0, "%.17g -> %s, want %s", t[i].v, s, t[i].s);
        if (isfinite(t[i].v)) ck_assert(strtod(s, NULL) == t[i].v);
        free(s);
    }
}
END_TEST

static const nmc_json_t *jv_in;
static void one_value(nmc_json_writer_t *w) { nmc_jw_value(w, jv_in); }

START_TEST(test_write_roundtrip)
{
    const char *src = "{ \"a\" : [ 1 , 2.50 , -0 , 1E+2 , \"x\\ty\\u00e9\\ud83d\\ude00\" ] , \"b\" : { } ,"
                      " \"c\" : [ ] , \"d\" : null , \"e\" : true , \"\\u0000\" : \"\\/\" }";
    parsed_t p = parse(src);
    ck_assert_int_eq(p.rc, 0);
    char *w = write_compact(p.v);
    ck_assert_str_eq(w, "{\"a\":[1,2.50,-0,1E+2,\"x\\ty\xc3\xa9\xf0\x9f\x98\x80\"],\"b\":{},\"c\":[],\"d\":null,"
                        "\"e\":true,\"\\u0000\":\"/\"}");
    jv_in = p.v;
    char *pretty = jw_run(2, one_value);
    ck_assert_str_eq(pretty, "{\n  \"a\": [\n    1,\n    2.50,\n    -0,\n    1E+2,\n    \"x\\ty\xc3\xa9\xf0\x9f\x98\x80\"\n  ],\n"
                             "  \"b\": {},\n  \"c\": [],\n  \"d\": null,\n  \"e\": true,\n  \"\\u0000\": \"/\"\n}");
    parsed_t q = parse(pretty);
    ck_assert_int_eq(q.rc, 0);
    char *w2 = write_compact(q.v);
    ck_assert_str_eq(w, w2);
    free(w);
    free(w2);
    free(pretty);
    done(&q);
    done(&p);

    char *mem = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&mem, &n);
    nmc_json_write_string(f, "q\"\x7f\x1f", 4);
    nmc_json_write(NULL, f);
    fclose(f);
    ck_assert_str_eq(mem, "\"q\\\"\x7f\\u001f\"null");
    free(mem);
}
END_TEST

/* Numbers are read and written in the C locale whatever LC_NUMERIC says. A comma-decimal
 * locale is compiled into a temp dir with localedef; without locale sources this only
 * checks the "C" path. */
START_TEST(test_locale_independent)
{
    char dir[] = "/tmp/nmc-locale-XXXXXX";
    bool have = false;
    if (mkdtemp(dir)) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
        if (system(cmd) == 0) {
            setenv("LOCPATH", dir, 1);
            have = setlocale(LC_NUMERIC, "de_DE.UTF-8") != NULL;
        }
    }
    if (have) {
        char b[16];
        snprintf(b, sizeof b, "%.1f", 1.5);
        ck_assert_str_eq(b, "1,5"); /* the locale is really active */
    } else {
        fprintf(stderr, "test_locale_independent: no de_DE locale source, checking the C locale only\n");
    }
    parsed_t p = parse("[1.5, 2e-1]");
    ck_assert_int_eq(p.rc, 0);
    ck_assert(p.v->u.arr.items[0]->u.num.d == 1.5);
    ck_assert(p.v->u.arr.items[1]->u.num.d == 0.2);
    done(&p);
    char *s = fmt_double(1.25);
    ck_assert_str_eq(s, "1.25");
    free(s);
    setlocale(LC_NUMERIC, "C");
    if (have) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
    } else {
        rmdir(dir);
    }
}
END_TEST

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_bad_inputs, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, test_messages);
    tcase_add_test(tc, test_multiple_errors);
    tcase_add_test(tc, test_rfc8259_examples);
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_strings_and_unicode);
    tcase_add_test(tc, test_positions_and_bom);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_prefixes_never_overrun);
    tcase_add_test(tc, test_parse_file_errors);
    tcase_add_test(tc, test_data_dir);
    tcase_add_test(tc, test_writer_exact);
    tcase_add_test(tc, test_writer_doubles);
    tcase_add_test(tc, test_write_roundtrip);
    tcase_add_test(tc, test_locale_independent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(json_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
