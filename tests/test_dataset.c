/* test_dataset.c — the dataset pipeline: token ids and loss masks equal to transformers / TRL
 * goldens (tests/oracle/dataset_golden.py), every malformed-row diagnostic with its exact text,
 * prompt_template validation, truncation and zero-trainable accounting, packing invariants,
 * shuffle determinism and sharding, resume, the validation hold-out, the tokenization cache
 * (reuse, invalidation, damaged entries), streaming with bounded memory, and `nmc data
 * inspect` end to end through a temporary store. */
#include "dataset.h"
#include "job.h"
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* store.h cannot be included beside job.h (both define nmc_store_t); the CLI entry points
 * are all this test needs from it. */
int nmc_cmd_models(int argc, char **argv);
int nmc_cmd_filesets(int argc, char **argv);

#ifdef __SANITIZE_ADDRESS__
/* ASan keeps freed blocks in a 256 MB quarantine by default, which a streaming test would
 * read as growth; a small quarantine keeps the memory bound meaningful under `make sanitize`. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=8"; }
#endif

#define DS "tests/data/datasets"
#define TOKS "tests/data/tokenizers"

static char tmp[128];
static nmc_diags_t D;

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    ck_assert_msg(system(cmd) == 0, "command failed: %s", cmd);
}

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/nmc-test-dataset-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    nmc_diags_init(&D);
}

static void teardown(void)
{
    nmc_diags_free(&D);
    sh("rm -rf '%s'", tmp);
}

static const char *tpath(const char *name)
{
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", tmp, name);
    return p[k];
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Diagnostics as "line:col: code: message" lines (file names vary by test). */
static char *diag_text(const nmc_diags_t *d)
{
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    s[0] = '\0';
    for (size_t i = 0; i < d->n; i++) {
        const nmc_diag_t *r = &d->items[i];
        n += (size_t)snprintf(s + n, cap - n, "%u:%u: %s: %s\n", r->line, r->col, r->code, r->message);
    }
    return s;
}

/* A model from a tokenizer fixture and a tokenizer_config.json. */
static nmc_dataset_model_t *model(const char *tok, const char *config)
{
    char tp[512], cp[512];
    snprintf(tp, sizeof tp, "%s/%s", TOKS, tok);
    if (config[0] == '/') snprintf(cp, sizeof cp, "%s", config);
    else snprintf(cp, sizeof cp, "%s/%s", DS, config);
    nmc_tokenizer_t *t = nmc_tokenizer_load(tp, &D);
    ck_assert_ptr_nonnull(t);
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *cfg;
    ck_assert_int_eq(nmc_json_parse_file(a, cp, NULL, &cfg, NULL, NULL, &D), 0);
    nmc_dataset_model_t *m;
    char fp[1100];
    snprintf(fp, sizeof fp, "%s|%s", tp, cp);
    ck_assert_int_eq(nmc_dataset_model_from(t, cfg, cp, fp, &m, &D), 0);
    nmc_arena_free(a);
    return m;
}

static nmc_dataset_opts_t opts(nmc_dataset_format_t f, const char *const *files, size_t n)
{
    nmc_dataset_opts_t o = {0};
    o.format = f;
    o.text_field = "text";
    o.max_seq_length = 4096;
    o.seed = 1234;
    o.train_files = files, o.n_train_files = n;
    return o;
}

static nmc_dataset_t *open_ok(const nmc_dataset_opts_t *o, const nmc_dataset_model_t *m)
{
    nmc_dataset_t *ds = NULL;
    nmc_dataset_status_t st = nmc_dataset_open(o, m, &ds, &D);
    char *t = diag_text(&D);
    ck_assert_msg(st == NMC_DATASET_OK, "open failed (%d):\n%s", st, t);
    free(t);
    return ds;
}

/* ---- goldens ------------------------------------------------------------------------------ */
static nmc_dataset_format_t golden_format(const char *f)
{
    if (strcmp(f, "text") == 0) return NMC_DS_FMT_TEXT;
    if (strcmp(f, "chat_text") == 0) return NMC_DS_FMT_CHAT_AS_TEXT;
    if (strcmp(f, "template") == 0) return NMC_DS_FMT_TEMPLATE;
    return NMC_DS_FMT_AUTO;
}

