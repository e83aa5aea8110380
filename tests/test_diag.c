/* test_diag.c — diagnostic records (runtime/diag.c): caps, paths and pointers, sorting,
 * exact text and JSON rendering, edit distance. */
#include "diag.h"
#include "json.h"
#include <check.h>
#include <stdlib.h>
#include <string.h>

static char *render_text(const nmc_diags_t *d, const char *src, int color)
{
    char *mem = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&mem, &n);
    nmc_diags_render_text(d, src, src ? strlen(src) : 0, f, color);
    fclose(f);
    return mem;
}

static char *render_json(const nmc_diags_t *d, const char *file)
{
    char *mem = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&mem, &n);
    nmc_diags_render_json(d, file, f);
    fclose(f);
    return mem;
}

static const char *job =
    "{\n"
    "  \"batch\": {\n"
    "    \"global_batch_size\": 10,\n"
    "\t\"name\": \"x\"\n"
    "  }\n"
    "}\n";

START_TEST(test_render_text_exact)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    /* offset of "10" on line 3 */
    size_t off = (size_t)(strstr(job, "10") - job);
    nmc_diag_t *r = nmc_diag_add(&d, NMC_SEV_ERROR, "gbs-not-divisible", "job.json", 3, 26, off,
                                 "batch.global_batch_size %d is not divisible by %d", 10, 8);
    nmc_diag_set_expected(r, "a multiple of %d", 8);
    nmc_diag_set_got(r, "%d", 10);
    nmc_diag_set_help(r, "set it to 8 or 16\nor change micro_batch_size");
    /* a tab-indented line: caret under the key, as wide as the string literal */
    off = (size_t)(strstr(job, "\"name\"") - job);
    r = nmc_diag_add(&d, NMC_SEV_WARNING, "unknown-key", "job.json", 4, 2, off, "unknown key \"name\"");
    nmc_diag_set_help(r, "did you mean \"names\"?");
    /* no position */
    nmc_diag_add(&d, NMC_SEV_NOTE, "info", NULL, 0, 0, 0, "plain note");
    char *s = render_text(&d, job, 0);
    ck_assert_str_eq(s,
                     "job.json:3:26: error[gbs-not-divisible]: batch.global_batch_size 10 is not divisible by 8\n"
                     "   3 |     \"global_batch_size\": 10,\n"
                     "     |                          ^^\n"
                     "   = expected: a multiple of 8, got: 10\n"
                     "help: set it to 8 or 16\n"
                     "      or change micro_batch_size\n"
                     "\n"
                     "job.json:4:2: warning[unknown-key]: unknown key \"name\"\n"
                     "   4 |     \"name\": \"x\"\n"
                     "     |     ^^^^^^\n"
                     "help: did you mean \"names\"?\n"
                     "\n"
                     "note[info]: plain note\n");
    free(s);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_render_text_variants)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    /* position from col when offset is not on the line; only `got`; line 10 is gutter-wide */
    const char *src = "1\n2\n3\n4\n5\n6\n7\n8\n9\n  \"k\": \xc3\xa9t\xc3\xa9,\n";
    nmc_diag_t *r = nmc_diag_add(&d, NMC_SEV_ERROR, "x", "f.json", 10, 8, 0, "bad");
    nmc_diag_set_got(r, "%s", "word");
    /* position past the end of the source: no source line */
    nmc_diag_add(&d, NMC_SEV_ERROR, "y", "f.json", 99, 1, 0, "far");
    /* file but no line; neither file nor line */
    nmc_diag_add(&d, NMC_SEV_ERROR, "z", "f.json", 0, 5, 0, "whole file");
    nmc_diag_add(&d, NMC_SEV_ERROR, "w", NULL, 0, 0, 0, "nothing");
    char *s = render_text(&d, src, 0);
    ck_assert_str_eq(s,
                     "f.json:10:8: error[x]: bad\n"
                     "   10 |   \"k\": \xc3\xa9t\xc3\xa9,\n"
                     "      |        ^\n"
                     "   = got: word\n"
                     "\n"
                     "f.json:99:1: error[y]: far\n"
                     "\n"
                     "f.json: error[z]: whole file\n"
                     "\n"
                     "error[w]: nothing\n");
    free(s);
    /* without a source: headers only */
    s = render_text(&d, NULL, 0);
    ck_assert(strstr(s, "   10 |") == NULL);
    ck_assert(strncmp(s, "f.json:10:8: error[x]: bad\n   = got: word\n\n", 42) == 0);
    free(s);
    nmc_diags_free(&d);

    /* colour only when asked */
    nmc_diags_init(&d);
    nmc_diag_add(&d, NMC_SEV_ERROR, "c", "a.json", 1, 1, 0, "m");
    s = render_text(&d, "[]", 1);
    ck_assert_str_eq(s,
                     "\x1b[1ma.json:1:1: \x1b[1;31merror[c]\x1b[0m\x1b[1m: m\x1b[0m\n"
                     "   \x1b[1;34m1 |\x1b[0m []\n"
                     "     \x1b[1;34m|\x1b[0m \x1b[1;31m^\x1b[0m\n");
    free(s);
    s = render_text(&d, "[]", 0);
    ck_assert(strchr(s, '\x1b') == NULL);
    free(s);
    nmc_diags_free(&d);

    /* control bytes and invalid UTF-8 in the shown line become U+FFFD; CRLF is trimmed */
    nmc_diags_init(&d);
    const char *bin = "[\"a\x01\xff\", 1x]\r\n";
    nmc_diag_add(&d, NMC_SEV_ERROR, "b", "b.json", 1, 9, 8, "m");
    s = render_text(&d, bin, 0);
    ck_assert_str_eq(s, "b.json:1:9: error[b]: m\n"
                        "   1 | [\"a\xef\xbf\xbd\xef\xbf\xbd\", 1x]\n"
                        "     |         ^^\n");
    free(s);
    nmc_diags_free(&d);

    /* wide characters take two cells for the caret */
    nmc_diags_init(&d);
    const char *cjk = "{\"\xe5\x90\x8d\": nul}";
    nmc_diag_add(&d, NMC_SEV_ERROR, "l", "c.json", 1, 7, 8, "m");
    s = render_text(&d, cjk, 0);
    ck_assert_str_eq(s, "c.json:1:7: error[l]: m\n"
                        "   1 | {\"\xe5\x90\x8d\": nul}\n"
                        "     |        ^^^\n");
    free(s);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_caps)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    d.cap = 2;
    for (int i = 0; i < 5; i++) ck_assert((nmc_diag_add(&d, NMC_SEV_ERROR, "e", "f", 1, 1, 0, "e%d", i) != NULL) == (i < 2));
    nmc_diag_set_help(NULL, "ignored %d", 1); /* setters accept NULL */
    nmc_diag_set_path(NULL, NULL);
    ck_assert_uint_eq(d.n, 2);
    ck_assert_uint_eq(d.n_errors, 5);
    ck_assert_uint_eq(d.n_dropped, 3);
    char *s = render_text(&d, NULL, 0);
    ck_assert_str_eq(s, "f:1:1: error[e]: e0\n\nf:1:1: error[e]: e1\n\n... and 3 more errors\n");
    free(s);
    nmc_diag_add(&d, NMC_SEV_WARNING, "w", "f", 1, 1, 0, "w");
    ck_assert_uint_eq(d.n_warnings, 1);
    s = render_text(&d, NULL, 0);
    ck_assert(strstr(s, "... and 4 more diagnostics\n"));
    free(s);
    nmc_diags_free(&d);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_uint_eq(d.cap, 2);

    nmc_diags_init(&d); /* default cap 50 */
    for (int i = 0; i < 51; i++) nmc_diag_add(&d, NMC_SEV_ERROR, "e", NULL, 0, 0, 0, "x");
    ck_assert_uint_eq(d.n, 50);
    s = render_text(&d, NULL, 0);
    ck_assert(strstr(s, "\n... and 1 more error\n"));
    free(s);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_paths)
{
    nmc_path_t p = {0};
    char buf[256];
    nmc_path_dotted(&p, buf, sizeof buf);
    ck_assert_str_eq(buf, "");
    nmc_path_pointer(&p, buf, sizeof buf);
    ck_assert_str_eq(buf, "");

    nmc_path_push_key(&p, "training", 8);
    nmc_path_push_key(&p, "lora", 4);
    nmc_path_push_key(&p, "target_modules", 14);
    nmc_path_push_index(&p, 2);
    nmc_path_dotted(&p, buf, sizeof buf);
    ck_assert_str_eq(buf, "training.lora.target_modules[2]");
    nmc_path_pointer(&p, buf, sizeof buf);
    ck_assert_str_eq(buf, "/training/lora/target_modules/2");

    nmc_path_t q = {0};
    nmc_path_push_key(&q, "deployment_config", 17);
    nmc_path_push_key(&q, "additional_envs", 15);
    nmc_path_push_key(&q, "A.B", 3);
    nmc_path_dotted(&q, buf, sizeof buf);
    ck_assert_str_eq(buf, "deployment_config.additional_envs[\"A.B\"]");
    nmc_path_pop(&q);
    nmc_path_push_key(&q, "a/b~c", 5);
    nmc_path_pointer(&q, buf, sizeof buf);
    ck_assert_str_eq(buf, "/deployment_config/additional_envs/a~1b~0c");
    nmc_path_dotted(&q, buf, sizeof buf);
    ck_assert_str_eq(buf, "deployment_config.additional_envs[\"a/b~c\"]");

    nmc_path_t r = {0};
    nmc_path_push_index(&r, 0);
    nmc_path_push_key(&r, "", 0);
    nmc_path_push_key(&r, "9lives", 6);
    nmc_path_push_key(&r, "q\"\n", 3);
    nmc_path_push_key(&r, "_ok1", 4);
    nmc_path_dotted(&r, buf, sizeof buf);
    ck_assert_str_eq(buf, "[0][\"\"][\"9lives\"][\"q\\\"\\n\"]._ok1");
    nmc_path_pointer(&r, buf, sizeof buf);
    ck_assert_str_eq(buf, "/0//9lives/q\"\n/_ok1");
    /* a quoted first key has no leading dot either */
    nmc_path_t k = {0};
    nmc_path_push_key(&k, "a b", 3);
    nmc_path_push_key(&k, "c", 1);
    nmc_path_dotted(&k, buf, sizeof buf);
    ck_assert_str_eq(buf, "[\"a b\"].c");

    /* truncation always terminates */
    char small[8];
    nmc_path_dotted(&p, small, sizeof small);
    ck_assert_str_eq(small, "trainin");
    nmc_path_pointer(&p, small, 1);
    ck_assert_str_eq(small, "");

    /* deeper than NMC_PATH_MAX: counted, push/pop stay balanced */
    nmc_path_t deep = {0};
    for (int i = 0; i < NMC_PATH_MAX + 3; i++) nmc_path_push_index(&deep, i);
    nmc_path_dotted(&deep, buf, sizeof buf);
    ck_assert(strlen(buf) > 3 && strcmp(buf + strlen(buf) - 3, "...") == 0);
    for (int i = 0; i < NMC_PATH_MAX + 3; i++) nmc_path_pop(&deep);
    ck_assert_int_eq(deep.depth, 0);
    nmc_path_pop(&deep);
    ck_assert_int_eq(deep.depth, 0);

    /* set_path copies both forms into the record */
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_diag_t *rec = nmc_diag_add(&d, NMC_SEV_ERROR, "c", NULL, 0, 0, 0, "m");
    nmc_diag_set_path(rec, &q);
    nmc_path_pop(&q);
    ck_assert_str_eq(rec->path, "deployment_config.additional_envs[\"a/b~c\"]");
    ck_assert_str_eq(rec->pointer, "/deployment_config/additional_envs/a~1b~0c");
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_sort_stable)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_diag_add(&d, NMC_SEV_ERROR, "c1", "b.json", 1, 1, 0, "1");
    nmc_diag_add(&d, NMC_SEV_ERROR, "c2", "a.json", 5, 2, 0, "2");
    nmc_diag_add(&d, NMC_SEV_ERROR, "c3", "a.json", 5, 1, 0, "3");
    nmc_diag_add(&d, NMC_SEV_ERROR, "c4", "a.json", 2, 9, 0, "4");
    nmc_diag_add(&d, NMC_SEV_ERROR, "c5", "a.json", 5, 1, 0, "5");
    nmc_diag_add(&d, NMC_SEV_ERROR, "c6", NULL, 0, 0, 0, "6");
    nmc_diags_sort(&d);
    const char *order[] = {"c6", "c4", "c3", "c5", "c2", "c1"};
    for (int i = 0; i < 6; i++) ck_assert_str_eq(d.items[i].code, order[i]);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(test_render_json_exact)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_path_t p = {0};
    nmc_path_push_key(&p, "a/b", 3);
    nmc_path_push_index(&p, 1);
    nmc_diag_t *r = nmc_diag_add(&d, NMC_SEV_ERROR, "bad-type", "job.json", 2, 7, 9, "wrong \"type\"\tx");
    nmc_diag_set_path(r, &p);
    nmc_diag_set_expected(r, "integer");
    nmc_diag_set_got(r, "string");
    nmc_diag_set_help(r, "line1\nline2");
    nmc_diag_add(&d, NMC_SEV_WARNING, "w", NULL, 0, 0, 0, "caf\xc3\xa9");
    char *s = render_json(&d, "job.json");
    ck_assert_str_eq(s,
                     "{\n"
                     "  \"file\": \"job.json\",\n"
                     "  \"valid\": false,\n"
                     "  \"errors\": 1,\n"
                     "  \"warnings\": 1,\n"
                     "  \"dropped\": 0,\n"
                     "  \"diagnostics\": [\n"
                     "    {\n"
                     "      \"severity\": \"error\",\n"
                     "      \"code\": \"bad-type\",\n"
                     "      \"file\": \"job.json\",\n"
                     "      \"line\": 2,\n"
                     "      \"column\": 7,\n"
                     "      \"path\": \"[\\\"a/b\\\"][1]\",\n"
                     "      \"pointer\": \"/a~1b/1\",\n"
                     "      \"message\": \"wrong \\\"type\\\"\\tx\",\n"
                     "      \"expected\": \"integer\",\n"
                     "      \"got\": \"string\",\n"
                     "      \"help\": \"line1\\nline2\"\n"
                     "    },\n"
                     "    {\n"
                     "      \"severity\": \"warning\",\n"
                     "      \"code\": \"w\",\n"
                     "      \"message\": \"caf\xc3\xa9\"\n"
                     "    }\n"
                     "  ]\n"
                     "}\n");
    /* and it is valid JSON */
    nmc_arena_t *a = nmc_arena_new();
    nmc_diags_t d2;
    nmc_diags_init(&d2);
    nmc_json_t *v;
    ck_assert_int_eq(nmc_json_parse(a, s, strlen(s), "out", NULL, &v, &d2), 0);
    ck_assert_str_eq(nmc_json_get(nmc_json_get(v, "diagnostics")->u.arr.items[0], "pointer")->u.str.s, "/a~1b/1");
    free(s);
    nmc_diags_free(&d);
    nmc_diags_init(&d);
    s = render_json(&d, NULL);
    ck_assert_str_eq(s, "{\n  \"valid\": true,\n  \"errors\": 0,\n  \"warnings\": 0,\n  \"dropped\": 0,\n  \"diagnostics\": []\n}\n");
    free(s);
    nmc_diags_free(&d);
    nmc_diags_free(&d2);
    nmc_arena_free(a);
}
END_TEST

