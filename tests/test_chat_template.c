/* test_chat_template.c — chat rendering against transformers' own output.
 *
 * The goldens in tests/data/chat_templates/goldens/ come from
 * tests/oracle/make_chat_goldens.py (apply_chat_template(tokenize=False) on the real
 * templates of Llama 3.1/3.2, Qwen2.5, Qwen3, Mistral-Nemo, SmolLM2, and a list-form
 * config). Every case must render byte-identically, raise the same error, and give the
 * same prefix spans; then unit tests of the chat layer: template choice, inputs, loop
 * spans on templates that are not prefix-stable, strftime_now.
 */
#include "chat_template.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_DIR "tests/data/chat_templates/goldens/"

static const char *const FAMILIES[] = {"llama31", "llama32", "qwen25", "qwen3", "mistral_nemo",
                                       "smollm2", "list_form", NULL};

static const nmc_json_t *load_json(nmc_arena_t *a, const char *path) {
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_json_limits_t lim = {.max_bytes = NMC_JSON_DATA_MAX_BYTES};
    nmc_json_t *j = NULL;
    int rc = nmc_json_parse_file(a, path, &lim, &j, NULL, NULL, &d);
    ck_assert_msg(rc == 0, "%s: %s", path, d.n ? d.items[0].message : "?");
    nmc_diags_free(&d);
    return j;
}

static const char *error_code_for(const char *py_type) {
    if (!strcmp(py_type, "TemplateError")) return "jinja-raise";
    if (!strcmp(py_type, "UndefinedError")) return "jinja-undefined";
    if (!strcmp(py_type, "TypeError")) return "jinja-type";
    if (!strcmp(py_type, "SecurityError")) return "jinja-security";
    return "?";
}

static nmc_chat_input_t input_of(const nmc_json_t *c, int64_t now) {
    const nmc_json_t *agp = nmc_json_get(c, "add_generation_prompt");
    nmc_chat_input_t in = {.messages = nmc_json_get(c, "messages"),
                           .tools = nmc_json_get(c, "tools"),
                           .kwargs = nmc_json_get(c, "kwargs"),
                           .add_generation_prompt = agp && agp->u.boolean,
                           .fixed_time = true,
                           .unix_time = now};
    return in;
}

static void check_spans(nmc_arena_t *a, const nmc_chat_template_t *t, nmc_chat_input_t in,
                        const nmc_json_t *c, const char *name, size_t *n_spans) {
    const nmc_json_t *spans = nmc_json_get(c, "spans");
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_chat_result_t res;
    in.want_spans = true;
    int rc = nmc_chat_render(a, t, &in, &res, &d);
    bool all_stable = true;
    for (size_t i = 0; i < spans->u.arr.n; i++)
        all_stable &= nmc_json_get(spans->u.arr.items[i], "stable") == NULL;
    if (rc != 0) { /* only allowed when transformers' prefixes were not stable either */
        ck_assert_msg(!all_stable, "%s: spans failed: %s", name, d.n ? d.items[0].message : "?");
        ck_assert_str_eq(d.items[0].code, "chat-span");
        nmc_diags_free(&d);
        return;
    }
    ck_assert_uint_eq(res.n_spans, spans->u.arr.n);
    for (size_t i = 0; i < res.n_spans; i++) {
        const nmc_json_t *g = spans->u.arr.items[i];
        ck_assert_int_eq((long)res.spans[i].message, (long)nmc_json_get(g, "message")->u.num.i);
        ck_assert_msg(res.spans[i].start <= res.spans[i].end && res.spans[i].end <= res.len, "%s", name);
        if (nmc_json_get(g, "stable")) {
            ck_assert_int_eq(res.spans[i].method, NMC_CHAT_SPAN_LOOP);
            continue;
        }
        ck_assert_msg(res.spans[i].method == NMC_CHAT_SPAN_PREFIX, "%s: span %zu method", name, i);
        ck_assert_msg(res.spans[i].start == (size_t)nmc_json_get(g, "start")->u.num.i &&
                          res.spans[i].end == (size_t)nmc_json_get(g, "end")->u.num.i,
                      "%s: span %zu is [%zu, %zu)", name, i, res.spans[i].start, res.spans[i].end);
        (*n_spans)++;
    }
    nmc_diags_free(&d);
}