static void check_golden_case(const nmc_json_t *c)
{
    const char *name = nmc_json_get(c, "name")->u.str.s;
    nmc_dataset_model_t *m = model(nmc_json_get(c, "tokenizer")->u.str.s, nmc_json_get(c, "config")->u.str.s);
    char file[512];
    snprintf(file, sizeof file, "%s/%s", DS, nmc_json_get(c, "file")->u.str.s);
    const char *files[] = {file};
    nmc_dataset_opts_t o = opts(golden_format(nmc_json_get(c, "format")->u.str.s), files, 1);
    const nmc_json_t *pt = nmc_json_get(c, "prompt_template");
    if (pt) o.prompt_template = pt->u.str.s;
    nmc_dataset_t *ds = open_ok(&o, m);
    const nmc_json_t *samples = nmc_json_get(c, "samples");
    int64_t k = 0, skipped = 0;
    for (size_t i = 0; i < samples->u.arr.n; i++) {
        const nmc_json_t *g = samples->u.arr.items[i];
        int64_t line = nmc_json_get(g, "line")->u.num.i;
        if (nmc_json_get(g, "skipped")) {
            const nmc_dataset_report_t *r = nmc_dataset_report(ds, NMC_DS_TRAIN);
            ck_assert_int_eq(r->zero_at[skipped].line, line);
            skipped++;
            continue;
        }
        nmc_dataset_sample_t s;
        ck_assert_int_eq(nmc_dataset_get_sample(ds, NMC_DS_TRAIN, k++, &s, &D), 0);
        ck_assert_int_eq(s.line, line);
        const nmc_json_t *ids = nmc_json_get(g, "ids"), *mask = nmc_json_get(g, "mask");
        ck_assert_msg((size_t)s.n == ids->u.arr.n, "%s line %lld: %lld tokens, golden %zu", name, (long long)line,
                      (long long)s.n, ids->u.arr.n);
        for (size_t j = 0; j < ids->u.arr.n; j++) {
            ck_assert_msg(s.ids[j] == ids->u.arr.items[j]->u.num.i, "%s line %lld token %zu: id %d, golden %lld", name,
                          (long long)line, j, s.ids[j], (long long)ids->u.arr.items[j]->u.num.i);
            ck_assert_msg(s.mask[j] == mask->u.arr.items[j]->u.num.i, "%s line %lld token %zu: mask %d, golden %lld",
                          name, (long long)line, j, s.mask[j], (long long)mask->u.arr.items[j]->u.num.i);
        }
        nmc_dataset_sample_free(&s);
    }
    const nmc_dataset_report_t *r = nmc_dataset_report(ds, NMC_DS_TRAIN);
    ck_assert_int_eq(r->samples, k);
    ck_assert_int_eq(r->zero_trainable, skipped);
    ck_assert_int_eq(r->mask_approx, 0);
    ck_assert_int_eq(r->invalid, 0);
    nmc_dataset_free(ds);
    nmc_dataset_model_free(m);
}

START_TEST(goldens)
{
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *g;
    nmc_json_limits_t lim = {.max_bytes = NMC_JSON_DATA_MAX_BYTES};
    ck_assert_int_eq(nmc_json_parse_file(a, DS "/goldens.json", &lim, &g, NULL, NULL, &D), 0);
    const nmc_json_t *cases = nmc_json_get(g, "cases");
    ck_assert_int_ge(cases->u.arr.n, 7);
    for (size_t i = 0; i < cases->u.arr.n; i++) check_golden_case(cases->u.arr.items[i]);
    nmc_arena_free(a);
}
END_TEST

/* ---- malformed rows ------------------------------------------------------------------------- */
static char *open_bad_model(nmc_dataset_format_t f, const char *rows, const char *config)
{
    const char *p = tpath("bad.jsonl");
    write_file(p, rows);
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", config);
    nmc_dataset_opts_t o = opts(f, files, 1);
    nmc_dataset_t *ds = NULL;
    nmc_diags_free(&D);
    nmc_diags_init(&D);
    ck_assert_int_eq(nmc_dataset_open(&o, m, &ds, &D), NMC_DATASET_INVALID);
    nmc_dataset_model_free(m);
    return diag_text(&D);
}

static char *open_bad(nmc_dataset_format_t f, const char *rows, const char *tmpl, nmc_dataset_status_t want)
{
    const char *p = tpath("bad.jsonl");
    write_file(p, rows);
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", "chat_qwen25.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(f, files, 1);
    o.prompt_template = tmpl;
    nmc_dataset_t *ds = NULL;
    nmc_diags_free(&D);
    nmc_diags_init(&D);
    ck_assert_int_eq(nmc_dataset_open(&o, m, &ds, &D), want);
    ck_assert_ptr_null(ds);
    nmc_dataset_model_free(m);
    return diag_text(&D);
}

START_TEST(malformed_rows_auto)
{
    const char *rows =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"ok\"}]}\n"
        "{\"messages\": [1,]}\n"
        "[1, 2]\n"
        "{\"input\": \"x\", \"output\": \"y\"}\n"
        "{\"prompt\": \"only a prompt\"}\n"
        "{\"prompt\": 5, \"completion\": \"x\"}\n"
        "{\"messages\": {}}\n"
        "{\"messages\": []}\n"
        "{\"messages\": [\"hello\"]}\n"
        "{\"messages\": [{\"content\": \"no role\"}]}\n"
        "{\"messages\": [{\"role\": 7, \"content\": \"x\"}]}\n"
        "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}\n"
        "{\"messages\": [{\"role\": \"user\"}]}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\", \"url\": \"x\"}]}]}\n"
        "{\"messages\": [{\"role\": \"assistant\", \"content\": null, \"tool_calls\": {}}]}\n"
        "{\"tools\": {}, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n"
        "   \n"
        "{\"completion\": \"no prompt\"}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n"
        "{\"a\": \"\xff\"}\n";
    char *t = open_bad(NMC_DS_FMT_AUTO, rows, NULL, NMC_DATASET_INVALID);
    const char *want =
        "2:16: json-trailing-comma: trailing comma after the last element\n"
        "3:1: data-wrong-type: row must be a JSON object, got array\n"
        "4:1: data-unknown-format: row has neither `messages` nor `prompt` and `completion`\n"
        "5:1: data-missing-field: row has no `completion` (the row has `prompt`)\n"
        "6:12: data-wrong-type: `prompt` must be a string, got number\n"
        "7:14: data-wrong-type: `messages` must be an array of message objects, got object\n"
        "8:14: data-empty-messages: `messages` is empty\n"
        "9:15: data-wrong-type: messages[0] must be an object, got string\n"
        "10:15: data-missing-field: messages[0] has no `role`\n"
        "11:24: data-wrong-type: messages[0].role must be a string, got number\n"
        "12:24: data-unknown-role: messages[0].role is \"bot\"\n"
        "13:15: data-missing-field: messages[0] has no `content`\n"
        "14:43: data-wrong-type: messages[0].content must be a string, null or a list of text parts, got number\n"
        "15:44: data-wrong-type: messages[0].content[0] is not a text part\n"
        "16:68: data-wrong-type: messages[0].tool_calls must be an array, got object\n"
        "17:11: data-wrong-type: `tools` must be an array of tool definitions, got object\n"
        "19:1: data-missing-field: row has no `prompt` (the row has `completion`)\n"
        /* the invalid UTF-8 of line 21: the JSON layer's own code and text, at the row's line */
        "21:8: json-invalid-utf8: invalid UTF-8 in string: byte that never appears in UTF-8 (byte 0xFF)\n";
    ck_assert_msg(strcmp(t, want) == 0, "got:\n%s", t);
    ck_assert_int_eq(D.n_errors, 18);
    free(t);
}
END_TEST

