/* test_jinja.c — unit tests of the Jinja2 interpreter: each construct, each error.
 *
 * The expected outputs of `OUTPUTS` were produced by Jinja2 3.1.6 itself, in the
 * environment transformers builds (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, loopcontrols, transformers' tojson), on the variables of VARS below.
 * Errors assert the exact code, message and template line:column.
 */
#include "jinja.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char VARS[] =
    "{\"m\": {\"role\": \"user\", \"content\": \"hi\"}, \"l\": [1, 2, 3], \"s\": \"h\\u00e9llo w\\u00f6rld\", "
    "\"e\": [], \"d\": {\"b\": 1, \"a\": [1, {\"x\": null}], \"c\": \"\\u00e9\\n\"}, \"f\": 1.5, \"n\": null, "
    "\"t\": true}";

static const struct {
    const char *tpl, *out;
} OUTPUTS[] = {
    {"{% for i in [1,2] %}{% if i == 2 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}{{x}}",
     "[]"},
    {"{% set x = 5 %}{% for i in [1,2] %}[{{ x }}]{% set x = i %}{% endfor %}{{x}}",
     "[5][5]5"},
    {"a\n  {# c #}\n  b\n  {{ 1 }}\n",
     "a\n  b\n  1"},
    {"{{ [1, 'a', None, True, {'k': 1.5}, (1,2)] }} {{ 1e20 }} {{ 1.0 }} {{ 1e16 }} {{ 1.5e-5 }} {{ 0.0001 }} {{ 123456789.123 }} {{ 0.1+0.2 }}",
     "[1, 'a', None, True, {'k': 1.5}, (1, 2)] 1e+20 1.0 1e+16 1.5e-05 0.0001 123456789.123 0.30000000000000004"},
    {"{{ m.x }}|{{ m['x'] is defined }}|{{ l[5] is defined }}",
     "|False|False"},
    {"{{ y is iterable }} {{ y|length }} {{ y|trim }}",
     "True 0 "},
    {"{{ m|items|list }}",
     "[('role', 'user'), ('content', 'hi')]"},
    {"{{ \"it's\" }} {{ [\"it's\", 'a\"b', 'x\\ny', s] }}",
     "it's [\"it's\", 'a\"b', 'x\\ny', 'h\303\251llo w\303\266rld']"},
    {"{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 6/2 }} {{ 2**10 }} {{ True + 1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}",
     "3 -4 2 3.5 3.0 1024 2 3.0 0.5"},
    {"{{ x if false }}|{{ (x if false) is defined }}",
     "|False"},
    {"{% for a in [1,2,3] if a > 1 %}{{ loop.index }}/{{loop.length}}{% else %}E{% endfor %}",
     "1/22/2"},
    {"{% for a in e %}x{% else %}E{% endfor %}",
     "E"},
    {"{{ 'abc'[::-1] }} {{ l[-1] }} {{ s[1:3] }} {{ s|length }} {{ l[::2] }} {{ l[5:] }} {{ l[-2:] }} {{ s[-3:] }} {{ l[::-1] }} {{ l[2:0:-1] }}",
     "cba 3 \303\251l 11 [1, 3] [] [2, 3] rld [3, 2, 1] [3, 2]"},
    {"{% set ns = namespace(a=1) %}{% set ns.a = 2 %}{{ ns.a }}",
     "2"},
    {"{{ 'a' 'b' }} {{ 1 == 1.0 }} {{ 'x' in 'axb' }} {{ 'a' ~ 1 ~ none }} {{ 'q' not in l }}",
     "ab True True a1None True"},
    {"{{ [1,2]|join(', ') }} {{ {'b':1,'a':2}|tojson }} {{ 3|string }} {{ none|string }} {{ x|string }}",
     "1, 2 {\"b\": 1, \"a\": 2} 3 None "},
    {"{{ 'a b  c'.split() }} {{ 'a,b'.split(',') }} {{ ' x '.strip() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a b c '.split(None, 1) }} {{ ' a b c '.rsplit(None, 1) }}",
     "['a', 'b', 'c'] ['a', 'b'] x ['a', 'b,c'] ['a,b', 'c'] ['a', 'b c '] [' a b', 'c']"},
    {"{% if true %}\n  x\n{% endif %}\n",
     "  x\n"},
    {"  {%- if true %}x{% endif -%}  \n y",
     "xy"},
    {"{{ m.get('role') }} {{ m.get('z') }} {{ m.get('z', 3) }} {{ m.keys()|list }} {{ m.values()|list }}",
     "user None 3 ['role', 'content'] ['user', 'hi']"},
    {"{{ d|tojson }}\n{{ d|tojson(indent=2) }}\n{{ d|tojson(indent=2, sort_keys=true) }}\n{{ d|tojson(separators=(',', ':')) }}\n{{ d|tojson(indent='\\t') }}\n{{ e|tojson(indent=2) }} {{ {}|tojson(indent=2) }} {{ f|tojson }} {{ \"a\\u0001\\\"\\\\\"|tojson }}",
     "{\"b\": 1, \"a\": [1, {\"x\": null}], \"c\": \"\303\251\\n\"}\n{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {\n      \"x\": null\n    }\n  ],\n  \"c\": \"\303\251\\n\"\n}\n{\n  \"a\": [\n    1,\n    {\n      \"x\": null\n    }\n  ],\n  \"b\": 1,\n  \"c\": \"\303\251\\n\"\n}\n{\"b\":1,\"a\":[1,{\"x\":null}],\"c\":\"\303\251\\n\"}\n{\n\t\"b\": 1,\n\t\"a\": [\n\t\t1,\n\t\t{\n\t\t\t\"x\": null\n\t\t}\n\t],\n\t\"c\": \"\303\251\\n\"\n}\n[] {} 1.5 \"a\\u0001\\\"\\\\\""},
    {"{{ \"  Hello World  \"|trim }}|{{ \"xxhixx\"|trim('x') }}|{{ \"hello world-foo(bar\"|title }}|{{ \"hELLO\"|capitalize }}|{{ \"aBc\"|upper }}{{ \"aBc\"|lower }}",
     "Hello World|hi|Hello World-Foo(Bar|Hello|ABCabc"},
    {"{{ l|first }} {{ l|last }} {{ e|first }} {{ l|length }} {{ d|length }} {{ l|reverse|list }} {{ 'abc'|reverse }} {{ l|sum }} {{ l|max }} {{ l|min }}",
     "1 3  3 3 [3, 2, 1] cba 6 3 1"},
    {"{{ [{'r':'user'},{'r':'a'},{'r':'user','x':1}]|selectattr('r','equalto','user')|list }} {{ [{'r':'user'},{'r':'a'}]|rejectattr('r','eq','user')|list }} {{ [{'r':'user'},{'r':'a'}]|map(attribute='r')|join(',') }}",
     "[{'r': 'user'}, {'r': 'user', 'x': 1}] [{'r': 'a'}] user,a"},
    {"{{ ['a','code','b']|reject('equalto','code')|join(', ') }} {{ [0,1,'',2]|select|list }} {{ ['a','B']|map('upper')|list }}",
     "a, b [1, 2] ['A', 'B']"},
    {"{{ x|default('dflt') }} {{ ''|default('dflt') }} {{ ''|default('dflt', true) }} {{ n|d('z') }}",
     "dflt  dflt None"},
    {"{{ \"3\"|int + 1 }} {{ \"3.7\"|int }} {{ \"x\"|int }} {{ \"x\"|int(5) }} {{ 3.9|int }} {{ \"2.5\"|float }} {{ 2|float }}",
     "4 3 0 5 3 2.5 2.0"},
    {"{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('bob') }} {{ greet('amy', punct='?') }} {{ greet(name='z') }}",
     "Hi bob! Hi amy? Hi z!"},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k, v in d|items %}{{ k }}{% endfor %} {% for k in d %}{{ k }}{% endfor %}",
     "b=1;a=[1, {'x': None}];c=\303\251\n; bac bac"},
    {"{% for x in l %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% if x == 3 %}{% break %}{% endif %}{% endfor %}",
     "13"},
    {"{% for x in l %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('a','b') }}|{% endfor %}",
     "032TrueFalse2a|121FalseFalse13b|210FalseTrue2a|"},
    {"{% set x %}block {{ 1 + 1 }}{% endset %}[{{ x }}]",
     "[block 2]"},
    {"{{ t and 'yes' or 'no' }} {{ n or 'fallback' }} {{ 0 and 1 }} {{ not n }} {{ not l }}",
     "yes fallback 0 True False"},
    {"{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ l == [1,2,3] }} {{ (1,2) == [1,2] }} {{ 1 != 2 }}",
     "True False True True False True"},
    {"{{ n.x }}",
     ""},
    {"{{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('x','c')) }} {{ 'a-b'.replace('-', '+') }} {{ 'abc'.upper() }} {{ 'Hello World'.lower() }} {{ 'hello world'.title() }} {{ 'abcabc'.find('c') }} {{ 'abcabc'.rfind('c') }} {{ 'xx'.count('x') }} {{ ','.join(['a','b']) }}",
     "True True a+b ABC hello world Hello World 2 5 2 a,b"},
    {"{{ '\\n\\nabc\\n'.lstrip('\\n') }}|{{ 'abc\\n\\n'.rstrip() }}|{{ '<think>x</think>\\n\\nans'.split('</think>')[-1].lstrip('\\n') }}",
     "abc\n|abc|ans"},
    {"{{ m.role is string }} {{ l is sequence }} {{ d is mapping }} {{ 3 is number }} {{ 3 is integer }} {{ 3.0 is float }} {{ n is none }} {{ t is true }} {{ t is boolean }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 'abc' is lower }} {{ l is not none }} {{ 2 is in l }}",
     "True True True True True True True True True True True True True True True"},
    {"{{ 'abc' is iterable }} {{ 3 is iterable }} {{ m is iterable }} {{ m is sequence }}",
     "True False True True"},
    {"{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ dict(a=1, b='x') }}",
     "[0, 1, 2] [1, 3, 5] {'a': 1, 'b': 'x'}"},
    {"{{ {'a': {'b': 1}} }}",
     "{'a': {'b': 1}}"},
    {"{{ -3|abs }} {{ (-3)|abs }} {{ 2.567|round(1) }} {{ 2.5|round }} {{ 'a b c'|wordcount }}",
     "3 3 2.6 2.0 3"},
    {"{{ \"x\\ny\\n\\nz\"|indent(2) }}|{{ \"x\\ny\"|indent(2, true) }}",
     "x\n  y\n\n  z|  x\n  y"},
    {"{{ ['b','A','c']|sort|list }} {{ [3,1,2]|sort(reverse=true) }} {{ ['a','A','b']|unique|list }}",
     "['A', 'b', 'c'] [3, 2, 1] ['a', 'b']"},
    {"{{ \"<a href='x'>&</a>\"|e }}",
     "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"},
    {"{{ 'a' * 3 }} {{ [1] * 2 }} {{ l + [4] }} {{ '\303\251' ~ 'x' }}",
     "aaa [1, 1] [1, 2, 3, 4] \303\251x"},
    {"{% if l|length > 2 and (m.role == 'user' or false) %}yes{% elif true %}no{% else %}never{% endif %}",
     "yes"},
    {"{{ m['role'] }} {{ m.content|upper }} {{ l[0] + l[1] }} {{ d['a'][1]['x'] }} {{ d.a.1.x is none }}",
     "user HI 3 None True"},
    {"{{ l.0 }}{{ 'x' ~ l }}",
     "1x[1, 2, 3]"},
    {"{%- set ns = namespace(found=false) -%}\n{%- for message in [m, m] -%}\n    {%- if message['role'] == 'user' and not ns.found -%}\n        {%- set ns.found = true -%}\n        [{{ loop.index }}]\n    {%- endif -%}\n{%- endfor -%}\n{{ ns.found }}",
     "[1]True"},
    {"{{ s.split() }} {{ 'a\\u3000b'.split() }}",
     "['h\303\251llo', 'w\303\266rld'] ['a', 'b']"},
    {"{{ f }} {{ -0.0 }} {{ 1e-7 }} {{ 2.0**0.5 }} {{ 10/3 }} {{ 1e300*1e10 }}",
     "1.5 -0.0 1e-07 1.4142135623730951 3.3333333333333335 inf"},
    {"{{ 'x' if n is none else 'y' }} {{ 'q' if l else 'r' }}",
     "x q"},
    {"{{ m }} {{ d }} {{ e }} {{ t }} {{ n }}",
     "{'role': 'user', 'content': 'hi'} {'b': 1, 'a': [1, {'x': None}], 'c': '\303\251\\n'} [] True None"},
    {"{% for x in m %}{{ x }},{% endfor %}{% for c in 'h\303\251' %}[{{ c }}]{% endfor %}",
     "role,content,[h][\303\251]"},
    {"{{ l[1:] | length }} {{ (l | length) - 1 }} {{ l|length - 1 }}\n",
     "2 2 2"},

};