static void run_case(nmc_arena_t *a, const nmc_chat_template_t *t, const nmc_json_t *c, int64_t now,
                     const char *family, size_t *n_spans) {
    const char *name = nmc_json_get(c, "name")->u.str.s;
    char label[160];
    snprintf(label, sizeof label, "%s/%s", family, name);
    nmc_chat_input_t in = input_of(c, now);
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_chat_result_t res;
    int rc = nmc_chat_render(a, t, &in, &res, &d);
    const nmc_json_t *err = nmc_json_get(c, "error");
    if (err) {
        ck_assert_msg(rc == -1, "%s: expected an error, rendered %s", label, res.text);
        const char *type = nmc_json_get(err, "type")->u.str.s;
        ck_assert_msg(!strcmp(d.items[0].code, error_code_for(type)), "%s: code %s for %s", label,
                      d.items[0].code, type);
        ck_assert_str_eq(d.items[0].message, nmc_json_get(err, "message")->u.str.s);
        nmc_diags_free(&d);
        return;
    }
    ck_assert_msg(rc == 0, "%s: %s:%u:%u %s", label, d.n ? d.items[0].code : "", d.n ? d.items[0].line : 0,
                  d.n ? d.items[0].col : 0, d.n ? d.items[0].message : "");
    const nmc_json_t *exp = nmc_json_get(c, "expected");
    ck_assert_msg(res.len == exp->u.str.len && memcmp(res.text, exp->u.str.s, res.len) == 0,
                  "%s: output differs\n--- got ---\n%s\n--- expected ---\n%s", label, res.text, exp->u.str.s);
    nmc_diags_free(&d);
    check_spans(a, t, in, c, label, n_spans);
}

START_TEST(goldens_byte_identical) {
    size_t total = 0, errors = 0, spans = 0;
    for (int f = 0; FAMILIES[f]; f++) {
        nmc_arena_t *a = nmc_arena_new();
        char path[256];
        snprintf(path, sizeof path, GOLDEN_DIR "%s.json", FAMILIES[f]);
        const nmc_json_t *g = load_json(a, path);
        nmc_chat_template_t *t;
        nmc_diags_t d;
        nmc_diags_init(&d);
        ck_assert_msg(nmc_chat_template_from_config(a, nmc_json_get(g, "config"), path, &t, &d) == 0,
                      "%s: %s", path, d.n ? d.items[0].message : "");
        nmc_diags_free(&d);
        const nmc_json_t *cases = nmc_json_get(g, "cases");
        int64_t now = nmc_json_get(g, "now")->u.num.i;
        for (size_t i = 0; i < cases->u.arr.n; i++) {
            run_case(a, t, cases->u.arr.items[i], now, FAMILIES[f], &spans);
            errors += nmc_json_get(cases->u.arr.items[i], "error") != NULL;
        }
        total += cases->u.arr.n;
        nmc_arena_free(a);
    }
    printf("chat goldens: %zu cases identical to transformers (%zu expected errors), %zu prefix spans\n",
           total, errors, spans);
    ck_assert_uint_ge(total, 300);
}
END_TEST

/* ---- unit tests of the chat layer ------------------------------------------------------ */
static const nmc_json_t *js(nmc_arena_t *a, const char *text) {
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_json_t *j = NULL;
    ck_assert_int_eq(nmc_json_parse(a, text, strlen(text), "inline", NULL, &j, &d), 0);
    nmc_diags_free(&d);
    return j;
}