START_TEST(malformed_rows_other_formats)
{
    char *t = open_bad(NMC_DS_FMT_TEXT, "{\"messages\": []}\n{\"body\": \"x\"}\n{\"text\": 1}\n", NULL, NMC_DATASET_INVALID);
    ck_assert_str_eq(t, "1:1: data-missing-field: row has no `text` (dataset.text_field)\n"
                        "2:1: data-missing-field: row has no `text` (dataset.text_field)\n"
                        "3:10: data-wrong-type: `text` must be a string, got number\n");
    ck_assert_str_eq(D.items[0].help, "this row has `messages`: set dataset.apply_chat_template to true");
    free(t);
    t = open_bad(NMC_DS_FMT_CHAT_AS_TEXT, "{\"text\": \"x\"}\n", NULL, NMC_DATASET_INVALID);
    ck_assert_str_eq(t, "1:1: data-missing-field: row has no `messages` (dataset.apply_chat_template is true)\n");
    free(t);
    t = open_bad(NMC_DS_FMT_TEMPLATE, "{\"q\": \"x\"}\n{\"q\": \"x\", \"a\": [1]}\n{\"q\": \"x\", \"a\": \"y\"}\n", "{q} -> {a}",
                 NMC_DATASET_INVALID);
    ck_assert_str_eq(t, "1:1: data-template-column-missing: row has no column `a` (named in dataset.prompt_template)\n"
                        "2:17: data-wrong-type: column `a` must be a string, got array\n");
    free(t);
    /* a chat template that raises on the row: its own message, at the row */
    write_file(tpath("raise_config.json"), "{\"eos_token\": \"<|im_end|>\", \"chat_template\": "
                                           "\"{% if messages[0].role != 'user' %}{{ raise_exception('first message must be the user') }}"
                                           "{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}\"}");
    const char *p = tpath("bad2.jsonl");
    write_file(p, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}\n"
                  "{\"messages\": [{\"role\": \"assistant\", \"content\": \"y\"}]}\n");
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", tpath("raise_config.json"));
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_AUTO, files, 1);
    nmc_dataset_t *ds;
    nmc_diags_free(&D);
    nmc_diags_init(&D);
    ck_assert_int_eq(nmc_dataset_open(&o, m, &ds, &D), NMC_DATASET_INVALID);
    t = diag_text(&D);
    ck_assert_str_eq(t, "2:14: data-chat-template: the chat template failed on this row: first message must be the user\n");
    free(t);
    nmc_dataset_model_free(m);
    /* chat rows for a model without a chat template */
    t = open_bad_model(NMC_DS_FMT_AUTO, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n", "pc_qwen2.tokenizer_config.json");
    ck_assert_str_eq(t, "1:14: data-chat-template: row has `messages` but the model has no chat template\n");
    free(t);
}
END_TEST

START_TEST(errors_are_capped_but_all_rows_checked)
{
    char *rows = malloc(200 * 8 + 1), *p = rows;
    for (int i = 0; i < 200; i++) p += sprintf(p, "[%d]\n", i % 10);
    const char *path = tpath("many.jsonl");
    write_file(path, rows);
    free(rows);
    const char *files[] = {path};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_AUTO, files, 1);
    nmc_dataset_t *ds;
    ck_assert_int_eq(nmc_dataset_open(&o, m, &ds, &D), NMC_DATASET_INVALID);
    ck_assert_int_eq(D.n_errors, 200);
    ck_assert_int_eq(D.n, 50);
    ck_assert_int_eq(D.n_dropped, 150);
    nmc_dataset_model_free(m);
}
END_TEST

START_TEST(line_too_long)
{
    const char *path = tpath("long.jsonl");
    FILE *f = fopen(path, "wb");
    fputs("{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"", f);
    char blk[65536];
    memset(blk, 'x', sizeof blk);
    for (size_t i = 0; i < (NMC_DATASET_MAX_LINE / sizeof blk) + 1; i++) fwrite(blk, 1, sizeof blk, f);
    fputs("\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n", f);
    fclose(f);
    const char *files[] = {path};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_AUTO, files, 1);
    nmc_dataset_t *ds;
    ck_assert_int_eq(nmc_dataset_open(&o, m, &ds, &D), NMC_DATASET_INVALID);
    char *t = diag_text(&D);
    ck_assert_str_eq(t, "2:1: data-line-too-long: line is longer than 16 MiB\n");
    free(t);
    nmc_dataset_model_free(m);
}
END_TEST