START_TEST(test_edit_distance)
{
    ck_assert_uint_eq(nmc_edit_distance("", 0, "", 0), 0);
    ck_assert_uint_eq(nmc_edit_distance("abc", 3, "", 0), 3);
    ck_assert_uint_eq(nmc_edit_distance("", 0, "ab", 2), 2);
    ck_assert_uint_eq(nmc_edit_distance("kitten", 6, "sitting", 7), 3);
    ck_assert_uint_eq(nmc_edit_distance("learning_rate", 13, "learning_rate", 13), 0);
    ck_assert_uint_eq(nmc_edit_distance("learnign_rate", 13, "learning_rate", 13), 1); /* transposition */
    ck_assert_uint_eq(nmc_edit_distance("ca", 2, "abc", 3), 3);                     /* OSA, not full DL (2) */
    ck_assert_uint_eq(nmc_edit_distance("epoch", 5, "epochs", 6), 1);
    ck_assert_uint_eq(nmc_edit_distance("tru", 3, "true", 4), 1);
    ck_assert_uint_eq(nmc_edit_distance("abcdef", 3, "abcxyz", 3), 0); /* lengths bound the compare */
}
END_TEST

static Suite *diag_suite(void)
{
    Suite *s = suite_create("diag");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_render_text_exact);
    tcase_add_test(tc, test_render_text_variants);
    tcase_add_test(tc, test_caps);
    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_sort_stable);
    tcase_add_test(tc, test_render_json_exact);
    tcase_add_test(tc, test_edit_distance);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(diag_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