typedef struct {
    nmc_arena_t *a;
    nmc_diags_t d;
    char *out;
    size_t len;
    int rc;
} run_t;

static void gen_hook(void *ud, size_t start, size_t end) {
    size_t *span = ud;
    span[0] = start;
    span[1] = end;
}

static run_t run_with(const char *tpl, const nmc_jinja_hooks_t *hooks) {
    run_t r = {.a = nmc_arena_new()};
    nmc_diags_init(&r.d);
    nmc_json_t *j;
    ck_assert_int_eq(nmc_json_parse(r.a, VARS, strlen(VARS), "vars", NULL, &j, &r.d), 0);
    nmc_jv_t vars = nmc_jv_from_json(r.a, j);
    nmc_jinja_template_t *t;
    r.rc = nmc_jinja_parse(r.a, tpl, strlen(tpl), "t.jinja", &t, &r.d);
    if (r.rc == 0) r.rc = nmc_jinja_render(r.a, t, vars.u.dict, hooks, &r.out, &r.len, &r.d);
    return r;
}

static void done(run_t *r) {
    nmc_diags_free(&r->d);
    nmc_arena_free(r->a);
}

START_TEST(outputs_match_jinja2) {
    for (size_t i = 0; i < sizeof OUTPUTS / sizeof OUTPUTS[0]; i++) {
        run_t r = run_with(OUTPUTS[i].tpl, NULL);
        ck_assert_msg(r.rc == 0, "case %zu %s: %s", i, OUTPUTS[i].tpl, r.d.n ? r.d.items[0].message : "");
        ck_assert_msg(strcmp(r.out, OUTPUTS[i].out) == 0, "case %zu %s\n got: [%s]\nwant: [%s]", i,
                      OUTPUTS[i].tpl, r.out, OUTPUTS[i].out);
        done(&r);
    }
}
END_TEST