START_TEST(prompt_template_validation)
{
    static const struct { const char *t, *why; } C[] = {
        {"{a}", "only one placeholder; the template takes exactly two: the prompt column, then the completion column"},
        {"no braces", "no placeholder; the template takes exactly two: the prompt column, then the completion column"},
        {"{a} {b} {c}", "more than two placeholders; the template takes exactly two: the prompt column, then the completion column"},
        {"{a} {}", "a placeholder `{}` names no column"},
        {"{a b} {c}", "a placeholder is not `{column}` with a column name of letters, digits, '_' or '-' (write '{{' for a literal brace)"},
        {"{a} } {b}", "a '}' closes no placeholder (write '}}' for a literal brace)"},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        nmc_diags_free(&D);
        nmc_diags_init(&D);
        ck_assert_int_eq(nmc_dataset_check_template(C[i].t, NULL, &D), -1);
        char want[512];
        snprintf(want, sizeof want, "dataset.prompt_template \"%s\": %s", C[i].t, C[i].why);
        ck_assert_str_eq(D.items[0].code, "data-bad-prompt-template");
        ck_assert_str_eq(D.items[0].message, want);
    }
    ck_assert_int_eq(nmc_dataset_check_template("{{literal}} {q_1}: {a-2}", NULL, &D), 0);
    /* nmc_dataset_open refuses a bad template before reading any row */
    const char *files[] = {DS "/qa.jsonl"};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_TEMPLATE, files, 1);
    o.prompt_template = "{question}";
    nmc_dataset_t *ds;
    ck_assert_int_eq(nmc_dataset_open(&o, m, &ds, &D), NMC_DATASET_INVALID);
    nmc_dataset_model_free(m);
}
END_TEST

/* ---- truncation and zero-trainable ------------------------------------------------------------- */
START_TEST(truncation_counts)
{
    const char *files[] = {DS "/pc.jsonl"};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_AUTO, files, 1);
    /* golden lengths: 21 (prompt 18), 33 (27), 29 (13), 44 (5), 13 (12); cut at 20 tokens */
    o.max_seq_length = 20;
    nmc_dataset_t *ds = open_ok(&o, m);
    const nmc_dataset_report_t *r = nmc_dataset_report(ds, NMC_DS_TRAIN);
    ck_assert_int_eq(r->rows, 5);
    ck_assert_int_eq(r->truncated, 4);          /* every row but the 13-token one */
    ck_assert_int_eq(r->truncated_tokens, 1 + 13 + 9 + 24);
    ck_assert_int_eq(r->zero_trainable, 1);     /* line 2: its 27-token prompt fills all 20 */
    ck_assert_int_eq(r->samples, 4);
    ck_assert_int_eq(r->label_tokens, 2 + 7 + 15 + 1); /* line 1 keeps 2 of its 3 targets, ... */
    ck_assert_int_eq(r->max_len, 20);
    ck_assert_int_eq(r->truncated_at[0].line, 1);
    ck_assert_int_eq(r->truncated_at[0].detail, 21);
    ck_assert_int_eq(r->zero_at[0].line, 2);
    ck_assert_int_eq(r->zero_at[0].detail, 20);
    ck_assert_int_eq(r->n_truncated_locs, 4);
    nmc_dataset_free(ds);
    nmc_dataset_model_free(m);
}
END_TEST

/* ---- batches, packing, shuffle ------------------------------------------------------------------- */
/* n rows of text format with lengths 3..(3+n%17) words. */
static const char *gen_text(const char *name, int n)
{
    const char *p = tpath(name);
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < n; i++) {
        fprintf(f, "{\"text\": \"row %d", i);
        for (int w = 0; w < 3 + (i * 7) % 17; w++) fprintf(f, " word%d", (i + w) % 13);
        fputs("\"}\n", f);
    }
    fclose(f);
    return p;
}

/* Every batch row against the contract of batch.h; marks which samples it saw. */
static void check_batch(const nmc_dataset_t *ds, const nmc_batch_t *b, bool packing, int64_t *seen_tokens)
{
    for (int r = 0; r < b->B; r++) {
        const int32_t *ids = b->input_ids + (size_t)r * b->T, *lab = b->labels + (size_t)r * b->T,
                      *pos = b->positions + (size_t)r * b->T, *ds0 = b->doc_start + (size_t)r * b->T;
        for (int i = 0; i < b->T; i++) {
            ck_assert_int_le(ds0[i], i);
            ck_assert_int_eq(pos[i], i - ds0[i]);
            if (i > 0 && ds0[i] != ds0[i - 1]) ck_assert_int_eq(ds0[i], i); /* a new document starts here */
            bool last_of_doc = i + 1 == b->T || ds0[i + 1] != ds0[i];
            if (last_of_doc) ck_assert_int_eq(lab[i], NMC_IGNORE_INDEX);
            else if (lab[i] != NMC_IGNORE_INDEX) ck_assert_int_eq(lab[i], ids[i + 1]);
        }
        if (!packing) for (int i = 0; i < b->T; i++) if (ds0[i] != 0) { ck_assert_int_eq(lab[i], NMC_IGNORE_INDEX); }
    }
    *seen_tokens += b->n_real_tokens;
    (void)ds;
}