static char *read_file(nmc_arena_t *a, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = nmc_arena_alloc(a, (size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static nmc_chat_template_t *family(nmc_arena_t *a, const char *name) {
    char path[128];
    snprintf(path, sizeof path, "tests/data/chat_templates/%s.jinja", name);
    size_t len;
    char *src = read_file(a, path, &len);
    nmc_chat_template_t *t;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_chat_template_from_string(a, src, len, path, &t, &d), 0);
    nmc_diags_free(&d);
    return t;
}

static const char *span_text(nmc_arena_t *a, const nmc_chat_result_t *r, size_t i) {
    return nmc_arena_strndup(a, r->text + r->spans[i].start, r->spans[i].end - r->spans[i].start);
}

START_TEST(loop_spans_qwen3_multi_turn) {
    nmc_arena_t *a = nmc_arena_new();
    nmc_chat_template_t *t = family(a, "qwen3");
    nmc_chat_input_t in = {.messages = js(a, "[{\"role\":\"user\",\"content\":\"Q1\"},"
                                             "{\"role\":\"assistant\",\"content\":\"A1\",\"reasoning_content\":\"R1\"},"
                                             "{\"role\":\"user\",\"content\":\"Q2\"},"
                                             "{\"role\":\"assistant\",\"content\":\"A2\",\"reasoning_content\":\"R2\"}]"),
                           .want_spans = true};
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_chat_result_t r;
    ck_assert_int_eq(nmc_chat_render(a, t, &in, &r, &d), 0);
    ck_assert_uint_eq(r.n_spans, 2);
    /* turn 1 is rendered without its reasoning once Q2 exists: loop method */
    ck_assert_int_eq(r.spans[0].method, NMC_CHAT_SPAN_LOOP);
    ck_assert_str_eq(span_text(a, &r, 0), "A1<|im_end|>\n");
    ck_assert_int_eq(r.spans[1].method, NMC_CHAT_SPAN_PREFIX);
    ck_assert_str_eq(span_text(a, &r, 1), "<think>\nR2\n</think>\n\nA2<|im_end|>\n");
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

START_TEST(loop_spans_mistral_system_moves) {
    nmc_arena_t *a = nmc_arena_new();
    nmc_chat_template_t *t = family(a, "mistral_nemo");
    nmc_chat_template_set_token(a, t, "bos_token", "<s>");
    nmc_chat_template_set_token(a, t, "eos_token", "</s>");
    nmc_chat_input_t in = {.messages = js(a, "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"u1\"},"
                                             "{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":\"u2\"},"
                                             "{\"role\":\"assistant\",\"content\":\"a2\"}]"),
                           .want_spans = true};
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_chat_result_t r;
    ck_assert_int_eq(nmc_chat_render(a, t, &in, &r, &d), 0);
    /* the system prompt only goes into the last message when that one is a user turn */
    ck_assert_str_eq(r.text, "<s>[INST]u1[/INST]a1</s>[INST]u2[/INST]a2</s>");
    ck_assert_uint_eq(r.n_spans, 2);
    ck_assert_int_eq(r.spans[0].method, NMC_CHAT_SPAN_LOOP);
    ck_assert_str_eq(span_text(a, &r, 0), "a1</s>");
    ck_assert_str_eq(span_text(a, &r, 1), "a2</s>");
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

START_TEST(span_error_when_not_derivable) {
    /* the assistant turn is printed before its header-less loop: neither method applies */
    nmc_arena_t *a = nmc_arena_new();
    const char *src = "{{ messages|map(attribute='content')|reverse|join('|') }}";
    nmc_chat_template_t *t;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_chat_template_from_string(a, src, strlen(src), "rev", &t, &d), 0);
    nmc_chat_input_t in = {.messages = js(a, "[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"a\"},"
                                             "{\"role\":\"user\",\"content\":\"v\"}]"),
                           .want_spans = true};
    nmc_chat_result_t r;
    ck_assert_int_eq(nmc_chat_render(a, t, &in, &r, &d), -1);
    ck_assert_str_eq(d.items[0].code, "chat-span");
    ck_assert_str_eq(d.items[0].message,
                     "messages[1]: cannot tell exactly which output bytes this assistant message produced");
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

START_TEST(input_errors) {
    nmc_arena_t *a = nmc_arena_new();
    nmc_chat_template_t *t = family(a, "smollm2");
    struct {
        const char *messages, *tools, *kwargs, *msg;
    } cases[] = {
        {"[]", NULL, NULL, "messages must be a non-empty array of message objects"},
        {"{\"role\":\"user\"}", NULL, NULL, "messages must be a non-empty array of message objects"},
        {"[\"hi\"]", NULL, NULL, "each message must be an object"},
        {"[{\"role\":\"user\",\"content\":\"x\"}]", "{}", NULL, "tools must be an array of tool schemas"},
        {"[{\"role\":\"user\",\"content\":\"x\"}]", NULL, "[1]", "template kwargs must be an object"},
        {"[{\"role\":\"user\",\"content\":\"x\"}]", NULL, "{\"messages\":[]}",
         "template kwargs may not redefine messages, tools, documents or add_generation_prompt"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nmc_diags_t d;
        nmc_diags_init(&d);
        nmc_chat_input_t in = {.messages = js(a, cases[i].messages),
                               .tools = cases[i].tools ? js(a, cases[i].tools) : NULL,
                               .kwargs = cases[i].kwargs ? js(a, cases[i].kwargs) : NULL};
        nmc_chat_result_t r;
        ck_assert_int_eq(nmc_chat_render(a, t, &in, &r, &d), -1);
        ck_assert_str_eq(d.items[0].code, "chat-input");
        ck_assert_str_eq(d.items[0].message, cases[i].msg);
        ck_assert_ptr_nonnull(d.items[0].help);
        nmc_diags_free(&d);
    }
    nmc_arena_free(a);
}
END_TEST

START_TEST(config_errors) {
    nmc_arena_t *a = nmc_arena_new();
    struct {
        const char *config, *code;
    } cases[] = {
        {"{\"bos_token\":\"<s>\"}", "chat-template-missing"},
        {"{\"chat_template\":null}", "chat-template-missing"},
        {"{\"chat_template\":5}", "chat-template-type"},
        {"{\"chat_template\":[{\"name\":\"default\"}]}", "chat-template-type"},
        {"{\"chat_template\":\"{% if x %}\"}", "jinja-syntax"},
        {"{\"chat_template\":\"{% include 'a' %}\"}", "jinja-unsupported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nmc_diags_t d;
        nmc_diags_init(&d);
        nmc_chat_template_t *t;
        ck_assert_int_eq(nmc_chat_template_from_config(a, js(a, cases[i].config), "tc.json", &t, &d), -1);
        ck_assert_str_eq(d.items[0].code, cases[i].code);
        nmc_diags_free(&d);
    }
    /* list form without "default" and no tools: transformers refuses, so do we */
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_chat_template_t *t;
    ck_assert_int_eq(nmc_chat_template_from_config(
                         a, js(a, "{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"}]}"), "tc.json", &t, &d), 0);
    nmc_chat_input_t in = {.messages = js(a, "[{\"role\":\"user\",\"content\":\"x\"}]")};
    nmc_chat_result_t r;
    ck_assert_int_eq(nmc_chat_render(a, t, &in, &r, &d), -1);
    ck_assert_str_eq(d.items[0].code, "chat-template-missing");
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

START_TEST(strftime_now_injected) {
    nmc_arena_t *a = nmc_arena_new();
    const char *src = "{{ strftime_now('%d %b %Y|%B %A %H:%M:%S %j %y %m %%') }}";
    nmc_chat_template_t *t;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_chat_template_from_string(a, src, strlen(src), "t", &t, &d), 0);
    nmc_chat_input_t in = {.messages = js(a, "[{\"role\":\"user\",\"content\":\"x\"}]"),
                           .fixed_time = true, .unix_time = 1741356309 /* 2025-03-07 14:05:09 UTC */};
    nmc_chat_result_t r;
    ck_assert_int_eq(nmc_chat_render(a, t, &in, &r, &d), 0);
    ck_assert_str_eq(r.text, "07 Mar 2025|March Friday 14:05:09 066 25 03 %");
    const char *bad = "{{ strftime_now('%Z') }}";
    ck_assert_int_eq(nmc_chat_template_from_string(a, bad, strlen(bad), "t", &t, &d), 0);
    ck_assert_int_eq(nmc_chat_render(a, t, &in, &r, &d), -1);
    ck_assert_str_eq(d.items[0].code, "jinja-unsupported");
    ck_assert_str_eq(d.items[0].message, "unsupported strftime_now format directive '%Z'");
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

START_TEST(message_normalization) {
    nmc_arena_t *a = nmc_arena_new();
    const char *src = "{% for m in messages %}{{ m|tojson }}\n{% endfor %}";
    nmc_chat_template_t *t;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_chat_template_from_string(a, src, strlen(src), "t", &t, &d), 0);
    nmc_chat_input_t in = {.messages = js(a, "[{\"role\":\"assistant\",\"content\":null,\"reasoning\":\"r\"},"
                                             "{\"role\":\"user\",\"content\":\"x\",\"thinking\":\"t\",\"reasoning_content\":null}]")};
    nmc_chat_result_t r;
    ck_assert_int_eq(nmc_chat_render(a, t, &in, &r, &d), 0);
    ck_assert_str_eq(r.text, "{\"thinking\": \"r\", \"role\": \"assistant\", \"reasoning\": \"r\", \"reasoning_content\": \"r\"}\n"
                             "{\"thinking\": \"t\", \"role\": \"user\", \"content\": \"x\", \"reasoning_content\": \"t\"}\n");
    nmc_diags_free(&d);
    nmc_arena_free(a);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("chat_template");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, goldens_byte_identical);
    tcase_add_test(tc, loop_spans_qwen3_multi_turn);
    tcase_add_test(tc, loop_spans_mistral_system_moves);
    tcase_add_test(tc, span_error_when_not_derivable);
    tcase_add_test(tc, input_errors);
    tcase_add_test(tc, config_errors);
    tcase_add_test(tc, strftime_now_injected);
    tcase_add_test(tc, message_normalization);
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