static const struct {
    const char *tpl, *code, *msg;
    unsigned line, col;
} ERRORS[] = {
    /* Jinja2's own messages (UndefinedError, TemplateError, SecurityError) */
    {"{{ m.x.y }}", "jinja-undefined", "'dict object' has no attribute 'x'", 1, 8},
    {"{{ y.x }}", "jinja-undefined", "'y' is undefined", 1, 6},
    {"\n  {{ y + 'a' }}", "jinja-undefined", "'y' is undefined", 2, 8},
    {"{{ undefined_fn() }}", "jinja-undefined", "'undefined_fn' is undefined", 1, 16},
    {"{{ l[7].x }}", "jinja-undefined", "list object has no element 7", 1, 9},
    {"{{ raise_exception('boom ' ~ 1) }}", "jinja-raise", "boom 1", 1, 19},
    {"{{ l.append(4) }}", "jinja-security", "access to attribute 'append' of 'list' object is unsafe.", 1, 12},
    {"{{ n.x.y }}", "jinja-undefined", "'None' has no attribute 'x'", 1, 8},
    {"{{ e|first + 1 }}", "jinja-undefined", "No first item, sequence was empty.", 1, 12},
    {"{{ x|tojson }}", "jinja-type", "Object of type Undefined is not JSON serializable", 1, 6},
    /* Python's TypeError / ValueError texts */
    {"{{ 'a' + 1 }}", "jinja-type", "can only concatenate str (not \"int\") to str", 1, 8},
    {"{{ 1 < 'a' }}", "jinja-type", "'<' not supported between instances of 'int' and 'str'", 1, 6},
    {"{{ 1 // 0 }}", "jinja-value", "division by zero", 1, 6},
    {"{{ 1 in 5 }}", "jinja-type", "argument of type 'int' is not iterable", 1, 6},
    {"{% for x in 5 %}{% endfor %}", "jinja-type", "'int' object is not iterable", 1, 13},
    {"{{ 3|length }}", "jinja-type", "object of type 'int' has no len()", 1, 6},
    {"{{ m|items|first|upper }}{{ l|items }}", "jinja-type", "Can only get item pairs from a mapping.", 1, 31},
    {"{% set a, b = l %}", "jinja-value", "too many values to unpack (expected 2, got 3)", 1, 8},
    {"{% set n.x = 1 %}", "jinja-type", "cannot assign attribute on non-namespace object", 1, 10},
    {"{{ namespace(_x=1) }}", "jinja-security",
     "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '_x'. Please rename the attribute.", 1, 13},
    {"{{ range(200000)|length }}", "jinja-security",
     "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).", 1, 9},
    {"{{ 9223372036854775807 + 1 }}", "jinja-limit", "integer result does not fit 64 bits", 1, 24},
    /* unsupported constructs name themselves */
    {"{{ l|batch(2) }}", "jinja-unsupported", "unsupported filter 'batch'", 1, 6},
    {"{{ l is prime }}", "jinja-unsupported", "unsupported test 'prime'", 1, 9},
    {"{{ s.zfill(3) }}", "jinja-unsupported", "unsupported method: str.zfill()", 1, 11},
    {"{{ '%s' % 1 }}", "jinja-unsupported", "unsupported: printf-style string formatting ('%' on a string)", 1, 9},
    {"a\n{% include 'x' %}", "jinja-unsupported", "unsupported tag 'include'", 2, 4},
    {"{% raw %}x{% endraw %}", "jinja-unsupported", "unsupported tag 'raw'", 1, 4},
    {"{{ cycler(1) }}", "jinja-unsupported", "unsupported global: cycler", 1, 4},
    {"{% for x in l recursive %}{% endfor %}", "jinja-unsupported", "unsupported: recursive for loops", 1, 15},
    /* syntax */
    {"{% if x %}", "jinja-syntax", "unexpected end of template: 'if' is never closed (expected 'elif|else|endif')", 1, 4},
    {"{{ 1 + }}", "jinja-syntax", "expected an expression, got end of print statement", 1, 8},
    {"{% endif %}", "jinja-syntax", "unexpected 'endif'", 1, 4},
    {"{{ 'abc }}", "jinja-syntax", "unterminated string literal", 1, 4},
    {"{{ a ]}}", "jinja-syntax", "unexpected ']'", 1, 6},
    {"{# open", "jinja-syntax", "missing end of comment tag", 1, 1},
    {"{{ x is a is b }}", "jinja-syntax", "you cannot chain multiple tests with is", 1, 11},
};