START_TEST(packing_invariants)
{
    const char *p = gen_text("pack.jsonl", 300);
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_TEXT, files, 1);
    o.packing = true, o.pack_size = 128, o.shuffle = true;
    nmc_dataset_t *ds = open_ok(&o, m);
    const nmc_dataset_report_t *r = nmc_dataset_report(ds, NMC_DS_TRAIN);
    const nmc_dataset_plan_t *pl = nmc_dataset_plan(ds, NMC_DS_TRAIN);
    ck_assert_int_eq(r->samples, 300);
    ck_assert_int_eq(pl->row_capacity, pl->units * 128);
    ck_assert(pl->packing_efficiency > 0.9 && pl->packing_efficiency <= 1.0);
    ck_assert_int_le((int64_t)((double)r->tokens / 128.0 + 0.999999), pl->units);
    nmc_dataset_iter_t *it = nmc_dataset_iter_new(ds, NMC_DS_TRAIN, 4, 0, 1);
    nmc_batch_t b;
    int64_t tokens = 0, labels = 0, rows = 0;
    while (nmc_dataset_iter_next(it, &b, &D) == 1) {
        ck_assert_int_eq(b.T, 128);
        check_batch(ds, &b, true, &tokens);
        labels += b.n_label_tokens, rows += b.B;
    }
    ck_assert_int_eq(rows, pl->units);
    ck_assert_int_eq(tokens, r->tokens);       /* every sample exactly once */
    ck_assert_int_eq(labels, r->label_tokens);
    ck_assert(fabs((double)tokens / (double)(rows * 128) - pl->packing_efficiency) < 1e-12);
    nmc_dataset_iter_free(it);
    nmc_dataset_free(ds);
    nmc_dataset_model_free(m);
}
END_TEST

START_TEST(padding_without_packing)
{
    const char *files[] = {DS "/pc.jsonl"};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_AUTO, files, 1);
    nmc_dataset_t *ds = open_ok(&o, m);
    nmc_dataset_iter_t *it = nmc_dataset_iter_new(ds, NMC_DS_TRAIN, 2, 0, 1);
    nmc_batch_t b;
    /* file order: lengths 21, 33 | 29, 44 | 13 */
    static const int T[] = {33, 44, 13}, B[] = {2, 2, 1};
    int k = 0;
    int64_t tokens = 0;
    while (nmc_dataset_iter_next(it, &b, &D) == 1) {
        ck_assert_int_eq(b.T, T[k]);
        ck_assert_int_eq(b.B, B[k]);
        ck_assert_int_eq(b.first_sample, 2 * k);
        check_batch(ds, &b, false, &tokens);
        k++;
    }
    ck_assert_int_eq(k, 3);
    /* row 0 of batch 0: 21 tokens then pad (<|endoftext|> = 2500) with positions restarting */
    nmc_dataset_iter_seek(it, 0, 0);
    ck_assert_int_eq(nmc_dataset_iter_next(it, &b, &D), 1);
    ck_assert_int_eq(b.input_ids[21], 2500);
    ck_assert_int_eq(b.positions[21], 0);
    ck_assert_int_eq(b.doc_start[21], 21);
    ck_assert_int_eq(b.labels[20], NMC_IGNORE_INDEX);
    ck_assert_int_eq(b.n_real_tokens, 21 + 33);
    ck_assert_int_eq(b.n_label_tokens, 3 + 6); /* the completion tokens (golden masks) */
    nmc_dataset_iter_free(it);
    nmc_dataset_free(ds);
    nmc_dataset_model_free(m);
}
END_TEST

static void order_of(const nmc_dataset_t *ds, int64_t epoch, int rank, int world, int64_t *out, int64_t *n)
{
    nmc_dataset_iter_t *it = nmc_dataset_iter_new(ds, NMC_DS_TRAIN, 1, rank, world);
    nmc_dataset_iter_seek(it, epoch, 0);
    *n = nmc_dataset_iter_units(it);
    memcpy(out, nmc_dataset_iter_order(it), (size_t)*n * sizeof *out);
    nmc_dataset_iter_free(it);
}

START_TEST(shuffle_determinism_and_sharding)
{
    const char *p = gen_text("shuf.jsonl", 101);
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_TEXT, files, 1);
    o.shuffle = true;
    nmc_dataset_t *a = open_ok(&o, m), *b = open_ok(&o, m);
    int64_t x[101], y[101], n, n2;
    order_of(a, 0, 0, 1, x, &n);
    order_of(b, 0, 0, 1, y, &n2);
    ck_assert_int_eq(n, 101);
    ck_assert_mem_eq(x, y, sizeof x); /* same seed, same order, across opens */
    bool differs = false, identity = true;
    order_of(a, 1, 0, 1, y, &n2);
    for (int i = 0; i < 101; i++) differs |= x[i] != y[i], identity &= x[i] == i;
    ck_assert(differs);                /* a new order every epoch */
    ck_assert(!identity);
    /* a permutation */
    int seen[101] = {0};
    for (int i = 0; i < 101; i++) seen[x[i]]++;
    for (int i = 0; i < 101; i++) ck_assert_int_eq(seen[i], 1);
    /* another seed, another order */
    nmc_dataset_opts_t o2 = o;
    o2.seed = 99;
    nmc_dataset_t *c = open_ok(&o2, m);
    order_of(c, 0, 0, 1, y, &n2);
    differs = false;
    for (int i = 0; i < 101; i++) differs |= x[i] != y[i];
    ck_assert(differs);
    /* shuffle off: file order */
    o2.shuffle = false;
    nmc_dataset_t *e = open_ok(&o2, m);
    order_of(e, 3, 0, 1, y, &n2);
    for (int i = 0; i < 101; i++) ck_assert_int_eq(y[i], i);
    /* 4 ranks: 26 units each (104 = 101 + 3 repeated from the start), rank r takes r, r+4, ... */
    for (int r = 0; r < 4; r++) {
        int64_t s[26];
        order_of(a, 0, r, 4, s, &n2);
        ck_assert_int_eq(n2, 26);
        for (int k = 0; k < 26; k++) ck_assert_int_eq(s[k], x[(r + 4 * k) % 101]);
    }
    nmc_dataset_free(a), nmc_dataset_free(b), nmc_dataset_free(c), nmc_dataset_free(e);
    nmc_dataset_model_free(m);
}
END_TEST

START_TEST(resume_exactly)
{
    const char *p = gen_text("resume.jsonl", 40);
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_TEXT, files, 1);
    o.shuffle = true;
    nmc_dataset_t *ds = open_ok(&o, m);
    nmc_dataset_iter_t *it = nmc_dataset_iter_new(ds, NMC_DS_TRAIN, 3, 0, 1);
    nmc_dataset_iter_seek(it, 2, 0);
    nmc_batch_t b;
    for (int i = 0; i < 4; i++) ck_assert_int_eq(nmc_dataset_iter_next(it, &b, &D), 1);
    nmc_dataset_pos_t pos = nmc_dataset_iter_tell(it);
    ck_assert_int_eq(pos.epoch, 2);
    ck_assert_int_eq(pos.position, 12);
    ck_assert_int_eq(nmc_dataset_iter_next(it, &b, &D), 1);
    int32_t *want = malloc((size_t)b.B * b.T * sizeof *want);
    memcpy(want, b.input_ids, (size_t)b.B * b.T * sizeof *want);
    int wB = b.B, wT = b.T;
    nmc_dataset_iter_t *it2 = nmc_dataset_iter_new(ds, NMC_DS_TRAIN, 3, 0, 1);
    nmc_dataset_iter_seek(it2, pos.epoch, pos.position);
    ck_assert_int_eq(nmc_dataset_iter_next(it2, &b, &D), 1);
    ck_assert_int_eq(b.B, wB);
    ck_assert_int_eq(b.T, wT);
    ck_assert_mem_eq(b.input_ids, want, (size_t)wB * wT * sizeof *want);
    ck_assert_int_eq(nmc_dataset_iter_batches(it2), 14);
    free(want);
    nmc_dataset_iter_free(it), nmc_dataset_iter_free(it2);
    nmc_dataset_free(ds);
    nmc_dataset_model_free(m);
}
END_TEST

START_TEST(validation_hold_out)
{
    const char *p = gen_text("val.jsonl", 50);
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_TEXT, files, 1);
    o.validation_split = 0.1;
    nmc_dataset_t *ds = open_ok(&o, m);
    ck_assert_int_eq(nmc_dataset_num_samples(ds, NMC_DS_VALID), 5);
    ck_assert_int_eq(nmc_dataset_num_samples(ds, NMC_DS_TRAIN), 45);
    int lines[51] = {0};
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < nmc_dataset_num_samples(ds, (nmc_dataset_split_t)s); i++) {
            nmc_dataset_sample_t smp;
            ck_assert_int_eq(nmc_dataset_get_sample(ds, (nmc_dataset_split_t)s, i, &smp, &D), 0);
            lines[smp.line]++;
            nmc_dataset_sample_free(&smp);
        }
    for (int i = 1; i <= 50; i++) ck_assert_int_eq(lines[i], 1); /* disjoint, complete */
    /* a validation fileset wins over the split */
    const char *vf[] = {DS "/text.jsonl"};
    o.val_files = vf, o.n_val_files = 1;
    nmc_dataset_t *ds2 = open_ok(&o, m);
    ck_assert_int_eq(nmc_dataset_num_samples(ds2, NMC_DS_TRAIN), 50);
    ck_assert_int_eq(nmc_dataset_num_samples(ds2, NMC_DS_VALID), 4);
    nmc_dataset_free(ds), nmc_dataset_free(ds2);
    nmc_dataset_model_free(m);
}
END_TEST