START_TEST(errors_exact) {
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++) {
        run_t r = run_with(ERRORS[i].tpl, NULL);
        ck_assert_msg(r.rc == -1, "case %zu %s rendered [%s]", i, ERRORS[i].tpl, r.out);
        ck_assert_uint_eq(r.d.n, 1);
        const nmc_diag_t *d = &r.d.items[0];
        ck_assert_msg(!strcmp(d->code, ERRORS[i].code) && !strcmp(d->message, ERRORS[i].msg) &&
                          d->line == ERRORS[i].line && d->col == ERRORS[i].col,
                      "case %zu %s: got %u:%u %s %s", i, ERRORS[i].tpl, d->line, d->col, d->code, d->message);
        ck_assert_str_eq(d->file, "t.jinja");
        if (!strcmp(d->code, "jinja-unsupported")) ck_assert_ptr_nonnull(d->help);
        done(&r);
    }
}
END_TEST

START_TEST(generation_hook_and_limits) {
    size_t span[2] = {0, 0};
    nmc_jinja_hooks_t hooks = {.ud = span, .on_generation = gen_hook};
    run_t r = run_with("ab{% generation %}{{ m.content }}!{% endgeneration %}cd", &hooks);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_str_eq(r.out, "abhi!cd");
    ck_assert_uint_eq(span[0], 2);
    ck_assert_uint_eq(span[1], 5);
    done(&r);
    /* recursion through macros stops at the depth limit instead of the C stack */
    r = run_with("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL);
    ck_assert_int_eq(r.rc, -1);
    ck_assert_str_eq(r.d.items[0].code, "jinja-limit");
    done(&r);
    /* a value larger than the output limit is refused before it is built */
    r = run_with("{{ 'ab' * 200000000 }}", NULL);
    ck_assert_int_eq(r.rc, -1);
    ck_assert_str_eq(r.d.items[0].code, "jinja-limit");
    done(&r);
}
END_TEST

START_TEST(values_api) {
    nmc_arena_t *a = nmc_arena_new();
    nmc_jv_t d = nmc_jv_dict(a);
    nmc_jdict_setc(a, d.u.dict, "k", nmc_jv_int(1));
    nmc_jdict_setc(a, d.u.dict, "j", nmc_jv_float(0.1));
    nmc_jdict_setc(a, d.u.dict, "k", nmc_jv_cstr(a, "it's"));
    size_t n;
    ck_assert_str_eq(nmc_jv_to_str(a, &d, &n), "{'k': \"it's\", 'j': 0.1}");
    nmc_jv_t one = nmc_jv_int(1), onef = nmc_jv_float(1.0), t = nmc_jv_bool(true);
    ck_assert(nmc_jv_equal(&one, &onef));
    ck_assert(nmc_jv_equal(&one, &t));
    nmc_jv_t f = nmc_jv_float(1e22);
    ck_assert_str_eq(nmc_jv_to_str(a, &f, &n), "1e+22");
    nmc_arena_free(a);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("jinja");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, outputs_match_jinja2);
    tcase_add_test(tc, errors_exact);
    tcase_add_test(tc, generation_hook_and_limits);
    tcase_add_test(tc, values_api);
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