/* ---- cache -------------------------------------------------------------------------------------- */
START_TEST(tokenization_cache)
{
    const char *p = gen_text("cache.jsonl", 30);
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_TEXT, files, 1);
    o.cache_dir = tpath("cache/sub");
    nmc_dataset_t *a = open_ok(&o, m);
    ck_assert(!nmc_dataset_report(a, NMC_DS_TRAIN)->from_cache);
    char first[4096];
    snprintf(first, sizeof first, "%s", nmc_dataset_cache_path(a));
    ck_assert_int_eq(access(first, R_OK), 0);
    nmc_dataset_t *b = open_ok(&o, m);
    ck_assert(nmc_dataset_report(b, NMC_DS_TRAIN)->from_cache);
    ck_assert_str_eq(nmc_dataset_cache_path(b), first);
    ck_assert_mem_eq(nmc_dataset_report(a, NMC_DS_TRAIN), nmc_dataset_report(b, NMC_DS_TRAIN),
                     offsetof(nmc_dataset_report_t, truncated_at));
    nmc_dataset_sample_t s1, s2;
    ck_assert_int_eq(nmc_dataset_get_sample(a, NMC_DS_TRAIN, 7, &s1, &D), 0);
    ck_assert_int_eq(nmc_dataset_get_sample(b, NMC_DS_TRAIN, 7, &s2, &D), 0);
    ck_assert_int_eq(s1.n, s2.n);
    ck_assert_mem_eq(s1.ids, s2.ids, (size_t)s1.n * 4);
    nmc_dataset_sample_free(&s1), nmc_dataset_sample_free(&s2);
    nmc_dataset_free(b);
    /* another tokenizer (config): another key */
    nmc_dataset_model_t *m2 = model("qwen2.json", "chat_qwen25.tokenizer_config.json");
    nmc_dataset_t *c = open_ok(&o, m2);
    ck_assert(!nmc_dataset_report(c, NMC_DS_TRAIN)->from_cache);
    ck_assert_str_ne(nmc_dataset_cache_path(c), first);
    nmc_dataset_free(c);
    /* other job fields that change tokens: another key */
    nmc_dataset_opts_t o3 = o;
    o3.max_seq_length = 8;
    nmc_dataset_t *e = open_ok(&o3, m);
    ck_assert_str_ne(nmc_dataset_cache_path(e), first);
    nmc_dataset_free(e);
    /* changed data bytes: another key */
    FILE *f = fopen(p, "ab");
    fputs("{\"text\": \"one more row\"}\n", f);
    fclose(f);
    nmc_dataset_t *g = open_ok(&o, m);
    ck_assert(!nmc_dataset_report(g, NMC_DS_TRAIN)->from_cache);
    ck_assert_int_eq(nmc_dataset_num_samples(g, NMC_DS_TRAIN), 31);
    char second[4096];
    snprintf(second, sizeof second, "%s", nmc_dataset_cache_path(g));
    nmc_dataset_free(g);
    /* a damaged entry: a warning, then rebuilt */
    f = fopen(second, "r+b");
    fseek(f, 40, SEEK_SET);
    fputc(0x55, f);
    fclose(f);
    nmc_diags_free(&D);
    nmc_diags_init(&D);
    nmc_dataset_t *h = open_ok(&o, m);
    ck_assert(!nmc_dataset_report(h, NMC_DS_TRAIN)->from_cache);
    ck_assert_int_eq(D.n_warnings, 1);
    ck_assert_str_eq(D.items[0].code, "data-cache");
    nmc_dataset_free(h);
    nmc_dataset_t *k = open_ok(&o, m);
    ck_assert(nmc_dataset_report(k, NMC_DS_TRAIN)->from_cache);
    nmc_dataset_free(k);
    nmc_dataset_free(a);
    nmc_dataset_model_free(m), nmc_dataset_model_free(m2);
}
END_TEST

/* ---- streaming ------------------------------------------------------------------------------------ */
static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

START_TEST(streaming_bounded_memory)
{
    /* ~50 MB of JSONL (NMC_TEST_STREAM_MB overrides); memory growth must stay far below it */
    long mb = getenv("NMC_TEST_STREAM_MB") ? atol(getenv("NMC_TEST_STREAM_MB")) : 50;
    const char *p = tpath("big.jsonl");
    FILE *f = fopen(p, "wb");
    char line[1200];
    long bytes = 0, rows = 0;
    while (bytes < mb * 1000000L) {
        int n = snprintf(line, sizeof line, "{\"prompt\": \"Question %ld: how many words are in this line? \", "
                                            "\"completion\": \"There are several words in line %ld, ", rows, rows);
        for (int w = 0; w < 40; w++) n += snprintf(line + n, sizeof line - (size_t)n, "w%ld ", (rows + w) % 97);
        n += snprintf(line + n, sizeof line - (size_t)n, "end.\"}\n");
        fwrite(line, 1, (size_t)n, f);
        bytes += n, rows++;
    }
    fclose(f);
    const char *files[] = {p};
    nmc_dataset_model_t *m = model("qwen2.json", "pc_qwen2.tokenizer_config.json");
    nmc_dataset_opts_t o = opts(NMC_DS_FMT_AUTO, files, 1);
    o.packing = true, o.pack_size = 2048;
    long before = max_rss_kb();
    nmc_dataset_t *ds = open_ok(&o, m);
    ck_assert_int_eq(nmc_dataset_num_samples(ds, NMC_DS_TRAIN), rows);
    nmc_dataset_iter_t *it = nmc_dataset_iter_new(ds, NMC_DS_TRAIN, 2, 0, 1);
    nmc_batch_t b;
    int64_t tokens = 0;
    while (nmc_dataset_iter_next(it, &b, &D) == 1) tokens += b.n_real_tokens;
    ck_assert_int_eq(tokens, nmc_dataset_report(ds, NMC_DS_TRAIN)->tokens);
    long growth_mb = (max_rss_kb() - before) / 1024;
    if (getenv("NMC_TEST_VERBOSE")) fprintf(stderr, "streaming: %ld rows, %ld MB file, peak RSS growth %ld MB\n", rows, mb, growth_mb);
    ck_assert_msg(growth_mb < 64, "peak RSS grew by %ld MB over a %ld MB file", growth_mb, mb);
    nmc_dataset_iter_free(it);
    nmc_dataset_free(ds);
    nmc_dataset_model_free(m);
}
END_TEST

/* ---- nmc data inspect ------------------------------------------------------------------------------ */
/* Run nmc_cmd_data with stdout and stderr captured into files; returns the exit code. */
static int run_cli(char **argv, int argc, char **out, char **err)
{
    fflush(stdout), fflush(stderr);
    int so = dup(1), se = dup(2);
    FILE *fo = fopen(tpath("out.txt"), "wb"), *fe = fopen(tpath("err.txt"), "wb");
    dup2(fileno(fo), 1), dup2(fileno(fe), 2);
    int rc = nmc_cmd_data(argc, argv);
    fflush(stdout), fflush(stderr);
    dup2(so, 1), dup2(se, 2);
    close(so), close(se), fclose(fo), fclose(fe);
    const char *names[2] = {tpath("out.txt"), tpath("err.txt")};
    char **dst[2] = {out, err};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(names[i], "rb");
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        rewind(f);
        *dst[i] = calloc(1, (size_t)n + 1);
        if (fread(*dst[i], 1, (size_t)n, f) != (size_t)n) ck_abort();
        fclose(f);
    }
    return rc;
}

static void store_import(const char *kind, const char *src, const char *name)
{
    char *argv[] = {"import", (char *)src, "--name", (char *)name};
    fflush(stdout);
    int so = dup(1);
    FILE *devnull = fopen("/dev/null", "wb");
    dup2(fileno(devnull), 1);
    int rc = strcmp(kind, "model") == 0 ? nmc_cmd_models(4, argv) : nmc_cmd_filesets(4, argv);
    fflush(stdout);
    dup2(so, 1);
    close(so), fclose(devnull);
    ck_assert_int_eq(rc, 0);
}

START_TEST(cli_inspect)
{
    setenv("NMC_HOME", tpath("home"), 1);
    sh("mkdir -p %s/model && cp tests/data/models/tiny-qwen3/* %s/model/ && cp %s/qwen2.json %s/model/tokenizer.json && "
       "cp %s/chat_qwen25.tokenizer_config.json %s/model/tokenizer_config.json",
       tmp, tmp, TOKS, tmp, DS, tmp);
    sh("mkdir -p %s/data/sub && cp %s/chat.jsonl %s/data/a.jsonl && cp %s/pc.jsonl %s/data/sub/b.jsonl", tmp, DS, tmp, DS, tmp);
    store_import("model", tpath("model"), "tiny");
    store_import("fileset", tpath("data"), "mixed");
    write_file(tpath("job.json"), "{\"model\": \"tiny\", \"dataset\": {\"training\": \"mixed\"}, \"training\": {},"
                                  " \"batch\": {\"sequence_packing\": true, \"packed_sequence_size\": 512}}\n");
    char *out, *err;
    char *argv[] = {"inspect", (char *)tpath("job.json"), "--n", "1", "--color", "never"};
    int rc = run_cli(argv, 6, &out, &err);
    ck_assert_msg(rc == 0, "rc %d\nstdout:\n%s\nstderr:\n%s", rc, out, err);
    ck_assert_str_eq(err, "");
    char want[2048];
    snprintf(want, sizeof want,
             "── sample 1  %s/data/a.jsonl:2  48 tokens, 3 trained\n"
             "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
             "<|im_start|>assistant\n«4<|im_end|>\n»\n\n",
             tmp);
    ck_assert_msg(strstr(out, want) != NULL, "stdout:\n%s", out);
    ck_assert_msg(strstr(out, "  samples kept           12\n") != NULL, "stdout:\n%s", out);
    ck_assert_msg(strstr(out, "  zero trainable (skip)  1\n      ") != NULL, "stdout:\n%s", out);
    ck_assert_msg(strstr(out, "data/a.jsonl:8  ") != NULL, "stdout:\n%s", out);
    ck_assert_msg(strstr(out, "rows of 512 tokens, efficiency ") != NULL, "stdout:\n%s", out);
    ck_assert_msg(strstr(out, "2 samples held out (validation_split 0.1)") != NULL, "stdout:\n%s", out);
    free(out), free(err);
    /* a bad row: diagnostics on stderr with file:line, exit 1 */
    write_file(tpath("data/c.jsonl"), "{\"messages\": []}\n");
    rc = run_cli(argv, 6, &out, &err);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "data/c.jsonl:1:14: error[data-empty-messages]: `messages` is empty") != NULL, "stderr:\n%s", err);
    free(out), free(err);
    /* a missing job file: exit 2; an unknown option: exit 2 */
    char *argv2[] = {"inspect", (char *)tpath("nope.json")};
    rc = run_cli(argv2, 2, &out, &err);
    ck_assert_int_eq(rc, 2);
    free(out), free(err);
    char *argv3[] = {"inspect", "--bogus"};
    ck_assert_int_eq(run_cli(argv3, 2, &out, &err), 2);
    ck_assert_msg(strstr(err, "unknown option '--bogus'") != NULL, "%s", err);
    free(out), free(err);
    unsetenv("NMC_HOME");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, goldens);
    tcase_add_test(tc, malformed_rows_auto);
    tcase_add_test(tc, malformed_rows_other_formats);
    tcase_add_test(tc, errors_are_capped_but_all_rows_checked);
    tcase_add_test(tc, line_too_long);
    tcase_add_test(tc, prompt_template_validation);
    tcase_add_test(tc, truncation_counts);
    tcase_add_test(tc, packing_invariants);
    tcase_add_test(tc, padding_without_packing);
    tcase_add_test(tc, shuffle_determinism_and_sharding);
    tcase_add_test(tc, resume_exactly);
    tcase_add_test(tc, validation_hold_out);
    tcase_add_test(tc, tokenization_cache);
    tcase_add_test(tc, streaming_bounded_memory);
    tcase_add_test(tc, cli_inspect);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
